//! Health, readiness, losing the database, security headers, errors and the
//! OpenAPI document.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use cab_domain::Role;
use cab_server::AppState;
use cab_server::config::Settings;
use sqlx::PgPool;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::common::{TEST_SECRET, TestApp};

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn health_and_readiness(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let h = app.get_page("/healthz", None).await;
    assert_eq!(h.status, StatusCode::OK);
    let r = app.get_page("/readyz", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "ready");
}

#[sqlx::test(migrations = false)]
async fn not_ready_until_migrations_are_applied(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let r = app.get_page("/readyz", None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    cab_db::MIGRATOR.run(&pool).await.unwrap();
    assert_eq!(app.get_page("/readyz", None).await.status, StatusCode::OK);
}

/// A TCP proxy in front of PostgreSQL that can be cut and restored. Cut, it
/// closes its connections and stops listening: connecting is refused, as
/// when PostgreSQL is stopped.
struct Proxy {
    port: u16,
    target: String,
    listening: Mutex<Option<JoinHandle<()>>>,
    cut: watch::Sender<u64>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, _) = watch::channel(0u64);
        let proxy = Proxy {
            port,
            target,
            listening: Mutex::new(None),
            cut,
        };
        proxy.listen(listener);
        proxy
    }

    fn listen(&self, listener: TcpListener) {
        let (target, cut) = (self.target.clone(), self.cut.clone());
        let accepting = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                let mut cut_rx = cut.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        *self.listening.lock().unwrap() = Some(accepting);
    }

    async fn down(&self) {
        let accepting = self.listening.lock().unwrap().take();
        if let Some(accepting) = accepting {
            accepting.abort();
            let _ = accepting.await;
        }
        self.cut.send_modify(|n| *n += 1);
    }

    async fn up(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.listen(listener);
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn losing_the_database_answers_503_and_recovers_by_itself(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let client = app.api_login("erin", &[Role::Engineer]).await;
    let session = app.browser_login("sam", &[Role::SecurityReviewer]).await;

    let opts = pool.connect_options();
    let proxy = Proxy::start(format!("{}:{}", opts.get_host(), opts.get_port())).await;
    let proxied_pool = cab_server::db::pool((*opts).clone().host("127.0.0.1").port(proxy.port), 4);
    let proxied = TestApp::from_state(
        AppState::new(proxied_pool, Settings::for_tests(), TEST_SECRET).unwrap(),
    );

    assert_eq!(
        proxied
            .api(Method::GET, "/api/v1/me", Some(&client.token), None)
            .await
            .status,
        StatusCode::OK
    );
    proxy.down().await;
    let resp = proxied
        .api(Method::GET, "/api/v1/me", Some(&client.token), None)
        .await;
    assert_eq!(
        resp.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        resp.body
    );
    assert_eq!(resp.problem_code(), "unavailable");
    assert!(
        resp.json()["detail"]
            .as_str()
            .unwrap()
            .contains("database is unavailable")
    );
    assert!(resp.header("retry-after").is_some(), "{:?}", resp.headers);

    // Once the server has found out, it answers at once, without waiting
    // for the pool's 3 s acquire timeout.
    let found_out = Instant::now() + Duration::from_secs(8);
    loop {
        let asked = Instant::now();
        let resp = proxied
            .api(Method::GET, "/api/v1/me", Some(&client.token), None)
            .await;
        assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
        if asked.elapsed() < Duration::from_millis(500) {
            break;
        }
        assert!(
            Instant::now() < found_out,
            "every answer still waits: {:?}",
            asked.elapsed()
        );
    }
    for _ in 0..3 {
        let asked = Instant::now();
        let resp = proxied
            .api(Method::GET, "/api/v1/me", Some(&client.token), None)
            .await;
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "{:?}",
            asked.elapsed()
        );
        assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.problem_code(), "unavailable");
        assert_eq!(resp.header("retry-after"), Some("1"));
    }
    let asked = Instant::now();
    let page = proxied.get_page("/", Some(&session.cookie)).await;
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.body.contains("database is unavailable"));
    assert_eq!(page.header("retry-after"), Some("1"));
    let asked = Instant::now();
    let ready = proxied.get_page("/readyz", None).await;
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.header("retry-after"), Some("1"));
    assert_eq!(
        proxied.get_page("/healthz", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        proxied.get_page("/static/app.css", None).await.status,
        StatusCode::OK
    );

    proxy.up().await;
    let mut recovered = false;
    for _ in 0..50 {
        if proxied
            .api(Method::GET, "/api/v1/me", Some(&client.token), None)
            .await
            .status
            == StatusCode::OK
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recovered, "the server reconnects by itself");
    assert_eq!(
        proxied.get_page("/readyz", None).await.status,
        StatusCode::OK
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn security_headers_on_every_response(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let session = app.browser_login("erin", &[Role::Engineer]).await;
    for (uri, cookie) in [
        ("/login", None),
        ("/", Some(session.cookie.as_str())),
        ("/api/v1/me", None),
        ("/no/such/page", None),
        ("/healthz", None),
    ] {
        let resp = app.get_page(uri, cookie).await;
        let csp = resp
            .header("content-security-policy")
            .unwrap_or_else(|| panic!("{uri}: no CSP"));
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
            "{uri}"
        );
        assert!(!csp.contains("unsafe-inline"), "{uri}");
        assert_eq!(
            resp.header("x-content-type-options"),
            Some("nosniff"),
            "{uri}"
        );
        assert!(resp.header("referrer-policy").is_some(), "{uri}");
        assert!(resp.header("x-request-id").is_some(), "{uri}");
        assert!(
            resp.header("strict-transport-security").is_none(),
            "plain http: no HSTS"
        );
    }
    let css = app.get_page("/static/app.css", None).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.header("cache-control").unwrap().contains("immutable"));
    let page = app.get_page("/login", None).await;
    assert!(
        page.body.contains("/static/app.css?v="),
        "cache-busted asset URL"
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn hsts_and_secure_cookies_over_https(pool: PgPool) {
    let mut settings = Settings::for_tests();
    settings.secure_cookies = true;
    let app = TestApp::from_state(AppState::new(pool, settings, TEST_SECRET).unwrap());
    let resp = app.get_page("/login", None).await;
    assert!(
        resp.header("strict-transport-security")
            .unwrap()
            .contains("max-age=")
    );
    let cookie = resp.headers.get("set-cookie").unwrap().to_str().unwrap();
    assert!(cookie.contains("Secure"), "{cookie}");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn errors_are_problem_documents_or_pages(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let api = app.get_page("/api/v1/nothing-here", None).await;
    assert_eq!(api.status, StatusCode::NOT_FOUND);
    assert_eq!(api.problem_code(), "not_found");
    assert_eq!(api.json()["type"], "urn:cab:problem:not_found");
    let page = app.get_page("/nothing-here", None).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        page.body.contains("id=\"env-label\""),
        "in the site's layout"
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn every_api_route_is_documented_and_every_documented_route_exists(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let doc = app.get_page("/api/openapi.json", None).await.json();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    documented.sort();
    let mut expected: Vec<(String, String)> = [
        ("POST", "/api/v1/auth/token"),
        ("POST", "/api/v1/auth/logout"),
        ("GET", "/api/v1/me"),
        ("GET", "/api/v1/metrics"),
        ("GET", "/api/v1/users"),
        ("POST", "/api/v1/users"),
        ("GET", "/api/v1/users/{id}"),
        ("PUT", "/api/v1/users/{id}/roles"),
        ("POST", "/api/v1/users/{id}/disable"),
        ("GET", "/api/v1/users/{id}/tokens"),
        ("POST", "/api/v1/users/{id}/tokens"),
        ("DELETE", "/api/v1/users/{id}/tokens/{token_id}"),
        ("GET", "/api/v1/role-grants"),
        ("POST", "/api/v1/role-grants/{id}/confirm"),
        ("POST", "/api/v1/role-grants/{id}/cancel"),
        ("GET", "/api/v1/changes"),
        ("POST", "/api/v1/changes"),
        ("GET", "/api/v1/changes/{id}"),
        ("PATCH", "/api/v1/changes/{id}"),
        ("POST", "/api/v1/changes/{id}/submit"),
        ("POST", "/api/v1/changes/{id}/withdraw"),
        ("POST", "/api/v1/changes/{id}/cancel"),
        ("GET", "/api/v1/changes/{id}/revisions"),
        ("GET", "/api/v1/changes/{id}/comments"),
        ("POST", "/api/v1/changes/{id}/comments"),
        ("PUT", "/api/v1/changes/{id}/assessment"),
        ("POST", "/api/v1/changes/{id}/assessment/start"),
        ("POST", "/api/v1/changes/{id}/votes"),
        ("GET", "/api/v1/changes/{id}/approvals"),
        ("GET", "/api/v1/settings/quorum"),
        ("PUT", "/api/v1/settings/quorum"),
        ("GET", "/api/v1/queues/cab"),
        ("GET", "/api/v1/templates"),
        ("POST", "/api/v1/templates"),
        ("GET", "/api/v1/templates/{id}"),
        ("POST", "/api/v1/templates/{id}/votes"),
        ("POST", "/api/v1/templates/{id}/retire"),
        ("GET", "/api/v1/deployments"),
        ("POST", "/api/v1/deployments"),
        ("POST", "/api/v1/deployments/dry-run"),
        ("GET", "/api/v1/deployments/keys"),
        ("GET", "/api/v1/deployments/{id}"),
        ("POST", "/api/v1/deployments/{id}/events"),
        ("GET", "/api/v1/environments"),
        ("PUT", "/api/v1/environments"),
        ("GET", "/api/v1/users/{id}/environments"),
        ("PUT", "/api/v1/users/{id}/environments"),
        ("GET", "/api/v1/freezes"),
        ("POST", "/api/v1/freezes"),
        ("GET", "/api/v1/freezes/{id}"),
        ("POST", "/api/v1/freezes/{id}/lift"),
        ("GET", "/api/v1/calendar"),
        ("GET", "/api/v1/calendar/conflicts"),
        ("GET", "/api/v1/changes/{id}/conflicts"),
        ("GET", "/api/v1/maintenance-periods"),
        ("POST", "/api/v1/maintenance-periods"),
        ("POST", "/api/v1/maintenance-periods/{id}/remove"),
        ("GET", "/api/v1/calendar/settings"),
        ("PUT", "/api/v1/calendar/settings"),
        ("GET", "/api/v1/calendar/feeds"),
        ("POST", "/api/v1/calendar/feeds"),
        ("POST", "/api/v1/calendar/feeds/{id}/revoke"),
        ("GET", "/api/v1/break-glass"),
        ("POST", "/api/v1/break-glass"),
        ("GET", "/api/v1/break-glass/{id}"),
        ("POST", "/api/v1/break-glass/{id}/confirm"),
        ("POST", "/api/v1/deployments/observed"),
        ("GET", "/api/v1/findings"),
        ("POST", "/api/v1/findings/{id}/resolve"),
        ("GET", "/api/v1/releases"),
        ("POST", "/api/v1/releases"),
        ("GET", "/api/v1/releases/{id}"),
        ("PUT", "/api/v1/releases/{id}"),
        ("POST", "/api/v1/releases/{id}/changes"),
        ("POST", "/api/v1/releases/{id}/changes/{change}/remove"),
        ("GET", "/api/v1/releases/{id}/revisions"),
        ("POST", "/api/v1/releases/{id}/submit"),
        ("POST", "/api/v1/releases/{id}/votes"),
        ("POST", "/api/v1/releases/{id}/advance"),
        ("POST", "/api/v1/releases/{id}/rollback"),
        ("POST", "/api/v1/releases/{id}/cancel"),
        ("POST", "/api/v1/changes/{id}/close"),
        ("GET", "/api/v1/changes/{id}/review"),
        ("PUT", "/api/v1/changes/{id}/review"),
        ("POST", "/api/v1/changes/{id}/review/sign-off"),
        ("POST", "/api/v1/changes/{id}/review/actions"),
        ("POST", "/api/v1/review-actions/{id}/status"),
        ("GET", "/api/v1/reviews/overdue"),
        ("GET", "/api/v1/settings/reviews"),
        ("PUT", "/api/v1/settings/reviews"),
        ("GET", "/api/v1/audit/events"),
        ("GET", "/api/v1/audit/events/export"),
        ("GET", "/api/v1/audit/approvals/export"),
        ("GET", "/api/v1/audit/checkpoints"),
        ("POST", "/api/v1/audit/checkpoints"),
        ("GET", "/api/v1/audit/keys"),
        ("GET", "/api/v1/audit/evidence"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    expected.sort();
    assert_eq!(documented, expected);
    for (method, path) in documented {
        let uri = path
            .replace("{id}", "00000000-0000-0000-0000-000000000000")
            .replace("{token_id}", "00000000-0000-0000-0000-000000000000");
        // Unauthenticated: 401 proves the route exists without touching data.
        let resp = app.api(method.parse().unwrap(), &uri, None, None).await;
        assert!(
            resp.status != StatusCode::NOT_FOUND && resp.status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path} is documented but not routed: {}",
            resp.status
        );
        // The signing keys and the signed checkpoints are public;
        // everything else asks who is calling.
        let public = [
            "/api/v1/deployments/keys",
            "/api/v1/audit/keys",
            "/api/v1/audit/checkpoints",
        ]
        .contains(&path.as_str())
            && method == "GET";
        assert!(
            if public {
                resp.status.is_success()
            } else {
                resp.status.is_client_error()
            },
            "{method} {path}: {}",
            resp.status
        );
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn internal_errors_are_generic_and_carry_the_request_id(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let admin = app.api_login("adam", &[Role::Admin]).await;
    let session = app
        .browser_login_with(admin.user.clone(), "adam-correct-horse-battery")
        .await;
    let bot = app.service_account("ci-bot", &[Role::ReleaseManager]).await;
    // Break the schema under the running server.
    sqlx::query("ALTER TABLE api_tokens RENAME TO api_tokens_gone")
        .execute(&pool)
        .await
        .unwrap();

    let resp = app
        .api(
            Method::GET,
            &format!("/api/v1/users/{}/tokens", bot.id),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(resp.problem_code(), "internal");
    let request_id = resp.header("x-request-id").unwrap().to_owned();
    let body = resp.json();
    assert_eq!(body["request_id"], request_id.as_str());
    assert!(body["detail"].as_str().unwrap().contains(&request_id));
    assert!(
        !resp.body.contains("api_tokens"),
        "no internal text: {}",
        resp.body
    );

    let page = app
        .get_page(&format!("/admin/users/{}", bot.id), Some(&session.cookie))
        .await;
    assert_eq!(page.status, StatusCode::INTERNAL_SERVER_ERROR);
    let request_id = page.header("x-request-id").unwrap();
    assert!(
        page.body.contains(request_id),
        "the page quotes the request id"
    );
    assert!(!page.body.contains("api_tokens"));
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn client_addresses_come_through_trusted_proxies_only(pool: PgPool) {
    let mut settings = Settings::for_tests();
    settings.trusted_proxies = vec!["10.0.0.1".parse().unwrap()];
    let app = TestApp::from_state(AppState::new(pool, settings, TEST_SECRET).unwrap());
    let attempt = |peer: [u8; 4]| {
        axum::http::Request::builder()
            .method(Method::POST)
            .uri("/api/v1/auth/token")
            .header("content-type", "application/json")
            .header("x-forwarded-for", "198.51.100.7, 203.0.113.9")
            .body(axum::body::Body::from(
                r#"{"username":"nobody","password":"wrong-password-here"}"#,
            ))
            .map(|r| (r, std::net::SocketAddr::from((peer, 4000))))
            .unwrap()
    };
    // Through the proxy: the nearest untrusted address in the header.
    let (req, peer) = attempt([10, 0, 0, 1]);
    app.send_from(peer, req).await;
    // From anywhere else the header is ignored.
    let (req, peer) = attempt([192, 0, 2, 5]);
    app.send_from(peer, req).await;
    let addrs: Vec<Option<String>> =
        sqlx::query_scalar("SELECT client_addr FROM audit_events ORDER BY seq")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        addrs,
        vec![Some("203.0.113.9".to_owned()), Some("192.0.2.5".to_owned())]
    );
}
