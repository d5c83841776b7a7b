//! Crash points: named places in the write and commit path where a test can have the process
//! killed, to show that a restart after a crash at exactly that place delivers every change once.
//!
//! With the `crash-points` feature, [`crash_point`] counts how often each point is passed by any
//! thread of the process; when the environment variable `DSINK_CRASH_AT=<point>:<n>` names a point
//! and the count reaches `n` (from 1), it prints `dsink crash point <point> #<n>` to stderr and
//! sends the process `SIGKILL`: no destructor, flush or `Drop` runs, as in a real crash. Without the
//! feature, or without the variable, a crash point does nothing (one relaxed atomic load when the
//! feature is on and the variable is unset).
//!
//! The points the operator passes are:
//!
//! | point | where |
//! |---|---|
//! | `write` | before each chunk of a time is handed to the writer |
//! | `commit.begin` | before a worker commits (or, for a coordinated sink, prepares) |
//! | `commit.end` | after the commit (or prepare) returned, before it is reported |
//! | `round.begin`, `round.end` | around the committer's commit of a coordinated round |
//!
//! Connectors add `commit.mid` between the steps of their own commit (e.g. after the data and
//! before the progress record, or before the final transaction commit).

/// Passes the crash point `name`: kills the process here if `DSINK_CRASH_AT` says so.
#[inline]
pub fn crash_point(name: &str) {
    #[cfg(feature = "crash-points")]
    armed::pass(name);
    #[cfg(not(feature = "crash-points"))]
    let _ = name;
}

#[cfg(feature = "crash-points")]
mod armed {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    /// The armed point and hit number, read once from the environment.
    fn target() -> Option<&'static (String, u64)> {
        static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
        TARGET
            .get_or_init(|| {
                let spec = std::env::var("DSINK_CRASH_AT").ok()?;
                let (point, n) = spec.rsplit_once(':')?;
                let n = n.parse::<u64>().ok().filter(|n| *n >= 1)?;
                Some((point.to_string(), n))
            })
            .as_ref()
    }

    pub(super) fn pass(name: &str) {
        static HITS: AtomicU64 = AtomicU64::new(0);
        let Some((point, n)) = target() else { return };
        if point != name {
            return;
        }
        let hit = HITS.fetch_add(1, Ordering::SeqCst) + 1;
        if hit == *n {
            eprintln!("dsink crash point {name} #{hit}");
            // SAFETY: `kill` with this process's id and a signal number has no memory effects.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            // SIGKILL cannot be caught; this thread never gets here.
            loop {
                std::thread::park();
            }
        }
    }
}
