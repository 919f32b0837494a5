//! Signing in and out, for the login page and the token endpoint alike:
//! throttling, the password check, the session row and their audit events.

use cab_db::audit::AuditActor;
use cab_db::signin_attempts::{self, AttemptId};
use cab_db::users::UserRow;
use cab_domain::throttle::{self, LoginGate, SuccessSettlement};
use chrono::{DateTime, Utc};
use serde_json::json;
use tracing::Instrument;
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

/// Checks a username and password and opens a session.
///
/// The attempt is counted before the password is checked (see
/// `cab_domain::throttle`), and the work runs to its end even if the client
/// goes away, so an attempt let through is always settled.
#[tracing::instrument(skip_all)]
pub async fn sign_in(
    state: &AppState,
    username: &str,
    password: String,
    origin: &Origin,
    kind: SessionKind,
) -> Result<SignedIn, AppError> {
    let attempt = check_and_settle(
        state.clone(),
        // A control character cannot be stored, nor be in any username: it
        // is replaced, so the attempt is counted and fails like any other.
        cab_domain::text::replace_controls(username.trim()).to_lowercase(),
        password,
        origin.clone(),
        kind,
    );
    tokio::spawn(attempt.instrument(tracing::Span::current()))
        .await
        .map_err(anyhow::Error::from)?
}

async fn check_and_settle(
    state: AppState,
    username: String,
    password: String,
    origin: Origin,
    kind: SessionKind,
) -> Result<SignedIn, AppError> {
    let addr = origin.throttle_key();
    let (attempt, user) = admit(&state, &username, &addr).await?;
    // The same work for an unknown, disabled or service account.
    let hash = user
        .as_ref()
        .filter(|u| u.is_active() && !u.is_service)
        .and_then(|u| u.password_hash.clone());
    let verified = match state.passwords.verify(hash, password).await {
        Ok(v) => v,
        Err(e) => {
            // No password was checked (no hashing slot came free): the
            // attempt is withdrawn rather than left counting as a guess.
            if let Ok(mut conn) = state.pool.acquire().await
                && let Err(w) = signin_attempts::withdraw(&mut conn, attempt).await
            {
                tracing::warn!(error = %w, "could not withdraw an unchecked sign-in attempt");
            }
            return Err(e.into());
        }
    };
    let settled = settle(&state, &username, attempt, user, verified, &origin, kind).await;
    if settled.is_err() {
        // The password was checked but the outcome could not be written:
        // the attempt counts as a failure rather than staying pending.
        if let Ok(mut conn) = state.pool.acquire().await
            && let Err(w) = signin_attempts::fail(&mut conn, attempt, Utc::now()).await
        {
            tracing::warn!(error = %w, "could not settle a sign-in attempt");
        }
    }
    settled
}

/// Writes the outcome of a checked attempt: a session, or a counted failure.
async fn settle(
    state: &AppState,
    username: &str,
    attempt: AttemptId,
    user: Option<UserRow>,
    verified: bool,
    origin: &Origin,
    kind: SessionKind,
) -> Result<SignedIn, AppError> {
    let now = Utc::now();
    let mut tx = state.pool.begin().await?;
    signin_attempts::lock_account(&mut tx, username).await?;
    match user {
        Some(user) if verified => {
            let overlapped =
                signin_attempts::overlapped(&mut tx, username, attempt, now - throttle::WINDOW)
                    .await?;
            match throttle::settle_success(overlapped) {
                SuccessSettlement::Forgives => {
                    signin_attempts::forgive(&mut tx, username, attempt).await?;
                }
                SuccessSettlement::Counts => {
                    signin_attempts::keep_success(&mut tx, attempt).await?;
                }
            }
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
            let before = signin_attempts::settled_for_account(&mut tx, username, now).await?;
            signin_attempts::fail(&mut tx, attempt, now).await?;
            let after = signin_attempts::settled_for_account(&mut tx, username, now).await?;
            let entity = || Entity {
                kind: "user",
                id: user.as_ref().map(|u| u.id.to_string()),
            };
            audit_log::record(
                &mut tx,
                None,
                origin,
                "auth.login_failed",
                entity(),
                json!({ "username": username, "via": kind.db() }),
            )
            .await?;
            // Reported once, by the failure that brings the lock about.
            if throttle::account_gate(&before, now) == LoginGate::Open
                && let Some(secs) = throttle::account_gate(&after, now).retry_after_secs()
            {
                audit_log::record(
                    &mut tx,
                    None,
                    origin,
                    "auth.login_locked",
                    entity(),
                    json!({ "username": username, "failures": after.len(), "retry_after_seconds": secs }),
                )
                .await?;
            }
            tx.commit().await?;
            Err(AppError::Unauthenticated(INVALID_CREDENTIALS))
        }
    }
}

/// Lets an attempt through to the password check, counting it, or refuses it
/// while the account or the address is locked. Deciding and counting happen
/// under the account's and the address's admission locks, so parallel
/// attempts are admitted one at a time, each seeing those before it.
async fn admit(
    state: &AppState,
    username: &str,
    addr: &str,
) -> Result<(AttemptId, Option<UserRow>), AppError> {
    let mut tx = state.pool.begin().await?;
    signin_attempts::lock(&mut tx, username, addr).await?;
    let now = Utc::now();
    let by_account = signin_attempts::for_account(&mut tx, username, now).await?;
    let by_address = signin_attempts::for_address(&mut tx, addr, now - throttle::WINDOW).await?;
    for gate in [
        throttle::account_gate(&by_account, now),
        throttle::address_gate(&by_address, now),
    ] {
        if let Some(retry_after) = gate.retry_after_secs() {
            tx.rollback().await?;
            tracing::warn!(retry_after, "sign-in refused while throttled");
            return Err(AppError::Throttled { retry_after });
        }
    }
    let attempt =
        signin_attempts::start(&mut tx, username, addr, now, now - throttle::WINDOW).await?;
    let user = cab_db::users::find_by_username(&mut tx, username).await?;
    tx.commit().await?;
    Ok((attempt, user))
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
