//! What the Kafka connector checks and learns about its topics: the creation-time checks of the
//! options against the sink ([`KafkaConfig::check_sink`]), the topics' partitions (creating a
//! missing topic when asked), and the Avro schemas registered for the topic, whose ids the
//! encoder frames every record with ([`KafkaTable`]).

use super::client::{base_config, classify, classify_code, client_error, ProbeContext};
use super::config::{Encode, KafkaConfig, TopicCreate};
use super::registry::Registry;
use crate::delivery::retry::retry_blocking;
use crate::delivery::RetryPolicy;
use crate::encode::avro::{self, AvroType};
use crate::envelope::Format;
use crate::error::{Error, ErrorKind, Result};
use crate::key::KeyEncoding;
use crate::settings::SinkSettings;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{BaseProducer, Producer};
use std::time::{Duration, Instant};

/// Partitions of `topic`, or `None` if the brokers do not know it.
pub(super) fn topic_partitions<C: ClientContext>(
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
pub(super) fn ensure_topic(
    cfg: &KafkaConfig,
    topic: &str,
    create: Option<&TopicCreate>,
    missing_hint: &str,
) -> Result<Vec<i32>> {
    let probe: BaseProducer<ProbeContext> = base_config(cfg)
        .create_with_context(ProbeContext::default())
        .map_err(|e| client_error(e, "creating the Kafka client"))?;
    let policy = RetryPolicy { deadline: cfg.retry_deadline, ..RetryPolicy::default() };
    if let Some(p) = retry_blocking(&policy, "reading Kafka metadata", || first_metadata(&probe, cfg, topic))? {
        return Ok(p);
    }
    let Some(TopicCreate { partitions, replication_factor: replication, config }) = create else {
        return Err(Error::config(format!(
            "the Kafka topic `{topic}` does not exist on {}: {missing_hint}",
            cfg.bootstrap
        )));
    };
    let admin: AdminClient<DefaultClientContext> =
        base_config(cfg).create().map_err(|e| client_error(e, "creating the Kafka admin client"))?;
    let (partitions, replication) = (*partitions, *replication);
    let mut nt = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    for (k, v) in config {
        nt = nt.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(cfg.timeout));
    let results = crate::delivery::runtime::current_thread("the Kafka admin client")?
        .block_on(admin.create_topics([&nt], &opts))
        .map_err(|e| classify(&e, &format!("creating topic `{topic}`")))?;
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

/// Partitions of `topic`, asked in short rounds until `cfg.timeout`, so that a failure that
/// retrying cannot cure (a certificate not trusted, a login refused) stops the sink's creation as
/// soon as librdkafka reports it, naming the options to check; a timeout says what failed last.
fn first_metadata(probe: &BaseProducer<ProbeContext>, cfg: &KafkaConfig, topic: &str) -> Result<Option<Vec<i32>>> {
    let what = format!("connecting to the Kafka brokers {}", cfg.bootstrap);
    let deadline = Instant::now() + cfg.timeout;
    loop {
        let round = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(500));
        let started = Instant::now();
        match topic_partitions(probe.client(), topic, round) {
            Err(e) if e.kind() == ErrorKind::Retriable => {
                // An answer that came back at once (say, no leader yet) is asked again a little later.
                std::thread::sleep(round.saturating_sub(started.elapsed()).min(Duration::from_millis(100)));
                // Serves librdkafka's error callbacks, which report why connections fail.
                probe.poll(Duration::ZERO);
                if let Some(failure) = probe.context().permanent_failure(&what) {
                    return Err(failure);
                }
                if Instant::now() >= deadline {
                    return Err(match probe.context().last_failure() {
                        Some(reason) => {
                            Error::new(ErrorKind::Retriable, format!("{e}; the last connection error: {reason}"))
                        }
                        None => e,
                    });
                }
            }
            other => return other,
        }
    }
}

impl KafkaConfig {
    /// Checks the connector's settings against the whole sink spec, at creation.
    pub(crate) fn check_sink(&self, spec: &SinkSettings) -> Result<()> {
        self.check()?;
        if self.encode == Encode::Avro {
            if spec.schema().is_none() {
                return Err(Error::config(
                    "option `encode = avro` needs the row schema: declare it (SinkSpecBuilder::schema, or dsink --schema)",
                ));
            }
            if spec.connect_schema {
                return Err(Error::config(
                    "option `schemas.enable` is the JSON form of a schema: remove it with `encode = avro`",
                ));
            }
        }
        Ok(())
    }
}

/// What the topic's schema registry says: the Avro schemas registered for the topic (with
/// `encode = avro`) and their ids, which the encoder writes into every record's Confluent
/// framing. JSON needs nothing from the target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KafkaTable {
    /// The registered schemas, with `encode = avro`.
    pub avro: Option<AvroSchemas>,
}

/// The Avro schemas of a topic's values and keys, with their registry ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvroSchemas {
    /// The id of the value schema (`<topic>-value`).
    pub value_id: u32,
    /// The value schema: the row, or the Debezium envelope of it.
    pub value: AvroType,
    /// The key schema (`<topic>-key`) and its id, when keys are the primary-key columns in JSON
    /// (`key.encode = text` keys stay text).
    pub key: Option<(u32, AvroType)>,
}

impl KafkaTable {
    /// Registers the topic's Avro schemas with the registry when `encode = avro` (the same
    /// schema registered again gets the same id); nothing for JSON.
    pub fn register(cfg: &KafkaConfig, sink: &SinkSettings) -> Result<Self> {
        let avro = match cfg.encode {
            Encode::Json => None,
            Encode::Avro => Some(register_avro(cfg, sink)?),
        };
        Ok(KafkaTable { avro })
    }
}

fn register_avro(cfg: &KafkaConfig, spec: &SinkSettings) -> Result<AvroSchemas> {
    let schema = spec.schema().ok_or_else(|| {
        Error::config("`encode = avro` needs the row schema: declare it (SinkSpecBuilder::schema, or dsink --schema)")
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
    Ok(AvroSchemas { value_id, value, key })
}
