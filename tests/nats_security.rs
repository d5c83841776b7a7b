//! The NATS sink against secured servers (`scripts/services start nats`), read back with a plain
//! async-nats client that logs in the same way, and compared with the reference model of
//! `tests/common`. The certificates are the test CA's (`tls_certs` in `scripts/services`), valid
//! for the IP address 127.0.0.1 only:
//! - `DSINK_NATS_TLS_URL`: a `tls://` server with a server certificate;
//! - `DSINK_NATS_AUTH_URL`: a `tls://` server that verifies client certificates and has the user
//!   `dsink` with the password `DSINK_NATS_AUTH_PASSWORD`.
//!
//! Every test panics when its variable is missing.

mod common;
mod drive;

use async_nats::jetstream;
use common::{expected_changes, key_of, keyed_history, row_of, state_before, Row};
use differential_sinks::connectors::nats::KEY_HEADER;
use differential_sinks::{ErrorKind, Options, SinkSpec};
use drive::Drive;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

fn env(var: &str) -> String {
    common::service_env(var, "nats")
}

fn unique(prefix: &str) -> String {
    common::unique_name(prefix, '_')
}

/// An upsert spec into a new JetStream stream on `url`, with the extra `options`.
fn spec(url: &str, stream: &str, options: &[(&str, &str)]) -> SinkSpec {
    let mut o = Options::parse_pairs([
        "connector=nats".to_string(),
        "sink.name=secured".into(),
        "type=upsert".into(),
        "primary_key=k".into(),
        format!("subject={stream}.rows"),
        format!("stream={stream}"),
        "stream.create=true".into(),
        format!("progress.stream={stream}_progress"),
        "request.timeout.ms=5000".into(),
    ])
    .unwrap();
    o.set("server_url", url.to_string());
    for (k, v) in options {
        o.set(*k, v.to_string());
    }
    SinkSpec::from_options(o).expect("options accepted")
}

/// Runs a keyed history on 2 workers and reads the stream back with `client`: each change once,
/// replaying to the final state.
fn round_trip(url: &str, options: &[(&str, &str)], client: async_nats::ConnectOptions, seed: u64) {
    let history = keyed_history(seed, 25, 4, 15);
    let stream = unique("secured");
    if let Some(e) = Drive::new(2).run(&history, &spec(url, &stream, options)).first() {
        panic!("the sink failed: {e}");
    }
    // The reader's client would otherwise ask rustls for a process-wide provider, and a build
    // with every feature has two.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let want = expected_changes(&history);
    let msgs = rt.block_on(async {
        let js = jetstream::new(client.connect(url).await.expect("the reader connects"));
        let mut s = js.get_stream(&stream).await.expect("the sink created the stream");
        let info = s.info().await.unwrap().clone();
        assert_eq!(info.state.messages, want.len() as u64, "each change once");
        let mut out = Vec::new();
        for seq in info.state.first_sequence..=info.state.last_sequence {
            let m = s.get_raw_message(seq).await.unwrap();
            let key = m.headers.get(KEY_HEADER).expect("key header").as_str().to_string();
            out.push((key_of(key.as_bytes()), (!m.payload.is_empty()).then(|| row_of(&m.payload))));
        }
        out
    });
    let mut state: BTreeMap<u32, Row> = BTreeMap::new();
    let mut keys = BTreeSet::new();
    for (k, row) in msgs {
        keys.insert(k);
        match row {
            Some(r) => state.insert(k, r),
            None => state.remove(&k),
        };
    }
    assert_eq!(keys, want.keys().map(|(_, k)| *k).collect(), "the changed keys");
    assert_eq!(state, state_before(&history, u64::MAX));
}

/// The error the sink stops with, and how long it took.
fn failure(url: &str, options: &[(&str, &str)]) -> (differential_sinks::Error, Duration) {
    let history = keyed_history(9, 4, 1, 4);
    let started = Instant::now();
    let e = Drive::new(1).run(&history, &spec(url, &unique("refused"), options)).first().expect("the sink fails");
    (e, started.elapsed())
}

fn ca() -> String {
    env("DSINK_TLS_CA")
}

#[test]
fn tls_delivers_and_reads_back() {
    let url = env("DSINK_NATS_TLS_URL");
    let ca = ca();
    let reader = async_nats::ConnectOptions::new().add_root_certificates(ca.clone().into()).require_tls(true);
    round_trip(&url, &[("ssl.root.cert", &ca)], reader, 1);
}

#[test]
fn an_untrusted_server_certificate_or_host_is_refused_at_once() {
    let url = env("DSINK_NATS_TLS_URL");
    for (url, ca) in [(url.clone(), env("DSINK_TLS_OTHER_CA")), (url.replace("127.0.0.1", "localhost"), ca())] {
        let (e, took) = failure(&url, &[("ssl.root.cert", &ca)]);
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(e.to_string().contains("ssl.root.cert"), "{e}");
        assert!(took < Duration::from_secs(10), "refused after {took:?}");
    }
}

#[test]
fn client_certificate_and_password_log_in_from_options_or_the_url() {
    let url = env("DSINK_NATS_AUTH_URL");
    let password = env("DSINK_NATS_AUTH_PASSWORD");
    let (ca, cert, key) = (ca(), env("DSINK_TLS_CLIENT_CERT"), env("DSINK_TLS_CLIENT_KEY"));
    let reader = || {
        async_nats::ConnectOptions::new()
            .add_root_certificates(ca.clone().into())
            .add_client_certificate(cert.clone().into(), key.clone().into())
            .user_and_password("dsink".into(), password.clone())
    };
    let tls = [("ssl.root.cert", ca.as_str()), ("ssl.cert", cert.as_str()), ("ssl.key", key.as_str())];
    let mut with_options = tls.to_vec();
    with_options.extend([("connect_mode", "user_and_password"), ("username", "dsink"), ("password", &password)]);
    round_trip(&url, &with_options, reader(), 2);
    // `nats://user:password@host`, as the NATS tools take it (the client library ignores it).
    let in_url = url.replace("tls://", &format!("tls://dsink:{password}@"));
    round_trip(&in_url, &tls, reader(), 3);
}

#[test]
fn a_wrong_password_or_no_client_certificate_is_refused_without_the_secret() {
    let url = env("DSINK_NATS_AUTH_URL");
    let (ca, cert, key) = (ca(), env("DSINK_TLS_CLIENT_CERT"), env("DSINK_TLS_CLIENT_KEY"));
    let wrong = "not-the-password-42";
    let (e, took) = failure(
        &url,
        &[
            ("ssl.root.cert", &ca),
            ("ssl.cert", &cert),
            ("ssl.key", &key),
            ("connect_mode", "user_and_password"),
            ("username", "dsink"),
            ("password", wrong),
        ],
    );
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("password") && !format!("{e} {e:?}").contains(wrong), "{e}");
    assert!(took < Duration::from_secs(10), "refused after {took:?}");
    let password = env("DSINK_NATS_AUTH_PASSWORD");
    let (e, took) = failure(
        &url,
        &[
            ("ssl.root.cert", &ca),
            ("connect_mode", "user_and_password"),
            ("username", "dsink"),
            ("password", &password),
        ],
    );
    assert!(!format!("{e} {e:?}").contains(&password), "{e}");
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("ssl.cert"), "{e}");
    assert!(took < Duration::from_secs(10), "refused after {took:?}");
}

#[test]
fn tls_options_are_checked_when_the_sink_is_created() {
    let url = env("DSINK_NATS_TLS_URL");
    let e = SinkSpec::from_options({
        let mut o = Options::parse_pairs(["connector=nats", "type=append-only", "subject=a"]).unwrap();
        o.set("server_url", url.clone());
        o.set("ssl.root.cert", "/nonexistent/ca.pem".to_string());
        o
    })
    .unwrap_err();
    assert!(e.to_string().contains("ssl.root.cert"), "{e}");
    let e = SinkSpec::from_options({
        let mut o = Options::parse_pairs(["connector=nats", "type=append-only", "subject=a"]).unwrap();
        o.set("server_url", url.replace("tls://", "tls://u:p@"));
        o.set("connect_mode", "user_and_password".to_string());
        o.set("username", "u".to_string());
        o.set("password", "p".to_string());
        o
    })
    .unwrap_err();
    assert!(e.to_string().contains("server_url") && e.to_string().contains("connect_mode"), "{e}");
}
