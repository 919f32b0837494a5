//! Account administration through the API and the pages, from the attacker's side.

use axum::http::{Method, StatusCode};
use cab_domain::Role;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::TestApp;

const NON_ADMIN_ROLES: [Role; 5] = [
    Role::Engineer,
    Role::SecurityReviewer,
    Role::CabMember,
    Role::ReleaseManager,
    Role::Auditor,
];

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn every_admin_api_route_refuses_every_other_role(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (victim, _) = app.user("victim", &[Role::Engineer]).await;
    let bot = app.service_account("ci-bot", &[Role::ReleaseManager]).await;
    let token_id: String = {
        let admin = app.api_login("adam", &[Role::Admin]).await;
        let resp = app
            .api(
                Method::POST,
                &format!("/api/v1/users/{}/tokens", bot.id),
                Some(&admin.token),
                Some(json!({"name": "ci"})),
            )
            .await;
        resp.json()["token"]["id"].as_str().unwrap().to_owned()
    };
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/api/v1/users".into(), None),
        (
            Method::POST,
            "/api/v1/users".into(),
            Some(
                json!({"username": "sneaky", "roles": ["admin"], "password": "sneaky-password-1"}),
            ),
        ),
        (Method::GET, format!("/api/v1/users/{}", victim.id), None),
        (
            Method::PUT,
            format!("/api/v1/users/{}/roles", victim.id),
            Some(json!({"roles": ["admin"]})),
        ),
        (
            Method::POST,
            format!("/api/v1/users/{}/disable", victim.id),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/users/{}/tokens", bot.id),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/users/{}/tokens", bot.id),
            Some(json!({"name": "stolen"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/users/{}/tokens/{token_id}", bot.id),
            None,
        ),
    ];
    let users_before = app.user_count().await;
    for (i, role) in NON_ADMIN_ROLES.into_iter().enumerate() {
        let client = app.api_login(&format!("u{i}"), &[role]).await;
        let denials_before = app.denials().await.len();
        for (method, uri, body) in &routes {
            let resp = app
                .api(method.clone(), uri, Some(&client.token), body.clone())
                .await;
            assert_eq!(
                resp.status,
                StatusCode::FORBIDDEN,
                "{role} {method} {uri}: {}",
                resp.body
            );
            assert_eq!(
                resp.problem_code(),
                "admin_required",
                "{role} {method} {uri}"
            );
            assert!(
                resp.json()["detail"]
                    .as_str()
                    .unwrap()
                    .contains("Only an administrator")
            );
        }
        let denials = app.denials().await;
        assert_eq!(
            denials.len() - denials_before,
            routes.len(),
            "each refusal is recorded"
        );
        assert!(denials.iter().all(|(_, reason)| reason == "admin_required"));
    }
    // Nothing changed.
    assert_eq!(
        app.user_count().await,
        users_before + NON_ADMIN_ROLES.len() as i64
    );
    assert_eq!(app.roles_of("victim").await, vec!["engineer"]);
    let active: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT disabled_at FROM users WHERE username = 'victim'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(active.is_none());
    let tokens: i64 =
        sqlx::query_scalar("SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(tokens, 1);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn every_admin_page_and_form_refuses_every_other_role(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (victim, _) = app.user("victim", &[Role::Engineer]).await;
    let bot = app.service_account("ci-bot", &[Role::ReleaseManager]).await;
    let users_before = app.user_count().await;
    for (i, role) in NON_ADMIN_ROLES.into_iter().enumerate() {
        let s = app.browser_login(&format!("u{i}"), &[role]).await;
        let csrf = s.csrf.as_str();
        // The navigation does not offer the admin pages.
        let home = app.get_page("/", Some(&s.cookie)).await;
        assert!(!home.body.contains("href=\"/admin/users\""), "{role}");
        for uri in [
            "/admin/users".to_owned(),
            format!("/admin/users/{}", victim.id),
        ] {
            let resp = app.get_page(&uri, Some(&s.cookie)).await;
            assert_eq!(resp.status, StatusCode::FORBIDDEN, "{role} GET {uri}");
            assert!(
                resp.body.contains("Only an administrator"),
                "{role} GET {uri}"
            );
        }
        let posts: Vec<(String, Vec<(&str, &str)>)> = vec![
            (
                "/admin/users".into(),
                vec![
                    ("_csrf", csrf),
                    ("username", "sneaky"),
                    ("roles", "admin"),
                    ("password", "sneaky-password-1"),
                ],
            ),
            (
                format!("/admin/users/{}/roles", victim.id),
                vec![("_csrf", csrf), ("roles", "admin")],
            ),
            (
                format!("/admin/users/{}/disable", victim.id),
                vec![("_csrf", csrf)],
            ),
            (
                format!("/admin/users/{}/tokens", bot.id),
                vec![("_csrf", csrf), ("name", "stolen")],
            ),
            (
                format!(
                    "/admin/users/{}/tokens/{}/revoke",
                    bot.id,
                    uuid::Uuid::new_v4()
                ),
                vec![("_csrf", csrf)],
            ),
        ];
        for (uri, fields) in &posts {
            let resp = app.post_form(uri, Some(&s.cookie), fields).await;
            assert_eq!(
                resp.status,
                StatusCode::FORBIDDEN,
                "{role} POST {uri}: {}",
                resp.body
            );
            assert!(
                resp.body.contains("Only an administrator"),
                "{role} POST {uri}"
            );
        }
    }
    assert_eq!(
        app.user_count().await,
        users_before + NON_ADMIN_ROLES.len() as i64
    );
    assert_eq!(app.roles_of("victim").await, vec!["engineer"]);
    let tokens: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(tokens, 0);
    assert!(app.denials().await.len() >= NON_ADMIN_ROLES.len() * 7);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_admin_cannot_change_their_own_roles(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let api = app.api_login("adam", &[Role::Admin]).await;
    app.user("alice", &[Role::Admin]).await; // not the last admin: the rule is about oneself
    let resp = app
        .api(
            Method::PUT,
            &format!("/api/v1/users/{}/roles", api.user.id),
            Some(&api.token),
            Some(json!({ "roles": ["admin", "cab_member"] })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.problem_code(), "own_roles");
    let s = app
        .browser_login_with(api.user.clone(), "adam-correct-horse-battery")
        .await;
    let resp = app
        .post_form(
            &format!("/admin/users/{}/roles", api.user.id),
            Some(&s.cookie),
            &[
                ("_csrf", &s.csrf),
                ("roles", "admin"),
                ("roles", "cab_member"),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert!(resp.body.contains("You cannot change your own roles"));
    assert_eq!(app.roles_of("adam").await, vec!["admin"]);
    let denials = app.denials().await;
    assert_eq!(
        denials,
        vec![("user.set_roles".into(), "own_roles".into()); 2]
    );
    // The page does not offer the form either.
    let page = app
        .get_page(&format!("/admin/users/{}", api.user.id), Some(&s.cookie))
        .await;
    assert!(
        !page.body.contains("/roles\""),
        "no roles form on one's own page"
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_last_admin_cannot_be_demoted_or_disabled(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let adam = app.api_login("adam", &[Role::Admin]).await;
    let (alice, _) = app.user("alice", &[Role::Admin]).await;
    // Two admins: adam may disable alice.
    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/users/{}/disable", alice.id),
            Some(&adam.token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    // Disabling again is a conflict, and says so.
    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/users/{}/disable", alice.id),
            Some(&adam.token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::CONFLICT);
    assert_eq!(resp.problem_code(), "already_disabled");
    // From the command line (which has no own account), adam is now the last admin.
    let err = cab_server::accounts::set_roles(
        &app.pool,
        &cab_server::accounts::Operator::Cli,
        &cab_server::request::Origin::cli(),
        adam.user.id,
        &["engineer".to_owned()],
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("last active administrator"),
        "{err}"
    );
    let err = cab_server::accounts::disable(
        &app.pool,
        &cab_server::accounts::Operator::Cli,
        &cab_server::request::Origin::cli(),
        adam.user.id,
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("last active administrator"),
        "{err}"
    );
    assert_eq!(app.roles_of("adam").await, vec!["admin"]);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn bad_input_gets_a_precise_answer(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let admin = app.api_login("adam", &[Role::Admin]).await;
    let cases = [
        (json!({"username": "Bad Name", "roles": []}), "username"),
        (
            json!({"username": "ok-name", "roles": ["overlord"]}),
            "roles",
        ),
        (
            json!({"username": "ok-name", "roles": [], "password": "short"}),
            "password",
        ),
        (
            json!({"username": "bot", "roles": ["admin"], "service_account": true}),
            "roles",
        ),
    ];
    for (body, field) in cases {
        let resp = app
            .api(
                Method::POST,
                "/api/v1/users",
                Some(&admin.token),
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            resp.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            resp.body
        );
        assert_eq!(resp.problem_code(), "validation");
        assert_eq!(resp.json()["field"], field, "{body}");
    }
    // Server-owned fields are refused, not silently taken.
    let resp = app
        .api(
            Method::POST,
            "/api/v1/users",
            Some(&admin.token),
            Some(json!({"username": "x1", "roles": [], "id": "00000000-0000-0000-0000-000000000001"})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.json()["field"], "id", "{}", resp.body);
    assert!(
        resp.json()["detail"]
            .as_str()
            .unwrap()
            .contains("cannot be set")
    );
    // Malformed JSON.
    let req = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/api/v1/users")
        .header("authorization", format!("Bearer {}", admin.token))
        .header("content-type", "application/json")
        .body(axum::body::Body::from("{not json"))
        .unwrap();
    let resp = app.send(req).await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.problem_code(), "validation");
    // A taken username is a conflict naming the name.
    let resp = app
        .api(
            Method::POST,
            "/api/v1/users",
            Some(&admin.token),
            Some(json!({"username": "adam", "roles": []})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CONFLICT);
    assert_eq!(resp.problem_code(), "username_taken");
    // A malformed id is simply not found.
    let resp = app
        .api(
            Method::GET,
            "/api/v1/users/not-a-uuid",
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert_eq!(resp.problem_code(), "not_found");
    assert_eq!(app.user_count().await, 1);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_new_account_form_shows_errors_beside_fields_and_keeps_input(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.browser_login("adam", &[Role::Admin]).await;
    let resp = app
        .post_form(
            "/admin/users",
            Some(&s.cookie),
            &[
                ("_csrf", &s.csrf),
                ("username", "new-person"),
                ("display_name", "New <b>Person</b>"),
                ("roles", "cab_member"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(resp.body.contains("id=\"password-error\""), "{}", resp.body);
    assert!(resp.body.contains("at least 12 characters long"));
    assert!(resp.body.contains("value=\"new-person\""), "username kept");
    assert!(
        resp.body.contains("New &#60;b&#62;Person&#60;/b&#62;")
            || resp.body.contains("New &lt;b&gt;Person&lt;/b&gt;"),
        "escaped and kept"
    );
    assert!(
        resp.body.contains("value=\"cab_member\" checked"),
        "role kept"
    );
    assert_eq!(app.user_count().await, 1);

    // Taken username: the message is beside the username field.
    let resp = app
        .post_form(
            "/admin/users",
            Some(&s.cookie),
            &[
                ("_csrf", &s.csrf),
                ("username", "adam"),
                ("password", "long-enough-password"),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::CONFLICT);
    assert!(resp.body.contains("id=\"username-error\""));

    // Success shows the generated password once.
    let resp = app
        .post_form(
            "/admin/users",
            Some(&s.cookie),
            &[
                ("_csrf", &s.csrf),
                ("username", "new-person"),
                ("roles", "engineer"),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    assert!(resp.body.contains("id=\"secret\""));
    assert_eq!(app.roles_of("new-person").await, vec!["engineer"]);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn admin_pages_manage_service_account_tokens(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.browser_login("adam", &[Role::Admin]).await;
    let bot = app
        .service_account("deploy-bot", &[Role::ReleaseManager])
        .await;
    let resp = app
        .post_form(
            &format!("/admin/users/{}/tokens", bot.id),
            Some(&s.cookie),
            &[("_csrf", &s.csrf), ("name", "deploy pipeline")],
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let marker = "<code id=\"secret\">";
    let start = resp.body.find(marker).unwrap() + marker.len();
    let secret = &resp.body[start..start + resp.body[start..].find('<').unwrap()];
    assert_eq!(
        app.api(Method::GET, "/api/v1/me", Some(secret), None)
            .await
            .status,
        StatusCode::OK
    );
    // Shown once: the page does not show it again.
    let page = app
        .get_page(&format!("/admin/users/{}", bot.id), Some(&s.cookie))
        .await;
    assert!(!page.body.contains(secret));
    assert!(page.body.contains("deploy pipeline"));
    let token_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM api_tokens")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let resp = app
        .post_form(
            &format!("/admin/users/{}/tokens/{token_id}/revoke", bot.id),
            Some(&s.cookie),
            &[("_csrf", &s.csrf)],
        )
        .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER);
    assert_eq!(
        app.api(Method::GET, "/api/v1/me", Some(secret), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}
