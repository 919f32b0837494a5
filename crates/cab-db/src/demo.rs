//! What `cab demo` needs to know about a database before it touches it:
//! whether it is empty, a finished demo board (and of which version), a
//! half-built one, or someone else's data. The database may not be CAB's at
//! all, so the probe's statements are checked at run time, not at build time.

use sqlx::PgConnection;

#[derive(Debug, Clone, Default)]
pub struct Probe {
    /// CAB's accounts and audit trail exist.
    pub has_cab_tables: bool,
    /// Tables of anything else (migration bookkeeping aside).
    pub other_tables: usize,
    /// Every account's username (when CAB's tables exist).
    pub usernames: Vec<String>,
    /// The version recorded by the last `demo.seeded` event, if any.
    pub board_version: Option<i64>,
}

pub async fn probe(conn: &mut PgConnection) -> sqlx::Result<Probe> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
          WHERE table_schema = 'public' AND table_type = 'BASE TABLE'
            AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut *conn)
    .await?;
    let has_cab_tables = ["users", "audit_events"]
        .iter()
        .all(|t| tables.iter().any(|x| x == t));
    if !has_cab_tables {
        return Ok(Probe {
            other_tables: tables.len(),
            ..Probe::default()
        });
    }
    let usernames = sqlx::query_scalar("SELECT username FROM users ORDER BY username")
        .fetch_all(&mut *conn)
        .await?;
    let board_version: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT (payload->>'board')::bigint FROM audit_events
          WHERE action = 'demo.seeded' ORDER BY seq DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(Probe {
        has_cab_tables,
        other_tables: 0,
        usernames,
        board_version: board_version.flatten(),
    })
}

/// Backdates an authorization, as if it had been given at `at` (the demo
/// board shows one that ran out unused).
pub async fn age_authorization(
    conn: &mut PgConnection,
    deployment: uuid::Uuid,
    at: chrono::DateTime<chrono::Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE deployments SET authorized_at = $2, expires_at = $2 + interval '15 minutes', updated_at = $2
          WHERE id = $1 AND state = 'authorized'",
    )
    .bind(deployment)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Moves an owed review's due time to `due_at` (the demo board shows one
/// that is overdue).
pub async fn backdate_review(
    conn: &mut PgConnection,
    change_id: uuid::Uuid,
    due_at: chrono::DateTime<chrono::Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE reviews SET due_at = $2 WHERE change_id = $1 AND required",
        change_id,
        due_at,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Moves an action item's due date to `due_on` (the demo board shows one
/// that is overdue).
pub async fn backdate_action(
    conn: &mut PgConnection,
    action: uuid::Uuid,
    due_on: chrono::NaiveDate,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE review_actions SET due_on = $2 WHERE id = $1",
        action,
        due_on,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The demo board's past, one entry per change in every vector, in the
/// order the changes were filed: changes closed or deployed in earlier
/// weeks, with their decisions, DEV, STAGE and PROD deployments and
/// reviews, so the measures have weeks to show. The services stamp the
/// present, so the past is written here as it would have been recorded.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub id: Vec<uuid::Uuid>,
    /// The author's username.
    pub author: Vec<String>,
    /// The change's content, as the services store it; its title, type,
    /// services, environments and window fill the change's columns.
    pub content: Vec<serde_json::Value>,
    pub risk_level: Vec<String>,
    /// The risk rules' reasons, a JSON array of strings.
    pub risk_reasons: Vec<serde_json::Value>,
    /// `closed` or `implemented`.
    pub state: Vec<String>,
    pub created_at: Vec<chrono::DateTime<chrono::Utc>>,
    pub submitted_at: Vec<chrono::DateTime<chrono::Utc>>,
    pub decided_at: Vec<chrono::DateTime<chrono::Utc>>,
    /// An emergency change's retrospective, due from its approval.
    pub retrospective_due_at: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    /// The CAB members who approved it (a JSON array of usernames), the
    /// last at `decided_at`.
    pub approvers: Vec<serde_json::Value>,
    /// When the security reviewer accepted it, for the changes that need
    /// an assessment.
    pub assessed_at: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    /// Closed by its author, with a close code and notes.
    pub closed_at: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    pub close_code: Vec<Option<String>>,
    pub close_notes: Vec<String>,
    /// When the DEV, STAGE and PROD deployments finished.
    pub dev_at: Vec<chrono::DateTime<chrono::Utc>>,
    pub stage_at: Vec<chrono::DateTime<chrono::Utc>>,
    pub prod_at: Vec<chrono::DateTime<chrono::Utc>>,
    /// How the PROD deployment ended: `succeeded`, `failed` or
    /// `rolled_back` (DEV and STAGE succeeded).
    pub prod_state: Vec<String>,
    pub prod_note: Vec<String>,
    pub rolled_back_at: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    /// The commits the pipeline reported (a JSON array of SHAs, empty when
    /// it reported none) and the first one's time.
    pub commit_shas: Vec<serde_json::Value>,
    pub first_commit_at: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    /// The review, signed off, when one was owed: its content, the reasons
    /// it was owed (a JSON array), when it was owed and due, when its author
    /// wrote it, and who signed it off when.
    pub review: Vec<Option<serde_json::Value>>,
    pub review_reasons: Vec<Option<serde_json::Value>>,
    pub review_owed_at: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    pub review_due_at: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    pub review_written_at: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    pub signed_off_by: Vec<Option<String>>,
    pub signed_off_at: Vec<Option<chrono::DateTime<chrono::Utc>>>,
}

/// Who else the history names: the pipeline account that deployed, the
/// release manager who asked for the PROD deployments and the security
/// reviewer who assessed; the quorum policy the changes were decided under,
/// the risk rules' version and the security assessment given.
#[derive(Debug, Clone)]
pub struct HistoryCast<'a> {
    pub pipeline: &'a str,
    pub releaser: &'a str,
    pub assessor: &'a str,
    pub quorum_policy: &'a serde_json::Value,
    pub risk_version: i32,
    pub assessment: &'a serde_json::Value,
}

/// Writes the board's past in one statement: the changes (numbered from
/// the change sequence in the order they were filed) with their first
/// revision, CAB votes and assessments, their DEV, STAGE and PROD
/// deployments (numbered from theirs) and their signed-off reviews. Returns
/// how many changes it wrote.
pub async fn lay_history(
    conn: &mut PgConnection,
    h: &History,
    cast: &HistoryCast<'_>,
) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"-- demo history: changes as they ended, laid down whole; never a filing
           WITH h AS MATERIALIZED (
             SELECT h.*, a.id AS author_id,
                    h.content->>'change_type' = 'emergency' AS emergency,
                    h.content->'services'->>0 AS service
               FROM UNNEST($1::uuid[], $2::text[], $3::jsonb[], $4::text[], $5::jsonb[], $6::text[],
                           $7::timestamptz[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[],
                           $11::jsonb[], $12::timestamptz[], $13::timestamptz[], $14::text[], $15::text[],
                           $16::timestamptz[], $17::timestamptz[], $18::timestamptz[], $19::text[], $20::text[],
                           $21::timestamptz[], $22::jsonb[], $23::timestamptz[], $24::jsonb[], $25::jsonb[],
                           $26::timestamptz[], $27::timestamptz[], $28::timestamptz[], $29::text[],
                           $30::timestamptz[])
                    WITH ORDINALITY
                    AS h(id, author, content, risk_level, risk_reasons, state,
                         created_at, submitted_at, decided_at, retrospective_due_at,
                         approvers, assessed_at, closed_at, close_code, close_notes,
                         dev_at, stage_at, prod_at, prod_state, prod_note,
                         rolled_back_at, commit_shas, first_commit_at, review, review_reasons,
                         review_owed_at, review_due_at, review_written_at, signed_off_by,
                         signed_off_at, ord)
               JOIN users a ON a.username = h.author
           ), known AS (
             INSERT INTO services (name)
             SELECT DISTINCT service FROM h
             ON CONFLICT DO NOTHING
           ), c AS (
             INSERT INTO changes (id, number, state, author_id, content, title, description, change_type,
                                  category, priority, services, environments, window_start, window_end,
                                  risk_level, risk_rank, risk_reasons, risk_version, revision, created_at,
                                  updated_at, submitted_at, decided_at, approved_revision, quorum_policy,
                                  retrospective_due_at, retrospective_done_at, closed_at, close_code,
                                  close_notes, closed_by)
             SELECT h.id, nextval('change_number_seq'), h.state, h.author_id, h.content,
                    h.content->>'title', h.content->>'description', h.content->>'change_type',
                    h.content->>'category', h.content->>'priority',
                    ARRAY(SELECT jsonb_array_elements_text(h.content->'services')),
                    ARRAY(SELECT jsonb_array_elements_text(h.content->'environments')),
                    (h.content->>'window_start')::timestamptz, (h.content->>'window_end')::timestamptz,
                    h.risk_level,
                    (array_position(ARRAY['low', 'medium', 'high', 'critical'], h.risk_level) - 1)::smallint,
                    ARRAY(SELECT jsonb_array_elements_text(h.risk_reasons)), $34, 1, h.created_at,
                    coalesce(h.closed_at, h.rolled_back_at, h.prod_at), h.submitted_at, h.decided_at, 1, $35,
                    h.retrospective_due_at, CASE WHEN h.emergency THEN h.signed_off_at END,
                    h.closed_at, h.close_code, h.close_notes,
                    CASE WHEN h.closed_at IS NOT NULL THEN h.author_id END
               FROM h
              ORDER BY h.ord
           ), filed AS (
             INSERT INTO change_revisions (change_id, number, content, diff, risk_level, created_at, created_by)
             SELECT h.id, 1, h.content, '[]'::jsonb, h.risk_level, h.submitted_at, h.author_id FROM h
           ), assessed AS (
             INSERT INTO change_assessments (id, change_id, revision, assessor_id, assessor_username,
                                             assessor_roles, content, decision, assessed_level, lowers_risk,
                                             created_at)
             SELECT gen_random_uuid(), h.id, 1, s.id, s.username, ARRAY['security_reviewer'], $36::jsonb,
                    $36::jsonb->>'decision', h.risk_level, false, h.assessed_at
               FROM h, users s
              WHERE s.username = $33 AND h.assessed_at IS NOT NULL
           ), voted AS (
             -- The last approval decided it; the one before came earlier.
             INSERT INTO change_votes (id, change_id, revision, voter_id, voter_username, voter_roles, choice,
                                       comment, created_at, acknowledged_conflicts)
             SELECT gen_random_uuid(), h.id, 1, u.id, u.username, ARRAY['cab_member'], 'approve', '',
                    CASE WHEN v.n = jsonb_array_length(h.approvers) THEN h.decided_at
                         ELSE h.submitted_at + (h.decided_at - h.submitted_at) * 0.7 END,
                    '[]'::jsonb
               FROM h
              CROSS JOIN LATERAL jsonb_array_elements_text(h.approvers) WITH ORDINALITY AS v(username, n)
               JOIN users u ON u.username = v.username
           ), deployed AS (
             -- Each authorized a few minutes before it finished; the
             -- pipeline deploys, the author asks for DEV and STAGE and the
             -- release manager for PROD.
             INSERT INTO deployments (id, change_id, revision, environment, artifact_name, artifact_version,
                                      artifact_digest, services, initiator_id, executor_id, pipeline_provider,
                                      pipeline_run_id, pipeline_url, state, authorized_at, expires_at, token_id,
                                      token_used_at, started_at, finished_at, rolled_back_at, note, updated_at,
                                      commit_shas, first_commit_at)
             SELECT gen_random_uuid(), h.id, 1, e.env, h.service,
                    to_char(h.prod_at, 'IYYY.IW') || '.' || h.ord, h.content->>'artifact_digest',
                    ARRAY[h.service], CASE WHEN e.env = 'prod' THEN rm.id ELSE h.author_id END, bot.id,
                    'github', (40000 + 3 * h.ord + e.step)::text,
                    'https://git.example.com/platform/actions/runs/' || (40000 + 3 * h.ord + e.step),
                    CASE WHEN e.env = 'prod' THEN h.prod_state ELSE 'succeeded' END,
                    e.at - interval '12 minutes', e.at + interval '3 minutes', gen_random_uuid(),
                    e.at - interval '10 minutes', e.at - interval '10 minutes', e.at,
                    CASE WHEN e.env = 'prod' THEN h.rolled_back_at END,
                    CASE WHEN e.env = 'prod' THEN h.prod_note ELSE '' END,
                    CASE WHEN e.env = 'prod' THEN coalesce(h.rolled_back_at, e.at) ELSE e.at END,
                    ARRAY(SELECT jsonb_array_elements_text(h.commit_shas)), h.first_commit_at
               FROM h
              CROSS JOIN LATERAL (VALUES ('dev', h.dev_at, 1), ('stage', h.stage_at, 2), ('prod', h.prod_at, 3))
                    AS e(env, at, step)
              CROSS JOIN (SELECT id FROM users WHERE username = $31) bot
              CROSS JOIN (SELECT id FROM users WHERE username = $32) rm
              ORDER BY e.at
           ), reviewed AS (
             INSERT INTO reviews (change_id, required, reasons, due_at, content, revision, state, signed_off_by,
                                  signed_off_at, signed_off_revision, first_signed_off_at, created_at, updated_at)
             SELECT h.id, true, ARRAY(SELECT jsonb_array_elements_text(h.review_reasons)), h.review_due_at,
                    h.review, 1, 'signed_off', s.id, h.signed_off_at, 1, h.signed_off_at, h.review_owed_at,
                    h.signed_off_at
               FROM h JOIN users s ON s.username = h.signed_off_by
              WHERE h.review IS NOT NULL
           ), written AS (
             INSERT INTO review_revisions (change_id, revision, content, author_id, created_at)
             SELECT h.id, 1, h.review, h.author_id, h.review_written_at FROM h WHERE h.review IS NOT NULL
           )
           SELECT count(*) AS "changes!" FROM h"#,
        &h.id,
        &h.author,
        &h.content,
        &h.risk_level,
        &h.risk_reasons,
        &h.state,
        &h.created_at,
        &h.submitted_at,
        &h.decided_at,
        // Arrays with missing entries are passed as such (the `as` tells
        // the query macro that the elements may be NULL).
        &h.retrospective_due_at as &[Option<chrono::DateTime<chrono::Utc>>],
        &h.approvers,
        &h.assessed_at as &[Option<chrono::DateTime<chrono::Utc>>],
        &h.closed_at as &[Option<chrono::DateTime<chrono::Utc>>],
        &h.close_code as &[Option<String>],
        &h.close_notes,
        &h.dev_at,
        &h.stage_at,
        &h.prod_at,
        &h.prod_state,
        &h.prod_note,
        &h.rolled_back_at as &[Option<chrono::DateTime<chrono::Utc>>],
        &h.commit_shas,
        &h.first_commit_at as &[Option<chrono::DateTime<chrono::Utc>>],
        &h.review as &[Option<serde_json::Value>],
        &h.review_reasons as &[Option<serde_json::Value>],
        &h.review_owed_at as &[Option<chrono::DateTime<chrono::Utc>>],
        &h.review_due_at as &[Option<chrono::DateTime<chrono::Utc>>],
        &h.review_written_at as &[Option<chrono::DateTime<chrono::Utc>>],
        &h.signed_off_by as &[Option<String>],
        &h.signed_off_at as &[Option<chrono::DateTime<chrono::Utc>>],
        cast.pipeline,
        cast.releaser,
        cast.assessor,
        cast.risk_version,
        cast.quorum_policy,
        cast.assessment,
    )
    .fetch_one(&mut *conn)
    .await
}

/// A deployment of the history, as `lay_history` wrote it, for the events
/// that record it.
#[derive(Debug, Clone)]
pub struct PastDeployment {
    pub id: uuid::Uuid,
    pub change_id: uuid::Uuid,
    pub change_number: i64,
    pub revision: i32,
    pub environment: String,
    pub environment_label: String,
    pub artifact_name: String,
    pub artifact_version: String,
    pub artifact_digest: String,
    pub services: Vec<String>,
    pub initiator: String,
    pub executor: String,
    pub pipeline_provider: String,
    pub pipeline_run_id: String,
    pub pipeline_url: String,
    pub state: String,
    pub note: String,
    pub authorized_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub rolled_back_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The deployments of the changes `ids`, as written, in the order they
/// were authorized.
pub async fn past_deployments(
    conn: &mut PgConnection,
    ids: &[uuid::Uuid],
) -> sqlx::Result<Vec<PastDeployment>> {
    sqlx::query_as!(
        PastDeployment,
        r#"SELECT d.id, d.change_id, c.number AS change_number, d.revision, d.environment,
                  e.label AS environment_label, d.artifact_name, d.artifact_version,
                  d.artifact_digest, d.services, i.username AS initiator, x.username AS executor,
                  d.pipeline_provider, d.pipeline_run_id, d.pipeline_url, d.state, d.note,
                  d.authorized_at, d.expires_at, d.started_at, d.finished_at, d.rolled_back_at
             FROM deployments d
             JOIN changes c ON c.id = d.change_id
             JOIN environments e ON e.key = d.environment
             JOIN users i ON i.id = d.initiator_id
             JOIN users x ON x.id = d.executor_id
            WHERE d.change_id = ANY($1)
            ORDER BY d.authorized_at, d.number"#,
        ids
    )
    .fetch_all(&mut *conn)
    .await
}

/// The CAB votes on the changes `ids`: who voted on which, when.
pub async fn past_votes(
    conn: &mut PgConnection,
    ids: &[uuid::Uuid],
) -> sqlx::Result<Vec<(uuid::Uuid, String, chrono::DateTime<chrono::Utc>)>> {
    let rows = sqlx::query!(
        "SELECT change_id, voter_username, created_at FROM change_votes
          WHERE change_id = ANY($1) ORDER BY created_at",
        ids
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.change_id, r.voter_username, r.created_at))
        .collect())
}
