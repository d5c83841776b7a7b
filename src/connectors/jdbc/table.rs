//! What the database says about the target table ([`TableInfo`]: its columns, their types and
//! its primary key), and the creation-time rules the sink's settings must meet against it:
//! RisingWave's primary-key rules and the compatibility of the declared schema with the columns.
//!
//! The rules are pure: a [`Session`](super::session::Session) reads the description, these
//! functions judge it. Each refusal is a `Config` or `Schema` error naming the sink, the table,
//! the columns and the fix.

use super::config::{Dialect, JdbcConfig};
use crate::envelope::Format;
use crate::error::{Error, Result};
use crate::schema::ColumnType;
use crate::settings::SinkSettings;

/// How the writer renders values for a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColKind {
    /// boolean / tinyint(1).
    Bool,
    /// Integer types.
    Int,
    /// Floating point types.
    Float,
    /// numeric / decimal.
    Numeric,
    /// Character types (and anything else that takes text).
    Text,
    /// bytea / blob / binary.
    Bytes,
    /// date.
    Date,
    /// timestamp / datetime without zone.
    Timestamp,
    /// timestamp with zone (MySQL's `timestamp`).
    Timestamptz,
    /// json / jsonb (MariaDB: a text column checked by `json_valid`).
    Json,
    /// Any other type: values are passed as text for the server to parse.
    Other,
}

/// One column of the target table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableColumn {
    /// The name.
    pub name: String,
    /// The type as the database spells it (e.g. `numeric(38,10)`, `varchar(20)`).
    pub sql_type: String,
    /// The type without modifiers, for casts (PostgreSQL: `numeric`, `character varying`).
    pub cast_type: String,
    /// How values are rendered.
    pub kind: ColKind,
    /// May be null.
    pub nullable: bool,
    /// Has a default.
    pub has_default: bool,
    /// Computed by the database; never written.
    pub generated: bool,
}

/// The target table as the catalog describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableInfo {
    /// `schema.table`.
    pub qualified: String,
    /// The columns in table order.
    pub columns: Vec<TableColumn>,
    /// The primary key columns (empty: none).
    pub primary_key: Vec<String>,
}

impl TableInfo {
    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&TableColumn> {
        self.columns.iter().find(|c| c.name == name)
    }
    fn names(&self) -> String {
        self.columns.iter().map(|c| format!("{} {}", c.name, c.sql_type)).collect::<Vec<_>>().join(", ")
    }
}

/// Maps a PostgreSQL type name (`pg_type.typname`) to its rendering.
pub fn pg_kind(typname: &str) -> ColKind {
    match typname {
        "bool" => ColKind::Bool,
        "int2" | "int4" | "int8" | "oid" => ColKind::Int,
        "float4" | "float8" => ColKind::Float,
        "numeric" | "money" => ColKind::Numeric,
        "text" | "varchar" | "bpchar" | "name" | "citext" | "char" => ColKind::Text,
        "bytea" => ColKind::Bytes,
        "date" => ColKind::Date,
        "timestamp" => ColKind::Timestamp,
        "timestamptz" => ColKind::Timestamptz,
        "json" | "jsonb" => ColKind::Json,
        _ => ColKind::Other,
    }
}

/// Maps a MySQL `DATA_TYPE` / `COLUMN_TYPE` to its rendering.
pub fn mysql_kind(data_type: &str, column_type: &str, json_checked: bool) -> ColKind {
    if json_checked {
        return ColKind::Json;
    }
    match data_type {
        "tinyint" if column_type.starts_with("tinyint(1)") => ColKind::Bool,
        "bit" if column_type == "bit(1)" => ColKind::Bool,
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => ColKind::Int,
        "float" | "double" | "real" => ColKind::Float,
        "decimal" | "numeric" => ColKind::Numeric,
        "char" | "varchar" | "text" | "tinytext" | "mediumtext" | "longtext" | "enum" | "set" => ColKind::Text,
        "binary" | "varbinary" | "blob" | "tinyblob" | "mediumblob" | "longblob" => ColKind::Bytes,
        "date" => ColKind::Date,
        "datetime" => ColKind::Timestamp,
        "timestamp" => ColKind::Timestamptz,
        "json" => ColKind::Json,
        _ => ColKind::Other,
    }
}

/// True when values of schema type `ty` can be written to a column of kind `kind`.
fn compatible(ty: ColumnType, kind: ColKind) -> bool {
    use ColKind as K;
    match ty {
        ColumnType::Boolean => matches!(kind, K::Bool | K::Int | K::Other),
        ColumnType::Int32 | ColumnType::Int64 => {
            matches!(kind, K::Int | K::Numeric | K::Float | K::Other)
        }
        ColumnType::Float32 | ColumnType::Float64 => {
            matches!(kind, K::Float | K::Numeric | K::Other)
        }
        ColumnType::Decimal { .. } => matches!(kind, K::Numeric | K::Float | K::Other),
        ColumnType::String => matches!(kind, K::Text | K::Other | K::Json),
        ColumnType::Bytes => matches!(kind, K::Bytes | K::Other),
        ColumnType::Date => matches!(kind, K::Date | K::Timestamp | K::Timestamptz | K::Other),
        ColumnType::Timestamp | ColumnType::Timestamptz => {
            matches!(kind, K::Timestamp | K::Timestamptz | K::Other)
        }
        ColumnType::Json => matches!(kind, K::Json | K::Text | K::Other),
    }
}

/// The columns the sink writes, in order: the declared schema's, or every non-generated column.
pub fn written_columns(spec: &SinkSettings, table: &TableInfo) -> Vec<TableColumn> {
    match spec.schema() {
        Some(schema) => schema.columns.iter().filter_map(|c| table.column(&c.name).cloned()).collect(),
        None => table.columns.iter().filter(|c| !c.generated).cloned().collect(),
    }
}

fn same_set(a: &[String], b: &[String]) -> bool {
    let mut a: Vec<&String> = a.iter().collect();
    let mut b: Vec<&String> = b.iter().collect();
    a.sort();
    b.sort();
    a == b
}

/// The rules that need no table: the sink deletes and upserts by the table's key columns, so a
/// keyed sink must name them (`primary_key`) rather than key rows by a function.
pub(crate) fn check_settings(spec: &SinkSettings) -> Result<()> {
    if spec.key_by_function && spec.format().is_keyed() {
        return Err(Error::config(format!(
            "sink `{}`: the jdbc sink deletes and upserts by the table's key columns: declare them with \
             `primary_key` instead of a key function",
            spec.name()
        )));
    }
    Ok(())
}

/// Applies the creation-time rules to `spec` writing into `table`:
///
/// * RisingWave's primary-key rules: an upsert sink must declare `primary_key` and it must be the
///   table's primary key; a table without a primary key takes only append-only sinks;
/// * the Debezium format has no meaning for a table;
/// * a declared schema's columns must exist with compatible types, and every column the rows do
///   not carry must be nullable, have a default or be generated.
pub fn check(config: &JdbcConfig, spec: &SinkSettings, table: &TableInfo) -> Result<()> {
    let t = &table.qualified;
    let quoted_pk = table.primary_key.join(",");
    match spec.format() {
        Format::Debezium { .. } => {
            return Err(Error::config(format!(
                "sink `{}`: `type = debezium` does not apply to table {t}: use `type = upsert` (rows keyed by the \
                 table's primary key) or `type = append-only`",
                spec.name()
            )))
        }
        Format::Upsert => {
            if table.primary_key.is_empty() {
                return Err(Error::schema(format!(
                    "sink `{}`: table {t} has no primary key, so it cannot take an upsert sink: add one \
                     (ALTER TABLE {t} ADD PRIMARY KEY (...)) or use `type = append-only`",
                    spec.name()
                )));
            }
            let Some(pk) = spec.primary_key() else {
                return Err(Error::config(format!(
                    "sink `{}`: `type = upsert` into table {t} needs `primary_key`, and it must be the table's \
                     primary key: set `primary_key = '{quoted_pk}'`",
                    spec.name()
                )));
            };
            if !same_set(pk, &table.primary_key) {
                return Err(Error::schema(format!(
                    "sink `{}`: `primary_key = '{}'` differs from the primary key of table {t} ({quoted_pk}); \
                     set `primary_key = '{quoted_pk}'`, or change the table's key",
                    spec.name(),
                    pk.join(",")
                )));
            }
        }
        Format::AppendOnly { .. } => {}
    }
    if let Some(schema) = spec.schema() {
        for c in &schema.columns {
            let Some(tc) = table.column(&c.name) else {
                return Err(Error::schema(format!(
                    "sink `{}`: the rows have column `{}`, which table {t} does not have (it has {}); \
                     add the column to the table or remove it from the schema",
                    spec.name(),
                    c.name,
                    table.names()
                )));
            };
            if tc.generated {
                return Err(Error::schema(format!(
                    "sink `{}`: column `{}` of table {t} is generated by the database and cannot be written; \
                     remove it from the schema",
                    spec.name(),
                    c.name
                )));
            }
            if !compatible(c.ty, tc.kind) {
                return Err(Error::schema(format!(
                    "sink `{}`: column `{}` is {} in the rows but {} in table {t}; change the column's type \
                     or the schema's",
                    spec.name(),
                    c.name,
                    c.ty,
                    tc.sql_type
                )));
            }
        }
        for tc in &table.columns {
            if schema.column(&tc.name).is_none() && !tc.nullable && !tc.has_default && !tc.generated {
                return Err(Error::schema(format!(
                    "sink `{}`: column `{}` of table {t} is NOT NULL without a default, but the rows do not carry \
                     it (their columns: {}); add it to the rows or give the column a default",
                    spec.name(),
                    tc.name,
                    schema.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
        }
    }
    if let Some(pk) = spec.primary_key() {
        for c in pk {
            if table.column(c).is_none() {
                return Err(Error::schema(format!(
                    "sink `{}`: `primary_key` column `{c}` is not a column of table {t} (it has {}); fix the name",
                    spec.name(),
                    table.names()
                )));
            }
        }
    }
    if spec.format().is_keyed() && written_columns(spec, table).len() < table.primary_key.len() {
        return Err(Error::schema(format!(
            "sink `{}`: the rows do not carry every primary key column of table {t} ({quoted_pk})",
            spec.name()
        )));
    }
    let _ = config;
    Ok(())
}

/// Quotes an identifier for `dialect`.
pub fn quote(dialect: Dialect, ident: &str) -> String {
    match dialect {
        Dialect::Postgres => format!("\"{}\"", ident.replace('"', "\"\"")),
        Dialect::Mysql => format!("`{}`", ident.replace('`', "``")),
    }
}
