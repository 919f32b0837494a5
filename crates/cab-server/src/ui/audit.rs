//! The audit trail page for auditors: the events a filter selects, newest
//! first and a page at a time, each told as a sentence with its recorded
//! details to unfold; the filter in the URL; downloads of the events and of
//! the approval trail; and whether the whole chain still verifies.

use askama::Template;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cab_domain::audit::AuditAction;
use cab_domain::audit_filter::{ENTITY_KINDS, Outcome, TrailFilter, entity_label};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::form::FieldErrors;
use super::{Layout, Viewer, filters, render};
use crate::audit_log;
use crate::audit_trail::{self, Trail, TrailQuery};
use crate::checkpoints::{self, Unverified};
use crate::error::AppError;
use crate::page_error::PageResult;
use crate::request::Origin;
use crate::words::{Sentence, Subjects, role_labels};

/// Events on one page.
const PAGE: i64 = 50;

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
        /// Events checked since the checkpoint.
        checked: u64,
        head_seq: i64,
        head_hash: String,
        /// The signed checkpoint the check began at, in words; empty before
        /// the first.
        from: String,
    },
    Broken(String),
}

/// The latest check of the whole trail, from its first event, with every
/// signed checkpoint (daily, or `cab audit verify`).
pub enum WholeCheck {
    Never,
    Intact {
        /// When it finished, in words.
        when: String,
        by: &'static str,
        head_seq: i64,
        /// How many signed checkpoints, in words (` and its 3 signed
        /// checkpoints`; empty when none was signed yet).
        checkpoints: String,
        /// Older than the daily check allows: it has stopped running.
        overdue: bool,
    },
    Broken {
        when: String,
        finding: String,
    },
}

impl WholeCheck {
    fn of(row: Option<cab_db::checkpoints::VerificationRow>, now: DateTime<Utc>) -> Self {
        let Some(row) = row else {
            return WholeCheck::Never;
        };
        let when = row.finished_at.format("%-d %b %Y %H:%M").to_string();
        match row.finding {
            None => WholeCheck::Intact {
                when,
                by: if row.run_by == checkpoints::BY_COMMAND {
                    "by cab audit verify"
                } else {
                    "by the daily check"
                },
                head_seq: row.head_seq,
                checkpoints: match row.checkpoints {
                    0 => String::new(),
                    1 => " and its signed checkpoint".into(),
                    n => format!(" and its {n} signed checkpoints"),
                },
                overdue: row.finished_at + checkpoints::WHOLE_CHECK_OVERDUE < now,
            },
            Some((_, finding)) => WholeCheck::Broken { when, finding },
        }
    }
}

/// One choice of a filter's list.
pub struct Choice {
    pub value: String,
    pub label: String,
    pub chosen: bool,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    chain: ChainStatus,
    whole: WholeCheck,
    query: TrailQuery,
    errors: FieldErrors,
    actions: Vec<Choice>,
    kinds: Vec<Choice>,
    outcomes: Vec<Choice>,
    events: Vec<EventLine>,
    /// What the page shows, in words.
    scope: String,
    newest: Option<String>,
    newer: Option<String>,
    older: Option<String>,
    /// Download links, each with its words.
    downloads: Vec<(String, &'static str)>,
}

fn choices<'a>(
    first: &str,
    chosen: Option<&str>,
    items: impl Iterator<Item = (&'a str, &'a str)>,
) -> Vec<Choice> {
    let chosen = chosen.map(str::trim).filter(|c| !c.is_empty());
    let mut out = vec![Choice {
        value: String::new(),
        label: first.to_owned(),
        chosen: chosen.is_none(),
    }];
    out.extend(items.map(|(value, label)| Choice {
        value: value.to_owned(),
        label: label.to_owned(),
        chosen: chosen == Some(value),
    }));
    out
}

fn url(path: &str, pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        path.to_owned()
    } else {
        format!(
            "{path}?{}",
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        )
    }
}

fn scope(filter: &TrailFilter) -> String {
    let mut parts = Vec::new();
    if let Some(a) = filter.action {
        parts.push(format!("of the kind “{}”", a.label()));
    }
    match filter.outcome {
        Outcome::All => {}
        Outcome::Refused => parts.push("that record a refusal".to_owned()),
        Outcome::Done => parts.push("that record no refusal".to_owned()),
    }
    if let Some(a) = &filter.actor {
        parts.push(format!("by the account {a}"));
    }
    if let Some(n) = filter.change {
        parts.push(format!(
            "about CHG-{n}, its deployments and break-glass requests"
        ));
    }
    if let Some(k) = &filter.entity_type {
        let about = entity_label(k).to_lowercase();
        match &filter.entity_id {
            Some(id) => parts.push(format!("about the {about} {id}")),
            None => parts.push(format!("about any {about}")),
        }
    }
    match (filter.from, filter.to) {
        (Some(f), Some(t)) => parts.push(format!(
            "from {} to {} (UTC)",
            f.format("%-d %b %Y"),
            t.format("%-d %b %Y")
        )),
        (Some(f), None) => parts.push(format!("since {} (UTC)", f.format("%-d %b %Y"))),
        (None, Some(t)) => parts.push(format!("up to {} (UTC)", t.format("%-d %b %Y"))),
        (None, None) => {}
    }
    if parts.is_empty() {
        "Every event, newest first.".to_owned()
    } else {
        format!("Events {}, newest first.", parts.join(", "))
    }
}

pub async fn trail(
    viewer: Viewer,
    origin: Origin,
    query: Result<Query<TrailQuery>, QueryRejection>,
) -> PageResult {
    let q = query.map(|Query(q)| q).unwrap_or_default();
    let pool = &viewer.state.pool;
    let read = audit_trail::page(pool, &viewer.user, &origin, &q, PAGE).await;
    let (status, errors, page) = match read {
        Ok(page) => (StatusCode::OK, FieldErrors::default(), Some(page)),
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            FieldErrors::absorb(e, "from")?,
            None,
        ),
    };
    // One snapshot: events appended while the page is read do not count
    // against the head it read.
    let mut snapshot = pool.begin().await?;
    cab_db::audit::snapshot(&mut snapshot).await?;
    let verified = checkpoints::verify_since_checkpoint(&mut snapshot).await;
    snapshot.rollback().await?;
    let mut conn = pool.acquire().await?;
    let whole = WholeCheck::of(
        cab_db::checkpoints::latest_verification(&mut conn).await?,
        Utc::now(),
    );
    let chain = match verified {
        Ok(v) => ChainStatus::Intact {
            checked: v.checked,
            head_seq: v.head.seq,
            head_hash: hex::encode(&v.head.hash),
            from: v.checkpoint.map_or_else(String::new, |c| {
                format!(
                    "event {}, whose checkpoint CAB signed at {} UTC",
                    c.seq,
                    c.signed_at.format("%-d %b %Y %H:%M")
                )
            }),
        },
        Err(Unverified::Failed(e)) => return Err(e.into()),
        Err(refused) => ChainStatus::Broken(refused.to_string()),
    };
    let records = page
        .as_ref()
        .map(|p| p.events.as_slice())
        .unwrap_or_default();
    let subjects = Subjects::load(&mut conn, records).await?;
    drop(conn);
    let events = records
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
                    Some(id) => format!("{} {id}", entity_label(&e.entity_type)),
                    None => entity_label(&e.entity_type).to_owned(),
                },
                request_id: e.request_id.clone().unwrap_or_else(|| "—".into()),
                client_addr: e.client_addr.clone().unwrap_or_else(|| "—".into()),
                payload: serde_json::to_string_pretty(&e.payload)
                    .unwrap_or_else(|_| e.payload.to_string()),
            },
        })
        .collect();
    let (scope_words, newest, newer, older, downloads) = match &page {
        Some(p) => {
            let pairs = p.filter.query_pairs();
            let with = |key: &'static str, seq: i64| {
                let mut pairs = pairs.clone();
                pairs.push((key, seq.to_string()));
                url("/audit", &pairs)
            };
            let newest = (p.filter.page != cab_domain::audit_filter::Keyset::Newest)
                .then(|| url("/audit", &pairs));
            let download = |trail: &str, format: &str| {
                let mut pairs = pairs.clone();
                pairs.push(("trail", trail.to_owned()));
                pairs.push(("format", format.to_owned()));
                url("/audit/export", &pairs)
            };
            (
                scope(&p.filter),
                newest,
                p.newer.map(|s| with("after", s)),
                p.older.map(|s| with("before", s)),
                vec![
                    (download("events", "csv"), "Events as CSV"),
                    (download("events", "ndjson"), "Events as NDJSON"),
                    (download("approvals", "csv"), "Approval trail as CSV"),
                    (download("approvals", "ndjson"), "Approval trail as NDJSON"),
                ],
            )
        }
        None => (String::new(), None, None, None, Vec::new()),
    };
    let actions = choices(
        "Any kind",
        q.action.as_deref(),
        AuditAction::ALL.iter().map(|a| (a.as_str(), a.label())),
    );
    let kinds = choices(
        "Anything",
        q.entity_type.as_deref(),
        ENTITY_KINDS.iter().copied(),
    );
    let outcomes = Outcome::ALL
        .iter()
        .map(|o| Choice {
            value: o.as_str().to_owned(),
            label: o.label().to_owned(),
            chosen: q.outcome.as_deref().map(str::trim).unwrap_or("all") == o.as_str(),
        })
        .collect();
    let page = AuditPage {
        layout: viewer.layout("Audit trail"),
        chain,
        whole,
        query: q,
        errors,
        actions,
        kinds,
        outcomes,
        events,
        scope: scope_words,
        newest,
        newer,
        older,
        downloads,
    };
    Ok((status, render(&page)).into_response())
}

/// Which export a download link asks for.
#[derive(Debug, Default, Deserialize)]
pub struct ExportChoice {
    trail: Option<String>,
    format: Option<String>,
}

/// A download of the events or the approval trail, for the page's filter.
pub async fn export(
    viewer: Viewer,
    origin: Origin,
    query: Result<Query<TrailQuery>, QueryRejection>,
    choice: Result<Query<ExportChoice>, QueryRejection>,
) -> PageResult<Response> {
    // A query that cannot be read is refused, never read as "everything":
    // the download must be the one asked for.
    let (Ok(Query(q)), Ok(Query(choice))) = (query, choice) else {
        return Err(AppError::invalid(
            "query",
            "The download's address cannot be read; choose the filter again on the audit trail page.",
        )
        .into());
    };
    let trail = match choice.trail.as_deref() {
        Some("approvals") => Trail::Approvals,
        _ => Trail::Events,
    };
    Ok(audit_trail::export(
        &viewer.state,
        &viewer.user,
        &origin,
        trail,
        choice.format.as_deref(),
        &q,
    )
    .await?)
}

#[derive(Template)]
#[template(path = "audit_evidence.html")]
struct EvidencePage {
    layout: Layout,
    query: crate::evidence::EvidenceQuery,
    errors: FieldErrors,
}

/// The evidence pack's form.
pub async fn evidence_form(viewer: Viewer, origin: Origin) -> PageResult {
    audit_log::check_reading(&viewer.state.pool, &viewer.user, &origin).await?;
    let page = EvidencePage {
        layout: viewer.layout("Evidence pack"),
        query: crate::evidence::EvidenceQuery::default(),
        errors: FieldErrors::default(),
    };
    Ok(render(&page))
}

/// The pack, downloaded; a request it cannot read shows the form again
/// with the message beside its field.
pub async fn evidence_pack(
    viewer: Viewer,
    origin: Origin,
    query: Result<Query<crate::evidence::EvidenceQuery>, QueryRejection>,
) -> PageResult {
    let Ok(Query(q)) = query else {
        return Err(AppError::invalid(
            "query",
            "The pack's address cannot be read; fill in the form again.",
        )
        .into());
    };
    match crate::evidence::pack(&viewer.state, &viewer.user, &origin, &q).await {
        Ok(pack) => Ok(crate::evidence::download(pack)?),
        Err(e) => {
            let errors = FieldErrors::absorb(e, "from")?;
            let page = EvidencePage {
                layout: viewer.layout("Evidence pack"),
                query: q,
                errors,
            };
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response())
        }
    }
}
