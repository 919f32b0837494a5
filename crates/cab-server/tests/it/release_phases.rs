//! A release on its way out: phases open in order, each once the one before
//! deployed every change and soaked; a rollback stops the phases after it;
//! the deployment gate adds the release's rule to its own. Sent as the
//! release manager, the pipeline and the people who may not.

use axum::http::{Method, StatusCode};
use cab_domain::release::{Milestones, Phase, ReleasePlan, RollbackPlan, TestLevel, TestStrategy};
use cab_server::auth::CurrentUser;
use cab_server::request::Origin;
use chrono::{Duration, Utc};
use serde_json::json;
use sqlx::PgPool;

use crate::common::{ApiClient, TestApp, TestResponse};
use crate::deployments::{Cast, reason_codes, request};

fn plan(phases: &[(&str, u32)]) -> ReleasePlan {
    let at = Utc::now();
    ReleasePlan {
        name: "Edge rollout".into(),
        version: "2026.11.9".into(),
        milestones: Milestones {
            code_freeze: at - Duration::days(2),
            go_no_go: at - Duration::days(1),
            deployment: at,
            hypercare_end: at + Duration::days(3),
        },
        test_strategy: TestStrategy {
            levels: vec![TestLevel::Unit, TestLevel::System],
            entry_criteria: "Green CI.".into(),
            exit_criteria: "Smoke tests pass on STAGE.".into(),
            evidence: Vec::new(),
        },
        phases: phases
            .iter()
            .map(|(env, soak)| Phase {
                environment: (*env).into(),
                target: "Everyone".into(),
                soak_minutes: *soak,
                proceed_criteria: "Error rate below 1%.".into(),
                abort_criteria: "Error rate above 2%.".into(),
            })
            .collect(),
        rollback: RollbackPlan {
            triggers: "An abort criterion is met.".into(),
            steps: "Redeploy the previous artifact.".into(),
            max_minutes: 20,
            irreversible: false,
            irreversible_steps: String::new(),
        },
        communications: Vec::new(),
    }
}

impl TestApp {
    /// `change` in a release planned by Rita and approved by Carol: the
    /// release's id.
    async fn approved_release(&self, c: &Cast, change: &str, phases: &[(&str, u32)]) -> String {
        let rita = CurrentUser::command_line(c.rita.user.clone()).unwrap();
        let r = cab_server::releases::create(
            &self.pool,
            &rita,
            &Origin::cli(),
            plan(phases),
            &[change.to_owned()],
            "Goes out with the release.",
        )
        .await
        .unwrap();
        let id = r.id().to_string();
        let resp = self.release_action(&c.rita, &id, "submit", None).await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
        let resp = self
            .release_action(
                &c.carol,
                &id,
                "votes",
                Some(json!({"choice": "approve", "comment": "", "revision": 1})),
            )
            .await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
        assert_eq!(self.release_state(&id).await.0, "approved");
        id
    }

    async fn release_action(
        &self,
        who: &ApiClient,
        id: &str,
        action: &str,
        body: Option<serde_json::Value>,
    ) -> TestResponse {
        self.api(
            Method::POST,
            &format!("/api/v1/releases/{id}/{action}"),
            Some(&who.token),
            Some(body.unwrap_or_else(|| json!({}))),
        )
        .await
    }

    /// (state, open phase, rolled-back phase) as stored.
    async fn release_state(&self, id: &str) -> (String, Option<i32>, Option<i32>) {
        sqlx::query_as(
            "SELECT state, current_phase, rolled_back_phase FROM releases WHERE id = $1::uuid",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    /// Moves the open phase and the deployments that finished in it
    /// `minutes` into the past: soak time passes.
    async fn let_time_pass(&self, minutes: i32) {
        sqlx::query(
            "UPDATE releases SET phase_opened_at = phase_opened_at - make_interval(mins => $1)
             WHERE phase_opened_at IS NOT NULL",
        )
        .bind(minutes)
        .execute(&self.pool)
        .await
        .unwrap();
        sqlx::query(
            "UPDATE deployments SET finished_at = finished_at - make_interval(mins => $1)
             WHERE finished_at IS NOT NULL",
        )
        .bind(minutes)
        .execute(&self.pool)
        .await
        .unwrap();
    }

    async fn events_named(&self, action: &str) -> Vec<serde_json::Value> {
        self.audit_events()
            .await
            .into_iter()
            .filter(|(a, _)| a == action)
            .map(|(_, p)| p)
            .collect()
    }
}

fn problem(resp: &TestResponse) -> (String, String) {
    let body = resp.json();
    (
        resp.problem_code(),
        body["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn phases_open_in_order_each_after_its_deployments_and_soak(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let change = app.approved_change(&c.erin, &c.carol).await;
    let id = app
        .approved_release(&c, &change, &[("stage", 0), ("prod", 30)])
        .await;

    // Approved but not started: the gate refuses its phased environments,
    // and still gives its own reasons beside the release's.
    app.deploy(&c.pipeline, request(&change, "dev", None)).await;
    app.deploy(&c.pipeline, request(&change, "test", None))
        .await;
    let refused = app.gate(&c.pipeline, request(&change, "stage", None)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert_eq!(reason_codes(&refused), ["release_phase_not_open"]);
    let refused = app
        .gate(&c.pipeline, request(&change, "prod", Some("rita")))
        .await;
    let codes = reason_codes(&refused);
    assert!(
        codes.contains(&"release_phase_not_open".to_owned()),
        "{codes:?}"
    );
    assert!(codes.len() > 1, "the gate's own reasons stay: {codes:?}");

    // An engineer may not start it.
    let before = app.audit_count().await;
    let resp = app.release_action(&c.erin, &id, "advance", None).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert_eq!(problem(&resp).0, "release_manager_required");
    assert_eq!(
        app.release_state(&id).await,
        ("approved".into(), None, None)
    );
    assert_eq!(app.audit_count().await, before + 1);
    assert_eq!(app.denials().await.last().unwrap().0, "release.advance");

    // Rita starts it: STAGE opens.
    let resp = app.release_action(&c.rita, &id, "advance", None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(
        app.release_state(&id).await,
        ("in_progress".into(), Some(0), None)
    );
    // PROD does not open before STAGE has deployed the change.
    let resp = app.release_action(&c.rita, &id, "advance", None).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    let (code, detail) = problem(&resp);
    assert_eq!(code, "phase_not_deployed");
    assert!(detail.contains("CHG-"), "{detail}");
    assert_eq!(app.release_state(&id).await.1, Some(0));
    // Nor may PROD be deployed while STAGE is the open phase.
    let refused = app
        .gate(&c.pipeline, request(&change, "prod", Some("rita")))
        .await;
    assert!(reason_codes(&refused).contains(&"release_phase_not_open".to_owned()));

    app.deploy(&c.pipeline, request(&change, "stage", None))
        .await;
    let resp = app.release_action(&c.rita, &id, "advance", None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(app.release_state(&id).await.1, Some(1));

    app.deploy(&c.pipeline, request(&change, "prod", Some("rita")))
        .await;
    // PROD soaks for 30 minutes before the release completes.
    let resp = app.release_action(&c.rita, &id, "advance", None).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    let (code, detail) = problem(&resp);
    assert_eq!(code, "soak_not_over");
    assert!(detail.contains("soaks until"), "{detail}");
    assert_eq!(app.release_state(&id).await.0, "in_progress");

    app.let_time_pass(31).await;
    let resp = app.release_action(&c.rita, &id, "advance", None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(app.release_state(&id).await.0, "completed");
    let opened = app.events_named("release.phase_opened").await;
    assert_eq!(
        opened
            .iter()
            .map(|p| p["phase"].as_i64())
            .collect::<Vec<_>>(),
        [Some(1), Some(2)]
    );
    assert_eq!(app.events_named("release.completed").await.len(), 1);
    // Once complete, the release adds nothing at the gate.
    let again = app.release_action(&c.rita, &id, "advance", None).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN, "{}", again.body);
    assert_eq!(problem(&again).0, "not_in_progress");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_rolled_back_phase_stops_the_phases_after_it(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let change = app.approved_change(&c.erin, &c.carol).await;
    let id = app
        .approved_release(&c, &change, &[("stage", 0), ("prod", 0)])
        .await;
    let resp = app.release_action(&c.rita, &id, "advance", None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    app.promote_to_stage(&c.pipeline, &change).await;

    // A rollback needs a reason, and a release manager.
    let before = app.audit_count().await;
    let resp = app
        .release_action(&c.rita, &id, "rollback", Some(json!({"reason": " "})))
        .await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    assert!(resp.body.contains("reason"), "{}", resp.body);
    let resp = app
        .release_action(
            &c.erin,
            &id,
            "rollback",
            Some(json!({"reason": "I do not like it."})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert_eq!(problem(&resp).0, "release_manager_required");
    assert_eq!(
        app.release_state(&id).await,
        ("in_progress".into(), Some(0), None)
    );
    assert_eq!(app.audit_count().await, before + 1);

    let resp = app
        .release_action(
            &c.rita,
            &id,
            "rollback",
            Some(json!({"reason": "STAGE smoke tests show 502s."})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(
        app.release_state(&id).await,
        ("in_progress".into(), Some(0), Some(0))
    );
    let rolled = app.events_named("release.phase_rolled_back").await;
    assert_eq!(rolled.len(), 1);
    assert_eq!(rolled[0]["reason"], "STAGE smoke tests show 502s.");
    assert_eq!(rolled[0]["phase"], 1);

    // Nothing after it opens, and the gate deploys nothing of it.
    let resp = app.release_action(&c.rita, &id, "advance", None).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert_eq!(problem(&resp).0, "phase_rolled_back");
    let refused = app
        .gate(&c.pipeline, request(&change, "prod", Some("rita")))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(reason_codes(&refused).contains(&"release_rolled_back".to_owned()));
    let again = app
        .release_action(
            &c.rita,
            &id,
            "rollback",
            Some(json!({"reason": "Once more, to be sure."})),
        )
        .await;
    assert_eq!(again.status, StatusCode::FORBIDDEN, "{}", again.body);
    assert_eq!(problem(&again).0, "phase_rolled_back");
    assert_eq!(app.events_named("release.phase_rolled_back").await.len(), 1);

    // Cancelled, the release frees its change: the gate's own rules are
    // all that is left.
    let resp = app
        .release_action(
            &c.rita,
            &id,
            "cancel",
            Some(json!({"reason": "Replanned as a new release."})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let resp = app
        .gate(&c.pipeline, request(&change, "prod", Some("rita")))
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn two_servers_advancing_at_once_open_the_next_phase_once(pool: PgPool) {
    let first = TestApp::new(pool.clone()).await;
    let c = first.cast().await;
    let change = first.approved_change(&c.erin, &c.carol).await;
    let id = first
        .approved_release(&c, &change, &[("stage", 0), ("prod", 0)])
        .await;
    let second = TestApp::new(pool).await;
    let (a, b) = tokio::join!(
        first.release_action(&c.rita, &id, "advance", None),
        second.release_action(&c.rita, &id, "advance", None),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::FORBIDDEN],
        "{a:?} {b:?}"
    );
    assert_eq!(first.events_named("release.phase_opened").await.len(), 1);
    assert_eq!(first.release_state(&id).await.1, Some(0));
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_edit_that_sends_the_plan_back_to_review_does_not_lift_the_gate(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let change = app.approved_change(&c.erin, &c.carol).await;
    let id = app
        .approved_release(&c, &change, &[("stage", 0), ("prod", 30)])
        .await;
    app.deploy(&c.pipeline, request(&change, "dev", None)).await;
    app.deploy(&c.pipeline, request(&change, "test", None))
        .await;
    // Renamed, the plan is back in review; its phases still hold the change.
    let mut edited = serde_json::to_value(plan(&[("stage", 0), ("prod", 30)])).unwrap();
    edited["name"] = json!("Edge rollout, renamed");
    let resp = app
        .api(
            Method::PUT,
            &format!("/api/v1/releases/{id}"),
            Some(&c.rita.token),
            Some(json!({"revision": 1, "plan": edited})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(app.release_state(&id).await.0, "in_review");
    let before = app.deployment_count().await;
    let refused = app.gate(&c.pipeline, request(&change, "stage", None)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert_eq!(reason_codes(&refused), ["release_phase_not_open"]);
    assert!(
        refused.body.contains("take it out of the release"),
        "{}",
        refused.body
    );
    assert_eq!(app.deployment_count().await, before);
    // Taken out of scope, with a reason, it deploys by itself.
    let resp = app
        .release_action(
            &c.rita,
            &id,
            &format!("changes/{change}/remove"),
            Some(json!({"revision": 2, "reason": "It goes out by itself after all."})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    app.deploy(&c.pipeline, request(&change, "stage", None))
        .await;
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_change_that_loses_its_approval_sends_its_approved_release_back(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let change = app.approved_change(&c.erin, &c.carol).await;
    let id = app
        .approved_release(&c, &change, &[("stage", 0), ("prod", 0)])
        .await;
    // Its author edits the approved change: back in review, and the
    // release with it.
    let resp = app
        .api(
            Method::PATCH,
            &format!("/api/v1/changes/{change}"),
            Some(&c.erin.token),
            Some(json!({"rollback_plan": "Redeploy the previous release, then purge the CDN."})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_ne!(resp.json()["state"], "approved", "{}", resp.body);
    assert_eq!(app.release_state(&id).await.0, "in_review");
    let voided = app.events_named("release.approval_voided").await;
    assert_eq!(voided.len(), 1);
    assert!(
        voided[0]["reason"]
            .as_str()
            .unwrap()
            .contains("no longer approved"),
        "{}",
        voided[0]
    );
    // It cannot start, and its go/no-go waits for the change again; once
    // the change is approved again, Carol's go completes it.
    let resp = app.release_action(&c.rita, &id, "advance", None).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    let resp = app
        .release_action(
            &c.carol,
            &id,
            "votes",
            Some(json!({"choice": "approve", "comment": "", "revision": 1})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(app.release_state(&id).await.0, "in_review");
    let resp = app.vote(&c.carol, &change, "approve", "").await;
    assert_eq!(resp.json()["state"], "approved", "{}", resp.body);
    assert_eq!(app.release_state(&id).await.0, "approved");
    let approved = app.events_named("release.approved").await;
    assert_eq!(
        approved.last().unwrap()["completed_by"],
        json!(approved_key(&app, &change).await)
    );
}

async fn approved_key(app: &TestApp, change: &str) -> String {
    let n: i64 = sqlx::query_scalar("SELECT number FROM changes WHERE id = $1::uuid")
        .bind(change)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    format!("CHG-{n}")
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_go_no_go_keeps_the_quorum_policy_it_was_submitted_under(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let carl = app.api_login("carl", &[cab_domain::Role::CabMember]).await;
    let change = app.approved_change(&c.erin, &c.carol).await;
    let rita = CurrentUser::command_line(c.rita.user.clone()).unwrap();
    let r = cab_server::releases::create(
        &app.pool,
        &rita,
        &Origin::cli(),
        plan(&[("prod", 0)]),
        &[change],
        "Goes out with the release.",
    )
    .await
    .unwrap();
    let id = r.id().to_string();
    // Low risk needs two approvals when the release is submitted ...
    let strict = json!({
        "low": {"approvals": 2, "assessment": false},
        "medium": {"approvals": 2, "assessment": false},
        "high": {"approvals": 2, "assessment": true},
        "critical": {"approvals": 3, "assessment": true},
        "emergency": {"approvals": 1, "assessment": false}
    });
    let resp = app
        .api(
            Method::PUT,
            "/api/v1/settings/quorum",
            Some(&c.adam.token),
            Some(strict.clone()),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let resp = app.release_action(&c.rita, &id, "submit", None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    // ... and lowering the policy afterwards does not lower it for this release.
    let mut lenient = strict;
    lenient["low"]["approvals"] = json!(1);
    let resp = app
        .api(
            Method::PUT,
            "/api/v1/settings/quorum",
            Some(&c.adam.token),
            Some(lenient),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let vote = json!({"choice": "approve", "comment": "", "revision": 1});
    let resp = app
        .release_action(&c.carol, &id, "votes", Some(vote.clone()))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(app.release_state(&id).await.0, "in_review");
    assert_eq!(resp.json()["still_needed"], json!(["1 more CAB approval"]));
    let resp = app.release_action(&carl, &id, "votes", Some(vote)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(app.release_state(&id).await.0, "approved");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_date_from_another_millennium_is_refused_and_the_calendar_stays_up(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let mut body = crate::releases::release_body("Typo release", &[]);
    body["milestones"]["code_freeze"] = json!("0000-01-01T00:00:00Z");
    let resp = crate::releases::plan_release(&app, &c.rita, body).await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    assert!(resp.body.contains("code_freeze"), "{}", resp.body);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM releases")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);
    let resp = app
        .api(
            Method::GET,
            "/api/v1/calendar?from=2026-11-01T00:00:00Z&to=2026-12-31T00:00:00Z",
            Some(&c.rita.token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_reason_of_the_longest_length_is_kept_with_the_revision(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let change = app.approved_change(&c.erin, &c.carol).await;
    let id = crate::releases::planned(&app, &c.rita, &[]).await;
    let reason = "r".repeat(cab_domain::release::REASON_MAX);
    let resp = app
        .release_action(
            &c.rita,
            &id,
            "changes",
            Some(json!({"revision": 1, "change": change, "reason": reason})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert!(app.denials().await.is_empty());
}
