//! The measures of change, from records laid down as the gate and the
//! reviews would have left them: each deployment counts once, so the
//! failure rate never passes 100 %; lead time says where it starts;
//! recovery runs from failure to restoration; the filters narrow what is
//! counted; bad filters are named; and the page draws what the API says.

use axum::http::{Method, StatusCode};
use cab_domain::Role;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::TestApp;

fn at(day: &str, hour: i64) -> DateTime<Utc> {
    NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        + Duration::hours(hour)
}

struct Seed<'a> {
    pool: &'a PgPool,
    author: Uuid,
}

impl<'a> Seed<'a> {
    /// Records filed by Erin, an engineer made for them.
    async fn by_erin(app: &'a TestApp) -> Seed<'a> {
        let (author, _) = app.user("erin", &[Role::Engineer]).await;
        Seed {
            pool: &app.state.pool,
            author: author.id,
        }
    }

    /// An ordinary change (normal, low risk) on `service`, submitted two
    /// days before it was decided at `decided`: its id.
    async fn ordinary(&self, number: i64, service: &str, decided: DateTime<Utc>) -> Uuid {
        self.change(
            number,
            "normal",
            "low",
            service,
            decided - Duration::days(2),
            decided,
        )
        .await
    }

    /// A change as it stands after its decision: its id.
    async fn change(
        &self,
        number: i64,
        change_type: &str,
        risk: &str,
        service: &str,
        submitted: DateTime<Utc>,
        decided: DateTime<Utc>,
    ) -> Uuid {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO changes (id, number, state, author_id, content, title, description, change_type,
                                  category, priority, services, environments, risk_level, risk_rank,
                                  risk_reasons, risk_version, revision, created_at, updated_at,
                                  submitted_at, decided_at, approved_revision)
             VALUES ($1, $2, 'implemented', $3, '{}', 'Seeded', 'Seeded', $4, 'configuration', 'medium',
                     ARRAY[$5], ARRAY['PROD'], $6, 1, ARRAY['seeded'], 1, 1, $7, $7, $7, $8, 1)",
        )
        .bind(id)
        .bind(number)
        .bind(self.author)
        .bind(change_type)
        .bind(service)
        .bind(risk)
        .bind(submitted)
        .bind(decided)
        .execute(self.pool)
        .await
        .unwrap();
        id
    }

    /// A deployment that ended at `finished` in `state`; `commit` is when
    /// its first reported commit was made.
    #[allow(clippy::too_many_arguments)]
    async fn deployment(
        &self,
        change: Uuid,
        environment: &str,
        service: &str,
        state: &str,
        finished: DateTime<Utc>,
        rolled_back: Option<DateTime<Utc>>,
        commit: Option<DateTime<Utc>>,
    ) {
        let shas: Vec<String> = commit.iter().map(|_| "a1b2c3d4e5f6".to_owned()).collect();
        sqlx::query(
            "INSERT INTO deployments (id, change_id, revision, environment, artifact_name, artifact_version,
                                      artifact_digest, services, initiator_id, executor_id, state,
                                      authorized_at, expires_at, token_id, token_used_at, started_at,
                                      finished_at, rolled_back_at, updated_at, commit_shas, first_commit_at)
             VALUES ($1, $2, 1, $3, 'app', '1', 'sha256:' || repeat('a', 64), ARRAY[$4], $5, $5, $6,
                     $7 - interval '10 minutes', $7 + interval '1 hour', gen_random_uuid(),
                     $7 - interval '5 minutes', $7 - interval '5 minutes', $7, $8, $7, $9, $10)",
        )
        .bind(Uuid::new_v4())
        .bind(change)
        .bind(environment)
        .bind(service)
        .bind(self.author)
        .bind(state)
        .bind(finished)
        .bind(rolled_back)
        .bind(&shas)
        .bind(commit)
        .execute(self.pool)
        .await
        .unwrap();
    }

    /// A review signed off, or still a draft.
    async fn review(&self, change: Uuid, content: Value, signed_off: bool) {
        sqlx::query(
            "INSERT INTO reviews (change_id, required, reasons, due_at, content, revision, state,
                                  signed_off_at, signed_off_revision, first_signed_off_at,
                                  created_at, updated_at)
             VALUES ($1, true, ARRAY['failed'], now(), $2, 1,
                     CASE WHEN $3 THEN 'signed_off' ELSE 'open' END,
                     CASE WHEN $3 THEN now() END, CASE WHEN $3 THEN 1 END,
                     CASE WHEN $3 THEN now() END, now(), now())",
        )
        .bind(change)
        .bind(content)
        .bind(signed_off)
        .execute(self.pool)
        .await
        .unwrap();
    }
}

fn incident(caused: &str, start: DateTime<Utc>, minutes: i64) -> Value {
    json!({
        "reference": "INC-1", "severity": "sev2", "caused": caused,
        "started_at": start, "restored_at": start + Duration::minutes(minutes),
    })
}

/// Two weeks of January 2026 on `payments-api` and one deployment on
/// `ledger`:
/// - A: deployed fine, with commits two days before (lead time 48 h).
/// - B: failed, then deployed fine an hour later; its review says forward
///   fix and confirms an incident. The failed deployment counts once; the
///   one that fixed it is not a failure.
/// - C: deployed fine, then its review says it needed a hotfix and
///   confirms two incidents (30 and 90 minutes): one failed deployment,
///   restored when the last incident ended (105 minutes after the first
///   began).
/// - D: rolled back 40 minutes after it was deployed.
/// - E: an emergency change on `ledger`, deployed fine.
async fn history(app: &TestApp) -> (Uuid, Uuid) {
    let s = Seed::by_erin(app).await;
    let a = s
        .change(
            1,
            "normal",
            "low",
            "payments-api",
            at("2026-01-01", 9),
            at("2026-01-02", 9),
        )
        .await;
    s.deployment(
        a,
        "stage",
        "payments-api",
        "succeeded",
        at("2026-01-05", 9),
        None,
        None,
    )
    .await;
    s.deployment(
        a,
        "prod",
        "payments-api",
        "succeeded",
        at("2026-01-06", 10),
        None,
        Some(at("2026-01-04", 10)),
    )
    .await;
    let b = s
        .change(
            2,
            "normal",
            "high",
            "payments-api",
            at("2026-01-03", 9),
            at("2026-01-05", 9),
        )
        .await;
    s.deployment(
        b,
        "prod",
        "payments-api",
        "failed",
        at("2026-01-07", 10),
        None,
        None,
    )
    .await;
    s.deployment(
        b,
        "prod",
        "payments-api",
        "succeeded",
        at("2026-01-07", 11),
        None,
        None,
    )
    .await;
    s.review(
        b,
        json!({"intervention": "forward_fix", "incidents": [incident("confirmed", at("2026-01-07", 10), 60)]}),
        true,
    )
    .await;
    let c = s
        .change(
            3,
            "normal",
            "medium",
            "payments-api",
            at("2026-01-05", 9),
            at("2026-01-06", 9),
        )
        .await;
    s.deployment(
        c,
        "prod",
        "payments-api",
        "succeeded",
        at("2026-01-13", 10),
        None,
        None,
    )
    .await;
    s.review(
        c,
        json!({"intervention": "hotfix", "incidents": [
            incident("confirmed", at("2026-01-13", 11), 30),
            incident("confirmed", at("2026-01-13", 11) + Duration::minutes(15), 90),
            incident("ruled_out", at("2026-01-13", 9), 500),
        ]}),
        true,
    )
    .await;
    let d = s
        .change(
            4,
            "normal",
            "low",
            "payments-api",
            at("2026-01-10", 9),
            at("2026-01-11", 9),
        )
        .await;
    s.deployment(
        d,
        "prod",
        "payments-api",
        "rolled_back",
        at("2026-01-14", 10),
        Some(at("2026-01-14", 10) + Duration::minutes(40)),
        None,
    )
    .await;
    let e = s
        .change(
            5,
            "emergency",
            "critical",
            "ledger",
            at("2026-01-14", 9),
            at("2026-01-14", 10),
        )
        .await;
    s.deployment(
        e,
        "prod",
        "ledger",
        "succeeded",
        at("2026-01-15", 10),
        None,
        None,
    )
    .await;
    (s.author, e)
}

/// Mia, an auditor, asks for the measures.
async fn metrics(app: &TestApp, query: &str) -> crate::common::TestResponse {
    let resp = app.token("mia", "mia-correct-horse-battery").await;
    let token = if resp.status == StatusCode::OK {
        resp.json()["access_token"].as_str().unwrap().to_owned()
    } else {
        app.api_login("mia", &[Role::Auditor]).await.token
    };
    app.api(
        Method::GET,
        &format!("/api/v1/metrics?{query}"),
        Some(&token),
        None,
    )
    .await
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn each_deployment_counts_once_and_the_rate_never_passes_one(pool: PgPool) {
    let app = TestApp::new(pool).await;
    history(&app).await;
    let resp = metrics(&app, "from=2026-01-05&to=2026-01-18&bucket=week").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let m = resp.json();
    let weeks = m["buckets"].as_array().unwrap();
    assert_eq!(weeks.len(), 2);
    assert_eq!(weeks[0]["start"], "2026-01-05");
    assert_eq!(weeks[1]["start"], "2026-01-12");

    // Week 1: A fine, B failed then fine. One failure of three.
    let cfr = &weeks[0]["change_failure_rate"];
    assert_eq!(
        (cfr["failed"].as_i64(), cfr["deployments"].as_i64()),
        (Some(1), Some(3))
    );
    // Week 2: C needed a hotfix (one failure whatever its incidents), D
    // rolled back, E fine.
    let cfr = &weeks[1]["change_failure_rate"];
    assert_eq!(
        (cfr["failed"].as_i64(), cfr["deployments"].as_i64()),
        (Some(2), Some(3))
    );
    let total = &m["total"]["change_failure_rate"];
    assert_eq!(total["failed"], 3);
    assert_eq!(total["deployments"], 6);
    assert_eq!(total["rate"], 0.5);
    // Never divided by changes (5) or counting incidents (3 confirmed).
    for f in weeks.iter().chain(std::iter::once(&m["total"])) {
        let rate = f["change_failure_rate"]["rate"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&rate), "{f}");
    }
    // Only PROD is counted: A's STAGE deployment is not.
    assert_eq!(m["total"]["deployment_frequency"]["deployments"], 4);
    assert_eq!(m["data_quality"]["deployments"], 6);
    assert_eq!(m["data_quality"]["deployments_without_commits"], 5);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn recovery_runs_from_failure_to_restoration(pool: PgPool) {
    let app = TestApp::new(pool).await;
    history(&app).await;
    let m = metrics(&app, "from=2026-01-05&to=2026-01-18&bucket=week")
        .await
        .json();
    // B: incident 60 min; C: 11:00 to 11:15 + 90 min = 105 min; D: rolled
    // back after 40 min.
    let r = &m["total"]["recovery_time"];
    assert_eq!(r["failures"], 3);
    assert_eq!(r["unrecovered"], 0);
    assert_eq!(r["p50_minutes"], 60.0);
    let p90 = r["p90_minutes"].as_f64().unwrap();
    assert!((p90 - 96.0).abs() < 0.01, "{p90}");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn lead_time_says_where_it_starts(pool: PgPool) {
    let app = TestApp::new(pool).await;
    history(&app).await;
    let m = metrics(&app, "from=2026-01-05&to=2026-01-18&bucket=week")
        .await
        .json();
    let l = &m["total"]["lead_time"];
    // A (from its commit: 48 h), B (first success: submitted 3 Jan 9:00 to
    // 7 Jan 11:00 = 98 h), C (8 days 1 h = 193 h), E (25 h). D never
    // stayed deployed.
    assert_eq!(l["changes"], 4);
    assert_eq!(l["from_commit"], 1);
    assert_eq!(l["from_submission"], 3);
    assert_eq!(l["p50_hours"], 73.0);
    let e = &m["total"]["emergency"];
    assert_eq!(
        (e["emergency"].as_i64(), e["changes"].as_i64()),
        (Some(1), Some(4))
    );
    assert_eq!(e["emergency_share"], 0.25);
    // Approval lead time by risk level: B high 48 h, E critical 1 h.
    let approvals = m["total"]["approval_lead_time"].as_array().unwrap();
    let high = approvals.iter().find(|a| a["risk"] == "high").unwrap();
    assert_eq!(
        (high["decided"].as_i64(), high["p50_hours"].as_f64()),
        (Some(1), Some(48.0))
    );
    let critical = approvals.iter().find(|a| a["risk"] == "critical").unwrap();
    assert_eq!(critical["p50_hours"], 1.0);
    assert_eq!(critical["risk_label"], "Critical");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_filters_narrow_what_is_counted(pool: PgPool) {
    let app = TestApp::new(pool).await;
    history(&app).await;
    let m = metrics(&app, "from=2026-01-05&to=2026-01-18&service=ledger")
        .await
        .json();
    assert_eq!(m["total"]["deployment_frequency"]["deployments"], 1);
    assert_eq!(m["total"]["change_failure_rate"]["rate"], 0.0);
    assert_eq!(m["service"], "ledger");
    let m = metrics(&app, "from=2026-01-05&to=2026-01-18&environment=stage")
        .await
        .json();
    assert_eq!(m["total"]["deployment_frequency"]["deployments"], 1);
    assert_eq!(m["total"]["lead_time"]["changes"], 1);
    // A month holds every day of the period; an empty period has no rate.
    let m = metrics(&app, "from=2026-01-05&to=2026-01-18&bucket=month")
        .await
        .json();
    assert_eq!(m["buckets"].as_array().unwrap().len(), 1);
    assert_eq!(m["buckets"][0]["start"], "2026-01-05");
    let m = metrics(&app, "from=2025-06-01&to=2025-06-30").await.json();
    assert_eq!(m["total"]["change_failure_rate"]["rate"], Value::Null);
    // Weeks start on Monday: 26 May to 30 June 2025.
    assert_eq!(m["buckets"].as_array().unwrap().len(), 6);
    assert_eq!(m["buckets"][0]["start"], "2025-06-01");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn bad_filters_are_named(pool: PgPool) {
    let app = TestApp::new(pool).await;
    for (query, field) in [
        ("from=2026-02-30", "from"),
        ("to=tomorrow", "to"),
        ("from=2026-02-01&to=2026-01-01", "from"),
        ("from=2020-01-01&to=2026-01-01", "from"),
        ("bucket=day", "bucket"),
        ("environment=moon", "environment"),
    ] {
        let resp = metrics(&app, query).await;
        assert_eq!(
            resp.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {}",
            resp.body
        );
        assert!(resp.body.contains(field), "{query}: {}", resp.body);
    }
    let resp = app.api(Method::GET, "/api/v1/metrics", None, None).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_page_draws_what_the_api_says(pool: PgPool) {
    let app = TestApp::new(pool).await;
    history(&app).await;
    let who = app.browser_login("carol", &[Role::CabMember]).await;
    let page = app
        .get_page(
            "/measures?from=2026-01-05&to=2026-01-18&bucket=week",
            Some(&who.cookie),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for id in [
        "deployment-frequency",
        "lead-time",
        "change-failure-rate",
        "recovery-time",
        "emergency-share",
        "approval-lead-time",
    ] {
        assert!(
            page.body.contains(&format!("id=\"chart-{id}-title\"")),
            "{id}"
        );
        assert!(page.body.contains(&format!("id=\"{id}-table\"")), "{id}");
    }
    assert!(
        page.body.contains("<td>50%</td>"),
        "the total failure rate is in a table"
    );
    assert!(page.body.contains("Week of 5 Jan 2026"));
    assert!(page.body.contains("role=\"img\""));
    // A bad filter is shown beside its field, with nothing drawn.
    let page = app
        .get_page("/measures?from=2026-13-01", Some(&who.cookie))
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.body.contains("id=\"from-error\""));
    assert!(page.body.contains("id=\"metrics-hidden\""));
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_metrics_page_passes_axe_and_fits_a_phone(pool: PgPool) {
    use crate::browser::{Browser, sign_in};
    use crate::cli::{add_user, start_server};
    let app = TestApp::new(pool.clone()).await;
    history(&app).await;
    add_user(&pool, "carol", &["cab_member"], "carol-long-password");
    let (_server, url) = start_server(&pool, "STAGING");
    let b = Browser::start().await;
    sign_in(&b, &url, "carol", "carol-long-password").await;
    b.click("nav a[href='/measures']").await;
    b.wait_url(|u| u.ends_with("/measures")).await;
    b.find("#metrics-headlines").await;
    b.check_page("the metrics page of the last 90 days").await;
    b.goto(&format!(
        "{url}/measures?from=2026-01-05&to=2026-01-18&bucket=week"
    ))
    .await;
    b.find("#chart-change-failure-rate-title").await;
    assert_eq!(b.count("svg.chart").await, 6);
    b.check_page("the metrics page with two weeks of history")
        .await;
    b.set_value("#from", "2026-01-20").await;
    b.click("#apply-filters").await;
    b.find("#from-error").await;
    b.check_page("the metrics page with a period that ends before it starts")
        .await;
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_pipeline_reports_its_commits_and_lead_time_starts_at_the_first(pool: PgPool) {
    use crate::deployments::request;
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let id = app.approved_change(&c.erin, &c.carol).await;
    app.promote_to_stage(&c.pipeline, &id).await;
    let first = Utc::now() - Duration::days(3);
    let mut body = request(&id, "prod", Some("rita"));
    // Bad commits are named, and nothing is authorized.
    let before = app.deployment_count().await;
    for bad in [
        json!([{"sha": "XYZ", "committed_at": first}]),
        json!([{"sha": "abc1234", "committed_at": Utc::now() + Duration::days(1)}]),
        json!([{"sha": "abc1234", "committed_at": "0001-01-01T00:00:00Z"}]),
        json!(
            (0..1001)
                .map(|i| json!({"sha": format!("{i:07x}"), "committed_at": first}))
                .collect::<Vec<_>>()
        ),
    ] {
        body["commits"] = bad;
        let resp = app.gate(&c.pipeline, body.clone()).await;
        assert_eq!(
            resp.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            resp.body
        );
        assert!(resp.body.contains("commits"), "{}", resp.body);
    }
    assert_eq!(app.deployment_count().await, before);
    body["commits"] = json!([
        {"sha": "9f2c1e7", "committed_at": first + Duration::hours(5)},
        {"sha": "0a1b2c3d4e5f", "committed_at": first},
    ]);
    let deployed = app.deploy(&c.pipeline, body).await;
    assert_eq!(deployed["state"], "succeeded", "{deployed}");
    let stored: (Vec<String>, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT commit_shas, first_commit_at FROM deployments WHERE environment = 'prod'",
    )
    .fetch_one(&app.state.pool)
    .await
    .unwrap();
    assert_eq!(stored.0, ["9f2c1e7", "0a1b2c3d4e5f"]);
    assert_eq!(stored.1.map(|t| t.timestamp()), Some(first.timestamp()));
    let m = metrics(&app, "").await.json();
    let l = &m["total"]["lead_time"];
    assert_eq!(
        (l["changes"].as_i64(), l["from_commit"].as_i64()),
        (Some(1), Some(1))
    );
    let hours = l["p50_hours"].as_f64().unwrap();
    assert!((71.9..72.2).contains(&hours), "{hours}");
    assert_eq!(m["data_quality"]["deployments_without_commits"], 0);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn only_a_signed_off_review_of_production_says_a_deployment_failed(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = Seed::by_erin(&app).await;
    // F: a draft review says hotfix; G: signed off, it confirms an incident
    // still open. Both went to STAGE first.
    let f = s
        .change(
            1,
            "normal",
            "low",
            "billing",
            at("2026-01-01", 9),
            at("2026-01-02", 9),
        )
        .await;
    let g = s
        .change(
            2,
            "normal",
            "low",
            "billing",
            at("2026-01-01", 9),
            at("2026-01-02", 9),
        )
        .await;
    for (c, day) in [(f, "2026-01-06"), (g, "2026-01-07")] {
        s.deployment(c, "stage", "billing", "succeeded", at(day, 8), None, None)
            .await;
        s.deployment(c, "prod", "billing", "succeeded", at(day, 10), None, None)
            .await;
    }
    s.review(f, json!({"intervention": "hotfix", "incidents": []}), false)
        .await;
    let mut open = incident("confirmed", at("2026-01-07", 11), 0);
    open["restored_at"] = Value::Null;
    s.review(
        g,
        json!({"intervention": "none", "incidents": [open]}),
        true,
    )
    .await;
    let m = metrics(&app, "from=2026-01-05&to=2026-01-11").await.json();
    let cfr = &m["total"]["change_failure_rate"];
    assert_eq!(
        (cfr["failed"].as_i64(), cfr["deployments"].as_i64()),
        (Some(1), Some(2))
    );
    let r = &m["total"]["recovery_time"];
    assert_eq!(
        r["unrecovered"], 1,
        "an incident still open is no restoration"
    );
    assert_eq!(r["p50_minutes"], Value::Null);
    // What a review says of production marks nothing on STAGE.
    let m = metrics(&app, "from=2026-01-05&to=2026-01-11&environment=stage")
        .await
        .json();
    assert_eq!(m["total"]["change_failure_rate"]["failed"], 0);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_later_deployment_of_another_change_restores_a_failure_the_figures_already_showed(
    pool: PgPool,
) {
    let app = TestApp::new(pool).await;
    let s = Seed::by_erin(&app).await;
    let day = |h| at("2026-01-06", h);
    let a = s.ordinary(1, "billing", day(0)).await;
    s.deployment(a, "prod", "billing", "failed", day(10), None, None)
        .await;
    let query = "from=2026-01-05&to=2026-01-11";
    let m = metrics(&app, query).await.json();
    let r = &m["total"]["recovery_time"];
    assert_eq!(
        (r["failures"].as_i64(), r["unrecovered"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(m["changes_pending"], 0);

    // Another change's deployment of the same service, two and a half
    // hours later, restores the failure; the next read says so.
    let b = s
        .change(
            2,
            "normal",
            "low",
            "billing",
            day(0) - Duration::days(1),
            day(1),
        )
        .await;
    s.deployment(
        b,
        "prod",
        "billing",
        "succeeded",
        day(10) + Duration::minutes(150),
        None,
        None,
    )
    .await;
    let m = metrics(&app, query).await.json();
    let r = &m["total"]["recovery_time"];
    assert_eq!(r["unrecovered"], 0, "{r}");
    assert_eq!(r["p50_minutes"], 150.0);
    assert_eq!(m["total"]["deployment_frequency"]["deployments"], 1);
    assert_eq!(m["total"]["change_failure_rate"]["deployments"], 2);

    // A review signed off later judges again the deployment it speaks of.
    s.review(
        b,
        json!({"intervention": "none", "incidents": [incident("confirmed", day(13), 45)]}),
        true,
    )
    .await;
    let m = metrics(&app, query).await.json();
    assert_eq!(m["total"]["change_failure_rate"]["failed"], 2);
    assert_eq!(m["total"]["recovery_time"]["unrecovered"], 0);

    // The deployment that restored A's failure is rolled back: A's failure
    // is restored by nothing any more.
    sqlx::query(
        "UPDATE deployments SET state = 'rolled_back', rolled_back_at = finished_at + interval '10 minutes'
          WHERE change_id = $1",
    )
    .bind(b)
    .execute(&app.pool)
    .await
    .unwrap();
    let m = metrics(&app, query).await.json();
    let r = &m["total"]["recovery_time"];
    assert_eq!(
        (r["failures"].as_i64(), r["unrecovered"].as_i64()),
        (Some(2), Some(1)),
        "{r}"
    );
    // The same, read for the one service.
    let m = metrics(&app, &format!("{query}&service=billing"))
        .await
        .json();
    assert_eq!(m["total"]["recovery_time"]["unrecovered"], 1);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_write_committed_while_a_refresh_runs_is_not_lost(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let s = Seed::by_erin(&app).await;
    let day = |h| at("2026-01-06", h);
    let x = s.ordinary(1, "crm", day(0)).await;
    s.deployment(x, "prod", "crm", "succeeded", day(10), None, None)
        .await;
    // X is queued, and committed so.
    let queued: i64 =
        sqlx::query_scalar("SELECT count(*) FROM measure_pending WHERE change_id = $1")
            .bind(x)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(queued, 1);
    // A pipeline reports X's deployment failed after all, in a transaction
    // still open while a refresh runs.
    let mut writer = pool.begin().await.unwrap();
    sqlx::query("UPDATE deployments SET state = 'failed' WHERE change_id = $1")
        .bind(x)
        .execute(&mut *writer)
        .await
        .unwrap();
    let derived = cab_server::metrics::refresh(&pool, 10).await.unwrap();
    assert_eq!(derived, 0, "a change being written is left for later");
    writer.commit().await.unwrap();
    let m = metrics(&app, "from=2026-01-05&to=2026-01-11").await.json();
    assert_eq!(m["total"]["change_failure_rate"]["failed"], 1, "{m}");
    assert_eq!(m["changes_pending"], 0);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_malformed_review_written_by_hand_stops_no_refresh(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let s = Seed::by_erin(&app).await;
    let day = |h| at("2026-01-06", h);
    for (n, content) in [
        (1, json!({"intervention": "none", "incidents": "none"})),
        (
            2,
            json!({"intervention": "none", "incidents": [
                {"caused": "confirmed", "started_at": "soon", "restored_at": 5},
                {"caused": "suspected", "started_at": "2026-13-45T25:00:00Z"},
                "INC-9"
            ]}),
        ),
    ] {
        let c = s
            .change(
                n,
                "normal",
                "low",
                "crm",
                day(0) - Duration::days(2),
                day(0),
            )
            .await;
        s.deployment(c, "prod", "crm", "succeeded", day(10 + n), None, None)
            .await;
        s.review(c, content, true).await;
    }
    let resp = metrics(&app, "from=2026-01-05&to=2026-01-11").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let m = resp.json();
    assert_eq!(m["changes_pending"], 0);
    assert_eq!(m["total"]["change_failure_rate"]["deployments"], 2);
    // The incident the change is confirmed to have caused marks its
    // deployment; when service came back cannot be read, so it is not
    // restored.
    assert_eq!(m["total"]["change_failure_rate"]["failed"], 1);
    assert_eq!(m["total"]["recovery_time"]["unrecovered"], 1);
}

/// How many changes `pool` derived, refreshing until nothing is queued,
/// and in how many refreshes.
async fn drain(pool: &PgPool) -> (usize, usize) {
    let (mut changes, mut refreshes) = (0, 0);
    loop {
        match cab_server::metrics::refresh(pool, 4).await.unwrap() {
            0 => return (changes, refreshes),
            n => {
                changes += n;
                refreshes += 1;
            }
        }
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn two_servers_derive_each_queued_change_once(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let s = Seed::by_erin(&app).await;
    for n in 1..=30 {
        let day = at("2026-01-05", n);
        let c = s
            .change(
                n,
                "normal",
                "medium",
                "ledger",
                day - Duration::days(3),
                day - Duration::days(1),
            )
            .await;
        let state = if n % 5 == 0 { "failed" } else { "succeeded" };
        s.deployment(c, "prod", "ledger", state, day, None, None)
            .await;
    }
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM measure_pending")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(queued, 30, "every change written is queued, once");

    let other = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect_with((*pool.connect_options()).clone())
        .await
        .unwrap();
    let (a, b) = tokio::join!(drain(&pool), drain(&other));
    assert_eq!(a.0 + b.0, 30, "each change derived once: {a:?} {b:?}");
    let (rows, version, pending): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM measure_deployments WHERE service = ''), (SELECT version FROM measure_state),
                (SELECT count(*) FROM measure_pending)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((rows, pending), (30, 0));
    assert_eq!(
        version as usize,
        a.1 + b.1,
        "one version per refresh that derived"
    );

    let m = metrics(&app, "from=2026-01-05&to=2026-01-11").await.json();
    let cfr = &m["total"]["change_failure_rate"];
    assert_eq!(
        (cfr["failed"].as_i64(), cfr["deployments"].as_i64()),
        (Some(6), Some(30))
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_long_queue_is_said_on_the_page_and_drained_by_later_reads(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let (author, _) = app.user("erin", &[Role::Engineer]).await;
    // An import of 1,120 decided changes at once.
    sqlx::query(
        "INSERT INTO changes (id, number, state, author_id, content, title, description, change_type,
                              category, priority, services, environments, risk_level, risk_rank,
                              risk_reasons, risk_version, revision, created_at, updated_at,
                              submitted_at, decided_at, approved_revision)
         SELECT gen_random_uuid(), g, 'approved', $1, '{}', 'Imported', 'Imported', 'normal', 'configuration',
                'medium', ARRAY['crm'], ARRAY['PROD'], 'low', 0, ARRAY['seeded'], 1, 1, now(), now(),
                now() - interval '2 days', now() - interval '1 day', 1
           FROM generate_series(1, 1120) g",
    )
    .bind(author.id)
    .execute(&pool)
    .await
    .unwrap();
    // Each read derives its share first, and says what it left to the
    // background.
    let who = app.browser_login("carol", &[Role::CabMember]).await;
    let page = app.get_page("/measures", Some(&who.cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains("The latest records of 620 changes are not in these figures yet"),
        "{}",
        page.body
    );
    let decided = |m: &Value| -> i64 {
        m["total"]["approval_lead_time"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["decided"].as_i64().unwrap())
            .sum()
    };
    let m = metrics(&app, "").await.json();
    assert_eq!(
        (m["changes_pending"].as_i64(), decided(&m)),
        (Some(120), 1000)
    );
    let m = metrics(&app, "").await.json();
    assert_eq!(
        (m["changes_pending"].as_i64(), decided(&m)),
        (Some(0), 1120)
    );
    let page = app.get_page("/measures", Some(&who.cookie)).await;
    assert!(!page.body.contains("metrics-pending"));
}
