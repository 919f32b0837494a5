//! Deployments: the environments a change is promoted through, the states a
//! deployment goes through, freezes, and the gate a pipeline asks before it
//! deploys. The gate names every reason it refuses, each with a stable code,
//! so a pipeline's log says all that stands in the way at once.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::approval::{Duty, check_duty};
use crate::change::{ChangeFacts, ChangeState, FieldError};
use crate::{Actor, Denial, Role, text};

vocabulary!(
    /// Where a deployment is: authorized → started → succeeded | failed;
    /// succeeded → rolled back; authorized → expired | aborted.
    DeploymentState {
        Authorized = "authorized" / "Authorized",
        Started = "started" / "Started",
        Succeeded = "succeeded" / "Succeeded",
        Failed = "failed" / "Failed",
        RolledBack = "rolled_back" / "Rolled back",
        Expired = "expired" / "Expired",
        Aborted = "aborted" / "Aborted",
    }
);

impl DeploymentState {
    /// Whether the deployment still holds its change and environment: a
    /// second one of the same change to the same environment waits for it.
    pub fn in_progress(self) -> bool {
        matches!(self, DeploymentState::Authorized | DeploymentState::Started)
    }

    /// The states it may go to next.
    pub fn next(self) -> &'static [DeploymentState] {
        use DeploymentState::*;
        match self {
            Authorized => &[Started, Expired, Aborted],
            Started => &[Succeeded, Failed],
            Succeeded => &[RolledBack],
            Failed | RolledBack | Expired | Aborted => &[],
        }
    }
}

/// Whether a deployment in `from` may go to `to`.
pub fn check_transition(from: DeploymentState, to: DeploymentState) -> Result<(), Denial> {
    if from.next().contains(&to) {
        Ok(())
    } else {
        Err(Denial::new(
            "invalid_transition",
            format!(
                "This deployment is {}; it cannot become {}.",
                from.label().to_lowercase(),
                to.label().to_lowercase()
            ),
        ))
    }
}

/// An environment and its rules. Environments are ordered by rank; a
/// promotion goes from one to the next above it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentRules {
    /// The stored name, e.g. `prod`.
    pub key: String,
    /// The name people read, e.g. `PROD`.
    pub label: String,
    pub rank: i32,
    pub production: bool,
    /// A deployment needs the change approved (and within its window).
    pub needs_approval: bool,
    /// A deployment needs the same artifact to have succeeded in the
    /// environment below first, at least `soak` before.
    pub needs_promotion: bool,
    #[serde(with = "minutes")]
    pub soak: Duration,
}

mod minutes {
    use chrono::Duration;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(d.num_minutes())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::minutes(i64::deserialize(d)?))
    }
}

/// DEV < TEST < STAGE < PROD; PROD the only production environment and the
/// only one that needs an approved change. Each above DEV takes what
/// succeeded below it.
pub fn default_environments() -> Vec<EnvironmentRules> {
    [
        ("dev", "DEV"),
        ("test", "TEST"),
        ("stage", "STAGE"),
        ("prod", "PROD"),
    ]
    .into_iter()
    .zip(1..)
    .map(|((key, label), rank)| EnvironmentRules {
        key: key.into(),
        label: label.into(),
        rank,
        production: key == "prod",
        needs_approval: key == "prod",
        needs_promotion: key != "dev",
        soak: Duration::zero(),
    })
    .collect()
}

/// The environment just below `env`, if any.
pub fn below<'a>(
    environments: &'a [EnvironmentRules],
    env: &EnvironmentRules,
) -> Option<&'a EnvironmentRules> {
    environments
        .iter()
        .filter(|e| e.rank < env.rank)
        .max_by_key(|e| e.rank)
}

/// A set of environments an admin saves: names unique and readable, ranks
/// unique, at least one production environment, every production one
/// needing approval, soak times not negative.
pub fn validate_environments(environments: &[EnvironmentRules]) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut error =
        |field: &'static str, message: String| errors.push(FieldError { field, message });
    for (i, e) in environments.iter().enumerate() {
        let valid_key = !e.key.is_empty()
            && e.key.len() <= 20
            && e.key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid_key {
            error(
                "key",
                format!(
                    "Environment {}: a name of 1 to 20 lower-case letters, digits or dashes.",
                    i + 1
                ),
            );
        }
        if e.label.trim().is_empty() || e.label.chars().count() > 40 {
            error(
                "label",
                format!("Environment {}: a label of 1 to 40 characters.", i + 1),
            );
        }
        if environments[..i].iter().any(|o| o.key == e.key) {
            error("key", format!("Two environments are named {}.", e.key));
        }
        if environments[..i].iter().any(|o| o.rank == e.rank) {
            error("rank", format!("Two environments have rank {}.", e.rank));
        }
        if e.production && !e.needs_approval {
            error(
                "needs_approval",
                format!(
                    "{} is a production environment, so it needs an approved change.",
                    e.label
                ),
            );
        }
        if e.soak < Duration::zero() {
            error(
                "soak",
                format!("{}: the soak time cannot be negative.", e.label),
            );
        }
    }
    if !environments.iter().any(|e| e.production) {
        error(
            "production",
            "At least one environment is production.".into(),
        );
    }
    errors
}

/// A period in which nothing is deployed to the environments and services
/// it covers (all of them when its lists are empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freeze {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub reason: String,
    pub environments: Vec<String>,
    pub services: Vec<String>,
}

impl Freeze {
    /// Whether it covers a deployment of `services` to `environment`.
    pub fn applies_to(&self, environment: &str, services: &[String]) -> bool {
        let env =
            self.environments.is_empty() || self.environments.iter().any(|e| e == environment);
        let service =
            self.services.is_empty() || services.iter().any(|s| self.services.contains(s));
        env && service
    }

    /// Whether it is in force at `at` (its end is the first moment after it).
    pub fn in_force(&self, at: DateTime<Utc>) -> bool {
        self.starts_at <= at && at < self.ends_at
    }
}

/// How long an authorization lasts at most.
pub const AUTHORIZATION_LIFETIME: Duration = Duration::minutes(15);

/// What the gate needs to know about a requested deployment.
#[derive(Debug, Clone)]
pub struct GateFacts<'a> {
    pub change: &'a ChangeFacts,
    /// The revision approved, if the change is approved.
    pub approved_revision: Option<i32>,
    /// The revision the pipeline deploys, and the change's revision now.
    pub requested_revision: i32,
    pub current_revision: i32,
    /// The change's planned window.
    pub window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub environment: &'a EnvironmentRules,
    /// The environment below it, if there is one.
    pub below: Option<&'a EnvironmentRules>,
    /// When the same artifact (by digest) last succeeded in the environment
    /// below, if it did.
    pub succeeded_below_at: Option<DateTime<Utc>>,
    /// Whether the artifact is one the change names.
    pub artifact_is_the_changes: bool,
    pub services: &'a [String],
    pub freezes: &'a [Freeze],
    /// Whether a deployment of this change to this environment is already
    /// authorized or started.
    pub in_progress: bool,
    /// The people whose CAB votes approved it.
    pub approvers: &'a [Uuid],
    /// Whether an approver may initiate its production deployment (an
    /// administrator's setting; off by default).
    pub approver_may_deploy: bool,
    /// Until when a confirmed break-glass for this change and environment
    /// holds, if the request uses one.
    pub break_glass_until: Option<DateTime<Utc>>,
}

/// An allowed deployment: until when its authorization holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authorization {
    pub expires_at: DateTime<Utc>,
}

/// Whether `executor` (a person, or a pipeline's service account) may deploy
/// now, for `initiator` (the person who started it; a person executing for
/// themselves need not name one). Every reason is named when it may not.
pub fn gate(
    facts: &GateFacts<'_>,
    executor: &Actor,
    initiator: Option<&Actor>,
    now: DateTime<Utc>,
) -> Result<Authorization, Vec<Denial>> {
    let mut reasons = Vec::new();
    let env = facts.environment;
    // A confirmed break-glass waives the approval, the window and the
    // freezes, for production only, and nothing else.
    let glass = facts
        .break_glass_until
        .filter(|until| env.production && now < *until);
    if let Some(until) = facts.break_glass_until
        && glass.is_none()
    {
        reasons.push(if env.production {
            Denial::new(
                "break_glass_expired",
                format!(
                    "The break-glass ran out at {}; ask for another.",
                    until.format("%H:%M UTC")
                ),
            )
        } else {
            Denial::new(
                "break_glass_not_production",
                "Break-glass is for production deployments only.",
            )
        });
    }
    // A closed change has ended: it deploys nowhere, not even to DEV.
    if facts.change.state == ChangeState::Closed {
        reasons.push(Denial::new(
            "change_closed",
            "This change is closed and deploys nowhere any more; file a new change for more work.",
        ));
    }
    if glass.is_some() && !break_glass_may_carry(facts.change.state) {
        reasons.push(break_glass_state(facts.change.state));
    }
    if env.needs_approval && glass.is_none() {
        if !facts.change.state.carries_approval() || facts.approved_revision.is_none() {
            reasons.push(Denial::new(
                "change_not_approved",
                format!(
                    "{} needs an approved change; this one is {}.",
                    env.label,
                    facts.change.state.label().to_lowercase()
                ),
            ));
        }
        match facts.window {
            Some((start, end)) if start <= now && now < end => {}
            _ => reasons.push(Denial::new(
                "outside_window",
                "Now is outside the change's approved window.",
            )),
        }
    }
    if facts.requested_revision != facts.current_revision
        || facts
            .approved_revision
            .is_some_and(|r| env.needs_approval && r != facts.current_revision)
    {
        reasons.push(Denial::new(
            "revision_moved_on",
            format!(
                "The change is at revision {}; revision {} is not what is being deployed.",
                facts.current_revision, facts.requested_revision
            ),
        ));
    }
    if !facts.artifact_is_the_changes {
        reasons.push(Denial::new(
            "artifact_not_the_changes",
            "This artifact is not one the change names.",
        ));
    }
    if env.needs_promotion
        && let Some(below) = facts.below
    {
        match facts.succeeded_below_at {
            None => reasons.push(Denial::new(
                "promotion_order",
                format!("This artifact has not succeeded in {} yet.", below.label),
            )),
            Some(at) if now < at + env.soak => reasons.push(Denial::new(
                "soak_time",
                format!(
                    "This artifact succeeded in {} less than {} minutes ago.",
                    below.label,
                    env.soak.num_minutes()
                ),
            )),
            Some(_) => {}
        }
    }
    let applicable = || {
        facts
            .freezes
            .iter()
            .filter(|f| f.applies_to(&env.key, facts.services))
    };
    if let Some(f) = applicable().find(|f| f.in_force(now))
        && glass.is_none()
    {
        reasons.push(Denial::new(
            "freeze_in_force",
            format!("A freeze is in force in {}: {}", env.label, f.reason),
        ));
    }
    if facts.in_progress {
        reasons.push(Denial::new(
            "deployment_in_progress",
            format!(
                "A deployment of this change to {} is already under way.",
                env.label
            ),
        ));
    }
    if env.production {
        reasons.extend(production_duties(facts, executor, initiator));
    }
    if !reasons.is_empty() {
        return Err(reasons);
    }
    if let Some(until) = glass {
        // Its own lifetime, which neither the window nor a freeze cuts.
        return Ok(Authorization {
            expires_at: until.min(now + BREAK_GLASS_LIFETIME),
        });
    }
    let mut expires_at = now + AUTHORIZATION_LIFETIME;
    if env.needs_approval
        && let Some((_, end)) = facts.window
    {
        expires_at = expires_at.min(end);
    }
    if let Some(next) = applicable().map(|f| f.starts_at).filter(|s| *s > now).min() {
        expires_at = expires_at.min(next);
    }
    Ok(Authorization { expires_at })
}

/// How long a break-glass waits for its second person.
pub const BREAK_GLASS_CONFIRM_WITHIN: Duration = Duration::minutes(30);
/// How long a confirmed break-glass, and the authorization it gives, holds.
pub const BREAK_GLASS_LIFETIME: Duration = Duration::minutes(60);

/// Whether a break-glass may carry a change in `state`: one submitted and
/// not closed. A draft was never put to anyone; a rejected, withdrawn or
/// cancelled one was decided against.
pub fn break_glass_may_carry(state: ChangeState) -> bool {
    state != ChangeState::Draft && !state.is_closed()
}

/// The refusal of a break-glass for a change in `state`.
pub fn break_glass_state(state: ChangeState) -> Denial {
    Denial::new(
        "break_glass_change_state",
        format!(
            "Break-glass deploys a change that has been submitted and is still open; this one is {}.",
            state.label().to_lowercase()
        ),
    )
}

/// What a break-glass request says: a reason of at least 30 characters and
/// the incident it answers.
pub fn check_break_glass_request(reason: &str, incident: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for e in [
        text::check_text("reason", reason),
        text::check_name("incident", incident),
    ] {
        if let Err(e) = e {
            errors.push(e);
        }
    }
    if !errors.is_empty() {
        return errors;
    }
    let reason = reason.trim().chars().count();
    if reason < 30 {
        errors.push(FieldError {
            field: "reason",
            message: "Say why in at least 30 characters: what is broken and why it cannot wait."
                .into(),
        });
    } else if reason > 2000 {
        errors.push(FieldError {
            field: "reason",
            message: "A reason is at most 2,000 characters.".into(),
        });
    }
    let incident = incident.trim();
    if incident.is_empty() || incident.chars().count() > 200 {
        errors.push(FieldError {
            field: "incident",
            message: "Name the incident it answers (its reference, at most 200 characters).".into(),
        });
    }
    errors
}

/// Who may ask for a break-glass: a person with the release manager role
/// who may deploy the change to production (never its author or a
/// contributor).
pub fn check_break_glass_requester(change: &ChangeFacts, requester: &Actor) -> Result<(), Denial> {
    if requester.is_service || !requester.roles.contains(Role::ReleaseManager) {
        return Err(Denial::new(
            "break_glass_not_allowed",
            "Only a release manager asks for a break-glass deployment.",
        ));
    }
    check_duty(change, requester, Duty::DeployProd)?;
    if break_glass_may_carry(change.state) {
        Ok(())
    } else {
        Err(break_glass_state(change.state))
    }
}

/// Who may confirm a break-glass, and when: a second person, a release
/// manager or CAB member, who is not the one who asked and never worked on
/// the change, within 30 minutes of the request.
pub fn check_break_glass_confirmer(
    change: &ChangeFacts,
    requested_by: Uuid,
    requested_at: DateTime<Utc>,
    confirmer: &Actor,
    now: DateTime<Utc>,
) -> Result<(), Denial> {
    if confirmer.is_service
        || !(confirmer.roles.contains(Role::ReleaseManager)
            || confirmer.roles.contains(Role::CabMember))
    {
        return Err(Denial::new(
            "break_glass_not_allowed",
            "A break-glass is confirmed by a release manager or a CAB member.",
        ));
    }
    if confirmer.id == requested_by {
        return Err(Denial::new(
            "break_glass_self_confirm",
            "You asked for this break-glass; a second person must confirm it.",
        ));
    }
    if change.is_author(confirmer.id) {
        return Err(Denial::new(
            "break_glass_contributor",
            "You worked on this change, so you cannot confirm its break-glass deployment.",
        ));
    }
    if !break_glass_may_carry(change.state) {
        return Err(break_glass_state(change.state));
    }
    if now >= requested_at + BREAK_GLASS_CONFIRM_WITHIN {
        return Err(Denial::new(
            "break_glass_expired",
            "Nobody confirmed this break-glass within 30 minutes; ask again.",
        ));
    }
    Ok(())
}

/// Who may start a production deployment: a person with the release
/// manager role who did not author or contribute to the change and, unless
/// allowed, did not approve it. A pipeline executes but never initiates:
/// it names the person who started its run.
fn production_duties(
    facts: &GateFacts<'_>,
    executor: &Actor,
    initiator: Option<&Actor>,
) -> Vec<Denial> {
    let initiator = match (executor.is_service, initiator) {
        (true, None) => {
            return vec![Denial::new(
                "initiator_required",
                "A pipeline deploys to production only for a person: name who started the run.",
            )];
        }
        (true, Some(i)) if i.is_service => {
            return vec![Denial::new(
                "initiator_required",
                "The person who started the run initiates a production deployment, not another pipeline.",
            )];
        }
        (false, Some(i)) if i.id != executor.id => {
            return vec![Denial::new(
                "initiator_mismatch",
                "A person deploys for themselves; only a pipeline names someone else.",
            )];
        }
        (true, Some(i)) | (false, Some(i)) => i,
        (false, None) => executor,
    };
    let mut reasons = Vec::new();
    if let Err(d) = check_duty(facts.change, initiator, Duty::DeployProd) {
        reasons.push(d);
    }
    // The security assessor is one of the voices that approved it, as much
    // as a CAB member who voted for it.
    let approved_it =
        facts.approvers.contains(&initiator.id) || facts.change.assessors.contains(&initiator.id);
    if !facts.approver_may_deploy && approved_it && !facts.change.is_author(initiator.id) {
        reasons.push(Denial::new(
            "approver_deployment",
            "You approved or assessed this change, so you cannot also deploy it to production; another release manager must.",
        ));
    }
    reasons
}

/// An artifact's digest as CAB takes it: `sha256:` and 64 lower-case hex
/// digits.
pub fn check_digest(digest: &str) -> Result<(), FieldError> {
    let ok = digest
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
    if ok {
        Ok(())
    } else {
        Err(FieldError {
            field: "digest",
            message: "A digest is sha256: and 64 lower-case hexadecimal digits.".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Role, RoleSet};
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, h, m, 0).unwrap()
    }

    fn person(id: u128, roles: &[Role]) -> Actor {
        Actor {
            id: Uuid::from_u128(id),
            roles: roles.iter().copied().collect::<RoleSet>(),
            is_service: false,
        }
    }

    fn pipeline() -> Actor {
        Actor {
            id: Uuid::from_u128(99),
            roles: [Role::Engineer].into_iter().collect(),
            is_service: true,
        }
    }

    const AUTHOR: u128 = 1;
    const CONTRIBUTOR: u128 = 2;
    const APPROVER: u128 = 3;
    const RELEASE: u128 = 4;

    fn change(state: ChangeState) -> ChangeFacts {
        ChangeFacts {
            state,
            author: Uuid::from_u128(AUTHOR),
            contributors: vec![Uuid::from_u128(CONTRIBUTOR)],
            assessors: vec![],
            voters: vec![Uuid::from_u128(APPROVER)],
        }
    }

    struct Case {
        change: ChangeFacts,
        envs: Vec<EnvironmentRules>,
        env: usize,
        freezes: Vec<Freeze>,
        approvers: Vec<Uuid>,
        succeeded_below_at: Option<DateTime<Utc>>,
    }

    impl Case {
        fn prod() -> Self {
            Case {
                change: change(ChangeState::Approved),
                envs: default_environments(),
                env: 3,
                freezes: vec![],
                approvers: vec![Uuid::from_u128(APPROVER)],
                succeeded_below_at: Some(at(9, 0)),
            }
        }

        fn facts(&self) -> GateFacts<'_> {
            let env = &self.envs[self.env];
            GateFacts {
                change: &self.change,
                approved_revision: (self.change.state == ChangeState::Approved).then_some(2),
                requested_revision: 2,
                current_revision: 2,
                window: Some((at(10, 0), at(11, 0))),
                environment: env,
                below: below(&self.envs, env),
                succeeded_below_at: self.succeeded_below_at,
                artifact_is_the_changes: true,
                services: SERVICES,
                freezes: &self.freezes,
                in_progress: false,
                approvers: &self.approvers,
                approver_may_deploy: false,
                break_glass_until: None,
            }
        }
    }

    const SERVICES: &[String] = &[];

    fn codes(r: Result<Authorization, Vec<Denial>>) -> Vec<&'static str> {
        match r {
            Ok(_) => vec![],
            Err(ds) => ds.into_iter().map(|d| d.code).collect(),
        }
    }

    #[test]
    fn states_move_only_forward_along_the_machine() {
        use DeploymentState::*;
        let allowed = [
            (Authorized, Started),
            (Authorized, Expired),
            (Authorized, Aborted),
            (Started, Succeeded),
            (Started, Failed),
            (Succeeded, RolledBack),
        ];
        for from in DeploymentState::ALL {
            for to in DeploymentState::ALL {
                let ok = allowed.contains(&(*from, *to));
                let got = check_transition(*from, *to);
                assert_eq!(got.is_ok(), ok, "{from:?} -> {to:?}");
                if let Err(d) = got {
                    assert_eq!(d.code, "invalid_transition");
                    assert!(
                        d.message.contains(&from.label().to_lowercase()),
                        "{}",
                        d.message
                    );
                    assert!(
                        d.message.contains(&to.label().to_lowercase()),
                        "{}",
                        d.message
                    );
                }
            }
        }
        let held: Vec<_> = DeploymentState::ALL
            .iter()
            .filter(|s| s.in_progress())
            .collect();
        assert_eq!(held, [&Authorized, &Started]);
    }

    #[test]
    fn default_environments_promote_in_order_and_only_prod_needs_approval() {
        let envs = default_environments();
        let keys: Vec<&str> = envs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["dev", "test", "stage", "prod"]);
        let labels: Vec<&str> = envs.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(labels, ["DEV", "TEST", "STAGE", "PROD"]);
        assert!(envs.windows(2).all(|w| w[0].rank < w[1].rank));
        let prod: Vec<bool> = envs.iter().map(|e| e.production).collect();
        assert_eq!(prod, [false, false, false, true]);
        let approval: Vec<bool> = envs.iter().map(|e| e.needs_approval).collect();
        assert_eq!(approval, [false, false, false, true]);
        let promotion: Vec<bool> = envs.iter().map(|e| e.needs_promotion).collect();
        assert_eq!(promotion, [false, true, true, true]);
        assert_eq!(below(&envs, &envs[0]), None);
        assert_eq!(
            below(&envs, &envs[3]).map(|e| e.key.as_str()),
            Some("stage")
        );
        assert!(validate_environments(&envs).is_empty());
        let json = serde_json::to_value(&envs[3]).unwrap();
        assert_eq!(json["soak"], 0);
        let mut soaked = envs[3].clone();
        soaked.soak = Duration::minutes(30);
        let back: EnvironmentRules =
            serde_json::from_value(serde_json::to_value(&soaked).unwrap()).unwrap();
        assert_eq!(back, soaked);
    }

    #[test]
    fn environments_are_checked_before_they_are_saved() {
        let fields = |envs: &[EnvironmentRules]| -> Vec<&'static str> {
            validate_environments(envs)
                .iter()
                .map(|e| e.field)
                .collect()
        };
        let mut envs = default_environments();
        envs[1].key = "Test env".into();
        envs[2].rank = envs[0].rank;
        envs[3].needs_approval = false;
        envs[0].soak = Duration::minutes(-1);
        envs[0].label = " ".into();
        assert_eq!(
            fields(&envs),
            ["label", "soak", "key", "rank", "needs_approval"]
        );
        let mut twice = default_environments();
        twice[1].key = "dev".into();
        assert_eq!(fields(&twice), ["key"]);
        let mut long = default_environments();
        long[0].key = "a".repeat(21);
        long[1].label = "L".repeat(41);
        assert_eq!(fields(&long), ["key", "label"]);
        long[0].key = "a-1".repeat(6) + "ab";
        long[1].label = "L".repeat(40);
        assert!(fields(&long).is_empty(), "{:?}", fields(&long));
        let mut none = default_environments();
        none[3].production = false;
        assert_eq!(fields(&none), ["production"]);
        let mut empty = default_environments();
        empty[0].key = String::new();
        assert_eq!(fields(&empty), ["key"]);
    }

    #[test]
    fn a_release_manager_who_did_not_work_on_it_deploys_an_approved_change() {
        let case = Case::prod();
        let rm = person(RELEASE, &[Role::ReleaseManager]);
        let ok = gate(&case.facts(), &rm, None, at(10, 30)).unwrap();
        // The earliest of 15 minutes and the window's end.
        assert_eq!(ok.expires_at, at(10, 45));
        assert_eq!(
            gate(&case.facts(), &rm, None, at(10, 50))
                .unwrap()
                .expires_at,
            at(11, 0)
        );
        // A pipeline executes for them.
        let ok = gate(&case.facts(), &pipeline(), Some(&rm), at(10, 30));
        assert!(ok.is_ok(), "{ok:?}");
        // A person may name themselves.
        assert!(gate(&case.facts(), &rm, Some(&rm), at(10, 30)).is_ok());
    }

    #[test]
    fn a_closed_change_deploys_nowhere_not_even_to_dev() {
        let erin = person(AUTHOR, &[Role::Engineer]);
        for env in 0..4 {
            let mut case = Case::prod();
            case.env = env;
            case.change = change(ChangeState::Closed);
            let who = if env == 3 {
                person(RELEASE, &[Role::ReleaseManager])
            } else {
                erin.clone()
            };
            let got = codes(gate(&case.facts(), &who, None, at(10, 30)));
            assert!(got.contains(&"change_closed"), "{env}: {got:?}");
            // Deployed, it still went anywhere the rules allowed.
            case.change = change(ChangeState::Implemented);
            let got = codes(gate(&case.facts(), &who, None, at(10, 30)));
            assert!(!got.contains(&"change_closed"), "{env}: {got:?}");
        }
    }

    #[test]
    fn nobody_deploys_their_own_change_to_production() {
        let case = Case::prod();
        for who in [AUTHOR, CONTRIBUTOR] {
            let worker = person(who, &[Role::ReleaseManager, Role::Admin]);
            assert_eq!(
                codes(gate(&case.facts(), &worker, None, at(10, 30))),
                ["self_deployment"]
            );
            // Named by a pipeline, the same.
            assert_eq!(
                codes(gate(&case.facts(), &pipeline(), Some(&worker), at(10, 30))),
                ["self_deployment"]
            );
        }
        // An approver neither, unless an administrator allowed it.
        let approver = person(APPROVER, &[Role::ReleaseManager, Role::CabMember]);
        assert_eq!(
            codes(gate(&case.facts(), &approver, None, at(10, 30))),
            ["approver_deployment"]
        );
        let mut allowed = case.facts();
        allowed.approver_may_deploy = true;
        assert!(gate(&allowed, &approver, None, at(10, 30)).is_ok());
        // The security assessor approved it too, whatever roles they hold.
        let mut assessed = Case::prod();
        assessed.change.assessors = vec![Uuid::from_u128(6)];
        let assessor = person(6, &[Role::ReleaseManager, Role::SecurityReviewer]);
        assert_eq!(
            codes(gate(&assessed.facts(), &assessor, None, at(10, 30))),
            ["approver_deployment"]
        );
        assert_eq!(
            codes(gate(
                &assessed.facts(),
                &pipeline(),
                Some(&assessor),
                at(10, 30)
            )),
            ["approver_deployment"]
        );
        // Administration is no shortcut; the role is needed.
        let admin = person(7, &[Role::Admin, Role::CabMember]);
        assert_eq!(
            codes(gate(&case.facts(), &admin, None, at(10, 30))),
            ["release_manager_required"]
        );
    }

    #[test]
    fn a_pipeline_names_a_person_and_a_person_deploys_for_themselves() {
        let case = Case::prod();
        assert_eq!(
            codes(gate(&case.facts(), &pipeline(), None, at(10, 30))),
            ["initiator_required"]
        );
        assert_eq!(
            codes(gate(
                &case.facts(),
                &pipeline(),
                Some(&pipeline()),
                at(10, 30)
            )),
            ["initiator_required"]
        );
        let rm = person(RELEASE, &[Role::ReleaseManager]);
        let other = person(8, &[Role::ReleaseManager]);
        assert_eq!(
            codes(gate(&case.facts(), &other, Some(&rm), at(10, 30))),
            ["initiator_mismatch"]
        );
        // Below production, anyone may deploy: no duties there.
        let mut stage = Case::prod();
        stage.env = 2;
        let author = person(AUTHOR, &[Role::Engineer]);
        assert!(gate(&stage.facts(), &author, None, at(9, 30)).is_ok());
        assert!(gate(&stage.facts(), &pipeline(), None, at(9, 30)).is_ok());
    }

    #[test]
    fn every_reason_is_named_at_once() {
        let mut case = Case::prod();
        case.change = change(ChangeState::InCabReview);
        case.succeeded_below_at = None;
        case.freezes = vec![Freeze {
            starts_at: at(12, 0),
            ends_at: at(14, 0),
            reason: "Year-end freeze".into(),
            environments: vec![],
            services: vec![],
        }];
        let mut facts = case.facts();
        facts.requested_revision = 1;
        facts.artifact_is_the_changes = false;
        facts.in_progress = true;
        let author = person(AUTHOR, &[Role::Engineer]);
        let got = gate(&facts, &author, None, at(12, 30));
        assert_eq!(
            codes(got.clone()),
            [
                "change_not_approved",
                "outside_window",
                "revision_moved_on",
                "artifact_not_the_changes",
                "promotion_order",
                "freeze_in_force",
                "deployment_in_progress",
                "self_deployment",
            ]
        );
        let messages: Vec<String> = got.unwrap_err().into_iter().map(|d| d.message).collect();
        assert!(
            messages[0].contains("PROD needs an approved change; this one is in cab review"),
            "{}",
            messages[0]
        );
        assert!(
            messages[2].contains("revision 2; revision 1"),
            "{}",
            messages[2]
        );
        assert!(messages[4].contains("STAGE"), "{}", messages[4]);
        assert!(messages[5].contains("Year-end freeze"), "{}", messages[5]);
        assert!(messages[6].contains("PROD"), "{}", messages[6]);
    }

    #[test]
    fn the_window_bounds_production_and_its_end_is_outside_it() {
        let case = Case::prod();
        let rm = person(RELEASE, &[Role::ReleaseManager]);
        assert_eq!(
            codes(gate(&case.facts(), &rm, None, at(9, 59))),
            ["outside_window"]
        );
        assert!(gate(&case.facts(), &rm, None, at(10, 0)).is_ok());
        assert_eq!(
            codes(gate(&case.facts(), &rm, None, at(11, 0))),
            ["outside_window"]
        );
        let mut none = case.facts();
        none.window = None;
        assert_eq!(
            codes(gate(&none, &rm, None, at(10, 30))),
            ["outside_window"]
        );
        // Approved in name only: no revision was approved.
        let mut unapproved = case.facts();
        unapproved.approved_revision = None;
        assert_eq!(
            codes(gate(&unapproved, &rm, None, at(10, 30))),
            ["change_not_approved"]
        );
        // A revision approved but since moved on.
        let mut moved = case.facts();
        moved.current_revision = 3;
        moved.requested_revision = 3;
        assert_eq!(
            codes(gate(&moved, &rm, None, at(10, 30))),
            ["revision_moved_on"]
        );
        // Below production the window and approval do not apply.
        let mut test = Case::prod();
        test.env = 1;
        test.change = change(ChangeState::Draft);
        let mut facts = test.facts();
        facts.window = None;
        facts.approved_revision = Some(1);
        let ok = gate(&facts, &rm, None, at(9, 30)).unwrap();
        assert_eq!(ok.expires_at, at(9, 45));
    }

    #[test]
    fn promotion_needs_the_same_artifact_below_and_its_soak_time() {
        let rm = person(RELEASE, &[Role::ReleaseManager]);
        let mut case = Case::prod();
        case.envs[3].soak = Duration::minutes(60);
        case.succeeded_below_at = Some(at(9, 45));
        let got = gate(&case.facts(), &rm, None, at(10, 30));
        assert_eq!(codes(got.clone()), ["soak_time"]);
        assert!(
            got.unwrap_err()[0]
                .message
                .contains("STAGE less than 60 minutes")
        );
        assert!(gate(&case.facts(), &rm, None, at(10, 45)).is_ok());
        // DEV has nothing below it; an environment that does not need
        // promotion takes any artifact.
        let mut dev = Case::prod();
        dev.env = 0;
        dev.succeeded_below_at = None;
        assert!(gate(&dev.facts(), &rm, None, at(3, 0)).is_ok());
        let mut free = Case::prod();
        free.envs[3].needs_promotion = false;
        free.succeeded_below_at = None;
        assert!(gate(&free.facts(), &rm, None, at(10, 30)).is_ok());
    }

    #[test]
    fn freezes_stop_what_they_cover_and_shorten_what_comes_before() {
        let rm = person(RELEASE, &[Role::ReleaseManager]);
        let freeze =
            |envs: &[&str], services: &[&str], from: DateTime<Utc>, to: DateTime<Utc>| Freeze {
                starts_at: from,
                ends_at: to,
                reason: "Black Friday".into(),
                environments: envs.iter().map(|s| s.to_string()).collect(),
                services: services.iter().map(|s| s.to_string()).collect(),
            };
        let mut case = Case::prod();
        case.freezes = vec![freeze(&["prod"], &[], at(10, 20), at(10, 40))];
        assert_eq!(
            codes(gate(&case.facts(), &rm, None, at(10, 20))),
            ["freeze_in_force"]
        );
        assert_eq!(
            codes(gate(&case.facts(), &rm, None, at(10, 39))),
            ["freeze_in_force"]
        );
        assert!(gate(&case.facts(), &rm, None, at(10, 40)).is_ok());
        // Before it, the authorization ends when it starts.
        assert_eq!(
            gate(&case.facts(), &rm, None, at(10, 10))
                .unwrap()
                .expires_at,
            at(10, 20)
        );
        // Another environment's freeze, or another service's, does not apply.
        case.freezes = vec![
            freeze(&["stage"], &[], at(10, 0), at(12, 0)),
            freeze(&[], &["billing"], at(10, 0), at(12, 0)),
        ];
        assert_eq!(
            gate(&case.facts(), &rm, None, at(10, 10))
                .unwrap()
                .expires_at,
            at(10, 25)
        );
        let services = vec!["billing".to_string(), "edge".to_string()];
        let mut facts = case.facts();
        facts.services = &services;
        assert_eq!(
            codes(gate(&facts, &rm, None, at(10, 10))),
            ["freeze_in_force"]
        );
        let f = freeze(&["prod"], &["edge"], at(1, 0), at(2, 0));
        assert!(f.applies_to("prod", &services));
        assert!(!f.applies_to("prod", &["billing".to_string()]));
        assert!(!f.applies_to("stage", &services));
        assert!(!f.in_force(at(0, 59)) && f.in_force(at(1, 0)) && !f.in_force(at(2, 0)));
    }

    #[test]
    fn digests_are_sha256_in_lower_case_hex() {
        let hex = "0123456789abcdef".repeat(4);
        assert!(check_digest(&format!("sha256:{hex}")).is_ok());
        for bad in [
            hex.clone(),
            format!("sha256:{}", &hex[1..]),
            format!("sha256:{hex}0"),
            format!("sha256:{}", hex.to_uppercase()),
            format!("sha512:{hex}"),
            format!("sha256:{}g", &hex[1..]),
        ] {
            let e = check_digest(&bad).unwrap_err();
            assert_eq!(e.field, "digest", "{bad}");
            assert!(e.message.contains("sha256:"));
        }
    }

    #[test]
    fn break_glass_waives_approval_window_and_freeze_but_never_the_duties() {
        let mut case = Case::prod();
        case.change = change(ChangeState::InCabReview);
        case.freezes = vec![Freeze {
            starts_at: at(0, 0),
            ends_at: at(23, 0),
            reason: "Year-end".into(),
            environments: vec![],
            services: vec![],
        }];
        let rm = person(RELEASE, &[Role::ReleaseManager]);
        // Outside the window, in review, in a freeze.
        let now = at(12, 0);
        assert_eq!(
            codes(gate(&case.facts(), &rm, None, now)),
            ["change_not_approved", "outside_window", "freeze_in_force"]
        );
        let mut facts = case.facts();
        facts.break_glass_until = Some(at(12, 40));
        // Flagged by its own lifetime, which the freeze does not cut.
        assert_eq!(gate(&facts, &rm, None, now).unwrap().expires_at, at(12, 40));
        // Never the duties: the author, an approver.
        for who in [AUTHOR, CONTRIBUTOR] {
            let worker = person(who, &[Role::ReleaseManager]);
            assert_eq!(codes(gate(&facts, &worker, None, now)), ["self_deployment"]);
        }
        let approver = person(APPROVER, &[Role::ReleaseManager]);
        assert_eq!(
            codes(gate(&facts, &approver, None, now)),
            ["approver_deployment"]
        );
        assert_eq!(
            codes(gate(&facts, &pipeline(), None, now)),
            ["initiator_required"]
        );
        // Nor promotion order.
        let mut unpromoted = facts.clone();
        unpromoted.succeeded_below_at = None;
        assert_eq!(
            codes(gate(&unpromoted, &rm, None, now)),
            ["promotion_order"]
        );
        // Only for a change submitted and still open.
        for state in ChangeState::ALL {
            let mut closed = case.change.clone();
            closed.state = *state;
            let mut f = facts.clone();
            f.change = &closed;
            let refused = codes(gate(&f, &rm, None, now)).contains(&"break_glass_change_state");
            let carries = *state != ChangeState::Draft && !state.is_closed();
            assert_eq!(refused, !carries, "{state:?}");
            assert_eq!(break_glass_may_carry(*state), carries, "{state:?}");
            assert_eq!(
                check_break_glass_requester(&closed, &rm).is_ok(),
                carries,
                "{state:?}"
            );
        }
        // Run out: everything it waived is back, and says why.
        assert_eq!(
            codes(gate(&facts, &rm, None, at(12, 40))),
            [
                "break_glass_expired",
                "change_not_approved",
                "outside_window",
                "freeze_in_force"
            ]
        );
    }

    #[test]
    fn a_break_glass_is_asked_by_a_release_manager_and_confirmed_by_another_person() {
        let facts = change(ChangeState::Approved);
        let rm = person(RELEASE, &[Role::ReleaseManager]);
        assert!(check_break_glass_requester(&facts, &rm).is_ok());
        let code = |r: Result<(), Denial>| r.err().map(|d| d.code);
        assert_eq!(
            code(check_break_glass_requester(
                &facts,
                &person(9, &[Role::CabMember])
            )),
            Some("break_glass_not_allowed")
        );
        assert_eq!(
            code(check_break_glass_requester(
                &facts,
                &person(AUTHOR, &[Role::ReleaseManager])
            )),
            Some("self_deployment")
        );
        let asked = at(9, 0);
        let confirm = |who: &Actor, now| {
            code(check_break_glass_confirmer(
                &facts,
                Uuid::from_u128(RELEASE),
                asked,
                who,
                now,
            ))
        };
        let cab = person(7, &[Role::CabMember]);
        assert_eq!(confirm(&cab, at(9, 29)), None);
        assert_eq!(confirm(&cab, at(9, 30)), Some("break_glass_expired"));
        assert_eq!(confirm(&rm, at(9, 1)), Some("break_glass_self_confirm"));
        for who in [AUTHOR, CONTRIBUTOR] {
            assert_eq!(
                confirm(&person(who, &[Role::CabMember]), at(9, 1)),
                Some("break_glass_contributor")
            );
        }
        assert_eq!(
            confirm(&person(8, &[Role::Engineer, Role::Admin]), at(9, 1)),
            Some("break_glass_not_allowed")
        );
        let mut bot = pipeline();
        bot.roles = [Role::CabMember].into_iter().collect();
        assert_eq!(confirm(&bot, at(9, 1)), Some("break_glass_not_allowed"));
        let errors = check_break_glass_request("too short", " ");
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["reason", "incident"]);
        assert!(
            check_break_glass_request("The payment service is down for every customer.", "INC-42")
                .is_empty()
        );
        // At the edges: 30 to 2,000 characters of reason, 1 to 200 of
        // incident.
        let fields = |reason: usize, incident: usize| -> Vec<&'static str> {
            check_break_glass_request(&"r".repeat(reason), &"i".repeat(incident))
                .iter()
                .map(|e| e.field)
                .collect()
        };
        assert_eq!(fields(29, 1), ["reason"]);
        assert!(fields(30, 1).is_empty());
        assert!(fields(2000, 200).is_empty());
        assert_eq!(fields(2001, 201), ["reason", "incident"]);
    }
}
