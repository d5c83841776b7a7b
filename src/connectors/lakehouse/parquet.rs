//! Reading a lakehouse table's Parquet data files back: the columns the sink needs at start
//! (the primary key's, to rebuild the [`KeyIndex`](super::KeyIndex)).

use crate::error::{Error, ErrorKind, Result};
use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

/// Reads `columns` (top-level, by name, in that order) of the Parquet file `bytes`; `what`
/// names the file in errors.
pub fn read_columns(bytes: bytes::Bytes, columns: &[&str], what: &str) -> Result<Vec<RecordBatch>> {
    let bad = |e: &dyn std::fmt::Display| Error::new(ErrorKind::Fatal, format!("reading Parquet file {what}: {e}"));
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| bad(&e))?;
    let descr = builder.parquet_schema();
    let mut leaves = Vec::with_capacity(columns.len());
    for c in columns {
        let Some(i) = descr.columns().iter().position(|d| d.path().parts() == [c.to_string()]) else {
            return Err(bad(&format!("it has no column `{c}`")));
        };
        leaves.push(i);
    }
    let mask = ProjectionMask::leaves(descr, leaves.iter().copied());
    let reader = builder.with_projection(mask).build().map_err(|e| bad(&e))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| bad(&e))?;
        // The projection keeps the file's column order; put the columns in the order asked for.
        let order =
            columns.iter().map(|c| batch.schema().index_of(c).map_err(|e| bad(&e))).collect::<Result<Vec<_>>>()?;
        out.push(batch.project(&order).map_err(|e| bad(&e))?);
    }
    Ok(out)
}
