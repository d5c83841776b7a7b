//! Options of the memory connector: `memory.name` (default `default`).

use super::MemoryTarget;
use crate::error::Result;
use crate::options::Options;
use std::sync::Arc;

/// Which in-memory target to write to.
#[derive(Clone, Debug)]
pub struct MemoryConfig {
    target: Arc<MemoryTarget>,
}

impl MemoryConfig {
    /// Writes to `target`.
    pub fn new(target: Arc<MemoryTarget>) -> Self {
        MemoryConfig { target }
    }
    pub(crate) fn parse(opts: &mut Options) -> Result<Self> {
        let name = opts.take("memory.name").unwrap_or_else(|| "default".into());
        Ok(MemoryConfig { target: MemoryTarget::named(&name) })
    }
    /// The target.
    pub fn target(&self) -> &Arc<MemoryTarget> {
        &self.target
    }
}

impl From<Arc<MemoryTarget>> for crate::connectors::ConnectorConfig {
    fn from(t: Arc<MemoryTarget>) -> Self {
        crate::connectors::ConnectorConfig::Memory(MemoryConfig::new(t))
    }
}
