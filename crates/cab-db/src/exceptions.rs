//! The exceptions to the usual path of a deployment: break-glass requests,
//! and what runtimes saw running that no deployment covers.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// A break-glass request, with the names its pages and answers show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlassRow {
    pub id: Uuid,
    pub number: i64,
    pub change_id: Uuid,
    pub change_number: i64,
    pub change_title: String,
    pub environment: String,
    pub revision: i32,
    pub artifact_digest: String,
    pub reason: String,
    pub incident: String,
    pub requested_by: Uuid,
    pub requester: String,
    pub requested_at: DateTime<Utc>,
    pub confirmed_by: Option<Uuid>,
    pub confirmer: Option<String>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub deployment_id: Option<Uuid>,
    pub deployment_number: Option<i64>,
    pub deployment_state: Option<String>,
}

pub struct NewBreakGlass<'a> {
    pub id: Uuid,
    pub change_id: Uuid,
    pub environment: &'a str,
    pub revision: i32,
    pub artifact_digest: &'a str,
    pub reason: &'a str,
    pub incident: &'a str,
    pub requested_by: Uuid,
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_break_glass(
    conn: &mut PgConnection,
    b: &NewBreakGlass<'_>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO break_glass (id, change_id, environment, reason, incident, requested_by, requested_at, expires_at,
             revision, artifact_digest)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        b.id,
        b.change_id,
        b.environment,
        b.reason,
        b.incident,
        b.requested_by,
        b.requested_at,
        b.expires_at,
        b.revision,
        b.artifact_digest,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Break-glass requests, newest first, before `before` (a number) when given.
pub async fn break_glass(
    conn: &mut PgConnection,
    id: Option<Uuid>,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<BreakGlassRow>> {
    sqlx::query_as!(
        BreakGlassRow,
        r#"SELECT b.id, b.number, b.change_id, c.number AS change_number, c.title AS change_title,
                  b.environment, b.revision, b.artifact_digest, b.reason, b.incident, b.requested_by, r.username AS requester,
                  b.requested_at, b.confirmed_by, k.username AS "confirmer?", b.confirmed_at,
                  b.expires_at, b.deployment_id, d.number AS "deployment_number?",
                  d.state AS "deployment_state?"
           FROM break_glass b
           JOIN changes c ON c.id = b.change_id
           JOIN users r ON r.id = b.requested_by
           LEFT JOIN users k ON k.id = b.confirmed_by
           LEFT JOIN deployments d ON d.id = b.deployment_id
           WHERE ($1::uuid IS NULL OR b.id = $1)
             AND ($2::bigint IS NULL OR b.number < $2)
           ORDER BY b.number DESC
           LIMIT $3"#,
        id,
        before,
        limit,
    )
    .fetch_all(&mut *conn)
    .await
}

/// Locks a break-glass request for a decision on it.
pub async fn lock_break_glass(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<bool> {
    Ok(
        sqlx::query_scalar!("SELECT id FROM break_glass WHERE id = $1 FOR UPDATE", id)
            .fetch_optional(&mut *conn)
            .await?
            .is_some(),
    )
}

pub async fn break_glass_id_by_number(
    conn: &mut PgConnection,
    number: i64,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!("SELECT id FROM break_glass WHERE number = $1", number)
        .fetch_optional(&mut *conn)
        .await
}

/// Confirms a waiting break-glass; false when it was not waiting.
pub async fn confirm_break_glass(
    conn: &mut PgConnection,
    id: Uuid,
    by: Uuid,
    at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    Ok(sqlx::query!(
        "UPDATE break_glass SET confirmed_by = $2, confirmed_at = $3, expires_at = $4
         WHERE id = $1 AND confirmed_by IS NULL",
        id,
        by,
        at,
        expires_at,
    )
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1)
}

/// Records that the break-glass authorized `deployment`; it does so once,
/// while confirmed and unexpired. False when it may not.
pub async fn use_break_glass(
    conn: &mut PgConnection,
    id: Uuid,
    deployment: Uuid,
    at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let used = sqlx::query!(
        "UPDATE break_glass SET deployment_id = $2
          WHERE id = $1 AND deployment_id IS NULL AND confirmed_at IS NOT NULL AND expires_at > $3",
        id,
        deployment,
        at
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if used != 1 {
        return Ok(false);
    }
    sqlx::query!(
        "UPDATE deployments SET break_glass_id = $1 WHERE id = $2",
        id,
        deployment
    )
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

/// The break-glass that authorized `deployment`, if one did.
pub async fn break_glass_of(
    conn: &mut PgConnection,
    deployment: Uuid,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!(
        "SELECT id FROM break_glass WHERE deployment_id = $1",
        deployment
    )
    .fetch_optional(&mut *conn)
    .await
}

/// What a runtime saw running, with what covers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedRow {
    pub id: Uuid,
    pub number: i64,
    pub environment: String,
    pub service: String,
    pub artifact_digest: String,
    pub observed_at: DateTime<Utc>,
    pub reported_by: Uuid,
    pub reporter: String,
    pub reported_at: DateTime<Utc>,
    pub deployment_id: Option<Uuid>,
    pub deployment_number: Option<i64>,
    pub finding: bool,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolver: Option<String>,
    pub resolution: String,
}

pub struct NewObserved<'a> {
    pub id: Uuid,
    pub environment: &'a str,
    pub service: &'a str,
    pub digest: &'a str,
    pub observed_at: DateTime<Utc>,
    pub reported_by: Uuid,
    pub reported_at: DateTime<Utc>,
    pub deployment_id: Option<Uuid>,
    pub finding: bool,
}

pub async fn insert_observed(conn: &mut PgConnection, o: &NewObserved<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        "INSERT INTO observed_deployments (id, environment, service, artifact_digest, observed_at,
             reported_by, reported_at, deployment_id, finding)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         RETURNING number",
        o.id,
        o.environment,
        o.service,
        o.digest,
        o.observed_at,
        o.reported_by,
        o.reported_at,
        o.deployment_id,
        o.finding,
    )
    .fetch_one(&mut *conn)
    .await
}

/// The deployment that covers `digest` running as `service` in
/// `environment` at `at`: one of that digest, for that service (or naming
/// no service), started by then (give or take `skew` between clocks) and
/// started or succeeded still.
pub async fn covering_deployment(
    conn: &mut PgConnection,
    environment: &str,
    service: &str,
    digest: &str,
    at: DateTime<Utc>,
    skew_seconds: f64,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!(
        "SELECT id FROM deployments
         WHERE environment = $1 AND artifact_digest = $3
           AND state IN ('started', 'succeeded')
           AND (cardinality(services) = 0 OR $2 = ANY(services))
           AND started_at <= $4::timestamptz + make_interval(secs => $5::float8)
         ORDER BY number DESC
         LIMIT 1",
        environment,
        service,
        digest,
        at,
        skew_seconds,
    )
    .fetch_optional(&mut *conn)
    .await
}

/// One observation.
pub async fn observed_one(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<ObservedRow>> {
    sqlx::query_as!(
        ObservedRow,
        r#"SELECT o.id, o.number, o.environment, o.service, o.artifact_digest, o.observed_at,
                  o.reported_by, r.username AS reporter, o.reported_at, o.deployment_id,
                  d.number AS "deployment_number?", o.finding, o.resolved_at,
                  k.username AS "resolver?", o.resolution
           FROM observed_deployments o
           JOIN users r ON r.id = o.reported_by
           LEFT JOIN users k ON k.id = o.resolved_by
           LEFT JOIN deployments d ON d.id = o.deployment_id
           WHERE o.id = $1"#,
        id,
    )
    .fetch_optional(&mut *conn)
    .await
}

/// Observations, newest first: only open findings when `open_findings`.
pub async fn observed(
    conn: &mut PgConnection,
    open_findings: bool,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<ObservedRow>> {
    sqlx::query_as!(
        ObservedRow,
        r#"SELECT o.id, o.number, o.environment, o.service, o.artifact_digest, o.observed_at,
                  o.reported_by, r.username AS reporter, o.reported_at, o.deployment_id,
                  d.number AS "deployment_number?", o.finding, o.resolved_at,
                  k.username AS "resolver?", o.resolution
           FROM observed_deployments o
           JOIN users r ON r.id = o.reported_by
           LEFT JOIN users k ON k.id = o.resolved_by
           LEFT JOIN deployments d ON d.id = o.deployment_id
           WHERE (NOT $1 OR (o.finding AND o.resolved_at IS NULL))
             AND ($2::bigint IS NULL OR o.number < $2)
           ORDER BY o.number DESC
           LIMIT $3"#,
        open_findings,
        before,
        limit,
    )
    .fetch_all(&mut *conn)
    .await
}

/// How many findings nobody has resolved yet.
pub async fn open_findings(conn: &mut PgConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM observed_deployments WHERE finding AND resolved_at IS NULL"#
    )
    .fetch_one(&mut *conn)
    .await
}

/// Resolves an open finding with what was found; false when there is none.
pub async fn resolve_finding(
    conn: &mut PgConnection,
    id: Uuid,
    by: Uuid,
    at: DateTime<Utc>,
    resolution: &str,
) -> sqlx::Result<bool> {
    Ok(sqlx::query!(
        "UPDATE observed_deployments SET resolved_at = $3, resolved_by = $2, resolution = $4
         WHERE id = $1 AND finding AND resolved_at IS NULL",
        id,
        by,
        at,
        resolution,
    )
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1)
}
