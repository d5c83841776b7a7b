//! The `doris` connector: rows into an Apache Doris table through Stream Load (feature `doris`).
//!
//! ```text
//!  changes of the times in [lo, upper) ──► JSON lines; on unique-key tables each line carries
//!        │                                 "__DORIS_DELETE_SIGN__": 0 (upsert) or 1 (delete)
//!        ▼ commit(upper), or from write when the body would pass doris.load.max.bytes
//!  PUT <fe>/api/<db>/<table>/_stream_load      label: dsink_<sink>_<scope>_g<generation>_w<worker>_<start>_<end>
//!        │  307 Temporary Redirect → PUT <be>/… again, with the same credentials, headers and body
//!        ▼
//!  {"Status": "Success" | "Publish Timeout" | "Label Already Exists" | "Fail", "Message": …,
//!   "NumberLoadedRows": …, "ErrorURL": …}
//! ```
//!
//! One load per commit and worker while the commit's body fits `doris.load.max.bytes` (default
//! 64 MiB): a load is atomic in Doris, so such a commit is all or nothing. A larger commit is
//! split, so that no body holds a whole commit (or a whole time) in memory: the writer encodes
//! each change as it arrives, and when a change would take the body past the bound, the body
//! before it is loaded at once (from `write`) and the change starts the next part; the last part
//! is loaded at `commit`. A part is larger than the bound only when one row alone is. **A split
//! commit is not atomic in Doris**: its parts become visible one by one, and readers can see a
//! commit half applied until its last part is in.
//!
//! Each load's label names where its changes start and end: `<lo>_<upper>` (the commit's
//! frontiers) for a whole commit, the label it always had; a place inside a time `t` is written
//! `<t>p<n>` (after the first `n` changes of `t`, whose order is deterministic), so the parts of
//! the commit `[5, 9)` split twice are `…_5_7p120`, `…_7p120_8p40`, `…_8p40_9`. Labels stay within
//! Doris's 128 characters: when the places are too long to spell out, a 64-bit digest of them
//! stands in.
//! Upserts need a unique-key table (`UNIQUE KEY` = the sink's `primary_key`); the sink sends the
//! hidden column `__DORIS_DELETE_SIGN__` (header `hidden_columns`) to delete. With
//! `doris.partial_update = true` it sends `partial_columns: true`, so a row updates only the
//! columns it has (merge-on-write tables).
//!
//! # Delivery guarantee
//!
//! Each load's label is derived from (sink, target table, generation, worker, the place it
//! starts at, the place it ends at), so the same commit (or part) always carries the same label, and
//! two sinks of one name into two tables of one database (Doris keeps labels per database)
//! never share one. Doris keeps labels
//! (for `label_keep_max_second`, three days by default) and refuses a second load under one as
//! `Label Already Exists`, which the sink treats as success when the earlier load finished and
//! waits on when it is still running. The sink cannot read a progress record back over HTTP, so a
//! restarted worker replays from the beginning of its input and every load it repeats is
//! refused: exactly-once when the replay commits at the same frontiers (a deterministic driver
//! such as `dsink` reading a file, or a dataflow advancing its input the same way); where the
//! replay groups times differently, a unique-key table still ends in the same state (a replayed
//! upsert or delete rewrites the same row), while a duplicate-key table would receive the
//! regrouped rows again (at-least-once). Restarts with another worker count change the labels and
//! are at-least-once too.
//!
//! # Restarts
//!
//! A restarted worker starts from the beginning of its input (there is no progress record to read
//! back); the loads it repeats are refused by their labels, as above. This holds for the parts
//! of a split commit too: a replay with the same commit frontiers cuts the same parts (the same
//! changes in the same order, encoded to the same bytes), so every part loaded before the crash
//! is refused by its label and the parts after it are loaded. A commit cut off by a crash after
//! some of its parts were loaded shows those parts until the replay loads the rest.
//!
//! # Files
//!
//! `config.rs` the options; `table.rs` the delete-sign column and the creation-time checks;
//! `encoder.rs` the Stream Load body ([`DorisEncoder`]); `load.rs` one Stream Load and its
//! answer; `progress.rs` the labels; `writer.rs` the [`DorisWriter`].
//!
//! # Options
//!
//! RisingWave's option names are accepted too (shown in parentheses); giving both names with
//! different values is refused.
//!
//! | option | meaning |
//! |---|---|
//! | `doris.url` | the frontend's HTTP address, e.g. `http://127.0.0.1:8030` — required |
//! | `doris.database`, `doris.table` | the target — required |
//! | `doris.user` (RisingWave: `doris.username`), `doris.password` | credentials (default user `root`; the password is never logged) |
//! | `doris.partial_update` (RisingWave: `doris.partial_column`) | `true` to update only the columns the rows have (`partial_columns: true` on every Stream Load) |
//! | `doris.timeout.ms` | per-request timeout (default 600 000) |
//! | `doris.load.max.bytes` | the largest Stream Load body, bytes or with a `KiB`/`MiB`/`GiB` suffix (default 64 MiB); a larger commit is loaded in parts (see above). 0 is refused |

mod config;
mod encoder;
mod load;
mod progress;
mod table;
mod writer;

pub use config::DorisConfig;
pub use encoder::{DorisEncoder, LoadBody};
pub use load::{interpret, LoadStatus};
pub use progress::{label, part_label, Position};
pub use table::DELETE_SIGN;
pub use writer::DorisWriter;

use crate::connectors::{Connector, Writers};
use crate::error::Result;
use crate::options::Options;
use crate::row::Row;
use crate::settings::SinkSettings;
use differential_sinks_operators::{SinkTime, WorkerContext};

impl Connector for DorisConfig {
    const NAME: &'static str = "doris";
    const ENCODED_ROWS: bool = true;
    type Table = ();
    type Encoder<V: Row> = DorisEncoder<V>;

    fn from_options(opts: &mut Options) -> Result<Self> {
        DorisConfig::parse(opts)
    }

    fn validate(&self, sink: &SinkSettings) -> Result<()> {
        table::check(self, sink)
    }

    fn encoder<V: Row>(&self, sink: &SinkSettings, _table: &()) -> Result<DorisEncoder<V>> {
        Ok(DorisEncoder::new(sink))
    }

    fn open<V: Row, T: SinkTime>(&self, sink: &SinkSettings, ctx: WorkerContext) -> Result<Writers<V, T>> {
        Ok(Writers::independent(DorisWriter::<V>::open(self, sink, ctx)?))
    }
}
