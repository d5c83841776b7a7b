//! Sink configuration: a typed builder, and the RisingWave-style options map that parses into it.
//!
//! Common options (every connector):
//!
//! | option | values | meaning |
//! |---|---|---|
//! | `connector` | `file`, `memory`, … | the target system (each behind its cargo feature) |
//! | `type` | `append-only`, `upsert`, `debezium` | the sink format |
//! | `primary_key` | `col1,col2` | the key columns (required for `upsert`/`debezium` unless the target has keys of its own) |
//! | `force_append_only` | `true`/`false` | with `append-only`: drop deletes, turn updates into inserts |
//! | `key.encode` | `json` (default), `text` | how keys are encoded |
//! | `key.delimiter` | text, default `,` | separator of composite text keys |
//! | `debezium.tombstone` | `true`/`false` (default) | follow each Debezium delete with a tombstone |
//! | `schemas.enable` | `true`/`false` (default) | Debezium in Kafka Connect's `{schema, payload}` form (needs a schema) |
//! | `violation` | `fail` (default), `skip`, `dead-letter` | what to do with primary-key violations |
//! | `commit.interval.ms` | integer | commit at most this often (default: at every frontier advance) |
//! | `commit.max_changes` | integer | commit as soon as this many changes wait |
//! | `sink.name` | text | the sink's name (default `sink`); it names progress records |
//! | `write.chunk_changes` | integer ≥ 1 | hand the connector at most about this many changes per write call (default 16384); a larger time is written in several calls |
//! | `buffer.max.bytes` | bytes ≥ 1, or with a `KiB`/`MiB`/`GiB` suffix | what each worker holds in memory for times not yet delivered (default 256 MiB); past it, updates are sorted into runs and spilled to `buffer.spill.dir` |
//! | `buffer.spill.dir` | path | where spill files go (default `<temp dir>/differential-sinks-spill`); checked to be writable when the sink is created |
//!
//! Every remaining key belongs to the connector; a key no layer takes is refused.

use crate::connectors::ConnectorConfig;
use crate::envelope::Format;
use crate::error::{Error, Result};
use crate::key::KeyEncoding;
use crate::options::Options;
use crate::schema::Schema;
use crate::settings::SinkSettings;
use differential_sinks_operators::{CommitPolicy, SinkMetrics, ViolationPolicy};
use std::sync::Arc;
use std::time::Duration;

/// A validated sink definition: the common [`SinkSettings`] (format, key, encodings, cadence) and
/// the connector's settings. It dereferences to its [`SinkSettings`].
#[derive(Clone, Debug)]
pub struct SinkSpec {
    pub(crate) settings: SinkSettings,
    pub(crate) connector: ConnectorConfig,
}

impl std::ops::Deref for SinkSpec {
    type Target = SinkSettings;
    fn deref(&self) -> &SinkSettings {
        &self.settings
    }
}

impl std::ops::DerefMut for SinkSpec {
    fn deref_mut(&mut self) -> &mut SinkSettings {
        &mut self.settings
    }
}

impl SinkSpec {
    /// Starts a typed builder for a sink called `name` writing to `connector`.
    pub fn builder(name: impl Into<String>, connector: impl Into<ConnectorConfig>) -> SinkSpecBuilder {
        SinkSpecBuilder { spec: SinkSpec { settings: SinkSettings::new(name), connector: connector.into() } }
    }

    /// Parses a RisingWave-style options map (see the [module docs](self)).
    ///
    /// ```
    /// use differential_sinks::{Options, SinkSpec};
    /// let dir = tempfile::tempdir().unwrap();
    /// let opts = Options::parse_pairs([
    ///     "connector=file".to_string(), format!("path={}", dir.path().display()),
    ///     "type=upsert".into(), "primary_key=id".into(),
    /// ]).unwrap();
    /// let spec = SinkSpec::from_options(opts).unwrap();
    /// assert_eq!(spec.primary_key().unwrap(), ["id"]);
    ///
    /// let err = SinkSpec::from_options(Options::parse_pairs(["connector=file", "type=upsert", "path=/tmp/x"]).unwrap()).unwrap_err();
    /// assert!(err.to_string().contains("primary_key"));
    /// ```
    pub fn from_options(opts: Options) -> Result<SinkSpec> {
        Self::from_options_with_schema(opts, None)
    }

    /// Like [`from_options`](Self::from_options), with the row schema declared alongside.
    pub fn from_options_with_schema(mut opts: Options, schema: Option<Schema>) -> Result<SinkSpec> {
        let connector_name = opts.require("connector", "which system to write to, e.g. connector=file")?;
        let name = opts.take("sink.name").unwrap_or_else(|| "sink".to_string());
        let format_name = opts.require("type", "the sink format: append-only, upsert or debezium")?;
        let force = opts.take_bool("force_append_only")?;
        let tombstone = opts.take_bool("debezium.tombstone")?;
        let format = match format_name.as_str() {
            "append-only" | "append_only" => Format::AppendOnly { force: force.unwrap_or(false) },
            "upsert" => Format::Upsert,
            "debezium" => Format::Debezium { tombstone_after_delete: tombstone.unwrap_or(false) },
            other => {
                return Err(Error::config(format!(
                    "option `type` = `{other}` is not a sink format: use append-only, upsert or debezium"
                )))
            }
        };
        if force.is_some() && !matches!(format, Format::AppendOnly { .. }) {
            return Err(Error::config(format!(
                "option `force_append_only` only applies to `type = append-only`, not `{format_name}`: remove it"
            )));
        }
        if tombstone.is_some() && !matches!(format, Format::Debezium { .. }) {
            return Err(Error::config("option `debezium.tombstone` only applies to `type = debezium`: remove it"));
        }
        let primary_key = opts.take("primary_key").map(|s| split_columns(&s));
        let key_encoding = match opts.take("key.encode").as_deref() {
            None | Some("json") => KeyEncoding::Json,
            Some("text") => KeyEncoding::Text { delimiter: opts.take("key.delimiter").unwrap_or_else(|| ",".into()) },
            Some(other) => return Err(Error::config(format!("option `key.encode` = `{other}`: use json or text"))),
        };
        if key_encoding == KeyEncoding::Json && opts.get("key.delimiter").is_some() {
            return Err(Error::config("option `key.delimiter` needs `key.encode = text`"));
        }
        let connect_schema = opts.take_bool("schemas.enable")?.unwrap_or(false);
        let violations = match opts.take("violation").as_deref() {
            None | Some("fail") => ViolationPolicy::Fail,
            Some("skip") => ViolationPolicy::Skip,
            Some("dead-letter") | Some("dead_letter") => ViolationPolicy::DeadLetter,
            Some(other) => {
                return Err(Error::config(format!("option `violation` = `{other}`: use fail, skip or dead-letter")))
            }
        };
        let mut commit = CommitPolicy::default();
        if let Some(ms) = opts.take_parsed::<u64>("commit.interval.ms", "milliseconds")? {
            commit.interval = Duration::from_millis(ms);
        }
        commit.max_changes = opts.take_parsed::<u64>("commit.max_changes", "a count of changes")?;
        let write_chunk = opts.take_parsed::<usize>("write.chunk_changes", "a count of changes")?;
        let buffer_max =
            opts.take("buffer.max.bytes").map(|v| crate::options::parse_bytes("buffer.max.bytes", &v)).transpose()?;
        let spill_dir = opts.take("buffer.spill.dir");
        let connector = ConnectorConfig::from_options(&connector_name, &mut opts)?;
        opts.finish(&connector_name)?;
        let mut b = SinkSpec::builder(name, connector).format(format).key_encoding(key_encoding);
        if let Some(pk) = primary_key {
            b = b.primary_key(pk);
        }
        b.spec.connect_schema = connect_schema;
        b.spec.schema = schema;
        b.spec.violations = violations;
        b.spec.commit = commit;
        if let Some(n) = write_chunk {
            b = b.write_chunk(n);
        }
        if let Some(n) = buffer_max {
            b = b.buffer_max_bytes(n);
        }
        if let Some(dir) = spill_dir {
            b = b.spill_dir(dir);
        }
        b.build()
    }

    /// The common settings the connector sees.
    pub fn settings(&self) -> &SinkSettings {
        &self.settings
    }
    /// The connector's configuration.
    pub fn connector(&self) -> &ConnectorConfig {
        &self.connector
    }
}

/// Builds a [`SinkSpec`]; [`build`](Self::build) validates it.
#[derive(Clone, Debug)]
pub struct SinkSpecBuilder {
    spec: SinkSpec,
}

impl SinkSpecBuilder {
    /// The format (default: append-only).
    pub fn format(mut self, format: Format) -> Self {
        self.spec.format = format;
        self
    }
    /// Upsert format.
    pub fn upsert(self) -> Self {
        self.format(Format::Upsert)
    }
    /// Debezium format.
    pub fn debezium(self) -> Self {
        self.format(Format::Debezium { tombstone_after_delete: false })
    }
    /// Append-only format; `force` drops deletes and turns updates into inserts.
    pub fn append_only(self, force: bool) -> Self {
        self.format(Format::AppendOnly { force })
    }
    /// The primary key columns.
    pub fn primary_key<I: IntoIterator<Item = S>, S: Into<String>>(mut self, columns: I) -> Self {
        self.spec.primary_key = Some(columns.into_iter().map(Into::into).collect());
        self
    }
    /// Declares that the key comes from a key function
    /// ([`SinkCollection::sink_keyed_by`](crate::SinkCollection::sink_keyed_by)) instead of columns.
    pub fn key_by_function(mut self) -> Self {
        self.spec.key_by_function = true;
        self
    }
    /// The key encoding (default JSON).
    pub fn key_encoding(mut self, encoding: KeyEncoding) -> Self {
        self.spec.key_encoding = encoding;
        self
    }
    /// The row schema, for targets and encodings that need column types.
    pub fn schema(mut self, schema: Schema) -> Self {
        self.spec.schema = Some(schema);
        self
    }
    /// Debezium events in Kafka Connect's `{schema, payload}` form (needs [`schema`](Self::schema)).
    pub fn connect_schema(mut self, on: bool) -> Self {
        self.spec.connect_schema = on;
        self
    }
    /// The key-violation policy (default: fail).
    pub fn violations(mut self, policy: ViolationPolicy) -> Self {
        self.spec.violations = policy;
        self
    }
    /// The commit cadence.
    pub fn commit(mut self, policy: CommitPolicy) -> Self {
        self.spec.commit = policy;
        self
    }
    /// Declares that the input's history starts at `time` (a snapshot restored at that time)
    /// rather than at the beginning; see [`SinkConfig::input_starts_at`](differential_sinks_operators::SinkConfig).
    pub fn input_starts_at(mut self, time: u64) -> Self {
        self.spec.input_starts_at = Some(time);
        self
    }
    /// At most about `changes` changes per call to the connector's writer (default 16384): a
    /// larger time is written in several calls. Must be at least 1.
    pub fn write_chunk(mut self, changes: usize) -> Self {
        self.spec.write_chunk = changes;
        self
    }
    /// What each worker holds in memory for times not yet delivered, in bytes (default 256 MiB);
    /// past it, updates are sorted into runs and spilled to [`spill_dir`](Self::spill_dir). See
    /// [`BufferConfig`](differential_sinks_operators::BufferConfig) for what is counted.
    pub fn buffer_max_bytes(mut self, bytes: usize) -> Self {
        self.spec.buffer.max_bytes = bytes;
        self
    }
    /// Where spill files go (default `<temp dir>/differential-sinks-spill`); each sink and worker
    /// gets a subdirectory, removed when it stops (or, after a crash, when the sink starts again).
    pub fn spill_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.spec.buffer.spill_dir = dir.into();
        self
    }
    /// Share counters with other sinks or a progress display.
    pub fn metrics(mut self, metrics: Arc<SinkMetrics>) -> Self {
        self.spec.metrics = metrics;
        self
    }

    /// Validates the combination and returns the spec.
    pub fn build(self) -> Result<SinkSpec> {
        let s = self.spec;
        if s.name.is_empty() {
            return Err(Error::config("the sink name (`sink.name`) is empty"));
        }
        if s.write_chunk == 0 {
            return Err(Error::config("option `write.chunk_changes` is 0: give at least 1 change per write"));
        }
        if s.buffer.max_bytes == 0 {
            return Err(Error::config(
                "option `buffer.max.bytes` is 0: give the buffer at least 1 byte (default 256 MiB)",
            ));
        }
        check_spill_dir(&s.buffer.spill_dir)?;
        if let Some(pk) = &s.primary_key {
            crate::key::KeyColumns::new(pk.clone(), s.key_encoding.clone())?;
            if let Some(schema) = &s.schema {
                for c in pk {
                    if schema.column(c).is_none() {
                        return Err(Error::schema(format!(
                            "`primary_key` column `{c}` is not in the schema ({}); fix the column name",
                            schema.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                        )));
                    }
                }
            }
        }
        if s.key_by_function && s.primary_key.is_some() {
            return Err(Error::config(
                "declare the key either by `primary_key` columns or by a key function, not both",
            ));
        }
        if s.format.is_keyed() && s.primary_key.is_none() && !s.key_by_function && !s.connector.has_own_keys() {
            return Err(Error::config(format!(
                "`type = {}` needs a primary key and the `{}` sink has no keys of its own: set `primary_key = 'col1,col2'` \
                 (or use a key function), or use `type = append-only`",
                s.format.name(),
                s.connector.name()
            )));
        }
        if s.connect_schema {
            if !matches!(s.format, Format::Debezium { .. }) {
                return Err(Error::config("option `schemas.enable` applies to `type = debezium` only: remove it"));
            }
            if s.schema.is_none() {
                return Err(Error::config(
                    "option `schemas.enable = true` needs the row schema: declare it (SinkSpecBuilder::schema, or dsink --schema)",
                ));
            }
        }
        if s.violations == ViolationPolicy::DeadLetter && s.primary_key.is_none() {
            return Err(Error::config(
                "option `violation = dead-letter` needs a `primary_key` to violate: declare one",
            ));
        }
        s.connector.validate(&s.settings)?;
        Ok(s)
    }
}

/// Refuses a spill directory that cannot be created or written, at sink creation.
fn check_spill_dir(dir: &std::path::Path) -> Result<()> {
    let refuse = |e: std::io::Error| {
        Error::config(format!(
            "option `buffer.spill.dir` = `{}`: the sink cannot write spill files there ({e}); point it at a writable \
             directory",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(refuse)?;
    let probe = dir.join(format!(".dsink-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(refuse)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

pub(crate) fn split_columns(s: &str) -> Vec<String> {
    s.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect()
}

#[cfg(all(test, feature = "file"))]
mod tests {
    use super::*;

    fn spec(extra: &[&str]) -> Result<SinkSpec> {
        let dir = std::env::temp_dir().join("dsink-config-test-out");
        let mut pairs =
            vec!["connector=file".to_string(), format!("path={}", dir.display()), "type=append-only".into()];
        pairs.extend(extra.iter().map(|s| s.to_string()));
        SinkSpec::from_options(Options::parse_pairs(pairs).unwrap())
    }

    #[test]
    fn buffer_options_parse_with_units() {
        assert_eq!(spec(&[]).unwrap().buffer().max_bytes, differential_sinks_operators::DEFAULT_BUFFER_MAX_BYTES);
        assert_eq!(spec(&["buffer.max.bytes=1000"]).unwrap().buffer().max_bytes, 1000);
        assert_eq!(spec(&["buffer.max.bytes=64MiB"]).unwrap().buffer().max_bytes, 64 << 20);
        assert_eq!(spec(&["buffer.max.bytes=2g"]).unwrap().buffer().max_bytes, 2 << 30);
        let dir = std::env::temp_dir().join("dsink-config-test-spill");
        let s = spec(&[&format!("buffer.spill.dir={}", dir.display())]).unwrap();
        assert_eq!(s.buffer().spill_dir, dir);
        assert!(dir.is_dir(), "the spill directory is created when the sink is");
    }

    #[test]
    fn bad_buffer_options_are_refused_naming_the_option() {
        for bad in ["buffer.max.bytes=0", "buffer.max.bytes=lots", "buffer.max.bytes=12TiB", "buffer.max.bytes=-1"] {
            let e = spec(&[bad]).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Config, "{bad}");
            assert!(e.to_string().contains("buffer.max.bytes"), "{bad}: {e}");
        }
        let file = std::env::temp_dir().join(format!("dsink-config-test-file-{}", std::process::id()));
        std::fs::write(&file, b"a file").unwrap();
        let e = spec(&[&format!("buffer.spill.dir={}", file.display())]).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Config);
        assert!(
            e.to_string().contains("buffer.spill.dir") && e.to_string().contains(&file.display().to_string()),
            "{e}"
        );
        let _ = std::fs::remove_file(&file);
    }
}
