//! Execution of parsed statements against the [`Db`]: schema changes, writes with their
//! timestamps, reads (including the `system` and `system_schema` tables) and batches.

use super::codec::*;
use super::error::*;
use super::lexer::*;
use super::parser::*;
use super::storage::*;
use super::types::*;
use std::collections::BTreeMap;

/// A result to send back.
#[derive(Debug)]
pub enum Outcome {
    Void,
    Rows { ks: String, table: String, columns: Vec<(String, Ty)>, rows: Vec<Vec<Option<Vec<u8>>>>, more: Option<usize> },
    SchemaChange { target: &'static str, ks: String, table: Option<String> },
    SetKeyspace(String),
}

/// The column definitions and rows of a table as a SELECT sees it (virtual system tables
/// included); `None` if the table is unknown.
pub(crate) type Relation = (Vec<Column>, Vec<Vec<Option<Vec<u8>>>>);

pub(crate) fn col(name: &str, ty: &str, kind: Kind, position: i32) -> Column {
    Column { name: name.into(), ty: Ty::from_str(ty), kind, position }
}

pub(crate) const HOST_ID: [u8; 16] = [0x5e, 0x1f, 0x1e, 0x3d, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 1];

impl Db {
    pub(crate) fn schema_uuid(&self) -> Vec<u8> {
        let mut u = [0u8; 16];
        u[..8].copy_from_slice(&self.schema_version.to_be_bytes());
        u[6] = 0x40 | (u[6] & 0x0f);
        u[8] = 0x80;
        u.to_vec()
    }

    pub(crate) fn relation(&self, ks: &str, table: &str) -> R<Relation> {
        let text = |s: &str| Some(s.as_bytes().to_vec());
        let (pk, ck, reg) = (Kind::PartitionKey, Kind::Clustering, Kind::Regular);
        match (ks, table) {
            ("system", "local") => {
                let cols = vec![
                    col("key", "text", pk, 0),
                    col("host_id", "uuid", reg.clone(), -1),
                    col("rpc_address", "inet", reg.clone(), -1),
                    col("broadcast_address", "inet", reg.clone(), -1),
                    col("listen_address", "inet", reg.clone(), -1),
                    col("data_center", "text", reg.clone(), -1),
                    col("rack", "text", reg.clone(), -1),
                    col("tokens", "set<text>", reg.clone(), -1),
                    col("cluster_name", "text", reg.clone(), -1),
                    col("schema_version", "uuid", reg.clone(), -1),
                    col("release_version", "text", reg.clone(), -1),
                    col("cql_version", "text", reg.clone(), -1),
                    col("native_protocol_version", "text", reg.clone(), -1),
                    col("partitioner", "text", reg, -1),
                ];
                let lo = Some(vec![127, 0, 0, 1]);
                let row = vec![
                    text("local"),
                    Some(HOST_ID.to_vec()),
                    lo.clone(),
                    lo.clone(),
                    lo,
                    text("datacenter1"),
                    text("rack1"),
                    Some(collection(&[b"0".to_vec()])),
                    text("cql double"),
                    Some(self.schema_uuid()),
                    text("4.1.0"),
                    text("3.4.6"),
                    text("4"),
                    text("org.apache.cassandra.dht.Murmur3Partitioner"),
                ];
                Ok((cols, vec![row]))
            }
            ("system", "peers") => Ok((
                vec![
                    col("peer", "inet", pk, 0),
                    col("host_id", "uuid", reg.clone(), -1),
                    col("rpc_address", "inet", reg.clone(), -1),
                    col("preferred_ip", "inet", reg.clone(), -1),
                    col("data_center", "text", reg.clone(), -1),
                    col("rack", "text", reg.clone(), -1),
                    col("tokens", "set<text>", reg.clone(), -1),
                    col("schema_version", "uuid", reg.clone(), -1),
                    col("release_version", "text", reg, -1),
                ],
                Vec::new(),
            )),
            ("system_schema", "keyspaces") => Ok((
                vec![
                    col("keyspace_name", "text", pk, 0),
                    col("durable_writes", "boolean", reg.clone(), -1),
                    col("replication", "frozen<map<text, text>>", reg, -1),
                ],
                self.keyspaces
                    .iter()
                    .map(|(k, (rep, _))| {
                        let items: Vec<Vec<u8>> =
                            rep.iter().flat_map(|(a, b)| [a.as_bytes().to_vec(), b.as_bytes().to_vec()]).collect();
                        vec![text(k), Some(vec![1]), Some(map_bytes(&items))]
                    })
                    .collect(),
            )),
            ("system_schema", "tables") => Ok((
                vec![
                    col("keyspace_name", "text", pk, 0),
                    col("table_name", "text", ck, 0),
                    col("comment", "text", reg, -1),
                ],
                self.tables().map(|(k, t, _)| vec![text(k), text(t), text("")]).collect(),
            )),
            ("system_schema", "columns") => Ok((
                vec![
                    col("keyspace_name", "text", pk, 0),
                    col("table_name", "text", ck.clone(), 0),
                    col("column_name", "text", ck, 1),
                    col("clustering_order", "text", reg.clone(), -1),
                    col("column_name_bytes", "blob", reg.clone(), -1),
                    col("kind", "text", reg.clone(), -1),
                    col("position", "int", reg.clone(), -1),
                    col("type", "text", reg, -1),
                ],
                self.tables()
                    .flat_map(|(k, t, table)| {
                        table.columns.iter().map(move |c| {
                            let kind = match c.kind {
                                Kind::PartitionKey => "partition_key",
                                Kind::Clustering => "clustering",
                                Kind::Regular => "regular",
                            };
                            let order = if c.kind == Kind::Clustering { "asc" } else { "none" };
                            vec![
                                text(k),
                                text(t),
                                text(&c.name),
                                text(order),
                                text(&c.name),
                                text(kind),
                                Some(c.position.to_be_bytes().to_vec()),
                                text(&c.ty.cql_name()),
                            ]
                        })
                    })
                    .collect(),
            )),
            ("system_schema", "types") => Ok((
                vec![
                    col("keyspace_name", "text", pk, 0),
                    col("type_name", "text", ck, 0),
                    col("field_names", "frozen<list<text>>", reg.clone(), -1),
                    col("field_types", "frozen<list<text>>", reg, -1),
                ],
                Vec::new(),
            )),
            ("system_schema", "views") => Ok((
                vec![
                    col("keyspace_name", "text", pk, 0),
                    col("view_name", "text", ck, 0),
                    col("base_table_name", "text", reg, -1),
                ],
                Vec::new(),
            )),
            _ => {
                let t = self.table(ks, table)?;
                let keys = t.key_columns();
                let rows = t
                    .rows
                    .iter()
                    .filter(|(_, r)| r.live())
                    .map(|(key, r)| {
                        t.columns
                            .iter()
                            .map(|c| match keys.iter().position(|k| k.name == c.name) {
                                Some(i) => Some(key[i].clone()),
                                None => r.cells.get(&c.name).and_then(|c| c.value.clone()),
                            })
                            .collect()
                    })
                    .collect();
                Ok((t.columns.clone(), rows))
            }
        }
    }

    pub(crate) fn tables(&self) -> impl Iterator<Item = (&str, &str, &Table)> {
        self.keyspaces.iter().flat_map(|(k, (_, ts))| ts.iter().map(move |(n, t)| (k.as_str(), n.as_str(), t)))
    }

    pub fn table(&self, ks: &str, table: &str) -> R<&Table> {
        let (_, tables) = self.keyspaces.get(ks).ok_or_else(|| {
            invalid(if ks.starts_with("system") {
                format!("table {table} does not exist")
            } else {
                format!("Keyspace {ks} does not exist")
            })
        })?;
        tables.get(table).ok_or_else(|| invalid(format!("table {table} does not exist")))
    }

    pub(crate) fn table_mut(&mut self, ks: &str, table: &str) -> R<&mut Table> {
        self.table(ks, table)?;
        Ok(self.keyspaces.get_mut(ks).unwrap().1.get_mut(table).unwrap())
    }

    /// The bind markers' names and types, in order (checks that every name resolves).
    pub(crate) fn bind_specs(&self, stmt: &Stmt, markers: usize) -> R<BindInfo> {
        let mut specs: Vec<Option<(String, Ty)>> = vec![None; markers];
        let mut set = |t: &Term, name: &str, ty: Ty| {
            match t {
                Term::Marker(i) => specs[*i] = Some((name.to_string(), ty)),
                Term::FromJson(inner) => {
                    if let Term::Marker(i) = **inner {
                        specs[i] = Some((format!("fromjson({name})"), Ty::Text))
                    }
                }
                _ => {}
            };
        };
        let ts = |set: &mut dyn FnMut(&Term, &str, Ty), t: &Option<Term>| {
            if let Some(t) = t {
                set(t, "[timestamp]", Ty::BigInt)
            }
        };
        let (ks, table) = match stmt {
            Stmt::Select { ks, table, columns, rels, .. } => {
                let (cols, _) = self.relation(ks, table)?;
                for name in columns.iter().flatten() {
                    if !cols.iter().any(|c| &c.name == name) {
                        return Err(invalid(format!("Undefined column name {name}")));
                    }
                }
                for r in rels {
                    let (name, t, is_in) = match r {
                        Rel::Eq(c, t) => (c, t, false),
                        Rel::In(c, t) => (c, t, true),
                    };
                    let c = cols
                        .iter()
                        .find(|c| &c.name == name)
                        .ok_or_else(|| invalid(format!("Undefined column name {name}")))?;
                    set(t, name, if is_in { Ty::List(Box::new(c.ty.clone())) } else { c.ty.clone() });
                }
                (ks, table)
            }
            Stmt::InsertJson { ks, table, json, ts: t, .. } => {
                self.table(ks, table)?;
                set(json, "[json]", Ty::Text);
                ts(&mut set, t);
                (ks, table)
            }
            Stmt::InsertValues { ks, table, columns, values, ts: t } => {
                let tb = self.table(ks, table)?;
                for (c, v) in columns.iter().zip(values) {
                    let col = tb.column(c).ok_or_else(|| invalid(format!("Undefined column name {c}")))?;
                    set(v, c, col.ty.clone());
                }
                ts(&mut set, t);
                (ks, table)
            }
            Stmt::Delete { ks, table, ts: t, rels } => {
                let tb = self.table(ks, table)?;
                ts(&mut set, t);
                for r in rels {
                    if let Rel::Eq(c, v) = r {
                        let col = tb.column(c).ok_or_else(|| invalid(format!("Undefined column name {c}")))?;
                        set(v, c, col.ty.clone());
                    }
                }
                (ks, table)
            }
            Stmt::CreateTable { .. } | Stmt::CreateKeyspace { .. } | Stmt::AlterAdd { .. } | Stmt::Use(_) => {
                return Ok((String::new(), String::new(), Vec::new(), Vec::new()));
            }
        };
        let specs: Vec<(String, Ty)> = specs
            .into_iter()
            .map(|s| s.ok_or_else(|| invalid("bind marker in an unsupported place")))
            .collect::<R<_>>()?;
        // Partition key indexes: each partition key column bound by a plain marker.
        let mut pk_idx = Vec::new();
        if let Ok(t) = self.table(ks, table) {
            let bound: Vec<(&String, &Term)> = match stmt {
                Stmt::InsertValues { columns, values, .. } => columns.iter().zip(values).collect(),
                Stmt::Delete { rels, .. } | Stmt::Select { rels, .. } => {
                    rels.iter().filter_map(|r| if let Rel::Eq(c, t) = r { Some((c, t)) } else { None }).collect()
                }
                _ => Vec::new(),
            };
            for c in t.key_columns().iter().filter(|c| c.kind == Kind::PartitionKey) {
                match bound.iter().find(|(n, _)| **n == c.name) {
                    Some((_, Term::Marker(i))) => pk_idx.push(*i as u16),
                    _ => {
                        pk_idx.clear();
                        break;
                    }
                }
            }
        }
        Ok((ks.clone(), table.clone(), specs, pk_idx))
    }

    /// The result columns of a SELECT (for Prepared metadata), empty for other statements.
    pub(crate) fn result_columns(&self, stmt: &Stmt) -> R<Vec<(String, Ty)>> {
        match stmt {
            Stmt::Select { ks, table, columns, .. } => {
                let (cols, _) = self.relation(ks, table)?;
                Ok(match columns {
                    None => cols.iter().map(|c| (c.name.clone(), c.ty.clone())).collect(),
                    Some(names) => names
                        .iter()
                        .map(|n| {
                            let c = cols.iter().find(|c| &c.name == n).unwrap();
                            (n.clone(), c.ty.clone())
                        })
                        .collect(),
                })
            }
            _ => Ok(Vec::new()),
        }
    }

    /// A term's bytes for a column of type `ty`.
    pub(crate) fn value(term: &Term, ty: &Ty, values: &[Bound], what: &str) -> R<Bound> {
        Ok(match term {
            Term::Marker(i) => {
                let v = values.get(*i).cloned().ok_or_else(|| invalid("missing bound value"))?;
                if let Bound::Value(b) = &v {
                    ty.validate(b).map_err(|e| invalid(format!("{what}: {}", e.message)))?;
                }
                v
            }
            Term::Null => Bound::Null,
            Term::Str(s) => match ty {
                Ty::Text => Bound::Value(s.as_bytes().to_vec()),
                _ => {
                    return Err(invalid(format!(
                        "Invalid STRING constant ({s}) for \"{what}\" of type {}",
                        ty.cql_name()
                    )))
                }
            },
            Term::Num(n) => match ty {
                Ty::Int => Bound::Value(n.parse::<i32>().map_err(|_| invalid("bad int"))?.to_be_bytes().to_vec()),
                Ty::BigInt => Bound::Value(n.parse::<i64>().map_err(|_| invalid("bad bigint"))?.to_be_bytes().to_vec()),
                _ => {
                    return Err(invalid(format!(
                        "Invalid INTEGER constant ({n}) for \"{what}\" of type {}",
                        ty.cql_name()
                    )))
                }
            },
            Term::Bool(b) if *ty == Ty::Boolean => Bound::Value(vec![*b as u8]),
            Term::Bool(_) => return Err(invalid(format!("Invalid BOOLEAN constant for \"{what}\""))),
            Term::FromJson(inner) => match Db::value(inner, &Ty::Text, values, what)? {
                Bound::Value(b) => {
                    let text = String::from_utf8(b).map_err(|_| invalid("bad UTF-8"))?;
                    let j: serde_json::Value = serde_json::from_str(&text)
                        .map_err(|e| invalid(format!("Could not decode JSON string '{text}': {e}")))?;
                    match ty
                        .json_to_bytes(&j)
                        .map_err(|e| invalid(format!("Error decoding JSON value for {what}: {}", e.message)))?
                    {
                        Some(b) => Bound::Value(b),
                        None => Bound::Null,
                    }
                }
                other => other,
            },
        })
    }

    pub(crate) fn timestamp(t: &Option<Term>, values: &[Bound], default: i64) -> R<i64> {
        match t {
            None => Ok(default),
            Some(t) => match Db::value(t, &Ty::BigInt, values, "[timestamp]")? {
                Bound::Value(b) => Ok(i64::from_be_bytes(b.try_into().unwrap())),
                Bound::Unset => Ok(default),
                Bound::Null => Err(invalid("Invalid null value of timestamp")),
            },
        }
    }

    /// Runs a statement outside any `USE`.
    pub fn execute(
        &mut self,
        src: &str,
        values: &[Bound],
        default_ts: i64,
        page: Option<(usize, usize)>,
    ) -> R<Outcome> {
        self.execute_in(None, src, values, default_ts, page)
    }

    /// Runs a statement with unqualified tables in `keyspace`. Writes go through [`Db::plan`]
    /// and [`Db::apply`].
    pub fn execute_in(
        &mut self,
        keyspace: Option<&str>,
        src: &str,
        values: &[Bound],
        default_ts: i64,
        page: Option<(usize, usize)>,
    ) -> R<Outcome> {
        let (stmt, markers) = parse(src, keyspace)?;
        if values.len() != markers {
            return Err(invalid(format!(
                "There were {markers} markers(?) in CQL but {} bound variables",
                values.len()
            )));
        }
        match &stmt {
            Stmt::Use(ks) => {
                if !self.keyspaces.contains_key(ks) && ks != "system" && ks != "system_schema" {
                    return Err(invalid(format!("Keyspace '{ks}' does not exist")));
                }
                Ok(Outcome::SetKeyspace(ks.clone()))
            }
            Stmt::Select { ks, table, columns, rels, allow_filtering } => {
                let (cols, rows) = self.relation(ks, table)?;
                let (_, _, _, _) = self.bind_specs(&stmt, markers)?;
                let mut filters: Vec<(usize, Vec<Vec<u8>>)> = Vec::new();
                for r in rels {
                    let (name, t, is_in) = match r {
                        Rel::Eq(c, t) => (c, t, false),
                        Rel::In(c, t) => (c, t, true),
                    };
                    let i = cols.iter().position(|c| &c.name == name).unwrap();
                    let ty = if is_in { Ty::List(Box::new(cols[i].ty.clone())) } else { cols[i].ty.clone() };
                    let v = match Db::value(t, &ty, values, name)? {
                        Bound::Value(b) => b,
                        _ => return Err(invalid(format!("Invalid null value in condition for column {name}"))),
                    };
                    filters.push((i, if is_in { split_collection(&v, 1)? } else { vec![v] }));
                }
                let restricted = |k: Kind| {
                    cols.iter().enumerate().filter(|(_, c)| c.kind == k).all(|(i, _)| filters.iter().any(|f| f.0 == i))
                };
                let on_regular = filters.iter().any(|f| cols[f.0].kind == Kind::Regular);
                let partial_pk = !filters.is_empty() && !restricted(Kind::PartitionKey);
                if (on_regular || partial_pk) && !allow_filtering {
                    return Err(invalid(
                        "Cannot execute this query as it might involve data filtering and thus may have unpredictable \
                         performance. If you want to execute this query despite the performance unpredictability, use ALLOW FILTERING",
                    ));
                }
                let picked: Vec<usize> = match columns {
                    None => (0..cols.len()).collect(),
                    Some(names) => names.iter().map(|n| cols.iter().position(|c| &c.name == n).unwrap()).collect(),
                };
                let mut out: Vec<Vec<Option<Vec<u8>>>> = rows
                    .into_iter()
                    .filter(|r| filters.iter().all(|(i, vs)| r[*i].as_ref().is_some_and(|v| vs.contains(v))))
                    .map(|r| picked.iter().map(|i| r[*i].clone()).collect())
                    .collect();
                let mut more = None;
                if let Some((offset, size)) = page {
                    out = out.split_off(offset.min(out.len()));
                    if size > 0 && out.len() > size {
                        out.truncate(size);
                        more = Some(offset + size);
                    }
                }
                let columns = picked.iter().map(|i| (cols[*i].name.clone(), cols[*i].ty.clone())).collect();
                Ok(Outcome::Rows { ks: ks.clone(), table: table.clone(), columns, rows: out, more })
            }
            Stmt::CreateKeyspace { if_not_exists, ks, replication } => {
                if self.keyspaces.contains_key(ks) {
                    if *if_not_exists {
                        return Ok(Outcome::Void);
                    }
                    let mut e = err(ALREADY_EXISTS, format!("Keyspace {ks} already exists"));
                    write_string(&mut e.extra, ks);
                    write_string(&mut e.extra, "");
                    return Err(e);
                }
                self.keyspaces.insert(ks.clone(), (replication.clone(), BTreeMap::new()));
                self.schema_version += 1;
                Ok(Outcome::SchemaChange { target: "KEYSPACE", ks: ks.clone(), table: None })
            }
            Stmt::AlterAdd { ks, table, column } => {
                let t = self.table_mut(ks, table)?;
                if t.columns.iter().any(|c| c.name == column.name) {
                    return Err(invalid(format!(
                        "Invalid column name {} because it conflicts with an existing column",
                        column.name
                    )));
                }
                t.columns.push(column.clone());
                self.schema_version += 1;
                Ok(Outcome::SchemaChange { target: "TABLE", ks: ks.clone(), table: Some(table.clone()) })
            }
            Stmt::CreateTable { if_not_exists, ks, table, columns } => {
                let (_, tables) =
                    self.keyspaces.get_mut(ks).ok_or_else(|| invalid(format!("Keyspace {ks} doesn't exist")))?;
                if tables.contains_key(table) {
                    if *if_not_exists {
                        return Ok(Outcome::Void);
                    }
                    let mut e = err(
                        ALREADY_EXISTS,
                        format!("Cannot add already existing table \"{table}\" to keyspace \"{ks}\""),
                    );
                    write_string(&mut e.extra, ks);
                    write_string(&mut e.extra, table);
                    return Err(e);
                }
                tables.insert(table.clone(), Table { columns: columns.clone(), rows: BTreeMap::new() });
                self.schema_version += 1;
                Ok(Outcome::SchemaChange { target: "TABLE", ks: ks.clone(), table: Some(table.clone()) })
            }
            _ => {
                let m = self.plan(&stmt, markers, values, default_ts)?;
                self.apply(vec![m]);
                Ok(Outcome::Void)
            }
        }
    }

    /// Validates a write and resolves it into a mutation (nothing is applied yet).
    pub(crate) fn plan(&self, stmt: &Stmt, markers: usize, values: &[Bound], default_ts: i64) -> R<Mutation> {
        self.bind_specs(stmt, markers)?;
        let key_of = |t: &Table, get: &dyn Fn(&str) -> Option<Bound>| -> R<Vec<Vec<u8>>> {
            t.key_columns()
                .iter()
                .map(|c| match get(&c.name) {
                    Some(Bound::Value(b)) => Ok(b),
                    Some(Bound::Null) | Some(Bound::Unset) => {
                        Err(invalid(format!("Invalid null value in condition for column {}", c.name)))
                    }
                    None if c.kind == Kind::PartitionKey => {
                        Err(invalid(format!("Some partition key parts are missing: {}", c.name)))
                    }
                    None => Err(invalid(format!("Some clustering keys are missing: {}", c.name))),
                })
                .collect()
        };
        match stmt {
            Stmt::InsertJson { ks, table, json, default_null, ts } => {
                let t = self.table(ks, table)?;
                let ts = Db::timestamp(ts, values, default_ts)?;
                let text = match Db::value(json, &Ty::Text, values, "[json]")? {
                    Bound::Value(b) => String::from_utf8(b).map_err(|_| invalid("bad UTF-8"))?,
                    _ => return Err(invalid("Got null for INSERT JSON values")),
                };
                let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).map_err(|e| {
                    invalid(format!("Could not decode JSON string as a map: {e}. (String was: {text})"))
                })?;
                let mut given: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
                for (k, v) in &obj {
                    let name = match k.strip_prefix('"').and_then(|k| k.strip_suffix('"')) {
                        Some(quoted) => quoted.to_string(),
                        None => k.to_ascii_lowercase(),
                    };
                    let c = t
                        .column(&name)
                        .ok_or_else(|| invalid(format!("JSON values map contains unrecognized column: {k}")))?;
                    let b =
                        c.ty.json_to_bytes(v)
                            .map_err(|e| invalid(format!("Error decoding JSON value for {name}: {}", e.message)))?;
                    given.insert(name, b);
                }
                let key = key_of(t, &|n| given.get(n).map(|v| v.clone().map_or(Bound::Null, Bound::Value)))?;
                let cells = t
                    .columns
                    .iter()
                    .filter(|c| c.kind == Kind::Regular)
                    .filter_map(|c| match given.get(&c.name) {
                        Some(v) => Some((c.name.clone(), v.clone())),
                        None if *default_null => Some((c.name.clone(), None)),
                        None => None,
                    })
                    .collect();
                Ok(Mutation { ks: ks.clone(), table: table.clone(), key, ts, op: Op::Upsert(cells) })
            }
            Stmt::InsertValues { ks, table, columns, values: terms, ts } => {
                let t = self.table(ks, table)?;
                let ts = Db::timestamp(ts, values, default_ts)?;
                let mut given: BTreeMap<String, Bound> = BTreeMap::new();
                for (c, term) in columns.iter().zip(terms) {
                    let col = t.column(c).unwrap();
                    given.insert(c.clone(), Db::value(term, &col.ty, values, c)?);
                }
                let key = key_of(t, &|n| given.get(n).cloned())?;
                let cells = t
                    .columns
                    .iter()
                    .filter(|c| c.kind == Kind::Regular)
                    .filter_map(|c| match given.get(&c.name) {
                        Some(Bound::Value(b)) => Some((c.name.clone(), Some(b.clone()))),
                        Some(Bound::Null) => Some((c.name.clone(), None)),
                        _ => None,
                    })
                    .collect();
                Ok(Mutation { ks: ks.clone(), table: table.clone(), key, ts, op: Op::Upsert(cells) })
            }
            Stmt::Delete { ks, table, ts, rels } => {
                let t = self.table(ks, table)?;
                let ts = Db::timestamp(ts, values, default_ts)?;
                let mut given: BTreeMap<String, Bound> = BTreeMap::new();
                for r in rels {
                    if let Rel::Eq(c, term) = r {
                        let col = t.column(c).unwrap();
                        if col.kind == Kind::Regular {
                            return Err(invalid(format!("Non PRIMARY KEY columns found in where clause: {c} ")));
                        }
                        given.insert(c.clone(), Db::value(term, &col.ty, values, c)?);
                    }
                }
                if let Some(c) = t.key_columns().iter().find(|c| !given.contains_key(&c.name)) {
                    return Err(invalid(format!(
                        "partition and range deletions are not supported by the CQL double: the WHERE clause \
                         lacks primary key column {}",
                        c.name
                    )));
                }
                let key = key_of(t, &|n| given.get(n).cloned())?;
                Ok(Mutation { ks: ks.clone(), table: table.clone(), key, ts, op: Op::Delete })
            }
            _ => Err(invalid("Only INSERT, UPDATE and DELETE statements are allowed in batch")),
        }
    }

    /// Cassandra's `BatchStatement.verifyBatchSize`: a batch spanning more than one partition
    /// whose data size passes `batch_size_fail_threshold_in_kb` is refused ("Batch too large").
    /// The size follows `Row.dataSize()`: clustering bytes, 8 for the row marker, 16 plus the
    /// value per cell, 12 per row deletion.
    pub(crate) fn check_batch_size(&self, ms: &[Mutation]) -> R<()> {
        let mut partitions = std::collections::BTreeSet::new();
        let mut size = 0;
        for m in ms {
            let t = self.table(&m.ks, &m.table)?;
            let pk = t.key_columns().iter().filter(|c| c.kind == Kind::PartitionKey).count();
            partitions.insert((&m.ks, &m.table, &m.key[..pk]));
            size += m.key[pk..].iter().map(Vec::len).sum::<usize>();
            size += match &m.op {
                Op::Upsert(cells) => 8 + cells.iter().map(|(_, v)| 16 + v.as_ref().map_or(0, Vec::len)).sum::<usize>(),
                Op::Delete => 12,
            };
        }
        if partitions.len() > 1 && self.batch_fail_threshold > 0 && size > self.batch_fail_threshold {
            return Err(invalid("Batch too large"));
        }
        Ok(())
    }

    /// Applies validated mutations, recording each.
    pub(crate) fn apply(&mut self, ms: Vec<Mutation>) {
        for m in ms {
            let t = self.table_mut(&m.ks, &m.table).expect("planned against this table");
            let row = t.rows.entry(m.key).or_default();
            let (changed, delete) = match &m.op {
                Op::Upsert(cells) => (row.write(m.ts, true, cells), false),
                Op::Delete => (row.delete(m.ts), true),
            };
            self.writes.push(WriteRecord { table: format!("{}.{}", m.ks, m.table), delete, ts: m.ts, changed });
        }
    }
}

#[derive(Debug)]
pub(crate) enum Op {
    Upsert(Vec<(String, Option<Vec<u8>>)>),
    Delete,
}

#[derive(Debug)]
pub(crate) struct Mutation {
    pub(crate) ks: String,
    pub(crate) table: String,
    pub(crate) key: Vec<Vec<u8>>,
    pub(crate) ts: i64,
    pub(crate) op: Op,
}
