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
//! * `ALTER TABLE ks.t ADD c type` (a regular column; existing rows read it as null);
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
//!
//! **Files.** [`error`] (the ERROR codes), [`codec`] (the protocol's primitive encodings),
//! [`lexer`] (tokens), [`types`] (types and values), [`storage`] (cells, rows, tables and the
//! [`Db`] with Cassandra's reconciliation rules), [`parser`] (statements),
//! [`execute`] (running statements on the [`Db`]), [`wire`] (frames and request bodies) and
//! [`server`] (the listener and [`CqlDouble`]).

#![allow(dead_code)]

mod codec;
mod error;
mod execute;
mod lexer;
mod parser;
mod server;
mod storage;
#[cfg(test)]
mod tests;
mod types;
mod wire;

// The double's API; each test binary uses a part of it.
#[allow(unused_imports)]
pub use codec::Bound;
#[allow(unused_imports)]
pub use error::{CqlError, ALREADY_EXISTS, BAD_CREDENTIALS, INVALID, PROTOCOL, SYNTAX, UNPREPARED};
#[allow(unused_imports)]
pub use execute::Outcome;
#[allow(unused_imports)]
pub use server::CqlDouble;
#[allow(unused_imports)]
pub use storage::{
    reconcile, unavailable, write_timeout, Cell, Column, Db, Fault, Keyspace, Kind, StoredRow, Table, WriteRecord,
};
#[allow(unused_imports)]
pub use types::Ty;
