//! Pages speak the words people use: states, decisions and roles by their
//! labels, people by name, the audit trail as sentences; each action is
//! confirmed once; only web addresses become links; a refusal leads back to
//! what was acted on; dashboards promise only what exists.

use axum::http::{Method, StatusCode};
use cab_domain::Role;
use cab_domain::audit::{Attempt, AuditAction};
use serde_json::json;
use sqlx::PgPool;

use crate::changes::complete_change;
use crate::common::{BrowserSession, TestApp, TestResponse};
use crate::decisions::assessment;

/// What a reader sees: the page's text without its tags, and without what
/// sits folded away in `<details>`.
fn visible_text(html: &str) -> String {
    let mut folded = String::new();
    let mut rest = html;
    while let Some(start) = rest.find("<details") {
        folded.push_str(&rest[..start]);
        rest = match rest[start..].find("</details>") {
            Some(end) => &rest[start + end + "</details>".len()..],
            None => "",
        };
    }
    folded.push_str(rest);
    // Tags become spaces, except those inside a line of text.
    let inline = ["a", "span", "strong", "code", "em"];
    let mut text = String::with_capacity(folded.len());
    let mut tag: Option<String> = None;
    for c in folded.chars() {
        match (&mut tag, c) {
            (None, '<') => tag = Some(String::new()),
            (Some(t), '>') => {
                let name = t.trim_start_matches('/');
                let name = name.split([' ', '/']).next().unwrap_or_default();
                if !inline.contains(&name) {
                    text.push(' ');
                }
                tag = None;
            }
            (Some(t), c) => t.push(c),
            (None, c) => text.push(c),
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether the text holds something shaped like a UUID.
fn has_uuid(text: &str) -> bool {
    let hex = |s: &str| s.chars().all(|c| c.is_ascii_hexdigit());
    text.split(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
        .any(|word| {
            let parts: Vec<&str> = word.split('-').collect();
            parts.len() == 5
                && parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
                && parts.iter().all(|p| hex(p))
        })
}

fn cookie_pair(resp: &TestResponse, name: &str) -> Option<String> {
    resp.cookie(name).map(|v| format!("{name}={v}"))
}

/// The full `Set-Cookie` header for `name`.
fn set_cookie_header(resp: &TestResponse, name: &str) -> Option<String> {
    resp.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

async fn set_display_name(app: &TestApp, username: &str, name: &str) {
    sqlx::query("UPDATE users SET display_name = $2 WHERE username = $1")
        .bind(username)
        .bind(name)
        .execute(&app.pool)
        .await
        .unwrap();
}

impl TestApp {
    /// GET with the session and, like a browser that received one, the notice.
    async fn page_with(&self, uri: &str, s: &BrowserSession, notice: Option<&str>) -> TestResponse {
        let cookie = match notice {
            Some(n) => format!("{}; {n}", s.cookie),
            None => s.cookie.clone(),
        };
        self.get_page(uri, Some(&cookie)).await
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_change_page_speaks_in_words_not_codes(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let sam = app.api_login("sam", &[Role::SecurityReviewer]).await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    set_display_name(&app, "carol", "Carol CAB").await;
    set_display_name(&app, "sam", "Sam Security").await;
    // Medium risk: two approvals, so one vote leaves it in CAB review.
    let id = app.submitted_change(&erin, 2, 2, "normal").await;
    let resp = app
        .assess(&sam, &id, assessment("accept_with_conditions", "medium"))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let resp = app.vote(&carol, &id, "approve", "").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(
        resp.json()["state"],
        "in_cab_review",
        "the API keeps its codes"
    );

    let s = app
        .browser_login_with(carol.user.clone(), "carol-correct-horse-battery")
        .await;
    let page = app
        .get_page(&format!("/changes/{id}"), Some(&s.cookie))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let text = visible_text(&page.body);
    for words in [
        "In CAB review",
        "Medium risk",
        "Carol CAB voted to approve revision 1 of CHG-1.",
        "Sam Security assessed revision 1 of CHG-1 and accepted it with conditions, at medium risk.",
        "erin submitted CHG-1 for review (revision 1).",
        "Accept with conditions",
        "CAB member",
        "Security reviewer",
        "data classified confidential",
    ] {
        assert!(text.contains(words), "{words:?} missing from: {text}");
    }
    for code in [
        "in_cab_review",
        "accept_with_conditions",
        "cab_member",
        "security_reviewer",
        "change.voted",
        "change.assessed",
        "risk medium",
    ] {
        assert!(!text.contains(code), "{code:?} shown on the page: {text}");
    }
    assert!(!has_uuid(&text), "an id shown as text: {text}");
    // The codes stay where machines read them.
    assert!(page.body.contains("data-action=\"change.voted\""));

    // The list, the queue and the dashboard say it alike.
    for uri in ["/changes", "/cab", "/"] {
        let page = app.get_page(uri, Some(&s.cookie)).await;
        let text = visible_text(&page.body);
        assert!(text.contains("In CAB review"), "{uri}: {text}");
        assert!(!text.contains("in_cab_review"), "{uri}: {text}");
    }
    let queue = app.get_page("/cab", Some(&s.cookie)).await.body;
    assert!(
        queue.contains("<td class=\"my-vote\">Approve</td>"),
        "my vote in words: {queue}"
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn each_action_is_confirmed_once(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.browser_login("erin", &[Role::Engineer]).await;
    let erin_api = {
        let resp = app.token("erin", "erin-correct-horse-battery").await;
        crate::common::ApiClient {
            token: resp.json()["access_token"].as_str().unwrap().to_owned(),
            user: erin.user.clone(),
        }
    };
    let mut body = complete_change("Rotate the edge certificates");
    body["risk"] = json!({"impact": 2, "likelihood": 2});
    let id = app.file_change(&erin_api, body).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Submit: a 303 that leaves a signed code, not a sentence.
    let resp = app
        .post_form(
            &format!("/changes/{id}/submit"),
            Some(&erin.cookie),
            &[("_csrf", &erin.csrf)],
        )
        .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    assert_eq!(
        resp.header("location"),
        Some(format!("/changes/{id}").as_str())
    );
    let header = set_cookie_header(&resp, "cab_notice").expect("a notice cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(header.contains(attr), "{attr} in {header}");
    }
    assert!(!header.contains("Secure"), "plain http in tests: {header}");
    let notice = cookie_pair(&resp, "cab_notice").unwrap();
    assert!(!notice.contains(' ') && !notice.contains("CHG"), "{notice}");

    // The next page says it, in a status region, and clears it.
    let page = app
        .page_with(&format!("/changes/{id}"), &erin, Some(&notice))
        .await;
    assert!(
        page.body.contains(
            "<p class=\"alert alert-ok\" role=\"status\" id=\"notice\">CHG-1 is submitted for review."
        ),
        "{}",
        page.body
    );
    let cleared = set_cookie_header(&page, "cab_notice").expect("the notice is cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // Once: the browser dropped it, and the next load is quiet.
    let again = app.page_with(&format!("/changes/{id}"), &erin, None).await;
    assert!(!again.body.contains("id=\"notice\""));
    assert!(!again.body.contains("is submitted for review"));

    // Nobody else can make a page speak: text of their own, a changed
    // code, someone else's notice, or no signature at all say nothing.
    let carol = app.browser_login("carol", &[Role::CabMember]).await;
    let forged_number = notice.replacen("submitted.1.", "submitted.7.", 1);
    assert_ne!(forged_number, notice);
    for planted in [
        "cab_notice=You%20have%20won%20a%20prize".to_owned(),
        "cab_notice=submitted.1.submitted".to_owned(),
        forged_number,
    ] {
        let page = app
            .page_with(&format!("/changes/{id}"), &erin, Some(&planted))
            .await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(!page.body.contains("id=\"notice\""), "{planted}");
        assert!(!page.body.contains("prize"));
    }
    let elsewhere = app
        .page_with(&format!("/changes/{id}"), &carol, Some(&notice))
        .await;
    assert!(
        !elsewhere.body.contains("id=\"notice\""),
        "a notice belongs to the session it was made for"
    );

    // A vote through the form: confirmed with what it was, then gone.
    let resp = app
        .post_form(
            &format!("/changes/{id}/votes"),
            Some(&carol.cookie),
            &[
                ("_csrf", &carol.csrf),
                ("vote", "approve"),
                ("revision", "1"),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    let notice = cookie_pair(&resp, "cab_notice").expect("a notice after voting");
    let page = app
        .page_with(&format!("/changes/{id}"), &carol, Some(&notice))
        .await;
    assert!(
        page.body
            .contains("Your vote to approve revision 1 of CHG-1 is recorded."),
        "{}",
        page.body
    );
    let page = app.page_with(&format!("/changes/{id}"), &carol, None).await;
    assert!(!page.body.contains("Your vote to approve"));

    // A comment, and a form page (the assessment) that shows the notice too.
    let resp = app
        .post_form(
            &format!("/changes/{id}/comments"),
            Some(&carol.cookie),
            &[("_csrf", &carol.csrf), ("body", "Looks right.")],
        )
        .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER);
    let notice = cookie_pair(&resp, "cab_notice").unwrap();
    let page = app
        .page_with(&format!("/changes/{id}"), &carol, Some(&notice))
        .await;
    assert!(page.body.contains("Your comment on CHG-1 is posted."));

    let sam = app.browser_login("sam", &[Role::SecurityReviewer]).await;
    let resp = app
        .post_form(
            &format!("/changes/{id}/assessment/start"),
            Some(&sam.cookie),
            &[("_csrf", &sam.csrf)],
        )
        .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    let notice = cookie_pair(&resp, "cab_notice").unwrap();
    let page = app
        .page_with(&format!("/changes/{id}/assessment"), &sam, Some(&notice))
        .await;
    assert!(page.body.contains("You have taken CHG-1 into assessment."));
    let resp = app
        .post_form(
            &format!("/changes/{id}/assessment"),
            Some(&sam.cookie),
            &[
                ("_csrf", &sam.csrf),
                ("revision", "1"),
                ("data_classification", "internal"),
                ("security_implications", "Touches TLS."),
                ("residual_risk", "Low."),
                ("risk_level", "medium"),
                ("decision", "accept"),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    let notice = cookie_pair(&resp, "cab_notice").unwrap();
    let page = app
        .page_with(&format!("/changes/{id}"), &sam, Some(&notice))
        .await;
    assert!(
        page.body
            .contains("Your security assessment of CHG-1 is saved. CHG-1 is now in CAB review."),
        "{}",
        page.body
    );

    // An administrator's setting.
    let adam = app.browser_login("adam", &[Role::Admin]).await;
    let mut form = vec![("_csrf", adam.csrf.as_str())];
    for (field, n) in [
        ("low_approvals", "1"),
        ("medium_approvals", "2"),
        ("high_approvals", "2"),
        ("critical_approvals", "3"),
        ("emergency_approvals", "1"),
    ] {
        form.push((field, n));
    }
    let resp = app
        .post_form("/admin/quorum", Some(&adam.cookie), &form)
        .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    let notice = cookie_pair(&resp, "cab_notice").unwrap();
    let page = app.page_with("/admin/quorum", &adam, Some(&notice)).await;
    assert!(page.body.contains("Quorum policy saved."));
    let page = app.page_with("/admin/quorum", &adam, None).await;
    assert!(!page.body.contains("Quorum policy saved."));
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn only_web_addresses_become_links(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let sam = app.api_login("sam", &[Role::SecurityReviewer]).await;
    let id = app.submitted_change(&erin, 2, 2, "normal").await;
    let resp = app.assess(&sam, &id, assessment("accept", "medium")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let s = app
        .browser_login_with(erin.user.clone(), "erin-correct-horse-battery")
        .await;
    let page = app
        .get_page(&format!("/changes/{id}"), Some(&s.cookie))
        .await;
    for link in [
        "<a href=\"https://git.example.com/pr/1\" rel=\"noopener noreferrer\">",
        "<a href=\"https://ci.example.com/runs/1\" rel=\"noopener noreferrer\">",
        "<a href=\"https://ci.example.com/sast/1\" rel=\"noopener noreferrer\">",
    ] {
        assert!(page.body.contains(link), "{link} in {}", page.body);
    }

    // Older or imported data that is not a web address stays text.
    sqlx::query(
        "UPDATE changes SET content = jsonb_set(jsonb_set(content, '{pr_url}', '\"javascript:alert(1)\"'),
                                                '{test_evidence}', '[\"JavaScript:alert(2)\", \"https://ci.example.com/runs/1\"]')
         WHERE id = $1::uuid",
    )
    .bind(&id)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE change_assessments SET content = jsonb_set(content, '{sast,evidence}', '\"data:text/html,hi\"')
         WHERE change_id = $1::uuid",
    )
    .bind(&id)
    .execute(&app.pool)
    .await
    .unwrap();
    let page = app
        .get_page(&format!("/changes/{id}"), Some(&s.cookie))
        .await;
    let lower = page.body.to_lowercase();
    assert!(!lower.contains("href=\"javascript:"), "{}", page.body);
    assert!(!lower.contains("href=\"data:"), "{}", page.body);
    let text = visible_text(&page.body);
    for shown in [
        "javascript:alert(1)",
        "JavaScript:alert(2)",
        "data:text/html,hi",
    ] {
        assert!(
            text.contains(shown),
            "{shown} is still shown as text: {text}"
        );
    }
    assert!(
        page.body
            .contains("<a href=\"https://ci.example.com/runs/1\" rel=\"noopener noreferrer\">"),
        "the web address beside it is still a link"
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_refusal_leads_back_to_what_was_acted_on(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin_api = app
        .api_login("erin", &[Role::Engineer, Role::CabMember])
        .await;
    let id = app.submitted_change(&erin_api, 1, 1, "normal").await;
    let erin = app
        .browser_login_with(erin_api.user.clone(), "erin-correct-horse-battery")
        .await;

    // Her own change: refused, with the reason and the way back to it.
    let resp = app
        .post_form(
            &format!("/changes/{id}/votes"),
            Some(&erin.cookie),
            &[
                ("_csrf", &erin.csrf),
                ("vote", "approve"),
                ("revision", "1"),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert!(resp.body.contains("cannot vote on it"), "{}", resp.body);
    assert!(
        resp.body.contains(&format!(
            "<a href=\"/changes/{id}\" id=\"error-back\">Back to the change</a>"
        )),
        "{}",
        resp.body
    );
    assert!(!resp.body.contains("Back to the dashboard"));

    // A form that is not hers to open, and a template she may not vote on.
    let resp = app
        .get_page(&format!("/changes/{id}/assessment"), Some(&erin.cookie))
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert!(
        resp.body
            .contains(&format!("href=\"/changes/{id}\" id=\"error-back\""))
    );

    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let resp = app
        .api(
            Method::POST,
            "/api/v1/templates",
            Some(&carol.token),
            Some(json!({
                "name": "Renew a certificate",
                "change": {
                    "title": "Renew a TLS certificate",
                    "description": "Routine renewal from the internal CA.",
                    "category": "configuration",
                    "implementation_plan": "Run the renewal job.",
                    "test_plan": "The TLS check passes.",
                    "rollback_plan": "Restore the previous certificate.",
                    "services": ["edge-proxy"],
                    "environments": ["STAGE"],
                    "risk": {"impact": 1, "likelihood": 1}
                }
            })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    let tid = resp.json()["id"].as_str().unwrap().to_owned();
    let eddie = app.browser_login("eddie", &[Role::Engineer]).await;
    let resp = app
        .post_form(
            &format!("/templates/{tid}/retire"),
            Some(&eddie.cookie),
            &[("_csrf", &eddie.csrf)],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert!(resp.body.contains("Only CAB members and administrators"));
    assert!(
        resp.body
            .contains(&format!("<a href=\"/templates/{tid}\" id=\"error-back\">"))
    );

    // An account page a non-administrator cannot open: the dashboard.
    let resp = app
        .post_form(
            &format!("/admin/users/{}/disable", erin.user.id),
            Some(&eddie.cookie),
            &[("_csrf", &eddie.csrf)],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert!(
        resp.body
            .contains("<a href=\"/\" id=\"error-back\">Back to the dashboard</a>")
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_audit_trail_tells_what_happened(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let erin = app
        .api_login("erin", &[Role::Engineer, Role::CabMember])
        .await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let admin = app.api_login("adam", &[Role::Admin]).await;
    set_display_name(&app, "carol", "Carol CAB").await;
    set_display_name(&app, "erin", "Erin Engineer").await;
    let id = app.submitted_change(&erin, 2, 2, "normal").await;
    // Her own change: refused and recorded.
    assert_eq!(
        app.vote(&erin, &id, "approve", "").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.vote(&carol, &id, "approve", "").await.status,
        StatusCode::OK
    );
    let resp = app
        .api(
            Method::PUT,
            &format!("/api/v1/users/{}/roles", carol.user.id),
            Some(&admin.token),
            Some(json!({"roles": ["cab_member", "auditor"]})),
        )
        .await;
    assert!(resp.status.is_success(), "{}", resp.body);
    app.token("erin", "not-her-password").await;

    let audrey = app.browser_login("audrey", &[Role::Auditor]).await;
    let page = app.get_page("/audit", Some(&audrey.cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    let text = visible_text(&page.body);
    for sentence in [
        "Carol CAB voted to approve revision 1 of CHG-1.",
        "Erin Engineer submitted CHG-1 for review (revision 1).",
        "Erin Engineer filed CHG-1 as a draft, at medium risk.",
        "Erin Engineer tried to vote on CHG-1 and was refused: You wrote or contributed to this change",
        "adam changed the roles of Carol CAB from CAB member to CAB member, Auditor.",
        "A sign-in as “erin” failed.",
        "CAB vote",
        "The chain verifies",
    ] {
        assert!(text.contains(sentence), "{sentence:?} missing: {text}");
    }
    assert!(
        !has_uuid(&text),
        "an id shown as text outside the details: {text}"
    );
    for code in ["change.voted", "access.denied", "self_approval", "\"vote\""] {
        assert!(!text.contains(code), "{code} outside the details: {text}");
    }
    // The record itself, folded away: the stored action and the payload.
    assert!(
        page.body
            .contains("<details class=\"event-details\"><summary>Details</summary>")
    );
    assert!(page.body.contains("<code>change.voted</code>"));
    assert!(page.body.contains(&format!("Change {id}")));
    // The change is one click away.
    assert!(
        page.body
            .contains(&format!("<a href=\"/changes/{id}\">CHG-1</a>"))
    );

    // Every action and refused attempt on record has words.
    for (action, payload) in app.audit_events().await {
        assert!(
            AuditAction::parse(&action).is_some(),
            "{action} has no words"
        );
        if action == "access.denied" {
            let attempted = payload["attempted"].as_str().unwrap_or_default();
            assert!(
                Attempt::parse(attempted).is_some(),
                "{attempted} has no words"
            );
        }
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn dashboards_promise_only_what_exists(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let cases: [(Role, &[&str], &[&str]); 6] = [
        (Role::Engineer, &["You file change requests"], &[]),
        (Role::SecurityReviewer, &["from the Assessments queue"], &[]),
        (
            Role::CabMember,
            &["in the CAB queue", "cancel a change"],
            &[],
        ),
        (
            Role::ReleaseManager,
            &[
                "plan releases",
                "deploy approved changes to production",
                "freezes",
                "break-glass",
            ],
            &[],
        ),
        (Role::Auditor, &["read the audit trail"], &["export"]),
        (
            Role::Admin,
            &[
                "accounts, service accounts",
                "quorum policy",
                "environments",
            ],
            &["export"],
        ),
    ];
    for (role, says, never) in cases {
        let name = format!("user-{}", role.as_str().replace('_', "-"));
        let s = app.browser_login(&name, &[role]).await;
        let home = app.get_page("/", Some(&s.cookie)).await;
        let roles = home
            .body
            .split("id=\"my-roles\"")
            .nth(1)
            .and_then(|rest| rest.split("</ul>").next())
            .unwrap_or_default()
            .to_owned();
        assert!(roles.contains(role.label()), "{role}: {roles}");
        for words in says {
            assert!(
                roles.contains(words),
                "{role} should read {words:?}: {roles}"
            );
        }
        for words in never {
            assert!(!roles.contains(words), "{role} promised {words:?}: {roles}");
        }
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn over_https_the_notice_cookie_is_secure(pool: PgPool) {
    let mut settings = cab_server::config::Settings::for_tests();
    settings.secure_cookies = true;
    let app = TestApp::from_state(
        cab_server::AppState::new(pool, settings, crate::common::TEST_SECRET).unwrap(),
    );
    let adam = app.browser_login("adam", &[Role::Admin]).await;
    let mut form = vec![("_csrf", adam.csrf.as_str())];
    for field in [
        "low_approvals",
        "medium_approvals",
        "high_approvals",
        "critical_approvals",
        "emergency_approvals",
    ] {
        form.push((field, "2"));
    }
    let resp = app
        .post_form("/admin/quorum", Some(&adam.cookie), &form)
        .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    let header = set_cookie_header(&resp, "cab_notice").expect("a notice cookie");
    assert!(header.contains("; Secure"), "{header}");
}
