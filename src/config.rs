//! Settings: `config.toml` → typed tree → each component its own section.
//!
//! Layers, lowest first: built-in defaults, the config file, the environment, then the command
//! line. Every key can be set from the environment as `INVIGIL_<SECTION>__<KEY>` (for example
//! `INVIGIL_HEARTBEAT__INTERVAL_MS=5000`); the secrets also have the short forms
//! `INVIGIL_JWT_SECRET` and `INVIGIL_API_KEY`, which win over everything but the command line.
//! Nothing outside this module reads the environment.

use std::{fmt, net::SocketAddr, path::Path, time::Duration};

use serde::Deserialize;

/// A string that never prints: `Debug` and `Display` show `[redacted]`.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The whole settings tree, as `config.toml` lays it out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub auth: AuthSettings,
    pub heartbeat: HeartbeatSettings,
    pub limits: LimitSettings,
    pub redis: RedisSettings,
    pub records: RecordSettings,
    pub dynamodb: DynamoSettings,
    pub log: LogSettings,
}

/// Where and how the HTTP server listens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on; port 0 picks a free port.
    pub bind: SocketAddr,
    /// Name of this instance in logs, metrics and `welcome`; empty means generated.
    pub instance_id: String,
    /// Worker threads for sockets; 0 means one per core.
    pub workers: usize,
    /// On a drain, how long `/readyz` answers 503 before sockets are closed, so the load
    /// balancer stops sending clients here first.
    pub drain_delay_ms: u64,
    /// How long a drain waits for sockets to close before the process exits.
    pub drain_timeout_ms: u64,
    /// In a cluster, how long a drained instance keeps its students' claims after closing
    /// their sockets, so those who reconnect elsewhere meanwhile are never shown offline;
    /// the others are reported offline (`instance_lost`) after it.
    pub drain_handover_ms: u64,
    /// PEM certificate chain and private key for TLS when the server faces clients directly
    /// (both empty: plain HTTP behind a TLS-terminating load balancer).
    pub tls_cert_file: String,
    pub tls_key_file: String,
    /// Browser origins (`https://lms.example.edu`) allowed to open sockets and call the API;
    /// empty allows any. Requests without an `Origin` header (not from a browser) pass.
    pub allowed_origins: Vec<String>,
    /// Addresses of the load balancers whose `X-Forwarded-For` is believed (IPs or CIDR
    /// ranges); empty believes none and uses the peer address.
    pub trusted_proxies: Vec<String>,
}

/// Who may connect and call the API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// HS256 secret shared with the LMS; empty means a random one for this run.
    pub jwt_secret: Secret,
    /// Key for the LMS backend on the HTTP API; empty disables API-key access.
    pub api_key: Secret,
    /// Credential `/metrics` asks for (`Authorization: Bearer`); empty leaves it open, for
    /// deployments that keep it off the public network.
    pub metrics_token: Secret,
    /// Seconds of clock skew tolerated on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// When set, tokens must carry this `aud`.
    pub audience: String,
    /// When set, tokens must carry this `iss`.
    pub issuer: String,
    /// The secret before a rotation, still accepted until `previous_jwt_secret_until`.
    pub previous_jwt_secret: Secret,
    /// Seconds since the epoch after which the previous secret is refused; 0 = while set.
    pub previous_jwt_secret_until: u64,
}

/// Server pings and the silence after which a client counts as gone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatSettings {
    /// Interval between server ping frames, announced in `welcome` as `heartbeat_ms`.
    pub interval_ms: u64,
    /// A client silent for this long is closed (a student is reported offline, `timeout`).
    pub timeout_ms: u64,
}

impl HeartbeatSettings {
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// What one connection may do before it is refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Largest message a client may send; a larger frame closes the socket with 1009.
    pub max_message_bytes: usize,
    /// Sustained messages per second per connection.
    pub messages_per_second: f64,
    /// Burst allowed above the sustained rate.
    pub message_burst: f64,
    /// Refused messages in a row (rate-limited or invalid) before the socket is closed (4008).
    pub max_strikes: u32,
    /// Quizzes one proctor socket may watch at once.
    pub max_subscriptions: usize,
    /// Frames waiting for a slow socket before it is closed (1013); statuses of the same
    /// attempt replace each other while waiting, so this counts distinct frames.
    pub outbox_frames: usize,
    /// Bytes waiting for a slow socket before it is closed (1013); one frame larger than this
    /// (a big snapshot) still goes to a socket with nothing waiting.
    pub outbox_bytes: usize,
    /// Sockets one instance holds at most; past it upgrades get 503 (0 = no limit).
    pub max_connections: usize,
    /// Sockets from one client address at most; past it upgrades get 429 (0 = no limit).
    pub max_connections_per_ip: usize,
    /// WebSocket handshakes per second an instance accepts (sustained and burst); past it
    /// upgrades get 429 (0 = no limit).
    pub handshakes_per_second: f64,
}

/// The Redis bridge for running several instances as one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://` or `rediss://` URL (with a password if Redis needs one); empty runs a single
    /// node.
    pub url: Secret,
    /// PEM file of the certificate authority that signed Redis's TLS certificate, for a
    /// private CA; empty trusts the usual public roots (as ElastiCache needs).
    pub tls_ca_file: String,
    /// Prefix of every key and channel, so several clusters can share one Redis.
    pub key_prefix: String,
    /// How often an instance renews its liveness key and looks for lost instances.
    pub liveness_interval_ms: u64,
    /// Lifetime of an instance's liveness key: an instance silent this long is lost, and its
    /// students are reported offline (`instance_lost`).
    pub liveness_ttl_ms: u64,
    /// How long a quiz's latest statuses stay in Redis after its last update.
    pub status_ttl_secs: u64,
    /// Operations waiting for Redis before further cross-instance messages are dropped.
    pub max_pending: usize,
}

/// The records of each exam: attempts and the event log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSettings {
    /// `sqlite://PATH` (the embedded default) or `postgres://...`; empty keeps no records.
    pub url: Secret,
    /// Events waiting in memory for the database before they go to the spool file.
    pub queue_size: usize,
    /// Events written per transaction.
    pub batch_size: usize,
    /// Writes start at most this often (group commit): what arrives meanwhile goes in the
    /// next transaction, unless a full batch is waiting. The journal keeps it safe meanwhile.
    pub write_interval_ms: u64,
    /// The spool file: events past the queue's bound wait here, on disk.
    pub spool_path: String,
    /// A progress-only status of an attempt is written at most this often; a change of
    /// `user_status` or `connected` is written at once.
    pub status_interval_ms: u64,
}

/// The latest statuses in DynamoDB (production).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamoSettings {
    /// Table name; empty keeps the durable statuses in the record database instead.
    pub table: String,
    pub region: String,
    /// Endpoint URL for a DynamoDB-compatible service; empty uses AWS's for the region.
    pub endpoint: String,
    /// A progress-only status of an attempt is written at most this often; a change of
    /// `user_status` or `connected` is written at once.
    pub write_interval_ms: u64,
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `env_logger` filter, such as `info` or `invigil=debug`; `RUST_LOG` wins when set.
    pub level: String,
}

/// The defaults, the same as the commented `config.toml` at the repository root.
const DEFAULTS: &str = r#"
[server]
bind = "127.0.0.1:8080"
instance_id = ""
workers = 0
drain_delay_ms = 0
drain_timeout_ms = 10000
drain_handover_ms = 5000
tls_cert_file = ""
tls_key_file = ""
allowed_origins = []
trusted_proxies = []

[auth]
jwt_secret = ""
api_key = ""
metrics_token = ""
leeway_secs = 30
audience = ""
issuer = ""
previous_jwt_secret = ""
previous_jwt_secret_until = 0

[heartbeat]
interval_ms = 15000
timeout_ms = 30000

[limits]
max_message_bytes = 65536
messages_per_second = 10.0
message_burst = 20.0
max_strikes = 10
max_subscriptions = 100
outbox_frames = 4096
outbox_bytes = 8388608
max_connections = 19000
max_connections_per_ip = 0
handshakes_per_second = 2000.0

[redis]
url = ""
tls_ca_file = ""
key_prefix = "invigil"
liveness_interval_ms = 1000
liveness_ttl_ms = 10000
status_ttl_secs = 86400
max_pending = 100000

[records]
url = "sqlite://invigil-data/records.db"
queue_size = 50000
batch_size = 500
write_interval_ms = 100
spool_path = "invigil-data/spool.jsonl"
status_interval_ms = 30000

[dynamodb]
table = ""
region = "us-east-1"
endpoint = ""
write_interval_ms = 30000

[log]
level = "info"
"#;

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    Missing(String),
    #[error("invalid configuration: {0}")]
    Invalid(#[from] config::ConfigError),
    #[error("invalid configuration: {0}")]
    Rule(String),
}

/// The process environment as a list of pairs, so tests can pass their own.
pub type Environment = Vec<(String, String)>;

/// The real process environment.
pub fn process_environment() -> Environment {
    std::env::vars().collect()
}

impl Settings {
    /// Built-in defaults only, for tests and tools.
    pub fn defaults() -> Self {
        // The defaults are a constant of this file, parsed by a unit test below.
        Self::layered(None, false, &Vec::new()).expect("built-in defaults parse")
    }

    /// Load defaults, then `file` (or `./config.toml` if present), then `env`.
    pub fn load(file: Option<&Path>, env: &Environment) -> Result<Self, ConfigError> {
        Self::layered(file, true, env)
    }

    fn layered(
        file: Option<&Path>,
        search_cwd: bool,
        env: &Environment,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        match file {
            Some(path) if !path.exists() => {
                return Err(ConfigError::Missing(path.display().to_string()))
            }
            Some(path) => builder = builder.add_source(config::File::from(path)),
            None if search_cwd && Path::new("config.toml").exists() => {
                builder = builder.add_source(config::File::with_name("config.toml"))
            }
            None => {}
        }
        let nested: config::Map<String, String> = env
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix("INVIGIL_")?;
                let (section, key) = rest.split_once("__")?;
                Some((
                    format!("{}.{}", section.to_lowercase(), key.to_lowercase()),
                    v.clone(),
                ))
            })
            .collect();
        for (key, value) in nested {
            builder = builder.set_override(key, value)?;
        }
        for (short, key) in [
            ("INVIGIL_JWT_SECRET", "auth.jwt_secret"),
            ("INVIGIL_API_KEY", "auth.api_key"),
            ("INVIGIL_METRICS_TOKEN", "auth.metrics_token"),
        ] {
            if let Some((_, v)) = env.iter().find(|(k, _)| k == short) {
                builder = builder.set_override(key, v.clone())?;
            }
        }
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let rule = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Rule(what.to_string()))
            }
        };
        rule(
            self.heartbeat.interval_ms >= 10,
            "heartbeat.interval_ms must be at least 10",
        )?;
        rule(
            self.heartbeat.timeout_ms > self.heartbeat.interval_ms,
            "heartbeat.timeout_ms must be above heartbeat.interval_ms",
        )?;
        rule(
            self.limits.max_message_bytes >= 256,
            "limits.max_message_bytes must be at least 256",
        )?;
        rule(
            self.limits.messages_per_second > 0.0 && self.limits.message_burst >= 1.0,
            "limits.messages_per_second must be above 0 and limits.message_burst at least 1",
        )?;
        rule(
            self.limits.max_strikes >= 1,
            "limits.max_strikes must be at least 1",
        )?;
        rule(
            self.limits.outbox_frames >= 16,
            "limits.outbox_frames must be at least 16",
        )?;
        rule(
            self.limits.outbox_bytes >= 65536,
            "limits.outbox_bytes must be at least 65536",
        )?;
        rule(
            self.redis.liveness_ttl_ms >= 2 * self.redis.liveness_interval_ms
                && self.redis.liveness_interval_ms >= 10,
            "redis.liveness_ttl_ms must be at least twice redis.liveness_interval_ms (>= 10)",
        )?;
        rule(
            self.records.queue_size >= 1 && self.records.batch_size >= 1,
            "records.queue_size and records.batch_size must be at least 1",
        )?;
        rule(
            !self.redis.key_prefix.is_empty(),
            "redis.key_prefix must not be empty",
        )?;
        rule(
            self.server.tls_cert_file.is_empty() == self.server.tls_key_file.is_empty(),
            "server.tls_cert_file and server.tls_key_file go together",
        )?;
        for cidr in &self.server.trusted_proxies {
            rule(
                crate::http::client_ip::Cidr::parse(cidr).is_some(),
                &format!("server.trusted_proxies: {cidr:?} is not an IP address or CIDR range"),
            )?;
        }
        rule(
            self.server.instance_id.len() <= 64,
            "server.instance_id must be at most 64 characters",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Environment {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_parse_and_match_the_contract() {
        let s = Settings::defaults();
        assert_eq!(s.limits.max_message_bytes, 64 * 1024);
        assert_eq!(s.limits.messages_per_second, 10.0);
        assert_eq!(s.limits.message_burst, 20.0);
        assert_eq!(s.heartbeat.interval_ms, 15_000);
        assert!(s.auth.jwt_secret.is_empty());
    }

    #[test]
    fn environment_overrides_nested_keys_and_short_secrets() {
        let s = Settings::layered(
            None,
            false,
            &env(&[
                ("INVIGIL_HEARTBEAT__INTERVAL_MS", "500"),
                ("INVIGIL_AUTH__JWT_SECRET", "nested"),
                ("INVIGIL_JWT_SECRET", "short-wins"),
                ("INVIGIL_API_KEY", "k"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.heartbeat.interval_ms, 500);
        assert_eq!(s.auth.jwt_secret.expose(), "short-wins");
        assert_eq!(s.auth.api_key.expose(), "k");
    }

    #[test]
    fn bad_values_are_refused_with_the_key_named() {
        let err = Settings::layered(
            None,
            false,
            &env(&[("INVIGIL_HEARTBEAT__INTERVAL_MS", "soon")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("interval_ms"), "{err}");
        let err = Settings::layered(
            None,
            false,
            &env(&[("INVIGIL_HEARTBEAT__TIMEOUT_MS", "10")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("timeout_ms"), "{err}");
    }

    #[test]
    fn the_repository_config_toml_lists_every_key_with_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
        // Read the file alone, without the built-in defaults: a key it lacks is an error.
        let alone: Settings = config::Config::builder()
            .add_source(config::File::from(path.as_path()))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap();
        assert_eq!(format!("{alone:?}"), format!("{:?}", Settings::defaults()));
    }

    #[test]
    fn missing_config_file_is_an_error() {
        let err = Settings::load(Some(Path::new("/nonexistent/invigil.toml")), &Vec::new());
        assert!(matches!(err, Err(ConfigError::Missing(_))));
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
    }
}
