//! The producing side of a sink into a target that takes rows encoded: each row is keyed and
//! encoded (its JSON, or the target's own form: a [`RowEncoder`]) on the worker that produced it, before the
//! exchange.
//!
//! One operator, pipelined with the collection's producer, takes each batch of updates and writes
//! its encoded rows one after the other into buffers of one time and one worker the rows are
//! routed to, of at most about 64 KiB each ([`EncodedRows`]); each update leaves as its key and
//! an [`EncodedRow`], a slice of a buffer. A row so costs its encoding and no allocation of its own. The rows of a
//! buffer are of one time and go to one worker, which buffers, spills and delivers them together:
//! a buffer is freed when that worker has spilled or delivered them, and no row keeps a buffer
//! of rows gone elsewhere alive. (The worker is computed as timely's exchange computes it, from
//! the key's [`route_hash`]; were they ever to differ, rows would still be delivered right, only
//! buffers would be shared between workers.)

use crate::encoded_row::{Encoded, EncodedRow, EncodedRows, RowEncoder};
use crate::key::Key;
use crate::row::Row;
use differential_dataflow::collection::AsCollection;
use differential_dataflow::VecCollection;
use differential_sinks_operators::{route_hash, SinkTime};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;

/// A buffer takes rows until it holds this many bytes: large enough that its allocation is
/// nothing next to encoding its rows, small enough that a buffer kept alive by one row wastes
/// little, and that filling one reuses the memory the batch's freed rows gave back.
const BUFFER_BYTES: usize = 64 << 10;

/// The collection's rows as `(key, encoded row)` pairs, keyed by `key_of`, encoded by `encode`;
/// with `by_encoding`, a row that encodes is keyed by its encoding's identity instead
/// ([`Key::encoded_identity`]; `key_of` keys only the rows that do not encode).
pub(crate) fn key_and_encode<'scope, T: SinkTime, V: Row>(
    collection: VecCollection<'scope, T, V, isize>,
    sink: &str,
    key_of: impl Fn(&V) -> Key + 'static,
    mut encode: RowEncoder<V>,
    by_encoding: bool,
) -> VecCollection<'scope, T, (Key, EncodedRow), isize> {
    let collection_peers = collection.inner.scope().peers().max(1) as u64;
    let mut builder = OperatorBuilder::new(format!("SinkEncode({sink})"), collection.inner.scope());
    let mut input = builder.new_input(collection.inner, Pipeline);
    let (out, stream) = builder.new_output::<Vec<((Key, EncodedRow), T, isize)>>();
    let mut out = OutputBuilder::from(out);
    let peers = collection_peers;
    builder.build(move |caps| {
        drop(caps);
        // Per update of a batch: its key, where its row is (buffer, place) and its time and diff.
        let mut placed: Vec<(Key, usize, Encoded, T, isize)> = Vec::new();
        // With `by_encoding`: the row's encoding, made before its key (and so its buffer) is known.
        let mut scratch: Vec<u8> = Vec::new();
        move |_frontiers| {
            input.for_each(|cap, data| {
                // Buffers of at most about `BUFFER_BYTES`, each of one time and one worker the
                // rows go to; `open` has the one being filled per (time, worker) — almost always
                // one time.
                let mut buffers: Vec<EncodedRows> = Vec::new();
                let mut open: Vec<(T, usize, usize)> = Vec::new();
                let total = data.len();
                for (i, (row, t, r)) in data.drain(..).enumerate() {
                    let early = by_encoding.then(|| {
                        scratch.clear();
                        encode(&row, &mut scratch)
                    });
                    let key = match &early {
                        Some(Ok(())) => Key::encoded_identity(&scratch),
                        _ => key_of(&row),
                    };
                    let worker = (route_hash(&key) % peers) as usize;
                    let b = match open.iter().position(|(ot, ow, _)| *ot == t && *ow == worker) {
                        Some(o) if buffers[open[o].2].len() < BUFFER_BYTES => open[o].2,
                        found => {
                            buffers.push(EncodedRows::default());
                            let b = buffers.len() - 1;
                            match found {
                                Some(o) => open[o].2 = b,
                                None => open.push((t, worker, b)),
                            }
                            b
                        }
                    };
                    let rows = &mut buffers[b];
                    let first = rows.is_empty();
                    let at = match early {
                        Some(Ok(())) => rows.push_with(|buf| {
                            buf.extend_from_slice(&scratch);
                            Ok(())
                        }),
                        Some(Err(reason)) => rows.push_with(|_| Err(reason)),
                        None => rows.push_with(|buf| encode(&row, buf)),
                    };
                    if first {
                        // Room for this worker's share of the rest of the batch at this row's
                        // size, up to a buffer's size.
                        let share = rows.len() * (total - i) / peers as usize;
                        rows.reserve(share.min(BUFFER_BYTES));
                    }
                    placed.push((key, b, at, t, r));
                }
                let buffers: Vec<_> = buffers.into_iter().map(EncodedRows::finish).collect();
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
