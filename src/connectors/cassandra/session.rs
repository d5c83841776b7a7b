//! The `scylla` driver session: connecting with the configured timeouts and credentials, and
//! what a driver error means for the sink (retriable, or a refusal that stops it at once).

use super::config::CassandraConfig;
use crate::error::{Error, ErrorKind, Result};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};

pub(crate) fn cql_err(what: &str, e: impl std::fmt::Display) -> Error {
    // Driver errors after connecting are mostly timeouts and unavailable replicas: retriable.
    Error::new(ErrorKind::Retriable, format!("{what}: {e}"))
}

/// Whether the server refused the statement itself (syntax, an unknown column, a value of the
/// wrong type, authorization, configuration) or the driver could not serialize it: a retry
/// cannot fix those, so the sink stops at once with the server's message.
fn is_permanent(e: &ExecutionError) -> bool {
    match e {
        ExecutionError::BadQuery(_) => true,
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => matches!(
            db,
            DbError::SyntaxError
                | DbError::Invalid
                | DbError::Unauthorized
                | DbError::ConfigError
                | DbError::AuthenticationError
                | DbError::FunctionFailure { .. }
        ),
        _ => false,
    }
}

pub(crate) fn exec_err(what: &str, e: ExecutionError) -> Error {
    if is_permanent(&e) {
        let text = e.to_string();
        let hint = if text.contains("Batch too large") {
            "; the server's batch_size_fail_threshold is below `cassandra.max_batch_bytes`: lower the option"
        } else {
            ""
        };
        Error::new(ErrorKind::Fatal, format!("{what}: the server refused the statement: {text}{hint}"))
    } else {
        cql_err(what, e)
    }
}

pub(crate) async fn connect(cfg: &CassandraConfig) -> Result<Session> {
    // The timeout bounds every request, not only connecting: the driver's own default is 30 s.
    let profile = ExecutionProfile::builder().request_timeout(Some(cfg.request_timeout)).build();
    let mut b = SessionBuilder::new()
        .known_nodes(&cfg.url)
        .connection_timeout(cfg.request_timeout)
        .default_execution_profile_handle(profile.into_handle());
    if let Some((u, p)) = &cfg.credentials {
        b = b.user(u, p.expose());
    }
    b.build().await.map_err(|e| cql_err(&format!("connecting to Cassandra at {}", cfg.url.join(",")), e))
}
