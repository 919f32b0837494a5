//! Change-request pages: the list, the form (new and edit), the detail page
//! with revisions, comments and timeline, and the actions on it.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use cab_db::changes::{ChangeSummary, Sort};
use cab_domain::Role;
use cab_domain::change::{
    Category, ChangeAction, ChangeContent, ChangeState, ChangeType, Environment, FieldChange,
    Priority, TestLevels,
};
use cab_domain::risk::{RiskAnswers, RiskLevel, assess};
use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};

use super::{FieldErrors, Layout, Viewer, render, urlencode, when};
use super::{FormPairs as Pairs, form_value as value, form_values as values};
use crate::api::changes::{ListQuery, blank_content, page};
use crate::changes::{self, ChangeView};
use crate::error::AppError;
use crate::request::Origin;

fn checked(pairs: &Pairs, key: &str) -> bool {
    !value(pairs, key).is_empty()
}

pub struct Choice {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

fn choices<T: Copy + PartialEq>(
    all: &[T],
    current: &[T],
    f: impl Fn(T) -> (&'static str, &'static str),
) -> Vec<Choice> {
    all.iter()
        .map(|v| {
            let (value, label) = f(*v);
            Choice {
                value,
                label,
                selected: current.contains(v),
            }
        })
        .collect()
}

/// Choices whose selected one is named by its text (a query parameter).
fn selected_by_text<T: Copy>(
    all: &[T],
    now: &str,
    f: impl Fn(T) -> (&'static str, &'static str),
) -> Vec<Choice> {
    all.iter()
        .map(|v| {
            let (value, label) = f(*v);
            Choice {
                value,
                label,
                selected: value == now,
            }
        })
        .collect()
}

/// UTC offsets offered for the planned window, as `+HH:MM`.
fn offsets() -> Vec<String> {
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

fn parse_offset(s: &str) -> Option<FixedOffset> {
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
    let mut c = blank_content();
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

use chrono::Offset;

/// The risk a form's answers give; no level until both scales are answered.
pub struct RiskPreview {
    pub level: Option<&'static str>,
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
        level: Some(r.level.as_str()),
        reasons: r.reasons,
    }
}

#[derive(Template)]
#[template(path = "changes/form.html")]
struct FormPage {
    layout: Layout,
    /// `None` for a new change.
    change: Option<(String, String)>,
    action: String,
    errors: FieldErrors,
    c: ChangeContent,
    types: Vec<Choice>,
    categories: Vec<Choice>,
    priorities: Vec<Choice>,
    environments: Vec<Choice>,
    offsets: Vec<(String, bool)>,
    fresh_tz: bool,
    window_start: String,
    window_end: String,
    services: String,
    contributors: String,
    evidence: String,
    known_services: Vec<String>,
    risk: RiskPreview,
    levels: Vec<(i16, &'static str)>,
    /// (id, name) of the standard-change template it is made from.
    template: Option<(String, String)>,
}

impl FormPage {
    fn impact_selected(&self, n: &i16) -> bool {
        self.c.risk.impact == *n
    }

    fn likelihood_selected(&self, n: &i16) -> bool {
        self.c.risk.likelihood == *n
    }
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
    template: Option<(String, String)>,
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
        change: existing.map(|v| (v.id.to_string(), v.key())),
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
            .map(|o| (o.clone(), o == tz))
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
        levels: vec![
            (1, "1 — negligible / rare"),
            (2, "2 — minor / unlikely"),
            (3, "3 — major / possible"),
            (4, "4 — severe / likely"),
        ],
        errors,
        c,
    };
    Ok((status, render(&page)).into_response())
}

#[derive(serde::Deserialize)]
pub struct FromTemplate {
    template: Option<String>,
}

pub async fn new_form(viewer: Viewer, origin: Origin, Query(q): Query<FromTemplate>) -> Response {
    let shown = async {
        if let Err(d) = cab_domain::change::check_create(&viewer.user.change_actor()) {
            return Err(crate::audit_log::deny(
                &viewer.state.pool,
                Some(viewer.user.audit_actor()),
                &origin,
                "change.create",
                crate::audit_log::Entity::kind("change"),
                d,
            )
            .await);
        }
        let mut c = blank_content();
        c.window_tz = "+00:00".into();
        let mut from = None;
        if let Some(raw) = q.template.filter(|t| !t.is_empty()) {
            let id = raw.parse().map_err(|_| AppError::NotFound("template"))?;
            let t =
                crate::templates::for_use(&viewer.state.pool, &viewer.user, &origin, id).await?;
            c.title = t.content.title.clone();
            c.description = t.content.description.clone();
            c = cab_domain::template::apply_template(&t.content, c);
            from = Some((t.row.id.to_string(), t.row.name.clone()));
        }
        form_page_from(&viewer, None, c, None, FieldErrors::default(), true, from).await
    };
    shown.await.unwrap_or_else(|e| viewer.error(e))
}

/// Re-shows the form with every error beside its field and the input kept.
async fn reshow(
    viewer: &Viewer,
    existing: Option<&ChangeView>,
    form: &Pairs,
    c: ChangeContent,
    mut errors: FieldErrors,
    err: Option<AppError>,
) -> Response {
    if let Some(err) = err {
        match FieldErrors::absorb(err, "title") {
            Ok(more) => errors.merge(more),
            Err(other) => return viewer.error(other),
        }
    }
    let raw = Some((value(form, "window_start"), value(form, "window_end")));
    // Keep the template the form was made from.
    let template = match value(form, "template").parse::<uuid::Uuid>() {
        Ok(id) => crate::templates::load(&viewer.state.pool, id)
            .await
            .ok()
            .map(|t| (t.row.id.to_string(), t.row.name)),
        Err(_) => None,
    };
    form_page_from(viewer, existing, c, raw, errors, false, template)
        .await
        .unwrap_or_else(|e| viewer.error(e))
}

pub async fn create(viewer: Viewer, origin: Origin, Form(form): Form<Pairs>) -> Response {
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
        Ok(created) => Redirect::to(&format!("/changes/{}", created.id)).into_response(),
        Err(e @ (AppError::Invalid { .. } | AppError::Fields(_))) => {
            reshow(&viewer, None, &form, c, FieldErrors::default(), Some(e)).await
        }
        Err(e) => viewer.error(e),
    }
}

async fn load(viewer: &Viewer, raw: &str) -> Result<ChangeView, AppError> {
    let id = changes::resolve_id(&viewer.state.pool, raw).await?;
    changes::load(&viewer.state.pool, id).await
}

pub async fn edit_form(viewer: Viewer, origin: Origin, Path(id): Path<String>) -> Response {
    let shown = async {
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
        form_page(
            &viewer,
            Some(&current),
            c,
            None,
            FieldErrors::default(),
            false,
        )
        .await
    };
    shown.await.unwrap_or_else(|e| viewer.error(e))
}

pub async fn update(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
    Form(form): Form<Pairs>,
) -> Response {
    let current = match load(&viewer, &id).await {
        Ok(c) => c,
        Err(e) => return viewer.error(e),
    };
    if let Err(e) = changes::authorize(
        &viewer.state.pool,
        &viewer.user,
        &origin,
        &current,
        ChangeAction::Edit,
    )
    .await
    {
        return viewer.error(e);
    }
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
        Ok(saved) => Redirect::to(&format!("/changes/{}", saved.id)).into_response(),
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
        Err(e) => viewer.error(e),
    }
}

pub async fn preview_risk(_viewer: Viewer, Query(form): Query<Pairs>) -> Response {
    let (c, _) = content_from_form(&form);
    render(&RiskFragment {
        risk: risk_preview(&c.risk),
    })
}

pub struct Field {
    pub label: &'static str,
    pub value: String,
    pub multiline: bool,
}

pub struct RevisionLine {
    pub number: i32,
    pub at: String,
    pub by: String,
    pub risk: String,
    pub diff: Vec<FieldChange>,
}

pub struct CommentLine {
    pub author: String,
    pub at: String,
    pub body: String,
}

pub struct TimelineLine {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub detail: String,
}

/// The decision section of a change's page.
pub struct DecisionView {
    pub level: String,
    pub still_needed: Vec<String>,
    pub review_note: Option<String>,
    pub assessment: Option<AssessmentSummary>,
    pub trail: Vec<TrailLine>,
    pub may_vote: bool,
    pub may_assess: bool,
    pub may_start: bool,
    pub my_vote: Option<String>,
    pub retrospective_due: Option<String>,
    pub retrospective_done: Option<String>,
    pub may_record_retrospective: bool,
}

pub struct AssessmentSummary {
    pub by: String,
    pub decision: String,
    pub level: String,
    pub lowers: bool,
    pub lowering_justification: String,
    pub conditions: Vec<String>,
    pub classification: String,
    pub testing: Vec<(String, String)>,
}

pub struct TrailLine {
    pub kind: &'static str,
    pub who: String,
    pub roles: String,
    pub revision: i32,
    pub decision: String,
    pub comment: String,
    pub at: String,
    pub status: &'static str,
}

#[derive(Template)]
#[template(path = "changes/detail.html")]
struct DetailPage {
    d: DecisionView,
    layout: Layout,
    v: ChangeView,
    key: String,
    state_label: &'static str,
    type_label: &'static str,
    fields: Vec<Field>,
    revisions: Vec<RevisionLine>,
    comments: Vec<CommentLine>,
    timeline: Vec<TimelineLine>,
    can_edit: bool,
    can_submit: bool,
    can_withdraw: bool,
    can_cancel: bool,
    errors: FieldErrors,
    notice: Option<String>,
}

fn describe(action: &str, payload: &serde_json::Value) -> String {
    let s = |k: &str| {
        payload
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    match action {
        "change.created" => format!("filed as a draft, risk {}", s("risk_level")),
        "change.edited" => {
            let fields: Vec<String> = payload
                .get("fields")
                .and_then(|f| f.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "edited ({}); revision {}",
                fields.join(", "),
                payload.get("revision").cloned().unwrap_or_default()
            )
        }
        "change.submitted" => "submitted (revision 1)".into(),
        "change.withdrawn" => "withdrawn".into(),
        "change.cancelled" => format!("cancelled: {}", s("reason")),
        "change.commented" => "commented".into(),
        "access.denied" => format!("refused {}: {}", s("attempted"), s("reason")),
        other => other.to_owned(),
    }
}

async fn detail_page(
    viewer: &Viewer,
    v: ChangeView,
    errors: FieldErrors,
    notice: Option<String>,
) -> Result<Response, AppError> {
    let mut conn = viewer.state.pool.acquire().await?;
    let revisions = cab_db::changes::revisions(&mut conn, v.id).await?;
    let comments = cab_db::changes::comments(&mut conn, v.id).await?;
    let events = cab_db::audit::for_entity(&mut conn, "change", &v.id.to_string()).await?;
    let facts = crate::decisions::facts(&mut conn, &v).await?;
    drop(conn);
    let d = decision_view(viewer, &v, &facts);
    let c = &v.content;
    let offset = parse_offset(&c.window_tz);
    let show = |t: Option<DateTime<Utc>>| match (t, offset) {
        (Some(t), Some(o)) if o.local_minus_utc() != 0 => format!(
            "{} ({} {})",
            when(&t),
            t.with_timezone(&o).format("%Y-%m-%d %H:%M"),
            o
        ),
        (Some(t), _) => when(&t),
        (None, _) => "not planned yet".into(),
    };
    let window = format!("{} → {}", show(c.window_start), show(c.window_end));
    let levels = [
        (c.test_levels.unit, "unit"),
        (c.test_levels.integration, "integration"),
        (c.test_levels.system, "system"),
        (c.test_levels.acceptance, "acceptance"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| *n)
    .collect::<Vec<_>>()
    .join(", ");
    let f = |label: &'static str, value: String, multiline: bool| Field {
        label,
        value,
        multiline,
    };
    let fields = vec![
        f("Description", c.description.clone(), true),
        f("Business justification", c.justification.clone(), true),
        f("Category", c.category.label().into(), false),
        f("Priority", c.priority.label().into(), false),
        f("Affected services", c.services.join(", "), false),
        f(
            "Target environments",
            c.environments
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            false,
        ),
        f("Planned window", window, false),
        f("Implementation plan", c.implementation_plan.clone(), true),
        f("Test plan", c.test_plan.clone(), true),
        f("Testing levels", levels, false),
        f("Test evidence", c.test_evidence.join("\n"), true),
        f("Rollback plan", c.rollback_plan.clone(), true),
        f("Pull request", c.pr_url.clone(), false),
        f("Commit", c.commit_sha.clone(), false),
        f("Artifact digest", c.artifact_digest.clone(), false),
        f("Author", v.author.clone(), false),
        f(
            "Contributors",
            v.contributors
                .iter()
                .map(|(_, u)| u.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            false,
        ),
    ];
    let page = DetailPage {
        d,
        layout: viewer.layout(format!("{} {}", v.key(), c.title)),
        key: v.key(),
        state_label: v.state.label(),
        type_label: c.change_type.label(),
        fields,
        revisions: revisions
            .into_iter()
            .map(|r| RevisionLine {
                number: r.number,
                at: when(&r.created_at),
                by: r.created_by,
                risk: r.risk_level,
                diff: serde_json::from_value(r.diff).unwrap_or_default(),
            })
            .collect(),
        comments: comments
            .into_iter()
            .map(|c| CommentLine {
                author: c.author,
                at: when(&c.created_at),
                body: c.body,
            })
            .collect(),
        timeline: events
            .into_iter()
            .map(|e| TimelineLine {
                at: when(&e.occurred_at),
                actor: e.actor_username.unwrap_or_default(),
                detail: describe(&e.action, &e.payload),
                action: e.action,
            })
            .collect(),
        can_edit: v.allows(&viewer.user, ChangeAction::Edit),
        can_submit: v.allows(&viewer.user, ChangeAction::Submit),
        can_withdraw: v.allows(&viewer.user, ChangeAction::Withdraw),
        can_cancel: v.allows(&viewer.user, ChangeAction::Cancel),
        errors,
        notice,
        v,
    };
    let status = if page.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((status, render(&page)).into_response())
}

pub async fn show(viewer: Viewer, Path(id): Path<String>) -> Response {
    let shown = async {
        let v = load(&viewer, &id).await?;
        detail_page(&viewer, v, FieldErrors::default(), None).await
    };
    shown.await.unwrap_or_else(|e| viewer.error(e))
}

async fn act(
    viewer: Viewer,
    origin: Origin,
    id: String,
    action: ChangeAction,
    reason: Option<String>,
) -> Response {
    let done = async {
        let current = load(&viewer, &id).await?;
        match changes::transition(
            &viewer.state.pool,
            &viewer.user,
            &origin,
            current.id,
            action,
            reason,
        )
        .await
        {
            Ok(v) => Ok(Redirect::to(&format!("/changes/{}", v.id)).into_response()),
            Err(e @ (AppError::Invalid { .. } | AppError::Fields(_))) => {
                let errors = FieldErrors::absorb(e, "title")?;
                detail_page(&viewer, current, errors, None).await
            }
            Err(e) => Err(e),
        }
    };
    done.await.unwrap_or_else(|e| viewer.error(e))
}

pub async fn submit(viewer: Viewer, origin: Origin, Path(id): Path<String>) -> Response {
    act(viewer, origin, id, ChangeAction::Submit, None).await
}

pub async fn withdraw(viewer: Viewer, origin: Origin, Path(id): Path<String>) -> Response {
    act(viewer, origin, id, ChangeAction::Withdraw, None).await
}

pub async fn cancel(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
    Form(form): Form<Pairs>,
) -> Response {
    act(
        viewer,
        origin,
        id,
        ChangeAction::Cancel,
        Some(value(&form, "reason")),
    )
    .await
}

pub async fn comment(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
    Form(form): Form<Pairs>,
) -> Response {
    let done = async {
        let current = load(&viewer, &id).await?;
        match changes::comment(
            &viewer.state.pool,
            &viewer.user,
            &origin,
            current.id,
            &value(&form, "body"),
        )
        .await
        {
            Ok(_) => Ok(Redirect::to(&format!("/changes/{}#comments", current.id)).into_response()),
            Err(e @ AppError::Invalid { .. }) => {
                let errors = FieldErrors::absorb(e, "body")?;
                detail_page(&viewer, current, errors, None).await
            }
            Err(e) => Err(e),
        }
    };
    done.await.unwrap_or_else(|e| viewer.error(e))
}

pub struct Row {
    pub id: String,
    pub key: String,
    pub title: String,
    pub state: String,
    pub change_type: String,
    pub risk: String,
    pub services: String,
    pub environments: String,
    pub author: String,
    pub window: String,
    pub updated: String,
}

impl From<ChangeSummary> for Row {
    fn from(s: ChangeSummary) -> Self {
        Row {
            id: s.id.to_string(),
            key: format!("CHG-{}", s.number),
            title: s.title,
            state: s.state,
            change_type: s.change_type,
            risk: s.risk_level,
            services: s.services.join(", "),
            environments: s.environments.join(", "),
            author: s.author,
            window: s
                .window_start
                .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_default(),
            updated: s.updated_at.format("%Y-%m-%d %H:%M").to_string(),
        }
    }
}

#[derive(Template)]
#[template(path = "changes/list.html")]
struct ListPage {
    layout: Layout,
    rows: Vec<Row>,
    next: Option<String>,
    q: String,
    service: String,
    author: String,
    mine: bool,
    states: Vec<Choice>,
    types: Vec<Choice>,
    risks: Vec<Choice>,
    categories: Vec<Choice>,
    sorts: Vec<Choice>,
    can_create: bool,
    error: Option<String>,
}

/// The filter as a query string, without the cursor: the shareable view.
fn query_string(q: &ListQuery) -> String {
    let pairs: Vec<(&str, &Option<String>)> = vec![
        ("q", &q.q),
        ("state", &q.state),
        ("type", &q.change_type),
        ("risk", &q.risk),
        ("category", &q.category),
        ("service", &q.service),
        ("author", &q.author),
        ("mine", &q.mine),
        ("sort", &q.sort),
    ];
    pairs
        .into_iter()
        .filter_map(|(k, v)| {
            v.as_ref()
                .filter(|v| !v.is_empty())
                .map(|v| format!("{k}={}", urlencode(v)))
        })
        .collect::<Vec<_>>()
        .join("&")
}

pub async fn list(
    viewer: Viewer,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = query.map(|Query(q)| q).unwrap_or_default();
    let one = |v: &Option<String>| v.clone().unwrap_or_default();
    let (rows, next, error) = match q.filter(viewer.user.id) {
        Ok(filter) => match page(&viewer.state, &filter, 50).await {
            Ok((rows, next)) => (rows, next, None),
            Err(e) => return viewer.error(e),
        },
        Err(e) => (Vec::new(), None, Some(e.detail())),
    };
    let base = query_string(&q);
    let state_now = one(&q.state);
    let type_now = one(&q.change_type);
    let risk_now = one(&q.risk);
    let cat_now = one(&q.category);
    let sort_now = q.sort.clone().unwrap_or_else(|| "newest".into());
    let page = ListPage {
        layout: viewer.layout("Changes"),
        rows: rows.into_iter().map(Row::from).collect(),
        next: next.map(|c| {
            if base.is_empty() {
                format!("?cursor={c}")
            } else {
                format!("?{base}&cursor={c}")
            }
        }),
        q: one(&q.q),
        service: one(&q.service),
        author: one(&q.author),
        mine: matches!(q.mine.as_deref(), Some("true" | "on" | "1")),
        states: selected_by_text(ChangeState::ALL, &state_now, |v| (v.as_str(), v.label())),
        types: selected_by_text(ChangeType::ALL, &type_now, |v| (v.as_str(), v.label())),
        risks: selected_by_text(&RiskLevel::ALL, &risk_now, |v| (v.as_str(), v.as_str())),
        categories: selected_by_text(Category::ALL, &cat_now, |v| (v.as_str(), v.label())),
        sorts: selected_by_text(&Sort::ALL, &sort_now, |v| (v.as_str(), v.as_str())),
        can_create: viewer.user.has(Role::Engineer),
        error,
    };
    render(&page)
}

fn decision_view(
    viewer: &Viewer,
    v: &ChangeView,
    facts: &crate::decisions::DecisionFacts,
) -> DecisionView {
    use cab_domain::approval::{AssessmentContent, Duty};
    let under_review = cab_domain::approval::under_review(v.state);
    let assessment = facts.current_assessment.as_ref().map(|a| {
        let content: Option<AssessmentContent> = serde_json::from_value(a.content.clone()).ok();
        let testing = content
            .as_ref()
            .map(|c| {
                [
                    ("SAST", &c.sast),
                    ("DAST", &c.dast),
                    ("Penetration test", &c.pentest),
                ]
                .iter()
                .map(|(name, t)| {
                    let what = if t.required {
                        "required"
                    } else {
                        "not required"
                    };
                    let detail = [t.evidence.as_str(), t.justification.as_str()]
                        .iter()
                        .filter(|s| !s.is_empty())
                        .copied()
                        .collect::<Vec<_>>()
                        .join(" — ");
                    (
                        (*name).to_owned(),
                        if detail.is_empty() {
                            what.to_owned()
                        } else {
                            format!("{what}: {detail}")
                        },
                    )
                })
                .collect()
            })
            .unwrap_or_default();
        AssessmentSummary {
            by: a.assessor_username.clone(),
            decision: a.decision.replace('_', " "),
            level: a.assessed_level.clone(),
            lowers: a.lowers_risk,
            lowering_justification: content
                .as_ref()
                .map(|c| c.lowering_justification.clone())
                .unwrap_or_default(),
            conditions: content
                .as_ref()
                .map(|c| c.conditions.clone())
                .unwrap_or_default(),
            classification: content
                .as_ref()
                .map(|c| c.data_classification.label().to_owned())
                .unwrap_or_default(),
            testing,
        }
    });
    let trail = crate::api::decisions::trail_entries(facts, v.revision)
        .into_iter()
        .map(|e| e.into_line())
        .collect();
    let retro_pending = facts.decision.retrospective_due_at.is_some()
        && facts.decision.retrospective_done_at.is_none();
    let mut decided = v.facts();
    decided.state = ChangeState::InCabReview;
    DecisionView {
        level: facts.level.as_str().to_owned(),
        still_needed: if under_review {
            crate::api::decisions::still_needed(facts)
        } else {
            Vec::new()
        },
        review_note: facts
            .decision
            .review_note
            .clone()
            .filter(|_| !v.state.is_decided()),
        assessment,
        trail,
        may_vote: crate::decisions::may(v, &viewer.user, Duty::Vote),
        may_assess: crate::decisions::may(v, &viewer.user, Duty::Assess),
        may_start: v.state == ChangeState::Submitted
            && crate::decisions::may(v, &viewer.user, Duty::Assess),
        my_vote: facts
            .my_vote(viewer.user.id, v.revision)
            .map(|x| x.choice.replace('_', " ")),
        retrospective_due: facts.decision.retrospective_due_at.as_ref().map(when),
        retrospective_done: facts.decision.retrospective_done_at.as_ref().map(when),
        may_record_retrospective: retro_pending
            && cab_domain::approval::check_duty(&decided, &viewer.user.change_actor(), Duty::Vote)
                .is_ok(),
    }
}
