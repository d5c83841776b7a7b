//! The Kafka connector's writer: one producer per worker, transactions bounded by records and
//! bytes, progress records, resume and fencing. The protocol is described in the
//! [module docs](super).

use super::client::{base_config, classify, classify_code, client_error, DeliveryState, SinkContext, EPOCH_SLOTS};
use super::config::{Delivery, KafkaConfig, TopicCreate};
use super::progress::{latest_records, read_progress_settled, ProgressRecord};
use super::table::ensure_topic;
use crate::connectors::bounds::PartialTime;
use crate::connectors::RecordWriter;
use crate::delivery::retry::retry_blocking_counted;
use crate::delivery::RetryPolicy;
use crate::error::{Error, ErrorKind, Result};
use crate::record::RecordBatch;
use crate::settings::SinkSettings;
use differential_sinks_operators::{
    reroutes, resolve_resume, Frontier, ResumePoint, WorkerContext, WorkerMetrics, WorkerProgress,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The header carrying a record's logical time (decimal text).
pub const TIME_HEADER: &str = "dsink.time";
/// The header naming the transaction a record was written in (`<run>.<seq>`, exactly-once only).
pub const TXN_HEADER: &str = "dsink.txn";

/// One worker's Kafka writer. See the [module docs](super) for the protocol.
pub struct KafkaWriter {
    cfg: KafkaConfig,
    sink: String,
    progress_topic: String,
    producer: ThreadedProducer<SinkContext>,
    state: Arc<DeliveryState>,
    keyed: bool,
    policy: RetryPolicy,
    /// Where retries are counted.
    metrics: WorkerMetrics,
    ctx: Option<WorkerContext>,
    point: Option<ResumePoint<u64>>,
    /// The time being written: how many of its records were handed over so far (skipped ones
    /// included: a time may come in several batches), and how many an earlier run committed.
    partial: PartialTime,
    txn_open: bool,
    txn_records: u64,
    txn_bytes: u64,
    dirty: bool,
    last: Option<(Frontier<u64>, u64)>,
    run: String,
    seq: u64,
    /// Commit epochs (at-least-once): records sent per epoch slot, and the commits started and
    /// not yet acknowledged, oldest first, as (epoch, frontier).
    epoch: u64,
    sent: [Cell<u64>; EPOCH_SLOTS],
    open: VecDeque<(u64, Frontier<u64>)>,
    time_text: String,
    txn_text: String,
}

impl KafkaWriter {
    /// Checks the topics (creating them where asked) and creates this worker's producer. It sends
    /// each record's key and value bytes as they are: the encoding (JSON, or Confluent-framed
    /// Avro) is the [`KafkaEncoder`](super::KafkaEncoder)'s. Transactions are initialised (and
    /// zombies fenced) in `resume`.
    pub fn open(cfg: &KafkaConfig, spec: &SinkSettings, ctx: WorkerContext) -> Result<Self> {
        cfg.check()?;
        let sink = spec.name().to_string();
        let progress_topic = cfg.progress_topic_name();
        ensure_topic(
            cfg,
            &cfg.topic,
            cfg.create.as_ref(),
            "create it, or set `topic.create = true` (with `topic.partitions`, `topic.replication.factor`, `topic.config.*`)",
        )?;
        let progress = TopicCreate {
            partitions: 1,
            replication_factor: cfg.create.as_ref().map_or(1, |c| c.replication_factor),
            config: [("cleanup.policy".to_string(), "compact".to_string())].into(),
        };
        ensure_topic(cfg, &progress_topic, Some(&progress), "")?;
        let state = Arc::new(DeliveryState::default());
        let mut pc = base_config(cfg);
        if !cfg.properties.contains_key("partitioner") {
            // Java-compatible: a key lands on the partition other Kafka clients would pick.
            pc.set("partitioner", "murmur2_random");
        }
        pc.set("enable.idempotence", "true");
        if cfg.delivery == Delivery::ExactlyOnce {
            pc.set("transactional.id", cfg.transactional_id(&sink, ctx.index));
        }
        let producer: ThreadedProducer<SinkContext> = pc
            .create_with_context(SinkContext { state: Arc::clone(&state) })
            .map_err(|e| client_error(e, "creating the Kafka producer"))?;
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let run = format!("{:x}", nanos ^ (u64::from(std::process::id()) << 40) ^ (ctx.index as u64).rotate_left(20));
        Ok(KafkaWriter {
            policy: RetryPolicy { deadline: cfg.retry_deadline, ..RetryPolicy::default() },
            metrics: spec.worker_metrics(),
            cfg: cfg.clone(),
            sink,
            progress_topic,
            producer,
            state,
            keyed: spec.primary_key().is_some() || spec.format().is_keyed(),
            ctx: None,
            point: None,
            partial: PartialTime::default(),
            txn_open: false,
            txn_records: 0,
            txn_bytes: 0,
            dirty: false,
            last: None,
            run,
            seq: 0,
            epoch: 0,
            sent: Default::default(),
            open: VecDeque::new(),
            time_text: String::new(),
            txn_text: String::new(),
        })
    }

    fn what(&self, action: &str) -> String {
        let w = self.ctx.map_or(0, |c| c.index);
        format!("sink `{}` (worker {w}, topic `{}`): {action}", self.sink, self.cfg.topic)
    }

    fn check_delivery(&self) -> Result<()> {
        if let Some((code, reason)) = self.state.failed.lock().expect("delivery state").take() {
            let (kind, hint) = classify_code(code, false);
            let mut msg = self.what(&format!("delivery failed: {code:?}: {reason}"));
            if !hint.is_empty() {
                msg.push_str("; ");
                msg.push_str(hint);
            }
            return Err(Error::new(kind, msg));
        }
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            let (kind, hint) = classify_code(code, false);
            return Err(Error::new(kind, self.what(&format!("the producer failed: {code:?}: {reason}; {hint}"))));
        }
        Ok(())
    }

    fn eos(&self) -> bool {
        self.cfg.delivery == Delivery::ExactlyOnce
    }

    /// Runs a transactional call with retries, mapping a fatal producer state to its cause.
    fn txn_call(&self, action: &str, f: impl Fn() -> std::result::Result<(), KafkaError>) -> Result<()> {
        let what = self.what(action);
        retry_blocking_counted(&self.policy, &what, Some(&self.metrics), || {
            f().map_err(|e| {
                let mut err = classify(&e, &what);
                if let KafkaError::Transaction(rd) = &e {
                    if rd.is_fatal() {
                        if let Some((code, _)) = self.producer.client().fatal_error() {
                            let (kind, hint) = classify_code(code, false);
                            if kind == ErrorKind::Fenced {
                                err = Error::new(kind, format!("{what}: {code:?}; {hint}"));
                            }
                        }
                    }
                }
                err
            })
        })
    }

    fn begin(&mut self) -> Result<()> {
        if self.eos() && !self.txn_open {
            self.txn_call("beginning a transaction", || self.producer.begin_transaction())?;
            self.txn_open = true;
            self.seq += 1;
            self.txn_text = format!("{}.{}", self.run, self.seq);
        }
        Ok(())
    }

    fn over_bound(&self) -> bool {
        self.txn_records >= self.cfg.max_transaction_records || self.txn_bytes >= self.cfg.max_transaction_bytes
    }

    fn send_one(&self, topic: &str, key: Option<&[u8]>, value: Option<&[u8]>, headers: OwnedHeaders) -> Result<()> {
        let slot = (self.epoch % EPOCH_SLOTS as u64) as usize;
        let mut rec = BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, slot).headers(headers);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        if let Some(v) = value {
            rec = rec.payload(v);
        }
        loop {
            match self.producer.send(rec) {
                Ok(()) => {
                    self.sent[slot].set(self.sent[slot].get() + 1);
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // librdkafka's queue is full: wait for deliveries (backpressure).
                    rec = back;
                    self.producer.poll(Duration::from_millis(5));
                    self.check_delivery()?;
                }
                Err((e, _)) => return Err(classify(&e, &self.what("producing a record"))),
            }
        }
    }

    fn headers(&self) -> OwnedHeaders {
        let h = OwnedHeaders::new_with_capacity(2)
            .insert(Header { key: TIME_HEADER, value: Some(self.time_text.as_bytes()) });
        if self.eos() {
            h.insert(Header { key: TXN_HEADER, value: Some(self.txn_text.as_bytes()) })
        } else {
            h
        }
    }

    /// Sends the progress record for `(frontier, partial)`: into the open transaction when
    /// exactly-once; at-least-once only once every record before `frontier` is acknowledged.
    fn send_progress(&mut self, frontier: Frontier<u64>, partial: u64) -> Result<()> {
        let (Some(ctx), Some(point)) = (self.ctx, self.point.as_ref()) else {
            return Err(Error::config("commit before resume"));
        };
        let rec = ProgressRecord {
            sink: self.sink.clone(),
            topic: self.cfg.topic.clone(),
            progress: point.record(ctx, frontier),
            partial,
            run: self.run.clone(),
            txn: if self.eos() { self.seq } else { self.seq + 1 },
        };
        let value = serde_json::to_vec(&rec)
            .map_err(|e| Error::new(ErrorKind::Fatal, self.what(&format!("encoding a progress record: {e}"))))?;
        let progress_topic = self.progress_topic.clone();
        self.send_one(&progress_topic, Some(rec.key().as_bytes()), Some(&value), OwnedHeaders::new())?;
        if !self.eos() {
            self.seq += 1;
        }
        Ok(())
    }

    /// Exactly-once: writes the progress record for `(frontier, partial)` into the open
    /// transaction and commits it.
    fn commit_progress(&mut self, frontier: Frontier<u64>, partial: u64) -> Result<()> {
        self.begin()?;
        // Every record of the transaction acknowledged before its progress record is produced: a
        // broker that shows aborted records (tansu) then never holds a progress record whose
        // data it lacks, so a resume that trusts such a record loses nothing.
        self.flush("delivering the transaction's records")?;
        self.send_progress(frontier, partial)?;
        // Records and the progress record produced, the transaction not yet committed.
        crate::operators::crash_point("commit.mid");
        let timeout = self.cfg.timeout;
        let r = self.txn_call("committing a transaction", || self.producer.commit_transaction(timeout));
        self.txn_open = false;
        if let Err(e) = r {
            if e.kind() != ErrorKind::Fenced {
                // Abortable or timed out: abort so nothing of it becomes visible, then stop.
                let _ = self.producer.abort_transaction(timeout);
                return Err(Error::new(
                    if e.kind() == ErrorKind::Retriable { ErrorKind::Retriable } else { e.kind() },
                    format!(
                        "{e}; the transaction was aborted: restart the sink, it resumes from the last committed progress \
                         record and delivers each change once"
                    ),
                ));
            }
            return Err(e);
        }
        self.check_delivery()?;
        self.txn_records = 0;
        self.txn_bytes = 0;
        self.dirty = false;
        self.last = Some((frontier, partial));
        Ok(())
    }

    /// Waits until every record sent so far is acknowledged (or failed).
    ///
    /// rdkafka's `flush` polls in steps of 100 ms, which would add up to 100 ms to every
    /// commit; librdkafka's own thread serves delivery reports here, so waiting for its out
    /// queue to drain in short steps is enough.
    fn flush(&self, action: &str) -> Result<()> {
        let timeout = self.cfg.timeout;
        let what = self.what(action);
        retry_blocking_counted(&self.policy, &what, Some(&self.metrics), || {
            let deadline = Instant::now() + timeout;
            while self.producer.in_flight_count() > 0 {
                self.check_delivery()?;
                if Instant::now() > deadline {
                    return Err(Error::new(
                        ErrorKind::Retriable,
                        format!("{what}: records not acknowledged within {timeout:?}"),
                    ));
                }
                self.producer.poll(Duration::from_millis(1));
            }
            self.check_delivery()
        })
    }

    fn fence_previous(&self, old_peers: usize, ctx: WorkerContext) -> Result<bool> {
        let mut fenced = false;
        for j in ctx.peers..old_peers {
            if j % ctx.peers != ctx.index {
                continue;
            }
            let mut pc = base_config(&self.cfg);
            pc.set("transactional.id", self.cfg.transactional_id(&self.sink, j));
            let p: rdkafka::producer::BaseProducer =
                pc.create().map_err(|e| client_error(e, "creating a producer to fence an earlier worker"))?;
            let timeout = self.cfg.timeout;
            let what = self.what(&format!("fencing the earlier worker {j}"));
            retry_blocking_counted(&self.policy, &what, Some(&self.metrics), || {
                p.init_transactions(timeout).map_err(|e| classify(&e, "fencing"))
            })?;
            fenced = true;
        }
        Ok(fenced)
    }
}

impl RecordWriter for KafkaWriter {
    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<u64>> {
        self.ctx = Some(ctx);
        if self.eos() {
            // Fences a zombie with this transactional id and aborts its open transaction.
            let timeout = self.cfg.timeout;
            self.txn_call("initialising transactions", || self.producer.init_transactions(timeout))?;
        }
        // A first look (what is stable now) tells the earlier worker count; when it was larger,
        // fence the earlier workers this one replaces, so their open transactions end. Then
        // read again once every transaction open at that point has ended.
        let glance =
            latest_records(read_progress_settled(&self.cfg, &self.progress_topic, false)?, &self.sink, &self.cfg.topic);
        let glance_gen = glance.iter().map(|r| r.progress.generation).max();
        if let Some(old_peers) =
            glance.iter().find(|r| Some(r.progress.generation) == glance_gen).map(|r| r.progress.peers)
        {
            if self.eos() && old_peers > ctx.peers {
                self.fence_previous(old_peers, ctx)?;
            }
        }
        let records =
            latest_records(read_progress_settled(&self.cfg, &self.progress_topic, true)?, &self.sink, &self.cfg.topic);
        let progress: Vec<WorkerProgress<u64>> = records.iter().map(|r| r.progress.clone()).collect();
        if reroutes(&progress, ctx) {
            let latest_gen = records.iter().map(|r| r.progress.generation).max();
            if let Some(r) = records.iter().find(|r| Some(r.progress.generation) == latest_gen && r.partial > 0) {
                return Err(Error::new(
                    ErrorKind::Resume,
                    format!(
                        "sink `{}`: worker {} of the earlier run committed part of time {:?} (a transaction bound split it), \
                         and this run routes keys to workers differently (another worker count, or another key); restart \
                         it with the earlier {} workers and key settings until they commit a whole time, or write to a \
                         fresh topic",
                        self.sink, r.progress.worker, r.progress.frontier, r.progress.peers
                    ),
                ));
            }
        }
        let point = resolve_resume(&progress, ctx)?;
        let own = records.iter().find(|r| r.progress.generation == point.generation && r.progress.worker == ctx.index);
        let partial = own.filter(|r| r.progress.frontier == point.frontier).map_or(0, |r| r.partial);
        self.partial = PartialTime::resumed(point.frontier.to_u64(), partial);
        self.last = Some((point.frontier, partial));
        let frontier = point.frontier;
        tracing::info!(sink = %self.sink, worker = ctx.index, generation = point.generation, frontier = ?frontier, partial, "resuming");
        self.point = Some(point);
        Ok(frontier)
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.check_delivery()?;
        if batch.is_empty() {
            return Ok(());
        }
        let time = batch.time;
        if self.partial.enter(time) {
            // A new time (a time's records may come in several consecutive batches).
            self.time_text.clear();
            self.time_text.push_str(&time.to_string());
        }
        if self.eos() && self.over_bound() {
            // Everything of earlier times, and `count` records of this one, are written.
            self.commit_progress(Frontier::at(time), self.partial.count())?;
        }
        let n = batch.len();
        let topic = self.cfg.topic.clone();
        for (i, r) in batch.iter().enumerate() {
            if self.partial.skip_committed(1) == 1 {
                continue;
            }
            self.partial.advance();
            self.begin()?;
            let headers = self.headers();
            // The records are in their final form (JSON, or Confluent-framed Avro: the encoder's
            // work); an unkeyed sink sends no message key.
            let key = if self.keyed { Some(r.key) } else { None };
            let value = r.value;
            self.txn_bytes += (key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len)) as u64;
            self.send_one(&topic, key, value, headers)?;
            self.txn_records += 1;
            self.dirty = true;
            if self.eos() && self.over_bound() && i + 1 < n {
                self.commit_progress(Frontier::at(time), self.partial.count())?;
            }
        }
        Ok(())
    }

    fn commit(&mut self, upper: Frontier<u64>) -> Result<()> {
        if !self.dirty && self.last == Some((upper, 0)) {
            return Ok(());
        }
        if self.eos() {
            return self.commit_progress(upper, 0);
        }
        // At-least-once: the commit is the acknowledgement of every record of this epoch and the
        // ones before; `durable` sees it arrive while later times are produced.
        if self.open.len() + 1 >= EPOCH_SLOTS {
            self.durable(true)?;
        }
        self.open.push_back((self.epoch, upper));
        self.epoch += 1;
        let slot = (self.epoch % EPOCH_SLOTS as u64) as usize;
        // The slot's previous epoch is acknowledged (fewer than EPOCH_SLOTS are open): reuse it.
        self.sent[slot].set(0);
        self.state.reported[slot].store(0, Ordering::Release);
        self.dirty = false;
        Ok(())
    }

    fn pipelined(&self) -> bool {
        !self.eos()
    }

    fn durable(&mut self, wait: bool) -> Result<Option<Frontier<u64>>> {
        let deadline = Instant::now() + self.cfg.timeout;
        let mut acknowledged = None;
        loop {
            self.check_delivery()?;
            while let Some(&(epoch, upper)) = self.open.front() {
                let slot = (epoch % EPOCH_SLOTS as u64) as usize;
                if self.state.reported[slot].load(Ordering::Acquire) < self.sent[slot].get() {
                    break;
                }
                self.open.pop_front();
                acknowledged = Some(upper);
            }
            // A report counted above was recorded after its failure: check once more.
            self.check_delivery()?;
            if !wait || self.open.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::new(
                    ErrorKind::Retriable,
                    self.what(&format!("records not acknowledged within {:?}", self.cfg.timeout)),
                ));
            }
            self.producer.poll(Duration::from_millis(1));
        }
        if let Some(upper) = acknowledged {
            // Every record before `upper` is acknowledged: only now may its progress record exist.
            self.send_progress(upper, 0)?;
            if upper.is_complete() {
                self.flush("flushing the progress record")?;
            }
            self.last = Some((upper, 0));
        }
        Ok(acknowledged)
    }
}

impl Drop for KafkaWriter {
    fn drop(&mut self) {
        if !self.eos() {
            // Give the last progress record a moment to be acknowledged.
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.producer.in_flight_count() > 0 && Instant::now() < deadline {
                self.producer.poll(Duration::from_millis(1));
            }
        }
        if self.txn_open {
            // Leave nothing half-done behind when the dataflow is dropped: abort the open transaction.
            let _ = self.producer.abort_transaction(Duration::from_secs(5));
        }
    }
}
