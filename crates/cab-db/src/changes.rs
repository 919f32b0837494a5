//! Change requests: rows, contributors, revisions, comments and the list query.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct ChangeRow {
    pub id: Uuid,
    pub number: i64,
    pub state: String,
    pub author_id: Uuid,
    pub author_username: String,
    pub content: Value,
    pub risk_level: String,
    pub risk_reasons: Vec<String>,
    pub risk_version: i32,
    pub revision: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    /// The standard-change template it was made from.
    pub template_id: Option<Uuid>,
    /// Its contributors now, ordered by username.
    pub contributor_ids: Vec<Uuid>,
    pub contributor_names: Vec<String>,
    /// Everyone who has ever contributed.
    pub past_contributors: Vec<Uuid>,
    /// Everyone who has assessed it, and everyone who has voted on it.
    pub assessors: Vec<Uuid>,
    pub voters: Vec<Uuid>,
}

/// The columns a change's content is saved into.
pub struct ChangeColumns<'a> {
    pub content: &'a Value,
    pub title: &'a str,
    pub description: &'a str,
    pub change_type: &'a str,
    pub category: &'a str,
    pub priority: &'a str,
    pub services: &'a [String],
    pub environments: &'a [String],
    pub window_start: Option<DateTime<Utc>>,
    pub window_end: Option<DateTime<Utc>>,
    pub risk_level: &'a str,
    pub risk_rank: i16,
    pub risk_reasons: &'a [String],
    pub risk_version: i32,
}

/// Files a new change, always as a draft: every later state is written by
/// [`write_state`].
pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    author_id: Uuid,
    c: &ChangeColumns<'_>,
    now: DateTime<Utc>,
) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"INSERT INTO changes (id, state, author_id, content, title, description, change_type, category,
                                priority, services, environments, window_start, window_end, risk_level,
                                risk_rank, risk_reasons, risk_version, created_at, updated_at)
           VALUES ($1, 'draft', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17)
           RETURNING number"#,
        id,
        author_id,
        c.content,
        c.title,
        c.description,
        c.change_type,
        c.category,
        c.priority,
        c.services,
        c.environments,
        c.window_start,
        c.window_end,
        c.risk_level,
        c.risk_rank,
        c.risk_reasons,
        c.risk_version,
        now
    )
    .fetch_one(&mut *conn)
    .await
}

pub async fn update_content(
    conn: &mut PgConnection,
    id: Uuid,
    c: &ChangeColumns<'_>,
    revision: i32,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"UPDATE changes SET content = $2, title = $3, description = $4, change_type = $5, category = $6,
                              priority = $7, services = $8, environments = $9, window_start = $10,
                              window_end = $11, risk_level = $12, risk_rank = $13, risk_reasons = $14,
                              risk_version = $15, revision = $16, updated_at = $17
           WHERE id = $1"#,
        id,
        c.content,
        c.title,
        c.description,
        c.change_type,
        c.category,
        c.priority,
        c.services,
        c.environments,
        c.window_start,
        c.window_end,
        c.risk_level,
        c.risk_rank,
        c.risk_reasons,
        c.risk_version,
        revision,
        now
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What is written with a change's new state (the store's side of
/// `cab_domain::lifecycle::StateWrite`).
#[derive(Debug, Clone, Default)]
pub struct StateChange<'a> {
    pub revision: i32,
    /// Stamps the time of submission.
    pub submitted: bool,
    /// Stamps the time it closed.
    pub closed: bool,
    /// A decision: its time, the revision approved and, for an emergency,
    /// when its retrospective is due.
    pub decided: Option<Decided>,
    /// Back to review or to its authors, with the note saying why; an
    /// earlier decision is cleared.
    pub reopened: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Decided {
    pub approved_revision: Option<i32>,
    pub retrospective_due: Option<DateTime<Utc>>,
}

/// Moves the change to `state`. The only statement that changes
/// `changes.state` once [`insert`] filed it as a draft (a test reads the
/// source and the query metadata to hold it so).
///
/// A retrospective review once due stays due, and keeps its date: a later
/// decision (a rejection, or a second approval, after a material edit sent
/// the approved emergency change back to review) neither clears it nor
/// puts it off, since the approved change may have been carried out.
pub async fn write_state(
    conn: &mut PgConnection,
    id: Uuid,
    state: &str,
    change: &StateChange<'_>,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    let decided = change.decided.unwrap_or_default();
    sqlx::query!(
        r#"UPDATE changes SET state = $2, revision = $3, updated_at = $4,
                  submitted_at = CASE WHEN $5 THEN $4 ELSE submitted_at END,
                  closed_at = CASE WHEN $6 THEN $4 ELSE closed_at END,
                  decided_at = CASE WHEN $7 THEN $4 WHEN $10 THEN NULL ELSE decided_at END,
                  approved_revision = CASE WHEN $7 THEN $8 WHEN $10 THEN NULL ELSE approved_revision END,
                  retrospective_due_at = CASE WHEN $7 THEN COALESCE(retrospective_due_at, $9)
                                              ELSE retrospective_due_at END,
                  review_note = CASE WHEN $10 THEN $11 ELSE review_note END
           WHERE id = $1"#,
        id,
        state,
        change.revision,
        now,
        change.submitted,
        change.closed,
        change.decided.is_some(),
        decided.approved_revision,
        decided.retrospective_due,
        change.reopened.is_some(),
        change.reopened,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A change with the people its rules need, in one statement.
pub async fn find(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<ChangeRow>> {
    sqlx::query_as!(
        ChangeRow,
        r#"SELECT c.id, c.number, c.state, c.author_id, u.username AS author_username, c.content,
                  c.risk_level, c.risk_reasons, c.risk_version, c.revision, c.created_at, c.updated_at,
                  c.submitted_at, c.closed_at, c.template_id,
                  ARRAY(SELECT cu.id FROM change_contributors cc JOIN users cu ON cu.id = cc.user_id
                        WHERE cc.change_id = c.id ORDER BY cu.username) AS "contributor_ids!",
                  ARRAY(SELECT cu.username FROM change_contributors cc JOIN users cu ON cu.id = cc.user_id
                        WHERE cc.change_id = c.id ORDER BY cu.username) AS "contributor_names!",
                  ARRAY(SELECT h.user_id FROM change_contributor_history h
                        WHERE h.change_id = c.id) AS "past_contributors!",
                  ARRAY(SELECT DISTINCT a.assessor_id FROM change_assessments a
                        WHERE a.change_id = c.id) AS "assessors!",
                  ARRAY(SELECT DISTINCT v.voter_id FROM change_votes v
                        WHERE v.change_id = c.id) AS "voters!"
           FROM changes c JOIN users u ON u.id = c.author_id WHERE c.id = $1"#,
        id
    )
    .fetch_optional(&mut *conn)
    .await
}

/// Locks the change for the rest of the transaction (edits and transitions
/// of one change happen one after the other), then reads it. Two
/// statements on purpose: a statement reads what was committed when it
/// began, so the people read after the lock is granted include any vote or
/// assessment committed while this one waited for it.
pub async fn find_for_update(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<ChangeRow>> {
    let locked = sqlx::query_scalar!("SELECT id FROM changes WHERE id = $1 FOR UPDATE", id)
        .fetch_optional(&mut *conn)
        .await?;
    match locked {
        Some(_) => find(conn, id).await,
        None => Ok(None),
    }
}

pub async fn id_by_number(conn: &mut PgConnection, number: i64) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!("SELECT id FROM changes WHERE number = $1", number)
        .fetch_optional(&mut *conn)
        .await
}

pub async fn set_contributors(
    conn: &mut PgConnection,
    id: Uuid,
    users: &[Uuid],
) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM change_contributors WHERE change_id = $1", id)
        .execute(&mut *conn)
        .await?;
    sqlx::query!(
        "INSERT INTO change_contributors (change_id, user_id) SELECT $1, unnest($2::uuid[])",
        id,
        users
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO change_contributor_history (change_id, user_id) SELECT $1, unnest($2::uuid[])
         ON CONFLICT DO NOTHING",
        id,
        users
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Active users with these usernames, as (id, username).
pub async fn users_named(
    conn: &mut PgConnection,
    usernames: &[String],
) -> sqlx::Result<Vec<(Uuid, String)>> {
    let rows = sqlx::query!(
        "SELECT id, username FROM users WHERE username = ANY($1) AND disabled_at IS NULL",
        usernames
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.username)).collect())
}

pub async fn remember_services(conn: &mut PgConnection, names: &[String]) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO services (name) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
        names
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn known_services(conn: &mut PgConnection) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!("SELECT name FROM services ORDER BY name LIMIT 500")
        .fetch_all(&mut *conn)
        .await
}

#[derive(Debug, Clone)]
pub struct RevisionRow {
    pub number: i32,
    pub content: Value,
    pub diff: Value,
    pub risk_level: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

pub struct NewRevision<'a> {
    pub change_id: Uuid,
    pub number: i32,
    pub content: &'a Value,
    pub diff: &'a Value,
    pub risk_level: &'a str,
    pub by: Uuid,
    pub at: DateTime<Utc>,
}

pub async fn insert_revision(conn: &mut PgConnection, r: &NewRevision<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO change_revisions (change_id, number, content, diff, risk_level, created_at, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        r.change_id,
        r.number,
        r.content,
        r.diff,
        r.risk_level,
        r.at,
        r.by
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Newest first.
pub async fn revisions(conn: &mut PgConnection, change_id: Uuid) -> sqlx::Result<Vec<RevisionRow>> {
    sqlx::query_as!(
        RevisionRow,
        r#"SELECT r.number, r.content, r.diff, r.risk_level, r.created_at, u.username AS created_by
           FROM change_revisions r JOIN users u ON u.id = r.created_by
           WHERE r.change_id = $1 ORDER BY r.number DESC"#,
        change_id
    )
    .fetch_all(&mut *conn)
    .await
}

#[derive(Debug, Clone)]
pub struct CommentRow {
    pub id: Uuid,
    pub author: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

pub async fn insert_comment(
    conn: &mut PgConnection,
    id: Uuid,
    change_id: Uuid,
    author_id: Uuid,
    body: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO change_comments (id, change_id, author_id, body, created_at) VALUES ($1, $2, $3, $4, $5)",
        id,
        change_id,
        author_id,
        body,
        at
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Oldest first.
pub async fn comments(conn: &mut PgConnection, change_id: Uuid) -> sqlx::Result<Vec<CommentRow>> {
    sqlx::query_as!(
        CommentRow,
        r#"SELECT c.id, u.username AS author, c.body, c.created_at
           FROM change_comments c JOIN users u ON u.id = c.author_id
           WHERE c.change_id = $1 ORDER BY c.created_at, c.id"#,
        change_id
    )
    .fetch_all(&mut *conn)
    .await
}

/// One comment, by its id.
pub async fn comment(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<CommentRow>> {
    sqlx::query_as!(
        CommentRow,
        r#"SELECT c.id, u.username AS author, c.body, c.created_at
           FROM change_comments c JOIN users u ON u.id = c.author_id
           WHERE c.id = $1"#,
        id
    )
    .fetch_optional(&mut *conn)
    .await
}

/// How a list is ordered; each order has a keyset cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    #[default]
    Newest,
    Oldest,
    Updated,
    Window,
    Risk,
}

impl Sort {
    pub const ALL: [Sort; 5] = [
        Sort::Newest,
        Sort::Oldest,
        Sort::Updated,
        Sort::Window,
        Sort::Risk,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Sort::Newest => "newest",
            Sort::Oldest => "oldest",
            Sort::Updated => "updated",
            Sort::Window => "window",
            Sort::Risk => "risk",
        }
    }

    /// The order as people read it.
    pub fn label(self) -> &'static str {
        match self {
            Sort::Newest => "Newest first",
            Sort::Oldest => "Oldest first",
            Sort::Updated => "Recently updated",
            Sort::Window => "Soonest window first",
            Sort::Risk => "Riskiest first",
        }
    }

    pub fn parse(s: &str) -> Option<Sort> {
        Sort::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// Where the previous page ended: the sort key (micros or rank) and the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub key: i64,
    pub number: i64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}_{}", self.key, self.number)
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let (k, n) = s.split_once('_')?;
        Some(Cursor {
            key: k.parse().ok()?,
            number: n.parse().ok()?,
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct ChangeFilter {
    pub state: Option<String>,
    pub change_type: Option<String>,
    pub risk: Option<String>,
    pub category: Option<String>,
    pub service: Option<String>,
    pub author: Option<String>,
    /// Changes this user wrote or contributed to.
    pub involving: Option<Uuid>,
    /// Full-text search over title and description.
    pub text: Option<String>,
    pub sort: Sort,
    pub after: Option<Cursor>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChangeSummary {
    pub id: Uuid,
    pub number: i64,
    pub title: String,
    pub state: String,
    pub change_type: String,
    pub category: String,
    pub priority: String,
    pub risk_level: String,
    pub risk_rank: i16,
    pub services: Vec<String>,
    pub environments: Vec<String>,
    pub author: String,
    pub window_start: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl ChangeSummary {
    /// The cursor that continues a list after this row.
    pub fn cursor(&self, sort: Sort) -> Cursor {
        let key = match sort {
            Sort::Newest | Sort::Oldest => 0,
            Sort::Updated => self.updated_at.timestamp_micros(),
            Sort::Window => self.window_start.map_or(i64::MAX, |t| t.timestamp_micros()),
            Sort::Risk => i64::from(self.risk_rank),
        };
        Cursor {
            key,
            number: self.number,
        }
    }
}

fn micros(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(v).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// One page of changes matching `f`, in its order, after its cursor. Built
/// with bound parameters only; the filter shape varies, so this one query is
/// assembled rather than written out.
pub async fn list(
    conn: &mut PgConnection,
    f: &ChangeFilter,
    limit: i64,
) -> sqlx::Result<Vec<ChangeSummary>> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
        "SELECT c.id, c.number, c.title, c.state, c.change_type, c.category, c.priority, c.risk_level,
                c.risk_rank, c.services, c.environments, u.username AS author, c.window_start, c.updated_at
         FROM changes c JOIN users u ON u.id = c.author_id WHERE true",
    );
    if let Some(v) = &f.state {
        q.push(" AND c.state = ").push_bind(v.clone());
    }
    if let Some(v) = &f.change_type {
        q.push(" AND c.change_type = ").push_bind(v.clone());
    }
    if let Some(v) = &f.risk {
        q.push(" AND c.risk_level = ").push_bind(v.clone());
    }
    if let Some(v) = &f.category {
        q.push(" AND c.category = ").push_bind(v.clone());
    }
    if let Some(v) = &f.service {
        q.push(" AND c.services @> ARRAY[")
            .push_bind(v.clone())
            .push("]::text[]");
    }
    if let Some(v) = &f.author {
        q.push(" AND u.username = ").push_bind(v.clone());
    }
    if let Some(me) = f.involving {
        q.push(" AND (c.author_id = ")
            .push_bind(me)
            .push(" OR EXISTS (SELECT 1 FROM change_contributors cc WHERE cc.change_id = c.id AND cc.user_id = ")
            .push_bind(me)
            .push("))");
    }
    if let Some(v) = &f.text {
        q.push(" AND c.search @@ websearch_to_tsquery('english', ")
            .push_bind(v.clone())
            .push(")");
    }
    if let Some(c) = f.after {
        match f.sort {
            Sort::Newest => {
                q.push(" AND c.number < ").push_bind(c.number);
            }
            Sort::Oldest => {
                q.push(" AND c.number > ").push_bind(c.number);
            }
            Sort::Updated => {
                q.push(" AND (c.updated_at, c.number) < (")
                    .push_bind(micros(c.key))
                    .push(", ")
                    .push_bind(c.number)
                    .push(")");
            }
            Sort::Window => {
                q.push(" AND (coalesce(c.window_start, 'infinity'::timestamptz), c.number) > (")
                    .push_bind(if c.key == i64::MAX {
                        DateTime::<Utc>::MAX_UTC
                    } else {
                        micros(c.key)
                    })
                    .push(", ")
                    .push_bind(c.number)
                    .push(")");
            }
            Sort::Risk => {
                q.push(" AND (c.risk_rank, c.number) < (")
                    .push_bind(i16::try_from(c.key).unwrap_or(i16::MAX))
                    .push(", ")
                    .push_bind(c.number)
                    .push(")");
            }
        }
    }
    q.push(match f.sort {
        Sort::Newest => " ORDER BY c.number DESC",
        Sort::Oldest => " ORDER BY c.number ASC",
        Sort::Updated => " ORDER BY c.updated_at DESC, c.number DESC",
        Sort::Window => {
            " ORDER BY coalesce(c.window_start, 'infinity'::timestamptz) ASC, c.number ASC"
        }
        Sort::Risk => " ORDER BY c.risk_rank DESC, c.number DESC",
    });
    q.push(" LIMIT ").push_bind(limit);
    q.build_query_as::<ChangeSummary>()
        .fetch_all(&mut *conn)
        .await
}

/// Number of changes in each state, optionally only those involving a user.
pub async fn counts_by_state(
    conn: &mut PgConnection,
    involving: Option<Uuid>,
) -> sqlx::Result<Vec<(String, i64)>> {
    let rows = sqlx::query!(
        r#"SELECT c.state, count(*) AS "n!" FROM changes c
           WHERE $1::uuid IS NULL OR c.author_id = $1
              OR EXISTS (SELECT 1 FROM change_contributors cc WHERE cc.change_id = c.id AND cc.user_id = $1)
           GROUP BY c.state ORDER BY c.state"#,
        involving
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.state, r.n)).collect())
}

/// Comments by others on changes the user wrote or contributed to, newest first.
pub async fn comments_for_author(
    conn: &mut PgConnection,
    user: Uuid,
    limit: i64,
) -> sqlx::Result<Vec<(Uuid, i64, String, String, DateTime<Utc>)>> {
    let rows = sqlx::query!(
        r#"SELECT c.id AS change_id, c.number, c.title, u.username, cm.created_at
           FROM change_comments cm
           JOIN changes c ON c.id = cm.change_id
           JOIN users u ON u.id = cm.author_id
           WHERE cm.author_id <> $1
             AND (c.author_id = $1 OR EXISTS (SELECT 1 FROM change_contributors cc
                                              WHERE cc.change_id = c.id AND cc.user_id = $1))
           ORDER BY cm.created_at DESC LIMIT $2"#,
        user,
        limit
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.change_id, r.number, r.title, r.username, r.created_at))
        .collect())
}

/// Fixes the quorum policy a submitted change is decided under.
pub async fn fix_quorum_policy(
    conn: &mut PgConnection,
    id: Uuid,
    policy: &Value,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE changes SET quorum_policy = $2 WHERE id = $1",
        id,
        policy
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The quorum policy fixed at submission, if the change has been submitted.
pub async fn quorum_policy(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Value>> {
    Ok(
        sqlx::query_scalar!("SELECT quorum_policy FROM changes WHERE id = $1", id)
            .fetch_optional(&mut *conn)
            .await?
            .flatten(),
    )
}

/// Records the service account that filed a change for its author.
pub async fn set_filed_by(conn: &mut PgConnection, id: Uuid, filed_by: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE changes SET filed_by = $2 WHERE id = $1",
        id,
        filed_by
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}
