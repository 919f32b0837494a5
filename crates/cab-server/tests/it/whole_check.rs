//! The daily check of the whole audit chain, from its first event, with
//! every signed checkpoint: made once however many servers run, recorded,
//! and shown on the audit page, which itself checks only from the latest
//! checkpoint on. A rewrite older than that checkpoint, re-hashed so the
//! page's own check cannot see it, is found by the whole check.

use std::time::Duration;

use axum::http::Method;
use cab_domain::Role;
use cab_server::checkpoints::{self, WHOLE_CHECK_EVERY};
use chrono::Utc;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::audit::{cab, tamper};
use crate::checkpoints::some_events;
use crate::common::TestApp;

async fn checks(pool: &PgPool) -> Vec<(String, Option<i64>, Option<String>)> {
    sqlx::query_as("SELECT run_by, finding_seq, finding FROM audit_verifications ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn sign(app: &TestApp, token: &str) -> i64 {
    let signed = app
        .api(Method::POST, "/api/v1/audit/checkpoints", Some(token), None)
        .await;
    signed.json()["seq"].as_i64().expect("a checkpoint")
}

#[sqlx::test(migrations = "../../migrations")]
async fn two_servers_check_the_whole_chain_once_a_day(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    some_events(&app, 3).await;
    let other = PgPoolOptions::new()
        .max_connections(3)
        .connect_with((*pool.connect_options()).clone())
        .await
        .unwrap();
    let now = Utc::now();
    let (a, b) = tokio::join!(
        checkpoints::check_whole_if_due(&pool, now, WHOLE_CHECK_EVERY),
        checkpoints::check_whole_if_due(&other, now, WHOLE_CHECK_EVERY),
    );
    let made: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(made.len(), 1, "checked once");
    assert_eq!(made[0].events, app.audit_count().await);
    assert!(made[0].finding.is_none());
    assert_eq!(checks(&pool).await, vec![("schedule".into(), None, None)]);
    // Not again within the day, by either.
    let soon = now + chrono::Duration::hours(23);
    for p in [&pool, &other] {
        assert!(
            checkpoints::check_whole_if_due(p, soon, WHOLE_CHECK_EVERY)
                .await
                .unwrap()
                .is_none()
        );
    }
    // A day on, once more.
    let later = now + chrono::Duration::hours(25);
    let (a, b) = tokio::join!(
        checkpoints::check_whole_if_due(&pool, later, WHOLE_CHECK_EVERY),
        checkpoints::check_whole_if_due(&other, later, Duration::from_secs(24 * 3600)),
    );
    assert_eq!(a.unwrap().is_some() as u8 + b.unwrap().is_some() as u8, 1);
    assert_eq!(checks(&pool).await.len(), 2);
    // A check dated a year ahead (a fast clock, or a row written around
    // CAB) does not put the next one off, nor stand as the latest once a
    // real one is made.
    sqlx::query(
        "INSERT INTO audit_verifications (started_at, finished_at, run_by, head_seq, events, checkpoints)
         VALUES (now() + interval '1 year', now() + interval '1 year', 'command', 0, 0, 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let made = checkpoints::check_whole_if_due(&pool, later, WHOLE_CHECK_EVERY)
        .await
        .unwrap()
        .expect("due despite a check dated ahead");
    assert!(made.finished_at < Utc::now() + chrono::Duration::minutes(1));
    assert_eq!(checks(&pool).await.len(), 4);
    // The record itself is append-only.
    let err = sqlx::query("DELETE FROM audit_verifications")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("audit"), "{err}");
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_rewrite_older_than_the_latest_checkpoint_is_found_by_the_whole_check(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let adam = app.api_login("adam", &[Role::Admin]).await;
    some_events(&app, 4).await;
    let first = sign(&app, &adam.token).await;
    some_events(&app, 3).await;
    let latest = sign(&app, &adam.token).await;
    assert!(latest > first);
    let auditor = app.browser_login("audrey", &[Role::Auditor]).await;
    let page = app.get_page("/audit", Some(&auditor.cookie)).await;
    assert!(
        page.body
            .contains("has not been checked from its first event yet"),
        "{}",
        page.body
    );

    // A superuser edits an event before the first checkpoint and re-hashes
    // the events after it up to just before that checkpoint, leaving every
    // checkpointed event, and everything after, as it was.
    let edited: i64 = sqlx::query_scalar(
        "SELECT max(seq) FROM audit_events WHERE seq > 1 AND seq < $1 AND request_id IS NOT NULL",
    )
    .bind(first - 1)
    .fetch_one(&pool)
    .await
    .unwrap();
    tamper(
        &pool,
        &format!(
            "UPDATE audit_events
                SET canonical = replace(canonical::text, encode(convert_to(request_id, 'UTF8'), 'hex'),
                                        encode(convert_to(upper(request_id), 'UTF8'), 'hex'))::bytea,
                    request_id = upper(request_id)
              WHERE seq = {edited};
             DO $$ DECLARE r record; prev bytea; BEGIN
               SELECT hash INTO prev FROM audit_events WHERE seq = {edited} - 1;
               FOR r IN SELECT seq, canonical FROM audit_events WHERE seq >= {edited} AND seq < {first} ORDER BY seq LOOP
                 prev := sha256(prev || r.canonical);
                 UPDATE audit_events SET hash = prev WHERE seq = r.seq;
                 UPDATE audit_events SET prev_hash = prev WHERE seq = r.seq + 1;
               END LOOP;
             END $$;"
        ),
    )
    .await;
    let changed: String = sqlx::query_scalar("SELECT request_id FROM audit_events WHERE seq = $1")
        .bind(edited)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(changed, changed.to_uppercase());

    // The page's own check, from the latest checkpoint, cannot see it.
    let page = app.get_page("/audit", Some(&auditor.cookie)).await;
    assert!(
        page.body
            .contains(&format!("The chain verifies from event {latest}")),
        "{}",
        page.body
    );
    // The daily check finds it, where the rewrite meets the signed
    // checkpoint's event, records it, and the page says so.
    let made = checkpoints::check_whole_if_due(&pool, Utc::now(), WHOLE_CHECK_EVERY)
        .await
        .unwrap()
        .expect("due");
    let (seq, why) = made.finding.clone().expect("a finding");
    assert_eq!(seq, first, "{why}");
    assert!(
        why.contains(&format!("audit event {first} breaks the chain")),
        "{why}"
    );
    let page = app.get_page("/audit", Some(&auditor.cookie)).await;
    assert!(
        page.body
            .contains("found that it does not verify: audit event"),
        "{}",
        page.body
    );
    // `cab audit verify` finds it too, and its check is recorded beside.
    let (ok, _, stderr) = cab(&pool, &["audit", "verify"]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("audit event {first} breaks the chain")),
        "{stderr}"
    );
    let recorded = checks(&pool).await;
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[1].0, "command");
    assert_eq!(recorded[1].1, Some(first));
}

#[sqlx::test(migrations = "../../migrations")]
async fn an_intact_whole_check_is_on_the_page(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let adam = app.api_login("adam", &[Role::Admin]).await;
    some_events(&app, 2).await;
    sign(&app, &adam.token).await;
    let (ok, stdout, stderr) = cab(&pool, &["audit", "verify"]);
    assert!(ok, "{stdout}{stderr}");
    let head: i64 = sqlx::query_scalar("SELECT seq FROM audit_head")
        .fetch_one(&pool)
        .await
        .unwrap();
    let auditor = app.browser_login("audrey", &[Role::Auditor]).await;
    let page = app.get_page("/audit", Some(&auditor.cookie)).await;
    assert!(
        page.body.contains(&format!(
            "The whole trail (events 1 to {head}) and its signed checkpoint verified on"
        )) && page.body.contains("by cab audit verify"),
        "{}",
        page.body
    );
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_whole_check_more_than_two_days_old_is_flagged(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    some_events(&app, 2).await;
    let auditor = app.browser_login("audrey", &[Role::Auditor]).await;
    let record = |hours: i64| {
        sqlx::query(
            "INSERT INTO audit_verifications (started_at, finished_at, run_by, head_seq, events, checkpoints)
             VALUES (now() - make_interval(hours => $1), now() - make_interval(hours => $1), 'schedule', 2, 2, 0)",
        )
        .bind(i32::try_from(hours).unwrap())
        .execute(&pool)
    };
    // A day and a half: one run missed at most, nothing to say.
    record(36).await.unwrap();
    let page = app.get_page("/audit", Some(&auditor.cookie)).await;
    assert!(
        page.body.contains("alert alert-ok\" id=\"whole-check\""),
        "{}",
        page.body
    );
    assert!(!page.body.contains("stopped running"));
    // Over two days: the daily check has stopped, and the page says so.
    record(49).await.unwrap();
    let page = app.get_page("/audit", Some(&auditor.cookie)).await;
    assert!(
        page.body.contains("alert alert-warn\" id=\"whole-check\"")
            && page
                .body
                .contains("That is more than two days ago: the daily check has stopped running."),
        "{}",
        page.body
    );
    // A check made now puts it right.
    let (ok, stdout, stderr) = cab(&pool, &["audit", "verify"]);
    assert!(ok, "{stdout}{stderr}");
    let page = app.get_page("/audit", Some(&auditor.cookie)).await;
    assert!(!page.body.contains("stopped running"), "{}", page.body);
}
