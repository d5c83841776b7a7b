//! Where a Doris sink's progress lives: in the labels of its loads.
//!
//! Doris keeps no progress record the sink can read back over HTTP. Instead every load's label is
//! derived from the commit it carries, so a replayed commit repeats its label and Doris refuses
//! it (see the module docs of the connector for what that guarantees).

use crate::stable_hash::scope_id;
use differential_sinks_operators::Frontier;

/// The label of the load that covers times `[lo, hi)` of one worker into `table`
/// (`database.table`): the same on every replay of the same commit. Doris keeps labels per
/// database, so the label names the table too (by a 64-bit digest of sink and table): two sinks
/// of one name into two tables never take each other's loads for replays. At most 126
/// characters (Doris allows 128).
pub fn label(
    sink: &str,
    table: &str,
    generation: u64,
    worker: usize,
    lo: &Frontier<u64>,
    hi: &Frontier<u64>,
) -> String {
    let clean: String = sink
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .take(32)
        .collect();
    let scope = scope_id(sink, table);
    let f = |f: &Frontier<u64>| f.to_u64().map_or("end".to_string(), |t| t.to_string());
    format!("dsink_{clean}_{}_g{generation}_w{worker}_{}_{}", &scope[..16], f(lo), f(hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        let l = label("my sink/1", "db.t", 0, 3, &Frontier::at(5), &Frontier::complete());
        assert!(l.starts_with("dsink_my_sink_1_") && l.ends_with("_g0_w3_5_end"), "{l}");
        assert_ne!(l, label("my sink/1", "db.u", 0, 3, &Frontier::at(5), &Frontier::complete()));
        let long =
            label(&"x".repeat(300), "db.t", u64::MAX, 99_999, &Frontier::at(u64::MAX - 1), &Frontier::at(u64::MAX));
        assert!(long.len() <= 128, "{} characters", long.len());
    }
}
