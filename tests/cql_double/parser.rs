//! The parser of the statement shapes the double knows (see the module docs of [`super`]);
//! anything else is a syntax error.

use super::error::*;
use super::lexer::*;
use super::storage::*;
use super::types::*;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub(crate) enum Rel {
    Eq(String, Term),
    In(String, Term),
}

#[derive(Clone, Debug)]
pub(crate) enum Stmt {
    Select { ks: String, table: String, columns: Option<Vec<String>>, rels: Vec<Rel>, allow_filtering: bool },
    InsertJson { ks: String, table: String, json: Term, default_null: bool, ts: Option<Term> },
    InsertValues { ks: String, table: String, columns: Vec<String>, values: Vec<Term>, ts: Option<Term> },
    Delete { ks: String, table: String, ts: Option<Term>, rels: Vec<Rel> },
    CreateTable { if_not_exists: bool, ks: String, table: String, columns: Vec<Column> },
    CreateKeyspace { if_not_exists: bool, ks: String, replication: BTreeMap<String, String> },
    AlterAdd { ks: String, table: String, column: Column },
    Use(String),
}

pub(crate) fn parse(src: &str, keyspace: Option<&str>) -> R<(Stmt, usize)> {
    let mut p = Parser::new(src)?;
    p.keyspace = keyspace.map(str::to_string);
    let s = if p.kw("use") {
        Stmt::Use(p.ident()?)
    } else if p.kw("select") {
        let columns = if p.sym('*') {
            None
        } else {
            let mut cs = vec![p.ident()?];
            while p.sym(',') {
                cs.push(p.ident()?);
            }
            Some(cs)
        };
        p.expect_kw("from")?;
        let (ks, table) = p.qualified()?;
        let mut rels = Vec::new();
        if p.kw("where") {
            rels = relations(&mut p, true)?;
        }
        let allow_filtering = p.kw("allow");
        if allow_filtering {
            p.expect_kw("filtering")?;
        }
        Stmt::Select { ks, table, columns, rels, allow_filtering }
    } else if p.kw("insert") {
        p.expect_kw("into")?;
        let (ks, table) = p.qualified()?;
        let s = if p.kw("json") {
            let json = p.term()?;
            let mut default_null = true;
            if p.kw("default") {
                default_null = if p.kw("null") {
                    true
                } else {
                    p.expect_kw("unset")?;
                    false
                };
            }
            let ts = using_timestamp(&mut p)?;
            Stmt::InsertJson { ks, table, json, default_null, ts }
        } else {
            p.expect_sym('(')?;
            let mut columns = vec![p.ident()?];
            while p.sym(',') {
                columns.push(p.ident()?);
            }
            p.expect_sym(')')?;
            p.expect_kw("values")?;
            p.expect_sym('(')?;
            let mut values = vec![p.term()?];
            while p.sym(',') {
                values.push(p.term()?);
            }
            p.expect_sym(')')?;
            if columns.len() != values.len() {
                return Err(invalid("Unmatched column names/values"));
            }
            let ts = using_timestamp(&mut p)?;
            Stmt::InsertValues { ks, table, columns, values, ts }
        };
        if p.kw("if") {
            return p.unexpected("no IF (lightweight transactions are not supported by the CQL double)");
        }
        s
    } else if p.kw("delete") {
        p.expect_kw("from")?;
        let (ks, table) = p.qualified()?;
        let ts = using_timestamp(&mut p)?;
        p.expect_kw("where")?;
        let rels = relations(&mut p, false)?;
        Stmt::Delete { ks, table, ts, rels }
    } else if p.kw("create") {
        if p.kw("keyspace") {
            let if_not_exists = if_not_exists(&mut p)?;
            let ks = p.ident()?;
            p.expect_kw("with")?;
            p.expect_kw("replication")?;
            p.expect_sym('=')?;
            p.expect_sym('{')?;
            let mut replication = BTreeMap::new();
            loop {
                let k = match p.term()? {
                    Term::Str(s) => s,
                    _ => return p.unexpected("a string"),
                };
                p.expect_sym(':')?;
                let v = match p.term()? {
                    Term::Str(s) | Term::Num(s) => s,
                    _ => return p.unexpected("a string or a number"),
                };
                replication.insert(k, v);
                if !p.sym(',') {
                    break;
                }
            }
            p.expect_sym('}')?;
            if let Some(c) = replication.get_mut("class") {
                if !c.contains('.') {
                    *c = format!("org.apache.cassandra.locator.{c}");
                }
            }
            Stmt::CreateKeyspace { if_not_exists, ks, replication }
        } else {
            p.expect_kw("table")?;
            let if_not_exists = if_not_exists(&mut p)?;
            let (ks, table) = p.qualified()?;
            p.expect_sym('(')?;
            let mut columns: Vec<Column> = Vec::new();
            let mut pk: Vec<String> = Vec::new();
            let mut ck: Vec<String> = Vec::new();
            loop {
                if p.kw("primary") {
                    p.expect_kw("key")?;
                    p.expect_sym('(')?;
                    if p.sym('(') {
                        pk.push(p.ident()?);
                        while p.sym(',') {
                            pk.push(p.ident()?);
                        }
                        p.expect_sym(')')?;
                    } else {
                        pk.push(p.ident()?);
                    }
                    while p.sym(',') {
                        ck.push(p.ident()?);
                    }
                    p.expect_sym(')')?;
                } else {
                    let name = p.ident()?;
                    let ty = Ty::parse(&mut p)?;
                    if matches!(ty, Ty::List(_) | Ty::Set(_) | Ty::Map(..)) {
                        return Err(invalid("collection columns are not supported by the CQL double"));
                    }
                    if p.kw("primary") {
                        p.expect_kw("key")?;
                        pk.push(name.clone());
                    }
                    columns.push(Column { name, ty, kind: Kind::Regular, position: -1 });
                }
                if !p.sym(',') {
                    break;
                }
            }
            p.expect_sym(')')?;
            if pk.is_empty() {
                return Err(invalid("No PRIMARY KEY specifed (exactly one required)"));
            }
            for (kind, names) in [(Kind::PartitionKey, &pk), (Kind::Clustering, &ck)] {
                for (pos, n) in names.iter().enumerate() {
                    let c = columns
                        .iter_mut()
                        .find(|c| &c.name == n)
                        .ok_or_else(|| invalid(format!("Unknown definition {n} referenced in PRIMARY KEY")))?;
                    c.kind = kind.clone();
                    c.position = pos as i32;
                }
            }
            Stmt::CreateTable { if_not_exists, ks, table, columns }
        }
    } else if p.kw("alter") {
        p.expect_kw("table")?;
        let (ks, table) = p.qualified()?;
        p.expect_kw("add")?;
        let name = p.ident()?;
        let ty = Ty::parse(&mut p)?;
        Stmt::AlterAdd { ks, table, column: Column { name, ty, kind: Kind::Regular, position: -1 } }
    } else {
        return p.unexpected("USE, SELECT, INSERT, DELETE, CREATE or ALTER");
    };
    p.end()?;
    Ok((s, p.markers))
}

pub(crate) fn if_not_exists(p: &mut Parser) -> R<bool> {
    if p.kw("if") {
        p.expect_kw("not")?;
        p.expect_kw("exists")?;
        return Ok(true);
    }
    Ok(false)
}

pub(crate) fn using_timestamp(p: &mut Parser) -> R<Option<Term>> {
    if p.kw("using") {
        p.expect_kw("timestamp")?;
        return Ok(Some(p.term()?));
    }
    Ok(None)
}

pub(crate) fn relations(p: &mut Parser, allow_in: bool) -> R<Vec<Rel>> {
    let mut rels = Vec::new();
    loop {
        let c = p.ident()?;
        if p.sym('=') {
            rels.push(Rel::Eq(c, p.term()?));
        } else if allow_in && p.kw("in") {
            rels.push(Rel::In(c, p.term()?));
        } else {
            return p.unexpected(if allow_in { "'=' or IN" } else { "'='" });
        }
        if !p.kw("and") {
            return Ok(rels);
        }
    }
}
