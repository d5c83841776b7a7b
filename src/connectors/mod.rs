//! Connectors: one folder per target system, each behind its cargo feature, each implementing the
//! one [`Connector`] contract ([`contract`]) and registered by one line of the registry below.
//!
//! ```text
//!   SinkSpec (config.rs) ── connector = … ──► ConnectorConfig (this registry)
//!        │ settings                               │ Connector::{from_options, validate, open}
//!        ▼                                        ▼
//!   SinkSettings ───────────────► <name>/: config.rs  options only
//!                                         table.rs   what the target says about the table
//!                                         writer.rs  Writers: independent or coordinated
//!                                         progress.rs where progress is recorded
//! ```
//!
//! Families share code: the message targets (file, Kafka, NATS, Kinesis, Pulsar, and a
//! [`CustomConnector`]) implement [`RecordWriter`] and receive encoded [`RecordBatch`]es from
//! [`EnvelopeWriter`]; HTTP targets share [`http`]'s client setup; the lakehouse tables
//! (Delta Lake, Iceberg) share [`lakehouse`]: S3 settings, the upserts' key index, and Arrow
//! batches ([`crate::encode::arrow`]).
//!
//! [`RecordBatch`]: crate::RecordBatch

pub mod contract;
pub mod custom;
pub mod records;

pub use contract::{resumed_frontier, Connector, Writers};
pub use custom::{CustomConnector, WriterFactory};
pub use records::{EnvelopeWriter, RecordWriter};

use crate::error::{Error, Result};
use crate::options::Options;
use crate::row::Row;
use crate::settings::SinkSettings;
use differential_sinks_operators::{SinkTime, WorkerContext};

#[cfg(any(feature = "kafka", feature = "jdbc"))]
pub mod bounds;
#[cfg(feature = "cassandra")]
pub mod cassandra;
#[cfg(feature = "clickhouse")]
pub mod clickhouse;
#[cfg(feature = "deltalake")]
pub mod deltalake;
#[cfg(feature = "doris")]
pub mod doris;
#[cfg(feature = "elasticsearch")]
pub mod elasticsearch;
#[cfg(feature = "file")]
pub mod file;
#[cfg(any(feature = "clickhouse", feature = "elasticsearch", feature = "doris"))]
pub mod http;
#[cfg(feature = "iceberg")]
pub mod iceberg;
#[cfg(feature = "jdbc")]
pub mod jdbc;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "kinesis")]
pub mod kinesis;
#[cfg(any(feature = "deltalake", feature = "iceberg"))]
pub mod lakehouse;
#[cfg(any(feature = "kinesis", feature = "pulsar"))]
pub mod local_progress;
#[cfg(feature = "test-utils")]
pub mod memory;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "pulsar")]
pub mod pulsar;
/// Moved to [`lakehouse::s3`].
#[cfg(any(feature = "deltalake", feature = "iceberg"))]
#[deprecated(note = "moved to differential_sinks::connectors::lakehouse::s3")]
pub mod s3 {
    pub use crate::connectors::lakehouse::s3::*;
}

/// Declares the registry: the [`ConnectorConfig`] enum with one variant per connector, and its
/// dispatch to each connector's [`Connector`] implementation.
macro_rules! registry {
    ($( $(#[doc = $doc:literal])* #[cfg($cfg:meta)] $variant:ident($ty:ty), )*) => {
        /// The settings of one connector, selected by the `connector` option.
        #[derive(Clone, Debug)]
        #[non_exhaustive]
        pub enum ConnectorConfig {
            $( $(#[doc = $doc])* #[cfg($cfg)] $variant($ty), )*
            /// A target of the application's own: any [`RecordWriter`], one per worker, with the
            /// library's formats, encodings, routing and commit protocol (built in code only).
            Custom(CustomConnector),
        }

        $(
            #[cfg($cfg)]
            impl From<$ty> for ConnectorConfig {
                fn from(c: $ty) -> Self {
                    ConnectorConfig::$variant(c)
                }
            }
        )*

        /// The connectors this build knows, for error messages.
        pub fn available() -> Vec<&'static str> {
            [$( #[cfg($cfg)] <$ty as Connector>::NAME, )*].to_vec()
        }

        impl ConnectorConfig {
            /// Parses the connector's own options, consuming them from `opts`.
            pub fn from_options(connector: &str, opts: &mut Options) -> Result<Self> {
                let _ = &opts;
                $(
                    #[cfg($cfg)]
                    if connector == <$ty as Connector>::NAME || <$ty as Connector>::ALIASES.contains(&connector) {
                        return Ok(ConnectorConfig::$variant(<$ty as Connector>::from_options(opts)?));
                    }
                )*
                Err(Error::config(format!(
                    "option `connector` = `{connector}` is not available in this build (available: {}); \
                     enable the cargo feature of the same name",
                    available().join(", ")
                )))
            }

            /// The connector's name.
            pub fn name(&self) -> &'static str {
                match self {
                    $( #[cfg($cfg)] ConnectorConfig::$variant(_) => <$ty as Connector>::NAME, )*
                    ConnectorConfig::Custom(c) => c.name(),
                }
            }

            /// True if the target defines keys itself (a table's primary key), so a keyed format
            /// may take them from there instead of a declared `primary_key`.
            pub fn has_own_keys(&self) -> bool {
                match self {
                    $( #[cfg($cfg)] ConnectorConfig::$variant(_) => <$ty as Connector>::OWN_KEYS, )*
                    ConnectorConfig::Custom(_) => false,
                }
            }

            /// True if the target builds its records from the rows themselves (see
            /// [`Connector::TAKES_ROWS`]).
            pub fn takes_rows(&self) -> bool {
                match self {
                    $( #[cfg($cfg)] ConnectorConfig::$variant(_) => <$ty as Connector>::TAKES_ROWS, )*
                    ConnectorConfig::Custom(_) => false,
                }
            }

            /// True if the target's writer takes rows encoded where they are produced (see
            /// [`Connector::ENCODED_ROWS`]); a custom target's records are the envelope's JSON.
            pub fn encoded_rows(&self) -> bool {
                match self {
                    $( #[cfg($cfg)] ConnectorConfig::$variant(_) => <$ty as Connector>::ENCODED_ROWS, )*
                    ConnectorConfig::Custom(_) => true,
                }
            }

            /// True if one commit covers every worker's writes (see
            /// [`Connector::COMMITS_ALL_WORKERS`]).
            pub fn commits_all_workers(&self) -> bool {
                match self {
                    $( #[cfg($cfg)] ConnectorConfig::$variant(_) => <$ty as Connector>::COMMITS_ALL_WORKERS, )*
                    ConnectorConfig::Custom(_) => false,
                }
            }

            /// True if an upsert sink's rows are keyed by the target's form of their key (see
            /// [`Connector::TABLE_KEYS`]).
            pub fn table_keys(&self) -> bool {
                match self {
                    $( #[cfg($cfg)] ConnectorConfig::$variant(_) => <$ty as Connector>::TABLE_KEYS, )*
                    ConnectorConfig::Custom(_) => false,
                }
            }

            /// The version of the connector's on-target format (see [`Connector::FORMAT`]).
            pub fn format_version(&self) -> u32 {
                match self {
                    $( #[cfg($cfg)] ConnectorConfig::$variant(_) => <$ty as Connector>::FORMAT, )*
                    ConnectorConfig::Custom(_) => 1,
                }
            }

            /// Connector-specific checks of the sink, at creation.
            pub(crate) fn validate(&self, sink: &SinkSettings) -> Result<()> {
                match self {
                    $( #[cfg($cfg)] ConnectorConfig::$variant(c) => c.validate(sink), )*
                    ConnectorConfig::Custom(_) => { let _ = sink; Ok(()) }
                }
            }

            /// What an encoded-rows target's rows are encoded into (see
            /// [`Connector::row_encoder`]).
            pub(crate) fn row_encoder<V: Row>(&self, sink: &SinkSettings) -> Result<crate::encoded_row::RowEncoder<V>> {
                match self {
                    $( #[cfg($cfg)] ConnectorConfig::$variant(c) => c.row_encoder(sink), )*
                    ConnectorConfig::Custom(_) => { let _ = sink; Ok(crate::encoded_row::json_encoder()) }
                }
            }

            /// A table-keyed target's key encoder (see [`Connector::table_key`]).
            pub(crate) fn table_key<V: Row>(&self, sink: &SinkSettings) -> Result<Option<crate::encoded_row::RowEncoder<V>>> {
                match self {
                    $( #[cfg($cfg)] ConnectorConfig::$variant(c) => c.table_key(sink), )*
                    ConnectorConfig::Custom(_) => { let _ = sink; Ok(None) }
                }
            }

            /// Opens this worker's part of the delivery.
            pub(crate) fn open<V: Row, T: SinkTime>(&self, sink: &SinkSettings, ctx: WorkerContext) -> Result<Writers<V, T>> {
                match self {
                    $( #[cfg($cfg)] ConnectorConfig::$variant(c) => c.open(sink, ctx), )*
                    ConnectorConfig::Custom(c) => c.open(sink, ctx),
                }
            }
        }
    };
}

registry! {
    /// JSON lines files in a directory (`connector = file`).
    #[cfg(feature = "file")] File(file::FileConfig),
    /// An in-memory target for tests (`connector = memory`).
    #[cfg(feature = "test-utils")] Memory(memory::MemoryConfig),
    /// A PostgreSQL / MySQL / MariaDB / TiDB table (`connector = jdbc`).
    #[cfg(feature = "jdbc")] Jdbc(Box<jdbc::JdbcConfig>),
    /// A ClickHouse MergeTree table over HTTP (`connector = clickhouse`).
    #[cfg(feature = "clickhouse")] ClickHouse(clickhouse::ClickHouseConfig),
    /// An Elasticsearch / OpenSearch index over `_bulk` (`connector = elasticsearch`).
    #[cfg(feature = "elasticsearch")] Elasticsearch(elasticsearch::ElasticsearchConfig),
    /// An Apache Doris table via Stream Load (`connector = doris`).
    #[cfg(feature = "doris")] Doris(doris::DorisConfig),
    /// A Cassandra / ScyllaDB table (`connector = cassandra`).
    #[cfg(feature = "cassandra")] Cassandra(cassandra::CassandraConfig),
    /// Kafka topics (`connector = kafka`).
    #[cfg(feature = "kafka")] Kafka(Box<kafka::KafkaConfig>),
    /// NATS subjects and JetStream streams (`connector = nats`).
    #[cfg(feature = "nats")] Nats(Box<nats::NatsConfig>),
    /// Amazon Kinesis data streams (`connector = kinesis`).
    #[cfg(feature = "kinesis")] Kinesis(kinesis::KinesisConfig),
    /// Pulsar topics (`connector = pulsar`).
    #[cfg(feature = "pulsar")] Pulsar(pulsar::PulsarConfig),
    /// A Delta Lake table, append-only or upsert (`connector = deltalake`).
    #[cfg(feature = "deltalake")] DeltaLake(deltalake::DeltaLakeConfig),
    /// An Apache Iceberg table in a SQL catalog, append-only or upsert (`connector = iceberg`).
    #[cfg(feature = "iceberg")] Iceberg(iceberg::IcebergConfig),
}
