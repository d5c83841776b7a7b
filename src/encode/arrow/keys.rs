//! Primary keys of Arrow rows as comparable bytes: Arrow's row format of the key columns, cast
//! to the table's types. Pure, no I/O.
//!
//! A key computed from the arrays a writer wrote equals the key computed from the same columns
//! read back from Parquet, so an index of keys read from a table at start matches the keys of
//! later changes.

use super::RowBatcher;
use crate::envelope::Format;
use crate::error::{Error, Result};
use crate::settings::SinkSettings;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_row::{RowConverter, SortField};
use arrow_schema::{DataType, SchemaRef};
use serde::Serialize;
use std::sync::Arc;

/// The primary-key columns of Arrow batches as comparable bytes (Arrow's row format).
pub struct KeyEncoder {
    names: Vec<String>,
    indices: Vec<usize>,
    types: Vec<DataType>,
    converter: RowConverter,
}

impl KeyEncoder {
    /// An encoder for `key` columns of batches of `schema`.
    pub fn new(schema: &SchemaRef, key: &[String], table: &str) -> Result<Self> {
        if key.is_empty() {
            return Err(Error::config(
                "option `type` = `upsert`: the sink finds a key's row by the primary key's columns — declare them with \
                 `primary_key` (a key function names no columns the table could be searched by)",
            ));
        }
        let mut indices = Vec::with_capacity(key.len());
        for name in key {
            let Ok(i) = schema.index_of(name) else {
                return Err(Error::schema(format!(
                    "option `primary_key`: column `{name}` is not a column of the table `{table}`; its columns are {}",
                    schema.fields().iter().map(|f| format!("`{}`", f.name())).collect::<Vec<_>>().join(", ")
                )));
            };
            indices.push(i);
        }
        let types: Vec<DataType> = indices.iter().map(|i| schema.field(*i).data_type().clone()).collect();
        let converter = RowConverter::new(types.iter().cloned().map(SortField::new).collect())
            .map_err(|e| Error::schema(format!("the primary key of `{table}` cannot be compared: {e}")))?;
        Ok(KeyEncoder { names: key.to_vec(), indices, types, converter })
    }

    /// The key of every row of `batch`, a batch of the table's schema.
    pub fn encode_batch(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        let columns: Vec<ArrayRef> = self.indices.iter().map(|i| Arc::clone(batch.column(*i))).collect();
        self.encode(columns)
    }

    /// The keys of rows given as the key columns, in key order; they are cast to the table's
    /// types first (a Parquet file may store a column in a narrower or differently labelled
    /// type than the table's Arrow schema).
    pub fn encode(&self, columns: Vec<ArrayRef>) -> Result<Vec<Vec<u8>>> {
        let columns = columns
            .into_iter()
            .zip(&self.types)
            .map(|(c, t)| {
                if c.data_type() == t {
                    Ok(c)
                } else {
                    arrow_cast::cast(&c, t).map_err(|e| Error::schema(format!("a key column cannot be read: {e}")))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let rows = self
            .converter
            .convert_columns(&columns)
            .map_err(|e| Error::encode(format!("a key cannot be encoded: {e}")))?;
        Ok(rows.iter().map(|r| r.as_ref().to_vec()).collect())
    }

    /// The key columns' positions in the table's schema, in key order.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// The key columns' names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The keys of `rows` (the table's rows, e.g. deleted keys' last values), each encoded from
    /// the row's key columns through `batcher` exactly as a written row's key is.
    pub fn keys_of_rows<V: Serialize>(&self, batcher: &mut RowBatcher, rows: &[&V]) -> Result<Vec<Vec<u8>>> {
        match batcher.batch(rows)? {
            Some(batch) => self.encode_batch(&batch),
            None => Ok(Vec::new()),
        }
    }
}

/// The key encoder of an upsert sink (`None` for append-only) over the table's Arrow schema.
pub fn upsert_keys(spec: &SinkSettings, schema: &SchemaRef, table: &str) -> Result<Option<KeyEncoder>> {
    if !matches!(spec.format(), Format::Upsert) {
        return Ok(None);
    }
    KeyEncoder::new(schema, spec.primary_key().unwrap_or_default(), table).map(Some)
}
