//! Deployment pages: every deployment, newest first, filtered in the URL;
//! one deployment with its history and the reports its people make on it;
//! and on a change's page the promotion strip, the form that asks the gate,
//! and the freezes that overlap the planned window.
//!
//! An environment has one label and one colour on every page: both from
//! `crate::deployments`' environments (as `environment_labels` gives them),
//! the label written as text, the colour from the small stylesheet
//! `/deployments/environments.css` made from the same rows (the pages' CSP
//! allows no inline style).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use askama::Template;
use axum::Form;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cab_db::deployments::{DeploymentFilter, DeploymentRow, FreezeRow};
use cab_domain::Role;
use cab_domain::deployment::{DeploymentState, Freeze};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::PgConnection;
use uuid::Uuid;

use super::form::{FieldErrors, FormPairs as Pairs, form_value as value};
use super::notice::{Notice, redirect_with};
use super::{Layout, Viewer, filters, render, urlencode, when};
use crate::auth::CurrentUser;
use crate::changes::{self, ChangeView};
use crate::deployments::{self, Environment, EnvironmentLabels, GateRequest, Report};
use crate::error::AppError;
use crate::page_error::PageResult;
use crate::request::Origin;
use crate::words::{Link, People, Sentence, Subjects, is_web_url, stored};

/// Deployments on one page of the list.
const PAGE_SIZE: usize = 25;

/// The rules of the deployment pages that do not depend on the data; the
/// environments' colours follow them.
const STYLE_RULES: &str = "\
.environment { display: inline-block; padding: 0 .45rem; border-radius: 3px; font-size: .85rem; font-weight: 700; letter-spacing: .04em; background: #3d5a80; color: #ffffff; }
.dstate { display: inline-block; padding: 0 .45rem; border-radius: 3px; font-size: .85rem; border: 1px solid #d8dce4; background: #ffffff; color: #1d2330; }
.dstate-authorized, .dstate-started { background: #e3ecfb; border-color: #7d9ad6; }
.dstate-succeeded { background: #e6f4ea; border-color: #8bc79b; }
.dstate-failed { background: #fdecea; border-color: #e08a8a; }
.dstate-rolled_back { background: #fff4d6; border-color: #e0b84c; }
.dstate-expired, .dstate-aborted { background: #f1f1f1; }
ol.promotion { list-style: none; margin: 0 0 1rem; padding: 0; display: grid; grid-template-columns: repeat(auto-fit, minmax(11rem, 1fr)); gap: .5rem; }
ol.promotion > li { background: #ffffff; border: 1px solid #d8dce4; border-radius: 4px; padding: .5rem .7rem; display: flex; flex-direction: column; gap: .2rem; min-width: 0; overflow-wrap: anywhere; }
.digest { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .85rem; overflow-wrap: anywhere; }
.short-digest { white-space: nowrap; }
.deploy-form { background: #ffffff; border: 1px solid #d8dce4; border-radius: 4px; padding: .6rem .8rem; }
.deploy-form input, .deploy-form select, .token { width: 100%; }
.token { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .8rem; }
ul.freezes { margin: .2rem 0 0; padding-left: 1.2rem; }
.paging { display: flex; gap: 1rem; flex-wrap: wrap; }
";

/// Whether `c` is `#` and six lower-case hexadecimal digits.
fn is_colour(c: &str) -> bool {
    c.len() == 7
        && c.starts_with('#')
        && c[1..].chars().all(|ch| matches!(ch, '0'..='9' | 'a'..='f'))
}

/// Whether `k` can name a class: an environment's key as stored.
fn is_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 20
        && k.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// White or near-black text, whichever reads better on `colour` (WCAG
/// relative luminance).
fn text_on(colour: &str) -> &'static str {
    let channel = |i: usize| -> f64 {
        let v = colour
            .get(i..i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or(0);
        let c = f64::from(v) / 255.0;
        if c <= 0.039_28 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let l = 0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5);
    if 1.05 / (l + 0.05) >= (l + 0.05) / 0.05 {
        "#ffffff"
    } else {
        "#111111"
    }
}

/// The stylesheet's address for these environments: it changes when a
/// colour does, so a browser may keep it meanwhile.
pub(crate) fn stylesheet_url<'a>(envs: impl IntoIterator<Item = &'a Environment>) -> String {
    let mut pairs: Vec<(&str, &str)> = envs
        .into_iter()
        .map(|e| (e.rules.key.as_str(), e.colour.as_str()))
        .collect();
    pairs.sort_unstable();
    let mut h = DefaultHasher::new();
    pairs.hash(&mut h);
    STYLE_RULES.hash(&mut h);
    format!("/deployments/environments.css?v={:016x}", h.finish())
}

/// `GET /deployments/environments.css`: each environment's colour, as the
/// class `environment-<key>`, and the rules of the deployment pages. For
/// people signed in, like the pages that use it.
pub(crate) async fn stylesheet(viewer: Viewer) -> PageResult {
    let mut conn = viewer.state.pool.acquire().await.map_err(AppError::from)?;
    let envs = deployments::environments(&mut conn).await?;
    drop(conn);
    let mut css = String::from(STYLE_RULES);
    for e in envs
        .iter()
        .filter(|e| is_key(&e.rules.key) && is_colour(&e.colour))
    {
        css.push_str(&format!(
            ".environment-{} {{ background: {}; color: {}; }}\n",
            e.rules.key,
            e.colour,
            text_on(&e.colour)
        ));
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "private, max-age=86400"),
        ],
        css,
    )
        .into_response())
}

/// An environment as every page shows it: its label, in its colour (the
/// class `environment-<key>`).
pub(crate) struct EnvTag {
    pub key: String,
    pub label: String,
}

fn env_tag(envs: &EnvironmentLabels, key: &str) -> EnvTag {
    EnvTag {
        key: key.to_owned(),
        label: envs
            .get(key)
            .map(|e| e.rules.label.clone())
            .unwrap_or_else(|| key.to_uppercase()),
    }
}

fn labels(envs: &[Environment]) -> EnvironmentLabels {
    envs.iter()
        .map(|e| (e.rules.key.clone(), e.clone()))
        .collect()
}

/// `sha256:` and the first twelve digits, for lists.
pub(super) fn short_digest(digest: &str) -> String {
    match digest.get(..19) {
        Some(head) if digest.len() > 19 => format!("{head}…"),
        _ => digest.to_owned(),
    }
}

/// The pipeline run a deployment came from, linked when it has a web address.
fn pipeline_run(d: &DeploymentRow) -> Option<Link> {
    let provider = d.pipeline_provider.trim();
    let run = d.pipeline_run_id.trim();
    let url = d.pipeline_url.trim();
    let text = match (provider.is_empty(), run.is_empty()) {
        (false, false) => format!("{provider} run {run}"),
        (false, true) => provider.to_owned(),
        (true, false) => format!("Run {run}"),
        (true, true) if !url.is_empty() => "Pipeline run".to_owned(),
        (true, true) => return None,
    };
    Some(Link {
        href: is_web_url(url).then(|| url.to_owned()),
        text,
    })
}

/// A deployment as the pages show it: people by name, states in words.
pub(crate) struct DeploymentLine {
    pub id: Uuid,
    pub number: i64,
    pub change_id: Uuid,
    pub change_number: i64,
    pub change_title: String,
    pub revision: i32,
    pub env: EnvTag,
    pub state: DeploymentState,
    pub artifact_name: String,
    pub artifact_version: String,
    pub digest: String,
    pub short_digest: String,
    pub services: String,
    pub initiator_id: Uuid,
    pub initiator: String,
    pub executor_id: Uuid,
    pub executor: String,
    pub pipeline: Option<Link>,
    pub authorized_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub token_used: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub rolled_back_at: Option<DateTime<Utc>>,
    pub note: String,
}

impl DeploymentLine {
    fn new(d: DeploymentRow, envs: &EnvironmentLabels, people: &People) -> Result<Self, AppError> {
        let name = |id: Uuid, username: &str| {
            people
                .name_of_id(id)
                .unwrap_or_else(|| people.name(username))
        };
        Ok(DeploymentLine {
            state: stored(
                DeploymentState::parse(&d.state),
                "deployment state",
                &d.state,
            )?,
            env: env_tag(envs, &d.environment),
            short_digest: short_digest(&d.artifact_digest),
            services: d.services.join(", "),
            initiator: name(d.initiator_id, &d.initiator),
            executor: name(d.executor_id, &d.executor),
            pipeline: pipeline_run(&d),
            id: d.id,
            number: d.number,
            change_id: d.change_id,
            change_number: d.change_number,
            change_title: d.change_title,
            revision: d.revision,
            artifact_name: d.artifact_name,
            artifact_version: d.artifact_version,
            digest: d.artifact_digest,
            initiator_id: d.initiator_id,
            executor_id: d.executor_id,
            authorized_at: d.authorized_at,
            expires_at: d.expires_at,
            token_used: d.token_used_at.is_some(),
            started_at: d.started_at,
            finished_at: d.finished_at,
            rolled_back_at: d.rolled_back_at,
            note: d.note,
        })
    }

    /// When it last moved.
    pub fn last_at(&self) -> &DateTime<Utc> {
        self.rolled_back_at
            .as_ref()
            .or(self.finished_at.as_ref())
            .or(self.started_at.as_ref())
            .unwrap_or(&self.authorized_at)
    }

    /// Whether a pipeline runs it for the person who initiated it.
    pub fn by_pipeline(&self) -> bool {
        self.initiator_id != self.executor_id
    }

    /// What the time it ended is called, by how it ended.
    pub fn finished_label(&self) -> &'static str {
        match self.state {
            DeploymentState::Expired => "Ran out",
            DeploymentState::Aborted => "Aborted",
            _ => "Finished",
        }
    }

    fn may_report(&self, user: &CurrentUser) -> bool {
        user.id == self.initiator_id || user.id == self.executor_id
    }
}

/// One option of a select whose values are data.
pub(crate) struct Opt {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Deserialize, Default)]
pub(crate) struct ListQuery {
    environment: Option<String>,
    state: Option<String>,
    change: Option<String>,
    service: Option<String>,
    before: Option<String>,
}

#[derive(Template)]
#[template(path = "deployments/list.html")]
struct ListPage {
    layout: Layout,
    env_css: String,
    rows: Vec<DeploymentLine>,
    environments: Vec<Opt>,
    states: Vec<Opt>,
    change: String,
    service: String,
    older: Option<String>,
    newest: Option<String>,
    error: Option<String>,
}

fn given(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// `GET /deployments`: newest first, filtered by environment, state, change
/// and service, an older page at a time.
pub(crate) async fn list(
    viewer: Viewer,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> PageResult {
    let shown = async {
        let q = query.map(|Query(q)| q).unwrap_or_default();
        let pool = &viewer.state.pool;
        let mut conn = pool.acquire().await?;
        let envs = deployments::environments(&mut conn).await?;
        let people = People::load(&mut conn).await?;
        drop(conn);
        let by_key = labels(&envs);
        let environment = given(&q.environment);
        let state = given(&q.state);
        let change = given(&q.change);
        let service = given(&q.service);
        let mut errors: Vec<String> = Vec::new();
        if environment
            .as_ref()
            .is_some_and(|e| !by_key.contains_key(e))
        {
            errors.push("There is no such environment.".into());
        }
        if state
            .as_deref()
            .is_some_and(|s| DeploymentState::parse(s).is_none())
        {
            errors.push("There is no such deployment state.".into());
        }
        let before = match given(&q.before) {
            None => None,
            Some(b) => match b.parse::<i64>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    errors.push("That page of deployments does not exist.".into());
                    None
                }
            },
        };
        let change_id = match &change {
            None => None,
            Some(c) => match changes::resolve_id(pool, c).await {
                Ok(id) => Some(id),
                Err(AppError::NotFound(_)) => {
                    errors.push(format!(
                        "There is no change {c}; name one as CHG-12 or by its number."
                    ));
                    None
                }
                Err(e) => return Err(e),
            },
        };
        let mut rows = Vec::new();
        let mut more = false;
        if errors.is_empty() {
            let filter = DeploymentFilter {
                environment: environment.clone(),
                state: state.clone(),
                change_id,
                service: service.clone(),
                before,
            };
            let limit = i64::try_from(PAGE_SIZE + 1).unwrap_or(i64::MAX);
            let mut found = deployments::list(pool, &filter, limit).await?;
            more = found.len() > PAGE_SIZE;
            found.truncate(PAGE_SIZE);
            for d in found {
                rows.push(DeploymentLine::new(d, &by_key, &people)?);
            }
        }
        let base: Vec<String> = [
            ("environment", &environment),
            ("state", &state),
            ("change", &change),
            ("service", &service),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", urlencode(v))))
        .collect();
        let link = |extra: Option<String>| {
            let mut parts = base.clone();
            parts.extend(extra);
            if parts.is_empty() {
                "/deployments".to_owned()
            } else {
                format!("/deployments?{}", parts.join("&"))
            }
        };
        let state_now = state.clone().unwrap_or_default();
        let env_now = environment.clone().unwrap_or_default();
        let page = ListPage {
            layout: viewer.layout("Deployments"),
            env_css: stylesheet_url(&envs),
            older: rows
                .last()
                .filter(|_| more)
                .map(|d| link(Some(format!("before={}", d.number)))),
            newest: before.map(|_| link(None)),
            rows,
            environments: envs
                .iter()
                .map(|e| Opt {
                    value: e.rules.key.clone(),
                    label: e.rules.label.clone(),
                    selected: e.rules.key == env_now,
                })
                .collect(),
            states: DeploymentState::ALL
                .iter()
                .map(|s| Opt {
                    value: s.as_str().to_owned(),
                    label: s.label().to_owned(),
                    selected: s.as_str() == state_now,
                })
                .collect(),
            change: change.unwrap_or_default(),
            service: service.unwrap_or_default(),
            error: (!errors.is_empty()).then(|| errors.join(" ")),
        };
        Ok::<_, AppError>(render(&page))
    };
    Ok(shown.await?)
}

/// An authorization just issued, shown once.
struct Fresh {
    token: String,
    expires_at: DateTime<Utc>,
}

struct HistoryLine {
    pub at: DateTime<Utc>,
    /// The stored action, kept as `data-action` for scripts and tests.
    pub action: String,
    pub sentence: Sentence,
}

/// A report a deployment's people may make next, as a button.
struct Outcome {
    pub value: &'static str,
    pub label: &'static str,
    pub danger: bool,
}

#[derive(Template)]
#[template(path = "deployments/show.html")]
struct ShowPage {
    layout: Layout,
    env_css: String,
    d: DeploymentLine,
    history: Vec<HistoryLine>,
    fresh: Option<Fresh>,
    may_start: bool,
    start_expired: bool,
    outcomes: Vec<Outcome>,
    outcome_heading: &'static str,
    report_errors: Vec<String>,
}

async fn show_page(
    viewer: &Viewer,
    id: Uuid,
    fresh: Option<Fresh>,
    report_errors: Vec<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let mut conn = viewer.state.pool.acquire().await?;
    let row = cab_db::deployments::find(&mut conn, id)
        .await?
        .ok_or(AppError::NotFound("deployment"))?;
    let envs = deployments::environments(&mut conn).await?;
    let events = cab_db::audit::for_entity(&mut conn, "deployment", &id.to_string()).await?;
    let subjects = Subjects::load(&mut conn, &events).await?;
    drop(conn);
    let d = DeploymentLine::new(row, &labels(&envs), &subjects.people)?;
    let may_report = d.may_report(&viewer.user);
    let next = d.state.next();
    let expired = d.state == DeploymentState::Authorized && d.expires_at <= Utc::now();
    let outcomes = if may_report {
        next.iter()
            .filter_map(|s| {
                match s {
                    DeploymentState::Succeeded => Some(("Succeeded", false)),
                    DeploymentState::Failed => Some(("Failed", true)),
                    DeploymentState::RolledBack => Some(("Rolled back", true)),
                    DeploymentState::Aborted => Some(("Abort", true)),
                    _ => None,
                }
                .map(|(label, danger)| Outcome {
                    value: s.as_str(),
                    label,
                    danger,
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut layout = viewer.layout(format!("DEP-{} to {}", d.number, d.env.label));
    if let Some(f) = &fresh {
        layout.notice = Some(format!(
            "DEP-{}: the gate authorized you to deploy {} to {}. Its authorization is shown below this once; it is valid until {}.",
            d.number,
            cab_domain::change::ChangeKey(d.change_number),
            d.env.label,
            when(&f.expires_at)
        ));
    }
    let page = ShowPage {
        layout,
        env_css: stylesheet_url(&envs),
        history: events
            .iter()
            .map(|e| HistoryLine {
                at: e.occurred_at,
                action: e.action.clone(),
                sentence: subjects.describe(e),
            })
            .collect(),
        may_start: may_report && next.contains(&DeploymentState::Started) && !expired,
        start_expired: may_report && expired,
        outcome_heading: match d.state {
            DeploymentState::Authorized => "Or abort it unstarted",
            DeploymentState::Succeeded => "If it had to be undone",
            _ => "How it ended",
        },
        outcomes,
        report_errors,
        fresh,
        d,
    };
    Ok((status, render(&page)).into_response())
}

/// `GET /deployments/{DEP-n or id}`.
pub(crate) async fn show(viewer: Viewer, Path(raw): Path<String>) -> PageResult {
    let id = deployments::resolve_id(&viewer.state.pool, &raw).await?;
    Ok(show_page(&viewer, id, None, Vec::new(), StatusCode::OK).await?)
}

/// What a refusal or a form's error says, sentence by sentence; `None` for
/// an error that is no answer to the form (it gets the error page).
fn sentences(e: &AppError) -> Option<Vec<String>> {
    match e {
        AppError::Refusals(list) => Some(list.iter().map(|d| d.message.clone()).collect()),
        AppError::Forbidden(d) | AppError::Conflict(d) => Some(vec![d.message.clone()]),
        AppError::Invalid { message, .. } => Some(vec![message.clone()]),
        AppError::Fields(list) => Some(list.iter().map(|(_, m)| m.clone()).collect()),
        _ => None,
    }
}

/// `POST /deployments/{id}/events`: its initiator or executor reports what
/// became of it.
pub(crate) async fn report(
    viewer: Viewer,
    origin: Origin,
    Path(raw): Path<String>,
    Form(form): Form<Pairs>,
) -> PageResult {
    let pool = &viewer.state.pool;
    let id = deployments::resolve_id(pool, &raw).await?;
    let Some(to) = DeploymentState::parse(&value(&form, "state"))
        .filter(|s| !matches!(s, DeploymentState::Authorized | DeploymentState::Expired))
    else {
        let why = "Choose what happened: started, succeeded, failed, rolled back or aborted.";
        return Ok(show_page(
            &viewer,
            id,
            None,
            vec![why.into()],
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await?);
    };
    let token = value(&form, "token");
    let report = Report {
        state: to,
        token: Some(token.trim().to_owned()).filter(|t| !t.is_empty()),
        note: value(&form, "note").trim().to_owned(),
    };
    match deployments::report(pool, &viewer.user, &origin, id, &report).await {
        Ok(row) => Ok(redirect_with(
            &viewer,
            &format!("/deployments/{}", row.id),
            Notice::DeploymentReported {
                number: row.number,
                state: to,
            },
        )),
        Err(e) => match sentences(&e) {
            Some(said) => Ok(show_page(&viewer, id, None, said, e.status()).await?),
            None => Err(e.into()),
        },
    }
}

/// What someone asked the gate from a change's page, and why it said no.
pub(crate) struct DeployAttempt {
    input: DeployInput,
    reasons: Vec<String>,
    errors: FieldErrors,
    pub status: StatusCode,
}

/// The deploy form's fields as submitted.
#[derive(Clone, Default)]
struct DeployInput {
    environment: String,
    revision: String,
    artifact_name: String,
    artifact_version: String,
    digest: String,
    services: String,
}

impl DeployInput {
    fn from_form(form: &Pairs) -> Self {
        DeployInput {
            environment: value(form, "environment").trim().to_owned(),
            revision: value(form, "revision").trim().to_owned(),
            artifact_name: value(form, "artifact_name").trim().to_owned(),
            artifact_version: value(form, "artifact_version").trim().to_owned(),
            digest: value(form, "digest").trim().to_owned(),
            services: value(form, "services"),
        }
    }

    /// The gate request: the person signed in starts and runs it.
    fn request(&self, change_id: Uuid) -> GateRequest {
        GateRequest {
            change: change_id.to_string(),
            // Not a number: the gate names the revision as missing.
            revision: self.revision.parse().unwrap_or(-1),
            environment: self.environment.clone(),
            artifact_name: self.artifact_name.clone(),
            artifact_version: self.artifact_version.clone(),
            artifact_digest: self.digest.clone(),
            services: self
                .services
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            initiator: None,
            ..GateRequest::default()
        }
    }
}

/// One environment in the promotion strip, with its latest deployment of
/// the change.
pub(crate) struct Step {
    pub env: EnvTag,
    pub latest: Option<DeploymentLine>,
}

/// The deploy form on a change's page.
pub(crate) struct DeployForm {
    pub environments: Vec<Opt>,
    pub revision: String,
    pub artifact_name: String,
    pub artifact_version: String,
    pub digest: String,
    pub services: String,
    /// Why the gate refused the last request, in words.
    pub reasons: Vec<String>,
    pub errors: FieldErrors,
    /// The person may deploy below production only.
    pub below_production_only: bool,
}

/// A freeze whose period overlaps a change's planned window.
pub(crate) struct FreezeWarning {
    pub reason: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub scope: String,
}

impl FreezeWarning {
    pub fn sentence(&self) -> String {
        format!(
            "A freeze overlaps the planned window: {}, {}–{} UTC, {}.",
            self.reason.trim(),
            self.from.format("%Y-%m-%d %H:%M"),
            self.to.format("%Y-%m-%d %H:%M"),
            self.scope
        )
    }
}

/// The deployments part of a change's page.
pub(crate) struct DeploySection {
    pub env_css: String,
    pub steps: Vec<Step>,
    pub freezes: Vec<FreezeWarning>,
    pub form: Option<DeployForm>,
}

/// Who may ask the gate from a page: a person who engineers or releases
/// (the gate's `executor_may_deploy`); production takes a release manager.
fn may_deploy(user: &CurrentUser) -> bool {
    !user.is_service && (user.has(Role::Engineer) || user.has(Role::ReleaseManager))
}

/// The freezes among `freezes` that overlap the window and cover the
/// services and one of the target environments (a change names its
/// environments as DEV, PROD…, the environments' keys in lower case).
pub(crate) fn overlapping(
    freezes: &[FreezeRow],
    window: (DateTime<Utc>, DateTime<Utc>),
    services: &[String],
    targets: &[String],
    envs: &EnvironmentLabels,
) -> Vec<FreezeWarning> {
    let (start, end) = window;
    let keys: Vec<String> = if targets.is_empty() {
        vec![String::new()]
    } else {
        targets.iter().map(|t| t.to_lowercase()).collect()
    };
    freezes
        .iter()
        .filter(|f| f.starts_at < end && start < f.ends_at)
        .filter(|f| {
            let rule = Freeze {
                starts_at: f.starts_at,
                ends_at: f.ends_at,
                reason: f.reason.clone(),
                environments: f.environments.clone(),
                services: f.services.clone(),
            };
            keys.iter().any(|k| rule.applies_to(k, services))
        })
        .map(|f| {
            let where_ = if f.environments.is_empty() {
                "all environments".to_owned()
            } else {
                f.environments
                    .iter()
                    .map(|k| env_tag(envs, k).label)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let what = if f.services.is_empty() {
                "all services".to_owned()
            } else {
                format!("services {}", f.services.join(", "))
            };
            FreezeWarning {
                reason: f.reason.clone(),
                from: f.starts_at,
                to: f.ends_at,
                scope: format!("{where_}; {what}"),
            }
        })
        .collect()
}

/// For the CAB queue: what each change's planned window overlaps, as
/// sentences, by change.
pub(crate) async fn freeze_warnings(
    conn: &mut PgConnection,
    change_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<String>>, AppError> {
    let mut out = HashMap::new();
    if change_ids.is_empty() {
        return Ok(out);
    }
    let windows = cab_db::deployments::change_windows(conn, change_ids).await?;
    let Some(earliest) = windows.iter().filter_map(|w| w.window_start).min() else {
        return Ok(out);
    };
    let freezes = cab_db::deployments::freezes_after(conn, earliest).await?;
    if freezes.is_empty() {
        return Ok(out);
    }
    let envs = labels(&deployments::environments(conn).await?);
    for w in windows {
        let (Some(start), Some(end)) = (w.window_start, w.window_end) else {
            continue;
        };
        let found = overlapping(&freezes, (start, end), &w.services, &w.environments, &envs);
        if !found.is_empty() {
            out.insert(
                w.change_id,
                found.iter().map(FreezeWarning::sentence).collect(),
            );
        }
    }
    Ok(out)
}

/// The promotion strip, the freezes over the planned window, and the deploy
/// form (with what the gate last said, if it refused).
pub(crate) async fn deploy_section(
    viewer: &Viewer,
    v: &ChangeView,
    people: &People,
    attempt: Option<DeployAttempt>,
) -> Result<DeploySection, AppError> {
    let mut conn = viewer.state.pool.acquire().await?;
    let envs = deployments::environments(&mut conn).await?;
    let rows = cab_db::deployments::for_change(&mut conn, v.id).await?;
    let c = &v.content;
    let window = match (c.window_start, c.window_end) {
        (Some(s), Some(e)) => Some((s, e)),
        _ => None,
    };
    let freezes = match window {
        Some((start, _)) => cab_db::deployments::freezes_after(&mut conn, start).await?,
        None => Vec::new(),
    };
    drop(conn);
    let by_key = labels(&envs);
    let targets: Vec<String> = c
        .environments
        .iter()
        .map(|e| e.as_str().to_owned())
        .collect();
    let freezes = match window {
        Some(w) => overlapping(&freezes, w, &c.services, &targets, &by_key),
        None => Vec::new(),
    };
    // Newest first: the first of each environment is its latest.
    let mut latest: HashMap<String, DeploymentRow> = HashMap::new();
    for d in rows {
        latest.entry(d.environment.clone()).or_insert(d);
    }
    let mut steps = Vec::with_capacity(envs.len());
    for e in &envs {
        let line = match latest.remove(&e.rules.key) {
            Some(d) => Some(DeploymentLine::new(d, &by_key, people)?),
            None => None,
        };
        steps.push(Step {
            env: env_tag(&by_key, &e.rules.key),
            latest: line,
        });
    }
    let form = deploy_form(viewer, v, &envs, &steps, attempt);
    Ok(DeploySection {
        env_css: stylesheet_url(&envs),
        steps,
        freezes,
        form,
    })
}

fn deploy_form(
    viewer: &Viewer,
    v: &ChangeView,
    envs: &[Environment],
    steps: &[Step],
    attempt: Option<DeployAttempt>,
) -> Option<DeployForm> {
    let user = &viewer.user;
    if !may_deploy(user) && attempt.is_none() {
        return None;
    }
    let release_manager = user.has(Role::ReleaseManager);
    // Production is offered to release managers only; the gate decides.
    let offered = |key: &str| {
        release_manager
            || envs
                .iter()
                .any(|e| e.rules.key == key && !e.rules.production)
    };
    let (input, reasons, errors) = match attempt {
        Some(a) => (a.input, a.reasons, a.errors),
        None => {
            // The artifact last deployed, to promote it further; the next
            // environment offered that it has not succeeded in.
            let last = steps
                .iter()
                .filter_map(|s| s.latest.as_ref())
                .max_by_key(|d| d.number);
            let next = steps
                .iter()
                .filter(|s| offered(&s.env.key))
                .find(|s| {
                    s.latest
                        .as_ref()
                        .is_none_or(|d| d.state != DeploymentState::Succeeded)
                })
                .map(|s| s.env.key.clone())
                .unwrap_or_default();
            let single_service = match v.content.services.as_slice() {
                [one] => one.clone(),
                _ => String::new(),
            };
            (
                DeployInput {
                    environment: next,
                    revision: v.revision.to_string(),
                    artifact_name: last
                        .map(|d| d.artifact_name.clone())
                        .unwrap_or(single_service),
                    artifact_version: last.map(|d| d.artifact_version.clone()).unwrap_or_default(),
                    digest: v.content.artifact_digest.clone(),
                    services: v.content.services.join(", "),
                },
                Vec::new(),
                FieldErrors::default(),
            )
        }
    };
    let environments: Vec<Opt> = envs
        .iter()
        .filter(|e| offered(&e.rules.key) || e.rules.key == input.environment)
        .map(|e| Opt {
            value: e.rules.key.clone(),
            label: e.rules.label.clone(),
            selected: e.rules.key == input.environment,
        })
        .collect();
    if environments.is_empty() {
        return None;
    }
    Some(DeployForm {
        environments,
        revision: input.revision,
        artifact_name: input.artifact_name,
        artifact_version: input.artifact_version,
        digest: input.digest,
        services: input.services,
        reasons,
        errors,
        below_production_only: !release_manager && envs.iter().any(|e| e.rules.production),
    })
}

/// `POST /changes/{id}/deployments`: the person signed in asks the gate to
/// deploy the change, as both who starts it and who runs it. Authorized,
/// the deployment's page answers with the authorization, shown this once
/// (it is never kept in a cookie or anywhere else); refused, the change's
/// page again with every reason beside the form.
pub(crate) async fn authorize(
    viewer: Viewer,
    origin: Origin,
    Path(raw): Path<String>,
    Form(form): Form<Pairs>,
) -> PageResult {
    let pool = &viewer.state.pool;
    let change_id = changes::resolve_id(pool, &raw).await?;
    let input = DeployInput::from_form(&form);
    let req = input.request(change_id);
    match deployments::authorize(pool, &viewer.state.keys, &viewer.user, &origin, &req).await {
        Ok(a) => {
            let fresh = Fresh {
                token: a.token,
                expires_at: a.deployment.expires_at,
            };
            let id = a.deployment.id;
            // The page is the deployment's, whatever address it answers.
            let mut viewer = viewer;
            viewer.path = format!("/deployments/{id}");
            let mut resp =
                show_page(&viewer, id, Some(fresh), Vec::new(), StatusCode::CREATED).await?;
            if let Ok(v) = HeaderValue::from_str(&format!("/deployments/{id}")) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            Ok(resp)
        }
        Err(e) => {
            let status = e.status();
            let (reasons, errors) = match e {
                AppError::Refusals(list) => (
                    list.into_iter().map(|d| d.message).collect(),
                    FieldErrors::default(),
                ),
                AppError::Forbidden(d) => (vec![d.message], FieldErrors::default()),
                e @ (AppError::Invalid { .. } | AppError::Fields(_)) => {
                    (Vec::new(), FieldErrors::absorb(e, "environment")?)
                }
                other => return Err(other.into()),
            };
            let v = changes::load(pool, change_id).await?;
            let attempt = DeployAttempt {
                input,
                reasons,
                errors,
                status,
            };
            Ok(
                super::changes::detail_page_with(&viewer, v, FieldErrors::default(), Some(attempt))
                    .await?,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_readable_on_their_colour() {
        for dark in ["#1d4ed8", "#047857", "#92400e", "#b91c1c", "#000000"] {
            assert_eq!(text_on(dark), "#ffffff", "{dark}");
        }
        for light in ["#ffffff", "#fde68a", "#a7f3d0"] {
            assert_eq!(text_on(light), "#111111", "{light}");
        }
    }

    #[test]
    fn only_stored_colours_and_keys_reach_the_stylesheet() {
        assert!(is_colour("#1d4ed8"));
        for bad in ["#1D4ED8", "1d4ed8", "#1d4ed", "#1d4ed8;}", "red"] {
            assert!(!is_colour(bad), "{bad}");
        }
        assert!(is_key("prod") && is_key("eu-west-2"));
        for bad in ["", "Prod", "a b", "x{", &"a".repeat(21)] {
            assert!(!is_key(bad), "{bad}");
        }
    }

    #[test]
    fn a_digest_is_shortened_to_twelve_digits() {
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(short_digest(&d), "sha256:abababababab…");
        assert_eq!(short_digest("sha256:ab"), "sha256:ab");
    }
}
