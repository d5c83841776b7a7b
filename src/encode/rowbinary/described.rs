//! Rows that name their columns: the form in which a ClickHouse sink's rows are encoded where
//! they are produced and travel to the worker that inserts them.
//!
//! A `RowBinary` row is only its values; which columns they fill is said once per insert block.
//! A row encoded on one worker and inserted by another must carry that itself, so a *described*
//! row is
//!
//! ```text
//!   fingerprint (4 bytes, LE) │ present columns (1 bit per column of the table) │ RowBinary values
//! ```
//!
//! * The values are in the table's column order, whatever order the row's fields come in, so the
//!   same row encodes to the same bytes on every worker and an update and its retraction cancel
//!   by their bytes. A row whose fields come in table order (a struct declared like the table) is
//!   written straight through; any other order is reordered through the encoder's slots.
//! * The fingerprint identifies the columns (names, types, the server's time zone) the row was
//!   encoded for. Its first byte has the top bit set, so a described row is never taken for a
//!   row's JSON, which starts with an ASCII byte. The inserting worker reads the table itself; if what it read differs (the table
//!   was altered while the sink started), [`RowBinaryEncoder::described`] refuses the row instead
//!   of inserting values into the wrong columns.
//! * A row with another set of fields (a map row leaving a column out) has another bitmap: the
//!   inserting worker starts an insert block naming those columns, as it does for typed rows.

use super::row::{Encoded, RowBinaryEncoder};
use super::value::EncodeError;
use serde::Serialize;

/// Bytes before a described row's bitmap: the fingerprint.
const FINGERPRINT: usize = 4;

impl RowBinaryEncoder {
    /// Bytes of a described row's header: the fingerprint and one bit per column.
    pub fn header_len(&self) -> usize {
        FINGERPRINT + self.column_count().div_ceil(8)
    }

    /// Appends `row` as a described row: a fingerprint of the encoder's columns, a bitmap of the
    /// columns the row fills, and its values in table order. On an error nothing is appended.
    pub fn encode_described<R: Serialize + ?Sized>(&mut self, row: &R, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        let header = self.header_len();
        out.extend_from_slice(&self.fingerprint().to_le_bytes());
        out.resize(start + header, 0);
        match self.encode(row, out) {
            Ok(Encoded::Written) => {}
            Ok(Encoded::Columns(mut columns)) => {
                // A row with other columns than the last one's (the first row, say): its values
                // are in the encoder's slots, written in table order once the columns are set.
                columns.sort_unstable();
                self.set_columns(columns);
                self.write_slots(out);
            }
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        }
        let bitmap = &mut out[start + FINGERPRINT..start + header];
        for i in self.list() {
            bitmap[i / 8] |= 1 << (i % 8);
        }
        Ok(())
    }

    /// A described row's bitmap of present columns and its `RowBinary` values, if it was encoded
    /// for this encoder's columns.
    pub fn described<'a>(&self, row: &'a [u8]) -> Result<(&'a [u8], &'a [u8]), EncodeError> {
        let header = self.header_len();
        let fingerprint = row.get(..FINGERPRINT).map(|f| u32::from_le_bytes([f[0], f[1], f[2], f[3]]));
        if row.len() < header || fingerprint != Some(self.fingerprint()) {
            return Err(EncodeError::Row(
                "the row was encoded for other columns than the table now has (was the table altered while the \
                 sink started?); restart the sink"
                    .into(),
            ));
        }
        Ok((&row[FINGERPRINT..header], &row[header..]))
    }

    /// The columns a bitmap of a [`described`](Self::described) row names, in table order.
    pub fn columns_of(&self, bitmap: &[u8]) -> Vec<usize> {
        (0..self.column_count()).filter(|i| bitmap.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn encoder() -> RowBinaryEncoder {
        RowBinaryEncoder::new([("a", "UInt8"), ("b", "String"), ("c", "Nullable(UInt16)")], "UTC").unwrap()
    }

    #[derive(Serialize)]
    struct InOrder {
        a: u8,
        b: &'static str,
        c: Option<u16>,
    }

    #[derive(Serialize)]
    struct Reversed {
        c: Option<u16>,
        b: &'static str,
        a: u8,
    }

    fn described(enc: &mut RowBinaryEncoder, row: &impl Serialize) -> Vec<u8> {
        let mut out = Vec::new();
        enc.encode_described(row, &mut out).unwrap();
        out
    }

    #[test]
    fn the_same_row_is_the_same_bytes_whatever_its_field_order() {
        let mut enc = encoder();
        let a = described(&mut enc, &InOrder { a: 1, b: "x", c: Some(2) });
        let b = described(&mut enc, &Reversed { c: Some(2), b: "x", a: 1 });
        let again = described(&mut enc, &InOrder { a: 1, b: "x", c: Some(2) });
        assert_eq!(a, b);
        assert_eq!(a, again);
        let (bitmap, values) = enc.described(&a).unwrap();
        assert_eq!(enc.columns_of(bitmap), vec![0, 1, 2]);
        assert_eq!(values, [1, 1, b'x', 0, 2, 0]);
    }

    #[test]
    fn a_row_leaving_a_column_out_names_the_columns_it_has() {
        let mut enc = encoder();
        let mut row = BTreeMap::new();
        row.insert("c", 5u16);
        row.insert("a", 1u16);
        let bytes = described(&mut enc, &row);
        let (bitmap, values) = enc.described(&bytes).unwrap();
        assert_eq!(enc.columns_of(bitmap), vec![0, 2]);
        assert_eq!(values, [1, 0, 5, 0]);
        // An encoder of other columns (here, another time zone) refuses the row.
        let other =
            RowBinaryEncoder::new([("a", "UInt8"), ("b", "String"), ("c", "Nullable(UInt16)")], "Asia/Tokyo").unwrap();
        assert!(other.described(&bytes).is_err());
        assert!(enc.described(&bytes[..2]).is_err());
    }

    #[test]
    fn a_row_that_does_not_fit_appends_nothing() {
        let mut enc = encoder();
        let mut out = vec![9];
        #[derive(Serialize)]
        struct Bad {
            a: u32,
        }
        assert!(enc.encode_described(&Bad { a: 300 }, &mut out).is_err());
        assert_eq!(out, [9]);
        // An unknown field's error survives the trip as text to the inserting worker.
        #[derive(Serialize)]
        struct Unknown {
            z: u8,
        }
        let e = enc.encode_described(&Unknown { z: 1 }, &mut out).unwrap_err();
        assert_eq!(e, EncodeError::UnknownColumn("z".into()));
        assert_eq!(EncodeError::from_reason(&e.to_string()), e);
        assert_eq!(out, [9]);
    }
}
