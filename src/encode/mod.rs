//! Encodings: turning per-key changes into a target's wire form. Pure — no I/O — so each runs
//! and is benchmarked alone, apart from any writer.
//!
//! Keys are encoded when updates enter the sink (see [`crate::key`]); values here, when a change
//! becomes what a target ships. The encoders:
//!
//! * [`records`] — the envelope's keyed JSON records, for the message targets (file, Kafka, NATS,
//!   Kinesis, Pulsar), on top of [`json`]; a [`ChangeEncoder`].
//! * `avro` (feature `kafka`) — Avro schemas from the row schema, datums streamed from the
//!   envelope's JSON text, and the Confluent wire format.
//! * `rowbinary` (feature `clickhouse`) — ClickHouse `RowBinary` written straight from a row's
//!   `Serialize`, checked against the table's column types.
//!
//! * [`arrow`] — Arrow record batches of a table's schema and the keys upserts delete, for the
//!   lakehouse tables (Delta Lake, Iceberg); a [`ChangeEncoder`].
//!
//! What they share:
//!
//! * [`civil`] — dates, date-times and exact decimals read from text (one calendar for all);
//! * [`fields`] — the serde serializer that hands a struct or map row's named fields to a visitor
//!   (key columns, RowBinary columns, JDBC cells);
//! * [`scalar`] — the serde serializer that reduces one field's value to a scalar (null, boolean,
//!   number, text, bytes), for encoders that convert it to a column's type themselves.
//!
//! `benches/encode.rs` runs each encoder alone on the same generated rows
//! (`cargo bench --bench encode --all-features`).

#[cfg(any(feature = "deltalake", feature = "iceberg"))]
pub mod arrow;
#[cfg(feature = "kafka")]
pub mod avro;
pub mod civil;
pub mod encoder;
pub mod fields;
pub mod json;
pub mod records;
#[cfg(feature = "clickhouse")]
pub mod rowbinary;
pub mod scalar;

pub use encoder::ChangeEncoder;
pub use json::JsonEncoder;
pub use records::RecordEncoder;

/// Wall-clock milliseconds since the Unix epoch (Debezium's `ts_ms`).
pub fn now_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
