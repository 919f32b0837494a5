//! Releases: changes that go out together under one plan. The plan names
//! the release, its milestones, its test strategy, the deployment phases in
//! order, the rollback plan and the communications (policy 004). CAB's
//! go/no-go is a vote on one revision of the plan, under the same rules as
//! a change: the quorum the riskiest change in scope needs, nobody who
//! wrote the plan or worked on a change in it, each person once. Phases
//! open one after another, each once the one before has deployed every
//! change and soaked; a rollback stops the phases after it.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::approval::{Ballot, Decision, QuorumPolicy, Standing, VoteChoice, evaluate};
use crate::change::{ChangeState, ChangeType, FieldChange, FieldError, is_link};
use crate::deployment::EnvironmentRules;
use crate::risk::RiskLevel;
use crate::text::{check_name, check_text};
use crate::{Actor, Denial, Role};

vocabulary!(
    /// draft → in review → approved → in progress → completed; cancelled
    /// from any state before completed. A no-go or a request for changes
    /// returns the plan to draft; an edit to an approved plan puts it back
    /// in review.
    ReleaseState {
        Draft = "draft" / "Draft",
        InReview = "in_review" / "In review",
        Approved = "approved" / "Approved",
        InProgress = "in_progress" / "In progress",
        Completed = "completed" / "Completed",
        Cancelled = "cancelled" / "Cancelled",
    }
);

impl ReleaseState {
    /// Over: nothing more happens to it.
    pub fn is_closed(self) -> bool {
        matches!(self, ReleaseState::Completed | ReleaseState::Cancelled)
    }
}

vocabulary!(
    /// The levels of testing a release's test strategy covers.
    TestLevel {
        Unit = "unit" / "Unit",
        Integration = "integration" / "Integration",
        System = "system" / "System",
        Acceptance = "acceptance" / "User acceptance",
        Performance = "performance" / "Performance",
        Security = "security" / "Security",
    }
);

vocabulary!(
    /// A release's milestones, in the order they fall.
    Milestone {
        CodeFreeze = "code_freeze" / "Code freeze",
        GoNoGo = "go_no_go" / "Go/no-go",
        Deployment = "deployment" / "Deployment",
        HypercareEnd = "hypercare_end" / "End of hypercare",
    }
);

/// When each milestone falls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Milestones {
    pub code_freeze: DateTime<Utc>,
    pub go_no_go: DateTime<Utc>,
    pub deployment: DateTime<Utc>,
    pub hypercare_end: DateTime<Utc>,
}

impl Milestones {
    /// Each milestone and its date, in order.
    pub fn all(&self) -> [(Milestone, DateTime<Utc>); 4] {
        [
            (Milestone::CodeFreeze, self.code_freeze),
            (Milestone::GoNoGo, self.go_no_go),
            (Milestone::Deployment, self.deployment),
            (Milestone::HypercareEnd, self.hypercare_end),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestStrategy {
    pub levels: Vec<TestLevel>,
    pub entry_criteria: String,
    pub exit_criteria: String,
    /// Links to the evidence: reports, test runs.
    #[serde(default)]
    pub evidence: Vec<String>,
}

/// One deployment phase: where, to whom, how long to watch, and when to go
/// on or stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase {
    /// An environment's key, e.g. `prod`.
    pub environment: String,
    /// The share or cohort it reaches, e.g. "10% of traffic".
    pub target: String,
    pub soak_minutes: u32,
    pub proceed_criteria: String,
    pub abort_criteria: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackPlan {
    pub triggers: String,
    pub steps: String,
    /// The longest the rollback may take.
    pub max_minutes: u32,
    /// Whether any step cannot be undone (a schema migration, say), and
    /// which.
    pub irreversible: bool,
    #[serde(default)]
    pub irreversible_steps: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Communication {
    pub audience: String,
    pub channel: String,
    pub when: DateTime<Utc>,
    pub message: String,
}

/// The plan of a release: what one revision holds besides its scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasePlan {
    pub name: String,
    pub version: String,
    pub milestones: Milestones,
    pub test_strategy: TestStrategy,
    pub phases: Vec<Phase>,
    pub rollback: RollbackPlan,
    #[serde(default)]
    pub communications: Vec<Communication>,
}

pub const NAME_MAX: usize = 120;
pub const VERSION_MAX: usize = 40;
pub const TEXT_MAX: usize = 4000;
pub const SHORT_MAX: usize = 200;
pub const MAX_PHASES: usize = 10;
pub const MAX_COMMUNICATIONS: usize = 10;
pub const MAX_EVIDENCE: usize = 20;
/// The longest soak a phase may ask for: 30 days.
pub const SOAK_MAX_MINUTES: u32 = 30 * 24 * 60;
/// The longest a rollback may be planned to take: 7 days.
pub const ROLLBACK_MAX_MINUTES: u32 = 7 * 24 * 60;
/// The most changes one release holds.
pub const MAX_SCOPE: usize = 100;
/// A scope change's reason: a few words at least.
pub const REASON_MIN: usize = 5;
pub const REASON_MAX: usize = 500;

fn err(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// Required free text of at most `max` characters, no control characters.
fn required_text(
    errors: &mut Vec<FieldError>,
    field: &'static str,
    label: &str,
    v: &str,
    max: usize,
) {
    if v.trim().is_empty() {
        errors.push(err(field, format!("{label}: say what it is.")));
    } else if v.chars().count() > max {
        errors.push(err(field, format!("{label}: at most {max} characters.")));
    } else if let Err(e) = check_text(field, v) {
        errors.push(FieldError {
            field,
            message: format!("{label}: {}", e.message),
        });
    }
}

/// Plans are made for this millennium: a date outside it is a typo.
fn sane_year(at: DateTime<Utc>) -> bool {
    (2000..=2999).contains(&at.year())
}

/// The form field a milestone is entered in.
fn milestone_field(m: Milestone) -> &'static str {
    match m {
        Milestone::CodeFreeze => "code_freeze",
        Milestone::GoNoGo => "go_no_go",
        Milestone::Deployment => "deployment",
        Milestone::HypercareEnd => "hypercare_end",
    }
}

/// Times to the second: what forms show and send back, so a plan saved
/// unchanged from its form is the same plan.
fn to_the_second(at: DateTime<Utc>) -> DateTime<Utc> {
    at.with_nanosecond(0).unwrap_or(at)
}

impl ReleasePlan {
    /// The plan as it is kept: names and texts as given, times to the
    /// second.
    pub fn normalized(mut self) -> Self {
        let m = &mut self.milestones;
        for t in [
            &mut m.code_freeze,
            &mut m.go_no_go,
            &mut m.deployment,
            &mut m.hypercare_end,
        ] {
            *t = to_the_second(*t);
        }
        for c in &mut self.communications {
            c.when = to_the_second(c.when);
        }
        self
    }

    /// Every fault at once, each named by the form field it belongs to.
    /// Phases must name known environments in promotion order (the same
    /// environment may hold several phases, say 10% then all of PROD).
    pub fn validate(&self, environments: &[EnvironmentRules]) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.name.trim().is_empty() {
            errors.push(err("name", "Give the release a name."));
        } else if self.name.chars().count() > NAME_MAX {
            errors.push(err("name", format!("At most {NAME_MAX} characters.")));
        } else if let Err(e) = check_name("name", &self.name) {
            errors.push(e);
        }
        let version_ok = !self.version.is_empty()
            && self.version.chars().count() <= VERSION_MAX
            && self
                .version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'));
        if !version_ok {
            errors.push(err(
                "version",
                format!(
                    "A version of 1 to {VERSION_MAX} letters, digits, dots, dashes, underscores or plus signs, e.g. 2026.12.1."
                ),
            ));
        }
        let m = &self.milestones;
        for ((field, earlier, later), (before, after)) in [
            ("go_no_go", m.code_freeze, m.go_no_go),
            ("deployment", m.go_no_go, m.deployment),
            ("hypercare_end", m.deployment, m.hypercare_end),
        ]
        .into_iter()
        .zip([
            (Milestone::CodeFreeze, Milestone::GoNoGo),
            (Milestone::GoNoGo, Milestone::Deployment),
            (Milestone::Deployment, Milestone::HypercareEnd),
        ]) {
            if later < earlier {
                errors.push(err(
                    field,
                    format!(
                        "The {} cannot come before the {}.",
                        after.label().to_lowercase(),
                        before.label().to_lowercase()
                    ),
                ));
            }
        }
        for (m, at) in m.all() {
            if !sane_year(at) {
                errors.push(err(
                    milestone_field(m),
                    format!(
                        "The {}: a date in the years 2000 to 2999.",
                        m.label().to_lowercase()
                    ),
                ));
            }
        }
        let t = &self.test_strategy;
        if t.levels.is_empty() {
            errors.push(err("test_levels", "Choose the levels of testing."));
        }
        required_text(
            &mut errors,
            "entry_criteria",
            "Entry criteria",
            &t.entry_criteria,
            TEXT_MAX,
        );
        required_text(
            &mut errors,
            "exit_criteria",
            "Exit criteria",
            &t.exit_criteria,
            TEXT_MAX,
        );
        if t.evidence.len() > MAX_EVIDENCE {
            errors.push(err(
                "evidence",
                format!("At most {MAX_EVIDENCE} evidence links."),
            ));
        } else if let Some(bad) = t.evidence.iter().find(|l| !is_link(l)) {
            errors.push(err(
                "evidence",
                format!("{} is not an http(s) link.", crate::text::quoted(bad)),
            ));
        }
        self.validate_phases(environments, &mut errors);
        let r = &self.rollback;
        required_text(
            &mut errors,
            "rollback_triggers",
            "Rollback triggers",
            &r.triggers,
            TEXT_MAX,
        );
        required_text(
            &mut errors,
            "rollback_steps",
            "Rollback steps",
            &r.steps,
            TEXT_MAX,
        );
        if !(1..=ROLLBACK_MAX_MINUTES).contains(&r.max_minutes) {
            errors.push(err(
                "rollback_max_minutes",
                format!("The longest the rollback may take: 1 to {ROLLBACK_MAX_MINUTES} minutes."),
            ));
        }
        if r.irreversible {
            required_text(
                &mut errors,
                "irreversible_steps",
                "Irreversible steps",
                &r.irreversible_steps,
                TEXT_MAX,
            );
        } else if !r.irreversible_steps.trim().is_empty() {
            errors.push(err(
                "irreversible_steps",
                "Irreversible steps are named only when some step is irreversible; tick that box, or leave this empty.",
            ));
        }
        if self.communications.len() > MAX_COMMUNICATIONS {
            errors.push(err(
                "communications",
                format!("At most {MAX_COMMUNICATIONS} communications."),
            ));
        }
        for (i, c) in self.communications.iter().enumerate() {
            let n = i + 1;
            if !sane_year(c.when) {
                errors.push(err(
                    "communications",
                    format!("Communication {n}: a date in the years 2000 to 2999."),
                ));
            }
            for (label, v, max) in [
                ("audience", &c.audience, SHORT_MAX),
                ("channel", &c.channel, SHORT_MAX),
                ("message", &c.message, TEXT_MAX),
            ] {
                let mut found = Vec::new();
                required_text(
                    &mut found,
                    "communications",
                    &format!("Communication {n}, {label}"),
                    v,
                    max,
                );
                errors.extend(found);
            }
        }
        errors
    }

    fn validate_phases(&self, environments: &[EnvironmentRules], errors: &mut Vec<FieldError>) {
        if self.phases.is_empty() {
            errors.push(err("phases", "Plan at least one deployment phase."));
            return;
        }
        if self.phases.len() > MAX_PHASES {
            errors.push(err("phases", format!("At most {MAX_PHASES} phases.")));
            return;
        }
        let mut last_rank = i32::MIN;
        for (i, p) in self.phases.iter().enumerate() {
            let n = i + 1;
            match environments.iter().find(|e| e.key == p.environment) {
                None => errors.push(err(
                    "phases",
                    format!("Phase {n}: choose one of the environments."),
                )),
                Some(env) if env.rank < last_rank => errors.push(err(
                    "phases",
                    format!(
                        "Phase {n}: {} comes before the phase above it in the promotion order; phases go DEV → TEST → STAGE → PROD.",
                        env.label
                    ),
                )),
                Some(env) => last_rank = env.rank,
            }
            if p.soak_minutes > SOAK_MAX_MINUTES {
                errors.push(err(
                    "phases",
                    format!(
                        "Phase {n}: a soak time of at most {SOAK_MAX_MINUTES} minutes (30 days)."
                    ),
                ));
            }
            for (label, v, max) in [
                ("target", &p.target, SHORT_MAX),
                ("criteria to go on", &p.proceed_criteria, TEXT_MAX),
                ("criteria to abort", &p.abort_criteria, TEXT_MAX),
            ] {
                required_text(errors, "phases", &format!("Phase {n}, {label}"), v, max);
            }
        }
    }

    /// The plan as lines a person compares: one per field, one per phase
    /// and per communication.
    pub fn fields(&self) -> Vec<(String, String)> {
        let t = &self.test_strategy;
        let r = &self.rollback;
        let mut out: Vec<(String, String)> = vec![
            ("name".into(), self.name.clone()),
            ("version".into(), self.version.clone()),
        ];
        for (m, at) in self.milestones.all() {
            out.push((m.as_str().into(), crate::audit::format_time(at)));
        }
        out.extend([
            (
                "test_levels".into(),
                t.levels
                    .iter()
                    .map(|l| l.label())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            ("entry_criteria".into(), t.entry_criteria.clone()),
            ("exit_criteria".into(), t.exit_criteria.clone()),
            ("evidence".into(), t.evidence.join("\n")),
        ]);
        let phases = self.phases.len().max(1);
        for i in 0..phases {
            let line = self.phases.get(i).map_or_else(String::new, |p| {
                format!(
                    "{} · {} · soak {} min · go on: {} · abort: {}",
                    p.environment, p.target, p.soak_minutes, p.proceed_criteria, p.abort_criteria
                )
            });
            out.push((format!("phase {}", i + 1), line));
        }
        out.extend([
            ("rollback_triggers".into(), r.triggers.clone()),
            ("rollback_steps".into(), r.steps.clone()),
            ("rollback_max_minutes".into(), r.max_minutes.to_string()),
            (
                "irreversible_steps".into(),
                if r.irreversible {
                    r.irreversible_steps.clone()
                } else {
                    "none".into()
                },
            ),
        ]);
        for (i, c) in self.communications.iter().enumerate() {
            out.push((
                format!("communication {}", i + 1),
                format!(
                    "{} · {} · {} · {}",
                    c.audience,
                    c.channel,
                    crate::audit::format_time(c.when),
                    c.message
                ),
            ));
        }
        out
    }
}

/// What differs between two revisions of a plan, and of its scope (change
/// numbers, as people read them).
pub fn diff(
    before: &ReleasePlan,
    after: &ReleasePlan,
    scope_before: &[String],
    scope_after: &[String],
) -> Vec<FieldChange> {
    let mut a = before.fields();
    let mut b = after.fields();
    // Lines present on one side only (a phase or communication added or
    // dropped) compare with nothing.
    for (k, _) in b.clone() {
        if !a.iter().any(|(x, _)| *x == k) {
            a.push((k, String::new()));
        }
    }
    for (k, _) in a.clone() {
        if !b.iter().any(|(x, _)| *x == k) {
            b.push((k, String::new()));
        }
    }
    let mut out: Vec<FieldChange> = a
        .iter()
        .filter_map(|(k, va)| {
            let vb = &b.iter().find(|(x, _)| x == k)?.1;
            (va != vb).then(|| FieldChange {
                field: k.clone(),
                before: va.clone(),
                after: vb.clone(),
            })
        })
        .collect();
    if scope_before != scope_after {
        out.push(FieldChange {
            field: "scope".into(),
            before: scope_before.join(", "),
            after: scope_after.join(", "),
        });
    }
    out
}

/// The facts about a release its rules need.
#[derive(Debug, Clone)]
pub struct ReleaseFacts {
    pub state: ReleaseState,
    /// Who wrote or edited any revision of the plan.
    pub planners: Vec<Uuid>,
    /// The authors and contributors of the changes in scope now.
    pub change_authors: Vec<Uuid>,
    /// The changes in scope now: (number as people read it, state, level).
    pub scope: Vec<ScopeChange>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeChange {
    pub id: Uuid,
    pub key: String,
    pub state: ChangeState,
    /// The level its decision rests on: the higher of the engineer's and
    /// its current assessment's.
    pub risk: RiskLevel,
    /// CAB approved its current revision (a break-glass deployment moves a
    /// change on without any approval).
    pub decided: bool,
}

impl ScopeChange {
    /// Approved by CAB, on its current revision, and the approval stands.
    pub fn approved(&self) -> bool {
        self.decided && change_is_approved(self.state)
    }
}

/// Whether a change in this state may be in an approved release: it has
/// been approved (and may be on its way out already).
pub fn change_is_approved(state: ChangeState) -> bool {
    state.carries_approval()
}

/// Whether a change in this state may be added to a release: not once it
/// is over (rejected, withdrawn, cancelled).
pub fn change_may_join(state: ChangeState) -> bool {
    !state.is_closed()
}

/// Release managers plan releases and run them; administrators may too.
pub fn check_plan(actor: &Actor) -> Result<(), Denial> {
    if !actor.is_service
        && (actor.roles.contains(Role::ReleaseManager) || actor.roles.contains(Role::Admin))
    {
        Ok(())
    } else {
        Err(Denial::new(
            "release_manager_required",
            "Only release managers and administrators plan and run releases.",
        ))
    }
}

/// Whether the plan (or its scope) may be edited in this state. An edit to
/// an approved plan voids the approval; a release on its way out is not
/// edited (roll back, or cancel it).
pub fn check_edit(actor: &Actor, state: ReleaseState) -> Result<ReleaseState, Denial> {
    check_plan(actor)?;
    match state {
        ReleaseState::Draft => Ok(ReleaseState::Draft),
        ReleaseState::InReview | ReleaseState::Approved => Ok(ReleaseState::InReview),
        ReleaseState::InProgress => Err(Denial::new(
            "release_in_progress",
            "This release is being deployed, so its plan is no longer edited; roll back a phase or cancel the release instead.",
        )),
        ReleaseState::Completed | ReleaseState::Cancelled => Err(closed(state)),
    }
}

fn closed(state: ReleaseState) -> Denial {
    Denial::new(
        "release_closed",
        format!(
            "This release is {}; nothing more happens to it.",
            state.label().to_lowercase()
        ),
    )
}

/// A draft goes to review with at least one change in scope.
pub fn check_submit(actor: &Actor, release: &ReleaseFacts) -> Result<ReleaseState, Denial> {
    check_plan(actor)?;
    if release.state != ReleaseState::Draft {
        return Err(Denial::new(
            "not_draft",
            format!(
                "This release is {}; only a draft is submitted for review.",
                release.state.label().to_lowercase()
            ),
        ));
    }
    if release.scope.is_empty() {
        return Err(Denial::new(
            "empty_scope",
            "A release goes to review with at least one change in its scope.",
        ));
    }
    Ok(ReleaseState::InReview)
}

/// A plan CAB turned down (no-go, or changes requested) is revised before
/// it goes back to review: the votes on its revision stand, so resubmitted
/// unchanged it would only be returned again. `turned_down` says whether a
/// current vote on the current revision turned it down.
pub fn check_revised(turned_down: bool, revision: i32) -> Result<(), Denial> {
    if turned_down {
        Err(Denial::new(
            "revise_first",
            format!(
                "CAB turned down revision {revision} of this plan; revise the plan (or its scope) before submitting it again."
            ),
        ))
    } else {
        Ok(())
    }
}

/// Separation of duties for the go/no-go vote: pipelines never vote; nobody
/// who wrote the plan or worked on a change in it votes; only CAB members
/// vote; only a release in review is voted on.
pub fn check_vote(release: &ReleaseFacts, actor: &Actor) -> Result<(), Denial> {
    if actor.is_service {
        return Err(Denial::new(
            "service_account",
            "Service accounts are for pipelines: they never vote on releases.",
        ));
    }
    if release.planners.contains(&actor.id) {
        return Err(Denial::new(
            "self_approval",
            "You wrote or edited this release plan, so you cannot vote on it; other CAB members decide.",
        ));
    }
    if release.change_authors.contains(&actor.id) {
        return Err(Denial::new(
            "self_approval",
            "You wrote or contributed to a change in this release, so you cannot vote on it; other CAB members decide.",
        ));
    }
    if !actor.roles.contains(Role::CabMember) {
        return Err(Denial::new(
            "cab_member_required",
            "Only CAB members vote on releases.",
        ));
    }
    if release.state != ReleaseState::InReview {
        return Err(Denial::new(
            "not_under_review",
            format!(
                "This release is {}; it is not awaiting a go/no-go.",
                release.state.label().to_lowercase()
            ),
        ));
    }
    Ok(())
}

/// The level the go/no-go is decided at: the riskiest change's in scope.
pub fn level(scope: &[ScopeChange]) -> RiskLevel {
    scope.iter().map(|c| c.risk).max().unwrap_or(RiskLevel::Low)
}

/// What the current ballots come to. The go/no-go needs the CAB approvals
/// the riskiest change in scope needs (its security assessment is that
/// change's own); a release is approved only once every change in its
/// scope is, and until then that is what it needs. A no-go rejects this
/// revision of the plan (the release returns to draft), as a request for
/// changes does.
pub fn decide(policy: &QuorumPolicy, scope: &[ScopeChange], ballots: &[Ballot]) -> Decision {
    let mut policy = *policy;
    for rule in [
        &mut policy.low,
        &mut policy.medium,
        &mut policy.high,
        &mut policy.critical,
    ] {
        rule.assessment = false;
    }
    if scope.is_empty() {
        return Decision::Pending {
            needs: vec!["at least one change in scope".into()],
        };
    }
    let outcome = evaluate(&policy, ChangeType::Normal, level(scope), ballots, None);
    let waiting: Vec<&str> = scope
        .iter()
        .filter(|c| !c.approved())
        .map(|c| c.key.as_str())
        .collect();
    match outcome {
        Decision::Approved if !waiting.is_empty() => Decision::Pending {
            needs: vec![format!(
                "approval of every change in scope ({} not yet approved)",
                waiting.join(", ")
            )],
        },
        Decision::Pending { mut needs } if !waiting.is_empty() => {
            needs.push(format!(
                "approval of every change in scope ({} not yet approved)",
                waiting.join(", ")
            ));
            Decision::Pending { needs }
        }
        other => other,
    }
}

/// The state a decision leads to from review.
pub fn decided(outcome: &Decision) -> ReleaseState {
    match outcome {
        Decision::Approved => ReleaseState::Approved,
        Decision::Rejected { .. } | Decision::ChangesRequested => ReleaseState::Draft,
        Decision::Pending { .. } => ReleaseState::InReview,
    }
}

/// A ballot's standing for a release: someone who planned it or worked on a
/// change in scope never counts, whatever they hold.
pub fn ballot(
    voter: Uuid,
    choice: VoteChoice,
    standing: Standing,
    release: &ReleaseFacts,
) -> Ballot {
    let standing = if release.planners.contains(&voter) || release.change_authors.contains(&voter) {
        Standing::Author
    } else {
        standing
    };
    Ballot {
        voter,
        choice,
        standing,
    }
}

/// Starting a release: approved, and every change in scope still approved
/// (a change edited since goes back to review).
pub fn check_start(actor: &Actor, release: &ReleaseFacts) -> Result<(), Denial> {
    check_plan(actor)?;
    if release.state != ReleaseState::Approved {
        return Err(Denial::new(
            "not_approved",
            format!(
                "This release is {}; only an approved release starts.",
                release.state.label().to_lowercase()
            ),
        ));
    }
    if release.scope.is_empty() {
        return Err(Denial::new(
            "empty_scope",
            "A release with no change in its scope has nothing to deploy.",
        ));
    }
    let waiting: Vec<&str> = release
        .scope
        .iter()
        .filter(|c| !c.approved())
        .map(|c| c.key.as_str())
        .collect();
    if !waiting.is_empty() {
        return Err(Denial::new(
            "scope_not_approved",
            format!(
                "Every change in the release must be approved before it starts; {} {} not.",
                waiting.join(", "),
                if waiting.len() == 1 { "is" } else { "are" }
            ),
        ));
    }
    Ok(())
}

/// A successful deployment of a change in scope, as the store has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseDeployment {
    pub change: Uuid,
    pub environment: String,
    pub finished_at: DateTime<Utc>,
}

/// Where a release's phases stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The open phase (0-based), once the release has started.
    pub current: Option<usize>,
    pub opened_at: Option<DateTime<Utc>>,
    /// A phase was rolled back: no later phase opens.
    pub rolled_back: Option<usize>,
}

/// What advancing does: open the next phase, or complete the release after
/// the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    Open(usize),
    Complete,
}

/// For each change in scope, its deployment in the open phase: a
/// successful one to the phase's environment that finished once the phase
/// was open.
pub fn phase_deployments<'a>(
    phase: &Phase,
    opened_at: DateTime<Utc>,
    scope: &[ScopeChange],
    deployments: &'a [PhaseDeployment],
) -> Vec<(String, Option<&'a PhaseDeployment>)> {
    scope
        .iter()
        .map(|c| {
            let done = deployments
                .iter()
                .filter(|d| {
                    d.change == c.id
                        && d.environment == phase.environment
                        && d.finished_at >= opened_at
                })
                .max_by_key(|d| d.finished_at);
            (c.key.clone(), done)
        })
        .collect()
}

/// Whether the next phase may open (or the release complete): the open
/// phase deployed every change in scope and soaked since the last of them.
/// Every reason it may not is named.
pub fn check_advance(
    actor: &Actor,
    release: &ReleaseFacts,
    plan: &ReleasePlan,
    progress: &Progress,
    deployments: &[PhaseDeployment],
    now: DateTime<Utc>,
) -> Result<Advance, Vec<Denial>> {
    check_plan(actor).map_err(|d| vec![d])?;
    if release.state != ReleaseState::InProgress {
        return Err(vec![Denial::new(
            "not_in_progress",
            format!(
                "This release is {}; phases advance only while it is in progress.",
                release.state.label().to_lowercase()
            ),
        )]);
    }
    if let Some(r) = progress.rolled_back {
        return Err(vec![Denial::new(
            "phase_rolled_back",
            format!(
                "Phase {} was rolled back, so the phases after it do not open; revise the plan in a new release or cancel this one.",
                r + 1
            ),
        )]);
    }
    let (Some(current), Some(opened_at)) = (progress.current, progress.opened_at) else {
        return Err(vec![Denial::new(
            "not_in_progress",
            "No phase of this release is open.",
        )]);
    };
    let Some(phase) = plan.phases.get(current) else {
        return Err(vec![Denial::new(
            "not_in_progress",
            "No phase of this release is open.",
        )]);
    };
    let done = phase_deployments(phase, opened_at, &release.scope, deployments);
    let missing: Vec<&str> = done
        .iter()
        .filter(|(_, d)| d.is_none())
        .map(|(k, _)| k.as_str())
        .collect();
    let mut reasons = Vec::new();
    if !missing.is_empty() {
        reasons.push(Denial::new(
            "phase_not_deployed",
            format!(
                "Phase {} has not deployed {} yet.",
                current + 1,
                missing.join(", ")
            ),
        ));
    } else {
        let last = done
            .iter()
            .filter_map(|(_, d)| d.map(|d| d.finished_at))
            .max()
            .unwrap_or(opened_at);
        let soaked = last + Duration::minutes(i64::from(phase.soak_minutes));
        if now < soaked {
            // Whole minutes, rounded up: 59 s left is "1 more minute".
            let left = ((soaked - now).num_milliseconds() + 59_999) / 60_000;
            reasons.push(Denial::new(
                "soak_not_over",
                format!(
                    "Phase {} soaks until {} ({left} more minute{}).",
                    current + 1,
                    crate::audit::format_time(soaked),
                    if left == 1 { "" } else { "s" }
                ),
            ));
        }
    }
    if !reasons.is_empty() {
        return Err(reasons);
    }
    Ok(if current + 1 < plan.phases.len() {
        Advance::Open(current + 1)
    } else {
        Advance::Complete
    })
}

/// Rolling back the open phase: in progress, not rolled back already, and
/// a reason given.
pub fn check_rollback(
    actor: &Actor,
    release: &ReleaseFacts,
    progress: &Progress,
) -> Result<usize, Denial> {
    check_plan(actor)?;
    if release.state != ReleaseState::InProgress {
        return Err(Denial::new(
            "not_in_progress",
            format!(
                "This release is {}; only a phase of a release in progress is rolled back.",
                release.state.label().to_lowercase()
            ),
        ));
    }
    if let Some(r) = progress.rolled_back {
        return Err(Denial::new(
            "phase_rolled_back",
            format!("Phase {} has been rolled back already.", r + 1),
        ));
    }
    progress
        .current
        .ok_or_else(|| Denial::new("not_in_progress", "No phase of this release is open."))
}

pub fn check_cancel(actor: &Actor, state: ReleaseState) -> Result<(), Denial> {
    check_plan(actor)?;
    if state.is_closed() {
        return Err(closed(state));
    }
    Ok(())
}

/// A reason for a scope change or a rollback.
pub fn check_reason(field: &'static str, reason: &str) -> Result<(), FieldError> {
    let n = reason.trim().chars().count();
    if n < REASON_MIN {
        return Err(err(field, "Give the reason in a few words."));
    }
    if n > REASON_MAX {
        return Err(err(field, format!("At most {REASON_MAX} characters.")));
    }
    check_text(field, reason)
}

/// The release's rule at the deployment gate, added to the gate's own: a
/// change in the scope of a release that is not over deploys to an
/// environment one of its phases names only once such a phase is open (not
/// rolled back); an edit that sends the plan back to review does not lift
/// it, taking the change out of scope (with a reason) does. Other
/// environments, and releases that are over, add nothing.
pub fn gate_rule(
    release_name: &str,
    state: ReleaseState,
    plan: &ReleasePlan,
    progress: &Progress,
    environment: &str,
    environment_label: &str,
) -> Option<Denial> {
    let phased: Vec<usize> = plan
        .phases
        .iter()
        .enumerate()
        .filter(|(_, p)| p.environment == environment)
        .map(|(i, _)| i)
        .collect();
    if phased.is_empty() {
        return None;
    }
    let first = phased.iter().copied().min().unwrap_or(0);
    match state {
        ReleaseState::Draft | ReleaseState::InReview | ReleaseState::Approved => Some(Denial::new(
            "release_phase_not_open",
            format!(
                "This change goes out with release {release_name}, which has not started; its {environment_label} phase opens when the release manager starts it and advances to it. To deploy the change by itself, take it out of the release first."
            ),
        )),
        ReleaseState::InProgress => {
            if let Some(r) = progress.rolled_back {
                return Some(Denial::new(
                    "release_rolled_back",
                    format!(
                        "Release {release_name} rolled back phase {}, so it deploys nothing more.",
                        r + 1
                    ),
                ));
            }
            let current = progress.current.unwrap_or(0);
            if current < first {
                Some(Denial::new(
                    "release_phase_not_open",
                    format!(
                        "This change goes out with release {release_name}, whose {environment_label} phase is not open (phase {} is).",
                        current + 1
                    ),
                ))
            } else {
                None
            }
        }
        ReleaseState::Completed | ReleaseState::Cancelled => None,
    }
}

/// The changes of `scope_after` not in `scope_before`, and the reverse.
pub fn scope_moves(before: &[Uuid], after: &[Uuid]) -> (Vec<Uuid>, Vec<Uuid>) {
    let a: BTreeSet<&Uuid> = before.iter().collect();
    let b: BTreeSet<&Uuid> = after.iter().collect();
    (
        b.difference(&a).map(|u| **u).collect(),
        a.difference(&b).map(|u| **u).collect(),
    )
}

#[cfg(test)]
#[allow(clippy::type_complexity)] // the test tables read best with their row type inline
mod tests {
    use super::*;
    use crate::RoleSet;
    use crate::approval::LevelRule;
    use crate::deployment::default_environments;
    use ChangeState::{
        Approved as ChangeApproved, Draft as ChangeDraft, ImplementationFailed, Implemented,
        Implementing, InCabReview, Submitted,
    };
    use RiskLevel::{Critical, High, Low, Medium};
    use VoteChoice::{Approve, Reject, RequestChanges};
    use chrono::TimeZone;

    /// A moment in December 2026.
    fn at(day: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, day, h, m, 0).unwrap()
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    const PLANNER: u128 = 1;
    const CHANGE_AUTHOR: u128 = 2;
    const MEMBER: u128 = 3;
    const MANAGER: u128 = 4;

    fn actor(n: u128, roles: &[Role], is_service: bool) -> Actor {
        Actor {
            id: id(n),
            roles: roles.iter().copied().collect::<RoleSet>(),
            is_service,
        }
    }

    fn manager() -> Actor {
        actor(MANAGER, &[Role::ReleaseManager], false)
    }

    fn engineer() -> Actor {
        actor(MANAGER, &[Role::Engineer], false)
    }

    fn phase(environment: &str, target: &str, soak_minutes: u32) -> Phase {
        Phase {
            environment: environment.into(),
            target: target.into(),
            soak_minutes,
            proceed_criteria: "Error rate below 0.1%.".into(),
            abort_criteria: "Error rate above 1%.".into(),
        }
    }

    fn communication(audience: &str) -> Communication {
        Communication {
            audience: audience.into(),
            channel: "#support".into(),
            when: at(5, 21, 0),
            message: "PROD deployment starts at 22:00.".into(),
        }
    }

    /// A valid plan: TEST, then 10% of PROD for an hour, then all of PROD.
    fn plan() -> ReleasePlan {
        ReleasePlan {
            name: "December platform release".into(),
            version: "2026.12.1".into(),
            milestones: Milestones {
                code_freeze: at(1, 9, 0),
                go_no_go: at(3, 15, 0),
                deployment: at(5, 22, 0),
                hypercare_end: at(12, 17, 0),
            },
            test_strategy: TestStrategy {
                levels: vec![TestLevel::Unit, TestLevel::Integration],
                entry_criteria: "Every change approved and merged.".into(),
                exit_criteria: "No open severity 1 defects.".into(),
                evidence: vec![
                    "https://ci.example.com/runs/42".into(),
                    "https://reports.example.com/perf/7".into(),
                ],
            },
            phases: vec![
                phase("test", "all of TEST", 0),
                phase("prod", "10% of traffic", 60),
                phase("prod", "all of PROD", 120),
            ],
            rollback: RollbackPlan {
                triggers: "Error rate above 1% for 5 minutes.".into(),
                steps: "Redeploy the previous artifact.".into(),
                max_minutes: 30,
                irreversible: false,
                irreversible_steps: String::new(),
            },
            communications: vec![communication("Support")],
        }
    }

    fn with(edit: impl FnOnce(&mut ReleasePlan)) -> ReleasePlan {
        let mut p = plan();
        edit(&mut p);
        p
    }

    fn errors(p: &ReleasePlan) -> Vec<(&'static str, String)> {
        p.validate(&default_environments())
            .into_iter()
            .map(|e| (e.field, e.message))
            .collect()
    }

    fn error_fields(p: &ReleasePlan) -> Vec<&'static str> {
        errors(p).into_iter().map(|(f, _)| f).collect()
    }

    fn scoped(n: u128, state: ChangeState, risk: RiskLevel) -> ScopeChange {
        ScopeChange {
            id: id(n),
            key: format!("CHG-{n}"),
            state,
            risk,
            decided: change_is_approved(state),
        }
    }

    #[test]
    fn dates_outside_this_millennium_are_typos_and_times_keep_to_the_second() {
        let mut p = plan();
        let odd = DateTime::parse_from_rfc3339("0001-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        p.milestones.code_freeze = odd;
        let errors = p.validate(&crate::deployment::default_environments());
        assert!(
            errors
                .iter()
                .any(|e| e.field == "code_freeze" && e.message.contains("2000 to 2999")),
            "{errors:?}"
        );
        let mut p = plan();
        p.communications[0].when = odd;
        let errors = p.validate(&crate::deployment::default_environments());
        assert!(
            errors
                .iter()
                .any(|e| e.field == "communications" && e.message.contains("2000 to 2999")),
            "{errors:?}"
        );
        let mut p = plan();
        p.milestones.deployment += Duration::milliseconds(1500);
        p.communications[0].when += Duration::milliseconds(250);
        let n = p.clone().normalized();
        assert_eq!(n.milestones.deployment.nanosecond(), 0);
        assert_eq!(n.communications[0].when.nanosecond(), 0);
        assert_eq!(
            n.milestones.deployment.timestamp(),
            p.milestones.deployment.timestamp()
        );
        assert_eq!(plan().normalized(), plan());
    }

    #[test]
    fn a_change_moved_on_without_approval_is_not_approved() {
        let mut c = scoped(101, Implemented, Low);
        assert!(c.approved());
        c.decided = false;
        assert!(!c.approved());
        let mut release = facts(ReleaseState::Approved);
        release.scope = vec![c.clone()];
        assert_eq!(
            check_start(&manager(), &release).unwrap_err().code,
            "scope_not_approved"
        );
        let ballots = [Ballot {
            voter: id(11),
            choice: VoteChoice::Approve,
            standing: Standing::Counts,
        }];
        assert!(matches!(
            decide(&QuorumPolicy::default(), &[c], &ballots),
            Decision::Pending { .. }
        ));
    }

    /// Planned by 1; change 101 (medium) and 102 (high), both approved,
    /// written by 2.
    fn facts(state: ReleaseState) -> ReleaseFacts {
        ReleaseFacts {
            state,
            planners: vec![id(PLANNER)],
            change_authors: vec![id(CHANGE_AUTHOR)],
            scope: vec![
                scoped(101, ChangeApproved, Medium),
                scoped(102, ChangeApproved, High),
            ],
        }
    }

    fn code<T>(r: Result<T, Denial>) -> Result<T, &'static str> {
        r.map_err(|d| d.code)
    }

    // ---- ReleaseState ----

    #[test]
    fn only_completed_and_cancelled_releases_are_closed() {
        use ReleaseState::*;
        for (state, closed) in [
            (Draft, false),
            (InReview, false),
            (Approved, false),
            (InProgress, false),
            (Completed, true),
            (Cancelled, true),
        ] {
            assert_eq!(state.is_closed(), closed, "{state:?}");
        }
    }

    #[test]
    fn milestones_are_listed_in_the_order_they_fall() {
        let p = plan();
        assert_eq!(
            p.milestones.all(),
            [
                (Milestone::CodeFreeze, at(1, 9, 0)),
                (Milestone::GoNoGo, at(3, 15, 0)),
                (Milestone::Deployment, at(5, 22, 0)),
                (Milestone::HypercareEnd, at(12, 17, 0)),
            ]
        );
    }

    // ---- validate ----

    #[test]
    fn a_valid_plan_has_no_errors() {
        assert_eq!(errors(&plan()), vec![]);
        // Limits reached exactly, milestones on the same moment, every
        // optional part empty, the same environment for every phase.
        let edge = with(|p| {
            p.name = "n".repeat(NAME_MAX);
            p.version = "1.0-rc_1+B".repeat(4);
            p.milestones.go_no_go = p.milestones.code_freeze;
            p.milestones.deployment = p.milestones.code_freeze;
            p.milestones.hypercare_end = p.milestones.code_freeze;
            p.test_strategy.levels = TestLevel::ALL.to_vec();
            p.test_strategy.entry_criteria = "e".repeat(TEXT_MAX);
            p.test_strategy.exit_criteria = "Line one\n\tline two\r\n".into();
            p.test_strategy.evidence = vec!["https://ci.example.com/r".into(); MAX_EVIDENCE];
            p.phases = vec![phase("prod", &"t".repeat(SHORT_MAX), SOAK_MAX_MINUTES); MAX_PHASES];
            p.rollback.max_minutes = ROLLBACK_MAX_MINUTES;
            p.rollback.irreversible_steps = "   ".into();
            p.communications = vec![communication("Support"); MAX_COMMUNICATIONS];
        });
        assert_eq!(edge.version.len(), VERSION_MAX);
        assert_eq!(errors(&edge), vec![]);
        let least = with(|p| {
            p.version = "1".into();
            p.test_strategy.evidence = vec![];
            p.rollback.max_minutes = 1;
            p.rollback.irreversible = true;
            p.rollback.irreversible_steps = "Drops the legacy column.".into();
            p.communications = vec![];
            p.phases = vec![phase("dev", "x", 0)];
        });
        assert_eq!(errors(&least), vec![]);
    }

    #[test]
    fn each_fault_names_its_field_and_says_what_is_wrong() {
        let version_message = "A version of 1 to 40 letters, digits, dots, dashes, underscores or plus signs, e.g. 2026.12.1.";
        let cases: Vec<(&str, ReleasePlan, Vec<(&str, &str)>)> = vec![
            (
                "empty name",
                with(|p| p.name = " \t ".into()),
                vec![("name", "Give the release a name.")],
            ),
            (
                "long name",
                with(|p| p.name = "n".repeat(NAME_MAX + 1)),
                vec![("name", "At most 120 characters.")],
            ),
            (
                "name with a control character",
                with(|p| p.name = "Dec\u{7}ember".into()),
                vec![(
                    "name",
                    "Contains U+0007 BELL, a control character that cannot be stored; remove it.",
                )],
            ),
            (
                "name with an invisible character",
                with(|p| p.name = "December\u{202E}esaeler".into()),
                vec![(
                    "name",
                    "Contains U+202E RIGHT-TO-LEFT OVERRIDE, an invisible formatting character that can make it read as something else; remove it.",
                )],
            ),
            (
                "empty version",
                with(|p| p.version = String::new()),
                vec![("version", version_message)],
            ),
            (
                "version with a space",
                with(|p| p.version = "2026 12".into()),
                vec![("version", version_message)],
            ),
            (
                "version with a slash",
                with(|p| p.version = "v/1".into()),
                vec![("version", version_message)],
            ),
            (
                "version with a non-ASCII digit",
                with(|p| p.version = "٢٠٢٦".into()),
                vec![("version", version_message)],
            ),
            (
                "long version",
                with(|p| p.version = "1".repeat(VERSION_MAX + 1)),
                vec![("version", version_message)],
            ),
            (
                "go/no-go before the code freeze",
                with(|p| p.milestones.code_freeze = at(4, 0, 0)),
                vec![(
                    "go_no_go",
                    "The go/no-go cannot come before the code freeze.",
                )],
            ),
            (
                "deployment before the go/no-go",
                with(|p| p.milestones.deployment = at(2, 0, 0)),
                vec![(
                    "deployment",
                    "The deployment cannot come before the go/no-go.",
                )],
            ),
            (
                "end of hypercare before the deployment",
                with(|p| p.milestones.hypercare_end = at(4, 0, 0)),
                vec![(
                    "hypercare_end",
                    "The end of hypercare cannot come before the deployment.",
                )],
            ),
            (
                "no test levels",
                with(|p| p.test_strategy.levels.clear()),
                vec![("test_levels", "Choose the levels of testing.")],
            ),
            (
                "empty entry criteria",
                with(|p| p.test_strategy.entry_criteria = "  ".into()),
                vec![("entry_criteria", "Entry criteria: say what it is.")],
            ),
            (
                "long entry criteria",
                with(|p| p.test_strategy.entry_criteria = "é".repeat(TEXT_MAX + 1)),
                vec![("entry_criteria", "Entry criteria: at most 4000 characters.")],
            ),
            (
                "entry criteria with a control character",
                with(|p| p.test_strategy.entry_criteria = "a\u{0}b".into()),
                vec![(
                    "entry_criteria",
                    "Entry criteria: Contains U+0000 NULL, a control character that cannot be stored; remove it.",
                )],
            ),
            (
                "empty exit criteria",
                with(|p| p.test_strategy.exit_criteria = String::new()),
                vec![("exit_criteria", "Exit criteria: say what it is.")],
            ),
            (
                "long exit criteria",
                with(|p| p.test_strategy.exit_criteria = "x".repeat(TEXT_MAX + 1)),
                vec![("exit_criteria", "Exit criteria: at most 4000 characters.")],
            ),
            (
                "exit criteria with an escape",
                with(|p| p.test_strategy.exit_criteria = "\u{1b}[31mred".into()),
                vec![(
                    "exit_criteria",
                    "Exit criteria: Contains U+001B ESCAPE, a control character that cannot be stored; remove it.",
                )],
            ),
            (
                "evidence that is not a link",
                with(|p| {
                    p.test_strategy
                        .evidence
                        .push("ftp://example.com/report".into());
                    p.test_strategy.evidence.push("not a link".into());
                }),
                vec![(
                    "evidence",
                    "'ftp://example.com/report' is not an http(s) link.",
                )],
            ),
            (
                "too many evidence links",
                with(|p| {
                    p.test_strategy.evidence = vec!["nonsense".into(); MAX_EVIDENCE + 1];
                }),
                vec![("evidence", "At most 20 evidence links.")],
            ),
            (
                "no phases",
                with(|p| p.phases.clear()),
                vec![("phases", "Plan at least one deployment phase.")],
            ),
            (
                "too many phases, however wrong each is",
                with(|p| {
                    p.phases = vec![phase("nowhere", "", SOAK_MAX_MINUTES + 1); MAX_PHASES + 1]
                }),
                vec![("phases", "At most 10 phases.")],
            ),
            (
                "unknown environment",
                with(|p| p.phases[1].environment = "PROD".into()),
                vec![("phases", "Phase 2: choose one of the environments.")],
            ),
            (
                "phases out of promotion order",
                with(|p| p.phases.push(phase("stage", "all of STAGE", 0))),
                vec![(
                    "phases",
                    "Phase 4: STAGE comes before the phase above it in the promotion order; phases go DEV → TEST → STAGE → PROD.",
                )],
            ),
            (
                "soak too long",
                with(|p| p.phases[0].soak_minutes = SOAK_MAX_MINUTES + 1),
                vec![(
                    "phases",
                    "Phase 1: a soak time of at most 43200 minutes (30 days).",
                )],
            ),
            (
                "empty phase target",
                with(|p| p.phases[2].target = " ".into()),
                vec![("phases", "Phase 3, target: say what it is.")],
            ),
            (
                "long phase target",
                with(|p| p.phases[0].target = "t".repeat(SHORT_MAX + 1)),
                vec![("phases", "Phase 1, target: at most 200 characters.")],
            ),
            (
                "empty criteria to go on",
                with(|p| p.phases[1].proceed_criteria = String::new()),
                vec![("phases", "Phase 2, criteria to go on: say what it is.")],
            ),
            (
                "long criteria to go on",
                with(|p| p.phases[1].proceed_criteria = "c".repeat(TEXT_MAX + 1)),
                vec![(
                    "phases",
                    "Phase 2, criteria to go on: at most 4000 characters.",
                )],
            ),
            (
                "empty criteria to abort",
                with(|p| p.phases[0].abort_criteria = "\n".into()),
                vec![("phases", "Phase 1, criteria to abort: say what it is.")],
            ),
            (
                "criteria to abort with a control character",
                with(|p| p.phases[0].abort_criteria = "stop\u{7f}".into()),
                vec![(
                    "phases",
                    "Phase 1, criteria to abort: Contains U+007F DELETE, a control character that cannot be stored; remove it.",
                )],
            ),
            (
                "empty rollback triggers",
                with(|p| p.rollback.triggers = String::new()),
                vec![("rollback_triggers", "Rollback triggers: say what it is.")],
            ),
            (
                "long rollback triggers",
                with(|p| p.rollback.triggers = "t".repeat(TEXT_MAX + 1)),
                vec![(
                    "rollback_triggers",
                    "Rollback triggers: at most 4000 characters.",
                )],
            ),
            (
                "empty rollback steps",
                with(|p| p.rollback.steps = " ".into()),
                vec![("rollback_steps", "Rollback steps: say what it is.")],
            ),
            (
                "rollback steps with a control character",
                with(|p| p.rollback.steps = "undo\u{8}".into()),
                vec![(
                    "rollback_steps",
                    "Rollback steps: Contains U+0008 BACKSPACE, a control character that cannot be stored; remove it.",
                )],
            ),
            (
                "rollback of no minutes",
                with(|p| p.rollback.max_minutes = 0),
                vec![(
                    "rollback_max_minutes",
                    "The longest the rollback may take: 1 to 10080 minutes.",
                )],
            ),
            (
                "rollback too long",
                with(|p| p.rollback.max_minutes = ROLLBACK_MAX_MINUTES + 1),
                vec![(
                    "rollback_max_minutes",
                    "The longest the rollback may take: 1 to 10080 minutes.",
                )],
            ),
            (
                "irreversible without its steps",
                with(|p| p.rollback.irreversible = true),
                vec![("irreversible_steps", "Irreversible steps: say what it is.")],
            ),
            (
                "irreversible steps too long",
                with(|p| {
                    p.rollback.irreversible = true;
                    p.rollback.irreversible_steps = "s".repeat(TEXT_MAX + 1);
                }),
                vec![(
                    "irreversible_steps",
                    "Irreversible steps: at most 4000 characters.",
                )],
            ),
            (
                "irreversible steps without irreversible",
                with(|p| p.rollback.irreversible_steps = "Drops a column.".into()),
                vec![(
                    "irreversible_steps",
                    "Irreversible steps are named only when some step is irreversible; tick that box, or leave this empty.",
                )],
            ),
            (
                "communication without an audience",
                with(|p| p.communications[0].audience = String::new()),
                vec![(
                    "communications",
                    "Communication 1, audience: say what it is.",
                )],
            ),
            (
                "communication with a long channel",
                with(|p| {
                    p.communications.push(communication("Customers"));
                    p.communications[1].channel = "c".repeat(SHORT_MAX + 1);
                }),
                vec![(
                    "communications",
                    "Communication 2, channel: at most 200 characters.",
                )],
            ),
            (
                "communication with a long audience",
                with(|p| p.communications[0].audience = "a".repeat(SHORT_MAX + 1)),
                vec![(
                    "communications",
                    "Communication 1, audience: at most 200 characters.",
                )],
            ),
            (
                "communication message with a control character",
                with(|p| p.communications[0].message = "Starts\u{1}".into()),
                vec![(
                    "communications",
                    "Communication 1, message: Contains U+0001 START OF HEADING, a control character that cannot be stored; remove it.",
                )],
            ),
            (
                "communication with a long message",
                with(|p| p.communications[0].message = "m".repeat(TEXT_MAX + 1)),
                vec![(
                    "communications",
                    "Communication 1, message: at most 4000 characters.",
                )],
            ),
            (
                "too many communications",
                with(|p| p.communications = vec![communication("Support"); MAX_COMMUNICATIONS + 1]),
                vec![("communications", "At most 10 communications.")],
            ),
        ];
        for (what, p, expected) in cases {
            let expected: Vec<(&str, String)> = expected
                .into_iter()
                .map(|(f, m)| (f, m.to_string()))
                .collect();
            assert_eq!(errors(&p), expected, "{what}");
        }
    }

    #[test]
    fn every_fault_is_reported_at_once_in_form_order() {
        let p = with(|p| {
            p.name = String::new();
            p.version = "?".into();
            p.milestones.code_freeze = at(31, 0, 0);
            p.milestones.go_no_go = at(30, 0, 0);
            p.milestones.deployment = at(29, 0, 0);
            p.milestones.hypercare_end = at(28, 0, 0);
            p.test_strategy.levels.clear();
            p.test_strategy.entry_criteria.clear();
            p.test_strategy.exit_criteria.clear();
            p.test_strategy.evidence = vec!["x".into()];
            p.phases = vec![phase("prod", "", SOAK_MAX_MINUTES + 1)];
            p.rollback.triggers.clear();
            p.rollback.steps.clear();
            p.rollback.max_minutes = 0;
            p.rollback.irreversible = true;
            p.communications = vec![Communication {
                audience: String::new(),
                channel: String::new(),
                when: at(1, 0, 0),
                message: String::new(),
            }];
        });
        assert_eq!(
            error_fields(&p),
            vec![
                "name",
                "version",
                "go_no_go",
                "deployment",
                "hypercare_end",
                "test_levels",
                "entry_criteria",
                "exit_criteria",
                "evidence",
                "phases",
                "phases",
                "rollback_triggers",
                "rollback_steps",
                "rollback_max_minutes",
                "irreversible_steps",
                "communications",
                "communications",
                "communications",
            ]
        );
        // Too many communications, one of them faulty: both are said.
        let p = with(|p| {
            p.communications = vec![communication("Support"); MAX_COMMUNICATIONS + 1];
            p.communications[3].channel.clear();
        });
        assert_eq!(
            errors(&p),
            vec![
                ("communications", "At most 10 communications.".to_string()),
                (
                    "communications",
                    "Communication 4, channel: say what it is.".to_string()
                ),
            ]
        );
    }

    #[test]
    fn phases_follow_the_promotion_order_and_may_share_an_environment() {
        let envs = |keys: &[&str]| {
            let p = with(|p| {
                p.phases = keys.iter().map(|k| phase(k, "all", 0)).collect();
            });
            errors(&p)
                .into_iter()
                .map(|(_, m)| m.split(':').next().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        };
        let none: Vec<String> = vec![];
        assert_eq!(envs(&["dev", "test", "stage", "prod"]), none);
        assert_eq!(envs(&["prod", "prod", "prod"]), none);
        assert_eq!(envs(&["dev", "dev", "prod", "prod"]), none);
        assert_eq!(envs(&["stage", "prod"]), none, "a phase may skip a level");
        assert_eq!(envs(&["prod", "test"]), vec!["Phase 2"]);
        assert_eq!(envs(&["test", "dev"]), vec!["Phase 2"]);
        // The phase out of order does not lower the bar for the ones after it.
        assert_eq!(envs(&["prod", "dev", "test"]), vec!["Phase 2", "Phase 3"]);
        // An unknown environment neither moves the bar nor hides what follows.
        assert_eq!(envs(&["stage", "uat", "test"]), vec!["Phase 2", "Phase 3"]);
        assert_eq!(envs(&["uat", "dev"]), vec!["Phase 1"]);
        // Each phase is checked on its own: every fault of every phase.
        let p = with(|p| {
            p.phases = vec![
                Phase {
                    environment: "mars".into(),
                    target: String::new(),
                    soak_minutes: SOAK_MAX_MINUTES + 1,
                    proceed_criteria: String::new(),
                    abort_criteria: String::new(),
                },
                phase("dev", "x", 0),
            ];
        });
        assert_eq!(
            errors(&p).into_iter().map(|(_, m)| m).collect::<Vec<_>>(),
            vec![
                "Phase 1: choose one of the environments.",
                "Phase 1: a soak time of at most 43200 minutes (30 days).",
                "Phase 1, target: say what it is.",
                "Phase 1, criteria to go on: say what it is.",
                "Phase 1, criteria to abort: say what it is.",
            ]
        );
    }

    #[test]
    fn environments_are_the_ones_given() {
        let mut envs = default_environments();
        envs.retain(|e| e.key != "test");
        let p = plan();
        let found: Vec<String> = p.validate(&envs).into_iter().map(|e| e.message).collect();
        assert_eq!(found, vec!["Phase 1: choose one of the environments."]);
        // A custom order: ranks decide, not the list's order nor the names.
        let mut envs = default_environments();
        envs.reverse();
        for e in &mut envs {
            e.rank = -e.rank;
        }
        let p = with(|p| p.phases = vec![phase("prod", "all", 0), phase("dev", "all", 0)]);
        assert_eq!(p.validate(&envs), vec![]);
        let p = with(|p| p.phases = vec![phase("dev", "all", 0), phase("prod", "all", 0)]);
        let found: Vec<String> = p.validate(&envs).into_iter().map(|e| e.message).collect();
        assert_eq!(
            found,
            vec![
                "Phase 2: PROD comes before the phase above it in the promotion order; phases go DEV → TEST → STAGE → PROD."
            ]
        );
    }

    #[test]
    fn names_are_counted_in_characters() {
        let p = with(|p| p.name = "é".repeat(NAME_MAX));
        assert_eq!(errors(&p), vec![]);
        let p = with(|p| p.version = format!("{}é", "1".repeat(VERSION_MAX - 1)));
        assert_eq!(error_fields(&p), vec!["version"]);
        let p = with(|p| p.phases[0].target = "é".repeat(SHORT_MAX));
        assert_eq!(errors(&p), vec![]);
    }

    // ---- fields and diff ----

    #[test]
    fn a_plan_reads_as_one_line_per_field_phase_and_communication() {
        let proceed = "go on: Error rate below 0.1%. · abort: Error rate above 1%.";
        let expected: Vec<(String, String)> = [
            ("name", "December platform release".to_string()),
            ("version", "2026.12.1".into()),
            ("code_freeze", "2026-12-01T09:00:00.000000Z".into()),
            ("go_no_go", "2026-12-03T15:00:00.000000Z".into()),
            ("deployment", "2026-12-05T22:00:00.000000Z".into()),
            ("hypercare_end", "2026-12-12T17:00:00.000000Z".into()),
            ("test_levels", "Unit, Integration".into()),
            ("entry_criteria", "Every change approved and merged.".into()),
            ("exit_criteria", "No open severity 1 defects.".into()),
            (
                "evidence",
                "https://ci.example.com/runs/42\nhttps://reports.example.com/perf/7".into(),
            ),
            ("phase 1", format!("test · all of TEST · soak 0 min · {proceed}")),
            (
                "phase 2",
                format!("prod · 10% of traffic · soak 60 min · {proceed}"),
            ),
            ("phase 3", format!("prod · all of PROD · soak 120 min · {proceed}")),
            ("rollback_triggers", "Error rate above 1% for 5 minutes.".into()),
            ("rollback_steps", "Redeploy the previous artifact.".into()),
            ("rollback_max_minutes", "30".into()),
            ("irreversible_steps", "none".into()),
            (
                "communication 1",
                "Support · #support · 2026-12-05T21:00:00.000000Z · PROD deployment starts at 22:00."
                    .into(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(plan().fields(), expected);
        // No phase still reads as an empty first phase; no communication
        // as none; irreversible steps as themselves.
        let p = with(|p| {
            p.phases.clear();
            p.communications.clear();
            p.test_strategy.levels = vec![TestLevel::Acceptance];
            p.test_strategy.evidence.clear();
            p.rollback.irreversible = true;
            p.rollback.irreversible_steps = "Drops the legacy column.".into();
        });
        let fields = p.fields();
        let get = |k: &str| fields.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
        assert_eq!(get("phase 1"), Some(""));
        assert_eq!(get("phase 2"), None);
        assert_eq!(get("communication 1"), None);
        assert_eq!(get("test_levels"), Some("User acceptance"));
        assert_eq!(get("evidence"), Some(""));
        assert_eq!(get("irreversible_steps"), Some("Drops the legacy column."));
        assert_eq!(fields.len(), expected.len() - 3);
    }

    fn scope(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    fn change(field: &str, before: &str, after: &str) -> FieldChange {
        FieldChange {
            field: field.into(),
            before: before.into(),
            after: after.into(),
        }
    }

    #[test]
    fn equal_plans_and_scopes_differ_in_nothing() {
        let s = scope(&["CHG-101", "CHG-102"]);
        assert_eq!(diff(&plan(), &plan(), &s, &s), vec![]);
        assert_eq!(diff(&plan(), &plan(), &[], &[]), vec![]);
        let bare = with(|p| {
            p.phases.clear();
            p.communications.clear();
        });
        assert_eq!(diff(&bare, &bare, &s, &s), vec![]);
    }

    #[test]
    fn each_changed_field_is_one_entry() {
        let s = scope(&["CHG-101"]);
        let cases: Vec<(ReleasePlan, &str)> = vec![
            (with(|p| p.name = "January release".into()), "name"),
            (with(|p| p.version = "2026.12.2".into()), "version"),
            (
                with(|p| p.milestones.code_freeze = at(2, 9, 0)),
                "code_freeze",
            ),
            (with(|p| p.milestones.go_no_go = at(3, 16, 0)), "go_no_go"),
            (
                with(|p| p.milestones.deployment = at(5, 23, 0)),
                "deployment",
            ),
            (
                with(|p| p.milestones.hypercare_end = at(13, 17, 0)),
                "hypercare_end",
            ),
            (
                with(|p| p.test_strategy.levels.push(TestLevel::Security)),
                "test_levels",
            ),
            (
                with(|p| p.test_strategy.entry_criteria.push('!')),
                "entry_criteria",
            ),
            (
                with(|p| p.test_strategy.exit_criteria.push('!')),
                "exit_criteria",
            ),
            (
                with(|p| p.test_strategy.evidence.pop().map(drop).unwrap_or_default()),
                "evidence",
            ),
            (
                with(|p| p.phases[1].target = "20% of traffic".into()),
                "phase 2",
            ),
            (with(|p| p.phases[2].soak_minutes = 240), "phase 3"),
            (with(|p| p.phases[0].environment = "dev".into()), "phase 1"),
            (
                with(|p| p.phases[0].proceed_criteria = "Smoke tests pass.".into()),
                "phase 1",
            ),
            (
                with(|p| p.phases[0].abort_criteria = "Smoke tests fail.".into()),
                "phase 1",
            ),
            (
                with(|p| p.rollback.triggers = "Any alert.".into()),
                "rollback_triggers",
            ),
            (
                with(|p| p.rollback.steps = "Flip the flag.".into()),
                "rollback_steps",
            ),
            (
                with(|p| p.rollback.max_minutes = 31),
                "rollback_max_minutes",
            ),
            (
                with(|p| {
                    p.rollback.irreversible = true;
                    p.rollback.irreversible_steps = "Drops a column.".into();
                }),
                "irreversible_steps",
            ),
            (
                with(|p| p.communications[0].channel = "email".into()),
                "communication 1",
            ),
            (
                with(|p| p.communications[0].when = at(5, 20, 0)),
                "communication 1",
            ),
        ];
        for (after, field) in cases {
            let found = diff(&plan(), &after, &s, &s);
            assert_eq!(
                found.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(),
                vec![field]
            );
            let before_value = plan()
                .fields()
                .into_iter()
                .find(|(k, _)| k == field)
                .map(|(_, v)| v);
            let after_value = after
                .fields()
                .into_iter()
                .find(|(k, _)| k == field)
                .map(|(_, v)| v);
            assert_eq!(Some(found[0].before.clone()), before_value, "{field}");
            assert_eq!(Some(found[0].after.clone()), after_value, "{field}");
        }
        let found = diff(
            &plan(),
            &with(|p| {
                p.name = "January release".into();
                p.rollback.max_minutes = 45;
            }),
            &s,
            &s,
        );
        assert_eq!(
            found,
            vec![
                change("name", "December platform release", "January release"),
                change("rollback_max_minutes", "30", "45"),
            ]
        );
        // An irreversible step ticked on and named: from none to the step.
        let found = diff(
            &plan(),
            &with(|p| {
                p.rollback.irreversible = true;
                p.rollback.irreversible_steps = "Drops a column.".into();
            }),
            &s,
            &s,
        );
        assert_eq!(
            found,
            vec![change("irreversible_steps", "none", "Drops a column.")]
        );
    }

    #[test]
    fn an_added_or_dropped_phase_or_communication_compares_with_nothing() {
        let s = scope(&["CHG-101"]);
        let line = "stage · all of STAGE · soak 0 min · go on: Error rate below 0.1%. · abort: Error rate above 1%.";
        let four = with(|p| p.phases.push(phase("stage", "all of STAGE", 0)));
        assert_eq!(
            diff(&plan(), &four, &s, &s),
            vec![change("phase 4", "", line)]
        );
        assert_eq!(
            diff(&four, &plan(), &s, &s),
            vec![change("phase 4", line, "")]
        );
        let silent = with(|p| p.communications.clear());
        let said =
            "Support · #support · 2026-12-05T21:00:00.000000Z · PROD deployment starts at 22:00.";
        assert_eq!(
            diff(&plan(), &silent, &s, &s),
            vec![change("communication 1", said, "")]
        );
        assert_eq!(
            diff(&silent, &plan(), &s, &s),
            vec![change("communication 1", "", said)]
        );
        // From no phase to one: the empty first phase is the one compared.
        let none = with(|p| p.phases.clear());
        let one = with(|p| p.phases.truncate(1));
        let first = "test · all of TEST · soak 0 min · go on: Error rate below 0.1%. · abort: Error rate above 1%.";
        assert_eq!(
            diff(&none, &one, &s, &s),
            vec![change("phase 1", "", first)]
        );
        // Both ways at once: every line on either side is compared once.
        let mixed = with(|p| {
            p.phases.truncate(2);
            p.communications.push(communication("Customers"));
        });
        let found: Vec<String> = diff(&plan(), &mixed, &s, &s)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(found, vec!["phase 3", "communication 2"]);
    }

    #[test]
    fn a_scope_change_is_one_entry_of_change_numbers() {
        let before = scope(&["CHG-101", "CHG-102"]);
        let after = scope(&["CHG-101", "CHG-103", "CHG-104"]);
        assert_eq!(
            diff(&plan(), &plan(), &before, &after),
            vec![change(
                "scope",
                "CHG-101, CHG-102",
                "CHG-101, CHG-103, CHG-104"
            )]
        );
        assert_eq!(
            diff(&plan(), &plan(), &[], &before),
            vec![change("scope", "", "CHG-101, CHG-102")]
        );
        // Plan and scope both: the plan's lines first, then the scope.
        let found = diff(&plan(), &with(|p| p.version = "2".into()), &before, &after);
        assert_eq!(
            found.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(),
            vec!["version", "scope"]
        );
    }

    // ---- who plans, and when ----

    #[test]
    fn only_release_managers_and_administrators_plan_releases() {
        use Role::*;
        let cases: Vec<(Vec<Role>, bool, Result<(), &str>)> = vec![
            (vec![ReleaseManager], false, Ok(())),
            (vec![Admin], false, Ok(())),
            (vec![ReleaseManager, Admin], false, Ok(())),
            (vec![Engineer, ReleaseManager], false, Ok(())),
            (vec![Engineer], false, Err("release_manager_required")),
            (vec![CabMember], false, Err("release_manager_required")),
            (
                vec![SecurityReviewer, Auditor],
                false,
                Err("release_manager_required"),
            ),
            (vec![], false, Err("release_manager_required")),
            (vec![ReleaseManager], true, Err("release_manager_required")),
            (vec![Admin], true, Err("release_manager_required")),
        ];
        for (roles, service, expected) in cases {
            let got = check_plan(&actor(9, &roles, service));
            assert_eq!(code(got.clone()), expected, "{roles:?} service={service}");
            if let Err(d) = got {
                assert_eq!(
                    d.message,
                    "Only release managers and administrators plan and run releases."
                );
            }
        }
    }

    #[test]
    fn edits_by_state() {
        use ReleaseState::*;
        let cases: Vec<(ReleaseState, Result<ReleaseState, &str>)> = vec![
            (Draft, Ok(Draft)),
            (InReview, Ok(InReview)),
            (Approved, Ok(InReview)),
            (InProgress, Err("release_in_progress")),
            (Completed, Err("release_closed")),
            (Cancelled, Err("release_closed")),
        ];
        let admin = actor(8, &[Role::Admin], false);
        for (state, expected) in cases {
            assert_eq!(code(check_edit(&manager(), state)), expected, "{state:?}");
            assert_eq!(code(check_edit(&admin, state)), expected, "{state:?}");
            assert_eq!(
                code(check_edit(&engineer(), state)),
                Err("release_manager_required"),
                "{state:?}"
            );
        }
        let d = check_edit(&manager(), Completed).unwrap_err();
        assert_eq!(
            d.message,
            "This release is completed; nothing more happens to it."
        );
        let d = check_edit(&manager(), Cancelled).unwrap_err();
        assert_eq!(
            d.message,
            "This release is cancelled; nothing more happens to it."
        );
        let d = check_edit(&manager(), InProgress).unwrap_err();
        assert!(
            d.message.contains("roll back a phase or cancel"),
            "{}",
            d.message
        );
    }

    #[test]
    fn a_draft_with_a_scope_goes_to_review() {
        use ReleaseState::*;
        assert_eq!(check_submit(&manager(), &facts(Draft)), Ok(InReview));
        let admin = actor(8, &[Role::Admin], false);
        assert_eq!(check_submit(&admin, &facts(Draft)), Ok(InReview));
        for state in [InReview, Approved, InProgress, Completed, Cancelled] {
            let d = check_submit(&manager(), &facts(state)).unwrap_err();
            assert_eq!(d.code, "not_draft", "{state:?}");
            assert_eq!(
                d.message,
                format!(
                    "This release is {}; only a draft is submitted for review.",
                    state.label().to_lowercase()
                )
            );
        }
        let mut empty = facts(Draft);
        empty.scope.clear();
        assert_eq!(code(check_submit(&manager(), &empty)), Err("empty_scope"));
        // The role is checked first, the state before the scope.
        assert_eq!(
            code(check_submit(&engineer(), &facts(Draft))),
            Err("release_manager_required")
        );
        let mut empty_review = facts(InReview);
        empty_review.scope.clear();
        assert_eq!(
            code(check_submit(&manager(), &empty_review)),
            Err("not_draft")
        );
        // Whatever state the changes are in.
        let mut unapproved = facts(Draft);
        unapproved.scope = vec![scoped(7, ChangeDraft, Low)];
        assert_eq!(check_submit(&manager(), &unapproved), Ok(InReview));
    }

    // ---- the go/no-go ----

    #[test]
    fn who_votes_on_a_release_in_order() {
        use ReleaseState::*;
        use Role::*;
        // (who, roles, service, state, expected)
        let cases: Vec<(u128, Vec<Role>, bool, ReleaseState, Result<(), &str>)> = vec![
            (MEMBER, vec![CabMember], false, InReview, Ok(())),
            (
                MEMBER,
                vec![CabMember, ReleaseManager],
                false,
                InReview,
                Ok(()),
            ),
            (
                MEMBER,
                vec![CabMember],
                true,
                InReview,
                Err("service_account"),
            ),
            (
                PLANNER,
                vec![CabMember],
                true,
                Draft,
                Err("service_account"),
            ),
            (
                PLANNER,
                vec![CabMember, Admin],
                false,
                InReview,
                Err("self_approval"),
            ),
            (PLANNER, vec![Engineer], false, Draft, Err("self_approval")),
            (
                CHANGE_AUTHOR,
                vec![CabMember],
                false,
                InReview,
                Err("self_approval"),
            ),
            (
                CHANGE_AUTHOR,
                vec![],
                false,
                Completed,
                Err("self_approval"),
            ),
            (
                MEMBER,
                vec![Admin, ReleaseManager],
                false,
                InReview,
                Err("cab_member_required"),
            ),
            (
                MEMBER,
                vec![Engineer],
                false,
                Draft,
                Err("cab_member_required"),
            ),
            (
                MEMBER,
                vec![CabMember],
                false,
                Draft,
                Err("not_under_review"),
            ),
            (
                MEMBER,
                vec![CabMember],
                false,
                Approved,
                Err("not_under_review"),
            ),
            (
                MEMBER,
                vec![CabMember],
                false,
                InProgress,
                Err("not_under_review"),
            ),
            (
                MEMBER,
                vec![CabMember],
                false,
                Completed,
                Err("not_under_review"),
            ),
            (
                MEMBER,
                vec![CabMember],
                false,
                Cancelled,
                Err("not_under_review"),
            ),
        ];
        for (who, roles, service, state, expected) in cases {
            assert_eq!(
                code(check_vote(&facts(state), &actor(who, &roles, service))),
                expected,
                "actor {who} {roles:?} service={service} {state:?}"
            );
        }
        let member = actor(MEMBER, &[CabMember], false);
        let planner = actor(PLANNER, &[CabMember], false);
        let author = actor(CHANGE_AUTHOR, &[CabMember], false);
        let d = check_vote(&facts(InReview), &planner).unwrap_err();
        assert!(
            d.message.contains("wrote or edited this release plan"),
            "{}",
            d.message
        );
        let d = check_vote(&facts(InReview), &author).unwrap_err();
        assert!(
            d.message.contains("a change in this release"),
            "{}",
            d.message
        );
        let d = check_vote(&facts(Approved), &member).unwrap_err();
        assert_eq!(
            d.message,
            "This release is approved; it is not awaiting a go/no-go."
        );
        let d = check_vote(&facts(InReview), &actor(MEMBER, &[CabMember], true)).unwrap_err();
        assert!(d.message.contains("never vote"), "{}", d.message);
    }

    #[test]
    fn the_level_is_the_riskiest_changes() {
        assert_eq!(level(&[]), Low);
        assert_eq!(level(&[scoped(1, ChangeApproved, Medium)]), Medium);
        assert_eq!(
            level(&[
                scoped(1, ChangeApproved, Medium),
                scoped(2, ChangeApproved, Critical),
                scoped(3, ChangeApproved, Low),
            ]),
            Critical
        );
        assert_eq!(
            level(&[scoped(1, ChangeApproved, High), scoped(2, InCabReview, Low)]),
            High
        );
    }

    fn vote(n: u128, choice: VoteChoice) -> Ballot {
        Ballot {
            voter: id(n),
            choice,
            standing: Standing::Counts,
        }
    }

    fn approvals(voters: &[u128]) -> Vec<Ballot> {
        voters.iter().map(|n| vote(*n, Approve)).collect()
    }

    fn pending(needs: &[&str]) -> Decision {
        Decision::Pending {
            needs: needs.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn the_go_no_go_table() {
        let p = QuorumPolicy::default();
        let ok = |n, risk| scoped(n, ChangeApproved, risk);
        let rejected = Decision::Rejected {
            reason: "a CAB member rejected it".into(),
        };
        let cases: Vec<(&str, Vec<ScopeChange>, Vec<Ballot>, Decision)> = vec![
            (
                "low",
                vec![ok(101, Low)],
                approvals(&[11]),
                Decision::Approved,
            ),
            (
                "low, none yet",
                vec![ok(101, Low)],
                vec![],
                pending(&["1 more CAB approval"]),
            ),
            (
                "the riskiest change decides",
                vec![ok(101, Low), ok(102, Medium)],
                approvals(&[11]),
                pending(&["1 more CAB approval"]),
            ),
            (
                "medium",
                vec![ok(101, Low), ok(102, Medium)],
                approvals(&[11, 12]),
                Decision::Approved,
            ),
            (
                "high needs no assessment for the release",
                vec![ok(101, Medium), ok(102, High)],
                approvals(&[11, 12]),
                Decision::Approved,
            ),
            (
                "high, one short",
                vec![ok(101, High)],
                approvals(&[11]),
                pending(&["1 more CAB approval"]),
            ),
            (
                "critical",
                vec![ok(101, Critical), ok(102, Low)],
                approvals(&[11, 12]),
                pending(&["1 more CAB approval"]),
            ),
            (
                "critical, enough",
                vec![ok(101, Critical)],
                approvals(&[11, 12, 13]),
                Decision::Approved,
            ),
            (
                "critical, none",
                vec![ok(101, Critical)],
                vec![],
                pending(&["3 more CAB approvals"]),
            ),
            (
                "an empty scope is never approved",
                vec![],
                approvals(&[11, 12, 13]),
                pending(&["at least one change in scope"]),
            ),
            (
                "the same person twice counts once",
                vec![ok(101, Medium)],
                approvals(&[11, 11]),
                pending(&["1 more CAB approval"]),
            ),
            (
                "a planner's approval never counts",
                vec![ok(101, Low)],
                vec![Ballot {
                    standing: Standing::Author,
                    ..vote(PLANNER, Approve)
                }],
                pending(&["1 more CAB approval"]),
            ),
            (
                "a reject is a no-go",
                vec![ok(101, Low)],
                vec![vote(11, Approve), vote(12, Reject)],
                rejected.clone(),
            ),
            (
                "a reject is a no-go while changes wait",
                vec![ok(101, Low), scoped(102, InCabReview, Low)],
                vec![vote(11, Reject)],
                rejected.clone(),
            ),
            (
                "a request for changes",
                vec![ok(101, Medium)],
                vec![vote(11, Approve), vote(12, RequestChanges)],
                Decision::ChangesRequested,
            ),
            (
                "a request for changes while changes wait",
                vec![scoped(101, Submitted, Medium)],
                vec![vote(11, RequestChanges)],
                Decision::ChangesRequested,
            ),
            (
                "approved but for a change in review",
                vec![ok(101, Low), scoped(102, InCabReview, Medium)],
                approvals(&[11, 12]),
                pending(&["approval of every change in scope (CHG-102 not yet approved)"]),
            ),
            (
                "short of approvals and of approved changes",
                vec![
                    scoped(101, Submitted, Medium),
                    ok(102, Low),
                    scoped(103, ChangeDraft, Low),
                ],
                vec![],
                pending(&[
                    "2 more CAB approvals",
                    "approval of every change in scope (CHG-101, CHG-103 not yet approved)",
                ]),
            ),
            (
                "changes on their way out still carry their approval",
                vec![
                    scoped(101, Implementing, High),
                    scoped(102, Implemented, Low),
                    scoped(103, ImplementationFailed, Low),
                ],
                approvals(&[11, 12]),
                Decision::Approved,
            ),
        ];
        for (what, scope, ballots, expected) in cases {
            assert_eq!(decide(&p, &scope, &ballots), expected, "{what}");
        }
    }

    #[test]
    fn the_go_no_go_takes_the_policys_counts_without_assessments() {
        let rule = |approvals| LevelRule {
            approvals,
            assessment: true,
        };
        let p = QuorumPolicy {
            low: rule(2),
            medium: rule(3),
            high: rule(4),
            critical: rule(5),
            emergency: rule(1),
        };
        for (risk, needed) in [(Low, 2), (Medium, 3), (High, 4), (Critical, 5)] {
            let scope = vec![scoped(101, ChangeApproved, risk)];
            let enough: Vec<u128> = (1..=needed).map(|n| n + 10).collect();
            assert_eq!(
                decide(&p, &scope, &approvals(&enough)),
                Decision::Approved,
                "{risk:?}"
            );
            assert_eq!(
                decide(&p, &scope, &approvals(&enough[1..])),
                pending(&["1 more CAB approval"]),
                "{risk:?}"
            );
        }
    }

    #[test]
    fn decisions_lead_to_states() {
        assert_eq!(decided(&Decision::Approved), ReleaseState::Approved);
        assert_eq!(
            decided(&Decision::Rejected {
                reason: "no".into()
            }),
            ReleaseState::Draft
        );
        assert_eq!(decided(&Decision::ChangesRequested), ReleaseState::Draft);
        assert_eq!(
            decided(&pending(&["1 more CAB approval"])),
            ReleaseState::InReview
        );
    }

    #[test]
    fn planners_and_change_authors_never_count() {
        let release = facts(ReleaseState::InReview);
        for (who, standing, expected) in [
            (PLANNER, Standing::Counts, Standing::Author),
            (CHANGE_AUTHOR, Standing::Counts, Standing::Author),
            (PLANNER, Standing::Disabled, Standing::Author),
            (MEMBER, Standing::Counts, Standing::Counts),
            (MEMBER, Standing::Disabled, Standing::Disabled),
            (MEMBER, Standing::RoleWithdrawn, Standing::RoleWithdrawn),
        ] {
            let b = ballot(id(who), RequestChanges, standing, &release);
            assert_eq!(
                b,
                Ballot {
                    voter: id(who),
                    choice: RequestChanges,
                    standing: expected,
                },
                "{who} {standing:?}"
            );
        }
        assert_eq!(
            ballot(id(MEMBER), Reject, Standing::Counts, &release).choice,
            Reject
        );
    }

    #[test]
    fn approved_changes_are_those_carrying_an_approval_and_open_ones_may_join() {
        for state in ChangeState::ALL.iter().copied() {
            assert_eq!(
                change_is_approved(state),
                state.carries_approval(),
                "{state:?}"
            );
            assert_eq!(change_may_join(state), !state.is_closed(), "{state:?}");
        }
        assert!(change_is_approved(ChangeApproved) && change_is_approved(Implemented));
        assert!(!change_is_approved(InCabReview) && !change_is_approved(ChangeDraft));
        assert!(change_may_join(ChangeDraft) && change_may_join(Implemented));
        assert!(!change_may_join(ChangeState::Rejected));
        assert!(!change_may_join(ChangeState::Withdrawn));
        assert!(!change_may_join(ChangeState::Cancelled));
    }

    // ---- running a release ----

    #[test]
    fn an_approved_release_of_approved_changes_starts() {
        use ReleaseState::*;
        assert_eq!(check_start(&manager(), &facts(Approved)), Ok(()));
        assert_eq!(
            check_start(&actor(8, &[Role::Admin], false), &facts(Approved)),
            Ok(())
        );
        assert_eq!(
            code(check_start(&engineer(), &facts(Approved))),
            Err("release_manager_required")
        );
        for state in [Draft, InReview, InProgress, Completed, Cancelled] {
            let d = check_start(&manager(), &facts(state)).unwrap_err();
            assert_eq!(d.code, "not_approved", "{state:?}");
            assert_eq!(
                d.message,
                format!(
                    "This release is {}; only an approved release starts.",
                    state.label().to_lowercase()
                )
            );
        }
        let mut waiting = facts(Approved);
        waiting.scope.push(scoped(103, InCabReview, Low));
        waiting.scope.push(scoped(104, ChangeDraft, Low));
        let d = check_start(&manager(), &waiting).unwrap_err();
        assert_eq!(d.code, "scope_not_approved");
        assert_eq!(
            d.message,
            "Every change in the release must be approved before it starts; CHG-103, CHG-104 are not."
        );
        waiting.scope.retain(|c| c.key != "CHG-104");
        let d = check_start(&manager(), &waiting).unwrap_err();
        assert!(d.message.ends_with("; CHG-103 is not."), "{}", d.message);
        let mut empty = facts(Approved);
        empty.scope.clear();
        let d = check_start(&manager(), &empty).unwrap_err();
        assert_eq!(d.code, "empty_scope");
        let mut going = facts(Approved);
        going.scope = vec![
            scoped(101, Implementing, Low),
            scoped(102, Implemented, Low),
            scoped(103, ImplementationFailed, Low),
        ];
        assert_eq!(check_start(&manager(), &going), Ok(()));
    }

    fn deployed(change: u128, environment: &str, finished_at: DateTime<Utc>) -> PhaseDeployment {
        PhaseDeployment {
            change: id(change),
            environment: environment.into(),
            finished_at,
        }
    }

    #[test]
    fn a_phase_counts_the_latest_deployment_to_its_environment_since_it_opened() {
        let opened = at(7, 10, 0);
        let scope = vec![
            scoped(101, ChangeApproved, Low),
            scoped(102, ChangeApproved, Low),
            scoped(103, ChangeApproved, Low),
        ];
        let deployments = vec![
            deployed(101, "prod", at(7, 9, 59)),
            deployed(101, "prod", at(7, 10, 0)),
            deployed(101, "prod", at(7, 10, 20)),
            deployed(102, "stage", at(7, 10, 30)),
            deployed(999, "prod", at(7, 10, 30)),
            deployed(103, "prod", at(7, 10, 40)),
            deployed(101, "prod", at(7, 10, 5)),
        ];
        let p = phase("prod", "all", 0);
        assert_eq!(
            phase_deployments(&p, opened, &scope, &deployments),
            vec![
                ("CHG-101".to_string(), Some(&deployments[2])),
                ("CHG-102".to_string(), None),
                ("CHG-103".to_string(), Some(&deployments[5])),
            ]
        );
        // One that finished the moment the phase opened counts; one before
        // does not.
        let at_opening = vec![deployed(101, "prod", opened)];
        assert_eq!(
            phase_deployments(&p, opened, &scope[..1], &at_opening),
            vec![("CHG-101".to_string(), Some(&at_opening[0]))]
        );
        let before = vec![deployed(101, "prod", opened - Duration::seconds(1))];
        assert_eq!(
            phase_deployments(&p, opened, &scope[..1], &before),
            vec![("CHG-101".to_string(), None)]
        );
        assert_eq!(phase_deployments(&p, opened, &[], &deployments), vec![]);
    }

    /// In progress, phase 2 (10% of PROD, a 60-minute soak) open since 10:00
    /// on the 7th.
    fn running(current: usize) -> Progress {
        Progress {
            current: Some(current),
            opened_at: Some(at(7, 10, 0)),
            rolled_back: None,
        }
    }

    fn advance(
        actor: &Actor,
        release: &ReleaseFacts,
        progress: &Progress,
        deployments: &[PhaseDeployment],
        now: DateTime<Utc>,
    ) -> Result<Advance, Vec<(&'static str, String)>> {
        check_advance(actor, release, &plan(), progress, deployments, now)
            .map_err(|ds| ds.into_iter().map(|d| (d.code, d.message)).collect())
    }

    fn refused(code: &'static str, message: &str) -> Result<Advance, Vec<(&'static str, String)>> {
        Err(vec![(code, message.to_string())])
    }

    #[test]
    fn a_phase_advances_once_every_change_deployed_and_soaked() {
        let release = facts(ReleaseState::InProgress);
        let both = vec![
            deployed(101, "prod", at(7, 10, 30)),
            deployed(102, "prod", at(7, 11, 0)),
        ];
        let m = manager();
        // The soak runs from the last deployment: 11:00 + 60 minutes.
        assert_eq!(
            advance(&m, &release, &running(1), &both, at(7, 12, 0)),
            Ok(Advance::Open(2)),
            "the soak's end exactly"
        );
        assert_eq!(
            advance(&m, &release, &running(1), &both, at(8, 0, 0)),
            Ok(Advance::Open(2))
        );
        let admin = actor(8, &[Role::Admin], false);
        assert_eq!(
            advance(&admin, &release, &running(1), &both, at(7, 12, 0)),
            Ok(Advance::Open(2))
        );
        assert_eq!(
            advance(
                &m,
                &release,
                &running(1),
                &both,
                at(7, 12, 0) - Duration::seconds(1)
            ),
            refused(
                "soak_not_over",
                "Phase 2 soaks until 2026-12-07T12:00:00.000000Z (1 more minute)."
            )
        );
        assert_eq!(
            advance(
                &m,
                &release,
                &running(1),
                &both,
                at(7, 11, 0) + Duration::seconds(30)
            ),
            refused(
                "soak_not_over",
                "Phase 2 soaks until 2026-12-07T12:00:00.000000Z (60 more minutes)."
            )
        );
        assert_eq!(
            advance(
                &m,
                &release,
                &running(1),
                &both,
                at(7, 11, 57) + Duration::seconds(30)
            ),
            refused(
                "soak_not_over",
                "Phase 2 soaks until 2026-12-07T12:00:00.000000Z (3 more minutes)."
            )
        );
        // The last phase completes the release; the first opens the second.
        let last = vec![
            deployed(101, "prod", at(7, 10, 30)),
            deployed(102, "prod", at(7, 10, 0)),
        ];
        assert_eq!(
            advance(&m, &release, &running(2), &last, at(7, 12, 30)),
            Ok(Advance::Complete)
        );
        assert_eq!(
            advance(&m, &release, &running(2), &last, at(7, 12, 29)),
            refused(
                "soak_not_over",
                "Phase 3 soaks until 2026-12-07T12:30:00.000000Z (1 more minute)."
            ),
            "one whole minute left"
        );
        let test = vec![
            deployed(101, "test", at(7, 10, 1)),
            deployed(102, "test", at(7, 10, 2)),
        ];
        assert_eq!(
            advance(&m, &release, &running(0), &test, at(7, 10, 2)),
            Ok(Advance::Open(1)),
            "no soak: at once"
        );
        // With nothing in scope, the soak runs from the phase's opening.
        let mut empty = release.clone();
        empty.scope.clear();
        assert_eq!(
            advance(&m, &empty, &running(1), &[], at(7, 11, 0)),
            Ok(Advance::Open(2))
        );
        assert_eq!(
            advance(
                &m,
                &empty,
                &running(1),
                &[],
                at(7, 10, 59) + Duration::seconds(30)
            ),
            refused(
                "soak_not_over",
                "Phase 2 soaks until 2026-12-07T11:00:00.000000Z (1 more minute)."
            )
        );
    }

    #[test]
    fn a_plan_turned_down_is_revised_before_it_goes_back() {
        assert_eq!(check_revised(false, 3), Ok(()));
        let d = check_revised(true, 3).unwrap_err();
        assert_eq!(d.code, "revise_first");
        assert!(d.message.contains("revision 3"), "{}", d.message);
    }

    #[test]
    fn a_phase_does_not_advance_until_every_change_is_deployed_there() {
        let release = facts(ReleaseState::InProgress);
        let m = manager();
        let later = at(9, 0, 0);
        assert_eq!(
            advance(&m, &release, &running(1), &[], later),
            refused(
                "phase_not_deployed",
                "Phase 2 has not deployed CHG-101, CHG-102 yet."
            )
        );
        let one = vec![deployed(101, "prod", at(7, 10, 30))];
        assert_eq!(
            advance(&m, &release, &running(1), &one, later),
            refused(
                "phase_not_deployed",
                "Phase 2 has not deployed CHG-102 yet."
            )
        );
        // To another environment, before the phase opened, or another
        // change: none counts.
        let elsewhere = vec![
            deployed(101, "prod", at(7, 10, 30)),
            deployed(102, "stage", at(7, 10, 30)),
        ];
        assert_eq!(
            advance(&m, &release, &running(1), &elsewhere, later),
            refused(
                "phase_not_deployed",
                "Phase 2 has not deployed CHG-102 yet."
            )
        );
        let early = vec![
            deployed(101, "prod", at(7, 9, 59)),
            deployed(102, "prod", at(7, 10, 30)),
        ];
        assert_eq!(
            advance(&m, &release, &running(1), &early, later),
            refused(
                "phase_not_deployed",
                "Phase 2 has not deployed CHG-101 yet."
            )
        );
        let other = vec![
            deployed(101, "prod", at(7, 10, 30)),
            deployed(103, "prod", at(7, 10, 30)),
        ];
        assert_eq!(
            advance(&m, &release, &running(1), &other, later),
            refused(
                "phase_not_deployed",
                "Phase 2 has not deployed CHG-102 yet."
            )
        );
        // The first phase is TEST: PROD deployments do not count there.
        let prod = vec![
            deployed(101, "prod", at(7, 10, 30)),
            deployed(102, "prod", at(7, 10, 30)),
        ];
        assert_eq!(
            advance(&m, &release, &running(0), &prod, later),
            refused(
                "phase_not_deployed",
                "Phase 1 has not deployed CHG-101, CHG-102 yet."
            )
        );
    }

    #[test]
    fn phases_advance_only_while_a_release_runs() {
        use ReleaseState::*;
        let m = manager();
        let both = vec![
            deployed(101, "prod", at(7, 10, 30)),
            deployed(102, "prod", at(7, 11, 0)),
        ];
        let later = at(9, 0, 0);
        for state in [Draft, InReview, Approved, Completed, Cancelled] {
            assert_eq!(
                advance(&m, &facts(state), &running(1), &both, later),
                refused(
                    "not_in_progress",
                    &format!(
                        "This release is {}; phases advance only while it is in progress.",
                        state.label().to_lowercase()
                    )
                ),
                "{state:?}"
            );
        }
        let release = facts(InProgress);
        assert_eq!(
            advance(&engineer(), &release, &running(1), &both, later),
            refused(
                "release_manager_required",
                "Only release managers and administrators plan and run releases."
            )
        );
        let rolled = Progress {
            rolled_back: Some(1),
            ..running(1)
        };
        assert_eq!(
            advance(&m, &release, &rolled, &both, later),
            refused(
                "phase_rolled_back",
                "Phase 2 was rolled back, so the phases after it do not open; revise the plan in a new release or cancel this one."
            )
        );
        let none_open = "No phase of this release is open.";
        for progress in [
            Progress {
                current: None,
                opened_at: None,
                rolled_back: None,
            },
            Progress {
                current: None,
                ..running(1)
            },
            Progress {
                opened_at: None,
                ..running(1)
            },
            running(3),
        ] {
            assert_eq!(
                advance(&m, &release, &progress, &both, later),
                refused("not_in_progress", none_open),
                "{progress:?}"
            );
        }
    }

    #[test]
    fn the_open_phase_is_rolled_back_once() {
        use ReleaseState::*;
        let m = manager();
        assert_eq!(check_rollback(&m, &facts(InProgress), &running(1)), Ok(1));
        assert_eq!(check_rollback(&m, &facts(InProgress), &running(0)), Ok(0));
        assert_eq!(
            code(check_rollback(&engineer(), &facts(InProgress), &running(1))),
            Err("release_manager_required")
        );
        for state in [Draft, InReview, Approved, Completed, Cancelled] {
            let d = check_rollback(&m, &facts(state), &running(1)).unwrap_err();
            assert_eq!(d.code, "not_in_progress", "{state:?}");
            assert_eq!(
                d.message,
                format!(
                    "This release is {}; only a phase of a release in progress is rolled back.",
                    state.label().to_lowercase()
                )
            );
        }
        let rolled = Progress {
            rolled_back: Some(0),
            ..running(1)
        };
        let d = check_rollback(&m, &facts(InProgress), &rolled).unwrap_err();
        assert_eq!(d.code, "phase_rolled_back");
        assert_eq!(d.message, "Phase 1 has been rolled back already.");
        let none = Progress {
            current: None,
            opened_at: None,
            rolled_back: None,
        };
        let d = check_rollback(&m, &facts(InProgress), &none).unwrap_err();
        assert_eq!(
            (d.code, d.message.as_str()),
            ("not_in_progress", "No phase of this release is open.")
        );
    }

    #[test]
    fn a_release_is_cancelled_until_it_is_over() {
        use ReleaseState::*;
        for (state, expected) in [
            (Draft, Ok(())),
            (InReview, Ok(())),
            (Approved, Ok(())),
            (InProgress, Ok(())),
            (Completed, Err("release_closed")),
            (Cancelled, Err("release_closed")),
        ] {
            assert_eq!(code(check_cancel(&manager(), state)), expected, "{state:?}");
            assert_eq!(
                code(check_cancel(&engineer(), state)),
                Err("release_manager_required"),
                "{state:?}"
            );
        }
        assert_eq!(
            check_cancel(&manager(), Completed).unwrap_err().message,
            "This release is completed; nothing more happens to it."
        );
    }

    #[test]
    fn a_reason_takes_a_few_words_and_no_control_characters() {
        let cases: Vec<(String, Result<(), &str>)> = vec![
            ("abcde".into(), Ok(())),
            ("Fixes the rollout.".into(), Ok(())),
            ("line one\nline two\ttabbed".into(), Ok(())),
            ("r".repeat(REASON_MAX), Ok(())),
            (format!("  {}  ", "r".repeat(REASON_MAX)), Ok(())),
            ("é".repeat(REASON_MAX), Ok(())),
            ("abcd".into(), Err("Give the reason in a few words.")),
            ("   abcd   ".into(), Err("Give the reason in a few words.")),
            (String::new(), Err("Give the reason in a few words.")),
            ("r".repeat(REASON_MAX + 1), Err("At most 500 characters.")),
            ("é".repeat(REASON_MAX + 1), Err("At most 500 characters.")),
            (
                "Because\u{1b}[2J".into(),
                Err(
                    "Contains U+001B ESCAPE, a control character that cannot be stored; remove it.",
                ),
            ),
        ];
        for (reason, expected) in cases {
            let got = check_reason("rollback_reason", &reason);
            assert_eq!(
                got.clone().map_err(|e| e.message),
                expected.map_err(String::from),
                "{reason:?}"
            );
            if let Err(e) = got {
                assert_eq!(e.field, "rollback_reason");
            }
        }
        assert_eq!(check_reason("reason", "x").unwrap_err().field, "reason");
    }

    // ---- the deployment gate ----

    #[test]
    fn the_release_gates_the_environments_of_its_phases() {
        use ReleaseState::*;
        let not_started = "This change goes out with release R1, which has not started; its PROD phase opens when the release manager starts it and advances to it. To deploy the change by itself, take it out of the release first.";
        let prog = |current: Option<usize>, rolled_back: Option<usize>| Progress {
            current,
            opened_at: Some(at(7, 10, 0)),
            rolled_back,
        };
        let waiting = |open: usize| {
            Some((
                "release_phase_not_open",
                format!(
                    "This change goes out with release R1, whose PROD phase is not open (phase {open} is)."
                ),
            ))
        };
        let rolled = |phase: usize| {
            Some((
                "release_rolled_back",
                format!("Release R1 rolled back phase {phase}, so it deploys nothing more."),
            ))
        };
        // (state, progress, environment, expected)
        let cases: Vec<(ReleaseState, Progress, &str, Option<(&str, String)>)> = vec![
            // No phase there: nothing to add, whatever the state.
            (Approved, prog(None, None), "stage", None),
            (InProgress, prog(Some(0), None), "stage", None),
            (InProgress, prog(Some(0), Some(0)), "stage", None),
            (InProgress, prog(Some(0), None), "dev", None),
            // Approved, not started: every phased environment waits.
            (
                Approved,
                prog(None, None),
                "prod",
                Some(("release_phase_not_open", not_started.into())),
            ),
            (
                Approved,
                prog(Some(2), None),
                "prod",
                Some(("release_phase_not_open", not_started.into())),
            ),
            // In progress: before the environment's first phase, wait.
            (InProgress, prog(Some(0), None), "prod", waiting(1)),
            (InProgress, prog(None, None), "prod", waiting(1)),
            // At or after it, the release adds nothing.
            (InProgress, prog(Some(1), None), "prod", None),
            (InProgress, prog(Some(2), None), "prod", None),
            (InProgress, prog(Some(0), None), "test", None),
            (InProgress, prog(None, None), "test", None),
            (InProgress, prog(Some(2), None), "test", None),
            // Rolled back: nothing more, anywhere it phases.
            (InProgress, prog(Some(1), Some(1)), "prod", rolled(2)),
            (InProgress, prog(Some(2), Some(2)), "test", rolled(3)),
            (InProgress, prog(Some(0), Some(0)), "prod", rolled(1)),
            // Not yet approved: held all the same (an edit that sends the
            // plan back to review does not lift the rule); over: nothing.
            (
                Draft,
                prog(None, None),
                "prod",
                Some(("release_phase_not_open", not_started.into())),
            ),
            (
                InReview,
                prog(None, None),
                "prod",
                Some(("release_phase_not_open", not_started.into())),
            ),
            (Draft, prog(None, None), "dev", None),
            (Completed, prog(Some(2), None), "prod", None),
            (Cancelled, prog(Some(0), Some(0)), "prod", None),
            (Cancelled, prog(None, None), "test", None),
        ];
        for (state, progress, env, expected) in cases {
            let got = gate_rule("R1", state, &plan(), &progress, env, "PROD")
                .map(|d| (d.code, d.message));
            assert_eq!(got, expected, "{state:?} {progress:?} {env}");
        }
        // The environment's first phase decides, wherever it falls.
        let staged = with(|p| {
            p.phases = vec![
                phase("dev", "all", 0),
                phase("test", "all", 0),
                phase("stage", "half", 0),
                phase("stage", "all", 0),
            ];
        });
        for (current, refused) in [(0, true), (1, true), (2, false), (3, false)] {
            let got = gate_rule(
                "R1",
                InProgress,
                &staged,
                &prog(Some(current), None),
                "stage",
                "STAGE",
            );
            assert_eq!(got.is_some(), refused, "phase {current}");
        }
    }

    #[test]
    fn scope_moves_are_what_joined_and_what_left() {
        let ids = |ns: &[u128]| ns.iter().map(|n| id(*n)).collect::<Vec<_>>();
        assert_eq!(
            scope_moves(&ids(&[1, 2, 3]), &ids(&[5, 2, 3, 4, 4])),
            (ids(&[4, 5]), ids(&[1]))
        );
        assert_eq!(scope_moves(&ids(&[1, 2]), &ids(&[2, 1])), (vec![], vec![]));
        assert_eq!(scope_moves(&[], &ids(&[7])), (ids(&[7]), vec![]));
        assert_eq!(scope_moves(&ids(&[7, 8]), &[]), (vec![], ids(&[7, 8])));
        assert_eq!(scope_moves(&[], &[]), (vec![], vec![]));
    }
}
