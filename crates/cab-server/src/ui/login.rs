//! The login page and signing out.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use cab_domain::redirect;
use serde::Deserialize;

use super::{Layout, Viewer, cookie_attrs, expire_cookie, render};
use crate::auth::{self, LOGIN_COOKIE, SESSION_COOKIE, login_binding};
use crate::crypto::random_token;
use crate::error::AppError;
use crate::page_error::PageResult;
use crate::request::Origin;
use crate::signin::{self, SessionKind};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    username: String,
    next: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Only paths on this site (the grammar is in the domain), so the login
/// page cannot be used to send people elsewhere.
fn safe_next(next: Option<&str>) -> String {
    redirect::safe_next(next).to_owned()
}

/// The device cookie (see `signin::sign_in_from_device`): sent only to the
/// login page, never readable by scripts.
pub const DEVICE_COOKIE: &str = "cab_device";

fn device_cookie_header(state: &AppState, value: &str) -> String {
    let max_age = crate::crypto::DEVICE_COOKIE_LIFETIME.num_seconds();
    let secure = if state.settings.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{DEVICE_COOKIE}={value}; Max-Age={max_age}; Path=/login; HttpOnly; SameSite=Strict{secure}"
    )
}

fn login_page(
    state: &AppState,
    login_cookie: &str,
    username: String,
    next: String,
    error: Option<String>,
) -> Response {
    let csrf = state.keys.csrf_token(&login_binding(login_cookie));
    render(&LoginPage {
        layout: Layout::new(state, None, "/login", csrf).titled("Sign in"),
        username,
        next,
        error,
    })
}

pub async fn form(
    State(state): State<AppState>,
    Query(q): Query<NextQuery>,
    parts: Parts,
) -> PageResult {
    let next = safe_next(q.next.as_deref());
    match auth::authenticate(&parts, &state).await {
        Ok(Some(_)) => return Ok(Redirect::to(&next).into_response()),
        Ok(None) | Err(AppError::Unauthenticated(_)) => {}
        Err(e) => return Err(e.into()),
    }
    // The login form's CSRF token is bound to this cookie (no session yet).
    let (cookie, fresh) = match auth::cookie(&parts, LOGIN_COOKIE) {
        Some(c) if c.len() >= 22 => (c.to_owned(), false),
        _ => (random_token(24), true),
    };
    let mut resp = login_page(&state, &cookie, String::new(), next, None);
    let headers = resp.headers_mut();
    if fresh && let Ok(v) = format!("{LOGIN_COOKIE}={cookie}; {}", cookie_attrs(&state)).parse() {
        headers.append(header::SET_COOKIE, v);
    }
    if auth::cookie(&parts, SESSION_COOKIE).is_some()
        && let Ok(v) = expire_cookie(SESSION_COOKIE).parse()
    {
        headers.append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

pub async fn submit(
    State(state): State<AppState>,
    origin: Origin,
    parts: Parts,
    Form(f): Form<LoginForm>,
) -> PageResult {
    let next = safe_next(f.next.as_deref());
    let cookie = auth::cookie(&parts, LOGIN_COOKIE)
        .unwrap_or_default()
        .to_owned();
    let device = auth::cookie(&parts, DEVICE_COOKIE);
    let signed = signin::sign_in_from_device(
        &state,
        &f.username,
        f.password,
        &origin,
        SessionKind::Web,
        device,
    )
    .await;
    match signed {
        Ok(signed) => {
            let max_age = (signed.expires_at - chrono::Utc::now())
                .num_seconds()
                .max(0);
            let set = format!(
                "{SESSION_COOKIE}={}; Max-Age={max_age}; {}",
                signed.token,
                cookie_attrs(&state)
            );
            let mut resp = ([(header::SET_COOKIE, set)], Redirect::to(&next)).into_response();
            if let Some(device) = signed.device_cookie
                && let Ok(v) = device_cookie_header(&state, &device).parse()
            {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            Ok(resp)
        }
        // The form again, with the reason beside it and the username kept.
        Err(err @ (AppError::Unauthenticated(_) | AppError::Throttled { .. } | AppError::Busy)) => {
            let status = err.status();
            let retry = match &err {
                AppError::Throttled { retry_after } => Some(*retry_after),
                _ => None,
            };
            let mut resp = login_page(&state, &cookie, f.username, next, Some(err.detail()));
            *resp.status_mut() = status;
            if let AppError::Busy = err {
                resp.extensions_mut().insert(crate::error::Shed);
            }
            if let Some(secs) = retry
                && let Ok(v) = secs.to_string().parse()
            {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            Ok(resp)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn logout(viewer: Viewer, origin: Origin) -> PageResult {
    signin::sign_out(&viewer.state, &viewer.user, &origin).await?;
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, expire_cookie(SESSION_COOKIE)),
            (header::LOCATION, "/login".to_owned()),
        ],
    )
        .into_response())
}
