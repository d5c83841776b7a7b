//! Rows to Arrow record batches of a table's schema. Pure, no I/O.
//!
//! The row type carries its values in its `Serialize` implementation; [`RowBatcher`] feeds rows
//! straight into `arrow-json`'s decoder (`Decoder::serialize`, which walks the serde data model
//! into its tape without producing JSON text) with the table's Arrow schema, so a column's value
//! takes the same forms as in the library's JSON encoding: integers and floats as numbers,
//! decimals as numbers or decimal strings, dates as `YYYY-MM-DD`, timestamps as RFC 3339 text or
//! microseconds since the epoch, `None` as null. A field the schema does not name, or a null in a
//! column that is not nullable, is an encode error.
//!
//! ```
//! use arrow_schema::{DataType, Field, Schema};
//! use differential_sinks::encode::arrow::RowBatcher;
//! use std::sync::Arc;
//!
//! let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
//! let mut b = RowBatcher::new(schema).unwrap();
//! b.push(&[serde_json::json!({"id": 1}), serde_json::json!({"id": 2})]).unwrap();
//! assert_eq!(b.finish().unwrap().unwrap().num_rows(), 2);
//! assert!(b.finish().unwrap().is_none());
//! ```

use crate::error::{Error, Result};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use serde::Serialize;
use std::sync::Arc;

/// Turns rows into record batches of one Arrow schema.
pub struct RowBatcher {
    schema: SchemaRef,
    decoder: arrow_json::reader::Decoder,
}

impl RowBatcher {
    /// A batcher for `schema`, the table's Arrow schema as its writer expects it.
    pub fn new(schema: SchemaRef) -> Result<Self> {
        let decoder = arrow_json::ReaderBuilder::new(Arc::clone(&schema))
            .with_strict_mode(true)
            // Only the initial capacity of the decoder's tape: `serialize` takes any number of rows.
            .with_batch_size(16 * 1024)
            .build_decoder()
            .map_err(|e| Error::schema(format!("cannot decode rows into {schema:?}: {e}")))?;
        Ok(RowBatcher { schema, decoder })
    }

    /// The Arrow schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Adds rows to the batch being built.
    pub fn push<V: Serialize>(&mut self, rows: &[V]) -> Result<()> {
        self.decoder.serialize(rows).map_err(|e| {
            self.reset();
            Error::encode(format!("a row does not fit the table's schema: {e}"))
        })
    }

    /// `rows` as one batch (`None` if there are none): [`push`](Self::push) then
    /// [`finish`](Self::finish).
    pub fn batch<V: Serialize>(&mut self, rows: &[V]) -> Result<Option<RecordBatch>> {
        if rows.is_empty() {
            return Ok(None);
        }
        self.push(rows)?;
        self.finish()
    }

    /// The rows pushed since the last call, as one batch (`None` if there were none).
    pub fn finish(&mut self) -> Result<Option<RecordBatch>> {
        self.decoder.flush().map_err(|e| {
            self.reset();
            Error::encode(format!("a row does not fit the table's schema: {e}"))
        })
    }

    fn reset(&mut self) {
        if let Ok(b) = RowBatcher::new(Arc::clone(&self.schema)) {
            *self = b;
        }
    }
}
