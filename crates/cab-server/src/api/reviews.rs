//! How a change ends over the API: closing it with a close code, its
//! post-implementation review (every saved edit a revision, signed off by
//! someone who did not work on the change), the review's action items, what
//! is overdue, and the review settings. The same operations as the pages;
//! every refusal is recorded by the service.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use cab_db::reviews::{ActionRow, Closure, OverdueReview};
use cab_domain::audit::Attempt;
use cab_domain::change::{ChangeKey, FieldError};
use cab_domain::review::{
    self, ActionStatus, Causation, CloseCode, Incident, Intervention, ReviewContent, Severity,
};
use cab_domain::text::quoted;
use cab_domain::{Denial, Role, Vocabulary};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::idempotency::IdempotencyKey;
use super::{ApiPath, AppJson};
use crate::audit_log::Entity;
use crate::auth::{ApiUser, CurrentUser};
use crate::changes;
use crate::error::{ApiResult, AppError, Problem};
use crate::refusal;
use crate::request::Origin;
use crate::reviews::{self, ReviewSettings, ReviewView, StoredReview};
use crate::state::AppState;
use crate::vocab;

// ---------------------------------------------------------------------------
// As answered

/// How a change was closed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClosureOut {
    /// successful, successful_with_issues, failed_rolled_back,
    /// failed_not_rolled_back or not_implemented
    code: String,
    code_label: String,
    notes: String,
    closed_at: DateTime<Utc>,
    /// The username of who closed it; null when CAB closed it on its own
    /// (its window passed and it never reached production).
    closed_by: Option<String>,
}

impl From<&Closure> for ClosureOut {
    fn from(c: &Closure) -> Self {
        ClosureOut {
            code_label: CloseCode::parse(&c.code)
                .map_or_else(|| c.code.clone(), |code| code.label().to_owned()),
            code: c.code.clone(),
            notes: c.notes.clone(),
            closed_at: c.closed_at,
            closed_by: c.closed_by.clone(),
        }
    }
}

/// How the change was closed, if it was, as the change's own
/// representation shows it.
pub async fn closure_of(state: &AppState, id: Uuid) -> Result<Option<ClosureOut>, AppError> {
    let mut conn = state.pool.acquire().await?;
    Ok(cab_db::reviews::closure(&mut conn, id)
        .await?
        .as_ref()
        .map(ClosureOut::from))
}

/// A word and its label.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WordOut {
    code: String,
    label: String,
}

fn word<T: Vocabulary>(w: T) -> WordOut {
    WordOut {
        code: w.as_str().to_owned(),
        label: w.label().to_owned(),
    }
}

/// The change a review belongs to.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReviewChangeOut {
    id: Uuid,
    /// CHG-<number>
    key: String,
    title: String,
    /// The change's state, e.g. `implemented` or `closed`.
    state: String,
    state_label: String,
}

/// An incident the review links to the change.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IncidentOut {
    reference: String,
    /// sev1, sev2, sev3 or sev4
    severity: String,
    severity_label: String,
    /// Whether the change caused it: confirmed, suspected or ruled_out.
    caused: String,
    caused_label: String,
    started_at: DateTime<Utc>,
    /// Null while service is not restored.
    restored_at: Option<DateTime<Utc>>,
}

/// What a review says.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReviewContentOut {
    outcome: String,
    /// none, rollback, hotfix or forward_fix; null while not said.
    intervention: Option<String>,
    intervention_label: Option<String>,
    incidents: Vec<IncidentOut>,
    went_well: String,
    went_wrong: String,
    lessons: String,
}

impl From<&ReviewContent> for ReviewContentOut {
    fn from(c: &ReviewContent) -> Self {
        ReviewContentOut {
            outcome: c.outcome.clone(),
            intervention: c.intervention.map(|i| i.as_str().to_owned()),
            intervention_label: c.intervention.map(|i| i.label().to_owned()),
            incidents: c
                .incidents
                .iter()
                .map(|i| IncidentOut {
                    reference: i.reference.clone(),
                    severity: i.severity.as_str().to_owned(),
                    severity_label: i.severity.label().to_owned(),
                    caused: i.caused.as_str().to_owned(),
                    caused_label: i.caused.label().to_owned(),
                    started_at: i.started_at,
                    restored_at: i.restored_at,
                })
                .collect(),
            went_well: c.went_well.clone(),
            went_wrong: c.went_wrong.clone(),
            lessons: c.lessons.clone(),
        }
    }
}

/// The post-implementation review.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReviewOut {
    /// Owed (a rule says so); an optional review is not.
    required: bool,
    /// Why it is owed: failed, emergency, break_glass, high_risk, incident
    /// or policy; empty when optional.
    reasons: Vec<WordOut>,
    /// When it is due; null when optional.
    due_at: Option<DateTime<Utc>>,
    /// Owed, never signed off, and past its due time.
    overdue: bool,
    /// open (being written) or signed_off
    state: String,
    state_label: String,
    /// The revision being written or signed off; 0 until first saved. Save
    /// and sign off name the revision you read.
    revision: i32,
    content: ReviewContentOut,
    /// The username of who signed off the current revision; null while it
    /// is not.
    signed_off_by: Option<String>,
    signed_off_at: Option<DateTime<Utc>>,
    /// When it was first signed off: a later amendment does not make it
    /// overdue again.
    first_signed_off_at: Option<DateTime<Utc>>,
}

fn review_out(r: &StoredReview, now: DateTime<Utc>) -> ReviewOut {
    ReviewOut {
        required: r.required,
        reasons: r.reasons.iter().copied().map(word).collect(),
        due_at: r.due_at,
        overdue: r.overdue(now),
        state: r.state.as_str().to_owned(),
        state_label: r.state.label().to_owned(),
        revision: r.revision,
        content: ReviewContentOut::from(&r.content),
        signed_off_by: r.signed_off_by.clone(),
        signed_off_at: r.signed_off_at,
        first_signed_off_at: r.first_signed_off_at,
    }
}

/// An action item the review decided on, tracked to done.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReviewActionOut {
    id: Uuid,
    /// Its number, unique across all reviews.
    number: i64,
    /// The change whose review it belongs to: CHG-<number>.
    change: String,
    title: String,
    /// The username of the person who owns it.
    owner: String,
    due_on: NaiveDate,
    /// open, in_progress or done
    status: String,
    status_label: String,
    done_at: Option<DateTime<Utc>>,
    /// Not done and past its due date.
    overdue: bool,
}

fn action_out(a: &ActionRow, today: NaiveDate) -> ReviewActionOut {
    ReviewActionOut {
        id: a.id,
        number: a.number,
        change: ChangeKey(a.change_number).to_string(),
        title: a.title.clone(),
        owner: a.owner.clone(),
        due_on: a.due_on,
        status_label: ActionStatus::parse(&a.status)
            .map_or_else(|| a.status.clone(), |s| s.label().to_owned()),
        status: a.status.clone(),
        done_at: a.done_at,
        overdue: a.status != ActionStatus::Done.as_str() && a.due_on < today,
    }
}

/// An action item as its creating request answers it.
pub async fn created_action(state: &AppState, id: Uuid) -> Result<ReviewActionOut, AppError> {
    let mut conn = state.pool.acquire().await?;
    let row = cab_db::reviews::action(&mut conn, id)
        .await?
        .ok_or(AppError::NotFound("action item"))?;
    Ok(action_out(&row, Utc::now().date_naive()))
}

/// One saved revision of the review.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReviewRevisionOut {
    revision: i32,
    /// The username of who saved it.
    author: String,
    created_at: DateTime<Utc>,
    content: ReviewContentOut,
}

/// How a change ended and its review: everything, in one document.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangeReviewOut {
    change: ReviewChangeOut,
    /// How it was closed; null while it is not.
    closure: Option<ClosureOut>,
    /// Null while no review is owed or started.
    review: Option<ReviewOut>,
    /// Its action items, oldest first.
    actions: Vec<ReviewActionOut>,
    /// Every saved revision, oldest first.
    revisions: Vec<ReviewRevisionOut>,
}

fn stored_content(raw: &serde_json::Value) -> Result<ReviewContent, AppError> {
    serde_json::from_value(raw.clone()).map_err(|e| {
        AppError::Internal(anyhow::anyhow!("stored review revision is unreadable: {e}"))
    })
}

fn review_document(v: &ReviewView) -> Result<ChangeReviewOut, AppError> {
    let now = Utc::now();
    let today = now.date_naive();
    let mut revisions = Vec::with_capacity(v.revisions.len());
    for r in &v.revisions {
        revisions.push(ReviewRevisionOut {
            revision: r.revision,
            author: r.author.clone(),
            created_at: r.created_at,
            content: ReviewContentOut::from(&stored_content(&r.content)?),
        });
    }
    Ok(ChangeReviewOut {
        change: ReviewChangeOut {
            id: v.change.id,
            key: v.change.key(),
            title: v.change.content.title.clone(),
            state: v.change.state.as_str().to_owned(),
            state_label: v.change.state.label().to_owned(),
        },
        closure: v.closure.as_ref().map(ClosureOut::from),
        review: v.review.as_ref().map(|r| review_out(r, now)),
        actions: v.actions.iter().map(|a| action_out(a, today)).collect(),
        revisions,
    })
}

// ---------------------------------------------------------------------------
// Closing

/// How the change ended.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseIn {
    /// successful, successful_with_issues, failed_rolled_back,
    /// failed_not_rolled_back or not_implemented. It must fit the change's
    /// production deployments: a success after a failed deployment, a
    /// failure without a deployment, or not implemented after one is
    /// refused (`close_code_mismatch`).
    #[serde(default)]
    code: String,
    /// What happened; required for every code but successful (at most 4000
    /// characters).
    #[serde(default)]
    notes: String,
}

/// Close the change with a close code (its authors and contributors, CAB
/// members, release managers and administrators; never a service account).
/// A change whose production deployment is under way, or that is in a
/// release not yet over, is not closed. A review is owed when a rule says
/// so (a failure, an emergency, break-glass, high or critical risk, a
/// linked incident, or the setting that owes one for every change).
/// Answered with how the change ended and its review. Audited; a refusal is
/// audited too.
#[utoipa::path(
    post, path = "/api/v1/changes/{id}/close", tag = "reviews",
    params(("id" = String, Path, description = "UUID or CHG-<number>")),
    request_body = CloseIn,
    responses(
        (status = 200, body = ChangeReviewOut),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "close_not_allowed, service_account, close_code_mismatch, not_approved, release_under_way"),
        (status = 404, body = Problem),
        (status = 409, body = Problem, description = "change_closed, deployment_under_way"),
        (status = 422, body = Problem, description = "`code`, or `notes` when the code needs them")
    )
)]
#[tracing::instrument(skip_all, err(level = "warn"))]
pub async fn close_change(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<String>,
    AppJson(body): AppJson<CloseIn>,
) -> ApiResult<Json<ChangeReviewOut>> {
    let id = changes::resolve_id(&state.pool, &id).await?;
    let view = reviews::close(
        &state.pool,
        &user,
        &origin,
        id,
        body.code.trim(),
        &body.notes,
    )
    .await?;
    Ok(Json(review_document(&view)?))
}

// ---------------------------------------------------------------------------
// The review

/// How a change ended and its review: the closure, the review as it stands
/// (why it is owed, when it is due, its content and sign-off), its action
/// items and every saved revision. Open to everyone signed in.
#[utoipa::path(
    get, path = "/api/v1/changes/{id}/review", tag = "reviews",
    params(("id" = String, Path, description = "UUID or CHG-<number>")),
    responses((status = 200, body = ChangeReviewOut), (status = 401, body = Problem), (status = 404, body = Problem))
)]
pub async fn get_review(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ChangeReviewOut>> {
    let id = changes::resolve_id(&state.pool, &id).await?;
    let view = reviews::load(&state.pool, id).await?;
    Ok(Json(review_document(&view)?))
}

/// An incident to link.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentIn {
    /// The incident's reference, e.g. INC-4711 (1 to 100 characters).
    #[serde(default)]
    reference: String,
    /// sev1, sev2, sev3 or sev4
    #[serde(default)]
    severity: String,
    /// Whether the change caused it: confirmed, suspected or ruled_out.
    /// A confirmed or suspected one owes a review.
    #[serde(default)]
    caused: String,
    /// When it started (RFC 3339), not in the future.
    #[serde(default)]
    #[schema(required = true)]
    started_at: Option<String>,
    /// When service was restored (RFC 3339), not before it started; null
    /// while it is not. Needed before sign-off.
    #[serde(default)]
    restored_at: Option<String>,
}

/// A revision of the review. A draft may be incomplete; signing off needs
/// the outcome, the intervention and the lessons, and every incident's
/// restoration.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewIn {
    /// The revision you read (0 when there was none); refused
    /// (`stale_revision`) if the review has moved on since.
    #[serde(default)]
    #[schema(required = true)]
    revision: Option<i32>,
    /// What the outcome was (at most 4000 characters, as every text here).
    #[serde(default)]
    outcome: String,
    /// What it took to restore service: none, rollback, hotfix or
    /// forward_fix; null or empty while not said.
    #[serde(default)]
    intervention: Option<String>,
    /// At most 20.
    #[serde(default)]
    incidents: Vec<IncidentIn>,
    #[serde(default)]
    went_well: String,
    #[serde(default)]
    went_wrong: String,
    /// The lessons learned ("none" is an answer).
    #[serde(default)]
    lessons: String,
}

/// A time as sent for an incident, or what is wrong with it.
fn incident_time(
    errors: &mut Vec<FieldError>,
    n: usize,
    what: &str,
    raw: Option<&str>,
) -> Option<DateTime<Utc>> {
    let raw = raw.map(str::trim).filter(|s| !s.is_empty())?;
    match DateTime::parse_from_rfc3339(raw) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => {
            errors.push(FieldError {
                field: "incidents",
                message: format!(
                    "Incident {n}: {} is not a time for {what} (RFC 3339, e.g. 2026-12-01T10:00:00Z).",
                    quoted(raw)
                ),
            });
            None
        }
    }
}

fn incident_word<T: Vocabulary>(
    errors: &mut Vec<FieldError>,
    n: usize,
    what: &str,
    raw: &str,
) -> Option<T> {
    let parsed = T::parse(raw.trim());
    if parsed.is_none() {
        errors.push(FieldError {
            field: "incidents",
            message: format!(
                "Incident {n}: {} is not a {what}; choose one of {}.",
                quoted(raw),
                vocab::known::<T>()
            ),
        });
    }
    parsed
}

impl ReviewIn {
    /// The revision read and the content, or every fault in what was sent.
    /// The content's own rules (lengths, times, text) are the service's.
    fn into_content(self) -> Result<(i32, ReviewContent), AppError> {
        let mut errors: Vec<FieldError> = Vec::new();
        if self.revision.is_none() {
            errors.push(FieldError {
                field: "revision",
                message: "Give the revision of the review you read (0 when there was none).".into(),
            });
        }
        let intervention = match self
            .intervention
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => None,
            Some(raw) => match Intervention::parse(raw) {
                Some(i) => Some(i),
                None => {
                    errors.push(FieldError {
                        field: "intervention",
                        message: format!(
                            "{} is not one of {}.",
                            quoted(raw),
                            vocab::known::<Intervention>()
                        ),
                    });
                    None
                }
            },
        };
        let mut incidents = Vec::with_capacity(self.incidents.len());
        for (i, inc) in self.incidents.into_iter().enumerate() {
            let n = i + 1;
            let severity = incident_word::<Severity>(&mut errors, n, "severity", &inc.severity);
            let caused = incident_word::<Causation>(&mut errors, n, "causation", &inc.caused);
            let started = incident_time(&mut errors, n, "its start", inc.started_at.as_deref());
            if inc
                .started_at
                .as_deref()
                .is_none_or(|s| s.trim().is_empty())
            {
                errors.push(FieldError {
                    field: "incidents",
                    message: format!("Incident {n}: say when it started."),
                });
            }
            let restored = incident_time(
                &mut errors,
                n,
                "the restoration of service",
                inc.restored_at.as_deref(),
            );
            if let (Some(severity), Some(caused), Some(started_at)) = (severity, caused, started) {
                incidents.push(Incident {
                    reference: inc.reference,
                    severity,
                    caused,
                    started_at,
                    restored_at: restored,
                });
            }
        }
        match self.revision {
            Some(revision) if errors.is_empty() => Ok((
                revision,
                ReviewContent {
                    outcome: self.outcome,
                    intervention,
                    incidents,
                    went_well: self.went_well,
                    went_wrong: self.went_wrong,
                    lessons: self.lessons,
                },
            )),
            _ => Err(errors.into()),
        }
    }
}

/// What was sent, or what is wrong with it; someone who may not do what
/// they asked is refused (and the refusal recorded) before being told.
async fn input_or_refusal<T>(
    state: &AppState,
    user: &CurrentUser,
    origin: &Origin,
    attempted: Attempt,
    id: Uuid,
    rule: impl FnOnce(&changes::ChangeView) -> Result<(), Denial>,
    input: Result<T, AppError>,
) -> Result<T, AppError> {
    match input {
        Ok(input) => Ok(input),
        Err(invalid) => {
            let change = changes::load(&state.pool, id).await?;
            refusal::checked(
                &state.pool,
                user.audit_actor(),
                origin,
                attempted.as_str(),
                Entity::new("change", id),
                rule(&change),
            )
            .await?;
            Err(invalid)
        }
    }
}

/// Save the review (whoever worked on the change, CAB members, release
/// managers, security reviewers and administrators, once the change was
/// approved): a new revision when anything differs. Editing a signed-off
/// review opens it again: the new revision is signed off again, and the
/// first sign-off stands. Linking an incident the change caused or may
/// have caused owes the review. Audited; a refusal is audited too.
#[utoipa::path(
    put, path = "/api/v1/changes/{id}/review", tag = "reviews",
    params(("id" = String, Path, description = "UUID or CHG-<number>")),
    request_body = ReviewIn,
    responses(
        (status = 200, body = ChangeReviewOut),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "review_not_allowed, service_account, not_reviewable, stale_revision"),
        (status = 404, body = Problem),
        (status = 422, body = Problem, description = "`errors` names every field at fault")
    )
)]
#[tracing::instrument(skip_all, err(level = "warn"))]
pub async fn put_review(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<String>,
    AppJson(body): AppJson<ReviewIn>,
) -> ApiResult<Json<ChangeReviewOut>> {
    let id = changes::resolve_id(&state.pool, &id).await?;
    let actor = user.actor();
    let (read, content) = input_or_refusal(
        &state,
        &user,
        &origin,
        Attempt::ReviewWrite,
        id,
        |c| review::check_write(&c.facts(), &actor),
        body.into_content(),
    )
    .await?;
    let view = reviews::save(&state.pool, &user, &origin, id, content, read).await?;
    Ok(Json(review_document(&view)?))
}

/// The revision signed off.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignOffIn {
    /// The revision you read; refused (`stale_revision`) if the review has
    /// moved on since.
    #[serde(default)]
    #[schema(required = true)]
    revision: Option<i32>,
}

/// Sign off the review's current revision (CAB members and release
/// managers who did not write, contribute to or deploy the change), once
/// nothing is missing (`review_incomplete` says what is). The first
/// sign-off of an emergency change's review marks its retrospective done.
/// Audited; a refusal is audited too.
#[utoipa::path(
    post, path = "/api/v1/changes/{id}/review/sign-off", tag = "reviews",
    params(("id" = String, Path, description = "UUID or CHG-<number>")),
    request_body = SignOffIn,
    responses(
        (status = 200, body = ChangeReviewOut),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "sign_off_not_allowed, service_account, self_review, already_signed_off, review_incomplete, stale_revision"),
        (status = 404, body = Problem),
        (status = 422, body = Problem, description = "`revision`")
    )
)]
#[tracing::instrument(skip_all, err(level = "warn"))]
pub async fn sign_off_review(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<String>,
    AppJson(body): AppJson<SignOffIn>,
) -> ApiResult<Json<ChangeReviewOut>> {
    let id = changes::resolve_id(&state.pool, &id).await?;
    let Some(read) = body.revision else {
        return Err(
            AppError::invalid("revision", "Give the revision of the review you read.").into(),
        );
    };
    let view = reviews::sign_off(&state.pool, &user, &origin, id, read).await?;
    Ok(Json(review_document(&view)?))
}

// ---------------------------------------------------------------------------
// Action items

/// An action item to add.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewActionIn {
    /// 1 to 200 characters.
    #[serde(default)]
    title: String,
    /// The username of the active person who owns it.
    #[serde(default)]
    owner: String,
    /// When it is due (YYYY-MM-DD): from today to two years ahead.
    #[serde(default)]
    #[schema(required = true, value_type = String, format = Date)]
    due_on: Option<String>,
}

/// Add an action item to the review (whoever may write the review, while it
/// is being written). Answered with the item. Audited; a refusal is
/// audited too.
#[utoipa::path(
    post, path = "/api/v1/changes/{id}/review/actions", tag = "reviews",
    params(("id" = String, Path, description = "UUID or CHG-<number>"), IdempotencyKey),
    request_body = ReviewActionIn,
    responses(
        (status = 201, body = ReviewActionOut),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "review_not_allowed, service_account, not_reviewable, review_signed_off"),
        (status = 404, body = Problem),
        (status = 422, body = Problem, description = "`errors` names every field at fault: `title`, `owner`, `due_on`")
    )
)]
#[tracing::instrument(skip_all, err(level = "warn"))]
pub async fn add_review_action(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<String>,
    AppJson(body): AppJson<ReviewActionIn>,
) -> ApiResult<(StatusCode, Json<ReviewActionOut>)> {
    let id = changes::resolve_id(&state.pool, &id).await?;
    let due = match body.due_on.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(raw) => NaiveDate::parse_from_str(raw, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| {
                AppError::invalid(
                    "due_on",
                    format!("{} is not a date (YYYY-MM-DD).", quoted(raw)),
                )
            }),
    };
    let actor = user.actor();
    let due_on = input_or_refusal(
        &state,
        &user,
        &origin,
        Attempt::ReviewAction,
        id,
        |c| review::check_write(&c.facts(), &actor),
        due,
    )
    .await?;
    let row = reviews::add_action(
        &state.pool,
        &user,
        &origin,
        id,
        &body.title,
        &body.owner,
        due_on,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(action_out(&row, Utc::now().date_naive())),
    ))
}

/// Where an action item is now.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewActionStatusIn {
    /// open, in_progress or done
    #[serde(default)]
    status: String,
}

/// Move an action item along (its owner, or whoever may write the review;
/// after sign-off too). Audited; a refusal is audited too.
#[utoipa::path(
    post, path = "/api/v1/review-actions/{id}/status", tag = "reviews",
    params(("id" = Uuid, Path, description = "The action item's id")),
    request_body = ReviewActionStatusIn,
    responses(
        (status = 200, body = ReviewActionOut),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "review_not_allowed, service_account, not_reviewable"),
        (status = 404, body = Problem),
        (status = 422, body = Problem, description = "`status`")
    )
)]
#[tracing::instrument(skip_all, err(level = "warn"))]
pub async fn set_review_action_status(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<Uuid>,
    AppJson(body): AppJson<ReviewActionStatusIn>,
) -> ApiResult<Json<ReviewActionOut>> {
    let row =
        reviews::set_action_status(&state.pool, &user, &origin, id, body.status.trim()).await?;
    Ok(Json(action_out(&row, Utc::now().date_naive())))
}

// ---------------------------------------------------------------------------
// What is overdue

/// An owed review not signed off by its due time.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OverdueReviewOut {
    /// CHG-<number>
    change: String,
    title: String,
    due_at: DateTime<Utc>,
    /// The review's page, relative to the server.
    url: String,
}

impl From<&OverdueReview> for OverdueReviewOut {
    fn from(r: &OverdueReview) -> Self {
        let key = ChangeKey(r.number).to_string();
        OverdueReviewOut {
            url: format!("/changes/{key}/review"),
            change: key,
            title: r.title.clone(),
            due_at: r.due_at,
        }
    }
}

/// What is overdue.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OverdueOut {
    /// Owed reviews past due, the longest overdue first.
    reviews: Vec<OverdueReviewOut>,
    /// Action items not done by their due date, the longest overdue first.
    actions: Vec<ReviewActionOut>,
}

/// The overdue reviews and action items: CAB members and release managers
/// see all of them; anyone else the reviews of the changes they wrote or
/// contribute to and the action items they own.
#[utoipa::path(
    get, path = "/api/v1/reviews/overdue", tag = "reviews",
    responses((status = 200, body = OverdueOut), (status = 401, body = Problem))
)]
pub async fn overdue_reviews(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> ApiResult<Json<OverdueOut>> {
    let all = user.has(Role::CabMember) || user.has(Role::ReleaseManager);
    let now = Utc::now();
    let mut conn = state.pool.acquire().await?;
    let overdue = reviews::overdue(&mut conn, user.id, all, now).await?;
    let today = now.date_naive();
    Ok(Json(OverdueOut {
        reviews: overdue.reviews.iter().map(OverdueReviewOut::from).collect(),
        actions: overdue
            .actions
            .iter()
            .map(|a| action_out(a, today))
            .collect(),
    }))
}

// ---------------------------------------------------------------------------
// Settings

/// The review settings in force. Open to everyone signed in.
#[utoipa::path(
    get, path = "/api/v1/settings/reviews", tag = "reviews",
    responses((status = 200, body = ReviewSettings), (status = 401, body = Problem))
)]
pub async fn get_review_settings(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
) -> ApiResult<Json<ReviewSettings>> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(reviews::settings(&mut conn).await?))
}

/// The review settings to set.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewSettingsIn {
    /// Days after the production deployment (or the closure) a review is
    /// due: 1 to 90.
    due_days: i64,
    /// Whether every implemented change owes a review.
    required_for_all: bool,
}

/// Set the review settings (administrators). Audited, with the values
/// before and after; a refusal is audited too.
#[utoipa::path(
    put, path = "/api/v1/settings/reviews", tag = "reviews",
    request_body = ReviewSettingsIn,
    responses(
        (status = 200, body = ReviewSettings),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "admin_required"),
        (status = 422, body = Problem, description = "`due_days`")
    )
)]
#[tracing::instrument(skip_all, err(level = "warn"))]
pub async fn put_review_settings(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    AppJson(body): AppJson<ReviewSettingsIn>,
) -> ApiResult<Json<ReviewSettings>> {
    Ok(Json(
        reviews::set_settings(
            &state.pool,
            &user,
            &origin,
            ReviewSettings {
                due_days: body.due_days,
                required_for_all: body.required_for_all,
            },
        )
        .await?,
    ))
}
