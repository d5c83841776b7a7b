//! The protocol's primitive encodings: a [`Reader`] of `[short]`, `[int]`, `[string]`, `[bytes]`
//! and the other notations of the specification, and their writers.

use super::error::*;
use std::collections::BTreeMap;

pub(crate) struct Reader<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) pos: usize,
}

impl Reader<'_> {
    pub(crate) fn take(&mut self, n: usize) -> R<&[u8]> {
        if self.pos + n > self.b.len() {
            return Err(err(PROTOCOL, "frame body too short"));
        }
        self.pos += n;
        Ok(&self.b[self.pos - n..self.pos])
    }
    pub(crate) fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> R<u16> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }
    pub(crate) fn i32(&mut self) -> R<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    pub(crate) fn i64(&mut self) -> R<i64> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }
    pub(crate) fn string(&mut self) -> R<String> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| err(PROTOCOL, "bad UTF-8 in [string]"))
    }
    pub(crate) fn long_string(&mut self) -> R<String> {
        let n = self.i32()?.max(0) as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| err(PROTOCOL, "bad UTF-8 in [long string]"))
    }
    pub(crate) fn short_bytes(&mut self) -> R<Vec<u8>> {
        let n = self.u16()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    pub(crate) fn bytes(&mut self) -> R<Bound> {
        Ok(match self.i32()? {
            -1 => Bound::Null,
            -2 => Bound::Unset,
            n if n < 0 => return Err(err(PROTOCOL, format!("bad [bytes] length {n}"))),
            n => Bound::Value(self.take(n as usize)?.to_vec()),
        })
    }
    pub(crate) fn string_map(&mut self) -> R<BTreeMap<String, String>> {
        let n = self.u16()?;
        (0..n).map(|_| Ok((self.string()?, self.string()?))).collect()
    }
}

pub(crate) fn write_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn write_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        Some(b) => {
            out.extend_from_slice(&(b.len() as i32).to_be_bytes());
            out.extend_from_slice(b);
        }
    }
}

/// A bound value of the protocol: `[bytes]` with -1 for null and -2 for "not set".
#[derive(Clone, Debug, PartialEq)]
pub enum Bound {
    Value(Vec<u8>),
    Null,
    Unset,
}
