//! Per-request context: the request id (also kept in a task-local so error
//! responses can quote it) and the client address, for logs and the audit trail.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use cab_db::audit::AuditOrigin;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled, when called inside one.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Makes the request id (set by `SetRequestIdLayer`) available to error responses.
pub async fn scope_request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    REQUEST_ID.scope(id, next.run(req)).await
}

/// Where a request came from, as recorded in the audit trail.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub request_id: Option<String>,
    pub client_addr: Option<String>,
}

impl Origin {
    pub fn from_parts(parts: &Parts) -> Self {
        Origin {
            request_id: parts
                .headers
                .get(REQUEST_ID_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            client_addr: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ci| ci.0.ip().to_string()),
        }
    }

    /// The command line: no request, no address.
    pub fn cli() -> Self {
        Origin::default()
    }

    /// The address throttling counts against.
    pub fn throttle_key(&self) -> String {
        self.client_addr.clone().unwrap_or_else(|| "unknown".into())
    }

    pub fn audit(&self) -> AuditOrigin {
        AuditOrigin {
            request_id: self.request_id.clone(),
            client_addr: self.client_addr.clone(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Origin::from_parts(parts))
    }
}
