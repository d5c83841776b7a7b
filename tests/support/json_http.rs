//! One blocking JSON-over-HTTP call, for the tests that set up and read back a server through its
//! REST API (Elasticsearch / OpenSearch: `tests/elasticsearch.rs`, `tests/crash_tables.rs`).

/// `method` on `{base}{path}`, with `body` as JSON if given; returns the status and the answer
/// parsed as JSON (`Null` if it is not JSON). Panics if the server cannot be reached.
pub fn call(base: &str, method: &str, path: &str, body: Option<serde_json::Value>) -> (u16, serde_json::Value) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut r = reqwest::Client::new().request(m, format!("{base}{path}"));
        if let Some(b) = body {
            r = r.header("Content-Type", "application/json").body(b.to_string());
        }
        let resp = r.send().await.unwrap();
        let s = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (s, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    })
}
