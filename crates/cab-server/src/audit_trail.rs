//! The audit trail for auditors: a filtered page of events, newest first,
//! and the exports (the events, and the approval trail of every decision on
//! a change) as CSV or NDJSON, streamed batch by batch from one snapshot.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use cab_db::audit::{ApprovalRow, EventFilter, ExportEvent};
use cab_domain::Vocabulary;
use cab_domain::approval::QuorumPolicy;
use cab_domain::approval::{AssessmentDecision, VoteChoice};
use cab_domain::audit::{Attempt, AuditAction, AuditRecord, ChainHead, format_time};
use cab_domain::audit_filter::{FilterWords, Keyset, TrailFilter, entity_label};
use cab_domain::change::{ChangeType, FieldError};
use cab_domain::export::{Digested, NdjsonDigest, csv_record, describe_rule};
use cab_domain::risk::RiskLevel;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{PgPool, Postgres};
use tokio::sync::mpsc;
use utoipa::IntoParams;

use crate::audit_log::{self, Entity};
use crate::auth::CurrentUser;
use crate::checkpoints::{self, Unverified};
use crate::error::AppError;
use crate::request::Origin;
use crate::state::AppState;
use crate::words::role_labels;

/// The filter in a URL: the page's, the API's and the exports'. Every field
/// may be left out.
#[derive(Debug, Clone, Default, Deserialize, Serialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrailQuery {
    /// The first day, as YYYY-MM-DD (UTC).
    pub from: Option<String>,
    /// The last day, as YYYY-MM-DD (UTC), included.
    pub to: Option<String>,
    /// The account that acted, by username.
    pub actor: Option<String>,
    /// The kind of event, e.g. `change.voted` or `access.denied`.
    pub action: Option<String>,
    /// What the events are about, e.g. `change`, `deployment`, `user`.
    pub entity_type: Option<String>,
    /// Its identifier, as recorded (needs `entity_type`).
    pub entity_id: Option<String>,
    /// A change, as CHG-42: its events and those of its deployments and
    /// break-glass requests.
    pub change: Option<String>,
    /// `all` (the default), `refused` (refusals only) or `done` (everything
    /// but refusals).
    pub outcome: Option<String>,
    /// Events older than this event number (the next page).
    pub before: Option<String>,
    /// Events newer than this event number (the previous page).
    pub after: Option<String>,
}

impl TrailQuery {
    pub fn parse(&self) -> Result<TrailFilter, Vec<FieldError>> {
        TrailFilter::parse(&FilterWords {
            from: self.from.as_deref(),
            to: self.to.as_deref(),
            actor: self.actor.as_deref(),
            action: self.action.as_deref(),
            entity_type: self.entity_type.as_deref(),
            entity_id: self.entity_id.as_deref(),
            change: self.change.as_deref(),
            outcome: self.outcome.as_deref(),
            before: self.before.as_deref(),
            after: self.after.as_deref(),
        })
    }
}

/// The filter as the store applies it; a change nobody filed is a fault of
/// the `change` field.
pub async fn store_filter(pool: &PgPool, f: &TrailFilter) -> Result<EventFilter, AppError> {
    let change = match f.change {
        None => None,
        Some(number) => {
            let mut conn = pool.acquire().await?;
            match cab_db::changes::id_by_number(&mut conn, number).await? {
                Some(id) => Some(id),
                None => {
                    return Err(AppError::invalid(
                        "change",
                        format!("No change is numbered CHG-{number}."),
                    ));
                }
            }
        }
    };
    Ok(EventFilter {
        from: f.start(),
        until: f.end(),
        actor: f.actor.clone(),
        action: f.action.map(|a| a.as_str().to_owned()),
        entity_type: f.entity_type.clone(),
        entity_id: f.entity_id.clone(),
        change,
        refused: f.outcome.refused(),
    })
}

/// One page of events, newest first, and where the pages beside it start.
pub struct TrailPage {
    /// The filter the page was read with.
    pub filter: TrailFilter,
    pub events: Vec<AuditRecord>,
    /// The event number the next (older) page comes before, if any.
    pub older: Option<i64>,
    /// The event number the previous (newer) page comes after, if any.
    pub newer: Option<i64>,
}

/// The page the filter asks for. Refused, and the refusal recorded, for
/// anyone but auditors and administrators, before the filter is read.
pub async fn page(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    query: &TrailQuery,
    limit: i64,
) -> Result<TrailPage, AppError> {
    audit_log::check_reading(pool, user, origin).await?;
    let filter = query.parse()?;
    let f = store_filter(pool, &filter).await?;
    let mut conn = pool.acquire().await?;
    let events = match filter.page {
        Keyset::Newest => cab_db::audit::search_older(&mut conn, &f, None, limit).await?,
        Keyset::Before(seq) => cab_db::audit::search_older(&mut conn, &f, Some(seq), limit).await?,
        Keyset::After(seq) => {
            let mut events = cab_db::audit::search_newer(&mut conn, &f, seq, limit).await?;
            events.reverse();
            events
        }
    };
    let (older, newer) = match (events.first(), events.last()) {
        (Some(newest), Some(oldest)) => {
            let (older, newer) =
                cab_db::audit::beyond(&mut conn, &f, oldest.seq, newest.seq).await?;
            (older.then_some(oldest.seq), newer.then_some(newest.seq))
        }
        // An empty page past either end leads back the way it came.
        _ => match filter.page {
            Keyset::Newest => (None, None),
            Keyset::Before(seq) => (None, (seq > 1).then(|| seq - 1)),
            Keyset::After(seq) => (seq.checked_add(1), None),
        },
    };
    Ok(TrailPage {
        filter,
        events,
        older,
        newer,
    })
}

/// Which export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trail {
    /// Every event the filter selects, with its links in the chain.
    Events,
    /// One row per decision on a change, or refused attempt at one.
    Approvals,
}

impl Trail {
    fn as_str(self) -> &'static str {
        match self {
            Trail::Events => "events",
            Trail::Approvals => "approvals",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ndjson,
}

impl Format {
    /// The format a `format` parameter names; CSV when it names none.
    pub fn parse(raw: Option<&str>) -> Result<Format, AppError> {
        match raw.map(str::trim) {
            None | Some("") | Some("csv") => Ok(Format::Csv),
            Some("ndjson") => Ok(Format::Ndjson),
            Some(_) => Err(AppError::invalid("format", "Choose csv or ndjson.")),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
        }
    }
}

/// Rows read per statement; an export reads on only as fast as the client
/// takes what it has.
const BATCH: i64 = 2000;
/// Bytes gathered before they are handed to the connection.
const CHUNK: usize = 256 * 1024;

/// A slot for an export or an evidence pack, if one is free: each holds a
/// database connection while it is read, so a server makes only so many at
/// once (`CAB_AUDIT_EXPORTS`); one more is answered 503 with Retry-After.
pub fn export_slot(state: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, AppError> {
    state
        .exports
        .clone()
        .try_acquire_owned()
        .map_err(|_| AppError::ExportsBusy(state.settings.audit_exports))
}

/// Starts an export: the response streams while the rows are read, so it
/// begins at once whatever its size and never holds more than a few chunks.
/// The export is recorded; a client that goes away stops the reading.
pub async fn export(
    state: &AppState,
    user: &CurrentUser,
    origin: &Origin,
    trail: Trail,
    format: Option<&str>,
    query: &TrailQuery,
) -> Result<Response, AppError> {
    let pool = &state.pool;
    audit_log::check_reading(pool, user, origin).await?;
    let filter = query.parse()?;
    let format = Format::parse(format)?;
    // Held until the export ends, however it ends.
    let slot = export_slot(state)?;
    let f = store_filter(pool, &filter).await?;
    // The cut comes first: a checkpoint signed at the head now (the export
    // holds the events up to it), and the record of the export, which
    // follows, says which. A chain that no longer verifies gets no
    // checkpoint: the export is cut at the head, unsigned.
    let name = checkpoints::key_name(&state.settings.public_url);
    let signed = match checkpoints::sign_now(pool, &state.keys, &name).await {
        Ok(row) => row,
        Err(Unverified::Failed(e)) => return Err(e),
        Err(refused) => {
            tracing::error!(error = %refused, "exporting the audit trail without a checkpoint");
            None
        }
    };
    let mut tx = pool.begin().await?;
    cab_db::audit::export_snapshot(&mut tx).await?;
    let cut = match &signed {
        Some(row) => ChainHead {
            seq: row.seq,
            hash: row.hash.clone(),
        },
        None => cab_db::audit::head(&mut tx).await?,
    };
    let pid = cab_db::audit::backend_pid(&mut tx).await?;
    let filter_words: serde_json::Map<String, serde_json::Value> = filter
        .query_pairs()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    let mut record = pool.begin().await?;
    audit_log::record(
        &mut record,
        Some(user.audit_actor()),
        origin,
        AuditAction::AuditExported.as_str(),
        Entity::kind("audit"),
        json!({
            "trail": trail.as_str(),
            "format": format.as_str(),
            "filter": filter_words,
            "cut_at": cut.seq,
            "signed": signed.is_some(),
        }),
    )
    .await?;
    record.commit().await?;
    let (out, rx) = mpsc::channel::<io::Result<Vec<u8>>>(4);
    let header_line = export_header(trail, format, &filter_words);
    let finished = Arc::new(AtomicBool::new(false));
    let reader = Reader {
        tx,
        pid,
        _slot: slot,
        stall: state.settings.audit_export_stall,
        finished: finished.clone(),
        cut: cut.clone(),
        note: signed.map(|row| row.note),
        signer: Signer {
            keys: state.keys.clone(),
            name,
            filter: filter_words,
        },
        f,
        trail,
        format,
    };
    tokio::spawn(reader.write(pool.clone(), header_line, out));
    // A body whose reader stopped before the end (its client stalled) ends
    // in an error, so the download is broken off, never taken for whole.
    let body = Body::from_stream(futures_util::stream::unfold(
        Some((rx, finished)),
        |state| async move {
            let (mut rx, finished) = state?;
            match rx.recv().await {
                Some(chunk) => Some((chunk, Some((rx, finished)))),
                None if finished.load(Ordering::Acquire) => None,
                None => Some((Err(io::Error::other("the export was stopped")), None)),
            }
        },
    ));
    let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
    let (content_type, extension) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        Format::Ndjson => ("application/x-ndjson", "ndjson"),
    };
    let disposition = format!(
        "attachment; filename=\"cab-audit-{}-to-{}-{stamp}.{extension}\"",
        trail.as_str(),
        cut.seq
    );
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).map_err(|e| AppError::Internal(e.into()))?,
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

const EVENT_COLUMNS: &[&str] = &[
    "Event number",
    "When (UTC)",
    "Account",
    "Name",
    "Roles then",
    "What happened",
    "Action",
    "About",
    "Identifier",
    "Change",
    "Outcome",
    "Reason",
    "Details",
    "Request",
    "Address",
    "Previous hash",
    "Hash",
];

const APPROVAL_COLUMNS: &[&str] = &[
    "Event number",
    "When (UTC)",
    "Change",
    "Title",
    "Revision",
    "Risk",
    "Decision-maker",
    "Name",
    "Roles then",
    "Decision",
    "Quorum needed",
    "Separation of duties",
    "Reason",
    "Hash",
];

/// The first bytes of an export, sent before any row is read: the CSV
/// header, or an NDJSON line saying what the export holds.
fn export_header(
    trail: Trail,
    format: Format,
    filter: &serde_json::Map<String, serde_json::Value>,
) -> Vec<u8> {
    let mut out = Vec::new();
    match format {
        Format::Csv => csv_record(
            &mut out,
            match trail {
                Trail::Events => EVENT_COLUMNS,
                Trail::Approvals => APPROVAL_COLUMNS,
            },
        ),
        Format::Ndjson => {
            out = json!({ "export": { "trail": trail.as_str(), "filter": filter } })
                .to_string()
                .into_bytes();
            out.push(b'\n');
        }
    }
    out
}

/// An export's reading: its snapshot (a transaction on its own
/// connection, whose server process can be stopped), the head it was cut at,
/// and what it reads.
struct Reader {
    tx: sqlx::Transaction<'static, Postgres>,
    pid: i32,
    /// The export's slot, given back when the reader ends.
    _slot: tokio::sync::OwnedSemaphorePermit,
    /// How long a chunk may wait for the client to take it.
    stall: Duration,
    /// Set once the last byte is handed on.
    finished: Arc<AtomicBool>,
    cut: ChainHead,
    /// The signed checkpoint at the cut.
    note: Option<String>,
    signer: Signer,
    f: EventFilter,
    trail: Trail,
    format: Format,
}

/// What signs an NDJSON export as a whole, in its trailer.
struct Signer {
    keys: std::sync::Arc<crate::crypto::Keys>,
    /// The checkpoint key's name.
    name: String,
    /// The filter as CAB read it, as in the header.
    filter: serde_json::Map<String, serde_json::Value>,
}

/// One batch of rows as read.
enum Batch {
    Events(Vec<ExportEvent>),
    Approvals(Vec<ApprovalRow>),
}

impl Batch {
    async fn read(
        tx: &mut sqlx::PgConnection,
        trail: Trail,
        f: &EventFilter,
        after: i64,
        cut: i64,
    ) -> Result<Batch, AppError> {
        Ok(match trail {
            Trail::Events => {
                Batch::Events(cab_db::audit::export_batch(tx, f, after, cut, BATCH).await?)
            }
            Trail::Approvals => {
                Batch::Approvals(cab_db::audit::approvals_batch(tx, f, after, cut, BATCH).await?)
            }
        })
    }

    fn last_seq(&self) -> Option<i64> {
        match self {
            Batch::Events(rows) => rows.last().map(|r| r.seq),
            Batch::Approvals(rows) => rows.last().map(|r| r.seq),
        }
    }

    /// The batch's lines, each taken by the digest (NDJSON only).
    fn write(&self, format: Format, digest: &mut Option<NdjsonDigest>) -> io::Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(CHUNK + 64 * 1024);
        let mut line = |buf: &mut Vec<u8>, start: usize| {
            if let Some(d) = digest.as_mut() {
                d.row(&buf[start..]);
            }
        };
        match self {
            Batch::Events(rows) => {
                for row in rows {
                    let start = buf.len();
                    match format {
                        Format::Csv => event_csv(&mut buf, row),
                        Format::Ndjson => event_json(&mut buf, row)?,
                    }
                    line(&mut buf, start);
                }
            }
            Batch::Approvals(rows) => {
                for row in rows {
                    let start = buf.len();
                    let l = ApprovalLine::from(row);
                    match format {
                        Format::Csv => l.csv(&mut buf),
                        Format::Ndjson => l.json(&mut buf)?,
                    }
                    line(&mut buf, start);
                }
            }
        }
        Ok(buf)
    }
}

impl Reader {
    /// Reads the export batch by batch and hands the bytes on. A read that
    /// fails ends the body with an error (an NDJSON export then has no
    /// trailer), never with what looks like a complete file. A client that
    /// goes away stops the statement where it is.
    async fn write(
        mut self,
        pool: PgPool,
        header_line: Vec<u8>,
        out: mpsc::Sender<io::Result<Vec<u8>>>,
    ) {
        // CSV has no trailer, so nothing to hash.
        let mut digest = (self.format == Format::Ndjson).then(NdjsonDigest::new);
        if let Some(d) = digest.as_mut() {
            d.preamble(&header_line);
        }
        if !hand_on(&out, header_line, self.stall).await {
            self.stop(&pool).await;
            return;
        }
        let outcome = tokio::select! {
            r = self.read_all(&mut digest, &out) => Some(r),
            () = out.closed() => None,
        };
        match outcome {
            Some(Ok(true)) => {
                let sent = match digest {
                    Some(d) => match self.trailer(&pool, d.finish()).await {
                        Ok(trailer) => hand_on(&out, trailer, self.stall).await,
                        Err(e) => {
                            let _ = tokio::time::timeout(self.stall, out.send(Err(e))).await;
                            false
                        }
                    },
                    None => true,
                };
                self.finished.store(sent, Ordering::Release);
            }
            Some(Ok(false)) | None => self.stop(&pool).await,
            Some(Err(e)) => {
                tracing::error!(error = %e, "an audit export failed part-way");
                let failed = out.send(Err(io::Error::other("the export could not be completed")));
                let _ = tokio::time::timeout(self.stall, failed).await;
            }
        }
        // Read only; ending it here waits out a statement just stopped, so
        // the connection goes back to the pool ready for the next query.
        if let Err(e) = self.tx.rollback().await {
            tracing::warn!(error = %e, "ending an export's snapshot failed");
        }
    }

    /// Stops the export's statement where it is (the client went away, or
    /// took nothing for too long).
    async fn stop(&self, pool: &PgPool) {
        if let Ok(mut other) = pool.acquire().await {
            let _ = cab_db::audit::cancel_backend(&mut other, self.pid).await;
        }
    }

    /// The trailer line: the rows, the digest, the checkpoint at the cut,
    /// and CAB's signed note of all of it (with the trail and the filter),
    /// signed with the checkpoint's key when there is a checkpoint. A note
    /// that cannot be signed ends the body with an error.
    async fn trailer(&self, pool: &PgPool, digested: Digested) -> io::Result<Vec<u8>> {
        let Some(note) = self.note.as_deref() else {
            return Ok(digested.trailer(&self.cut, None, None));
        };
        // The export's note names the chain as its checkpoint does.
        let origin = note.split('\n').next().unwrap_or_default();
        let text = digested
            .note(origin, self.trail.as_str(), &self.signer.filter, &self.cut)
            .text();
        match checkpoints::sign_text(pool, &self.signer.keys, &self.signer.name, &text).await {
            Ok(signed) => Ok(digested.trailer(&self.cut, Some(note), Some(&signed))),
            Err(e) => {
                tracing::error!(error = %e, "an audit export's trailer could not be signed");
                Err(io::Error::other("the export could not be signed"))
            }
        }
    }

    /// Every row of the export; `false` when the client stopped taking them.
    /// The next batch is read while the last one is written out, on another
    /// thread, so the database and the writing work at once.
    async fn read_all(
        &mut self,
        digest: &mut Option<NdjsonDigest>,
        out: &mpsc::Sender<io::Result<Vec<u8>>>,
    ) -> Result<bool, AppError> {
        let Reader {
            tx,
            cut,
            f,
            trail,
            format,
            stall,
            ..
        } = self;
        let (cut, trail, format) = (cut.seq, *trail, *format);
        let mut batch = Batch::read(tx, trail, f, 0, cut).await?;
        while let Some(last) = batch.last_seq() {
            let mut taken = digest.take();
            let writing = tokio::task::spawn_blocking(move || {
                let bytes = batch.write(format, &mut taken);
                (bytes, taken)
            });
            let (written, next) = tokio::join!(writing, Batch::read(tx, trail, f, last, cut));
            let (bytes, taken) = written
                .map_err(|e| AppError::Internal(anyhow::anyhow!("writing an export: {e}")))?;
            *digest = taken;
            if !hand_on(out, bytes.map_err(unwritable)?, *stall).await {
                return Ok(false);
            }
            batch = next?;
        }
        Ok(true)
    }
}

/// Hands bytes on to the response; `false` when the client went away or
/// took nothing for `stall`.
async fn hand_on(out: &mpsc::Sender<io::Result<Vec<u8>>>, bytes: Vec<u8>, stall: Duration) -> bool {
    matches!(
        tokio::time::timeout(stall, out.send(Ok(bytes))).await,
        Ok(Ok(()))
    )
}

/// The approval trail of a filter as CSV, header included, into `out`:
/// for the evidence pack, whose files are each written whole.
pub async fn approvals_csv(
    conn: &mut sqlx::PgConnection,
    f: &EventFilter,
    out: &mut Vec<u8>,
) -> Result<(), AppError> {
    csv_record(out, APPROVAL_COLUMNS);
    let mut after = 0;
    loop {
        let rows = cab_db::audit::approvals_batch(conn, f, after, i64::MAX, BATCH).await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        for row in &rows {
            ApprovalLine::from(row).csv(out);
        }
    }
    Ok(())
}

fn unwritable(e: io::Error) -> AppError {
    AppError::Internal(anyhow::anyhow!("an export row could not be written: {e}"))
}

fn or_dash(v: Option<&str>) -> &str {
    v.unwrap_or("")
}

/// The label of a recorded word, or the word itself when it is not one of
/// today's.
fn label<V: Vocabulary>(word: &str) -> &str {
    V::parse(word).map_or(word, |v| v.label())
}

fn action_label(action: &str) -> &str {
    label::<AuditAction>(action)
}

fn event_csv(out: &mut Vec<u8>, e: &ExportEvent) {
    let refused = e.action == audit_log::ACCESS_DENIED;
    let change = e.change_number.map(|n| format!("CHG-{n}"));
    csv_record(
        out,
        &[
            e.seq.to_string().as_str(),
            &format_time(e.occurred_at),
            or_dash(e.actor_username.as_deref()),
            or_dash(e.actor_name.as_deref()),
            &role_labels(&e.actor_roles),
            action_label(&e.action),
            &e.action,
            entity_label(&e.entity_type),
            or_dash(e.entity_id.as_deref()),
            or_dash(change.as_deref()),
            if refused { "Refused" } else { "Done" },
            or_dash(e.reason.as_deref()),
            &e.payload,
            or_dash(e.request_id.as_deref()),
            or_dash(e.client_addr.as_deref()),
            &hex::encode(&e.prev_hash),
            &hex::encode(&e.hash),
        ],
    );
}

/// Writes `{"key":value,...}` one member at a time, strings escaped as JSON.
struct JsonObject<'a> {
    out: &'a mut Vec<u8>,
    members: usize,
}

impl<'a> JsonObject<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        JsonObject { out, members: 0 }
    }

    fn key(&mut self, key: &str) -> io::Result<()> {
        if self.members > 0 {
            self.out.push(b',');
        }
        self.members += 1;
        serde_json::to_writer(&mut *self.out, key)?;
        self.out.push(b':');
        Ok(())
    }

    fn value<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> io::Result<()> {
        self.key(key)?;
        serde_json::to_writer(&mut *self.out, value)?;
        Ok(())
    }

    /// A member whose value is JSON text already.
    fn raw(&mut self, key: &str, json: &str) -> io::Result<()> {
        self.key(key)?;
        self.out.extend_from_slice(json.as_bytes());
        Ok(())
    }

    fn close(self) {
        self.out.extend_from_slice(b"}\n");
    }
}

fn event_json(out: &mut Vec<u8>, e: &ExportEvent) -> io::Result<()> {
    let mut o = JsonObject::open(out);
    o.value("seq", &e.seq)?;
    o.value("occurred_at", &format_time(e.occurred_at))?;
    o.value("actor_id", &e.actor_id)?;
    o.value("actor_username", &e.actor_username)?;
    o.value("actor_name", &e.actor_name)?;
    o.value("actor_roles", &e.actor_roles)?;
    o.value("action", &e.action)?;
    o.value("action_label", action_label(&e.action))?;
    o.value("entity_type", &e.entity_type)?;
    o.value("entity_id", &e.entity_id)?;
    o.raw("payload", &e.payload)?;
    o.value("request_id", &e.request_id)?;
    o.value("client_addr", &e.client_addr)?;
    o.value("prev_hash", &hex::encode(&e.prev_hash))?;
    o.value("hash", &hex::encode(&e.hash))?;
    o.value(
        "canonical",
        &base64::engine::general_purpose::STANDARD.encode(&e.canonical),
    )?;
    o.close();
    Ok(())
}

/// One row of the approval trail, in words.
struct ApprovalLine<'a> {
    row: &'a ApprovalRow,
    change: String,
    risk: &'static str,
    decision_code: String,
    decision: String,
    quorum: String,
    refused: bool,
}

impl<'a> From<&'a ApprovalRow> for ApprovalLine<'a> {
    fn from(row: &'a ApprovalRow) -> Self {
        let level = row.level.as_deref().and_then(RiskLevel::parse);
        let change_type = row.change_type.as_deref().and_then(ChangeType::parse);
        let quorum = match (
            row.quorum_policy
                .clone()
                .and_then(|p| serde_json::from_value::<QuorumPolicy>(p).ok()),
            change_type,
            level,
        ) {
            (Some(policy), Some(t), Some(l)) => describe_rule(&policy.rule(t, l)),
            _ => String::new(),
        };
        let refused = row.action == audit_log::ACCESS_DENIED;
        let (decision_code, decision) = match row.action.as_str() {
            "change.voted" => {
                let vote = row.vote.clone().unwrap_or_default();
                let said = format!("Vote: {}", label::<VoteChoice>(&vote));
                (vote, said)
            }
            "change.assessed" => {
                let d = row.assessment.clone().unwrap_or_default();
                let said = format!("Security assessment: {}", label::<AssessmentDecision>(&d));
                (d, said)
            }
            _ if refused => {
                let attempted = row.attempted.as_deref().unwrap_or_default();
                let said = format!("Refused: tried to {} it", label::<Attempt>(attempted));
                ("refused".to_owned(), said)
            }
            other => (
                other.trim_start_matches("change.").to_owned(),
                action_label(other).to_owned(),
            ),
        };
        ApprovalLine {
            row,
            change: row
                .change_number
                .map(|n| format!("CHG-{n}"))
                .unwrap_or_default(),
            risk: level.map_or("", RiskLevel::label),
            decision_code,
            decision,
            quorum,
            refused,
        }
    }
}

impl ApprovalLine<'_> {
    /// Passed for a decision recorded; for a refusal, whether separation of
    /// duties refused it or another rule did.
    fn separation(&self) -> &'static str {
        match (self.refused, self.row.reason.as_deref()) {
            (false, _) => "Passed",
            (true, Some(r)) if cab_domain::evidence::is_separation_of_duties(r) => "Refused",
            (true, _) => "Not reached (refused by another rule)",
        }
    }

    fn csv(&self, out: &mut Vec<u8>) {
        let r = self.row;
        csv_record(
            out,
            &[
                r.seq.to_string().as_str(),
                &format_time(r.occurred_at),
                &self.change,
                or_dash(r.change_title.as_deref()),
                &r.revision.map(|n| n.to_string()).unwrap_or_default(),
                self.risk,
                or_dash(r.actor_username.as_deref()),
                or_dash(r.actor_name.as_deref()),
                &role_labels(&r.actor_roles),
                &self.decision,
                &self.quorum,
                self.separation(),
                or_dash(r.message.as_deref()),
                &hex::encode(&r.hash),
            ],
        );
    }

    fn json(&self, out: &mut Vec<u8>) -> io::Result<()> {
        let r = self.row;
        let mut o = JsonObject::open(out);
        o.value("seq", &r.seq)?;
        o.value("occurred_at", &format_time(r.occurred_at))?;
        o.value("change", &self.change)?;
        o.value("change_title", &r.change_title)?;
        o.value("revision", &r.revision)?;
        o.value("risk_level", &r.level)?;
        o.value("decision_maker", &r.actor_username)?;
        o.value("decision_maker_name", &r.actor_name)?;
        o.value("roles", &r.actor_roles)?;
        o.value("action", &r.action)?;
        o.value("decision", &self.decision_code)?;
        o.value("decision_label", &self.decision)?;
        o.value("quorum_needed", &self.quorum)?;
        o.value(
            "separation_of_duties",
            match self.separation() {
                "Passed" => "passed",
                "Refused" => "refused",
                _ => "not_reached",
            },
        )?;
        o.value("reason", &r.reason)?;
        o.value("message", &r.message)?;
        o.value("hash", &hex::encode(&r.hash))?;
        o.close();
        Ok(())
    }
}
