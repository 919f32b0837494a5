//! The deployment pages, from the people's side and the attacker's: the
//! deploy form on a change's page refuses, in words, whoever may not deploy
//! to PROD and records exactly that refusal; the people who may, deploy
//! through it and report what happened; the promotion strip, the list of
//! deployments with its filters and pages, and the freezes over a planned
//! window; and every page passes axe-core and fits a phone.

use axum::http::{Method, StatusCode};
use cab_domain::Role;
use chrono::{Duration, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::browser::{Browser, sign_in};
use crate::cli::{add_user, start_server};
use crate::common::{BrowserSession, TestApp, TestResponse};
use crate::deployments::{artifact, request};

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

/// One environment's step of the promotion strip on a change's page.
fn step<'a>(html: &'a str, env: &str) -> &'a str {
    between(html, &format!("<li id=\"promotion-{env}\">"), "</li>")
}

/// The deployments a list page shows, by number, in order.
fn listed(html: &str) -> Vec<i64> {
    let Some(body) = html.split("<tbody>").nth(1) else {
        return Vec::new();
    };
    body.split("<tr data-environment=")
        .skip(1)
        .map(|row| {
            between(row, ">DEP-", "</a>")
                .parse()
                .unwrap_or_else(|_| panic!("{row}"))
        })
        .collect()
}

/// The value of `attr` on each row of a list page.
fn row_attrs(html: &str, attr: &str) -> Vec<String> {
    html.split("<tr data-environment=")
        .skip(1)
        .map(|row| {
            let row = format!("data-environment={row}");
            between(&row, &format!("{attr}=\""), "\"").to_owned()
        })
        .collect()
}

/// The link with this id, as a browser would follow it.
fn link(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!(" id=\"{id}\""))?;
    let tag = &html[html[..at].rfind('<')?..at];
    Some(
        between(tag, "href=\"", "\"")
            .replace("&#38;", "&")
            .replace("&amp;", "&"),
    )
}

fn password(username: &str) -> String {
    format!("{username}-correct-horse-battery")
}

impl TestApp {
    /// Signs `username` (made by `app.user` or `app.cast()`) in through the
    /// login form.
    async fn session_of(&self, username: &str) -> BrowserSession {
        let user =
            cab_db::users::find_by_username(&mut self.pool.acquire().await.unwrap(), username)
                .await
                .unwrap()
                .unwrap();
        self.browser_login_with(user, &password(username)).await
    }

    async fn set_roles(&self, username: &str, roles: &str) {
        sqlx::query("UPDATE users SET roles = $1::text[] WHERE username = $2")
            .bind(roles)
            .bind(username)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    async fn change_number(&self, id: &str) -> i64 {
        sqlx::query_scalar("SELECT number FROM changes WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Posts the deploy form of the change's page for `env`, with what the
    /// page fills in.
    async fn deploy_form(
        &self,
        s: &BrowserSession,
        change: &str,
        env: &str,
        csrf: Option<&str>,
    ) -> TestResponse {
        let mut fields = vec![
            ("revision", "1"),
            ("environment", env),
            ("artifact_name", "edge-proxy"),
            ("artifact_version", "2.4.1"),
            ("services", "edge-proxy"),
        ];
        let digest = artifact();
        fields.push(("digest", &digest));
        if let Some(t) = csrf {
            fields.push(("_csrf", t));
        }
        self.post_form(
            &format!("/changes/{change}/deployments"),
            Some(&s.cookie),
            &fields,
        )
        .await
    }

    /// Reports on a deployment through its page's form; the redirect's
    /// notice cookie, if it set one.
    async fn report_form(
        &self,
        s: &BrowserSession,
        deployment: &str,
        state: &str,
        token: Option<&str>,
    ) -> TestResponse {
        let mut fields = vec![("_csrf", s.csrf.as_str()), ("state", state)];
        if let Some(t) = token {
            fields.push(("token", t));
        }
        self.post_form(
            &format!("/deployments/{deployment}/events"),
            Some(&s.cookie),
            &fields,
        )
        .await
    }

    /// The page a redirect leads to, with the notice it left.
    async fn follow(&self, s: &BrowserSession, resp: &TestResponse) -> TestResponse {
        assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
        let to = resp.header("location").unwrap().to_owned();
        let cookie = match resp.cookie("cab_notice") {
            Some(n) => format!("{}; cab_notice={n}", s.cookie),
            None => s.cookie.clone(),
        };
        let page = self.get_page(&to, Some(&cookie)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        page
    }
}

/// The last audit event, which must be the one refusal of the form.
async fn one_refusal_recorded(app: &TestApp, before: i64, code: &str) {
    assert_eq!(app.audit_count().await, before + 1, "one event, no more");
    let (action, payload) = app.audit_events().await.pop().unwrap();
    assert_eq!(action, "access.denied");
    assert_eq!(payload["attempted"], "deployment.authorize");
    let codes: Vec<&str> = payload["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["code"].as_str().or_else(|| r.as_str()))
        .collect();
    assert!(
        codes.contains(&code) || payload["reason"] == code,
        "{code} in {payload}"
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_deploy_form_refuses_prod_to_whoever_worked_on_or_approved_the_change(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    // Randy contributes, and is a release manager too.
    app.user("randy", &[Role::Engineer, Role::ReleaseManager])
        .await;
    app.user("eddie", &[Role::Engineer]).await;
    let id = app.open_change(&c.erin).await;
    let resp = app
        .api(
            Method::PATCH,
            &format!("/api/v1/changes/{id}"),
            Some(&c.erin.token),
            Some(json!({"contributors": ["randy"]})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    app.change_action(&c.erin, &id, "submit", None).await;
    let resp = app.vote(&c.carol, &id, "approve", "").await;
    assert_eq!(resp.json()["state"], "approved", "{}", resp.body);
    app.promote_to_stage(&c.pipeline, &id).await;
    // The author and the approver made release managers as well.
    app.set_roles("erin", "{engineer,release_manager}").await;
    app.set_roles("carol", "{cab_member,release_manager}").await;
    let deployed = app.deployment_count().await;
    assert_eq!(deployed, 3);

    let cases = [
        (
            "erin",
            "self_deployment",
            "You wrote or contributed to this change, so you cannot deploy it to PROD; someone else must.",
        ),
        (
            "randy",
            "self_deployment",
            "You wrote or contributed to this change, so you cannot deploy it to PROD; someone else must.",
        ),
        (
            "carol",
            "approver_deployment",
            "You approved or assessed this change, so you cannot also deploy it to production; another release manager must.",
        ),
        (
            "eddie",
            "release_manager_required",
            "Only release managers deploy to PROD.",
        ),
    ];
    for (who, code, words) in cases {
        let s = app.session_of(who).await;
        let page = app
            .get_page(&format!("/changes/{id}"), Some(&s.cookie))
            .await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains("id=\"deploy-form\""), "{who}");
        // An engineer is not offered production; the others are, and the
        // gate decides.
        assert_eq!(
            page.body.contains("<option value=\"prod\""),
            who != "eddie",
            "{who}"
        );
        let before = app.audit_count().await;
        let resp = app.deploy_form(&s, &id, "prod", Some(&s.csrf)).await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "{who}: {}", resp.body);
        // The change's page again, the reason in words beside the form.
        let refused = between(&resp.body, "id=\"deploy-refused\"", "</div>");
        assert!(refused.contains(words), "{who}: {refused}");
        assert!(!resp.body.contains(code), "no codes on the page");
        assert!(resp.body.contains("id=\"change-key\""));
        // What was asked is still in the form.
        assert!(resp.body.contains("<option value=\"prod\" selected>"));
        assert_eq!(app.deployment_count().await, deployed, "{who}");
        one_refusal_recorded(&app, before, code).await;
    }

    // Without the form's CSRF token: refused before the gate is asked.
    let s = app.session_of("rita").await;
    let before = app.audit_count().await;
    let resp = app.deploy_form(&s, &id, "prod", None).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert!(resp.body.contains("security token"), "{}", resp.body);
    let resp = app
        .deploy_form(
            &s,
            &id,
            "prod",
            Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(app.deployment_count().await, deployed);
    let denied_deploys = app
        .denials()
        .await
        .into_iter()
        .filter(|(a, _)| a == "deployment.authorize")
        .count();
    assert_eq!(denied_deploys, 4, "the gate was never asked");
    assert_eq!(app.audit_count().await, before, "nothing recorded");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_form_error_is_named_beside_its_field(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let id = app.open_change(&c.erin).await;
    let s = app.session_of("erin").await;
    let before = app.audit_count().await;
    let resp = app
        .post_form(
            &format!("/changes/{id}/deployments"),
            Some(&s.cookie),
            &[
                ("_csrf", &s.csrf),
                ("revision", "0"),
                ("environment", "dev"),
                ("artifact_name", "edge-proxy"),
                ("digest", "sha256:not-a-digest"),
            ],
        )
        .await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    let field = between(&resp.body, "<input id=\"deploy-digest\"", ">");
    assert!(field.contains("aria-invalid=\"true\""), "{field}");
    assert!(field.contains("deploy-digest-error"), "{field}");
    assert!(
        resp.body.contains(
            "<p class=\"field-error\" id=\"deploy-digest-error\">A digest is sha256: and 64 lower-case hexadecimal digits.</p>"
        ),
        "{}",
        resp.body
    );
    // The summary on top of the form links to the field and takes the focus.
    let summary = between(&resp.body, "id=\"deploy-errors\"", "</div>");
    assert!(
        summary.contains("<a href=\"#deploy-digest\">Digest: A digest is sha256:"),
        "{summary}"
    );
    assert!(resp.body.contains(
        "class=\"alert alert-error error-summary\" tabindex=\"-1\" id=\"deploy-errors\""
    ));
    // What was typed stays.
    assert!(field.contains("value=\"sha256:not-a-digest\""), "{field}");
    assert_eq!(app.deployment_count().await, 0);
    assert_eq!(app.audit_count().await, before);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_engineer_deploys_to_dev_and_an_independent_release_manager_to_prod_through_the_pages(
    pool: PgPool,
) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let id = app.approved_change(&c.erin, &c.carol).await;
    let number = app.change_number(&id).await;
    let erin = app.session_of("erin").await;

    // Nothing deployed yet: every environment says so, in rank order.
    let page = app
        .get_page(&format!("/changes/{id}"), Some(&erin.cookie))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let strip = between(&page.body, "<ol class=\"promotion\"", "</ol>");
    let order: Vec<usize> = ["dev", "test", "stage", "prod"]
        .iter()
        .map(|e| strip.find(&format!("promotion-{e}")).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{strip}");
    assert!(
        page.body
            .contains("Promotion: DEV → TEST → STAGE → PROD</h3>")
    );
    for env in ["dev", "test", "stage", "prod"] {
        assert!(step(&page.body, env).contains("Not deployed"), "{env}");
    }
    // The form: DEV first, the change's digest and services filled in, and
    // for an engineer no production.
    let form = between(&page.body, "id=\"deploy-form\"", "</form>");
    assert!(
        form.contains("<option value=\"dev\" selected>DEV</option>"),
        "{form}"
    );
    assert!(!form.contains("value=\"prod\""), "{form}");
    assert!(
        form.contains(&format!("value=\"{}\"", artifact())),
        "{form}"
    );
    assert!(
        form.contains("name=\"services\" value=\"edge-proxy\""),
        "{form}"
    );
    assert!(
        form.contains("name=\"artifact_name\" value=\"edge-proxy\""),
        "{form}"
    );

    // Erin deploys to DEV: the deployment's page, with the authorization
    // shown this once.
    let resp = app.deploy_form(&erin, &id, "dev", Some(&erin.csrf)).await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    let dep_id: String =
        sqlx::query_scalar("SELECT id::text FROM deployments WHERE environment = 'dev'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        resp.header("location"),
        Some(format!("/deployments/{dep_id}").as_str())
    );
    let notice = between(&resp.body, "id=\"notice\">", "</p>");
    assert!(
        notice.contains(&format!(
            "the gate authorized you to deploy CHG-{number} to DEV"
        )) && notice.contains("valid until"),
        "{notice}"
    );
    let token = between(&resp.body, "<code id=\"authorization-token\">", "</code>").to_owned();
    let keys: cab_server::crypto::deploy::Jwks = serde_json::from_str(
        &app.api(Method::GET, "/api/v1/deployments/keys", None, None)
            .await
            .body,
    )
    .unwrap();
    let claims = cab_server::crypto::deploy::verify(&token, &keys, Utc::now()).unwrap();
    assert_eq!(claims.environment, "dev");
    assert_eq!(claims.initiator, "erin");
    assert_eq!(
        between(&resp.body, "id=\"deployment-state\">", "<"),
        "Authorized"
    );

    // Opened again, it no longer shows the authorization.
    let again = app
        .get_page(&format!("/deployments/{dep_id}"), Some(&erin.cookie))
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert!(!again.body.contains(&token));
    assert!(!again.body.contains("authorization-token"));
    assert!(again.body.contains("id=\"report-started\""));
    // The deployment's number names it as well as its id.
    let by_number: i64 = sqlx::query_scalar("SELECT number FROM deployments WHERE id = $1::uuid")
        .bind(&dep_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let by_key = app
        .get_page(&format!("/deployments/DEP-{by_number}"), Some(&erin.cookie))
        .await;
    assert_eq!(by_key.status, StatusCode::OK);
    assert!(by_key.body.contains(&format!("DEP-{by_number}")));

    // Started without the token: refused in words, nothing moved.
    let resp = app.report_form(&erin, &dep_id, "started", None).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    let said = between(&resp.body, "id=\"report-errors\"", "</div>");
    assert!(
        said.contains("Starting a deployment takes the authorization the gate gave for it."),
        "{said}"
    );
    // With it: started, then succeeded, each with its notice.
    let resp = app
        .report_form(&erin, &dep_id, "started", Some(&token))
        .await;
    let shown = app.follow(&erin, &resp).await;
    assert!(
        between(&shown.body, "id=\"notice\">", "</p>")
            .contains(&format!("DEP-{by_number} is recorded as started")),
        "{}",
        shown.body
    );
    assert_eq!(
        between(&shown.body, "id=\"deployment-state\">", "<"),
        "Started"
    );
    let resp = app.report_form(&erin, &dep_id, "succeeded", None).await;
    let shown = app.follow(&erin, &resp).await;
    assert!(
        shown
            .body
            .contains(&format!("DEP-{by_number} is recorded as succeeded.")),
        "{}",
        shown.body
    );
    assert_eq!(
        between(&shown.body, "id=\"deployment-state\">", "<"),
        "Succeeded"
    );
    // Its history, from the audit trail, in words.
    let history = between(&shown.body, "id=\"history\"", "</section>");
    for action in [
        "deployment.authorized",
        "deployment.started",
        "deployment.succeeded",
    ] {
        assert!(
            history.contains(&format!("data-action=\"{action}\"")),
            "{history}"
        );
    }
    assert!(history.contains("to DEV succeeded"), "{history}");
    // Someone else sees no report buttons, and a crafted report is refused.
    let rita = app.session_of("rita").await;
    let theirs = app
        .get_page(&format!("/deployments/{dep_id}"), Some(&rita.cookie))
        .await;
    assert!(!theirs.body.contains("id=\"report-"), "{}", theirs.body);
    let resp = app.report_form(&rita, &dep_id, "rolled_back", None).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert!(
        resp.body
            .contains("Only the account that runs a deployment")
    );

    // The pipeline takes it through TEST and STAGE.
    for env in ["test", "stage"] {
        app.deploy(&c.pipeline, request(&id, env, Some("erin")))
            .await;
    }

    // Rita, who had no part in the change, deploys it to PROD.
    let page = app
        .get_page(&format!("/changes/{id}"), Some(&rita.cookie))
        .await;
    let form = between(&page.body, "id=\"deploy-form\"", "</form>");
    assert!(
        form.contains("<option value=\"prod\" selected>PROD</option>"),
        "{form}"
    );
    let resp = app.deploy_form(&rita, &id, "prod", Some(&rita.csrf)).await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    let prod_id = between(
        &resp.body,
        "<form method=\"post\" action=\"/deployments/",
        "/events",
    )
    .to_owned();
    let token = between(&resp.body, "<code id=\"authorization-token\">", "</code>").to_owned();
    // The start form is filled in with it on this one page.
    assert!(between(&resp.body, "id=\"start-form\"", "</form>").contains(&token));
    let resp = app
        .report_form(&rita, &prod_id, "started", Some(&token))
        .await;
    app.follow(&rita, &resp).await;
    let resp = app.report_form(&rita, &prod_id, "succeeded", None).await;
    app.follow(&rita, &resp).await;

    // The strip: each environment's latest deployment, in words.
    let page = app
        .get_page(&format!("/changes/{id}"), Some(&erin.cookie))
        .await;
    for (env, by) in [
        ("dev", "erin"),
        ("test", "erin"),
        ("stage", "erin"),
        ("prod", "rita"),
    ] {
        let s = step(&page.body, env);
        assert!(s.contains(">Succeeded</span>"), "{env}: {s}");
        assert!(s.contains("sha256:bbbbbbbbbbbb…"), "{env}: {s}");
        assert!(s.contains(&format!("by {by}, ")), "{env}: {s}");
        assert!(s.contains("<a href=\"/deployments/"), "{env}: {s}");
        assert!(!s.contains("Not deployed"), "{env}: {s}");
    }
    // The list shows them all, people by name, never their ids.
    let list = app.get_page("/deployments", Some(&erin.cookie)).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(listed(&list.body).len(), 4);
    assert!(
        list.body
            .contains("erin <span class=\"hint\">(run by deploy-bot)</span>"),
        "the pipeline runs it for her"
    );
    for user in [&c.erin.user, &c.rita.user] {
        assert!(!list.body.contains(&user.id.to_string()));
    }
    assert!(
        list.body
            .contains("<a href=\"https://ci.example.com/runs/4242\"")
    );
    assert!(
        list.body
            .contains("<li><a href=\"/deployments\" aria-current=\"page\">Deployments</a></li>")
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_list_filters_in_the_url_and_pages_back_by_number(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let id = app.approved_change(&c.erin, &c.carol).await;
    let number = app.change_number(&id).await;
    app.promote_to_stage(&c.pipeline, &id).await;
    let resp = app.gate(&c.rita.token, request(&id, "prod", None)).await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    let s = app.session_of("carol").await;
    let get = |uri: String| {
        let app = &app;
        let cookie = s.cookie.clone();
        async move {
            let page = app.get_page(&uri, Some(&cookie)).await;
            assert_eq!(page.status, StatusCode::OK, "{uri}: {}", page.body);
            page.body
        }
    };

    let all = get("/deployments".into()).await;
    assert_eq!(listed(&all).len(), 4);
    let stage = get("/deployments?environment=stage".into()).await;
    assert_eq!(row_attrs(&stage, "data-environment"), ["stage"]);
    assert!(stage.contains("<option value=\"stage\" selected>STAGE</option>"));
    let authorized = get("/deployments?state=authorized".into()).await;
    assert_eq!(row_attrs(&authorized, "data-environment"), ["prod"]);
    assert!(authorized.contains("<option value=\"authorized\" selected>Authorized</option>"));
    assert!(authorized.contains(">Authorized</span>"));
    let both = get("/deployments?environment=dev&state=succeeded".into()).await;
    assert_eq!(row_attrs(&both, "data-state"), ["succeeded"]);
    let none = get("/deployments?environment=dev&state=failed".into()).await;
    assert!(listed(&none).is_empty());
    assert!(none.contains("No deployment matches."));
    let by_change = get(format!("/deployments?change=CHG-{number}")).await;
    assert_eq!(listed(&by_change).len(), 4);
    assert_eq!(
        listed(&get("/deployments?service=edge-proxy".into()).await).len(),
        4
    );
    assert!(listed(&get("/deployments?service=billing".into()).await).is_empty());
    // Nonsense in the URL is answered in words.
    let bad = get("/deployments?state=exploded".into()).await;
    assert!(bad.contains("There is no such deployment state."), "{bad}");
    let bad = get("/deployments?change=CHG-99999".into()).await;
    assert!(bad.contains("There is no change CHG-99999"), "{bad}");
    assert!(listed(&bad).is_empty());

    // Thirty more on DEV: a page holds 25, the older ones follow.
    sqlx::query(
        "INSERT INTO deployments (id, change_id, revision, environment, artifact_name, artifact_version,
             artifact_digest, services, initiator_id, executor_id, pipeline_provider, pipeline_run_id,
             pipeline_url, state, authorized_at, expires_at, token_id, token_used_at, started_at,
             finished_at, updated_at)
         SELECT gen_random_uuid(), change_id, revision, environment, artifact_name, artifact_version,
             artifact_digest, services, initiator_id, executor_id, pipeline_provider, pipeline_run_id,
             pipeline_url, state, authorized_at, expires_at, gen_random_uuid(), token_used_at, started_at,
             finished_at, updated_at
         FROM deployments, generate_series(1, 30) WHERE environment = 'dev'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let first = get("/deployments".into()).await;
    let one = listed(&first);
    assert_eq!(one.len(), 25);
    assert!(one.windows(2).all(|w| w[0] > w[1]), "newest first: {one:?}");
    assert!(link(&first, "newest-page").is_none());
    let older = link(&first, "older-page").expect("an older page");
    assert_eq!(older, format!("/deployments?before={}", one[24]));
    let second = get(older).await;
    let two = listed(&second);
    assert_eq!(two.len(), 9);
    assert!(two[0] < one[24]);
    assert!(link(&second, "older-page").is_none());
    assert_eq!(
        link(&second, "newest-page").as_deref(),
        Some("/deployments")
    );
    // The filter is kept from page to page.
    let dev = get("/deployments?environment=dev".into()).await;
    assert_eq!(listed(&dev).len(), 25);
    let older = link(&dev, "older-page").unwrap();
    assert!(
        older.starts_with("/deployments?environment=dev&before="),
        "{older}"
    );
    let dev_two = get(older).await;
    assert_eq!(row_attrs(&dev_two, "data-environment"), vec!["dev"; 6]);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_freeze_over_the_planned_window_is_named_on_the_change_and_the_cab_queue(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let id = app.open_change(&c.erin).await;
    let resp = app.change_action(&c.erin, &id, "submit", None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    // One freeze covers the window on PROD for its service; one covers
    // DEV only; one is over before the window opens.
    let now = Utc::now();
    for (reason, from, to, envs) in [
        ("Black Friday", now, now + Duration::hours(2), "{prod}"),
        ("DEV rebuild", now, now + Duration::hours(2), "{dev}"),
        (
            "Last week",
            now - Duration::days(8),
            now - Duration::days(7),
            "{}",
        ),
    ] {
        sqlx::query(
            "INSERT INTO freezes (id, starts_at, ends_at, reason, environments, services, created_by, created_at)
             SELECT gen_random_uuid(), $1, $2, $3, $4::text[], '{edge-proxy}', id, now() FROM users WHERE username = 'rita'",
        )
        .bind(from)
        .bind(to)
        .bind(reason)
        .bind(envs)
        .execute(&app.pool)
        .await
        .unwrap();
    }
    let s = app.session_of("carol").await;
    let page = app
        .get_page(&format!("/changes/{id}"), Some(&s.cookie))
        .await;
    let warning = between(&page.body, "id=\"freeze-warnings\">", "</div>");
    assert!(
        warning.contains("A freeze overlaps the planned window: Black Friday, "),
        "{warning}"
    );
    assert!(
        warning.contains("UTC, PROD; services edge-proxy."),
        "{warning}"
    );
    assert!(!warning.contains("DEV rebuild") && !warning.contains("Last week"));
    let queue = app.get_page("/cab", Some(&s.cookie)).await;
    assert_eq!(queue.status, StatusCode::OK);
    let row = between(&queue.body, &format!("<a href=\"/changes/{id}\">"), "</tr>");
    assert!(
        row.contains("A freeze overlaps the planned window: Black Friday, "),
        "{row}"
    );
    assert!(!row.contains("DEV rebuild"));
}

async fn post(http: &reqwest::Client, url: &str, token: &str, body: Value) -> Value {
    let resp = http
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "{url}: {status} {body}");
    body
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn deployment_pages_pass_the_accessibility_checks_in_a_browser_at_desktop_and_phone_width(
    pool: PgPool,
) {
    add_user(&pool, "erin", &["engineer"], "erin-long-password");
    add_user(&pool, "carol", &["cab_member"], "carol-long-password");
    add_user(&pool, "rita", &["release_manager"], "rita-long-password");
    let (_server, url) = start_server(&pool, "STAGING");
    let http = reqwest::Client::new();
    let mut tokens = std::collections::HashMap::new();
    for (who, pw) in [
        ("erin", "erin-long-password"),
        ("carol", "carol-long-password"),
    ] {
        let t = post(
            &http,
            &format!("{url}/api/v1/auth/token"),
            "",
            json!({"username": who, "password": pw}),
        )
        .await;
        tokens.insert(who, t["access_token"].as_str().unwrap().to_owned());
    }
    // Erin's low-risk change, its window open now, approved by Carol.
    let mut body = crate::changes::complete_change("Roll out the new edge proxy");
    body["window"] = json!({
        "start": (Utc::now() - Duration::hours(1)).to_rfc3339(),
        "end": (Utc::now() + Duration::hours(3)).to_rfc3339(),
        "time_zone": "UTC"
    });
    body["risk"] = json!({"impact": 1, "likelihood": 1});
    body["priority"] = json!("medium");
    let change = post(
        &http,
        &format!("{url}/api/v1/changes"),
        &tokens["erin"],
        body,
    )
    .await;
    let id = change["id"].as_str().unwrap().to_owned();
    post(
        &http,
        &format!("{url}/api/v1/changes/{id}/submit"),
        &tokens["erin"],
        json!({}),
    )
    .await;
    let voted = post(
        &http,
        &format!("{url}/api/v1/changes/{id}/votes"),
        &tokens["carol"],
        json!({"revision": 1, "vote": "approve"}),
    )
    .await;
    assert_eq!(voted["state"], "approved", "{voted}");
    // Erin takes it through DEV, TEST and STAGE herself.
    for env in ["dev", "test", "stage"] {
        let mut req = request(&id, env, None);
        req["pipeline"] = json!({});
        let a = post(
            &http,
            &format!("{url}/api/v1/deployments"),
            &tokens["erin"],
            req,
        )
        .await;
        let dep = a["deployment"]["id"].as_str().unwrap();
        let events = format!("{url}/api/v1/deployments/{dep}/events");
        post(
            &http,
            &events,
            &tokens["erin"],
            json!({"state": "started", "token": a["token"]}),
        )
        .await;
        post(
            &http,
            &events,
            &tokens["erin"],
            json!({"state": "succeeded"}),
        )
        .await;
    }

    let b = Browser::start().await;
    sign_in(&b, &url, "rita", "rita-long-password").await;
    assert!(b.texts("nav a").await.contains(&"Deployments".to_owned()));
    b.goto(&format!("{url}/changes/{id}")).await;
    assert!(b.text("#promotion-stage").await.contains("Succeeded"));
    assert!(b.text("#promotion-prod").await.contains("Not deployed"));
    // The environment's colour is the one on record, on every page.
    assert_eq!(
        b.css_value("#promotion-prod .environment", "background-color")
            .await,
        "rgba(185, 28, 28, 1)"
    );
    b.check_page("a change with its promotion strip and deploy form")
        .await;
    b.click("#deploy-submit").await;
    b.wait_url(|u| u.ends_with("/deployments")).await;
    b.find("#authorization-token").await;
    assert_eq!(b.text("#deployment-state").await, "Authorized");
    assert_eq!(
        b.css_value("#deployment-environment", "background-color")
            .await,
        "rgba(185, 28, 28, 1)"
    );
    b.check_page("a deployment just authorized, with its token")
        .await;
    // Started with the authorization filled in, then succeeded.
    b.click("#report-started").await;
    b.wait_url(|u| u.contains("/deployments/") && !u.ends_with("/events"))
        .await;
    for _ in 0..50 {
        if b.text("#deployment-state").await == "Started" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(b.text("#deployment-state").await, "Started");
    assert!(b.text("#notice").await.contains("recorded as started"));
    b.check_page("a started deployment").await;
    b.click("#report-succeeded").await;
    for _ in 0..50 {
        if b.text("#deployment-state").await == "Succeeded" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(b.text("#deployment-state").await, "Succeeded");
    b.check_page("a succeeded deployment with its history")
        .await;
    b.goto(&format!("{url}/deployments")).await;
    assert_eq!(b.count("#deployments tbody tr").await, 4);
    b.check_page("the deployments").await;
    b.click("#filter-environment option[value='prod']").await;
    b.click("#apply-filters").await;
    b.wait_url(|u| u.contains("environment=prod")).await;
    assert_eq!(b.count("#deployments tbody tr").await, 1);
    b.check_page("the deployments filtered to PROD").await;
    b.goto(&format!("{url}/changes/{id}")).await;
    assert!(b.text("#promotion-prod").await.contains("Succeeded"));
    b.check_page("a change deployed everywhere").await;
    b.close().await;
}
