//! What the sink knows of its Delta table ([`TablePlan`]: its Delta schema and partition
//! columns) and the checks at sink creation: the table exists with the row schema, or may be
//! created from it. Also how the table is reached (its URL and storage options) and how
//! delta-rs' errors become the sink's.

use super::schema::{check_table_schema, delta_schema, schema_from_delta};
use super::DeltaLakeConfig;
use crate::connectors::lakehouse::StorageLocation;
use crate::encode::arrow::ArrowTable;
use crate::envelope::Format;
use crate::error::{Error, ErrorKind, Result};
use crate::settings::SinkSettings;
use deltalake::kernel::transaction::TransactionError;
use deltalake::kernel::StructType;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError, TableProperty};

/// A delta-rs error as the sink's: storage failures are `Retriable`, a commit conflict (another
/// run of the sink committed first) `Fenced`, anything else `Fatal`; the message names the table.
pub(crate) fn delta_error(what: &str, location: &str, e: DeltaTableError) -> Error {
    let kind = match &e {
        DeltaTableError::ObjectStore { .. } | DeltaTableError::Io { .. } => ErrorKind::Retriable,
        // Another writer committed what this commit depends on: for this sink, another run of it.
        DeltaTableError::Transaction { source: TransactionError::CommitConflict(_) } => ErrorKind::Fenced,
        _ => ErrorKind::Fatal,
    };
    Error::new(kind, format!("Delta table `{location}`: {what}: {e}"))
}

/// A builder for the table at `config`'s location, with its storage options.
pub(crate) fn table_builder(config: &DeltaLakeConfig) -> Result<DeltaTableBuilder> {
    let location = config.location.display();
    let builder = DeltaTableBuilder::from_url(config.table_url()?).map_err(|e| delta_error("opening", &location, e))?;
    let options = config.storage_options();
    Ok(if options.is_empty() { builder } else { builder.with_storage_options(options) })
}

/// The table at `config`'s location, loaded; `None` if there is none yet.
pub(crate) async fn load_table(config: &DeltaLakeConfig) -> Result<Option<DeltaTable>> {
    let location = config.location.display();
    if let Some(dir) = config.location.local() {
        if !dir.join("_delta_log").is_dir() {
            return Ok(None);
        }
    }
    match table_builder(config)?.load().await {
        Ok(t) => Ok(Some(t)),
        Err(DeltaTableError::NotATable(_)) => Ok(None),
        Err(e) => Err(storage_error(config, delta_error("loading", &location, e))),
    }
}

/// An object store failure on S3 says which options decide where the sink connects and as whom
/// (a commit conflict is not about them).
pub(crate) fn storage_error(config: &DeltaLakeConfig, e: Error) -> Error {
    match &config.location {
        StorageLocation::S3 { options, .. } if e.kind() != ErrorKind::Fenced => {
            let endpoint = options.endpoint.as_deref().unwrap_or("AWS");
            let message = format!(
                "{e} (check `location`'s bucket, `s3.endpoint` = `{endpoint}`, `s3.region` = `{}` and the \
                 credentials `s3.access.key` / `s3.secret.key`)",
                options.region
            );
            Error::new(e.kind(), message)
        }
        _ => e,
    }
}

/// What the sink writes: the table's Delta schema (declared, or the table's own) and its
/// partition columns.
#[derive(Clone)]
pub(crate) struct TablePlan {
    pub(crate) delta: StructType,
    pub(crate) partition_columns: Vec<String>,
    /// The sink upserts (a table it creates gets deletion vectors).
    pub(crate) upsert: bool,
}

impl TablePlan {
    /// What the encoder needs of the table: its Arrow schema as delta-rs writes it.
    pub(crate) fn arrow_table(&self, config: &DeltaLakeConfig) -> Result<ArrowTable> {
        Ok(ArrowTable { schema: super::schema::arrow_schema(&self.delta)?, name: config.location.display() })
    }
}

/// Checks `spec` against the table (existing or to be created), as sink creation must.
pub(crate) async fn plan_table(config: &DeltaLakeConfig, spec: &SinkSettings) -> Result<TablePlan> {
    let location = config.location.display();
    let declared = spec.schema().map(delta_schema).transpose()?;
    match load_table(config).await? {
        Some(table) => {
            let snapshot = table.snapshot().map_err(|e| delta_error("reading the snapshot", &location, e))?;
            let existing: StructType = snapshot.schema().as_ref().clone();
            let partition_columns = snapshot.metadata().partition_columns().to_vec();
            match declared {
                Some(rows) => check_table_schema(&existing, &rows, &location)?,
                // Without a declared schema the table's own is the row schema; check it is writable.
                None => drop(schema_from_delta(&existing)?),
            }
            let upsert = matches!(spec.format(), Format::Upsert);
            if upsert && !partition_columns.is_empty() {
                return Err(Error::config(format!(
                    "option `type` = `upsert`: the Delta table at `{location}` is partitioned by {partition_columns:?}; \
                     the deltalake sink upserts into unpartitioned tables only"
                )));
            }
            Ok(TablePlan { delta: existing, partition_columns, upsert })
        }
        None => {
            let Some(delta) = declared else {
                return Err(Error::config(format!(
                    "there is no Delta table at `location` = `{location}` and no row schema to create one from: \
                     declare the schema (SinkSpecBuilder::schema, or dsink --schema) with \
                     `create_table_if_not_exists = true`, or point `location` at an existing table"
                )));
            };
            if !config.create_table_if_not_exists {
                return Err(Error::config(format!(
                    "there is no Delta table at `location` = `{location}`: set `create_table_if_not_exists = true` to \
                     create it from the row schema, or point `location` at an existing table"
                )));
            }
            Ok(TablePlan { delta, partition_columns: Vec::new(), upsert: matches!(spec.format(), Format::Upsert) })
        }
    }
}

/// Loads the table, creating it from the row schema if the sink was told to.
pub(crate) async fn open_or_create(config: &DeltaLakeConfig, plan: &TablePlan, sink: &str) -> Result<DeltaTable> {
    let location = config.location.display();
    if let Some(t) = load_table(config).await? {
        let snapshot = t.snapshot().map_err(|e| delta_error("reading the snapshot", &location, e))?;
        check_table_schema(snapshot.schema().as_ref(), &plan.delta, &location)?;
        return Ok(t);
    }
    if !config.create_table_if_not_exists {
        return Err(Error::config(format!(
            "the Delta table at `location` = `{location}` disappeared; set `create_table_if_not_exists = true` or \
             restore it"
        )));
    }
    if let Some(dir) = config.location.local() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {location}"), e))?;
    }
    table_builder(config)?
        .build()
        .map_err(|e| delta_error("opening", &location, e))?
        .create()
        .with_columns(plan.delta.fields().cloned())
        .with_table_name(sink)
        .with_save_mode(SaveMode::Ignore)
        // Upserts delete rows with deletion vectors.
        .with_configuration_property(TableProperty::EnableDeletionVectors, plan.upsert.then_some("true"))
        .await
        .map_err(|e| storage_error(config, delta_error("creating the table", &location, e)))
}
