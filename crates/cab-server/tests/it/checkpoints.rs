//! Signed checkpoints of the audit chain: signed once per head however
//! many servers race, at least hourly while events arrive, published with
//! their keys, verifiable by any C2SP signed-note verifier, refused over a
//! broken chain, and the starting point of the page's verification.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use cab_domain::Role;
use cab_domain::checkpoint::{VerifierKey, open};
use cab_server::checkpoints::{self, EVERY, Unverified};
use cab_server::crypto::Keys;
use chrono::Utc;
use serde_json::Value;
use sha2::Digest;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::audit::{cab, tamper};
use crate::common::{TEST_SECRET, TestApp};

const NAME: &str = "cab.example.test/audit";

async fn published_key(app: &TestApp) -> VerifierKey {
    let keys = app.api(Method::GET, "/api/v1/audit/keys", None, None).await;
    assert_eq!(keys.status, StatusCode::OK, "{}", keys.body);
    let first = keys.json()[0]["verifier_key"]
        .as_str()
        .expect("a key")
        .to_owned();
    VerifierKey::parse(&first).expect("a verifier key")
}

async fn published_key_text(app: &TestApp) -> String {
    let keys = app.api(Method::GET, "/api/v1/audit/keys", None, None).await;
    keys.json()[0]["verifier_key"].as_str().unwrap().to_owned()
}

async fn checkpoint_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM audit_checkpoints")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// `n` events: refused sign-ins.
pub async fn some_events(app: &TestApp, n: usize) {
    for i in 0..n {
        app.token(&format!("nobody{i}"), "wrong-password-here")
            .await;
    }
}

#[sqlx::test(migrations = "../../migrations")]
async fn two_servers_sign_each_due_head_once(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    some_events(&app, 3).await;
    let keys = Keys::new(TEST_SECRET);
    // A second replica: its own pool on the same database.
    let other = PgPoolOptions::new()
        .max_connections(2)
        .connect_with((*pool.connect_options()).clone())
        .await
        .unwrap();
    let now = Utc::now();
    let (a, b) = tokio::join!(
        checkpoints::sign_if_due(&pool, &keys, NAME, now, EVERY),
        checkpoints::sign_if_due(&other, &keys, NAME, now, EVERY),
    );
    let signed: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert!(!signed.is_empty());
    assert_eq!(checkpoint_count(&pool).await, 1, "signed once");
    let first = signed[0].clone();
    // The first key's record is an event too; the checkpoint covers it.
    let head: i64 = sqlx::query_scalar("SELECT seq FROM audit_head")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(first.seq, head);

    // Not due again within the hour, even though the chain moved.
    some_events(&app, 2).await;
    let soon = now + chrono::Duration::minutes(30);
    for p in [&pool, &other] {
        let latest = checkpoints::sign_if_due(p, &keys, NAME, soon, EVERY)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(latest.seq, first.seq);
    }
    assert_eq!(checkpoint_count(&pool).await, 1);

    // An hour on, once, for the head that moved.
    let later = now + chrono::Duration::minutes(61);
    let (a, b) = tokio::join!(
        checkpoints::sign_if_due(&pool, &keys, NAME, later, EVERY),
        checkpoints::sign_if_due(&other, &keys, NAME, later, EVERY),
    );
    let _ = (a.unwrap(), b.unwrap());
    assert_eq!(checkpoint_count(&pool).await, 2);
    // And not at all when nothing happened since.
    let much_later = now + chrono::Duration::minutes(200);
    checkpoints::sign_if_due(&pool, &keys, NAME, much_later, EVERY)
        .await
        .unwrap();
    assert_eq!(checkpoint_count(&pool).await, 2);

    // Each is a C2SP signed note that opens with the published key.
    let key = published_key(&app).await;
    assert_eq!(key.name, NAME);
    let list = app
        .api(Method::GET, "/api/v1/audit/checkpoints", None, None)
        .await;
    assert_eq!(list.status, StatusCode::OK);
    let list = list.json();
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows[0]["seq"].as_i64() > rows[1]["seq"].as_i64(),
        "newest first"
    );
    for row in rows {
        let note = row["note"].as_str().unwrap();
        let cp = open(note, &key).expect("verifies");
        assert_eq!(Some(cp.seq), row["seq"].as_i64());
        assert_eq!(hex::encode(&cp.hash), row["hash"].as_str().unwrap());
        assert_eq!(cp.origin, NAME);
        let stored: Vec<u8> = sqlx::query_scalar("SELECT hash FROM audit_events WHERE seq = $1")
            .bind(cp.seq)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(stored, cp.hash);
    }
    // The key's making was recorded, with its verifier key.
    let made: Vec<Value> = app
        .audit_events()
        .await
        .into_iter()
        .filter(|(a, _)| a == "audit.checkpoint_key_made")
        .map(|(_, p)| p)
        .collect();
    assert_eq!(made.len(), 1);
    assert_eq!(made[0]["first"], true);
    assert_eq!(made[0]["verifier_key"], published_key_text(&app).await);
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_broken_chain_is_not_signed_and_the_page_says_where(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let adam = app.api_login("adam", &[Role::Admin]).await;
    let auditor = app.browser_login("audrey", &[Role::Auditor]).await;
    let signed = app
        .api(
            Method::POST,
            "/api/v1/audit/checkpoints",
            Some(&adam.token),
            None,
        )
        .await;
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.body);
    let at = signed.json()["seq"].as_i64().unwrap();
    let page = app.get_page("/audit", Some(&auditor.cookie)).await;
    assert!(
        page.body.contains(&format!(
            "The chain verifies from event {at}, whose checkpoint CAB signed at"
        )),
        "{}",
        page.body
    );
    // Asking again at the same head gives the same checkpoint.
    let again = app
        .api(
            Method::POST,
            "/api/v1/audit/checkpoints",
            Some(&adam.token),
            None,
        )
        .await;
    assert_eq!(again.json()["note"], signed.json()["note"]);
    assert_eq!(checkpoint_count(&pool).await, 1);

    // An event after the checkpoint is edited: no checkpoint over it.
    some_events(&app, 2).await;
    tamper(
        &pool,
        &format!(
            "UPDATE audit_events SET payload = '{{\"username\":\"someone-else\"}}' WHERE seq = {}",
            at + 1
        ),
    )
    .await;
    let refused = app
        .api(
            Method::POST,
            "/api/v1/audit/checkpoints",
            Some(&adam.token),
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(refused.problem_code(), "audit_chain_broken");
    assert!(
        refused.json()["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("audit event {}", at + 1))
    );
    assert_eq!(checkpoint_count(&pool).await, 1);
    let page = app.get_page("/audit", Some(&auditor.cookie)).await;
    assert!(page.body.contains("alert-error"), "{}", page.body);
    assert!(
        page.body
            .contains(&format!("audit event {} breaks the chain", at + 1))
    );
    // The schedule signs nothing either.
    let keys = Keys::new(TEST_SECRET);
    let later = Utc::now() + chrono::Duration::hours(2);
    let r = checkpoints::sign_if_due(&pool, &keys, NAME, later, EVERY).await;
    assert!(matches!(r, Err(Unverified::Broken(_))), "{r:?}");
    // An export still works, cut unsigned at the head, and says so.
    let audrey = app.api_login("audra", &[Role::Auditor]).await;
    let export = app
        .api(
            Method::GET,
            "/api/v1/audit/events/export?format=ndjson",
            Some(&audrey.token),
            None,
        )
        .await;
    assert_eq!(export.status, StatusCode::OK);
    let trailer: Value = serde_json::from_str(export.body.lines().last().unwrap()).unwrap();
    assert!(trailer["trailer"]["checkpoint"]["note"].is_null());
}

#[sqlx::test(migrations = "../../migrations")]
async fn an_edited_event_before_the_checkpoint_is_caught_at_it(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let adam = app.api_login("adam", &[Role::Admin]).await;
    let signed = app
        .api(
            Method::POST,
            "/api/v1/audit/checkpoints",
            Some(&adam.token),
            None,
        )
        .await;
    let at = signed.json()["seq"].as_i64().unwrap();
    // Rewritten up to and including the checkpoint's event, hashes and all:
    // the event no longer has the hash CAB signed.
    tamper(
        &pool,
        &format!(
            "UPDATE audit_events SET hash = '\\x{}' WHERE seq = {at}",
            "11".repeat(32)
        ),
    )
    .await;
    let auditor = app.browser_login("audrey", &[Role::Auditor]).await;
    let page = app.get_page("/audit", Some(&auditor.cookie)).await;
    assert!(
        page.body.contains(&format!(
            "the checkpoint at event {at} does not verify: the event it names has another hash now"
        )),
        "{}",
        page.body
    );
}

#[sqlx::test(migrations = "../../migrations")]
async fn only_administrators_ask_for_a_checkpoint(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    for (name, role) in [("audrey", Role::Auditor), ("erin", Role::Engineer)] {
        let who = app.api_login(name, &[role]).await;
        let before = app.audit_count().await;
        let resp = app
            .api(
                Method::POST,
                "/api/v1/audit/checkpoints",
                Some(&who.token),
                None,
            )
            .await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
        assert_eq!(resp.problem_code(), "admin_required");
        assert_eq!(app.audit_count().await, before + 1);
        assert_eq!(
            app.denials().await.last().unwrap(),
            &("audit.checkpoint".to_owned(), "admin_required".to_owned())
        );
        assert_eq!(checkpoint_count(&pool).await, 0);
    }
}

#[sqlx::test(migrations = "../../migrations")]
async fn an_export_ends_at_a_checkpoint_signed_for_it(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let auditor = app.api_login("audrey", &[Role::Auditor]).await;
    some_events(&app, 3).await;
    let export = app
        .api(
            Method::GET,
            "/api/v1/audit/events/export?format=ndjson",
            Some(&auditor.token),
            None,
        )
        .await;
    assert_eq!(export.status, StatusCode::OK);
    let lines: Vec<&str> = export.body.lines().collect();
    let trailer: Value = serde_json::from_str(lines[lines.len() - 1]).unwrap();
    let note = trailer["trailer"]["checkpoint"]["note"].as_str().unwrap();
    let cp = open(note, &published_key(&app).await).expect("verifies");
    let last: Value = serde_json::from_str(lines[lines.len() - 2]).unwrap();
    assert_eq!(last["seq"].as_i64(), Some(cp.seq));
    assert_eq!(last["hash"].as_str(), Some(hex::encode(&cp.hash).as_str()));
    assert_eq!(
        trailer["trailer"]["checkpoint"]["seq"].as_i64(),
        Some(cp.seq)
    );
    // The record of the export names its cut, after it.
    let (action, payload) = app.audit_events().await.pop().unwrap();
    assert_eq!(action, "audit.exported");
    assert_eq!(payload["cut_at"].as_i64(), Some(cp.seq));
    assert_eq!(payload["signed"], true);
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_changed_secret_key_makes_a_new_checkpoint_key(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    some_events(&app, 1).await;
    let first = checkpoints::sign_now(&pool, &Keys::new(TEST_SECRET), NAME)
        .await
        .unwrap()
        .unwrap();
    some_events(&app, 1).await;
    let other = Keys::new(b"another secret key that is long enough for CAB");
    let second = checkpoints::sign_now(&pool, &other, NAME)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(first.kid, second.kid);
    let keys = app
        .api(Method::GET, "/api/v1/audit/keys", None, None)
        .await
        .json();
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys[0]["retired_at"].is_null());
    assert!(
        !keys[1]["retired_at"].is_null(),
        "the old key stays published"
    );
    // Each checkpoint opens with its own key only.
    let new_key = VerifierKey::parse(keys[0]["verifier_key"].as_str().unwrap()).unwrap();
    let old_key = VerifierKey::parse(keys[1]["verifier_key"].as_str().unwrap()).unwrap();
    assert!(open(&second.note, &new_key).is_ok());
    assert!(open(&first.note, &old_key).is_ok());
    assert!(open(&first.note, &new_key).is_err());
    // The page verifies from the newest, signed by the new key.
    let auditor = app.browser_login("audrey", &[Role::Auditor]).await;
    let page = app.get_page("/audit", Some(&auditor.cookie)).await;
    assert!(
        page.body
            .contains(&format!("The chain verifies from event {}", second.seq))
    );
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_command_line_signs_and_lists_the_keys(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    some_events(&app, 2).await;
    let secret = String::from_utf8(TEST_SECRET.to_vec()).unwrap();
    let (ok, out, err) = cab(
        &pool,
        &[
            "audit",
            "checkpoint",
            "--secret-key",
            &secret,
            "--public-url",
            "https://cab.example.test/",
        ],
    );
    assert!(ok, "{err}");
    let (ok, keys, err) = cab(&pool, &["audit", "keys"]);
    assert!(ok, "{err}");
    let key = VerifierKey::parse(keys.lines().next().unwrap()).unwrap();
    assert_eq!(key.name, "cab.example.test/audit");
    let cp = open(&out, &key).expect("the printed note verifies");
    assert_eq!(checkpoint_count(&pool).await, 1);
    // The server's schedule would now find nothing due.
    let keys = Keys::new(TEST_SECRET);
    let row = checkpoints::sign_if_due(&pool, &keys, NAME, Utc::now(), Duration::from_secs(3600))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.seq, cp.seq);
}

/// Runs `cab` with no database anywhere near.
fn cab_offline(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cab"))
        .args(args)
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/nothing")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run cab");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The independent verifier written from the README.
fn python_verifies(file: &std::path::Path, key: &str) -> (bool, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/verify_export.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(file)
        .arg(key)
        .output()
        .expect("run python3");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[sqlx::test(migrations = "../../migrations")]
async fn an_export_verifies_offline_with_cab_and_with_an_independent_script(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let auditor = app.api_login("audrey", &[Role::Auditor]).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    app.file_change(
        &erin,
        crate::changes::complete_change("Rotate the \"edge\" keys, ünïcode & =1+1"),
    )
    .await;
    some_events(&app, 3).await;
    let dir = export_dir();
    let export = |name: &str| {
        let path = dir.join(name);
        let app = &app;
        let token = auditor.token.clone();
        async move {
            let resp = app
                .api(
                    Method::GET,
                    "/api/v1/audit/events/export?format=ndjson",
                    Some(&token),
                    None,
                )
                .await;
            assert_eq!(resp.status, StatusCode::OK);
            std::fs::write(&path, resp.body.as_bytes()).unwrap();
            path
        }
    };
    let earlier = export("earlier.ndjson").await;
    let key_json = app
        .api(Method::GET, "/api/v1/audit/keys", None, None)
        .await
        .json();
    let key = key_json[0]["verifier_key"].as_str().unwrap().to_owned();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();

    let (ok, out, err) = cab_offline(&[
        "audit",
        "verify",
        "--export",
        &path(&earlier),
        "--key",
        &key,
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("export verified: "), "{out}");
    assert!(
        out.contains("the chain intact from event 1 to the checkpoint at event"),
        "{out}"
    );
    let (ok, out) = python_verifies(&earlier, &key);
    assert!(ok, "{out}");
    assert!(out.contains("chain intact"), "{out}");

    // An export of every event without its own signed note (as CAB made
    // them before it signed exports as a whole) is refused: its chain
    // vouches for the hashed fields, but nothing for the names shown beside
    // them, its header or where it was cut.
    let text = std::fs::read_to_string(&earlier).unwrap();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let unnoted = dir.join("unnoted.ndjson");
    let stripped = with_trailer(&lines, |t| {
        t.as_object_mut().unwrap().remove("export_note");
    });
    std::fs::write(&unnoted, stripped).unwrap();
    let (ok, out, err) = cab_offline(&[
        "audit",
        "verify",
        "--export",
        &path(&unnoted),
        "--key",
        &key,
    ]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("carries no signed note of the export") && err.contains("export it again"),
        "{err}"
    );
    let (ok, out) = python_verifies(&unnoted, &key);
    assert!(!ok, "{out}");
    assert!(out.contains("no signed note of the export"), "{out}");

    // A later export extends the earlier one; the key may come in a file.
    some_events(&app, 2).await;
    let later = export("later.ndjson").await;
    let key_file = dir.join("key.txt");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let (ok, out, err) = cab_offline(&[
        "audit",
        "verify",
        "--export",
        &path(&later),
        "--key",
        &path(&key_file),
        "--from-checkpoint",
        &path(&earlier),
    ]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("it extends the earlier checkpoint at event"),
        "{out}"
    );
    // Not the other way round.
    let (ok, _, err) = cab_offline(&[
        "audit",
        "verify",
        "--export",
        &path(&earlier),
        "--key",
        &key,
        "--from-checkpoint",
        &path(&later),
    ]);
    assert!(!ok);
    assert!(err.contains("beyond this export"), "{err}");

    // One edited byte in one event: both verifiers refuse, naming it.
    let text = std::fs::read_to_string(&later).unwrap();
    let edited = text.replacen("nobody1", "nobodyX", 1);
    assert_ne!(edited, text);
    let tampered = dir.join("tampered.ndjson");
    std::fs::write(&tampered, &edited).unwrap();
    let (ok, _, err) = cab_offline(&[
        "audit",
        "verify",
        "--export",
        &path(&tampered),
        "--key",
        &key,
    ]);
    assert!(!ok);
    assert!(err.contains("export does not verify: line "), "{err}");
    assert!(err.contains("edited"), "{err}");
    let (ok, out) = python_verifies(&tampered, &key);
    assert!(!ok, "{out}");
    // The same edit with the trailer's digest redone to hide it (anyone
    // can): the field still differs from the bytes that were hashed.
    let mut lines: Vec<String> = edited.split_inclusive('\n').map(str::to_owned).collect();
    let last = lines.len() - 1;
    let mut trailer: Value = serde_json::from_str(&lines[last]).unwrap();
    trailer["trailer"]["sha256"] = Value::String(hex::encode(sha2::Sha256::digest(
        lines[..last].concat().as_bytes(),
    )));
    lines[last] = format!("{trailer}\n");
    let redone = dir.join("redone.ndjson");
    std::fs::write(&redone, lines.concat()).unwrap();
    let (ok, _, err) = cab_offline(&["audit", "verify", "--export", &path(&redone), "--key", &key]);
    assert!(!ok);
    assert!(err.contains("edited"), "{err}");
    let (ok, out) = python_verifies(&redone, &key);
    assert!(!ok, "{out}");
    assert!(out.contains("is not the one hashed"), "{out}");
    // A line dropped: the chain breaks at the line that took its place.
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    lines.remove(3);
    let dropped = dir.join("dropped.ndjson");
    std::fs::write(&dropped, lines.concat()).unwrap();
    let (ok, _, err) = cab_offline(&[
        "audit",
        "verify",
        "--export",
        &path(&dropped),
        "--key",
        &key,
    ]);
    assert!(!ok);
    assert!(err.contains("line 4"), "{err}");
    assert!(!python_verifies(&dropped, &key).0);
    // Another CAB's key does not open the checkpoint.
    let stranger = cab_domain::checkpoint::verifier_key(
        "cab.example.test/audit",
        &ed25519_dalek::SigningKey::from_bytes(&[4; 32])
            .verifying_key()
            .to_bytes(),
    );
    let (ok, _, err) = cab_offline(&[
        "audit",
        "verify",
        "--export",
        &path(&later),
        "--key",
        &stranger,
    ]);
    assert!(!ok);
    assert!(err.contains("no signature by the key"), "{err}");
    assert!(!python_verifies(&later, &stranger).0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[sqlx::test(migrations = "../../migrations")]
async fn cab_audit_verify_checks_every_checkpoint_too(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    some_events(&app, 2).await;
    let keys = Keys::new(TEST_SECRET);
    let first = checkpoints::sign_now(&pool, &keys, NAME)
        .await
        .unwrap()
        .unwrap();
    some_events(&app, 2).await;
    checkpoints::sign_now(&pool, &keys, NAME).await.unwrap();
    let (ok, out, err) = cab(&pool, &["audit", "verify"]);
    assert!(ok, "{err}");
    assert!(out.contains("; 2 signed checkpoints hold"), "{out}");
    // A checkpoint slipped in by hand, its note copied from a real one but
    // claiming a later event: the chain holds, the checkpoint does not.
    let next: i64 = first.seq + 1;
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("ALTER TABLE audit_checkpoints DISABLE TRIGGER USER")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO audit_checkpoints (seq, hash, signed_at, kid, note)
         SELECT $1, e.hash, now(), c.kid, c.note FROM audit_events e, audit_checkpoints c
         WHERE e.seq = $1 AND c.seq = $2",
    )
    .bind(next)
    .bind(first.seq)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("ALTER TABLE audit_checkpoints ENABLE TRIGGER USER")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (ok, _, err) = cab(&pool, &["audit", "verify"]);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "the checkpoint at event {next} does not verify: its note names another head"
        )),
        "{err}"
    );
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_published_key_is_only_ever_retired(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    some_events(&app, 1).await;
    checkpoints::sign_now(&pool, &Keys::new(TEST_SECRET), NAME)
        .await
        .unwrap();
    for sql in [
        "UPDATE audit_checkpoint_keys SET public_key = public_key || ''",
        "UPDATE audit_checkpoint_keys SET public_key = decode(repeat('00', 32), 'hex')",
        "UPDATE audit_checkpoint_keys SET name = 'someone/else'",
        "DELETE FROM audit_checkpoint_keys",
        "TRUNCATE audit_checkpoint_keys CASCADE",
    ] {
        let refused = sqlx::query(sql).execute(&pool).await;
        if sql.contains("public_key || ''") {
            // The same bytes: nothing changes, so nothing is refused.
            assert!(refused.is_ok(), "{sql}");
            continue;
        }
        assert!(refused.is_err(), "{sql}");
    }
    // Retired once, and then never again.
    sqlx::query("UPDATE audit_checkpoint_keys SET retired_at = now()")
        .execute(&pool)
        .await
        .unwrap();
    assert!(
        sqlx::query("UPDATE audit_checkpoint_keys SET retired_at = NULL")
            .execute(&pool)
            .await
            .is_err()
    );
}

/// An NDJSON export of the events as an auditor downloads it, to a file.
async fn export_to(app: &TestApp, token: &str, query: &str, path: &std::path::Path) -> String {
    let resp = app
        .api(
            Method::GET,
            &format!("/api/v1/audit/events/export?format=ndjson{query}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    std::fs::write(path, resp.body.as_bytes()).unwrap();
    resp.body
}

/// A directory of its own for a test's exports.
fn export_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cab-export-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The file's lines with its trailer changed by `edit`.
fn with_trailer(lines: &[&str], edit: impl FnOnce(&mut Value)) -> String {
    let last = lines.len() - 1;
    let mut trailer: Value = serde_json::from_str(lines[last]).unwrap();
    edit(&mut trailer["trailer"]);
    format!("{}{trailer}\n", lines[..last].concat())
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_filtered_export_is_signed_as_a_whole_and_verifies_offline(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let auditor = app.api_login("audrey", &[Role::Auditor]).await;
    some_events(&app, 4).await;
    let dir = export_dir();
    let good = dir.join("filtered.ndjson");
    let text = export_to(&app, &auditor.token, "&action=auth.login_failed", &good).await;
    let key = published_key_text(&app).await;
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let verify = |file: &std::path::Path| {
        cab_offline(&["audit", "verify", "--export", &path(file), "--key", &key])
    };

    // The trailer carries CAB's note of the export, bound to the file.
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    assert_eq!(lines.len(), 6, "header, four failed sign-ins, trailer");
    let trailer: Value = serde_json::from_str(lines[5]).unwrap();
    let signed = trailer["trailer"]["export_note"].as_str().expect("signed");
    let note = cab_domain::checkpoint::open_text(signed, &VerifierKey::parse(&key).unwrap())
        .expect("signed by the checkpoint key");
    let note = cab_domain::checkpoint::ExportNote::parse(&note).expect("an export note");
    let checkpoint_text = trailer["trailer"]["checkpoint"]["note"].as_str().unwrap();
    assert_eq!(Some(note.origin.as_str()), checkpoint_text.lines().next());
    assert_eq!(note.trail, "events");
    assert_eq!(note.filter, r#"{"action":"auth.login_failed"}"#);
    assert_eq!(note.rows, 4);
    assert_eq!(
        note.sha256,
        hex::encode(sha2::Sha256::digest(lines[..5].concat().as_bytes()))
    );
    assert_eq!(
        note.cut.seq,
        trailer["trailer"]["checkpoint"]["seq"].as_i64().unwrap()
    );
    assert!(
        open(signed, &VerifierKey::parse(&key).unwrap()).is_err(),
        "an export's note is never a checkpoint"
    );

    let (ok, out, err) = verify(&good);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(
            "4 events, each matching its hash, exactly the ones CAB exported for this filter"
        ),
        "{out}"
    );
    let (ok, out) = python_verifies(&good, &key);
    assert!(ok, "{out}");
    assert!(
        out.contains("exactly those exported for the filter"),
        "{out}"
    );

    let refused = |name: &str, content: String, words: &str| {
        let content_lines = content.lines().count();
        let file = dir.join(name);
        std::fs::write(&file, content).unwrap();
        let (ok, out, err) = verify(&file);
        assert!(!ok, "{name}: {out}");
        // The trailer is the line refused.
        let trailer_line = format!("line {}:", content_lines);
        assert!(err.contains(&trailer_line), "{name}: {err}");
        assert!(err.contains(words), "{name}: {err}");
        let (ok, out) = python_verifies(&file, &key);
        assert!(!ok, "{name}: {out}");
        out
    };
    // A line dropped, the trailer's count and digest redone (anyone can).
    let mut dropped: Vec<&str> = lines.clone();
    dropped.remove(2);
    let rows_redone = with_trailer(&dropped, |t| {
        t["rows"] = Value::from(3);
        t["sha256"] = Value::String(hex::encode(sha2::Sha256::digest(
            dropped[..4].concat().as_bytes(),
        )));
    });
    let out = refused(
        "dropped.ndjson",
        rows_redone,
        "CAB signed an export of 4 rows but the file holds 3",
    );
    assert!(out.contains("another rows"), "{out}");
    // The same note signed by another key.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
    let (text_only, _) = signed.split_once("\n\n").unwrap();
    let forged = cab_domain::checkpoint::sign_text(&format!("{text_only}\n"), NAME, &stranger);
    refused(
        "stranger.ndjson",
        with_trailer(&lines, |t| t["export_note"] = Value::String(forged)),
        "the export's note: the note carries no signature by the key",
    );
    // The checkpoint's note, signed by the same key, pasted as the export's.
    let checkpoint_note = trailer["trailer"]["checkpoint"]["note"].clone();
    refused(
        "pasted.ndjson",
        with_trailer(&lines, |t| t["export_note"] = checkpoint_note),
        "not the note of an export",
    );
    // No note at all.
    refused(
        "unsigned.ndjson",
        with_trailer(&lines, |t| t["export_note"] = Value::Null),
        "carries no signed note of the export",
    );
    // The header's filter widened: the digest redone, the note still says
    // which filter CAB exported.
    let mut widened: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    widened[0] = "{\"export\":{\"filter\":{\"action\":\"auth.login_failed\",\"outcome\":\"all\"},\"trail\":\"events\"}}\n".into();
    let widened_refs: Vec<&str> = widened.iter().map(String::as_str).collect();
    let redone = with_trailer(&widened_refs, |t| {
        t["sha256"] = Value::String(hex::encode(sha2::Sha256::digest(
            widened_refs[..5].concat().as_bytes(),
        )));
    });
    refused("widened.ndjson", redone, "signed for the filter");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[sqlx::test(migrations = "../../migrations")]
async fn exports_signed_before_and_after_a_key_rotation_verify_with_both_keys(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let auditor = app.api_login("audrey", &[Role::Auditor]).await;
    some_events(&app, 2).await;
    let dir = export_dir();
    let earlier = dir.join("earlier.ndjson");
    export_to(&app, &auditor.token, "", &earlier).await;
    let old_key = published_key_text(&app).await;
    // The secret changes: another key signs from then on.
    some_events(&app, 1).await;
    let other = Keys::new(b"another secret key that is long enough for CAB");
    checkpoints::sign_now(&pool, &other, NAME)
        .await
        .unwrap()
        .unwrap();
    some_events(&app, 1).await;
    let later = dir.join("later.ndjson");
    export_to(&app, &auditor.token, "", &later).await;
    let keys = app.api(Method::GET, "/api/v1/audit/keys", None, None).await;
    let listed: Vec<String> = keys
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["verifier_key"].as_str().unwrap().to_owned())
        .collect();
    assert!(listed.len() >= 2, "{listed:?}");
    let new_key = listed[0].clone();
    assert_ne!(new_key, old_key);
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let (later_p, earlier_p) = (path(&later), path(&earlier));

    // Under the new key alone, the earlier checkpoint does not open.
    let (ok, _, err) = cab_offline(&[
        "audit",
        "verify",
        "--export",
        &later_p,
        "--key",
        &new_key,
        "--from-checkpoint",
        &earlier_p,
    ]);
    assert!(!ok);
    assert!(
        err.contains("--from-checkpoint: the note carries no signature by the key"),
        "{err}"
    );
    // Each key given: both verify.
    let mut args = vec![
        "audit",
        "verify",
        "--export",
        &later_p,
        "--from-checkpoint",
        &earlier_p,
    ];
    for k in &listed {
        args.extend(["--key", k.as_str()]);
    }
    let (ok, out, err) = cab_offline(&args);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("it extends the earlier checkpoint at event"),
        "{out}"
    );
    // The keys in a file, one a line, as `cab audit keys` prints them; or
    // as GET /api/v1/audit/keys answers.
    let lines_file = dir.join("keys.txt");
    std::fs::write(&lines_file, format!("{}\n", listed.join("\n"))).unwrap();
    let json_file = dir.join("keys.json");
    std::fs::write(&json_file, &keys.body).unwrap();
    for file in [&lines_file, &json_file] {
        let (ok, out, err) = cab_offline(&[
            "audit",
            "verify",
            "--export",
            &later_p,
            "--key",
            &path(file),
            "--from-checkpoint",
            &earlier_p,
        ]);
        assert!(ok, "{}: {out}{err}", file.display());
        assert!(out.contains("signed by the key "), "{out}");
    }
    // Which key signed is said. A key CAB retired after the checkpoint is
    // noted; one it retired before is no key of CAB's any more: whoever
    // signed with it holds the old key, and the export is refused. Given
    // twice (bare, and in the JSON that says it is retired), it is one key.
    let old_named = old_key.splitn(3, '+').take(2).collect::<Vec<_>>().join("+");
    let retired_file = dir.join("retired.json");
    let with_retired = |retired_at: &str| {
        std::fs::write(
            &retired_file,
            serde_json::json!([{"verifier_key": old_key, "retired_at": retired_at}]).to_string(),
        )
        .unwrap();
        cab_offline(&[
            "audit",
            "verify",
            "--export",
            &earlier_p,
            "--key",
            &old_key,
            "--key",
            &path(&retired_file),
        ])
    };
    let (ok, out, err) = with_retired("2999-01-01T00:00:00Z");
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!("\nsigned by the key {old_named}\n")),
        "{out}"
    );
    assert!(
        err.contains(&format!(
            "note: the checkpoint is signed by the key {old_named}, retired since, at 2999-01-01T00:00:00Z"
        )) && err.contains("note: the export's note is signed by the key"),
        "{err}"
    );
    let (ok, out, err) = with_retired("2000-01-01T00:00:00Z");
    assert!(!ok && out.is_empty(), "{out}");
    assert!(
        err.contains(&format!(
            "export does not verify: the checkpoint is signed by the key {old_named}, which CAB retired at 2000-01-01T00:00:00Z, but the checkpoint says it was signed at "
        )),
        "{err}"
    );
    std::fs::write(
        &retired_file,
        serde_json::json!([{"verifier_key": old_key, "retired_at": "last week"}]).to_string(),
    )
    .unwrap();
    let (ok, _, err) = cab_offline(&[
        "audit",
        "verify",
        "--export",
        &earlier_p,
        "--key",
        &path(&retired_file),
    ]);
    assert!(!ok);
    assert!(err.contains("entry 1: retired_at is not a time"), "{err}");
    let (ok, out) = python_verifies(&later, &path(&lines_file));
    assert!(ok, "{out}");
    // A key that is not a key, in a file or given itself, is named.
    let bad_file = dir.join("bad.txt");
    std::fs::write(&bad_file, format!("{}\nnot-a-key\n", listed[0])).unwrap();
    let (ok, _, err) = cab_offline(&[
        "audit",
        "verify",
        "--export",
        &later_p,
        "--key",
        &path(&bad_file),
    ]);
    assert!(!ok);
    assert!(
        err.contains("key 2: a verifier key is NAME+KEYID+KEY"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
