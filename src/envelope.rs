//! Envelopes: what each change becomes in each sink format. Pure, no I/O.
//!
//! | change of key k at t | append-only          | upsert        | Debezium                                   |
//! |----------------------|----------------------|---------------|--------------------------------------------|
//! | insert v             | row v                | (k, v)        | op `c`, before null, after v               |
//! | update v → w         | refused / row w *    | (k, w)        | op `u`, before v, after w                  |
//! | delete v             | refused / nothing *  | (k, tombstone)| op `d`, before v, after null (+ tombstone) |
//!
//! \* with `force_append_only`, RisingWave's rule: deletes are dropped and updates become inserts.
//! Without it an append-only sink stops at the first retraction with an error that says so.

use crate::error::{Error, ErrorKind, Result};
use differential_sinks_operators::Change;
use std::fmt::Debug;

/// The sink format (`type` option).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// Inserts only (`type = append-only`).
    AppendOnly {
        /// Drop deletes and turn updates into inserts instead of refusing retractions.
        force: bool,
    },
    /// The latest value per key, tombstones for deletes (`type = upsert`).
    Upsert,
    /// Debezium change events (`type = debezium`).
    Debezium {
        /// Follow each delete event with a tombstone (for Kafka log compaction).
        tombstone_after_delete: bool,
    },
}

impl Format {
    /// The option value that selects this format.
    pub fn name(&self) -> &'static str {
        match self {
            Format::AppendOnly { .. } => "append-only",
            Format::Upsert => "upsert",
            Format::Debezium { .. } => "debezium",
        }
    }
    /// True if the format keeps per-key state in the target (and so needs a primary key).
    pub fn is_keyed(&self) -> bool {
        !matches!(self, Format::AppendOnly { .. })
    }
}

/// The operation a record stands for (Debezium's `op`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// A new row (`c`).
    Create,
    /// A changed row (`u`).
    Update,
    /// A removed row (`d`).
    Delete,
}

impl Op {
    /// Debezium's one-letter code.
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
        }
    }
}

/// One record a change turns into, before encoding.
#[derive(Debug, PartialEq, Eq)]
pub enum Emission<'a, V> {
    /// The row itself as the value (append-only; upsert insert or update).
    Row {
        /// Insert or update.
        op: Op,
        /// The row.
        row: &'a V,
    },
    /// A key with no value: the key was deleted.
    Tombstone,
    /// A Debezium event.
    Debezium {
        /// c, u or d.
        op: Op,
        /// The previous value.
        before: Option<&'a V>,
        /// The new value.
        after: Option<&'a V>,
    },
}

impl Format {
    /// Calls `emit` with the records `change` becomes (none, one or two).
    ///
    /// ```
    /// use differential_sinks::envelope::{Format, Emission, Op};
    /// use differential_sinks_operators::Change;
    /// let delete = Change { key: 1, before: Some("a"), after: None };
    /// let mut out = Vec::new();
    /// Format::Debezium { tombstone_after_delete: true }.emit(&delete, |e| out.push(e)).unwrap();
    /// assert_eq!(out, vec![Emission::Debezium { op: Op::Delete, before: Some(&"a"), after: None }, Emission::Tombstone]);
    /// ```
    #[inline]
    pub fn emit<'a, K: Debug, V>(&self, change: &'a Change<K, V>, mut emit: impl FnMut(Emission<'a, V>)) -> Result<()> {
        match self {
            Format::Upsert => match &change.after {
                Some(row) => emit(Emission::Row { op: if change.before.is_some() { Op::Update } else { Op::Create }, row }),
                None => emit(Emission::Tombstone),
            },
            Format::AppendOnly { force } => match (&change.before, &change.after) {
                (None, Some(row)) => emit(Emission::Row { op: Op::Create, row }),
                (Some(_), after) if *force => {
                    if let Some(row) = after {
                        emit(Emission::Row { op: Op::Create, row });
                    }
                }
                _ => {
                    return Err(Error::new(
                        ErrorKind::AppendOnly,
                        format!(
                            "the collection retracted key {:?}, but the sink is append-only; set `force_append_only = true` \
                             to drop deletes and turn updates into inserts, or use `type = upsert`",
                            change.key
                        ),
                    ))
                }
            },
            Format::Debezium { tombstone_after_delete } => {
                let op = match (&change.before, &change.after) {
                    (None, _) => Op::Create,
                    (Some(_), Some(_)) => Op::Update,
                    (Some(_), None) => Op::Delete,
                };
                emit(Emission::Debezium { op, before: change.before.as_ref(), after: change.after.as_ref() });
                if op == Op::Delete && *tombstone_after_delete {
                    emit(Emission::Tombstone);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: &Format, c: &Change<u8, &'static str>) -> Result<Vec<String>> {
        let mut out = Vec::new();
        f.emit(c, |e| out.push(format!("{e:?}")))?;
        Ok(out)
    }

    #[test]
    fn table() {
        let ins = Change { key: 1, before: None, after: Some("v") };
        let upd = Change { key: 1, before: Some("v"), after: Some("w") };
        let del = Change { key: 1, before: Some("v"), after: None };
        let up = Format::Upsert;
        assert_eq!(run(&up, &ins).unwrap(), ["Row { op: Create, row: \"v\" }"]);
        assert_eq!(run(&up, &upd).unwrap(), ["Row { op: Update, row: \"w\" }"]);
        assert_eq!(run(&up, &del).unwrap(), ["Tombstone"]);
        let ao = Format::AppendOnly { force: false };
        assert_eq!(run(&ao, &ins).unwrap().len(), 1);
        assert_eq!(run(&ao, &upd).unwrap_err().kind(), ErrorKind::AppendOnly);
        assert_eq!(run(&ao, &del).unwrap_err().kind(), ErrorKind::AppendOnly);
        let forced = Format::AppendOnly { force: true };
        assert_eq!(run(&forced, &upd).unwrap(), ["Row { op: Create, row: \"w\" }"]);
        assert!(run(&forced, &del).unwrap().is_empty());
        let dbz = Format::Debezium { tombstone_after_delete: false };
        assert_eq!(run(&dbz, &upd).unwrap(), ["Debezium { op: Update, before: Some(\"v\"), after: Some(\"w\") }"]);
        assert_eq!(run(&dbz, &del).unwrap().len(), 1);
    }
}
