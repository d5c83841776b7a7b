//! The message family's encoder: per-key changes through the sink's envelope (append-only, upsert,
//! Debezium) into keyed JSON records ([`RecordBatch`]).

use crate::encode::{now_millis, ChangeEncoder, JsonEncoder};
use crate::encoded_row::{prefetch, PREFETCH_AHEAD};
use crate::envelope::{Emission, Format, Op};
use crate::error::Result;
use crate::key::Key;
use crate::record::RecordBatch;
use crate::settings::SinkSettings;
use differential_sinks_operators::Change;
use serde::Serialize;
use std::marker::PhantomData;

/// Encodes changes as the envelope's records, values in JSON (Debezium in Kafka Connect's
/// `{schema, payload}` form when the sink asks for it). Without a key, a record's value is the
/// row's JSON that already served as its key.
pub struct RecordEncoder<V> {
    format: Format,
    keyed: bool,
    json: JsonEncoder,
    _row: PhantomData<fn(&V)>,
}

impl<V> RecordEncoder<V> {
    /// The encoder of `sink`'s format and encoding.
    pub fn new(sink: &SinkSettings) -> Self {
        let schema = if sink.connect_schema { sink.schema.as_ref() } else { None };
        RecordEncoder {
            format: sink.format.clone(),
            keyed: sink.keyed(),
            json: JsonEncoder::new(&sink.name, schema),
            _row: PhantomData,
        }
    }
}

impl<V: Serialize + 'static> ChangeEncoder<V> for RecordEncoder<V> {
    type Output = RecordBatch;

    /// Consecutive calls for one time number its records on (see [`RecordBatch::first`]).
    fn encode(&mut self, time: u64, changes: &[Change<Key, V>], batch: &mut RecordBatch) -> Result<()> {
        batch.continue_time(time);
        let ts_ms = now_millis();
        let (format, encoder, keyed) = (&self.format, &self.json, self.keyed);
        for (i, change) in changes.iter().enumerate() {
            // A time's rows come in key order, scattered over the buffers they were encoded into.
            if let Some(ahead) = changes.get(i + PREFETCH_AHEAD) {
                prefetch(ahead.after.as_ref());
                prefetch(ahead.before.as_ref());
            }
            let key = change.key.bytes()?;
            let mut failed = None;
            format.emit(change, |emission| {
                if failed.is_some() {
                    return;
                }
                let r = match &emission {
                    Emission::Tombstone => batch.push::<fn(&mut Vec<u8>) -> Result<()>>(key, None, Op::Delete),
                    // Without a key, the key bytes are the row's JSON: reuse them as the value.
                    Emission::Row { op, .. } if !keyed => batch.push(
                        b"",
                        Some(|out: &mut Vec<u8>| {
                            out.extend_from_slice(key);
                            Ok(())
                        }),
                        *op,
                    ),
                    Emission::Row { op, .. } | Emission::Debezium { op, .. } => {
                        let op = *op;
                        batch.push(key, Some(|out: &mut Vec<u8>| encoder.emission(&emission, time, ts_ms, out)), op)
                    }
                };
                if let Err(e) = r {
                    failed = Some(e);
                }
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(())
    }
}
