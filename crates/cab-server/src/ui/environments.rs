//! The environments page: every environment and its rules in words, and for
//! administrators the form that changes them, through
//! `deployments::set_environments` like the API. Also where a pipeline's
//! service account may deploy, set from its account page.

use std::collections::BTreeMap;

use askama::Template;
use axum::Form;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cab_domain::Role;
use cab_domain::deployment::EnvironmentRules;
use chrono::Duration;
use sqlx::PgConnection;
use uuid::Uuid;

use super::form::{ErrorLink, FieldErrors, FormPairs as Pairs, checked, form_value as value};
use super::notice::{Notice, redirect_with};
use super::{Layout, Viewer, render};
use crate::deployments::{self, Environment};
use crate::error::AppError;
use crate::page_error::PageResult;
use crate::request::Origin;

/// An environment as every page shows it: its label in its colour (the
/// class `environment-<key>` of the deployment pages' stylesheet).
pub struct EnvBadge {
    pub key: String,
    pub label: String,
}

impl EnvBadge {
    pub fn of(e: &Environment) -> Self {
        EnvBadge {
            key: e.rules.key.clone(),
            label: e.rules.label.clone(),
        }
    }
}

/// "2 days 3 hours", "45 minutes": at most `parts` units, largest first.
pub fn minutes_in_words(minutes: i64, parts: usize) -> String {
    let minutes = minutes.max(0);
    let units = [
        (minutes / 1440, "day"),
        (minutes % 1440 / 60, "hour"),
        (minutes % 60, "minute"),
    ];
    let words: Vec<String> = units
        .iter()
        .skip_while(|(n, _)| *n == 0)
        .take(parts)
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n} {unit}{}", if *n == 1 { "" } else { "s" }))
        .collect();
    if words.is_empty() {
        "less than a minute".into()
    } else {
        words.join(" ")
    }
}

/// A soak time as people say it: "None", "1 hour 30 minutes".
pub fn soak_in_words(soak: Duration) -> String {
    if soak.num_minutes() <= 0 {
        "None".into()
    } else {
        minutes_in_words(soak.num_minutes(), 3)
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "Yes" } else { "No" }
}

/// One environment in the overview.
pub struct EnvLine {
    pub badge: EnvBadge,
    pub rank: i32,
    pub production: &'static str,
    pub needs_approval: &'static str,
    pub needs_promotion: &'static str,
    pub soak: String,
}

impl EnvLine {
    fn of(e: &Environment) -> Self {
        EnvLine {
            badge: EnvBadge::of(e),
            rank: e.rules.rank,
            production: yes_no(e.rules.production),
            needs_approval: yes_no(e.rules.needs_approval),
            needs_promotion: yes_no(e.rules.needs_promotion),
            soak: soak_in_words(e.rules.soak),
        }
    }
}

/// One row of the form, as shown (or as submitted, when it comes back).
pub struct EditRow {
    pub index: usize,
    /// An environment that exists: its key stays; a new row names one.
    pub existing: bool,
    pub key: String,
    pub label: String,
    pub rank: String,
    pub production: bool,
    pub needs_approval: bool,
    pub needs_promotion: bool,
    pub soak: String,
    pub colour: String,
    pub remove: bool,
    /// Messages beside this row's fields, by column.
    errors: BTreeMap<&'static str, String>,
}

impl EditRow {
    fn of(index: usize, e: &Environment) -> Self {
        EditRow {
            index,
            existing: true,
            key: e.rules.key.clone(),
            label: e.rules.label.clone(),
            rank: e.rules.rank.to_string(),
            production: e.rules.production,
            needs_approval: e.rules.needs_approval,
            needs_promotion: e.rules.needs_promotion,
            soak: e.rules.soak.num_minutes().to_string(),
            colour: e.colour.clone(),
            remove: false,
            errors: BTreeMap::new(),
        }
    }

    fn blank(index: usize, rank: i32) -> Self {
        EditRow {
            index,
            existing: false,
            key: String::new(),
            label: String::new(),
            rank: rank.to_string(),
            production: false,
            needs_approval: false,
            needs_promotion: true,
            soak: "0".into(),
            colour: "#4b5563".into(),
            remove: false,
            errors: BTreeMap::new(),
        }
    }

    /// The message beside this row's `column`, if any.
    pub fn error(&self, column: &str) -> Option<&String> {
        self.errors.get(column)
    }

    /// What the row is called in messages and labels.
    pub fn name(&self) -> String {
        if !self.label.trim().is_empty() {
            self.label.trim().to_owned()
        } else if self.existing {
            self.key.to_uppercase()
        } else {
            "the new environment".into()
        }
    }

    /// Nothing typed into the new row: it adds nothing.
    fn is_blank(&self) -> bool {
        !self.existing && self.key.trim().is_empty() && self.label.trim().is_empty()
    }
}

const COLUMNS: [(&str, &str); 9] = [
    ("key", "name"),
    ("label", "label"),
    ("rank", "rank"),
    ("production", "production"),
    ("needs_approval", "needs approval"),
    ("needs_promotion", "needs promotion"),
    ("soak", "soak time"),
    ("colour", "colour"),
    ("remove", "removal"),
];

#[derive(Template)]
#[template(path = "admin/environments.html")]
struct EnvironmentsPage {
    layout: Layout,
    /// The stylesheet with the environments' colours.
    env_css: String,
    environments: Vec<EnvLine>,
    rows: Vec<EditRow>,
    summary: Vec<ErrorLink>,
    can_edit: bool,
}

async fn page(
    viewer: &Viewer,
    rows: Option<Vec<EditRow>>,
    general: FieldErrors,
) -> Result<Response, AppError> {
    let mut conn = viewer.state.pool.acquire().await?;
    let envs = deployments::environments(&mut conn).await?;
    let rows = rows.unwrap_or_else(|| {
        let next_rank = envs.iter().map(|e| e.rules.rank).max().unwrap_or(0) + 1;
        envs.iter()
            .enumerate()
            .map(|(i, e)| EditRow::of(i, e))
            .chain(std::iter::once(EditRow::blank(envs.len(), next_rank)))
            .collect()
    });
    // The summary links each message to its field, in the form's order.
    let mut errors = FieldErrors::default();
    let mut fields: Vec<(String, String)> = Vec::new();
    for r in &rows {
        for (column, label) in COLUMNS {
            let id = format!("{column}_{}", r.index);
            if let Some(m) = r.error(column) {
                errors.insert(&id, m.clone());
            }
            fields.push((id, format!("{} {label}", r.name())));
        }
    }
    let failed = !general.is_empty() || !errors.is_empty();
    errors.merge(general);
    let listed: Vec<(&str, &str)> = fields
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let summary = errors.summary(listed);
    let page = EnvironmentsPage {
        layout: viewer.layout("Environments"),
        env_css: super::deployments::stylesheet_url(&envs),
        environments: envs.iter().map(EnvLine::of).collect(),
        rows,
        summary,
        can_edit: viewer.user.has(Role::Admin),
    };
    let status = if failed {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((status, render(&page)).into_response())
}

pub async fn show(viewer: Viewer) -> PageResult {
    Ok(page(&viewer, None, FieldErrors::default()).await?)
}

/// The rows a form submitted, with what could not be read as numbers.
fn read_rows(form: &Pairs) -> Vec<EditRow> {
    let count: usize = value(form, "rows").parse().unwrap_or(0).min(200);
    let mut rows = Vec::new();
    for i in 0..count {
        let v = |name: &str| value(form, &format!("{name}_{i}"));
        let on = |name: &str| checked(form, &format!("{name}_{i}"));
        let mut row = EditRow {
            index: i,
            existing: on("existing"),
            key: v("key").trim().to_lowercase(),
            label: v("label").trim().to_owned(),
            rank: v("rank").trim().to_owned(),
            production: on("production"),
            needs_approval: on("needs_approval"),
            needs_promotion: on("needs_promotion"),
            soak: v("soak").trim().to_owned(),
            colour: v("colour").trim().to_lowercase(),
            remove: on("remove"),
            errors: BTreeMap::new(),
        };
        if row.is_blank() || row.remove {
            rows.push(row);
            continue;
        }
        if row.rank.parse::<i32>().is_err() {
            row.errors
                .insert("rank", "A rank is a whole number, from 1 to 1000.".into());
        }
        if row.soak.parse::<i64>().map_or(true, |m| m < 0) {
            row.errors.insert(
                "soak",
                "A soak time is a whole number of minutes, 0 for none.".into(),
            );
        }
        rows.push(row);
    }
    rows
}

fn column_of(field: &str) -> Option<&'static str> {
    Some(match field {
        "key" => "key",
        "label" => "label",
        "rank" => "rank",
        "production" => "production",
        "needs_approval" => "needs_approval",
        "needs_promotion" => "needs_promotion",
        "soak" | "soak_minutes" => "soak",
        "colour" => "colour",
        "environments" => "remove",
        _ => return None,
    })
}

/// The row a message from the rules is about: the rules name environments
/// by their place among those saved, by their key or rank when two share
/// one, or by their label.
fn row_of(message: &str, rows: &[EditRow], saved: &[usize]) -> Option<usize> {
    if let Some(rest) = message.strip_prefix("Environment ")
        && let Some((n, _)) = rest.split_once(':')
        && let Ok(n) = n.parse::<usize>()
    {
        return saved.get(n.checked_sub(1)?).copied();
    }
    if let Some(rest) = message.strip_prefix("Two environments are named ") {
        let key = rest.trim_end_matches('.');
        return saved.iter().rev().copied().find(|&i| rows[i].key == key);
    }
    if let Some(rest) = message.strip_prefix("Two environments have rank ") {
        let rank = rest.trim_end_matches('.');
        return saved.iter().rev().copied().find(|&i| rows[i].rank == rank);
    }
    rows.iter()
        .find(|r| {
            !r.label.is_empty()
                && (message.starts_with(&format!("{}:", r.label))
                    || message.starts_with(&format!("{} ", r.label)))
        })
        .map(|r| r.index)
}

/// Saves the environments (administrators; anybody else is refused, and
/// the refusal recorded, by `deployments::set_environments`).
pub async fn save(viewer: Viewer, origin: Origin, Form(form): Form<Pairs>) -> PageResult {
    let mut rows = read_rows(&form);
    let saved: Vec<usize> = rows
        .iter()
        .filter(|r| !r.is_blank() && !r.remove)
        .map(|r| r.index)
        .collect();
    let wanted: Vec<Environment> = saved
        .iter()
        .map(|&i| {
            let r = &rows[i];
            Environment {
                rules: EnvironmentRules {
                    key: r.key.clone(),
                    label: r.label.clone(),
                    // Unreadable numbers are refused by the rules too;
                    // the messages beside the fields say why.
                    rank: r.rank.parse().unwrap_or(0),
                    production: r.production,
                    needs_approval: r.needs_approval,
                    needs_promotion: r.needs_promotion,
                    soak: Duration::minutes(
                        r.soak.parse::<i64>().unwrap_or(-1).clamp(-1, 1_000_000),
                    ),
                },
                colour: r.colour.clone(),
            }
        })
        .collect();
    let done =
        deployments::set_environments(&viewer.state.pool, &viewer.user, &origin, wanted).await;
    let found = match done {
        Ok(_) if rows.iter().all(|r| r.errors.is_empty()) => {
            return Ok(redirect_with(
                &viewer,
                "/admin/environments",
                Notice::EnvironmentsSaved,
            ));
        }
        // Read numbers the rules took as saved cannot happen: an
        // unreadable rank is 0 and refused. Kept for safety.
        Ok(_) => Vec::new(),
        Err(AppError::Fields(list)) => list,
        Err(AppError::Invalid { field, message }) => vec![(field, message)],
        Err(e) => return Err(e.into()),
    };
    let mut general = FieldErrors::default();
    for (field, message) in found {
        let place = column_of(&field).zip(row_of(&message, &rows, &saved));
        match place {
            Some((column, i)) => {
                rows[i].errors.entry(column).or_insert(message);
            }
            None if field == "production" => {
                let first = saved.first().copied().unwrap_or(0);
                if let Some(r) = rows.get_mut(first) {
                    r.errors.entry("production").or_insert(message);
                }
            }
            None => general.insert("environments-form", message),
        }
    }
    Ok(page(&viewer, Some(rows), general).await?)
}

/// An environment a pipeline's service account may or may not deploy to.
pub struct EnvChoice {
    pub badge: EnvBadge,
    pub checked: bool,
}

/// Every environment, ticked where `allowed` says.
pub fn env_choices(envs: &[Environment], allowed: &[String]) -> Vec<EnvChoice> {
    envs.iter()
        .map(|e| EnvChoice {
            badge: EnvBadge::of(e),
            checked: allowed.contains(&e.rules.key),
        })
        .collect()
}

/// Where the service account `id` may deploy, for its account page.
pub async fn account_choices(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Vec<EnvChoice>, AppError> {
    let envs = deployments::environments(conn).await?;
    let allowed = cab_db::deployments::account_environments(conn, id).await?;
    Ok(env_choices(&envs, &allowed))
}

/// Sets where a pipeline's service account may deploy (administrators, by
/// `deployments::set_account_environments`, which records a refusal).
pub async fn save_account(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
    Form(form): Form<Pairs>,
) -> PageResult {
    let id: Uuid = id.parse().map_err(|_| AppError::NotFound("user"))?;
    let wanted: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "environments")
        .map(|(_, v)| v.clone())
        .collect();
    deployments::set_account_environments(&viewer.state.pool, &viewer.user, &origin, id, &wanted)
        .await?;
    Ok(redirect_with(
        &viewer,
        &format!("/admin/users/{id}"),
        Notice::PipelineEnvironmentsSaved,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_people_say_them() {
        assert_eq!(soak_in_words(Duration::zero()), "None");
        assert_eq!(soak_in_words(Duration::minutes(1)), "1 minute");
        assert_eq!(soak_in_words(Duration::minutes(90)), "1 hour 30 minutes");
        assert_eq!(soak_in_words(Duration::minutes(1440)), "1 day");
        assert_eq!(
            soak_in_words(Duration::minutes(2 * 1440 + 5)),
            "2 days 5 minutes"
        );
        assert_eq!(minutes_in_words(2 * 1440 + 3 * 60 + 5, 2), "2 days 3 hours");
        assert_eq!(minutes_in_words(0, 2), "less than a minute");
    }

    #[test]
    fn a_message_from_the_rules_finds_its_row() {
        let mut rows: Vec<EditRow> = ["DEV", "PROD", "PROD-EU"]
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mut r = EditRow::blank(i, i32::try_from(i).unwrap_or(0) + 1);
                r.existing = true;
                r.label = (*l).into();
                r.key = l.to_lowercase();
                r
            })
            .collect();
        rows[2].rank = "2".into();
        let saved = [0, 1, 2];
        assert_eq!(
            row_of("PROD-EU: a soak time is at most 30 days.", &rows, &saved),
            Some(2)
        );
        assert_eq!(
            row_of("PROD: a rank is from 1 to 1000.", &rows, &saved),
            Some(1)
        );
        assert_eq!(
            row_of(
                "PROD is a production environment, so it needs an approved change.",
                &rows,
                &saved
            ),
            Some(1)
        );
        assert_eq!(
            row_of(
                "Environment 1: a label of 1 to 40 characters.",
                &rows,
                &saved
            ),
            Some(0)
        );
        assert_eq!(
            row_of("Two environments have rank 2.", &rows, &saved),
            Some(2)
        );
        assert_eq!(
            row_of("At least one environment is production.", &rows, &saved),
            None
        );
    }
}
