//! Sorted runs on local disk: where the sink operator puts updates that do not fit its memory
//! budget, and how it reads them back.
//!
//! A worker's spill files live in a directory of its own, `<spill dir>/<sink>/<worker>-<pid>-<n>/`,
//! next to a lock file `<worker>-<pid>-<n>.lock` that the worker holds (an advisory `flock`) for
//! as long as it runs. A run is one file of bincode-encoded `((key, value), diff)` updates, sorted
//! by `(key, value)` in **descending** order and consolidated, so the operator can merge runs and
//! deliver a time from its largest keys down, exactly as it delivers a time held in memory.
//!
//! # What is guaranteed
//!
//! * **Nothing outlives its run.** A run's file is removed when the run is dropped, and a worker's
//!   directory when the worker's sink stops. The files of a run that crashed are removed by the next
//!   start of a sink of the same name: [`SpillDir::clean_stale`] removes every directory whose lock
//!   file nobody holds. Directories of a sink running in another process stay, since its lock is
//!   held.
//! * **Failures are typed.** An unwritable directory, a full disk or a run file that cannot be
//!   read back is a [`SpillError`] naming the directory and the option that sets it; the operator
//!   then fails the sink before delivering the time, so nothing is committed from a broken run.
//! * Spill files are scratch space: they are not synced, and a restart never reads them (it
//!   replays the input after the committed frontier instead).

use bincode::config::{AllowTrailing, VarintEncoding, WithOtherIntEncoding, WithOtherTrailing};
use bincode::de::read::IoReader;
use bincode::{DefaultOptions, Options as _};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Buffer size of a run's reader and writer.
const IO_BUFFER: usize = 256 * 1024;

/// Runs' encoding: `bincode` with integers as varints (lengths, diffs and a key's small numbers
/// take a byte or two instead of eight: 13% less to write and read back for rows of 100 bytes),
/// one encoder and one decoder per run. A run is read only by the process that wrote it.
type Options = WithOtherTrailing<WithOtherIntEncoding<DefaultOptions, VarintEncoding>, AllowTrailing>;

fn options() -> Options {
    DefaultOptions::new().with_varint_encoding().allow_trailing_bytes()
}

/// A spill directory could not be created, written or read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpillError {
    /// What failed, naming the path.
    pub message: String,
}

impl fmt::Display for SpillError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; the sink spills updates that exceed `buffer.max.bytes` to `buffer.spill.dir`: point that option at a \
             writable directory with free space, or raise the budget",
            self.message
        )
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> SpillError {
    SpillError { message: format!("{what} `{}`: {e}", path.display()) }
}

/// A file or directory name made of a sink's name: its safe characters, then a hash of the whole
/// name so that two names that differ only in unsafe characters do not share a directory.
fn sink_dir_name(sink: &str) -> String {
    let safe: String = sink
        .chars()
        .take(48)
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    let mut h = crate::route::Fnv64::default();
    h.update(sink.as_bytes());
    format!("{safe}-{:016x}", h.finish())
}

/// One worker's spill directory, created on first use and removed when dropped.
pub struct SpillDir {
    root: PathBuf,
    worker: usize,
    /// This worker's own directory and its held lock file, once created.
    own: Option<(PathBuf, PathBuf, File)>,
    next_run: u64,
}

/// Distinguishes the directories of several sinks of one name and worker in one process.
static INSTANCE: AtomicU64 = AtomicU64::new(0);

impl SpillDir {
    /// The spill space of `sink`'s worker `worker` under `dir`. Creates nothing yet.
    pub fn new(dir: &Path, sink: &str, worker: usize) -> Self {
        SpillDir { root: Self::sink_root(dir, sink), worker, own: None, next_run: 0 }
    }

    /// The directory under `dir` that holds the spill directories of every worker of `sink`.
    pub fn sink_root(dir: &Path, sink: &str) -> PathBuf {
        dir.join(sink_dir_name(sink))
    }

    /// Removes the directories that runs of this sink left behind when they crashed: every one
    /// whose lock file no running process holds. Directories of this process are left alone (its
    /// other workers may be creating theirs right now).
    pub fn clean_stale(&self) -> Result<(), SpillError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("cannot list the spill directory", &self.root, e)),
        };
        let mine = format!("-{}-", std::process::id());
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".lock").unwrap_or(&name).to_string();
            if stem.contains(&mine) {
                continue;
            }
            let lock = self.root.join(format!("{stem}.lock"));
            let stale = match File::open(&lock) {
                // A directory without a lock file lost its owner.
                Err(_) => true,
                Ok(f) => f.try_lock().is_ok(),
            };
            if stale {
                let dir = self.root.join(&stem);
                // Every worker of a starting sink cleans, so another may remove the same directory
                // at the same moment: a directory that is already gone is what was wanted.
                match fs::remove_dir_all(&dir) {
                    Ok(()) => tracing::info!(path = %dir.display(), "removed the spill files of a run that crashed"),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error("cannot remove stale spill files", &dir, e)),
                }
                let _ = fs::remove_file(&lock);
            }
        }
        Ok(())
    }

    /// This worker's directory, created (with its lock held) on first use.
    fn own_dir(&mut self) -> Result<&Path, SpillError> {
        if self.own.is_none() {
            fs::create_dir_all(&self.root).map_err(|e| io_error("cannot create the spill directory", &self.root, e))?;
            let stem = format!("w{}-{}-{}", self.worker, std::process::id(), INSTANCE.fetch_add(1, Ordering::Relaxed));
            let lock_path = self.root.join(format!("{stem}.lock"));
            let lock =
                File::create(&lock_path).map_err(|e| io_error("cannot create a spill lock file", &lock_path, e))?;
            lock.lock().map_err(|e| io_error("cannot lock the spill lock file", &lock_path, e))?;
            let dir = self.root.join(stem);
            fs::create_dir_all(&dir).map_err(|e| io_error("cannot create the spill directory", &dir, e))?;
            self.own = Some((dir, lock_path, lock));
        }
        Ok(&self.own.as_ref().expect("created above").0)
    }

    /// Writes `updates` — sorted by `(key, value)` *descending* and consolidated — as one run.
    pub fn write_run<D: Serialize>(
        &mut self,
        updates: impl IntoIterator<Item = Result<D, SpillError>>,
    ) -> Result<Run, SpillError> {
        let n = self.next_run;
        self.next_run += 1;
        let path = self.own_dir()?.join(format!("run-{n}.bin"));
        let file = File::create(&path).map_err(|e| io_error("cannot create a spill file", &path, e))?;
        let mut run = Run { path, len: 0, bytes: 0 };
        let mut out = BufWriter::with_capacity(IO_BUFFER, file);
        let mut encoder = bincode::Serializer::new(&mut out, options());
        for u in updates {
            u?.serialize(&mut encoder).map_err(|e| SpillError {
                message: format!("cannot write spill file `{}`: {e}", run.path.display()),
            })?;
            run.len += 1;
        }
        out.flush().map_err(|e| io_error("cannot write spill file", &run.path, e))?;
        run.bytes = out.get_ref().metadata().map(|m| m.len()).unwrap_or(0);
        Ok(run)
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        if let Some((dir, lock_path, _lock)) = self.own.take() {
            let _ = fs::remove_dir_all(&dir);
            let _ = fs::remove_file(&lock_path);
        }
    }
}

/// One sorted run on disk; its file is removed when the run is dropped.
#[derive(Debug)]
pub struct Run {
    path: PathBuf,
    len: u64,
    bytes: u64,
}

impl Run {
    /// How many updates the run holds.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// True when the run holds no update.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The size of its file.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
    /// Opens the run for reading, from its first (largest) update.
    pub fn open<D: DeserializeOwned>(self) -> Result<RunReader<D>, SpillError> {
        let file = File::open(&self.path).map_err(|e| io_error("cannot open spill file", &self.path, e))?;
        Ok(RunReader {
            input: bincode::Deserializer::with_reader(BufReader::with_capacity(IO_BUFFER, file), options()),
            left: self.len,
            run: self,
            _d: Default::default(),
        })
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Reads a run's updates back in the order they were written.
pub struct RunReader<D> {
    /// One decoder for the whole run, so that its scratch buffer is reused from update to update.
    input: bincode::Deserializer<IoReader<BufReader<File>>, Options>,
    left: u64,
    run: Run,
    _d: std::marker::PhantomData<D>,
}

impl<D: DeserializeOwned> RunReader<D> {
    /// The next update, or `None` at the end of the run.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<D>, SpillError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        D::deserialize(&mut self.input).map(Some).map_err(|e| SpillError {
            message: format!("cannot read spill file `{}` back: {e}", self.run.path.display()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dsink-spill-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_run_reads_back_what_was_written_and_is_removed_when_dropped() {
        let root = scratch("roundtrip");
        let mut dir = SpillDir::new(&root, "s/1", 0);
        let run = dir.write_run((0..1000u64).rev().map(|i| Ok(((i, format!("v{i}")), 1isize)))).unwrap();
        assert_eq!(run.len(), 1000);
        let path = run.path.clone();
        let mut r = run.open::<((u64, String), isize)>().unwrap();
        let mut got = Vec::new();
        while let Some(u) = r.next().unwrap() {
            got.push(u);
        }
        assert_eq!(got.len(), 1000);
        assert_eq!(got[0], ((999, "v999".to_string()), 1));
        drop(r);
        assert!(!path.exists());
        drop(dir);
        assert_eq!(fs::read_dir(root.join(sink_dir_name("s/1"))).unwrap().count(), 0, "the worker's directory is gone");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn stale_directories_are_removed_and_live_ones_kept() {
        let root = scratch("stale");
        let sink_root = root.join(sink_dir_name("s"));
        // A crashed run of another process: a directory and a lock file nobody holds.
        fs::create_dir_all(sink_root.join("w0-1-0")).unwrap();
        fs::write(sink_root.join("w0-1-0/run-0.bin"), b"x").unwrap();
        fs::write(sink_root.join("w0-1-0.lock"), b"").unwrap();
        // An orphan directory without a lock file.
        fs::create_dir_all(sink_root.join("w1-2-0")).unwrap();
        // A live run of another process: its lock is held.
        fs::create_dir_all(sink_root.join("w0-3-0")).unwrap();
        let held = File::create(sink_root.join("w0-3-0.lock")).unwrap();
        held.lock().unwrap();
        SpillDir::new(&root, "s", 0).clean_stale().unwrap();
        assert!(!sink_root.join("w0-1-0").exists());
        assert!(!sink_root.join("w0-1-0.lock").exists());
        assert!(!sink_root.join("w1-2-0").exists());
        assert!(sink_root.join("w0-3-0").exists(), "a held lock keeps its directory");
        drop(held);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn workers_cleaning_the_same_stale_directory_at_once_both_succeed() {
        // Every worker of a starting sink cleans the sink's spill root: two removing one crashed
        // run's directory at the same moment each find files the other already removed.
        let root = scratch("race");
        let sink_root = root.join(sink_dir_name("s"));
        for round in 0..400 {
            let stale = sink_root.join(format!("w0-1-{round}"));
            fs::create_dir_all(&stale).unwrap();
            for i in 0..2 {
                fs::write(stale.join(format!("run-{i}.bin")), b"x").unwrap();
            }
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
            let workers: Vec<_> = (0..2)
                .map(|w| {
                    let (root, barrier) = (root.clone(), std::sync::Arc::clone(&barrier));
                    std::thread::spawn(move || {
                        barrier.wait();
                        SpillDir::new(&root, "s", w).clean_stale()
                    })
                })
                .collect();
            for w in workers {
                w.join().unwrap().unwrap_or_else(|e| panic!("round {round}: {e}"));
            }
            assert!(!stale.exists(), "round {round}: the stale directory is gone");
        }
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn an_unwritable_directory_is_a_typed_error_naming_the_option() {
        let root = scratch("unwritable");
        fs::write(&root, b"a file, not a directory").unwrap();
        let mut dir = SpillDir::new(&root, "s", 0);
        let e = dir.write_run(std::iter::once(Ok(1u8))).unwrap_err();
        assert!(e.to_string().contains("buffer.spill.dir"), "{e}");
        assert!(e.to_string().contains(&root.display().to_string()), "{e}");
        let _ = fs::remove_file(&root);
    }
}
