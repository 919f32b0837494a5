//! Standard-change template pages: the list with a proposal form, and each
//! template with CAB's votes.

use askama::Template;
use axum::Form;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cab_domain::approval::VoteChoice;
use cab_domain::change::{Category, ChangeContent, Environment};
use cab_domain::risk::{RiskAnswers, RiskLevel};
use cab_domain::standard_template::{TemplateAction, TemplateState, check_template_action};
use chrono::{DateTime, Utc};

use super::form::{Choice, FieldErrors, FormPairs as Pairs, form_value as value};
use super::notice::{Notice, redirect_with};
use super::{Layout, Viewer, filters, render};
use crate::error::AppError;
use crate::page_error::PageResult;
use crate::request::Origin;
use crate::standard_templates::{self, TemplateView};
use crate::words::{People, role_labels};

pub struct TemplateLine {
    pub id: uuid::Uuid,
    pub name: String,
    pub state: TemplateState,
    pub proposer: String,
    pub category: Category,
}

#[derive(Template)]
#[template(path = "standard_templates/list.html")]
struct ListPage {
    layout: Layout,
    templates: Vec<TemplateLine>,
    can_propose: bool,
    errors: FieldErrors,
    form: Pairs,
    categories: Vec<Choice>,
    environments: Vec<Choice>,
}

impl ListPage {
    fn field(&self, name: &str) -> String {
        value(&self.form, name)
    }
}

async fn list_page(
    viewer: &Viewer,
    form: Pairs,
    errors: FieldErrors,
) -> Result<Response, AppError> {
    let all = standard_templates::list(&viewer.state.pool).await?;
    let people = People::load(&mut *viewer.state.pool.acquire().await?).await?;
    let chosen = value(&form, "category");
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let page = ListPage {
        layout: viewer.layout("Standard changes"),
        templates: all
            .into_iter()
            .map(|t| TemplateLine {
                id: t.row.id,
                name: t.row.name,
                state: t.state,
                proposer: people.name(&t.row.proposer),
                category: t.content.category,
            })
            .collect(),
        can_propose: check_template_action(
            &viewer.user.actor(),
            None,
            None,
            TemplateAction::Propose,
        )
        .is_ok(),
        categories: Category::ALL
            .iter()
            .map(|c| Choice {
                value: c.as_str(),
                label: c.label(),
                selected: c.as_str() == chosen,
            })
            .collect(),
        environments: Environment::ALL
            .iter()
            .map(|e| Choice {
                value: e.as_str(),
                label: e.label(),
                selected: form
                    .iter()
                    .any(|(k, v)| k == "environments" && v == e.as_str()),
            })
            .collect(),
        errors,
        form,
    };
    Ok((status, render(&page)).into_response())
}

pub async fn list(viewer: Viewer) -> PageResult {
    Ok(list_page(&viewer, Vec::new(), FieldErrors::default()).await?)
}

pub async fn propose(viewer: Viewer, origin: Origin, Form(form): Form<Pairs>) -> PageResult {
    let mut c = ChangeContent::blank();
    c.title = value(&form, "title");
    c.description = value(&form, "description");
    c.category = Category::parse(&value(&form, "category")).unwrap_or(Category::Configuration);
    c.implementation_plan = value(&form, "implementation_plan");
    c.test_plan = value(&form, "test_plan");
    c.rollback_plan = value(&form, "rollback_plan");
    c.services = value(&form, "services")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    c.environments = form
        .iter()
        .filter(|(k, _)| k == "environments")
        .filter_map(|(_, v)| Environment::parse(v))
        .collect();
    c.risk = RiskAnswers {
        impact: value(&form, "impact").parse().unwrap_or(0),
        likelihood: value(&form, "likelihood").parse().unwrap_or(0),
        ..RiskAnswers::default()
    };
    match standard_templates::propose(
        &viewer.state.pool,
        &viewer.user,
        &origin,
        &value(&form, "name"),
        c,
    )
    .await
    {
        Ok(t) => Ok(redirect_with(
            &viewer,
            &format!("/templates/{}", t.row.id),
            Notice::TemplateProposed,
        )),
        Err(e @ (AppError::Invalid { .. } | AppError::Fields(_))) => {
            let errors = FieldErrors::absorb(e, "name")?;
            Ok(list_page(&viewer, form, errors).await?)
        }
        Err(e) => Err(e.into()),
    }
}

pub struct VoteLine {
    pub who: String,
    pub roles: String,
    pub vote: Option<VoteChoice>,
    pub comment: String,
    pub at: DateTime<Utc>,
    pub superseded: bool,
}

#[derive(Template)]
#[template(path = "standard_templates/show.html")]
struct ShowPage {
    layout: Layout,
    t: TemplateView,
    proposer: String,
    risk: Option<RiskLevel>,
    votes: Vec<VoteLine>,
    may_vote: bool,
    may_retire: bool,
    may_use: bool,
    errors: FieldErrors,
}

fn parse_id(raw: &str) -> Result<uuid::Uuid, AppError> {
    raw.parse().map_err(|_| AppError::NotFound("template"))
}

pub async fn show(viewer: Viewer, Path(id): Path<String>) -> PageResult {
    Ok(show_page(&viewer, parse_id(&id)?, FieldErrors::default()).await?)
}

/// The template's page; with `errors`, re-shown (422) with each message
/// beside its field of the vote form.
async fn show_page(
    viewer: &Viewer,
    id: uuid::Uuid,
    errors: FieldErrors,
) -> Result<Response, AppError> {
    let t = standard_templates::load(&viewer.state.pool, id).await?;
    let people = People::load(&mut *viewer.state.pool.acquire().await?).await?;
    let actor = viewer.user.actor();
    let check =
        |a| check_template_action(&actor, Some(t.state), Some(t.row.proposed_by), a).is_ok();
    let page = ShowPage {
        layout: viewer.layout(format!("Template {}", t.row.name)),
        proposer: people.name(&t.row.proposer),
        risk: RiskLevel::parse(&t.row.risk_level),
        votes: t
            .votes
            .iter()
            .map(|v| VoteLine {
                who: people.name(&v.voter_username),
                roles: role_labels(&v.voter_roles),
                vote: VoteChoice::parse(&v.choice),
                comment: v.comment.clone(),
                at: v.created_at,
                superseded: v.superseded_at.is_some(),
            })
            .collect(),
        may_vote: check(TemplateAction::Vote),
        may_retire: check(TemplateAction::Retire),
        may_use: check(TemplateAction::Use) && cab_domain::change::check_create(&actor).is_ok(),
        t,
        errors,
    };
    let status = if page.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((status, render(&page)).into_response())
}

pub async fn vote(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
    Form(form): Form<Pairs>,
) -> PageResult {
    let id = parse_id(&id)?;
    let choice = VoteChoice::parse(&value(&form, "vote"))
        .ok_or_else(|| AppError::invalid("vote", "Choose a vote."))?;
    let voted = standard_templates::vote(
        &viewer.state.pool,
        &viewer.user,
        &origin,
        id,
        choice,
        &value(&form, "comment"),
    )
    .await;
    match voted {
        Ok(after) => Ok(redirect_with(
            &viewer,
            &format!("/templates/{id}"),
            Notice::TemplateVoted {
                choice,
                state: after.state,
            },
        )),
        Err(e @ (AppError::Invalid { .. } | AppError::Fields(_))) => {
            Ok(show_page(&viewer, id, FieldErrors::absorb(e, "comment")?).await?)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn retire(viewer: Viewer, origin: Origin, Path(id): Path<String>) -> PageResult {
    let id = parse_id(&id)?;
    standard_templates::retire(&viewer.state.pool, &viewer.user, &origin, id).await?;
    Ok(redirect_with(
        &viewer,
        &format!("/templates/{id}"),
        Notice::TemplateRetired,
    ))
}
