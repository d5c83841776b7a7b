//! Options of the Kafka connector, parsed from the options map (see the table in the
//! [module docs](super)) or built in code, and checked when the sink is created.

use crate::connectors::bounds::TxnBounds;
use crate::error::{Error, Result};
use crate::options::{is_secret_key, Options};
use crate::secret::{redact_url, Secret};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The delivery guarantee (`sink.delivery`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Delivery {
    /// One transactional producer per worker; data and progress commit atomically (the default).
    #[default]
    ExactlyOnce,
    /// The idempotent producer; a restart may deliver the changes after the last progress record
    /// again.
    AtLeastOnce,
}

impl Delivery {
    /// The option value.
    pub fn name(self) -> &'static str {
        match self {
            Delivery::ExactlyOnce => "exactly-once",
            Delivery::AtLeastOnce => "at-least-once",
        }
    }
}

/// How values (and column keys) are encoded (`encode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encode {
    /// JSON (the default).
    #[default]
    Json,
    /// Avro in the Confluent wire format, schemas registered with a Schema Registry.
    Avro,
}

/// Where the Avro schemas are registered. `Debug` hides the password and a URL's
/// `user:password@`.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// The registry's base URL, `http://host[:port][/path]` or `https://…` (may carry
    /// `user:password@`, used as basic auth).
    pub url: String,
    /// Basic-auth user.
    pub username: Option<String>,
    /// Basic-auth password (never printed).
    pub password: Option<Secret>,
    /// PEM file of the CA(s) an `https://` registry's certificate must lead to
    /// (`schema.registry.ssl.root.cert`); the system's store when `None`.
    pub ca: Option<PathBuf>,
}

impl RegistryConfig {
    /// The registry at `url`, without credentials, trusting the system's roots for `https://`.
    pub fn new(url: impl Into<String>) -> Self {
        RegistryConfig { url: url.into(), username: None, password: None, ca: None }
    }
}

impl fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("url", &redact_url(&self.url))
            .field("username", &self.username)
            .field("password", &self.password)
            .field("ca", &self.ca)
            .finish()
    }
}

/// How to create the topic when it is missing (`topic.create = true`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicCreate {
    /// Partitions (`topic.partitions`, default 1).
    pub partitions: i32,
    /// Replication factor (`topic.replication.factor`, default 1).
    pub replication_factor: i32,
    /// Topic configs (`topic.config.*`, e.g. `topic.config.retention.ms`).
    pub config: BTreeMap<String, String>,
}

impl Default for TopicCreate {
    fn default() -> Self {
        TopicCreate { partitions: 1, replication_factor: 1, config: BTreeMap::new() }
    }
}

/// Everything the Kafka connector needs. `Debug` redacts secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// The data topic.
    pub topic: String,
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// The delivery guarantee.
    pub delivery: Delivery,
    /// The value (and column key) encoding.
    pub encode: Encode,
    /// The registry, for Avro.
    pub registry: Option<RegistryConfig>,
    /// Create the topic if missing.
    pub create: Option<TopicCreate>,
    /// The progress topic (default `<topic>.__progress`).
    pub progress_topic: Option<String>,
    /// The transactional-id prefix (default `dsink-<sink>-<topic>`); worker `i` uses `<prefix>-w<i>`.
    pub transactional_id_prefix: Option<String>,
    /// Commit a transaction early once it holds this many records.
    pub max_transaction_records: u64,
    /// Commit a transaction early once it holds this many bytes of keys and values.
    pub max_transaction_bytes: u64,
    /// Timeout of one blocking client call (metadata, commit, init).
    pub timeout: Duration,
    /// How long retriable failures are retried before the sink stops.
    pub retry_deadline: Duration,
    /// librdkafka settings passed through (`properties.*`, without the prefix).
    pub properties: BTreeMap<String, String>,
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let props: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let v = if is_secret_key(k) { "<redacted>" } else { v.as_str() };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("topic", &self.topic)
            .field("bootstrap", &self.bootstrap)
            .field("delivery", &self.delivery)
            .field("encode", &self.encode)
            .field("registry", &self.registry)
            .field("create", &self.create)
            .field("progress_topic", &self.progress_topic)
            .field("transactional_id_prefix", &self.transactional_id_prefix)
            .field("max_transaction_records", &self.max_transaction_records)
            .field("max_transaction_bytes", &self.max_transaction_bytes)
            .field("timeout", &self.timeout)
            .field("retry_deadline", &self.retry_deadline)
            .field("properties", &props)
            .finish()
    }
}

/// librdkafka settings the connector sets itself; a `properties.*` override is refused.
const OWNED_PROPERTIES: &[(&str, &str)] = &[
    ("transactional.id", "use `transactional.id.prefix`"),
    ("enable.idempotence", "it follows `sink.delivery`"),
    ("bootstrap.servers", "use `properties.bootstrap.server`"),
];

impl KafkaConfig {
    /// Exactly-once JSON delivery to `topic` on the brokers `bootstrap` (`host:port,…`).
    ///
    /// ```
    /// use differential_sinks::connectors::kafka::{KafkaConfig, Delivery};
    /// let c = KafkaConfig::new("127.0.0.1:9092", "orders")
    ///     .delivery(Delivery::AtLeastOnce)
    ///     .property("compression.type", "lz4")
    ///     .property("sasl.password", "hunter2");
    /// assert!(!format!("{c:?}").contains("hunter2"));
    /// ```
    pub fn new(bootstrap: impl Into<String>, topic: impl Into<String>) -> Self {
        KafkaConfig {
            topic: topic.into(),
            bootstrap: bootstrap.into(),
            delivery: Delivery::default(),
            encode: Encode::default(),
            registry: None,
            create: None,
            progress_topic: None,
            transactional_id_prefix: None,
            max_transaction_records: 100_000,
            max_transaction_bytes: 64 << 20,
            timeout: Duration::from_secs(30),
            retry_deadline: Duration::from_secs(120),
            properties: BTreeMap::new(),
        }
    }
    /// The delivery guarantee.
    pub fn delivery(mut self, d: Delivery) -> Self {
        self.delivery = d;
        self
    }
    /// Avro values (and column keys), registered at `registry_url`.
    pub fn avro(mut self, registry_url: impl Into<String>) -> Self {
        self.encode = Encode::Avro;
        self.registry = Some(RegistryConfig::new(registry_url));
        self
    }
    /// Create the topic with `partitions` and `replication_factor` if it is missing.
    pub fn create_topic(mut self, partitions: i32, replication_factor: i32) -> Self {
        self.create = Some(TopicCreate { partitions, replication_factor, config: BTreeMap::new() });
        self
    }
    /// The progress topic.
    pub fn progress_topic(mut self, topic: impl Into<String>) -> Self {
        self.progress_topic = Some(topic.into());
        self
    }
    /// The transactional-id prefix.
    pub fn transactional_id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.transactional_id_prefix = Some(prefix.into());
        self
    }
    /// Bounds of one transaction (records, bytes).
    pub fn max_transaction(mut self, records: u64, bytes: u64) -> Self {
        self.max_transaction_records = records.max(1);
        self.max_transaction_bytes = bytes.max(1);
        self
    }
    /// A librdkafka setting, e.g. `compression.type`, `linger.ms`, `security.protocol`.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// The progress topic's name.
    pub fn progress_topic_name(&self) -> String {
        self.progress_topic.clone().unwrap_or_else(|| format!("{}.__progress", self.topic))
    }

    /// The transactional id of worker `index` of sink `sink`.
    pub fn transactional_id(&self, sink: &str, index: usize) -> String {
        let prefix = self.transactional_id_prefix.clone().unwrap_or_else(|| format!("dsink-{sink}-{}", self.topic));
        format!("{prefix}-w{index}")
    }

    pub(crate) fn parse(opts: &mut Options) -> Result<Self> {
        let topic = opts.require("topic", "the Kafka topic to write to, e.g. topic=orders")?;
        let bootstrap = opts.require(
            "properties.bootstrap.server",
            "the Kafka brokers, e.g. properties.bootstrap.server=127.0.0.1:9092",
        )?;
        let mut c = KafkaConfig::new(bootstrap, topic);
        c.delivery = match opts.take("sink.delivery").as_deref() {
            None | Some("exactly-once") | Some("exactly_once") => Delivery::ExactlyOnce,
            Some("at-least-once") | Some("at_least_once") => Delivery::AtLeastOnce,
            Some(other) => {
                return Err(Error::config(format!(
                    "option `sink.delivery` = `{other}`: use exactly-once or at-least-once"
                )))
            }
        };
        c.encode = match opts.take("encode").as_deref() {
            None | Some("json") => Encode::Json,
            Some("avro") => Encode::Avro,
            Some(other) => return Err(Error::config(format!("option `encode` = `{other}`: use json or avro"))),
        };
        let registry = opts.take("schema.registry");
        let username = opts.take("schema.registry.username");
        let password = opts.take("schema.registry.password");
        let ca = opts.take(super::registry_tls::CA_OPTION);
        match (c.encode, registry) {
            (Encode::Avro, Some(url)) => {
                c.registry = Some(RegistryConfig {
                    url,
                    username,
                    password: password.map(Secret::new),
                    ca: ca.map(PathBuf::from),
                })
            }
            (Encode::Avro, None) => {
                return Err(Error::config(
                    "option `encode = avro` needs `schema.registry`, the Schema Registry's URL, e.g. schema.registry=http://127.0.0.1:8081",
                ))
            }
            (Encode::Json, Some(_)) => {
                return Err(Error::config(
                    "option `schema.registry` is only used with `encode = avro`: remove it or set encode=avro",
                ))
            }
            (Encode::Json, None) => {
                if let Some(key) = [
                    ("schema.registry.username", username.is_some()),
                    ("schema.registry.password", password.is_some()),
                    (super::registry_tls::CA_OPTION, ca.is_some()),
                ]
                .iter()
                .find_map(|(k, set)| set.then_some(*k))
                {
                    return Err(Error::config(format!(
                        "option `{key}` is only used with `encode = avro` and `schema.registry`: remove it"
                    )));
                }
            }
        }
        let create = opts.take_bool("topic.create")?.unwrap_or(false);
        let partitions = opts.take_parsed::<i32>("topic.partitions", "a partition count")?;
        let replication = opts.take_parsed::<i32>("topic.replication.factor", "a replication factor")?;
        let topic_config = opts.take_prefixed("topic.config.");
        if create {
            c.create = Some(TopicCreate {
                partitions: partitions.unwrap_or(1),
                replication_factor: replication.unwrap_or(1),
                config: topic_config,
            });
            if c.create.as_ref().is_some_and(|t| t.partitions < 1) {
                return Err(Error::config("option `topic.partitions` must be at least 1"));
            }
        } else if partitions.is_some() || replication.is_some() || !topic_config.is_empty() {
            return Err(Error::config(
                "options `topic.partitions`, `topic.replication.factor` and `topic.config.*` only apply with `topic.create = true`",
            ));
        }
        c.progress_topic = opts.take("progress.topic");
        c.transactional_id_prefix = opts.take("transactional.id.prefix");
        let bounds = TxnBounds::parse(
            opts,
            TxnBounds { max_records: c.max_transaction_records, max_bytes: c.max_transaction_bytes },
        )?;
        (c.max_transaction_records, c.max_transaction_bytes) = (bounds.max_records, bounds.max_bytes);
        if let Some(ms) = opts.take_parsed::<u64>("kafka.timeout.ms", "milliseconds")? {
            c.timeout = Duration::from_millis(ms.max(1));
        }
        if let Some(ms) = opts.take_parsed::<u64>("retry.deadline.ms", "milliseconds")? {
            c.retry_deadline = Duration::from_millis(ms);
        }
        c.properties = opts.take_prefixed("properties.");
        c.check()?;
        Ok(c)
    }

    /// Checks the settings that need no broker.
    pub(crate) fn check(&self) -> Result<()> {
        if self.topic.is_empty() || self.topic.contains(char::is_whitespace) {
            return Err(Error::config(format!("option `topic` = `{}` is not a valid topic name", self.topic)));
        }
        for (key, fix) in OWNED_PROPERTIES {
            if self.properties.contains_key(*key) {
                return Err(Error::config(format!(
                    "option `properties.{key}` is set by the Kafka sink itself: remove it ({fix})"
                )));
            }
        }
        if self.delivery == Delivery::ExactlyOnce
            && self.properties.get("acks").is_some_and(|a| a != "all" && a != "-1")
        {
            return Err(Error::config(
                "option `properties.acks` must be `all` with `sink.delivery = exactly-once` (transactions need the idempotent producer)",
            ));
        }
        let mechanism = self.properties.get("sasl.mechanism").or_else(|| self.properties.get("sasl.mechanisms"));
        if !cfg!(feature = "kafka-gssapi") && mechanism.is_some_and(|m| m.eq_ignore_ascii_case("GSSAPI")) {
            return Err(Error::config(
                "option `properties.sasl.mechanism` = `GSSAPI` needs Kerberos support, which this build lacks: enable the \
                 `kafka-gssapi` cargo feature (it links the system's Cyrus SASL, Debian's `libsasl2-dev`), or use \
                 PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER",
            ));
        }
        if let Some(r) = &self.registry {
            // Builds the client once to refuse a URL it cannot use or a CA file it cannot read.
            super::Registry::new(r, self.timeout)?;
        }
        Ok(())
    }
}

impl From<KafkaConfig> for crate::connectors::ConnectorConfig {
    fn from(c: KafkaConfig) -> Self {
        crate::connectors::ConnectorConfig::Kafka(Box::new(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[&str]) -> Result<KafkaConfig> {
        let mut o = Options::parse_pairs(pairs.iter().copied()).unwrap();
        let c = KafkaConfig::parse(&mut o)?;
        o.finish("kafka")?;
        Ok(c)
    }

    #[test]
    fn options() {
        let c = parse(&[
            "topic=t",
            "properties.bootstrap.server=h:1",
            "properties.compression.type=lz4",
            "properties.sasl.password=hunter2",
            "topic.create=true",
            "topic.partitions=3",
            "topic.config.cleanup.policy=compact",
            "sink.delivery=at-least-once",
        ])
        .unwrap();
        assert_eq!(c.delivery, Delivery::AtLeastOnce);
        assert_eq!(c.create.as_ref().unwrap().partitions, 3);
        assert_eq!(c.create.as_ref().unwrap().config["cleanup.policy"], "compact");
        assert_eq!(c.properties["compression.type"], "lz4");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.progress_topic_name(), "t.__progress");
        assert_eq!(c.transactional_id("s", 2), "dsink-s-t-w2");
    }

    #[test]
    fn refusals_name_the_option() {
        let e = parse(&["properties.bootstrap.server=h:1"]).unwrap_err();
        assert!(e.to_string().contains("`topic`"), "{e}");
        let e = parse(&["topic=t", "properties.bootstrap.server=h:1", "encode=avro"]).unwrap_err();
        assert!(e.to_string().contains("schema.registry"), "{e}");
        let e = parse(&["topic=t", "properties.bootstrap.server=h:1", "properties.transactional.id=x"]).unwrap_err();
        assert!(e.to_string().contains("transactional.id.prefix"), "{e}");
        let e = parse(&["topic=t", "properties.bootstrap.server=h:1", "topic.partitions=2"]).unwrap_err();
        assert!(e.to_string().contains("topic.create"), "{e}");
        let e = parse(&["topic=t", "properties.bootstrap.server=h:1", "properties.acks=1"]).unwrap_err();
        assert!(e.to_string().contains("acks"), "{e}");
        let e = parse(&["topic=t", "properties.bootstrap.server=h:1", "schema.registry.ssl.root.cert=/ca.pem"])
            .unwrap_err();
        assert!(e.to_string().contains("`schema.registry.ssl.root.cert`"), "{e}");
    }

    #[test]
    fn registry_over_https_with_a_ca_file() {
        let avro = ["topic=t", "properties.bootstrap.server=h:1", "encode=avro"];
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let mut pairs = avro.map(String::from).to_vec();
        pairs.push("schema.registry=https://ann:pw-secret@reg:8081".into());
        pairs.push(format!("schema.registry.ssl.root.cert={}", missing.display()));
        let mut o = Options::parse_pairs(&pairs).unwrap();
        let e = KafkaConfig::parse(&mut o).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::Config);
        let m = e.to_string();
        assert!(m.contains("`schema.registry.ssl.root.cert`") && m.contains("missing.pem"), "{m}");

        // A readable CA file: accepted, kept, and the URL's password is hidden in Debug.
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, params.self_signed(&key).unwrap().pem()).unwrap();
        pairs.pop();
        pairs.push(format!("schema.registry.ssl.root.cert={}", ca.display()));
        let c = parse(&pairs.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
        assert_eq!(c.registry.as_ref().unwrap().ca.as_deref(), Some(ca.as_path()));
        let shown = format!("{c:?}");
        assert!(shown.contains("https://***@reg:8081") && !shown.contains("pw-secret"), "{shown}");
    }

    #[test]
    fn risingwave_security_options_pass_through_and_secrets_stay_hidden() {
        let c = parse(&[
            "topic=t",
            "properties.bootstrap.server=h:1",
            "properties.security.protocol=SASL_SSL",
            "properties.sasl.mechanism=SCRAM-SHA-512",
            "properties.sasl.username=u",
            "properties.sasl.password=pw-secret-1",
            "properties.ssl.ca.location=/ca.pem",
            "properties.ssl.certificate.location=/c.pem",
            "properties.ssl.key.location=/c.key",
            "properties.ssl.key.password=pw-secret-2",
            "properties.sasl.oauthbearer.config=principal=p token=pw-secret-3",
            "properties.compression.type=zstd",
        ])
        .unwrap();
        assert_eq!(c.properties["security.protocol"], "SASL_SSL");
        assert_eq!(c.properties["sasl.mechanism"], "SCRAM-SHA-512");
        assert_eq!(c.properties["ssl.key.location"], "/c.key");
        let shown = format!("{c:?}");
        assert!(!shown.contains("pw-secret"), "{shown}");
    }

    #[test]
    fn gssapi_follows_the_cargo_feature() {
        let r = parse(&["topic=t", "properties.bootstrap.server=h:1", "properties.sasl.mechanism=GSSAPI"]);
        if cfg!(feature = "kafka-gssapi") {
            assert!(r.is_ok(), "{r:?}");
        } else {
            let e = r.unwrap_err().to_string();
            assert!(e.contains("kafka-gssapi") && e.contains("properties.sasl.mechanism"), "{e}");
        }
    }
}
