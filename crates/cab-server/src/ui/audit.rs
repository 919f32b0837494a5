//! The audit trail page for auditors: the newest events told as sentences,
//! each with its recorded details, and whether the whole chain still
//! verifies.

use askama::Template;
use cab_db::audit::Verification;
use cab_domain::audit::AuditAction;
use chrono::{DateTime, Utc};

use super::words::{Sentence, Subjects, role_labels};
use super::{Layout, Viewer, filters, render};
use crate::audit_log;
use crate::page_error::PageResult;
use crate::request::Origin;

/// One event: what happened in words, and what was recorded.
pub struct EventLine {
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// The kind of event, e.g. "CAB vote".
    pub kind: &'static str,
    pub sentence: Sentence,
    pub denied: bool,
    pub details: EventDetails,
}

/// The event as stored, for the auditor who unfolds it.
pub struct EventDetails {
    pub username: String,
    pub roles: String,
    pub action: String,
    pub entity: String,
    pub request_id: String,
    pub client_addr: String,
    /// The payload as indented JSON.
    pub payload: String,
}

/// The chain's state, as the page's first line says it.
pub enum ChainStatus {
    Intact {
        checked: u64,
        head_seq: i64,
        head_hash: String,
    },
    Broken(String),
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    chain: ChainStatus,
    events: Vec<EventLine>,
}

pub async fn trail(viewer: Viewer, origin: Origin) -> PageResult {
    audit_log::check_reading(&viewer.state.pool, &viewer.user, &origin).await?;
    let mut conn = viewer.state.pool.acquire().await?;
    let chain = match cab_db::audit::verify(&mut conn, None).await? {
        Verification::Intact { checked, head } => ChainStatus::Intact {
            checked,
            head_seq: head.seq,
            head_hash: hex::encode(&head.hash),
        },
        Verification::Broken(b) => ChainStatus::Broken(b.to_string()),
    };
    let events = cab_db::audit::recent(&mut conn, 200).await?;
    let subjects = Subjects::load(&mut conn, &events).await?;
    drop(conn);
    let page = AuditPage {
        layout: viewer.layout("Audit trail"),
        chain,
        events: events
            .iter()
            .map(|e| EventLine {
                seq: e.seq,
                at: e.occurred_at,
                kind: AuditAction::parse(&e.action).map_or("Other", AuditAction::label),
                sentence: subjects.describe(e),
                denied: e.action == audit_log::ACCESS_DENIED,
                details: EventDetails {
                    username: e.actor_username.clone().unwrap_or_else(|| "—".into()),
                    roles: role_labels(&e.actor_roles),
                    action: e.action.clone(),
                    entity: match &e.entity_id {
                        Some(id) => format!("{} {id}", e.entity_type),
                        None => e.entity_type.clone(),
                    },
                    request_id: e.request_id.clone().unwrap_or_else(|| "—".into()),
                    client_addr: e.client_addr.clone().unwrap_or_else(|| "—".into()),
                    payload: serde_json::to_string_pretty(&e.payload)
                        .unwrap_or_else(|_| e.payload.to_string()),
                },
            })
            .collect(),
    };
    Ok(render(&page))
}
