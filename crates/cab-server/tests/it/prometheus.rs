//! `GET /metrics` as a Prometheus scraper sees it: off without a token,
//! behind the bearer token with it, well formed, routes by template, and
//! the database's figures the same from every replica.

use std::collections::BTreeMap;
use std::process::Command;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use cab_domain::Role;
use cab_server::AppState;
use cab_server::config::{Settings, check_metrics_token};
use chrono::{Duration, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::{TEST_SECRET, TestApp, TestResponse};
use crate::deployments::request;

const TOKEN: &str = "metrics-token-for-tests-0123456789abcdef";

/// An instance with `/metrics` on.
fn metered(pool: PgPool) -> TestApp {
    let mut settings = Settings::for_tests();
    settings.metrics_token = check_metrics_token(Some(TOKEN)).unwrap();
    TestApp::from_state(AppState::new(pool, settings, TEST_SECRET).unwrap())
}

/// `GET /metrics` with this `Authorization` header.
async fn scrape_with(app: &TestApp, authorization: Option<&str>) -> TestResponse {
    let mut req = Request::builder().uri("/metrics");
    if let Some(a) = authorization {
        req = req.header(header::AUTHORIZATION, a);
    }
    app.send(req.body(Body::empty()).unwrap()).await
}

/// A successful scrape, checked line by line.
async fn scrape(app: &TestApp) -> Scrape {
    let resp = scrape_with(app, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    Scrape::parse(&resp.body)
}

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Debug)]
struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    /// Parses the text format, failing on any line that is not a comment
    /// or a sample, and on a sample whose family has no HELP and TYPE
    /// before it.
    fn parse(text: &str) -> Scrape {
        let mut help: BTreeMap<String, String> = BTreeMap::new();
        let mut kind: BTreeMap<String, String> = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, text) = rest.split_once(' ').expect("HELP name text");
                assert!(
                    help.insert(name.to_owned(), text.to_owned()).is_none(),
                    "HELP twice for {name}"
                );
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, t) = rest.split_once(' ').expect("TYPE name type");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                    "{line}"
                );
                assert!(help.contains_key(name), "TYPE before HELP: {line}");
                assert!(
                    kind.insert(name.to_owned(), t.to_owned()).is_none(),
                    "TYPE twice for {name}"
                );
                continue;
            }
            assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
            let sample = parse_sample(line);
            let family = if kind.contains_key(&sample.name) {
                sample.name.clone()
            } else {
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| {
                        let base = sample.name.strip_suffix(suffix)?;
                        (kind.get(base).map(String::as_str) == Some("histogram"))
                            .then(|| base.to_owned())
                    })
                    .unwrap_or_else(|| panic!("sample without HELP and TYPE: {line}"))
            };
            assert!(family.starts_with("cab_"), "{line}");
            if sample.name.ends_with("_bucket") {
                assert!(sample.labels.contains_key("le"), "{line}");
            }
            samples.push(sample);
        }
        Scrape {
            text: text.to_owned(),
            samples,
        }
    }

    /// The value of the sample with exactly these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    fn gate(&self, outcome: &str) -> f64 {
        self.value("cab_gate_decisions_total", &[("outcome", outcome)])
            .unwrap_or_else(|| panic!("no gate decisions {outcome}:\n{}", self.text))
    }

    /// Every `route` label in the request counts.
    fn routes(&self) -> Vec<String> {
        self.samples
            .iter()
            .filter(|s| s.name == "cab_http_requests_total")
            .map(|s| s.labels["route"].clone())
            .collect()
    }
}

/// `name{label="value",...} value`, label values unescaped.
fn parse_sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).expect("name");
    let name = line[..name_end].to_owned();
    assert!(
        name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "{line}"
    );
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(mut inside) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = inside.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after) = inside.split_once("=\"").expect("label=\"");
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next().expect("closing quote") {
                    (_, '\\') => match chars.next().expect("escape").1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        c => panic!("bad escape \\{c} in {line}"),
                    },
                    (i, '"') => break i,
                    (_, c) => value.push(c),
                }
            };
            assert!(labels.insert(label.to_owned(), value).is_none(), "{line}");
            inside = &after[end + 1..];
            inside = inside.strip_prefix(',').unwrap_or(inside);
        }
    }
    let value = rest.strip_prefix(' ').expect("space before the value");
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
    };
    Sample {
        name,
        labels,
        value,
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn metrics_are_off_without_a_token(pool: PgPool) {
    let app = TestApp::new(pool).await;
    for auth in [None, Some(format!("Bearer {TOKEN}"))] {
        let resp = scrape_with(&app, auth.as_deref()).await;
        assert_eq!(resp.status, StatusCode::NOT_FOUND, "{}", resp.body);
        assert!(resp.header("www-authenticate").is_none());
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_scrape_needs_the_bearer_token(pool: PgPool) {
    let app = metered(pool);
    let wrong = format!("Bearer {}x", TOKEN);
    let short = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
    let basic = format!("Basic {TOKEN}");
    for auth in [
        None,
        Some("Bearer"),
        Some("Bearer "),
        Some(wrong.as_str()),
        Some(short.as_str()),
        Some(basic.as_str()),
        Some(TOKEN),
    ] {
        let resp = scrape_with(&app, auth).await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(resp.header("www-authenticate"), Some("Bearer"), "{auth:?}");
        assert!(!resp.body.contains("cab_"), "{}", resp.body);
    }
    // The scheme is case-insensitive.
    let resp = scrape_with(&app, Some(&format!("bearer {TOKEN}"))).await;
    assert_eq!(resp.status, StatusCode::OK);
    scrape(&app).await;
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn sign_in_throttles_never_hold_up_a_scrape(pool: PgPool) {
    let app = metered(pool);
    let (_, password) = app.user("erin", &[Role::Engineer]).await;
    // Enough failures to lock the account...
    for _ in 0..6 {
        app.token("erin", "wrong-password-guess").await;
    }
    let locked = app.token("erin", &password).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    // ...and many refused scrapes from the same address: none is throttled.
    for _ in 0..40 {
        let resp = scrape_with(&app, Some("Bearer not-the-metrics-token")).await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    }
    scrape(&app).await;
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn requests_are_counted_under_their_route_template(pool: PgPool) {
    let app = metered(pool);
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let change = app.open_change(&erin).await;
    let resp = app
        .api(
            Method::GET,
            &format!("/api/v1/changes/{change}"),
            Some(&erin.token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let missing = Uuid::new_v4();
    let resp = app
        .api(
            Method::GET,
            &format!("/api/v1/changes/{missing}"),
            Some(&erin.token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    let stray = Uuid::new_v4();
    let resp = app.get_page(&format!("/no/such/page/{stray}"), None).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);

    let s = scrape(&app).await;
    let route = [("method", "GET"), ("route", "/api/v1/changes/{id}")];
    let with_status = |status| [route[0], route[1], ("status", status)];
    assert_eq!(
        s.value("cab_http_requests_total", &with_status("200")),
        Some(1.0),
        "{}",
        s.text
    );
    assert_eq!(
        s.value("cab_http_requests_total", &with_status("404")),
        Some(1.0)
    );
    assert_eq!(
        s.value(
            "cab_http_requests_total",
            &[("method", "GET"), ("route", "unmatched"), ("status", "404")]
        ),
        Some(1.0)
    );
    assert_eq!(
        s.value(
            "cab_http_requests_total",
            &[
                ("method", "POST"),
                ("route", "/api/v1/changes"),
                ("status", "201")
            ]
        ),
        Some(1.0),
        "{}",
        s.text
    );
    assert_eq!(
        s.value("cab_http_request_duration_seconds_count", &route),
        Some(2.0)
    );
    let inf = [route[0], route[1], ("le", "+Inf")];
    assert_eq!(
        s.value("cab_http_request_duration_seconds_bucket", &inf),
        Some(2.0)
    );
    let last = [route[0], route[1], ("le", "10")];
    assert!(s.value("cab_http_request_duration_seconds_bucket", &last) <= Some(2.0));
    for id in [change, missing.to_string(), stray.to_string()] {
        assert!(!s.text.contains(&id), "{id} in the scrape:\n{}", s.text);
    }
    assert!(
        s.routes()
            .iter()
            .all(|r| r == "unmatched" || r.starts_with('/'))
    );

    assert_eq!(
        s.value("cab_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        Some(1.0)
    );
    let max = s.value("cab_db_pool_max_connections", &[]).unwrap();
    let idle = s
        .value("cab_db_pool_connections", &[("state", "idle")])
        .unwrap();
    let in_use = s
        .value("cab_db_pool_connections", &[("state", "in_use")])
        .unwrap();
    assert!(max >= 1.0 && idle + in_use <= max, "{}", s.text);

    // The scrape itself is counted by the next one.
    let s = scrape(&app).await;
    assert_eq!(
        s.value(
            "cab_http_requests_total",
            &[("method", "GET"), ("route", "/metrics"), ("status", "200")]
        ),
        Some(1.0)
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn gate_decisions_are_counted_from_the_audit_trail(pool: PgPool) {
    let app = metered(pool);
    let c = app.cast().await;
    let change = app.approved_change(&c.erin, &c.carol).await;
    let before = scrape(&app).await;
    assert_eq!(before.gate("authorized"), 0.0);
    assert_eq!(before.gate("refused"), 0.0);

    // Straight to PROD, never promoted: refused.
    let refused = app.gate(&c.pipeline, request(&change, "prod", None)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let s = scrape(&app).await;
    assert_eq!((s.gate("authorized"), s.gate("refused")), (0.0, 1.0));

    let authorized = app.gate(&c.pipeline, request(&change, "dev", None)).await;
    assert_eq!(
        authorized.status,
        StatusCode::CREATED,
        "{}",
        authorized.body
    );
    let s = scrape(&app).await;
    assert_eq!((s.gate("authorized"), s.gate("refused")), (1.0, 1.0));

    // Other refusals are not the gate's.
    let denied_elsewhere = app
        .api(Method::GET, "/api/v1/users", Some(&c.erin.token), None)
        .await;
    assert_eq!(denied_elsewhere.status, StatusCode::FORBIDDEN);
    let s = scrape(&app).await;
    assert_eq!((s.gate("authorized"), s.gate("refused")), (1.0, 1.0));
    assert!(
        app.denials().await.len() >= 2,
        "both refusals are in the trail"
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn review_gauges_match_the_database(pool: PgPool) {
    let app = metered(pool.clone());
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let s = scrape(&app).await;
    assert_eq!(s.value("cab_reviews_pending", &[]), Some(0.0));
    assert_eq!(s.value("cab_reviews_overdue", &[]), Some(0.0));

    let now = Utc::now();
    let mut owed = Vec::new();
    for due in [
        now - Duration::days(2),
        now - Duration::hours(1),
        now + Duration::days(3),
    ] {
        let id: Uuid = app.open_change(&erin).await.parse().unwrap();
        let mut conn = pool.acquire().await.unwrap();
        cab_db::reviews::owe(&mut conn, id, &["major_incident".to_owned()], due, now)
            .await
            .unwrap();
        owed.push(id);
    }
    // One overdue review signed off: neither pending nor overdue any more.
    sqlx::query(
        "UPDATE reviews SET state = 'signed_off', signed_off_at = now(), first_signed_off_at = now()
          WHERE change_id = $1",
    )
    .bind(owed[0])
    .execute(&pool)
    .await
    .unwrap();

    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reviews WHERE required AND first_signed_off_at IS NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(pending, 2);
    let s = scrape(&app).await;
    assert_eq!(
        s.value("cab_reviews_pending", &[]),
        Some(pending as f64),
        "{}",
        s.text
    );
    assert_eq!(s.value("cab_reviews_overdue", &[]), Some(1.0));
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn replicas_report_the_same_gate_decisions(pool: PgPool) {
    let one = metered(pool.clone());
    let two = metered(pool);
    let c = one.cast().await;
    let change = one.approved_change(&c.erin, &c.carol).await;
    // The second replica has counted up to here.
    let s = scrape(&two).await;
    assert_eq!((s.gate("authorized"), s.gate("refused")), (0.0, 0.0));

    // Every decision through the first replica: PROD before STAGE is
    // refused, then the promotion is authorized three times.
    let refused = one
        .gate(&c.pipeline, request(&change, "prod", Some("rita")))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    one.promote_to_stage(&c.pipeline, &change).await;

    let (a, b) = (scrape(&one).await, scrape(&two).await);
    for outcome in ["authorized", "refused"] {
        assert_eq!(a.gate(outcome), b.gate(outcome), "{outcome}");
    }
    assert_eq!((a.gate("authorized"), a.gate("refused")), (3.0, 1.0));
    let (authorized, refused): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE action = 'deployment.authorized'),
                count(*) FILTER (WHERE action = 'access.denied'
                                   AND payload->>'attempted' = 'deployment.authorize')
           FROM audit_events",
    )
    .fetch_one(&one.pool)
    .await
    .unwrap();
    assert_eq!(
        (a.gate("authorized"), a.gate("refused")),
        (authorized as f64, refused as f64)
    );
    // Read a few events at a time, the trail gives the same figures.
    let mut conn = one.pool.acquire().await.unwrap();
    let (mut in_spans, mut after, mut statements) = ((0, 0), 0, 0);
    loop {
        let read = cab_db::telemetry::gate_decisions_after(&mut conn, after, 2)
            .await
            .unwrap();
        statements += 1;
        in_spans = (in_spans.0 + read.authorized, in_spans.1 + read.refused);
        let done = read.through_seq < after + 2;
        after = read.through_seq;
        if done {
            break;
        }
    }
    assert_eq!(in_spans, (authorized, refused));
    assert!(statements > 2, "{statements}");
    let head: i64 = sqlx::query_scalar("SELECT seq FROM audit_head")
        .fetch_one(&one.pool)
        .await
        .unwrap();
    assert_eq!(after, head);
    // Requests are counted by the replica that answered them.
    let gate_route = [
        ("method", "POST"),
        ("route", "/api/v1/deployments"),
        ("status", "201"),
    ];
    assert_eq!(a.value("cab_http_requests_total", &gate_route), Some(3.0));
    assert_eq!(b.value("cab_http_requests_total", &gate_route), None);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn metrics_are_not_in_the_api_document(pool: PgPool) {
    let app = metered(pool);
    let doc = app.get_page("/api/openapi.json", None).await;
    assert_eq!(doc.status, StatusCode::OK);
    let paths = doc.json()["paths"].as_object().unwrap().clone();
    assert!(paths.keys().all(|p| p.starts_with("/api/")), "{paths:?}");
    // The measures of change are in the API (`/api/v1/metrics`); the
    // operators' endpoint is not.
    assert!(!paths.contains_key("/metrics"), "{paths:?}");
    assert!(!doc.body.contains("\"/metrics\""));
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn serve_refuses_a_short_metrics_token_and_scrapes_with_a_good_one(pool: PgPool) {
    for token in [
        "too-short-a-token",
        "a token with spaces in it, long enough",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_cab"))
            .arg("serve")
            .env("DATABASE_URL", crate::audit::database_url(&pool))
            .env("CAB_LISTEN", "127.0.0.1:0")
            .env("CAB_SECRET_KEY", crate::cli::GOOD_KEY)
            .env("CAB_METRICS_TOKEN", token)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("CAB_METRICS_TOKEN") && err.contains("openssl rand"),
            "{err}"
        );
        assert!(!err.contains(token), "the token itself is never printed");
    }

    let (_server, url) = crate::cli::start_server_with(&pool, &[("CAB_METRICS_TOKEN", TOKEN)]);
    let client = reqwest::Client::new();
    let refused = client.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let scraped = client
        .get(format!("{url}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), 200);
    let s = Scrape::parse(&scraped.text().await.unwrap());
    assert_eq!(s.gate("authorized"), 0.0);
    assert!(
        s.value(
            "cab_http_requests_total",
            &[("method", "GET"), ("route", "/metrics"), ("status", "401")]
        ) == Some(1.0),
        "{}",
        s.text
    );
}
