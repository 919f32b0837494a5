//! Cross-cutting request handling: CSRF checks and security headers.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::{LOGIN_COOKIE, SESSION_COOKIE, login_binding, session_binding};
use crate::cookies;
use crate::crypto::AUD_WEB;
use crate::error::{ApiError, AppError};
use crate::page_error::PageError;
use crate::state::AppState;

pub const CSRF_HEADER: &str = "x-csrf-token";
pub const CSRF_FIELD: &str = "_csrf";
const FORM_LIMIT: usize = 1024 * 1024;

/// Refuses every state-changing request that rides on a cookie unless it
/// carries the CSRF token bound to that cookie, in the `_csrf` form field or
/// the `X-CSRF-Token` header. Requests with an `Authorization` header carry no
/// ambient credential and need none.
pub async fn csrf_guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || req.headers().contains_key(header::AUTHORIZATION)
    {
        return next.run(req).await;
    }
    let is_api = req.uri().path().starts_with("/api/");
    let binding = if req.uri().path() == "/login" {
        cookies::get(req.headers(), LOGIN_COOKIE).map(login_binding)
    } else {
        cookies::get(req.headers(), SESSION_COOKIE)
            .and_then(|t| state.keys.verify(t, AUD_WEB))
            .map(|claims| session_binding(claims.sid))
    };
    let refuse = || {
        tracing::warn!("request refused: missing or invalid CSRF token");
        if is_api {
            ApiError(AppError::Csrf).into_response()
        } else {
            PageError(AppError::Csrf).into_response()
        }
    };
    let Some(binding) = binding else {
        if is_api {
            // No cookie credential: the handler answers 401 if one is needed.
            return next.run(req).await;
        }
        return refuse();
    };
    let header_token = req
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let (parts, body) = req.into_parts();
    let (presented, body) = match header_token {
        Some(t) => (Some(t), body),
        None if is_form => {
            let Ok(bytes) = to_bytes(body, FORM_LIMIT).await else {
                return refuse();
            };
            let token = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
                .ok()
                .and_then(|pairs| {
                    pairs
                        .into_iter()
                        .find(|(k, _)| k == CSRF_FIELD)
                        .map(|(_, v)| v)
                });
            (token, Body::from(bytes))
        }
        None => (None, body),
    };
    match presented {
        Some(token) if state.keys.csrf_matches(&binding, &token) => {
            next.run(Request::from_parts(parts, body)).await
        }
        _ => refuse(),
    }
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub async fn security_headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let is_static = req.uri().path().starts_with("/static/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let mut set = |name: &'static str, value: &'static str| {
        if !h.contains_key(name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    };
    set("content-security-policy", CSP);
    set("x-content-type-options", "nosniff");
    set("referrer-policy", "same-origin");
    set("x-frame-options", "DENY");
    set("cross-origin-opener-policy", "same-origin");
    if !is_static {
        // Pages and API answers carry personal data: keep them out of caches.
        set("cache-control", "no-store");
    }
    if state.settings.secure_cookies {
        set(
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        );
    }
    resp
}
