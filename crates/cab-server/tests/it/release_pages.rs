//! Release plans in the browser: the list, the plan form, the release page.
//! A release manager plans a release through the form (an error first,
//! beside its field), submits it, and two CAB members approve it through
//! the vote form, every page passing axe-core and fitting a phone. From the
//! attacker's side: an engineer who posts the plan form is refused and
//! nothing is written but the refusal; the plan's author who posts the vote
//! form is refused and no vote is kept. An edit of an approved plan says
//! that the approval is void; unreadable input comes back beside its field.

use axum::http::StatusCode;
use cab_domain::Role;
use chrono::{Duration, DurationRound, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::browser::{Browser, sign_in};
use crate::changes::complete_change;
use crate::cli::{add_user, start_server};
use crate::common::{ApiClient, BrowserSession, TestApp, TestResponse};

/// A moment `hours` from now, to the minute, as a `datetime-local` value.
fn at(hours: i64) -> String {
    (Utc::now() + Duration::hours(hours))
        .duration_trunc(Duration::minutes(1))
        .unwrap()
        .format("%Y-%m-%dT%H:%M")
        .to_string()
}

/// A complete plan as the form posts it, with these changes in scope.
fn plan_form(csrf: &str, changes: &str) -> Vec<(String, String)> {
    let fields: Vec<(&str, String)> = vec![
        ("_csrf", csrf.into()),
        ("name", "Winter platform release".into()),
        ("version", "2026.12.1".into()),
        ("code_freeze", at(24)),
        ("go_no_go", at(48)),
        ("deployment", at(72)),
        ("hypercare_end", at(240)),
        ("test_levels", "integration".into()),
        ("test_levels", "acceptance".into()),
        (
            "entry_criteria",
            "Every change approved; builds green.".into(),
        ),
        (
            "exit_criteria",
            "No open blocker after a day on STAGE.".into(),
        ),
        ("evidence", "https://ci.example.com/runs/7".into()),
        ("phase_1_environment", "stage".into()),
        ("phase_1_target", "All of STAGE".into()),
        ("phase_1_soak", "60".into()),
        (
            "phase_1_proceed",
            "Error rate below 0.1% for an hour.".into(),
        ),
        ("phase_1_abort", "Any failed health check.".into()),
        ("phase_2_environment", "prod".into()),
        ("phase_2_target", "10% of traffic".into()),
        ("phase_2_soak", "120".into()),
        ("phase_2_proceed", "Latency within 5% of last week.".into()),
        ("phase_2_abort", "Error budget burn above 2x.".into()),
        ("phase_3_environment", String::new()),
        ("phase_3_target", String::new()),
        ("rollback_triggers", "A failed abort criterion.".into()),
        ("rollback_steps", "Redeploy the previous artifacts.".into()),
        ("rollback_max_minutes", "30".into()),
        ("comm_1_audience", "Customer support".into()),
        ("comm_1_channel", "Email".into()),
        ("comm_1_when", at(60)),
        (
            "comm_1_message",
            "The winter release goes out on Thursday.".into(),
        ),
        ("changes", changes.into()),
        ("reason", "They ship the winter platform together.".into()),
    ];
    fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The plan's fields with some replaced (the first of each name).
fn with(mut form: Vec<(String, String)>, changes: &[(&str, &str)]) -> Vec<(String, String)> {
    for (k, v) in changes {
        match form.iter_mut().find(|(name, _)| name == k) {
            Some(field) => field.1 = (*v).to_owned(),
            None => form.push(((*k).to_owned(), (*v).to_owned())),
        }
    }
    form
}

async fn post(
    app: &TestApp,
    uri: &str,
    s: &BrowserSession,
    form: &[(String, String)],
) -> TestResponse {
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    app.post_form(uri, Some(&s.cookie), &pairs).await
}

/// The page a redirect leads to, with the notice it left.
async fn followed(app: &TestApp, s: &BrowserSession, resp: &TestResponse) -> TestResponse {
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    let to = resp.header("location").unwrap().to_owned();
    let cookie = match resp.cookie("cab_notice") {
        Some(n) => format!("{}; cab_notice={n}", s.cookie),
        None => s.cookie.clone(),
    };
    let page = app.get_page(&to, Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page
}

/// The notice a page shows, as written in its HTML.
fn notice(html: &str) -> &str {
    let start = html.find("id=\"notice\">").expect("a notice") + "id=\"notice\">".len();
    &html[start..start + html[start..].find("</p>").unwrap()]
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap()
}

/// The people of a release: an engineer who wrote the change in it, two CAB
/// members who approved the change, and a release manager (who is a CAB
/// member too) who plans it. The change, medium risk, is approved.
struct Cast {
    erin: ApiClient,
    carol: BrowserSession,
    dave: BrowserSession,
    rita: BrowserSession,
}

async fn cast(app: &TestApp) -> Cast {
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let dave = app.api_login("dave", &[Role::CabMember]).await;
    let id = app.submitted_change(&erin, 2, 2, "normal").await;
    for member in [&carol, &dave] {
        let resp = app.vote(member, &id, "approve", "").await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    }
    assert_eq!(app.change_row(&id).await.0, "approved");
    let carol = app
        .browser_login_with(carol.user.clone(), "carol-correct-horse-battery")
        .await;
    let dave = app
        .browser_login_with(dave.user.clone(), "dave-correct-horse-battery")
        .await;
    let rita = app
        .browser_login("rita", &[Role::ReleaseManager, Role::CabMember])
        .await;
    Cast {
        erin,
        carol,
        dave,
        rita,
    }
}

/// Rita plans REL-1 with CHG-1 through the form and submits it.
async fn planned_and_submitted(app: &TestApp, c: &Cast) -> String {
    let resp = post(
        app,
        "/releases/new",
        &c.rita,
        &plan_form(&c.rita.csrf, "CHG-1"),
    )
    .await;
    assert_eq!(
        resp.header("location"),
        Some("/releases/REL-1"),
        "{}",
        resp.body
    );
    let page = followed(app, &c.rita, &resp).await;
    assert_eq!(
        notice(&page.body),
        "REL-1 is planned as a draft. Submit it for CAB&#39;s go/no-go when the plan is complete."
    );
    let resp = post(
        app,
        "/releases/REL-1/submit",
        &c.rita,
        &[("_csrf".into(), c.rita.csrf.clone())],
    )
    .await;
    let page = followed(app, &c.rita, &resp).await;
    assert!(
        notice(&page.body).starts_with("REL-1 is submitted"),
        "{}",
        page.body
    );
    assert!(page.body.contains("id=\"release-state\">In review</span>"));
    "/releases/REL-1".into()
}

/// A CAB member approves the revision through the vote form.
async fn approve(app: &TestApp, s: &BrowserSession, revision: &str) -> TestResponse {
    let form = vec![
        ("_csrf".to_owned(), s.csrf.clone()),
        ("vote".to_owned(), "approve".to_owned()),
        ("revision".to_owned(), revision.to_owned()),
        ("comment".to_owned(), String::new()),
    ];
    let resp = post(app, "/releases/REL-1/votes", s, &form).await;
    followed(app, s, &resp).await
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_engineer_posting_the_plan_form_is_refused_and_only_the_refusal_is_written(
    pool: PgPool,
) {
    let app = TestApp::new(pool).await;
    let erin = app.browser_login("erin", &[Role::Engineer]).await;
    let list = app.get_page("/releases", Some(&erin.cookie)).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(
        !list.body.contains("id=\"plan-release\""),
        "offered: {}",
        list.body
    );
    assert!(
        list.body
            .contains("<a href=\"/releases\" aria-current=\"page\">Releases</a>")
    );

    let resp = post(&app, "/releases/new", &erin, &plan_form(&erin.csrf, "")).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert!(
        resp.body
            .contains("Only release managers and administrators plan and run releases."),
        "{}",
        resp.body
    );
    assert!(
        resp.body
            .contains("<a href=\"/releases\" id=\"error-back\">Back to the releases</a>")
    );
    assert_eq!(count(&app, "SELECT count(*) FROM releases").await, 0);
    assert_eq!(
        count(&app, "SELECT count(*) FROM release_revisions").await,
        0
    );
    assert_eq!(
        app.denials().await,
        [(
            "release.create".to_owned(),
            "release_manager_required".to_owned()
        )]
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_plans_author_posting_the_vote_form_is_refused_and_no_vote_is_kept(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = cast(&app).await;
    let page = planned_and_submitted(&app, &c).await;

    // The page offers her no vote form; she posts one anyway.
    let shown = app.get_page(&page, Some(&c.rita.cookie)).await;
    assert!(!shown.body.contains("id=\"vote-form\""));
    let form = vec![
        ("_csrf".to_owned(), c.rita.csrf.clone()),
        ("vote".to_owned(), "approve".to_owned()),
        ("revision".to_owned(), "1".to_owned()),
    ];
    let resp = post(&app, "/releases/REL-1/votes", &c.rita, &form).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert!(
        resp.body.contains(
            "You wrote or edited this release plan, so you cannot vote on it; other CAB members decide."
        ),
        "{}",
        resp.body
    );
    assert!(resp.body.contains("id=\"refusal\""));
    assert!(resp.body.contains("id=\"release-state\">In review</span>"));
    assert_eq!(count(&app, "SELECT count(*) FROM release_votes").await, 0);
    let refused: Vec<_> = app
        .denials()
        .await
        .into_iter()
        .filter(|(attempted, _)| attempted == "release.vote")
        .collect();
    assert_eq!(
        refused,
        [("release.vote".to_owned(), "self_approval".to_owned())]
    );

    // The engineer who wrote the change in it is refused too.
    let erin = app
        .browser_login_with(c.erin.user.clone(), "erin-correct-horse-battery")
        .await;
    let form = vec![
        ("_csrf".to_owned(), erin.csrf.clone()),
        ("vote".to_owned(), "approve".to_owned()),
        ("revision".to_owned(), "1".to_owned()),
    ];
    let resp = post(&app, "/releases/REL-1/votes", &erin, &form).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert!(
        resp.body
            .contains("You wrote or contributed to a change in this release")
    );
    assert_eq!(count(&app, "SELECT count(*) FROM release_votes").await, 0);

    // The audit trail names the release and leads to it.
    let audrey = app.browser_login("audrey", &[Role::Auditor]).await;
    let trail = app.get_page("/audit", Some(&audrey.cookie)).await;
    assert!(
        trail.body.contains(
            "tried to vote on <a href=\"/releases/REL-1\">release REL-1</a> and was refused: You wrote or edited this release plan"
        ),
        "{}",
        trail.body
    );
    assert!(trail.body.contains(
        "planned release <a href=\"/releases/REL-1\">REL-1 Winter platform release 2026.12.1</a>."
    ));

    // The list says where it stands, and filters by state in the URL.
    let list = app
        .get_page("/releases?state=in_review", Some(&c.carol.cookie))
        .await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("<a href=\"/releases/REL-1\">REL-1</a>"));
    assert!(list.body.contains("In review"));
    assert!(list.body.contains("2 more CAB approvals"), "{}", list.body);
    let list = app
        .get_page("/releases?state=approved", Some(&c.carol.cookie))
        .await;
    assert!(!list.body.contains("REL-1"));
    let list = app
        .get_page("/releases?state=soon", Some(&c.carol.cookie))
        .await;
    assert_eq!(list.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(list.body.contains("id=\"state-error\""));
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_edit_of_an_approved_plan_says_the_approval_is_void(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = cast(&app).await;
    let page = planned_and_submitted(&app, &c).await;

    let shown = app.get_page(&page, Some(&c.carol.cookie)).await;
    assert!(shown.body.contains("id=\"vote-form\""));
    let after = approve(&app, &c.carol, "1").await;
    assert_eq!(
        notice(&after.body),
        "Your vote to approve revision 1 of REL-1 is recorded."
    );
    let after = approve(&app, &c.dave, "1").await;
    assert_eq!(
        notice(&after.body),
        "Your vote to approve revision 1 of REL-1 is recorded. REL-1 is approved: the release manager can start it."
    );
    assert!(after.body.contains("id=\"release-state\">Approved</span>"));

    // The edit form holds the plan as it is, and the revision it was read at.
    let form = app
        .get_page("/releases/REL-1/edit", Some(&c.rita.cookie))
        .await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    assert!(
        form.body
            .contains("<input type=\"hidden\" name=\"revision\" value=\"1\">")
    );
    assert!(form.body.contains("value=\"Winter platform release\""));
    assert!(form.body.contains("saving voids CAB's approval"));

    let edited = with(
        plan_form(&c.rita.csrf, ""),
        &[
            ("name", "Winter platform release, second wave"),
            ("revision", "1"),
        ],
    );
    let resp = post(&app, "/releases/REL-1/edit", &c.rita, &edited).await;
    let page = followed(&app, &c.rita, &resp).await;
    assert_eq!(
        notice(&page.body),
        "Revision 2 saved. CAB&#39;s approval of revision 1 is void: the plan needs a new go/no-go."
    );
    assert!(page.body.contains("id=\"release-state\">In review</span>"));
    assert!(
        page.body
            .contains("<td class=\"after\">Winter platform release, second wave</td>")
    );
    assert!(page.body.contains("On an earlier revision: does not count"));
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_events WHERE action = 'release.approval_voided'"
        )
        .await,
        1
    );

    // The same form again, read at revision 1: refused, the input kept.
    let again = with(edited, &[("name", "Winter platform release, third wave")]);
    let resp = post(&app, "/releases/REL-1/edit", &c.rita, &again).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert!(
        resp.body
            .contains("You read revision 1, but the release plan is now at revision 2")
    );
    assert!(
        resp.body
            .contains("value=\"Winter platform release, third wave\"")
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn unreadable_dates_and_numbers_come_back_beside_their_fields(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let rita = app.browser_login("rita", &[Role::ReleaseManager]).await;
    let form = with(
        plan_form(&rita.csrf, ""),
        &[
            ("version", "the winter one"),
            ("go_no_go", "next Tuesday"),
            ("phase_2_soak", "two hours"),
            ("rollback_max_minutes", "half an hour"),
        ],
    );
    let resp = post(&app, "/releases/new", &rita, &form).await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    let html = &resp.body;
    for (field, label) in [
        ("version", "Version"),
        ("go_no_go", "Go/no-go"),
        ("phases", "Deployment phases"),
        ("rollback_max_minutes", "Longest rollback"),
    ] {
        assert!(
            html.contains(&format!("<a href=\"#{field}\">{label}: ")),
            "{field} not in the summary: {html}"
        );
        assert!(
            html.contains(&format!("<p class=\"field-error\" id=\"{field}-error\">")),
            "{field} has no message beside it"
        );
    }
    assert!(html.contains("Phase 2: give the soak time in whole minutes"));
    assert!(html.contains(
        "<input id=\"go_no_go\" name=\"go_no_go\" type=\"datetime-local\" value=\"next Tuesday\" aria-invalid=\"true\" aria-describedby=\"go_no_go-error\">"
    ));
    // Everything typed is kept.
    assert!(html.contains("value=\"two hours\""));
    assert!(html.contains("value=\"Winter platform release\""));
    assert!(html.contains("They ship the winter platform together."));
    assert_eq!(count(&app, "SELECT count(*) FROM releases").await, 0);
    // A change that does not exist is named beside the scope.
    let resp = post(
        &app,
        "/releases/new",
        &rita,
        &plan_form(&rita.csrf, "CHG-99"),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        resp.body
            .contains("<p class=\"field-error\" id=\"changes-error\">There is no change")
    );
    assert_eq!(count(&app, "SELECT count(*) FROM releases").await, 0);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_scope_the_phases_and_the_end_of_a_release_through_the_page_forms(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = cast(&app).await;
    let resp = post(
        &app,
        "/releases/new",
        &c.rita,
        &plan_form(&c.rita.csrf, "CHG-1"),
    )
    .await;
    followed(&app, &c.rita, &resp).await;
    // A second change, CHG-2, submitted.
    app.submitted_change(&c.erin, 1, 1, "normal").await;
    let csrf = || ("_csrf".to_owned(), c.rita.csrf.clone());
    let field = |k: &str, v: &str| (k.to_owned(), v.to_owned());

    // A reason too short to say anything: beside its field, the input kept.
    let form = vec![
        csrf(),
        field("change", "CHG-2"),
        field("reason", "x"),
        field("revision", "1"),
    ];
    let resp = post(&app, "/releases/REL-1/changes", &c.rita, &form).await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    assert!(resp.body.contains("<a href=\"#add_reason\">Why it joins: "));
    assert!(
        resp.body
            .contains("<p class=\"field-error\" id=\"add_reason-error\">")
    );
    assert!(resp.body.contains("value=\"CHG-2\""));

    let form = vec![
        csrf(),
        field("change", "CHG-2"),
        field("reason", "It ships the same SDK."),
        field("revision", "1"),
    ];
    let resp = post(&app, "/releases/REL-1/changes", &c.rita, &form).await;
    let page = followed(&app, &c.rita, &resp).await;
    assert_eq!(notice(&page.body), "CHG-2 is added to REL-1 in revision 2.");
    let form = vec![
        csrf(),
        field("reason", "Not ready in time."),
        field("revision", "2"),
    ];
    let resp = post(&app, "/releases/REL-1/changes/CHG-2/remove", &c.rita, &form).await;
    let page = followed(&app, &c.rita, &resp).await;
    assert_eq!(
        notice(&page.body),
        "CHG-2 is taken out of REL-1 in revision 3."
    );
    assert!(page.body.contains("Not ready in time."));
    assert!(page.body.contains("Removed CHG-2: Not ready in time."));

    let resp = post(&app, "/releases/REL-1/submit", &c.rita, &[csrf()]).await;
    followed(&app, &c.rita, &resp).await;
    approve(&app, &c.carol, "3").await;
    let page = approve(&app, &c.dave, "3").await;
    assert!(page.body.contains("id=\"release-state\">Approved</span>"));

    // Started: phase 1 opens and waits for CHG-1 on STAGE.
    let page = app.get_page("/releases/REL-1", Some(&c.rita.cookie)).await;
    assert!(page.body.contains(">Start the release</button>"));
    let resp = post(&app, "/releases/REL-1/advance", &c.rita, &[csrf()]).await;
    let page = followed(&app, &c.rita, &resp).await;
    assert_eq!(notice(&page.body), "REL-1 has started: phase 1 is open.");
    assert!(
        page.body
            .contains("id=\"release-state\">In progress</span>")
    );
    assert!(page.body.contains(">Open phase 2</button>"));
    assert!(
        page.body
            .contains("CHG-1: <strong>not deployed yet</strong>")
    );
    // Too soon to go on: refused, every reason said, the refusal recorded.
    let resp = post(&app, "/releases/REL-1/advance", &c.rita, &[csrf()]).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert!(resp.body.contains("id=\"refusal\""));
    assert!(resp.body.contains("Phase 1 has not deployed CHG-1 yet."));
    assert!(app.denials().await.contains(&(
        "release.advance".to_owned(),
        "phase_not_deployed".to_owned()
    )));

    let form = vec![csrf(), field("reason", "Health checks fail on STAGE.")];
    let resp = post(&app, "/releases/REL-1/rollback", &c.rita, &form).await;
    let page = followed(&app, &c.rita, &resp).await;
    assert_eq!(
        notice(&page.body),
        "Phase 1 of REL-1 is rolled back; the phases after it do not open."
    );
    assert!(page.body.contains("id=\"rolled-back\""));
    assert!(page.body.contains("Health checks fail on STAGE."));
    assert!(!page.body.contains("id=\"advance-release\""));

    let form = vec![csrf(), field("reason", "no")];
    let resp = post(&app, "/releases/REL-1/cancel", &c.rita, &form).await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        resp.body
            .contains("<p class=\"field-error\" id=\"cancel_reason-error\">")
    );
    let form = vec![csrf(), field("reason", "Plan the fix in a new release.")];
    let resp = post(&app, "/releases/REL-1/cancel", &c.rita, &form).await;
    let page = followed(&app, &c.rita, &resp).await;
    assert!(notice(&page.body).starts_with("REL-1 is cancelled."));
    assert!(page.body.contains("id=\"release-state\">Cancelled</span>"));
    assert!(!page.body.contains("id=\"cancel-form\""));
}

/// A change by erin, medium risk, approved by carol and dave through the
/// API of the server at `url`.
async fn approved_change(url: &str) {
    let http = reqwest::Client::new();
    let token = |username: &'static str| {
        let http = http.clone();
        async move {
            let v: Value = http
                .post(format!("{url}/api/v1/auth/token"))
                .json(
                    &json!({"username": username, "password": format!("{username}-long-password")}),
                )
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["access_token"].as_str().unwrap().to_owned()
        }
    };
    let erin = token("erin").await;
    let mut body = complete_change("Rotate the edge certificates");
    body["risk"] = json!({"impact": 2, "likelihood": 2});
    let change: Value = http
        .post(format!("{url}/api/v1/changes"))
        .bearer_auth(&erin)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = change["id"].as_str().unwrap().to_owned();
    let submitted: Value = http
        .post(format!("{url}/api/v1/changes/{id}/submit"))
        .bearer_auth(&erin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let revision = submitted["revision"].as_i64().unwrap();
    let mut state = String::new();
    for member in ["carol", "dave"] {
        let t = token(member).await;
        let voted: Value = http
            .post(format!("{url}/api/v1/changes/{id}/votes"))
            .bearer_auth(&t)
            .json(&json!({"vote": "approve", "comment": "", "revision": revision, "acknowledge_conflicts": true}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        state = voted["state"].as_str().unwrap_or_default().to_owned();
    }
    assert_eq!(state, "approved");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_release_is_planned_submitted_and_approved_in_a_browser_and_every_page_passes_axe(
    pool: PgPool,
) {
    add_user(&pool, "erin", &["engineer"], "erin-long-password");
    add_user(&pool, "carol", &["cab_member"], "carol-long-password");
    add_user(&pool, "dave", &["cab_member"], "dave-long-password");
    add_user(&pool, "rita", &["release_manager"], "rita-long-password");
    let (_server, url) = start_server(&pool, "STAGING");
    approved_change(&url).await;

    let b = Browser::start().await;
    sign_in(&b, &url, "rita", "rita-long-password").await;
    b.click("nav a[href='/releases']").await;
    b.wait_url(|u| u.ends_with("/releases")).await;
    b.find("#no-releases").await;
    b.check_page("the empty list of releases").await;
    b.click("#plan-release").await;
    b.wait_url(|u| u.ends_with("/releases/new")).await;
    b.find("#plan").await;
    b.check_page("the plan form").await;

    // The plan, with a version the rules do not take.
    b.type_into("#name", "Winter platform release").await;
    b.type_into("#version", "2026.12 final").await;
    for (field, hours) in [
        ("#code_freeze", 24),
        ("#go_no_go", 48),
        ("#deployment", 72),
        ("#hypercare_end", 240),
    ] {
        b.set_value(field, &at(hours)).await;
    }
    b.click("input[name=test_levels][value=integration]").await;
    b.click("input[name=test_levels][value=acceptance]").await;
    b.type_into("#entry_criteria", "Every change approved; builds green.")
        .await;
    b.type_into("#exit_criteria", "No open blocker after a day on STAGE.")
        .await;
    b.type_into("#evidence", "https://ci.example.com/runs/7")
        .await;
    b.click("#phase_1_environment option[value=stage]").await;
    b.type_into("#phase_1_target", "All of STAGE").await;
    b.type_into("#phase_1_soak", "60").await;
    b.type_into("#phase_1_proceed", "Error rate below 0.1% for an hour.")
        .await;
    b.type_into("#phase_1_abort", "Any failed health check.")
        .await;
    b.click("#phase_2_environment option[value=prod]").await;
    b.type_into("#phase_2_target", "10% of traffic").await;
    b.type_into("#phase_2_soak", "120").await;
    b.type_into("#phase_2_proceed", "Latency within 5% of last week.")
        .await;
    b.type_into("#phase_2_abort", "Error budget burn above 2x.")
        .await;
    b.type_into("#rollback_triggers", "A failed abort criterion.")
        .await;
    b.type_into("#rollback_steps", "Redeploy the previous artifacts.")
        .await;
    b.type_into("#rollback_max_minutes", "30").await;
    b.type_into("#comm_1_audience", "Customer support").await;
    b.type_into("#comm_1_channel", "Email").await;
    b.set_value("#comm_1_when", &at(60)).await;
    b.type_into(
        "#comm_1_message",
        "The winter release goes out on Thursday.",
    )
    .await;
    b.type_into("#changes", "CHG-1").await;
    b.type_into("#reason", "They ship the winter platform together.")
        .await;
    b.click("#save-plan").await;

    // Shown again: the error beside the version, everything else kept.
    b.find("#version-error").await;
    assert!(b.text("#error-summary").await.contains("Version: "));
    assert_eq!(
        b.attr("#version", "ariaInvalid").await.as_deref(),
        Some("true")
    );
    assert_eq!(
        b.attr("#phase_2_target", "value").await.as_deref(),
        Some("10% of traffic")
    );
    b.check_page("the plan form with an error").await;
    b.type_into("#version", "2026.12.1").await;
    b.click("#save-plan").await;
    b.wait_url(|u| u.ends_with("/releases/REL-1")).await;
    assert!(
        b.text("#notice")
            .await
            .starts_with("REL-1 is planned as a draft.")
    );
    assert_eq!(b.text("#release-state").await, "Draft");
    assert_eq!(b.count("#scope-table a[href='/changes/CHG-1']").await, 1);
    b.check_page("a draft release").await;

    b.click("#submit-release").await;
    b.wait_url(|u| u.ends_with("/releases/REL-1")).await;
    // The page comes back to the same address: wait for the new one, not
    // the draft still on screen.
    let mut state = String::new();
    for _ in 0..100 {
        state = b.text("#release-state").await;
        if state == "In review" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    b.find("#notice").await;
    assert_eq!(state, "In review");
    b.check_page("a release in review, to its planner").await;
    b.click("#logout").await;
    b.wait_url(|u| u.ends_with("/login")).await;

    // Two CAB members approve it through the vote form.
    for (member, approved) in [("carol", false), ("dave", true)] {
        sign_in(&b, &url, member, &format!("{member}-long-password")).await;
        b.goto(&format!("{url}/releases/REL-1")).await;
        b.find("#vote-form").await;
        if !approved {
            b.check_page("a release in review, to a CAB member").await;
        }
        b.click("#cast-vote").await;
        b.wait_url(|u| u.ends_with("#decision")).await;
        let said = b.text("#notice").await;
        assert!(said.starts_with("Your vote to approve revision 1 of REL-1 is recorded."));
        assert_eq!(said.contains("REL-1 is approved"), approved, "{said}");
        b.click("#logout").await;
        b.wait_url(|u| u.ends_with("/login")).await;
    }

    sign_in(&b, &url, "rita", "rita-long-password").await;
    b.goto(&format!("{url}/releases/REL-1")).await;
    assert_eq!(b.text("#release-state").await, "Approved");
    assert_eq!(b.text("#advance-release").await, "Start the release");
    assert_eq!(b.count("#approval-trail tbody tr").await, 2);
    b.check_page("an approved release").await;
    b.goto(&format!("{url}/releases")).await;
    b.find("#releases").await;
    b.check_page("the list of releases").await;
    b.close().await;
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_vote_refused_for_its_missing_comment_comes_back_as_chosen(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = cast(&app).await;
    let page = planned_and_submitted(&app, &c).await;
    let form = vec![
        ("_csrf".to_owned(), c.carol.csrf.clone()),
        ("vote".to_owned(), "reject".to_owned()),
        ("revision".to_owned(), "1".to_owned()),
        ("comment".to_owned(), " ".to_owned()),
    ];
    let resp = post(&app, &format!("{page}/votes"), &c.carol, &form).await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    assert!(
        resp.body.contains("name=\"vote\" value=\"reject\" checked"),
        "the reject stays chosen: {}",
        resp.body
    );
    assert!(!resp.body.contains("value=\"approve\" checked"));
    assert_eq!(count(&app, "SELECT count(*) FROM release_votes").await, 0);
}
