//! ClickHouse's `RowBinary` format, written straight from a row's `serde::Serialize`
//! implementation and driven by the column types the server reports in `system.columns`.
//!
//! This module is pure logic (no I/O): [`ChType::parse`] reads a type such as
//! `Nullable(Decimal(18, 4))`, and a [`RowBinaryEncoder`] built from a table's columns appends rows
//! as `RowBinary` to a block. Each value is checked against its column's type and converted the way
//! the server would read the same value as JSON; a value that does not fit (out of range, too many
//! decimal places, a NULL for a non-`Nullable` column, an unknown enum name, a string that is not a
//! date…) is an [`EncodeError`] naming the column and its type — nothing is truncated or wrapped.
//!
//! # Supported types
//!
//! | ClickHouse type | accepted values |
//! |---|---|
//! | `UInt8/16/32/64`, `Int8/16/32/64` | integers in range, booleans (0/1), integral floats, numeric strings |
//! | `Float32`, `Float64` | numbers, numeric strings |
//! | `Bool` | booleans, 0/1 |
//! | `Decimal(P, S)`, `Decimal32/64/128(S)` | integers, floats (by their shortest decimal text), decimal strings; at most `S` decimal places and `P` digits |
//! | `String` | strings, chars, bytes, unit enum variants |
//! | `FixedString(N)` | strings or bytes of at most `N` bytes (zero-padded) |
//! | `Date` | `YYYY-MM-DD`, or days since 1970-01-01 |
//! | `DateTime`, `DateTime('tz')` | Unix seconds; `YYYY-MM-DD[ hh:mm:ss]` (also with `T`) with a `Z` or `±hh:mm` offset, or without one when the column's time zone is UTC |
//! | `UUID` | the usual hyphenated text |
//! | `Enum8`, `Enum16` | a member's name, or its number |
//! | `Nullable(T)` | `None`/unit as NULL, or a value of `T` |
//! | `LowCardinality(T)` | as `T` (the same bytes in `RowBinary`) |
//! | `Array(T)` | sequences of `T` |
//!
//! Any other type (`Tuple`, `Map`, `IPv4`, `DateTime64`, 128/256-bit integers, …) makes
//! [`RowBinaryEncoder::new`] return the columns it cannot write; the sink then writes that table
//! as `JSONEachRow`, as it always did, rather than refusing it — slower, but nothing that worked
//! stops working.
//!
//! # Columns of a block
//!
//! A `RowBinary` insert names its columns (`INSERT INTO t (a, b) FORMAT RowBinary`) and every row
//! carries all of them, in that order. The encoder takes the column list from the fields of the
//! first row, in the order the row serializes them, so a struct's fields go straight into the block
//! without reordering. A row whose fields come in another order is reordered; a row with another
//! *set* of fields (a map row with a field left out) is not written, and
//! [`RowBinaryEncoder::encode`] returns its fields instead: the caller ends the block and starts a
//! new one with those columns ([`RowBinaryEncoder::set_columns`]), so columns a row leaves out get
//! the server's default, as they would in `JSONEachRow`.
//!
//! The module's parts: `types` (the ClickHouse type grammar), `value` (one value into one
//! column), `row` (rows into a block's columns), `described` (rows that carry which columns they
//! fill, encoded where they are produced and inserted by another worker).

mod described;
mod row;
mod types;
mod value;

pub use crate::encode::civil::days_from_civil;
pub use row::{Encoded, RowBinaryEncoder};
pub use types::ChType;
pub use value::{put_leb128, EncodeError};

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{ser, Serialize};

    /// Encodes `v` as the single column `c` of type `ty`.
    fn enc<T: Serialize>(ty: &str, v: T) -> Result<Vec<u8>, EncodeError> {
        #[derive(Serialize)]
        struct R<T> {
            c: T,
        }
        let mut e = RowBinaryEncoder::new([("c", ty)], "UTC").unwrap();
        e.set_columns(vec![0]);
        let mut out = Vec::new();
        assert_eq!(e.encode(&R { c: v }, &mut out)?, Encoded::Written);
        Ok(out)
    }

    fn reason(r: Result<Vec<u8>, EncodeError>) -> String {
        match r {
            Err(EncodeError::Value { column, reason, .. }) => {
                assert_eq!(column, "c");
                reason
            }
            other => panic!("expected a value error, got {other:?}"),
        }
    }

    #[test]
    fn parses_types() {
        let p = |s: &str| ChType::parse(s, "UTC");
        assert_eq!(p("UInt8"), Ok(ChType::UInt8));
        assert_eq!(p("Decimal32(3)"), Ok(ChType::Decimal { precision: 9, scale: 3 }));
        assert_eq!(p("Decimal(38, 10)"), Ok(ChType::Decimal { precision: 38, scale: 10 }));
        assert_eq!(p("FixedString(16)"), Ok(ChType::FixedString(16)));
        assert_eq!(
            p("Enum8('a' = 1, 'it\\'s, ok' = -2)"),
            Ok(ChType::Enum8(vec![("a".into(), 1), ("it's, ok".into(), -2)]))
        );
        assert_eq!(
            p("DateTime('Europe/Berlin')"),
            Ok(ChType::DateTime { tz: Some("Europe/Berlin".into()), utc: false })
        );
        assert_eq!(ChType::parse("DateTime", "Etc/UTC"), Ok(ChType::DateTime { tz: None, utc: true }));
        assert_eq!(ChType::parse("DateTime", "Asia/Tokyo"), Ok(ChType::DateTime { tz: None, utc: false }));
        assert_eq!(
            p("Array(Nullable(String))"),
            Ok(ChType::Array(Box::new(ChType::Nullable(Box::new(ChType::String)))))
        );
        assert_eq!(p("Array(Tuple(UInt8, String))"), Err("Tuple(UInt8, String)".into()));
        for bad in ["IPv4", "DateTime64(3)", "Int128", "Map(String, UInt8)", "Decimal(40, 2)", "Nothing"] {
            assert!(p(bad).is_err(), "{bad}");
        }
        for s in ["Nullable(Decimal(18, 4))", "Enum16('x' = 300)", "LowCardinality(String)", "DateTime('UTC')"] {
            assert_eq!(p(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn integers_are_little_endian_and_range_checked() {
        assert_eq!(enc("UInt8", 200u8).unwrap(), [200]);
        assert_eq!(enc("UInt16", 0x1234u16).unwrap(), [0x34, 0x12]);
        assert_eq!(enc("UInt32", 0x1234_5678u32).unwrap(), [0x78, 0x56, 0x34, 0x12]);
        assert_eq!(enc("UInt64", u64::MAX).unwrap(), [0xff; 8]);
        assert_eq!(enc("Int8", -1i8).unwrap(), [0xff]);
        assert_eq!(enc("Int16", -2i64).unwrap(), [0xfe, 0xff]);
        assert_eq!(enc("Int32", i32::MIN).unwrap(), [0, 0, 0, 0x80]);
        assert_eq!(enc("Int64", -1i64).unwrap(), [0xff; 8]);
        assert_eq!(enc("UInt32", true).unwrap(), [1, 0, 0, 0]);
        assert_eq!(enc("UInt16", 7.0f64).unwrap(), [7, 0]);
        assert_eq!(enc("Int32", "-12").unwrap(), (-12i32).to_le_bytes());
        assert_eq!(reason(enc("UInt8", 256u32)), "256 is out of range");
        assert_eq!(reason(enc("UInt32", -1i32)), "-1 is out of range");
        assert_eq!(reason(enc("Int64", u64::MAX)), "18446744073709551615 is out of range");
        assert_eq!(reason(enc("Int8", 1.5f64)), "1.5 is not an integer");
        assert_eq!(reason(enc("UInt16", "x1")), "`x1` is not an integer");
        assert_eq!(enc("Bool", true).unwrap(), [1]);
        assert_eq!(reason(enc("Bool", 2u8)), "2 is out of range");
    }

    #[test]
    fn floats() {
        assert_eq!(enc("Float64", 1.5f64).unwrap(), 1.5f64.to_le_bytes());
        assert_eq!(enc("Float64", 3u8).unwrap(), 3f64.to_le_bytes());
        assert_eq!(enc("Float32", 0.1f32).unwrap(), 0.1f32.to_le_bytes());
        assert_eq!(enc("Float32", 0.1f64).unwrap(), 0.1f32.to_le_bytes());
        assert_eq!(enc("Float32", "0.1").unwrap(), 0.1f32.to_le_bytes());
        assert_eq!(enc("Float64", f64::NEG_INFINITY).unwrap(), f64::NEG_INFINITY.to_le_bytes());
        assert_eq!(reason(enc("Float32", 1e300f64)), "1e300 is out of range");
        assert!(reason(enc("Float64", true)).contains("a boolean cannot be written to a Float64 column"));
    }

    #[test]
    fn strings_and_fixed_strings() {
        assert_eq!(enc("String", "").unwrap(), [0]);
        assert_eq!(enc("String", "日本").unwrap(), [6, 0xe6, 0x97, 0xa5, 0xe6, 0x9c, 0xac]);
        let long = "x".repeat(300);
        let mut want = vec![0xac, 0x02];
        want.extend_from_slice(long.as_bytes());
        assert_eq!(enc("String", &long).unwrap(), want);
        assert_eq!(enc("String", 'é').unwrap(), [2, 0xc3, 0xa9]);
        assert_eq!(enc("FixedString(4)", "ab").unwrap(), [b'a', b'b', 0, 0]);
        assert_eq!(enc("FixedString(2)", serde_bytes_like(&[1, 2])).unwrap(), [1, 2]);
        assert_eq!(reason(enc("FixedString(2)", "abc")), "3 bytes do not fit in 2");
        assert!(reason(enc("String", 5u8)).contains("the number 5 cannot be written to a String column"));
    }

    struct Bytes<'a>(&'a [u8]);
    impl Serialize for Bytes<'_> {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }
    fn serde_bytes_like(b: &[u8]) -> Bytes<'_> {
        Bytes(b)
    }

    #[test]
    fn nullable_and_option() {
        assert_eq!(enc("Nullable(UInt16)", None::<u16>).unwrap(), [1]);
        assert_eq!(enc("Nullable(UInt16)", Some(5u16)).unwrap(), [0, 5, 0]);
        assert_eq!(enc("Nullable(String)", "a").unwrap(), [0, 1, b'a']);
        assert_eq!(enc("UInt16", Some(5u16)).unwrap(), [5, 0]);
        assert_eq!(reason(enc("UInt16", None::<u16>)), "NULL cannot be written to a column that is not Nullable");
        assert_eq!(enc("LowCardinality(Nullable(String))", None::<&str>).unwrap(), [1]);
        assert_eq!(enc("LowCardinality(String)", "ab").unwrap(), [2, b'a', b'b']);
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(enc("Date", "1970-01-01").unwrap(), [0, 0]);
        assert_eq!(enc("Date", "2000-03-01").unwrap(), 11_017u16.to_le_bytes());
        assert_eq!(enc("Date", 11_017u16).unwrap(), 11_017u16.to_le_bytes());
        assert_eq!(reason(enc("Date", "2023-02-29")), "`2023-02-29` is not a date (YYYY-MM-DD)");
        assert!(reason(enc("Date", "1969-12-31")).contains("outside the Date range"));
        assert_eq!(enc("DateTime", "2001-09-09 01:46:40").unwrap(), 1_000_000_000u32.to_le_bytes());
        assert_eq!(enc("DateTime", "2001-09-09T03:46:40+02:00").unwrap(), 1_000_000_000u32.to_le_bytes());
        assert_eq!(enc("DateTime", "2001-09-08T22:46:40-03:00").unwrap(), 1_000_000_000u32.to_le_bytes());
        assert_eq!(enc("DateTime('Asia/Tokyo')", "2001-09-09T01:46:40Z").unwrap(), 1_000_000_000u32.to_le_bytes());
        assert_eq!(enc("DateTime", "2001-09-09").unwrap(), 999_993_600u32.to_le_bytes());
        assert_eq!(enc("DateTime('Asia/Tokyo')", 1_000_000_000u32).unwrap(), 1_000_000_000u32.to_le_bytes());
        assert!(reason(enc("DateTime('Asia/Tokyo')", "2001-09-09 01:46:40")).contains("not UTC"));
        assert!(reason(enc("DateTime", "2001-09-09 25:00:00")).contains("is not a date-time"));
        assert!(reason(enc("DateTime", -1i64)).contains("out of range"));
        // days_from_civil against known dates.
        assert_eq!(days_from_civil(2000, 1, 1), 10_957);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2106, 2, 7), 49_710);
    }

    #[test]
    fn decimals() {
        assert_eq!(enc("Decimal(9, 2)", "123.45").unwrap(), 12_345i32.to_le_bytes());
        assert_eq!(enc("Decimal(9, 2)", "-0.5").unwrap(), (-50i32).to_le_bytes());
        assert_eq!(enc("Decimal(18, 4)", 1.25f64).unwrap(), 12_500i64.to_le_bytes());
        assert_eq!(enc("Decimal(18, 4)", 7u8).unwrap(), 70_000i64.to_le_bytes());
        assert_eq!(enc("Decimal(38, 2)", "-1.5").unwrap(), (-150i128).to_le_bytes());
        assert_eq!(enc("Decimal64(3)", 0.1f64).unwrap(), 100i64.to_le_bytes());
        assert_eq!(reason(enc("Decimal(9, 2)", "1.234")), "1.234 has more than 2 decimal places");
        assert_eq!(enc("Decimal(9, 2)", "1.230").unwrap(), 123i32.to_le_bytes(), "trailing zeros are not places");
        assert_eq!(reason(enc("Decimal(4, 2)", "100.5")), "10050 (unscaled) has more than 4 digits");
        assert!(reason(enc("Decimal(9, 2)", "1e5")).contains("not a decimal number"));
    }

    #[test]
    fn uuids_and_enums() {
        let u = "61f0c404-5cb3-11e7-907b-a6006ad3dba0";
        let mut want = 0x61f0_c404_5cb3_11e7u64.to_le_bytes().to_vec();
        want.extend_from_slice(&0x907b_a600_6ad3_dba0u64.to_le_bytes());
        assert_eq!(enc("UUID", u).unwrap(), want);
        assert_eq!(reason(enc("UUID", "61f0c404")), "`61f0c404` is not a UUID");
        assert_eq!(enc("Enum8('a' = 1, 'b' = -2)", "b").unwrap(), [0xfe]);
        assert_eq!(enc("Enum8('a' = 1, 'b' = -2)", 1u8).unwrap(), [1]);
        assert_eq!(enc("Enum16('a' = 1, 'b' = 300)", "b").unwrap(), 300i16.to_le_bytes());
        assert_eq!(reason(enc("Enum8('a' = 1)", "c")), "`c` is not a member of the enum");
        assert_eq!(reason(enc("Enum8('a' = 1)", 2u8)), "2 is not a value of the enum");
        #[derive(Serialize)]
        enum E {
            A,
        }
        assert_eq!(enc("Enum8('A' = 3)", E::A).unwrap(), [3]);
    }

    #[test]
    fn arrays() {
        assert_eq!(enc("Array(UInt8)", vec![1u8, 2, 3]).unwrap(), [3, 1, 2, 3]);
        assert_eq!(enc("Array(String)", ["a", "bc"]).unwrap(), [2, 1, b'a', 2, b'b', b'c']);
        assert_eq!(enc("Array(Nullable(Int8))", vec![None, Some(-1i8)]).unwrap(), [2, 1, 0, 0xff]);
        assert_eq!(enc("Array(Array(UInt8))", vec![vec![], vec![9u8]]).unwrap(), [2, 0, 1, 9]);
        assert_eq!(reason(enc("Array(UInt8)", vec![300u16])), "300 is out of range");
        assert!(reason(enc("UInt8", vec![1u8])).contains("a sequence cannot be written"));
    }

    #[derive(Serialize)]
    struct Abc {
        a: u8,
        b: &'static str,
        c: Option<i16>,
    }

    fn abc() -> RowBinaryEncoder {
        RowBinaryEncoder::new([("c", "Nullable(Int16)"), ("a", "UInt8"), ("b", "String"), ("d", "UInt8")], "UTC")
            .unwrap()
    }

    #[test]
    fn the_first_row_sets_the_columns_and_later_rows_follow() {
        let mut e = abc();
        let mut out = Vec::new();
        let row = Abc { a: 1, b: "x", c: Some(-1) };
        let Encoded::Columns(cols) = e.encode(&row, &mut out).unwrap() else { panic!("no columns yet") };
        assert!(out.is_empty());
        e.set_columns(cols);
        assert_eq!(e.columns().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(e.encode(&row, &mut out).unwrap(), Encoded::Written);
        assert_eq!(out, [1, 1, b'x', 0, 0xff, 0xff]);
        // A map with the same fields in another order is reordered to the block's columns.
        let m: std::collections::BTreeMap<&str, serde_json::Value> =
            [("c", serde_json::Value::Null), ("b", "yz".into()), ("a", 2.into())].into_iter().collect();
        out.clear();
        assert_eq!(e.encode(&m, &mut out).unwrap(), Encoded::Written);
        assert_eq!(out, [2, 2, b'y', b'z', 1]);
        // Another set of fields is not written: the caller starts a block with these columns.
        let m2: std::collections::BTreeMap<&str, u8> = [("a", 3), ("d", 4)].into_iter().collect();
        out.clear();
        assert_eq!(e.encode(&m2, &mut out).unwrap(), Encoded::Columns(vec![1, 3]));
        assert!(out.is_empty());
        e.set_columns(vec![1, 3]);
        assert_eq!(e.encode(&m2, &mut out).unwrap(), Encoded::Written);
        assert_eq!(out, [3, 4]);
    }

    #[test]
    fn errors_leave_nothing_behind_and_name_the_column() {
        let mut e = abc();
        e.set_columns(vec![1, 2, 0]);
        let mut out = vec![42];
        let err = e.encode(&Abc { a: 1, b: "x", c: Some(1) }, &mut out);
        assert_eq!(err, Ok(Encoded::Written));
        out.truncate(1);
        #[derive(Serialize)]
        struct Big {
            a: u32,
            b: &'static str,
            c: i16,
        }
        let err = e.encode(&Big { a: 999, b: "x", c: 1 }, &mut out).unwrap_err();
        assert_eq!(out, [42]);
        assert_eq!(err.to_string(), "column `a` (UInt8): 999 is out of range");
        #[derive(Serialize)]
        struct Extra {
            a: u8,
            zz: u8,
        }
        assert_eq!(e.encode(&Extra { a: 1, zz: 2 }, &mut out), Err(EncodeError::UnknownColumn("zz".into())));
        assert!(matches!(e.encode(&5u8, &mut out), Err(EncodeError::Row(m)) if m.contains("structs or maps")));
        assert_eq!(out, [42]);
    }

    #[test]
    fn unsupported_columns_are_listed() {
        let e = RowBinaryEncoder::new([("a", "UInt8"), ("t", "Tuple(UInt8, String)"), ("x", "Array(IPv6)")], "UTC")
            .unwrap_err();
        assert_eq!(e, vec![("t".into(), "Tuple(UInt8, String)".into()), ("x".into(), "Array(IPv6) (IPv6)".into())]);
    }

    #[test]
    fn leb128() {
        for (n, want) in [(0u64, vec![0u8]), (127, vec![127]), (128, vec![0x80, 1]), (300, vec![0xac, 2])] {
            let mut out = Vec::new();
            put_leb128(&mut out, n);
            assert_eq!(out, want, "{n}");
        }
    }
}
