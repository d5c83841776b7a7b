//! The Pulsar connector's writer: one producer per worker, receipts awaited at commit.

use super::config::{PulsarCompression, PulsarConfig};
use crate::connectors::local_progress::LocalProgress;
use crate::delivery::{retry::retry_counted, AsyncRecordWriter, Bridge, RetryPolicy};
use crate::error::{Error, ErrorKind, Result};
use crate::record::RecordBatch;
use crate::settings::SinkSettings;
use differential_sinks_operators::{resolve_resume, Frontier, ResumePoint, WorkerContext, WorkerMetrics};
use pulsar::compression::{Compression, CompressionLz4, CompressionSnappy, CompressionZlib};
use pulsar::producer::{Message, SendFuture};
use pulsar::{Producer, ProducerOptions, Pulsar, TokioExecutor};
use std::collections::{HashMap, VecDeque};

/// Message property: the logical time.
pub const TIME_PROPERTY: &str = "dsink.time";
/// Message property: the record's index among its key's records at that time (or, unkeyed,
/// its position in the worker's batch).
pub const SEQ_PROPERTY: &str = "dsink.seq";
/// Message property: `c`, `u` or `d`.
pub const OP_PROPERTY: &str = "dsink.op";
/// Message property (unkeyed records): `worker/peers` that wrote it.
pub const WORKER_PROPERTY: &str = "dsink.worker";

/// Opens a worker's Pulsar writer behind a [`Bridge`].
pub fn open(config: &PulsarConfig, spec: &SinkSettings, _ctx: WorkerContext) -> Result<Bridge> {
    let w = PulsarWriter {
        config: config.clone(),
        sink: spec.name().to_string(),
        keyed: spec.primary_key().is_some() || spec.key_by_function,
        producer: None,
        metrics: spec.worker_metrics(),
        ctx: None,
        point: None,
        pending: VecDeque::new(),
    };
    Bridge::spawn(spec.name(), 4, w)
}

struct PulsarWriter {
    config: PulsarConfig,
    sink: String,
    keyed: bool,
    producer: Option<Producer<TokioExecutor>>,
    /// Where retries are counted.
    metrics: WorkerMetrics,
    ctx: Option<WorkerContext>,
    point: Option<ResumePoint<u64>>,
    pending: VecDeque<SendFuture>,
}

fn transport(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Retriable, format!("Pulsar: {what}: {e}"))
}

/// A failed connection: a refused token or certificate stops the sink (retrying cannot cure it),
/// naming the options to check; anything else is retried.
fn connect_error(service_url: &str, e: impl std::fmt::Display) -> Error {
    let what = format!("connecting to {}", crate::secret::redact_url(service_url));
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    if lower.contains("authentication") || lower.contains("authoriz") || lower.contains("unauthorized") {
        Error::new(ErrorKind::Config, format!("Pulsar: {what}: {text}; check `auth.token`"))
    } else if lower.contains("certificate") || lower.contains("tls") {
        Error::new(
            ErrorKind::Config,
            format!("Pulsar: {what}: {text}; check the `pulsar+ssl://` host against the broker's certificate"),
        )
    } else {
        transport(&what, text)
    }
}

const MAX_PENDING: usize = 16_384;

impl PulsarWriter {
    async fn connect(&self) -> Result<Producer<TokioExecutor>> {
        let c = &self.config;
        let mut b = Pulsar::builder(c.service_url.clone(), TokioExecutor);
        if let Some(t) = &c.auth_token {
            b = b.with_auth(pulsar::Authentication { name: "token".into(), data: t.expose().as_bytes().to_vec() });
        }
        let client = b.build().await.map_err(|e| connect_error(&c.service_url, e))?;
        let compression = match c.compression {
            PulsarCompression::None => None,
            PulsarCompression::Lz4 => Some(Compression::Lz4(CompressionLz4::default())),
            PulsarCompression::Zlib => Some(Compression::Zlib(CompressionZlib::default())),
            PulsarCompression::Snappy => Some(Compression::Snappy(CompressionSnappy::default())),
        };
        let options = ProducerOptions {
            batch_size: c.batch_size.filter(|n| *n > 1),
            batch_byte_size: c.batch_byte_size,
            compression,
            block_queue_if_full: true,
            ..Default::default()
        };
        client
            .producer()
            .with_topic(c.topic.clone())
            .with_options(options)
            .build()
            .await
            .map_err(|e| transport(&format!("creating a producer on `{}`", c.topic), e))
    }

    async fn settle(&mut self, keep: usize) -> Result<()> {
        if self.pending.len() <= keep {
            return Ok(());
        }
        let producer = self.producer.as_mut().expect("resumed");
        if self.config.batch_size.is_some_and(|n| n > 1) {
            producer.send_batch().await.map_err(|e| transport("sending a batch", e))?;
        }
        while self.pending.len() > keep {
            let f = self.pending.pop_front().expect("non-empty");
            f.await.map_err(|e| transport("awaiting a receipt", e))?;
        }
        Ok(())
    }
}

impl AsyncRecordWriter for PulsarWriter {
    async fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<u64>> {
        let producer =
            retry_counted(&RetryPolicy::default(), "Pulsar connect", Some(&self.metrics), || self.connect()).await?;
        self.producer = Some(producer);
        self.ctx = Some(ctx);
        let records = match &self.config.progress_dir {
            Some(dir) => LocalProgress::new(dir, "pulsar", &self.sink, &self.config.topic).read()?,
            None => Vec::new(),
        };
        let point = resolve_resume(&records, ctx)?;
        let f = point.frontier;
        self.point = Some(point);
        Ok(f)
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let ctx = self.ctx.ok_or_else(|| Error::config("Pulsar writer used before resume"))?;
        let time = batch.time.to_string();
        let mut prev: Option<&[u8]> = None;
        let mut seq = 0u64;
        for (i, rec) in batch.iter().enumerate() {
            // The record's index among its key's records at this time (keyed), or its position
            // among this worker's records of the whole time (unkeyed; a time may come in several
            // batches).
            seq = if !self.keyed {
                batch.first + i as u64
            } else if prev == Some(rec.key) {
                seq + 1
            } else {
                0
            };
            prev = Some(rec.key);
            let mut properties = HashMap::with_capacity(4);
            properties.insert(TIME_PROPERTY.to_string(), time.clone());
            properties.insert(SEQ_PROPERTY.to_string(), seq.to_string());
            properties.insert(OP_PROPERTY.to_string(), rec.op.code().to_string());
            let partition_key = if self.keyed {
                Some(std::str::from_utf8(rec.key).map_err(|_| Error::encode("Pulsar: a key is not UTF-8"))?.to_string())
            } else {
                properties.insert(WORKER_PROPERTY.to_string(), format!("{}/{}", ctx.index, ctx.peers));
                None
            };
            let msg =
                Message { payload: rec.value.unwrap_or(b"").to_vec(), properties, partition_key, ..Default::default() };
            let producer = self.producer.as_mut().expect("resumed");
            let f = producer.send_non_blocking(msg).await.map_err(|e| transport("sending", e))?;
            self.pending.push_back(f);
            if self.pending.len() >= MAX_PENDING {
                self.settle(MAX_PENDING / 2).await?;
            }
        }
        Ok(())
    }

    async fn commit(&mut self, upper: Frontier<u64>) -> Result<()> {
        self.settle(0).await?;
        crate::operators::crash_point("commit.mid");
        if let (Some(dir), Some(ctx), Some(point)) = (&self.config.progress_dir, self.ctx, &self.point) {
            LocalProgress::new(dir, "pulsar", &self.sink, &self.config.topic).write(&point.record(ctx, upper))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_logins_and_certificates_stop_other_failures_retry() {
        let e = connect_error("pulsar+ssl://u:pw@h:6651", "Connection error: Server error (Some(AuthenticationError))");
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("auth.token") && !e.to_string().contains("pw@"), "{e}");
        let e = connect_error("pulsar+ssl://h:6651", "tls handshake: invalid peer certificate: UnknownIssuer");
        assert_eq!(e.kind(), ErrorKind::Config);
        let e = connect_error("pulsar://h:6650", "Connection error: Connection refused (os error 111)");
        assert_eq!(e.kind(), ErrorKind::Retriable);
    }
}
