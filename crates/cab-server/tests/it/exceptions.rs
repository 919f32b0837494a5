//! The change's life through its production deployment, break-glass
//! deployments (two people, never past the duties), and deployments nobody
//! authorized, tested from the attacker's side.

use axum::http::{Method, StatusCode};
use cab_domain::Role;
use chrono::{Duration, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::changes::complete_change;
use crate::common::{ApiClient, TestApp, TestResponse};
use crate::deployments::{artifact, digest, reason_codes, request};

impl TestApp {
    async fn post(&self, who: &str, uri: &str, body: Value) -> TestResponse {
        self.api(Method::POST, uri, Some(who), Some(body)).await
    }

    async fn break_glass_row(&self, id: &str) -> (Option<uuid::Uuid>, Option<uuid::Uuid>) {
        sqlx::query_as("SELECT confirmed_by, deployment_id FROM break_glass WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn last_denial(&self) -> Value {
        self.audit_events()
            .await
            .into_iter()
            .rev()
            .find(|(a, _)| a == "access.denied")
            .unwrap()
            .1
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_production_deployment_moves_the_change_along(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let id = app.approved_change(&c.erin, &c.carol).await;
    app.promote_to_stage(&c.pipeline, &id).await;
    // Deployments below production leave it approved.
    assert_eq!(app.change_row(&id).await.0, "approved");

    let auth = app
        .gate(&c.pipeline, request(&id, "prod", Some("rita")))
        .await
        .json();
    let dep = auth["deployment"]["id"].as_str().unwrap();
    let resp = app
        .report(&c.pipeline, dep, "started", auth["token"].as_str())
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(app.change_row(&id).await.0, "implementing");

    // What is being deployed does not change under it.
    let resp = app
        .api(
            Method::PATCH,
            &format!("/api/v1/changes/{id}"),
            Some(&c.erin.token),
            Some(json!({"title": "Something else now"})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CONFLICT, "{}", resp.body);
    assert_eq!(resp.problem_code(), "deployment_under_way");
    assert_eq!(app.change_row(&id).await.1, "Roll out the new edge proxy");

    let resp = app.report(&c.pipeline, dep, "succeeded", None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(app.change_row(&id).await.0, "implemented");
    let resp = app
        .api(
            Method::PATCH,
            &format!("/api/v1/changes/{id}"),
            Some(&c.erin.token),
            Some(json!({"title": "Something else now"})),
        )
        .await;
    assert_eq!(resp.problem_code(), "change_deployed");
    let resp = app.change_action(&c.carol, &id, "cancel", None).await;
    assert_eq!(resp.status, StatusCode::CONFLICT, "{}", resp.body);

    // Rolled back: the deployment failed after all. The trail says so in
    // the deployment's own event.
    let resp = app.report(&c.pipeline, dep, "rolled_back", None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(app.change_row(&id).await.0, "implementation_failed");
    let (_, payload) = app
        .audit_events()
        .await
        .into_iter()
        .rev()
        .find(|(a, _)| a == "deployment.rolled_back")
        .unwrap();
    assert_eq!(payload["change_from"], "implemented");
    assert_eq!(payload["change_to"], "implementation_failed");
    // The change's own timeline tells its deployments.
    let erin = app
        .browser_login_with(c.erin.user.clone(), "erin-correct-horse-battery")
        .await;
    let page = app
        .get_page(&format!("/changes/{id}"), Some(&erin.cookie))
        .await;
    assert!(
        page.body.contains("to PROD was rolled back")
            && page.body.contains("is marked as failed to deploy"),
        "{}",
        page.body
    );

    // Still approved, so it may be deployed again.
    let resp = app
        .api(
            Method::POST,
            "/api/v1/deployments/dry-run",
            Some(&c.pipeline),
            Some(request(&id, "prod", Some("rita"))),
        )
        .await;
    assert_eq!(resp.json()["allowed"], true, "{}", resp.body);
}

/// A change by erin with cora as a contributor, submitted but not approved,
/// its artifact promoted to STAGE, and a freeze over PROD now.
async fn urgent_change(app: &TestApp, erin: &ApiClient, pipeline: &str) -> String {
    let mut body = complete_change("Patch the payment gateway");
    let now = Utc::now();
    // The window is tomorrow: now is outside it.
    body["window"] = json!({
        "start": (now + Duration::days(1)).to_rfc3339(),
        "end": (now + Duration::days(1) + Duration::hours(2)).to_rfc3339(),
        "time_zone": "UTC"
    });
    body["risk"] = json!({"impact": 1, "likelihood": 1});
    body["priority"] = json!("urgent");
    body["contributors"] = json!(["cora"]);
    let id = app.file_change(erin, body).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = app.change_action(erin, &id, "submit", None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    app.promote_to_stage(pipeline, &id).await;
    sqlx::query(
        "INSERT INTO freezes (id, starts_at, ends_at, reason, environments, services, created_by, created_at)
         SELECT gen_random_uuid(), now() - interval '1 hour', now() + interval '1 day',
                'Quarter-end close', '{prod}', '{}', id, now() FROM users WHERE username = 'adam'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    id
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn break_glass_takes_a_second_person_and_never_lifts_the_duties(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let cora = app
        .api_login("cora", &[Role::CabMember, Role::ReleaseManager])
        .await;
    let id = urgent_change(&app, &c.erin, &c.pipeline).await;

    // In review, outside its window, in a freeze: refused for all three.
    let resp = app
        .gate(&c.pipeline, request(&id, "prod", Some("rita")))
        .await;
    let codes = reason_codes(&resp);
    for code in ["change_not_approved", "outside_window", "freeze_in_force"] {
        assert!(codes.iter().any(|c| c == code), "{code} in {codes:?}");
    }

    // Bad requests are answered field by field and write nothing.
    let ask = |reason: &str, env: &str| json!({"change": id, "environment": env, "reason": reason, "incident": "INC-4711"});
    let resp = app
        .post(
            &c.rita.token,
            "/api/v1/break-glass",
            ask("too short", "stage"),
        )
        .await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.body
    );
    assert!(resp.body.contains("reason") && resp.body.contains("environment"));
    let reason = "Card payments fail for every customer since the certificate expired.";
    // Only a release manager asks, and never one who worked on the change.
    let before = app.audit_count().await;
    let resp = app
        .post(&c.erin.token, "/api/v1/break-glass", ask(reason, "prod"))
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.problem_code(), "break_glass_not_allowed");
    let resp = app
        .post(&cora.token, "/api/v1/break-glass", ask(reason, "prod"))
        .await;
    assert_eq!(resp.problem_code(), "self_deployment");
    assert_eq!(app.audit_count().await, before + 2, "two refusals recorded");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM break_glass")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);

    let resp = app
        .post(&c.rita.token, "/api/v1/break-glass", ask(reason, "prod"))
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    let bg = resp.json();
    assert_eq!(bg["status"], "waiting");
    let bg_id = bg["id"].as_str().unwrap().to_owned();
    let bg_key = bg["key"].as_str().unwrap().to_owned();

    // Not confirmed yet: the gate says so.
    let mut with_glass = request(&id, "prod", Some("rita"));
    with_glass["break_glass"] = json!(bg_key);
    let resp = app.gate(&c.pipeline, with_glass.clone()).await;
    assert!(reason_codes(&resp).contains(&"break_glass_not_confirmed".to_owned()));

    // The requester and a contributor cannot confirm it.
    let confirm = format!("/api/v1/break-glass/{bg_key}/confirm");
    let resp = app.post(&c.rita.token, &confirm, json!({})).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.problem_code(), "break_glass_self_confirm");
    assert_eq!(app.last_denial().await["attempted"], "break_glass.confirm");
    let resp = app.post(&cora.token, &confirm, json!({})).await;
    assert_eq!(resp.problem_code(), "break_glass_contributor");
    let resp = app.post(&c.erin.token, &confirm, json!({})).await;
    assert_eq!(resp.problem_code(), "break_glass_not_allowed");
    assert_eq!(app.break_glass_row(&bg_id).await, (None, None));

    // A second person confirms; once is enough.
    let resp = app.post(&c.carol.token, &confirm, json!({})).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["status"], "confirmed");
    let resp = app.post(&c.carol.token, &confirm, json!({})).await;
    assert_eq!(resp.status, StatusCode::CONFLICT);

    // Only the one who asked deploys with it, and never the duties waived:
    // a pipeline naming the author, or nobody, is still refused.
    let mut for_carol = with_glass.clone();
    for_carol["initiator"] = json!("carol");
    let resp = app.gate(&c.pipeline, for_carol).await;
    assert!(reason_codes(&resp).contains(&"break_glass_mismatch".to_owned()));
    let mut for_erin = with_glass.clone();
    for_erin["initiator"] = json!("erin");
    let codes = reason_codes(&app.gate(&c.pipeline, for_erin).await);
    assert!(codes.contains(&"self_deployment".to_owned()), "{codes:?}");
    let mut for_nobody = with_glass.clone();
    for_nobody
        .as_object_mut()
        .unwrap()
        .remove("initiator")
        .unwrap();
    let codes = reason_codes(&app.gate(&c.pipeline, for_nobody).await);
    assert!(
        codes.contains(&"initiator_required".to_owned()),
        "{codes:?}"
    );
    assert_eq!(app.deployment_count().await, 3);

    // Rita's deployment goes through the freeze, flagged, for an hour at most.
    let resp = app.gate(&c.pipeline, with_glass.clone()).await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    let auth = resp.json();
    let keys = app
        .api(Method::GET, "/api/v1/deployments/keys", None, None)
        .await;
    let jwks: cab_server::crypto::deploy::Jwks = serde_json::from_str(&keys.body).unwrap();
    let token = auth["token"].as_str().unwrap();
    let claims = cab_server::crypto::deploy::verify(token, &jwks, Utc::now()).unwrap();
    assert!(claims.break_glass);
    assert!(claims.exp <= (Utc::now() + Duration::minutes(60)).timestamp());
    assert!(claims.exp > (Utc::now() + Duration::minutes(50)).timestamp());
    let dep = auth["deployment"]["id"].as_str().unwrap();
    // It starts in the freeze too: the gate checks again with the same
    // break-glass.
    let resp = app.report(&c.pipeline, dep, "started", Some(token)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    // What runs in production cannot change under it, reviewed or not.
    assert_eq!(app.change_row(&id).await.0, "implementing");

    // One deployment per break-glass.
    let resp = app.gate(&c.pipeline, with_glass).await;
    assert!(reason_codes(&resp).contains(&"break_glass_used".to_owned()));

    // Listed as an exception for review.
    let listed = app
        .api(
            Method::GET,
            "/api/v1/break-glass",
            Some(&c.erin.token),
            None,
        )
        .await
        .json();
    assert_eq!(listed[0]["status"], "used");
    assert_eq!(listed[0]["confirmed_by"], "carol");
    assert!(
        listed[0]["deployment"]
            .as_str()
            .unwrap()
            .starts_with("DEP-")
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_break_glass_nobody_confirms_in_time_lapses(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    app.api_login("cora", &[Role::CabMember]).await;
    let id = urgent_change(&app, &c.erin, &c.pipeline).await;
    let resp = app
        .post(
            &c.rita.token,
            "/api/v1/break-glass",
            json!({"change": id, "environment": "prod",
                   "reason": "The payment gateway rejects every card since midnight.",
                   "incident": "INC-7"}),
        )
        .await;
    let bg = resp.json()["key"].as_str().unwrap().to_owned();
    sqlx::query(
        "UPDATE break_glass SET requested_at = requested_at - interval '31 minutes',
                                expires_at = expires_at - interval '31 minutes'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let resp = app
        .post(
            &c.carol.token,
            &format!("/api/v1/break-glass/{bg}/confirm"),
            json!({}),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CONFLICT, "{}", resp.body);
    assert_eq!(resp.problem_code(), "break_glass_expired");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn what_runs_in_production_without_an_authorized_deployment_is_a_finding(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let observe = |env: &str, digest: String| json!({"environment": env, "service": "edge-proxy", "digest": digest});
    // Something nobody deployed runs in PROD.
    let resp = app
        .post(
            &c.pipeline,
            "/api/v1/deployments/observed",
            observe("prod", digest('e')),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    let finding = resp.json();
    assert_eq!(finding["finding"], true);
    assert_eq!(
        app.audit_events().await.last().unwrap().0,
        "deployment.observed"
    );
    // The same elsewhere is recorded, not a finding.
    let resp = app
        .post(
            &c.pipeline,
            "/api/v1/deployments/observed",
            observe("dev", digest('e')),
        )
        .await;
    assert_eq!(resp.json()["finding"], false);

    // What a started production deployment covers is no finding.
    let id = app.approved_change(&c.erin, &c.carol).await;
    app.promote_to_stage(&c.pipeline, &id).await;
    let auth = app
        .gate(&c.pipeline, request(&id, "prod", Some("rita")))
        .await
        .json();
    let dep = auth["deployment"]["id"].as_str().unwrap();
    app.report(&c.pipeline, dep, "started", auth["token"].as_str())
        .await;
    let resp = app
        .post(
            &c.pipeline,
            "/api/v1/deployments/observed",
            observe("prod", artifact()),
        )
        .await;
    let covered = resp.json();
    assert_eq!(covered["finding"], false, "{}", resp.body);
    assert_eq!(covered["covered_by"], auth["deployment"]["key"]);

    // Who may not say what runs is refused, recorded, and writes nothing.
    let rows = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM observed_deployments")
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    let before = rows().await;
    let resp = app
        .post(
            &c.erin.token,
            "/api/v1/deployments/observed",
            observe("prod", digest('f')),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.problem_code(), "observe_not_allowed");
    assert_eq!(app.last_denial().await["attempted"], "deployment.observe");
    let resp = app
        .post(
            &c.pipeline,
            "/api/v1/deployments/observed",
            json!({"environment": "prod", "service": "", "digest": "latest"}),
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(rows().await, before);

    // Open findings are listed until a release manager resolves them.
    let open = app
        .api(Method::GET, "/api/v1/findings", Some(&c.adam.token), None)
        .await
        .json();
    assert_eq!(open.as_array().unwrap().len(), 1);
    let resolve = format!(
        "/api/v1/findings/{}/resolve",
        finding["id"].as_str().unwrap()
    );
    let body = json!({"resolution": "A hotfix deployed by hand during INC-9; reviewed."});
    let resp = app.post(&c.erin.token, &resolve, body.clone()).await;
    assert_eq!(resp.problem_code(), "resolve_not_allowed");
    let resp = app.post(&c.rita.token, &resolve, body.clone()).await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT, "{}", resp.body);
    let resp = app.post(&c.rita.token, &resolve, body).await;
    assert_eq!(resp.status, StatusCode::CONFLICT);
    let open = app
        .api(Method::GET, "/api/v1/findings", Some(&c.adam.token), None)
        .await
        .json();
    assert!(open.as_array().unwrap().is_empty());
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn break_glass_through_the_forms_refuses_the_requester_and_contributors(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let cora = app.api_login("cora", &[Role::CabMember]).await;
    let id = urgent_change(&app, &c.erin, &c.pipeline).await;
    let number: i64 = sqlx::query_scalar("SELECT number FROM changes WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let change = format!("CHG-{number}");
    let login = |client: &ApiClient| {
        let user = client.user.clone();
        let password = format!("{}-correct-horse-battery", user.username);
        let app = &app;
        async move { app.browser_login_with(user, &password).await }
    };
    let rita = login(&c.rita).await;
    let cora = login(&cora).await;
    let carol = login(&c.carol).await;

    // The page offers the form to a release manager; a bad form comes back
    // with the message beside the field and nothing written.
    let page = app.get_page("/exceptions", Some(&rita.cookie)).await;
    assert!(page.body.contains("id=\"break-glass-form\""));
    let resp = app
        .post_form(
            "/exceptions/break-glass",
            Some(&rita.cookie),
            &[
                ("_csrf", &rita.csrf),
                ("change", &change),
                ("environment", "prod"),
                ("reason", "urgent"),
                ("incident", "INC-1"),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(resp.body.contains("id=\"reason-error\""), "{}", resp.body);
    assert!(resp.body.contains("value=\"INC-1\""));
    let rows = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM break_glass")
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    assert_eq!(rows().await, 0);

    let resp = app
        .post_form(
            "/exceptions/break-glass",
            Some(&rita.cookie),
            &[
                ("_csrf", &rita.csrf),
                ("change", &change),
                ("environment", "prod"),
                (
                    "reason",
                    "The gateway certificate expires tonight; payments stop.",
                ),
                ("incident", "INC-1"),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    let key: i64 = sqlx::query_scalar("SELECT number FROM break_glass")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let confirm = format!("/exceptions/break-glass/BG-{key}/confirm");
    // The requester and a contributor press the button anyway: refused,
    // said why, recorded, and nothing confirmed.
    for (who, message) in [
        (&rita, "a second person must confirm it"),
        (&cora, "You worked on this change"),
    ] {
        let before = app.denials().await.len();
        let resp = app
            .post_form(&confirm, Some(&who.cookie), &[("_csrf", &who.csrf)])
            .await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
        assert!(resp.body.contains(message), "{}", resp.body);
        assert_eq!(app.denials().await.len(), before + 1);
    }
    let confirmed: Option<uuid::Uuid> = sqlx::query_scalar("SELECT confirmed_by FROM break_glass")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(confirmed, None);
    // Carol sees it waiting on her dashboard and confirms it.
    let home = app.get_page("/", Some(&carol.cookie)).await;
    assert!(home.body.contains(&format!("BG-{key}")), "{}", home.body);
    let resp = app
        .post_form(&confirm, Some(&carol.cookie), &[("_csrf", &carol.csrf)])
        .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    let page = app.get_page("/exceptions", Some(&carol.cookie)).await;
    assert!(page.body.contains("Confirmed by carol"), "{}", page.body);
    // Without a CSRF token nothing happens.
    let resp = app.post_form(&confirm, Some(&carol.cookie), &[]).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_break_glass_holds_only_for_the_revision_and_artifact_confirmed_and_an_open_change(
    pool: PgPool,
) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    app.api_login("cora", &[Role::CabMember]).await;
    let id = urgent_change(&app, &c.erin, &c.pipeline).await;
    let resp = app
        .post(
            &c.rita.token,
            "/api/v1/break-glass",
            json!({"change": id, "environment": "prod", "incident": "INC-9",
                   "reason": "The payment gateway rejects every card since midnight."}),
        )
        .await;
    let bg = resp.json();
    assert_eq!(bg["revision"], 1);
    assert_eq!(bg["digest"], artifact());
    let key = bg["key"].as_str().unwrap().to_owned();
    let resp = app
        .post(
            &c.carol.token,
            &format!("/api/v1/break-glass/{key}/confirm"),
            json!({}),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);

    // The author edits after the confirmation: the break-glass does not
    // carry the new revision.
    let resp = app
        .api(
            Method::PATCH,
            &format!("/api/v1/changes/{id}"),
            Some(&c.erin.token),
            Some(json!({"implementation_plan": "Something else entirely, now."})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let mut ask = request(&id, "prod", Some("rita"));
    ask["revision"] = json!(2);
    ask["break_glass"] = json!(key);
    let resp = app.gate(&c.pipeline, ask.clone()).await;
    let codes = reason_codes(&resp);
    assert!(
        codes.contains(&"break_glass_mismatch".to_owned()),
        "{codes:?}"
    );

    // Cancelled: nothing carries it to production.
    let resp = app
        .change_action(
            &c.carol,
            &id,
            "cancel",
            Some(json!({"reason": "Superseded by the vendor's fix."})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let codes = reason_codes(&app.gate(&c.pipeline, ask).await);
    assert!(
        codes.contains(&"break_glass_change_state".to_owned()),
        "{codes:?}"
    );
    assert_eq!(app.deployment_count().await, 3);
    // Nor may one be asked for it.
    let resp = app
        .post(
            &c.rita.token,
            "/api/v1/break-glass",
            json!({"change": id, "environment": "prod", "incident": "INC-9",
                   "reason": "The payment gateway rejects every card since midnight."}),
        )
        .await;
    assert_eq!(resp.problem_code(), "break_glass_change_state");
    // Unknown ones are not found.
    let resp = app
        .api(
            Method::GET,
            "/api/v1/break-glass/BG-999",
            Some(&c.rita.token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
}
