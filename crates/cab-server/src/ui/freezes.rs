//! The freezes page: what is frozen now, what will be, and what was lately,
//! in words; for release managers and administrators the form that
//! declares one and the button that lifts one. Every action goes through
//! `freezes`, the same code as the API's.

use askama::Template;
use axum::Form;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cab_domain::change::FieldError;
use chrono::{DateTime, NaiveDateTime, Utc};
use uuid::Uuid;

use super::environments::{EnvBadge, EnvChoice, env_choices, minutes_in_words};
use super::form::{FieldErrors, FormPairs as Pairs, form_value as value, form_values as values};
use super::notice::{Notice, redirect_with};
use super::{Layout, Viewer, render};
use crate::deployments::{self, Environment};
use crate::error::AppError;
use crate::freezes::{self, FreezeStatus, FreezeView, NewFreeze, PAST_DAYS};
use crate::page_error::PageResult;
use crate::request::Origin;

/// A moment as the page says it: "Fri 27 Nov 2026, 18:00 UTC".
pub(super) fn readable(t: &DateTime<Utc>) -> String {
    t.format("%a %-d %b %Y, %H:%M UTC").to_string()
}

/// How far a moment is from now: "in 2 hours", "3 days ago".
fn from_now(t: &DateTime<Utc>, now: DateTime<Utc>) -> String {
    let minutes = (*t - now).num_minutes();
    if minutes.abs() < 1 {
        "just now".into()
    } else if minutes > 0 {
        format!("in {}", minutes_in_words(minutes, 2))
    } else {
        format!("{} ago", minutes_in_words(-minutes, 2))
    }
}

/// One freeze in the lists.
pub struct FreezeItem {
    pub id: Uuid,
    pub reason: String,
    pub status: &'static str,
    /// Empty: every environment.
    pub environments: Vec<EnvBadge>,
    /// Empty: every service.
    pub services: Vec<String>,
    pub starts: String,
    pub ends: String,
    /// Where it stands, in a sentence: "Ends in 2 hours."
    pub timing: String,
    pub declared: String,
    pub can_lift: bool,
}

impl FreezeItem {
    fn of(f: &FreezeView, envs: &[Environment], can_manage: bool, now: DateTime<Utc>) -> Self {
        let l = &f.line;
        let timing = match f.status {
            FreezeStatus::InForce => format!("In force; ends {}.", from_now(&l.ends_at, now)),
            FreezeStatus::Upcoming => format!("Starts {}.", from_now(&l.starts_at, now)),
            FreezeStatus::Lifted => {
                let at = l.lifted_at.unwrap_or(l.ends_at);
                match &l.lifted_by_name {
                    Some(by) => format!("Lifted by {by} {}.", from_now(&at, now)),
                    None => format!("Lifted {}.", from_now(&at, now)),
                }
            }
            FreezeStatus::Ended => format!("Ended {}.", from_now(&l.ends_at, now)),
        };
        FreezeItem {
            id: l.id,
            reason: l.reason.clone(),
            status: f.status.label(),
            environments: l
                .environments
                .iter()
                .map(|k| match envs.iter().find(|e| &e.rules.key == k) {
                    Some(e) => EnvBadge::of(e),
                    None => EnvBadge {
                        key: k.clone(),
                        label: k.to_uppercase(),
                    },
                })
                .collect(),
            services: l.services.clone(),
            starts: readable(&l.starts_at),
            ends: readable(&l.ends_at),
            timing,
            declared: format!("{}, {}", l.created_by_name, readable(&l.created_at)),
            can_lift: can_manage && !f.status.is_past(),
        }
    }
}

/// What the declare form holds: empty, or as submitted.
#[derive(Default)]
pub struct FreezeForm {
    pub starts_at: String,
    pub ends_at: String,
    pub reason: String,
    pub services: String,
}

#[derive(Template)]
#[template(path = "freezes/list.html")]
struct FreezesPage {
    layout: Layout,
    /// The stylesheet with the environments' colours.
    env_css: String,
    in_force: Vec<FreezeItem>,
    upcoming: Vec<FreezeItem>,
    past: Vec<FreezeItem>,
    past_days: i64,
    can_manage: bool,
    form: FreezeForm,
    environments: Vec<EnvChoice>,
    errors: FieldErrors,
}

async fn page(
    viewer: &Viewer,
    form: FreezeForm,
    chosen: &[String],
    errors: FieldErrors,
) -> Result<Response, AppError> {
    let now = Utc::now();
    let envs = {
        let mut conn = viewer.state.pool.acquire().await?;
        deployments::environments(&mut conn).await?
    };
    let can_manage = freezes::may_manage(&viewer.user.actor()).is_ok();
    let all = freezes::list(&viewer.state.pool, true).await?;
    let pick = |keep: &dyn Fn(&FreezeView) -> bool| -> Vec<&FreezeView> {
        all.iter().filter(|f| keep(f)).collect()
    };
    // In force: the one ending soonest first; coming up: the one starting
    // soonest first; over: the latest first.
    let mut in_force = pick(&|f| f.status == FreezeStatus::InForce);
    in_force.sort_by_key(|f| f.line.ends_at);
    let mut upcoming = pick(&|f| f.status == FreezeStatus::Upcoming);
    upcoming.sort_by_key(|f| f.line.starts_at);
    let mut past = pick(&|f| f.status.is_past());
    past.sort_by_key(|f| std::cmp::Reverse(f.line.ends_at));
    let items = |list: Vec<&FreezeView>| -> Vec<FreezeItem> {
        list.into_iter()
            .map(|f| FreezeItem::of(f, &envs, can_manage, now))
            .collect()
    };
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let page = FreezesPage {
        layout: viewer.layout("Freezes"),
        env_css: super::deployments::stylesheet_url(&envs),
        in_force: items(in_force),
        upcoming: items(upcoming),
        past: items(past),
        past_days: PAST_DAYS,
        can_manage,
        form,
        environments: env_choices(&envs, chosen),
        errors,
    };
    Ok((status, render(&page)).into_response())
}

pub async fn list(viewer: Viewer) -> PageResult {
    Ok(page(&viewer, FreezeForm::default(), &[], FieldErrors::default()).await?)
}

/// A time typed into the form, in UTC; `Ok(None)` when left empty.
fn read_time(raw: &str) -> Result<Option<DateTime<Utc>>, ()> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(raw, f).ok())
        .map(|t| Some(t.and_utc()))
        .ok_or(())
}

/// Declares a freeze from the form; a refusal is recorded and shown, a
/// fault comes back beside its field.
pub async fn declare(viewer: Viewer, origin: Origin, Form(pairs): Form<Pairs>) -> PageResult {
    let form = FreezeForm {
        starts_at: value(&pairs, "starts_at"),
        ends_at: value(&pairs, "ends_at"),
        reason: value(&pairs, "reason"),
        services: value(&pairs, "services"),
    };
    let chosen: Vec<String> = values(&pairs, "environments")
        .into_iter()
        .map(str::to_owned)
        .collect();
    let mut unreadable = Vec::new();
    let mut time = |name: &'static str, raw: &str| match read_time(raw) {
        Ok(t) => t,
        Err(()) => {
            unreadable.push(FieldError {
                field: name,
                message: "Give a date and a time in UTC, such as 2026-12-24 18:00.".into(),
            });
            None
        }
    };
    let starts_at = time("starts_at", &form.starts_at);
    let ends_at = time("ends_at", &form.ends_at);
    let new = NewFreeze {
        starts_at,
        ends_at,
        reason: form.reason.clone(),
        environments: chosen.clone(),
        services: form
            .services
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        unreadable,
    };
    match freezes::declare(&viewer.state.pool, &viewer.user, &origin, new).await {
        Ok(_) => Ok(redirect_with(&viewer, "/freezes", Notice::FreezeDeclared)),
        Err(e @ (AppError::Invalid { .. } | AppError::Fields(_))) => {
            let errors = FieldErrors::absorb(e, "reason")?;
            Ok(page(&viewer, form, &chosen, errors).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Lifts a freeze now.
pub async fn lift(viewer: Viewer, origin: Origin, Path(id): Path<String>) -> PageResult {
    let id: Uuid = id.parse().map_err(|_| AppError::NotFound("freeze"))?;
    freezes::lift(&viewer.state.pool, &viewer.user, &origin, id).await?;
    Ok(redirect_with(&viewer, "/freezes", Notice::FreezeLifted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn times_read_and_said() {
        assert_eq!(read_time(""), Ok(None));
        let t = read_time("2026-12-24T18:00").unwrap().unwrap();
        assert_eq!(readable(&t), "Thu 24 Dec 2026, 18:00 UTC");
        assert_eq!(read_time("2026-12-24 18:00"), Ok(Some(t)));
        assert!(read_time("Christmas Eve").is_err());
        assert_eq!(
            from_now(&(t + Duration::minutes(150)), t),
            "in 2 hours 30 minutes"
        );
        assert_eq!(from_now(&(t - Duration::days(3)), t), "3 days ago");
        assert_eq!(from_now(&t, t), "just now");
    }
}
