//! The auditor reads everything and changes nothing, tested from the
//! attacker's side: an account holding only the auditor role is refused on
//! every write route of the API (read from the served OpenAPI document, so a
//! route added later is covered without a word here) and on every form of
//! the pages (a list checked against the router's source), each refusal is
//! recorded once, and no table but the audit trail changes. Nor can an
//! auditor be made the owner of a review's action item.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::{Method, StatusCode};
use cab_domain::Role;
use chrono::{Duration, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::changes::complete_change;
use crate::common::{ApiClient, BrowserSession, TestApp, TestResponse};
use crate::decisions::assessment;
use crate::deployments::{digest, request};
use crate::releases::{get_release, in_review, release_body, release_plan};

const WRITE_METHODS: [&str; 4] = ["post", "put", "patch", "delete"];

/// Write routes of the API an auditor may use, and why each changes nothing
/// the product keeps.
const API_EXEMPT: [(&str, &str, &str); 5] = [
    ("POST", "/api/v1/auth/token", "signing in"),
    ("POST", "/api/v1/auth/logout", "ending one's own session"),
    (
        "POST",
        "/api/v1/deployments/dry-run",
        "asks the gate what it would answer and writes nothing: a read with a body \
         (`the_gate_s_dry_run_is_a_read_that_answers_an_auditor_no` holds it to that)",
    ),
    (
        "POST",
        "/api/v1/calendar/feeds",
        "a personal calendar feed is a read-only subscription to what the auditor may read \
         anyway (`an_auditor_s_own_calendar_feed_is_a_read_only_subscription`)",
    ),
    (
        "POST",
        "/api/v1/calendar/feeds/{id}/revoke",
        "revokes one of the auditor's own subscriptions; another person's feed is not \
         even found (`an_auditor_s_own_calendar_feed_is_a_read_only_subscription`)",
    ),
];

/// Forms an auditor may post, and why each changes nothing the product keeps.
const UI_EXEMPT: [(&str, &str); 4] = [
    ("/login", "signing in"),
    ("/logout", "signing out"),
    (
        "/calendar/feeds",
        "a personal calendar feed is a read-only subscription (as in the API)",
    ),
    (
        "/calendar/feeds/{id}/revoke",
        "revokes one of the auditor's own subscriptions (as in the API)",
    ),
];

// ---------------------------------------------------------------------------
// The world an auditor finds: one of every object a write route acts on, in a
// state in which someone allowed could act on it.

struct World {
    erin: ApiClient,
    adam: ApiClient,
    bot: ApiClient,
    /// Engineer who owns the action item.
    olly: ApiClient,
    /// A draft by Erin.
    draft: String,
    /// Submitted by Erin, in review.
    submitted: String,
    /// Approved, its window open, not deployed.
    approved: String,
    approved_key: String,
    /// Deployed to PROD successfully, not closed yet.
    implemented: String,
    /// Failed on PROD and closed: its review is owed and open.
    reviewed: String,
    /// An action item of that review, owned by Olly.
    action: String,
    /// A deployment of `approved` to DEV, authorized and not started.
    deployment: String,
    deployment_token: String,
    /// A release in review and the key of the change in its scope.
    release: String,
    release_change: String,
    template: String,
    freeze: String,
    period: String,
    /// Erin's calendar feed.
    feed: String,
    /// The pipeline's API token.
    token: String,
    /// A role grant for Olly, waiting for a second administrator.
    grant: String,
    /// A break-glass request waiting for its confirmation, by key.
    break_glass: String,
    finding: String,
}

fn ok(resp: TestResponse, status: StatusCode) -> Value {
    assert_eq!(resp.status, status, "{}", resp.body);
    if resp.body.is_empty() {
        Value::Null
    } else {
        resp.json()
    }
}

async fn call(
    app: &TestApp,
    who: &ApiClient,
    method: Method,
    uri: &str,
    body: Value,
) -> TestResponse {
    app.api(method, uri, Some(&who.token), Some(body)).await
}

/// A change low-risk enough to be a standard change's template.
fn standard_change() -> Value {
    let mut change = complete_change("Rotate the edge certificates");
    change["risk"] = json!({"impact": 1, "likelihood": 1});
    change
}

fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id: {v}"))
        .to_owned()
}

/// The change's key, CHG-<number>.
async fn key_of(app: &TestApp, who: &ApiClient, id: &str) -> String {
    let change = call(
        app,
        who,
        Method::GET,
        &format!("/api/v1/changes/{id}"),
        json!({}),
    )
    .await;
    ok(change, StatusCode::OK)["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Deploys an approved change through STAGE to PROD with `outcome`.
async fn to_prod(app: &TestApp, bot: &ApiClient, id: &str, outcome: &str) {
    app.promote_to_stage(&bot.token, id).await;
    let auth = ok(
        app.gate(&bot.token, request(id, "prod", Some("rita")))
            .await,
        StatusCode::CREATED,
    );
    let dep = auth["deployment"]["id"].as_str().unwrap();
    let started = app
        .report(&bot.token, dep, "started", auth["token"].as_str())
        .await;
    ok(started, StatusCode::OK);
    ok(
        app.report(&bot.token, dep, outcome, None).await,
        StatusCode::OK,
    );
}

async fn world(app: &TestApp) -> World {
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let rita = app.api_login("rita", &[Role::ReleaseManager]).await;
    let adam = app.api_login("adam", &[Role::Admin]).await;
    let olly = app.api_login("olly", &[Role::Engineer]).await;
    let bot = app
        .pipeline_client(&adam, "deploy-bot", &["dev", "test", "stage", "prod"])
        .await;

    let draft = app.open_change(&erin).await;
    let submitted = app.submitted_change(&erin, 2, 2, "normal").await;
    let approved = app.approved_change(&erin, &carol).await;
    let approved_key = key_of(app, &erin, &approved).await;
    let implemented = app.approved_change(&erin, &carol).await;
    to_prod(app, &bot, &implemented, "succeeded").await;
    let reviewed = app.approved_change(&erin, &carol).await;
    to_prod(app, &bot, &reviewed, "failed").await;
    let closed = call(
        app,
        &erin,
        Method::POST,
        &format!("/api/v1/changes/{reviewed}/close"),
        json!({"code": "failed_rolled_back", "notes": "Health checks failed on PROD; rolled back."}),
    )
    .await;
    ok(closed, StatusCode::OK);
    let due = (Utc::now().date_naive() + Duration::days(14)).to_string();
    let action = id_of(&ok(
        call(
            app,
            &erin,
            Method::POST,
            &format!("/api/v1/changes/{reviewed}/review/actions"),
            json!({"title": "Relax the health checks", "owner": "olly", "due_on": due}),
        )
        .await,
        StatusCode::CREATED,
    ));

    let auth = ok(
        app.gate(&bot.token, request(&approved, "dev", None)).await,
        StatusCode::CREATED,
    );
    let deployment = auth["deployment"]["id"].as_str().unwrap().to_owned();
    let deployment_token = auth["token"].as_str().unwrap().to_owned();

    let in_release = app.approved_change(&erin, &carol).await;
    let release_change = key_of(app, &erin, &in_release).await;
    let release = in_review(app, &rita, &[&release_change]).await;

    let template = id_of(&ok(
        call(
            app,
            &carol,
            Method::POST,
            "/api/v1/templates",
            json!({"name": "Certificate rotation", "change": standard_change()}),
        )
        .await,
        StatusCode::CREATED,
    ));
    let period = id_of(&ok(
        call(
            app,
            &rita,
            Method::POST,
            "/api/v1/maintenance-periods",
            json!({"service": "billing", "weekdays": [1], "starts": "02:00", "minutes": 60}),
        )
        .await,
        StatusCode::CREATED,
    ));
    let feed = id_of(&ok(
        call(
            app,
            &erin,
            Method::POST,
            "/api/v1/calendar/feeds",
            json!({"label": "Edge changes"}),
        )
        .await,
        StatusCode::CREATED,
    ));
    let tokens = call(
        app,
        &adam,
        Method::GET,
        &format!("/api/v1/users/{}/tokens", bot.user.id),
        json!({}),
    )
    .await;
    let token = id_of(&ok(tokens, StatusCode::OK)[0]);
    let grant = ok(
        call(
            app,
            &adam,
            Method::PUT,
            &format!("/api/v1/users/{}/roles", olly.user.id),
            json!({"roles": ["engineer", "cab_member"]}),
        )
        .await,
        StatusCode::ACCEPTED,
    );
    let grant = id_of(&grant["awaiting_confirmation"]);
    let break_glass = ok(
        call(
            app,
            &rita,
            Method::POST,
            "/api/v1/break-glass",
            json!({"change": submitted, "environment": "prod", "reason": "Card payments fail for every customer since the certificate expired.", "incident": "INC-4711"}),
        )
        .await,
        StatusCode::CREATED,
    )["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let finding = id_of(&ok(
        call(
            app,
            &bot,
            Method::POST,
            "/api/v1/deployments/observed",
            json!({"environment": "prod", "service": "edge-proxy", "digest": digest('e')}),
        )
        .await,
        StatusCode::CREATED,
    ));
    // Last: a freeze from tomorrow, so that it stops none of the above.
    let freeze = id_of(&ok(
        call(
            app,
            &rita,
            Method::POST,
            "/api/v1/freezes",
            json!({
                "starts_at": (Utc::now() + Duration::days(1)).to_rfc3339(),
                "ends_at": (Utc::now() + Duration::days(2)).to_rfc3339(),
                "reason": "Quarter-end close",
                "environments": ["prod"],
            }),
        )
        .await,
        StatusCode::CREATED,
    ));

    World {
        erin,
        adam,
        bot,
        olly,
        draft,
        submitted,
        approved,
        approved_key,
        implemented,
        reviewed,
        action,
        deployment,
        deployment_token,
        release,
        release_change,
        template,
        freeze,
        period,
        feed,
        token,
        grant,
        break_glass,
        finding,
    }
}

impl World {
    /// The change a route under `/changes/{id}` acts on: one in the state in
    /// which the route means something.
    fn change_for(&self, rest: &str) -> &str {
        match rest {
            "" | "/edit" | "/submit" => &self.draft,
            "/close" => &self.implemented,
            "/deployments" => &self.approved,
            r if r.starts_with("/review") => &self.reviewed,
            _ => &self.submitted,
        }
    }

    /// The route template with its parameters replaced by existing objects'
    /// ids. A parameter nobody taught this about fails the test: a 404 for a
    /// missing object would prove nothing.
    fn fill(&self, template: &str) -> String {
        let segments: Vec<&str> = template.split('/').collect();
        let mut out = Vec::new();
        for (i, seg) in segments.iter().enumerate() {
            if !seg.starts_with('{') {
                out.push((*seg).to_owned());
                continue;
            }
            let collection = segments[..i]
                .iter()
                .rev()
                .find(|s| !s.starts_with('{'))
                .copied()
                .unwrap_or_default();
            let rest = segments[i + 1..].join("/");
            let rest = if rest.is_empty() {
                String::new()
            } else {
                format!("/{rest}")
            };
            let value = match (collection, *seg) {
                ("changes", "{id}") => self.change_for(&rest).to_owned(),
                ("releases", "{id}") => self.release.clone(),
                ("changes", "{change}") => self.release_change.clone(),
                ("users", "{id}") => {
                    if rest.starts_with("/tokens") || rest.starts_with("/environments") {
                        self.bot.user.id.to_string()
                    } else {
                        self.olly.user.id.to_string()
                    }
                }
                ("tokens", "{token_id}") => self.token.clone(),
                ("role-grants", "{id}" | "{grant_id}") => self.grant.clone(),
                ("freezes", "{id}") => self.freeze.clone(),
                ("templates", "{id}") => self.template.clone(),
                ("deployments", "{id}") => self.deployment.clone(),
                ("review-actions", "{id}") => self.action.clone(),
                ("break-glass", "{id}") => self.break_glass.clone(),
                ("findings", "{id}") => self.finding.clone(),
                ("maintenance-periods" | "maintenance", "{id}") => self.period.clone(),
                ("feeds", "{id}") => self.feed.clone(),
                (c, p) => panic!("{template}: no existing object for {p} under /{c}/; add one"),
            };
            out.push(value);
        }
        out.join("/")
    }
}

// ---------------------------------------------------------------------------
// What the data tables hold

/// Columns that say when a record was last used, not what it is: reading
/// moves them.
fn bookkeeping(table: &str) -> &'static [&'static str] {
    match table {
        // An API session's expiry slides with its use.
        "sessions" => &["last_seen_at", "expires_at"],
        _ => &["last_used_at"],
    }
}

/// A checksum of every table but the audit trail, which is asserted on its
/// own: it grows with each refusal.
async fn snapshot(app: &TestApp) -> BTreeMap<String, (i64, String)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables
          WHERE schemaname = current_schema()
            AND tablename NOT IN ('audit_events', 'audit_head', '_sqlx_migrations')
          ORDER BY 1",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(tables.len() > 30, "{tables:?}");
    let mut out = BTreeMap::new();
    for table in tables {
        let row = bookkeeping(&table)
            .iter()
            .fold("to_jsonb(t)".to_owned(), |acc, c| {
                format!("({acc} - '{c}')")
            });
        let (rows, sum): (i64, String) = sqlx::query_as(&format!(
            "SELECT count(*), md5(coalesce(string_agg({row}::text, '|' ORDER BY {row}::text), ''))
               FROM \"{table}\" t"
        ))
        .fetch_one(&app.pool)
        .await
        .unwrap();
        out.insert(table, (rows, sum));
    }
    out
}

fn changed_tables(
    before: &BTreeMap<String, (i64, String)>,
    after: &BTreeMap<String, (i64, String)>,
) -> Vec<String> {
    after
        .iter()
        .filter(|(t, v)| before.get(*t) != Some(*v))
        .map(|(t, (rows, _))| format!("{t} ({} -> {rows} rows)", before.get(t).map_or(0, |b| b.0)))
        .collect()
}

/// The audit events after `seq`, as (action, actor, payload).
async fn events_after(app: &TestApp, seq: i64) -> Vec<(String, Option<String>, Value)> {
    sqlx::query_as(
        "SELECT action, actor_username, payload FROM audit_events WHERE seq > $1 ORDER BY seq",
    )
    .bind(seq)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

async fn last_seq(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM audit_events")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// What is wrong with the record of one refused attempt: it must be exactly
/// one `access.denied` event, Audrey's.
fn record_problem(events: &[(String, Option<String>, Value)]) -> Option<String> {
    match events {
        [(action, actor, payload)]
            if action == "access.denied"
                && actor.as_deref() == Some("audrey")
                && payload["reason"].as_str().is_some_and(|r| !r.is_empty()) =>
        {
            None
        }
        _ => Some(format!("recorded {events:?}")),
    }
}

// ---------------------------------------------------------------------------
// The API

/// Every write operation of the served document, as (METHOD, path).
async fn write_operations(app: &TestApp) -> Vec<(String, String)> {
    let resp = app.get_page("/api/openapi.json", None).await;
    let doc = ok(resp, StatusCode::OK);
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in WRITE_METHODS {
            if item.get(method).is_some() {
                out.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

/// A body someone allowed could send to this route; `{}` for a route this
/// does not know (a route that reads a body before it asks who is calling
/// then fails with its validation problem, naming itself).
async fn api_body(app: &TestApp, w: &World, method: &str, path: &str) -> Value {
    let adam = |uri: &'static str| async move {
        ok(
            call(app, &w.adam, Method::GET, uri, json!({})).await,
            StatusCode::OK,
        )
    };
    let release_revision =
        || async move { get_release(app, &w.erin, &w.release).await["revision"].clone() };
    let due = (Utc::now().date_naive() + Duration::days(14)).to_string();
    match (method, path) {
        ("POST", "/api/v1/changes") => complete_change("Rotate the database certificates"),
        ("PATCH", "/api/v1/changes/{id}") => json!({"title": "Something else now"}),
        ("POST", "/api/v1/changes/{id}/withdraw" | "/api/v1/changes/{id}/cancel") => {
            json!({"reason": "Not needed any more."})
        }
        ("POST", "/api/v1/changes/{id}/comments") => json!({"body": "Looks fine to me."}),
        ("PUT", "/api/v1/changes/{id}/assessment") => {
            let mut body = assessment("accept", "low");
            body["revision"] = json!(app.revision_of(&w.erin, &w.submitted).await);
            body
        }
        ("POST", "/api/v1/changes/{id}/votes") => json!({
            "vote": "approve",
            "comment": "",
            "revision": app.revision_of(&w.erin, &w.submitted).await,
            "acknowledge_conflicts": true,
        }),
        ("POST", "/api/v1/changes/{id}/close") => json!({"code": "successful", "notes": ""}),
        ("PUT", "/api/v1/changes/{id}/review") => json!({
            "revision": 0,
            "outcome": "Rolled back after the health checks failed.",
            "intervention": "rollback",
            "incidents": [],
            "went_well": "The rollback took five minutes.",
            "went_wrong": "The health checks were too strict.",
            "lessons": "Test the health checks on STAGE.",
        }),
        ("POST", "/api/v1/changes/{id}/review/sign-off") => json!({"revision": 1}),
        ("POST", "/api/v1/changes/{id}/review/actions") => {
            json!({"title": "Write the runbook", "owner": "olly", "due_on": due})
        }
        ("POST", "/api/v1/review-actions/{id}/status") => json!({"status": "done"}),
        ("PUT", "/api/v1/settings/quorum") => adam("/api/v1/settings/quorum").await,
        ("PUT", "/api/v1/settings/reviews") => adam("/api/v1/settings/reviews").await,
        ("PUT", "/api/v1/environments") => adam("/api/v1/environments").await,
        ("PUT", "/api/v1/calendar/settings") => json!({"production_per_hour": 5}),
        ("PUT", "/api/v1/users/{id}/environments") => json!({"environments": ["dev"]}),
        ("POST", "/api/v1/users") => json!({
            "username": "newbie",
            "roles": ["engineer"],
            "password": "newbie-correct-horse-battery",
        }),
        ("PUT", "/api/v1/users/{id}/roles") => json!({"roles": ["engineer", "release_manager"]}),
        ("POST", "/api/v1/users/{id}/tokens") => json!({"name": "another"}),
        ("POST", "/api/v1/templates") => json!({
            "name": "Database certificate rotation",
            "change": standard_change(),
        }),
        ("POST", "/api/v1/templates/{id}/votes") => json!({"vote": "approve", "comment": ""}),
        ("POST", "/api/v1/freezes") => json!({
            "starts_at": (Utc::now() + Duration::days(3)).to_rfc3339(),
            "ends_at": (Utc::now() + Duration::days(4)).to_rfc3339(),
            "reason": "Black Friday trading weekend",
            "environments": ["prod"],
        }),
        ("POST", "/api/v1/maintenance-periods") => {
            json!({"service": "edge-proxy", "weekdays": [2], "starts": "03:00", "minutes": 60})
        }
        ("POST", "/api/v1/deployments" | "/api/v1/deployments/dry-run") => {
            request(&w.approved, "test", None)
        }
        ("POST", "/api/v1/deployments/{id}/events") => {
            json!({"state": "started", "token": w.deployment_token})
        }
        ("POST", "/api/v1/deployments/observed") => {
            json!({"environment": "prod", "service": "edge-proxy", "digest": digest('f')})
        }
        ("POST", "/api/v1/break-glass") => json!({
            "change": w.approved,
            "environment": "prod",
            "reason": "Card payments fail for every customer since the certificate expired.",
            "incident": "INC-4712",
        }),
        ("POST", "/api/v1/findings/{id}/resolve") => {
            json!({"resolution": "A hotfix deployed by hand during INC-9; reviewed."})
        }
        ("POST", "/api/v1/releases") => release_body("January release", &[]),
        ("PUT", "/api/v1/releases/{id}") => {
            json!({"revision": release_revision().await, "plan": release_plan("December release, amended")})
        }
        ("POST", "/api/v1/releases/{id}/changes") => json!({
            "revision": release_revision().await,
            "change": w.approved_key,
            "reason": "It ships with the others.",
        }),
        ("POST", "/api/v1/releases/{id}/changes/{change}/remove") => json!({
            "revision": release_revision().await,
            "reason": "It goes out by itself.",
        }),
        ("POST", "/api/v1/releases/{id}/votes") => json!({
            "choice": "approve",
            "comment": "",
            "revision": release_revision().await,
        }),
        ("POST", "/api/v1/releases/{id}/rollback" | "/api/v1/releases/{id}/cancel") => {
            json!({"reason": "The go/no-go said no."})
        }
        ("POST", "/api/v1/calendar/feeds") => json!({"label": "Everything"}),
        _ => json!({}),
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_auditor_is_refused_on_every_write_route_of_the_api(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let w = world(&app).await;
    let audrey = app.api_login("audrey", &[Role::Auditor]).await;
    let operations = write_operations(&app).await;
    for (method, path, _) in API_EXEMPT {
        assert!(
            operations.iter().any(|(m, p)| m == method && p == path),
            "the exemption {method} {path} names no route"
        );
    }
    let tried: Vec<_> = operations
        .iter()
        .filter(|(m, p)| !API_EXEMPT.iter().any(|(em, ep, _)| em == m && ep == p))
        .collect();
    assert!(tried.len() >= 45, "{tried:?}");

    let start = snapshot(&app).await;
    let mut before = start.clone();
    let mut problems = Vec::new();
    for (method, path) in &tried {
        let uri = w.fill(path);
        let body = api_body(&app, &w, method, path).await;
        let seq = last_seq(&app).await;
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let resp = app
            .api(method.clone(), &uri, Some(&audrey.token), Some(body))
            .await;
        let what = format!("{method} {path}");
        let problem = resp.header("content-type") == Some("application/problem+json");
        let code = if problem {
            resp.json()["code"].as_str().unwrap_or_default().to_owned()
        } else {
            String::new()
        };
        if resp.status != StatusCode::FORBIDDEN || code.is_empty() {
            problems.push(format!("{what}: answered {} {}", resp.status, resp.body));
            continue;
        }
        if let Some(p) = record_problem(&events_after(&app, seq).await) {
            problems.push(format!("{what} ({code}): {p}"));
        }
        let now = snapshot(&app).await;
        let changed = changed_tables(&before, &now);
        if !changed.is_empty() {
            problems.push(format!("{what} ({code}) changed {changed:?}"));
        }
        before = now;
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        changed_tables(&start, &snapshot(&app).await),
        Vec::<String>::new()
    );
    assert_eq!(
        app.denials().await.len(),
        tried.len(),
        "one recorded refusal per attempt"
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_gate_s_dry_run_is_a_read_that_answers_an_auditor_no(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let w = world(&app).await;
    let audrey = app.api_login("audrey", &[Role::Auditor]).await;
    let before = snapshot(&app).await;
    let seq = last_seq(&app).await;
    let resp = call(
        &app,
        &audrey,
        Method::POST,
        "/api/v1/deployments/dry-run",
        request(&w.approved, "test", None),
    )
    .await;
    let verdict = ok(resp, StatusCode::OK);
    assert_eq!(verdict["allowed"], false, "{verdict}");
    assert!(!verdict["reasons"].as_array().unwrap().is_empty());
    assert!(events_after(&app, seq).await.is_empty());
    assert_eq!(
        changed_tables(&before, &snapshot(&app).await),
        Vec::<String>::new()
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_auditor_s_own_calendar_feed_is_a_read_only_subscription(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let w = world(&app).await;
    let audrey = app.api_login("audrey", &[Role::Auditor]).await;
    let feeds = || async {
        sqlx::query_as::<_, (uuid::Uuid, Option<chrono::DateTime<Utc>>)>(
            "SELECT user_id, revoked_at FROM calendar_feeds ORDER BY created_at",
        )
        .fetch_all(&app.pool)
        .await
        .unwrap()
    };
    // Another person's feed is not even found, and stays as it was.
    let erins = feeds().await;
    let resp = call(
        &app,
        &audrey,
        Method::POST,
        &format!("/api/v1/calendar/feeds/{}/revoke", w.feed),
        json!({}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND, "{}", resp.body);
    assert_eq!(feeds().await, erins);

    // Her own: a subscription to what she reads anyway, which she may end.
    let resp = call(
        &app,
        &audrey,
        Method::POST,
        "/api/v1/calendar/feeds",
        json!({"label": "Everything"}),
    )
    .await;
    let feed = ok(resp, StatusCode::CREATED);
    let url = feed["url"].as_str().unwrap();
    let path = &url[url.find("/calendar/").unwrap()..];
    let ics = app.get_page(path, None).await;
    assert_eq!(ics.status, StatusCode::OK, "{}", ics.body);
    assert!(ics.body.starts_with("BEGIN:VCALENDAR"), "{}", ics.body);
    let resp = call(
        &app,
        &audrey,
        Method::POST,
        &format!("/api/v1/calendar/feeds/{}/revoke", id_of(&feed)),
        json!({}),
    )
    .await;
    ok(resp, StatusCode::OK);
    let now = feeds().await;
    assert_eq!(now.len(), 2);
    assert_eq!(now[0], erins[0]);
    assert_eq!(now[1].0, audrey.user.id);
    assert!(now[1].1.is_some());
}

// ---------------------------------------------------------------------------
// Action items

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_auditor_cannot_be_made_the_owner_of_an_action_item(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let w = world(&app).await;
    app.user("audrey", &[Role::Auditor]).await;
    let due = (Utc::now().date_naive() + Duration::days(14)).to_string();
    let actions = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM review_actions")
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    let before = actions().await;

    // Through the API.
    let resp = call(
        &app,
        &w.erin,
        Method::POST,
        &format!("/api/v1/changes/{}/review/actions", w.reviewed),
        json!({"title": "Check the logs", "owner": "audrey", "due_on": due}),
    )
    .await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    assert_eq!(resp.json()["field"], "owner", "{}", resp.body);
    assert!(
        resp.body.contains("auditors change nothing"),
        "{}",
        resp.body
    );
    assert_eq!(actions().await, before);

    // Through the form.
    let erin = app
        .browser_login_with(w.erin.user.clone(), "erin-correct-horse-battery")
        .await;
    let resp = post(
        &app,
        &format!("/changes/{}/review/actions", w.reviewed),
        &erin,
        &[
            ("title", "Check the logs"),
            ("owner", "audrey"),
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
    assert!(
        resp.body.contains("auditors change nothing"),
        "{}",
        resp.body
    );
    assert_eq!(actions().await, before);

    // An owner who is left with only the auditor role moves nothing.
    sqlx::query("UPDATE users SET roles = '{auditor}' WHERE id = $1")
        .bind(w.olly.user.id)
        .execute(&app.pool)
        .await
        .unwrap();
    let resp = call(
        &app,
        &w.olly,
        Method::POST,
        &format!("/api/v1/review-actions/{}/status", w.action),
        json!({"status": "done"}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert_eq!(resp.problem_code(), "review_not_allowed");
    let status: String =
        sqlx::query_scalar("SELECT status FROM review_actions WHERE id = $1::uuid")
            .bind(&w.action)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(status, "open");
}

// ---------------------------------------------------------------------------
// The forms

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

/// Every form route of the pages, as the router's source says them: the
/// path of each `.route(..)` whose methods include `post(`.
fn form_routes() -> BTreeSet<String> {
    let source = include_str!("../../src/ui/mod.rs");
    let body = source
        .split("pub fn router()")
        .nth(1)
        .expect("the pages' router")
        .split("\n}\n")
        .next()
        .unwrap();
    body.split(".route(")
        .skip(1)
        .filter(|route| route.split(".layer(").next().unwrap().contains("post("))
        .map(|route| {
            let start = route.find('"').expect("a literal path") + 1;
            let end = route[start..].find('"').unwrap() + start;
            route[start..end].to_owned()
        })
        .collect()
}

/// Whether the page says the attempt was refused: the error page's "Not
/// allowed", or the page shown again with the refusal above its form.
fn refused(html: &str) -> bool {
    let error_page = html.contains("class=\"error-page\"") && html.contains("<h1>Not allowed</h1>");
    error_page
        || [
            "id=\"refusal\"",
            "id=\"deploy-refused\"",
            "id=\"report-errors\"",
            "id=\"action-errors\"",
        ]
        .iter()
        .any(|marker| html.contains(marker))
}

/// Each form with the fields someone allowed would post.
fn form_cases(w: &World) -> Vec<(&'static str, Vec<(&'static str, String)>)> {
    let s = |v: &str| v.to_owned();
    let tomorrow = (Utc::now() + Duration::days(1))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let later = (Utc::now() + Duration::days(2))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let due = (Utc::now().date_naive() + Duration::days(14)).to_string();
    let change = vec![
        ("title", s("Rotate the database certificates")),
        ("description", s("Replace the expiring certificates.")),
        ("justification", s("They expire on 5 December.")),
        ("type", s("normal")),
        ("category", s("configuration")),
        ("priority", s("high")),
        ("services", s("edge-proxy")),
        ("environments", s("PROD")),
        (
            "implementation_plan",
            s("Swap the certificates with the pipeline."),
        ),
        ("test_plan", s("TLS checks on STAGE, then PROD.")),
        ("test_integration", s("on")),
        ("test_evidence", s("https://ci.example.com/runs/1")),
        ("rollback_plan", s("Put the old certificates back.")),
        ("window_start", tomorrow.clone()),
        ("window_end", later.clone()),
        ("window_tz", s("UTC")),
        ("pr_url", s("https://git.example.com/pr/1")),
        ("commit_sha", s("abcdef1234")),
        ("artifact_digest", digest('b')),
        ("impact", s("2")),
        ("likelihood", s("2")),
    ];
    let release = vec![
        ("revision", s("1")),
        ("name", s("January release")),
        ("version", s("2027.1.1")),
        ("code_freeze", tomorrow.clone()),
        ("go_no_go", later.clone()),
        ("deployment", later.clone()),
        ("hypercare_end", later.clone()),
        ("test_levels", s("integration")),
        ("entry_criteria", s("Every change approved; builds green.")),
        ("exit_criteria", s("No open blocker after a day on STAGE.")),
        ("evidence", s("https://ci.example.com/runs/7")),
        ("phase_1_environment", s("prod")),
        ("phase_1_target", s("All traffic")),
        ("phase_1_soak", s("0")),
        ("phase_1_proceed", s("Dashboards green.")),
        ("phase_1_abort", s("Any page fires.")),
        ("rollback_triggers", s("A failed abort criterion.")),
        ("rollback_steps", s("Redeploy the previous artifacts.")),
        ("rollback_max_minutes", s("30")),
        ("reason", s("They ship together.")),
    ];
    vec![
        (
            "/admin/users",
            vec![
                ("username", s("newbie")),
                ("display_name", s("New Person")),
                ("roles", s("engineer")),
                ("password", s("newbie-correct-horse-battery")),
            ],
        ),
        (
            "/admin/users/{id}/roles",
            vec![("roles", s("engineer")), ("roles", s("release_manager"))],
        ),
        ("/admin/users/{id}/disable", vec![]),
        ("/admin/users/{id}/tokens", vec![("name", s("another"))]),
        ("/admin/users/{id}/tokens/{token_id}/revoke", vec![]),
        ("/admin/users/{id}/role-grants/{grant_id}/confirm", vec![]),
        ("/admin/users/{id}/role-grants/{grant_id}/cancel", vec![]),
        ("/changes/new", change.clone()),
        ("/changes/{id}/edit", change),
        ("/changes/{id}/submit", vec![]),
        (
            "/changes/{id}/withdraw",
            vec![("reason", s("Not needed any more."))],
        ),
        (
            "/changes/{id}/cancel",
            vec![("reason", s("Not needed any more."))],
        ),
        (
            "/changes/{id}/comments",
            vec![("body", s("Looks fine to me."))],
        ),
        (
            "/changes/{id}/deployments",
            vec![
                ("revision", s("1")),
                ("environment", s("test")),
                ("artifact_name", s("edge-proxy")),
                ("artifact_version", s("2.4.1")),
                ("digest", digest('b')),
                ("services", s("edge-proxy")),
            ],
        ),
        ("/releases/new", release.clone()),
        ("/releases/{id}/edit", release),
        (
            "/releases/{id}/changes",
            vec![
                ("revision", s("1")),
                ("change", w.approved_key.clone()),
                ("reason", s("It ships with the others.")),
            ],
        ),
        (
            "/releases/{id}/changes/{change}/remove",
            vec![
                ("revision", s("1")),
                ("reason", s("It goes out by itself.")),
            ],
        ),
        ("/releases/{id}/submit", vec![]),
        (
            "/releases/{id}/votes",
            vec![
                ("revision", s("1")),
                ("vote", s("approve")),
                ("comment", s("")),
            ],
        ),
        ("/releases/{id}/advance", vec![]),
        (
            "/releases/{id}/rollback",
            vec![("reason", s("The go/no-go said no."))],
        ),
        (
            "/releases/{id}/cancel",
            vec![("reason", s("The go/no-go said no."))],
        ),
        (
            "/admin/maintenance",
            vec![
                ("service", s("edge-proxy")),
                ("weekdays", s("2")),
                ("starts", s("03:00")),
                ("minutes", s("60")),
            ],
        ),
        ("/admin/maintenance/{id}/remove", vec![]),
        (
            "/admin/maintenance/limit",
            vec![("production_per_hour", s("5"))],
        ),
        (
            "/deployments/{id}/events",
            vec![
                ("state", s("started")),
                ("token", w.deployment_token.clone()),
                ("note", s("")),
            ],
        ),
        (
            "/changes/{id}/assessment",
            vec![
                ("revision", s("1")),
                ("data_classification", s("confidential")),
                (
                    "security_implications",
                    s("Touches TLS termination on the edge."),
                ),
                ("residual_risk", s("Low once certificates are pinned.")),
                ("risk_level", s("low")),
                ("decision", s("accept")),
            ],
        ),
        ("/changes/{id}/assessment/start", vec![]),
        (
            "/changes/{id}/votes",
            vec![
                ("revision", s("1")),
                ("vote", s("approve")),
                ("acknowledge_conflicts", s("on")),
                ("comment", s("")),
            ],
        ),
        (
            "/changes/{id}/close",
            vec![("code", s("successful")), ("notes", s(""))],
        ),
        (
            "/changes/{id}/review",
            vec![
                ("read", s("0")),
                ("outcome", s("Rolled back after the health checks failed.")),
                ("intervention", s("rollback")),
                ("went_well", s("The rollback took five minutes.")),
                ("went_wrong", s("The health checks were too strict.")),
                ("lessons", s("Test the health checks on STAGE.")),
            ],
        ),
        ("/changes/{id}/review/sign-off", vec![("read", s("1"))]),
        (
            "/changes/{id}/review/actions",
            vec![
                ("title", s("Write the runbook")),
                ("owner", s("olly")),
                ("due_on", due),
            ],
        ),
        ("/review-actions/{id}/status", vec![("status", s("done"))]),
        (
            "/admin/quorum",
            vec![
                ("low_approvals", s("1")),
                ("medium_approvals", s("2")),
                ("high_approvals", s("2")),
                ("critical_approvals", s("3")),
                ("emergency_approvals", s("1")),
            ],
        ),
        (
            "/admin/quorum/reviews",
            vec![("due_days", s("5")), ("required_for_all", s("on"))],
        ),
        (
            "/templates",
            vec![
                ("name", s("Database certificate rotation")),
                ("title", s("Rotate the database certificates")),
                ("description", s("Replace the expiring certificates.")),
                ("category", s("configuration")),
                ("services", s("edge-proxy")),
                ("environments", s("PROD")),
                (
                    "implementation_plan",
                    s("Swap the certificates with the pipeline."),
                ),
                ("test_plan", s("TLS checks on STAGE, then PROD.")),
                ("rollback_plan", s("Put the old certificates back.")),
                ("impact", s("1")),
                ("likelihood", s("1")),
            ],
        ),
        (
            "/templates/{id}/votes",
            vec![("vote", s("approve")), ("comment", s(""))],
        ),
        ("/templates/{id}/retire", vec![]),
        (
            "/freezes",
            vec![
                ("starts_at", tomorrow),
                ("ends_at", later),
                ("reason", s("Black Friday trading weekend")),
                ("environments", s("prod")),
                ("services", s("")),
            ],
        ),
        ("/freezes/{id}/lift", vec![]),
        ("/admin/environments", vec![("soak_1", s("30"))]),
        (
            "/admin/users/{id}/environments",
            vec![("environments", s("dev"))],
        ),
        (
            "/exceptions/break-glass",
            vec![
                ("change", w.approved_key.clone()),
                ("environment", s("prod")),
                (
                    "reason",
                    s("Card payments fail for every customer since the certificate expired."),
                ),
                ("incident", s("INC-4712")),
            ],
        ),
        ("/exceptions/break-glass/{id}/confirm", vec![]),
        (
            "/exceptions/findings/{id}/resolve",
            vec![(
                "resolution",
                s("A hotfix deployed by hand during INC-9; reviewed."),
            )],
        ),
    ]
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn every_form_route_has_a_case_for_the_auditor(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let w = world(&app).await;
    let cased: BTreeSet<String> = form_cases(&w)
        .into_iter()
        .map(|(route, _)| route.to_owned())
        .chain(UI_EXEMPT.iter().map(|(route, _)| (*route).to_owned()))
        .collect();
    let routed = form_routes();
    assert!(routed.len() >= 50, "{routed:?}");
    assert_eq!(
        routed.difference(&cased).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "form routes an auditor is not tested on"
    );
    assert_eq!(
        cased.difference(&routed).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "cases for routes that are gone"
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_auditor_is_refused_on_every_form(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let w = world(&app).await;
    let audrey = app.browser_login("audrey", &[Role::Auditor]).await;
    // The change's page offers her no comment form; its author's does.
    let page = format!("/changes/{}", w.submitted);
    let shown = app.get_page(&page, Some(&audrey.cookie)).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    assert!(shown.body.contains("id=\"comments\""));
    assert!(!shown.body.contains("id=\"add-comment\""));
    let erin = app
        .browser_login_with(w.erin.user.clone(), "erin-correct-horse-battery")
        .await;
    let shown = app.get_page(&page, Some(&erin.cookie)).await;
    assert!(shown.body.contains("id=\"add-comment\""));

    let cases = form_cases(&w);
    let start = snapshot(&app).await;
    let mut before = start.clone();
    let mut problems = Vec::new();
    for (route, fields) in &cases {
        let uri = w.fill(route);
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let seq = last_seq(&app).await;
        let resp = post(&app, &uri, &audrey, &fields).await;
        if resp.status != StatusCode::FORBIDDEN || !refused(&resp.body) {
            let main = resp.body.find("<main").unwrap_or(0);
            let shown: String = resp.body[main..].chars().take(600).collect();
            problems.push(format!("{route}: answered {} {shown}", resp.status));
            continue;
        }
        if let Some(p) = record_problem(&events_after(&app, seq).await) {
            problems.push(format!("{route}: {p}"));
        }
        let now = snapshot(&app).await;
        let changed = changed_tables(&before, &now);
        if !changed.is_empty() {
            problems.push(format!("{route} changed {changed:?}"));
        }
        before = now;
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        changed_tables(&start, &snapshot(&app).await),
        Vec::<String>::new()
    );
    assert_eq!(app.denials().await.len(), cases.len());
}
