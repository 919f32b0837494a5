//! The evidence pack's populations for a period `[start, end)`: each
//! control's records, read in one snapshot.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// Sets the pack's transaction up: every file of one pack is of one moment.
pub async fn snapshot(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A change that reached a production environment in the period, with
/// what decided it and how it ended.
#[derive(Debug, Clone)]
pub struct ProductionChange {
    pub id: Uuid,
    pub number: i64,
    pub title: String,
    pub change_type: String,
    pub risk_level: String,
    pub state: String,
    pub author: String,
    pub submitted_at: Option<DateTime<Utc>>,
    pub decided_at: Option<DateTime<Utc>>,
    pub approved_revision: Option<i32>,
    /// The current assessment of the approved revision: assessor, decision,
    /// level.
    pub assessment: Option<String>,
    /// Approving CAB members of the approved revision, comma-separated.
    pub approvers: String,
    /// Production deployments in the period, and how many ended badly.
    pub deployments: i64,
    pub failed: i64,
    pub first_deployed_at: Option<DateTime<Utc>>,
    pub retrospective_due_at: Option<DateTime<Utc>>,
    pub retrospective_done_at: Option<DateTime<Utc>>,
    /// `open`, `signed_off`, or none when no review was owed.
    pub review: Option<String>,
    pub close_code: Option<String>,
    pub closed_at: Option<DateTime<Utc>>,
}

/// Every change with a production deployment authorized in the period, by
/// number.
pub async fn production_changes(
    conn: &mut PgConnection,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> sqlx::Result<Vec<ProductionChange>> {
    sqlx::query_as!(
        ProductionChange,
        r#"WITH prod AS (
             SELECT d.change_id, count(*) AS deployments,
                    count(*) FILTER (WHERE d.state IN ('failed', 'rolled_back')) AS failed,
                    min(d.finished_at) FILTER (WHERE d.state = 'succeeded') AS first_deployed_at
             FROM deployments d JOIN environments e ON e.key = d.environment AND e.production
             WHERE d.authorized_at >= $1 AND d.authorized_at < $2
             GROUP BY d.change_id)
           SELECT c.id, c.number, c.title, c.change_type, c.risk_level, c.state,
                  a.username AS author, c.submitted_at, c.decided_at, c.approved_revision,
                  (SELECT s.assessor_username || ': ' || s.decision || ', ' || s.assessed_level
                     FROM change_assessments s
                    WHERE s.change_id = c.id AND s.revision = c.approved_revision
                      AND s.superseded_at IS NULL
                    ORDER BY s.created_at DESC LIMIT 1) AS assessment,
                  COALESCE((SELECT string_agg(v.voter_username, ', ' ORDER BY v.created_at)
                              FROM change_votes v
                             WHERE v.change_id = c.id AND v.revision = c.approved_revision
                               AND v.superseded_at IS NULL AND v.choice = 'approve'), '') AS "approvers!",
                  p.deployments AS "deployments!", p.failed AS "failed!", p.first_deployed_at,
                  c.retrospective_due_at, c.retrospective_done_at,
                  (SELECT r.state FROM reviews r WHERE r.change_id = c.id AND r.required) AS review,
                  c.close_code, c.closed_at
           FROM prod p JOIN changes c ON c.id = p.change_id JOIN users a ON a.id = c.author_id
           ORDER BY c.number"#,
        start,
        end
    )
    .fetch_all(&mut *conn)
    .await
}

/// Emergency changes decided in the period, with their retrospectives.
pub async fn emergency_changes(
    conn: &mut PgConnection,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> sqlx::Result<Vec<ProductionChange>> {
    sqlx::query_as!(
        ProductionChange,
        r#"SELECT c.id, c.number, c.title, c.change_type, c.risk_level, c.state,
                  a.username AS author, c.submitted_at, c.decided_at, c.approved_revision,
                  NULL::text AS assessment, ''::text AS "approvers!",
                  0::bigint AS "deployments!", 0::bigint AS "failed!",
                  NULL::timestamptz AS first_deployed_at,
                  c.retrospective_due_at, c.retrospective_done_at,
                  (SELECT r.state FROM reviews r WHERE r.change_id = c.id AND r.required) AS review,
                  c.close_code, c.closed_at
           FROM changes c JOIN users a ON a.id = c.author_id
           WHERE c.change_type = 'emergency' AND c.decided_at >= $1 AND c.decided_at < $2
           ORDER BY c.number"#,
        start,
        end
    )
    .fetch_all(&mut *conn)
    .await
}

/// Changes closed as failed in the period.
pub async fn failed_changes(
    conn: &mut PgConnection,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> sqlx::Result<Vec<ProductionChange>> {
    sqlx::query_as!(
        ProductionChange,
        r#"SELECT c.id, c.number, c.title, c.change_type, c.risk_level, c.state,
                  a.username AS author, c.submitted_at, c.decided_at, c.approved_revision,
                  NULL::text AS assessment, ''::text AS "approvers!",
                  0::bigint AS "deployments!", 0::bigint AS "failed!",
                  NULL::timestamptz AS first_deployed_at,
                  c.retrospective_due_at, c.retrospective_done_at,
                  (SELECT r.state FROM reviews r WHERE r.change_id = c.id AND r.required) AS review,
                  c.close_code, c.closed_at
           FROM changes c JOIN users a ON a.id = c.author_id
           WHERE c.close_code IN ('failed_rolled_back', 'failed_not_rolled_back')
             AND c.closed_at >= $1 AND c.closed_at < $2
           ORDER BY c.number"#,
        start,
        end
    )
    .fetch_all(&mut *conn)
    .await
}

/// A refused attempt, as recorded.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub seq: i64,
    pub occurred_at: DateTime<Utc>,
    pub actor: Option<String>,
    pub roles: Vec<String>,
    pub attempted: Option<String>,
    pub reason: Option<String>,
    pub reasons: Option<String>,
    pub message: Option<String>,
    pub entity_type: String,
    pub entity_id: Option<String>,
    pub change_number: Option<i64>,
}

/// The period's refusals, oldest first: all of them; the caller keeps the
/// ones a control asks for.
pub async fn refusals(
    conn: &mut PgConnection,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> sqlx::Result<Vec<Refusal>> {
    sqlx::query_as!(
        Refusal,
        r#"SELECT e.seq, e.occurred_at, e.actor_username AS actor, e.actor_roles AS roles,
                  e.payload->>'attempted' AS attempted, e.payload->>'reason' AS reason,
                  (SELECT string_agg(r, ' ') FROM jsonb_array_elements_text(
                       CASE WHEN jsonb_typeof(e.payload->'reasons') = 'array'
                            THEN e.payload->'reasons' ELSE '[]'::jsonb END) r) AS reasons,
                  e.payload->>'message' AS message, e.entity_type, e.entity_id,
                  c.number AS "change_number?"
           FROM audit_events e
           LEFT JOIN changes c ON c.id = audit_uuid(CASE WHEN e.entity_type = 'change'
                                                         THEN e.entity_id
                                                         ELSE e.payload->>'change_id' END)
           WHERE e.action = 'access.denied' AND e.occurred_at >= $1 AND e.occurred_at < $2
           ORDER BY e.seq"#,
        start,
        end
    )
    .fetch_all(&mut *conn)
    .await
}

/// Someone who worked on a change and also decided on it or deployed it.
#[derive(Debug, Clone)]
pub struct OwnDecision {
    pub change_number: i64,
    pub person: String,
    /// How they worked on it: author or contributor.
    pub worked_as: String,
    /// What they did: a CAB vote to approve, a security assessment, a
    /// production deployment.
    pub decided_as: String,
    pub at: DateTime<Utc>,
}

/// People who both worked on a change and approved, assessed or deployed
/// it to production in the period. CAB refuses each of these; the list is
/// expected to be empty.
pub async fn own_decisions(
    conn: &mut PgConnection,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> sqlx::Result<Vec<OwnDecision>> {
    sqlx::query_as!(
        OwnDecision,
        r#"WITH workers AS (
             SELECT id AS change_id, author_id AS user_id, 'author' AS worked_as FROM changes
             UNION ALL
             SELECT change_id, user_id, 'contributor' FROM change_contributor_history),
           decisions AS (
             SELECT change_id, voter_id AS user_id, 'approving CAB vote' AS decided_as, created_at AS at
               FROM change_votes WHERE choice = 'approve' AND created_at >= $1 AND created_at < $2
             UNION ALL
             SELECT change_id, assessor_id, 'security assessment', created_at
               FROM change_assessments WHERE created_at >= $1 AND created_at < $2
             UNION ALL
             SELECT d.change_id, d.initiator_id, 'production deployment (initiator)', d.authorized_at
               FROM deployments d JOIN environments e ON e.key = d.environment AND e.production
              WHERE d.authorized_at >= $1 AND d.authorized_at < $2
             UNION ALL
             SELECT d.change_id, d.executor_id, 'production deployment (executor)', d.authorized_at
               FROM deployments d JOIN environments e ON e.key = d.environment AND e.production
              WHERE d.authorized_at >= $1 AND d.authorized_at < $2)
           SELECT c.number AS change_number, u.username AS person, w.worked_as AS "worked_as!",
                  d.decided_as AS "decided_as!", d.at AS "at!"
           FROM decisions d
           JOIN workers w ON w.change_id = d.change_id AND w.user_id = d.user_id
           JOIN changes c ON c.id = d.change_id
           JOIN users u ON u.id = d.user_id
           ORDER BY d.at, c.number"#,
        start,
        end
    )
    .fetch_all(&mut *conn)
    .await
}

/// An event of the audit trail, for the pack's lists.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub seq: i64,
    pub occurred_at: DateTime<Utc>,
    pub actor: Option<String>,
    pub action: String,
    pub entity_id: Option<String>,
    pub payload: serde_json::Value,
}

/// The period's events of these kinds, oldest first.
pub async fn events_of(
    conn: &mut PgConnection,
    actions: &[&str],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> sqlx::Result<Vec<Recorded>> {
    let actions: Vec<String> = actions.iter().map(|a| (*a).to_owned()).collect();
    sqlx::query_as!(
        Recorded,
        r#"SELECT seq, occurred_at, actor_username AS actor, action, entity_id, payload
           FROM audit_events
           WHERE action = ANY($1) AND occurred_at >= $2 AND occurred_at < $3
           ORDER BY seq"#,
        &actions,
        start,
        end
    )
    .fetch_all(&mut *conn)
    .await
}

/// A deployment of the period.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub number: i64,
    pub change_number: i64,
    pub environment: String,
    pub production: bool,
    pub state: String,
    pub initiator: String,
    pub executor: String,
    pub authorized_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub break_glass: bool,
}

/// Every deployment authorized in the period, by environment then number.
pub async fn deployments(
    conn: &mut PgConnection,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> sqlx::Result<Vec<Deployment>> {
    sqlx::query_as!(
        Deployment,
        r#"SELECT d.number, c.number AS change_number, e.label AS environment, e.production,
                  d.state, i.username AS initiator, x.username AS executor, d.authorized_at,
                  d.finished_at, d.break_glass_id IS NOT NULL AS "break_glass!"
           FROM deployments d
           JOIN changes c ON c.id = d.change_id
           JOIN environments e ON e.key = d.environment
           JOIN users i ON i.id = d.initiator_id
           JOIN users x ON x.id = d.executor_id
           WHERE d.authorized_at >= $1 AND d.authorized_at < $2
           ORDER BY e.rank, d.number"#,
        start,
        end
    )
    .fetch_all(&mut *conn)
    .await
}

/// A break-glass request of the period.
#[derive(Debug, Clone)]
pub struct BreakGlass {
    pub number: i64,
    pub change_number: i64,
    pub environment: String,
    pub reason: String,
    pub incident: String,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub confirmed_by: Option<String>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub deployment_number: Option<i64>,
}

pub async fn break_glass(
    conn: &mut PgConnection,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> sqlx::Result<Vec<BreakGlass>> {
    sqlx::query_as!(
        BreakGlass,
        r#"SELECT b.number AS "number!", c.number AS change_number, b.environment, b.reason,
                  b.incident, r.username AS requested_by, b.requested_at,
                  f.username AS "confirmed_by?", b.confirmed_at, d.number AS "deployment_number?"
           FROM break_glass b
           JOIN changes c ON c.id = b.change_id
           JOIN users r ON r.id = b.requested_by
           LEFT JOIN users f ON f.id = b.confirmed_by
           LEFT JOIN deployments d ON d.id = b.deployment_id
           WHERE b.requested_at >= $1 AND b.requested_at < $2
           ORDER BY b.number"#,
        start,
        end
    )
    .fetch_all(&mut *conn)
    .await
}

/// A deployment an environment reported that CAB never authorized.
#[derive(Debug, Clone)]
pub struct Unauthorized {
    pub number: i64,
    pub environment: String,
    pub service: String,
    pub artifact_digest: String,
    pub observed_at: DateTime<Utc>,
    pub reported_by: String,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<String>,
    pub resolution: String,
}

pub async fn unauthorized(
    conn: &mut PgConnection,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> sqlx::Result<Vec<Unauthorized>> {
    sqlx::query_as!(
        Unauthorized,
        r#"SELECT o.number AS "number!", o.environment, o.service, o.artifact_digest, o.observed_at,
                  r.username AS reported_by, o.resolved_at, s.username AS "resolved_by?",
                  o.resolution
           FROM observed_deployments o
           JOIN users r ON r.id = o.reported_by
           LEFT JOIN users s ON s.id = o.resolved_by
           WHERE o.finding AND o.observed_at >= $1 AND o.observed_at < $2
           ORDER BY o.number"#,
        start,
        end
    )
    .fetch_all(&mut *conn)
    .await
}

/// The checkpoints that bracket the period: the last one signed before it
/// starts (none when none was: the period is then checked from the chain's
/// first event) and the first signed after it ends (else the last one there
/// is).
pub async fn bracketing_checkpoints(
    conn: &mut PgConnection,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> sqlx::Result<(
    Option<crate::checkpoints::CheckpointRow>,
    Option<crate::checkpoints::CheckpointRow>,
)> {
    let first = sqlx::query_as!(
        crate::checkpoints::CheckpointRow,
        "SELECT seq, hash, signed_at, kid, note FROM audit_checkpoints
         WHERE signed_at < $1
         ORDER BY signed_at DESC, seq DESC
         LIMIT 1",
        start
    )
    .fetch_optional(&mut *conn)
    .await?;
    let last = sqlx::query_as!(
        crate::checkpoints::CheckpointRow,
        "SELECT seq, hash, signed_at, kid, note FROM audit_checkpoints
         ORDER BY (signed_at >= $1) DESC,
                  CASE WHEN signed_at >= $1 THEN signed_at END,
                  signed_at DESC
         LIMIT 1",
        end
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok((first, last))
}
