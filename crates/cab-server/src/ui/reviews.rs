//! How a change ended and its post-implementation review, on one page: the
//! closure (and the close form, for whoever may close it), why the review
//! is owed and by when, the review form with its incidents, the sign-off,
//! the action items and the revisions with what each changed. Each form
//! posts here and goes through `crate::reviews`, the same code as the
//! API's: done, it leads back to the page with a notice; refused, or with
//! an error in its form, the page is shown again with the refusal, or the
//! error beside its field, and what was typed. The change's page, the
//! dashboards and the CAB queue take their summaries from here too.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cab_domain::Role;
use cab_domain::change::{ChangeKey, ChangeState};
use cab_domain::review::{
    self, ActionStatus, Causation, CloseCode, Incident, Intervention, MAX_INCIDENTS, ReviewContent,
    ReviewState, Severity,
};
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::changes::{offsets, parse_offset};
use super::form::{Choice, FieldErrors, FormPairs as Pairs, checked, form_value as value};
use super::notice::{Notice, redirect_with};
use super::{Layout, Viewer, filters, render, when};
use crate::auth::CurrentUser;
use crate::changes;
use crate::error::AppError;
use crate::page_error::PageResult;
use crate::request::Origin;
use crate::reviews::{self as service, ReviewView};
use crate::words::People;

/// The review's page of a change.
fn page_of(change: Uuid) -> String {
    format!("/changes/{change}/review")
}

/// A review's field as people read it.
fn field_label(field: &str) -> &'static str {
    match field {
        "outcome" => "Outcome",
        "intervention" => "Intervention needed",
        "incidents" => "Incidents",
        "incident_tz" => "UTC offset of the incident times",
        "went_well" => "What went well",
        "went_wrong" => "What went wrong",
        "lessons" => "Lessons learned",
        _ => "Another part of the review",
    }
}

// ---------------------------------------------------------------------------
// What was typed, and what an action left to show

/// One incident row as typed.
#[derive(Clone, Default)]
struct IncidentInput {
    reference: String,
    severity: String,
    caused: String,
    started: String,
    restored: String,
}

impl IncidentInput {
    /// A row with nothing written in it is left out.
    fn is_blank(&self) -> bool {
        [&self.reference, &self.started, &self.restored]
            .iter()
            .all(|s| s.trim().is_empty())
    }
}

/// The review form as typed (or as stored, to edit it).
#[derive(Clone, Default)]
struct ReviewInput {
    outcome: String,
    intervention: String,
    went_well: String,
    went_wrong: String,
    lessons: String,
    /// The UTC offset the incidents' times are written in, as `+HH:MM`.
    tz: String,
    incidents: Vec<IncidentInput>,
}

/// The most incident rows a form is read for: the rule's limit and a few
/// more, so a form over the limit is told so.
const MAX_ROWS: usize = MAX_INCIDENTS + 10;

const UTC_OFFSET: &str = "+00:00";

/// A time as a `datetime-local` value in `offset` (seconds only when it has
/// them, so an edit keeps the time it does not change).
fn local_input(t: DateTime<Utc>, offset: FixedOffset) -> String {
    let t = t.with_timezone(&offset);
    if t.second() == 0 {
        t.format("%Y-%m-%dT%H:%M").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S").to_string()
    }
}

/// A time typed into the form in `offset`; `Ok(None)` when left empty.
fn read_time(raw: &str, offset: FixedOffset) -> Result<Option<DateTime<Utc>>, ()> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(raw, f).ok())
    .and_then(|n| offset.from_local_datetime(&n).single())
    .map(|t| Some(t.with_timezone(&Utc)))
    .ok_or(())
}

/// A problem with one field of a page's form: the field's id, what it is,
/// and the message.
type Placed = (String, String, String);

impl ReviewInput {
    fn from_content(c: &ReviewContent) -> Self {
        let utc = Utc.fix();
        ReviewInput {
            outcome: c.outcome.clone(),
            intervention: c
                .intervention
                .map(|i| i.as_str().to_owned())
                .unwrap_or_default(),
            went_well: c.went_well.clone(),
            went_wrong: c.went_wrong.clone(),
            lessons: c.lessons.clone(),
            tz: UTC_OFFSET.into(),
            incidents: c
                .incidents
                .iter()
                .map(|i| IncidentInput {
                    reference: i.reference.clone(),
                    severity: i.severity.as_str().into(),
                    caused: i.caused.as_str().into(),
                    started: local_input(i.started_at, utc),
                    restored: i
                        .restored_at
                        .map(|t| local_input(t, utc))
                        .unwrap_or_default(),
                })
                .collect(),
        }
    }

    fn from_form(form: &Pairs) -> Self {
        // Rows are numbered from 1; the highest number any of their fields
        // carries says how many rows the form had.
        let rows = form
            .iter()
            .filter(|(k, _)| k.starts_with("incident_"))
            .filter_map(|(k, _)| k.rsplit('_').next()?.parse::<usize>().ok())
            .filter(|n| (1..=MAX_ROWS).contains(n))
            .max()
            .unwrap_or(0);
        let field = |name: &str, n: usize| value(form, &format!("incident_{name}_{n}"));
        ReviewInput {
            outcome: value(form, "outcome"),
            intervention: value(form, "intervention"),
            went_well: value(form, "went_well"),
            went_wrong: value(form, "went_wrong"),
            lessons: value(form, "lessons"),
            tz: value(form, "incident_tz"),
            incidents: (1..=rows)
                .map(|n| IncidentInput {
                    reference: field("reference", n),
                    severity: field("severity", n),
                    caused: field("caused", n),
                    started: field("started", n),
                    restored: field("restored", n),
                })
                .collect(),
        }
    }

    /// The offset the incident times are in: UTC when none is given; `None`
    /// for one that is not an offset.
    fn offset(&self) -> Option<FixedOffset> {
        match self.tz.trim() {
            "" => Some(Utc.fix()),
            raw => parse_offset(raw),
        }
    }

    /// The content the form says, what could not even be read, and for each
    /// incident of the content the row it came from.
    fn content(&self) -> (ReviewContent, Vec<Placed>, Vec<usize>) {
        let mut errors = Vec::new();
        let intervention = match self.intervention.trim() {
            "" => None,
            raw => {
                let parsed = Intervention::parse(raw);
                if parsed.is_none() {
                    fault_field(
                        &mut errors,
                        "intervention",
                        "Choose one of the interventions listed.",
                    );
                }
                parsed
            }
        };
        let offset = self.offset().unwrap_or_else(|| {
            // Read as UTC, a time typed in another offset would be off by
            // hours: no incident time is read until the offset is.
            if self.incidents.iter().any(|r| !r.is_blank()) {
                fault_field(
                    &mut errors,
                    "incident_tz",
                    "Choose one of the UTC offsets listed.",
                );
            }
            Utc.fix()
        });
        let mut incidents = Vec::new();
        let mut rows = Vec::new();
        for (i, row) in self.incidents.iter().enumerate() {
            let n = i + 1;
            if row.is_blank() {
                continue;
            }
            let severity = Severity::parse(row.severity.trim());
            if severity.is_none() {
                row_fault(
                    &mut errors,
                    format!("incident_severity_{n}"),
                    n,
                    "choose how severe it was.".into(),
                );
            }
            let caused = Causation::parse(row.caused.trim());
            if caused.is_none() {
                row_fault(
                    &mut errors,
                    format!("incident_caused_{n}"),
                    n,
                    "say whether the change caused it.".into(),
                );
            }
            let started = match read_time(&row.started, offset) {
                Ok(Some(t)) => Some(t),
                Ok(None) => {
                    row_fault(
                        &mut errors,
                        format!("incident_started_{n}"),
                        n,
                        "say when it started.".into(),
                    );
                    None
                }
                Err(()) => {
                    row_fault(
                        &mut errors,
                        format!("incident_started_{n}"),
                        n,
                        "give when it started as a date and time, e.g. 2026-12-01T10:00.".into(),
                    );
                    None
                }
            };
            let restored = match read_time(&row.restored, offset) {
                Ok(t) => t,
                Err(()) => {
                    row_fault(
                        &mut errors,
                        format!("incident_restored_{n}"),
                        n,
                        "give when service was restored as a date and time, e.g. 2026-12-01T11:30."
                            .into(),
                    );
                    None
                }
            };
            if let (Some(severity), Some(caused), Some(started_at)) = (severity, caused, started) {
                incidents.push(Incident {
                    reference: row.reference.clone(),
                    severity,
                    caused,
                    started_at,
                    restored_at: restored,
                });
                rows.push(n);
            }
        }
        let content = ReviewContent {
            outcome: self.outcome.clone(),
            intervention,
            incidents,
            went_well: self.went_well.clone(),
            went_wrong: self.went_wrong.clone(),
            lessons: self.lessons.clone(),
        };
        (content, errors, rows)
    }
}

/// A problem with row `n` of the incidents, beside the field `id`.
fn row_fault(errors: &mut Vec<Placed>, id: String, n: usize, message: String) {
    errors.push((
        id,
        format!("Incident {n}"),
        format!("Incident {n}: {message}"),
    ));
}

fn fault_field(errors: &mut Vec<Placed>, field: &str, message: &str) {
    errors.push((
        field.to_owned(),
        field_label(field).to_owned(),
        message.to_owned(),
    ));
}

/// What an action on the page left to show: its refusal, or its errors
/// beside the fields of its form (keyed by the fields' ids), with what was
/// typed kept.
#[derive(Default)]
struct Shown {
    refused: Vec<String>,
    fields: FieldErrors,
    /// The summary on top: (field id, what the field is, message).
    summary: Vec<Placed>,
    typed: HashMap<String, String>,
    /// The review form as typed, and the revision it was read at.
    review: Option<(ReviewInput, i32)>,
    /// The incident row "Add another incident" added.
    added_row: Option<usize>,
}

impl Shown {
    /// A message beside the field `id`, after any already there.
    fn field(&mut self, (id, label, message): Placed) {
        let joined = match self.fields.get(&id) {
            Some(before) => format!("{before} {message}"),
            None => message.clone(),
        };
        self.fields.insert(&id, joined);
        self.summary.push((id, label, message));
    }

    fn keep(&mut self, id: &str, typed: String) {
        self.typed.insert(id.to_owned(), typed);
    }

    /// What was typed into the field `id`, to show it again.
    pub fn typed(&self, id: &str) -> &str {
        self.typed.get(id).map_or("", String::as_str)
    }

    /// The message beside the field `id`, for the form macros.
    pub fn get(&self, id: &str) -> Option<&String> {
        self.fields.get(id)
    }
}

/// The form an action came from: where its errors are shown.
enum Source {
    Close,
    /// The review form; for each incident of the content, its row.
    Review(Vec<usize>),
    SignOff,
    AddAction,
    /// The status form of action item `n`.
    Status(i64),
}

impl Source {
    /// The field id and label on the page for a field the service names.
    fn place(&self, field: &str, message: String) -> Placed {
        let (id, label): (String, String) = match (self, field) {
            (Source::Close, "notes") => ("close_notes".into(), "Notes".into()),
            (Source::Close, _) => ("close_code".into(), "How it ended".into()),
            (Source::Review(rows), "incidents") => return incident_place(rows, message),
            (
                Source::Review(_),
                f @ ("outcome" | "intervention" | "went_well" | "went_wrong" | "lessons"),
            ) => (f.into(), field_label(f).into()),
            (Source::Review(_), _) => ("outcome".into(), "The review".into()),
            (Source::SignOff, _) => ("sign-off".into(), "Sign-off".into()),
            (Source::AddAction, "owner") => ("action_owner".into(), "Owner".into()),
            (Source::AddAction, "due_on") => ("action_due_on".into(), "Due date".into()),
            (Source::AddAction, _) => ("action_title".into(), "Action".into()),
            (Source::Status(n), _) => (format!("status_{n}"), format!("Status of action {n}")),
        };
        (id, label, message)
    }
}

/// An incident's message (`Incident i: …`, numbered among the incidents
/// the form held) beside the field of its row, numbered as the form shows.
fn incident_place(rows: &[usize], message: String) -> Placed {
    let parsed = message.strip_prefix("Incident ").and_then(|rest| {
        let (i, said) = rest.split_once(": ")?;
        let row = *rows.get(i.parse::<usize>().ok()?.checked_sub(1)?)?;
        Some((row, said.to_owned()))
    });
    let Some((n, said)) = parsed else {
        return ("incidents".into(), "Incidents".into(), message);
    };
    let field = if said.contains("restored") {
        "restored"
    } else if said.contains("start") {
        "started"
    } else {
        "reference"
    };
    (
        format!("incident_{field}_{n}"),
        format!("Incident {n}"),
        format!("Incident {n}: {said}"),
    )
}

// ---------------------------------------------------------------------------
// The page

struct ClosureLine {
    code: CloseCode,
    notes: String,
    /// Who closed it; `None` when CAB closed it on its own.
    by: Option<String>,
    at: DateTime<Utc>,
}

struct CloseForm {
    codes: Vec<Choice>,
    notes: String,
}

/// Where the review stands.
struct Standing {
    /// A review exists (owed, or started).
    exists: bool,
    required: bool,
    reasons: Vec<&'static str>,
    due: Option<DateTime<Utc>>,
    overdue: bool,
    state: ReviewState,
    revision: i32,
    /// When a revision was first signed off, if one was and this one is not.
    earlier_sign_off: Option<DateTime<Utc>>,
}

struct OffsetChoice {
    offset: String,
    selected: bool,
}

struct IncidentRow {
    n: usize,
    reference: String,
    reference_error: Option<String>,
    severities: Vec<Choice>,
    severity_chosen: bool,
    severity_error: Option<String>,
    causes: Vec<Choice>,
    caused_chosen: bool,
    caused_error: Option<String>,
    started: String,
    started_error: Option<String>,
    restored: String,
    restored_error: Option<String>,
    /// The row just added: it takes the focus.
    focus: bool,
}

struct ReviewForm {
    read: i32,
    outcome: String,
    interventions: Vec<Choice>,
    went_well: String,
    went_wrong: String,
    lessons: String,
    rows: Vec<IncidentRow>,
    offsets: Vec<OffsetChoice>,
    /// Saving amends a signed-off review.
    amends: bool,
}

/// Who signed off the current revision, and when.
struct Signed {
    by: String,
    revision: i32,
    at: DateTime<Utc>,
}

struct ActionLine {
    id: Uuid,
    number: i64,
    title: String,
    owner: String,
    due_on: NaiveDate,
    status: ActionStatus,
    overdue: bool,
    /// The person looking may move it on.
    may_update: bool,
    statuses: Vec<Choice>,
    error: Option<String>,
}

struct RevisionLine {
    number: i32,
    by: String,
    at: DateTime<Utc>,
    fields: Vec<&'static str>,
}

#[derive(Template)]
#[template(path = "reviews/page.html")]
struct ReviewPage {
    layout: Layout,
    href: String,
    change_href: String,
    key: String,
    title: String,
    state: ChangeState,
    closure: Option<ClosureLine>,
    close: Option<CloseForm>,
    /// Why the change cannot be closed yet, to whoever could close it.
    close_later: Option<String>,
    review: Standing,
    form: Option<ReviewForm>,
    /// Why the review cannot be written, when it is not yet reviewable.
    not_reviewable: Option<String>,
    sign_off: bool,
    /// Why a CAB member or release manager looking cannot sign off now.
    sign_off_blocked: Option<String>,
    signed: Option<Signed>,
    actions: Vec<ActionLine>,
    add_action: bool,
    revisions: Vec<RevisionLine>,
    errors: Shown,
}

fn stored_content(value: &serde_json::Value) -> Result<ReviewContent, AppError> {
    serde_json::from_value(value.clone()).map_err(|e| AppError::Internal(e.into()))
}

fn standing(view: &ReviewView, now: DateTime<Utc>) -> Standing {
    match &view.review {
        Some(r) => Standing {
            exists: true,
            required: r.required,
            reasons: r.reasons.iter().map(|x| x.label()).collect(),
            due: r.due_at,
            overdue: r.overdue(now),
            state: r.state,
            revision: r.revision,
            earlier_sign_off: r
                .first_signed_off_at
                .filter(|_| r.state != ReviewState::SignedOff),
        },
        None => Standing {
            exists: false,
            required: false,
            reasons: Vec::new(),
            due: None,
            overdue: false,
            state: ReviewState::Open,
            revision: 0,
            earlier_sign_off: None,
        },
    }
}

fn review_form(view: &ReviewView, shown: &Shown) -> ReviewForm {
    let current = view.review.as_ref();
    let revision = current.map_or(0, |r| r.revision);
    let (input, read) = match &shown.review {
        Some((input, read)) => (input.clone(), *read),
        None => {
            let mut input = current
                .map(|r| ReviewInput::from_content(&r.content))
                .unwrap_or_else(|| ReviewInput {
                    tz: UTC_OFFSET.into(),
                    ..ReviewInput::default()
                });
            input.incidents.push(IncidentInput::default());
            (input, revision)
        }
    };
    let tz = parse_offset(&input.tz)
        .unwrap_or_else(|| Utc.fix())
        .to_string();
    let rows = input
        .incidents
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let severity = Severity::parse(row.severity.trim());
            let caused = Causation::parse(row.caused.trim());
            let n = i + 1;
            let error = |field: &str| shown.get(&format!("incident_{field}_{n}")).cloned();
            IncidentRow {
                n,
                reference_error: error("reference"),
                severity_error: error("severity"),
                caused_error: error("caused"),
                started_error: error("started"),
                restored_error: error("restored"),
                reference: row.reference.clone(),
                severities: Severity::ALL
                    .iter()
                    .map(|s| Choice {
                        value: s.as_str(),
                        label: s.label(),
                        selected: Some(*s) == severity,
                    })
                    .collect(),
                severity_chosen: severity.is_some(),
                causes: Causation::ALL
                    .iter()
                    .map(|c| Choice {
                        value: c.as_str(),
                        label: c.label(),
                        selected: Some(*c) == caused,
                    })
                    .collect(),
                caused_chosen: caused.is_some(),
                started: row.started.clone(),
                restored: row.restored.clone(),
                focus: shown.added_row == Some(i + 1),
            }
        })
        .collect();
    let intervention = Intervention::parse(input.intervention.trim());
    ReviewForm {
        read,
        outcome: input.outcome,
        interventions: Intervention::ALL
            .iter()
            .map(|i| Choice {
                value: i.as_str(),
                label: i.label(),
                selected: Some(*i) == intervention,
            })
            .collect(),
        went_well: input.went_well,
        went_wrong: input.went_wrong,
        lessons: input.lessons,
        rows,
        offsets: offsets()
            .into_iter()
            .map(|o| OffsetChoice {
                selected: o == tz,
                offset: o,
            })
            .collect(),
        amends: view.state() == ReviewState::SignedOff,
    }
}

/// Why a CAB member or release manager cannot sign off now (nothing for
/// anyone else, or when they can).
fn sign_off_blocked(view: &ReviewView, user: &CurrentUser) -> Option<String> {
    if !(user.has(Role::CabMember) || user.has(Role::ReleaseManager)) {
        return None;
    }
    let r = view.review.as_ref()?;
    if r.revision == 0 {
        return Some("Nothing is written yet, so there is nothing to sign off.".into());
    }
    review::check_sign_off(
        &view.change.facts(),
        &view.deployers,
        &user.actor(),
        r.state,
        &r.content,
    )
    .err()
    .filter(|d| d.code != "already_signed_off")
    .map(|d| d.message)
}

async fn review_page(
    viewer: &Viewer,
    view: ReviewView,
    shown: Shown,
    status: StatusCode,
) -> Result<Response, AppError> {
    let mut conn = viewer.state.pool.acquire().await?;
    let people = People::load(&mut conn).await?;
    drop(conn);
    let user = &viewer.user;
    let actor = user.actor();
    let now = Utc::now();
    let facts = view.change.facts();
    let state = view.state();
    let closure = match &view.closure {
        Some(c) => Some(ClosureLine {
            code: crate::words::stored(CloseCode::parse(&c.code), "close code", &c.code)?,
            notes: c.notes.clone(),
            by: c.closed_by.as_deref().map(|u| people.name(u)),
            at: c.closed_at,
        }),
        None => None,
    };
    let close = view.may_close(user).then(|| {
        let typed = shown.typed("close_code");
        let fitting: Vec<CloseCode> = CloseCode::ALL
            .iter()
            .copied()
            .filter(|c| review::check_close_code(view.change.state, *c).is_ok())
            .collect();
        CloseForm {
            codes: fitting
                .iter()
                .map(|c| Choice {
                    value: c.as_str(),
                    label: c.label(),
                    selected: c.as_str() == typed || fitting.len() == 1,
                })
                .collect(),
            notes: shown.typed("close_notes").to_owned(),
        }
    });
    let close_later = (close.is_none()
        && view.change.state != ChangeState::Closed
        && view.change.state.carries_approval()
        && review::check_close(&facts, &actor).is_ok())
    .then(|| review::check_close_code(view.change.state, CloseCode::Successful).err())
    .flatten()
    .map(|d| d.message);
    let may_write = view.may_write(user);
    let not_reviewable = (!may_write)
        .then(|| review::check_write(&facts, &actor).err())
        .flatten()
        .filter(|d| d.code == "not_reviewable")
        .map(|d| d.message);
    let signed = view
        .review
        .as_ref()
        .filter(|r| r.state == ReviewState::SignedOff)
        .and_then(|r| {
            Some(Signed {
                by: people.name(r.signed_off_by.as_deref()?),
                revision: r.revision,
                at: r.signed_off_at?,
            })
        });
    let today = now.date_naive();
    let actions = view
        .actions
        .iter()
        .map(|a| {
            let status =
                crate::words::stored(ActionStatus::parse(&a.status), "action status", &a.status)?;
            let typed = ActionStatus::parse(shown.typed(&format!("status_{}", a.number)));
            let chosen = typed.unwrap_or(status);
            Ok(ActionLine {
                id: a.id,
                number: a.number,
                title: a.title.clone(),
                owner: people.name(&a.owner),
                due_on: a.due_on,
                overdue: status != ActionStatus::Done && a.due_on < today,
                may_update: review::check_action(&facts, &actor, Some(a.owner_id), false, state)
                    .is_ok(),
                error: shown.get(&format!("status_{}", a.number)).cloned(),
                statuses: ActionStatus::ALL
                    .iter()
                    .map(|s| Choice {
                        value: s.as_str(),
                        label: s.label(),
                        selected: *s == chosen,
                    })
                    .collect(),
                status,
            })
        })
        .collect::<Result<Vec<_>, AppError>>()?;
    let mut revisions = Vec::with_capacity(view.revisions.len());
    let mut before = ReviewContent::default();
    for r in &view.revisions {
        let content = stored_content(&r.content)?;
        revisions.push(RevisionLine {
            number: r.revision,
            by: people.name(&r.author),
            at: r.created_at,
            fields: content.diff(&before).into_iter().map(field_label).collect(),
        });
        before = content;
    }
    revisions.reverse();
    let page = ReviewPage {
        layout: viewer.layout(format!(
            "Review of {} {}",
            view.change.key(),
            view.change.content.title
        )),
        href: page_of(view.change.id),
        change_href: format!("/changes/{}", view.change.id),
        key: view.change.key(),
        title: view.change.content.title.clone(),
        state: view.change.state,
        closure,
        close,
        close_later,
        review: standing(&view, now),
        form: may_write.then(|| review_form(&view, &shown)),
        not_reviewable,
        sign_off: view.may_sign_off(user),
        sign_off_blocked: sign_off_blocked(&view, user),
        signed,
        actions,
        add_action: review::check_action(&facts, &actor, None, true, state).is_ok(),
        revisions,
        errors: shown,
    };
    Ok((status, render(&page)).into_response())
}

async fn load(viewer: &Viewer, raw: &str) -> Result<ReviewView, AppError> {
    let id = changes::resolve_id(&viewer.state.pool, raw).await?;
    service::load(&viewer.state.pool, id).await
}

/// `GET /changes/{id}/review`: by the change's id or its key (`CHG-12`).
pub(super) async fn show(viewer: Viewer, Path(id): Path<String>) -> PageResult {
    let view = load(&viewer, &id).await?;
    Ok(review_page(&viewer, view, Shown::default(), StatusCode::OK).await?)
}

/// Whether the error is a refusal a page says in words (recorded already).
fn is_refusal(err: &AppError) -> bool {
    matches!(
        err,
        AppError::Forbidden(_) | AppError::Conflict(_) | AppError::Refusals(_)
    )
}

/// The page again after an action that did not happen: its refusal
/// (already recorded), or its errors beside the fields of `from`, with
/// what was typed (`shown` holds it).
async fn shown_again(
    viewer: &Viewer,
    change: Uuid,
    err: AppError,
    from: Source,
    mut shown: Shown,
) -> PageResult {
    let status = err.status();
    match err {
        AppError::Refusals(reasons) => {
            shown.refused = reasons.into_iter().map(|d| d.message).collect();
        }
        e if is_refusal(&e) => shown.refused = vec![e.detail()],
        AppError::Invalid { field, message } => shown.field(from.place(&field, message)),
        AppError::Fields(list) => {
            for (field, message) in list {
                shown.field(from.place(&field, message));
            }
        }
        other => return Err(other.into()),
    }
    let view = service::load(&viewer.state.pool, change).await?;
    Ok(review_page(viewer, view, shown, status).await?)
}

/// `POST /changes/{id}/close`: closes the change with a close code and
/// notes.
pub(super) async fn close(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
    Form(form): Form<Pairs>,
) -> PageResult {
    let pool = &viewer.state.pool;
    let id = changes::resolve_id(pool, &id).await?;
    let code = value(&form, "code");
    let notes = value(&form, "notes");
    match service::close(pool, &viewer.user, &origin, id, &code, &notes).await {
        Ok(after) => {
            let code = after
                .closure
                .as_ref()
                .and_then(|c| CloseCode::parse(&c.code))
                .or_else(|| CloseCode::parse(&code))
                .ok_or_else(|| AppError::Internal(anyhow::anyhow!("closed without a code")))?;
            let owed = after
                .review
                .as_ref()
                .is_some_and(|r| r.required && r.first_signed_off_at.is_none());
            Ok(redirect_with(
                &viewer,
                &format!("{}#closure", page_of(id)),
                Notice::ChangeClosed {
                    number: after.change.number,
                    code,
                    owed,
                },
            ))
        }
        Err(e) => {
            let mut shown = Shown::default();
            shown.keep("close_code", code);
            shown.keep("close_notes", notes);
            shown_again(&viewer, id, e, Source::Close, shown).await
        }
    }
}

/// `POST /changes/{id}/review`: saves a new revision of the review, or with
/// "Add another incident" shows the form again with one more incident row.
pub(super) async fn save(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
    Form(form): Form<Pairs>,
) -> PageResult {
    let pool = &viewer.state.pool;
    let view = load(&viewer, &id).await?;
    let id = view.change.id;
    let mut input = ReviewInput::from_form(&form);
    let read = value(&form, "read").trim().parse::<i32>().unwrap_or(0);
    let may_write = view.may_write(&viewer.user);
    // Another row saves nothing; someone who may not write the review
    // posting the form is answered by the service, refused and recorded.
    if checked(&form, "more") && may_write {
        if input.incidents.len() < MAX_ROWS {
            input.incidents.push(IncidentInput::default());
        }
        let shown = Shown {
            added_row: Some(input.incidents.len()),
            review: Some((input, read)),
            ..Shown::default()
        };
        return Ok(review_page(&viewer, view, shown, StatusCode::OK).await?);
    }
    let (content, unreadable, rows) = input.content();
    if !unreadable.is_empty() && may_write {
        let mut shown = Shown::default();
        for e in unreadable {
            shown.field(e);
        }
        // What the rules say of the rest, at once.
        let from = Source::Review(rows);
        for e in content.normalized().validate(Utc::now()) {
            shown.field(from.place(e.field, e.message));
        }
        shown.review = Some((input, read));
        return Ok(review_page(&viewer, view, shown, StatusCode::UNPROCESSABLE_ENTITY).await?);
    }
    let before = view.review.as_ref().map_or(0, |r| r.revision);
    let was_signed_off = view.state() == ReviewState::SignedOff;
    match service::save(pool, &viewer.user, &origin, id, content, read).await {
        Ok(after) => {
            let number = after.change.number;
            let revision = after.review.as_ref().map_or(0, |r| r.revision);
            let notice = if revision == before {
                Notice::ReviewUnchanged { number }
            } else {
                Notice::ReviewSaved {
                    number,
                    revision,
                    amended: was_signed_off,
                }
            };
            Ok(redirect_with(
                &viewer,
                &format!("{}#review", page_of(id)),
                notice,
            ))
        }
        Err(e) => {
            let shown = Shown {
                review: Some((input, read)),
                ..Shown::default()
            };
            shown_again(&viewer, id, e, Source::Review(rows), shown).await
        }
    }
}

/// `POST /changes/{id}/review/sign-off`: signs off the revision read.
pub(super) async fn sign_off(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
    Form(form): Form<Pairs>,
) -> PageResult {
    let pool = &viewer.state.pool;
    let id = changes::resolve_id(pool, &id).await?;
    let read = value(&form, "read").trim().parse::<i32>().unwrap_or(0);
    match service::sign_off(pool, &viewer.user, &origin, id, read).await {
        Ok(after) => Ok(redirect_with(
            &viewer,
            &format!("{}#sign-off", page_of(id)),
            Notice::ReviewSignedOff {
                number: after.change.number,
                revision: after.review.as_ref().map_or(read, |r| r.revision),
            },
        )),
        Err(e) => shown_again(&viewer, id, e, Source::SignOff, Shown::default()).await,
    }
}

/// `POST /changes/{id}/review/actions`: adds an action item.
pub(super) async fn add_action(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
    Form(form): Form<Pairs>,
) -> PageResult {
    let pool = &viewer.state.pool;
    let id = changes::resolve_id(pool, &id).await?;
    let title = value(&form, "title");
    let owner = value(&form, "owner");
    let due_raw = value(&form, "due_on");
    let due_on = NaiveDate::parse_from_str(due_raw.trim(), "%Y-%m-%d").ok();
    match service::add_action(pool, &viewer.user, &origin, id, &title, &owner, due_on).await {
        Ok(added) => Ok(redirect_with(
            &viewer,
            &format!("{}#actions", page_of(id)),
            Notice::ReviewActionAdded {
                number: added.change_number,
            },
        )),
        Err(e) => {
            // A date that could not be read is not a missing one.
            let e = match e {
                AppError::Fields(list) if due_on.is_none() && !due_raw.trim().is_empty() => {
                    AppError::Fields(
                        list.into_iter()
                            .map(|(f, m)| {
                                if f == "due_on" {
                                    (f, "Give the due date as a date, e.g. 2026-12-01.".into())
                                } else {
                                    (f, m)
                                }
                            })
                            .collect(),
                    )
                }
                other => other,
            };
            let mut shown = Shown::default();
            shown.keep("action_title", title);
            shown.keep("action_owner", owner);
            shown.keep("action_due_on", due_raw);
            shown_again(&viewer, id, e, Source::AddAction, shown).await
        }
    }
}

/// `POST /review-actions/{id}/status`: moves an action item along.
pub(super) async fn set_status(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
    Form(form): Form<Pairs>,
) -> PageResult {
    let pool = &viewer.state.pool;
    let id = id
        .parse::<Uuid>()
        .map_err(|_| AppError::NotFound("action item"))?;
    let item = {
        let mut conn = pool.acquire().await?;
        cab_db::reviews::action(&mut conn, id)
            .await?
            .ok_or(AppError::NotFound("action item"))?
    };
    let status = value(&form, "status");
    match service::set_action_status(pool, &viewer.user, &origin, id, &status).await {
        Ok(after) => Ok(redirect_with(
            &viewer,
            &format!("{}#action-{}", page_of(after.change_id), after.number),
            Notice::ReviewActionUpdated {
                number: after.change_number,
                status: crate::words::stored(
                    ActionStatus::parse(&after.status),
                    "action status",
                    &after.status,
                )?,
            },
        )),
        Err(e) => {
            let mut shown = Shown::default();
            shown.keep(&format!("status_{}", item.number), status);
            shown_again(
                &viewer,
                item.change_id,
                e,
                Source::Status(item.number),
                shown,
            )
            .await
        }
    }
}

// ---------------------------------------------------------------------------
// Summaries for other pages

/// How a change ended and where its review stands, for the change's page.
pub(super) struct Ending {
    pub href: String,
    /// "Closed as … by …", when it is closed.
    pub closed: Option<String>,
    pub notes: String,
    /// The person looking may close it (from the review page).
    pub may_close: bool,
    /// Where the review stands, in a sentence.
    pub review: String,
    pub overdue: bool,
    pub open_actions: usize,
}

/// The summary of how the change ended, once there is anything to say: it
/// was approved, or it is closed or reviewed.
pub(super) async fn ending(viewer: &Viewer, change: Uuid) -> Result<Option<Ending>, AppError> {
    let view = service::load(&viewer.state.pool, change).await?;
    let s = view.change.state;
    if !(s.carries_approval() || s == ChangeState::Closed)
        && view.closure.is_none()
        && view.review.is_none()
    {
        return Ok(None);
    }
    let mut conn = viewer.state.pool.acquire().await?;
    let people = People::load(&mut conn).await?;
    drop(conn);
    let now = Utc::now();
    let closed = match &view.closure {
        Some(c) => {
            let code = crate::words::stored(CloseCode::parse(&c.code), "close code", &c.code)?;
            let by = match &c.closed_by {
                Some(u) => format!(" by {}", people.name(u)),
                None => " by CAB".to_owned(),
            };
            Some(format!(
                "Closed as {}{by}, {}.",
                code.label().to_lowercase(),
                when(&c.closed_at)
            ))
        }
        None => None,
    };
    let review = match &view.review {
        Some(r) if r.state == ReviewState::SignedOff => format!(
            "Signed off: revision {} of the post-implementation review{}.",
            r.revision,
            r.signed_off_by
                .as_deref()
                .map(|u| format!(" by {}", people.name(u)))
                .unwrap_or_default()
        ),
        Some(r) if r.required => {
            let why = r
                .reasons
                .iter()
                .map(|x| x.label())
                .collect::<Vec<_>>()
                .join("; ");
            let due = r
                .due_at
                .map(|d| format!(", due {}", when(&d)))
                .unwrap_or_default();
            let written = if r.revision == 0 {
                "nothing is written yet".to_owned()
            } else {
                format!("revision {} is written and waits for sign-off", r.revision)
            };
            format!("A post-implementation review is owed ({why}){due}; {written}.")
        }
        Some(r) if r.revision > 0 => format!(
            "An optional post-implementation review is being written (revision {}); it waits for sign-off.",
            r.revision
        ),
        _ => "No post-implementation review is owed; one may still be written.".to_owned(),
    };
    Ok(Some(Ending {
        href: page_of(view.change.id),
        notes: view
            .closure
            .as_ref()
            .map(|c| c.notes.clone())
            .unwrap_or_default(),
        may_close: view.may_close(&viewer.user),
        overdue: view.review.as_ref().is_some_and(|r| r.overdue(now)),
        open_actions: view
            .actions
            .iter()
            .filter(|a| a.status != ActionStatus::Done.as_str())
            .count(),
        closed,
        review,
    }))
}

/// An overdue review, as the dashboards and the CAB queue list it.
pub(super) struct OverdueReviewLine {
    pub href: String,
    pub key: String,
    pub title: String,
    pub due: String,
}

/// An overdue action item, as the dashboards and the CAB queue list it.
pub(super) struct OverdueActionLine {
    pub href: String,
    pub key: String,
    pub title: String,
    pub owner: String,
    pub due: String,
}

/// What is overdue, for `templates/reviews/_overdue.html`.
#[derive(Default)]
pub(super) struct OverdueLines {
    pub reviews: Vec<OverdueReviewLine>,
    pub actions: Vec<OverdueActionLine>,
}

/// What is overdue for `user`: everything for CAB members and release
/// managers; for anyone else, the reviews of the changes they wrote or
/// contribute to and the action items they own.
pub(super) async fn overdue(
    conn: &mut PgConnection,
    user: &CurrentUser,
    people: &People,
) -> Result<OverdueLines, AppError> {
    let all = user.has(Role::CabMember) || user.has(Role::ReleaseManager);
    let found = service::overdue(conn, user.id, all, Utc::now()).await?;
    Ok(OverdueLines {
        reviews: found
            .reviews
            .into_iter()
            .map(|r| OverdueReviewLine {
                href: page_of(r.change_id),
                key: ChangeKey(r.number).to_string(),
                title: r.title,
                due: when(&r.due_at),
            })
            .collect(),
        actions: found
            .actions
            .into_iter()
            .map(|a| OverdueActionLine {
                href: format!("{}#action-{}", page_of(a.change_id), a.number),
                key: ChangeKey(a.change_number).to_string(),
                title: a.title,
                owner: people.name(&a.owner),
                due: a.due_on.format("%Y-%m-%d").to_string(),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incident_message_lands_beside_its_row() {
        // The second and fourth rows were filled in; the first of them is
        // incident 1 to the rules.
        let rows = [2, 4];
        let placed = incident_place(
            &rows,
            "Incident 2: service cannot be restored before the incident started.".into(),
        );
        assert_eq!(placed.0, "incident_restored_4");
        assert_eq!(
            placed.2,
            "Incident 4: service cannot be restored before the incident started."
        );
        let placed = incident_place(
            &rows,
            "Incident 1: give its reference (1 to 100 characters).".into(),
        );
        assert_eq!(placed.0, "incident_reference_2");
        let placed = incident_place(&rows, "A review links at most 20 incidents.".into());
        assert_eq!(placed.0, "incidents");
    }

    #[test]
    fn incident_times_read_in_the_offset_given() {
        let plus_two = parse_offset("+02:00").unwrap();
        let t = read_time("2026-03-01T12:30", plus_two).unwrap().unwrap();
        assert_eq!(t.to_rfc3339(), "2026-03-01T10:30:00+00:00");
        assert_eq!(local_input(t, plus_two), "2026-03-01T12:30");
        assert_eq!(read_time(" ", plus_two), Ok(None));
        assert!(read_time("yesterday", plus_two).is_err());
    }

    #[test]
    fn blank_rows_are_left_out() {
        let form: Pairs = [
            ("incident_reference_1", ""),
            ("incident_severity_1", "sev2"),
            ("incident_caused_1", "confirmed"),
            ("incident_reference_2", "INC-7"),
            ("incident_severity_2", "sev2"),
            ("incident_caused_2", "suspected"),
            ("incident_started_2", "2026-03-01T12:30"),
            ("incident_tz", "+00:00"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let (content, errors, rows) = ReviewInput::from_form(&form).content();
        assert!(errors.is_empty());
        assert_eq!(rows, [2]);
        assert_eq!(content.incidents.len(), 1);
        assert_eq!(content.incidents[0].reference, "INC-7");
    }
}
