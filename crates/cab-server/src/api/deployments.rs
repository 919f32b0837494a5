//! The deployment gate and deployment records over the API.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use cab_db::deployments::{DeploymentFilter, DeploymentRow};
use cab_domain::deployment::DeploymentState;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::idempotency::IdempotencyKey;
use super::{ApiPath, AppJson};
use crate::auth::ApiUser;
use crate::crypto::deploy::Jwks;
use crate::deployments::{self, Commit, EnvironmentLabels, GateRequest, Report};
use crate::error::{ApiResult, AppError, Problem, Reason};
use crate::request::Origin;
use crate::state::AppState;

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactIo {
    /// What is deployed (an image or package name).
    name: String,
    #[serde(default)]
    version: String,
    /// `sha256:` and 64 lower-case hex digits: promotion order follows the
    /// digest, never a commit or a tag.
    digest: String,
}

#[derive(Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PipelineIo {
    /// github, gitlab, jenkins, …
    #[serde(default)]
    provider: String,
    #[serde(default)]
    run_id: String,
    #[serde(default)]
    url: String,
}

/// What a pipeline asks the gate.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GateIn {
    /// The change: CHG-12, 12, or its id.
    change: String,
    /// The change's revision being deployed.
    revision: i32,
    /// The environment's key (dev, test, stage, prod).
    environment: String,
    artifact: ArtifactIo,
    /// The services deployed; all the change's services when left out.
    #[serde(default)]
    services: Vec<String>,
    /// The person who started the pipeline's run (their username). Required
    /// when a service account deploys to production; CAB trusts the
    /// pipeline account to name them truthfully.
    #[serde(default)]
    initiator: Option<String>,
    #[serde(default)]
    pipeline: PipelineIo,
    /// A confirmed break-glass (BG-4) this production deployment uses: it
    /// waives the approval, the window and freezes, never the duties.
    #[serde(default)]
    break_glass: Option<String>,
    /// The commits the artifact carries (at most 1,000): lead time for
    /// changes starts at the first. Left out, it starts at submission.
    #[serde(default)]
    commits: Vec<CommitIo>,
}

/// A commit a deployment carries.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitIo {
    /// Its hash: 7 to 64 lower-case hex digits.
    sha: String,
    /// When it was made.
    committed_at: DateTime<Utc>,
}

impl GateIn {
    fn request(self) -> GateRequest {
        GateRequest {
            change: self.change,
            revision: self.revision,
            environment: self.environment,
            artifact_name: self.artifact.name,
            artifact_version: self.artifact.version,
            artifact_digest: self.artifact.digest,
            services: self.services,
            initiator: self.initiator,
            pipeline_provider: self.pipeline.provider,
            pipeline_run_id: self.pipeline.run_id,
            pipeline_url: self.pipeline.url,
            break_glass: self.break_glass,
            commits: self
                .commits
                .into_iter()
                .map(|c| Commit {
                    sha: c.sha,
                    committed_at: c.committed_at,
                })
                .collect(),
        }
    }
}

/// A deployment record.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct DeploymentOut {
    id: Uuid,
    /// DEP-<number>
    key: String,
    change_id: Uuid,
    /// CHG-<number>
    change: String,
    change_title: String,
    revision: i32,
    environment: String,
    /// The environment's label, as every page shows it.
    environment_label: String,
    production: bool,
    artifact: ArtifactIo,
    services: Vec<String>,
    /// The person it is deployed for.
    initiator: String,
    /// The account that runs it (the initiator, or a pipeline).
    executor: String,
    pipeline: PipelineIo,
    /// authorized, started, succeeded, failed, rolled_back, expired or aborted
    state: String,
    state_label: String,
    authorized_at: DateTime<Utc>,
    /// Until when the authorization may start the deployment.
    expires_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    rolled_back_at: Option<DateTime<Utc>>,
    note: String,
}

impl DeploymentOut {
    pub fn new(d: DeploymentRow, envs: &EnvironmentLabels) -> Self {
        let env = envs.get(&d.environment);
        let state_label = DeploymentState::parse(&d.state)
            .map(|s| s.label().to_owned())
            .unwrap_or_else(|| d.state.clone());
        DeploymentOut {
            id: d.id,
            key: format!("DEP-{}", d.number),
            change_id: d.change_id,
            change: cab_domain::change::ChangeKey(d.change_number).to_string(),
            change_title: d.change_title,
            revision: d.revision,
            environment_label: env
                .map(|e| e.rules.label.clone())
                .unwrap_or_else(|| d.environment.to_uppercase()),
            production: env.is_some_and(|e| e.rules.production),
            environment: d.environment,
            artifact: ArtifactIo {
                name: d.artifact_name,
                version: d.artifact_version,
                digest: d.artifact_digest,
            },
            services: d.services,
            initiator: d.initiator,
            executor: d.executor,
            pipeline: PipelineIo {
                provider: d.pipeline_provider,
                run_id: d.pipeline_run_id,
                url: d.pipeline_url,
            },
            state: d.state,
            state_label,
            authorized_at: d.authorized_at,
            expires_at: d.expires_at,
            started_at: d.started_at,
            finished_at: d.finished_at,
            rolled_back_at: d.rolled_back_at,
            note: d.note,
        }
    }
}

/// An authorization: the deployment and the signed token that starts it.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct AuthorizationOut {
    deployment: DeploymentOut,
    /// An EdDSA-signed JWS; check it with `cab gate verify` against
    /// `GET /api/v1/deployments/keys`, and pass it when reporting `started`.
    token: String,
    expires_at: DateTime<Utc>,
}

/// The answer of a dry run.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct VerdictOut {
    /// Whether the gate would authorize the deployment now.
    allowed: bool,
    /// Every reason it would not, each with its stable code.
    reasons: Vec<Reason>,
    /// Until when an authorization asked for now would hold.
    expires_at: Option<DateTime<Utc>>,
}

/// The answer to the same request to `POST /api/v1/deployments`, for an
/// authorization issued just now.
pub async fn authorization_out(
    state: &AppState,
    id: Uuid,
    token: String,
) -> Result<AuthorizationOut, AppError> {
    let d = deployments::load(&state.pool, id).await?;
    let envs = deployments::environment_labels(&state.pool).await?;
    let expires_at = d.expires_at;
    Ok(AuthorizationOut {
        deployment: DeploymentOut::new(d, &envs),
        token,
        expires_at,
    })
}

/// Ask the deployment gate. It authorizes the deployment and returns a
/// signed, short-lived token, or refuses (403) naming every reason in
/// `reasons`, each with a stable code. A refusal is recorded in the audit
/// trail.
#[utoipa::path(
    post, path = "/api/v1/deployments", tag = "deployments",
    params(IdempotencyKey),
    request_body = GateIn,
    responses(
        (status = 201, body = AuthorizationOut),
        (status = 403, body = Problem, description = "Refused; `reasons` names every reason"),
        (status = 404, body = Problem),
        (status = 422, body = Problem)
    )
)]
pub async fn request_deployment(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    AppJson(body): AppJson<GateIn>,
) -> ApiResult<(StatusCode, Json<AuthorizationOut>)> {
    let req = body.request();
    let a = deployments::authorize(&state.pool, &state.keys, &user, &origin, &req).await?;
    let envs = deployments::environment_labels(&state.pool).await?;
    let expires_at = a.deployment.expires_at;
    Ok((
        StatusCode::CREATED,
        Json(AuthorizationOut {
            deployment: DeploymentOut::new(a.deployment, &envs),
            token: a.token,
            expires_at,
        }),
    ))
}

/// Ask the gate what it would answer now, recording nothing.
#[utoipa::path(
    post, path = "/api/v1/deployments/dry-run", tag = "deployments",
    request_body = GateIn,
    responses((status = 200, body = VerdictOut), (status = 404, body = Problem), (status = 422, body = Problem))
)]
pub async fn dry_run(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    AppJson(body): AppJson<GateIn>,
) -> ApiResult<Json<VerdictOut>> {
    let v = deployments::dry_run(&state.pool, &user, &body.request()).await?;
    Ok(Json(VerdictOut {
        allowed: v.reasons.is_empty(),
        reasons: v.reasons.iter().map(Reason::from).collect(),
        expires_at: v.expires_at,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeploymentQuery {
    /// An environment's key.
    environment: Option<String>,
    /// A deployment state.
    state: Option<String>,
    /// A change: CHG-12, 12 or its id.
    change: Option<String>,
    /// A service's name.
    service: Option<String>,
    /// The next page: deployments numbered below this.
    before: Option<i64>,
    /// At most this many (1 to 200; 50 when left out).
    limit: Option<i64>,
}

/// Deployments, newest first, filtered.
#[utoipa::path(
    get, path = "/api/v1/deployments", tag = "deployments",
    params(DeploymentQuery),
    responses((status = 200, body = Vec<DeploymentOut>), (status = 401, body = Problem), (status = 422, body = Problem))
)]
pub async fn list_deployments(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
    query: Result<Query<DeploymentQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<DeploymentOut>>> {
    let Query(q) = query.map_err(|e| AppError::invalid("query", e.body_text()))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(AppError::invalid("limit", "Ask for 1 to 200 deployments at a time.").into());
    }
    if let Some(s) = &q.state
        && DeploymentState::parse(s).is_none()
    {
        return Err(AppError::invalid("state", "No such deployment state.").into());
    }
    let change_id = match &q.change {
        Some(c) => Some(crate::changes::resolve_id(&state.pool, c).await?),
        None => None,
    };
    let filter = DeploymentFilter {
        environment: q.environment,
        state: q.state,
        change_id,
        service: q.service,
        before: q.before,
    };
    let rows = deployments::list(&state.pool, &filter, limit).await?;
    let envs = deployments::environment_labels(&state.pool).await?;
    Ok(Json(
        rows.into_iter()
            .map(|d| DeploymentOut::new(d, &envs))
            .collect(),
    ))
}

/// One deployment (by id or DEP-<number>).
#[utoipa::path(
    get, path = "/api/v1/deployments/{id}", tag = "deployments",
    params(("id" = String, Path, description = "The deployment's id or DEP-<number>")),
    responses((status = 200, body = DeploymentOut), (status = 404, body = Problem))
)]
pub async fn get_deployment(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<DeploymentOut>> {
    let id = deployments::resolve_id(&state.pool, &id).await?;
    let d = deployments::load(&state.pool, id).await?;
    let envs = deployments::environment_labels(&state.pool).await?;
    Ok(Json(DeploymentOut::new(d, &envs)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventIn {
    /// started, succeeded, failed, rolled_back or aborted
    state: String,
    /// The authorization from the gate; required for `started`, which
    /// consumes it.
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    note: String,
}

/// Report what became of a deployment: `started` (with the gate's token,
/// which it consumes: the gate's rules are checked again, and a replay
/// answers 409), then `succeeded` or `failed`; a succeeded one may be
/// `rolled_back`; an authorized one not yet started may be `aborted`. A
/// transition the deployment cannot make answers 409. Reports are
/// idempotent: repeating the state a deployment is already in (other than
/// `started`, whose authorization is spent) answers 200 and changes nothing.
#[utoipa::path(
    post, path = "/api/v1/deployments/{id}/events", tag = "deployments",
    params(("id" = String, Path, description = "The deployment's id or DEP-<number>")),
    request_body = EventIn,
    responses(
        (status = 200, body = DeploymentOut),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 409, body = Problem),
        (status = 422, body = Problem)
    )
)]
pub async fn report_event(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<String>,
    AppJson(body): AppJson<EventIn>,
) -> ApiResult<Json<DeploymentOut>> {
    let id = deployments::resolve_id(&state.pool, &id).await?;
    let to = DeploymentState::parse(&body.state)
        .filter(|s| *s != DeploymentState::Authorized && *s != DeploymentState::Expired)
        .ok_or_else(|| {
            AppError::invalid(
                "state",
                "Report started, succeeded, failed, rolled_back or aborted.",
            )
        })?;
    let report = Report {
        state: to,
        token: body.token,
        note: body.note,
    };
    let d = deployments::report(&state.pool, &user, &origin, id, &report).await?;
    let envs = deployments::environment_labels(&state.pool).await?;
    Ok(Json(DeploymentOut::new(d, &envs)))
}

/// The public keys that sign deployment authorizations, as a JWK set (RFC
/// 8037, Ed25519). Retired keys stay listed. No sign-in needed.
#[utoipa::path(
    get, path = "/api/v1/deployments/keys", tag = "deployments",
    security(()),
    responses((status = 200, body = Jwks))
)]
pub async fn signing_keys(State(state): State<AppState>) -> ApiResult<Json<Jwks>> {
    Ok(Json(deployments::published_keys(&state.pool).await?))
}

/// An environment and its rules.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentIo {
    /// Its name in requests: 1 to 20 lower-case letters, digits or dashes.
    key: String,
    /// How every page shows it (PROD).
    label: String,
    /// Its place in the promotion order: a change goes from lower to higher.
    rank: i32,
    production: bool,
    /// Deploying here needs an approved change (every production
    /// environment does).
    needs_approval: bool,
    /// The same artifact must have succeeded in the environment below first.
    needs_promotion: bool,
    /// How long after that success it may come here.
    #[serde(default)]
    soak_minutes: i64,
    /// `#rrggbb`, the same on every page.
    colour: String,
}

impl From<deployments::Environment> for EnvironmentIo {
    fn from(e: deployments::Environment) -> Self {
        EnvironmentIo {
            key: e.rules.key,
            label: e.rules.label,
            rank: e.rules.rank,
            production: e.rules.production,
            needs_approval: e.rules.needs_approval,
            needs_promotion: e.rules.needs_promotion,
            soak_minutes: e.rules.soak.num_minutes(),
            colour: e.colour,
        }
    }
}

impl EnvironmentIo {
    fn into_environment(self) -> deployments::Environment {
        deployments::Environment {
            rules: cab_domain::deployment::EnvironmentRules {
                key: self.key.trim().to_owned(),
                label: self.label.trim().to_owned(),
                rank: self.rank,
                production: self.production,
                needs_approval: self.needs_approval,
                needs_promotion: self.needs_promotion,
                soak: chrono::Duration::minutes(self.soak_minutes.clamp(-1, 1_000_000)),
            },
            colour: self.colour.trim().to_lowercase(),
        }
    }
}

/// The environments, in promotion order.
#[utoipa::path(
    get, path = "/api/v1/environments", tag = "deployments",
    responses((status = 200, body = Vec<EnvironmentIo>), (status = 401, body = Problem))
)]
pub async fn list_environments(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
) -> ApiResult<Json<Vec<EnvironmentIo>>> {
    let mut conn = state.pool.acquire().await.map_err(AppError::from)?;
    Ok(Json(
        deployments::environments(&mut conn)
            .await?
            .into_iter()
            .map(EnvironmentIo::from)
            .collect(),
    ))
}

/// Replace the environments and their rules (administrators). An
/// environment with deployments on record cannot be removed. Audited.
#[utoipa::path(
    put, path = "/api/v1/environments", tag = "deployments",
    request_body = Vec<EnvironmentIo>,
    responses((status = 200, body = Vec<EnvironmentIo>), (status = 403, body = Problem), (status = 422, body = Problem))
)]
pub async fn put_environments(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    AppJson(body): AppJson<Vec<EnvironmentIo>>,
) -> ApiResult<Json<Vec<EnvironmentIo>>> {
    let wanted = body
        .into_iter()
        .map(EnvironmentIo::into_environment)
        .collect();
    Ok(Json(
        deployments::set_environments(&state.pool, &user, &origin, wanted)
            .await?
            .into_iter()
            .map(EnvironmentIo::from)
            .collect(),
    ))
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountEnvironments {
    /// The environments' keys; empty: nowhere.
    environments: Vec<String>,
}

/// Where a pipeline's service account may deploy (administrators). A
/// service account deploys nowhere until an administrator says where.
#[utoipa::path(
    put, path = "/api/v1/users/{id}/environments", tag = "users",
    params(("id" = Uuid, Path)),
    request_body = AccountEnvironments,
    responses((status = 200, body = AccountEnvironments), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem))
)]
pub async fn put_account_environments(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<Uuid>,
    AppJson(body): AppJson<AccountEnvironments>,
) -> ApiResult<Json<AccountEnvironments>> {
    let environments =
        deployments::set_account_environments(&state.pool, &user, &origin, id, &body.environments)
            .await?;
    Ok(Json(AccountEnvironments { environments }))
}

/// Where a pipeline's service account may deploy.
#[utoipa::path(
    get, path = "/api/v1/users/{id}/environments", tag = "users",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = AccountEnvironments), (status = 403, body = Problem))
)]
pub async fn get_account_environments(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<AccountEnvironments>> {
    crate::accounts::authorize_read(&state.pool, &user, &origin).await?;
    Ok(Json(AccountEnvironments {
        environments: deployments::account_environments(&state.pool, id).await?,
    }))
}
