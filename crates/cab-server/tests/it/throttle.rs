//! Login throttling, per account and per client address.

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use cab_domain::Role;
use serde_json::json;
use sqlx::PgPool;

use crate::common::{TestApp, TestResponse};

async fn attempt(app: &TestApp, from: [u8; 4], username: &str, password: &str) -> TestResponse {
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/auth/token")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({ "username": username, "password": password }).to_string(),
        ))
        .unwrap();
    app.send_from(SocketAddr::from((from, 5555)), req).await
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn five_failures_lock_the_account_even_for_the_right_password(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, password) = app.user("erin", &[Role::Engineer]).await;
    for _ in 0..5 {
        let resp = attempt(&app, [10, 0, 0, 1], "erin", "wrong-password-guess").await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    }
    // From another address too: the lock is on the account.
    let resp = attempt(&app, [10, 0, 0, 2], "erin", &password).await;
    assert_eq!(resp.status, StatusCode::TOO_MANY_REQUESTS, "{}", resp.body);
    assert_eq!(resp.problem_code(), "too_many_attempts");
    let retry: i64 = resp.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // The login page says the same.
    let form = app.get_page("/login", None).await;
    let cookie = format!("cab_login={}", form.cookie("cab_login").unwrap());
    let page = app
        .post_form(
            "/login",
            Some(&cookie),
            &[
                ("_csrf", &crate::common::csrf_in(&form.body)),
                ("username", "erin"),
                ("password", &password),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(page.header("retry-after").is_some());
    assert!(page.body.contains("Too many failed attempts"));
    let locked = app
        .audit_events()
        .await
        .into_iter()
        .filter(|(a, _)| a == "auth.login_locked")
        .count();
    assert_eq!(locked, 1);

    // When the lock has passed, the right password works and clears the count.
    sqlx::query("UPDATE login_failures SET failed_at = failed_at - interval '2 minutes'")
        .execute(&app.pool)
        .await
        .unwrap();
    let resp = attempt(&app, [10, 0, 0, 1], "erin", &password).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM login_failures WHERE username = 'erin'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(left, 0);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_lock_grows_with_each_failure_after_it(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.user("erin", &[Role::Engineer]).await;
    for _ in 0..5 {
        attempt(&app, [10, 0, 0, 1], "erin", "wrong-password-guess").await;
    }
    let first: i64 = attempt(&app, [10, 0, 0, 1], "erin", "x")
        .await
        .header("retry-after")
        .unwrap()
        .parse()
        .unwrap();
    // Let the first lock pass, fail once more: the next lock is longer.
    sqlx::query("UPDATE login_failures SET failed_at = failed_at - interval '61 seconds'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        attempt(&app, [10, 0, 0, 1], "erin", "wrong-again-guess")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let second: i64 = attempt(&app, [10, 0, 0, 1], "erin", "x")
        .await
        .header("retry-after")
        .unwrap()
        .parse()
        .unwrap();
    assert!(second > first, "{second} > {first}");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn unknown_accounts_are_throttled_alike(pool: PgPool) {
    let app = TestApp::new(pool).await;
    for _ in 0..5 {
        assert_eq!(
            attempt(&app, [10, 0, 0, 1], "ghost", "wrong-password-guess")
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        attempt(&app, [10, 0, 0, 1], "ghost", "wrong-password-guess")
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn one_address_guessing_many_accounts_is_throttled(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, password) = app.user("erin", &[Role::Engineer]).await;
    // Fifty failures spread over fifty accounts: no single account locks.
    sqlx::query(
        "INSERT INTO login_failures (username, client_addr, failed_at)
         SELECT 'user' || g, '10.9.9.9', now() FROM generate_series(1, 50) g",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let resp = attempt(&app, [10, 9, 9, 9], "erin", &password).await;
    assert_eq!(resp.status, StatusCode::TOO_MANY_REQUESTS);
    // Another address is unaffected.
    assert_eq!(
        attempt(&app, [10, 9, 9, 10], "erin", &password)
            .await
            .status,
        StatusCode::OK
    );
}
