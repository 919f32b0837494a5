//! Server settings, read from `CAB_*` environment variables (and
//! `DATABASE_URL`) through the command line parser.

use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::Duration;
use clap::{Args, ValueEnum};

/// The smallest secret key accepted, in bytes.
pub const MIN_SECRET_KEY_BYTES: usize = 32;
/// The shortest metrics token accepted, in characters.
pub const MIN_METRICS_TOKEN_CHARS: usize = 32;
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

    /// Audit exports and evidence packs made at once by this server; each
    /// holds a database connection while it is read. One more is answered
    /// 503 with Retry-After.
    #[arg(long, env = "CAB_AUDIT_EXPORTS", default_value_t = 3)]
    pub audit_exports: usize,

    /// Seconds a piece of an audit export (one batch of rows) may wait for
    /// the client to take it; then the export is stopped and its database
    /// connection freed.
    #[arg(long, env = "CAB_AUDIT_EXPORT_STALL_SECONDS", default_value_t = 30)]
    pub audit_export_stall_seconds: u64,

    /// Turns on GET /metrics (Prometheus text format) for scrapers that send
    /// `Authorization: Bearer <this token>`: at least 32 characters, e.g. the
    /// output of `openssl rand -hex 32`. Unset, /metrics answers 404.
    #[arg(long, env = "CAB_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
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
    /// `None`: `/metrics` is off (404).
    pub metrics_token: Option<MetricsToken>,
    /// Audit exports (and evidence packs) made at once.
    pub audit_exports: usize,
    /// How long an audit export waits for a client that takes nothing.
    pub audit_export_stall: std::time::Duration,
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
        anyhow::ensure!(
            args.audit_exports > 0 && args.audit_export_stall_seconds > 0,
            "CAB_AUDIT_EXPORTS and CAB_AUDIT_EXPORT_STALL_SECONDS must be positive"
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
            metrics_token: check_metrics_token(args.metrics_token.as_deref())?,
            audit_exports: args.audit_exports,
            audit_export_stall: std::time::Duration::from_secs(args.audit_export_stall_seconds),
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
            metrics_token: None,
            audit_exports: 3,
            audit_export_stall: std::time::Duration::from_secs(30),
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

/// The token a scraper presents for `/metrics`. Only its SHA-256 digest is
/// kept, so that comparing takes the same time whatever is presented, and
/// the token never appears in a message or a log.
#[derive(Clone)]
pub struct MetricsToken([u8; 32]);

impl MetricsToken {
    /// Whether `presented` is the token, compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        use sha2::Digest;
        use subtle::ConstantTimeEq;
        let digest: [u8; 32] = sha2::Sha256::digest(presented.as_bytes()).into();
        digest.ct_eq(&self.0).into()
    }
}

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(..)")
    }
}

/// Checks the metrics token: none (or blank) turns `/metrics` off; otherwise
/// it must be at least 32 printable ASCII characters without spaces, since a
/// scraper sends it in a header. The token itself never appears in a message.
pub fn check_metrics_token(token: Option<&str>) -> anyhow::Result<Option<MetricsToken>> {
    use sha2::Digest;
    let hint = "generate one with `openssl rand -hex 32` and set CAB_METRICS_TOKEN, or unset it to turn /metrics off";
    let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    anyhow::ensure!(
        token.bytes().all(|b| b.is_ascii_graphic()),
        "CAB_METRICS_TOKEN may hold only printable ASCII characters without spaces: {hint}"
    );
    anyhow::ensure!(
        token.len() >= MIN_METRICS_TOKEN_CHARS,
        "CAB_METRICS_TOKEN is too short ({} characters, at least {MIN_METRICS_TOKEN_CHARS} needed): {hint}",
        token.len()
    );
    Ok(Some(MetricsToken(
        sha2::Sha256::digest(token.as_bytes()).into(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metrics_token_is_optional_long_and_printable() {
        assert!(matches!(check_metrics_token(None), Ok(None)));
        assert!(matches!(check_metrics_token(Some("  ")), Ok(None)));
        let short = check_metrics_token(Some("too-short")).map(|_| ());
        let message = short.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("CAB_METRICS_TOKEN is too short"),
            "{message}"
        );
        assert!(!message.contains("too-short"), "the token is never printed");
        let spaced = "a token with spaces that is long enough to pass";
        assert!(check_metrics_token(Some(spaced)).is_err());
        let good = "0123456789abcdef0123456789abcdef";
        let Ok(Some(token)) = check_metrics_token(Some(good)) else {
            panic!("a 32-character token is accepted");
        };
        assert!(token.matches(good));
        assert!(!token.matches("0123456789abcdef0123456789abcdeF"));
        assert!(!token.matches(""));
        assert!(!format!("{token:?}").contains(good));
    }
}
