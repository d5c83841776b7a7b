//! Where the Iceberg connector records its progress: each commit's snapshot summary
//! ([`CommitRecord`], under [`SUMMARY_PREFIX`]) and the table property
//! [`progress_property`], both published by the same metadata swap; and how a restart reads them
//! back ([`latest_commit`]).

use crate::error::{Error, ErrorKind, Result};
use differential_sinks_operators::{Frontier, Layout, WorkerProgress};
use iceberg::spec::{Snapshot, TableMetadata};
use std::collections::HashMap;
use std::sync::Arc;

/// The prefix of the snapshot-summary properties this sink writes (see the module docs).
pub const SUMMARY_PREFIX: &str = "dsink.";

/// What one commit records in its snapshot summary, under [`SUMMARY_PREFIX`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitRecord {
    /// The sink (`dsink.sink`).
    pub sink: String,
    /// The frontier before this commit (`dsink.from`).
    pub from: Frontier<u64>,
    /// The frontier every worker reached with it (`dsink.to`).
    pub to: Frontier<u64>,
    /// Each worker's frontier (`dsink.frontiers`, comma-separated).
    pub frontiers: Vec<Frontier<u64>>,
    /// The worker count (`dsink.peers`).
    pub peers: usize,
    /// The generation (`dsink.generation`).
    pub generation: u64,
    /// The frontier the generation started from (`dsink.base`).
    pub base: Frontier<u64>,
    /// Data files added (`dsink.files`).
    pub files: usize,
    /// Rows added (`dsink.rows`).
    pub rows: u64,
    /// Data files added below the small-file size (`dsink.small-files`; absent in snapshots of
    /// older versions: 0).
    pub small_files: u64,
    /// How the run routed keys and wrote the table (`dsink.routing`, `dsink.format`; absent in
    /// snapshots of older versions: routing not recorded, format 1).
    pub layout: Layout,
}

/// A frontier as summary text: the time, or `complete` once the input has ended.
pub fn frontier_text(f: &Frontier<u64>) -> String {
    match f.time() {
        Some(t) => t.to_string(),
        None => "complete".to_string(),
    }
}

/// The frontier a summary text records.
pub fn parse_frontier(s: &str) -> Result<Frontier<u64>> {
    if s == "complete" {
        return Ok(Frontier::complete());
    }
    s.parse::<u64>()
        .map(Frontier::at)
        .map_err(|_| Error::new(ErrorKind::Resume, format!("`{s}` is not a frontier this sink wrote")))
}

impl CommitRecord {
    /// The summary properties.
    pub fn properties(&self) -> HashMap<String, String> {
        let p = |k: &str| format!("{SUMMARY_PREFIX}{k}");
        HashMap::from([
            (p("sink"), self.sink.clone()),
            (p("from"), frontier_text(&self.from)),
            (p("to"), frontier_text(&self.to)),
            (p("frontiers"), self.frontiers.iter().map(frontier_text).collect::<Vec<_>>().join(",")),
            (p("peers"), self.peers.to_string()),
            (p("generation"), self.generation.to_string()),
            (p("base"), frontier_text(&self.base)),
            (p("files"), self.files.to_string()),
            (p("rows"), self.rows.to_string()),
            (p("small-files"), self.small_files.to_string()),
            (p("routing"), self.layout.routing.to_string()),
            (p("format"), self.layout.format.to_string()),
        ])
    }

    /// Reads a record back from summary properties; `Ok(None)` if they are not `sink`'s.
    pub fn parse(props: &HashMap<String, String>, sink: &str) -> Result<Option<Self>> {
        if props.get(&format!("{SUMMARY_PREFIX}sink")).map(String::as_str) != Some(sink) {
            return Ok(None);
        }
        let get = |k: &str| {
            props.get(&format!("{SUMMARY_PREFIX}{k}")).ok_or_else(|| {
                Error::new(ErrorKind::Resume, format!("a snapshot of sink `{sink}` lacks `{SUMMARY_PREFIX}{k}`"))
            })
        };
        let num = |k: &str| {
            get(k)?.parse::<u64>().map_err(|_| {
                Error::new(ErrorKind::Resume, format!("a snapshot of sink `{sink}` has a bad `{SUMMARY_PREFIX}{k}`"))
            })
        };
        let frontiers = get("frontiers")?.split(',').map(parse_frontier).collect::<Result<Vec<_>>>()?;
        let peers = num("peers")? as usize;
        if frontiers.len() != peers {
            return Err(Error::new(
                ErrorKind::Resume,
                format!("a snapshot of sink `{sink}` records {} frontiers for {peers} workers", frontiers.len()),
            ));
        }
        Ok(Some(CommitRecord {
            sink: sink.to_string(),
            from: parse_frontier(get("from")?)?,
            to: parse_frontier(get("to")?)?,
            frontiers,
            peers,
            generation: num("generation")?,
            base: parse_frontier(get("base")?)?,
            files: num("files")? as usize,
            rows: num("rows")?,
            small_files: if props.contains_key(&format!("{SUMMARY_PREFIX}small-files")) {
                num("small-files")?
            } else {
                0
            },
            layout: Layout {
                routing: if props.contains_key(&format!("{SUMMARY_PREFIX}routing")) { num("routing")? } else { 0 },
                format: match props.contains_key(&format!("{SUMMARY_PREFIX}format")) {
                    true => u32::try_from(num("format")?).map_err(|_| {
                        Error::new(
                            ErrorKind::Resume,
                            format!("a snapshot of sink `{sink}` has a bad `{SUMMARY_PREFIX}format`"),
                        )
                    })?,
                    false => 1,
                },
            },
        }))
    }

    /// Every worker's progress as the operator's resume logic reads it.
    pub(crate) fn progress(&self) -> Vec<WorkerProgress<u64>> {
        (self.frontiers.iter().enumerate())
            .map(|(worker, f)| WorkerProgress {
                worker,
                peers: self.peers,
                generation: self.generation,
                base: self.base,
                frontier: *f,
                layout: self.layout,
            })
            .collect()
    }
}

/// The latest commit of `sink` on the table's current branch, walking back from the current
/// snapshot through its ancestors, with the snapshot's id.
///
/// Every commit also sets the table property [`progress_property`] to the frontier it reached,
/// in the same metadata swap. Properties outlive snapshots: a table that has the property but no
/// snapshot of the sink on its branch had them expired or rolled back, and the sink cannot tell
/// what was delivered — that is a resume error, never a silent start from the beginning.
pub(crate) fn latest_commit(meta: &TableMetadata, sink: &str) -> Result<Option<(i64, CommitRecord)>> {
    let mut next: Option<&Arc<Snapshot>> = meta.current_snapshot();
    while let Some(s) = next {
        if let Some(r) = CommitRecord::parse(&s.summary().additional_properties, sink)? {
            return Ok(Some((s.snapshot_id(), r)));
        }
        next = s.parent_snapshot_id().and_then(|id| meta.snapshot_by_id(id));
    }
    let key = progress_property(sink);
    if let Some(to) = meta.properties().get(&key) {
        return Err(Error::new(
            ErrorKind::Resume,
            format!(
                "sink `{sink}` committed to this table up to frontier `{to}` (table property `{key}`), but none of \
                 its snapshots is on the current branch any more: they were expired or the table was rolled back, \
                 so what was delivered is unknown; write to a new `sink.name` or table, or remove the property to \
                 deliver everything again"
            ),
        ));
    }
    Ok(None)
}

/// The table property in which every commit of `sink` records the frontier it reached.
pub fn progress_property(sink: &str) -> String {
    format!("{SUMMARY_PREFIX}progress.{sink}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> CommitRecord {
        CommitRecord {
            sink: "s".into(),
            from: Frontier::at(3),
            to: Frontier::complete(),
            frontiers: vec![Frontier::complete(), Frontier::at(9)],
            peers: 2,
            generation: 1,
            base: Frontier::at(2),
            files: 4,
            rows: 10,
            small_files: 1,
            layout: Layout { routing: 77, format: 1 },
        }
    }

    #[test]
    fn a_commit_record_reads_back_from_its_summary() {
        let props = record().properties();
        assert_eq!(props["dsink.to"], "complete");
        assert_eq!(props["dsink.frontiers"], "complete,9");
        assert_eq!(CommitRecord::parse(&props, "s").unwrap(), Some(record()));
        assert_eq!(CommitRecord::parse(&props, "other").unwrap(), None);
        let progress = record().progress();
        assert_eq!(progress[1].frontier, Frontier::at(9));
        assert_eq!((progress[1].peers, progress[1].generation, progress[1].base), (2, 1, Frontier::at(2)));
    }

    #[test]
    fn a_damaged_commit_record_is_a_resume_error() {
        for (key, value) in [("dsink.frontiers", "complete"), ("dsink.to", "soon"), ("dsink.peers", "-1")] {
            let mut props = record().properties();
            props.insert(key.into(), value.into());
            let e = CommitRecord::parse(&props, "s").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Resume, "{key}: {e}");
        }
        let mut old = record().properties();
        old.remove("dsink.routing");
        old.remove("dsink.format");
        assert_eq!(CommitRecord::parse(&old, "s").unwrap().unwrap().layout, Layout::default());
        let mut props = record().properties();
        props.remove("dsink.base");
        assert!(CommitRecord::parse(&props, "s").unwrap_err().to_string().contains("dsink.base"));
    }
}
