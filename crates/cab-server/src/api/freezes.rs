//! Freezes over the API: periods in which the deployment gate deploys
//! nothing they cover.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{ApiPath, AppJson};
use crate::auth::ApiUser;
use crate::deployments::{self, EnvironmentLabels};
use crate::error::{ApiResult, AppError, Problem};
use crate::freezes::{self, FreezeView, NewFreeze};
use crate::request::Origin;
use crate::state::AppState;

/// A freeze to declare.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FreezeIn {
    /// When it starts; now when left out. A start in the last few minutes
    /// is taken as now.
    #[serde(default)]
    starts_at: Option<DateTime<Utc>>,
    /// When it ends: after its start, in the future, at most a year on.
    #[serde(default)]
    ends_at: Option<DateTime<Utc>>,
    /// Why nothing may be deployed (10 to 500 characters). People the gate
    /// refuses read it.
    #[serde(default)]
    reason: String,
    /// The environments' keys; empty or left out: every environment.
    #[serde(default)]
    environments: Vec<String>,
    /// The services' names; empty or left out: every service.
    #[serde(default)]
    services: Vec<String>,
}

/// A freeze and where it stands.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct FreezeOut {
    id: Uuid,
    starts_at: DateTime<Utc>,
    /// When it ends, or ended: a lifted freeze ended when it was lifted.
    ends_at: DateTime<Utc>,
    reason: String,
    /// The environments' keys; empty: every environment.
    environments: Vec<String>,
    /// Their labels, as every page shows them.
    environment_labels: Vec<String>,
    all_environments: bool,
    /// The services' names; empty: every service.
    services: Vec<String>,
    all_services: bool,
    /// in_force, upcoming, lifted or ended
    status: String,
    status_label: String,
    /// Over: lifted, or past its end.
    past: bool,
    /// The username of who declared it.
    declared_by: String,
    declared_at: DateTime<Utc>,
    lifted_at: Option<DateTime<Utc>>,
    /// The username of who lifted it.
    lifted_by: Option<String>,
}

impl FreezeOut {
    fn new(f: FreezeView, envs: &EnvironmentLabels) -> Self {
        let l = f.line;
        FreezeOut {
            id: l.id,
            starts_at: l.starts_at,
            ends_at: l.ends_at,
            reason: l.reason,
            environment_labels: l
                .environments
                .iter()
                .map(|k| {
                    envs.get(k)
                        .map_or_else(|| k.to_uppercase(), |e| e.rules.label.clone())
                })
                .collect(),
            all_environments: l.environments.is_empty(),
            environments: l.environments,
            all_services: l.services.is_empty(),
            services: l.services,
            status: f.status.as_str().to_owned(),
            status_label: f.status.label().to_owned(),
            past: f.status.is_past(),
            declared_by: l.created_by,
            declared_at: l.created_at,
            lifted_at: l.lifted_at,
            lifted_by: l.lifted_by,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FreezeQuery {
    /// Also the freezes that ended or were lifted in the last 90 days
    /// (marked `past`).
    include_past: Option<bool>,
}

/// The freezes in force and to come, soonest first; with `include_past`,
/// then the recent ones that are over, latest first.
#[utoipa::path(
    get, path = "/api/v1/freezes", tag = "freezes",
    params(FreezeQuery),
    responses((status = 200, body = Vec<FreezeOut>), (status = 401, body = Problem), (status = 422, body = Problem))
)]
pub async fn list_freezes(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
    query: Result<Query<FreezeQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<FreezeOut>>> {
    let Query(q) = query.map_err(|e| AppError::invalid("query", e.body_text()))?;
    let list = freezes::list(&state.pool, q.include_past.unwrap_or(false)).await?;
    let envs = deployments::environment_labels(&state.pool).await?;
    Ok(Json(
        list.into_iter().map(|f| FreezeOut::new(f, &envs)).collect(),
    ))
}

/// Declare a freeze (release managers and administrators). While it is in
/// force the gate refuses every deployment it covers (`freeze_in_force`),
/// and an authorization given before it runs out when it starts. Audited;
/// a refusal is audited too.
#[utoipa::path(
    post, path = "/api/v1/freezes", tag = "freezes",
    params(super::idempotency::IdempotencyKey),
    request_body = FreezeIn,
    responses(
        (status = 201, body = FreezeOut),
        (status = 403, body = Problem),
        (status = 422, body = Problem, description = "`errors` names every field at fault")
    )
)]
pub async fn declare_freeze(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    AppJson(body): AppJson<FreezeIn>,
) -> ApiResult<(StatusCode, Json<FreezeOut>)> {
    let new = NewFreeze {
        starts_at: body.starts_at,
        ends_at: body.ends_at,
        reason: body.reason,
        environments: body.environments,
        services: body.services,
        unreadable: Vec::new(),
    };
    let f = freezes::declare(&state.pool, &user, &origin, new).await?;
    let envs = deployments::environment_labels(&state.pool).await?;
    Ok((StatusCode::CREATED, Json(FreezeOut::new(f, &envs))))
}

/// A freeze as the API shows it, for a retried request.
pub async fn freeze_out(state: &AppState, id: Uuid) -> Result<FreezeOut, AppError> {
    let f = freezes::find(&state.pool, id).await?;
    let envs = deployments::environment_labels(&state.pool).await?;
    Ok(FreezeOut::new(f, &envs))
}

/// One freeze.
#[utoipa::path(
    get, path = "/api/v1/freezes/{id}", tag = "freezes",
    params(("id" = Uuid, Path, description = "The freeze's id")),
    responses((status = 200, body = FreezeOut), (status = 404, body = Problem))
)]
pub async fn get_freeze(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<FreezeOut>> {
    let f = freezes::find(&state.pool, id).await?;
    let envs = deployments::environment_labels(&state.pool).await?;
    Ok(Json(FreezeOut::new(f, &envs)))
}

/// Lift a freeze in force or still to come (release managers and
/// administrators): it ends now. A freeze already lifted or over answers
/// 409 (`freeze_already_lifted`, `freeze_ended`). Audited; a refusal is
/// audited too.
#[utoipa::path(
    post, path = "/api/v1/freezes/{id}/lift", tag = "freezes",
    params(("id" = Uuid, Path, description = "The freeze's id")),
    responses(
        (status = 200, body = FreezeOut),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 409, body = Problem)
    )
)]
pub async fn lift_freeze(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<FreezeOut>> {
    let f = freezes::lift(&state.pool, &user, &origin, id).await?;
    let envs = deployments::environment_labels(&state.pool).await?;
    Ok(Json(FreezeOut::new(f, &envs)))
}
