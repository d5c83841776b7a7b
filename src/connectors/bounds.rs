//! Bounds of one transaction for the connectors that commit early inside a time (Kafka, JDBC):
//! the options `transaction.max.records` and `transaction.max.bytes`, parsed in one place, and
//! [`PartialTime`], the count of a time's changes that such a commit records and a resume skips.
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

/// Where a writer stands inside the time it writes, for commits inside a time: how many of the
/// time's items (changes, records) it has passed, and how many of them an earlier run committed,
/// which a resume skips. A time's items come in a deterministic order, in one or several
/// consecutive writes, so the first `n` are the ones an earlier run's `partial = n` covered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartialTime {
    /// The earlier run's split time and how many of its items it committed.
    resume: Option<(u64, u64)>,
    time: Option<u64>,
    count: u64,
    skip_left: u64,
}

impl PartialTime {
    /// A writer resuming at `frontier` (its time, or `None` once complete) of which an earlier
    /// run committed `partial` items.
    pub fn resumed(frontier: Option<u64>, partial: u64) -> Self {
        let resume = frontier.filter(|_| partial > 0).map(|t| (t, partial));
        PartialTime { resume, ..PartialTime::default() }
    }

    /// Called with the time of every write: true when it starts a new time (the count restarts,
    /// and the committed items of the earlier run's split time are to be skipped).
    pub fn enter(&mut self, time: u64) -> bool {
        if self.time == Some(time) {
            return false;
        }
        self.time = Some(time);
        self.count = 0;
        self.skip_left = match self.resume {
            Some((t, n)) if t == time => n,
            _ => 0,
        };
        if self.resume.is_some_and(|(t, _)| time >= t) {
            self.resume = None;
        }
        true
    }

    /// How many of the next `available` items an earlier run committed: they are counted as
    /// passed, and the writer skips them.
    pub fn skip_committed(&mut self, available: usize) -> usize {
        let n = usize::try_from(self.skip_left).unwrap_or(usize::MAX).min(available);
        self.skip_left -= n as u64;
        self.count += n as u64;
        n
    }

    /// Counts one item the writer sends or stages.
    pub fn advance(&mut self) {
        self.count += 1;
    }

    /// How many items of the current time are passed: what a commit inside it records.
    pub fn count(&self) -> u64 {
        self.count
    }
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

    #[test]
    fn a_partial_time_is_skipped_once_across_writes_and_counted() {
        let mut p = PartialTime::resumed(Some(4), 5);
        assert!(p.enter(4));
        assert_eq!(p.skip_committed(3), 3, "the first write is all committed");
        assert!(!p.enter(4), "the same time, in a second write");
        assert_eq!(p.skip_committed(10), 2, "the rest of the five");
        p.advance();
        assert_eq!(p.count(), 6);
        assert!(p.enter(5));
        assert_eq!((p.skip_committed(10), p.count()), (0, 0), "a later time skips nothing");
        // Entering the split time again (a redelivery in the same run) skips nothing either.
        assert!(p.enter(4));
        assert_eq!(p.skip_committed(10), 0);
        assert_eq!(PartialTime::resumed(None, 5), PartialTime::default(), "nothing to skip once complete");
        assert_eq!(PartialTime::resumed(Some(4), 0), PartialTime::default());
    }
}
