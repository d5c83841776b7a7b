//! Byte strings in serde's binary formats: one length, then the bytes, written and read at once.
//!
//! serde's derived implementations treat `Vec<u8>`, `SmallVec<[u8; N]>` and `&[u8]` as sequences
//! of numbers: `bincode` writes the same bytes for them (a length, then one byte per element), but
//! element by element, and reads them back one `read_exact` at a time. Encoded rows and keys are
//! written to spill files and read back by the million, so they go through [`RawBytes`] and
//! [`deserialize_bytes`] instead: the same bytes on the wire, one write and one read each, and read
//! straight from the deserializer's buffer into the caller's type (one allocation for an
//! [`EncodedRow`](crate::encoded_row::EncodedRow), none for a short key).

use serde::de::{self, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};
use std::fmt;

/// Bytes serialized as bytes (`serialize_bytes`), not as a sequence of numbers.
pub(crate) struct RawBytes<'a>(pub(crate) &'a [u8]);

impl Serialize for RawBytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// Reads what [`RawBytes`] (or a derived byte sequence) wrote and makes `T` from the bytes,
/// borrowing them from the deserializer's buffer where it has one.
pub(crate) fn deserialize_bytes<'de, D, T, F>(d: D, make: F) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    F: FnOnce(&[u8]) -> T,
{
    struct Make<F>(F);
    impl<'de, T, F: FnOnce(&[u8]) -> T> Visitor<'de> for Make<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> std::result::Result<T, E> {
            Ok((self.0)(v))
        }
        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> std::result::Result<T, E> {
            Ok((self.0)(&v))
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<T, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
            while let Some(b) = seq.next_element()? {
                out.push(b);
            }
            Ok((self.0)(&out))
        }
    }
    d.deserialize_bytes(Make(make))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bincode::Options;

    /// The bytes written are the ones `bincode` writes for a derived byte sequence, and either
    /// form reads back.
    #[test]
    fn the_same_bytes_as_a_sequence_and_either_reads_back() {
        let bytes: Vec<u8> = (0..=255u8).chain(0..10).collect();
        let raw = bincode::serialize(&RawBytes(&bytes)).unwrap();
        assert_eq!(raw, bincode::serialize(&bytes).unwrap());
        let mut de = bincode::Deserializer::from_slice(&raw, bincode::options().with_fixint_encoding());
        assert_eq!(deserialize_bytes(&mut de, <[u8]>::to_vec).unwrap(), bytes);
        let mut reader = bincode::Deserializer::with_reader(&raw[..], bincode::options().with_fixint_encoding());
        assert_eq!(deserialize_bytes(&mut reader, <[u8]>::to_vec).unwrap(), bytes);
        // A human-readable format hands a sequence of numbers.
        let json = serde_json::to_string(&bytes).unwrap();
        let mut de = serde_json::Deserializer::from_str(&json);
        assert_eq!(deserialize_bytes(&mut de, <[u8]>::to_vec).unwrap(), bytes);
    }
}
