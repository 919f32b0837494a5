//! Requests for guarded roles, waiting for a second administrator's
//! confirmation (the two-person rule).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct RoleGrantRow {
    pub id: Uuid,
    pub user_id: Uuid,
    /// The roles the request adds.
    pub roles: Vec<String>,
    pub requested_by: Uuid,
    pub requested_at: DateTime<Utc>,
    pub confirmed_by: Option<Uuid>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub cancelled_by: Option<Uuid>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

impl RoleGrantRow {
    pub fn is_open(&self) -> bool {
        self.confirmed_at.is_none() && self.cancelled_at.is_none()
    }
}

/// A request with the names of the people it involves, for lists.
#[derive(Debug, Clone)]
pub struct RoleGrantLine {
    pub id: Uuid,
    pub user_id: Uuid,
    pub username: String,
    pub display_name: String,
    pub roles: Vec<String>,
    pub requested_by: Uuid,
    pub requested_by_username: String,
    pub requested_by_display_name: String,
    pub requested_at: DateTime<Utc>,
    pub confirmed_by_username: Option<String>,
    pub confirmed_by_display_name: Option<String>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub cancelled_by_username: Option<String>,
    pub cancelled_by_display_name: Option<String>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

impl RoleGrantLine {
    pub fn is_open(&self) -> bool {
        self.confirmed_at.is_none() && self.cancelled_at.is_none()
    }
}

pub struct NewRoleGrant<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub roles: &'a [String],
    pub requested_by: Uuid,
    pub requested_at: DateTime<Utc>,
}

/// Fails with a unique violation on `role_grants_one_open` when the account
/// has an open request already; callers close it first.
pub async fn insert(conn: &mut PgConnection, new: &NewRoleGrant<'_>) -> sqlx::Result<RoleGrantRow> {
    sqlx::query_as!(
        RoleGrantRow,
        r#"INSERT INTO role_grants (id, user_id, roles, requested_by, requested_at)
           VALUES ($1, $2, $3, $4, $5)
           RETURNING id, user_id, roles, requested_by, requested_at,
                     confirmed_by, confirmed_at, cancelled_by, cancelled_at"#,
        new.id,
        new.user_id,
        new.roles,
        new.requested_by,
        new.requested_at,
    )
    .fetch_one(&mut *conn)
    .await
}

pub async fn find(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<RoleGrantRow>> {
    sqlx::query_as!(
        RoleGrantRow,
        r#"SELECT id, user_id, roles, requested_by, requested_at,
                  confirmed_by, confirmed_at, cancelled_by, cancelled_at
           FROM role_grants WHERE id = $1"#,
        id
    )
    .fetch_optional(&mut *conn)
    .await
}

/// Locks the request for the rest of the transaction. Lock its account's
/// row first (as every role change does), so two administrators acting on
/// the same account take turns.
pub async fn find_for_update(
    conn: &mut PgConnection,
    id: Uuid,
) -> sqlx::Result<Option<RoleGrantRow>> {
    sqlx::query_as!(
        RoleGrantRow,
        r#"SELECT id, user_id, roles, requested_by, requested_at,
                  confirmed_by, confirmed_at, cancelled_by, cancelled_at
           FROM role_grants WHERE id = $1 FOR UPDATE"#,
        id
    )
    .fetch_optional(&mut *conn)
    .await
}

/// The account's open request, locked.
pub async fn open_for_user_for_update(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> sqlx::Result<Option<RoleGrantRow>> {
    sqlx::query_as!(
        RoleGrantRow,
        r#"SELECT id, user_id, roles, requested_by, requested_at,
                  confirmed_by, confirmed_at, cancelled_by, cancelled_at
           FROM role_grants
           WHERE user_id = $1 AND confirmed_at IS NULL AND cancelled_at IS NULL
           FOR UPDATE"#,
        user_id
    )
    .fetch_optional(&mut *conn)
    .await
}

/// Marks an open request confirmed; false when it was not open any more.
pub async fn confirm(
    conn: &mut PgConnection,
    id: Uuid,
    by: Uuid,
    at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        r#"UPDATE role_grants SET confirmed_by = $2, confirmed_at = $3
           WHERE id = $1 AND confirmed_at IS NULL AND cancelled_at IS NULL"#,
        id,
        by,
        at
    )
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks an open request cancelled (`by` is empty when a later request
/// replaced it or the command line settled the roles); false when it was not
/// open any more.
pub async fn cancel(
    conn: &mut PgConnection,
    id: Uuid,
    by: Option<Uuid>,
    at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        r#"UPDATE role_grants SET cancelled_by = $2, cancelled_at = $3
           WHERE id = $1 AND confirmed_at IS NULL AND cancelled_at IS NULL"#,
        id,
        by,
        at
    )
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Requests with names, open ones first, then the most recent; of one
/// account when `user_id` is given.
pub async fn lines(
    conn: &mut PgConnection,
    user_id: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<RoleGrantLine>> {
    sqlx::query_as!(
        RoleGrantLine,
        r#"SELECT g.id, g.user_id, u.username, u.display_name, g.roles,
                  g.requested_by, r.username AS requested_by_username,
                  r.display_name AS requested_by_display_name, g.requested_at,
                  c.username AS "confirmed_by_username?",
                  c.display_name AS "confirmed_by_display_name?", g.confirmed_at,
                  x.username AS "cancelled_by_username?",
                  x.display_name AS "cancelled_by_display_name?", g.cancelled_at
           FROM role_grants g
           JOIN users u ON u.id = g.user_id
           JOIN users r ON r.id = g.requested_by
           LEFT JOIN users c ON c.id = g.confirmed_by
           LEFT JOIN users x ON x.id = g.cancelled_by
           WHERE $1::uuid IS NULL OR g.user_id = $1
           ORDER BY (g.confirmed_at IS NULL AND g.cancelled_at IS NULL) DESC,
                    g.requested_at DESC, g.id
           LIMIT $2"#,
        user_id,
        limit
    )
    .fetch_all(&mut *conn)
    .await
}
