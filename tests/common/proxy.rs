//! A TCP proxy that breaks connections on purpose, for the fault tests: a sink talks to its
//! server through it, and the test cuts every open connection — at once, or once a number of
//! bytes has gone upstream (so the cut lands inside a request or a transaction) — refuses new
//! connections for a while, or loses the answer to a request that contains a given pattern (the
//! server applies it, the client never hears: an ambiguous commit).
//!
//! Plain threads and blocking sockets: it needs no runtime and works under any client. Traffic
//! stays on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Shared {
    /// Both ends of every open connection, to shut them down on a cut.
    open: Mutex<Vec<(TcpStream, TcpStream)>>,
    /// New connections are closed at once while this is set.
    down: AtomicBool,
    stop: AtomicBool,
    /// Bytes sent upstream (client to server) so far.
    upstream: AtomicU64,
    /// Cut every connection once `upstream` reaches this (then disarmed); 0 = not armed.
    cut_at: AtomicU64,
    /// How many cuts happened.
    cuts: AtomicU64,
    /// Lose the answer to the next request that contains this (then disarmed).
    swallow: Mutex<Option<Vec<u8>>>,
    /// How many answers were lost.
    swallowed: AtomicU64,
}

impl Shared {
    fn cut(&self) {
        let open = std::mem::take(&mut *self.open.lock().unwrap());
        for (a, b) in open {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
        self.cuts.fetch_add(1, Ordering::SeqCst);
    }
}

/// A proxy in front of `target`; see the module docs.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Starts a proxy on a free port of 127.0.0.1 forwarding to `target` (`host:port`).
    pub fn start(target: &str) -> FaultProxy {
        let target: SocketAddr = {
            use std::net::ToSocketAddrs;
            target.to_socket_addrs().unwrap().next().unwrap()
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                if s.down.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                s.open.lock().unwrap().push((client.try_clone().unwrap(), server.try_clone().unwrap()));
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (up, down) = (Arc::clone(&s), Arc::clone(&s));
                let lose = Arc::new(AtomicBool::new(false));
                let lose2 = Arc::clone(&lose);
                std::thread::spawn(move || pump(client, server, Side::Up(up, lose)));
                std::thread::spawn(move || pump(s2, c2, Side::Down(down, lose2)));
            }
        });
        FaultProxy { addr, shared }
    }

    /// `host:port` of the proxy.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Cuts every open connection now.
    pub fn cut(&self) {
        self.shared.cut();
    }

    /// Cuts every open connection once `bytes` more have gone upstream (once).
    pub fn cut_after(&self, bytes: u64) {
        let now = self.shared.upstream.load(Ordering::SeqCst);
        self.shared.cut_at.store(now + bytes.max(1), Ordering::SeqCst);
    }

    /// Takes back a cut that has not happened.
    pub fn disarm(&self) {
        self.shared.cut_at.store(0, Ordering::SeqCst);
    }

    /// Loses the answer to the next request whose bytes contain `pattern`: the server gets the
    /// whole request, then every connection is cut before its answer reaches the client.
    pub fn lose_answer_to(&self, pattern: &[u8]) {
        *self.shared.swallow.lock().unwrap() = Some(pattern.to_vec());
    }

    /// How many answers were lost so far.
    pub fn lost_answers(&self) -> u64 {
        self.shared.swallowed.load(Ordering::SeqCst)
    }

    /// Closes new connections at once (`true`) or forwards them again (`false`).
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// How many cuts happened so far.
    pub fn cuts(&self) -> u64 {
        self.shared.cuts.load(Ordering::SeqCst)
    }

    /// Bytes forwarded upstream so far.
    pub fn upstream_bytes(&self) -> u64 {
        self.shared.upstream.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.cut();
        let _ = TcpStream::connect(self.addr);
    }
}

/// Which way a pump copies, with what it needs for the faults: upstream pumps count bytes,
/// fire an armed cut and mark their connection when a request matches the lost-answer pattern;
/// the downstream pump of a marked connection cuts instead of forwarding the answer.
enum Side {
    Up(Arc<Shared>, Arc<AtomicBool>),
    Down(Arc<Shared>, Arc<AtomicBool>),
}

/// Copies `from` to `to` until either side closes, injecting the armed faults.
fn pump(mut from: TcpStream, mut to: TcpStream, side: Side) {
    let mut buf = [0u8; 16 * 1024];
    // The end of the previous read, so a pattern split between two reads is still seen.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Side::Down(s, lose) = &side {
            if lose.load(Ordering::SeqCst) {
                s.swallowed.fetch_add(1, Ordering::SeqCst);
                s.cut();
                break;
            }
        }
        if let Side::Up(s, lose) = &side {
            let mut armed = s.swallow.lock().unwrap();
            if let Some(pattern) = armed.clone() {
                tail.extend_from_slice(&buf[..n]);
                if tail.windows(pattern.len()).any(|w| w == pattern.as_slice()) {
                    *armed = None;
                    lose.store(true, Ordering::SeqCst);
                }
                let keep = pattern.len().saturating_sub(1);
                let drop = tail.len().saturating_sub(keep);
                tail.drain(..drop);
            }
            drop(armed);
        }
        if let Side::Up(s, _) = &side {
            let at = s.cut_at.load(Ordering::SeqCst);
            let before = s.upstream.fetch_add(n as u64, Ordering::SeqCst);
            if at > 0 && before + n as u64 >= at {
                // Forward only the bytes before the cut point: the server sees a request cut off.
                let keep = at.saturating_sub(before) as usize;
                let _ = to.write_all(&buf[..keep.min(n)]);
                if s.cut_at.compare_exchange(at, 0, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                    s.cut();
                }
                break;
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// A fault to inject through a [`FaultProxy`].
#[derive(Clone, Copy, Debug)]
pub enum Fault<'a> {
    /// Cut every connection once this share of a whole run's upstream traffic went through.
    CutAt(f64),
    /// Lose the answer to the first request that contains this.
    LoseAnswerTo(&'a [u8]),
}

/// Runs a pipeline through `proxy` once per fault, each into a fresh target: `run(i)` runs it
/// into target `i` (called again for the same target after a run that stopped, and that rerun
/// must succeed) and returns the sink's error; `check(i)` compares target `i` with the
/// reference. When a fault is a [`Fault::CutAt`], target 0 first gets a run without any fault,
/// which measures the traffic of a whole run. Asserts that every fault happened, and prints
/// whether the sink rode through or stopped — except a cut placed past the traffic a run actually
/// made (how many commits a run makes, and so its traffic, depends on timing): such a run must
/// have moved fewer bytes than the cut point, is still checked against the reference, and at
/// least half of the cuts must happen.
pub fn run_with_faults(
    proxy: &FaultProxy,
    faults: &[Fault<'_>],
    mut run: impl FnMut(usize) -> Option<String>,
    mut check: impl FnMut(usize),
) {
    let (mut total, mut missed) = (0, 0);
    if faults.iter().any(|f| matches!(f, Fault::CutAt(_))) {
        let before = proxy.upstream_bytes();
        assert_eq!(run(0), None, "the run without a fault failed");
        check(0);
        total = proxy.upstream_bytes() - before;
    }
    for (n, fault) in faults.iter().enumerate() {
        let i = n + 1;
        let (cuts, lost) = (proxy.cuts(), proxy.lost_answers());
        match *fault {
            Fault::CutAt(share) => proxy.cut_after(((total as f64 * share) as u64).max(1)),
            Fault::LoseAnswerTo(pattern) => proxy.lose_answer_to(pattern),
        }
        let before = proxy.upstream_bytes();
        let first = run(i);
        match *fault {
            Fault::CutAt(share) if proxy.cuts() == cuts => {
                let moved = proxy.upstream_bytes() - before;
                let at = ((total as f64 * share) as u64).max(1);
                proxy.disarm();
                assert!(moved < at, "the cut at {share} of {total} bytes did not happen, though the run moved {moved}");
                assert!(first.is_none(), "a run without a cut failed: {first:?}");
                eprintln!("{fault:?}: this run moved {moved} of the {total} bytes measured: no cut");
                missed += 1;
                check(i);
                continue;
            }
            Fault::CutAt(_) => assert_eq!(proxy.cuts(), cuts + 1),
            Fault::LoseAnswerTo(p) => {
                assert_eq!(proxy.lost_answers(), lost + 1, "an answer to `{}` was lost", String::from_utf8_lossy(p))
            }
        }
        eprintln!("{fault:?}: {}", first.as_ref().map_or("rode through".to_string(), |e| format!("stopped: {e}")));
        if let Some(e) = first {
            assert!(!e.contains("panicked"), "{e}");
            assert_eq!(run(i), None, "the rerun after `{e}` completes");
        }
        check(i);
    }
    let cuts = faults.iter().filter(|f| matches!(f, Fault::CutAt(_))).count();
    assert!(missed * 2 <= cuts, "only {} of {cuts} cuts happened", cuts - missed);
}
