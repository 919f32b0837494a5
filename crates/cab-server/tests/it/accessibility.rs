//! What keyboard and screen-reader users rely on, checked in the HTML
//! itself: the skip link, fields tied to their messages, and the summary on
//! top of a re-shown form. (axe-core checks the rendered pages in
//! `browser.rs`.)

use axum::http::StatusCode;
use cab_domain::Role;
use sqlx::PgPool;

use crate::common::{TestApp, csrf_in};

/// The attributes of the element whose id is `id`, as written.
fn tag_with_id<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html
        .find(&format!(" id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element with id {id}"));
    let start = html[..at].rfind('<').unwrap();
    let end = at + html[at..].find('>').unwrap();
    &html[start..=end]
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn every_page_starts_with_a_skip_link_to_the_main_content(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let login = app.get_page("/login", None).await;
    let s = app.browser_login("erin", &[Role::Engineer]).await;
    let dashboard = app.get_page("/", Some(&s.cookie)).await;
    let refused = app.get_page("/admin/users", Some(&s.cookie)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let freezes = app.get_page("/freezes", Some(&s.cookie)).await;
    assert_eq!(freezes.status, StatusCode::OK);
    let environments = app.get_page("/admin/environments", Some(&s.cookie)).await;
    assert_eq!(environments.status, StatusCode::OK);
    let deployments = app.get_page("/deployments", Some(&s.cookie)).await;
    assert_eq!(deployments.status, StatusCode::OK);
    let calendar = app.get_page("/calendar", Some(&s.cookie)).await;
    assert_eq!(calendar.status, StatusCode::OK);
    let feeds = app.get_page("/calendar/feeds", Some(&s.cookie)).await;
    assert_eq!(feeds.status, StatusCode::OK);
    for page in [
        login,
        dashboard,
        refused,
        freezes,
        environments,
        deployments,
        calendar,
        feeds,
    ] {
        let body = &page.body[page.body.find("<body>").unwrap()..];
        let first_focusable = body.find("<a ").unwrap();
        assert!(
            body[first_focusable..]
                .starts_with("<a class=\"skip-link\" href=\"#main\">Skip to main content</a>"),
            "{body}"
        );
        for other in ["<input", "<button", "<select", "<textarea"] {
            assert!(body.find(other).is_none_or(|i| i > first_focusable));
        }
        assert!(page.body.contains("<main id=\"main\""));
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_empty_change_form_comes_back_with_a_summary_naming_impact_and_likelihood(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.browser_login("erin", &[Role::Engineer]).await;
    let form = app.get_page("/changes/new", Some(&s.cookie)).await;
    assert!(!form.body.contains("aria-invalid"), "nothing in error yet");
    assert!(!form.body.contains("id=\"error-summary\""));
    let csrf = csrf_in(&form.body);
    let resp = app
        .post_form(
            "/changes/new",
            Some(&s.cookie),
            &[("_csrf", csrf.as_str()), ("impact", ""), ("likelihood", "")],
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    let html = &resp.body;

    // The summary: focusable, first in the content, a link per field.
    let summary = tag_with_id(html, "error-summary");
    assert!(summary.contains("tabindex=\"-1\""), "{summary}");
    assert!(html.find("id=\"error-summary\"") < html.find("id=\"change-form\""));
    for (field, label) in [("impact", "Impact"), ("likelihood", "Likelihood")] {
        assert!(
            html.contains(&format!("<a href=\"#{field}\">{label}: Choose the")),
            "{field}: {html}"
        );
        // The field: marked invalid and described by its message.
        let tag = tag_with_id(html, field);
        assert!(tag.contains("aria-invalid=\"true\""), "{tag}");
        assert!(
            tag.contains(&format!("aria-describedby=\"{field}-error\"")),
            "{tag}"
        );
        assert!(html.contains(&format!("<p class=\"field-error\" id=\"{field}-error\">")));
    }
    // The script that moves the focus to the summary is loaded from a file:
    // the CSP allows no inline script.
    assert!(html.contains("<script src=\"/static/form-errors.js?v="));
    let script = app.get_page("/static/form-errors.js", None).await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(script.body.contains(".error-summary"));
    // Fields without an error are not marked.
    assert!(!tag_with_id(html, "pr_url").contains("aria-invalid"));
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn checkbox_and_radio_groups_have_a_legend(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.browser_login("erin", &[Role::Engineer]).await;
    let form = app.get_page("/changes/new", Some(&s.cookie)).await;
    for legend in ["Target environments", "Test levels", "Risk factors"] {
        assert!(form.body.contains(&format!("<legend>{legend}")), "{legend}");
    }
    let admin = app.browser_login("adam", &[Role::Admin]).await;
    let users = app.get_page("/admin/users", Some(&admin.cookie)).await;
    assert!(users.body.contains("<legend>Roles</legend>"));
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_new_account_form_ties_each_error_to_its_field(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.browser_login("adam", &[Role::Admin]).await;
    let resp = app
        .post_form(
            "/admin/users",
            Some(&s.cookie),
            &[
                ("_csrf", &s.csrf),
                ("username", "new-person"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    let html = &resp.body;
    assert!(html.contains("<a href=\"#password\">Password: "), "{html}");
    let tag = tag_with_id(html, "password");
    assert!(
        tag.contains("aria-invalid=\"true\" aria-describedby=\"password-error\""),
        "{tag}"
    );
    assert!(!tag_with_id(html, "username").contains("aria-invalid"));
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_refused_submission_names_each_missing_field_and_links_to_it_on_the_edit_form(
    pool: PgPool,
) {
    let app = TestApp::new(pool).await;
    let s = app.browser_login("erin", &[Role::Engineer]).await;
    let saved = app
        .post_form(
            "/changes/new",
            Some(&s.cookie),
            &[
                ("_csrf", &s.csrf),
                ("title", "Rotate the certificates"),
                ("impact", "1"),
                ("likelihood", "1"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM changes")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let resp = app
        .post_form(
            &format!("/changes/{id}/submit"),
            Some(&s.cookie),
            &[("_csrf", &s.csrf)],
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    let summary = tag_with_id(&resp.body, "action-errors");
    assert!(summary.contains("tabindex=\"-1\""), "{summary}");
    assert!(
        resp.body.contains(&format!(
            "<a href=\"/changes/{id}/edit#justification\">Business justification: "
        )),
        "{}",
        resp.body
    );
}
