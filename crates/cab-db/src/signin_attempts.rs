//! Sign-in attempts, the facts behind login throttling: every attempt let
//! through to the password check, counted before the check is made (see
//! `cab_domain::throttle`).
//!
//! Letting an attempt through is a read and an insert; [`lock_account`] and
//! [`lock_address`] make them one step by serialising, until the transaction
//! ends, every admission for the same account and from the same address.

use chrono::{DateTime, Duration, Utc};
use sqlx::PgConnection;

/// How far back attempts are kept; longer than any lock lasts.
pub const RETENTION: Duration = Duration::hours(24);

/// Advisory lock classes (the first of the two keys), one per kind of budget.
const ACCOUNT_LOCK: i32 = 0x5349_4e01;
const ADDRESS_LOCK: i32 = 0x5349_4e02;

/// One attempt's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptId(i64);

/// Takes the address's admission lock, after the account's (always in that
/// order, so two admissions never wait on each other in a circle). Held
/// until the transaction ends. An attempt exempt from the address's budget
/// (a trusted device cookie) does not need it.
pub async fn lock_address(conn: &mut PgConnection, client_addr: &str) -> sqlx::Result<()> {
    sqlx::query_scalar!(
        r#"SELECT true AS "locked!" FROM pg_advisory_xact_lock($1, hashtext($2))"#,
        ADDRESS_LOCK,
        client_addr
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(())
}

/// Takes the account's admission lock, first when admitting an attempt, and
/// alone for settling one.
pub async fn lock_account(conn: &mut PgConnection, username: &str) -> sqlx::Result<()> {
    sqlx::query_scalar!(
        r#"SELECT true AS "locked!" FROM pg_advisory_xact_lock($1, hashtext($2))"#,
        ACCOUNT_LOCK,
        username
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(())
}

/// The start times of the attempts that count against an account: pending,
/// failed, and successes that overlapped other attempts.
pub async fn for_account(
    conn: &mut PgConnection,
    username: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<DateTime<Utc>>> {
    sqlx::query_scalar!(
        "SELECT started_at FROM signin_attempts
          WHERE username = $1 AND started_at > $2 ORDER BY started_at",
        username,
        now - RETENTION
    )
    .fetch_all(&mut *conn)
    .await
}

/// As [`for_account`], without the attempts still being checked.
pub async fn settled_for_account(
    conn: &mut PgConnection,
    username: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<DateTime<Utc>>> {
    sqlx::query_scalar!(
        "SELECT started_at FROM signin_attempts
          WHERE username = $1 AND started_at > $2 AND outcome <> 'pending'
          ORDER BY started_at",
        username,
        now - RETENTION
    )
    .fetch_all(&mut *conn)
    .await
}

/// The start times of the attempts from an address (any account) that have
/// failed or are still being checked.
pub async fn for_address(
    conn: &mut PgConnection,
    client_addr: &str,
    since: DateTime<Utc>,
) -> sqlx::Result<Vec<DateTime<Utc>>> {
    sqlx::query_scalar!(
        "SELECT started_at FROM signin_attempts
          WHERE client_addr = $1 AND started_at > $2 AND outcome <> 'succeeded'",
        client_addr,
        since
    )
    .fetch_all(&mut *conn)
    .await
}

/// The start times of the attempts made with a device cookie (see
/// `cab_domain::throttle::device_trusted`) that have failed or are still
/// being checked.
pub async fn for_device(
    conn: &mut PgConnection,
    device: &str,
    since: DateTime<Utc>,
) -> sqlx::Result<Vec<DateTime<Utc>>> {
    sqlx::query_scalar!(
        "SELECT started_at FROM signin_attempts
          WHERE device = $1 AND started_at > $2 AND outcome <> 'succeeded'",
        device,
        since
    )
    .fetch_all(&mut *conn)
    .await
}

/// How many attempts, on any account from any address, have failed or are
/// still being checked since `since`, counting no further than `up_to`.
pub async fn failures_everywhere(
    conn: &mut PgConnection,
    since: DateTime<Utc>,
    up_to: i64,
) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM (
             SELECT 1 FROM signin_attempts
              WHERE started_at > $1 AND outcome <> 'succeeded'
              LIMIT $2) recent"#,
        since,
        up_to
    )
    .fetch_one(&mut *conn)
    .await
}

/// Records an attempt let through to the password check; it counts as a
/// failure until settled. Attempts pending since before `pending_since` are
/// taken as abandoned. `device` is the identifier of a valid device cookie
/// presented with it. Call under [`lock_account`] (and [`lock_address`]
/// unless exempt from the address's budget).
pub async fn start(
    conn: &mut PgConnection,
    username: &str,
    client_addr: &str,
    device: Option<&str>,
    at: DateTime<Utc>,
    pending_since: DateTime<Utc>,
) -> sqlx::Result<AttemptId> {
    let id = sqlx::query_scalar!(
        "INSERT INTO signin_attempts
                (username, client_addr, device, started_at, outcome, overlapped)
         VALUES ($1, $2, $3, $4, 'pending', EXISTS (
             SELECT 1 FROM signin_attempts
              WHERE username = $1 AND outcome = 'pending' AND started_at > $5))
         RETURNING id",
        username,
        client_addr,
        device,
        at,
        pending_since
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(AttemptId(id))
}

/// Settles an attempt as failed, and prunes rows past [`RETENTION`].
pub async fn fail(
    conn: &mut PgConnection,
    attempt: AttemptId,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE signin_attempts SET outcome = 'failed' WHERE id = $1",
        attempt.0
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "DELETE FROM signin_attempts WHERE started_at < $1",
        now - RETENTION
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Whether any other attempt on the account overlapped this one: one was
/// pending when it was let through, one is pending now (since
/// `pending_since`), or one was let through after it. Call under
/// [`lock_account`].
pub async fn overlapped(
    conn: &mut PgConnection,
    username: &str,
    attempt: AttemptId,
    pending_since: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let overlapped = sqlx::query_scalar!(
        r#"SELECT COALESCE((SELECT overlapped FROM signin_attempts WHERE id = $2), true)
                  OR EXISTS (SELECT 1 FROM signin_attempts
                              WHERE username = $1 AND id <> $2
                                AND (id > $2 OR (outcome = 'pending' AND started_at > $3)))
                  AS "overlapped!""#,
        username,
        attempt.0,
        pending_since
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(overlapped)
}

/// Settles a success that overlapped nothing: the account's attempts settled
/// before it began are forgiven along with its own row. (An attempt left
/// pending by a crash is not forgiven; it leaves the window on its own.)
pub async fn forgive(
    conn: &mut PgConnection,
    username: &str,
    attempt: AttemptId,
) -> sqlx::Result<()> {
    sqlx::query!(
        "DELETE FROM signin_attempts
          WHERE username = $1 AND (id = $2 OR (id < $2 AND outcome <> 'pending'))",
        username,
        attempt.0
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Settles a success amid other attempts: it stays, and keeps counting.
pub async fn keep_success(conn: &mut PgConnection, attempt: AttemptId) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE signin_attempts SET outcome = 'succeeded' WHERE id = $1",
        attempt.0
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Removes an attempt whose password was never checked (the server could
/// not get to it): it is not a guess, so it does not count.
pub async fn withdraw(conn: &mut PgConnection, attempt: AttemptId) -> sqlx::Result<()> {
    sqlx::query!(
        "DELETE FROM signin_attempts WHERE id = $1 AND outcome = 'pending'",
        attempt.0
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}
