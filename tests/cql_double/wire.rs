//! The native protocol v4 wire: reading request bodies, writing result bodies, and answering one
//! request frame ([`handle`]) on a connection's state.

use super::codec::*;
use super::error::*;
use super::execute::*;
use super::parser::*;
use super::storage::*;
use super::types::*;
use std::sync::Mutex;
/// `[query parameters]` of QUERY and EXECUTE.
pub(crate) struct Params {
    pub(crate) values: Vec<Bound>,
    pub(crate) skip_metadata: bool,
    pub(crate) page_size: Option<usize>,
    pub(crate) paging_state: Option<usize>,
    pub(crate) timestamp: Option<i64>,
}

pub(crate) fn read_params(r: &mut Reader) -> R<Params> {
    let _consistency = r.u16()?;
    let flags = r.u8()?;
    let mut p = Params {
        values: Vec::new(),
        skip_metadata: flags & 0x02 != 0,
        page_size: None,
        paging_state: None,
        timestamp: None,
    };
    if flags & 0x40 != 0 {
        return Err(invalid("named bind values are not supported by the CQL double"));
    }
    if flags & 0x01 != 0 {
        let n = r.u16()?;
        for _ in 0..n {
            p.values.push(r.bytes()?);
        }
    }
    if flags & 0x04 != 0 {
        p.page_size = Some(r.i32()?.max(0) as usize);
    }
    if flags & 0x08 != 0 {
        if let Bound::Value(b) = r.bytes()? {
            p.paging_state =
                Some(u64::from_be_bytes(b.try_into().map_err(|_| err(PROTOCOL, "bad paging state"))?) as usize);
        }
    }
    if flags & 0x10 != 0 {
        r.u16()?;
    }
    if flags & 0x20 != 0 {
        p.timestamp = Some(r.i64()?);
    }
    Ok(p)
}

pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64
}

pub(crate) fn prepared_id(query: &str, keyspace: Option<&str>) -> Vec<u8> {
    use std::hash::{Hash, Hasher};
    let mut out = Vec::new();
    for salt in [0u8, 1] {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut h);
        query.hash(&mut h);
        keyspace.hash(&mut h);
        out.extend_from_slice(&h.finish().to_be_bytes());
    }
    out
}

/// `[metadata]` of Rows and Prepared results: global table spec, then each column's name and type.
pub(crate) fn write_metadata(
    out: &mut Vec<u8>,
    ks: &str,
    table: &str,
    columns: &[(String, Ty)],
    more: Option<usize>,
    no_metadata: bool,
) {
    let mut flags = 0i32;
    if more.is_some() {
        flags |= 0x0002;
    }
    if no_metadata || columns.is_empty() {
        flags |= 0x0004;
    } else {
        flags |= 0x0001;
    }
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&(columns.len() as i32).to_be_bytes());
    if let Some(m) = more {
        write_bytes(out, Some(&(m as u64).to_be_bytes()));
    }
    if flags & 0x0004 == 0 {
        write_string(out, ks);
        write_string(out, table);
        for (name, ty) in columns {
            write_string(out, name);
            ty.write_option(out);
        }
    }
}

pub(crate) fn encode_outcome(o: &Outcome, skip_metadata: bool) -> Vec<u8> {
    let mut out = Vec::new();
    match o {
        Outcome::Void => out.extend_from_slice(&1i32.to_be_bytes()),
        Outcome::Rows { ks, table, columns, rows, more } => {
            out.extend_from_slice(&2i32.to_be_bytes());
            write_metadata(&mut out, ks, table, columns, *more, skip_metadata);
            out.extend_from_slice(&(rows.len() as i32).to_be_bytes());
            for r in rows {
                for v in r {
                    write_bytes(&mut out, v.as_deref());
                }
            }
        }
        Outcome::SetKeyspace(ks) => {
            out.extend_from_slice(&3i32.to_be_bytes());
            write_string(&mut out, ks);
        }
        Outcome::SchemaChange { target, ks, table } => {
            out.extend_from_slice(&5i32.to_be_bytes());
            write_string(&mut out, "CREATED");
            write_string(&mut out, target);
            write_string(&mut out, ks);
            if let Some(t) = table {
                write_string(&mut out, t);
            }
        }
    }
    out
}

pub(crate) const OP_ERROR: u8 = 0x00;
pub(crate) const OP_READY: u8 = 0x02;
pub(crate) const OP_AUTHENTICATE: u8 = 0x03;
pub(crate) const OP_SUPPORTED: u8 = 0x06;
pub(crate) const OP_RESULT: u8 = 0x08;
pub(crate) const OP_AUTH_SUCCESS: u8 = 0x10;

/// Answers one request: (opcode, body).
/// What a connection remembers between requests.
#[derive(Default)]
pub(crate) struct Conn {
    pub(crate) authed: bool,
    /// The keyspace of the last `USE`.
    pub(crate) keyspace: Option<String>,
}

pub(crate) fn handle(db: &Mutex<Db>, opcode: u8, body: &[u8], conn: &mut Conn) -> R<(u8, Vec<u8>)> {
    let mut r = Reader { b: body, pos: 0 };
    let mut db = db.lock().unwrap();
    let name = match opcode {
        0x01 => "STARTUP",
        0x05 => "OPTIONS",
        0x07 => "QUERY",
        0x09 => "PREPARE",
        0x0A => "EXECUTE",
        0x0B => "REGISTER",
        0x0D => "BATCH",
        0x0F => "AUTH_RESPONSE",
        _ => return Err(err(PROTOCOL, format!("unknown or unsupported opcode {opcode:#04x}"))),
    };
    if !conn.authed && !matches!(opcode, 0x01 | 0x05 | 0x0F) {
        return Err(err(PROTOCOL, format!("{name} before authentication")));
    }
    match opcode {
        0x05 => {
            db.requests.push((name, String::new()));
            let mut out = 2u16.to_be_bytes().to_vec();
            write_string(&mut out, "CQL_VERSION");
            out.extend_from_slice(&1u16.to_be_bytes());
            write_string(&mut out, "3.4.6");
            write_string(&mut out, "COMPRESSION");
            out.extend_from_slice(&0u16.to_be_bytes());
            Ok((OP_SUPPORTED, out))
        }
        0x01 => {
            let opts = r.string_map()?;
            db.requests.push((name, String::new()));
            if opts.contains_key("COMPRESSION") {
                return Err(err(PROTOCOL, "compression is not supported by the CQL double"));
            }
            if db.credentials.is_some() {
                let mut out = Vec::new();
                write_string(&mut out, "org.apache.cassandra.auth.PasswordAuthenticator");
                return Ok((OP_AUTHENTICATE, out));
            }
            conn.authed = true;
            Ok((OP_READY, Vec::new()))
        }
        0x0F => {
            db.requests.push((name, String::new()));
            let token = match r.bytes()? {
                Bound::Value(b) => b,
                _ => Vec::new(),
            };
            let parts: Vec<&[u8]> = token.split(|b| *b == 0).collect();
            let (user, pass) = db.credentials.clone().unwrap_or_default();
            if parts.len() == 3 && parts[1] == user.as_bytes() && parts[2] == pass.as_bytes() {
                conn.authed = true;
                Ok((OP_AUTH_SUCCESS, (-1i32).to_be_bytes().to_vec()))
            } else {
                let who = parts.get(1).map(|u| String::from_utf8_lossy(u).to_string()).unwrap_or_default();
                Err(err(BAD_CREDENTIALS, format!("Provided username {who} and/or password are incorrect")))
            }
        }
        0x0B => {
            db.requests.push((name, String::new()));
            Ok((OP_READY, Vec::new()))
        }
        0x09 => {
            let q = r.long_string()?;
            db.requests.push((name, q.clone()));
            let (stmt, markers) = parse(&q, conn.keyspace.as_deref())?;
            let (ks, table, specs, pk_idx) = db.bind_specs(&stmt, markers)?;
            let result = db.result_columns(&stmt)?;
            let id = prepared_id(&q, conn.keyspace.as_deref());
            db.prepared.insert(id.clone(), (q, conn.keyspace.clone()));
            let mut out = 4i32.to_be_bytes().to_vec();
            out.extend_from_slice(&(id.len() as u16).to_be_bytes());
            out.extend_from_slice(&id);
            // Bind metadata (v4: with partition key indexes), then result metadata.
            out.extend_from_slice(&(if specs.is_empty() { 0i32 } else { 1 }).to_be_bytes());
            out.extend_from_slice(&(specs.len() as i32).to_be_bytes());
            out.extend_from_slice(&(pk_idx.len() as i32).to_be_bytes());
            for i in &pk_idx {
                out.extend_from_slice(&i.to_be_bytes());
            }
            if !specs.is_empty() {
                write_string(&mut out, &ks);
                write_string(&mut out, &table);
                for (n, ty) in &specs {
                    write_string(&mut out, n);
                    ty.write_option(&mut out);
                }
            }
            write_metadata(&mut out, &ks, &table, &result, None, false);
            Ok((OP_RESULT, out))
        }
        0x07 | 0x0A => {
            let (q, keyspace) = if opcode == 0x07 {
                (r.long_string()?, conn.keyspace.clone())
            } else {
                let id = r.short_bytes()?;
                match db.prepared.get(&id) {
                    Some(q) => q.clone(),
                    None => {
                        let mut e = err(UNPREPARED, "Prepared query with ID not found");
                        e.extra.extend_from_slice(&(id.len() as u16).to_be_bytes());
                        e.extra.extend_from_slice(&id);
                        return Err(e);
                    }
                }
            };
            db.requests.push((name, q.clone()));
            let p = read_params(&mut r)?;
            let page = p.page_size.map(|s| (p.paging_state.unwrap_or(0), s));
            let o = db.execute_in(keyspace.as_deref(), &q, &p.values, p.timestamp.unwrap_or_else(now_micros), page)?;
            if let Outcome::SetKeyspace(ks) = &o {
                conn.keyspace = Some(ks.clone());
            }
            Ok((OP_RESULT, encode_outcome(&o, p.skip_metadata && opcode == 0x0A)))
        }
        0x0D => {
            let kind = r.u8()?;
            if kind == 2 {
                return Err(invalid("counter batches are not supported by the CQL double"));
            }
            let n = r.u16()?;
            let mut stmts = Vec::new();
            for _ in 0..n {
                let (q, keyspace) = match r.u8()? {
                    0 => (r.long_string()?, conn.keyspace.clone()),
                    1 => {
                        let id = r.short_bytes()?;
                        match db.prepared.get(&id) {
                            Some(q) => q.clone(),
                            None => {
                                let mut e = err(UNPREPARED, "Prepared query with ID not found");
                                e.extra.extend_from_slice(&(id.len() as u16).to_be_bytes());
                                e.extra.extend_from_slice(&id);
                                return Err(e);
                            }
                        }
                    }
                    k => return Err(err(PROTOCOL, format!("bad batch statement kind {k}"))),
                };
                let nv = r.u16()?;
                let values = (0..nv).map(|_| r.bytes()).collect::<R<Vec<_>>>()?;
                stmts.push((q, keyspace, values));
            }
            let _consistency = r.u16()?;
            let flags = r.u8()?;
            if flags & 0x10 != 0 {
                r.u16()?;
            }
            let ts = if flags & 0x20 != 0 { r.i64()? } else { now_micros() };
            db.requests.push((name, format!("{} statements", stmts.len())));
            let mut planned = Vec::new();
            for (q, keyspace, values) in &stmts {
                let (stmt, markers) = parse(q, keyspace.as_deref())?;
                if values.len() != markers {
                    return Err(invalid(format!(
                        "There were {markers} markers(?) in CQL but {} bound variables",
                        values.len()
                    )));
                }
                planned.push(db.plan(&stmt, markers, values, ts)?);
            }
            db.check_batch_size(&planned)?;
            match db.batch_faults.pop_front() {
                Some(Fault::Error { error, applied }) => {
                    if applied {
                        db.apply(planned);
                    }
                    return Err(error);
                }
                Some(Fault::Stall) => return Ok((NO_ANSWER, Vec::new())),
                None => {}
            }
            db.apply(planned);
            Ok((OP_RESULT, encode_outcome(&Outcome::Void, false)))
        }
        _ => unreachable!(),
    }
}
