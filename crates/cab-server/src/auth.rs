//! Who is calling. One function reads the Bearer header, then the session
//! cookie; an invalid credential is an error, never "anonymous".

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use cab_db::audit::AuditActor;
use cab_db::users::UserRow;
use cab_domain::Actor;
use cab_domain::{Role, RoleSet};
use chrono::Utc;
use uuid::Uuid;

use crate::cookies;
use crate::crypto::{API_TOKEN_PREFIX, AUD_API, AUD_WEB, api_token_hash};
use crate::error::{ApiError, AppError};
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "cab_session";
pub const LOGIN_COOKIE: &str = "cab_login";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Session cookie from the login page.
    Browser,
    /// Short-lived access token from `POST /api/v1/auth/token`.
    AccessToken,
    /// A service account's long-lived API token.
    ApiToken,
    /// Acting for an account from the command line (demo data).
    CommandLine,
}

#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub roles: RoleSet,
    pub is_service: bool,
    /// The server-side session, for cookies and access tokens.
    pub session: Option<Uuid>,
    pub via: Via,
}

impl CurrentUser {
    /// Acting as `row` from the command line, e.g. to seed demo data.
    pub fn command_line(row: UserRow) -> Result<Self, AppError> {
        Self::from_row(row, None, Via::CommandLine)
    }

    fn from_row(row: UserRow, session: Option<Uuid>, via: Via) -> Result<Self, AppError> {
        let roles = RoleSet::parse(&row.roles).map_err(|e| AppError::Internal(e.into()))?;
        Ok(Self {
            id: row.id,
            username: row.username,
            display_name: row.display_name,
            roles,
            is_service: row.is_service,
            session,
            via,
        })
    }

    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(role)
    }

    /// The actor as every rule sees them.
    pub fn actor(&self) -> Actor {
        Actor {
            id: self.id,
            roles: self.roles.clone(),
            is_service: self.is_service,
        }
    }

    pub fn audit_actor(&self) -> AuditActor {
        AuditActor {
            id: Some(self.id),
            username: self.username.clone(),
            roles: self.roles.names(),
        }
    }
}

/// A cookie's value from the request's `Cookie` headers (see [`cookies`]).
pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    cookies::get(&parts.headers, name)
}

/// What a session's CSRF token is bound to.
pub fn session_binding(sid: Uuid) -> String {
    format!("session:{sid}")
}

/// What the login form's CSRF token is bound to: the login cookie, since
/// there is no session yet.
pub fn login_binding(cookie: &str) -> String {
    format!("login:{cookie}")
}

/// The session's user if it is open; an idle web session is ended here,
/// with its audit event, and counts as gone.
async fn session_user(
    state: &AppState,
    sid: Uuid,
    kind: &str,
    now: chrono::DateTime<Utc>,
) -> Result<Option<UserRow>, AppError> {
    let mut conn = state.pool.acquire().await?;
    match cab_db::sessions::touch(&mut conn, sid, kind, now, state.settings.session_idle).await? {
        cab_db::sessions::Touch::Active(user) => Ok(Some(user)),
        cab_db::sessions::Touch::Gone => Ok(None),
        cab_db::sessions::Touch::Idle(user) => {
            drop(conn);
            let mut tx = state.pool.begin().await?;
            if cab_db::sessions::end(&mut tx, sid, "idle timeout", now).await? {
                crate::audit_log::record(
                    &mut tx,
                    Some(AuditActor {
                        id: Some(user.id),
                        username: user.username.clone(),
                        roles: user.roles.clone(),
                    }),
                    &crate::request::Origin::default(),
                    "auth.session_expired",
                    crate::audit_log::Entity::new("user", user.id),
                    serde_json::json!({ "session": sid, "reason": "idle timeout" }),
                )
                .await?;
            }
            tx.commit().await?;
            Ok(None)
        }
    }
}

/// The caller, `None` when no credential was presented at all.
pub async fn authenticate(
    parts: &Parts,
    state: &AppState,
) -> Result<Option<CurrentUser>, AppError> {
    let now = Utc::now();
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| AppError::Unauthenticated("The Authorization header is not readable."))?;
        let token = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .filter(|t| !t.is_empty())
            .ok_or(AppError::Unauthenticated(
                "The Authorization header must be 'Bearer <token>'.",
            ))?;
        if token.starts_with(API_TOKEN_PREFIX) {
            let mut conn = state.pool.acquire().await?;
            let user = cab_db::api_tokens::authenticate(&mut conn, &api_token_hash(token), now)
                .await?
                .ok_or(AppError::Unauthenticated(
                    "The API token is invalid or has been revoked.",
                ))?;
            return CurrentUser::from_row(user, None, Via::ApiToken).map(Some);
        }
        let claims = state
            .keys
            .verify(token, AUD_API)
            .ok_or(AppError::Unauthenticated(
                "The access token is invalid or has expired.",
            ))?;
        let user = session_user(state, claims.sid, cab_db::sessions::KIND_API, now)
            .await?
            .filter(|u| u.id == claims.sub)
            .ok_or(AppError::Unauthenticated(
                "The session behind this access token has ended.",
            ))?;
        return CurrentUser::from_row(user, Some(claims.sid), Via::AccessToken).map(Some);
    }
    if let Some(token) = cookie(parts, SESSION_COOKIE) {
        let claims = state
            .keys
            .verify(token, AUD_WEB)
            .ok_or(AppError::Unauthenticated(
                "Your session is invalid or has expired. Sign in again.",
            ))?;
        let user = session_user(state, claims.sid, cab_db::sessions::KIND_WEB, now)
            .await?
            .filter(|u| u.id == claims.sub)
            .ok_or(AppError::Unauthenticated(
                "Your session has ended. Sign in again.",
            ))?;
        return CurrentUser::from_row(user, Some(claims.sid), Via::Browser).map(Some);
    }
    Ok(None)
}

/// An authenticated API caller.
pub struct ApiUser(pub CurrentUser);

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match authenticate(parts, state).await? {
            Some(user) => Ok(ApiUser(user)),
            None => Err(AppError::Unauthenticated(
                "Authentication required: send 'Authorization: Bearer <token>'.",
            )
            .into()),
        }
    }
}
