//! Options of the Delta Lake connector (names follow RisingWave's Delta Lake sink).

use crate::connectors::lakehouse::s3::{take_location, StorageLocation};
use crate::connectors::lakehouse::{take_index_max_bytes, DEFAULT_INDEX_MAX_BYTES};
use crate::error::{Error, Result};
use crate::options::Options;
use std::collections::HashMap;

/// The default size at which a worker closes a Parquet data file and starts the next one.
pub const DEFAULT_TARGET_FILE_SIZE: usize = 128 << 20;

/// Where and how the Delta Lake connector writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaLakeConfig {
    /// The table's directory (`location`): a local path or `file://` URL, or an
    /// `s3://bucket/prefix` URL with the `s3.*` options (feature `deltalake-s3`).
    pub location: StorageLocation,
    /// Create the table from the row schema when it does not exist (`create_table_if_not_exists`).
    pub create_table_if_not_exists: bool,
    /// Close a data file once its Parquet encoding reaches this many bytes (`file.target.size`);
    /// a commit also closes the files it covers, so files are never larger than one commit.
    pub target_file_size: usize,
    /// Upserts: the bytes each worker's index of the keys it owns may take
    /// (`upsert.index.max.bytes`, default 4 GiB; see
    /// [`KeyIndex`](crate::connectors::lakehouse::KeyIndex)); past it the sink stops, naming it.
    pub index_max_bytes: usize,
}

impl DeltaLakeConfig {
    /// A table at `location` (a local directory, or a [`StorageLocation::S3`]) that must already
    /// exist, with the default file size.
    pub fn new(location: impl Into<StorageLocation>) -> Self {
        DeltaLakeConfig {
            location: location.into(),
            create_table_if_not_exists: false,
            target_file_size: DEFAULT_TARGET_FILE_SIZE,
            index_max_bytes: DEFAULT_INDEX_MAX_BYTES,
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

    /// The bytes each worker's upsert key index may take (default 4 GiB).
    pub fn index_max_bytes(mut self, bytes: usize) -> Self {
        self.index_max_bytes = bytes.max(1);
        self
    }

    pub(crate) fn parse(opts: &mut Options) -> Result<Self> {
        let location = opts.require("location", "the Delta table's directory, e.g. location=/data/orders")?;
        let location = take_location(
            opts,
            "location",
            &location,
            "the Delta table's directory",
            ("deltalake-s3", cfg!(feature = "deltalake-s3")),
        )?;
        let create = opts.take_bool("create_table_if_not_exists")?.unwrap_or(false);
        let size = opts.take_parsed::<usize>("file.target.size", "a size in bytes")?;
        if size == Some(0) {
            return Err(Error::config("option `file.target.size` must be at least 1 byte"));
        }
        let index_max_bytes = take_index_max_bytes(opts)?;
        if let Some(dir) = location.local() {
            if dir.exists() && !dir.is_dir() {
                return Err(Error::config(format!(
                    "option `location` = `{}` is a file, not a directory",
                    dir.display()
                )));
            }
        }
        Ok(DeltaLakeConfig {
            location,
            create_table_if_not_exists: create,
            target_file_size: size.unwrap_or(DEFAULT_TARGET_FILE_SIZE),
            index_max_bytes,
        })
    }

    /// The table's URL (a local directory made absolute; it need not exist yet).
    pub(crate) fn table_url(&self) -> Result<url::Url> {
        let dir = match &self.location {
            StorageLocation::Local(dir) => dir,
            StorageLocation::S3 { url, .. } => {
                return url::Url::parse(&format!("{url}/"))
                    .map_err(|e| Error::config(format!("option `location` = `{url}` is not a usable URL: {e}")))
            }
        };
        let abs = if dir.is_absolute() {
            dir.clone()
        } else {
            std::env::current_dir().map_err(|e| Error::io("reading the current directory", e))?.join(dir)
        };
        url::Url::from_directory_path(&abs).map_err(|()| {
            Error::config(format!("option `location` = `{}` is not a usable directory path", abs.display()))
        })
    }

    /// The storage options handed to delta-rs: none for a local table; for S3, the `s3.*`
    /// options as object_store's keys, with commits made by conditional put (see the module
    /// docs) whatever the environment says.
    pub(crate) fn storage_options(&self) -> HashMap<String, String> {
        let StorageLocation::S3 { options, .. } = &self.location else { return HashMap::new() };
        let mut m = HashMap::from([
            ("aws_region".to_string(), options.region.clone()),
            ("aws_virtual_hosted_style_request".to_string(), (!options.path_style).to_string()),
            // A commit writes `_delta_log/<version>.json` with `If-None-Match: *`: of two writers
            // committing the same version, one gets `AlreadyExists` and goes through delta-rs'
            // conflict checker. Both keys are pinned so that AWS_* environment variables cannot
            // turn conditional put off or switch to delta-rs' unsafe rename.
            ("aws_conditional_put".to_string(), "etag".to_string()),
            ("AWS_S3_ALLOW_UNSAFE_RENAME".to_string(), "false".to_string()),
        ]);
        if let Some(e) = &options.endpoint {
            m.insert("aws_endpoint".into(), e.clone());
            m.insert("aws_allow_http".into(), options.allow_http().to_string());
        }
        if let Some(c) = &options.credentials {
            m.insert("aws_access_key_id".into(), c.access_key.clone());
            m.insert("aws_secret_access_key".into(), c.secret_key.clone());
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[&str]) -> Result<DeltaLakeConfig> {
        let mut o = Options::parse_pairs(pairs.iter().copied()).unwrap();
        DeltaLakeConfig::parse(&mut o)
    }

    #[test]
    fn the_key_index_budget_is_an_option_with_a_default_and_zero_is_refused() {
        assert_eq!(parse(&["location=/d"]).unwrap().index_max_bytes, DEFAULT_INDEX_MAX_BYTES);
        assert_eq!(parse(&["location=/d", "upsert.index.max.bytes=1GiB"]).unwrap().index_max_bytes, 1 << 30);
        for bad in ["upsert.index.max.bytes=0", "upsert.index.max.bytes=much"] {
            let e = parse(&["location=/d", bad]).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Config);
            assert!(e.to_string().contains("`upsert.index.max.bytes`"), "{bad}: {e}");
        }
    }
}
