//! HTTPS for the Schema Registry client, on rustls with the `ring` provider.
//!
//! The trusted roots are the PEM file of `schema.registry.ssl.root.cert` when it is set (the same
//! naming as the database connector's `jdbc.ssl.root.cert`), else the system's store (read through
//! `rustls-native-certs`). The file is read when the client is built, so one that cannot be read,
//! holds no certificate or holds a certificate that cannot be a root is refused at creation with a
//! `Config` error naming the option. The server's certificate is always checked in full: its chain
//! must lead to a trusted root and it must name the host of the registry URL (a DNS name, or an IP
//! address in its `subjectAltName`); there is no option to turn either check off. A handshake the
//! client refuses becomes a `Config` error that says which check failed and what to change.

use crate::error::{Error, ErrorKind, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, ClientConfig, RootCertStore};
use std::path::Path;
use std::sync::Arc;

/// The option naming the PEM file of the CA(s) the registry client trusts.
pub const CA_OPTION: &str = "schema.registry.ssl.root.cert";

/// The rustls client configuration for `https://` registries: roots from `ca` when given, else
/// from the system's store.
pub(crate) fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>> {
    let roots = match ca {
        Some(path) => roots_from_file(path)?,
        None => system_roots()?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(format!("schema registry TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn roots_from_file(path: &Path) -> Result<RootCertStore> {
    let pem = std::fs::read(path).map_err(|e| {
        Error::config(format!(
            "option `{CA_OPTION}`: cannot read the CA certificate file {}: {e}; point it at a readable PEM file",
            path.display()
        ))
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::config(format!("option `{CA_OPTION}`: {} is not valid PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::config(format!(
            "option `{CA_OPTION}`: {} holds no `BEGIN CERTIFICATE` block; give the PEM file of the CA that signed \
             the registry's certificate",
            path.display()
        )));
    }
    let mut store = RootCertStore::empty();
    for cert in certs {
        store.add(cert).map_err(|e| {
            Error::config(format!("option `{CA_OPTION}`: a certificate in {} cannot be a root: {e}", path.display()))
        })?;
    }
    Ok(store)
}

fn system_roots() -> Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(found.certs);
    if store.is_empty() {
        for e in &found.errors {
            tracing::warn!(error = %e, "reading the system's root certificates");
        }
        return Err(Error::config(format!(
            "option `schema.registry` is an https:// URL, but the system's certificate store is empty: set \
             `{CA_OPTION}` to the PEM file of the CA that signed the registry's certificate"
        )));
    }
    Ok(store)
}

/// The error for a failed TLS handshake with `host`: a refused certificate is a `Config` error
/// saying which check failed; anything else is left to the caller's I/O classification (`None`).
pub(crate) fn handshake_error(what: &str, host: &str, e: &std::io::Error) -> Option<Error> {
    let tls = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    let rustls::Error::InvalidCertificate(cert) = tls else {
        return Some(Error::new(ErrorKind::Fatal, format!("{what}: TLS handshake with {host} failed: {tls}")));
    };
    let fix = match cert {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
            "the certificate is not signed by a trusted CA: set `{CA_OPTION}` to the PEM file of the CA that \
             signed it (the system's store is used when it is unset)"
        ),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => format!(
            "the certificate does not name `{host}`: use a host name the certificate was issued for in \
             `schema.registry`"
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the certificate has expired: renew the registry's certificate".to_string()
        }
        _ => format!("check the registry's certificate and `{CA_OPTION}`"),
    };
    Some(Error::config(format!("{what}: the registry's TLS certificate was refused ({tls}); {fix}")))
}
