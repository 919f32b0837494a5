//! The change calendar's pages, from the people's side and the attacker's:
//! the month, the week and the list say what is planned in words and link
//! to it; filters narrow it and a wrong one is named beside its field; a
//! feed's secret address is shown once, answers calendar apps without a
//! session and never reaches the log; maintenance periods and the
//! production limit are kept to release managers; CAB sees a window's
//! conflicts and approves it only knowingly; and every page passes axe-core
//! and fits a phone.

use std::process::Stdio;

use axum::http::StatusCode;
use cab_domain::Role;
use chrono::{DateTime, Datelike, Duration, DurationRound, SecondsFormat, Utc, Weekday};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::browser::{Browser, sign_in};
use crate::changes::complete_change;
use crate::cli::{add_user, spawn_server_with, start_server};
use crate::common::{ApiClient, BrowserSession, TestApp, TestResponse, csrf_in};

/// The text of `html` between `start` and the next `end`.
fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let from = html
        .find(start)
        .map(|i| i + start.len())
        .unwrap_or_else(|| panic!("no {start:?} in {html}"));
    let to = html[from..]
        .find(end)
        .unwrap_or_else(|| panic!("no {end:?} after {start:?}"))
        + from;
    &html[from..to]
}

/// What a person reads in the page's main content: the text without tags.
fn visible(html: &str) -> String {
    let main = between(html, "<main", "</main>");
    let mut out = String::new();
    let mut in_tag = true;
    for c in main.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// The link with this id, as a browser would follow it.
fn link(html: &str, id: &str) -> String {
    let at = html
        .find(&format!(" id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element with id {id}"));
    let tag = &html[html[..at].rfind('<').unwrap()..at];
    between(tag, "href=\"", "\"")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

/// The cell of the month grid for `day` (YYYY-MM-DD).
fn cell<'a>(html: &'a str, day: &str) -> &'a str {
    between(html, &format!("id=\"day-{day}\""), "</td>")
}

fn z(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Midnight UTC `days` from today.
fn midnight(days: i64) -> DateTime<Utc> {
    (Utc::now() + Duration::days(days))
        .duration_trunc(Duration::days(1))
        .unwrap()
}

fn password(username: &str) -> String {
    format!("{username}-correct-horse-battery")
}

/// A complete low-risk change by `author` to `service` in `envs`, planned
/// for [start, end), submitted. Its id and key ("CHG-3").
async fn planned_change(
    app: &TestApp,
    author: &ApiClient,
    title: &str,
    service: &str,
    envs: &[&str],
    (start, end): (DateTime<Utc>, DateTime<Utc>),
) -> (String, String) {
    let mut body = complete_change(title);
    body["services"] = json!([service]);
    body["environments"] = json!(envs);
    body["window"] = json!({"start": z(start), "end": z(end), "time_zone": "UTC"});
    body["risk"] = json!({"impact": 1, "likelihood": 1});
    body["priority"] = json!("medium");
    let created = app.file_change(author, body).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let key = created["key"].as_str().unwrap().to_owned();
    let resp = app.change_action(author, &id, "submit", None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    (id, key)
}

/// Signs in through the login form someone `app.user` (or `app.cast()`) made.
async fn signed_in(app: &TestApp, username: &str) -> BrowserSession {
    let user = cab_db::users::find_by_username(&mut app.pool.acquire().await.unwrap(), username)
        .await
        .unwrap()
        .unwrap();
    app.browser_login_with(user, &password(username)).await
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

async fn ok_page(app: &TestApp, s: &BrowserSession, uri: &str) -> String {
    let page = app.get_page(uri, Some(&s.cookie)).await;
    assert_eq!(page.status, StatusCode::OK, "{uri}: {}", page.body);
    page.body
}

/// A period every day of the week, opening at `starts`, for `minutes`.
async fn add_period_form(
    app: &TestApp,
    s: &BrowserSession,
    service: &str,
    days: &[&str],
    starts: &str,
    minutes: &str,
) -> TestResponse {
    let mut fields = vec![
        ("_csrf", s.csrf.as_str()),
        ("service", service),
        ("starts", starts),
        ("minutes", minutes),
    ];
    for d in days {
        fields.push(("weekdays", d));
    }
    app.post_form("/admin/maintenance", Some(&s.cookie), &fields)
        .await
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap()
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn month_week_and_list_say_what_is_planned_in_words_with_links(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    // An approved change whose window is open now, deployed up to STAGE.
    let live = app.approved_change(&c.erin, &c.carol).await;
    app.promote_to_stage(&c.pipeline, &live).await;
    let live_key = format!(
        "CHG-{}",
        count(
            &app,
            &format!("SELECT number FROM changes WHERE id = '{live}'")
        )
        .await
    );
    // A freeze in force now, on PROD.
    sqlx::query(
        "INSERT INTO freezes (id, starts_at, ends_at, reason, environments, created_by, created_at)
         SELECT gen_random_uuid(), now() - interval '1 hour', now() + interval '2 hours',
                'Year-end trading freeze', '{prod}', id, now() FROM users WHERE username = 'rita'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    // The payments service's maintenance period, every day at 02:00.
    let rita = signed_in(&app, "rita").await;
    let all_days = ["1", "2", "3", "4", "5", "6", "7"];
    let added = add_period_form(&app, &rita, "payments", &all_days, "02:00", "60").await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);

    let erin = signed_in(&app, "erin").await;
    let month = ok_page(&app, &erin, "/calendar").await;
    assert!(
        month.contains("<nav aria-label=\"Main\">")
            && month.contains("<a href=\"/calendar\" aria-current=\"page\">Calendar</a>"),
        "Calendar is in the navigation"
    );
    // A real table: a caption, the weekdays as column headers.
    let table = between(
        &month,
        "<table class=\"grid month\" id=\"month\">",
        "</table>",
    );
    assert!(table.contains("<caption>Change calendar for "), "{table}");
    for d in ["Monday", "Wednesday", "Sunday"] {
        assert!(
            table.contains(&format!("<th scope=\"col\">{d}</th>")),
            "{d}"
        );
    }
    let today = cell(&month, &Utc::now().format("%Y-%m-%d").to_string());
    for expected in [
        "Change window",
        &format!("<a href=\"/changes/{live_key}\">{live_key} Roll out the new edge proxy</a>"),
        "Low risk",
        "<span class=\"environment environment-prod\">PROD</span>",
        "Deployment",
        "<a href=\"/deployments/DEP-1\">DEP-1 ",
        "Succeeded",
        "Freeze",
        "<a href=\"/freezes\">Year-end trading freeze</a>",
        "Maintenance period",
        "<span class=\"entry-title\">payments</span>",
        " UTC",
    ] {
        assert!(today.contains(expected), "{expected} in {today}");
    }
    assert!(
        today.contains("Approved") || today.contains("Being deployed"),
        "the change's state in words: {today}"
    );
    let text = visible(&month);
    assert!(!text.contains('_'), "a code on the page: {text}");
    assert!(month.contains(
        "<a href=\"/calendar/feeds\" id=\"subscribe\">Subscribe in your calendar app</a>"
    ));
    // The grid scrolls in its own box on a narrow screen, and can be
    // reached with the keyboard.
    let wrapper = &month[month[..month.find("<table class=\"grid month\"").unwrap()]
        .rfind("<div")
        .unwrap()..];
    assert!(
        wrapper.starts_with("<div class=\"table-scroll month-scroll\" tabindex=\"0\" role=\"region\" aria-label=\"Change calendar for "),
        "{}",
        &wrapper[..200]
    );

    // The week: a section for each day, the live change on today's.
    let week = ok_page(&app, &erin, "/calendar?view=week").await;
    assert_eq!(week.matches("<section class=\"cal-day").count(), 7);
    let today_section = between(
        &week,
        &format!("id=\"day-{}\"", Utc::now().format("%Y-%m-%d")),
        "</section>",
    );
    assert!(today_section.contains(&format!("href=\"/changes/{live_key}\"")));
    assert!(today_section.contains("<span class=\"badge\">Today</span>"));
    assert!(!visible(&week).contains('_'));

    // The list: four weeks, earliest first.
    let list = ok_page(&app, &erin, "/calendar?view=list").await;
    let items = between(&list, "id=\"calendar-list\"", "</ol>");
    let change_at = items.find(&format!("{live_key} Roll out")).unwrap();
    let deployment_at = items.find("DEP-1 ").unwrap();
    assert!(change_at < deployment_at, "{items}");
    assert!(items.contains("Year-end trading freeze"));
    assert!(!visible(&list).contains('_'));

    // A window over several days shows on each day it touches: from a
    // Tuesday night to Thursday morning, all in one week of one month.
    let mut tuesday = midnight(35);
    while tuesday.weekday() != Weekday::Tue || tuesday.day() > 20 {
        tuesday += Duration::days(1);
    }
    let start = tuesday + Duration::hours(22);
    let end = tuesday + Duration::days(2) + Duration::hours(2);
    let (_, long_key) = planned_change(
        &app,
        &c.erin,
        "Move the billing database",
        "billing",
        &["PROD"],
        (start, end),
    )
    .await;
    let month = ok_page(
        &app,
        &erin,
        &format!("/calendar?date={}", start.format("%Y-%m-%d")),
    )
    .await;
    let day = |n: i64| (tuesday + Duration::days(n)).format("%Y-%m-%d").to_string();
    for (n, when) in [
        (0, "From 22:00 UTC"),
        (1, "All day"),
        (2, "Until 02:00 UTC"),
    ] {
        let on = cell(&month, &day(n));
        assert!(
            on.contains(&format!("href=\"/changes/{long_key}\"")),
            "{n}: {on}"
        );
        assert!(on.contains(when), "{when} in {on}");
        assert!(on.contains("Submitted"), "{on}");
    }
    assert!(!cell(&month, &day(-1)).contains(&long_key));
    assert!(!cell(&month, &day(3)).contains(&long_key));
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn filters_narrow_the_calendar_keep_to_its_links_and_a_wrong_one_is_named_beside_it(
    pool: PgPool,
) {
    let app = TestApp::new(pool).await;
    let erin_api = app.api_login("erin", &[Role::Engineer]).await;
    let start = midnight(30) + Duration::hours(10);
    let (_, billing) = planned_change(
        &app,
        &erin_api,
        "Move the billing database",
        "billing",
        &["PROD"],
        (start, start + Duration::hours(2)),
    )
    .await;
    let (_, edge) = planned_change(
        &app,
        &erin_api,
        "Rotate the edge certificates",
        "edge-proxy",
        &["STAGE", "PROD"],
        (start + Duration::hours(4), start + Duration::hours(5)),
    )
    .await;
    let s = signed_in(&app, "erin").await;
    let date = start.format("%Y-%m-%d").to_string();
    let shows = |html: &str, key: &str| html.contains(&format!("href=\"/changes/{key}\""));
    let page = ok_page(&app, &s, &format!("/calendar?date={date}")).await;
    assert!(shows(&page, &billing) && shows(&page, &edge));
    for (filter, billing_shown, edge_shown) in [
        ("service=billing", true, false),
        ("environment=STAGE", false, true),
        ("environment=prod", true, true),
        ("state=submitted", true, true),
        ("state=approved", false, false),
        ("risk=low", true, true),
        ("risk=high", false, false),
    ] {
        let page = ok_page(&app, &s, &format!("/calendar?date={date}&{filter}")).await;
        assert_eq!(shows(&page, &billing), billing_shown, "{filter}");
        assert_eq!(shows(&page, &edge), edge_shown, "{filter}");
    }
    // The filters are said in words, and every link of the page keeps them.
    let page = ok_page(
        &app,
        &s,
        &format!("/calendar?view=week&date={date}&service=billing&risk=low"),
    )
    .await;
    assert!(
        page.contains("Showing: Service billing, low risk."),
        "{page}"
    );
    for id in [
        "previous-period",
        "next-period",
        "today",
        "view-month",
        "view-list",
    ] {
        let href = link(&page, id);
        assert!(
            href.contains("service=billing") && href.contains("risk=low"),
            "{id}: {href}"
        );
    }
    assert!(link(&page, "view-list").contains(&format!("view=list&date={date}")));
    let next = link(&page, "next-period");
    let next_week = (start + Duration::days(7)).format("%Y-%m-%d").to_string();
    let next_page = ok_page(&app, &s, &next).await;
    assert!(
        next_page.contains(&format!("id=\"day-{next_week}\"")),
        "{next}"
    );

    // A word the calendar does not know: 422, the message beside the field.
    let wrong = app
        .get_page(
            "/calendar?state=approvedish&environment=MARS",
            Some(&s.cookie),
        )
        .await;
    assert_eq!(
        wrong.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        wrong.body
    );
    let state_error = between(
        &wrong.body,
        "<p class=\"field-error\" id=\"state-error\">",
        "</p>",
    );
    assert!(state_error.contains("In CAB review"), "{state_error}");
    assert!(!state_error.contains('_'), "{state_error}");
    assert!(wrong.body.contains("id=\"environment-error\""));
    assert!(
        wrong
            .body
            .contains("<select id=\"state\" name=\"state\" aria-invalid=\"true\" aria-describedby=\"state-error\">")
    );
    assert!(wrong.body.contains("id=\"error-summary\""));
    assert!(!wrong.body.contains("id=\"month\""));
    for uri in [
        "/calendar?date=someday",
        "/calendar?view=year",
        "/calendar?risk=extreme",
        "/calendar?service=Pay%20Ments!",
        "/calendar?date=99999-01-01",
    ] {
        let resp = app.get_page(uri, Some(&s.cookie)).await;
        assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
        assert!(resp.body.contains("class=\"field-error\""), "{uri}");
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_feed_is_shown_once_read_without_a_session_and_revoked_through_the_form(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin_api = app.api_login("erin", &[Role::Engineer]).await;
    let start = midnight(3) + Duration::hours(9);
    planned_change(
        &app,
        &erin_api,
        "Rotate the edge certificates",
        "edge-proxy",
        &["PROD"],
        (start, start + Duration::hours(1)),
    )
    .await;
    let s = signed_in(&app, "erin").await;
    let page = ok_page(&app, &s, "/calendar/feeds").await;
    assert!(page.contains("id=\"no-feeds\""));
    let csrf = csrf_in(&page);

    // A wrong filter: nothing made, the message beside it.
    let wrong = app
        .post_form(
            "/calendar/feeds",
            Some(&s.cookie),
            &[("_csrf", &csrf), ("label", "Mine"), ("risk", "extreme")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.body.contains("id=\"risk-error\""));
    assert_eq!(count(&app, "SELECT count(*) FROM calendar_feeds").await, 0);

    let made = app
        .post_form(
            "/calendar/feeds",
            Some(&s.cookie),
            &[
                ("_csrf", &csrf),
                ("label", "Edge changes"),
                ("service", "edge-proxy"),
                ("environment", "PROD"),
            ],
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let input = between(&made.body, "<input id=\"feed-url\"", ">");
    assert!(input.contains(" readonly"), "{input}");
    assert!(made.body.contains("<label for=\"feed-url\">"));
    assert!(made.body.contains("it will not be shown again"));
    assert!(made.body.contains("New Calendar Subscription"));
    let url = between(input, "value=\"", "\"").to_owned();
    let path = url
        .strip_prefix(&app.state.settings.public_url)
        .unwrap_or_else(|| panic!("{url}"))
        .to_owned();
    let secret = path
        .strip_prefix("/calendar/feed/")
        .and_then(|s| s.strip_suffix(".ics"))
        .unwrap()
        .to_owned();
    assert!(secret.len() >= 40, "{secret}");
    assert_eq!(made.body.matches(&secret).count(), 1, "shown once");
    assert!(
        made.header("set-cookie")
            .is_none_or(|c| !c.contains(&secret))
    );

    // The list names it in words, never with its address.
    let list = ok_page(&app, &s, "/calendar/feeds").await;
    assert!(!list.contains(&secret));
    let row = between(&list, "<table class=\"grid\" id=\"feeds\">", "</table>");
    assert!(row.contains("Edge changes"), "{row}");
    assert!(row.contains("Service edge-proxy, PROD"), "{row}");
    assert!(row.contains("Never") && row.contains("Live"), "{row}");

    // A calendar app reads it without a session, with or without `.ics`.
    for p in [path.clone(), format!("/calendar/feed/{secret}")] {
        let feed = app.get_page(&p, None).await;
        assert_eq!(feed.status, StatusCode::OK, "{}", feed.body);
        assert_eq!(
            feed.header("content-type"),
            Some("text/calendar; charset=utf-8")
        );
        assert_eq!(feed.header("cache-control"), Some("private, max-age=300"));
        assert_eq!(
            feed.header("content-disposition"),
            Some("inline; filename=\"cab.ics\"")
        );
        assert!(feed.body.starts_with("BEGIN:VCALENDAR"), "{}", feed.body);
        assert!(feed.body.contains("Rotate the edge certificates"));
    }
    let used = ok_page(&app, &s, "/calendar/feeds").await;
    assert!(!between(&used, "id=\"feeds\">", "</table>").contains("Never"));
    // An address that is no feed says nothing about why.
    let unknown = app
        .get_page("/calendar/feed/not-a-feed-at-all.ics", None)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(!unknown.body.contains("<html"), "{}", unknown.body);

    // Revoked through the form: the address answers 404 from then on.
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM calendar_feeds")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(list.contains(&format!("action=\"/calendar/feeds/{id}/revoke\"")));
    let revoked = app
        .post_form(
            &format!("/calendar/feeds/{id}/revoke"),
            Some(&s.cookie),
            &[("_csrf", &s.csrf)],
        )
        .await;
    let after = followed(&app, &s, &revoked).await;
    assert!(after.body.contains("Feed revoked."), "{}", after.body);
    assert!(between(&after.body, "id=\"feeds\">", "</table>").contains("Revoked "));
    assert!(
        !after
            .body
            .contains(&format!("action=\"/calendar/feeds/{id}/revoke\""))
    );
    let gone = app.get_page(&path, None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.body, unknown.body, "revoked looks like unknown");

    // Recorded, without the secret.
    let events = app.audit_events().await;
    let actions: Vec<&str> = events.iter().map(|(a, _)| a.as_str()).collect();
    assert!(actions.contains(&"calendar.feed_created"), "{actions:?}");
    assert!(actions.contains(&"calendar.feed_revoked"), "{actions:?}");
    assert!(events.iter().all(|(_, p)| !p.to_string().contains(&secret)));
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_engineer_is_refused_the_maintenance_periods_and_nothing_is_written(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.browser_login("erin", &[Role::Engineer]).await;
    let home = ok_page(&app, &s, "/").await;
    assert!(home.contains("<a href=\"/calendar\">Calendar</a>"));
    assert!(!home.contains("href=\"/admin/maintenance\""));

    let before = app.audit_count().await;
    let resp = add_period_form(&app, &s, "payments", &["2", "4"], "22:00", "240").await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert!(
        resp.body.contains(
            "Only release managers and administrators change maintenance periods and the production limit."
        ),
        "{}",
        resp.body
    );
    assert!(
        resp.body.contains("<main id=\"main\""),
        "a page in the layout"
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM maintenance_periods").await,
        0
    );
    assert_eq!(app.audit_count().await, before + 1, "one event, no more");
    let (action, payload) = app.audit_events().await.pop().unwrap();
    assert_eq!(action, "access.denied");
    assert_eq!(payload["attempted"], "maintenance.manage");
    assert_eq!(payload["reason"], "release_manager_required");

    // The limit too, and the page itself.
    let before = app.audit_count().await;
    let resp = app
        .post_form(
            "/admin/maintenance/limit",
            Some(&s.cookie),
            &[("_csrf", &s.csrf), ("production_per_hour", "1")],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(app.audit_count().await, before + 1);
    let setting: i64 = count(
        &app,
        "SELECT count(*) FROM settings WHERE key = 'calendar.production_per_hour'",
    )
    .await;
    assert_eq!(setting, 0);
    let page = app.get_page("/admin/maintenance", Some(&s.cookie)).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(app.denials().await.len(), 3);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_release_manager_adds_and_removes_a_period_and_sets_the_limit(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.browser_login("rita", &[Role::ReleaseManager]).await;
    let page = ok_page(&app, &s, "/admin/maintenance").await;
    assert!(page.contains("<a href=\"/admin/maintenance\" aria-current=\"page\">Maintenance</a>"));
    assert!(page.contains("id=\"no-periods\""));
    assert!(page.contains("No limit is set"));

    // Faults come back beside their fields, the form as typed.
    let wrong = add_period_form(&app, &s, "payments", &[], "10pm", "lots").await;
    assert_eq!(
        wrong.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        wrong.body
    );
    for field in ["weekdays", "starts", "minutes"] {
        assert!(
            wrong.body.contains(&format!("id=\"{field}-error\"")),
            "{field}: {}",
            wrong.body
        );
    }
    assert!(wrong.body.contains("Give the length in whole minutes"));
    assert!(wrong.body.contains("value=\"payments\""));
    assert_eq!(
        count(&app, "SELECT count(*) FROM maintenance_periods").await,
        0
    );

    let added = add_period_form(&app, &s, "payments", &["2", "4"], "22:00", "240").await;
    let page = followed(&app, &s, &added).await;
    assert!(
        page.body.contains("Maintenance period added."),
        "{}",
        page.body
    );
    let table = between(&page.body, "id=\"maintenance-periods\">", "</table>");
    for expected in [
        "payments",
        "Tuesday, Thursday",
        "22:00 to 02:00 UTC",
        "4 hours",
        "rita",
    ] {
        assert!(table.contains(expected), "{expected} in {table}");
    }
    let (action, payload) = app.audit_events().await.pop().unwrap();
    assert_eq!(action, "maintenance.added");
    assert_eq!(payload["service"], "payments");
    assert_eq!(payload["weekdays"], json!([2, 4]));

    // The limit: set, refused when it is no number, removed.
    let set = app
        .post_form(
            "/admin/maintenance/limit",
            Some(&s.cookie),
            &[("_csrf", &s.csrf), ("production_per_hour", "3")],
        )
        .await;
    let page = followed(&app, &s, &set).await;
    assert!(
        page.body
            .contains("Saved: at most 3 production changes in one hour from now on."),
        "{}",
        page.body
    );
    assert!(
        between(&page.body, "id=\"limit-now\">", "</p>").contains("At most 3 production changes")
    );
    let (action, payload) = app.audit_events().await.pop().unwrap();
    assert_eq!(action, "settings.calendar_limit_set");
    assert_eq!(payload["after"], 3);
    let events = app.audit_count().await;
    let wrong = app
        .post_form(
            "/admin/maintenance/limit",
            Some(&s.cookie),
            &[("_csrf", &s.csrf), ("production_per_hour", "a few")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.body.contains("id=\"production_per_hour-error\""));
    assert!(wrong.body.contains("value=\"a few\""));
    assert_eq!(app.audit_count().await, events, "nothing recorded");
    assert!(between(&wrong.body, "id=\"limit-now\">", "</p>").contains("At most 3"));
    let cleared = app
        .post_form(
            "/admin/maintenance/limit",
            Some(&s.cookie),
            &[("_csrf", &s.csrf), ("production_per_hour", "")],
        )
        .await;
    let page = followed(&app, &s, &cleared).await;
    assert!(page.body.contains("no longer limited per hour"));
    assert!(page.body.contains("No limit is set"));
    let (_, payload) = app.audit_events().await.pop().unwrap();
    assert_eq!(payload["before"], 3);
    assert_eq!(payload["after"], Value::Null);

    // Removed through its button.
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM maintenance_periods")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let removed = app
        .post_form(
            &format!("/admin/maintenance/{id}/remove"),
            Some(&s.cookie),
            &[("_csrf", &s.csrf)],
        )
        .await;
    let page = followed(&app, &s, &removed).await;
    assert!(page.body.contains("Maintenance period removed."));
    assert!(page.body.contains("id=\"no-periods\""));
    assert_eq!(
        app.audit_events().await.pop().unwrap().0,
        "maintenance.removed"
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn cab_sees_the_conflicts_and_approves_only_by_acknowledging_them(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    app.user("carol", &[Role::CabMember]).await;
    let start = midnight(5) + Duration::hours(10);
    let (_, first) = planned_change(
        &app,
        &erin,
        "Rotate the edge certificates",
        "edge-proxy",
        &["PROD"],
        (start, start + Duration::hours(2)),
    )
    .await;
    let (id, second) = planned_change(
        &app,
        &erin,
        "Upgrade the edge proxy",
        "edge-proxy",
        &["PROD"],
        (start + Duration::hours(1), start + Duration::hours(3)),
    )
    .await;
    let sentence_start =
        format!("{first} “Rotate the edge certificates” also changes edge-proxy in PROD from ");

    let s = signed_in(&app, "carol").await;
    let page = ok_page(&app, &s, &format!("/changes/{id}")).await;
    let section = between(&page, "<section id=\"conflicts\"", "</section>");
    assert!(section.contains("<h2 id=\"conflicts-heading\">Calendar conflicts</h2>"));
    assert!(section.contains(&sentence_start), "{section}");
    assert_eq!(
        link(&page, "conflicts-calendar"),
        format!("/calendar?view=week&date={}", start.format("%Y-%m-%d"))
    );
    let form = between(&page, "id=\"vote-form\"", "</form>");
    // The checkbox names the conflicts shown, by their digest.
    let digest = between(form, "name=\"acknowledge_conflicts\" value=\"", "\"").to_owned();
    assert_eq!(digest.len(), 32, "{form}");
    assert!(form.contains("I have read the calendar conflicts above and approve despite them"));
    // The CAB queue and the agenda name it too.
    for queue in ["/cab", "/cab/agenda"] {
        let body = ok_page(&app, &s, queue).await;
        let row = between(&body, &format!("<a href=\"/changes/{id}\">"), "</tr>");
        assert!(row.contains("Calendar conflict:"), "{row}");
        assert!(row.contains(&sentence_start), "{row}");
    }

    // Approving without the acknowledgement: refused with the sentence,
    // recorded, and no vote.
    let before = app.audit_count().await;
    let refused = app
        .post_form(
            &format!("/changes/{id}/votes"),
            Some(&s.cookie),
            &[("_csrf", &s.csrf), ("vote", "approve"), ("revision", "1")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let message = between(
        &refused.body,
        "<p class=\"field-error\" id=\"acknowledge_conflicts-error\">",
        "</p>",
    );
    assert!(
        message.contains("approve only after acknowledging it"),
        "{message}"
    );
    assert!(message.contains(&sentence_start), "{message}");
    assert!(refused.body.contains("id=\"vote-refused\""));
    assert!(refused.body.contains("aria-invalid=\"true\""));
    assert_eq!(app.decision_rows().await.0, 0);
    assert_eq!(app.audit_count().await, before + 1);
    let (action, payload) = app.audit_events().await.pop().unwrap();
    assert_eq!(action, "access.denied");
    assert_eq!(payload["reason"], "conflicts_not_acknowledged");

    // With it: counted, and the trail says what was accepted.
    let approved = app
        .post_form(
            &format!("/changes/{id}/votes"),
            Some(&s.cookie),
            &[
                ("_csrf", &s.csrf),
                ("vote", "approve"),
                ("revision", "1"),
                ("acknowledge_conflicts", &digest),
            ],
        )
        .await;
    let page = followed(&app, &s, &approved).await;
    assert!(page.body.contains(&format!(
        "Your vote to approve revision 1 of {second} is recorded."
    )));
    assert_eq!(app.decision_rows().await.0, 1);
    let kept: Value = sqlx::query_scalar("SELECT acknowledged_conflicts FROM change_votes")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(kept.as_array().unwrap().len(), 1, "{kept}");
    let trail = between(&page.body, "id=\"approval-trail\">", "</table>");
    assert!(
        trail.contains("Approved despite the calendar conflicts:"),
        "{trail}"
    );
    assert!(trail.contains(&sentence_start), "{trail}");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn calendar_pages_pass_the_accessibility_checks_in_a_browser_at_desktop_and_phone_width(
    pool: PgPool,
) {
    add_user(&pool, "erin", &["engineer"], "erin-long-password");
    add_user(&pool, "carol", &["cab_member"], "carol-long-password");
    add_user(&pool, "rita", &["release_manager"], "rita-long-password");
    let (_server, url) = start_server(&pool, "STAGING");
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{url}/api/v1/auth/token"))
        .json(&json!({"username": "erin", "password": "erin-long-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    // Two changes to one service, their windows this week overlapping.
    let start = midnight(1) + Duration::hours(10);
    let mut ids = Vec::new();
    for (title, from, hours) in [
        ("Rotate the edge certificates", start, 2),
        ("Upgrade the edge proxy", start + Duration::hours(1), 30),
    ] {
        let mut body = complete_change(title);
        body["window"] =
            json!({"start": z(from), "end": z(from + Duration::hours(hours)), "time_zone": "UTC"});
        body["risk"] = json!({"impact": 1, "likelihood": 1});
        body["priority"] = json!("medium");
        let change: Value = http
            .post(format!("{url}/api/v1/changes"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = change["id"].as_str().unwrap().to_owned();
        let submitted = http
            .post(format!("{url}/api/v1/changes/{id}/submit"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(submitted.status(), 200);
        ids.push(id);
    }

    let b = Browser::start().await;
    sign_in(&b, &url, "rita", "rita-long-password").await;
    b.click("nav a[href='/admin/maintenance']").await;
    b.wait_url(|u| u.ends_with("/admin/maintenance")).await;
    b.check_page("the maintenance periods").await;
    b.type_into("#service", "edge-proxy").await;
    b.click("#add-period").await;
    b.find("#error-summary").await;
    b.check_page("the maintenance form with errors").await;
    for day in ["1", "3", "5"] {
        b.click(&format!("input[name=weekdays][value='{day}']"))
            .await;
    }
    b.set_value("#starts", "09:00").await;
    b.type_into("#minutes", "480").await;
    b.click("#add-period").await;
    b.find("#notice").await;
    assert!(
        b.text("#maintenance-periods")
            .await
            .contains("Monday, Wednesday, Friday")
    );
    b.check_page("the maintenance periods with one").await;

    b.click("nav a[href='/calendar']").await;
    b.wait_url(|u| u.ends_with("/calendar")).await;
    b.find("#month").await;
    b.check_page("the calendar's month").await;
    b.click("#view-week").await;
    b.wait_url(|u| u.contains("view=week")).await;
    b.find("#week").await;
    b.check_page("the calendar's week").await;
    b.click("#next-period").await;
    b.wait_url(|u| u.contains("view=week&date=")).await;
    b.check_page("the next week").await;
    b.click("#view-list").await;
    b.wait_url(|u| u.contains("view=list")).await;
    b.check_page("the calendar's list").await;
    b.goto(&format!(
        "{url}/calendar?service=edge-proxy&environment=PROD"
    ))
    .await;
    b.check_page("the calendar filtered").await;
    b.goto(&format!("{url}/calendar?state=bogus&date=someday"))
        .await;
    b.find("#error-summary").await;
    b.check_page("the calendar with a wrong filter").await;

    b.goto(&format!("{url}/calendar")).await;
    b.click("#subscribe").await;
    b.wait_url(|u| u.ends_with("/calendar/feeds")).await;
    b.check_page("the calendar feeds").await;
    b.type_into("#label", "Edge changes").await;
    b.type_into("#service", "edge-proxy").await;
    b.click("#make-feed").await;
    b.find("#feed-url").await;
    assert!(
        b.attr("#feed-url", "value")
            .await
            .unwrap()
            .contains("/calendar/feed/")
    );
    b.check_page("a feed just made, with its address").await;
    b.goto(&format!("{url}/calendar/feeds")).await;
    b.find("#feeds").await;
    b.check_page("the calendar feeds with one").await;
    b.click("#logout").await;
    b.wait_url(|u| u.ends_with("/login")).await;

    // A CAB member sees the conflicts and the acknowledgement.
    sign_in(&b, &url, "carol", "carol-long-password").await;
    b.goto(&format!("{url}/changes/{}", ids[1])).await;
    b.find("#conflicts").await;
    b.check_page("a change with calendar conflicts").await;
    b.click("#cast-vote").await;
    b.find("#vote-refused").await;
    b.check_page("an approval refused for unacknowledged conflicts")
        .await;
    b.click("#acknowledge_conflicts").await;
    b.click("#cast-vote").await;
    b.wait_url(|u| u.ends_with("#decision")).await;
    b.find("#approval-trail .acknowledged").await;
    b.check_page("a change approved despite its conflicts")
        .await;
    b.goto(&format!("{url}/cab/agenda")).await;
    b.check_page("the CAB agenda with conflicts").await;
    b.close().await;
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_server_log_never_holds_a_feed_address(pool: PgPool) {
    add_user(&pool, "erin", &["engineer"], "erin-long-password");
    let log_path = std::env::temp_dir().join(format!("cab-feed-log-{}.txt", uuid::Uuid::new_v4()));
    let log_file = std::fs::File::create(&log_path).unwrap();
    let (mut server, url) = spawn_server_with(
        &pool,
        "LOCAL",
        Stdio::from(log_file),
        &[("RUST_LOG", "debug,sqlx=warn"), ("NO_COLOR", "1")],
    );
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = http
        .get(format!("{url}/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let signed = http
        .post(format!("{url}/login"))
        .form(&[
            ("_csrf", csrf_in(&login).as_str()),
            ("username", "erin"),
            ("password", "erin-long-password"),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 303);
    let feeds = http
        .get(format!("{url}/calendar/feeds"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let made = http
        .post(format!("{url}/calendar/feeds"))
        .form(&[("_csrf", csrf_in(&feeds).as_str()), ("label", "Mine")])
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let body = made.text().await.unwrap();
    let address = between(
        between(&body, "<input id=\"feed-url\"", ">"),
        "value=\"",
        "\"",
    )
    .to_owned();
    let secret = between(&address, "/calendar/feed/", ".ics").to_owned();
    let anonymous = reqwest::Client::new();
    for path in [
        format!("/calendar/feed/{secret}.ics"),
        format!("/calendar/feed/{secret}"),
    ] {
        let resp = anonymous.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"],
            "text/calendar; charset=utf-8"
        );
    }
    let unknown = anonymous
        .get(format!("{url}/calendar/feed/{}x.ics", &secret[..20]))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(server.terminate().success());
    let log = std::fs::read_to_string(&log_path).unwrap();
    std::fs::remove_file(&log_path).ok();
    assert!(!log.contains(&secret), "the secret is in the log:\n{log}");
    assert!(
        !log.contains(&secret[..20]),
        "part of it is in the log:\n{log}"
    );
    assert!(
        log.contains("/calendar/feed/{token}"),
        "the route is named instead:\n{log}"
    );
}
