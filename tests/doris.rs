//! The Doris sink against the in-test double of the documented Stream Load protocol of
//! `tests/doris_double` (no Doris server can be installed here): a frontend that redirects
//! `PUT /api/{db}/{table}/_stream_load` with 307 to a backend, and a backend that checks
//! credentials and headers, keeps labels and a unique-key table, applies `__DORIS_DELETE_SIGN__`,
//! and answers with the status JSON.
//!
//! No Doris server can be installed here, so the connector is tested against this double of the
//! documented Stream Load protocol. Behaviour of real servers beyond it (two-phase commit,
//! sequence columns, group commit) is not verified.

mod common;
mod doris_double;
mod drive;

use common::{keyed_history, state_before, Row};
use differential_sinks::connectors::doris::DorisConfig;
use differential_sinks::{CommitPolicy, Options, SinkSpec};
use doris_double::http_server::{respond, serve};
use doris_double::DorisDouble;
use drive::{run, Drive, Pace};
use std::net::TcpListener;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

fn spec(d: &DorisDouble, sink: &str) -> SinkSpec {
    spec_into(d, sink, "orders")
}

fn spec_into(d: &DorisDouble, sink: &str, table: &str) -> SinkSpec {
    let c = DorisConfig::new(&d.fe, "demo", table).credentials("root", "secret");
    SinkSpec::builder(sink, c).upsert().primary_key(["k"]).build().unwrap()
}

/// Two sinks of one name into two tables of one database: Doris keeps labels per database, so
/// the labels must name the table, or the second sink's loads are taken for replays of the
/// first's and dropped.
#[test]
fn two_sinks_of_one_name_into_two_tables_are_independent() {
    let d = DorisDouble::start(&["k", "v", "s"]);
    let history = keyed_history(9, 30, 10, 15);
    for table in ["orders", "orders_copy"] {
        assert_eq!(run(&history, &spec_into(&d, "same", table), 1, None), None);
        assert_eq!(d.table(table), state_before(&history, u64::MAX), "table {table}");
    }
    let st = d.state.lock().unwrap();
    assert!(st.loads.iter().all(|(_, s)| s == "Success"), "{:?}", st.loads);
}

#[test]
fn loads_follow_the_redirect_and_end_in_the_final_state() {
    let d = DorisDouble::start(&["k", "v", "s"]);
    let history = keyed_history(3, 30, 10, 15);
    assert_eq!(run(&history, &spec(&d, "orders"), 1, None), None);
    assert_eq!(d.table("orders"), state_before(&history, u64::MAX));
    let st = d.state.lock().unwrap();
    assert!(st.backend_hits > 1, "one load per commit");
    assert_eq!(st.frontend_hits, st.backend_hits, "every load went to the frontend and was redirected");
    assert!(st.loads.iter().all(|(_, s)| s == "Success"), "{:?}", st.loads);
}

#[test]
fn labels_are_deterministic_and_a_replay_is_a_no_op() {
    let d = DorisDouble::start(&["k", "v", "s"]);
    let history = keyed_history(4, 30, 10, 15);
    let s = spec(&d, "orders");
    assert_eq!(run(&history, &s, 1, None), None);
    let first: Vec<String> = d.state.lock().unwrap().loads.iter().map(|l| l.0.clone()).collect();
    assert!(first.iter().all(|l| l.starts_with("dsink_orders_") && l.contains("_g0_w0_")), "{first:?}");
    let table = d.table("orders");
    // The restarted sink replays everything; every load repeats a label and is refused.
    assert_eq!(run(&history, &s, 1, None), None);
    let st = d.state.lock().unwrap();
    let second: Vec<&(String, String)> = st.loads[first.len()..].iter().collect();
    assert_eq!(second.iter().map(|l| l.0.clone()).collect::<Vec<_>>(), first, "the same labels");
    assert!(second.iter().all(|l| l.1 == "Label Already Exists"), "{second:?}");
    drop(st);
    assert_eq!(d.table("orders"), table);
}

/// `start_end` of a label (`…_w<worker>_<start>_<end>`).
fn places(label: &str) -> (String, String) {
    let tail = &label[label.find("_w0_").expect("worker 0") + 4..];
    let (a, b) = tail.split_once('_').expect("two places");
    (a.to_string(), b.to_string())
}

/// A commit larger than `doris.load.max.bytes` is loaded in parts as the changes arrive: each
/// body at most the bound, several parts with places inside a time (`<t>p<n>`), every part
/// starting where the one before ended. A replay of the same commits repeats every label and
/// loads nothing again, and the table equals the reference throughout.
#[test]
fn a_large_commit_is_loaded_in_bounded_parts_and_replays_load_nothing_twice() {
    let d = DorisDouble::start(&["k", "v", "s"]);
    let history = keyed_history(21, 400, 3, 300);
    let bound = 2_000;
    let c = DorisConfig::new(&d.fe, "demo", "big").credentials("root", "secret").load_max_bytes(bound);
    let s = SinkSpec::builder("big", c)
        .upsert()
        .primary_key(["k"])
        .commit(CommitPolicy { max_changes: None, interval: Duration::ZERO })
        .build()
        .unwrap();
    // Each time committed on its own, so the replay commits at the same frontiers.
    let run = |h: &[(Row, u64, isize)], s: &SinkSpec| Drive::new(1).pace(Pace::Commit(1)).run(h, s).first_message();
    assert_eq!(run(&history, &s), None);
    assert_eq!(d.table("big"), state_before(&history, u64::MAX));
    let (labels, sizes): (Vec<String>, Vec<usize>) = d.state.lock().unwrap().bodies.iter().cloned().unzip();
    assert!(sizes.iter().all(|n| *n as u64 <= bound), "every body within the bound: {sizes:?}");
    let cut: Vec<&String> = labels.iter().filter(|l| places(l).1.contains('p')).collect();
    assert!(cut.len() >= 10, "commits split into many parts: {labels:?}");
    for pair in labels.windows(2) {
        assert_eq!(places(&pair[0]).1, places(&pair[1]).0, "each part starts where the last ended: {pair:?}");
    }
    {
        let st = d.state.lock().unwrap();
        assert!(st.loads.iter().all(|(_, s)| s == "Success"), "{:?}", st.loads);
        assert!(st.stale.is_empty(), "{:?}", st.stale);
    }
    let table = d.table("big");
    assert_eq!(run(&history, &s), None);
    let st = d.state.lock().unwrap();
    let again: Vec<&(String, String)> = st.loads[labels.len()..].iter().collect();
    assert_eq!(again.iter().map(|l| l.0.clone()).collect::<Vec<_>>(), labels, "the same parts, the same labels");
    assert!(again.iter().all(|l| l.1 == "Label Already Exists"), "{again:?}");
    assert!(st.stale.is_empty(), "{:?}", st.stale);
    drop(st);
    assert_eq!(d.table("big"), table);
}

#[test]
fn a_failed_load_reports_its_message() {
    let d = DorisDouble::start(&["k", "v"]); // the table lacks column `s`
    let history = vec![(Row { k: 1, v: 1, s: "x".into() }, 0, 1)];
    let e = run(&history, &spec(&d, "narrow"), 1, None).expect("the sink must stop");
    assert!(e.contains("column s is not in table") && e.contains("_load_error_log"), "{e}");
}

#[test]
fn wrong_credentials_are_not_retried_forever() {
    let d = DorisDouble::start(&["k", "v", "s"]);
    let c = DorisConfig::new(&d.fe, "demo", "orders").credentials("root", "wrong");
    let s = SinkSpec::builder("creds", c).upsert().primary_key(["k"]).build().unwrap();
    let e = run(&[(Row { k: 1, v: 1, s: "x".into() }, 0, 1)], &s, 1, None).expect("refused");
    assert!(e.contains("401"), "{e}");
    assert!(!e.contains("wrong"), "the password must not appear: {e}");
}

#[test]
fn options() {
    let o = Options::parse_pairs([
        "connector=doris",
        "doris.url=http://127.0.0.1:1",
        "doris.database=d",
        "doris.table=t",
        "doris.user=u",
        "doris.password=p",
        "doris.partial_update=true",
        "type=upsert",
        "primary_key=k",
    ])
    .unwrap();
    let s = SinkSpec::from_options(o).unwrap();
    assert!(!format!("{s:?}").contains("\"p\""), "password redacted");
    let o = Options::parse_pairs([
        "connector=doris",
        "doris.url=http://x",
        "doris.database=d",
        "doris.table=t",
        "type=debezium",
        "primary_key=k",
    ])
    .unwrap();
    assert!(SinkSpec::from_options(o).unwrap_err().to_string().contains("debezium"));
}

/// Credentials in the URL are taken out of it (never printed) and used as Basic auth; a
/// frontend that redirects to another scheme is refused instead of receiving them again.
#[test]
fn url_credentials_are_hidden_and_redirects_keep_the_scheme() {
    let d = DorisDouble::start(&["k", "v", "s"]);
    let with_creds = d.fe.replace("http://", "http://root:secret@");
    let c = DorisConfig::new(&with_creds, "demo", "orders");
    let s = SinkSpec::builder("creds-in-url", c).upsert().primary_key(["k"]).build().unwrap();
    assert!(!format!("{s:?}").contains("secret"), "{s:?}");
    let history = keyed_history(5, 10, 4, 5);
    assert_eq!(run(&history, &s, 1, None), None);
    assert_eq!(d.table("orders"), state_before(&history, u64::MAX));

    let fe = TcpListener::bind("127.0.0.1:0").unwrap();
    let fe_url = format!("http://root:secret@{}", fe.local_addr().unwrap());
    serve(fe, Arc::new(AtomicBool::new(false)), |req, s| {
        respond(s, "307 Temporary Redirect", &[("Location", format!("https://127.0.0.1:1{}", req.path))], "")
    });
    let c = DorisConfig::new(&fe_url, "demo", "orders");
    let s = SinkSpec::builder("downgrade", c).upsert().primary_key(["k"]).build().unwrap();
    let e = run(&history, &s, 1, None).expect("a redirect to another scheme stops the sink");
    assert!(e.contains("redirects only") && !e.contains("secret"), "{e}");
}

/// RisingWave's option names carry over: `doris.username` is the user the backend checks, and
/// `doris.partial_column = true` puts `partial_columns: true` on every Stream Load the double
/// sees (none without it).
#[test]
fn risingwave_option_names_reach_the_stream_load() {
    let d = DorisDouble::start(&["k", "v", "s"]);
    let history = keyed_history(13, 12, 4, 6);
    let spec = |table: &str, extra: &[&str]| {
        let mut pairs = vec![
            "connector=doris".to_string(),
            format!("doris.url={}", d.fe),
            "doris.database=demo".into(),
            format!("doris.table={table}"),
            "doris.username=root".into(),
            "doris.password=secret".into(),
            "type=upsert".into(),
            "primary_key=k".into(),
        ];
        pairs.extend(extra.iter().map(|s| s.to_string()));
        SinkSpec::from_options(Options::parse_pairs(pairs).unwrap()).unwrap()
    };
    assert_eq!(run(&history, &spec("partial", &["doris.partial_column=true"]), 1, None), None);
    assert_eq!(d.table("partial"), state_before(&history, u64::MAX));
    let seen = std::mem::take(&mut d.state.lock().unwrap().partial_columns);
    assert!(!seen.is_empty() && seen.iter().all(|h| h.as_deref() == Some("true")), "{seen:?}");

    assert_eq!(run(&history, &spec("whole", &[]), 1, None), None);
    assert_eq!(d.table("whole"), state_before(&history, u64::MAX));
    let seen = std::mem::take(&mut d.state.lock().unwrap().partial_columns);
    assert!(!seen.is_empty() && seen.iter().all(Option::is_none), "{seen:?}");

    let pairs = ["doris.partial_column=true", "doris.partial_update=false"];
    let e = SinkSpec::from_options(
        Options::parse_pairs(
            [
                "connector=doris",
                "doris.url=http://x",
                "doris.database=d",
                "doris.table=t",
                "type=upsert",
                "primary_key=k",
            ]
            .into_iter()
            .chain(pairs),
        )
        .unwrap(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("`doris.partial_update`") && e.contains("`doris.partial_column`"), "{e}");
}
