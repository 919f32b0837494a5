//! Releases through the API, from the release manager's side and the
//! attacker's: who plans them, who votes on their go/no-go, what the plan
//! must hold, and a scope in which a change goes out with one release at a
//! time. (The phases and the deployment gate are tested elsewhere.)

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use cab_domain::Role;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::changes::complete_change;
use crate::common::{ApiClient, TestApp, TestResponse};

/// A complete release plan.
pub fn release_plan(name: &str) -> Value {
    json!({
        "name": name,
        "version": "2026.12.1",
        "milestones": {
            "code_freeze": "2026-11-20T09:00:00Z",
            "go_no_go": "2026-11-27T09:00:00Z",
            "deployment": "2026-12-01T09:00:00Z",
            "hypercare_end": "2026-12-08T09:00:00Z"
        },
        "test_strategy": {
            "levels": ["integration", "system"],
            "entry_criteria": "Every change in scope approved and merged.",
            "exit_criteria": "The regression suite passes on STAGE.",
            "evidence": ["https://ci.example.com/runs/9"]
        },
        "phases": [
            {"environment": "stage", "target": "All of STAGE", "soak_minutes": 60,
             "proceed_criteria": "No new errors for an hour.", "abort_criteria": "Any 5xx spike."},
            {"environment": "prod", "target": "10% of traffic", "soak_minutes": 120,
             "proceed_criteria": "Error rate under 0.1%.", "abort_criteria": "Error rate over 1%."},
            {"environment": "prod", "target": "All traffic", "soak_minutes": 0,
             "proceed_criteria": "Dashboards green.", "abort_criteria": "Any page fires."}
        ],
        "rollback": {
            "triggers": "Error rate over 1% for five minutes.",
            "steps": "Redeploy the previous artifacts with the pipeline.",
            "max_minutes": 30,
            "irreversible": false
        },
        "communications": [
            {"audience": "Support", "channel": "#support", "when": "2026-11-30T09:00:00Z",
             "message": "The December release goes out tomorrow."}
        ]
    })
}

/// A plan with its scope.
pub fn release_body(name: &str, changes: &[&str]) -> Value {
    let mut body = release_plan(name);
    body["changes"] = json!(changes);
    body["reason"] = json!("They ship together in December.");
    body
}

pub async fn plan_release(app: &TestApp, who: &ApiClient, body: Value) -> TestResponse {
    app.api(
        Method::POST,
        "/api/v1/releases",
        Some(&who.token),
        Some(body),
    )
    .await
}

/// Plans a release with these changes; its id.
pub async fn planned(app: &TestApp, who: &ApiClient, changes: &[&str]) -> String {
    let resp = plan_release(app, who, release_body("December release", changes)).await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    resp.json()["id"].as_str().unwrap().to_owned()
}

/// Plans and submits a release with these changes; its id.
pub async fn in_review(app: &TestApp, who: &ApiClient, changes: &[&str]) -> String {
    let id = planned(app, who, changes).await;
    let resp = release_action(app, who, &id, "submit", None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["state"], "in_review");
    id
}

pub async fn get_release(app: &TestApp, who: &ApiClient, id: &str) -> Value {
    let resp = app
        .api(
            Method::GET,
            &format!("/api/v1/releases/{id}"),
            Some(&who.token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    resp.json()
}

pub async fn release_action(
    app: &TestApp,
    who: &ApiClient,
    id: &str,
    action: &str,
    body: Option<Value>,
) -> TestResponse {
    app.api(
        Method::POST,
        &format!("/api/v1/releases/{id}/{action}"),
        Some(&who.token),
        body,
    )
    .await
}

/// A go/no-go vote on the revision the member reads now.
pub async fn release_vote(
    app: &TestApp,
    who: &ApiClient,
    id: &str,
    choice: &str,
    comment: &str,
) -> TestResponse {
    let revision = get_release(app, who, id).await["revision"].clone();
    release_action(
        app,
        who,
        id,
        "votes",
        Some(json!({"choice": choice, "comment": comment, "revision": revision})),
    )
    .await
}

/// The change's key, CHG-<number>.
pub async fn change_key(app: &TestApp, who: &ApiClient, id: &str) -> String {
    app.api(
        Method::GET,
        &format!("/api/v1/changes/{id}"),
        Some(&who.token),
        None,
    )
    .await
    .json()["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A low-risk change approved by `approver`: its key.
async fn approved_key(app: &TestApp, author: &ApiClient, approver: &ApiClient) -> String {
    let id = app.approved_change(author, approver).await;
    change_key(app, author, &id).await
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap()
}

async fn release_rows(app: &TestApp) -> i64 {
    count(app, "SELECT count(*) FROM releases").await
}

async fn vote_rows(app: &TestApp) -> i64 {
    count(app, "SELECT count(*) FROM release_votes").await
}

/// (state, revision) as stored.
async fn stored(app: &TestApp, id: &str) -> (String, i32) {
    sqlx::query_as("SELECT state, revision FROM releases WHERE id = $1::uuid")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// The payloads of the audit events of `action`, oldest first.
async fn events(app: &TestApp, action: &str) -> Vec<Value> {
    app.audit_events()
        .await
        .into_iter()
        .filter(|(a, _)| a == action)
        .map(|(_, p)| p)
        .collect()
}

/// A service account holding `roles`, with an API token issued by `admin`.
async fn service_client(app: &TestApp, admin: &ApiClient, name: &str, roles: &[Role]) -> ApiClient {
    let user = app.service_account(name, roles).await;
    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/users/{}/tokens", user.id),
            Some(&admin.token),
            Some(json!({"name": "ci"})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    ApiClient {
        token: resp.json()["secret"].as_str().unwrap().to_owned(),
        user,
    }
}

/// Asserts a refusal: its status, code and message, and that it, alone,
/// was recorded as `attempted`.
async fn assert_refused(
    app: &TestApp,
    resp: &TestResponse,
    denials_before: usize,
    attempted: &str,
    code: &str,
    message: &str,
) {
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{code}: {}", resp.body);
    assert_eq!(resp.problem_code(), code, "{}", resp.body);
    let detail = resp.json()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        detail.contains(message),
        "{code}: {detail:?} should say {message:?}"
    );
    let denials = app.denials().await;
    assert_eq!(
        denials.len(),
        denials_before + 1,
        "exactly one denial recorded: {denials:?}"
    );
    assert_eq!(
        denials.last().unwrap(),
        &(attempted.to_owned(), code.to_owned())
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_release_manager_plans_a_release_with_its_scope(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let chg = approved_key(&app, &c.erin, &c.carol).await;
    let resp = plan_release(&app, &c.rita, release_body("December release", &[&chg])).await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    let created = resp.json();
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        resp.header("location"),
        Some(format!("/api/v1/releases/{id}").as_str())
    );
    assert_eq!(created["key"], "REL-1");
    assert_eq!(created["state"], "draft");
    assert_eq!(created["state_label"], "Draft");
    assert_eq!(created["revision"], 1);
    assert_eq!(created["created_by"], "rita");
    assert_eq!(created["plan"]["version"], "2026.12.1");
    assert_eq!(
        created["plan"]["milestones"]["deployment"],
        "2026-12-01T09:00:00Z"
    );
    assert_eq!(
        created["plan"]["test_strategy"]["levels"],
        json!(["integration", "system"])
    );
    assert_eq!(created["plan"]["phases"][1]["target"], "10% of traffic");
    assert_eq!(created["scope"][0]["key"], chg);
    assert_eq!(created["scope"][0]["state"], "approved");
    assert_eq!(created["scope"][0]["risk"], "low");
    assert_eq!(created["risk_level"], "low");
    assert_eq!(created["still_needed"], json!([]));
    let phases = created["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 3);
    assert!(phases.iter().all(|p| p["state"] == "waiting"));
    assert_eq!(phases[1]["environment_label"], "PROD");

    // By number too, and in the list.
    let by_key = get_release(&app, &c.erin, "REL-1").await;
    assert_eq!(by_key["id"], created["id"]);
    let list = app
        .api(
            Method::GET,
            "/api/v1/releases?state=draft",
            Some(&c.erin.token),
            None,
        )
        .await
        .json();
    assert_eq!(list[0]["key"], "REL-1");
    assert_eq!(list[0]["scope"], json!([chg]));
    assert_eq!(list[0]["deployment"], "2026-12-01T09:00:00Z");
    let none = app
        .api(
            Method::GET,
            "/api/v1/releases?state=approved",
            Some(&c.erin.token),
            None,
        )
        .await
        .json();
    assert_eq!(none, json!([]));
    let bad = app
        .api(
            Method::GET,
            "/api/v1/releases?state=shipped",
            Some(&c.erin.token),
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.json()["field"], "state");
    let created_events = events(&app, "release.created").await;
    assert_eq!(created_events.len(), 1);
    assert_eq!(created_events[0]["scope"], json!([chg]));
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn only_release_managers_plan_releases(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let chg = approved_key(&app, &c.erin, &c.carol).await;
    let auditor = app.api_login("audrey", &[Role::Auditor]).await;
    // A pipeline given the role still never plans a release.
    let bot = service_client(&app, &c.adam, "release-bot", &[Role::ReleaseManager]).await;
    let audit_before = app.audit_count().await;

    let attempts = [
        (&c.erin, release_body("Engineer's release", &[&chg])),
        (&auditor, release_body("Auditor's release", &[&chg])),
        // An invalid plan from someone who may not plan: refused, not corrected.
        (&auditor, json!({"name": ""})),
        (&bot, release_body("Pipeline's release", &[&chg])),
    ];
    for (i, (who, body)) in attempts.into_iter().enumerate() {
        let resp = plan_release(&app, who, body).await;
        assert_refused(
            &app,
            &resp,
            i,
            "release.create",
            "release_manager_required",
            "Only release managers and administrators plan and run releases.",
        )
        .await;
    }
    assert_eq!(release_rows(&app).await, 0, "no release was planned");
    assert_eq!(count(&app, "SELECT count(*) FROM release_scope").await, 0);
    assert_eq!(
        app.audit_count().await,
        audit_before + 4,
        "nothing recorded but the denials"
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn nobody_votes_on_a_release_they_planned_or_worked_on(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let adam = app.api_login("adam", &[Role::Admin]).await;
    // The planner is a CAB member too; so are the change's author and contributor.
    let ruth = app
        .api_login("ruth", &[Role::ReleaseManager, Role::CabMember])
        .await;
    let erin = app
        .api_login("erin", &[Role::Engineer, Role::CabMember])
        .await;
    let eddie = app
        .api_login("eddie", &[Role::Engineer, Role::CabMember])
        .await;
    let auditor = app.api_login("audrey", &[Role::Auditor]).await;
    let bot = service_client(&app, &adam, "vote-bot", &[Role::CabMember]).await;
    let mut body = complete_change("Shared work");
    body["contributors"] = json!(["eddie"]);
    let change = app.file_change(&erin, body).await;
    let change_id = change["id"].as_str().unwrap();
    let resp = app.change_action(&erin, change_id, "submit", None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let chg = change["key"].as_str().unwrap();
    let id = in_review(&app, &ruth, &[chg]).await;
    let before = stored(&app, &id).await;
    let audit_before = app.audit_count().await;

    let attempts: [(&ApiClient, &str, &str); 5] = [
        (
            &ruth,
            "self_approval",
            "You wrote or edited this release plan, so you cannot vote on it",
        ),
        (
            &erin,
            "self_approval",
            "You wrote or contributed to a change in this release, so you cannot vote on it",
        ),
        (
            &eddie,
            "self_approval",
            "You wrote or contributed to a change in this release, so you cannot vote on it",
        ),
        (
            &auditor,
            "cab_member_required",
            "Only CAB members vote on releases.",
        ),
        (
            &bot,
            "service_account",
            "Service accounts are for pipelines: they never vote on releases.",
        ),
    ];
    for (i, (who, code, message)) in attempts.into_iter().enumerate() {
        let resp = release_vote(&app, who, &id, "approve", "").await;
        assert_refused(&app, &resp, i, "release.vote", code, message).await;
    }
    assert_eq!(vote_rows(&app).await, 0, "no vote recorded");
    assert_eq!(stored(&app, &id).await, before, "still in review");
    assert_eq!(app.audit_count().await, audit_before + 5);
    let release = get_release(&app, &adam, &id).await;
    assert_eq!(release["votes"], json!([]));
    assert_eq!(
        release["still_needed"],
        json!([
            "2 more CAB approvals",
            format!("approval of every change in scope ({chg} not yet approved)")
        ])
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn votes_on_a_stale_revision_or_a_draft_are_refused(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let dave = app.api_login("dave", &[Role::CabMember]).await;
    let chg = approved_key(&app, &c.erin, &c.carol).await;

    // A draft is not awaiting a go/no-go.
    let draft = planned(&app, &c.rita, &[&chg]).await;
    let resp = release_vote(&app, &dave, &draft, "approve", "").await;
    assert_refused(
        &app,
        &resp,
        0,
        "release.vote",
        "not_under_review",
        "This release is draft; it is not awaiting a go/no-go.",
    )
    .await;
    assert_eq!(stored(&app, &draft).await, ("draft".to_owned(), 1));
    release_action(
        &app,
        &c.rita,
        &draft,
        "cancel",
        Some(json!({"reason": "Planned twice by mistake."})),
    )
    .await;

    // The plan moved on after the member read it.
    let id = in_review(&app, &c.rita, &[&chg]).await;
    let mut plan = release_plan("December release");
    plan["version"] = json!("2026.12.2");
    let resp = app
        .api(
            Method::PUT,
            &format!("/api/v1/releases/{id}"),
            Some(&c.rita.token),
            Some(json!({"revision": 1, "plan": plan})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["revision"], 2);
    assert_eq!(resp.json()["approval_voided"], false);
    let denials = app.denials().await.len();
    let resp = release_action(
        &app,
        &dave,
        &id,
        "votes",
        Some(json!({"choice": "approve", "revision": 1})),
    )
    .await;
    assert_refused(
        &app,
        &resp,
        denials,
        "release.vote",
        "stale_revision",
        "You read revision 1, but the release plan is now at revision 2",
    )
    .await;
    assert_eq!(vote_rows(&app).await, 0);
    assert_eq!(stored(&app, &id).await, ("in_review".to_owned(), 2));

    // An edit on a stale revision is refused the same way.
    let denials = app.denials().await.len();
    let resp = app
        .api(
            Method::PUT,
            &format!("/api/v1/releases/{id}"),
            Some(&c.rita.token),
            Some(json!({"revision": 1, "plan": release_plan("December release, again")})),
        )
        .await;
    assert_refused(
        &app,
        &resp,
        denials,
        "release.edit",
        "stale_revision",
        "You read revision 1",
    )
    .await;
    assert_eq!(stored(&app, &id).await, ("in_review".to_owned(), 2));

    // On the revision they read now, the vote counts.
    let resp = release_vote(&app, &dave, &id, "approve", "").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["state"], "approved");
}

/// A fault in a plan: what it is, how to put it into a plan, and the field
/// and message the answer names.
type Fault = (&'static str, fn(&mut Value), &'static str, &'static str);

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn invalid_plans_are_refused_naming_each_field_and_write_nothing(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let chg = approved_key(&app, &c.erin, &c.carol).await;
    let audit_before = app.audit_count().await;
    let faults: Vec<Fault> = vec![
        (
            "milestones out of order",
            |p| p["milestones"]["deployment"] = json!("2026-11-26T09:00:00Z"),
            "deployment",
            "The deployment cannot come before the go/no-go.",
        ),
        (
            "an unknown environment",
            |p| p["phases"][0]["environment"] = json!("qa"),
            "phases",
            "Phase 1: choose one of the environments.",
        ),
        (
            "phases out of promotion order",
            |p| {
                p["phases"][0]["environment"] = json!("prod");
                p["phases"][1]["environment"] = json!("stage");
            },
            "phases",
            "Phase 2: STAGE comes before the phase above it in the promotion order",
        ),
        (
            "empty entry criteria",
            |p| p["test_strategy"]["entry_criteria"] = json!("  "),
            "entry_criteria",
            "Entry criteria: say what it is.",
        ),
        (
            "a phase without criteria to abort",
            |p| p["phases"][2]["abort_criteria"] = json!(""),
            "phases",
            "Phase 3, criteria to abort: say what it is.",
        ),
        (
            "no phases",
            |p| p["phases"] = json!([]),
            "phases",
            "Plan at least one deployment phase.",
        ),
        (
            "an unknown test level",
            |p| p["test_strategy"]["levels"] = json!(["smoke"]),
            "test_levels",
            "'smoke' is not one of",
        ),
        (
            "a missing milestone",
            |p| {
                p["milestones"]
                    .as_object_mut()
                    .unwrap()
                    .remove("hypercare_end");
            },
            "hypercare_end",
            "Give the date and time of the end of hypercare",
        ),
    ];
    for (what, fault, field, message) in faults {
        let mut body = release_body("December release", &[&chg]);
        fault(&mut body);
        let resp = plan_release(&app, &c.rita, body).await;
        assert_eq!(
            resp.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{what}: {}",
            resp.body
        );
        assert_eq!(resp.problem_code(), "validation", "{what}");
        let errors = resp.json()["errors"].as_array().unwrap().clone();
        assert!(
            errors
                .iter()
                .any(|e| e["field"] == field && e["message"].as_str().unwrap().contains(message)),
            "{what}: expected {field}: {message:?} in {errors:?}"
        );
    }

    // Every fault at once, each named.
    let mut body = release_body("December release", &[&chg]);
    body["milestones"]["go_no_go"] = json!("2026-11-01T09:00:00Z");
    body["phases"][0]["environment"] = json!("qa");
    body["test_strategy"]["exit_criteria"] = json!("");
    body["rollback"]["steps"] = json!("");
    let resp = plan_release(&app, &c.rita, body).await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<String> = resp.json()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        fields,
        ["go_no_go", "exit_criteria", "phases", "rollback_steps"]
    );

    assert_eq!(release_rows(&app).await, 0, "nothing written");
    assert_eq!(count(&app, "SELECT count(*) FROM release_scope").await, 0);
    assert_eq!(
        count(&app, "SELECT count(*) FROM release_revisions").await,
        0
    );
    assert_eq!(app.audit_count().await, audit_before, "nothing recorded");

    // An edit with an invalid plan changes nothing either.
    let id = planned(&app, &c.rita, &[&chg]).await;
    let mut plan = release_plan("December release");
    plan["milestones"]["hypercare_end"] = json!("2026-11-30T09:00:00Z");
    let resp = app
        .api(
            Method::PUT,
            &format!("/api/v1/releases/{id}"),
            Some(&c.rita.token),
            Some(json!({"revision": 1, "plan": plan})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.json()["field"], "hypercare_end");
    assert_eq!(stored(&app, &id).await, ("draft".to_owned(), 1));
    assert_eq!(
        count(&app, "SELECT count(*) FROM release_revisions").await,
        1
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_change_goes_out_with_one_release_at_a_time(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let chg = approved_key(&app, &c.erin, &c.carol).await;
    let first = planned(&app, &c.rita, &[&chg]).await;
    let audit_before = app.audit_count().await;

    let resp = plan_release(&app, &c.rita, release_body("January release", &[&chg])).await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    assert_eq!(resp.json()["field"], "changes");
    assert!(
        resp.json()["detail"].as_str().unwrap().contains(&format!(
            "{chg} is already in release REL-1 (December release)"
        )),
        "{}",
        resp.body
    );
    assert_eq!(
        release_rows(&app).await,
        1,
        "the second release was not planned"
    );

    // Nor is it added to another one's scope. The refused plans took no
    // number: the next release is REL-2.
    let other = planned(&app, &c.rita, &[]).await;
    let number: i64 = sqlx::query_scalar("SELECT number FROM releases WHERE id = $1::uuid")
        .bind(&other)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(number, 2);
    let resp = release_action(
        &app,
        &c.rita,
        &other,
        "changes",
        Some(json!({"revision": 1, "change": chg, "reason": "It belongs here too."})),
    )
    .await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    assert_eq!(resp.json()["field"], "changes");
    assert_eq!(stored(&app, &other).await, ("draft".to_owned(), 1));
    assert_eq!(
        get_release(&app, &c.rita, &first).await["scope"][0]["key"],
        chg
    );
    // Only the second release's creation was recorded.
    assert_eq!(
        events(&app, "release.created").await.len(),
        2,
        "{:?}",
        app.audit_events().await
    );
    assert_eq!(app.audit_count().await, audit_before + 1);

    // A closed change goes out with none.
    let withdrawn = app.open_change(&c.erin).await;
    app.change_action(&c.erin, &withdrawn, "submit", None).await;
    let resp = app
        .change_action(&c.erin, &withdrawn, "withdraw", None)
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let key = change_key(&app, &c.erin, &withdrawn).await;
    let resp = plan_release(&app, &c.rita, release_body("February release", &[&key])).await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    assert_eq!(resp.json()["field"], "changes");

    // A change named twice is refused as such.
    let twice = approved_key(&app, &c.erin, &c.carol).await;
    let resp = plan_release(&app, &c.rita, release_body("Twice", &[&twice, &twice])).await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    assert!(
        resp.json()["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("{twice} is named twice")),
        "{}",
        resp.body
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_go_no_go_needs_the_riskiest_changes_quorum_each_member_once(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let carl = app.api_login("carl", &[Role::CabMember]).await;
    let dave = app.api_login("dave", &[Role::CabMember]).await;
    let low = approved_key(&app, &c.erin, &c.carol).await;
    // Medium risk (2 × 2): two approvals.
    let medium = app.submitted_change(&c.erin, 2, 2, "normal").await;
    app.vote(&c.carol, &medium, "approve", "").await;
    let resp = app.vote(&carl, &medium, "approve", "").await;
    assert_eq!(resp.json()["state"], "approved", "{}", resp.body);
    let medium = change_key(&app, &c.erin, &medium).await;

    let id = in_review(&app, &c.rita, &[&low, &medium]).await;
    let release = get_release(&app, &c.erin, &id).await;
    assert_eq!(release["risk_level"], "medium");
    assert_eq!(release["still_needed"], json!(["2 more CAB approvals"]));

    // One member approving twice is one approval.
    for _ in 0..2 {
        let resp = release_vote(&app, &dave, &id, "approve", "").await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
        assert_eq!(resp.json()["state"], "in_review");
        assert_eq!(resp.json()["still_needed"], json!(["1 more CAB approval"]));
    }
    let votes = get_release(&app, &c.erin, &id).await["votes"].clone();
    assert_eq!(votes.as_array().unwrap().len(), 1, "the latest vote each");
    assert_eq!(votes[0]["voter"], "dave");
    assert_eq!(votes[0]["counts"], true);
    assert!(events(&app, "release.approved").await.is_empty());

    let resp = release_vote(&app, &carl, &id, "approve", "Ready").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let release = resp.json();
    assert_eq!(release["state"], "approved");
    assert_eq!(release["still_needed"], json!([]));
    let approved = events(&app, "release.approved").await;
    assert_eq!(approved.len(), 1);
    assert_eq!(approved[0]["level"], "medium");
    assert_eq!(approved[0]["approvals"], 2);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM release_votes WHERE superseded_at IS NULL"
        )
        .await,
        2
    );

    // Decided: no more votes.
    let late = app.api_login("cleo", &[Role::CabMember]).await;
    let denials = app.denials().await.len();
    let resp = release_vote(&app, &late, &id, "reject", "Too late").await;
    assert_refused(
        &app,
        &resp,
        denials,
        "release.vote",
        "not_under_review",
        "This release is approved",
    )
    .await;
    assert_eq!(stored(&app, &id).await.0, "approved");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_release_waits_for_every_change_in_scope_to_be_approved(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let dave = app.api_login("dave", &[Role::CabMember]).await;
    let ready = approved_key(&app, &c.erin, &c.carol).await;
    let waiting = app.open_change(&c.erin).await;
    let resp = app.change_action(&c.erin, &waiting, "submit", None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let waiting_key = change_key(&app, &c.erin, &waiting).await;

    let id = in_review(&app, &c.rita, &[&ready, &waiting_key]).await;
    let resp = release_vote(&app, &dave, &id, "approve", "").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let release = resp.json();
    assert_eq!(release["state"], "in_review", "the vote alone does not do");
    assert_eq!(
        release["still_needed"],
        json!([format!(
            "approval of every change in scope ({waiting_key} not yet approved)"
        )])
    );
    let scope = release["scope"].as_array().unwrap();
    assert_eq!(scope[1]["key"], waiting_key);
    assert_eq!(scope[1]["approved"], false);
    let list = app
        .api(
            Method::GET,
            "/api/v1/releases?state=in_review",
            Some(&c.erin.token),
            None,
        )
        .await
        .json();
    assert_eq!(list[0]["still_needed"], release["still_needed"]);
    assert!(events(&app, "release.approved").await.is_empty());

    // The change's approval completes the go/no-go.
    let resp = app.vote(&c.carol, &waiting, "approve", "").await;
    assert_eq!(resp.json()["state"], "approved", "{}", resp.body);
    let release = get_release(&app, &c.erin, &id).await;
    assert_eq!(release["state"], "approved");
    assert_eq!(release["still_needed"], json!([]));
    let approved = events(&app, "release.approved").await;
    assert_eq!(approved.len(), 1);
    assert_eq!(approved[0]["completed_by"], waiting_key);
    assert_eq!(approved[0]["release"], "REL-1");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_no_go_returns_the_plan_to_draft(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let dave = app.api_login("dave", &[Role::CabMember]).await;
    let chg = approved_key(&app, &c.erin, &c.carol).await;
    let id = in_review(&app, &c.rita, &[&chg]).await;

    // A reject needs a comment.
    let resp = release_vote(&app, &dave, &id, "reject", " ").await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.json()["field"], "comment");
    let resp = release_vote(&app, &dave, &id, "ship it", "").await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.json()["field"], "choice");
    assert_eq!(vote_rows(&app).await, 0);

    let resp = release_vote(&app, &dave, &id, "reject", "The rollback is untested.").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["state"], "draft");
    assert_eq!(resp.json()["still_needed"], json!([]));
    let returned = events(&app, "release.returned").await;
    assert_eq!(returned.len(), 1);
    assert_eq!(returned[0]["reason"], "No-go: a CAB member rejected it.");
    assert!(events(&app, "release.approved").await.is_empty());

    // Resubmitted unchanged, the no-go would only stand: it is refused, and
    // recorded, until the plan is revised.
    let before = app.audit_count().await;
    let resp = release_action(&app, &c.rita, &id, "submit", None).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert_eq!(resp.problem_code(), "revise_first");
    assert!(
        resp.json()["detail"]
            .as_str()
            .unwrap()
            .contains("revision 1"),
        "{}",
        resp.body
    );
    assert_eq!(app.audit_count().await, before + 1);
    assert_eq!(app.denials().await.last().unwrap().0, "release.submit");
    let state: String = sqlx::query_scalar("SELECT state FROM releases WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(state, "draft");

    // A request for changes returns it too, once revised and resubmitted.
    let mut plan = release_plan("December release");
    plan["rollback"]["steps"] = json!("Redeploy the previous artifacts; rehearsed on STAGE.");
    let resp = app
        .api(
            Method::PUT,
            &format!("/api/v1/releases/{id}"),
            Some(&c.rita.token),
            Some(json!({"revision": 1, "plan": plan})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["state"], "draft");
    let resp = release_action(&app, &c.rita, &id, "submit", None).await;
    assert_eq!(resp.json()["state"], "in_review", "{}", resp.body);
    let resp = release_vote(
        &app,
        &c.carol,
        &id,
        "request_changes",
        "Name the dashboards.",
    )
    .await;
    assert_eq!(resp.json()["state"], "draft", "{}", resp.body);
    let returned = events(&app, "release.returned").await;
    assert_eq!(returned.len(), 2);
    assert_eq!(
        returned[1]["reason"],
        "A CAB member requested changes to the plan."
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn editing_an_approved_plan_voids_the_approval(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let dave = app.api_login("dave", &[Role::CabMember]).await;
    let chg = approved_key(&app, &c.erin, &c.carol).await;
    let id = in_review(&app, &c.rita, &[&chg]).await;
    let resp = release_vote(&app, &dave, &id, "approve", "").await;
    assert_eq!(resp.json()["state"], "approved", "{}", resp.body);

    let mut plan = release_plan("December release");
    plan["milestones"]["deployment"] = json!("2026-12-02T09:00:00Z");
    let resp = app
        .api(
            Method::PUT,
            "/api/v1/releases/REL-1",
            Some(&c.rita.token),
            Some(json!({"revision": 1, "plan": plan})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let edited = resp.json();
    assert_eq!(edited["approval_voided"], true);
    assert_eq!(edited["state"], "in_review");
    assert_eq!(edited["revision"], 2);
    assert_eq!(
        edited["votes"],
        json!([]),
        "the earlier votes no longer count"
    );
    assert_eq!(edited["still_needed"], json!(["1 more CAB approval"]));
    assert_eq!(
        edited["plan"]["milestones"]["deployment"],
        "2026-12-02T09:00:00Z"
    );
    let voided = events(&app, "release.approval_voided").await;
    assert_eq!(voided.len(), 1);
    assert_eq!(voided[0]["approved_revision"], 1);
    assert_eq!(voided[0]["revision"], 2);
    let revisions = app
        .api(
            Method::GET,
            &format!("/api/v1/releases/{id}/revisions"),
            Some(&c.erin.token),
            None,
        )
        .await
        .json();
    assert_eq!(revisions[1]["diff"][0]["field"], "deployment");
    assert_eq!(revisions[1]["author"], "rita");
    // The vote on revision 1 is kept, but no longer counts.
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM release_votes WHERE revision = 1"
        )
        .await,
        1
    );

    // An edit in review changes nothing of the state.
    let mut again = release_plan("December release");
    again["milestones"]["deployment"] = json!("2026-12-03T09:00:00Z");
    let resp = app
        .api(
            Method::PUT,
            &format!("/api/v1/releases/{id}"),
            Some(&c.rita.token),
            Some(json!({"revision": 2, "plan": again})),
        )
        .await;
    assert_eq!(resp.json()["approval_voided"], false);
    assert_eq!(resp.json()["state"], "in_review");
    // The same plan again is no revision.
    let resp = app
        .api(
            Method::PUT,
            &format!("/api/v1/releases/{id}"),
            Some(&c.rita.token),
            Some(json!({"revision": 3, "plan": release_plan_with_deployment("2026-12-03T09:00:00Z")})),
        )
        .await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    assert_eq!(resp.json()["field"], "plan");

    let resp = release_vote(&app, &dave, &id, "approve", "").await;
    assert_eq!(resp.json()["state"], "approved", "{}", resp.body);
    assert_eq!(events(&app, "release.approved").await.len(), 2);
}

fn release_plan_with_deployment(at: &str) -> Value {
    let mut plan = release_plan("December release");
    plan["milestones"]["deployment"] = json!(at);
    plan
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn adding_and_removing_changes_makes_revisions(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let dave = app.api_login("dave", &[Role::CabMember]).await;
    let first = approved_key(&app, &c.erin, &c.carol).await;
    let second = approved_key(&app, &c.erin, &c.carol).await;
    let id = in_review(&app, &c.rita, &[&first]).await;
    let resp = release_vote(&app, &dave, &id, "approve", "").await;
    assert_eq!(resp.json()["state"], "approved", "{}", resp.body);

    // A reason of a few words is required.
    let resp = release_action(
        &app,
        &c.rita,
        &id,
        "changes",
        Some(json!({"revision": 1, "change": second, "reason": "x"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.json()["field"], "reason");

    // Adding to an approved plan voids the approval.
    let resp = release_action(
        &app,
        &c.rita,
        &id,
        "changes",
        Some(json!({"revision": 1, "change": second, "reason": "The proxy needs it."})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let added = resp.json();
    assert_eq!(added["revision"], 2);
    assert_eq!(added["approval_voided"], true);
    assert_eq!(added["state"], "in_review");
    let keys: Vec<&str> = added["scope"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, [first.as_str(), second.as_str()]);
    assert_eq!(added["scope"][1]["added_reason"], "The proxy needs it.");
    assert_eq!(added["scope"][1]["added_by"], "rita");

    let resp = release_action(
        &app,
        &c.rita,
        &id,
        &format!("changes/{first}/remove"),
        Some(json!({"revision": 2, "reason": "It went out by itself."})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let removed = resp.json();
    assert_eq!(removed["revision"], 3);
    assert_eq!(removed["approval_voided"], false);
    assert_eq!(removed["scope"].as_array().unwrap().len(), 1);
    assert_eq!(removed["removed"][0]["key"], first);
    assert_eq!(removed["removed"][0]["reason"], "It went out by itself.");
    assert_eq!(removed["removed"][0]["removed_by"], "rita");

    // A change not in the release is not removed.
    let resp = release_action(
        &app,
        &c.rita,
        &id,
        &format!("changes/{first}/remove"),
        Some(json!({"revision": 3, "reason": "Once more, by mistake."})),
    )
    .await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    assert_eq!(resp.json()["field"], "changes");

    let resp = app
        .api(
            Method::GET,
            &format!("/api/v1/releases/{id}/revisions"),
            Some(&c.erin.token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let revisions = resp.json();
    let revisions = revisions.as_array().unwrap();
    assert_eq!(revisions.len(), 3);
    assert_eq!(revisions[0]["number"], 1);
    assert_eq!(revisions[0]["diff"], json!([]));
    assert_eq!(revisions[0]["scope"], json!([first]));
    assert_eq!(revisions[1]["number"], 2);
    assert_eq!(revisions[1]["author"], "rita");
    assert_eq!(
        revisions[1]["note"],
        format!("Added {second}: The proxy needs it.")
    );
    assert_eq!(
        revisions[1]["diff"],
        json!([{"field": "scope", "before": first, "after": format!("{first}, {second}")}])
    );
    assert_eq!(revisions[2]["scope"], json!([second]));
    assert_eq!(
        revisions[2]["diff"],
        json!([{"field": "scope", "before": format!("{first}, {second}"), "after": second}])
    );
    assert_eq!(
        revisions[2]["note"],
        format!("Removed {first}: It went out by itself.")
    );
    assert_eq!(events(&app, "release.edited").await.len(), 2);

    // The change that left is free for another release.
    let resp = plan_release(&app, &c.rita, release_body("Hotfix release", &[&first])).await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_release_without_changes_is_not_submitted(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let id = planned(&app, &c.rita, &[]).await;
    let audit_before = app.audit_count().await;
    let resp = release_action(&app, &c.rita, &id, "submit", None).await;
    assert_refused(
        &app,
        &resp,
        0,
        "release.submit",
        "empty_scope",
        "A release goes to review with at least one change in its scope.",
    )
    .await;
    assert_eq!(stored(&app, &id).await, ("draft".to_owned(), 1));
    assert!(events(&app, "release.submitted").await.is_empty());
    assert_eq!(app.audit_count().await, audit_before + 1);

    // Nor by anyone but a release manager.
    let chg = approved_key(&app, &c.erin, &c.carol).await;
    let id = planned(&app, &c.rita, &[&chg]).await;
    let resp = release_action(&app, &c.erin, &id, "submit", None).await;
    assert_refused(
        &app,
        &resp,
        1,
        "release.submit",
        "release_manager_required",
        "Only release managers and administrators plan and run releases.",
    )
    .await;
    assert_eq!(stored(&app, &id).await, ("draft".to_owned(), 1));
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn cancelling_a_release_frees_its_changes(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let chg = approved_key(&app, &c.erin, &c.carol).await;
    let id = in_review(&app, &c.rita, &[&chg]).await;

    // Not by an engineer, and not without a reason.
    let resp = release_action(
        &app,
        &c.erin,
        &id,
        "cancel",
        Some(json!({"reason": "I would rather not."})),
    )
    .await;
    assert_refused(
        &app,
        &resp,
        0,
        "release.cancel",
        "release_manager_required",
        "Only release managers",
    )
    .await;
    let resp = release_action(&app, &c.rita, &id, "cancel", Some(json!({"reason": ""}))).await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.json()["field"], "reason");
    assert_eq!(stored(&app, &id).await.0, "in_review");

    let resp = release_action(
        &app,
        &c.rita,
        &id,
        "cancel",
        Some(json!({"reason": "The vendor slipped a month."})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let cancelled = resp.json();
    assert_eq!(cancelled["state"], "cancelled");
    assert!(cancelled["closed_at"].is_string());
    assert_eq!(cancelled["scope"], json!([]));
    assert_eq!(cancelled["removed"][0]["key"], chg);
    assert_eq!(
        cancelled["removed"][0]["reason"],
        "The release was cancelled."
    );
    let events = events(&app, "release.cancelled").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["scope"], json!([chg]));

    // Once over, nothing more happens to it.
    let denials = app.denials().await.len();
    let resp = release_action(
        &app,
        &c.rita,
        &id,
        "cancel",
        Some(json!({"reason": "Cancelled twice."})),
    )
    .await;
    assert_refused(
        &app,
        &resp,
        denials,
        "release.cancel",
        "release_closed",
        "This release is cancelled; nothing more happens to it.",
    )
    .await;

    let resp = plan_release(&app, &c.rita, release_body("January release", &[&chg])).await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    assert_eq!(resp.json()["scope"][0]["key"], chg);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn two_servers_asked_at_once_approve_a_release_once(pool: PgPool) {
    let first = TestApp::new(pool.clone()).await;
    let c = first.cast().await;
    let carl = first.api_login("carl", &[Role::CabMember]).await;
    let dave = first.api_login("dave", &[Role::CabMember]).await;
    let dora = first.api_login("dora", &[Role::CabMember]).await;
    // Medium risk: the go/no-go needs both members' approvals.
    let change = first.submitted_change(&c.erin, 2, 2, "normal").await;
    first.vote(&c.carol, &change, "approve", "").await;
    let resp = first.vote(&carl, &change, "approve", "").await;
    assert_eq!(resp.json()["state"], "approved", "{}", resp.body);
    let chg = change_key(&first, &c.erin, &change).await;
    // A second server on the same database.
    let second = TestApp::new(pool).await;
    for round in 1..=3 {
        let id = in_review(&first, &c.rita, &[&chg]).await;
        let vote = json!({"choice": "approve", "revision": 1});
        let (a, b) = tokio::join!(
            release_action(&first, &dave, &id, "votes", Some(vote.clone())),
            release_action(&second, &dora, &id, "votes", Some(vote.clone())),
        );
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(b.status, StatusCode::OK, "{}", b.body);
        let states = [a.json()["state"].clone(), b.json()["state"].clone()];
        assert!(
            states.contains(&json!("approved")),
            "the later vote approves: {states:?}"
        );
        assert_eq!(stored(&first, &id).await.0, "approved");
        assert_eq!(
            events(&first, "release.approved").await.len(),
            round,
            "approved exactly once"
        );
        // Free the change for the next round.
        let resp = release_action(
            &first,
            &c.rita,
            &id,
            "cancel",
            Some(json!({"reason": "Round over, plan the next."})),
        )
        .await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    }
    assert_eq!(vote_rows(&first).await, 6);
    assert!(first.denials().await.is_empty());
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_retried_plan_answers_the_same_release(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let chg = approved_key(&app, &c.erin, &c.carol).await;
    let body = release_body("December release", &[&chg]).to_string();
    let send = |body: String| {
        let app = &app;
        let token = c.rita.token.clone();
        async move {
            let req = Request::builder()
                .method(Method::POST)
                .uri("/api/v1/releases")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, "application/json")
                .header("idempotency-key", "plan-december-release")
                .body(Body::from(body))
                .unwrap();
            app.send(req).await
        }
    };
    let a = send(body.clone()).await;
    let b = send(body).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(b.status, StatusCode::CREATED, "{}", b.body);
    assert_eq!(a.header("idempotent-replayed"), None);
    assert_eq!(b.header("idempotent-replayed"), Some("true"));
    assert_eq!(a.body, b.body, "the first answer, byte for byte");
    assert_eq!(a.header("location"), b.header("location"));
    assert_eq!(release_rows(&app).await, 1);
    assert_eq!(events(&app, "release.created").await.len(), 1);

    // The answer lost with the server: the release as it is now.
    let lost = sqlx::query(
        "UPDATE idempotency_keys
            SET response_status = NULL, response_type = NULL, response_location = NULL,
                response_body = NULL, answered_at = NULL,
                created_at = created_at - interval '1 minute'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(lost.rows_affected(), 1);
    let c2 = send(release_body("December release", &[&chg]).to_string()).await;
    assert_eq!(c2.status, StatusCode::CREATED, "{}", c2.body);
    assert_eq!(c2.header("idempotent-replayed"), Some("true"));
    assert_eq!(c2.json()["id"], a.json()["id"]);
    assert_eq!(c2.header("location"), a.header("location"));
    assert_eq!(release_rows(&app).await, 1);

    // Another body under the same key is refused.
    let d = send(release_body("January release", &[&chg]).to_string()).await;
    assert_eq!(d.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(d.problem_code(), "idempotency_key_reused");
    assert_eq!(release_rows(&app).await, 1);
}
