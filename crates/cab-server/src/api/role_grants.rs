//! Requests for guarded roles (decision roles and administrator), and their
//! confirmation by a second administrator: the two-person rule.

use axum::Json;
use axum::extract::State;
use cab_db::role_grants::RoleGrantLine;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::ApiPath;
use super::users::UserView;
use crate::accounts;
use crate::auth::ApiUser;
use crate::error::{ApiResult, Problem};
use crate::request::Origin;
use crate::state::AppState;

/// Where a request stands.
#[derive(Serialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RoleGrantState {
    /// Waiting for a second administrator.
    Pending,
    Confirmed,
    Cancelled,
}

#[derive(Serialize, ToSchema)]
pub struct RoleGrantView {
    id: Uuid,
    user_id: Uuid,
    username: String,
    /// The roles the request adds to the account's.
    roles: Vec<String>,
    state: RoleGrantState,
    /// The administrator who asked (username).
    requested_by: String,
    requested_at: DateTime<Utc>,
    /// The second administrator (username).
    #[serde(skip_serializing_if = "Option::is_none")]
    confirmed_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    confirmed_at: Option<DateTime<Utc>>,
    /// Who withdrew it; absent when a later request replaced it or the roles
    /// were set from the command line.
    #[serde(skip_serializing_if = "Option::is_none")]
    cancelled_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancelled_at: Option<DateTime<Utc>>,
}

impl RoleGrantView {
    pub(super) fn user_id(&self) -> Uuid {
        self.user_id
    }
}

impl From<RoleGrantLine> for RoleGrantView {
    fn from(g: RoleGrantLine) -> Self {
        let state = match (g.confirmed_at, g.cancelled_at) {
            (Some(_), _) => RoleGrantState::Confirmed,
            (None, Some(_)) => RoleGrantState::Cancelled,
            (None, None) => RoleGrantState::Pending,
        };
        RoleGrantView {
            id: g.id,
            user_id: g.user_id,
            username: g.username,
            roles: g.roles,
            state,
            requested_by: g.requested_by_username,
            requested_at: g.requested_at,
            confirmed_by: g.confirmed_by_username,
            confirmed_at: g.confirmed_at,
            cancelled_by: g.cancelled_by_username,
            cancelled_at: g.cancelled_at,
        }
    }
}

/// The account's open request, if any, as the API shows it.
pub(super) async fn open_for(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<Option<RoleGrantView>, sqlx::Error> {
    let lines = cab_db::role_grants::lines(conn, Some(user_id), 1).await?;
    Ok(lines
        .into_iter()
        .find(RoleGrantLine::is_open)
        .map(RoleGrantView::from))
}

/// Open role requests first, then the most recent settled ones
/// (administrators and auditors).
#[utoipa::path(
    get, path = "/api/v1/role-grants", tag = "users",
    responses((status = 200, body = Vec<RoleGrantView>), (status = 401, body = Problem), (status = 403, body = Problem))
)]
pub async fn list_role_grants(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
) -> ApiResult<Json<Vec<RoleGrantView>>> {
    let lines = accounts::role_grants(&state.pool, &user, &origin, None).await?;
    Ok(Json(lines.into_iter().map(RoleGrantView::from).collect()))
}

/// Confirm another administrator's request: the roles apply at once and the
/// account's sessions end.
#[utoipa::path(
    post, path = "/api/v1/role-grants/{id}/confirm", tag = "users",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The account with its new roles", body = UserView),
        (status = 403, description = "Not an administrator, the administrator who asked (`self_confirmation`), or the account's own holder (`own_roles`)", body = Problem),
        (status = 404, body = Problem),
        (status = 409, description = "Already confirmed or cancelled (`grant_closed`)", body = Problem),
    )
)]
#[tracing::instrument(skip_all, err(level = "warn"))]
pub async fn confirm_role_grant(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<UserView>> {
    let change = accounts::confirm_grant(&state.pool, &user, &origin, id).await?;
    Ok(Json(change.user.into()))
}

/// Withdraw an open role request; the account keeps the roles it holds.
#[utoipa::path(
    post, path = "/api/v1/role-grants/{id}/cancel", tag = "users",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = RoleGrantView),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "Already confirmed or cancelled (`grant_closed`)", body = Problem),
    )
)]
#[tracing::instrument(skip_all, err(level = "warn"))]
pub async fn cancel_role_grant(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<RoleGrantView>> {
    let grant = accounts::cancel_grant(&state.pool, &user, &origin, id).await?;
    let mut conn = state.pool.acquire().await?;
    let line = cab_db::role_grants::lines(&mut conn, Some(grant.user_id), accounts::RECENT_GRANTS)
        .await?
        .into_iter()
        .find(|g| g.id == grant.id)
        .ok_or(crate::error::AppError::NotFound("role request"))?;
    Ok(Json(line.into()))
}
