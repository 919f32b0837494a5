//! The `cab` binary as an operator uses it.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

use sqlx::PgPool;

use crate::audit::{cab, database_url};

pub const GOOD_KEY: &str = "0123456789abcdef0123456789abcdef-test-key";

/// `cab serve` on a free port; returns the process and its base URL.
pub fn start_server(pool: &PgPool, env_label: &str) -> (ServerProcess, String) {
    spawn_server(pool, env_label, Stdio::inherit())
}

/// `cab serve` on a free port with more settings, e.g.
/// `[("CAB_MAX_CONNECTIONS", "4")]`.
pub fn start_server_with(pool: &PgPool, settings: &[(&str, &str)]) -> (ServerProcess, String) {
    spawn_server_with(pool, "LOCAL", Stdio::inherit(), settings)
}

/// `cab serve`, its log written to `stderr`.
fn spawn_server(pool: &PgPool, env_label: &str, stderr: Stdio) -> (ServerProcess, String) {
    spawn_server_with(pool, env_label, stderr, &[])
}

/// `cab serve`, its log written to `stderr`, with more settings (which
/// override the ones here, e.g. `RUST_LOG`).
pub fn spawn_server_with(
    pool: &PgPool,
    env_label: &str,
    stderr: Stdio,
    settings: &[(&str, &str)],
) -> (ServerProcess, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cab"))
        .arg("serve")
        .env("DATABASE_URL", database_url(pool))
        .env("CAB_LISTEN", "127.0.0.1:0")
        .env("CAB_SECRET_KEY", GOOD_KEY)
        .env("CAB_ENV_LABEL", env_label)
        .env("RUST_LOG", "warn")
        .envs(settings.iter().copied())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start cab serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read");
    let url = line
        .trim()
        .strip_prefix("CAB listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();
    (ServerProcess(child), url)
}

/// Stops the server when dropped, whatever happened in the test.
pub struct ServerProcess(pub Child);

impl ServerProcess {
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .expect("kill");
        self.0.wait().expect("wait")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn add_user(pool: &PgPool, username: &str, roles: &[&str], password: &str) {
    let mut args = vec!["user", "add", username, "--password-stdin"];
    for r in roles {
        args.push("--role");
        args.push(r);
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_cab"))
        .args(&args)
        .env("DATABASE_URL", database_url(pool))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn serve_refuses_a_missing_or_short_key_and_says_how_to_make_one(pool: PgPool) {
    for key in [None, Some("too-short")] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cab"));
        cmd.arg("serve")
            .env("DATABASE_URL", database_url(&pool))
            .env("CAB_LISTEN", "127.0.0.1:0");
        cmd.env_remove("CAB_SECRET_KEY");
        if let Some(k) = key {
            cmd.env("CAB_SECRET_KEY", k);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("CAB_SECRET_KEY") && err.contains("openssl rand"),
            "{err}"
        );
        if let Some(k) = key {
            assert!(!err.contains(k), "the key itself is never printed");
        }
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn serve_answers_and_stops_gracefully_on_sigterm(pool: PgPool) {
    let (mut server, url) = start_server(&pool, "STAGING");
    let client = reqwest::Client::new();
    let health = client.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = client.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let login = client
        .get(format!("{url}/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(login.contains("STAGING") && login.contains("env-staging"));
    let status = server.terminate();
    assert!(status.success(), "{status}");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_client_value_cannot_forge_a_log_line_or_colour_the_log(pool: PgPool) {
    add_user(&pool, "erin", &["engineer"], "erin-long-password");
    let (mut server, url) = spawn_server(&pool, "LOCAL", Stdio::piped());
    let client = reqwest::Client::new();
    let token: serde_json::Value = client
        .post(format!("{url}/api/v1/auth/token"))
        .json(&serde_json::json!({"username": "erin", "password": "erin-long-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let forged = "2026-01-01T00:00:00Z INFO forged";
    // A refused value is quoted in the message, and the refusal is logged.
    let resp = client
        .post(format!("{url}/api/v1/changes"))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "title": "Rotate the edge certificates",
            "type": format!("normal\n{forged} \u{1b}[31mred\u{1b}[0m"),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let problem: serde_json::Value = resp.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("forged"),
        "{problem}"
    );
    assert!(server.terminate().success());
    let mut log = String::new();
    server
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("forged") && l.contains("WARN")),
        "the refusal is logged, on its own line: {log}"
    );
    assert!(
        !log.lines().any(|l| l.trim_start().starts_with(forged)),
        "a forged line: {log}"
    );
    assert!(!log.contains('\u{1b}'), "an escape sequence: {log:?}");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn user_commands(pool: PgPool) {
    let (ok, stdout, stderr) = cab(&pool, &["user", "add", "adam", "--role", "admin"]);
    assert!(ok, "{stderr}");
    let password = stdout
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("generated password printed");
    assert!(password.len() >= 20);
    add_user(
        &pool,
        "erin",
        &["engineer", "cab_member"],
        "erin-long-password",
    );
    let (ok, _, stderr) = cab(
        &pool,
        &[
            "user",
            "add",
            "ci-bot",
            "--role",
            "release_manager",
            "--service",
        ],
    );
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = cab(&pool, &["user", "add", "bad", "--role", "overlord"]);
    assert!(!ok);
    assert!(stderr.contains("unknown role 'overlord'"), "{stderr}");

    let (ok, _, stderr) = cab(&pool, &["user", "set-roles", "erin", "auditor"]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = cab(&pool, &["user", "disable", "erin"]);
    assert!(ok, "{stderr}");
    let (ok, stdout, _) = cab(&pool, &["user", "list"]);
    assert!(ok);
    let erin = stdout.lines().find(|l| l.starts_with("erin")).unwrap();
    assert!(
        erin.contains("disabled") && erin.contains("auditor"),
        "{erin}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("ci-bot") && l.contains("service"))
    );
    // The last admin stays.
    let (ok, _, stderr) = cab(&pool, &["user", "disable", "adam"]);
    assert!(!ok);
    assert!(stderr.contains("last active administrator"), "{stderr}");
    let (ok, stdout, _) = cab(&pool, &["audit", "verify"]);
    assert!(ok, "{stdout}");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn migrate_creates_a_missing_database(pool: PgPool) {
    let name = format!("cab_it_{}", uuid::Uuid::new_v4().simple());
    let url = database_url(&pool)
        .rsplit_once('/')
        .map(|(base, _)| format!("{base}/{name}"))
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cab"))
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(exists);
    // Running it again is a no-op.
    let again = Command::new(env!("CARGO_BIN_EXE_cab"))
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(again.status.success());
    sqlx::query(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .execute(&pool)
        .await
        .unwrap();
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["user", "add", "--help"],
        vec!["user", "list", "--help"],
        vec!["user", "set-roles", "--help"],
        vec!["user", "disable", "--help"],
        vec!["audit", "verify", "--help"],
        vec!["demo", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_cab"))
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage:"),
            "{args:?}"
        );
    }
}
