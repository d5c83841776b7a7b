//! The `s3.*` options the lakehouse connectors (Delta Lake, Iceberg) share: where an `s3://`
//! table or warehouse lives and how to reach it. Names follow RisingWave's Delta Lake and Iceberg
//! sinks.
//!
//! | option | meaning |
//! |---|---|
//! | `s3.region` | the bucket's region — required for `s3://` locations (S3-compatible stores accept any, e.g. `us-east-1`) |
//! | `s3.endpoint` | the S3 API's URL for S3-compatible stores (MinIO, moto, …); default AWS. An `http://` endpoint allows plain HTTP |
//! | `s3.access.key`, `s3.secret.key` | static credentials, both or neither (neither: the AWS default chain — environment, profile, instance role). Never printed |
//! | `s3.path.style.access` | `true` for path-style requests (`endpoint/bucket/key`); default `true` with `s3.endpoint`, `false` without |
//!
//! The options are parsed whether or not the build can write to S3, so a build without the
//! connector's S3 feature refuses an `s3://` location by naming the feature, and any build refuses
//! `s3.*` options given for a local location.

use crate::error::{Error, Result};
use crate::options::Options;
use std::fmt;
use std::path::{Path, PathBuf};

/// `s3.region`.
pub const S3_REGION: &str = "s3.region";
/// `s3.endpoint`.
pub const S3_ENDPOINT: &str = "s3.endpoint";
/// `s3.access.key`.
pub const S3_ACCESS_KEY: &str = "s3.access.key";
/// `s3.secret.key`.
pub const S3_SECRET_KEY: &str = "s3.secret.key";
/// `s3.path.style.access`.
pub const S3_PATH_STYLE_ACCESS: &str = "s3.path.style.access";

/// Static S3 credentials (never printed).
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    /// The access key id (`s3.access.key`).
    pub access_key: String,
    /// The secret access key (`s3.secret.key`).
    pub secret_key: String,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials").field("access_key", &"<redacted>").field("secret_key", &"<redacted>").finish()
    }
}

/// How to reach an S3 bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Options {
    /// The region (`s3.region`).
    pub region: String,
    /// The endpoint URL (`s3.endpoint`); `None` for AWS.
    pub endpoint: Option<String>,
    /// Static credentials (`s3.access.key`, `s3.secret.key`); `None` for the AWS default chain.
    pub credentials: Option<S3Credentials>,
    /// Path-style requests (`s3.path.style.access`).
    pub path_style: bool,
}

impl S3Options {
    /// A bucket on AWS in `region`, with credentials from the AWS default chain.
    pub fn new(region: impl Into<String>) -> Self {
        S3Options { region: region.into(), endpoint: None, credentials: None, path_style: false }
    }
    /// An S3-compatible store at `endpoint` (path-style requests; plain HTTP for `http://`).
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self.path_style = true;
        self
    }
    /// Static credentials.
    pub fn credentials(mut self, access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        self.credentials = Some(S3Credentials { access_key: access_key.into(), secret_key: secret_key.into() });
        self
    }
    /// Path-style (`true`) or virtual-hosted-style (`false`) requests.
    pub fn path_style(mut self, on: bool) -> Self {
        self.path_style = on;
        self
    }
    /// Whether the endpoint is plain HTTP.
    pub fn allow_http(&self) -> bool {
        self.endpoint.as_deref().is_some_and(|e| e.starts_with("http://"))
    }

    /// Checks the endpoint.
    pub(crate) fn check(&self) -> Result<()> {
        if self.region.trim().is_empty() {
            return Err(Error::config(format!("option `{S3_REGION}` is empty: name the bucket's region")));
        }
        if let Some(e) = &self.endpoint {
            let rest = e.strip_prefix("http://").or_else(|| e.strip_prefix("https://"));
            if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
                return Err(Error::config(format!(
                    "option `{S3_ENDPOINT}` = `{e}` is not an endpoint URL: use http://host:port or https://host"
                )));
            }
        }
        Ok(())
    }
}

/// Where a table or warehouse lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageLocation {
    /// A local directory.
    Local(PathBuf),
    /// A prefix in an S3 bucket.
    S3 {
        /// `s3://bucket/prefix`, without a trailing `/`.
        url: String,
        /// How to reach the bucket.
        options: S3Options,
    },
}

impl StorageLocation {
    /// The local directory, `None` on S3.
    pub fn local(&self) -> Option<&Path> {
        match self {
            StorageLocation::Local(p) => Some(p),
            StorageLocation::S3 { .. } => None,
        }
    }
    /// The location for messages: the path or the `s3://` URL (never credentials).
    pub fn display(&self) -> String {
        match self {
            StorageLocation::Local(p) => p.display().to_string(),
            StorageLocation::S3 { url, .. } => url.clone(),
        }
    }
}

impl From<PathBuf> for StorageLocation {
    fn from(p: PathBuf) -> Self {
        StorageLocation::Local(p)
    }
}
impl From<&Path> for StorageLocation {
    fn from(p: &Path) -> Self {
        StorageLocation::Local(p.to_path_buf())
    }
}
impl From<&PathBuf> for StorageLocation {
    fn from(p: &PathBuf) -> Self {
        StorageLocation::Local(p.clone())
    }
}
impl From<&str> for StorageLocation {
    fn from(p: &str) -> Self {
        StorageLocation::Local(p.into())
    }
}
impl From<String> for StorageLocation {
    fn from(p: String) -> Self {
        StorageLocation::Local(p.into())
    }
}

/// Parses the location option `option` = `value` and the `s3.*` options: a local path, a
/// `file://` URL, or (when `feature` is enabled in this build) an `s3://bucket/prefix` URL.
/// `what` names the location for messages ("the Delta table's directory").
pub(crate) fn take_location(
    opts: &mut Options,
    option: &str,
    value: &str,
    what: &str,
    feature: (&str, bool),
) -> Result<StorageLocation> {
    let region = opts.take(S3_REGION);
    let endpoint = opts.take(S3_ENDPOINT).filter(|e| !e.is_empty());
    let access = opts.take(S3_ACCESS_KEY);
    let secret = opts.take(S3_SECRET_KEY);
    let path_style = opts.take_bool(S3_PATH_STYLE_ACCESS)?;
    let given: Vec<&str> = [
        (S3_REGION, region.is_some()),
        (S3_ENDPOINT, endpoint.is_some()),
        (S3_ACCESS_KEY, access.is_some()),
        (S3_SECRET_KEY, secret.is_some()),
        (S3_PATH_STYLE_ACCESS, path_style.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, on)| on.then_some(k))
    .collect();
    if value.trim().is_empty() {
        return Err(Error::config(format!("option `{option}` is empty: name {what}")));
    }
    let Some(rest) = value.strip_prefix("s3://") else {
        let local = match value.strip_prefix("file://") {
            Some(path) => PathBuf::from(path),
            None => {
                if let Some((scheme, _)) = value.split_once("://") {
                    return Err(Error::config(format!(
                        "option `{option}` = `{value}`: `{scheme}://` is not supported; use a local path, a `file://` \
                         URL or an `s3://bucket/prefix` URL"
                    )));
                }
                PathBuf::from(value)
            }
        };
        if let Some(k) = given.first() {
            return Err(Error::config(format!(
                "option `{k}` applies to `s3://` locations only, but `{option}` = `{value}` is local: remove the \
                 `s3.*` options or give an `s3://bucket/prefix` {option}"
            )));
        }
        return Ok(StorageLocation::Local(local));
    };
    let (name, enabled) = feature;
    if !enabled {
        return Err(Error::config(format!(
            "option `{option}` = `{value}`: `s3://` locations need the `{name}` cargo feature of differential-sinks, \
             which this build lacks; rebuild with `--features {name}` or use a local path"
        )));
    }
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_matches('/');
    if bucket.is_empty() || bucket.contains(['?', '#', ':', '@']) {
        return Err(Error::config(format!(
            "option `{option}` = `{value}` does not name a bucket: use s3://bucket/prefix"
        )));
    }
    let region = region.filter(|r| !r.trim().is_empty()).ok_or_else(|| {
        Error::config(format!(
            "option `{S3_REGION}` is required when `{option}` = `{value}` is on S3: the bucket's region, e.g. \
             {S3_REGION}=us-east-1 (S3-compatible stores accept any region)"
        ))
    })?;
    let mut options = S3Options::new(region);
    if let Some(e) = endpoint {
        options = options.endpoint(e);
    }
    if let Some(p) = path_style {
        options.path_style = p;
    }
    options.credentials = match (access, secret) {
        (Some(a), Some(s)) if !a.is_empty() && !s.is_empty() => Some(S3Credentials { access_key: a, secret_key: s }),
        (None, None) => None,
        _ => {
            return Err(Error::config(format!(
                "set both `{S3_ACCESS_KEY}` and `{S3_SECRET_KEY}` (non-empty), or neither to use the AWS default \
                 credential chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profile, instance role)"
            )))
        }
    };
    options.check()?;
    let url = if prefix.is_empty() { format!("s3://{bucket}") } else { format!("s3://{bucket}/{prefix}") };
    Ok(StorageLocation::S3 { url, options })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str, pairs: &[&str], enabled: bool) -> Result<StorageLocation> {
        let mut o = Options::parse_pairs(pairs.iter().copied()).unwrap();
        take_location(&mut o, "location", value, "the table", ("deltalake-s3", enabled))
    }

    #[test]
    fn s3_locations_take_the_s3_options() {
        let l = parse(
            "s3://bucket/a/b/",
            &["s3.region=eu-west-1", "s3.endpoint=http://127.0.0.1:9000", "s3.access.key=AK", "s3.secret.key=SK"],
            true,
        )
        .unwrap();
        let expected = S3Options::new("eu-west-1").endpoint("http://127.0.0.1:9000").credentials("AK", "SK");
        assert_eq!(l, StorageLocation::S3 { url: "s3://bucket/a/b".into(), options: expected.clone() });
        assert!(expected.allow_http() && expected.path_style);
        let shown = format!("{l:?}");
        assert!(!shown.contains("AK") && !shown.contains("SK") && shown.contains("<redacted>"), "{shown}");
        let aws = parse("s3://b", &["s3.region=us-east-1", "s3.path.style.access=true"], true).unwrap();
        assert_eq!(
            aws,
            StorageLocation::S3 { url: "s3://b".into(), options: S3Options::new("us-east-1").path_style(true) }
        );
        assert_eq!(parse("file:///x", &[], false).unwrap(), StorageLocation::Local("/x".into()));
    }

    #[test]
    fn bad_s3_options_name_the_option() {
        for (value, pairs, enabled, option) in [
            ("s3://b/p", &[][..], true, "`s3.region`"),
            ("s3://b/p", &["s3.region="], true, "`s3.region`"),
            ("s3://b/p", &["s3.region=r"], false, "`deltalake-s3`"),
            ("s3:///p", &["s3.region=r"], true, "`location`"),
            ("s3://b/p", &["s3.region=r", "s3.endpoint=127.0.0.1:9000"], true, "`s3.endpoint`"),
            ("s3://b/p", &["s3.region=r", "s3.access.key=a"], true, "`s3.secret.key`"),
            ("s3://b/p", &["s3.region=r", "s3.secret.key=s"], true, "`s3.access.key`"),
            ("s3://b/p", &["s3.region=r", "s3.path.style.access=maybe"], true, "`s3.path.style.access`"),
            ("/local", &["s3.endpoint=http://h:1"], true, "`s3.endpoint`"),
            ("gs://b/p", &[], true, "`location`"),
            ("", &[], true, "`location`"),
        ] {
            let e = parse(value, pairs, enabled).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Config);
            assert!(e.to_string().contains(option), "{value} {pairs:?}: {e}");
        }
    }
}
