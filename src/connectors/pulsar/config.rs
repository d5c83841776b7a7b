//! Options of the Pulsar connector (names follow RisingWave's Pulsar sink).

use crate::error::{Error, Result};
use crate::options::Options;
use crate::secret::Secret;
use std::path::PathBuf;

/// Compression of message batches (`compression`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PulsarCompression {
    /// No compression (default).
    None,
    /// LZ4.
    Lz4,
    /// zlib.
    Zlib,
    /// Snappy.
    Snappy,
}

/// Where and how the Pulsar connector produces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PulsarConfig {
    /// The service URL (`service.url`), e.g. `pulsar://127.0.0.1:6650`.
    pub service_url: String,
    /// The topic (`topic`).
    pub topic: String,
    /// A JWT for token authentication (`auth.token`); never printed.
    pub auth_token: Option<Secret>,
    /// Messages per batch (`batch.size`); `None` or 1 disables batching.
    pub batch_size: Option<u32>,
    /// Bytes per batch (`batch.byte.size`).
    pub batch_byte_size: Option<usize>,
    /// Batch compression.
    pub compression: PulsarCompression,
    /// A directory for per-worker committed frontiers (`progress.dir`).
    pub progress_dir: Option<PathBuf>,
}

impl PulsarConfig {
    /// Produces to `topic` at `service_url`, without batching.
    pub fn new(service_url: impl Into<String>, topic: impl Into<String>) -> Self {
        PulsarConfig {
            service_url: service_url.into(),
            topic: topic.into(),
            auth_token: None,
            batch_size: None,
            batch_byte_size: None,
            compression: PulsarCompression::None,
            progress_dir: None,
        }
    }

    /// Batches up to `size` messages or `bytes` bytes.
    pub fn batching(mut self, size: u32, bytes: Option<usize>) -> Self {
        self.batch_size = Some(size);
        self.batch_byte_size = bytes;
        self
    }

    /// Compresses batches.
    pub fn compression(mut self, c: PulsarCompression) -> Self {
        self.compression = c;
        self
    }

    /// Keeps committed frontiers in `dir`.
    pub fn progress_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.progress_dir = Some(dir.into());
        self
    }

    pub(crate) fn parse(opts: &mut Options) -> Result<Self> {
        let url = opts.require("service.url", "the broker, e.g. service.url=pulsar://127.0.0.1:6650")?;
        let topic = opts.require("topic", "the topic, e.g. topic=persistent://public/default/orders")?;
        let mut c = PulsarConfig::new(url, topic);
        c.auth_token = opts.take("auth.token").filter(|t| !t.is_empty()).map(Secret::new);
        c.batch_size = opts.take_parsed("batch.size", "a count of messages")?;
        c.batch_byte_size = opts.take_parsed("batch.byte.size", "a byte count")?;
        c.compression = match opts.take("compression").as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("none") => PulsarCompression::None,
            Some("lz4") => PulsarCompression::Lz4,
            Some("zlib") => PulsarCompression::Zlib,
            Some("snappy") => PulsarCompression::Snappy,
            Some(other) => {
                return Err(Error::config(format!(
                    "option `compression` = `{other}`: use none, lz4, zlib or snappy (zstd is not built in)"
                )))
            }
        };
        c.progress_dir = opts.take("progress.dir").map(PathBuf::from);
        if !(c.service_url.starts_with("pulsar://") || c.service_url.starts_with("pulsar+ssl://")) {
            return Err(Error::config(format!(
                "option `service.url` = `{}` must start with pulsar:// or pulsar+ssl://",
                c.service_url
            )));
        }
        if c.batch_size == Some(0) {
            return Err(Error::config("option `batch.size` must be at least 1"));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_redacts() {
        let mut o = Options::parse_pairs([
            "service.url=pulsar://h:1",
            "topic=t",
            "auth.token=hunter2",
            "batch.size=100",
            "compression=LZ4",
        ])
        .unwrap();
        let c = PulsarConfig::parse(&mut o).unwrap();
        assert_eq!((c.batch_size, c.compression), (Some(100), PulsarCompression::Lz4));
        assert!(!format!("{c:?}").contains("hunter2"));
        let mut o = Options::parse_pairs(["service.url=pulsar://h:1", "topic=t", "compression=zstd"]).unwrap();
        assert!(PulsarConfig::parse(&mut o).is_err());
    }
}
