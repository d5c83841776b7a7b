//! A minimal HTTP/1.1 server for in-test protocol doubles (the Doris Stream Load double): one
//! request per connection, parsed into method, path, lower-cased headers and body, answered with
//! `Connection: close`. Each listener is served by one thread until its stop flag is set.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A request as the double sees it.
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// Reads one request from `stream` (`None` if the peer closed it or sent something else).
pub fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut r = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Request { method, path, headers, body })
}

/// Answers with `status`, the `extra` headers and `body`.
pub fn respond(stream: &mut TcpStream, status: &str, extra: &[(&str, String)], body: &str) {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (k, v) in extra {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    let _ = stream.write_all(out.as_bytes());
}

/// Serves `listener` on a thread with `handler` until `stop` is set (then the next connection,
/// e.g. one made only to wake the loop, ends it).
pub fn serve(listener: TcpListener, stop: Arc<AtomicBool>, handler: impl Fn(Request, &mut TcpStream) + Send + 'static) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok(mut s) = stream else { continue };
            if let Some(req) = read_request(&s) {
                handler(req, &mut s);
            }
        }
    });
}
