//! The measures of change over the API: the same figures the metrics page
//! draws, as JSON.

use axum::Json;
use axum::extract::{Query, State};
use chrono::Utc;

use crate::auth::ApiUser;
use crate::error::{ApiResult, AppError, Problem};
use crate::metrics::{self, MetricsQuery, Report};
use crate::state::AppState;

/// Deployment frequency, lead time for changes, change failure rate,
/// failed-deployment recovery time, the share of emergency and break-glass
/// changes, approval lead time by risk level and a data-quality line, per
/// week or month and for the whole period, computed from the records on
/// every request. Open to everyone signed in.
#[utoipa::path(
    get, path = "/api/v1/metrics", tag = "metrics",
    params(MetricsQuery),
    responses(
        (status = 200, body = Report),
        (status = 401, body = Problem),
        (status = 422, body = Problem, description = "`field` names the parameter at fault")
    )
)]
pub async fn get_metrics(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
    query: Result<Query<MetricsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Report>> {
    let Query(q) = query.map_err(|e| AppError::invalid("query", e.body_text()))?;
    let environments = metrics::environment_keys(&state.pool).await?;
    let selection = q.select(Utc::now().date_naive(), &environments)?;
    Ok(Json(
        metrics::report(&state.pool, &state.measures, &selection).await?,
    ))
}
