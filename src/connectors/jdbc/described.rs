//! Rows rendered into their cells where they are produced: a *described* row is a row's cells
//! for every written column, behind a fingerprint of the dialect and the columns they were
//! rendered for, so the worker that writes it copies its cells instead of serializing the row
//! again:
//!
//! ```text
//!   fingerprint (4 bytes, LE) │ flags (1) │ per column: length (u32 LE, u32::MAX = NULL), text │ [reason]
//! ```
//!
//! Flag 1 says the row has a field that names no column; the reason follows the cells. An insert
//! of such a row is refused, as for a typed row, while a delete (which takes the key's cells
//! only) goes ahead. A writer that read other columns (the table was altered while the sink
//! started) refuses the row instead of writing cells into the wrong columns. The fingerprint's
//! first byte has the top bit set, as no JSON text's first byte has.

use super::encode::{Cells, RowEncoder, NULL};
use crate::error::{Error, Result};
use serde::Serialize;

/// Bytes of a described row before its cells: the fingerprint and a flag byte.
const DESCRIBED_HEADER: usize = 5;

/// A described row's cell length that stands for SQL NULL.
const NULL_CELL: u32 = u32::MAX;

impl RowEncoder {
    /// Appends `row` as a described row. On an error nothing is appended.
    pub fn encode_described<V: Serialize + ?Sized>(&mut self, row: &V, out: &mut Vec<u8>) -> Result<()> {
        let mut cells = std::mem::take(&mut self.scratch);
        cells.clear();
        (self.noting, self.unknown) = (true, None);
        let r = self.encode(row, None, false, &mut cells);
        self.noting = false;
        let r = r.and_then(|()| {
            out.extend_from_slice(&self.fingerprint.to_le_bytes());
            out.push(u8::from(self.unknown.is_some()));
            for i in 0..cells.ranges.len() {
                match cells.get(i) {
                    None => out.extend_from_slice(&NULL_CELL.to_le_bytes()),
                    Some(text) => {
                        let len = u32::try_from(text.len()).ok().filter(|l| *l != NULL_CELL).ok_or_else(|| {
                            Error::schema(format!("column `{}`: a value of 4 GiB or more", self.names[i]))
                        })?;
                        out.extend_from_slice(&len.to_le_bytes());
                        out.extend_from_slice(text.as_bytes());
                    }
                }
            }
            if let Some(reason) = self.unknown.take() {
                out.extend_from_slice(reason.as_bytes());
            }
            Ok(())
        });
        self.scratch = cells;
        r
    }

    /// Appends the cells of a described `row` for the columns `pick` (all, if `None`), as
    /// [`encode`](Self::encode) would for the row it was encoded from. With `strict`, a row with a
    /// field that names no column is an error.
    pub fn decode_described(
        &mut self,
        row: &[u8],
        pick: Option<&[usize]>,
        strict: bool,
        out: &mut Cells,
    ) -> Result<()> {
        let other = || {
            Error::schema(format!(
                "the row was encoded for other columns than table {} now has (was the table altered while the sink \
                 started?); restart the sink",
                self.table
            ))
        };
        let fingerprint = row.get(..4).map(|f| u32::from_le_bytes([f[0], f[1], f[2], f[3]]));
        if row.len() < DESCRIBED_HEADER || fingerprint != Some(self.fingerprint) {
            return Err(other());
        }
        self.places.clear();
        let mut at = DESCRIBED_HEADER;
        for _ in 0..self.names.len() {
            let len = row.get(at..at + 4).map(|l| u32::from_le_bytes([l[0], l[1], l[2], l[3]])).ok_or_else(other)?;
            at += 4;
            if len == NULL_CELL {
                self.places.push(None);
            } else {
                let end = at.checked_add(len as usize).filter(|e| *e <= row.len()).ok_or_else(other)?;
                self.places.push(Some((at, end)));
                at = end;
            }
        }
        if strict && row[4] & 1 != 0 {
            return Err(Error::schema(String::from_utf8_lossy(&row[at..]).into_owned()));
        }
        let n = self.names.len();
        let columns = pick.map_or(0..n, |p| 0..p.len()).map(|j| pick.map_or(j, |p| p[j]));
        for i in columns {
            let place = self.places.get(i).copied().flatten();
            out.ranges.push(match place {
                None => NULL,
                Some((a, b)) => {
                    let text = std::str::from_utf8(&row[a..b]).map_err(|_| other())?;
                    let start = out.text.len();
                    if start + text.len() > u32::MAX as usize - (1 << 24) {
                        return Err(Error::schema(
                            "a transaction holds more than 4 GB of cell text: bound it lower (transaction.max.bytes)",
                        ));
                    }
                    out.text.push_str(text);
                    (start as u32, out.text.len() as u32)
                }
            });
        }
        Ok(())
    }
}
