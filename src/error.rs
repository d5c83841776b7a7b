//! One error type for every sink, with kinds a caller can match on.
//!
//! Configuration errors are raised when a sink is created and name the option and the fix.
//! Transport errors say whether a retry may help; the delivery layer retries the retriable ones
//! with backoff and stops the sink on the others. Messages never contain secrets.

use differential_sinks_operators::OperatorError;
use std::fmt;

/// What kind of failure an [`Error`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An option is missing, unknown, malformed or contradicts another; raised at creation.
    Config,
    /// The rows do not fit the target's schema or primary key; raised at creation where possible.
    Schema,
    /// A key's updates at one time were not one insert, update or delete.
    KeyViolation,
    /// An append-only sink received a retraction without `force_append_only`.
    AppendOnly,
    /// A row or key could not be encoded.
    Encode,
    /// The target could not be reached or refused for now; a retry may succeed.
    Retriable,
    /// The target refused in a way a retry will not fix (authorization, size limits, constraints).
    Fatal,
    /// Another writer with the same identity took over (a zombie was fenced, or we were).
    Fenced,
    /// The progress recorded in the target cannot be resumed from.
    Resume,
    /// Local I/O failed.
    Io,
}

/// A sink error: a kind, a message that says what happened and what to do, and a source.
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), source: None }
    }
    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
    /// A configuration error.
    pub fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, message)
    }
    /// A schema error.
    pub fn schema(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Schema, message)
    }
    /// An encoding error.
    pub fn encode(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Encode, message)
    }
    /// A local I/O error, with what was being done.
    pub fn io(context: impl Into<String>, e: std::io::Error) -> Self {
        Error::new(ErrorKind::Io, format!("{}: {e}", context.into())).with_source(e)
    }
    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The message (without the source).
    pub fn message(&self) -> &str {
        &self.message
    }
    /// True if retrying the same operation may succeed.
    pub fn is_retriable(&self) -> bool {
        self.kind == ErrorKind::Retriable
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(s) = &self.source {
            let s = s.to_string();
            if !self.message.contains(&s) {
                write!(f, " (caused by: {s})")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error {{ kind: {:?}, message: {:?} }}", self.kind, self.to_string())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

impl From<OperatorError> for Error {
    fn from(e: OperatorError) -> Self {
        let kind = match &e {
            OperatorError::KeyViolation { .. } => ErrorKind::KeyViolation,
            OperatorError::ResumeGap { .. } | OperatorError::ResumeConflict { .. } => ErrorKind::Resume,
            // The spill directory (`buffer.spill.dir`) could not be written or read back.
            OperatorError::Spill { .. } => ErrorKind::Io,
            // The failing worker reports its own error and kind; here the sink only stopped.
            OperatorError::PeerFailed { .. } => ErrorKind::Fatal,
        };
        Error::new(kind, e.to_string())
    }
}
