//! Readiness: the database answers and every migration has been applied.

use sqlx::PgConnection;

use crate::MIGRATOR;

/// Versions of embedded migrations not yet applied successfully.
pub async fn pending_migrations(conn: &mut PgConnection) -> sqlx::Result<Vec<i64>> {
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&mut *conn)
            .await
            .or_else(|e| match &e {
                // No migrations table yet: nothing is applied.
                sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => {
                    Ok(Vec::new())
                }
                _ => Err(e),
            })?;
    Ok(MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version))
        .map(|m| m.version)
        .collect())
}
