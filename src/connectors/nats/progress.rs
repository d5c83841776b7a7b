//! Where the NATS connector records progress: a JetStream stream (`progress.stream`, default
//! `dsink_progress`) holding one subject per sink, target, generation and worker,
//! `<progress stream>.<sink>.<data stream/subject>.g<gen>.w<worker>`, of which the stream keeps
//! the last message. A commit publishes the worker's [`WorkerProgress`] there once every record
//! before it is acknowledged; a resume lists the sink's subjects and reads the last record of
//! each.

use super::config::NatsConfig;
use crate::delivery::{retry::retry, RetryPolicy};
use crate::error::{Error, ErrorKind, Result};
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use differential_sinks_operators::WorkerProgress;
use futures::StreamExt;

/// A sink's subjects in the progress stream.
pub(super) struct ProgressStream {
    stream: stream::Stream,
    /// `<stream>.<sink>.<target>`: the subjects of this sink's records start with it.
    prefix: String,
}

fn retriable(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Retriable, format!("NATS: {what}: {e}"))
}

impl ProgressStream {
    /// Opens (creating if needed) the progress stream `name` for sink `sink` writing where
    /// `config` says.
    pub(super) async fn open(js: &jetstream::Context, name: &str, sink: &str, config: &NatsConfig) -> Result<Self> {
        Ok(ProgressStream { stream: open_stream(js, name).await?, prefix: progress_prefix(name, sink, config) })
    }

    /// This sink's records: the latest of each worker and generation.
    pub(super) async fn read(&self) -> Result<Vec<WorkerProgress<u64>>> {
        let (stream, prefix) = (&self.stream, &self.prefix);
        let mut subjects = stream
            .info_with_subjects(format!("{prefix}.>"))
            .await
            .map_err(|e| retriable("listing progress records", e))?;
        let mut names = Vec::new();
        while let Some(s) = subjects.next().await {
            names.push(s.map_err(|e| retriable("listing progress records", e))?.0);
        }
        let mut records = Vec::new();
        for subject in names {
            let m =
                stream.get_last_raw_message_by_subject(&subject).await.map_err(|e| retriable("reading progress", e))?;
            let rec: WorkerProgress<u64> = serde_json::from_slice(&m.payload).map_err(|e| {
                Error::new(
                    ErrorKind::Resume,
                    format!("NATS: progress record `{subject}` is damaged ({e}); purge that subject to start over"),
                )
            })?;
            records.push(rec);
        }
        Ok(records)
    }

    /// Publishes `rec` as its worker's latest record, retrying until the stream acknowledges it.
    pub(super) async fn record(&self, js: &jetstream::Context, rec: &WorkerProgress<u64>) -> Result<()> {
        let subject = format!("{}.g{}.w{}", self.prefix, rec.generation, rec.worker);
        let bytes = Bytes::from(
            serde_json::to_vec(rec).map_err(|e| Error::new(ErrorKind::Fatal, format!("encoding progress: {e}")))?,
        );
        retry(&RetryPolicy::default(), "NATS progress record", || {
            let (subject, bytes) = (subject.clone(), bytes.clone());
            async move {
                js.publish(subject, bytes)
                    .await
                    .map_err(|e| retriable("recording progress", e))?
                    .await
                    .map_err(|e| retriable("recording progress", e))
            }
        })
        .await?;
        Ok(())
    }
}

/// The subject prefix of one sink's progress records in the progress stream `stream`:
/// `<stream>.<sink>.<target>`, the target being the data stream and subject, so that two sinks
/// of one name that publish elsewhere never read each other's progress.
fn progress_prefix(stream: &str, sink: &str, config: &NatsConfig) -> String {
    let target = format!("{}/{}", config.stream.as_deref().unwrap_or(""), config.subject);
    format!("{stream}.{}.{}", name_token(sink), name_token(&target))
}

/// Opens (creating if needed) the stream of progress records: subjects `<name>.>`, the last
/// message of each subject kept.
async fn open_stream(js: &jetstream::Context, name: &str) -> Result<stream::Stream> {
    let cfg = stream::Config {
        name: name.to_string(),
        subjects: vec![format!("{name}.>")],
        max_messages_per_subject: 1,
        ..Default::default()
    };
    js.get_or_create_stream(cfg).await.map_err(|e| retriable(&format!("opening progress stream `{name}`"), e))
}

/// Escapes a sink name into one subject token (`[-_=a-zA-Z0-9]`).
fn name_token(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_one_subject_token() {
        assert_eq!(name_token("a.b c"), "a=2eb=20c");
    }
}
