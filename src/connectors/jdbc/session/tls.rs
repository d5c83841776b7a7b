//! TLS for the database connector, on rustls with the `ring` provider: reading the root and
//! client certificates, the server-certificate checks of each [`TlsMode`], and turning a refused
//! handshake into an error that names the option to fix.
//!
//! | mode | encrypted | chain checked against the roots | host name checked |
//! |---|---|---|---|
//! | `disable` | no | | |
//! | `prefer` | if the server offers TLS | no | no |
//! | `require` | yes | no | no |
//! | `verify-ca` | yes | yes | no |
//! | `verify-full` | yes | yes | yes |
//!
//! The roots are the PEM file of `jdbc.ssl.root.cert` when set, else the system's store (read
//! through `rustls-native-certs`). Every file is read when the sink is created and again on each
//! connection, so a rotated certificate is picked up by the next session.

use crate::connectors::jdbc::config::{JdbcConfig, TlsMode};
use crate::error::{Error, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// The certificates one connection uses, read from the configured files.
pub(crate) struct TlsMaterial {
    /// The trusted roots (empty unless the mode verifies).
    pub roots: Vec<CertificateDer<'static>>,
    /// The client certificate chain and its key.
    pub identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes `ring` the process's default provider unless one is set already; drivers that build
/// their own rustls configuration (mysql_async) take the default.
pub(crate) fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read_file(path: &Path, option: &str, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::config(format!(
            "option `{option}`: cannot read the {what} {}: {e}; point it at a readable PEM file",
            path.display()
        ))
    })
}

fn read_certs(path: &Path, option: &str, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read_file(path, option, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem).collect::<std::result::Result<Vec<_>, _>>().map_err(|e| {
        Error::config(format!("option `{option}`: the {what} {} is not valid PEM: {e}", path.display()))
    })?;
    if certs.is_empty() {
        return Err(Error::config(format!(
            "option `{option}`: {} holds no `BEGIN CERTIFICATE` block; give the PEM file of the {what}",
            path.display()
        )));
    }
    Ok(certs)
}

impl TlsMaterial {
    /// Reads what `c`'s mode needs: `None` for `disable`. Every problem is a `Config` error naming
    /// the option and the fix.
    pub(crate) fn load(c: &JdbcConfig) -> Result<Option<TlsMaterial>> {
        Self::load_with_system_roots(c, || {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                for e in &found.errors {
                    tracing::warn!(error = %e, "reading the system's root certificates");
                }
            }
            found.certs
        })
    }

    /// As [`load`](Self::load), with `system_roots` standing for the system's store.
    fn load_with_system_roots(
        c: &JdbcConfig,
        system_roots: impl FnOnce() -> Vec<CertificateDer<'static>>,
    ) -> Result<Option<TlsMaterial>> {
        if c.tls == TlsMode::Disable {
            return Ok(None);
        }
        let mut roots = Vec::new();
        if c.tls.verifies() {
            match &c.tls_root_cert {
                Some(path) => {
                    roots = read_certs(path, "jdbc.ssl.root.cert", "root certificate")?;
                    let mut store = RootCertStore::empty();
                    for cert in &roots {
                        store.add(cert.clone()).map_err(|e| {
                            Error::config(format!(
                                "option `jdbc.ssl.root.cert`: a certificate in {} cannot be a root: {e}",
                                path.display()
                            ))
                        })?;
                    }
                }
                None => {
                    roots = system_roots();
                    if roots.is_empty() {
                        return Err(Error::config(format!(
                            "TLS mode {} verifies the server's certificate, but no root certificate is set and \
                             the system's certificate store is empty: set `jdbc.ssl.root.cert` (or \
                             `sslrootcert` in the URL) to the PEM file of the CA that signed the server's \
                             certificate, or use `jdbc.ssl.mode = require` to encrypt without verifying",
                            c.tls.name()
                        )));
                    }
                }
            }
        }
        let identity = match (&c.tls_client_cert, &c.tls_client_key) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::config(
                    "option `jdbc.ssl.cert` is set without `jdbc.ssl.key`: give the client certificate's private \
                     key too (`jdbc.ssl.key`, or `sslkey` in the URL)",
                ))
            }
            (None, Some(_)) => {
                return Err(Error::config(
                    "option `jdbc.ssl.key` is set without `jdbc.ssl.cert`: give the client certificate too \
                     (`jdbc.ssl.cert`, or `sslcert` in the URL)",
                ))
            }
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert, "jdbc.ssl.cert", "client certificate")?;
                let pem = read_file(key, "jdbc.ssl.key", "client key")?;
                let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
                    Error::config(format!(
                        "option `jdbc.ssl.key`: {} holds no usable private key ({e}); give a PEM file with a \
                         `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block",
                        key.display()
                    ))
                })?;
                Some((chain, key))
            }
        };
        Ok(Some(TlsMaterial { roots, identity }))
    }

    /// A rustls client configuration that checks the server's certificate as `mode` says.
    pub(crate) fn client_config(&self, mode: TlsMode) -> Result<ClientConfig> {
        let provider = provider();
        let verifier: Arc<dyn ServerCertVerifier> = match mode {
            TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => {
                Arc::new(WithoutHostName { roots: None, provider: provider.clone() })
            }
            TlsMode::VerifyCa => {
                Arc::new(WithoutHostName { roots: Some(Arc::new(self.root_store())), provider: provider.clone() })
            }
            TlsMode::VerifyFull => {
                WebPkiServerVerifier::builder_with_provider(Arc::new(self.root_store()), provider.clone())
                    .build()
                    .map_err(|e| Error::config(format!("option `jdbc.ssl.root.cert`: {e}")))?
            }
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config(format!("TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        match &self.identity {
            None => Ok(builder.with_no_client_auth()),
            Some((chain, key)) => builder.with_client_auth_cert(chain.clone(), key.clone_key()).map_err(|e| {
                Error::config(format!(
                    "options `jdbc.ssl.cert` / `jdbc.ssl.key`: the client certificate and key are not usable \
                     together: {e}"
                ))
            }),
        }
    }

    fn root_store(&self) -> RootCertStore {
        let mut store = RootCertStore::empty();
        // `load` checked each root of a configured file; a bad one of the system's store is skipped.
        store.add_parsable_certificates(self.roots.iter().cloned());
        store
    }
}

/// The verifier of the modes that do not compare the host name: `require` and `prefer` (no
/// roots: the session is encrypted, the certificate is not checked, as libpq) and `verify-ca`
/// (the chain must lead to one of the roots).
#[derive(Debug)]
struct WithoutHostName {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for WithoutHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The rustls error somewhere in `e`'s chain (also inside an `io::Error`), if any.
pub(crate) fn find_rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            if let Some(r) = find_rustls_error(inner) {
                return Some(r);
            }
        }
        next = e.source();
    }
    None
}

/// The names a certificate refused for a host name mismatch holds (`verify-ca` on MySQL reconnects
/// under one of them), when `e` is such a refusal.
pub(crate) fn presented_names(e: &rustls::Error) -> Option<&[String]> {
    match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext { presented, .. }) => {
            Some(presented)
        }
        _ => None,
    }
}

/// A hint for a refused TLS handshake: which option to look at.
pub(crate) fn hint(c: &JdbcConfig, e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    let mode = c.tls.name();
    match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => format!(
            "the server's certificate is not signed by a trusted root (jdbc.ssl.mode = {mode}): set \
             `jdbc.ssl.root.cert` (or `sslrootcert`) to the CA that signed it"
        ),
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. })
            if c.tls == TlsMode::VerifyCa =>
        {
            "the server's certificate holds no DNS name or IP address to check it under (jdbc.ssl.mode = \
             verify-ca); give the server a certificate with a subjectAltName"
                .into()
        }
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => format!(
            "the server's certificate does not name host `{}` (jdbc.ssl.mode = {mode}): connect by a name the \
             certificate holds, or use `verify-ca` to check the chain only",
            c.host
        ),
        rustls::Error::InvalidCertificate(_) => {
            format!("the server's certificate is refused (jdbc.ssl.mode = {mode}); check it and `jdbc.ssl.root.cert`")
        }
        rustls::Error::AlertReceived(_) if c.tls_client_cert.is_some() => {
            "the server ended the handshake; check that it accepts the client certificate of `jdbc.ssl.cert`".into()
        }
        _ => format!("the TLS handshake failed (jdbc.ssl.mode = {mode})"),
    }
}

/// The certificate name to verify against after `presented_names`. rustls lists the names as
/// webpki prints them (`DnsName("db.example")`, `IpAddress(10.0.0.1)`); a wildcard's `*` becomes
/// a label, so the name parses. `None` when no name is usable (then `verify-ca` on MySQL fails as
/// `verify-full` would).
pub(crate) fn usable_name(presented: &[String]) -> Option<String> {
    presented.iter().find_map(|n| {
        let n = n.trim();
        let n = n
            .strip_prefix("DnsName(\"")
            .and_then(|r| r.strip_suffix("\")"))
            .or_else(|| n.strip_prefix("IpAddress(").and_then(|r| r.strip_suffix(')')))?;
        let n = match n.strip_prefix("*.") {
            Some(rest) => format!("wildcard.{rest}"),
            None => n.to_string(),
        };
        ServerName::try_from(n.as_str()).is_ok().then_some(n)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn names_from_a_refused_certificate() {
        let names = |v: &[&str]| usable_name(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(names(&["IpAddress(127.0.0.1)"]).as_deref(), Some("127.0.0.1"));
        assert_eq!(names(&["IpAddress(::1)"]).as_deref(), Some("::1"));
        assert_eq!(names(&["DirectoryName", "DnsName(\"db.example\")"]).as_deref(), Some("db.example"));
        assert_eq!(names(&["DnsName(\"*.example\")"]).as_deref(), Some("wildcard.example"));
        assert_eq!(names(&["DirectoryName", "Unsupported(0x88)", "UniformResourceIdentifier(\"a:b\")"]), None);
        assert_eq!(names(&[]), None);
    }

    fn config(extra: &str) -> JdbcConfig {
        JdbcConfig::new(&format!("postgres://u:pw@h/db?{extra}"), "t").unwrap()
    }

    fn refused(c: &JdbcConfig) -> String {
        match TlsMaterial::load(c) {
            Ok(_) => panic!("{c:?} was accepted"),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Config, "{e}");
                e.to_string()
            }
        }
    }

    #[test]
    fn misconfigurations_are_refused_with_the_option_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "no certificate here").unwrap();
        let torn = dir.path().join("torn.pem");
        std::fs::write(&torn, "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
        let p = |p: &std::path::Path| p.display().to_string();

        let m = refused(&config(&format!("sslmode=verify-full&sslrootcert={}", p(&missing))));
        assert!(m.contains("jdbc.ssl.root.cert") && m.contains("missing.pem") && m.contains("cannot read"), "{m}");
        let m = refused(&config(&format!("sslmode=verify-ca&sslrootcert={}", p(&junk))));
        assert!(m.contains("jdbc.ssl.root.cert") && m.contains("BEGIN CERTIFICATE"), "{m}");
        let m = refused(&config(&format!("sslmode=verify-ca&sslrootcert={}", p(&torn))));
        assert!(m.contains("jdbc.ssl.root.cert") && m.contains("not valid PEM"), "{m}");
        let m = refused(&config(&format!("sslmode=require&sslcert={}", p(&junk))));
        assert!(m.contains("`jdbc.ssl.cert` is set without `jdbc.ssl.key`"), "{m}");
        let m = refused(&config(&format!("sslmode=require&sslkey={}", p(&junk))));
        assert!(m.contains("`jdbc.ssl.key` is set without `jdbc.ssl.cert`"), "{m}");
        let m = refused(&config("sslmode=require").tls_client_identity(&torn, &junk));
        assert!(m.contains("jdbc.ssl.cert") && m.contains("not valid PEM"), "{m}");
        // `require` reads no root file, `disable` no file at all.
        assert!(TlsMaterial::load(&config(&format!("sslmode=require&sslrootcert={}", p(&missing)))).unwrap().is_some());
        let plain = config(&format!("sslmode=disable&sslcert={}", p(&missing)));
        assert!(TlsMaterial::load(&plain).unwrap().is_none());
    }

    #[test]
    fn verify_modes_without_any_root_are_refused() {
        for mode in [TlsMode::VerifyCa, TlsMode::VerifyFull] {
            let c = config("").tls(mode);
            let e = TlsMaterial::load_with_system_roots(&c, Vec::new).map(|_| ()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config);
            let m = e.to_string();
            assert!(m.contains(mode.name()) && m.contains("jdbc.ssl.root.cert") && m.contains("require"), "{m}");
        }
        // `require` needs no root.
        let c = config("sslmode=require");
        assert!(TlsMaterial::load_with_system_roots(&c, Vec::new).unwrap().is_some());
    }
}
