//! The Kafka sink against secured brokers and with compression, over the real broker (tansu,
//! started by `scripts/services start kafka`), read back with a plain rdkafka consumer speaking
//! the same security protocol and compared with the reference model of `tests/common`.
//!
//! tansu 0.6.0 cannot serve TLS itself, so the services script puts stunnel in front of three more
//! brokers (see `scripts/services.d/kafka.sh`), with the test CA's certificates, valid for the IP
//! address 127.0.0.1 only:
//! - `DSINK_KAFKA_TLS_BOOTSTRAP`: TLS with a server certificate (`security.protocol = SSL`);
//! - `DSINK_KAFKA_MTLS_BOOTSTRAP`: TLS that requires a client certificate;
//! - `DSINK_KAFKA_SASL_BOOTSTRAP`: TLS in front of a broker that requires SASL. tansu offers
//!   SCRAM-SHA-256/512 there, but its in-memory storage keeps no SCRAM credentials (every login is
//!   answered `unknown-user`), so what can be verified is that the sink negotiates SCRAM over TLS
//!   and that a refused login stops it with a clear authentication error and no secret in it.
//!
//! Every test panics when its variable is missing.

mod common;
mod drive;
#[path = "support/kafka_read.rs"]
mod kafka_read;

use common::{expected_changes, key_of, keyed_history, row_of, state_before, Row};
use differential_sinks::{ErrorKind, Options, SinkSpec};
use drive::{Drive, Pace};
use rdkafka::message::Message;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn env(var: &str) -> String {
    common::service_env(var, "kafka")
}

fn unique(prefix: &str) -> String {
    common::unique_name(prefix, '-')
}

/// The test CA's files.
struct Tls {
    ca: String,
    other_ca: String,
    cert: String,
    key: String,
}

fn tls() -> Tls {
    Tls {
        ca: common::service_env("DSINK_TLS_CA", "kafka"),
        other_ca: common::service_env("DSINK_TLS_OTHER_CA", "kafka"),
        cert: common::service_env("DSINK_TLS_CLIENT_CERT", "kafka"),
        key: common::service_env("DSINK_TLS_CLIENT_KEY", "kafka"),
    }
}

/// An upsert spec on `topic` (created with 2 partitions) with the librdkafka `settings`, given as
/// the sink's `properties.*` options, the way a `CREATE SINK … WITH (…)` names them.
fn spec(bootstrap: &str, topic: &str, settings: &[(&str, &str)]) -> SinkSpec {
    let mut pairs = vec![
        "connector=kafka".to_string(),
        "sink.name=secured".into(),
        format!("topic={topic}"),
        format!("properties.bootstrap.server={bootstrap}"),
        "topic.create=true".into(),
        "topic.partitions=2".into(),
        "type=upsert".into(),
        "primary_key=k".into(),
        "kafka.timeout.ms=10000".into(),
        "retry.deadline.ms=10000".into(),
    ];
    pairs.extend(settings.iter().map(|(k, v)| format!("properties.{k}={v}")));
    SinkSpec::from_options(Options::parse_pairs(pairs).expect("options")).expect("options accepted")
}

/// Runs a keyed history through the sink on 2 workers and checks what a consumer with the same
/// `settings` reads back: each change once, compacting to the final state.
fn round_trip(bootstrap: &str, settings: &[(&str, &str)], seed: u64) {
    let history = keyed_history(seed, 30, 5, 20);
    let topic = unique("secured");
    let spec = spec(bootstrap, &topic, settings);
    if let Some(e) = Drive::new(2).pace(Pace::Unflushed).run(&history, &spec).first() {
        panic!("the sink failed: {e}");
    }
    let consumer = kafka_read::secured_reader(bootstrap, &unique("reader"), "read_committed", settings);
    let parts = kafka_read::partitions(&consumer, &topic);
    let records = kafka_read::read_to_end(&consumer, &topic, &parts, Instant::now() + Duration::from_secs(60), |m| {
        (key_of(m.key().expect("upsert records have keys")), m.payload().map(row_of))
    });
    assert_eq!(records.len(), expected_changes(&history).len(), "each change once");
    let mut state: BTreeMap<u32, Row> = BTreeMap::new();
    for (k, row) in records {
        match row {
            Some(r) => state.insert(k, r),
            None => state.remove(&k),
        };
    }
    assert_eq!(state, state_before(&history, u64::MAX));
}

/// The error the sink's creation stops with.
fn failure(bootstrap: &str, settings: &[(&str, &str)]) -> differential_sinks::Error {
    let spec = spec(bootstrap, &unique("refused"), settings);
    drive::build::<Row>(&spec).expect_err("the sink is refused")
}

#[test]
fn tls_delivers_and_reads_back() {
    let t = tls();
    round_trip(&env("DSINK_KAFKA_TLS_BOOTSTRAP"), &[("security.protocol", "SSL"), ("ssl.ca.location", &t.ca)], 1);
}

#[test]
fn a_broker_certificate_the_ca_did_not_sign_is_refused_naming_the_options() {
    let t = tls();
    let started = Instant::now();
    let e =
        failure(&env("DSINK_KAFKA_TLS_BOOTSTRAP"), &[("security.protocol", "SSL"), ("ssl.ca.location", &t.other_ca)]);
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    let text = e.to_string();
    assert!(text.contains("certificate") && text.contains("properties.ssl.ca.location"), "{text}");
    // Refused when librdkafka reports it, not after the timeouts and retries.
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[test]
fn a_host_name_the_certificate_does_not_name_is_refused() {
    // The broker's certificate names the IP address 127.0.0.1 only.
    let t = tls();
    let bootstrap = env("DSINK_KAFKA_TLS_BOOTSTRAP").replace("127.0.0.1", "localhost");
    let e = failure(&bootstrap, &[("security.protocol", "SSL"), ("ssl.ca.location", &t.ca)]);
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("certificate"), "{e}");
}

#[test]
fn mutual_tls_delivers_with_the_client_certificate_and_is_refused_without() {
    let t = tls();
    let bootstrap = env("DSINK_KAFKA_MTLS_BOOTSTRAP");
    round_trip(
        &bootstrap,
        &[
            ("security.protocol", "SSL"),
            ("ssl.ca.location", &t.ca),
            ("ssl.certificate.location", &t.cert),
            ("ssl.key.location", &t.key),
        ],
        2,
    );
    let e = failure(&bootstrap, &[("security.protocol", "SSL"), ("ssl.ca.location", &t.ca)]);
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("properties.ssl.certificate.location"), "{e}");
}

#[test]
fn sasl_scram_over_tls_reaches_the_broker_and_a_refused_login_stops_the_sink_without_the_password() {
    let t = tls();
    for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256"] {
        let password = "correct-horse-battery";
        let e = failure(
            &env("DSINK_KAFKA_SASL_BOOTSTRAP"),
            &[
                ("security.protocol", "SASL_SSL"),
                ("ssl.ca.location", &t.ca),
                ("sasl.mechanism", mechanism),
                ("sasl.username", "dsink"),
                ("sasl.password", password),
            ],
        );
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        let text = format!("{e} {e:?}");
        assert!(text.contains("SASL") && text.contains("properties.sasl.username"), "{text}");
        assert!(!text.contains(password), "{text}");
    }
}

#[test]
fn lz4_and_zstd_batches_are_produced_and_read_back() {
    let bootstrap = env("DSINK_KAFKA_BOOTSTRAP");
    for (seed, codec) in [(3, "lz4"), (4, "zstd"), (5, "gzip"), (6, "snappy")] {
        round_trip(&bootstrap, &[("compression.type", codec)], seed);
    }
    // Unused here, but the shared reader stays one function.
    let _ = kafka_read::reader;
}
