//! Operations endpoints: liveness, readiness and the OpenAPI document.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::AppState;

/// The process is alive.
pub async fn healthz() -> Response {
    (StatusCode::OK, Json(json!({ "status": "ok" }))).into_response()
}

/// The database answers and every migration has been applied.
pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.db_health.is_down() {
        return unavailable();
    }
    let check = async {
        let mut conn = state.pool.acquire().await?;
        cab_db::health::pending_migrations(&mut conn).await
    };
    match tokio::time::timeout(Duration::from_secs(3), check).await {
        Ok(Ok(pending)) if pending.is_empty() => (StatusCode::OK, Json(json!({ "status": "ready" }))).into_response(),
        Ok(Ok(pending)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "detail": "migrations are not applied", "pending": pending })),
        )
            .into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            unavailable()
        }
        Err(_) => unavailable(),
    }
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "unavailable", "detail": "the database is unreachable" })),
    )
        .into_response()
}
