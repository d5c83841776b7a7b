//! moto's S3 (`DSINK_MOTO_URL`, started by `scripts/services start moto`) for the lakehouse
//! sinks' `s3://` tests: a fresh bucket per test and object listings, over plain HTTP/1.0 (moto
//! accepts unsigned requests).

use super::{service_env, unique_name};
use std::io::{Read, Write};
use std::net::TcpStream;

/// The region the tests name (moto accepts any).
pub const REGION: &str = "us-east-1";
/// Credentials the tests give (moto accepts any).
pub const ACCESS_KEY: &str = "dsink-test-access";
/// See [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "dsink-test-secret";

/// moto's URL, `http://host:port`; panics with how to start moto when it is not set.
pub fn moto_url() -> String {
    service_env("DSINK_MOTO_URL", "moto")
}

/// One request to moto; returns the status and the body.
fn request(method: &str, path_and_query: &str) -> (u16, String) {
    let url = moto_url();
    let host = url.strip_prefix("http://").expect("DSINK_MOTO_URL is http://host:port").trim_end_matches('/');
    let mut s = TcpStream::connect(host).unwrap_or_else(|e| panic!("moto does not answer at {url}: {e}"));
    write!(s, "{method} {path_and_query} HTTP/1.0\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("moto replied {out}"));
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// Creates a bucket of a fresh name starting with `prefix` and returns the name.
pub fn create_bucket(prefix: &str) -> String {
    let name = unique_name(prefix, '-');
    let (status, body) = request("PUT", &format!("/{name}"));
    assert_eq!(status, 200, "creating bucket {name} on moto: {body}");
    name
}

/// The keys under `prefix` in `bucket` (at most 1000).
pub fn list_keys(bucket: &str, prefix: &str) -> Vec<String> {
    let (status, body) = request("GET", &format!("/{bucket}?list-type=2&max-keys=1000&prefix={prefix}"));
    assert_eq!(status, 200, "listing {bucket}/{prefix} on moto: {body}");
    assert!(!body.contains("<IsTruncated>true"), "more than 1000 keys under {bucket}/{prefix}");
    body.split("<Key>").skip(1).map(|k| k.split("</Key>").next().unwrap().to_string()).collect()
}

/// The storage options of the Python readers (`DSINK_STORAGE_OPTIONS`) for Delta (delta-rs'
/// `AWS_*` keys).
pub fn delta_reader_options() -> serde_json::Value {
    serde_json::json!({
        "AWS_ENDPOINT_URL": moto_url(),
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_ALLOW_HTTP": "true",
    })
}

/// The catalog properties of the Python reader (`DSINK_STORAGE_OPTIONS`) for Iceberg
/// (pyiceberg's `s3.*` keys).
pub fn iceberg_reader_options() -> serde_json::Value {
    serde_json::json!({
        "s3.endpoint": moto_url(),
        "s3.region": REGION,
        "s3.access-key-id": ACCESS_KEY,
        "s3.secret-access-key": SECRET_KEY,
    })
}
