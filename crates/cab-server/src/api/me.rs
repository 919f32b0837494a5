//! The caller's own identity.

use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::ApiUser;
use crate::error::Problem;

#[derive(Serialize, ToSchema)]
pub struct Me {
    id: Uuid,
    username: String,
    display_name: String,
    roles: Vec<String>,
    is_service: bool,
}

/// Who the caller is and which roles they hold.
#[utoipa::path(
    get, path = "/api/v1/me", tag = "auth",
    responses((status = 200, body = Me), (status = 401, body = Problem))
)]
pub async fn me(ApiUser(user): ApiUser) -> Json<Me> {
    Json(Me {
        id: user.id,
        username: user.username,
        display_name: user.display_name,
        roles: user.roles.names(),
        is_service: user.is_service,
    })
}
