//! The rows a JDBC writer holds until its commit: text cells per written column, and per row
//! what to do with it. An upsert sink keeps only each key's last change of the commit; the
//! commit applies deletes first, then updates of keys the table held, then inserts of keys new
//! to the collection. [`Batch::staged_bytes`] is what the writer's transaction bound counts.

use super::encode::Cells;
use crate::key::Key;
use std::collections::HashMap;

/// What a pending row does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowOp {
    /// Insert or replace by key.
    Upsert,
    /// Delete by key (its cells are the key columns).
    Delete,
    /// Insert.
    Append,
}

/// One pending row: its operation, key (for messages and de-duplication) and first cell.
#[derive(Clone, Debug)]
pub struct PendingRow {
    /// What to do.
    pub op: RowOp,
    /// The key.
    pub key: Key,
    /// Index of its first cell in [`Batch::cells`].
    pub first: u32,
    /// An upsert of a key the collection did not hold before this commit (its first change in
    /// the commit was an insert): the table should not hold it either, so a plain insert will do
    /// (a conflict falls back to the upsert).
    pub fresh: bool,
}

/// Everything written since the last commit: for upserts only the last change of each key.
#[derive(Debug, Default)]
pub struct Batch {
    /// Cell text.
    pub cells: Cells,
    /// Rows in arrival order (a key's later change replaces its earlier one in place).
    pub rows: Vec<PendingRow>,
    index: HashMap<Key, usize>,
    /// Bytes of the keys held (rows and index).
    key_bytes: usize,
}

impl Batch {
    /// Records the row whose cells start at `first`: an append is added; an upsert or delete
    /// replaces the key's earlier change in place, keeping whether the key was `fresh` as its
    /// first change in the commit said.
    pub fn record(&mut self, key: &Key, op: RowOp, first: u32, fresh: bool) {
        let key_len = key.bytes().map_or(0, <[u8]>::len);
        if op == RowOp::Append {
            self.key_bytes += key_len;
            self.rows.push(PendingRow { op, key: key.clone(), first, fresh: false });
            return;
        }
        match self.index.get(key) {
            Some(&i) => {
                self.rows[i].op = op;
                self.rows[i].first = first;
            }
            None => {
                self.key_bytes += 2 * key_len;
                self.index.insert(key.clone(), self.rows.len());
                self.rows.push(PendingRow { op, key: key.clone(), first, fresh });
            }
        }
    }

    /// About how many bytes the batch holds: cell text and ranges, rows, keys and the key
    /// index. A replaced change's cells stay until the commit, so they count too.
    pub fn staged_bytes(&self) -> u64 {
        let index = self.index.len() * (std::mem::size_of::<Key>() + std::mem::size_of::<usize>());
        (self.cells.text.len()
            + self.cells.ranges.len() * std::mem::size_of::<(u32, u32)>()
            + self.rows.len() * std::mem::size_of::<PendingRow>()
            + index
            + self.key_bytes) as u64
    }

    /// The index its next row's first cell will have.
    pub fn next_cell(&self) -> u32 {
        self.cells.ranges.len() as u32
    }

    /// Indices of the rows doing `op`.
    pub fn rows_of(&self, op: RowOp) -> impl Iterator<Item = usize> + '_ {
        self.rows.iter().enumerate().filter(move |(_, r)| r.op == op).map(|(i, _)| i)
    }

    /// Indices of the upserts of keys new in this commit (`fresh`) or not.
    pub fn upserts(&self, fresh: bool) -> impl Iterator<Item = usize> + '_ {
        self.rows.iter().enumerate().filter(move |(_, r)| r.op == RowOp::Upsert && r.fresh == fresh).map(|(i, _)| i)
    }

    /// The first `width` cells of `rows`, one array per column.
    pub fn column_arrays(&self, rows: &[usize], width: usize) -> Vec<Vec<Option<&str>>> {
        let mut arrays: Vec<Vec<Option<&str>>> = (0..width).map(|_| Vec::with_capacity(rows.len())).collect();
        for &r in rows {
            let first = self.rows[r].first as usize;
            for (i, a) in arrays.iter_mut().enumerate() {
                a.push(self.cells.get(first + i));
            }
        }
        arrays
    }

    /// Empties the batch (after its commit).
    pub fn clear(&mut self) {
        self.cells.clear();
        self.rows.clear();
        self.index.clear();
        self.key_bytes = 0;
    }

    /// A batch of the single row `i` of `self`, for the row-by-row search.
    pub fn single(&self, i: usize, width: usize) -> Batch {
        let r = &self.rows[i];
        let mut b = Batch::default();
        for c in 0..width {
            let (s, e) = match self.cells.get(r.first as usize + c) {
                Some(v) => {
                    let s = b.cells.text.len() as u32;
                    b.cells.text.push_str(v);
                    (s, b.cells.text.len() as u32)
                }
                None => super::encode::NULL,
            };
            b.cells.ranges.push((s, e));
        }
        b.rows.push(PendingRow { op: r.op, key: r.key.clone(), first: 0, fresh: false });
        b
    }
}
