//! Encodings: turning rows and envelopes into bytes. Pure, and benchmarked alone
//! (`benches/encode.rs`).
//!
//! Keys are encoded when updates enter the sink (see [`crate::key`]); values here, when a change
//! becomes records. JSON is the built-in value encoding; schema-carrying encodings live with the
//! connectors that need them.

pub mod json;

pub use json::JsonEncoder;

/// Wall-clock milliseconds since the Unix epoch (Debezium's `ts_ms`).
pub fn now_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
