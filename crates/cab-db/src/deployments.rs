//! Environments, freezes, deployments and the keys that sign their
//! authorizations.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentRow {
    pub key: String,
    pub label: String,
    pub rank: i32,
    pub production: bool,
    pub needs_approval: bool,
    pub needs_promotion: bool,
    pub soak_minutes: i32,
    pub colour: String,
}

/// Every environment, lowest rank first.
pub async fn environments(conn: &mut PgConnection) -> sqlx::Result<Vec<EnvironmentRow>> {
    sqlx::query_as!(
        EnvironmentRow,
        "SELECT key, label, rank, production, needs_approval, needs_promotion, soak_minutes, colour
         FROM environments ORDER BY rank"
    )
    .fetch_all(&mut *conn)
    .await
}

/// Replaces the environments with `rows`: new ones are added, existing ones
/// updated, and those missing removed (which fails while deployments name
/// them). Ranks are swapped through negative values so the unique rank never
/// collides half-way.
pub async fn replace_environments(
    conn: &mut PgConnection,
    rows: &[EnvironmentRow],
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    let keys: Vec<String> = rows.iter().map(|r| r.key.clone()).collect();
    sqlx::query!("DELETE FROM environments WHERE NOT (key = ANY($1))", &keys)
        .execute(&mut *conn)
        .await?;
    sqlx::query!("UPDATE environments SET rank = -rank")
        .execute(&mut *conn)
        .await?;
    for r in rows {
        sqlx::query!(
            "INSERT INTO environments (key, label, rank, production, needs_approval, needs_promotion, soak_minutes, colour, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (key) DO UPDATE SET label = $2, rank = $3, production = $4, needs_approval = $5,
                 needs_promotion = $6, soak_minutes = $7, colour = $8, updated_at = $9",
            r.key,
            r.label,
            r.rank,
            r.production,
            r.needs_approval,
            r.needs_promotion,
            r.soak_minutes,
            r.colour,
            at
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Whether any deployment names the environment.
pub async fn environment_in_use(conn: &mut PgConnection, key: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM deployments WHERE environment = $1) AS "used!""#,
        key
    )
    .fetch_one(&mut *conn)
    .await
}

/// The environments a service account may deploy to.
pub async fn account_environments(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        "SELECT a.environment FROM account_environments a JOIN environments e ON e.key = a.environment
         WHERE a.user_id = $1 ORDER BY e.rank",
        user_id
    )
    .fetch_all(&mut *conn)
    .await
}

pub async fn set_account_environments(
    conn: &mut PgConnection,
    user_id: Uuid,
    environments: &[String],
) -> sqlx::Result<()> {
    sqlx::query!(
        "DELETE FROM account_environments WHERE user_id = $1",
        user_id
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO account_environments (user_id, environment) SELECT $1, unnest($2::text[])",
        user_id,
        environments
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct FreezeRow {
    pub id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub reason: String,
    pub environments: Vec<String>,
    pub services: Vec<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub lifted_at: Option<DateTime<Utc>>,
}

pub struct NewFreeze<'a> {
    pub id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub reason: &'a str,
    pub environments: &'a [String],
    pub services: &'a [String],
    pub created_by: Uuid,
    pub at: DateTime<Utc>,
}

pub async fn insert_freeze(conn: &mut PgConnection, f: &NewFreeze<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO freezes (id, starts_at, ends_at, reason, environments, services, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        f.id,
        f.starts_at,
        f.ends_at,
        f.reason,
        f.environments,
        f.services,
        f.created_by,
        f.at
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Lifts a freeze that has not ended: it ends now. Whether one was lifted.
pub async fn lift_freeze(
    conn: &mut PgConnection,
    id: Uuid,
    by: Uuid,
    at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE freezes SET lifted_at = $3, lifted_by = $2, ends_at = greatest(starts_at + interval '1 microsecond', least(ends_at, $3))
         WHERE id = $1 AND lifted_at IS NULL AND ends_at > $3",
        id,
        by,
        at
    )
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Freezes that have not ended by `after`, soonest first.
pub async fn freezes_after(
    conn: &mut PgConnection,
    after: DateTime<Utc>,
) -> sqlx::Result<Vec<FreezeRow>> {
    sqlx::query_as!(
        FreezeRow,
        "SELECT f.id, f.starts_at, f.ends_at, f.reason, f.environments, f.services, u.username AS created_by,
                f.created_at, f.lifted_at
         FROM freezes f JOIN users u ON u.id = f.created_by
         WHERE f.ends_at > $1 ORDER BY f.starts_at, f.id",
        after
    )
    .fetch_all(&mut *conn)
    .await
}

/// Every freeze, latest first (at most `limit`).
pub async fn freezes(conn: &mut PgConnection, limit: i64) -> sqlx::Result<Vec<FreezeRow>> {
    sqlx::query_as!(
        FreezeRow,
        "SELECT f.id, f.starts_at, f.ends_at, f.reason, f.environments, f.services, u.username AS created_by,
                f.created_at, f.lifted_at
         FROM freezes f JOIN users u ON u.id = f.created_by
         ORDER BY f.starts_at DESC, f.id LIMIT $1",
        limit
    )
    .fetch_all(&mut *conn)
    .await
}

#[derive(Debug, Clone)]
pub struct DeploymentRow {
    pub id: Uuid,
    pub number: i64,
    pub change_id: Uuid,
    pub change_number: i64,
    pub change_title: String,
    pub revision: i32,
    pub environment: String,
    pub artifact_name: String,
    pub artifact_version: String,
    pub artifact_digest: String,
    pub services: Vec<String>,
    pub initiator_id: Uuid,
    pub initiator: String,
    pub executor_id: Uuid,
    pub executor: String,
    pub pipeline_provider: String,
    pub pipeline_run_id: String,
    pub pipeline_url: String,
    pub state: String,
    pub authorized_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub token_id: Uuid,
    pub token_used_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub rolled_back_at: Option<DateTime<Utc>>,
    pub note: String,
    pub updated_at: DateTime<Utc>,
}

pub struct NewDeployment<'a> {
    pub id: Uuid,
    pub change_id: Uuid,
    pub revision: i32,
    pub environment: &'a str,
    pub artifact_name: &'a str,
    pub artifact_version: &'a str,
    pub artifact_digest: &'a str,
    pub services: &'a [String],
    pub initiator_id: Uuid,
    pub executor_id: Uuid,
    pub pipeline_provider: &'a str,
    pub pipeline_run_id: &'a str,
    pub pipeline_url: &'a str,
    pub authorized_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub token_id: Uuid,
    /// The commits it carries, as the pipeline reported them, and when the
    /// first of them was made.
    pub commit_shas: &'a [String],
    pub first_commit_at: Option<DateTime<Utc>>,
}

/// The constraint that lets one deployment of a change to an environment be
/// under way at a time.
pub const ONE_UNDER_WAY: &str = "deployments_one_under_way";

pub async fn insert(conn: &mut PgConnection, d: &NewDeployment<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO deployments (id, change_id, revision, environment, artifact_name, artifact_version,
             artifact_digest, services, initiator_id, executor_id, pipeline_provider, pipeline_run_id,
             pipeline_url, state, authorized_at, expires_at, token_id, updated_at, commit_shas, first_commit_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'authorized', $14, $15, $16, $14, $17, $18)",
        d.id,
        d.change_id,
        d.revision,
        d.environment,
        d.artifact_name,
        d.artifact_version,
        d.artifact_digest,
        d.services,
        d.initiator_id,
        d.executor_id,
        d.pipeline_provider,
        d.pipeline_run_id,
        d.pipeline_url,
        d.authorized_at,
        d.expires_at,
        d.token_id,
        d.commit_shas,
        d.first_commit_at
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Authorizations of the change to the environment that were never started
/// and have run out become expired, so they no longer hold the environment.
pub async fn expire_stale(
    conn: &mut PgConnection,
    change_id: Uuid,
    environment: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        "UPDATE deployments SET state = 'expired', updated_at = $3
         WHERE change_id = $1 AND environment = $2 AND state = 'authorized' AND expires_at <= $3
         RETURNING id",
        change_id,
        environment,
        now
    )
    .fetch_all(&mut *conn)
    .await
}

/// Whether a deployment of the change to the environment is authorized (and
/// not run out) or started.
pub async fn under_way(
    conn: &mut PgConnection,
    change_id: Uuid,
    environment: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM deployments WHERE change_id = $1 AND environment = $2
               AND (state = 'started' OR (state = 'authorized' AND expires_at > $3))) AS "under_way!""#,
        change_id,
        environment,
        now
    )
    .fetch_one(&mut *conn)
    .await
}

/// When the artifact last finished successfully in the environment (and was
/// not rolled back since).
pub async fn succeeded_at(
    conn: &mut PgConnection,
    digest: &str,
    environment: &str,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar!(
        "SELECT max(finished_at) FROM deployments
         WHERE artifact_digest = $1 AND environment = $2 AND state = 'succeeded'",
        digest,
        environment
    )
    .fetch_one(&mut *conn)
    .await
}

macro_rules! select_deployments {
    ($tail:literal $(, $arg:expr)*) => {
        sqlx::query_as!(
            DeploymentRow,
            r#"SELECT d.id, d.number, d.change_id, c.number AS change_number, c.title AS change_title,
                      d.revision, d.environment, d.artifact_name, d.artifact_version, d.artifact_digest,
                      d.services, d.initiator_id, i.username AS initiator, d.executor_id, x.username AS executor,
                      d.pipeline_provider, d.pipeline_run_id, d.pipeline_url, d.state, d.authorized_at,
                      d.expires_at, d.token_id, d.token_used_at, d.started_at, d.finished_at,
                      d.rolled_back_at, d.note, d.updated_at
               FROM deployments d
               JOIN changes c ON c.id = d.change_id
               JOIN users i ON i.id = d.initiator_id
               JOIN users x ON x.id = d.executor_id "# + $tail
            $(, $arg)*
        )
    };
}

pub async fn find(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<DeploymentRow>> {
    select_deployments!("WHERE d.id = $1", id)
        .fetch_optional(&mut *conn)
        .await
}

/// Locks the deployment for the rest of the transaction.
pub async fn find_for_update(
    conn: &mut PgConnection,
    id: Uuid,
) -> sqlx::Result<Option<DeploymentRow>> {
    select_deployments!("WHERE d.id = $1 FOR UPDATE OF d", id)
        .fetch_optional(&mut *conn)
        .await
}

pub async fn id_by_number(conn: &mut PgConnection, number: i64) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!("SELECT id FROM deployments WHERE number = $1", number)
        .fetch_optional(&mut *conn)
        .await
}

/// The change's deployments, newest first.
pub async fn for_change(
    conn: &mut PgConnection,
    change_id: Uuid,
) -> sqlx::Result<Vec<DeploymentRow>> {
    select_deployments!("WHERE d.change_id = $1 ORDER BY d.number DESC", change_id)
        .fetch_all(&mut *conn)
        .await
}

/// What a list of deployments is filtered by; `None` is any.
#[derive(Debug, Clone, Default)]
pub struct DeploymentFilter {
    pub environment: Option<String>,
    pub state: Option<String>,
    pub change_id: Option<Uuid>,
    pub service: Option<String>,
    /// Only those numbered below (the next page).
    pub before: Option<i64>,
}

/// Deployments, newest first, at most `limit`.
pub async fn list(
    conn: &mut PgConnection,
    f: &DeploymentFilter,
    limit: i64,
) -> sqlx::Result<Vec<DeploymentRow>> {
    select_deployments!(
        "WHERE ($1::text IS NULL OR d.environment = $1)
           AND ($2::text IS NULL OR d.state = $2)
           AND ($3::uuid IS NULL OR d.change_id = $3)
           AND ($4::text IS NULL OR $4 = ANY(d.services))
           AND ($5::bigint IS NULL OR d.number < $5)
         ORDER BY d.number DESC LIMIT $6",
        f.environment,
        f.state,
        f.change_id,
        f.service,
        f.before,
        limit
    )
    .fetch_all(&mut *conn)
    .await
}

/// What a report moves a deployment to, with the times it sets.
pub struct Moved<'a> {
    pub id: Uuid,
    pub to: &'a str,
    pub at: DateTime<Utc>,
    pub note: &'a str,
}

/// Moves the deployment to its next state, setting the time that state
/// records. The caller has checked the transition on the locked row.
pub async fn move_to(conn: &mut PgConnection, m: &Moved<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE deployments SET state = $2, updated_at = $3,
             token_used_at = CASE WHEN $2 = 'started' THEN $3 ELSE token_used_at END,
             started_at = CASE WHEN $2 = 'started' THEN $3 ELSE started_at END,
             finished_at = CASE WHEN $2 IN ('succeeded', 'failed', 'expired', 'aborted') THEN $3 ELSE finished_at END,
             rolled_back_at = CASE WHEN $2 = 'rolled_back' THEN $3 ELSE rolled_back_at END,
             note = CASE WHEN $4 = '' THEN note ELSE $4 END
         WHERE id = $1",
        m.id,
        m.to,
        m.at,
        m.note
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct SigningKeyRow {
    pub kid: String,
    pub public_key: Vec<u8>,
    pub sealed_private: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
}

/// Every signing key, the active one first, then newest first.
pub async fn signing_keys(conn: &mut PgConnection) -> sqlx::Result<Vec<SigningKeyRow>> {
    sqlx::query_as!(
        SigningKeyRow,
        "SELECT kid, public_key, sealed_private, created_at, retired_at FROM signing_keys
         ORDER BY retired_at IS NOT NULL, created_at DESC"
    )
    .fetch_all(&mut *conn)
    .await
}

/// Serialises key rotation across replicas for the rest of the transaction.
pub async fn lock_signing_keys(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query!("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Retires the active key (if any) and makes `row` the one that signs.
pub async fn rotate_signing_key(conn: &mut PgConnection, row: &SigningKeyRow) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL",
        row.created_at
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO signing_keys (kid, public_key, sealed_private, created_at) VALUES ($1, $2, $3, $4)",
        row.kid,
        row.public_key,
        row.sealed_private,
        row.created_at
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The people who voted to approve the change, on any of its revisions (a
/// vote they later changed does not count).
pub async fn approvers(conn: &mut PgConnection, change_id: Uuid) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        "SELECT DISTINCT voter_id FROM change_votes
         WHERE change_id = $1 AND choice = 'approve' AND superseded_at IS NULL",
        change_id
    )
    .fetch_all(&mut *conn)
    .await
}

/// A setting's boolean value; `None` when unset or not a boolean.
pub async fn bool_setting(conn: &mut PgConnection, key: &str) -> sqlx::Result<Option<bool>> {
    Ok(
        sqlx::query_scalar!("SELECT value FROM settings WHERE key = $1", key)
            .fetch_optional(&mut *conn)
            .await?
            .and_then(|v| v.as_bool()),
    )
}

/// What a freeze warning needs to know of a change: its planned window, its
/// services and its target environments.
#[derive(Debug, Clone)]
pub struct ChangeWindow {
    pub change_id: Uuid,
    pub window_start: Option<DateTime<Utc>>,
    pub window_end: Option<DateTime<Utc>>,
    pub services: Vec<String>,
    pub environments: Vec<String>,
}

/// The planned windows of the changes named, for the freezes they overlap.
pub async fn change_windows(
    conn: &mut PgConnection,
    change_ids: &[Uuid],
) -> sqlx::Result<Vec<ChangeWindow>> {
    type Row = (
        Uuid,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        Vec<String>,
        Vec<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, window_start, window_end, services, environments FROM changes WHERE id = ANY($1)",
    )
    .bind(change_ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(change_id, window_start, window_end, services, environments)| ChangeWindow {
                change_id,
                window_start,
                window_end,
                services,
                environments,
            },
        )
        .collect())
}

/// A freeze as its pages and answers show it: with who declared it and who
/// lifted it, by username and by the name people know them by.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FreezeLine {
    pub id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub reason: String,
    pub environments: Vec<String>,
    pub services: Vec<String>,
    pub created_by: String,
    pub created_by_name: String,
    pub created_at: DateTime<Utc>,
    pub lifted_at: Option<DateTime<Utc>>,
    pub lifted_by: Option<String>,
    pub lifted_by_name: Option<String>,
}

const FREEZE_LINES: &str = "SELECT f.id, f.starts_at, f.ends_at, f.reason, f.environments, f.services,
        c.username AS created_by,
        CASE WHEN btrim(c.display_name) = '' THEN c.username ELSE c.display_name END AS created_by_name,
        f.created_at, f.lifted_at, l.username AS lifted_by,
        CASE WHEN btrim(l.display_name) = '' THEN l.username ELSE l.display_name END AS lifted_by_name
    FROM freezes f
    JOIN users c ON c.id = f.created_by
    LEFT JOIN users l ON l.id = f.lifted_by";

pub async fn freeze_line(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<FreezeLine>> {
    sqlx::query_as::<_, FreezeLine>(&format!("{FREEZE_LINES} WHERE f.id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
}

/// Freezes in force at `now` or still to come, soonest first.
pub async fn freeze_lines_ahead(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<FreezeLine>> {
    sqlx::query_as::<_, FreezeLine>(&format!(
        "{FREEZE_LINES} WHERE f.ends_at > $1 AND f.lifted_at IS NULL ORDER BY f.starts_at, f.ends_at, f.id"
    ))
    .bind(now)
    .fetch_all(&mut *conn)
    .await
}

/// Freezes that ended (or were lifted) by `now` and after `since`, the
/// latest first, at most `limit`.
pub async fn freeze_lines_past(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    since: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<Vec<FreezeLine>> {
    sqlx::query_as::<_, FreezeLine>(&format!(
        "{FREEZE_LINES} WHERE (f.ends_at <= $1 OR f.lifted_at IS NOT NULL) AND f.ends_at > $2
         ORDER BY f.ends_at DESC, f.id LIMIT $3"
    ))
    .bind(now)
    .bind(since)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
}

/// Lifts a freeze that is in force or still to come, at `at`: one in force
/// ends then; one still to come is moved to end then too, so nothing reads
/// it as a period ahead any more. Whether one was lifted.
pub async fn lift_freeze_at(
    conn: &mut PgConnection,
    id: Uuid,
    by: Uuid,
    at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE freezes SET lifted_at = $3, lifted_by = $2,
             starts_at = least(starts_at, $3),
             ends_at = greatest(least(starts_at, $3) + interval '1 microsecond', least(ends_at, $3))
         WHERE id = $1 AND lifted_at IS NULL AND ends_at > $3",
    )
    .bind(id)
    .bind(by)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
