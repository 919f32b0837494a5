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
use crate::crypto::{AUD_API, AUD_WEB, CheckTicket, HashError, Who, address_key};
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
    /// For the login page: a new device cookie for the browser (see
    /// [`sign_in_from_device`]).
    pub device_cookie: Option<String>,
}

fn actor_of(user: &UserRow) -> AuditActor {
    AuditActor {
        id: Some(user.id),
        username: user.username.clone(),
        roles: user.roles.clone(),
    }
}

/// How long a client whose previous attempt is still being checked is told
/// to wait.
const ONE_AT_A_TIME_RETRY_AFTER: i64 = 1;

/// Checks a username and password and opens a session.
///
/// The attempt is counted before the password is checked (see
/// `cab_domain::throttle`), and the work runs to its end even if the client
/// goes away, so an attempt let through is always settled.
pub async fn sign_in(
    state: &AppState,
    username: &str,
    password: String,
    origin: &Origin,
    kind: SessionKind,
) -> Result<SignedIn, AppError> {
    sign_in_from_device(state, username, password, origin, kind, None).await
}

/// As [`sign_in`], from a browser presenting `device_cookie`: if the server
/// issued it on an earlier sign-in as the same user, the attempt is queued as
/// that user's (ahead of strangers, not behind whoever else shares the
/// address) and is exempt from the address's lock while the cookie is
/// trusted (`cab_domain::throttle::device_trusted`). A successful web
/// sign-in hands back a new cookie.
#[tracing::instrument(name = "sign_in", skip_all)]
pub async fn sign_in_from_device(
    state: &AppState,
    username: &str,
    password: String,
    origin: &Origin,
    kind: SessionKind,
    device_cookie: Option<&str>,
) -> Result<SignedIn, AppError> {
    // A control character cannot be stored, nor be in any username: it is
    // replaced, so the attempt is counted and fails like any other.
    let username = cab_domain::text::replace_controls(username.trim()).to_lowercase();
    let device = device_cookie.and_then(|c| state.keys.device_id(c, &username, Utc::now()));
    // Decided before any other work: a client with a check under way, or a
    // queue full of others who rank as well, is turned away at once.
    let who = match device {
        Some(_) => Who::Device {
            username: username.clone(),
        },
        None => Who::Address {
            key: address_key(&origin.throttle_key()),
        },
    };
    let ticket = state.passwords.enter(who).map_err(|e| match e {
        HashError::OneAtATime => AppError::Throttled {
            retry_after: ONE_AT_A_TIME_RETRY_AFTER,
        },
        other => other.into(),
    })?;
    let attempt = check_and_settle(
        state.clone(),
        username,
        password,
        origin.clone(),
        kind,
        device,
        ticket,
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
    device: Option<String>,
    mut ticket: CheckTicket,
) -> Result<SignedIn, AppError> {
    let addr = origin.throttle_key();
    let (attempt, user) = match admit(&state, &username, &addr, device.as_deref()).await {
        Ok(admitted) => admitted,
        Err(e) => {
            // Refused while locked: it places the client further back too.
            if matches!(e, AppError::Throttled { .. }) {
                ticket.failed();
            }
            return Err(e);
        }
    };
    // The same work for an unknown, disabled or service account.
    let hash = user
        .as_ref()
        .filter(|u| u.is_active() && !u.is_service)
        .and_then(|u| u.password_hash.clone());
    let verified = match ticket.verify(hash, password).await {
        Ok(v) => v,
        Err(e) => {
            // No password was checked (no hashing slot came free, or the
            // place went to someone ranking better): the attempt is
            // withdrawn rather than left counting as a guess.
            drop(ticket);
            if let Ok(mut conn) = state.pool.acquire().await
                && let Err(w) = signin_attempts::withdraw(&mut conn, attempt).await
            {
                tracing::warn!(error = %w, "could not withdraw an unchecked sign-in attempt");
            }
            return Err(e.into());
        }
    };
    if !verified {
        ticket.failed();
    }
    // The client's turn ends with the check; writing the outcome is not
    // hashing work.
    drop(ticket);
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
            let device_cookie =
                (kind == SessionKind::Web).then(|| state.keys.device_cookie(username, now));
            Ok(SignedIn {
                user,
                token,
                expires_at,
                device_cookie,
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
/// while the account or the address is locked (the address's limit
/// tightened while the global budget is exceeded; a trusted device cookie
/// exempt from it). Deciding and counting happen under the account's and
/// (unless exempt) the address's admission locks, so parallel attempts are
/// admitted one at a time, each seeing those before it.
async fn admit(
    state: &AppState,
    username: &str,
    addr: &str,
    device: Option<&str>,
) -> Result<(AttemptId, Option<UserRow>), AppError> {
    let mut tx = state.pool.begin().await?;
    signin_attempts::lock_account(&mut tx, username).await?;
    let now = Utc::now();
    let since = now - throttle::WINDOW;
    let by_account = signin_attempts::for_account(&mut tx, username, now).await?;
    let mut gate = throttle::account_gate(&by_account, now);
    let trusted = match device {
        Some(d) => {
            throttle::device_trusted(&signin_attempts::for_device(&mut tx, d, since).await?, now)
        }
        None => false,
    };
    if gate == LoginGate::Open && !trusted {
        // A trusted device cookie does not wait on the address's lock, which
        // a flood from the same address keeps busy.
        signin_attempts::lock_address(&mut tx, addr).await?;
        let budget = i64::try_from(throttle::GLOBAL_FAILURES).unwrap_or(i64::MAX);
        let everywhere =
            signin_attempts::failures_everywhere(&mut tx, since, budget.saturating_add(1)).await?;
        let limit = throttle::address_failure_limit(usize::try_from(everywhere).unwrap_or(0));
        let by_address = signin_attempts::for_address(&mut tx, addr, since).await?;
        gate = throttle::address_gate(&by_address, limit, now);
    }
    if let Some(retry_after) = gate.retry_after_secs() {
        tx.rollback().await?;
        return Err(AppError::Throttled { retry_after });
    }
    // Recorded with the device even when no longer trusted, so that a
    // cookie that keeps failing stays untrusted.
    let attempt = signin_attempts::start(&mut tx, username, addr, device, now, since).await?;
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
