//! Retried creating requests: with an `Idempotency-Key`, one caller's key
//! stands for one effect however often the request is sent, whenever the
//! server stops and however retries race, and a retry is answered as the
//! first request was.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use cab_domain::Role;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};

use crate::changes::complete_change;
use crate::cli::{add_user, start_server};
use crate::common::{ApiClient, TestApp, TestResponse};

const REPLAYED: &str = "idempotent-replayed";

/// One creating operation: who calls it, where, with what, and the table
/// and audit action its effect shows in.
struct Case {
    name: &'static str,
    client: ApiClient,
    uri: String,
    body: String,
    other_body: String,
    table: &'static str,
    action: &'static str,
}

/// Every creating operation of the API, ready to call.
async fn cases(app: &TestApp) -> Vec<Case> {
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let adam = app.api_login("adam", &[Role::Admin]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let change = app
        .file_change(&erin, complete_change("Rotate the edge certificates"))
        .await;
    let change_id = change["id"].as_str().unwrap().to_owned();
    let bot = app.service_account("deploy-bot", &[Role::Engineer]).await;
    // A pipeline allowed to deploy to DEV.
    let pipeline = app.pipeline_client(&adam, "ci-runner", &["dev"]).await;
    let other = app
        .file_change(&erin, complete_change("Rotate the internal certificates"))
        .await;
    // Drafts, never submitted: revision 0 goes to DEV.
    let draft = |id: &str| {
        let mut r = crate::deployments::request(id, "dev", None);
        r["revision"] = json!(0);
        r
    };
    let mut gate_other = draft(other["id"].as_str().unwrap());
    gate_other["artifact"]["version"] = json!("2.4.2");
    let template = |name: &str| {
        json!({
            "name": name,
            "change": {
                "title": "Renew a TLS certificate",
                "description": "Routine renewal from the internal CA.",
                "category": "configuration",
                "implementation_plan": "Run the renewal job.",
                "test_plan": "The TLS check passes.",
                "rollback_plan": "Restore the previous certificate.",
                "services": ["edge-proxy"],
                "environments": ["STAGE"],
                "risk": {"impact": 1, "likelihood": 1}
            }
        })
        .to_string()
    };
    let rita = app.api_login("rita", &[Role::ReleaseManager]).await;
    let ops = app.api_login("olga", &[Role::Admin]).await;
    let planner = app.api_login("paula", &[Role::ReleaseManager]).await;
    let reader = app.api_login("rosa", &[Role::Auditor]).await;
    let release_manager = app.api_login("remy", &[Role::ReleaseManager]).await;
    let freeze = |reason: &str| {
        json!({"ends_at": (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339(),
               "reason": reason, "environments": ["prod"]})
        .to_string()
    };
    // A submitted change, as a break-glass needs.
    let urgent = app
        .file_change(&erin, complete_change("Renew the gateway certificate"))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = app.change_action(&erin, &urgent, "submit", None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let glass = |incident: &str| {
        json!({"change": urgent, "environment": "prod", "incident": incident,
               "reason": "The edge certificates expire tonight and every client fails."})
        .to_string()
    };
    let period = |starts: &str| {
        json!({"service": "edge-proxy", "weekdays": [2, 4], "starts": starts, "minutes": 120})
            .to_string()
    };
    let feed = |label: &str| json!({"label": label, "environment": "PROD"}).to_string();
    // An approved change, whose review takes action items.
    let reviewed = app.approved_change(&erin, &carol).await;
    let reviewer = app.api_login("lena", &[Role::CabMember]).await;
    let action = |title: &str| {
        json!({"title": title, "owner": "erin",
               "due_on": (chrono::Utc::now().date_naive() + chrono::Duration::days(14)).to_string()})
        .to_string()
    };
    vec![
        Case {
            name: "file a change",
            client: erin.clone(),
            uri: "/api/v1/changes".into(),
            body: complete_change("Upgrade the database driver").to_string(),
            other_body: complete_change("Upgrade the message broker").to_string(),
            table: "changes",
            action: "change.created",
        },
        Case {
            name: "comment on a change",
            client: erin,
            uri: format!("/api/v1/changes/{change_id}/comments"),
            body: json!({"body": "Certificates staged on STAGE."}).to_string(),
            other_body: json!({"body": "Certificates staged on PROD."}).to_string(),
            table: "change_comments",
            action: "change.commented",
        },
        Case {
            name: "create an account (with a generated password)",
            client: adam.clone(),
            uri: "/api/v1/users".into(),
            body: json!({"username": "nina", "roles": ["engineer"]}).to_string(),
            other_body: json!({"username": "nils", "roles": ["engineer"]}).to_string(),
            table: "users",
            action: "user.created",
        },
        Case {
            name: "issue an API token",
            client: adam,
            uri: format!("/api/v1/users/{}/tokens", bot.id),
            body: json!({"name": "deploy pipeline"}).to_string(),
            other_body: json!({"name": "nightly pipeline"}).to_string(),
            table: "api_tokens",
            action: "api_token.created",
        },
        Case {
            name: "propose a template",
            client: carol,
            uri: "/api/v1/templates".into(),
            body: template("Certificate renewal"),
            other_body: template("Certificate rotation"),
            table: "standard_templates",
            action: "template.proposed",
        },
        Case {
            name: "ask the deployment gate",
            client: pipeline.clone(),
            uri: "/api/v1/deployments".into(),
            body: draft(&change_id).to_string(),
            other_body: gate_other.to_string(),
            table: "deployments",
            action: "deployment.authorized",
        },
        Case {
            name: "declare a freeze",
            client: rita.clone(),
            uri: "/api/v1/freezes".into(),
            body: freeze("Quarter-end close: nothing goes to production."),
            other_body: freeze("Datacentre move: nothing goes to production."),
            table: "freezes",
            action: "freeze.declared",
        },
        Case {
            name: "ask for a break-glass deployment",
            client: rita,
            uri: "/api/v1/break-glass".into(),
            body: glass("INC-100"),
            other_body: glass("INC-101"),
            table: "break_glass",
            action: "break_glass.requested",
        },
        Case {
            name: "report what runs",
            client: ops,
            uri: "/api/v1/deployments/observed".into(),
            body: json!({"environment": "prod", "service": "edge-proxy",
                         "digest": crate::deployments::digest('d')})
            .to_string(),
            other_body: json!({"environment": "prod", "service": "edge-proxy",
                               "digest": crate::deployments::digest('e')})
            .to_string(),
            table: "observed_deployments",
            action: "deployment.observed",
        },
        Case {
            name: "add a maintenance period",
            client: planner,
            uri: "/api/v1/maintenance-periods".into(),
            body: period("02:00"),
            other_body: period("22:00"),
            table: "maintenance_periods",
            action: "maintenance.added",
        },
        Case {
            name: "make a calendar feed",
            client: reader,
            uri: "/api/v1/calendar/feeds".into(),
            body: feed("Production changes"),
            other_body: feed("Production changes, again"),
            table: "calendar_feeds",
            action: "calendar.feed_created",
        },
        Case {
            name: "plan a release",
            client: release_manager,
            uri: "/api/v1/releases".into(),
            body: crate::releases::release_plan("December release").to_string(),
            other_body: crate::releases::release_plan("January release").to_string(),
            table: "releases",
            action: "release.created",
        },
        Case {
            name: "add an action item to a review",
            client: reviewer,
            uri: format!("/api/v1/changes/{reviewed}/review/actions"),
            body: action("Relax the health checks"),
            other_body: action("Write the runbook"),
            table: "review_actions",
            action: "review.action_added",
        },
    ]
}

impl TestApp {
    /// A POST with this exact body and, when given, an Idempotency-Key.
    async fn keyed(
        &self,
        client: &ApiClient,
        uri: &str,
        key: Option<&str>,
        body: &str,
    ) -> TestResponse {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", client.token))
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(key) = key {
            req = req.header("idempotency-key", key);
        }
        self.send(req.body(Body::from(body.to_owned())).unwrap())
            .await
    }

    /// (rows in the table, audit events of the action)
    async fn effects(&self, case: &Case) -> (i64, i64) {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}", case.table))
            .fetch_one(&self.pool)
            .await
            .unwrap();
        let events: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action = $1")
            .bind(case.action)
            .fetch_one(&self.pool)
            .await
            .unwrap();
        (rows, events)
    }
}

/// The id of what an answer shows: the resource, or the token or account in it.
fn created_id(resp: &TestResponse) -> String {
    let v = resp.json();
    let id = v["id"]
        .as_str()
        .or_else(|| v["token"]["id"].as_str())
        .or_else(|| v["deployment"]["id"].as_str())
        .or_else(|| v["user"]["id"].as_str());
    id.unwrap_or_else(|| panic!("no id in {}", resp.body))
        .to_owned()
}

fn assert_replayed(first: &TestResponse, again: &TestResponse, what: &str) {
    assert_eq!(again.status, first.status, "{what}: {}", again.body);
    assert_eq!(again.header(REPLAYED), Some("true"), "{what}");
    assert_eq!(
        again.header("content-type"),
        first.header("content-type"),
        "{what}"
    );
    assert_eq!(
        again.body, first.body,
        "{what}: the first answer, byte for byte"
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn every_creating_operation_declares_the_key_and_is_tested_here(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let doc = app.get_page("/api/openapi.json", None).await.json();
    let mut creating = BTreeSet::new();
    let mut declaring = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let route = format!("{} {path}", method.to_uppercase());
            if method == "post" && op["responses"].get("201").is_some() {
                creating.insert(route.clone());
            }
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            if let Some(p) = params.iter().find(|p| p["name"] == "Idempotency-Key") {
                assert_eq!(p["in"], "header", "{route}");
                assert_eq!(p["required"], false, "{route}");
                assert_eq!(p["schema"]["maxLength"], 255, "{route}");
                declaring.insert(route);
            }
        }
    }
    assert_eq!(declaring, creating, "every creating POST, and only those");
    let tested: BTreeSet<String> = cases(&app)
        .await
        .iter()
        .map(|c| {
            let template = c
                .uri
                .split('/')
                .map(|seg| if seg.len() == 36 { "{id}" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            format!("POST {template}")
        })
        .collect();
    assert_eq!(tested, creating, "every creating POST has a case here");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_retry_with_the_same_key_and_body_takes_effect_once_and_gets_the_first_answer(
    pool: PgPool,
) {
    let app = TestApp::new(pool).await;
    for case in cases(&app).await {
        let before = app.effects(&case).await;
        let key = format!("retry-{}", case.table);
        let first = app
            .keyed(&case.client, &case.uri, Some(&key), &case.body)
            .await;
        assert_eq!(
            first.status,
            StatusCode::CREATED,
            "{}: {}",
            case.name,
            first.body
        );
        assert_eq!(first.header(REPLAYED), None, "{}", case.name);
        for _ in 0..2 {
            let again = app
                .keyed(&case.client, &case.uri, Some(&key), &case.body)
                .await;
            assert_replayed(&first, &again, case.name);
        }
        assert_eq!(
            app.effects(&case).await,
            (before.0 + 1, before.1 + 1),
            "{}: one row and one audit event",
            case.name
        );
        // Without a key, the same request is a new one.
        let plain = app
            .keyed(&case.client, &case.uri, None, &case.other_body)
            .await;
        assert_eq!(
            plain.status,
            StatusCode::CREATED,
            "{}: {}",
            case.name,
            plain.body
        );
        assert_eq!(plain.header(REPLAYED), None);
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn secrets_shown_once_are_replayed_but_never_stored_in_the_clear(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let cases = cases(&app).await;
    for case in cases
        .iter()
        .filter(|c| ["users", "api_tokens", "calendar_feeds"].contains(&c.table))
    {
        let key = format!("secret-{}", case.table);
        let first = app
            .keyed(&case.client, &case.uri, Some(&key), &case.body)
            .await;
        assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
        let v = first.json();
        // A feed's secret is the last part of its address.
        let feed_secret = v["url"]
            .as_str()
            .and_then(|u| u.rsplit('/').next())
            .and_then(|s| s.strip_suffix(".ics"));
        let secret = v["initial_password"]
            .as_str()
            .or_else(|| v["secret"].as_str())
            .or(feed_secret)
            .unwrap()
            .to_owned();
        let again = app
            .keyed(&case.client, &case.uri, Some(&key), &case.body)
            .await;
        assert_replayed(&first, &again, case.name);
        let rows: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT key_hash, sealed_secret, response_body FROM idempotency_keys
              WHERE sealed_secret IS NOT NULL AND response_body IS NOT NULL",
        )
        .fetch_all(&app.pool)
        .await
        .unwrap();
        assert!(
            !rows.is_empty(),
            "{}: the secret is kept, sealed",
            case.name
        );
        let holds = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        for (key_hash, sealed_secret, response_body) in rows {
            assert!(!holds(&key_hash, key.as_bytes()), "the key is kept hashed");
            for kept in [&sealed_secret, &response_body] {
                assert!(
                    !holds(kept, secret.as_bytes()),
                    "{}: never in the clear",
                    case.name
                );
                assert!(!holds(kept, b"initial_password") && !holds(kept, b"\"secret\""));
            }
        }
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_same_key_with_another_request_is_refused_and_creates_nothing(pool: PgPool) {
    let app = TestApp::new(pool).await;
    for case in cases(&app).await {
        let key = format!("reused-{}", case.table);
        let key = key.as_str();
        let first = app
            .keyed(&case.client, &case.uri, Some(key), &case.body)
            .await;
        assert_eq!(
            first.status,
            StatusCode::CREATED,
            "{}: {}",
            case.name,
            first.body
        );
        let after_first = app.effects(&case).await;
        // Another body, even one that only spaces the same JSON differently.
        let spaced = case.body.replacen(':', ": ", 1);
        for body in [&case.other_body, &spaced] {
            let resp = app.keyed(&case.client, &case.uri, Some(key), body).await;
            assert_eq!(
                resp.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{}: {}",
                case.name,
                resp.body
            );
            assert_eq!(
                resp.problem_code(),
                "idempotency_key_reused",
                "{}",
                case.name
            );
            assert_eq!(resp.json()["field"], "Idempotency-Key");
            let detail = resp.json()["detail"].as_str().unwrap().to_owned();
            assert!(detail.contains("another method, path or body"), "{detail}");
            assert_eq!(
                app.effects(&case).await,
                after_first,
                "{}: nothing created",
                case.name
            );
        }
    }
    // The same key on another creating path is another request too.
    let erin = app.api_login("edna", &[Role::Engineer]).await;
    let first = app
        .keyed(
            &erin,
            "/api/v1/changes",
            Some("shared"),
            &complete_change("One").to_string(),
        )
        .await;
    let id = created_id(&first);
    let resp = app
        .keyed(
            &erin,
            &format!("/api/v1/changes/{id}/comments"),
            Some("shared"),
            &json!({"body": "A note."}).to_string(),
        )
        .await;
    assert_eq!(resp.problem_code(), "idempotency_key_reused");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn refused_and_invalid_requests_leave_the_key_free(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let auditor = app.api_login("otto", &[Role::Auditor]).await;
    // Invalid input binds nothing: the corrected request goes through.
    let resp = app
        .keyed(
            &erin,
            "/api/v1/changes",
            Some("k1"),
            &json!({"type": "sideways"}).to_string(),
        )
        .await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    assert_eq!(resp.problem_code(), "validation");
    let body = complete_change("Rotate keys").to_string();
    let resp = app.keyed(&erin, "/api/v1/changes", Some("k1"), &body).await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    assert_eq!(resp.header(REPLAYED), None);
    // A refusal binds nothing either: the key is still the auditor's to use.
    let resp = app
        .keyed(&auditor, "/api/v1/changes", Some("k2"), &body)
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    let resp = app
        .keyed(
            &auditor,
            "/api/v1/changes",
            Some("k2"),
            &json!({"title": "x"}).to_string(),
        )
        .await;
    assert_eq!(
        resp.status,
        StatusCode::FORBIDDEN,
        "not a replay: {}",
        resp.body
    );
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(keys, 1, "only the change that was filed bound its key");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_malformed_key_is_refused_before_anything_happens(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let body = complete_change("Rotate keys").to_string();
    let long = "k".repeat(256);
    for key in ["", "two words", long.as_str(), "tab\tinside"] {
        let resp = app.keyed(&erin, "/api/v1/changes", Some(key), &body).await;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{key:?}: {}",
            resp.body
        );
        assert_eq!(resp.problem_code(), "idempotency_key_invalid", "{key:?}");
    }
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/changes")
        .header(header::AUTHORIZATION, format!("Bearer {}", erin.token))
        .header(header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", "one")
        .header("idempotency-key", "two")
        .body(Body::from(body.clone()))
        .unwrap();
    let resp = app.send(req).await;
    assert_eq!(resp.problem_code(), "idempotency_key_invalid");
    let changes: i64 = sqlx::query_scalar("SELECT count(*) FROM changes")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(changes, 0);
    // The longest key accepted.
    let longest = "~".repeat(255);
    let resp = app
        .keyed(&erin, "/api/v1/changes", Some(&longest), &body)
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    // Without credentials, the key changes nothing: 401 as ever.
    let anonymous = ApiClient {
        token: "not-a-token".into(),
        user: erin.user.clone(),
    };
    let resp = app
        .keyed(&anonymous, "/api/v1/changes", Some("k"), &body)
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
}

/// Sessions of this test's database waiting on a lock.
async fn waiting(conn: &mut PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .fetch_one(conn)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn racing_requests_with_one_key_take_effect_once_and_get_one_answer(pool: PgPool) {
    const RACERS: usize = 4;
    // Connections of the test's own, outside the server's pool.
    let mut watch = PgConnection::connect_with(&pool.connect_options())
        .await
        .unwrap();
    let mut holder = PgConnection::connect_with(&pool.connect_options())
        .await
        .unwrap();
    let app = Arc::new(TestApp::new(pool).await);
    for case in cases(&app).await {
        let before = app.effects(&case).await;
        // Hold the audit trail's head so that every racer gets past the
        // look-up and into its own effect's transaction before any commits.
        let mut hold = holder.begin().await.unwrap();
        sqlx::query("SELECT 1 FROM audit_head FOR UPDATE")
            .execute(&mut *hold)
            .await
            .unwrap();
        let case = Arc::new(case);
        let mut racers = tokio::task::JoinSet::new();
        for _ in 0..RACERS {
            let (app, case) = (app.clone(), case.clone());
            racers.spawn(async move {
                let key = format!("race-{}", case.table);
                app.keyed(&case.client, &case.uri, Some(&key), &case.body)
                    .await
            });
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while waiting(&mut watch).await < RACERS as i64 {
            if tokio::time::Instant::now() > deadline {
                let activity: Vec<(Option<String>, Option<String>, Option<String>)> =
                    sqlx::query_as(
                        "SELECT state, wait_event_type, query FROM pg_stat_activity
                      WHERE datname = current_database()",
                    )
                    .fetch_all(&mut watch)
                    .await
                    .unwrap();
                panic!(
                    "{}: the racers never all reached their transactions: {activity:#?}",
                    case.name
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        hold.rollback().await.unwrap();
        let answers = tokio::time::timeout(Duration::from_secs(30), racers.join_all())
            .await
            .expect("the racers finish");
        assert_eq!(
            app.effects(&case).await,
            (before.0 + 1, before.1 + 1),
            "{}: exactly one effect",
            case.name
        );
        let first = answers.iter().find(|a| a.header(REPLAYED).is_none());
        let first = first.unwrap_or_else(|| panic!("{}: one answer is the first", case.name));
        for a in &answers {
            assert_eq!(a.status, StatusCode::CREATED, "{}: {}", case.name, a.body);
            assert_eq!(a.body, first.body, "{}: one answer for all", case.name);
        }
        assert_eq!(
            answers
                .iter()
                .filter(|a| a.header(REPLAYED).is_some())
                .count(),
            RACERS - 1,
            "{}",
            case.name
        );
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn keys_belong_to_their_caller(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let frank = app.api_login("frank", &[Role::Engineer]).await;
    let body = complete_change("Rotate the edge certificates").to_string();
    let mine = app
        .keyed(&erin, "/api/v1/changes", Some("deploy-42"), &body)
        .await;
    let theirs = app
        .keyed(&frank, "/api/v1/changes", Some("deploy-42"), &body)
        .await;
    assert_eq!(mine.status, StatusCode::CREATED);
    assert_eq!(theirs.status, StatusCode::CREATED, "{}", theirs.body);
    assert_eq!(theirs.header(REPLAYED), None, "not erin's answer");
    assert_ne!(created_id(&mine), created_id(&theirs));
    assert_eq!(theirs.json()["author"], "frank");
    // Each caller's retry gets their own answer; another body is each one's own business.
    let again = app
        .keyed(&erin, "/api/v1/changes", Some("deploy-42"), &body)
        .await;
    assert_replayed(&mine, &again, "erin");
    let again = app
        .keyed(&frank, "/api/v1/changes", Some("deploy-42"), &body)
        .await;
    assert_replayed(&theirs, &again, "frank");
    let changes: i64 = sqlx::query_scalar("SELECT count(*) FROM changes")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(changes, 2);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_key_older_than_a_day_no_longer_replays_and_is_purged(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let body = complete_change("Rotate the edge certificates").to_string();
    let first = app
        .keyed(&erin, "/api/v1/changes", Some("old"), &body)
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    sqlx::query(
        "UPDATE idempotency_keys SET created_at = created_at - interval '24 hours 1 minute'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    // Expired: the same request is a new one, and the key is bound anew.
    let second = app
        .keyed(&erin, "/api/v1/changes", Some("old"), &body)
        .await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.body);
    assert_eq!(second.header(REPLAYED), None);
    assert_ne!(created_id(&first), created_id(&second));
    let third = app
        .keyed(&erin, "/api/v1/changes", Some("old"), &body)
        .await;
    assert_replayed(&second, &third, "the new binding");
    // Just under a day, a key still counts.
    sqlx::query(
        "UPDATE idempotency_keys SET created_at = created_at - interval '23 hours 59 minutes'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let fourth = app
        .keyed(&erin, "/api/v1/changes", Some("old"), &body)
        .await;
    assert_replayed(&second, &fourth, "within a day");
    // The purge deletes expired keys only.
    let other = app
        .keyed(&erin, "/api/v1/changes", Some("fresh"), &body)
        .await;
    assert_eq!(other.status, StatusCode::CREATED);
    sqlx::query(
        "UPDATE idempotency_keys SET created_at = created_at - interval '1 minute'
          WHERE response_body IS NOT NULL AND created_at < now() - interval '23 hours'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    // The purge the requests started in the background may hold the lock a
    // moment (then this one passes, as a second server's would): once it
    // has the lock, the expired key is deleted and the fresh one kept.
    let mut purged = None;
    for _ in 0..100 {
        purged = cab_server::api::idempotency::purge(&app.pool)
            .await
            .unwrap();
        if purged.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(purged.is_some_and(|n| n <= 1), "{purged:?}");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(left, 1);
    let changes: i64 = sqlx::query_scalar("SELECT count(*) FROM changes")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(changes, 3);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_retry_after_a_lost_answer_creates_nothing_and_answers_with_the_resource(pool: PgPool) {
    let app = TestApp::new(pool).await;
    for case in cases(&app).await {
        let key = format!("lost-{}", case.table);
        let first = app
            .keyed(&case.client, &case.uri, Some(&key), &case.body)
            .await;
        assert_eq!(
            first.status,
            StatusCode::CREATED,
            "{}: {}",
            case.name,
            first.body
        );
        let after_first = app.effects(&case).await;
        // As if the server died after the effect committed and before the
        // answer was stored (a minute ago).
        let lost = sqlx::query(
            "UPDATE idempotency_keys
                SET response_status = NULL, response_type = NULL, response_location = NULL,
                    response_body = NULL, answered_at = NULL,
                    created_at = created_at - interval '1 minute'
              WHERE response_body IS NOT NULL",
        )
        .execute(&app.pool)
        .await
        .unwrap();
        assert_eq!(lost.rows_affected(), 1);
        let again = app
            .keyed(&case.client, &case.uri, Some(&key), &case.body)
            .await;
        assert_eq!(
            again.status,
            StatusCode::CREATED,
            "{}: {}",
            case.name,
            again.body
        );
        assert_eq!(again.header(REPLAYED), Some("true"), "{}", case.name);
        assert_eq!(created_id(&again), created_id(&first), "{}", case.name);
        assert_eq!(
            app.effects(&case).await,
            after_first,
            "{}: nothing created",
            case.name
        );
        let (a, b) = (first.json(), again.json());
        match case.table {
            // The change as GET shows it.
            "changes" => {
                let get = app
                    .api(
                        Method::GET,
                        &format!("/api/v1/changes/{}", created_id(&first)),
                        Some(&case.client.token),
                        None,
                    )
                    .await;
                assert_eq!(b, get.json());
                assert_eq!(b, a);
            }
            "users" => {
                assert_eq!(b["user"], a["user"]);
                assert_eq!(b["initial_password"], a["initial_password"]);
                assert!(
                    a["initial_password"]
                        .as_str()
                        .is_some_and(|p| p.len() >= 12)
                );
            }
            "api_tokens" => {
                assert_eq!(b["secret"], a["secret"]);
                assert_eq!(b["token"]["name"], a["token"]["name"]);
            }
            // The feed with its address, rebuilt from the secret kept sealed.
            "calendar_feeds" => {
                assert_eq!(b, a);
                assert!(a["url"].as_str().is_some_and(|u| u.ends_with(".ics")));
            }
            "maintenance_periods" => {
                let list = app
                    .api(
                        Method::GET,
                        "/api/v1/maintenance-periods",
                        Some(&case.client.token),
                        None,
                    )
                    .await
                    .json();
                assert!(list.as_array().unwrap().contains(&b), "{list}");
                assert_eq!(b, a);
            }
            _ => {
                for field in ["id", "name", "body", "author", "state"] {
                    assert_eq!(b[field], a[field], "{}: {field}", case.name);
                }
            }
        }
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_retry_racing_the_first_answer_gets_it_once_stored(pool: PgPool) {
    // Bound moments ago and not answered yet: the retry waits for the answer.
    let app = Arc::new(TestApp::new(pool).await);
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let body = complete_change("Rotate the edge certificates").to_string();
    let first = app
        .keyed(&erin, "/api/v1/changes", Some("soon"), &body)
        .await;
    let (status, content_type, sealed): (i16, String, Vec<u8>) = sqlx::query_as(
        "SELECT response_status, response_type, response_body FROM idempotency_keys",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE idempotency_keys SET response_status = NULL, response_type = NULL, response_body = NULL, answered_at = NULL")
        .execute(&app.pool)
        .await
        .unwrap();
    let retry = {
        let (app, erin, body) = (app.clone(), erin.clone(), body.clone());
        tokio::spawn(async move {
            app.keyed(&erin, "/api/v1/changes", Some("soon"), &body)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query(
        "UPDATE idempotency_keys SET response_status = $1, response_type = $2, response_body = $3, answered_at = now()",
    )
    .bind(status)
    .bind(content_type)
    .bind(sealed)
    .execute(&app.pool)
    .await
    .unwrap();
    let retry = tokio::time::timeout(Duration::from_secs(10), retry)
        .await
        .expect("answered in time")
        .unwrap();
    assert_replayed(&first, &retry, "the stored answer");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn killed_mid_burst_the_server_files_each_keyed_change_once(pool: PgPool) {
    const BURST: usize = 32;
    add_user(&pool, "erin", &["engineer"], "erin-long-password");
    let (mut server, url) = start_server(&pool, "LOCAL");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let token: Value = client
        .post(format!("{url}/api/v1/auth/token"))
        .json(&json!({"username": "erin", "password": "erin-long-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let requests: Vec<(String, String)> = (0..BURST)
        .map(|i| {
            (
                format!("burst-{i}-{}", uuid::Uuid::new_v4()),
                complete_change(&format!("Burst change {i}")).to_string(),
            )
        })
        .collect();
    let send = |url: String, key: String, body: String| {
        let (client, token) = (client.clone(), token.clone());
        async move {
            let resp = client
                .post(format!("{url}/api/v1/changes"))
                .bearer_auth(token)
                .header("idempotency-key", key)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?;
            let status = resp.status();
            let replayed = resp.headers().contains_key(REPLAYED);
            Ok::<_, reqwest::Error>((status, replayed, resp.text().await?))
        }
    };
    let mut burst = tokio::task::JoinSet::new();
    for (i, (key, body)) in requests.iter().enumerate() {
        let sent = send(url.clone(), key.clone(), body.clone());
        burst.spawn(async move { (i, sent.await) });
    }
    // Kill the server as soon as the first changes are committed, with the
    // rest of the burst in flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let filed: i64 = sqlx::query_scalar("SELECT count(*) FROM changes")
            .fetch_one(&pool)
            .await
            .unwrap();
        if filed >= 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing was filed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let first_answers = tokio::time::timeout(Duration::from_secs(30), burst.join_all())
        .await
        .expect("every request of the burst ends");
    let lost = first_answers.iter().filter(|(_, r)| r.is_err()).count();
    assert!(lost > 0, "the server was killed with requests in flight");

    // Restarted, the client retries every request with its key.
    let (_server, url) = start_server(&pool, "LOCAL");
    let mut ids = BTreeMap::new();
    for (i, (key, body)) in requests.iter().enumerate() {
        let (status, _, text) = send(url.clone(), key.clone(), body.clone()).await.unwrap();
        assert_eq!(status, 201, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["title"], format!("Burst change {i}"));
        ids.insert(i, v["id"].as_str().unwrap().to_owned());
        // A second retry agrees.
        let (status, replayed, again) = send(url.clone(), key.clone(), body.clone()).await.unwrap();
        assert_eq!(status, 201);
        assert!(replayed);
        assert_eq!(
            serde_json::from_str::<Value>(&again).unwrap()["id"],
            v["id"]
        );
    }
    let per_title: Vec<(String, i64)> =
        sqlx::query_as("SELECT title, count(*) FROM changes GROUP BY title ORDER BY title")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(per_title.len(), BURST, "{per_title:?}");
    assert!(
        per_title.iter().all(|(_, n)| *n == 1),
        "exactly one change per key: {per_title:?}"
    );
    let distinct: BTreeSet<&String> = ids.values().collect();
    assert_eq!(distinct.len(), BURST);
    // Answers that arrived before the kill name the same changes.
    for (i, answer) in &first_answers {
        if let Ok((status, _, text)) = answer
            && *status == 201
        {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(v["id"].as_str(), Some(ids[i].as_str()));
        }
    }
}
