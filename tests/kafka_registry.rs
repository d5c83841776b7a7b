//! The Schema Registry client over HTTPS, against the in-test registry double
//! (`tests/support/registry_double.rs`) with a throwaway CA made by `rcgen`: no broker needed.
//!
//! Shown: registering and fetching over TLS with the CA of `schema.registry.ssl.root.cert`; the
//! basic-auth header sent as the credentials say (computed here independently); a certificate of
//! another CA, and one that does not name the URL's host, refused with a `Config` error naming
//! the fix and never retried; a `401` answered with the credentials hint and without the password.

#[path = "support/registry_double.rs"]
mod registry_double;

use differential_sinks::connectors::kafka::{Registry, RegistryConfig};
use differential_sinks::ErrorKind;
use registry_double::{start_registry, Pki};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(5);

fn config(url: &str, ca: &std::path::Path) -> RegistryConfig {
    let mut c = RegistryConfig::new(url);
    c.ca = Some(ca.to_path_buf());
    c
}

#[test]
fn registers_and_fetches_over_https_with_the_configured_ca() {
    let pki = Pki::new("registry CA");
    let dir = tempfile::tempdir().unwrap();
    let (url, state) = start_registry(Some(pki.server(&["127.0.0.1"])), None);
    let registry = Registry::new(&config(&url, &pki.ca_file(dir.path(), "ca.pem")), TIMEOUT).unwrap();
    let schema = serde_json::json!({"type": "record", "name": "r", "fields": [{"name": "a", "type": "long"}]});
    let id = registry.register("t-value", &schema).unwrap();
    assert_eq!(registry.register("t-value", &schema).unwrap(), id, "the same schema, the same id");
    let other = serde_json::json!({"type": "record", "name": "k", "fields": [{"name": "b", "type": "string"}]});
    let other_id = registry.register("t-key", &other).unwrap();
    assert_ne!(other_id, id);
    let st = state.lock().unwrap();
    assert_eq!(st.subjects["t-value"], vec![id]);
    assert_eq!(st.subjects["t-key"], vec![other_id]);
    assert_eq!(st.auth_seen, vec![None, None, None], "no credentials configured, none sent");
    drop(st);
    assert_eq!(registry.schema(id).unwrap(), schema);
    assert_eq!(registry.schema(other_id).unwrap(), other);
}

#[test]
fn basic_auth_from_options_and_from_the_url_is_sent() {
    let pki = Pki::new("registry CA");
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.ca_file(dir.path(), "ca.pem");
    // "Basic " + base64("ann:p@ss:word"), written out.
    let expected = "Basic YW5uOnBAc3M6d29yZA==";
    let (url, state) = start_registry(Some(pki.server(&["127.0.0.1"])), Some(expected.into()));
    let schema = serde_json::json!("long");

    let mut c = config(&url, &ca);
    c.username = Some("ann".into());
    c.password = Some(differential_sinks::secret::Secret::new("p@ss:word"));
    Registry::new(&c, TIMEOUT).unwrap().register("s", &schema).unwrap();

    let with_userinfo = url.replace("https://", "https://ann:p%40ss%3Aword@");
    let r = Registry::new(&config(&with_userinfo, &ca), TIMEOUT).unwrap();
    assert!(!format!("{r:?}").contains("word"), "{r:?}");
    r.register("s", &schema).unwrap();
    assert_eq!(state.lock().unwrap().auth_seen, vec![Some(expected.to_string()); 2]);
}

#[test]
fn a_401_names_the_credential_options_and_hides_the_password() {
    let pki = Pki::new("registry CA");
    let dir = tempfile::tempdir().unwrap();
    let (url, state) = start_registry(Some(pki.server(&["127.0.0.1"])), Some("Basic b3RoZXI6b3RoZXI=".into()));
    let mut c = config(&url, &pki.ca_file(dir.path(), "ca.pem"));
    c.username = Some("ann".into());
    c.password = Some(differential_sinks::secret::Secret::new("wrong-secret"));
    let e = Registry::new(&c, TIMEOUT).unwrap().register("s", &serde_json::json!("long")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Fatal, "{e}");
    let m = e.to_string();
    assert!(m.contains("HTTP 401") && m.contains("schema.registry.username / schema.registry.password"), "{m}");
    assert!(!m.contains("wrong-secret") && !format!("{e:?}").contains("wrong-secret"), "{e:?}");
    assert_eq!(state.lock().unwrap().auth_seen.len(), 1);
}

#[test]
fn a_certificate_of_another_ca_is_refused_naming_the_ca_option() {
    let pki = Pki::new("registry CA");
    let other = Pki::new("another CA");
    let dir = tempfile::tempdir().unwrap();
    let (url, state) = start_registry(Some(pki.server(&["127.0.0.1"])), None);
    let registry = Registry::new(&config(&url, &other.ca_file(dir.path(), "other.pem")), TIMEOUT).unwrap();
    let e = registry.register("s", &serde_json::json!("long")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "a refused certificate is not retried: {e}");
    let m = e.to_string();
    assert!(m.contains("not signed by a trusted CA") && m.contains("schema.registry.ssl.root.cert"), "{m}");
    assert!(state.lock().unwrap().auth_seen.is_empty(), "no request reached the registry");
}

#[test]
fn a_certificate_for_another_host_is_refused() {
    let pki = Pki::new("registry CA");
    let dir = tempfile::tempdir().unwrap();
    let (url, state) = start_registry(Some(pki.server(&["registry.example"])), None);
    let registry = Registry::new(&config(&url, &pki.ca_file(dir.path(), "ca.pem")), TIMEOUT).unwrap();
    let e = registry.register("s", &serde_json::json!("long")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    let m = e.to_string();
    assert!(m.contains("does not name `127.0.0.1`") && m.contains("`schema.registry`"), "{m}");
    assert!(state.lock().unwrap().auth_seen.is_empty());
}

#[test]
fn plain_http_still_works() {
    let (url, state) = start_registry(None, None);
    let registry = Registry::new(&RegistryConfig::new(&url), TIMEOUT).unwrap();
    let id = registry.register("s", &serde_json::json!("string")).unwrap();
    assert_eq!(state.lock().unwrap().subjects["s"], vec![id]);
    assert_eq!(registry.schema(id).unwrap(), serde_json::json!("string"));
}
