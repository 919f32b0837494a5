//! The change calendar: whether a change's window clashes with another
//! change to the same services, a freeze, a service's maintenance periods
//! or a limit on production changes per hour, and which windows nearby are
//! free. Every clash is named with a stable code and a sentence, so a
//! requester sees all that stands in the way at once and can move the
//! window rather than guess.

use chrono::{DateTime, Datelike, Days, Duration, DurationRound, NaiveTime, Utc, Weekday};
use serde::Serialize;
use uuid::Uuid;

use crate::deployment::Freeze;
use crate::text;

/// A half-open period [start, end): back-to-back windows do not overlap,
/// so one change may end at the minute the next begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    /// A window, when it lasts at all: an empty or inverted one is none.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Option<Window> {
        (start < end).then_some(Window { start, end })
    }

    /// Whether the two share at least one instant.
    pub fn overlaps(&self, other: &Window) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// Whether `other` lies wholly inside this one.
    pub fn contains(&self, other: &Window) -> bool {
        self.start <= other.start && other.end <= self.end
    }

    pub fn duration(&self) -> Duration {
        self.end - self.start
    }
}

/// The change being checked (a saved change, or a proposed window).
#[derive(Debug, Clone, Copy)]
pub struct Proposal<'a> {
    /// Itself, when saved: its own booking is not a clash.
    pub change_id: Option<Uuid>,
    pub window: Window,
    pub services: &'a [String],
    /// Environment keys in lower case: "dev", "test", "stage", "prod".
    pub environments: &'a [String],
    /// Whether it targets a production environment.
    pub production: bool,
}

/// Another change holding a window on the calendar.
#[derive(Debug, Clone)]
pub struct Booked {
    pub change_id: Uuid,
    /// Shown as CHG-<number>.
    pub number: i64,
    pub title: String,
    pub window: Window,
    pub services: Vec<String>,
    /// Lower-case keys; none means every environment.
    pub environments: Vec<String>,
    pub production: bool,
}

/// A service's recurring maintenance period, weekly, in UTC: it opens on each
/// of `weekdays` at `starts` and lasts `minutes` (it may run past midnight).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenancePeriod {
    pub service: String,
    pub weekdays: Vec<Weekday>,
    pub starts: NaiveTime,
    pub minutes: u32,
}

/// The days of the week in the order people list them.
const WEEK: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

impl MaintenancePeriod {
    fn length(&self) -> Duration {
        Duration::minutes(i64::from(self.minutes))
    }

    /// The start of the latest opening at or before `at`. Every opening
    /// lasts as long as the others, so it is also the one that ends last:
    /// if any opening covers a window starting at `at`, this one does. A
    /// week back always reaches the previous opening on the same weekday.
    fn latest_opening(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let day = at.date_naive();
        (0..=7)
            .filter_map(|back| day.checked_sub_days(Days::new(back)))
            .filter(|d| self.weekdays.contains(&d.weekday()))
            .map(|d| d.and_time(self.starts).and_utc())
            .find(|start| *start <= at)
    }

    /// Whether `w` lies wholly inside one opening of this period.
    pub fn covers(&self, w: &Window) -> bool {
        self.latest_opening(w.start)
            .is_some_and(|start| w.end <= start + self.length())
    }

    /// The openings that start in [from, to), in order.
    pub fn openings(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Window> {
        let last = to.date_naive();
        from.date_naive()
            .iter_days()
            .take_while(|d| *d <= last)
            .filter(|d| self.weekdays.contains(&d.weekday()))
            .map(|d| d.and_time(self.starts).and_utc())
            .filter(|start| from <= *start && *start < to)
            .filter_map(|start| Window::new(start, start + self.length()))
            .collect()
    }

    /// In words, e.g. "Tue, Thu 22:00–02:00 UTC": the days in week order,
    /// and the end as a time of day.
    pub fn describe(&self) -> String {
        let days: Vec<String> = WEEK
            .iter()
            .filter(|d| self.weekdays.contains(d))
            .map(|d| d.to_string())
            .collect();
        format!(
            "{} {}–{} UTC",
            days.join(", "),
            self.starts.format("%H:%M"),
            (self.starts + self.length()).format("%H:%M")
        )
    }
}

/// The shortest maintenance period: anything shorter fits no real change.
pub const MAINTENANCE_MIN_MINUTES: u32 = 15;
/// The longest: a week, after which the next week's opening begins.
pub const MAINTENANCE_MAX_MINUTES: u32 = 7 * 24 * 60;
/// The longest service name, as for a change's services.
const SERVICE_MAX_CHARS: usize = 100;

/// Errors people can fix, for a maintenance period typed into a form: the
/// field and a sentence for each.
pub fn check_maintenance_period(p: &MaintenancePeriod) -> Vec<(&'static str, String)> {
    let mut errors = Vec::new();
    let service = p.service.trim();
    if service.is_empty() {
        errors.push(("service", "Name the service the period is for.".into()));
    } else if service.chars().count() > SERVICE_MAX_CHARS {
        errors.push((
            "service",
            format!("A service name is at most {SERVICE_MAX_CHARS} characters."),
        ));
    } else if let Some(problem) = text::name_problem(service) {
        errors.push(("service", problem));
    }
    if p.weekdays.is_empty() {
        errors.push(("weekdays", "Choose at least one day of the week.".into()));
    }
    if p.minutes < MAINTENANCE_MIN_MINUTES {
        errors.push((
            "minutes",
            format!("A maintenance period lasts at least {MAINTENANCE_MIN_MINUTES} minutes."),
        ));
    } else if p.minutes > MAINTENANCE_MAX_MINUTES {
        errors.push((
            "minutes",
            format!(
                "A maintenance period lasts at most a week ({MAINTENANCE_MAX_MINUTES} minutes)."
            ),
        ));
    }
    errors
}

/// Limits an administrator may set on the calendar; none by default.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// The most production changes whose windows touch one clock hour.
    pub production_per_hour: Option<u32>,
}

/// A reason a window is not free.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Conflict {
    /// Another change touches one of the same services in an overlapping
    /// window, in a shared environment. `services` and `environments` are
    /// the shared ones.
    ServiceOverlap {
        change_id: Uuid,
        number: i64,
        title: String,
        window: Window,
        services: Vec<String>,
        environments: Vec<String>,
    },
    /// A freeze covers part of the window for one of its environments and
    /// services; its own period and lists are reported.
    Freeze {
        reason: String,
        window: Window,
        environments: Vec<String>,
        services: Vec<String>,
    },
    /// The window does not lie within one of the service's maintenance
    /// periods, described in words.
    OutsideMaintenance {
        service: String,
        periods: Vec<String>,
    },
    /// Too many production changes in one clock hour.
    BusyHour {
        hour: DateTime<Utc>,
        count: u32,
        limit: u32,
    },
}

/// A moment as people read it on the calendar: "2026-11-24 10:00 UTC".
fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// Environments as people write them ("PROD, STAGE"); none means all.
fn environments_in_words(environments: &[String]) -> String {
    if environments.is_empty() {
        "every environment".into()
    } else {
        environments
            .iter()
            .map(|e| e.to_uppercase())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Conflict {
    /// A stable code for clients and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Conflict::ServiceOverlap { .. } => "service_overlap",
            Conflict::Freeze { .. } => "freeze",
            Conflict::OutsideMaintenance { .. } => "outside_maintenance",
            Conflict::BusyHour { .. } => "busy_hour",
        }
    }

    /// One sentence in people's words: changes by number, environments in
    /// capitals, times in UTC; no ids or codes.
    pub fn sentence(&self) -> String {
        match self {
            Conflict::ServiceOverlap {
                number,
                title,
                window,
                services,
                environments,
                ..
            } => format!(
                "CHG-{number} “{title}” also changes {} in {} from {} to {}.",
                services.join(", "),
                environments_in_words(environments),
                when(window.start),
                when(window.end)
            ),
            Conflict::Freeze {
                reason,
                window,
                environments,
                services,
            } => {
                let services = if services.is_empty() {
                    "every service".to_string()
                } else {
                    services.join(", ")
                };
                let reason = reason.trim();
                let because = if reason.is_empty() {
                    String::new()
                } else {
                    format!(": {reason}")
                };
                format!(
                    "A freeze on {services} in {} runs from {} to {}{because}.",
                    environments_in_words(environments),
                    when(window.start),
                    when(window.end)
                )
            }
            Conflict::OutsideMaintenance { service, periods } => format!(
                "{service} is changed only within its maintenance periods ({}), and this window is not wholly inside one.",
                periods.join("; ")
            ),
            Conflict::BusyHour { hour, count, limit } => format!(
                "The hour from {} would hold {count} production changes; the limit is {limit}.",
                when(*hour)
            ),
        }
    }
}

/// The clock hour `t` falls in.
fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::hours(1)).unwrap_or(t)
}

/// The most clock hours of one window counted for the busy-hour limit (31
/// days): a longer window is refused or allowed on its first month.
const BUSY_HOURS_EXAMINED: usize = 744;

/// Bookings sorted by start (then number), with the latest end seen so far
/// at each position, so the bookings overlapping a window are found by two
/// binary searches and a scan of the few in between.
struct Bookings<'a> {
    list: Vec<&'a Booked>,
    reach: Vec<DateTime<Utc>>,
}

impl<'a> Bookings<'a> {
    fn new(mut list: Vec<&'a Booked>) -> Self {
        list.sort_by_key(|b| (b.window.start, b.number));
        let reach = list
            .iter()
            .scan(DateTime::<Utc>::MIN_UTC, |far, b| {
                *far = (*far).max(b.window.end);
                Some(*far)
            })
            .collect();
        Bookings { list, reach }
    }

    /// Those overlapping `w`, by start then number. Before `first` every
    /// booking has ended by `w.start`; from `last` on none starts before
    /// `w.end`.
    fn overlapping(&self, w: Window) -> impl Iterator<Item = &'a Booked> + '_ {
        let first = self.reach.partition_point(|far| *far <= w.start);
        let last = self.list.partition_point(|b| b.window.start < w.end);
        self.list
            .get(first..last)
            .unwrap_or_default()
            .iter()
            .copied()
            .filter(move |b| w.start < b.window.end)
    }
}

/// A proposal's rules, with everything that does not depend on the window
/// worked out once: the bookings, freezes and maintenance periods that can
/// concern it. Checking one window then looks only at what is near it.
struct Checker<'a> {
    proposal: &'a Proposal<'a>,
    /// Others sharing a service and an environment with the proposal.
    sharing: Bookings<'a>,
    /// Freezes that apply to the proposal's environments and services.
    freezes: Vec<&'a Freeze>,
    /// Each of the proposal's services that has maintenance periods, by
    /// name, with its periods.
    maintenance: Vec<(&'a str, Vec<&'a MaintenancePeriod>)>,
    /// The limit, and the other production changes, when the limit applies.
    busy: Option<(u32, Bookings<'a>)>,
}

/// Whether two environment lists meet; an empty one is every environment.
fn environments_meet(a: &[String], b: &[String]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|e| b.contains(e))
}

impl<'a> Checker<'a> {
    fn new(
        p: &'a Proposal<'a>,
        booked: &'a [Booked],
        freezes: &'a [Freeze],
        maintenance: &'a [MaintenancePeriod],
        limits: Limits,
    ) -> Self {
        let others: Vec<&Booked> = booked
            .iter()
            .filter(|b| Some(b.change_id) != p.change_id)
            .collect();
        let sharing = others
            .iter()
            .copied()
            .filter(|b| {
                b.services.iter().any(|s| p.services.contains(s))
                    && environments_meet(p.environments, &b.environments)
            })
            .collect();
        let busy = limits
            .production_per_hour
            .filter(|_| p.production)
            .map(|limit| {
                let production = others.iter().copied().filter(|b| b.production).collect();
                (limit, Bookings::new(production))
            });
        let freezes = freezes
            .iter()
            .filter(|f| {
                if p.environments.is_empty() {
                    f.applies_to("", p.services)
                } else {
                    p.environments.iter().any(|e| f.applies_to(e, p.services))
                }
            })
            .collect();
        let mut services: Vec<&str> = p.services.iter().map(String::as_str).collect();
        services.sort_unstable();
        services.dedup();
        let maintenance = services
            .into_iter()
            .map(|s| {
                let periods: Vec<&MaintenancePeriod> =
                    maintenance.iter().filter(|m| m.service == s).collect();
                (s, periods)
            })
            .filter(|(_, periods)| !periods.is_empty())
            .collect();
        Checker {
            proposal: p,
            sharing: Bookings::new(sharing),
            freezes,
            maintenance,
            busy,
        }
    }

    /// The shared part of two lists, in the proposal's order, once each.
    fn shared(mine: &[String], theirs: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in mine {
            if theirs.contains(s) && !out.contains(s) {
                out.push(s.clone());
            }
        }
        out
    }

    /// The first clock hour of `w` with more production changes than the
    /// limit, and how many.
    fn busy_hour(&self, w: Window) -> Option<Conflict> {
        let (limit, production) = self.busy.as_ref()?;
        let mut hour = hour_of(w.start);
        for _ in 0..BUSY_HOURS_EXAMINED {
            if hour >= w.end {
                break;
            }
            let next = hour + Duration::hours(1);
            let others = production
                .overlapping(Window {
                    start: hour,
                    end: next,
                })
                .count();
            let count = u32::try_from(others).unwrap_or(u32::MAX).saturating_add(1);
            if count > *limit {
                return Some(Conflict::BusyHour {
                    hour,
                    count,
                    limit: *limit,
                });
            }
            hour = next;
        }
        None
    }

    /// Every clash of the proposal's rules with a window `w`, in the order
    /// [`conflicts`] gives. Lazy, so that asking whether a window is free
    /// stops at the first clash and builds no more than it.
    fn at(&self, w: Window) -> impl Iterator<Item = Conflict> + '_ {
        let p = self.proposal;
        let overlaps = self
            .sharing
            .overlapping(w)
            .map(move |b| Conflict::ServiceOverlap {
                change_id: b.change_id,
                number: b.number,
                title: b.title.clone(),
                window: b.window,
                services: Self::shared(p.services, &b.services),
                environments: if p.environments.is_empty() {
                    b.environments.clone()
                } else if b.environments.is_empty() {
                    p.environments.to_vec()
                } else {
                    Self::shared(p.environments, &b.environments)
                },
            });
        let freezes = self
            .freezes
            .iter()
            .filter(move |f| f.starts_at < w.end && w.start < f.ends_at)
            .map(|f| Conflict::Freeze {
                reason: f.reason.clone(),
                window: Window {
                    start: f.starts_at,
                    end: f.ends_at,
                },
                environments: f.environments.clone(),
                services: f.services.clone(),
            });
        let outside = self
            .maintenance
            .iter()
            .filter(move |(_, periods)| !periods.iter().any(|m| m.covers(&w)))
            .map(|(service, periods)| Conflict::OutsideMaintenance {
                service: (*service).to_string(),
                periods: periods.iter().map(|m| m.describe()).collect(),
            });
        let busy = std::iter::once_with(move || self.busy_hour(w)).flatten();
        overlaps.chain(freezes).chain(outside).chain(busy)
    }

    /// Whether nothing stands in the way of `w`.
    fn is_free(&self, w: Window) -> bool {
        self.at(w).next().is_none()
    }
}

/// Everything that stands in the way of the proposal's window: overlapping
/// changes to the same services (by start, then number), freezes, services
/// whose maintenance periods it falls outside (by service), and the first
/// hour with too many production changes. A booking of the proposal itself
/// is ignored.
pub fn conflicts(
    p: &Proposal,
    booked: &[Booked],
    freezes: &[Freeze],
    maintenance: &[MaintenancePeriod],
    limits: Limits,
) -> Vec<Conflict> {
    Checker::new(p, booked, freezes, maintenance, limits)
        .at(p.window)
        .collect()
}

/// Up to `want` windows of the proposal's duration, starting at or after
/// `not_before` and no later than `not_before + horizon`, that have no
/// conflict, earliest first, not overlapping one another.
///
/// A window becomes free when something blocking it ends, so the starts
/// tried are the proposal's own (or `not_before`, when the proposal starts
/// earlier), the end of every booking and freeze, the next whole hour after
/// every booking's end (when a busy hour is over), and every opening of the
/// proposal's services' maintenance periods.
#[allow(clippy::too_many_arguments)]
pub fn free_slots(
    p: &Proposal,
    booked: &[Booked],
    freezes: &[Freeze],
    maintenance: &[MaintenancePeriod],
    limits: Limits,
    not_before: DateTime<Utc>,
    horizon: Duration,
    want: usize,
) -> Vec<Window> {
    let Some(latest) = not_before.checked_add_signed(horizon) else {
        return Vec::new();
    };
    let checker = Checker::new(p, booked, freezes, maintenance, limits);
    let length = p.window.duration();
    let mut starts = vec![p.window.start.max(not_before)];
    for b in booked.iter().filter(|b| Some(b.change_id) != p.change_id) {
        starts.push(b.window.end);
        starts.push(hour_of(b.window.end) + Duration::hours(1));
    }
    starts.extend(freezes.iter().map(|f| f.ends_at));
    // Openings are half-open at their far end; the latest start is allowed.
    let past_latest = latest + Duration::nanoseconds(1);
    for (_, periods) in &checker.maintenance {
        for m in periods {
            starts.extend(m.openings(not_before, past_latest).iter().map(|o| o.start));
        }
    }
    starts.retain(|s| not_before <= *s && *s <= latest);
    starts.sort_unstable();
    starts.dedup();

    let mut chosen: Vec<Window> = Vec::new();
    for start in starts {
        if chosen.len() >= want {
            break;
        }
        let w = Window {
            start,
            end: start + length,
        };
        // Starts come in order and every slot is as long, so only the last
        // one chosen can overlap.
        if chosen.last().is_some_and(|c| c.overlaps(&w)) {
            continue;
        }
        if checker.is_free(w) {
            chosen.push(w);
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// A moment in November 2026; the 24th is a Tuesday.
    fn at(day: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, h, m, 0).unwrap()
    }

    fn win(start: DateTime<Utc>, end: DateTime<Utc>) -> Window {
        Window::new(start, end).unwrap()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// The change under test is change 1.
    fn proposal<'a>(window: Window, services: &'a [String], envs: &'a [String]) -> Proposal<'a> {
        Proposal {
            change_id: Some(id(1)),
            window,
            services,
            environments: envs,
            production: envs.iter().any(|e| e == "prod"),
        }
    }

    fn booking(n: i64, window: Window, services: &[&str], envs: &[&str]) -> Booked {
        Booked {
            change_id: id(n as u128),
            number: n,
            title: format!("Change {n}"),
            window,
            services: strings(services),
            environments: strings(envs),
            production: envs.contains(&"prod"),
        }
    }

    fn freeze(
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        envs: &[&str],
        services: &[&str],
    ) -> Freeze {
        Freeze {
            starts_at: start,
            ends_at: end,
            reason: "Quarter close".into(),
            environments: strings(envs),
            services: strings(services),
        }
    }

    /// Tuesdays and Thursdays, 22:00 for four hours.
    fn late_tue_thu(service: &str) -> MaintenancePeriod {
        MaintenancePeriod {
            service: service.into(),
            weekdays: vec![Weekday::Thu, Weekday::Tue],
            starts: NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
            minutes: 240,
        }
    }

    fn codes(found: &[Conflict]) -> Vec<&'static str> {
        found.iter().map(Conflict::code).collect()
    }

    fn numbers(found: &[Conflict]) -> Vec<i64> {
        found
            .iter()
            .filter_map(|c| match c {
                Conflict::ServiceOverlap { number, .. } => Some(*number),
                _ => None,
            })
            .collect()
    }

    fn check(p: &Proposal, booked: &[Booked]) -> Vec<Conflict> {
        conflicts(p, booked, &[], &[], Limits::default())
    }

    #[test]
    fn a_window_lasts_and_is_half_open() {
        assert_eq!(Window::new(at(24, 10, 0), at(24, 10, 0)), None);
        assert_eq!(Window::new(at(24, 11, 0), at(24, 10, 0)), None);
        let w = Window::new(at(24, 10, 0), at(24, 10, 1)).unwrap();
        assert_eq!((w.start, w.end), (at(24, 10, 0), at(24, 10, 1)));
        assert_eq!(
            win(at(24, 10, 0), at(24, 12, 30)).duration(),
            Duration::minutes(150)
        );

        let w = win(at(24, 10, 0), at(24, 12, 0));
        // Back to back on either side: no shared instant.
        assert!(!w.overlaps(&win(at(24, 12, 0), at(24, 13, 0))));
        assert!(!w.overlaps(&win(at(24, 9, 0), at(24, 10, 0))));
        assert!(!win(at(24, 12, 0), at(24, 13, 0)).overlaps(&w));
        assert!(w.overlaps(&win(at(24, 11, 59), at(24, 13, 0))));
        assert!(w.overlaps(&win(at(24, 9, 0), at(24, 10, 1))));
        assert!(w.overlaps(&win(at(24, 10, 30), at(24, 11, 0))));
        assert!(w.overlaps(&win(at(24, 9, 0), at(24, 13, 0))));

        assert!(w.contains(&w));
        assert!(w.contains(&win(at(24, 10, 0), at(24, 11, 0))));
        assert!(w.contains(&win(at(24, 11, 0), at(24, 12, 0))));
        assert!(!w.contains(&win(at(24, 9, 59), at(24, 11, 0))));
        assert!(!w.contains(&win(at(24, 11, 0), at(24, 12, 1))));
        assert!(!w.contains(&win(at(24, 9, 0), at(24, 13, 0))));
    }

    #[test]
    fn back_to_back_changes_are_free_and_one_second_of_overlap_is_not() {
        let services = strings(&["payments"]);
        let envs = strings(&["prod"]);
        let p = proposal(win(at(24, 10, 0), at(24, 12, 0)), &services, &envs);
        let before = booking(
            7,
            win(at(24, 8, 0), at(24, 10, 0)),
            &["payments"],
            &["prod"],
        );
        let after = booking(
            8,
            win(at(24, 12, 0), at(24, 14, 0)),
            &["payments"],
            &["prod"],
        );
        assert_eq!(check(&p, &[before.clone(), after.clone()]), []);

        let mut late = before;
        late.window.end = at(24, 10, 0) + Duration::seconds(1);
        let mut early = after;
        early.window.start = at(24, 12, 0) - Duration::seconds(1);
        let found = check(&p, &[early.clone(), late.clone()]);
        assert_eq!(numbers(&found), [7, 8]);
        assert_eq!(
            found[0],
            Conflict::ServiceOverlap {
                change_id: id(7),
                number: 7,
                title: "Change 7".into(),
                window: late.window,
                services: strings(&["payments"]),
                environments: strings(&["prod"]),
            }
        );
    }

    #[test]
    fn only_shared_services_in_shared_environments_clash() {
        let services = strings(&["payments", "ledger", "payments"]);
        let envs = strings(&["stage", "prod"]);
        let p = proposal(win(at(24, 10, 0), at(24, 12, 0)), &services, &envs);
        let w = win(at(24, 11, 0), at(24, 13, 0));
        let other_service = booking(2, w, &["search"], &["prod"]);
        let other_env = booking(3, w, &["payments"], &["dev", "test"]);
        assert_eq!(check(&p, &[other_service, other_env]), []);

        let shared = booking(
            4,
            w,
            &["search", "ledger", "payments"],
            &["test", "prod", "stage"],
        );
        match &check(&p, &[shared])[..] {
            [
                Conflict::ServiceOverlap {
                    services,
                    environments,
                    ..
                },
            ] => {
                assert_eq!(services, &strings(&["payments", "ledger"]));
                assert_eq!(environments, &strings(&["stage", "prod"]));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_empty_environment_list_is_every_environment() {
        let services = strings(&["payments"]);
        let none: Vec<String> = vec![];
        let stage = strings(&["stage"]);
        let w = win(at(24, 10, 0), at(24, 12, 0));
        let shared = |found: Vec<Conflict>| match &found[..] {
            [Conflict::ServiceOverlap { environments, .. }] => environments.clone(),
            other => panic!("{other:?}"),
        };

        // The proposal names none: the booking's list is what is shared.
        let p = proposal(w, &services, &none);
        let b = booking(2, w, &["payments"], &["dev", "prod"]);
        assert_eq!(shared(check(&p, &[b])), strings(&["dev", "prod"]));

        // The booking names none: the proposal's list is.
        let p = proposal(w, &services, &stage);
        let b = booking(2, w, &["payments"], &[]);
        assert_eq!(
            shared(check(&p, std::slice::from_ref(&b))),
            strings(&["stage"])
        );

        // Neither does.
        let p = proposal(w, &services, &none);
        assert_eq!(shared(check(&p, &[b])), Vec::<String>::new());
    }

    #[test]
    fn the_change_itself_is_ignored_everywhere() {
        let services = strings(&["payments"]);
        let envs = strings(&["prod"]);
        let w = win(at(24, 10, 0), at(24, 12, 0));
        let p = proposal(w, &services, &envs);
        let me = booking(1, w, &["payments"], &["prod"]);
        let limits = Limits {
            production_per_hour: Some(1),
        };
        assert_eq!(
            conflicts(&p, std::slice::from_ref(&me), &[], &[], limits),
            []
        );

        // Unsaved, the same booking is another change.
        let unsaved = Proposal {
            change_id: None,
            ..p
        };
        let found = conflicts(&unsaved, std::slice::from_ref(&me), &[], &[], limits);
        assert_eq!(codes(&found), ["service_overlap", "busy_hour"]);

        // Nor does its own booking stand in the way of a slot.
        let later = booking(
            1,
            win(at(24, 14, 0), at(24, 15, 0)),
            &["payments"],
            &["prod"],
        );
        let blocker = booking(
            2,
            win(at(24, 9, 0), at(24, 14, 0)),
            &["payments"],
            &["prod"],
        );
        let slots = free_slots(
            &p,
            &[later, blocker],
            &[],
            &[],
            Limits::default(),
            at(24, 0, 0),
            Duration::days(1),
            1,
        );
        assert_eq!(slots, [win(at(24, 14, 0), at(24, 16, 0))]);
    }

    #[test]
    fn only_overlapping_bookings_are_reported_among_long_ones() {
        let services = strings(&["payments"]);
        let envs = strings(&["prod"]);
        let p = proposal(win(at(24, 10, 0), at(24, 12, 0)), &services, &envs);
        let booked = [
            booking(
                5,
                win(at(24, 12, 0), at(24, 13, 0)),
                &["payments"],
                &["prod"],
            ),
            booking(
                4,
                win(at(24, 11, 0), at(24, 12, 30)),
                &["payments"],
                &["prod"],
            ),
            booking(
                3,
                win(at(24, 9, 0), at(24, 10, 0)),
                &["payments"],
                &["prod"],
            ),
            booking(
                2,
                win(at(24, 8, 0), at(24, 11, 0)),
                &["payments"],
                &["prod"],
            ),
            booking(
                9,
                win(at(24, 11, 0), at(24, 11, 30)),
                &["payments"],
                &["prod"],
            ),
            booking(6, win(at(23, 8, 0), at(23, 9, 0)), &["payments"], &["prod"]),
        ];
        assert_eq!(numbers(&check(&p, &booked)), [2, 4, 9]);
    }

    #[test]
    fn freezes_apply_by_environment_and_by_service() {
        let services = strings(&["payments"]);
        let prod = strings(&["prod"]);
        let w = win(at(24, 10, 0), at(24, 12, 0));
        let p = proposal(w, &services, &prod);
        let run =
            |freezes: &[Freeze]| codes(&conflicts(&p, &[], freezes, &[], Limits::default())).len();
        let (s, e) = (at(24, 0, 0), at(25, 0, 0));
        assert_eq!(run(&[freeze(s, e, &[], &[])]), 1);
        assert_eq!(run(&[freeze(s, e, &["prod"], &[])]), 1);
        assert_eq!(run(&[freeze(s, e, &["stage"], &[])]), 0);
        assert_eq!(run(&[freeze(s, e, &[], &["payments"])]), 1);
        assert_eq!(run(&[freeze(s, e, &[], &["search"])]), 0);
        assert_eq!(run(&[freeze(s, e, &["prod"], &["search"])]), 0);
        assert_eq!(run(&[freeze(s, e, &["stage"], &["payments"])]), 0);
        // Its period is half-open like a window.
        assert_eq!(run(&[freeze(at(24, 12, 0), e, &[], &[])]), 0);
        assert_eq!(run(&[freeze(s, at(24, 10, 0), &[], &[])]), 0);
        assert_eq!(run(&[freeze(at(24, 11, 59), e, &[], &[])]), 1);
        assert_eq!(run(&[freeze(s, at(24, 10, 1), &[], &[])]), 1);
        // A lifted freeze is one whose end the caller has moved earlier.
        assert_eq!(run(&[freeze(at(24, 8, 0), at(24, 9, 30), &[], &[])]), 0);

        // Any one of several environments is enough.
        let envs = strings(&["stage", "prod"]);
        let p = proposal(w, &services, &envs);
        let f = freeze(s, e, &["prod"], &["payments", "search"]);
        assert_eq!(
            conflicts(&p, &[], &[f], &[], Limits::default()),
            [Conflict::Freeze {
                reason: "Quarter close".into(),
                window: win(s, e),
                environments: strings(&["prod"]),
                services: strings(&["payments", "search"]),
            }]
        );

        // With no environment, only a freeze of every environment applies.
        let none: Vec<String> = vec![];
        let p = proposal(w, &services, &none);
        let found = conflicts(
            &p,
            &[],
            &[
                freeze(s, e, &["prod"], &[]),
                freeze(s, e, &[], &["payments"]),
            ],
            &[],
            Limits::default(),
        );
        assert!(
            matches!(&found[..], [Conflict::Freeze { environments, .. }] if environments.is_empty())
        );
    }

    #[test]
    fn a_maintenance_period_may_run_past_midnight() {
        let m = late_tue_thu("payments");
        assert!(m.covers(&win(at(24, 23, 0), at(25, 1, 30))));
        assert!(m.covers(&win(at(24, 22, 0), at(25, 2, 0))));
        assert!(m.covers(&win(at(25, 1, 59), at(25, 2, 0))));
        assert!(!m.covers(&win(at(24, 21, 30), at(24, 23, 0))));
        assert!(!m.covers(&win(at(25, 1, 0), at(25, 2, 30))));
        assert!(!m.covers(&win(at(24, 22, 0), at(25, 2, 1))));
        assert!(!m.covers(&win(at(25, 2, 0), at(25, 3, 0))));
        // Not on a Monday or a Wednesday; a Thursday a week on is fine.
        assert!(!m.covers(&win(at(23, 23, 0), at(24, 0, 30))));
        assert!(!m.covers(&win(at(25, 23, 0), at(26, 0, 30))));
        assert!(m.covers(&win(at(26, 23, 0), at(27, 0, 30))));
        // Before Tuesday's opening, the latest one is last Thursday's.
        assert!(!m.covers(&win(at(24, 8, 0), at(24, 9, 0))));
        assert!(!m.covers(&win(at(28, 23, 0), at(29, 0, 30))));
        let empty = MaintenancePeriod {
            weekdays: vec![],
            ..m.clone()
        };
        assert!(!empty.covers(&win(at(24, 23, 0), at(25, 0, 30))));

        // A week-long opening covers what falls in it, up to the next week.
        let week = MaintenancePeriod {
            weekdays: vec![Weekday::Mon],
            minutes: MAINTENANCE_MAX_MINUTES,
            ..m.clone()
        };
        assert!(week.covers(&win(at(23, 22, 0), at(30, 22, 0))));
        assert!(week.covers(&win(at(30, 21, 0), at(30, 22, 0))));
        assert!(!week.covers(&win(at(30, 21, 0), at(30, 22, 1))));
    }

    #[test]
    fn the_window_must_lie_inside_a_period_of_each_service_that_has_one() {
        let services = strings(&["payments", "search", "ledger"]);
        let envs = strings(&["prod"]);
        let periods = [
            late_tue_thu("payments"),
            MaintenancePeriod {
                service: "ledger".into(),
                weekdays: vec![Weekday::Wed],
                starts: NaiveTime::from_hms_opt(1, 0, 0).unwrap(),
                minutes: 120,
            },
            MaintenancePeriod {
                service: "other".into(),
                weekdays: vec![Weekday::Sun],
                starts: NaiveTime::from_hms_opt(1, 0, 0).unwrap(),
                minutes: 15,
            },
        ];
        let run = |w: Window| {
            let p = proposal(w, &services, &envs);
            conflicts(&p, &[], &[], &periods, Limits::default())
        };
        // Inside both the ledger's and the payments' period; search has none.
        assert_eq!(run(win(at(25, 1, 0), at(25, 1, 30))), []);
        // Inside the payments' only.
        assert_eq!(
            run(win(at(24, 23, 0), at(25, 0, 30))),
            [Conflict::OutsideMaintenance {
                service: "ledger".into(),
                periods: vec!["Wed 01:00–03:00 UTC".into()],
            }]
        );
        // Inside neither: by service.
        let found = run(win(at(24, 12, 0), at(24, 13, 0)));
        let services: Vec<&str> = found
            .iter()
            .map(|c| match c {
                Conflict::OutsideMaintenance { service, .. } => service.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(services, ["ledger", "payments"]);

        // Two periods for one service: one covering is enough.
        let only = strings(&["payments"]);
        let two = [
            late_tue_thu("payments"),
            MaintenancePeriod {
                service: "payments".into(),
                weekdays: vec![Weekday::Tue],
                starts: NaiveTime::from_hms_opt(12, 0, 0).unwrap(),
                minutes: 60,
            },
        ];
        let p = proposal(win(at(24, 12, 0), at(24, 13, 0)), &only, &envs);
        assert_eq!(conflicts(&p, &[], &[], &two, Limits::default()), []);
        let p = proposal(win(at(24, 12, 30), at(24, 13, 30)), &only, &envs);
        assert_eq!(
            conflicts(&p, &[], &[], &two, Limits::default()),
            [Conflict::OutsideMaintenance {
                service: "payments".into(),
                periods: vec![
                    "Tue, Thu 22:00–02:00 UTC".into(),
                    "Tue 12:00–13:00 UTC".into()
                ],
            }]
        );
    }

    #[test]
    fn openings_start_within_the_range() {
        let m = late_tue_thu("payments");
        // Tuesday the 24th and Thursday the 26th, in order.
        assert_eq!(
            m.openings(at(23, 0, 0), at(27, 0, 0)),
            [
                win(at(24, 22, 0), at(25, 2, 0)),
                win(at(26, 22, 0), at(27, 2, 0))
            ]
        );
        // The start is included, the end is not.
        assert_eq!(
            m.openings(at(24, 22, 0), at(26, 22, 0)),
            [win(at(24, 22, 0), at(25, 2, 0))]
        );
        assert_eq!(
            m.openings(at(24, 22, 1), at(26, 22, 1)),
            [win(at(26, 22, 0), at(27, 2, 0))]
        );
        // An opening that began before the range is not one of them.
        assert_eq!(m.openings(at(25, 0, 0), at(26, 12, 0)), []);
        assert_eq!(
            m.openings(at(24, 0, 0), at(24, 23, 0)),
            [win(at(24, 22, 0), at(25, 2, 0))]
        );
        assert_eq!(m.openings(at(27, 0, 0), at(23, 0, 0)), []);
        // Across the end of the month.
        assert_eq!(m.openings(at(29, 0, 0), at(30, 23, 0)), []);
        assert_eq!(
            m.openings(
                at(30, 0, 0),
                Utc.with_ymd_and_hms(2026, 12, 2, 0, 0, 0).unwrap()
            ),
            [win(
                Utc.with_ymd_and_hms(2026, 12, 1, 22, 0, 0).unwrap(),
                Utc.with_ymd_and_hms(2026, 12, 2, 2, 0, 0).unwrap()
            )]
        );
    }

    #[test]
    fn a_period_in_words() {
        assert_eq!(
            late_tue_thu("payments").describe(),
            "Tue, Thu 22:00–02:00 UTC"
        );
        let every_day = MaintenancePeriod {
            service: "search".into(),
            weekdays: vec![
                Weekday::Sun,
                Weekday::Sat,
                Weekday::Fri,
                Weekday::Thu,
                Weekday::Wed,
                Weekday::Tue,
                Weekday::Mon,
                Weekday::Mon,
            ],
            starts: NaiveTime::from_hms_opt(6, 30, 0).unwrap(),
            minutes: 45,
        };
        assert_eq!(
            every_day.describe(),
            "Mon, Tue, Wed, Thu, Fri, Sat, Sun 06:30–07:15 UTC"
        );
    }

    #[test]
    fn a_maintenance_period_form_is_checked() {
        let fields = |p: &MaintenancePeriod| -> Vec<&'static str> {
            check_maintenance_period(p)
                .iter()
                .map(|(f, _)| *f)
                .collect()
        };
        let good = late_tue_thu("payments");
        assert_eq!(check_maintenance_period(&good), []);
        let with = |minutes| MaintenancePeriod {
            minutes,
            ..good.clone()
        };
        assert_eq!(fields(&with(14)), ["minutes"]);
        assert_eq!(fields(&with(15)), Vec::<&str>::new());
        assert_eq!(fields(&with(10080)), Vec::<&str>::new());
        assert_eq!(fields(&with(10081)), ["minutes"]);
        assert_eq!(
            check_maintenance_period(&with(14))[0].1,
            "A maintenance period lasts at least 15 minutes."
        );
        assert_eq!(
            check_maintenance_period(&with(10081))[0].1,
            "A maintenance period lasts at most a week (10080 minutes)."
        );

        let named = |service: String| MaintenancePeriod {
            service,
            ..good.clone()
        };
        assert_eq!(fields(&named("   ".into())), ["service"]);
        assert_eq!(
            check_maintenance_period(&named(String::new()))[0].1,
            "Name the service the period is for."
        );
        assert_eq!(
            fields(&named(format!("  {}  ", "a".repeat(100)))),
            Vec::<&str>::new()
        );
        assert_eq!(fields(&named("é".repeat(100))), Vec::<&str>::new());
        assert_eq!(fields(&named("a".repeat(101))), ["service"]);
        assert_eq!(
            check_maintenance_period(&named("a".repeat(101)))[0].1,
            "A service name is at most 100 characters."
        );
        assert_eq!(fields(&named("pay\u{202E}ments".into())), ["service"]);

        let no_days = MaintenancePeriod {
            weekdays: vec![],
            ..good.clone()
        };
        assert_eq!(fields(&no_days), ["weekdays"]);
        let all_wrong = MaintenancePeriod {
            service: String::new(),
            weekdays: vec![],
            starts: good.starts,
            minutes: 0,
        };
        assert_eq!(fields(&all_wrong), ["service", "weekdays", "minutes"]);
    }

    #[test]
    fn production_changes_per_hour_are_limited() {
        let services = strings(&["payments"]);
        let prod = strings(&["prod"]);
        let stage = strings(&["stage"]);
        // From 10:30 to 11:30: the hours from 10:00 and from 11:00.
        let w = win(at(24, 10, 30), at(24, 11, 30));
        let limit = |n| Limits {
            production_per_hour: Some(n),
        };
        // Other services, so only the hourly count can clash.
        let booked = [
            booking(
                2,
                win(at(24, 11, 0), at(24, 11, 10)),
                &["search"],
                &["prod"],
            ),
            booking(
                3,
                win(at(24, 11, 50), at(24, 12, 10)),
                &["ledger"],
                &["prod"],
            ),
            booking(4, win(at(24, 9, 0), at(24, 10, 0)), &["ledger"], &["prod"]),
            booking(5, win(at(24, 12, 0), at(24, 13, 0)), &["ledger"], &["prod"]),
            booking(
                6,
                win(at(24, 10, 0), at(24, 11, 0)),
                &["ledger"],
                &["stage"],
            ),
        ];
        let p = proposal(w, &services, &prod);
        // The hour from 11:00 holds the proposal, 2 and 3.
        assert_eq!(conflicts(&p, &booked, &[], &[], limit(3)), []);
        assert_eq!(
            conflicts(&p, &booked, &[], &[], limit(2)),
            [Conflict::BusyHour {
                hour: at(24, 11, 0),
                count: 3,
                limit: 2,
            }]
        );
        // The hour from 10:00 holds the proposal alone (6 is not
        // production), so it is the first to pass a limit of none.
        assert_eq!(
            conflicts(&p, &booked, &[], &[], limit(0)),
            [Conflict::BusyHour {
                hour: at(24, 10, 0),
                count: 1,
                limit: 0,
            }]
        );
        // 6 is not production: with a limit of one, the hour from 10:00 is
        // fine.
        assert_eq!(
            conflicts(&p, &booked, &[], &[], limit(1)),
            [Conflict::BusyHour {
                hour: at(24, 11, 0),
                count: 3,
                limit: 1,
            }]
        );
        // No limit, or a proposal that is not for production: no count.
        assert_eq!(conflicts(&p, &booked, &[], &[], Limits::default()), []);
        let p = proposal(w, &services, &stage);
        assert_eq!(conflicts(&p, &booked, &[], &[], limit(0)), []);

        // A window ending on the hour does not touch the next one.
        let p = proposal(win(at(24, 10, 0), at(24, 11, 0)), &services, &prod);
        assert_eq!(conflicts(&p, &booked, &[], &[], limit(1)), []);
    }

    #[test]
    fn a_long_window_is_counted_for_its_first_month() {
        let services = strings(&["payments"]);
        let prod = strings(&["prod"]);
        let start = at(1, 0, 0);
        let p = proposal(win(start, start + Duration::days(40)), &services, &prod);
        let limits = Limits {
            production_per_hour: Some(1),
        };
        let busy_at = |hours: i64| {
            let h = start + Duration::hours(hours);
            booking(2, win(h, h + Duration::minutes(5)), &["search"], &["prod"])
        };
        assert_eq!(
            conflicts(&p, &[busy_at(743)], &[], &[], limits),
            [Conflict::BusyHour {
                hour: start + Duration::hours(743),
                count: 2,
                limit: 1,
            }]
        );
        assert_eq!(conflicts(&p, &[busy_at(744)], &[], &[], limits), []);
    }

    #[test]
    fn conflicts_come_in_order() {
        let services = strings(&["payments", "ledger"]);
        let prod = strings(&["prod"]);
        let w = win(at(24, 10, 0), at(24, 12, 0));
        let p = proposal(w, &services, &prod);
        let booked = [
            booking(
                9,
                win(at(24, 11, 0), at(24, 13, 0)),
                &["payments"],
                &["prod"],
            ),
            booking(12, win(at(24, 9, 0), at(24, 11, 0)), &["ledger"], &["prod"]),
            booking(
                10,
                win(at(24, 11, 0), at(24, 12, 0)),
                &["ledger"],
                &["prod"],
            ),
        ];
        let freezes = [
            freeze(at(24, 0, 0), at(25, 0, 0), &["prod"], &[]),
            freeze(at(24, 11, 0), at(24, 12, 0), &[], &["ledger"]),
        ];
        let periods = [late_tue_thu("payments"), late_tue_thu("ledger")];
        let limits = Limits {
            production_per_hour: Some(2),
        };
        let found = conflicts(&p, &booked, &freezes, &periods, limits);
        assert_eq!(
            codes(&found),
            [
                "service_overlap",
                "service_overlap",
                "service_overlap",
                "freeze",
                "freeze",
                "outside_maintenance",
                "outside_maintenance",
                "busy_hour"
            ]
        );
        assert_eq!(numbers(&found), [12, 9, 10]);
        assert!(
            matches!(&found[5], Conflict::OutsideMaintenance { service, .. } if service == "ledger")
        );
    }

    #[test]
    fn every_conflict_has_a_code_and_a_sentence() {
        let window = win(at(24, 10, 0), at(24, 12, 0));
        let cases = [
            (
                Conflict::ServiceOverlap {
                    change_id: id(12),
                    number: 12,
                    title: "Rotate keys".into(),
                    window,
                    services: strings(&["payments", "ledger"]),
                    environments: strings(&["stage", "prod"]),
                },
                "service_overlap",
                "CHG-12 “Rotate keys” also changes payments, ledger in STAGE, PROD from 2026-11-24 10:00 UTC to 2026-11-24 12:00 UTC.",
            ),
            (
                Conflict::ServiceOverlap {
                    change_id: id(12),
                    number: 12,
                    title: "Rotate keys".into(),
                    window,
                    services: strings(&["payments"]),
                    environments: vec![],
                },
                "service_overlap",
                "CHG-12 “Rotate keys” also changes payments in every environment from 2026-11-24 10:00 UTC to 2026-11-24 12:00 UTC.",
            ),
            (
                Conflict::Freeze {
                    reason: "Quarter close".into(),
                    window,
                    environments: strings(&["prod"]),
                    services: strings(&["payments"]),
                },
                "freeze",
                "A freeze on payments in PROD runs from 2026-11-24 10:00 UTC to 2026-11-24 12:00 UTC: Quarter close.",
            ),
            (
                Conflict::Freeze {
                    reason: "  ".into(),
                    window,
                    environments: vec![],
                    services: vec![],
                },
                "freeze",
                "A freeze on every service in every environment runs from 2026-11-24 10:00 UTC to 2026-11-24 12:00 UTC.",
            ),
            (
                Conflict::OutsideMaintenance {
                    service: "payments".into(),
                    periods: vec![
                        "Tue, Thu 22:00–02:00 UTC".into(),
                        "Sat 06:00–08:00 UTC".into(),
                    ],
                },
                "outside_maintenance",
                "payments is changed only within its maintenance periods (Tue, Thu 22:00–02:00 UTC; Sat 06:00–08:00 UTC), and this window is not wholly inside one.",
            ),
            (
                Conflict::BusyHour {
                    hour: at(24, 11, 0),
                    count: 4,
                    limit: 3,
                },
                "busy_hour",
                "The hour from 2026-11-24 11:00 UTC would hold 4 production changes; the limit is 3.",
            ),
        ];
        for (conflict, code, sentence) in cases {
            assert_eq!(conflict.code(), code);
            assert_eq!(conflict.sentence(), sentence);
        }
    }

    #[test]
    fn conflicts_serialize_with_their_kind() {
        let c = Conflict::BusyHour {
            hour: at(24, 11, 0),
            count: 4,
            limit: 3,
        };
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            serde_json::json!({"kind": "busy_hour", "hour": "2026-11-24T11:00:00Z", "count": 4, "limit": 3})
        );
    }

    fn slots(
        p: &Proposal,
        booked: &[Booked],
        freezes: &[Freeze],
        periods: &[MaintenancePeriod],
        limits: Limits,
        from: (DateTime<Utc>, Duration),
        want: usize,
    ) -> Vec<Window> {
        free_slots(p, booked, freezes, periods, limits, from.0, from.1, want)
    }

    #[test]
    fn a_free_proposal_is_its_own_first_slot() {
        let services = strings(&["payments"]);
        let prod = strings(&["prod"]);
        let w = win(at(24, 10, 0), at(24, 12, 0));
        let p = proposal(w, &services, &prod);
        let day = (at(24, 0, 0), Duration::days(1));
        let elsewhere = booking(
            2,
            win(at(24, 10, 30), at(24, 11, 0)),
            &["search"],
            &["prod"],
        );
        // Then the next start that does not overlap it: the end of the
        // other booking (11:00) would, the hour after it does not.
        let got = slots(&p, &[elsewhere], &[], &[], Limits::default(), day, 3);
        assert_eq!(got, [w, win(at(24, 12, 0), at(24, 14, 0))]);
        let got = slots(&p, &[], &[], &[], Limits::default(), day, 3);
        assert_eq!(got, [w]);
        let got = slots(&p, &[], &[], &[], Limits::default(), day, 0);
        assert_eq!(got, []);
    }

    #[test]
    fn a_slot_starts_where_the_blocking_booking_ends() {
        let services = strings(&["payments"]);
        let prod = strings(&["prod"]);
        let p = proposal(win(at(24, 10, 0), at(24, 12, 0)), &services, &prod);
        let booked = [
            booking(
                2,
                win(at(24, 9, 0), at(24, 11, 15)),
                &["payments"],
                &["prod"],
            ),
            booking(
                3,
                win(at(24, 13, 0), at(24, 14, 0)),
                &["payments"],
                &["prod"],
            ),
            booking(
                4,
                win(at(24, 14, 30), at(24, 15, 0)),
                &["payments"],
                &["prod"],
            ),
            booking(5, win(at(24, 18, 0), at(24, 19, 0)), &["search"], &["prod"]),
        ];
        let run = |not_before, horizon, want| {
            slots(
                &p,
                &booked,
                &[],
                &[],
                Limits::default(),
                (not_before, horizon),
                want,
            )
        };
        // 11:15 (the end of 2) runs into 3, and so does 12:00 (the hour
        // after it); 14:00 runs into 4; 15:00 is free; 16:00 overlaps it;
        // 19:00 (the end of 5) is free.
        assert_eq!(
            run(at(24, 0, 0), Duration::days(1), 3),
            [
                win(at(24, 15, 0), at(24, 17, 0)),
                win(at(24, 19, 0), at(24, 21, 0))
            ]
        );
        assert_eq!(
            run(at(24, 0, 0), Duration::days(1), 1),
            [win(at(24, 15, 0), at(24, 17, 0))]
        );
        // The horizon bounds the start, inclusively.
        assert_eq!(
            run(at(24, 0, 0), Duration::hours(15), 3),
            [win(at(24, 15, 0), at(24, 17, 0))]
        );
        assert_eq!(
            run(at(24, 0, 0), Duration::hours(15) - Duration::seconds(1), 3),
            []
        );
        assert_eq!(run(at(24, 0, 0), Duration::hours(-1), 3), []);
        // Nothing starts before `not_before`: a proposal starting earlier
        // is tried from there.
        assert_eq!(
            run(at(24, 15, 1), Duration::days(1), 1),
            [win(at(24, 15, 1), at(24, 17, 1))]
        );
        assert_eq!(
            run(at(24, 19, 0), Duration::days(1), 1),
            [win(at(24, 19, 0), at(24, 21, 0))]
        );
    }

    #[test]
    fn nothing_is_free_when_the_horizon_is_blocked() {
        let services = strings(&["payments"]);
        let prod = strings(&["prod"]);
        let p = proposal(win(at(24, 10, 0), at(24, 12, 0)), &services, &prod);
        let freezes = [freeze(at(24, 0, 0), at(26, 0, 0), &["prod"], &[])];
        let run = |horizon| {
            slots(
                &p,
                &[],
                &freezes,
                &[],
                Limits::default(),
                (at(24, 0, 0), horizon),
                3,
            )
        };
        assert_eq!(run(Duration::days(1)), []);
        // From the freeze's end on, there is room.
        assert_eq!(run(Duration::days(2)), [win(at(26, 0, 0), at(26, 2, 0))]);
    }

    #[test]
    fn slots_open_with_the_maintenance_period() {
        let services = strings(&["payments"]);
        let prod = strings(&["prod"]);
        // A Monday morning, outside the period.
        let p = proposal(win(at(23, 10, 0), at(23, 11, 0)), &services, &prod);
        let periods = [late_tue_thu("payments")];
        let run = |horizon| {
            slots(
                &p,
                &[],
                &[],
                &periods,
                Limits::default(),
                (at(23, 0, 0), horizon),
                3,
            )
        };
        assert_eq!(
            run(Duration::days(7)),
            [
                win(at(24, 22, 0), at(24, 23, 0)),
                win(at(26, 22, 0), at(26, 23, 0))
            ]
        );
        // An opening exactly at the horizon's end is still one.
        assert_eq!(
            run(Duration::hours(46)),
            [win(at(24, 22, 0), at(24, 23, 0))]
        );
        assert_eq!(run(Duration::hours(46) - Duration::seconds(1)), []);
    }

    #[test]
    fn slots_wait_for_a_quieter_hour() {
        let services = strings(&["payments"]);
        let prod = strings(&["prod"]);
        let p = proposal(win(at(24, 10, 0), at(24, 10, 30)), &services, &prod);
        // Another service until 10:20, and again from 10:45 to 11:15.
        let booked = [
            booking(
                2,
                win(at(24, 10, 0), at(24, 10, 20)),
                &["search"],
                &["prod"],
            ),
            booking(
                3,
                win(at(24, 10, 45), at(24, 11, 15)),
                &["search"],
                &["prod"],
            ),
        ];
        let limits = Limits {
            production_per_hour: Some(1),
        };
        let got = slots(
            &p,
            &booked,
            &[],
            &[],
            limits,
            (at(24, 10, 0), Duration::hours(3)),
            1,
        );
        // 10:00 and 10:20 share the hour from 10:00 with 2 and 3; 11:00 and
        // 11:15 (the end of 3) share the hour from 11:00 with 3; the hour
        // from 12:00 is clear.
        assert_eq!(got, [win(at(24, 12, 0), at(24, 12, 30))]);
    }

    #[test]
    fn thousands_of_bookings() {
        let services = strings(&["payments"]);
        let prod = strings(&["prod"]);
        let t0 = at(1, 0, 0);
        let minutes = |m: i64| t0 + Duration::minutes(m);
        // Ten-minute bookings of the service back to back for 4,000 slots
        // but two (from minute 25,000 to 25,020), and an hourly one of
        // another service for 700 hours (to minute 42,000).
        let mut booked: Vec<Booked> = (0..4000)
            .filter(|k| *k != 2500 && *k != 2501)
            .map(|k| {
                let w = win(minutes(10 * k), minutes(10 * k + 10));
                booking(k + 10, w, &["payments"], &["prod"])
            })
            .collect();
        booked.extend((0..700).map(|h| {
            let w = win(minutes(60 * h), minutes(60 * h + 60));
            booking(10_000 + h, w, &["search"], &["prod"])
        }));
        booked.reverse();
        let p = proposal(win(t0, minutes(10)), &services, &prod);
        let month = (t0, Duration::days(30));
        let run = |limit| {
            let limits = Limits {
                production_per_hour: Some(limit),
            };
            slots(&p, &booked, &[], &[], limits, month, 3)
        };
        let slot = |m| win(minutes(m), minutes(m + 10));
        // Starts are where bookings end and on the hour: the gap's first
        // ten minutes, then the end of the last booking of the service and
        // the hour after it. Those hours hold six production changes with
        // the proposal's; a full hour holds eight.
        assert_eq!(run(8), [slot(25_000), slot(40_000), slot(40_020)]);
        assert_eq!(run(6), [slot(25_000), slot(40_000), slot(40_020)]);
        // Below that, only hours with the other service's alone will do.
        assert_eq!(run(5), [slot(40_020), slot(40_080), slot(40_140)]);

        // Around the gap: the bookings on either side of it, and the hour.
        let p = proposal(win(minutes(24_995), minutes(25_025)), &services, &prod);
        let limits = Limits {
            production_per_hour: Some(5),
        };
        let found = conflicts(&p, &booked, &[], &[], limits);
        assert_eq!(numbers(&found), [2509, 2512]);
        assert_eq!(
            found[2],
            Conflict::BusyHour {
                hour: minutes(24_960),
                count: 6,
                limit: 5,
            }
        );
        assert_eq!(found.len(), 3);
    }
}
