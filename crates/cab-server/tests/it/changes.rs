//! Change requests through the API and the pages, from the engineer's side
//! and the attacker's.

use axum::http::{Method, StatusCode};
use cab_domain::Role;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::{ApiClient, TestApp, csrf_in};

/// A complete change request, ready to submit.
pub fn complete_change(title: &str) -> Value {
    json!({
        "title": title,
        "description": "Replace the expiring certificates on the edge proxies.",
        "justification": "They expire on 5 December.",
        "type": "normal",
        "category": "configuration",
        "priority": "high",
        "services": ["edge-proxy"],
        "environments": ["STAGE", "PROD"],
        "implementation_plan": "Swap the certificates with the pipeline.",
        "test_plan": "TLS checks on STAGE, then PROD.",
        "test_levels": {"unit": false, "integration": true, "system": true, "acceptance": false},
        "test_evidence": ["https://ci.example.com/runs/1"],
        "rollback_plan": "Put the old certificates back.",
        "window": {"start": "2026-12-01T10:00:00+01:00", "end": "2026-12-01T11:00:00+01:00", "time_zone": "Europe/Berlin"},
        "links": {"pull_request": "https://git.example.com/pr/1", "commit_sha": "abcdef1234", "artifact_digest": format!("sha256:{}", "b".repeat(64))},
        "risk": {"impact": 2, "likelihood": 2, "customer_facing": true}
    })
}

impl TestApp {
    pub async fn file_change(&self, client: &ApiClient, body: Value) -> Value {
        let resp = self
            .api(
                Method::POST,
                "/api/v1/changes",
                Some(&client.token),
                Some(body),
            )
            .await;
        assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
        resp.json()
    }

    pub async fn change_action(
        &self,
        client: &ApiClient,
        id: &str,
        action: &str,
        body: Option<Value>,
    ) -> crate::common::TestResponse {
        self.api(
            Method::POST,
            &format!("/api/v1/changes/{id}/{action}"),
            Some(&client.token),
            body,
        )
        .await
    }

    pub async fn change_row(&self, id: &str) -> (String, String, i32) {
        sqlx::query_as("SELECT state, title, revision FROM changes WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn file_submit_edit_and_see_revisions(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let created = app
        .file_change(&erin, complete_change("Rotate TLS certificates"))
        .await;
    assert_eq!(created["state"], "draft");
    assert_eq!(created["key"], "CHG-1");
    assert_eq!(created["author"], "erin");
    assert_eq!(created["revision"], 0);
    assert_eq!(created["risk"]["level"], "medium");
    assert_eq!(created["risk"]["reasons"][1], "customer-facing");
    assert_eq!(
        created["window"]["start"], "2026-12-01T09:00:00Z",
        "stored in UTC"
    );
    let id = created["id"].as_str().unwrap().to_owned();

    // Drafts are edited freely: no revision.
    let resp = app
        .api(
            Method::PATCH,
            &format!("/api/v1/changes/{id}"),
            Some(&erin.token),
            Some(json!({"priority": "urgent"})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["revision"], 0);

    let resp = app.change_action(&erin, &id, "submit", None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["state"], "submitted");
    assert_eq!(resp.json()["revision"], 1);

    // Submitted: an edit makes revision 2 with its diff; a no-op edit makes none.
    let resp = app
        .api(
            Method::PATCH,
            "/api/v1/changes/CHG-1",
            Some(&erin.token),
            Some(json!({"title": "Rotate TLS certificates on the edge", "risk": {"impact": 3, "likelihood": 3}})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["revision"], 2);
    assert_eq!(resp.json()["risk"]["level"], "high", "risk computed again");
    let resp = app
        .api(
            Method::PATCH,
            &format!("/api/v1/changes/{id}"),
            Some(&erin.token),
            Some(json!({"title": "Rotate TLS certificates on the edge"})),
        )
        .await;
    assert_eq!(resp.json()["revision"], 2);

    let revisions = app
        .api(
            Method::GET,
            &format!("/api/v1/changes/{id}/revisions"),
            Some(&erin.token),
            None,
        )
        .await
        .json();
    assert_eq!(revisions.as_array().unwrap().len(), 2);
    assert_eq!(revisions[0]["number"], 2);
    let fields: Vec<&str> = revisions[0]["diff"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        vec!["title", "impact", "likelihood", "customer_facing"]
    );
    assert_eq!(revisions[0]["diff"][0]["before"], "Rotate TLS certificates");

    // The page shows the revision and its diff.
    let s = app
        .browser_login_with(erin.user.clone(), "erin-correct-horse-battery")
        .await;
    let page = app
        .get_page(&format!("/changes/{id}"), Some(&s.cookie))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"revision-2\""));
    assert!(page.body.contains("Rotate TLS certificates on the edge"));
    assert!(
        page.body.contains("data-action=\"change.edited\""),
        "timeline from the audit trail"
    );

    let actions: Vec<String> = app
        .audit_events()
        .await
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    for a in ["change.created", "change.edited", "change.submitted"] {
        assert!(actions.contains(&a.to_owned()), "{a}: {actions:?}");
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn incomplete_submissions_are_refused_with_the_field_named(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    type Mutation = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Mutation, &str)> = vec![
        (Box::new(|c| c["title"] = json!("")), "title"),
        (
            Box::new(|c| c["rollback_plan"] = json!("")),
            "rollback_plan",
        ),
        (
            Box::new(|c| {
                c.as_object_mut()
                    .unwrap()
                    .remove("window")
                    .map(|_| ())
                    .unwrap_or(())
            }),
            "window_start",
        ),
        (Box::new(|c| c["environments"] = json!([])), "environments"),
        (Box::new(|c| c["test_plan"] = json!(" ")), "test_plan"),
    ];
    for (mutate, field) in cases {
        let mut body = complete_change("Incomplete");
        mutate(&mut body);
        let created = app.file_change(&erin, body).await;
        let id = created["id"].as_str().unwrap();
        let resp = app.change_action(&erin, id, "submit", None).await;
        assert_eq!(
            resp.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}: {}",
            resp.body
        );
        assert_eq!(resp.problem_code(), "validation");
        assert_eq!(resp.json()["field"], field, "{}", resp.body);
        assert_eq!(app.change_row(id).await.0, "draft", "nothing changed");
    }
    // A window that ends before it starts is refused even for a draft.
    let mut body = complete_change("Backwards window");
    body["window"]["end"] = json!("2026-12-01T08:00:00+01:00");
    let resp = app
        .api(
            Method::POST,
            "/api/v1/changes",
            Some(&erin.token),
            Some(body),
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.json()["field"], "window_end");
    let revisions: i64 = sqlx::query_scalar("SELECT count(*) FROM change_revisions")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(revisions, 0);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn server_owned_fields_are_refused(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    for (field, v) in [
        ("state", json!("approved")),
        ("number", json!(99)),
        ("author", json!("someone")),
        ("revision", json!(5)),
        ("risk_level", json!("low")),
        ("id", json!("00000000-0000-0000-0000-000000000001")),
        ("created_at", json!("2020-01-01T00:00:00Z")),
    ] {
        let mut body = complete_change("Sneaky");
        body[field] = v;
        let resp = app
            .api(
                Method::POST,
                "/api/v1/changes",
                Some(&erin.token),
                Some(body),
            )
            .await;
        assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY, "{field}");
        assert_eq!(resp.json()["field"], field);
    }
    // Nor can the computed level be set through the risk object.
    let mut body = complete_change("Sneaky");
    body["risk"]["level"] = json!("low");
    let resp = app
        .api(
            Method::POST,
            "/api/v1/changes",
            Some(&erin.token),
            Some(body),
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM changes")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn strangers_cannot_edit_submit_or_withdraw_through_the_api_or_the_forms(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let mallory = app
        .api_login("mallory", &[Role::Engineer, Role::CabMember, Role::Admin])
        .await;
    let created = app
        .file_change(&erin, complete_change("Erin's change"))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let before = app.change_row(&id).await;
    let audit_before = app.audit_count().await;

    let resp = app
        .api(
            Method::PATCH,
            &format!("/api/v1/changes/{id}"),
            Some(&mallory.token),
            Some(json!({"title": "Mallory's now"})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.problem_code(), "not_author");
    for action in ["submit", "withdraw"] {
        let resp = app.change_action(&mallory, &id, action, None).await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "{action}");
        assert_eq!(resp.problem_code(), "not_author", "{action}");
        assert!(
            resp.json()["detail"]
                .as_str()
                .unwrap()
                .contains("author or its contributors")
        );
    }

    let s = app
        .browser_login_with(mallory.user.clone(), "mallory-correct-horse-battery")
        .await;
    let page = app
        .get_page(&format!("/changes/{id}"), Some(&s.cookie))
        .await;
    assert!(
        !page.body.contains("id=\"edit-change\"") && !page.body.contains("id=\"submit-change\""),
        "no buttons offered"
    );
    let resp = app
        .get_page(&format!("/changes/{id}/edit"), Some(&s.cookie))
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    let resp = app
        .post_form(
            &format!("/changes/{id}/edit"),
            Some(&s.cookie),
            &[
                ("_csrf", &s.csrf),
                ("title", "Mallory's now"),
                ("impact", "1"),
                ("likelihood", "1"),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert!(resp.body.contains("author or its contributors"));
    for action in ["submit", "withdraw"] {
        let resp = app
            .post_form(
                &format!("/changes/{id}/{action}"),
                Some(&s.cookie),
                &[("_csrf", &s.csrf)],
            )
            .await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "{action}");
    }

    assert_eq!(app.change_row(&id).await, before, "nothing changed");
    let denials = app.denials().await;
    let attempted: Vec<&str> = denials.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        attempted,
        vec![
            "change.edit",
            "change.submit",
            "change.withdraw",
            "change.edit",
            "change.edit",
            "change.submit",
            "change.withdraw"
        ]
    );
    assert!(denials.iter().all(|(_, r)| r == "not_author"));
    // Only the denials were added to the trail (and the browser sign-in).
    let added: Vec<String> = app
        .audit_events()
        .await
        .into_iter()
        .skip(audit_before as usize)
        .map(|(a, _)| a)
        .collect();
    assert!(
        added
            .iter()
            .all(|a| a == "access.denied" || a == "auth.login_succeeded"),
        "{added:?}"
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn contributors_act_as_authors(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let eddie = app.api_login("eddie", &[Role::Engineer]).await;
    let mut body = complete_change("Pair-programmed change");
    body["contributors"] = json!(["eddie", "erin"]);
    let created = app.file_change(&erin, body).await;
    assert_eq!(
        created["contributors"],
        json!(["eddie"]),
        "the author is not their own contributor"
    );
    let id = created["id"].as_str().unwrap();
    let resp = app.change_action(&eddie, id, "submit", None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    // An unknown contributor is named.
    let mut body = complete_change("Ghost");
    body["contributors"] = json!(["ghost"]);
    let resp = app
        .api(
            Method::POST,
            "/api/v1/changes",
            Some(&erin.token),
            Some(body),
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.json()["field"], "contributors");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn withdraw_cancel_and_comment(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let a = app.file_change(&erin, complete_change("To withdraw")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = app.file_change(&erin, complete_change("To cancel")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    assert_eq!(
        app.change_action(&erin, &a, "withdraw", None).await.json()["state"],
        "withdrawn"
    );
    let resp = app.change_action(&erin, &a, "submit", None).await;
    assert_eq!(resp.status, StatusCode::CONFLICT);
    assert_eq!(resp.problem_code(), "change_closed");
    let resp = app
        .api(
            Method::PATCH,
            &format!("/api/v1/changes/{a}"),
            Some(&erin.token),
            Some(json!({"title": "x"})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CONFLICT);

    // Authors withdraw; they do not cancel.
    let resp = app
        .change_action(&erin, &b, "cancel", Some(json!({"reason": "no"})))
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.problem_code(), "cancel_not_allowed");
    let resp = app.change_action(&carol, &b, "cancel", None).await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.json()["field"], "reason");
    let resp = app
        .change_action(
            &carol,
            &b,
            "cancel",
            Some(json!({"reason": "Superseded by CHG-9"})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["state"], "cancelled");

    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/changes/{b}/comments"),
            Some(&carol.token),
            Some(json!({"body": "Closing this one <b>now</b>."})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED);
    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/changes/{b}/comments"),
            Some(&carol.token),
            Some(json!({"body": "  "})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    let comments = app
        .api(
            Method::GET,
            &format!("/api/v1/changes/{b}/comments"),
            Some(&erin.token),
            None,
        )
        .await
        .json();
    assert_eq!(comments.as_array().unwrap().len(), 1);
    assert_eq!(comments[0]["author"], "carol");
    // The author sees it on the dashboard.
    let s = app
        .browser_login_with(erin.user.clone(), "erin-correct-horse-battery")
        .await;
    let home = app.get_page("/", Some(&s.cookie)).await;
    assert!(home.body.contains("id=\"my-comments\""));
    // Commenting through the form.
    let resp = app
        .post_form(
            &format!("/changes/{b}/comments"),
            Some(&s.cookie),
            &[("_csrf", &s.csrf), ("body", "Thanks.")],
        )
        .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER);
    let page = app
        .get_page(&format!("/changes/{b}"), Some(&s.cookie))
        .await;
    assert!(
        page.body
            .contains("Closing this one &#60;b&#62;now&#60;/b&#62;.")
            || page
                .body
                .contains("Closing this one &lt;b&gt;now&lt;/b&gt;.")
    );
    let actions: Vec<String> = app
        .audit_events()
        .await
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    for a in ["change.withdrawn", "change.cancelled", "change.commented"] {
        assert!(actions.contains(&a.to_owned()), "{a}");
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn only_engineers_file_changes(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let audrey = app.api_login("audrey", &[Role::Auditor, Role::Admin]).await;
    let resp = app
        .api(
            Method::POST,
            "/api/v1/changes",
            Some(&audrey.token),
            Some(complete_change("Nope")),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.problem_code(), "engineer_required");
    let s = app
        .browser_login_with(audrey.user.clone(), "audrey-correct-horse-battery")
        .await;
    let resp = app.get_page("/changes/new", Some(&s.cookie)).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    let resp = app
        .post_form(
            "/changes/new",
            Some(&s.cookie),
            &[
                ("_csrf", &s.csrf),
                ("title", "Nope"),
                ("impact", "1"),
                ("likelihood", "1"),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM changes")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(app.denials().await.len(), 3);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_long_unicode_html_title_is_shown_escaped(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let title: String = "<script>alert('ü')</script>🚀 Ωμέγα \"quoted\" & 日本語 "
        .chars()
        .cycle()
        .take(200)
        .collect();
    let created = app.file_change(&erin, complete_change(&title)).await;
    assert_eq!(created["title"], title.trim());
    let too_long: String = "é".repeat(201);
    let resp = app
        .api(
            Method::POST,
            "/api/v1/changes",
            Some(&erin.token),
            Some(complete_change(&too_long)),
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.json()["field"], "title");

    let s = app
        .browser_login_with(erin.user.clone(), "erin-correct-horse-battery")
        .await;
    for uri in [
        format!("/changes/{}", created["id"].as_str().unwrap()),
        "/changes".to_owned(),
        "/".to_owned(),
    ] {
        let page = app.get_page(&uri, Some(&s.cookie)).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}");
        assert!(
            !page.body.contains("<script>alert"),
            "{uri} shows the title unescaped"
        );
        assert!(
            page.body.contains("&#60;script&#62;alert")
                || page.body.contains("&lt;script&gt;alert"),
            "{uri}"
        );
        assert!(page.body.contains("🚀 Ωμέγα"), "{uri}: Unicode kept");
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn list_filters_search_sort_and_pages(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let eddie = app.api_login("eddie", &[Role::Engineer]).await;
    let mut ids = Vec::new();
    for (i, (who, title, service, risk)) in [
        (&erin, "Rotate certificates", "edge-proxy", (1, 1)),
        (&erin, "Upgrade database cluster", "ledger", (4, 4)),
        (&eddie, "Patch kernel on bastion", "bastion", (3, 3)),
        (&eddie, "Database index for search", "crm", (2, 2)),
        (&erin, "Emergency firewall fix", "edge-proxy", (2, 3)),
    ]
    .into_iter()
    .enumerate()
    {
        let mut body = complete_change(title);
        body["services"] = json!([service]);
        body["risk"] = json!({"impact": risk.0, "likelihood": risk.1});
        if i == 4 {
            body["type"] = json!("emergency");
        }
        let c = app.file_change(who, body).await;
        ids.push(c["id"].as_str().unwrap().to_owned());
    }
    app.change_action(&erin, &ids[1], "submit", None).await;

    let keys = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["key"].as_str().unwrap().to_owned())
            .collect()
    };
    let get = |q: &str| {
        let uri = format!("/api/v1/changes?{q}");
        let token = erin.token.clone();
        let app = &app;
        async move { app.api(Method::GET, &uri, Some(&token), None).await }
    };
    assert_eq!(
        keys(&get("").await.json()),
        vec!["CHG-5", "CHG-4", "CHG-3", "CHG-2", "CHG-1"]
    );
    assert_eq!(
        keys(&get("q=database").await.json()),
        vec!["CHG-4", "CHG-2"]
    );
    assert_eq!(
        keys(&get("q=databases").await.json()),
        vec!["CHG-4", "CHG-2"],
        "stemmed"
    );
    assert_eq!(keys(&get("state=submitted").await.json()), vec!["CHG-2"]);
    assert_eq!(keys(&get("type=emergency").await.json()), vec!["CHG-5"]);
    assert_eq!(keys(&get("risk=critical").await.json()), vec!["CHG-2"]);
    assert_eq!(
        keys(&get("service=edge-proxy").await.json()),
        vec!["CHG-5", "CHG-1"]
    );
    assert_eq!(
        keys(&get("author=eddie").await.json()),
        vec!["CHG-4", "CHG-3"]
    );
    assert_eq!(
        keys(&get("mine=true").await.json()),
        vec!["CHG-5", "CHG-2", "CHG-1"]
    );
    assert_eq!(
        keys(&get("sort=oldest&q=database").await.json()),
        vec!["CHG-2", "CHG-4"]
    );
    assert_eq!(
        keys(&get("sort=risk").await.json()),
        vec!["CHG-2", "CHG-3", "CHG-5", "CHG-4", "CHG-1"]
    );

    // Pages of two, with no row twice and none left out, for every sort.
    for sort in ["newest", "oldest", "updated", "window", "risk"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..5 {
            let q = match &cursor {
                Some(c) => format!("sort={sort}&limit=2&cursor={c}"),
                None => format!("sort={sort}&limit=2"),
            };
            let page = get(&q).await.json();
            seen.extend(keys(&page));
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 5, "{sort}: {seen:?}");
        assert_eq!(seen.len(), 5, "{sort}: {seen:?}");
    }
    let resp = get("state=bogus").await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.json()["field"], "state");

    // The page: the filter lives in the URL, so the view can be shared.
    let s = app
        .browser_login_with(erin.user.clone(), "erin-correct-horse-battery")
        .await;
    let page = app
        .get_page("/changes?q=database&sort=oldest", Some(&s.cookie))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let first = page.body.find("CHG-2").unwrap();
    let second = page.body.find("CHG-4").unwrap();
    assert!(first < second);
    assert!(!page.body.contains(">CHG-1<"));
    assert!(
        page.body.contains("value=\"database\""),
        "the search box keeps the term"
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_form_shows_errors_beside_fields_and_keeps_input(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.browser_login("erin", &[Role::Engineer]).await;
    let form = app.get_page("/changes/new", Some(&s.cookie)).await;
    assert_eq!(form.status, StatusCode::OK);
    let csrf = csrf_in(&form.body);
    let fields = [
        ("_csrf", csrf.as_str()),
        ("title", "Rotate <certs>"),
        ("description", "Keep this text"),
        ("type", "emergency"),
        ("environments", "PROD"),
        ("window_start", "2026-12-01T10:00"),
        ("window_end", "2026-12-01T09:00"),
        ("window_tz", "+01:00"),
        ("commit_sha", "not-a-sha"),
        ("impact", "3"),
        ("likelihood", ""),
    ];
    let resp = app
        .post_form("/changes/new", Some(&s.cookie), &fields)
        .await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    for field in ["window_end", "commit_sha", "likelihood"] {
        assert!(
            resp.body.contains(&format!("id=\"{field}-error\"")),
            "{field}"
        );
    }
    assert!(
        resp.body.contains("value=\"Rotate &#60;certs&#62;\"")
            || resp.body.contains("value=\"Rotate &lt;certs&gt;\"")
    );
    assert!(resp.body.contains(">Keep this text</textarea>"));
    assert!(resp.body.contains("value=\"emergency\" selected"));
    assert!(resp.body.contains("value=\"PROD\" checked"));
    assert!(
        resp.body.contains("value=\"2026-12-01T09:00\""),
        "the mistaken value is kept to fix"
    );
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM changes")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(n, 0, "nothing half-written");

    // Fixed: saved as a draft in UTC and shown.
    let mut fixed = fields.to_vec();
    fixed.retain(|(k, _)| !["window_end", "commit_sha", "likelihood"].contains(k));
    fixed.extend([
        ("window_end", "2026-12-01T11:00"),
        ("likelihood", "2"),
        ("commit_sha", "abc1234"),
    ]);
    let resp = app.post_form("/changes/new", Some(&s.cookie), &fixed).await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    let (start, tz): (chrono::DateTime<chrono::Utc>, serde_json::Value) =
        sqlx::query_as("SELECT window_start, content->'window_tz' FROM changes")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(start.to_rfc3339(), "2026-12-01T09:00:00+00:00");
    assert_eq!(tz, "+01:00");

    // Submitting it from the page lists what is missing.
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
    assert!(resp.body.contains("data-field=\"rollback_plan\""));
    assert!(resp.body.contains("data-field=\"justification\""));

    // The risk preview answers from the server.
    let preview = app
        .get_page(
            "/changes/risk-preview?impact=4&likelihood=4",
            Some(&s.cookie),
        )
        .await;
    assert!(preview.body.contains("risk-critical"));
}
