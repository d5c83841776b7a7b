//! A small Confluent Schema Registry client over HTTP/1.1 (plain `http://` only).
//!
//! The sink needs two calls, made once per worker when it opens: register a schema under a
//! subject (`POST /subjects/{subject}/versions` with `{"schema": "<schema JSON as text>"}`, answer
//! `{"id": N}`; registering an identical schema again returns the same id), and, for readers,
//! fetch a schema by id (`GET /schemas/ids/{id}`, answer `{"schema": "<text>"}`). Speaking HTTP
//! directly keeps a TLS and HTTP client stack out of the build for two requests per worker.

use super::config::RegistryConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;
use base64::Engine as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A registry client.
#[derive(Clone, Debug)]
pub struct Registry {
    host_port: String,
    base_path: String,
    /// The `Authorization` header value (Basic credentials; never printed).
    auth: Option<Secret>,
    timeout: Duration,
}

impl Registry {
    /// A client for `config.url` (`http://host:port[/path]`).
    pub fn new(config: &RegistryConfig, timeout: Duration) -> Result<Self> {
        let rest = config.url.strip_prefix("http://").ok_or_else(|| {
            Error::config(format!("option `schema.registry` = `{}`: only http:// URLs are supported", config.url))
        })?;
        let (host_port, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if host_port.is_empty() {
            return Err(Error::config(format!("option `schema.registry` = `{}` has no host", config.url)));
        }
        let host_port = if host_port.contains(':') { host_port.to_string() } else { format!("{host_port}:80") };
        let auth = config.username.as_ref().map(|u| {
            let pair = format!("{u}:{}", config.password.as_ref().map_or("", Secret::expose));
            Secret::new(format!("Basic {}", base64(pair.as_bytes())))
        });
        Ok(Registry { host_port, base_path: path.to_string(), auth, timeout })
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

    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<serde_json::Value> {
        let what = format!("schema registry {method} {}{path}", self.base_path);
        let io = |e: std::io::Error| Error::new(ErrorKind::Retriable, format!("{what}: {e}")).with_source(e);
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&self.host_port)
            .map_err(io)?
            .next()
            .ok_or_else(|| Error::config(format!("{what}: cannot resolve {}", self.host_port)))?;
        let mut s = TcpStream::connect_timeout(&addr, self.timeout).map_err(io)?;
        s.set_read_timeout(Some(self.timeout)).map_err(io)?;
        s.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let body = body.unwrap_or("");
        let mut req = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nAccept: application/vnd.schemaregistry.v1+json, application/json\r\nConnection: close\r\n",
            self.base_path, self.host_port
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
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(io)?;
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
        if head.lines().any(|l| {
            l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked")
        }) {
            payload = dechunk(&payload)
                .ok_or_else(|| Error::new(ErrorKind::Retriable, format!("{what}: bad chunked body")))?;
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
        let r = Registry::new(
            &RegistryConfig { url: "http://reg:8081/api/".into(), username: None, password: None },
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!((r.host_port.as_str(), r.base_path.as_str()), ("reg:8081", "/api"));
    }
}
