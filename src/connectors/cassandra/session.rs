//! The `scylla` driver session: connecting with the configured timeouts, credentials and local
//! datacenter, and what a driver error means for the sink (retriable, or a refusal that stops it
//! at once).
//!
//! With `cassandra.datacenter`, the session's load-balancing policy is the driver's default
//! policy preferring that datacenter without failover, so requests go only to its nodes; a
//! cluster none of whose nodes is in it is refused once connected, since every request would
//! find no node to go to.

use super::config::CassandraConfig;
use crate::error::{Error, ErrorKind, Result};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::policies::load_balancing::DefaultPolicy;
use std::collections::BTreeSet;

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
    let mut profile = ExecutionProfile::builder().request_timeout(Some(cfg.request_timeout));
    if let Some(dc) = &cfg.datacenter {
        profile = profile.load_balancing_policy(
            DefaultPolicy::builder().prefer_datacenter(dc.clone()).permit_dc_failover(false).build(),
        );
    }
    let profile = profile.build();
    let mut b = SessionBuilder::new()
        .known_nodes(&cfg.url)
        .connection_timeout(cfg.request_timeout)
        .default_execution_profile_handle(profile.into_handle());
    if let Some((u, p)) = &cfg.credentials {
        b = b.user(u, p.expose());
    }
    let session =
        b.build().await.map_err(|e| cql_err(&format!("connecting to Cassandra at {}", cfg.url.join(",")), e))?;
    if let Some(dc) = &cfg.datacenter {
        let state = session.get_cluster_state();
        let known: BTreeSet<&str> = state.get_nodes_info().iter().filter_map(|n| n.datacenter.as_deref()).collect();
        if !known.contains(dc.as_str()) {
            let known = if known.is_empty() {
                "none (the nodes report no datacenter)".to_string()
            } else {
                known.into_iter().collect::<Vec<_>>().join(", ")
            };
            return Err(Error::config(format!(
                "option `cassandra.datacenter` = `{dc}`: no node of the cluster at {} is in it (its datacenters: \
                 {known}); name one of those, or remove the option to use every node",
                cfg.url.join(",")
            )));
        }
    }
    Ok(session)
}
