//! CQL types and values: parsing type names, and converting values between their serialized
//! (wire) bytes, JSON and CQL literals.

use super::codec::*;
use super::error::*;
use super::lexer::*;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ty {
    BigInt,
    Blob,
    Boolean,
    Double,
    Int,
    Text,
    Uuid,
    Inet,
    List(Box<Ty>),
    Set(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
}

impl Ty {
    pub(crate) fn parse(p: &mut Parser) -> R<Ty> {
        let name = p.ident()?;
        let mut args = Vec::new();
        if p.sym('<') {
            loop {
                args.push(Ty::parse(p)?);
                if !p.sym(',') {
                    break;
                }
            }
            p.expect_sym('>')?;
        }
        let one = |a: &mut Vec<Ty>| -> R<Box<Ty>> {
            (a.len() == 1)
                .then(|| Box::new(a.remove(0)))
                .ok_or_else(|| syntax(format!("bad type arguments for {name}")))
        };
        Ok(match name.as_str() {
            "bigint" => Ty::BigInt,
            "blob" => Ty::Blob,
            "boolean" => Ty::Boolean,
            "double" => Ty::Double,
            "int" => Ty::Int,
            "text" | "varchar" => Ty::Text,
            "uuid" => Ty::Uuid,
            "inet" => Ty::Inet,
            "frozen" => *one(&mut args)?,
            "list" => Ty::List(one(&mut args)?),
            "set" => Ty::Set(one(&mut args)?),
            "map" if args.len() == 2 => {
                let v = args.pop().unwrap();
                Ty::Map(Box::new(args.pop().unwrap()), Box::new(v))
            }
            other => return Err(invalid(format!("type `{other}` is not supported by the CQL double"))),
        })
    }

    pub(crate) fn from_str(s: &str) -> Ty {
        Ty::parse(&mut Parser::new(s).expect("type tokens")).expect("a known type")
    }

    /// The name `system_schema.columns.type` shows.
    pub fn cql_name(&self) -> String {
        match self {
            Ty::BigInt => "bigint".into(),
            Ty::Blob => "blob".into(),
            Ty::Boolean => "boolean".into(),
            Ty::Double => "double".into(),
            Ty::Int => "int".into(),
            Ty::Text => "text".into(),
            Ty::Uuid => "uuid".into(),
            Ty::Inet => "inet".into(),
            Ty::List(t) => format!("frozen<list<{}>>", t.cql_name()),
            Ty::Set(t) => format!("frozen<set<{}>>", t.cql_name()),
            Ty::Map(k, v) => format!("frozen<map<{}, {}>>", k.cql_name(), v.cql_name()),
        }
    }

    /// The `[option]` of the protocol.
    pub(crate) fn write_option(&self, out: &mut Vec<u8>) {
        let id: u16 = match self {
            Ty::BigInt => 0x02,
            Ty::Blob => 0x03,
            Ty::Boolean => 0x04,
            Ty::Double => 0x07,
            Ty::Int => 0x09,
            Ty::Uuid => 0x0C,
            Ty::Text => 0x0D,
            Ty::Inet => 0x10,
            Ty::List(_) => 0x20,
            Ty::Map(..) => 0x21,
            Ty::Set(_) => 0x22,
        };
        out.extend_from_slice(&id.to_be_bytes());
        match self {
            Ty::List(t) | Ty::Set(t) => t.write_option(out),
            Ty::Map(k, v) => {
                k.write_option(out);
                v.write_option(out);
            }
            _ => {}
        }
    }

    /// Checks that `b` is a valid serialization of this type.
    pub(crate) fn validate(&self, b: &[u8]) -> R<()> {
        let fixed = |n: usize, what: &str| {
            if b.len() == n {
                Ok(())
            } else {
                Err(invalid(format!("Expected {n} byte {what} ({})", b.len())))
            }
        };
        match self {
            Ty::BigInt | Ty::Double => fixed(8, "long"),
            Ty::Int => fixed(4, "int"),
            Ty::Boolean => fixed(1, "boolean"),
            Ty::Uuid => fixed(16, "uuid"),
            Ty::Inet if b.len() == 4 || b.len() == 16 => Ok(()),
            Ty::Inet => Err(invalid("Invalid inet")),
            Ty::Text => std::str::from_utf8(b).map(|_| ()).map_err(|_| invalid("Invalid UTF-8 bytes")),
            Ty::Blob => Ok(()),
            Ty::List(t) | Ty::Set(t) => split_collection(b, 1)?.iter().try_for_each(|e| t.validate(e)),
            Ty::Map(k, v) => {
                let items = split_collection(b, 2)?;
                items.chunks(2).try_for_each(|kv| k.validate(&kv[0]).and_then(|_| v.validate(&kv[1])))
            }
        }
    }

    /// Cassandra's `fromJSONObject`: a JSON value into this type's bytes (`None` for null).
    pub fn json_to_bytes(&self, v: &serde_json::Value) -> R<Option<Vec<u8>>> {
        use serde_json::Value as J;
        let bad = |expected: &str| {
            invalid(format!(
                "Expected {expected}, but got {}: {v}",
                match v {
                    J::String(_) => "a String",
                    J::Number(n) if n.is_f64() => "a Double",
                    J::Number(_) => "an Integer",
                    J::Bool(_) => "a Boolean",
                    J::Array(_) => "a List",
                    _ => "a Map",
                }
            ))
        };
        if v.is_null() {
            return Ok(None);
        }
        Ok(Some(match self {
            Ty::Int => {
                let n = match v {
                    J::Number(n) => n.as_i64(),
                    J::String(s) => s.parse::<i64>().ok(),
                    _ => None,
                };
                let n = n.and_then(|n| i32::try_from(n).ok()).ok_or_else(|| bad("an int value"))?;
                n.to_be_bytes().to_vec()
            }
            Ty::BigInt => {
                let n = match v {
                    J::Number(n) => n.as_i64(),
                    J::String(s) => s.parse::<i64>().ok(),
                    _ => None,
                };
                n.ok_or_else(|| bad("a bigint value"))?.to_be_bytes().to_vec()
            }
            Ty::Double => {
                let n = match v {
                    J::Number(n) => n.as_f64(),
                    J::String(s) => s.parse::<f64>().ok(),
                    _ => None,
                };
                n.ok_or_else(|| bad("a double value"))?.to_be_bytes().to_vec()
            }
            Ty::Boolean => match v {
                J::Bool(b) => vec![*b as u8],
                J::String(s) if s.eq_ignore_ascii_case("true") => vec![1],
                J::String(s) if s.eq_ignore_ascii_case("false") => vec![0],
                _ => return Err(bad("a boolean value")),
            },
            Ty::Text => v.as_str().ok_or_else(|| bad("a UTF-8 string"))?.as_bytes().to_vec(),
            _ => return Err(invalid(format!("JSON for {} is not supported by the CQL double", self.cql_name()))),
        }))
    }

    /// The bytes as JSON (for reading tables back in tests).
    pub fn bytes_to_json(&self, b: &[u8]) -> serde_json::Value {
        use serde_json::json;
        match self {
            Ty::Int => json!(i32::from_be_bytes(b.try_into().unwrap())),
            Ty::BigInt => json!(i64::from_be_bytes(b.try_into().unwrap())),
            Ty::Double => json!(f64::from_be_bytes(b.try_into().unwrap())),
            Ty::Boolean => json!(b[0] != 0),
            Ty::Text => json!(std::str::from_utf8(b).unwrap()),
            Ty::List(t) | Ty::Set(t) => {
                serde_json::Value::Array(split_collection(b, 1).unwrap().iter().map(|e| t.bytes_to_json(e)).collect())
            }
            _ => json!(b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        }
    }
}

/// The elements of a v4 collection value: `[int n]` then `n * per` `[bytes]`.
pub(crate) fn split_collection(b: &[u8], per: usize) -> R<Vec<Vec<u8>>> {
    let mut r = Reader { b, pos: 0 };
    let n = r.i32().map_err(|_| invalid("bad collection"))?;
    let mut out = Vec::new();
    for _ in 0..(n.max(0) as usize * per) {
        match r.bytes().map_err(|_| invalid("bad collection"))? {
            Bound::Value(v) => out.push(v),
            _ => return Err(invalid("null is not allowed inside collections")),
        }
    }
    Ok(out)
}

pub(crate) fn collection(items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = (items.len() as i32).to_be_bytes().to_vec();
    for i in items {
        out.extend_from_slice(&(i.len() as i32).to_be_bytes());
        out.extend_from_slice(i);
    }
    out
}

/// A v4 map value from alternating keys and values.
pub(crate) fn map_bytes(items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = collection(items);
    out[..4].copy_from_slice(&((items.len() / 2) as i32).to_be_bytes());
    out
}
