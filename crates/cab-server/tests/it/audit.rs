//! The audit trail: append-only in the database, gap-free under concurrency,
//! and `cab audit verify` catches each kind of tampering a superuser could do.

use std::process::Command;

use axum::http::Method;
use cab_domain::Role;
use serde_json::json;
use sqlx::PgPool;

use crate::common::TestApp;

/// A URL for this test's database, for the `cab` binary.
pub fn database_url(pool: &PgPool) -> String {
    let opts = pool.connect_options();
    format!(
        "postgres://{}@{}:{}/{}",
        opts.get_username(),
        opts.get_host(),
        opts.get_port(),
        opts.get_database().unwrap_or("postgres")
    )
}

pub fn cab(pool: &PgPool, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cab"))
        .args(args)
        .env("DATABASE_URL", database_url(pool))
        .env("RUST_LOG", "warn")
        .output()
        .expect("run cab");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Ten or so events from ordinary use.
async fn some_history(app: &TestApp) {
    let admin = app.api_login("adam", &[Role::Admin]).await;
    for name in ["erin", "sam", "carol"] {
        app.api(
            Method::POST,
            "/api/v1/users",
            Some(&admin.token),
            Some(json!({"username": name, "roles": ["engineer"], "password": "long-enough-password"})),
        )
        .await;
    }
    app.token("erin", "wrong-password-here").await;
    app.token("erin", "long-enough-password").await;
}

/// Changes the trail as a superuser would: the append-only triggers off
/// for the statement, on again after.
pub async fn tamper(pool: &PgPool, sql: &str) {
    // As a superuser would: switch the append-only triggers off first.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("ALTER TABLE audit_events DISABLE TRIGGER USER")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("ALTER TABLE audit_head DISABLE TRIGGER USER")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::raw_sql(sql).execute(&mut *tx).await.unwrap();
    sqlx::query("ALTER TABLE audit_events ENABLE TRIGGER USER")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("ALTER TABLE audit_head ENABLE TRIGGER USER")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

fn verify_fails_at(pool: &PgPool, args: &[&str], seq: i64) {
    let (ok, stdout, stderr) = cab(pool, args);
    assert!(!ok, "verify should fail: {stdout}");
    assert!(
        stderr.contains(&format!("audit event {seq} breaks the chain")),
        "{stderr}"
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_intact_trail_verifies(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    some_history(&app).await;
    let n = app.audit_count().await;
    assert!(n >= 7, "{n}");
    let (ok, stdout, stderr) = cab(&pool, &["audit", "verify"]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains(&format!("{n} events checked")), "{stdout}");
    // Against a head recorded now, too.
    let (_, head, _) = cab(&pool, &["audit", "head"]);
    let (ok, _, stderr) = cab(&pool, &["audit", "verify", "--head", head.trim()]);
    assert!(ok, "{stderr}");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_trail_is_append_only(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    some_history(&app).await;
    for sql in [
        "UPDATE audit_events SET action = 'nothing' WHERE seq = 1",
        "DELETE FROM audit_events WHERE seq = 1",
        "TRUNCATE audit_events",
        "UPDATE audit_head SET seq = 1",
        "DELETE FROM audit_head",
    ] {
        let err = sqlx::query(sql).execute(&pool).await.unwrap_err();
        assert!(err.to_string().contains("audit"), "{sql}: {err}");
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_edited_field_is_named(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    some_history(&app).await;
    tamper(
        &pool,
        "UPDATE audit_events SET actor_username = 'someone-else' WHERE seq = 3",
    )
    .await;
    verify_fails_at(&pool, &["audit", "verify"], 3);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_edited_payload_is_named(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    some_history(&app).await;
    tamper(
        &pool,
        "UPDATE audit_events SET payload = payload || '{\"roles\": [\"admin\"]}' WHERE seq = 4",
    )
    .await;
    verify_fails_at(&pool, &["audit", "verify"], 4);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_deleted_event_in_the_middle_is_named(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    some_history(&app).await;
    tamper(&pool, "DELETE FROM audit_events WHERE seq = 4").await;
    verify_fails_at(&pool, &["audit", "verify"], 5);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn reordered_events_are_named(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    some_history(&app).await;
    tamper(
        &pool,
        "UPDATE audit_events SET seq = 1000 WHERE seq = 3;
         UPDATE audit_events SET seq = 3 WHERE seq = 4;
         UPDATE audit_events SET seq = 4 WHERE seq = 1000;",
    )
    .await;
    verify_fails_at(&pool, &["audit", "verify"], 3);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_truncated_tail_is_caught_against_the_recorded_head(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    some_history(&app).await;
    let n = app.audit_count().await;
    // The tail cut off, head row left alone: the database's head catches it.
    tamper(
        &pool,
        &format!("DELETE FROM audit_events WHERE seq > {}", n - 2),
    )
    .await;
    verify_fails_at(&pool, &["audit", "verify"], n - 1);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_truncated_tail_with_a_rewritten_head_is_caught_against_an_external_head(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    some_history(&app).await;
    let (_, recorded, _) = cab(&pool, &["audit", "head"]);
    let n = app.audit_count().await;
    tamper(
        &pool,
        &format!(
            "DELETE FROM audit_events WHERE seq > {keep};
             UPDATE audit_head SET seq = {keep}, hash = (SELECT hash FROM audit_events WHERE seq = {keep});",
            keep = n - 2
        ),
    )
    .await;
    // Self-consistent now, so only the head kept elsewhere tells.
    let (ok, _, _) = cab(&pool, &["audit", "verify"]);
    assert!(ok);
    verify_fails_at(
        &pool,
        &["audit", "verify", "--head", recorded.trim()],
        n - 1,
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn concurrent_writers_leave_no_gaps(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    app.user("erin", &[Role::Engineer]).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let state = app.state.clone();
        tasks.push(tokio::spawn(async move {
            let origin = cab_server::request::Origin::cli();
            let mut tx = state.pool.begin().await.unwrap();
            cab_server::audit_log::record(
                &mut tx,
                None,
                &origin,
                "test.concurrent",
                cab_server::audit_log::Entity::kind("test"),
                json!({"i": i}),
            )
            .await
            .unwrap();
            // Every other writer rolls back: its sequence number is reused, not lost.
            if i % 2 == 0 {
                tx.commit().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM audit_events ORDER BY seq")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    assert_eq!(seqs.len(), 1 + 8);
    let (ok, _, stderr) = cab(&pool, &["audit", "verify"]);
    assert!(ok, "{stderr}");
}

/// `n` events appended through the trail's writer, with payloads of a few
/// shapes (nested objects, arrays, text to escape).
pub async fn long_history(pool: &PgPool, n: i64) {
    let mut tx = pool.begin().await.unwrap();
    for i in 0..n {
        let event = cab_db::audit::NewAuditEvent {
            actor: (i % 3 != 0).then(|| cab_db::audit::AuditActor {
                id: Some(uuid::Uuid::from_u128(i as u128)),
                username: format!("user{}", i % 17),
                roles: vec!["engineer".into(), "cab_member".into()][..(i % 2 + 1) as usize]
                    .to_vec(),
            }),
            action: "change.commented".into(),
            entity_type: "change".into(),
            entity_id: (i % 5 != 0).then(|| format!("change-{}", i % 40)),
            payload: json!({"n": i, "z": {"b": [1, "two\n\"3\"", null], "a": i % 2 == 0}, "é": "ü"}),
            origin: cab_db::audit::AuditOrigin {
                request_id: Some(format!("req-{i}")),
                client_addr: (i % 4 != 0).then(|| "10.0.0.1".to_string()),
            },
        };
        cab_db::audit::append(&mut tx, event).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// The chain is checked in batches of a thousand events, on several
/// threads at once, read by statements of 1,500 events in debug builds: a
/// break at either side of the edge between two batches or two statements,
/// or in the last one, is named exactly as a single pass would name it, and
/// the chain verifies again once mended.
#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn breaks_at_the_edges_between_checked_batches_are_named(pool: PgPool) {
    long_history(&pool, 3_050).await;
    let (ok, stdout, stderr) = cab(&pool, &["audit", "verify"]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("3050 events checked"), "{stdout}");
    for seq in [999, 1000, 1001, 1500, 1501, 2000, 2001, 3000, 3001, 3050] {
        tamper(
            &pool,
            &format!("UPDATE audit_events SET client_addr = '10.9.9.9' WHERE seq = {seq}"),
        )
        .await;
        verify_fails_at(&pool, &["audit", "verify"], seq);
        // Two edits: the first is named, whichever batch finishes first.
        tamper(
            &pool,
            "UPDATE audit_events SET action = 'x' WHERE seq = 2500",
        )
        .await;
        verify_fails_at(&pool, &["audit", "verify"], seq.min(2500));
        tamper(
            &pool,
            &format!(
                "UPDATE audit_events SET client_addr = CASE WHEN seq % 4 = 1 THEN NULL ELSE '10.0.0.1' END,
                        action = 'change.commented'
                 WHERE seq IN ({seq}, 2500)"
            ),
        )
        .await;
        let (ok, stdout, stderr) = cab(&pool, &["audit", "verify"]);
        assert!(ok, "mended at {seq}: {stdout}{stderr}");
    }
    // An event missing where one batch ends and the next begins.
    tamper(
        &pool,
        "CREATE TABLE kept AS SELECT * FROM audit_events WHERE seq IN (1000, 1001);
         DELETE FROM audit_events WHERE seq = 1000;",
    )
    .await;
    verify_fails_at(&pool, &["audit", "verify"], 1001);
    tamper(
        &pool,
        "INSERT INTO audit_events SELECT * FROM kept WHERE seq = 1000;
         DELETE FROM audit_events WHERE seq = 1001;",
    )
    .await;
    verify_fails_at(&pool, &["audit", "verify"], 1002);
    tamper(
        &pool,
        "INSERT INTO audit_events SELECT * FROM kept WHERE seq = 1001",
    )
    .await;
    let (ok, _, stderr) = cab(&pool, &["audit", "verify"]);
    assert!(ok, "{stderr}");
    // A head kept elsewhere, at an edge: its own hash holds, another does not.
    let hash: Vec<u8> = sqlx::query_scalar("SELECT hash FROM audit_events WHERE seq = 1000")
        .fetch_one(&pool)
        .await
        .unwrap();
    let (ok, _, stderr) = cab(
        &pool,
        &[
            "audit",
            "verify",
            "--head",
            &format!("1000:{}", hex::encode(&hash)),
        ],
    );
    assert!(ok, "{stderr}");
    let other: Vec<u8> = sqlx::query_scalar("SELECT hash FROM audit_events WHERE seq = 1001")
        .fetch_one(&pool)
        .await
        .unwrap();
    verify_fails_at(
        &pool,
        &[
            "audit",
            "verify",
            "--head",
            &format!("1000:{}", hex::encode(&other)),
        ],
        1000,
    );
}

/// A head row moved far beyond the last event, around CAB: the check stops
/// at the first window of event numbers that holds no event and names the
/// first missing one, instead of reading empty windows up to the claimed
/// head.
#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_head_moved_far_beyond_the_chain_is_named_at_once(pool: PgPool) {
    long_history(&pool, 20).await;
    tamper(&pool, "UPDATE audit_head SET seq = 9000000000000000000").await;
    let started = std::time::Instant::now();
    verify_fails_at(&pool, &["audit", "verify"], 21);
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

/// A field that cannot be read back (a NULL among the roles, written around
/// CAB) is a break at that event, not a check that could not be made.
#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_event_whose_fields_cannot_be_read_is_named(pool: PgPool) {
    long_history(&pool, 20).await;
    tamper(
        &pool,
        "UPDATE audit_events SET actor_roles = '{NULL}' WHERE seq = 5",
    )
    .await;
    let (ok, _, stderr) = cab(&pool, &["audit", "verify"]);
    assert!(!ok);
    assert!(
        stderr.contains("audit event 5 breaks the chain: its stored fields cannot be read"),
        "{stderr}"
    );
    // And it is recorded as what the check found.
    let found: Option<i64> =
        sqlx::query_scalar("SELECT finding_seq FROM audit_verifications ORDER BY id DESC LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(found, Some(5));
}
