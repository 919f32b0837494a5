//! How a change ends, through the API: closing it with a close code that
//! fits its production deployments, the post-implementation review owed
//! when a rule says so, signed off by someone who did not work on the
//! change, its action items, what is overdue, and the changes CAB closes on
//! its own when their window passed. Sent as the people who may and, above
//! all, the ones who may not: every refusal names its reason, changes
//! nothing and is recorded once.

use axum::http::{Method, StatusCode};
use cab_domain::Role;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::changes::complete_change;
use crate::common::{ApiClient, TestApp, TestResponse};
use crate::deployments::{Cast, request};

// ---------------------------------------------------------------------------
// Helpers

/// A change by `author` whose window is open now, with this risk
/// (impact, likelihood), type and contributors, submitted. Its id.
async fn submitted(
    app: &TestApp,
    author: &ApiClient,
    risk: (i64, i64),
    change_type: &str,
    contributors: &[&str],
) -> String {
    let mut body = complete_change("Roll out the new edge proxy");
    let now = Utc::now();
    body["window"] = json!({
        "start": (now - Duration::hours(1)).to_rfc3339(),
        "end": (now + Duration::hours(3)).to_rfc3339(),
        "time_zone": "UTC"
    });
    body["risk"] = json!({"impact": risk.0, "likelihood": risk.1});
    body["type"] = json!(change_type);
    body["contributors"] = json!(contributors);
    let id = app.file_change(author, body).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = app.change_action(author, &id, "submit", None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    id
}

/// Promotes the change to PROD, started by Rita through the pipeline, and
/// reports `outcome` (succeeded or failed).
async fn to_prod(app: &TestApp, c: &Cast, id: &str, outcome: &str) {
    app.promote_to_stage(&c.pipeline, id).await;
    let id = start_prod(app, c, id).await;
    let resp = app.report(&c.pipeline, &id, outcome, None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
}

/// Authorizes and starts a PROD deployment of a change already on STAGE:
/// the deployment's id.
async fn start_prod(app: &TestApp, c: &Cast, id: &str) -> String {
    let resp = app
        .gate(&c.pipeline, request(id, "prod", Some("rita")))
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    let auth = resp.json();
    let dep = auth["deployment"]["id"].as_str().unwrap().to_owned();
    let resp = app
        .report(&c.pipeline, &dep, "started", auth["token"].as_str())
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    dep
}

/// A low-risk change by Erin, approved by Carol and deployed to PROD with
/// `outcome`.
async fn deployed(app: &TestApp, c: &Cast, outcome: &str) -> String {
    let id = app.approved_change(&c.erin, &c.carol).await;
    to_prod(app, c, &id, outcome).await;
    id
}

async fn close(app: &TestApp, token: &str, id: &str, code: &str, notes: &str) -> TestResponse {
    app.api(
        Method::POST,
        &format!("/api/v1/changes/{id}/close"),
        Some(token),
        Some(json!({"code": code, "notes": notes})),
    )
    .await
}

/// How the change ended and its review, as `who` reads it.
async fn review_of(app: &TestApp, who: &ApiClient, id: &str) -> Value {
    let resp = app
        .api(
            Method::GET,
            &format!("/api/v1/changes/{id}/review"),
            Some(&who.token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    resp.json()
}

/// A review with nothing missing.
fn complete_review() -> Value {
    json!({
        "outcome": "The new proxy serves all traffic.",
        "intervention": "none",
        "incidents": [],
        "went_well": "The canary caught nothing.",
        "went_wrong": "The rollout took an hour longer than planned.",
        "lessons": "Warm the caches before the switch."
    })
}

async fn save(
    app: &TestApp,
    token: &str,
    id: &str,
    revision: i64,
    content: &Value,
) -> TestResponse {
    let mut body = content.clone();
    body["revision"] = json!(revision);
    app.api(
        Method::PUT,
        &format!("/api/v1/changes/{id}/review"),
        Some(token),
        Some(body),
    )
    .await
}

async fn sign_off(app: &TestApp, token: &str, id: &str, revision: i64) -> TestResponse {
    app.api(
        Method::POST,
        &format!("/api/v1/changes/{id}/review/sign-off"),
        Some(token),
        Some(json!({"revision": revision})),
    )
    .await
}

async fn add_action(app: &TestApp, token: &str, id: &str, body: Value) -> TestResponse {
    app.api(
        Method::POST,
        &format!("/api/v1/changes/{id}/review/actions"),
        Some(token),
        Some(body),
    )
    .await
}

async fn set_status(app: &TestApp, token: &str, action: &str, status: &str) -> TestResponse {
    app.api(
        Method::POST,
        &format!("/api/v1/review-actions/{action}/status"),
        Some(token),
        Some(json!({"status": status})),
    )
    .await
}

async fn overdue(app: &TestApp, who: &ApiClient) -> (Vec<String>, Vec<String>) {
    let resp = app
        .api(
            Method::GET,
            "/api/v1/reviews/overdue",
            Some(&who.token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let doc = resp.json();
    let reviews = doc["reviews"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["change"].as_str().unwrap().to_owned())
        .collect();
    let actions = doc["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["title"].as_str().unwrap().to_owned())
        .collect();
    (reviews, actions)
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

fn key_of(review: &Value) -> String {
    review["change"]["key"].as_str().unwrap().to_owned()
}

/// What a refused request must leave as it was: the change's state and
/// closure, its review, and its action items.
#[derive(Debug, PartialEq)]
struct Stored {
    state: String,
    close_code: Option<String>,
    close_notes: String,
    review: Option<(i32, String, Option<DateTime<Utc>>)>,
    revisions: i64,
    actions: Vec<(String, String)>,
}

async fn stored(app: &TestApp, id: &str) -> Stored {
    let (state, close_code, close_notes): (String, Option<String>, String) =
        sqlx::query_as("SELECT state, close_code, close_notes FROM changes WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let review = sqlx::query_as(
        "SELECT revision, state, signed_off_at FROM reviews WHERE change_id = $1::uuid",
    )
    .bind(id)
    .fetch_optional(&app.pool)
    .await
    .unwrap();
    let revisions =
        sqlx::query_scalar("SELECT count(*) FROM review_revisions WHERE change_id = $1::uuid")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let actions = sqlx::query_as(
        "SELECT title, status FROM review_actions WHERE change_id = $1::uuid ORDER BY number",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    Stored {
        state,
        close_code,
        close_notes,
        review,
        revisions,
        actions,
    }
}

/// The change and the audit trail before an attempt.
struct Before {
    id: String,
    stored: Stored,
    events: i64,
}

async fn before(app: &TestApp, id: &str) -> Before {
    Before {
        id: id.to_owned(),
        stored: stored(app, id).await,
        events: app.audit_count().await,
    }
}

/// The attempt was refused with `status` and `code`, saying `words`;
/// nothing changed, and exactly one refusal of `attempted` was recorded,
/// with the reason the caller was given.
async fn assert_refused(
    app: &TestApp,
    was: &Before,
    resp: &TestResponse,
    (status, code): (StatusCode, &str),
    attempted: &str,
    words: &str,
) {
    assert_eq!(resp.status, status, "{code}: {}", resp.body);
    assert_eq!(resp.problem_code(), code, "{}", resp.body);
    let detail = resp.json()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains(words), "{code}: {detail}");
    assert_eq!(
        stored(app, &was.id).await,
        was.stored,
        "{code}: nothing changed"
    );
    assert_eq!(
        app.audit_count().await,
        was.events + 1,
        "{code}: only the refusal is recorded"
    );
    let (action, payload) = app.audit_events().await.pop().unwrap();
    assert_eq!(action, "access.denied", "{code}");
    assert_eq!(payload["attempted"], attempted, "{code}");
    assert_eq!(payload["reason"], code);
    assert_eq!(payload["message"], detail.as_str());
}

const FORBIDDEN: StatusCode = StatusCode::FORBIDDEN;

/// Invalid input is answered 422 naming `field`, and neither changes nor
/// records anything.
async fn assert_invalid(
    app: &TestApp,
    was: &Before,
    resp: &TestResponse,
    field: &str,
    words: &str,
) {
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{field}: {}",
        resp.body
    );
    assert_eq!(resp.problem_code(), "validation", "{}", resp.body);
    let doc = resp.json();
    let named: Vec<&str> = doc["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        doc["field"] == field || named.contains(&field),
        "names {field}: {doc}"
    );
    assert!(resp.body.contains(words), "{field}: {}", resp.body);
    assert_eq!(
        stored(app, &was.id).await,
        was.stored,
        "{field}: nothing changed"
    );
    assert_eq!(
        app.audit_count().await,
        was.events,
        "{field}: nothing recorded"
    );
}

async fn events_named(app: &TestApp, action: &str) -> Vec<Value> {
    app.audit_events()
        .await
        .into_iter()
        .filter(|(a, _)| a == action)
        .map(|(_, p)| p)
        .collect()
}

// ---------------------------------------------------------------------------
// Closing

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn only_its_people_and_staff_close_a_change_never_a_pipeline(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let otto = app.api_login("otto", &[Role::Auditor]).await;
    let frank = app.api_login("frank", &[Role::Engineer]).await;
    let id = deployed(&app, &c, "succeeded").await;

    for (token, code, words) in [
        (
            &otto.token,
            "close_not_allowed",
            "Only the change's authors",
        ),
        (
            &frank.token,
            "close_not_allowed",
            "Only the change's authors",
        ),
        (&c.pipeline, "service_account", "a person closes the change"),
    ] {
        let was = before(&app, &id).await;
        let resp = close(&app, token, &id, "successful", "").await;
        assert_refused(&app, &was, &resp, (FORBIDDEN, code), "change.close", words).await;
    }
    assert!(events_named(&app, "change.closed").await.is_empty());

    // A release manager may; the change is closed, once.
    let resp = close(&app, &c.rita.token, &id, "successful", "").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let doc = resp.json();
    assert_eq!(doc["change"]["state"], "closed");
    assert_eq!(doc["closure"]["code"], "successful");
    assert_eq!(doc["closure"]["code_label"], "Successful");
    assert_eq!(doc["closure"]["closed_by"], "rita");
    let was = before(&app, &id).await;
    let resp = close(&app, &c.erin.token, &id, "successful", "").await;
    assert_refused(
        &app,
        &was,
        &resp,
        (StatusCode::CONFLICT, "change_closed"),
        "change.close",
        "already closed",
    )
    .await;
    let closed = events_named(&app, "change.closed").await;
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0]["close_code"], "successful");
    assert_eq!(closed[0]["to"], "closed");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_close_code_must_fit_the_production_deployments(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;

    // Before PROD, any code but "not implemented" is refused.
    let approved = app.approved_change(&c.erin, &c.carol).await;
    for code in [
        "successful",
        "successful_with_issues",
        "failed_rolled_back",
        "failed_not_rolled_back",
    ] {
        let was = before(&app, &approved).await;
        let resp = close(&app, &c.erin.token, &approved, code, "It went somehow.").await;
        assert_refused(
            &app,
            &was,
            &resp,
            (FORBIDDEN, "close_code_mismatch"),
            "change.close",
            "never reached production",
        )
        .await;
    }
    // Not a code at all: named, not recorded.
    let was = before(&app, &approved).await;
    let resp = close(&app, &c.erin.token, &approved, "fine", "").await;
    assert_invalid(&app, &was, &resp, "code", "Choose how the change ended").await;

    // While its PROD deployment runs, nothing closes it.
    app.promote_to_stage(&c.pipeline, &approved).await;
    let running = start_prod(&app, &c, &approved).await;
    let was = before(&app, &approved).await;
    let resp = close(&app, &c.erin.token, &approved, "successful", "").await;
    assert_refused(
        &app,
        &was,
        &resp,
        (StatusCode::CONFLICT, "deployment_under_way"),
        "change.close",
        "under way",
    )
    .await;

    // After a successful deployment, it was implemented.
    let resp = app.report(&c.pipeline, &running, "succeeded", None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let was = before(&app, &approved).await;
    let resp = close(
        &app,
        &c.erin.token,
        &approved,
        "not_implemented",
        "Never ran.",
    )
    .await;
    assert_refused(
        &app,
        &was,
        &resp,
        (FORBIDDEN, "close_code_mismatch"),
        "change.close",
        "it reached production, so it was implemented",
    )
    .await;
    // Any code but "successful" says what happened.
    for code in ["successful_with_issues", "failed_rolled_back"] {
        let was = before(&app, &approved).await;
        let resp = close(&app, &c.erin.token, &approved, code, "   ").await;
        assert_invalid(&app, &was, &resp, "notes", "needs notes").await;
    }
    let resp = close(
        &app,
        &c.erin.token,
        &approved,
        "successful_with_issues",
        "  Two pods restarted once.  ",
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let doc = resp.json();
    assert_eq!(doc["closure"]["code_label"], "Successful with issues");
    assert_eq!(doc["closure"]["notes"], "Two pods restarted once.");
    assert_eq!(doc["closure"]["closed_by"], "erin");
    // The change itself says how it ended.
    let change = app
        .api(
            Method::GET,
            &format!("/api/v1/changes/{approved}"),
            Some(&c.carol.token),
            None,
        )
        .await
        .json();
    assert_eq!(change["state"], "closed");
    assert_eq!(change["closure"], doc["closure"]);
    let closed_at = time(&change["closure"]["closed_at"]);
    assert!((Utc::now() - closed_at).num_minutes() < 5);

    // After a failed deployment, only a failure fits.
    let failed = deployed(&app, &c, "failed").await;
    for code in ["successful", "successful_with_issues", "not_implemented"] {
        let was = before(&app, &failed).await;
        let resp = close(&app, &c.erin.token, &failed, code, "It was fine really.").await;
        assert_refused(
            &app,
            &was,
            &resp,
            (FORBIDDEN, "close_code_mismatch"),
            "change.close",
            "its last production deployment failed",
        )
        .await;
    }
    let was = before(&app, &failed).await;
    let resp = close(&app, &c.erin.token, &failed, "failed_rolled_back", "").await;
    assert_invalid(&app, &was, &resp, "notes", "needs notes").await;
    let resp = close(
        &app,
        &c.erin.token,
        &failed,
        "failed_rolled_back",
        "Health checks failed; the pipeline rolled back.",
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["closure"]["code"], "failed_rolled_back");
    assert_eq!(events_named(&app, "change.closed").await.len(), 2);
    // A draft has no close code.
    let draft = app.open_change(&c.erin).await;
    let was = before(&app, &draft).await;
    let resp = close(&app, &c.erin.token, &draft, "not_implemented", "Dropped.").await;
    assert_refused(
        &app,
        &was,
        &resp,
        (FORBIDDEN, "not_approved"),
        "change.close",
        "withdraw or cancel",
    )
    .await;
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_change_in_a_release_not_yet_over_is_not_closed(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let id = app.approved_change(&c.erin, &c.carol).await;
    let release = crate::releases::planned(&app, &c.rita, &[&id]).await;
    let was = before(&app, &id).await;
    let resp = close(
        &app,
        &c.erin.token,
        &id,
        "not_implemented",
        "Not needed any more.",
    )
    .await;
    assert_refused(
        &app,
        &was,
        &resp,
        (FORBIDDEN, "release_under_way"),
        "change.close",
        "REL-1",
    )
    .await;
    // Once the release is cancelled, the change closes.
    let resp = crate::releases::release_action(
        &app,
        &c.rita,
        &release,
        "cancel",
        Some(json!({"reason": "Replanned for January."})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let resp = close(
        &app,
        &c.erin.token,
        &id,
        "not_implemented",
        "Not needed any more.",
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["closure"]["code"], "not_implemented");
    assert_eq!(resp.json()["review"], Value::Null, "nothing to review");
}

// ---------------------------------------------------------------------------
// When a review is owed

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_failed_production_deployment_owes_a_review(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let id = deployed(&app, &c, "failed").await;
    let doc = review_of(&app, &c.erin, &id).await;
    assert_eq!(doc["change"]["state"], "implementation_failed");
    assert_eq!(doc["closure"], Value::Null);
    let review = &doc["review"];
    assert_eq!(review["required"], true, "{doc}");
    assert_eq!(
        review["reasons"],
        json!([{"code": "failed", "label": "the change failed"}])
    );
    let due = time(&review["due_at"]);
    let hours = (due - Utc::now()).num_hours();
    assert!((119..=120).contains(&hours), "due in 5 days: {hours} h");
    assert_eq!(review["overdue"], false);
    assert_eq!(review["state"], "open");
    assert_eq!(review["revision"], 0);
    let owed = events_named(&app, "review.owed").await;
    assert_eq!(owed.len(), 1);
    assert_eq!(owed[0]["reasons"], json!(["failed"]));
    // Closed as a failure, it stays owed for the same reason.
    let resp = close(
        &app,
        &c.erin.token,
        &id,
        "failed_not_rolled_back",
        "Fixed forward.",
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["review"]["reasons"], review["reasons"]);
    assert_eq!(resp.json()["review"]["due_at"], review["due_at"]);
    assert_eq!(events_named(&app, "review.owed").await.len(), 1);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_high_risk_change_owes_a_review_once_deployed(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let sam = app.api_login("sam", &[Role::SecurityReviewer]).await;
    let carl = app.api_login("carl", &[Role::CabMember]).await;
    let id = submitted(&app, &c.erin, (3, 3), "normal", &[]).await;
    let resp = app
        .assess(&sam, &id, crate::decisions::assessment("accept", "high"))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    app.vote(&c.carol, &id, "approve", "").await;
    let resp = app.vote(&carl, &id, "approve", "").await;
    assert_eq!(resp.json()["state"], "approved", "{}", resp.body);
    assert_eq!(review_of(&app, &c.erin, &id).await["review"], Value::Null);

    to_prod(&app, &c, &id, "succeeded").await;
    let doc = review_of(&app, &c.erin, &id).await;
    assert_eq!(doc["change"]["state"], "implemented");
    assert_eq!(doc["review"]["required"], true, "{doc}");
    assert_eq!(doc["review"]["reasons"][0]["code"], "high_risk");
    assert_eq!(doc["review"]["reasons"].as_array().unwrap().len(), 1);
    let owed = events_named(&app, "review.owed").await;
    assert_eq!(owed.len(), 1);
    assert_eq!(owed[0]["reasons"], json!(["high_risk"]));
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_low_risk_success_may_have_an_optional_review(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let otto = app.api_login("otto", &[Role::Auditor]).await;
    let id = deployed(&app, &c, "succeeded").await;
    let resp = close(&app, &c.erin.token, &id, "successful", "").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["review"], Value::Null, "{}", resp.body);
    assert!(events_named(&app, "review.owed").await.is_empty());

    // Its author writes one anyway: optional, never due nor overdue.
    let resp = save(&app, &c.erin.token, &id, 0, &complete_review()).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let review = resp.json()["review"].clone();
    assert_eq!(review["required"], false);
    assert_eq!(review["reasons"], json!([]));
    assert_eq!(review["due_at"], Value::Null);
    assert_eq!(review["overdue"], false);
    assert_eq!(review["revision"], 1);
    let resp = sign_off(&app, &c.carol.token, &id, 1).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    // Anyone signed in reads it, by id or key; nobody else does.
    let doc = review_of(&app, &otto, &id).await;
    assert_eq!(review_of(&app, &otto, &key_of(&doc)).await, doc);
    assert_eq!(doc["review"]["state"], "signed_off");
    assert_eq!(doc["review"]["signed_off_by"], "carol");
    assert_eq!(doc["revisions"][0]["author"], "erin");
    assert_eq!(
        doc["revisions"][0]["content"]["lessons"],
        "Warm the caches before the switch."
    );
    let resp = app
        .api(
            Method::GET,
            &format!("/api/v1/changes/{}/review", key_of(&doc)),
            None,
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    let (reviews, actions) = overdue(&app, &c.carol).await;
    assert!(reviews.is_empty() && actions.is_empty());
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn only_administrators_owe_a_review_for_every_change(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let read = app
        .api(
            Method::GET,
            "/api/v1/settings/reviews",
            Some(&c.erin.token),
            None,
        )
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(
        read.json(),
        json!({"due_days": 5, "required_for_all": false})
    );
    let settings = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM settings WHERE key LIKE 'review%'")
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    for who in [&c.erin, &c.carol, &c.rita] {
        let events = app.audit_count().await;
        let resp = app
            .api(
                Method::PUT,
                "/api/v1/settings/reviews",
                Some(&who.token),
                Some(json!({"due_days": 10, "required_for_all": true})),
            )
            .await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
        assert_eq!(resp.problem_code(), "admin_required");
        assert!(resp.body.contains("Only administrators"), "{}", resp.body);
        assert_eq!(app.audit_count().await, events + 1);
        assert_eq!(
            app.denials().await.last().unwrap(),
            &("settings.reviews".to_owned(), "admin_required".to_owned())
        );
        assert_eq!(settings().await, 0, "nothing stored");
    }
    for days in [0, 91, -3] {
        let events = app.audit_count().await;
        let resp = app
            .api(
                Method::PUT,
                "/api/v1/settings/reviews",
                Some(&c.adam.token),
                Some(json!({"due_days": days, "required_for_all": true})),
            )
            .await;
        assert_eq!(
            resp.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{days}: {}",
            resp.body
        );
        assert_eq!(resp.json()["field"], "due_days");
        assert_eq!(app.audit_count().await, events);
        assert_eq!(settings().await, 0);
    }
    let resp = app
        .api(
            Method::PUT,
            "/api/v1/settings/reviews",
            Some(&c.adam.token),
            Some(json!({"due_days": 10, "required_for_all": true})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(
        resp.json(),
        json!({"due_days": 10, "required_for_all": true})
    );
    let changed = events_named(&app, "settings.reviews_changed").await;
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["from"]["required_for_all"], false);
    assert_eq!(changed[0]["to"]["due_days"], 10);

    // Now a low-risk success owes one too, due in ten days.
    let id = deployed(&app, &c, "succeeded").await;
    let review = review_of(&app, &c.erin, &id).await["review"].clone();
    assert_eq!(review["required"], true, "{review}");
    assert_eq!(review["reasons"][0]["code"], "policy");
    let days = (time(&review["due_at"]) - Utc::now()).num_hours();
    assert!((239..=240).contains(&days), "{days} h");
    // A change never implemented still owes none.
    let lapsed = app.approved_change(&c.erin, &c.carol).await;
    let resp = close(&app, &c.erin.token, &lapsed, "not_implemented", "Dropped.").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["review"], Value::Null);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_emergency_owes_a_review_in_72_hours_and_its_sign_off_completes_the_retrospective(
    pool: PgPool,
) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let sam = app.api_login("sam", &[Role::SecurityReviewer]).await;
    let id = submitted(&app, &c.erin, (2, 2), "emergency", &[]).await;
    app.vote(&c.carol, &id, "approve", "").await;
    let resp = app
        .assess(&sam, &id, crate::decisions::assessment("accept", "medium"))
        .await;
    assert_eq!(resp.json()["state"], "approved", "{}", resp.body);
    let trail = app.approvals(&c.carol, &id).await;
    let decided = time(&trail["decided_at"]);
    let doc = review_of(&app, &c.erin, &id).await;
    let review = &doc["review"];
    assert_eq!(review["required"], true, "{doc}");
    assert_eq!(review["reasons"][0]["code"], "emergency");
    assert_eq!(review["due_at"], trail["retrospective_due_at"]);
    assert_eq!((time(&review["due_at"]) - decided).num_hours(), 72);
    assert_eq!(trail["retrospective_done_at"], Value::Null);

    // The author writes it; a CAB member who did not work on it signs off.
    let resp = save(&app, &c.erin.token, &id, 0, &complete_review()).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let was = before(&app, &id).await;
    let resp = sign_off(&app, &sam.token, &id, 1).await;
    assert_refused(
        &app,
        &was,
        &resp,
        (FORBIDDEN, "sign_off_not_allowed"),
        "review.sign_off",
        "Only CAB members and release managers",
    )
    .await;
    // Not ahead of what it looks back on: nothing has run yet.
    let was = before(&app, &id).await;
    let resp = sign_off(&app, &c.carol.token, &id, 1).await;
    assert_refused(
        &app,
        &was,
        &resp,
        (FORBIDDEN, "not_over_yet"),
        "review.sign_off",
        "once its production deployment has ended",
    )
    .await;
    // The emergency passed without a deployment: its author closes it.
    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/changes/{id}/close"),
            Some(&c.erin.token),
            Some(json!({"code": "not_implemented", "notes": "The vendor patch made it unnecessary."})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let resp = sign_off(&app, &c.carol.token, &id, 1).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let review = resp.json()["review"].clone();
    assert_eq!(review["state"], "signed_off");
    let trail = app.approvals(&c.carol, &id).await;
    assert_eq!(
        trail["retrospective_done_at"],
        review["first_signed_off_at"]
    );
    assert_eq!(trail["retrospective_done_at"], review["signed_off_at"]);
    let signed = events_named(&app, "review.signed_off").await;
    assert_eq!(signed.len(), 1);
    assert_eq!(signed[0]["revision"], 1);
}

// ---------------------------------------------------------------------------
// Writing and signing off

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn nobody_who_worked_on_the_change_signs_off_its_review(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let cara = app
        .api_login("cara", &[Role::Engineer, Role::CabMember])
        .await;
    let cody = app
        .api_login("cody", &[Role::Engineer, Role::CabMember])
        .await;
    let otto = app.api_login("otto", &[Role::Auditor]).await;
    let olly = app.api_login("olly", &[Role::Engineer]).await;
    let id = submitted(&app, &cara, (1, 1), "normal", &["cody"]).await;
    let resp = app.vote(&c.carol, &id, "approve", "").await;
    assert_eq!(resp.json()["state"], "approved", "{}", resp.body);
    to_prod(&app, &c, &id, "failed").await;

    // Who may not write it.
    for (token, code, words) in [
        (
            &otto.token,
            "review_not_allowed",
            "Only the people who worked",
        ),
        (
            &olly.token,
            "review_not_allowed",
            "Only the people who worked",
        ),
        (&c.pipeline, "service_account", "do not write reviews"),
    ] {
        let was = before(&app, &id).await;
        let resp = save(&app, token, &id, 0, &complete_review()).await;
        assert_refused(&app, &was, &resp, (FORBIDDEN, code), "review.write", words).await;
    }
    // A contributor writes it.
    let resp = save(&app, &cody.token, &id, 0, &complete_review()).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);

    for (token, code, words) in [
        (&cara.token, "self_review", "You worked on this change"),
        (&cody.token, "self_review", "You worked on this change"),
        // Rita started its PROD deployment.
        (&c.rita.token, "self_review", "You worked on this change"),
        (&c.pipeline, "service_account", "do not sign off"),
        (&olly.token, "sign_off_not_allowed", "Only CAB members"),
        (&otto.token, "sign_off_not_allowed", "Only CAB members"),
        (&c.erin.token, "sign_off_not_allowed", "Only CAB members"),
    ] {
        let was = before(&app, &id).await;
        let resp = sign_off(&app, token, &id, 1).await;
        assert_refused(
            &app,
            &was,
            &resp,
            (FORBIDDEN, code),
            "review.sign_off",
            words,
        )
        .await;
    }
    let resp = sign_off(&app, &c.carol.token, &id, 1).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["review"]["signed_off_by"], "carol");
    // Signed off once, not twice.
    let carl = app.api_login("carl", &[Role::CabMember]).await;
    let was = before(&app, &id).await;
    let resp = sign_off(&app, &carl.token, &id, 1).await;
    assert_refused(
        &app,
        &was,
        &resp,
        (FORBIDDEN, "already_signed_off"),
        "review.sign_off",
        "already signed off",
    )
    .await;
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_incomplete_review_is_not_signed_off(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let id = deployed(&app, &c, "failed").await;
    // Nothing written yet.
    let was = before(&app, &id).await;
    let resp = sign_off(&app, &c.carol.token, &id, 0).await;
    assert_refused(
        &app,
        &was,
        &resp,
        (FORBIDDEN, "review_incomplete"),
        "review.sign_off",
        "Say what the outcome was.",
    )
    .await;
    // The outcome alone, and an incident not yet over.
    let draft = json!({
        "outcome": "Half the pods failed their health checks.",
        "incidents": [{"reference": "INC-4711", "severity": "sev2", "caused": "confirmed",
                       "started_at": (Utc::now() - Duration::hours(2)).to_rfc3339()}]
    });
    let resp = save(&app, &c.erin.token, &id, 0, &draft).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let review = resp.json()["review"].clone();
    assert_eq!(review["revision"], 1);
    assert_eq!(review["content"]["intervention"], Value::Null);
    assert_eq!(
        review["content"]["incidents"][0]["severity_label"],
        "Severity 2 (major)"
    );
    // An incident the change caused owes the review for that too.
    let reasons: Vec<&str> = review["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["failed", "incident"]);
    let was = before(&app, &id).await;
    let resp = sign_off(&app, &c.carol.token, &id, 1).await;
    assert_refused(
        &app,
        &was,
        &resp,
        (FORBIDDEN, "review_incomplete"),
        "review.sign_off",
        "The review is not complete",
    )
    .await;
    let detail = resp.json()["detail"].as_str().unwrap().to_owned();
    for missing in [
        "Say what intervention",
        "lessons learned",
        "Incident 1: say when service was restored",
    ] {
        assert!(detail.contains(missing), "{missing}: {detail}");
    }
    assert!(!detail.contains("outcome"), "{detail}");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_incident_restored_before_it_started_is_refused(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let id = deployed(&app, &c, "succeeded").await;
    let started = Utc::now() - Duration::hours(2);
    let mut review = complete_review();
    review["incidents"] = json!([{
        "reference": "INC-4712", "severity": "sev3", "caused": "suspected",
        "started_at": started.to_rfc3339(),
        "restored_at": (started - Duration::minutes(5)).to_rfc3339()
    }]);
    let was = before(&app, &id).await;
    let resp = save(&app, &c.erin.token, &id, 0, &review).await;
    assert_invalid(
        &app,
        &was,
        &resp,
        "incidents",
        "cannot be restored before the incident started",
    )
    .await;
    // Words and times that are not words and times, each named.
    review["incidents"][0]["restored_at"] = json!("yesterday");
    review["incidents"][0]["severity"] = json!("sev9");
    review["intervention"] = json!("prayer");
    let resp = save(&app, &c.erin.token, &id, 0, &review).await;
    assert_invalid(&app, &was, &resp, "incidents", "sev9").await;
    assert_invalid(&app, &was, &resp, "intervention", "prayer").await;
    assert!(resp.body.contains("yesterday"), "{}", resp.body);
    // Restored after it started: saved, and the suspected incident owes
    // the review.
    review["incidents"][0]["restored_at"] = json!((started + Duration::minutes(40)).to_rfc3339());
    review["incidents"][0]["severity"] = json!("sev3");
    review["intervention"] = json!("hotfix");
    let resp = save(&app, &c.erin.token, &id, 0, &review).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let saved = resp.json()["review"].clone();
    assert_eq!(saved["required"], true);
    assert_eq!(saved["reasons"][0]["code"], "incident");
    assert_eq!(saved["content"]["incidents"][0]["caused"], "suspected");
    assert_eq!(saved["content"]["intervention_label"], "Hotfix");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_stale_revision_is_refused_on_save_and_on_sign_off(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let id = deployed(&app, &c, "failed").await;
    // Erin and Rita both read the empty review; Erin saves first.
    let resp = save(&app, &c.erin.token, &id, 0, &complete_review()).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let mut theirs = complete_review();
    theirs["outcome"] = json!("Nothing happened at all.");
    let was = before(&app, &id).await;
    let resp = save(&app, &c.rita.token, &id, 0, &theirs).await;
    assert_refused(
        &app,
        &was,
        &resp,
        (FORBIDDEN, "stale_revision"),
        "review.write",
        "You read revision 0 of the review, but it is now at revision 1",
    )
    .await;
    // Erin amends it; Carol signs off what she read before.
    let mut amended = complete_review();
    amended["lessons"] = json!("Warm the caches, and check the health checks.");
    let resp = save(&app, &c.erin.token, &id, 1, &amended).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let was = before(&app, &id).await;
    let resp = sign_off(&app, &c.carol.token, &id, 1).await;
    assert_refused(
        &app,
        &was,
        &resp,
        (FORBIDDEN, "stale_revision"),
        "review.sign_off",
        "it is now at revision 2",
    )
    .await;
    let resp = sign_off(&app, &c.carol.token, &id, 2).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    // Saving what is there already is no revision.
    let resp = save(&app, &c.erin.token, &id, 2, &amended).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["review"]["revision"], 2);
    assert_eq!(resp.json()["review"]["state"], "signed_off");
    // The revision read is required.
    let was = before(&app, &id).await;
    let resp = app
        .api(
            Method::PUT,
            &format!("/api/v1/changes/{id}/review"),
            Some(&c.erin.token),
            Some(complete_review()),
        )
        .await;
    assert_invalid(&app, &was, &resp, "revision", "revision").await;
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_edit_after_sign_off_is_a_new_revision_signed_off_again(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let carl = app.api_login("carl", &[Role::CabMember]).await;
    let id = deployed(&app, &c, "failed").await;
    save(&app, &c.erin.token, &id, 0, &complete_review()).await;
    let resp = sign_off(&app, &c.carol.token, &id, 1).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let first = resp.json()["review"].clone();
    assert_eq!(first["first_signed_off_at"], first["signed_off_at"]);

    let mut amended = complete_review();
    amended["went_wrong"] = json!("The health checks were too strict.");
    let resp = save(&app, &c.erin.token, &id, 1, &amended).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let doc = resp.json();
    let review = &doc["review"];
    assert_eq!(review["revision"], 2);
    assert_eq!(review["state"], "open", "signed off again, not already");
    assert_eq!(review["signed_off_by"], Value::Null);
    assert_eq!(review["first_signed_off_at"], first["first_signed_off_at"]);
    assert_eq!(review["overdue"], false, "the first sign-off stands");
    assert_eq!(
        doc["revisions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["revision"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(
        doc["revisions"][0]["content"]["went_wrong"],
        "The rollout took an hour longer than planned."
    );
    let saved = events_named(&app, "review.saved").await;
    assert_eq!(saved.len(), 2);
    assert_eq!(saved[1]["fields"], json!(["went_wrong"]));
    assert_eq!(saved[1]["amends_signed_off"], true);

    let resp = sign_off(&app, &carl.token, &id, 2).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let review = resp.json()["review"].clone();
    assert_eq!(review["state"], "signed_off");
    assert_eq!(review["signed_off_by"], "carl");
    assert_eq!(review["first_signed_off_at"], first["first_signed_off_at"]);
}

// ---------------------------------------------------------------------------
// Action items and what is overdue

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn action_items_are_owned_by_a_person_and_moved_along_by_them(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let olly = app.api_login("olly", &[Role::Engineer]).await;
    let frank = app.api_login("frank", &[Role::Engineer]).await;
    let otto = app.api_login("otto", &[Role::Auditor]).await;
    app.user("gone", &[Role::Engineer]).await;
    sqlx::query("UPDATE users SET disabled_at = now() WHERE username = 'gone'")
        .execute(&app.pool)
        .await
        .unwrap();
    let id = deployed(&app, &c, "failed").await;
    let today = Utc::now().date_naive();
    let in_two_weeks = (today + Duration::days(14)).to_string();
    let item = |owner: &str, due: &str| json!({"title": "Relax the health checks", "owner": owner, "due_on": due});

    for (body, field, words) in [
        (
            item("nobody", &in_two_weeks),
            "owner",
            "There is no person named nobody",
        ),
        (
            item("gone", &in_two_weeks),
            "owner",
            "There is no person named gone",
        ),
        (item("deploy-bot", &in_two_weeks), "owner", "deploy-bot"),
        (item("", &in_two_weeks), "owner", "Name the person"),
        (
            item("olly", &(today + Duration::days(3 * 365)).to_string()),
            "due_on",
            "Choose a due date",
        ),
        (
            item("olly", &(today - Duration::days(1)).to_string()),
            "due_on",
            "Choose a due date",
        ),
        (item("olly", "next week"), "due_on", "not a date"),
        (
            json!({"title": "Relax the health checks", "owner": "olly"}),
            "due_on",
            "due date",
        ),
        (
            json!({"title": " ", "owner": "olly", "due_on": in_two_weeks}),
            "title",
            "Give the action a title",
        ),
    ] {
        let was = before(&app, &id).await;
        let resp = add_action(&app, &c.erin.token, &id, body).await;
        assert_invalid(&app, &was, &resp, field, words).await;
    }
    for (token, code, words) in [
        (
            &otto.token,
            "review_not_allowed",
            "Only the people who worked",
        ),
        (
            &frank.token,
            "review_not_allowed",
            "Only the people who worked",
        ),
        (&c.pipeline, "service_account", "Service accounts"),
    ] {
        let was = before(&app, &id).await;
        let resp = add_action(&app, token, &id, item("olly", &in_two_weeks)).await;
        assert_refused(&app, &was, &resp, (FORBIDDEN, code), "review.action", words).await;
    }

    let resp = add_action(&app, &c.erin.token, &id, item("olly", &in_two_weeks)).await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    let added = resp.json();
    assert_eq!(added["owner"], "olly");
    assert_eq!(added["status"], "open");
    assert_eq!(added["due_on"], in_two_weeks.as_str());
    assert_eq!(added["overdue"], false);
    let key = review_of(&app, &olly, &id).await["change"]["key"].clone();
    assert_eq!(added["change"], key);
    let action = added["id"].as_str().unwrap().to_owned();

    // Someone unrelated may not move it; its owner may.
    for (token, code) in [
        (&frank.token, "review_not_allowed"),
        (&otto.token, "review_not_allowed"),
        (&c.pipeline, "service_account"),
    ] {
        let was = before(&app, &id).await;
        let resp = set_status(&app, token, &action, "done").await;
        assert_refused(&app, &was, &resp, (FORBIDDEN, code), "review.action", "").await;
    }
    let was = before(&app, &id).await;
    let resp = set_status(&app, &olly.token, &action, "finished").await;
    assert_invalid(
        &app,
        &was,
        &resp,
        "status",
        "Choose open, in progress or done",
    )
    .await;
    let resp = set_status(&app, &olly.token, &action, "in_progress").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["status_label"], "In progress");
    let resp = set_status(&app, &olly.token, &action, "done").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert!(resp.json()["done_at"].is_string());
    let updated = events_named(&app, "review.action_updated").await;
    assert_eq!(updated.len(), 2);
    assert_eq!(updated[1]["from"], "in_progress");
    assert_eq!(updated[1]["to"], "done");
    let resp = set_status(
        &app,
        &olly.token,
        "00000000-0000-0000-0000-000000000000",
        "done",
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);

    // Signed off, the review takes no new items; its owner still moves
    // theirs along.
    save(&app, &c.erin.token, &id, 0, &complete_review()).await;
    let resp = sign_off(&app, &c.carol.token, &id, 1).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let was = before(&app, &id).await;
    let resp = add_action(&app, &c.erin.token, &id, item("olly", &in_two_weeks)).await;
    assert_refused(
        &app,
        &was,
        &resp,
        (FORBIDDEN, "review_signed_off"),
        "review.action",
        "amend it to add action items",
    )
    .await;
    let resp = set_status(&app, &olly.token, &action, "open").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["done_at"], Value::Null);
    let doc = review_of(&app, &otto, &id).await;
    assert_eq!(doc["actions"].as_array().unwrap().len(), 1);
    assert_eq!(doc["actions"][0]["title"], "Relax the health checks");
    assert_eq!(doc["actions"][0]["status"], "open");
    let added = events_named(&app, "review.action_added").await;
    assert_eq!(added.len(), 1);
    assert_eq!(added[0]["owner"], "olly");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn what_is_overdue_is_listed_for_each_person(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let fred = app.api_login("fred", &[Role::Engineer]).await;
    let olly = app.api_login("olly", &[Role::Engineer]).await;
    let otto = app.api_login("otto", &[Role::Auditor]).await;
    let erins = deployed(&app, &c, "failed").await;
    let freds = app.approved_change(&fred, &c.carol).await;
    to_prod(&app, &c, &freds, "failed").await;
    let on_time = deployed(&app, &c, "failed").await;
    let today = Utc::now().date_naive();
    for (title, due) in [
        ("Fix the health checks", today),
        ("Write the runbook", today + Duration::days(30)),
    ] {
        let resp = add_action(
            &app,
            &c.erin.token,
            &erins,
            json!({"title": title, "owner": "olly", "due_on": due.to_string()}),
        )
        .await;
        assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
        assert_eq!(resp.json()["overdue"], false, "{title}");
    }
    // Time passes: the first item was due yesterday, and two reviews are
    // past due.
    sqlx::query(
        "UPDATE review_actions SET due_on = due_on - 1 WHERE title = 'Fix the health checks'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE reviews SET due_at = now() - interval '1 day' WHERE change_id IN ($1::uuid, $2::uuid)",
    )
    .bind(&erins)
    .bind(&freds)
    .execute(&app.pool)
    .await
    .unwrap();
    let erin_key = key_of(&review_of(&app, &c.erin, &erins).await);
    let fred_key = key_of(&review_of(&app, &c.erin, &freds).await);
    let doc = review_of(&app, &c.erin, &erins).await;
    assert_eq!(doc["review"]["overdue"], true);
    assert_eq!(
        review_of(&app, &c.erin, &on_time).await["review"]["overdue"],
        false
    );

    let mut both = vec![erin_key.clone(), fred_key.clone()];
    both.sort();
    for who in [&c.carol, &c.rita] {
        let (mut reviews, actions) = overdue(&app, who).await;
        reviews.sort();
        assert_eq!(reviews, both, "{}", who.user.username);
        assert_eq!(actions, ["Fix the health checks"]);
    }
    assert_eq!(overdue(&app, &c.erin).await, (vec![erin_key], Vec::new()));
    assert_eq!(overdue(&app, &fred).await, (vec![fred_key], Vec::new()));
    assert_eq!(
        overdue(&app, &olly).await,
        (Vec::new(), vec!["Fix the health checks".to_owned()])
    );
    assert_eq!(overdue(&app, &otto).await, (Vec::new(), Vec::new()));

    // Signed off, a review is no longer overdue, even when amended later.
    save(&app, &c.erin.token, &erins, 0, &complete_review()).await;
    let resp = sign_off(&app, &c.carol.token, &erins, 1).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let mut amended = complete_review();
    amended["lessons"] = json!("Check the health checks on STAGE first.");
    let resp = save(&app, &c.erin.token, &erins, 1, &amended).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["review"]["overdue"], false);
    assert_eq!(overdue(&app, &c.erin).await, (Vec::new(), Vec::new()));
}

// ---------------------------------------------------------------------------
// Changes whose window passed

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn two_replicas_close_a_lapsed_change_once_and_leave_the_others(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let c = app.cast().await;
    let lapsed = app.approved_change(&c.erin, &c.carol).await;
    let recent = app.approved_change(&c.erin, &c.carol).await;
    let in_release = app.approved_change(&c.erin, &c.carol).await;
    crate::releases::planned(&app, &c.rita, &[&in_release]).await;
    let authorized = app.approved_change(&c.erin, &c.carol).await;
    app.promote_to_stage(&c.pipeline, &authorized).await;
    let resp = app
        .gate(&c.pipeline, request(&authorized, "prod", Some("rita")))
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    // Their windows ended two hours ago; one's ended half an hour ago.
    for (id, ended) in [
        (&lapsed, 120),
        (&recent, 30),
        (&in_release, 120),
        (&authorized, 120),
    ] {
        sqlx::query(
            "UPDATE changes SET window_start = now() - interval '5 hours',
                                window_end = now() - make_interval(mins => $2) WHERE id = $1::uuid",
        )
        .bind(id)
        .bind(ended)
        .execute(&app.pool)
        .await
        .unwrap();
    }

    let other = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect_with((*pool.connect_options()).clone())
        .await
        .unwrap();
    let now = Utc::now();
    let (a, b) = tokio::join!(
        cab_server::reviews::sweep_lapsed(&pool, now),
        cab_server::reviews::sweep_lapsed(&other, now),
    );
    assert_eq!(a.unwrap() + b.unwrap(), 1);
    // And again, later: nothing more to close.
    let again = cab_server::reviews::sweep_lapsed(&other, Utc::now())
        .await
        .unwrap();
    assert_eq!(again, 0);

    let s = stored(&app, &lapsed).await;
    assert_eq!(s.state, "closed");
    assert_eq!(s.close_code.as_deref(), Some("not_implemented"));
    let doc = review_of(&app, &c.erin, &lapsed).await;
    assert_eq!(doc["closure"]["closed_by"], Value::Null);
    assert_eq!(doc["closure"]["code_label"], "Not implemented");
    assert_eq!(doc["review"], Value::Null);
    let closed: Vec<(Option<String>, Option<String>, Value)> = sqlx::query_as(
        "SELECT actor_username, entity_id, payload FROM audit_events WHERE action = 'change.closed'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].0, None, "nobody closed it");
    assert_eq!(closed[0].1.as_deref(), Some(lapsed.as_str()));
    assert_eq!(closed[0].2["close_code"], "not_implemented");
    for id in [&recent, &in_release, &authorized] {
        let s = stored(&app, id).await;
        assert_eq!(s.state, "approved", "{id}");
        assert_eq!(s.close_code, None);
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_production_deployment_after_sign_off_opens_the_review_again_on_the_record(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let id = deployed(&app, &c, "failed").await;
    save(&app, &c.erin.token, &id, 0, &complete_review()).await;
    let resp = sign_off(&app, &c.carol.token, &id, 1).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert!(events_named(&app, "review.reopened").await.is_empty());

    // The fix goes out: what was signed off did not see it.
    let deployment = start_prod(&app, &c, &id).await;
    let resp = app
        .report(&c.pipeline, &deployment, "succeeded", None)
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let doc = review_of(&app, &c.erin, &id).await;
    assert_eq!(doc["review"]["state"], "open");
    let reopened = events_named(&app, "review.reopened").await;
    assert_eq!(reopened.len(), 1, "{reopened:?}");
    assert!(reopened[0]["due_at"].is_string(), "{reopened:?}");
}
