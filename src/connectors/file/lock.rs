//! Fencing: one run of a sink at a time writes its directory.
//!
//! Worker `i` of a run on `n` workers holds an exclusive OS file lock (`flock` on Unix,
//! `LockFileEx` on Windows, through std's [`File::try_lock`]) on `<sink dir>/.lock-w<i>-of-<n>`
//! for its writer's life; the operating system releases it when the writer is dropped or the
//! process dies, so a crash never leaves a stale lock. The workers of one run have distinct
//! indices, so they never fence each other, whether they share a process or are spread over the
//! processes of a cluster. A second run is refused on every worker:
//!
//! * with as many workers, each of its workers finds its lock taken;
//! * with another number, each of its workers first takes its own lock and then tries a shared
//!   lock on every lock file of another worker count; one that is held belongs to a live run.
//!   Two such runs starting together each take their own lock before looking at the other's, so
//!   at least one of them sees the other (both may be refused; neither writes).
//!
//! Locks are advisory: they fence runs of this library, not other programs writing the directory.
//! They need a file system that implements them (local file systems do; some network file
//! systems do not, and are refused with the error they report).

use crate::error::{Error, ErrorKind, Result};
use differential_sinks_operators::WorkerContext;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::Path;

/// A worker's lock on its sink's directory, released when dropped.
#[derive(Debug)]
pub(super) struct Fence {
    _file: File,
}

fn lock_name(index: usize, peers: usize) -> String {
    format!(".lock-w{index}-of-{peers}")
}

/// The worker count of a lock file's name.
fn lock_peers(name: &str) -> Option<usize> {
    let rest = name.strip_prefix(".lock-w")?;
    let (index, peers) = rest.split_once("-of-")?;
    index.parse::<usize>().ok()?;
    peers.parse().ok()
}

fn held(root: &Path, sink: &str, lock: &Path) -> Error {
    Error::new(
        ErrorKind::Fenced,
        format!(
            "another run of sink `{sink}` holds {} (its lock {} is taken): wait for that run to end or stop it; \
             to write a second copy of the sink at the same time, give this run another `path`",
            root.display(),
            lock.display()
        ),
    )
}

fn lock_error(lock: &Path, e: std::io::Error) -> Error {
    Error::io(
        format!(
            "locking {} (the file sink fences concurrent runs with file locks, which this file system refused)",
            lock.display()
        ),
        e,
    )
}

impl Fence {
    /// Takes worker `ctx`'s lock of sink `sink` in `sink_dir` (under `root`), or says which run
    /// holds the directory.
    pub(super) fn acquire(root: &Path, sink_dir: &Path, sink: &str, ctx: WorkerContext) -> Result<Fence> {
        fs::create_dir_all(sink_dir).map_err(|e| Error::io(format!("creating {}", sink_dir.display()), e))?;
        let own = sink_dir.join(lock_name(ctx.index, ctx.peers));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&own)
            .map_err(|e| Error::io(format!("opening {}", own.display()), e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(held(root, sink, &own)),
            Err(TryLockError::Error(e)) => return Err(lock_error(&own, e)),
        }
        for entry in fs::read_dir(sink_dir).map_err(|e| Error::io(format!("listing {}", sink_dir.display()), e))? {
            let entry = entry.map_err(|e| Error::io(format!("listing {}", sink_dir.display()), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if lock_peers(&name).is_none_or(|peers| peers == ctx.peers) {
                continue;
            }
            let path = entry.path();
            let other = File::open(&path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
            match other.try_lock_shared() {
                Ok(()) => drop(other), // closing it releases the shared lock
                Err(TryLockError::WouldBlock) => return Err(held(root, sink, &path)),
                Err(TryLockError::Error(e)) => return Err(lock_error(&path, e)),
            }
        }
        Ok(Fence { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_names_parse_back() {
        assert_eq!(lock_peers(&lock_name(3, 4)), Some(4));
        assert_eq!(lock_peers(".lock-w3-of-"), None);
        assert_eq!(lock_peers("manifest-w0-g0.json"), None);
    }

    #[test]
    fn one_run_holds_a_sink_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (root, sink_dir) = (dir.path(), dir.path().join("sinks").join("s"));
        let ctx = |index, peers| WorkerContext::new(index, peers);
        // The workers of one run do not fence each other.
        let run: Vec<Fence> = (0..3).map(|i| Fence::acquire(root, &sink_dir, "s", ctx(i, 3)).unwrap()).collect();
        // A second run, on as many or on another number of workers, is refused on every worker.
        for (index, peers) in [(0, 3), (2, 3), (0, 1), (1, 2), (3, 4)] {
            let e = Fence::acquire(root, &sink_dir, "s", ctx(index, peers)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Fenced, "{e}");
            assert!(e.message().contains("another run of sink `s` holds"), "{e}");
        }
        drop(run);
        // Once it ended, a run on any number of workers may start.
        let next: Vec<Fence> = (0..2).map(|i| Fence::acquire(root, &sink_dir, "s", ctx(i, 2)).unwrap()).collect();
        assert!(Fence::acquire(root, &sink_dir, "s", ctx(0, 3)).is_err());
        drop(next);
        Fence::acquire(root, &sink_dir, "s", ctx(0, 3)).unwrap();
    }
}
