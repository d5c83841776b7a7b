//! The Kafka connector's writer: one producer per worker, transactions bounded by records and
//! bytes, progress records, resume and fencing. The protocol is described in the
//! [module docs](super).

use super::config::{Delivery, Encode, KafkaConfig, TopicCreate};
use super::registry::Registry;
use crate::connectors::RecordWriter;
use crate::delivery::retry::retry_blocking;
use crate::delivery::RetryPolicy;
use crate::encode::avro::{self, AvroType};
use crate::envelope::Format;
use crate::error::{Error, ErrorKind, Result};
use crate::key::KeyEncoding;
use crate::record::RecordBatch;
use crate::settings::SinkSettings;
use differential_sinks_operators::{resolve_resume, Frontier, ResumePoint, WorkerContext, WorkerProgress};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The header carrying a record's logical time (decimal text).
pub const TIME_HEADER: &str = "dsink.time";
/// The header naming the transaction a record was written in (`<run>.<seq>`, exactly-once only).
pub const TXN_HEADER: &str = "dsink.txn";

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

/// Slots of the delivery-report counters; more than the commits that can be open at once.
const EPOCH_SLOTS: usize = 16;

#[derive(Default)]
struct DeliveryState {
    failed: Mutex<Option<(RDKafkaErrorCode, String)>>,
    /// Delivery reports received per commit epoch (slot = epoch % EPOCH_SLOTS), success or not:
    /// an epoch is acknowledged when this reaches the number of records sent in it.
    reported: [AtomicU64; EPOCH_SLOTS],
}

/// Collects delivery failures reported by librdkafka's background thread.
pub struct SinkContext {
    state: Arc<DeliveryState>,
}

impl ClientContext for SinkContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(code) = error.rdkafka_error_code() {
            if is_fatal_code(code) {
                let mut f = self.state.failed.lock().expect("delivery state");
                if f.is_none() {
                    *f = Some((code, reason.to_string()));
                }
                return;
            }
        }
        tracing::warn!(error = %error, reason, "kafka client error (librdkafka retries it)");
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, slot: usize) {
        if let Err((e, _)) = result {
            let code = e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
            let mut f = self.state.failed.lock().expect("delivery state");
            if f.is_none() {
                *f = Some((code, e.to_string()));
            }
        }
        // After the failure is recorded: whoever sees the count complete also sees the failure.
        self.state.reported[slot % EPOCH_SLOTS].fetch_add(1, Ordering::AcqRel);
    }
}

fn is_fatal_code(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        Fenced
            | ProducerFenced
            | InvalidProducerEpoch
            | TransactionCoordinatorFenced
            | TopicAuthorizationFailed
            | ClusterAuthorizationFailed
            | TransactionalIdAuthorizationFailed
            | SaslAuthenticationFailed
            | Authentication
            | Fatal
    )
}

/// Maps a librdkafka error code to an error kind and what to do about it.
fn classify_code(code: RDKafkaErrorCode, retriable_hint: bool) -> (ErrorKind, &'static str) {
    use RDKafkaErrorCode::*;
    match code {
        Fenced | ProducerFenced | InvalidProducerEpoch | TransactionCoordinatorFenced => (
            ErrorKind::Fenced,
            "another producer with the same transactional id took over (a newer run of this sink, or another sink \
             with the same `transactional.id.prefix`); stop this instance: the newer one continues from the committed progress",
        ),
        TopicAuthorizationFailed
        | ClusterAuthorizationFailed
        | TransactionalIdAuthorizationFailed
        | GroupAuthorizationFailed
        | SaslAuthenticationFailed
        | Authentication => (
            ErrorKind::Fatal,
            "grant the sink's principal WRITE and DESCRIBE on the topic and the progress topic (and on its transactional \
             ids for exactly-once), and check the `properties.security.protocol` / `properties.sasl.*` / `properties.ssl.*` settings",
        ),
        MessageSizeTooLarge | InvalidMessageSize => (
            ErrorKind::Fatal,
            "a record is larger than the broker accepts: raise `properties.message.max.bytes` and the topic's \
             `max.message.bytes` (`topic.config.max.message.bytes` when the sink creates it), or make rows smaller",
        ),
        UnknownTopicOrPartition | UnknownTopic | UnknownPartition => (
            ErrorKind::Fatal,
            "the topic does not exist (or was deleted): create it, or set `topic.create = true`",
        ),
        OperationTimedOut | RequestTimedOut | MessageTimedOut | AllBrokersDown
        | BrokerTransportFailure | NetworkException | NotEnoughReplicas
        | NotEnoughReplicasAfterAppend | LeaderNotAvailable | NotLeaderForPartition
        | CoordinatorLoadInProgress | CoordinatorNotAvailable | NotCoordinator
        | ConcurrentTransactions | QueueFull | TimedOutQueue => (ErrorKind::Retriable, ""),
        _ if retriable_hint => (ErrorKind::Retriable, ""),
        _ => (ErrorKind::Fatal, ""),
    }
}

fn classify(e: &KafkaError, what: &str) -> Error {
    let (code, retriable) = match e {
        KafkaError::Transaction(rd) => (rd.code(), rd.is_retriable()),
        other => (other.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail), false),
    };
    let (kind, hint) = classify_code(code, retriable);
    let msg = if hint.is_empty() { format!("{what}: {e}") } else { format!("{what}: {e}; {hint}") };
    Error::new(kind, msg).with_source(e.clone())
}

/// The librdkafka settings shared by every client of a sink.
fn base_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.bootstrap);
    c.set("allow.auto.create.topics", "false");
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c
}

fn client_error(e: KafkaError, what: &str) -> Error {
    match e {
        KafkaError::ClientConfig(_, ref desc, ref key, _) => {
            Error::config(format!("{what}: librdkafka refused `properties.{key}`: {desc}"))
        }
        other => Error::config(format!("{what}: {other}")),
    }
}

fn block_on<F: std::future::Future>(f: F) -> Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting a runtime for Kafka admin calls", e))?;
    Ok(rt.block_on(f))
}

/// Partitions of `topic`, or `None` if the brokers do not know it.
fn topic_partitions<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<Vec<i32>>> {
    let md = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| classify(&e, &format!("reading metadata of topic `{topic}`")))?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match t.error() {
        None if !t.partitions().is_empty() => Ok(Some(t.partitions().iter().map(|p| p.id()).collect())),
        None => Ok(None),
        Some(e) => {
            let code = RDKafkaErrorCode::from(e);
            if matches!(code, RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) {
                Ok(None)
            } else {
                let (kind, hint) = classify_code(code, false);
                Err(Error::new(kind, format!("reading metadata of topic `{topic}`: {code:?} {hint}")))
            }
        }
    }
}

/// Makes sure `topic` exists, creating it when `create` says how.
fn ensure_topic(cfg: &KafkaConfig, topic: &str, create: Option<&TopicCreate>, missing_hint: &str) -> Result<Vec<i32>> {
    let admin: AdminClient<DefaultClientContext> =
        base_config(cfg).create().map_err(|e| client_error(e, "creating the Kafka admin client"))?;
    let policy = RetryPolicy { deadline: cfg.retry_deadline, ..RetryPolicy::default() };
    if let Some(p) =
        retry_blocking(&policy, "reading Kafka metadata", || topic_partitions(admin.inner(), topic, cfg.timeout))?
    {
        return Ok(p);
    }
    let Some(TopicCreate { partitions, replication_factor: replication, config }) = create else {
        return Err(Error::config(format!(
            "the Kafka topic `{topic}` does not exist on {}: {missing_hint}",
            cfg.bootstrap
        )));
    };
    let (partitions, replication) = (*partitions, *replication);
    let mut nt = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    for (k, v) in config {
        nt = nt.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(cfg.timeout));
    let results =
        block_on(admin.create_topics([&nt], &opts))?.map_err(|e| classify(&e, &format!("creating topic `{topic}`")))?;
    for r in results {
        if let Err((_, code)) = r {
            if code != RDKafkaErrorCode::TopicAlreadyExists {
                let (kind, hint) = classify_code(code, false);
                return Err(Error::new(
                    if kind == ErrorKind::Retriable { kind } else { ErrorKind::Config },
                    format!("creating topic `{topic}` ({partitions} partitions, replication factor {replication}): {code:?} {hint}"),
                ));
            }
        }
    }
    // Wait until the brokers' metadata shows it.
    let deadline = Instant::now() + cfg.timeout;
    loop {
        if let Some(p) = topic_partitions(admin.inner(), topic, cfg.timeout)? {
            return Ok(p);
        }
        if Instant::now() > deadline {
            return Err(Error::new(
                ErrorKind::Retriable,
                format!("topic `{topic}` was created but its metadata did not appear within {:?}", cfg.timeout),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
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

fn read_progress_settled(cfg: &KafkaConfig, progress_topic: &str, settle: bool) -> Result<Vec<ProgressRecord>> {
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
fn latest_records(all: Vec<ProgressRecord>, sink: &str, topic: &str) -> Vec<ProgressRecord> {
    let mut latest: BTreeMap<(u64, usize), ProgressRecord> = BTreeMap::new();
    for r in all {
        if r.sink == sink && r.topic == topic {
            latest.insert((r.progress.generation, r.progress.worker), r);
        }
    }
    latest.into_values().collect()
}

struct AvroCodec {
    key: Option<(u32, AvroType)>,
    value: (u32, AvroType),
}

/// One worker's Kafka writer. See the [module docs](super) for the protocol.
pub struct KafkaWriter {
    cfg: KafkaConfig,
    sink: String,
    progress_topic: String,
    producer: ThreadedProducer<SinkContext>,
    state: Arc<DeliveryState>,
    keyed: bool,
    policy: RetryPolicy,
    ctx: Option<WorkerContext>,
    point: Option<ResumePoint<u64>>,
    /// `(time, n)`: the first `n` records of `time` were committed by an earlier run.
    skip: Option<(u64, u64)>,
    /// The time being written, how many of its records were handed over so far (skipped ones
    /// included: a time may come in several batches), and how many more to skip.
    cur_time: Option<u64>,
    cur_count: u64,
    skip_left: u64,
    txn_open: bool,
    txn_records: u64,
    txn_bytes: u64,
    dirty: bool,
    last: Option<(Frontier<u64>, u64)>,
    run: String,
    seq: u64,
    avro: Option<AvroCodec>,
    /// Commit epochs (at-least-once): records sent per epoch slot, and the commits started and
    /// not yet acknowledged, oldest first, as (epoch, frontier).
    epoch: u64,
    sent: [Cell<u64>; EPOCH_SLOTS],
    open: VecDeque<(u64, Frontier<u64>)>,
    key_buf: Vec<u8>,
    value_buf: Vec<u8>,
    time_text: String,
    txn_text: String,
}

impl KafkaWriter {
    /// Checks the topics (creating them where asked), registers Avro schemas, and creates this
    /// worker's producer. Transactions are initialised (and zombies fenced) in `resume`.
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
        let avro = match cfg.encode {
            Encode::Json => None,
            Encode::Avro => Some(Self::register(cfg, spec)?),
        };
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
            cfg: cfg.clone(),
            sink,
            progress_topic,
            producer,
            state,
            keyed: spec.primary_key().is_some() || spec.format().is_keyed(),
            ctx: None,
            point: None,
            skip: None,
            cur_time: None,
            cur_count: 0,
            skip_left: 0,
            txn_open: false,
            txn_records: 0,
            txn_bytes: 0,
            dirty: false,
            last: None,
            run,
            seq: 0,
            avro,
            epoch: 0,
            sent: Default::default(),
            open: VecDeque::new(),
            key_buf: Vec::with_capacity(64),
            value_buf: Vec::with_capacity(256),
            time_text: String::new(),
            txn_text: String::new(),
        })
    }

    fn register(cfg: &KafkaConfig, spec: &SinkSettings) -> Result<AvroCodec> {
        let schema = spec.schema().ok_or_else(|| {
            Error::config(
                "`encode = avro` needs the row schema: declare it (SinkSpecBuilder::schema, or dsink --schema)",
            )
        })?;
        let registry = Registry::new(
            cfg.registry.as_ref().ok_or_else(|| Error::config("`encode = avro` needs `schema.registry`"))?,
            cfg.timeout,
        )?;
        let base = avro::avro_name(&cfg.topic);
        let row = avro::row_schema(&format!("{base}_value"), schema);
        let value = match spec.format() {
            Format::Debezium { .. } => avro::debezium_schema(&base, row),
            _ => row,
        };
        let policy = RetryPolicy { deadline: cfg.retry_deadline, ..RetryPolicy::default() };
        let value_id = retry_blocking(&policy, "registering the value schema", || {
            registry.register(&format!("{}-value", cfg.topic), &value.to_json())
        })?;
        let key = match (spec.primary_key(), spec.key_encoding()) {
            (Some(cols), KeyEncoding::Json) => {
                let k = avro::key_schema(&format!("{base}_key"), schema, cols)?;
                let id = retry_blocking(&policy, "registering the key schema", || {
                    registry.register(&format!("{}-key", cfg.topic), &k.to_json())
                })?;
                Some((id, k))
            }
            _ => None,
        };
        Ok(AvroCodec { key, value: (value_id, value) })
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
        retry_blocking(&self.policy, &what, || {
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
        let value = serde_json::to_vec(&rec).expect("progress record encodes");
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
        retry_blocking(&self.policy, &what, || {
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
            retry_blocking(&self.policy, &self.what(&format!("fencing the earlier worker {j}")), || {
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
        let latest_gen = records.iter().map(|r| r.progress.generation).max();
        let latest: Vec<&ProgressRecord> =
            records.iter().filter(|r| Some(r.progress.generation) == latest_gen).collect();
        if let Some(first) = latest.first() {
            if first.progress.peers != ctx.peers {
                if let Some(r) = latest.iter().find(|r| r.partial > 0) {
                    return Err(Error::new(
                        ErrorKind::Resume,
                        format!(
                            "sink `{}`: worker {} of the earlier run committed part of time {:?} (a transaction bound split it), \
                             and keys of a time are spread over workers by worker count; restart it with {} workers until they \
                             commit a whole time, or write to a fresh topic",
                            self.sink, r.progress.worker, r.progress.frontier, first.progress.peers
                        ),
                    ));
                }
            }
        }
        let progress: Vec<WorkerProgress<u64>> = records.iter().map(|r| r.progress.clone()).collect();
        let point = resolve_resume(&progress, ctx)?;
        let own = records.iter().find(|r| r.progress.generation == point.generation && r.progress.worker == ctx.index);
        let partial = own.filter(|r| r.progress.frontier == point.frontier).map_or(0, |r| r.partial);
        self.skip = match point.frontier.time() {
            Some(t) if partial > 0 => Some((*t, partial)),
            _ => None,
        };
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
        if self.cur_time != Some(time) {
            // A new time (a time's records may come in several consecutive batches).
            self.cur_time = Some(time);
            self.cur_count = 0;
            self.skip_left = match self.skip {
                Some((t, n)) if t == time => n,
                _ => 0,
            };
            if self.skip.is_some_and(|(t, _)| time >= t) {
                self.skip = None;
            }
            self.time_text.clear();
            self.time_text.push_str(&time.to_string());
        }
        if self.eos() && self.over_bound() {
            // Everything of earlier times, and `cur_count` records of this one, are written.
            self.commit_progress(Frontier::at(time), self.cur_count)?;
        }
        let n = batch.len();
        let topic = self.cfg.topic.clone();
        for (i, r) in batch.iter().enumerate() {
            self.cur_count += 1;
            if self.skip_left > 0 {
                self.skip_left -= 1;
                continue;
            }
            self.begin()?;
            let headers = self.headers();
            let key: Option<&[u8]> = match (&self.avro, self.keyed) {
                (_, false) => None,
                (Some(AvroCodec { key: Some((id, schema)), .. }), true) => {
                    let v: serde_json::Value =
                        serde_json::from_slice(r.key).map_err(|e| Error::encode(format!("key is not JSON: {e}")))?;
                    self.key_buf.clear();
                    avro::wire_header(*id, &mut self.key_buf);
                    schema.encode(&v, &mut self.key_buf)?;
                    Some(&self.key_buf)
                }
                _ => Some(r.key),
            };
            let value: Option<&[u8]> = match (&self.avro, r.value) {
                (Some(codec), Some(json)) => {
                    self.value_buf.clear();
                    avro::wire_header(codec.value.0, &mut self.value_buf);
                    codec.value.1.encode_json(json, &mut self.value_buf)?;
                    Some(&self.value_buf)
                }
                (_, v) => v,
            };
            self.txn_bytes += (key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len)) as u64;
            self.send_one(&topic, key, value, headers)?;
            self.txn_records += 1;
            self.dirty = true;
            if self.eos() && self.over_bound() && i + 1 < n {
                self.commit_progress(Frontier::at(time), self.cur_count)?;
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
