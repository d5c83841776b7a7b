//! The CQL the Cassandra connector sends: the insert and delete statements, the JSON bound to an
//! insert, the quoting of names, and the write timestamp of a logical time. Pure text, no I/O.

use crate::error::{Error, Result};

pub use super::table::{check_table, CqlColumn};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
