//! State-changing form posts without a valid CSRF token are refused and change nothing.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use cab_domain::Role;
use sqlx::PgPool;

use crate::common::TestApp;

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn form_posts_need_the_sessions_csrf_token(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let admin = app.browser_login("adam", &[Role::Admin]).await;
    let other = app.browser_login("audrey", &[Role::Auditor]).await;
    let users_before = app.user_count().await;
    let fields = [
        ("username", "mallory"),
        ("roles", "admin"),
        ("password", "mallory-password-123"),
    ];

    // No token at all.
    let resp = app
        .post_form("/admin/users", Some(&admin.cookie), &fields)
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert!(resp.body.contains("security token"), "{}", resp.body);
    // Another session's token.
    let mut with_other = vec![("_csrf", other.csrf.as_str())];
    with_other.extend_from_slice(&fields);
    let resp = app
        .post_form("/admin/users", Some(&admin.cookie), &with_other)
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    // A made-up token.
    let mut forged = vec![("_csrf", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")];
    forged.extend_from_slice(&fields);
    let resp = app
        .post_form("/admin/users", Some(&admin.cookie), &forged)
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    // A JSON body riding on the cookie, with no header token.
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/users")
        .header(header::COOKIE, &admin.cookie)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"username":"mallory","roles":["admin"]}"#))
        .unwrap();
    let resp = app.send(req).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.problem_code(), "csrf");
    assert_eq!(app.user_count().await, users_before, "nothing was created");

    // Logout without a token does not end the session.
    let resp = app.post_form("/logout", Some(&admin.cookie), &[]).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get_page("/", Some(&admin.cookie)).await.status,
        StatusCode::OK
    );

    // With the right token the same form works.
    let mut good = vec![("_csrf", admin.csrf.as_str())];
    good.extend_from_slice(&fields);
    let resp = app
        .post_form("/admin/users", Some(&admin.cookie), &good)
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    assert_eq!(app.user_count().await, users_before + 1);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_login_form_needs_its_own_token(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, password) = app.user("erin", &[Role::Engineer]).await;
    // No login cookie, no token: refused before the password is checked.
    let resp = app
        .post_form(
            "/login",
            None,
            &[("username", "erin"), ("password", &password)],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert!(resp.cookie("cab_session").is_none());
    // A login cookie with a token made for another cookie.
    let a = app.get_page("/login", None).await;
    let b = app.get_page("/login", None).await;
    let cookie_a = format!("cab_login={}", a.cookie("cab_login").unwrap());
    let token_b = crate::common::csrf_in(&b.body);
    let resp = app
        .post_form(
            "/login",
            Some(&cookie_a),
            &[
                ("_csrf", &token_b),
                ("username", "erin"),
                ("password", &password),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    let logins: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(logins, 0);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn get_requests_change_nothing(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let admin = app.browser_login("adam", &[Role::Admin]).await;
    let before = app.audit_count().await;
    for uri in [
        "/logout",
        "/admin/users/00000000-0000-0000-0000-000000000000/disable",
    ] {
        let resp = app.get_page(uri, Some(&admin.cookie)).await;
        assert!(
            resp.status == StatusCode::METHOD_NOT_ALLOWED || resp.status == StatusCode::NOT_FOUND,
            "{uri}: {}",
            resp.status
        );
    }
    assert_eq!(app.audit_count().await, before);
    assert_eq!(
        app.get_page("/", Some(&admin.cookie)).await.status,
        StatusCode::OK
    );
}
