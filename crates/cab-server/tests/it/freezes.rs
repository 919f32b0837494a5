//! Freezes and the environments page: release managers and administrators
//! declare and lift freezes, the gate holds to them, everybody else is
//! refused and recorded; administrators change the environments' rules on
//! a page that says them in words.

use axum::http::{Method, StatusCode};
use cab_domain::Role;
use chrono::{Duration, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::{ApiClient, BrowserSession, TestApp, TestResponse};
use crate::deployments::{reason_codes, request};

const REASON: &str = "Black Friday trading weekend";

/// The fields a validation problem names.
fn fields(resp: &TestResponse) -> Vec<String> {
    resp.json()["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

impl TestApp {
    async fn declare(&self, who: &ApiClient, body: Value) -> TestResponse {
        self.api(
            Method::POST,
            "/api/v1/freezes",
            Some(&who.token),
            Some(body),
        )
        .await
    }

    async fn lift(&self, who: &ApiClient, id: &str) -> TestResponse {
        self.api(
            Method::POST,
            &format!("/api/v1/freezes/{id}/lift"),
            Some(&who.token),
            None,
        )
        .await
    }

    async fn freeze_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM freezes")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn lifted_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM freezes WHERE lifted_at IS NOT NULL")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

/// A freeze on PROD from now for an hour.
fn prod_freeze() -> Value {
    json!({
        "ends_at": (Utc::now() + Duration::hours(1)).to_rfc3339(),
        "reason": REASON,
        "environments": ["prod"],
    })
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_declared_freeze_stops_the_gate_and_lifting_it_lets_the_deployment_through(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let id = app.approved_change(&c.erin, &c.carol).await;
    app.promote_to_stage(&c.pipeline, &id).await;

    let resp = app.declare(&c.rita, prod_freeze()).await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    let freeze = resp.json();
    let freeze_id = freeze["id"].as_str().unwrap().to_owned();
    assert_eq!(freeze["status"], "in_force");
    assert_eq!(freeze["environment_labels"], json!(["PROD"]));
    assert_eq!(freeze["all_services"], true);
    assert_eq!(freeze["declared_by"], "rita");
    assert_eq!(freeze["past"], false);
    let (action, payload) = app.audit_events().await.pop().unwrap();
    assert_eq!(action, "freeze.declared");
    assert_eq!(payload["reason"], REASON);
    assert_eq!(payload["environment_labels"], json!(["PROD"]));
    assert_eq!(payload["all_services"], true);

    // The gate names the freeze, with its reason.
    let resp = app
        .gate(&c.pipeline, request(&id, "prod", Some("rita")))
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert_eq!(reason_codes(&resp), ["freeze_in_force"], "{}", resp.body);
    assert!(resp.json()["detail"].as_str().unwrap().contains(REASON));

    // Everybody signed in sees it.
    let list = app
        .api(Method::GET, "/api/v1/freezes", Some(&c.erin.token), None)
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert_eq!(list.json().as_array().unwrap().len(), 1);
    let one = app
        .api(
            Method::GET,
            &format!("/api/v1/freezes/{freeze_id}"),
            Some(&c.erin.token),
            None,
        )
        .await;
    assert_eq!(one.json()["reason"], REASON);

    // Lifted, it is over and the deployment goes through.
    let resp = app.lift(&c.rita, &freeze_id).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["status"], "lifted");
    assert_eq!(resp.json()["lifted_by"], "rita");
    let (action, payload) = app.audit_events().await.pop().unwrap();
    assert_eq!(action, "freeze.lifted");
    assert_eq!(payload["was"], "in_force");
    let resp = app
        .gate(&c.pipeline, request(&id, "prod", Some("rita")))
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);

    // Lifting it again is a conflict, said plainly.
    let again = app.lift(&c.adam, &freeze_id).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert_eq!(again.problem_code(), "freeze_already_lifted");
    assert!(
        again.json()["detail"]
            .as_str()
            .unwrap()
            .contains("already lifted")
    );

    // Over, it is listed only when asked for, marked past.
    let list = app
        .api(Method::GET, "/api/v1/freezes", Some(&c.erin.token), None)
        .await;
    assert_eq!(list.json(), json!([]));
    let list = app
        .api(
            Method::GET,
            "/api/v1/freezes?include_past=true",
            Some(&c.erin.token),
            None,
        )
        .await;
    assert_eq!(list.json()[0]["id"], freeze_id.as_str());
    assert_eq!(list.json()[0]["past"], true);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_freeze_to_come_can_be_lifted_before_it_starts_and_an_ended_one_cannot(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let rita = app.api_login("rita", &[Role::ReleaseManager]).await;
    let now = Utc::now();
    let resp = app
        .declare(
            &rita,
            json!({
                "starts_at": (now + Duration::days(2)).to_rfc3339(),
                "ends_at": (now + Duration::days(3)).to_rfc3339(),
                "reason": "Data centre move, all hands",
                "services": ["Billing", "edge-proxy"],
            }),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    let f = resp.json();
    assert_eq!(f["status"], "upcoming");
    assert_eq!(f["all_environments"], true);
    assert_eq!(f["services"], json!(["billing", "edge-proxy"]));
    let id = f["id"].as_str().unwrap();
    let resp = app.lift(&rita, id).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["status"], "lifted");
    // Nothing reads it as a period ahead any more.
    let ahead: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM freezes WHERE ends_at > now() + interval '1 second'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(ahead, 0);

    // One that ran out on its own has nothing left to lift.
    sqlx::query(
        "INSERT INTO freezes (id, starts_at, ends_at, reason, created_by, created_at)
         SELECT gen_random_uuid(), now() - interval '2 hours', now() - interval '1 hour',
                'Last week''s freeze', id, now() FROM users WHERE username = 'rita'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let ended: uuid::Uuid = sqlx::query_scalar("SELECT id FROM freezes WHERE lifted_at IS NULL")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let resp = app.lift(&rita, &ended.to_string()).await;
    assert_eq!(resp.status, StatusCode::CONFLICT, "{}", resp.body);
    assert_eq!(resp.problem_code(), "freeze_ended");
    let missing = app.lift(&rita, &uuid::Uuid::new_v4().to_string()).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn engineers_cab_members_and_auditors_cannot_declare_or_lift_a_freeze(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let rita = app.api_login("rita", &[Role::ReleaseManager]).await;
    let declared = app.declare(&rita, prod_freeze()).await;
    assert_eq!(declared.status, StatusCode::CREATED, "{}", declared.body);
    let freeze_id = declared.json()["id"].as_str().unwrap().to_owned();
    for (name, role) in [
        ("erin", Role::Engineer),
        ("carol", Role::CabMember),
        ("audrey", Role::Auditor),
    ] {
        let who = app.api_login(name, &[role]).await;
        let events = app.audit_count().await;

        let resp = app.declare(&who, prod_freeze()).await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "{name}: {}", resp.body);
        assert_eq!(resp.problem_code(), "release_manager_required");
        assert!(
            resp.json()["detail"]
                .as_str()
                .unwrap()
                .contains("Only release managers and administrators"),
            "{}",
            resp.body
        );
        assert_eq!(app.freeze_count().await, 1, "{name}: nothing declared");
        assert_eq!(app.audit_count().await, events + 1, "{name}: one event");
        assert_eq!(
            app.denials().await.pop().unwrap(),
            (
                "freeze.declare".to_owned(),
                "release_manager_required".to_owned()
            )
        );

        let resp = app.lift(&who, &freeze_id).await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "{name}: {}", resp.body);
        assert_eq!(resp.problem_code(), "release_manager_required");
        assert_eq!(app.lifted_count().await, 0, "{name}: nothing lifted");
        assert_eq!(app.audit_count().await, events + 2, "{name}: one event");
        let (action, payload) = app.audit_events().await.pop().unwrap();
        assert_eq!(action, "access.denied");
        assert_eq!(payload["attempted"], "freeze.lift");
        assert_eq!(payload["reason"], "release_manager_required");
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_bad_freeze_names_every_field_at_fault_and_writes_nothing(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let adam = app.api_login("adam", &[Role::Admin]).await;
    let events = app.audit_count().await;
    let now = Utc::now();
    let at = |h: i64| (now + Duration::hours(h)).to_rfc3339();
    for (body, expected) in [
        (
            json!({"starts_at": at(3), "ends_at": at(2), "reason": REASON}),
            vec!["ends_at"],
        ),
        (
            json!({"ends_at": at(2), "reason": REASON, "environments": ["moon"]}),
            vec!["environments"],
        ),
        (json!({"ends_at": at(2), "reason": ""}), vec!["reason"]),
        (
            json!({"ends_at": at(2), "reason": "   too short "}),
            vec!["reason"],
        ),
        (json!({"reason": REASON}), vec!["ends_at"]),
        (
            json!({"ends_at": at(-1), "reason": REASON}),
            vec!["ends_at"],
        ),
        (
            json!({"ends_at": at(2), "reason": REASON, "services": ["Not A Service"]}),
            vec!["services"],
        ),
        (
            json!({"starts_at": at(3), "ends_at": at(2), "reason": "", "environments": ["moon"]}),
            vec!["ends_at", "reason", "environments"],
        ),
        (
            json!({"ends_at": "next tuesday", "reason": REASON}),
            vec!["body"],
        ),
        (
            json!({"ends_at": at(2), "reason": REASON, "lifted_at": at(1)}),
            vec!["lifted_at"],
        ),
    ] {
        let resp = app.declare(&adam, body.clone()).await;
        assert_eq!(
            resp.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            resp.body
        );
        assert_eq!(resp.problem_code(), "validation");
        assert_eq!(fields(&resp), expected, "{body}: {}", resp.body);
    }
    assert_eq!(app.freeze_count().await, 0, "nothing written");
    assert_eq!(app.audit_count().await, events, "nothing recorded");
}

/// The fields of the declare form.
fn freeze_form<'a>(csrf: &'a str, ends_at: &'a str, reason: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("_csrf", csrf),
        ("starts_at", ""),
        ("ends_at", ends_at),
        ("reason", reason),
        ("environments", "prod"),
        ("services", ""),
    ]
}

async fn page_with_notice(app: &TestApp, s: &BrowserSession, resp: &TestResponse) -> String {
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    let to = resp.header("location").unwrap().to_owned();
    let notice = resp.cookie("cab_notice").expect("a notice");
    let page = app
        .get_page(&to, Some(&format!("{}; cab_notice={notice}", s.cookie)))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.body
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_freeze_page_declares_and_lifts_for_release_managers_and_refuses_others(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.browser_login("erin", &[Role::Engineer]).await;
    let rita = app.browser_login("rita", &[Role::ReleaseManager]).await;
    let ends = (Utc::now() + Duration::hours(4))
        .format("%Y-%m-%dT%H:%M")
        .to_string();

    // An engineer sees the freezes but no form, and a forged post is
    // refused, shown and recorded.
    let page = app.get_page("/freezes", Some(&erin.cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("No freeze is in force"));
    assert!(!page.body.contains("id=\"freeze-form\""));
    assert!(
        page.body
            .contains("<a href=\"/freezes\" aria-current=\"page\">Freezes</a>")
    );
    let events = app.audit_count().await;
    let resp = app
        .post_form(
            "/freezes",
            Some(&erin.cookie),
            &freeze_form(&erin.csrf, &ends, REASON),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert!(
        resp.body
            .contains("Only release managers and administrators declare or lift freezes."),
        "{}",
        resp.body
    );
    assert!(
        resp.body
            .contains("href=\"/freezes\" id=\"error-back\">Back to the freezes")
    );
    assert_eq!(app.freeze_count().await, 0);
    assert_eq!(app.audit_count().await, events + 1);
    assert_eq!(
        app.denials().await,
        [(
            "freeze.declare".to_owned(),
            "release_manager_required".to_owned()
        )]
    );

    // A release manager's bad form comes back with each error beside its
    // field and what was typed kept.
    let page = app.get_page("/freezes", Some(&rita.cookie)).await;
    assert!(page.body.contains("id=\"freeze-form\""));
    let resp = app
        .post_form(
            "/freezes",
            Some(&rita.cookie),
            &[
                ("_csrf", rita.csrf.as_str()),
                ("starts_at", "not a time"),
                ("ends_at", ends.as_str()),
                ("reason", "Too short"),
                ("environments", "prod"),
            ],
        )
        .await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    let html = &resp.body;
    assert!(html.contains("<a href=\"#reason\">Reason: "), "{html}");
    assert!(html.contains("<a href=\"#starts_at\">Starts: "), "{html}");
    assert!(html.contains("<p class=\"field-error\" id=\"reason-error\">"));
    assert!(
        html.contains("<p class=\"field-error\" id=\"starts_at-error\">Give a date and a time")
    );
    assert!(html.contains(
        "id=\"reason\" name=\"reason\" rows=\"3\" maxlength=\"500\" aria-invalid=\"true\" aria-describedby=\"reason-error\">Too short</textarea>"
    ));
    assert!(
        html.contains("value=\"prod\" checked"),
        "the choice is kept"
    );
    assert_eq!(app.freeze_count().await, 0);

    // A good one: declared, said so once, listed in words.
    let resp = app
        .post_form(
            "/freezes",
            Some(&rita.cookie),
            &freeze_form(&rita.csrf, &ends, REASON),
        )
        .await;
    let html = page_with_notice(&app, &rita, &resp).await;
    assert!(html.contains("id=\"notice\">Freeze declared."), "{html}");
    assert!(html.contains(REASON));
    assert!(html.contains("All services"));
    assert!(html.contains("<span class=\"environment environment-prod\">PROD</span>"));
    assert!(html.contains("In force; ends in 3 hours"), "{html}");
    assert!(html.contains(">Lift now</button>"));
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM freezes")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    // The engineer sees it, with no button, and cannot lift it either.
    let page = app.get_page("/freezes", Some(&erin.cookie)).await;
    assert!(page.body.contains(REASON));
    assert!(!page.body.contains("Lift now"));
    let resp = app
        .post_form(
            &format!("/freezes/{id}/lift"),
            Some(&erin.cookie),
            &[("_csrf", erin.csrf.as_str())],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert_eq!(app.lifted_count().await, 0);

    // Lifted from the page.
    let resp = app
        .post_form(
            &format!("/freezes/{id}/lift"),
            Some(&rita.cookie),
            &[("_csrf", rita.csrf.as_str())],
        )
        .await;
    let html = page_with_notice(&app, &rita, &resp).await;
    assert!(html.contains("id=\"notice\">Freeze lifted."), "{html}");
    assert!(html.contains("Lifted by rita"), "{html}");
    assert_eq!(app.lifted_count().await, 1);
    // The audit trail tells it in words.
    let adam = app.browser_login("adam", &[Role::Admin]).await;
    let trail = app.get_page("/audit", Some(&adam.cookie)).await;
    assert!(
        trail
            .body
            .contains("declared a freeze: “Black Friday trading weekend”.")
    );
    assert!(
        trail
            .body
            .contains("lifted the freeze “Black Friday trading weekend”.")
    );
    assert!(
        trail
            .body
            .contains("tried to declare a freeze and was refused")
    );
}

/// The environments form as it comes: DEV, TEST, STAGE and PROD as the
/// migration makes them, PROD's soak time `prod_soak`, and the empty row.
fn environments_form(csrf: &str, prod_soak: &str) -> Vec<(String, String)> {
    let mut form = vec![
        ("_csrf".to_owned(), csrf.to_owned()),
        ("rows".to_owned(), "5".to_owned()),
    ];
    let rows = [
        ("dev", "DEV", false, false, "#1d4ed8"),
        ("test", "TEST", false, true, "#047857"),
        ("stage", "STAGE", false, true, "#92400e"),
        ("prod", "PROD", true, true, "#b91c1c"),
    ];
    for (i, (key, label, prod, promotion, colour)) in rows.into_iter().enumerate() {
        let mut add =
            |name: &str, value: &str| form.push((format!("{name}_{i}"), value.to_owned()));
        add("existing", "on");
        add("key", key);
        add("label", label);
        add("rank", &(i + 1).to_string());
        if prod {
            add("production", "on");
            add("needs_approval", "on");
        }
        if promotion {
            add("needs_promotion", "on");
        }
        add("soak", if prod { prod_soak } else { "0" });
        add("colour", colour);
    }
    for (name, value) in [
        ("key", ""),
        ("label", ""),
        ("rank", "5"),
        ("soak", "0"),
        ("colour", "#4b5563"),
    ] {
        form.push((format!("{name}_4"), value.to_owned()));
    }
    form
}

async fn post_pairs(
    app: &TestApp,
    uri: &str,
    cookie: &str,
    form: &[(String, String)],
) -> TestResponse {
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    app.post_form(uri, Some(cookie), &pairs).await
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_administrator_sets_a_soak_time_on_the_environments_page(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let adam = app.browser_login("adam", &[Role::Admin]).await;
    let rita = app.browser_login("rita", &[Role::ReleaseManager]).await;
    let token = app.token("adam", "adam-correct-horse-battery").await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let prod_soak = || async {
        let envs = app
            .api(Method::GET, "/api/v1/environments", Some(&token), None)
            .await
            .json();
        envs.as_array()
            .unwrap()
            .iter()
            .find(|e| e["key"] == "prod")
            .unwrap()["soak_minutes"]
            .clone()
    };

    let page = app
        .get_page("/admin/environments", Some(&adam.cookie))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains("<span class=\"environment environment-prod\">PROD</span>")
    );
    assert!(page.body.contains("id=\"environments-form\""));
    assert!(
        page.body
            .contains("<a href=\"/admin/environments\" aria-current=\"page\">Environments</a>")
    );

    // Saved: the API says so and the page says it in words.
    let resp = post_pairs(
        &app,
        "/admin/environments",
        &adam.cookie,
        &environments_form(&adam.csrf, "90"),
    )
    .await;
    let html = page_with_notice(&app, &adam, &resp).await;
    assert!(html.contains("id=\"notice\">Environments saved."), "{html}");
    assert!(html.contains("<td>1 hour 30 minutes</td>"), "{html}");
    assert_eq!(prod_soak().await, json!(90));
    let (action, _) = app.audit_events().await.pop().unwrap();
    assert_eq!(action, "settings.environments_changed");

    // A soak time that is no number, or too long, comes back beside PROD's
    // field; nothing changes.
    for (soak, message) in [
        ("soon", "A soak time is a whole number of minutes"),
        ("50000", "PROD: a soak time is at most 30 days."),
    ] {
        let resp = post_pairs(
            &app,
            "/admin/environments",
            &adam.cookie,
            &environments_form(&adam.csrf, soak),
        )
        .await;
        assert_eq!(
            resp.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            resp.body
        );
        assert!(
            resp.body.contains(&format!(
                "<p class=\"field-error\" id=\"soak_3-error\">{message}"
            )),
            "{}",
            resp.body
        );
        assert!(
            resp.body.contains("<a href=\"#soak_3\">PROD soak time: "),
            "{}",
            resp.body
        );
        assert!(
            resp.body
                .contains(&format!("value=\"{soak}\" type=\"number\""))
        );
        assert_eq!(prod_soak().await, json!(90));
    }

    // Somebody else sees the rules but no form, and is refused and recorded.
    let page = app
        .get_page("/admin/environments", Some(&rita.cookie))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("1 hour 30 minutes"));
    assert!(!page.body.contains("id=\"environments-form\""));
    let events = app.audit_count().await;
    let resp = post_pairs(
        &app,
        "/admin/environments",
        &rita.cookie,
        &environments_form(&rita.csrf, "5"),
    )
    .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert!(resp.body.contains("Back to the environments"));
    assert_eq!(prod_soak().await, json!(90));
    assert_eq!(app.audit_count().await, events + 1);
    assert_eq!(
        app.denials().await.pop().unwrap(),
        (
            "settings.environments".to_owned(),
            "admin_required".to_owned()
        )
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_administrator_adds_and_removes_an_environment_and_sets_where_a_pipeline_deploys(
    pool: PgPool,
) {
    let app = TestApp::new(pool).await;
    let adam = app.browser_login("adam", &[Role::Admin]).await;
    let mut form = environments_form(&adam.csrf, "0");
    for (k, v) in [
        ("key_4", "qa"),
        ("label_4", "QA"),
        ("needs_promotion_4", "on"),
    ] {
        form.retain(|(name, _)| name != k);
        form.push((k.to_owned(), v.to_owned()));
    }
    let resp = post_pairs(&app, "/admin/environments", &adam.cookie, &form).await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM environments ORDER BY rank")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(keys, ["dev", "test", "stage", "prod", "qa"]);

    // Removed again with its checkbox (the page now has six rows).
    let page = app
        .get_page("/admin/environments", Some(&adam.cookie))
        .await;
    assert!(page.body.contains("name=\"rows\" value=\"6\""));
    assert!(page.body.contains("id=\"remove_4\""));
    form.push(("remove_4".to_owned(), "on".to_owned()));
    form.push(("existing_4".to_owned(), "on".to_owned()));
    let resp = post_pairs(&app, "/admin/environments", &adam.cookie, &form).await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM environments")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 4);

    // Two environments with one rank: the message is beside the second.
    let mut clash = environments_form(&adam.csrf, "0");
    for (k, v) in [("key_4", "qa"), ("label_4", "QA"), ("rank_4", "4")] {
        clash.retain(|(name, _)| name != k);
        clash.push((k.to_owned(), v.to_owned()));
    }
    let resp = post_pairs(&app, "/admin/environments", &adam.cookie, &clash).await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    assert!(
        resp.body
            .contains("<p class=\"field-error\" id=\"rank_4-error\">Two environments have rank 4."),
        "{}",
        resp.body
    );

    // A pipeline's account page: where it may deploy, as checkboxes.
    let bot = app.service_account("deploy-bot", &[Role::Engineer]).await;
    let page = app
        .get_page(&format!("/admin/users/{}", bot.id), Some(&adam.cookie))
        .await;
    assert!(
        page.body
            .contains("Environments this pipeline may deploy to")
    );
    assert!(!page.body.contains("value=\"dev\" checked"));
    let resp = app
        .post_form(
            &format!("/admin/users/{}/environments", bot.id),
            Some(&adam.cookie),
            &[
                ("_csrf", adam.csrf.as_str()),
                ("environments", "dev"),
                ("environments", "test"),
            ],
        )
        .await;
    let html = page_with_notice(&app, &adam, &resp).await;
    assert!(
        html.contains("id=\"notice\">Saved where this pipeline may deploy."),
        "{html}"
    );
    assert!(html.contains("value=\"dev\" checked"));
    assert!(html.contains("value=\"test\" checked"));
    assert!(!html.contains("value=\"prod\" checked"));
    let allowed: Vec<String> = sqlx::query_scalar(
        "SELECT environment FROM account_environments WHERE user_id = $1 ORDER BY environment",
    )
    .bind(bot.id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(allowed, ["dev", "test"]);
}
