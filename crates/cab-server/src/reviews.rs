//! Closing a change and its post-implementation review: the close code,
//! the review and its revisions, the sign-off by someone who did not work
//! on the change, and the action items. The API and the pages call these;
//! each refusal is recorded. `sweep_lapsed` closes, as not implemented, the
//! approved changes whose window passed without a production deployment.

use cab_db::reviews::{ActionRow, Closure, ReviewRow, RevisionRow};
use cab_domain::audit::{Attempt, AuditAction};
use cab_domain::change::ChangeState;
use cab_domain::lifecycle::{self, Event, Subject};
use cab_domain::review::{
    self, ActionStatus, CloseCode, DEFAULT_DUE_DAYS, Owed, ReviewContent, ReviewReason, ReviewState,
};
use cab_domain::risk::RiskLevel;
use cab_domain::{Actor, Denial, RoleSet};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::audit_log::{self, Entity};
use crate::auth::CurrentUser;
use crate::changes::{self, ChangeView};
use crate::error::AppError;
use crate::lifecycle::apply;
use crate::refusal::{begin_deciding, refused_if_failed};
use crate::request::Origin;

/// The setting that says how many days after a change's production
/// deployment or closure its review is due.
pub const DUE_DAYS_SETTING: &str = "review_due_days";
/// The setting that owes a review for every change.
pub const ALL_SETTING: &str = "reviews_required_for_all";

/// The review settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReviewSettings {
    /// Days after the production deployment (or the closure) a review is due, 1 to 90.
    pub due_days: i64,
    /// Whether every implemented change owes a review.
    pub required_for_all: bool,
}

pub async fn settings(conn: &mut PgConnection) -> Result<ReviewSettings, AppError> {
    let days = cab_db::decisions::setting(conn, DUE_DAYS_SETTING)
        .await?
        .and_then(|v| v.as_i64())
        .filter(|d| (1..=90).contains(d))
        .unwrap_or(DEFAULT_DUE_DAYS);
    let all = cab_db::decisions::setting(conn, ALL_SETTING)
        .await?
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    Ok(ReviewSettings {
        due_days: days,
        required_for_all: all,
    })
}

/// Sets the review settings (administrators).
pub async fn set_settings(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    new: ReviewSettings,
) -> Result<ReviewSettings, AppError> {
    let done = async {
        if !user.roles.contains(cab_domain::Role::Admin) {
            return Err(AppError::Refused(Denial::new(
                "admin_required",
                "Only administrators change the review settings.",
            )));
        }
        if !(1..=90).contains(&new.due_days) {
            return Err(AppError::invalid(
                "due_days",
                "A review is due between 1 and 90 days after the change.",
            ));
        }
        let mut tx = pool.begin().await?;
        let before = settings(&mut tx).await?;
        let now = Utc::now();
        cab_db::decisions::put_setting(
            &mut tx,
            DUE_DAYS_SETTING,
            &json!(new.due_days),
            user.id,
            now,
        )
        .await?;
        cab_db::decisions::put_setting(
            &mut tx,
            ALL_SETTING,
            &json!(new.required_for_all),
            user.id,
            now,
        )
        .await?;
        audit_log::record(
            &mut tx,
            Some(user.audit_actor()),
            origin,
            AuditAction::ReviewSettingsChanged.as_str(),
            Entity::new("settings", "reviews"),
            json!({ "from": before, "to": new }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
    .await;
    let entity = Entity::new("settings", "reviews");
    refused_if_failed(
        pool,
        user,
        origin,
        Attempt::ReviewSettingsSet.as_str(),
        entity,
        done,
    )
    .await?;
    let mut conn = pool.acquire().await?;
    settings(&mut conn).await
}

/// Everything about how a change ended and its review.
#[derive(Debug, Clone)]
pub struct ReviewView {
    pub change: ChangeView,
    pub closure: Option<Closure>,
    pub review: Option<StoredReview>,
    pub revisions: Vec<RevisionRow>,
    pub actions: Vec<ActionRow>,
    /// Everyone who ran or asked for one of its production deployments.
    pub deployers: Vec<Uuid>,
}

/// A review as stored, its content read.
#[derive(Debug, Clone)]
pub struct StoredReview {
    pub required: bool,
    pub reasons: Vec<ReviewReason>,
    pub due_at: Option<DateTime<Utc>>,
    pub content: ReviewContent,
    pub revision: i32,
    pub state: ReviewState,
    pub signed_off_by: Option<String>,
    pub signed_off_at: Option<DateTime<Utc>>,
    pub first_signed_off_at: Option<DateTime<Utc>>,
}

impl StoredReview {
    /// Owed, never signed off, and past its due time.
    pub fn overdue(&self, now: DateTime<Utc>) -> bool {
        self.required && self.first_signed_off_at.is_none() && self.due_at.is_some_and(|d| d < now)
    }
}

fn stored(row: ReviewRow) -> Result<StoredReview, AppError> {
    Ok(StoredReview {
        required: row.required,
        reasons: row
            .reasons
            .iter()
            .filter_map(|r| ReviewReason::parse(r))
            .collect(),
        due_at: row.due_at,
        content: serde_json::from_value(row.content).map_err(|e| AppError::Internal(e.into()))?,
        revision: row.revision,
        state: ReviewState::parse(&row.state)
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("review state {}", row.state)))?,
        signed_off_by: row.signed_off_by,
        signed_off_at: row.signed_off_at,
        first_signed_off_at: row.first_signed_off_at,
    })
}

impl ReviewView {
    pub fn state(&self) -> ReviewState {
        self.review.as_ref().map_or(ReviewState::Open, |r| r.state)
    }

    pub fn may_close(&self, user: &CurrentUser) -> bool {
        review::check_close(&self.change.facts(), &user.actor()).is_ok()
            && self.change.state != ChangeState::Closed
            && CloseCode::ALL
                .iter()
                .any(|c| review::check_close_code(self.change.state, *c).is_ok())
    }

    pub fn may_write(&self, user: &CurrentUser) -> bool {
        let facts = self.change.facts();
        review::check_writer(&facts, &user.actor()).is_ok()
            && (self.review.as_ref().is_some_and(|r| r.required)
                || review::check_reviewable(&facts).is_ok())
    }

    pub fn may_sign_off(&self, user: &CurrentUser) -> bool {
        let Some(r) = &self.review else {
            return false;
        };
        r.revision > 0
            && review::check_sign_off(
                &self.change.facts(),
                &self.deployers,
                &user.actor(),
                r.state,
                &r.content,
            )
            .is_ok()
    }
}

pub async fn load(pool: &PgPool, id: Uuid) -> Result<ReviewView, AppError> {
    let mut conn = pool.acquire().await?;
    let change = changes::load_in(&mut conn, id).await?;
    let closure = cab_db::reviews::closure(&mut conn, id).await?;
    let review = cab_db::reviews::find(&mut conn, id)
        .await?
        .map(stored)
        .transpose()?;
    let revisions = cab_db::reviews::revisions(&mut conn, id).await?;
    let actions = cab_db::reviews::actions(&mut conn, id).await?;
    let deployers = cab_db::reviews::facts(&mut conn, id).await?.deployers;
    Ok(ReviewView {
        change,
        closure,
        review,
        revisions,
        actions,
        deployers,
    })
}

fn entity(id: Uuid) -> Entity<'static> {
    Entity::new("change", id)
}

async fn answered(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    attempt: Attempt,
    id: Uuid,
    done: Result<(), AppError>,
) -> Result<ReviewView, AppError> {
    refused_if_failed(pool, user, origin, attempt.as_str(), entity(id), done).await?;
    load(pool, id).await
}

/// Closes the change with `code` and `notes`.
pub async fn close(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    code: &str,
    notes: &str,
) -> Result<ReviewView, AppError> {
    let done = close_in(pool, user, origin, id, code, notes).await;
    answered(pool, user, origin, Attempt::ChangeClose, id, done).await
}

async fn close_in(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    code: &str,
    notes: &str,
) -> Result<(), AppError> {
    let code = CloseCode::parse(code).ok_or_else(|| {
        AppError::invalid(
            "code",
            format!(
                "Choose how the change ended: {}.",
                CloseCode::ALL
                    .iter()
                    .map(|c| c.label().to_lowercase())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    let notes = notes.trim();
    let mut tx = begin_deciding(pool).await?;
    let change = changes::load_locked(&mut tx, id).await?;
    // Who may close, and whether the code fits, before the notes: a refusal
    // says why the person may not, whatever they typed.
    let facts = change.facts();
    let subject = Subject {
        facts: &facts,
        change_type: change.content.change_type,
        revision: change.revision,
    };
    let now = Utc::now();
    lifecycle::next(&subject, &user.actor(), &Event::Close(code), now)
        .map_err(AppError::Refused)?;
    let reached = cab_db::reviews::reached_production(&mut tx, id).await?;
    review::check_close_record(code, reached).map_err(AppError::Refused)?;
    review::check_close_notes(code, notes)?;
    if cab_db::reviews::production_under_way(&mut tx, id).await? {
        return Err(AppError::Refused(Denial::new(
            "deployment_under_way",
            "A production deployment of this change is authorized or under way; close it once the deployment has ended.",
        )));
    }
    if let Some(number) = cab_db::reviews::open_release(&mut tx, id).await? {
        return Err(AppError::Refused(Denial::new(
            "release_under_way",
            format!(
                "This change is in {}, which is not over; close it once the release is completed or the change leaves it.",
                crate::releases::key(number)
            ),
        )));
    }
    apply(
        &mut tx,
        user,
        origin,
        &change,
        &Event::Close(code),
        now,
        json!({ "close_code": code.as_str(), "notes": notes }),
    )
    .await?;
    cab_db::reviews::record_closure(&mut tx, id, code.as_str(), notes, Some(user.id)).await?;
    owe_if_due(&mut tx, Some(user), origin, &change, Some(code), now).await?;
    tx.commit().await?;
    Ok(())
}

/// Owes the change's review when a rule says so, due the configured
/// number of days from `now` (an earlier due time stands), and records
/// that it is owed the first time.
pub(crate) async fn owe_if_due(
    tx: &mut PgConnection,
    user: Option<&CurrentUser>,
    origin: &Origin,
    change: &ChangeView,
    close_code: Option<CloseCode>,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    let facts = cab_db::reviews::facts(tx, change.id).await?;
    let settings = settings(tx).await?;
    let assessed = facts
        .assessed_level
        .as_deref()
        .and_then(RiskLevel::parse)
        .unwrap_or(RiskLevel::Low);
    let linked = match cab_db::reviews::find(tx, change.id).await? {
        Some(row) => stored(row)?.content.links_incident(),
        None => false,
    };
    let failed = change.state == ChangeState::ImplementationFailed;
    let reasons = review::reasons(&Owed {
        change_type: change.content.change_type,
        risk: change.risk_level.max(assessed),
        close_code: close_code.or(failed.then_some(CloseCode::FailedNotRolledBack)),
        break_glass: facts.break_glass,
        incident: facts.break_glass || linked,
        all: settings.required_for_all,
    });
    owe(
        tx,
        user,
        origin,
        change,
        &reasons,
        now + Duration::days(settings.due_days),
        now,
    )
    .await
}

async fn owe(
    tx: &mut PgConnection,
    user: Option<&CurrentUser>,
    origin: &Origin,
    change: &ChangeView,
    reasons: &[ReviewReason],
    due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    if reasons.is_empty() {
        return Ok(());
    }
    let words: Vec<String> = reasons.iter().map(|r| r.as_str().to_owned()).collect();
    if cab_db::reviews::owe(tx, change.id, &words, due, now).await? {
        // What was signed off did not weigh this reason: it is signed off
        // again.
        cab_db::reviews::reopen(tx, change.id, due, now).await?;
        audit_log::record(
            tx,
            user.map(CurrentUser::audit_actor),
            origin,
            AuditAction::ReviewOwed.as_str(),
            entity(change.id),
            json!({ "number": change.number, "reasons": words, "due_at": due }),
        )
        .await?;
    }
    Ok(())
}

/// An approved emergency change owes its review (the retrospective) by
/// `due`.
pub(crate) async fn emergency_approved(
    tx: &mut PgConnection,
    user: &CurrentUser,
    origin: &Origin,
    change: &ChangeView,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    owe(
        tx,
        Some(user),
        origin,
        change,
        &[ReviewReason::Emergency],
        due,
        now,
    )
    .await
}

/// A production deployment of the change ended (deployed or failed): the
/// review is owed from now when a rule says so.
pub(crate) async fn deployment_ended(
    tx: &mut PgConnection,
    user: &CurrentUser,
    origin: &Origin,
    change_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    let change = changes::load_in(tx, change_id).await?;
    // A review signed off before this deployment did not see it.
    let due = now + Duration::days(settings(tx).await?.due_days);
    if cab_db::reviews::reopen(tx, change_id, due, now).await? {
        audit_log::record(
            tx,
            Some(user.audit_actor()),
            origin,
            AuditAction::ReviewReopened.as_str(),
            entity(change.id),
            json!({ "number": change.number, "due_at": due }),
        )
        .await?;
    }
    owe_if_due(tx, Some(user), origin, &change, None, now).await
}

/// Saves the review: `read` is the revision the writer started from (0 for
/// none). Returns the view with the new revision.
pub async fn save(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    content: ReviewContent,
    read: i32,
) -> Result<ReviewView, AppError> {
    let done = save_in(pool, user, origin, id, content, read).await;
    answered(pool, user, origin, Attempt::ReviewWrite, id, done).await
}

async fn save_in(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    content: ReviewContent,
    read: i32,
) -> Result<(), AppError> {
    let now = Utc::now();
    let mut tx = begin_deciding(pool).await?;
    let change = changes::load_locked(&mut tx, id).await?;
    let facts = change.facts();
    review::check_writer(&facts, &user.actor()).map_err(AppError::Refused)?;
    // A review owed stays writable whatever happened to the change since.
    let owed = cab_db::reviews::find(&mut tx, id)
        .await?
        .is_some_and(|r| r.required);
    if !owed {
        review::check_reviewable(&facts).map_err(AppError::Refused)?;
    }
    let content = content.normalized();
    let errors = content.validate(now);
    if !errors.is_empty() {
        return Err(errors.into());
    }
    cab_db::reviews::start(&mut tx, id, now).await?;
    let current = cab_db::reviews::find_for_update(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("review"))?;
    let current = stored(current)?;
    if read != current.revision {
        return Err(AppError::Refused(stale(read, current.revision)));
    }
    let fields = content.diff(&current.content);
    if fields.is_empty() && current.revision > 0 {
        // Saving what is already there is not a revision.
        return Ok(());
    }
    let revision = current.revision + 1;
    let value = serde_json::to_value(&content).map_err(|e| AppError::Internal(e.into()))?;
    cab_db::reviews::save(&mut tx, id, &value, revision, user.id, now).await?;
    audit_log::record(
        &mut tx,
        Some(user.audit_actor()),
        origin,
        AuditAction::ReviewSaved.as_str(),
        entity(id),
        json!({
            "number": change.number,
            "revision": revision,
            "fields": fields,
            "amends_signed_off": current.state == ReviewState::SignedOff,
        }),
    )
    .await?;
    if content.links_incident() {
        let settings = settings(&mut tx).await?;
        owe(
            &mut tx,
            Some(user),
            origin,
            &change,
            &[ReviewReason::Incident],
            now + Duration::days(settings.due_days),
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

fn stale(read: i32, now: i32) -> Denial {
    Denial::new(
        "stale_revision",
        format!(
            "You read revision {read} of the review, but it is now at revision {now}; read it again and act on that."
        ),
    )
}

/// Signs off revision `read` of the review.
pub async fn sign_off(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    read: i32,
) -> Result<ReviewView, AppError> {
    let done = sign_off_in(pool, user, origin, id, read).await;
    answered(pool, user, origin, Attempt::ReviewSignOff, id, done).await
}

async fn sign_off_in(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    read: i32,
) -> Result<(), AppError> {
    let now = Utc::now();
    let mut tx = begin_deciding(pool).await?;
    let change = changes::load_locked(&mut tx, id).await?;
    let deployers = cab_db::reviews::facts(&mut tx, id).await?.deployers;
    let current = cab_db::reviews::find_for_update(&mut tx, id)
        .await?
        .map(stored)
        .transpose()?;
    let (state, content, revision) = match &current {
        Some(r) => (r.state, r.content.clone(), r.revision),
        None => (ReviewState::Open, ReviewContent::default(), 0),
    };
    review::check_sign_off(&change.facts(), &deployers, &user.actor(), state, &content)
        .map_err(AppError::Refused)?;
    if read != revision {
        return Err(AppError::Refused(stale(read, revision)));
    }
    cab_db::reviews::sign_off(&mut tx, id, user.id, revision, now).await?;
    audit_log::record(
        &mut tx,
        Some(user.audit_actor()),
        origin,
        AuditAction::ReviewSignedOff.as_str(),
        entity(id),
        json!({ "number": change.number, "revision": revision }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Adds an action item, owned by the person named `owner`.
pub async fn add_action(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    title: &str,
    owner: &str,
    due_on: Option<NaiveDate>,
) -> Result<ActionRow, AppError> {
    let action_id = Uuid::new_v4();
    let done = add_action_in(pool, user, origin, id, action_id, title, owner, due_on).await;
    action_answered(pool, user, origin, id, action_id, done).await
}

/// What an action item operation answers: its refusal recorded, else the
/// item as it stands now.
async fn action_answered(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    change_id: Uuid,
    action_id: Uuid,
    done: Result<(), AppError>,
) -> Result<ActionRow, AppError> {
    refused_if_failed(
        pool,
        user,
        origin,
        Attempt::ReviewAction.as_str(),
        entity(change_id),
        done,
    )
    .await?;
    read_action(pool, action_id).await
}

async fn read_action(pool: &PgPool, action_id: Uuid) -> Result<ActionRow, AppError> {
    let mut conn = pool.acquire().await?;
    cab_db::reviews::action(&mut conn, action_id)
        .await?
        .ok_or(AppError::NotFound("action item"))
}

#[allow(clippy::too_many_arguments)]
async fn add_action_in(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    action_id: Uuid,
    title: &str,
    owner: &str,
    due_on: Option<NaiveDate>,
) -> Result<(), AppError> {
    let now = Utc::now();
    let mut tx = begin_deciding(pool).await?;
    let change = changes::load_locked(&mut tx, id).await?;
    let state = locked_state(&mut tx, id).await?;
    review::check_action(&change.facts(), &user.actor(), None, true, state)
        .map_err(AppError::Refused)?;
    let title = title.trim();
    let today = now.date_naive();
    let mut errors = match due_on {
        Some(due) => review::validate_action(title, due, today),
        None => {
            let mut e = review::validate_action(title, today, today);
            e.push(cab_domain::change::FieldError {
                field: "due_on",
                message: "Give the action a due date.".into(),
            });
            e
        }
    };
    let owner_name = owner.trim();
    let owner_id = if owner_name.chars().count() > 100 {
        errors.push(cab_domain::change::FieldError {
            field: "owner",
            message: "A username is at most 100 characters.".into(),
        });
        None
    } else if owner_name.is_empty() {
        errors.push(cab_domain::change::FieldError {
            field: "owner",
            message: "Name the person who owns the action.".into(),
        });
        None
    } else if let Err(e) = cab_domain::text::check_text("owner", owner_name) {
        // A name no account can have, never looked up.
        errors.push(e);
        None
    } else {
        match cab_db::reviews::person_named(&mut tx, owner_name).await? {
            Some((id, roles)) if review::may_own_action(&roles) => Some(id),
            Some(_) => {
                errors.push(cab_domain::change::FieldError {
                    field: "owner",
                    message: format!(
                        "{owner_name} is an auditor, and auditors change nothing; choose someone who can act on it."
                    ),
                });
                None
            }
            None => {
                errors.push(cab_domain::change::FieldError {
                    field: "owner",
                    message: format!(
                        "There is no person named {owner_name} who can own an action."
                    ),
                });
                None
            }
        }
    };
    if let Err(e) = cab_domain::text::check_text("title", title) {
        errors.push(e);
    }
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let (Some(owner_id), Some(due_on)) = (owner_id, due_on) else {
        return Err(AppError::invalid(
            "owner",
            "Name the owner and the due date.",
        ));
    };
    cab_db::reviews::start(&mut tx, id, now).await?;
    let number = cab_db::reviews::add_action(
        &mut tx,
        &cab_db::reviews::NewAction {
            id: action_id,
            change_id: id,
            title,
            owner_id,
            due_on,
            created_by: user.id,
            now,
        },
    )
    .await?;
    audit_log::record(
        &mut tx,
        Some(user.audit_actor()),
        origin,
        AuditAction::ReviewActionAdded.as_str(),
        entity(id),
        json!({
            "number": change.number,
            "action": number,
            "title": title,
            "owner": owner_name,
            "due_on": due_on,
        }),
    )
    .await?;
    crate::idempotency::bind(
        &mut tx,
        origin,
        crate::idempotency::Created::ReviewAction(action_id),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The review's state, its row locked; a review not yet started is open.
async fn locked_state(tx: &mut PgConnection, id: Uuid) -> Result<ReviewState, AppError> {
    Ok(cab_db::reviews::find_for_update(tx, id)
        .await?
        .map(stored)
        .transpose()?
        .map_or(ReviewState::Open, |r| r.state))
}

/// Moves an action item to `status`.
pub async fn set_action_status(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    action_id: Uuid,
    status: &str,
) -> Result<ActionRow, AppError> {
    let change_id = read_action(pool, action_id).await?.change_id;
    let done = set_status_in(pool, user, origin, change_id, action_id, status).await;
    action_answered(pool, user, origin, change_id, action_id, done).await
}

async fn set_status_in(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    change_id: Uuid,
    action_id: Uuid,
    status: &str,
) -> Result<(), AppError> {
    let status = ActionStatus::parse(status)
        .ok_or_else(|| AppError::invalid("status", "Choose open, in progress or done."))?;
    let now = Utc::now();
    let mut tx = begin_deciding(pool).await?;
    let change = changes::load_locked(&mut tx, change_id).await?;
    let state = locked_state(&mut tx, change_id).await?;
    let action = cab_db::reviews::action_for_update(&mut tx, action_id)
        .await?
        .ok_or(AppError::NotFound("action item"))?;
    review::check_action(
        &change.facts(),
        &user.actor(),
        Some(action.owner_id),
        false,
        state,
    )
    .map_err(AppError::Refused)?;
    if action.status == status.as_str() {
        return Ok(());
    }
    cab_db::reviews::set_action_status(&mut tx, action_id, status.as_str(), now).await?;
    audit_log::record(
        &mut tx,
        Some(user.audit_actor()),
        origin,
        AuditAction::ReviewActionUpdated.as_str(),
        entity(change_id),
        json!({
            "number": change.number,
            "action": action.number,
            "from": action.status,
            "to": status.as_str(),
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// How long after its window an approved change that never reached
/// production waits before CAB closes it as not implemented.
pub const LAPSE_GRACE: Duration = Duration::hours(1);

/// Closes as not implemented the approved changes whose window ended
/// before `now` less [`LAPSE_GRACE`] and that never reached production.
/// Any number of servers may run it at once: one sweeps at a time, and
/// each change is closed once. Returns how many it closed.
pub async fn sweep_lapsed(pool: &PgPool, now: DateTime<Utc>) -> Result<usize, AppError> {
    let mut tx = pool.begin().await?;
    if !cab_db::reviews::try_sweep_lock(&mut tx).await? {
        return Ok(0);
    }
    let ids = cab_db::reviews::lapsed(&mut tx, now - LAPSE_GRACE, 200).await?;
    let nobody = Actor {
        id: Uuid::nil(),
        roles: RoleSet::default(),
        is_service: false,
    };
    let origin = Origin::cli();
    let mut closed = 0;
    for id in ids {
        let change = changes::load_in(&mut tx, id).await?;
        let facts = change.facts();
        let subject = Subject {
            facts: &facts,
            change_type: change.content.change_type,
            revision: change.revision,
        };
        let t =
            lifecycle::next(&subject, &nobody, &Event::Lapsed, now).map_err(AppError::Refused)?;
        if t.to == t.from {
            continue;
        }
        let notes = "Its window passed and it never reached production.";
        cab_db::changes::write_state(
            &mut tx,
            id,
            t.to.as_str(),
            &cab_db::changes::StateChange {
                revision: t.revision,
                closed: true,
                ..Default::default()
            },
            now,
        )
        .await?;
        cab_db::reviews::record_closure(
            &mut tx,
            id,
            CloseCode::NotImplemented.as_str(),
            notes,
            None,
        )
        .await?;
        audit_log::record(
            &mut tx,
            None,
            &origin,
            AuditAction::ChangeClosed.as_str(),
            entity(id),
            json!({
                "number": change.number,
                "revision": t.revision,
                "from": t.from.as_str(),
                "to": t.to.as_str(),
                "close_code": CloseCode::NotImplemented.as_str(),
                "notes": notes,
            }),
        )
        .await?;
        let mut moved = change.clone();
        moved.state = t.to;
        owe_if_due(
            &mut tx,
            None,
            &origin,
            &moved,
            Some(CloseCode::NotImplemented),
            now,
        )
        .await?;
        closed += 1;
    }
    tx.commit().await?;
    Ok(closed)
}

/// Runs [`sweep_lapsed`] every `every` until the process ends.
pub async fn run_sweeper(pool: PgPool, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match sweep_lapsed(&pool, Utc::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                closed = n,
                "closed changes whose window passed unimplemented"
            ),
            Err(e) => tracing::warn!(error = %e, "closing lapsed changes failed; will retry"),
        }
    }
}

/// The overdue reviews and action items a person sees on their dashboard.
#[derive(Debug, Clone, Default)]
pub struct Overdue {
    pub reviews: Vec<cab_db::reviews::OverdueReview>,
    pub actions: Vec<ActionRow>,
}

/// What is overdue: for CAB members and release managers (`all`), every
/// overdue review and action item; for anyone else, the reviews of their
/// changes and the items they own.
pub async fn overdue(
    conn: &mut PgConnection,
    person: Uuid,
    all: bool,
    now: DateTime<Utc>,
) -> Result<Overdue, AppError> {
    let who = (!all).then_some(person);
    Ok(Overdue {
        reviews: cab_db::reviews::overdue(conn, now, who).await?,
        actions: cab_db::reviews::overdue_actions(conn, now.date_naive(), who).await?,
    })
}
