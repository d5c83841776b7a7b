//! The target index of an Elasticsearch / OpenSearch sink, and the creation-time checks of the
//! settings against the sink's: one index or an index column, a format documents can hold, and
//! index / routing columns that the rows have.

use super::config::ElasticsearchConfig;
use crate::envelope::Format;
use crate::error::{Error, Result};
use crate::settings::SinkSettings;

/// Checks the settings against the sink's, at creation.
pub(crate) fn check(cfg: &ElasticsearchConfig, spec: &SinkSettings) -> Result<()> {
    match (&cfg.index, &cfg.index_column) {
        (Some(i), None) if !i.is_empty() => {}
        (None, Some(_)) => {}
        (Some(_), Some(_)) => {
            return Err(Error::config("set either `index` or `index_column` for the elasticsearch sink, not both"))
        }
        _ => {
            return Err(Error::config(
                "the elasticsearch sink needs `index` (one index for every document) or `index_column` \
                 (a column naming each row's index)",
            ))
        }
    }
    if matches!(spec.format(), Format::Debezium { .. }) {
        return Err(Error::config(
            "`type = debezium` is not supported by the elasticsearch sink: documents hold rows; use \
             `type = upsert` (document id = primary key) or `type = append-only`",
        ));
    }
    if let Some(schema) = spec.schema() {
        for (opt, col) in [("index_column", &cfg.index_column), ("routing_column", &cfg.routing_column)] {
            if let Some(c) = col {
                if schema.column(c).is_none() {
                    return Err(Error::schema(format!("option `{opt}` = `{c}` is not a column of the rows")));
                }
            }
        }
    }
    if cfg.progress_index.is_empty() {
        return Err(Error::config("option `progress_index` is empty"));
    }
    Ok(())
}
