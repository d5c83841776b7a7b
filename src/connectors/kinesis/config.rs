//! Options of the Kinesis connector (names follow RisingWave's Kinesis sink).

use crate::error::{Error, Result};
use crate::options::Options;
use crate::secret::Secret;
use std::path::PathBuf;

/// AWS credentials (never printed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsCredentials {
    /// The access key id.
    pub access_key_id: Secret,
    /// The secret access key.
    pub secret_access_key: Secret,
    /// A session token for temporary credentials.
    pub session_token: Option<Secret>,
}

/// Where and how the Kinesis connector writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KinesisConfig {
    /// The data stream's name (`stream`).
    pub stream: String,
    /// The AWS region (`aws.region`).
    pub region: String,
    /// The endpoint (`endpoint`); default `https://kinesis.<region>.amazonaws.com`.
    pub endpoint: String,
    /// Credentials; `None` reads `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
    /// `AWS_SESSION_TOKEN` from the environment when the writer starts.
    pub credentials: Option<AwsCredentials>,
    /// A directory for per-worker committed frontiers (`progress.dir`); `None`: every run
    /// starts from the beginning of the collection.
    pub progress_dir: Option<PathBuf>,
    /// Records per `PutRecords` request, at most 500 (`kinesis.batch.records`).
    pub batch_records: usize,
    /// Bytes per `PutRecords` request, at most 5 MiB (`kinesis.batch.bytes`).
    pub batch_bytes: usize,
}

/// The API's limits.
pub const MAX_RECORDS: usize = 500;
/// At most 5 MiB per request (data and partition keys).
pub const MAX_REQUEST_BYTES: usize = 5 * 1024 * 1024;
/// At most 1 MiB per record (data and partition key).
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

impl KinesisConfig {
    /// Writes to `stream` in `region` at `endpoint`.
    pub fn new(stream: impl Into<String>, region: impl Into<String>, endpoint: Option<String>) -> Self {
        let region = region.into();
        KinesisConfig {
            stream: stream.into(),
            endpoint: endpoint.unwrap_or_else(|| format!("https://kinesis.{region}.amazonaws.com")),
            region,
            credentials: None,
            progress_dir: None,
            batch_records: MAX_RECORDS,
            batch_bytes: MAX_REQUEST_BYTES,
        }
    }

    /// Uses these credentials.
    pub fn credentials(mut self, access_key_id: &str, secret_access_key: &str) -> Self {
        self.credentials = Some(AwsCredentials {
            access_key_id: Secret::new(access_key_id),
            secret_access_key: Secret::new(secret_access_key),
            session_token: None,
        });
        self
    }

    /// Keeps committed frontiers in `dir`, so a restart resumes near where it stopped.
    pub fn progress_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.progress_dir = Some(dir.into());
        self
    }

    pub(crate) fn parse(opts: &mut Options) -> Result<Self> {
        let stream = opts.require("stream", "the Kinesis data stream's name, e.g. stream=orders")?;
        let region = opts.require("aws.region", "the AWS region, e.g. aws.region=us-east-1")?;
        let endpoint = opts.take("endpoint").filter(|e| !e.is_empty());
        let mut c = KinesisConfig::new(stream, region, endpoint);
        let id = opts.take("aws.credentials.access_key_id");
        let secret = opts.take("aws.credentials.secret_access_key");
        let token = opts.take("aws.credentials.session_token");
        c.credentials = match (id, secret) {
            (Some(access_key_id), Some(secret_access_key)) => Some(AwsCredentials {
                access_key_id: Secret::new(access_key_id),
                secret_access_key: Secret::new(secret_access_key),
                session_token: token.map(Secret::new),
            }),
            (None, None) if token.is_none() => None,
            _ => {
                return Err(Error::config(
                    "set both `aws.credentials.access_key_id` and `aws.credentials.secret_access_key` \
                     (or neither, to read AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the environment)",
                ))
            }
        };
        c.progress_dir = opts.take("progress.dir").map(PathBuf::from);
        if let Some(n) = opts.take_parsed::<usize>("kinesis.batch.records", "a count of records")? {
            c.batch_records = n;
        }
        if let Some(n) = opts.take_parsed::<usize>("kinesis.batch.bytes", "a byte count")? {
            c.batch_bytes = n;
        }
        c.check()?;
        Ok(c)
    }

    pub(crate) fn check(&self) -> Result<()> {
        if !(1..=MAX_RECORDS).contains(&self.batch_records) {
            return Err(Error::config(format!(
                "option `kinesis.batch.records` = {} is outside 1..={MAX_RECORDS} (the PutRecords limit)",
                self.batch_records
            )));
        }
        if !(MAX_RECORD_BYTES..=MAX_REQUEST_BYTES).contains(&self.batch_bytes) {
            return Err(Error::config(format!(
                "option `kinesis.batch.bytes` = {} is outside {MAX_RECORD_BYTES}..={MAX_REQUEST_BYTES} (the PutRecords limits)",
                self.batch_bytes
            )));
        }
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err(Error::config(format!(
                "option `endpoint` = `{}` must start with http:// or https://",
                self.endpoint
            )));
        }
        if self.stream.is_empty() || self.stream.len() > 128 {
            return Err(Error::config("option `stream` must be 1 to 128 characters"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_redacts() {
        let mut o = Options::parse_pairs([
            "stream=s",
            "aws.region=eu-west-1",
            "aws.credentials.access_key_id=AKID",
            "aws.credentials.secret_access_key=hunter2",
        ])
        .unwrap();
        let c = KinesisConfig::parse(&mut o).unwrap();
        assert_eq!(c.endpoint, "https://kinesis.eu-west-1.amazonaws.com");
        let d = format!("{c:?}");
        assert!(!d.contains("hunter2") && !d.contains("AKID"), "{d}");
        let mut o = Options::parse_pairs(["stream=s", "aws.region=r", "kinesis.batch.records=501"]).unwrap();
        assert!(KinesisConfig::parse(&mut o).unwrap_err().to_string().contains("501"));
    }
}
