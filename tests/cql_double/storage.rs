//! Storage with Cassandra's reconciliation rules: cells and rows with write timestamps and
//! tombstones, tables, keyspaces, the database ([`Db`]) and the faults it can be told to inject.

use super::codec::*;
use super::error::*;
use super::types::*;
use std::collections::{BTreeMap, HashMap};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    pub ts: i64,
    /// `None`: a cell tombstone (the column was written null).
    pub value: Option<Vec<u8>>,
}

/// Which of two versions of a cell survives (`Conflicts.resolveRegular`): the higher timestamp;
/// on a tie the tombstone; between two values the greater bytes (unsigned comparison).
pub fn reconcile(a: &Cell, b: &Cell) -> Cell {
    if a.ts != b.ts {
        return if a.ts > b.ts { a.clone() } else { b.clone() };
    }
    match (&a.value, &b.value) {
        (None, _) => a.clone(),
        (_, None) => b.clone(),
        (Some(x), Some(y)) => {
            if x >= y {
                a.clone()
            } else {
                b.clone()
            }
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredRow {
    /// The row tombstone: shadows everything written at or below it.
    pub deletion: Option<i64>,
    /// The primary-key liveness (row marker) an INSERT writes.
    pub marker: Option<i64>,
    pub cells: BTreeMap<String, Cell>,
}

impl StoredRow {
    pub(crate) fn shadowed(&self, ts: i64) -> bool {
        self.deletion.is_some_and(|d| ts <= d)
    }

    /// An upsert at `ts` (with the row marker when `marker`) of `cells`; returns whether anything changed.
    pub fn write(&mut self, ts: i64, marker: bool, cells: &[(String, Option<Vec<u8>>)]) -> bool {
        if self.shadowed(ts) {
            return false;
        }
        let before = self.clone();
        if marker {
            self.marker = Some(self.marker.map_or(ts, |m| m.max(ts)));
        }
        for (c, v) in cells {
            let new = Cell { ts, value: v.clone() };
            let merged = match self.cells.get(c) {
                Some(old) => reconcile(old, &new),
                None => new,
            };
            self.cells.insert(c.clone(), merged);
        }
        *self != before
    }

    /// A row deletion at `ts`; returns whether anything changed.
    pub fn delete(&mut self, ts: i64) -> bool {
        let before = self.clone();
        let d = self.deletion.map_or(ts, |d| d.max(ts));
        self.deletion = Some(d);
        if self.marker.is_some_and(|m| m <= d) {
            self.marker = None;
        }
        self.cells.retain(|_, c| c.ts > d);
        *self != before
    }

    pub fn live(&self) -> bool {
        self.marker.is_some() || self.cells.values().any(|c| c.value.is_some())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    PartitionKey,
    Clustering,
    Regular,
}

#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub ty: Ty,
    pub kind: Kind,
    /// Position within the partition key or clustering columns; -1 for regular columns.
    pub position: i32,
}

#[derive(Clone, Debug, Default)]
pub struct Table {
    pub columns: Vec<Column>,
    /// Primary key bytes (partition key, then clustering columns) → the row.
    pub rows: BTreeMap<Vec<Vec<u8>>, StoredRow>,
}

impl Table {
    pub(crate) fn key_columns(&self) -> Vec<&Column> {
        let mut k: Vec<&Column> = self.columns.iter().filter(|c| c.kind != Kind::Regular).collect();
        k.sort_by_key(|c| (c.kind.clone(), c.position));
        k
    }
    pub(crate) fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// One write the double applied (or found shadowed), for tests to inspect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteRecord {
    pub table: String,
    pub delete: bool,
    pub ts: i64,
    /// Whether the write changed the stored state (false: a replay or a shadowed older write).
    pub changed: bool,
}

/// A keyspace: its replication map and its tables.
pub type Keyspace = (BTreeMap<String, String>, BTreeMap<String, Table>);

/// What PREPARE tells of a statement: keyspace, table, bind markers' names and types, and the
/// indexes of the markers binding the partition key.
pub(crate) type BindInfo = (String, String, Vec<(String, Ty)>, Vec<u16>);

#[derive(Default)]
pub struct Db {
    /// keyspace → (replication map, tables)
    pub keyspaces: BTreeMap<String, Keyspace>,
    pub schema_version: u64,
    /// Prepared id → (statement, the connection's keyspace when it was prepared).
    pub(crate) prepared: HashMap<Vec<u8>, (String, Option<String>)>,
    pub writes: Vec<WriteRecord>,
    /// (opcode name, statement text) of every request, in arrival order.
    pub requests: Vec<(&'static str, String)>,
    pub(crate) credentials: Option<(String, String)>,
    /// Faults for the next BATCH requests, in order.
    pub batch_faults: std::collections::VecDeque<Fault>,
    /// `batch_size_fail_threshold_in_kb` in bytes (Cassandra's default: 50 KiB); 0 for none.
    pub batch_fail_threshold: usize,
}

/// What the double does to a request instead of answering it normally.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answers with the error; with `applied`, after applying the batch (a timeout after the
    /// write landed: the client cannot tell the difference).
    Error { error: CqlError, applied: bool },
    /// Never answers (the stream stays open, the connection alive), applying nothing.
    Stall,
}

/// An opcode no answer has: the request is left unanswered.
pub(crate) const NO_ANSWER: u8 = 0xFF;

/// A write timeout (0x1100) as a coordinator reports it for an unlogged batch at ONE.
pub fn write_timeout() -> CqlError {
    let mut e = err(0x1100, "Operation timed out - received only 0 responses.");
    e.extra.extend_from_slice(&1u16.to_be_bytes());
    e.extra.extend_from_slice(&0i32.to_be_bytes());
    e.extra.extend_from_slice(&1i32.to_be_bytes());
    write_string(&mut e.extra, "UNLOGGED_BATCH");
    e
}

/// Unavailable (0x1000): not enough live replicas for ONE.
pub fn unavailable() -> CqlError {
    let mut e = err(0x1000, "Cannot achieve consistency level ONE");
    e.extra.extend_from_slice(&1u16.to_be_bytes());
    e.extra.extend_from_slice(&1i32.to_be_bytes());
    e.extra.extend_from_slice(&0i32.to_be_bytes());
    e
}
