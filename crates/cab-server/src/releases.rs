//! Release operations behind both the pages and the API: planning and
//! editing the plan (every edit a revision, scope changes included),
//! submitting it for CAB's go/no-go, voting, advancing the phases, rolling
//! one back and cancelling. Each loads the release under its row lock, asks
//! `cab_domain::release` whether it may happen, and writes the release with
//! its audit event in one transaction; every refusal is recorded.

use cab_db::releases::{
    NewRelease, NewReleaseVote, NewRevision, ReleaseRow, ReleaseVoteRow, RemovedRow, RevisionRow,
    ScopeRow,
};
use cab_domain::approval::{Ballot, Decision, Standing, VoteChoice};
use cab_domain::audit::{Attempt, AuditAction};
use cab_domain::change::{ChangeKey, ChangeState, FieldChange};
use cab_domain::release::{
    self, Advance, PhaseDeployment, Progress, ReleaseFacts, ReleasePlan, ReleaseState, ScopeChange,
};
use cab_domain::risk::RiskLevel;
use cab_domain::tally::{PersonNow, standing_now};
use cab_domain::{Denial, Role};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::audit_log::{self, Entity};
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::refusal::{self, begin_deciding, refused_if_failed};
use crate::request::Origin;
use crate::{changes, deployments, quorum, votes};

/// A release as its rules and its readers see it.
#[derive(Debug, Clone)]
pub struct ReleaseView {
    pub row: ReleaseRow,
    pub state: ReleaseState,
    pub plan: ReleasePlan,
    pub scope: Vec<ScopeRow>,
    pub planners: Vec<Uuid>,
    pub change_authors: Vec<Uuid>,
}

impl ReleaseView {
    pub fn id(&self) -> Uuid {
        self.row.id
    }

    /// `REL-<number>`, as people read it.
    pub fn key(&self) -> String {
        key(self.row.number)
    }

    pub fn scope_facts(&self) -> Vec<ScopeChange> {
        self.scope.iter().map(scope_change).collect()
    }

    pub fn facts(&self) -> ReleaseFacts {
        ReleaseFacts {
            state: self.state,
            planners: self.planners.clone(),
            change_authors: self.change_authors.clone(),
            scope: self.scope_facts(),
        }
    }

    pub fn progress(&self) -> Progress {
        Progress {
            current: self.row.current_phase.and_then(|p| usize::try_from(p).ok()),
            opened_at: self.row.phase_opened_at,
            rolled_back: self
                .row
                .rolled_back_phase
                .and_then(|p| usize::try_from(p).ok()),
        }
    }

    /// The scope's change numbers, as a revision keeps them.
    pub fn scope_keys(&self) -> Vec<String> {
        self.scope
            .iter()
            .map(|c| ChangeKey(c.number).to_string())
            .collect()
    }
}

pub fn key(number: i64) -> String {
    format!("REL-{number}")
}

pub fn scope_change(c: &ScopeRow) -> ScopeChange {
    // A state or level the rules do not know holds the release back.
    let engineer = RiskLevel::parse(&c.risk_level).unwrap_or(RiskLevel::Critical);
    let assessed = c
        .assessed_level
        .as_deref()
        .map_or(Some(engineer), RiskLevel::parse)
        .unwrap_or(RiskLevel::Critical);
    ScopeChange {
        id: c.change_id,
        key: ChangeKey(c.number).to_string(),
        state: ChangeState::parse(&c.state).unwrap_or(ChangeState::Draft),
        risk: engineer.max(assessed),
        decided: c.approved_revision == Some(c.revision),
    }
}

fn internal(e: impl std::fmt::Display) -> AppError {
    AppError::Internal(anyhow::anyhow!("stored release is unreadable: {e}"))
}

async fn view(conn: &mut PgConnection, row: ReleaseRow) -> Result<ReleaseView, AppError> {
    let state = ReleaseState::parse(&row.state).ok_or_else(|| internal(&row.state))?;
    let plan: ReleasePlan = serde_json::from_value(row.plan.clone()).map_err(internal)?;
    let scope = cab_db::releases::scope(conn, row.id).await?;
    let planners = cab_db::releases::planners(conn, row.id).await?;
    let change_authors = cab_db::releases::change_authors(conn, row.id).await?;
    Ok(ReleaseView {
        row,
        state,
        plan,
        scope,
        planners,
        change_authors,
    })
}

pub async fn load_in(conn: &mut PgConnection, id: Uuid) -> Result<ReleaseView, AppError> {
    let row = cab_db::releases::load(conn, id)
        .await?
        .ok_or(AppError::NotFound("release"))?;
    view(conn, row).await
}

pub async fn load(pool: &PgPool, id: Uuid) -> Result<ReleaseView, AppError> {
    let mut conn = pool.acquire().await?;
    load_in(&mut conn, id).await
}

async fn load_locked(conn: &mut PgConnection, id: Uuid) -> Result<ReleaseView, AppError> {
    let row = cab_db::releases::load_locked(conn, id)
        .await?
        .ok_or(AppError::NotFound("release"))?;
    view(conn, row).await
}

/// Accepts a UUID or a release number (`REL-<n>`, `rel-<n>`, `<n>`).
pub async fn resolve_id(pool: &PgPool, raw: &str) -> Result<Uuid, AppError> {
    if let Ok(id) = raw.parse::<Uuid>() {
        return Ok(id);
    }
    let digits = raw
        .strip_prefix("REL-")
        .or_else(|| raw.strip_prefix("rel-"))
        .unwrap_or(raw);
    let number: i64 = digits.parse().map_err(|_| AppError::NotFound("release"))?;
    let mut conn = pool.acquire().await?;
    cab_db::releases::id_of_number(&mut conn, number)
        .await?
        .ok_or(AppError::NotFound("release"))
}

/// Releases, the ones going out soonest first.
pub async fn list(
    pool: &PgPool,
    state: Option<ReleaseState>,
) -> Result<Vec<ReleaseView>, AppError> {
    let mut conn = pool.acquire().await?;
    let rows = cab_db::releases::list(&mut conn, state.map(ReleaseState::as_str), 200).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(view(&mut conn, row).await?);
    }
    Ok(out)
}

/// Everything the release page and the API's full answer show besides the
/// release itself.
#[derive(Debug, Clone)]
pub struct ReleaseRecord {
    pub revisions: Vec<RevisionRow>,
    pub votes: Vec<ReleaseVoteRow>,
    pub removed: Vec<RemovedRow>,
    pub phase_events: Vec<cab_db::releases::PhaseEventRow>,
    pub outcome: Tally,
    pub phases: Vec<PhaseStatus>,
}

/// The current revision's ballots and what they come to.
#[derive(Debug, Clone)]
pub struct Tally {
    pub level: RiskLevel,
    pub ballots: Vec<Ballot>,
    pub outcome: Decision,
}

impl Tally {
    /// What the go/no-go still needs, while the release is in review.
    pub fn still_needed(&self, state: ReleaseState) -> Vec<String> {
        match &self.outcome {
            Decision::Pending { needs } if state == ReleaseState::InReview => needs.clone(),
            _ => Vec::new(),
        }
    }
}

/// Where one phase stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseState {
    Waiting,
    Open,
    Done,
    RolledBack,
    /// After a rolled-back phase: never opens.
    Stopped,
}

impl PhaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseState::Waiting => "waiting",
            PhaseState::Open => "open",
            PhaseState::Done => "done",
            PhaseState::RolledBack => "rolled_back",
            PhaseState::Stopped => "stopped",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            PhaseState::Waiting => "Waiting",
            PhaseState::Open => "Open",
            PhaseState::Done => "Done",
            PhaseState::RolledBack => "Rolled back",
            PhaseState::Stopped => "Stopped",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PhaseStatus {
    pub state: PhaseState,
    /// For the open phase: each change in scope and when it deployed there.
    pub deployed: Vec<(String, Option<DateTime<Utc>>)>,
}

fn phase_states(release: &ReleaseView, deployments: &[PhaseDeployment]) -> Vec<PhaseStatus> {
    let progress = release.progress();
    let scope = release.scope_facts();
    release
        .plan
        .phases
        .iter()
        .enumerate()
        .map(|(i, phase)| {
            let state = match (release.state, progress.current, progress.rolled_back) {
                (ReleaseState::Completed, _, _) => PhaseState::Done,
                (ReleaseState::Cancelled, Some(c), None) if i >= c => PhaseState::Stopped,
                (ReleaseState::Cancelled, None, _) => PhaseState::Stopped,
                (_, _, Some(r)) if r == i => PhaseState::RolledBack,
                (_, _, Some(r)) if i > r => PhaseState::Stopped,
                (_, Some(c), _) if i < c => PhaseState::Done,
                (ReleaseState::InProgress, Some(c), _) if i == c => PhaseState::Open,
                _ => PhaseState::Waiting,
            };
            let deployed = match (state, progress.opened_at) {
                (PhaseState::Open, Some(opened)) => {
                    release::phase_deployments(phase, opened, &scope, deployments)
                        .into_iter()
                        .map(|(k, d)| (k, d.map(|d| d.finished_at)))
                        .collect()
                }
                _ => Vec::new(),
            };
            PhaseStatus { state, deployed }
        })
        .collect()
}

async fn phase_deployments(
    conn: &mut PgConnection,
    release: &ReleaseView,
) -> Result<Vec<PhaseDeployment>, AppError> {
    let Some(since) = release.row.phase_opened_at else {
        return Ok(Vec::new());
    };
    Ok(
        cab_db::releases::deployments_since(conn, release.id(), since)
            .await?
            .into_iter()
            .map(|d| PhaseDeployment {
                change: d.change_id,
                environment: d.environment,
                finished_at: d.finished_at,
            })
            .collect(),
    )
}

pub async fn record(pool: &PgPool, release: &ReleaseView) -> Result<ReleaseRecord, AppError> {
    let mut conn = pool.acquire().await?;
    let id = release.id();
    let deployed = phase_deployments(&mut conn, release).await?;
    Ok(ReleaseRecord {
        revisions: cab_db::releases::revisions(&mut conn, id).await?,
        votes: cab_db::releases::votes(&mut conn, id).await?,
        removed: cab_db::releases::removed(&mut conn, id).await?,
        phase_events: cab_db::releases::phase_events(&mut conn, id).await?,
        outcome: tally(&mut conn, release).await?,
        phases: phase_states(release, &deployed),
    })
}

/// The current revision's votes as the go/no-go counts them now: who
/// still counts is decided now (active, still a CAB member, not someone who
/// planned the release or worked on a change in it).
pub async fn tally(conn: &mut PgConnection, release: &ReleaseView) -> Result<Tally, AppError> {
    let policy = match cab_db::releases::quorum_policy(conn, release.id()).await? {
        Some(fixed) => quorum::policy_from(Some(fixed), None)?,
        None => quorum::in_force(conn).await?,
    };
    let votes: Vec<ReleaseVoteRow> = cab_db::releases::votes(conn, release.id())
        .await?
        .into_iter()
        .filter(|v| v.revision == release.row.revision && v.superseded_at.is_none())
        .collect();
    let people: Vec<Uuid> = votes.iter().map(|v| v.voter_id).collect();
    let now = cab_db::decisions::standing_of(conn, &people).await?;
    let facts = release.facts();
    let ballots: Vec<Ballot> = votes
        .iter()
        .filter_map(|v| {
            let choice = VoteChoice::parse(&v.choice)?;
            let person = now
                .iter()
                .find(|(p, _, _)| *p == v.voter_id)
                .map(|(_, active, roles)| PersonNow {
                    active: *active,
                    roles,
                });
            let standing = standing_now(person, Role::CabMember);
            Some(release::ballot(v.voter_id, choice, standing, &facts))
        })
        .collect();
    let scope = release.scope_facts();
    Ok(Tally {
        level: release::level(&scope),
        outcome: release::decide(&policy, &scope, &ballots),
        ballots,
    })
}

/// Why a vote does not count, if it does not.
pub fn vote_standing(tally: &Tally, voter: Uuid) -> Standing {
    tally
        .ballots
        .iter()
        .find(|b| b.voter == voter)
        .map_or(Standing::Disabled, |b| b.standing)
}

fn payload(release: &ReleaseView) -> Value {
    json!({
        "release": release.key(),
        "name": release.plan.name,
        "version": release.plan.version,
        "revision": release.row.revision,
    })
}

fn entity(id: Uuid) -> Entity<'static> {
    Entity::new("release", id)
}

/// Records a release's event, by `user`, in the transaction that made it.
async fn record_event(
    tx: &mut PgConnection,
    user: &CurrentUser,
    origin: &Origin,
    action: AuditAction,
    id: Uuid,
    details: Value,
) -> Result<(), AppError> {
    audit_log::record(
        tx,
        Some(user.audit_actor()),
        origin,
        action.as_str(),
        entity(id),
        details,
    )
    .await?;
    Ok(())
}

/// What an operation answers: its refusal recorded (a failure on the way
/// recorded as one, see `refusal::refused_if_failed`), else the release as
/// it stands now.
async fn answered(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    attempt: Attempt,
    id: Uuid,
    done: Result<(), AppError>,
) -> Result<ReleaseView, AppError> {
    refused_if_failed(pool, user, origin, attempt.as_str(), entity(id), done).await?;
    load(pool, id).await
}

fn stale(read: i32, now: i32) -> Denial {
    Denial::new(
        "stale_revision",
        format!(
            "You read revision {read}, but the release plan is now at revision {now}; read it again and act on that."
        ),
    )
}

/// The plan's environments must be the ones the gate knows, in order.
async fn validate_plan(conn: &mut PgConnection, plan: &ReleasePlan) -> Result<(), AppError> {
    let envs: Vec<_> = deployments::environments(conn)
        .await?
        .into_iter()
        .map(|e| e.rules)
        .collect();
    let errors = plan.validate(&envs);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.into())
    }
}

fn plan_json(plan: &ReleasePlan) -> Result<Value, AppError> {
    serde_json::to_value(plan).map_err(|e| AppError::Internal(e.into()))
}

/// A new release plan in draft, with the changes named (each with `reason`).
pub async fn create(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    plan: ReleasePlan,
    changes: &[String],
    reason: &str,
) -> Result<ReleaseView, AppError> {
    refusal::checked(
        pool,
        user.audit_actor(),
        origin,
        Attempt::ReleaseCreate.as_str(),
        Entity::kind("release"),
        release::check_plan(&user.actor()),
    )
    .await?;
    let plan = plan.normalized();
    let mut tx = pool.begin().await?;
    validate_plan(&mut tx, &plan).await?;
    let reason = if reason.trim().is_empty() {
        "Planned with the release."
    } else {
        reason.trim()
    };
    release::check_reason("reason", reason)?;
    if changes.len() > release::MAX_SCOPE {
        return Err(AppError::invalid(
            "changes",
            format!("At most {} changes in one release.", release::MAX_SCOPE),
        ));
    }
    // Every change is found before the release takes a number, so a plan
    // refused for its scope leaves no gap in the numbers.
    let mut found: Vec<changes::ChangeView> = Vec::with_capacity(changes.len());
    for raw in changes {
        let change = scope_candidate(&mut tx, raw).await?;
        if found.iter().any(|c| c.id == change.id) {
            return Err(AppError::invalid(
                "changes",
                format!("{} is named twice.", change.key()),
            ));
        }
        if cab_db::releases::release_of_change(&mut tx, change.id)
            .await?
            .is_some()
        {
            return Err(in_another_release(&mut tx, &change).await);
        }
        found.push(change);
    }
    let id = Uuid::new_v4();
    let now = Utc::now();
    let value = plan_json(&plan)?;
    let number = cab_db::releases::insert(
        &mut tx,
        &NewRelease {
            id,
            name: plan.name.trim(),
            version: &plan.version,
            plan: &value,
            created_by: user.id,
            at: now,
            deploy_at: plan.milestones.deployment,
        },
    )
    .await?;
    let mut keys = Vec::new();
    for change in &found {
        if !cab_db::releases::add_to_scope(&mut tx, id, change.id, user.id, now, reason).await? {
            return Err(in_another_release(&mut tx, change).await);
        }
        keys.push(change.key());
    }
    cab_db::releases::insert_revision(
        &mut tx,
        &NewRevision {
            release_id: id,
            number: 1,
            plan: &value,
            scope: &keys,
            diff: &json!([]),
            note: "",
            by: user.id,
            at: now,
        },
    )
    .await?;
    record_event(
        &mut tx,
        user,
        origin,
        AuditAction::ReleaseCreated,
        id,
        json!({
            "release": key(number),
            "name": plan.name.trim(),
            "version": plan.version,
            "revision": 1,
            "scope": keys,
        }),
    )
    .await?;
    crate::idempotency::bind(&mut tx, origin, crate::idempotency::Created::Release(id)).await?;
    tx.commit().await?;
    load(pool, id).await
}

/// The change `raw` names, if it may join a release.
async fn scope_candidate(
    conn: &mut PgConnection,
    raw: &str,
) -> Result<changes::ChangeView, AppError> {
    let raw = raw.trim();
    let unknown = || {
        AppError::invalid(
            "changes",
            format!("There is no change {}.", cab_domain::text::quoted(raw)),
        )
    };
    let id = match raw.parse::<Uuid>() {
        Ok(id) => id,
        Err(_) => {
            let ChangeKey(number) = raw.parse::<ChangeKey>().map_err(|_| unknown())?;
            cab_db::changes::id_by_number(conn, number)
                .await?
                .ok_or_else(unknown)?
        }
    };
    // Read, not locked: a change's decision locks the change and then its
    // release, so a release never waits for a change's lock.
    let change = match changes::load_in(conn, id).await {
        Err(AppError::NotFound(_)) => return Err(unknown()),
        other => other?,
    };
    if !release::change_may_join(change.state) {
        return Err(AppError::invalid(
            "changes",
            format!(
                "{} is {}, so it cannot go out with a release.",
                change.key(),
                change.state.label().to_lowercase()
            ),
        ));
    }
    Ok(change)
}

async fn in_another_release(conn: &mut PgConnection, change: &changes::ChangeView) -> AppError {
    let other = cab_db::releases::release_of_change(conn, change.id)
        .await
        .ok()
        .flatten();
    let message = match other {
        Some((_, number, name)) => format!(
            "{} is already in release {} ({name}); a change goes out with one release.",
            change.key(),
            key(number)
        ),
        None => format!("{} is already in a release.", change.key()),
    };
    AppError::invalid("changes", message)
}

/// What an edit does to the release.
#[allow(clippy::large_enum_variant)] // built once per request: boxing the plan gains nothing
pub enum Edit<'a> {
    /// A new plan.
    Plan(ReleasePlan),
    /// A change enters the scope, for a reason.
    Add { change: &'a str, reason: &'a str },
    /// A change leaves the scope, for a reason.
    Remove { change: &'a str, reason: &'a str },
}

/// Edits the plan or its scope: a new revision. An edit to an approved plan
/// voids CAB's approval (the release goes back to review, and the trail
/// says so); one in review leaves the votes on the old revision behind.
pub async fn edit(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    revision: Option<i32>,
    change: Edit<'_>,
) -> Result<ReleaseView, AppError> {
    let done = write_edit(pool, user, origin, id, revision, change).await;
    answered(pool, user, origin, Attempt::ReleaseEdit, id, done).await
}

async fn write_edit(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    revision: Option<i32>,
    change: Edit<'_>,
) -> Result<(), AppError> {
    let now = Utc::now();
    let mut tx = begin_deciding(pool).await?;
    let current = load_locked(&mut tx, id).await?;
    let to = release::check_edit(&user.actor(), current.state).map_err(AppError::Refused)?;
    let Some(read) = revision else {
        return Err(AppError::invalid(
            "revision",
            "Say which revision of the plan you edited.",
        ));
    };
    if read != current.row.revision {
        return Err(AppError::Refused(stale(read, current.row.revision)));
    }
    let scope_before = current.scope_keys();
    let (plan, note) = match change {
        Edit::Plan(plan) => {
            let plan = plan.normalized();
            validate_plan(&mut tx, &plan).await?;
            (plan, String::new())
        }
        Edit::Add { change, reason } => {
            release::check_reason("reason", reason)?;
            let found = scope_candidate(&mut tx, change).await?;
            if current.scope.len() >= release::MAX_SCOPE {
                return Err(AppError::invalid(
                    "changes",
                    format!("At most {} changes in one release.", release::MAX_SCOPE),
                ));
            }
            if !cab_db::releases::add_to_scope(&mut tx, id, found.id, user.id, now, reason.trim())
                .await?
            {
                return Err(in_another_release(&mut tx, &found).await);
            }
            (
                current.plan.clone(),
                format!("Added {}: {}", found.key(), reason.trim()),
            )
        }
        Edit::Remove { change, reason } => {
            release::check_reason("reason", reason)?;
            let found = scope_candidate_any(&current, change)?;
            cab_db::releases::remove_from_scope(&mut tx, id, found.0, user.id, now, reason.trim())
                .await?;
            (
                current.plan.clone(),
                format!("Removed {}: {}", found.1, reason.trim()),
            )
        }
    };
    let after = load_in(&mut tx, id).await?;
    let scope_after = after.scope_keys();
    let diff = release::diff(&current.plan, &plan, &scope_before, &scope_after);
    if diff.is_empty() {
        return Err(AppError::invalid(
            "plan",
            "Nothing differs from the current revision, so there is nothing to save.",
        ));
    }
    let number = current.row.revision + 1;
    let value = plan_json(&plan)?;
    let diff_json = serde_json::to_value(&diff).map_err(|e| AppError::Internal(e.into()))?;
    cab_db::releases::set_plan(
        &mut tx,
        id,
        to.as_str(),
        plan.name.trim(),
        &plan.version,
        &value,
        number,
        plan.milestones.deployment,
        now,
    )
    .await?;
    cab_db::releases::insert_revision(
        &mut tx,
        &NewRevision {
            release_id: id,
            number,
            plan: &value,
            scope: &scope_after,
            diff: &diff_json,
            note: &note,
            by: user.id,
            at: now,
        },
    )
    .await?;
    let mut details = payload(&after);
    details["revision"] = json!(number);
    details["fields"] = json!(diff.iter().map(|d| d.field.clone()).collect::<Vec<_>>());
    if !note.is_empty() {
        details["note"] = json!(note);
    }
    record_event(
        &mut tx,
        user,
        origin,
        AuditAction::ReleaseEdited,
        id,
        details,
    )
    .await?;
    if current.state == ReleaseState::Approved {
        let mut voided = payload(&after);
        voided["approved_revision"] = json!(current.row.revision);
        voided["revision"] = json!(number);
        record_event(
            &mut tx,
            user,
            origin,
            AuditAction::ReleaseApprovalVoided,
            id,
            voided,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The change in scope `raw` names: (id, key).
fn scope_candidate_any(current: &ReleaseView, raw: &str) -> Result<(Uuid, String), AppError> {
    let raw = raw.trim();
    let by_id = raw.parse::<Uuid>().ok();
    let by_number = raw.parse::<ChangeKey>().ok().map(|k| k.0);
    current
        .scope
        .iter()
        .find(|c| Some(c.change_id) == by_id || Some(c.number) == by_number)
        .map(|c| (c.change_id, ChangeKey(c.number).to_string()))
        .ok_or_else(|| {
            AppError::invalid(
                "changes",
                format!("{} is not in this release.", cab_domain::text::quoted(raw)),
            )
        })
}

/// Whether the edit voided an approval: for pages to say so.
pub fn voided_approval(before: ReleaseState, after: &ReleaseView) -> bool {
    before == ReleaseState::Approved && after.state == ReleaseState::InReview
}

/// Submits a draft for CAB's go/no-go.
pub async fn submit(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
) -> Result<ReleaseView, AppError> {
    let done = write_submit(pool, user, origin, id).await;
    answered(pool, user, origin, Attempt::ReleaseSubmit, id, done).await
}

async fn write_submit(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
) -> Result<(), AppError> {
    let now = Utc::now();
    let mut tx = begin_deciding(pool).await?;
    let current = load_locked(&mut tx, id).await?;
    let to = release::check_submit(&user.actor(), &current.facts()).map_err(AppError::Refused)?;
    let turned_down = cab_db::releases::votes(&mut tx, id).await?.iter().any(|v| {
        v.revision == current.row.revision
            && v.superseded_at.is_none()
            && VoteChoice::parse(&v.choice).is_some_and(|c| c != VoteChoice::Approve)
    });
    release::check_revised(turned_down, current.row.revision).map_err(AppError::Refused)?;
    // Decided under the policy in force at submission, whatever an
    // administrator sets while it is in review.
    let policy = serde_json::to_value(quorum::in_force(&mut tx).await?)
        .map_err(|e| AppError::Internal(e.into()))?;
    cab_db::releases::fix_quorum_policy(&mut tx, id, &policy).await?;
    cab_db::releases::set_state(&mut tx, id, to.as_str(), now).await?;
    record_event(
        &mut tx,
        user,
        origin,
        AuditAction::ReleaseSubmitted,
        id,
        payload(&current),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Whether `user` may vote on the release now (what the page offers).
pub fn may_vote(release: &ReleaseView, user: &CurrentUser) -> bool {
    release::check_vote(&release.facts(), &user.actor()).is_ok()
}

/// Whether `user` plans and runs releases (what the pages offer).
pub fn may_plan(user: &CurrentUser) -> bool {
    release::check_plan(&user.actor()).is_ok()
}

/// A CAB member's go/no-go vote on the revision they read. The release row
/// is locked while the vote is counted, so it is approved exactly once
/// however many vote at once, on one replica or several.
pub async fn vote(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    choice: VoteChoice,
    comment: &str,
    revision: Option<i32>,
) -> Result<ReleaseView, AppError> {
    let done = cast_vote(pool, user, origin, id, choice, comment, revision).await;
    answered(pool, user, origin, Attempt::ReleaseVote, id, done).await
}

async fn cast_vote(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    choice: VoteChoice,
    comment: &str,
    revision: Option<i32>,
) -> Result<(), AppError> {
    let now = Utc::now();
    let mut tx = begin_deciding(pool).await?;
    let current = load_locked(&mut tx, id).await?;
    release::check_vote(&current.facts(), &user.actor()).map_err(AppError::Refused)?;
    let comment = votes::comment(choice, comment)?;
    let Some(read) = revision else {
        return Err(AppError::invalid(
            "revision",
            "Say which revision of the plan you voted on.",
        ));
    };
    if read != current.row.revision {
        return Err(AppError::Refused(stale(read, current.row.revision)));
    }
    cab_db::releases::insert_vote(
        &mut tx,
        &NewReleaseVote {
            release_id: id,
            revision: current.row.revision,
            voter_id: user.id,
            voter_username: &user.username,
            voter_roles: &user.roles.names(),
            choice: choice.as_str(),
            comment,
            at: now,
        },
    )
    .await?;
    let mut details = payload(&current);
    details["vote"] = json!(choice.as_str());
    details["comment"] = json!(comment);
    record_event(
        &mut tx,
        user,
        origin,
        AuditAction::ReleaseVoted,
        id,
        details,
    )
    .await?;
    settle(&mut tx, user, origin, &current, now, None).await?;
    tx.commit().await?;
    Ok(())
}

/// Applies what the current votes come to, once: approved, returned to
/// draft, or still in review. `cause` names a change whose approval
/// completed it, when that is what did.
async fn settle(
    tx: &mut PgConnection,
    user: &CurrentUser,
    origin: &Origin,
    current: &ReleaseView,
    now: DateTime<Utc>,
    cause: Option<&str>,
) -> Result<(), AppError> {
    let counted = tally(tx, current).await?;
    let to = release::decided(&counted.outcome);
    if to == current.state {
        return Ok(());
    }
    cab_db::releases::set_state(tx, current.id(), to.as_str(), now).await?;
    let mut details = payload(current);
    let action = match &counted.outcome {
        Decision::Approved => {
            details["level"] = json!(counted.level.as_str());
            details["approvals"] = json!(
                counted
                    .ballots
                    .iter()
                    .filter(|b| b.choice == VoteChoice::Approve && b.standing.counts())
                    .count()
            );
            if let Some(cause) = cause {
                details["completed_by"] = json!(cause);
            }
            AuditAction::ReleaseApproved
        }
        Decision::Rejected { reason } => {
            details["reason"] = json!(format!("No-go: {reason}."));
            AuditAction::ReleaseReturned
        }
        Decision::ChangesRequested | Decision::Pending { .. } => {
            details["reason"] = json!("A CAB member requested changes to the plan.");
            AuditAction::ReleaseReturned
        }
    };
    record_event(tx, user, origin, action, current.id(), details).await?;
    Ok(())
}

/// A change in a release moved: its approval may have been what the
/// release's go/no-go waited for (the release is then approved, the event
/// naming the change), or it may have lost its approval (an approved
/// release then goes back to review, and the trail says why). Called in
/// the change's own transaction, whatever moved it.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn change_moved(
    tx: &mut PgConnection,
    user: &CurrentUser,
    origin: &Origin,
    change: Uuid,
    change_key: &str,
    from: ChangeState,
    to: ChangeState,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    let approved = to == ChangeState::Approved;
    let lost = from.carries_approval() && !to.carries_approval();
    if !approved && !lost {
        return Ok(());
    }
    let Some((release_id, _, _)) = cab_db::releases::release_of_change(tx, change).await? else {
        return Ok(());
    };
    let current = load_locked(tx, release_id).await?;
    match current.state {
        ReleaseState::InReview if approved => {
            settle(tx, user, origin, &current, now, Some(change_key)).await
        }
        ReleaseState::Approved if lost => {
            cab_db::releases::set_state(tx, release_id, ReleaseState::InReview.as_str(), now)
                .await?;
            let mut details = payload(&current);
            details["approved_revision"] = json!(current.row.revision);
            details["reason"] = json!(format!(
                "{change_key} is no longer approved ({}), so the release waits for it again.",
                to.label().to_lowercase()
            ));
            record_event(
                tx,
                user,
                origin,
                AuditAction::ReleaseApprovalVoided,
                release_id,
                details,
            )
            .await?;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Starts an approved release (its first phase opens), opens the next
/// phase, or completes the release after its last. Every reason it may not
/// is named.
pub async fn advance(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
) -> Result<ReleaseView, AppError> {
    let done = write_advance(pool, user, origin, id).await;
    let done = match done {
        Err(AppError::Refusals(reasons)) => {
            return Err(refusal::refuse_all(
                pool,
                user.audit_actor(),
                origin,
                Attempt::ReleaseAdvance.as_str(),
                entity(id),
                reasons,
            )
            .await);
        }
        other => other,
    };
    answered(pool, user, origin, Attempt::ReleaseAdvance, id, done).await
}

async fn write_advance(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
) -> Result<(), AppError> {
    let now = Utc::now();
    let mut tx = begin_deciding(pool).await?;
    let current = load_locked(&mut tx, id).await?;
    let facts = current.facts();
    let step = if current.state == ReleaseState::Approved {
        release::check_start(&user.actor(), &facts).map_err(AppError::Refused)?;
        Advance::Open(0)
    } else {
        let deployed = phase_deployments(&mut tx, &current).await?;
        release::check_advance(
            &user.actor(),
            &facts,
            &current.plan,
            &current.progress(),
            &deployed,
            now,
        )
        .map_err(|mut reasons| {
            if reasons.len() == 1 {
                AppError::Refused(reasons.remove(0))
            } else {
                AppError::Refusals(reasons)
            }
        })?
    };
    let mut details = payload(&current);
    match step {
        Advance::Open(phase) => {
            let i = i32::try_from(phase).unwrap_or(i32::MAX);
            cab_db::releases::open_phase(&mut tx, id, i, user.id, now).await?;
            if let Some(p) = current.plan.phases.get(phase) {
                details["phase"] = json!(phase + 1);
                details["environment"] = json!(p.environment);
                details["target"] = json!(p.target);
            }
            record_event(
                &mut tx,
                user,
                origin,
                AuditAction::ReleasePhaseOpened,
                id,
                details,
            )
            .await?;
        }
        Advance::Complete => {
            cab_db::releases::set_state(&mut tx, id, ReleaseState::Completed.as_str(), now).await?;
            record_event(
                &mut tx,
                user,
                origin,
                AuditAction::ReleaseCompleted,
                id,
                details,
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Rolls back the open phase, for a reason: the phases after it do not open.
pub async fn roll_back(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    reason: &str,
) -> Result<ReleaseView, AppError> {
    let done = write_roll_back(pool, user, origin, id, reason).await;
    answered(pool, user, origin, Attempt::ReleaseRollback, id, done).await
}

async fn write_roll_back(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    reason: &str,
) -> Result<(), AppError> {
    let now = Utc::now();
    let mut tx = begin_deciding(pool).await?;
    let current = load_locked(&mut tx, id).await?;
    let phase = release::check_rollback(&user.actor(), &current.facts(), &current.progress())
        .map_err(AppError::Refused)?;
    release::check_reason("reason", reason)?;
    let reason = reason.trim();
    let i = i32::try_from(phase).unwrap_or(i32::MAX);
    cab_db::releases::roll_back_phase(&mut tx, id, i, user.id, now, reason).await?;
    let mut details = payload(&current);
    details["phase"] = json!(phase + 1);
    details["reason"] = json!(reason);
    if let Some(p) = current.plan.phases.get(phase) {
        details["environment"] = json!(p.environment);
    }
    record_event(
        &mut tx,
        user,
        origin,
        AuditAction::ReleasePhaseRolledBack,
        id,
        details,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Cancels a release that is not over, for a reason; its changes are free
/// to go out by themselves or with another release.
pub async fn cancel(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    reason: &str,
) -> Result<ReleaseView, AppError> {
    let done = write_cancel(pool, user, origin, id, reason).await;
    answered(pool, user, origin, Attempt::ReleaseCancel, id, done).await
}

async fn write_cancel(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    reason: &str,
) -> Result<(), AppError> {
    let now = Utc::now();
    let mut tx = begin_deciding(pool).await?;
    let current = load_locked(&mut tx, id).await?;
    release::check_cancel(&user.actor(), current.state).map_err(AppError::Refused)?;
    release::check_reason("reason", reason)?;
    let reason = reason.trim();
    cab_db::releases::set_state(&mut tx, id, ReleaseState::Cancelled.as_str(), now).await?;
    cab_db::releases::release_scope(&mut tx, id, user.id, now).await?;
    let mut details = payload(&current);
    details["reason"] = json!(reason);
    details["scope"] = json!(current.scope_keys());
    record_event(
        &mut tx,
        user,
        origin,
        AuditAction::ReleaseCancelled,
        id,
        details,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The release's rule at the deployment gate for `change` deploying to
/// `environment`: a reason to refuse, if the release has one.
pub(crate) async fn gate_reason(
    conn: &mut PgConnection,
    change: Uuid,
    environment: &str,
    environment_label: &str,
) -> Result<Option<Denial>, AppError> {
    let Some(r) = cab_db::releases::gate_release(conn, change).await? else {
        return Ok(None);
    };
    let (Some(state), Ok(plan)) = (
        ReleaseState::parse(&r.state),
        serde_json::from_value::<ReleasePlan>(r.plan),
    ) else {
        // A release whose plan cannot be read holds its changes back.
        return Ok(Some(Denial::new(
            "release_unreadable",
            format!(
                "Release {} cannot be read just now, so its changes wait.",
                key(r.number)
            ),
        )));
    };
    let progress = Progress {
        current: r.current_phase.and_then(|p| usize::try_from(p).ok()),
        opened_at: r.phase_opened_at,
        rolled_back: r.rolled_back_phase.and_then(|p| usize::try_from(p).ok()),
    };
    let name = format!("{} ({} {})", key(r.number), r.name, r.version);
    Ok(release::gate_rule(
        &name,
        state,
        &plan,
        &progress,
        environment,
        environment_label,
    ))
}

/// The differences a revision records, as stored.
pub fn revision_diff(r: &RevisionRow) -> Vec<FieldChange> {
    serde_json::from_value(r.diff.clone()).unwrap_or_default()
}
