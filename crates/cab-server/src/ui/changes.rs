//! Change-request pages: the list, the form (new and edit), the detail page
//! with revisions, comments and timeline, and the actions on it.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cab_db::changes::{ChangeSummary, Sort};
use cab_domain::Role;
use cab_domain::approval::{AssessmentDecision, DataClassification, VoteChoice};
use cab_domain::change::{
    Category, ChangeAction, ChangeContent, ChangeState, ChangeType, Environment, FieldChange,
    Priority, TestLevels, field_label,
};
use cab_domain::risk::{RiskAnswers, RiskLevel, assess};
use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};

use super::notice::{Notice, redirect_with};
use super::words::{Link, People, Sentence, Subjects, role_labels, stored};
use super::{FieldErrors, Layout, Viewer, message, render, urlencode, when};
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
        Ok(created) => redirect_with(
            &viewer,
            &format!("/changes/{}", created.id),
            Notice::ChangeCreated {
                number: created.number,
            },
        ),
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
        Ok(saved) => redirect_with(
            &viewer,
            &format!("/changes/{}", saved.id),
            Notice::ChangeSaved {
                number: saved.number,
            },
        ),
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

/// One fact on a change's page: text, text as written (line breaks kept),
/// or links, of which only web addresses can be followed.
pub struct Field {
    pub label: &'static str,
    pub text: String,
    pub multiline: bool,
    pub links: Vec<Link>,
}

impl Field {
    fn text(label: &'static str, text: impl Into<String>) -> Self {
        Field {
            label,
            text: text.into(),
            multiline: false,
            links: Vec::new(),
        }
    }

    fn prose(label: &'static str, text: impl Into<String>) -> Self {
        Field {
            multiline: true,
            ..Field::text(label, text)
        }
    }

    fn links<'a>(label: &'static str, items: impl IntoIterator<Item = &'a str>) -> Self {
        Field {
            links: items
                .into_iter()
                .filter(|s| !s.trim().is_empty())
                .map(Link::new)
                .collect(),
            ..Field::text(label, "")
        }
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty() && self.links.is_empty()
    }
}

/// One changed field of a revision, by its label.
pub struct DiffLine {
    pub field: &'static str,
    pub before: String,
    pub after: String,
}

pub struct RevisionLine {
    pub number: i32,
    pub at: String,
    pub by: String,
    pub risk: Option<RiskLevel>,
    pub diff: Vec<DiffLine>,
}

pub struct CommentLine {
    pub author: String,
    pub at: String,
    pub body: String,
}

pub struct TimelineLine {
    pub at: String,
    /// The stored action, kept as `data-action` for scripts and tests.
    pub action: String,
    pub sentence: Sentence,
}

/// The decision section of a change's page.
pub struct DecisionView {
    pub level: RiskLevel,
    pub still_needed: Vec<String>,
    pub review_note: Option<String>,
    pub assessment: Option<AssessmentSummary>,
    pub trail: Vec<TrailLine>,
    pub may_vote: bool,
    pub may_assess: bool,
    pub may_start: bool,
    pub my_vote: Option<VoteChoice>,
    pub retrospective_due: Option<String>,
    pub retrospective_done: Option<String>,
    pub may_record_retrospective: bool,
}

/// One kind of security testing in an assessment.
pub struct TestingLine {
    pub name: &'static str,
    pub required: bool,
    pub evidence: Option<Link>,
    pub justification: String,
}

pub struct AssessmentSummary {
    pub by: String,
    pub decision: Option<AssessmentDecision>,
    pub level: Option<RiskLevel>,
    pub lowers: bool,
    pub lowering_justification: String,
    pub conditions: Vec<String>,
    pub classification: Option<DataClassification>,
    pub testing: Vec<TestingLine>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailKind {
    Assessment,
    Vote,
}

impl TrailKind {
    pub fn label(self) -> &'static str {
        match self {
            TrailKind::Assessment => "Security assessment",
            TrailKind::Vote => "CAB vote",
        }
    }
}

/// Whether an assessment or vote still counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailStatus {
    Current,
    Superseded,
    EarlierRevision,
    /// On the current revision, but the person no longer counts (see
    /// `cab_domain::approval::Standing`).
    DoesNotCount(cab_domain::approval::Standing),
}

impl TrailStatus {
    pub fn label(self) -> &'static str {
        match self {
            TrailStatus::Current => "Counts",
            TrailStatus::Superseded => "Replaced by a later one",
            TrailStatus::EarlierRevision => "On an earlier revision",
            TrailStatus::DoesNotCount(s) => s.label(),
        }
    }

    pub fn class(self) -> &'static str {
        match self {
            TrailStatus::Current => "trail-current",
            TrailStatus::Superseded => "trail-superseded",
            TrailStatus::EarlierRevision | TrailStatus::DoesNotCount(_) => "trail-earlier",
        }
    }
}

pub struct TrailLine {
    pub kind: TrailKind,
    pub who: String,
    pub roles: String,
    pub revision: i32,
    pub decision: String,
    pub comment: String,
    pub at: String,
    pub status: TrailStatus,
}

#[derive(Template)]
#[template(path = "changes/detail.html")]
struct DetailPage {
    d: DecisionView,
    layout: Layout,
    v: ChangeView,
    key: String,
    fields: Vec<Field>,
    revisions: Vec<RevisionLine>,
    comments: Vec<CommentLine>,
    timeline: Vec<TimelineLine>,
    can_edit: bool,
    can_submit: bool,
    can_withdraw: bool,
    can_cancel: bool,
    errors: FieldErrors,
}

pub(super) async fn detail_page(
    viewer: &Viewer,
    v: ChangeView,
    errors: FieldErrors,
) -> Result<Response, AppError> {
    let mut conn = viewer.state.pool.acquire().await?;
    let revisions = cab_db::changes::revisions(&mut conn, v.id).await?;
    let comments = cab_db::changes::comments(&mut conn, v.id).await?;
    let events = cab_db::audit::for_entity(&mut conn, "change", &v.id.to_string()).await?;
    let facts = crate::decisions::facts(&mut conn, &v).await?;
    let subjects = Subjects::for_change(People::load(&mut conn).await?, v.id, v.number);
    drop(conn);
    let people = &subjects.people;
    let d = decision_view(viewer, &v, &facts, people);
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
    let fields = vec![
        Field::prose("Description", c.description.clone()),
        Field::prose("Business justification", c.justification.clone()),
        Field::text("Category", c.category.label()),
        Field::text("Priority", c.priority.label()),
        Field::text("Affected services", c.services.join(", ")),
        Field::text(
            "Target environments",
            c.environments
                .iter()
                .map(|e| e.label())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        Field::text("Planned window", window),
        Field::prose("Implementation plan", c.implementation_plan.clone()),
        Field::prose("Test plan", c.test_plan.clone()),
        Field::text("Testing levels", levels),
        Field::links("Test evidence", c.test_evidence.iter().map(String::as_str)),
        Field::prose("Rollback plan", c.rollback_plan.clone()),
        Field::links("Pull request", [c.pr_url.as_str()]),
        Field::text("Commit", c.commit_sha.clone()),
        Field::text("Artifact digest", c.artifact_digest.clone()),
        Field::text("Author", people.name(&v.author)),
        Field::text(
            "Contributors",
            v.contributors
                .iter()
                .map(|(_, u)| people.name(u))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    ];
    let page = DetailPage {
        d,
        layout: viewer.layout(format!("{} {}", v.key(), c.title)),
        key: v.key(),
        fields,
        revisions: revisions
            .into_iter()
            .map(|r| RevisionLine {
                number: r.number,
                at: when(&r.created_at),
                by: people.name(&r.created_by),
                risk: RiskLevel::parse(&r.risk_level),
                diff: serde_json::from_value::<Vec<FieldChange>>(r.diff)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|f| DiffLine {
                        field: field_label(&f.field).unwrap_or("Another field"),
                        before: f.before,
                        after: f.after,
                    })
                    .collect(),
            })
            .collect(),
        comments: comments
            .into_iter()
            .map(|c| CommentLine {
                author: people.name(&c.author),
                at: when(&c.created_at),
                body: c.body,
            })
            .collect(),
        timeline: events
            .iter()
            .map(|e| TimelineLine {
                at: when(&e.occurred_at),
                action: e.action.clone(),
                sentence: subjects.describe(e),
            })
            .collect(),
        can_edit: v.allows(&viewer.user, ChangeAction::Edit),
        can_submit: v.allows(&viewer.user, ChangeAction::Submit),
        can_withdraw: v.allows(&viewer.user, ChangeAction::Withdraw),
        can_cancel: v.allows(&viewer.user, ChangeAction::Cancel),
        errors,
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
        detail_page(&viewer, v, FieldErrors::default()).await
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
            Ok(v) => {
                let number = v.number;
                let notice = match action {
                    ChangeAction::Submit => Notice::ChangeSubmitted {
                        number,
                        state: v.state,
                    },
                    ChangeAction::Withdraw => Notice::ChangeWithdrawn { number },
                    ChangeAction::Cancel => Notice::ChangeCancelled { number },
                    ChangeAction::Edit | ChangeAction::Comment => Notice::ChangeSaved { number },
                };
                Ok(redirect_with(
                    &viewer,
                    &format!("/changes/{}", v.id),
                    notice,
                ))
            }
            Err(e @ (AppError::Invalid { .. } | AppError::Fields(_))) => {
                let errors = FieldErrors::absorb(e, "title")?;
                detail_page(&viewer, current, errors).await
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
            Ok(_) => Ok(redirect_with(
                &viewer,
                &format!("/changes/{}#comments", current.id),
                Notice::Commented {
                    number: current.number,
                },
            )),
            Err(e @ AppError::Invalid { .. }) => {
                let errors = FieldErrors::absorb(e, "body")?;
                detail_page(&viewer, current, errors).await
            }
            Err(e) => Err(e),
        }
    };
    done.await.unwrap_or_else(|e| viewer.error(e))
}

/// A change in a list.
pub struct Row {
    pub id: String,
    pub key: String,
    pub title: String,
    pub state: ChangeState,
    pub change_type: ChangeType,
    pub risk: RiskLevel,
    pub services: String,
    pub environments: String,
    pub author: String,
    pub window: String,
    pub updated: String,
}

impl TryFrom<ChangeSummary> for Row {
    type Error = AppError;

    fn try_from(s: ChangeSummary) -> Result<Self, AppError> {
        Ok(Row {
            id: s.id.to_string(),
            key: format!("CHG-{}", s.number),
            state: stored(ChangeState::parse(&s.state), "state", &s.state)?,
            change_type: stored(ChangeType::parse(&s.change_type), "type", &s.change_type)?,
            risk: stored(RiskLevel::parse(&s.risk_level), "risk level", &s.risk_level)?,
            title: s.title,
            services: s.services.join(", "),
            environments: s.environments.join(", "),
            author: s.author,
            window: s
                .window_start
                .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_default(),
            updated: s.updated_at.format("%Y-%m-%d %H:%M").to_string(),
        })
    }
}

/// Rows for a list page.
pub fn rows(summaries: Vec<ChangeSummary>) -> Result<Vec<Row>, AppError> {
    summaries.into_iter().map(Row::try_from).collect()
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
            Ok((found, next)) => match rows(found) {
                Ok(rows) => (rows, next, None),
                Err(e) => return viewer.error(e),
            },
            Err(e) => return viewer.error(e),
        },
        Err(e) => (Vec::new(), None, Some(message(&e))),
    };
    let base = query_string(&q);
    let state_now = one(&q.state);
    let type_now = one(&q.change_type);
    let risk_now = one(&q.risk);
    let cat_now = one(&q.category);
    let sort_now = q.sort.clone().unwrap_or_else(|| "newest".into());
    let page = ListPage {
        layout: viewer.layout("Changes"),
        rows,
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
        risks: selected_by_text(&RiskLevel::ALL, &risk_now, |v| (v.as_str(), v.label())),
        categories: selected_by_text(Category::ALL, &cat_now, |v| (v.as_str(), v.label())),
        sorts: selected_by_text(&Sort::ALL, &sort_now, |v| (v.as_str(), v.label())),
        can_create: viewer.user.has(Role::Engineer),
        error,
    };
    render(&page)
}

/// The approval trail: every assessment and vote, oldest first, superseded
/// ones and those on earlier revisions included.
fn trail(
    facts: &crate::decisions::DecisionFacts,
    revision: i32,
    people: &People,
) -> Vec<TrailLine> {
    use cab_domain::approval::AssessmentContent;
    let status = |superseded: bool, on: i32| {
        if superseded {
            TrailStatus::Superseded
        } else if on != revision {
            TrailStatus::EarlierRevision
        } else {
            TrailStatus::Current
        }
    };
    let mut lines: Vec<(DateTime<Utc>, TrailLine)> = facts
        .assessments
        .iter()
        .map(|a| {
            let content: Option<AssessmentContent> = serde_json::from_value(a.content.clone()).ok();
            let mut decision = AssessmentDecision::parse(&a.decision)
                .map_or("Assessment", AssessmentDecision::label)
                .to_owned();
            if let Some(level) = RiskLevel::parse(&a.assessed_level) {
                decision = format!("{decision}, {} risk", level.label().to_lowercase());
            }
            if a.lowers_risk {
                decision.push_str(" (lowered)");
            }
            let mut comment = content
                .as_ref()
                .map(|c| c.residual_risk.clone())
                .unwrap_or_default();
            if let Some(c) = content.as_ref().filter(|c| !c.conditions.is_empty()) {
                comment = format!("{comment} Conditions: {}", c.conditions.join("; "));
            }
            let line = TrailLine {
                kind: TrailKind::Assessment,
                who: people.name(&a.assessor_username),
                roles: role_labels(&a.assessor_roles),
                revision: a.revision,
                decision,
                comment: comment.trim().to_owned(),
                at: when(&a.created_at),
                status: match status(a.superseded_at.is_some(), a.revision) {
                    TrailStatus::Current => match facts.assessment_standing {
                        Some(s) if !s.counts() => TrailStatus::DoesNotCount(s),
                        _ => TrailStatus::Current,
                    },
                    other => other,
                },
            };
            (a.created_at, line)
        })
        .chain(facts.votes.iter().map(|v| {
            let line = TrailLine {
                kind: TrailKind::Vote,
                who: people.name(&v.voter_username),
                roles: role_labels(&v.voter_roles),
                revision: v.revision,
                decision: VoteChoice::parse(&v.choice)
                    .map_or("Vote", VoteChoice::label)
                    .to_owned(),
                comment: v.comment.clone(),
                at: when(&v.created_at),
                status: match status(v.superseded_at.is_some(), v.revision) {
                    TrailStatus::Current if !facts.vote_standing(v.voter_id).counts() => {
                        TrailStatus::DoesNotCount(facts.vote_standing(v.voter_id))
                    }
                    other => other,
                },
            };
            (v.created_at, line)
        }))
        .collect();
    lines.sort_by_key(|(at, _)| *at);
    lines.into_iter().map(|(_, line)| line).collect()
}

fn decision_view(
    viewer: &Viewer,
    v: &ChangeView,
    facts: &crate::decisions::DecisionFacts,
    people: &People,
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
                .into_iter()
                .map(|(name, t)| TestingLine {
                    name,
                    required: t.required,
                    evidence: Some(t.evidence.as_str())
                        .filter(|e| !e.trim().is_empty())
                        .map(Link::new),
                    justification: t.justification.clone(),
                })
                .collect()
            })
            .unwrap_or_default();
        AssessmentSummary {
            by: people.name(&a.assessor_username),
            decision: AssessmentDecision::parse(&a.decision),
            level: RiskLevel::parse(&a.assessed_level),
            lowers: a.lowers_risk,
            lowering_justification: content
                .as_ref()
                .map(|c| c.lowering_justification.clone())
                .unwrap_or_default(),
            conditions: content
                .as_ref()
                .map(|c| c.conditions.clone())
                .unwrap_or_default(),
            classification: content.as_ref().map(|c| c.data_classification),
            testing,
        }
    });
    let retro_pending = facts.decision.retrospective_due_at.is_some()
        && facts.decision.retrospective_done_at.is_none();
    let mut decided = v.facts();
    decided.state = ChangeState::InCabReview;
    DecisionView {
        level: facts.level,
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
        trail: trail(facts, v.revision, people),
        may_vote: crate::decisions::may(v, &viewer.user, Duty::Vote),
        may_assess: crate::decisions::may(v, &viewer.user, Duty::Assess),
        may_start: v.state == ChangeState::Submitted
            && crate::decisions::may(v, &viewer.user, Duty::Assess),
        my_vote: facts
            .my_vote(viewer.user.id, v.revision)
            .and_then(|x| VoteChoice::parse(&x.choice)),
        retrospective_due: facts.decision.retrospective_due_at.as_ref().map(when),
        retrospective_done: facts.decision.retrospective_done_at.as_ref().map(when),
        may_record_retrospective: retro_pending
            && cab_domain::approval::check_duty(&decided, &viewer.user.change_actor(), Duty::Vote)
                .is_ok(),
    }
}
