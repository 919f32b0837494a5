//! Per-request context: the request id (also kept in a task-local so error
//! responses can quote it) and the client address, for logs and the audit trail.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use cab_db::audit::AuditOrigin;

use crate::state::AppState;

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

/// Where a request came from, as recorded in the audit trail, and the
/// Idempotency-Key a creating API request binds (see [`crate::idempotency`]).
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub request_id: Option<String>,
    pub client_addr: Option<String>,
    pub idempotency: Option<crate::idempotency::Claim>,
}

/// The client's address: the TCP peer, or, when the peer is one of our
/// reverse proxies, the nearest address in `X-Forwarded-For` that is not.
pub fn client_ip(parts: &Parts, trusted_proxies: &[IpAddr]) -> Option<IpAddr> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip())?;
    if !trusted_proxies.contains(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|a| !trusted_proxies.contains(a))
            .unwrap_or(peer),
    )
}

impl Origin {
    pub fn from_parts(parts: &Parts, trusted_proxies: &[IpAddr]) -> Self {
        Origin {
            request_id: parts
                .headers
                .get(REQUEST_ID_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            client_addr: client_ip(parts, trusted_proxies).map(|ip| ip.to_string()),
            idempotency: parts.extensions.get::<crate::idempotency::Claim>().cloned(),
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

impl FromRequestParts<AppState> for Origin {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Origin::from_parts(parts, &state.settings.trusted_proxies))
    }
}
