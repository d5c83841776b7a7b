//! An in-test Confluent Schema Registry, over plain HTTP or over TLS with a throwaway CA.
//!
//! `POST /subjects/{s}/versions` registers (the same schema gets the same id, as Confluent's
//! registry does) and `GET /schemas/ids/{id}` returns a schema. Every request's `Authorization`
//! header is recorded; with a required header set, a request without it (or with another) is
//! answered `401` the way Confluent's registry answers it. The TLS side is rustls with
//! certificates made by `rcgen` in the test: [`Pki`] is a CA and can issue server certificates
//! for given names. Each double is served by one thread for the rest of the test process; a
//! connection the client drops mid-handshake (a refused certificate) is skipped.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct RegistryState {
    pub schemas: Vec<String>,
    pub subjects: BTreeMap<String, Vec<u32>>,
    /// The `Authorization` header of every request, in order.
    pub auth_seen: Vec<Option<String>>,
}

/// A throwaway certificate authority.
pub struct Pki {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate, PEM.
    pub ca_pem: String,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let ca_pem = params.self_signed(&key).unwrap().pem();
        Pki { issuer: rcgen::Issuer::new(params, key), ca_pem }
    }

    /// Writes the CA certificate into `dir` and returns its path.
    pub fn ca_file(&self, dir: &std::path::Path, file: &str) -> std::path::PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, &self.ca_pem).unwrap();
        path
    }

    /// A server configuration presenting a certificate for `names` (DNS names or IP addresses)
    /// issued by this CA.
    pub fn server(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(cert.der().to_vec())], key)
            .unwrap();
        Arc::new(config)
    }
}

trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

/// One request: method, path, `Authorization` header, body. `None` when the connection ended
/// before a whole request (a refused handshake).
fn read_request(s: &mut dyn Conn) -> Option<(String, String, Option<String>, Vec<u8>)> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8(raw[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split_whitespace();
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let (mut len, mut auth) = (0, None);
    for l in lines {
        let (k, v) = l.split_once(':')?;
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().ok()?,
            "authorization" => auth = Some(v.trim().to_string()),
            _ => {}
        }
    }
    let mut body = raw[head_end + 4..].to_vec();
    while body.len() < len {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&buf[..n]);
    }
    Some((method, path, auth, body))
}

fn answer(
    st: &Mutex<RegistryState>,
    required_auth: Option<&str>,
    request: (String, String, Option<String>, Vec<u8>),
) -> (u16, serde_json::Value) {
    let (method, path, auth, body) = request;
    let mut s = st.lock().unwrap();
    s.auth_seen.push(auth.clone());
    if let Some(required) = required_auth {
        if auth.as_deref() != Some(required) {
            return (401, serde_json::json!({"error_code": 401, "message": "Unauthorized"}));
        }
    }
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segs.as_slice()) {
        ("POST", ["subjects", subject, "versions"]) => {
            let req: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let text = req["schema"].as_str().unwrap().to_string();
            let canonical: serde_json::Value = serde_json::from_str(&text).unwrap();
            let id =
                match s.schemas.iter().position(|x| serde_json::from_str::<serde_json::Value>(x).unwrap() == canonical)
                {
                    Some(i) => i as u32 + 1,
                    None => {
                        s.schemas.push(text);
                        s.schemas.len() as u32
                    }
                };
            let versions = s.subjects.entry(subject.to_string()).or_default();
            if !versions.contains(&id) {
                versions.push(id);
            }
            (200, serde_json::json!({ "id": id }))
        }
        ("GET", ["schemas", "ids", id]) => {
            match id.parse::<usize>().ok().and_then(|i| s.schemas.get(i.wrapping_sub(1))) {
                Some(text) => (200, serde_json::json!({ "schema": text })),
                None => (404, serde_json::json!({"error_code": 40403, "message": "Schema not found"})),
            }
        }
        _ => (404, serde_json::json!({"error_code": 404, "message": "HTTP 404 Not Found"})),
    }
}

/// Starts a registry double on 127.0.0.1: plain HTTP when `tls` is `None`. Returns its base URL
/// (`http://127.0.0.1:<port>` or `https://…`) and its state.
pub fn start_registry(
    tls: Option<Arc<rustls::ServerConfig>>,
    required_auth: Option<String>,
) -> (String, Arc<Mutex<RegistryState>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}", listener.local_addr().unwrap());
    let state = Arc::new(Mutex::new(RegistryState::default()));
    let st = state.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(tcp) = stream else { continue };
            let mut conn: Box<dyn Conn> = match &tls {
                None => Box::new(tcp),
                Some(config) => match rustls::ServerConnection::new(config.clone()) {
                    Ok(c) => Box::new(rustls::StreamOwned::new(c, tcp)),
                    Err(_) => continue,
                },
            };
            let Some(request) = read_request(conn.as_mut()) else { continue };
            let (status, reply) = answer(&st, required_auth.as_deref(), request);
            let body = reply.to_string();
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.flush();
        }
    });
    (url, state)
}
