//! RisingWave-style options: a flat map of `key = value` strings, consumed key by key.
//!
//! Each layer takes the keys it understands ([`Options::take`]); whatever is left when the sink is
//! created is refused by [`Options::finish`], naming the key and suggesting the closest known
//! one. Keys that carry secrets are redacted in `Debug` output.
//!
//! Where RisingWave names an option differently from ours, a connector declares the pair as an
//! [`Alias`] and calls [`Options::resolve_aliases`] before it takes its keys: RisingWave's key is
//! rewritten to ours (its value converted when the units differ), so a `CREATE SINK … WITH (…)`
//! carries over unchanged. Giving both names with different values is refused naming both; a
//! value refused later names the key as it was given.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// An options map being consumed by the configuration parsers.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Options {
    map: BTreeMap<String, String>,
    known: Vec<String>,
    /// Our key → the alias it was given as.
    given_as: BTreeMap<String, String>,
}

/// RisingWave's name for one of our options, and how its value reads as ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Alias {
    /// Our option.
    pub ours: &'static str,
    /// RisingWave's name for it.
    pub theirs: &'static str,
    /// How `theirs`' value becomes `ours`'.
    pub value: AliasValue,
}

/// How an alias's value becomes our option's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AliasValue {
    /// The same value.
    Same,
    /// The alias is in whole seconds, our option in milliseconds.
    SecondsAsMillis,
}

impl Alias {
    /// `theirs` is `ours` under another name, with the same values.
    pub const fn same(ours: &'static str, theirs: &'static str) -> Alias {
        Alias { ours, theirs, value: AliasValue::Same }
    }
    /// `theirs` (seconds) is `ours` (milliseconds).
    pub const fn seconds_as_millis(ours: &'static str, theirs: &'static str) -> Alias {
        Alias { ours, theirs, value: AliasValue::SecondsAsMillis }
    }
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
        Options { map: iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect(), ..Options::default() }
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
        let shown = self.shown(key);
        self.take(key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Error::config(format!("option {shown} is required: {what}")))
    }

    /// Consumes and parses a key.
    pub fn take_parsed<T: FromStr>(&mut self, key: &str, expected: &str) -> Result<Option<T>> {
        let shown = self.shown(key);
        match self.take(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| Error::config(format!("option {shown} = `{v}` is not valid: expected {expected}"))),
        }
    }

    /// `key` quoted for a message, with the alias it was given as, if any.
    pub fn shown(&self, key: &str) -> String {
        match self.given_as.get(key) {
            Some(alias) => format!("`{key}` (given as `{alias}`)"),
            None => format!("`{key}`"),
        }
    }

    /// Rewrites every alias present to our key, converting its value. Refuses an alias value
    /// that cannot be converted, and an alias given together with our key at a different value
    /// (naming both keys, never the values, which may be secrets).
    ///
    /// ```
    /// use differential_sinks::options::{Alias, Options};
    /// let mut o = Options::parse_pairs(["doris.username=ann", "jdbc.query.timeout=60"]).unwrap();
    /// o.resolve_aliases(&[
    ///     Alias::same("doris.user", "doris.username"),
    ///     Alias::seconds_as_millis("jdbc.transaction.timeout.ms", "jdbc.query.timeout"),
    /// ])
    /// .unwrap();
    /// assert_eq!(o.take("doris.user").as_deref(), Some("ann"));
    /// assert_eq!(o.take("jdbc.transaction.timeout.ms").as_deref(), Some("60000"));
    /// ```
    pub fn resolve_aliases(&mut self, aliases: &[Alias]) -> Result<()> {
        for a in aliases {
            self.known.push(a.theirs.to_string());
            let Some(v) = self.map.remove(a.theirs) else { continue };
            let (ours, theirs) = (a.ours, a.theirs);
            let converted = match a.value {
                AliasValue::Same => v,
                AliasValue::SecondsAsMillis => {
                    v.trim().parse::<u64>().ok().and_then(|s| s.checked_mul(1000)).map(|ms| ms.to_string()).ok_or_else(
                        || Error::config(format!("option `{theirs}` = `{v}` is not valid: expected whole seconds")),
                    )?
                }
            };
            match self.map.get(ours) {
                Some(given) => {
                    let agree = match a.value {
                        AliasValue::Same => *given == converted,
                        AliasValue::SecondsAsMillis => given.trim().parse::<u64>().ok() == converted.parse().ok(),
                    };
                    if !agree {
                        let unit = match a.value {
                            AliasValue::Same => "",
                            AliasValue::SecondsAsMillis => " (in seconds; ours in milliseconds)",
                        };
                        return Err(Error::config(format!(
                            "options `{ours}` and `{theirs}` are one setting (`{theirs}` is RisingWave's name{unit}) \
                             but are given different values: remove one of them"
                        )));
                    }
                }
                None => {
                    self.map.insert(ours.to_string(), converted);
                    self.given_as.insert(ours.to_string(), theirs.to_string());
                }
            }
        }
        Ok(())
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

/// Parses a byte count: digits, optionally followed by `KiB`, `MiB` or `GiB` (or `k`, `m`, `g`).
pub fn parse_bytes(option: &str, value: &str) -> Result<usize> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" | "kb" => 10,
        "m" | "mib" | "mb" => 20,
        "g" | "gib" | "gb" => 30,
        _ => 64,
    };
    digits.parse::<usize>().ok().filter(|_| shift < 64).and_then(|n| n.checked_mul(1usize << shift.min(63))).ok_or_else(
        || Error::config(format!("option `{option}` = `{value}`: give a number of bytes, like 268435456 or 256MiB")),
    )
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
    fn aliases_become_our_keys_and_conflicts_name_both() {
        let aliases = [Alias::same("doris.user", "doris.username"), Alias::seconds_as_millis("t.ms", "t.s")];
        let mut o = Options::parse_pairs(["doris.username=ann", "t.s=2"]).unwrap();
        o.resolve_aliases(&aliases).unwrap();
        assert_eq!(o.take("doris.user").as_deref(), Some("ann"));
        assert_eq!(o.take_parsed::<u64>("t.ms", "ms").unwrap(), Some(2000));
        o.finish("x").unwrap();

        // Both names, one value: accepted.
        let mut o = Options::parse_pairs(["doris.username=ann", "doris.user=ann", "t.s=2", "t.ms=2000"]).unwrap();
        o.resolve_aliases(&aliases).unwrap();
        assert_eq!(o.take("doris.user").as_deref(), Some("ann"));
        assert_eq!(o.take("t.ms").as_deref(), Some("2000"));

        // Both names, two values: refused naming both, without the values.
        for pairs in [["doris.username=ann", "doris.user=bob-secret"], ["t.s=2", "t.ms=2001"]] {
            let mut o = Options::parse_pairs(pairs).unwrap();
            let e = o.resolve_aliases(&aliases).unwrap_err().to_string();
            let (ours, theirs) =
                if pairs[0].starts_with('d') { ("doris.user", "doris.username") } else { ("t.ms", "t.s") };
            assert!(e.contains(&format!("`{ours}`")) && e.contains(&format!("`{theirs}`")), "{e}");
            assert!(!e.contains("bob-secret") && !e.contains("2001"), "{e}");
        }

        // A bad value names the key as given.
        let mut o = Options::parse_pairs(["t.s=soon"]).unwrap();
        assert!(o.resolve_aliases(&aliases).unwrap_err().to_string().contains("`t.s` = `soon`"));
        let mut o = Options::parse_pairs(["doris.username=ann"]).unwrap();
        o.resolve_aliases(&aliases).unwrap();
        let e = o.take_parsed::<u64>("doris.user", "a number").unwrap_err().to_string();
        assert!(e.contains("`doris.user` (given as `doris.username`) = `ann`"), "{e}");
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
