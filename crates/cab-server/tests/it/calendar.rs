//! The change calendar through the API, from the user's side and the
//! attacker's: conflicts worked out live from the records, free windows
//! that really are free, maintenance periods and the busy-hour limit kept
//! to release managers, secret feed addresses shown once, and CAB approving
//! a conflicting window only knowingly.

use axum::http::{Method, StatusCode};
use cab_domain::Role;
use chrono::{DateTime, Datelike, Duration, DurationRound, SecondsFormat, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::changes::complete_change;
use crate::common::{ApiClient, TestApp, TestResponse};
use crate::decisions::assessment;
use crate::deployments::request;

/// Midnight UTC `days` from now: windows planned from it are in the future,
/// on a weekday the test can name.
/// The digest of no conflicts: the first half of SHA-256 of nothing.
const NO_CONFLICTS: &str = "e3b0c44298fc1c149afbf4c8996fb924";

fn day(days: i64) -> DateTime<Utc> {
    (Utc::now() + Duration::days(days))
        .duration_trunc(Duration::days(1))
        .unwrap()
}

fn at(day: DateTime<Utc>, hour: i64, minute: i64) -> DateTime<Utc> {
    day + Duration::hours(hour) + Duration::minutes(minute)
}

/// A time as a query string takes it: UTC with `Z`, so nothing needs
/// escaping.
fn z(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A complete low-risk change by `author` to `service` in `envs`, planned
/// for [start, end); submitted unless `draft`. Its (id, key).
async fn planned(
    app: &TestApp,
    author: &ApiClient,
    service: &str,
    envs: &[&str],
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    draft: bool,
) -> (String, String) {
    let mut body = complete_change(&format!("Change {service} at {}", z(start)));
    body["services"] = json!([service]);
    body["environments"] = json!(envs);
    body["window"] = json!({"start": z(start), "end": z(end), "time_zone": "UTC"});
    body["risk"] = json!({"impact": 1, "likelihood": 1});
    body["priority"] = json!("medium");
    let created = app.file_change(author, body).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let key = created["key"].as_str().unwrap().to_owned();
    if !draft {
        let resp = app.change_action(author, &id, "submit", None).await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    }
    (id, key)
}

/// `GET /api/v1/changes/{change}/conflicts`, asserting it answers.
async fn conflicts_of(app: &TestApp, who: &ApiClient, change: &str) -> Value {
    let resp = app
        .api(
            Method::GET,
            &format!("/api/v1/changes/{change}/conflicts"),
            Some(&who.token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    resp.json()
}

/// The kinds of the conflicts in a check's answer, in order.
fn kinds(check: &Value) -> Vec<String> {
    check["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap().to_owned())
        .collect()
}

/// `GET /api/v1/calendar/conflicts` for a proposed window.
async fn check(
    app: &TestApp,
    who: &ApiClient,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    more: &str,
) -> TestResponse {
    app.api(
        Method::GET,
        &format!(
            "/api/v1/calendar/conflicts?start={}&end={}{more}",
            z(start),
            z(end)
        ),
        Some(&who.token),
        None,
    )
    .await
}

/// A validation problem's field, asserting it is one.
fn field(resp: &TestResponse) -> String {
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    assert_eq!(resp.problem_code(), "validation");
    resp.json()["field"].as_str().unwrap_or_default().to_owned()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap()
}

async fn add_period(app: &TestApp, who: &ApiClient, body: Value) -> TestResponse {
    app.api(
        Method::POST,
        "/api/v1/maintenance-periods",
        Some(&who.token),
        Some(body),
    )
    .await
}

async fn set_limit(app: &TestApp, who: &ApiClient, limit: Value) -> TestResponse {
    app.api(
        Method::PUT,
        "/api/v1/calendar/settings",
        Some(&who.token),
        Some(json!({ "production_per_hour": limit })),
    )
    .await
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn overlapping_windows_name_each_other_and_back_to_back_ones_do_not(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let otto = app.api_login("otto", &[Role::Auditor]).await;
    let d = day(10);
    let (a, a_key) = planned(
        &app,
        &erin,
        "edge-proxy",
        &["PROD"],
        (at(d, 10, 0), at(d, 12, 0)),
        false,
    )
    .await;
    let (b, b_key) = planned(
        &app,
        &erin,
        "edge-proxy",
        &["STAGE", "PROD"],
        (at(d, 11, 0), at(d, 13, 0)),
        false,
    )
    .await;
    // Starts the minute the second one ends: no overlap.
    let (c, c_key) = planned(
        &app,
        &erin,
        "edge-proxy",
        &["PROD"],
        (at(d, 13, 0), at(d, 14, 0)),
        false,
    )
    .await;
    // A draft is nobody's plan yet: it holds no window.
    let (_, draft_key) = planned(
        &app,
        &erin,
        "edge-proxy",
        &["PROD"],
        (at(d, 9, 0), at(d, 15, 0)),
        true,
    )
    .await;

    // Each of the overlapping two names the other, for every reader.
    let of_a = conflicts_of(&app, &otto, &a_key).await;
    assert_eq!(kinds(&of_a), ["service_overlap"], "{of_a}");
    let conflict = &of_a["conflicts"][0];
    assert_eq!(conflict["key"], b_key.as_str());
    assert_eq!(conflict["change_id"], b.as_str());
    assert_eq!(conflict["services"], json!(["edge-proxy"]));
    assert_eq!(conflict["environments"], json!(["prod"]));
    assert_eq!(conflict["window"]["start"], json!(at(d, 11, 0)));
    let sentence = conflict["sentence"].as_str().unwrap();
    assert!(sentence.contains(&b_key), "{sentence}");
    assert!(!of_a["free_slots"].as_array().unwrap().is_empty(), "{of_a}");

    let of_b = conflicts_of(&app, &erin, &b).await;
    assert_eq!(kinds(&of_b), ["service_overlap"], "{of_b}");
    assert_eq!(of_b["conflicts"][0]["key"], a_key.as_str());
    assert_eq!(of_b["conflicts"][0]["change_id"], a.as_str());
    assert!(
        of_b["conflicts"][0]["sentence"]
            .as_str()
            .unwrap()
            .contains("CHG-")
    );

    // Back to back is no conflict, either way; the draft is named by nobody.
    let of_c = conflicts_of(&app, &erin, &c).await;
    assert_eq!(
        of_c,
        json!({"conflicts": [], "free_slots": [], "digest": NO_CONFLICTS})
    );
    for v in [&of_a, &of_b] {
        let text = v.to_string();
        assert!(!text.contains(&format!("\"{c_key}\"")), "{text}");
        assert!(!text.contains(&format!("\"{draft_key}\"")), "{text}");
    }

    // Unknown changes are not found.
    let resp = app
        .api(
            Method::GET,
            "/api/v1/changes/CHG-999/conflicts",
            Some(&erin.token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert_eq!(resp.problem_code(), "not_found");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_freeze_over_the_window_shows_at_once_and_goes_when_lifted(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let rita = app.api_login("rita", &[Role::ReleaseManager]).await;
    let d = day(10);
    let (id, key) = planned(
        &app,
        &erin,
        "edge-proxy",
        &["PROD"],
        (at(d, 10, 0), at(d, 11, 0)),
        false,
    )
    .await;
    assert_eq!(
        kinds(&conflicts_of(&app, &erin, &key).await),
        Vec::<String>::new()
    );
    let before: (i32, DateTime<Utc>) =
        sqlx::query_as("SELECT revision, updated_at FROM changes WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();

    let reason = "Year-end trading: nothing goes to production.";
    let resp = app
        .api(
            Method::POST,
            "/api/v1/freezes",
            Some(&rita.token),
            Some(json!({
                "starts_at": z(at(d, 0, 0)),
                "ends_at": z(at(d, 18, 0)),
                "reason": reason,
                "environments": ["prod"],
            })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    let freeze_id = resp.json()["id"].as_str().unwrap().to_owned();

    // Nothing was written to the change; the conflict is worked out now.
    let found = conflicts_of(&app, &erin, &key).await;
    assert_eq!(kinds(&found), ["freeze"], "{found}");
    let conflict = &found["conflicts"][0];
    assert_eq!(conflict["reason"], reason);
    assert_eq!(conflict["environments"], json!(["prod"]));
    assert_eq!(conflict["window"]["end"], json!(at(d, 18, 0)));
    assert!(conflict["sentence"].as_str().unwrap().contains(reason));
    // The free windows start after the freeze.
    let first = &found["free_slots"][0];
    let start: DateTime<Utc> = serde_json::from_value(first["start"].clone()).unwrap();
    assert!(start >= at(d, 18, 0), "{found}");
    let after: (i32, DateTime<Utc>) =
        sqlx::query_as("SELECT revision, updated_at FROM changes WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(after, before);

    // A freeze on another environment is none of its business.
    let other = app
        .api(
            Method::POST,
            "/api/v1/freezes",
            Some(&rita.token),
            Some(json!({
                "starts_at": z(at(d, 0, 0)),
                "ends_at": z(at(d, 18, 0)),
                "reason": "Test lab rewiring, all day.",
                "environments": ["test"],
            })),
        )
        .await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.body);
    assert_eq!(kinds(&conflicts_of(&app, &erin, &key).await), ["freeze"]);

    // Lifted before it starts, it is gone from the check too.
    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/freezes/{freeze_id}/lift"),
            Some(&rita.token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(
        conflicts_of(&app, &erin, &key).await,
        json!({"conflicts": [], "free_slots": [], "digest": NO_CONFLICTS})
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn maintenance_periods_hold_changes_to_their_openings(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let rita = app.api_login("rita", &[Role::ReleaseManager]).await;
    let otto = app.api_login("otto", &[Role::Auditor]).await;
    let d = day(10);
    let weekday = d.weekday().number_from_monday();
    let (_, outside) = planned(
        &app,
        &erin,
        "edge-proxy",
        &["PROD"],
        (at(d, 10, 0), at(d, 11, 0)),
        false,
    )
    .await;
    let (_, inside) = planned(
        &app,
        &erin,
        "edge-proxy",
        &["PROD"],
        (at(d, 2, 30), at(d, 3, 30)),
        false,
    )
    .await;
    // Another service's period says nothing about edge-proxy.
    let resp = add_period(
        &app,
        &rita,
        json!({"service": "billing", "weekdays": [weekday], "starts": "02:00", "minutes": 60}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    assert_eq!(
        kinds(&conflicts_of(&app, &erin, &outside).await),
        Vec::<String>::new()
    );

    let resp = add_period(
        &app,
        &rita,
        json!({"service": "Edge-Proxy", "weekdays": [weekday], "starts": "02:00", "minutes": 120}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    let period = resp.json();
    assert_eq!(period["service"], "edge-proxy");
    assert_eq!(period["weekdays"], json!([weekday]));
    assert_eq!(period["starts"], "02:00");
    assert_eq!(period["minutes"], 120);
    let described = period["described"].as_str().unwrap().to_owned();
    assert!(!described.is_empty());
    let period_id = period["id"].as_str().unwrap().to_owned();
    let (action, payload) = app.audit_events().await.pop().unwrap();
    assert_eq!(action, "maintenance.added");
    assert_eq!(payload["service"], "edge-proxy");

    // Everybody signed in reads them.
    let list = app
        .api(
            Method::GET,
            "/api/v1/maintenance-periods",
            Some(&otto.token),
            None,
        )
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let listed = list.json();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(listed.as_array().unwrap().iter().any(|p| p == &period));

    let found = conflicts_of(&app, &erin, &outside).await;
    assert_eq!(kinds(&found), ["outside_maintenance"], "{found}");
    assert_eq!(found["conflicts"][0]["service"], "edge-proxy");
    assert_eq!(found["conflicts"][0]["periods"], json!([described]));
    assert!(
        found["conflicts"][0]["sentence"]
            .as_str()
            .unwrap()
            .contains("edge-proxy")
    );
    // The windows offered open with the period, in the weeks after.
    let slots = found["free_slots"].as_array().unwrap();
    assert!(!slots.is_empty(), "{found}");
    for slot in slots {
        let start: DateTime<Utc> = serde_json::from_value(slot["start"].clone()).unwrap();
        assert_eq!(start.weekday().number_from_monday(), weekday, "{slot}");
        assert!(z(start).ends_with("T02:00:00Z"), "{slot}");
        assert!(start > d, "{slot}");
    }
    assert_eq!(
        conflicts_of(&app, &erin, &inside).await,
        json!({"conflicts": [], "free_slots": [], "digest": NO_CONFLICTS})
    );

    // Removed, the rule goes with it; removed twice, it is not found.
    let uri = format!("/api/v1/maintenance-periods/{period_id}/remove");
    let resp = app.api(Method::POST, &uri, Some(&rita.token), None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json(), json!({"removed": true}));
    assert_eq!(
        app.audit_events().await.pop().unwrap().0,
        "maintenance.removed"
    );
    assert_eq!(
        kinds(&conflicts_of(&app, &erin, &outside).await),
        Vec::<String>::new()
    );
    let again = app.api(Method::POST, &uri, Some(&rita.token), None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.body);
    let bad = app
        .api(
            Method::POST,
            "/api/v1/maintenance-periods/not-a-uuid/remove",
            Some(&rita.token),
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_production_limit_flags_a_busy_hour(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let rita = app.api_login("rita", &[Role::ReleaseManager]).await;
    let d = day(10);
    let (_, billing) = planned(
        &app,
        &erin,
        "billing",
        &["PROD"],
        (at(d, 10, 0), at(d, 10, 30)),
        false,
    )
    .await;
    let (_, search) = planned(
        &app,
        &erin,
        "search",
        &["PROD"],
        (at(d, 10, 15), at(d, 10, 45)),
        false,
    )
    .await;
    // Not production: not counted.
    let (_, staging) = planned(
        &app,
        &erin,
        "ledger",
        &["STAGE"],
        (at(d, 10, 0), at(d, 10, 30)),
        false,
    )
    .await;

    let settings = app
        .api(
            Method::GET,
            "/api/v1/calendar/settings",
            Some(&erin.token),
            None,
        )
        .await;
    assert_eq!(settings.status, StatusCode::OK, "{}", settings.body);
    assert_eq!(settings.json(), json!({"production_per_hour": null}));
    assert_eq!(
        kinds(&conflicts_of(&app, &erin, &billing).await),
        Vec::<String>::new()
    );

    let resp = set_limit(&app, &rita, json!(1)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json(), json!({"production_per_hour": 1}));
    let (action, payload) = app.audit_events().await.pop().unwrap();
    assert_eq!(action, "settings.calendar_limit_set");
    assert_eq!(payload["before"], Value::Null);
    assert_eq!(payload["after"], 1);
    let settings = app
        .api(
            Method::GET,
            "/api/v1/calendar/settings",
            Some(&erin.token),
            None,
        )
        .await;
    assert_eq!(settings.json(), json!({"production_per_hour": 1}));

    for key in [&billing, &search] {
        let found = conflicts_of(&app, &erin, key).await;
        assert_eq!(kinds(&found), ["busy_hour"], "{key}: {found}");
        let conflict = &found["conflicts"][0];
        assert_eq!(conflict["hour"], json!(at(d, 10, 0)));
        assert_eq!(conflict["count"], 2);
        assert_eq!(conflict["limit"], 1);
        assert!(
            conflict["sentence"]
                .as_str()
                .unwrap()
                .contains("limit is 1")
        );
    }
    assert_eq!(
        kinds(&conflicts_of(&app, &erin, &staging).await),
        Vec::<String>::new()
    );

    // Out of range is refused and changes nothing; null removes the limit.
    for bad in [json!(0), json!(101), json!(-3)] {
        let resp = set_limit(&app, &rita, bad.clone()).await;
        assert_eq!(field(&resp), "production_per_hour", "{bad}");
    }
    let resp = app
        .api(
            Method::PUT,
            "/api/v1/calendar/settings",
            Some(&rita.token),
            Some(json!({})),
        )
        .await;
    assert_eq!(field(&resp), "production_per_hour", "left out is not null");
    let resp = set_limit(&app, &rita, Value::Null).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json(), json!({"production_per_hour": null}));
    assert_eq!(
        kinds(&conflicts_of(&app, &erin, &billing).await),
        Vec::<String>::new()
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn free_slots_offered_for_a_proposed_window_check_clean(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let rita = app.api_login("rita", &[Role::ReleaseManager]).await;
    let d = day(10);
    let (_, booked) = planned(
        &app,
        &erin,
        "edge-proxy",
        &["PROD"],
        (at(d, 10, 0), at(d, 12, 0)),
        false,
    )
    .await;
    let (_, later) = planned(
        &app,
        &erin,
        "edge-proxy",
        &["PROD"],
        (at(d, 12, 0), at(d, 13, 0)),
        false,
    )
    .await;
    set_limit(&app, &rita, json!(2)).await;

    let proposed = (at(d, 10, 30), at(d, 11, 30));
    let resp = check(
        &app,
        &erin,
        proposed,
        "&services=edge-proxy,billing&environments=prod,stage",
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let found = resp.json();
    assert_eq!(kinds(&found), ["service_overlap"], "{found}");
    assert_eq!(found["conflicts"][0]["key"], booked.as_str());
    let slots = found["free_slots"].as_array().unwrap().clone();
    assert!(!slots.is_empty() && slots.len() <= 3, "{found}");
    for slot in &slots {
        let (start, end): (DateTime<Utc>, DateTime<Utc>) = (
            serde_json::from_value(slot["start"].clone()).unwrap(),
            serde_json::from_value(slot["end"].clone()).unwrap(),
        );
        assert_eq!(end - start, Duration::hours(1), "{slot}");
        // Each one offered checks clean.
        let again = check(
            &app,
            &erin,
            (start, end),
            "&services=edge-proxy,billing&environments=PROD,STAGE",
        )
        .await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.body);
        assert_eq!(
            again.json(),
            json!({"conflicts": [], "free_slots": [], "digest": NO_CONFLICTS}),
            "{slot}"
        );
    }
    // Past both bookings, at the earliest.
    let first: DateTime<Utc> = serde_json::from_value(slots[0]["start"].clone()).unwrap();
    assert!(first >= at(d, 13, 0), "{found}");

    // In another environment there is nothing in the way.
    let resp = check(
        &app,
        &erin,
        proposed,
        "&services=edge-proxy&environments=DEV",
    )
    .await;
    assert_eq!(
        resp.json(),
        json!({"conflicts": [], "free_slots": [], "digest": NO_CONFLICTS})
    );
    // Checked for the booked change itself, its own window is no conflict;
    // the next one still is.
    let resp = check(
        &app,
        &erin,
        (at(d, 10, 0), at(d, 12, 0)),
        &format!("&services=edge-proxy&environments=PROD&change={booked}"),
    )
    .await;
    assert_eq!(
        resp.json(),
        json!({"conflicts": [], "free_slots": [], "digest": NO_CONFLICTS}),
        "{}",
        resp.body
    );
    let resp = check(
        &app,
        &erin,
        (at(d, 11, 0), at(d, 12, 30)),
        &format!("&services=edge-proxy&change={booked}"),
    )
    .await;
    assert_eq!(kinds(&resp.json()), ["service_overlap"], "{}", resp.body);
    assert_eq!(resp.json()["conflicts"][0]["key"], later.as_str());
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn only_release_managers_and_administrators_plan_maintenance_and_the_limit(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let otto = app.api_login("otto", &[Role::Auditor]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let adam = app.api_login("adam", &[Role::Admin]).await;
    let period =
        json!({"service": "billing", "weekdays": [6, 7], "starts": "01:00", "minutes": 240});
    let periods = "SELECT count(*) FROM maintenance_periods";
    let limit_rows = "SELECT count(*) FROM settings WHERE key = 'calendar.production_per_hour'";

    for who in [&erin, &otto, &carol] {
        let denied_before = app.denials().await.len();
        let resp = add_period(&app, who, period.clone()).await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
        assert_eq!(resp.problem_code(), "release_manager_required");
        assert_eq!(count(&app, periods).await, 0, "nothing written");
        let denials = app.denials().await;
        assert_eq!(
            denials.len(),
            denied_before + 1,
            "exactly one access.denied"
        );
        assert_eq!(
            denials.last().unwrap(),
            &(
                "maintenance.manage".to_owned(),
                "release_manager_required".to_owned()
            )
        );

        let resp = set_limit(&app, who, json!(3)).await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
        assert_eq!(resp.problem_code(), "release_manager_required");
        assert_eq!(count(&app, limit_rows).await, 0, "nothing written");
        let denials = app.denials().await;
        assert_eq!(
            denials.len(),
            denied_before + 2,
            "exactly one access.denied"
        );
        assert_eq!(denials.last().unwrap().0, "settings.calendar_limit");
        // Refused even when the value is out of range: who asks comes first.
        let resp = set_limit(&app, who, json!(1000)).await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    }

    // An administrator may; a period added by one is removable only by the
    // same roles.
    let resp = add_period(&app, &adam, period.clone()).await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    let id = resp.json()["id"].as_str().unwrap().to_owned();
    let denied_before = app.denials().await.len();
    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/maintenance-periods/{id}/remove"),
            Some(&erin.token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert_eq!(resp.problem_code(), "release_manager_required");
    assert_eq!(count(&app, periods).await, 1, "still there");
    assert_eq!(app.denials().await.len(), denied_before + 1);
    let resp = set_limit(&app, &adam, json!(4)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);

    // Nobody reads anything without signing in.
    for uri in [
        "/api/v1/calendar/settings",
        "/api/v1/maintenance-periods",
        "/api/v1/calendar/feeds",
    ] {
        let resp = app.api(Method::GET, uri, None, None).await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{uri}");
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn bad_input_names_the_field_and_writes_nothing(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let rita = app.api_login("rita", &[Role::ReleaseManager]).await;
    let d = day(10);
    let window = (at(d, 10, 0), at(d, 11, 0));
    let ok = "&services=edge-proxy&environments=PROD";

    // The proposed-window check.
    let resp = check(&app, &erin, (at(d, 11, 0), at(d, 10, 0)), ok).await;
    assert_eq!(field(&resp), "end");
    let resp = check(&app, &erin, (at(d, 10, 0), at(d, 10, 0)), ok).await;
    assert_eq!(field(&resp), "end");
    let resp = check(
        &app,
        &erin,
        (at(d, 0, 0), at(d + Duration::days(32), 0, 0)),
        ok,
    )
    .await;
    assert_eq!(field(&resp), "end");
    let resp = check(
        &app,
        &erin,
        window,
        "&services=edge-proxy&environments=PROD,MOON",
    )
    .await;
    assert_eq!(field(&resp), "environments");
    assert!(resp.json()["detail"].as_str().unwrap().contains("'MOON'"));
    let resp = check(&app, &erin, window, "&services=Edge%20Proxy!").await;
    assert_eq!(field(&resp), "services");
    let resp = check(&app, &erin, window, "&services=").await;
    assert_eq!(field(&resp), "services");
    let many: Vec<String> = (0..21).map(|i| format!("svc-{i}")).collect();
    let resp = check(
        &app,
        &erin,
        window,
        &format!("&services={}", many.join(",")),
    )
    .await;
    assert_eq!(field(&resp), "services");
    let twenty = many[..20].join(",");
    let resp = check(&app, &erin, window, &format!("&services={twenty}")).await;
    assert_eq!(
        resp.status,
        StatusCode::OK,
        "twenty is allowed: {}",
        resp.body
    );
    let resp = check(&app, &erin, window, "&services=edge-proxy&change=CHG-404").await;
    assert_eq!(field(&resp), "change");
    for (query, expected) in [
        (
            "start=tomorrow&end=2026-12-01T10:00:00Z&services=a",
            "start",
        ),
        ("start=2026-12-01T10:00:00Z&services=a", "end"),
        // An offset's + read as a space: said plainly, not guessed at.
        (
            "start=2026-12-01T10:00:00+01:00&end=2026-12-01T12:00:00Z&services=a",
            "start",
        ),
        (
            "start=2026-12-01T10:00:00Z&end=2026-12-01T12:00:00Z&services=a&services=b",
            "query",
        ),
    ] {
        let resp = app
            .api(
                Method::GET,
                &format!("/api/v1/calendar/conflicts?{query}"),
                Some(&erin.token),
                None,
            )
            .await;
        assert_eq!(field(&resp), expected, "{query}");
    }
    let resp = app
        .api(
            Method::GET,
            "/api/v1/calendar/conflicts?start=2026-12-01T10:00:00%2B01:00&end=2026-12-01T12:00:00Z&services=a",
            Some(&erin.token),
            None,
        )
        .await;
    assert_eq!(
        resp.status,
        StatusCode::OK,
        "an escaped offset: {}",
        resp.body
    );

    // The calendar's period and filters.
    let calendar = |from: DateTime<Utc>, to: DateTime<Utc>, more: &str| {
        format!("/api/v1/calendar?from={}&to={}{more}", z(from), z(to))
    };
    for (uri, expected) in [
        (calendar(d, d + Duration::days(93), ""), "to"),
        (calendar(d, d, ""), "to"),
        (calendar(d + Duration::days(1), d, ""), "to"),
        (
            calendar(d, d + Duration::days(7), "&environment=MOON"),
            "environment",
        ),
        (calendar(d, d + Duration::days(7), "&state=draft"), "state"),
        (calendar(d, d + Duration::days(7), "&risk=extreme"), "risk"),
        (
            calendar(d, d + Duration::days(7), "&service=Not%20A%20Service"),
            "service",
        ),
        (format!("/api/v1/calendar?to={}", z(d)), "from"),
    ] {
        let resp = app.api(Method::GET, &uri, Some(&erin.token), None).await;
        assert_eq!(field(&resp), expected, "{uri}");
    }
    let resp = app
        .api(
            Method::GET,
            &calendar(d, d + Duration::days(92), ""),
            Some(&erin.token),
            None,
        )
        .await;
    assert_eq!(
        resp.status,
        StatusCode::OK,
        "92 days is allowed: {}",
        resp.body
    );

    // Maintenance periods: every field at fault, and nothing written.
    let good = json!({"service": "billing", "weekdays": [2, 4], "starts": "02:00", "minutes": 60});
    for (change, expected) in [
        (json!({"minutes": 5}), "minutes"),
        (json!({"minutes": 10081}), "minutes"),
        (json!({"weekdays": [8]}), "weekdays"),
        (json!({"weekdays": []}), "weekdays"),
        (json!({"starts": "25:00"}), "starts"),
        (json!({"service": "Billing Service"}), "service"),
    ] {
        let mut body = good.clone();
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let resp = add_period(&app, &rita, body).await;
        assert_eq!(field(&resp), expected, "{change}");
    }
    let resp = add_period(&app, &rita, json!({"service": "billing", "owner": "me"})).await;
    assert_eq!(field(&resp), "owner");
    assert_eq!(
        count(&app, "SELECT count(*) FROM maintenance_periods").await,
        0
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_events WHERE action = 'maintenance.added'"
        )
        .await,
        0
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_calendar_shows_what_is_planned_in_a_period(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let otto = app.api_login("otto", &[Role::Auditor]).await;
    // Approved, with its window open now, and deployed to DEV.
    let approved = app.approved_change(&c.erin, &c.carol).await;
    let deployed = app
        .deploy(&c.pipeline, request(&approved, "dev", None))
        .await;
    let d = day(3);
    let (_, billing) = planned(
        &app,
        &c.erin,
        "billing",
        &["PROD"],
        (at(d, 10, 0), at(d, 11, 0)),
        false,
    )
    .await;
    let (_, draft) = planned(
        &app,
        &c.erin,
        "billing",
        &["PROD"],
        (at(d, 12, 0), at(d, 13, 0)),
        true,
    )
    .await;
    let resp = app
        .api(
            Method::POST,
            "/api/v1/freezes",
            Some(&c.rita.token),
            Some(json!({
                "starts_at": z(at(d, 0, 0)),
                "ends_at": z(at(d, 6, 0)),
                "reason": "Billing run, hands off the ledger.",
                "services": ["billing"],
            })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    let resp = add_period(
        &app,
        &c.rita,
        json!({"service": "billing", "weekdays": [1, 2, 3, 4, 5, 6, 7], "starts": "09:00", "minutes": 180}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);

    let from = day(-1);
    let to = day(7);
    let uri = |more: &str| format!("/api/v1/calendar?from={}&to={}{more}", z(from), z(to));
    let resp = app
        .api(Method::GET, &uri(""), Some(&otto.token), None)
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let cal = resp.json();
    assert_eq!(cal["from"], json!(from));
    assert_eq!(cal["to"], json!(to));
    assert_eq!(cal["truncated"], false);
    let keys: Vec<&str> = cal["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["CHG-1", billing.as_str()],
        "drafts are left out: {cal}"
    );
    assert!(!keys.contains(&draft.as_str()));
    let first = &cal["changes"][0];
    assert_eq!(first["id"], approved.as_str());
    assert_eq!(first["state"], "approved");
    assert_eq!(first["state_label"], "Approved");
    assert_eq!(first["risk"], "low");
    assert_eq!(first["risk_label"], "Low");
    assert_eq!(first["services"], json!(["edge-proxy"]));
    assert_eq!(first["environments"], json!(["STAGE", "PROD"]));
    assert_eq!(first["revision"], 1);
    assert_eq!(first["url"], "/changes/CHG-1");
    let dep = &cal["deployments"][0];
    assert_eq!(cal["deployments"].as_array().unwrap().len(), 1, "{cal}");
    assert_eq!(dep["key"], deployed["key"]);
    assert_eq!(dep["change"], "CHG-1");
    assert_eq!(dep["environment"], "dev");
    assert_eq!(dep["state"], "succeeded");
    assert_eq!(dep["finished_at"], deployed["finished_at"]);
    assert_eq!(
        dep["url"],
        format!("/deployments/{}", deployed["key"].as_str().unwrap())
    );
    let freeze = &cal["freezes"][0];
    assert_eq!(freeze["services"], json!(["billing"]));
    assert_eq!(freeze["environments"], json!([]));
    assert_eq!(freeze["lifted"], false);
    let openings = cal["maintenance"].as_array().unwrap();
    assert!(openings.len() >= 7, "{cal}");
    assert!(openings.iter().all(|o| o["service"] == "billing"));
    assert_eq!(
        serde_json::from_value::<DateTime<Utc>>(openings[1]["ends_at"].clone()).unwrap()
            - serde_json::from_value::<DateTime<Utc>>(openings[1]["starts_at"].clone()).unwrap(),
        Duration::minutes(180)
    );

    // Narrowed to a service: the other service's change and its deployment go.
    let resp = app
        .api(
            Method::GET,
            &uri("&service=billing"),
            Some(&c.erin.token),
            None,
        )
        .await;
    let cal = resp.json();
    assert_eq!(cal["changes"].as_array().unwrap().len(), 1, "{cal}");
    assert_eq!(cal["changes"][0]["key"], billing.as_str());
    assert_eq!(cal["deployments"], json!([]));
    assert_eq!(cal["freezes"].as_array().unwrap().len(), 1);
    // Narrowed to a state and an environment.
    let resp = app
        .api(
            Method::GET,
            &uri("&state=approved&environment=prod"),
            Some(&c.erin.token),
            None,
        )
        .await;
    let cal = resp.json();
    assert_eq!(cal["changes"].as_array().unwrap().len(), 1, "{cal}");
    assert_eq!(cal["changes"][0]["key"], "CHG-1");
    assert_eq!(cal["maintenance"].as_array().unwrap().len(), openings.len());
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_feed_shows_its_address_once_and_stops_when_revoked(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let frank = app.api_login("frank", &[Role::Engineer]).await;
    let adam = app.api_login("adam", &[Role::Admin]).await;
    let d = day(10);
    let (_, key) = planned(
        &app,
        &erin,
        "edge-proxy",
        &["PROD"],
        (at(d, 10, 0), at(d, 11, 0)),
        false,
    )
    .await;

    let resp = app
        .api(
            Method::POST,
            "/api/v1/calendar/feeds",
            Some(&erin.token),
            Some(json!({"label": "Edge changes", "service": "edge-proxy", "environment": "prod"})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    let feed = resp.json();
    let id = feed["id"].as_str().unwrap().to_owned();
    assert_eq!(feed["label"], "Edge changes");
    assert_eq!(
        feed["filters"],
        json!({"service": "edge-proxy", "environment": "PROD", "risk": null, "state": null})
    );
    assert_eq!(feed["live"], true);
    assert_eq!(feed["revoked_at"], Value::Null);
    let url = feed["url"].as_str().unwrap().to_owned();
    let public = &app.state.settings.public_url;
    let path = url.strip_prefix(public.as_str()).unwrap().to_owned();
    let secret = path
        .strip_prefix("/calendar/feed/")
        .and_then(|s| s.strip_suffix(".ics"))
        .unwrap()
        .to_owned();
    assert!(secret.len() >= 32, "{url}");

    // The address is never shown again, nor kept in the trail.
    let list = app
        .api(
            Method::GET,
            "/api/v1/calendar/feeds",
            Some(&erin.token),
            None,
        )
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert!(!list.body.contains(&secret), "{}", list.body);
    assert_eq!(list.json()[0]["id"], id.as_str());
    assert_eq!(list.json()[0].get("url"), None);
    let trail: Vec<String> = app
        .audit_events()
        .await
        .iter()
        .map(|(a, p)| format!("{a} {p}"))
        .collect();
    assert!(trail.iter().any(|e| e.starts_with("calendar.feed_created")));
    assert!(trail.iter().all(|e| !e.contains(&secret)));
    // Each person sees their own feeds only.
    let theirs = app
        .api(
            Method::GET,
            "/api/v1/calendar/feeds",
            Some(&frank.token),
            None,
        )
        .await;
    assert_eq!(theirs.json(), json!([]));

    // Read without any credentials, as a calendar application does.
    let ics = app.get_page(&path, None).await;
    assert_eq!(ics.status, StatusCode::OK, "{}", ics.body);
    assert_eq!(
        ics.header("content-type"),
        Some("text/calendar; charset=utf-8")
    );
    assert!(ics.body.starts_with("BEGIN:VCALENDAR\r\n"), "{}", ics.body);
    assert!(ics.body.contains(&key), "{}", ics.body);
    assert!(ics.body.ends_with("END:VCALENDAR\r\n"));
    assert!(
        !ics.body.replace("\r\n", "").contains('\n'),
        "every line ends with CRLF"
    );

    // Somebody else cannot revoke it, or learn that it exists.
    let revoke = format!("/api/v1/calendar/feeds/{id}/revoke");
    let resp = app
        .api(Method::POST, &revoke, Some(&frank.token), None)
        .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND, "{}", resp.body);
    let unknown = app
        .api(
            Method::POST,
            "/api/v1/calendar/feeds/00000000-0000-0000-0000-000000000000/revoke",
            Some(&frank.token),
            None,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    // The same answer as for a feed that does not exist.
    assert_eq!(unknown.json()["detail"], resp.json()["detail"]);
    assert_eq!(unknown.problem_code(), resp.problem_code());
    assert_eq!(app.get_page(&path, None).await.status, StatusCode::OK);

    // Its owner revokes it: the address stops answering.
    let resp = app
        .api(Method::POST, &revoke, Some(&erin.token), None)
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["live"], false);
    assert!(resp.json()["revoked_at"].is_string());
    assert_eq!(resp.json().get("url"), None);
    assert_eq!(
        app.audit_events().await.pop().unwrap().0,
        "calendar.feed_revoked"
    );
    assert_eq!(
        app.get_page(&path, None).await.status,
        StatusCode::NOT_FOUND
    );
    let again = app
        .api(Method::POST, &revoke, Some(&erin.token), None)
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert_eq!(again.problem_code(), "feed_revoked");
    // A made-up address is not found either.
    let made_up = format!("/calendar/feed/{}.ics", "A".repeat(secret.len()));
    assert_eq!(
        app.get_page(&made_up, None).await.status,
        StatusCode::NOT_FOUND
    );

    // Bad filters are named; service accounts have no calendar.
    let resp = app
        .api(
            Method::POST,
            "/api/v1/calendar/feeds",
            Some(&erin.token),
            Some(json!({"environment": "MOON"})),
        )
        .await;
    assert_eq!(field(&resp), "environment");
    let resp = app
        .api(
            Method::POST,
            "/api/v1/calendar/feeds",
            Some(&erin.token),
            Some(json!({"label": "x".repeat(101)})),
        )
        .await;
    assert_eq!(field(&resp), "label");
    let bot = app.pipeline_client(&adam, "deploy-bot", &["dev"]).await;
    let denied_before = app.denials().await.len();
    let resp = app
        .api(
            Method::POST,
            "/api/v1/calendar/feeds",
            Some(&bot.token),
            Some(json!({})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert_eq!(resp.problem_code(), "person_required");
    assert_eq!(count(&app, "SELECT count(*) FROM calendar_feeds").await, 1);
    let denials = app.denials().await;
    assert_eq!(denials.len(), denied_before + 1, "the refusal is recorded");
    assert_eq!(
        denials.last().unwrap(),
        &(
            "calendar.feed_create".to_owned(),
            "person_required".to_owned()
        )
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn cab_approves_a_conflicting_window_only_by_acknowledging_it(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let sam = app.api_login("sam", &[Role::SecurityReviewer]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let d = day(10);
    let (id, _) = planned(
        &app,
        &erin,
        "edge-proxy",
        &["PROD"],
        (at(d, 10, 0), at(d, 12, 0)),
        false,
    )
    .await;
    let (_, other) = planned(
        &app,
        &erin,
        "edge-proxy",
        &["PROD"],
        (at(d, 11, 0), at(d, 13, 0)),
        false,
    )
    .await;

    // Into CAB review through an accepting security assessment.
    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/changes/{id}/assessment/start"),
            Some(&sam.token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let resp = app.assess(&sam, &id, assessment("accept", "low")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["state"], "in_cab_review");
    let revision = resp.json()["revision"].as_i64().unwrap();

    let votes = "SELECT count(*) FROM change_votes";
    let denied_before = app.denials().await.len();
    let vote = |ack: Option<bool>| {
        let mut body = json!({"vote": "approve", "comment": "", "revision": revision});
        if let Some(ack) = ack {
            body["acknowledge_conflicts"] = json!(ack);
        }
        body
    };
    for ack in [None, Some(false)] {
        let resp = app
            .api(
                Method::POST,
                &format!("/api/v1/changes/{id}/votes"),
                Some(&carol.token),
                Some(vote(ack)),
            )
            .await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
        assert_eq!(resp.problem_code(), "conflicts_not_acknowledged");
        assert!(resp.json()["detail"].as_str().unwrap().contains(&other));
        assert_eq!(count(&app, votes).await, 0, "no vote recorded");
    }
    let denials = app.denials().await;
    assert_eq!(denials.len(), denied_before + 2, "one access.denied each");
    assert_eq!(
        denials.last().unwrap(),
        &(
            "change.vote".to_owned(),
            "conflicts_not_acknowledged".to_owned()
        )
    );

    // A digest of conflicts other than those standing now: what the member
    // read is not what they would accept.
    let mut stale = vote(Some(true));
    stale["conflicts_digest"] = json!("0".repeat(32));
    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/changes/{id}/votes"),
            Some(&carol.token),
            Some(stale),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert_eq!(resp.problem_code(), "conflicts_not_acknowledged");
    assert!(
        resp.json()["detail"]
            .as_str()
            .unwrap()
            .contains("changed after you read them"),
        "{}",
        resp.body
    );
    assert_eq!(count(&app, votes).await, 0, "no vote recorded");

    let mut current = vote(Some(true));
    current["conflicts_digest"] = conflicts_of(&app, &carol, &id).await["digest"].clone();
    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/changes/{id}/votes"),
            Some(&carol.token),
            Some(current),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let acknowledged: Value = sqlx::query_scalar(
        "SELECT acknowledged_conflicts FROM change_votes WHERE change_id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let list = acknowledged.as_array().unwrap();
    assert!(!list.is_empty(), "{acknowledged}");
    assert_eq!(list[0]["kind"], "service_overlap");
    assert!(list[0]["sentence"].as_str().unwrap().contains(&other));
    let (_, payload) = app
        .audit_events()
        .await
        .into_iter()
        .rfind(|(a, _)| a == "change.voted")
        .unwrap();
    assert_eq!(payload["acknowledged_conflicts"], acknowledged);
}

/// Approvals given before a conflict arose do not carry the change over
/// it: when the assessment completes the quorum, the decision waits for a
/// vote that acknowledges the conflict.
#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_conflict_arising_after_the_votes_holds_the_approval(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let sam = app.api_login("sam", &[Role::SecurityReviewer]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let carl = app.api_login("carl", &[Role::CabMember]).await;
    let d = day(12);
    // High risk: two approvals and a security assessment.
    let mut body = complete_change("Rebuild the edge proxy fleet");
    body["services"] = json!(["edge-proxy"]);
    body["environments"] = json!(["PROD"]);
    body["window"] = json!({"start": z(at(d, 10, 0)), "end": z(at(d, 12, 0)), "time_zone": "UTC"});
    body["risk"] = json!({"impact": 3, "likelihood": 3});
    let created = app.file_change(&erin, body).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let resp = app.change_action(&erin, &id, "submit", None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert!(
        conflicts_of(&app, &carol, &id).await["conflicts"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Both members approve while nothing collides; the assessment is still
    // to come.
    for member in [&carol, &carl] {
        let resp = app.vote(member, &id, "approve", "").await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
        assert_ne!(resp.json()["state"], "approved", "{}", resp.body);
    }
    // Then another change takes the same hours on the same service.
    let (_, other) = planned(
        &app,
        &erin,
        "edge-proxy",
        &["PROD"],
        (at(d, 11, 0), at(d, 13, 0)),
        false,
    )
    .await;
    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/changes/{id}/assessment/start"),
            Some(&sam.token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let resp = app.assess(&sam, &id, assessment("accept", "high")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["state"], "in_cab_review", "{}", resp.body);
    let approvals = app.approvals(&carol, &id).await;
    assert!(
        approvals
            .to_string()
            .contains("acknowledges the calendar conflicts"),
        "{approvals}"
    );
    // A vote that acknowledges it decides.
    let resp = app.vote(&carol, &id, "approve", "").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["state"], "approved", "{}", resp.body);
    let (_, payload) = app
        .audit_events()
        .await
        .into_iter()
        .rfind(|(a, _)| a == "change.voted")
        .unwrap();
    assert!(
        payload["acknowledged_conflicts"]
            .to_string()
            .contains(&other),
        "{payload}"
    );
}
