//! A target of the application's own: any [`RecordWriter`], one per worker, built in code.

use super::contract::Writers;
use super::records::{EnvelopeWriter, RecordWriter};
use crate::error::Result;
use crate::settings::SinkSettings;
use differential_sinks_operators::{SinkTime, WorkerContext};
use serde::Serialize;

/// Makes one [`RecordWriter`] per worker for [`ConnectorConfig::Custom`](super::ConnectorConfig::Custom).
pub type WriterFactory = dyn Fn(WorkerContext) -> Result<Box<dyn RecordWriter>> + Send + Sync;

/// A user-supplied target: a name (for messages) and a per-worker writer factory.
#[derive(Clone)]
pub struct CustomConnector {
    name: &'static str,
    factory: std::sync::Arc<WriterFactory>,
}

impl CustomConnector {
    /// A target called `name` whose writers `factory` makes.
    ///
    /// ```
    /// use differential_sinks::connectors::{CustomConnector, RecordWriter};
    /// use differential_sinks::operators::{Frontier, WorkerContext};
    /// use differential_sinks::{RecordBatch, SinkSpec};
    ///
    /// struct Stdout;
    /// impl RecordWriter for Stdout {
    ///     fn resume(&mut self, _: WorkerContext) -> differential_sinks::Result<Frontier<u64>> { Ok(Frontier::minimum()) }
    ///     fn write(&mut self, batch: &RecordBatch) -> differential_sinks::Result<()> {
    ///         for r in batch.iter() { println!("{}", String::from_utf8_lossy(r.value.unwrap_or(b"null"))); }
    ///         Ok(())
    ///     }
    ///     fn commit(&mut self, _: Frontier<u64>) -> differential_sinks::Result<()> { Ok(()) }
    /// }
    /// let target = CustomConnector::new("stdout", |_ctx| Ok(Box::new(Stdout) as Box<dyn RecordWriter>));
    /// let spec = SinkSpec::builder("print", target).upsert().primary_key(["id"]).build().unwrap();
    /// assert_eq!(spec.connector().name(), "stdout");
    /// ```
    pub fn new<F>(name: &'static str, factory: F) -> Self
    where
        F: Fn(WorkerContext) -> Result<Box<dyn RecordWriter>> + Send + Sync + 'static,
    {
        CustomConnector { name, factory: std::sync::Arc::new(factory) }
    }

    /// The target's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// This worker's writer, with the sink's formats and encodings in front of it.
    pub(crate) fn open<V: Serialize + 'static, T: SinkTime>(
        &self,
        sink: &SinkSettings,
        ctx: WorkerContext,
    ) -> Result<Writers<V, T>> {
        Ok(Writers::independent(EnvelopeWriter::new(sink, (self.factory)(ctx)?)))
    }
}

impl std::fmt::Debug for CustomConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CustomConnector({})", self.name)
    }
}

impl From<CustomConnector> for super::ConnectorConfig {
    fn from(c: CustomConnector) -> Self {
        super::ConnectorConfig::Custom(c)
    }
}
