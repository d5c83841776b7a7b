//! A private instance of a test server, started by the project's own `scripts/services` with its
//! own state directory and ports, so a fault test can kill it (SIGKILL, by the PID the script
//! recorded) and start it again on the same data without touching the shared servers.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// One private server; stopped (by `scripts/services stop`) when dropped.
pub struct PrivateService {
    name: String,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/services")
}

/// Whether process `pid` still runs (a zombie, exited but not yet reaped, does not).
pub fn alive(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct ports nobody listens on right now (all held while they are chosen, so no two
/// are the same).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<std::net::TcpListener> =
        (0..N).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

impl PrivateService {
    /// Starts service `name` with the extra environment `env` (its ports); `venv` is the
    /// shared Python environment for services that run from it.
    pub fn start(name: &str, env: &[(&str, String)], venv: Option<PathBuf>) -> PrivateService {
        let dir = tempfile::tempdir().unwrap();
        let mut env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        env.push(("DSINK_SERVICES_DIR".into(), dir.path().display().to_string()));
        if let Some(v) = venv {
            env.push(("DSINK_VENV".into(), v.display().to_string()));
        }
        let s = PrivateService { name: name.to_string(), dir, env };
        s.run("start");
        s
    }

    fn run(&self, what: &str) {
        let out = Command::new("bash")
            .arg(script())
            .arg(what)
            .arg(&self.name)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/services {what} {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Kills the server with SIGKILL (by the PID `scripts/services` recorded), waits until it is
    /// gone, and starts it again on the same state.
    pub fn kill_and_restart(&self) {
        let pid_file = self.dir.path().join(format!("{}.pid", self.name));
        let pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_string();
        assert!(Command::new("kill").args(["-KILL", &pid]).status().unwrap().success(), "kill -KILL {pid}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while alive(&pid) {
            assert!(Instant::now() < deadline, "{} ({pid}) did not exit", self.name);
            std::thread::sleep(Duration::from_millis(20)); // poll interval while the process exits
        }
        self.run("start");
    }
}

impl Drop for PrivateService {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output();
    }
}
