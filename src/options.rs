//! RisingWave-style options: a flat map of `key = value` strings, consumed key by key.
//!
//! Each layer takes the keys it understands ([`Options::take`]); whatever is left when the sink is
//! created is refused by [`Options::finish`], naming the key and suggesting the closest known
//! one. Keys that carry secrets are redacted in `Debug` output.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// An options map being consumed by the configuration parsers.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Options {
    map: BTreeMap<String, String>,
    known: Vec<String>,
}

/// True for option keys whose values must never be printed.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "credential",
        "sasl.jaas",
        "ssl.key",
        "private",
        "access_key",
        "access.key",
        "nkey",
        "jwt",
        "oauthbearer.config",
    ]
    .iter()
    .any(|s| k.contains(s))
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.map {
            if is_secret_key(k) {
                m.entry(k, &"<redacted>");
            } else {
                // URLs may carry `user:password@`.
                m.entry(k, &crate::secret::redact_url(v));
            }
        }
        m.finish()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Options {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Options { map: iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect(), known: Vec::new() }
    }
}

impl Options {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `key=value` strings (as given to `dsink --with`).
    ///
    /// ```
    /// let o = differential_sinks::Options::parse_pairs(["connector=file", "type=upsert"]).unwrap();
    /// assert_eq!(o.get("type"), Some("upsert"));
    /// ```
    pub fn parse_pairs<I, S>(pairs: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut o = Options::new();
        for p in pairs {
            let p = p.as_ref();
            let (k, v) =
                p.split_once('=').ok_or_else(|| Error::config(format!("option `{p}` is not of the form key=value")))?;
            let k = k.trim();
            if k.is_empty() {
                return Err(Error::config(format!("option `{p}` has an empty key")));
            }
            if o.map.insert(k.to_string(), v.trim().to_string()).is_some() {
                return Err(Error::config(format!("option `{k}` is given twice")));
            }
        }
        Ok(o)
    }

    /// Sets a key.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.map.insert(key.into(), value.into());
        self
    }

    /// Reads a key without consuming it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    /// Consumes a key.
    pub fn take(&mut self, key: &str) -> Option<String> {
        self.known.push(key.to_string());
        self.map.remove(key)
    }

    /// Consumes a required key.
    pub fn require(&mut self, key: &str, what: &str) -> Result<String> {
        self.take(key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Error::config(format!("option `{key}` is required: {what}")))
    }

    /// Consumes and parses a key.
    pub fn take_parsed<T: FromStr>(&mut self, key: &str, expected: &str) -> Result<Option<T>> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| Error::config(format!("option `{key}` = `{v}` is not valid: expected {expected}"))),
        }
    }

    /// Consumes a boolean key (`true`/`false`).
    pub fn take_bool(&mut self, key: &str) -> Result<Option<bool>> {
        self.take_parsed(key, "true or false")
    }

    /// Consumes every key starting with `prefix`, returned without the prefix.
    pub fn take_prefixed(&mut self, prefix: &str) -> BTreeMap<String, String> {
        let keys: Vec<String> = self.map.keys().filter(|k| k.starts_with(prefix)).cloned().collect();
        self.known.push(format!("{prefix}*"));
        keys.into_iter()
            .map(|k| {
                let v = self.map.remove(&k).expect("listed");
                (k[prefix.len()..].to_string(), v)
            })
            .collect()
    }

    /// True when no keys are left.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Refuses any key nobody took, suggesting the closest known key.
    pub fn finish(self, connector: &str) -> Result<()> {
        let Some(key) = self.map.keys().next() else {
            return Ok(());
        };
        let best =
            self.known.iter().map(|k| (edit_distance(k, key), k)).filter(|(d, k)| *d <= 3.max(k.len() / 3)).min();
        let hint = match best {
            Some((_, k)) => format!("; did you mean `{k}`?"),
            None => String::new(),
        };
        Err(Error::config(format!(
            "option `{key}` is not known to the `{connector}` sink{hint} (remove it, or check the connector's option list in its module docs)"
        )))
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_suggests() {
        let mut o = Options::parse_pairs(["primary_kye=id"]).unwrap();
        let _ = o.take("primary_key");
        let e = o.finish("file").unwrap_err();
        assert!(e.to_string().contains("did you mean `primary_key`"), "{e}");
    }

    #[test]
    fn secrets_redacted() {
        let o = Options::parse_pairs([
            "properties.sasl.password=hunter2",
            "topic=t",
            "nkey=SUAseed",
            "jwt=eyJtoken",
            "server_url=nats://ann:pw1@h:4222,nats://bob:pw2@h2:4222",
        ])
        .unwrap();
        let d = format!("{o:?}");
        assert!(d.contains("topic") && d.contains("nats://***@h:4222,nats://***@h2:4222"), "{d}");
        for secret in ["hunter2", "SUAseed", "eyJtoken", "pw1", "pw2"] {
            assert!(!d.contains(secret), "{secret} in {d}");
        }
    }
}
