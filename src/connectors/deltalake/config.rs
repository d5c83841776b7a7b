//! Options of the Delta Lake connector (names follow RisingWave's Delta Lake sink).

use crate::error::{Error, Result};
use crate::options::Options;
use std::path::{Path, PathBuf};

/// The default size at which a worker closes a Parquet data file and starts the next one.
pub const DEFAULT_TARGET_FILE_SIZE: usize = 128 << 20;

/// Where and how the Delta Lake connector writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaLakeConfig {
    /// The table's directory (`location`): a local path or a `file://` URL.
    pub location: PathBuf,
    /// Create the table from the row schema when it does not exist (`create_table_if_not_exists`).
    pub create_table_if_not_exists: bool,
    /// Close a data file once its Parquet encoding reaches this many bytes (`file.target.size`);
    /// a commit also closes the files it covers, so files are never larger than one commit.
    pub target_file_size: usize,
}

impl DeltaLakeConfig {
    /// A table at `location` that must already exist, with the default file size.
    pub fn new(location: impl Into<PathBuf>) -> Self {
        DeltaLakeConfig {
            location: location.into(),
            create_table_if_not_exists: false,
            target_file_size: DEFAULT_TARGET_FILE_SIZE,
        }
    }
    /// Whether to create the table from the row schema when it does not exist (default false).
    pub fn create_table_if_not_exists(mut self, on: bool) -> Self {
        self.create_table_if_not_exists = on;
        self
    }
    /// The size at which a data file is closed (default 128 MiB).
    pub fn target_file_size(mut self, bytes: usize) -> Self {
        self.target_file_size = bytes.max(1);
        self
    }

    pub(crate) fn from_options(opts: &mut Options) -> Result<Self> {
        let location = opts.require("location", "the Delta table's directory, e.g. location=/data/orders")?;
        let create = opts.take_bool("create_table_if_not_exists")?.unwrap_or(false);
        let size = opts.take_parsed::<usize>("file.target.size", "a size in bytes")?;
        if size == Some(0) {
            return Err(Error::config("option `file.target.size` must be at least 1 byte"));
        }
        let c = DeltaLakeConfig {
            location: parse_location(&location)?,
            create_table_if_not_exists: create,
            target_file_size: size.unwrap_or(DEFAULT_TARGET_FILE_SIZE),
        };
        if c.location.exists() && !c.location.is_dir() {
            return Err(Error::config(format!(
                "option `location` = `{}` is a file, not a directory",
                c.location.display()
            )));
        }
        Ok(c)
    }

    /// The table's URL (the directory made absolute; it need not exist yet).
    pub(crate) fn table_url(&self) -> Result<url::Url> {
        let abs = if self.location.is_absolute() {
            self.location.clone()
        } else {
            std::env::current_dir().map_err(|e| Error::io("reading the current directory", e))?.join(&self.location)
        };
        url::Url::from_directory_path(&abs).map_err(|()| {
            Error::config(format!("option `location` = `{}` is not a usable directory path", abs.display()))
        })
    }
}

fn parse_location(location: &str) -> Result<PathBuf> {
    if location.trim().is_empty() {
        return Err(Error::config("option `location` is empty: name the Delta table's directory"));
    }
    if let Some(path) = location.strip_prefix("file://") {
        return Ok(Path::new(path).to_path_buf());
    }
    if let Some((scheme, _)) = location.split_once("://") {
        return Err(Error::config(format!(
            "option `location` = `{location}`: `{scheme}://` tables are not supported by this build; \
             the deltalake connector writes to local paths (or `file://` URLs)"
        )));
    }
    Ok(PathBuf::from(location))
}

impl From<DeltaLakeConfig> for crate::connectors::ConnectorConfig {
    fn from(c: DeltaLakeConfig) -> Self {
        crate::connectors::ConnectorConfig::DeltaLake(c)
    }
}
