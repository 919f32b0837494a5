//! Change requests over the API: the same operations as the pages. The
//! handlers are here; what they read and write is in `dto`.

mod dto;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use cab_db::changes::CommentRow;
use cab_domain::change::ChangeAction;
use chrono::Utc;
use uuid::Uuid;

pub use self::dto::*;
use super::idempotency::IdempotencyKey;
use super::{ApiPath, AppJson};
use crate::auth::ApiUser;
use crate::change_list::{ListQuery, page};
use crate::changes;
use crate::error::{ApiError, ApiResult, AppError, Problem};
use crate::request::Origin;
use crate::state::AppState;

/// List change requests, filtered and sorted, a page at a time.
#[utoipa::path(
    get, path = "/api/v1/changes", tag = "changes",
    params(ListQuery),
    responses((status = 200, body = ChangePage), (status = 401, body = Problem), (status = 422, body = Problem))
)]
pub async fn list_changes(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<ChangePage>> {
    let Query(query) = query.map_err(|e| AppError::invalid("query", e.body_text()))?;
    let filter = query.filter(user.id)?;
    let (rows, next_cursor) = page(&state.pool, &filter, query.limit()).await?;
    Ok(Json(ChangePage::new(rows, next_cursor)))
}

/// File a new change request as a draft. The caller is its author.
#[utoipa::path(
    post, path = "/api/v1/changes", tag = "changes",
    params(IdempotencyKey),
    request_body = ChangeInput,
    responses(
        (status = 201, body = ChangeOut),
        (status = 403, description = "Not an engineer", body = Problem),
        (status = 422, description = "Invalid fields, each named", body = Problem),
    )
)]
#[tracing::instrument(skip_all, err(level = "warn"))]
pub async fn create_change(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    AppJson(mut body): AppJson<ChangeInput>,
) -> ApiResult<(StatusCode, Json<ChangeOut>)> {
    let template = body.template.take();
    let on_behalf_of = body.on_behalf_of.take();
    let content = body.apply(blank_content())?;
    let created = changes::create_for(
        &state.pool,
        &user,
        &origin,
        content,
        template,
        on_behalf_of.as_deref(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

async fn resolve(state: &AppState, raw: &str) -> Result<Uuid, ApiError> {
    Ok(changes::resolve_id(&state.pool, raw).await?)
}

/// One change request (by id or CHG-number).
#[utoipa::path(
    get, path = "/api/v1/changes/{id}", tag = "changes",
    params(("id" = String, Path, description = "UUID or CHG-<number>")),
    responses((status = 200, body = ChangeOut), (status = 404, body = Problem))
)]
pub async fn get_change(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ChangeOut>> {
    let id = resolve(&state, &id).await?;
    let change = ChangeOut::from(changes::load(&state.pool, id).await?);
    let closure = super::reviews::closure_of(&state, id).await?;
    Ok(Json(change.with_closure(closure)))
}

/// Edit a change. After submission every edit is a new revision.
#[utoipa::path(
    patch, path = "/api/v1/changes/{id}", tag = "changes",
    params(("id" = String, Path, description = "UUID or CHG-<number>")),
    request_body = ChangeInput,
    responses(
        (status = 200, body = ChangeOut),
        (status = 403, description = "Not the author or a contributor", body = Problem),
        (status = 409, description = "The change is closed", body = Problem),
        (status = 422, body = Problem),
    )
)]
#[tracing::instrument(skip_all, err(level = "warn"))]
pub async fn patch_change(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<String>,
    AppJson(body): AppJson<ChangeInput>,
) -> ApiResult<Json<ChangeOut>> {
    let id = resolve(&state, &id).await?;
    // Strangers are refused under the row lock, before the body is applied.
    Ok(Json(
        changes::edit_with(&state.pool, &user, &origin, id, |latest| body.apply(latest))
            .await?
            .into(),
    ))
}

async fn transition(
    state: AppState,
    origin: Origin,
    user: crate::auth::CurrentUser,
    id: String,
    action: ChangeAction,
    body: Bytes,
) -> ApiResult<Json<ChangeOut>> {
    let id = resolve(&state, &id).await?;
    let reason = reason_from(&body)?;
    Ok(Json(
        changes::transition(&state.pool, &user, &origin, id, action, reason)
            .await?
            .into(),
    ))
}

/// Submit a draft. Refused, naming each field, while it is incomplete.
#[utoipa::path(
    post, path = "/api/v1/changes/{id}/submit", tag = "changes",
    params(("id" = String, Path)),
    responses((status = 200, body = ChangeOut), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem))
)]
pub async fn submit_change(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<String>,
    body: Bytes,
) -> ApiResult<Json<ChangeOut>> {
    transition(state, origin, user, id, ChangeAction::Submit, body).await
}

/// Withdraw a change (its author or a contributor, before a decision).
#[utoipa::path(
    post, path = "/api/v1/changes/{id}/withdraw", tag = "changes",
    params(("id" = String, Path)),
    request_body(content = TransitionBody, description = "Optional"),
    responses((status = 200, body = ChangeOut), (status = 403, body = Problem), (status = 409, body = Problem))
)]
pub async fn withdraw_change(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<String>,
    body: Bytes,
) -> ApiResult<Json<ChangeOut>> {
    transition(state, origin, user, id, ChangeAction::Withdraw, body).await
}

/// Cancel a change (CAB members, release managers, administrators), with a reason.
#[utoipa::path(
    post, path = "/api/v1/changes/{id}/cancel", tag = "changes",
    params(("id" = String, Path)),
    request_body = TransitionBody,
    responses((status = 200, body = ChangeOut), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem))
)]
pub async fn cancel_change(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<String>,
    body: Bytes,
) -> ApiResult<Json<ChangeOut>> {
    transition(state, origin, user, id, ChangeAction::Cancel, body).await
}

/// The revisions of a submitted change, newest first.
#[utoipa::path(
    get, path = "/api/v1/changes/{id}/revisions", tag = "changes",
    params(("id" = String, Path)),
    responses((status = 200, body = Vec<RevisionOut>), (status = 404, body = Problem))
)]
pub async fn list_revisions(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<RevisionOut>>> {
    let id = resolve(&state, &id).await?;
    changes::load(&state.pool, id).await?;
    let mut conn = state.pool.acquire().await?;
    let revisions = cab_db::changes::revisions(&mut conn, id).await?;
    Ok(Json(revisions.into_iter().map(RevisionOut::from).collect()))
}

/// The discussion on a change, oldest first.
#[utoipa::path(
    get, path = "/api/v1/changes/{id}/comments", tag = "changes",
    params(("id" = String, Path)),
    responses((status = 200, body = Vec<CommentOut>), (status = 404, body = Problem))
)]
pub async fn list_comments(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<CommentOut>>> {
    let id = resolve(&state, &id).await?;
    changes::load(&state.pool, id).await?;
    let mut conn = state.pool.acquire().await?;
    let comments = cab_db::changes::comments(&mut conn, id).await?;
    Ok(Json(comments.into_iter().map(CommentOut::from).collect()))
}

/// A comment as `add_comment` answers with it, read back by its id.
pub(super) async fn comment_out(state: &AppState, id: Uuid) -> Result<CommentOut, AppError> {
    let mut conn = state.pool.acquire().await?;
    let c = cab_db::changes::comment(&mut conn, id)
        .await?
        .ok_or(AppError::NotFound("comment"))?;
    Ok(c.into())
}

/// Comment on a change.
#[utoipa::path(
    post, path = "/api/v1/changes/{id}/comments", tag = "changes",
    params(("id" = String, Path), IdempotencyKey),
    request_body = NewComment,
    responses((status = 201, body = CommentOut), (status = 404, body = Problem), (status = 422, body = Problem))
)]
pub async fn add_comment(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<String>,
    AppJson(body): AppJson<NewComment>,
) -> ApiResult<(StatusCode, Json<CommentOut>)> {
    let id = resolve(&state, &id).await?;
    let comment_id = changes::comment(&state.pool, &user, &origin, id, body.body())
        .await?
        .id;
    Ok((
        StatusCode::CREATED,
        Json(CommentOut::from(CommentRow {
            id: comment_id,
            author: user.username,
            body: body.body().trim().to_owned(),
            created_at: Utc::now(),
        })),
    ))
}
