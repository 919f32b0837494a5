//! Server settings, read from `CAB_*` environment variables (and
//! `DATABASE_URL`) through the command line parser.

use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::Duration;
use clap::{Args, ValueEnum};

/// The smallest secret key accepted, in bytes.
pub const MIN_SECRET_KEY_BYTES: usize = 32;
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/cab";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL of the role CAB serves as, e.g.
    /// postgres://cab_app:PASSWORD@HOST/cab. An account that owns CAB's
    /// tables (or a superuser) also creates the database and migrates, and
    /// `cab serve` then warns that it could switch off the audit trail's
    /// protections.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true, global = true)]
    pub database_url: String,

    /// Largest number of pooled database connections.
    #[arg(
        long,
        env = "CAB_DB_MAX_CONNECTIONS",
        default_value_t = 10,
        global = true
    )]
    pub db_max_connections: u32,
}

/// How `cab migrate` (and `cab serve`, when given it) sets up the database.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// PostgreSQL URL of an account that may create roles (a superuser, or a
    /// role with CREATEROLE), used only to migrate: it creates the database,
    /// the owner role and the role named in DATABASE_URL (with the password
    /// written there) when missing, applies migrations as the owner, and
    /// grants the serving role what CAB needs and no more.
    #[arg(long, env = "CAB_MIGRATE_DATABASE_URL", hide_env_values = true)]
    pub migrate_database_url: Option<String>,

    /// The role that owns CAB's database and tables (created NOLOGIN when
    /// missing). Only it can switch off the audit trail's protections.
    #[arg(long, env = "CAB_OWNER_ROLE", default_value = crate::db::roles::DEFAULT_OWNER_ROLE)]
    pub owner_role: String,
}

#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Address and port to listen on.
    #[arg(long, env = "CAB_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Key that signs session and access tokens: at least 32 bytes, e.g. the
    /// output of `openssl rand -base64 48`. Required outside demo mode.
    #[arg(long, env = "CAB_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,

    /// Label shown on every page so nobody mistakes one instance for another,
    /// e.g. PRODUCTION (red), STAGING (amber).
    #[arg(long, env = "CAB_ENV_LABEL", default_value = "LOCAL")]
    pub env_label: String,

    /// The address people use to reach CAB. An https:// address turns on
    /// Secure cookies and HSTS.
    #[arg(long, env = "CAB_PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
    pub public_url: String,

    /// A folder of static assets (CSS, scripts) to serve instead of the copy
    /// built into the binary; for working on the stylesheet. Read at start-up.
    #[arg(long, env = "CAB_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,

    /// Minutes of inactivity after which a browser session ends.
    #[arg(long, env = "CAB_SESSION_IDLE_MINUTES", default_value_t = 30)]
    pub session_idle_minutes: i64,

    /// Hours after sign-in at which a browser session ends, active or not.
    #[arg(long, env = "CAB_SESSION_MAX_HOURS", default_value_t = 12)]
    pub session_max_hours: i64,

    /// Minutes an API access token from /api/v1/auth/token stays valid.
    #[arg(long, env = "CAB_ACCESS_TOKEN_MINUTES", default_value_t = 15)]
    pub access_token_minutes: i64,

    /// Addresses of reverse proxies in front of CAB, comma-separated. From
    /// these peers only, the client address is taken from X-Forwarded-For
    /// (for the audit trail and login throttling).
    #[arg(long, env = "CAB_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,

    /// Seconds a client has to send a request's headers, and an idle
    /// keep-alive connection to start its next request; then the connection
    /// is closed.
    #[arg(long, env = "CAB_HEADER_TIMEOUT_SECONDS", default_value_t = 10)]
    pub header_timeout_seconds: u64,

    /// Seconds a request's body has to arrive in full once its headers have;
    /// a slower one is answered 408 and its connection closed.
    #[arg(long, env = "CAB_BODY_TIMEOUT_SECONDS", default_value_t = 10)]
    pub body_timeout_seconds: u64,

    /// Seconds from a request's headers to its answer; a request that takes
    /// longer is answered 408 and its connection closed. More than 10: a
    /// sign-in may wait that long for a password-hashing slot.
    #[arg(long, env = "CAB_REQUEST_TIMEOUT_SECONDS", default_value_t = 30)]
    pub request_timeout_seconds: u64,

    /// Largest number of client connections served at once. Beyond it a few
    /// more are answered 503 with Retry-After and closed, and the rest wait
    /// in the system's queue until a connection ends.
    #[arg(long, env = "CAB_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,

    /// Seconds that requests in flight have to finish after SIGTERM or
    /// SIGINT; connections still busy then are closed and CAB exits.
    #[arg(long, env = "CAB_SHUTDOWN_SECONDS", default_value_t = 30)]
    pub shutdown_seconds: u64,
}

/// Settings the running server needs, checked once at start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    pub env_label: String,
    /// The address people reach CAB at, without a trailing slash: the base
    /// of links that leave the browser (calendar feeds).
    pub public_url: String,
    pub secure_cookies: bool,
    /// `None`: the assets built into the binary.
    pub static_dir: Option<PathBuf>,
    pub session_idle: Duration,
    pub session_max: Duration,
    pub access_token_ttl: Duration,
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// From a request's headers to its answer (see [`crate::serve`]).
    pub request_timeout: std::time::Duration,
    /// From a request's headers to the end of its body.
    pub body_timeout: std::time::Duration,
}

impl Settings {
    pub fn from_args(args: &ServerArgs) -> anyhow::Result<Self> {
        anyhow::ensure!(
            args.session_idle_minutes > 0
                && args.session_max_hours > 0
                && args.access_token_minutes > 0,
            "session and token lifetimes must be positive"
        );
        anyhow::ensure!(
            args.request_timeout_seconds > 0 && args.body_timeout_seconds > 0,
            "CAB_REQUEST_TIMEOUT_SECONDS and CAB_BODY_TIMEOUT_SECONDS must be positive"
        );
        Ok(Self {
            env_label: args.env_label.trim().to_owned(),
            public_url: args.public_url.trim().trim_end_matches('/').to_owned(),
            secure_cookies: args.public_url.starts_with("https://"),
            static_dir: args.static_dir.clone(),
            session_idle: Duration::minutes(args.session_idle_minutes),
            session_max: Duration::hours(args.session_max_hours),
            access_token_ttl: Duration::minutes(args.access_token_minutes),
            trusted_proxies: args.trusted_proxies.clone(),
            request_timeout: std::time::Duration::from_secs(args.request_timeout_seconds),
            body_timeout: std::time::Duration::from_secs(args.body_timeout_seconds),
        })
    }

    /// Settings for tests and tools that build a server in-process.
    pub fn for_tests() -> Self {
        Self {
            env_label: "TEST".into(),
            public_url: "http://127.0.0.1:8080".into(),
            secure_cookies: false,
            static_dir: None,
            session_idle: Duration::minutes(30),
            session_max: Duration::hours(12),
            access_token_ttl: Duration::minutes(15),
            trusted_proxies: Vec::new(),
            request_timeout: std::time::Duration::from_secs(30),
            body_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// Checks the signing key; the message says how to make a good one. The key
/// itself never appears in a message or a log.
pub fn check_secret_key(key: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let hint = "generate one with `openssl rand -base64 48` and set CAB_SECRET_KEY";
    let Some(key) = key.map(str::trim).filter(|k| !k.is_empty()) else {
        anyhow::bail!("CAB_SECRET_KEY is not set: {hint}");
    };
    anyhow::ensure!(
        key.len() >= MIN_SECRET_KEY_BYTES,
        "CAB_SECRET_KEY is too short ({} bytes, at least {MIN_SECRET_KEY_BYTES} needed): {hint}",
        key.len()
    );
    Ok(key.as_bytes().to_vec())
}
