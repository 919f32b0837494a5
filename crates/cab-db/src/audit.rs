//! The audit trail's writer and reader. An event is appended in the caller's
//! transaction, so it commits or rolls back with the change it records.

use cab_domain::audit::{AuditRecord, ChainHead, StoredEvent, seal};
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

/// Who did it: a person, a service account, or the command line.
#[derive(Debug, Clone)]
pub struct AuditActor {
    pub id: Option<Uuid>,
    pub username: String,
    pub roles: Vec<String>,
}

/// Where the request came from.
#[derive(Debug, Clone, Default)]
pub struct AuditOrigin {
    pub request_id: Option<String>,
    pub client_addr: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub actor: Option<AuditActor>,
    pub action: String,
    pub entity_type: String,
    pub entity_id: Option<String>,
    pub payload: Value,
    pub origin: AuditOrigin,
}

/// Appends an event after the current head. The head row is locked until the
/// caller's transaction ends, which serialises writers and keeps sequence
/// numbers free of gaps: a rolled-back change takes its event and its head
/// move with it.
pub async fn append(conn: &mut PgConnection, event: NewAuditEvent) -> sqlx::Result<i64> {
    append_at(conn, event, Utc::now()).await
}

/// [`append`] with the event's time given: for the demo board's history
/// only, whose events are recorded as they happened weeks ago. The caller
/// appends in time order, so the chain's times never go backwards.
pub async fn append_at(
    conn: &mut PgConnection,
    event: NewAuditEvent,
    at: DateTime<Utc>,
) -> sqlx::Result<i64> {
    let head = sqlx::query!("SELECT seq, hash FROM audit_head WHERE singleton FOR UPDATE")
        .fetch_one(&mut *conn)
        .await?;
    // PostgreSQL keeps microseconds; hash exactly what will be read back.
    let occurred_at = DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at);
    let (actor_id, actor_username, actor_roles) = match event.actor {
        Some(a) => (a.id, Some(a.username), a.roles),
        None => (None, None, Vec::new()),
    };
    let record = AuditRecord {
        seq: head.seq + 1,
        occurred_at,
        actor_id,
        actor_username,
        actor_roles,
        action: event.action,
        entity_type: event.entity_type,
        entity_id: event.entity_id,
        payload: event.payload,
        request_id: event.origin.request_id,
        client_addr: event.origin.client_addr,
    };
    let sealed = seal(record, &head.hash);
    let r = &sealed.record;
    sqlx::query!(
        "INSERT INTO audit_events (seq, occurred_at, actor_id, actor_username, actor_roles, action,
                                   entity_type, entity_id, payload, request_id, client_addr,
                                   prev_hash, hash, canonical)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        r.seq,
        r.occurred_at,
        r.actor_id,
        r.actor_username,
        &r.actor_roles,
        r.action,
        r.entity_type,
        r.entity_id,
        r.payload,
        r.request_id,
        r.client_addr,
        sealed.prev_hash,
        sealed.hash,
        sealed.canonical,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE audit_head SET seq = $1, hash = $2 WHERE singleton",
        r.seq,
        sealed.hash
    )
    .execute(&mut *conn)
    .await?;
    Ok(r.seq)
}

pub async fn head(conn: &mut PgConnection) -> sqlx::Result<ChainHead> {
    let row = sqlx::query!("SELECT seq, hash FROM audit_head WHERE singleton")
        .fetch_one(&mut *conn)
        .await?;
    Ok(ChainHead {
        seq: row.seq,
        hash: row.hash,
    })
}

/// Events with `seq > after`, oldest first, at most `limit`.
pub async fn page(
    conn: &mut PgConnection,
    after: i64,
    limit: i64,
) -> sqlx::Result<Vec<StoredEvent>> {
    let rows = sqlx::query!(
        "SELECT seq, occurred_at, actor_id, actor_username, actor_roles, action, entity_type,
                entity_id, payload, request_id, client_addr, prev_hash, hash, canonical
         FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
        after,
        limit
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| StoredEvent {
            record: AuditRecord {
                seq: r.seq,
                occurred_at: r.occurred_at,
                actor_id: r.actor_id,
                actor_username: r.actor_username,
                actor_roles: r.actor_roles,
                action: r.action,
                entity_type: r.entity_type,
                entity_id: r.entity_id,
                payload: r.payload,
                request_id: r.request_id,
                client_addr: r.client_addr,
            },
            prev_hash: r.prev_hash,
            hash: r.hash,
            canonical: r.canonical,
        })
        .collect())
}

/// An event's content as read back, without its links.
struct RecordRow {
    seq: i64,
    occurred_at: DateTime<Utc>,
    actor_id: Option<Uuid>,
    actor_username: Option<String>,
    actor_roles: Vec<String>,
    action: String,
    entity_type: String,
    entity_id: Option<String>,
    payload: Value,
    request_id: Option<String>,
    client_addr: Option<String>,
}

impl From<RecordRow> for AuditRecord {
    fn from(r: RecordRow) -> Self {
        AuditRecord {
            seq: r.seq,
            occurred_at: r.occurred_at,
            actor_id: r.actor_id,
            actor_username: r.actor_username,
            actor_roles: r.actor_roles,
            action: r.action,
            entity_type: r.entity_type,
            entity_id: r.entity_id,
            payload: r.payload,
            request_id: r.request_id,
            client_addr: r.client_addr,
        }
    }
}

/// The newest events, newest first.
pub async fn recent(conn: &mut PgConnection, limit: i64) -> sqlx::Result<Vec<AuditRecord>> {
    let rows = sqlx::query_as!(
        RecordRow,
        "SELECT seq, occurred_at, actor_id, actor_username, actor_roles, action, entity_type,
                entity_id, payload, request_id, client_addr
         FROM audit_events ORDER BY seq DESC LIMIT $1",
        limit
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(AuditRecord::from).collect())
}

/// The events after `after` up to `upto`, in order, as one streamed query
/// whose rows are left undecoded: a verifier decodes them
/// ([`decode_content`]) on its worker threads, so the reading thread only
/// reads.
pub fn content_rows(
    conn: &mut PgConnection,
    after: i64,
    upto: i64,
) -> BoxStream<'_, sqlx::Result<PgRow>> {
    sqlx::query(
        "SELECT seq, occurred_at, actor_id, actor_username, actor_roles, action, entity_type,
                entity_id, payload, request_id, client_addr, hash
         FROM audit_events WHERE seq > $1 AND seq <= $2 ORDER BY seq",
    )
    .bind(after)
    .bind(upto)
    .fetch(conn)
}

/// A row of [`content_rows`]: the event's content and its stored hash.
pub fn decode_content(row: &PgRow) -> sqlx::Result<(AuditRecord, Vec<u8>)> {
    Ok((
        AuditRecord {
            seq: row.try_get(0)?,
            occurred_at: row.try_get(1)?,
            actor_id: row.try_get(2)?,
            actor_username: row.try_get(3)?,
            actor_roles: row.try_get(4)?,
            action: row.try_get(5)?,
            entity_type: row.try_get(6)?,
            entity_id: row.try_get(7)?,
            payload: row.try_get(8)?,
            request_id: row.try_get(9)?,
            client_addr: row.try_get(10)?,
        },
        row.try_get(11)?,
    ))
}

/// A row of [`content_rows`]: only its sequence number and stored hash.
pub fn content_link(row: &PgRow) -> sqlx::Result<ChainHead> {
    Ok(ChainHead {
        seq: row.try_get(0)?,
        hash: row.try_get(11)?,
    })
}

/// The first event beyond `seq`, if any: an event past the recorded head
/// was written around the trail's writer.
pub async fn first_after(conn: &mut PgConnection, seq: i64) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar!(
        "SELECT seq FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT 1",
        seq
    )
    .fetch_optional(&mut *conn)
    .await
}

/// A change's timeline, oldest first: the events about it, and those of its
/// deployments and break-glass requests.
pub async fn for_change(
    conn: &mut PgConnection,
    change_id: &str,
) -> sqlx::Result<Vec<AuditRecord>> {
    let rows = sqlx::query_as!(
        RecordRow,
        "SELECT seq, occurred_at, actor_id, actor_username, actor_roles, action, entity_type,
                entity_id, payload, request_id, client_addr
         FROM audit_events
         WHERE (entity_type = 'change' AND entity_id = $1)
            OR (entity_type IN ('deployment', 'break_glass') AND payload->>'change_id' = $1)
         ORDER BY seq",
        change_id
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(AuditRecord::from).collect())
}

/// The events about one entity, oldest first.
pub async fn for_entity(
    conn: &mut PgConnection,
    entity_type: &str,
    entity_id: &str,
) -> sqlx::Result<Vec<AuditRecord>> {
    let rows = sqlx::query_as!(
        RecordRow,
        "SELECT seq, occurred_at, actor_id, actor_username, actor_roles, action, entity_type,
                entity_id, payload, request_id, client_addr
         FROM audit_events WHERE entity_type = $1 AND entity_id = $2 ORDER BY seq",
        entity_type,
        entity_id
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(AuditRecord::from).collect())
}

/// Which events to read: what `audit_events_matching` takes. Each `None`
/// selects everything.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub from: Option<DateTime<Utc>>,
    /// The first moment not selected.
    pub until: Option<DateTime<Utc>>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    /// A change's id: its events and those of its deployments and
    /// break-glass requests.
    pub change: Option<Uuid>,
    /// `Some(true)` for refusals only, `Some(false)` for all but refusals.
    pub refused: Option<bool>,
}

/// A page of matching events older than `before` (or the newest), newest
/// first, at most `limit`.
pub async fn search_older(
    conn: &mut PgConnection,
    f: &EventFilter,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<AuditRecord>> {
    let change = f.change.map(|c| c.to_string());
    let rows = sqlx::query_as!(
        RecordRow,
        r#"SELECT seq AS "seq!", occurred_at AS "occurred_at!", actor_id, actor_username,
                  actor_roles AS "actor_roles!", action AS "action!", entity_type AS "entity_type!",
                  entity_id, payload AS "payload!", request_id, client_addr
           FROM audit_events_matching($1, $2, $3, $4, $5, $6, $7, $8)
           WHERE seq < $9 ORDER BY seq DESC LIMIT $10"#,
        f.from,
        f.until,
        f.actor,
        f.action,
        f.entity_type,
        f.entity_id,
        change,
        f.refused,
        before.unwrap_or(i64::MAX),
        limit
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(AuditRecord::from).collect())
}

/// A page of matching events newer than `after`, oldest first, at most
/// `limit`.
pub async fn search_newer(
    conn: &mut PgConnection,
    f: &EventFilter,
    after: i64,
    limit: i64,
) -> sqlx::Result<Vec<AuditRecord>> {
    let change = f.change.map(|c| c.to_string());
    let rows = sqlx::query_as!(
        RecordRow,
        r#"SELECT seq AS "seq!", occurred_at AS "occurred_at!", actor_id, actor_username,
                  actor_roles AS "actor_roles!", action AS "action!", entity_type AS "entity_type!",
                  entity_id, payload AS "payload!", request_id, client_addr
           FROM audit_events_matching($1, $2, $3, $4, $5, $6, $7, $8)
           WHERE seq > $9 ORDER BY seq LIMIT $10"#,
        f.from,
        f.until,
        f.actor,
        f.action,
        f.entity_type,
        f.entity_id,
        change,
        f.refused,
        after,
        limit
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(AuditRecord::from).collect())
}

/// Whether any matching event comes before `older_than`, and whether any
/// comes after `newer_than`: where a page's links lead.
pub async fn beyond(
    conn: &mut PgConnection,
    f: &EventFilter,
    older_than: i64,
    newer_than: i64,
) -> sqlx::Result<(bool, bool)> {
    let change = f.change.map(|c| c.to_string());
    let row = sqlx::query!(
        r#"SELECT EXISTS (SELECT 1 FROM audit_events_matching($1, $2, $3, $4, $5, $6, $7, $8)
                          WHERE seq < $9) AS "older!",
                  EXISTS (SELECT 1 FROM audit_events_matching($1, $2, $3, $4, $5, $6, $7, $8)
                          WHERE seq > $10) AS "newer!""#,
        f.from,
        f.until,
        f.actor,
        f.action,
        f.entity_type,
        f.entity_id,
        change,
        f.refused,
        older_than,
        newer_than
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok((row.older, row.newer))
}

/// One event as exported: everything recorded, the payload as JSON text,
/// and the account's name.
#[derive(Debug, Clone)]
pub struct ExportEvent {
    pub seq: i64,
    pub occurred_at: DateTime<Utc>,
    pub actor_id: Option<Uuid>,
    pub actor_username: Option<String>,
    pub actor_name: Option<String>,
    pub actor_roles: Vec<String>,
    pub action: String,
    pub entity_type: String,
    pub entity_id: Option<String>,
    pub payload: String,
    /// The change the event is about, itself or through a deployment or a
    /// break-glass request.
    pub change_number: Option<i64>,
    /// A refusal's message.
    pub reason: Option<String>,
    pub request_id: Option<String>,
    pub client_addr: Option<String>,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
    pub canonical: Vec<u8>,
}

/// The next matching events after `after` up to `upto` (the head the export
/// was cut at), oldest first, at most `limit`. An export reads batch after
/// batch in one snapshot, so it stops reading as soon as nobody takes the
/// rows.
pub async fn export_batch(
    conn: &mut PgConnection,
    f: &EventFilter,
    after: i64,
    upto: i64,
    limit: i64,
) -> sqlx::Result<Vec<ExportEvent>> {
    let change = f.change.map(|c| c.to_string());
    sqlx::query_as!(
        ExportEvent,
        r#"WITH batch AS MATERIALIZED (
             SELECT * FROM audit_events_matching($1, $2, $3, $4, $5, $6, $7, $8) m
             WHERE m.seq > $9 AND m.seq <= $10 ORDER BY m.seq LIMIT $11)
           SELECT e.seq AS "seq!", e.occurred_at AS "occurred_at!", e.actor_id, e.actor_username,
                  u.display_name AS "actor_name?", e.actor_roles AS "actor_roles!",
                  e.action AS "action!", e.entity_type AS "entity_type!", e.entity_id,
                  e.payload::text AS "payload!", c.number AS "change_number?",
                  CASE WHEN e.action = 'access.denied' THEN e.payload->>'message' END AS reason,
                  e.request_id, e.client_addr,
                  e.prev_hash AS "prev_hash!", e.hash AS "hash!", e.canonical AS "canonical!"
           FROM batch e
           LEFT JOIN users u ON u.id = e.actor_id
           LEFT JOIN changes c ON c.id = audit_uuid(CASE WHEN e.entity_type = 'change'
                                                         THEN e.entity_id
                                                         ELSE e.payload->>'change_id' END)
           ORDER BY e.seq"#,
        f.from,
        f.until,
        f.actor,
        f.action,
        f.entity_type,
        f.entity_id,
        change,
        f.refused,
        after,
        upto,
        limit
    )
    .fetch_all(&mut *conn)
    .await
}

/// The events that record a decision on a change.
pub const DECISION_ACTIONS: &[&str] = &[
    "change.assessed",
    "change.voted",
    "change.approved",
    "change.rejected",
    "change.changes_requested",
    "change.retrospective_completed",
];

/// The refused attempts that would have been a decision.
pub const DECISION_ATTEMPTS: &[&str] = &[
    "change.assess",
    "change.vote",
    "change.retrospective",
    "change.deploy_prod",
    "deployment.authorize",
];

/// One decision on a change, or a refused attempt at one, as the approval
/// trail exports it.
#[derive(Debug, Clone)]
pub struct ApprovalRow {
    pub seq: i64,
    pub occurred_at: DateTime<Utc>,
    pub change_number: Option<i64>,
    pub change_title: Option<String>,
    pub change_type: Option<String>,
    pub revision: Option<i32>,
    /// The risk level the event names, else that of the revision decided on,
    /// else the change's.
    pub level: Option<String>,
    /// The quorum policy the change was decided under.
    pub quorum_policy: Option<Value>,
    pub actor_username: Option<String>,
    pub actor_name: Option<String>,
    pub actor_roles: Vec<String>,
    pub action: String,
    pub vote: Option<String>,
    pub assessment: Option<String>,
    pub attempted: Option<String>,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub hash: Vec<u8>,
}

/// The next decisions after `after` up to `upto`, oldest first.
pub async fn approvals_batch(
    conn: &mut PgConnection,
    f: &EventFilter,
    after: i64,
    upto: i64,
    limit: i64,
) -> sqlx::Result<Vec<ApprovalRow>> {
    let change = f.change.map(|c| c.to_string());
    let actions: Vec<String> = DECISION_ACTIONS.iter().map(|s| (*s).to_owned()).collect();
    let attempts: Vec<String> = DECISION_ATTEMPTS.iter().map(|s| (*s).to_owned()).collect();
    sqlx::query_as!(
        ApprovalRow,
        r#"WITH batch AS MATERIALIZED (
             SELECT * FROM audit_events_matching($1, $2, $3, $4, $5, $6, $7, $8) m
             WHERE m.entity_type = 'change' AND m.seq > $9 AND m.seq <= $10
               AND (m.action = ANY($11)
                    OR (m.action = 'access.denied' AND m.payload->>'attempted' = ANY($12)))
             ORDER BY m.seq LIMIT $13)
           SELECT e.seq AS "seq!", e.occurred_at AS "occurred_at!",
                  c.number AS "change_number?", c.title AS "change_title?",
                  c.change_type AS "change_type?",
                  CASE WHEN e.payload->>'revision' ~ '^[0-9]{1,9}$'
                       THEN (e.payload->>'revision')::int END AS revision,
                  COALESCE(e.payload->>'level', e.payload->>'assessed_level', r.risk_level,
                           c.risk_level) AS level,
                  c.quorum_policy AS "quorum_policy?",
                  e.actor_username, u.display_name AS "actor_name?",
                  e.actor_roles AS "actor_roles!", e.action AS "action!",
                  e.payload->>'vote' AS vote, e.payload->>'decision' AS assessment,
                  e.payload->>'attempted' AS attempted, e.payload->>'reason' AS reason,
                  e.payload->>'message' AS message, e.hash AS "hash!"
           FROM batch e
           LEFT JOIN changes c ON c.id = audit_uuid(e.entity_id)
           LEFT JOIN change_revisions r
                  ON r.change_id = c.id AND r.number::text = e.payload->>'revision'
           LEFT JOIN users u ON u.id = e.actor_id
           ORDER BY e.seq"#,
        f.from,
        f.until,
        f.actor,
        f.action,
        f.entity_type,
        f.entity_id,
        change,
        f.refused,
        after,
        upto,
        &actions,
        &attempts,
        limit
    )
    .fetch_all(&mut *conn)
    .await
}

/// Makes the transaction read one snapshot: the head and the events it
/// reads are of one moment, whatever is appended meanwhile.
pub async fn snapshot(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Sets an export's transaction up: one snapshot for every batch, so the
/// export holds exactly the events up to the head it was cut at; and a
/// plan for each batch's own filter, never the generic plan PostgreSQL
/// switches a prepared statement to after five runs, which cannot tell an
/// unused filter from a used one and reads the rest of the trail on every
/// batch.
pub async fn export_snapshot(conn: &mut PgConnection) -> sqlx::Result<()> {
    snapshot(conn).await?;
    sqlx::query!("SET LOCAL plan_cache_mode = force_custom_plan")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The connection's server process, so an export can be stopped.
pub async fn backend_pid(conn: &mut PgConnection) -> sqlx::Result<i32> {
    sqlx::query_scalar!(r#"SELECT pg_backend_pid() AS "pid!""#)
        .fetch_one(&mut *conn)
        .await
}

/// Stops the statement a server process is running.
pub async fn cancel_backend(conn: &mut PgConnection, pid: i32) -> sqlx::Result<()> {
    sqlx::query_scalar!("SELECT pg_cancel_backend($1)", pid)
        .fetch_one(&mut *conn)
        .await?;
    Ok(())
}
