//! The Kinesis connector's writer: records batched into `PutRecords` requests (each key at most
//! once per request), refused entries sent again, the committed frontier recorded in the local
//! progress store.

use super::client::KinesisClient;
use super::config::{KinesisConfig, MAX_RECORD_BYTES};
use crate::connectors::local_progress::LocalProgress;
use crate::delivery::{AsyncRecordWriter, Backoff, Bridge, RetryPolicy};
use crate::error::{Error, ErrorKind, Result};
use crate::key::KeyEncoding;
use crate::record::RecordBatch;
use crate::settings::SinkSettings;
use crate::stable_hash::fnv64;
use base64::Engine as _;
use differential_sinks_operators::{resolve_resume, Frontier, ResumePoint, WorkerContext, WorkerMetrics};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counters of one sink's Kinesis delivery, shared by its workers.
#[derive(Debug, Default)]
pub struct KinesisStats {
    /// `PutRecords` requests sent (including retries).
    pub requests: AtomicU64,
    /// Entries the service refused and that were sent again.
    pub retried_entries: AtomicU64,
    /// Whole requests throttled or failed and sent again.
    pub retried_requests: AtomicU64,
}

/// One entry of a pending `PutRecords` request.
struct Entry {
    partition_key: String,
    data: Vec<u8>,
}

/// Opens a worker's Kinesis writer behind a [`Bridge`].
pub fn open(config: &KinesisConfig, spec: &SinkSettings, ctx: WorkerContext) -> Result<Bridge> {
    open_with_stats(config, spec, ctx, Arc::default())
}

/// [`open`], sharing `stats`.
pub fn open_with_stats(
    config: &KinesisConfig,
    spec: &SinkSettings,
    _ctx: WorkerContext,
    stats: Arc<KinesisStats>,
) -> Result<Bridge> {
    let w = KinesisWriter {
        client: KinesisClient::new(config)?,
        config: config.clone(),
        sink: spec.name().to_string(),
        keyed: spec.primary_key().is_some() || spec.key_by_function,
        text_keys: matches!(spec.key_encoding(), KeyEncoding::Text { .. }),
        stats,
        metrics: spec.worker_metrics(),
        ctx: None,
        point: None,
        entries: Vec::new(),
        bytes: 0,
        keys: HashSet::new(),
        body: Vec::new(),
    };
    Bridge::spawn(spec.name(), 4, w)
}

struct KinesisWriter {
    client: KinesisClient,
    config: KinesisConfig,
    sink: String,
    keyed: bool,
    text_keys: bool,
    stats: Arc<KinesisStats>,
    /// Where retries are counted.
    metrics: WorkerMetrics,
    ctx: Option<WorkerContext>,
    point: Option<ResumePoint<u64>>,
    entries: Vec<Entry>,
    bytes: usize,
    keys: HashSet<u64>,
    body: Vec<u8>,
}

/// The partition key of an encoded key: the key itself when it has at most 256 characters,
/// otherwise its 64-bit digest in hex (Kinesis allows 1 to 256).
pub fn partition_key(key: &str) -> String {
    if !key.is_empty() && key.chars().count() <= 256 {
        key.to_string()
    } else {
        format!("#{:016x}", fnv64(key.as_bytes()))
    }
}

impl KinesisWriter {
    /// Sends every pending entry; entries the service refused are sent again (only those), with
    /// backoff, until all are stored or the retry deadline passes.
    async fn flush(&mut self) -> Result<()> {
        let mut pending: Vec<Entry> = std::mem::take(&mut self.entries);
        self.bytes = 0;
        self.keys.clear();
        let mut backoff = Backoff::new(RetryPolicy::default()).counting(Some(&self.metrics));
        while !pending.is_empty() {
            self.body.clear();
            self.body.extend_from_slice(b"{\"StreamName\":");
            serde_json::to_writer(&mut self.body, &self.config.stream).expect("string encodes");
            self.body.extend_from_slice(b",\"Records\":[");
            for (i, e) in pending.iter().enumerate() {
                if i > 0 {
                    self.body.push(b',');
                }
                self.body.extend_from_slice(b"{\"PartitionKey\":");
                serde_json::to_writer(&mut self.body, &e.partition_key).expect("string encodes");
                self.body.extend_from_slice(b",\"Data\":\"");
                let start = self.body.len();
                let n = base64::encoded_len(e.data.len(), true).expect("fits");
                self.body.resize(start + n, 0);
                base64::engine::general_purpose::STANDARD
                    .encode_slice(&e.data, &mut self.body[start..])
                    .expect("sized above");
                self.body.extend_from_slice(b"\"}");
            }
            self.body.extend_from_slice(b"]}");
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let answer = self.client.call("PutRecords", self.body.clone()).await;
            let failed: Vec<(usize, String)> = match answer {
                Ok(v) => {
                    if v["FailedRecordCount"].as_u64().unwrap_or(0) == 0 {
                        return Ok(());
                    }
                    let recs = v["Records"].as_array().cloned().unwrap_or_default();
                    if recs.len() != pending.len() {
                        return Err(Error::new(
                            ErrorKind::Fatal,
                            format!("Kinesis PutRecords: {} results for {} records", recs.len(), pending.len()),
                        ));
                    }
                    recs.iter()
                        .enumerate()
                        .filter_map(|(i, r)| r["ErrorCode"].as_str().map(|c| (i, c.to_string())))
                        .collect()
                }
                Err(e) if e.is_retriable() => {
                    self.stats.retried_requests.fetch_add(1, Ordering::Relaxed);
                    match backoff.next_delay() {
                        Some(d) => {
                            tracing::warn!(error = %e, delay_ms = d.as_millis() as u64, "Kinesis PutRecords: retrying");
                            tokio::time::sleep(d).await;
                            continue;
                        }
                        None => return Err(Error::new(e.kind(), format!("Kinesis: giving up: {e}"))),
                    }
                }
                Err(e) => return Err(e),
            };
            // Keep only the refused entries, in their original order.
            if let Some((_, code)) = failed
                .iter()
                .find(|(_, c)| !matches!(c.as_str(), "ProvisionedThroughputExceededException" | "InternalFailure"))
            {
                return Err(Error::new(ErrorKind::Fatal, format!("Kinesis PutRecords refused a record: {code}")));
            }
            let keep: HashSet<usize> = failed.iter().map(|(i, _)| *i).collect();
            let before = pending.len();
            pending = pending.into_iter().enumerate().filter(|(i, _)| keep.contains(i)).map(|(_, e)| e).collect();
            self.stats.retried_entries.fetch_add(pending.len() as u64, Ordering::Relaxed);
            match backoff.next_delay() {
                Some(d) => {
                    tracing::warn!(
                        failed = pending.len(),
                        of = before,
                        delay_ms = d.as_millis() as u64,
                        "Kinesis PutRecords: retrying refused entries"
                    );
                    tokio::time::sleep(d).await;
                }
                None => {
                    return Err(Error::new(
                        ErrorKind::Retriable,
                        format!(
                            "Kinesis PutRecords: {} records still refused (throughput exceeded) after retries",
                            pending.len()
                        ),
                    ))
                }
            }
        }
        Ok(())
    }

    fn data_of(&self, out: &mut Vec<u8>, time: u64, seq: u64, key: &[u8], op: &str, value: Option<&[u8]>) {
        let ctx = self.ctx.expect("resumed");
        out.clear();
        out.extend_from_slice(b"{\"time\":");
        out.extend_from_slice(time.to_string().as_bytes());
        out.extend_from_slice(b",\"seq\":");
        out.extend_from_slice(seq.to_string().as_bytes());
        if !self.keyed {
            out.extend_from_slice(format!(",\"worker\":{},\"peers\":{}", ctx.index, ctx.peers).as_bytes());
        }
        out.extend_from_slice(b",\"op\":\"");
        out.extend_from_slice(op.as_bytes());
        out.extend_from_slice(b"\",\"key\":");
        if !self.keyed {
            out.extend_from_slice(b"null");
        } else if self.text_keys {
            serde_json::to_writer(&mut *out, &String::from_utf8_lossy(key)).expect("string encodes");
        } else {
            out.extend_from_slice(key);
        }
        out.extend_from_slice(b",\"value\":");
        out.extend_from_slice(value.unwrap_or(b"null"));
        out.push(b'}');
    }
}

impl AsyncRecordWriter for KinesisWriter {
    async fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<u64>> {
        self.ctx = Some(ctx);
        let records = match &self.config.progress_dir {
            Some(dir) => LocalProgress::new(dir, "kinesis", &self.sink, &self.config.stream).read()?,
            None => Vec::new(),
        };
        // Check the stream exists before any data flows.
        let body = serde_json::to_vec(&serde_json::json!({ "StreamName": self.config.stream })).expect("json");
        crate::delivery::retry::retry(&RetryPolicy::default(), "Kinesis DescribeStreamSummary", || {
            self.client.call("DescribeStreamSummary", body.clone())
        })
        .await?;
        let point = resolve_resume(&records, ctx)?;
        let f = point.frontier;
        self.point = Some(point);
        Ok(f)
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let ctx = self.ctx.ok_or_else(|| Error::config("Kinesis writer used before resume"))?;
        let mut prev: Option<&[u8]> = None;
        let mut seq = 0u64;
        let mut data = Vec::with_capacity(256);
        for (i, rec) in batch.iter().enumerate() {
            // seq: the record's index among its key's records at this time (keyed), or its
            // position among this worker's records of the whole time (unkeyed; a time may come in
            // several batches).
            let pos = batch.first + i as u64;
            seq = if !self.keyed {
                pos
            } else if prev == Some(rec.key) {
                seq + 1
            } else {
                0
            };
            prev = Some(rec.key);
            self.data_of(&mut data, batch.time, seq, rec.key, rec.op.code(), rec.value);
            let pk = if self.keyed {
                partition_key(&String::from_utf8_lossy(rec.key))
            } else {
                format!("w{}-{}-{pos}", ctx.index, batch.time)
            };
            let size = data.len() + pk.len();
            if size > MAX_RECORD_BYTES {
                return Err(Error::new(
                    ErrorKind::Fatal,
                    format!(
                        "Kinesis: the record with key {} is {size} bytes, above the 1 MiB limit of a Kinesis record; shrink the row",
                        String::from_utf8_lossy(rec.key)
                    ),
                ));
            }
            let key_hash = fnv64(pk.as_bytes());
            if self.entries.len() >= self.config.batch_records
                || self.bytes + size > self.config.batch_bytes
                || self.keys.contains(&key_hash)
            {
                self.flush().await?;
            }
            // A request holds each key once, so a retried entry never lands after a later
            // record of its key.
            self.keys.insert(key_hash);
            self.bytes += size;
            self.entries.push(Entry { partition_key: pk, data: std::mem::replace(&mut data, Vec::with_capacity(256)) });
        }
        Ok(())
    }

    async fn commit(&mut self, upper: Frontier<u64>) -> Result<()> {
        self.flush().await?;
        crate::operators::crash_point("commit.mid");
        if let (Some(dir), Some(ctx), Some(point)) = (&self.config.progress_dir, self.ctx, &self.point) {
            LocalProgress::new(dir, "kinesis", &self.sink, &self.config.stream).write(&point.record(ctx, upper))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_fit() {
        assert_eq!(partition_key(r#"{"k":1}"#), r#"{"k":1}"#);
        let long = "x".repeat(300);
        assert!(partition_key(&long).len() <= 256);
        assert_ne!(partition_key(&long), partition_key(&"y".repeat(300)));
    }
}
