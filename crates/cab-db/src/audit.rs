//! The audit trail's writer and reader. An event is appended in the caller's
//! transaction, so it commits or rolls back with the change it records.

use cab_domain::audit::{AuditRecord, ChainBreak, ChainHead, ChainVerifier, StoredEvent, seal};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
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
    let head = sqlx::query!("SELECT seq, hash FROM audit_head WHERE singleton FOR UPDATE")
        .fetch_one(&mut *conn)
        .await?;
    let now = Utc::now();
    // PostgreSQL keeps microseconds; hash exactly what will be read back.
    let occurred_at = DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
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

/// The outcome of checking the stored chain.
#[derive(Debug)]
pub enum Verification {
    /// Every event links to the one before and the chain reaches its head.
    Intact {
        checked: u64,
        head: ChainHead,
    },
    Broken(ChainBreak),
}

/// Recomputes the whole chain from the database, a page at a time, against
/// the head recorded in the database and, if given, one recorded elsewhere
/// (which catches a superuser who rewrote the tail and the head row alike).
pub async fn verify(
    conn: &mut PgConnection,
    external_head: Option<&ChainHead>,
) -> sqlx::Result<Verification> {
    const PAGE: i64 = 2000;
    let db_head = head(conn).await?;
    let mut verifier = ChainVerifier::new();
    let mut hash_at_external: Option<Vec<u8>> = None;
    let mut after = 0;
    loop {
        let events = page(conn, after, PAGE).await?;
        let Some(last) = events.last() else { break };
        after = last.record.seq;
        for event in &events {
            if let Err(broken) = verifier.check(event) {
                return Ok(Verification::Broken(broken));
            }
            if external_head.is_some_and(|h| h.seq == event.record.seq) {
                hash_at_external = Some(event.hash.clone());
            }
        }
    }
    let last_seq = verifier.last_seq();
    let checked = match verifier.finish(Some(&db_head)) {
        Ok(n) => n,
        Err(broken) => return Ok(Verification::Broken(broken)),
    };
    if last_seq > db_head.seq {
        return Ok(Verification::Broken(ChainBreak {
            seq: db_head.seq + 1,
            reason: format!("it lies beyond the recorded head (event {})", db_head.seq),
        }));
    }
    if let Some(external) = external_head {
        if external.seq > last_seq {
            return Ok(Verification::Broken(ChainBreak {
                seq: last_seq + 1,
                reason: format!(
                    "missing: the head you recorded is event {} but the chain ends at event {}",
                    external.seq, last_seq
                ),
            }));
        }
        if hash_at_external.as_deref() != Some(external.hash.as_slice()) {
            return Ok(Verification::Broken(ChainBreak {
                seq: external.seq,
                reason: "its hash differs from the head you recorded".into(),
            }));
        }
    }
    Ok(Verification::Intact {
        checked,
        head: db_head,
    })
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
