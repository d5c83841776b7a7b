//! The Kafka connector's librdkafka client plumbing: the settings every client of a sink shares,
//! the producer context that collects delivery reports per commit epoch, and the classification
//! of librdkafka's error codes into the sink's error kinds, each with what to do about it.

use super::config::KafkaConfig;
use crate::error::{Error, ErrorKind};
use crate::options::is_secret_key;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Slots of the delivery-report counters; more than the commits that can be open at once.
pub(super) const EPOCH_SLOTS: usize = 16;

#[derive(Default)]
pub(super) struct DeliveryState {
    pub(super) failed: Mutex<Option<(RDKafkaErrorCode, String)>>,
    /// Delivery reports received per commit epoch (slot = epoch % EPOCH_SLOTS), success or not:
    /// an epoch is acknowledged when this reaches the number of records sent in it.
    pub(super) reported: [AtomicU64; EPOCH_SLOTS],
}

/// Collects delivery failures reported by librdkafka's background thread.
pub struct SinkContext {
    pub(super) state: Arc<DeliveryState>,
}

impl ClientContext for SinkContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(code) = error.rdkafka_error_code() {
            if is_fatal_code(code) {
                let mut f = self.state.failed.lock().expect("delivery state");
                if f.is_none() {
                    *f = Some((code, reason.to_string()));
                }
                return;
            }
        }
        tracing::warn!(error = %error, reason, "kafka client error (librdkafka retries it)");
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, slot: usize) {
        if let Err((e, _)) = result {
            let code = e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
            let mut f = self.state.failed.lock().expect("delivery state");
            if f.is_none() {
                *f = Some((code, e.to_string()));
            }
        }
        // After the failure is recorded: whoever sees the count complete also sees the failure.
        self.state.reported[slot % EPOCH_SLOTS].fetch_add(1, Ordering::AcqRel);
    }
}

fn is_fatal_code(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        Fenced
            | ProducerFenced
            | InvalidProducerEpoch
            | TransactionCoordinatorFenced
            | TopicAuthorizationFailed
            | ClusterAuthorizationFailed
            | TransactionalIdAuthorizationFailed
            | SaslAuthenticationFailed
            | Authentication
            | Fatal
    )
}

/// Maps a librdkafka error code to an error kind and what to do about it.
pub(super) fn classify_code(code: RDKafkaErrorCode, retriable_hint: bool) -> (ErrorKind, &'static str) {
    use RDKafkaErrorCode::*;
    match code {
        Fenced | ProducerFenced | InvalidProducerEpoch | TransactionCoordinatorFenced => (
            ErrorKind::Fenced,
            "another producer with the same transactional id took over (a newer run of this sink, or another sink \
             with the same `transactional.id.prefix`); stop this instance: the newer one continues from the committed progress",
        ),
        TopicAuthorizationFailed
        | ClusterAuthorizationFailed
        | TransactionalIdAuthorizationFailed
        | GroupAuthorizationFailed
        | SaslAuthenticationFailed
        | Authentication => (
            ErrorKind::Fatal,
            "grant the sink's principal WRITE and DESCRIBE on the topic and the progress topic (and on its transactional \
             ids for exactly-once), and check the `properties.security.protocol` / `properties.sasl.*` / `properties.ssl.*` settings",
        ),
        MessageSizeTooLarge | InvalidMessageSize => (
            ErrorKind::Fatal,
            "a record is larger than the broker accepts: raise `properties.message.max.bytes` and the topic's \
             `max.message.bytes` (`topic.config.max.message.bytes` when the sink creates it), or make rows smaller",
        ),
        UnknownTopicOrPartition | UnknownTopic | UnknownPartition => (
            ErrorKind::Fatal,
            "the topic does not exist (or was deleted): create it, or set `topic.create = true`",
        ),
        OperationTimedOut | RequestTimedOut | MessageTimedOut | AllBrokersDown
        | BrokerTransportFailure | NetworkException | NotEnoughReplicas
        | NotEnoughReplicasAfterAppend | LeaderNotAvailable | NotLeaderForPartition
        | CoordinatorLoadInProgress | CoordinatorNotAvailable | NotCoordinator
        | ConcurrentTransactions | QueueFull | TimedOutQueue => (ErrorKind::Retriable, ""),
        _ if retriable_hint => (ErrorKind::Retriable, ""),
        _ => (ErrorKind::Fatal, ""),
    }
}

pub(super) fn classify(e: &KafkaError, what: &str) -> Error {
    let (code, retriable) = match e {
        KafkaError::Transaction(rd) => (rd.code(), rd.is_retriable()),
        other => (other.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail), false),
    };
    let (kind, hint) = classify_code(code, retriable);
    let msg = if hint.is_empty() { format!("{what}: {e}") } else { format!("{what}: {e}; {hint}") };
    Error::new(kind, msg).with_source(e.clone())
}

/// The librdkafka settings shared by every client of a sink.
pub(super) fn base_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.bootstrap);
    c.set("allow.auto.create.topics", "false");
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c
}

pub(super) fn client_error(e: KafkaError, what: &str) -> Error {
    match e {
        KafkaError::ClientConfig(_, ref desc, ref key, ref value) => {
            // librdkafka quotes the refused value in its description: never a secret's.
            let desc = if is_secret_key(key) && !value.is_empty() {
                desc.replace(value.as_str(), "<redacted>")
            } else {
                desc.clone()
            };
            let hint = if desc.contains("GSSAPI") || desc.contains("libsasl2") {
                "; SASL/GSSAPI (Kerberos) needs the `kafka-gssapi` cargo feature"
            } else {
                ""
            };
            Error::config(format!("{what}: librdkafka refused `properties.{key}`: {desc}{hint}"))
        }
        other => Error::config(format!("{what}: {other}")),
    }
}

/// The context of the clients a sink uses while it is created (metadata, topic creation): it
/// keeps the last connection failure librdkafka reports, so that a sink that cannot reach or log
/// in to the brokers is refused with the reason (a certificate not trusted, a login refused)
/// instead of a bare timeout.
#[derive(Default)]
pub(super) struct ProbeContext {
    last: Mutex<Option<(RDKafkaErrorCode, String)>>,
}

impl ClientContext for ProbeContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
        tracing::debug!(error = %error, reason, "kafka client error while creating the sink");
        if let Ok(mut last) = self.last.lock() {
            *last = Some((code, reason.to_string()));
        }
    }
}

impl ProducerContext for ProbeContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

impl ProbeContext {
    /// The last failure, if it cannot pass by retrying: TLS verification or a refused login.
    pub(super) fn permanent_failure(&self, what: &str) -> Option<Error> {
        let last = self.last.lock().ok()?;
        let (code, reason) = last.as_ref()?;
        let tls = *code == RDKafkaErrorCode::SSL || reason.contains("certificate");
        let login = matches!(code, RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed);
        let hint = if tls {
            "check `properties.security.protocol` (SSL or SASL_SSL), `properties.ssl.ca.location` (the CA that signed \
             the brokers' certificates), the host names in `properties.bootstrap.server` against the certificates, and \
             `properties.ssl.certificate.location` / `properties.ssl.key.location` when the brokers require a client certificate"
        } else if login {
            "check `properties.sasl.mechanism` and `properties.sasl.username` / `properties.sasl.password`"
        } else {
            return None;
        };
        Some(Error::new(ErrorKind::Config, format!("{what}: {reason}; {hint}")))
    }

    /// The last failure, whatever it was, to say why a call timed out.
    pub(super) fn last_failure(&self) -> Option<String> {
        self.last.lock().ok()?.as_ref().map(|(_, reason)| reason.clone())
    }
}
