//! The Doris table as the sink addresses it: the hidden delete column of unique-key tables, and
//! the creation-time checks of the sink's settings against what a Doris table can take.
//!
//! Doris says nothing the sink reads back about its table before a load (the Stream Load answer
//! reports rows it refused), so the checks here are those the settings alone decide.

use super::config::DorisConfig;
use crate::envelope::Format;
use crate::error::{Error, Result};
use crate::settings::SinkSettings;

/// The hidden column that marks deletes in unique-key tables.
pub const DELETE_SIGN: &str = "__DORIS_DELETE_SIGN__";

/// Checks the sink's settings against the Doris table, at creation.
pub(crate) fn check(cfg: &DorisConfig, spec: &SinkSettings) -> Result<()> {
    if matches!(spec.format(), Format::Debezium { .. }) {
        return Err(Error::config(
            "`type = debezium` is not supported by the doris sink: use `type = upsert` (onto a unique-key table) \
             or `type = append-only`",
        ));
    }
    if cfg.partial_update && !spec.format().is_keyed() {
        return Err(Error::config("option `doris.partial_update` (RisingWave: `doris.partial_column`) needs `type = upsert` onto a unique-key table"));
    }
    Ok(())
}
