//! Options of the NATS connector (names follow RisingWave's NATS sink where it has them).

use crate::error::{Error, Result};
use crate::options::{Alias, Options};
use crate::secret::Secret;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// RisingWave's names for the options named otherwise here (`server_url`, `subject`,
/// `connect_mode`, `username`, `password`, `jwt`, `nkey` and `stream` are the same in both).
pub(crate) const RISINGWAVE_ALIASES: &[Alias] = &[Alias::same("stream.create", "allow_create_stream")];

/// How the connection authenticates (`connect_mode`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectMode {
    /// No authentication (`plain`).
    Plain,
    /// `username` and `password` (`user_and_password`).
    UserAndPassword {
        /// The user name.
        username: String,
        /// The password (never printed).
        password: Secret,
    },
    /// A user JWT signed with an nkey seed (`credential`).
    Credential {
        /// The user JWT (never printed).
        jwt: Secret,
        /// The nkey seed that signs the server's nonce (never printed).
        nkey: Secret,
    },
}

/// TLS settings (`ssl.*`). A `tls://` server URL, or any of these, makes TLS required; the
/// server's certificate must chain to `root_cert` (or the system's roots) and name its host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatsTls {
    /// PEM file of the CA the server's certificate must chain to (`ssl.root.cert`).
    pub root_cert: Option<PathBuf>,
    /// A client certificate and its key, PEM (`ssl.cert`, `ssl.key`), for servers that verify clients.
    pub client: Option<(PathBuf, PathBuf)>,
    /// Refuse a connection without TLS (`ssl.required`; on when any other `ssl.*` option is set).
    pub required: bool,
}

/// Where progress records are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProgressStore {
    /// In a JetStream stream of this name: one subject per worker and generation, keeping the
    /// last record of each.
    Stream(String),
    /// Nowhere: every run starts from the beginning of the collection.
    None,
}

/// Where and how the NATS connector publishes. Its `Debug` hides credentials in `server_url`
/// (`nats://user:password@host`), and the password, JWT and nkey seed.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// Server URLs, comma separated (`server_url`).
    pub server_url: String,
    /// The subject, or the subject prefix with `subject.key_suffix` (`subject`).
    pub subject: String,
    /// Append the record's key as the last subject token (`subject.key_suffix`).
    pub key_suffix: bool,
    /// Authentication.
    pub connect_mode: ConnectMode,
    /// TLS.
    pub tls: NatsTls,
    /// The JetStream stream to publish into (`stream`); `None` publishes on core NATS.
    pub stream: Option<String>,
    /// Create the stream if it does not exist (`stream.create`).
    pub create_stream: bool,
    /// The duplicate window of a stream the sink creates (`stream.duplicate_window.ms`).
    pub duplicate_window: Duration,
    /// Where committed frontiers are kept (`progress.stream`, `progress = none`).
    pub progress: ProgressStore,
    /// Publishes awaiting their ack at most (`jetstream.max_inflight`).
    pub max_inflight: usize,
    /// How long one publish ack or request may take (`request.timeout.ms`).
    pub timeout: Duration,
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConfig")
            .field("server_url", &crate::secret::redact_url(&self.server_url))
            .field("subject", &self.subject)
            .field("key_suffix", &self.key_suffix)
            .field("connect_mode", &self.connect_mode)
            .field("tls", &self.tls)
            .field("stream", &self.stream)
            .field("create_stream", &self.create_stream)
            .field("duplicate_window", &self.duplicate_window)
            .field("progress", &self.progress)
            .field("max_inflight", &self.max_inflight)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl NatsConfig {
    /// Publishes to `subject` on `server_url`, core NATS, no authentication.
    pub fn new(server_url: impl Into<String>, subject: impl Into<String>) -> Self {
        NatsConfig {
            server_url: server_url.into(),
            subject: subject.into(),
            key_suffix: false,
            connect_mode: ConnectMode::Plain,
            tls: NatsTls::default(),
            stream: None,
            create_stream: false,
            duplicate_window: Duration::from_secs(120),
            progress: ProgressStore::None,
            max_inflight: 8192,
            timeout: Duration::from_secs(10),
        }
    }

    /// Publishes through JetStream into `stream` (deduplicated by `Nats-Msg-Id`), keeping
    /// progress in the default progress stream `dsink_progress`.
    pub fn jetstream(mut self, stream: impl Into<String>) -> Self {
        self.stream = Some(stream.into());
        if self.progress == ProgressStore::None {
            self.progress = ProgressStore::Stream(DEFAULT_PROGRESS_STREAM.into());
        }
        self
    }

    /// Creates the stream (with this duplicate window) if it does not exist.
    pub fn create_stream(mut self, duplicate_window: Duration) -> Self {
        self.create_stream = true;
        self.duplicate_window = duplicate_window;
        self
    }

    /// Appends the record's key to the subject.
    pub fn key_suffix(mut self, on: bool) -> Self {
        self.key_suffix = on;
        self
    }

    /// TLS settings.
    pub fn tls(mut self, tls: NatsTls) -> Self {
        self.tls = tls;
        self
    }

    /// Where progress is kept.
    pub fn progress(mut self, store: ProgressStore) -> Self {
        self.progress = store;
        self
    }

    pub(crate) fn parse(opts: &mut Options) -> Result<Self> {
        opts.resolve_aliases(RISINGWAVE_ALIASES)?;
        let server_url = opts.require("server_url", "the NATS server, e.g. server_url=nats://127.0.0.1:4222")?;
        let subject = opts.require("subject", "the subject to publish to, e.g. subject=orders")?;
        let mut c = NatsConfig::new(server_url, subject);
        c.key_suffix = opts.take_bool("subject.key_suffix")?.unwrap_or(false);
        let mode = opts.take("connect_mode").unwrap_or_else(|| "plain".into());
        let (user, pass, jwt, nkey) =
            (opts.take("username"), opts.take("password"), opts.take("jwt"), opts.take("nkey"));
        c.connect_mode = match mode.as_str() {
            "plain" => {
                if user.is_some() || pass.is_some() || jwt.is_some() || nkey.is_some() {
                    return Err(Error::config(
                        "options `username`/`password`/`jwt`/`nkey` need `connect_mode = user_and_password` or `credential`",
                    ));
                }
                ConnectMode::Plain
            }
            "user_and_password" => match (user, pass) {
                (Some(username), Some(password)) => {
                    ConnectMode::UserAndPassword { username, password: Secret::new(password) }
                }
                _ => {
                    return Err(Error::config(
                        "`connect_mode = user_and_password` needs both `username` and `password`",
                    ))
                }
            },
            "credential" => match (jwt, nkey) {
                (Some(jwt), Some(nkey)) => ConnectMode::Credential { jwt: Secret::new(jwt), nkey: Secret::new(nkey) },
                _ => return Err(Error::config("`connect_mode = credential` needs both `jwt` and `nkey` (the seed)")),
            },
            other => {
                return Err(Error::config(format!(
                    "option `connect_mode` = `{other}`: use plain, user_and_password or credential"
                )))
            }
        };
        let root_cert = opts.take("ssl.root.cert");
        let client = match (opts.take("ssl.cert"), opts.take("ssl.key")) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (None, None) => None,
            _ => return Err(Error::config("options `ssl.cert` and `ssl.key` go together: give both or neither")),
        };
        let required = opts.take_bool("ssl.required")?;
        c.tls = NatsTls {
            required: required.unwrap_or(root_cert.is_some() || client.is_some()),
            root_cert: root_cert.map(PathBuf::from),
            client,
        };
        c.stream = opts.take("stream").filter(|s| !s.is_empty());
        c.create_stream = opts.take_bool("stream.create")?.unwrap_or(false);
        if let Some(ms) = opts.take_parsed::<u64>("stream.duplicate_window.ms", "milliseconds")? {
            c.duplicate_window = Duration::from_millis(ms);
        }
        let progress_stream = opts.take("progress.stream");
        c.progress = match (opts.take("progress").as_deref(), progress_stream, &c.stream) {
            (Some("none"), None, _) => ProgressStore::None,
            (Some("none"), Some(_), _) => {
                return Err(Error::config("`progress = none` and `progress.stream` contradict: remove one"))
            }
            (None | Some("stream"), Some(b), _) => ProgressStore::Stream(b),
            (None | Some("stream"), None, Some(_)) | (Some("stream"), None, None) => {
                ProgressStore::Stream(DEFAULT_PROGRESS_STREAM.into())
            }
            (None, None, None) => ProgressStore::None,
            (Some(other), _, _) => {
                return Err(Error::config(format!("option `progress` = `{other}`: use stream or none")))
            }
        };
        if let Some(n) = opts.take_parsed::<usize>("jetstream.max_inflight", "a count of publishes")? {
            c.max_inflight = n.max(1);
        }
        if let Some(ms) = opts.take_parsed::<u64>("request.timeout.ms", "milliseconds")? {
            c.timeout = Duration::from_millis(ms.max(1));
        }
        c.check()?;
        Ok(c)
    }

    /// The user name and password in the first server URL that has them (`nats://user:pw@host`),
    /// percent-decoded: the NATS client ignores a URL's credentials, so the sink logs in with them.
    pub(crate) fn url_credentials(&self) -> Option<(String, Secret)> {
        self.server_url.split(',').find_map(|u| {
            let (_, credentials) = crate::secret::split_userinfo(u.trim());
            credentials.map(|(user, password)| (user, password.unwrap_or_else(|| Secret::new(""))))
        })
    }

    /// The rustls configuration of the connection: roots from `ssl.root.cert` or the system's
    /// store, and the client certificate of `ssl.cert` / `ssl.key`.
    pub(crate) fn tls_config(&self) -> Result<std::sync::Arc<rustls::ClientConfig>> {
        use crate::tls::Named;
        crate::tls::client_config(
            self.tls.root_cert.as_deref().map(|path| Named { path, option: "ssl.root.cert" }),
            self.tls
                .client
                .as_ref()
                .map(|(cert, key)| (Named { path: cert, option: "ssl.cert" }, Named { path: key, option: "ssl.key" })),
            "set `ssl.root.cert` to the PEM file of the CA that signed the NATS server's certificate",
        )
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.url_credentials().is_some() && self.connect_mode != ConnectMode::Plain {
            return Err(Error::config(
                "option `server_url` carries a user and password and `connect_mode` names other credentials: \
                 remove one of them",
            ));
        }
        if self.tls.root_cert.is_some() || self.tls.client.is_some() {
            self.tls_config()?;
        }
        if self.subject.is_empty()
            || self.subject.split('.').any(|t| t.is_empty() || t.contains(|c: char| c.is_whitespace()))
            || self.subject.contains(['*', '>'])
        {
            return Err(Error::config(format!(
                "option `subject` = `{}` is not a subject to publish to: use dot-separated tokens without spaces or wildcards",
                self.subject
            )));
        }
        if self.create_stream && self.stream.is_none() {
            return Err(Error::config("option `stream.create` needs `stream` (the JetStream stream's name)"));
        }
        if let Some(s) = &self.stream {
            if s.contains(['.', '*', '>', ' ', '/', '\\']) {
                return Err(Error::config(format!(
                    "option `stream` = `{s}` is not a valid JetStream stream name (no `.`, `*`, `>`, spaces or slashes)"
                )));
            }
        }
        if let ProgressStore::Stream(b) = &self.progress {
            if b.is_empty() || !b.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return Err(Error::config(format!(
                    "option `progress.stream` = `{b}` is not a valid stream name (letters, digits, `_`, `-`)"
                )));
            }
        }
        Ok(())
    }
}

impl From<NatsConfig> for crate::connectors::ConnectorConfig {
    fn from(c: NatsConfig) -> Self {
        crate::connectors::ConnectorConfig::Nats(Box::new(c))
    }
}

/// The JetStream stream that holds progress records unless `progress.stream` names another.
pub const DEFAULT_PROGRESS_STREAM: &str = "dsink_progress";

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[&str]) -> Result<NatsConfig> {
        let mut o = Options::parse_pairs(pairs.iter().copied()).unwrap();
        NatsConfig::parse(&mut o)
    }

    #[test]
    fn modes_and_secrets() {
        let c = parse(&[
            "server_url=nats://h:1",
            "subject=a.b",
            "connect_mode=user_and_password",
            "username=u",
            "password=hunter2",
        ])
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        let c = parse(&["server_url=nats://ann:pw1@h:1,nats://h2:1", "subject=a"]).unwrap();
        assert!(format!("{c:?}").contains("nats://***@h:1,nats://h2:1"), "{c:?}");
        let e = parse(&["server_url=nats://h:1", "subject=a", "connect_mode=credential", "jwt=x"]).unwrap_err();
        assert!(e.to_string().contains("nkey"), "{e}");
        let e = parse(&["server_url=nats://h:1", "subject=a", "password=p"]).unwrap_err();
        assert!(e.to_string().contains("connect_mode"), "{e}");
    }

    #[test]
    fn jetstream_defaults_to_a_progress_stream() {
        let c = parse(&["server_url=nats://h:1", "subject=a", "stream=S"]).unwrap();
        assert_eq!(c.progress, ProgressStore::Stream(DEFAULT_PROGRESS_STREAM.into()));
        let c = parse(&["server_url=nats://h:1", "subject=a"]).unwrap();
        assert_eq!(c.progress, ProgressStore::None);
        assert!(parse(&["server_url=nats://h:1", "subject=a.*"]).is_err());
        assert!(parse(&["server_url=nats://h:1", "subject=a", "stream.create=true"]).is_err());
    }

    #[test]
    fn risingwave_allow_create_stream_is_stream_create() {
        let base = ["server_url=nats://h:1", "subject=a", "stream=S"];
        let with = |extra: &[&str]| parse(&[&base[..], extra].concat());
        let theirs = with(&["allow_create_stream=true"]).unwrap();
        assert!(theirs.create_stream);
        assert_eq!(theirs, with(&["stream.create=true"]).unwrap());
        assert!(!with(&["allow_create_stream=false"]).unwrap().create_stream);
        assert_eq!(with(&["allow_create_stream=true", "stream.create=true"]).unwrap(), theirs);
        let e = with(&["allow_create_stream=true", "stream.create=false"]).unwrap_err().to_string();
        assert!(e.contains("`stream.create`") && e.contains("`allow_create_stream`"), "{e}");
        let e = with(&["allow_create_stream=yes"]).unwrap_err().to_string();
        assert!(e.contains("(given as `allow_create_stream`) = `yes`"), "{e}");
    }
}
