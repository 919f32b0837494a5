//! How a change ends, in the browser: the review page's forms (closing with
//! a close code, the post-implementation review with its incidents, the
//! sign-off, the action items), posted through the real router with the
//! CSRF token, each leading back with a notice; a field in error comes back
//! beside its field with what was typed kept. From the attacker's side: an
//! auditor who posts the close or review form and an author who signs off
//! the review of their own change are refused, told why, nothing changes and
//! the refusal is recorded once. What is overdue shows on the dashboards of
//! the people it concerns and on the CAB's queue and agenda; the review
//! settings sit beside the quorum policy. In a real Chromium the pages pass
//! axe-core and fit a phone.

use axum::http::StatusCode;
use cab_domain::Role;
use chrono::{Duration, Utc};
use sqlx::PgPool;

use crate::browser::{Browser, sign_in};
use crate::cli::start_server;
use crate::common::{ApiClient, BrowserSession, TestApp, TestResponse};
use crate::deployments::{Cast, request};

/// Promotes the change to PROD, asked for by Rita through the pipeline,
/// and reports `outcome` (succeeded or failed).
async fn to_prod(app: &TestApp, c: &Cast, id: &str, outcome: &str) {
    app.promote_to_stage(&c.pipeline, id).await;
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
    let resp = app.report(&c.pipeline, &dep, outcome, None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
}

/// A low-risk change by Erin, approved by Carol and deployed to PROD with
/// `outcome`: the cast and the change's id.
async fn deployed(app: &TestApp, outcome: &str) -> (Cast, String) {
    let c = app.cast().await;
    let id = app.approved_change(&c.erin, &c.carol).await;
    to_prod(app, &c, &id, outcome).await;
    (c, id)
}

/// The person behind an API client, signed in to the pages.
async fn session(app: &TestApp, who: &ApiClient) -> BrowserSession {
    let password = format!("{}-correct-horse-battery", who.user.username);
    app.browser_login_with(who.user.clone(), &password).await
}

async fn post(
    app: &TestApp,
    uri: &str,
    s: &BrowserSession,
    fields: &[(&str, &str)],
) -> TestResponse {
    let mut form = vec![("_csrf", s.csrf.as_str())];
    form.extend_from_slice(fields);
    app.post_form(uri, Some(&s.cookie), &form).await
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

/// The element with this id, up to the end of its first closing `</div>`
/// (the overdue blocks are `div`s of lists).
fn block<'a>(html: &'a str, id: &str) -> Option<&'a str> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let end = at + html[at..].find("</div>")?;
    Some(&html[at..end])
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap()
}

/// A `datetime-local` value `hours` from now, in UTC, to the minute.
fn at(hours: i64) -> String {
    (Utc::now() + Duration::hours(hours))
        .format("%Y-%m-%dT%H:%M")
        .to_string()
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_failed_change_is_closed_reviewed_signed_off_and_tracked_through_the_page_forms(
    pool: PgPool,
) {
    let app = TestApp::new(pool).await;
    let (c, id) = deployed(&app, "failed").await;
    let erin = session(&app, &c.erin).await;
    let page = format!("/changes/{id}/review");

    // The change's page says how it stands and leads to the review.
    let change = app
        .get_page(&format!("/changes/{id}"), Some(&erin.cookie))
        .await;
    assert_eq!(change.status, StatusCode::OK);
    assert!(change.body.contains("id=\"ending\""), "{}", change.body);
    assert!(change.body.contains("Not closed yet."));
    assert!(
        change
            .body
            .contains("A post-implementation review is owed (the change failed)")
    );
    assert!(
        change
            .body
            .contains(&format!("href=\"{page}#closure\" id=\"close-change-link\""))
    );
    assert!(
        change
            .body
            .contains(&format!("<a href=\"{page}\" id=\"review-link\">"))
    );
    assert!(!change.body.contains("retrospective"));

    // Only the codes that fit a failed deployment are offered.
    let shown = app.get_page(&page, Some(&erin.cookie)).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    assert!(shown.body.contains("id=\"close-form\""));
    assert!(shown.body.contains("value=\"failed_rolled_back\""));
    assert!(shown.body.contains("value=\"failed_not_rolled_back\""));
    assert!(!shown.body.contains("value=\"successful\""));
    assert!(!shown.body.contains("value=\"not_implemented\""));
    assert!(shown.body.contains("Owed because the change failed."));
    assert!(shown.body.contains("id=\"review-due\""));
    assert!(
        shown
            .body
            .contains("<input type=\"hidden\" name=\"read\" value=\"0\">")
    );

    // Without the session's CSRF token nothing is closed.
    let close = format!("/changes/{id}/close");
    let resp = app
        .post_form(
            &close,
            Some(&erin.cookie),
            &[("code", "failed_rolled_back"), ("notes", "Rolled back.")],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert!(resp.body.contains("security token"), "{}", resp.body);
    assert_eq!(app.change_row(&id).await.0, "implementation_failed");

    // A failure without notes: the message beside them, the code kept.
    let resp = post(
        &app,
        &close,
        &erin,
        &[("code", "failed_rolled_back"), ("notes", " ")],
    )
    .await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    assert!(
        resp.body
            .contains("<p class=\"field-error\" id=\"close_notes-error\">Say what happened")
    );
    assert!(
        resp.body
            .contains("<a href=\"#close_notes\">Notes: Say what happened")
    );
    assert!(
        resp.body
            .contains("value=\"failed_rolled_back\" id=\"close_code\" checked")
    );
    assert_eq!(app.change_row(&id).await.0, "implementation_failed");

    let resp = post(
        &app,
        &close,
        &erin,
        &[
            ("code", "failed_rolled_back"),
            (
                "notes",
                "Health checks failed; rolled back within ten minutes.",
            ),
        ],
    )
    .await;
    assert_eq!(
        resp.header("location"),
        Some(format!("{page}#closure").as_str())
    );
    let shown = followed(&app, &erin, &resp).await;
    assert_eq!(
        notice(&shown.body),
        "CHG-1 is closed as failed and rolled back. Its post-implementation review is owed: write it below."
    );
    assert!(
        shown
            .body
            .contains("<strong id=\"close-code\">Failed and rolled back</strong>")
    );
    assert!(shown.body.contains("<dd id=\"closed-by\">erin</dd>"));
    assert!(
        shown
            .body
            .contains("Health checks failed; rolled back within ten minutes.")
    );
    assert!(shown.body.contains("id=\"change-state\">Closed</span>"));
    assert!(!shown.body.contains("id=\"close-form\""));
    assert_eq!(app.change_row(&id).await.0, "closed");

    // The review, with an incident whose start does not read: beside it,
    // everything typed kept.
    let started = at(-3);
    let restored = at(-2);
    let review = vec![
        ("read", "0"),
        (
            "outcome",
            "The new proxy failed its health checks and was rolled back.",
        ),
        ("intervention", "rollback"),
        ("incident_tz", "+00:00"),
        ("incident_reference_1", "INC-4711"),
        ("incident_severity_1", "sev2"),
        ("incident_caused_1", "confirmed"),
        ("incident_started_1", "yesterday noon"),
        ("incident_restored_1", ""),
        ("incident_reference_2", ""),
        ("incident_severity_2", ""),
        ("incident_caused_2", ""),
        ("incident_started_2", ""),
        ("incident_restored_2", ""),
        ("went_well", "The rollback was quick."),
        ("went_wrong", "The canary did not catch it."),
        ("lessons", "Canary on real traffic first."),
    ];
    let resp = post(&app, &page, &erin, &review).await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    assert!(resp.body.contains(
        "<p class=\"field-error\" id=\"incident_started_1-error\">Incident 1: give when it started as a date and time"
    ));
    assert!(
        resp.body
            .contains("<a href=\"#incident_started_1\">Incident 1: ")
    );
    assert!(
        resp.body
            .contains("value=\"yesterday noon\" aria-invalid=\"true\"")
    );
    assert!(resp.body.contains("value=\"INC-4711\""));
    assert!(resp.body.contains("<option value=\"sev2\" selected>"));
    assert!(
        resp.body
            .contains(">The new proxy failed its health checks and was rolled back.</textarea>")
    );
    assert!(resp.body.contains("value=\"rollback\" checked"));
    assert_eq!(
        count(&app, "SELECT count(*) FROM review_revisions").await,
        0
    );

    // Complete, with the second row left blank.
    let mut review = review;
    review[7] = ("incident_started_1", started.as_str());
    review[8] = ("incident_restored_1", restored.as_str());
    let resp = post(&app, &page, &erin, &review).await;
    assert_eq!(
        resp.header("location"),
        Some(format!("{page}#review").as_str()),
        "{}",
        resp.body
    );
    let shown = followed(&app, &erin, &resp).await;
    assert_eq!(
        notice(&shown.body),
        "Revision 1 of the review of CHG-1 is saved. Once it is complete, someone who did not work on the change signs it off."
    );
    assert!(
        shown
            .body
            .contains("id=\"review-revision\">revision 1</span>")
    );
    assert!(
        shown
            .body
            .contains("<tr id=\"revision-1\"><td>1</td><td>erin</td>")
    );
    assert!(shown.body.contains(
        "Outcome, Intervention needed, Incidents, What went well, What went wrong, Lessons learned</td>"
    ));
    // The form holds what is stored, with one more blank row.
    assert!(shown.body.contains(&format!("value=\"{started}\"")));
    assert!(
        shown
            .body
            .contains("id=\"incident_reference_2\" name=\"incident_reference_2\" value=\"\"")
    );
    assert!(!shown.body.contains("id=\"incident_reference_3\""));
    assert!(
        shown
            .body
            .contains("<input type=\"hidden\" name=\"read\" value=\"1\">")
    );
    // Erin worked on it: no sign-off for her.
    assert!(!shown.body.contains("id=\"sign-off-form\""));

    // An action item: an owner who does not exist, beside the field.
    let actions = format!("{page}/actions");
    let due = (Utc::now() + Duration::days(14))
        .format("%Y-%m-%d")
        .to_string();
    let resp = post(
        &app,
        &actions,
        &erin,
        &[
            ("title", "Add a canary stage to the pipeline"),
            ("owner", "nobody"),
            ("due_on", &due),
        ],
    )
    .await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    assert!(resp.body.contains(
        "<p class=\"field-error\" id=\"action_owner-error\">There is no person named nobody who can own an action.</p>"
    ));
    assert!(
        resp.body
            .contains("value=\"Add a canary stage to the pipeline\"")
    );
    assert!(resp.body.contains(&format!("value=\"{due}\"")));
    let resp = post(
        &app,
        &actions,
        &erin,
        &[
            ("title", "Add a canary stage to the pipeline"),
            ("owner", "erin"),
            ("due_on", "next week"),
        ],
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(resp.body.contains(
        "<p class=\"field-error\" id=\"action_due_on-error\">Give the due date as a date, e.g. 2026-12-01.</p>"
    ));
    assert_eq!(count(&app, "SELECT count(*) FROM review_actions").await, 0);
    let resp = post(
        &app,
        &actions,
        &erin,
        &[
            ("title", "Add a canary stage to the pipeline"),
            ("owner", "erin"),
            ("due_on", &due),
        ],
    )
    .await;
    let shown = followed(&app, &erin, &resp).await;
    assert_eq!(
        notice(&shown.body),
        "The action item is added to the review of CHG-1. Its owner sees it on their dashboard once it is overdue."
    );
    assert!(
        shown
            .body
            .contains("<td class=\"title-cell\">Add a canary stage to the pipeline</td>")
    );
    let action: uuid::Uuid = sqlx::query_scalar("SELECT id FROM review_actions")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let status = format!("/review-actions/{action}/status");
    assert!(shown.body.contains(&format!("action=\"{status}\"")));
    let resp = post(&app, &status, &erin, &[("status", "in_progress")]).await;
    assert_eq!(
        resp.header("location"),
        Some(format!("{page}#action-1").as_str())
    );
    let shown = followed(&app, &erin, &resp).await;
    assert_eq!(
        notice(&shown.body),
        "The action item of the review of CHG-1 is now marked in progress."
    );
    assert!(
        shown
            .body
            .contains("<option value=\"in_progress\" selected>In progress</option>")
    );
    let resp = post(&app, &status, &erin, &[("status", "finished")]).await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(resp.body.contains(
        "<p class=\"field-error\" id=\"status_1-error\">Choose open, in progress or done.</p>"
    ));

    // Carol did not work on it: she signs it off, told what that means.
    let carol = session(&app, &c.carol).await;
    let shown = app.get_page(&page, Some(&carol.cookie)).await;
    assert!(
        shown.body.contains("id=\"sign-off-form\""),
        "{}",
        shown.body
    );
    assert!(
        shown
            .body
            .contains("<p id=\"sign-off-meaning\">Signing off says you read revision 1")
    );
    let resp = post(&app, &format!("{page}/sign-off"), &carol, &[("read", "1")]).await;
    assert_eq!(
        resp.header("location"),
        Some(format!("{page}#sign-off").as_str())
    );
    let shown = followed(&app, &carol, &resp).await;
    assert_eq!(
        notice(&shown.body),
        "Revision 1 of the review of CHG-1 is signed off. A later edit makes a new revision, which needs signing off again."
    );
    assert!(
        shown
            .body
            .contains("Revision 1 was signed off by <strong>carol</strong> on ")
    );
    assert!(
        shown
            .body
            .contains("Editing the review makes a new revision, which needs signing off again.")
    );
    assert!(!shown.body.contains("id=\"sign-off-form\""));

    // An edit of the signed-off review is a new revision to sign off again.
    let shown = app.get_page(&page, Some(&erin.cookie)).await;
    assert!(shown.body.contains("id=\"amend-warning\""));
    let mut amended = review.clone();
    amended[0] = ("read", "1");
    amended[16] = (
        "lessons",
        "Canary on real traffic first; alert on health checks.",
    );
    let resp = post(&app, &page, &erin, &amended).await;
    let shown = followed(&app, &erin, &resp).await;
    assert_eq!(
        notice(&shown.body),
        "Revision 2 of the review of CHG-1 is saved. It amends the signed-off review, so it needs signing off again."
    );
    assert!(shown.body.contains("id=\"signed-off-before\""));
    assert!(
        shown
            .body
            .contains("<tr id=\"revision-2\"><td>2</td><td>erin</td>")
    );
    assert!(shown.body.contains("Lessons learned</td></tr>"));
    // Saved as it is: no new revision, and the notice says so.
    let mut same = amended.clone();
    same[0] = ("read", "2");
    let resp = post(&app, &page, &erin, &same).await;
    let shown = followed(&app, &erin, &resp).await;
    assert_eq!(
        notice(&shown.body),
        "Nothing in the review of CHG-1 changed, so no new revision was made."
    );
    // Read at revision 1 again: refused, what was typed kept.
    let resp = post(&app, &page, &erin, &amended).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert!(
        resp.body
            .contains("You read revision 1 of the review, but it is now at revision 2")
    );
    assert!(
        resp.body
            .contains("Canary on real traffic first; alert on health checks.")
    );
    assert!(
        resp.body
            .contains("<input type=\"hidden\" name=\"read\" value=\"1\">")
    );

    // The timeline of the change tells it in words.
    let change = app
        .get_page(&format!("/changes/{id}"), Some(&erin.cookie))
        .await;
    assert!(
        change
            .body
            .contains("Closed as failed and rolled back by erin")
    );
    assert!(change.body.contains("erin closed "));
    // The list knows the state, by its label, and filters by it.
    let list = app
        .get_page("/changes?state=closed", Some(&erin.cookie))
        .await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains(&format!("/changes/{id}")));
    assert!(
        list.body
            .contains("<option value=\"closed\" selected>Closed</option>")
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn add_another_incident_shows_one_more_row_and_keeps_what_was_typed(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (c, id) = deployed(&app, "failed").await;
    let erin = session(&app, &c.erin).await;
    let page = format!("/changes/{id}/review");
    let started = at(-5);
    let resp = post(
        &app,
        &page,
        &erin,
        &[
            ("read", "0"),
            ("outcome", "Rolled back after errors."),
            ("intervention", "hotfix"),
            ("incident_tz", "+02:00"),
            ("incident_reference_1", "INC-1"),
            ("incident_severity_1", "sev3"),
            ("incident_caused_1", "suspected"),
            ("incident_started_1", &started),
            ("incident_restored_1", ""),
            ("lessons", "Half-written lessons"),
            ("more", "1"),
        ],
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let html = &resp.body;
    // Nothing saved; the typed row kept, a new blank one that takes the focus.
    assert_eq!(
        count(&app, "SELECT count(*) FROM review_revisions").await,
        0
    );
    assert!(!html.contains("id=\"notice\""));
    assert!(html.contains("value=\"INC-1\""));
    assert!(html.contains("<option value=\"sev3\" selected>"));
    assert!(html.contains("<option value=\"suspected\" selected>"));
    assert!(html.contains(&format!("value=\"{started}\"")));
    assert!(html.contains("<option value=\"+02:00\" selected>"));
    assert!(html.contains(">Rolled back after errors.</textarea>"));
    assert!(html.contains(">Half-written lessons</textarea>"));
    assert!(html.contains("value=\"hotfix\" checked"));
    assert!(html.contains(
        "<input id=\"incident_reference_2\" name=\"incident_reference_2\" value=\"\" maxlength=\"100\" autocomplete=\"off\" autofocus>"
    ));
    assert!(!html.contains("id=\"incident_reference_3\""));
    assert!(html.contains("<input type=\"hidden\" name=\"read\" value=\"0\">"));

    // Once more: a third row; then saved, the blank rows left out.
    let resp = post(
        &app,
        &page,
        &erin,
        &[
            ("read", "0"),
            ("outcome", "Rolled back after errors."),
            ("intervention", "hotfix"),
            ("incident_tz", "+02:00"),
            ("incident_reference_1", "INC-1"),
            ("incident_severity_1", "sev3"),
            ("incident_caused_1", "suspected"),
            ("incident_started_1", &started),
            ("incident_reference_2", ""),
            ("incident_severity_2", ""),
            ("incident_caused_2", ""),
            ("incident_started_2", ""),
            ("more", "1"),
        ],
    )
    .await;
    assert!(resp.body.contains("id=\"incident_reference_3\""));
    // An offset that is not one is named, not read as UTC.
    let resp = post(
        &app,
        &page,
        &erin,
        &[
            ("read", "0"),
            ("outcome", "Rolled back after errors."),
            ("intervention", "hotfix"),
            ("incident_tz", "Mars/Olympus"),
            ("incident_reference_1", "INC-1"),
            ("incident_severity_1", "sev3"),
            ("incident_caused_1", "suspected"),
            ("incident_started_1", &started),
        ],
    )
    .await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    assert!(
        resp.body.contains("id=\"incident_tz-error\"")
            && resp.body.contains("Choose one of the UTC offsets listed."),
        "{}",
        resp.body
    );
    let saved: i64 = sqlx::query_scalar("SELECT count(*) FROM review_revisions")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(saved, 0);
    let resp = post(
        &app,
        &page,
        &erin,
        &[
            ("read", "0"),
            ("outcome", "Rolled back after errors."),
            ("intervention", "hotfix"),
            ("incident_tz", "+02:00"),
            ("incident_reference_1", "INC-1"),
            ("incident_severity_1", "sev3"),
            ("incident_caused_1", "suspected"),
            ("incident_started_1", &started),
            ("incident_reference_2", ""),
            ("incident_reference_3", ""),
        ],
    )
    .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    let content: serde_json::Value = sqlx::query_scalar("SELECT content FROM reviews")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let incidents = content["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0]["reference"], "INC-1");
    // Written at +02:00: stored two hours earlier, in UTC.
    let stored: chrono::DateTime<Utc> = incidents[0]["started_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        stored.format("%Y-%m-%dT%H:%M").to_string(),
        at(-7),
        "{content}"
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_auditor_posting_the_close_and_review_forms_is_refused_and_nothing_changes(
    pool: PgPool,
) {
    let app = TestApp::new(pool).await;
    let (_c, id) = deployed(&app, "succeeded").await;
    let audrey = app.browser_login("audrey", &[Role::Auditor]).await;
    let page = format!("/changes/{id}/review");
    let shown = app.get_page(&page, Some(&audrey.cookie)).await;
    assert_eq!(shown.status, StatusCode::OK);
    for form in [
        "close-form",
        "review-form",
        "sign-off-form",
        "add-action-form",
    ] {
        assert!(
            !shown.body.contains(&format!("id=\"{form}\"")),
            "{form} offered"
        );
    }
    assert!(
        shown
            .body
            .contains("Optional: no rule owes a review of this change")
    );

    let resp = post(
        &app,
        &format!("/changes/{id}/close"),
        &audrey,
        &[("code", "successful"), ("notes", "")],
    )
    .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert!(resp.body.contains("id=\"refusal\""));
    assert!(resp.body.contains(
        "<li>Only the change&#39;s authors, CAB members, release managers and administrators close a change.</li>"
    ), "{}", resp.body);
    assert!(resp.body.contains("id=\"change-state\">Deployed</span>"));
    assert_eq!(app.change_row(&id).await.0, "implemented");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM changes WHERE close_code IS NOT NULL"
        )
        .await,
        0
    );
    assert_eq!(
        app.denials().await,
        [("change.close".to_owned(), "close_not_allowed".to_owned())]
    );

    let resp = post(
        &app,
        &page,
        &audrey,
        &[
            ("read", "0"),
            ("outcome", "Looks fine to me."),
            ("intervention", "none"),
            ("lessons", "None."),
        ],
    )
    .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    let refusal = resp.body.split("id=\"refusal-reasons\">").nth(1).unwrap();
    assert!(
        refusal.starts_with("<li>Only the people who worked on the change, CAB members,"),
        "{refusal}"
    );
    assert!(refusal.contains("write its review.</li>"), "{refusal}");
    assert_eq!(
        count(&app, "SELECT count(*) FROM review_revisions").await,
        0
    );
    assert_eq!(count(&app, "SELECT count(*) FROM reviews").await, 0);
    let refused: Vec<_> = app
        .denials()
        .await
        .into_iter()
        .filter(|(attempted, _)| attempted == "review.write")
        .collect();
    assert_eq!(
        refused,
        [("review.write".to_owned(), "review_not_allowed".to_owned())]
    );

    // "Add another incident" is no way around it: refused the same way.
    let resp = post(&app, &page, &audrey, &[("read", "0"), ("more", "1")]).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(app.denials().await.len(), 3);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_author_signing_off_the_review_of_their_own_change_is_refused(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    // Carl writes changes and sits on CAB.
    let carl = app
        .api_login("carl", &[Role::Engineer, Role::CabMember])
        .await;
    let id = app.approved_change(&carl, &c.carol).await;
    to_prod(&app, &c, &id, "failed").await;
    let carl = session(&app, &carl).await;
    let page = format!("/changes/{id}/review");
    let resp = post(
        &app,
        &page,
        &carl,
        &[
            ("read", "0"),
            ("outcome", "It failed on PROD and we rolled back."),
            ("intervention", "rollback"),
            ("lessons", "Test with production-sized data."),
        ],
    )
    .await;
    let shown = followed(&app, &carl, &resp).await;
    // The page offers him no sign-off, and says why.
    assert!(!shown.body.contains("id=\"sign-off-form\""));
    assert!(shown.body.contains(
        "<p class=\"hint\" id=\"sign-off-blocked\">You worked on this change, so you cannot sign off its review; someone who did not must.</p>"
    ));
    let denials = app.denials().await.len();

    let resp = post(&app, &format!("{page}/sign-off"), &carl, &[("read", "1")]).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert!(resp.body.contains("id=\"refusal\""));
    assert!(resp.body.contains(
        "<ul id=\"refusal-reasons\"><li>You worked on this change, so you cannot sign off its review; someone who did not must.</li></ul>"
    ));
    let (state, signed): (String, Option<uuid::Uuid>) =
        sqlx::query_as("SELECT state, signed_off_by FROM reviews")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), signed), ("open", None));
    let all = app.denials().await;
    assert_eq!(all.len(), denials + 1);
    assert_eq!(
        all.last().unwrap(),
        &("review.sign_off".to_owned(), "self_review".to_owned())
    );

    // Rita asked for its production deployment: she may not either.
    let rita = session(&app, &c.rita).await;
    let resp = post(&app, &format!("{page}/sign-off"), &rita, &[("read", "1")]).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert!(resp.body.contains("You worked on this change"));
    // An engineer who had nothing to do with it moves no action item.
    let erin = session(&app, &c.erin).await;
    let resp = post(
        &app,
        &format!("{page}/actions"),
        &carl,
        &[
            ("title", "Load-test with production-sized data"),
            ("owner", "carl"),
            ("due_on", &Utc::now().format("%Y-%m-%d").to_string()),
        ],
    )
    .await;
    followed(&app, &carl, &resp).await;
    let action: uuid::Uuid = sqlx::query_scalar("SELECT id FROM review_actions")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let resp = post(
        &app,
        &format!("/review-actions/{action}/status"),
        &erin,
        &[("status", "done")],
    )
    .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert!(resp.body.contains("id=\"refusal\""));
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM review_actions WHERE status = 'open'"
        )
        .await,
        1
    );
    assert_eq!(
        app.denials().await.last().unwrap(),
        &("review.action".to_owned(), "review_not_allowed".to_owned())
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn overdue_reviews_and_action_items_show_to_whom_they_concern_and_on_the_cab_agenda(
    pool: PgPool,
) {
    let app = TestApp::new(pool).await;
    let (c, id) = deployed(&app, "failed").await;
    let erin = session(&app, &c.erin).await;
    let page = format!("/changes/{id}/review");
    let today = Utc::now().format("%Y-%m-%d").to_string();
    let resp = post(
        &app,
        &format!("{page}/actions"),
        &erin,
        &[
            ("title", "Write the rollback runbook"),
            ("owner", "erin"),
            ("due_on", &today),
        ],
    )
    .await;
    followed(&app, &erin, &resp).await;
    // Due today: nothing is overdue yet.
    let home = app.get_page("/", Some(&erin.cookie)).await;
    assert!(block(&home.body, "overdue-reviews").is_none());
    assert!(block(&home.body, "overdue-actions").is_none());
    // A day passes for the item; the review's due time passes too.
    let yesterday = (Utc::now() - Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    sqlx::query("UPDATE review_actions SET due_on = $1::date")
        .bind(&yesterday)
        .execute(&app.pool)
        .await
        .unwrap();
    let home = app.get_page("/", Some(&erin.cookie)).await;
    assert!(block(&home.body, "overdue-reviews").is_none());
    assert!(block(&home.body, "overdue-actions").is_some());
    sqlx::query("UPDATE reviews SET due_at = now() - interval '1 hour'")
        .execute(&app.pool)
        .await
        .unwrap();

    let carol = session(&app, &c.carol).await;
    let rita = session(&app, &c.rita).await;
    let eve = app.browser_login("eve", &[Role::Engineer]).await;
    let review_link = format!("<a href=\"{page}\">CHG-1 Roll out the new edge proxy</a> — due ");
    let action_line = format!(
        "“Write the rollback runbook” from the review of <a href=\"{page}#action-1\">CHG-1</a>, owned by erin — due {yesterday}"
    );
    for (who, s, uri) in [
        ("the owner", &erin, "/"),
        ("a CAB member", &carol, "/"),
        ("a release manager", &rita, "/"),
        ("the CAB queue", &carol, "/cab"),
        ("the CAB agenda", &carol, "/cab/agenda"),
    ] {
        let shown = app.get_page(uri, Some(&s.cookie)).await;
        assert_eq!(shown.status, StatusCode::OK, "{who}");
        let reviews = block(&shown.body, "overdue-reviews")
            .unwrap_or_else(|| panic!("{who}: no overdue reviews: {}", shown.body));
        assert!(reviews.contains(&review_link), "{who}: {reviews}");
        let actions = block(&shown.body, "overdue-actions")
            .unwrap_or_else(|| panic!("{who}: no overdue actions"));
        assert!(actions.contains(&action_line), "{who}: {actions}");
        assert!(!shown.body.contains("overdue-retrospectives"));
    }
    // Someone it does not concern sees neither.
    let home = app.get_page("/", Some(&eve.cookie)).await;
    assert!(block(&home.body, "overdue-reviews").is_none());
    assert!(block(&home.body, "overdue-actions").is_none());
    // The review's page and the change's page say it is overdue.
    let shown = app.get_page(&page, Some(&erin.cookie)).await;
    assert!(
        shown
            .body
            .contains("<strong class=\"overdue-mark\" id=\"review-overdue\">Overdue: it was due ")
    );
    assert!(
        shown
            .body
            .contains("<tr id=\"action-1\" class=\"action-overdue\">")
    );
    let change = app
        .get_page(&format!("/changes/{id}"), Some(&erin.cookie))
        .await;
    assert!(
        change.body.contains(
            "<strong class=\"overdue-mark\">Overdue.</strong> 1 action item is not done."
        )
    );

    // Done: the item leaves the dashboards.
    let action: uuid::Uuid = sqlx::query_scalar("SELECT id FROM review_actions")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let resp = post(
        &app,
        &format!("/review-actions/{action}/status"),
        &erin,
        &[("status", "done")],
    )
    .await;
    let shown = followed(&app, &erin, &resp).await;
    assert_eq!(
        notice(&shown.body),
        "The action item of the review of CHG-1 is now marked done."
    );
    let home = app.get_page("/", Some(&carol.cookie)).await;
    assert!(block(&home.body, "overdue-actions").is_none());
    assert!(block(&home.body, "overdue-reviews").is_some());
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn administrators_set_when_reviews_are_due_beside_the_quorum_policy(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let adam = app.browser_login("adam", &[Role::Admin]).await;
    let shown = app.get_page("/admin/quorum", Some(&adam.cookie)).await;
    assert!(shown.body.contains("id=\"review-settings-form\""));
    assert!(
        shown
            .body
            .contains("id=\"due_days\" name=\"due_days\" value=\"5\"")
    );
    assert!(
        !shown
            .body
            .contains("id=\"required_for_all\" name=\"required_for_all\" value=\"on\" checked")
    );

    let uri = "/admin/quorum/reviews";
    let resp = post(
        &app,
        uri,
        &adam,
        &[("due_days", "0"), ("required_for_all", "on")],
    )
    .await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    assert!(resp.body.contains(
        "<p class=\"field-error\" id=\"due_days-error\">A review is due between 1 and 90 days after the change.</p>"
    ));
    assert!(
        resp.body
            .contains("value=\"0\" aria-invalid=\"true\" aria-describedby=\"due_days-error\"")
    );
    assert!(resp.body.contains("value=\"on\" checked"));
    let resp = post(&app, uri, &adam, &[("due_days", "ten")]).await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(resp.body.contains("value=\"ten\" aria-invalid=\"true\""));

    let resp = post(
        &app,
        uri,
        &adam,
        &[("due_days", "10"), ("required_for_all", "on")],
    )
    .await;
    assert_eq!(
        resp.header("location"),
        Some("/admin/quorum#review-settings")
    );
    let shown = followed(&app, &adam, &resp).await;
    assert_eq!(
        notice(&shown.body),
        "Review settings saved. They apply to reviews owed from now on."
    );
    assert!(
        shown
            .body
            .contains("id=\"due_days\" name=\"due_days\" value=\"10\"")
    );
    assert!(
        shown
            .body
            .contains("id=\"required_for_all\" name=\"required_for_all\" value=\"on\" checked")
    );

    // Nobody else changes them.
    let erin = app.browser_login("erin", &[Role::Engineer]).await;
    let resp = post(&app, uri, &erin, &[("due_days", "1")]).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert!(
        resp.body
            .contains("Only administrators change the review settings.")
    );
    assert_eq!(
        app.denials().await,
        [("settings.reviews".to_owned(), "admin_required".to_owned())]
    );
    let shown = app.get_page("/admin/quorum", Some(&adam.cookie)).await;
    assert!(shown.body.contains("value=\"10\""));
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_retrospective_form_is_gone(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (c, id) = deployed(&app, "succeeded").await;
    let carol = session(&app, &c.carol).await;
    let resp = post(
        &app,
        &format!("/changes/{id}/retrospective"),
        &carol,
        &[("notes", "Went as planned")],
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND, "{}", resp.body);
    let shown = app
        .get_page(&format!("/changes/{id}"), Some(&carol.cookie))
        .await;
    assert!(!shown.body.contains("/retrospective"));
    assert!(
        shown
            .body
            .contains("No post-implementation review is owed; one may still be written.")
    );
    // Carol may close it, from the review page.
    assert!(shown.body.contains("id=\"close-change-link\""));
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_review_page_and_the_dashboards_pass_axe_and_fit_a_phone_in_a_browser(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let (c, id) = deployed(&app, "failed").await;
    let (_server, url) = start_server(&pool, "STAGING");
    let page = format!("{url}/changes/{id}/review");

    let b = Browser::start().await;
    sign_in(&b, &url, "erin", "erin-correct-horse-battery").await;
    b.goto(&format!("{url}/changes/{id}")).await;
    b.find("#ending").await;
    b.check_page("a failed change, how it ended").await;
    b.click("#review-link").await;
    b.wait_url(|u| u.ends_with("/review")).await;
    b.find("#close-form").await;
    b.check_page("the review page before closing").await;

    // Closed as failed without notes: the message beside them.
    b.click("#close_code").await;
    b.click("#close-change").await;
    b.find("#close_notes-error").await;
    assert_eq!(
        b.attr("#close_notes", "ariaInvalid").await.as_deref(),
        Some("true")
    );
    b.check_page("the close form with an error").await;
    b.type_into(
        "#close_notes",
        "Health checks failed; rolled back within ten minutes.",
    )
    .await;
    b.click("#close-change").await;
    b.wait_url(|u| u.ends_with("#closure")).await;
    assert!(
        b.text("#notice")
            .await
            .starts_with("CHG-1 is closed as failed and rolled back.")
    );
    assert_eq!(b.text("#change-state").await, "Closed");
    b.check_page("the review page of a closed change").await;

    // The review: an incident without its start, then another row.
    b.type_into(
        "#outcome",
        "The new proxy failed its health checks and was rolled back.",
    )
    .await;
    b.click("input[name=intervention][value=rollback]").await;
    b.type_into("#incident_reference_1", "INC-4711").await;
    b.click("#incident_severity_1 option[value=sev2]").await;
    b.click("#incident_caused_1 option[value=confirmed]").await;
    b.type_into("#lessons", "Canary on real traffic first.")
        .await;
    b.click("#save-review").await;
    b.find("#incident_started_1-error").await;
    assert!(b.text("#action-errors").await.contains("Incident 1: "));
    assert_eq!(
        b.attr("#incident_reference_1", "value").await.as_deref(),
        Some("INC-4711")
    );
    b.check_page("the review form with an error").await;
    b.click("#add-incident").await;
    b.find("#incident_reference_2").await;
    assert_eq!(
        b.execute("return document.activeElement.id;").await,
        "incident_reference_2"
    );
    b.check_page("the review form with another incident row")
        .await;
    b.set_value("#incident_started_1", &at(-3)).await;
    b.set_value("#incident_restored_1", &at(-2)).await;
    b.click("#save-review").await;
    b.wait_url(|u| u.ends_with("#review")).await;
    assert!(
        b.text("#notice")
            .await
            .starts_with("Revision 1 of the review of CHG-1 is saved.")
    );
    assert_eq!(b.count("#revision-list tbody tr").await, 1);

    // An action item, due today.
    b.type_into("#action_title", "Write the rollback runbook")
        .await;
    b.type_into("#action_owner", "erin").await;
    b.set_value("#action_due_on", &Utc::now().format("%Y-%m-%d").to_string())
        .await;
    b.click("#add-action").await;
    b.wait_url(|u| u.ends_with("#actions")).await;
    b.find("#notice").await;
    assert_eq!(b.count("#action-items tbody tr").await, 1);
    b.check_page("the review page with a review and an action item")
        .await;

    // Time passes: the review and the item are overdue.
    sqlx::query("UPDATE reviews SET due_at = now() - interval '1 hour'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE review_actions SET due_on = $1::date")
        .bind(
            (Utc::now() - Duration::days(1))
                .format("%Y-%m-%d")
                .to_string(),
        )
        .execute(&pool)
        .await
        .unwrap();
    b.goto(&page).await;
    b.find("#review-overdue").await;
    assert_eq!(b.count("#action-items tbody tr.action-overdue").await, 1);
    b.check_page("the review page with overdue items").await;
    b.goto(&format!("{url}/")).await;
    b.find("#overdue-reviews").await;
    b.find("#overdue-actions").await;
    b.check_page("the owner's dashboard with overdue items")
        .await;
    b.click("#logout").await;
    b.wait_url(|u| u.ends_with("/login")).await;

    // A CAB member who did not work on it: the agenda, then the sign-off.
    sign_in(&b, &url, "carol", "carol-correct-horse-battery").await;
    b.find("#overdue-reviews").await;
    b.check_page("a CAB member's dashboard with overdue items")
        .await;
    b.goto(&format!("{url}/cab/agenda")).await;
    b.find("#overdue-actions").await;
    b.check_page("the CAB agenda with overdue items").await;
    b.goto(&page).await;
    b.find("#sign-off-form").await;
    b.check_page("the review page to a CAB member who may sign off")
        .await;
    b.click("#sign-off-review").await;
    b.wait_url(|u| u.ends_with("#sign-off")).await;
    assert!(
        b.text("#signed-off")
            .await
            .starts_with("Revision 1 was signed off by carol")
    );
    b.check_page("a signed-off review").await;
    b.click("#logout").await;
    b.wait_url(|u| u.ends_with("/login")).await;

    // The review settings beside the quorum policy.
    let _ = c;
    sign_in(&b, &url, "adam", "adam-correct-horse-battery").await;
    b.goto(&format!("{url}/admin/quorum")).await;
    b.type_into("#due_days", "0").await;
    b.click("#save-review-settings").await;
    b.find("#due_days-error").await;
    b.check_page("the review settings with an error").await;
    b.close().await;
}
