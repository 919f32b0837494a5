//! The change calendar's pages: the calendar itself (a month, a week or a
//! list of four weeks, narrowed by service, environment, risk and state in
//! the URL), the person's calendar feeds, the feed that calendar apps read,
//! and the maintenance periods and production limit that release managers
//! and administrators keep. Every action goes through `crate::calendar`, the
//! same code as the API's.

use askama::Template;
use axum::Form;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use cab_db::calendar::{CalendarFilter, DeploymentSpan, FeedRow, FreezeSpan, WindowRow};
use cab_domain::audit::Attempt;
use cab_domain::change::{ChangeKey, ChangeState, Environment as ChangeEnvironment};
use cab_domain::deployment::DeploymentState;
use cab_domain::risk::RiskLevel;
use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, Utc, Weekday};
use serde_json::Value;
use uuid::Uuid;

use super::deployments::{Opt, stylesheet_url};
use super::environments::minutes_in_words;
use super::form::{FieldErrors, FormPairs as Pairs, form_value as value, form_values as values};
use super::notice::{Notice, redirect_with};
use super::{Layout, Viewer, render, urlencode, when};
use crate::audit_log::Entity;
use crate::calendar::{self, CalendarEntries, Layout as View, NewPeriod};
use crate::deployments::{self, Environment};
use crate::error::AppError;
use crate::page_error::PageResult;
use crate::refusal;
use crate::request::Origin;
use crate::state::AppState;
use crate::words::{People, stored};

/// The longest feed secret looked up; anything longer is no feed of ours,
/// and is not worth hashing.
const SECRET_MAX: usize = 128;

/// The years a date in the URL may name: enough for any plan, and far from
/// the edges of the calendar arithmetic.
const YEARS: std::ops::RangeInclusive<i32> = 1970..=9999;

// ---------------------------------------------------------------------------
// Filters

/// The four filters as typed, trimmed: to fill the form again and to keep
/// in the calendar's links.
#[derive(Default, Clone)]
struct FilterWords {
    service: String,
    environment: String,
    risk: String,
    state: String,
}

impl FilterWords {
    fn from_pairs(pairs: &Pairs) -> Self {
        let get = |k: &str| value(pairs, k).trim().to_owned();
        FilterWords {
            service: get("service"),
            environment: get("environment"),
            risk: get("risk"),
            state: get("state"),
        }
    }

    /// The filters as URL parameters, each only when given.
    fn params(&self) -> Vec<String> {
        [
            ("service", &self.service),
            ("environment", &self.environment),
            ("risk", &self.risk),
            ("state", &self.state),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect()
    }

    /// Reads each filter on its own, so that every one in error gets its
    /// message beside it, not only the first.
    fn read(&self, errors: &mut FieldErrors) -> Result<CalendarFilter, AppError> {
        let mut take = |r: Result<CalendarFilter, AppError>| match r {
            Ok(f) => Ok(f),
            Err(AppError::Invalid { field, message }) => {
                let message = filter_message(&field, message);
                errors.insert(&field, message);
                Ok(CalendarFilter::default())
            }
            Err(AppError::Fields(list)) => {
                for (field, message) in list {
                    let message = filter_message(&field, message);
                    errors.insert(&field, message);
                }
                Ok(CalendarFilter::default())
            }
            Err(e) => Err(e),
        };
        let service = take(calendar::read_filter(Some(&self.service), None, None, None))?;
        let environment = take(calendar::read_filter(
            None,
            Some(&self.environment),
            None,
            None,
        ))?;
        let risk = take(calendar::read_filter(None, None, Some(&self.risk), None))?;
        let state = take(calendar::read_filter(None, None, None, Some(&self.state)))?;
        Ok(CalendarFilter {
            service: service.service,
            environment: environment.environment,
            risk: risk.risk,
            state: state.state,
        })
    }
}

/// The message beside a filter in error, naming the choices as the form
/// shows them rather than as they are stored.
fn filter_message(field: &str, message: String) -> String {
    match field {
        "state" => format!(
            "Choose one of the states in the list: {}.",
            ChangeState::ALL
                .iter()
                .filter(|s| **s != ChangeState::Draft)
                .map(|s| s.label())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "risk" => format!(
            "Choose one of the risk levels in the list: {}.",
            RiskLevel::ALL
                .iter()
                .map(|r| r.label())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => message,
    }
}

/// The options of the filters' selects.
struct FilterChoices {
    environments: Vec<Opt>,
    risks: Vec<Opt>,
    states: Vec<Opt>,
}

impl FilterChoices {
    fn new(words: &FilterWords, envs: &[Environment]) -> Self {
        FilterChoices {
            environments: ChangeEnvironment::ALL
                .iter()
                .map(|e| Opt {
                    value: e.as_str().to_owned(),
                    label: env_tag(envs, e.as_str()).label,
                    selected: words.environment.eq_ignore_ascii_case(e.as_str()),
                })
                .collect(),
            risks: RiskLevel::ALL
                .iter()
                .map(|r| Opt {
                    value: r.as_str().to_owned(),
                    label: r.label().to_owned(),
                    selected: words.risk == r.as_str(),
                })
                .collect(),
            states: ChangeState::ALL
                .iter()
                .filter(|s| **s != ChangeState::Draft)
                .map(|s| Opt {
                    value: s.as_str().to_owned(),
                    label: s.label().to_owned(),
                    selected: words.state == s.as_str(),
                })
                .collect(),
        }
    }
}

/// An environment as the calendar shows it: its label, in its colour (the
/// class `environment-<key>` of the deployment pages' stylesheet).
#[derive(Clone)]
struct EnvTag {
    pub key: String,
    pub label: String,
}

/// An environment as the pages show it, from a change's word for it (`PROD`)
/// or an environment's key (`prod`): the label on record, in its colour.
fn env_tag(envs: &[Environment], word: &str) -> EnvTag {
    let key = word.to_lowercase();
    let label = envs
        .iter()
        .find(|e| e.rules.key == key)
        .map(|e| e.rules.label.clone())
        .unwrap_or_else(|| word.to_uppercase());
    EnvTag { key, label }
}

/// What a filter narrows the calendar to, in words: "service payments,
/// PROD, high risk, state “Approved”", or "everything".
fn filter_in_words(f: &CalendarFilter, envs: &[Environment]) -> String {
    let mut parts = Vec::new();
    if let Some(s) = &f.service {
        parts.push(format!("service {s}"));
    }
    if let Some(e) = &f.environment {
        parts.push(env_tag(envs, e).label);
    }
    if let Some(r) = &f.risk {
        parts.push(match RiskLevel::parse(r) {
            Some(r) => format!("{} risk", r.label().to_lowercase()),
            None => format!("{r} risk"),
        });
    }
    if let Some(s) = &f.state {
        let label = ChangeState::parse(s).map_or_else(|| s.clone(), |s| s.label().to_owned());
        parts.push(format!("state “{label}”"));
    }
    if parts.is_empty() {
        "Everything".into()
    } else {
        let joined = parts.join(", ");
        let mut chars = joined.chars();
        match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect(),
            None => joined,
        }
    }
}

// ---------------------------------------------------------------------------
// What the calendar shows

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Change,
    Deployment,
    Freeze,
    Maintenance,
    Milestone,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Change => "Change window",
            Kind::Deployment => "Deployment",
            Kind::Freeze => "Freeze",
            Kind::Maintenance => "Maintenance period",
            Kind::Milestone => "Release milestone",
        }
    }

    pub fn class(self) -> &'static str {
        match self {
            Kind::Change => "change",
            Kind::Deployment => "deployment",
            Kind::Freeze => "freeze",
            Kind::Maintenance => "maintenance",
            Kind::Milestone => "milestone",
        }
    }
}

/// One thing on the calendar, in words.
#[derive(Clone)]
struct Item {
    pub kind: Kind,
    pub start: DateTime<Utc>,
    /// The start again for a deployment still running.
    pub end: DateTime<Utc>,
    pub running: bool,
    /// "CHG-12", "DEP-4"; empty for a freeze or a maintenance period.
    pub key: String,
    pub title: String,
    pub href: Option<String>,
    /// Its state, risk and services, in words, joined.
    pub facts: String,
    pub environments: Vec<EnvTag>,
    pub all_environments: bool,
}

/// An item as one day, or the list, shows it: with its time in words.
#[derive(Clone)]
struct Shown {
    pub item: Item,
    pub when: String,
}

fn facts(parts: &[Option<String>]) -> String {
    parts
        .iter()
        .flatten()
        .filter(|p| !p.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join(" · ")
}

fn change_item(c: &WindowRow, envs: &[Environment]) -> Result<Item, AppError> {
    let state = stored(ChangeState::parse(&c.state), "state", &c.state)?;
    let risk = stored(RiskLevel::parse(&c.risk_level), "risk level", &c.risk_level)?;
    let key = ChangeKey(c.number).to_string();
    Ok(Item {
        kind: Kind::Change,
        start: c.window_start,
        end: c.window_end,
        running: false,
        href: Some(format!("/changes/{key}")),
        key,
        title: c.title.clone(),
        facts: facts(&[
            Some(state.label().to_owned()),
            Some(format!("{} risk", risk.label())),
            Some(c.services.join(", ")),
        ]),
        environments: c.environments.iter().map(|e| env_tag(envs, e)).collect(),
        all_environments: false,
    })
}

fn deployment_item(d: &DeploymentSpan, envs: &[Environment]) -> Result<Item, AppError> {
    let state = stored(
        DeploymentState::parse(&d.state),
        "deployment state",
        &d.state,
    )?;
    let key = format!("DEP-{}", d.number);
    Ok(Item {
        kind: Kind::Deployment,
        start: d.started_at,
        end: d.finished_at.unwrap_or(d.started_at).max(d.started_at),
        running: d.finished_at.is_none() && state == DeploymentState::Started,
        href: Some(format!("/deployments/{key}")),
        key,
        title: format!("{} {}", ChangeKey(d.change_number), d.change_title),
        facts: facts(&[Some(state.label().to_owned()), Some(d.services.join(", "))]),
        environments: vec![env_tag(envs, &d.environment)],
        all_environments: false,
    })
}

fn freeze_item(f: &FreezeSpan, envs: &[Environment], now: DateTime<Utc>) -> Item {
    let status = if f.lifted_at.is_some() {
        "Lifted"
    } else if now < f.starts_at {
        "Coming up"
    } else if now < f.ends_at {
        "In force"
    } else {
        "Ended"
    };
    let services = if f.services.is_empty() {
        "All services".to_owned()
    } else {
        f.services.join(", ")
    };
    Item {
        kind: Kind::Freeze,
        start: f.starts_at,
        end: f.ends_at.max(f.starts_at),
        running: false,
        key: String::new(),
        title: f.reason.trim().to_owned(),
        href: Some("/freezes".into()),
        facts: facts(&[Some(status.to_owned()), Some(services)]),
        all_environments: f.environments.is_empty(),
        environments: f.environments.iter().map(|e| env_tag(envs, e)).collect(),
    }
}

fn opening_item(o: &calendar::Opening, link: bool) -> Item {
    Item {
        kind: Kind::Maintenance,
        start: o.window.start,
        end: o.window.end,
        running: false,
        key: String::new(),
        // The kind and the time are said already: the service is what is left.
        title: o.service.clone(),
        href: link.then(|| "/admin/maintenance".to_owned()),
        facts: String::new(),
        environments: Vec::new(),
        all_environments: false,
    }
}

fn milestone_item(m: &calendar::ReleaseMilestone) -> Item {
    Item {
        kind: Kind::Milestone,
        start: m.at,
        end: m.at,
        running: false,
        href: Some(format!("/releases/{}", m.key)),
        key: m.key.clone(),
        title: format!("{} {}: {}", m.name, m.version, m.milestone.label()),
        facts: m.state.label().to_owned(),
        environments: Vec::new(),
        all_environments: false,
    }
}

/// Everything in the entries as items, earliest first.
fn items(
    entries: &CalendarEntries,
    envs: &[Environment],
    link_maintenance: bool,
    now: DateTime<Utc>,
) -> Result<Vec<Item>, AppError> {
    let mut out = Vec::new();
    for c in &entries.changes {
        out.push(change_item(c, envs)?);
    }
    for d in &entries.deployments {
        out.push(deployment_item(d, envs)?);
    }
    for f in &entries.freezes {
        out.push(freeze_item(f, envs, now));
    }
    for o in &entries.openings {
        out.push(opening_item(o, link_maintenance));
    }
    for m in &entries.milestones {
        out.push(milestone_item(m));
    }
    out.sort_by(|a, b| {
        (a.start, a.kind.class(), &a.key, &a.title).cmp(&(
            b.start,
            b.kind.class(),
            &b.key,
            &b.title,
        ))
    });
    Ok(out)
}

/// Midnight UTC at the start of `day`, and of the day after.
fn bounds(day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let from = calendar::at_midnight(day);
    (from, from + Duration::days(1))
}

/// Whether the item takes up some of `day` (a moment counts on its day).
fn touches(item: &Item, day: NaiveDate) -> bool {
    let (from, to) = bounds(day);
    if item.end > item.start {
        item.start < to && item.end > from
    } else {
        from <= item.start && item.start < to
    }
}

fn hm(t: &DateTime<Utc>) -> String {
    t.format("%H:%M").to_string()
}

/// A day as the calendar names it: "Mon 30 Nov 2026".
fn short_day(t: &DateTime<Utc>) -> String {
    t.format("%a %-d %b %Y").to_string()
}

/// The item's time on `day`, in UTC: "10:00–11:00 UTC", "From 22:00 UTC",
/// "Until 02:00 UTC", "All day".
fn when_on(item: &Item, day: NaiveDate) -> String {
    let (from, to) = bounds(day);
    if item.running {
        return if item.start >= from {
            format!("Started {} UTC, still running", hm(&item.start))
        } else {
            "Still running".into()
        };
    }
    if item.end <= item.start {
        return format!("{} UTC", hm(&item.start));
    }
    match (item.start >= from, item.end <= to) {
        (true, true) => format!("{}–{} UTC", hm(&item.start), hm(&item.end)),
        (true, false) => format!("From {} UTC", hm(&item.start)),
        (false, true) => format!("Until {} UTC", hm(&item.end)),
        (false, false) => "All day".into(),
    }
}

/// The item's whole time, in UTC: "Mon 30 Nov 2026, 10:00–11:00 UTC", or
/// from one day to another.
fn when_whole(item: &Item) -> String {
    if item.running {
        return format!(
            "Started {}, {} UTC, still running",
            short_day(&item.start),
            hm(&item.start)
        );
    }
    if item.end <= item.start {
        return format!("{}, {} UTC", short_day(&item.start), hm(&item.start));
    }
    let last_instant = item.end - Duration::seconds(1);
    if item.start.date_naive() == last_instant.date_naive() {
        format!(
            "{}, {}–{} UTC",
            short_day(&item.start),
            hm(&item.start),
            hm(&item.end)
        )
    } else {
        format!(
            "{}, {} UTC to {}, {} UTC",
            short_day(&item.start),
            hm(&item.start),
            short_day(&item.end),
            hm(&item.end)
        )
    }
}

/// One day of the month grid or of the week.
struct Day {
    pub iso: String,
    pub number: u32,
    pub weekday: String,
    pub month: String,
    /// "Monday 30 November 2026".
    pub long: String,
    pub in_month: bool,
    pub today: bool,
    /// The week around it, with the same filters.
    pub week_href: String,
    pub entries: Vec<Shown>,
}

impl Day {
    fn new(day: NaiveDate, month: u32, today: NaiveDate, items: &[Item], link: &Links) -> Self {
        Day {
            iso: day.format("%Y-%m-%d").to_string(),
            number: day.day(),
            weekday: day.format("%A").to_string(),
            month: day.format("%B").to_string(),
            long: day.format("%A %-d %B %Y").to_string(),
            in_month: day.month() == month,
            today: day == today,
            week_href: link.to(View::Week, day),
            entries: items
                .iter()
                .filter(|i| touches(i, day))
                .map(|i| Shown {
                    item: i.clone(),
                    when: when_on(i, day),
                })
                .collect(),
        }
    }
}

/// The calendar's links, keeping the filters.
struct Links {
    filters: Vec<String>,
}

impl Links {
    fn to(&self, view: View, date: NaiveDate) -> String {
        let mut parts = vec![
            format!("view={}", view.as_str()),
            format!("date={}", date.format("%Y-%m-%d")),
        ];
        parts.extend(self.filters.iter().cloned());
        format!("/calendar?{}", parts.join("&"))
    }
}

/// A link to another period or layout.
struct PeriodLink {
    pub href: String,
    pub label: String,
    pub current: bool,
}

/// The days before and after the shown period, by layout.
fn step(view: View, date: NaiveDate, forward: bool) -> Option<NaiveDate> {
    let moved = match view {
        View::Month => {
            let first = date.with_day(1)?;
            if forward {
                first.checked_add_months(Months::new(1))
            } else {
                first.checked_sub_months(Months::new(1))
            }
        }
        View::Week => {
            let days = if forward { 7 } else { -7 };
            date.checked_add_signed(Duration::days(days))
        }
        View::List => {
            let days = if forward { 28 } else { -28 };
            date.checked_add_signed(Duration::days(days))
        }
    }?;
    YEARS.contains(&moved.year()).then_some(moved)
}

const WEEKDAYS: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

fn weekday_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
        Weekday::Sat => "Saturday",
        Weekday::Sun => "Sunday",
    }
}

#[derive(Template)]
#[template(path = "calendar/page.html")]
struct CalendarPage {
    layout: Layout,
    env_css: String,
    view: View,
    /// The period's name: "November 2026", "30 November – 6 December 2026".
    period: String,
    caption: String,
    weekdays: Vec<&'static str>,
    weeks: Vec<Vec<Day>>,
    days: Vec<Day>,
    list: Vec<Shown>,
    list_days: i64,
    previous: Option<PeriodLink>,
    next: Option<PeriodLink>,
    today: PeriodLink,
    views: Vec<PeriodLink>,
    date_value: String,
    words: FilterWords,
    choices: FilterChoices,
    showing: String,
    truncated: bool,
    shown: bool,
    errors: FieldErrors,
}

/// `GET /calendar`: a month (the default), a week or four weeks as a list,
/// around `date` (today, UTC, by default), narrowed by the filters. A word
/// the calendar does not know is named beside its field (422), never
/// ignored.
pub async fn page(
    viewer: Viewer,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> PageResult {
    let pairs = query.map(|Query(q)| q).unwrap_or_default();
    Ok(calendar_page(&viewer, &pairs).await?)
}

async fn calendar_page(viewer: &Viewer, pairs: &Pairs) -> Result<Response, AppError> {
    let now = Utc::now();
    let today = now.date_naive();
    let mut errors = FieldErrors::default();
    let view_raw = value(pairs, "view").trim().to_owned();
    let view = if view_raw.is_empty() {
        View::Month
    } else {
        View::parse(&view_raw).unwrap_or_else(|| {
            errors.insert("view", "Choose a month, a week or a list.");
            View::Month
        })
    };
    let date_raw = value(pairs, "date").trim().to_owned();
    let date = if date_raw.is_empty() {
        today
    } else {
        match NaiveDate::parse_from_str(&date_raw, "%Y-%m-%d") {
            Ok(d) if YEARS.contains(&d.year()) => d,
            _ => {
                errors.insert(
                    "date",
                    "Give a date as year, month and day, such as 2026-11-30.",
                );
                today
            }
        }
    };
    let words = FilterWords::from_pairs(pairs);
    let filter = words.read(&mut errors)?;
    let (from, to) = view.period(date);
    let mut conn = viewer.state.pool.acquire().await?;
    let envs = deployments::environments(&mut conn).await?;
    let shown = errors.is_empty();
    let entries = if shown {
        calendar::entries(
            &mut conn,
            calendar::at_midnight(from),
            calendar::at_midnight(to),
            &filter,
        )
        .await?
    } else {
        CalendarEntries::default()
    };
    drop(conn);
    let link_maintenance = calendar::may_plan(&viewer.user.actor()).is_ok();
    let all = items(&entries, &envs, link_maintenance, now)?;
    let links = Links {
        filters: words.params(),
    };
    let mut weeks = Vec::new();
    let mut days = Vec::new();
    let mut list = Vec::new();
    match view {
        View::Month => {
            let mut day = from;
            while day < to {
                let week: Vec<Day> = day
                    .iter_days()
                    .take(7)
                    .map(|d| Day::new(d, date.month(), today, &all, &links))
                    .collect();
                weeks.push(week);
                day += Duration::days(7);
            }
        }
        View::Week => {
            days = from
                .iter_days()
                .take_while(|d| *d < to)
                .map(|d| Day::new(d, date.month(), today, &all, &links))
                .collect();
        }
        View::List => {
            let (start, _) = bounds(from);
            list = all
                .iter()
                .map(|i| Shown {
                    item: i.clone(),
                    when: if i.start < start && !i.running {
                        format!("Since {}", when_whole(i))
                    } else {
                        when_whole(i)
                    },
                })
                .collect();
        }
    }
    let last = to.pred_opt().unwrap_or(to);
    let period = match view {
        View::Month => date.format("%B %Y").to_string(),
        View::Week | View::List if from.year() == last.year() => {
            format!("{} – {}", from.format("%-d %B"), last.format("%-d %B %Y"))
        }
        View::Week | View::List => format!(
            "{} – {}",
            from.format("%-d %B %Y"),
            last.format("%-d %B %Y")
        ),
    };
    let caption = match view {
        View::Month => format!("Change calendar for {period}"),
        View::Week => format!("Week of {period}"),
        View::List => format!("Four weeks, {period}"),
    };
    let period_link = |d: Option<NaiveDate>, label: &str| {
        d.map(|d| PeriodLink {
            href: links.to(view, d),
            label: label.to_owned(),
            current: false,
        })
    };
    let (back, ahead) = match view {
        View::Month => ("Previous month", "Next month"),
        View::Week => ("Previous week", "Next week"),
        View::List => ("Previous four weeks", "Next four weeks"),
    };
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let page = CalendarPage {
        layout: viewer.layout("Calendar"),
        env_css: stylesheet_url(&envs),
        view,
        period,
        caption,
        weekdays: WEEKDAYS.iter().map(|d| weekday_name(*d)).collect(),
        weeks,
        days,
        list,
        list_days: 28,
        previous: period_link(step(view, date, false), back),
        next: period_link(step(view, date, true), ahead),
        today: PeriodLink {
            href: links.to(view, today),
            label: "Today".into(),
            current: false,
        },
        views: [
            (View::Month, "Month"),
            (View::Week, "Week"),
            (View::List, "List"),
        ]
        .into_iter()
        .map(|(v, label)| PeriodLink {
            href: links.to(v, date),
            label: label.into(),
            current: v == view,
        })
        .collect(),
        date_value: if date_raw.is_empty() {
            date.format("%Y-%m-%d").to_string()
        } else {
            date_raw
        },
        choices: FilterChoices::new(&words, &envs),
        showing: filter_in_words(&filter, &envs),
        words,
        truncated: entries.truncated,
        shown,
        errors,
    };
    Ok((status, render(&page)).into_response())
}

// ---------------------------------------------------------------------------
// Feeds

/// One of the person's feeds: never its secret, which is not kept.
struct FeedLine {
    pub id: Uuid,
    pub label: String,
    pub shows: String,
    pub created: String,
    pub last_used: String,
    pub revoked: Option<String>,
}

fn stored_filter(v: &Value) -> CalendarFilter {
    let get = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    CalendarFilter {
        service: get("service"),
        environment: get("environment"),
        risk: get("risk"),
        state: get("state"),
    }
}

impl FeedLine {
    fn of(f: &FeedRow, envs: &[Environment]) -> Self {
        FeedLine {
            id: f.id,
            label: f.label.clone(),
            shows: filter_in_words(&stored_filter(&f.filters), envs),
            created: when(&f.created_at),
            last_used: f
                .last_used_at
                .as_ref()
                .map_or_else(|| "Never".to_owned(), when),
            revoked: f.revoked_at.as_ref().map(when),
        }
    }
}

/// A feed just made: its address, shown this once.
struct FreshFeed {
    pub label: String,
    pub url: String,
    /// The same address for calendar apps that open `webcal:` links.
    pub webcal: Option<String>,
}

#[derive(Template)]
#[template(path = "calendar/feeds.html")]
struct FeedsPage {
    layout: Layout,
    fresh: Option<FreshFeed>,
    feeds: Vec<FeedLine>,
    label: String,
    words: FilterWords,
    choices: FilterChoices,
    errors: FieldErrors,
}

async fn feeds_page(
    viewer: &Viewer,
    fresh: Option<FreshFeed>,
    label: String,
    words: FilterWords,
    errors: FieldErrors,
    status: StatusCode,
) -> Result<Response, AppError> {
    let envs = {
        let mut conn = viewer.state.pool.acquire().await?;
        deployments::environments(&mut conn).await?
    };
    let feeds = calendar::feeds(&viewer.state.pool, &viewer.user).await?;
    let mut layout = viewer.layout("Calendar feeds");
    if fresh.is_some() {
        layout.notice = Some(Notice::FeedCreated.sentence());
    }
    let page = FeedsPage {
        layout,
        fresh,
        feeds: feeds.iter().map(|f| FeedLine::of(f, &envs)).collect(),
        label,
        choices: FilterChoices::new(&words, &envs),
        words,
        errors,
    };
    Ok((status, render(&page)).into_response())
}

/// `GET /calendar/feeds`: the person's feeds and the form that makes one.
pub async fn feeds(viewer: Viewer) -> PageResult {
    Ok(feeds_page(
        &viewer,
        None,
        String::new(),
        FilterWords::default(),
        FieldErrors::default(),
        StatusCode::OK,
    )
    .await?)
}

/// `POST /calendar/feeds`: makes a feed. The answer is the page itself with
/// the feed's address, this once (it is kept nowhere, not even in a
/// cookie); a fault comes back beside its field.
pub async fn create_feed(viewer: Viewer, origin: Origin, Form(pairs): Form<Pairs>) -> PageResult {
    let label = value(&pairs, "label");
    let words = FilterWords::from_pairs(&pairs);
    let mut errors = FieldErrors::default();
    let filter = words.read(&mut errors)?;
    if !errors.is_empty() {
        return Ok(feeds_page(
            &viewer,
            None,
            label,
            words,
            errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await?);
    }
    let state = &viewer.state;
    match calendar::create_feed(
        &state.pool,
        &state.settings.public_url,
        &viewer.user,
        &origin,
        &label,
        &filter,
    )
    .await
    {
        Ok(issued) => {
            let webcal = issued
                .url
                .strip_prefix("https://")
                .map(|rest| format!("webcal://{rest}"));
            let fresh = FreshFeed {
                label: issued.feed.label.clone(),
                url: issued.url,
                webcal,
            };
            Ok(feeds_page(
                &viewer,
                Some(fresh),
                String::new(),
                FilterWords::default(),
                FieldErrors::default(),
                StatusCode::CREATED,
            )
            .await?)
        }
        Err(e @ (AppError::Invalid { .. } | AppError::Fields(_) | AppError::Conflict(_))) => {
            let errors = FieldErrors::absorb(e, "label")?;
            Ok(feeds_page(
                &viewer,
                None,
                label,
                words,
                errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /calendar/feeds/{id}/revoke`: the feed's address shows nothing
/// from now on.
pub async fn revoke_feed(viewer: Viewer, origin: Origin, Path(id): Path<String>) -> PageResult {
    let id: Uuid = id
        .parse()
        .map_err(|_| AppError::NotFound("calendar feed"))?;
    calendar::revoke_feed(&viewer.state.pool, &viewer.user, &origin, id).await?;
    Ok(redirect_with(
        &viewer,
        "/calendar/feeds",
        Notice::FeedRevoked,
    ))
}

/// What an unknown, revoked or unreadable feed address answers: nothing
/// that tells one from another, and no page around it.
fn no_feed() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Not found\n",
    )
        .into_response()
}

/// `GET /calendar/feed/{token}` (the route is `calendar::FEED_ROUTE`, which
/// the request log names instead of the path): the iCalendar feed a
/// calendar app reads. No session: the secret in the address is the
/// credential, with or without `.ics` after it.
pub async fn feed(
    State(state): State<AppState>,
    token: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(token)) = token else {
        return no_feed();
    };
    let secret = token.strip_suffix(".ics").unwrap_or(&token);
    if secret.is_empty() || secret.len() > SECRET_MAX {
        return no_feed();
    }
    match calendar::render_feed(&state.pool, &state.settings.public_url, secret, Utc::now()).await {
        Ok(Some(body)) => (
            [
                (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
                (header::CACHE_CONTROL, "private, max-age=300"),
                (header::CONTENT_DISPOSITION, "inline; filename=\"cab.ics\""),
            ],
            body,
        )
            .into_response(),
        Ok(None) => no_feed(),
        Err(AppError::Unavailable) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "The calendar is unavailable at the moment. Try again shortly.\n",
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a calendar feed could not be read");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "The calendar could not be read.\n",
            )
                .into_response()
        }
    }
}

// ---------------------------------------------------------------------------
// Maintenance periods and the production limit

/// One day of the week in the form.
struct DayChoice {
    pub number: u32,
    pub name: &'static str,
    pub checked: bool,
}

/// What the add form holds: empty, or as submitted.
#[derive(Default)]
struct PeriodForm {
    service: String,
    days: Vec<u32>,
    starts: String,
    minutes: String,
}

/// A maintenance period in the list, in words.
struct PeriodLine {
    pub id: Uuid,
    pub service: String,
    pub days: String,
    pub opens: String,
    pub length: String,
    pub added: String,
}

/// A period's days as people say them: "Every day", "Monday to Friday",
/// "Tuesday, Thursday".
fn days_in_words(days: &[Weekday]) -> String {
    let on: Vec<Weekday> = WEEKDAYS
        .iter()
        .copied()
        .filter(|d| days.contains(d))
        .collect();
    if on.len() == 7 {
        "Every day".into()
    } else if on == WEEKDAYS[..5] {
        "Monday to Friday".into()
    } else {
        on.iter()
            .map(|d| weekday_name(*d))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Template)]
#[template(path = "calendar/maintenance.html")]
struct MaintenancePage {
    layout: Layout,
    periods: Vec<PeriodLine>,
    form: PeriodForm,
    days: Vec<DayChoice>,
    /// The limit in force, in a sentence.
    limit_now: String,
    limit_value: String,
    limit_max: u32,
    errors: FieldErrors,
}

async fn maintenance_page(
    viewer: &Viewer,
    form: PeriodForm,
    limit_value: Option<String>,
    errors: FieldErrors,
) -> Result<Response, AppError> {
    let mut conn = viewer.state.pool.acquire().await?;
    let rows = cab_db::calendar::maintenance_periods(&mut conn, None).await?;
    let limit = calendar::production_limit(&mut conn).await?;
    let people = People::load(&mut conn).await?;
    drop(conn);
    let periods = rows
        .iter()
        .map(|r| {
            let rule = calendar::maintenance_rule(r);
            let end = rule.starts + Duration::minutes(i64::from(rule.minutes));
            PeriodLine {
                id: r.id,
                service: r.service.clone(),
                days: days_in_words(&rule.weekdays),
                opens: format!(
                    "{} to {} UTC",
                    rule.starts.format("%H:%M"),
                    end.format("%H:%M")
                ),
                length: minutes_in_words(i64::from(rule.minutes), 3),
                added: format!("{}, {}", people.name(&r.created_by), when(&r.created_at)),
            }
        })
        .collect();
    let days = WEEKDAYS
        .iter()
        .map(|d| DayChoice {
            number: d.number_from_monday(),
            name: weekday_name(*d),
            checked: form.days.contains(&d.number_from_monday()),
        })
        .collect();
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let page = MaintenancePage {
        layout: viewer.layout("Maintenance periods"),
        periods,
        form,
        days,
        limit_now: match limit {
            Some(1) => "At most one production change may take place in one clock hour; a window that would make more shows a calendar conflict.".into(),
            Some(n) => format!("At most {n} production changes may share one clock hour; a window that would make more shows a calendar conflict."),
            None => "No limit is set: any number of production changes may share an hour.".into(),
        },
        limit_value: limit_value.unwrap_or_else(|| limit.map(|n| n.to_string()).unwrap_or_default()),
        limit_max: calendar::LIMIT_MAX,
        errors,
    };
    Ok((status, render(&page)).into_response())
}

/// `GET /admin/maintenance`: for release managers and administrators; a
/// refusal of anyone else is recorded.
pub async fn maintenance(viewer: Viewer, origin: Origin) -> PageResult {
    refusal::checked(
        &viewer.state.pool,
        viewer.user.audit_actor(),
        &origin,
        Attempt::MaintenanceManage.as_str(),
        Entity::kind("maintenance_period"),
        calendar::may_plan(&viewer.user.actor()),
    )
    .await?;
    Ok(maintenance_page(&viewer, PeriodForm::default(), None, FieldErrors::default()).await?)
}

/// `POST /admin/maintenance`: adds a maintenance period. Whoever may not is
/// refused (and recorded) before the form is looked at.
pub async fn add_period(viewer: Viewer, origin: Origin, Form(pairs): Form<Pairs>) -> PageResult {
    let form = PeriodForm {
        service: value(&pairs, "service"),
        days: values(&pairs, "weekdays")
            .into_iter()
            .filter_map(|d| d.trim().parse().ok())
            .collect(),
        starts: value(&pairs, "starts"),
        minutes: value(&pairs, "minutes"),
    };
    // A day that is no number goes on as 0, which the rules name as no day.
    let weekdays: Vec<i16> = values(&pairs, "weekdays")
        .into_iter()
        .map(|d| d.trim().parse().unwrap_or(0))
        .collect();
    let minutes = form.minutes.trim().parse::<i64>().ok();
    let new = NewPeriod {
        service: form.service.clone(),
        weekdays,
        starts: form.starts.clone(),
        minutes: minutes.unwrap_or(0),
    };
    match calendar::add_period(&viewer.state.pool, &viewer.user, &origin, &new).await {
        Ok(_) => Ok(redirect_with(
            &viewer,
            "/admin/maintenance",
            Notice::MaintenancePeriodAdded,
        )),
        Err(e @ (AppError::Invalid { .. } | AppError::Fields(_))) => {
            let mut errors = FieldErrors::absorb(e, "service")?;
            if minutes.is_none() {
                errors.insert(
                    "minutes",
                    "Give the length in whole minutes, such as 120 for two hours.",
                );
            }
            Ok(maintenance_page(&viewer, form, None, errors).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /admin/maintenance/{id}/remove`.
pub async fn remove_period(viewer: Viewer, origin: Origin, Path(id): Path<String>) -> PageResult {
    let id: Uuid = id
        .parse()
        .map_err(|_| AppError::NotFound("maintenance period"))?;
    calendar::remove_period(&viewer.state.pool, &viewer.user, &origin, id).await?;
    Ok(redirect_with(
        &viewer,
        "/admin/maintenance",
        Notice::MaintenancePeriodRemoved,
    ))
}

/// `POST /admin/maintenance/limit`: the most production changes one hour
/// may hold; empty for no limit.
pub async fn set_limit(viewer: Viewer, origin: Origin, Form(pairs): Form<Pairs>) -> PageResult {
    let raw = value(&pairs, "production_per_hour");
    let typed = raw.trim();
    // Something that is no number is asked for as 0, which the service
    // refuses beside the field (after checking who asks); never as "no
    // limit", which would remove the one in force.
    let limit = if typed.is_empty() {
        None
    } else {
        Some(typed.parse::<i64>().unwrap_or(0))
    };
    match calendar::set_production_limit(&viewer.state.pool, &viewer.user, &origin, limit).await {
        Ok(limit) => Ok(redirect_with(
            &viewer,
            "/admin/maintenance",
            Notice::ProductionLimitSet { limit },
        )),
        Err(e @ (AppError::Invalid { .. } | AppError::Fields(_))) => {
            let errors = FieldErrors::absorb(e, "production_per_hour")?;
            Ok(maintenance_page(&viewer, PeriodForm::default(), Some(raw), errors).await?)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap()
    }

    fn item(start: DateTime<Utc>, end: DateTime<Utc>) -> Item {
        Item {
            kind: Kind::Change,
            start,
            end,
            running: false,
            key: "CHG-1".into(),
            title: "Rotate".into(),
            href: None,
            facts: String::new(),
            environments: Vec::new(),
            all_environments: false,
        }
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
    }

    #[test]
    fn a_window_over_several_days_shows_on_each_day_it_touches() {
        let w = item(at(2, 22, 0), at(4, 2, 0));
        assert!(!touches(&w, day(1)));
        assert_eq!(when_on(&w, day(2)), "From 22:00 UTC");
        assert_eq!(when_on(&w, day(3)), "All day");
        assert_eq!(when_on(&w, day(4)), "Until 02:00 UTC");
        assert!(touches(&w, day(4)) && !touches(&w, day(5)));
        assert_eq!(
            when_whole(&w),
            "Mon 2 Nov 2026, 22:00 UTC to Wed 4 Nov 2026, 02:00 UTC"
        );
        // Ending at midnight, it does not reach into the next day.
        let w = item(at(2, 10, 0), at(3, 0, 0));
        assert!(touches(&w, day(2)) && !touches(&w, day(3)));
        assert_eq!(when_whole(&w), "Mon 2 Nov 2026, 10:00–00:00 UTC");
        let w = item(at(2, 10, 0), at(2, 11, 30));
        assert_eq!(when_on(&w, day(2)), "10:00–11:30 UTC");
    }

    #[test]
    fn days_of_a_maintenance_period_in_words() {
        assert_eq!(days_in_words(&WEEKDAYS), "Every day");
        assert_eq!(days_in_words(&WEEKDAYS[..5]), "Monday to Friday");
        assert_eq!(
            days_in_words(&[Weekday::Thu, Weekday::Tue]),
            "Tuesday, Thursday"
        );
    }

    #[test]
    fn periods_step_by_layout_and_stay_in_range() {
        let d = day(30);
        assert_eq!(
            step(View::Month, d, true),
            NaiveDate::from_ymd_opt(2026, 12, 1)
        );
        assert_eq!(
            step(View::Month, d, false),
            NaiveDate::from_ymd_opt(2026, 10, 1)
        );
        assert_eq!(
            step(View::Week, d, true),
            NaiveDate::from_ymd_opt(2026, 12, 7)
        );
        assert_eq!(
            step(View::List, d, false),
            NaiveDate::from_ymd_opt(2026, 11, 2)
        );
        let last = NaiveDate::from_ymd_opt(9999, 12, 20).unwrap();
        assert_eq!(step(View::Month, last, true), None);
    }

    #[test]
    fn filters_in_words() {
        let f = CalendarFilter {
            service: Some("payments".into()),
            environment: Some("PROD".into()),
            risk: Some("high".into()),
            state: Some("in_cab_review".into()),
        };
        assert_eq!(
            filter_in_words(&f, &[]),
            "Service payments, PROD, high risk, state “In CAB review”"
        );
        assert_eq!(
            filter_in_words(&CalendarFilter::default(), &[]),
            "Everything"
        );
        let mut errors = FieldErrors::default();
        let words = FilterWords {
            service: "Pay Ments!".into(),
            environment: "prod".into(),
            risk: "extreme".into(),
            state: "draft".into(),
        };
        let read = words.read(&mut errors).unwrap();
        assert_eq!(read.environment.as_deref(), Some("PROD"));
        assert!(errors.get("service").is_some());
        let risk = errors.get("risk").unwrap();
        assert!(risk.contains("Low, Medium, High, Critical"), "{risk}");
        let state = errors.get("state").unwrap();
        assert!(
            state.contains("In CAB review") && !state.contains('_'),
            "{state}"
        );
    }
}
