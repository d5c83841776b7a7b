//! Options of the file connector.

use crate::error::{Error, Result};
use crate::options::Options;
use std::path::PathBuf;

/// Where and how the file connector writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileConfig {
    /// The output directory.
    pub path: PathBuf,
    /// Sync data files and manifests at each commit.
    pub fsync: bool,
}

impl FileConfig {
    /// Writes into `path`, syncing at each commit.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileConfig { path: path.into(), fsync: true }
    }
    /// Whether to sync at each commit (default true; false trades durability for speed).
    pub fn fsync(mut self, on: bool) -> Self {
        self.fsync = on;
        self
    }
    pub(crate) fn parse(opts: &mut Options) -> Result<Self> {
        let path = opts.require("path", "the output directory of the file sink, e.g. path=/tmp/out")?;
        let fsync = opts.take_bool("file.fsync")?.unwrap_or(true);
        let c = FileConfig { path: path.into(), fsync };
        if c.path.exists() && !c.path.is_dir() {
            return Err(Error::config(format!("option `path` = `{}` is a file, not a directory", c.path.display())));
        }
        Ok(c)
    }
}
