//! The Cassandra table as `system_schema.columns` describes it, and the creation-time checks of
//! the sink's settings against it: `primary_key` is exactly the table's partition key and
//! clustering columns, every declared column exists, and the format is one a table can hold.

use super::config::CassandraConfig;
use super::session::{connect, cql_err};
use crate::delivery::runtime;
use crate::envelope::Format;
use crate::error::{Error, Result};
use crate::settings::SinkSettings;
use scylla::client::session::Session;

/// A column of the target table, from `system_schema.columns`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CqlColumn {
    /// The name.
    pub name: String,
    /// `partition_key`, `clustering` or `regular` (or `static`).
    pub kind: String,
    /// The position within the partition key or clustering columns.
    pub position: i32,
    /// The CQL type, e.g. `bigint`.
    pub ty: String,
}

/// Checks the spec against the table's columns, at creation: the primary key must be exactly
/// the table's (partition key and clustering columns), declared columns must exist.
pub fn check_table(spec: &SinkSettings, keyspace: &str, table: &str, columns: &[CqlColumn]) -> Result<()> {
    let t = format!("{keyspace}.{table}");
    if columns.is_empty() {
        return Err(Error::schema(format!(
            "Cassandra table `{t}` does not exist; create it first, or fix `cassandra.keyspace` / `cassandra.table`"
        )));
    }
    if matches!(spec.format(), Format::Debezium { .. }) {
        return Err(Error::config(
            "`type = debezium` is not supported by the cassandra sink: use `type = upsert` or `type = append-only`",
        ));
    }
    let mut key: Vec<&CqlColumn> =
        columns.iter().filter(|c| c.kind == "partition_key" || c.kind == "clustering").collect();
    key.sort_by_key(|c| (c.kind != "partition_key", c.position));
    let key_names: Vec<&str> = key.iter().map(|c| c.name.as_str()).collect();
    let pk = spec.primary_key().ok_or_else(|| {
        Error::config(format!(
            "the cassandra sink needs `primary_key` = the primary key of `{t}`: set `primary_key = '{}'`",
            key_names.join(",")
        ))
    })?;
    let same = pk.len() == key_names.len() && pk.iter().all(|k| key_names.contains(&k.as_str()));
    if !same {
        return Err(Error::schema(format!(
            "`primary_key` ({}) does not match the primary key of Cassandra table `{t}` ({}); declare `primary_key = '{}'`",
            pk.join(", "),
            key_names.join(", "),
            key_names.join(",")
        )));
    }
    if let Some(schema) = spec.schema() {
        for c in &schema.columns {
            if !columns.iter().any(|tc| tc.name == c.name) {
                return Err(Error::schema(format!(
                    "the rows have column `{}`, which Cassandra table `{t}` lacks (its columns: {}); \
                     ALTER TABLE {t} ADD {} <type>, or drop it from the rows",
                    c.name,
                    columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "),
                    c.name
                )));
            }
        }
    }
    Ok(())
}

/// Reads the table's columns from `system_schema.columns` (none if the table does not exist).
pub(crate) async fn table_columns(s: &Session, cfg: &CassandraConfig) -> Result<Vec<CqlColumn>> {
    columns_of(s, &cfg.keyspace, &cfg.table).await
}

/// Reads the columns of `keyspace.table` from `system_schema.columns` (none if it does not exist).
pub(crate) async fn columns_of(s: &Session, keyspace: &str, table: &str) -> Result<Vec<CqlColumn>> {
    let r = s
        .query_unpaged(
            "SELECT column_name, kind, position, type FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?",
            (keyspace, table),
        )
        .await
        .map_err(|e| cql_err("reading system_schema.columns", e))?;
    let rows = r.into_rows_result().map_err(|e| cql_err("reading system_schema.columns", e))?;
    let mut out = Vec::new();
    for row in rows.rows::<(String, String, i32, String)>().map_err(|e| cql_err("reading system_schema.columns", e))? {
        let (name, kind, position, ty) = row.map_err(|e| cql_err("reading system_schema.columns", e))?;
        out.push(CqlColumn { name, kind, position, ty });
    }
    Ok(out)
}

/// Checks the table at creation.
pub(crate) fn validate(cfg: &CassandraConfig, spec: &SinkSettings) -> Result<()> {
    let rt = runtime::current_thread("the Cassandra table check")?;
    let cols = rt.block_on(async {
        let s = connect(cfg).await?;
        table_columns(&s, cfg).await
    })?;
    check_table(spec, &cfg.keyspace, &cfg.table, &cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, kind: &str, position: i32) -> CqlColumn {
        CqlColumn { name: name.into(), kind: kind.into(), position, ty: "int".into() }
    }

    fn spec(pk: &[&str]) -> SinkSettings {
        SinkSettings::for_test(Format::Upsert, pk, Some("a:int32,b:int32,v:string".parse().unwrap()))
    }

    #[test]
    fn table_checks() {
        let cols = [col("a", "partition_key", 0), col("b", "clustering", 0), col("v", "regular", -1)];
        assert!(check_table(&spec(&["a", "b"]), "ks", "t", &cols).is_ok());
        let e = check_table(&spec(&["a"]), "ks", "t", &cols).unwrap_err().to_string();
        assert!(e.contains("ks.t") && e.contains("primary_key = 'a,b'"), "{e}");
        let e = check_table(&spec(&["a", "b"]), "ks", "t", &cols[..2]).unwrap_err().to_string();
        assert!(e.contains("`v`") && e.contains("ALTER TABLE ks.t ADD v"), "{e}");
        assert!(check_table(&spec(&["a", "b"]), "ks", "t", &[]).unwrap_err().to_string().contains("does not exist"));
    }
}
