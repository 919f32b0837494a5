//! Standard-change templates: proposed by CAB members or administrators,
//! approved once by CAB under the normal policy, retired when no longer
//! wanted. Changes made from an approved template are approved on submission.

use cab_db::standard_templates::{NewTemplateVote, TemplateRow, TemplateVoteRow};
use cab_domain::Role;
use cab_domain::approval::{self, Ballot, Decision, Standing, VoteChoice};
use cab_domain::change::{ChangeContent, ChangeType};
use cab_domain::risk::{RiskLevel, assess};
use cab_domain::standard_template::{self, TemplateAction, TemplateState};
use chrono::Utc;
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::audit_log::{self, Entity};
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::idempotency::{self, Created};
use crate::refusal;
use crate::request::Origin;
use crate::votes;

#[derive(Debug, Clone)]
pub struct TemplateView {
    pub row: TemplateRow,
    pub state: TemplateState,
    pub content: ChangeContent,
    pub votes: Vec<TemplateVoteRow>,
}

fn internal(e: impl std::fmt::Display) -> AppError {
    AppError::Internal(anyhow::anyhow!("stored template is unreadable: {e}"))
}

async fn view(conn: &mut PgConnection, row: TemplateRow) -> Result<TemplateView, AppError> {
    let votes = cab_db::standard_templates::votes(conn, row.id).await?;
    Ok(TemplateView {
        state: TemplateState::parse(&row.state).ok_or_else(|| internal(&row.state))?,
        content: serde_json::from_value(row.content.clone()).map_err(internal)?,
        votes,
        row,
    })
}

pub async fn load(pool: &PgPool, id: Uuid) -> Result<TemplateView, AppError> {
    let mut conn = pool.acquire().await?;
    let row = cab_db::standard_templates::find(&mut conn, id)
        .await?
        .ok_or(AppError::NotFound("template"))?;
    view(&mut conn, row).await
}

pub async fn list(pool: &PgPool) -> Result<Vec<TemplateView>, AppError> {
    let mut conn = pool.acquire().await?;
    let rows = cab_db::standard_templates::list(&mut conn).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(view(&mut conn, row).await?);
    }
    Ok(out)
}

/// Records a refusal of `action` on a template (or on templates, when no
/// `id`), once whatever was refused has ended.
async fn recorded<T>(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    action: TemplateAction,
    id: Option<Uuid>,
    done: Result<T, AppError>,
) -> Result<T, AppError> {
    let entity = match id {
        Some(id) => Entity::new("template", id),
        None => Entity::kind("template"),
    };
    let attempted = action.as_str();
    refusal::recorded(pool, user.audit_actor(), origin, attempted, entity, done).await
}

pub async fn propose(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    name: &str,
    content: ChangeContent,
) -> Result<TemplateView, AppError> {
    let allowed = standard_template::check_template_action(
        &user.actor(),
        None,
        None,
        TemplateAction::Propose,
    )
    .map_err(AppError::Refused);
    recorded(pool, user, origin, TemplateAction::Propose, None, allowed).await?;
    let name = name.trim();
    let mut content = content.normalized(&user.username);
    content.change_type = ChangeType::Standard;
    content.contributors.clear();
    let errors = standard_template::validate_template(name, &content);
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let id = Uuid::new_v4();
    let value = serde_json::to_value(&content).map_err(|e| AppError::Internal(e.into()))?;
    let level = assess(&content.risk).level;
    let mut tx = pool.begin().await?;
    match cab_db::standard_templates::insert(
        &mut tx,
        id,
        name,
        &value,
        level.as_str(),
        user.id,
        Utc::now(),
    )
    .await
    {
        Ok(()) => {}
        Err(e) if cab_db::is_unique_violation(&e, "standard_templates_name_key") => {
            return Err(AppError::invalid(
                "name",
                "A template with this name exists.",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    audit_log::record(
        &mut tx,
        Some(user.audit_actor()),
        origin,
        "template.proposed",
        Entity::new("template", id),
        json!({ "name": name, "risk_level": level.as_str() }),
    )
    .await?;
    idempotency::bind(&mut tx, origin, Created::Template(id)).await?;
    tx.commit().await?;
    load(pool, id).await
}

/// A CAB member's vote on a proposed template; approved under the normal
/// policy for the template's (low) risk level.
pub async fn vote(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    choice: VoteChoice,
    comment: &str,
) -> Result<TemplateView, AppError> {
    let done = cast_vote(pool, user, origin, id, choice, comment).await;
    let entity = Entity::new("template", id);
    let attempted = TemplateAction::Vote.as_str();
    refusal::refused_if_failed(pool, user, origin, attempted, entity, done).await?;
    load(pool, id).await
}

async fn cast_vote(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    choice: VoteChoice,
    comment: &str,
) -> Result<(), AppError> {
    let comment = votes::comment(choice, comment)?;
    let now = Utc::now();
    let mut tx = refusal::begin_deciding(pool).await?;
    let row = cab_db::standard_templates::find_for_update(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("template"))?;
    let current = view(&mut tx, row).await?;
    if let Err(d) = standard_template::check_template_action(
        &user.actor(),
        Some(current.state),
        Some(current.row.proposed_by),
        TemplateAction::Vote,
    ) {
        return Err(AppError::Refused(d));
    }
    cab_db::standard_templates::insert_vote(
        &mut tx,
        &NewTemplateVote {
            template_id: id,
            voter_id: user.id,
            voter_username: &user.username,
            voter_roles: &user.roles.names(),
            choice: choice.as_str(),
            comment,
            at: now,
        },
    )
    .await?;
    audit_log::record(
        &mut tx,
        Some(user.audit_actor()),
        origin,
        "template.voted",
        Entity::new("template", id),
        json!({ "name": current.row.name, "vote": choice.as_str(), "comment": comment }),
    )
    .await?;
    // Only members who are active and still CAB members when it is decided count.
    let voters: Vec<Uuid> = current.votes.iter().map(|v| v.voter_id).collect();
    let now_standing = crate::votes::standing_now(&mut tx, &voters, Role::CabMember).await?;
    let standing = |voter: Uuid| {
        now_standing
            .iter()
            .find(|(id, _)| *id == voter)
            .map_or(Standing::Disabled, |(_, s)| *s)
    };
    let mut ballots: Vec<Ballot> = current
        .votes
        .iter()
        .filter(|v| v.superseded_at.is_none())
        .filter_map(|v| {
            Some(Ballot {
                voter: v.voter_id,
                choice: VoteChoice::parse(&v.choice)?,
                standing: standing(v.voter_id),
            })
        })
        .collect();
    ballots.push(Ballot {
        voter: user.id,
        choice,
        standing: Standing::Counts,
    });
    let policy = crate::quorum::in_force(&mut tx).await?;
    // An unreadable level decides nothing: the error rolls the vote back and
    // the caller records the attempt as refused (`policy_unavailable`).
    let level = RiskLevel::parse(&current.row.risk_level)
        .ok_or_else(|| internal(format_args!("risk level {:?}", current.row.risk_level)))?;
    let outcome = approval::evaluate(&policy, ChangeType::Normal, level, &ballots, None);
    let settled = match outcome {
        Decision::Approved => Some((TemplateState::Approved, "template.approved")),
        Decision::Rejected { .. } => Some((TemplateState::Retired, "template.rejected")),
        Decision::ChangesRequested | Decision::Pending { .. } => None,
    };
    if let Some((state, event)) = settled {
        cab_db::standard_templates::set_state(&mut tx, id, state.as_str(), now).await?;
        audit_log::record(
            &mut tx,
            Some(user.audit_actor()),
            origin,
            event,
            Entity::new("template", id),
            json!({ "name": current.row.name }),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub async fn retire(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
) -> Result<TemplateView, AppError> {
    let done = retire_locked(pool, user, origin, id).await;
    recorded(pool, user, origin, TemplateAction::Retire, Some(id), done).await?;
    load(pool, id).await
}

async fn retire_locked(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
) -> Result<(), AppError> {
    let mut tx = pool.begin().await?;
    let row = cab_db::standard_templates::find_for_update(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("template"))?;
    let state = TemplateState::parse(&row.state).ok_or_else(|| internal(&row.state))?;
    standard_template::check_template_action(
        &user.actor(),
        Some(state),
        Some(row.proposed_by),
        TemplateAction::Retire,
    )
    .map_err(AppError::Refused)?;
    cab_db::standard_templates::set_state(&mut tx, id, TemplateState::Retired.as_str(), Utc::now())
        .await?;
    audit_log::record(
        &mut tx,
        Some(user.audit_actor()),
        origin,
        "template.retired",
        Entity::new("template", id),
        json!({ "name": row.name }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The approved template a new change is made from; refused (and recorded)
/// when it is not approved.
pub async fn for_use(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
) -> Result<TemplateView, AppError> {
    let t = load(pool, id).await?;
    let allowed = standard_template::check_template_action(
        &user.actor(),
        Some(t.state),
        Some(t.row.proposed_by),
        TemplateAction::Use,
    )
    .map_err(AppError::Refused);
    recorded(pool, user, origin, TemplateAction::Use, Some(id), allowed).await?;
    Ok(t)
}
