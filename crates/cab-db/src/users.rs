//! User accounts: people and service accounts.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub password_hash: Option<String>,
    pub is_service: bool,
    pub roles: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
}

impl UserRow {
    pub fn is_active(&self) -> bool {
        self.disabled_at.is_none()
    }
}

pub struct NewUser<'a> {
    pub id: Uuid,
    pub username: &'a str,
    pub display_name: &'a str,
    pub password_hash: Option<&'a str>,
    pub is_service: bool,
    pub roles: &'a [String],
    pub created_at: DateTime<Utc>,
}

/// Fails with a unique violation on `users_username_key` when the name is taken.
pub async fn insert(conn: &mut PgConnection, user: &NewUser<'_>) -> sqlx::Result<UserRow> {
    sqlx::query_as!(
        UserRow,
        r#"INSERT INTO users (id, username, display_name, password_hash, is_service, roles, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           RETURNING id, username, display_name, password_hash, is_service, roles, created_at, disabled_at"#,
        user.id,
        user.username,
        user.display_name,
        user.password_hash,
        user.is_service,
        user.roles,
        user.created_at,
    )
    .fetch_one(&mut *conn)
    .await
}

pub async fn find_by_username(
    conn: &mut PgConnection,
    username: &str,
) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as!(
        UserRow,
        r#"SELECT id, username, display_name, password_hash, is_service, roles, created_at, disabled_at
           FROM users WHERE username = $1"#,
        username
    )
    .fetch_optional(&mut *conn)
    .await
}

pub async fn find_by_id(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as!(
        UserRow,
        r#"SELECT id, username, display_name, password_hash, is_service, roles, created_at, disabled_at
           FROM users WHERE id = $1"#,
        id
    )
    .fetch_optional(&mut *conn)
    .await
}

/// Locks the row for the rest of the transaction, so concurrent role changes
/// and disables of the same account are applied one after the other.
pub async fn find_by_id_for_update(
    conn: &mut PgConnection,
    id: Uuid,
) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as!(
        UserRow,
        r#"SELECT id, username, display_name, password_hash, is_service, roles, created_at, disabled_at
           FROM users WHERE id = $1 FOR UPDATE"#,
        id
    )
    .fetch_optional(&mut *conn)
    .await
}

pub async fn list(conn: &mut PgConnection) -> sqlx::Result<Vec<UserRow>> {
    sqlx::query_as!(
        UserRow,
        r#"SELECT id, username, display_name, password_hash, is_service, roles, created_at, disabled_at
           FROM users ORDER BY is_service, username"#
    )
    .fetch_all(&mut *conn)
    .await
}

/// Active human administrators. Takes a lock on them, so two administrators
/// cannot demote each other at the same moment and leave none.
pub async fn count_active_admins_for_update(conn: &mut PgConnection) -> sqlx::Result<usize> {
    let ids = sqlx::query_scalar!(
        r#"SELECT id FROM users
           WHERE NOT is_service AND disabled_at IS NULL AND 'admin' = ANY(roles)
           FOR UPDATE"#
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(ids.len())
}

pub async fn set_roles(conn: &mut PgConnection, id: Uuid, roles: &[String]) -> sqlx::Result<()> {
    sqlx::query!("UPDATE users SET roles = $2 WHERE id = $1", id, roles)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn set_password_hash(conn: &mut PgConnection, id: Uuid, hash: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE users SET password_hash = $2 WHERE id = $1 AND NOT is_service",
        id,
        hash
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn disable(conn: &mut PgConnection, id: Uuid, at: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE users SET disabled_at = $2 WHERE id = $1 AND disabled_at IS NULL",
        id,
        at
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}
