//! Deciding on a change: the security impact assessment, CAB votes, the
//! quorum policy, and the separation-of-duties rule that nobody decides on
//! their own work. Every surface calls these functions.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Actor;
use crate::change::{ChangeFacts, ChangeState, ChangeType, FieldError};
use crate::risk::RiskLevel;
use crate::{Denial, Role, RoleSet};

vocabulary!(VoteChoice {
    Approve = "approve" / "Approve",
    Reject = "reject" / "Reject",
    RequestChanges = "request_changes" / "Request changes",
});

vocabulary!(AssessmentDecision {
    Accept = "accept" / "Accept",
    AcceptWithConditions = "accept_with_conditions" / "Accept with conditions",
    Reject = "reject" / "Reject",
});

vocabulary!(DataClassification {
    Public = "public" / "Public",
    Internal = "internal" / "Internal",
    Confidential = "confidential" / "Confidential",
    Restricted = "restricted" / "Restricted",
});

impl AssessmentDecision {
    pub fn accepts(self) -> bool {
        matches!(
            self,
            AssessmentDecision::Accept | AssessmentDecision::AcceptWithConditions
        )
    }
}

/// What deciding on a change takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duty {
    /// Write the security impact assessment.
    Assess,
    /// Cast a CAB vote.
    Vote,
    /// Deploy to PROD (later features).
    DeployProd,
}

impl Duty {
    pub fn as_str(self) -> &'static str {
        match self {
            Duty::Assess => "change.assess",
            Duty::Vote => "change.vote",
            Duty::DeployProd => "change.deploy_prod",
        }
    }
}

/// States in which a change awaits its decision.
pub fn under_review(state: ChangeState) -> bool {
    matches!(
        state,
        ChangeState::Submitted | ChangeState::InAssessment | ChangeState::InCabReview
    )
}

/// Separation of duties: whether `actor` may take on `duty` for this change.
/// Checked in this order, so the reason given is the most fundamental one:
/// pipelines never decide; nobody decides on their own work; one person is
/// never two of the independent voices (the assessment and a CAB vote); the
/// role is required (administration is no shortcut); the change must be
/// awaiting it.
pub fn check_duty(change: &ChangeFacts, actor: &Actor, duty: Duty) -> Result<(), Denial> {
    check_independence(change, actor, duty)?;
    if matches!(duty, Duty::Assess | Duty::Vote) && !under_review(change.state) {
        return Err(Denial::new(
            "not_under_review",
            format!(
                "This change is {}; it is not awaiting a decision.",
                change.state.label().to_lowercase()
            ),
        ));
    }
    Ok(())
}

/// [`check_duty`] without the state: who may ever take on `duty` for this
/// change.
fn check_independence(change: &ChangeFacts, actor: &Actor, duty: Duty) -> Result<(), Denial> {
    if actor.is_service && duty != Duty::DeployProd {
        return Err(Denial::new(
            "service_account",
            "Service accounts are for pipelines: they never assess or vote on changes.",
        ));
    }
    if change.is_author(actor.id) {
        return Err(match duty {
            Duty::Assess => Denial::new(
                "self_assessment",
                "You wrote or contributed to this change, so you cannot assess it; another security reviewer must.",
            ),
            Duty::Vote => Denial::new(
                "self_approval",
                "You wrote or contributed to this change, so you cannot vote on it; other CAB members decide.",
            ),
            Duty::DeployProd => Denial::new(
                "self_deployment",
                "You wrote or contributed to this change, so you cannot deploy it to PROD; someone else must.",
            ),
        });
    }
    if duty == Duty::Vote && change.assessors.contains(&actor.id) {
        return Err(Denial::new(
            "assessor_cannot_vote",
            "You wrote the security assessment of this change, so you cannot also vote on it: the assessment and the CAB approvals come from different people.",
        ));
    }
    if duty == Duty::Assess && change.voters.contains(&actor.id) {
        return Err(Denial::new(
            "voter_cannot_assess",
            "You have voted on this change, so you cannot also assess it: the assessment and the CAB approvals come from different people.",
        ));
    }
    let (role, code, message) = match duty {
        Duty::Assess => (
            Role::SecurityReviewer,
            "security_reviewer_required",
            "Only security reviewers assess changes.",
        ),
        Duty::Vote => (
            Role::CabMember,
            "cab_member_required",
            "Only CAB members vote on changes.",
        ),
        Duty::DeployProd => (
            Role::ReleaseManager,
            "release_manager_required",
            "Only release managers deploy to PROD.",
        ),
    };
    if !actor.roles.contains(role) {
        return Err(Denial::new(code, message));
    }
    Ok(())
}

/// The fewest CAB approvals an emergency change of high or critical risk
/// needs, whatever the policy's emergency rule says.
pub const EMERGENCY_HIGH_RISK_APPROVALS: u32 = 2;

/// Whether `who` may be added as a contributor of the change: not once they
/// have assessed it or voted on it. Otherwise an author could make a vote
/// against them disappear (a contributor's vote never counts), or a
/// decider could turn into an author after the fact.
pub fn check_new_contributor(change: &ChangeFacts, who: Uuid, name: &str) -> Result<(), Denial> {
    if change.voters.contains(&who) {
        return Err(Denial::new(
            "contributor_has_decided",
            format!("{name} has voted on this change, so they cannot be added as a contributor."),
        ));
    }
    if change.assessors.contains(&who) {
        return Err(Denial::new(
            "contributor_has_decided",
            format!("{name} has assessed this change, so they cannot be added as a contributor."),
        ));
    }
    Ok(())
}

/// What one risk level needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelRule {
    /// Approving CAB members, each counted once.
    pub approvals: u32,
    /// Whether an accepting security assessment is needed too.
    pub assessment: bool,
}

/// The quorum policy: configurable by an administrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumPolicy {
    pub low: LevelRule,
    pub medium: LevelRule,
    pub high: LevelRule,
    pub critical: LevelRule,
    /// Emergency changes, whatever their risk: an emergency CAB.
    pub emergency: LevelRule,
}

impl Default for QuorumPolicy {
    fn default() -> Self {
        let rule = |approvals, assessment| LevelRule {
            approvals,
            assessment,
        };
        QuorumPolicy {
            low: rule(1, false),
            medium: rule(2, false),
            high: rule(2, true),
            critical: rule(3, true),
            emergency: rule(1, true),
        }
    }
}

impl QuorumPolicy {
    /// What a change of this type and level needs. An emergency change
    /// takes the emergency rule, but one of high or critical risk always
    /// needs at least two CAB approvals: its author chose the emergency path,
    /// so that choice alone never brings a critical change down to a single
    /// approver. (With the accepting assessment from a third person, no
    /// fewer than three independent people decide it.)
    pub fn rule(&self, change_type: ChangeType, level: RiskLevel) -> LevelRule {
        if change_type == ChangeType::Emergency {
            let mut rule = self.emergency;
            if level >= RiskLevel::High {
                rule.approvals = rule.approvals.max(EMERGENCY_HIGH_RISK_APPROVALS);
            }
            return rule;
        }
        match level {
            RiskLevel::Low => self.low,
            RiskLevel::Medium => self.medium,
            RiskLevel::High => self.high,
            RiskLevel::Critical => self.critical,
        }
    }

    /// The stricter of two policies, level by level: the larger number of
    /// approvals, and an assessment if either asks for one. A change that
    /// goes back to review after approval is decided under this, so that
    /// neither the policy it was first submitted under nor today's can be
    /// the weaker one it gets.
    pub fn stricter(&self, other: &QuorumPolicy) -> QuorumPolicy {
        let max = |a: LevelRule, b: LevelRule| LevelRule {
            approvals: a.approvals.max(b.approvals),
            assessment: a.assessment || b.assessment,
        };
        QuorumPolicy {
            low: max(self.low, other.low),
            medium: max(self.medium, other.medium),
            high: max(self.high, other.high),
            critical: max(self.critical, other.critical),
            emergency: max(self.emergency, other.emergency),
        }
    }

    /// Approvals between 1 and 10, and never fewer for a higher level.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let levels = [
            ("low", self.low),
            ("medium", self.medium),
            ("high", self.high),
            ("critical", self.critical),
            ("emergency", self.emergency),
        ];
        for (field, rule) in levels {
            if !(1..=10).contains(&rule.approvals) {
                errors.push(FieldError {
                    field: leak(field),
                    message: "Between 1 and 10 approvals.".into(),
                });
            }
        }
        for pair in levels[..4].windows(2) {
            if pair[1].1.approvals < pair[0].1.approvals {
                errors.push(FieldError {
                    field: leak(pair[1].0),
                    message: format!(
                        "A {} change cannot need fewer approvals than a {} one.",
                        pair[1].0, pair[0].0
                    ),
                });
            }
        }
        errors
    }
}

fn leak(s: &str) -> &'static str {
    match s {
        "low" => "low",
        "medium" => "medium",
        "high" => "high",
        "critical" => "critical",
        _ => "emergency",
    }
}

/// A CAB member's current vote on the current revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ballot {
    pub voter: Uuid,
    pub choice: VoteChoice,
    /// Whether it counts at the moment of decision.
    pub standing: Standing,
}

/// Whether a vote or an assessment counts at the moment of decision, and
/// if not, why not. Only people who are active and still hold the role
/// count; and the assessor's vote never counts (they are one voice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Counts,
    /// The account has been disabled since.
    Disabled,
    /// The person no longer holds the role the decision needs.
    RoleWithdrawn,
    /// The voter wrote the assessment (a vote cast before that was refused).
    Assessor,
    /// The voter planned the release or worked on a change in it.
    Author,
}

impl Standing {
    pub fn counts(self) -> bool {
        self == Standing::Counts
    }

    /// The trail's status line for it, as the change's page shows it.
    pub fn label(self) -> &'static str {
        match self {
            Standing::Counts => "Counts",
            Standing::Disabled => "Does not count: the account has been disabled",
            Standing::RoleWithdrawn => "Does not count: no longer holds the role",
            Standing::Assessor => "Does not count: the same person wrote the assessment",
            Standing::Author => "Does not count: worked on the plan or a change in it",
        }
    }

    /// Why it no longer counts, as the API says it.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Standing::Counts => None,
            Standing::Disabled => Some("does not count: the account has been disabled"),
            Standing::RoleWithdrawn => Some("does not count: the person no longer holds the role"),
            Standing::Assessor => {
                Some("does not count: the same person wrote the security assessment")
            }
            Standing::Author => {
                Some("does not count: the person worked on the plan or a change in it")
            }
        }
    }
}

/// The standing of a decision made by someone who is `active` now, holds
/// `roles` now, and needs `role` for it.
pub fn standing(active: bool, roles: &RoleSet, role: Role) -> Standing {
    if !active {
        Standing::Disabled
    } else if !roles.contains(role) {
        Standing::RoleWithdrawn
    } else {
        Standing::Counts
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Approved,
    Rejected {
        reason: String,
    },
    ChangesRequested,
    /// Still needed, in words, e.g. "1 more CAB approval".
    Pending {
        needs: Vec<String>,
    },
}

/// Applies the policy to the votes and the assessment of the current
/// revision. Any reject rejects (a rejecting assessment too); a request for
/// changes returns the change to its authors; otherwise the change is
/// approved once enough distinct members approve (and, where the rule says
/// so, an assessment accepts). Each person counts once: the last ballot of
/// a voter is theirs. Ballots that do not count (see [`Standing`]) are left
/// out entirely; `assessment` is the current assessment's decision if it
/// counts, `None` otherwise.
pub fn evaluate(
    policy: &QuorumPolicy,
    change_type: ChangeType,
    level: RiskLevel,
    ballots: &[Ballot],
    assessment: Option<AssessmentDecision>,
) -> Decision {
    let mut latest: Vec<Ballot> = Vec::new();
    for b in ballots {
        latest.retain(|x| x.voter != b.voter);
        latest.push(*b);
    }
    latest.retain(|b| b.standing.counts());
    if latest.iter().any(|b| b.choice == VoteChoice::Reject) {
        return Decision::Rejected {
            reason: "a CAB member rejected it".into(),
        };
    }
    if assessment == Some(AssessmentDecision::Reject) {
        return Decision::Rejected {
            reason: "the security assessment rejected it".into(),
        };
    }
    if latest
        .iter()
        .any(|b| b.choice == VoteChoice::RequestChanges)
    {
        return Decision::ChangesRequested;
    }
    let rule = policy.rule(change_type, level);
    let approvals = latest
        .iter()
        .filter(|b| b.choice == VoteChoice::Approve)
        .count() as u32;
    let mut needs = Vec::new();
    if approvals < rule.approvals {
        let missing = rule.approvals - approvals;
        needs.push(format!(
            "{missing} more CAB approval{}",
            if missing == 1 { "" } else { "s" }
        ));
    }
    if rule.assessment && !assessment.is_some_and(AssessmentDecision::accepts) {
        needs.push("an accepting security assessment".into());
    }
    if needs.is_empty() {
        Decision::Approved
    } else {
        Decision::Pending { needs }
    }
}

/// One kind of security testing: required or not, and the evidence (a link)
/// or the justification for it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TestRequirement {
    pub required: bool,
    pub evidence: String,
    pub justification: String,
}

/// What the security reviewer writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssessmentContent {
    pub data_classification: DataClassification,
    pub security_implications: String,
    pub sast: TestRequirement,
    pub dast: TestRequirement,
    pub pentest: TestRequirement,
    pub residual_risk: String,
    pub assessed_level: RiskLevel,
    /// Required when the assessed level is below the engineer's.
    pub lowering_justification: String,
    pub decision: AssessmentDecision,
    /// Shown to CAB and release managers; required to accept with conditions.
    pub conditions: Vec<String>,
}

impl AssessmentContent {
    /// Control characters in any of its text, field by field (see
    /// [`crate::text::text_problem`]); a testing requirement's evidence and
    /// justification are its kind's field.
    fn character_errors(&self) -> Vec<FieldError> {
        let mut texts: Vec<(&'static str, &str)> = vec![
            ("security_implications", &self.security_implications),
            ("residual_risk", &self.residual_risk),
            ("lowering_justification", &self.lowering_justification),
        ];
        for (field, t) in [
            ("sast", &self.sast),
            ("dast", &self.dast),
            ("pentest", &self.pentest),
        ] {
            texts.push((field, &t.evidence));
            texts.push((field, &t.justification));
        }
        texts.extend(self.conditions.iter().map(|c| ("conditions", c.as_str())));
        let mut errors: Vec<FieldError> = Vec::new();
        for (field, value) in texts {
            if errors.iter().all(|e| e.field != field)
                && let Err(e) = crate::text::check_text(field, value)
            {
                errors.push(e);
            }
        }
        errors
    }

    /// Whether it lowers the engineer's level (flagged on the change).
    pub fn lowers(&self, engineer_level: RiskLevel) -> bool {
        self.assessed_level < engineer_level
    }

    pub fn validate(&self, engineer_level: RiskLevel) -> Vec<FieldError> {
        let mut errors = self.character_errors();
        let mut need = |field: &'static str, ok: bool, message: &str| {
            if !ok {
                errors.push(FieldError {
                    field,
                    message: message.to_owned(),
                });
            }
        };
        need(
            "security_implications",
            !self.security_implications.trim().is_empty(),
            "Describe the security implications.",
        );
        need(
            "residual_risk",
            !self.residual_risk.trim().is_empty(),
            "Describe the residual risk.",
        );
        for (field, t) in [
            ("sast", &self.sast),
            ("dast", &self.dast),
            ("pentest", &self.pentest),
        ] {
            let link_ok = t.evidence.is_empty() || crate::change::is_link(&t.evidence);
            need(field, link_ok, "Evidence is an http(s) link.");
            need(
                field,
                !t.required || !t.evidence.trim().is_empty() || !t.justification.trim().is_empty(),
                "Required testing needs an evidence link or a justification.",
            );
        }
        need(
            "lowering_justification",
            !self.lowers(engineer_level) || !self.lowering_justification.trim().is_empty(),
            "Lowering the engineer's risk level needs a written justification.",
        );
        need(
            "conditions",
            self.decision != AssessmentDecision::AcceptWithConditions
                || self.conditions.iter().any(|c| !c.trim().is_empty()),
            "List the conditions.",
        );
        let long = [
            &self.security_implications,
            &self.residual_risk,
            &self.lowering_justification,
        ]
        .iter()
        .any(|s| s.chars().count() > 20_000);
        need(
            "security_implications",
            !long,
            "At most 20000 characters per field.",
        );
        errors
    }
}

/// Fields whose change, once a change is approved, leaves the approval
/// standing: how the change is described and how urgent it is, not what
/// CAB approved.
pub const EDITORIAL_FIELDS: [&str; 4] = ["title", "description", "justification", "priority"];

/// Fields whose change, once a change is approved, voids the approval: what
/// CAB actually approved. Every field that is not in [`EDITORIAL_FIELDS`];
/// this list names them for readers, [`is_material`] does not consult it.
pub const MATERIAL_FIELDS: [&str; 23] = [
    "type",
    "category",
    "services",
    "environments",
    "implementation_plan",
    "test_plan",
    "test_levels",
    "test_evidence",
    "rollback_plan",
    "window_start",
    "window_end",
    "window_tz",
    "pr_url",
    "commit_sha",
    "artifact_digest",
    "contributors",
    "impact",
    "likelihood",
    "touches_production_data",
    "customer_facing",
    "changes_security_control",
    "rollback_untested",
    "outside_usual_window",
];

/// Whether a change to `field` voids an approval. It fails closed: a field
/// is material unless it is listed as editorial, so a field added later
/// sends an approved change back to review until someone decides otherwise.
pub fn is_material(field: &str) -> bool {
    !EDITORIAL_FIELDS.contains(&field)
}

#[cfg(test)]
#[allow(clippy::type_complexity)] // the test tables read best with their row type inline
mod tests {
    use super::*;
    use crate::RoleSet;
    use ChangeType::{Emergency, Normal, Standard};
    use RiskLevel::*;
    use VoteChoice::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn ballot(n: u128, choice: VoteChoice) -> Ballot {
        Ballot {
            voter: id(n),
            choice,
            standing: Standing::Counts,
        }
    }

    fn approve(n: u128) -> Ballot {
        ballot(n, Approve)
    }

    fn not_counting(n: u128, choice: VoteChoice, standing: Standing) -> Ballot {
        Ballot {
            standing,
            ..ballot(n, choice)
        }
    }

    #[test]
    fn quorum_table() {
        let p = QuorumPolicy::default();
        let accept = Some(AssessmentDecision::Accept);
        let cond = Some(AssessmentDecision::AcceptWithConditions);
        let cases: Vec<(
            ChangeType,
            RiskLevel,
            Vec<Ballot>,
            Option<AssessmentDecision>,
            Decision,
        )> = vec![
            (Normal, Low, vec![approve(1)], None, Decision::Approved),
            (
                Normal,
                Low,
                vec![],
                None,
                Decision::Pending {
                    needs: vec!["1 more CAB approval".into()],
                },
            ),
            (
                Normal,
                Medium,
                vec![approve(1)],
                None,
                Decision::Pending {
                    needs: vec!["1 more CAB approval".into()],
                },
            ),
            (
                Normal,
                Medium,
                vec![approve(1), approve(2)],
                None,
                Decision::Approved,
            ),
            // The same person twice counts once.
            (
                Normal,
                Medium,
                vec![approve(1), approve(1)],
                None,
                Decision::Pending {
                    needs: vec!["1 more CAB approval".into()],
                },
            ),
            (
                Normal,
                High,
                vec![approve(1), approve(2)],
                None,
                Decision::Pending {
                    needs: vec!["an accepting security assessment".into()],
                },
            ),
            (
                Normal,
                High,
                vec![approve(1), approve(2)],
                cond,
                Decision::Approved,
            ),
            (
                Normal,
                Critical,
                vec![approve(1), approve(2)],
                accept,
                Decision::Pending {
                    needs: vec!["1 more CAB approval".into()],
                },
            ),
            (
                Normal,
                Critical,
                vec![],
                None,
                Decision::Pending {
                    needs: vec![
                        "3 more CAB approvals".into(),
                        "an accepting security assessment".into(),
                    ],
                },
            ),
            (
                Normal,
                Critical,
                vec![approve(1), approve(2), approve(3)],
                accept,
                Decision::Approved,
            ),
            (
                Normal,
                Low,
                vec![approve(1), ballot(2, Reject)],
                None,
                Decision::Rejected {
                    reason: "a CAB member rejected it".into(),
                },
            ),
            (
                Normal,
                Low,
                vec![approve(1)],
                Some(AssessmentDecision::Reject),
                Decision::Rejected {
                    reason: "the security assessment rejected it".into(),
                },
            ),
            (
                Normal,
                Medium,
                vec![approve(1), ballot(2, RequestChanges)],
                None,
                Decision::ChangesRequested,
            ),
            // A changed vote replaces the earlier one.
            (
                Normal,
                Low,
                vec![ballot(1, RequestChanges), approve(1)],
                None,
                Decision::Approved,
            ),
            // Emergency: one CAB approval and one accepting assessment, in any order.
            (
                Emergency,
                Medium,
                vec![approve(1)],
                None,
                Decision::Pending {
                    needs: vec!["an accepting security assessment".into()],
                },
            ),
            (
                Emergency,
                Medium,
                vec![],
                accept,
                Decision::Pending {
                    needs: vec!["1 more CAB approval".into()],
                },
            ),
            (
                Emergency,
                Medium,
                vec![approve(1)],
                accept,
                Decision::Approved,
            ),
            (Emergency, Low, vec![approve(1)], accept, Decision::Approved),
            // ...but its author's choice of the emergency path never brings a
            // high or critical change down to one approver.
            (
                Emergency,
                Critical,
                vec![approve(1)],
                accept,
                Decision::Pending {
                    needs: vec!["1 more CAB approval".into()],
                },
            ),
            (
                Emergency,
                High,
                vec![approve(1)],
                accept,
                Decision::Pending {
                    needs: vec!["1 more CAB approval".into()],
                },
            ),
            (
                Emergency,
                Critical,
                vec![approve(1), approve(2)],
                accept,
                Decision::Approved,
            ),
            // Votes that no longer count are left out entirely.
            (
                Normal,
                Medium,
                vec![approve(1), not_counting(2, Approve, Standing::Disabled)],
                None,
                Decision::Pending {
                    needs: vec!["1 more CAB approval".into()],
                },
            ),
            (
                Normal,
                Low,
                vec![not_counting(2, Approve, Standing::RoleWithdrawn)],
                None,
                Decision::Pending {
                    needs: vec!["1 more CAB approval".into()],
                },
            ),
            (
                Emergency,
                Low,
                vec![not_counting(3, Approve, Standing::Assessor)],
                accept,
                Decision::Pending {
                    needs: vec!["1 more CAB approval".into()],
                },
            ),
            (
                Normal,
                Low,
                vec![approve(1), not_counting(2, Reject, Standing::Disabled)],
                None,
                Decision::Approved,
            ),
            (Standard, Low, vec![approve(1)], None, Decision::Approved),
        ];
        for (t, level, ballots, assessment, expected) in cases {
            assert_eq!(
                evaluate(&p, t, level, &ballots, assessment),
                expected,
                "{t:?} {level:?} {ballots:?} {assessment:?}"
            );
        }
    }

    #[test]
    fn policy_validation() {
        assert!(QuorumPolicy::default().validate().is_empty());
        let mut p = QuorumPolicy::default();
        p.high.approvals = 1;
        assert_eq!(p.validate()[0].field, "high");
        p = QuorumPolicy::default();
        p.low.approvals = 0;
        assert_eq!(p.validate()[0].field, "low");
    }

    fn actor(n: u128, roles: &[Role], is_service: bool) -> Actor {
        Actor {
            id: id(n),
            roles: roles.iter().copied().collect::<RoleSet>(),
            is_service,
        }
    }

    #[test]
    fn a_bad_quorum_names_the_level() {
        for (level, field) in [
            ("low", "low"),
            ("medium", "medium"),
            ("high", "high"),
            ("critical", "critical"),
            ("emergency", "emergency"),
        ] {
            let mut p = QuorumPolicy::default();
            let rule = match level {
                "low" => &mut p.low,
                "medium" => &mut p.medium,
                "high" => &mut p.high,
                "critical" => &mut p.critical,
                _ => &mut p.emergency,
            };
            rule.approvals = 11;
            let fields: Vec<&str> = p.validate().iter().map(|e| e.field).collect();
            assert_eq!(fields.first(), Some(&field), "{level}: {fields:?}");
        }
        let mut p = QuorumPolicy::default();
        p.critical.approvals = 1;
        let fields: Vec<&str> = p.validate().iter().map(|e| e.field).collect();
        assert_eq!(fields, vec!["critical"]);
        p = QuorumPolicy::default();
        p.medium.approvals = 3;
        let fields: Vec<&str> = p.validate().iter().map(|e| e.field).collect();
        assert_eq!(fields, vec!["high"]);
    }

    #[test]
    fn assessment_text_is_checked_field_by_field_and_to_the_character() {
        let mut a = AssessmentContent {
            data_classification: DataClassification::Internal,
            security_implications: "None.".into(),
            sast: TestRequirement::default(),
            dast: TestRequirement::default(),
            pentest: TestRequirement::default(),
            residual_risk: "Low.".into(),
            assessed_level: RiskLevel::Low,
            lowering_justification: String::new(),
            decision: AssessmentDecision::Accept,
            conditions: Vec::new(),
        };
        assert!(a.validate(RiskLevel::Low).is_empty());
        a.residual_risk = "r".repeat(20_000);
        assert!(
            a.validate(RiskLevel::Low).is_empty(),
            "20000 characters fit"
        );
        a.residual_risk.push('r');
        assert_eq!(
            a.validate(RiskLevel::Low)
                .iter()
                .map(|e| e.field)
                .collect::<Vec<_>>(),
            vec!["security_implications"]
        );
        a.residual_risk = "Low.".into();
        a.sast.evidence = "a\u{0}b".into();
        a.dast.justification = "c\u{1}d".into();
        let fields: Vec<&str> = a.character_errors().iter().map(|e| e.field).collect();
        assert_eq!(fields, vec!["sast", "dast"], "each field in error is named");
    }

    #[test]
    fn only_accepting_assessments_accept() {
        assert!(AssessmentDecision::Accept.accepts());
        assert!(AssessmentDecision::AcceptWithConditions.accepts());
        assert!(!AssessmentDecision::Reject.accepts());
    }

    #[test]
    fn every_field_but_the_editorial_ones_is_material() {
        for field in MATERIAL_FIELDS {
            assert!(is_material(field), "{field}");
        }
        for editorial in ["title", "description", "justification", "priority"] {
            assert!(!is_material(editorial), "{editorial}");
        }
        assert!(is_material("artifact_digest") && is_material("implementation_plan"));
    }

    #[test]
    fn the_stricter_policy_takes_the_larger_quorum_level_by_level() {
        let mut lax = QuorumPolicy::default();
        lax.medium.approvals = 1;
        lax.high.assessment = false;
        let mut strict = QuorumPolicy::default();
        strict.low.approvals = 2;
        let both = lax.stricter(&strict);
        assert_eq!(both.low.approvals, 2);
        assert_eq!(both.medium.approvals, 2);
        assert!(both.high.assessment);
        assert_eq!(both, strict.stricter(&lax));
        assert_eq!(
            QuorumPolicy::default().stricter(&QuorumPolicy::default()),
            QuorumPolicy::default()
        );
    }

    #[test]
    fn people_who_decided_are_not_added_as_contributors() {
        let change = ChangeFacts {
            state: ChangeState::InCabReview,
            author: id(1),
            contributors: vec![],
            assessors: vec![id(7)],
            voters: vec![id(8)],
        };
        assert_eq!(
            check_new_contributor(&change, id(8), "Carol").map_err(|d| d.code),
            Err("contributor_has_decided")
        );
        assert_eq!(
            check_new_contributor(&change, id(7), "Sam").map_err(|d| d.code),
            Err("contributor_has_decided")
        );
        assert!(check_new_contributor(&change, id(9), "Eddie").is_ok());
    }

    #[test]
    fn only_active_people_holding_the_role_count() {
        let member: RoleSet = [Role::CabMember].into_iter().collect();
        let reviewer: RoleSet = [Role::SecurityReviewer].into_iter().collect();
        assert_eq!(standing(true, &member, Role::CabMember), Standing::Counts);
        assert_eq!(
            standing(false, &member, Role::CabMember),
            Standing::Disabled
        );
        assert_eq!(
            standing(true, &reviewer, Role::CabMember),
            Standing::RoleWithdrawn
        );
        assert_eq!(
            standing(false, &reviewer, Role::CabMember),
            Standing::Disabled
        );
        assert!(Standing::Counts.counts() && Standing::Counts.reason().is_none());
        assert_eq!(Standing::Counts.label(), "Counts");
        assert_eq!(
            Standing::Disabled.label(),
            "Does not count: the account has been disabled"
        );
        for s in [
            Standing::Disabled,
            Standing::RoleWithdrawn,
            Standing::Assessor,
        ] {
            assert!(!s.counts());
            assert!(s.reason().is_some_and(|r| r.starts_with("does not count")));
        }
    }

    #[test]
    fn separation_of_duties_table() {
        use ChangeState::*;
        let author = 1;
        let contributor = 2;
        let assessor = 7;
        let voter = 8;
        let change = |state| ChangeFacts {
            state,
            author: id(author),
            contributors: vec![id(contributor)],
            assessors: vec![id(assessor)],
            voters: vec![id(voter)],
        };
        let all_roles = [
            Role::Engineer,
            Role::SecurityReviewer,
            Role::CabMember,
            Role::ReleaseManager,
            Role::Auditor,
            Role::Admin,
        ];
        // (who, roles, service, state, duty, expected)
        let cases: Vec<(u128, Vec<Role>, bool, ChangeState, Duty, Result<(), &str>)> = vec![
            (
                author,
                all_roles.to_vec(),
                false,
                Submitted,
                Duty::Vote,
                Err("self_approval"),
            ),
            (
                contributor,
                vec![Role::CabMember],
                false,
                InCabReview,
                Duty::Vote,
                Err("self_approval"),
            ),
            (
                author,
                vec![Role::SecurityReviewer],
                false,
                Submitted,
                Duty::Assess,
                Err("self_assessment"),
            ),
            (
                contributor,
                vec![Role::SecurityReviewer],
                false,
                Submitted,
                Duty::Assess,
                Err("self_assessment"),
            ),
            (
                author,
                vec![Role::ReleaseManager],
                false,
                Approved,
                Duty::DeployProd,
                Err("self_deployment"),
            ),
            (
                3,
                vec![Role::CabMember],
                false,
                Submitted,
                Duty::Vote,
                Ok(()),
            ),
            (
                3,
                vec![Role::CabMember],
                false,
                InAssessment,
                Duty::Vote,
                Ok(()),
            ),
            (
                3,
                vec![Role::CabMember],
                false,
                InCabReview,
                Duty::Vote,
                Ok(()),
            ),
            (
                3,
                vec![Role::CabMember],
                false,
                Draft,
                Duty::Vote,
                Err("not_under_review"),
            ),
            (
                3,
                vec![Role::CabMember],
                false,
                Approved,
                Duty::Vote,
                Err("not_under_review"),
            ),
            (
                3,
                vec![Role::CabMember],
                false,
                Rejected,
                Duty::Vote,
                Err("not_under_review"),
            ),
            (
                3,
                vec![Role::CabMember],
                true,
                InCabReview,
                Duty::Vote,
                Err("service_account"),
            ),
            (
                3,
                vec![Role::SecurityReviewer],
                true,
                Submitted,
                Duty::Assess,
                Err("service_account"),
            ),
            (
                3,
                vec![Role::Admin],
                false,
                InCabReview,
                Duty::Vote,
                Err("cab_member_required"),
            ),
            (
                3,
                vec![Role::Admin, Role::CabMember],
                false,
                InCabReview,
                Duty::Vote,
                Ok(()),
            ),
            (
                author,
                vec![Role::Admin, Role::CabMember],
                false,
                InCabReview,
                Duty::Vote,
                Err("self_approval"),
            ),
            (
                3,
                vec![Role::Engineer, Role::Auditor, Role::ReleaseManager],
                false,
                InCabReview,
                Duty::Vote,
                Err("cab_member_required"),
            ),
            (
                3,
                vec![Role::SecurityReviewer],
                false,
                Submitted,
                Duty::Assess,
                Ok(()),
            ),
            (
                3,
                vec![Role::CabMember, Role::Admin],
                false,
                Submitted,
                Duty::Assess,
                Err("security_reviewer_required"),
            ),
            (
                3,
                vec![Role::SecurityReviewer],
                false,
                Withdrawn,
                Duty::Assess,
                Err("not_under_review"),
            ),
            (
                3,
                vec![Role::ReleaseManager],
                false,
                Approved,
                Duty::DeployProd,
                Ok(()),
            ),
            (
                3,
                vec![Role::Admin],
                false,
                Approved,
                Duty::DeployProd,
                Err("release_manager_required"),
            ),
            // One person is never two of the independent voices: whoever
            // assessed it does not vote, whoever voted does not assess,
            // whatever roles they hold.
            (
                assessor,
                vec![Role::SecurityReviewer, Role::CabMember],
                false,
                InCabReview,
                Duty::Vote,
                Err("assessor_cannot_vote"),
            ),
            (
                assessor,
                vec![Role::SecurityReviewer, Role::CabMember],
                false,
                InCabReview,
                Duty::Assess,
                Ok(()),
            ),
            (
                voter,
                vec![Role::SecurityReviewer, Role::CabMember],
                false,
                InCabReview,
                Duty::Assess,
                Err("voter_cannot_assess"),
            ),
            (
                voter,
                vec![Role::SecurityReviewer, Role::CabMember],
                false,
                InCabReview,
                Duty::Vote,
                Ok(()),
            ),
            (
                assessor,
                vec![Role::SecurityReviewer, Role::CabMember],
                false,
                Approved,
                Duty::DeployProd,
                Err("release_manager_required"),
            ),
        ];
        for (who, roles, service, state, duty, expected) in cases {
            let got =
                check_duty(&change(state), &actor(who, &roles, service), duty).map_err(|d| d.code);
            assert_eq!(
                got, expected,
                "actor {who} {roles:?} service={service} {state:?} {duty:?}"
            );
        }
        // Every single role, alone, for both duties on a change by someone else.
        for role in all_roles {
            let a = actor(9, &[role], false);
            assert_eq!(
                check_duty(&change(Submitted), &a, Duty::Vote).is_ok(),
                role == Role::CabMember,
                "{role}"
            );
            assert_eq!(
                check_duty(&change(Submitted), &a, Duty::Assess).is_ok(),
                role == Role::SecurityReviewer,
                "{role}"
            );
        }
    }

    fn assessment() -> AssessmentContent {
        AssessmentContent {
            data_classification: DataClassification::Confidential,
            security_implications: "Touches TLS termination.".into(),
            sast: TestRequirement {
                required: true,
                evidence: "https://ci.example.com/sast/1".into(),
                justification: String::new(),
            },
            dast: TestRequirement {
                required: true,
                evidence: String::new(),
                justification: "Run on STAGE before PROD.".into(),
            },
            pentest: TestRequirement::default(),
            residual_risk: "Low once certificates are pinned.".into(),
            assessed_level: High,
            lowering_justification: String::new(),
            decision: AssessmentDecision::Accept,
            conditions: vec![],
        }
    }

    #[test]
    fn assessment_rules() {
        assert_eq!(
            assessment().validate(Medium),
            vec![],
            "raising needs no justification"
        );
        let fields = |a: AssessmentContent, level| {
            a.validate(level)
                .into_iter()
                .map(|e| e.field)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            fields(assessment(), Critical),
            vec!["lowering_justification"]
        );
        let mut a = assessment();
        a.lowering_justification = "Only internal traffic.".into();
        assert!(a.lowers(Critical));
        assert_eq!(fields(a, Critical), Vec::<&str>::new());
        let mut a = assessment();
        a.decision = AssessmentDecision::AcceptWithConditions;
        assert_eq!(fields(a, High), vec!["conditions"]);
        let mut a = assessment();
        a.pentest.required = true;
        assert_eq!(fields(a, High), vec!["pentest"]);
        let mut a = assessment();
        a.sast.evidence = "javascript:alert(1)".into();
        assert_eq!(fields(a, High), vec!["sast"]);
        let mut a = assessment();
        a.security_implications = " ".into();
        assert_eq!(fields(a, High), vec!["security_implications"]);
    }

    #[test]
    fn material_fields_are_known_fields() {
        let c = crate::change::tests_support::complete();
        let known: Vec<&str> = c.fields().into_iter().map(|(f, _)| f).collect();
        for f in MATERIAL_FIELDS {
            assert!(known.contains(&f), "{f}");
        }
        for editorial in ["title", "description", "justification", "priority"] {
            assert!(!is_material(editorial));
        }
    }

    #[test]
    fn a_field_added_later_is_material() {
        for later in ["blast_radius", "owner", "", "Title"] {
            assert!(is_material(later), "{later:?}");
        }
        for editorial in EDITORIAL_FIELDS {
            assert!(!is_material(editorial), "{editorial}");
        }
    }

    #[test]
    fn material_and_editorial_fields_cover_every_field() {
        let c = crate::change::tests_support::complete();
        let mut known: Vec<&str> = c.fields().into_iter().map(|(f, _)| f).collect();
        let mut listed: Vec<&str> = MATERIAL_FIELDS
            .iter()
            .chain(&EDITORIAL_FIELDS)
            .copied()
            .collect();
        known.sort_unstable();
        listed.sort_unstable();
        assert_eq!(listed, known, "each field is material or editorial, once");
    }

    #[test]
    fn evidence_links_have_the_limits_of_a_change_link() {
        let with = |evidence: String| {
            let mut a = assessment();
            a.pentest.evidence = evidence;
            a.validate(High)
                .into_iter()
                .map(|e| e.field)
                .collect::<Vec<_>>()
        };
        let none: Vec<&str> = vec![];
        assert_eq!(with(String::new()), none);
        assert_eq!(with("http://a.bc".into()), none);
        assert_eq!(
            with("http://a.b".into()),
            vec!["pentest"],
            "ten characters are too short"
        );
        assert_eq!(with(format!("https://{}", "a".repeat(1992))), none);
        assert_eq!(
            with(format!("https://{}", "a".repeat(1993))),
            vec!["pentest"]
        );
        assert_eq!(with("https://example.com/a b".into()), vec!["pentest"]);
        assert_eq!(with("ftp://example.com/report".into()), vec!["pentest"]);
    }
}
