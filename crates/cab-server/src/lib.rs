//! CAB's web server as a library: [`router`] builds the whole application
//! from an [`AppState`], [`serve`] runs it; the `cab` binary only parses the
//! command line (see [`cli`]).

pub mod accounts;
pub mod api;
pub mod assets;
pub mod audit_log;
pub mod audit_trail;
pub mod auth;
pub mod calendar;
pub mod change_list;
pub mod changes;
pub mod checkpoints;
pub mod cli;
pub mod config;
pub mod cookies;
pub mod crypto;
pub mod db;
pub mod decisions;
pub mod demo;
pub mod deployments;
pub mod error;
pub mod evidence;
pub mod exceptions;
pub mod freezes;
pub mod idempotency;
pub mod lifecycle;
pub mod log_limit;
pub mod metrics;
pub mod middleware;
pub mod ops;
pub mod page_error;
pub mod queues;
pub mod quorum;
pub mod refusal;
pub mod releases;
pub mod request;
pub mod reviews;
pub mod serve;
pub mod signin;
pub mod standard_templates;
pub mod state;
pub mod telemetry;
pub mod trail;
pub mod ui;
pub mod vocab;
pub mod votes;
pub mod words;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use state::AppState;

use crate::error::{ApiError, AppError};

/// The whole application: pages, API, operations endpoints and static assets.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = api::router();
    let openapi = Arc::new(openapi);
    // Off unless a metrics token is set: then `/metrics` is like any
    // unknown address.
    let metrics = if state.settings.metrics_token.is_some() {
        Router::new().route(telemetry::ROUTE, get(telemetry::metrics))
    } else {
        Router::new()
    };
    Router::new()
        .merge(ui::router())
        .merge(metrics)
        .merge(api::idempotency::guard(api, &openapi, &state))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route(
            "/api/openapi.json",
            get(move || {
                let doc = openapi.clone();
                async move { Json((*doc).clone()) }
            }),
        )
        .route("/static/{*path}", get(assets::serve))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::csrf_guard))
        .layer(axum::middleware::from_fn_with_state(state.clone(), db::health::fail_fast))
        // Outside the CSRF check and `fail_fast`, so that their refusals are
        // rendered as pages too.
        .layer(axum::middleware::from_fn_with_state(state.clone(), ui::error_pages))
        .layer(axum::middleware::from_fn_with_state(state.clone(), serve::request_timeouts))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::security_headers))
        .layer(axum::middleware::from_fn(request::scope_request_id))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let route = req
                        .extensions()
                        .get::<MatchedPath>()
                        .map(|m| m.as_str().to_owned())
                        .unwrap_or_default();
                    let request_id = req
                        .headers()
                        .get(request::REQUEST_ID_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    // A calendar feed's address is its secret: the log
                    // names the route instead.
                    let path = if route == calendar::FEED_ROUTE {
                        route.as_str()
                    } else {
                        req.uri().path()
                    };
                    tracing::info_span!("request", method = %req.method(), route, path = %path, request_id)
                })
                .on_request(())
                .on_response(|res: &Response, latency: Duration, _: &tracing::Span| {
                    // The one line per request; refusals are limited in a flood.
                    tracing::info!(
                        status = res.status().as_u16(),
                        latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
                        "answered"
                    );
                }),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        // Outermost: counts every answer, whichever layer gave it.
        .layer(axum::middleware::from_fn_with_state(state.clone(), telemetry::record))
        .with_state(state)
}

async fn not_found(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
) -> Response {
    if req.uri().path().starts_with("/api/") {
        ApiError(AppError::NotFound("route")).into_response()
    } else {
        ui::error_page(&state, None, AppError::NotFound("page"))
    }
}

/// Serves until `shutdown` completes, then lets requests in flight finish
/// within the default deadline; see [`serve::run`] for the timeouts and limits.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve::run(listener, state, serve::ServeOptions::default(), shutdown).await
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// Logging to stderr, as text or JSON lines; `RUST_LOG` filters. Colours
/// only on a terminal, and never when `NO_COLOR` is set: a log file or a
/// collector gets plain text. Repeated warnings and refusals are limited
/// (see [`log_limit`]), so a flood cannot fill the disk.
pub fn init_logging(format: config::LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::prelude::*;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let limit = log_limit::RepeatLimit::default();
    let output = tracing_subscriber::fmt::layer()
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let installed = match format {
        config::LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(
                output
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_filter(limit.clone()),
            )
            .try_init(),
        config::LogFormat::Text => tracing_subscriber::registry()
            .with(filter)
            .with(output.with_filter(limit.clone()))
            .try_init(),
    };
    if installed.is_ok() {
        limit.start_summaries();
    }
}
