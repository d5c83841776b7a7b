//! Primary keys: which columns identify a row, and how the key is encoded.
//!
//! A key is declared by column (field) names or by a key function. Either way it is encoded once,
//! when the update enters the sink, into [`Key`] bytes in the sink's key encoding: JSON
//! (`{"id":7,"region":"eu"}`, the columns in declared order) or text (`7` / `7,eu` with a
//! delimiter). Those bytes are what routes the update to a worker, what groups a key's updates,
//! and what a message-oriented target receives as the message key — so a key is never encoded
//! twice.
//!
//! Column extraction runs the row's `serde::Serialize` implementation through a serializer that
//! records only the named top-level fields, so any struct or map row works without extra traits.
//! A [`JsonRow`] is read from its canonical text instead ([`KeyColumns::extract_json_row`]),
//! member by member, giving the same key.

use crate::byte_string::{deserialize_bytes, RawBytes};
use crate::encode::fields::{visit_fields, FieldVisitor, Shape};
use crate::error::{Error, Result};
use crate::json_row::{writes_as_itself, JsonRow, Text};
use crate::stable_hash::fnv64 as stable_hash;
use serde::ser::{self, Serialize};
use std::fmt;

/// An encoded primary key. Equal keys have equal bytes.
///
/// A row whose key could not be extracted (a missing or null key column) yields an invalid key
/// carrying the reason; the sink stops with that reason when it meets it, losing nothing silently.
///
/// A key carries a stable 64-bit hash of its bytes, computed once: it routes the key to its
/// worker (via `Hash`, which feeds only this value) and orders keys cheaply (`Ord` compares the
/// hash first, then the bytes), which is all consolidation needs.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    hash: u64,
    /// Short keys (the common case) live inline, without an allocation per update.
    bytes: KeyBytes,
    invalid: bool,
}

type KeyBytes = smallvec::SmallVec<[u8; 24]>;

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The key's fields as serde's derive wrote them: what a human-readable format gets.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename = "Key")]
struct KeyFields<B> {
    hash: u64,
    bytes: B,
    invalid: bool,
}

/// A key's bytes read back, inline when short.
struct InlineBytes(KeyBytes);

impl<'de> serde::Deserialize<'de> for InlineBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        deserialize_bytes(d, |b| InlineBytes(KeyBytes::from_slice(b)))
    }
}

/// Binary formats (spill files, the exchange between processes) get the bytes in one piece (the
/// same bytes `bincode` wrote for serde's derived sequence, written at once); human-readable ones
/// the derived struct.
impl Serialize for Key {
    fn serialize<S: ser::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            KeyFields { hash: self.hash, bytes: &self.bytes[..], invalid: self.invalid }.serialize(s)
        } else {
            (self.hash, RawBytes(&self.bytes), self.invalid).serialize(s)
        }
    }
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        if d.is_human_readable() {
            let f = KeyFields::<Vec<u8>>::deserialize(d)?;
            return Ok(Key { hash: f.hash, bytes: KeyBytes::from_vec(f.bytes), invalid: f.invalid });
        }
        let (hash, InlineBytes(bytes), invalid) = <(u64, InlineBytes, bool)>::deserialize(d)?;
        Ok(Key { hash, bytes, invalid })
    }
}

impl Key {
    fn from_small(bytes: KeyBytes) -> Self {
        Key { hash: stable_hash(&bytes), bytes, invalid: false }
    }
    /// A key from already encoded bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Key { hash: stable_hash(&bytes), bytes: smallvec::SmallVec::from_vec(bytes), invalid: false }
    }
    /// A key from already encoded bytes, kept inline when short.
    pub fn from_slice(bytes: &[u8]) -> Self {
        Key::from_small(KeyBytes::from_slice(bytes))
    }
    /// A key that could not be extracted, carrying the reason ([`bytes`](Self::bytes) returns it
    /// as an error).
    pub(crate) fn invalid(reason: String) -> Self {
        Key { hash: 0, bytes: smallvec::SmallVec::from_vec(reason.into_bytes()), invalid: true }
    }
    /// An identity for a row without a primary key, for targets that take the row itself
    /// (lakehouse tables): the stable hash of the row's JSON, with no bytes. It routes and orders
    /// equal rows together like the row's JSON key would, without allocating the JSON or moving
    /// it between workers.
    pub fn row_identity<V: Serialize + ?Sized>(row: &V) -> Self {
        let mut h = crate::stable_hash::Fnv64::default();
        match serde_json::to_writer(&mut h, row) {
            Ok(()) => Key { hash: h.finish(), bytes: KeyBytes::new(), invalid: false },
            Err(e) => Key::invalid(format!("the row cannot be encoded: {e}")),
        }
    }
    /// An identity for a row without a primary key, from the row's encoding in its target's
    /// form (a lakehouse table's packed row): the stable hash of those bytes ([`words64`](crate::stable_hash::words64)), with no bytes of
    /// its own. Equal rows have equal encodings, so they route and order together.
    pub fn encoded_identity(encoded: &[u8]) -> Self {
        Key { hash: crate::stable_hash::words64(encoded), bytes: KeyBytes::new(), invalid: false }
    }
    /// The key's stable hash.
    pub fn stable_hash(&self) -> u64 {
        self.hash
    }
    /// The encoded key, or why the row has none.
    pub fn bytes(&self) -> Result<&[u8]> {
        if self.invalid {
            Err(Error::schema(String::from_utf8_lossy(&self.bytes).into_owned()))
        } else {
            Ok(&self.bytes)
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.invalid {
            write!(f, "<invalid key: {}>", String::from_utf8_lossy(&self.bytes))
        } else if self.bytes.is_empty() && self.hash != stable_hash(b"") {
            // A row identity: only the hash of the row's JSON.
            write!(f, "<row without a key, JSON hash {:016x}>", self.hash)
        } else {
            write!(f, "{}", String::from_utf8_lossy(&self.bytes))
        }
    }
}

/// How keys are encoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum KeyEncoding {
    /// A JSON object of the key columns (or the JSON value a key function returns).
    #[default]
    Json,
    /// The key columns' values as text, joined by `delimiter`; strings unquoted.
    Text {
        /// Separator between columns of a composite key.
        delimiter: String,
    },
}

/// Extracts and encodes the primary key columns of rows.
#[derive(Clone, Debug)]
pub struct KeyColumns {
    columns: Vec<String>,
    /// `{"a":` then `,"b":` …: the JSON text before each column's value.
    json_prefixes: Vec<Vec<u8>>,
    encoding: KeyEncoding,
}

impl KeyColumns {
    /// Keys made of `columns`, in that order.
    pub fn new(columns: Vec<String>, encoding: KeyEncoding) -> Result<Self> {
        if columns.is_empty() {
            return Err(Error::config("`primary_key` names no column"));
        }
        for (i, c) in columns.iter().enumerate() {
            if c.is_empty() {
                return Err(Error::config("`primary_key` has an empty column name"));
            }
            if columns[..i].contains(c) {
                return Err(Error::config(format!("`primary_key` names column `{c}` twice")));
            }
        }
        let json_prefixes = columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut p = if i == 0 { b"{".to_vec() } else { b",".to_vec() };
                serde_json::to_writer(&mut p, c).expect("string encodes");
                p.push(b':');
                p
            })
            .collect();
        Ok(KeyColumns { columns, json_prefixes, encoding })
    }

    /// The key columns.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Extracts the key of `row`.
    ///
    /// ```
    /// use differential_sinks::key::{KeyColumns, KeyEncoding};
    /// #[derive(serde::Serialize)]
    /// struct Order { id: u64, region: &'static str, total: f64 }
    /// let row = Order { id: 7, region: "eu", total: 9.5 };
    /// let json = KeyColumns::new(vec!["id".into(), "region".into()], KeyEncoding::Json).unwrap();
    /// assert_eq!(json.extract(&row).bytes().unwrap(), br#"{"id":7,"region":"eu"}"#);
    /// let text = KeyColumns::new(vec!["id".into(), "region".into()], KeyEncoding::Text { delimiter: ",".into() }).unwrap();
    /// assert_eq!(text.extract(&row).bytes().unwrap(), b"7,eu");
    /// ```
    pub fn extract<V: Serialize + ?Sized>(&self, row: &V) -> Key {
        let mut cap = Capture { keys: self, next: 0, out: KeyBytes::new(), pending: Vec::new() };
        if let Err(e) = visit_fields(row, &mut cap) {
            return Key::invalid(e.0);
        }
        self.finish(cap)
    }

    /// The key once every field was seen.
    fn finish(&self, cap: Capture<'_>) -> Key {
        if cap.next < self.columns.len() {
            return Key::invalid(format!(
                "the row has no primary key column `{}`; check `primary_key` against the row's fields",
                self.columns[cap.next]
            ));
        }
        let mut out = cap.out;
        if self.encoding == KeyEncoding::Json {
            out.push(b'}');
        }
        Key::from_small(out)
    }

    /// Extracts the key of a [`JsonRow`]: the same key as [`extract`](Self::extract), read from
    /// the row's canonical text without serializing the row (no allocation per field; values
    /// `serde_json` would write as their own text are copied).
    pub fn extract_json_row(&self, row: &JsonRow) -> Key {
        let Some(members) = row.members() else { return self.extract(row) };
        let mut cap = Capture { keys: self, next: 0, out: KeyBytes::new(), pending: Vec::new() };
        for member in members {
            // Text that is not canonical: the general path reports it.
            let Some((name, value)) = member else { return self.extract(row) };
            let stored = if writes_as_itself(value) {
                cap.store(&name, Raw(value.as_bytes()))
            } else {
                cap.store(&name, Ser(&Text(value)))
            };
            if let Err(e) = stored {
                return Key::invalid(e.0);
            }
            // Canonical text names each member once: with every column found, the rest of the
            // row cannot change the key.
            if cap.next == self.columns.len() {
                break;
            }
        }
        self.finish(cap)
    }

    /// Appends column `i`'s JSON-encoded value to `out` in the key encoding.
    fn append(&self, i: usize, value: &[u8], out: &mut KeyBytes) -> std::result::Result<(), CaptureError> {
        if value == b"null" {
            return Err(CaptureError(format!("primary key column `{}` is null", self.columns[i])));
        }
        match &self.encoding {
            KeyEncoding::Json => {
                out.extend_from_slice(&self.json_prefixes[i]);
                out.extend_from_slice(value);
            }
            KeyEncoding::Text { delimiter } => {
                if i > 0 {
                    out.extend_from_slice(delimiter.as_bytes());
                }
                if value.first() == Some(&b'"') {
                    let s: String = serde_json::from_slice(value)
                        .map_err(|e| CaptureError(format!("key column `{}`: {e}", self.columns[i])))?;
                    out.extend_from_slice(s.as_bytes());
                } else {
                    out.extend_from_slice(value);
                }
            }
        }
        Ok(())
    }
}

/// Encodes the value a key function returned.
pub fn encode_key_value<K: Serialize + ?Sized>(key: &K, encoding: &KeyEncoding) -> Key {
    match encoding {
        KeyEncoding::Json => match serde_json::to_vec(key) {
            Ok(b) => Key::from_bytes(b),
            Err(e) => Key::invalid(format!("the key function's value cannot be encoded: {e}")),
        },
        KeyEncoding::Text { .. } => match serde_json::to_value(key) {
            Ok(serde_json::Value::String(s)) => Key::from_bytes(s.into_bytes()),
            Ok(serde_json::Value::Null) => Key::invalid("the key function returned null".into()),
            Ok(v) => Key::from_bytes(v.to_string().into_bytes()),
            Err(e) => Key::invalid(format!("the key function's value cannot be encoded: {e}")),
        },
    }
}

#[derive(Debug)]
struct CaptureError(String);
impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for CaptureError {}
impl ser::Error for CaptureError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        CaptureError(msg.to_string())
    }
}

fn not_a_record(what: &str) -> String {
    format!(
        "a row serializes as {what}, not as a struct or map, so it has no named columns; declare the key with a key function instead"
    )
}

/// Records the key columns while a row serializes. Columns met in declared order (the usual
/// case) are encoded straight into `out`; others wait in `pending` until their turn.
struct Capture<'a> {
    keys: &'a KeyColumns,
    next: usize,
    out: KeyBytes,
    pending: Vec<(usize, Vec<u8>)>,
}

/// A field's value as the key capture writes it: its JSON encoding.
trait FieldValue {
    fn write_json<W: std::io::Write>(&self, w: W) -> serde_json::Result<()>;
}

/// A value serialized by `serde_json`.
struct Ser<'a, T: ?Sized>(&'a T);

impl<T: Serialize + ?Sized> FieldValue for Ser<'_, T> {
    fn write_json<W: std::io::Write>(&self, w: W) -> serde_json::Result<()> {
        serde_json::to_writer(w, self.0)
    }
}

/// A value's JSON text exactly as `serde_json` would write it.
struct Raw<'a>(&'a [u8]);

impl FieldValue for Raw<'_> {
    fn write_json<W: std::io::Write>(&self, mut w: W) -> serde_json::Result<()> {
        w.write_all(self.0).map_err(serde_json::Error::io)
    }
}

impl Capture<'_> {
    fn store(&mut self, name: &str, value: impl FieldValue) -> std::result::Result<(), CaptureError> {
        let Some(i) = self.keys.columns.iter().position(|c| c == name) else { return Ok(()) };
        let enc_err = |e: serde_json::Error| CaptureError(format!("key column `{name}`: {e}"));
        if i == self.next && self.keys.encoding == KeyEncoding::Json {
            let p = &self.keys.json_prefixes[i];
            self.out.extend_from_slice(p);
            let start = self.out.len();
            value.write_json(&mut self.out).map_err(enc_err)?;
            if &self.out[start..] == b"null" {
                return Err(CaptureError(format!("primary key column `{name}` is null")));
            }
        } else if i >= self.next {
            let mut buf = Vec::with_capacity(16);
            value.write_json(&mut buf).map_err(enc_err)?;
            if i != self.next {
                self.pending.push((i, buf));
                return Ok(());
            }
            self.keys.append(i, &buf, &mut self.out)?;
        } else {
            return Err(CaptureError(format!("the row has column `{name}` twice")));
        }
        self.next += 1;
        while let Some(p) = self.pending.iter().position(|(j, _)| *j == self.next) {
            let (j, buf) = self.pending.swap_remove(p);
            self.keys.append(j, &buf, &mut self.out)?;
            self.next += 1;
        }
        Ok(())
    }
}

impl FieldVisitor for Capture<'_> {
    type Error = CaptureError;
    #[inline]
    fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> std::result::Result<(), CaptureError> {
        self.store(name, Ser(value))
    }
    fn not_a_row(&self, shape: Shape) -> CaptureError {
        CaptureError(not_a_record(shape.describe()))
    }
}

#[cfg(test)]
mod tests {
    /// A key read back from `bincode` (spill files, the exchange) or from JSON is the key
    /// written: short and long, valid and invalid, a row identity; `bincode` gets the bytes the
    /// derived implementation wrote, and JSON the derived struct.
    #[test]
    fn keys_travel_through_binary_and_text_serializers() {
        use super::{Key, KeyBytes};
        let keys = [
            Key::from_slice(br#"{"id":7}"#),
            Key::from_slice(&[b'x'; 100]),
            Key::from_slice(b""),
            Key::invalid("no column `id`".into()),
            Key::encoded_identity(b"a packed row"),
        ];
        #[derive(serde::Serialize)]
        struct Derived<'a> {
            hash: u64,
            bytes: &'a KeyBytes,
            invalid: bool,
        }
        for key in keys {
            let derived = Derived { hash: key.hash, bytes: &key.bytes, invalid: key.invalid };
            let binary = bincode::serialize(&key).unwrap();
            assert_eq!(binary, bincode::serialize(&derived).unwrap());
            let back: Key = bincode::deserialize(&binary).unwrap();
            assert!(back == key && back.invalid == key.invalid && back.hash == key.hash, "{key:?}");
            let text = serde_json::to_string(&key).unwrap();
            assert_eq!(text, serde_json::to_string(&derived).unwrap());
            assert!(serde_json::from_str::<Key>(&text).unwrap() == key);
        }
    }

    /// Golden values of the routing hash of encoded keys, computed independently (see the
    /// operators crate's `routing_is_pinned`): a key must route to the same worker in every build.
    #[test]
    fn key_routing_is_pinned() {
        use differential_sinks_operators::route_hash;
        assert_eq!(route_hash(&Key::from_bytes(br#"{"id":7}"#.to_vec())), 0x1af9_aefe_5e2a_7081);
        assert_eq!(route_hash(&Key::from_bytes(br#"{"a":1,"b":"x"}"#.to_vec())), 0xa8a5_486a_4b9d_729e);
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn a_row_identity_routes_like_the_rows_json() {
        let (a, b) = (json!({"id": 1, "s": "x"}), json!({"id": 2, "s": "x"}));
        let ia = Key::row_identity(&a);
        assert_eq!(ia, Key::row_identity(&a.clone()), "equal rows, equal identities");
        assert_ne!(ia, Key::row_identity(&b));
        // The same hash the row's JSON key carries, so both place a row on the same worker.
        assert_eq!(ia.stable_hash(), encode_key_value(&a, &KeyEncoding::Json).stable_hash());
        assert!(ia.bytes().unwrap().is_empty());
        // Messages name it as a row, not as an empty key.
        assert!(format!("{ia:?}").starts_with("<row without a key, JSON hash "), "{ia:?}");
        assert_eq!(format!("{:?}", Key::from_bytes(Vec::new())), "");
    }

    #[test]
    fn map_rows_and_errors() {
        let k = KeyColumns::new(vec!["b".into(), "a".into()], KeyEncoding::Json).unwrap();
        let row = json!({"a": 1, "b": "x\"y", "c": [1, 2]});
        assert_eq!(k.extract(&row).bytes().unwrap(), br#"{"b":"x\"y","a":1}"#);
        let missing = k.extract(&json!({"a": 1}));
        assert!(missing.bytes().unwrap_err().to_string().contains("no primary key column `b`"));
        let null = k.extract(&json!({"a": 1, "b": null}));
        assert!(null.bytes().unwrap_err().to_string().contains("is null"));
        assert!(k.extract(&(1, 2)).bytes().is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        /// Reading a `JsonRow`'s key from its text gives the key its serialization gives, in
        /// both encodings, for present, missing, null, nested and escaped columns.
        #[test]
        fn a_json_rows_key_from_its_text_is_its_serialized_key(
            row in crate::json_row::fast::tests::value(),
            columns in proptest::collection::vec(proptest::sample::select(vec!["a", "b", "id", "é", "q\"uote", "back\\slash", "nl\n", "", "x"]), 1..3),
            text in proptest::prelude::any::<bool>(),
        ) {
            let row = match row {
                serde_json::Value::Object(_) => JsonRow::new(&row),
                // Mostly objects, some not (which have no columns).
                other => JsonRow::new(&json!({"a": other.clone(), "id": other, "b": [1]})),
            };
            let encoding = if text { KeyEncoding::Text { delimiter: "|".into() } } else { KeyEncoding::Json };
            let mut columns: Vec<String> = columns.into_iter().map(String::from).collect();
            columns.dedup();
            let Ok(k) = KeyColumns::new(columns, encoding) else { return Ok(()) };
            proptest::prop_assert_eq!(format!("{:?}", k.extract_json_row(&row)), format!("{:?}", k.extract(&row)));
        }
    }

    #[test]
    fn a_json_row_that_is_not_an_object_has_the_same_error() {
        let k = KeyColumns::new(vec!["id".into()], KeyEncoding::Json).unwrap();
        for v in [
            json!([1]),
            json!(3),
            json!(null),
            json!({"id": null}),
            json!({"x": 1}),
            json!({"id": {"b": 1.5, "a": "\u{1}"}}),
        ] {
            let row = JsonRow::new(&v);
            assert_eq!(format!("{:?}", k.extract_json_row(&row)), format!("{:?}", k.extract(&row)), "{v}");
        }
    }

    #[test]
    fn config_errors() {
        assert!(KeyColumns::new(vec![], KeyEncoding::Json).is_err());
        assert!(KeyColumns::new(vec!["a".into(), "a".into()], KeyEncoding::Json).is_err());
    }
}
