//! Failed password checks, the facts behind login throttling.

use chrono::{DateTime, Duration, Utc};
use sqlx::PgConnection;

/// How far back failures are kept; longer than any lock lasts.
pub const RETENTION: Duration = Duration::hours(24);

pub async fn record(
    conn: &mut PgConnection,
    username: &str,
    client_addr: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO login_failures (username, client_addr, failed_at) VALUES ($1, $2, $3)",
        username,
        client_addr,
        at
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "DELETE FROM login_failures WHERE failed_at < $1",
        at - RETENTION
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn for_account(
    conn: &mut PgConnection,
    username: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<DateTime<Utc>>> {
    sqlx::query_scalar!(
        "SELECT failed_at FROM login_failures WHERE username = $1 AND failed_at > $2 ORDER BY failed_at",
        username,
        now - RETENTION
    )
    .fetch_all(&mut *conn)
    .await
}

pub async fn for_address(
    conn: &mut PgConnection,
    client_addr: &str,
    since: DateTime<Utc>,
) -> sqlx::Result<Vec<DateTime<Utc>>> {
    sqlx::query_scalar!(
        "SELECT failed_at FROM login_failures WHERE client_addr = $1 AND failed_at > $2",
        client_addr,
        since
    )
    .fetch_all(&mut *conn)
    .await
}

pub async fn clear_account(conn: &mut PgConnection, username: &str) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM login_failures WHERE username = $1", username)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
