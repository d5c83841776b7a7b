//! `resolve_resume`: where a restarted worker resumes, given the progress records of an earlier
//! run, across changes of worker count, routing and on-target format. The reference here is the
//! rule itself, stated per case: a run that routes keys as the records did resumes each worker
//! from its own record; a run that routes them differently starts a new generation from the
//! common frontier or is refused; a record of another format is refused.

use differential_sinks_operators::{
    resolve_resume, routing_fingerprint, Frontier, Layout, OperatorError, WorkerContext, WorkerProgress,
};

fn rec(worker: usize, frontier: u64, layout: Layout) -> WorkerProgress<u64> {
    WorkerProgress {
        worker,
        peers: 2,
        generation: 0,
        base: Frontier::minimum(),
        frontier: Frontier::at(frontier),
        layout,
    }
}

fn ctx(index: usize, peers: usize, layout: Layout) -> WorkerContext {
    WorkerContext { index, peers, layout }
}

fn layout(key: &str) -> Layout {
    Layout { routing: routing_fingerprint(key), format: 1 }
}

fn conflict(e: OperatorError) -> String {
    match e {
        OperatorError::ResumeConflict { message } => message,
        other => panic!("expected a resume conflict, got {other}"),
    }
}

#[test]
fn the_same_routing_resumes_each_worker_from_its_own_record() {
    let (a, b) = (layout("columns=[\"id\"]"), layout("columns=[\"id\"]"));
    let records = [rec(0, 5, a), rec(1, 7, a)];
    for (w, f) in [(0, 5), (1, 7)] {
        let p = resolve_resume(&records, ctx(w, 2, b)).unwrap();
        assert_eq!((p.frontier, p.generation, p.rerouted), (Frontier::at(f), 0, false));
    }
}

#[test]
fn another_routing_at_different_frontiers_is_refused_naming_the_key() {
    let records = [rec(0, 5, layout("columns=[\"id\"]")), rec(1, 7, layout("columns=[\"id\"]"))];
    let now = layout("columns=[\"id\", \"region\"]");
    let message = conflict(resolve_resume(&records, ctx(0, 2, now)).unwrap_err());
    assert!(message.contains("routing") && message.contains("key's columns or encoding"), "{message}");
    assert!(message.contains("fresh target"), "{message}");
}

#[test]
fn another_routing_at_a_common_frontier_starts_a_new_generation_there() {
    let old = layout("row-json");
    let records = [rec(0, 9, old), rec(1, 9, old)];
    for w in 0..2 {
        let p = resolve_resume(&records, ctx(w, 2, layout("row-identity"))).unwrap();
        assert_eq!((p.frontier, p.generation, p.base, p.rerouted), (Frontier::at(9), 1, Frontier::at(9), true));
    }
}

#[test]
fn records_without_a_routing_are_taken_as_routed_like_now() {
    let records = [rec(0, 5, Layout::default()), rec(1, 7, Layout::default())];
    let p = resolve_resume(&records, ctx(1, 2, layout("columns=[\"id\"]"))).unwrap();
    assert_eq!((p.frontier, p.rerouted), (Frontier::at(7), false));
}

#[test]
fn a_record_of_another_format_is_refused_either_way() {
    let now = layout("k");
    for (theirs, word) in [(2, "newer"), (0, "older")] {
        let old = Layout { format: theirs, ..now };
        // Even at a common frontier: the connector cannot read what that format wrote.
        let records = [rec(0, 9, old), rec(1, 9, old)];
        let message = conflict(resolve_resume(&records, ctx(0, 2, now)).unwrap_err());
        assert!(message.contains(&format!("format {theirs}")) && message.contains(word), "{message}");
    }
}

#[test]
fn a_new_worker_count_reroutes_even_with_the_same_key() {
    let l = layout("k");
    let p = resolve_resume(&[rec(0, 4, l), rec(1, 4, l)], ctx(2, 3, l)).unwrap();
    assert_eq!((p.frontier, p.generation, p.rerouted), (Frontier::at(4), 1, true));
    let message = conflict(resolve_resume(&[rec(0, 4, l), rec(1, 6, l)], ctx(0, 3, l)).unwrap_err());
    assert!(message.contains("restart it with 2 workers"), "{message}");
}

#[test]
fn the_routing_fingerprint_is_stable_and_fits_a_signed_column() {
    // Pinned: a change of the routing hash or of this function must bump ROUTING_HASH_VERSION.
    // (FNV-1a 64 of the version's 4 little-endian bytes and the text, shifted right by one.)
    assert_eq!(routing_fingerprint("columns=[\"id\"];key.encode=Json"), 0x4753_bc9b_e147_9f91);
    assert_ne!(routing_fingerprint("a"), routing_fingerprint("b"));
    for key in ["", "a", "row-json", "columns=[\"id\"];key.encode=Json"] {
        let r = routing_fingerprint(key);
        assert!(r > 0 && r <= i64::MAX as u64, "{key}: {r}");
    }
}

#[test]
fn reroutes_names_a_new_count_or_a_new_routing_and_nothing_else() {
    use differential_sinks_operators::reroutes;
    let l = layout("k");
    let records = [rec(0, 4, l), rec(1, 6, l)];
    assert!(!reroutes::<u64>(&[], ctx(0, 3, l)), "nothing recorded: nothing moves");
    assert!(!reroutes(&records, ctx(0, 2, l)));
    assert!(!reroutes(&records, ctx(0, 2, Layout::default())), "a run without a routing moves nothing");
    assert!(reroutes(&records, ctx(0, 3, l)));
    assert!(reroutes(&records, ctx(0, 2, layout("other"))));
}
