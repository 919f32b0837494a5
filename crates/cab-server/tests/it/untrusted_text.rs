//! Text from the attacker's side: control characters in every field that is
//! stored (refused, naming the field, nothing written), searched (found
//! nothing) or signed in with (an ordinary failure, counted); invisible
//! formatting characters that disguise titles and names; and a locked
//! change that must be refused, not answered with a server error.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use cab_domain::Role;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::changes::complete_change;
use crate::common::{ApiClient, BrowserSession, TestApp, TestResponse, csrf_in};

/// Control characters no stored text may hold.
const HOSTILE: [char; 3] = ['\0', '\u{1}', '\u{7f}'];

/// `value` with `c` in its middle.
fn poisoned(value: &str, c: char) -> String {
    let mid = value.chars().count() / 2;
    value
        .chars()
        .take(mid)
        .chain([c])
        .chain(value.chars().skip(mid))
        .collect()
}

/// A digest of every table a request could write to (sessions and sign-in
/// bookkeeping aside), to show that a refused request wrote nothing.
async fn digest(pool: &PgPool) -> String {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE'
           AND table_name NOT LIKE '\\_%' AND table_name NOT LIKE 'session%'
           AND table_name NOT LIKE 'login%' AND table_name NOT LIKE 'signin%'
         ORDER BY table_name",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let parts: Vec<String> = tables
        .iter()
        .map(|t| {
            format!(
                "SELECT '{t}' AS t, md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) AS d FROM \"{t}\" x"
            )
        })
        .collect();
    sqlx::query_scalar(&format!(
        "SELECT string_agg(t || ':' || d, ',' ORDER BY t) FROM ({}) s",
        parts.join(" UNION ALL ")
    ))
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The JSON pointer of every string in `v`.
fn string_leaves(v: &Value, pointer: String, out: &mut Vec<String>) {
    match v {
        Value::String(_) => out.push(pointer),
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                string_leaves(x, format!("{pointer}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (k, x) in map {
                string_leaves(x, format!("{pointer}/{k}"), out);
            }
        }
        _ => {}
    }
}

/// The field a problem names for a string of a request body.
fn field_of(pointer: &str) -> String {
    let inner = pointer.strip_prefix("/change/").map_or(pointer, |p| p);
    let segments: Vec<&str> = inner
        .split('/')
        .filter(|s| !s.is_empty() && s.parse::<usize>().is_err())
        .collect();
    match segments.as_slice() {
        ["window", "time_zone"] => "window_tz",
        ["links", "pull_request"] => "pr_url",
        ["links", link] => link,
        ["testing", kind, _] => kind,
        ["incidents", ..] => "incidents",
        [.., last] => last,
        [] => "body",
    }
    .to_owned()
}

/// Every field the problem document names.
fn named_fields(resp: &TestResponse) -> Vec<String> {
    let doc = resp.json();
    let mut named: Vec<String> = doc["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    named.extend(doc["field"].as_str().map(str::to_owned));
    named
}

struct Route {
    method: Method,
    uri: String,
    token: String,
    body: Value,
}

impl Route {
    fn new(method: Method, uri: impl Into<String>, token: &str, body: Value) -> Self {
        Route {
            method,
            uri: uri.into(),
            token: token.to_owned(),
            body,
        }
    }
}

/// A complete change with a contributor, as a client files it.
fn change_body() -> Value {
    let mut body = complete_change("Rotate the edge certificates");
    body["contributors"] = json!(["ed"]);
    body
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn every_stored_text_field_refuses_control_characters_through_the_api(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let adam = app.api_login("adam", &[Role::Admin]).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    app.user("ed", &[Role::Engineer]).await;
    let sam = app.api_login("sam", &[Role::SecurityReviewer]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let carl = app.api_login("carl", &[Role::CabMember]).await;
    let svc = app
        .service_account("deployer", &[Role::ReleaseManager])
        .await;
    let draft = app.file_change(&erin, change_body()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let submitted = app.submitted_change(&erin, 1, 1, "normal").await;
    // An approved change, its review open to writing, with an action item.
    let approved = app.submitted_change(&erin, 1, 1, "normal").await;
    let resp = app.vote(&carl, &approved, "approve", "").await;
    assert_eq!(resp.json()["state"], "approved", "{}", resp.body);
    let due_on = (chrono::Utc::now().date_naive() + chrono::Duration::days(14)).to_string();
    let action =
        json!({"title": "Rotate the staging certificates too", "owner": "ed", "due_on": due_on});
    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/changes/{approved}/review/actions"),
            Some(&erin.token),
            Some(action.clone()),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    let action_id = resp.json()["id"].as_str().unwrap().to_owned();
    let ed = app.token("ed", "ed-correct-horse-battery").await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let started = (chrono::Utc::now() - chrono::Duration::hours(3)).to_rfc3339();
    let restored = (chrono::Utc::now() - chrono::Duration::hours(2)).to_rfc3339();
    let template = json!({
        "name": "TLS renewal",
        "change": {
            "title": "Renew a TLS certificate",
            "description": "Routine renewal from the internal CA.",
            "justification": "Certificates expire.",
            "category": "configuration",
            "services": ["edge-proxy"],
            "environments": ["PROD"],
            "implementation_plan": "Run the renewal job.",
            "test_plan": "The TLS check passes.",
            "test_evidence": ["https://ci.example.com/runs/7"],
            "rollback_plan": "Restore the previous certificate.",
            "window": {"start": "2026-12-01T10:00:00Z", "end": "2026-12-01T11:00:00Z", "time_zone": "UTC"},
            "links": {"pull_request": "https://git.example.com/pr/7", "commit_sha": "abcdef1234", "artifact_digest": format!("sha256:{}", "c".repeat(64))},
            "risk": {"impact": 1, "likelihood": 1}
        }
    });
    let resp = app
        .api(
            Method::POST,
            "/api/v1/templates",
            Some(&carol.token),
            Some(template.clone()),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    let tid = resp.json()["id"].as_str().unwrap().to_owned();
    let assessment = json!({
        "data_classification": "confidential",
        "security_implications": "Touches TLS termination.",
        "testing": {
            "sast": {"required": true, "evidence": "https://ci.example.com/sast/1", "justification": "Every build."},
            "dast": {"required": true, "evidence": "", "justification": "Runs on STAGE."},
            "pentest": {"required": false, "evidence": "", "justification": "Routine change."}
        },
        "residual_risk": "Low.",
        "risk_level": "low",
        "lowering_justification": "",
        "decision": "accept_with_conditions",
        "conditions": ["Watch handshake errors"],
        "revision": 1
    });

    let routes = [
        Route::new(
            Method::POST,
            "/api/v1/users",
            &adam.token,
            json!({"username": "newbie", "display_name": "New Person", "roles": ["engineer"], "password": "a long enough password"}),
        ),
        Route::new(
            Method::PUT,
            format!("/api/v1/users/{}/roles", erin.user.id),
            &adam.token,
            json!({"roles": ["engineer", "auditor"]}),
        ),
        Route::new(
            Method::POST,
            format!("/api/v1/users/{}/tokens", svc.id),
            &adam.token,
            json!({"name": "deploy pipeline"}),
        ),
        Route::new(Method::POST, "/api/v1/changes", &erin.token, change_body()),
        Route::new(
            Method::PATCH,
            format!("/api/v1/changes/{draft}"),
            &erin.token,
            change_body(),
        ),
        Route::new(
            Method::POST,
            format!("/api/v1/changes/{submitted}/withdraw"),
            &erin.token,
            json!({"reason": "No longer needed"}),
        ),
        Route::new(
            Method::POST,
            format!("/api/v1/changes/{submitted}/cancel"),
            &carol.token,
            json!({"reason": "Superseded by another"}),
        ),
        Route::new(
            Method::POST,
            format!("/api/v1/changes/{draft}/comments"),
            &carol.token,
            json!({"body": "Looks fine to me"}),
        ),
        Route::new(
            Method::PUT,
            format!("/api/v1/changes/{submitted}/assessment"),
            &sam.token,
            assessment,
        ),
        Route::new(
            Method::POST,
            format!("/api/v1/changes/{submitted}/votes"),
            &carol.token,
            json!({"vote": "approve", "comment": "Fine by me", "revision": 1}),
        ),
        Route::new(
            Method::POST,
            format!("/api/v1/changes/{approved}/close"),
            &carol.token,
            json!({"code": "not_implemented", "notes": "It never went out"}),
        ),
        Route::new(
            Method::PUT,
            format!("/api/v1/changes/{approved}/review"),
            &erin.token,
            json!({
                "revision": 0,
                "outcome": "Went as planned",
                "intervention": "none",
                "incidents": [{"reference": "INC-7", "severity": "sev3", "caused": "ruled_out",
                               "started_at": started, "restored_at": restored}],
                "went_well": "The canary",
                "went_wrong": "The timing",
                "lessons": "Start earlier"
            }),
        ),
        Route::new(
            Method::POST,
            format!("/api/v1/changes/{approved}/review/actions"),
            &erin.token,
            action,
        ),
        Route::new(
            Method::POST,
            format!("/api/v1/review-actions/{action_id}/status"),
            &ed,
            json!({"status": "done"}),
        ),
        Route::new(Method::POST, "/api/v1/templates", &carol.token, {
            let mut t = template;
            t["name"] = json!("Certificate renewal");
            t
        }),
        Route::new(
            Method::POST,
            format!("/api/v1/templates/{tid}/votes"),
            &carl.token,
            json!({"vote": "approve", "comment": "Routine enough"}),
        ),
    ];

    let before = digest(&app.pool).await;
    let mut sent = 0;
    for route in &routes {
        let mut leaves = Vec::new();
        string_leaves(&route.body, String::new(), &mut leaves);
        // Times are typed values, refused by the JSON reader itself.
        leaves.retain(|p| !p.ends_with("/window/start") && !p.ends_with("/window/end"));
        assert!(!leaves.is_empty(), "{}", route.uri);
        for pointer in &leaves {
            let field = field_of(pointer);
            for c in HOSTILE {
                let mut body = route.body.clone();
                let leaf = body.pointer_mut(pointer).unwrap();
                *leaf = json!(poisoned(leaf.as_str().unwrap(), c));
                let resp = app
                    .api(
                        route.method.clone(),
                        &route.uri,
                        Some(&route.token),
                        Some(body),
                    )
                    .await;
                let what = format!("{} {} {pointer} {c:?}", route.method, route.uri);
                assert_eq!(
                    resp.status,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "{what}: {}",
                    resp.body
                );
                assert_eq!(resp.problem_code(), "validation", "{what}");
                let named = named_fields(&resp);
                assert!(
                    named.contains(&field),
                    "{what}: names {named:?}, not {field}"
                );
                assert_eq!(digest(&app.pool).await, before, "{what} wrote something");
                sent += 1;
            }
        }
    }
    assert!(sent > 150, "{sent} requests");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_refusal_says_which_character_and_free_text_keeps_its_line_breaks(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let mut body = change_body();
    body["contributors"] = json!([]);
    body["description"] = json!("Escape \u{1b}[31mred");
    let resp = app
        .api(
            Method::POST,
            "/api/v1/changes",
            Some(&erin.token),
            Some(body),
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    let doc = resp.json();
    assert_eq!(doc["field"], "description");
    assert!(
        doc["detail"].as_str().unwrap().contains("U+001B ESCAPE"),
        "{doc}"
    );
    // Tabs and line breaks are text; so are right-to-left marks in prose.
    let mut body = change_body();
    body["contributors"] = json!([]);
    body["description"] = json!("Step 1:\tswap\r\nStep 2:\tcheck \u{200F}עברית\u{200F}");
    let resp = app
        .api(
            Method::POST,
            "/api/v1/changes",
            Some(&erin.token),
            Some(body),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_control_character_in_a_sign_in_is_an_ordinary_failure_that_counts(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, password) = app.user("adam", &[Role::Engineer]).await;
    // Through the API: the same answer as any wrong username or password.
    for (username, pw) in [
        ("ad\0am", password.as_str()),
        ("\u{1}", "anything at all"),
        ("adam\u{7f}", password.as_str()),
    ] {
        let resp = app.token(username, pw).await;
        assert_eq!(
            resp.status,
            StatusCode::UNAUTHORIZED,
            "{username:?}: {}",
            resp.body
        );
        assert_eq!(resp.problem_code(), "unauthenticated");
        assert_eq!(resp.json()["detail"], "Invalid username or password.");
    }
    // Through the form.
    let form = app.get_page("/login", None).await;
    let cookie = format!("cab_login={}", form.cookie("cab_login").unwrap());
    let csrf = csrf_in(&form.body);
    for (username, pw) in [("ad\0am", password.as_str()), ("adam", "pass\0word")] {
        let resp = app
            .post_form(
                "/login",
                Some(&cookie),
                &[
                    ("_csrf", &csrf),
                    ("username", username),
                    ("password", pw),
                    ("next", "/"),
                ],
            )
            .await;
        assert_eq!(
            resp.status,
            StatusCode::UNAUTHORIZED,
            "{username:?}: {}",
            resp.body
        );
        assert!(resp.body.contains("Invalid username or password"));
    }
    let failed = app
        .audit_events()
        .await
        .into_iter()
        .filter(|(a, _)| a == "auth.login_failed")
        .count();
    assert_eq!(failed, 5, "each attempt is recorded as a failure");

    // They count towards the lock like any failure: with a NUL in the
    // password, five failures lock adam even for the right password.
    for _ in 0..4 {
        let resp = app.token("adam", "correct\0horse").await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    }
    let resp = app.token("adam", &password).await;
    assert_eq!(resp.status, StatusCode::TOO_MANY_REQUESTS, "{}", resp.body);
    // And a NUL username is one key of its own, locked the same way.
    for _ in 0..5 {
        let resp = app.token("ev\0e", "whatever it is").await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    }
    let resp = app.token("ev\0e", "whatever it is").await;
    assert_eq!(resp.status, StatusCode::TOO_MANY_REQUESTS, "{}", resp.body);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_search_for_a_control_character_finds_nothing(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let mut body = change_body();
    body["contributors"] = json!([]);
    app.file_change(&erin, body).await;
    let s = app
        .browser_login_with(erin.user.clone(), "erin-correct-horse-battery")
        .await;
    for query in [
        "q=Rotate%00edge",
        "q=%01",
        "service=edge%00proxy",
        "author=er%7Fin",
        "q=Rotate&author=erin%00",
    ] {
        let resp = app
            .api(
                Method::GET,
                &format!("/api/v1/changes?{query}"),
                Some(&erin.token),
                None,
            )
            .await;
        assert_eq!(resp.status, StatusCode::OK, "{query}: {}", resp.body);
        assert_eq!(resp.json()["items"], json!([]), "{query}");
        let page = app
            .get_page(&format!("/changes?{query}"), Some(&s.cookie))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{query}: {}", page.body);
        assert!(
            !page.body.contains("Rotate the edge certificates"),
            "{query}"
        );
    }
    // The same search without the control character finds the change.
    let resp = app
        .api(
            Method::GET,
            "/api/v1/changes?q=Rotate&service=edge-proxy&author=erin",
            Some(&erin.token),
            None,
        )
        .await;
    assert_eq!(resp.json()["items"].as_array().unwrap().len(), 1);
}

/// Posts `pairs` with `field` poisoned by each hostile character and checks
/// that the form comes back (422) with the error beside the field
/// (`marker`, by default its message's id) and that nothing was written.
async fn refuses_in_form(
    app: &TestApp,
    s: &BrowserSession,
    uri: &str,
    pairs: &[(&str, &str)],
    field: &str,
    marker: Option<&str>,
) {
    let before = digest(&app.pool).await;
    let marker = marker.map_or_else(|| format!("id=\"{field}-error\""), str::to_owned);
    for c in HOSTILE {
        let mut sent: Vec<(&str, String)> = Vec::new();
        let mut found = false;
        for (k, v) in pairs {
            if *k == field && !found {
                sent.push((k, poisoned(v, c)));
                found = true;
            } else {
                sent.push((k, (*v).to_owned()));
            }
        }
        if !found {
            sent.push((field, c.to_string()));
        }
        sent.insert(0, ("_csrf", s.csrf.clone()));
        let pairs: Vec<(&str, &str)> = sent.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let resp = app.post_form(uri, Some(&s.cookie), &pairs).await;
        let what = format!("{uri} {field} {c:?}");
        assert_eq!(
            resp.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{what}: {}",
            resp.body
        );
        assert!(resp.body.contains(&marker), "{what}: no {marker}");
        assert!(
            resp.body
                .contains("a control character that cannot be stored"),
            "{what}"
        );
        assert_eq!(digest(&app.pool).await, before, "{what} wrote something");
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn every_form_refuses_control_characters_beside_the_field(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin_api = app.api_login("erin", &[Role::Engineer]).await;
    app.user("ed", &[Role::Engineer]).await;
    let carol_api = app.api_login("carol", &[Role::CabMember]).await;
    let svc = app
        .service_account("deployer", &[Role::ReleaseManager])
        .await;
    let erin = app
        .browser_login_with(erin_api.user.clone(), "erin-correct-horse-battery")
        .await;
    let carol = app
        .browser_login_with(carol_api.user.clone(), "carol-correct-horse-battery")
        .await;
    let sam_api = app.api_login("sam", &[Role::SecurityReviewer]).await;
    let sam = app
        .browser_login_with(sam_api.user.clone(), "sam-correct-horse-battery")
        .await;
    let carl_api = app.api_login("carl", &[Role::CabMember]).await;
    let carl = app
        .browser_login_with(carl_api.user.clone(), "carl-correct-horse-battery")
        .await;
    let adam = app.browser_login("adam", &[Role::Admin]).await;
    let draft = app.file_change(&erin_api, change_body()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let submitted = app.submitted_change(&erin_api, 1, 1, "normal").await;
    // An approved emergency change, its review owed.
    let emergency = app.submitted_change(&erin_api, 1, 1, "emergency").await;
    let resp = app
        .assess(
            &sam_api,
            &emergency,
            crate::decisions::assessment("accept", "low"),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let resp = app.vote(&carl_api, &emergency, "approve", "").await;
    assert_eq!(resp.json()["state"], "approved", "{}", resp.body);

    let digest_sha = format!("sha256:{}", "b".repeat(64));
    let change_form: Vec<(&str, &str)> = vec![
        ("title", "Rotate the edge certificates"),
        ("description", "Replace the expiring certificates."),
        ("justification", "They expire on 5 December."),
        ("type", "normal"),
        ("category", "configuration"),
        ("priority", "high"),
        ("services", "edge-proxy"),
        ("environments", "STAGE"),
        ("environments", "PROD"),
        ("implementation_plan", "Swap the certificates."),
        ("test_plan", "TLS checks on STAGE."),
        ("test_evidence", "https://ci.example.com/runs/1"),
        ("rollback_plan", "Put the old certificates back."),
        ("window_tz", "+01:00"),
        ("window_start", "2026-12-01T10:00"),
        ("window_end", "2026-12-01T11:00"),
        ("pr_url", "https://git.example.com/pr/1"),
        ("commit_sha", "abcdef1234"),
        ("artifact_digest", &digest_sha),
        ("contributors", "ed"),
        ("impact", "2"),
        ("likelihood", "2"),
    ];
    for field in [
        "title",
        "description",
        "justification",
        "services",
        "implementation_plan",
        "test_plan",
        "test_evidence",
        "rollback_plan",
        "pr_url",
        "commit_sha",
        "artifact_digest",
        "contributors",
    ] {
        refuses_in_form(&app, &erin, "/changes/new", &change_form, field, None).await;
        refuses_in_form(
            &app,
            &erin,
            &format!("/changes/{draft}/edit"),
            &change_form,
            field,
            None,
        )
        .await;
    }
    refuses_in_form(
        &app,
        &carol,
        &format!("/changes/{draft}/comments"),
        &[("body", "Looks fine to me")],
        "body",
        None,
    )
    .await;
    refuses_in_form(
        &app,
        &carol,
        &format!("/changes/{submitted}/cancel"),
        &[("reason", "Superseded by another")],
        "reason",
        Some("data-field=\"reason\""),
    )
    .await;
    let assessment: Vec<(&str, &str)> = vec![
        ("data_classification", "confidential"),
        ("security_implications", "Touches TLS termination."),
        ("sast_required", "on"),
        ("sast_evidence", "https://ci.example.com/sast/1"),
        ("sast_justification", "Every build."),
        ("dast_justification", "Runs on STAGE."),
        ("pentest_justification", "Routine change."),
        ("residual_risk", "Low."),
        ("risk_level", "low"),
        ("lowering_justification", ""),
        ("decision", "accept_with_conditions"),
        ("conditions", "Watch handshake errors"),
        ("revision", "1"),
    ];
    for (field, shown) in [
        ("security_implications", "security_implications"),
        ("residual_risk", "residual_risk"),
        ("lowering_justification", "lowering_justification"),
        ("conditions", "conditions"),
        ("sast_evidence", "sast"),
        ("sast_justification", "sast"),
        ("dast_justification", "dast"),
        ("pentest_justification", "pentest"),
    ] {
        refuses_in_form(
            &app,
            &sam,
            &format!("/changes/{submitted}/assessment"),
            &assessment,
            field,
            Some(&format!("id=\"{shown}-error\"")),
        )
        .await;
    }
    refuses_in_form(
        &app,
        &carol,
        &format!("/changes/{submitted}/votes"),
        &[
            ("vote", "approve"),
            ("comment", "Fine by me"),
            ("revision", "1"),
        ],
        "comment",
        None,
    )
    .await;
    let review_form: Vec<(&str, &str)> = vec![
        ("read", "0"),
        ("outcome", "Went as planned"),
        ("intervention", "none"),
        ("went_well", "The canary"),
        ("went_wrong", "The timing"),
        ("lessons", "Start earlier"),
    ];
    for field in ["outcome", "went_well", "went_wrong", "lessons"] {
        refuses_in_form(
            &app,
            &carol,
            &format!("/changes/{emergency}/review"),
            &review_form,
            field,
            None,
        )
        .await;
    }
    let template_form: Vec<(&str, &str)> = vec![
        ("name", "TLS renewal"),
        ("title", "Renew a TLS certificate"),
        ("description", "Routine renewal."),
        ("category", "configuration"),
        ("services", "edge-proxy"),
        ("environments", "PROD"),
        ("implementation_plan", "Run the renewal job."),
        ("test_plan", "The TLS check passes."),
        ("rollback_plan", "Restore the previous certificate."),
        ("impact", "1"),
        ("likelihood", "1"),
    ];
    for field in [
        "name",
        "title",
        "description",
        "implementation_plan",
        "test_plan",
        "rollback_plan",
    ] {
        refuses_in_form(&app, &carol, "/templates", &template_form, field, None).await;
    }
    let resp = app
        .post_form(
            "/templates",
            Some(&carol.cookie),
            &[&[("_csrf", carol.csrf.as_str())][..], &template_form[..]].concat(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    let tid: String = sqlx::query_scalar("SELECT id::text FROM standard_templates")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    refuses_in_form(
        &app,
        &carl,
        &format!("/templates/{tid}/votes"),
        &[("vote", "approve"), ("comment", "Routine enough")],
        "comment",
        None,
    )
    .await;
    let user_form: Vec<(&str, &str)> = vec![
        ("username", "newbie"),
        ("display_name", "New Person"),
        ("roles", "engineer"),
        ("password", "a long enough password"),
    ];
    for field in ["username", "display_name", "password"] {
        refuses_in_form(&app, &adam, "/admin/users", &user_form, field, None).await;
    }
    refuses_in_form(
        &app,
        &adam,
        &format!("/admin/users/{}/tokens", svc.id),
        &[("name", "deploy pipeline")],
        "name",
        None,
    )
    .await;
    // The quorum form holds numbers only: one with a control character is
    // no number, refused beside its field.
    let before = digest(&app.pool).await;
    let resp = app
        .post_form(
            "/admin/quorum",
            Some(&adam.cookie),
            &[
                ("_csrf", &adam.csrf),
                ("low_approvals", "1\0"),
                ("medium_approvals", "2"),
                ("high_approvals", "2"),
                ("high_assessment", "on"),
                ("critical_approvals", "3"),
                ("critical_assessment", "on"),
                ("emergency_approvals", "1"),
                ("emergency_assessment", "on"),
            ],
        )
        .await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    assert!(resp.body.contains("id=\"low-error\""));
    assert_eq!(digest(&app.pool).await, before);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn titles_and_names_refuse_invisible_formatting_characters(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let adam = app.api_login("adam", &[Role::Admin]).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let svc = app
        .service_account("deployer", &[Role::ReleaseManager])
        .await;
    let mut change = change_body();
    change["contributors"] = json!([]);
    let tokens = format!("/api/v1/users/{}/tokens", svc.id);
    let cases: Vec<(&ApiClient, &str, Value, &str, &str)> = {
        let mut title = change.clone();
        title["title"] = json!("Update invoice\u{202E}fdp.exe");
        let mut isolate = change.clone();
        isolate["title"] = json!("Rotate \u{2067}certificates\u{2069}");
        let mut service = change.clone();
        service["services"] = json!(["pay\u{200B}ments"]);
        let mut mark = change.clone();
        mark["title"] = json!("\u{200F}Rotate");
        vec![
            (
                &erin,
                "/api/v1/changes",
                title,
                "title",
                "U+202E RIGHT-TO-LEFT OVERRIDE",
            ),
            (
                &erin,
                "/api/v1/changes",
                isolate,
                "title",
                "U+2067 RIGHT-TO-LEFT ISOLATE",
            ),
            (
                &erin,
                "/api/v1/changes",
                mark,
                "title",
                "U+200F RIGHT-TO-LEFT MARK",
            ),
            (
                &erin,
                "/api/v1/changes",
                service,
                "services",
                "U+200B ZERO WIDTH SPACE",
            ),
            (
                &carol,
                "/api/v1/templates",
                json!({"name": "TLS\u{202D} renewal", "change": {
                    "title": "Renew", "description": "Routine.", "category": "configuration",
                    "services": ["edge-proxy"], "environments": ["PROD"],
                    "implementation_plan": "Run it.", "test_plan": "Check it.",
                    "rollback_plan": "Restore it.", "risk": {"impact": 1, "likelihood": 1}}}),
                "name",
                "U+202D LEFT-TO-RIGHT OVERRIDE",
            ),
            (
                &adam,
                "/api/v1/users",
                json!({"username": "ad\u{200D}min", "roles": ["engineer"]}),
                "username",
                "U+200D ZERO WIDTH JOINER",
            ),
            (
                &adam,
                "/api/v1/users",
                json!({"username": "mallory", "display_name": "Adam\u{2066} (admin)", "roles": ["engineer"]}),
                "display_name",
                "U+2066 LEFT-TO-RIGHT ISOLATE",
            ),
            (
                &adam,
                &tokens,
                json!({"name": "deploy\u{FEFF}"}),
                "name",
                "U+FEFF ZERO WIDTH NO-BREAK SPACE",
            ),
        ]
    };
    let before = digest(&app.pool).await;
    for (who, uri, body, field, named) in cases {
        let resp = app
            .api(Method::POST, uri, Some(&who.token), Some(body))
            .await;
        assert_eq!(
            resp.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{uri} {field}: {}",
            resp.body
        );
        assert!(
            named_fields(&resp).contains(&field.to_owned()),
            "{}",
            resp.body
        );
        let doc = resp.json();
        assert!(
            doc["detail"].as_str().unwrap().contains(named),
            "{uri}: {doc}"
        );
    }
    assert_eq!(digest(&app.pool).await, before);
    // An edit is refused the same way.
    let id = app.file_change(&erin, change).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = app
        .api(
            Method::PATCH,
            &format!("/api/v1/changes/{id}"),
            Some(&erin.token),
            Some(json!({"title": "Rotate\u{202E}"})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.change_row(&id).await.1, "Rotate the edge certificates");

    // Through the forms: the error beside the field names the character.
    let e = app
        .browser_login_with(erin.user.clone(), "erin-correct-horse-battery")
        .await;
    let resp = app
        .post_form(
            "/changes/new",
            Some(&e.cookie),
            &[
                ("_csrf", &e.csrf),
                ("title", "Update invoice\u{202E}fdp.exe"),
                ("impact", "1"),
                ("likelihood", "1"),
            ],
        )
        .await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    assert!(field_error(&resp.body, "title").contains("U+202E RIGHT-TO-LEFT OVERRIDE"));
    let c = app
        .browser_login_with(carol.user.clone(), "carol-correct-horse-battery")
        .await;
    let resp = app
        .post_form(
            "/templates",
            Some(&c.cookie),
            &[
                ("_csrf", &c.csrf),
                ("name", "TLS \u{2068}renewal"),
                ("title", "Renew"),
                ("description", "Routine."),
                ("category", "configuration"),
                ("services", "edge-proxy"),
                ("environments", "PROD"),
                ("implementation_plan", "Run it."),
                ("test_plan", "Check it."),
                ("rollback_plan", "Restore it."),
                ("impact", "1"),
                ("likelihood", "1"),
            ],
        )
        .await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    assert!(field_error(&resp.body, "name").contains("U+2068 FIRST STRONG ISOLATE"));
    let a = app
        .browser_login_with(adam.user.clone(), "adam-correct-horse-battery")
        .await;
    let resp = app
        .post_form(
            "/admin/users",
            Some(&a.cookie),
            &[
                ("_csrf", &a.csrf),
                ("username", "mallory"),
                ("display_name", "Adam\u{202E}nimda"),
                ("roles", "engineer"),
            ],
        )
        .await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    assert!(field_error(&resp.body, "display_name").contains("U+202E RIGHT-TO-LEFT OVERRIDE"));
    assert_eq!(app.user_count().await, 4);
}

/// The message shown beside a form field.
fn field_error(html: &str, field: &str) -> String {
    let marker = format!("id=\"{field}-error\">");
    let start = html
        .find(&marker)
        .map(|i| i + marker.len())
        .unwrap_or_else(|| panic!("no error beside {field}"));
    let end = html[start..].find('<').unwrap() + start;
    html[start..end].to_owned()
}

/// Locks the change (or template) row in a transaction of its own, as a
/// long-running request would, until dropped.
async fn hold_lock(
    pool: &PgPool,
    table: &str,
    id: &str,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(&format!(
        "SELECT 1 FROM {table} WHERE id = $1::uuid FOR UPDATE"
    ))
    .bind(id)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_decision_on_a_locked_change_is_a_prompt_recorded_refusal(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let sam = app.api_login("sam", &[Role::SecurityReviewer]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let carl = app.api_login("carl", &[Role::CabMember]).await;
    let id = app.submitted_change(&erin, 1, 1, "normal").await;
    let resp = app
        .api(
            Method::POST,
            "/api/v1/templates",
            Some(&carol.token),
            Some(json!({"name": "TLS renewal", "change": {
                "title": "Renew", "description": "Routine.", "category": "configuration",
                "services": ["edge-proxy"], "environments": ["PROD"],
                "implementation_plan": "Run it.", "test_plan": "Check it.",
                "rollback_plan": "Restore it.", "risk": {"impact": 1, "likelihood": 1}}})),
        )
        .await;
    let tid = resp.json()["id"].as_str().unwrap().to_owned();
    // An approved emergency change, its review owed.
    let emergency = app.submitted_change(&erin, 1, 1, "emergency").await;
    let resp = app
        .assess(
            &sam,
            &emergency,
            crate::decisions::assessment("accept", "low"),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let resp = app.vote(&carl, &emergency, "approve", "").await;
    assert_eq!(resp.json()["state"], "approved", "{}", resp.body);
    let decided = app.decision_rows().await;

    let mut assessment = crate::decisions::assessment("accept", "low");
    assessment["revision"] = json!(1);
    let attempts = [
        (
            "change.vote",
            "changes",
            &id,
            Method::POST,
            format!("/api/v1/changes/{id}/votes"),
            &carol,
            json!({"vote": "approve", "comment": "", "revision": 1}),
        ),
        (
            "change.assess",
            "changes",
            &id,
            Method::POST,
            format!("/api/v1/changes/{id}/assessment/start"),
            &sam,
            Value::Null,
        ),
        (
            "change.assess",
            "changes",
            &id,
            Method::PUT,
            format!("/api/v1/changes/{id}/assessment"),
            &sam,
            assessment,
        ),
        (
            "review.write",
            "changes",
            &emergency,
            Method::PUT,
            format!("/api/v1/changes/{emergency}/review"),
            &erin,
            json!({"revision": 0, "outcome": "Went as planned", "intervention": "none",
                   "lessons": "None"}),
        ),
        (
            "review.sign_off",
            "changes",
            &emergency,
            Method::POST,
            format!("/api/v1/changes/{emergency}/review/sign-off"),
            &carol,
            json!({"revision": 0}),
        ),
        (
            "template.vote",
            "standard_templates",
            &tid,
            Method::POST,
            format!("/api/v1/templates/{tid}/votes"),
            &carl,
            json!({"vote": "approve"}),
        ),
    ];
    for (attempted, table, row, method, uri, who, body) in attempts {
        let held = hold_lock(&app.pool, table, row).await;
        let started = Instant::now();
        let body = (!body.is_null()).then_some(body);
        let resp = app.api(method, &uri, Some(&who.token), body).await;
        let took = started.elapsed();
        drop(held);
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "{uri}: {}", resp.body);
        assert_eq!(resp.problem_code(), "policy_unavailable", "{uri}");
        assert!(took < Duration::from_secs(10), "{uri} took {took:?}");
        assert_eq!(
            app.denials().await.last(),
            Some(&(attempted.to_owned(), "policy_unavailable".to_owned())),
            "{uri}"
        );
    }

    // Through the form, the same refusal.
    let c = app
        .browser_login_with(carol.user.clone(), "carol-correct-horse-battery")
        .await;
    let held = hold_lock(&app.pool, "changes", &id).await;
    let started = Instant::now();
    let resp = app
        .post_form(
            &format!("/changes/{id}/votes"),
            Some(&c.cookie),
            &[("_csrf", &c.csrf), ("vote", "approve"), ("revision", "1")],
        )
        .await;
    let took = started.elapsed();
    drop(held);
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert!(
        resp.body.contains("could not be checked just now"),
        "{}",
        resp.body
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(app.denials().await.len(), 7);

    // Nothing was decided: no vote, no assessment, the change as it was.
    assert_eq!(app.decision_rows().await, decided);
    assert_eq!(app.change_row(&id).await.0, "submitted");
    let done: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT retrospective_done_at FROM changes WHERE id = $1::uuid")
            .bind(&emergency)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(done, None);
    let review: (i32, String) =
        sqlx::query_as("SELECT revision, state FROM reviews WHERE change_id = $1::uuid")
            .bind(&emergency)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(review, (0, "open".to_owned()), "the review as it was");
    let template_votes: i64 = sqlx::query_scalar("SELECT count(*) FROM template_votes")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(template_votes, 0);
    // With the lock gone, the same vote goes through.
    let resp = app.vote(&carol, &id, "approve", "").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
}
