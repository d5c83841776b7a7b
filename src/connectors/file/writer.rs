//! The file connector's writer and reader.

use super::FileConfig;
use crate::config::SinkSpec;
use crate::connectors::RecordWriter;
use crate::error::{Error, ErrorKind, Result};
use crate::key::KeyEncoding;
use crate::record::RecordBatch;
use differential_sinks_operators::{resolve_resume, Frontier, ResumePoint, WorkerContext, WorkerProgress};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// A worker's commit record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The sink's name.
    pub sink: String,
    /// Progress: worker, peers, generation, base and committed frontier.
    pub progress: WorkerProgress<u64>,
    /// Data files `1..=last_seq` of this worker and generation are committed.
    pub last_seq: u64,
}

fn manifest_name(worker: usize, generation: u64) -> String {
    format!("manifest-w{worker}-g{generation}.json")
}

fn data_name(worker: usize, generation: u64, seq: u64) -> String {
    format!("w{worker}-g{generation}-{seq:010}.jsonl")
}

/// Reads every manifest in `dir`.
fn read_manifests(dir: &Path) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("manifest-") && name.ends_with(".json") {
            let bytes = fs::read(entry.path()).map_err(|e| Error::io(format!("reading {name}"), e))?;
            let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
                Error::new(
                    ErrorKind::Resume,
                    format!(
                        "manifest {} is damaged: {e}; restore it or write to a fresh directory",
                        entry.path().display()
                    ),
                )
            })?;
            out.push(m);
        }
    }
    out.sort_by_key(|m| (m.progress.generation, m.progress.worker));
    Ok(out)
}

/// The committed lines of a file sink directory, in an order that keeps each key's changes in
/// time order (generation, then worker, then commit).
pub fn read_committed(dir: impl AsRef<Path>) -> Result<Vec<serde_json::Value>> {
    let dir = dir.as_ref();
    let mut out = Vec::new();
    for m in read_manifests(dir)? {
        for seq in 1..=m.last_seq {
            let path = dir.join("data").join(data_name(m.progress.worker, m.progress.generation, seq));
            let f =
                File::open(&path).map_err(|e| Error::io(format!("opening committed file {}", path.display()), e))?;
            for line in BufReader::new(f).lines() {
                let line = line.map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                out.push(
                    serde_json::from_str(&line)
                        .map_err(|e| Error::encode(format!("{}: bad line: {e}", path.display())))?,
                );
            }
        }
    }
    Ok(out)
}

/// One worker's writer into a file sink directory.
pub struct FileWriter {
    dir: PathBuf,
    sink: String,
    fsync: bool,
    keyed: bool,
    text_keys: bool,
    ctx: Option<WorkerContext>,
    resume: Option<ResumePoint<u64>>,
    last_seq: u64,
    open: Option<(PathBuf, BufWriter<File>)>,
    line: Vec<u8>,
}

impl FileWriter {
    /// Opens a writer (creating the directory).
    pub fn open(config: &FileConfig, spec: &SinkSpec, _ctx: WorkerContext) -> Result<Self> {
        let data = config.path.join("data");
        fs::create_dir_all(&data).map_err(|e| Error::io(format!("creating {}", data.display()), e))?;
        Ok(FileWriter {
            dir: config.path.clone(),
            sink: spec.name().to_string(),
            fsync: config.fsync,
            keyed: spec.format().is_keyed(),
            text_keys: matches!(spec.key_encoding(), KeyEncoding::Text { .. }),
            ctx: None,
            resume: None,
            last_seq: 0,
            open: None,
            line: Vec::with_capacity(256),
        })
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        if self.fsync {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))?;
        }
        Ok(())
    }
}

impl RecordWriter for FileWriter {
    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<u64>> {
        let manifests: Vec<Manifest> = read_manifests(&self.dir)?.into_iter().filter(|m| m.sink == self.sink).collect();
        let records: Vec<WorkerProgress<u64>> = manifests.iter().map(|m| m.progress.clone()).collect();
        let point = resolve_resume(&records, ctx)?;
        self.last_seq = manifests
            .iter()
            .find(|m| m.progress.generation == point.generation && m.progress.worker == ctx.index)
            .map_or(0, |m| m.last_seq);
        // Remove what a crash left behind: temporary files and data files past the manifest.
        let prefix = format!("w{}-g{}-", ctx.index, point.generation);
        let data = self.dir.join("data");
        for entry in fs::read_dir(&data).map_err(|e| Error::io(format!("listing {}", data.display()), e))? {
            let entry = entry.map_err(|e| Error::io("listing data files", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            let seq = rest.split('.').next().and_then(|s| s.parse::<u64>().ok());
            if name.ends_with(".tmp") || seq.is_some_and(|s| s > self.last_seq) {
                tracing::info!(sink = %self.sink, file = %name, "removing uncommitted file left by an earlier run");
                fs::remove_file(entry.path()).map_err(|e| Error::io(format!("removing {name}"), e))?;
            }
        }
        let frontier = point.frontier;
        self.ctx = Some(ctx);
        self.resume = Some(point);
        Ok(frontier)
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let ctx = self.ctx.ok_or_else(|| Error::config("write before resume"))?;
        if batch.is_empty() {
            return Ok(());
        }
        if self.open.is_none() {
            let generation = self.resume.as_ref().map_or(0, |r| r.generation);
            let path =
                self.dir.join("data").join(format!("{}.tmp", data_name(ctx.index, generation, self.last_seq + 1)));
            let f = File::create(&path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
            self.open = Some((path, BufWriter::with_capacity(1 << 20, f)));
        }
        let (path, w) = self.open.as_mut().expect("opened above");
        let time = batch.time.to_string();
        for r in batch.iter() {
            let line = &mut self.line;
            line.clear();
            if self.keyed {
                line.extend_from_slice(br#"{"time":"#);
                line.extend_from_slice(time.as_bytes());
                line.extend_from_slice(br#","key":"#);
                if self.text_keys {
                    serde_json::to_writer(&mut *line, &String::from_utf8_lossy(r.key)).expect("string encodes");
                } else {
                    line.extend_from_slice(r.key);
                }
                line.extend_from_slice(br#","value":"#);
                line.extend_from_slice(r.value.unwrap_or(b"null"));
                line.push(b'}');
            } else if let Some(v) = r.value {
                line.extend_from_slice(v);
            } else {
                continue;
            }
            line.push(b'\n');
            w.write_all(line).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        }
        Ok(())
    }

    fn commit(&mut self, upper: Frontier<u64>) -> Result<()> {
        let (Some(ctx), Some(point)) = (self.ctx, self.resume.clone()) else {
            return Err(Error::config("commit before resume"));
        };
        if let Some((tmp, w)) = self.open.take() {
            let f = w.into_inner().map_err(|e| Error::io(format!("flushing {}", tmp.display()), e.into_error()))?;
            if self.fsync {
                f.sync_all().map_err(|e| Error::io(format!("syncing {}", tmp.display()), e))?;
            }
            let done = tmp.with_extension("");
            fs::rename(&tmp, &done).map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))?;
            self.last_seq += 1;
            self.sync_dir(&self.dir.join("data"))?;
        }
        let manifest =
            Manifest { sink: self.sink.clone(), progress: point.record(ctx, upper), last_seq: self.last_seq };
        let name = manifest_name(ctx.index, point.generation);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let bytes = serde_json::to_vec_pretty(&manifest).expect("manifest encodes");
        let mut f = File::create(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        f.write_all(&bytes).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        if self.fsync {
            f.sync_all().map_err(|e| Error::io(format!("syncing {}", tmp.display()), e))?;
        }
        fs::rename(&tmp, self.dir.join(&name)).map_err(|e| Error::io(format!("committing {name}"), e))?;
        self.sync_dir(&self.dir)
    }
}
