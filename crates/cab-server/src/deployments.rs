//! Deployments behind the API, the pages and the `cab gate` commands: the
//! gate that authorizes (or refuses, naming every reason), the reports of
//! what became of a deployment, environments and freezes.
//!
//! The rules are `cab_domain::deployment`'s; this module gathers their facts
//! in the change's locked transaction, writes the outcome with its audit
//! event, and signs the authorization (`crypto::deploy`).

use std::collections::HashMap;

use cab_db::deployments::{DeploymentFilter, DeploymentRow, EnvironmentRow, FreezeRow};
use cab_domain::audit::{Attempt, AuditAction};
use cab_domain::change::FieldError;
use cab_domain::deployment::{self as rules, DeploymentState, EnvironmentRules, Freeze, GateFacts};
use cab_domain::lifecycle::Event;
use cab_domain::{Actor, Denial, Role, RoleSet};
use chrono::{DateTime, Datelike, Duration, Utc};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::audit_log::{self, Entity};
use crate::auth::CurrentUser;
use crate::changes::{self, ChangeView};
use crate::crypto::Keys;
use crate::crypto::deploy::{self as tokens, DeployClaims, Jwk, Jwks, StoredKey};
use crate::error::AppError;
use crate::idempotency::{self, Created};
use crate::refusal;
use crate::request::Origin;

/// The setting that lets an approver also initiate the production
/// deployment of what they approved (off unless an administrator turns it on).
pub const APPROVER_MAY_DEPLOY: &str = "approver_may_deploy";

/// An environment as people see it: its rules and its colour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub rules: EnvironmentRules,
    pub colour: String,
}

impl Environment {
    fn from_row(r: EnvironmentRow) -> Self {
        Environment {
            rules: EnvironmentRules {
                key: r.key,
                label: r.label,
                rank: r.rank,
                production: r.production,
                needs_approval: r.needs_approval,
                needs_promotion: r.needs_promotion,
                soak: Duration::minutes(i64::from(r.soak_minutes)),
            },
            colour: r.colour,
        }
    }

    fn to_row(&self) -> EnvironmentRow {
        EnvironmentRow {
            key: self.rules.key.clone(),
            label: self.rules.label.clone(),
            rank: self.rules.rank,
            production: self.rules.production,
            needs_approval: self.rules.needs_approval,
            needs_promotion: self.rules.needs_promotion,
            soak_minutes: i32::try_from(self.rules.soak.num_minutes()).unwrap_or(i32::MAX),
            colour: self.colour.clone(),
        }
    }
}

/// The environments, lowest rank first.
pub async fn environments(conn: &mut PgConnection) -> Result<Vec<Environment>, AppError> {
    Ok(cab_db::deployments::environments(conn)
        .await?
        .into_iter()
        .map(Environment::from_row)
        .collect())
}

/// Label and colour of each environment by key, for pages and answers.
pub type EnvironmentLabels = HashMap<String, Environment>;

pub async fn environment_labels(pool: &PgPool) -> Result<EnvironmentLabels, AppError> {
    let mut conn = pool.acquire().await?;
    Ok(environments(&mut conn)
        .await?
        .into_iter()
        .map(|e| (e.rules.key.clone(), e))
        .collect())
}

/// What a pipeline (or a person) asks the gate.
#[derive(Debug, Clone, Default)]
pub struct GateRequest {
    /// CHG-12, 12, or the change's id.
    pub change: String,
    pub revision: i32,
    pub environment: String,
    pub artifact_name: String,
    pub artifact_version: String,
    pub artifact_digest: String,
    /// Empty: all the change's services.
    pub services: Vec<String>,
    /// The person a pipeline deploys for (username).
    pub initiator: Option<String>,
    pub pipeline_provider: String,
    pub pipeline_run_id: String,
    pub pipeline_url: String,
    /// A confirmed break-glass this production deployment uses: BG-4, 4,
    /// or its id.
    pub break_glass: Option<String>,
    /// The commits the artifact carries, as the pipeline knows them: lead
    /// time for changes starts at the first.
    pub commits: Vec<Commit>,
}

/// A commit a deployment carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commit {
    pub sha: String,
    pub committed_at: DateTime<Utc>,
}

/// The most commits one deployment reports.
pub const MAX_COMMITS: usize = 1000;

/// An authorization: the deployment recorded and its signed token.
#[derive(Debug, Clone)]
pub struct Authorized {
    pub deployment: DeploymentRow,
    pub token: String,
}

/// What a dry run answers: whether the gate would authorize, why not, and
/// until when it would hold.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub reasons: Vec<Denial>,
    pub expires_at: Option<DateTime<Utc>>,
}

fn field(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// The request's own faults, every one at once.
fn check_request(req: &GateRequest, envs: &[Environment]) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if req.revision < 0 {
        errors.push(field(
            "revision",
            "Name the change's revision being deployed (0 for a draft never submitted).",
        ));
    }
    if !envs.iter().any(|e| e.rules.key == req.environment) {
        let known: Vec<&str> = envs.iter().map(|e| e.rules.key.as_str()).collect();
        errors.push(field(
            "environment",
            format!("No such environment; choose one of {}.", known.join(", ")),
        ));
    }
    let name = req.artifact_name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        errors.push(field(
            "artifact_name",
            "Name the artifact (up to 200 characters).",
        ));
    }
    if req.artifact_version.chars().count() > 100 {
        errors.push(field(
            "artifact_version",
            "An artifact version is at most 100 characters.",
        ));
    }
    if let Err(e) = rules::check_digest(&req.artifact_digest) {
        errors.push(e);
    }
    for (f, v, max) in [
        ("pipeline_provider", &req.pipeline_provider, 40),
        ("pipeline_run_id", &req.pipeline_run_id, 200),
        ("pipeline_url", &req.pipeline_url, 2000),
    ] {
        if v.chars().count() > max {
            errors.push(field(f, format!("At most {max} characters.")));
        }
    }
    if !req.pipeline_url.is_empty() && !cab_domain::change::is_link(&req.pipeline_url) {
        errors.push(field(
            "pipeline_url",
            "A pipeline URL starts with https:// or http://.",
        ));
    }
    if req.commits.len() > MAX_COMMITS {
        errors.push(field(
            "commits",
            format!("Report at most {MAX_COMMITS} commits."),
        ));
    }
    let latest = Utc::now() + chrono::Duration::minutes(1);
    if let Some((i, _)) = req.commits.iter().enumerate().find(|(_, c)| {
        let hex = (7..=64).contains(&c.sha.len())
            && c.sha
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        !hex || c.committed_at.year() < 2000 || c.committed_at > latest
    }) {
        errors.push(field(
            "commits",
            format!(
                "Commit {}: a commit is its hash (7 to 64 lower-case hex digits) and the time it was made, not in the future.",
                i + 1
            ),
        ));
    }
    errors
}

/// Who is deploying: the executor's roles, and for a pipeline the
/// environments an administrator allowed it.
fn executor_may_deploy(
    executor: &CurrentUser,
    allowed: &[String],
    env: &EnvironmentRules,
) -> Option<Denial> {
    if executor.is_service {
        if !allowed.contains(&env.key) {
            return Some(Denial::new(
                "environment_not_allowed",
                format!(
                    "This pipeline account may not deploy to {}; an administrator sets where it may.",
                    env.label
                ),
            ));
        }
        return None;
    }
    let may = executor.has(Role::Engineer) || executor.has(Role::ReleaseManager);
    (!may).then(|| {
        Denial::new(
            "deploy_not_allowed",
            "Only engineers and release managers deploy, and only release managers to production.",
        )
    })
}

/// The person a pipeline names, as the rules see them.
async fn named_initiator(
    conn: &mut PgConnection,
    username: &str,
) -> Result<Result<(Uuid, String, Actor), Denial>, AppError> {
    let row = cab_db::users::find_by_username(conn, username.trim()).await?;
    Ok(match row {
        Some(u) if u.disabled_at.is_none() => {
            let roles = RoleSet::parse(&u.roles).map_err(|e| AppError::Internal(e.into()))?;
            let actor = Actor {
                id: u.id,
                roles,
                is_service: u.is_service,
            };
            Ok((u.id, u.username, actor))
        }
        _ => Err(Denial::new(
            "initiator_unknown",
            format!("No active person is called {:?} in CAB.", username.trim()),
        )),
    })
}

/// Everything the gate decides on, read in the change's transaction.
struct Gathered {
    change: ChangeView,
    env: Environment,
    reasons: Vec<Denial>,
    expires_at: Option<DateTime<Utc>>,
    initiator: (Uuid, String),
    services: Vec<String>,
    break_glass: Option<Uuid>,
}

#[allow(clippy::too_many_arguments)]
async fn gather(
    tx: &mut PgConnection,
    executor: &CurrentUser,
    change_id: Uuid,
    revision: i32,
    env_key: &str,
    digest: &str,
    services: &[String],
    initiator: Option<&str>,
    exclude: Option<Uuid>,
    break_glass: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<Gathered, AppError> {
    let change = changes::load_locked(tx, change_id).await?;
    let envs = environments(tx).await?;
    let env = envs
        .iter()
        .find(|e| e.rules.key == env_key)
        .cloned()
        .ok_or_else(|| AppError::invalid("environment", "No such environment."))?;
    let services: Vec<String> = if services.is_empty() {
        change.content.services.clone()
    } else {
        services.to_vec()
    };
    if let Some(s) = services
        .iter()
        .find(|s| !change.content.services.contains(s))
    {
        return Err(AppError::invalid(
            "services",
            format!("{s:?} is not a service this change names."),
        ));
    }
    let mut reasons = Vec::new();
    let allowed = if executor.is_service {
        cab_db::deployments::account_environments(tx, executor.id).await?
    } else {
        Vec::new()
    };
    if let Some(d) = executor_may_deploy(executor, &allowed, &env.rules) {
        reasons.push(d);
    }
    let named = match initiator.filter(|s| !s.trim().is_empty()) {
        Some(name) => match named_initiator(tx, name).await? {
            Ok(found) => Some(found),
            Err(d) => {
                reasons.push(d);
                None
            }
        },
        None => None,
    };
    let decision = cab_db::decisions::decision(tx, change.id).await?;
    let approvers = cab_db::deployments::approvers(tx, change.id).await?;
    let approver_may_deploy = cab_db::deployments::bool_setting(tx, APPROVER_MAY_DEPLOY)
        .await?
        .unwrap_or(false);
    let rules_envs: Vec<EnvironmentRules> = envs.iter().map(|e| e.rules.clone()).collect();
    let below = rules::below(&rules_envs, &env.rules);
    let succeeded_below_at = match below {
        Some(b) => cab_db::deployments::succeeded_at(tx, digest, &b.key).await?,
        None => None,
    };
    let freezes: Vec<Freeze> = cab_db::deployments::freezes_after(tx, now)
        .await?
        .into_iter()
        .map(freeze_rule)
        .collect();
    if exclude.is_none() {
        for id in cab_db::deployments::expire_stale(tx, change.id, &env.rules.key, now).await? {
            audit_log::record(
                tx,
                None,
                &Origin::default(),
                AuditAction::DeploymentExpired.as_str(),
                Entity::new("deployment", id),
                json!({"change": change.key(), "change_id": change.id, "environment": env.rules.key}),
            )
            .await?;
        }
    }
    let in_progress = match exclude {
        None => cab_db::deployments::under_way(tx, change.id, &env.rules.key, now).await?,
        Some(_) => false,
    };
    let facts = change.facts();
    let window = match (change.content.window_start, change.content.window_end) {
        (Some(s), Some(e)) => Some((s, e)),
        _ => None,
    };
    let artifact_is_the_changes =
        !change.content.artifact_digest.is_empty() && change.content.artifact_digest == digest;
    let gate_facts = GateFacts {
        change: &facts,
        approved_revision: decision.approved_revision,
        requested_revision: revision,
        current_revision: change.revision,
        window,
        environment: &env.rules,
        below,
        succeeded_below_at,
        artifact_is_the_changes,
        services: &services,
        freezes: &freezes,
        in_progress,
        approvers: &approvers,
        approver_may_deploy,
        break_glass_until: None,
    };
    let initiator_actor = named.as_ref().map(|(_, _, a)| a);
    let initiator_id = named.as_ref().map_or(executor.id, |(id, _, _)| *id);
    let gate_facts = GateFacts {
        break_glass_until: match break_glass {
            Some(id) => {
                let (until, mut r) =
                    break_glass_holds(tx, id, &change, &env.rules, digest, initiator_id, exclude)
                        .await?;
                reasons.append(&mut r);
                until
            }
            None => None,
        },
        ..gate_facts
    };
    let verdict = rules::gate(&gate_facts, &executor.actor(), initiator_actor, now);
    // A change in an approved or running release deploys to a phased
    // environment only in its phase: the release's rule, added to the
    // gate's own. A break-glass that holds is the emergency path around it.
    if gate_facts.break_glass_until.is_none()
        && let Some(d) =
            crate::releases::gate_reason(tx, change.id, &env.rules.key, &env.rules.label).await?
    {
        reasons.push(d);
    }
    let expires_at = match verdict {
        Ok(a) => Some(a.expires_at),
        Err(mut r) => {
            reasons.append(&mut r);
            None
        }
    };
    let initiator = match named {
        Some((id, name, _)) => (id, name),
        None => (executor.id, executor.username.clone()),
    };
    Ok(Gathered {
        change,
        env,
        reasons,
        expires_at,
        initiator,
        services,
        break_glass,
    })
}

/// Whether break-glass `id` may carry this deployment: confirmed, for this
/// change and environment, asked for by its initiator, and not used by
/// another deployment. Until when it holds, and why not.
async fn break_glass_holds(
    tx: &mut PgConnection,
    id: Uuid,
    change: &ChangeView,
    env: &EnvironmentRules,
    digest: &str,
    initiator: Uuid,
    exclude: Option<Uuid>,
) -> Result<(Option<DateTime<Utc>>, Vec<Denial>), AppError> {
    cab_db::exceptions::lock_break_glass(tx, id).await?;
    let Some(bg) = cab_db::exceptions::break_glass(tx, Some(id), None, 1)
        .await?
        .pop()
    else {
        return Err(AppError::invalid("break_glass", "No such break-glass."));
    };
    let mut reasons = Vec::new();
    if bg.change_id != change.id || bg.environment != env.key {
        reasons.push(Denial::new(
            "break_glass_mismatch",
            format!(
                "Break-glass BG-{} is for {} in another environment or for another change.",
                bg.number,
                cab_domain::change::ChangeKey(bg.change_number)
            ),
        ));
    } else if bg.revision != change.revision || bg.artifact_digest != digest {
        reasons.push(Denial::new(
            "break_glass_mismatch",
            format!(
                "Break-glass BG-{} was confirmed for revision {} and artifact {}; an edit or another artifact needs another break-glass.",
                bg.number,
                bg.revision,
                short_digest(&bg.artifact_digest)
            ),
        ));
    } else if bg.requested_by != initiator {
        reasons.push(Denial::new(
            "break_glass_mismatch",
            format!(
                "Break-glass BG-{} was asked for by {}; only they deploy with it.",
                bg.number, bg.requester
            ),
        ));
    }
    if bg.deployment_id.is_some() && bg.deployment_id != exclude {
        reasons.push(Denial::new(
            "break_glass_used",
            format!(
                "Break-glass BG-{} has already authorized a deployment.",
                bg.number
            ),
        ));
    }
    if bg.confirmed_at.is_none() {
        reasons.push(Denial::new(
            "break_glass_not_confirmed",
            format!(
                "Break-glass BG-{} waits for a second person to confirm it.",
                bg.number
            ),
        ));
        return Ok((None, reasons));
    }
    Ok((Some(bg.expires_at), reasons))
}

fn short_digest(d: &str) -> &str {
    d.get(..19).unwrap_or(d)
}

/// A break-glass named as BG-4, 4 or its id.
pub async fn break_glass_id(conn: &mut PgConnection, raw: &str) -> Result<Uuid, AppError> {
    let raw = raw.trim();
    if let Ok(id) = Uuid::parse_str(raw) {
        return Ok(id);
    }
    let number = raw
        .strip_prefix("BG-")
        .or_else(|| raw.strip_prefix("bg-"))
        .unwrap_or(raw)
        .parse::<i64>()
        .ok();
    let found = match number {
        Some(n) => cab_db::exceptions::break_glass_id_by_number(conn, n).await?,
        None => None,
    };
    found.ok_or_else(|| AppError::invalid("break_glass", "No such break-glass."))
}

/// The gate's facts for a fresh request.
async fn gather_request(
    tx: &mut PgConnection,
    user: &CurrentUser,
    change_id: Uuid,
    req: &GateRequest,
    now: DateTime<Utc>,
) -> Result<Gathered, AppError> {
    let break_glass = match req.break_glass.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => Some(break_glass_id(tx, raw).await?),
    };
    gather(
        tx,
        user,
        change_id,
        req.revision,
        &req.environment,
        &req.artifact_digest,
        &req.services,
        req.initiator.as_deref(),
        None,
        break_glass,
        now,
    )
    .await
}

fn freeze_rule(f: FreezeRow) -> Freeze {
    Freeze {
        starts_at: f.starts_at,
        ends_at: f.ends_at,
        reason: f.reason,
        environments: f.environments,
        services: f.services,
    }
}

/// Asks the gate without recording anything: what it would answer now.
pub async fn dry_run(
    pool: &PgPool,
    user: &CurrentUser,
    req: &GateRequest,
) -> Result<Verdict, AppError> {
    let now = Utc::now();
    let change_id = changes::resolve_id(pool, &req.change).await?;
    let mut tx = pool.begin().await?;
    let envs = environments(&mut tx).await?;
    let errors = check_request(req, &envs);
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let g = gather_request(&mut tx, user, change_id, req, now).await?;
    tx.rollback().await?;
    Ok(Verdict {
        expires_at: g.expires_at.filter(|_| g.reasons.is_empty()),
        reasons: g.reasons,
    })
}

/// Asks the gate: an authorized deployment and its signed token, or a
/// recorded refusal naming every reason.
pub async fn authorize(
    pool: &PgPool,
    keys: &Keys,
    user: &CurrentUser,
    origin: &Origin,
    req: &GateRequest,
) -> Result<Authorized, AppError> {
    let now = Utc::now();
    let change_id = changes::resolve_id(pool, &req.change).await?;
    {
        let mut conn = pool.acquire().await?;
        let errors = check_request(req, &environments(&mut conn).await?);
        if !errors.is_empty() {
            return Err(errors.into());
        }
    }
    let key = signing_key(pool, keys).await?;
    let mut tx = refusal::begin_deciding(pool).await?;
    let g = match gather_request(&mut tx, user, change_id, req, now).await {
        Ok(g) => g,
        Err(e @ (AppError::Internal(_) | AppError::Unavailable)) => {
            tracing::error!(error = %e, "the deployment gate could not read its facts; refusing");
            drop(tx);
            return Err(refusal::refuse_all(
                pool,
                user.audit_actor(),
                origin,
                Attempt::DeploymentAuthorize.as_str(),
                Entity::new("change", change_id),
                vec![refusal::unavailable()],
            )
            .await);
        }
        Err(e) => return Err(e),
    };
    let expires_at = match g.expires_at {
        Some(at) if g.reasons.is_empty() => at,
        _ => {
            let entity = Entity::new("change", g.change.id);
            let mut reasons = g.reasons;
            if reasons.is_empty() {
                reasons.push(refusal::unavailable());
            }
            if let Err(e) = tx.rollback().await {
                tracing::warn!(error = %e, "rolling back a refused request failed");
            }
            return Err(refusal::refuse_all(
                pool,
                user.audit_actor(),
                origin,
                Attempt::DeploymentAuthorize.as_str(),
                entity,
                reasons,
            )
            .await);
        }
    };
    let id = Uuid::new_v4();
    let token_id = Uuid::new_v4();
    let commit_shas: Vec<String> = req.commits.iter().map(|c| c.sha.clone()).collect();
    let new = cab_db::deployments::NewDeployment {
        id,
        change_id: g.change.id,
        revision: req.revision,
        environment: &g.env.rules.key,
        artifact_name: req.artifact_name.trim(),
        artifact_version: req.artifact_version.trim(),
        artifact_digest: &req.artifact_digest,
        services: &g.services,
        initiator_id: g.initiator.0,
        executor_id: user.id,
        pipeline_provider: req.pipeline_provider.trim(),
        pipeline_run_id: req.pipeline_run_id.trim(),
        pipeline_url: req.pipeline_url.trim(),
        authorized_at: now,
        expires_at,
        token_id,
        commit_shas: &commit_shas,
        first_commit_at: req.commits.iter().map(|c| c.committed_at).min(),
    };
    let inserted = cab_db::deployments::insert(&mut tx, &new).await;
    if let (Ok(()), Some(bg)) = (&inserted, g.break_glass)
        && !cab_db::exceptions::use_break_glass(&mut tx, bg, id, now).await?
    {
        drop(tx);
        return Err(refusal::refuse_all(
            pool,
            user.audit_actor(),
            origin,
            Attempt::DeploymentAuthorize.as_str(),
            Entity::new("change", g.change.id),
            vec![Denial::new(
                "break_glass_used",
                "This break-glass has already authorized a deployment, or no longer holds.",
            )],
        )
        .await);
    }
    if let Err(e) = inserted {
        if cab_db::is_unique_violation(&e, cab_db::deployments::ONE_UNDER_WAY) {
            drop(tx);
            return Err(refusal::refuse_all(
                pool,
                user.audit_actor(),
                origin,
                Attempt::DeploymentAuthorize.as_str(),
                Entity::new("change", g.change.id),
                vec![Denial::new(
                    "deployment_in_progress",
                    format!(
                        "A deployment of this change to {} is already under way.",
                        g.env.rules.label
                    ),
                )],
            )
            .await);
        }
        return Err(e.into());
    }
    let claims = DeployClaims {
        iss: tokens::ISSUER.into(),
        aud: tokens::AUD_DEPLOY.into(),
        sub: id,
        jti: token_id,
        iat: now.timestamp(),
        exp: expires_at.timestamp(),
        change: g.change.key(),
        change_id: g.change.id,
        revision: req.revision,
        environment: g.env.rules.key.clone(),
        digest: req.artifact_digest.clone(),
        initiator: g.initiator.1.clone(),
        initiator_id: g.initiator.0,
        break_glass: g.break_glass.is_some(),
    };
    let token = tokens::sign(keys, &key, &claims).map_err(AppError::Internal)?;
    audit_log::record(
        &mut tx,
        Some(user.audit_actor()),
        origin,
        AuditAction::DeploymentAuthorized.as_str(),
        Entity::new("deployment", id),
        json!({
            "change": g.change.key(),
            "change_id": g.change.id,
            "revision": req.revision,
            "environment": g.env.rules.key,
            "environment_label": g.env.rules.label,
            "artifact": {"name": new.artifact_name, "version": new.artifact_version, "digest": req.artifact_digest},
            "services": g.services,
            "initiator": g.initiator.1,
            "executor": user.username,
            "pipeline": {"provider": new.pipeline_provider, "run_id": new.pipeline_run_id, "url": new.pipeline_url},
            "expires_at": expires_at,
            "key": key.kid,
            "break_glass": g.break_glass,
        }),
    )
    .await?;
    idempotency::bind(&mut tx, origin, Created::Deployment { id, token: &token }).await?;
    let deployment = cab_db::deployments::find(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("deployment"))?;
    tx.commit().await?;
    Ok(Authorized { deployment, token })
}

/// A report of what became of a deployment.
#[derive(Debug, Clone)]
pub struct Report {
    pub state: DeploymentState,
    /// The signed authorization; required to start.
    pub token: Option<String>,
    pub note: String,
}

/// Records what became of a deployment: started (consuming its
/// authorization and checking the gate again), succeeded, failed, rolled
/// back, or aborted before it started.
pub async fn report(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    report: &Report,
) -> Result<DeploymentRow, AppError> {
    if report.note.chars().count() > 2000 {
        return Err(AppError::invalid(
            "note",
            "A note is at most 2,000 characters.",
        ));
    }
    let now = Utc::now();
    let entity = || Entity::new("deployment", id);
    let attempted = Attempt::DeploymentReport.as_str();
    let mut tx = refusal::begin_deciding(pool).await?;
    let Some(row) = cab_db::deployments::find(&mut tx, id).await? else {
        return Err(AppError::NotFound("deployment"));
    };
    // The change first, then the deployment: the gate's order, so the two
    // never wait on each other.
    let change = changes::load_locked(&mut tx, row.change_id).await?;
    let row = cab_db::deployments::find_for_update(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("deployment"))?;
    if user.id != row.executor_id && user.id != row.initiator_id {
        return Err(refusal::refuse_in(
            tx,
            pool,
            user.audit_actor(),
            origin,
            attempted,
            entity(),
            Denial::new(
                "not_your_deployment",
                "Only the account that runs a deployment, or the person it was authorized for, reports on it.",
            ),
        )
        .await);
    }
    let from = DeploymentState::parse(&row.state).ok_or_else(|| {
        AppError::Internal(anyhow::anyhow!("unknown deployment state {}", row.state))
    })?;
    let to = report.state;
    // A repeated report changes nothing (a spent authorization excepted).
    if from == to && to != DeploymentState::Started {
        tx.rollback().await?;
        return Ok(row);
    }
    let expired = from == DeploymentState::Authorized && row.expires_at <= now;
    if let Err(d) = rules::check_transition(from, to) {
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
    if to == DeploymentState::Started {
        if let Err(d) = check_token(pool, &row, report.token.as_deref()).await? {
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
        if expired {
            expire(&mut tx, &row, &change, now).await?;
            tx.commit().await?;
            return Err(refusal::refuse(
                pool,
                user.audit_actor(),
                origin,
                attempted,
                entity(),
                Denial::new(
                    "authorization_expired",
                    "This authorization has run out; ask the gate again.",
                ),
            )
            .await);
        }
        // The gate again, as it stands now: a freeze that began, a material
        // edit, a window that closed since the authorization all stop the
        // start.
        let executor = executor_of(&mut tx, &row).await?;
        let initiator_name = (row.initiator_id != row.executor_id).then_some(row.initiator.clone());
        let break_glass = cab_db::exceptions::break_glass_of(&mut tx, row.id).await?;
        let g = gather(
            &mut tx,
            &executor,
            row.change_id,
            row.revision,
            &row.environment,
            &row.artifact_digest,
            &row.services,
            initiator_name.as_deref(),
            Some(row.id),
            break_glass,
            now,
        )
        .await?;
        if !g.reasons.is_empty() {
            let note = g
                .reasons
                .iter()
                .map(|d| d.message.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            move_to(
                &mut tx,
                user,
                origin,
                &row,
                &change,
                DeploymentState::Aborted,
                &note,
                now,
            )
            .await?;
            tx.commit().await?;
            return Err(refusal::refuse_all(
                pool,
                user.audit_actor(),
                origin,
                attempted,
                entity(),
                g.reasons,
            )
            .await);
        }
    }
    move_to(
        &mut tx,
        user,
        origin,
        &row,
        &change,
        to,
        report.note.trim(),
        now,
    )
    .await?;
    let row = cab_db::deployments::find(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("deployment"))?;
    tx.commit().await?;
    Ok(row)
}

/// The account that runs the deployment, as the gate saw it.
async fn executor_of(tx: &mut PgConnection, row: &DeploymentRow) -> Result<CurrentUser, AppError> {
    let u = cab_db::users::find_by_id(tx, row.executor_id)
        .await?
        .ok_or(AppError::NotFound("user"))?;
    CurrentUser::command_line(u)
}

/// Whether `token` is this deployment's unused, validly signed authorization.
async fn check_token(
    pool: &PgPool,
    row: &DeploymentRow,
    token: Option<&str>,
) -> Result<Result<(), Denial>, AppError> {
    let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(Err(Denial::new(
            "authorization_required",
            "Starting a deployment takes the authorization the gate gave for it.",
        )));
    };
    let jwks = published_keys(pool).await?;
    // The expiry is judged from the record (an expired one answers
    // `authorization_expired`), the signature and the binding here.
    let claims = match tokens::verify(token, &jwks, row.authorized_at) {
        Ok(c) => c,
        Err(e) => {
            return Ok(Err(Denial::new(
                "authorization_invalid",
                format!("This is not a valid authorization: {e}."),
            )));
        }
    };
    if claims.sub != row.id || claims.jti != row.token_id {
        return Ok(Err(Denial::new(
            "authorization_invalid",
            "This authorization is for another deployment.",
        )));
    }
    if let Err(e) = tokens::check_target(&claims, &row.environment, &row.artifact_digest) {
        return Ok(Err(Denial::new(
            "authorization_invalid",
            format!("This authorization does not match the deployment: {e}."),
        )));
    }
    if row.token_used_at.is_some() {
        return Ok(Err(Denial::new(
            "authorization_used",
            "This authorization has already started its deployment; ask the gate again.",
        )));
    }
    Ok(Ok(()))
}

async fn expire(
    tx: &mut PgConnection,
    row: &DeploymentRow,
    change: &ChangeView,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    cab_db::deployments::move_to(
        tx,
        &cab_db::deployments::Moved {
            id: row.id,
            to: DeploymentState::Expired.as_str(),
            at: now,
            note: "",
        },
    )
    .await?;
    audit_log::record(
        tx,
        None,
        &Origin::default(),
        AuditAction::DeploymentExpired.as_str(),
        Entity::new("deployment", row.id),
        json!({"change": change.key(), "change_id": change.id, "environment": row.environment}),
    )
    .await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn move_to(
    tx: &mut PgConnection,
    user: &CurrentUser,
    origin: &Origin,
    row: &DeploymentRow,
    change: &ChangeView,
    to: DeploymentState,
    note: &str,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    cab_db::deployments::move_to(
        tx,
        &cab_db::deployments::Moved {
            id: row.id,
            to: to.as_str(),
            at: now,
            note,
        },
    )
    .await?;
    // A production deployment moves the change along in the same
    // transaction; the deployment's event records both.
    let production = environments(tx)
        .await?
        .iter()
        .any(|e| e.rules.key == row.environment && e.rules.production);
    let change_moved = if production {
        let t = crate::lifecycle::apply(
            tx,
            user,
            origin,
            change,
            &Event::Deployed(to),
            now,
            json!({}),
        )
        .await?;
        (t.to != t.from).then_some((t.from, t.to))
    } else {
        None
    };
    let action = match to {
        DeploymentState::Started => AuditAction::DeploymentStarted,
        DeploymentState::Succeeded => AuditAction::DeploymentSucceeded,
        DeploymentState::Failed => AuditAction::DeploymentFailed,
        DeploymentState::RolledBack => AuditAction::DeploymentRolledBack,
        DeploymentState::Expired => AuditAction::DeploymentExpired,
        DeploymentState::Aborted | DeploymentState::Authorized => AuditAction::DeploymentAborted,
    };
    audit_log::record(
        tx,
        Some(user.audit_actor()),
        origin,
        action.as_str(),
        Entity::new("deployment", row.id),
        json!({
            "change": change.key(),
            "change_id": change.id,
            "environment": row.environment,
            "digest": row.artifact_digest,
            "from": row.state,
            "to": to.as_str(),
            "note": note,
            "change_from": change_moved.map(|(from, _)| from.as_str()),
            "change_to": change_moved.map(|(_, to)| to.as_str()),
        }),
    )
    .await?;
    Ok(())
}

pub async fn load(pool: &PgPool, id: Uuid) -> Result<DeploymentRow, AppError> {
    let mut conn = pool.acquire().await?;
    cab_db::deployments::find(&mut conn, id)
        .await?
        .ok_or(AppError::NotFound("deployment"))
}

/// Accepts a UUID or a deployment number (`DEP-<n>`, `<n>`).
pub async fn resolve_id(pool: &PgPool, raw: &str) -> Result<Uuid, AppError> {
    if let Ok(id) = raw.parse::<Uuid>() {
        return Ok(id);
    }
    let digits = raw
        .strip_prefix("DEP-")
        .or_else(|| raw.strip_prefix("dep-"))
        .unwrap_or(raw);
    let number: i64 = digits
        .parse()
        .map_err(|_| AppError::NotFound("deployment"))?;
    let mut conn = pool.acquire().await?;
    cab_db::deployments::id_by_number(&mut conn, number)
        .await?
        .ok_or(AppError::NotFound("deployment"))
}

pub async fn list(
    pool: &PgPool,
    filter: &DeploymentFilter,
    limit: i64,
) -> Result<Vec<DeploymentRow>, AppError> {
    let mut conn = pool.acquire().await?;
    Ok(cab_db::deployments::list(&mut conn, filter, limit).await?)
}

pub async fn for_change(pool: &PgPool, change_id: Uuid) -> Result<Vec<DeploymentRow>, AppError> {
    let mut conn = pool.acquire().await?;
    Ok(cab_db::deployments::for_change(&mut conn, change_id).await?)
}

/// The key set that checks authorizations: every key, retired ones too.
pub async fn published_keys(pool: &PgPool) -> Result<Jwks, AppError> {
    let mut conn = pool.acquire().await?;
    Ok(Jwks {
        keys: cab_db::deployments::signing_keys(&mut conn)
            .await?
            .iter()
            .map(|k| Jwk::ed25519(&k.kid, &k.public_key))
            .collect(),
    })
}

fn stored(k: cab_db::deployments::SigningKeyRow) -> StoredKey {
    StoredKey {
        kid: k.kid,
        public_key: k.public_key,
        sealed_private: k.sealed_private,
    }
}

/// The key that signs now, made on first use.
async fn signing_key(pool: &PgPool, keys: &Keys) -> Result<StoredKey, AppError> {
    let mut conn = pool.acquire().await?;
    let active = cab_db::deployments::signing_keys(&mut conn)
        .await?
        .into_iter()
        .find(|k| k.retired_at.is_none());
    drop(conn);
    match active.map(stored) {
        Some(k) if tokens::opens(keys, &k) => Ok(k),
        // Sealed under another secret key (it was changed): a new key signs
        // from now on, and the old one stays published.
        Some(k) => {
            tracing::warn!(kid = %k.kid, "the active signing key was sealed under another secret key; making a new one");
            rotate(pool, keys, None, Rotation::Unopenable).await
        }
        None => rotate(pool, keys, None, Rotation::First).await,
    }
}

/// When a new signing key is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// Now (`cab keys rotate`).
    Always,
    /// Only when no key is active: the first key, made by whichever replica
    /// needs it first.
    First,
    /// Only when the active key cannot be opened with this server's secret
    /// key (it was changed): made once, whoever notices first.
    Unopenable,
}

/// Makes a new signing key the one that signs; the old one's public half
/// stays published.
pub async fn rotate(
    pool: &PgPool,
    keys: &Keys,
    by: Option<&CurrentUser>,
    when: Rotation,
) -> Result<StoredKey, AppError> {
    let now = Utc::now();
    let mut tx = pool.begin().await?;
    cab_db::deployments::lock_signing_keys(&mut tx).await?;
    let active = cab_db::deployments::signing_keys(&mut tx)
        .await?
        .into_iter()
        .find(|k| k.retired_at.is_none())
        .map(stored);
    let keep = match (when, active) {
        (Rotation::First, Some(k)) => Some(k),
        (Rotation::Unopenable, Some(k)) if tokens::opens(keys, &k) => Some(k),
        _ => None,
    };
    if let Some(k) = keep {
        tx.rollback().await?;
        return Ok(k);
    }
    let only_if_none = when == Rotation::First;
    let key = tokens::generate(keys, now).map_err(AppError::Internal)?;
    cab_db::deployments::rotate_signing_key(
        &mut tx,
        &cab_db::deployments::SigningKeyRow {
            kid: key.kid.clone(),
            public_key: key.public_key.clone(),
            sealed_private: key.sealed_private.clone(),
            created_at: now,
            retired_at: None,
        },
    )
    .await?;
    audit_log::record(
        &mut tx,
        by.map(CurrentUser::audit_actor),
        &Origin::default(),
        AuditAction::SigningKeyRotated.as_str(),
        Entity::new("signing_key", &key.kid),
        json!({"kid": key.kid, "first": only_if_none}),
    )
    .await?;
    tx.commit().await?;
    Ok(key)
}

/// Sets the environments a pipeline's service account may deploy to
/// (administrators only). People are not limited this way: the gate's
/// duties decide for them.
pub async fn set_account_environments(
    pool: &PgPool,
    admin: &CurrentUser,
    origin: &Origin,
    account_id: Uuid,
    wanted: &[String],
) -> Result<Vec<String>, AppError> {
    set_account_environments_at(pool, admin, origin, account_id, wanted, Utc::now()).await
}

/// [`set_account_environments`], recorded at `at`: the present, or for the
/// demo board the day its team set CAB up.
pub(crate) async fn set_account_environments_at(
    pool: &PgPool,
    admin: &CurrentUser,
    origin: &Origin,
    account_id: Uuid,
    wanted: &[String],
    at: DateTime<Utc>,
) -> Result<Vec<String>, AppError> {
    let attempted = Attempt::AccountEnvironmentsSet.as_str();
    refusal::checked(
        pool,
        admin.audit_actor(),
        origin,
        attempted,
        Entity::new("user", account_id),
        cab_domain::user_admin::require_admin(&admin.actor()),
    )
    .await?;
    let mut tx = pool.begin().await?;
    let account = cab_db::users::find_by_id_for_update(&mut tx, account_id)
        .await?
        .ok_or(AppError::NotFound("user"))?;
    if !account.is_service {
        return Err(AppError::invalid(
            "environments",
            "Only a pipeline's service account is limited to environments; people deploy under the gate's duties.",
        ));
    }
    let envs = environments(&mut tx).await?;
    let mut chosen: Vec<String> = Vec::new();
    for w in wanted {
        let w = w.trim().to_lowercase();
        if !envs.iter().any(|e| e.rules.key == w) {
            return Err(AppError::invalid(
                "environments",
                format!("No such environment: {w:?}."),
            ));
        }
        if !chosen.contains(&w) {
            chosen.push(w);
        }
    }
    let before = cab_db::deployments::account_environments(&mut tx, account_id).await?;
    cab_db::deployments::set_account_environments(&mut tx, account_id, &chosen).await?;
    let after = cab_db::deployments::account_environments(&mut tx, account_id).await?;
    audit_log::record_at(
        &mut tx,
        at,
        Some(admin.audit_actor()),
        origin,
        AuditAction::AccountEnvironmentsSet.as_str(),
        Entity::new("user", account_id),
        json!({"username": account.username, "from": before, "environments": after}),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// The environments a service account may deploy to.
pub async fn account_environments(
    pool: &PgPool,
    account_id: Uuid,
) -> Result<Vec<String>, AppError> {
    let mut conn = pool.acquire().await?;
    Ok(cab_db::deployments::account_environments(&mut conn, account_id).await?)
}

/// The longest soak time an environment may ask for.
const MAX_SOAK_MINUTES: i64 = 30 * 24 * 60;

/// Replaces the environments (administrators only). An environment a
/// deployment names cannot be removed; each save is audited.
pub async fn set_environments(
    pool: &PgPool,
    admin: &CurrentUser,
    origin: &Origin,
    wanted: Vec<Environment>,
) -> Result<Vec<Environment>, AppError> {
    let attempted = Attempt::EnvironmentsSet.as_str();
    refusal::checked(
        pool,
        admin.audit_actor(),
        origin,
        attempted,
        Entity::kind("environment"),
        cab_domain::user_admin::require_admin(&admin.actor()),
    )
    .await?;
    let rules_list: Vec<EnvironmentRules> = wanted.iter().map(|e| e.rules.clone()).collect();
    let mut errors = rules::validate_environments(&rules_list);
    for e in &wanted {
        if !(1..=1000).contains(&e.rules.rank) {
            errors.push(field(
                "rank",
                format!("{}: a rank is from 1 to 1000.", e.rules.label),
            ));
        }
        if e.rules.soak.num_minutes() > MAX_SOAK_MINUTES {
            errors.push(field(
                "soak_minutes",
                format!("{}: a soak time is at most 30 days.", e.rules.label),
            ));
        }
        let c = &e.colour;
        if !(c.len() == 7
            && c.starts_with('#')
            && c[1..].chars().all(|ch| matches!(ch, '0'..='9' | 'a'..='f')))
        {
            errors.push(field(
                "colour",
                format!(
                    "{}: a colour is # and six lower-case hexadecimal digits.",
                    e.rules.label
                ),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let mut tx = pool.begin().await?;
    let before = environments(&mut tx).await?;
    for gone in before
        .iter()
        .filter(|b| !wanted.iter().any(|w| w.rules.key == b.rules.key))
    {
        if cab_db::deployments::environment_in_use(&mut tx, &gone.rules.key).await? {
            return Err(AppError::invalid(
                "environments",
                format!(
                    "{} has deployments on record, so it stays; rename its label instead.",
                    gone.rules.label
                ),
            ));
        }
    }
    let rows: Vec<EnvironmentRow> = wanted.iter().map(Environment::to_row).collect();
    cab_db::deployments::replace_environments(&mut tx, &rows, Utc::now()).await?;
    let after = environments(&mut tx).await?;
    let describe = |list: &[Environment]| -> Vec<serde_json::Value> {
        list.iter()
            .map(|e| {
                json!({
                    "key": e.rules.key, "label": e.rules.label, "rank": e.rules.rank,
                    "production": e.rules.production, "needs_approval": e.rules.needs_approval,
                    "needs_promotion": e.rules.needs_promotion,
                    "soak_minutes": e.rules.soak.num_minutes(), "colour": e.colour,
                })
            })
            .collect()
    };
    audit_log::record(
        &mut tx,
        Some(admin.audit_actor()),
        origin,
        AuditAction::EnvironmentsChanged.as_str(),
        Entity::kind("environment"),
        json!({
            "from": describe(&before),
            "to": describe(&after),
            "labels": after.iter().map(|e| e.rules.label.clone()).collect::<Vec<_>>(),
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}
