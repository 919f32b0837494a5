//! Change-request operations behind both the pages and the API: each loads
//! the facts, asks the domain whether the actor may act, and writes the
//! change with its audit event in one transaction.

use cab_db::changes::{ChangeColumns, ChangeRow, NewRevision};
use cab_domain::change::{
    self, ChangeAction, ChangeContent, ChangeFacts, ChangeState, FieldChange, FieldError,
};
use cab_domain::lifecycle::{self as rules, Event, Standard, Subject};
use cab_domain::risk::{RiskAssessment, RiskLevel, assess};
use cab_domain::text;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::audit_log::{self, Entity};
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::idempotency::{self, Created};
use crate::lifecycle;
use crate::refusal;
use crate::request::Origin;

/// A change request as people see it.
#[derive(Debug, Clone)]
pub struct ChangeView {
    pub id: Uuid,
    pub number: i64,
    pub state: ChangeState,
    pub author_id: Uuid,
    pub author: String,
    /// (id, username)
    pub contributors: Vec<(Uuid, String)>,
    /// Everyone who has ever contributed, for separation of duties.
    pub past_contributors: Vec<Uuid>,
    /// Everyone who has assessed it, and everyone who has voted on it.
    pub assessors: Vec<Uuid>,
    pub voters: Vec<Uuid>,
    pub content: ChangeContent,
    pub risk_level: RiskLevel,
    pub risk_reasons: Vec<String>,
    pub risk_version: i32,
    pub revision: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub template_id: Option<Uuid>,
}

impl ChangeView {
    pub fn key(&self) -> String {
        change::ChangeKey(self.number).to_string()
    }

    /// The facts rules use. Contributors include everyone who ever was one:
    /// leaving the list does not make anyone eligible to decide on the work.
    pub fn facts(&self) -> ChangeFacts {
        let mut contributors: Vec<Uuid> = self.contributors.iter().map(|(id, _)| *id).collect();
        for id in &self.past_contributors {
            if !contributors.contains(id) {
                contributors.push(*id);
            }
        }
        ChangeFacts {
            state: self.state,
            author: self.author_id,
            contributors,
            assessors: self.assessors.clone(),
            voters: self.voters.clone(),
        }
    }

    /// Whether `user` may take `action` now: what the page offers.
    pub fn allows(&self, user: &CurrentUser, action: ChangeAction) -> bool {
        change::check_action(&self.facts(), &user.actor(), action).is_ok()
    }
}

fn internal(e: impl std::fmt::Display) -> AppError {
    AppError::Internal(anyhow::anyhow!("stored change is unreadable: {e}"))
}

fn view(row: ChangeRow) -> Result<ChangeView, AppError> {
    Ok(ChangeView {
        past_contributors: row.past_contributors,
        assessors: row.assessors,
        voters: row.voters,
        id: row.id,
        number: row.number,
        state: ChangeState::parse(&row.state).ok_or_else(|| internal(&row.state))?,
        author_id: row.author_id,
        author: row.author_username,
        contributors: row
            .contributor_ids
            .into_iter()
            .zip(row.contributor_names)
            .collect(),
        content: serde_json::from_value(row.content).map_err(internal)?,
        risk_level: RiskLevel::parse(&row.risk_level).ok_or_else(|| internal(&row.risk_level))?,
        risk_reasons: row.risk_reasons,
        risk_version: row.risk_version,
        revision: row.revision,
        created_at: row.created_at,
        updated_at: row.updated_at,
        submitted_at: row.submitted_at,
        template_id: row.template_id,
    })
}

async fn load_with(conn: &mut PgConnection, id: Uuid, lock: bool) -> Result<ChangeView, AppError> {
    let row = if lock {
        cab_db::changes::find_for_update(conn, id).await?
    } else {
        cab_db::changes::find(conn, id).await?
    };
    view(row.ok_or(AppError::NotFound("change"))?)
}

/// Loads and locks the change for the rest of the transaction.
pub async fn load_locked(conn: &mut PgConnection, id: Uuid) -> Result<ChangeView, AppError> {
    load_with(conn, id, true).await
}

/// Loads the change on `conn`, without locking it.
pub async fn load_in(conn: &mut PgConnection, id: Uuid) -> Result<ChangeView, AppError> {
    load_with(conn, id, false).await
}

pub async fn load(pool: &PgPool, id: Uuid) -> Result<ChangeView, AppError> {
    let mut conn = pool.acquire().await?;
    load_with(&mut conn, id, false).await
}

/// Accepts a UUID or a change number (`CHG-<n>`, `chg-<n>`, `<n>`).
pub async fn resolve_id(pool: &PgPool, raw: &str) -> Result<Uuid, AppError> {
    if let Ok(id) = raw.parse::<Uuid>() {
        return Ok(id);
    }
    let change::ChangeKey(number) = raw
        .parse::<change::ChangeKey>()
        .map_err(|_| AppError::NotFound("change"))?;
    let mut conn = pool.acquire().await?;
    cab_db::changes::id_by_number(&mut conn, number)
        .await?
        .ok_or(AppError::NotFound("change"))
}

pub fn field_errors(errors: Vec<FieldError>) -> AppError {
    errors.into()
}

/// The ids of the named contributors; an unknown or disabled name is a field error.
async fn contributor_ids(conn: &mut PgConnection, names: &[String]) -> Result<Vec<Uuid>, AppError> {
    Ok(contributor_people(conn, names)
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect())
}

/// The contributors named, as (id, username); every name must be an active user.
async fn contributor_people(
    conn: &mut PgConnection,
    names: &[String],
) -> Result<Vec<(Uuid, String)>, AppError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let found = cab_db::changes::users_named(conn, names).await?;
    if let Some(missing) = names.iter().find(|n| !found.iter().any(|(_, u)| u == *n)) {
        return Err(AppError::invalid(
            "contributors",
            format!("No active user is named {}.", text::quoted(missing)),
        ));
    }
    Ok(found)
}

struct Saved {
    content: Value,
    risk: RiskAssessment,
    environments: Vec<String>,
    risk_reasons: Vec<String>,
}

fn prepare(content: &ChangeContent) -> Result<Saved, AppError> {
    let risk = assess(&content.risk);
    Ok(Saved {
        content: serde_json::to_value(content).map_err(|e| AppError::Internal(e.into()))?,
        environments: content
            .environments
            .iter()
            .map(|e| e.as_str().to_owned())
            .collect(),
        risk_reasons: risk.reasons.clone(),
        risk,
    })
}

fn columns<'a>(content: &'a ChangeContent, saved: &'a Saved) -> ChangeColumns<'a> {
    ChangeColumns {
        content: &saved.content,
        title: &content.title,
        description: &content.description,
        change_type: content.change_type.as_str(),
        category: content.category.as_str(),
        priority: content.priority.as_str(),
        services: &content.services,
        environments: &saved.environments,
        window_start: content.window_start,
        window_end: content.window_end,
        risk_level: saved.risk.level.as_str(),
        risk_rank: saved.risk.level as i16,
        risk_reasons: &saved.risk_reasons,
        risk_version: saved.risk.version,
    }
}

/// Refuses (and records) an action the user may not take on this change.
pub async fn authorize(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    change: &ChangeView,
    action: ChangeAction,
) -> Result<ChangeState, AppError> {
    let allowed =
        change::check_action(&change.facts(), &user.actor(), action).map_err(AppError::Refused);
    let entity = Entity::new("change", change.id);
    refusal::recorded(
        pool,
        user.audit_actor(),
        origin,
        action.as_str(),
        entity,
        allowed,
    )
    .await
}

/// Whether `user` may file changes (the form is offered only then); a
/// refusal is recorded.
pub async fn check_filing(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
) -> Result<(), AppError> {
    let allowed = change::check_create(&user.actor());
    let entity = Entity::kind("change");
    refusal::checked(
        pool,
        user.audit_actor(),
        origin,
        "change.create",
        entity,
        allowed,
    )
    .await
}

/// Files a new draft.
pub async fn create(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    content: ChangeContent,
) -> Result<ChangeView, AppError> {
    create_with(pool, user, origin, content, None).await
}

/// Files a new draft, from an approved standard-change template if one is
/// named: the template's plans and risk are imposed.
pub async fn create_with(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    content: ChangeContent,
    template: Option<Uuid>,
) -> Result<ChangeView, AppError> {
    create_for(pool, user, origin, content, template, None).await
}

/// Files a new draft; a pipeline names the person it files for
/// (`on_behalf_of`), who becomes the author (see
/// `cab_domain::change::filing_author`).
pub async fn create_for(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    content: ChangeContent,
    template: Option<Uuid>,
    on_behalf_of: Option<&str>,
) -> Result<ChangeView, AppError> {
    let refuse = |d| {
        let entity = Entity::kind("change");
        refusal::refuse(pool, user.audit_actor(), origin, "change.create", entity, d)
    };
    if let Err(d) = change::check_create(&user.actor()) {
        return Err(refuse(d).await);
    }
    let person = match on_behalf_of.map(str::trim) {
        None => None,
        Some(name) => {
            text::check_name("on_behalf_of", name)?;
            let mut conn = pool.acquire().await?;
            let row = cab_db::users::find_by_username(&mut conn, name)
                .await?
                .ok_or_else(|| {
                    AppError::invalid("on_behalf_of", "No account has this username.")
                })?;
            let roles =
                cab_domain::RoleSet::parse(&row.roles).map_err(|e| AppError::Internal(e.into()))?;
            let actor = cab_domain::Actor {
                id: row.id,
                roles,
                is_service: row.is_service,
            };
            Some((actor, row.is_active(), row.username))
        }
    };
    let filer = user.actor();
    let (author_id, author_name) =
        match change::filing_author(&filer, person.as_ref().map(|(a, active, _)| (a, *active))) {
            Ok(a) if a.id == user.id => (user.id, user.username.clone()),
            Ok(a) => (
                a.id,
                person
                    .as_ref()
                    .map(|(_, _, name)| name.clone())
                    .unwrap_or_default(),
            ),
            Err(d) => return Err(refuse(d).await),
        };
    let filed_by = (author_id != user.id).then_some(user.id);
    let content = match template {
        Some(t) => {
            let t = crate::standard_templates::for_use(pool, user, origin, t).await?;
            cab_domain::standard_template::apply_template(&t.content, content)
        }
        None => content,
    };
    let content = content.normalized(&author_name);
    let errors = content.validate();
    if !errors.is_empty() {
        return Err(field_errors(errors));
    }
    let saved = prepare(&content)?;
    let id = Uuid::new_v4();
    let now = Utc::now();
    let mut tx = pool.begin().await?;
    let contributors = contributor_ids(&mut tx, &content.contributors).await?;
    let number =
        cab_db::changes::insert(&mut tx, id, author_id, &columns(&content, &saved), now).await?;
    cab_db::changes::set_contributors(&mut tx, id, &contributors).await?;
    cab_db::changes::remember_services(&mut tx, &content.services).await?;
    if let Some(t) = template {
        cab_db::standard_templates::set_change_template(&mut tx, id, t).await?;
    }
    if let Some(pipeline) = filed_by {
        cab_db::changes::set_filed_by(&mut tx, id, pipeline).await?;
    }
    audit_log::record(
        &mut tx,
        Some(user.audit_actor()),
        origin,
        "change.created",
        Entity::new("change", id),
        json!({
            "number": number,
            "title": content.title,
            "type": content.change_type.as_str(),
            "risk_level": saved.risk.level.as_str(),
            "contributors": content.contributors,
            "template": template,
            "author": author_name,
            "filed_by": filed_by.map(|_| &user.username),
        }),
    )
    .await?;
    let created = load_with(&mut tx, id, false).await?;
    idempotency::bind(&mut tx, origin, Created::Change(id)).await?;
    tx.commit().await?;
    Ok(created)
}

/// Saves new content. A draft is simply updated; once submitted, every edit
/// that changes something becomes a new numbered revision with its diff.
pub async fn edit(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    content: ChangeContent,
) -> Result<ChangeView, AppError> {
    edit_with(pool, user, origin, id, |_| Ok(content)).await
}

/// Like [`edit`], with the new content computed from the current content
/// under the row lock: a partial update (PATCH) then merges into the latest
/// version instead of overwriting an edit that landed in between.
pub async fn edit_with(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    update: impl FnOnce(ChangeContent) -> Result<ChangeContent, AppError>,
) -> Result<ChangeView, AppError> {
    let done = edit_locked(pool, user, origin, id, update).await;
    let entity = Entity::new("change", id);
    let attempted = ChangeAction::Edit.as_str();
    refusal::recorded(pool, user.audit_actor(), origin, attempted, entity, done).await
}

async fn edit_locked(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    update: impl FnOnce(ChangeContent) -> Result<ChangeContent, AppError>,
) -> Result<ChangeView, AppError> {
    let mut tx = pool.begin().await?;
    let current = load_with(&mut tx, id, true).await?;
    change::check_action(&current.facts(), &user.actor(), ChangeAction::Edit)
        .map_err(AppError::Refused)?;
    let content = update(current.content.clone())?;
    let content = content.normalized(&current.author);
    let errors = if current.state == ChangeState::Draft {
        content.validate()
    } else {
        content.validate_for_submission()
    };
    if !errors.is_empty() {
        return Err(field_errors(errors));
    }
    let changed: Vec<FieldChange> = change::diff(&current.content, &content);
    if cab_db::standard_templates::template_of(&mut tx, id)
        .await?
        .is_some()
        && let Some(fixed) = changed
            .iter()
            .find(|c| cab_domain::standard_template::FIXED_FIELDS.contains(&c.field.as_str()))
    {
        return Err(AppError::invalid(
            &fixed.field,
            "A standard change keeps its template's plans and risk; file a normal change to do otherwise.",
        ));
    }
    if changed.is_empty() {
        return Ok(current);
    }
    let saved = prepare(&content)?;
    let now = Utc::now();
    let people = contributor_people(&mut tx, &content.contributors).await?;
    let facts = current.facts();
    for (who, name) in &people {
        if facts.contributors.contains(who) {
            continue;
        }
        cab_domain::approval::check_new_contributor(&facts, *who, name)
            .map_err(AppError::Refused)?;
    }
    let contributors: Vec<Uuid> = people.into_iter().map(|(id, _)| id).collect();
    let revision = if current.state == ChangeState::Draft {
        current.revision
    } else {
        current.revision + 1
    };
    cab_db::changes::update_content(&mut tx, id, &columns(&content, &saved), revision, now).await?;
    cab_db::changes::set_contributors(&mut tx, id, &contributors).await?;
    cab_db::changes::remember_services(&mut tx, &content.services).await?;
    if revision != current.revision {
        let diff = serde_json::to_value(&changed).map_err(|e| AppError::Internal(e.into()))?;
        let revision_row = NewRevision {
            change_id: id,
            number: revision,
            content: &saved.content,
            diff: &diff,
            risk_level: saved.risk.level.as_str(),
            by: user.id,
            at: now,
        };
        cab_db::changes::insert_revision(&mut tx, &revision_row).await?;
    }
    // What was assessed or approved has changed: back to review, and the
    // earlier votes and assessment (bound to the old revision) no longer
    // count. The edit records itself below.
    let fields = changed.iter().map(|c| c.field.clone()).collect();
    let edited = Event::Edited { fields };
    let moved = lifecycle::apply(&mut tx, user, origin, &current, &edited, now, json!({})).await?;
    let back_to_review = moved.write.is_some();
    audit_log::record(
        &mut tx,
        Some(user.audit_actor()),
        origin,
        "change.edited",
        Entity::new("change", id),
        json!({
            "number": current.number,
            "revision": revision,
            "fields": changed.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(),
            "risk_level": saved.risk.level.as_str(),
            "back_to_review": back_to_review,
            "was": current.state.as_str(),
        }),
    )
    .await?;
    let updated = load_with(&mut tx, id, false).await?;
    tx.commit().await?;
    Ok(updated)
}

/// Submit, withdraw or cancel. Cancelling needs a reason.
pub async fn transition(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    action: ChangeAction,
    reason: Option<String>,
) -> Result<ChangeView, AppError> {
    let done = transition_locked(pool, user, origin, id, action, reason).await;
    let entity = Entity::new("change", id);
    refusal::recorded(
        pool,
        user.audit_actor(),
        origin,
        action.as_str(),
        entity,
        done,
    )
    .await
}

async fn transition_locked(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    action: ChangeAction,
    reason: Option<String>,
) -> Result<ChangeView, AppError> {
    let event = match action {
        ChangeAction::Submit => Event::Submit { standard: None },
        ChangeAction::Withdraw => Event::Withdraw,
        ChangeAction::Cancel => Event::Cancel,
        ChangeAction::Edit | ChangeAction::Comment => {
            return Err(AppError::Internal(anyhow::anyhow!(
                "{action:?} is not a transition"
            )));
        }
    };
    let now = Utc::now();
    let mut tx = pool.begin().await?;
    let current = load_with(&mut tx, id, true).await?;
    // Who may act comes before what they sent: asked first without what a
    // standard change's submission also depends on, and again with it below.
    let subject = Subject {
        facts: &current.facts(),
        change_type: current.content.change_type,
        revision: current.revision,
    };
    rules::next(&subject, &user.actor(), &event, now).map_err(AppError::Refused)?;
    let reason = reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    if let Some(r) = &reason {
        text::check_text("reason", r)?;
    }
    if action == ChangeAction::Cancel && reason.is_none() {
        return Err(AppError::invalid(
            "reason",
            "Say why the change is cancelled.",
        ));
    }
    if reason.as_ref().is_some_and(|r| r.chars().count() > 2000) {
        return Err(AppError::invalid("reason", "At most 2000 characters."));
    }
    let mut details = json!({ "reason": reason });
    let event = if action == ChangeAction::Submit {
        let errors = current.content.validate_for_submission();
        if !errors.is_empty() {
            return Err(field_errors(errors));
        }
        if current.revision == 0 {
            let content =
                serde_json::to_value(&current.content).map_err(|e| AppError::Internal(e.into()))?;
            let first = NewRevision {
                change_id: id,
                number: 1,
                content: &content,
                diff: &json!([]),
                risk_level: current.risk_level.as_str(),
                by: user.id,
                at: now,
            };
            cab_db::changes::insert_revision(&mut tx, &first).await?;
        }
        // The quorum this submission is decided under: a later change of the
        // policy applies to later submissions only.
        let policy = match crate::quorum::in_force(&mut tx).await {
            Ok(p) => p,
            Err(AppError::Internal(e)) => {
                tracing::error!(error = %e, "the quorum policy cannot be read");
                return Err(AppError::Refused(cab_domain::Denial::new(
                    "policy_unavailable",
                    "The decision rules could not be read just now, so the change was not submitted. Try again shortly.",
                )));
            }
            Err(e) => return Err(e),
        };
        let policy = serde_json::to_value(policy).map_err(|e| AppError::Internal(e.into()))?;
        cab_db::changes::fix_quorum_policy(&mut tx, id, &policy).await?;
        let standard = standard_submission(&mut tx, id, &current).await?;
        if let Some((standard, row)) = &standard {
            details = if standard.outside_scope.is_empty() {
                json!({ "template": row.id, "template_name": row.name })
            } else {
                json!({ "reason": reason, "outside_template": standard.outside_scope })
            };
        }
        Event::Submit {
            standard: standard.map(|(s, _)| s),
        }
    } else {
        event
    };
    lifecycle::apply(&mut tx, user, origin, &current, &event, now, details).await?;
    let updated = load_with(&mut tx, id, false).await?;
    tx.commit().await?;
    Ok(updated)
}

/// What the submission of a change made from a standard-change template
/// depends on: the template's state and how far the change goes beyond what
/// CAB approved. `None` for a change made without one.
async fn standard_submission(
    tx: &mut PgConnection,
    id: Uuid,
    current: &ChangeView,
) -> Result<Option<(Standard, cab_db::standard_templates::TemplateRow)>, AppError> {
    let Some(t) = cab_db::standard_templates::template_of(tx, id).await? else {
        return Ok(None);
    };
    // Locked, so a retirement committing now cannot slip past the check.
    let row = cab_db::standard_templates::find_for_update(tx, t)
        .await?
        .ok_or(AppError::NotFound("template"))?;
    let approved: ChangeContent = serde_json::from_value(row.content.clone())
        .map_err(|e| AppError::Internal(anyhow::anyhow!("stored template is unreadable: {e}")))?;
    let standard = Standard {
        template: cab_domain::standard_template::TemplateState::parse(&row.state),
        outside_scope: cab_domain::standard_template::outside_scope(&approved, &current.content),
    };
    Ok(Some((standard, row)))
}

/// A comment just added, and the number of the change it is on.
#[derive(Debug, Clone, Copy)]
pub struct Commented {
    pub id: Uuid,
    pub change_number: i64,
}

pub async fn comment(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    body: &str,
) -> Result<Commented, AppError> {
    let body = body.trim();
    if body.is_empty() {
        return Err(AppError::invalid("body", "Write something to comment."));
    }
    if body.chars().count() > 10_000 {
        return Err(AppError::invalid("body", "At most 10000 characters."));
    }
    text::check_text("body", body)?;
    let current = load(pool, id).await?;
    authorize(pool, user, origin, &current, ChangeAction::Comment).await?;
    let comment_id = Uuid::new_v4();
    let mut tx = pool.begin().await?;
    cab_db::changes::insert_comment(&mut tx, comment_id, id, user.id, body, Utc::now()).await?;
    audit_log::record(
        &mut tx,
        Some(user.audit_actor()),
        origin,
        "change.commented",
        Entity::new("change", id),
        json!({ "number": current.number, "comment": comment_id, "body": body }),
    )
    .await?;
    idempotency::bind(&mut tx, origin, Created::Comment(comment_id)).await?;
    tx.commit().await?;
    Ok(Commented {
        id: comment_id,
        change_number: current.number,
    })
}
