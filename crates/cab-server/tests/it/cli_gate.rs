//! The `cab gate` and `cab keys` commands as a pipeline and an operator run
//! them: the real `cab` binary against a real `cab serve`, on the test's own
//! database, and the CI examples in examples/ci run as their CI would.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use axum::http::StatusCode;
use cab_server::AppState;
use cab_server::config::Settings;
use cab_server::crypto::Keys;
use cab_server::crypto::deploy::{self, Jwks, StoredKey};
use chrono::{Duration, Utc};
use serde_json::Value;
use sqlx::PgPool;

use crate::audit::database_url;
use crate::cli::{GOOD_KEY, ServerProcess, start_server};
use crate::common::TestApp;
use crate::deployments::{Cast, artifact, digest};

/// What a run of `cab` did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }

    fn refused(&self) -> &Self {
        assert_eq!(self.code, 2, "{self:?}");
        self
    }
}

/// Runs `cab` with only the settings given (none inherited from the test's
/// environment), `stdin` written to its standard input.
fn cab(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cab"));
    cmd.args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in [
        "CAB_URL",
        "CAB_TOKEN",
        "CAB_DEPLOY_TOKEN",
        "CAB_CA_CERT",
        "CAB_SECRET_KEY",
        "DATABASE_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().expect("run cab");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    let out = child.wait_with_output().expect("wait for cab");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A board served by `cab serve`, with the deployment cast, and an in-process
/// app on the same database and secret key for setting things up.
struct Board {
    app: TestApp,
    cast: Cast,
    url: String,
    _server: ServerProcess,
}

impl Board {
    async fn new(pool: PgPool) -> Self {
        let state =
            AppState::new(pool.clone(), Settings::for_tests(), GOOD_KEY.as_bytes()).expect("state");
        let app = TestApp::from_state(state);
        let cast = app.cast().await;
        let (server, url) = start_server(&pool, "LOCAL");
        Board {
            app,
            cast,
            url,
            _server: server,
        }
    }

    /// An approved change of Erin's, as people name it (CHG-n).
    async fn approved_change(&self) -> String {
        let id = self
            .app
            .approved_change(&self.cast.erin, &self.cast.carol)
            .await;
        self.change_key(&id).await
    }

    async fn change_key(&self, id: &str) -> String {
        let number: i64 = sqlx::query_scalar("SELECT number FROM changes WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&self.app.pool)
            .await
            .unwrap();
        format!("CHG-{number}")
    }

    /// `cab gate request` as the pipeline, for revision 1 of `change`'s artifact.
    fn request(&self, change: &str, env: &str, initiator: Option<&str>, more: &[&str]) -> Run {
        let digest = artifact();
        let mut args = vec![
            "gate",
            "request",
            "--change",
            change,
            "--revision",
            "1",
            "--environment",
            env,
            "--artifact-name",
            "edge-proxy",
            "--artifact-version",
            "2.4.1",
            "--digest",
            &digest,
            "--pipeline-provider",
            "github",
            "--pipeline-run-id",
            "4242",
            "--pipeline-url",
            "https://ci.example.com/runs/4242",
        ];
        if let Some(i) = initiator {
            args.extend(["--initiator", i]);
        }
        args.extend(more);
        cab(
            &args,
            &[
                ("CAB_URL", self.url.as_str()),
                ("CAB_TOKEN", self.cast.pipeline.as_str()),
            ],
            None,
        )
    }

    /// `cab gate report` as the pipeline.
    fn report(&self, args: &[&str], authorization: Option<&str>) -> Run {
        let mut env = vec![
            ("CAB_URL", self.url.as_str()),
            ("CAB_TOKEN", self.cast.pipeline.as_str()),
        ];
        if let Some(t) = authorization {
            env.push(("CAB_DEPLOY_TOKEN", t));
        }
        let mut all = vec!["gate", "report"];
        all.extend(args);
        cab(&all, &env, None)
    }

    /// Authorizes, starts and completes a deployment with the commands.
    fn deploy(&self, change: &str, env: &str, initiator: Option<&str>) {
        let run = self.request(change, env, initiator, &[]);
        let token = run.ok().stdout.trim().to_owned();
        assert_eq!(
            self.report(&["started"], Some(&token)).ok().stdout,
            "started\n"
        );
        assert_eq!(
            self.report(&["succeeded"], Some(&token)).ok().stdout,
            "succeeded\n"
        );
    }

    /// The published key set, as a pipeline saves it.
    async fn save_keys(&self, dir: &Path) -> PathBuf {
        let keys = reqwest::get(format!("{}/api/v1/deployments/keys", self.url))
            .await
            .unwrap();
        assert_eq!(keys.status(), StatusCode::OK);
        let path = dir.join("keys.json");
        std::fs::write(&path, keys.text().await.unwrap()).unwrap();
        path
    }

    async fn state_of(&self, deployment: &str) -> String {
        sqlx::query_scalar("SELECT state FROM deployments WHERE id = $1::uuid")
            .bind(deployment)
            .fetch_one(&self.app.pool)
            .await
            .unwrap()
    }

    async fn states(&self) -> Vec<(String, String)> {
        sqlx::query_as("SELECT environment, state FROM deployments ORDER BY number")
            .fetch_all(&self.app.pool)
            .await
            .unwrap()
    }
}

/// A folder of the test's own, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("cab-gate-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A token's claims, read without checking it.
fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_pipeline_asks_checks_starts_and_finishes_with_the_commands(pool: PgPool) {
    let board = Board::new(pool).await;
    let change = board.approved_change().await;
    let scratch = Scratch::new();

    // The token alone on standard output; the deployment on standard error.
    let run = board.request(&change, "dev", None, &[]);
    run.ok();
    let token = run.stdout.trim();
    assert_eq!(run.stdout, format!("{token}\n"));
    assert_eq!(token.split('.').count(), 3, "a JWS: {token}");
    assert!(run.stderr.contains("DEP-1"), "{}", run.stderr);
    assert!(run.stderr.contains(&change), "{}", run.stderr);
    let deployment = claims_of(token)["sub"].as_str().unwrap().to_owned();
    assert!(run.stderr.contains(&deployment), "{}", run.stderr);

    // Checked offline against the saved key set, from standard input or
    // CAB_DEPLOY_TOKEN; and against the fetched one.
    let keys = board.save_keys(&scratch.0).await;
    let keys = keys.to_str().unwrap();
    let digest = artifact();
    let run = cab(
        &[
            "gate",
            "verify",
            "--keys",
            keys,
            "--environment",
            "dev",
            "--digest",
            &digest,
        ],
        &[],
        Some(&format!("{token}\n")),
    );
    run.ok();
    assert!(run.stdout.starts_with("valid: "), "{}", run.stdout);
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    for part in [
        deployment.as_str(),
        change.as_str(),
        "to dev",
        &artifact(),
        "for deploy-bot",
        &kid_of(token),
    ] {
        assert!(run.stdout.contains(part), "{part} in {}", run.stdout);
    }
    let keys_url = format!("{}/api/v1/deployments/keys", board.url);
    cab(
        &[
            "gate",
            "verify",
            "--keys-url",
            &keys_url,
            "--environment",
            "dev",
            "--digest",
            &artifact(),
        ],
        &[("CAB_DEPLOY_TOKEN", token)],
        None,
    )
    .ok();

    // Started with the token (the deployment found from it), then succeeded
    // by its number.
    let run = board.report(&["--state", "started", "--note", "go"], Some(token));
    assert_eq!(run.ok().stdout, "started\n");
    assert!(run.stderr.contains("DEP-1"), "{}", run.stderr);
    assert_eq!(board.state_of(&deployment).await, "started");
    let run = board.report(&["--deployment", "DEP-1", "--state", "succeeded"], None);
    assert_eq!(run.ok().stdout, "succeeded\n");
    assert_eq!(board.state_of(&deployment).await, "succeeded");

    // On to PROD, for a release manager, through every environment.
    board.deploy(&change, "test", None);
    board.deploy(&change, "stage", None);
    let run = board.request(&change, "prod", Some("rita"), &["--output", "json"]);
    let answer: Value = serde_json::from_str(&run.ok().stdout).unwrap();
    assert_eq!(answer["deployment"]["environment"], "prod");
    assert_eq!(answer["deployment"]["initiator"], "rita");
    assert_eq!(answer["deployment"]["executor"], "deploy-bot");
    let token = answer["token"].as_str().unwrap();
    let run = cab(
        &[
            "gate",
            "verify",
            "--keys-url",
            &keys_url,
            "--environment",
            "prod",
            "--digest",
            &artifact(),
            "--output",
            "json",
        ],
        &[],
        Some(token),
    );
    let checked: Value = serde_json::from_str(&run.ok().stdout).unwrap();
    assert_eq!(checked["valid"], true);
    assert_eq!(checked["claims"]["initiator"], "rita");
    board.report(&["started"], Some(token)).ok();
    board.report(&["succeeded"], Some(token)).ok();
    assert_eq!(
        board.states().await,
        ["dev", "test", "stage", "prod"].map(|e| (e.to_owned(), "succeeded".to_owned()))
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_refusal_exits_2_naming_every_reason(pool: PgPool) {
    let board = Board::new(pool).await;
    let change = board.approved_change().await;
    board.deploy(&change, "dev", None);
    board.deploy(&change, "test", None);

    // STAGE skipped, and the change's author named as the initiator.
    let run = board.request(&change, "prod", Some("erin"), &[]);
    run.refused();
    assert_eq!(run.stdout, "", "no token");
    for code in ["self_deployment", "promotion_order"] {
        assert!(run.stderr.contains(code), "{code} in {}", run.stderr);
    }
    assert!(run.stderr.contains("deployment_refused"), "{}", run.stderr);
    // The dry run says the same, and JSON output gives the whole problem.
    let run = board.request(&change, "prod", Some("erin"), &["--dry-run"]);
    run.refused();
    for code in ["self_deployment", "promotion_order"] {
        assert!(run.stderr.contains(code), "{code} in {}", run.stderr);
    }
    let run = board.request(&change, "prod", Some("erin"), &["--output", "json"]);
    run.refused();
    let problem: Value = serde_json::from_str(&run.stdout).unwrap();
    let codes: Vec<&str> = problem["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"self_deployment"), "{codes:?}");
    assert!(codes.contains(&"promotion_order"), "{codes:?}");
    // A break-glass is passed on to the gate: one that does not exist is
    // named as the fault.
    let run = board.request(&change, "prod", Some("rita"), &["--break-glass", "BG-77"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("No such break-glass"), "{}", run.stderr);
    // A dry run the gate would allow.
    board.request(&change, "stage", None, &["--dry-run"]).ok();
    assert_eq!(board.states().await.len(), 2, "nothing recorded since");

    // Other failures exit 1: a bad API token, a malformed request, nobody
    // listening.
    let digest = artifact();
    let args = [
        "gate",
        "request",
        "--change",
        &change,
        "--revision",
        "1",
        "--environment",
        "dev",
        "--artifact-name",
        "edge-proxy",
        "--digest",
        &digest,
    ];
    let run = cab(
        &args,
        &[
            ("CAB_URL", board.url.as_str()),
            ("CAB_TOKEN", "cab_not-a-real-token"),
        ],
        None,
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("401"), "{}", run.stderr);
    let mut bad = args;
    bad[11] = "sha256:nope";
    let run = cab(
        &bad,
        &[
            ("CAB_URL", board.url.as_str()),
            ("CAB_TOKEN", board.cast.pipeline.as_str()),
        ],
        None,
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("digest: A digest is sha256:"),
        "{}",
        run.stderr
    );
    let run = cab(
        &args,
        &[("CAB_URL", "http://127.0.0.1:9"), ("CAB_TOKEN", "x")],
        None,
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("cannot reach CAB"), "{}", run.stderr);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn verify_refuses_another_target_an_expired_token_and_a_foreign_key(pool: PgPool) {
    let board = Board::new(pool).await;
    let change = board.approved_change().await;
    let scratch = Scratch::new();
    let token = board
        .request(&change, "dev", None, &[])
        .ok()
        .stdout
        .trim()
        .to_owned();
    let keys = board.save_keys(&scratch.0).await;
    let verify = |token: &str, env: &str, digest: &str| {
        cab(
            &[
                "gate",
                "verify",
                "--keys",
                keys.to_str().unwrap(),
                "--environment",
                env,
                "--digest",
                digest,
            ],
            &[],
            Some(token),
        )
    };
    verify(&token, "dev", &artifact()).ok();

    // Another environment, another artifact.
    let run = verify(&token, "prod", &artifact());
    assert!(
        run.refused()
            .stderr
            .contains("the authorization is for environment dev, not prod"),
        "{}",
        run.stderr
    );
    let run = verify(&token, "dev", &digest('c'));
    assert!(
        run.refused().stderr.contains(&format!(
            "the authorization is for artifact {}, not {}",
            artifact(),
            digest('c')
        )),
        "{}",
        run.stderr
    );

    // Expired: signed by CAB's own key, but its time is up.
    let jwks: Jwks = serde_json::from_str(&std::fs::read_to_string(&keys).unwrap()).unwrap();
    let mut claims = deploy::verify(&token, &jwks, Utc::now()).unwrap();
    let row = {
        let mut conn = board.app.pool.acquire().await.unwrap();
        cab_db::deployments::signing_keys(&mut conn)
            .await
            .unwrap()
            .remove(0)
    };
    let ours = StoredKey {
        kid: row.kid,
        public_key: row.public_key,
        sealed_private: row.sealed_private,
    };
    let secret = Keys::new(GOOD_KEY.as_bytes());
    claims.exp = (Utc::now() - Duration::minutes(5)).timestamp();
    let expired = deploy::sign(&secret, &ours, &claims).unwrap();
    let run = verify(&expired, "dev", &artifact());
    assert!(
        run.refused()
            .stderr
            .contains("the authorization has expired at"),
        "{}",
        run.stderr
    );

    // Signed by a key the set does not hold, or by another key under CAB's
    // key id; or no token at all.
    claims.exp = (Utc::now() + Duration::minutes(5)).timestamp();
    let elsewhere = Keys::new(b"somebody else's secret key, long enough");
    let foreign = deploy::generate(&elsewhere, Utc::now()).unwrap();
    let forged = deploy::sign(&elsewhere, &foreign, &claims).unwrap();
    let run = verify(&forged, "dev", &artifact());
    assert!(
        run.refused()
            .stderr
            .contains("signed by a key CAB does not publish"),
        "{}",
        run.stderr
    );
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(ours.kid.clone());
    let forged = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_der(&[7u8; 32]),
    )
    .unwrap();
    let run = verify(&forged, "dev", &artifact());
    assert!(
        run.refused().stderr.contains("signature does not verify"),
        "{}",
        run.stderr
    );
    let run = verify("not.a.token", "dev", &artifact());
    assert!(
        run.refused().stderr.contains("not a well-formed token"),
        "{}",
        run.stderr
    );

    // Several on standard input: each checked, all must hold.
    let run = verify(&format!("{token}\n{expired}\n"), "dev", &artifact());
    run.refused();
    assert!(
        run.stdout.starts_with("authorization 1: valid: "),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("authorization 2: refused: "),
        "{}",
        run.stderr
    );
    // A key set that cannot be read is an error, not a refusal.
    let run = cab(
        &[
            "gate",
            "verify",
            "--keys",
            "/nonexistent/keys.json",
            "--environment",
            "dev",
            "--digest",
            &artifact(),
        ],
        &[("CAB_DEPLOY_TOKEN", &token)],
        None,
    );
    assert_eq!(run.code, 1, "{run:?}");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_replayed_start_answers_409_with_its_reason(pool: PgPool) {
    let board = Board::new(pool).await;
    let change = board.approved_change().await;
    let token = board
        .request(&change, "dev", None, &[])
        .ok()
        .stdout
        .trim()
        .to_owned();

    // Starting takes the token.
    let run = board.report(&["--deployment", "DEP-1", "started"], None);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("CAB_DEPLOY_TOKEN"), "{}", run.stderr);

    board.report(&["started"], Some(&token)).ok();
    let run = board.report(&["started"], Some(&token));
    run.refused();
    assert!(run.stderr.contains("409"), "{}", run.stderr);
    assert!(run.stderr.contains("invalid_transition"), "{}", run.stderr);
    // Reported twice, a finish is the same report.
    board
        .report(&["failed", "--note", "smoke tests"], Some(&token))
        .ok();
    board.report(&["failed"], Some(&token)).ok();
    let run = board.report(&["succeeded"], Some(&token));
    assert!(
        run.refused().stderr.contains("invalid_transition"),
        "{}",
        run.stderr
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn keys_rotate_prints_a_new_key_id_and_the_old_key_stays_published(pool: PgPool) {
    let board = Board::new(pool.clone()).await;
    let change = board.approved_change().await;
    let first = board
        .request(&change, "dev", None, &[])
        .ok()
        .stdout
        .trim()
        .to_owned();
    let old_kid = kid_of(&first);

    let db = database_url(&pool);
    let run = cab(
        &["keys", "rotate"],
        &[("DATABASE_URL", &db), ("CAB_SECRET_KEY", GOOD_KEY)],
        None,
    );
    run.ok();
    let new_kid = run.stdout.trim().to_owned();
    assert_eq!(run.stdout, format!("{new_kid}\n"), "the key id alone");
    assert_ne!(new_kid, old_kid);
    assert!(
        new_kid.len() == 21 && new_kid.as_bytes()[8] == b'-',
        "{new_kid}"
    );
    assert!(!run.stderr.contains(GOOD_KEY));

    // Both public keys are published; what the old key signed still checks.
    let jwks: Jwks = reqwest::get(format!("{}/api/v1/deployments/keys", board.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks.keys.iter().map(|k| k.kid.as_str()).collect();
    assert!(
        kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()),
        "{kids:?}"
    );
    let keys_url = format!("{}/api/v1/deployments/keys", board.url);
    cab(
        &[
            "gate",
            "verify",
            "--keys-url",
            &keys_url,
            "--environment",
            "dev",
            "--digest",
            &artifact(),
        ],
        &[],
        Some(&first),
    )
    .ok();
    // The next authorization is signed by the new key, and starts.
    board.report(&["aborted"], Some(&first)).ok();
    let next = board
        .request(&change, "dev", None, &[])
        .ok()
        .stdout
        .trim()
        .to_owned();
    assert_eq!(kid_of(&next), new_kid);
    board.report(&["started"], Some(&next)).ok();

    // Audited; no secret in the trail.
    let rotated: Vec<Value> = board
        .app
        .audit_events()
        .await
        .into_iter()
        .filter(|(a, _)| a == "keys.rotated")
        .map(|(_, p)| p)
        .collect();
    assert_eq!(rotated.len(), 2, "the first key, then the rotation");
    assert_eq!(rotated[1]["kid"], new_kid.as_str());
    assert_eq!(rotated[1]["first"], false);

    // Without the server's secret key, nothing is rotated.
    let run = cab(&["keys", "rotate"], &[("DATABASE_URL", &db)], None);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("CAB_SECRET_KEY"), "{}", run.stderr);
}

/// An example CI file as JSON.
fn example(name: &str) -> (String, Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/ci")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(&path)
        .output()
        .expect("python3 with PyYAML");
    assert!(
        out.status.success(),
        "{name} does not parse: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (text, serde_json::from_slice(&out.stdout).unwrap())
}

/// A folder standing for a CI job's checkout: `cab` on the PATH, and a
/// ./deploy.sh that records what it deployed and exits with `exit`.
fn checkout(scratch: &Scratch, exit: i32) -> (PathBuf, String) {
    let dir = scratch.0.join(format!("job-{}", uuid::Uuid::new_v4()));
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_cab"), bin.join("cab")).unwrap();
    let script = dir.join("deploy.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" >> deployed.txt\nexit {exit}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (dir, path)
}

fn bash(script: &str, dir: &Path, env: &BTreeMap<String, String>) -> bool {
    Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
        .current_dir(dir)
        .env_remove("CAB_DEPLOY_TOKEN")
        .envs(env)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Runs the GitLab job's script as the runner does: one shell, stopping at
/// the first failure. Whether the job passed.
fn run_gitlab(job: &Value, vars: &[(&str, &str)], deploy_exit: i32, scratch: &Scratch) -> bool {
    let (dir, path) = checkout(scratch, deploy_exit);
    let mut env: BTreeMap<String, String> = job["variables"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env.insert("PATH".into(), path);
    let script: Vec<&str> = job["script"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    bash(&script.join("\n"), &dir, &env)
}

/// A new number for each CI job run, as a CI system gives one to each
/// attempt.
fn next_run() -> u32 {
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The value of a `${{ ... }}` expression of the workflow.
fn expand(text: &str, context: &BTreeMap<&str, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").unwrap() + start;
        let name = rest[start + 3..end].trim();
        out.push_str(
            context
                .get(name)
                .unwrap_or_else(|| panic!("the example uses ${{{{ {name} }}}}, unknown here")),
        );
        rest = &rest[end + 2..];
    }
    out + rest
}

/// Whether a step's `if:` holds, for the conditions the example uses.
fn holds(condition: &str, failed: bool, env: &BTreeMap<String, String>) -> bool {
    condition.split("&&").map(str::trim).all(|term| match term {
        "success()" => !failed,
        "failure()" | "(failure() || cancelled())" => failed,
        "always()" => true,
        _ => {
            let name = term
                .strip_prefix("env.")
                .and_then(|t| t.strip_suffix(" != ''"))
                .unwrap_or_else(|| panic!("a condition unknown here: {term}"));
            env.get(name).is_some_and(|v| !v.is_empty())
        }
    })
}

/// Runs the workflow's deploy job as a runner does: each step a shell, the
/// environment file read after each, later steps skipped after a failure
/// unless their condition says otherwise. Whether the job passed.
fn run_github(
    workflow: &Value,
    context: &BTreeMap<&str, String>,
    deploy_exit: i32,
    scratch: &Scratch,
) -> bool {
    let (dir, path) = checkout(scratch, deploy_exit);
    let job = &workflow["jobs"]["deploy"];
    let env_file = dir.join("github.env");
    let mut env: BTreeMap<String, String> = job["env"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), expand(v.as_str().unwrap(), context)))
        .collect();
    for (k, v) in [
        ("PATH", path),
        ("GITHUB_ENV", env_file.display().to_string()),
        ("GITHUB_RUN_ID", "7001".into()),
        ("GITHUB_RUN_ATTEMPT", next_run().to_string()),
        ("GITHUB_SERVER_URL", "https://github.example.com".into()),
        ("GITHUB_REPOSITORY", "acme/edge-proxy".into()),
    ] {
        env.insert(k.into(), v);
    }
    let mut failed = false;
    for step in job["steps"].as_array().unwrap() {
        let run = match step["if"].as_str() {
            Some(c) => holds(c, failed, &env),
            None => !failed,
        };
        let Some(script) = step["run"].as_str().filter(|_| run) else {
            continue;
        };
        std::fs::write(&env_file, "").unwrap();
        if !bash(script, &dir, &env) {
            failed = true;
        }
        for line in std::fs::read_to_string(&env_file).unwrap().lines() {
            let (k, v) = line.split_once('=').unwrap();
            env.insert(k.to_owned(), v.to_owned());
        }
    }
    !failed
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_ci_examples_parse_and_deploy_through_the_gate(pool: PgPool) {
    let (gitlab_text, gitlab) = example("gitlab-ci.yml");
    let (github_text, github) = example("github-actions.yml");
    for (name, text) in [
        ("gitlab-ci.yml", &gitlab_text),
        ("github-actions.yml", &github_text),
    ] {
        for needed in [
            "cab gate request",
            "--initiator",
            "cab gate verify",
            "cab gate report started",
            "cab gate report succeeded",
        ] {
            assert!(text.contains(needed), "{name} uses {needed}");
        }
    }
    assert!(gitlab_text.contains("--initiator \"$GITLAB_USER_LOGIN\""));
    assert!(gitlab_text.contains("cab gate report failed"));
    assert!(github_text.contains("INITIATOR: ${{ github.triggering_actor }}"));
    assert!(github_text.contains("CAB_ON_FAILURE=failed"));

    let board = Board::new(pool).await;
    let scratch = Scratch::new();
    let id = board
        .app
        .approved_change(&board.cast.erin, &board.cast.carol)
        .await;
    let change = board.change_key(&id).await;
    let digest = artifact();
    let gitlab_vars = |env: &'static str, login: &'static str| {
        vec![
            ("CAB_URL", board.url.clone()),
            ("CAB_TOKEN", board.cast.pipeline.clone()),
            ("CHANGE", change.clone()),
            ("REVISION", "1".into()),
            ("DEPLOY_ENV", env.into()),
            ("DIGEST", digest.clone()),
            ("GITLAB_USER_LOGIN", login.into()),
            ("CI_PIPELINE_ID", "90".into()),
            ("CI_PIPELINE_URL", "https://gitlab.example.com/p/90".into()),
            ("CI_JOB_ID", next_run().to_string()),
        ]
    };
    let gitlab_job = |env, login, exit| {
        let vars = gitlab_vars(env, login);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_gitlab(&gitlab["deploy"], &vars, exit, &scratch)
    };
    let github_context = |env: &str, actor: &str| -> BTreeMap<&str, String> {
        BTreeMap::from([
            ("vars.CAB_URL", board.url.clone()),
            ("secrets.CAB_TOKEN", board.cast.pipeline.clone()),
            ("inputs.change", change.clone()),
            ("inputs.revision", "1".into()),
            ("inputs.environment", env.into()),
            ("inputs.digest", digest.clone()),
            ("github.triggering_actor", actor.into()),
        ])
    };

    // GitLab to DEV, GitHub to TEST.
    assert!(gitlab_job("dev", "rita", 0));
    assert!(run_github(
        &github,
        &github_context("test", "rita"),
        0,
        &scratch
    ));
    // A failed deployment to STAGE is reported failed by each.
    assert!(!gitlab_job("stage", "rita", 1));
    // The gate refuses the author as initiator of PROD: nothing deployed,
    // nothing reported.
    assert!(!run_github(
        &github,
        &github_context("prod", "erin"),
        0,
        &scratch
    ));
    assert!(!run_github(
        &github,
        &github_context("stage", "rita"),
        1,
        &scratch
    ));
    assert!(run_github(
        &github,
        &github_context("stage", "rita"),
        0,
        &scratch
    ));
    assert!(gitlab_job("prod", "rita", 0));
    let states = board.states().await;
    let expected = [
        ("dev", "succeeded"),
        ("test", "succeeded"),
        ("stage", "failed"),
        ("stage", "failed"),
        ("stage", "succeeded"),
        ("prod", "succeeded"),
    ]
    .map(|(e, s)| (e.to_owned(), s.to_owned()));
    assert_eq!(states, expected);
    let initiators: Vec<String> =
        sqlx::query_scalar("SELECT u.username FROM deployments d JOIN users u ON u.id = d.initiator_id WHERE d.environment = 'prod'")
            .fetch_all(&board.app.pool)
            .await
            .unwrap();
    assert_eq!(initiators, ["rita"]);
}
