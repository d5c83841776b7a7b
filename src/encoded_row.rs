//! Rows encoded once, where they are produced: the form in which a sink's rows travel through
//! it when its target takes rows encoded ([`Connector::ENCODED_ROWS`](crate::Connector::ENCODED_ROWS)).
//!
//! Most such targets (the message targets, Elasticsearch, Doris, Cassandra) carry a row as its
//! JSON and need nothing else of it; ClickHouse takes `RowBinary` rows that name their columns
//! ([`crate::encode::rowbinary`]'s described rows). The target says which (a [`RowEncoder`]). Each
//! row is encoded into an [`EncodedRow`] on the worker that produced it, right after its key is
//! extracted: the rows of one time in one input batch go one after the other into one buffer
//! ([`EncodedRows`]), each row a slice of it, so the exchange moves slices of shared buffers
//! instead of rows with allocations of their own, consolidation orders and compares bytes, and the
//! target's encoder copies them into its records ([`crate::encode::json::encode_row`]) — no serde
//! walk of the row after the exchange. Between processes and in spill files a row travels as its
//! bytes and comes back as a buffer of its own.
//!
//! JSON bytes are exactly what [`encode_json`](crate::encode::json::encode_json) writes for the
//! row, so records are byte for byte what they were when rows were encoded at the target. Two
//! rows are the same row to the sink when their encodings are the same: an update and its
//! retraction cancel when the row serializes the same way twice, which holds for every
//! `Serialize` that does not depend on anything but the value (it does not hold for a JSON row
//! with a `HashMap` field, whose order varies between maps: use a `BTreeMap`; described
//! `RowBinary` rows are in the table's column order whatever the field order). Two rows that
//! differ only where the target cannot tell them apart (a `Float32` column's rounding) are the
//! same row there too, so they cancel as they would on the target.
//!
//! A row that cannot be encoded (say, a map with non-string keys, or a value out of its column's
//! range) becomes an encoded row holding the reason; the target's encoder reports it, naming the
//! key, when it meets it, as it would have reported the row's own encoding error.

use crate::byte_string::{deserialize_bytes, RawBytes};
use crate::error::{Error, Result};
use crate::json_row::{serialize_compact, JsonRow};
use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, Serializer};
use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// A row encoded where it was produced, as its JSON or in its target's own form (see the
/// [module docs](self)).
///
/// The bytes are a slice of a shared buffer: the rows of one time in one input batch are encoded
/// one after the other into buffers ([`EncodedRows`]), so a row costs no allocation of its own,
/// and a buffer is freed when the last of its rows is. A row is 24 bytes besides its bytes.
#[derive(Clone)]
pub struct EncodedRow {
    buf: Arc<[u8]>,
    start: u32,
    /// The length of the row's bytes, with [`INVALID`] set when they are the reason it has none.
    len: u32,
}

/// The bit of [`EncodedRow::len`] that marks a row that could not be encoded.
const INVALID: u32 = 1 << 31;

impl EncodedRow {
    /// Encodes `row` as [`encode_json`](crate::encode::json::encode_json) does, into a buffer of
    /// its own (a [`JsonRow`]'s text is copied: it is what `encode_json` writes for it); a row
    /// that cannot be encoded keeps the reason.
    pub fn encode<V: Serialize + 'static>(row: &V) -> Self {
        let mut rows = EncodedRows::default();
        let range = rows.push(row);
        rows.finish().take(range)
    }

    /// The row at `range` of `buf`; a row too large for the 31 bits of its length is invalid.
    fn slice(buf: &Arc<[u8]>, range: std::ops::Range<usize>) -> Self {
        match (u32::try_from(range.start), u32::try_from(range.len())) {
            (Ok(start), Ok(len)) if len < INVALID => EncodedRow { buf: Arc::clone(buf), start, len },
            _ => EncodedRow::invalid(format!(
                "a row's JSON of {} bytes is larger than the 2 GiB a sink row may be",
                range.len()
            )),
        }
    }

    fn invalid(mut reason: String) -> Self {
        if reason.len() >= INVALID as usize {
            reason = "a row cannot be encoded, and the reason is too long to keep".into();
        }
        let len = reason.len() as u32 | INVALID;
        EncodedRow { buf: Arc::from(reason.into_bytes()), start: 0, len }
    }

    fn is_invalid(&self) -> bool {
        self.len & INVALID != 0
    }

    /// The row's bytes: its JSON, or the reason it has none.
    fn bytes(&self) -> &[u8] {
        let start = self.start as usize;
        &self.buf[start..start + (self.len & !INVALID) as usize]
    }

    /// The row's JSON text, or the error its encoding met (for rows encoded as JSON, the
    /// default [`json_encoder`]).
    pub fn json(&self) -> Result<&[u8]> {
        self.encoded()
    }

    /// Asks the processor to bring the row's bytes (their first and last cache lines) into its cache, without waiting for
    /// them: a writer reading a time's rows in key order (not the order they were encoded in)
    /// calls it a few rows ahead, so that each row's first read does not stall on memory. Does
    /// nothing on processors without a prefetch instruction.
    #[inline]
    pub fn prefetch(&self) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let first = self.buf.as_ptr().wrapping_add(self.start as usize);
            let last = first.wrapping_add(((self.len & !INVALID) as usize).saturating_sub(1));
            // SAFETY: a prefetch is a hint: it reads nothing into the program and never faults,
            // whatever the address (here the first and last bytes of the row, in its buffer).
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(first.cast());
                _mm_prefetch::<_MM_HINT_T0>(last.cast());
            }
        }
    }

    /// The row's encoding, or the error its encoding met.
    pub fn encoded(&self) -> Result<&[u8]> {
        if self.is_invalid() {
            Err(Error::encode(String::from_utf8_lossy(self.bytes()).into_owned()))
        } else {
            Ok(self.bytes())
        }
    }
}

/// How many rows ahead of the one being read a writer prefetches ([`prefetch`]): a time's rows
/// are read in key order, scattered over the buffers they were encoded into.
pub(crate) const PREFETCH_AHEAD: usize = 8;

/// Prefetches `row`'s bytes if it is an [`EncodedRow`] ([`EncodedRow::prefetch`]); nothing for
/// a typed row or none.
#[inline]
pub(crate) fn prefetch<V: 'static>(row: Option<&V>) {
    if let Some(encoded) = row.and_then(|r| (r as &dyn std::any::Any).downcast_ref::<EncodedRow>()) {
        encoded.prefetch();
    }
}

impl PartialEq for EncodedRow {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.bytes() == other.bytes()
    }
}

impl Eq for EncodedRow {}

impl PartialOrd for EncodedRow {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// By bytes, then valid rows before invalid ones; the buffer a row is in plays no part.
impl Ord for EncodedRow {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.bytes().cmp(other.bytes()).then(self.is_invalid().cmp(&other.is_invalid()))
    }
}

impl std::hash::Hash for EncodedRow {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bytes().hash(state);
        self.is_invalid().hash(state);
    }
}

/// Rows encoded one after the other into one buffer: [`push`](Self::push) each row, then
/// [`finish`](Self::finish) and [`take`](EncodedBuffer::take) each row's [`EncodedRow`], a slice
/// of the shared buffer.
#[derive(Default)]
pub struct EncodedRows {
    buf: Vec<u8>,
}

/// Where a pushed row's bytes are, or why it has none.
pub enum Encoded {
    /// The row's encoding: this range of the buffer.
    At(std::ops::Range<usize>),
    /// The row could not be encoded, for this reason.
    Invalid(String),
}

impl EncodedRows {
    /// Appends `row`'s JSON.
    pub fn push<V: Serialize + 'static>(&mut self, row: &V) -> Encoded {
        self.push_with(|buf| Self::write_json(row, buf))
    }

    /// Appends what `encode` writes; if it fails, nothing is kept and the row is invalid with its
    /// reason.
    pub fn push_with(&mut self, encode: impl FnOnce(&mut Vec<u8>) -> std::result::Result<(), String>) -> Encoded {
        let start = self.buf.len();
        match encode(&mut self.buf) {
            Ok(()) => Encoded::At(start..self.buf.len()),
            Err(e) => {
                self.buf.truncate(start);
                Encoded::Invalid(e)
            }
        }
    }

    /// `row`'s JSON (a [`JsonRow`]'s text, an [`EncodedRow`]'s bytes, or `sonic_rs`'s encoding).
    fn write_json<V: Serialize + 'static>(row: &V, buf: &mut Vec<u8>) -> std::result::Result<(), String> {
        let done = match (row as &dyn Any).downcast_ref::<JsonRow>() {
            Some(json) => {
                buf.extend_from_slice(json.as_str().as_bytes());
                Ok(())
            }
            None => match (row as &dyn Any).downcast_ref::<EncodedRow>() {
                Some(encoded) => match encoded.json() {
                    Ok(json) => {
                        buf.extend_from_slice(json);
                        Ok(())
                    }
                    Err(e) => return Err(e.message().to_string()),
                },
                None => sonic_rs::to_writer(&mut *buf, row).map_err(|e| e.to_string()),
            },
        };
        done.map_err(|e| format!("a row cannot be encoded as JSON: {e}"))
    }

    /// Makes room for `bytes` more bytes.
    pub fn reserve(&mut self, bytes: usize) {
        self.buf.reserve(bytes);
    }

    /// The bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True if nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The shared buffer the pushed rows are taken from.
    pub fn finish(self) -> EncodedBuffer {
        // Copied into an allocation of its exact size (with the reference counts): what a time's
        // rows hold is what the memory budget counts of them.
        EncodedBuffer(Arc::from(self.buf))
    }
}

/// The shared buffer of [`EncodedRows`], from which each row is taken.
pub struct EncodedBuffer(Arc<[u8]>);

impl EncodedBuffer {
    /// The row [`EncodedRows::push`] placed at `at`.
    pub fn take(&self, at: Encoded) -> EncodedRow {
        match at {
            Encoded::At(range) => EncodedRow::slice(&self.0, range),
            Encoded::Invalid(reason) => EncodedRow::invalid(reason),
        }
    }
}

/// Encodes a row of type `V` where it is produced, into the form its target takes (see the
/// [module docs](self)): appends the row's bytes, or says why it cannot be encoded. A connector
/// names its own ([`Connector::row_encoder`](crate::Connector::row_encoder)); [`json_encoder`]
/// is the default.
pub type RowEncoder<V> = Box<dyn FnMut(&V, &mut Vec<u8>) -> std::result::Result<(), String>>;

/// The row's JSON, as [`encode_json`](crate::encode::json::encode_json) writes it.
pub fn json_encoder<V: Serialize + 'static>() -> RowEncoder<V> {
    Box::new(|row: &V, buf: &mut Vec<u8>| EncodedRows::write_json(row, buf))
}

impl fmt::Debug for EncodedRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_invalid() {
            write!(f, "<row that cannot be encoded: {}>", String::from_utf8_lossy(self.bytes()))
        } else {
            write!(f, "{}", String::from_utf8_lossy(self.bytes()))
        }
    }
}

/// Between processes and in spill files (binary serializers) an encoded row travels as its bytes;
/// to a human-readable serializer (a target's own, say a key extractor reading its fields) it is
/// the value its JSON holds. A row in a target's own form (ClickHouse's RowBinary, JDBC cells)
/// holds no JSON: only its target's encoder reads it, and serializing it so is an error.
impl Serialize for EncodedRow {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return (self.is_invalid(), RawBytes(self.bytes())).serialize(s);
        }
        let json = self.json().map_err(|e| serde::ser::Error::custom(e.message()))?;
        let text = std::str::from_utf8(json).map_err(|e| serde::ser::Error::custom(e.to_string()))?;
        serialize_compact(text, s)
    }
}

impl<'de> Deserialize<'de> for EncodedRow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        if !d.is_human_readable() {
            let (invalid, SharedBytes(bytes)) = <(bool, SharedBytes)>::deserialize(d)?;
            return Ok(if invalid {
                EncodedRow::invalid(String::from_utf8_lossy(&bytes).into_owned())
            } else {
                let len = bytes.len();
                EncodedRow::slice(&bytes, 0..len)
            });
        }
        // A human-readable form (a row read back from JSON) is the JSON value itself, read
        // through a `serde_json` value (so an object's members come back in name order).
        let value = serde_json::Value::deserialize(d)?;
        Ok(EncodedRow::encode(&value))
    }
}

/// A row's bytes read back, in a buffer of their own.
struct SharedBytes(Arc<[u8]>);

impl<'de> Deserialize<'de> for SharedBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        deserialize_bytes(d, |b| SharedBytes(Arc::from(b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
    struct Row {
        id: u64,
        name: String,
        amount: f64,
        tags: Vec<String>,
        note: Option<String>,
    }

    fn row() -> Row {
        Row { id: 7, name: "zoë \"q\"\n".into(), amount: -0.5, tags: vec!["a".into()], note: None }
    }

    #[test]
    fn its_bytes_are_the_rows_json_in_field_order() {
        let e = EncodedRow::encode(&row());
        assert_eq!(e.json().unwrap(), serde_json::to_vec(&row()).unwrap().as_slice());
        assert!(std::str::from_utf8(e.json().unwrap()).unwrap().starts_with(r#"{"id":7,"name":"#));
    }

    #[test]
    fn equal_rows_are_equal_and_travel_through_binary_serializers() {
        let (a, b) = (EncodedRow::encode(&row()), EncodedRow::encode(&row().clone()));
        assert_eq!(a, b);
        let mut other = row();
        other.amount = 0.5;
        assert_ne!(a, EncodedRow::encode(&other));
        let bytes = bincode::serialize(&a).unwrap();
        assert_eq!(bincode::deserialize::<EncodedRow>(&bytes).unwrap(), a);
    }

    #[test]
    fn to_a_human_readable_serializer_it_is_its_value() {
        let e = EncodedRow::encode(&row());
        assert_eq!(serde_json::to_value(&e).unwrap(), serde_json::to_value(row()).unwrap());
        // Read back from a human-readable form, it is the same value (its members in name order).
        let back: EncodedRow = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(row()).unwrap());
    }

    #[test]
    fn rows_encoded_into_one_buffer_are_each_their_own_json() {
        let mut bad = std::collections::BTreeMap::new();
        bad.insert((1, 2), "x");
        let mut rows = EncodedRows::default();
        let a = rows.push(&row());
        // A row that fails half way leaves nothing of itself in the buffer.
        let b = rows.push(&(1u8, bad.clone()));
        let c = rows.push(&vec![serde_json::json!({"k": 1}), serde_json::Value::Null]);
        let d = rows.push(&JsonRow::parse(r#"{"b":1,"a":[true]}"#).unwrap());
        let buffer = rows.finish();
        let (a, b, c, d) = (buffer.take(a), buffer.take(b), buffer.take(c), buffer.take(d));
        assert_eq!(a, EncodedRow::encode(&row()));
        assert!(b.json().is_err());
        assert_eq!(c.json().unwrap(), br#"[{"k":1},null]"#);
        assert_eq!(d.json().unwrap(), br#"{"a":[true],"b":1}"#);
        drop(buffer);
        assert_eq!(
            serde_json::from_slice::<Row>(a.json().unwrap()).unwrap(),
            row(),
            "a row outlives the buffer's handle"
        );
    }

    #[test]
    fn a_row_is_24_bytes_besides_its_bytes() {
        assert_eq!(std::mem::size_of::<EncodedRow>(), 24);
    }

    #[test]
    fn a_reader_of_some_fields_reads_them_as_from_the_row() {
        use crate::key::{KeyColumns, KeyEncoding};
        let row = row();
        let e = EncodedRow::encode(&row);
        for columns in [vec!["id"], vec!["name", "id"], vec!["tags", "amount"], vec!["note"]] {
            let cols = KeyColumns::new(columns.iter().map(|c| c.to_string()).collect(), KeyEncoding::Json).unwrap();
            assert_eq!(cols.extract(&e), cols.extract(&row), "{columns:?}");
        }
    }

    #[test]
    fn a_row_that_cannot_be_encoded_keeps_the_reason() {
        let mut m = std::collections::BTreeMap::new();
        m.insert((1, 2), "pair keys are not JSON object keys");
        let e = EncodedRow::encode(&m);
        let err = e.json().unwrap_err().to_string();
        assert!(err.contains("key must be a string") || err.contains("cannot be encoded"), "{err}");
        assert!(format!("{e:?}").starts_with("<row that cannot be encoded"));
        let bytes = bincode::serialize(&e).unwrap();
        assert!(bincode::deserialize::<EncodedRow>(&bytes).unwrap().json().is_err(), "invalid survives the exchange");
    }
}
