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
use rustls::{CertificateError, ClientConfig};
use std::path::Path;
use std::sync::Arc;

/// The option naming the PEM file of the CA(s) the registry client trusts.
pub const CA_OPTION: &str = "schema.registry.ssl.root.cert";

/// The rustls client configuration for `https://` registries: roots from `ca` when given, else
/// from the system's store.
pub(crate) fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>> {
    crate::tls::client_config(
        ca.map(|path| crate::tls::Named { path, option: CA_OPTION }),
        None,
        &format!(
            "option `schema.registry` is an https:// URL: set `{CA_OPTION}` to the PEM file of the CA that signed \
             the registry's certificate"
        ),
    )
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
