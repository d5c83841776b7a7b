//! The Iceberg connector's catalog access, per-worker data file writer, committer, and the
//! progress record kept in snapshot summaries.

use super::config::{CatalogKind, IcebergConfig};
use super::upsert::{load_index, write_position_deletes, RowDelta};
use crate::encode::arrow::RowBatcher;
use crate::connectors::lakehouse::small_files;
use crate::connectors::resumed_frontier;
use crate::envelope::{Emission, Format};
use crate::error::{Error, ErrorKind, Result};
use crate::key::Key;
use crate::connectors::lakehouse::{deletes, KeyIndex, RoundPlan, RowChange};
use crate::encode::arrow::{split_changes, upsert_keys, KeyEncoder};
use crate::schema::{Column, ColumnType, Schema};
use crate::settings::SinkSettings;
use arrow_array::RecordBatch;
use differential_sinks_operators::{
    resolve_resume, Change, Committer, CoordinatedWriter, Frontier, Prepared, SinkMetrics, SinkTime, SinkWriter,
    WorkerContext, WorkerProgress,
};
use iceberg::arrow::RecordBatchPartitionSplitter;
use iceberg::spec::{
    deserialize_data_file_from_json, serialize_data_file_to_json, DataFile, DataFileFormat, FormatVersion, NestedField,
    PartitionKey, PartitionSpecRef, PrimitiveType, SchemaRef as IcebergSchemaRef, Snapshot, Struct, StructType,
    TableMetadata, Type, UnboundPartitionSpec,
};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::{DataFileWriter, DataFileWriterBuilder};
use iceberg::writer::file_writer::location_generator::{DefaultFileNameGenerator, DefaultLocationGenerator};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::{CurrentFileStatus as _, IcebergWriter as _, IcebergWriterBuilder as _};
use iceberg::{Catalog, CatalogBuilder, NamespaceIdent, TableCreation, TableIdent};
use iceberg_catalog_sql::{SqlCatalog, SqlCatalogBuilder};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use tokio::runtime::Runtime;

/// The prefix of the snapshot-summary properties this sink writes (see the module docs).
pub const SUMMARY_PREFIX: &str = "dsink.";

pub(crate) fn iceberg_error(what: &str, table: &str, e: iceberg::Error) -> Error {
    let kind = match e.kind() {
        iceberg::ErrorKind::CatalogCommitConflicts => ErrorKind::Fenced,
        _ if e.retryable() => ErrorKind::Retriable,
        _ => ErrorKind::Fatal,
    };
    Error::new(kind, format!("Iceberg table `{table}`: {what}: {e}"))
}

pub(crate) fn runtime() -> Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the Iceberg sink's runtime", e))
}

/// Serialises catalog set-up (loading, creating the namespace and table) among the workers of
/// this process, so that one creates and the others load.
static CATALOG_SETUP: Mutex<()> = Mutex::new(());

/// A catalog and the runtime its connection pool lives on; the pool is closed inside that
/// runtime when this is dropped.
pub(crate) struct CatalogHandle {
    catalog: Option<SqlCatalog>,
    /// The catalog's database, for the swaps of the upserts' own commits (see `upsert`).
    uri: String,
    catalog_name: String,
    sql: std::sync::OnceLock<sqlx::SqlitePool>,
    runtime: Runtime,
}

impl CatalogHandle {
    /// Opens the catalog; `None` when its database does not exist and may not be created.
    pub(crate) fn open(config: &IcebergConfig, create: bool) -> Result<Option<Self>> {
        let CatalogKind::Sql { uri } = &config.catalog;
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
        let runtime = runtime()?;
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
            catalog: Some(catalog),
            uri,
            catalog_name: config.catalog_name.clone(),
            sql: std::sync::OnceLock::new(),
            runtime,
        }))
    }

    /// Loads the table.
    pub(crate) fn load(&self, id: &TableIdent, name: &str) -> Result<Table> {
        self.block_on(self.catalog().load_table(id)).map_err(|e| iceberg_error("loading", name, e))
    }

    /// Points the table at the metadata file `staged` if it still points at `current`, as the
    /// SQL catalog's own commits do (the JDBC catalog's row, compare-and-swap in one `UPDATE`);
    /// false when another commit came first.
    pub(crate) fn swap_metadata(&self, id: &TableIdent, current: &str, staged: &str) -> Result<bool> {
        // Manifests and the metadata file written, the pointer not yet swapped.
        crate::operators::crash_point("commit.mid");
        let name = format!("{}.{}", id.namespace().join("."), id.name());
        let sql_error =
            |e: sqlx::Error| Error::new(ErrorKind::Retriable, format!("Iceberg table `{name}`: the catalog: {e}"));
        let pool = match self.sql.get() {
            Some(p) => p,
            None => {
                let p = self.block_on(sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect(&self.uri));
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
                .bind(&self.catalog_name)
                .bind(id.name())
                .bind(id.namespace().join("."))
                .bind(current)
                .execute(pool),
            )
            .map_err(sql_error)?;
        Ok(done.rows_affected() == 1)
    }

    fn catalog(&self) -> &SqlCatalog {
        self.catalog.as_ref().expect("present until dropped")
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

fn sqlite_path(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("sqlite://").or_else(|| uri.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| path.to_string())
}

fn ident(config: &IcebergConfig) -> Result<TableIdent> {
    let ns = NamespaceIdent::from_vec(config.database.split('.').map(str::to_string).collect())
        .map_err(|e| iceberg_error("naming the namespace", &config.qualified(), e))?;
    Ok(TableIdent::new(ns, config.table.clone()))
}

/// The Iceberg type of a row schema column.
pub fn iceberg_type(column: &Column) -> Result<PrimitiveType> {
    Ok(match column.ty {
        ColumnType::Boolean => PrimitiveType::Boolean,
        ColumnType::Int32 => PrimitiveType::Int,
        ColumnType::Int64 => PrimitiveType::Long,
        ColumnType::Float32 => PrimitiveType::Float,
        ColumnType::Float64 => PrimitiveType::Double,
        ColumnType::Decimal { precision, scale } => {
            if precision == 0 || precision > 38 || scale > precision {
                return Err(Error::schema(format!(
                    "column `{}`: decimal({precision},{scale}) is not an Iceberg decimal (precision 1 to 38, scale \
                     at most the precision)",
                    column.name
                )));
            }
            PrimitiveType::Decimal { precision: precision.into(), scale: scale.into() }
        }
        ColumnType::String => PrimitiveType::String,
        ColumnType::Date => PrimitiveType::Date,
        ColumnType::Timestamp => PrimitiveType::Timestamp,
        ColumnType::Timestamptz => PrimitiveType::Timestamptz,
        ColumnType::Bytes | ColumnType::Json => {
            return Err(Error::schema(format!(
                "column `{}` is of type {}, which the iceberg sink does not write yet; declare it as string",
                column.name, column.ty
            )))
        }
    })
}

/// The row schema as an Iceberg schema, field ids `1..` in column order.
pub fn iceberg_schema(schema: &Schema) -> Result<iceberg::spec::Schema> {
    let fields = schema
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let ty = Type::Primitive(iceberg_type(c)?);
            let id = i as i32 + 1;
            let f = if c.nullable {
                NestedField::optional(id, &c.name, ty)
            } else {
                NestedField::required(id, &c.name, ty)
            };
            Ok(Arc::new(f))
        })
        .collect::<Result<Vec<_>>>()?;
    iceberg::spec::Schema::builder()
        .with_fields(fields)
        .build()
        .map_err(|e| Error::schema(format!("the row schema is not an Iceberg schema: {e}")))
}

/// The row schema of an Iceberg table's schema (top-level primitive columns only).
pub fn schema_from_iceberg(schema: &iceberg::spec::Schema, table: &str) -> Result<Schema> {
    let columns = schema
        .as_struct()
        .fields()
        .iter()
        .map(|f| {
            let ty = match &*f.field_type {
                Type::Primitive(p) => match p {
                    PrimitiveType::Boolean => Some(ColumnType::Boolean),
                    PrimitiveType::Int => Some(ColumnType::Int32),
                    PrimitiveType::Long => Some(ColumnType::Int64),
                    PrimitiveType::Float => Some(ColumnType::Float32),
                    PrimitiveType::Double => Some(ColumnType::Float64),
                    PrimitiveType::Decimal { precision, scale } => Some(ColumnType::Decimal {
                        precision: u8::try_from(*precision).unwrap_or(u8::MAX),
                        scale: u8::try_from(*scale).unwrap_or(u8::MAX),
                    }),
                    PrimitiveType::String => Some(ColumnType::String),
                    PrimitiveType::Date => Some(ColumnType::Date),
                    PrimitiveType::Timestamp => Some(ColumnType::Timestamp),
                    PrimitiveType::Timestamptz => Some(ColumnType::Timestamptz),
                    _ => None,
                },
                _ => None,
            };
            let ty = ty.ok_or_else(|| {
                Error::schema(format!(
                    "the Iceberg table `{table}`'s column `{}` has type {}, which the iceberg sink does not write",
                    f.name, f.field_type
                ))
            })?;
            Ok(Column { name: f.name.clone(), ty, nullable: !f.required })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Schema { columns })
}

/// Checks that an existing table's columns are the row schema's: the same names in the same
/// order, of the same types and nullability. Every difference is named in the error.
pub fn check_table_schema(table: &Schema, rows: &Schema, name: &str) -> Result<()> {
    let mut problems = Vec::new();
    let word = |n: bool| if n { "nullable" } else { "not nullable" };
    for r in &rows.columns {
        match table.columns.iter().find(|t| t.name == r.name) {
            None => problems.push(format!("column `{}` is not in the table", r.name)),
            Some(t) => {
                if t.ty != r.ty {
                    problems.push(format!("column `{}` is {} in the table but {} in the rows", r.name, t.ty, r.ty));
                }
                if t.nullable != r.nullable {
                    problems.push(format!(
                        "column `{}` is {} in the table but {} in the rows",
                        r.name,
                        word(t.nullable),
                        word(r.nullable)
                    ));
                }
            }
        }
    }
    for t in &table.columns {
        if !rows.columns.iter().any(|r| r.name == t.name) {
            problems.push(format!("the table's column `{}` is not in the rows", t.name));
        }
    }
    if problems.is_empty() && table.columns.iter().map(|c| &c.name).ne(rows.columns.iter().map(|c| &c.name)) {
        problems.push("the columns are in a different order".to_string());
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::schema(format!(
        "the Iceberg table `{name}` does not match the row schema: {}; fix the schema, or write to a new `table.name`",
        problems.join("; ")
    )))
}

/// What every writer and the committer need to know of the table.
#[derive(Clone)]
pub(crate) struct TablePlan {
    pub(crate) schema: IcebergSchemaRef,
    pub(crate) arrow: arrow_schema::SchemaRef,
    pub(crate) partition_type: StructType,
    pub(crate) spec: PartitionSpecRef,
    pub(crate) spec_id: i32,
    pub(crate) format_version: FormatVersion,
    pub(crate) table: Table,
}

impl TablePlan {
    fn of(table: Table, config: &IcebergConfig) -> Result<Self> {
        let name = config.qualified();
        let meta: &TableMetadata = table.metadata();
        let spec = meta.default_partition_spec();
        let schema = Arc::clone(meta.current_schema());
        if !config.partition_by.is_empty() {
            let has: Vec<(String, String)> = spec
                .fields()
                .iter()
                .map(|f| {
                    let col =
                        schema.field_by_id(f.source_id).map_or_else(|| f.source_id.to_string(), |c| c.name.clone());
                    (col, f.transform.to_string())
                })
                .collect();
            let want: Vec<(String, String)> =
                config.partition_by.iter().map(|t| (t.column.clone(), t.transform.to_string())).collect();
            if has != want {
                let show =
                    |v: &[(String, String)]| v.iter().map(|(c, t)| format!("{t}({c})")).collect::<Vec<_>>().join(", ");
                return Err(Error::config(format!(
                    "option `partition_by`: the Iceberg table `{name}` is partitioned by [{}], not [{}]; leave \
                     `partition_by` out to write the table's own partitioning, or name another table",
                    show(&has),
                    show(&want)
                )));
            }
        }
        let arrow = iceberg::arrow::schema_to_arrow_schema(&schema)
            .map_err(|e| iceberg_error("converting the schema to Arrow", &name, e))?;
        Ok(TablePlan {
            partition_type: meta.default_partition_type().clone(),
            spec: Arc::clone(spec),
            spec_id: spec.spec_id(),
            format_version: meta.format_version(),
            schema,
            arrow: Arc::new(arrow),
            table,
        })
    }
}

/// Checks `spec` against the table without changing anything, as sink creation must: the table
/// exists with the row schema, or may be created from it.
pub(crate) fn check_table(config: &IcebergConfig, spec: &SinkSettings) -> Result<()> {
    let _lock = CATALOG_SETUP.lock().unwrap_or_else(|p| p.into_inner());
    let declared = spec.schema().map(iceberg_schema).transpose()?;
    let table = match CatalogHandle::open(config, false)? {
        Some(h) => {
            let id = ident(config)?;
            let exists = h
                .block_on(h.catalog().table_exists(&id))
                .map_err(|e| iceberg_error("looking the table up", &config.qualified(), e))?;
            if exists {
                Some(
                    h.block_on(h.catalog().load_table(&id))
                        .map_err(|e| iceberg_error("loading", &config.qualified(), e))?,
                )
            } else {
                None
            }
        }
        None => None,
    };
    match table {
        Some(t) => check_existing(&t, spec, config).map(drop),
        None => {
            missing_table(config, declared.is_some())?;
            declared.as_ref().map(|schema| partition_spec(schema, config)).transpose().map(drop)
        }
    }
}

fn check_existing(table: &Table, spec: &SinkSettings, config: &IcebergConfig) -> Result<TablePlan> {
    let name = config.qualified();
    let existing = schema_from_iceberg(table.metadata().current_schema(), &name)?;
    if let Some(rows) = spec.schema() {
        check_table_schema(&existing, rows, &name)?;
    }
    TablePlan::of(table.clone(), config)
}

fn missing_table(config: &IcebergConfig, have_schema: bool) -> Result<()> {
    let name = config.qualified();
    if !have_schema {
        return Err(Error::config(format!(
            "there is no Iceberg table `{name}` in the catalog and no row schema to create one from: declare the \
             schema (SinkSpecBuilder::schema, or dsink --schema) with `create_table_if_not_exists = true`, or name \
             an existing table with `database.name` and `table.name`"
        )));
    }
    if !config.create_table_if_not_exists {
        return Err(Error::config(format!(
            "there is no Iceberg table `{name}` in the catalog: set `create_table_if_not_exists = true` to create it \
             from the row schema, or name an existing table with `database.name` and `table.name`"
        )));
    }
    Ok(())
}

/// The partition spec `partition_by` asks for, over `schema`.
fn partition_spec(schema: &iceberg::spec::Schema, config: &IcebergConfig) -> Result<Option<UnboundPartitionSpec>> {
    if config.partition_by.is_empty() {
        return Ok(None);
    }
    let mut b = UnboundPartitionSpec::builder();
    for term in &config.partition_by {
        let Some(field) = schema.field_by_name(&term.column) else {
            return Err(Error::config(format!(
                "option `partition_by`: `{}` is not a column of the row schema",
                term.column
            )));
        };
        b = b
            .add_partition_field(field.id, term.field_name(), term.transform)
            .map_err(|e| Error::config(format!("option `partition_by`: `{}({})`: {e}", term.transform, term.column)))?;
    }
    let spec = b.build();
    // Binding checks each transform against its column's type (no `day` of a string…).
    spec.clone().bind(Arc::new(schema.clone())).map_err(|e| Error::config(format!("option `partition_by`: {e}")))?;
    Ok(Some(spec))
}

/// Loads the table, creating its namespace and itself from the row schema if allowed.
fn load_or_create(h: &CatalogHandle, config: &IcebergConfig, spec: &SinkSettings) -> Result<TablePlan> {
    let name = config.qualified();
    let id = ident(config)?;
    let catalog = h.catalog();
    let exists = h.block_on(catalog.table_exists(&id)).map_err(|e| iceberg_error("looking the table up", &name, e))?;
    if exists {
        let table = h.block_on(catalog.load_table(&id)).map_err(|e| iceberg_error("loading", &name, e))?;
        return check_existing(&table, spec, config);
    }
    missing_table(config, spec.schema().is_some())?;
    let schema = iceberg_schema(spec.schema().expect("checked by missing_table"))?;
    let ns = id.namespace().clone();
    let has_ns =
        h.block_on(catalog.namespace_exists(&ns)).map_err(|e| iceberg_error("looking the namespace up", &name, e))?;
    // Workers of other processes may create the namespace or the table at the same moment (the
    // lock above serialises this process's workers only): a failed creation is followed by a
    // look-up, and only a missing result is an error.
    if !has_ns {
        if let Err(e) = h.block_on(catalog.create_namespace(&ns, HashMap::new())) {
            if !h.block_on(catalog.namespace_exists(&ns)).unwrap_or(false) {
                return Err(iceberg_error("creating the namespace", &name, e));
            }
        }
    }
    let creation = match partition_spec(&schema, config)? {
        Some(spec) => TableCreation::builder().name(config.table.clone()).schema(schema).partition_spec(spec).build(),
        None => TableCreation::builder().name(config.table.clone()).schema(schema).build(),
    };
    match h.block_on(catalog.create_table(&ns, creation)) {
        Ok(table) => {
            tracing::info!(table = %name, "created the Iceberg table");
            TablePlan::of(table, config)
        }
        Err(e) => match h.block_on(catalog.load_table(&id)) {
            Ok(table) => check_existing(&table, spec, config),
            Err(_) => Err(iceberg_error("creating the table", &name, e)),
        },
    }
}

/// One worker's data files for one prepare, as the committer receives them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IcebergFiles {
    /// The data files in Iceberg's JSON form of a manifest entry's data file.
    pub files: Vec<String>,
    /// Rows in them.
    pub rows: u64,
    /// Upserts: the paths of the data files the changes' rows are in.
    pub paths: Vec<String>,
    /// Upserts: every key's change, in the order the worker wrote them.
    pub changes: Vec<RowChange>,
}

/// What one commit records in its snapshot summary, under [`SUMMARY_PREFIX`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitRecord {
    /// The sink (`dsink.sink`).
    pub sink: String,
    /// The frontier before this commit (`dsink.from`).
    pub from: Frontier<u64>,
    /// The frontier every worker reached with it (`dsink.to`).
    pub to: Frontier<u64>,
    /// Each worker's frontier (`dsink.frontiers`, comma-separated).
    pub frontiers: Vec<Frontier<u64>>,
    /// The worker count (`dsink.peers`).
    pub peers: usize,
    /// The generation (`dsink.generation`).
    pub generation: u64,
    /// The frontier the generation started from (`dsink.base`).
    pub base: Frontier<u64>,
    /// Data files added (`dsink.files`).
    pub files: usize,
    /// Rows added (`dsink.rows`).
    pub rows: u64,
    /// Data files added below the small-file size (`dsink.small-files`; absent in snapshots of
    /// older versions: 0).
    pub small_files: u64,
}

/// A frontier as summary text: the time, or `complete` once the input has ended.
pub fn frontier_text(f: &Frontier<u64>) -> String {
    match f.time() {
        Some(t) => t.to_string(),
        None => "complete".to_string(),
    }
}

/// The frontier a summary text records.
pub fn parse_frontier(s: &str) -> Result<Frontier<u64>> {
    if s == "complete" {
        return Ok(Frontier::complete());
    }
    s.parse::<u64>()
        .map(Frontier::at)
        .map_err(|_| Error::new(ErrorKind::Resume, format!("`{s}` is not a frontier this sink wrote")))
}

impl CommitRecord {
    /// The summary properties.
    pub fn properties(&self) -> HashMap<String, String> {
        let p = |k: &str| format!("{SUMMARY_PREFIX}{k}");
        HashMap::from([
            (p("sink"), self.sink.clone()),
            (p("from"), frontier_text(&self.from)),
            (p("to"), frontier_text(&self.to)),
            (p("frontiers"), self.frontiers.iter().map(frontier_text).collect::<Vec<_>>().join(",")),
            (p("peers"), self.peers.to_string()),
            (p("generation"), self.generation.to_string()),
            (p("base"), frontier_text(&self.base)),
            (p("files"), self.files.to_string()),
            (p("rows"), self.rows.to_string()),
            (p("small-files"), self.small_files.to_string()),
        ])
    }

    /// Reads a record back from summary properties; `Ok(None)` if they are not `sink`'s.
    pub fn parse(props: &HashMap<String, String>, sink: &str) -> Result<Option<Self>> {
        if props.get(&format!("{SUMMARY_PREFIX}sink")).map(String::as_str) != Some(sink) {
            return Ok(None);
        }
        let get = |k: &str| {
            props.get(&format!("{SUMMARY_PREFIX}{k}")).ok_or_else(|| {
                Error::new(ErrorKind::Resume, format!("a snapshot of sink `{sink}` lacks `{SUMMARY_PREFIX}{k}`"))
            })
        };
        let num = |k: &str| {
            get(k)?.parse::<u64>().map_err(|_| {
                Error::new(ErrorKind::Resume, format!("a snapshot of sink `{sink}` has a bad `{SUMMARY_PREFIX}{k}`"))
            })
        };
        let frontiers = get("frontiers")?.split(',').map(parse_frontier).collect::<Result<Vec<_>>>()?;
        let peers = num("peers")? as usize;
        if frontiers.len() != peers {
            return Err(Error::new(
                ErrorKind::Resume,
                format!("a snapshot of sink `{sink}` records {} frontiers for {peers} workers", frontiers.len()),
            ));
        }
        Ok(Some(CommitRecord {
            sink: sink.to_string(),
            from: parse_frontier(get("from")?)?,
            to: parse_frontier(get("to")?)?,
            frontiers,
            peers,
            generation: num("generation")?,
            base: parse_frontier(get("base")?)?,
            files: num("files")? as usize,
            rows: num("rows")?,
            small_files: if props.contains_key(&format!("{SUMMARY_PREFIX}small-files")) {
                num("small-files")?
            } else {
                0
            },
        }))
    }

    fn progress(&self) -> Vec<WorkerProgress<u64>> {
        (self.frontiers.iter().enumerate())
            .map(|(worker, f)| WorkerProgress {
                worker,
                peers: self.peers,
                generation: self.generation,
                base: self.base,
                frontier: *f,
            })
            .collect()
    }
}

/// The latest commit of `sink` on the table's current branch, walking back from the current
/// snapshot through its ancestors, with the snapshot's id.
///
/// Every commit also sets the table property [`progress_property`] to the frontier it reached,
/// in the same metadata swap. Properties outlive snapshots: a table that has the property but no
/// snapshot of the sink on its branch had them expired or rolled back, and the sink cannot tell
/// what was delivered — that is a resume error, never a silent start from the beginning.
pub(crate) fn latest_commit(meta: &TableMetadata, sink: &str) -> Result<Option<(i64, CommitRecord)>> {
    let mut next: Option<&Arc<Snapshot>> = meta.current_snapshot();
    while let Some(s) = next {
        if let Some(r) = CommitRecord::parse(&s.summary().additional_properties, sink)? {
            return Ok(Some((s.snapshot_id(), r)));
        }
        next = s.parent_snapshot_id().and_then(|id| meta.snapshot_by_id(id));
    }
    let key = progress_property(sink);
    if let Some(to) = meta.properties().get(&key) {
        return Err(Error::new(
            ErrorKind::Resume,
            format!(
                "sink `{sink}` committed to this table up to frontier `{to}` (table property `{key}`), but none of \
                 its snapshots is on the current branch any more: they were expired or the table was rolled back, \
                 so what was delivered is unknown; write to a new `sink.name` or table, or remove the property to \
                 deliver everything again"
            ),
        ));
    }
    Ok(None)
}

/// The table property in which every commit of `sink` records the frontier it reached.
pub fn progress_property(sink: &str) -> String {
    format!("{SUMMARY_PREFIX}progress.{sink}")
}

/// The table property naming the data files' compression (Iceberg's default: zstd).
pub const COMPRESSION_PROPERTY: &str = "write.parquet.compression-codec";

/// Parquet writer settings for the table's compression codec. iceberg-rust 0.10's
/// `from_table_properties` does not map the codec yet, and parquet-rs would write uncompressed.
fn parquet_properties(codec: &str, table: &str) -> Result<WriterProperties> {
    let compression = match codec.to_ascii_lowercase().as_str() {
        "zstd" => Compression::ZSTD(Default::default()),
        "snappy" => Compression::SNAPPY,
        "gzip" => Compression::GZIP(Default::default()),
        "lz4" => Compression::LZ4_RAW,
        "uncompressed" | "none" => Compression::UNCOMPRESSED,
        other => {
            return Err(Error::config(format!(
                "the Iceberg table `{table}` sets `{COMPRESSION_PROPERTY}` = `{other}`, which the iceberg sink does \
                 not write; use zstd, snappy, gzip, lz4 or uncompressed"
            )))
        }
    };
    Ok(WriterProperties::builder().set_compression(compression).build())
}

type FileWriter = DataFileWriter<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;
type FileWriterBuilder =
    DataFileWriterBuilder<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

/// One worker's writer: rows to Arrow batches to Parquet data files under the table's `data/`.
pub struct IcebergWriter<V> {
    runtime: Runtime,
    name: String,
    format: Format,
    batcher: RowBatcher,
    plan: TablePlan,
    builder: FileWriterBuilder,
    /// The open data file writer of each partition (`Struct::empty()` when unpartitioned).
    writers: HashMap<Struct, FileWriter>,
    /// Splits batches by partition (`None` when the table is unpartitioned).
    splitter: Option<RecordBatchPartitionSplitter>,
    progress: Vec<WorkerProgress<u64>>,
    files: Vec<String>,
    rows: u64,
    /// Upserts: the primary key's encoder, and the changes since the last prepare.
    keys: Option<KeyEncoder>,
    paths: Vec<String>,
    changes: Vec<RowChange>,
    metrics: Arc<SinkMetrics>,
    _row: PhantomData<fn(&V)>,
}

impl<V: Serialize + 'static> IcebergWriter<V> {
    /// Opens the catalog, loads (or creates) the table and reads the sink's progress.
    pub(crate) fn open(config: &IcebergConfig, spec: &SinkSettings) -> Result<(Self, TablePlan)> {
        let (plan, progress) = {
            let _lock = CATALOG_SETUP.lock().unwrap_or_else(|p| p.into_inner());
            let Some(h) = CatalogHandle::open(config, config.create_table_if_not_exists)? else {
                // No catalog database, and not allowed to create one: the table is missing.
                missing_table(config, spec.schema().is_some())?;
                return Err(Error::config(format!(
                    "there is no Iceberg table `{}` in the catalog",
                    config.qualified()
                )));
            };
            let plan = load_or_create(&h, config, spec)?;
            let progress = latest_commit(plan.table.metadata(), spec.name())?.map(|(_, r)| r.progress());
            (plan, progress.unwrap_or_default())
        };
        let name = config.qualified();
        let meta = plan.table.metadata();
        let codec = meta.properties().get(COMPRESSION_PROPERTY).map(String::as_str).unwrap_or("zstd");
        let parquet = ParquetWriterBuilder::new(parquet_properties(codec, &name)?, Arc::clone(&plan.schema));
        let location =
            DefaultLocationGenerator::new(meta).map_err(|e| iceberg_error("locating the data files", &name, e))?;
        let names =
            DefaultFileNameGenerator::new(format!("dsink-{}", uuid::Uuid::new_v4()), None, DataFileFormat::Parquet);
        let rolling = RollingFileWriterBuilder::new(
            parquet,
            config.target_file_size,
            plan.table.file_io().clone(),
            location,
            names,
        );
        let keys = upsert_keys(spec, &plan.arrow, &name)?;
        let splitter = if plan.spec.is_unpartitioned() {
            None
        } else {
            Some(
                RecordBatchPartitionSplitter::try_new_with_computed_values(
                    Arc::clone(&plan.schema),
                    Arc::clone(&plan.spec),
                )
                .map_err(|e| iceberg_error("partitioning rows", &name, e))?,
            )
        };
        let w = IcebergWriter {
            runtime: runtime()?,
            name,
            format: spec.format().clone(),
            batcher: RowBatcher::new(Arc::clone(&plan.arrow))?,
            plan: plan.clone(),
            builder: DataFileWriterBuilder::new(rolling),
            writers: HashMap::new(),
            splitter,
            progress,
            files: Vec::new(),
            rows: 0,
            keys,
            paths: Vec::new(),
            changes: Vec::new(),
            metrics: Arc::clone(spec.metrics()),
            _row: PhantomData,
        };
        Ok((w, plan))
    }

    /// Writes a batch into its partitions' current data files (opening them as needed); returns
    /// each partition's part of the batch, with its file's path and the part's first row
    /// position in it.
    fn write_batch(&mut self, batch: RecordBatch) -> Result<Vec<(RecordBatch, String, u64)>> {
        let parts: Vec<(Option<PartitionKey>, RecordBatch)> = match &self.splitter {
            None => vec![(None, batch)],
            Some(splitter) => splitter
                .split(&batch)
                .map_err(|e| iceberg_error("partitioning rows", &self.name, e))?
                .into_iter()
                .map(|(key, part)| (Some(key), part))
                .collect(),
        };
        let mut out = Vec::with_capacity(parts.len());
        for (key, part) in parts {
            let data = key.as_ref().map_or_else(Struct::empty, |k| k.data().clone());
            let w = match self.writers.entry(data) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(
                    self.runtime
                        .block_on(self.builder.build(key))
                        .map_err(|e| iceberg_error("opening a data file writer", &self.name, e))?,
                ),
            };
            let n = part.num_rows() as u64;
            self.runtime
                .block_on(w.write(part.clone()))
                .map_err(|e| iceberg_error("encoding Parquet", &self.name, e))?;
            // The rolling writer writes a batch whole into one file, after rolling if it had to.
            out.push((part, w.current_file_path(), w.current_row_num() as u64 - n));
        }
        Ok(out)
    }

    /// Upserts: the new rows go into the data files like appends; every key's change is kept,
    /// with its row's place, for the committer to turn into position deletes.
    fn write_upserts(&mut self, changes: &[Change<Key, V>]) -> Result<()> {
        let (rows, gone) = split_changes(changes);
        let keys = self.keys.as_ref().expect("upsert mode");
        self.changes.extend(deletes(&mut self.batcher, keys, &gone)?);
        SinkMetrics::add(&self.metrics.records_out, gone.len() as u64);
        let n = rows.len() as u64;
        let Some(batch) = self.batcher.batch(&rows)? else { return Ok(()) };
        for (part, path, first) in self.write_batch(batch)? {
            let keys = self.keys.as_ref().expect("upsert mode");
            let encoded = keys.encode_batch(&part)?;
            let file = match self.paths.iter().rposition(|p| *p == path) {
                Some(i) => i,
                None => {
                    self.paths.push(path);
                    self.paths.len() - 1
                }
            } as u32;
            for (i, key) in encoded.into_iter().enumerate() {
                self.changes.push(RowChange::Upsert { key, file, pos: first + i as u64 });
            }
        }
        self.rows += n;
        SinkMetrics::add(&self.metrics.records_out, n);
        Ok(())
    }

    /// Closes the open data files and keeps them, serialised, for the next prepare.
    fn close_files(&mut self) -> Result<()> {
        let mut files = Vec::new();
        for (_, mut w) in self.writers.drain() {
            files.extend(
                self.runtime.block_on(w.close()).map_err(|e| iceberg_error("writing a data file", &self.name, e))?,
            );
        }
        for f in files {
            SinkMetrics::add(&self.metrics.bytes_out, f.file_size_in_bytes());
            let json = serialize_data_file_to_json(f, &self.plan.partition_type, self.plan.format_version)
                .map_err(|e| iceberg_error("recording a data file", &self.name, e))?;
            self.files.push(json);
        }
        Ok(())
    }
}

impl<V: Serialize + 'static, T: SinkTime> SinkWriter<Key, V, T> for IcebergWriter<V> {
    type Error = Error;

    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<T>> {
        let point = resolve_resume(&self.progress, ctx)?;
        resumed_frontier(point.frontier)
    }

    fn write(&mut self, _time: &T, changes: &mut Vec<Change<Key, V>>) -> Result<()> {
        if self.keys.is_some() {
            return self.write_upserts(changes);
        }
        let mut rows: Vec<&V> = Vec::with_capacity(changes.len());
        for change in changes.iter() {
            self.format.emit(change, |e| {
                if let Emission::Row { row, .. } = e {
                    rows.push(row);
                }
            })?;
        }
        let n = rows.len() as u64;
        let Some(batch) = self.batcher.batch(&rows)? else { return Ok(()) };
        self.write_batch(batch)?;
        self.rows += n;
        SinkMetrics::add(&self.metrics.records_out, n);
        Ok(())
    }

    fn commit(&mut self, _upper: &Frontier<T>) -> Result<()> {
        Err(Error::config("the iceberg connector commits for all workers at once; it cannot commit one worker"))
    }
}

impl<V: Serialize + 'static, T: SinkTime> CoordinatedWriter<Key, V, T> for IcebergWriter<V> {
    type Prepared = IcebergFiles;

    fn prepare(&mut self, _upper: &Frontier<T>) -> Result<IcebergFiles> {
        self.close_files()?;
        Ok(IcebergFiles {
            files: std::mem::take(&mut self.files),
            rows: std::mem::take(&mut self.rows),
            paths: std::mem::take(&mut self.paths),
            changes: std::mem::take(&mut self.changes),
        })
    }
}

/// The committer on worker 0: one fast-append snapshot per round, holding every worker's data
/// files, its summary recording every worker's frontier.
pub struct IcebergCommitter {
    config: IcebergConfig,
    sink: String,
    plan: TablePlan,
    catalog: Option<CatalogHandle>,
    peers: usize,
    generation: u64,
    base: Frontier<u64>,
    committed: Frontier<u64>,
    /// The snapshot of this sink's latest commit, as this committer knows it.
    last: Option<i64>,
    /// Upserts: the primary key's encoder, and where each key's row is (read at resume).
    keys: Option<KeyEncoder>,
    index: Option<KeyIndex<Struct>>,
    metrics: Arc<SinkMetrics>,
}

impl IcebergCommitter {
    pub(crate) fn open(config: &IcebergConfig, spec: &SinkSettings, plan: TablePlan) -> Result<Self> {
        let keys = upsert_keys(spec, &plan.arrow, &config.qualified())?;
        Ok(IcebergCommitter {
            config: config.clone(),
            sink: spec.name().to_string(),
            plan,
            catalog: None,
            peers: 0,
            generation: 0,
            base: Frontier::minimum(),
            committed: Frontier::minimum(),
            last: None,
            keys,
            index: None,
            metrics: Arc::clone(spec.metrics()),
        })
    }

    /// Upserts: one snapshot with every worker's data files and a position-delete file for
    /// the rows the round's changes replace or delete; the index follows once it is committed.
    fn commit_row_delta(&mut self, data: Vec<DataFile>, plan: RoundPlan<Struct>, record: CommitRecord) -> Result<()> {
        let name = self.name();
        let upper = record.to;
        let h = self.handle()?;
        let table = h.load(&ident(&self.config)?, &name)?;
        let mut deletes = Vec::new();
        let codec = table.metadata().properties().get(COMPRESSION_PROPERTY).map(String::as_str).unwrap_or("zstd");
        for (partition, positions) in &plan.deletes {
            let props = parquet_properties(codec, &name)?;
            deletes.push(h.block_on(write_position_deletes(&table, partition, positions, props, &name))?);
        }
        let delta = RowDelta {
            data,
            deletes,
            summary: record.properties(),
            properties: HashMap::from([(progress_property(&self.sink), frontier_text(&upper))]),
        };
        let (sink, expected) = (self.sink.clone(), self.last);
        let committed = delta.commit(h, &ident(&self.config)?, &name, |t| {
            let now = latest_commit(t.metadata(), &sink)?.map(|(id, _)| id);
            if now != expected {
                return Err(Error::new(
                    ErrorKind::Fenced,
                    format!(
                        "Iceberg table `{name}`: another run of sink `{sink}` committed snapshot {now:?} since this \
                         run resumed; stop one of them"
                    ),
                ));
            }
            Ok(())
        })?;
        let (id, _) = latest_commit(committed.metadata(), &self.sink)?.ok_or_else(|| {
            Error::new(ErrorKind::Fatal, format!("Iceberg table `{}`: the commit left no snapshot", self.name()))
        })?;
        tracing::debug!(sink = %self.sink, snapshot = id, upper = ?upper, deletes = plan.delete_count(), "committed upserts to Iceberg");
        self.index.as_mut().expect("upsert mode").apply(plan);
        self.last = Some(id);
        SinkMetrics::add(&self.metrics.files_committed, record.files as u64);
        SinkMetrics::add(&self.metrics.small_files, record.small_files);
        self.committed = upper;
        Ok(())
    }

    fn name(&self) -> String {
        self.config.qualified()
    }

    fn handle(&self) -> Result<&CatalogHandle> {
        self.catalog.as_ref().ok_or_else(|| Error::config("the iceberg committer was used before resume"))
    }

    fn load(&self) -> Result<Table> {
        let h = self.handle()?;
        let id = ident(&self.config)?;
        h.block_on(h.catalog().load_table(&id)).map_err(|e| iceberg_error("loading", &self.name(), e))
    }
}

impl<T: SinkTime> Committer<IcebergFiles, T> for IcebergCommitter {
    type Error = Error;

    fn resume(&mut self, peers: usize) -> Result<Vec<Frontier<T>>> {
        let h = CatalogHandle::open(&self.config, false)?
            .ok_or_else(|| Error::config(format!("the catalog of Iceberg table `{}` disappeared", self.name())))?;
        self.catalog = Some(h);
        let table = self.load()?;
        let latest = latest_commit(table.metadata(), &self.sink)?;
        if let Some(keys) = &self.keys {
            let h = self.handle()?;
            self.index = Some(h.block_on(load_index(&table, keys, &self.name()))?);
        }
        self.peers = peers;
        let records = latest.as_ref().map(|(_, r)| r.progress()).unwrap_or_default();
        self.last = latest.as_ref().map(|(id, _)| *id);
        let point = resolve_resume(&records, WorkerContext { index: 0, peers })?;
        self.generation = point.generation;
        self.base = point.base;
        let Some((_, record)) = latest else { return Ok(Vec::new()) };
        let frontiers: Vec<Frontier<u64>> = if record.peers == peers && point.generation == record.generation {
            record.frontiers.clone()
        } else {
            vec![point.frontier; peers]
        };
        self.committed = frontiers.iter().min().copied().unwrap_or_else(Frontier::minimum);
        frontiers.into_iter().map(resumed_frontier).collect()
    }

    fn commit(&mut self, prepared: Vec<Prepared<IcebergFiles, T>>, frontiers: &[Frontier<T>]) -> Result<()> {
        let frontiers: Vec<Frontier<u64>> = frontiers.iter().map(Frontier::to_u64_frontier).collect();
        let upper = frontiers.iter().min().copied().unwrap_or_else(Frontier::minimum);
        let rows: u64 = prepared.iter().map(|p| p.token.rows).sum();
        let name = self.name();
        let files = prepared
            .iter()
            .flat_map(|p| &p.token.files)
            .map(|json| {
                deserialize_data_file_from_json(json, self.plan.spec_id, &self.plan.partition_type, &self.plan.schema)
                    .map_err(|e| iceberg_error("reading a worker's data file record", &name, e))
            })
            .collect::<Result<Vec<_>>>()?;
        let plan = self.index.as_ref().map(|index| {
            let partitions: HashMap<&str, &Struct> = files.iter().map(|f| (f.file_path(), f.partition())).collect();
            index.plan(prepared.iter().map(|p| (p.token.paths.as_slice(), p.token.changes.as_slice())), |path| {
                partitions.get(path).map_or_else(Struct::empty, |s| (*s).clone())
            })
        });
        drop(prepared);
        let deletes = plan.as_ref().map_or(0, |p| p.delete_count());
        if files.is_empty() && deletes == 0 {
            // Nothing to add: the rounds had no rows. A snapshot per frontier advance would only
            // grow the metadata; a restart replays these times and writes nothing for them.
            return Ok(());
        }
        let record = CommitRecord {
            sink: self.sink.clone(),
            from: self.committed,
            to: upper,
            frontiers,
            peers: self.peers,
            generation: self.generation,
            base: self.base,
            files: files.len(),
            rows,
            small_files: small_files(files.iter().map(|f| f.file_size_in_bytes()), self.config.target_file_size),
        };
        let (committed_files, committed_small) = (record.files as u64, record.small_files);
        if let Some(plan) = plan {
            return self.commit_row_delta(files, plan, record);
        }
        let table = self.load()?;
        let tx = Transaction::new(&table);
        let append = tx
            .fast_append()
            // The files have fresh UUID names; checking every manifest of the table for them
            // would make each commit slower than the last.
            .with_check_duplicate(false)
            .add_data_files(files)
            .set_snapshot_properties(record.properties());
        // In the same metadata swap: the progress outlives the snapshot (see `latest_commit`).
        let progress = tx.update_table_properties().set(progress_property(&self.sink), frontier_text(&upper));
        let h = self.handle()?;
        let fenced =
            FencedCatalog { inner: h.catalog(), sink: &self.sink, expected: self.last, found: Mutex::new(None) };
        let committed = append
            .apply(tx)
            .and_then(|tx| progress.apply(tx))
            .map_err(|e| iceberg_error("preparing the snapshot", &name, e))
            .and_then(|tx| h.block_on(tx.commit(&fenced)).map_err(|e| iceberg_error("committing", &name, e)));
        if let Some(now) = *fenced.found.lock().unwrap_or_else(|p| p.into_inner()) {
            return Err(Error::new(
                ErrorKind::Fenced,
                format!(
                    "Iceberg table `{name}`: another run of sink `{}` committed snapshot {now:?} since this run \
                     resumed; stop one of them",
                    self.sink
                ),
            ));
        }
        let committed = committed?;
        let (id, _) = latest_commit(committed.metadata(), &self.sink)?.ok_or_else(|| {
            Error::new(ErrorKind::Fatal, format!("Iceberg table `{name}`: the commit left no snapshot"))
        })?;
        tracing::debug!(sink = %self.sink, snapshot = id, upper = ?upper, "committed to Iceberg");
        self.last = Some(id);
        SinkMetrics::add(&self.metrics.files_committed, committed_files);
        SinkMetrics::add(&self.metrics.small_files, committed_small);
        self.committed = upper;
        Ok(())
    }
}

/// The catalog as the committer's transaction sees it: every load of the table — the one a
/// commit attempt starts from, and those of its retries — first checks that the sink's latest
/// snapshot is still the one this run made last. The catalog's compare-and-swap of the metadata
/// location then guarantees nothing else committed between that load and the swap, so a second
/// run of the sink can never append the same times again.
#[derive(Debug)]
struct FencedCatalog<'a> {
    inner: &'a SqlCatalog,
    sink: &'a str,
    expected: Option<i64>,
    /// The sink's snapshot found instead of the expected one.
    found: Mutex<Option<Option<i64>>>,
}

#[async_trait::async_trait]
impl Catalog for FencedCatalog<'_> {
    async fn list_namespaces(&self, parent: Option<&NamespaceIdent>) -> iceberg::Result<Vec<NamespaceIdent>> {
        self.inner.list_namespaces(parent).await
    }
    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<iceberg::Namespace> {
        self.inner.create_namespace(namespace, properties).await
    }
    async fn get_namespace(&self, namespace: &NamespaceIdent) -> iceberg::Result<iceberg::Namespace> {
        self.inner.get_namespace(namespace).await
    }
    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> iceberg::Result<bool> {
        self.inner.namespace_exists(namespace).await
    }
    async fn update_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<()> {
        self.inner.update_namespace(namespace, properties).await
    }
    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> iceberg::Result<()> {
        self.inner.drop_namespace(namespace).await
    }
    async fn list_tables(&self, namespace: &NamespaceIdent) -> iceberg::Result<Vec<TableIdent>> {
        self.inner.list_tables(namespace).await
    }
    async fn create_table(&self, namespace: &NamespaceIdent, creation: TableCreation) -> iceberg::Result<Table> {
        self.inner.create_table(namespace, creation).await
    }
    async fn load_table(&self, table: &TableIdent) -> iceberg::Result<Table> {
        let t = self.inner.load_table(table).await?;
        let now = latest_commit(t.metadata(), self.sink)
            .map_err(|e| iceberg::Error::new(iceberg::ErrorKind::DataInvalid, e.to_string()))?
            .map(|(id, _)| id);
        if now != self.expected {
            *self.found.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
            // Not retryable: the transaction gives up at once.
            return Err(iceberg::Error::new(
                iceberg::ErrorKind::DataInvalid,
                format!("another run of sink `{}` committed to the table", self.sink),
            ));
        }
        Ok(t)
    }
    async fn drop_table(&self, table: &TableIdent) -> iceberg::Result<()> {
        self.inner.drop_table(table).await
    }
    async fn purge_table(&self, table: &TableIdent) -> iceberg::Result<()> {
        self.inner.purge_table(table).await
    }
    async fn table_exists(&self, table: &TableIdent) -> iceberg::Result<bool> {
        self.inner.table_exists(table).await
    }
    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> iceberg::Result<()> {
        self.inner.rename_table(src, dest).await
    }
    async fn register_table(&self, table: &TableIdent, metadata_location: String) -> iceberg::Result<Table> {
        self.inner.register_table(table, metadata_location).await
    }
    async fn update_table(&self, commit: iceberg::TableCommit) -> iceberg::Result<Table> {
        // Manifests written, the metadata pointer not yet swapped.
        crate::operators::crash_point("commit.mid");
        self.inner.update_table(commit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> CommitRecord {
        CommitRecord {
            sink: "s".into(),
            from: Frontier::at(3),
            to: Frontier::complete(),
            frontiers: vec![Frontier::complete(), Frontier::at(9)],
            peers: 2,
            generation: 1,
            base: Frontier::at(2),
            files: 4,
            rows: 10,
            small_files: 1,
        }
    }

    #[test]
    fn a_commit_record_reads_back_from_its_summary() {
        let props = record().properties();
        assert_eq!(props["dsink.to"], "complete");
        assert_eq!(props["dsink.frontiers"], "complete,9");
        assert_eq!(CommitRecord::parse(&props, "s").unwrap(), Some(record()));
        assert_eq!(CommitRecord::parse(&props, "other").unwrap(), None);
        let progress = record().progress();
        assert_eq!(progress[1].frontier, Frontier::at(9));
        assert_eq!((progress[1].peers, progress[1].generation, progress[1].base), (2, 1, Frontier::at(2)));
    }

    #[test]
    fn a_damaged_commit_record_is_a_resume_error() {
        for (key, value) in [("dsink.frontiers", "complete"), ("dsink.to", "soon"), ("dsink.peers", "-1")] {
            let mut props = record().properties();
            props.insert(key.into(), value.into());
            let e = CommitRecord::parse(&props, "s").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Resume, "{key}: {e}");
        }
        let mut props = record().properties();
        props.remove("dsink.base");
        assert!(CommitRecord::parse(&props, "s").unwrap_err().to_string().contains("dsink.base"));
    }

    #[test]
    fn row_schemas_map_to_iceberg_and_back() {
        let rows: Schema = "id:int64!,n:int32,f:float32,d:float64!,p:decimal(38,10),s:string,b:boolean,day:date,\
                            at:timestamp,utc:timestamptz!"
            .parse()
            .unwrap();
        let ice = iceberg_schema(&rows).unwrap();
        let ids: Vec<i32> = ice.as_struct().fields().iter().map(|f| f.id).collect();
        assert_eq!(ids, (1..=10).collect::<Vec<_>>());
        assert_eq!(schema_from_iceberg(&ice, "t").unwrap(), rows);
        check_table_schema(&rows, &rows, "t").unwrap();
        for bad in ["j:json", "b:bytes"] {
            let e = iceberg_schema(&bad.parse().unwrap()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Schema, "{bad}: {e}");
        }
        // A schema built in code is not checked by the parser.
        let wide = Column { name: "p".into(), ty: ColumnType::Decimal { precision: 39, scale: 2 }, nullable: true };
        let e = iceberg_schema(&Schema { columns: vec![wide] }).unwrap_err();
        assert!(e.to_string().contains("decimal(39,2)"), "{e}");
    }

    #[test]
    fn schema_mismatches_are_named() {
        let table: Schema = "id:int64!,name:string".parse().unwrap();
        let rows: Schema = "id:int32!,name:string!,extra:boolean".parse().unwrap();
        let e = check_table_schema(&table, &rows, "db.t").unwrap_err().to_string();
        assert!(e.contains("column `id` is int64 in the table but int32"), "{e}");
        assert!(e.contains("column `name` is nullable in the table but not nullable"), "{e}");
        assert!(e.contains("column `extra` is not in the table"), "{e}");
        let swapped: Schema = "name:string,id:int64!".parse().unwrap();
        let e = check_table_schema(&table, &swapped, "db.t").unwrap_err().to_string();
        assert!(e.contains("different order"), "{e}");
    }

    #[test]
    fn codecs_are_named_by_the_table_property() {
        assert_eq!(
            parquet_properties("ZSTD", "t").unwrap().compression(&parquet::schema::types::ColumnPath::from("id")),
            Compression::ZSTD(Default::default())
        );
        assert_eq!(
            parquet_properties("snappy", "t").unwrap().compression(&parquet::schema::types::ColumnPath::from("id")),
            Compression::SNAPPY
        );
        let e = parquet_properties("brotli9", "t").unwrap_err();
        assert!(e.to_string().contains(COMPRESSION_PROPERTY), "{e}");
    }

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(sqlite_path("sqlite:/a/b.db").as_deref(), Some("/a/b.db"));
        assert_eq!(sqlite_path("sqlite:///a/b.db?mode=rwc").as_deref(), Some("/a/b.db"));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
    }
}
