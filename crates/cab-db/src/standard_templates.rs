//! Standard-change templates and CAB's votes on them.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct TemplateRow {
    pub id: Uuid,
    pub name: String,
    pub content: Value,
    pub risk_level: String,
    pub state: String,
    pub proposed_by: Uuid,
    pub proposer: String,
    pub created_at: DateTime<Utc>,
    pub approved_at: Option<DateTime<Utc>>,
    pub retired_at: Option<DateTime<Utc>>,
}

pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    name: &str,
    content: &Value,
    risk_level: &str,
    proposed_by: Uuid,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO standard_templates (id, name, content, risk_level, state, proposed_by, created_at)
         VALUES ($1, $2, $3, $4, 'proposed', $5, $6)",
        id,
        name,
        content,
        risk_level,
        proposed_by,
        at
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn find(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<TemplateRow>> {
    sqlx::query_as!(
        TemplateRow,
        r#"SELECT t.id, t.name, t.content, t.risk_level, t.state, t.proposed_by, u.username AS proposer,
                  t.created_at, t.approved_at, t.retired_at
           FROM standard_templates t JOIN users u ON u.id = t.proposed_by WHERE t.id = $1"#,
        id
    )
    .fetch_optional(&mut *conn)
    .await
}

/// Locks the template for the rest of the transaction.
pub async fn find_for_update(
    conn: &mut PgConnection,
    id: Uuid,
) -> sqlx::Result<Option<TemplateRow>> {
    sqlx::query_as!(
        TemplateRow,
        r#"SELECT t.id, t.name, t.content, t.risk_level, t.state, t.proposed_by, u.username AS proposer,
                  t.created_at, t.approved_at, t.retired_at
           FROM standard_templates t JOIN users u ON u.id = t.proposed_by WHERE t.id = $1 FOR UPDATE OF t"#,
        id
    )
    .fetch_optional(&mut *conn)
    .await
}

pub async fn list(conn: &mut PgConnection) -> sqlx::Result<Vec<TemplateRow>> {
    sqlx::query_as!(
        TemplateRow,
        r#"SELECT t.id, t.name, t.content, t.risk_level, t.state, t.proposed_by, u.username AS proposer,
                  t.created_at, t.approved_at, t.retired_at
           FROM standard_templates t JOIN users u ON u.id = t.proposed_by
           ORDER BY t.state = 'retired', t.name"#
    )
    .fetch_all(&mut *conn)
    .await
}

pub async fn set_state(
    conn: &mut PgConnection,
    id: Uuid,
    state: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE standard_templates SET state = $2,
                approved_at = CASE WHEN $2 = 'approved' THEN $3 ELSE approved_at END,
                retired_at = CASE WHEN $2 = 'retired' THEN $3 ELSE retired_at END
         WHERE id = $1",
        id,
        state,
        at
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct TemplateVoteRow {
    pub voter_id: Uuid,
    pub voter_username: String,
    pub voter_roles: Vec<String>,
    pub choice: String,
    pub comment: String,
    pub created_at: DateTime<Utc>,
    pub superseded_at: Option<DateTime<Utc>>,
}

pub struct NewTemplateVote<'a> {
    pub template_id: Uuid,
    pub voter_id: Uuid,
    pub voter_username: &'a str,
    pub voter_roles: &'a [String],
    pub choice: &'a str,
    pub comment: &'a str,
    pub at: DateTime<Utc>,
}

pub async fn insert_vote(conn: &mut PgConnection, v: &NewTemplateVote<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE template_votes SET superseded_at = $3 WHERE template_id = $1 AND voter_id = $2 AND superseded_at IS NULL",
        v.template_id,
        v.voter_id,
        v.at
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO template_votes (id, template_id, voter_id, voter_username, voter_roles, choice, comment, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        Uuid::new_v4(),
        v.template_id,
        v.voter_id,
        v.voter_username,
        v.voter_roles,
        v.choice,
        v.comment,
        v.at
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn votes(
    conn: &mut PgConnection,
    template_id: Uuid,
) -> sqlx::Result<Vec<TemplateVoteRow>> {
    sqlx::query_as!(
        TemplateVoteRow,
        "SELECT voter_id, voter_username, voter_roles, choice, comment, created_at, superseded_at
         FROM template_votes WHERE template_id = $1 ORDER BY created_at",
        template_id
    )
    .fetch_all(&mut *conn)
    .await
}

pub async fn set_change_template(
    conn: &mut PgConnection,
    change_id: Uuid,
    template_id: Uuid,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE changes SET template_id = $2 WHERE id = $1",
        change_id,
        template_id
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn template_of(conn: &mut PgConnection, change_id: Uuid) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!("SELECT template_id FROM changes WHERE id = $1", change_id)
        .fetch_one(&mut *conn)
        .await
}
