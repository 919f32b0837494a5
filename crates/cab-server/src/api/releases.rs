//! Releases over the API: planning a release and editing its plan and
//! scope (every edit a revision), submitting it for CAB's go/no-go, voting,
//! advancing its phases, rolling one back and cancelling it. The same
//! operations as the pages; every refusal is recorded by the service.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use cab_domain::approval::VoteChoice;
use cab_domain::audit::Attempt;
use cab_domain::change::{ChangeKey, ChangeState};
use cab_domain::release::{
    self as release, Communication, Milestones, Phase, ReleasePlan, ReleaseState, RollbackPlan,
    TestLevel, TestStrategy,
};
use cab_domain::risk::RiskLevel;
use cab_domain::text::quoted;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::idempotency::IdempotencyKey;
use super::{ApiPath, AppJson};
use crate::audit_log::Entity;
use crate::auth::{ApiUser, CurrentUser};
use crate::deployments::{self, EnvironmentLabels};
use crate::error::{ApiResult, AppError, Problem};
use crate::refusal;
use crate::releases::{self, Edit, ReleaseView};
use crate::request::Origin;
use crate::state::AppState;
use crate::vocab;

// ---------------------------------------------------------------------------
// The plan, as sent

/// When each milestone falls, in order: code freeze, go/no-go, deployment,
/// end of hypercare (RFC 3339).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseMilestonesIn {
    #[serde(default)]
    #[schema(required = true)]
    code_freeze: Option<DateTime<Utc>>,
    #[serde(default)]
    #[schema(required = true)]
    go_no_go: Option<DateTime<Utc>>,
    /// When the release goes out: the list is ordered by it.
    #[serde(default)]
    #[schema(required = true)]
    deployment: Option<DateTime<Utc>>,
    #[serde(default)]
    #[schema(required = true)]
    hypercare_end: Option<DateTime<Utc>>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseTestStrategyIn {
    /// unit, integration, system, acceptance, performance or security; at
    /// least one.
    #[serde(default)]
    levels: Vec<String>,
    #[serde(default)]
    entry_criteria: String,
    #[serde(default)]
    exit_criteria: String,
    /// Links (http or https) to the evidence: reports, test runs.
    #[serde(default)]
    evidence: Vec<String>,
}

/// One deployment phase.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleasePhaseIn {
    /// An environment's key, e.g. `prod`. Phases follow the promotion order
    /// (DEV → TEST → STAGE → PROD); one environment may hold several.
    #[serde(default)]
    environment: String,
    /// The share or cohort it reaches, e.g. "10% of traffic".
    #[serde(default)]
    target: String,
    /// How long to watch after the last change deployed, in minutes (at
    /// most 43200, 30 days).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 43200)]
    soak_minutes: i64,
    #[serde(default)]
    proceed_criteria: String,
    #[serde(default)]
    abort_criteria: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRollbackIn {
    #[serde(default)]
    triggers: String,
    #[serde(default)]
    steps: String,
    /// The longest the rollback may take, in minutes: 1 to 10080 (7 days).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10080)]
    max_minutes: i64,
    /// Whether any step cannot be undone (a schema migration, say).
    #[serde(default)]
    irreversible: bool,
    /// Which steps cannot be undone: only when `irreversible`.
    #[serde(default)]
    irreversible_steps: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseCommunicationIn {
    #[serde(default)]
    audience: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    #[schema(required = true)]
    when: Option<DateTime<Utc>>,
    #[serde(default)]
    message: String,
}

/// A release plan. Every fault is answered at once, each named by its
/// field (`name`, `version`, `go_no_go`, `deployment`, `hypercare_end`,
/// `test_levels`, `entry_criteria`, `exit_criteria`, `evidence`, `phases`,
/// `rollback_triggers`, `rollback_steps`, `rollback_max_minutes`,
/// `irreversible_steps`, `communications`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleasePlanIn {
    #[serde(default)]
    name: String,
    /// 1 to 40 letters, digits, dots, dashes, underscores or plus signs,
    /// e.g. 2026.12.1.
    #[serde(default)]
    version: String,
    #[serde(default)]
    milestones: ReleaseMilestonesIn,
    #[serde(default)]
    test_strategy: ReleaseTestStrategyIn,
    /// The deployment phases, in order: 1 to 10.
    #[serde(default)]
    phases: Vec<ReleasePhaseIn>,
    #[serde(default)]
    rollback: ReleaseRollbackIn,
    /// Who is told what, where and when: at most 10.
    #[serde(default)]
    communications: Vec<ReleaseCommunicationIn>,
}

/// A number as the plan keeps it; a negative one is an error on `field`.
fn minutes(errors: &mut Vec<(String, String)>, field: &str, message: String, raw: i64) -> u32 {
    match u32::try_from(raw) {
        Ok(n) => n,
        Err(_) if raw > 0 => u32::MAX,
        Err(_) => {
            errors.push((field.to_owned(), message));
            0
        }
    }
}

impl ReleasePlanIn {
    /// The plan, or what keeps it from being one. The plan's own rules
    /// (order of milestones and phases, required text) are the service's.
    fn into_plan(self) -> Result<ReleasePlan, AppError> {
        let mut errors: Vec<(String, String)> = Vec::new();
        let m = self.milestones;
        let mut milestone = |field: &str, label: &str, at: Option<DateTime<Utc>>| {
            at.unwrap_or_else(|| {
                errors.push((
                    field.to_owned(),
                    format!("Give the date and time of the {label} (RFC 3339)."),
                ));
                DateTime::<Utc>::MIN_UTC
            })
        };
        let milestones = Milestones {
            code_freeze: milestone("code_freeze", "code freeze", m.code_freeze),
            go_no_go: milestone("go_no_go", "go/no-go", m.go_no_go),
            deployment: milestone("deployment", "deployment", m.deployment),
            hypercare_end: milestone("hypercare_end", "end of hypercare", m.hypercare_end),
        };
        let mut levels = Vec::new();
        for raw in &self.test_strategy.levels {
            match TestLevel::parse(raw.trim()) {
                Some(l) if !levels.contains(&l) => levels.push(l),
                Some(_) => {}
                None => errors.push((
                    "test_levels".to_owned(),
                    format!(
                        "{} is not one of {}.",
                        quoted(raw),
                        vocab::known::<TestLevel>()
                    ),
                )),
            }
        }
        let mut phases = Vec::with_capacity(self.phases.len());
        for (i, p) in self.phases.into_iter().enumerate() {
            let soak_minutes = minutes(
                &mut errors,
                "phases",
                format!("Phase {}: a soak time of 0 minutes or more.", i + 1),
                p.soak_minutes,
            );
            phases.push(Phase {
                environment: p.environment.trim().to_owned(),
                target: p.target,
                soak_minutes,
                proceed_criteria: p.proceed_criteria,
                abort_criteria: p.abort_criteria,
            });
        }
        let max_minutes = minutes(
            &mut errors,
            "rollback_max_minutes",
            "The longest the rollback may take: a number of minutes from 1.".to_owned(),
            self.rollback.max_minutes,
        );
        let mut communications = Vec::with_capacity(self.communications.len());
        for (i, c) in self.communications.into_iter().enumerate() {
            let Some(when) = c.when else {
                errors.push((
                    "communications".to_owned(),
                    format!("Communication {}: say when it goes out (RFC 3339).", i + 1),
                ));
                continue;
            };
            communications.push(Communication {
                audience: c.audience,
                channel: c.channel,
                when,
                message: c.message,
            });
        }
        if !errors.is_empty() {
            return Err(AppError::Fields(errors));
        }
        Ok(ReleasePlan {
            name: self.name,
            version: self.version.trim().to_owned(),
            milestones,
            test_strategy: TestStrategy {
                levels,
                entry_criteria: self.test_strategy.entry_criteria,
                exit_criteria: self.test_strategy.exit_criteria,
                evidence: self
                    .test_strategy
                    .evidence
                    .into_iter()
                    .map(|l| l.trim().to_owned())
                    .filter(|l| !l.is_empty())
                    .collect(),
            },
            phases,
            rollback: RollbackPlan {
                triggers: self.rollback.triggers,
                steps: self.rollback.steps,
                max_minutes,
                irreversible: self.rollback.irreversible,
                irreversible_steps: self.rollback.irreversible_steps,
            },
            communications,
        })
    }
}

// ---------------------------------------------------------------------------
// The plan, as answered

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReleaseMilestonesOut {
    code_freeze: DateTime<Utc>,
    go_no_go: DateTime<Utc>,
    deployment: DateTime<Utc>,
    hypercare_end: DateTime<Utc>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReleaseTestStrategyOut {
    /// unit, integration, system, acceptance, performance or security
    levels: Vec<String>,
    level_labels: Vec<String>,
    entry_criteria: String,
    exit_criteria: String,
    evidence: Vec<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReleaseRollbackOut {
    triggers: String,
    steps: String,
    max_minutes: u32,
    irreversible: bool,
    irreversible_steps: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReleaseCommunicationOut {
    audience: String,
    channel: String,
    when: DateTime<Utc>,
    message: String,
}

/// A phase as planned.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReleasePhasePlanOut {
    /// The environment's key, e.g. `prod`.
    environment: String,
    target: String,
    soak_minutes: u32,
    proceed_criteria: String,
    abort_criteria: String,
}

/// One revision's plan: what a revision holds besides its scope.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReleasePlanOut {
    name: String,
    version: String,
    milestones: ReleaseMilestonesOut,
    test_strategy: ReleaseTestStrategyOut,
    phases: Vec<ReleasePhasePlanOut>,
    rollback: ReleaseRollbackOut,
    communications: Vec<ReleaseCommunicationOut>,
}

impl From<&ReleasePlan> for ReleasePlanOut {
    fn from(p: &ReleasePlan) -> Self {
        let m = &p.milestones;
        let t = &p.test_strategy;
        let r = &p.rollback;
        ReleasePlanOut {
            name: p.name.clone(),
            version: p.version.clone(),
            milestones: ReleaseMilestonesOut {
                code_freeze: m.code_freeze,
                go_no_go: m.go_no_go,
                deployment: m.deployment,
                hypercare_end: m.hypercare_end,
            },
            test_strategy: ReleaseTestStrategyOut {
                levels: t.levels.iter().map(|l| l.as_str().to_owned()).collect(),
                level_labels: t.levels.iter().map(|l| l.label().to_owned()).collect(),
                entry_criteria: t.entry_criteria.clone(),
                exit_criteria: t.exit_criteria.clone(),
                evidence: t.evidence.clone(),
            },
            phases: p
                .phases
                .iter()
                .map(|ph| ReleasePhasePlanOut {
                    environment: ph.environment.clone(),
                    target: ph.target.clone(),
                    soak_minutes: ph.soak_minutes,
                    proceed_criteria: ph.proceed_criteria.clone(),
                    abort_criteria: ph.abort_criteria.clone(),
                })
                .collect(),
            rollback: ReleaseRollbackOut {
                triggers: r.triggers.clone(),
                steps: r.steps.clone(),
                max_minutes: r.max_minutes,
                irreversible: r.irreversible,
                irreversible_steps: r.irreversible_steps.clone(),
            },
            communications: p
                .communications
                .iter()
                .map(|c| ReleaseCommunicationOut {
                    audience: c.audience.clone(),
                    channel: c.channel.clone(),
                    when: c.when,
                    message: c.message.clone(),
                })
                .collect(),
        }
    }
}

// ---------------------------------------------------------------------------
// The release, as answered

/// A change in the release's scope now.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReleaseScopeOut {
    id: Uuid,
    /// CHG-<number>
    key: String,
    title: String,
    /// The change's state, e.g. `approved`.
    state: String,
    state_label: String,
    /// low, medium, high or critical
    risk: String,
    risk_label: String,
    /// Approved (or on its way out): what the go/no-go waits for.
    approved: bool,
    services: Vec<String>,
    added_at: DateTime<Utc>,
    /// The username of who added it.
    added_by: String,
    added_reason: String,
}

/// A change that left the scope, and why.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReleaseRemovedOut {
    /// CHG-<number>
    key: String,
    title: String,
    removed_at: DateTime<Utc>,
    /// The username of who removed it.
    removed_by: String,
    reason: String,
}

/// A go/no-go vote on the current revision of the plan.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReleaseVoteOut {
    /// The voter's username.
    voter: String,
    /// The roles they held when they voted.
    roles: Vec<String>,
    /// approve, reject or request_changes
    choice: String,
    comment: String,
    revision: i32,
    at: DateTime<Utc>,
    /// Whether it counts now.
    counts: bool,
    /// Why it does not count now (the person was disabled, no longer holds
    /// the role, or worked on the plan or a change in it); absent when it
    /// counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    does_not_count: Option<String>,
}

/// A change of the open phase, and when it deployed there.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReleasePhaseDeploymentOut {
    /// CHG-<number>
    change: String,
    /// When it deployed in the phase's environment since the phase opened;
    /// null while it has not.
    deployed_at: Option<DateTime<Utc>>,
}

/// A phase and where it stands.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReleasePhaseOut {
    /// 1 for the first phase.
    number: usize,
    /// The environment's key, e.g. `prod`.
    environment: String,
    /// Its label, e.g. `PROD`.
    environment_label: String,
    target: String,
    soak_minutes: u32,
    /// waiting, open, done, rolled_back or stopped (after a rolled-back
    /// phase: never opens)
    state: String,
    state_label: String,
    /// For the open phase, each change in scope and when it deployed in
    /// it; empty for the others.
    deployed: Vec<ReleasePhaseDeploymentOut>,
}

/// Something that happened to a phase.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReleasePhaseEventOut {
    /// 1 for the first phase.
    phase: i32,
    /// opened or rolled_back
    kind: String,
    at: DateTime<Utc>,
    /// The username of who did it.
    by: String,
    reason: String,
}

/// A release in full: its plan, scope, go/no-go and phases.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReleaseOut {
    id: Uuid,
    /// REL-<number>
    key: String,
    number: i64,
    name: String,
    version: String,
    /// draft, in_review, approved, in_progress, completed or cancelled
    state: String,
    state_label: String,
    /// The plan's current revision; votes and edits name it.
    revision: i32,
    /// The username of who planned it.
    created_by: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    plan: ReleasePlanOut,
    /// The level the go/no-go is decided at: the riskiest change's in scope.
    risk_level: String,
    scope: Vec<ReleaseScopeOut>,
    /// Changes that left the scope, oldest first.
    removed: Vec<ReleaseRemovedOut>,
    /// What the go/no-go still needs, in words, while in review; empty
    /// otherwise.
    still_needed: Vec<String>,
    /// The votes on the current revision, each voter's latest.
    votes: Vec<ReleaseVoteOut>,
    phases: Vec<ReleasePhaseOut>,
    phase_events: Vec<ReleasePhaseEventOut>,
    /// The phase rolled back (1 for the first), if one was.
    rolled_back_phase: Option<i32>,
    /// Why it was rolled back; null unless one was.
    rollback_reason: Option<String>,
    started_at: Option<DateTime<Utc>>,
    closed_at: Option<DateTime<Utc>>,
    /// The release's page, relative to the server: `/releases/REL-<number>`.
    url: String,
}

fn change_state(raw: &str) -> String {
    ChangeState::parse(raw).map_or_else(|| raw.to_owned(), |s| s.label().to_owned())
}

fn risk_label(raw: &str) -> String {
    RiskLevel::parse(raw).map_or_else(|| raw.to_owned(), |r| r.label().to_owned())
}

fn environment_label(envs: &EnvironmentLabels, key: &str) -> String {
    envs.get(key)
        .map_or_else(|| key.to_uppercase(), |e| e.rules.label.clone())
}

/// The release as GET answers it.
pub async fn release_out(state: &AppState, id: Uuid) -> Result<ReleaseOut, AppError> {
    let release = releases::load(&state.pool, id).await?;
    full(state, release).await
}

async fn full(state: &AppState, r: ReleaseView) -> Result<ReleaseOut, AppError> {
    let record = releases::record(&state.pool, &r).await?;
    let envs = deployments::environment_labels(&state.pool).await?;
    let key = r.key();
    let created_by = record
        .revisions
        .first()
        .map(|v| v.author_username.clone())
        .unwrap_or_default();
    let tally = &record.outcome;
    let votes = record
        .votes
        .iter()
        .filter(|v| v.revision == r.row.revision && v.superseded_at.is_none())
        .map(|v| {
            let standing = releases::vote_standing(tally, v.voter_id);
            ReleaseVoteOut {
                voter: v.voter_username.clone(),
                roles: v.voter_roles.clone(),
                choice: v.choice.clone(),
                comment: v.comment.clone(),
                revision: v.revision,
                at: v.created_at,
                counts: standing.counts(),
                does_not_count: standing.reason().map(str::to_owned),
            }
        })
        .collect();
    let phases = r
        .plan
        .phases
        .iter()
        .zip(&record.phases)
        .enumerate()
        .map(|(i, (p, s))| ReleasePhaseOut {
            number: i + 1,
            environment: p.environment.clone(),
            environment_label: environment_label(&envs, &p.environment),
            target: p.target.clone(),
            soak_minutes: p.soak_minutes,
            state: s.state.as_str().to_owned(),
            state_label: s.state.label().to_owned(),
            deployed: s
                .deployed
                .iter()
                .map(|(change, at)| ReleasePhaseDeploymentOut {
                    change: change.clone(),
                    deployed_at: *at,
                })
                .collect(),
        })
        .collect();
    Ok(ReleaseOut {
        id: r.id(),
        url: format!("/releases/{key}"),
        key,
        number: r.row.number,
        name: r.row.name.clone(),
        version: r.row.version.clone(),
        state: r.state.as_str().to_owned(),
        state_label: r.state.label().to_owned(),
        revision: r.row.revision,
        created_by,
        created_at: r.row.created_at,
        updated_at: r.row.updated_at,
        plan: ReleasePlanOut::from(&r.plan),
        risk_level: tally.level.as_str().to_owned(),
        still_needed: tally.still_needed(r.state),
        scope: r
            .scope
            .iter()
            .map(|c| {
                let state_label = change_state(&c.state);
                // Approved by CAB on its current revision, and still so.
                let approved = crate::releases::scope_change(c).approved();
                ReleaseScopeOut {
                    id: c.change_id,
                    key: ChangeKey(c.number).to_string(),
                    title: c.title.clone(),
                    state: c.state.clone(),
                    state_label,
                    risk: c.risk_level.clone(),
                    risk_label: risk_label(&c.risk_level),
                    approved,
                    services: c.services.clone(),
                    added_at: c.added_at,
                    added_by: c.added_by_username.clone(),
                    added_reason: c.added_reason.clone(),
                }
            })
            .collect(),
        removed: record
            .removed
            .iter()
            .map(|c| ReleaseRemovedOut {
                key: ChangeKey(c.number).to_string(),
                title: c.title.clone(),
                removed_at: c.removed_at,
                removed_by: c.removed_by_username.clone(),
                reason: c.removed_reason.clone(),
            })
            .collect(),
        votes,
        phases,
        phase_events: record
            .phase_events
            .iter()
            .map(|e| ReleasePhaseEventOut {
                phase: e.phase + 1,
                kind: e.kind.clone(),
                at: e.at,
                by: e.by_username.clone(),
                reason: e.reason.clone(),
            })
            .collect(),
        rolled_back_phase: r.row.rolled_back_phase.map(|p| p + 1),
        rollback_reason: r
            .row
            .rolled_back_phase
            .map(|_| r.row.rollback_reason.clone()),
        started_at: r.row.started_at,
        closed_at: r.row.closed_at,
    })
}

/// A release after an edit of its plan or scope.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct EditedReleaseOut {
    #[serde(flatten)]
    release: ReleaseOut,
    /// The plan was approved and this edit voided the approval: the release
    /// is back in review, and the votes on the earlier revision no longer
    /// count.
    approval_voided: bool,
}

// ---------------------------------------------------------------------------
// The list

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReleaseQuery {
    /// Only releases in this state: draft, in_review, approved,
    /// in_progress, completed or cancelled.
    state: Option<String>,
}

/// A release as the list shows it.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReleaseSummaryOut {
    /// REL-<number>
    key: String,
    id: Uuid,
    name: String,
    version: String,
    state: String,
    state_label: String,
    revision: i32,
    /// The deployment milestone.
    deployment: DateTime<Utc>,
    /// The changes in scope now: CHG-<number>.
    scope: Vec<String>,
    /// What the go/no-go still needs, while in review; empty otherwise.
    still_needed: Vec<String>,
}

/// Releases, the ones going out soonest first (completed and cancelled
/// ones last), at most 200. Open to everyone signed in.
#[utoipa::path(
    get, path = "/api/v1/releases", tag = "releases",
    params(ReleaseQuery),
    responses(
        (status = 200, body = Vec<ReleaseSummaryOut>),
        (status = 401, body = Problem),
        (status = 422, body = Problem, description = "`field` names the parameter at fault")
    )
)]
pub async fn list_releases(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
    query: Result<Query<ReleaseQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<ReleaseSummaryOut>>> {
    let Query(q) = query.map_err(|e| AppError::invalid("query", e.body_text()))?;
    let wanted = match q.state.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(raw) => Some(vocab::word::<ReleaseState>("state", raw)?),
        None => None,
    };
    let list = releases::list(&state.pool, wanted).await?;
    let mut conn = state.pool.acquire().await?;
    let mut out = Vec::with_capacity(list.len());
    for r in list {
        let still_needed = if r.state == ReleaseState::InReview {
            releases::tally(&mut conn, &r).await?.still_needed(r.state)
        } else {
            Vec::new()
        };
        out.push(ReleaseSummaryOut {
            key: r.key(),
            id: r.id(),
            name: r.row.name.clone(),
            version: r.row.version.clone(),
            state: r.state.as_str().to_owned(),
            state_label: r.state.label().to_owned(),
            revision: r.row.revision,
            deployment: r.plan.milestones.deployment,
            scope: r.scope_keys(),
            still_needed,
        });
    }
    Ok(Json(out))
}

// ---------------------------------------------------------------------------
// Planning

/// A release to plan: its plan and the changes that go out with it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseIn {
    #[serde(default)]
    name: String,
    /// 1 to 40 letters, digits, dots, dashes, underscores or plus signs,
    /// e.g. 2026.12.1.
    #[serde(default)]
    version: String,
    #[serde(default)]
    milestones: ReleaseMilestonesIn,
    #[serde(default)]
    test_strategy: ReleaseTestStrategyIn,
    /// The deployment phases, in order: 1 to 10.
    #[serde(default)]
    phases: Vec<ReleasePhaseIn>,
    #[serde(default)]
    rollback: ReleaseRollbackIn,
    /// Who is told what, where and when: at most 10.
    #[serde(default)]
    communications: Vec<ReleaseCommunicationIn>,
    /// The changes that go out with it: CHG-<number> or ids, at most 100.
    /// A change goes out with one release at a time, and a closed one
    /// (rejected, withdrawn, cancelled) with none.
    #[serde(default)]
    changes: Vec<String>,
    /// Why these changes go out together (5 to 500 characters); "Planned
    /// with the release." when left out.
    #[serde(default)]
    reason: String,
}

impl ReleaseIn {
    /// The plan, the changes and the reason.
    fn split(self) -> (ReleasePlanIn, Vec<String>, String) {
        (
            ReleasePlanIn {
                name: self.name,
                version: self.version,
                milestones: self.milestones,
                test_strategy: self.test_strategy,
                phases: self.phases,
                rollback: self.rollback,
                communications: self.communications,
            },
            self.changes,
            self.reason,
        )
    }
}

/// The plan, or what keeps it from being one. Someone who may not plan
/// releases is refused (and the refusal recorded) before being told what
/// is wrong with the plan they sent.
async fn plan_or_refusal(
    state: &AppState,
    user: &CurrentUser,
    origin: &Origin,
    attempted: Attempt,
    entity: Entity<'_>,
    plan: ReleasePlanIn,
) -> Result<ReleasePlan, AppError> {
    match plan.into_plan() {
        Ok(plan) => Ok(plan),
        Err(invalid) => {
            refusal::checked(
                &state.pool,
                user.audit_actor(),
                origin,
                attempted.as_str(),
                entity,
                release::check_plan(&user.actor()),
            )
            .await?;
            Err(invalid)
        }
    }
}

/// The answer to a new release: 201, its address, and the release.
type Created = (
    StatusCode,
    [(header::HeaderName, String); 1],
    Json<ReleaseOut>,
);

/// Plan a release (release managers and administrators): a draft at
/// revision 1, with its scope. Answered with the release, and its address
/// in `Location`. Audited; a refusal is audited too.
#[utoipa::path(
    post, path = "/api/v1/releases", tag = "releases",
    params(IdempotencyKey),
    request_body = ReleaseIn,
    responses(
        (status = 201, body = ReleaseOut, headers(("Location" = String, description = "The release's address in the API"))),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "release_manager_required"),
        (status = 422, body = Problem, description = "`errors` names every field at fault; `changes` a change that cannot go out with the release")
    )
)]
#[tracing::instrument(skip_all, err(level = "warn"))]
pub async fn create_release(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    AppJson(body): AppJson<ReleaseIn>,
) -> ApiResult<Created> {
    let (plan, changes, reason) = body.split();
    let plan = plan_or_refusal(
        &state,
        &user,
        &origin,
        Attempt::ReleaseCreate,
        Entity::kind("release"),
        plan,
    )
    .await?;
    let created = releases::create(&state.pool, &user, &origin, plan, &changes, &reason).await?;
    let location = location(created.id());
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(full(&state, created).await?),
    ))
}

/// The release's address in the API.
pub fn location(id: Uuid) -> String {
    format!("/api/v1/releases/{id}")
}

/// One release, in full (by id or REL-number). Open to everyone signed in.
#[utoipa::path(
    get, path = "/api/v1/releases/{id}", tag = "releases",
    params(("id" = String, Path, description = "UUID or REL-<number>")),
    responses((status = 200, body = ReleaseOut), (status = 401, body = Problem), (status = 404, body = Problem))
)]
pub async fn get_release(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ReleaseOut>> {
    let id = releases::resolve_id(&state.pool, &id).await?;
    Ok(Json(release_out(&state, id).await?))
}

/// A new plan for a release.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseEditIn {
    /// The revision you edited; refused (`stale_revision`) if the plan has
    /// moved on since.
    #[serde(default)]
    #[schema(required = true)]
    revision: Option<i32>,
    plan: ReleasePlanIn,
}

async fn edited(
    state: &AppState,
    before: ReleaseState,
    after: ReleaseView,
) -> Result<EditedReleaseOut, AppError> {
    let approval_voided = releases::voided_approval(before, &after);
    Ok(EditedReleaseOut {
        release: full(state, after).await?,
        approval_voided,
    })
}

/// Edit the plan (release managers and administrators): a new revision,
/// with what differs from the one before. An edit to an approved plan
/// voids the approval: the release is back in review (`approval_voided`)
/// and the votes on the earlier revision no longer count. A release in
/// progress or over is not edited. Audited; a refusal is audited too.
#[utoipa::path(
    put, path = "/api/v1/releases/{id}", tag = "releases",
    params(("id" = String, Path, description = "UUID or REL-<number>")),
    request_body = ReleaseEditIn,
    responses(
        (status = 200, body = EditedReleaseOut),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "release_manager_required, stale_revision, release_in_progress, release_closed"),
        (status = 404, body = Problem),
        (status = 422, body = Problem, description = "`errors` names every field at fault; `plan` when nothing differs")
    )
)]
#[tracing::instrument(skip_all, err(level = "warn"))]
pub async fn edit_release(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<String>,
    AppJson(body): AppJson<ReleaseEditIn>,
) -> ApiResult<Json<EditedReleaseOut>> {
    let id = releases::resolve_id(&state.pool, &id).await?;
    let before = releases::load(&state.pool, id).await?.state;
    let plan = plan_or_refusal(
        &state,
        &user,
        &origin,
        Attempt::ReleaseEdit,
        Entity::new("release", id),
        body.plan,
    )
    .await?;
    let after = releases::edit(
        &state.pool,
        &user,
        &origin,
        id,
        body.revision,
        Edit::Plan(plan),
    )
    .await?;
    Ok(Json(edited(&state, before, after).await?))
}

/// A change to add to the scope.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseAddChangeIn {
    /// The revision you edited.
    #[serde(default)]
    #[schema(required = true)]
    revision: Option<i32>,
    /// CHG-<number> or the change's id.
    #[serde(default)]
    change: String,
    /// Why it goes out with this release (5 to 500 characters).
    #[serde(default)]
    reason: String,
}

/// Add a change to the scope (release managers and administrators): a new
/// revision. A change goes out with one release at a time (422 on
/// `changes` otherwise). Added to an approved plan, it voids the approval.
/// Audited; a refusal is audited too.
#[utoipa::path(
    post, path = "/api/v1/releases/{id}/changes", tag = "releases",
    params(("id" = String, Path, description = "UUID or REL-<number>")),
    request_body = ReleaseAddChangeIn,
    responses(
        (status = 200, body = EditedReleaseOut),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "release_manager_required, stale_revision, release_in_progress, release_closed"),
        (status = 404, body = Problem),
        (status = 422, body = Problem)
    )
)]
#[tracing::instrument(skip_all, err(level = "warn"))]
pub async fn add_release_change(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<String>,
    AppJson(body): AppJson<ReleaseAddChangeIn>,
) -> ApiResult<Json<EditedReleaseOut>> {
    let id = releases::resolve_id(&state.pool, &id).await?;
    let before = releases::load(&state.pool, id).await?.state;
    let after = releases::edit(
        &state.pool,
        &user,
        &origin,
        id,
        body.revision,
        Edit::Add {
            change: &body.change,
            reason: &body.reason,
        },
    )
    .await?;
    Ok(Json(edited(&state, before, after).await?))
}

/// Why a change leaves the scope.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRemoveChangeIn {
    /// The revision you edited.
    #[serde(default)]
    #[schema(required = true)]
    revision: Option<i32>,
    /// Why it no longer goes out with this release (5 to 500 characters).
    #[serde(default)]
    reason: String,
}

/// Take a change out of the scope (release managers and administrators): a
/// new revision; the release keeps the change's key and the reason.
/// Removed from an approved plan, it voids the approval. Audited; a
/// refusal is audited too.
#[utoipa::path(
    post, path = "/api/v1/releases/{id}/changes/{change}/remove", tag = "releases",
    params(
        ("id" = String, Path, description = "UUID or REL-<number>"),
        ("change" = String, Path, description = "CHG-<number> or the change's id")
    ),
    request_body = ReleaseRemoveChangeIn,
    responses(
        (status = 200, body = EditedReleaseOut),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "release_manager_required, stale_revision, release_in_progress, release_closed"),
        (status = 404, body = Problem),
        (status = 422, body = Problem, description = "`changes` when the change is not in the release")
    )
)]
#[tracing::instrument(skip_all, err(level = "warn"))]
pub async fn remove_release_change(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath((id, change)): ApiPath<(String, String)>,
    AppJson(body): AppJson<ReleaseRemoveChangeIn>,
) -> ApiResult<Json<EditedReleaseOut>> {
    let id = releases::resolve_id(&state.pool, &id).await?;
    let before = releases::load(&state.pool, id).await?.state;
    let after = releases::edit(
        &state.pool,
        &user,
        &origin,
        id,
        body.revision,
        Edit::Remove {
            change: &change,
            reason: &body.reason,
        },
    )
    .await?;
    Ok(Json(edited(&state, before, after).await?))
}

/// What differs from the revision before.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReleaseDiffOut {
    /// The plan's field (`name`, `deployment`, `phase 2`, ...) or `scope`.
    field: String,
    before: String,
    after: String,
}

/// One revision of the plan.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReleaseRevisionOut {
    number: i32,
    /// The username of who wrote it.
    author: String,
    created_at: DateTime<Utc>,
    /// What a scope edit did and why, e.g. "Added CHG-4: ..."; empty for a
    /// plan edit.
    note: String,
    /// The changes in scope in this revision: CHG-<number>.
    scope: Vec<String>,
    /// What differs from the revision before (empty for the first).
    diff: Vec<ReleaseDiffOut>,
    plan: ReleasePlanOut,
}

/// Every revision of the plan, oldest first, each with what it changed.
/// Open to everyone signed in.
#[utoipa::path(
    get, path = "/api/v1/releases/{id}/revisions", tag = "releases",
    params(("id" = String, Path, description = "UUID or REL-<number>")),
    responses((status = 200, body = Vec<ReleaseRevisionOut>), (status = 401, body = Problem), (status = 404, body = Problem))
)]
pub async fn list_release_revisions(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<ReleaseRevisionOut>>> {
    let id = releases::resolve_id(&state.pool, &id).await?;
    let release = releases::load(&state.pool, id).await?;
    let record = releases::record(&state.pool, &release).await?;
    let mut out = Vec::with_capacity(record.revisions.len());
    for r in &record.revisions {
        let plan: ReleasePlan = serde_json::from_value(r.plan.clone()).map_err(|e| {
            AppError::Internal(anyhow::anyhow!(
                "stored release revision is unreadable: {e}"
            ))
        })?;
        out.push(ReleaseRevisionOut {
            number: r.number,
            author: r.author_username.clone(),
            created_at: r.created_at,
            note: r.note.clone(),
            scope: r.scope.clone(),
            diff: releases::revision_diff(r)
                .into_iter()
                .map(|d| ReleaseDiffOut {
                    field: d.field,
                    before: d.before,
                    after: d.after,
                })
                .collect(),
            plan: ReleasePlanOut::from(&plan),
        });
    }
    Ok(Json(out))
}

// ---------------------------------------------------------------------------
// The go/no-go

/// Submit a draft for CAB's go/no-go (release managers and administrators):
/// it needs at least one change in scope (`empty_scope`). Audited; a
/// refusal is audited too.
#[utoipa::path(
    post, path = "/api/v1/releases/{id}/submit", tag = "releases",
    params(("id" = String, Path, description = "UUID or REL-<number>")),
    responses(
        (status = 200, body = ReleaseOut),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "release_manager_required, not_draft, empty_scope"),
        (status = 404, body = Problem)
    )
)]
pub async fn submit_release(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ReleaseOut>> {
    let id = releases::resolve_id(&state.pool, &id).await?;
    let release = releases::submit(&state.pool, &user, &origin, id).await?;
    Ok(Json(full(&state, release).await?))
}

/// A go/no-go vote.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseVoteIn {
    /// approve, reject or request_changes
    #[serde(default)]
    choice: String,
    /// Required to reject or request changes.
    #[serde(default)]
    comment: String,
    /// The revision of the plan you read; a vote on another is refused
    /// (`stale_revision`).
    #[serde(default)]
    #[schema(required = true)]
    revision: Option<i32>,
}

/// Vote on the current revision of the plan (CAB members who neither
/// planned the release nor worked on a change in it). The go/no-go needs
/// the approvals the riskiest change in scope needs under the quorum
/// policy, each member counted once, and every change in scope approved;
/// a reject or a request for changes returns the plan to draft. Audited; a
/// refusal is audited too.
#[utoipa::path(
    post, path = "/api/v1/releases/{id}/votes", tag = "releases",
    params(("id" = String, Path, description = "UUID or REL-<number>")),
    request_body = ReleaseVoteIn,
    responses(
        (status = 200, body = ReleaseOut),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "self_approval, service_account, cab_member_required, not_under_review, stale_revision"),
        (status = 404, body = Problem),
        (status = 422, body = Problem)
    )
)]
#[tracing::instrument(skip_all, err(level = "warn"))]
pub async fn vote_on_release(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<String>,
    AppJson(body): AppJson<ReleaseVoteIn>,
) -> ApiResult<Json<ReleaseOut>> {
    let id = releases::resolve_id(&state.pool, &id).await?;
    let choice = vocab::word::<VoteChoice>("choice", body.choice.trim())?;
    let release = releases::vote(
        &state.pool,
        &user,
        &origin,
        id,
        choice,
        &body.comment,
        body.revision,
    )
    .await?;
    Ok(Json(full(&state, release).await?))
}

// ---------------------------------------------------------------------------
// The phases

/// Start an approved release (its first phase opens), open the next phase
/// once the open one has deployed every change in scope and soaked, or
/// complete the release after its last (release managers and
/// administrators). Every reason it may not is named in `reasons`. Audited;
/// a refusal is audited too.
#[utoipa::path(
    post, path = "/api/v1/releases/{id}/advance", tag = "releases",
    params(("id" = String, Path, description = "UUID or REL-<number>")),
    responses(
        (status = 200, body = ReleaseOut),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "release_manager_required, not_approved, scope_not_approved, not_in_progress, phase_rolled_back, phase_not_deployed, soak_not_over"),
        (status = 404, body = Problem)
    )
)]
pub async fn advance_release(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ReleaseOut>> {
    let id = releases::resolve_id(&state.pool, &id).await?;
    let release = releases::advance(&state.pool, &user, &origin, id).await?;
    Ok(Json(full(&state, release).await?))
}

/// A reason, for a rollback or a cancellation.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseReasonIn {
    /// 5 to 500 characters.
    #[serde(default)]
    reason: String,
}

/// Roll back the open phase, for a reason (release managers and
/// administrators): the phases after it never open, and the deployment
/// gate deploys nothing more for the release. Audited; a refusal is
/// audited too.
#[utoipa::path(
    post, path = "/api/v1/releases/{id}/rollback", tag = "releases",
    params(("id" = String, Path, description = "UUID or REL-<number>")),
    request_body = ReleaseReasonIn,
    responses(
        (status = 200, body = ReleaseOut),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "release_manager_required, not_in_progress, phase_rolled_back"),
        (status = 404, body = Problem),
        (status = 422, body = Problem)
    )
)]
pub async fn roll_back_release(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<String>,
    AppJson(body): AppJson<ReleaseReasonIn>,
) -> ApiResult<Json<ReleaseOut>> {
    let id = releases::resolve_id(&state.pool, &id).await?;
    let release = releases::roll_back(&state.pool, &user, &origin, id, &body.reason).await?;
    Ok(Json(full(&state, release).await?))
}

/// Cancel a release that is not over, for a reason (release managers and
/// administrators): its changes are free to go out by themselves or with
/// another release. Audited; a refusal is audited too.
#[utoipa::path(
    post, path = "/api/v1/releases/{id}/cancel", tag = "releases",
    params(("id" = String, Path, description = "UUID or REL-<number>")),
    request_body = ReleaseReasonIn,
    responses(
        (status = 200, body = ReleaseOut),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "release_manager_required, release_closed"),
        (status = 404, body = Problem),
        (status = 422, body = Problem)
    )
)]
pub async fn cancel_release(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<String>,
    AppJson(body): AppJson<ReleaseReasonIn>,
) -> ApiResult<Json<ReleaseOut>> {
    let id = releases::resolve_id(&state.pool, &id).await?;
    let release = releases::cancel(&state.pool, &user, &origin, id, &body.reason).await?;
    Ok(Json(full(&state, release).await?))
}
