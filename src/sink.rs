//! The public entry point: end a differential collection in a sink.
//!
//! [`SinkCollection::sink`] takes a validated [`SinkSpec`], opens this worker's part of the
//! delivery through the spec's connector ([`Writers`]), and builds the sink operator with the
//! spec's key, format and cadence. It returns the operator's [`SinkOutput`]: a stream to
//! `probe()` for the committed frontier, the dead-letter collection, and a handle with the error
//! that stopped the sink, if any. It knows no connector by name.

use crate::config::SinkSpec;
use crate::connectors::Writers;
use crate::encoded_row::EncodedRow;
use crate::error::{Error, Result};
use crate::key::{encode_key_value, Key, KeyColumns, KeyEncoding};
use crate::producer::key_and_encode;
pub use crate::row::Row;
use differential_dataflow::VecCollection;
use differential_sinks_operators::{
    routing_fingerprint, KeyedSinkExt, Layout, SinkConfig, SinkExt, SinkOutput, SinkTime, ViolationPolicy,
    WorkerContext,
};
use serde::Serialize;

/// Sinks on differential collections.
pub trait SinkCollection<'scope, T: SinkTime, V: Row> {
    /// Delivers the collection as `spec` says, keyed by its `primary_key` columns (or, for an
    /// append-only sink without a key, by the whole row).
    ///
    /// ```
    /// use differential_sinks::{SinkCollection, SinkSpec, connectors::file::{FileConfig, read_committed}};
    /// use differential_dataflow::input::Input;
    /// use timely::dataflow::operators::probe::Probe;
    ///
    /// #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
    /// struct Total { customer: String, amount: i64 }
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let spec = SinkSpec::builder("totals", FileConfig::new(dir.path())).upsert().primary_key(["customer"]).build().unwrap();
    /// timely::execute_directly(move |worker| {
    ///     let (mut input, probe, handle) = worker.dataflow::<u64, _, _>(|scope| {
    ///         let (input, totals) = scope.new_collection::<Total, isize>();
    ///         let out = totals.sink(&spec).unwrap();
    ///         let (probe, _) = out.committed.probe();
    ///         (input, probe, out.handle)
    ///     });
    ///     input.insert(Total { customer: "ada".into(), amount: 5 });
    ///     input.advance_to(1);
    ///     input.remove(Total { customer: "ada".into(), amount: 5 });
    ///     input.insert(Total { customer: "ada".into(), amount: 8 });
    ///     input.advance_to(2);
    ///     input.flush();
    ///     handle.step_until_committed(worker, &probe, &2).unwrap();
    /// });
    /// let lines = read_committed(dir.path()).unwrap();
    /// assert_eq!(lines.last().unwrap()["value"]["amount"], 8);
    /// ```
    fn sink(self, spec: &SinkSpec) -> Result<SinkOutput<'scope, T, V, Error>>;

    /// Like [`sink`](Self::sink), with the key computed by `key_fn` (encoded in the spec's key
    /// encoding). The spec must be built with
    /// [`key_by_function`](crate::SinkSpecBuilder::key_by_function).
    fn sink_keyed_by<K, F>(self, spec: &SinkSpec, key_fn: F) -> Result<SinkOutput<'scope, T, V, Error>>
    where
        K: Serialize,
        F: Fn(&V) -> K + 'static;
}

fn operator_config(spec: &SinkSpec, keyed: bool, layout: Layout) -> SinkConfig {
    SinkConfig {
        name: spec.name.clone(),
        commit: spec.commit.clone(),
        violations: spec.violations,
        keyed,
        input_starts_at: spec.input_starts_at,
        write_chunk: spec.write_chunk,
        buffer: spec.buffer.clone(),
        metrics: std::sync::Arc::clone(&spec.metrics),
        layout,
    }
}

/// What this sink's routed key is made of, for its [`Layout::routing`] fingerprint: a restart
/// whose key differs (other columns, another key encoding, rows instead of keys) routes keys to
/// other workers, which the connectors' resume refuses or turns into a new generation.
fn routing_of(spec: &SinkSpec, key: &str) -> u64 {
    routing_fingerprint(&format!("{key};key.encode={:?}", spec.key_encoding))
}

impl<'scope, T: SinkTime, V: Row> SinkCollection<'scope, T, V> for VecCollection<'scope, T, V, isize> {
    fn sink(self, spec: &SinkSpec) -> Result<SinkOutput<'scope, T, V, Error>> {
        if spec.key_by_function {
            return Err(Error::config(format!(
                "sink `{}` was declared keyed by a function: call sink_keyed_by with the key function",
                spec.name
            )));
        }
        match &spec.primary_key {
            Some(columns) => {
                let routing = routing_of(spec, &format!("columns={columns:?}"));
                let columns = KeyColumns::new(columns.clone(), spec.key_encoding.clone())?;
                // A `JsonRow` (dsink's rows) is read from its text, without serializing it.
                let key_of = move |row: &V| match (row as &dyn std::any::Any).downcast_ref::<crate::JsonRow>() {
                    Some(row) => columns.extract_json_row(row),
                    None => columns.extract(row),
                };
                deliver(self, spec, true, routing, key_of)
            }
            // No key, into a table that takes the rows themselves: only route and order them.
            // Both route by the stable hash of the row's JSON: one routing.
            None if spec.connector.takes_rows() => {
                deliver(self, spec, false, routing_fingerprint("row-json"), |row: &V| Key::row_identity(row))
            }
            None => {
                // No key: the row's JSON identifies it (and is reused as the encoded value).
                let key_of = |row: &V| encode_key_value(row, &KeyEncoding::Json);
                deliver(self, spec, false, routing_fingerprint("row-json"), key_of)
            }
        }
    }

    fn sink_keyed_by<K, F>(self, spec: &SinkSpec, key_fn: F) -> Result<SinkOutput<'scope, T, V, Error>>
    where
        K: Serialize,
        F: Fn(&V) -> K + 'static,
    {
        if !spec.key_by_function {
            return Err(Error::config(format!(
                "sink `{}` takes its key from `primary_key`: build the spec with key_by_function() to use a key function",
                spec.name
            )));
        }
        let encoding = spec.key_encoding.clone();
        let key_of = move |row: &V| -> Key { encode_key_value(&key_fn(row), &encoding) };
        deliver(self, spec, true, routing_of(spec, "function"), key_of)
    }
}

/// Builds the sink operator for `spec`'s connector: one writer per worker committing itself, or,
/// for targets whose commits cover every worker (lakehouse tables), writers and one committer.
///
/// A target that takes rows encoded ([`ConnectorConfig::encoded_rows`]) gets each row encoded
/// once, on the worker that produced it, in the same pass as its key and in the form the target
/// names (its JSON, or ClickHouse's `RowBinary`; [`EncodedRow`]): what is exchanged, buffered,
/// spilled and consolidated is then the key and the row's bytes. Under the dead-letter policy
/// rows stay typed, since the dead letters are the rows themselves.
///
/// [`ConnectorConfig::encoded_rows`]: crate::ConnectorConfig::encoded_rows
fn deliver<'scope, T: SinkTime, V: Row>(
    collection: VecCollection<'scope, T, V, isize>,
    spec: &SinkSpec,
    keyed: bool,
    routing: u64,
    key_of: impl Fn(&V) -> Key + 'static,
) -> Result<SinkOutput<'scope, T, V, Error>> {
    let scope = collection.inner.scope();
    let encoded = spec.connector.encoded_rows() && spec.violations != ViolationPolicy::DeadLetter;
    // Unkeyed rows into a table whose commits cover every worker are routed by the hash of their
    // encoding instead of their JSON's: no JSON is written for them, and a restart never depends
    // on the routing there.
    let by_encoding = encoded && !keyed && spec.connector.takes_rows() && spec.connector.commits_all_workers();
    // Upserts into a table that keys rows its own way are keyed (and routed) by that key, which
    // each worker can compute from the table's stored rows to tell the keys it owns.
    let table_keyed = keyed && spec.connector.table_keys() && matches!(spec.format, crate::envelope::Format::Upsert);
    let routing = if by_encoding {
        routing_fingerprint("row-encoded")
    } else if table_keyed {
        routing_fingerprint(&format!("table-key;{routing:016x}"))
    } else {
        routing
    };
    let layout = Layout { routing, format: spec.connector.format_version() };
    let ctx = WorkerContext { index: scope.index(), peers: scope.peers(), layout };
    let config = operator_config(spec, keyed, layout);
    // The connector counts its records under this worker's labels.
    let settings = spec.settings.for_worker(ctx);
    if encoded {
        // The writer first: opening it creates a table that is to be created, whose columns
        // the row encoder may read.
        let writers = spec.connector.open::<EncodedRow, T>(&settings, ctx)?;
        let encode = spec.connector.row_encoder::<V>(&settings)?;
        let key_of = table_key(spec, &settings, table_keyed, key_of)?;
        let rows = key_and_encode(collection, &spec.name, key_of, encode, by_encoding);
        let out = match writers {
            Writers::Independent(writer) => rows.sink_keyed(config, writer),
            Writers::Coordinated(writer, make_committer) => rows.sink_keyed_coordinated(config, writer, make_committer),
        };
        // No policy but dead letters routes rows aside: the typed collection stays empty.
        let dead_letters = out.dead_letters.flat_map(|_| None::<V>);
        return Ok(SinkOutput { committed: out.committed, dead_letters, handle: out.handle });
    }
    let writers = spec.connector.open::<V, T>(&settings, ctx)?;
    let key_of = table_key(spec, &settings, table_keyed, key_of)?;
    Ok(match writers {
        Writers::Independent(writer) => collection.sink_with(config, key_of, writer),
        Writers::Coordinated(writer, make_committer) => {
            collection.sink_coordinated(config, key_of, writer, make_committer)
        }
    })
}

/// How a sink keys its rows.
type KeyOf<V> = Box<dyn Fn(&V) -> Key>;

/// The key rows are keyed by: the target's own form of the key where it has one (a table-keyed
/// upsert, see [`Connector::TABLE_KEYS`](crate::connectors::Connector::TABLE_KEYS)), else
/// `key_of`'s. A row whose key does not fit the target's key columns gets an invalid key naming
/// why, which stops the sink when the row reaches the writer.
fn table_key<V: Row>(
    spec: &SinkSpec,
    settings: &crate::settings::SinkSettings,
    table_keyed: bool,
    key_of: impl Fn(&V) -> Key + 'static,
) -> Result<KeyOf<V>> {
    let encoder = if table_keyed { spec.connector.table_key::<V>(settings)? } else { None };
    let Some(encoder) = encoder else { return Ok(Box::new(key_of)) };
    let encoder = std::cell::RefCell::new((encoder, Vec::new()));
    Ok(Box::new(move |row: &V| {
        let (encode, buf) = &mut *encoder.borrow_mut();
        buf.clear();
        match encode(row, buf) {
            Ok(()) => Key::from_slice(buf),
            Err(reason) => Key::invalid(format!("the row's primary key does not fit the table: {reason}")),
        }
    }))
}
