//! The Doris sink against an in-test double of the documented Stream Load protocol (no Doris
//! server can be installed here): a frontend that redirects `PUT /api/{db}/{table}/_stream_load`
//! with 307 to a backend, and a backend that checks credentials and headers, keeps labels and a
//! unique-key table, applies `__DORIS_DELETE_SIGN__`, and answers with the status JSON.

mod common;
mod drive;
#[path = "support/http_server.rs"]
mod http_server;

use common::{keyed_history, state_before, Row};
use differential_sinks::connectors::doris::DorisConfig;
use differential_sinks::{Options, SinkSpec};
use drive::run;
use http_server::{respond, serve};
use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct State {
    /// (database, label) → rows it loaded: Doris keeps labels per database
    labels: HashMap<(String, String), u64>,
    /// the unique-key tables by name: k → row
    tables: BTreeMap<String, BTreeMap<u32, serde_json::Value>>,
    /// (label, answer status) of every load the backend answered, in order
    loads: Vec<(String, String)>,
    frontend_hits: usize,
    backend_hits: usize,
    /// columns the table has (besides the hidden delete sign)
    columns: Vec<&'static str>,
}

struct Double {
    fe: String,
    state: Arc<Mutex<State>>,
}

const AUTH: &str = "Basic cm9vdDpzZWNyZXQ="; // root:secret

impl Double {
    fn start(columns: Vec<&'static str>) -> Double {
        let state = Arc::new(Mutex::new(State { columns, ..State::default() }));
        let be = TcpListener::bind("127.0.0.1:0").unwrap();
        let be_addr = be.local_addr().unwrap();
        let fe = TcpListener::bind("127.0.0.1:0").unwrap();
        let fe_addr = fe.local_addr().unwrap();
        let st = state.clone();
        // Frontend: checks the method and path, then redirects to the backend.
        serve(fe, Arc::new(AtomicBool::new(false)), move |req, s| {
            st.lock().unwrap().frontend_hits += 1;
            if req.method != "PUT" || !req.path.ends_with("/_stream_load") {
                return respond(s, "404 Not Found", &[], "not found");
            }
            respond(s, "307 Temporary Redirect", &[("Location", format!("http://{be_addr}{}", req.path))], "");
        });
        let st = state.clone();
        // Backend: the load itself.
        serve(be, Arc::new(AtomicBool::new(false)), move |req, s| {
            let mut st = st.lock().unwrap();
            st.backend_hits += 1;
            if req.headers.get("authorization").map(String::as_str) != Some(AUTH) {
                return respond(s, "401 Unauthorized", &[], "{\"status\":\"FAILED\",\"msg\":\"Access denied\"}");
            }
            let label = req.headers.get("label").cloned().unwrap_or_default();
            // /api/{db}/{table}/_stream_load
            let parts: Vec<&str> = req.path.split('/').collect();
            let (db, table) = (parts[2].to_string(), parts[3].to_string());
            let db_label = (db, label.clone());
            let answer = |status: &str, msg: &str, rows: u64, extra: &str| {
                format!(
                    "{{\"TxnId\":1,\"Label\":\"{label}\",\"Status\":\"{status}\",\"Message\":\"{msg}\",\"NumberTotalRows\":{rows},\"NumberLoadedRows\":{rows},\"NumberFilteredRows\":0{extra}}}"
                )
            };
            if st.labels.contains_key(&db_label) {
                st.loads.push((label.clone(), "Label Already Exists".into()));
                let body = answer(
                    "Label Already Exists",
                    &format!("Label [{label}] has already been used, relate to txn [1]"),
                    0,
                    ",\"ExistingJobStatus\":\"FINISHED\"",
                );
                return respond(s, "200 OK", &[], &body);
            }
            let ok_headers = req.headers.get("format").map(String::as_str) == Some("json")
                && req.headers.get("read_json_by_line").map(String::as_str) == Some("true");
            let mut rows = Vec::new();
            let mut bad = None;
            for line in req.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let v: serde_json::Value = match serde_json::from_slice(line) {
                    Ok(v) => v,
                    Err(e) => {
                        bad = Some(format!("bad json: {e}"));
                        break;
                    }
                };
                for k in v.as_object().unwrap().keys() {
                    let hidden = k == "__DORIS_DELETE_SIGN__"
                        && req.headers.get("hidden_columns").map(String::as_str) == Some("__DORIS_DELETE_SIGN__");
                    if !hidden && !st.columns.contains(&k.as_str()) {
                        bad = Some(format!("[DATA_QUALITY_ERROR]too many filtered rows: column {k} is not in table"));
                    }
                }
                rows.push(v);
            }
            if !ok_headers || bad.is_some() {
                st.loads.push((label.clone(), "Fail".into()));
                let msg = bad.unwrap_or_else(|| "format json with read_json_by_line is required".into());
                let body = answer("Fail", &msg, 0, ",\"ErrorURL\":\"http://be/api/_load_error_log?file=x\"");
                return respond(s, "200 OK", &[], &body);
            }
            let t = st.tables.entry(table).or_default();
            for v in &rows {
                let k = v["k"].as_u64().unwrap() as u32;
                if v["__DORIS_DELETE_SIGN__"] == 1 {
                    t.remove(&k);
                } else {
                    let mut row = v.clone();
                    row.as_object_mut().unwrap().remove("__DORIS_DELETE_SIGN__");
                    t.insert(k, row);
                }
            }
            st.labels.insert(db_label, rows.len() as u64);
            st.loads.push((label.clone(), "Success".into()));
            respond(s, "200 OK", &[], &answer("Success", "OK", rows.len() as u64, ""));
        });
        Double { fe: format!("http://{fe_addr}"), state }
    }

    fn table(&self) -> BTreeMap<u32, Row> {
        self.table_named("orders")
    }

    fn table_named(&self, name: &str) -> BTreeMap<u32, Row> {
        let st = self.state.lock().unwrap();
        st.tables
            .get(name)
            .into_iter()
            .flatten()
            .map(|(k, v)| (*k, serde_json::from_value(v.clone()).unwrap()))
            .collect()
    }
}

fn spec(d: &Double, sink: &str) -> SinkSpec {
    spec_into(d, sink, "orders")
}

fn spec_into(d: &Double, sink: &str, table: &str) -> SinkSpec {
    let c = DorisConfig::new(&d.fe, "demo", table).credentials("root", "secret");
    SinkSpec::builder(sink, c).upsert().primary_key(["k"]).build().unwrap()
}

/// Two sinks of one name into two tables of one database: Doris keeps labels per database, so
/// the labels must name the table, or the second sink's loads are taken for replays of the
/// first's and dropped.
#[test]
fn two_sinks_of_one_name_into_two_tables_are_independent() {
    let d = Double::start(vec!["k", "v", "s"]);
    let history = keyed_history(9, 30, 10, 15);
    for table in ["orders", "orders_copy"] {
        assert_eq!(run(&history, &spec_into(&d, "same", table), 1, None), None);
        assert_eq!(d.table_named(table), state_before(&history, u64::MAX), "table {table}");
    }
    let st = d.state.lock().unwrap();
    assert!(st.loads.iter().all(|(_, s)| s == "Success"), "{:?}", st.loads);
}

#[test]
fn loads_follow_the_redirect_and_end_in_the_final_state() {
    let d = Double::start(vec!["k", "v", "s"]);
    let history = keyed_history(3, 30, 10, 15);
    assert_eq!(run(&history, &spec(&d, "orders"), 1, None), None);
    assert_eq!(d.table(), state_before(&history, u64::MAX));
    let st = d.state.lock().unwrap();
    assert!(st.backend_hits > 1, "one load per commit");
    assert_eq!(st.frontend_hits, st.backend_hits, "every load went to the frontend and was redirected");
    assert!(st.loads.iter().all(|(_, s)| s == "Success"), "{:?}", st.loads);
}

#[test]
fn labels_are_deterministic_and_a_replay_is_a_no_op() {
    let d = Double::start(vec!["k", "v", "s"]);
    let history = keyed_history(4, 30, 10, 15);
    let s = spec(&d, "orders");
    assert_eq!(run(&history, &s, 1, None), None);
    let first: Vec<String> = d.state.lock().unwrap().loads.iter().map(|l| l.0.clone()).collect();
    assert!(first.iter().all(|l| l.starts_with("dsink_orders_") && l.contains("_g0_w0_")), "{first:?}");
    let table = d.table();
    // The restarted sink replays everything; every load repeats a label and is refused.
    assert_eq!(run(&history, &s, 1, None), None);
    let st = d.state.lock().unwrap();
    let second: Vec<&(String, String)> = st.loads[first.len()..].iter().collect();
    assert_eq!(second.iter().map(|l| l.0.clone()).collect::<Vec<_>>(), first, "the same labels");
    assert!(second.iter().all(|l| l.1 == "Label Already Exists"), "{second:?}");
    drop(st);
    assert_eq!(d.table(), table);
}

#[test]
fn a_failed_load_reports_its_message() {
    let d = Double::start(vec!["k", "v"]); // the table lacks column `s`
    let history = vec![(Row { k: 1, v: 1, s: "x".into() }, 0, 1)];
    let e = run(&history, &spec(&d, "narrow"), 1, None).expect("the sink must stop");
    assert!(e.contains("column s is not in table") && e.contains("_load_error_log"), "{e}");
}

#[test]
fn wrong_credentials_are_not_retried_forever() {
    let d = Double::start(vec!["k", "v", "s"]);
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
    let d = Double::start(vec!["k", "v", "s"]);
    let with_creds = d.fe.replace("http://", "http://root:secret@");
    let c = DorisConfig::new(&with_creds, "demo", "orders");
    let s = SinkSpec::builder("creds-in-url", c).upsert().primary_key(["k"]).build().unwrap();
    assert!(!format!("{s:?}").contains("secret"), "{s:?}");
    let history = keyed_history(5, 10, 4, 5);
    assert_eq!(run(&history, &s, 1, None), None);
    assert_eq!(d.table(), state_before(&history, u64::MAX));

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
