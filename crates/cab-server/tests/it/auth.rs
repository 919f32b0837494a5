//! Signing in, tokens and sessions, from the attacker's side too.

use axum::http::{Method, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cab_domain::Role;
use cab_server::crypto::jwt_key;
use chrono::{Duration, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::{TEST_SECRET, TestApp};

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn token_then_me(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (user, password) = app.user("erin", &[Role::Engineer, Role::CabMember]).await;
    let resp = app.token("erin", &password).await;
    assert_eq!(resp.status, StatusCode::OK);
    let body = resp.json();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_i64().unwrap() > 800);
    let me = app
        .api(
            Method::GET,
            "/api/v1/me",
            body["access_token"].as_str(),
            None,
        )
        .await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(
        me.json(),
        json!({
            "id": user.id, "username": "erin", "display_name": "",
            "roles": ["engineer", "cab_member"], "is_service": false
        })
    );
    let actions: Vec<String> = app.audit_events().await.into_iter().map(|e| e.0).collect();
    assert!(
        actions.contains(&"auth.login_succeeded".to_owned()),
        "{actions:?}"
    );
}

fn without_request_id(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("request_id");
    v
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn wrong_username_and_wrong_password_look_the_same(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.user("erin", &[Role::Engineer]).await;
    let bad_password = app.token("erin", "not-the-password-at-all").await;
    let bad_username = app.token("nobody", "not-the-password-at-all").await;
    assert_eq!(bad_password.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bad_username.status, bad_password.status);
    assert_eq!(
        without_request_id(bad_username.json()),
        without_request_id(bad_password.json())
    );
    assert_eq!(
        bad_password.json()["detail"],
        "Invalid username or password."
    );
    // Both are in the audit trail, without the password tried.
    let failed: Vec<Value> = app
        .audit_events()
        .await
        .into_iter()
        .filter(|(a, _)| a == "auth.login_failed")
        .map(|(_, p)| p)
        .collect();
    assert_eq!(failed.len(), 2);
    assert!(
        !failed
            .iter()
            .any(|p| p.to_string().contains("not-the-password"))
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn disabled_users_and_service_accounts_cannot_sign_in_with_a_password(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (erin, password) = app.user("erin", &[Role::Engineer]).await;
    app.service_account("ci-bot", &[Role::ReleaseManager]).await;
    cab_server::accounts::disable(
        &app.pool,
        &cab_server::accounts::Operator::Cli,
        &cab_server::request::Origin::cli(),
        erin.id,
    )
    .await
    .unwrap();
    let resp = app.token("erin", &password).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(resp.json()["detail"], "Invalid username or password.");
    let resp = app.token("ci-bot", "anything-at-all-here").await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
}

fn sign(alg: Algorithm, key: &[u8], claims: Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, &EncodingKey::from_secret(key)).unwrap()
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn forged_and_tampered_tokens_are_refused(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let client = app.api_login("erin", &[Role::Engineer]).await;
    // The genuine token's claims, to forge variations of it.
    let payload = client.token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let key = jwt_key(TEST_SECRET);

    let mut cases: Vec<(&str, String)> = Vec::new();
    // alg: none, no signature.
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    cases.push(("alg none", format!("{none_header}.{payload}.")));
    // Another algorithm with the right key.
    cases.push(("HS512", sign(Algorithm::HS512, &key, claims.clone())));
    // A bad signature.
    let mut bad_sig = client.token.clone();
    let last = bad_sig.pop().unwrap();
    bad_sig.push(if last == 'A' { 'B' } else { 'A' });
    cases.push(("bad signature", bad_sig));
    // A payload changed after signing (someone else's id).
    let mut edited = claims.clone();
    edited["sub"] = json!(uuid::Uuid::new_v4());
    let edited_payload = URL_SAFE_NO_PAD.encode(edited.to_string());
    let parts: Vec<&str> = client.token.split('.').collect();
    cases.push((
        "edited payload",
        format!("{}.{edited_payload}.{}", parts[0], parts[2]),
    ));
    // Wrong audience: a browser-cookie token used as a bearer token.
    let mut web = claims.clone();
    web["aud"] = json!("cab-web");
    cases.push(("wrong audience", sign(Algorithm::HS256, &key, web)));
    // Expired.
    let mut expired = claims.clone();
    expired["exp"] = json!((Utc::now() - Duration::seconds(5)).timestamp());
    cases.push(("expired", sign(Algorithm::HS256, &key, expired)));
    // No exp at all.
    let mut no_exp = claims.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    cases.push(("missing exp", sign(Algorithm::HS256, &key, no_exp)));
    // Signed with another key.
    cases.push((
        "other key",
        sign(
            Algorithm::HS256,
            b"some other key entirely, 32 bytes+",
            claims.clone(),
        ),
    ));
    // Garbage.
    cases.push(("garbage", "not.a.jwt".into()));

    for (what, token) in cases {
        let resp = app.api(Method::GET, "/api/v1/me", Some(&token), None).await;
        assert_eq!(
            resp.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {}",
            resp.body
        );
        assert_eq!(resp.problem_code(), "unauthenticated", "{what}");
        assert_eq!(resp.header("www-authenticate"), Some("Bearer"));
    }
    // The genuine one still works.
    let resp = app
        .api(Method::GET, "/api/v1/me", Some(&client.token), None)
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    // A malformed Authorization header is an error, not anonymity.
    let req = axum::http::Request::builder()
        .uri("/api/v1/me")
        .header("authorization", "Basic ZXJpbjpwdw==")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn no_credentials_means_401_on_the_api_and_the_login_page_in_the_browser(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let resp = app.api(Method::GET, "/api/v1/me", None, None).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(resp.problem_code(), "unauthenticated");
    let page = app.get_page("/admin/users", None).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(
        page.header("location"),
        Some("/login?next=%2Fadmin%2Fusers")
    );
    // A forged cookie is cleared and sent to the login page as well.
    let page = app
        .get_page("/", Some("cab_session=forged.token.value"))
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(page.cookie("cab_session").is_some_and(|v| v.is_empty()));
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn logout_ends_the_session_at_once(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let client = app.api_login("erin", &[Role::Engineer]).await;
    let resp = app
        .api(
            Method::POST,
            "/api/v1/auth/logout",
            Some(&client.token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT);
    let resp = app
        .api(Method::GET, "/api/v1/me", Some(&client.token), None)
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);

    let session = app.browser_login("sam", &[Role::SecurityReviewer]).await;
    let resp = app
        .post_form(
            "/logout",
            Some(&session.cookie),
            &[("_csrf", &session.csrf)],
        )
        .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER);
    assert_eq!(resp.header("location"), Some("/login"));
    let page = app.get_page("/", Some(&session.cookie)).await;
    assert_eq!(
        page.status,
        StatusCode::SEE_OTHER,
        "the old cookie no longer works"
    );
    let actions: Vec<String> = app.audit_events().await.into_iter().map(|e| e.0).collect();
    assert_eq!(actions.iter().filter(|a| *a == "auth.logout").count(), 2);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn disabling_a_user_or_changing_roles_ends_their_sessions(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let admin = app.api_login("adam", &[Role::Admin]).await;
    let erin_browser = app.browser_login("erin", &[Role::Engineer]).await;
    let erin_api = app.token("erin", "erin-correct-horse-battery").await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let sam = app.browser_login("sam", &[Role::SecurityReviewer]).await;

    // Roles changed: sam's open session ends.
    let resp = app
        .api(
            Method::PUT,
            &format!("/api/v1/users/{}/roles", sam.user.id),
            Some(&admin.token),
            Some(json!({ "roles": ["security_reviewer", "auditor"] })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(
        app.get_page("/", Some(&sam.cookie)).await.status,
        StatusCode::SEE_OTHER
    );

    // Disabled: erin's cookie and access token stop working.
    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/users/{}/disable", erin_browser.user.id),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["active"], false);
    assert_eq!(
        app.get_page("/", Some(&erin_browser.cookie)).await.status,
        StatusCode::SEE_OTHER
    );
    let me = app
        .api(Method::GET, "/api/v1/me", Some(&erin_api), None)
        .await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    // And a state-changing form post with the old session is refused too.
    let resp = app
        .post_form(
            "/logout",
            Some(&erin_browser.cookie),
            &[("_csrf", &erin_browser.csrf)],
        )
        .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER);
    assert!(resp.header("location").unwrap().starts_with("/login"));
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn idle_sessions_end(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let session = app.browser_login("erin", &[Role::Engineer]).await;
    sqlx::query("UPDATE sessions SET last_seen_at = now() - interval '31 minutes'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        app.get_page("/", Some(&session.cookie)).await.status,
        StatusCode::SEE_OTHER
    );
    let reason: String = sqlx::query_scalar("SELECT end_reason FROM sessions WHERE kind = 'web'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(reason, "idle timeout");
    let expired = app
        .audit_events()
        .await
        .into_iter()
        .filter(|(a, _)| a == "auth.session_expired")
        .count();
    assert_eq!(
        expired, 1,
        "the end of an idle session is in the audit trail"
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn session_cookie_is_http_only_and_strict(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, password) = app.user("erin", &[Role::Engineer]).await;
    let form = app.get_page("/login", None).await;
    let login_cookie = format!("cab_login={}", form.cookie("cab_login").unwrap());
    let resp = app
        .post_form(
            "/login",
            Some(&login_cookie),
            &[
                ("_csrf", &crate::common::csrf_in(&form.body)),
                ("username", "erin"),
                ("password", &password),
            ],
        )
        .await;
    let set = resp
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("cab_session="))
        .unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "plain http in tests: {set}");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn service_account_tokens_work_until_revoked_and_are_never_stored_or_logged(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let admin = app.api_login("adam", &[Role::Admin]).await;
    let bot = app
        .service_account("deploy-bot", &[Role::ReleaseManager])
        .await;
    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/users/{}/tokens", bot.id),
            Some(&admin.token),
            Some(json!({ "name": "deploy pipeline" })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    let created = resp.json();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("cab_"));
    let token_id = created["token"]["id"].as_str().unwrap().to_owned();

    let me = app
        .api(Method::GET, "/api/v1/me", Some(&secret), None)
        .await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json()["is_service"], true);

    let list = app
        .api(
            Method::GET,
            &format!("/api/v1/users/{}/tokens", bot.id),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.json()[0]["last_used_at"].is_string(), "{}", list.body);
    assert!(!list.body.contains(&secret));

    // Only a hash is stored; the audit trail never holds the secret.
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM api_tokens WHERE token_hash = sha256($1::bytea)")
            .bind(secret.as_bytes())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, 1);
    let everything: Vec<String> =
        sqlx::query_scalar("SELECT payload::text || encode(canonical, 'escape') FROM audit_events")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert!(!everything.iter().any(|e| e.contains(&secret)));

    let resp = app
        .api(
            Method::DELETE,
            &format!("/api/v1/users/{}/tokens/{token_id}", bot.id),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let me = app
        .api(Method::GET, "/api/v1/me", Some(&secret), None)
        .await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        me.json()["detail"],
        "The API token is invalid or has been revoked."
    );

    // People get no API tokens: they sign in.
    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/users/{}/tokens", admin.user.id),
            Some(&admin.token),
            Some(json!({ "name": "mine" })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.problem_code(), "not_a_service_account");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn passwords_never_reach_the_audit_trail(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let admin = app.api_login("adam", &[Role::Admin]).await;
    let resp = app
        .api(
            Method::POST,
            "/api/v1/users",
            Some(&admin.token),
            Some(json!({ "username": "newbie", "roles": ["engineer"] })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    let generated = resp.json()["initial_password"].as_str().unwrap().to_owned();
    assert!(generated.len() >= 12);
    let signed_in = app.token("newbie", &generated).await;
    assert_eq!(signed_in.status, StatusCode::OK);
    let _ = app.token("newbie", "a wrong password typed here").await;
    let everything: Vec<String> =
        sqlx::query_scalar("SELECT payload::text || encode(canonical, 'escape') FROM audit_events")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    for secret in [
        generated.as_str(),
        "adam-correct-horse-battery",
        "a wrong password typed here",
    ] {
        assert!(
            !everything.iter().any(|e| e.contains(secret)),
            "{secret} leaked"
        );
    }
    let hashes: Vec<String> =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE NOT is_service")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert!(
        hashes
            .iter()
            .all(|h| h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$")),
        "{hashes:?}"
    );
}
