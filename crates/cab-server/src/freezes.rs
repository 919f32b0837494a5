//! Freezes: periods in which the deployment gate deploys nothing they cover
//! (all environments or the ones named, all services or the ones named).
//! Release managers and administrators declare them and lift them early;
//! everybody signed in can see them. The gate reads them on every request
//! and again when a deployment starts (`deployments`).
//!
//! Every declaration and lift is audited, and so is every refusal.

use cab_db::deployments::FreezeLine;
use cab_domain::audit::{Attempt, AuditAction};
use cab_domain::change::{FieldError, normalize_service};
use cab_domain::text::quoted;
use cab_domain::{Actor, Denial, Role};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit_log::{self, Entity};
use crate::auth::CurrentUser;
use crate::deployments::{self, Environment};
use crate::error::AppError;
use crate::refusal;
use crate::request::Origin;

/// A reason says what the freeze protects; a few words at least.
pub const REASON_MIN: usize = 10;
/// What the database keeps.
pub const REASON_MAX: usize = 500;
/// The most services one freeze names (as many as a change may).
pub const MAX_SERVICES: usize = 20;
/// The longest a freeze may last.
pub const LONGEST_DAYS: i64 = 366;
/// How far in the past a start may be and still be read as "now": the time
/// a form takes to fill in.
const START_GRACE_MINUTES: i64 = 15;
/// How far back the list of past freezes reaches, and how long it is.
pub const PAST_DAYS: i64 = 90;
const PAST_LIMIT: i64 = 50;

/// Where a freeze stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezeStatus {
    InForce,
    Upcoming,
    Lifted,
    Ended,
}

impl FreezeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FreezeStatus::InForce => "in_force",
            FreezeStatus::Upcoming => "upcoming",
            FreezeStatus::Lifted => "lifted",
            FreezeStatus::Ended => "ended",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            FreezeStatus::InForce => "In force",
            FreezeStatus::Upcoming => "Coming up",
            FreezeStatus::Lifted => "Lifted",
            FreezeStatus::Ended => "Ended",
        }
    }

    /// Over: lifted, or past its end.
    pub fn is_past(self) -> bool {
        matches!(self, FreezeStatus::Lifted | FreezeStatus::Ended)
    }
}

/// A freeze and where it stands now.
#[derive(Debug, Clone)]
pub struct FreezeView {
    pub line: FreezeLine,
    pub status: FreezeStatus,
}

impl FreezeView {
    pub fn at(line: FreezeLine, now: DateTime<Utc>) -> Self {
        let status = if line.lifted_at.is_some() {
            FreezeStatus::Lifted
        } else if line.ends_at <= now {
            FreezeStatus::Ended
        } else if line.starts_at <= now {
            FreezeStatus::InForce
        } else {
            FreezeStatus::Upcoming
        };
        FreezeView { line, status }
    }
}

/// What somebody asks to freeze.
#[derive(Debug, Clone, Default)]
pub struct NewFreeze {
    /// `None`: now.
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub reason: String,
    /// Environment keys; none: every environment.
    pub environments: Vec<String>,
    /// Service names; none: every service.
    pub services: Vec<String>,
    /// Faults found in reading the request (a time that is no time),
    /// answered with the rest once the declarer may declare.
    pub unreadable: Vec<FieldError>,
}

/// Declaring and lifting freezes is for release managers and administrators.
pub fn may_manage(actor: &Actor) -> Result<(), Denial> {
    if actor.roles.contains(Role::ReleaseManager) || actor.roles.contains(Role::Admin) {
        Ok(())
    } else {
        Err(Denial::new(
            "release_manager_required",
            "Only release managers and administrators declare or lift freezes.",
        ))
    }
}

fn field(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// A freeze as checked: every fault at once, or what to store.
struct Checked {
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    reason: String,
    environments: Vec<String>,
    services: Vec<String>,
}

fn check(new: &NewFreeze, envs: &[Environment], now: DateTime<Utc>) -> Result<Checked, AppError> {
    let mut errors = new.unreadable.clone();
    let unread = |name: &str| new.unreadable.iter().any(|e| e.field == name);
    let starts_at = match new.starts_at {
        _ if unread("starts_at") => now,
        None => now,
        Some(s) if s < now - Duration::minutes(START_GRACE_MINUTES) => {
            errors.push(field(
                "starts_at",
                "A freeze cannot start in the past; leave the start empty to start it now.",
            ));
            now
        }
        Some(s) => s.max(now),
    };
    match new.ends_at {
        _ if unread("ends_at") => {}
        None => errors.push(field("ends_at", "Say when the freeze ends.")),
        Some(e) if e <= now => errors.push(field("ends_at", "A freeze ends in the future.")),
        Some(e) if e <= starts_at => {
            errors.push(field("ends_at", "A freeze ends after it starts."));
        }
        Some(e) if e - starts_at > Duration::days(LONGEST_DAYS) => errors.push(field(
            "ends_at",
            "A freeze lasts at most a year; declare another one after it.",
        )),
        Some(_) => {}
    }
    let reason = new.reason.trim().to_owned();
    let length = reason.chars().count();
    if length < REASON_MIN {
        errors.push(field(
            "reason",
            format!(
                "Say why nothing may be deployed, in at least {REASON_MIN} characters: people see it when the gate refuses them."
            ),
        ));
    } else if length > REASON_MAX {
        errors.push(field(
            "reason",
            format!("A reason is at most {REASON_MAX} characters."),
        ));
    }
    let mut environments: Vec<String> = Vec::new();
    for raw in &new.environments {
        let key = raw.trim().to_lowercase();
        if key.is_empty() {
            continue;
        }
        if !envs.iter().any(|e| e.rules.key == key) {
            let known: Vec<&str> = envs.iter().map(|e| e.rules.label.as_str()).collect();
            errors.push(field(
                "environments",
                format!(
                    "There is no environment {}; choose from {}, or none for all of them.",
                    quoted(raw.trim()),
                    known.join(", ")
                ),
            ));
            break;
        }
        if !environments.contains(&key) {
            environments.push(key);
        }
    }
    // In promotion order, whatever order they were named in.
    environments.sort_by_key(|k| {
        envs.iter()
            .find(|e| &e.rules.key == k)
            .map_or(i32::MAX, |e| e.rules.rank)
    });
    let mut services: Vec<String> = Vec::new();
    for raw in &new.services {
        if raw.trim().is_empty() {
            continue;
        }
        match normalize_service(raw) {
            Some(s) => {
                if !services.contains(&s) {
                    services.push(s);
                }
            }
            None => {
                errors.push(field(
                    "services",
                    format!(
                        "{} is not a service name: use lowercase letters, digits, '.', '_' or '-'.",
                        quoted(raw.trim())
                    ),
                ));
                break;
            }
        }
    }
    if services.len() > MAX_SERVICES {
        errors.push(field(
            "services",
            format!("Name at most {MAX_SERVICES} services, or none for all of them."),
        ));
    }
    if !errors.is_empty() {
        return Err(errors.into());
    }
    Ok(Checked {
        starts_at,
        // Checked above: present.
        ends_at: new.ends_at.unwrap_or(now),
        reason,
        environments,
        services,
    })
}

/// The labels of `keys`, in their order (the key itself for one unknown).
fn labels(envs: &[Environment], keys: &[String]) -> Vec<String> {
    keys.iter()
        .map(|k| {
            envs.iter()
                .find(|e| &e.rules.key == k)
                .map_or_else(|| k.to_uppercase(), |e| e.rules.label.clone())
        })
        .collect()
}

/// What the audit trail keeps of a freeze, in words a reader can follow
/// without the table: labels beside keys, "all" spelt out.
fn described(line: &FreezeLine, envs: &[Environment]) -> serde_json::Value {
    json!({
        "reason": line.reason,
        "starts_at": line.starts_at,
        "ends_at": line.ends_at,
        "environments": line.environments,
        "environment_labels": labels(envs, &line.environments),
        "all_environments": line.environments.is_empty(),
        "services": line.services,
        "all_services": line.services.is_empty(),
    })
}

/// Declares a freeze (release managers and administrators). From its start
/// the gate refuses every deployment it covers, and authorizations given
/// before it run out when it starts.
pub async fn declare(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    new: NewFreeze,
) -> Result<FreezeView, AppError> {
    refusal::checked(
        pool,
        user.audit_actor(),
        origin,
        Attempt::FreezeDeclare.as_str(),
        Entity::kind("freeze"),
        may_manage(&user.actor()),
    )
    .await?;
    let now = Utc::now();
    let mut tx = pool.begin().await?;
    let envs = deployments::environments(&mut tx).await?;
    let c = check(&new, &envs, now)?;
    let id = Uuid::new_v4();
    cab_db::deployments::insert_freeze(
        &mut tx,
        &cab_db::deployments::NewFreeze {
            id,
            starts_at: c.starts_at,
            ends_at: c.ends_at,
            reason: &c.reason,
            environments: &c.environments,
            services: &c.services,
            created_by: user.id,
            at: now,
        },
    )
    .await?;
    let line = cab_db::deployments::freeze_line(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("freeze"))?;
    audit_log::record(
        &mut tx,
        Some(user.audit_actor()),
        origin,
        AuditAction::FreezeDeclared.as_str(),
        Entity::new("freeze", id),
        described(&line, &envs),
    )
    .await?;
    crate::idempotency::bind(&mut tx, origin, crate::idempotency::Created::Freeze(id)).await?;
    tx.commit().await?;
    Ok(FreezeView::at(line, now))
}

/// Lifts a freeze in force or still to come (release managers and
/// administrators): it ends now. One already lifted or over answers 409.
pub async fn lift(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
) -> Result<FreezeView, AppError> {
    let attempted = Attempt::FreezeLift.as_str();
    refusal::checked(
        pool,
        user.audit_actor(),
        origin,
        attempted,
        Entity::new("freeze", id),
        may_manage(&user.actor()),
    )
    .await?;
    let now = Utc::now();
    let mut tx = pool.begin().await?;
    let Some(before) = cab_db::deployments::freeze_line(&mut tx, id).await? else {
        return Err(AppError::NotFound("freeze"));
    };
    if !cab_db::deployments::lift_freeze_at(&mut tx, id, user.id, now).await? {
        // As it stands now: somebody may have lifted it a moment ago.
        let after = cab_db::deployments::freeze_line(&mut tx, id)
            .await?
            .unwrap_or_else(|| before.clone());
        tx.rollback().await?;
        let denial = match (&after.lifted_at, &after.lifted_by_name) {
            (Some(at), by) => Denial::new(
                "freeze_already_lifted",
                format!(
                    "This freeze was already lifted{} at {}.",
                    by.as_ref().map(|b| format!(" by {b}")).unwrap_or_default(),
                    at.format("%Y-%m-%d %H:%M UTC")
                ),
            ),
            (None, _) => Denial::new(
                "freeze_ended",
                format!(
                    "This freeze already ended at {}; there is nothing to lift.",
                    after.ends_at.format("%Y-%m-%d %H:%M UTC")
                ),
            ),
        };
        // Recorded like every refused attempt, and answered as the conflict
        // with the freeze's state that it is.
        let _ = audit_log::deny(
            pool,
            Some(user.audit_actor()),
            origin,
            attempted,
            Entity::new("freeze", id),
            denial.clone(),
        )
        .await;
        return Err(AppError::Conflict(denial));
    }
    let was = FreezeView::at(before.clone(), now).status;
    let envs = deployments::environments(&mut tx).await?;
    let line = cab_db::deployments::freeze_line(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("freeze"))?;
    let mut payload = described(&before, &envs);
    payload["was"] = json!(was.as_str());
    payload["lifted_at"] = json!(now);
    audit_log::record(
        &mut tx,
        Some(user.audit_actor()),
        origin,
        AuditAction::FreezeLifted.as_str(),
        Entity::new("freeze", id),
        payload,
    )
    .await?;
    tx.commit().await?;
    Ok(FreezeView::at(line, now))
}

/// The freezes in force and to come, soonest first; with `include_past`,
/// then those that ended or were lifted in the last [`PAST_DAYS`] days,
/// latest first.
pub async fn list(pool: &PgPool, include_past: bool) -> Result<Vec<FreezeView>, AppError> {
    let now = Utc::now();
    let mut conn = pool.acquire().await?;
    let mut lines = cab_db::deployments::freeze_lines_ahead(&mut conn, now).await?;
    if include_past {
        lines.extend(
            cab_db::deployments::freeze_lines_past(
                &mut conn,
                now,
                now - Duration::days(PAST_DAYS),
                PAST_LIMIT,
            )
            .await?,
        );
    }
    Ok(lines.into_iter().map(|l| FreezeView::at(l, now)).collect())
}

pub async fn find(pool: &PgPool, id: Uuid) -> Result<FreezeView, AppError> {
    let mut conn = pool.acquire().await?;
    let line = cab_db::deployments::freeze_line(&mut conn, id)
        .await?
        .ok_or(AppError::NotFound("freeze"))?;
    Ok(FreezeView::at(line, Utc::now()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cab_domain::RoleSet;
    use cab_domain::deployment::EnvironmentRules;

    fn envs() -> Vec<Environment> {
        ["dev", "test", "prod"]
            .into_iter()
            .zip(1..)
            .map(|(k, rank)| Environment {
                rules: EnvironmentRules {
                    key: k.into(),
                    label: k.to_uppercase(),
                    rank,
                    production: k == "prod",
                    needs_approval: k == "prod",
                    needs_promotion: k != "dev",
                    soak: Duration::zero(),
                },
                colour: "#123456".into(),
            })
            .collect()
    }

    fn fields(err: AppError) -> Vec<String> {
        match err {
            AppError::Fields(list) => list.into_iter().map(|(f, _)| f).collect(),
            AppError::Invalid { field, .. } => vec![field],
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn a_freeze_is_checked_field_by_field() {
        let now = Utc::now();
        let ok = NewFreeze {
            starts_at: None,
            ends_at: Some(now + Duration::hours(2)),
            reason: "Black Friday trading".into(),
            environments: vec!["PROD".into(), "dev".into(), "prod".into()],
            services: vec![" Edge-Proxy ".into(), String::new()],
            unreadable: Vec::new(),
        };
        let c = check(&ok, &envs(), now).map_err(fields).unwrap();
        assert_eq!(
            c.environments,
            ["dev", "prod"],
            "known, once, in rank order"
        );
        assert_eq!(c.services, ["edge-proxy"]);
        assert_eq!(c.starts_at, now);

        let bad = NewFreeze {
            starts_at: Some(now + Duration::hours(3)),
            ends_at: Some(now + Duration::hours(1)),
            reason: "short".into(),
            environments: vec!["moon".into()],
            services: vec!["Bad Name".into()],
            unreadable: Vec::new(),
        };
        assert_eq!(
            fields(check(&bad, &envs(), now).err().unwrap()),
            ["ends_at", "reason", "environments", "services"]
        );
        let past = NewFreeze {
            starts_at: Some(now - Duration::days(1)),
            ends_at: Some(now - Duration::hours(1)),
            ..ok.clone()
        };
        assert_eq!(
            fields(check(&past, &envs(), now).err().unwrap()),
            ["starts_at", "ends_at"]
        );
        let endless = NewFreeze {
            ends_at: None,
            ..ok.clone()
        };
        assert_eq!(
            fields(check(&endless, &envs(), now).err().unwrap()),
            ["ends_at"]
        );
        // A start a moment ago is now.
        let moment = NewFreeze {
            starts_at: Some(now - Duration::minutes(2)),
            ..ok
        };
        assert_eq!(
            check(&moment, &envs(), now)
                .map_err(fields)
                .unwrap()
                .starts_at,
            now
        );
    }

    #[test]
    fn release_managers_and_administrators_manage_freezes() {
        let actor = |roles: &[Role]| Actor {
            id: Uuid::nil(),
            roles: roles.iter().copied().collect::<RoleSet>(),
            is_service: false,
        };
        assert!(may_manage(&actor(&[Role::ReleaseManager])).is_ok());
        assert!(may_manage(&actor(&[Role::Admin])).is_ok());
        for r in [
            Role::Engineer,
            Role::CabMember,
            Role::Auditor,
            Role::SecurityReviewer,
        ] {
            assert_eq!(
                may_manage(&actor(&[r])).unwrap_err().code,
                "release_manager_required"
            );
        }
    }

    #[test]
    fn a_freeze_stands_where_its_times_put_it() {
        let now = Utc::now();
        let line = |s: i64, e: i64, lifted: bool| FreezeLine {
            id: Uuid::nil(),
            starts_at: now + Duration::minutes(s),
            ends_at: now + Duration::minutes(e),
            reason: "A reason long enough".into(),
            environments: vec![],
            services: vec![],
            created_by: "rita".into(),
            created_by_name: "Rita".into(),
            created_at: now,
            lifted_at: lifted.then_some(now),
            lifted_by: None,
            lifted_by_name: None,
        };
        let status = |l| FreezeView::at(l, now).status;
        assert_eq!(status(line(-5, 5, false)), FreezeStatus::InForce);
        assert_eq!(status(line(5, 10, false)), FreezeStatus::Upcoming);
        assert_eq!(status(line(-10, -5, false)), FreezeStatus::Ended);
        assert_eq!(status(line(-10, 0, true)), FreezeStatus::Lifted);
        assert!(FreezeStatus::Lifted.is_past() && !FreezeStatus::Upcoming.is_past());
    }
}
