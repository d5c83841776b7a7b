//! The file connector's writer: one per worker, committing on its own.

use super::layout::{base_of, data_name, parse_data_name, sink_dir};
use super::lock::Fence;
use super::progress::{manifest_name, read_manifests, Manifest};
use super::FileConfig;
use crate::connectors::RecordWriter;
use crate::error::{Error, Result};
use crate::key::KeyEncoding;
use crate::record::RecordBatch;
use crate::settings::SinkSettings;
use differential_sinks_operators::{resolve_resume, Frontier, ResumePoint, WorkerContext, WorkerProgress};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// One worker's writer into a file sink directory.
pub struct FileWriter {
    /// The directory the sink was given (`path`).
    root: PathBuf,
    /// The sink's own directory, `<root>/sinks/<name>`: its lock files, and its output unless
    /// `root` holds that in the layout of earlier versions.
    sink_dir: PathBuf,
    /// Where the manifests and `data/` are (set by `resume`).
    base: PathBuf,
    sink: String,
    fsync: bool,
    keyed: bool,
    text_keys: bool,
    ctx: Option<WorkerContext>,
    resume: Option<ResumePoint<u64>>,
    last_seq: u64,
    open: Option<(PathBuf, BufWriter<File>)>,
    line: Vec<u8>,
    /// This worker's lock on the sink's directory, taken by `resume`, held until the writer drops.
    fence: Option<Fence>,
}

impl FileWriter {
    /// Opens a writer (creating the directory). Nothing in it is read or written before
    /// [`resume`](RecordWriter::resume), which takes this worker's lock.
    pub fn open(config: &FileConfig, spec: &SinkSettings, _ctx: WorkerContext) -> Result<Self> {
        let sink_dir = sink_dir(&config.path, spec.name())?;
        fs::create_dir_all(&sink_dir).map_err(|e| Error::io(format!("creating {}", sink_dir.display()), e))?;
        Ok(FileWriter {
            root: config.path.clone(),
            base: sink_dir.clone(),
            sink_dir,
            sink: spec.name().to_string(),
            fsync: config.fsync,
            keyed: spec.format().is_keyed(),
            text_keys: matches!(spec.key_encoding(), KeyEncoding::Text { .. }),
            ctx: None,
            resume: None,
            last_seq: 0,
            open: None,
            line: Vec::with_capacity(256),
            fence: None,
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
        // Fence first: everything below reads and removes files no other run may be writing.
        let fence = Fence::acquire(&self.root, &self.sink_dir, &self.sink, ctx)?;
        self.base = base_of(&self.root, &self.sink)?;
        let data = self.base.join("data");
        fs::create_dir_all(&data).map_err(|e| Error::io(format!("creating {}", data.display()), e))?;
        // The directories' entries must be durable before a manifest in them is.
        for dir in [self.root.as_path(), self.sink_dir.parent().unwrap_or(self.root.as_path()), self.base.as_path()] {
            self.sync_dir(dir)?;
        }
        let manifests: Vec<Manifest> =
            read_manifests(&self.base)?.into_iter().filter(|m| m.sink == self.sink).collect();
        let records: Vec<WorkerProgress<u64>> = manifests.iter().map(|m| m.progress.clone()).collect();
        let point = resolve_resume(&records, ctx)?;
        self.last_seq = manifests
            .iter()
            .find(|m| m.progress.generation == point.generation && m.progress.worker == ctx.index)
            .map_or(0, |m| m.last_seq);
        // Remove what a crash left behind: this worker's temporary files and data files past its
        // manifest, in this generation. Names are parsed strictly, so no other file is touched.
        for entry in fs::read_dir(&data).map_err(|e| Error::io(format!("listing {}", data.display()), e))? {
            let entry = entry.map_err(|e| Error::io(format!("listing {}", data.display()), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((seq, tmp)) = parse_data_name(&name, ctx.index, point.generation) else {
                continue;
            };
            if tmp || seq > self.last_seq {
                tracing::info!(sink = %self.sink, file = %name, "removing uncommitted file left by an earlier run");
                fs::remove_file(entry.path()).map_err(|e| Error::io(format!("removing {name}"), e))?;
            }
        }
        let frontier = point.frontier;
        self.ctx = Some(ctx);
        self.resume = Some(point);
        self.fence = Some(fence);
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
                self.base.join("data").join(format!("{}.tmp", data_name(ctx.index, generation, self.last_seq + 1)));
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
            self.sync_dir(&self.base.join("data"))?;
        }
        crate::operators::crash_point("commit.mid");
        let manifest =
            Manifest { sink: self.sink.clone(), progress: point.record(ctx, upper), last_seq: self.last_seq };
        let name = manifest_name(ctx.index, point.generation);
        let tmp = self.base.join(format!(".{name}.tmp"));
        let bytes = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::new(crate::error::ErrorKind::Fatal, format!("encoding the manifest: {e}")))?;
        let mut f = File::create(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        f.write_all(&bytes).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        if self.fsync {
            f.sync_all().map_err(|e| Error::io(format!("syncing {}", tmp.display()), e))?;
        }
        fs::rename(&tmp, self.base.join(&name)).map_err(|e| Error::io(format!("committing {name}"), e))?;
        self.sync_dir(&self.base)
    }
}
