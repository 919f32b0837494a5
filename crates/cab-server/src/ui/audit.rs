//! The audit trail page for auditors: the newest events and whether the
//! whole chain still verifies.

use askama::Template;
use axum::response::Response;
use cab_db::audit::Verification;
use cab_domain::Role;
use cab_domain::audit::canonical_json;
use serde_json::json;

use super::{Layout, Viewer, render, when};
use crate::audit_log::{self, Entity};
use crate::error::AppError;
use crate::request::Origin;

pub struct EventLine {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub roles: String,
    pub action: String,
    pub entity: String,
    pub payload: String,
    pub denied: bool,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    intact: bool,
    summary: String,
    events: Vec<EventLine>,
}

pub async fn trail(viewer: Viewer, origin: Origin) -> Response {
    let shown = async {
        if !(viewer.user.has(Role::Auditor) || viewer.user.has(Role::Admin)) {
            let denial = cab_domain::Denial::new(
                "auditor_required",
                "Only auditors and administrators can read the audit trail.",
            );
            return Err(audit_log::deny(
                &viewer.state.pool,
                Some(viewer.user.audit_actor()),
                &origin,
                "audit.read",
                Entity::kind("audit"),
                denial,
            )
            .await);
        }
        let mut conn = viewer.state.pool.acquire().await?;
        let (intact, summary) = match cab_db::audit::verify(&mut conn, None).await? {
            Verification::Intact { checked, head } => (
                true,
                format!(
                    "The chain verifies: {checked} events, head {} ({}).",
                    head.seq,
                    hex::encode(&head.hash)
                ),
            ),
            Verification::Broken(b) => (false, b.to_string()),
        };
        let events = cab_db::audit::recent(&mut conn, 200).await?;
        let page = AuditPage {
            layout: viewer.layout("Audit trail"),
            intact,
            summary,
            events: events
                .into_iter()
                .map(|e| EventLine {
                    seq: e.seq,
                    at: when(&e.occurred_at),
                    actor: e.actor_username.unwrap_or_else(|| "anonymous".into()),
                    roles: e.actor_roles.join(", "),
                    denied: e.action == audit_log::ACCESS_DENIED,
                    action: e.action,
                    entity: match e.entity_id {
                        Some(id) => format!("{} {id}", e.entity_type),
                        None => e.entity_type,
                    },
                    payload: canonical_json(&json!(e.payload)),
                })
                .collect(),
        };
        Ok::<_, AppError>(render(&page))
    };
    shown.await.unwrap_or_else(|e| viewer.error(e))
}
