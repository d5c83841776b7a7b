//! The Elasticsearch encoder: per-key changes into `_bulk` lines — an action line (`index`,
//! `update` or `delete`, with the document's index, id, version and routing) and, unless a
//! delete, the document's source line.
//!
//! With `version_type = external` every action carries the logical time as its version, so the
//! server refuses a replayed or older write (409). With `version_type = none`, keyed upserts are
//! `update` with `doc_as_upsert` and `retry_on_conflict`. A document's id is the primary key as
//! text (columns joined by `delimiter`); without a key the server chooses ids.

use super::config::{ElasticsearchConfig, Versioning};
use crate::encode::json::encode_row;
use crate::encode::ChangeEncoder;
use crate::envelope::{Emission, Format};
use crate::error::{Error, Result};
use crate::key::{Key, KeyColumns, KeyEncoding};
use crate::settings::SinkSettings;
use differential_sinks_operators::Change;
use serde::Serialize;
use std::marker::PhantomData;

/// One action of a `_bulk` body: its lines' byte range and its document id's range (JSON text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Item {
    /// Where the action's lines start in the body.
    pub start: u32,
    /// Where they end.
    pub end: u32,
    /// The byte range of the document id's JSON string, `(0, 0)` without one.
    pub id: (u32, u32),
}

/// A `_bulk` body being built: its NDJSON lines and where each action is in them.
#[derive(Debug, Default)]
pub struct BulkBody {
    /// The lines.
    pub body: Vec<u8>,
    /// One entry per action, in order.
    pub items: Vec<Item>,
}

/// Encodes changes as `_bulk` actions. See the [connector's docs](super).
pub struct BulkEncoder<V> {
    format: Format,
    versioning: Versioning,
    retry_on_conflict: u32,
    index_column: Option<String>,
    routing_column: Option<String>,
    /// The fixed index as a JSON string.
    index_json: Vec<u8>,
    /// Extracts the document id when the sink's key encoding is not already text with the
    /// configured delimiter.
    ids: Option<KeyColumns>,
    keyed: bool,
    scratch: Vec<u8>,
    _row: PhantomData<fn(&V)>,
}

impl<V> BulkEncoder<V> {
    /// The encoder of `cfg`'s documents for `sink`'s rows.
    pub fn new(cfg: &ElasticsearchConfig, sink: &SinkSettings) -> Result<Self> {
        let text = KeyEncoding::Text { delimiter: cfg.delimiter.clone() };
        let ids = match sink.primary_key() {
            Some(pk) if *sink.key_encoding() != text => Some(KeyColumns::new(pk.to_vec(), text)?),
            _ => None,
        };
        let index_json = match &cfg.index {
            Some(i) => serde_json::to_vec(i).map_err(|e| Error::encode(e.to_string()))?,
            None => Vec::new(),
        };
        Ok(BulkEncoder {
            format: sink.format().clone(),
            versioning: cfg.versioning,
            retry_on_conflict: cfg.retry_on_conflict,
            index_column: cfg.index_column.clone(),
            routing_column: cfg.routing_column.clone(),
            index_json,
            ids,
            keyed: sink.primary_key().is_some() || sink.format().is_keyed(),
            scratch: Vec::with_capacity(256),
            _row: PhantomData,
        })
    }
}

/// Reads a string-ish field of a row for index / routing columns.
fn field_text(row: &serde_json::Value, column: &str, option: &str) -> Result<String> {
    match row.get(column) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(v) if !v.is_null() => Ok(v.to_string()),
        _ => Err(Error::schema(format!(
            "option `{option}` names column `{column}`, but a row has no value for it: {row}"
        ))),
    }
}

/// Appends `s` as a JSON string.
fn json_string(out: &mut Vec<u8>, s: &str) -> Result<()> {
    serde_json::to_writer(out, s).map_err(|e| Error::encode(e.to_string()))
}

impl<V: Serialize + 'static> BulkEncoder<V> {
    /// Appends one action (and its source, unless a delete).
    fn push(&mut self, key: &Key, time: u64, row: &V, delete: bool, out: &mut BulkBody) -> Result<()> {
        // The row's JSON first (the index / routing columns may need it).
        self.scratch.clear();
        encode_row(row, &mut self.scratch)?;
        let parsed = if self.index_column.is_some() || self.routing_column.is_some() {
            Some(serde_json::from_slice::<serde_json::Value>(&self.scratch).map_err(|e| Error::encode(e.to_string()))?)
        } else {
            None
        };
        let id: Option<Vec<u8>> = if self.keyed {
            let text = match &self.ids {
                Some(cols) => cols.extract(row).bytes()?.to_vec(),
                None => {
                    let b = key.bytes()?;
                    // A key function's JSON string: the id is the string itself.
                    match serde_json::from_slice::<String>(b) {
                        Ok(s) => s.into_bytes(),
                        Err(_) => b.to_vec(),
                    }
                }
            };
            Some(text)
        } else {
            None
        };
        // The index and routing values, before anything is appended (an error leaves `out` as it was).
        let index = match (&self.index_column, &parsed) {
            (Some(col), Some(v)) => Some(field_text(v, col, "index_column")?),
            _ => None,
        };
        let routing = match (&self.routing_column, &parsed) {
            (Some(col), Some(v)) => Some(field_text(v, col, "routing_column")?),
            _ => None,
        };
        let start = out.body.len() as u32;
        let b = &mut out.body;
        let action = match (delete, self.versioning) {
            (true, _) => "delete",
            (false, Versioning::External) => "index",
            (false, Versioning::None) if id.is_some() => "update",
            (false, Versioning::None) => "index",
        };
        b.extend_from_slice(b"{\"");
        b.extend_from_slice(action.as_bytes());
        b.extend_from_slice(b"\":{\"_index\":");
        match &index {
            Some(i) => json_string(b, i)?,
            None => b.extend_from_slice(&self.index_json),
        }
        let mut id_range = (0, 0);
        if let Some(id) = &id {
            b.extend_from_slice(b",\"_id\":");
            let s = b.len() as u32;
            json_string(b, &String::from_utf8_lossy(id))?;
            id_range = (s, b.len() as u32);
            if self.versioning == Versioning::External {
                b.extend_from_slice(b",\"version\":");
                b.extend_from_slice(time.to_string().as_bytes());
                b.extend_from_slice(b",\"version_type\":\"external\"");
            } else if action == "update" {
                b.extend_from_slice(b",\"retry_on_conflict\":");
                b.extend_from_slice(self.retry_on_conflict.to_string().as_bytes());
            }
        }
        if let Some(r) = &routing {
            b.extend_from_slice(b",\"routing\":");
            json_string(b, r)?;
        }
        b.extend_from_slice(b"}}\n");
        if !delete {
            if action == "update" {
                b.extend_from_slice(b"{\"doc\":");
                b.extend_from_slice(&self.scratch);
                b.extend_from_slice(b",\"doc_as_upsert\":true}\n");
            } else {
                b.extend_from_slice(&self.scratch);
                b.push(b'\n');
            }
        }
        out.items.push(Item { start, end: b.len() as u32, id: id_range });
        Ok(())
    }
}

impl<V: Serialize + 'static> ChangeEncoder<V> for BulkEncoder<V> {
    type Output = BulkBody;

    fn encode(&mut self, time: u64, changes: &[Change<Key, V>], out: &mut BulkBody) -> Result<()> {
        if time > i64::MAX as u64 {
            return Err(Error::encode(format!(
                "time {time} does not fit an Elasticsearch version (a signed 64-bit number)"
            )));
        }
        for change in changes {
            match &self.format {
                Format::Upsert => match (&change.before, &change.after) {
                    (_, Some(after)) => self.push(&change.key, time, after, false, out)?,
                    (Some(before), None) => self.push(&change.key, time, before, true, out)?,
                    (None, None) => {}
                },
                format => {
                    let mut rows: Vec<&V> = Vec::with_capacity(1);
                    format.emit(change, |e| {
                        if let Emission::Row { row, .. } = e {
                            rows.push(row)
                        }
                    })?;
                    for r in rows {
                        self.push(&change.key, time, r, false, out)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct R {
        k: u32,
        v: &'static str,
    }

    fn text(b: &BulkBody) -> String {
        String::from_utf8(b.body.clone()).unwrap()
    }

    #[test]
    fn actions_carry_index_id_and_external_version() {
        let cfg = ElasticsearchConfig::new("http://x", "idx").routing_column("v");
        let mut sink = SinkSettings::for_test(Format::Upsert, &["k"], None);
        sink.key_encoding = KeyEncoding::Text { delimiter: "_".into() };
        let mut enc = BulkEncoder::<R>::new(&cfg, &sink).unwrap();
        let key = Key::from_bytes(b"1".to_vec());
        let changes = [
            Change { key: key.clone(), before: None, after: Some(R { k: 1, v: "a" }) },
            Change { key: key.clone(), before: Some(R { k: 2, v: "b" }), after: None },
        ];
        let mut out = BulkBody::default();
        enc.encode(7, &changes, &mut out).unwrap();
        assert_eq!(
            text(&out),
            "{\"index\":{\"_index\":\"idx\",\"_id\":\"1\",\"version\":7,\"version_type\":\"external\",\"routing\":\"a\"}}\n\
             {\"k\":1,\"v\":\"a\"}\n\
             {\"delete\":{\"_index\":\"idx\",\"_id\":\"1\",\"version\":7,\"version_type\":\"external\",\"routing\":\"b\"}}\n"
        );
        assert_eq!(out.items.len(), 2);
        let first = out.items[0];
        assert_eq!(&out.body[first.id.0 as usize..first.id.1 as usize], b"\"1\"");
        assert!(enc.encode(u64::MAX, &changes, &mut out).is_err(), "a time past a signed version");
    }

    #[test]
    fn unversioned_upserts_are_updates() {
        let cfg = ElasticsearchConfig::new("http://x", "idx").versioning(Versioning::None);
        let mut sink = SinkSettings::for_test(Format::Upsert, &["k"], None);
        sink.key_encoding = KeyEncoding::Text { delimiter: "_".into() };
        let mut enc = BulkEncoder::<R>::new(&cfg, &sink).unwrap();
        let mut out = BulkBody::default();
        let change = Change { key: Key::from_bytes(b"3".to_vec()), before: None, after: Some(R { k: 3, v: "c" }) };
        enc.encode(1, &[change], &mut out).unwrap();
        assert_eq!(
            text(&out),
            "{\"update\":{\"_index\":\"idx\",\"_id\":\"3\",\"retry_on_conflict\":3}}\n\
             {\"doc\":{\"k\":3,\"v\":\"c\"},\"doc_as_upsert\":true}\n"
        );
    }
}
