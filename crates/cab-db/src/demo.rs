//! What `cab demo` needs to know about a database before it touches it:
//! whether it is empty, a finished demo board (and of which version), a
//! half-built one, or someone else's data. The database may not be CAB's at
//! all, so these statements are checked at run time, not at build time.

use sqlx::PgConnection;

#[derive(Debug, Clone, Default)]
pub struct Probe {
    /// CAB's accounts and audit trail exist.
    pub has_cab_tables: bool,
    /// Tables of anything else (migration bookkeeping aside).
    pub other_tables: usize,
    /// Every account's username (when CAB's tables exist).
    pub usernames: Vec<String>,
    /// The version recorded by the last `demo.seeded` event, if any.
    pub board_version: Option<i64>,
}

pub async fn probe(conn: &mut PgConnection) -> sqlx::Result<Probe> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
          WHERE table_schema = 'public' AND table_type = 'BASE TABLE'
            AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut *conn)
    .await?;
    let has_cab_tables = ["users", "audit_events"]
        .iter()
        .all(|t| tables.iter().any(|x| x == t));
    if !has_cab_tables {
        return Ok(Probe {
            other_tables: tables.len(),
            ..Probe::default()
        });
    }
    let usernames = sqlx::query_scalar("SELECT username FROM users ORDER BY username")
        .fetch_all(&mut *conn)
        .await?;
    let board_version: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT (payload->>'board')::bigint FROM audit_events
          WHERE action = 'demo.seeded' ORDER BY seq DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(Probe {
        has_cab_tables,
        other_tables: 0,
        usernames,
        board_version: board_version.flatten(),
    })
}

/// Backdates an authorization, as if it had been given at `at` (the demo
/// board shows one that ran out unused).
pub async fn age_authorization(
    conn: &mut PgConnection,
    deployment: uuid::Uuid,
    at: chrono::DateTime<chrono::Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE deployments SET authorized_at = $2, expires_at = $2 + interval '15 minutes', updated_at = $2
          WHERE id = $1 AND state = 'authorized'",
    )
    .bind(deployment)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
