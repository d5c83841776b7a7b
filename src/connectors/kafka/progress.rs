//! Where the Kafka connector records progress and how it reads it back: one [`ProgressRecord`]
//! per commit in the compacted progress topic, keyed by sink, generation and worker, written in
//! the commit's transaction (exactly-once) or after its records are acknowledged
//! (at-least-once); read back with `read_committed` once every transaction open at the start
//! of the read has ended.

use super::client::{base_config, classify, client_error};
use super::config::KafkaConfig;
use super::table::topic_partitions;
use crate::delivery::retry::retry_blocking;
use crate::delivery::RetryPolicy;
use crate::error::{Error, ErrorKind, Result};
use differential_sinks_operators::WorkerProgress;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a worker records in the progress topic with each commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressRecord {
    /// The sink's name.
    pub sink: String,
    /// The data topic.
    pub topic: String,
    /// Worker, peers, generation, base and the committed frontier.
    pub progress: WorkerProgress<u64>,
    /// Records of the time at the frontier already committed (a transaction split a long time).
    pub partial: u64,
    /// The writer instance that committed (random per start), and its transaction number: data
    /// records carry the same pair in their `dsink.txn` header.
    pub run: String,
    /// The transaction's number within the run, from 1.
    pub txn: u64,
}

impl ProgressRecord {
    /// The record's key in the progress topic: one per sink, generation and worker, so a
    /// compacted topic keeps each worker's latest commit.
    pub fn key(&self) -> String {
        format!("{}/g{}/w{}", self.sink, self.progress.generation, self.progress.worker)
    }
}
/// Every progress record in `progress_topic` (read committed), in log order per key.
///
/// A read_committed consumer stops at the *last stable offset*: the first record of the oldest
/// transaction still open on the partition. Commits made after that transaction began are
/// invisible until it ends, so reading "to the end" could return a stale prefix — for instance
/// while a crashed worker's transaction waits to be aborted by its successor. With `settle`, the
/// reader first waits until the last stable offset has reached the high watermark seen when it
/// started (every transaction open at that moment has ended), up to `kafka.timeout.ms`.
pub fn read_progress(cfg: &KafkaConfig, progress_topic: &str) -> Result<Vec<ProgressRecord>> {
    read_progress_settled(cfg, progress_topic, true)
}

fn reader(cfg: &KafkaConfig, isolation: &str) -> Result<BaseConsumer> {
    let mut c = base_config(cfg);
    c.set("group.id", "dsink-progress-reader")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    c.create().map_err(|e| client_error(e, "creating the progress reader"))
}

pub(super) fn read_progress_settled(
    cfg: &KafkaConfig,
    progress_topic: &str,
    settle: bool,
) -> Result<Vec<ProgressRecord>> {
    let consumer = reader(cfg, "read_committed")?;
    let policy = RetryPolicy { deadline: cfg.retry_deadline, ..RetryPolicy::default() };
    let Some(partitions) = retry_blocking(&policy, "reading Kafka metadata", || {
        topic_partitions(consumer.client(), progress_topic, cfg.timeout)
    })?
    else {
        return Ok(Vec::new());
    };
    let deadline = Instant::now() + cfg.timeout.max(Duration::from_secs(10));
    let stuck = || {
        Error::new(
            ErrorKind::Retriable,
            format!(
                "reading the progress topic `{progress_topic}`: a transaction stayed open for {:?} \
                 (a crashed worker whose successor has not started yet?); start every worker of the sink, \
                 or wait for the broker's transaction.timeout to abort it",
                cfg.timeout.max(Duration::from_secs(10))
            ),
        )
    };
    if settle {
        // The high watermark (read_uncommitted), then wait for the last stable offset
        // (read_committed: librdkafka's watermark query uses the client's isolation level).
        let raw = reader(cfg, "read_uncommitted")?;
        for p in &partitions {
            let (_, high) = raw
                .fetch_watermarks(progress_topic, *p, cfg.timeout)
                .map_err(|e| classify(&e, &format!("reading offsets of `{progress_topic}`")))?;
            loop {
                let (_, stable) = consumer
                    .fetch_watermarks(progress_topic, *p, cfg.timeout)
                    .map_err(|e| classify(&e, &format!("reading offsets of `{progress_topic}`")))?;
                if stable >= high {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(stuck());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    let mut tpl = TopicPartitionList::new();
    let mut pending = std::collections::BTreeSet::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(progress_topic, p, cfg.timeout)
            .map_err(|e| classify(&e, &format!("reading offsets of `{progress_topic}`")))?;
        if high > low {
            tpl.add_partition_offset(progress_topic, p, Offset::Beginning)
                .map_err(|e| classify(&e, "assigning the progress topic"))?;
            pending.insert(p);
        }
    }
    let mut out = Vec::new();
    if pending.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl).map_err(|e| classify(&e, "assigning the progress topic"))?;
    while !pending.is_empty() {
        if Instant::now() > deadline {
            return Err(stuck());
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                pending.remove(&p);
            }
            Some(Err(e)) => {
                let err = classify(&e, &format!("reading the progress topic `{progress_topic}`"));
                if !err.is_retriable() {
                    return Err(err);
                }
            }
            Some(Ok(m)) => {
                if let Some(v) = m.payload() {
                    match serde_json::from_slice::<ProgressRecord>(v) {
                        Ok(r) => out.push(r),
                        Err(e) => tracing::warn!(
                            topic = progress_topic,
                            offset = m.offset(),
                            "ignoring a record that is not a progress record: {e}"
                        ),
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The latest record per (sink, generation, worker) of `sink` writing `topic`.
pub(super) fn latest_records(all: Vec<ProgressRecord>, sink: &str, topic: &str) -> Vec<ProgressRecord> {
    let mut latest: BTreeMap<(u64, usize), ProgressRecord> = BTreeMap::new();
    for r in all {
        if r.sink == sink && r.topic == topic {
            latest.insert((r.progress.generation, r.progress.worker), r);
        }
    }
    latest.into_values().collect()
}
