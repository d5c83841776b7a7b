//! Rows into a `RowBinary` block: the [`RowBinaryEncoder`] takes a row's fields in the block's
//! column order straight into the block, or reorders them through per-column slots, or reports
//! that the row has another set of columns.

use super::types::ChType;
use super::value::{Column, EncodeError, ValueSer};
use crate::encode::fields::{visit_fields, FieldVisitor, Shape};
use serde::Serialize;

/// What [`RowBinaryEncoder::encode`] did with a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Encoded {
    /// The row was appended.
    Written,
    /// The row's fields (column indices, in the row's order) differ from the block's columns; nothing
    /// was appended. Start a block with these columns and encode the row again.
    Columns(Vec<usize>),
}

/// Appends rows as `RowBinary`, column types from the table.
#[derive(Clone, Debug)]
pub struct RowBinaryEncoder {
    columns: Vec<Column>,
    /// The block's columns (indices into `columns`), in the order rows write them.
    list: Vec<usize>,
    /// Where each column sits in `list`, or `usize::MAX` if it is not in it.
    position: Vec<usize>,
    scratch: Vec<u8>,
    slots: Vec<Option<(usize, usize)>>,
    order: Vec<usize>,
    /// Identifies the columns (names, types, the server's time zone) for described rows.
    fingerprint: u32,
    /// Rows come with their fields in another order than the block's: go to the slots directly.
    reorder: bool,
}

impl RowBinaryEncoder {
    /// An encoder for rows whose fields are some of `columns` (`(name, type)` as in
    /// `system.columns`, without the columns the sink fills itself). Returns the `(name, type)` of
    /// each column whose type it cannot write if there are any.
    pub fn new<'a>(
        columns: impl IntoIterator<Item = (&'a str, &'a str)>,
        server_tz: &str,
    ) -> Result<Self, Vec<(String, String)>> {
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        let mut hash = crate::stable_hash::Fnv64::default();
        hash.update(server_tz.as_bytes());
        for (name, ty) in columns {
            for part in [name, ty] {
                hash.update(&(part.len() as u64).to_le_bytes());
                hash.update(part.as_bytes());
            }
            match ChType::parse(ty, server_tz) {
                Ok(t) => ok.push(Column { name: name.to_string(), ty: t }),
                Err(inner) => bad.push((name.to_string(), if inner == ty { inner } else { format!("{ty} ({inner})") })),
            }
        }
        if !bad.is_empty() {
            return Err(bad);
        }
        let n = ok.len();
        Ok(RowBinaryEncoder {
            columns: ok,
            list: Vec::new(),
            position: vec![usize::MAX; n],
            scratch: Vec::new(),
            slots: vec![None; n],
            order: Vec::new(),
            // Its first byte as written (little-endian) has the top bit set, which the first byte of
            // JSON text never has: a described row is never taken for a row's JSON.
            reorder: false,
            fingerprint: {
                let h = hash.finish();
                (h ^ (h >> 32)) as u32 | 0x80
            },
        })
    }

    /// The name of column `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.columns[i].name
    }

    /// How many columns the encoder may write.
    pub fn column_count(&self) -> usize {
        self.columns.len()
    }

    /// The block's columns (indices), in the order rows are written.
    pub fn list(&self) -> impl ExactSizeIterator<Item = usize> + '_ {
        self.list.iter().copied()
    }

    /// Identifies the encoder's columns: their names and types, and the server's time zone.
    pub fn fingerprint(&self) -> u32 {
        self.fingerprint
    }

    /// The block's columns, in the order rows are written.
    pub fn columns(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.list.iter().map(|&i| self.columns[i].name.as_str())
    }

    /// Sets the block's columns (as [`Encoded::Columns`] returned them).
    pub fn set_columns(&mut self, list: Vec<usize>) {
        self.position.iter_mut().for_each(|p| *p = usize::MAX);
        for (p, &i) in list.iter().enumerate() {
            self.position[i] = p;
        }
        // The last row met had its fields in `order`: if the block's are in another, rows like it
        // go to the slots without trying the direct way first.
        self.reorder = !self.order.is_empty() && self.order != list;
        self.list = list;
    }

    /// Appends `row` to `out` in the block's columns, or says which columns it has instead. On an
    /// error nothing is appended.
    pub fn encode<R: Serialize + ?Sized>(&mut self, row: &R, out: &mut Vec<u8>) -> Result<Encoded, EncodeError> {
        let start = out.len();
        if !self.list.is_empty() && !self.reorder {
            let r = visit_fields(row, &mut DirectFields { enc: self, out: &mut *out, next: 0 });
            match r {
                Ok(()) => return Ok(Encoded::Written),
                Err(EncodeError::Mismatch) => out.truncate(start),
                Err(e) => {
                    out.truncate(start);
                    return Err(e);
                }
            }
        }
        // The slow way: each field into its slot, then the slots in the block's order.
        self.scratch.clear();
        self.order.clear();
        self.slots.iter_mut().for_each(|s| *s = None);
        visit_fields(row, &mut SlotFields { enc: self })?;
        let same = self.order.len() == self.list.len() && self.order.iter().all(|&i| self.position[i] != usize::MAX);
        if !same {
            return Ok(Encoded::Columns(self.order.clone()));
        }
        // Fields in another order than the block's: the next rows likely are too.
        self.reorder = self.order != self.list;
        self.write_slots(out);
        Ok(Encoded::Written)
    }

    /// Writes the row the slots hold (the last one [`encode`](Self::encode) met, if it returned
    /// [`Encoded::Columns`] and the columns were set to those since) in the block's order.
    pub(super) fn write_slots(&self, out: &mut Vec<u8>) {
        for &i in &self.list {
            if let Some((a, b)) = self.slots[i] {
                out.extend_from_slice(&self.scratch[a..b]);
            }
        }
    }

    fn lookup(&self, name: &str) -> Result<usize, EncodeError> {
        self.columns.iter().position(|c| c.name == name).ok_or_else(|| EncodeError::UnknownColumn(name.to_string()))
    }
}

/// A row's fields written straight into the block (fields must come in the block's order).
struct DirectFields<'a> {
    enc: &'a RowBinaryEncoder,
    out: &'a mut Vec<u8>,
    next: usize,
}

impl FieldVisitor for DirectFields<'_> {
    type Error = EncodeError;
    #[inline]
    fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), EncodeError> {
        let Some(&i) = self.enc.list.get(self.next) else { return Err(EncodeError::Mismatch) };
        let col = &self.enc.columns[i];
        if col.name != name {
            return Err(EncodeError::Mismatch);
        }
        self.next += 1;
        value.serialize(ValueSer { col, ty: &col.ty, out: self.out })
    }
    fn not_a_row(&self, shape: Shape) -> EncodeError {
        not_a_row(shape)
    }
    fn end(&mut self) -> Result<(), EncodeError> {
        if self.next == self.enc.list.len() {
            Ok(())
        } else {
            Err(EncodeError::Mismatch)
        }
    }
}

/// A row's fields each into its slot.
struct SlotFields<'a> {
    enc: &'a mut RowBinaryEncoder,
}

impl FieldVisitor for SlotFields<'_> {
    type Error = EncodeError;
    fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), EncodeError> {
        let i = self.enc.lookup(name)?;
        if self.enc.slots[i].is_some() {
            return Err(EncodeError::Row(format!("the row has field `{name}` twice")));
        }
        let a = self.enc.scratch.len();
        let col = &self.enc.columns[i];
        value.serialize(ValueSer { col, ty: &col.ty, out: &mut self.enc.scratch })?;
        self.enc.slots[i] = Some((a, self.enc.scratch.len()));
        self.enc.order.push(i);
        Ok(())
    }
    fn not_a_row(&self, shape: Shape) -> EncodeError {
        not_a_row(shape)
    }
}

fn not_a_row(shape: Shape) -> EncodeError {
    let what = match shape {
        Shape::NonStringKey => return EncodeError::Row("a row's field names must be strings".into()),
        Shape::Char | Shape::UnitVariant => "a string",
        Shape::Unit | Shape::UnitStruct => "null",
        Shape::TupleStruct => "a tuple",
        other => other.describe(),
    };
    EncodeError::Row(format!("rows for ClickHouse must serialize as structs or maps (JSON objects), not {what}"))
}
