//! Server-side sessions behind browser cookies and API access tokens.

use chrono::{DateTime, Duration, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::users::UserRow;

pub const KIND_WEB: &str = "web";
pub const KIND_API: &str = "api";

pub async fn create(
    conn: &mut PgConnection,
    id: Uuid,
    user_id: Uuid,
    kind: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO sessions (id, user_id, kind, created_at, last_seen_at, expires_at)
         VALUES ($1, $2, $3, $4, $4, $5)",
        id,
        user_id,
        kind,
        now,
        expires_at
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What a session lookup found.
#[derive(Debug)]
pub enum Touch {
    /// Open; the activity is recorded.
    Active(UserRow),
    /// Open until now, but idle for longer than allowed: the caller ends it.
    Idle(UserRow),
    /// Ended, expired, unknown, or its user is disabled.
    Gone,
}

/// Looks up an open, unexpired session of an active user. Web sessions idle
/// for longer than `idle_timeout` come back as [`Touch::Idle`]. Records the
/// activity, at most once a minute, to keep reads cheap.
pub async fn touch(
    conn: &mut PgConnection,
    id: Uuid,
    kind: &str,
    now: DateTime<Utc>,
    idle_timeout: Duration,
) -> sqlx::Result<Touch> {
    let row = sqlx::query!(
        r#"SELECT s.last_seen_at,
                  u.id, u.username, u.display_name, u.password_hash, u.is_service, u.roles,
                  u.created_at, u.disabled_at
           FROM sessions s JOIN users u ON u.id = s.user_id
           WHERE s.id = $1 AND s.kind = $2 AND s.ended_at IS NULL AND s.expires_at > $3
             AND u.disabled_at IS NULL"#,
        id,
        kind,
        now
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(Touch::Gone);
    };
    let idle = kind == KIND_WEB && now - row.last_seen_at > idle_timeout;
    if !idle && now - row.last_seen_at > Duration::minutes(1) {
        sqlx::query!(
            "UPDATE sessions SET last_seen_at = $2 WHERE id = $1",
            id,
            now
        )
        .execute(&mut *conn)
        .await?;
    }
    let user = UserRow {
        id: row.id,
        username: row.username,
        display_name: row.display_name,
        password_hash: row.password_hash,
        is_service: row.is_service,
        roles: row.roles,
        created_at: row.created_at,
        disabled_at: row.disabled_at,
    };
    Ok(if idle {
        Touch::Idle(user)
    } else {
        Touch::Active(user)
    })
}

pub async fn end(
    conn: &mut PgConnection,
    id: Uuid,
    reason: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE sessions SET ended_at = $3, end_reason = $2 WHERE id = $1 AND ended_at IS NULL",
        id,
        reason,
        now
    )
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Ends every open session of a user; returns how many were open.
pub async fn end_all_for_user(
    conn: &mut PgConnection,
    user_id: Uuid,
    reason: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "UPDATE sessions SET ended_at = $3, end_reason = $2 WHERE user_id = $1 AND ended_at IS NULL",
        user_id,
        reason,
        now
    )
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}
