//! Releases: the plan and its revisions, the changes in scope, CAB's
//! go/no-go votes and what happened to each phase. Writes take the caller's
//! transaction; the release row is locked (`load_locked`) before anything
//! that depends on its state is decided.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct ReleaseRow {
    pub id: Uuid,
    pub number: i64,
    pub state: String,
    pub name: String,
    pub version: String,
    pub plan: Value,
    pub revision: i32,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub current_phase: Option<i32>,
    pub phase_opened_at: Option<DateTime<Utc>>,
    pub rolled_back_phase: Option<i32>,
    pub rollback_reason: String,
    pub started_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub deploy_at: DateTime<Utc>,
}

pub async fn load(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<ReleaseRow>> {
    sqlx::query_as!(
        ReleaseRow,
        r#"SELECT id, number, state, name, version, plan, revision, created_by, created_at,
                  updated_at, current_phase, phase_opened_at, rolled_back_phase, rollback_reason,
                  started_at, closed_at, deploy_at
           FROM releases WHERE id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await
}

/// The release, locked until the transaction ends.
pub async fn load_locked(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<ReleaseRow>> {
    sqlx::query_as!(
        ReleaseRow,
        r#"SELECT id, number, state, name, version, plan, revision, created_by, created_at,
                  updated_at, current_phase, phase_opened_at, rolled_back_phase, rollback_reason,
                  started_at, closed_at, deploy_at
           FROM releases WHERE id = $1 FOR UPDATE"#,
        id
    )
    .fetch_optional(conn)
    .await
}

pub async fn id_of_number(conn: &mut PgConnection, number: i64) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!("SELECT id FROM releases WHERE number = $1", number)
        .fetch_optional(conn)
        .await
}

/// Releases, the ones going out soonest first; `state` narrows them.
pub async fn list(
    conn: &mut PgConnection,
    state: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<ReleaseRow>> {
    sqlx::query_as!(
        ReleaseRow,
        r#"SELECT id, number, state, name, version, plan, revision, created_by, created_at,
                  updated_at, current_phase, phase_opened_at, rolled_back_phase, rollback_reason,
                  started_at, closed_at, deploy_at
           FROM releases
           WHERE ($1::text IS NULL OR state = $1)
           ORDER BY (state IN ('completed', 'cancelled')), deploy_at, number
           LIMIT $2"#,
        state,
        limit
    )
    .fetch_all(conn)
    .await
}

pub struct NewRelease<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub version: &'a str,
    pub plan: &'a Value,
    pub created_by: Uuid,
    pub at: DateTime<Utc>,
    pub deploy_at: DateTime<Utc>,
}

/// A new draft at revision 1; answers its number.
pub async fn insert(conn: &mut PgConnection, r: &NewRelease<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"INSERT INTO releases (id, state, name, version, plan, revision, created_by, created_at,
                                 updated_at, deploy_at)
           VALUES ($1, 'draft', $2, $3, $4, 1, $5, $6, $6, $7)
           RETURNING number"#,
        r.id,
        r.name,
        r.version,
        r.plan,
        r.created_by,
        r.at,
        r.deploy_at
    )
    .fetch_one(conn)
    .await
}

/// A new revision of the plan becomes current, in `state`.
#[allow(clippy::too_many_arguments)]
pub async fn set_plan(
    conn: &mut PgConnection,
    id: Uuid,
    state: &str,
    name: &str,
    version: &str,
    plan: &Value,
    revision: i32,
    deploy_at: DateTime<Utc>,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE releases SET state = $2, name = $3, version = $4, plan = $5, revision = $6,
                deploy_at = $7, updated_at = $8
         WHERE id = $1",
        id,
        state,
        name,
        version,
        plan,
        revision,
        deploy_at,
        at
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_state(
    conn: &mut PgConnection,
    id: Uuid,
    state: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE releases SET state = $2, updated_at = $3,
                closed_at = CASE WHEN $2 IN ('completed', 'cancelled') THEN $3 ELSE closed_at END
         WHERE id = $1",
        id,
        state,
        at
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Fixes the quorum policy the go/no-go is decided under.
pub async fn fix_quorum_policy(
    conn: &mut PgConnection,
    id: Uuid,
    policy: &Value,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE releases SET quorum_policy = $2 WHERE id = $1",
        id,
        policy
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The quorum policy fixed at submission, if it was submitted.
pub async fn quorum_policy(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Value>> {
    Ok(
        sqlx::query_scalar!("SELECT quorum_policy FROM releases WHERE id = $1", id)
            .fetch_optional(conn)
            .await?
            .flatten(),
    )
}

/// Opens phase `phase` (0-based); the first opening starts the release.
pub async fn open_phase(
    conn: &mut PgConnection,
    id: Uuid,
    phase: i32,
    by: Uuid,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE releases SET state = 'in_progress', current_phase = $2, phase_opened_at = $3,
                started_at = COALESCE(started_at, $3), updated_at = $3
         WHERE id = $1",
        id,
        phase,
        at
    )
    .execute(&mut *conn)
    .await?;
    phase_event(conn, id, phase, "opened", by, at, "").await
}

pub async fn roll_back_phase(
    conn: &mut PgConnection,
    id: Uuid,
    phase: i32,
    by: Uuid,
    at: DateTime<Utc>,
    reason: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE releases SET rolled_back_phase = $2, rollback_reason = $3, updated_at = $4
         WHERE id = $1",
        id,
        phase,
        reason,
        at
    )
    .execute(&mut *conn)
    .await?;
    phase_event(conn, id, phase, "rolled_back", by, at, reason).await
}

async fn phase_event(
    conn: &mut PgConnection,
    id: Uuid,
    phase: i32,
    kind: &str,
    by: Uuid,
    at: DateTime<Utc>,
    reason: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO release_phase_events (release_id, phase, kind, at, by_user, reason)
         VALUES ($1, $2, $3, $4, $5, $6)",
        id,
        phase,
        kind,
        at,
        by,
        reason
    )
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct PhaseEventRow {
    pub phase: i32,
    pub kind: String,
    pub at: DateTime<Utc>,
    pub by_username: String,
    pub reason: String,
}

pub async fn phase_events(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Vec<PhaseEventRow>> {
    sqlx::query_as!(
        PhaseEventRow,
        r#"SELECT e.phase, e.kind, e.at, u.username AS by_username, e.reason
           FROM release_phase_events e JOIN users u ON u.id = e.by_user
           WHERE e.release_id = $1 ORDER BY e.at, e.phase"#,
        id
    )
    .fetch_all(conn)
    .await
}

#[derive(Debug, Clone)]
pub struct RevisionRow {
    pub number: i32,
    pub plan: Value,
    pub scope: Vec<String>,
    pub diff: Value,
    pub note: String,
    pub created_at: DateTime<Utc>,
    pub created_by: Uuid,
    pub author_username: String,
}

pub struct NewRevision<'a> {
    pub release_id: Uuid,
    pub number: i32,
    pub plan: &'a Value,
    pub scope: &'a [String],
    pub diff: &'a Value,
    pub note: &'a str,
    pub by: Uuid,
    pub at: DateTime<Utc>,
}

pub async fn insert_revision(conn: &mut PgConnection, r: &NewRevision<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO release_revisions (release_id, number, plan, scope, diff, note, created_at, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        r.release_id,
        r.number,
        r.plan,
        r.scope,
        r.diff,
        r.note,
        r.at,
        r.by
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Every revision, oldest first.
pub async fn revisions(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Vec<RevisionRow>> {
    sqlx::query_as!(
        RevisionRow,
        r#"SELECT r.number, r.plan, r.scope, r.diff, r.note, r.created_at, r.created_by,
                  u.username AS author_username
           FROM release_revisions r JOIN users u ON u.id = r.created_by
           WHERE r.release_id = $1 ORDER BY r.number"#,
        id
    )
    .fetch_all(conn)
    .await
}

/// Everyone who wrote or edited a revision of the plan.
pub async fn planners(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        r#"SELECT DISTINCT created_by AS "created_by!" FROM release_revisions WHERE release_id = $1"#,
        id
    )
    .fetch_all(conn)
    .await
}

/// A change in scope now, with what the release's rules read of it.
#[derive(Debug, Clone)]
pub struct ScopeRow {
    pub change_id: Uuid,
    pub number: i64,
    pub title: String,
    pub state: String,
    pub risk_level: String,
    pub revision: i32,
    /// The revision CAB approved, if any.
    pub approved_revision: Option<i32>,
    /// The level the current revision's assessment gave it, if assessed.
    pub assessed_level: Option<String>,
    pub services: Vec<String>,
    pub added_at: DateTime<Utc>,
    pub added_reason: String,
    pub added_by_username: String,
}

pub async fn scope(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Vec<ScopeRow>> {
    sqlx::query_as!(
        ScopeRow,
        r#"SELECT s.change_id, c.number, c.title, c.state, c.risk_level, c.revision,
                  c.approved_revision,
                  (SELECT a.assessed_level FROM change_assessments a
                   WHERE a.change_id = c.id AND a.revision = c.revision
                     AND a.superseded_at IS NULL
                   ORDER BY a.created_at DESC LIMIT 1) AS assessed_level,
                  c.services, s.added_at, s.added_reason, u.username AS added_by_username
           FROM release_scope s
           JOIN changes c ON c.id = s.change_id
           JOIN users u ON u.id = s.added_by
           WHERE s.release_id = $1 AND s.removed_at IS NULL
           ORDER BY c.number"#,
        id
    )
    .fetch_all(conn)
    .await
}

/// A change that left the scope, and why.
#[derive(Debug, Clone)]
pub struct RemovedRow {
    pub number: i64,
    pub title: String,
    pub removed_at: DateTime<Utc>,
    pub removed_reason: String,
    pub removed_by_username: String,
}

pub async fn removed(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Vec<RemovedRow>> {
    sqlx::query_as!(
        RemovedRow,
        r#"SELECT c.number, c.title, s.removed_at AS "removed_at!",
                  s.removed_reason AS "removed_reason!", u.username AS removed_by_username
           FROM release_scope s
           JOIN changes c ON c.id = s.change_id
           JOIN users u ON u.id = s.removed_by
           WHERE s.release_id = $1 AND s.removed_at IS NOT NULL
           ORDER BY s.removed_at"#,
        id
    )
    .fetch_all(conn)
    .await
}

/// The authors of the changes in scope now, and everyone who has ever
/// contributed to one (leaving a change's list does not make anyone
/// independent of it).
pub async fn change_authors(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        r#"SELECT c.author_id AS "who!" FROM release_scope s JOIN changes c ON c.id = s.change_id
           WHERE s.release_id = $1 AND s.removed_at IS NULL
           UNION
           SELECT h.user_id FROM release_scope s
           JOIN change_contributor_history h ON h.change_id = s.change_id
           WHERE s.release_id = $1 AND s.removed_at IS NULL
           UNION
           SELECT cc.user_id FROM release_scope s
           JOIN change_contributors cc ON cc.change_id = s.change_id
           WHERE s.release_id = $1 AND s.removed_at IS NULL"#,
        id
    )
    .fetch_all(conn)
    .await
}

/// Adds a change to the scope. `false` when it is in a release already
/// (this one or another): a change goes out with one release at a time.
pub async fn add_to_scope(
    conn: &mut PgConnection,
    id: Uuid,
    change: Uuid,
    by: Uuid,
    at: DateTime<Utc>,
    reason: &str,
) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "INSERT INTO release_scope (release_id, change_id, added_by, added_at, added_reason)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (change_id) WHERE removed_at IS NULL DO NOTHING",
        id,
        change,
        by,
        at,
        reason
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Takes a change out of the scope; `false` when it was not in it.
pub async fn remove_from_scope(
    conn: &mut PgConnection,
    id: Uuid,
    change: Uuid,
    by: Uuid,
    at: DateTime<Utc>,
    reason: &str,
) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE release_scope SET removed_by = $3, removed_at = $4, removed_reason = $5
         WHERE release_id = $1 AND change_id = $2 AND removed_at IS NULL",
        id,
        change,
        by,
        at,
        reason
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Frees every change of a cancelled release, so another may take it.
pub async fn release_scope(
    conn: &mut PgConnection,
    id: Uuid,
    by: Uuid,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE release_scope SET removed_by = $2, removed_at = $3, removed_reason = 'The release was cancelled.'
         WHERE release_id = $1 AND removed_at IS NULL",
        id,
        by,
        at
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The release a change is in now, if any.
pub async fn release_of_change(
    conn: &mut PgConnection,
    change: Uuid,
) -> sqlx::Result<Option<(Uuid, i64, String)>> {
    let row = sqlx::query!(
        "SELECT r.id, r.number, r.name FROM release_scope s JOIN releases r ON r.id = s.release_id
         WHERE s.change_id = $1 AND s.removed_at IS NULL",
        change
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| (r.id, r.number, r.name)))
}

#[derive(Debug, Clone)]
pub struct ReleaseVoteRow {
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

/// Every vote, oldest first (superseded ones included).
pub async fn votes(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Vec<ReleaseVoteRow>> {
    sqlx::query_as!(
        ReleaseVoteRow,
        r#"SELECT id, revision, voter_id, voter_username, voter_roles, choice, comment, created_at,
                  superseded_at
           FROM release_votes WHERE release_id = $1 ORDER BY created_at, id"#,
        id
    )
    .fetch_all(conn)
    .await
}

pub struct NewReleaseVote<'a> {
    pub release_id: Uuid,
    pub revision: i32,
    pub voter_id: Uuid,
    pub voter_username: &'a str,
    pub voter_roles: &'a [String],
    pub choice: &'a str,
    pub comment: &'a str,
    pub at: DateTime<Utc>,
}

/// Records a vote; the voter's earlier vote on the same revision is
/// superseded.
pub async fn insert_vote(conn: &mut PgConnection, v: &NewReleaseVote<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE release_votes SET superseded_at = $4
         WHERE release_id = $1 AND revision = $2 AND voter_id = $3 AND superseded_at IS NULL",
        v.release_id,
        v.revision,
        v.voter_id,
        v.at
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO release_votes (id, release_id, revision, voter_id, voter_username, voter_roles,
                                    choice, comment, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        Uuid::new_v4(),
        v.release_id,
        v.revision,
        v.voter_id,
        v.voter_username,
        v.voter_roles,
        v.choice,
        v.comment,
        v.at
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Successful deployments of the scope's changes since `since`: what the
/// phases' progress is read from.
#[derive(Debug, Clone)]
pub struct PhaseDeploymentRow {
    pub change_id: Uuid,
    pub environment: String,
    pub finished_at: DateTime<Utc>,
}

pub async fn deployments_since(
    conn: &mut PgConnection,
    id: Uuid,
    since: DateTime<Utc>,
) -> sqlx::Result<Vec<PhaseDeploymentRow>> {
    sqlx::query_as!(
        PhaseDeploymentRow,
        r#"SELECT d.change_id, d.environment, d.finished_at AS "finished_at!"
           FROM deployments d
           JOIN release_scope s ON s.change_id = d.change_id AND s.release_id = $1 AND s.removed_at IS NULL
           WHERE d.state = 'succeeded' AND d.finished_at IS NOT NULL AND d.finished_at >= $2
           ORDER BY d.finished_at"#,
        id,
        since
    )
    .fetch_all(conn)
    .await
}

/// The release a change is in, while it is not over, for the deployment
/// gate: its name, state, plan and phase.
#[derive(Debug, Clone)]
pub struct GateReleaseRow {
    pub number: i64,
    pub name: String,
    pub version: String,
    pub state: String,
    pub plan: Value,
    pub current_phase: Option<i32>,
    pub phase_opened_at: Option<DateTime<Utc>>,
    pub rolled_back_phase: Option<i32>,
}

pub async fn gate_release(
    conn: &mut PgConnection,
    change: Uuid,
) -> sqlx::Result<Option<GateReleaseRow>> {
    sqlx::query_as!(
        GateReleaseRow,
        r#"SELECT r.number, r.name, r.version, r.state, r.plan, r.current_phase, r.phase_opened_at,
                  r.rolled_back_phase
           FROM release_scope s JOIN releases r ON r.id = s.release_id
           WHERE s.change_id = $1 AND s.removed_at IS NULL
             AND r.state NOT IN ('completed', 'cancelled')"#,
        change
    )
    .fetch_optional(conn)
    .await
}

/// Releases whose milestones fall in [from, to), for the calendar, with
/// the services their changes name.
#[derive(Debug, Clone)]
pub struct MilestoneRow {
    pub id: Uuid,
    pub number: i64,
    pub name: String,
    pub version: String,
    pub state: String,
    pub plan: Value,
    pub services: Vec<String>,
}

pub async fn with_milestones_in(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<Vec<MilestoneRow>> {
    sqlx::query_as!(
        MilestoneRow,
        r#"SELECT r.id, r.number, r.name, r.version, r.state, r.plan,
                  COALESCE((SELECT array_agg(DISTINCT svc ORDER BY svc)
                            FROM release_scope s JOIN changes c ON c.id = s.change_id,
                                 unnest(c.services) AS svc
                            WHERE s.release_id = r.id AND s.removed_at IS NULL),
                           '{}') AS "services!"
           FROM releases r
           WHERE r.state <> 'cancelled'
             AND r.deploy_at < $2::timestamptz + interval '400 days'
             AND r.deploy_at >= $1::timestamptz - interval '400 days'
             AND EXISTS (SELECT 1 FROM jsonb_each_text(r.plan -> 'milestones') m
                         WHERE m.value::timestamptz >= $1 AND m.value::timestamptz < $2)
           ORDER BY r.deploy_at, r.number LIMIT 500"#,
        from,
        to
    )
    .fetch_all(conn)
    .await
}
