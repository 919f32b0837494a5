//! Login throttling, per account and per client address.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use cab_domain::Role;
use cab_domain::throttle;
use serde_json::json;
use sqlx::PgPool;
use tokio::task::JoinSet;

use crate::common::{TestApp, TestResponse};

/// Sends `request` until it is not turned away for a full queue (503), as a
/// client that comes back when told to; a refusal costs nothing and changes
/// nothing, so the attempts still arrive together.
async fn until_queued<F: std::future::Future<Output = TestResponse>>(
    mut request: impl FnMut() -> F,
) -> TestResponse {
    for _ in 0..200 {
        let resp = request().await;
        if resp.status != StatusCode::SERVICE_UNAVAILABLE {
            return resp;
        }
        assert!(resp.header("retry-after").is_some(), "{}", resp.body);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("turned away 200 times");
}

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
    sqlx::query("UPDATE signin_attempts SET started_at = started_at - interval '2 minutes'")
        .execute(&app.pool)
        .await
        .unwrap();
    let resp = attempt(&app, [10, 0, 0, 1], "erin", &password).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM signin_attempts WHERE username = 'erin'")
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
    sqlx::query("UPDATE signin_attempts SET started_at = started_at - interval '61 seconds'")
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
        "INSERT INTO signin_attempts (username, client_addr, started_at, outcome, overlapped)
         SELECT 'user' || g, '10.9.9.9', now(), 'failed', false FROM generate_series(1, 50) g",
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

/// What a flood of sign-ins for one account got back.
#[derive(Debug, Default)]
struct Tally {
    signed_in: usize,
    wrong: usize,
    throttled: usize,
}

impl Tally {
    /// Answers that needed the password checked: each 401 and each success.
    fn checked(&self) -> usize {
        self.signed_in + self.wrong
    }

    /// The most passwords the flood may have checked: the budget, and one
    /// more only when the right password was checked before any other
    /// attempt was let through (the person signing in alone, whose success
    /// forgives; see `throttle::settle_success`). Such a success leaves no
    /// row behind, where one amid the others stays and keeps counting.
    async fn allowed(&self, app: &TestApp) -> usize {
        let kept: i64 =
            sqlx::query_scalar("SELECT count(*) FROM signin_attempts WHERE outcome = 'succeeded'")
                .fetch_one(&app.pool)
                .await
                .unwrap();
        let alone = self.signed_in == 1 && kept == 0;
        throttle::ACCOUNT_FAILURES + usize::from(alone)
    }
}

/// Fires `n` token requests for `username` at once, each from its own
/// address, all with wrong guesses except the first, which carries `password`;
/// each comes back when turned away for a full queue.
async fn flood(app: &Arc<TestApp>, username: &str, password: &str, n: usize) -> Tally {
    let mut requests = JoinSet::new();
    for i in 0..n {
        let app = Arc::clone(app);
        let username = username.to_owned();
        let password = if i == 0 {
            password.to_owned()
        } else {
            format!("wrong-password-guess-{i}")
        };
        let from = [10, 1, (i / 250) as u8, (i % 250) as u8 + 1];
        requests
            .spawn(async move { until_queued(|| attempt(&app, from, &username, &password)).await });
    }
    let mut tally = Tally::default();
    while let Some(resp) = requests.join_next().await {
        let resp = resp.unwrap();
        match resp.status {
            StatusCode::OK => tally.signed_in += 1,
            StatusCode::UNAUTHORIZED => tally.wrong += 1,
            StatusCode::TOO_MANY_REQUESTS => tally.throttled += 1,
            other => panic!("unexpected {other}: {}", resp.body),
        }
    }
    tally
}

async fn parallel_guesses_are_held_to_the_budget(pool: PgPool, n: usize) {
    let app = Arc::new(TestApp::new(pool).await);
    let (_, password) = app.user("erin", &[Role::Engineer]).await;
    let tally = flood(&app, "erin", &password, n).await;
    println!("{n} concurrent sign-ins: {tally:?}");
    assert!(tally.wrong <= throttle::ACCOUNT_FAILURES, "{tally:?}");
    assert!(
        tally.checked() <= tally.allowed(&app).await,
        "{} of {n} passwords checked: {tally:?}",
        tally.checked()
    );
    assert_eq!(tally.checked() + tally.throttled, n);
    // The audit trail agrees on how many passwords were checked.
    let checks = app
        .audit_events()
        .await
        .into_iter()
        .filter(|(a, _)| a == "auth.login_succeeded" || a == "auth.login_failed")
        .count();
    assert_eq!(checks, tally.checked());
    // The right password in the flood did not lift the lock for anyone:
    // neither a further guess nor the right password gets checked now.
    let resp = attempt(&app, [10, 2, 0, 1], "erin", "another-wrong-guess").await;
    assert_eq!(resp.status, StatusCode::TOO_MANY_REQUESTS, "{}", resp.body);
    let resp = attempt(&app, [10, 2, 0, 2], "erin", &password).await;
    assert_eq!(resp.status, StatusCode::TOO_MANY_REQUESTS, "{}", resp.body);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn forty_parallel_sign_ins_check_at_most_five_passwords(pool: PgPool) {
    parallel_guesses_are_held_to_the_budget(pool, 40).await;
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_hundred_parallel_sign_ins_check_at_most_five_passwords(pool: PgPool) {
    parallel_guesses_are_held_to_the_budget(pool, 100).await;
}

/// A login form submission from `from`.
async fn form_attempt(
    app: &TestApp,
    from: [u8; 4],
    cookies: &str,
    csrf: &str,
    username: &str,
    password: &str,
) -> TestResponse {
    let req = Request::builder()
        .method(Method::POST)
        .uri("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, cookies)
        .body(Body::from(
            serde_urlencoded::to_string([
                ("_csrf", csrf),
                ("username", username),
                ("password", password),
            ])
            .unwrap(),
        ))
        .unwrap();
    app.send_from(SocketAddr::from((from, 5555)), req).await
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn parallel_guesses_through_the_login_form_are_held_to_the_budget(pool: PgPool) {
    let app = Arc::new(TestApp::new(pool).await);
    let (_, password) = app.user("erin", &[Role::Engineer]).await;
    let form = app.get_page("/login", None).await;
    let cookie = format!("cab_login={}", form.cookie("cab_login").unwrap());
    let csrf = crate::common::csrf_in(&form.body);
    let mut requests = JoinSet::new();
    for i in 0..30 {
        let (app, cookie, csrf) = (Arc::clone(&app), cookie.clone(), csrf.clone());
        let password = if i == 0 {
            password.clone()
        } else {
            format!("wrong-password-guess-{i}")
        };
        // From many addresses, each with one check at a time at most.
        requests.spawn(async move {
            until_queued(|| {
                form_attempt(&app, [10, 4, 0, i + 1], &cookie, &csrf, "erin", &password)
            })
            .await
        });
    }
    let mut tally = Tally::default();
    while let Some(resp) = requests.join_next().await {
        let resp = resp.unwrap();
        match resp.status {
            StatusCode::SEE_OTHER => tally.signed_in += 1,
            StatusCode::UNAUTHORIZED => tally.wrong += 1,
            StatusCode::TOO_MANY_REQUESTS => tally.throttled += 1,
            other => panic!("unexpected {other}: {}", resp.body),
        }
    }
    println!("30 concurrent form sign-ins: {tally:?}");
    assert!(tally.wrong <= throttle::ACCOUNT_FAILURES, "{tally:?}");
    assert!(tally.checked() <= tally.allowed(&app).await, "{tally:?}");
    let resp = attempt(&app, [10, 2, 0, 1], "erin", &password).await;
    assert_eq!(resp.status, StatusCode::TOO_MANY_REQUESTS, "{}", resp.body);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn parallel_guesses_at_many_accounts_from_one_address_are_held_to_its_budget(pool: PgPool) {
    let app = Arc::new(TestApp::new(pool).await);
    let n = throttle::ADDRESS_FAILURES + 20;
    let mut requests = JoinSet::new();
    for i in 0..n {
        let app = Arc::clone(&app);
        requests.spawn(async move {
            attempt(
                &app,
                [10, 3, 3, 3],
                &format!("user{i}"),
                "wrong-password-guess",
            )
            .await
        });
    }
    let mut tally = Tally::default();
    while let Some(resp) = requests.join_next().await {
        match resp.unwrap().status {
            StatusCode::UNAUTHORIZED => tally.wrong += 1,
            StatusCode::TOO_MANY_REQUESTS => tally.throttled += 1,
            other => panic!("unexpected {other}"),
        }
    }
    println!("{n} concurrent sign-ins from one address: {tally:?}");
    assert!(tally.checked() <= throttle::ADDRESS_FAILURES, "{tally:?}");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_success_amid_guesses_in_flight_forgives_none_of_them(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, password) = app.user("erin", &[Role::Engineer]).await;
    // Someone has one failed guess on record and three still being checked.
    sqlx::query(
        "INSERT INTO signin_attempts (username, client_addr, started_at, outcome, overlapped)
         SELECT 'erin', '10.6.6.6', now(), o, false
           FROM unnest(ARRAY['failed', 'pending', 'pending', 'pending']) o",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    // Erin signs in meanwhile.
    let resp = attempt(&app, [10, 0, 0, 1], "erin", &password).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    // Her success did not clear the guesses, and took the last place itself:
    // the guesses still out cannot be followed by another.
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT outcome FROM signin_attempts WHERE username = 'erin' ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        left,
        ["failed", "pending", "pending", "pending", "succeeded"]
    );
    let resp = attempt(&app, [10, 6, 6, 7], "erin", "wrong-password-guess").await;
    assert_eq!(resp.status, StatusCode::TOO_MANY_REQUESTS, "{}", resp.body);

    // Alone, after her own typos have settled, a success forgives them.
    sqlx::query("DELETE FROM signin_attempts")
        .execute(&app.pool)
        .await
        .unwrap();
    for _ in 0..4 {
        let resp = attempt(&app, [10, 0, 0, 1], "erin", "typo-password-guess").await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    }
    let resp = attempt(&app, [10, 0, 0, 1], "erin", &password).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM signin_attempts")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_address_has_one_password_check_at_a_time(pool: PgPool) {
    let app = Arc::new(TestApp::new(pool).await);
    let mut requests = JoinSet::new();
    for i in 0..20 {
        let app = Arc::clone(&app);
        requests.spawn(async move {
            attempt(
                &app,
                [10, 7, 7, 7],
                &format!("user{i}"),
                "wrong-password-guess",
            )
            .await
        });
    }
    let mut tally = Tally::default();
    while let Some(resp) = requests.join_next().await {
        let resp = resp.unwrap();
        match resp.status {
            StatusCode::UNAUTHORIZED => tally.wrong += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                // Refused at once, with the same words as any lock.
                assert_eq!(resp.header("retry-after"), Some("1"));
                assert_eq!(resp.problem_code(), "too_many_attempts");
                tally.throttled += 1;
            }
            other => panic!("unexpected {other}: {}", resp.body),
        }
    }
    println!("20 concurrent sign-ins from one address: {tally:?}");
    assert!(tally.wrong >= 1 && tally.throttled >= 10, "{tally:?}");
    // Refusals before the check are not attempts: only checks are counted.
    let counted: i64 = sqlx::query_scalar("SELECT count(*) FROM signin_attempts")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(counted as usize, tally.wrong);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn past_the_global_budget_every_address_has_a_tighter_limit(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, password) = app.user("erin", &[Role::Engineer]).await;
    // Ten failures from one address, nine from another: under the ordinary
    // limit of fifty, both may still try.
    sqlx::query(
        "INSERT INTO signin_attempts (username, client_addr, started_at, outcome, overlapped)
         SELECT 'user' || g, CASE WHEN g <= 10 THEN '10.8.0.1' ELSE '10.8.0.2' END,
                now(), 'failed', false
           FROM generate_series(1, 19) g",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        attempt(&app, [10, 8, 0, 1], "erin", &password).await.status,
        StatusCode::OK
    );
    // 250 failures everywhere in the window (with these 19, and a success
    // that forgave nothing of theirs): still within the budget.
    sqlx::query(
        "INSERT INTO signin_attempts (username, client_addr, started_at, outcome, overlapped)
         SELECT 'spray' || g, '10.9.' || (g / 200) || '.' || (g % 200), now(), 'failed', false
           FROM generate_series(1, 231) g",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        attempt(&app, [10, 8, 0, 1], "erin", &password).await.status,
        StatusCode::OK
    );
    // One more and the budget is exceeded: ten failures lock an address.
    sqlx::query(
        "INSERT INTO signin_attempts (username, client_addr, started_at, outcome, overlapped)
         VALUES ('spray-last', '10.9.9.9', now(), 'failed', false)",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let resp = attempt(&app, [10, 8, 0, 1], "erin", &password).await;
    assert_eq!(resp.status, StatusCode::TOO_MANY_REQUESTS, "{}", resp.body);
    let retry: i64 = resp.header("retry-after").unwrap().parse().unwrap();
    assert!(
        retry > 14 * 60,
        "until the failures leave the window: {retry}"
    );
    // Nine do not; nor does a clean address.
    assert_eq!(
        attempt(&app, [10, 8, 0, 2], "erin", &password).await.status,
        StatusCode::OK
    );
    assert_eq!(
        attempt(&app, [10, 8, 0, 3], "erin", &password).await.status,
        StatusCode::OK
    );
    // Old failures do not count towards the budget.
    sqlx::query(
        "UPDATE signin_attempts SET started_at = now() - interval '16 minutes'
          WHERE username LIKE 'spray%'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        attempt(&app, [10, 8, 0, 1], "erin", &password).await.status,
        StatusCode::OK
    );
}

/// The value of the device cookie a login response sets, with its attributes.
fn device_cookie(resp: &TestResponse) -> Option<(String, String)> {
    resp.headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("cab_device="))
        .map(|v| {
            let (first, attrs) = v.split_once(';').unwrap_or((v, ""));
            (
                first.trim_start_matches("cab_device=").to_owned(),
                attrs.to_owned(),
            )
        })
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_browser_that_signed_in_before_is_not_locked_out_with_its_address(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, password) = app.user("erin", &[Role::Engineer]).await;
    app.user("sam", &[Role::Engineer]).await;
    let office = [10, 5, 5, 5];
    let form = app.get_page("/login", None).await;
    let login = format!("cab_login={}", form.cookie("cab_login").unwrap());
    let csrf = crate::common::csrf_in(&form.body);
    let with_device = |device: &str| format!("{login}; cab_device={device}");

    // Erin signs in at the office: her browser is given a device cookie.
    let resp = form_attempt(&app, office, &login, &csrf, "erin", &password).await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    let (device, attrs) = device_cookie(&resp).expect("a device cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/login", "Max-Age="] {
        assert!(attrs.contains(attr), "{attrs}");
    }
    assert!(!attrs.contains("Secure"), "plain http in tests: {attrs}");
    // Not for API tokens.
    let api = attempt(&app, [10, 5, 5, 6], "erin", &password).await;
    assert_eq!(api.status, StatusCode::OK);
    assert!(device_cookie(&api).is_none());

    // Someone at the same address sprays guesses until it is locked.
    sqlx::query(
        "INSERT INTO signin_attempts (username, client_addr, started_at, outcome, overlapped)
         SELECT 'user' || g, '10.5.5.5', now(), 'failed', false FROM generate_series(1, 50) g",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let resp = form_attempt(&app, office, &login, &csrf, "erin", &password).await;
    assert_eq!(resp.status, StatusCode::TOO_MANY_REQUESTS);
    // Erin's browser still gets in, and is given a fresh cookie.
    let resp = form_attempt(
        &app,
        office,
        &with_device(&device),
        &csrf,
        "erin",
        &password,
    )
    .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    let (device, _) = device_cookie(&resp).expect("a fresh device cookie");
    // Her cookie is hers: it does nothing for another account, nor altered.
    let resp = form_attempt(
        &app,
        office,
        &with_device(&device),
        &csrf,
        "sam",
        "guess-guess-guess",
    )
    .await;
    assert_eq!(resp.status, StatusCode::TOO_MANY_REQUESTS);
    let forged = format!("{}x", &device[..device.len() - 1]);
    let resp = form_attempt(
        &app,
        office,
        &with_device(&forged),
        &csrf,
        "erin",
        &password,
    )
    .await;
    assert_eq!(resp.status, StatusCode::TOO_MANY_REQUESTS);

    // Nor does it lift the account's lock: five wrong passwords with it lock
    // Erin's account as they would anywhere.
    for _ in 0..5 {
        let resp = form_attempt(
            &app,
            office,
            &with_device(&device),
            &csrf,
            "erin",
            "wrong-guess-here",
        )
        .await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{}", resp.body);
    }
    let resp = form_attempt(
        &app,
        office,
        &with_device(&device),
        &csrf,
        "erin",
        &password,
    )
    .await;
    assert_eq!(resp.status, StatusCode::TOO_MANY_REQUESTS);
    // When the account's lock has passed, that cookie, having failed five
    // times, no longer gets past the address's lock; Erin gets in from
    // elsewhere, or once the address's failures have aged out.
    sqlx::query("UPDATE signin_attempts SET started_at = started_at - interval '2 minutes'")
        .execute(&app.pool)
        .await
        .unwrap();
    let resp = form_attempt(
        &app,
        office,
        &with_device(&device),
        &csrf,
        "erin",
        &password,
    )
    .await;
    assert_eq!(resp.status, StatusCode::TOO_MANY_REQUESTS, "{}", resp.body);
    // The attempts checked with the cookie are on record under it.
    let with_cookie: Vec<String> = sqlx::query_scalar(
        "SELECT outcome FROM signin_attempts WHERE device IS NOT NULL ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(with_cookie, ["failed"; 5]);
    let resp = form_attempt(&app, [10, 5, 5, 7], &login, &csrf, "erin", &password).await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
}
