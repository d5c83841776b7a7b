//! Pure parts of the Cassandra connector: CQL statements, write timestamps and the table check.

use crate::envelope::Format;
use crate::error::{Error, Result};
use crate::settings::SinkSettings;

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

/// The write timestamp of the changes of logical time `time`: `offset + time`, so later times
/// always win, a replay writes the same cells with the same timestamps (a no-op), and a retried
/// older write can never overwrite — or resurrect past the tombstone of — a later one.
pub fn write_timestamp(time: u64, offset: i64) -> Result<i64> {
    i64::try_from(time)
        .ok()
        .and_then(|t| t.checked_add(offset))
        .ok_or_else(|| Error::encode(format!("time {time} plus offset {offset} does not fit a CQL write timestamp")))
}

/// `"ks"."t"`: quoted, so the keyspace and table are the ones named (and checked in
/// `system_schema`) exactly, mixed case included; unquoted, Cassandra would lowercase them.
pub fn qualified(keyspace: &str, table: &str) -> String {
    format!("\"{}\".\"{}\"", keyspace.replace('"', "\"\""), table.replace('"', "\"\""))
}

/// `INSERT INTO ks.t JSON ? USING TIMESTAMP ?`: the row's JSON names its columns, Cassandra
/// converts each value to its column's type, and columns the row lacks are set to null (the row
/// replaces the previous one entirely, as an upsert must).
pub fn insert_cql(keyspace: &str, table: &str) -> String {
    format!("INSERT INTO {} JSON ? DEFAULT NULL USING TIMESTAMP ?", qualified(keyspace, table))
}

/// The JSON text bound to `INSERT … JSON ?`. Cassandra lowercases unquoted keys of that JSON, as
/// it does unquoted identifiers, so a key that lowercasing would change is sent quoted
/// (`"\"userId\""`) to name its case-sensitive column — the one `"userId"` names in the DELETE
/// and in `system_schema`. Rows without such keys are sent as encoded.
pub fn insert_json(json: &[u8]) -> Result<String> {
    let text = std::str::from_utf8(json).map_err(|e| Error::encode(format!("a row's JSON is not UTF-8: {e}")))?;
    if !json.iter().any(|b| b.is_ascii_uppercase() || *b >= 0x80) {
        return Ok(text.to_string());
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::encode(e.to_string()))?;
    let serde_json::Value::Object(map) = value else {
        return Ok(text.to_string());
    };
    if map.keys().all(|k| k.to_lowercase() == *k) {
        return Ok(text.to_string());
    }
    let quoted: serde_json::Map<String, serde_json::Value> =
        map.into_iter().map(|(k, v)| if k.to_lowercase() == k { (k, v) } else { (format!("\"{k}\""), v) }).collect();
    Ok(serde_json::Value::Object(quoted).to_string())
}

/// `DELETE FROM ks.t USING TIMESTAMP ? WHERE k1 = fromJson(?) AND …`: key values travel as JSON
/// and are typed by the server.
pub fn delete_cql(keyspace: &str, table: &str, key: &[String]) -> String {
    let cond: Vec<String> = key.iter().map(|k| format!("\"{k}\" = fromJson(?)")).collect();
    format!("DELETE FROM {} USING TIMESTAMP ? WHERE {}", qualified(keyspace, table), cond.join(" AND "))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Format;

    fn col(name: &str, kind: &str, position: i32) -> CqlColumn {
        CqlColumn { name: name.into(), kind: kind.into(), position, ty: "int".into() }
    }

    fn spec(pk: &[&str]) -> SinkSettings {
        SinkSettings::for_test(Format::Upsert, pk, Some("a:int32,b:int32,v:string".parse().unwrap()))
    }

    #[test]
    fn statements() {
        assert_eq!(insert_cql("ks", "t"), "INSERT INTO \"ks\".\"t\" JSON ? DEFAULT NULL USING TIMESTAMP ?");
        assert_eq!(
            delete_cql("ks", "t", &["a".into(), "b".into()]),
            "DELETE FROM \"ks\".\"t\" USING TIMESTAMP ? WHERE \"a\" = fromJson(?) AND \"b\" = fromJson(?)"
        );
    }

    #[test]
    fn insert_json_quotes_keys_cassandra_would_lowercase() {
        let plain = r#"{"k":1,"s":"ABC é"}"#.as_bytes();
        assert_eq!(insert_json(plain).unwrap(), std::str::from_utf8(plain).unwrap());
        let v: serde_json::Value =
            serde_json::from_str(&insert_json(br#"{"k":1,"userId":2,"Name":"X"}"#).unwrap()).unwrap();
        assert_eq!(v, serde_json::json!({"k": 1, "\"userId\"": 2, "\"Name\"": "X"}));
    }

    #[test]
    fn timestamps_increase_with_time_and_fit() {
        assert!(write_timestamp(1, 0).unwrap() < write_timestamp(2, 0).unwrap());
        assert_eq!(write_timestamp(5, 1_000).unwrap(), 1_005);
        assert!(write_timestamp(u64::MAX, 0).is_err());
        assert!(write_timestamp(i64::MAX as u64, 1).is_err());
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
