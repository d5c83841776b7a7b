//! The Doris encoder: per-key changes into the rows of a Stream Load body, one JSON object a line
//! (`format: json`, `read_json_by_line: true`).
//!
//! Upserts (onto a unique-key table) carry the hidden column `__DORIS_DELETE_SIGN__`: 0 on the
//! row a key now has, 1 on the row a deleted key had. Append-only rows go as they are.

use super::table::DELETE_SIGN;
use crate::encode::json::encode_row;
use crate::encode::ChangeEncoder;
use crate::envelope::{Emission, Format};
use crate::error::{Error, Result};
use crate::key::Key;
use crate::settings::SinkSettings;
use differential_sinks_operators::Change;
use serde::Serialize;
use std::marker::PhantomData;

/// A Stream Load body being built: JSON lines, and how many.
#[derive(Debug, Default)]
pub struct LoadBody {
    /// The JSON lines.
    pub data: Vec<u8>,
    /// The number of lines in `data`.
    pub rows: u64,
}

/// Encodes changes as Stream Load JSON lines. See the [connector's docs](super).
pub struct DorisEncoder<V> {
    format: Format,
    _row: PhantomData<fn(&V)>,
}

impl<V> DorisEncoder<V> {
    /// The encoder of `sink`'s format.
    pub fn new(sink: &SinkSettings) -> Self {
        DorisEncoder { format: sink.format().clone(), _row: PhantomData }
    }

    /// Whether rows carry the delete sign (the load must declare it in `hidden_columns`).
    pub fn upsert(&self) -> bool {
        self.format == Format::Upsert
    }
}

/// Appends `row` as one line, with the delete sign `delete` when given.
fn push<R: Serialize + 'static>(out: &mut LoadBody, row: &R, delete: Option<bool>) -> Result<()> {
    let body = &mut out.data;
    let start = body.len();
    encode_row(row, body)?;
    if let Some(d) = delete {
        if body.last() != Some(&b'}') {
            body.truncate(start);
            return Err(Error::schema("rows for Doris must serialize as JSON objects"));
        }
        body.pop();
        if body.len() > start + 1 {
            body.push(b',');
        }
        body.extend_from_slice(format!("\"{DELETE_SIGN}\":{}}}", u8::from(d)).as_bytes());
    }
    body.push(b'\n');
    out.rows += 1;
    Ok(())
}

impl<V: Serialize + 'static> ChangeEncoder<V> for DorisEncoder<V> {
    type Output = LoadBody;

    fn encode(&mut self, _time: u64, changes: &[Change<Key, V>], out: &mut LoadBody) -> Result<()> {
        for change in changes {
            match &self.format {
                Format::Upsert => match (&change.before, &change.after) {
                    (_, Some(after)) => push(out, after, Some(false))?,
                    (Some(before), None) => push(out, before, Some(true))?,
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
                        push(out, r, None)?;
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
    use serde::Serialize;

    #[derive(Serialize)]
    struct R {
        k: u32,
        v: u32,
    }

    #[test]
    fn upserts_carry_the_delete_sign_and_appends_go_as_they_are() {
        let key = Key::from_bytes(b"1".to_vec());
        let change = |before: Option<R>, after: Option<R>| Change { key: key.clone(), before, after };
        let upsert = SinkSettings::for_test(Format::Upsert, &["k"], None);
        let mut enc = DorisEncoder::<R>::new(&upsert);
        assert!(enc.upsert());
        let mut out = LoadBody::default();
        let changes = [
            change(None, Some(R { k: 1, v: 2 })),
            change(Some(R { k: 2, v: 3 }), None),
            change(Some(R { k: 3, v: 1 }), Some(R { k: 3, v: 4 })),
        ];
        enc.encode(7, &changes, &mut out).unwrap();
        assert_eq!(out.rows, 3);
        assert_eq!(
            String::from_utf8(out.data).unwrap(),
            format!(
                "{{\"k\":1,\"v\":2,\"{DELETE_SIGN}\":0}}\n{{\"k\":2,\"v\":3,\"{DELETE_SIGN}\":1}}\n\
                 {{\"k\":3,\"v\":4,\"{DELETE_SIGN}\":0}}\n"
            )
        );

        let append = SinkSettings::for_test(Format::AppendOnly { force: false }, &[], None);
        let mut enc = DorisEncoder::<R>::new(&append);
        let mut out = LoadBody::default();
        enc.encode(7, &[change(None, Some(R { k: 1, v: 2 }))], &mut out).unwrap();
        assert_eq!(String::from_utf8(out.data).unwrap(), "{\"k\":1,\"v\":2}\n");
    }
}
