//! A CQL native-protocol v4 server double, written from the protocol specification
//! (`native_protocol_v4.spec`) and Cassandra's documented write semantics, because no Cassandra or
//! ScyllaDB server can be installed here.
//!
//! **Wire.** Frames with stream ids; OPTIONS → SUPPORTED (no compression, no ScyllaDB sharding),
//! STARTUP → READY (or AUTHENTICATE, with `PasswordAuthenticator` when credentials are set),
//! AUTH_RESPONSE, REGISTER → READY, QUERY, PREPARE, EXECUTE (UNPREPARED for an unknown id), BATCH;
//! RESULT Void / Rows (with paging by offset) / SetKeyspace / Prepared (bind and result metadata,
//! partition key indexes) / SchemaChange; ERROR with the specification's codes (0x000A protocol, 0x0100 bad credentials,
//! 0x2000 syntax, 0x2200 invalid, 0x2400 already exists, 0x2500 unprepared). No EVENT pushes, no
//! tracing, no compression, no custom payloads in answers.
//!
//! **Statements.** Only these shapes parse; anything else is a syntax error (0x2000), and unknown
//! keyspaces, tables or columns are invalid (0x2200), so a sink change the double does not know
//! fails loudly:
//!
//! * `SELECT c1, c2 | * FROM ks.t [WHERE c = term|c IN term [AND …]] [ALLOW FILTERING]`;
//! * `INSERT INTO ks.t JSON term [DEFAULT NULL|DEFAULT UNSET] [USING TIMESTAMP term]`;
//! * `INSERT INTO ks.t (c, …) VALUES (term, …) [USING TIMESTAMP term]`;
//! * `DELETE FROM ks.t [USING TIMESTAMP term] WHERE c = term|fromJson(term) AND …` (whole rows);
//! * `CREATE TABLE [IF NOT EXISTS] ks.t (…, PRIMARY KEY ((p, …), c, …))`, `CREATE KEYSPACE`;
//! * `USE ks` (per connection; a prepared statement keeps the keyspace it was prepared in).
//!
//! `system.local`, `system.peers` and `system_schema.{keyspaces,tables,columns,types,views}` are
//! answered from the catalog with Cassandra's column types; `system_schema.scylla_*` are unknown,
//! as on Cassandra (the driver falls back on the Invalid error).
//!
//! **Write semantics (Cassandra's).** Values are kept as their serialized bytes. Per cell, the
//! write with the higher timestamp wins; on equal timestamps a tombstone (null) wins over a value,
//! and between two values the greater one, comparing bytes unsigned (Cassandra's
//! `Conflicts.resolveRegular`). An INSERT also writes the row marker (primary-key liveness) with
//! its timestamp. A row DELETE is a tombstone at its timestamp that shadows the marker and every
//! cell written at or below it (`DeletionTime.deletes`: `ts <= markedForDeleteAt`), and is itself
//! shadowed by later writes. A row is visible while it has a live marker or a live non-null cell.
//! Shadowed data is dropped at write time (as a compaction would); tombstones are kept forever
//! (no `gc_grace_seconds`). Rows come back in primary-key byte order, not token order. A BATCH
//! spanning several partitions is refused past `batch_size_fail_threshold_in_kb` (50 KiB) of data
//! counted as `Row.dataSize()` does, approximately.
//!
//! **Faults.** [`Db::batch_faults`] makes the next batches fail with an error (applied first or
//! not, as a timeout may be) or go unanswered.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

// ---------------------------------------------------------------------------------------------
// Errors

#[derive(Debug, Clone, PartialEq)]
pub struct CqlError {
    pub code: i32,
    pub message: String,
    /// Extra body after the message (e.g. the id of an UNPREPARED error).
    extra: Vec<u8>,
}

pub const PROTOCOL: i32 = 0x000A;
pub const BAD_CREDENTIALS: i32 = 0x0100;
pub const SYNTAX: i32 = 0x2000;
pub const INVALID: i32 = 0x2200;
pub const ALREADY_EXISTS: i32 = 0x2400;
pub const UNPREPARED: i32 = 0x2500;

fn err(code: i32, message: impl Into<String>) -> CqlError {
    CqlError { code, message: message.into(), extra: Vec::new() }
}
fn invalid(message: impl Into<String>) -> CqlError {
    err(INVALID, message)
}
fn syntax(message: impl Into<String>) -> CqlError {
    err(SYNTAX, message)
}

type R<T> = Result<T, CqlError>;

// ---------------------------------------------------------------------------------------------
// Types and values

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ty {
    BigInt,
    Blob,
    Boolean,
    Double,
    Int,
    Text,
    Uuid,
    Inet,
    List(Box<Ty>),
    Set(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
}

impl Ty {
    fn parse(p: &mut Parser) -> R<Ty> {
        let name = p.ident()?;
        let mut args = Vec::new();
        if p.sym('<') {
            loop {
                args.push(Ty::parse(p)?);
                if !p.sym(',') {
                    break;
                }
            }
            p.expect_sym('>')?;
        }
        let one = |a: &mut Vec<Ty>| -> R<Box<Ty>> {
            (a.len() == 1)
                .then(|| Box::new(a.remove(0)))
                .ok_or_else(|| syntax(format!("bad type arguments for {name}")))
        };
        Ok(match name.as_str() {
            "bigint" => Ty::BigInt,
            "blob" => Ty::Blob,
            "boolean" => Ty::Boolean,
            "double" => Ty::Double,
            "int" => Ty::Int,
            "text" | "varchar" => Ty::Text,
            "uuid" => Ty::Uuid,
            "inet" => Ty::Inet,
            "frozen" => *one(&mut args)?,
            "list" => Ty::List(one(&mut args)?),
            "set" => Ty::Set(one(&mut args)?),
            "map" if args.len() == 2 => {
                let v = args.pop().unwrap();
                Ty::Map(Box::new(args.pop().unwrap()), Box::new(v))
            }
            other => return Err(invalid(format!("type `{other}` is not supported by the CQL double"))),
        })
    }

    fn from_str(s: &str) -> Ty {
        Ty::parse(&mut Parser::new(s).expect("type tokens")).expect("a known type")
    }

    /// The name `system_schema.columns.type` shows.
    pub fn cql_name(&self) -> String {
        match self {
            Ty::BigInt => "bigint".into(),
            Ty::Blob => "blob".into(),
            Ty::Boolean => "boolean".into(),
            Ty::Double => "double".into(),
            Ty::Int => "int".into(),
            Ty::Text => "text".into(),
            Ty::Uuid => "uuid".into(),
            Ty::Inet => "inet".into(),
            Ty::List(t) => format!("frozen<list<{}>>", t.cql_name()),
            Ty::Set(t) => format!("frozen<set<{}>>", t.cql_name()),
            Ty::Map(k, v) => format!("frozen<map<{}, {}>>", k.cql_name(), v.cql_name()),
        }
    }

    /// The `[option]` of the protocol.
    fn write_option(&self, out: &mut Vec<u8>) {
        let id: u16 = match self {
            Ty::BigInt => 0x02,
            Ty::Blob => 0x03,
            Ty::Boolean => 0x04,
            Ty::Double => 0x07,
            Ty::Int => 0x09,
            Ty::Uuid => 0x0C,
            Ty::Text => 0x0D,
            Ty::Inet => 0x10,
            Ty::List(_) => 0x20,
            Ty::Map(..) => 0x21,
            Ty::Set(_) => 0x22,
        };
        out.extend_from_slice(&id.to_be_bytes());
        match self {
            Ty::List(t) | Ty::Set(t) => t.write_option(out),
            Ty::Map(k, v) => {
                k.write_option(out);
                v.write_option(out);
            }
            _ => {}
        }
    }

    /// Checks that `b` is a valid serialization of this type.
    fn validate(&self, b: &[u8]) -> R<()> {
        let fixed = |n: usize, what: &str| {
            if b.len() == n {
                Ok(())
            } else {
                Err(invalid(format!("Expected {n} byte {what} ({})", b.len())))
            }
        };
        match self {
            Ty::BigInt | Ty::Double => fixed(8, "long"),
            Ty::Int => fixed(4, "int"),
            Ty::Boolean => fixed(1, "boolean"),
            Ty::Uuid => fixed(16, "uuid"),
            Ty::Inet if b.len() == 4 || b.len() == 16 => Ok(()),
            Ty::Inet => Err(invalid("Invalid inet")),
            Ty::Text => std::str::from_utf8(b).map(|_| ()).map_err(|_| invalid("Invalid UTF-8 bytes")),
            Ty::Blob => Ok(()),
            Ty::List(t) | Ty::Set(t) => split_collection(b, 1)?.iter().try_for_each(|e| t.validate(e)),
            Ty::Map(k, v) => {
                let items = split_collection(b, 2)?;
                items.chunks(2).try_for_each(|kv| k.validate(&kv[0]).and_then(|_| v.validate(&kv[1])))
            }
        }
    }

    /// Cassandra's `fromJSONObject`: a JSON value into this type's bytes (`None` for null).
    pub fn json_to_bytes(&self, v: &serde_json::Value) -> R<Option<Vec<u8>>> {
        use serde_json::Value as J;
        let bad = |expected: &str| {
            invalid(format!(
                "Expected {expected}, but got {}: {v}",
                match v {
                    J::String(_) => "a String",
                    J::Number(n) if n.is_f64() => "a Double",
                    J::Number(_) => "an Integer",
                    J::Bool(_) => "a Boolean",
                    J::Array(_) => "a List",
                    _ => "a Map",
                }
            ))
        };
        if v.is_null() {
            return Ok(None);
        }
        Ok(Some(match self {
            Ty::Int => {
                let n = match v {
                    J::Number(n) => n.as_i64(),
                    J::String(s) => s.parse::<i64>().ok(),
                    _ => None,
                };
                let n = n.and_then(|n| i32::try_from(n).ok()).ok_or_else(|| bad("an int value"))?;
                n.to_be_bytes().to_vec()
            }
            Ty::BigInt => {
                let n = match v {
                    J::Number(n) => n.as_i64(),
                    J::String(s) => s.parse::<i64>().ok(),
                    _ => None,
                };
                n.ok_or_else(|| bad("a bigint value"))?.to_be_bytes().to_vec()
            }
            Ty::Double => {
                let n = match v {
                    J::Number(n) => n.as_f64(),
                    J::String(s) => s.parse::<f64>().ok(),
                    _ => None,
                };
                n.ok_or_else(|| bad("a double value"))?.to_be_bytes().to_vec()
            }
            Ty::Boolean => match v {
                J::Bool(b) => vec![*b as u8],
                J::String(s) if s.eq_ignore_ascii_case("true") => vec![1],
                J::String(s) if s.eq_ignore_ascii_case("false") => vec![0],
                _ => return Err(bad("a boolean value")),
            },
            Ty::Text => v.as_str().ok_or_else(|| bad("a UTF-8 string"))?.as_bytes().to_vec(),
            _ => return Err(invalid(format!("JSON for {} is not supported by the CQL double", self.cql_name()))),
        }))
    }

    /// The bytes as JSON (for reading tables back in tests).
    pub fn bytes_to_json(&self, b: &[u8]) -> serde_json::Value {
        use serde_json::json;
        match self {
            Ty::Int => json!(i32::from_be_bytes(b.try_into().unwrap())),
            Ty::BigInt => json!(i64::from_be_bytes(b.try_into().unwrap())),
            Ty::Double => json!(f64::from_be_bytes(b.try_into().unwrap())),
            Ty::Boolean => json!(b[0] != 0),
            Ty::Text => json!(std::str::from_utf8(b).unwrap()),
            Ty::List(t) | Ty::Set(t) => {
                serde_json::Value::Array(split_collection(b, 1).unwrap().iter().map(|e| t.bytes_to_json(e)).collect())
            }
            _ => json!(b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        }
    }
}

/// The elements of a v4 collection value: `[int n]` then `n * per` `[bytes]`.
fn split_collection(b: &[u8], per: usize) -> R<Vec<Vec<u8>>> {
    let mut r = Reader { b, pos: 0 };
    let n = r.i32().map_err(|_| invalid("bad collection"))?;
    let mut out = Vec::new();
    for _ in 0..(n.max(0) as usize * per) {
        match r.bytes().map_err(|_| invalid("bad collection"))? {
            Bound::Value(v) => out.push(v),
            _ => return Err(invalid("null is not allowed inside collections")),
        }
    }
    Ok(out)
}

fn collection(items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = (items.len() as i32).to_be_bytes().to_vec();
    for i in items {
        out.extend_from_slice(&(i.len() as i32).to_be_bytes());
        out.extend_from_slice(i);
    }
    out
}

/// A v4 map value from alternating keys and values.
fn map_bytes(items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = collection(items);
    out[..4].copy_from_slice(&((items.len() / 2) as i32).to_be_bytes());
    out
}

/// A bound value of the protocol: `[bytes]` with -1 for null and -2 for "not set".
#[derive(Clone, Debug, PartialEq)]
pub enum Bound {
    Value(Vec<u8>),
    Null,
    Unset,
}

// ---------------------------------------------------------------------------------------------
// Storage with Cassandra's reconciliation rules

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    pub ts: i64,
    /// `None`: a cell tombstone (the column was written null).
    pub value: Option<Vec<u8>>,
}

/// Which of two versions of a cell survives (`Conflicts.resolveRegular`): the higher timestamp;
/// on a tie the tombstone; between two values the greater bytes (unsigned comparison).
pub fn reconcile(a: &Cell, b: &Cell) -> Cell {
    if a.ts != b.ts {
        return if a.ts > b.ts { a.clone() } else { b.clone() };
    }
    match (&a.value, &b.value) {
        (None, _) => a.clone(),
        (_, None) => b.clone(),
        (Some(x), Some(y)) => {
            if x >= y {
                a.clone()
            } else {
                b.clone()
            }
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredRow {
    /// The row tombstone: shadows everything written at or below it.
    pub deletion: Option<i64>,
    /// The primary-key liveness (row marker) an INSERT writes.
    pub marker: Option<i64>,
    pub cells: BTreeMap<String, Cell>,
}

impl StoredRow {
    fn shadowed(&self, ts: i64) -> bool {
        self.deletion.is_some_and(|d| ts <= d)
    }

    /// An upsert at `ts` (with the row marker when `marker`) of `cells`; returns whether anything changed.
    pub fn write(&mut self, ts: i64, marker: bool, cells: &[(String, Option<Vec<u8>>)]) -> bool {
        if self.shadowed(ts) {
            return false;
        }
        let before = self.clone();
        if marker {
            self.marker = Some(self.marker.map_or(ts, |m| m.max(ts)));
        }
        for (c, v) in cells {
            let new = Cell { ts, value: v.clone() };
            let merged = match self.cells.get(c) {
                Some(old) => reconcile(old, &new),
                None => new,
            };
            self.cells.insert(c.clone(), merged);
        }
        *self != before
    }

    /// A row deletion at `ts`; returns whether anything changed.
    pub fn delete(&mut self, ts: i64) -> bool {
        let before = self.clone();
        let d = self.deletion.map_or(ts, |d| d.max(ts));
        self.deletion = Some(d);
        if self.marker.is_some_and(|m| m <= d) {
            self.marker = None;
        }
        self.cells.retain(|_, c| c.ts > d);
        *self != before
    }

    pub fn live(&self) -> bool {
        self.marker.is_some() || self.cells.values().any(|c| c.value.is_some())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    PartitionKey,
    Clustering,
    Regular,
}

#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub ty: Ty,
    pub kind: Kind,
    /// Position within the partition key or clustering columns; -1 for regular columns.
    pub position: i32,
}

#[derive(Clone, Debug, Default)]
pub struct Table {
    pub columns: Vec<Column>,
    /// Primary key bytes (partition key, then clustering columns) → the row.
    pub rows: BTreeMap<Vec<Vec<u8>>, StoredRow>,
}

impl Table {
    fn key_columns(&self) -> Vec<&Column> {
        let mut k: Vec<&Column> = self.columns.iter().filter(|c| c.kind != Kind::Regular).collect();
        k.sort_by_key(|c| (c.kind.clone(), c.position));
        k
    }
    fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// One write the double applied (or found shadowed), for tests to inspect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteRecord {
    pub table: String,
    pub delete: bool,
    pub ts: i64,
    /// Whether the write changed the stored state (false: a replay or a shadowed older write).
    pub changed: bool,
}

/// A keyspace: its replication map and its tables.
pub type Keyspace = (BTreeMap<String, String>, BTreeMap<String, Table>);

/// What PREPARE tells of a statement: keyspace, table, bind markers' names and types, and the
/// indexes of the markers binding the partition key.
type BindInfo = (String, String, Vec<(String, Ty)>, Vec<u16>);

#[derive(Default)]
pub struct Db {
    /// keyspace → (replication map, tables)
    pub keyspaces: BTreeMap<String, Keyspace>,
    pub schema_version: u64,
    /// Prepared id → (statement, the connection's keyspace when it was prepared).
    prepared: HashMap<Vec<u8>, (String, Option<String>)>,
    pub writes: Vec<WriteRecord>,
    /// (opcode name, statement text) of every request, in arrival order.
    pub requests: Vec<(&'static str, String)>,
    credentials: Option<(String, String)>,
    /// Faults for the next BATCH requests, in order.
    pub batch_faults: std::collections::VecDeque<Fault>,
    /// `batch_size_fail_threshold_in_kb` in bytes (Cassandra's default: 50 KiB); 0 for none.
    pub batch_fail_threshold: usize,
}

/// What the double does to a request instead of answering it normally.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answers with the error; with `applied`, after applying the batch (a timeout after the
    /// write landed: the client cannot tell the difference).
    Error { error: CqlError, applied: bool },
    /// Never answers (the stream stays open, the connection alive), applying nothing.
    Stall,
}

/// An opcode no answer has: the request is left unanswered.
const NO_ANSWER: u8 = 0xFF;

/// A write timeout (0x1100) as a coordinator reports it for an unlogged batch at ONE.
pub fn write_timeout() -> CqlError {
    let mut e = err(0x1100, "Operation timed out - received only 0 responses.");
    e.extra.extend_from_slice(&1u16.to_be_bytes());
    e.extra.extend_from_slice(&0i32.to_be_bytes());
    e.extra.extend_from_slice(&1i32.to_be_bytes());
    write_string(&mut e.extra, "UNLOGGED_BATCH");
    e
}

/// Unavailable (0x1000): not enough live replicas for ONE.
pub fn unavailable() -> CqlError {
    let mut e = err(0x1000, "Cannot achieve consistency level ONE");
    e.extra.extend_from_slice(&1u16.to_be_bytes());
    e.extra.extend_from_slice(&1i32.to_be_bytes());
    e.extra.extend_from_slice(&0i32.to_be_bytes());
    e
}

// ---------------------------------------------------------------------------------------------
// Tokens and parser

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// An unquoted identifier or keyword, lowercased (CQL folds case).
    Ident(String),
    /// A `"quoted"` identifier, case kept.
    Quoted(String),
    Str(String),
    Num(String),
    Marker,
    Sym(char),
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    i: usize,
    markers: usize,
    /// The keyspace of `USE` on the connection, for unqualified table names.
    keyspace: Option<String>,
}

impl Parser {
    fn new(src: &str) -> R<Parser> {
        let cs: Vec<char> = src.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < cs.len() {
            let c = cs[i];
            let start = i;
            if c.is_whitespace() {
                i += 1;
                continue;
            }
            let tok = if c.is_ascii_alphabetic() || c == '_' {
                while i < cs.len() && (cs[i].is_ascii_alphanumeric() || cs[i] == '_') {
                    i += 1;
                }
                Tok::Ident(cs[start..i].iter().collect::<String>().to_ascii_lowercase())
            } else if c.is_ascii_digit() || (c == '-' && cs.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
                i += 1;
                while i < cs.len() && (cs[i].is_ascii_digit() || cs[i] == '.') {
                    i += 1;
                }
                Tok::Num(cs[start..i].iter().collect())
            } else if c == '\'' || c == '"' {
                let mut s = String::new();
                i += 1;
                loop {
                    match cs.get(i) {
                        None => return Err(syntax(format!("line 1:{start} unterminated quote"))),
                        Some(&q) if q == c && cs.get(i + 1) == Some(&c) => {
                            s.push(c);
                            i += 2;
                        }
                        Some(&q) if q == c => {
                            i += 1;
                            break;
                        }
                        Some(&q) => {
                            s.push(q);
                            i += 1;
                        }
                    }
                }
                if c == '\'' {
                    Tok::Str(s)
                } else {
                    Tok::Quoted(s)
                }
            } else if c == '?' {
                i += 1;
                Tok::Marker
            } else if "(),.=;*<>{}:[]".contains(c) {
                i += 1;
                Tok::Sym(c)
            } else {
                return Err(syntax(format!("line 1:{start} token recognition error at: '{c}'")));
            };
            toks.push((start, tok));
        }
        Ok(Parser { toks, i: 0, markers: 0, keyspace: None })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|t| &t.1)
    }
    fn unexpected<T>(&self, expecting: &str) -> R<T> {
        Err(match self.toks.get(self.i) {
            Some((pos, t)) => syntax(format!(
                "line 1:{pos} mismatched input {t:?} expecting {expecting} (the CQL double knows only the sink's statement shapes)"
            )),
            None => syntax(format!("line 1:end unexpected end of statement, expecting {expecting}")),
        })
    }
    fn kw(&mut self, k: &str) -> bool {
        if self.peek() == Some(&Tok::Ident(k.into())) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect_kw(&mut self, k: &str) -> R<()> {
        if self.kw(k) {
            Ok(())
        } else {
            self.unexpected(&k.to_ascii_uppercase())
        }
    }
    fn sym(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Sym(c)) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect_sym(&mut self, c: char) -> R<()> {
        if self.sym(c) {
            Ok(())
        } else {
            self.unexpected(&format!("'{c}'"))
        }
    }
    fn ident(&mut self) -> R<String> {
        match self.peek().cloned() {
            Some(Tok::Ident(s)) | Some(Tok::Quoted(s)) => {
                self.i += 1;
                Ok(s)
            }
            _ => self.unexpected("an identifier"),
        }
    }
    /// `ks.table`; an unqualified name is refused as Cassandra does without `USE`.
    fn qualified(&mut self) -> R<(String, String)> {
        let a = self.ident()?;
        if !self.sym('.') {
            return match &self.keyspace {
                Some(ks) => Ok((ks.clone(), a)),
                None => Err(invalid(
                    "No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename",
                )),
            };
        }
        Ok((a, self.ident()?))
    }
    fn term(&mut self) -> R<Term> {
        match self.peek().cloned() {
            Some(Tok::Marker) => {
                self.i += 1;
                self.markers += 1;
                Ok(Term::Marker(self.markers - 1))
            }
            Some(Tok::Str(s)) => {
                self.i += 1;
                Ok(Term::Str(s))
            }
            Some(Tok::Num(n)) => {
                self.i += 1;
                Ok(Term::Num(n))
            }
            Some(Tok::Ident(k)) if k == "fromjson" => {
                self.i += 1;
                self.expect_sym('(')?;
                let t = self.term()?;
                self.expect_sym(')')?;
                Ok(Term::FromJson(Box::new(t)))
            }
            Some(Tok::Ident(k)) if k == "true" || k == "false" => {
                self.i += 1;
                Ok(Term::Bool(k == "true"))
            }
            Some(Tok::Ident(k)) if k == "null" => {
                self.i += 1;
                Ok(Term::Null)
            }
            _ => self.unexpected("a bind marker or a literal"),
        }
    }
    fn end(&mut self) -> R<()> {
        self.sym(';');
        if self.peek().is_some() {
            return self.unexpected("the end of the statement");
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Term {
    Marker(usize),
    Str(String),
    Num(String),
    Bool(bool),
    Null,
    FromJson(Box<Term>),
}

#[derive(Clone, Debug)]
enum Rel {
    Eq(String, Term),
    In(String, Term),
}

#[derive(Clone, Debug)]
enum Stmt {
    Select { ks: String, table: String, columns: Option<Vec<String>>, rels: Vec<Rel>, allow_filtering: bool },
    InsertJson { ks: String, table: String, json: Term, default_null: bool, ts: Option<Term> },
    InsertValues { ks: String, table: String, columns: Vec<String>, values: Vec<Term>, ts: Option<Term> },
    Delete { ks: String, table: String, ts: Option<Term>, rels: Vec<Rel> },
    CreateTable { if_not_exists: bool, ks: String, table: String, columns: Vec<Column> },
    CreateKeyspace { if_not_exists: bool, ks: String, replication: BTreeMap<String, String> },
    Use(String),
}

fn parse(src: &str, keyspace: Option<&str>) -> R<(Stmt, usize)> {
    let mut p = Parser::new(src)?;
    p.keyspace = keyspace.map(str::to_string);
    let s = if p.kw("use") {
        Stmt::Use(p.ident()?)
    } else if p.kw("select") {
        let columns = if p.sym('*') {
            None
        } else {
            let mut cs = vec![p.ident()?];
            while p.sym(',') {
                cs.push(p.ident()?);
            }
            Some(cs)
        };
        p.expect_kw("from")?;
        let (ks, table) = p.qualified()?;
        let mut rels = Vec::new();
        if p.kw("where") {
            rels = relations(&mut p, true)?;
        }
        let allow_filtering = p.kw("allow");
        if allow_filtering {
            p.expect_kw("filtering")?;
        }
        Stmt::Select { ks, table, columns, rels, allow_filtering }
    } else if p.kw("insert") {
        p.expect_kw("into")?;
        let (ks, table) = p.qualified()?;
        let s = if p.kw("json") {
            let json = p.term()?;
            let mut default_null = true;
            if p.kw("default") {
                default_null = if p.kw("null") {
                    true
                } else {
                    p.expect_kw("unset")?;
                    false
                };
            }
            let ts = using_timestamp(&mut p)?;
            Stmt::InsertJson { ks, table, json, default_null, ts }
        } else {
            p.expect_sym('(')?;
            let mut columns = vec![p.ident()?];
            while p.sym(',') {
                columns.push(p.ident()?);
            }
            p.expect_sym(')')?;
            p.expect_kw("values")?;
            p.expect_sym('(')?;
            let mut values = vec![p.term()?];
            while p.sym(',') {
                values.push(p.term()?);
            }
            p.expect_sym(')')?;
            if columns.len() != values.len() {
                return Err(invalid("Unmatched column names/values"));
            }
            let ts = using_timestamp(&mut p)?;
            Stmt::InsertValues { ks, table, columns, values, ts }
        };
        if p.kw("if") {
            return p.unexpected("no IF (lightweight transactions are not supported by the CQL double)");
        }
        s
    } else if p.kw("delete") {
        p.expect_kw("from")?;
        let (ks, table) = p.qualified()?;
        let ts = using_timestamp(&mut p)?;
        p.expect_kw("where")?;
        let rels = relations(&mut p, false)?;
        Stmt::Delete { ks, table, ts, rels }
    } else if p.kw("create") {
        if p.kw("keyspace") {
            let if_not_exists = if_not_exists(&mut p)?;
            let ks = p.ident()?;
            p.expect_kw("with")?;
            p.expect_kw("replication")?;
            p.expect_sym('=')?;
            p.expect_sym('{')?;
            let mut replication = BTreeMap::new();
            loop {
                let k = match p.term()? {
                    Term::Str(s) => s,
                    _ => return p.unexpected("a string"),
                };
                p.expect_sym(':')?;
                let v = match p.term()? {
                    Term::Str(s) | Term::Num(s) => s,
                    _ => return p.unexpected("a string or a number"),
                };
                replication.insert(k, v);
                if !p.sym(',') {
                    break;
                }
            }
            p.expect_sym('}')?;
            if let Some(c) = replication.get_mut("class") {
                if !c.contains('.') {
                    *c = format!("org.apache.cassandra.locator.{c}");
                }
            }
            Stmt::CreateKeyspace { if_not_exists, ks, replication }
        } else {
            p.expect_kw("table")?;
            let if_not_exists = if_not_exists(&mut p)?;
            let (ks, table) = p.qualified()?;
            p.expect_sym('(')?;
            let mut columns: Vec<Column> = Vec::new();
            let mut pk: Vec<String> = Vec::new();
            let mut ck: Vec<String> = Vec::new();
            loop {
                if p.kw("primary") {
                    p.expect_kw("key")?;
                    p.expect_sym('(')?;
                    if p.sym('(') {
                        pk.push(p.ident()?);
                        while p.sym(',') {
                            pk.push(p.ident()?);
                        }
                        p.expect_sym(')')?;
                    } else {
                        pk.push(p.ident()?);
                    }
                    while p.sym(',') {
                        ck.push(p.ident()?);
                    }
                    p.expect_sym(')')?;
                } else {
                    let name = p.ident()?;
                    let ty = Ty::parse(&mut p)?;
                    if matches!(ty, Ty::List(_) | Ty::Set(_) | Ty::Map(..)) {
                        return Err(invalid("collection columns are not supported by the CQL double"));
                    }
                    if p.kw("primary") {
                        p.expect_kw("key")?;
                        pk.push(name.clone());
                    }
                    columns.push(Column { name, ty, kind: Kind::Regular, position: -1 });
                }
                if !p.sym(',') {
                    break;
                }
            }
            p.expect_sym(')')?;
            if pk.is_empty() {
                return Err(invalid("No PRIMARY KEY specifed (exactly one required)"));
            }
            for (kind, names) in [(Kind::PartitionKey, &pk), (Kind::Clustering, &ck)] {
                for (pos, n) in names.iter().enumerate() {
                    let c = columns
                        .iter_mut()
                        .find(|c| &c.name == n)
                        .ok_or_else(|| invalid(format!("Unknown definition {n} referenced in PRIMARY KEY")))?;
                    c.kind = kind.clone();
                    c.position = pos as i32;
                }
            }
            Stmt::CreateTable { if_not_exists, ks, table, columns }
        }
    } else {
        return p.unexpected("USE, SELECT, INSERT, DELETE or CREATE");
    };
    p.end()?;
    Ok((s, p.markers))
}

fn if_not_exists(p: &mut Parser) -> R<bool> {
    if p.kw("if") {
        p.expect_kw("not")?;
        p.expect_kw("exists")?;
        return Ok(true);
    }
    Ok(false)
}

fn using_timestamp(p: &mut Parser) -> R<Option<Term>> {
    if p.kw("using") {
        p.expect_kw("timestamp")?;
        return Ok(Some(p.term()?));
    }
    Ok(None)
}

fn relations(p: &mut Parser, allow_in: bool) -> R<Vec<Rel>> {
    let mut rels = Vec::new();
    loop {
        let c = p.ident()?;
        if p.sym('=') {
            rels.push(Rel::Eq(c, p.term()?));
        } else if allow_in && p.kw("in") {
            rels.push(Rel::In(c, p.term()?));
        } else {
            return p.unexpected(if allow_in { "'=' or IN" } else { "'='" });
        }
        if !p.kw("and") {
            return Ok(rels);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Execution

/// A result to send back.
#[derive(Debug)]
pub enum Outcome {
    Void,
    Rows { ks: String, table: String, columns: Vec<(String, Ty)>, rows: Vec<Vec<Option<Vec<u8>>>>, more: Option<usize> },
    SchemaChange { target: &'static str, ks: String, table: Option<String> },
    SetKeyspace(String),
}

/// The column definitions and rows of a table as a SELECT sees it (virtual system tables
/// included); `None` if the table is unknown.
type Relation = (Vec<Column>, Vec<Vec<Option<Vec<u8>>>>);

fn col(name: &str, ty: &str, kind: Kind, position: i32) -> Column {
    Column { name: name.into(), ty: Ty::from_str(ty), kind, position }
}

const HOST_ID: [u8; 16] = [0x5e, 0x1f, 0x1e, 0x3d, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 1];

impl Db {
    fn schema_uuid(&self) -> Vec<u8> {
        let mut u = [0u8; 16];
        u[..8].copy_from_slice(&self.schema_version.to_be_bytes());
        u[6] = 0x40 | (u[6] & 0x0f);
        u[8] = 0x80;
        u.to_vec()
    }

    fn relation(&self, ks: &str, table: &str) -> R<Relation> {
        let text = |s: &str| Some(s.as_bytes().to_vec());
        let (pk, ck, reg) = (Kind::PartitionKey, Kind::Clustering, Kind::Regular);
        match (ks, table) {
            ("system", "local") => {
                let cols = vec![
                    col("key", "text", pk, 0),
                    col("host_id", "uuid", reg.clone(), -1),
                    col("rpc_address", "inet", reg.clone(), -1),
                    col("broadcast_address", "inet", reg.clone(), -1),
                    col("listen_address", "inet", reg.clone(), -1),
                    col("data_center", "text", reg.clone(), -1),
                    col("rack", "text", reg.clone(), -1),
                    col("tokens", "set<text>", reg.clone(), -1),
                    col("cluster_name", "text", reg.clone(), -1),
                    col("schema_version", "uuid", reg.clone(), -1),
                    col("release_version", "text", reg.clone(), -1),
                    col("cql_version", "text", reg.clone(), -1),
                    col("native_protocol_version", "text", reg.clone(), -1),
                    col("partitioner", "text", reg, -1),
                ];
                let lo = Some(vec![127, 0, 0, 1]);
                let row = vec![
                    text("local"),
                    Some(HOST_ID.to_vec()),
                    lo.clone(),
                    lo.clone(),
                    lo,
                    text("datacenter1"),
                    text("rack1"),
                    Some(collection(&[b"0".to_vec()])),
                    text("cql double"),
                    Some(self.schema_uuid()),
                    text("4.1.0"),
                    text("3.4.6"),
                    text("4"),
                    text("org.apache.cassandra.dht.Murmur3Partitioner"),
                ];
                Ok((cols, vec![row]))
            }
            ("system", "peers") => Ok((
                vec![
                    col("peer", "inet", pk, 0),
                    col("host_id", "uuid", reg.clone(), -1),
                    col("rpc_address", "inet", reg.clone(), -1),
                    col("preferred_ip", "inet", reg.clone(), -1),
                    col("data_center", "text", reg.clone(), -1),
                    col("rack", "text", reg.clone(), -1),
                    col("tokens", "set<text>", reg.clone(), -1),
                    col("schema_version", "uuid", reg.clone(), -1),
                    col("release_version", "text", reg, -1),
                ],
                Vec::new(),
            )),
            ("system_schema", "keyspaces") => Ok((
                vec![
                    col("keyspace_name", "text", pk, 0),
                    col("durable_writes", "boolean", reg.clone(), -1),
                    col("replication", "frozen<map<text, text>>", reg, -1),
                ],
                self.keyspaces
                    .iter()
                    .map(|(k, (rep, _))| {
                        let items: Vec<Vec<u8>> =
                            rep.iter().flat_map(|(a, b)| [a.as_bytes().to_vec(), b.as_bytes().to_vec()]).collect();
                        vec![text(k), Some(vec![1]), Some(map_bytes(&items))]
                    })
                    .collect(),
            )),
            ("system_schema", "tables") => Ok((
                vec![
                    col("keyspace_name", "text", pk, 0),
                    col("table_name", "text", ck, 0),
                    col("comment", "text", reg, -1),
                ],
                self.tables().map(|(k, t, _)| vec![text(k), text(t), text("")]).collect(),
            )),
            ("system_schema", "columns") => Ok((
                vec![
                    col("keyspace_name", "text", pk, 0),
                    col("table_name", "text", ck.clone(), 0),
                    col("column_name", "text", ck, 1),
                    col("clustering_order", "text", reg.clone(), -1),
                    col("column_name_bytes", "blob", reg.clone(), -1),
                    col("kind", "text", reg.clone(), -1),
                    col("position", "int", reg.clone(), -1),
                    col("type", "text", reg, -1),
                ],
                self.tables()
                    .flat_map(|(k, t, table)| {
                        table.columns.iter().map(move |c| {
                            let kind = match c.kind {
                                Kind::PartitionKey => "partition_key",
                                Kind::Clustering => "clustering",
                                Kind::Regular => "regular",
                            };
                            let order = if c.kind == Kind::Clustering { "asc" } else { "none" };
                            vec![
                                text(k),
                                text(t),
                                text(&c.name),
                                text(order),
                                text(&c.name),
                                text(kind),
                                Some(c.position.to_be_bytes().to_vec()),
                                text(&c.ty.cql_name()),
                            ]
                        })
                    })
                    .collect(),
            )),
            ("system_schema", "types") => Ok((
                vec![
                    col("keyspace_name", "text", pk, 0),
                    col("type_name", "text", ck, 0),
                    col("field_names", "frozen<list<text>>", reg.clone(), -1),
                    col("field_types", "frozen<list<text>>", reg, -1),
                ],
                Vec::new(),
            )),
            ("system_schema", "views") => Ok((
                vec![
                    col("keyspace_name", "text", pk, 0),
                    col("view_name", "text", ck, 0),
                    col("base_table_name", "text", reg, -1),
                ],
                Vec::new(),
            )),
            _ => {
                let t = self.table(ks, table)?;
                let keys = t.key_columns();
                let rows = t
                    .rows
                    .iter()
                    .filter(|(_, r)| r.live())
                    .map(|(key, r)| {
                        t.columns
                            .iter()
                            .map(|c| match keys.iter().position(|k| k.name == c.name) {
                                Some(i) => Some(key[i].clone()),
                                None => r.cells.get(&c.name).and_then(|c| c.value.clone()),
                            })
                            .collect()
                    })
                    .collect();
                Ok((t.columns.clone(), rows))
            }
        }
    }

    fn tables(&self) -> impl Iterator<Item = (&str, &str, &Table)> {
        self.keyspaces.iter().flat_map(|(k, (_, ts))| ts.iter().map(move |(n, t)| (k.as_str(), n.as_str(), t)))
    }

    pub fn table(&self, ks: &str, table: &str) -> R<&Table> {
        let (_, tables) = self.keyspaces.get(ks).ok_or_else(|| {
            invalid(if ks.starts_with("system") {
                format!("table {table} does not exist")
            } else {
                format!("Keyspace {ks} does not exist")
            })
        })?;
        tables.get(table).ok_or_else(|| invalid(format!("table {table} does not exist")))
    }

    fn table_mut(&mut self, ks: &str, table: &str) -> R<&mut Table> {
        self.table(ks, table)?;
        Ok(self.keyspaces.get_mut(ks).unwrap().1.get_mut(table).unwrap())
    }

    /// The bind markers' names and types, in order (checks that every name resolves).
    fn bind_specs(&self, stmt: &Stmt, markers: usize) -> R<BindInfo> {
        let mut specs: Vec<Option<(String, Ty)>> = vec![None; markers];
        let mut set = |t: &Term, name: &str, ty: Ty| {
            match t {
                Term::Marker(i) => specs[*i] = Some((name.to_string(), ty)),
                Term::FromJson(inner) => {
                    if let Term::Marker(i) = **inner {
                        specs[i] = Some((format!("fromjson({name})"), Ty::Text))
                    }
                }
                _ => {}
            };
        };
        let ts = |set: &mut dyn FnMut(&Term, &str, Ty), t: &Option<Term>| {
            if let Some(t) = t {
                set(t, "[timestamp]", Ty::BigInt)
            }
        };
        let (ks, table) = match stmt {
            Stmt::Select { ks, table, columns, rels, .. } => {
                let (cols, _) = self.relation(ks, table)?;
                for name in columns.iter().flatten() {
                    if !cols.iter().any(|c| &c.name == name) {
                        return Err(invalid(format!("Undefined column name {name}")));
                    }
                }
                for r in rels {
                    let (name, t, is_in) = match r {
                        Rel::Eq(c, t) => (c, t, false),
                        Rel::In(c, t) => (c, t, true),
                    };
                    let c = cols
                        .iter()
                        .find(|c| &c.name == name)
                        .ok_or_else(|| invalid(format!("Undefined column name {name}")))?;
                    set(t, name, if is_in { Ty::List(Box::new(c.ty.clone())) } else { c.ty.clone() });
                }
                (ks, table)
            }
            Stmt::InsertJson { ks, table, json, ts: t, .. } => {
                self.table(ks, table)?;
                set(json, "[json]", Ty::Text);
                ts(&mut set, t);
                (ks, table)
            }
            Stmt::InsertValues { ks, table, columns, values, ts: t } => {
                let tb = self.table(ks, table)?;
                for (c, v) in columns.iter().zip(values) {
                    let col = tb.column(c).ok_or_else(|| invalid(format!("Undefined column name {c}")))?;
                    set(v, c, col.ty.clone());
                }
                ts(&mut set, t);
                (ks, table)
            }
            Stmt::Delete { ks, table, ts: t, rels } => {
                let tb = self.table(ks, table)?;
                ts(&mut set, t);
                for r in rels {
                    if let Rel::Eq(c, v) = r {
                        let col = tb.column(c).ok_or_else(|| invalid(format!("Undefined column name {c}")))?;
                        set(v, c, col.ty.clone());
                    }
                }
                (ks, table)
            }
            Stmt::CreateTable { .. } | Stmt::CreateKeyspace { .. } | Stmt::Use(_) => {
                return Ok((String::new(), String::new(), Vec::new(), Vec::new()));
            }
        };
        let specs: Vec<(String, Ty)> = specs
            .into_iter()
            .map(|s| s.ok_or_else(|| invalid("bind marker in an unsupported place")))
            .collect::<R<_>>()?;
        // Partition key indexes: each partition key column bound by a plain marker.
        let mut pk_idx = Vec::new();
        if let Ok(t) = self.table(ks, table) {
            let bound: Vec<(&String, &Term)> = match stmt {
                Stmt::InsertValues { columns, values, .. } => columns.iter().zip(values).collect(),
                Stmt::Delete { rels, .. } | Stmt::Select { rels, .. } => {
                    rels.iter().filter_map(|r| if let Rel::Eq(c, t) = r { Some((c, t)) } else { None }).collect()
                }
                _ => Vec::new(),
            };
            for c in t.key_columns().iter().filter(|c| c.kind == Kind::PartitionKey) {
                match bound.iter().find(|(n, _)| **n == c.name) {
                    Some((_, Term::Marker(i))) => pk_idx.push(*i as u16),
                    _ => {
                        pk_idx.clear();
                        break;
                    }
                }
            }
        }
        Ok((ks.clone(), table.clone(), specs, pk_idx))
    }

    /// The result columns of a SELECT (for Prepared metadata), empty for other statements.
    fn result_columns(&self, stmt: &Stmt) -> R<Vec<(String, Ty)>> {
        match stmt {
            Stmt::Select { ks, table, columns, .. } => {
                let (cols, _) = self.relation(ks, table)?;
                Ok(match columns {
                    None => cols.iter().map(|c| (c.name.clone(), c.ty.clone())).collect(),
                    Some(names) => names
                        .iter()
                        .map(|n| {
                            let c = cols.iter().find(|c| &c.name == n).unwrap();
                            (n.clone(), c.ty.clone())
                        })
                        .collect(),
                })
            }
            _ => Ok(Vec::new()),
        }
    }

    /// A term's bytes for a column of type `ty`.
    fn value(term: &Term, ty: &Ty, values: &[Bound], what: &str) -> R<Bound> {
        Ok(match term {
            Term::Marker(i) => {
                let v = values.get(*i).cloned().ok_or_else(|| invalid("missing bound value"))?;
                if let Bound::Value(b) = &v {
                    ty.validate(b).map_err(|e| invalid(format!("{what}: {}", e.message)))?;
                }
                v
            }
            Term::Null => Bound::Null,
            Term::Str(s) => match ty {
                Ty::Text => Bound::Value(s.as_bytes().to_vec()),
                _ => {
                    return Err(invalid(format!(
                        "Invalid STRING constant ({s}) for \"{what}\" of type {}",
                        ty.cql_name()
                    )))
                }
            },
            Term::Num(n) => match ty {
                Ty::Int => Bound::Value(n.parse::<i32>().map_err(|_| invalid("bad int"))?.to_be_bytes().to_vec()),
                Ty::BigInt => Bound::Value(n.parse::<i64>().map_err(|_| invalid("bad bigint"))?.to_be_bytes().to_vec()),
                _ => {
                    return Err(invalid(format!(
                        "Invalid INTEGER constant ({n}) for \"{what}\" of type {}",
                        ty.cql_name()
                    )))
                }
            },
            Term::Bool(b) if *ty == Ty::Boolean => Bound::Value(vec![*b as u8]),
            Term::Bool(_) => return Err(invalid(format!("Invalid BOOLEAN constant for \"{what}\""))),
            Term::FromJson(inner) => match Db::value(inner, &Ty::Text, values, what)? {
                Bound::Value(b) => {
                    let text = String::from_utf8(b).map_err(|_| invalid("bad UTF-8"))?;
                    let j: serde_json::Value = serde_json::from_str(&text)
                        .map_err(|e| invalid(format!("Could not decode JSON string '{text}': {e}")))?;
                    match ty
                        .json_to_bytes(&j)
                        .map_err(|e| invalid(format!("Error decoding JSON value for {what}: {}", e.message)))?
                    {
                        Some(b) => Bound::Value(b),
                        None => Bound::Null,
                    }
                }
                other => other,
            },
        })
    }

    fn timestamp(t: &Option<Term>, values: &[Bound], default: i64) -> R<i64> {
        match t {
            None => Ok(default),
            Some(t) => match Db::value(t, &Ty::BigInt, values, "[timestamp]")? {
                Bound::Value(b) => Ok(i64::from_be_bytes(b.try_into().unwrap())),
                Bound::Unset => Ok(default),
                Bound::Null => Err(invalid("Invalid null value of timestamp")),
            },
        }
    }

    /// Runs a statement outside any `USE`.
    pub fn execute(
        &mut self,
        src: &str,
        values: &[Bound],
        default_ts: i64,
        page: Option<(usize, usize)>,
    ) -> R<Outcome> {
        self.execute_in(None, src, values, default_ts, page)
    }

    /// Runs a statement with unqualified tables in `keyspace`. Writes go through [`Db::plan`]
    /// and [`Db::apply`].
    pub fn execute_in(
        &mut self,
        keyspace: Option<&str>,
        src: &str,
        values: &[Bound],
        default_ts: i64,
        page: Option<(usize, usize)>,
    ) -> R<Outcome> {
        let (stmt, markers) = parse(src, keyspace)?;
        if values.len() != markers {
            return Err(invalid(format!(
                "There were {markers} markers(?) in CQL but {} bound variables",
                values.len()
            )));
        }
        match &stmt {
            Stmt::Use(ks) => {
                if !self.keyspaces.contains_key(ks) && ks != "system" && ks != "system_schema" {
                    return Err(invalid(format!("Keyspace '{ks}' does not exist")));
                }
                Ok(Outcome::SetKeyspace(ks.clone()))
            }
            Stmt::Select { ks, table, columns, rels, allow_filtering } => {
                let (cols, rows) = self.relation(ks, table)?;
                let (_, _, _, _) = self.bind_specs(&stmt, markers)?;
                let mut filters: Vec<(usize, Vec<Vec<u8>>)> = Vec::new();
                for r in rels {
                    let (name, t, is_in) = match r {
                        Rel::Eq(c, t) => (c, t, false),
                        Rel::In(c, t) => (c, t, true),
                    };
                    let i = cols.iter().position(|c| &c.name == name).unwrap();
                    let ty = if is_in { Ty::List(Box::new(cols[i].ty.clone())) } else { cols[i].ty.clone() };
                    let v = match Db::value(t, &ty, values, name)? {
                        Bound::Value(b) => b,
                        _ => return Err(invalid(format!("Invalid null value in condition for column {name}"))),
                    };
                    filters.push((i, if is_in { split_collection(&v, 1)? } else { vec![v] }));
                }
                let restricted = |k: Kind| {
                    cols.iter().enumerate().filter(|(_, c)| c.kind == k).all(|(i, _)| filters.iter().any(|f| f.0 == i))
                };
                let on_regular = filters.iter().any(|f| cols[f.0].kind == Kind::Regular);
                let partial_pk = !filters.is_empty() && !restricted(Kind::PartitionKey);
                if (on_regular || partial_pk) && !allow_filtering {
                    return Err(invalid(
                        "Cannot execute this query as it might involve data filtering and thus may have unpredictable \
                         performance. If you want to execute this query despite the performance unpredictability, use ALLOW FILTERING",
                    ));
                }
                let picked: Vec<usize> = match columns {
                    None => (0..cols.len()).collect(),
                    Some(names) => names.iter().map(|n| cols.iter().position(|c| &c.name == n).unwrap()).collect(),
                };
                let mut out: Vec<Vec<Option<Vec<u8>>>> = rows
                    .into_iter()
                    .filter(|r| filters.iter().all(|(i, vs)| r[*i].as_ref().is_some_and(|v| vs.contains(v))))
                    .map(|r| picked.iter().map(|i| r[*i].clone()).collect())
                    .collect();
                let mut more = None;
                if let Some((offset, size)) = page {
                    out = out.split_off(offset.min(out.len()));
                    if size > 0 && out.len() > size {
                        out.truncate(size);
                        more = Some(offset + size);
                    }
                }
                let columns = picked.iter().map(|i| (cols[*i].name.clone(), cols[*i].ty.clone())).collect();
                Ok(Outcome::Rows { ks: ks.clone(), table: table.clone(), columns, rows: out, more })
            }
            Stmt::CreateKeyspace { if_not_exists, ks, replication } => {
                if self.keyspaces.contains_key(ks) {
                    if *if_not_exists {
                        return Ok(Outcome::Void);
                    }
                    let mut e = err(ALREADY_EXISTS, format!("Keyspace {ks} already exists"));
                    write_string(&mut e.extra, ks);
                    write_string(&mut e.extra, "");
                    return Err(e);
                }
                self.keyspaces.insert(ks.clone(), (replication.clone(), BTreeMap::new()));
                self.schema_version += 1;
                Ok(Outcome::SchemaChange { target: "KEYSPACE", ks: ks.clone(), table: None })
            }
            Stmt::CreateTable { if_not_exists, ks, table, columns } => {
                let (_, tables) =
                    self.keyspaces.get_mut(ks).ok_or_else(|| invalid(format!("Keyspace {ks} doesn't exist")))?;
                if tables.contains_key(table) {
                    if *if_not_exists {
                        return Ok(Outcome::Void);
                    }
                    let mut e = err(
                        ALREADY_EXISTS,
                        format!("Cannot add already existing table \"{table}\" to keyspace \"{ks}\""),
                    );
                    write_string(&mut e.extra, ks);
                    write_string(&mut e.extra, table);
                    return Err(e);
                }
                tables.insert(table.clone(), Table { columns: columns.clone(), rows: BTreeMap::new() });
                self.schema_version += 1;
                Ok(Outcome::SchemaChange { target: "TABLE", ks: ks.clone(), table: Some(table.clone()) })
            }
            _ => {
                let m = self.plan(&stmt, markers, values, default_ts)?;
                self.apply(vec![m]);
                Ok(Outcome::Void)
            }
        }
    }

    /// Validates a write and resolves it into a mutation (nothing is applied yet).
    fn plan(&self, stmt: &Stmt, markers: usize, values: &[Bound], default_ts: i64) -> R<Mutation> {
        self.bind_specs(stmt, markers)?;
        let key_of = |t: &Table, get: &dyn Fn(&str) -> Option<Bound>| -> R<Vec<Vec<u8>>> {
            t.key_columns()
                .iter()
                .map(|c| match get(&c.name) {
                    Some(Bound::Value(b)) => Ok(b),
                    Some(Bound::Null) | Some(Bound::Unset) => {
                        Err(invalid(format!("Invalid null value in condition for column {}", c.name)))
                    }
                    None if c.kind == Kind::PartitionKey => {
                        Err(invalid(format!("Some partition key parts are missing: {}", c.name)))
                    }
                    None => Err(invalid(format!("Some clustering keys are missing: {}", c.name))),
                })
                .collect()
        };
        match stmt {
            Stmt::InsertJson { ks, table, json, default_null, ts } => {
                let t = self.table(ks, table)?;
                let ts = Db::timestamp(ts, values, default_ts)?;
                let text = match Db::value(json, &Ty::Text, values, "[json]")? {
                    Bound::Value(b) => String::from_utf8(b).map_err(|_| invalid("bad UTF-8"))?,
                    _ => return Err(invalid("Got null for INSERT JSON values")),
                };
                let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).map_err(|e| {
                    invalid(format!("Could not decode JSON string as a map: {e}. (String was: {text})"))
                })?;
                let mut given: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
                for (k, v) in &obj {
                    let name = match k.strip_prefix('"').and_then(|k| k.strip_suffix('"')) {
                        Some(quoted) => quoted.to_string(),
                        None => k.to_ascii_lowercase(),
                    };
                    let c = t
                        .column(&name)
                        .ok_or_else(|| invalid(format!("JSON values map contains unrecognized column: {k}")))?;
                    let b =
                        c.ty.json_to_bytes(v)
                            .map_err(|e| invalid(format!("Error decoding JSON value for {name}: {}", e.message)))?;
                    given.insert(name, b);
                }
                let key = key_of(t, &|n| given.get(n).map(|v| v.clone().map_or(Bound::Null, Bound::Value)))?;
                let cells = t
                    .columns
                    .iter()
                    .filter(|c| c.kind == Kind::Regular)
                    .filter_map(|c| match given.get(&c.name) {
                        Some(v) => Some((c.name.clone(), v.clone())),
                        None if *default_null => Some((c.name.clone(), None)),
                        None => None,
                    })
                    .collect();
                Ok(Mutation { ks: ks.clone(), table: table.clone(), key, ts, op: Op::Upsert(cells) })
            }
            Stmt::InsertValues { ks, table, columns, values: terms, ts } => {
                let t = self.table(ks, table)?;
                let ts = Db::timestamp(ts, values, default_ts)?;
                let mut given: BTreeMap<String, Bound> = BTreeMap::new();
                for (c, term) in columns.iter().zip(terms) {
                    let col = t.column(c).unwrap();
                    given.insert(c.clone(), Db::value(term, &col.ty, values, c)?);
                }
                let key = key_of(t, &|n| given.get(n).cloned())?;
                let cells = t
                    .columns
                    .iter()
                    .filter(|c| c.kind == Kind::Regular)
                    .filter_map(|c| match given.get(&c.name) {
                        Some(Bound::Value(b)) => Some((c.name.clone(), Some(b.clone()))),
                        Some(Bound::Null) => Some((c.name.clone(), None)),
                        _ => None,
                    })
                    .collect();
                Ok(Mutation { ks: ks.clone(), table: table.clone(), key, ts, op: Op::Upsert(cells) })
            }
            Stmt::Delete { ks, table, ts, rels } => {
                let t = self.table(ks, table)?;
                let ts = Db::timestamp(ts, values, default_ts)?;
                let mut given: BTreeMap<String, Bound> = BTreeMap::new();
                for r in rels {
                    if let Rel::Eq(c, term) = r {
                        let col = t.column(c).unwrap();
                        if col.kind == Kind::Regular {
                            return Err(invalid(format!("Non PRIMARY KEY columns found in where clause: {c} ")));
                        }
                        given.insert(c.clone(), Db::value(term, &col.ty, values, c)?);
                    }
                }
                if let Some(c) = t.key_columns().iter().find(|c| !given.contains_key(&c.name)) {
                    return Err(invalid(format!(
                        "partition and range deletions are not supported by the CQL double: the WHERE clause \
                         lacks primary key column {}",
                        c.name
                    )));
                }
                let key = key_of(t, &|n| given.get(n).cloned())?;
                Ok(Mutation { ks: ks.clone(), table: table.clone(), key, ts, op: Op::Delete })
            }
            _ => Err(invalid("Only INSERT, UPDATE and DELETE statements are allowed in batch")),
        }
    }

    /// Cassandra's `BatchStatement.verifyBatchSize`: a batch spanning more than one partition
    /// whose data size passes `batch_size_fail_threshold_in_kb` is refused ("Batch too large").
    /// The size follows `Row.dataSize()`: clustering bytes, 8 for the row marker, 16 plus the
    /// value per cell, 12 per row deletion.
    fn check_batch_size(&self, ms: &[Mutation]) -> R<()> {
        let mut partitions = std::collections::BTreeSet::new();
        let mut size = 0;
        for m in ms {
            let t = self.table(&m.ks, &m.table)?;
            let pk = t.key_columns().iter().filter(|c| c.kind == Kind::PartitionKey).count();
            partitions.insert((&m.ks, &m.table, &m.key[..pk]));
            size += m.key[pk..].iter().map(Vec::len).sum::<usize>();
            size += match &m.op {
                Op::Upsert(cells) => 8 + cells.iter().map(|(_, v)| 16 + v.as_ref().map_or(0, Vec::len)).sum::<usize>(),
                Op::Delete => 12,
            };
        }
        if partitions.len() > 1 && self.batch_fail_threshold > 0 && size > self.batch_fail_threshold {
            return Err(invalid("Batch too large"));
        }
        Ok(())
    }

    /// Applies validated mutations, recording each.
    fn apply(&mut self, ms: Vec<Mutation>) {
        for m in ms {
            let t = self.table_mut(&m.ks, &m.table).expect("planned against this table");
            let row = t.rows.entry(m.key).or_default();
            let (changed, delete) = match &m.op {
                Op::Upsert(cells) => (row.write(m.ts, true, cells), false),
                Op::Delete => (row.delete(m.ts), true),
            };
            self.writes.push(WriteRecord { table: format!("{}.{}", m.ks, m.table), delete, ts: m.ts, changed });
        }
    }
}

#[derive(Debug)]
enum Op {
    Upsert(Vec<(String, Option<Vec<u8>>)>),
    Delete,
}

#[derive(Debug)]
struct Mutation {
    ks: String,
    table: String,
    key: Vec<Vec<u8>>,
    ts: i64,
    op: Op,
}

// ---------------------------------------------------------------------------------------------
// Wire

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> R<&[u8]> {
        if self.pos + n > self.b.len() {
            return Err(err(PROTOCOL, "frame body too short"));
        }
        self.pos += n;
        Ok(&self.b[self.pos - n..self.pos])
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> R<u16> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn i32(&mut self) -> R<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn i64(&mut self) -> R<i64> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn string(&mut self) -> R<String> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| err(PROTOCOL, "bad UTF-8 in [string]"))
    }
    fn long_string(&mut self) -> R<String> {
        let n = self.i32()?.max(0) as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| err(PROTOCOL, "bad UTF-8 in [long string]"))
    }
    fn short_bytes(&mut self) -> R<Vec<u8>> {
        let n = self.u16()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn bytes(&mut self) -> R<Bound> {
        Ok(match self.i32()? {
            -1 => Bound::Null,
            -2 => Bound::Unset,
            n if n < 0 => return Err(err(PROTOCOL, format!("bad [bytes] length {n}"))),
            n => Bound::Value(self.take(n as usize)?.to_vec()),
        })
    }
    fn string_map(&mut self) -> R<BTreeMap<String, String>> {
        let n = self.u16()?;
        (0..n).map(|_| Ok((self.string()?, self.string()?))).collect()
    }
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        Some(b) => {
            out.extend_from_slice(&(b.len() as i32).to_be_bytes());
            out.extend_from_slice(b);
        }
    }
}

/// `[query parameters]` of QUERY and EXECUTE.
struct Params {
    values: Vec<Bound>,
    skip_metadata: bool,
    page_size: Option<usize>,
    paging_state: Option<usize>,
    timestamp: Option<i64>,
}

fn read_params(r: &mut Reader) -> R<Params> {
    let _consistency = r.u16()?;
    let flags = r.u8()?;
    let mut p = Params {
        values: Vec::new(),
        skip_metadata: flags & 0x02 != 0,
        page_size: None,
        paging_state: None,
        timestamp: None,
    };
    if flags & 0x40 != 0 {
        return Err(invalid("named bind values are not supported by the CQL double"));
    }
    if flags & 0x01 != 0 {
        let n = r.u16()?;
        for _ in 0..n {
            p.values.push(r.bytes()?);
        }
    }
    if flags & 0x04 != 0 {
        p.page_size = Some(r.i32()?.max(0) as usize);
    }
    if flags & 0x08 != 0 {
        if let Bound::Value(b) = r.bytes()? {
            p.paging_state =
                Some(u64::from_be_bytes(b.try_into().map_err(|_| err(PROTOCOL, "bad paging state"))?) as usize);
        }
    }
    if flags & 0x10 != 0 {
        r.u16()?;
    }
    if flags & 0x20 != 0 {
        p.timestamp = Some(r.i64()?);
    }
    Ok(p)
}

fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64
}

fn prepared_id(query: &str, keyspace: Option<&str>) -> Vec<u8> {
    use std::hash::{Hash, Hasher};
    let mut out = Vec::new();
    for salt in [0u8, 1] {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut h);
        query.hash(&mut h);
        keyspace.hash(&mut h);
        out.extend_from_slice(&h.finish().to_be_bytes());
    }
    out
}

/// `[metadata]` of Rows and Prepared results: global table spec, then each column's name and type.
fn write_metadata(
    out: &mut Vec<u8>,
    ks: &str,
    table: &str,
    columns: &[(String, Ty)],
    more: Option<usize>,
    no_metadata: bool,
) {
    let mut flags = 0i32;
    if more.is_some() {
        flags |= 0x0002;
    }
    if no_metadata || columns.is_empty() {
        flags |= 0x0004;
    } else {
        flags |= 0x0001;
    }
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&(columns.len() as i32).to_be_bytes());
    if let Some(m) = more {
        write_bytes(out, Some(&(m as u64).to_be_bytes()));
    }
    if flags & 0x0004 == 0 {
        write_string(out, ks);
        write_string(out, table);
        for (name, ty) in columns {
            write_string(out, name);
            ty.write_option(out);
        }
    }
}

fn encode_outcome(o: &Outcome, skip_metadata: bool) -> Vec<u8> {
    let mut out = Vec::new();
    match o {
        Outcome::Void => out.extend_from_slice(&1i32.to_be_bytes()),
        Outcome::Rows { ks, table, columns, rows, more } => {
            out.extend_from_slice(&2i32.to_be_bytes());
            write_metadata(&mut out, ks, table, columns, *more, skip_metadata);
            out.extend_from_slice(&(rows.len() as i32).to_be_bytes());
            for r in rows {
                for v in r {
                    write_bytes(&mut out, v.as_deref());
                }
            }
        }
        Outcome::SetKeyspace(ks) => {
            out.extend_from_slice(&3i32.to_be_bytes());
            write_string(&mut out, ks);
        }
        Outcome::SchemaChange { target, ks, table } => {
            out.extend_from_slice(&5i32.to_be_bytes());
            write_string(&mut out, "CREATED");
            write_string(&mut out, target);
            write_string(&mut out, ks);
            if let Some(t) = table {
                write_string(&mut out, t);
            }
        }
    }
    out
}

const OP_ERROR: u8 = 0x00;
const OP_READY: u8 = 0x02;
const OP_AUTHENTICATE: u8 = 0x03;
const OP_SUPPORTED: u8 = 0x06;
const OP_RESULT: u8 = 0x08;
const OP_AUTH_SUCCESS: u8 = 0x10;

/// Answers one request: (opcode, body).
/// What a connection remembers between requests.
#[derive(Default)]
struct Conn {
    authed: bool,
    /// The keyspace of the last `USE`.
    keyspace: Option<String>,
}

fn handle(db: &Mutex<Db>, opcode: u8, body: &[u8], conn: &mut Conn) -> R<(u8, Vec<u8>)> {
    let mut r = Reader { b: body, pos: 0 };
    let mut db = db.lock().unwrap();
    let name = match opcode {
        0x01 => "STARTUP",
        0x05 => "OPTIONS",
        0x07 => "QUERY",
        0x09 => "PREPARE",
        0x0A => "EXECUTE",
        0x0B => "REGISTER",
        0x0D => "BATCH",
        0x0F => "AUTH_RESPONSE",
        _ => return Err(err(PROTOCOL, format!("unknown or unsupported opcode {opcode:#04x}"))),
    };
    if !conn.authed && !matches!(opcode, 0x01 | 0x05 | 0x0F) {
        return Err(err(PROTOCOL, format!("{name} before authentication")));
    }
    match opcode {
        0x05 => {
            db.requests.push((name, String::new()));
            let mut out = 2u16.to_be_bytes().to_vec();
            write_string(&mut out, "CQL_VERSION");
            out.extend_from_slice(&1u16.to_be_bytes());
            write_string(&mut out, "3.4.6");
            write_string(&mut out, "COMPRESSION");
            out.extend_from_slice(&0u16.to_be_bytes());
            Ok((OP_SUPPORTED, out))
        }
        0x01 => {
            let opts = r.string_map()?;
            db.requests.push((name, String::new()));
            if opts.contains_key("COMPRESSION") {
                return Err(err(PROTOCOL, "compression is not supported by the CQL double"));
            }
            if db.credentials.is_some() {
                let mut out = Vec::new();
                write_string(&mut out, "org.apache.cassandra.auth.PasswordAuthenticator");
                return Ok((OP_AUTHENTICATE, out));
            }
            conn.authed = true;
            Ok((OP_READY, Vec::new()))
        }
        0x0F => {
            db.requests.push((name, String::new()));
            let token = match r.bytes()? {
                Bound::Value(b) => b,
                _ => Vec::new(),
            };
            let parts: Vec<&[u8]> = token.split(|b| *b == 0).collect();
            let (user, pass) = db.credentials.clone().unwrap_or_default();
            if parts.len() == 3 && parts[1] == user.as_bytes() && parts[2] == pass.as_bytes() {
                conn.authed = true;
                Ok((OP_AUTH_SUCCESS, (-1i32).to_be_bytes().to_vec()))
            } else {
                let who = parts.get(1).map(|u| String::from_utf8_lossy(u).to_string()).unwrap_or_default();
                Err(err(BAD_CREDENTIALS, format!("Provided username {who} and/or password are incorrect")))
            }
        }
        0x0B => {
            db.requests.push((name, String::new()));
            Ok((OP_READY, Vec::new()))
        }
        0x09 => {
            let q = r.long_string()?;
            db.requests.push((name, q.clone()));
            let (stmt, markers) = parse(&q, conn.keyspace.as_deref())?;
            let (ks, table, specs, pk_idx) = db.bind_specs(&stmt, markers)?;
            let result = db.result_columns(&stmt)?;
            let id = prepared_id(&q, conn.keyspace.as_deref());
            db.prepared.insert(id.clone(), (q, conn.keyspace.clone()));
            let mut out = 4i32.to_be_bytes().to_vec();
            out.extend_from_slice(&(id.len() as u16).to_be_bytes());
            out.extend_from_slice(&id);
            // Bind metadata (v4: with partition key indexes), then result metadata.
            out.extend_from_slice(&(if specs.is_empty() { 0i32 } else { 1 }).to_be_bytes());
            out.extend_from_slice(&(specs.len() as i32).to_be_bytes());
            out.extend_from_slice(&(pk_idx.len() as i32).to_be_bytes());
            for i in &pk_idx {
                out.extend_from_slice(&i.to_be_bytes());
            }
            if !specs.is_empty() {
                write_string(&mut out, &ks);
                write_string(&mut out, &table);
                for (n, ty) in &specs {
                    write_string(&mut out, n);
                    ty.write_option(&mut out);
                }
            }
            write_metadata(&mut out, &ks, &table, &result, None, false);
            Ok((OP_RESULT, out))
        }
        0x07 | 0x0A => {
            let (q, keyspace) = if opcode == 0x07 {
                (r.long_string()?, conn.keyspace.clone())
            } else {
                let id = r.short_bytes()?;
                match db.prepared.get(&id) {
                    Some(q) => q.clone(),
                    None => {
                        let mut e = err(UNPREPARED, "Prepared query with ID not found");
                        e.extra.extend_from_slice(&(id.len() as u16).to_be_bytes());
                        e.extra.extend_from_slice(&id);
                        return Err(e);
                    }
                }
            };
            db.requests.push((name, q.clone()));
            let p = read_params(&mut r)?;
            let page = p.page_size.map(|s| (p.paging_state.unwrap_or(0), s));
            let o = db.execute_in(keyspace.as_deref(), &q, &p.values, p.timestamp.unwrap_or_else(now_micros), page)?;
            if let Outcome::SetKeyspace(ks) = &o {
                conn.keyspace = Some(ks.clone());
            }
            Ok((OP_RESULT, encode_outcome(&o, p.skip_metadata && opcode == 0x0A)))
        }
        0x0D => {
            let kind = r.u8()?;
            if kind == 2 {
                return Err(invalid("counter batches are not supported by the CQL double"));
            }
            let n = r.u16()?;
            let mut stmts = Vec::new();
            for _ in 0..n {
                let (q, keyspace) = match r.u8()? {
                    0 => (r.long_string()?, conn.keyspace.clone()),
                    1 => {
                        let id = r.short_bytes()?;
                        match db.prepared.get(&id) {
                            Some(q) => q.clone(),
                            None => {
                                let mut e = err(UNPREPARED, "Prepared query with ID not found");
                                e.extra.extend_from_slice(&(id.len() as u16).to_be_bytes());
                                e.extra.extend_from_slice(&id);
                                return Err(e);
                            }
                        }
                    }
                    k => return Err(err(PROTOCOL, format!("bad batch statement kind {k}"))),
                };
                let nv = r.u16()?;
                let values = (0..nv).map(|_| r.bytes()).collect::<R<Vec<_>>>()?;
                stmts.push((q, keyspace, values));
            }
            let _consistency = r.u16()?;
            let flags = r.u8()?;
            if flags & 0x10 != 0 {
                r.u16()?;
            }
            let ts = if flags & 0x20 != 0 { r.i64()? } else { now_micros() };
            db.requests.push((name, format!("{} statements", stmts.len())));
            let mut planned = Vec::new();
            for (q, keyspace, values) in &stmts {
                let (stmt, markers) = parse(q, keyspace.as_deref())?;
                if values.len() != markers {
                    return Err(invalid(format!(
                        "There were {markers} markers(?) in CQL but {} bound variables",
                        values.len()
                    )));
                }
                planned.push(db.plan(&stmt, markers, values, ts)?);
            }
            db.check_batch_size(&planned)?;
            match db.batch_faults.pop_front() {
                Some(Fault::Error { error, applied }) => {
                    if applied {
                        db.apply(planned);
                    }
                    return Err(error);
                }
                Some(Fault::Stall) => return Ok((NO_ANSWER, Vec::new())),
                None => {}
            }
            db.apply(planned);
            Ok((OP_RESULT, encode_outcome(&Outcome::Void, false)))
        }
        _ => unreachable!(),
    }
}

fn serve(db: Arc<Mutex<Db>>, mut s: TcpStream) {
    let mut conn = Conn::default();
    loop {
        let mut h = [0u8; 9];
        if s.read_exact(&mut h).is_err() {
            return;
        }
        let (version, flags, stream, opcode) = (h[0], h[1], [h[2], h[3]], h[4]);
        let len = u32::from_be_bytes(h[5..9].try_into().unwrap()) as usize;
        let mut body = vec![0; len];
        if s.read_exact(&mut body).is_err() {
            return;
        }
        let answer = if version != 0x04 {
            Err(err(
                PROTOCOL,
                format!("Invalid or unsupported protocol version ({version}); supported versions are (4/v4)"),
            ))
        } else if flags & 0x01 != 0 {
            Err(err(PROTOCOL, "compressed frames are not supported by the CQL double"))
        } else {
            let mut b = &body[..];
            if flags & 0x04 != 0 {
                // A custom payload ([bytes map]) precedes the body: skip it.
                let mut r = Reader { b, pos: 0 };
                let skip = (|| -> R<()> {
                    for _ in 0..r.u16()? {
                        r.string()?;
                        r.bytes()?;
                    }
                    Ok(())
                })();
                b = &body[r.pos..];
                skip.and_then(|_| handle(&db, opcode, b, &mut conn))
            } else {
                handle(&db, opcode, b, &mut conn)
            }
        };
        let (op, out) = match answer {
            Ok((NO_ANSWER, _)) => continue,
            Ok(x) => x,
            Err(e) => {
                let mut out = e.code.to_be_bytes().to_vec();
                write_string(&mut out, &e.message);
                out.extend_from_slice(&e.extra);
                (OP_ERROR, out)
            }
        };
        let mut frame = vec![0x84, 0, stream[0], stream[1], op];
        frame.extend_from_slice(&(out.len() as u32).to_be_bytes());
        frame.extend_from_slice(&out);
        if s.write_all(&frame).is_err() {
            return;
        }
    }
}

/// A running double on an ephemeral port of 127.0.0.1; stopped (listener and every connection
/// closed) when dropped.
pub struct CqlDouble {
    pub addr: SocketAddr,
    pub db: Arc<Mutex<Db>>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl CqlDouble {
    pub fn start() -> CqlDouble {
        Self::start_with(None)
    }

    /// Requires `PasswordAuthenticator` credentials.
    pub fn start_with(credentials: Option<(&str, &str)>) -> CqlDouble {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the CQL double");
        let addr = listener.local_addr().unwrap();
        let db = Arc::new(Mutex::new(Db {
            credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
            batch_fail_threshold: 50 * 1024,
            ..Db::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (db2, stop2, conns2) = (db.clone(), stop.clone(), conns.clone());
        let accept = std::thread::spawn(move || {
            for s in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(s) = s else { continue };
                let _ = s.set_nodelay(true);
                conns2.lock().unwrap().push(s.try_clone().unwrap());
                let db = db2.clone();
                std::thread::spawn(move || serve(db, s));
            }
        });
        CqlDouble { addr, db, stop, conns, accept: Some(accept) }
    }

    pub fn url(&self) -> String {
        self.addr.to_string()
    }

    /// Runs a statement directly (no wire), panicking on an error.
    pub fn exec(&self, cql: &str) {
        if let Err(e) = self.db.lock().unwrap().execute(cql, &[], now_micros(), None) {
            panic!("`{cql}` failed: {e:?}");
        }
    }

    /// The live rows of a table as JSON objects (null columns omitted), in key order.
    pub fn rows(&self, ks: &str, table: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
        let db = self.db.lock().unwrap();
        let (cols, rows) = db.relation(ks, table).expect("table exists");
        rows.iter()
            .map(|r| {
                cols.iter()
                    .zip(r)
                    .filter_map(|(c, v)| v.as_ref().map(|v| (c.name.clone(), c.ty.bytes_to_json(v))))
                    .collect()
            })
            .collect()
    }

    /// Everything stored for a table, tombstones and timestamps included.
    pub fn stored(&self, ks: &str, table: &str) -> BTreeMap<Vec<Vec<u8>>, StoredRow> {
        self.db.lock().unwrap().table(ks, table).expect("table exists").rows.clone()
    }

    /// The writes applied to `ks.table` so far.
    pub fn writes(&self, ks: &str, table: &str) -> Vec<WriteRecord> {
        let t = format!("{ks}.{table}");
        self.db.lock().unwrap().writes.iter().filter(|w| w.table == t).cloned().collect()
    }
}

impl Drop for CqlDouble {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The double's own rules

#[test]
fn double_cells_keep_the_last_write_and_ties_go_to_tombstones_then_greater_values() {
    let c = |ts, v: Option<&[u8]>| Cell { ts, value: v.map(<[u8]>::to_vec) };
    assert_eq!(reconcile(&c(2, Some(b"a")), &c(1, Some(b"z"))), c(2, Some(b"a")));
    assert_eq!(reconcile(&c(1, Some(b"z")), &c(2, None)), c(2, None));
    assert_eq!(reconcile(&c(3, Some(b"z")), &c(3, None)), c(3, None));
    assert_eq!(reconcile(&c(3, Some(b"a")), &c(3, Some(b"b"))), c(3, Some(b"b")));
    // Unsigned comparison of the bytes: 0xff… (a negative int) beats 0x00….
    assert_eq!(reconcile(&c(3, Some(&[0xff])), &c(3, Some(&[0x01]))), c(3, Some(&[0xff])));
}

#[test]
fn double_row_tombstones_shadow_older_and_equal_writes_but_not_newer_ones() {
    let v = |s: &str| vec![("v".to_string(), Some(s.as_bytes().to_vec()))];
    let mut r = StoredRow::default();
    assert!(r.write(5, true, &v("a")));
    assert!(!r.write(5, true, &v("a")), "a replay changes nothing");
    assert!(r.delete(7));
    assert!(!r.live());
    assert!(!r.write(6, true, &v("old")), "an older write after the delete stays shadowed");
    assert!(!r.write(7, true, &v("tie")), "a write at the tombstone's timestamp is shadowed");
    assert!(!r.live());
    assert!(!r.delete(3), "an older delete changes nothing");
    assert!(r.write(8, true, &v("new")));
    assert!(r.live());
    assert_eq!(r.cells["v"].value.as_deref(), Some(&b"new"[..]));
    assert!(!r.delete(7), "a replayed delete does not shadow a newer write");
    assert!(r.live());
}

#[test]
fn double_refuses_statements_it_does_not_know() {
    let mut db = Db::default();
    db.execute(
        "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        &[],
        0,
        None,
    )
    .unwrap();
    db.execute("CREATE TABLE ks.t (k int PRIMARY KEY, v text)", &[], 0, None).unwrap();
    for (q, code) in [
        ("UPDATE ks.t SET v = 'x' WHERE k = 1", SYNTAX),
        ("INSERT INTO ks.t (k, v) VALUES (1, 'x') IF NOT EXISTS", SYNTAX),
        ("INSERT INTO ks.t JSON '{\"k\": 1, \"w\": 2}'", INVALID),
        ("INSERT INTO ks.t JSON '{\"k\": \"x\"}'", INVALID),
        ("DELETE FROM ks.t WHERE v = 'x'", INVALID),
        ("SELECT k FROM ks.nope", INVALID),
        ("SELECT w FROM ks.t", INVALID),
        ("SELECT k FROM ks.t WHERE v = 'x'", INVALID),
        ("SELECT k FROM t", INVALID),
        ("CREATE TABLE ks.t (k int PRIMARY KEY)", ALREADY_EXISTS),
    ] {
        let e = db.execute(q, &[], 0, None).expect_err(q);
        assert_eq!(e.code, code, "{q}: {e:?}");
    }
    db.execute("INSERT INTO ks.t JSON '{\"k\": 1}' USING TIMESTAMP 4", &[], 0, None).unwrap();
    assert!(
        matches!(db.execute("SELECT k, v FROM ks.t WHERE k = 1", &[], 0, None).unwrap(), Outcome::Rows { rows, .. } if rows == vec![vec![Some(1i32.to_be_bytes().to_vec()), None]])
    );
}
