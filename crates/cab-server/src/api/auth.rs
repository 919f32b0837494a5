//! Access tokens for people using the API.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppJson;
use crate::auth::ApiUser;
use crate::error::{ApiResult, Problem};
use crate::request::Origin;
use crate::signin::{self, SessionKind};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    username: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    access_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Seconds until the token expires.
    expires_in: i64,
}

/// Exchange a username and password for a short-lived access token.
#[utoipa::path(
    post, path = "/api/v1/auth/token", tag = "auth", security(),
    operation_id = "create_access_token",
    request_body = TokenRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "Wrong username or password", body = Problem),
        (status = 429, description = "Too many failed attempts, or a password check from this address is already under way; see Retry-After", body = Problem),
        (status = 503, description = "Too many sign-ins waiting to be checked, or the database is away; see Retry-After", body = Problem),
        (status = 422, description = "Malformed body", body = Problem),
    )
)]
// No `err` here: a refused sign-in is logged once, by its request line.
#[tracing::instrument(skip_all)]
pub async fn create_token(
    State(state): State<AppState>,
    origin: Origin,
    AppJson(body): AppJson<TokenRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let signed = signin::sign_in(
        &state,
        &body.username,
        body.password,
        &origin,
        SessionKind::Api,
    )
    .await?;
    let expires_in = (signed.expires_at - chrono::Utc::now())
        .num_seconds()
        .max(0);
    Ok(Json(TokenResponse {
        access_token: signed.token,
        token_type: "Bearer",
        expires_in,
    }))
}

/// End the session behind the caller's access token.
#[utoipa::path(
    post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = Problem))
)]
#[tracing::instrument(skip_all, err(level = "warn"))]
pub async fn logout(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
) -> ApiResult<StatusCode> {
    signin::sign_out(&state, &user, &origin).await?;
    Ok(StatusCode::NO_CONTENT)
}
