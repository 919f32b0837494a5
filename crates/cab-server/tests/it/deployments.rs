//! The deployment gate, tested from the pipeline's side and the attacker's:
//! promotion DEV → TEST → STAGE → PROD, every reason named, the duties of a
//! production deployment, signed authorizations that start once.

use axum::http::{Method, StatusCode};
use cab_domain::Role;
use chrono::{Duration, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::changes::complete_change;
use crate::common::{ApiClient, TestApp, TestResponse};

pub fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

/// The artifact every test change names.
pub fn artifact() -> String {
    digest('b')
}

/// Everyone a deployment involves: an author, a CAB member who approves, a
/// release manager, and a pipeline allowed everywhere.
pub struct Cast {
    pub erin: ApiClient,
    pub carol: ApiClient,
    pub rita: ApiClient,
    pub adam: ApiClient,
    pub pipeline: String,
}

impl TestApp {
    pub async fn cast(&self) -> Cast {
        let erin = self.api_login("erin", &[Role::Engineer]).await;
        let carol = self.api_login("carol", &[Role::CabMember]).await;
        let rita = self.api_login("rita", &[Role::ReleaseManager]).await;
        let adam = self.api_login("adam", &[Role::Admin]).await;
        let pipeline = self
            .pipeline(&adam, "deploy-bot", &["dev", "test", "stage", "prod"])
            .await;
        Cast {
            erin,
            carol,
            rita,
            adam,
            pipeline,
        }
    }

    /// A pipeline's service account allowed to deploy to `envs`: its API token.
    pub async fn pipeline(&self, adam: &ApiClient, name: &str, envs: &[&str]) -> String {
        self.pipeline_client(adam, name, envs).await.token
    }

    /// A pipeline's service account allowed to deploy to `envs`, as an API
    /// caller.
    pub async fn pipeline_client(&self, adam: &ApiClient, name: &str, envs: &[&str]) -> ApiClient {
        let bot = self.service_account(name, &[Role::Engineer]).await;
        let resp = self
            .api(
                Method::PUT,
                &format!("/api/v1/users/{}/environments", bot.id),
                Some(&adam.token),
                Some(json!({"environments": envs})),
            )
            .await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
        let token = self
            .api(
                Method::POST,
                &format!("/api/v1/users/{}/tokens", bot.id),
                Some(&adam.token),
                Some(json!({"name": "deploy"})),
            )
            .await
            .json()["secret"]
            .as_str()
            .unwrap()
            .to_owned();
        ApiClient { token, user: bot }
    }

    /// A low-risk change by `author` whose window is open now, approved by
    /// `approver`. Its id.
    pub async fn approved_change(&self, author: &ApiClient, approver: &ApiClient) -> String {
        let id = self.open_change(author).await;
        let resp = self.change_action(author, &id, "submit", None).await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
        let resp = self.vote(approver, &id, "approve", "").await;
        assert_eq!(resp.json()["state"], "approved", "{}", resp.body);
        id
    }

    /// A low-risk draft by `author` whose window is open now.
    pub async fn open_change(&self, author: &ApiClient) -> String {
        let mut body = complete_change("Roll out the new edge proxy");
        let now = Utc::now();
        body["window"] = json!({
            "start": (now - Duration::hours(1)).to_rfc3339(),
            "end": (now + Duration::hours(3)).to_rfc3339(),
            "time_zone": "UTC"
        });
        body["risk"] = json!({"impact": 1, "likelihood": 1});
        body["priority"] = json!("medium");
        self.file_change(author, body).await["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn gate(&self, token: &str, body: Value) -> TestResponse {
        self.api(Method::POST, "/api/v1/deployments", Some(token), Some(body))
            .await
    }

    pub async fn report(
        &self,
        token: &str,
        deployment: &str,
        state: &str,
        authorization: Option<&str>,
    ) -> TestResponse {
        let mut body = json!({"state": state});
        if let Some(a) = authorization {
            body["token"] = json!(a);
        }
        self.api(
            Method::POST,
            &format!("/api/v1/deployments/{deployment}/events"),
            Some(token),
            Some(body),
        )
        .await
    }

    /// Authorizes, starts and completes a deployment; panics on a refusal.
    pub async fn deploy(&self, token: &str, body: Value) -> Value {
        let resp = self.gate(token, body).await;
        assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
        let auth = resp.json();
        let id = auth["deployment"]["id"].as_str().unwrap().to_owned();
        let resp = self
            .report(token, &id, "started", auth["token"].as_str())
            .await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
        let resp = self.report(token, &id, "succeeded", None).await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
        // Reported twice, it is the same report.
        let again = self.report(token, &id, "succeeded", None).await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.body);
        assert_eq!(again.json()["finished_at"], resp.json()["finished_at"]);
        resp.json()
    }

    /// Promotes the change's artifact through every environment below PROD.
    pub async fn promote_to_stage(&self, pipeline: &str, change: &str) {
        for env in ["dev", "test", "stage"] {
            self.deploy(pipeline, request(change, env, None)).await;
        }
    }

    pub async fn deployment_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM deployments")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

/// A gate request for revision 1 of `change`'s artifact.
pub fn request(change: &str, env: &str, initiator: Option<&str>) -> Value {
    let mut body = json!({
        "change": change,
        "revision": 1,
        "environment": env,
        "artifact": {"name": "edge-proxy", "version": "2.4.1", "digest": artifact()},
        "pipeline": {"provider": "github", "run_id": "4242", "url": "https://ci.example.com/runs/4242"}
    });
    if let Some(i) = initiator {
        body["initiator"] = json!(i);
    }
    body
}

pub fn reason_codes(resp: &TestResponse) -> Vec<String> {
    resp.json()["reasons"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["code"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_pipeline_promotes_a_change_to_prod_for_a_release_manager(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let id = app.approved_change(&c.erin, &c.carol).await;
    app.promote_to_stage(&c.pipeline, &id).await;

    let resp = app
        .gate(&c.pipeline, request(&id, "prod", Some("rita")))
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    let auth = resp.json();
    assert_eq!(auth["deployment"]["state"], "authorized");
    assert_eq!(auth["deployment"]["environment_label"], "PROD");
    assert_eq!(auth["deployment"]["initiator"], "rita");
    assert_eq!(auth["deployment"]["executor"], "deploy-bot");
    let token = auth["token"].as_str().unwrap();

    // The token checks out offline against the published keys, for PROD and
    // this artifact, and says who it is for.
    let keys = app
        .api(Method::GET, "/api/v1/deployments/keys", None, None)
        .await;
    assert_eq!(keys.status, StatusCode::OK);
    let jwks: cab_server::crypto::deploy::Jwks = serde_json::from_str(&keys.body).unwrap();
    let claims = cab_server::crypto::deploy::verify(token, &jwks, Utc::now()).unwrap();
    assert_eq!(claims.environment, "prod");
    assert_eq!(claims.digest, artifact());
    assert_eq!(claims.initiator, "rita");
    assert!(claims.exp <= (Utc::now() + Duration::minutes(15)).timestamp());

    let dep = auth["deployment"]["id"].as_str().unwrap();
    let resp = app.report(&c.pipeline, dep, "started", Some(token)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["state"], "started");
    let resp = app.report(&c.pipeline, dep, "succeeded", None).await;
    assert_eq!(resp.json()["state"], "succeeded");

    let listed = app
        .api(
            Method::GET,
            &format!("/api/v1/deployments?change={id}"),
            Some(&c.erin.token),
            None,
        )
        .await
        .json();
    let envs: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["environment"].as_str().unwrap())
        .collect();
    assert_eq!(envs, ["prod", "stage", "test", "dev"]);
    let actions: Vec<String> = app
        .audit_events()
        .await
        .into_iter()
        .map(|(a, _)| a)
        .filter(|a| a.starts_with("deployment."))
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "deployment.succeeded")
            .count(),
        4
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_gate_names_every_reason_and_records_the_refusal(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    // Submitted, not approved; STAGE skipped; another artifact.
    let id = app.open_change(&c.erin).await;
    app.change_action(&c.erin, &id, "submit", None).await;
    let mut body = request(&id, "prod", Some("rita"));
    body["artifact"]["digest"] = json!(digest('c'));
    let denials = app.denials().await.len();
    let resp = app.gate(&c.pipeline, body).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert_eq!(resp.problem_code(), "deployment_refused");
    let codes = reason_codes(&resp);
    for expected in [
        "change_not_approved",
        "artifact_not_the_changes",
        "promotion_order",
    ] {
        assert!(
            codes.iter().any(|c| c == expected),
            "{expected} in {codes:?}"
        );
    }
    assert_eq!(app.deployment_count().await, 0);
    let after = app.denials().await;
    assert_eq!(after.len(), denials + 1, "one refusal recorded");
    let recorded = app
        .audit_events()
        .await
        .into_iter()
        .rev()
        .find(|(a, _)| a == "access.denied")
        .unwrap()
        .1;
    assert_eq!(recorded["attempted"], "deployment.authorize");
    assert_eq!(recorded["reasons"].as_array().unwrap().len(), codes.len());

    // The dry run says the same and records nothing.
    let mut body = request(&id, "prod", Some("rita"));
    body["artifact"]["digest"] = json!(digest('c'));
    let before = app.audit_count().await;
    let resp = app
        .api(
            Method::POST,
            "/api/v1/deployments/dry-run",
            Some(&c.pipeline),
            Some(body),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.json()["allowed"], false);
    let dry: Vec<String> = resp.json()["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(dry, codes);
    assert_eq!(app.audit_count().await, before);
    assert_eq!(app.deployment_count().await, 0);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn nobody_deploys_their_own_change_to_prod(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    // Erin's colleague Ella contributed, then left the list; Randy is a
    // release manager who also contributes.
    let randy = app
        .api_login("randy", &[Role::Engineer, Role::ReleaseManager])
        .await;
    let (_, _) = app
        .user("ella", &[Role::Engineer, Role::ReleaseManager])
        .await;
    let id = app.open_change(&c.erin).await;
    let resp = app
        .api(
            Method::PATCH,
            &format!("/api/v1/changes/{id}"),
            Some(&c.erin.token),
            Some(json!({"contributors": ["randy", "ella"]})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
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
    // Erin made a release manager too: still the author.
    sqlx::query("UPDATE users SET roles = '{engineer,release_manager}' WHERE username = 'erin'")
        .execute(&app.pool)
        .await
        .unwrap();

    let cases: Vec<(&str, Option<&str>, &str)> = vec![
        // A pipeline names the author, a contributor, a former contributor.
        (&c.pipeline, Some("erin"), "self_deployment"),
        (&c.pipeline, Some("randy"), "self_deployment"),
        (&c.pipeline, Some("ella"), "self_deployment"),
        // A pipeline names nobody, or another pipeline.
        (&c.pipeline, None, "initiator_required"),
        (&c.pipeline, Some("deploy-bot"), "initiator_required"),
        // The approver, the author in person, an administrator.
        (&c.pipeline, Some("carol"), "release_manager_required"),
        (&randy.token, None, "self_deployment"),
        (&c.adam.token, None, "deploy_not_allowed"),
        // Someone CAB does not know.
        (&c.pipeline, Some("mallory"), "initiator_unknown"),
    ];
    for (token, initiator, code) in cases {
        let denials = app.denials().await.len();
        let resp = app.gate(token, request(&id, "prod", initiator)).await;
        assert_eq!(
            resp.status,
            StatusCode::FORBIDDEN,
            "{initiator:?}: {}",
            resp.body
        );
        let codes = reason_codes(&resp);
        assert!(
            codes.iter().any(|c| c == code),
            "{initiator:?}: {code} in {codes:?}"
        );
        assert_eq!(app.denials().await.len(), denials + 1, "recorded");
    }
    // Carol, made a release manager, still approved it.
    sqlx::query("UPDATE users SET roles = '{cab_member,release_manager}' WHERE username = 'carol'")
        .execute(&app.pool)
        .await
        .unwrap();
    let resp = app
        .gate(&c.pipeline, request(&id, "prod", Some("carol")))
        .await;
    assert_eq!(
        reason_codes(&resp),
        ["approver_deployment"],
        "{}",
        resp.body
    );
    assert_eq!(
        app.deployment_count().await,
        3,
        "only DEV, TEST and STAGE were deployed"
    );
    // Rita, who had no part in it, may, in person.
    let resp = app.gate(&c.rita.token, request(&id, "prod", None)).await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    assert_eq!(resp.json()["deployment"]["executor"], "rita");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn promotion_follows_the_digest_through_every_environment(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let id = app.approved_change(&c.erin, &c.carol).await;
    // STAGE skipped.
    app.deploy(&c.pipeline, request(&id, "dev", None)).await;
    app.deploy(&c.pipeline, request(&id, "test", None)).await;
    let resp = app
        .gate(&c.pipeline, request(&id, "prod", Some("rita")))
        .await;
    assert_eq!(reason_codes(&resp), ["promotion_order"], "{}", resp.body);
    // STAGE succeeded with another digest (the change named it for a while).
    sqlx::query("UPDATE changes SET content = jsonb_set(content, '{artifact_digest}', to_jsonb($1::text)) WHERE id = $2::uuid")
        .bind(digest('c'))
        .bind(&id)
        .execute(&app.pool)
        .await
        .unwrap();
    let mut other = request(&id, "stage", None);
    other["artifact"]["digest"] = json!(digest('c'));
    let resp = app.gate(&c.pipeline, other.clone()).await;
    assert_eq!(
        reason_codes(&resp),
        ["promotion_order"],
        "TEST never had it"
    );
    sqlx::query("UPDATE changes SET content = jsonb_set(content, '{artifact_digest}', to_jsonb($1::text)) WHERE id = $2::uuid")
        .bind(artifact())
        .bind(&id)
        .execute(&app.pool)
        .await
        .unwrap();
    let resp = app
        .gate(&c.pipeline, request(&id, "prod", Some("rita")))
        .await;
    assert_eq!(reason_codes(&resp), ["promotion_order"]);
    // A soak time on PROD: STAGE must have succeeded that long ago.
    sqlx::query("UPDATE environments SET soak_minutes = 30 WHERE key = 'prod'")
        .execute(&app.pool)
        .await
        .unwrap();
    app.deploy(&c.pipeline, request(&id, "stage", None)).await;
    let resp = app
        .gate(&c.pipeline, request(&id, "prod", Some("rita")))
        .await;
    assert_eq!(reason_codes(&resp), ["soak_time"], "{}", resp.body);
    sqlx::query("UPDATE deployments SET finished_at = finished_at - interval '31 minutes' WHERE environment = 'stage'")
        .execute(&app.pool)
        .await
        .unwrap();
    let resp = app
        .gate(&c.pipeline, request(&id, "prod", Some("rita")))
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn windows_freezes_and_pipeline_limits_hold_at_the_gate(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let id = app.approved_change(&c.erin, &c.carol).await;
    app.promote_to_stage(&c.pipeline, &id).await;
    // A pipeline allowed only DEV.
    let dev_only = app.pipeline(&c.adam, "dev-bot", &["dev"]).await;
    let resp = app.gate(&dev_only, request(&id, "stage", None)).await;
    assert_eq!(
        reason_codes(&resp),
        ["environment_not_allowed"],
        "{}",
        resp.body
    );

    // A freeze on PROD for the change's service.
    sqlx::query(
        "INSERT INTO freezes (id, starts_at, ends_at, reason, environments, services, created_by, created_at)
         SELECT gen_random_uuid(), now() - interval '1 minute', now() + interval '1 hour', 'Black Friday',
                '{prod}', '{edge-proxy}', id, now() FROM users WHERE username = 'rita'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let resp = app
        .gate(&c.pipeline, request(&id, "prod", Some("rita")))
        .await;
    assert_eq!(reason_codes(&resp), ["freeze_in_force"], "{}", resp.body);
    assert!(
        resp.json()["detail"]
            .as_str()
            .unwrap()
            .contains("Black Friday")
    );
    sqlx::query("DELETE FROM freezes")
        .execute(&app.pool)
        .await
        .unwrap();

    // Outside the window.
    sqlx::query("UPDATE changes SET content = jsonb_set(content, '{window_end}', to_jsonb(now() - interval '1 minute')) WHERE id = $1::uuid")
        .bind(&id)
        .execute(&app.pool)
        .await
        .unwrap();
    let resp = app
        .gate(&c.pipeline, request(&id, "prod", Some("rita")))
        .await;
    assert_eq!(reason_codes(&resp), ["outside_window"], "{}", resp.body);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_authorization_starts_its_own_deployment_once(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let id = app.approved_change(&c.erin, &c.carol).await;
    app.promote_to_stage(&c.pipeline, &id).await;
    let second = app.approved_change(&c.erin, &c.carol).await;
    app.promote_to_stage(&c.pipeline, &second).await;

    let a = app
        .gate(&c.pipeline, request(&id, "prod", Some("rita")))
        .await
        .json();
    let b = app
        .gate(&c.pipeline, request(&second, "prod", Some("rita")))
        .await
        .json();
    let (a_id, a_token) = (
        a["deployment"]["id"].as_str().unwrap(),
        a["token"].as_str().unwrap(),
    );
    let b_token = b["token"].as_str().unwrap();

    // No token; another deployment's token; a token signed by another key.
    let resp = app.report(&c.pipeline, a_id, "started", None).await;
    assert_eq!(resp.problem_code(), "authorization_required");
    let resp = app
        .report(&c.pipeline, a_id, "started", Some(b_token))
        .await;
    assert_eq!(
        resp.problem_code(),
        "authorization_invalid",
        "{}",
        resp.body
    );
    let claims = cab_server::crypto::deploy::verify(
        a_token,
        &serde_json::from_str(
            &app.api(Method::GET, "/api/v1/deployments/keys", None, None)
                .await
                .body,
        )
        .unwrap(),
        Utc::now(),
    )
    .unwrap();
    // Signed by a key CAB never published…
    let elsewhere = cab_server::crypto::Keys::new(b"somebody else's secret key, long enough");
    let foreign = cab_server::crypto::deploy::generate(&elsewhere, Utc::now()).unwrap();
    let forged = cab_server::crypto::deploy::sign(&elsewhere, &foreign, &claims).unwrap();
    let resp = app
        .report(&c.pipeline, a_id, "started", Some(&forged))
        .await;
    assert_eq!(
        resp.problem_code(),
        "authorization_invalid",
        "{}",
        resp.body
    );
    // …or by another key under CAB's key id.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = jsonwebtoken::decode_header(a_token).unwrap().kid;
    let forged = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_der(&[7u8; 32]),
    )
    .unwrap();
    let resp = app
        .report(&c.pipeline, a_id, "started", Some(&forged))
        .await;
    assert_eq!(
        resp.problem_code(),
        "authorization_invalid",
        "{}",
        resp.body
    );
    // Someone else reports on it.
    let resp = app
        .report(&c.erin.token, a_id, "started", Some(a_token))
        .await;
    assert_eq!(resp.problem_code(), "not_your_deployment");

    // The real one starts it; a replay is a conflict.
    let resp = app
        .report(&c.pipeline, a_id, "started", Some(a_token))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let resp = app
        .report(&c.pipeline, a_id, "started", Some(a_token))
        .await;
    assert_eq!(resp.status, StatusCode::CONFLICT, "{}", resp.body);
    // Illegal transitions are conflicts too.
    app.report(&c.pipeline, a_id, "failed", None).await;
    for to in ["rolled_back", "succeeded", "aborted", "started"] {
        let resp = app.report(&c.pipeline, a_id, to, None).await;
        assert_eq!(resp.status, StatusCode::CONFLICT, "{to}: {}", resp.body);
        assert_eq!(resp.problem_code(), "invalid_transition");
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn what_changed_since_the_authorization_stops_the_start(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let id = app.approved_change(&c.erin, &c.carol).await;
    app.promote_to_stage(&c.pipeline, &id).await;

    // A freeze declared after the authorization, in force now.
    let a = app
        .gate(&c.pipeline, request(&id, "prod", Some("rita")))
        .await
        .json();
    sqlx::query(
        "INSERT INTO freezes (id, starts_at, ends_at, reason, created_by, created_at)
         SELECT gen_random_uuid(), now(), now() + interval '1 hour', 'Incident 77', id, now() FROM users WHERE username = 'rita'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let dep = a["deployment"]["id"].as_str().unwrap();
    let resp = app
        .report(&c.pipeline, dep, "started", a["token"].as_str())
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert_eq!(reason_codes(&resp), ["freeze_in_force"]);
    let state: String = sqlx::query_scalar("SELECT state FROM deployments WHERE id = $1::uuid")
        .bind(dep)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(state, "aborted");
    sqlx::query("DELETE FROM freezes")
        .execute(&app.pool)
        .await
        .unwrap();

    // A material edit after the authorization.
    let a = app
        .gate(&c.pipeline, request(&id, "prod", Some("rita")))
        .await
        .json();
    let resp = app
        .api(
            Method::PATCH,
            &format!("/api/v1/changes/{id}"),
            Some(&c.erin.token),
            Some(json!({"rollback_plan": "Redeploy the previous image instead."})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let dep = a["deployment"]["id"].as_str().unwrap();
    let resp = app
        .report(&c.pipeline, dep, "started", a["token"].as_str())
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    let codes = reason_codes(&resp);
    assert!(codes.contains(&"revision_moved_on".to_owned()), "{codes:?}");
    assert!(
        codes.contains(&"change_not_approved".to_owned()),
        "{codes:?}"
    );

    // An authorization that ran out.
    let id2 = app.approved_change(&c.erin, &c.carol).await;
    app.promote_to_stage(&c.pipeline, &id2).await;
    let a = app
        .gate(&c.pipeline, request(&id2, "prod", Some("rita")))
        .await
        .json();
    let dep = a["deployment"]["id"].as_str().unwrap();
    sqlx::query(
        "UPDATE deployments SET expires_at = now() - interval '1 second' WHERE id = $1::uuid",
    )
    .bind(dep)
    .execute(&app.pool)
    .await
    .unwrap();
    let resp = app
        .report(&c.pipeline, dep, "started", a["token"].as_str())
        .await;
    assert_eq!(resp.status, StatusCode::CONFLICT, "{}", resp.body);
    assert_eq!(resp.problem_code(), "authorization_expired");
    // It no longer holds PROD: the gate authorizes again.
    let resp = app
        .gate(&c.pipeline, request(&id2, "prod", Some("rita")))
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn two_replicas_asked_at_once_authorize_exactly_one(pool: PgPool) {
    let first = TestApp::new(pool.clone()).await;
    let c = first.cast().await;
    let id = first.approved_change(&c.erin, &c.carol).await;
    first.promote_to_stage(&c.pipeline, &id).await;
    // A second server on the same database.
    let second = TestApp::new(pool).await;
    for _ in 0..3 {
        let (a, b) = tokio::join!(
            first.gate(&c.pipeline, request(&id, "prod", Some("rita"))),
            second.gate(&c.pipeline, request(&id, "prod", Some("rita"))),
        );
        let mut statuses = [a.status, b.status];
        statuses.sort();
        assert_eq!(statuses, [StatusCode::CREATED, StatusCode::FORBIDDEN]);
        let refused = if a.status == StatusCode::FORBIDDEN {
            a
        } else {
            b
        };
        assert_eq!(reason_codes(&refused), ["deployment_in_progress"]);
        sqlx::query("UPDATE deployments SET state = 'aborted' WHERE state = 'authorized'")
            .execute(&first.pool)
            .await
            .unwrap();
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_retried_gate_request_answers_as_the_first(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c = app.cast().await;
    let id = app.approved_change(&c.erin, &c.carol).await;
    let send = || async {
        let req = axum::http::Request::builder()
            .method(Method::POST)
            .uri("/api/v1/deployments")
            .header("authorization", format!("Bearer {}", c.pipeline))
            .header("content-type", "application/json")
            .header("idempotency-key", "run-4242-dev")
            .body(axum::body::Body::from(
                request(&id, "dev", None).to_string(),
            ))
            .unwrap();
        app.send(req).await
    };
    let a = send().await;
    let b = send().await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(b.status, StatusCode::CREATED, "{}", b.body);
    assert_eq!(b.header("idempotent-replayed"), Some("true"));
    assert_eq!(a.json()["token"], b.json()["token"]);
    assert_eq!(app.deployment_count().await, 1);
}
