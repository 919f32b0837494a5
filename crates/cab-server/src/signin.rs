//! Signing in and out, for the login page and the token endpoint alike:
//! throttling, the password check, the session row and their audit events.

use cab_db::audit::AuditActor;
use cab_db::login_failures;
use cab_db::users::UserRow;
use cab_domain::throttle::{self, LoginGate};
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::audit_log::{self, Entity};
use crate::auth::CurrentUser;
use crate::crypto::{AUD_API, AUD_WEB};
use crate::error::AppError;
use crate::request::Origin;
use crate::state::AppState;

/// The one answer for a wrong username, a wrong password, a disabled account
/// and a service account: nothing tells them apart.
pub const INVALID_CREDENTIALS: &str = "Invalid username or password.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    Web,
    Api,
}

impl SessionKind {
    fn db(self) -> &'static str {
        match self {
            SessionKind::Web => cab_db::sessions::KIND_WEB,
            SessionKind::Api => cab_db::sessions::KIND_API,
        }
    }

    fn audience(self) -> &'static str {
        match self {
            SessionKind::Web => AUD_WEB,
            SessionKind::Api => AUD_API,
        }
    }
}

pub struct SignedIn {
    pub user: UserRow,
    /// The signed token naming the new session.
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

fn actor_of(user: &UserRow) -> AuditActor {
    AuditActor {
        id: Some(user.id),
        username: user.username.clone(),
        roles: user.roles.clone(),
    }
}

#[tracing::instrument(skip_all)]
pub async fn sign_in(
    state: &AppState,
    username: &str,
    password: String,
    origin: &Origin,
    kind: SessionKind,
) -> Result<SignedIn, AppError> {
    let username = username.trim().to_lowercase();
    let now = Utc::now();
    let addr = origin.throttle_key();
    let user = {
        let mut conn = state.pool.acquire().await?;
        let by_account = login_failures::for_account(&mut conn, &username, now).await?;
        let by_address =
            login_failures::for_address(&mut conn, &addr, now - throttle::WINDOW).await?;
        for gate in [
            throttle::account_gate(&by_account, now),
            throttle::address_gate(&by_address, now),
        ] {
            if let Some(retry_after) = gate.retry_after_secs() {
                tracing::warn!(retry_after, "sign-in refused while throttled");
                return Err(AppError::Throttled { retry_after });
            }
        }
        cab_db::users::find_by_username(&mut conn, &username).await?
    };
    let hash = user
        .as_ref()
        .filter(|u| u.is_active() && !u.is_service)
        .and_then(|u| u.password_hash.clone());
    let verified = state.passwords.verify(hash, password).await?;

    let mut tx = state.pool.begin().await?;
    match user {
        Some(user) if verified => {
            login_failures::clear_account(&mut tx, &username).await?;
            let session = Uuid::new_v4();
            let lifetime = match kind {
                SessionKind::Web => state.settings.session_max,
                SessionKind::Api => state.settings.access_token_ttl,
            };
            let expires_at = now + lifetime;
            cab_db::sessions::create(&mut tx, session, user.id, kind.db(), now, expires_at).await?;
            audit_log::record(
                &mut tx,
                Some(actor_of(&user)),
                origin,
                "auth.login_succeeded",
                Entity::new("user", user.id),
                json!({ "username": user.username, "session": session, "via": kind.db() }),
            )
            .await?;
            tx.commit().await?;
            let token = state
                .keys
                .sign(user.id, session, kind.audience(), now, expires_at)?;
            Ok(SignedIn {
                user,
                token,
                expires_at,
            })
        }
        user => {
            login_failures::record(&mut tx, &username, &addr, now).await?;
            audit_log::record(
                &mut tx,
                None,
                origin,
                "auth.login_failed",
                Entity {
                    kind: "user",
                    id: user.as_ref().map(|u| u.id.to_string()),
                },
                json!({ "username": username, "via": kind.db() }),
            )
            .await?;
            let failures = login_failures::for_account(&mut tx, &username, now).await?;
            if let LoginGate::Locked { .. } = throttle::account_gate(&failures, now) {
                let secs = throttle::account_gate(&failures, now).retry_after_secs();
                audit_log::record(
                    &mut tx,
                    None,
                    origin,
                    "auth.login_locked",
                    Entity {
                        kind: "user",
                        id: user.as_ref().map(|u| u.id.to_string()),
                    },
                    json!({ "username": username, "failures": failures.len(), "retry_after_seconds": secs }),
                )
                .await?;
            }
            tx.commit().await?;
            Err(AppError::Unauthenticated(INVALID_CREDENTIALS))
        }
    }
}

/// Ends the caller's session (cookie or access token).
pub async fn sign_out(
    state: &AppState,
    user: &CurrentUser,
    origin: &Origin,
) -> Result<(), AppError> {
    let Some(session) = user.session else {
        return Ok(());
    };
    let mut tx = state.pool.begin().await?;
    if cab_db::sessions::end(&mut tx, session, "signed out", Utc::now()).await? {
        audit_log::record(
            &mut tx,
            Some(user.audit_actor()),
            origin,
            "auth.logout",
            Entity::new("user", user.id),
            json!({ "session": session }),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
