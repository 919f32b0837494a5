//! The measures of change, computed in SQL from the records: the
//! deployments, the changes, their decisions and their reviews. Nothing here
//! is a kept count.
//!
//! The judging happens once per change rather than on every read: a trigger
//! queues a change in `measure_pending` whenever its deployments, decision
//! or review are written, and [`derive`] turns the queued changes' records
//! into pre-judged rows (`measure_deployments`, `measure_decisions`,
//! `measure_suspected_incidents`), in one transaction under
//! [`lock_refresh`]. The reads below only aggregate those rows.
//!
//! Each row is there once for every service (`service` = '') and once for
//! each service it names: a read for one service scans that service's rows.
//!
//! Every read takes the deployments of `environment` (all production
//! environments when `None`) and `service` (all when `None`) that ended in
//! [`Filter::from`, `Filter::to`), grouped by `bucket` (`week` or `month`,
//! weeks starting on Monday, in UTC). Each returns one row per bucket and a
//! last row for the whole period (`bucket` is `None`): percentiles over the
//! period are computed over its rows, never from the buckets'.
//!
//! Call them in a transaction after [`prepare`].

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Filter {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub environment: Option<String>,
    pub service: Option<String>,
    /// `week` or `month`.
    pub bucket: &'static str,
}

/// Sets the transaction up for the measures: they are a handful of short
/// aggregate statements, which PostgreSQL's JIT compiler makes slower (it
/// compiles for longer than they run).
pub async fn prepare(conn: &mut PgConnection) -> sqlx::Result<()> {
    // One snapshot for every statement: the figures of one answer are of
    // one moment.
    sqlx::query!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *conn)
        .await?;
    sqlx::query!("SET LOCAL jit = off")
        .execute(&mut *conn)
        .await?;
    // However wide the period, a read gives up rather than hold its
    // connection for long.
    sqlx::query!("SET LOCAL statement_timeout = '10s'")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Deployments that ended, per bucket.
#[derive(Debug, Clone)]
pub struct DeploymentMeasures {
    pub bucket: Option<DateTime<Utc>>,
    /// Deployments that ended: succeeded, failed or rolled back.
    pub ended: i64,
    /// Of those, the ones that succeeded (and stayed).
    pub succeeded: i64,
    /// Of those that ended, the ones that failed, were rolled back, needed
    /// an intervention or caused an incident; each counted once.
    pub failed: i64,
    /// The median time between consecutive successful deployments, hours.
    pub gap_p50_hours: Option<f64>,
    /// From failure to restoration, minutes, over the failures restored.
    pub recovery_p50_minutes: Option<f64>,
    pub recovery_p90_minutes: Option<f64>,
    /// Failures with no restoration on record.
    pub unrecovered: i64,
    pub break_glass: i64,
    pub without_commits: i64,
}

pub async fn deployments(
    conn: &mut PgConnection,
    f: &Filter,
) -> sqlx::Result<Vec<DeploymentMeasures>> {
    sqlx::query_as!(
        DeploymentMeasures,
        r#"WITH envs AS MATERIALIZED (
             SELECT coalesce(array_agg(key), '{}') AS keys FROM environments
              WHERE CASE WHEN $3::text IS NULL THEN production ELSE key = $3 END
           ), m AS (
             SELECT m.*, date_trunc($5, m.finished_at, 'UTC') AS bucket,
                    CASE WHEN m.state = 'succeeded' THEN
                      extract(epoch FROM m.finished_at - lag(m.finished_at)
                                OVER (PARTITION BY m.state = 'succeeded' ORDER BY m.finished_at)) / 3600
                    END AS gap_hours
               FROM measure_deployments m, envs
              WHERE m.service = coalesce($4, '') AND m.environment = ANY (envs.keys)
                AND m.finished_at >= $1 AND m.finished_at < $2
           )
           SELECT bucket,
                  count(*) AS "ended!",
                  count(*) FILTER (WHERE state = 'succeeded') AS "succeeded!",
                  count(*) FILTER (WHERE failed) AS "failed!",
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY gap_hours) AS gap_p50_hours,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY recovery_minutes) AS recovery_p50_minutes,
                  percentile_cont(0.9) WITHIN GROUP (ORDER BY recovery_minutes) AS recovery_p90_minutes,
                  count(*) FILTER (WHERE failed AND recovery_minutes IS NULL) AS "unrecovered!",
                  count(*) FILTER (WHERE break_glass) AS "break_glass!",
                  count(*) FILTER (WHERE NOT has_commits) AS "without_commits!"
             FROM m
            GROUP BY GROUPING SETS ((bucket), ())
            ORDER BY bucket NULLS LAST"#,
        f.from,
        f.to,
        f.environment,
        f.service,
        f.bucket,
    )
    .fetch_all(&mut *conn)
    .await
}

/// Changes whose first successful deployment there fell in the bucket.
#[derive(Debug, Clone)]
pub struct ChangeMeasures {
    pub bucket: Option<DateTime<Utc>>,
    pub changes: i64,
    pub emergency: i64,
    /// Of `changes`, those whose deployment reported its commits: their lead
    /// time starts at the first commit; the others' at submission.
    pub from_commit: i64,
    pub lead_p50_hours: Option<f64>,
    pub lead_p90_hours: Option<f64>,
}

pub async fn changes(conn: &mut PgConnection, f: &Filter) -> sqlx::Result<Vec<ChangeMeasures>> {
    sqlx::query_as!(
        ChangeMeasures,
        r#"WITH envs AS MATERIALIZED (
             SELECT coalesce(array_agg(key), '{}') AS keys FROM environments
              WHERE CASE WHEN $3::text IS NULL THEN production ELSE key = $3 END
           )
           SELECT date_trunc($5, m.finished_at, 'UTC') AS bucket,
                  count(*) AS "changes!",
                  count(*) FILTER (WHERE m.emergency) AS "emergency!",
                  count(*) FILTER (WHERE m.from_commit) AS "from_commit!",
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY m.lead_hours) AS lead_p50_hours,
                  percentile_cont(0.9) WITHIN GROUP (ORDER BY m.lead_hours) AS lead_p90_hours
             FROM measure_deployments m, envs
            WHERE m.service = coalesce($4, '') AND m.environment = ANY (envs.keys)
              AND m.finished_at >= $1 AND m.finished_at < $2
              AND CASE WHEN $3::text IS NULL THEN m.first_in_production ELSE m.first_in_environment END
            GROUP BY GROUPING SETS ((1), ())
            ORDER BY 1 NULLS LAST"#,
        f.from,
        f.to,
        f.environment,
        f.service,
        f.bucket,
    )
    .fetch_all(&mut *conn)
    .await
}

/// Decisions made in the bucket, by the engineer's risk level: from
/// submission to the decision.
#[derive(Debug, Clone)]
pub struct ApprovalMeasures {
    pub bucket: Option<DateTime<Utc>>,
    pub risk_level: String,
    pub decided: i64,
    pub p50_hours: Option<f64>,
    pub p90_hours: Option<f64>,
}

/// Decisions are not deployed anywhere: the environment filter does not
/// apply to them.
pub async fn approvals(conn: &mut PgConnection, f: &Filter) -> sqlx::Result<Vec<ApprovalMeasures>> {
    sqlx::query_as!(
        ApprovalMeasures,
        r#"SELECT date_trunc($4, m.decided_at, 'UTC') AS bucket, m.risk_level AS "risk_level!",
                  count(*) AS "decided!",
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY m.hours) AS p50_hours,
                  percentile_cont(0.9) WITHIN GROUP (ORDER BY m.hours) AS p90_hours
             FROM measure_decisions m
            WHERE m.service = coalesce($3, '') AND m.decided_at >= $1 AND m.decided_at < $2
            GROUP BY GROUPING SETS ((1, 2), (2))
            ORDER BY 1 NULLS LAST, m.risk_level"#,
        f.from,
        f.to,
        f.service,
        f.bucket,
    )
    .fetch_all(&mut *conn)
    .await
}

/// What the records lack for the measures to be exact.
#[derive(Debug, Clone)]
pub struct Gaps {
    /// Incidents a break-glass named that no review of its change lists.
    pub incidents_unlinked: i64,
    /// Incidents reviews list whose cause is still only suspected.
    pub incidents_undetermined: i64,
}

pub async fn gaps(conn: &mut PgConnection, f: &Filter) -> sqlx::Result<Gaps> {
    sqlx::query_as!(
        Gaps,
        r#"WITH envs AS MATERIALIZED (
             SELECT coalesce(array_agg(key), '{}') AS keys FROM environments
              WHERE CASE WHEN $3::text IS NULL THEN production ELSE key = $3 END
           )
           SELECT
             (SELECT count(*) FROM break_glass b JOIN changes c ON c.id = b.change_id, envs
               WHERE b.deployment_id IS NOT NULL AND b.environment = ANY (envs.keys)
                 AND b.requested_at >= $1 AND b.requested_at < $2
                 AND ($4::text IS NULL OR $4 = ANY (c.services))
                 AND NOT EXISTS (SELECT 1 FROM reviews r, jsonb_array_elements(r.content->'incidents') x
                                  WHERE r.change_id = b.change_id
                                    AND lower(x->>'reference') = lower(b.incident))) AS "incidents_unlinked!",
             (SELECT count(*) FROM measure_suspected_incidents i
               WHERE i.service = coalesce($4, '') AND i.started_at >= $1 AND i.started_at < $2) AS "incidents_undetermined!""#,
        f.from,
        f.to,
        f.environment,
        f.service,
    )
    .fetch_one(&mut *conn)
    .await
}

/// The services deployments name, for the filter's choices.
pub async fn services(conn: &mut PgConnection) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!("SELECT name FROM services ORDER BY name")
        .fetch_all(&mut *conn)
        .await
}

/// Waits until no other refresh runs, on any server, and holds the turn
/// until the transaction ends: refreshes never interleave, so a failure
/// derived by one is seen by the next when a later deployment restores it.
pub async fn lock_refresh(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtextextended('cab.measures', 0))")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Takes the turn to refresh if no other refresh runs, on any server: a read
/// never waits for one.
pub async fn try_lock_refresh(conn: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT pg_try_advisory_xact_lock(hashtextextended('cab.measures', 0)) AS "got!""#
    )
    .fetch_one(&mut *conn)
    .await
}

/// Where the derived rows stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Bumped by every refresh that derived something: reads at the same
    /// version give the same figures.
    pub version: i64,
    /// Changes whose rows wait to be derived again.
    pub pending: i64,
}

pub async fn freshness(conn: &mut PgConnection) -> sqlx::Result<Freshness> {
    sqlx::query_as!(
        Freshness,
        r#"SELECT version, (SELECT count(*) FROM measure_pending) AS "pending!" FROM measure_state"#
    )
    .fetch_one(&mut *conn)
    .await
}

/// Records that rows were derived.
pub async fn bump_version(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query!("UPDATE measure_state SET version = version + 1, derived_at = now()")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Takes up to `limit` queued changes, oldest first, off the queue. A write
/// that queues one of them again after this waits for the transaction, and
/// queues it anew.
pub async fn take_pending(conn: &mut PgConnection, limit: i64) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        "DELETE FROM measure_pending
          WHERE change_id IN (SELECT change_id FROM measure_pending
                               ORDER BY queued_at, change_id LIMIT $1 FOR UPDATE SKIP LOCKED)
          RETURNING change_id",
        limit,
    )
    .fetch_all(&mut *conn)
    .await
}

/// Derives the rows of `changes` from their records again.
pub async fn derive(conn: &mut PgConnection, changes: &[Uuid]) -> sqlx::Result<()> {
    for statement in [
        sqlx::query!(
            "DELETE FROM measure_deployments WHERE change_id = ANY ($1)",
            changes
        ),
        sqlx::query!(
            "DELETE FROM measure_decisions WHERE change_id = ANY ($1)",
            changes
        ),
        sqlx::query!(
            "DELETE FROM measure_suspected_incidents WHERE change_id = ANY ($1)",
            changes
        ),
    ] {
        statement.execute(&mut *conn).await?;
    }
    sqlx::query!(
        r#"WITH d AS MATERIALIZED (
             SELECT d.id, d.change_id, d.state, d.finished_at, d.rolled_back_at, d.services, d.environment,
                    e.production, d.break_glass_id IS NOT NULL AS break_glass,
                    cardinality(d.commit_shas) > 0 AS has_commits, d.first_commit_at,
                    c.change_type = 'emergency' AS emergency, c.submitted_at
               FROM deployments d JOIN environments e ON e.key = d.environment
                    JOIN changes c ON c.id = d.change_id
              WHERE d.change_id = ANY ($1)
                AND d.state IN ('succeeded', 'failed', 'rolled_back') AND d.finished_at IS NOT NULL
           ), marks AS (
             -- What each change's signed-off review says of production:
             -- whether it needed an intervention, whether it caused
             -- incidents, how long they lasted, and whether one is still
             -- open. A draft says nothing yet.
             SELECT rv.change_id,
                    (rv.content->>'intervention') IN ('rollback', 'hotfix', 'forward_fix') AS intervened,
                    EXISTS (SELECT 1 FROM measure_incidents(rv.content) x
                             WHERE x->>'caused' = 'confirmed') AS caused,
                    EXISTS (SELECT 1 FROM measure_incidents(rv.content) x
                             WHERE x->>'caused' = 'confirmed'
                               AND measure_time(x->>'restored_at') IS NULL) AS incident_open,
                    (SELECT extract(epoch FROM max(measure_time(x->>'restored_at'))
                                              - min(measure_time(x->>'started_at'))) / 60
                       FROM measure_incidents(rv.content) x
                      WHERE x->>'caused' = 'confirmed') AS incident_minutes
               FROM reviews rv
              WHERE rv.state = 'signed_off' AND rv.change_id = ANY ($1)
           ), judged AS (
             -- A deployment failed when it failed or was rolled back; a
             -- successful production one failed when its change's review
             -- says it needed an intervention or caused an incident, and it
             -- is the change's last successful deployment there with no
             -- failure there to explain it. A deployment is one row: it
             -- counts once.
             SELECT d.*, CASE WHEN d.production THEN m.incident_minutes END AS incident_minutes,
                    d.production AND coalesce(m.caused, false) AS caused,
                    d.production AND coalesce(m.incident_open, false) AS incident_open,
                    d.state <> 'succeeded'
                      OR (d.production AND coalesce(m.intervened OR m.caused, false)
                          AND NOT EXISTS (SELECT 1 FROM deployments o
                                           WHERE o.change_id = d.change_id AND o.environment = d.environment
                                             AND (o.state IN ('failed', 'rolled_back')
                                                  OR (o.state = 'succeeded' AND o.finished_at > d.finished_at))))
                      AS failed,
                    d.state = 'succeeded'
                      AND NOT EXISTS (SELECT 1 FROM deployments p
                                       WHERE p.change_id = d.change_id AND p.environment = d.environment
                                         AND p.state = 'succeeded' AND p.finished_at < d.finished_at)
                      AS first_in_environment,
                    d.state = 'succeeded' AND d.production
                      AND NOT EXISTS (SELECT 1 FROM deployments p JOIN environments pe ON pe.key = p.environment
                                       WHERE p.change_id = d.change_id AND pe.production
                                         AND p.state = 'succeeded' AND p.finished_at < d.finished_at)
                      AS first_in_production
               FROM d LEFT JOIN marks m ON m.change_id = d.change_id
           ), restored AS (
             -- Restoration: the end of the incidents it caused (none while
             -- one is open); else its rollback; else the next successful
             -- deployment there of any of its services.
             SELECT j.*,
                    CASE WHEN j.failed AND NOT j.incident_open AND NOT j.caused AND j.state <> 'rolled_back' THEN
                      (SELECT n.finished_at FROM deployments n
                        WHERE n.environment = j.environment AND n.state = 'succeeded'
                          AND n.finished_at > j.finished_at AND n.services && j.services
                        ORDER BY n.finished_at LIMIT 1)
                    END AS restored_at
               FROM judged j
           )
           INSERT INTO measure_deployments
             (deployment_id, service, change_id, environment, services, finished_at, state, failed, caused,
              recovery_minutes, restored_at, break_glass, has_commits, emergency, first_in_environment,
              first_in_production, lead_hours, from_commit)
           SELECT j.id, s.service, j.change_id, j.environment, j.services, j.finished_at, j.state, j.failed,
                  j.caused,
                  CASE WHEN NOT j.failed OR j.incident_open THEN NULL
                       WHEN j.caused THEN j.incident_minutes
                       WHEN j.state = 'rolled_back' THEN extract(epoch FROM j.rolled_back_at - j.finished_at) / 60
                       ELSE extract(epoch FROM j.restored_at - j.finished_at) / 60
                  END,
                  j.restored_at, j.break_glass, j.has_commits, j.emergency, j.first_in_environment, j.first_in_production,
                  CASE WHEN j.state = 'succeeded' THEN
                    extract(epoch FROM j.finished_at - coalesce(j.first_commit_at, j.submitted_at)) / 3600
                  END,
                  j.first_commit_at IS NOT NULL
             FROM restored j CROSS JOIN LATERAL (SELECT DISTINCT unnest(ARRAY[''] || j.services) AS service) s"#,
        changes,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO measure_decisions (change_id, service, decided_at, risk_level, hours)
         SELECT c.id, s.service, c.decided_at, c.risk_level, extract(epoch FROM c.decided_at - c.submitted_at) / 3600
           FROM changes c CROSS JOIN LATERAL (SELECT DISTINCT unnest(ARRAY[''] || c.services) AS service) s
          WHERE c.id = ANY ($1) AND c.decided_at IS NOT NULL AND c.submitted_at IS NOT NULL",
        changes,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO measure_suspected_incidents (change_id, service, started_at)
         SELECT r.change_id, s.service, measure_time(x->>'started_at')
           FROM reviews r JOIN changes c ON c.id = r.change_id, measure_incidents(r.content) x,
                LATERAL (SELECT DISTINCT unnest(ARRAY[''] || c.services) AS service) s
          WHERE r.change_id = ANY ($1) AND x->>'caused' = 'suspected'
            AND measure_time(x->>'started_at') IS NOT NULL",
        changes,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Restores failures by the deployments of `changes` just derived: one
/// change's deployment restores another's failure, so deriving the first
/// does not see to the second. A failure whose restoration such a deployment
/// may have changed (it ended in between, or the one that restored it was
/// rolled back since) is restored anew, as is every failure still waiting.
pub async fn restore(conn: &mut PgConnection, changes: &[Uuid]) -> sqlx::Result<u64> {
    sqlx::query!(
        "UPDATE measure_deployments m SET recovery_minutes = NULL, restored_at = NULL
           FROM deployments d
          WHERE d.change_id = ANY ($1) AND d.finished_at IS NOT NULL
            AND m.restored_at IS NOT NULL AND m.environment = d.environment
            AND m.restored_at >= d.finished_at AND m.finished_at < d.finished_at
            AND m.services && d.services",
        changes,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "WITH restored AS (
           SELECT m.deployment_id,
                  (SELECT n.finished_at FROM deployments n
                    WHERE n.environment = m.environment AND n.state = 'succeeded'
                      AND n.finished_at > m.finished_at AND n.services && m.services
                    ORDER BY n.finished_at LIMIT 1) AS at
             FROM measure_deployments m
            WHERE m.failed AND m.recovery_minutes IS NULL AND NOT m.caused AND m.service = ''
              AND m.state <> 'rolled_back'
         )
         UPDATE measure_deployments m
            SET recovery_minutes = extract(epoch FROM r.at - m.finished_at) / 60, restored_at = r.at
           FROM restored r
          WHERE r.deployment_id = m.deployment_id AND r.at IS NOT NULL"
    )
    .execute(&mut *conn)
    .await
    .map(|r| r.rows_affected())
}
