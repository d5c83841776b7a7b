//! The target table as ClickHouse describes it (`system.tables`, `system.columns`), and the
//! creation-time checks that decide how the sink writes to it.

use super::client::ClickHouse;
use super::config::ClickHouseConfig;
use super::sql::literal;
use crate::delivery::runtime;
use crate::encode::rowbinary::RowBinaryEncoder;
use crate::encoded_row::{json_encoder, RowEncoder};
use crate::envelope::Format;
use crate::error::{Error, Result};
use crate::row::Row;
use crate::schema::ColumnType;
use crate::settings::SinkSettings;

/// One column of the target table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableColumn {
    /// The name.
    pub name: String,
    /// The ClickHouse type, e.g. `Nullable(String)`.
    pub ty: String,
    /// Part of the sorting key (`ORDER BY`), which is what ReplacingMergeTree and
    /// CollapsingMergeTree collapse by.
    pub in_sorting_key: bool,
    /// Has a `DEFAULT`/`MATERIALIZED`/`ALIAS` expression (may be left out of an insert).
    pub has_default: bool,
}

/// The target table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableInfo {
    /// `database.table`, for messages.
    pub name: String,
    /// The engine name, e.g. `ReplacingMergeTree`.
    pub engine: String,
    /// The engine clause, e.g. `ReplacingMergeTree(ver) ORDER BY id SETTINGS …`.
    pub engine_full: String,
    /// The columns, in table order.
    pub columns: Vec<TableColumn>,
}

/// How rows are written, decided by the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Rows as they are (any MergeTree; append-only sinks).
    Plain,
    /// ReplacingMergeTree(`version`): the sink writes the logical time into `version`, and 1 into
    /// `delete` for rows that stand for deletes.
    Replacing {
        /// The version column.
        version: String,
        /// The delete marker column, if configured.
        delete: Option<String>,
    },
    /// CollapsingMergeTree(`sign`): +1 rows add, -1 rows cancel the row they repeat.
    Collapsing {
        /// The sign column.
        sign: String,
    },
}

impl Mode {
    /// The columns the sink fills itself.
    pub fn managed(&self) -> Vec<&str> {
        match self {
            Mode::Plain => vec![],
            Mode::Replacing { version, delete } => std::iter::once(version.as_str()).chain(delete.as_deref()).collect(),
            Mode::Collapsing { sign } => vec![sign.as_str()],
        }
    }
}

/// What the sink needs to know of the table to encode its rows: the table, how rows are written
/// ([`plan`]), and the server's time zone (for `DateTime` columns without their own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TablePlan {
    /// The table.
    pub table: TableInfo,
    /// How rows are written.
    pub mode: Mode,
    /// The server's time zone.
    pub timezone: String,
}

impl TablePlan {
    /// The `RowBinary` encoder of the columns rows fill (all but those the sink fills itself), or
    /// the `(name, type)` of each column whose type it cannot write.
    pub fn rowbinary(&self) -> std::result::Result<RowBinaryEncoder, Vec<(String, String)>> {
        let managed = self.mode.managed();
        let columns = self.table.columns.iter().filter(|c| !managed.contains(&c.name.as_str()));
        RowBinaryEncoder::new(columns.map(|c| (c.name.as_str(), c.ty.as_str())), &self.timezone)
    }
}

impl ClickHouse {
    /// Reads the target table's engine and columns.
    pub async fn table(&self) -> Result<TableInfo> {
        let (db, t) = (&self.cfg.database, &self.cfg.table);
        let name = format!("{db}.{t}");
        let row = self
            .query(&format!(
                "SELECT engine, engine_full FROM system.tables WHERE database = {} AND name = {} FORMAT TSVRaw",
                literal(db),
                literal(t)
            ))
            .await?;
        let Some((engine, engine_full)) = row.trim_end_matches('\n').split_once('\t') else {
            return Err(Error::schema(format!(
                "ClickHouse table `{name}` does not exist; create it first (e.g. ENGINE = ReplacingMergeTree(ver) \
                 ORDER BY <primary key>) or fix `clickhouse.database` / `clickhouse.table`"
            )));
        };
        // system.columns lists a table's columns in table order.
        let cols = self
            .query(&format!(
                "SELECT name, type, is_in_sorting_key, default_kind FROM system.columns WHERE database = {} AND table = {} \
                 FORMAT TSVRaw",
                literal(db),
                literal(t)
            ))
            .await?;
        let columns = cols
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f.len() >= 4).then(|| TableColumn {
                    name: f[0].to_string(),
                    ty: f[1].to_string(),
                    in_sorting_key: f[2] == "1",
                    has_default: !f[3].is_empty(),
                })
            })
            .collect();
        Ok(TableInfo { name, engine: engine.to_string(), engine_full: engine_full.to_string(), columns })
    }
}

/// Reads the table and checks the spec against it (at sink creation).
pub(crate) fn validate(cfg: &ClickHouseConfig, spec: &SinkSettings) -> Result<()> {
    let rt = runtime::current_thread("the ClickHouse table check")?;
    let ch = ClickHouse::new(cfg)?;
    let table = rt.block_on(ch.table())?;
    plan(spec, cfg, &table).map(|_| ())
}

/// What the sink's rows are encoded into where they are produced: described `RowBinary` rows for
/// the table's columns, or their JSON when the table has a column type the `RowBinary` encoder
/// lacks (the insert is then `JSONEachRow`). The table is read as the dataflow is built; a writer
/// that reads other columns when it starts refuses the rows (see
/// [`crate::encode::rowbinary`]'s described rows).
pub(crate) fn row_encoder<V: Row>(cfg: &ClickHouseConfig, spec: &SinkSettings) -> Result<RowEncoder<V>> {
    let rt = runtime::current_thread("reading the ClickHouse table")?;
    let ch = ClickHouse::new(cfg)?;
    let (table, timezone) = rt.block_on(async { Ok::<_, Error>((ch.table().await?, ch.timezone().await?)) })?;
    let mode = plan(spec, cfg, &table)?;
    Ok(match (TablePlan { table, mode, timezone }).rowbinary() {
        Ok(mut enc) => {
            Box::new(move |row: &V, buf: &mut Vec<u8>| enc.encode_described(row, buf).map_err(|e| e.to_string()))
        }
        Err(_) => json_encoder(),
    })
}

/// The engine's parameters: `ReplacingMergeTree(ver)` → `["ver"]`.
pub fn engine_params(engine_full: &str) -> Vec<String> {
    let Some(open) = engine_full.find('(') else { return vec![] };
    let mut depth = 0;
    let mut quoted = false;
    let (mut out, mut cur) = (Vec::new(), String::new());
    for ch in engine_full[open + 1..].chars() {
        match ch {
            '\'' => {
                quoted = !quoted;
                cur.push(ch)
            }
            '(' if !quoted => {
                depth += 1;
                cur.push(ch)
            }
            ')' if !quoted && depth == 0 => break,
            ')' if !quoted => {
                depth -= 1;
                cur.push(ch)
            }
            ',' if !quoted && depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(ch),
        }
    }
    out.push(cur);
    out.into_iter().map(|s| s.trim().trim_matches('`').to_string()).filter(|s| !s.is_empty()).collect()
}

/// The last unquoted engine parameter (replicated engines put the ZooKeeper path and replica
/// name first).
fn column_param(engine_full: &str) -> Option<String> {
    engine_params(engine_full).into_iter().rfind(|p| !p.starts_with('\''))
}

fn names(cols: &[&TableColumn]) -> String {
    cols.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// True if a declared column type can be written into a ClickHouse column of type `ch`.
pub fn compatible(ty: ColumnType, ch: &str) -> bool {
    let inner = ch.strip_prefix("Nullable(").and_then(|s| s.strip_suffix(')')).unwrap_or(ch);
    let inner = inner.strip_prefix("LowCardinality(").and_then(|s| s.strip_suffix(')')).unwrap_or(inner);
    match ty {
        ColumnType::Boolean => matches!(inner, "UInt8" | "Int8" | "Bool"),
        ColumnType::Int32 | ColumnType::Int64 => inner.starts_with("Int") || inner.starts_with("UInt"),
        ColumnType::Float32 | ColumnType::Float64 => inner.starts_with("Float") || inner.starts_with("Decimal"),
        ColumnType::Decimal { .. } => inner.starts_with("Decimal") || inner.starts_with("Float"),
        ColumnType::String | ColumnType::Json | ColumnType::Bytes => {
            inner == "String" || inner.starts_with("FixedString") || inner.starts_with("Enum")
        }
        ColumnType::Date => inner.starts_with("Date"),
        ColumnType::Timestamp | ColumnType::Timestamptz => inner.starts_with("DateTime"),
    }
}

/// Decides how to write `spec`'s changes into `table`, or refuses with what to change.
pub fn plan(spec: &SinkSettings, cfg: &ClickHouseConfig, table: &TableInfo) -> Result<Mode> {
    let t = &table.name;
    if !table.engine.ends_with("MergeTree") {
        return Err(Error::schema(format!(
            "ClickHouse table `{t}` has engine {}; the sink writes to MergeTree-family tables only: \
             create it with ENGINE = ReplacingMergeTree(ver), CollapsingMergeTree(sign) or MergeTree",
            table.engine
        )));
    }
    let column = |name: &str| table.columns.iter().find(|c| c.name == name);
    let mode = if table.engine.ends_with("ReplacingMergeTree") {
        match column_param(&table.engine_full) {
            Some(version) => Mode::Replacing { version, delete: cfg.delete_column.clone() },
            None if spec.format().is_keyed() => {
                return Err(Error::schema(format!(
                    "ClickHouse table `{t}` is a ReplacingMergeTree without a version column, so replayed or \
                     reordered inserts could replace a newer row with an older one; recreate it as \
                     ReplacingMergeTree(ver) with a UInt64 column `ver` (the sink writes the logical time there)"
                )))
            }
            None => Mode::Plain,
        }
    } else if table.engine.ends_with("CollapsingMergeTree") && !table.engine.contains("Versioned") {
        let sign = column_param(&table.engine_full).ok_or_else(|| {
            Error::schema(format!(
                "cannot read the sign column of CollapsingMergeTree table `{t}` from `{}`",
                table.engine_full
            ))
        })?;
        Mode::Collapsing { sign }
    } else {
        Mode::Plain
    };
    match (&mode, spec.format()) {
        (_, Format::Debezium { .. }) => {
            return Err(Error::config(format!(
                "`type = debezium` cannot be written to ClickHouse table `{t}`: use `type = upsert` (onto a \
                 ReplacingMergeTree or CollapsingMergeTree) or `type = append-only`"
            )))
        }
        (Mode::Plain, Format::Upsert) => {
            return Err(Error::schema(format!(
                "`type = upsert` needs a ClickHouse table that can replace or cancel rows, but `{t}` is a {}; \
                 recreate it as ReplacingMergeTree(ver) (with `clickhouse.delete.column`) or CollapsingMergeTree(sign), \
                 or use `type = append-only`",
                table.engine
            )))
        }
        (Mode::Replacing { delete: None, .. }, Format::Upsert) => {
            return Err(Error::config(format!(
                "`type = upsert` onto ReplacingMergeTree table `{t}` needs `clickhouse.delete.column`: a UInt8 column \
                 the sink sets to 1 on rows that stand for deletes (query with `FINAL WHERE NOT <column>`); add one \
                 to the table and name it, or use a CollapsingMergeTree table"
            )))
        }
        _ => {}
    }
    if cfg.delete_column.is_some() && !matches!(mode, Mode::Replacing { .. }) {
        return Err(Error::config(format!(
            "option `clickhouse.delete.column` applies to ReplacingMergeTree tables, and `{t}` is a {}: remove it",
            table.engine
        )));
    }
    let expect_type = |name: &str, ok: &[&str], role: &str| -> Result<()> {
        let c = column(name).ok_or_else(|| {
            Error::schema(format!(
                "ClickHouse table `{t}` has no column `{name}` ({role}); its columns are {}",
                names(&table.columns.iter().collect::<Vec<_>>())
            ))
        })?;
        if !ok.contains(&c.ty.as_str()) {
            return Err(Error::schema(format!(
                "column `{name}` of ClickHouse table `{t}` ({role}) is {}, but the sink needs one of {}: \
                 ALTER TABLE {t} MODIFY COLUMN {name} {}",
                c.ty,
                ok.join(", "),
                ok[0]
            )));
        }
        Ok(())
    };
    match &mode {
        Mode::Replacing { version, delete } => {
            expect_type(version, &["UInt64", "Int64"], "the version column, which holds the logical time")?;
            if let Some(d) = delete {
                expect_type(d, &["UInt8", "Int8"], "the delete marker")?;
            }
        }
        Mode::Collapsing { sign } => expect_type(sign, &["Int8"], "the sign column")?,
        Mode::Plain => {}
    }
    let managed = mode.managed();
    if spec.format().is_keyed() {
        let sorting: Vec<&TableColumn> = table.columns.iter().filter(|c| c.in_sorting_key).collect();
        let pk = spec.primary_key().unwrap_or_default();
        let same = pk.len() == sorting.len() && pk.iter().all(|k| sorting.iter().any(|c| &c.name == k));
        if !same {
            return Err(Error::schema(format!(
                "`primary_key` ({}) does not match the sorting key of ClickHouse table `{t}` ({}), which is what \
                 {} collapses rows by; declare `primary_key = '{}'`, or recreate the table with ORDER BY ({})",
                pk.join(", "),
                names(&sorting),
                table.engine,
                sorting.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(","),
                pk.join(", ")
            )));
        }
    }
    if let Some(schema) = spec.schema() {
        for c in &schema.columns {
            if managed.contains(&c.name.as_str()) {
                return Err(Error::schema(format!(
                    "column `{}` is filled by the sink in ClickHouse table `{t}` (version, sign or delete marker) and \
                     must not be a column of the rows: rename one of them",
                    c.name
                )));
            }
            match column(&c.name) {
                None => {
                    return Err(Error::schema(format!(
                        "the rows have column `{}`, which ClickHouse table `{t}` lacks (its columns: {}); \
                         ALTER TABLE {t} ADD COLUMN {} <type>, or drop it from the rows",
                        c.name,
                        names(&table.columns.iter().collect::<Vec<_>>()),
                        c.name
                    )))
                }
                Some(tc) if !compatible(c.ty, &tc.ty) => {
                    return Err(Error::schema(format!(
                        "column `{}` is {} in the rows but {} in ClickHouse table `{t}`; change one of them",
                        c.name, c.ty, tc.ty
                    )))
                }
                _ => {}
            }
        }
        let missing: Vec<&TableColumn> = table
            .columns
            .iter()
            .filter(|tc| !tc.has_default && !managed.contains(&tc.name.as_str()) && schema.column(&tc.name).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(Error::schema(format!(
                "ClickHouse table `{t}` has column(s) {} without a default that the rows do not have; add them to \
                 the rows or give them a DEFAULT",
                names(&missing)
            )));
        }
    }
    Ok(mode)
}

/// Checks one row's JSON object against the table (the first row of each writer, when no schema
/// was declared): every field a column, every column without a default present.
pub fn check_row(table: &TableInfo, mode: &Mode, row: &serde_json::Value) -> Result<()> {
    let obj = row.as_object().ok_or_else(|| {
        Error::schema(format!("rows for ClickHouse table `{}` must serialize as JSON objects, not {row}", table.name))
    })?;
    check_fields(table, mode, &obj.keys().map(String::as_str).collect::<Vec<_>>())
}

/// Checks a row's field names against the table: every field a column the sink does not fill
/// itself, every column without a default present.
pub fn check_fields(table: &TableInfo, mode: &Mode, fields: &[&str]) -> Result<()> {
    for k in fields {
        check_field(table, mode, k)?;
    }
    let managed = mode.managed();
    let missing: Vec<&TableColumn> = table
        .columns
        .iter()
        .filter(|c| !c.has_default && !managed.contains(&c.name.as_str()) && !fields.contains(&c.name.as_str()))
        .collect();
    if !missing.is_empty() {
        return Err(Error::schema(format!(
            "ClickHouse table `{}` has column(s) {} without a default that the rows lack; add them to the rows or \
             give them a DEFAULT",
            table.name,
            names(&missing)
        )));
    }
    Ok(())
}

/// Checks that a row's field `k` is a column of the table the sink does not fill itself.
pub fn check_field(table: &TableInfo, mode: &Mode, k: &str) -> Result<()> {
    let t = &table.name;
    if mode.managed().contains(&k) {
        return Err(Error::schema(format!(
            "the rows have column `{k}`, which the sink fills itself in ClickHouse table `{t}` (version, sign or \
             delete marker); rename one of them"
        )));
    }
    if !table.columns.iter().any(|c| c.name == k) {
        return Err(Error::schema(format!(
            "the rows have column `{k}`, which ClickHouse table `{t}` lacks (its columns: {}); \
             ALTER TABLE {t} ADD COLUMN {k} <type>, or drop the field from the rows",
            names(&table.columns.iter().collect::<Vec<_>>())
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Format;

    fn table(engine_full: &str, cols: &[(&str, &str, bool)]) -> TableInfo {
        TableInfo {
            name: "db.t".into(),
            engine: engine_full.split(['(', ' ']).next().unwrap().into(),
            engine_full: engine_full.into(),
            columns: cols
                .iter()
                .map(|(n, t, k)| TableColumn {
                    name: n.to_string(),
                    ty: t.to_string(),
                    in_sorting_key: *k,
                    has_default: false,
                })
                .collect(),
        }
    }

    fn cfg() -> ClickHouseConfig {
        ClickHouseConfig::new("http://x", "db", "t")
    }

    fn upsert(pk: &str, cfg: ClickHouseConfig) -> SinkSettings {
        let _ = cfg;
        SinkSettings::for_test(Format::Upsert, &pk.split(',').collect::<Vec<_>>(), None)
    }

    #[test]
    fn engine_parameters() {
        assert_eq!(engine_params("ReplacingMergeTree(ver) ORDER BY k"), vec!["ver"]);
        assert_eq!(
            engine_params("ReplicatedCollapsingMergeTree('/ch/t', '{replica}', sign) ORDER BY (a, b)"),
            vec!["'/ch/t'", "'{replica}'", "sign"]
        );
        assert_eq!(column_param("ReplicatedCollapsingMergeTree('/ch/t', '{replica}', sign)"), Some("sign".into()));
        assert!(engine_params("MergeTree ORDER BY k").is_empty());
    }

    #[test]
    fn plans_and_refusals() {
        let cols = [("k", "UInt32", true), ("v", "UInt32", false), ("ver", "UInt64", false), ("del", "UInt8", false)];
        let rep = table("ReplacingMergeTree(ver) ORDER BY k", &cols);
        let m = plan(&upsert("k", cfg().delete_column("del")), &cfg().delete_column("del"), &rep).unwrap();
        assert_eq!(m, Mode::Replacing { version: "ver".into(), delete: Some("del".into()) });
        let e = plan(&upsert("k", cfg()), &cfg(), &rep).unwrap_err().to_string();
        assert!(e.contains("clickhouse.delete.column") && e.contains("db.t"), "{e}");
        let e =
            plan(&upsert("v", cfg().delete_column("del")), &cfg().delete_column("del"), &rep).unwrap_err().to_string();
        assert!(e.contains("sorting key") && e.contains("primary_key = 'k'"), "{e}");
        let plain = table("MergeTree ORDER BY k", &cols);
        let e = plan(&upsert("k", cfg()), &cfg(), &plain).unwrap_err().to_string();
        assert!(e.contains("append-only") && e.contains("CollapsingMergeTree"), "{e}");
        let col = table("CollapsingMergeTree(sign) ORDER BY k", &[("k", "UInt32", true), ("sign", "UInt8", false)]);
        let e = plan(&upsert("k", cfg()), &cfg(), &col).unwrap_err().to_string();
        assert!(e.contains("`sign`") && e.contains("Int8"), "{e}");
        let badver = table(
            "ReplacingMergeTree(ver) ORDER BY k",
            &[("k", "UInt32", true), ("ver", "String", false), ("del", "UInt8", false)],
        );
        let e = plan(&upsert("k", cfg().delete_column("del")), &cfg().delete_column("del"), &badver)
            .unwrap_err()
            .to_string();
        assert!(e.contains("MODIFY COLUMN ver UInt64"), "{e}");
    }

    #[test]
    fn row_checks() {
        let t = table("MergeTree ORDER BY k", &[("k", "UInt32", true), ("v", "UInt32", false)]);
        assert!(check_row(&t, &Mode::Plain, &serde_json::json!({"k": 1, "v": 2})).is_ok());
        let e = check_row(&t, &Mode::Plain, &serde_json::json!({"k": 1, "v": 2, "x": 3})).unwrap_err().to_string();
        assert!(e.contains("`x`") && e.contains("ADD COLUMN"), "{e}");
        let e = check_row(&t, &Mode::Plain, &serde_json::json!({"k": 1})).unwrap_err().to_string();
        assert!(e.contains("v") && e.contains("DEFAULT"), "{e}");
    }
}
