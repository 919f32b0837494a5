//! Administrators manage accounts, roles and service-account tokens.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use cab_db::api_tokens::ApiTokenRow;
use cab_db::users::UserRow;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::idempotency::IdempotencyKey;
use super::role_grants::{self, RoleGrantView};
use super::{ApiPath, AppJson};
use crate::accounts::{self, NewAccount, Operator};
use crate::auth::ApiUser;
use crate::error::{ApiResult, AppError, Problem};
use crate::request::Origin;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct UserView {
    id: Uuid,
    username: String,
    display_name: String,
    roles: Vec<String>,
    is_service: bool,
    active: bool,
    created_at: DateTime<Utc>,
    disabled_at: Option<DateTime<Utc>>,
    /// Roles requested for the account that a second administrator has yet
    /// to confirm; the account does not hold them until then.
    #[serde(skip_serializing_if = "Option::is_none")]
    awaiting_confirmation: Option<RoleGrantView>,
}

impl UserView {
    async fn with_open_request(mut self, state: &AppState) -> Result<Self, AppError> {
        let mut conn = state.pool.acquire().await?;
        self.awaiting_confirmation = role_grants::open_for(&mut conn, self.id).await?;
        Ok(self)
    }
}

impl From<UserRow> for UserView {
    fn from(u: UserRow) -> Self {
        UserView {
            active: u.is_active(),
            id: u.id,
            username: u.username,
            display_name: u.display_name,
            roles: u.roles,
            is_service: u.is_service,
            created_at: u.created_at,
            disabled_at: u.disabled_at,
            awaiting_confirmation: None,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    username: String,
    #[serde(default)]
    display_name: String,
    roles: Vec<String>,
    /// For people: at least 12 characters. Omit it to have one generated and
    /// returned once. Service accounts have none.
    password: Option<String>,
    /// A service account for a pipeline: no password, API tokens only.
    #[serde(default)]
    service_account: bool,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedUser {
    user: UserView,
    /// The generated password, shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    initial_password: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRoles {
    roles: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TokenView {
    id: Uuid,
    name: String,
    /// The token's first characters, to recognise it.
    prefix: String,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiTokenRow> for TokenView {
    fn from(t: ApiTokenRow) -> Self {
        TokenView {
            id: t.id,
            name: t.name,
            prefix: t.token_prefix,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// What uses the token, e.g. `deploy pipeline`.
    name: String,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    token: TokenView,
    /// The token itself, shown this once: only its hash is kept.
    secret: String,
}

async fn load_user(state: &AppState, id: Uuid) -> Result<UserRow, AppError> {
    let mut conn = state.pool.acquire().await?;
    cab_db::users::find_by_id(&mut conn, id)
        .await?
        .ok_or(AppError::NotFound("user"))
}

/// List every account.
#[utoipa::path(
    get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = Vec<UserView>), (status = 401, body = Problem), (status = 403, body = Problem))
)]
pub async fn list_users(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
) -> ApiResult<Json<Vec<UserView>>> {
    accounts::authorize_read(&state.pool, &user, &origin).await?;
    let mut conn = state.pool.acquire().await?;
    let users = cab_db::users::list(&mut conn).await?;
    let mut open: Vec<RoleGrantView> =
        cab_db::role_grants::lines(&mut conn, None, accounts::RECENT_GRANTS)
            .await?
            .into_iter()
            .filter(cab_db::role_grants::RoleGrantLine::is_open)
            .map(RoleGrantView::from)
            .collect();
    let views = users
        .into_iter()
        .map(|u| {
            let mut view = UserView::from(u);
            if let Some(i) = open.iter().position(|g| g.user_id() == view.id) {
                view.awaiting_confirmation = Some(open.swap_remove(i));
            }
            view
        })
        .collect();
    Ok(Json(views))
}

/// Create a person or a service account. A decision role or the
/// administrator role among `roles` is only requested: the account holds it
/// once a second administrator confirms (`user.awaiting_confirmation`).
#[utoipa::path(
    post, path = "/api/v1/users", tag = "users",
    params(IdempotencyKey),
    request_body = CreateUser,
    responses(
        (status = 201, body = CreatedUser),
        (status = 403, body = Problem), (status = 409, description = "Username taken", body = Problem),
        (status = 422, body = Problem),
    )
)]
#[tracing::instrument(skip_all, err(level = "warn"))]
pub async fn create_user(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    AppJson(body): AppJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<CreatedUser>)> {
    let created = accounts::create(
        &state.pool,
        &state.passwords,
        &Operator::User(&user),
        &origin,
        NewAccount {
            username: body.username,
            display_name: body.display_name,
            roles: body.roles,
            password: body.password,
            service: body.service_account,
        },
    )
    .await?;
    let user = UserView::from(created.user);
    let user = match created.pending {
        Some(_) => user.with_open_request(&state).await?,
        None => user,
    };
    Ok((
        StatusCode::CREATED,
        Json(CreatedUser {
            user,
            initial_password: created.generated_password,
        }),
    ))
}

/// An account as `create_user` answers with it, read back by its id, with
/// the password generated for it.
pub(super) async fn created_user(
    state: &AppState,
    id: Uuid,
    initial_password: Option<String>,
) -> Result<CreatedUser, AppError> {
    let user = UserView::from(load_user(state, id).await?)
        .with_open_request(state)
        .await?;
    Ok(CreatedUser {
        user,
        initial_password,
    })
}

/// One account.
#[utoipa::path(
    get, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = UserView), (status = 403, body = Problem), (status = 404, body = Problem))
)]
pub async fn get_user(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<UserView>> {
    accounts::authorize_read(&state.pool, &user, &origin).await?;
    let view = UserView::from(load_user(&state, id).await?);
    Ok(Json(view.with_open_request(&state).await?))
}

/// Replace an account's roles. Its sessions end at once. A decision role or
/// the administrator role it does not hold yet is only requested (202): it
/// holds once a second administrator confirms it; the rest applies at once.
#[utoipa::path(
    put, path = "/api/v1/users/{id}/roles", tag = "users",
    params(("id" = Uuid, Path)),
    request_body = SetRoles,
    responses(
        (status = 200, body = UserView),
        (status = 202, description = "Some roles await a second administrator's confirmation", body = UserView),
        (status = 403, description = "Not an administrator, own roles, or the last administrator", body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem),
    )
)]
#[tracing::instrument(skip_all, err(level = "warn"))]
pub async fn set_roles(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<Uuid>,
    AppJson(body): AppJson<SetRoles>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    let change = accounts::set_roles(
        &state.pool,
        &Operator::User(&user),
        &origin,
        id,
        &body.roles,
    )
    .await?;
    let view = UserView::from(change.user);
    Ok(match change.pending {
        Some(_) => (
            StatusCode::ACCEPTED,
            Json(view.with_open_request(&state).await?),
        ),
        None => (StatusCode::OK, Json(view)),
    })
}

/// Disable an account. Its sessions end and its API tokens stop working.
#[utoipa::path(
    post, path = "/api/v1/users/{id}/disable", tag = "users",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = UserView),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "Already disabled", body = Problem),
    )
)]
#[tracing::instrument(skip_all, err(level = "warn"))]
pub async fn disable_user(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<UserView>> {
    let updated = accounts::disable(&state.pool, &Operator::User(&user), &origin, id).await?;
    Ok(Json(updated.into()))
}

/// A service account's API tokens, with their last use.
#[utoipa::path(
    get, path = "/api/v1/users/{id}/tokens", tag = "users",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<TokenView>), (status = 403, body = Problem), (status = 404, body = Problem))
)]
pub async fn list_tokens(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Vec<TokenView>>> {
    accounts::authorize_read(&state.pool, &user, &origin).await?;
    load_user(&state, id).await?;
    let mut conn = state.pool.acquire().await?;
    let tokens = cab_db::api_tokens::list_for_user(&mut conn, id).await?;
    Ok(Json(tokens.into_iter().map(TokenView::from).collect()))
}

/// Issue an API token to a service account. The token is in this response only.
#[utoipa::path(
    post, path = "/api/v1/users/{id}/tokens", tag = "users",
    operation_id = "create_api_token",
    params(("id" = Uuid, Path), IdempotencyKey),
    request_body = CreateToken,
    responses(
        (status = 201, body = CreatedToken),
        (status = 403, description = "Not an administrator, or not a service account", body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem),
    )
)]
#[tracing::instrument(skip_all, err(level = "warn"))]
pub async fn create_token(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<Uuid>,
    AppJson(body): AppJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let issued =
        accounts::issue_token(&state.pool, &Operator::User(&user), &origin, id, &body.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: issued.token.into(),
            secret: issued.secret,
        }),
    ))
}

/// A token as `create_token` answers with it, read back by its id, with its
/// secret.
pub(super) async fn created_token(
    state: &AppState,
    id: Uuid,
    secret: String,
) -> Result<CreatedToken, AppError> {
    let mut conn = state.pool.acquire().await?;
    let token = cab_db::api_tokens::find(&mut conn, id)
        .await?
        .ok_or(AppError::NotFound("API token"))?;
    Ok(CreatedToken {
        token: token.into(),
        secret,
    })
}

/// Revoke a service account's API token; it stops working at once.
#[utoipa::path(
    delete, path = "/api/v1/users/{id}/tokens/{token_id}", tag = "users",
    params(("id" = Uuid, Path), ("token_id" = Uuid, Path)),
    responses((status = 200, body = TokenView), (status = 403, body = Problem), (status = 404, body = Problem))
)]
#[tracing::instrument(skip_all, err(level = "warn"))]
pub async fn revoke_token(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath((id, token_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<TokenView>> {
    let token =
        accounts::revoke_token(&state.pool, &Operator::User(&user), &origin, id, token_id).await?;
    Ok(Json(token.into()))
}
