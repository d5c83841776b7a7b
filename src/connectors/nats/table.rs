//! What the NATS connector checks against the sink at creation: a key-suffixed subject needs a
//! key. (The data stream itself is checked when a worker connects: it must exist, or be created,
//! with a duplicate window.)

use super::config::NatsConfig;
use crate::error::{Error, Result};
use crate::settings::SinkSettings;

impl NatsConfig {
    /// Checks the options against the sink's settings, at creation.
    pub(crate) fn check_sink(&self, spec: &SinkSettings) -> Result<()> {
        if self.key_suffix && spec.primary_key().is_none() && !spec.key_by_function {
            return Err(Error::config("option `subject.key_suffix = true` needs a key: set `primary_key`"));
        }
        self.check()
    }
}
