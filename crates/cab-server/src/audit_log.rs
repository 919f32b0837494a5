//! Writing to the audit trail from handlers: the event for a change goes
//! through the change's own transaction; a refusal gets a transaction of its own.

use cab_db::audit::{AuditActor, NewAuditEvent};
use cab_domain::Denial;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};

use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::request::Origin;

/// The action recorded for every refused attempt; `payload.attempted` names
/// what was tried.
pub const ACCESS_DENIED: &str = "access.denied";

pub struct Entity<'a> {
    pub kind: &'a str,
    pub id: Option<String>,
}

impl<'a> Entity<'a> {
    pub fn new(kind: &'a str, id: impl ToString) -> Self {
        Entity {
            kind,
            id: Some(id.to_string()),
        }
    }

    pub fn kind(kind: &'a str) -> Self {
        Entity { kind, id: None }
    }
}

pub async fn record(
    conn: &mut PgConnection,
    actor: Option<AuditActor>,
    origin: &Origin,
    action: &str,
    entity: Entity<'_>,
    payload: Value,
) -> Result<i64, AppError> {
    Ok(cab_db::audit::append(conn, event(actor, origin, action, entity, payload)).await?)
}

/// [`record`] at the time `at`: the present for the services, a time of
/// the past only for the demo board, whose setup and history are recorded
/// as they happened (in time order, before anything of the present).
pub(crate) async fn record_at(
    conn: &mut PgConnection,
    at: DateTime<Utc>,
    actor: Option<AuditActor>,
    origin: &Origin,
    action: &str,
    entity: Entity<'_>,
    payload: Value,
) -> Result<i64, AppError> {
    Ok(cab_db::audit::append_at(conn, event(actor, origin, action, entity, payload), at).await?)
}

fn event(
    actor: Option<AuditActor>,
    origin: &Origin,
    action: &str,
    entity: Entity<'_>,
    payload: Value,
) -> NewAuditEvent {
    NewAuditEvent {
        actor,
        action: action.to_owned(),
        entity_type: entity.kind.to_owned(),
        entity_id: entity.id,
        payload,
        origin: origin.audit(),
    }
}

/// Whether `user` may read the audit trail; a refusal is recorded.
pub async fn check_reading(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
) -> Result<(), AppError> {
    let allowed = cab_domain::audit::check_read_trail(&user.actor());
    let entity = Entity::kind("audit");
    crate::refusal::checked(
        pool,
        user.audit_actor(),
        origin,
        "audit.read",
        entity,
        allowed,
    )
    .await
}

/// Records a refused attempt and returns the error to answer with: 409 for a
/// request that conflicts with the current state, 403 otherwise. Services
/// refuse through `refusal`, which calls this once their transaction is over.
pub(crate) async fn deny(
    pool: &PgPool,
    actor: Option<AuditActor>,
    origin: &Origin,
    attempted: &str,
    entity: Entity<'_>,
    denial: Denial,
) -> AppError {
    let payload = json!({
        "attempted": attempted,
        "reason": denial.code,
        "message": denial.message,
    });
    write_denied(pool, actor, origin, attempted, entity, payload).await;
    AppError::refused(denial)
}

/// Records an attempt refused for several reasons at once (the deployment
/// gate): one event naming the first as `reason` and all in `reasons`.
pub(crate) async fn deny_all(
    pool: &PgPool,
    actor: Option<AuditActor>,
    origin: &Origin,
    attempted: &str,
    entity: Entity<'_>,
    reasons: Vec<Denial>,
) -> AppError {
    let payload = json!({
        "attempted": attempted,
        "reason": reasons.first().map(|d| d.code),
        "message": reasons.iter().map(|d| d.message.as_str()).collect::<Vec<_>>().join(" "),
        "reasons": reasons.iter().map(|d| d.code).collect::<Vec<_>>(),
    });
    write_denied(pool, actor, origin, attempted, entity, payload).await;
    AppError::Refusals(reasons)
}

async fn write_denied(
    pool: &PgPool,
    actor: Option<AuditActor>,
    origin: &Origin,
    attempted: &str,
    entity: Entity<'_>,
    payload: serde_json::Value,
) {
    let written = async {
        let mut tx = pool.begin().await?;
        record(&mut tx, actor, origin, ACCESS_DENIED, entity, payload).await?;
        tx.commit().await?;
        Ok::<_, AppError>(())
    }
    .await;
    if let Err(e) = written {
        // The refusal stands even if it could not be recorded.
        tracing::error!(error = %e, attempted, "could not record a denied attempt");
    }
}
