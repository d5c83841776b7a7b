//! Secrets in options: values that must never reach `Debug` output, logs or error messages.
//!
//! [`Secret`] wraps a password, token or key; its `Debug` prints `<redacted>` and only
//! [`Secret::expose`] gives the value, to the request that needs it. URLs may carry credentials
//! as `user:password@`: [`redact_url`] hides them wherever a URL is printed, and
//! [`split_userinfo`] takes them out of a URL so that a connector stores the URL without them
//! and sends them the way its protocol wants (headers, Basic auth).

use crate::options::is_secret_key;
use std::fmt;

/// A secret option value: kept out of `Debug` output, logs and error messages.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for the request that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where the authority of `url` (after `scheme://`) starts and ends, and the `@` ending its
/// userinfo, if any.
fn userinfo_at(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let end = start + rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = url[start..end].rfind('@')?;
    Some((start, start + at))
}

/// `url` (or a comma-separated list of URLs) with every `user:password@` replaced by `***@`,
/// for messages and `Debug` output.
///
/// ```
/// use differential_sinks::secret::redact_url;
/// assert_eq!(redact_url("http://u:p%40ss@h:8123/x"), "http://***@h:8123/x");
/// assert_eq!(redact_url("nats://a:b@h1:4222,nats://h2:4222"), "nats://***@h1:4222,nats://h2:4222");
/// assert_eq!(redact_url("http://h/a@b"), "http://h/a@b");
/// // Query parameters that carry secrets (`password`, `token`, …) are hidden too.
/// assert_eq!(redact_url("postgres://h/db?user=u&password=pw&sslmode=require"), "postgres://h/db?user=u&password=***&sslmode=require");
/// ```
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let one = match userinfo_at(one) {
                Some((start, at)) => format!("{}***{}", &one[..start], &one[at..]),
                None => one.to_string(),
            };
            redact_query(&one)
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `url` with the values of its secret query parameters (see [`is_secret_key`]) replaced by `***`.
fn redact_query(url: &str) -> String {
    let Some((head, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if is_secret_key(k) => format!("{k}=***"),
            _ => pair.to_string(),
        })
        .collect();
    let mut out = format!("{head}?{}", pairs.join("&"));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// Decodes `%XX` escapes (as userinfo in URLs is written); invalid escapes stay as they are.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Takes the credentials out of `url`: the URL without `user:password@`, and the (decoded) user
/// and password it carried.
///
/// ```
/// use differential_sinks::secret::split_userinfo;
/// let (url, cred) = split_userinfo("https://ann:p%40ss@h:8123/");
/// assert_eq!(url, "https://h:8123/");
/// let (user, password) = cred.unwrap();
/// assert_eq!((user.as_str(), password.unwrap().expose()), ("ann", "p@ss"));
/// assert!(split_userinfo("http://h:1").1.is_none());
/// ```
pub fn split_userinfo(url: &str) -> (String, Option<(String, Option<Secret>)>) {
    let Some((start, at)) = userinfo_at(url) else {
        return (url.to_string(), None);
    };
    let info = &url[start..at];
    let (user, password) = match info.split_once(':') {
        Some((u, p)) => (percent_decode(u), Some(Secret::new(percent_decode(p)))),
        None => (percent_decode(info), None),
    };
    (format!("{}{}", &url[..start], &url[at + 1..]), Some((user, password)))
}
