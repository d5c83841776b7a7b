//! The Iceberg REST catalog (`catalog.type = rest`): its options, and opening iceberg-rust's
//! REST client on them.
//!
//! A REST catalog keeps the tables' metadata pointers on a server; a commit is a `POST` of the
//! table's updates with the requirements they were computed against (the table's UUID and the
//! `main` branch's snapshot id), and the server applies it only while they hold, answering
//! `409 Conflict` otherwise. That check is the compare-and-swap the sink's fencing relies on,
//! as the SQL catalog's conditional `UPDATE` is for `catalog.type = sql` (see
//! `committer::FencedCatalog`).
//!
//! Authentication follows the REST specification: `catalog.credential` (`client_id:client_secret`,
//! or a secret alone) is exchanged for a token at the server's OAuth2 token endpoint
//! (`<catalog.uri>/v1/oauth/tokens`, or `catalog.oauth2_server_uri`) with the client-credentials
//! grant and `catalog.scope`; `catalog.token` is sent as the bearer token as it is. Neither is
//! ever printed: both are [`Secret`]s, and the client redacts authorization headers in its errors.
//!
//! Opening the catalog asks the server for its configuration at once, so a wrong address or a
//! refused credential stops the sink at creation with an error naming the options.

use crate::error::{Error, ErrorKind, Result};
use crate::options::Options;
use crate::secret::{redact_url, Secret};
use std::collections::HashMap;

/// How to reach an Iceberg REST catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestOptions {
    /// The catalog's base URL (`catalog.uri`), e.g. `http://catalog:8181`; requests go to
    /// `<uri>/v1/…`.
    pub uri: String,
    /// OAuth2 client credentials (`catalog.credential`): `client_id:client_secret`, or a secret alone.
    pub credential: Option<Secret>,
    /// A bearer token sent as it is (`catalog.token`).
    pub token: Option<Secret>,
    /// Another token endpoint than `<uri>/v1/oauth/tokens` (`catalog.oauth2_server_uri`).
    pub oauth2_server_uri: Option<String>,
    /// The scope asked for with the credential (`catalog.scope`; default `catalog`).
    pub scope: Option<String>,
}

impl RestOptions {
    /// A REST catalog at `uri`, without authentication.
    pub fn new(uri: impl Into<String>) -> Self {
        RestOptions { uri: uri.into(), credential: None, token: None, oauth2_server_uri: None, scope: None }
    }
    /// OAuth2 client credentials, `client_id:client_secret`.
    pub fn credential(mut self, credential: impl Into<String>) -> Self {
        self.credential = Some(Secret::new(credential));
        self
    }
    /// A bearer token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Secret::new(token));
        self
    }
    /// The token endpoint, when not the catalog's own.
    pub fn oauth2_server_uri(mut self, uri: impl Into<String>) -> Self {
        self.oauth2_server_uri = Some(uri.into());
        self
    }
    /// The OAuth2 scope.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Reads the `catalog.*` options of `catalog.type = rest`.
    pub(crate) fn parse(opts: &mut Options) -> Result<Self> {
        let uri = opts.require("catalog.uri", "the REST catalog's URL, e.g. catalog.uri=http://catalog:8181")?;
        check_http_url("catalog.uri", &uri)?;
        let nonempty = |key: &str, v: Option<String>| -> Result<Option<String>> {
            match v {
                Some(s) if s.trim().is_empty() => {
                    Err(Error::config(format!("option `{key}` is empty: give a value, or leave it out")))
                }
                v => Ok(v),
            }
        };
        let credential = nonempty("catalog.credential", opts.take("catalog.credential"))?.map(Secret::new);
        let token = nonempty("catalog.token", opts.take("catalog.token"))?.map(Secret::new);
        let oauth2_server_uri = nonempty("catalog.oauth2_server_uri", opts.take("catalog.oauth2_server_uri"))?;
        let scope = nonempty("catalog.scope", opts.take("catalog.scope"))?;
        for (key, given) in
            [("catalog.oauth2_server_uri", oauth2_server_uri.is_some()), ("catalog.scope", scope.is_some())]
        {
            if given && credential.is_none() {
                return Err(Error::config(format!(
                    "option `{key}` applies to the OAuth2 exchange of `catalog.credential`, which is not given: set \
                     `catalog.credential = client_id:client_secret`, or leave `{key}` out"
                )));
            }
        }
        if let Some(u) = &oauth2_server_uri {
            check_http_url("catalog.oauth2_server_uri", u)?;
        }
        Ok(RestOptions { uri, credential, token, oauth2_server_uri, scope })
    }

    /// The properties of iceberg-rust's REST catalog builder (`uri`, `warehouse`, `credential`,
    /// `token`, `oauth2-server-uri`, `scope`).
    pub(crate) fn props(&self, warehouse: String) -> HashMap<String, String> {
        let mut p = HashMap::from([
            (iceberg_catalog_rest::REST_CATALOG_PROP_URI.to_string(), self.uri.trim_end_matches('/').to_string()),
            (iceberg_catalog_rest::REST_CATALOG_PROP_WAREHOUSE.to_string(), warehouse),
        ]);
        if let Some(c) = &self.credential {
            p.insert("credential".to_string(), c.expose().to_string());
        }
        if let Some(t) = &self.token {
            p.insert("token".to_string(), t.expose().to_string());
        }
        if let Some(u) = &self.oauth2_server_uri {
            p.insert("oauth2-server-uri".to_string(), u.clone());
        }
        if let Some(s) = &self.scope {
            p.insert("scope".to_string(), s.clone());
        }
        p
    }

    /// A failure to reach or authenticate with the catalog, naming the options that decide it.
    pub(crate) fn explain(&self, table: &str, e: iceberg::Error) -> Error {
        let text = e.to_string();
        let auth = if self.credential.is_some() {
            "`catalog.credential` (exchanged for a token at the OAuth2 endpoint)"
        } else if self.token.is_some() {
            "`catalog.token`"
        } else {
            "`catalog.credential` or `catalog.token` (none is given)"
        };
        let refused =
            ["401", "403", "Unauthorized", "Forbidden", "invalid_client", "oauth"].iter().any(|s| text.contains(s));
        if refused {
            return Error::config(format!(
                "Iceberg table `{table}`: the REST catalog `{}` refused this sink's credentials: {text} (check {auth})",
                redact_url(&self.uri)
            ));
        }
        let kind = if e.retryable() { ErrorKind::Retriable } else { ErrorKind::Fatal };
        Error::new(
            kind,
            format!(
                "Iceberg table `{table}`: the REST catalog `{}`: {text} (check `catalog.uri` and {auth})",
                redact_url(&self.uri)
            ),
        )
    }
}

fn check_http_url(key: &str, url: &str) -> Result<()> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(Error::config(format!(
            "option `{key}` = `{}` is not an http:// or https:// URL: name the REST catalog's base URL, e.g. \
             http://catalog:8181",
            redact_url(url)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[&str]) -> Result<RestOptions> {
        let mut o = Options::parse_pairs(pairs.iter().copied()).unwrap();
        RestOptions::parse(&mut o)
    }

    #[test]
    fn options_map_to_the_rest_clients_properties_and_secrets_stay_out_of_debug() {
        let r = parse(&[
            "catalog.uri=http://127.0.0.1:8181/",
            "catalog.credential=id:hush-secret",
            "catalog.token=tok-secret",
            "catalog.oauth2_server_uri=http://127.0.0.1:9/token",
            "catalog.scope=PRINCIPAL_ROLE:ALL",
        ])
        .unwrap();
        let p = r.props("file:///wh".into());
        assert_eq!(p["uri"], "http://127.0.0.1:8181");
        assert_eq!(p["warehouse"], "file:///wh");
        assert_eq!(p["credential"], "id:hush-secret");
        assert_eq!(p["token"], "tok-secret");
        assert_eq!(p["oauth2-server-uri"], "http://127.0.0.1:9/token");
        assert_eq!(p["scope"], "PRINCIPAL_ROLE:ALL");
        let debug = format!("{r:?}");
        assert!(!debug.contains("hush-secret") && !debug.contains("tok-secret"), "{debug}");
    }

    #[test]
    fn bad_rest_options_name_the_option() {
        for (pairs, option) in [
            (&[][..], "`catalog.uri`"),
            (&["catalog.uri=sqlite:/x.db"], "`catalog.uri`"),
            (&["catalog.uri=http://h", "catalog.scope=s"], "`catalog.scope`"),
            (&["catalog.uri=http://h", "catalog.oauth2_server_uri=http://o"], "`catalog.oauth2_server_uri`"),
            (
                &["catalog.uri=http://h", "catalog.credential=a:b", "catalog.oauth2_server_uri=o"],
                "`catalog.oauth2_server_uri`",
            ),
            (&["catalog.uri=http://h", "catalog.token="], "`catalog.token`"),
        ] {
            let e = parse(pairs).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config);
            assert!(e.to_string().contains(option), "{pairs:?}: {e}");
        }
    }

    #[test]
    fn a_refused_credential_is_a_configuration_error_without_the_secret() {
        let r = RestOptions::new("http://u:pw@h:1").credential("id:hush");
        let e = r.explain(
            "db.t",
            iceberg::Error::new(iceberg::ErrorKind::Unexpected, "status 401 Unauthorized: invalid_client"),
        );
        assert_eq!(e.kind(), ErrorKind::Config);
        let text = e.to_string();
        assert!(text.contains("`catalog.credential`") && !text.contains("hush") && !text.contains("pw"), "{text}");
    }
}
