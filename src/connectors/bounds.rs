//! Bounds of one transaction for the connectors that commit early inside a time (Kafka, JDBC):
//! the options `transaction.max.records` and `transaction.max.bytes`, parsed in one place.
//!
//! A connector stages a time's records in a transaction; once the staged records reach either
//! bound it commits what it holds together with a progress record saying how many of the time's
//! changes are in (`partial`), so no transaction, and nothing the writer holds in memory, grows
//! with the size of a time. Both options take a positive count; the byte bound also takes a
//! `KiB` / `MiB` / `GiB` suffix. Zero or anything else is refused at creation, naming the option.

use crate::error::{Error, Result};
use crate::options::Options;

/// The record and byte bounds of one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnBounds {
    /// Commit once the transaction holds this many records (≥ 1).
    pub max_records: u64,
    /// … or this many bytes (≥ 1), as the connector counts them.
    pub max_bytes: u64,
}

impl TxnBounds {
    /// The option naming the record bound.
    pub const RECORDS: &'static str = "transaction.max.records";
    /// The option naming the byte bound.
    pub const BYTES: &'static str = "transaction.max.bytes";

    /// Takes both options from `opts`, keeping `default`'s value for an option not given.
    pub fn parse(opts: &mut Options, default: TxnBounds) -> Result<TxnBounds> {
        let mut b = default;
        if let Some(n) = opts.take_parsed::<u64>(Self::RECORDS, "a positive record count")? {
            b.max_records = positive(opts, Self::RECORDS, n, default.max_records)?;
        }
        if let Some(v) = opts.take(Self::BYTES) {
            let n = crate::options::parse_bytes(Self::BYTES, &v)? as u64;
            b.max_bytes = positive(opts, Self::BYTES, n, default.max_bytes)?;
        }
        Ok(b)
    }

    /// Whether a transaction holding `records` records of `bytes` bytes is full.
    pub fn reached(&self, records: u64, bytes: u64) -> bool {
        records >= self.max_records || bytes >= self.max_bytes
    }
}

fn positive(opts: &Options, key: &str, n: u64, default: u64) -> Result<u64> {
    if n == 0 {
        return Err(Error::config(format!(
            "option {} = 0: a transaction needs room for at least one record; give a positive bound (default {default})",
            opts.shown(key)
        )));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: TxnBounds = TxnBounds { max_records: 10, max_bytes: 100 };

    fn parse(pairs: &[&str]) -> Result<TxnBounds> {
        let mut o = Options::parse_pairs(pairs.iter().copied()).expect("pairs");
        TxnBounds::parse(&mut o, DEFAULT)
    }

    #[test]
    fn bounds_are_parsed_defaulted_and_refused_by_name() {
        assert_eq!(parse(&[]).unwrap(), DEFAULT);
        let b = parse(&["transaction.max.records=3", "transaction.max.bytes=2MiB"]).unwrap();
        assert_eq!(b, TxnBounds { max_records: 3, max_bytes: 2 << 20 });
        assert!(b.reached(3, 0) && b.reached(0, 2 << 20) && !b.reached(2, 10));
        for bad in [
            "transaction.max.records=0",
            "transaction.max.records=x",
            "transaction.max.bytes=0",
            "transaction.max.bytes=lots",
        ] {
            let e = parse(&[bad]).unwrap_err();
            let option = bad.split('=').next().unwrap_or_default();
            assert!(e.to_string().contains(option), "{bad}: {e}");
        }
    }
}
