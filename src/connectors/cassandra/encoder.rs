//! The Cassandra encoder: per-key changes into the values bound to the sink's two prepared
//! statements ([`insert_cql`](super::statements::insert_cql) and
//! [`delete_cql`](super::statements::delete_cql)).
//!
//! An insert binds the row's JSON (keys Cassandra would lowercase quoted, see
//! [`insert_json`]) and the write timestamp of the change's time; a delete binds the timestamp
//! and each primary-key column's value as JSON. Upserts give one statement per key and time;
//! append-only sinks an insert per row.

use super::statements::{insert_json, write_timestamp};
use crate::encode::json::encode_row;
use crate::encode::ChangeEncoder;
use crate::envelope::{Emission, Format};
use crate::error::{Error, Result};
use crate::key::Key;
use crate::settings::SinkSettings;
use differential_sinks_operators::Change;
use scylla::value::CqlValue;
use serde::Serialize;
use std::marker::PhantomData;

/// The values of one statement: the insert's (`insert`) or the delete's.
#[derive(Clone, Debug, PartialEq)]
pub struct BoundStatement {
    /// True for the insert statement, false for the delete.
    pub insert: bool,
    /// The bound values, in the statement's order.
    pub values: Vec<CqlValue>,
}

/// Encodes changes as bound statement values. See the [connector's docs](super).
pub struct CassandraEncoder<V> {
    format: Format,
    key: Vec<String>,
    timestamp_offset: i64,
    json: Vec<u8>,
    _row: PhantomData<fn(&V)>,
}

impl<V> CassandraEncoder<V> {
    /// The encoder of `sink`'s format and primary key, with write timestamps `timestamp_offset +
    /// time`.
    pub fn new(sink: &SinkSettings, timestamp_offset: i64) -> Self {
        CassandraEncoder {
            format: sink.format().clone(),
            key: sink.primary_key().map(<[String]>::to_vec).unwrap_or_default(),
            timestamp_offset,
            json: Vec::with_capacity(256),
            _row: PhantomData,
        }
    }
}

impl<V: Serialize + 'static> ChangeEncoder<V> for CassandraEncoder<V> {
    type Output = Vec<BoundStatement>;

    fn encode(&mut self, time: u64, changes: &[Change<Key, V>], out: &mut Vec<BoundStatement>) -> Result<()> {
        let ts = write_timestamp(time, self.timestamp_offset)?;
        let json = &mut self.json;
        let insert = |json: &[u8]| -> Result<BoundStatement> {
            Ok(BoundStatement { insert: true, values: vec![CqlValue::Text(insert_json(json)?), CqlValue::BigInt(ts)] })
        };
        for change in changes {
            let (row, is_insert) = match (&self.format, &change.before, &change.after) {
                (Format::Upsert, _, Some(after)) => (after, true),
                (Format::Upsert, Some(before), None) => (before, false),
                (Format::Upsert, None, None) => continue,
                (format, _, _) => {
                    let mut rows: Vec<&V> = Vec::new();
                    format.emit(change, |e| {
                        if let Emission::Row { row, .. } = e {
                            rows.push(row)
                        }
                    })?;
                    for r in rows {
                        json.clear();
                        encode_row(r, json)?;
                        out.push(insert(json)?);
                    }
                    continue;
                }
            };
            json.clear();
            encode_row(row, json)?;
            let value: serde_json::Value = serde_json::from_slice(json).map_err(|e| Error::encode(e.to_string()))?;
            if is_insert {
                out.push(insert(json)?);
            } else {
                let mut v = vec![CqlValue::BigInt(ts)];
                for k in &self.key {
                    v.push(CqlValue::Text(value.get(k).cloned().unwrap_or_default().to_string()));
                }
                out.push(BoundStatement { insert: false, values: v });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    #[allow(non_snake_case)]
    struct R {
        k: u32,
        userId: String,
    }

    #[test]
    fn inserts_bind_the_json_and_deletes_the_key() {
        let sink = SinkSettings::for_test(Format::Upsert, &["k"], None);
        let mut enc = CassandraEncoder::<R>::new(&sink, 100);
        let key = Key::from_bytes(b"1".to_vec());
        let r = |k: u32| R { k, userId: "u".into() };
        let changes = [
            Change { key: key.clone(), before: None, after: Some(r(1)) },
            Change { key: key.clone(), before: Some(r(2)), after: None },
            Change { key, before: None, after: None },
        ];
        let mut out = Vec::new();
        enc.encode(5, &changes, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert!(out[0].insert);
        let CqlValue::Text(json) = &out[0].values[0] else { panic!("{:?}", out[0]) };
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v, serde_json::json!({"k": 1, "\"userId\"": "u"}));
        assert_eq!(out[0].values[1], CqlValue::BigInt(105));
        assert_eq!(
            out[1],
            BoundStatement { insert: false, values: vec![CqlValue::BigInt(105), CqlValue::Text("2".into())] }
        );
        assert!(enc.encode(u64::MAX, &changes, &mut Vec::new()).is_err(), "a time past a CQL timestamp");
    }
}
