//! Assessments, votes and decisions on changes, and the quorum setting.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct AssessmentRow {
    pub id: Uuid,
    pub revision: i32,
    pub assessor_id: Uuid,
    pub assessor_username: String,
    pub assessor_roles: Vec<String>,
    pub content: Value,
    pub decision: String,
    pub assessed_level: String,
    pub lowers_risk: bool,
    pub created_at: DateTime<Utc>,
    pub superseded_at: Option<DateTime<Utc>>,
}

pub struct NewAssessment<'a> {
    pub id: Uuid,
    pub change_id: Uuid,
    pub revision: i32,
    pub assessor_id: Uuid,
    pub assessor_username: &'a str,
    pub assessor_roles: &'a [String],
    pub content: &'a Value,
    pub decision: &'a str,
    pub assessed_level: &'a str,
    pub lowers_risk: bool,
    pub at: DateTime<Utc>,
}

/// Records an assessment; every earlier one of the change is superseded.
pub async fn insert_assessment(conn: &mut PgConnection, a: &NewAssessment<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE change_assessments SET superseded_at = $2 WHERE change_id = $1 AND superseded_at IS NULL",
        a.change_id,
        a.at
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO change_assessments (id, change_id, revision, assessor_id, assessor_username, assessor_roles,
                                         content, decision, assessed_level, lowers_risk, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        a.id,
        a.change_id,
        a.revision,
        a.assessor_id,
        a.assessor_username,
        a.assessor_roles,
        a.content,
        a.decision,
        a.assessed_level,
        a.lowers_risk,
        a.at
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Every assessment of a change, oldest first, superseded ones included.
pub async fn assessments(
    conn: &mut PgConnection,
    change_id: Uuid,
) -> sqlx::Result<Vec<AssessmentRow>> {
    sqlx::query_as!(
        AssessmentRow,
        "SELECT id, revision, assessor_id, assessor_username, assessor_roles, content, decision, assessed_level,
                lowers_risk, created_at, superseded_at
         FROM change_assessments WHERE change_id = $1 ORDER BY created_at, id",
        change_id
    )
    .fetch_all(&mut *conn)
    .await
}

#[derive(Debug, Clone)]
pub struct VoteRow {
    pub id: Uuid,
    pub revision: i32,
    pub voter_id: Uuid,
    pub voter_username: String,
    pub voter_roles: Vec<String>,
    pub choice: String,
    pub comment: String,
    pub created_at: DateTime<Utc>,
    pub superseded_at: Option<DateTime<Utc>>,
}

pub struct NewVote<'a> {
    pub id: Uuid,
    pub change_id: Uuid,
    pub revision: i32,
    pub voter_id: Uuid,
    pub voter_username: &'a str,
    pub voter_roles: &'a [String],
    pub choice: &'a str,
    pub comment: &'a str,
    /// The calendar conflicts the member accepted with an approving vote.
    pub acknowledged_conflicts: &'a Value,
    pub at: DateTime<Utc>,
}

/// Records a vote; the member's earlier vote on the same revision is superseded.
pub async fn insert_vote(conn: &mut PgConnection, v: &NewVote<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE change_votes SET superseded_at = $4
         WHERE change_id = $1 AND revision = $2 AND voter_id = $3 AND superseded_at IS NULL",
        v.change_id,
        v.revision,
        v.voter_id,
        v.at
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO change_votes (id, change_id, revision, voter_id, voter_username, voter_roles, choice, comment, created_at, acknowledged_conflicts)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        v.id,
        v.change_id,
        v.revision,
        v.voter_id,
        v.voter_username,
        v.voter_roles,
        v.choice,
        v.comment,
        v.at,
        v.acknowledged_conflicts
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Every vote on a change, oldest first, superseded ones included.
pub async fn votes(conn: &mut PgConnection, change_id: Uuid) -> sqlx::Result<Vec<VoteRow>> {
    sqlx::query_as!(
        VoteRow,
        "SELECT id, revision, voter_id, voter_username, voter_roles, choice, comment, created_at, superseded_at
         FROM change_votes WHERE change_id = $1 ORDER BY created_at, id",
        change_id
    )
    .fetch_all(&mut *conn)
    .await
}

#[derive(Debug, Clone)]
pub struct DecisionRow {
    pub decided_at: Option<DateTime<Utc>>,
    pub approved_revision: Option<i32>,
    pub review_note: Option<String>,
    pub retrospective_due_at: Option<DateTime<Utc>>,
    pub retrospective_done_at: Option<DateTime<Utc>>,
}

pub async fn decision(conn: &mut PgConnection, change_id: Uuid) -> sqlx::Result<DecisionRow> {
    sqlx::query_as!(
        DecisionRow,
        "SELECT decided_at, approved_revision, review_note, retrospective_due_at, retrospective_done_at
         FROM changes WHERE id = $1",
        change_id
    )
    .fetch_one(&mut *conn)
    .await
}

/// A change awaiting a decision, for the queues.
#[derive(Debug, Clone)]
pub struct QueueRow {
    pub id: Uuid,
    pub number: i64,
    pub title: String,
    pub state: String,
    pub change_type: String,
    pub risk_level: String,
    pub author: String,
    pub revision: i32,
    pub window_start: Option<DateTime<Utc>>,
    pub submitted_at: Option<DateTime<Utc>>,
}

/// Changes waiting for a security assessment of their current revision:
/// riskiest first, then oldest.
pub async fn awaiting_assessment(conn: &mut PgConnection) -> sqlx::Result<Vec<QueueRow>> {
    sqlx::query_as!(
        QueueRow,
        r#"SELECT c.id, c.number, c.title, c.state, c.change_type, c.risk_level, u.username AS author, c.revision,
                  c.window_start, c.submitted_at
           FROM changes c JOIN users u ON u.id = c.author_id
           WHERE c.state IN ('submitted', 'in_assessment')
             AND NOT EXISTS (SELECT 1 FROM change_assessments a
                             WHERE a.change_id = c.id AND a.revision = c.revision AND a.superseded_at IS NULL)
           ORDER BY c.risk_rank DESC, c.submitted_at ASC, c.number ASC
           LIMIT 500"#
    )
    .fetch_all(&mut *conn)
    .await
}

pub async fn setting(conn: &mut PgConnection, key: &str) -> sqlx::Result<Option<Value>> {
    sqlx::query_scalar!("SELECT value FROM settings WHERE key = $1", key)
        .fetch_optional(&mut *conn)
        .await
}

pub async fn put_setting(
    conn: &mut PgConnection,
    key: &str,
    value: &Value,
    by: Uuid,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO settings (key, value, updated_at, updated_by) VALUES ($1, $2, $3, $4)
         ON CONFLICT (key) DO UPDATE SET value = $2, updated_at = $3, updated_by = $4",
        key,
        value,
        at,
        by
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Whether each of `ids` is active now, and the roles each holds now.
pub async fn standing_of(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> sqlx::Result<Vec<(Uuid, bool, Vec<String>)>> {
    let rows = sqlx::query!(
        "SELECT id, disabled_at IS NULL AS \"active!\", roles FROM users WHERE id = ANY($1)",
        ids
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.id, r.active, r.roles))
        .collect())
}

/// Bounds how long the rest of the transaction waits for a lock another
/// transaction holds (`SET LOCAL lock_timeout`); past it the waiting
/// statement fails with `lock_not_available` (55P03) instead of hanging.
pub async fn limit_lock_wait(
    conn: &mut PgConnection,
    wait: std::time::Duration,
) -> sqlx::Result<()> {
    // `set_config` is `SET LOCAL` with a bound value; it reads no table, so
    // there is nothing for the offline query check to verify.
    sqlx::query("SELECT set_config('lock_timeout', $1, true)")
        .bind(format!("{}ms", wait.as_millis().max(1)))
        .execute(conn)
        .await?;
    Ok(())
}
