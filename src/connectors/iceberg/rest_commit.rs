//! The upserts' row-delta commits sent to a REST catalog by the sink itself.
//!
//! iceberg-rust 0.10 sends only commits its own transactions build, and those cannot carry
//! position-delete files; the sink builds the row delta itself (see `position_deletes`). On a SQL
//! catalog it writes the new metadata file and swaps the table's row; on a REST catalog it sends
//! what the REST specification's commit is: `POST <uri>/v1/<prefix>/namespaces/<ns>/tables/<t>`
//! with the metadata changes (`add-snapshot`, `set-snapshot-ref`, `set-properties`) and the
//! requirements they were computed against (`assert-table-uuid`, `assert-ref-snapshot-id` of
//! `main`). The server applies them only while the requirements hold — the compare-and-swap —
//! and answers `409` otherwise, which [`RestCommits::commit`] reports as a lost race.
//!
//! Its session follows the specification as iceberg-rust's client does: `GET <uri>/v1/config`
//! (with `warehouse`) for the `prefix` (and `uri`) the server overrides, and a bearer token:
//! `catalog.token` as it is, or `catalog.credential` exchanged at the OAuth2 token endpoint with
//! the client-credentials grant. A `401` drops the session and asks for a new token once.
//! Secrets are never put into errors: only the server's status and its error message are.

use super::rest::RestOptions;
use crate::error::{Error, ErrorKind, Result};
use crate::secret::redact_url;
use iceberg::{TableIdent, TableRequirement, TableUpdate};
use reqwest_iceberg::{Client, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use std::sync::Mutex;

/// Sends row-delta commits to one REST catalog.
pub(crate) struct RestCommits {
    client: Client,
    rest: RestOptions,
    warehouse: String,
    session: Mutex<Option<Session>>,
}

#[derive(Clone)]
struct Session {
    /// `<uri>/v1[/<prefix>]`.
    base: String,
    token: Option<String>,
}

impl RestCommits {
    pub(crate) fn new(rest: &RestOptions, warehouse: String) -> Result<Self> {
        let client = Client::builder().build().map_err(|e| {
            Error::new(ErrorKind::Fatal, format!("starting the HTTP client of the REST catalog: {}", e.without_url()))
        })?;
        Ok(RestCommits { client, rest: rest.clone(), warehouse, session: Mutex::new(None) })
    }

    /// Applies `updates` to the table if `requirements` hold; false when the server refused them
    /// (`409`: another commit came first).
    pub(crate) async fn commit(
        &self,
        id: &TableIdent,
        requirements: Vec<TableRequirement>,
        updates: Vec<TableUpdate>,
        name: &str,
    ) -> Result<bool> {
        let body = json!({
            "identifier": { "namespace": id.namespace().as_ref(), "name": id.name() },
            "requirements": requirements,
            "updates": updates,
        });
        let ns = id.namespace().join("\u{1f}");
        let path = format!("namespaces/{}/tables/{}", encode(&ns), encode(id.name()));
        for attempt in 0..2 {
            let session = self.session(name).await?;
            let request = self.client.post(format!("{}/{path}", session.base)).json(&body);
            let response = self.send(authorize(request, &session), name).await?;
            match response.status() {
                s if s.is_success() => return Ok(true),
                StatusCode::CONFLICT => return Ok(false),
                StatusCode::UNAUTHORIZED if attempt == 0 && self.rest.credential.is_some() => {
                    // The token may have expired: ask for a new one, once.
                    *self.session.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
                _ => return Err(self.refused(response, "committing", name).await),
            }
        }
        Err(Error::config(format!(
            "Iceberg table `{name}`: the REST catalog `{}` refused a fresh token (check `catalog.credential`)",
            redact_url(&self.rest.uri)
        )))
    }

    async fn session(&self, name: &str) -> Result<Session> {
        if let Some(s) = self.session.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(s);
        }
        let uri = self.rest.uri.trim_end_matches('/').to_string();
        let token = self.token(&uri, name).await?;
        let request = self.client.get(format!("{uri}/v1/config")).query(&[("warehouse", &self.warehouse)]);
        let request = authorize(request, &Session { base: String::new(), token: token.clone() });
        let response = self.send(request, name).await?;
        if !response.status().is_success() {
            return Err(self.refused(response, "reading its configuration", name).await);
        }
        let config: Value = response.json().await.map_err(|e| self.transport(e, name))?;
        let setting = |key: &str| {
            config["overrides"][key].as_str().or_else(|| config["defaults"][key].as_str()).map(str::to_string)
        };
        let uri = config["overrides"]["uri"].as_str().map(|u| u.trim_end_matches('/').to_string()).unwrap_or(uri);
        let base = match setting("prefix") {
            Some(p) if !p.is_empty() => format!("{uri}/v1/{p}"),
            _ => format!("{uri}/v1"),
        };
        let session = Session { base, token };
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = Some(session.clone());
        Ok(session)
    }

    /// `catalog.token`, or a token for `catalog.credential`; none without either.
    async fn token(&self, uri: &str, name: &str) -> Result<Option<String>> {
        if let Some(t) = &self.rest.token {
            return Ok(Some(t.expose().to_string()));
        }
        let Some(credential) = &self.rest.credential else { return Ok(None) };
        let (id, secret) = match credential.expose().split_once(':') {
            Some((id, secret)) => (Some(id), secret),
            None => (None, credential.expose()),
        };
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if let Some(id) = id {
            form.append_pair("client_id", id);
        }
        form.append_pair("client_secret", secret);
        form.append_pair("scope", self.rest.scope.as_deref().unwrap_or("catalog"));
        let endpoint = self.rest.oauth2_server_uri.clone().unwrap_or_else(|| format!("{uri}/v1/oauth/tokens"));
        let request =
            self.client.post(endpoint).header("Content-Type", "application/x-www-form-urlencoded").body(form.finish());
        let response = self.send(request, name).await?;
        if !response.status().is_success() {
            return Err(self.refused(response, "exchanging `catalog.credential` for a token", name).await);
        }
        let body: Value = response.json().await.map_err(|e| self.transport(e, name))?;
        match body["access_token"].as_str() {
            Some(t) => Ok(Some(t.to_string())),
            None => Err(Error::new(
                ErrorKind::Fatal,
                format!("Iceberg table `{name}`: the OAuth2 token endpoint answered without an `access_token`"),
            )),
        }
    }

    async fn send(&self, request: RequestBuilder, name: &str) -> Result<Response> {
        request.send().await.map_err(|e| self.transport(e, name))
    }

    fn transport(&self, e: reqwest_iceberg::Error, name: &str) -> Error {
        // Without the URL: it is the catalog's, named below without credentials.
        Error::new(
            ErrorKind::Retriable,
            format!(
                "Iceberg table `{name}`: the REST catalog `{}`: {} (check `catalog.uri`)",
                redact_url(&self.rest.uri),
                e.without_url()
            ),
        )
    }

    /// An answer other than success: authentication refusals are configuration errors, server
    /// errors retriable (the commit's outcome is then unknown; the retry's fencing check finds
    /// out), anything else fatal. The server's error message is kept; no request detail is.
    async fn refused(&self, response: Response, what: &str, name: &str) -> Error {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| {
                v["error"]["message"]
                    .as_str()
                    .or_else(|| v["error_description"].as_str())
                    .or_else(|| v["error"].as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| body.chars().take(300).collect());
        let uri = redact_url(&self.rest.uri);
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::config(format!(
                "Iceberg table `{name}`: the REST catalog `{uri}` refused this sink's credentials when {what}: \
                 {status}: {message} (check `catalog.credential` / `catalog.token`)"
            )),
            s if s.is_server_error() => Error::new(
                ErrorKind::Retriable,
                format!("Iceberg table `{name}`: the REST catalog `{uri}`, {what}: {s}: {message}"),
            ),
            s => Error::new(
                ErrorKind::Fatal,
                format!("Iceberg table `{name}`: the REST catalog `{uri}`, {what}: {s}: {message}"),
            ),
        }
    }
}

fn authorize(request: RequestBuilder, session: &Session) -> RequestBuilder {
    match &session.token {
        Some(t) => request.bearer_auth(t),
        None => request,
    }
}

/// A path segment, percent-encoded (the namespace separator `\u{1f}` becomes `%1F`).
fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect::<String>().replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(encode("a\u{1f}b"), "a%1Fb");
        assert_eq!(encode("my table/x"), "my%20table%2Fx");
    }
}
