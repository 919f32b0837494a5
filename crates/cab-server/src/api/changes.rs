//! Change requests over the API: the same operations as the pages.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use cab_db::changes::{ChangeFilter, ChangeSummary, Cursor, Sort};
use cab_domain::change::{
    Category, ChangeAction, ChangeContent, ChangeKey, ChangeState, ChangeType, Environment,
    TestLevels,
};
use cab_domain::risk::{RiskAnswers, RiskLevel};
use cab_domain::text;
use chrono::{DateTime, FixedOffset, Offset, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::idempotency::IdempotencyKey;
use super::{ApiPath, AppJson};
use crate::auth::ApiUser;
use crate::changes::{self, ChangeView};
use crate::error::{ApiError, ApiResult, AppError, Problem};
use crate::request::Origin;
use crate::state::AppState;
use crate::vocab;

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowIo {
    /// RFC 3339 with an offset, e.g. `2026-12-01T10:00:00+01:00`; stored in UTC.
    pub start: Option<DateTime<FixedOffset>>,
    pub end: Option<DateTime<FixedOffset>>,
    /// The zone the window is planned in, for display (defaults to the start's offset).
    pub time_zone: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinksIo {
    #[serde(default)]
    pub pull_request: String,
    #[serde(default)]
    pub commit_sha: String,
    /// e.g. `sha256:<hex>`
    #[serde(default)]
    pub artifact_digest: String,
}

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestLevelsIo {
    #[serde(default)]
    pub unit: bool,
    #[serde(default)]
    pub integration: bool,
    #[serde(default)]
    pub system: bool,
    #[serde(default)]
    pub acceptance: bool,
}

/// The engineer's risk answers; impact and likelihood from 1 to 4.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RiskAnswersIo {
    pub impact: i16,
    pub likelihood: i16,
    #[serde(default)]
    pub touches_production_data: bool,
    #[serde(default)]
    pub customer_facing: bool,
    #[serde(default)]
    pub changes_security_control: bool,
    #[serde(default)]
    pub rollback_untested: bool,
    #[serde(default)]
    pub outside_usual_window: bool,
}

/// What a client writes. On create, absent fields take their defaults; on
/// PATCH, only the fields present change (objects are replaced whole).
/// Fields the server owns (state, number, author, risk level, revision,
/// timestamps) are refused.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeInput {
    pub title: Option<String>,
    pub description: Option<String>,
    pub justification: Option<String>,
    /// standard, normal (default) or emergency
    #[serde(rename = "type")]
    pub change_type: Option<String>,
    /// feature (default), bug_fix, security_patch, configuration, infrastructure, dependency_update
    pub category: Option<String>,
    /// low, medium (default), high, urgent
    pub priority: Option<String>,
    pub services: Option<Vec<String>>,
    /// Any of DEV, TEST, STAGE, PROD
    pub environments: Option<Vec<String>>,
    pub implementation_plan: Option<String>,
    pub test_plan: Option<String>,
    pub test_levels: Option<TestLevelsIo>,
    pub test_evidence: Option<Vec<String>>,
    pub rollback_plan: Option<String>,
    pub window: Option<WindowIo>,
    pub links: Option<LinksIo>,
    /// Usernames of people who worked on the change with the author.
    pub contributors: Option<Vec<String>>,
    pub risk: Option<RiskAnswersIo>,
    /// On create only: an approved standard-change template to make the
    /// change from (its plans and risk are imposed; it is approved on submission).
    pub template: Option<Uuid>,
    /// On create only, and required when a pipeline (service account) files
    /// the change: the username of the person it is filed for. That person
    /// is the change's author and can never approve it.
    pub on_behalf_of: Option<String>,
}

/// A new draft's starting point: risk unanswered, so it must be answered.
pub fn blank_content() -> ChangeContent {
    ChangeContent::blank()
}

impl ChangeInput {
    pub fn apply(self, mut c: ChangeContent) -> Result<ChangeContent, AppError> {
        if self.template.is_some() {
            return Err(AppError::invalid(
                "template",
                "A change's template is chosen when it is filed and cannot change.",
            ));
        }
        if self.on_behalf_of.is_some() {
            return Err(AppError::invalid(
                "on_behalf_of",
                "A change's author is set when it is filed and cannot change.",
            ));
        }
        if let Some(v) = self.title {
            c.title = v;
        }
        if let Some(v) = self.description {
            c.description = v;
        }
        if let Some(v) = self.justification {
            c.justification = v;
        }
        if let Some(v) = self.change_type {
            c.change_type = vocab::word("type", &v)?;
        }
        if let Some(v) = self.category {
            c.category = vocab::word("category", &v)?;
        }
        if let Some(v) = self.priority {
            c.priority = vocab::word("priority", &v)?;
        }
        if let Some(v) = self.services {
            c.services = v;
        }
        if let Some(v) = self.environments {
            c.environments = v
                .iter()
                .map(|e| vocab::word::<Environment>("environments", e))
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = self.implementation_plan {
            c.implementation_plan = v;
        }
        if let Some(v) = self.test_plan {
            c.test_plan = v;
        }
        if let Some(v) = self.test_levels {
            c.test_levels = TestLevels {
                unit: v.unit,
                integration: v.integration,
                system: v.system,
                acceptance: v.acceptance,
            };
        }
        if let Some(v) = self.test_evidence {
            c.test_evidence = v;
        }
        if let Some(v) = self.rollback_plan {
            c.rollback_plan = v;
        }
        if let Some(w) = self.window {
            c.window_tz = w
                .time_zone
                .filter(|z| !z.trim().is_empty())
                .or_else(|| w.start.map(|s| s.offset().to_string()))
                .unwrap_or_else(|| "UTC".into());
            c.window_start = w.start.map(|t| t.with_timezone(&Utc));
            c.window_end = w.end.map(|t| t.with_timezone(&Utc));
        }
        if let Some(l) = self.links {
            c.pr_url = l.pull_request;
            c.commit_sha = l.commit_sha;
            c.artifact_digest = l.artifact_digest;
        }
        if let Some(v) = self.contributors {
            c.contributors = v;
        }
        if let Some(r) = self.risk {
            c.risk = RiskAnswers {
                impact: r.impact,
                likelihood: r.likelihood,
                touches_production_data: r.touches_production_data,
                customer_facing: r.customer_facing,
                changes_security_control: r.changes_security_control,
                rollback_untested: r.rollback_untested,
                outside_usual_window: r.outside_usual_window,
            };
        }
        Ok(c)
    }
}

#[derive(Serialize, ToSchema)]
pub struct RiskOut {
    /// low, medium, high or critical, computed by the server.
    level: String,
    /// What drove the level.
    reasons: Vec<String>,
    /// Version of the risk rules that computed it.
    version: i32,
    answers: RiskAnswersIo,
}

#[derive(Serialize, ToSchema)]
pub struct ChangeOut {
    id: Uuid,
    /// CHG-<number>
    key: String,
    number: i64,
    state: String,
    author: String,
    contributors: Vec<String>,
    /// 0 while a draft; 1 at submission; each later edit adds one.
    revision: i32,
    risk: RiskOut,
    title: String,
    description: String,
    justification: String,
    #[serde(rename = "type")]
    change_type: String,
    category: String,
    priority: String,
    services: Vec<String>,
    environments: Vec<String>,
    implementation_plan: String,
    test_plan: String,
    test_levels: TestLevelsIo,
    test_evidence: Vec<String>,
    rollback_plan: String,
    window: WindowIo,
    links: LinksIo,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    submitted_at: Option<DateTime<Utc>>,
    /// The standard-change template it was made from.
    template: Option<Uuid>,
}

impl From<ChangeView> for ChangeOut {
    fn from(v: ChangeView) -> Self {
        let c = v.content;
        let utc = Utc.fix();
        ChangeOut {
            id: v.id,
            key: ChangeKey(v.number).to_string(),
            number: v.number,
            state: v.state.as_str().into(),
            author: v.author,
            contributors: v.contributors.into_iter().map(|(_, u)| u).collect(),
            revision: v.revision,
            risk: RiskOut {
                level: v.risk_level.as_str().into(),
                reasons: v.risk_reasons,
                version: v.risk_version,
                answers: RiskAnswersIo {
                    impact: c.risk.impact,
                    likelihood: c.risk.likelihood,
                    touches_production_data: c.risk.touches_production_data,
                    customer_facing: c.risk.customer_facing,
                    changes_security_control: c.risk.changes_security_control,
                    rollback_untested: c.risk.rollback_untested,
                    outside_usual_window: c.risk.outside_usual_window,
                },
            },
            title: c.title,
            description: c.description,
            justification: c.justification,
            change_type: c.change_type.as_str().into(),
            category: c.category.as_str().into(),
            priority: c.priority.as_str().into(),
            services: c.services,
            environments: c
                .environments
                .iter()
                .map(|e| e.as_str().to_owned())
                .collect(),
            implementation_plan: c.implementation_plan,
            test_plan: c.test_plan,
            test_levels: TestLevelsIo {
                unit: c.test_levels.unit,
                integration: c.test_levels.integration,
                system: c.test_levels.system,
                acceptance: c.test_levels.acceptance,
            },
            test_evidence: c.test_evidence,
            rollback_plan: c.rollback_plan,
            window: WindowIo {
                start: c.window_start.map(|t| t.with_timezone(&utc)),
                end: c.window_end.map(|t| t.with_timezone(&utc)),
                time_zone: Some(c.window_tz),
            },
            links: LinksIo {
                pull_request: c.pr_url,
                commit_sha: c.commit_sha,
                artifact_digest: c.artifact_digest,
            },
            created_at: v.created_at,
            updated_at: v.updated_at,
            submitted_at: v.submitted_at,
            template: v.template_id,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ChangeSummaryOut {
    id: Uuid,
    key: String,
    title: String,
    state: String,
    #[serde(rename = "type")]
    change_type: String,
    category: String,
    priority: String,
    risk_level: String,
    services: Vec<String>,
    environments: Vec<String>,
    author: String,
    window_start: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

impl From<ChangeSummary> for ChangeSummaryOut {
    fn from(s: ChangeSummary) -> Self {
        ChangeSummaryOut {
            id: s.id,
            key: ChangeKey(s.number).to_string(),
            title: s.title,
            state: s.state,
            change_type: s.change_type,
            category: s.category,
            priority: s.priority,
            risk_level: s.risk_level,
            services: s.services,
            environments: s.environments,
            author: s.author,
            window_start: s.window_start,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ChangePage {
    items: Vec<ChangeSummaryOut>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next_cursor: Option<String>,
}

/// Filters shared by the change list page and the API.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub state: Option<String>,
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub change_type: Option<String>,
    pub risk: Option<String>,
    pub category: Option<String>,
    pub service: Option<String>,
    /// Author's username.
    pub author: Option<String>,
    /// `true`: only changes I wrote or contributed to.
    pub mine: Option<String>,
    /// Words to find in titles and descriptions (web search syntax).
    pub q: Option<String>,
    /// newest (default), oldest, updated, window, risk
    pub sort: Option<String>,
    pub cursor: Option<String>,
    /// 1 to 200, default 50.
    pub limit: Option<i64>,
}

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_ref()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// A filter word as sent, once it is known to be one of `T`'s words.
fn known<T: cab_domain::Vocabulary>(
    field: &str,
    v: Option<String>,
) -> Result<Option<String>, AppError> {
    v.map(|v| {
        vocab::word_or::<T>(field, &v, |raw| {
            format!("{} is not a known {field}.", text::quoted(raw))
        })
        .map(|_| v)
    })
    .transpose()
}

impl ListQuery {
    /// The store's filter; unknown values are errors naming the parameter.
    pub fn filter(&self, me: Uuid) -> Result<ChangeFilter, AppError> {
        Ok(ChangeFilter {
            state: known::<ChangeState>("state", nonempty(&self.state))?,
            change_type: known::<ChangeType>("type", nonempty(&self.change_type))?,
            risk: known::<RiskLevel>("risk", nonempty(&self.risk))?,
            category: known::<Category>("category", nonempty(&self.category))?,
            service: nonempty(&self.service).map(|s| s.to_lowercase()),
            author: nonempty(&self.author).map(|s| s.to_lowercase()),
            involving: matches!(self.mine.as_deref(), Some("true" | "on" | "1")).then_some(me),
            text: nonempty(&self.q).map(|q| q.chars().take(200).collect()),
            sort: match nonempty(&self.sort) {
                None => Sort::default(),
                Some(s) => Sort::parse(&s).ok_or_else(|| {
                    AppError::invalid("sort", format!("{} is not a known sort.", text::quoted(&s)))
                })?,
            },
            after: match nonempty(&self.cursor) {
                None => None,
                Some(c) => Some(
                    Cursor::decode(&c)
                        .ok_or_else(|| AppError::invalid("cursor", "This cursor is not valid."))?,
                ),
            },
        })
    }

    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(50).clamp(1, 200)
    }
}

/// Lists a page and the cursor of the next one. A search for a control
/// character finds nothing, since no stored text holds one.
pub async fn page(
    state: &AppState,
    filter: &ChangeFilter,
    limit: i64,
) -> Result<(Vec<ChangeSummary>, Option<String>), AppError> {
    let searched = [&filter.text, &filter.service, &filter.author];
    if searched
        .into_iter()
        .flatten()
        .any(|s| !text::is_searchable(s))
    {
        return Ok((Vec::new(), None));
    }
    let mut conn = state.pool.acquire().await?;
    let mut rows = cab_db::changes::list(&mut conn, filter, limit + 1).await?;
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.cursor(filter.sort).encode())
    } else {
        None
    };
    Ok((rows, next))
}

/// List change requests, filtered and sorted, a page at a time.
#[utoipa::path(
    get, path = "/api/v1/changes", tag = "changes",
    params(ListQuery),
    responses((status = 200, body = ChangePage), (status = 401, body = Problem), (status = 422, body = Problem))
)]
pub async fn list_changes(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<ChangePage>> {
    let Query(query) = query.map_err(|e| AppError::invalid("query", e.body_text()))?;
    let filter = query.filter(user.id)?;
    let (rows, next_cursor) = page(&state, &filter, query.limit()).await?;
    Ok(Json(ChangePage {
        items: rows.into_iter().map(ChangeSummaryOut::from).collect(),
        next_cursor,
    }))
}

/// File a new change request as a draft. The caller is its author.
#[utoipa::path(
    post, path = "/api/v1/changes", tag = "changes",
    params(IdempotencyKey),
    request_body = ChangeInput,
    responses(
        (status = 201, body = ChangeOut),
        (status = 403, description = "Not an engineer", body = Problem),
        (status = 422, description = "Invalid fields, each named", body = Problem),
    )
)]
#[tracing::instrument(skip_all, err(level = "warn"))]
pub async fn create_change(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    AppJson(mut body): AppJson<ChangeInput>,
) -> ApiResult<(StatusCode, Json<ChangeOut>)> {
    let template = body.template.take();
    let on_behalf_of = body.on_behalf_of.take();
    let content = body.apply(blank_content())?;
    let created = changes::create_for(
        &state.pool,
        &user,
        &origin,
        content,
        template,
        on_behalf_of.as_deref(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

async fn resolve(state: &AppState, raw: &str) -> Result<Uuid, ApiError> {
    Ok(changes::resolve_id(&state.pool, raw).await?)
}

/// One change request (by id or CHG-number).
#[utoipa::path(
    get, path = "/api/v1/changes/{id}", tag = "changes",
    params(("id" = String, Path, description = "UUID or CHG-<number>")),
    responses((status = 200, body = ChangeOut), (status = 404, body = Problem))
)]
pub async fn get_change(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ChangeOut>> {
    let id = resolve(&state, &id).await?;
    Ok(Json(changes::load(&state.pool, id).await?.into()))
}

/// Edit a change. After submission every edit is a new revision.
#[utoipa::path(
    patch, path = "/api/v1/changes/{id}", tag = "changes",
    params(("id" = String, Path, description = "UUID or CHG-<number>")),
    request_body = ChangeInput,
    responses(
        (status = 200, body = ChangeOut),
        (status = 403, description = "Not the author or a contributor", body = Problem),
        (status = 409, description = "The change is closed", body = Problem),
        (status = 422, body = Problem),
    )
)]
#[tracing::instrument(skip_all, err(level = "warn"))]
pub async fn patch_change(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<String>,
    AppJson(body): AppJson<ChangeInput>,
) -> ApiResult<Json<ChangeOut>> {
    let id = resolve(&state, &id).await?;
    // Strangers are refused under the row lock, before the body is applied.
    Ok(Json(
        changes::edit_with(&state.pool, &user, &origin, id, |latest| body.apply(latest))
            .await?
            .into(),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionBody {
    /// Why; required to cancel.
    reason: Option<String>,
}

fn reason_from(body: &Bytes) -> Result<Option<String>, AppError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice::<TransitionBody>(body)
        .map(|b| b.reason)
        .map_err(|e| AppError::invalid("body", e.to_string()))
}

async fn transition(
    state: AppState,
    origin: Origin,
    user: crate::auth::CurrentUser,
    id: String,
    action: ChangeAction,
    body: Bytes,
) -> ApiResult<Json<ChangeOut>> {
    let id = resolve(&state, &id).await?;
    let reason = reason_from(&body)?;
    Ok(Json(
        changes::transition(&state.pool, &user, &origin, id, action, reason)
            .await?
            .into(),
    ))
}

/// Submit a draft. Refused, naming each field, while it is incomplete.
#[utoipa::path(
    post, path = "/api/v1/changes/{id}/submit", tag = "changes",
    params(("id" = String, Path)),
    responses((status = 200, body = ChangeOut), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem))
)]
pub async fn submit_change(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<String>,
    body: Bytes,
) -> ApiResult<Json<ChangeOut>> {
    transition(state, origin, user, id, ChangeAction::Submit, body).await
}

/// Withdraw a change (its author or a contributor, before a decision).
#[utoipa::path(
    post, path = "/api/v1/changes/{id}/withdraw", tag = "changes",
    params(("id" = String, Path)),
    request_body(content = TransitionBody, description = "Optional"),
    responses((status = 200, body = ChangeOut), (status = 403, body = Problem), (status = 409, body = Problem))
)]
pub async fn withdraw_change(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<String>,
    body: Bytes,
) -> ApiResult<Json<ChangeOut>> {
    transition(state, origin, user, id, ChangeAction::Withdraw, body).await
}

/// Cancel a change (CAB members, release managers, administrators), with a reason.
#[utoipa::path(
    post, path = "/api/v1/changes/{id}/cancel", tag = "changes",
    params(("id" = String, Path)),
    request_body = TransitionBody,
    responses((status = 200, body = ChangeOut), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem))
)]
pub async fn cancel_change(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<String>,
    body: Bytes,
) -> ApiResult<Json<ChangeOut>> {
    transition(state, origin, user, id, ChangeAction::Cancel, body).await
}

#[derive(Serialize, ToSchema)]
pub struct FieldChangeOut {
    field: String,
    before: String,
    after: String,
}

#[derive(Serialize, ToSchema)]
pub struct RevisionOut {
    number: i32,
    created_at: DateTime<Utc>,
    created_by: String,
    risk_level: String,
    /// What differs from the revision before (empty for the first).
    diff: Vec<FieldChangeOut>,
}

/// The revisions of a submitted change, newest first.
#[utoipa::path(
    get, path = "/api/v1/changes/{id}/revisions", tag = "changes",
    params(("id" = String, Path)),
    responses((status = 200, body = Vec<RevisionOut>), (status = 404, body = Problem))
)]
pub async fn list_revisions(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<RevisionOut>>> {
    let id = resolve(&state, &id).await?;
    changes::load(&state.pool, id).await?;
    let mut conn = state.pool.acquire().await?;
    let revisions = cab_db::changes::revisions(&mut conn, id).await?;
    Ok(Json(
        revisions
            .into_iter()
            .map(|r| RevisionOut {
                number: r.number,
                created_at: r.created_at,
                created_by: r.created_by,
                risk_level: r.risk_level,
                diff: serde_json::from_value::<Vec<cab_domain::change::FieldChange>>(r.diff)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|f| FieldChangeOut {
                        field: f.field,
                        before: f.before,
                        after: f.after,
                    })
                    .collect(),
            })
            .collect(),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct CommentOut {
    id: Uuid,
    author: String,
    body: String,
    created_at: DateTime<Utc>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewComment {
    body: String,
}

/// The discussion on a change, oldest first.
#[utoipa::path(
    get, path = "/api/v1/changes/{id}/comments", tag = "changes",
    params(("id" = String, Path)),
    responses((status = 200, body = Vec<CommentOut>), (status = 404, body = Problem))
)]
pub async fn list_comments(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<CommentOut>>> {
    let id = resolve(&state, &id).await?;
    changes::load(&state.pool, id).await?;
    let mut conn = state.pool.acquire().await?;
    let comments = cab_db::changes::comments(&mut conn, id).await?;
    Ok(Json(
        comments
            .into_iter()
            .map(|c| CommentOut {
                id: c.id,
                author: c.author,
                body: c.body,
                created_at: c.created_at,
            })
            .collect(),
    ))
}

/// A comment as `add_comment` answers with it, read back by its id.
pub(super) async fn comment_out(state: &AppState, id: Uuid) -> Result<CommentOut, AppError> {
    let mut conn = state.pool.acquire().await?;
    let c = cab_db::changes::comment(&mut conn, id)
        .await?
        .ok_or(AppError::NotFound("comment"))?;
    Ok(CommentOut {
        id: c.id,
        author: c.author,
        body: c.body,
        created_at: c.created_at,
    })
}

/// Comment on a change.
#[utoipa::path(
    post, path = "/api/v1/changes/{id}/comments", tag = "changes",
    params(("id" = String, Path), IdempotencyKey),
    request_body = NewComment,
    responses((status = 201, body = CommentOut), (status = 404, body = Problem), (status = 422, body = Problem))
)]
pub async fn add_comment(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<String>,
    AppJson(body): AppJson<NewComment>,
) -> ApiResult<(StatusCode, Json<CommentOut>)> {
    let id = resolve(&state, &id).await?;
    let comment_id = changes::comment(&state.pool, &user, &origin, id, &body.body).await?;
    Ok((
        StatusCode::CREATED,
        Json(CommentOut {
            id: comment_id,
            author: user.username,
            body: body.body.trim().to_owned(),
            created_at: Utc::now(),
        }),
    ))
}
