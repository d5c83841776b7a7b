//! The sink's entry points on differential collections: [`SinkExt`] for collections of rows,
//! keyed by a key function, and [`KeyedSinkExt`] for collections keyed where they were produced.
//! Each builds the worker operator ([`crate::sink`], which says what is guaranteed) and, for
//! coordinated targets, the committer on worker 0 ([`crate::coordinate`]).

use crate::config::SinkConfig;
use crate::coordinate::{committer_operator, notice_operator};
use crate::finish::{Coordinated, Independent};
use crate::handle::{Committed, SinkHandle};
use crate::lag::FrontierLag;
use crate::sink::worker_operator;
use crate::time::SinkTime;
use crate::writer::{Committer, CoordinatedWriter, SinkWriter};
use differential_dataflow::VecCollection;
use std::fmt::Debug;
use std::hash::Hash;
use timely::dataflow::Stream;
use timely::ExchangeData;

/// What the sink operator returns.
pub struct SinkOutput<'scope, T: SinkTime, V: Clone + 'static, E> {
    /// One record per commit; its frontier is the committed frontier (probe it).
    pub committed: Stream<'scope, T, Vec<Committed<T>>>,
    /// Updates routed aside by the dead-letter policy, as a collection.
    pub dead_letters: VecCollection<'scope, T, V, isize>,
    /// This worker's handle on the sink's state.
    pub handle: SinkHandle<T, E>,
}

/// Sink operators on differential collections.
pub trait SinkExt<'scope, T: SinkTime, V: ExchangeData + Ord + Clone> {
    /// Delivers the collection through `writer`, one writer per worker, each committing itself.
    ///
    /// ```
    /// use differential_sinks_operators::{SinkExt, SinkConfig, SinkWriter, Change, Frontier, WorkerContext, OperatorError};
    /// use differential_dataflow::input::Input;
    /// use timely::dataflow::operators::probe::Probe;
    /// use std::sync::{Arc, Mutex};
    ///
    /// // A writer that keeps the latest value per key.
    /// struct MapWriter(Arc<Mutex<std::collections::BTreeMap<u32, String>>>);
    /// impl SinkWriter<u32, (u32, String), u64> for MapWriter {
    ///     type Error = OperatorError;
    ///     fn resume(&mut self, _: WorkerContext) -> Result<Frontier<u64>, OperatorError> { Ok(Frontier::minimum()) }
    ///     fn write(&mut self, _t: &u64, changes: &mut Vec<Change<u32, (u32, String)>>) -> Result<(), OperatorError> {
    ///         let mut map = self.0.lock().unwrap();
    ///         for c in changes.drain(..) {
    ///             match c.after { Some((_, v)) => { map.insert(c.key, v); } None => { map.remove(&c.key); } }
    ///         }
    ///         Ok(())
    ///     }
    ///     fn commit(&mut self, _upper: &Frontier<u64>) -> Result<(), OperatorError> { Ok(()) }
    /// }
    ///
    /// let map = Arc::new(Mutex::new(Default::default()));
    /// let map2 = map.clone();
    /// timely::execute_directly(move |worker| {
    ///     let (mut input, probe, handle) = worker.dataflow::<u64, _, _>(|scope| {
    ///         let (input, rows) = scope.new_collection::<(u32, String), isize>();
    ///         let out = rows.sink_with(SinkConfig::new("demo"), |row: &(u32, String)| row.0, MapWriter(map2));
    ///         let (probe, _) = out.committed.probe();
    ///         (input, probe, out.handle)
    ///     });
    ///     input.insert((1, "a".into()));
    ///     input.advance_to(1);
    ///     input.remove((1, "a".into()));
    ///     input.insert((1, "b".into()));
    ///     input.advance_to(2);
    ///     input.flush();
    ///     handle.step_until_committed(worker, &probe, &2).unwrap();
    /// });
    /// assert_eq!(map.lock().unwrap().get(&1).map(String::as_str), Some("b"));
    /// ```
    fn sink_with<K, KF, W>(self, config: SinkConfig, key_fn: KF, writer: W) -> SinkOutput<'scope, T, V, W::Error>
    where
        K: ExchangeData + Ord + Hash + Clone + Debug,
        KF: Fn(&V) -> K + 'static,
        W: SinkWriter<K, V, T>;

    /// Delivers the collection through per-worker `writer`s whose work one committer on worker 0
    /// makes durable in a single commit per round (a lakehouse snapshot). `make_committer` runs on
    /// worker 0 only.
    fn sink_coordinated<K, KF, W, C, MC>(
        self,
        config: SinkConfig,
        key_fn: KF,
        writer: W,
        make_committer: MC,
    ) -> SinkOutput<'scope, T, V, W::Error>
    where
        K: ExchangeData + Ord + Hash + Clone + Debug,
        KF: Fn(&V) -> K + 'static,
        W: CoordinatedWriter<K, V, T>,
        C: Committer<W::Prepared, T, Error = W::Error>,
        MC: FnOnce() -> Result<C, W::Error> + 'static;
}

impl<'scope, T: SinkTime, V: ExchangeData + Ord + Clone> SinkExt<'scope, T, V> for VecCollection<'scope, T, V, isize> {
    fn sink_with<K, KF, W>(self, config: SinkConfig, key_fn: KF, writer: W) -> SinkOutput<'scope, T, V, W::Error>
    where
        K: ExchangeData + Ord + Hash + Clone + Debug,
        KF: Fn(&V) -> K + 'static,
        W: SinkWriter<K, V, T>,
    {
        self.map(move |v| (key_fn(&v), v)).sink_keyed(config, writer)
    }

    fn sink_coordinated<K, KF, W, C, MC>(
        self,
        config: SinkConfig,
        key_fn: KF,
        writer: W,
        make_committer: MC,
    ) -> SinkOutput<'scope, T, V, W::Error>
    where
        K: ExchangeData + Ord + Hash + Clone + Debug,
        KF: Fn(&V) -> K + 'static,
        W: CoordinatedWriter<K, V, T>,
        C: Committer<W::Prepared, T, Error = W::Error>,
        MC: FnOnce() -> Result<C, W::Error> + 'static,
    {
        self.map(move |v| (key_fn(&v), v)).sink_keyed_coordinated(config, writer, make_committer)
    }
}

/// Sink operators on collections already keyed where they were produced: `(key, value)` pairs,
/// whose value may be the row in an encoded form (the key and the encoding computed in one pass
/// over the row, before the exchange). [`SinkExt`]'s methods are these, after `map`ping each row
/// to its key.
pub trait KeyedSinkExt<'scope, T: SinkTime, K, V: ExchangeData + Ord + Clone> {
    /// [`SinkExt::sink_with`] for pairs of a key and its value.
    fn sink_keyed<W>(self, config: SinkConfig, writer: W) -> SinkOutput<'scope, T, V, W::Error>
    where
        W: SinkWriter<K, V, T>;

    /// [`SinkExt::sink_coordinated`] for pairs of a key and its value.
    fn sink_keyed_coordinated<W, C, MC>(
        self,
        config: SinkConfig,
        writer: W,
        make_committer: MC,
    ) -> SinkOutput<'scope, T, V, W::Error>
    where
        W: CoordinatedWriter<K, V, T>,
        C: Committer<W::Prepared, T, Error = W::Error>,
        MC: FnOnce() -> Result<C, W::Error> + 'static;
}

impl<'scope, T, K, V> KeyedSinkExt<'scope, T, K, V> for VecCollection<'scope, T, (K, V), isize>
where
    T: SinkTime,
    K: ExchangeData + Ord + Hash + Clone + Debug,
    V: ExchangeData + Ord + Clone,
{
    fn sink_keyed<W>(self, config: SinkConfig, writer: W) -> SinkOutput<'scope, T, V, W::Error>
    where
        W: SinkWriter<K, V, T>,
    {
        let handle = SinkHandle::new();
        let metrics = config.metrics.for_worker(&config.name, self.inner.scope().index());
        let lag = Some(FrontierLag::new(&metrics));
        let (committed, dead_letters) =
            worker_operator(self, &config, writer, Independent, handle.clone(), metrics, lag);
        SinkOutput { committed, dead_letters, handle }
    }

    fn sink_keyed_coordinated<W, C, MC>(
        self,
        config: SinkConfig,
        writer: W,
        make_committer: MC,
    ) -> SinkOutput<'scope, T, V, W::Error>
    where
        W: CoordinatedWriter<K, V, T>,
        C: Committer<W::Prepared, T, Error = W::Error>,
        MC: FnOnce() -> Result<C, W::Error> + 'static,
    {
        let handle = SinkHandle::new();
        let index = self.inner.scope().index();
        let metrics = config.metrics.for_worker(&config.name, index);
        // The committer on worker 0 moves the committed frontier: only worker 0 has the lag.
        let lag = (index == 0).then(|| FrontierLag::new(&metrics));
        let (prepared, dead_letters) =
            worker_operator(self, &config, writer, Coordinated, handle.clone(), metrics.clone(), lag.clone());
        let notices = committer_operator(prepared, &config.name, metrics, lag, make_committer, handle.clone());
        let committed = notice_operator(notices, &config.name, handle.clone());
        SinkOutput { committed, dead_letters, handle }
    }
}
