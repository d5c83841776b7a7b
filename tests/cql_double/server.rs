//! The server: a listener on an ephemeral port of 127.0.0.1, one thread per connection reading
//! frames and answering them, and the [`CqlDouble`] handle that stops everything when dropped.

use super::codec::*;
use super::error::*;
use super::storage::*;
use super::wire::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub(crate) fn serve(db: Arc<Mutex<Db>>, mut s: TcpStream) {
    let mut conn = Conn::default();
    loop {
        let mut h = [0u8; 9];
        if s.read_exact(&mut h).is_err() {
            return;
        }
        let (version, flags, stream, opcode) = (h[0], h[1], [h[2], h[3]], h[4]);
        let len = u32::from_be_bytes(h[5..9].try_into().unwrap()) as usize;
        let mut body = vec![0; len];
        if s.read_exact(&mut body).is_err() {
            return;
        }
        let answer = if version != 0x04 {
            Err(err(
                PROTOCOL,
                format!("Invalid or unsupported protocol version ({version}); supported versions are (4/v4)"),
            ))
        } else if flags & 0x01 != 0 {
            Err(err(PROTOCOL, "compressed frames are not supported by the CQL double"))
        } else {
            let mut b = &body[..];
            if flags & 0x04 != 0 {
                // A custom payload ([bytes map]) precedes the body: skip it.
                let mut r = Reader { b, pos: 0 };
                let skip = (|| -> R<()> {
                    for _ in 0..r.u16()? {
                        r.string()?;
                        r.bytes()?;
                    }
                    Ok(())
                })();
                b = &body[r.pos..];
                skip.and_then(|_| handle(&db, opcode, b, &mut conn))
            } else {
                handle(&db, opcode, b, &mut conn)
            }
        };
        let (op, out) = match answer {
            Ok((NO_ANSWER, _)) => continue,
            Ok(x) => x,
            Err(e) => {
                let mut out = e.code.to_be_bytes().to_vec();
                write_string(&mut out, &e.message);
                out.extend_from_slice(&e.extra);
                (OP_ERROR, out)
            }
        };
        let mut frame = vec![0x84, 0, stream[0], stream[1], op];
        frame.extend_from_slice(&(out.len() as u32).to_be_bytes());
        frame.extend_from_slice(&out);
        if s.write_all(&frame).is_err() {
            return;
        }
    }
}

/// A running double on an ephemeral port of 127.0.0.1; stopped (listener and every connection
/// closed) when dropped.
pub struct CqlDouble {
    pub addr: SocketAddr,
    pub db: Arc<Mutex<Db>>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) conns: Arc<Mutex<Vec<TcpStream>>>,
    pub(crate) accept: Option<std::thread::JoinHandle<()>>,
}

impl CqlDouble {
    pub fn start() -> CqlDouble {
        Self::start_with(None)
    }

    /// Requires `PasswordAuthenticator` credentials.
    pub fn start_with(credentials: Option<(&str, &str)>) -> CqlDouble {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the CQL double");
        let addr = listener.local_addr().unwrap();
        let db = Arc::new(Mutex::new(Db {
            credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
            batch_fail_threshold: 50 * 1024,
            ..Db::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (db2, stop2, conns2) = (db.clone(), stop.clone(), conns.clone());
        let accept = std::thread::spawn(move || {
            for s in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(s) = s else { continue };
                let _ = s.set_nodelay(true);
                conns2.lock().unwrap().push(s.try_clone().unwrap());
                let db = db2.clone();
                std::thread::spawn(move || serve(db, s));
            }
        });
        CqlDouble { addr, db, stop, conns, accept: Some(accept) }
    }

    pub fn url(&self) -> String {
        self.addr.to_string()
    }

    /// Runs a statement directly (no wire), panicking on an error.
    pub fn exec(&self, cql: &str) {
        if let Err(e) = self.db.lock().unwrap().execute(cql, &[], now_micros(), None) {
            panic!("`{cql}` failed: {e:?}");
        }
    }

    /// The live rows of a table as JSON objects (null columns omitted), in key order.
    pub fn rows(&self, ks: &str, table: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
        let db = self.db.lock().unwrap();
        let (cols, rows) = db.relation(ks, table).expect("table exists");
        rows.iter()
            .map(|r| {
                cols.iter()
                    .zip(r)
                    .filter_map(|(c, v)| v.as_ref().map(|v| (c.name.clone(), c.ty.bytes_to_json(v))))
                    .collect()
            })
            .collect()
    }

    /// Everything stored for a table, tombstones and timestamps included.
    pub fn stored(&self, ks: &str, table: &str) -> BTreeMap<Vec<Vec<u8>>, StoredRow> {
        self.db.lock().unwrap().table(ks, table).expect("table exists").rows.clone()
    }

    /// The writes applied to `ks.table` so far.
    pub fn writes(&self, ks: &str, table: &str) -> Vec<WriteRecord> {
        let t = format!("{ks}.{table}");
        self.db.lock().unwrap().writes.iter().filter(|w| w.table == t).cloned().collect()
    }
}

impl Drop for CqlDouble {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}
