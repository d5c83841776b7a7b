//! The producing side of a sink into a target that needs only a row's JSON: each row is keyed and
//! encoded on the worker that produced it, before the exchange.
//!
//! One operator, pipelined with the collection's producer, takes each batch of updates and writes
//! the JSON of its rows one after the other into one buffer per time of the batch
//! ([`EncodedRows`]); each update leaves as its key and an [`EncodedRow`], a slice of that buffer.
//! A row so costs its encoding and no allocation of its own, and the rows of a buffer are of one
//! time, so a buffer lives at most until that time is delivered (or, for a row spilled to disk,
//! read back on its own).

use crate::encoded_row::{Encoded, EncodedRow, EncodedRows};
use crate::key::Key;
use crate::row::Row;
use differential_dataflow::collection::AsCollection;
use differential_dataflow::VecCollection;
use differential_sinks_operators::SinkTime;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;

/// The collection's rows as `(key, encoded row)` pairs, keyed by `key_of`.
pub(crate) fn key_and_encode<'scope, T: SinkTime, V: Row>(
    collection: VecCollection<'scope, T, V, isize>,
    sink: &str,
    key_of: impl Fn(&V) -> Key + 'static,
) -> VecCollection<'scope, T, (Key, EncodedRow), isize> {
    let mut builder = OperatorBuilder::new(format!("SinkEncode({sink})"), collection.inner.scope());
    let mut input = builder.new_input(collection.inner, Pipeline);
    let (out, stream) = builder.new_output::<Vec<((Key, EncodedRow), T, isize)>>();
    let mut out = OutputBuilder::from(out);
    builder.build(move |caps| {
        drop(caps);
        // Per update of a batch: its key, where its row is (buffer, place) and its time and diff.
        let mut placed: Vec<(Key, usize, Encoded, T, isize)> = Vec::new();
        move |_frontiers| {
            input.for_each(|cap, data| {
                // One buffer per time of the batch (almost always one).
                let mut buffers: Vec<(T, EncodedRows)> = Vec::new();
                let total = data.len();
                for (i, (row, t, r)) in data.drain(..).enumerate() {
                    let key = key_of(&row);
                    let b = match buffers.iter().rposition(|(bt, _)| *bt == t) {
                        Some(b) => b,
                        None => {
                            buffers.push((t, EncodedRows::default()));
                            buffers.len() - 1
                        }
                    };
                    let rows = &mut buffers[b].1;
                    let first = rows.is_empty();
                    let at = rows.push(&row);
                    if first {
                        // Room for the rest of the batch at this row's size: one growth at most.
                        rows.reserve(rows.len() * (total - i));
                    }
                    placed.push((key, b, at, t, r));
                }
                let buffers: Vec<_> = buffers.into_iter().map(|(_, rows)| rows.finish()).collect();
                let mut o = out.activate();
                let mut session = o.session(&cap);
                for (key, b, at, t, r) in placed.drain(..) {
                    session.give(((key, buffers[b].take(at)), t, r));
                }
            });
        }
    });
    stream.as_collection()
}
