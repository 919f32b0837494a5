//! The change-request form, new and edit: reading the submitted fields into
//! content, showing the form again with each error beside its field and the
//! input kept, the planned window in the author's UTC offset, and the risk
//! preview the form's script swaps in as the answers change.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cab_domain::change::{
    Category, ChangeAction, ChangeContent, ChangeType, Environment, Priority, TestLevels,
};
use cab_domain::risk::{RiskAnswers, RiskLevel, assess};
use chrono::{DateTime, FixedOffset, NaiveDateTime, Offset, TimeZone, Utc};

use super::load;
use crate::changes::{self, ChangeView};
use crate::error::AppError;
use crate::page_error::PageResult;
use crate::request::Origin;
use crate::ui::form::{Choice, FieldErrors, checked, choices};
use crate::ui::form::{FormPairs as Pairs, form_value as value, form_values as values};
use crate::ui::notice::{Notice, redirect_with};
use crate::ui::{Layout, Viewer, filters, render};

/// UTC offsets offered for the planned window, as `+HH:MM`.
pub(in crate::ui) fn offsets() -> Vec<String> {
    let mut minutes: Vec<i32> = (-12..=14).map(|h| h * 60).collect();
    minutes.extend([-210, 210, 270, 330, 345, 390, 570, 630]);
    minutes.sort();
    minutes
        .into_iter()
        .map(|m| {
            format!(
                "{}{:02}:{:02}",
                if m < 0 { '-' } else { '+' },
                m.abs() / 60,
                m.abs() % 60
            )
        })
        .collect()
}

pub(in crate::ui) fn parse_offset(s: &str) -> Option<FixedOffset> {
    if s == "UTC" || s == "Z" {
        return FixedOffset::east_opt(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    FixedOffset::east_opt(sign * (h.parse::<i32>().ok()? * 3600 + m.parse::<i32>().ok()? * 60))
}

/// A `datetime-local` value in the given offset, for the form.
fn local_input(t: Option<DateTime<Utc>>, offset: FixedOffset) -> String {
    t.map(|t| {
        t.with_timezone(&offset)
            .format("%Y-%m-%dT%H:%M")
            .to_string()
    })
    .unwrap_or_default()
}

/// The form's fields as content, and the fields that could not even be read.
fn content_from_form(form: &Pairs) -> (ChangeContent, FieldErrors) {
    let mut errors = FieldErrors::default();
    let mut c = ChangeContent::blank();
    c.title = value(form, "title");
    c.description = value(form, "description");
    c.justification = value(form, "justification");
    if let Some(t) = ChangeType::parse(&value(form, "type")) {
        c.change_type = t;
    }
    if let Some(t) = Category::parse(&value(form, "category")) {
        c.category = t;
    }
    if let Some(t) = Priority::parse(&value(form, "priority")) {
        c.priority = t;
    }
    c.services = value(form, "services")
        .split(',')
        .map(str::to_owned)
        .collect();
    c.environments = values(form, "environments")
        .into_iter()
        .filter_map(Environment::parse)
        .collect();
    c.implementation_plan = value(form, "implementation_plan");
    c.test_plan = value(form, "test_plan");
    c.test_levels = TestLevels {
        unit: checked(form, "test_unit"),
        integration: checked(form, "test_integration"),
        system: checked(form, "test_system"),
        acceptance: checked(form, "test_acceptance"),
    };
    c.test_evidence = value(form, "test_evidence")
        .lines()
        .map(str::to_owned)
        .collect();
    c.rollback_plan = value(form, "rollback_plan");
    let tz = value(form, "window_tz");
    let offset = parse_offset(&tz).unwrap_or_else(|| Utc.fix());
    c.window_tz = if parse_offset(&tz).is_some() {
        tz
    } else {
        "+00:00".into()
    };
    for (field, slot) in [
        ("window_start", &mut c.window_start),
        ("window_end", &mut c.window_end),
    ] {
        let raw = value(form, field);
        if raw.trim().is_empty() {
            continue;
        }
        match NaiveDateTime::parse_from_str(raw.trim(), "%Y-%m-%dT%H:%M")
            .ok()
            .and_then(|n| offset.from_local_datetime(&n).single())
        {
            Some(t) => *slot = Some(t.with_timezone(&Utc)),
            None => errors.insert(field, "Give a date and time, e.g. 2026-12-01T10:00."),
        }
    }
    c.pr_url = value(form, "pr_url");
    c.commit_sha = value(form, "commit_sha");
    c.artifact_digest = value(form, "artifact_digest");
    c.contributors = value(form, "contributors")
        .split(',')
        .map(str::to_owned)
        .collect();
    c.risk = RiskAnswers {
        impact: value(form, "impact").parse().unwrap_or(0),
        likelihood: value(form, "likelihood").parse().unwrap_or(0),
        touches_production_data: checked(form, "touches_production_data"),
        customer_facing: checked(form, "customer_facing"),
        changes_security_control: checked(form, "changes_security_control"),
        rollback_untested: checked(form, "rollback_untested"),
        outside_usual_window: checked(form, "outside_usual_window"),
    };
    (c, errors)
}

/// The risk a form's answers give; no level until both scales are answered.
struct RiskPreview {
    pub level: Option<RiskLevel>,
    pub reasons: Vec<String>,
}

/// The risk preview alone, for the form's script to swap in.
#[derive(Template)]
#[template(path = "changes/_risk.html")]
struct RiskFragment {
    risk: RiskPreview,
}

fn risk_preview(answers: &RiskAnswers) -> RiskPreview {
    if cab_domain::risk::check_answers(answers).is_err() {
        return RiskPreview {
            level: None,
            reasons: Vec::new(),
        };
    }
    let r = assess(answers);
    RiskPreview {
        level: Some(r.level),
        reasons: r.reasons,
    }
}

#[derive(Template)]
#[template(path = "changes/form.html")]
struct FormPage {
    layout: Layout,
    /// `None` for a new change.
    change: Option<ChangeRef>,
    action: String,
    errors: FieldErrors,
    c: ChangeContent,
    types: Vec<Choice>,
    categories: Vec<Choice>,
    priorities: Vec<Choice>,
    environments: Vec<Choice>,
    offsets: Vec<OffsetChoice>,
    fresh_tz: bool,
    window_start: String,
    window_end: String,
    services: String,
    contributors: String,
    evidence: String,
    known_services: Vec<String>,
    risk: RiskPreview,
    levels: Vec<LevelChoice>,
    /// The standard-change template it is made from.
    template: Option<TemplateRef>,
}

/// The change being edited.
struct ChangeRef {
    id: uuid::Uuid,
    number: i64,
}

/// A standard-change template a change is made from.
struct TemplateRef {
    id: uuid::Uuid,
    name: String,
}

/// A UTC offset offered for the planned window.
struct OffsetChoice {
    /// As `+HH:MM`.
    offset: String,
    selected: bool,
}

/// One step of the impact and likelihood scales.
struct LevelChoice {
    value: i16,
    label: &'static str,
}

async fn form_page(
    viewer: &Viewer,
    existing: Option<&ChangeView>,
    c: ChangeContent,
    raw_window: Option<(String, String)>,
    errors: FieldErrors,
    fresh_tz: bool,
) -> Result<Response, AppError> {
    form_page_from(viewer, existing, c, raw_window, errors, fresh_tz, None).await
}

async fn form_page_from(
    viewer: &Viewer,
    existing: Option<&ChangeView>,
    c: ChangeContent,
    raw_window: Option<(String, String)>,
    errors: FieldErrors,
    fresh_tz: bool,
    template: Option<TemplateRef>,
) -> Result<Response, AppError> {
    let mut conn = viewer.state.pool.acquire().await?;
    let known_services = cab_db::changes::known_services(&mut conn).await?;
    let offset = parse_offset(&c.window_tz).unwrap_or_else(|| Utc.fix());
    let tz = offset.to_string();
    let (window_start, window_end) = raw_window.unwrap_or_else(|| {
        (
            local_input(c.window_start, offset),
            local_input(c.window_end, offset),
        )
    });
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let page = FormPage {
        layout: viewer.layout(match existing {
            Some(v) => format!("Edit {}", v.key()),
            None => "New change request".into(),
        }),
        change: existing.map(|v| ChangeRef {
            id: v.id,
            number: v.number,
        }),
        action: match existing {
            Some(v) => format!("/changes/{}/edit", v.id),
            None => "/changes/new".into(),
        },
        types: choices(ChangeType::ALL, &[c.change_type], |v| {
            (v.as_str(), v.label())
        }),
        categories: choices(Category::ALL, &[c.category], |v| (v.as_str(), v.label())),
        priorities: choices(Priority::ALL, &[c.priority], |v| (v.as_str(), v.label())),
        environments: choices(Environment::ALL, &c.environments, |v| {
            (v.as_str(), v.label())
        }),
        offsets: offsets()
            .into_iter()
            .map(|offset| OffsetChoice {
                selected: offset == tz,
                offset,
            })
            .collect(),
        fresh_tz,
        window_start,
        window_end,
        services: c.services.join(", "),
        contributors: c.contributors.join(", "),
        evidence: c.test_evidence.join("\n"),
        known_services,
        risk: risk_preview(&c.risk),
        template,
        levels: [
            (1, "1 — negligible / rare"),
            (2, "2 — minor / unlikely"),
            (3, "3 — major / possible"),
            (4, "4 — severe / likely"),
        ]
        .into_iter()
        .map(|(value, label)| LevelChoice { value, label })
        .collect(),
        errors,
        c,
    };
    Ok((status, render(&page)).into_response())
}

#[derive(serde::Deserialize)]
pub(crate) struct FromTemplate {
    template: Option<String>,
}

pub(crate) async fn new_form(
    viewer: Viewer,
    origin: Origin,
    Query(q): Query<FromTemplate>,
) -> PageResult {
    changes::check_filing(&viewer.state.pool, &viewer.user, &origin).await?;
    let mut c = ChangeContent::blank();
    c.window_tz = "+00:00".into();
    let mut from = None;
    if let Some(raw) = q.template.filter(|t| !t.is_empty()) {
        let id = raw.parse().map_err(|_| AppError::NotFound("template"))?;
        let t = crate::standard_templates::for_use(&viewer.state.pool, &viewer.user, &origin, id)
            .await?;
        c.title = t.content.title.clone();
        c.description = t.content.description.clone();
        c = cab_domain::standard_template::apply_template(&t.content, c);
        from = Some(TemplateRef {
            id: t.row.id,
            name: t.row.name.clone(),
        });
    }
    Ok(form_page_from(&viewer, None, c, None, FieldErrors::default(), true, from).await?)
}

/// Re-shows the form with every error beside its field and the input kept.
async fn reshow(
    viewer: &Viewer,
    existing: Option<&ChangeView>,
    form: &Pairs,
    c: ChangeContent,
    mut errors: FieldErrors,
    err: Option<AppError>,
) -> PageResult {
    if let Some(err) = err {
        errors.merge(FieldErrors::absorb(err, "title")?);
    }
    let raw = Some((value(form, "window_start"), value(form, "window_end")));
    // Keep the template the form was made from.
    let template = match value(form, "template").parse::<uuid::Uuid>() {
        Ok(id) => crate::standard_templates::load(&viewer.state.pool, id)
            .await
            .ok()
            .map(|t| TemplateRef {
                id: t.row.id,
                name: t.row.name,
            }),
        Err(_) => None,
    };
    Ok(form_page_from(viewer, existing, c, raw, errors, false, template).await?)
}

pub(crate) async fn create(viewer: Viewer, origin: Origin, Form(form): Form<Pairs>) -> PageResult {
    let (c, errors) = content_from_form(&form);
    if !errors.is_empty() {
        return reshow(&viewer, None, &form, c, errors, None).await;
    }
    let template = value(&form, "template").parse::<uuid::Uuid>().ok();
    match changes::create_with(
        &viewer.state.pool,
        &viewer.user,
        &origin,
        c.clone(),
        template,
    )
    .await
    {
        Ok(created) => Ok(redirect_with(
            &viewer,
            &format!("/changes/{}", created.id),
            Notice::ChangeCreated {
                number: created.number,
            },
        )),
        Err(e @ (AppError::Invalid { .. } | AppError::Fields(_))) => {
            reshow(&viewer, None, &form, c, FieldErrors::default(), Some(e)).await
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn edit_form(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
) -> PageResult {
    let current = load(&viewer, &id).await?;
    changes::authorize(
        &viewer.state.pool,
        &viewer.user,
        &origin,
        &current,
        ChangeAction::Edit,
    )
    .await?;
    let c = current.content.clone();
    Ok(form_page(
        &viewer,
        Some(&current),
        c,
        None,
        FieldErrors::default(),
        false,
    )
    .await?)
}

pub(crate) async fn update(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
    Form(form): Form<Pairs>,
) -> PageResult {
    let current = load(&viewer, &id).await?;
    changes::authorize(
        &viewer.state.pool,
        &viewer.user,
        &origin,
        &current,
        ChangeAction::Edit,
    )
    .await?;
    let (c, errors) = content_from_form(&form);
    if !errors.is_empty() {
        return reshow(&viewer, Some(&current), &form, c, errors, None).await;
    }
    match changes::edit(
        &viewer.state.pool,
        &viewer.user,
        &origin,
        current.id,
        c.clone(),
    )
    .await
    {
        Ok(saved) => Ok(redirect_with(
            &viewer,
            &format!("/changes/{}", saved.id),
            Notice::ChangeSaved {
                number: saved.number,
            },
        )),
        Err(e @ (AppError::Invalid { .. } | AppError::Fields(_))) => {
            reshow(
                &viewer,
                Some(&current),
                &form,
                c,
                FieldErrors::default(),
                Some(e),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn preview_risk(_viewer: Viewer, Query(form): Query<Pairs>) -> Response {
    let (c, _) = content_from_form(&form);
    render(&RiskFragment {
        risk: risk_preview(&c.risk),
    })
}
