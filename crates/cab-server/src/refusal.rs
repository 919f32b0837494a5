//! Decisions that cannot be made are refusals: a decision's transaction
//! waits a bounded time for its locks, and one that fails on the way is
//! recorded as refused, never answered as a server error.

use cab_domain::Denial;
use sqlx::PgPool;

use crate::audit_log::{self, Entity};
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::request::Origin;
use cab_db::audit::AuditActor;

/// The longest a decision waits for a lock another request holds on the
/// change (or template). Past it the decision is refused as
/// `policy_unavailable`, so a stuck lock cannot hold requests, or the
/// pool's connections, for long.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A decision's transaction: its lock waits are bounded by [`LOCK_WAIT`].
pub(crate) async fn begin_deciding(
    pool: &PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, AppError> {
    let mut tx = pool.begin().await?;
    cab_db::decisions::limit_lock_wait(&mut tx, LOCK_WAIT).await?;
    Ok(tx)
}

/// The refusal of a decision whose rules or records could not be read.
pub(crate) fn unavailable() -> Denial {
    Denial::new(
        "policy_unavailable",
        "The decision rules could not be checked just now, so nothing was recorded. Try again shortly.",
    )
}

/// Records the refusal a service returned as [`AppError::Refused`], once the
/// transaction it was found in has been given up (dropped, so rolled back
/// with the connection's return to the pool; the record is never rolled
/// back with it), and answers it. Every refusal of the services passes
/// here; other results pass through as they are.
pub(crate) async fn recorded<T>(
    pool: &PgPool,
    actor: AuditActor,
    origin: &Origin,
    attempted: &str,
    entity: Entity<'_>,
    done: Result<T, AppError>,
) -> Result<T, AppError> {
    match done {
        Err(AppError::Refused(d)) => {
            Err(audit_log::deny(pool, Some(actor), origin, attempted, entity, d).await)
        }
        other => other,
    }
}

/// Records the refusal in `allowed`, if it is one: a rule checked before
/// anything was opened.
pub(crate) async fn checked(
    pool: &PgPool,
    actor: AuditActor,
    origin: &Origin,
    attempted: &str,
    entity: Entity<'_>,
    allowed: Result<(), Denial>,
) -> Result<(), AppError> {
    let allowed = allowed.map_err(AppError::Refused);
    recorded(pool, actor, origin, attempted, entity, allowed).await
}

/// Ends `tx` (rolled back: what was refused writes nothing) and records the
/// refusal, for a service that finds it with a transaction open and knows
/// the entity only there.
pub(crate) async fn refuse_in(
    tx: sqlx::Transaction<'_, sqlx::Postgres>,
    pool: &PgPool,
    actor: AuditActor,
    origin: &Origin,
    attempted: &str,
    entity: Entity<'_>,
    denial: Denial,
) -> AppError {
    if let Err(e) = tx.rollback().await {
        tracing::warn!(error = %e, "rolling back a refused request failed");
    }
    refuse(pool, actor, origin, attempted, entity, denial).await
}

/// Records `denial`, found with nothing open, and returns the error to
/// answer with.
pub(crate) async fn refuse(
    pool: &PgPool,
    actor: AuditActor,
    origin: &Origin,
    attempted: &str,
    entity: Entity<'_>,
    denial: Denial,
) -> AppError {
    audit_log::deny(pool, Some(actor), origin, attempted, entity, denial).await
}

/// Records a refusal for several reasons at once (the deployment gate),
/// found with nothing open, and returns the error to answer with.
pub(crate) async fn refuse_all(
    pool: &PgPool,
    actor: AuditActor,
    origin: &Origin,
    attempted: &str,
    entity: Entity<'_>,
    reasons: Vec<Denial>,
) -> AppError {
    audit_log::deny_all(pool, Some(actor), origin, attempted, entity, reasons).await
}

/// A decision that failed on the way (the database, a lock not granted in
/// time, a record that cannot be read) decided nothing: it is a refusal,
/// recorded as `policy_unavailable` like one, never a server error.
/// Refusals are recorded ([`recorded`]); invalid input passes through.
pub(crate) async fn refused_if_failed<T>(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    attempted: &str,
    entity: Entity<'_>,
    done: Result<T, AppError>,
) -> Result<T, AppError> {
    let done = match done {
        Err(e @ (AppError::Internal(_) | AppError::Unavailable)) => {
            tracing::error!(error = %e, attempted, "a decision failed; refusing");
            Err(AppError::Refused(unavailable()))
        }
        other => other,
    };
    recorded(pool, user.audit_actor(), origin, attempted, entity, done).await
}
