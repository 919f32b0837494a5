//! Assessments and CAB decisions, with separation of duties tested from the
//! attacker's side through the API and the forms.

use axum::http::{Method, StatusCode};
use cab_domain::Role;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::changes::complete_change;
use crate::common::{ApiClient, TestApp, TestResponse};

pub fn assessment(decision: &str, level: &str) -> Value {
    json!({
        "data_classification": "confidential",
        "security_implications": "Touches TLS termination on the edge.",
        "testing": {
            "sast": {"required": true, "evidence": "https://ci.example.com/sast/1"},
            "dast": {"required": true, "justification": "Runs on STAGE before PROD."},
            "pentest": {"required": false}
        },
        "residual_risk": "Low once certificates are pinned.",
        "risk_level": level,
        "decision": decision,
        "conditions": if decision == "accept_with_conditions" { json!(["Watch handshake errors for an hour"]) } else { json!([]) }
    })
}

impl TestApp {
    /// A complete change by `author` with this risk (impact, likelihood), submitted.
    pub async fn submitted_change(
        &self,
        author: &ApiClient,
        impact: i64,
        likelihood: i64,
        change_type: &str,
    ) -> String {
        let mut body = complete_change("Rotate the edge certificates");
        body["risk"] = json!({"impact": impact, "likelihood": likelihood});
        body["type"] = json!(change_type);
        let id = self.file_change(author, body).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let resp = self.change_action(author, &id, "submit", None).await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
        id
    }

    /// The change's current revision, as a reader sees it.
    pub async fn revision_of(&self, who: &ApiClient, id: &str) -> i64 {
        let change = self
            .api(
                Method::GET,
                &format!("/api/v1/changes/{id}"),
                Some(&who.token),
                None,
            )
            .await;
        change.json()["revision"].as_i64().unwrap_or(0)
    }

    /// Assesses the revision the reviewer reads now (unless the body names one).
    pub async fn assess(&self, who: &ApiClient, id: &str, mut body: Value) -> TestResponse {
        if body.get("revision").is_none() {
            body["revision"] = json!(self.revision_of(who, id).await);
        }
        self.api(
            Method::PUT,
            &format!("/api/v1/changes/{id}/assessment"),
            Some(&who.token),
            Some(body),
        )
        .await
    }

    /// Votes on the revision the member reads now. The suite's changes share
    /// one planned window, so they collide on the calendar: the vote
    /// acknowledges that (`calendar::` tests the refusal without it).
    pub async fn vote(&self, who: &ApiClient, id: &str, vote: &str, comment: &str) -> TestResponse {
        let revision = self.revision_of(who, id).await;
        self.api(
            Method::POST,
            &format!("/api/v1/changes/{id}/votes"),
            Some(&who.token),
            Some(json!({"vote": vote, "comment": comment, "revision": revision, "acknowledge_conflicts": true})),
        )
        .await
    }

    pub async fn approvals(&self, who: &ApiClient, id: &str) -> Value {
        self.api(
            Method::GET,
            &format!("/api/v1/changes/{id}/approvals"),
            Some(&who.token),
            None,
        )
        .await
        .json()
    }

    pub async fn decision_rows(&self) -> (i64, i64) {
        let votes: i64 = sqlx::query_scalar("SELECT count(*) FROM change_votes")
            .fetch_one(&self.pool)
            .await
            .unwrap();
        let assessments: i64 = sqlx::query_scalar("SELECT count(*) FROM change_assessments")
            .fetch_one(&self.pool)
            .await
            .unwrap();
        (votes, assessments)
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn engineer_security_cab_approved(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let sam = app.api_login("sam", &[Role::SecurityReviewer]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let carl = app
        .api_login("carl", &[Role::CabMember, Role::Auditor])
        .await;
    // High risk (3 × 3): two approvals and an accepting assessment.
    let id = app.submitted_change(&erin, 3, 3, "normal").await;
    assert_eq!(
        app.approvals(&carol, &id).await["still_needed"],
        json!(["2 more CAB approvals", "an accepting security assessment"])
    );

    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/changes/{id}/assessment/start"),
            Some(&sam.token),
            None,
        )
        .await;
    assert_eq!(resp.json()["state"], "in_assessment");
    assert_eq!(
        app.vote(&carol, &id, "approve", "").await.json()["state"],
        "in_assessment"
    );
    let resp = app
        .assess(&sam, &id, assessment("accept_with_conditions", "high"))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["state"], "in_cab_review");
    assert_eq!(
        app.approvals(&carol, &id).await["still_needed"],
        json!(["1 more CAB approval"])
    );
    let resp = app.vote(&carl, &id, "approve", "Looks safe").await;
    assert_eq!(resp.json()["state"], "approved");

    let trail = app.approvals(&erin, &id).await;
    assert_eq!(trail["approved_revision"], 1);
    let entries = trail["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["who"], "carol");
    assert_eq!(entries[1]["kind"], "assessment");
    assert_eq!(
        entries[1]["conditions"],
        json!(["Watch handshake errors for an hour"])
    );
    assert_eq!(
        entries[2]["roles"],
        json!(["cab_member", "auditor"]),
        "roles held at that moment"
    );
    assert!(entries.iter().all(|e| e["revision"] == 1));
    let approved = app
        .audit_events()
        .await
        .into_iter()
        .filter(|(a, _)| a == "change.approved")
        .count();
    assert_eq!(approved, 1);
    // No more votes once decided.
    let late = app.api_login("cleo", &[Role::CabMember]).await;
    let resp = app.vote(&late, &id, "reject", "Too late").await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.problem_code(), "not_under_review");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn nobody_decides_on_their_own_work_through_the_api(pool: PgPool) {
    let app = TestApp::new(pool).await;
    // The author holds every role; the contributor is a CAB member and a reviewer.
    let author = app
        .api_login(
            "erin",
            &[
                Role::Engineer,
                Role::CabMember,
                Role::SecurityReviewer,
                Role::Admin,
            ],
        )
        .await;
    let contributor = app
        .api_login(
            "eddie",
            &[Role::Engineer, Role::CabMember, Role::SecurityReviewer],
        )
        .await;
    let admin = app.api_login("adam", &[Role::Admin]).await;
    let mut bot_user = app
        .service_account("deploy-bot", &[Role::CabMember, Role::SecurityReviewer])
        .await;
    bot_user.roles.sort();
    let bot_token = {
        let resp = app
            .api(
                Method::POST,
                &format!("/api/v1/users/{}/tokens", bot_user.id),
                Some(&admin.token),
                Some(json!({"name": "ci"})),
            )
            .await;
        resp.json()["secret"].as_str().unwrap().to_owned()
    };
    let bot = ApiClient {
        token: bot_token,
        user: bot_user,
    };

    let mut body = complete_change("Shared work");
    body["contributors"] = json!(["eddie"]);
    let id = app.file_change(&author, body).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.change_action(&author, &id, "submit", None).await;
    let before = app.change_row(&id).await;

    let attempts: Vec<(&ApiClient, &str, &str)> = vec![
        (&author, "vote", "self_approval"),
        (&contributor, "vote", "self_approval"),
        (&author, "assess", "self_assessment"),
        (&contributor, "assess", "self_assessment"),
        (&bot, "vote", "service_account"),
        (&bot, "assess", "service_account"),
        (&admin, "vote", "cab_member_required"),
        (&admin, "assess", "security_reviewer_required"),
    ];
    for (who, what, code) in &attempts {
        let resp = match *what {
            "vote" => app.vote(who, &id, "approve", "").await,
            _ => app.assess(who, &id, assessment("accept", "medium")).await,
        };
        assert_eq!(
            resp.status,
            StatusCode::FORBIDDEN,
            "{} {what}: {}",
            who.user.username,
            resp.body
        );
        assert_eq!(resp.problem_code(), *code, "{} {what}", who.user.username);
        assert!(!resp.json()["detail"].as_str().unwrap().is_empty());
    }
    assert_eq!(
        app.decision_rows().await,
        (0, 0),
        "nothing recorded but the denials"
    );
    assert_eq!(app.change_row(&id).await, before);
    let denials = app.denials().await;
    let codes: Vec<&str> = denials.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(
        codes,
        attempts.iter().map(|(_, _, c)| *c).collect::<Vec<_>>()
    );
    assert!(
        denials
            .iter()
            .all(|(a, _)| a == "change.vote" || a == "change.assess")
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn nobody_decides_on_their_own_work_through_the_forms(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let author = app
        .api_login(
            "erin",
            &[Role::Engineer, Role::CabMember, Role::SecurityReviewer],
        )
        .await;
    let admin = app.api_login("adam", &[Role::Admin]).await;
    let id = app.submitted_change(&author, 1, 1, "normal").await;
    let s = app
        .browser_login_with(author.user.clone(), "erin-correct-horse-battery")
        .await;
    let page = app
        .get_page(&format!("/changes/{id}"), Some(&s.cookie))
        .await;
    assert!(
        !page.body.contains("id=\"vote-form\""),
        "no vote form for the author"
    );
    assert!(!page.body.contains("id=\"assess-change\""));
    let resp = app
        .post_form(
            &format!("/changes/{id}/votes"),
            Some(&s.cookie),
            &[("_csrf", &s.csrf), ("vote", "approve"), ("revision", "1")],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert!(resp.body.contains("cannot vote on it"), "{}", resp.body);
    let resp = app
        .get_page(&format!("/changes/{id}/assessment"), Some(&s.cookie))
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    let resp = app
        .post_form(
            &format!("/changes/{id}/assessment"),
            Some(&s.cookie),
            &[
                ("_csrf", &s.csrf),
                ("security_implications", "none"),
                ("residual_risk", "none"),
                ("risk_level", "low"),
                ("decision", "accept"),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert!(resp.body.contains("cannot assess it"));

    let a = app
        .browser_login_with(admin.user.clone(), "adam-correct-horse-battery")
        .await;
    let page = app
        .get_page(&format!("/changes/{id}"), Some(&a.cookie))
        .await;
    assert!(
        !page.body.contains("id=\"vote-form\""),
        "admin is no shortcut"
    );
    let resp = app
        .post_form(
            &format!("/changes/{id}/votes"),
            Some(&a.cookie),
            &[("_csrf", &a.csrf), ("vote", "approve")],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert!(resp.body.contains("Only CAB members vote"));

    assert_eq!(app.decision_rows().await, (0, 0));
    assert_eq!(app.change_row(&id).await.0, "submitted");
    let codes: Vec<String> = app.denials().await.into_iter().map(|(_, r)| r).collect();
    assert_eq!(
        codes,
        vec![
            "self_approval",
            "self_assessment",
            "self_assessment",
            "cab_member_required"
        ]
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_vote_on_a_stale_revision_is_refused(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let id = app.submitted_change(&erin, 2, 2, "normal").await;
    let resp = app
        .api(
            Method::PATCH,
            &format!("/api/v1/changes/{id}"),
            Some(&erin.token),
            Some(json!({"title": "Rotate the edge certificates today"})),
        )
        .await;
    assert_eq!(resp.json()["revision"], 2);
    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/changes/{id}/votes"),
            Some(&carol.token),
            Some(json!({"vote": "approve", "revision": 1})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.problem_code(), "stale_revision");
    assert_eq!(app.decision_rows().await, (0, 0));
    assert_eq!(
        app.denials().await,
        vec![("change.vote".to_owned(), "stale_revision".to_owned())]
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn rejections_requests_for_changes_and_changed_votes(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let sam = app.api_login("sam", &[Role::SecurityReviewer]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let carl = app.api_login("carl", &[Role::CabMember]).await;

    // A reject or request for changes needs a comment.
    let a = app.submitted_change(&erin, 2, 2, "normal").await;
    let resp = app.vote(&carol, &a, "reject", " ").await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.json()["field"], "comment");
    // A member may change their vote; the trail keeps both.
    app.vote(&carol, &a, "approve", "").await;
    let resp = app
        .vote(
            &carol,
            &a,
            "request_changes",
            "Add the dashboards you will watch",
        )
        .await;
    assert_eq!(resp.json()["state"], "changes_requested");
    let trail = app.approvals(&erin, &a).await;
    assert_eq!(trail["entries"][0]["superseded"], true);
    assert_eq!(trail["entries"][1]["superseded"], false);
    // The authors edit (a new revision) and resubmit; old votes no longer count.
    let resp = app
        .api(
            Method::PATCH,
            &format!("/api/v1/changes/{a}"),
            Some(&erin.token),
            Some(json!({"implementation_plan": "Swap them; watch the TLS dashboard."})),
        )
        .await;
    assert_eq!(resp.json()["revision"], 2);
    assert_eq!(resp.json()["state"], "changes_requested");
    let resp = app.change_action(&erin, &a, "submit", None).await;
    assert_eq!(resp.json()["state"], "submitted");
    assert_eq!(resp.json()["revision"], 2);
    assert_eq!(
        app.approvals(&erin, &a).await["still_needed"],
        json!(["2 more CAB approvals"])
    );

    // Any reject rejects, and a rejected change is closed.
    let b = app.submitted_change(&erin, 1, 1, "normal").await;
    let resp = app.vote(&carl, &b, "reject", "Not during the freeze").await;
    assert_eq!(resp.json()["state"], "rejected");
    let resp = app
        .api(
            Method::PATCH,
            &format!("/api/v1/changes/{b}"),
            Some(&erin.token),
            Some(json!({"title": "again"})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CONFLICT);

    // A rejecting assessment rejects too.
    let c = app.submitted_change(&erin, 3, 3, "normal").await;
    let resp = app.assess(&sam, &c, assessment("reject", "critical")).await;
    assert_eq!(resp.json()["state"], "rejected");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn editing_what_was_approved_sends_it_back_to_review(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let id = app.submitted_change(&erin, 1, 1, "normal").await;
    let first = app.vote(&carol, &id, "approve", "").await;
    assert_eq!(first.json()["state"], "approved", "{}", first.body);

    // Editorial: stays approved, as a new revision.
    let resp = app
        .api(
            Method::PATCH,
            &format!("/api/v1/changes/{id}"),
            Some(&erin.token),
            Some(json!({"title": "Rotate the edge certificates (typo fixed)"})),
        )
        .await;
    assert_eq!(resp.json()["state"], "approved");
    assert_eq!(resp.json()["revision"], 2);

    // The window is part of what was approved: back to review, votes void.
    let resp = app
        .api(
            Method::PATCH,
            &format!("/api/v1/changes/{id}"),
            Some(&erin.token),
            Some(
                json!({"window": {"start": "2026-12-02T10:00:00Z", "end": "2026-12-02T11:00:00Z"}}),
            ),
        )
        .await;
    assert_eq!(resp.json()["state"], "submitted");
    assert_eq!(resp.json()["revision"], 3);
    let trail = app.approvals(&carol, &id).await;
    assert_eq!(trail["still_needed"], json!(["1 more CAB approval"]));
    assert_eq!(trail["entries"][0]["stale"], true);
    let s = app
        .browser_login_with(carol.user.clone(), "carol-correct-horse-battery")
        .await;
    let page = app
        .get_page(&format!("/changes/{id}"), Some(&s.cookie))
        .await;
    assert!(page.body.contains("id=\"review-note\""));
    assert!(
        page.body.contains("changed window start, window end"),
        "the page says why, in words: {}",
        page.body
    );
    assert!(
        !page.body.contains("window_start"),
        "no field codes on the page"
    );
    assert!(page.body.contains("back in review"));
    assert_eq!(
        app.vote(&carol, &id, "approve", "").await.json()["state"],
        "approved"
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn concurrent_votes_approve_exactly_once(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let sam = app.api_login("sam", &[Role::SecurityReviewer]).await;
    // Critical: three approvals and an accepting assessment; two are in.
    let id = app.submitted_change(&erin, 4, 4, "normal").await;
    app.assess(&sam, &id, assessment("accept", "critical"))
        .await;
    let first = app.api_login("m0", &[Role::CabMember]).await;
    let second = app.api_login("m1", &[Role::CabMember]).await;
    app.vote(&first, &id, "approve", "").await;
    app.vote(&second, &id, "approve", "").await;
    let mut members = Vec::new();
    for i in 2..10 {
        members.push(app.api_login(&format!("m{i}"), &[Role::CabMember]).await);
    }
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for m in members {
        let app = app.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            app.vote(&m, &id, "approve", "").await.status
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    // One vote decided it; the ones counted after the decision were refused.
    assert!(statuses.contains(&StatusCode::OK));
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::FORBIDDEN),
        "{statuses:?}"
    );
    let approved = app
        .audit_events()
        .await
        .into_iter()
        .filter(|(a, _)| a == "change.approved")
        .count();
    assert_eq!(approved, 1);
    assert_eq!(app.change_row(&id).await.0, "approved");
    let (ok, stdout, stderr) = crate::audit::cab(&app.pool, &["audit", "verify"]);
    assert!(ok, "{stdout}{stderr}");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn emergency_changes_need_cab_and_security_and_a_review(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let sam = app.api_login("sam", &[Role::SecurityReviewer]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let id = app.submitted_change(&erin, 2, 2, "emergency").await;
    // In either order: first the CAB approval...
    assert_eq!(
        app.vote(&carol, &id, "approve", "").await.json()["state"],
        "submitted"
    );
    assert_eq!(
        app.approvals(&carol, &id).await["still_needed"],
        json!(["an accepting security assessment"])
    );
    // ...then security approves it.
    assert_eq!(
        app.assess(&sam, &id, assessment("accept", "medium"))
            .await
            .json()["state"],
        "approved"
    );
    let trail = app.approvals(&carol, &id).await;
    let due: chrono::DateTime<chrono::Utc> = trail["retrospective_due_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let decided: chrono::DateTime<chrono::Utc> =
        trail["decided_at"].as_str().unwrap().parse().unwrap();
    assert_eq!((due - decided).num_hours(), 72);
    // Its post-implementation review is owed by then.
    let uri = format!("/api/v1/changes/{id}/review");
    let review = app.api(Method::GET, &uri, Some(&erin.token), None).await;
    assert_eq!(review.status, StatusCode::OK, "{}", review.body);
    let review = review.json()["review"].clone();
    assert_eq!(review["required"], true, "{review}");
    assert_eq!(review["reasons"][0]["code"], "emergency");
    assert_eq!(review["due_at"], trail["retrospective_due_at"]);

    // Overdue: shown on the dashboard and the CAB queue.
    sqlx::query("UPDATE reviews SET due_at = now() - interval '1 hour'")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE changes SET retrospective_due_at = now() - interval '1 hour'")
        .execute(&app.pool)
        .await
        .unwrap();
    let s = app
        .browser_login_with(carol.user.clone(), "carol-correct-horse-battery")
        .await;
    for uri in ["/", "/cab"] {
        let page = app.get_page(uri, Some(&s.cookie)).await;
        assert!(page.body.contains("id=\"overdue-reviews\""), "{uri}");
    }
    // The author writes the review but cannot sign it off; a CAB member can.
    let resp = app
        .api(
            Method::PUT,
            &uri,
            Some(&erin.token),
            Some(json!({
                "revision": 0,
                "outcome": "The patched library is live.",
                "intervention": "none",
                "lessons": "Root cause fixed; runbook updated."
            })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let sign_off = format!("/api/v1/changes/{id}/review/sign-off");
    let resp = app
        .api(
            Method::POST,
            &sign_off,
            Some(&erin.token),
            Some(json!({"revision": 1})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.approvals(&carol, &id).await["retrospective_done_at"],
        Value::Null
    );
    // Not while nothing has run yet: the review looks back on it.
    let resp = app
        .api(
            Method::POST,
            &sign_off,
            Some(&carol.token),
            Some(json!({"revision": 1})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert_eq!(resp.problem_code(), "not_over_yet");
    // The emergency passed without a deployment: its author closes it.
    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/changes/{id}/close"),
            Some(&erin.token),
            Some(json!({"code": "not_implemented", "notes": "The vendor patch made it unnecessary."})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let resp = app
        .api(
            Method::POST,
            &sign_off,
            Some(&carol.token),
            Some(json!({"revision": 1})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert!(app.approvals(&carol, &id).await["retrospective_done_at"].is_string());
    let page = app.get_page("/cab", Some(&s.cookie)).await;
    assert!(!page.body.contains("id=\"overdue-reviews\""));
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn lowering_the_engineers_risk_needs_a_justification_and_is_flagged(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let sam = app.api_login("sam", &[Role::SecurityReviewer]).await;
    let id = app.submitted_change(&erin, 3, 3, "normal").await;
    let resp = app.assess(&sam, &id, assessment("accept", "low")).await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.json()["field"], "lowering_justification");
    let mut body = assessment("accept", "low");
    body["lowering_justification"] = json!("Internal traffic only.");
    assert_eq!(app.assess(&sam, &id, body).await.status, StatusCode::OK);
    let trail = app.approvals(&sam, &id).await;
    assert_eq!(
        trail["risk_level"], "low",
        "decisions use the assessed level"
    );
    assert_eq!(trail["entries"][0]["lowers_risk"], true);
    let s = app
        .browser_login_with(erin.user.clone(), "erin-correct-horse-battery")
        .await;
    let page = app
        .get_page(&format!("/changes/{id}"), Some(&s.cookie))
        .await;
    assert!(page.body.contains("id=\"lowered-risk\""));
    // Accept with conditions needs them.
    let other = app.submitted_change(&erin, 1, 1, "normal").await;
    let mut body = assessment("accept_with_conditions", "low");
    body["conditions"] = json!([]);
    let resp = app.assess(&sam, &other, body).await;
    assert_eq!(resp.json()["field"], "conditions");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_quorum_policy_is_an_administrators_setting(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let adam = app.api_login("adam", &[Role::Admin]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let mut policy = app
        .api(
            Method::GET,
            "/api/v1/settings/quorum",
            Some(&carol.token),
            None,
        )
        .await
        .json();
    assert_eq!(
        policy["medium"],
        json!({"approvals": 2, "assessment": false})
    );
    policy["low"]["approvals"] = json!(2);
    let resp = app
        .api(
            Method::PUT,
            "/api/v1/settings/quorum",
            Some(&carol.token),
            Some(policy.clone()),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.problem_code(), "admin_required");
    let resp = app
        .api(
            Method::PUT,
            "/api/v1/settings/quorum",
            Some(&adam.token),
            Some(policy.clone()),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    // A low change now needs two approvals.
    let id = app.submitted_change(&erin, 1, 1, "normal").await;
    assert_eq!(
        app.vote(&carol, &id, "approve", "").await.json()["state"],
        "submitted"
    );
    // Nonsense is refused with the level named.
    policy["high"]["approvals"] = json!(1);
    let resp = app
        .api(
            Method::PUT,
            "/api/v1/settings/quorum",
            Some(&adam.token),
            Some(policy),
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.json()["field"], "high");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn when_the_policy_cannot_be_read_the_answer_is_no(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let id = app.submitted_change(&erin, 1, 1, "normal").await;
    // The policy the change was submitted under is unreadable.
    sqlx::query("UPDATE changes SET quorum_policy = '\"garbled\"'")
        .execute(&app.pool)
        .await
        .unwrap();
    let resp = app.vote(&carol, &id, "approve", "").await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert_eq!(resp.problem_code(), "policy_unavailable");
    assert_eq!(app.decision_rows().await, (0, 0), "the vote was not kept");
    assert_eq!(app.change_row(&id).await.0, "submitted");
    // The policy in force is unreadable: nothing is submitted under it.
    sqlx::query("INSERT INTO settings (key, value) VALUES ('quorum_policy', '\"garbled\"')")
        .execute(&app.pool)
        .await
        .unwrap();
    let draft = app.file_change(&erin, complete_change("Another")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = app.change_action(&erin, &draft, "submit", None).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert_eq!(resp.problem_code(), "policy_unavailable");
    assert_eq!(app.change_row(&draft).await.0, "draft");
    assert_eq!(
        app.denials().await,
        vec![
            ("change.vote".to_owned(), "policy_unavailable".to_owned()),
            ("change.submit".to_owned(), "policy_unavailable".to_owned())
        ]
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn queues_and_agenda(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let low = app.submitted_change(&erin, 1, 1, "normal").await;
    let high = app.submitted_change(&erin, 3, 3, "normal").await;
    // Both changes plan the same window for the same service: approving one
    // acknowledges that calendar conflict.
    let revision = app.revision_of(&carol, &high).await;
    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/changes/{high}/votes"),
            Some(&carol.token),
            Some(json!({"vote": "approve", "revision": revision, "acknowledge_conflicts": true})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let queue = app
        .api(Method::GET, "/api/v1/queues/cab", Some(&carol.token), None)
        .await
        .json();
    let items = queue.as_array().unwrap();
    assert_eq!(items.len(), 2);
    let h = items.iter().find(|i| i["id"] == high.as_str()).unwrap();
    assert_eq!(h["my_vote"], "approve");
    assert_eq!(
        h["still_needed"],
        json!(["1 more CAB approval", "an accepting security assessment"])
    );
    let l = items.iter().find(|i| i["id"] == low.as_str()).unwrap();
    assert!(l["my_vote"].is_null());

    let s = app.browser_login("sam", &[Role::SecurityReviewer]).await;
    let page = app.get_page("/assessments", Some(&s.cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    let first_high = page.body.find(&high).unwrap();
    let then_low = page.body.find(&low).unwrap();
    assert!(first_high < then_low, "riskiest first");
    let c = app
        .browser_login_with(carol.user.clone(), "carol-correct-horse-battery")
        .await;
    let agenda = app.get_page("/cab/agenda", Some(&c.cookie)).await;
    assert!(agenda.body.contains("CAB meeting agenda"));
    assert!(
        agenda
            .body
            .contains("1 more CAB approval; an accepting security assessment")
    );
}

fn template_body(name: &str, impact: i64) -> Value {
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
            "environments": ["STAGE", "PROD"],
            "risk": {"impact": impact, "likelihood": 1}
        }
    })
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn standard_changes_from_an_approved_template_are_approved_on_submission(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let carl = app.api_login("carl", &[Role::CabMember]).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    // Only low-risk routines can be templates.
    let resp = app
        .api(
            Method::POST,
            "/api/v1/templates",
            Some(&carol.token),
            Some(template_body("Risky", 4)),
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.json()["field"], "impact");
    // Engineers do not propose templates.
    let resp = app
        .api(
            Method::POST,
            "/api/v1/templates",
            Some(&erin.token),
            Some(template_body("Mine", 1)),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    let resp = app
        .api(
            Method::POST,
            "/api/v1/templates",
            Some(&carol.token),
            Some(template_body("TLS renewal", 1)),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    let tid = resp.json()["id"].as_str().unwrap().to_owned();

    // Not approved yet: no change can be made from it.
    let mut body = complete_change("Renew api.example.com");
    body["template"] = json!(tid);
    let resp = app
        .api(
            Method::POST,
            "/api/v1/changes",
            Some(&erin.token),
            Some(body.clone()),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.problem_code(), "template_not_approved");

    // The proposer cannot approve their own template.
    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/templates/{tid}/votes"),
            Some(&carol.token),
            Some(json!({"vote": "approve"})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.problem_code(), "self_approval");
    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/templates/{tid}/votes"),
            Some(&carl.token),
            Some(json!({"vote": "approve"})),
        )
        .await;
    assert_eq!(resp.json()["state"], "approved", "{}", resp.body);

    // From the template: its plans are imposed, and submission approves it.
    let created = app.file_change(&erin, body.clone()).await;
    assert_eq!(created["type"], "standard");
    assert_eq!(created["implementation_plan"], "Run the renewal job.");
    assert_eq!(created["template"], tid.as_str());
    let id = created["id"].as_str().unwrap().to_owned();
    let resp = app
        .api(
            Method::PATCH,
            &format!("/api/v1/changes/{id}"),
            Some(&erin.token),
            Some(json!({"rollback_plan": "Something else"})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.json()["field"], "rollback_plan");
    let resp = app.change_action(&erin, &id, "submit", None).await;
    assert_eq!(resp.json()["state"], "approved", "{}", resp.body);
    assert_eq!(resp.json()["revision"], 1);
    // An editorial edit later keeps the approval, as revision 2.
    let resp = app
        .api(
            Method::PATCH,
            &format!("/api/v1/changes/{id}"),
            Some(&erin.token),
            Some(json!({"title": "Renew api.example.com today"})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["revision"], 2);
    assert_eq!(resp.json()["state"], "approved");
    let approved: Vec<Value> = app
        .audit_events()
        .await
        .into_iter()
        .filter(|(a, _)| a == "change.approved")
        .map(|(_, p)| p)
        .collect();
    assert_eq!(approved.len(), 1);
    assert_eq!(
        approved[0]["template"],
        tid.as_str(),
        "the trail records which template approved it"
    );

    // Retired: no new changes from it.
    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/templates/{tid}/retire"),
            Some(&carol.token),
            None,
        )
        .await;
    assert_eq!(resp.json()["state"], "retired");
    let resp = app
        .api(
            Method::POST,
            "/api/v1/changes",
            Some(&erin.token),
            Some(body),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.problem_code(), "template_retired");

    // The pages: the list, and no vote form for the proposer.
    let s = app
        .browser_login_with(carol.user.clone(), "carol-correct-horse-battery")
        .await;
    let page = app.get_page("/templates", Some(&s.cookie)).await;
    assert!(page.body.contains("TLS renewal"));
    let page = app
        .get_page(&format!("/templates/{tid}"), Some(&s.cookie))
        .await;
    assert!(!page.body.contains("id=\"template-vote-form\""));
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn any_edit_under_review_calls_for_fresh_votes(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let id = app.submitted_change(&erin, 2, 2, "normal").await;
    app.vote(&carol, &id, "approve", "").await;
    let resp = app
        .api(
            Method::PATCH,
            &format!("/api/v1/changes/{id}"),
            Some(&erin.token),
            Some(json!({"title": "A better title"})),
        )
        .await;
    assert_eq!(resp.json()["state"], "submitted");
    assert_eq!(resp.json()["revision"], 2);
    let trail = app.approvals(&carol, &id).await;
    assert_eq!(
        trail["still_needed"],
        json!(["2 more CAB approvals"]),
        "carol's vote was on revision 1"
    );
    let s = app
        .browser_login_with(carol.user.clone(), "carol-correct-horse-battery")
        .await;
    let page = app
        .get_page(&format!("/changes/{id}"), Some(&s.cookie))
        .await;
    assert!(
        page.body
            .contains("Revision 2 changed title after submission")
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn leaving_the_contributors_does_not_make_one_eligible(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let eddie = app
        .api_login(
            "eddie",
            &[Role::Engineer, Role::CabMember, Role::SecurityReviewer],
        )
        .await;
    let mut body = complete_change("Paired work");
    body["contributors"] = json!(["eddie"]);
    body["risk"] = json!({"impact": 1, "likelihood": 1});
    let id = app.file_change(&erin, body).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.change_action(&erin, &id, "submit", None).await;
    // Eddie drops himself from the change, then tries to approve and assess it.
    let resp = app
        .api(
            Method::PATCH,
            &format!("/api/v1/changes/{id}"),
            Some(&eddie.token),
            Some(json!({"contributors": []})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["contributors"], json!([]));
    let resp = app.vote(&eddie, &id, "approve", "").await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.problem_code(), "self_approval");
    let resp = app.assess(&eddie, &id, assessment("accept", "low")).await;
    assert_eq!(resp.problem_code(), "self_assessment");
    assert_eq!(app.change_row(&id).await.0, "submitted");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn revisions_are_required_and_stale_assessments_refused(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let sam = app.api_login("sam", &[Role::SecurityReviewer]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let id = app.submitted_change(&erin, 3, 3, "normal").await;
    // A vote must say which revision it is on.
    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/changes/{id}/votes"),
            Some(&carol.token),
            Some(json!({"vote": "approve"})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    // The author moves on to revision 2 while the reviewer reads revision 1.
    app.api(
        Method::PATCH,
        &format!("/api/v1/changes/{id}"),
        Some(&erin.token),
        Some(json!({"title": "Edited meanwhile"})),
    )
    .await;
    let mut body = assessment("accept", "high");
    body["revision"] = json!(1);
    let resp = app.assess(&sam, &id, body).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.problem_code(), "stale_revision");
    assert_eq!(app.decision_rows().await, (0, 0));
    // On the revision it now has, the assessment is taken.
    assert_eq!(
        app.assess(&sam, &id, assessment("accept", "high"))
            .await
            .status,
        StatusCode::OK
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_approved_emergency_keeps_its_retrospective_whatever_comes_next(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let sam = app.api_login("sam", &[Role::SecurityReviewer]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let id = app.submitted_change(&erin, 2, 2, "emergency").await;
    app.vote(&carol, &id, "approve", "").await;
    let approved = app.assess(&sam, &id, assessment("accept", "medium")).await;
    assert_eq!(approved.json()["state"], "approved", "{}", approved.body);
    let due = app.approvals(&carol, &id).await["retrospective_due_at"].clone();
    assert!(due.is_string(), "{due}");

    // The approved change may have been carried out. A material edit sends
    // it back to review, and security then rejects the new revision: the
    // retrospective of what was approved is still due.
    let window =
        json!({"window": {"start": "2026-12-02T10:00:00Z", "end": "2026-12-02T11:00:00Z"}});
    let uri = format!("/api/v1/changes/{id}");
    let edited = app
        .api(Method::PATCH, &uri, Some(&erin.token), Some(window))
        .await;
    assert_eq!(edited.json()["state"], "submitted", "{}", edited.body);
    let rejected = app.assess(&sam, &id, assessment("reject", "high")).await;
    assert_eq!(rejected.json()["state"], "rejected", "{}", rejected.body);
    assert_eq!(
        app.approvals(&carol, &id).await["retrospective_due_at"],
        due,
        "the retrospective stays due"
    );
    let uri = format!("/api/v1/changes/{id}/review");
    let review = app.api(Method::GET, &uri, Some(&carol.token), None).await;
    let review = review.json()["review"].clone();
    assert_eq!(review["required"], true, "{review}");
    assert_eq!(review["due_at"], due, "the review stays owed, by then");
    // What was approved is reviewed and signed off all the same.
    let resp = app
        .api(
            Method::PUT,
            &uri,
            Some(&erin.token),
            Some(json!({
                "revision": 0,
                "outcome": "The approved window was not used.",
                "intervention": "none",
                "lessons": "Rolled back the approved window; new plan filed."
            })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let resp = app
        .api(
            Method::POST,
            &format!("{uri}/sign-off"),
            Some(&carol.token),
            Some(json!({"revision": 1})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert!(app.approvals(&carol, &id).await["retrospective_done_at"].is_string());
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn refusals_of_state_are_recorded_too(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let sam = app.api_login("sam", &[Role::SecurityReviewer]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let id = app.submitted_change(&erin, 1, 1, "normal").await;
    let start = format!("/api/v1/changes/{id}/assessment/start");
    let started = app.api(Method::POST, &start, Some(&sam.token), None).await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.body);
    let before = app.change_row(&id).await;
    let events = app.audit_count().await;

    // Taking a change into assessment twice.
    let resp = app.api(Method::POST, &start, Some(&sam.token), None).await;
    assert_eq!(resp.status, StatusCode::CONFLICT, "{}", resp.body);
    assert!(
        resp.body.contains("only a submitted change"),
        "{}",
        resp.body
    );
    // A review of a change that was never approved.
    let resp = app
        .api(
            Method::PUT,
            &format!("/api/v1/changes/{id}/review"),
            Some(&carol.token),
            Some(json!({"revision": 0, "outcome": "Nothing to review."})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert_eq!(resp.problem_code(), "not_reviewable");
    let denials = app.denials().await;
    assert!(
        denials.contains(&("change.assess".to_owned(), "invalid_transition".to_owned())),
        "{denials:?}"
    );
    assert!(
        denials.contains(&("review.write".to_owned(), "not_reviewable".to_owned())),
        "{denials:?}"
    );
    assert_eq!(denials.len(), 2, "{denials:?}");
    assert_eq!(
        app.audit_count().await,
        events + 2,
        "only the refusals were recorded"
    );
    assert_eq!(app.change_row(&id).await, before, "nothing else changed");
}
