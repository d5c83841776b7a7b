//! The Iceberg connector's catalog: a SQL catalog in SQLite (Iceberg's JDBC catalog tables) or a
//! REST catalog server (see `rest`), opened on a runtime of its own, and the compare-and-swap of
//! a table's metadata pointer that every commit ends with (the SQL catalog's conditional
//! `UPDATE`, or the REST commit's requirements).
//!
//! Workers of one process open the table one at a time ([`CATALOG_SETUP`]) so that one creates
//! it and the others load it. The handle closes its connection pool inside its own runtime when
//! dropped.

use super::config::{CatalogKind, IcebergConfig, RestOptions};
use super::rest_commit::RestCommits;
use crate::error::{Error, ErrorKind, Result};
use iceberg::spec::{TableMetadataBuildResult, MAIN_BRANCH};
use iceberg::table::Table;
use iceberg::{Catalog, CatalogBuilder, MetadataLocation, NamespaceIdent, TableIdent, TableRequirement};
use iceberg_catalog_rest::RestCatalogBuilder;
use iceberg_catalog_sql::SqlCatalogBuilder;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;
use tokio::runtime::Runtime;

/// An iceberg-rust error as the sink's: a lost commit race is `Fenced`, a retryable one
/// `Retriable`, anything else `Fatal`; the message names the table.
pub(crate) fn iceberg_error(what: &str, table: &str, e: iceberg::Error) -> Error {
    let kind = match e.kind() {
        iceberg::ErrorKind::CatalogCommitConflicts => ErrorKind::Fenced,
        _ if e.retryable() => ErrorKind::Retriable,
        _ => ErrorKind::Fatal,
    };
    Error::new(kind, format!("Iceberg table `{table}`: {what}: {e}"))
}

/// Serialises catalog set-up (loading, creating the namespace and table) among the workers of
/// this process, so that one creates and the others load.
pub(crate) static CATALOG_SETUP: Mutex<()> = Mutex::new(());

/// A catalog and the runtime its connection pool lives on; the pool is closed inside that
/// runtime when this is dropped.
pub(crate) struct CatalogHandle {
    catalog: Option<Box<dyn Catalog>>,
    /// The SQL catalog's database URL and catalog name, for the swaps of the upserts' own
    /// commits (see `position_deletes`); `None` for a REST catalog.
    sql_row: Option<(String, String)>,
    /// A REST catalog's commits of the upserts' row deltas.
    rest: Option<RestCommits>,
    sql: std::sync::OnceLock<sqlx::SqlitePool>,
    runtime: Runtime,
}

impl CatalogHandle {
    /// Opens the catalog; `None` when its database does not exist and may not be created.
    pub(crate) fn open(config: &IcebergConfig, create: bool) -> Result<Option<Self>> {
        let uri = match &config.catalog {
            CatalogKind::Sql { uri } => uri,
            CatalogKind::Rest(rest) => return Self::open_rest(config, rest).map(Some),
        };
        let path = sqlite_path(uri);
        if !create && !path.as_ref().is_some_and(|p| std::path::Path::new(p).exists()) {
            return Ok(None);
        }
        if let Some(parent) = path.as_ref().and_then(|p| std::path::Path::new(p).parent()) {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| Error::io(format!("creating the catalog's directory {}", parent.display()), e))?;
            }
        }
        let uri = if uri.contains('?') { format!("{uri}&mode=rwc") } else { format!("{uri}?mode=rwc") };
        let runtime = crate::delivery::runtime::current_thread("the Iceberg sink")?;
        let mut props = HashMap::from([
            (iceberg_catalog_sql::SQL_CATALOG_PROP_URI.to_string(), uri.clone()),
            (iceberg_catalog_sql::SQL_CATALOG_PROP_WAREHOUSE.to_string(), config.warehouse_url()?),
            (iceberg_catalog_sql::SQL_CATALOG_PROP_BIND_STYLE.to_string(), "QMark".to_string()),
            // One connection: SQLite serialises writers anyway, and a pool of idle connections
            // would outlive the calls that drive this runtime.
            ("pool.max-connections".to_string(), "1".to_string()),
        ]);
        props.extend(super::storage::props(config));
        let catalog = runtime
            .block_on(
                SqlCatalogBuilder::default()
                    .with_storage_factory(super::storage::factory(config)?)
                    .load(&config.catalog_name, props),
            )
            .map_err(|e| iceberg_error("opening the SQL catalog", &config.qualified(), e))?;
        Ok(Some(CatalogHandle {
            catalog: Some(Box::new(catalog)),
            sql_row: Some((uri, config.catalog_name.clone())),
            rest: None,
            sql: std::sync::OnceLock::new(),
            runtime,
        }))
    }

    /// Opens a REST catalog and asks it whether the table's namespace exists, so that an
    /// unreachable server or a refused credential is an error now, naming the options.
    fn open_rest(config: &IcebergConfig, rest: &RestOptions) -> Result<Self> {
        let name = config.qualified();
        let runtime = crate::delivery::runtime::current_thread("the Iceberg sink")?;
        let warehouse = config.warehouse_url()?;
        let mut props = rest.props(warehouse.clone());
        props.extend(super::storage::props(config));
        let builder = RestCatalogBuilder::default().with_storage_factory(super::storage::factory(config)?);
        // Inside the runtime: the client takes the current runtime's handle when built.
        let catalog = runtime
            .block_on(async { builder.load(&config.catalog_name, props).await })
            .map_err(|e| rest.explain(&name, e))?;
        let ns = ident(config)?.namespace().clone();
        runtime.block_on(catalog.namespace_exists(&ns)).map_err(|e| rest.explain(&name, e))?;
        Ok(CatalogHandle {
            catalog: Some(Box::new(catalog)),
            sql_row: None,
            rest: Some(RestCommits::new(rest, warehouse)?),
            sql: std::sync::OnceLock::new(),
            runtime,
        })
    }

    /// Loads the table.
    pub(crate) fn load(&self, id: &TableIdent, name: &str) -> Result<Table> {
        self.block_on(self.catalog().load_table(id)).map_err(|e| iceberg_error("loading", name, e))
    }

    /// Commits `staged`, built on `table` as loaded, if the table is still as loaded; false when
    /// another commit came first. On a SQL catalog: writes the new metadata file and swaps the
    /// table's row to it; on a REST catalog: sends the changes with the table's UUID and `main`'s
    /// snapshot as requirements.
    pub(crate) fn commit_staged(
        &self,
        id: &TableIdent,
        table: &Table,
        staged: TableMetadataBuildResult,
        name: &str,
    ) -> Result<bool> {
        let meta = table.metadata();
        if let Some(rest) = &self.rest {
            crate::operators::crash_point("commit.mid");
            let requirements = vec![
                TableRequirement::UuidMatch { uuid: meta.uuid() },
                TableRequirement::RefSnapshotIdMatch {
                    r#ref: MAIN_BRANCH.to_string(),
                    snapshot_id: meta.current_snapshot_id(),
                },
            ];
            return self.block_on(rest.commit(id, requirements, staged.changes, name));
        }
        let err = |what: &'static str| move |e: iceberg::Error| iceberg_error(what, name, e);
        let current = table.metadata_location_result().map_err(err("locating the metadata"))?.to_string();
        let location = MetadataLocation::from_str(&current)
            .map_err(err("reading the metadata location"))?
            .with_next_version()
            .with_new_metadata(&staged.metadata);
        self.block_on(staged.metadata.write_to(table.file_io(), &location)).map_err(err("writing the new metadata"))?;
        self.swap_metadata(id, &current, &location.to_string())
    }

    /// Points the table at the metadata file `staged` if it still points at `current`, as the
    /// SQL catalog's own commits do (the JDBC catalog's row, compare-and-swap in one `UPDATE`);
    /// false when another commit came first.
    fn swap_metadata(&self, id: &TableIdent, current: &str, staged: &str) -> Result<bool> {
        // Manifests and the metadata file written, the pointer not yet swapped.
        crate::operators::crash_point("commit.mid");
        let name = format!("{}.{}", id.namespace().join("."), id.name());
        let Some((uri, catalog_name)) = &self.sql_row else {
            return Err(Error::new(
                ErrorKind::Fatal,
                format!("Iceberg table `{name}`: a metadata swap was asked of a catalog without a SQL database"),
            ));
        };
        let sql_error =
            |e: sqlx::Error| Error::new(ErrorKind::Retriable, format!("Iceberg table `{name}`: the catalog: {e}"));
        let pool = match self.sql.get() {
            Some(p) => p,
            None => {
                let p = self.block_on(sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect(uri));
                let _ = self.sql.set(p.map_err(sql_error)?);
                self.sql.get().expect("set above")
            }
        };
        let done = self
            .block_on(
                sqlx::query(
                    "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? \
                     WHERE catalog_name = ? AND table_name = ? AND table_namespace = ? \
                     AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL) AND metadata_location = ?",
                )
                .bind(staged)
                .bind(current)
                .bind(catalog_name)
                .bind(id.name())
                .bind(id.namespace().join("."))
                .bind(current)
                .execute(pool),
            )
            .map_err(sql_error)?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) fn catalog(&self) -> &dyn Catalog {
        self.catalog.as_deref().expect("present until dropped")
    }

    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }
}

impl Drop for CatalogHandle {
    fn drop(&mut self) {
        if let Some(pool) = self.sql.take() {
            self.runtime.block_on(pool.close());
        }
        let _guard = self.runtime.enter();
        drop(self.catalog.take());
    }
}

/// The file of a `sqlite:` URI; `None` for an in-memory database.
fn sqlite_path(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("sqlite://").or_else(|| uri.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| path.to_string())
}

/// The table's identifier in the catalog (`database.name` split at dots, `table.name`).
pub(crate) fn ident(config: &IcebergConfig) -> Result<TableIdent> {
    let ns = NamespaceIdent::from_vec(config.database.split('.').map(str::to_string).collect())
        .map_err(|e| iceberg_error("naming the namespace", &config.qualified(), e))?;
    Ok(TableIdent::new(ns, config.table.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(sqlite_path("sqlite:/a/b.db").as_deref(), Some("/a/b.db"));
        assert_eq!(sqlite_path("sqlite:///a/b.db?mode=rwc").as_deref(), Some("/a/b.db"));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
    }
}
