//! The connector contract: what every target implements, once, in its folder.
//!
//! A connector is its settings type implementing [`Connector`]:
//!
//! 1. **Options** — [`from_options`](Connector::from_options) takes the connector's own keys from
//!    the options map (its `config.rs`); the common keys were taken by the spec before.
//! 2. **Creation-time checks** — [`validate`](Connector::validate) checks the settings and the
//!    target (the table's columns and key, the topic, the index) against the sink's
//!    [`SinkSettings`] when the spec is built, naming the option or the table to fix.
//! 3. **A pure encoder** — [`encoder`](Connector::encoder) makes the [`ChangeEncoder`] that turns
//!    per-key changes into the target's wire form without I/O, from the settings and what the
//!    target said about its table ([`Connector::Table`]).
//! 4. **Writers** — [`open`](Connector::open) opens this worker's part of the delivery, one of two
//!    shapes ([`Writers`]):
//!    * [`Writers::Independent`]: each worker's writer commits its own changes together with its
//!      own progress (a transaction, a progress record); it may be *pipelined* — `commit` starts a
//!      commit that `durable` reports later ([`SinkWriter::pipelined`]).
//!    * [`Writers::Coordinated`]: workers prepare their share (data files) and one committer on
//!      worker 0 makes every worker's share durable in one commit (a lakehouse snapshot).
//!
//! Registering a connector is one line of the registry in [`super`]; the sink core
//! ([`crate::sink`]) only ever sees [`Writers`].

use crate::encode::ChangeEncoder;
use crate::encoded_row::{json_encoder, RowEncoder};
use crate::error::{Error, ErrorKind, Result};
use crate::key::Key;
use crate::options::Options;
use crate::row::Row;
use crate::settings::SinkSettings;
use differential_sinks_operators::{
    Change, Committer, CoordinatedWriter, Frontier, Prepared, SinkTime, SinkWriter, WorkerContext,
};
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

/// A target system's settings, and everything the sink needs from the target. See the
/// [module docs](self).
pub trait Connector: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// The value of the `connector` option that selects it.
    const NAME: &'static str;
    /// Other values of `connector` that select it (`opensearch` for `elasticsearch`).
    const ALIASES: &'static [&'static str] = &[];
    /// True if the target defines keys itself (a table's primary key), so a keyed format may
    /// take them from there instead of a declared `primary_key`.
    const OWN_KEYS: bool = false;
    /// True if the target builds its records from the rows themselves (Arrow columns, SQL cells),
    /// so an unkeyed sink routes rows by their identity (the same hash as their JSON, without
    /// keeping the JSON) instead of encoding each row's JSON as its key.
    const TAKES_ROWS: bool = false;
    /// True if the connector's writer takes rows encoded where they are produced, in the form
    /// [`row_encoder`](Self::row_encoder) names: by default a row's JSON, which the encoder
    /// writes with [`encode_row`](crate::encode::json::encode_row) (the message targets' records,
    /// a document, a load line). The sink then encodes each row once, on the worker that produced
    /// it, and moves and consolidates the encoded bytes ([`EncodedRow`](crate::EncodedRow)): the
    /// writer is opened for rows of type `EncodedRow`, whose `Serialize` presents a JSON row's
    /// value to anything else the encoder reads of it.
    const ENCODED_ROWS: bool = false;
    /// True if one commit covers every worker's writes (the lakehouse tables' coordinated
    /// commits), so where a row was written never decides where a restart resumes: the sink may
    /// then route an unkeyed sink's rows by the hash of their encoding (cheaper than their
    /// JSON's), a routing that changes with the encoding but never makes a restart refused.
    const COMMITS_ALL_WORKERS: bool = false;
    /// True if an upsert sink's rows are keyed by the target's own form of their key
    /// ([`table_key`](Self::table_key)) instead of the declared columns' JSON: the key then
    /// routes, groups and deletes rows as the target compares them, and the target can compute
    /// it from what it stored (a lakehouse table's key columns), so a worker can tell the keys
    /// it owns.
    const TABLE_KEYS: bool = false;
    /// The version of what the connector writes on its target that a resume depends on (record
    /// shapes and counts, labels, file names, the progress record itself). It is recorded with
    /// every commit ([`Layout::format`](differential_sinks_operators::Layout)); a change that
    /// would make a resumed run misjudge what an earlier version already wrote must raise it, so
    /// such a resume is refused instead of duplicating or losing records.
    const FORMAT: u32 = 1;

    /// What the target says about its table that the encoder needs (column types); `()` where
    /// the encoding needs nothing from the target.
    type Table;
    /// The pure encoder of this target's wire form.
    type Encoder<V: Row>: ChangeEncoder<V>;

    /// Parses the connector's own options, consuming them from `opts`.
    fn from_options(opts: &mut Options) -> Result<Self>;

    /// Checks the settings and the target against the sink's settings, at creation.
    fn validate(&self, sink: &SinkSettings) -> Result<()> {
        let _ = sink;
        Ok(())
    }

    /// The encoder for rows of type `V`, given what the target said about its table.
    fn encoder<V: Row>(&self, sink: &SinkSettings, table: &Self::Table) -> Result<Self::Encoder<V>>;

    /// Opens this worker's writer (and, for a coordinated target, the way to make the committer).
    fn open<V: Row, T: SinkTime>(&self, sink: &SinkSettings, ctx: WorkerContext) -> Result<Writers<V, T>>;

    /// What the rows of an [`ENCODED_ROWS`](Self::ENCODED_ROWS) target are encoded into where
    /// they are produced (asked once per worker as the dataflow is built): JSON unless the target
    /// has its own row form (ClickHouse's `RowBinary`, which follows the table's column types).
    fn row_encoder<V: Row>(&self, sink: &SinkSettings) -> Result<RowEncoder<V>> {
        let _ = sink;
        Ok(json_encoder())
    }

    /// For a [`TABLE_KEYS`](Self::TABLE_KEYS) target's upsert sink: what a row's key is encoded
    /// into where it is produced (asked once per worker, after [`open`](Self::open)); `None`
    /// keys rows by the declared columns' JSON.
    fn table_key<V: Row>(&self, sink: &SinkSettings) -> Result<Option<RowEncoder<V>>> {
        let _ = sink;
        Ok(None)
    }
}

impl<C: Connector> Connector for Box<C> {
    const NAME: &'static str = C::NAME;
    const ALIASES: &'static [&'static str] = C::ALIASES;
    const OWN_KEYS: bool = C::OWN_KEYS;
    const TAKES_ROWS: bool = C::TAKES_ROWS;
    const ENCODED_ROWS: bool = C::ENCODED_ROWS;
    const COMMITS_ALL_WORKERS: bool = C::COMMITS_ALL_WORKERS;
    const TABLE_KEYS: bool = C::TABLE_KEYS;
    const FORMAT: u32 = C::FORMAT;
    type Table = C::Table;
    type Encoder<V: Row> = C::Encoder<V>;

    fn from_options(opts: &mut Options) -> Result<Self> {
        C::from_options(opts).map(Box::new)
    }
    fn validate(&self, sink: &SinkSettings) -> Result<()> {
        (**self).validate(sink)
    }
    fn encoder<V: Row>(&self, sink: &SinkSettings, table: &Self::Table) -> Result<Self::Encoder<V>> {
        (**self).encoder(sink, table)
    }
    fn open<V: Row, T: SinkTime>(&self, sink: &SinkSettings, ctx: WorkerContext) -> Result<Writers<V, T>> {
        (**self).open(sink, ctx)
    }
    fn row_encoder<V: Row>(&self, sink: &SinkSettings) -> Result<RowEncoder<V>> {
        (**self).row_encoder(sink)
    }
    fn table_key<V: Row>(&self, sink: &SinkSettings) -> Result<Option<RowEncoder<V>>> {
        (**self).table_key(sink)
    }
}

/// A coordinated writer's prepared work, serialized so that every target's tokens have one type on
/// the way to the committer. The form is `bincode`'s: compact (a key's bytes are its bytes, not a
/// JSON array of numbers), and not self-describing, so a token type must not need a
/// self-describing format (no `serde_json::Value`, untagged enums or flattened fields); the
/// tokens never leave the dataflow, so the form may change between versions.
pub type PreparedBytes = Vec<u8>;

/// Makes the committer of a coordinated sink (called on worker 0 only).
pub type CommitterFactory<T> = Box<dyn FnOnce() -> Result<Box<dyn Committer<PreparedBytes, T, Error = Error>>>>;

/// This worker's part of a delivery: the one choice a connector makes about its commits.
pub enum Writers<V, T> {
    /// Each worker's writer commits its own changes with its own progress.
    Independent(Box<dyn SinkWriter<Key, V, T, Error = Error>>),
    /// Workers prepare their share; one committer on worker 0 commits every worker's share at once.
    Coordinated(Box<dyn CoordinatedWriter<Key, V, T, Error = Error, Prepared = PreparedBytes>>, CommitterFactory<T>),
}

impl<V: 'static, T: SinkTime> Writers<V, T> {
    /// A writer that commits itself.
    pub fn independent(writer: impl SinkWriter<Key, V, T, Error = Error>) -> Self {
        Writers::Independent(Box::new(writer))
    }

    /// A writer whose prepared work `make_committer`'s committer commits for all workers.
    pub fn coordinated<W, C, F>(writer: W, make_committer: F) -> Self
    where
        W: CoordinatedWriter<Key, V, T, Error = Error>,
        C: Committer<W::Prepared, T, Error = Error>,
        F: FnOnce() -> Result<C> + 'static,
    {
        let factory: CommitterFactory<T> = Box::new(move || {
            let committer = make_committer()?;
            Ok(Box::new(BytesCommitter { inner: committer, _token: PhantomData::<fn() -> W::Prepared> })
                as Box<dyn Committer<PreparedBytes, T, Error = Error>>)
        });
        Writers::Coordinated(Box::new(BytesWriter(writer)), factory)
    }
}

/// A coordinated writer whose tokens travel as [`PreparedBytes`].
struct BytesWriter<W>(W);

impl<V, T, W: CoordinatedWriter<Key, V, T, Error = Error>> SinkWriter<Key, V, T> for BytesWriter<W> {
    type Error = Error;
    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<T>> {
        self.0.resume(ctx)
    }
    fn write(&mut self, time: &T, changes: &mut Vec<Change<Key, V>>) -> Result<()> {
        self.0.write(time, changes)
    }
    fn commit(&mut self, upper: &Frontier<T>) -> Result<()> {
        self.0.commit(upper)
    }
    fn pipelined(&self) -> bool {
        self.0.pipelined()
    }
    fn durable(&mut self, wait: bool) -> Result<Option<Frontier<T>>> {
        self.0.durable(wait)
    }
}

impl<V, T, W: CoordinatedWriter<Key, V, T, Error = Error>> CoordinatedWriter<Key, V, T> for BytesWriter<W> {
    type Prepared = PreparedBytes;
    fn begin_prepare(&mut self, upper: &Frontier<T>) -> Result<()> {
        self.0.begin_prepare(upper)
    }
    fn prepare(&mut self, upper: &Frontier<T>) -> Result<PreparedBytes> {
        let token = self.0.prepare(upper)?;
        bincode::serialize(&token)
            .map_err(|e| Error::new(ErrorKind::Encode, format!("cannot serialize a prepared commit: {e}")))
    }
}

/// A committer that decodes [`PreparedBytes`] into its own tokens.
struct BytesCommitter<C, P> {
    inner: C,
    _token: PhantomData<fn() -> P>,
}

impl<P: DeserializeOwned + 'static, T: SinkTime, C: Committer<P, T, Error = Error>> Committer<PreparedBytes, T>
    for BytesCommitter<C, P>
{
    type Error = Error;
    fn resume(&mut self, peers: usize) -> Result<Vec<Frontier<T>>> {
        self.inner.resume(peers)
    }
    fn commit(&mut self, prepared: Vec<Prepared<PreparedBytes, T>>, frontiers: &[Frontier<T>]) -> Result<()> {
        let decoded = prepared
            .into_iter()
            .map(|p| {
                let token = bincode::deserialize(&p.token).map_err(|e| {
                    Error::new(ErrorKind::Encode, format!("cannot read worker {}'s prepared commit: {e}", p.worker))
                })?;
                Ok(Prepared { worker: p.worker, upper: p.upper, token })
            })
            .collect::<Result<Vec<_>>>()?;
        self.inner.commit(decoded, frontiers)
    }
}
/// A frontier read back from a target, in the dataflow's time type; a `Resume` error if it does
/// not fit that type.
pub fn resumed_frontier<T: SinkTime>(f: Frontier<u64>) -> Result<Frontier<T>> {
    Frontier::<T>::from_u64_frontier(f).ok_or_else(|| {
        Error::new(
            ErrorKind::Resume,
            format!("the committed frontier {f:?} does not fit the dataflow's timestamp type"),
        )
    })
}
