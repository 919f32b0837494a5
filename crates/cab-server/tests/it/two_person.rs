//! The two-person rule for powerful roles, from the attacker's side: one
//! administrator alone cannot make a CAB member (or another administrator),
//! through the API or the forms; a second administrator's confirmation can.

use axum::http::{Method, StatusCode};
use cab_domain::Role;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::{ApiClient, TestApp};

impl TestApp {
    async fn request_roles(&self, admin: &ApiClient, user_id: uuid::Uuid, roles: &[&str]) -> Value {
        let resp = self
            .api(
                Method::PUT,
                &format!("/api/v1/users/{user_id}/roles"),
                Some(&admin.token),
                Some(json!({ "roles": roles })),
            )
            .await;
        assert_eq!(resp.status, StatusCode::ACCEPTED, "{}", resp.body);
        resp.json()
    }

    async fn settle_grant(
        &self,
        who: &ApiClient,
        grant: &str,
        how: &str,
    ) -> crate::common::TestResponse {
        self.api(
            Method::POST,
            &format!("/api/v1/role-grants/{grant}/{how}"),
            Some(&who.token),
            None,
        )
        .await
    }

    async fn api_login_as(&self, user: &cab_db::users::UserRow, password: &str) -> ApiClient {
        let resp = self.token(&user.username, password).await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
        ApiClient {
            token: resp.json()["access_token"].as_str().unwrap().to_owned(),
            user: user.clone(),
        }
    }

    async fn vote_rows(&self, change: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM change_votes WHERE change_id = $1::uuid")
            .bind(change)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn open_grants(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM role_grants WHERE confirmed_at IS NULL AND cancelled_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    async fn actions(&self, action: &str) -> Vec<Value> {
        self.audit_events()
            .await
            .into_iter()
            .filter(|(a, _)| a == action)
            .map(|(_, p)| p)
            .collect()
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn one_admin_cannot_make_a_cab_member_alone(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let adam = app.api_login("adam", &[Role::Admin]).await;
    let alice = app.api_login("alice", &[Role::Admin]).await;
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let (mallory, mallory_pw) = app.user("mallory", &[Role::Engineer]).await;
    let mallory_browser = app.browser_login_with(mallory.clone(), &mallory_pw).await;
    let change = app.submitted_change(&erin, 1, 1, "normal").await;

    // Adam makes mallory a CAB member (and an auditor): the auditor role
    // holds at once, the CAB role only waits.
    let body = app
        .request_roles(&adam, mallory.id, &["engineer", "auditor", "cab_member"])
        .await;
    assert_eq!(body["roles"], json!(["engineer", "auditor"]));
    let grant = body["awaiting_confirmation"].clone();
    assert_eq!(grant["roles"], json!(["cab_member"]));
    assert_eq!(grant["state"], "pending");
    assert_eq!(grant["requested_by"], "adam");
    let grant_id = grant["id"].as_str().unwrap().to_owned();
    assert_eq!(app.roles_of("mallory").await, vec!["engineer", "auditor"]);
    assert_eq!(app.open_grants().await, 1);
    let requested = app.actions("user.roles_requested").await;
    assert_eq!(requested.len(), 1);
    assert_eq!(requested[0]["roles"], json!(["cab_member"]));

    // Mallory cannot vote.
    let mallory_api = app.api_login_as(&mallory, &mallory_pw).await;
    let resp = app.vote(&mallory_api, &change, "approve", "").await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert_eq!(app.vote_rows(&change).await, 0);

    // Adam cannot confirm his own request; the refusal is on record.
    let denials_before = app.denials().await.len();
    let resp = app.settle_grant(&adam, &grant_id, "confirm").await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert_eq!(resp.problem_code(), "self_confirmation");
    let denials = app.denials().await;
    assert_eq!(denials.len(), denials_before + 1);
    assert_eq!(
        denials.last().unwrap(),
        &(
            "user.confirm_roles".to_owned(),
            "self_confirmation".to_owned()
        )
    );
    assert_eq!(app.roles_of("mallory").await, vec!["engineer", "auditor"]);
    // Nor can he ask again to get around it, or have the request replaced by
    // an identical one.
    app.request_roles(&adam, mallory.id, &["engineer", "auditor", "cab_member"])
        .await;
    assert_eq!(app.open_grants().await, 1);
    assert_eq!(
        app.settle_grant(&adam, &grant_id, "confirm")
            .await
            .problem_code(),
        "self_confirmation"
    );

    // Alice confirms: mallory holds the role, and her sessions end.
    let resp = app.settle_grant(&alice, &grant_id, "confirm").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(
        resp.json()["roles"],
        json!(["engineer", "cab_member", "auditor"])
    );
    assert_eq!(
        app.roles_of("mallory").await,
        vec!["engineer", "cab_member", "auditor"]
    );
    assert_eq!(
        app.get_page("/", Some(&mallory_browser.cookie))
            .await
            .status,
        StatusCode::SEE_OTHER,
        "the old session has ended"
    );
    assert_eq!(
        app.api(Method::GET, "/api/v1/me", Some(&mallory_api.token), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let confirmed = app.actions("user.roles_confirmed").await;
    assert_eq!(confirmed.len(), 1);
    assert_eq!(confirmed[0]["requested_by"], "adam");
    assert_eq!(confirmed[0]["roles"], json!(["cab_member"]));
    let confirmer: Option<String> = sqlx::query_scalar(
        "SELECT u.username FROM role_grants g JOIN users u ON u.id = g.confirmed_by",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(confirmer.as_deref(), Some("alice"));
    // Now she can vote.
    let mallory_api = app.api_login_as(&mallory, &mallory_pw).await;
    let resp = app.vote(&mallory_api, &change, "approve", "").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);

    // A confirmed request is settled: confirming or cancelling it again conflicts.
    for how in ["confirm", "cancel"] {
        let resp = app.settle_grant(&alice, &grant_id, how).await;
        assert_eq!(resp.status, StatusCode::CONFLICT, "{how}: {}", resp.body);
        assert_eq!(resp.problem_code(), "grant_closed");
    }

    // Admins and auditors see the record.
    let list = app
        .api(Method::GET, "/api/v1/role-grants", Some(&alice.token), None)
        .await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json()[0]["state"], "confirmed");
    assert_eq!(list.json()[0]["confirmed_by"], "alice");
    assert_eq!(list.json()[0]["username"], "mallory");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_admin_cannot_confirm_roles_for_themselves(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let adam = app.api_login("adam", &[Role::Admin]).await;
    let alice = app.api_login("alice", &[Role::Admin]).await;
    let bob = app.api_login("bob", &[Role::Admin]).await;
    let body = app
        .request_roles(&adam, alice.user.id, &["admin", "cab_member"])
        .await;
    let grant = body["awaiting_confirmation"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = app.settle_grant(&alice, &grant, "confirm").await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert_eq!(resp.problem_code(), "own_roles");
    assert_eq!(app.roles_of("alice").await, vec!["admin"]);
    assert!(
        app.denials()
            .await
            .contains(&("user.confirm_roles".into(), "own_roles".into()))
    );
    // A third administrator can.
    let resp = app.settle_grant(&bob, &grant, "confirm").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(app.roles_of("alice").await, vec!["cab_member", "admin"]);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_cancelled_or_replaced_request_cannot_be_confirmed(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let adam = app.api_login("adam", &[Role::Admin]).await;
    let alice = app.api_login("alice", &[Role::Admin]).await;
    let (erin, _) = app.user("erin", &[Role::Engineer]).await;

    let first = app
        .request_roles(&adam, erin.id, &["engineer", "cab_member"])
        .await;
    let first = first["awaiting_confirmation"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = app.settle_grant(&adam, &first, "cancel").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["state"], "cancelled");
    assert_eq!(resp.json()["cancelled_by"], "adam");
    let resp = app.settle_grant(&alice, &first, "confirm").await;
    assert_eq!(resp.status, StatusCode::CONFLICT, "{}", resp.body);
    assert_eq!(resp.problem_code(), "grant_closed");
    assert_eq!(app.roles_of("erin").await, vec!["engineer"]);

    // A later change of roles replaces an open request.
    let second = app
        .request_roles(&adam, erin.id, &["engineer", "cab_member"])
        .await;
    let second = second["awaiting_confirmation"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let third = app
        .request_roles(&adam, erin.id, &["engineer", "release_manager"])
        .await;
    assert_eq!(
        third["awaiting_confirmation"]["roles"],
        json!(["release_manager"])
    );
    assert_eq!(app.open_grants().await, 1);
    assert_eq!(
        app.settle_grant(&alice, &second, "confirm")
            .await
            .problem_code(),
        "grant_closed"
    );
    // Taking roles away applies at once and withdraws the open request.
    let resp = app
        .api(
            Method::PUT,
            &format!("/api/v1/users/{}/roles", erin.id),
            Some(&adam.token),
            Some(json!({ "roles": ["auditor"] })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert!(resp.json().get("awaiting_confirmation").is_none());
    assert_eq!(app.roles_of("erin").await, vec!["auditor"]);
    assert_eq!(app.open_grants().await, 0);
    assert_eq!(app.actions("user.roles_cancelled").await.len(), 3);
    assert!(
        app.actions("user.roles_confirmed").await.is_empty(),
        "nothing was confirmed"
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn only_administrators_settle_requests_and_auditors_may_read_them(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let adam = app.api_login("adam", &[Role::Admin]).await;
    let (erin, _) = app.user("erin", &[Role::Engineer]).await;
    let body = app
        .request_roles(&adam, erin.id, &["engineer", "cab_member"])
        .await;
    let grant = body["awaiting_confirmation"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (i, role) in [
        Role::Engineer,
        Role::SecurityReviewer,
        Role::CabMember,
        Role::ReleaseManager,
        Role::Auditor,
    ]
    .into_iter()
    .enumerate()
    {
        let who = app.api_login(&format!("u{i}"), &[role]).await;
        for how in ["confirm", "cancel"] {
            let resp = app.settle_grant(&who, &grant, how).await;
            assert_eq!(resp.status, StatusCode::FORBIDDEN, "{role} {how}");
            assert_eq!(resp.problem_code(), "admin_required", "{role} {how}");
        }
        let list = app
            .api(Method::GET, "/api/v1/role-grants", Some(&who.token), None)
            .await;
        if role == Role::Auditor {
            assert_eq!(list.status, StatusCode::OK);
            assert_eq!(list.json()[0]["state"], "pending");
            assert_eq!(list.json()[0]["roles"], json!(["cab_member"]));
        } else {
            assert_eq!(list.status, StatusCode::FORBIDDEN, "{role}");
            assert_eq!(list.problem_code(), "admin_or_auditor_required");
        }
    }
    assert_eq!(app.roles_of("erin").await, vec!["engineer"]);
    assert_eq!(app.open_grants().await, 1);
    let denials = app.denials().await;
    assert_eq!(
        denials
            .iter()
            .filter(|(a, r)| a == "user.confirm_roles" && r == "admin_required")
            .count(),
        5
    );
    assert_eq!(
        denials
            .iter()
            .filter(|(a, _)| a == "role_grant.read")
            .count(),
        4
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_new_account_gets_a_decision_role_or_admin_only_when_confirmed(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let adam = app.api_login("adam", &[Role::Admin]).await;
    let alice = app.api_login("alice", &[Role::Admin]).await;
    let mut grants = Vec::new();
    // A sock puppet with a password adam chose: a CAB member, and another
    // administrator who could confirm adam's requests.
    for (name, role) in [("puppet", "cab_member"), ("puppet-admin", "admin")] {
        let resp = app
            .api(
                Method::POST,
                "/api/v1/users",
                Some(&adam.token),
                Some(json!({"username": name, "roles": ["engineer", role], "password": "puppet-password-123"})),
            )
            .await;
        assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
        let user = &resp.json()["user"];
        assert_eq!(user["roles"], json!(["engineer"]));
        assert_eq!(user["awaiting_confirmation"]["roles"], json!([role]));
        grants.push(
            user["awaiting_confirmation"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        assert_eq!(app.roles_of(name).await, vec!["engineer"]);
        let created = app.actions("user.created").await;
        assert_eq!(created.last().unwrap()["roles"], json!(["engineer"]));
    }
    // The puppet administrator is no administrator: it cannot confirm.
    let token = app
        .token("puppet-admin", "puppet-password-123")
        .await
        .json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = app
        .api(
            Method::POST,
            &format!("/api/v1/role-grants/{}/confirm", grants[0]),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.problem_code(), "admin_required");
    let me = app.api(Method::GET, "/api/v1/me", Some(&token), None).await;
    assert_eq!(me.json()["roles"], json!(["engineer"]));
    assert_eq!(app.roles_of("puppet").await, vec!["engineer"]);
    // A second administrator confirms.
    let resp = app.settle_grant(&alice, &grants[0], "confirm").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(app.roles_of("puppet").await, vec!["engineer", "cab_member"]);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_command_line_applies_at_once_and_says_so(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (erin, _) = app.user("erin", &[Role::Engineer]).await;
    let created = app.actions("user.created").await;
    assert_eq!(created[0]["via"], "command line");
    let change = cab_server::accounts::set_roles(
        &app.pool,
        &cab_server::accounts::Operator::Cli,
        &cab_server::request::Origin::cli(),
        erin.id,
        &["engineer".to_owned(), "cab_member".to_owned()],
    )
    .await
    .unwrap();
    assert!(change.pending.is_none());
    assert_eq!(app.roles_of("erin").await, vec!["engineer", "cab_member"]);
    let changed = app.actions("user.roles_changed").await;
    assert_eq!(changed[0]["via"], "command line");
    assert_eq!(app.open_grants().await, 0);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_forms_take_two_administrators(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let adam = app.browser_login("adam", &[Role::Admin]).await;
    let alice = app.browser_login("alice", &[Role::Admin]).await;
    let (erin, _) = app.user("erin", &[Role::Engineer]).await;
    let page_of = format!("/admin/users/{}", erin.id);

    let resp = app
        .post_form(
            &format!("{page_of}/roles"),
            Some(&adam.cookie),
            &[
                ("_csrf", &adam.csrf),
                ("roles", "engineer"),
                ("roles", "cab_member"),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    assert_eq!(resp.header("location"), Some(page_of.as_str()));
    assert_eq!(app.roles_of("erin").await, vec!["engineer"]);
    let notice = resp.cookie("cab_notice").unwrap();
    let page = app
        .get_page(
            &page_of,
            Some(&format!("{}; cab_notice={notice}", adam.cookie)),
        )
        .await;
    assert!(
        page.body
            .contains("holds once a second administrator confirms it"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("CAB member — awaiting a second administrator&#39;s confirmation")
            || page
                .body
                .contains("CAB member — awaiting a second administrator's confirmation"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("cab_member —"),
        "people's words, not codes"
    );
    // Adam is not offered the confirmation, and the form refuses it anyway.
    assert!(!page.body.contains("/confirm\""), "{}", page.body);
    assert!(page.body.contains("You asked for these roles"));
    let grant: uuid::Uuid = sqlx::query_scalar("SELECT id FROM role_grants")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let confirm = format!("{page_of}/role-grants/{grant}/confirm");
    let resp = app
        .post_form(&confirm, Some(&adam.cookie), &[("_csrf", &adam.csrf)])
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert!(
        resp.body
            .contains("a second administrator has to confirm them")
    );
    assert_eq!(app.roles_of("erin").await, vec!["engineer"]);

    // Alice sees it among the users, with a button.
    let list = app.get_page("/admin/users", Some(&alice.cookie)).await;
    assert!(list.body.contains("id=\"role-grants\""));
    assert!(
        list.body.contains(&format!("action=\"{confirm}\"")),
        "{}",
        list.body
    );
    let resp = app
        .post_form(&confirm, Some(&alice.cookie), &[("_csrf", &alice.csrf)])
        .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    assert_eq!(resp.header("location"), Some(page_of.as_str()));
    let notice = resp.cookie("cab_notice").unwrap();
    let page = app
        .get_page(
            &page_of,
            Some(&format!("{}; cab_notice={notice}", alice.cookie)),
        )
        .await;
    assert!(page.body.contains("Roles confirmed"), "{}", page.body);
    assert_eq!(app.roles_of("erin").await, vec!["engineer", "cab_member"]);

    // A new account with a decision role, through the form: requested only,
    // and cancelled by the administrator who asked.
    let resp = app
        .post_form(
            "/admin/users",
            Some(&adam.cookie),
            &[
                ("_csrf", &adam.csrf),
                ("username", "newbie"),
                ("roles", "release_manager"),
                ("password", "long-enough-password"),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    assert!(
        resp.body
            .contains("Release manager: awaiting a second administrator")
    );
    assert!(app.roles_of("newbie").await.is_empty());
    let (newbie_id, grant): (uuid::Uuid, uuid::Uuid) = sqlx::query_as(
        "SELECT user_id, id FROM role_grants WHERE confirmed_at IS NULL AND cancelled_at IS NULL",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let resp = app
        .post_form(
            &format!("/admin/users/{newbie_id}/role-grants/{grant}/cancel"),
            Some(&adam.cookie),
            &[("_csrf", &adam.csrf)],
        )
        .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    let resp = app
        .post_form(
            &format!("/admin/users/{newbie_id}/role-grants/{grant}/confirm"),
            Some(&alice.cookie),
            &[("_csrf", &alice.csrf)],
        )
        .await;
    assert_eq!(resp.status, StatusCode::CONFLICT, "{}", resp.body);
    assert!(app.roles_of("newbie").await.is_empty());

    // The audit trail tells it in words.
    let audrey = app.browser_login("audrey", &[Role::Auditor]).await;
    let trail = app.get_page("/audit", Some(&audrey.cookie)).await;
    for sentence in [
        "asked for the role CAB member for",
        "confirmed the role CAB member for",
        "cancelled the request for the role Release manager for",
    ] {
        assert!(trail.body.contains(sentence), "{sentence:?} missing");
    }
}
