//! Options of the Iceberg connector (names follow RisingWave's Iceberg sink).

use crate::connectors::lakehouse::s3::{take_location, StorageLocation};
use crate::connectors::lakehouse::{take_index_max_bytes, DEFAULT_INDEX_MAX_BYTES};
use crate::error::{Error, Result};
use crate::options::Options;
use std::path::Path;

pub use super::rest::RestOptions;

/// The default size at which a worker closes a Parquet data file and starts the next one.
pub const DEFAULT_TARGET_FILE_SIZE: usize = 128 << 20;
/// Data files a worker keeps open at once, by default (`file.max.open`).
pub const DEFAULT_MAX_OPEN_FILES: usize = 32;

/// The catalog name recorded in the SQL catalog's rows when `catalog.name` is not given.
pub const DEFAULT_CATALOG_NAME: &str = "default";

/// The file name of the embedded SQLite catalog inside the warehouse directory.
pub const EMBEDDED_CATALOG_FILE: &str = "catalog.db";

/// Which catalog tracks the table's current metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CatalogKind {
    /// The SQL catalog (the JDBC catalog's tables, `iceberg_tables` and
    /// `iceberg_namespace_properties`) in a SQLite database: `catalog.uri`, or by default
    /// `<warehouse.path>/catalog.db` for a local warehouse.
    Sql {
        /// The sqlx database URL, e.g. `sqlite:/data/wh/catalog.db`; empty when not yet given
        /// for a warehouse on S3 (refused at creation).
        uri: String,
    },
    /// An Iceberg REST catalog server (`catalog.type = rest`): `catalog.uri` and its credentials.
    Rest(Box<RestOptions>),
}

/// Where and how the Iceberg connector writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IcebergConfig {
    /// The catalog (`catalog.type`, `catalog.uri`).
    pub catalog: CatalogKind,
    /// The catalog's name (`catalog.name`): SQL catalogs keep several catalogs apart by it.
    pub catalog_name: String,
    /// The warehouse (`warehouse.path`): a local directory, or an `s3://bucket/prefix` with the
    /// `s3.*` options (feature `iceberg-s3`). New tables go to `<warehouse>/<database>/<table>`.
    pub warehouse: StorageLocation,
    /// The namespace (`database.name`), dot-separated for nested namespaces.
    pub database: String,
    /// The table (`table.name`).
    pub table: String,
    /// Create the namespace and the table from the row schema when missing
    /// (`create_table_if_not_exists`).
    pub create_table_if_not_exists: bool,
    /// Close a data file once its Parquet encoding reaches this many bytes (`file.target.size`);
    /// a commit also closes the files it covers.
    pub target_file_size: usize,
    /// The most data files a worker keeps open at once (`file.max.open`), one per partition it is
    /// writing: past it, the file written least recently is closed (a partition written again
    /// gets a new file). Each open file holds a row group in memory, so this bounds a worker's
    /// memory whatever the number of partitions a commit touches.
    pub max_open_files: usize,
    /// The partition spec of a table the sink creates, and the one an existing table must have
    /// (`partition_by`); empty: unpartitioned when created, any spec when the table exists.
    pub partition_by: Vec<PartitionTerm>,
    /// Upserts: the bytes each worker's index of the keys it owns may take
    /// (`upsert.index.max.bytes`, default 4 GiB; see
    /// [`KeyIndex`](crate::connectors::lakehouse::KeyIndex)); past it the sink stops, naming it.
    pub index_max_bytes: usize,
}

/// One term of `partition_by`: a column and the transform that partitions by it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionTerm {
    /// The source column.
    pub column: String,
    /// Iceberg's transform of it.
    pub transform: iceberg::spec::Transform,
}

impl PartitionTerm {
    /// The partition field's name, as other Iceberg writers name it (`k`, `k_bucket`, `ts_day`, …).
    pub fn field_name(&self) -> String {
        use iceberg::spec::Transform as T;
        let suffix = match self.transform {
            T::Identity => return self.column.clone(),
            T::Bucket(_) => "bucket",
            T::Truncate(_) => "trunc",
            T::Year => "year",
            T::Month => "month",
            T::Day => "day",
            T::Hour => "hour",
            T::Void => "null",
            T::Unknown => "unknown",
        };
        format!("{}_{suffix}", self.column)
    }
}

/// Parses `partition_by`: comma-separated terms, each a column (identity), `bucket(N, col)`,
/// `truncate(W, col)`, `year(col)`, `month(col)`, `day(col)` or `hour(col)`.
pub fn parse_partition_by(text: &str) -> Result<Vec<PartitionTerm>> {
    use iceberg::spec::Transform as T;
    let bad = |term: &str, why: &str| {
        Error::config(format!(
            "option `partition_by` = `{text}`: `{term}` {why}; write comma-separated terms: a column, \
             `bucket(N, column)`, `truncate(W, column)`, `year(column)`, `month(column)`, `day(column)` or \
             `hour(column)`"
        ))
    };
    // Split on the commas outside parentheses.
    let (mut terms, mut depth, mut start) = (Vec::new(), 0i32, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    let mut out = Vec::new();
    for raw in terms {
        let term = raw.trim();
        if term.is_empty() {
            return Err(bad(raw, "is empty"));
        }
        let Some(open) = term.find('(') else {
            if term.contains(|c: char| c.is_whitespace() || c == ')') {
                return Err(bad(term, "is not a column name"));
            }
            out.push(PartitionTerm { column: term.to_string(), transform: T::Identity });
            continue;
        };
        let Some(inner) = term[open + 1..].strip_suffix(')') else { return Err(bad(term, "is missing its `)`")) };
        let name = term[..open].trim().to_ascii_lowercase();
        let args: Vec<&str> = inner.split(',').map(str::trim).collect();
        let width = |args: &[&str]| -> Result<u32> {
            args[0]
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad(term, "needs a positive whole number first"))
        };
        let (transform, column) = match (name.as_str(), args.as_slice()) {
            ("bucket", [_, c]) => (T::Bucket(width(&args)?), *c),
            ("truncate", [_, c]) => (T::Truncate(width(&args)?), *c),
            ("year" | "years", [c]) => (T::Year, *c),
            ("month" | "months", [c]) => (T::Month, *c),
            ("day" | "days", [c]) => (T::Day, *c),
            ("hour" | "hours", [c]) => (T::Hour, *c),
            ("identity", [c]) => (T::Identity, *c),
            ("bucket" | "truncate", _) => return Err(bad(term, "takes two arguments: a number and a column")),
            ("year" | "years" | "month" | "months" | "day" | "days" | "hour" | "hours" | "identity", _) => {
                return Err(bad(term, "takes one argument: a column"))
            }
            _ => return Err(bad(term, "is not a transform")),
        };
        if column.is_empty() {
            return Err(bad(term, "names no column"));
        }
        out.push(PartitionTerm { column: column.to_string(), transform });
    }
    let names: std::collections::HashSet<String> = out.iter().map(PartitionTerm::field_name).collect();
    if names.len() != out.len() {
        return Err(Error::config(format!("option `partition_by` = `{text}` repeats a partition field")));
    }
    Ok(out)
}

impl IcebergConfig {
    /// The table `database.table` in the embedded SQLite catalog of `warehouse` (which must exist
    /// unless [`create_table_if_not_exists`](Self::create_table_if_not_exists) is set). A warehouse
    /// on S3 has no embedded catalog: name one with [`catalog_uri`](Self::catalog_uri).
    pub fn new(warehouse: impl Into<StorageLocation>, database: impl Into<String>, table: impl Into<String>) -> Self {
        let warehouse = warehouse.into();
        IcebergConfig {
            catalog: CatalogKind::Sql { uri: warehouse.local().map(embedded_uri).unwrap_or_default() },
            catalog_name: DEFAULT_CATALOG_NAME.to_string(),
            warehouse,
            database: database.into(),
            table: table.into(),
            create_table_if_not_exists: false,
            target_file_size: DEFAULT_TARGET_FILE_SIZE,
            max_open_files: DEFAULT_MAX_OPEN_FILES,
            partition_by: Vec::new(),
            index_max_bytes: DEFAULT_INDEX_MAX_BYTES,
        }
    }
    /// The bytes each worker's upsert key index may take (default 4 GiB).
    pub fn index_max_bytes(mut self, bytes: usize) -> Self {
        self.index_max_bytes = bytes.max(1);
        self
    }
    /// The partition spec (`partition_by` syntax, e.g. `"bucket(16, id), day(ts)"`) of a table
    /// the sink creates, which an existing table must have too.
    pub fn partition_by(mut self, spec: &str) -> Result<Self> {
        self.partition_by = parse_partition_by(spec)?;
        Ok(self)
    }
    /// Whether to create the namespace and table when missing (default false).
    pub fn create_table_if_not_exists(mut self, on: bool) -> Self {
        self.create_table_if_not_exists = on;
        self
    }
    /// The size at which a data file is closed (default 128 MiB).
    pub fn target_file_size(mut self, bytes: usize) -> Self {
        self.target_file_size = bytes.max(1);
        self
    }
    /// The most data files a worker keeps open at once (default 32, at least 1).
    pub fn max_open_files(mut self, files: usize) -> Self {
        self.max_open_files = files.max(1);
        self
    }
    /// Another SQL catalog database than the embedded one (a sqlx SQLite URL).
    pub fn catalog_uri(mut self, uri: impl Into<String>) -> Self {
        self.catalog = CatalogKind::Sql { uri: uri.into() };
        self
    }
    /// An Iceberg REST catalog instead of the SQL one; the warehouse is sent to it as the
    /// catalog's `warehouse` and decides where data files go (a directory, or S3).
    pub fn rest_catalog(mut self, rest: RestOptions) -> Self {
        self.catalog = CatalogKind::Rest(Box::new(rest));
        self
    }

    pub(crate) fn parse(opts: &mut Options) -> Result<Self> {
        let kind = opts.take("catalog.type").unwrap_or_else(|| "sql".to_string());
        let rest = match kind.as_str() {
            "sql" | "jdbc" => false,
            "rest" => true,
            "glue" | "hive" | "storage" | "memory" => {
                return Err(Error::config(format!(
                    "option `catalog.type` = `{kind}` is not supported by this build: the iceberg connector \
                     commits through the SQL catalog (`catalog.type = sql`, a SQLite database; by default \
                     `<warehouse.path>/{EMBEDDED_CATALOG_FILE}`) or a REST catalog (`catalog.type = rest`)"
                )))
            }
            other => {
                return Err(Error::config(format!(
                    "option `catalog.type` = `{other}` is not a catalog type: use `sql` or `rest`"
                )))
            }
        };
        let warehouse =
            opts.require("warehouse.path", "the warehouse directory, e.g. warehouse.path=/data/warehouse")?;
        let warehouse = take_location(
            opts,
            "warehouse.path",
            &warehouse,
            "the warehouse directory",
            ("iceberg-s3", cfg!(feature = "iceberg-s3")),
        )?;
        let catalog = if rest {
            CatalogKind::Rest(Box::new(RestOptions::parse(opts)?))
        } else {
            CatalogKind::Sql { uri: Self::parse_sql_uri(opts, &warehouse)? }
        };
        let catalog_name = opts.take("catalog.name").unwrap_or_else(|| DEFAULT_CATALOG_NAME.to_string());
        if catalog_name.trim().is_empty() {
            return Err(Error::config("option `catalog.name` is empty: name the catalog, or leave it out"));
        }
        let database = opts.require("database.name", "the table's namespace, e.g. database.name=sales")?;
        if database.is_empty() || database.split('.').any(str::is_empty) {
            return Err(Error::config(format!(
                "option `database.name` = `{database}` is not a namespace: use dot-separated non-empty names"
            )));
        }
        let table = opts.require("table.name", "the table's name, e.g. table.name=orders")?;
        if table.trim().is_empty() || table.contains('.') || table.contains('/') {
            return Err(Error::config(format!(
                "option `table.name` = `{table}` is not a table name: name the table alone (its namespace goes to \
                 `database.name`)"
            )));
        }
        let create = opts.take_bool("create_table_if_not_exists")?.unwrap_or(false);
        let partition_by = match opts.take("partition_by") {
            Some(p) => parse_partition_by(&p)?,
            None => Vec::new(),
        };
        let size = opts.take_parsed::<usize>("file.target.size", "a size in bytes")?;
        if size == Some(0) {
            return Err(Error::config("option `file.target.size` must be at least 1 byte"));
        }
        let open = opts.take_parsed::<usize>("file.max.open", "a number of files")?;
        if open == Some(0) {
            return Err(Error::config(
                "option `file.max.open` must be at least 1 (a worker writes into at least one open data file)",
            ));
        }
        let index_max_bytes = take_index_max_bytes(opts)?;
        if let Some(dir) = warehouse.local() {
            if dir.exists() && !dir.is_dir() {
                return Err(Error::config(format!(
                    "option `warehouse.path` = `{}` is a file, not a directory",
                    dir.display()
                )));
            }
        }
        Ok(IcebergConfig {
            catalog,
            catalog_name,
            warehouse,
            database,
            table,
            create_table_if_not_exists: create,
            target_file_size: size.unwrap_or(DEFAULT_TARGET_FILE_SIZE),
            max_open_files: open.unwrap_or(DEFAULT_MAX_OPEN_FILES),
            partition_by,
            index_max_bytes,
        })
    }

    /// The SQL catalog's database: `catalog.uri`, or the embedded file of a local warehouse.
    fn parse_sql_uri(opts: &mut Options, warehouse: &StorageLocation) -> Result<String> {
        match opts.take("catalog.uri") {
            None => match warehouse.local() {
                Some(dir) => Ok(embedded_uri(dir)),
                None => Err(no_catalog_uri(warehouse)),
            },
            Some(u) if u.starts_with("sqlite:") => Ok(u),
            Some(u) => Err(Error::config(format!(
                "option `catalog.uri` = `{}`: the SQL catalog of this build speaks SQLite only; use a \
                 `sqlite:/path/catalog.db` URL, or leave `catalog.uri` out for `<warehouse.path>/{EMBEDDED_CATALOG_FILE}`; \
                 for a REST catalog set `catalog.type = rest`",
                crate::secret::redact_url(&u)
            ))),
        }
    }

    /// The warehouse as a URL: an absolute `file://` URL (the directory need not exist yet), or
    /// the `s3://` one. Refuses a warehouse on S3 without a `catalog.uri`.
    pub(crate) fn warehouse_url(&self) -> Result<String> {
        let dir = match &self.warehouse {
            StorageLocation::Local(dir) => dir,
            StorageLocation::S3 { url, .. } => {
                if matches!(&self.catalog, CatalogKind::Sql { uri } if uri.is_empty()) {
                    return Err(no_catalog_uri(&self.warehouse));
                }
                return Ok(url.clone());
            }
        };
        let abs = if dir.is_absolute() {
            dir.clone()
        } else {
            std::env::current_dir().map_err(|e| Error::io("reading the current directory", e))?.join(dir)
        };
        let s = abs
            .to_str()
            .ok_or_else(|| Error::config(format!("option `warehouse.path` = `{}` is not UTF-8", dir.display())))?;
        Ok(format!("file://{}", s.trim_end_matches('/')))
    }

    /// `database.table`, for messages.
    pub(crate) fn qualified(&self) -> String {
        format!("{}.{}", self.database, self.table)
    }
}

fn embedded_uri(warehouse: &Path) -> String {
    format!("sqlite:{}", warehouse.join(EMBEDDED_CATALOG_FILE).display())
}

fn no_catalog_uri(warehouse: &StorageLocation) -> Error {
    Error::config(format!(
        "option `catalog.uri` is required when `warehouse.path` = `{}` is on S3: the SQL catalog is a SQLite file \
         on a local (or shared) file system, e.g. catalog.uri=sqlite:/data/catalog.db",
        warehouse.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[&str]) -> Result<IcebergConfig> {
        let mut o = Options::parse_pairs(pairs.iter().copied()).unwrap();
        IcebergConfig::parse(&mut o)
    }

    #[test]
    fn the_embedded_sqlite_catalog_is_the_default() {
        let c = parse(&["warehouse.path=/tmp/wh", "database.name=a.b", "table.name=t"]).unwrap();
        assert_eq!(c.catalog, CatalogKind::Sql { uri: "sqlite:/tmp/wh/catalog.db".into() });
        assert_eq!(c, IcebergConfig::new("/tmp/wh", "a.b", "t"));
        assert_eq!(c.warehouse_url().unwrap(), "file:///tmp/wh");
    }

    /// Without `iceberg-s3` an `s3://` warehouse is refused naming the feature; with it, the
    /// missing `s3.region` is named first.
    fn s3_refusal() -> &'static str {
        if cfg!(feature = "iceberg-s3") {
            "`s3.region`"
        } else {
            "`iceberg-s3`"
        }
    }

    #[cfg(feature = "iceberg-s3")]
    #[test]
    fn an_s3_warehouse_needs_a_catalog_uri() {
        let base = ["warehouse.path=s3://bucket/wh/", "s3.region=us-east-1", "database.name=a", "table.name=t"];
        let e = parse(&base).unwrap_err();
        assert!(e.to_string().contains("`catalog.uri`"), "{e}");
        let mut with = base.to_vec();
        with.extend(["catalog.uri=sqlite:/tmp/c.db", "s3.endpoint=http://127.0.0.1:9", "s3.secret.key=hush"]);
        with.push("s3.access.key=AK");
        let c = parse(&with).unwrap();
        assert_eq!(c.warehouse_url().unwrap(), "s3://bucket/wh");
        assert!(!format!("{c:?}").contains("hush") && !format!("{c:?}").contains("AK"), "{c:?}");
        // Built in code: refused when the catalog is opened.
        let c = IcebergConfig::new(c.warehouse.clone(), "a", "t");
        assert!(c.warehouse_url().unwrap_err().to_string().contains("`catalog.uri`"));
    }

    #[test]
    fn partition_terms_parse_like_other_engines_write_them() {
        use iceberg::spec::Transform as T;
        let terms = parse_partition_by("k, bucket(16, id), truncate(4,s), day(ts), Hour( at ), years(d)").unwrap();
        let got: Vec<(String, T, String)> =
            terms.iter().map(|t| (t.column.clone(), t.transform, t.field_name())).collect();
        let want = [
            ("k", T::Identity, "k"),
            ("id", T::Bucket(16), "id_bucket"),
            ("s", T::Truncate(4), "s_trunc"),
            ("ts", T::Day, "ts_day"),
            ("at", T::Hour, "at_hour"),
            ("d", T::Year, "d_year"),
        ];
        assert_eq!(got, want.map(|(c, t, n)| (c.to_string(), t, n.to_string())));
        for bad in
            ["", "k,", "bucket(k)", "bucket(0, k)", "bucket(x, k)", "day(a, b)", "frob(k)", "day(k", "a b", "k, k"]
        {
            let e = parse_partition_by(bad).unwrap_err();
            assert!(e.to_string().contains("`partition_by`"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_key_index_budget_is_an_option_with_a_default() {
        let c = parse(&["warehouse.path=/w", "database.name=a", "table.name=t"]).unwrap();
        assert_eq!(c.index_max_bytes, DEFAULT_INDEX_MAX_BYTES);
        let c =
            parse(&["warehouse.path=/w", "database.name=a", "table.name=t", "upsert.index.max.bytes=64MiB"]).unwrap();
        assert_eq!(c.index_max_bytes, 64 << 20);
    }

    #[test]
    fn bad_options_name_the_option() {
        for (pairs, option) in [
            (&["database.name=a", "table.name=t"][..], "`warehouse.path`"),
            (&["warehouse.path=/w", "table.name=t"], "`database.name`"),
            (&["warehouse.path=/w", "database.name=a"], "`table.name`"),
            (&["warehouse.path=/w", "database.name=a", "table.name=a.t"], "`table.name`"),
            (&["warehouse.path=/w", "database.name=a..b", "table.name=t"], "`database.name`"),
            (&["warehouse.path=s3://b/w", "database.name=a", "table.name=t"], s3_refusal()),
            (&["warehouse.path=gs://b/w", "database.name=a", "table.name=t"], "`warehouse.path`"),
            (&["warehouse.path=/w", "s3.region=r", "database.name=a", "table.name=t"], "`s3.region`"),
            (&["catalog.type=rest", "warehouse.path=/w", "database.name=a", "table.name=t"], "`catalog.uri`"),
            (&["catalog.type=glue", "warehouse.path=/w", "database.name=a", "table.name=t"], "`catalog.type`"),
            (&["catalog.type=nope", "warehouse.path=/w", "database.name=a", "table.name=t"], "`catalog.type`"),
            (&["catalog.uri=postgres://x", "warehouse.path=/w", "database.name=a", "table.name=t"], "`catalog.uri`"),
            (&["file.target.size=0", "warehouse.path=/w", "database.name=a", "table.name=t"], "`file.target.size`"),
            (&["file.max.open=0", "warehouse.path=/w", "database.name=a", "table.name=t"], "`file.max.open`"),
            (
                &["upsert.index.max.bytes=0", "warehouse.path=/w", "database.name=a", "table.name=t"],
                "`upsert.index.max.bytes`",
            ),
            (
                &["upsert.index.max.bytes=lots", "warehouse.path=/w", "database.name=a", "table.name=t"],
                "`upsert.index.max.bytes`",
            ),
        ] {
            let e = parse(pairs).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Config);
            assert!(e.to_string().contains(option), "{pairs:?}: {e}");
        }
    }
}
