//! Break-glass deployments and deployments nobody authorized, over the API.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use cab_db::exceptions::{BreakGlassRow, ObservedRow};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{ApiPath, AppJson};
use crate::auth::ApiUser;
use crate::error::{ApiResult, AppError, Problem};
use crate::exceptions::{self, BreakGlassAsk, Observation};
use crate::request::Origin;
use crate::state::AppState;

/// A release manager's request to deploy to production outside the usual
/// path.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassIn {
    /// The change: CHG-12, 12, or its id.
    change: String,
    /// A production environment's key.
    environment: String,
    /// Why it cannot wait: at least 30 characters.
    reason: String,
    /// The incident it answers.
    incident: String,
}

/// A break-glass request and what became of it.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct BreakGlassOut {
    id: Uuid,
    /// BG-<number>
    key: String,
    change_id: Uuid,
    /// CHG-<number>
    change: String,
    change_title: String,
    environment: String,
    /// The change's revision the two people agreed to deploy.
    revision: i32,
    /// The artifact they agreed to deploy.
    digest: String,
    reason: String,
    incident: String,
    requested_by: String,
    requested_at: DateTime<Utc>,
    confirmed_by: Option<String>,
    confirmed_at: Option<DateTime<Utc>>,
    /// Until when it waits for confirmation, or, once confirmed, until
    /// when it may authorize its deployment.
    expires_at: DateTime<Utc>,
    /// waiting, confirmed, used or expired
    status: String,
    /// DEP-<number> of the deployment it authorized.
    deployment: Option<String>,
}

impl BreakGlassOut {
    fn new(b: BreakGlassRow) -> Self {
        let status = exceptions::status(&b, Utc::now()).to_owned();
        BreakGlassOut {
            id: b.id,
            key: format!("BG-{}", b.number),
            change_id: b.change_id,
            change: cab_domain::change::ChangeKey(b.change_number).to_string(),
            change_title: b.change_title,
            environment: b.environment,
            revision: b.revision,
            digest: b.artifact_digest,
            reason: b.reason,
            incident: b.incident,
            requested_by: b.requester,
            requested_at: b.requested_at,
            confirmed_by: b.confirmer,
            confirmed_at: b.confirmed_at,
            expires_at: b.expires_at,
            status,
            deployment: b.deployment_number.map(|n| format!("DEP-{n}")),
        }
    }
}

/// Ask for a break-glass production deployment. A second person (a
/// release manager or CAB member who did not ask and never worked on the
/// change) confirms it within 30 minutes; it then holds for 60 minutes and
/// lets one deployment past the approval, the window and freezes, never
/// past the duties of a production deployment.
#[utoipa::path(
    post, path = "/api/v1/break-glass", tag = "deployments",
    params(super::idempotency::IdempotencyKey),
    request_body = BreakGlassIn,
    responses(
        (status = 201, body = BreakGlassOut),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 422, body = Problem)
    )
)]
pub async fn request_break_glass(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    AppJson(body): AppJson<BreakGlassIn>,
) -> ApiResult<(StatusCode, Json<BreakGlassOut>)> {
    let ask = BreakGlassAsk {
        change: body.change,
        environment: body.environment,
        reason: body.reason,
        incident: body.incident,
    };
    let row = exceptions::request_break_glass(&state.pool, &user, &origin, &ask).await?;
    Ok((StatusCode::CREATED, Json(BreakGlassOut::new(row))))
}

/// A break-glass request as the API shows it, for a retried request.
pub async fn break_glass_out(state: &AppState, id: Uuid) -> Result<BreakGlassOut, AppError> {
    Ok(BreakGlassOut::new(
        exceptions::break_glass(&state.pool, &id.to_string()).await?,
    ))
}

/// An observation as the API shows it, for a retried request.
pub async fn observed_out(state: &AppState, id: Uuid) -> Result<ObservedOut, AppError> {
    Ok(ObservedOut::new(
        exceptions::observation(&state.pool, id).await?,
    ))
}

/// Confirm a break-glass request, as the second person.
#[utoipa::path(
    post, path = "/api/v1/break-glass/{id}/confirm", tag = "deployments",
    params(("id" = String, Path, description = "BG-<number> or the id")),
    responses(
        (status = 200, body = BreakGlassOut),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 409, body = Problem, description = "Already confirmed, or no longer confirmable")
    )
)]
pub async fn confirm_break_glass(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<BreakGlassOut>> {
    let row = exceptions::confirm_break_glass(&state.pool, &user, &origin, &id).await?;
    Ok(Json(BreakGlassOut::new(row)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The next page: numbered below this.
    before: Option<i64>,
    /// At most this many (1 to 200; 50 when left out).
    limit: Option<i64>,
    /// Findings only: include resolved ones and covered observations too.
    #[serde(default)]
    all: bool,
}

fn limit(q: &PageQuery) -> Result<i64, AppError> {
    let limit = q.limit.unwrap_or(50);
    if (1..=200).contains(&limit) {
        Ok(limit)
    } else {
        Err(AppError::invalid("limit", "Ask for 1 to 200 at a time."))
    }
}

/// Every break-glass request, newest first: the exceptions to review.
#[utoipa::path(
    get, path = "/api/v1/break-glass", tag = "deployments",
    params(PageQuery),
    responses((status = 200, body = Vec<BreakGlassOut>), (status = 401, body = Problem))
)]
pub async fn list_break_glass(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<BreakGlassOut>>> {
    let Query(q) = query.map_err(|e| AppError::invalid("query", e.body_text()))?;
    let rows = exceptions::break_glass_list(&state.pool, q.before, limit(&q)?).await?;
    Ok(Json(rows.into_iter().map(BreakGlassOut::new).collect()))
}

/// One break-glass request.
#[utoipa::path(
    get, path = "/api/v1/break-glass/{id}", tag = "deployments",
    params(("id" = String, Path, description = "BG-<number> or the id")),
    responses((status = 200, body = BreakGlassOut), (status = 404, body = Problem))
)]
pub async fn get_break_glass(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<BreakGlassOut>> {
    let row = exceptions::break_glass(&state.pool, &id).await?;
    Ok(Json(BreakGlassOut::new(row)))
}

/// What a runtime or a webhook saw running.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ObservedIn {
    /// The environment's key.
    environment: String,
    service: String,
    /// `sha256:` and 64 lower-case hex digits.
    digest: String,
    /// Since when it runs; now when left out.
    #[serde(default)]
    observed_at: Option<DateTime<Utc>>,
}

/// An observation, and whether it is a finding.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ObservedOut {
    id: Uuid,
    /// OBS-<number>
    key: String,
    environment: String,
    service: String,
    digest: String,
    observed_at: DateTime<Utc>,
    reported_by: String,
    reported_at: DateTime<Utc>,
    /// DEP-<number> of the deployment that covers it, if one does.
    covered_by: Option<String>,
    /// Whether it runs in production with no authorized deployment behind it.
    finding: bool,
    resolved_at: Option<DateTime<Utc>>,
    resolved_by: Option<String>,
    resolution: String,
}

impl ObservedOut {
    fn new(o: ObservedRow) -> Self {
        ObservedOut {
            id: o.id,
            key: format!("OBS-{}", o.number),
            environment: o.environment,
            service: o.service,
            digest: o.artifact_digest,
            observed_at: o.observed_at,
            reported_by: o.reporter,
            reported_at: o.reported_at,
            covered_by: o.deployment_number.map(|n| format!("DEP-{n}")),
            finding: o.finding,
            resolved_at: o.resolved_at,
            resolved_by: o.resolver,
            resolution: o.resolution,
        }
    }
}

/// Report what runs where. In a production environment, anything no
/// started or succeeded deployment of the same digest covers becomes a
/// finding: audited, and shown to release managers, administrators and
/// auditors until someone resolves it.
#[utoipa::path(
    post, path = "/api/v1/deployments/observed", tag = "deployments",
    params(super::idempotency::IdempotencyKey),
    request_body = ObservedIn,
    responses(
        (status = 201, body = ObservedOut),
        (status = 403, body = Problem),
        (status = 422, body = Problem)
    )
)]
pub async fn observe(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    AppJson(body): AppJson<ObservedIn>,
) -> ApiResult<(StatusCode, Json<ObservedOut>)> {
    let o = Observation {
        environment: body.environment,
        service: body.service,
        digest: body.digest,
        observed_at: body.observed_at,
    };
    let row = exceptions::observe(&state.pool, &user, &origin, &o).await?;
    Ok((StatusCode::CREATED, Json(ObservedOut::new(row))))
}

/// Open findings, newest first (with `all=true`, every observation).
#[utoipa::path(
    get, path = "/api/v1/findings", tag = "deployments",
    params(PageQuery),
    responses((status = 200, body = Vec<ObservedOut>), (status = 401, body = Problem))
)]
pub async fn list_findings(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<ObservedOut>>> {
    let Query(q) = query.map_err(|e| AppError::invalid("query", e.body_text()))?;
    let rows = exceptions::observed(&state.pool, !q.all, q.before, limit(&q)?).await?;
    Ok(Json(rows.into_iter().map(ObservedOut::new).collect()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveIn {
    /// What it was, in 10 to 2,000 characters.
    resolution: String,
}

/// Resolve a finding, saying what it was.
#[utoipa::path(
    post, path = "/api/v1/findings/{id}/resolve", tag = "deployments",
    params(("id" = Uuid, Path, description = "The finding's id")),
    request_body = ResolveIn,
    responses(
        (status = 204),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 409, body = Problem)
    )
)]
pub async fn resolve_finding(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<Uuid>,
    AppJson(body): AppJson<ResolveIn>,
) -> ApiResult<StatusCode> {
    exceptions::resolve_finding(&state.pool, &user, &origin, id, &body.resolution).await?;
    Ok(StatusCode::NO_CONTENT)
}
