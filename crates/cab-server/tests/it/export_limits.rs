//! Audit exports and evidence packs each hold a database connection while
//! they are read: a server makes only so many at once, and a download whose
//! client takes nothing is stopped, its statement cancelled and its slot
//! given back; what the client then reads breaks off instead of ending like
//! a whole file.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use cab_domain::Role;
use cab_server::config::Settings;
use cab_server::state::AppState;
use sqlx::PgPool;

use crate::audit::long_history;
use crate::common::{TEST_SECRET, TestApp};

fn export(token: &str, format: &str) -> Request<Body> {
    Request::get(format!("/api/v1/audit/events/export?format={format}"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

#[sqlx::test(migrations = "../../migrations")]
async fn one_export_at_a_time_and_a_stalled_one_is_stopped(pool: PgPool) {
    let mut settings = Settings::for_tests();
    settings.audit_exports = 1;
    settings.audit_export_stall = Duration::from_secs(2);
    let app = TestApp::from_state(AppState::new(pool.clone(), settings, TEST_SECRET).unwrap());
    // Enough events for more chunks than the response holds unread.
    long_history(&pool, 10_500).await;
    let audrey = app.api_login("audrey", &[Role::Auditor]).await;

    // The first export, its body never read: it holds the only slot.
    let stalled = app.open(export(&audrey.token, "ndjson")).await;
    assert_eq!(stalled.status(), StatusCode::OK);
    let before = app.audit_count().await;
    let second = app.send(export(&audrey.token, "csv")).await;
    assert_eq!(
        second.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        second.body
    );
    assert_eq!(second.problem_code(), "exports_busy");
    assert_eq!(second.headers[header::RETRY_AFTER], "60");
    assert!(
        second.json()["detail"]
            .as_str()
            .unwrap()
            .contains("already making 1 audit export or evidence pack"),
        "{}",
        second.body
    );
    let pack = app
        .send(
            Request::get("/api/v1/audit/evidence?from=2026-01-01&to=2026-01-31")
                .header(header::AUTHORIZATION, format!("Bearer {}", audrey.token))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(
        pack.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        pack.body
    );
    // Refused before anything was read or recorded.
    assert_eq!(app.audit_count().await, before);

    // Two seconds without the client taking anything: the export stops,
    // its statement is cancelled, and the slot is free again.
    let mut freed = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let again = app.send(export(&audrey.token, "csv")).await;
        if again.status == StatusCode::OK {
            freed = Some(again);
            break;
        }
        assert_eq!(again.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    let whole = freed.expect("the stalled export gave its slot back");
    // The CSV read in full: a header and a line per event, up to its cut.
    assert!(whole.body.lines().count() > 10_500);
    // What the stalled client reads now breaks off: no trailer, an error.
    let read = axum::body::to_bytes(stalled.into_body(), usize::MAX).await;
    assert!(
        read.is_err(),
        "a stopped export must not end like a whole file"
    );
    // No statement of it is left running.
    let running: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND (state = 'active' OR state LIKE 'idle in transaction%')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(running, 0);
}
