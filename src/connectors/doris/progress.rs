//! Where a Doris sink's progress lives: in the labels of its loads.
//!
//! Doris keeps no progress record the sink can read back over HTTP. Instead every load's label is
//! derived from the commit it carries, so a replayed commit repeats its label and Doris refuses
//! it (see the module docs of the connector for what that guarantees).

use crate::stable_hash::{fnv64, scope_id};
use differential_sinks_operators::Frontier;

/// A place in one worker's changes: before the time `frontier`, past `partial` changes of it
/// (the changes of a time come in a deterministic order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Every time before it is passed.
    pub frontier: Frontier<u64>,
    /// How many changes of the time at `frontier` are passed too.
    pub partial: u64,
}

impl Position {
    /// The place at `frontier`, no change of its time passed.
    pub fn at(frontier: Frontier<u64>) -> Position {
        Position { frontier, partial: 0 }
    }
}

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
    part_label(sink, table, generation, worker, &Position::at(*lo), &Position::at(*hi))
}

/// The label of the load that covers one worker's changes from `start` to `end`: a commit's
/// whole body is `[lo, hi)` (then this is [`label`]); a part of a commit split by
/// `doris.load.max.bytes` starts or ends inside a time, written `<time>p<changes passed>`. At
/// most 128 characters: when the places are too long to spell out, a 64-bit digest of them
/// stands in.
pub fn part_label(sink: &str, table: &str, generation: u64, worker: usize, start: &Position, end: &Position) -> String {
    let clean: String = sink
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .take(32)
        .collect();
    let scope = scope_id(sink, table);
    let f = |p: &Position| {
        let t = p.frontier.to_u64().map_or("end".to_string(), |t| t.to_string());
        if p.partial == 0 {
            t
        } else {
            format!("{t}p{}", p.partial)
        }
    };
    let head = format!("dsink_{clean}_{}_g{generation}_w{worker}_", &scope[..16]);
    let places = format!("{}_{}", f(start), f(end));
    if head.len() + places.len() <= 128 {
        head + &places
    } else {
        format!("{head}h{:016x}", fnv64(places.as_bytes()))
    }
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

    #[test]
    fn part_labels_name_their_places_and_stay_short() {
        let (lo, hi) = (Frontier::at(5), Frontier::at(9));
        let whole = label("s", "db.t", 0, 1, &lo, &hi);
        assert_eq!(whole, part_label("s", "db.t", 0, 1, &Position::at(lo), &Position::at(hi)), "a 1-part commit");
        let cut = Position { frontier: Frontier::at(7), partial: 120 };
        let first = part_label("s", "db.t", 0, 1, &Position::at(lo), &cut);
        let second = part_label("s", "db.t", 0, 1, &cut, &Position::at(hi));
        assert!(first.ends_with("_w1_5_7p120") && second.ends_with("_w1_7p120_9"), "{first} {second}");
        let far = Position { frontier: Frontier::at(u64::MAX - 1), partial: u64::MAX };
        let long = part_label(&"x".repeat(300), "db.t", u64::MAX, 99_999, &far, &far);
        let other = part_label(&"x".repeat(300), "db.t", u64::MAX, 99_999, &far, &Position::at(Frontier::complete()));
        assert!(long.len() <= 128 && other.len() <= 128, "{long} {other}");
        assert_ne!(long, other);
    }
}
