//! A Doris Stream Load double, written from Doris's documented HTTP protocol because no Doris
//! server can be installed here; used by `tests/doris.rs` and the crash test of `tests/crash_tables.rs`,
//! which reach it over TCP on 127.0.0.1 (the crash test from a child `dsink` process).
//!
//! **What of Doris it imitates.** A frontend that answers `PUT /api/{db}/{table}/_stream_load`
//! with a 307 redirect to a backend (anything else is 404). A backend that checks Basic
//! credentials (`root:secret`, else 401), keeps labels per database (a repeated label is answered
//! `Label Already Exists` with `ExistingJobStatus` and loads nothing), requires `format: json` with
//! `read_json_by_line: true`, refuses a load whose lines are not JSON or name a column the table
//! lacks (`__DORIS_DELETE_SIGN__` only when declared in `hidden_columns`) with status `Fail` and an
//! `ErrorURL`, and otherwise applies it to a unique-key table on `k`: a row with
//! `__DORIS_DELETE_SIGN__ = 1` deletes its key, any other replaces it. Every answer is the status
//! JSON of Stream Load (`Label`, `Status`, `Message`, `NumberTotalRows`, …). Tables need no
//! creation: each name gets one when first loaded into; every table has the columns given to
//! [`DorisDouble::start`]. Not imitated: other formats, partial updates (the `partial_columns`
//! header of each load is recorded, not applied), sequence columns,
//! transactions of more than one request, group commit.
//!
//! **Checks beyond Doris.** The double counts the frontend's and the backend's requests, records
//! `(label, status)` and `(label, body size)` of every load, and checks every load it applies: rows carry a column `v`
//! that grows through a key's history (as in `common::keyed_history` and `common::crash::history`),
//! so a row or delete taking a key back to an older `v` than one applied before (a replayed load
//! applied again instead of refused by its label) is recorded in [`State::stale`], even when a
//! later load restores the key before anyone reads the table.
//!
//! The double is stopped (both listeners closed) when dropped.

// Each test file reads only part of the double's state.
#![allow(dead_code)]

#[path = "../support/http_server.rs"]
pub mod http_server;

use crate::common::Row;
use http_server::{respond, serve};
use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The `Authorization` header the backend accepts: user `root`, password `secret`.
pub const AUTH: &str = "Basic cm9vdDpzZWNyZXQ="; // root:secret

/// What the double holds and saw.
#[derive(Default)]
pub struct State {
    /// (database, label) → rows it loaded: Doris keeps labels per database.
    pub labels: HashMap<(String, String), u64>,
    /// The unique-key tables by name: k → row.
    pub tables: BTreeMap<String, BTreeMap<u32, serde_json::Value>>,
    /// (label, answer status) of every load the backend answered, in order.
    pub loads: Vec<(String, String)>,
    /// (label, body bytes) of every load past the credential check, in order.
    pub bodies: Vec<(String, usize)>,
    /// The `partial_columns` header of every load past the credential check, in order.
    pub partial_columns: Vec<Option<String>>,
    pub frontend_hits: usize,
    pub backend_hits: usize,
    /// Columns every table has (besides the hidden delete sign).
    pub columns: Vec<&'static str>,
    /// Per table and key, the last write applied: `(v, 1)` for a delete of the row with `v`,
    /// `(v, 0)` for the row with `v`.
    pub last: BTreeMap<(String, u32), (u64, u8)>,
    /// Writes that took a key back to an older state than one applied before.
    pub stale: Vec<String>,
}

/// A running double: the frontend's URL (`http://127.0.0.1:port`) and the state.
pub struct DorisDouble {
    pub fe: String,
    pub state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    addrs: Vec<SocketAddr>,
}

impl DorisDouble {
    /// Starts a frontend and a backend on ephemeral ports; every table has `columns`.
    pub fn start(columns: &[&'static str]) -> DorisDouble {
        let state = Arc::new(Mutex::new(State { columns: columns.to_vec(), ..State::default() }));
        let stop = Arc::new(AtomicBool::new(false));
        let (be, fe) = (TcpListener::bind("127.0.0.1:0").unwrap(), TcpListener::bind("127.0.0.1:0").unwrap());
        let (be_addr, fe_addr) = (be.local_addr().unwrap(), fe.local_addr().unwrap());
        let st = state.clone();
        // Frontend: checks the method and path, then redirects to the backend.
        serve(fe, stop.clone(), move |req, s| {
            st.lock().unwrap().frontend_hits += 1;
            if req.method != "PUT" || !req.path.ends_with("/_stream_load") {
                return respond(s, "404 Not Found", &[], "not found");
            }
            respond(s, "307 Temporary Redirect", &[("Location", format!("http://{be_addr}{}", req.path))], "");
        });
        let st = state.clone();
        // Backend: the load itself.
        serve(be, stop.clone(), move |req, s| {
            let mut st = st.lock().unwrap();
            st.backend_hits += 1;
            if req.headers.get("authorization").map(String::as_str) != Some(AUTH) {
                return respond(s, "401 Unauthorized", &[], "{\"status\":\"FAILED\",\"msg\":\"Access denied\"}");
            }
            st.partial_columns.push(req.headers.get("partial_columns").cloned());
            let label = req.headers.get("label").cloned().unwrap_or_default();
            st.bodies.push((label.clone(), req.body.len()));
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
            // The check beyond Doris: no key goes back to an older `v`.
            for v in &rows {
                let k = v["k"].as_u64().unwrap() as u32;
                let version =
                    (v["v"].as_u64().expect("a row with a column v"), u8::from(v["__DORIS_DELETE_SIGN__"] == 1));
                let before = st.last.insert((table.clone(), k), version);
                if before.is_some_and(|b| b > version) {
                    st.stale.push(format!("load {label}: key {k} from {before:?} back to {version:?}"));
                }
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
        DorisDouble { fe: format!("http://{fe_addr}"), state, stop, addrs: vec![be_addr, fe_addr] }
    }

    /// The table `name` (empty if nothing was loaded into it), by key.
    pub fn table(&self, name: &str) -> BTreeMap<u32, Row> {
        let st = self.state.lock().unwrap();
        st.tables
            .get(name)
            .into_iter()
            .flatten()
            .map(|(k, v)| (*k, serde_json::from_value(v.clone()).unwrap()))
            .collect()
    }
}

impl Drop for DorisDouble {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake each accept loop, which then sees the flag and ends (closing its listener).
        for a in &self.addrs {
            let _ = TcpStream::connect(a);
        }
    }
}
