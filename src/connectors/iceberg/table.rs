//! What the sink knows of its Iceberg table ([`TablePlan`]: schema, Arrow schema, partition
//! spec) and the checks at sink creation: the table exists with the row schema and the asked
//! partitioning, or may be created from them. Also the table's Parquet settings.

use super::catalog::{iceberg_error, ident, CatalogHandle, CATALOG_SETUP};
use super::config::IcebergConfig;
use super::schema::{check_table_schema, iceberg_schema, schema_from_iceberg};
use crate::encode::arrow::ArrowTable;
use crate::error::{Error, Result};
use crate::settings::SinkSettings;
use iceberg::spec::{
    FormatVersion, PartitionSpecRef, SchemaRef as IcebergSchemaRef, StructType, TableMetadata, UnboundPartitionSpec,
};
use iceberg::table::Table;
use iceberg::TableCreation;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::collections::HashMap;
use std::sync::Arc;

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
    /// What the encoder needs of the table: its Arrow schema.
    pub(crate) fn arrow_table(&self, config: &IcebergConfig) -> ArrowTable {
        ArrowTable { schema: Arc::clone(&self.arrow), name: config.qualified() }
    }

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

/// Opens the catalog and loads the table, creating it (and its namespace) from the row schema if
/// the sink may: what a worker opening its writer does.
pub(crate) fn open_table(config: &IcebergConfig, spec: &SinkSettings) -> Result<TablePlan> {
    let _lock = CATALOG_SETUP.lock().unwrap_or_else(|p| p.into_inner());
    let Some(h) = CatalogHandle::open(config, config.create_table_if_not_exists)? else {
        // No catalog database, and not allowed to create one: the table is missing.
        missing_table(config, spec.schema().is_some())?;
        return Err(Error::config(format!("there is no Iceberg table `{}` in the catalog", config.qualified())));
    };
    load_or_create(&h, config, spec)
}

/// The table property naming the data files' compression (Iceberg's default: zstd).
pub const COMPRESSION_PROPERTY: &str = "write.parquet.compression-codec";

/// Parquet writer settings for the table's compression codec (named here, since iceberg-rust's
/// `from_table_properties` leaves it out and parquet-rs would write uncompressed).
pub(crate) fn parquet_properties(codec: &str, table: &str) -> Result<WriterProperties> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
