//! Ways to an approval without an independent quorum, each tried from the
//! attacker's side: through the API and through the forms, asserting the
//! refusal, its reason, and that nothing changed but the audit trail.

use axum::http::{Method, StatusCode};
use cab_domain::Role;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::changes::complete_change;
use crate::common::{ApiClient, TestApp};
use crate::decisions::assessment;

impl TestApp {
    async fn vote_count(&self, id: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM change_votes WHERE change_id = $1::uuid")
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn state_of(&self, id: &str) -> String {
        self.change_row(id).await.0
    }

    async fn set_quorum(&self, admin: &ApiClient, level: &str, approvals: i64) {
        let mut policy = self
            .api(
                Method::GET,
                "/api/v1/settings/quorum",
                Some(&admin.token),
                None,
            )
            .await
            .json();
        policy[level]["approvals"] = json!(approvals);
        let resp = self
            .api(
                Method::PUT,
                "/api/v1/settings/quorum",
                Some(&admin.token),
                Some(policy),
            )
            .await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    }
}

/// An approved template for edge-proxy changes on STAGE only.
async fn stage_template(app: &TestApp, carol: &ApiClient, carl: &ApiClient) -> String {
    let resp = app
        .api(
            Method::POST,
            "/api/v1/templates",
            Some(&carol.token),
            Some(json!({
                "name": "Edge certificate renewal on STAGE",
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
            })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    let tid = resp.json()["id"].as_str().unwrap().to_owned();
    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/templates/{tid}/votes"),
            Some(&carl.token),
            Some(json!({"vote": "approve"})),
        )
        .await;
    assert_eq!(resp.json()["state"], "approved", "{}", resp.body);
    tid
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_change_beyond_its_templates_scope_is_reviewed_like_any_other(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let carl = app.api_login("carl", &[Role::CabMember]).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let tid = stage_template(&app, &carol, &carl).await;
    let from_template = |services: Value, environments: Value, late: bool| {
        let mut body = complete_change("Renew the edge certificate");
        body["template"] = json!(tid);
        body["services"] = services;
        body["environments"] = environments;
        body["risk"] = json!({"impact": 1, "likelihood": 1, "outside_usual_window": late});
        body
    };

    // Within scope: approved on submission (through the form).
    let within = app
        .file_change(
            &erin,
            from_template(json!(["edge-proxy"]), json!(["STAGE"]), false),
        )
        .await;
    let within = within["id"].as_str().unwrap().to_owned();
    let s = app
        .browser_login_with(erin.user.clone(), "erin-correct-horse-battery")
        .await;
    let resp = app
        .post_form(
            &format!("/changes/{within}/submit"),
            Some(&s.cookie),
            &[("_csrf", &s.csrf)],
        )
        .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    assert_eq!(app.state_of(&within).await, "approved");

    // A template approved for STAGE does not approve a PROD change, another
    // service, or a higher risk: each is submitted for review instead.
    for (body, beyond) in [
        (
            from_template(json!(["edge-proxy"]), json!(["STAGE", "PROD"]), false),
            "environments the template does not cover: PROD",
        ),
        (
            from_template(
                json!(["edge-proxy", "payments-api"]),
                json!(["STAGE"]),
                false,
            ),
            "services the template does not cover: payments-api",
        ),
        (
            from_template(json!(["edge-proxy"]), json!(["STAGE"]), true),
            "medium risk, above the template's low",
        ),
    ] {
        let id = app.file_change(&erin, body).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let resp = app.change_action(&erin, &id, "submit", None).await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
        assert_eq!(resp.json()["state"], "submitted", "{beyond}");
        let trail = app.approvals(&carol, &id).await;
        assert!(
            !trail["still_needed"].as_array().unwrap().is_empty(),
            "{beyond}: {trail}"
        );
        let submitted = app
            .audit_events()
            .await
            .into_iter()
            .rfind(|(a, _)| a == "change.submitted")
            .unwrap()
            .1;
        assert!(
            submitted["outside_template"].to_string().contains(beyond),
            "{submitted}"
        );
        // CAB decides it like any other change.
        let resp = app.vote(&carol, &id, "approve", "").await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    }
    let approved_by_template = app
        .audit_events()
        .await
        .into_iter()
        .filter(|(a, p)| a == "change.approved" && !p["template"].is_null())
        .count();
    assert_eq!(approved_by_template, 1, "only the change within scope");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn one_person_is_never_the_assessment_and_an_approval(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let both = app
        .api_login("sasha", &[Role::SecurityReviewer, Role::CabMember])
        .await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;

    // Through the API: the assessor of an emergency change votes on it.
    let id = app.submitted_change(&erin, 1, 1, "emergency").await;
    let resp = app.assess(&both, &id, assessment("accept", "low")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let before = app.audit_count().await;
    let resp = app.vote(&both, &id, "approve", "").await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.problem_code(), "assessor_cannot_vote");
    assert!(
        resp.json()["detail"]
            .as_str()
            .unwrap()
            .contains("different people")
    );
    assert_eq!(app.vote_count(&id).await, 0);
    assert_eq!(app.state_of(&id).await, "in_cab_review", "not approved");
    assert_eq!(app.audit_count().await, before + 1, "only the refusal");
    assert_eq!(
        app.denials().await.last().unwrap().1,
        "assessor_cannot_vote"
    );
    // Another member completes the emergency quorum.
    assert_eq!(
        app.vote(&carol, &id, "approve", "").await.json()["state"],
        "approved"
    );

    // Through the form: a critical change whose risk the same person lowered.
    let id = app.submitted_change(&erin, 4, 4, "normal").await;
    let mut lowered = assessment("accept", "low");
    lowered["lowering_justification"] = json!("Only a config flag.");
    let resp = app.assess(&both, &id, lowered).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let s = app
        .browser_login_with(both.user.clone(), "sasha-correct-horse-battery")
        .await;
    let page = app
        .get_page(&format!("/changes/{id}"), Some(&s.cookie))
        .await;
    assert!(
        !page.body.contains("id=\"vote-form\""),
        "no vote form offered"
    );
    let revision = app.revision_of(&both, &id).await.to_string();
    let resp = app
        .post_form(
            &format!("/changes/{id}/votes"),
            Some(&s.cookie),
            &[
                ("_csrf", &s.csrf),
                ("vote", "approve"),
                ("revision", &revision),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert!(resp.body.contains("different people"), "{}", resp.body);
    assert_eq!(app.vote_count(&id).await, 0);
    assert_eq!(app.state_of(&id).await, "in_cab_review", "not approved");

    // And the other way round: whoever voted does not assess.
    let id = app.submitted_change(&erin, 2, 2, "normal").await;
    assert_eq!(
        app.vote(&both, &id, "approve", "").await.status,
        StatusCode::OK
    );
    let resp = app.assess(&both, &id, assessment("accept", "medium")).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.problem_code(), "voter_cannot_assess");
    let assessments: i64 =
        sqlx::query_scalar("SELECT count(*) FROM change_assessments WHERE change_id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(assessments, 0);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn lowering_the_quorum_applies_to_new_submissions_only(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let adam = app.api_login("adam", &[Role::Admin]).await;
    let pending = app.submitted_change(&erin, 2, 2, "normal").await;
    assert_eq!(
        app.vote(&carol, &pending, "approve", "").await.json()["state"],
        "submitted"
    );
    app.set_quorum(&adam, "medium", 1).await;
    // A repeated vote under the new policy does not approve a change
    // submitted under the old one.
    let resp = app.vote(&carol, &pending, "approve", "still fine").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["state"], "submitted");
    assert_eq!(
        app.approvals(&carol, &pending).await["still_needed"],
        json!(["1 more CAB approval"])
    );
    // A change submitted now is decided under the new policy.
    let fresh = app.submitted_change(&erin, 2, 2, "normal").await;
    assert_eq!(
        app.vote(&carol, &fresh, "approve", "").await.json()["state"],
        "approved"
    );
    // Raised again: what is submitted now needs the larger quorum.
    app.set_quorum(&adam, "medium", 2).await;
    let later = app.submitted_change(&erin, 2, 2, "normal").await;
    assert_eq!(
        app.vote(&carol, &later, "approve", "").await.json()["state"],
        "submitted"
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn votes_of_disabled_or_demoted_members_stop_counting(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let carl = app.api_login("carl", &[Role::CabMember]).await;
    let cora = app.api_login("cora", &[Role::CabMember]).await;
    let adam = app.api_login("adam", &[Role::Admin]).await;

    // Disabled after voting: the vote stops counting, and the page says so.
    let id = app.submitted_change(&erin, 2, 2, "normal").await;
    app.vote(&carol, &id, "approve", "").await;
    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/users/{}/disable", carol.user.id),
            Some(&adam.token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let resp = app.vote(&carl, &id, "approve", "").await;
    assert_eq!(resp.json()["state"], "submitted", "carol no longer counts");
    let trail = app.approvals(&carl, &id).await;
    assert_eq!(trail["still_needed"], json!(["1 more CAB approval"]));
    let carols = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["who"] == "carol")
        .unwrap()
        .clone();
    assert_eq!(
        carols["does_not_count"],
        "does not count: the account has been disabled"
    );
    let s = app
        .browser_login_with(carl.user.clone(), "carl-correct-horse-battery")
        .await;
    let page = app
        .get_page(&format!("/changes/{id}"), Some(&s.cookie))
        .await;
    assert!(
        page.body
            .contains("Does not count: the account has been disabled"),
        "the change's page says why"
    );

    // Demoted after voting: the same.
    let id = app.submitted_change(&erin, 2, 2, "normal").await;
    app.vote(&carl, &id, "approve", "").await;
    let resp = app
        .api(
            Method::PUT,
            &format!("/api/v1/users/{}/roles", carl.user.id),
            Some(&adam.token),
            Some(json!({"roles": ["engineer"]})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let resp = app.vote(&cora, &id, "approve", "").await;
    assert_eq!(resp.json()["state"], "submitted");
    let trail = app.approvals(&cora, &id).await;
    assert!(
        trail.to_string().contains("no longer holds the role"),
        "{trail}"
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_author_cannot_exclude_a_member_who_voted_by_naming_them(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let carol = app
        .api_login("carol", &[Role::CabMember, Role::Engineer])
        .await;
    let id2 = app.submitted_change(&erin, 2, 2, "normal").await;
    app.vote(&carol, &id2, "approve", "").await;
    let before = app.audit_count().await;
    let resp = app
        .api(
            Method::PATCH,
            &format!("/api/v1/changes/{id2}"),
            Some(&erin.token),
            Some(json!({"contributors": ["carol"]})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert_eq!(resp.problem_code(), "contributor_has_decided");
    assert_eq!(app.audit_count().await, before + 1, "only the refusal");
    let contributors: i64 =
        sqlx::query_scalar("SELECT count(*) FROM change_contributors WHERE change_id = $1::uuid")
            .bind(&id2)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(contributors, 0);
    assert_eq!(app.change_row(&id2).await.2, 1, "no new revision");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_pipeline_files_for_a_person_and_that_person_is_the_author(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let adam = app.api_login("adam", &[Role::Admin]).await;
    let erin = app
        .api_login("erin", &[Role::Engineer, Role::CabMember])
        .await;
    let bot = app.service_account("ci-bot", &[Role::Engineer]).await;
    let secret = app
        .api(
            Method::POST,
            &format!("/api/v1/users/{}/tokens", bot.id),
            Some(&adam.token),
            Some(json!({"name": "ci"})),
        )
        .await
        .json()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let file = |on_behalf: Option<&str>| {
        let mut body = complete_change("Bump the edge proxy");
        if let Some(p) = on_behalf {
            body["on_behalf_of"] = json!(p);
        }
        body
    };
    let before = app.audit_count().await;
    let resp = app
        .api(
            Method::POST,
            "/api/v1/changes",
            Some(&secret),
            Some(file(None)),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert_eq!(resp.problem_code(), "on_behalf_of_required");
    assert_eq!(app.audit_count().await, before + 1);
    let resp = app
        .api(
            Method::POST,
            "/api/v1/changes",
            Some(&secret),
            Some(file(Some("adam"))),
        )
        .await;
    assert_eq!(resp.problem_code(), "engineer_required");
    let resp = app
        .api(
            Method::POST,
            "/api/v1/changes",
            Some(&secret),
            Some(file(Some("ci-bot"))),
        )
        .await;
    assert_eq!(resp.problem_code(), "on_behalf_of_invalid");
    // A person cannot file in someone else's name.
    let resp = app
        .api(
            Method::POST,
            "/api/v1/changes",
            Some(&erin.token),
            Some(file(Some("adam"))),
        )
        .await;
    assert_eq!(resp.problem_code(), "on_behalf_of_not_allowed");
    let changes: i64 = sqlx::query_scalar("SELECT count(*) FROM changes")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(changes, 0, "nothing filed");

    let resp = app
        .api(
            Method::POST,
            "/api/v1/changes",
            Some(&secret),
            Some(file(Some("erin"))),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    let id = resp.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(resp.json()["author"], "erin");
    let filed_by: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT filed_by FROM changes WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(filed_by, Some(bot.id));
    // The person who wrote it, though a CAB member, cannot vote on it.
    assert_eq!(
        app.change_action(&erin, &id, "submit", None).await.status,
        StatusCode::OK
    );
    let resp = app.vote(&erin, &id, "approve", "").await;
    assert_eq!(resp.problem_code(), "self_approval");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_authors_emergency_never_brings_a_critical_change_to_one_approver(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let sam = app.api_login("sam", &[Role::SecurityReviewer]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let carl = app.api_login("carl", &[Role::CabMember]).await;
    let id = app.submitted_change(&erin, 4, 4, "emergency").await;
    app.vote(&carol, &id, "approve", "").await;
    let resp = app
        .assess(&sam, &id, assessment("accept", "critical"))
        .await;
    assert_eq!(resp.json()["state"], "in_cab_review", "{}", resp.body);
    assert_eq!(
        app.approvals(&carol, &id).await["still_needed"],
        json!(["1 more CAB approval"])
    );
    assert_eq!(
        app.vote(&carl, &id, "approve", "").await.json()["state"],
        "approved"
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_risk_lowered_by_someone_since_disabled_is_the_engineers_again(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let sam = app.api_login("sam", &[Role::SecurityReviewer]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let adam = app.api_login("adam", &[Role::Admin]).await;
    let id = app.submitted_change(&erin, 4, 4, "normal").await;
    let mut lowered = assessment("accept", "low");
    lowered["lowering_justification"] = json!("Only a config flag.");
    assert_eq!(app.assess(&sam, &id, lowered).await.status, StatusCode::OK);
    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/users/{}/disable", sam.user.id),
            Some(&adam.token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let resp = app.vote(&carol, &id, "approve", "").await;
    assert_eq!(resp.json()["state"], "in_cab_review", "{}", resp.body);
    let trail = app.approvals(&carol, &id).await;
    assert_eq!(trail["risk_level"], "critical", "{trail}");
    assert_eq!(
        trail["still_needed"],
        json!(["2 more CAB approvals", "an accepting security assessment"])
    );
}
