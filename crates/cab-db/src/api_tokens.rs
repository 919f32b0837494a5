//! Long-lived API tokens of service accounts, kept only as SHA-256 hashes.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::users::UserRow;

#[derive(Debug, Clone)]
pub struct ApiTokenRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub token_prefix: String,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<Uuid>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub struct NewApiToken<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: &'a str,
    pub token_hash: &'a [u8],
    pub token_prefix: &'a str,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<Uuid>,
}

pub async fn insert(conn: &mut PgConnection, t: &NewApiToken<'_>) -> sqlx::Result<ApiTokenRow> {
    sqlx::query_as!(
        ApiTokenRow,
        "INSERT INTO api_tokens (id, user_id, name, token_hash, token_prefix, created_at, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         RETURNING id, user_id, name, token_prefix, created_at, created_by, last_used_at, revoked_at",
        t.id,
        t.user_id,
        t.name,
        t.token_hash,
        t.token_prefix,
        t.created_at,
        t.created_by
    )
    .fetch_one(&mut *conn)
    .await
}

pub async fn list_for_user(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> sqlx::Result<Vec<ApiTokenRow>> {
    sqlx::query_as!(
        ApiTokenRow,
        "SELECT id, user_id, name, token_prefix, created_at, created_by, last_used_at, revoked_at
         FROM api_tokens WHERE user_id = $1 ORDER BY created_at DESC",
        user_id
    )
    .fetch_all(&mut *conn)
    .await
}

/// One token, by its id.
pub async fn find(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<ApiTokenRow>> {
    sqlx::query_as!(
        ApiTokenRow,
        "SELECT id, user_id, name, token_prefix, created_at, created_by, last_used_at, revoked_at
         FROM api_tokens WHERE id = $1",
        id
    )
    .fetch_optional(&mut *conn)
    .await
}

/// The active service account holding an unrevoked token with this hash,
/// recording the use.
pub async fn authenticate(
    conn: &mut PgConnection,
    token_hash: &[u8],
    now: DateTime<Utc>,
) -> sqlx::Result<Option<UserRow>> {
    let row = sqlx::query!(
        r#"UPDATE api_tokens t SET last_used_at = $2
           FROM users u
           WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND u.id = t.user_id
             AND u.disabled_at IS NULL AND u.is_service
           RETURNING u.id, u.username, u.display_name, u.password_hash, u.is_service, u.roles,
                     u.created_at, u.disabled_at"#,
        token_hash,
        now
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| UserRow {
        id: r.id,
        username: r.username,
        display_name: r.display_name,
        password_hash: r.password_hash,
        is_service: r.is_service,
        roles: r.roles,
        created_at: r.created_at,
        disabled_at: r.disabled_at,
    }))
}

/// Revokes a token of the given account; `None` if there is no such unrevoked token.
pub async fn revoke(
    conn: &mut PgConnection,
    user_id: Uuid,
    token_id: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<Option<ApiTokenRow>> {
    sqlx::query_as!(
        ApiTokenRow,
        "UPDATE api_tokens SET revoked_at = $3
         WHERE id = $2 AND user_id = $1 AND revoked_at IS NULL
         RETURNING id, user_id, name, token_prefix, created_at, created_by, last_used_at, revoked_at",
        user_id,
        token_id,
        now
    )
    .fetch_optional(&mut *conn)
    .await
}
