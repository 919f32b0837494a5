//! Figures for monitoring, read from the store so that every replica reports
//! the same ones.

use cab_domain::audit::{Attempt, AuditAction};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// The deployment gate's decisions recorded in the audit trail after an
/// event, and the last event counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GateDecisions {
    /// `deployment.authorized` events.
    pub authorized: i64,
    /// `access.denied` events whose attempt was `deployment.authorize`.
    pub refused: i64,
    /// The sequence number of the newest event read (`after` when there was
    /// none): pass it as `after` next time to count only what came since.
    pub through_seq: i64,
}

/// The gate's decisions among the audit events with `after < seq <= after +
/// span`, in one statement over the primary key. Writers append to the trail
/// one at a time and in sequence order, so the events visible to a statement
/// are always the first ones without a gap: counting on from `through_seq`
/// later neither misses nor repeats an event, and a `through_seq` below
/// `after + span` means every event recorded so far has been read.
pub async fn gate_decisions_after(
    conn: &mut PgConnection,
    after: i64,
    span: i64,
) -> sqlx::Result<GateDecisions> {
    let row = sqlx::query!(
        r#"SELECT count(*) FILTER (WHERE action = $3) AS "authorized!",
                  count(*) FILTER (WHERE action = $4 AND payload->>'attempted' = $5) AS "refused!",
                  coalesce(max(seq), $1) AS "through_seq!"
             FROM audit_events
            WHERE seq > $1 AND seq <= $1 + $2"#,
        after,
        span,
        AuditAction::DeploymentAuthorized.as_str(),
        AuditAction::AccessDenied.as_str(),
        Attempt::DeploymentAuthorize.as_str(),
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(GateDecisions {
        authorized: row.authorized,
        refused: row.refused,
        through_seq: row.through_seq,
    })
}

/// How many owed reviews are not yet signed off and were due before `now`.
pub async fn overdue_review_count(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM reviews
            WHERE required AND first_signed_off_at IS NULL AND due_at < $1"#,
        now
    )
    .fetch_one(&mut *conn)
    .await
}
