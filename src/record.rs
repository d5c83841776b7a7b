//! Encoded records: what message-oriented connectors receive.
//!
//! A [`RecordBatch`] holds the records of one logical time in one buffer (keys and values back to
//! back) with an index of ranges, so building a batch costs no allocation per record and a
//! connector can hand slices straight to its client.

use crate::envelope::Op;

#[derive(Clone, Copy, Debug)]
struct Meta {
    key: (u32, u32),
    value: Option<(u32, u32)>,
    op: Op,
}

/// One encoded record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The encoded key (empty for append-only sinks without a key).
    pub key: &'a [u8],
    /// The encoded value; `None` is a tombstone.
    pub value: Option<&'a [u8]>,
    /// The operation the record stands for.
    pub op: Op,
}

/// The records of one logical time, in key order.
///
/// A large time reaches a writer in several consecutive batches; [`first`](Self::first) numbers
/// the records across them, so `first + i` identifies record `i` within its whole time (and, the
/// operator's delivery order depending only on the time's consolidated changes, identifies it
/// again on a replay of that time).
#[derive(Clone, Debug, Default)]
pub struct RecordBatch {
    /// The logical time of every record in the batch.
    pub time: u64,
    /// The position of this batch's first record among all records of its time.
    pub first: u64,
    buf: Vec<u8>,
    meta: Vec<Meta>,
}

impl RecordBatch {
    /// An empty batch for `time`.
    pub fn new(time: u64) -> Self {
        RecordBatch { time, first: 0, buf: Vec::new(), meta: Vec::new() }
    }

    /// Empties the batch for reuse at `time`, keeping its allocations; its records will be the
    /// first of their time.
    pub fn reset(&mut self, time: u64) {
        self.reset_at(time, 0);
    }

    /// Empties the batch for reuse as the next batch of `time`, keeping its allocations: when
    /// the batch held records of `time` before, the new ones are numbered after them (see
    /// [`first`](Self::first)); otherwise they are the first of `time`.
    ///
    /// ```
    /// use differential_sinks::{RecordBatch, envelope::Op};
    /// let mut b = RecordBatch::new(3);
    /// b.push::<fn(&mut Vec<u8>) -> differential_sinks::Result<()>>(b"k", None, Op::Delete).unwrap();
    /// b.continue_time(3);
    /// assert_eq!(b.first, 1);
    /// b.continue_time(4);
    /// assert_eq!(b.first, 0);
    /// ```
    pub fn continue_time(&mut self, time: u64) {
        let first = if self.time == time { self.first + self.meta.len() as u64 } else { 0 };
        self.reset_at(time, first);
    }

    fn reset_at(&mut self, time: u64, first: u64) {
        self.time = time;
        self.first = first;
        self.buf.clear();
        self.meta.clear();
    }

    /// Appends a record whose value `encode_value` writes (or a tombstone, if `None`).
    ///
    /// ```
    /// use differential_sinks::{RecordBatch, envelope::Op};
    /// let mut b = RecordBatch::new(3);
    /// b.push(b"k1", Some(|out: &mut Vec<u8>| { out.extend_from_slice(b"v1"); Ok(()) }), Op::Create).unwrap();
    /// b.push::<fn(&mut Vec<u8>) -> differential_sinks::Result<()>>(b"k2", None, Op::Delete).unwrap();
    /// let recs: Vec<_> = b.iter().collect();
    /// assert_eq!(recs[0].value, Some(&b"v1"[..]));
    /// assert_eq!(recs[1].value, None);
    /// ```
    #[inline]
    pub fn push<F>(&mut self, key: &[u8], encode_value: Option<F>, op: Op) -> crate::Result<()>
    where
        F: FnOnce(&mut Vec<u8>) -> crate::Result<()>,
    {
        let k0 = self.buf.len();
        self.buf.extend_from_slice(key);
        let k1 = self.buf.len();
        let value = match encode_value {
            Some(f) => {
                if let Err(e) = f(&mut self.buf) {
                    self.buf.truncate(k0);
                    return Err(e);
                }
                Some((k1 as u32, self.buf.len() as u32))
            }
            None => None,
        };
        if self.buf.len() > u32::MAX as usize {
            self.buf.truncate(k0);
            return Err(crate::Error::encode("a batch of one time exceeds 4 GiB of encoded records"));
        }
        self.meta.push(Meta { key: (k0 as u32, k1 as u32), value, op });
        Ok(())
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    /// True if there are no records.
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// Encoded bytes of keys and values.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// Record `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<Record<'_>> {
        self.meta.get(i).map(|m| Record {
            key: &self.buf[m.key.0 as usize..m.key.1 as usize],
            value: m.value.map(|(a, b)| &self.buf[a as usize..b as usize]),
            op: m.op,
        })
    }

    /// The records in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Record<'_>> + '_ {
        self.meta.iter().map(move |m| Record {
            key: &self.buf[m.key.0 as usize..m.key.1 as usize],
            value: m.value.map(|(a, b)| &self.buf[a as usize..b as usize]),
            op: m.op,
        })
    }
}
