//! Closing changes, their post-implementation reviews and the reviews'
//! action items.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// Stamps how a change ended (its state is written by
/// `changes::write_state` in the same transaction). `closed_by` is `None`
/// when CAB closed it on its own.
pub async fn record_closure(
    conn: &mut PgConnection,
    id: Uuid,
    code: &str,
    notes: &str,
    closed_by: Option<Uuid>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE changes SET close_code = $2, close_notes = $3, closed_by = $4 WHERE id = $1",
        id,
        code,
        notes,
        closed_by,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// How a change was closed.
#[derive(Debug, Clone)]
pub struct Closure {
    pub code: String,
    pub notes: String,
    pub closed_at: DateTime<Utc>,
    pub closed_by: Option<String>,
}

pub async fn closure(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Closure>> {
    sqlx::query_as!(
        Closure,
        r#"SELECT c.close_code AS "code!", c.close_notes AS notes, c.closed_at AS "closed_at!",
                  u.username AS "closed_by?"
             FROM changes c LEFT JOIN users u ON u.id = c.closed_by
            WHERE c.id = $1 AND c.close_code IS NOT NULL AND c.closed_at IS NOT NULL"#,
        id
    )
    .fetch_optional(&mut *conn)
    .await
}

/// The facts beyond the change itself that say whether a review is owed,
/// and who deployed it.
#[derive(Debug, Clone)]
pub struct ReviewFacts {
    /// The level of its current assessment, if any.
    pub assessed_level: Option<String>,
    /// A confirmed break-glass deployment of it was authorized.
    pub break_glass: bool,
    /// Everyone who asked for or ran one of its production deployments,
    /// whatever became of them.
    pub deployers: Vec<Uuid>,
}

pub async fn facts(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<ReviewFacts> {
    sqlx::query_as!(
        ReviewFacts,
        r#"SELECT (SELECT a.assessed_level FROM change_assessments a
                    WHERE a.change_id = $1 AND a.superseded_at IS NULL
                    ORDER BY a.created_at DESC LIMIT 1) AS assessed_level,
                  EXISTS (SELECT 1 FROM break_glass b
                           WHERE b.change_id = $1 AND b.deployment_id IS NOT NULL) AS "break_glass!",
                  ARRAY(SELECT DISTINCT p FROM deployments d
                          JOIN environments e ON e.key = d.environment AND e.production,
                          LATERAL unnest(ARRAY[d.initiator_id, d.executor_id]) AS p
                         WHERE d.change_id = $1) AS "deployers!""#,
        id
    )
    .fetch_one(&mut *conn)
    .await
}

#[derive(Debug, Clone)]
pub struct ReviewRow {
    pub change_id: Uuid,
    pub required: bool,
    pub reasons: Vec<String>,
    pub due_at: Option<DateTime<Utc>>,
    pub content: Value,
    pub revision: i32,
    pub state: String,
    pub signed_off_by: Option<String>,
    pub signed_off_at: Option<DateTime<Utc>>,
    pub signed_off_revision: Option<i32>,
    pub first_signed_off_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

pub async fn find(conn: &mut PgConnection, change_id: Uuid) -> sqlx::Result<Option<ReviewRow>> {
    sqlx::query_as!(
        ReviewRow,
        r#"SELECT r.change_id, r.required, r.reasons, r.due_at, r.content, r.revision, r.state,
                  u.username AS "signed_off_by?", r.signed_off_at, r.signed_off_revision,
                  r.first_signed_off_at, r.updated_at
             FROM reviews r LEFT JOIN users u ON u.id = r.signed_off_by
            WHERE r.change_id = $1"#,
        change_id
    )
    .fetch_optional(&mut *conn)
    .await
}

/// Locks the review row, for a writer holding the change locked too.
pub async fn find_for_update(
    conn: &mut PgConnection,
    change_id: Uuid,
) -> sqlx::Result<Option<ReviewRow>> {
    sqlx::query_as!(
        ReviewRow,
        r#"SELECT r.change_id, r.required, r.reasons, r.due_at, r.content, r.revision, r.state,
                  NULL::text AS "signed_off_by?", r.signed_off_at, r.signed_off_revision,
                  r.first_signed_off_at, r.updated_at
             FROM reviews r WHERE r.change_id = $1 FOR UPDATE"#,
        change_id
    )
    .fetch_optional(&mut *conn)
    .await
}

/// Owes a review for `reasons`, due at `due_at`: creates it, or makes an
/// existing one required. A review already owed keeps the earlier due
/// time and gains the new reasons. Returns whether it is owed for a reason
/// it was not owed for before.
pub async fn owe(
    conn: &mut PgConnection,
    change_id: Uuid,
    reasons: &[String],
    due_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let before = sqlx::query!(
        "SELECT required, reasons FROM reviews WHERE change_id = $1 FOR UPDATE",
        change_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    let fresh = before
        .as_ref()
        .is_none_or(|b| !b.required || reasons.iter().any(|r| !b.reasons.contains(r)));
    sqlx::query!(
        r#"INSERT INTO reviews (change_id, required, reasons, due_at, content, state, created_at, updated_at)
           VALUES ($1, true, $2, $3, '{}'::jsonb, 'open', $4, $4)
           ON CONFLICT (change_id) DO UPDATE
              SET required = true,
                  reasons = ARRAY(SELECT DISTINCT x FROM unnest(reviews.reasons || EXCLUDED.reasons) AS x ORDER BY x),
                  due_at = LEAST(reviews.due_at, EXCLUDED.due_at),
                  updated_at = EXCLUDED.updated_at"#,
        change_id,
        reasons,
        due_at,
        now,
    )
    .execute(&mut *conn)
    .await?;
    Ok(fresh)
}

/// Starts an optional review, unless one exists.
pub async fn start(
    conn: &mut PgConnection,
    change_id: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"INSERT INTO reviews (change_id, required, content, state, created_at, updated_at)
           VALUES ($1, false, '{}'::jsonb, 'open', $2, $2)
           ON CONFLICT (change_id) DO NOTHING"#,
        change_id,
        now,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Saves a new revision of the review's content; a signed-off review is
/// open again until this revision is signed off.
pub async fn save(
    conn: &mut PgConnection,
    change_id: Uuid,
    content: &Value,
    revision: i32,
    author: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"UPDATE reviews SET content = $2, revision = $3, state = 'open', signed_off_by = NULL,
                  signed_off_at = NULL, signed_off_revision = NULL, updated_at = $4
            WHERE change_id = $1"#,
        change_id,
        content,
        revision,
        now,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        r#"INSERT INTO review_revisions (change_id, revision, content, author_id, created_at)
           VALUES ($1, $2, $3, $4, $5)"#,
        change_id,
        revision,
        content,
        author,
        now,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Signs off the review's current revision. An emergency change's
/// retrospective is done with its review's first sign-off.
pub async fn sign_off(
    conn: &mut PgConnection,
    change_id: Uuid,
    by: Uuid,
    revision: i32,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"UPDATE reviews SET state = 'signed_off', signed_off_by = $2, signed_off_at = $4,
                  signed_off_revision = $3, first_signed_off_at = COALESCE(first_signed_off_at, $4),
                  updated_at = $4
            WHERE change_id = $1"#,
        change_id,
        by,
        revision,
        now,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        r#"UPDATE changes SET retrospective_done_at = $2
            WHERE id = $1 AND retrospective_due_at IS NOT NULL AND retrospective_done_at IS NULL"#,
        change_id,
        now,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct RevisionRow {
    pub revision: i32,
    pub content: Value,
    pub author: String,
    pub created_at: DateTime<Utc>,
}

pub async fn revisions(conn: &mut PgConnection, change_id: Uuid) -> sqlx::Result<Vec<RevisionRow>> {
    sqlx::query_as!(
        RevisionRow,
        r#"SELECT r.revision, r.content, u.username AS author, r.created_at
             FROM review_revisions r JOIN users u ON u.id = r.author_id
            WHERE r.change_id = $1 ORDER BY r.revision"#,
        change_id
    )
    .fetch_all(&mut *conn)
    .await
}

#[derive(Debug, Clone)]
pub struct ActionRow {
    pub id: Uuid,
    pub number: i64,
    pub change_id: Uuid,
    pub change_number: i64,
    pub title: String,
    pub owner_id: Uuid,
    pub owner: String,
    pub due_on: NaiveDate,
    pub status: String,
    pub done_at: Option<DateTime<Utc>>,
}

pub struct NewAction<'a> {
    pub id: Uuid,
    pub change_id: Uuid,
    pub title: &'a str,
    pub owner_id: Uuid,
    pub due_on: NaiveDate,
    pub created_by: Uuid,
    pub now: DateTime<Utc>,
}

pub async fn add_action(conn: &mut PgConnection, a: &NewAction<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"INSERT INTO review_actions (id, change_id, title, owner_id, due_on, status, created_by, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, 'open', $6, $7, $7) RETURNING number"#,
        a.id,
        a.change_id,
        a.title,
        a.owner_id,
        a.due_on,
        a.created_by,
        a.now,
    )
    .fetch_one(&mut *conn)
    .await
}

pub async fn actions(conn: &mut PgConnection, change_id: Uuid) -> sqlx::Result<Vec<ActionRow>> {
    sqlx::query_as!(
        ActionRow,
        r#"SELECT a.id, a.number, a.change_id, c.number AS change_number, a.title, a.owner_id,
                  u.username AS owner, a.due_on, a.status, a.done_at
             FROM review_actions a JOIN users u ON u.id = a.owner_id JOIN changes c ON c.id = a.change_id
            WHERE a.change_id = $1 ORDER BY a.number"#,
        change_id
    )
    .fetch_all(&mut *conn)
    .await
}

pub async fn action(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<ActionRow>> {
    sqlx::query_as!(
        ActionRow,
        r#"SELECT a.id, a.number, a.change_id, c.number AS change_number, a.title, a.owner_id,
                  u.username AS owner, a.due_on, a.status, a.done_at
             FROM review_actions a JOIN users u ON u.id = a.owner_id JOIN changes c ON c.id = a.change_id
            WHERE a.id = $1"#,
        id
    )
    .fetch_optional(&mut *conn)
    .await
}

/// The action item, locked for the rest of the transaction.
pub async fn action_for_update(
    conn: &mut PgConnection,
    id: Uuid,
) -> sqlx::Result<Option<ActionRow>> {
    sqlx::query_as!(
        ActionRow,
        r#"SELECT a.id, a.number, a.change_id, c.number AS change_number, a.title, a.owner_id,
                  u.username AS owner, a.due_on, a.status, a.done_at
             FROM review_actions a JOIN users u ON u.id = a.owner_id JOIN changes c ON c.id = a.change_id
            WHERE a.id = $1 FOR UPDATE OF a"#,
        id
    )
    .fetch_optional(&mut *conn)
    .await
}

pub async fn set_action_status(
    conn: &mut PgConnection,
    id: Uuid,
    status: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"UPDATE review_actions SET status = $2, updated_at = $3,
                  done_at = CASE WHEN $2 = 'done' THEN COALESCE(done_at, $3) ELSE NULL END
            WHERE id = $1"#,
        id,
        status,
        now,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A review owed and not signed off by its due time.
#[derive(Debug, Clone)]
pub struct OverdueReview {
    pub change_id: Uuid,
    pub number: i64,
    pub title: String,
    pub due_at: DateTime<Utc>,
    pub author_id: Uuid,
}

/// Owed reviews past due at `now`; with `person`, those of changes they
/// wrote or contribute to.
pub async fn overdue(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    person: Option<Uuid>,
) -> sqlx::Result<Vec<OverdueReview>> {
    sqlx::query_as!(
        OverdueReview,
        r#"SELECT c.id AS change_id, c.number, c.title, r.due_at AS "due_at!", c.author_id
             FROM reviews r JOIN changes c ON c.id = r.change_id
            WHERE r.required AND r.first_signed_off_at IS NULL AND r.due_at < $1
              AND ($2::uuid IS NULL OR c.author_id = $2
                   OR EXISTS (SELECT 1 FROM change_contributors cc
                               WHERE cc.change_id = c.id AND cc.user_id = $2))
            ORDER BY r.due_at, c.number"#,
        now,
        person,
    )
    .fetch_all(&mut *conn)
    .await
}

/// How many owed reviews are not yet signed off.
pub async fn pending_count(conn: &mut PgConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM reviews WHERE required AND first_signed_off_at IS NULL"#
    )
    .fetch_one(&mut *conn)
    .await
}

/// Action items not done by their due date before `today`; with `owner`,
/// only theirs.
pub async fn overdue_actions(
    conn: &mut PgConnection,
    today: NaiveDate,
    owner: Option<Uuid>,
) -> sqlx::Result<Vec<ActionRow>> {
    sqlx::query_as!(
        ActionRow,
        r#"SELECT a.id, a.number, a.change_id, c.number AS change_number, a.title, a.owner_id,
                  u.username AS owner, a.due_on, a.status, a.done_at
             FROM review_actions a JOIN users u ON u.id = a.owner_id JOIN changes c ON c.id = a.change_id
            WHERE a.status <> 'done' AND a.due_on < $1 AND ($2::uuid IS NULL OR a.owner_id = $2)
            ORDER BY a.due_on, a.number"#,
        today,
        owner,
    )
    .fetch_all(&mut *conn)
    .await
}

/// Approved changes whose window ended before `before`, that never had a
/// production deployment (none ever started, none authorized now) and are
/// in no release still under way, locked; rows another closer holds are
/// skipped.
pub async fn lapsed(
    conn: &mut PgConnection,
    before: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        r#"SELECT c.id FROM changes c
            WHERE c.state = 'approved' AND c.window_end < $1
              AND NOT EXISTS (SELECT 1 FROM deployments d JOIN environments e
                                  ON e.key = d.environment AND e.production
                               WHERE d.change_id = c.id
                                 AND (d.state IN ('authorized', 'started') OR d.started_at IS NOT NULL))
              AND NOT EXISTS (SELECT 1 FROM release_scope s JOIN releases r ON r.id = s.release_id
                               WHERE s.change_id = c.id AND s.removed_at IS NULL
                                 AND r.state NOT IN ('completed', 'cancelled'))
            ORDER BY c.window_end
            LIMIT $2
            FOR UPDATE OF c SKIP LOCKED"#,
        before,
        limit,
    )
    .fetch_all(&mut *conn)
    .await
}

/// The release still under way that holds the change, if any: its number.
pub async fn open_release(conn: &mut PgConnection, change_id: Uuid) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar!(
        r#"SELECT r.number FROM release_scope s JOIN releases r ON r.id = s.release_id
            WHERE s.change_id = $1 AND s.removed_at IS NULL
              AND r.state NOT IN ('completed', 'cancelled')"#,
        change_id
    )
    .fetch_optional(&mut *conn)
    .await
}

/// Takes the lock that lets one closer at a time sweep lapsed changes, for
/// the rest of the transaction; `false` when another holds it.
pub async fn try_sweep_lock(conn: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT pg_try_advisory_xact_lock(hashtextextended('cab.lapsed_sweep', 0)) AS "got!""#
    )
    .fetch_one(&mut *conn)
    .await
}

/// The active person (not a service account) with this username, and the
/// roles they hold.
pub async fn person_named(
    conn: &mut PgConnection,
    username: &str,
) -> sqlx::Result<Option<(Uuid, Vec<String>)>> {
    Ok(sqlx::query!(
        "SELECT id, roles FROM users WHERE username = $1 AND disabled_at IS NULL AND NOT is_service",
        username
    )
    .fetch_optional(&mut *conn)
    .await?
    .map(|r| (r.id, r.roles)))
}

/// Whether a production deployment of the change ever started.
pub async fn reached_production(conn: &mut PgConnection, change_id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM deployments d JOIN environments e
                              ON e.key = d.environment AND e.production
                           WHERE d.change_id = $1 AND d.started_at IS NOT NULL) AS "any!""#,
        change_id
    )
    .fetch_one(&mut *conn)
    .await
}

/// Opens a signed-off review again: what it signed off no longer covers
/// the change (another production deployment ended, or it is owed for a
/// reason it was not). It is owed again by `due_at` when it is owed at
/// all. Returns whether it was signed off.
pub async fn reopen(
    conn: &mut PgConnection,
    change_id: Uuid,
    due_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        r#"UPDATE reviews SET state = 'open', signed_off_by = NULL, signed_off_at = NULL,
                  signed_off_revision = NULL, first_signed_off_at = NULL,
                  due_at = CASE WHEN required THEN GREATEST(due_at, $2) END, updated_at = $3
            WHERE change_id = $1 AND state = 'signed_off'"#,
        change_id,
        due_at,
        now,
    )
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Whether a production deployment of the change is authorized or under
/// way.
pub async fn production_under_way(conn: &mut PgConnection, change_id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM deployments d JOIN environments e
                              ON e.key = d.environment AND e.production
                           WHERE d.change_id = $1 AND d.state IN ('authorized', 'started')) AS "any!""#,
        change_id
    )
    .fetch_one(&mut *conn)
    .await
}
