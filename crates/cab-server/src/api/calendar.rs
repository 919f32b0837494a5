//! The change calendar over the API: what is planned in a period, the
//! conflicts a window runs into and the free windows nearby, the services'
//! maintenance periods, the limit on production changes per hour, and
//! people's calendar feeds.
//!
//! Conflicts are worked out from the records on every request, so a freeze
//! or another change's window shows at once, and goes again once it is out
//! of the way.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use cab_db::calendar::{CalendarFilter, FeedRow};
use cab_domain::calendar::Window;
use cab_domain::change::{ChangeKey, ChangeState, Environment, normalize_service};
use cab_domain::risk::RiskLevel;
use cab_domain::text::quoted;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{ApiPath, AppJson};
use crate::auth::ApiUser;
use crate::calendar::{self, Checked, NewPeriod, Subject};
use crate::changes;
use crate::error::{ApiResult, AppError, Problem};
use crate::request::Origin;
use crate::state::AppState;

/// The longest period one calendar request may cover: a quarter.
const PERIOD_MAX_DAYS: i64 = 92;
/// The longest window the conflict check takes: a month.
const WINDOW_MAX_DAYS: i64 = 31;
/// The most services one proposed window may name.
const SERVICES_MAX: usize = 20;

type QueryResult<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

fn read_query<T>(query: QueryResult<T>) -> Result<T, AppError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| AppError::invalid("query", e.body_text()))
}

/// A time from the query string, naming the field when it is missing or
/// not a time.
fn time(field: &str, raw: Option<&str>) -> Result<DateTime<Utc>, AppError> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Err(AppError::invalid(
            field,
            "Give a time in RFC 3339, e.g. 2026-12-01T09:00:00Z.",
        ));
    };
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            AppError::invalid(
                field,
                format!(
                    "{} is not an RFC 3339 time: write it like 2026-12-01T09:00:00Z (in a URL, an offset's + as %2B).",
                    quoted(raw)
                ),
            )
        })
}

/// The words of a comma-separated list, trimmed, empty ones left out.
fn list(raw: Option<&str>) -> impl Iterator<Item = &str> {
    raw.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
}

fn environment_words() -> String {
    Environment::ALL
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------
// What is planned in a period

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CalendarQuery {
    /// The period's start, RFC 3339 (e.g. `2026-12-01T00:00:00Z`).
    #[param(required = true, format = DateTime)]
    from: Option<String>,
    /// The period's end, excluded: after `from`, at most 92 days on.
    #[param(required = true, format = DateTime)]
    to: Option<String>,
    /// Only what touches this service.
    service: Option<String>,
    /// Only what targets this environment: DEV, TEST, STAGE or PROD.
    environment: Option<String>,
    /// Only changes (and their deployments) of this risk level: low,
    /// medium, high or critical.
    risk: Option<String>,
    /// Only changes (and their deployments) in this state, e.g. `approved`.
    /// Rejected, withdrawn and cancelled changes are shown only when asked
    /// for this way; drafts never are.
    state: Option<String>,
}

/// A change's planned window.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CalendarChange {
    /// CHG-<number>
    key: String,
    id: Uuid,
    title: String,
    /// The change's state, e.g. `in_cab_review`.
    state: String,
    state_label: String,
    /// low, medium, high or critical
    risk: String,
    risk_label: String,
    services: Vec<String>,
    /// The environments it targets, in the change's words: DEV, TEST,
    /// STAGE, PROD.
    environments: Vec<String>,
    window_start: DateTime<Utc>,
    window_end: DateTime<Utc>,
    /// The change's current revision.
    revision: i32,
    /// The change's page, relative to the server: `/changes/CHG-<number>`.
    url: String,
}

/// A deployment, from its start to its end.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CalendarDeployment {
    /// DEP-<number>
    key: String,
    id: Uuid,
    /// The change deployed: CHG-<number>.
    change: String,
    change_title: String,
    /// The environment's key, e.g. `prod`.
    environment: String,
    /// started, succeeded, failed, rolled_back or aborted
    state: String,
    services: Vec<String>,
    started_at: DateTime<Utc>,
    /// When it finished; null while it runs.
    finished_at: Option<DateTime<Utc>>,
    /// The deployment's page, relative to the server:
    /// `/deployments/DEP-<number>`.
    url: String,
}

/// A freeze: nothing it covers is deployed while it is in force.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CalendarFreeze {
    id: Uuid,
    reason: String,
    starts_at: DateTime<Utc>,
    /// When it ends, or ended: a lifted freeze ended when it was lifted.
    ends_at: DateTime<Utc>,
    /// The environments' keys; empty: every environment.
    environments: Vec<String>,
    /// The services' names; empty: every service.
    services: Vec<String>,
    /// It was lifted before its planned end.
    lifted: bool,
}

/// One opening of a service's weekly maintenance period: a service that has
/// maintenance periods is changed only inside one of them.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CalendarOpening {
    service: String,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    /// The period in words, e.g. "Tue, Thu 02:00–04:00 UTC".
    described: String,
}

/// A release's milestone.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CalendarMilestone {
    release_id: Uuid,
    /// `REL-<number>`
    release: String,
    name: String,
    version: String,
    /// The release's state: draft, in_review, approved, in_progress, completed.
    state: String,
    /// code_freeze, go_no_go, deployment or hypercare_end.
    milestone: String,
    /// The milestone in words, e.g. "Go/no-go".
    label: String,
    at: DateTime<Utc>,
}

/// Everything on the calendar in [from, to).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CalendarOut {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    /// The planned windows that overlap the period, earliest first. Drafts
    /// are nobody's plan yet and are left out.
    changes: Vec<CalendarChange>,
    /// The deployments that started in the period, earliest first.
    deployments: Vec<CalendarDeployment>,
    /// The freezes in force at some point of the period.
    freezes: Vec<CalendarFreeze>,
    /// The maintenance periods' openings in the period.
    maintenance: Vec<CalendarOpening>,
    /// The milestones of releases in the period (none when narrowed by
    /// risk or state, which are changes' own).
    milestones: Vec<CalendarMilestone>,
    /// The period holds more changes or deployments than one answer
    /// shows (2,000 of a kind): ask for a shorter period or narrow it.
    truncated: bool,
}

/// What is planned in a period: change windows, deployments, freezes and
/// maintenance periods' openings, narrowed by service, environment, risk
/// or state. Open to everyone signed in.
#[utoipa::path(
    get, path = "/api/v1/calendar", tag = "calendar",
    params(CalendarQuery),
    responses(
        (status = 200, body = CalendarOut),
        (status = 401, body = Problem),
        (status = 422, body = Problem, description = "`field` names the parameter at fault")
    )
)]
pub async fn calendar_entries(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
    query: QueryResult<CalendarQuery>,
) -> ApiResult<Json<CalendarOut>> {
    let q = read_query(query)?;
    let from = time("from", q.from.as_deref())?;
    let to = time("to", q.to.as_deref())?;
    if to <= from {
        return Err(AppError::invalid("to", "The period ends after it starts.").into());
    }
    if to - from > Duration::days(PERIOD_MAX_DAYS) {
        return Err(AppError::invalid(
            "to",
            format!("Ask for at most {PERIOD_MAX_DAYS} days at a time."),
        )
        .into());
    }
    let filter = calendar::read_filter(
        q.service.as_deref(),
        q.environment.as_deref(),
        q.risk.as_deref(),
        q.state.as_deref(),
    )?;
    let mut conn = state.pool.acquire().await?;
    let found = calendar::entries(&mut conn, from, to, &filter).await?;
    drop(conn);
    Ok(Json(CalendarOut {
        from,
        to,
        changes: found
            .changes
            .into_iter()
            .map(|c| {
                let key = ChangeKey(c.number).to_string();
                let state_label = ChangeState::parse(&c.state)
                    .map_or_else(|| c.state.clone(), |s| s.label().to_owned());
                let risk_label = RiskLevel::parse(&c.risk_level)
                    .map_or_else(|| c.risk_level.clone(), |r| r.label().to_owned());
                CalendarChange {
                    url: format!("/changes/{key}"),
                    key,
                    id: c.id,
                    title: c.title,
                    state: c.state,
                    state_label,
                    risk: c.risk_level,
                    risk_label,
                    services: c.services,
                    environments: c.environments,
                    window_start: c.window_start,
                    window_end: c.window_end,
                    revision: c.revision,
                }
            })
            .collect(),
        deployments: found
            .deployments
            .into_iter()
            .map(|d| {
                let key = format!("DEP-{}", d.number);
                CalendarDeployment {
                    url: format!("/deployments/{key}"),
                    key,
                    id: d.id,
                    change: ChangeKey(d.change_number).to_string(),
                    change_title: d.change_title,
                    environment: d.environment,
                    state: d.state,
                    services: d.services,
                    started_at: d.started_at,
                    finished_at: d.finished_at,
                }
            })
            .collect(),
        freezes: found
            .freezes
            .into_iter()
            .map(|f| CalendarFreeze {
                id: f.id,
                reason: f.reason,
                starts_at: f.starts_at,
                ends_at: f.ends_at,
                environments: f.environments,
                services: f.services,
                lifted: f.lifted_at.is_some(),
            })
            .collect(),
        maintenance: found
            .openings
            .into_iter()
            .map(|o| CalendarOpening {
                service: o.service,
                starts_at: o.window.start,
                ends_at: o.window.end,
                described: o.described,
            })
            .collect(),
        milestones: found
            .milestones
            .into_iter()
            .map(|m| CalendarMilestone {
                release_id: m.release_id,
                release: m.key,
                name: m.name,
                version: m.version,
                state: m.state.as_str().to_owned(),
                milestone: m.milestone.as_str().to_owned(),
                label: m.milestone.label().to_owned(),
                at: m.at,
            })
            .collect(),
        truncated: found.truncated,
    }))
}

// ---------------------------------------------------------------------------
// Conflicts

/// A period of time, start included, end excluded.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Slot {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl From<Window> for Slot {
    fn from(w: Window) -> Self {
        Slot {
            start: w.start,
            end: w.end,
        }
    }
}

/// Something that stands in the way of a window. Which facts are given
/// depends on `kind`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ConflictOut {
    /// service_overlap (another change to one of the same services, in a
    /// shared environment, overlaps the window), freeze (a freeze covers
    /// part of it), outside_maintenance (a service is changed only within
    /// its maintenance periods, and the window is not wholly inside one),
    /// or busy_hour (an hour of the window would hold more production
    /// changes than the limit).
    kind: String,
    /// The conflict in one sentence, for people.
    sentence: String,
    /// service_overlap: the other change's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    change_id: Option<Uuid>,
    /// service_overlap: the other change's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    number: Option<i64>,
    /// service_overlap: the other change, CHG-<number>.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    /// service_overlap: the other change's title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    title: Option<String>,
    /// service_overlap: the other change's window; freeze: the freeze's
    /// period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    window: Option<Slot>,
    /// service_overlap: the services both changes touch; freeze: the
    /// services it covers (empty: every service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    services: Option<Vec<String>>,
    /// service_overlap: the environments both target (keys, e.g. `prod`);
    /// freeze: the environments it covers (empty: every environment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    environments: Option<Vec<String>>,
    /// freeze: why nothing may be deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// outside_maintenance: the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service: Option<String>,
    /// outside_maintenance: the service's maintenance periods in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    periods: Option<Vec<String>>,
    /// busy_hour: the start of the clock hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hour: Option<DateTime<Utc>>,
    /// busy_hour: how many production changes the hour would hold, this
    /// one included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    count: Option<u32>,
    /// busy_hour: the most production changes one hour may hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit: Option<u32>,
}

/// A window's conflicts, and free windows of the same length nearby.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CheckOut {
    /// Everything that stands in the way of the window, as it stands now;
    /// empty when nothing does.
    conflicts: Vec<ConflictOut>,
    /// When there are conflicts: up to 3 windows of the same length, from
    /// the window's start (or now, if later) within 30 days, that have
    /// none, earliest first. Empty when there are no conflicts.
    free_slots: Vec<Slot>,
    /// A fingerprint of these conflicts: an approving vote that passes it as
    /// `conflicts_digest` accepts exactly these, and is refused if they have
    /// changed since.
    digest: String,
}

impl CheckOut {
    fn none() -> Self {
        CheckOut {
            conflicts: Vec::new(),
            free_slots: Vec::new(),
            digest: calendar::conflicts_digest(&[]),
        }
    }

    fn new(checked: Checked) -> Result<Self, AppError> {
        let conflicts = checked
            .conflicts
            .iter()
            .map(|c| {
                let mut out: ConflictOut = serde_json::from_value(calendar::conflict_json(c))
                    .map_err(|e| AppError::Internal(e.into()))?;
                out.key = out.number.map(|n| ChangeKey(n).to_string());
                Ok(out)
            })
            .collect::<Result<_, AppError>>()?;
        Ok(CheckOut {
            conflicts,
            free_slots: checked.free_slots.into_iter().map(Slot::from).collect(),
            digest: calendar::conflicts_digest(&checked.conflicts),
        })
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CheckQuery {
    /// The window's start, RFC 3339.
    #[param(required = true, format = DateTime)]
    start: Option<String>,
    /// The window's end, excluded: after the start, at most 31 days on.
    #[param(required = true, format = DateTime)]
    end: Option<String>,
    /// The services the change touches, separated by commas (1 to 20),
    /// e.g. `billing,edge-proxy`.
    #[param(required = true)]
    services: Option<String>,
    /// The environments it targets, separated by commas: DEV, TEST, STAGE,
    /// PROD. Left out: every environment.
    environments: Option<String>,
    /// The change the window is for (UUID or CHG-<number>), when it is
    /// saved: its own booking is then no conflict.
    change: Option<String>,
}

fn check_services(raw: Option<&str>) -> Result<Vec<String>, AppError> {
    let mut out: Vec<String> = Vec::new();
    for word in list(raw) {
        let service = normalize_service(word).ok_or_else(|| {
            AppError::invalid(
                "services",
                format!(
                    "{} is not a service name: use lower-case letters, digits, '.', '_' or '-'.",
                    quoted(word)
                ),
            )
        })?;
        if !out.contains(&service) {
            out.push(service);
        }
        if out.len() > SERVICES_MAX {
            return Err(AppError::invalid(
                "services",
                format!("Name at most {SERVICES_MAX} services."),
            ));
        }
    }
    if out.is_empty() {
        return Err(AppError::invalid(
            "services",
            "Name the services the change touches, separated by commas.",
        ));
    }
    Ok(out)
}

fn check_environments(raw: Option<&str>) -> Result<Vec<Environment>, AppError> {
    let mut out = Vec::new();
    for word in list(raw) {
        let env = Environment::parse(&word.to_uppercase()).ok_or_else(|| {
            AppError::invalid(
                "environments",
                format!(
                    "{} is not an environment: choose from {}.",
                    quoted(word),
                    environment_words()
                ),
            )
        })?;
        if !out.contains(&env) {
            out.push(env);
        }
    }
    Ok(out)
}

/// Check a window before filing or moving a change: what stands in its way
/// (other changes to the same services, freezes, maintenance periods, the
/// limit on production changes per hour) and, when something does, the
/// next free windows of the same length. Open to everyone signed in.
#[utoipa::path(
    get, path = "/api/v1/calendar/conflicts", tag = "calendar",
    params(CheckQuery),
    responses(
        (status = 200, body = CheckOut),
        (status = 401, body = Problem),
        (status = 422, body = Problem, description = "`field` names the parameter at fault")
    )
)]
pub async fn check_window(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
    query: QueryResult<CheckQuery>,
) -> ApiResult<Json<CheckOut>> {
    let q = read_query(query)?;
    let start = time("start", q.start.as_deref())?;
    let end = time("end", q.end.as_deref())?;
    let Some(window) = Window::new(start, end) else {
        return Err(AppError::invalid("end", "The window ends after it starts.").into());
    };
    if window.duration() > Duration::days(WINDOW_MAX_DAYS) {
        return Err(AppError::invalid(
            "end",
            format!("A window lasts at most {WINDOW_MAX_DAYS} days."),
        )
        .into());
    }
    let services = check_services(q.services.as_deref())?;
    let environments = check_environments(q.environments.as_deref())?;
    let change_id =
        match q.change.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
            None => None,
            Some(raw) => Some(changes::resolve_id(&state.pool, raw).await.map_err(
                |e| match e {
                    AppError::NotFound(_) => {
                        AppError::invalid("change", format!("No change {}.", quoted(raw)))
                    }
                    other => other,
                },
            )?),
        };
    let subject = Subject {
        change_id,
        window,
        services,
        environments,
    };
    let mut conn = state.pool.acquire().await?;
    let checked = calendar::check(&mut conn, &subject, Utc::now()).await?;
    Ok(Json(CheckOut::new(checked)?))
}

/// The conflicts of a change's planned window, as they stand now, and the
/// next free windows of the same length. Empty while the change holds no
/// window: it has none, or it is closed or deployed. CAB approves a change
/// with conflicts only by acknowledging them (`acknowledge_conflicts` on
/// the vote). Open to everyone signed in.
#[utoipa::path(
    get, path = "/api/v1/changes/{id}/conflicts", tag = "calendar",
    params(("id" = String, Path, description = "UUID or CHG-<number>")),
    responses(
        (status = 200, body = CheckOut),
        (status = 401, body = Problem),
        (status = 404, body = Problem)
    )
)]
pub async fn change_conflicts(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<CheckOut>> {
    let id = changes::resolve_id(&state.pool, &id).await?;
    let change = changes::load(&state.pool, id).await?;
    let Some(subject) = Subject::of_change(&change) else {
        return Ok(Json(CheckOut::none()));
    };
    let mut conn = state.pool.acquire().await?;
    let checked = calendar::check(&mut conn, &subject, Utc::now()).await?;
    Ok(Json(CheckOut::new(checked)?))
}

// ---------------------------------------------------------------------------
// Maintenance periods

/// A maintenance period to add.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeriodIn {
    /// The service's name.
    #[serde(default)]
    service: String,
    /// The days it opens on: 1 (Monday) to 7 (Sunday).
    #[serde(default)]
    #[schema(value_type = Vec<u8>, minimum = 1, maximum = 7)]
    weekdays: Vec<i16>,
    /// When it opens, `HH:MM` in UTC.
    #[serde(default)]
    #[schema(example = "02:00")]
    starts: String,
    /// How long it lasts, in minutes: 15 to 10080 (a week). It may run past
    /// midnight.
    #[serde(default)]
    minutes: i64,
}

/// A service's weekly maintenance period, in UTC.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct PeriodOut {
    id: Uuid,
    service: String,
    /// The days it opens on: 1 (Monday) to 7 (Sunday), in order.
    weekdays: Vec<u8>,
    /// When it opens, `HH:MM` in UTC.
    starts: String,
    /// How long it lasts, in minutes.
    minutes: u32,
    /// The period in words, e.g. "Tue, Thu 02:00–04:00 UTC".
    described: String,
}

fn period_out(v: Value) -> Result<PeriodOut, AppError> {
    serde_json::from_value(v).map_err(|e| AppError::Internal(e.into()))
}

/// A maintenance period as the list shows it, for a retried request.
pub async fn maintenance_period_out(state: &AppState, id: Uuid) -> Result<PeriodOut, AppError> {
    let periods = calendar::periods(&state.pool).await?;
    let Some(one) = periods.into_iter().find(|(p, _)| *p == id) else {
        return Err(AppError::NotFound("maintenance period"));
    };
    let mut json = calendar::periods_json(&[one]);
    period_out(json.pop().unwrap_or_default())
}

/// Every service's maintenance periods, by service. A service that has
/// maintenance periods is changed only within one of them. Open to everyone
/// signed in.
#[utoipa::path(
    get, path = "/api/v1/maintenance-periods", tag = "calendar",
    responses((status = 200, body = Vec<PeriodOut>), (status = 401, body = Problem))
)]
pub async fn list_maintenance_periods(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
) -> ApiResult<Json<Vec<PeriodOut>>> {
    let periods = calendar::periods(&state.pool).await?;
    let out = calendar::periods_json(&periods)
        .into_iter()
        .map(period_out)
        .collect::<Result<_, _>>()?;
    Ok(Json(out))
}

/// Add a maintenance period to a service (release managers and
/// administrators). Audited; a refusal is audited too.
#[utoipa::path(
    post, path = "/api/v1/maintenance-periods", tag = "calendar",
    params(super::idempotency::IdempotencyKey),
    request_body = PeriodIn,
    responses(
        (status = 201, body = PeriodOut),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "release_manager_required"),
        (status = 422, body = Problem, description = "`errors` names every field at fault")
    )
)]
pub async fn add_maintenance_period(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    AppJson(body): AppJson<PeriodIn>,
) -> ApiResult<(StatusCode, Json<PeriodOut>)> {
    let new = NewPeriod {
        service: body.service,
        weekdays: body.weekdays,
        starts: body.starts,
        minutes: body.minutes,
    };
    let added = calendar::add_period(&state.pool, &user, &origin, &new).await?;
    Ok((StatusCode::CREATED, Json(period_out(added)?)))
}

/// The answer to a removal.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Removed {
    /// Always true: the period is gone.
    removed: bool,
}

/// Remove a maintenance period (release managers and administrators).
/// Audited; a refusal is audited too.
#[utoipa::path(
    post, path = "/api/v1/maintenance-periods/{id}/remove", tag = "calendar",
    params(("id" = Uuid, Path, description = "The maintenance period's id")),
    responses(
        (status = 200, body = Removed),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "release_manager_required"),
        (status = 404, body = Problem)
    )
)]
pub async fn remove_maintenance_period(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Removed>> {
    calendar::remove_period(&state.pool, &user, &origin, id).await?;
    Ok(Json(Removed { removed: true }))
}

// ---------------------------------------------------------------------------
// The limit on production changes per hour

/// The calendar's settings.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CalendarSettingsOut {
    /// The most production changes whose windows may touch one clock hour;
    /// null: no limit. A window that would exceed it has a busy_hour
    /// conflict.
    production_per_hour: Option<u32>,
}

/// The calendar's settings to set.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarSettingsIn {
    /// The most production changes whose windows may touch one clock hour,
    /// from 1 to 100; null for no limit. Required, so that leaving it out
    /// never removes the limit by mistake.
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = Option<u32>, required = true, minimum = 1, maximum = 100)]
    production_per_hour: Option<Option<i64>>,
}

/// Tells a field given as null (`Some(None)`) from one left out (`None`).
fn given<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

/// The calendar's settings: the limit on production changes per hour.
/// Open to everyone signed in.
#[utoipa::path(
    get, path = "/api/v1/calendar/settings", tag = "calendar",
    responses((status = 200, body = CalendarSettingsOut), (status = 401, body = Problem))
)]
pub async fn get_calendar_settings(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
) -> ApiResult<Json<CalendarSettingsOut>> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(CalendarSettingsOut {
        production_per_hour: calendar::production_limit(&mut conn).await?,
    }))
}

/// Set or remove the limit on production changes per hour (release managers
/// and administrators). Audited, with the value before and after; a refusal
/// is audited too.
#[utoipa::path(
    put, path = "/api/v1/calendar/settings", tag = "calendar",
    request_body = CalendarSettingsIn,
    responses(
        (status = 200, body = CalendarSettingsOut),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "release_manager_required"),
        (status = 422, body = Problem)
    )
)]
pub async fn put_calendar_settings(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    AppJson(body): AppJson<CalendarSettingsIn>,
) -> ApiResult<Json<CalendarSettingsOut>> {
    let Some(limit) = body.production_per_hour else {
        return Err(AppError::invalid(
            "production_per_hour",
            "Give a number from 1 to 100, or null for no limit.",
        )
        .into());
    };
    let set = calendar::set_production_limit(&state.pool, &user, &origin, limit).await?;
    Ok(Json(CalendarSettingsOut {
        production_per_hour: set,
    }))
}

// ---------------------------------------------------------------------------
// Feeds

/// What a feed is narrowed to; null: not narrowed.
#[derive(Serialize, Deserialize, ToSchema, Default)]
pub struct FeedFilters {
    #[serde(default)]
    service: Option<String>,
    /// DEV, TEST, STAGE or PROD
    #[serde(default)]
    environment: Option<String>,
    /// low, medium, high or critical
    #[serde(default)]
    risk: Option<String>,
    /// A change state, e.g. `approved`.
    #[serde(default)]
    state: Option<String>,
}

/// One of your calendar feeds. Its address is never shown again after it
/// was made.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct FeedOut {
    id: Uuid,
    /// The calendar's name in calendar applications.
    label: String,
    filters: FeedFilters,
    created_at: DateTime<Utc>,
    /// When a calendar application last read it (noted at most every ten
    /// minutes).
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    /// Not revoked: its address answers.
    live: bool,
}

impl From<FeedRow> for FeedOut {
    fn from(f: FeedRow) -> Self {
        FeedOut {
            id: f.id,
            label: f.label,
            // Stored by the server itself; a shape it cannot read shows as
            // no filter rather than failing the whole list.
            filters: serde_json::from_value(f.filters).unwrap_or_default(),
            created_at: f.created_at,
            last_used_at: f.last_used_at,
            live: f.revoked_at.is_none(),
            revoked_at: f.revoked_at,
        }
    }
}

/// A feed just made, with its address: shown this once.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CreatedFeed {
    #[serde(flatten)]
    feed: FeedOut,
    /// The feed's secret address (iCalendar), to subscribe to in a calendar
    /// application. Anyone holding it reads the calendar, so keep it like a
    /// password; only its hash is kept, so it is never shown again. Revoke
    /// the feed if it leaks.
    url: String,
}

/// A feed made again for a retried request, with its address rebuilt from
/// the secret kept sealed with the request's key.
pub async fn created_feed(
    state: &AppState,
    user_id: Uuid,
    id: Uuid,
    secret: &str,
) -> Result<CreatedFeed, AppError> {
    let feed = calendar::feed_of(&state.pool, user_id, id).await?;
    Ok(CreatedFeed {
        feed: feed.into(),
        url: calendar::feed_url(&state.settings.public_url, secret),
    })
}

/// A feed to make.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedIn {
    /// The calendar's name in calendar applications (at most 100
    /// characters); "Change calendar" when left out.
    #[serde(default)]
    label: String,
    /// Only what touches this service.
    #[serde(default)]
    service: Option<String>,
    /// Only what targets this environment: DEV, TEST, STAGE or PROD.
    #[serde(default)]
    environment: Option<String>,
    /// Only changes of this risk level: low, medium, high or critical.
    #[serde(default)]
    risk: Option<String>,
    /// Only changes in this state, e.g. `approved`.
    #[serde(default)]
    state: Option<String>,
}

/// Your calendar feeds, newest first, revoked ones included. Their
/// addresses are not shown: they were shown once, when each was made.
#[utoipa::path(
    get, path = "/api/v1/calendar/feeds", tag = "calendar",
    responses((status = 200, body = Vec<FeedOut>), (status = 401, body = Problem))
)]
pub async fn list_calendar_feeds(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> ApiResult<Json<Vec<FeedOut>>> {
    let feeds = calendar::feeds(&state.pool, &user).await?;
    Ok(Json(feeds.into_iter().map(FeedOut::from).collect()))
}

/// Make a calendar feed: a secret iCalendar address with the change windows
/// and freezes from 90 days back to 400 days ahead, narrowed by the filters,
/// for a calendar application to subscribe to. The answer is the only one
/// that ever shows the address. People only (a service account has no
/// calendar), at most 20 live feeds each. Audited.
#[utoipa::path(
    post, path = "/api/v1/calendar/feeds", tag = "calendar",
    params(super::idempotency::IdempotencyKey),
    request_body = FeedIn,
    responses(
        (status = 201, body = CreatedFeed),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "person_required"),
        (status = 409, body = Problem, description = "too_many_feeds"),
        (status = 422, body = Problem, description = "`field` names the field at fault")
    )
)]
pub async fn create_calendar_feed(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    AppJson(body): AppJson<FeedIn>,
) -> ApiResult<(StatusCode, Json<CreatedFeed>)> {
    let filter: CalendarFilter = calendar::read_filter(
        body.service.as_deref(),
        body.environment.as_deref(),
        body.risk.as_deref(),
        body.state.as_deref(),
    )?;
    let issued = calendar::create_feed(
        &state.pool,
        &state.settings.public_url,
        &user,
        &origin,
        &body.label,
        &filter,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedFeed {
            feed: issued.feed.into(),
            url: issued.url,
        }),
    ))
}

/// Revoke one of your calendar feeds: its address answers 404 from now on.
/// Another person's feed is not found. Audited.
#[utoipa::path(
    post, path = "/api/v1/calendar/feeds/{id}/revoke", tag = "calendar",
    params(("id" = Uuid, Path, description = "The feed's id")),
    responses(
        (status = 200, body = FeedOut),
        (status = 401, body = Problem),
        (status = 404, body = Problem),
        (status = 409, body = Problem, description = "feed_revoked")
    )
)]
pub async fn revoke_calendar_feed(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<FeedOut>> {
    let feed = calendar::revoke_feed(&state.pool, &user, &origin, id).await?;
    Ok(Json(feed.into()))
}
