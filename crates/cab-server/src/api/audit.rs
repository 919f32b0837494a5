//! The audit trail over the API, for auditors and administrators: the
//! events a filter selects, a page at a time, and the exports of the events
//! and of the approval trail as CSV or NDJSON streams.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use cab_domain::audit::AuditAction;
use cab_domain::audit_filter::entity_label;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use cab_db::checkpoints::CheckpointRow;

use crate::audit_log;
use crate::audit_trail::{self, Trail, TrailQuery};
use crate::auth::ApiUser;
use crate::error::{ApiResult, AppError, Problem};
use crate::request::Origin;
use crate::state::AppState;
use crate::words::{Subjects, role_labels};

/// How many events a page holds.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageSize {
    /// 1 to 500; 50 when left out.
    limit: Option<String>,
}

/// Which format an export is written in.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportFormat {
    /// `csv` (the default) or `ndjson`.
    format: Option<String>,
}

/// Who acted, as recorded then.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ActorOut {
    username: String,
    /// Their roles at that moment.
    roles: Vec<String>,
    roles_label: String,
}

/// One audit event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEventOut {
    /// Its place in the chain.
    seq: i64,
    occurred_at: DateTime<Utc>,
    /// Null for CAB itself (the command line, scheduled jobs).
    actor: Option<ActorOut>,
    /// The kind of event as recorded, e.g. `change.voted`.
    action: String,
    action_label: String,
    /// What happened, in a sentence.
    summary: String,
    /// Whether this records a refused attempt.
    refused: bool,
    entity_type: String,
    entity_label: String,
    entity_id: Option<String>,
    /// Everything else recorded, as recorded.
    payload: Value,
    request_id: Option<String>,
    client_addr: Option<String>,
}

/// A page of events, newest first, and the links to the pages beside it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEventsOut {
    events: Vec<AuditEventOut>,
    /// The next page (older events), if there is one.
    older: Option<String>,
    /// The previous page (newer events), if there is one.
    newer: Option<String>,
}

fn query_of<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, AppError> {
    let Query(q) = query.map_err(|e| AppError::invalid("query", e.body_text()))?;
    Ok(q)
}

/// The events a filter selects, newest first, a page at a time (keyset
/// paging: follow `older` and `newer`). For auditors and administrators;
/// anyone else is refused, and the refusal recorded.
#[utoipa::path(
    get, path = "/api/v1/audit/events", tag = "audit",
    params(TrailQuery, PageSize),
    responses(
        (status = 200, body = AuditEventsOut),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "Only auditors and administrators read the audit trail"),
        (status = 422, body = Problem, description = "`field` names the parameter at fault")
    )
)]
pub async fn list_events(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    origin: Origin,
    query: Result<Query<TrailQuery>, QueryRejection>,
    size: Result<Query<PageSize>, QueryRejection>,
) -> ApiResult<Json<AuditEventsOut>> {
    let query = query_of(query)?;
    let size = query_of(size)?;
    let limit = match size.limit.as_deref().map(str::trim) {
        None | Some("") => 50,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if (1..=500).contains(&n) => n,
            _ => return Err(AppError::invalid("limit", "Give a number from 1 to 500.").into()),
        },
    };
    let page = audit_trail::page(&state.pool, &user, &origin, &query, limit).await?;
    let filter = &page.filter;
    let subjects = {
        let mut conn = state.pool.acquire().await?;
        Subjects::load(&mut conn, &page.events).await?
    };
    let link = |key: &str, seq: i64| {
        let mut pairs = filter.query_pairs();
        pairs.push((
            if key == "before" { "before" } else { "after" },
            seq.to_string(),
        ));
        if size.limit.is_some() {
            pairs.push(("limit", limit.to_string()));
        }
        format!(
            "/api/v1/audit/events?{}",
            serde_urlencoded::to_string(&pairs).unwrap_or_default()
        )
    };
    Ok(Json(AuditEventsOut {
        older: page.older.map(|s| link("before", s)),
        newer: page.newer.map(|s| link("after", s)),
        events: page
            .events
            .iter()
            .map(|e| AuditEventOut {
                seq: e.seq,
                occurred_at: e.occurred_at,
                actor: e.actor_username.as_ref().map(|u| ActorOut {
                    username: u.clone(),
                    roles: e.actor_roles.clone(),
                    roles_label: role_labels(&e.actor_roles),
                }),
                action_label: AuditAction::parse(&e.action)
                    .map_or_else(|| e.action.clone(), |a| a.label().to_owned()),
                action: e.action.clone(),
                summary: subjects.describe(e).to_string(),
                refused: e.action == audit_log::ACCESS_DENIED,
                entity_label: entity_label(&e.entity_type).to_owned(),
                entity_type: e.entity_type.clone(),
                entity_id: e.entity_id.clone(),
                payload: e.payload.clone(),
                request_id: e.request_id.clone(),
                client_addr: e.client_addr.clone(),
            })
            .collect(),
    }))
}

/// Every event the filter selects, oldest first, as one CSV or NDJSON
/// stream (never built in memory), up to the chain's head when the export
/// began. NDJSON starts with a line saying what the export holds, gives each
/// event with its previous hash, hash and canonical bytes (base64), and ends
/// with a trailer: the row count, the SHA-256 of every byte before the
/// trailer, and the head the export was cut at. CSV cells that begin with
/// `=`, `+`, `-`, `@`, a tab or a carriage return start with `'`. The page
/// keys `before` and `after` are ignored. Each export is recorded.
#[utoipa::path(
    get, path = "/api/v1/audit/events/export", tag = "audit",
    params(TrailQuery, ExportFormat),
    responses(
        (status = 200, content_type = "text/csv", description = "CSV, or `application/x-ndjson` when asked"),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "Only auditors and administrators read the audit trail"),
        (status = 422, body = Problem, description = "`field` names the parameter at fault")
    )
)]
pub async fn export_events(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    origin: Origin,
    query: Result<Query<TrailQuery>, QueryRejection>,
    format: Result<Query<ExportFormat>, QueryRejection>,
) -> ApiResult<Response> {
    export(state, user, origin, Trail::Events, query, format).await
}

/// The approval trail: one row per decision on a change (security
/// assessment, CAB vote, approval, rejection, changes requested,
/// retrospective review) and per refused attempt at one, with the change,
/// revision, risk level, decision-maker and the roles they held, the
/// decision, what the quorum needed, the separation-of-duties outcome, and
/// the event's place and hash in the audit chain. The same filter, formats
/// and trailer as the events export.
#[utoipa::path(
    get, path = "/api/v1/audit/approvals/export", tag = "audit",
    params(TrailQuery, ExportFormat),
    responses(
        (status = 200, content_type = "text/csv", description = "CSV, or `application/x-ndjson` when asked"),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "Only auditors and administrators read the audit trail"),
        (status = 422, body = Problem, description = "`field` names the parameter at fault")
    )
)]
pub async fn export_approvals(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    origin: Origin,
    query: Result<Query<TrailQuery>, QueryRejection>,
    format: Result<Query<ExportFormat>, QueryRejection>,
) -> ApiResult<Response> {
    export(state, user, origin, Trail::Approvals, query, format).await
}

async fn export(
    state: AppState,
    user: crate::auth::CurrentUser,
    origin: Origin,
    trail: Trail,
    query: Result<Query<TrailQuery>, QueryRejection>,
    format: Result<Query<ExportFormat>, QueryRejection>,
) -> ApiResult<Response> {
    let query = query_of(query)?;
    let format = query_of(format)?;
    Ok(audit_trail::export(
        &state,
        &user,
        &origin,
        trail,
        format.format.as_deref(),
        &query,
    )
    .await?)
}

/// A signed checkpoint of the audit chain.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckpointOut {
    /// The sequence number of the last event it covers.
    seq: i64,
    /// That event's hash, hex.
    hash: String,
    signed_at: DateTime<Utc>,
    /// The signing key's id (hex), as in GET /api/v1/audit/keys.
    kid: String,
    /// The C2SP signed note: the checkpoint text, an empty line, and the
    /// Ed25519 signature line.
    note: String,
}

impl From<CheckpointRow> for CheckpointOut {
    fn from(c: CheckpointRow) -> Self {
        CheckpointOut {
            seq: c.seq,
            hash: hex::encode(&c.hash),
            signed_at: c.signed_at,
            kid: c.kid,
            note: c.note,
        }
    }
}

/// Which checkpoints.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CheckpointPage {
    /// Checkpoints of events before this one (the next page).
    before: Option<i64>,
    /// 1 to 500; 50 when left out.
    limit: Option<i64>,
}

/// The signed checkpoints of the audit chain, newest first. CAB signs the
/// chain's head at least hourly while events arrive, and whenever the trail
/// is exported. No sign-in needed: anyone may keep them to check an export
/// or the chain against later.
#[utoipa::path(
    get, path = "/api/v1/audit/checkpoints", tag = "audit",
    security(()),
    params(CheckpointPage),
    responses(
        (status = 200, body = Vec<CheckpointOut>),
        (status = 422, body = Problem, description = "`field` names the parameter at fault")
    )
)]
pub async fn list_checkpoints(
    State(state): State<AppState>,
    query: Result<Query<CheckpointPage>, QueryRejection>,
) -> ApiResult<Json<Vec<CheckpointOut>>> {
    let q = query_of(query)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(AppError::invalid("limit", "Give a number from 1 to 500.").into());
    }
    let mut conn = state.pool.acquire().await.map_err(AppError::from)?;
    let rows = cab_db::checkpoints::list(&mut conn, q.before, limit)
        .await
        .map_err(AppError::from)?;
    Ok(Json(rows.into_iter().map(CheckpointOut::from).collect()))
}

/// Signs a checkpoint at the chain's head now (administrators), after
/// verifying the events since the last one; gives back the checkpoint
/// already at the head if there is one. 409 `audit_chain_broken` when the
/// chain does not verify, naming the first broken event.
#[utoipa::path(
    post, path = "/api/v1/audit/checkpoints", tag = "audit",
    responses(
        (status = 200, body = CheckpointOut),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "Only administrators ask for a checkpoint"),
        (status = 409, body = Problem, description = "The chain does not verify, or is empty")
    )
)]
pub async fn sign_checkpoint(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    origin: Origin,
) -> ApiResult<Json<CheckpointOut>> {
    match crate::checkpoints::sign_on_request(&state, &user, &origin).await? {
        Some(row) => Ok(Json(row.into())),
        None => Err(AppError::Conflict(cab_domain::Denial::new(
            "audit_chain_empty",
            "The audit trail holds no event yet; there is nothing to sign.",
        ))
        .into()),
    }
}

/// A key that signs (or signed) checkpoints.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckpointKeyOut {
    /// The C2SP key id, hex.
    kid: String,
    /// The key name its notes carry (also the checkpoints' origin line).
    name: String,
    /// The C2SP verifier key, `name+kid+base64(0x01 || public key)`: what
    /// `cab audit verify --key` and any signed-note verifier take.
    verifier_key: String,
    created_at: DateTime<Utc>,
    /// When a newer key took over; retired keys stay listed.
    retired_at: Option<DateTime<Utc>>,
}

/// The public keys that sign the audit chain's checkpoints (Ed25519, as
/// C2SP verifier keys), newest first. Retired keys stay listed. No sign-in
/// needed.
#[utoipa::path(
    get, path = "/api/v1/audit/keys", tag = "audit",
    security(()),
    responses((status = 200, body = Vec<CheckpointKeyOut>))
)]
pub async fn checkpoint_keys(
    State(state): State<AppState>,
) -> ApiResult<Json<Vec<CheckpointKeyOut>>> {
    let mut conn = state.pool.acquire().await.map_err(AppError::from)?;
    let keys = cab_db::checkpoints::keys(&mut conn)
        .await
        .map_err(AppError::from)?;
    Ok(Json(
        keys.into_iter()
            .filter_map(|k| {
                let public: [u8; 32] = k.public_key.as_slice().try_into().ok()?;
                Some(CheckpointKeyOut {
                    verifier_key: cab_domain::checkpoint::verifier_key(&k.name, &public),
                    kid: k.kid,
                    name: k.name,
                    created_at: k.created_at,
                    retired_at: k.retired_at,
                })
            })
            .collect(),
    ))
}

/// The evidence pack for a period (auditors and administrators): one ZIP
/// archive with, for ISO/IEC 27001 A.8.32, A.5.3 and A.8.31, each control's
/// population and exceptions as CSV, the period's approval trail, the signed
/// checkpoints that bracket the period and the public keys, a random sample
/// of production changes (its seed in `index.html` and the manifest) told in
/// full as printable HTML, and `MANIFEST.txt`: every file's SHA-256, signed
/// with the checkpoint key as a C2SP signed note. Recorded.
#[utoipa::path(
    get, path = "/api/v1/audit/evidence", tag = "audit",
    params(crate::evidence::EvidenceQuery),
    responses(
        (status = 200, content_type = "application/zip", description = "The pack"),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "Only auditors and administrators read the audit trail"),
        (status = 422, body = Problem, description = "`field` names the parameter at fault")
    )
)]
pub async fn evidence_pack(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    origin: Origin,
    query: Result<Query<crate::evidence::EvidenceQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let query = query_of(query)?;
    let pack = crate::evidence::pack(&state, &user, &origin, &query).await?;
    Ok(crate::evidence::download(pack)?)
}
