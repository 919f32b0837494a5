//! The change calendar: what is planned when (change windows, deployments,
//! freezes, services' maintenance periods), the conflicts a window runs
//! into (`cab_domain::calendar`), and people's calendar feeds
//! (`cab_domain::ical`).
//!
//! Conflicts are computed from the records whenever they are asked for, so
//! a freeze or a window added later shows at once on every page that names
//! them. CAB approves a change with conflicts only by acknowledging them
//! (`decisions::vote`), and the acknowledgement is in the trail.

use std::collections::{BTreeSet, HashMap};

use cab_db::calendar::{CalendarFilter, DeploymentSpan, FeedRow, FreezeSpan, WindowRow};
use cab_domain::audit::{Attempt, AuditAction};
use cab_domain::calendar::{
    self as rules, Booked, Conflict, Limits, MaintenancePeriod, Proposal, Window,
};
use cab_domain::change::{ChangeState, Environment, normalize_service};
use cab_domain::deployment::Freeze;
use cab_domain::ical;
use cab_domain::release::{Milestone, ReleasePlan, ReleaseState};
use cab_domain::review::CloseCode;
use cab_domain::risk::RiskLevel;
use cab_domain::{Actor, Denial, Role};
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Timelike, Utc, Weekday};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::audit_log::{self, Entity};
use crate::auth::CurrentUser;
use crate::changes::ChangeView;
use crate::deployments::{self, Environment as EnvironmentRow};
use crate::error::AppError;
use crate::refusal;
use crate::request::Origin;

/// The setting: how many production changes one clock hour may hold (none:
/// no limit).
pub const PRODUCTION_PER_HOUR: &str = "calendar.production_per_hour";
/// How far ahead the next free slots are looked for.
pub const SLOT_HORIZON_DAYS: i64 = 30;
/// How many free slots the conflict check offers.
pub const SLOTS: usize = 3;
/// The most changes a conflict check weighs a window against.
const BOOKED_LIMIT: i64 = 5_000;
/// The most entries of one kind a calendar page or feed shows.
pub const ENTRY_LIMIT: i64 = 2_000;
/// How far back and ahead a feed reaches.
const FEED_PAST_DAYS: i64 = 30;
/// The most past windows a feed carries.
const PAST_LIMIT: i64 = 500;
const FEED_AHEAD_DAYS: i64 = 400;
/// A feed's label, as the database keeps it.
pub const FEED_LABEL_MAX: usize = 100;
/// The most feeds one person keeps live.
const LIVE_FEEDS_MAX: usize = 20;

/// How the calendar is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Month,
    Week,
    List,
}

impl Layout {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "month" => Some(Layout::Month),
            "week" => Some(Layout::Week),
            "list" => Some(Layout::List),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Month => "month",
            Layout::Week => "week",
            Layout::List => "list",
        }
    }

    /// The period shown around `day`: the month's weeks (Monday to Sunday),
    /// the week, or four weeks from the day.
    pub fn period(self, day: NaiveDate) -> (NaiveDate, NaiveDate) {
        match self {
            Layout::Month => {
                let first = day.with_day(1).unwrap_or(day);
                let next = first
                    .checked_add_months(chrono::Months::new(1))
                    .unwrap_or(first);
                let start = monday_of(first);
                let last = next.pred_opt().unwrap_or(next);
                let end = monday_of(last) + Duration::days(7);
                (start, end)
            }
            Layout::Week => {
                let start = monday_of(day);
                (start, start + Duration::days(7))
            }
            Layout::List => (day, day + Duration::days(28)),
        }
    }
}

fn monday_of(day: NaiveDate) -> NaiveDate {
    day - Duration::days(i64::from(day.weekday().num_days_from_monday()))
}

/// Midnight UTC at the start of `day`.
pub fn at_midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

/// Reads the calendar's filters from their words in a URL (or a feed's
/// stored filters); a word that is none of the known ones is an error
/// naming the field, never silently ignored.
pub fn read_filter(
    service: Option<&str>,
    environment: Option<&str>,
    risk: Option<&str>,
    state: Option<&str>,
) -> Result<CalendarFilter, AppError> {
    let service = match present(service) {
        Some(s) => Some(normalize_service(s).ok_or_else(|| {
            AppError::invalid(
                "service",
                "A service name is lower-case letters, digits, dots, dashes and underscores.",
            )
        })?),
        None => None,
    };
    let environment = match present(environment) {
        Some(e) => Some(
            Environment::parse(&e.to_uppercase())
                .ok_or_else(|| {
                    AppError::invalid(
                        "environment",
                        format!(
                            "Choose one of {}.",
                            words(Environment::ALL.iter().map(|e| e.as_str()))
                        ),
                    )
                })?
                .as_str()
                .to_owned(),
        ),
        None => None,
    };
    let risk = match present(risk) {
        Some(r) => Some(
            RiskLevel::parse(r)
                .ok_or_else(|| {
                    AppError::invalid(
                        "risk",
                        format!(
                            "Choose one of {}.",
                            words(RiskLevel::ALL.iter().map(|r| r.as_str()))
                        ),
                    )
                })?
                .as_str()
                .to_owned(),
        ),
        None => None,
    };
    let state = match present(state) {
        Some(s) => Some(
            ChangeState::parse(s)
                .filter(|s| *s != ChangeState::Draft)
                .ok_or_else(|| {
                    AppError::invalid(
                        "state",
                        format!(
                            "Choose one of {}.",
                            words(
                                ChangeState::ALL
                                    .iter()
                                    .filter(|s| **s != ChangeState::Draft)
                                    .map(|s| s.as_str())
                            )
                        ),
                    )
                })?
                .as_str()
                .to_owned(),
        ),
        None => None,
    };
    Ok(CalendarFilter {
        service,
        environment,
        risk,
        state,
    })
}

fn present(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|v| !v.is_empty())
}

fn words<'a>(all: impl Iterator<Item = &'a str>) -> String {
    all.collect::<Vec<_>>().join(", ")
}

/// A filter as a feed keeps it.
pub fn filter_json(f: &CalendarFilter) -> Value {
    json!({ "service": f.service, "environment": f.environment, "risk": f.risk, "state": f.state })
}

fn filter_from_json(v: &Value) -> Result<CalendarFilter, AppError> {
    let get = |k: &str| v.get(k).and_then(Value::as_str);
    read_filter(
        get("service"),
        get("environment"),
        get("risk"),
        get("state"),
    )
}

/// A maintenance period's opening on the calendar.
#[derive(Debug, Clone)]
pub struct Opening {
    pub service: String,
    pub window: Window,
    pub described: String,
}

/// A release's milestone on the calendar.
#[derive(Debug, Clone)]
pub struct ReleaseMilestone {
    pub release_id: Uuid,
    /// `REL-<n>`
    pub key: String,
    pub name: String,
    pub version: String,
    pub state: ReleaseState,
    pub milestone: Milestone,
    pub at: DateTime<Utc>,
}

/// Everything the calendar shows in a period.
#[derive(Debug, Clone, Default)]
pub struct CalendarEntries {
    pub changes: Vec<WindowRow>,
    pub deployments: Vec<DeploymentSpan>,
    pub freezes: Vec<FreezeSpan>,
    pub openings: Vec<Opening>,
    pub milestones: Vec<ReleaseMilestone>,
    /// A kind had more entries than a page shows.
    pub truncated: bool,
}

/// What the calendar shows in [from, to) under `filter`: the change
/// windows (closed ones only when a state asks for them), the deployments
/// that started, the freezes that cover the filter, and the maintenance
/// periods' openings.
pub async fn entries(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    filter: &CalendarFilter,
) -> Result<CalendarEntries, AppError> {
    let include_closed = filter.state.is_some();
    let changes =
        cab_db::calendar::windows(conn, from, to, filter, include_closed, ENTRY_LIMIT).await?;
    let deployments = cab_db::calendar::deployments(conn, from, to, filter, ENTRY_LIMIT).await?;
    let freezes: Vec<FreezeSpan> = cab_db::calendar::freezes(conn, from, to)
        .await?
        .into_iter()
        .filter(|f| freeze_matches(f, filter))
        .collect();
    let periods = cab_db::calendar::maintenance_periods(conn, None).await?;
    let mut openings = Vec::new();
    for row in periods {
        if filter.service.as_ref().is_some_and(|s| *s != row.service) {
            continue;
        }
        let period = maintenance_rule(&row);
        let described = period.describe();
        // An opening that began before the period and runs into it counts.
        let since = from - Duration::minutes(i64::from(period.minutes));
        for w in period.openings(since, to) {
            if w.end > from {
                openings.push(Opening {
                    service: row.service.clone(),
                    window: w,
                    described: described.clone(),
                });
            }
        }
    }
    openings.sort_by(|a, b| (a.window.start, &a.service).cmp(&(b.window.start, &b.service)));
    let milestones = milestones(conn, from, to, filter).await?;
    let truncated = changes.len() as i64 >= ENTRY_LIMIT || deployments.len() as i64 >= ENTRY_LIMIT;
    Ok(CalendarEntries {
        changes,
        deployments,
        freezes,
        openings,
        milestones,
        truncated,
    })
}

/// The milestones of releases in [from, to). A release is on a service's
/// calendar when a change in it names the service, and on an
/// environment's when one of its phases deploys there; risk and state are
/// the changes' own, so a calendar narrowed by them shows no release.
async fn milestones(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    filter: &CalendarFilter,
) -> Result<Vec<ReleaseMilestone>, AppError> {
    if filter.risk.is_some() || filter.state.is_some() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for row in cab_db::releases::with_milestones_in(conn, from, to).await? {
        let (Some(state), Ok(plan)) = (
            ReleaseState::parse(&row.state),
            serde_json::from_value::<ReleasePlan>(row.plan),
        ) else {
            continue;
        };
        if filter
            .service
            .as_ref()
            .is_some_and(|s| !row.services.contains(s))
        {
            continue;
        }
        if filter.environment.as_ref().is_some_and(|e| {
            !plan
                .phases
                .iter()
                .any(|p| p.environment.eq_ignore_ascii_case(e))
        }) {
            continue;
        }
        for (milestone, at) in plan.milestones.all() {
            if from <= at && at < to {
                out.push(ReleaseMilestone {
                    release_id: row.id,
                    key: crate::releases::key(row.number),
                    name: plan.name.clone(),
                    version: plan.version.clone(),
                    state,
                    milestone,
                    at,
                });
            }
        }
    }
    out.sort_by(|a, b| (a.at, &a.key).cmp(&(b.at, &b.key)));
    Ok(out)
}

/// Whether a freeze covers what the filter narrows the calendar to.
fn freeze_matches(f: &FreezeSpan, filter: &CalendarFilter) -> bool {
    let env = filter.environment.as_ref().is_none_or(|e| {
        f.environments.is_empty() || f.environments.iter().any(|k| k.eq_ignore_ascii_case(e))
    });
    let service = filter
        .service
        .as_ref()
        .is_none_or(|s| f.services.is_empty() || f.services.contains(s));
    env && service
}

pub fn maintenance_rule(row: &cab_db::calendar::MaintenanceRow) -> MaintenancePeriod {
    MaintenancePeriod {
        service: row.service.clone(),
        weekdays: row.weekdays.iter().filter_map(|d| weekday(*d)).collect(),
        starts: row.starts,
        minutes: u32::try_from(row.minutes).unwrap_or(0),
    }
}

/// 1 = Monday … 7 = Sunday.
pub fn weekday(n: i16) -> Option<Weekday> {
    match n {
        1 => Some(Weekday::Mon),
        2 => Some(Weekday::Tue),
        3 => Some(Weekday::Wed),
        4 => Some(Weekday::Thu),
        5 => Some(Weekday::Fri),
        6 => Some(Weekday::Sat),
        7 => Some(Weekday::Sun),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Conflicts

/// A window to check: a saved change's, or one proposed through the API.
#[derive(Debug, Clone)]
pub struct Subject {
    pub change_id: Option<Uuid>,
    pub window: Window,
    pub services: Vec<String>,
    /// The change's words for them (`PROD`).
    pub environments: Vec<Environment>,
}

impl Subject {
    /// A change's planned window, while it still holds one: none for a
    /// draft-less window, or once the change is closed or deployed.
    pub fn of_change(v: &ChangeView) -> Option<Subject> {
        if v.state.is_closed() || v.state == ChangeState::Implemented {
            return None;
        }
        let window = Window::new(v.content.window_start?, v.content.window_end?)?;
        Some(Subject {
            change_id: Some(v.id),
            window,
            services: v.content.services.clone(),
            environments: v.content.environments.clone(),
        })
    }
}

/// What a check weighs the window against.
struct Context {
    booked: Vec<Booked>,
    freezes: Vec<Freeze>,
    maintenance: Vec<MaintenancePeriod>,
    limits: Limits,
    keys: Vec<String>,
    production: bool,
}

impl Context {
    fn proposal<'a>(&'a self, s: &'a Subject) -> Proposal<'a> {
        Proposal {
            change_id: s.change_id,
            window: s.window,
            services: &s.services,
            environments: &self.keys,
            production: self.production,
        }
    }
}

/// The environments' keys (`prod`) of the change's words (`PROD`), and which
/// of them are production.
fn production_words(envs: &[EnvironmentRow]) -> Vec<String> {
    envs.iter()
        .filter(|e| e.rules.production)
        .map(|e| e.rules.key.to_uppercase())
        .collect()
}

/// The number of production changes one hour may hold, if set.
pub async fn production_limit(conn: &mut PgConnection) -> Result<Option<u32>, AppError> {
    let v = cab_db::decisions::setting(conn, PRODUCTION_PER_HOUR).await?;
    Ok(v.and_then(|v| v.as_u64())
        .and_then(|n| u32::try_from(n).ok()))
}

async fn context(
    conn: &mut PgConnection,
    s: &Subject,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Context, AppError> {
    let envs = deployments::environments(conn).await?;
    let production_envs = production_words(&envs);
    // A window that names no environment is checked as touching them all,
    // never as touching none.
    let named: &[Environment] = if s.environments.is_empty() {
        Environment::ALL
    } else {
        &s.environments
    };
    let keys: Vec<String> = named.iter().map(|e| e.as_str().to_lowercase()).collect();
    let production = named
        .iter()
        .any(|e| production_envs.iter().any(|p| p == e.as_str()));
    let limits = Limits {
        production_per_hour: production_limit(conn).await?,
    };
    // Production changes matter to the busy-hour rule only when it is set
    // and this change targets production.
    let prod_filter: &[String] = if production && limits.production_per_hour.is_some() {
        &production_envs
    } else {
        &[]
    };
    let rows =
        cab_db::calendar::booked(conn, from, to, &s.services, prod_filter, BOOKED_LIMIT).await?;
    let booked = rows
        .into_iter()
        .filter_map(|r| {
            let window = Window::new(r.window_start, r.window_end)?;
            let production = r.environments.iter().any(|e| production_envs.contains(e));
            Some(Booked {
                change_id: r.id,
                number: r.number,
                title: r.title,
                window,
                services: r.services,
                environments: r.environments.iter().map(|e| e.to_lowercase()).collect(),
                production,
            })
        })
        .collect();
    let freezes = cab_db::calendar::freezes(conn, from, to)
        .await?
        .into_iter()
        .map(|f| Freeze {
            starts_at: f.starts_at,
            ends_at: f.ends_at,
            reason: f.reason,
            environments: f.environments,
            services: f.services,
        })
        .collect();
    let maintenance = cab_db::calendar::maintenance_periods(conn, Some(&s.services))
        .await?
        .iter()
        .map(maintenance_rule)
        .collect();
    Ok(Context {
        booked,
        freezes,
        maintenance,
        limits,
        keys,
        production,
    })
}

/// The clock hours around a window, which the busy-hour rule looks at.
fn hours_around(w: &Window) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = w
        .start
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(w.start);
    (start, w.end + Duration::hours(1))
}

/// The conflicts of a window, as they stand now.
pub async fn conflicts(conn: &mut PgConnection, s: &Subject) -> Result<Vec<Conflict>, AppError> {
    let (from, to) = hours_around(&s.window);
    let cx = context(conn, s, from, to).await?;
    Ok(rules::conflicts(
        &cx.proposal(s),
        &cx.booked,
        &cx.freezes,
        &cx.maintenance,
        cx.limits,
    ))
}

/// The conflicts of a change's planned window (none when it holds none).
pub async fn conflicts_of_change(
    conn: &mut PgConnection,
    v: &ChangeView,
) -> Result<Vec<Conflict>, AppError> {
    match Subject::of_change(v) {
        Some(s) => conflicts(conn, &s).await,
        None => Ok(Vec::new()),
    }
}

/// The conflicts of each of the changes named, for the CAB queue and agenda.
pub async fn conflicts_by_change(
    conn: &mut PgConnection,
    changes: &[&ChangeView],
) -> Result<HashMap<Uuid, Vec<Conflict>>, AppError> {
    let mut out = HashMap::new();
    for v in changes {
        let found = conflicts_of_change(conn, v).await?;
        if !found.is_empty() {
            out.insert(v.id, found);
        }
    }
    Ok(out)
}

/// A window's conflicts and the next free slots of the same length.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    pub conflicts: Vec<Conflict>,
    pub free_slots: Vec<Window>,
}

/// The conflicts of a proposed window, and (when there are any) the next
/// windows of the same length, from its start (or from now, if that is
/// later) within [`SLOT_HORIZON_DAYS`], that have none.
pub async fn check(
    conn: &mut PgConnection,
    s: &Subject,
    now: DateTime<Utc>,
) -> Result<Checked, AppError> {
    // One read of the calendar serves both: the window's own hours and the
    // horizon its free slots are looked for in.
    let not_before = s.window.start.max(now);
    let horizon = Duration::days(SLOT_HORIZON_DAYS);
    let (own_from, own_to) = hours_around(&s.window);
    let (from, _) = hours_around(&Window {
        start: not_before,
        end: not_before + Duration::minutes(1),
    });
    let to = not_before + horizon + s.window.duration() + Duration::hours(1);
    let cx = context(conn, s, from.min(own_from), to.max(own_to)).await?;
    let proposal = cx.proposal(s);
    let found = rules::conflicts(
        &proposal,
        &cx.booked,
        &cx.freezes,
        &cx.maintenance,
        cx.limits,
    );
    let free_slots = if found.is_empty() {
        Vec::new()
    } else {
        rules::free_slots(
            &proposal,
            &cx.booked,
            &cx.freezes,
            &cx.maintenance,
            cx.limits,
            not_before,
            horizon,
            SLOTS,
        )
    };
    Ok(Checked {
        conflicts: found,
        free_slots,
    })
}

/// A conflict as answers and the trail carry it: its kind, its sentence and
/// its facts.
pub fn conflict_json(c: &Conflict) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or_else(|_| json!({}));
    if let Some(o) = v.as_object_mut() {
        o.insert("sentence".into(), Value::String(c.sentence()));
    }
    v
}

/// What a decision still needs when only an acknowledging vote may approve.
pub const ACKNOWLEDGEMENT_NEEDED: &str =
    "an approving CAB vote that acknowledges the calendar conflicts";

/// A fingerprint of conflicts as they read, in any order: a vote names the
/// conflicts it accepted by it, so conflicts that changed after the member
/// read them are not accepted in their name.
pub fn conflicts_digest(found: &[Conflict]) -> String {
    let mut sentences: Vec<String> = found.iter().map(Conflict::sentence).collect();
    sentences.sort();
    let digest = Sha256::digest(sentences.join("\n").as_bytes());
    hex::encode(&digest[..16])
}

/// Whether an approving vote acknowledges `found` (not empty): `None` does
/// not; `Some("")` accepts them as they stand; `Some(digest)` accepts them
/// if they are still what the member read.
pub fn check_acknowledgement(found: &[Conflict], given: Option<&str>) -> Result<(), Denial> {
    match given.map(str::trim) {
        None => Err(unacknowledged(found)),
        Some("") => Ok(()),
        Some(d) if d == conflicts_digest(found) => Ok(()),
        Some(_) => {
            let sentences: Vec<String> = found.iter().map(Conflict::sentence).collect();
            Err(Denial::new(
                "conflicts_not_acknowledged",
                format!(
                    "The calendar conflicts changed after you read them; read them again before approving: {}",
                    sentences.join(" ")
                ),
            ))
        }
    }
}

/// The refusal of an approving vote that does not acknowledge the window's
/// conflicts.
pub fn unacknowledged(found: &[Conflict]) -> Denial {
    let sentences: Vec<String> = found.iter().map(Conflict::sentence).collect();
    Denial::new(
        "conflicts_not_acknowledged",
        format!(
            "The planned window has {} conflict{}; approve only after acknowledging {}: {}",
            found.len(),
            if found.len() == 1 { "" } else { "s" },
            if found.len() == 1 { "it" } else { "them" },
            sentences.join(" ")
        ),
    )
}

// ---------------------------------------------------------------------------
// Settings: maintenance periods and the busy-hour limit

/// Maintenance periods and the busy-hour limit are for release managers and
/// administrators.
pub fn may_plan(actor: &Actor) -> Result<(), Denial> {
    if actor.roles.contains(Role::ReleaseManager) || actor.roles.contains(Role::Admin) {
        Ok(())
    } else {
        Err(Denial::new(
            "release_manager_required",
            "Only release managers and administrators change maintenance periods and the production limit.",
        ))
    }
}

/// A maintenance period as typed in.
#[derive(Debug, Clone, Deserialize)]
pub struct NewPeriod {
    pub service: String,
    /// 1 = Monday … 7 = Sunday.
    pub weekdays: Vec<i16>,
    /// "HH:MM", UTC.
    pub starts: String,
    pub minutes: i64,
}

fn read_period(p: &NewPeriod) -> Result<MaintenancePeriod, AppError> {
    let mut errors: Vec<(String, String)> = Vec::new();
    let service = normalize_service(&p.service);
    if service.is_none() {
        errors.push((
            "service".into(),
            "Name one service: lower-case letters, digits, dots, dashes and underscores.".into(),
        ));
    }
    let mut days = BTreeSet::new();
    for d in &p.weekdays {
        match weekday(*d) {
            Some(w) => {
                days.insert(w.number_from_monday());
            }
            None => {
                errors.push((
                    "weekdays".into(),
                    "Days are 1 (Monday) to 7 (Sunday).".into(),
                ));
                break;
            }
        }
    }
    let starts = NaiveTime::parse_from_str(p.starts.trim(), "%H:%M").ok();
    if starts.is_none() {
        errors.push((
            "starts".into(),
            "Give the opening time as HH:MM (UTC).".into(),
        ));
    }
    let period = MaintenancePeriod {
        service: service.unwrap_or_default(),
        weekdays: days
            .iter()
            .filter_map(|d| i16::try_from(*d).ok().and_then(weekday))
            .collect(),
        starts: starts.unwrap_or(NaiveTime::MIN),
        minutes: u32::try_from(p.minutes.clamp(0, i64::from(u32::MAX))).unwrap_or(0),
    };
    for (field, message) in rules::check_maintenance_period(&period) {
        if !errors.iter().any(|(f, _)| f == field) {
            errors.push((field.to_owned(), message));
        }
    }
    if errors.is_empty() {
        Ok(period)
    } else {
        Err(AppError::Fields(errors))
    }
}

fn period_json(id: Uuid, p: &MaintenancePeriod) -> Value {
    json!({
        "id": id,
        "service": p.service,
        "weekdays": p.weekdays.iter().map(|d| d.number_from_monday()).collect::<Vec<_>>(),
        "starts": p.starts.format("%H:%M").to_string(),
        "minutes": p.minutes,
        "described": p.describe(),
    })
}

/// Adds a maintenance period (release managers and administrators).
pub async fn add_period(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    new: &NewPeriod,
) -> Result<Value, AppError> {
    refusal::checked(
        pool,
        user.audit_actor(),
        origin,
        Attempt::MaintenanceManage.as_str(),
        Entity::kind("maintenance_period"),
        may_plan(&user.actor()),
    )
    .await?;
    let period = read_period(new)?;
    let id = Uuid::new_v4();
    let now = Utc::now();
    let days: Vec<i16> = period
        .weekdays
        .iter()
        .filter_map(|d| i16::try_from(d.number_from_monday()).ok())
        .collect();
    let mut tx = pool.begin().await?;
    cab_db::calendar::insert_maintenance_period(
        &mut tx,
        &cab_db::calendar::NewMaintenancePeriod {
            id,
            service: &period.service,
            weekdays: &days,
            starts: period.starts,
            minutes: i32::try_from(period.minutes).unwrap_or(i32::MAX),
            by: user.id,
            at: now,
        },
    )
    .await?;
    let described = period_json(id, &period);
    audit_log::record(
        &mut tx,
        Some(user.audit_actor()),
        origin,
        AuditAction::MaintenancePeriodAdded.as_str(),
        Entity::new("maintenance_period", id),
        described.clone(),
    )
    .await?;
    crate::idempotency::bind(
        &mut tx,
        origin,
        crate::idempotency::Created::MaintenancePeriod(id),
    )
    .await?;
    tx.commit().await?;
    Ok(described)
}

/// Removes a maintenance period (release managers and administrators).
pub async fn remove_period(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
) -> Result<(), AppError> {
    refusal::checked(
        pool,
        user.audit_actor(),
        origin,
        Attempt::MaintenanceManage.as_str(),
        Entity::new("maintenance_period", id),
        may_plan(&user.actor()),
    )
    .await?;
    let mut tx = pool.begin().await?;
    let Some((service, weekdays, starts, minutes)) =
        cab_db::calendar::delete_maintenance_period(&mut tx, id).await?
    else {
        return Err(AppError::NotFound("maintenance period"));
    };
    let period = maintenance_rule(&cab_db::calendar::MaintenanceRow {
        id,
        service,
        weekdays,
        starts,
        minutes,
        created_by: String::new(),
        created_at: Utc::now(),
    });
    audit_log::record(
        &mut tx,
        Some(user.audit_actor()),
        origin,
        AuditAction::MaintenancePeriodRemoved.as_str(),
        Entity::new("maintenance_period", id),
        period_json(id, &period),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Every maintenance period, by service.
pub async fn periods(pool: &PgPool) -> Result<Vec<(Uuid, MaintenancePeriod)>, AppError> {
    let mut conn = pool.acquire().await?;
    Ok(cab_db::calendar::maintenance_periods(&mut conn, None)
        .await?
        .iter()
        .map(|r| (r.id, maintenance_rule(r)))
        .collect())
}

pub fn periods_json(periods: &[(Uuid, MaintenancePeriod)]) -> Vec<Value> {
    periods.iter().map(|(id, p)| period_json(*id, p)).collect()
}

/// The most production changes one hour may hold: from 1 to 100, or none.
pub const LIMIT_MAX: u32 = 100;

/// Sets (or, with `None`, removes) the busy-hour limit (release managers and
/// administrators).
pub async fn set_production_limit(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    limit: Option<i64>,
) -> Result<Option<u32>, AppError> {
    refusal::checked(
        pool,
        user.audit_actor(),
        origin,
        Attempt::CalendarLimitSet.as_str(),
        Entity::kind("settings"),
        may_plan(&user.actor()),
    )
    .await?;
    let limit = match limit {
        None => None,
        Some(n) if (1..=i64::from(LIMIT_MAX)).contains(&n) => u32::try_from(n).ok(),
        Some(_) => {
            return Err(AppError::invalid(
                "production_per_hour",
                format!("Give a number from 1 to {LIMIT_MAX}, or leave it empty for no limit."),
            ));
        }
    };
    let now = Utc::now();
    let mut tx = pool.begin().await?;
    let before = production_limit(&mut tx).await?;
    cab_db::decisions::put_setting(&mut tx, PRODUCTION_PER_HOUR, &json!(limit), user.id, now)
        .await?;
    audit_log::record(
        &mut tx,
        Some(user.audit_actor()),
        origin,
        AuditAction::CalendarLimitSet.as_str(),
        Entity::kind("settings"),
        json!({ "setting": PRODUCTION_PER_HOUR, "before": before, "after": limit }),
    )
    .await?;
    tx.commit().await?;
    Ok(limit)
}

// ---------------------------------------------------------------------------
// Feeds

/// A feed just made: the only time its secret address is shown.
#[derive(Debug, Clone)]
pub struct IssuedFeed {
    pub feed: FeedRow,
    pub url: String,
}

/// The path a feed is read at; the secret is in it, so the request log
/// names the route instead (`crate::router`).
pub const FEED_ROUTE: &str = "/calendar/feed/{token}";

fn feed_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Makes a feed of the calendar under `filter` for the person (people only:
/// a pipeline's account has no calendar).
pub async fn create_feed(
    pool: &PgPool,
    public_url: &str,
    user: &CurrentUser,
    origin: &Origin,
    label: &str,
    filter: &CalendarFilter,
) -> Result<IssuedFeed, AppError> {
    let person = if user.is_service {
        Err(Denial::new(
            "person_required",
            "Calendar feeds are for people; a service account has none.",
        ))
    } else {
        Ok(())
    };
    refusal::checked(
        pool,
        user.audit_actor(),
        origin,
        Attempt::CalendarFeedCreate.as_str(),
        Entity::kind("calendar_feed"),
        person,
    )
    .await?;
    let label = label.trim();
    let label = if label.is_empty() {
        "Change calendar"
    } else {
        label
    };
    if label.chars().count() > FEED_LABEL_MAX {
        return Err(AppError::invalid(
            "label",
            format!("A name is at most {FEED_LABEL_MAX} characters."),
        ));
    }
    let now = Utc::now();
    let mut tx = pool.begin().await?;
    let live = cab_db::calendar::feeds_of(&mut tx, user.id)
        .await?
        .iter()
        .filter(|f| f.revoked_at.is_none())
        .count();
    if live >= LIVE_FEEDS_MAX {
        return Err(AppError::Conflict(Denial::new(
            "too_many_feeds",
            format!("You have {LIVE_FEEDS_MAX} live feeds; revoke one you no longer use first."),
        )));
    }
    let secret = crate::crypto::random_token(32);
    let id = Uuid::new_v4();
    let filters = filter_json(filter);
    cab_db::calendar::insert_feed(
        &mut tx,
        &cab_db::calendar::NewFeed {
            id,
            user_id: user.id,
            token_sha256: &feed_hash(&secret),
            label,
            filters: &filters,
            at: now,
        },
    )
    .await?;
    audit_log::record(
        &mut tx,
        Some(user.audit_actor()),
        origin,
        AuditAction::CalendarFeedCreated.as_str(),
        Entity::new("calendar_feed", id),
        json!({ "label": label, "filters": filters }),
    )
    .await?;
    crate::idempotency::bind(
        &mut tx,
        origin,
        crate::idempotency::Created::CalendarFeed {
            id,
            secret: &secret,
        },
    )
    .await?;
    let feed = cab_db::calendar::feed(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("calendar feed"))?;
    tx.commit().await?;
    Ok(IssuedFeed {
        feed,
        url: feed_url(public_url, &secret),
    })
}

/// A feed's secret address: [`FEED_ROUTE`] under the public address.
pub fn feed_url(public_url: &str, secret: &str) -> String {
    format!("{public_url}/calendar/feed/{secret}.ics")
}

/// One of the person's feeds; another person's is not found.
pub async fn feed_of(pool: &PgPool, user_id: Uuid, id: Uuid) -> Result<FeedRow, AppError> {
    let mut conn = pool.acquire().await?;
    cab_db::calendar::feed(&mut conn, id)
        .await?
        .filter(|f| f.user_id == user_id)
        .ok_or(AppError::NotFound("calendar feed"))
}

/// The person's feeds, newest first.
pub async fn feeds(pool: &PgPool, user: &CurrentUser) -> Result<Vec<FeedRow>, AppError> {
    let mut conn = pool.acquire().await?;
    Ok(cab_db::calendar::feeds_of(&mut conn, user.id).await?)
}

/// Revokes one of the person's feeds: its address answers 404 from now on.
/// Another person's feed is not found (its existence is nobody else's).
pub async fn revoke_feed(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
) -> Result<FeedRow, AppError> {
    let now = Utc::now();
    let mut tx = pool.begin().await?;
    let Some(feed) = cab_db::calendar::feed(&mut tx, id).await? else {
        return Err(AppError::NotFound("calendar feed"));
    };
    if feed.user_id != user.id {
        return Err(AppError::NotFound("calendar feed"));
    }
    let Some(label) = cab_db::calendar::revoke_feed(&mut tx, id, user.id, now).await? else {
        return Err(AppError::Conflict(Denial::new(
            "feed_revoked",
            "This feed was revoked already.",
        )));
    };
    audit_log::record(
        &mut tx,
        Some(user.audit_actor()),
        origin,
        AuditAction::CalendarFeedRevoked.as_str(),
        Entity::new("calendar_feed", id),
        json!({ "label": label }),
    )
    .await?;
    let feed = cab_db::calendar::feed(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("calendar feed"))?;
    tx.commit().await?;
    Ok(feed)
}

/// The iCalendar text of the live feed the secret opens; `None` for an
/// unknown or revoked secret, or an owner whose account is disabled.
pub async fn render_feed(
    pool: &PgPool,
    public_url: &str,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>, AppError> {
    let mut conn = pool.acquire().await?;
    let Some(feed) = cab_db::calendar::live_feed(&mut conn, &feed_hash(secret)).await? else {
        return Ok(None);
    };
    let filter = filter_from_json(&feed.filters)?;
    let from = now - Duration::days(FEED_PAST_DAYS);
    let to = now + Duration::days(FEED_AHEAD_DAYS);
    // What is coming first, then the recent past: on a busy calendar the
    // past must not crowd out what is planned.
    let mut changes =
        cab_db::calendar::windows(&mut conn, now, to, &filter, true, ENTRY_LIMIT).await?;
    let ahead: std::collections::HashSet<Uuid> = changes.iter().map(|c| c.id).collect();
    changes.extend(
        cab_db::calendar::windows(&mut conn, from, now, &filter, true, PAST_LIMIT)
            .await?
            .into_iter()
            .filter(|c| !ahead.contains(&c.id)),
    );
    let freezes: Vec<FreezeSpan> = cab_db::calendar::freezes(&mut conn, from, to)
        .await?
        .into_iter()
        .filter(|f| freeze_matches(f, &filter))
        .collect();
    cab_db::calendar::touch_feed(&mut conn, feed.id, now).await?;
    drop(conn);
    let host = public_url
        .split("://")
        .nth(1)
        .unwrap_or(public_url)
        .split(['/', ':'])
        .next()
        .unwrap_or("cab");
    let mut events = Vec::with_capacity(changes.len() + freezes.len());
    for c in &changes {
        events.push(change_event(c, public_url, host));
    }
    for f in &freezes {
        events.push(freeze_event(f, public_url, host));
    }
    Ok(Some(ical::write(
        &ical::Calendar {
            name: feed.label,
            events,
        },
        now,
    )))
}

/// How a change's window shows in people's calendars: tentative until CAB
/// approves, confirmed from then on (a change closed after it ran stands as
/// history), cancelled once it will not happen or never did (kept in the
/// feed, so calendars remove it).
pub fn event_status(state: ChangeState, close_code: Option<CloseCode>) -> ical::Status {
    if state == ChangeState::Closed {
        if close_code == Some(CloseCode::NotImplemented) {
            ical::Status::Cancelled
        } else {
            ical::Status::Confirmed
        }
    } else if state.is_closed() {
        ical::Status::Cancelled
    } else if state.carries_approval() {
        ical::Status::Confirmed
    } else {
        ical::Status::Tentative
    }
}

/// SEQUENCE must grow whenever an event changes in a way attendees care
/// about (RFC 5546 2.1.4): with every revision, and with the status within
/// one revision (tentative, then confirmed, then cancelled). An edit after
/// approval starts a new revision, which outranks every status of the last.
pub fn event_sequence(revision: i32, status: ical::Status) -> u32 {
    let rank = match status {
        ical::Status::Tentative => 0,
        ical::Status::Confirmed => 1,
        ical::Status::Cancelled => 2,
    };
    u32::try_from(revision)
        .unwrap_or(0)
        .saturating_mul(3)
        .saturating_add(rank)
}

fn change_event(c: &WindowRow, public_url: &str, host: &str) -> ical::Event {
    let state = ChangeState::parse(&c.state);
    let code = c.close_code.as_deref().and_then(CloseCode::parse);
    let status = state.map_or(ical::Status::Tentative, |s| event_status(s, code));
    let risk = RiskLevel::parse(&c.risk_level);
    let key = format!("CHG-{}", c.number);
    let mut description = vec![
        format!("State: {}", state.map_or(c.state.as_str(), |s| s.label())),
        format!(
            "Risk: {}",
            risk.map_or(c.risk_level.as_str(), |r| r.label())
        ),
    ];
    if !c.services.is_empty() {
        description.push(format!("Services: {}", c.services.join(", ")));
    }
    if !c.environments.is_empty() {
        description.push(format!("Environments: {}", c.environments.join(", ")));
    }
    ical::Event {
        uid: format!("change-{}@{host}", c.id),
        sequence: event_sequence(c.revision, status),
        status,
        start: c.window_start,
        end: c.window_end,
        summary: format!("{key} {}", c.title),
        description: description.join("\n"),
        url: Some(format!("{public_url}/changes/{key}")),
        categories: vec!["Change".into()],
        last_modified: c.updated_at,
        transparent: false,
    }
}

fn freeze_event(f: &FreezeSpan, public_url: &str, host: &str) -> ical::Event {
    let envs = if f.environments.is_empty() {
        "all environments".to_owned()
    } else {
        f.environments
            .iter()
            .map(|e| e.to_uppercase())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let services = if f.services.is_empty() {
        "all services".to_owned()
    } else {
        f.services.join(", ")
    };
    let mut description = format!("Nothing is deployed to {envs} for {services}.");
    if f.lifted_at.is_some() {
        description.push_str("\nLifted early.");
    }
    ical::Event {
        uid: format!("freeze-{}@{host}", f.id),
        // A lift moves the end: a new sequence, so calendars take it.
        sequence: u32::from(f.lifted_at.is_some()),
        status: ical::Status::Confirmed,
        start: f.starts_at,
        end: f.ends_at,
        summary: format!("Freeze: {}", f.reason.trim()),
        description,
        url: Some(format!("{public_url}/freezes")),
        categories: vec!["Freeze".into()],
        last_modified: f.lifted_at.unwrap_or(f.created_at),
        transparent: true,
    }
}
