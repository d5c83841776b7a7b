//! A small Confluent Schema Registry client over HTTP/1.1, plain (`http://`) or TLS (`https://`).
//!
//! The sink needs two calls, made once per worker when it opens: register a schema under a
//! subject (`POST /subjects/{subject}/versions` with `{"schema": "<schema JSON as text>"}`, answer
//! `{"id": N}`; registering an identical schema again returns the same id), and, for readers,
//! fetch a schema by id (`GET /schemas/ids/{id}`, answer `{"schema": "<text>"}`). Speaking HTTP
//! directly keeps an HTTP client stack out of the build for two requests per worker; `https://`
//! runs the same requests through rustls (see `registry_tls.rs` for the roots
//! and the checks, which always include the host name).
//!
//! Basic auth comes from `schema.registry.username` / `schema.registry.password`, or from a
//! `user:password@` in the URL, which is taken out of the URL when the client is built: the
//! credentials are sent only in the `Authorization` header and never appear in `Debug` output,
//! logs or errors.

use super::config::RegistryConfig;
use super::registry_tls::{self, CA_OPTION};
use crate::error::{Error, ErrorKind, Result};
use crate::secret::{redact_url, split_userinfo, Secret};
use base64::Engine as _;
use rustls::pki_types::ServerName;
use std::fmt;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// A registry client.
#[derive(Clone)]
pub struct Registry {
    /// `host:port` as written in the URL (the `Host` header).
    authority: String,
    host: String,
    port: u16,
    base_path: String,
    /// For `https://`: the TLS configuration and the name the certificate must carry.
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    /// The `Authorization` header value (Basic credentials; never printed).
    auth: Option<Secret>,
    timeout: Duration,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("scheme", &if self.tls.is_some() { "https" } else { "http" })
            .field("authority", &self.authority)
            .field("base_path", &self.base_path)
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .finish()
    }
}

trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

impl Registry {
    /// A client for `config.url` (`http://host[:port][/path]` or `https://…`). Refuses (as `Config`
    /// errors naming the option) a URL it cannot use, credentials given both in the URL and as
    /// options, a CA file with an `http://` URL, and a CA file that cannot be read or parsed.
    pub fn new(config: &RegistryConfig, timeout: Duration) -> Result<Self> {
        let shown = redact_url(&config.url);
        let (url, url_credentials) = split_userinfo(&config.url);
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(Error::config(format!(
                "option `schema.registry` = `{shown}`: use an http:// or https:// URL, e.g. https://registry:8081"
            )));
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if path.contains(['?', '#']) {
            return Err(Error::config(format!(
                "option `schema.registry` = `{shown}`: a registry URL takes no query or fragment"
            )));
        }
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| Error::config(format!("option `schema.registry` = `{shown}` has no valid host[:port]")))?;
        let port = port.unwrap_or(if https { 443 } else { 80 });
        let tls = match (https, &config.ca) {
            (true, ca) => {
                let name = ServerName::try_from(host.to_string()).map_err(|e| {
                    Error::config(format!("option `schema.registry` = `{shown}`: `{host}` is not a host name: {e}"))
                })?;
                Some((registry_tls::client_config(ca.as_deref())?, name))
            }
            (false, Some(_)) => {
                return Err(Error::config(format!(
                    "option `{CA_OPTION}` only applies to an https:// registry, and `schema.registry` = `{shown}`: \
                     use https:// or remove `{CA_OPTION}`"
                )))
            }
            (false, None) => None,
        };
        let (user, password) = match url_credentials {
            Some(_) if config.username.is_some() || config.password.is_some() => {
                return Err(Error::config(
                    "the registry credentials are given both in `schema.registry`'s URL and in \
                     `schema.registry.username` / `schema.registry.password`: give them in one place",
                ))
            }
            Some((u, p)) => (Some(u), p),
            None => (config.username.clone(), config.password.clone()),
        };
        let auth = user.map(|u| {
            let pair = format!("{u}:{}", password.as_ref().map_or("", Secret::expose));
            Secret::new(format!("Basic {}", base64(pair.as_bytes())))
        });
        Ok(Registry {
            authority: authority.to_string(),
            host: host.to_string(),
            port,
            base_path: path.to_string(),
            tls,
            auth,
            timeout,
        })
    }

    /// Registers `schema` (Avro JSON) under `subject` and returns its id.
    pub fn register(&self, subject: &str, schema: &serde_json::Value) -> Result<u32> {
        let body = serde_json::json!({ "schema": schema.to_string() }).to_string();
        let path = format!("/subjects/{}/versions", encode_path(subject));
        let reply = self.request("POST", &path, Some(&body))?;
        reply["id"].as_u64().and_then(|i| u32::try_from(i).ok()).ok_or_else(|| {
            Error::new(
                ErrorKind::Fatal,
                format!("schema registry: registering subject `{subject}` gave no id: {reply}"),
            )
        })
    }

    /// The schema registered under `id`.
    pub fn schema(&self, id: u32) -> Result<serde_json::Value> {
        let reply = self.request("GET", &format!("/schemas/ids/{id}"), None)?;
        let text = reply["schema"].as_str().ok_or_else(|| {
            Error::new(ErrorKind::Fatal, format!("schema registry: schema {id} has no `schema` field"))
        })?;
        serde_json::from_str(text)
            .map_err(|e| Error::new(ErrorKind::Fatal, format!("schema registry: schema {id} is not JSON: {e}")))
    }

    /// Connects, and for `https://` completes the handshake (a refused certificate is a `Config`
    /// error, not retried).
    fn connect(&self, what: &str) -> Result<Box<dyn Conn>> {
        let io = |e: std::io::Error| Error::new(ErrorKind::Retriable, format!("{what}: {e}")).with_source(e);
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&(self.host.as_str(), self.port))
            .map_err(io)?
            .next()
            .ok_or_else(|| Error::config(format!("{what}: cannot resolve {}", self.host)))?;
        let mut s = TcpStream::connect_timeout(&addr, self.timeout).map_err(io)?;
        s.set_read_timeout(Some(self.timeout)).map_err(io)?;
        s.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let Some((config, name)) = &self.tls else {
            return Ok(Box::new(s));
        };
        let mut conn = rustls::ClientConnection::new(config.clone(), name.clone())
            .map_err(|e| Error::new(ErrorKind::Fatal, format!("{what}: TLS: {e}")))?;
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut s) {
                return Err(registry_tls::handshake_error(what, &self.host, &e).unwrap_or_else(|| io(e)));
            }
        }
        Ok(Box::new(rustls::StreamOwned::new(conn, s)))
    }

    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<serde_json::Value> {
        let what = format!("schema registry {method} {}{path}", self.base_path);
        let io = |e: std::io::Error| Error::new(ErrorKind::Retriable, format!("{what}: {e}")).with_source(e);
        let mut s = self.connect(&what)?;
        let body = body.unwrap_or("");
        let mut req = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nAccept: application/vnd.schemaregistry.v1+json, application/json\r\nConnection: close\r\n",
            self.base_path, self.authority
        );
        if let Some(a) = &self.auth {
            req.push_str(&format!("Authorization: {}\r\n", a.expose()));
        }
        if method == "POST" {
            req.push_str(&format!(
                "Content-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes()).map_err(io)?;
        s.flush().map_err(io)?;
        let raw = read_reply(&mut s).map_err(io)?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| Error::new(ErrorKind::Retriable, format!("{what}: truncated reply")))?;
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut payload = raw[split + 4..].to_vec();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| Error::new(ErrorKind::Retriable, format!("{what}: bad status line")))?;
        let header = |name: &str| {
            head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_ascii_lowercase())
            })
        };
        if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            payload = dechunk(&payload)
                .ok_or_else(|| Error::new(ErrorKind::Retriable, format!("{what}: bad chunked body")))?;
        } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            if payload.len() < len {
                return Err(Error::new(ErrorKind::Retriable, format!("{what}: truncated reply")));
            }
            payload.truncate(len);
        }
        let text = String::from_utf8_lossy(&payload);
        if !(200..300).contains(&status) {
            let kind =
                if status >= 500 || status == 408 || status == 429 { ErrorKind::Retriable } else { ErrorKind::Fatal };
            let hint = match status {
                401 | 403 => "; check schema.registry.username / schema.registry.password",
                409 => "; the schema is incompatible with the subject's earlier versions: change the subject's compatibility or write to a new topic",
                422 => "; the registry refused the schema as invalid",
                _ => "",
            };
            return Err(Error::new(kind, format!("{what}: HTTP {status}: {}{hint}", text.trim())));
        }
        serde_json::from_str(&text).map_err(|e| Error::new(ErrorKind::Fatal, format!("{what}: reply is not JSON: {e}")))
    }
}

/// Reads the reply until the server closes. A TLS peer that closes without `close_notify` ends
/// the read too; the caller checks the body against its length.
fn read_reply(s: &mut dyn Conn) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(raw),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => return Ok(raw),
            Err(e) => return Err(e),
        }
    }
}

/// `host[:port]`, or `[v6][:port]`.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains(['@', ' ']) {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0)?),
        None => None,
    };
    Some((host, port))
}

fn encode_path(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

fn base64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(encode_path("a b/c-value"), "a%20b%2Fc-value");
        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(), b"abcde");
        assert_eq!(base64(b"user:pw"), "dXNlcjpwdw==");
        let r = Registry::new(&RegistryConfig::new("http://reg:8081/api/"), Duration::from_secs(1)).unwrap();
        assert_eq!(
            (r.authority.as_str(), r.host.as_str(), r.port, r.base_path.as_str()),
            ("reg:8081", "reg", 8081, "/api")
        );
        let r = Registry::new(&RegistryConfig::new("http://[::1]/"), Duration::from_secs(1)).unwrap();
        assert_eq!((r.host.as_str(), r.port, r.base_path.as_str()), ("::1", 80, ""));
        assert_eq!(split_host_port("h:0"), None);
        assert_eq!(split_host_port(":80"), None);
        assert_eq!(split_host_port("[::1]x"), None);
    }

    #[test]
    fn url_credentials_become_basic_auth_and_are_never_shown() {
        let r = Registry::new(&RegistryConfig::new("https://ann:s%40cret@reg:8443"), Duration::from_secs(1)).unwrap();
        assert_eq!(r.auth.as_ref().unwrap().expose(), format!("Basic {}", base64(b"ann:s@cret")));
        assert_eq!((r.authority.as_str(), r.port), ("reg:8443", 8443));
        let shown = format!("{r:?}");
        assert!(!shown.contains("s%40cret") && !shown.contains("s@cret") && !shown.contains("ann"), "{shown}");

        let mut both = RegistryConfig::new("http://ann:pw-secret@reg:8081");
        both.username = Some("bob".into());
        let e = Registry::new(&both, Duration::from_secs(1)).unwrap_err().to_string();
        assert!(e.contains("schema.registry.username") && !e.contains("pw-secret"), "{e}");
        let e = Registry::new(&RegistryConfig::new("ftp://ann:pw-secret@reg"), Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`schema.registry`") && e.contains("https://") && !e.contains("pw-secret"), "{e}");
    }

    #[test]
    fn a_ca_file_is_refused_with_http_and_when_unreadable() {
        let mut c = RegistryConfig::new("http://reg:8081");
        c.ca = Some("/nonexistent/ca.pem".into());
        let e = Registry::new(&c, Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains(CA_OPTION) && e.to_string().contains("https://"), "{e}");
        c.url = "https://reg:8081".into();
        let e = Registry::new(&c, Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains(CA_OPTION) && e.to_string().contains("cannot read"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        c.ca = Some(junk);
        let e = Registry::new(&c, Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains(CA_OPTION) && e.to_string().contains("no `BEGIN CERTIFICATE`"), "{e}");
    }
}
