//! Standard-change templates over the API.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use cab_domain::approval::VoteChoice;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::changes::{ChangeInput, blank_content};
use super::idempotency::IdempotencyKey;
use super::{ApiPath, AppJson};
use crate::auth::ApiUser;
use crate::error::{ApiResult, AppError, Problem};
use crate::request::Origin;
use crate::standard_templates::{self, TemplateView};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct TemplateVoteOut {
    who: String,
    roles: Vec<String>,
    vote: String,
    comment: String,
    at: DateTime<Utc>,
    superseded: bool,
}

#[derive(Serialize, ToSchema)]
pub struct TemplateOut {
    id: Uuid,
    name: String,
    /// proposed, approved or retired
    state: String,
    risk_level: String,
    proposed_by: String,
    title: String,
    description: String,
    category: String,
    /// What CAB approved it for: a change from it naming other services or
    /// environments (or a higher risk) is reviewed like any other change.
    services: Vec<String>,
    environments: Vec<String>,
    implementation_plan: String,
    test_plan: String,
    rollback_plan: String,
    created_at: DateTime<Utc>,
    approved_at: Option<DateTime<Utc>>,
    retired_at: Option<DateTime<Utc>>,
    votes: Vec<TemplateVoteOut>,
}

impl From<TemplateView> for TemplateOut {
    fn from(t: TemplateView) -> Self {
        TemplateOut {
            id: t.row.id,
            name: t.row.name,
            state: t.state.as_str().into(),
            risk_level: t.row.risk_level,
            proposed_by: t.row.proposer,
            title: t.content.title,
            description: t.content.description,
            category: t.content.category.as_str().into(),
            services: t.content.services,
            environments: t
                .content
                .environments
                .iter()
                .map(|e| e.as_str().to_owned())
                .collect(),
            implementation_plan: t.content.implementation_plan,
            test_plan: t.content.test_plan,
            rollback_plan: t.content.rollback_plan,
            created_at: t.row.created_at,
            approved_at: t.row.approved_at,
            retired_at: t.row.retired_at,
            votes: t
                .votes
                .into_iter()
                .map(|v| TemplateVoteOut {
                    who: v.voter_username,
                    roles: v.voter_roles,
                    vote: v.choice,
                    comment: v.comment,
                    at: v.created_at,
                    superseded: v.superseded_at.is_some(),
                })
                .collect(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposeTemplate {
    name: String,
    /// The routine change: its plans and (low) risk answers are fixed for
    /// every change made from the template.
    change: ChangeInput,
}

/// Standard-change templates, approved ones first.
#[utoipa::path(get, path = "/api/v1/templates", tag = "templates", responses((status = 200, body = Vec<TemplateOut>), (status = 401, body = Problem)))]
pub async fn list_templates(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
) -> ApiResult<Json<Vec<TemplateOut>>> {
    Ok(Json(
        standard_templates::list(&state.pool)
            .await?
            .into_iter()
            .map(TemplateOut::from)
            .collect(),
    ))
}

/// Propose a standard-change template (CAB members and administrators).
#[utoipa::path(
    post, path = "/api/v1/templates", tag = "templates",
    params(IdempotencyKey),
    request_body = ProposeTemplate,
    responses((status = 201, body = TemplateOut), (status = 403, body = Problem), (status = 422, body = Problem))
)]
pub async fn propose_template(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    AppJson(body): AppJson<ProposeTemplate>,
) -> ApiResult<(StatusCode, Json<TemplateOut>)> {
    let content = body.change.apply(blank_content())?;
    let t = standard_templates::propose(&state.pool, &user, &origin, &body.name, content).await?;
    Ok((StatusCode::CREATED, Json(t.into())))
}

/// One template, with CAB's votes on it.
#[utoipa::path(get, path = "/api/v1/templates/{id}", tag = "templates", params(("id" = Uuid, Path)), responses((status = 200, body = TemplateOut), (status = 404, body = Problem)))]
pub async fn get_template(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<TemplateOut>> {
    Ok(Json(
        standard_templates::load(&state.pool, id).await?.into(),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateVoteIo {
    /// approve, reject or request_changes
    vote: String,
    #[serde(default)]
    comment: String,
}

/// Vote on a proposed template (CAB members other than its proposer).
#[utoipa::path(
    post, path = "/api/v1/templates/{id}/votes", tag = "templates",
    params(("id" = Uuid, Path)),
    request_body = TemplateVoteIo,
    responses((status = 200, body = TemplateOut), (status = 403, body = Problem), (status = 422, body = Problem))
)]
pub async fn vote_template(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<Uuid>,
    AppJson(body): AppJson<TemplateVoteIo>,
) -> ApiResult<Json<TemplateOut>> {
    let choice = VoteChoice::parse(&body.vote)
        .ok_or_else(|| AppError::invalid("vote", "Choose approve, reject or request_changes."))?;
    Ok(Json(
        standard_templates::vote(&state.pool, &user, &origin, id, choice, &body.comment)
            .await?
            .into(),
    ))
}

/// Retire a template: no new changes can be made from it.
#[utoipa::path(post, path = "/api/v1/templates/{id}/retire", tag = "templates", params(("id" = Uuid, Path)), responses((status = 200, body = TemplateOut), (status = 403, body = Problem)))]
pub async fn retire_template(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<TemplateOut>> {
    Ok(Json(
        standard_templates::retire(&state.pool, &user, &origin, id)
            .await?
            .into(),
    ))
}
