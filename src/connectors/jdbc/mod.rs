//! The `jdbc` connector: rows into a PostgreSQL, MySQL, MariaDB or TiDB table, upsert or
//! append-only, exactly once (cargo feature `jdbc`, `connector = jdbc`).
//!
//! The name follows RisingWave's `connector = 'jdbc'`; no Java is involved: PostgreSQL is spoken
//! through `tokio-postgres`, MySQL / MariaDB / TiDB through `mysql_async`. One feature builds
//! both, since they share everything but the SQL.
//!
//! ```text
//!  producing worker: row → its text cells (described rows, encode.rs), then keys routed by hash
//!  sink operator (one writer per worker)
//!     │ write(t, changes)      JdbcEncoder: cells copied into the commit; upsert: keep the last change per key
//!     ▼
//!  batch of the commit  ──commit(upper)──►  BEGIN
//!     │                                     SELECT progress row FOR UPDATE   (fencing check)
//!     │                                     DELETE the deleted keys
//!     │                                     upsert / append the rows
//!     │                                     upsert the progress row (sink, table, generation, worker → upper, partial 0)
//!     │                                     COMMIT
//!     └─ full (transaction.max.records / .bytes) inside time t ──► the same transaction, recording (t, partial = n)
//! ```
//!
//! # Creation: the table and RisingWave's primary-key rules
//!
//! When the sink is created ([`SinkSpecBuilder::build`](crate::SinkSpecBuilder::build), so
//! `dsink` fails before starting) and again when each writer connects, the table's columns, types
//! and primary key are read from the catalog (`pg_attribute` / `pg_index`; `information_schema`), and:
//!
//! * an upsert sink must declare `primary_key`, and it must be the table's primary key (as a set
//!   of columns); a table without a primary key takes only `type = append-only`;
//! * `type = debezium` is refused (a table holds rows, not change events);
//! * with a declared [`Schema`](crate::Schema), every schema column must exist, not be generated,
//!   and have a compatible type (e.g. `int64` → an integer or numeric column, `decimal` → numeric,
//!   `timestamp` → timestamp / datetime, `json` → json / jsonb / text), and every table column the
//!   rows do not carry must be nullable or have a default. Without a schema, the sink writes every
//!   non-generated column; a row's field that names no column is refused when it arrives, and a
//!   missing field is written as NULL.
//!
//! Each refusal is an [`Error`](crate::Error) of kind `Config` or `Schema` naming the sink, the
//! table, the columns and the fix.
//!
//! # Writing
//!
//! Rows may be any `Serialize` type that is a struct or a map (so [`JsonRow`](crate::JsonRow)
//! works). Values travel as text and the server parses them into the column types; see
//! [`encode`] for the rendering rules (NULLs, numerics of any size, timestamps, JSON, bytes).
//! Each row is rendered into its cells once, on the worker that produced it, for the columns the
//! table had when the dataflow was built ([`encode::RowEncoder::encode_described`]); what crosses
//! the exchange, is buffered and consolidated is those cells, and [`JdbcEncoder`] copies them into
//! the commit's [`Batch`] without I/O. A writer that reads other columns when it connects (the
//! table was altered in between) refuses the rows rather than write cells into the wrong columns.
//!
//! A commit may span several times. An upsert sink keeps, per key, only the key's last change in
//! the commit: a delete, or the final row. The commit's deletes run first, then the updates of
//! keys the table holds, then the inserts of keys new to the collection in this commit (so a
//! unique secondary index sees a freed value before it is reused). Statements:
//!
//! | | PostgreSQL | MySQL / MariaDB / TiDB |
//! |---|---|---|
//! | delete | `DELETE … USING unnest($1::text[], …)` | `DELETE … WHERE key IN (?, …)` |
//! | update (key held before the commit) | `INSERT … SELECT … FROM unnest($1::text[], …) ON CONFLICT (key) DO UPDATE` (`DO NOTHING` when every column is in the key); or, with `jdbc.postgres.upsert = copy`, `COPY` into a temporary table and `INSERT … SELECT … ON CONFLICT` from it | multi-row `INSERT … ON DUPLICATE KEY UPDATE` |
//! | insert (key new in the commit) | `COPY` straight into the table under a savepoint; if the table holds one of the keys already (rows someone else wrote), back to the savepoint and the update path | as the update |
//! | append | `COPY … FROM STDIN` | multi-row `INSERT` |
//!
//! Keys new to the collection skip `ON CONFLICT`: a plain `COPY` is the cheapest way in, and a
//! conflict (a row someone else wrote) falls back to the upsert. For updates, `unnest` is the
//! default as it needs no temporary table. `jdbc.batch.size` rows go in one statement
//! (PostgreSQL default 50 000, MySQL 2 000, capped by MySQL's 65 535 placeholders).
//!
//! # Exactly once, and restarts
//!
//! Each worker's commit is one database transaction that holds its rows and its progress row in
//! the progress table (`jdbc.progress.table`, default `dsink_progress`, created in the target's
//! schema): `(sink_name, target, generation, worker) → (peers, base, frontier, partial)`, a
//! [`WorkerProgress`](differential_sinks_operators::WorkerProgress) and a count. On start, every
//! record of the sink and table is read back and
//! [`resolve_resume`](differential_sinks_operators::resolve_resume) says where this worker
//! resumes (including restarts with another worker count); the operator drops every update before
//! that frontier. Rows written but not committed were never sent (a batch waits in memory until
//! its transaction), and a transaction cut off by a crash is rolled back by the server, so each
//! change is applied once.
//!
//! ## Bounded transactions
//!
//! A commit may hold a time of millions of changes (a snapshot). So that neither the writer's
//! memory nor a transaction grows with it, the staged batch is committed early once it holds
//! `transaction.max.records` rows or `transaction.max.bytes` bytes of staged cells, rows and keys
//! ([`Batch::staged_bytes`]; defaults 1 000 000 rows, 64 MiB). An early commit inside time `t` is
//! an ordinary transaction — the rows so far and the progress row — recording frontier `t`
//! (every earlier time is complete) with `partial = n`, the number of `t`'s changes handed to the
//! writer so far, counted across the `write` calls of the time. A commit split this way is no
//! longer one transaction: readers of the table see its parts as they are committed.
//!
//! The operator hands a time's changes over in a deterministic order (sorted by encoded key, cut
//! into the same chunks whether spilled or not). So a restart from a record `(t, n)` gets all of
//! `t` again, and the writer skips its first `n` changes before staging the rest: each change is
//! still applied once, appends included. Keys move between workers when the worker count
//! changes, so a restart with another count is refused (error kind `Resume`, saying to restart
//! with the earlier count until the workers commit a whole time) while any worker's record of
//! the latest generation has `partial > 0`.
//!
//! The progress table of an earlier version has no `partial` column: on start the writer adds it
//! (`ALTER TABLE … ADD COLUMN partial … NOT NULL DEFAULT 0`, on PostgreSQL and MySQL alike; a
//! second worker adding it at the same moment is fine), and the existing rows read as whole
//! times.
//!
//! The commit locks the worker's progress row first (`SELECT … FOR UPDATE`) and compares it with
//! what this writer last committed: if it holds the very frontier being committed, an earlier
//! attempt went through and only its acknowledgement was lost, so nothing is applied again; if it
//! holds anything else, another run of the same sink is writing, and this one stops with an error
//! of kind `Fenced`. Upserts also make replays harmless where a user runs the sink without the
//! progress table's protection (a fresh `sink.name` over an old table).
//!
//! # Failures
//!
//! Connection losses, deadlocks, serialization failures, lock timeouts and transactions that
//! exceed `jdbc.transaction.timeout.ms` are retried — the whole transaction (at most the
//! transaction bounds' rows, which stay staged until it is in), on a new session —
//! with capped exponential backoff and jitter until `jdbc.retry.deadline.ms`. A constraint
//! violation or a value the column refuses stops the sink: the connector replays the commit's
//! rows one by one in a transaction it rolls back, and reports the first refused row's key with
//! the database's message.
//!
//! # Options
//!
//! | option | meaning |
//! |---|---|
//! | `jdbc.url` | `postgres://user:password@host:port/database` or `mysql://…` (also `postgresql://`, `mariadb://`, `jdbc:postgresql://`, `jdbc:mysql://`); query parameters `user`, `password`, `sslmode` (also `ssl-mode`), `sslrootcert`, `sslcert`, `sslkey`, `connect_timeout` (s; also `connectTimeout`: s for PostgreSQL as pgjdbc, ms for MySQL as Connector/J), `currentSchema`. Java driver settings with no effect here (`nullCatalogMeansCurrent`, `useUnicode`, `characterEncoding`, `rewriteBatchedStatements`, `reWriteBatchedInserts`, `stringtype`, … listed in `url_params.rs`) are ignored with a warning; their TLS switches (`useSSL`, `requireSSL`, `verifyServerCertificate`, `ssl`, `sslfactory`) are refused, naming `sslmode`; any other parameter is refused — required |
//! | `user`, `password` | override the URL's (the password is never printed: `Debug`, logs and errors show `<redacted>`) |
//! | `table.name` | the target table — required |
//! | `schema.name` | PostgreSQL schema (default `public`) or MySQL database (default: the URL's) |
//! | `type`, `primary_key`, `force_append_only` | as for every sink; see the rules above |
//! | `jdbc.batch.size` | rows per statement |
//! | `jdbc.postgres.upsert` | `unnest` (default) or `copy`: how updates reach PostgreSQL |
//! | `jdbc.progress.table` | the progress table's name (default `dsink_progress`) |
//! | `transaction.max.records` | commit early, inside a time, once this many rows are staged (default 1 000 000); see [Bounded transactions](#bounded-transactions) |
//! | `transaction.max.bytes` | … or once the staged rows take this many bytes (default 64 MiB; a `KiB`/`MiB`/`GiB` suffix is accepted). Both bounds are positive: 0 is refused |
//! | `jdbc.connect.timeout.ms` | connection timeout (default 10 000) |
//! | `jdbc.transaction.timeout.ms` (RisingWave: `jdbc.query.timeout`, in seconds) | one commit attempt's limit (default 300 000). RisingWave bounds each statement; here the bound holds for all of a commit's statements together |
//! | `jdbc.retry.initial.ms`, `jdbc.retry.max.ms`, `jdbc.retry.deadline.ms` | backoff (defaults 50, 5 000, 120 000) |
//! | `jdbc.ssl.mode` (or `sslmode` / `ssl-mode` in the URL) | `disable` (default), `prefer`, `require`, `verify-ca` or `verify-full`; MySQL's `DISABLED`, `PREFERRED`, `REQUIRED`, `VERIFY_CA`, `VERIFY_IDENTITY` are accepted too. See [TLS](#tls) |
//! | `jdbc.ssl.root.cert` (or `sslrootcert`) | PEM file of the CA(s) the `verify-*` modes trust (default: the system's store) |
//! | `jdbc.ssl.cert`, `jdbc.ssl.key` (or `sslcert`, `sslkey`) | PEM files of a client certificate chain and its private key, for servers that authenticate by certificate; both or neither |
//!
//! # TLS
//!
//! Sessions are encrypted with rustls (the `ring` provider; no OpenSSL): PostgreSQL through
//! `tokio-postgres-rustls`, MySQL / MariaDB / TiDB through `mysql_async`'s rustls support. The
//! modes are libpq's:
//!
//! | mode | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | no | — |
//! | `prefer` | if the server offers TLS, else plain | no |
//! | `require` | yes, or no connection | no (protects against eavesdropping, not against a server in the middle) |
//! | `verify-ca` | yes | the chain must lead to a root of `jdbc.ssl.root.cert` (or the system's store); any host name |
//! | `verify-full` | yes | the chain, and the certificate must name the host of `jdbc.url` (a DNS name, or an IP address in its `subjectAltName`) |
//!
//! Creation (`SinkSpecBuilder::build`) reads the certificate files before connecting and refuses,
//! with an error of kind `Config` naming the option and the fix: a file that cannot be read or
//! holds no valid PEM certificate (or key), a `verify-*` mode with no `jdbc.ssl.root.cert` and an
//! empty system store, and `jdbc.ssl.cert` without `jdbc.ssl.key` or the other way round. A handshake the
//! client refuses — a certificate no trusted root signed, a host name the certificate does not
//! hold — is a `Config` error too, not retried, and says which option to look at. The files are
//! read again for every new session, so renewed certificates are picked up on the next connection.
//! Paths are shown in `Debug`; passwords never are.
//!
//! On MySQL, `verify-ca` may take a second handshake: when the chain is trusted and only the host
//! name differs, the session is opened again under a name the certificate holds.
//!
//! # Sessions
//!
//! PostgreSQL sessions run with `TIME ZONE 'UTC'`. MySQL sessions run with `time_zone = '+00:00'`,
//! `READ COMMITTED` (no gap locks between workers writing disjoint keys) and `sql_mode =
//! 'STRICT_ALL_TABLES,…'` so a bad value is an error, never a silent truncation.
//!
//! # Files
//!
//! `config.rs` the options; `url_params.rs` the Java driver URL parameters ignored with a
//! warning; `table.rs` the table's description and the creation-time rules;
//! `encoder.rs` and `batch.rs` the pure encoding into a commit's rows; `described.rs` rows
//! rendered into cells where they are produced; `session/` the database
//! sessions of both dialects (and TLS); `progress.rs` the progress table's records;
//! `writer.rs` the [`SinkWriter`](differential_sinks_operators::SinkWriter).

mod batch;
mod config;
mod described;
pub mod encode;
mod encoder;
mod progress;
mod session;
mod table;
mod url_params;
mod writer;

pub use batch::{Batch, PendingRow, RowOp};
pub use config::{redact_url, Dialect, JdbcConfig, PgUpsertMethod, Secret, TlsMode};
pub use encoder::JdbcEncoder;
pub use session::describe_table;
pub use table::{ColKind, TableColumn, TableInfo};
pub use writer::JdbcWriter;

use crate::connectors::{Connector, ConnectorConfig, Writers};
use crate::error::Result;
use crate::options::Options;
use crate::row::Row;
use crate::settings::SinkSettings;
use differential_sinks_operators::{SinkTime, WorkerContext};

impl Connector for JdbcConfig {
    const NAME: &'static str = "jdbc";
    const OWN_KEYS: bool = true;
    /// Rows become cells, never their JSON: an unkeyed sink routes them by identity.
    const TAKES_ROWS: bool = true;
    /// Rows become their cells where they are produced ([`encode::RowEncoder::encode_described`]).
    const ENCODED_ROWS: bool = true;
    type Table = TableInfo;
    type Encoder<V: Row> = JdbcEncoder<V>;

    fn from_options(opts: &mut Options) -> Result<Self> {
        JdbcConfig::parse(opts)
    }

    /// Checks the settings, then reads the table over a session of its own (certificates are
    /// read before any connection) and applies the rules listed under *Creation* above.
    fn validate(&self, sink: &SinkSettings) -> Result<()> {
        table::check_settings(sink)?;
        let info = session::describe(self, sink.name(), true)?;
        table::check(self, sink, &info)
    }

    fn encoder<V: Row>(&self, sink: &SinkSettings, table: &TableInfo) -> Result<JdbcEncoder<V>> {
        JdbcEncoder::new(self.dialect, sink, table)
    }

    fn open<V: Row, T: SinkTime>(&self, sink: &SinkSettings, ctx: WorkerContext) -> Result<Writers<V, T>> {
        let _ = ctx;
        Ok(Writers::independent(JdbcWriter::<V>::open(self, sink)?))
    }

    /// Reads the table (as each writer does when it connects) and renders each row's cells for
    /// its written columns where the row is produced.
    fn row_encoder<V: Row>(&self, sink: &SinkSettings) -> Result<crate::encoded_row::RowEncoder<V>> {
        let info = session::describe_retrying(self, sink.name())?;
        let mut cells = encode::RowEncoder::new(self.dialect, &info.qualified, &table::written_columns(sink, &info));
        Ok(Box::new(move |row: &V, buf: &mut Vec<u8>| {
            cells.encode_described(row, buf).map_err(|e| e.message().to_string())
        }))
    }
}

impl From<JdbcConfig> for ConnectorConfig {
    fn from(c: JdbcConfig) -> Self {
        ConnectorConfig::Jdbc(Box::new(c))
    }
}
