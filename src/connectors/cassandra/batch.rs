//! Unlogged batches: the statements of a flush cut into batches Cassandra accepts, bounded by a
//! statement count and by an estimate of their data size (Cassandra refuses a multi-partition
//! batch above its `batch_size_fail_threshold_in_kb`).

use super::encoder::BoundStatement;
use scylla::value::CqlValue;

/// A statement's data size as Cassandra counts it against `batch_size_fail_threshold_in_kb`,
/// over- rather than underestimated: the bound text, plus 20 bytes per JSON field (the cell's
/// timestamp and lengths; every `:` is counted, even inside strings) and 32 for the row.
fn estimated_size(values: &[CqlValue]) -> usize {
    32 + values
        .iter()
        .map(|v| match v {
            CqlValue::Text(t) => t.len() + 20 * t.bytes().filter(|b| *b == b':').count(),
            _ => 8,
        })
        .sum::<usize>()
}

/// Splits statements into batches of at most `rows` statements and `bytes` estimated bytes
/// (a statement larger than `bytes` goes alone).
pub(crate) fn batches(pending: &[BoundStatement], rows: usize, bytes: usize) -> Vec<&[BoundStatement]> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, st) in pending.iter().enumerate() {
        let s = estimated_size(&st.values);
        if i > start && (i - start >= rows || size + s > bytes) {
            out.push(&pending[start..i]);
            (start, size) = (i, 0);
        }
        size += s;
    }
    if start < pending.len() {
        out.push(&pending[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_bounded_by_rows_and_by_estimated_bytes() {
        let st = |n: usize| BoundStatement {
            insert: true,
            values: vec![CqlValue::Text(format!("{{\"s\":\"{}\"}}", "x".repeat(n))), CqlValue::BigInt(1)],
        };
        let pending: Vec<_> = (0..10).map(|_| st(1000)).collect();
        let sizes = |b: Vec<&[BoundStatement]>| b.iter().map(|c| c.len()).collect::<Vec<_>>();
        assert_eq!(sizes(batches(&pending, 4, 1 << 20)), vec![4, 4, 2]);
        assert_eq!(sizes(batches(&pending, 100, 3 * 1100)), vec![3, 3, 3, 1]);
        assert_eq!(sizes(batches(&pending, 100, 10)), vec![1; 10], "an oversized statement goes alone");
        assert!(batches(&[], 100, 100).is_empty());
    }
}
