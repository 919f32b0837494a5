//! A rule whose stored inputs cannot be read decides nothing: the attempt is
//! refused as `policy_unavailable`, the refusal is recorded, and nothing
//! else changes. No unreadable value is ever replaced by a default.

use axum::http::{Method, StatusCode};
use cab_domain::Role;
use serde_json::json;
use sqlx::PgPool;

use crate::common::{ApiClient, TestApp, TestResponse};

const POLICY_UNAVAILABLE_SENTENCE: &str =
    "The decision rules could not be checked just now, so nothing was recorded.";

async fn propose_template(app: &TestApp, by: &ApiClient) -> String {
    let resp = app
        .api(
            Method::POST,
            "/api/v1/templates",
            Some(&by.token),
            Some(json!({
                "name": "TLS renewal",
                "change": {
                    "title": "Renew a TLS certificate",
                    "description": "Routine renewal from the internal CA.",
                    "category": "configuration",
                    "implementation_plan": "Run the renewal job.",
                    "test_plan": "The TLS check passes.",
                    "rollback_plan": "Restore the previous certificate.",
                    "services": ["edge-proxy"],
                    "environments": ["STAGE", "PROD"],
                    "risk": {"impact": 1, "likelihood": 1}
                }
            })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    resp.json()["id"].as_str().unwrap().to_owned()
}

async fn api_vote(app: &TestApp, who: &ApiClient, tid: &str) -> TestResponse {
    app.api(
        Method::POST,
        &format!("/api/v1/templates/{tid}/votes"),
        Some(&who.token),
        Some(json!({"vote": "approve"})),
    )
    .await
}

async fn set_risk_level(app: &TestApp, tid: &str, level: &str) {
    sqlx::query("UPDATE standard_templates SET risk_level = $1 WHERE id = $2::uuid")
        .bind(level)
        .bind(tid)
        .execute(&app.pool)
        .await
        .unwrap();
}

/// (state, risk_level, approved_at is set, retired_at is set)
async fn template_row(app: &TestApp, tid: &str) -> (String, String, bool, bool) {
    sqlx::query_as(
        "SELECT state, risk_level, approved_at IS NOT NULL, retired_at IS NOT NULL \
         FROM standard_templates WHERE id = $1::uuid",
    )
    .bind(tid)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

async fn template_votes(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM template_votes")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// Audit events after `seq`, as (action, entity_type, entity_id, actor).
async fn events_after(app: &TestApp, seq: i64) -> Vec<(String, String, String, String)> {
    sqlx::query_as(
        "SELECT action, entity_type, coalesce(entity_id, ''), coalesce(actor_username, '') \
         FROM audit_events WHERE seq > $1 ORDER BY seq",
    )
    .bind(seq)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

async fn last_seq(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM audit_events")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_unreadable_template_risk_level_refuses_the_vote(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let carl = app.api_login("carl", &[Role::CabMember]).await;
    let cathy = app.browser_login("cathy", &[Role::CabMember]).await;
    let tid = propose_template(&app, &carol).await;
    // `standard_templates.risk_level` has no CHECK constraint, so a stored
    // value outside the scale can be written as it is.
    set_risk_level(&app, &tid, "garbled").await;
    let before = last_seq(&app).await;

    // Through the API.
    let resp = api_vote(&app, &carl, &tid).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert_eq!(resp.problem_code(), "policy_unavailable");

    // Through the form.
    let resp = app
        .post_form(
            &format!("/templates/{tid}/votes"),
            Some(&cathy.cookie),
            &[
                ("_csrf", cathy.csrf.as_str()),
                ("vote", "approve"),
                ("comment", ""),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert!(
        resp.body.contains(POLICY_UNAVAILABLE_SENTENCE),
        "{}",
        resp.body
    );

    // Nothing was decided or kept: no vote, still proposed, the stored
    // value left as it was for someone to look at.
    assert_eq!(template_votes(&app).await, 0, "no vote was kept");
    assert_eq!(
        template_row(&app, &tid).await,
        ("proposed".to_owned(), "garbled".to_owned(), false, false)
    );
    // Only the refusals were recorded, each against the template.
    assert_eq!(
        app.denials().await,
        vec![
            ("template.vote".to_owned(), "policy_unavailable".to_owned()),
            ("template.vote".to_owned(), "policy_unavailable".to_owned()),
        ]
    );
    let denied = |who: &str| {
        (
            "access.denied".to_owned(),
            "template".to_owned(),
            tid.clone(),
            who.to_owned(),
        )
    };
    assert_eq!(
        events_after(&app, before).await,
        vec![denied("carl"), denied("cathy")]
    );

    // Readable again, the same vote counts: the refusal came from the
    // unreadable level and nothing else.
    set_risk_level(&app, &tid, "low").await;
    let resp = api_vote(&app, &carl, &tid).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["state"], "approved", "{}", resp.body);
    assert_eq!(template_votes(&app).await, 1);
}
