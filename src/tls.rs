//! rustls client configurations for the connectors that build their own TLS (the Schema Registry
//! client, NATS): the `ring` provider chosen explicitly, so that a build in which rustls also has
//! `aws-lc-rs` (through another connector's HTTP client) never leaves rustls to guess a
//! process-wide provider, which panics.
//!
//! Roots come from a PEM file named by an option, or else from the system's store; a client
//! certificate and key may be added. Every file is read when the configuration is built, so one
//! that cannot be read or holds nothing usable is refused at the sink's creation with a `Config`
//! error naming its option. Servers' certificates are always checked in full (chain and name).

use crate::error::{Error, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use std::path::Path;
use std::sync::Arc;

/// A file and the option that named it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Named<'a> {
    /// The file.
    pub path: &'a Path,
    /// The option, for messages.
    pub option: &'a str,
}

/// A client configuration trusting the roots of `ca` (else the system's store; `no_roots_fix`
/// says what to do when that is empty), presenting `client` (certificate, key) when given.
pub(crate) fn client_config(
    ca: Option<Named<'_>>,
    client: Option<(Named<'_>, Named<'_>)>,
    no_roots_fix: &str,
) -> Result<Arc<ClientConfig>> {
    let roots = match ca {
        Some(ca) => roots_from_file(ca)?,
        None => system_roots(no_roots_fix)?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certificates(cert)?;
            let pem = read(key)?;
            let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
                Error::config(format!(
                    "option `{}`: {} holds no usable private key ({e}); give a PEM file with a `PRIVATE KEY`, \
                     `RSA PRIVATE KEY` or `EC PRIVATE KEY` block",
                    key.option,
                    key.path.display()
                ))
            })?;
            builder.with_client_auth_cert(chain, der).map_err(|e| {
                Error::config(format!(
                    "options `{}` / `{}`: the client certificate and key are not usable together: {e}",
                    cert.option, key.option
                ))
            })?
        }
    };
    Ok(Arc::new(config))
}

fn read(file: Named<'_>) -> Result<Vec<u8>> {
    std::fs::read(file.path).map_err(|e| {
        Error::config(format!(
            "option `{}`: cannot read {}: {e}; point it at a readable PEM file",
            file.option,
            file.path.display()
        ))
    })
}

fn certificates(file: Named<'_>) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read(file)?;
    let certs = CertificateDer::pem_slice_iter(&pem).collect::<std::result::Result<Vec<_>, _>>().map_err(|e| {
        Error::config(format!("option `{}`: {} is not valid PEM: {e}", file.option, file.path.display()))
    })?;
    if certs.is_empty() {
        return Err(Error::config(format!(
            "option `{}`: {} holds no `BEGIN CERTIFICATE` block",
            file.option,
            file.path.display()
        )));
    }
    Ok(certs)
}

/// The roots of a PEM file; a certificate that cannot be a root is refused.
pub(crate) fn roots_from_file(file: Named<'_>) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    for cert in certificates(file)? {
        store.add(cert).map_err(|e| {
            Error::config(format!(
                "option `{}`: a certificate in {} cannot be a root: {e}",
                file.option,
                file.path.display()
            ))
        })?;
    }
    Ok(store)
}

/// The system's roots; refused with `fix` when there are none.
pub(crate) fn system_roots(fix: &str) -> Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(found.certs);
    if store.is_empty() {
        for e in &found.errors {
            tracing::warn!(error = %e, "reading the system's root certificates");
        }
        return Err(Error::config(format!("the system's certificate store is empty: {fix}")));
    }
    Ok(store)
}
