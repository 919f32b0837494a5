//! The exceptions to a deployment's usual path, each one on record for
//! review: break-glass deployments, asked for by one release manager and
//! confirmed by a second person, and what runtimes saw running that no
//! authorized deployment covers (findings).

use cab_db::exceptions::{BreakGlassRow, NewBreakGlass, NewObserved, ObservedRow};
use cab_domain::Denial;
use cab_domain::audit::{Attempt, AuditAction};
use cab_domain::deployment::{self as rules, BREAK_GLASS_CONFIRM_WITHIN, BREAK_GLASS_LIFETIME};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit_log::{self, Entity};
use crate::auth::CurrentUser;
use crate::changes;
use crate::deployments::{self, break_glass_id};
use crate::error::AppError;
use crate::refusal;
use crate::request::Origin;

/// How far a runtime's clock may be ahead of CAB's when it says since when
/// something runs.
pub const CLOCK_SKEW: Duration = Duration::minutes(2);

/// What a release manager asks for.
#[derive(Debug, Clone)]
pub struct BreakGlassAsk {
    /// The change: CHG-12, 12, or its id.
    pub change: String,
    /// A production environment's key.
    pub environment: String,
    pub reason: String,
    pub incident: String,
}

/// Asks for a break-glass deployment of a change to production. It waits
/// for a second person for 30 minutes.
pub async fn request_break_glass(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    ask: &BreakGlassAsk,
) -> Result<BreakGlassRow, AppError> {
    let attempted = Attempt::BreakGlassRequest.as_str();
    // Who may ask, before anything they sent is looked at.
    let may = !user.is_service && user.has(cab_domain::Role::ReleaseManager);
    refusal::checked(
        pool,
        user.audit_actor(),
        origin,
        attempted,
        Entity::kind("break_glass"),
        if may {
            Ok(())
        } else {
            Err(Denial::new(
                "break_glass_not_allowed",
                "Only a release manager asks for a break-glass deployment.",
            ))
        },
    )
    .await?;
    let change_id = changes::resolve_id(pool, &ask.change).await?;
    let done = request_in(pool, user, origin, ask, change_id).await;
    refusal::refused_if_failed(
        pool,
        user,
        origin,
        attempted,
        Entity::new("change", change_id),
        done,
    )
    .await
}

async fn request_in(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    ask: &BreakGlassAsk,
    change_id: Uuid,
) -> Result<BreakGlassRow, AppError> {
    let now = Utc::now();
    let mut errors = rules::check_break_glass_request(&ask.reason, &ask.incident);
    let env = {
        let mut conn = pool.acquire().await?;
        deployments::environments(&mut conn)
            .await?
            .into_iter()
            .find(|e| e.rules.key == ask.environment.trim())
    };
    let env = match env {
        Some(e) if e.rules.production && errors.is_empty() => e,
        other => {
            if !other.is_some_and(|e| e.rules.production) {
                errors.push(cab_domain::change::FieldError {
                    field: "environment",
                    message: "Break-glass is for a production environment.".into(),
                });
            }
            return Err(errors.into());
        }
    };
    let mut tx = refusal::begin_deciding(pool).await?;
    let change = changes::load_locked(&mut tx, change_id).await?;
    if let Err(d) = rules::check_break_glass_requester(&change.facts(), &user.actor()) {
        return Err(refusal::refuse_in(
            tx,
            pool,
            user.audit_actor(),
            origin,
            Attempt::BreakGlassRequest.as_str(),
            Entity::new("change", change.id),
            d,
        )
        .await);
    }
    // The two people agree to this revision and this artifact.
    if rules::check_digest(&change.content.artifact_digest).is_err() {
        return Err(AppError::invalid(
            "change",
            "This change names no artifact digest; a break-glass is for a known artifact, so add it to the change first.",
        ));
    }
    let id = Uuid::new_v4();
    cab_db::exceptions::insert_break_glass(
        &mut tx,
        &NewBreakGlass {
            id,
            change_id: change.id,
            environment: &env.rules.key,
            revision: change.revision,
            artifact_digest: &change.content.artifact_digest,
            reason: ask.reason.trim(),
            incident: ask.incident.trim(),
            requested_by: user.id,
            requested_at: now,
            expires_at: now + BREAK_GLASS_CONFIRM_WITHIN,
        },
    )
    .await?;
    audit_log::record(
        &mut tx,
        Some(user.audit_actor()),
        origin,
        AuditAction::BreakGlassRequested.as_str(),
        Entity::new("break_glass", id),
        json!({
            "change": change.key(),
            "change_id": change.id,
            "environment": env.rules.key,
            "environment_label": env.rules.label,
            "revision": change.revision,
            "digest": change.content.artifact_digest,
            "reason": ask.reason.trim(),
            "incident": ask.incident.trim(),
        }),
    )
    .await?;
    crate::idempotency::bind(&mut tx, origin, crate::idempotency::Created::BreakGlass(id)).await?;
    let row = find_in(&mut tx, id).await?;
    tx.commit().await?;
    Ok(row)
}

/// A second person confirms a break-glass: from then it holds for 60
/// minutes and authorizes one production deployment.
pub async fn confirm_break_glass(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    raw: &str,
) -> Result<BreakGlassRow, AppError> {
    let id = known_id(pool, raw).await?;
    let done = confirm_in(pool, user, origin, id).await;
    refusal::refused_if_failed(
        pool,
        user,
        origin,
        Attempt::BreakGlassConfirm.as_str(),
        Entity::new("break_glass", id),
        done,
    )
    .await
}

/// A break-glass named as BG-4, 4 or its id; not found otherwise.
async fn known_id(pool: &PgPool, raw: &str) -> Result<Uuid, AppError> {
    let mut conn = pool.acquire().await?;
    match break_glass_id(&mut conn, raw).await {
        Ok(id)
            if cab_db::exceptions::break_glass(&mut conn, Some(id), None, 1)
                .await?
                .is_empty() =>
        {
            Err(AppError::NotFound("break-glass request"))
        }
        Ok(id) => Ok(id),
        Err(AppError::Invalid { .. }) => Err(AppError::NotFound("break-glass request")),
        Err(e) => Err(e),
    }
}

async fn confirm_in(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
) -> Result<BreakGlassRow, AppError> {
    let now = Utc::now();
    let change_id = {
        let mut conn = pool.acquire().await?;
        find_in(&mut conn, id).await?.change_id
    };
    let attempted = Attempt::BreakGlassConfirm.as_str();
    let entity = || Entity::new("break_glass", id);
    let mut tx = refusal::begin_deciding(pool).await?;
    // The change first, as the gate does, then the request.
    let change = changes::load_locked(&mut tx, change_id).await?;
    cab_db::exceptions::lock_break_glass(&mut tx, id).await?;
    let bg = find_in(&mut tx, id).await?;
    let denial = if bg.confirmed_at.is_some() {
        Some(Denial::new(
            "invalid_transition",
            format!("Break-glass BG-{} is already confirmed.", bg.number),
        ))
    } else {
        rules::check_break_glass_confirmer(
            &change.facts(),
            bg.requested_by,
            bg.requested_at,
            &user.actor(),
            now,
        )
        .err()
    };
    if let Some(d) = denial {
        return Err(refusal::refuse_in(
            tx,
            pool,
            user.audit_actor(),
            origin,
            attempted,
            entity(),
            d,
        )
        .await);
    }
    if !cab_db::exceptions::confirm_break_glass(
        &mut tx,
        id,
        user.id,
        now,
        now + BREAK_GLASS_LIFETIME,
    )
    .await?
    {
        return Err(AppError::Internal(anyhow::anyhow!(
            "a locked, waiting break-glass could not be confirmed"
        )));
    }
    let label = environment_label(&mut tx, &bg.environment).await?;
    audit_log::record(
        &mut tx,
        Some(user.audit_actor()),
        origin,
        AuditAction::BreakGlassConfirmed.as_str(),
        entity(),
        json!({
            "change": change.key(),
            "change_id": change.id,
            "environment": bg.environment,
            "environment_label": label,
            "requester": bg.requester,
            "expires_at": now + BREAK_GLASS_LIFETIME,
        }),
    )
    .await?;
    let row = find_in(&mut tx, id).await?;
    tx.commit().await?;
    Ok(row)
}

async fn environment_label(conn: &mut sqlx::PgConnection, key: &str) -> Result<String, AppError> {
    Ok(deployments::environments(conn)
        .await?
        .into_iter()
        .find(|e| e.rules.key == key)
        .map_or_else(|| key.to_uppercase(), |e| e.rules.label))
}

async fn find_in(conn: &mut sqlx::PgConnection, id: Uuid) -> Result<BreakGlassRow, AppError> {
    cab_db::exceptions::break_glass(conn, Some(id), None, 1)
        .await?
        .pop()
        .ok_or(AppError::NotFound("break-glass request"))
}

/// Where a break-glass request stands: waiting, confirmed, used or expired.
pub fn status(b: &BreakGlassRow, now: DateTime<Utc>) -> &'static str {
    match (b.deployment_id, b.confirmed_at) {
        (Some(_), _) => "used",
        _ if b.expires_at <= now => "expired",
        (None, Some(_)) => "confirmed",
        (None, None) => "waiting",
    }
}

/// One break-glass request, by BG-n, n or id.
pub async fn break_glass(pool: &PgPool, raw: &str) -> Result<BreakGlassRow, AppError> {
    let id = known_id(pool, raw).await?;
    let mut conn = pool.acquire().await?;
    find_in(&mut conn, id).await
}

/// Every break-glass request, newest first: the exceptions to review.
pub async fn break_glass_list(
    pool: &PgPool,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<BreakGlassRow>, AppError> {
    let mut conn = pool.acquire().await?;
    Ok(cab_db::exceptions::break_glass(&mut conn, None, before, limit.clamp(1, 200)).await?)
}

/// What a runtime or a webhook saw running.
#[derive(Debug, Clone)]
pub struct Observation {
    pub environment: String,
    pub service: String,
    pub digest: String,
    /// Since when it runs; now when not said.
    pub observed_at: Option<DateTime<Utc>>,
}

/// Records what runs where. In a production environment, anything no
/// started or succeeded deployment covers is a finding: audited, and shown
/// to release managers, administrators and auditors until resolved.
pub async fn observe(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    o: &Observation,
) -> Result<ObservedRow, AppError> {
    let now = Utc::now();
    let attempted = Attempt::DeploymentObserve.as_str();
    // A person who may report nowhere is refused before anything they
    // sent is looked at; a pipeline account, once the environment is known.
    let person_may =
        user.has(cab_domain::Role::Admin) || user.has(cab_domain::Role::ReleaseManager);
    if !user.is_service && !person_may {
        return Err(refusal::refuse(
            pool,
            user.audit_actor(),
            origin,
            attempted,
            Entity::kind("observed"),
            Denial::new(
                "observe_not_allowed",
                "Only administrators, release managers and pipeline accounts allowed to deploy somewhere report what runs there.",
            ),
        )
        .await);
    }
    let mut errors = Vec::new();
    let env_key = o.environment.trim();
    let service = o.service.trim();
    if let Err(e) = cab_domain::text::check_name("service", service) {
        errors.push(e);
    } else if service.is_empty() || service.chars().count() > 100 {
        errors.push(cab_domain::change::FieldError {
            field: "service",
            message: "Name the service (up to 100 characters).".into(),
        });
    }
    if let Err(e) = rules::check_digest(&o.digest) {
        errors.push(e);
    }
    let observed_at = o.observed_at.unwrap_or(now);
    if observed_at > now + CLOCK_SKEW {
        errors.push(cab_domain::change::FieldError {
            field: "observed_at",
            message: "That is in the future.".into(),
        });
    }
    let mut tx = pool.begin().await?;
    let env = deployments::environments(&mut tx)
        .await?
        .into_iter()
        .find(|e| e.rules.key == env_key);
    let env = match env {
        Some(e) if errors.is_empty() => e,
        other => {
            if other.is_none() {
                errors.push(cab_domain::change::FieldError {
                    field: "environment",
                    message: "No such environment.".into(),
                });
            }
            return Err(errors.into());
        }
    };
    // Who may say what runs: an administrator or release manager, or an
    // account an administrator allowed to deploy there.
    let may = if user.is_service {
        cab_db::deployments::account_environments(&mut tx, user.id)
            .await?
            .contains(&env.rules.key)
    } else {
        person_may
    };
    if !may {
        return Err(refusal::refuse_in(
            tx,
            pool,
            user.audit_actor(),
            origin,
            attempted,
            Entity::kind("observed"),
            Denial::new(
                "observe_not_allowed",
                format!(
                    "Only administrators, release managers and accounts allowed to deploy to {} report what runs there.",
                    env.rules.label
                ),
            ),
        )
        .await);
    }
    let covered = cab_db::exceptions::covering_deployment(
        &mut tx,
        &env.rules.key,
        service,
        &o.digest,
        observed_at,
        CLOCK_SKEW.num_seconds() as f64,
    )
    .await?;
    let finding = env.rules.production && covered.is_none();
    let id = Uuid::new_v4();
    cab_db::exceptions::insert_observed(
        &mut tx,
        &NewObserved {
            id,
            environment: &env.rules.key,
            service,
            digest: &o.digest,
            observed_at,
            reported_by: user.id,
            reported_at: now,
            deployment_id: covered,
            finding,
        },
    )
    .await?;
    if finding {
        audit_log::record(
            &mut tx,
            Some(user.audit_actor()),
            origin,
            AuditAction::DeploymentObserved.as_str(),
            Entity::new("observed", id),
            json!({
                "environment": env.rules.key,
                "environment_label": env.rules.label,
                "service": service,
                "digest": o.digest,
                "observed_at": observed_at,
            }),
        )
        .await?;
    }
    crate::idempotency::bind(&mut tx, origin, crate::idempotency::Created::Observed(id)).await?;
    let row = observed_in_any(&mut tx, id).await?;
    tx.commit().await?;
    Ok(row)
}

/// One observation.
pub async fn observation(pool: &PgPool, id: Uuid) -> Result<ObservedRow, AppError> {
    let mut conn = pool.acquire().await?;
    observed_in_any(&mut conn, id).await
}

/// Observations, newest first; only open findings when `open_findings`.
pub async fn observed(
    pool: &PgPool,
    open_findings: bool,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<ObservedRow>, AppError> {
    let mut conn = pool.acquire().await?;
    Ok(cab_db::exceptions::observed(&mut conn, open_findings, before, limit.clamp(1, 200)).await?)
}

/// How many findings wait for someone to resolve them.
pub async fn open_findings(pool: &PgPool) -> Result<i64, AppError> {
    let mut conn = pool.acquire().await?;
    Ok(cab_db::exceptions::open_findings(&mut conn).await?)
}

/// A release manager or administrator resolves a finding, saying what it
/// was.
pub async fn resolve_finding(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    resolution: &str,
) -> Result<(), AppError> {
    let may = !user.is_service
        && (user.has(cab_domain::Role::Admin) || user.has(cab_domain::Role::ReleaseManager));
    let attempted = Attempt::FindingResolve.as_str();
    if !may {
        return Err(refusal::refuse(
            pool,
            user.audit_actor(),
            origin,
            attempted,
            Entity::new("observed", id),
            Denial::new(
                "resolve_not_allowed",
                "Release managers and administrators resolve findings.",
            ),
        )
        .await);
    }
    let resolution = resolution.trim();
    cab_domain::text::check_text("resolution", resolution)
        .map_err(|e| AppError::invalid(e.field, e.message))?;
    if resolution.chars().count() < 10 || resolution.chars().count() > 2000 {
        return Err(AppError::invalid(
            "resolution",
            "Say what it was, in 10 to 2,000 characters.",
        ));
    }
    let now = Utc::now();
    let mut tx = pool.begin().await?;
    let row = observed_in_any(&mut tx, id).await?;
    if !cab_db::exceptions::resolve_finding(&mut tx, id, user.id, now, resolution).await? {
        return Err(refusal::refuse_in(
            tx,
            pool,
            user.audit_actor(),
            origin,
            attempted,
            Entity::new("observed", id),
            Denial::new("invalid_transition", "This is not an open finding."),
        )
        .await);
    }
    audit_log::record(
        &mut tx,
        Some(user.audit_actor()),
        origin,
        AuditAction::FindingResolved.as_str(),
        Entity::new("observed", id),
        json!({
            "environment": row.environment,
            "service": row.service,
            "digest": row.artifact_digest,
            "resolution": resolution,
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn observed_in_any(conn: &mut sqlx::PgConnection, id: Uuid) -> Result<ObservedRow, AppError> {
    cab_db::exceptions::observed_one(conn, id)
        .await?
        .ok_or(AppError::NotFound("finding"))
}
