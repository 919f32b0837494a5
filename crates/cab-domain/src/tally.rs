//! Where a change awaiting its decision stands, from what the store holds
//! now: its current assessment and ballots, and whether each of their
//! authors still counts. Who counts is decided now, at the moment of
//! decision, not when they voted or assessed: only people who are active
//! and still hold the role count, and the assessor's vote never does.

use uuid::Uuid;

use crate::approval::{
    self, AssessmentDecision, Ballot, Decision, QuorumPolicy, Standing, VoteChoice,
};
use crate::change::{ChangeState, ChangeType};
use crate::risk::RiskLevel;
use crate::{Role, RoleSet};

/// Someone as the store has them now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersonNow<'a> {
    pub active: bool,
    /// Their roles as stored.
    pub roles: &'a [String],
}

/// Whether someone counts now for a decision that needs `role`: `None` is
/// nobody found, who counts as disabled; roles that cannot be read grant
/// nothing.
pub fn standing_now(person: Option<PersonNow<'_>>, role: Role) -> Standing {
    match person {
        None => Standing::Disabled,
        Some(p) => RoleSet::parse(p.roles).map_or(Standing::RoleWithdrawn, |roles| {
            approval::standing(p.active, &roles, role)
        }),
    }
}

/// The current assessment of the current revision, as stored.
#[derive(Debug, Clone, Copy)]
pub struct StoredAssessment<'a> {
    pub assessor: Uuid,
    pub decision: &'a str,
    pub assessed_level: &'a str,
    pub assessor_now: Option<PersonNow<'a>>,
}

/// A current vote on the current revision, as stored.
#[derive(Debug, Clone, Copy)]
pub struct StoredVote<'a> {
    pub voter: Uuid,
    pub choice: &'a str,
    pub voter_now: Option<PersonNow<'a>>,
}

/// What the stored assessment and votes come to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// The level decisions use: the assessment's while it counts, else the
    /// engineer's.
    pub level: RiskLevel,
    /// The ballots, in the order the votes were given.
    pub ballots: Vec<Ballot>,
    /// Whether the assessment counts now, if there is one.
    pub assessment_standing: Option<Standing>,
    pub outcome: Decision,
}

impl Tally {
    /// What a change in `state` still needs before it is decided: nothing
    /// once it is out of review, or once the tally decides it.
    pub fn still_needed(&self, state: ChangeState) -> Vec<String> {
        match &self.outcome {
            Decision::Pending { needs } if approval::under_review(state) => needs.clone(),
            _ => Vec::new(),
        }
    }
}

/// Tallies a change of `change_type` that its engineer rated
/// `engineer_level`, under `policy`. `votes` are the current votes on the
/// current revision, oldest first; a vote whose choice is not a known one is
/// left out. An assessment that no longer counts does not set the level
/// either: a risk lowered by someone since disabled is the engineer's again.
pub fn tally(
    policy: &QuorumPolicy,
    change_type: ChangeType,
    engineer_level: RiskLevel,
    assessment: Option<&StoredAssessment<'_>>,
    votes: &[StoredVote<'_>],
) -> Tally {
    let assessor = assessment.map(|a| a.assessor);
    let ballots: Vec<Ballot> = votes
        .iter()
        .filter_map(|v| {
            Some(Ballot {
                voter: v.voter,
                choice: VoteChoice::parse(v.choice)?,
                standing: if Some(v.voter) == assessor {
                    Standing::Assessor
                } else {
                    standing_now(v.voter_now, Role::CabMember)
                },
            })
        })
        .collect();
    let assessment_standing =
        assessment.map(|a| standing_now(a.assessor_now, Role::SecurityReviewer));
    let counted = assessment.filter(|_| assessment_standing.is_some_and(Standing::counts));
    let level = counted
        .and_then(|a| RiskLevel::parse(a.assessed_level))
        .unwrap_or(engineer_level);
    let decision = counted.and_then(|a| AssessmentDecision::parse(a.decision));
    let outcome = approval::evaluate(policy, change_type, level, &ballots, decision);
    Tally {
        level,
        ballots,
        assessment_standing,
        outcome,
    }
}

/// `me`'s vote among the current votes, as stored: the first of theirs.
pub fn my_vote<'a>(votes: &[StoredVote<'a>], me: Uuid) -> Option<&'a str> {
    votes.iter().find(|v| v.voter == me).map(|v| v.choice)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChangeType::{Emergency, Normal};
    use RiskLevel::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn roles(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn active(roles: &[String]) -> Option<PersonNow<'_>> {
        Some(PersonNow {
            active: true,
            roles,
        })
    }

    fn disabled(roles: &[String]) -> Option<PersonNow<'_>> {
        Some(PersonNow {
            active: false,
            roles,
        })
    }

    fn vote<'a>(n: u128, choice: &'a str, now: Option<PersonNow<'a>>) -> StoredVote<'a> {
        StoredVote {
            voter: id(n),
            choice,
            voter_now: now,
        }
    }

    fn assessment<'a>(
        n: u128,
        decision: &'a str,
        level: &'a str,
        now: Option<PersonNow<'a>>,
    ) -> StoredAssessment<'a> {
        StoredAssessment {
            assessor: id(n),
            decision,
            assessed_level: level,
            assessor_now: now,
        }
    }

    fn pending(needs: &[&str]) -> Decision {
        Decision::Pending {
            needs: needs.iter().map(|n| (*n).to_owned()).collect(),
        }
    }

    #[test]
    fn standing_now_reads_the_person_as_stored() {
        let cab = roles(&["cab_member"]);
        let reviewer = roles(&["security_reviewer"]);
        let unknown = roles(&["cab_member", "wizard"]);
        let none: Vec<String> = vec![];
        let cases = [
            (None, Role::CabMember, Standing::Disabled),
            (active(&cab), Role::CabMember, Standing::Counts),
            (disabled(&cab), Role::CabMember, Standing::Disabled),
            (active(&reviewer), Role::CabMember, Standing::RoleWithdrawn),
            (active(&reviewer), Role::SecurityReviewer, Standing::Counts),
            (
                active(&cab),
                Role::SecurityReviewer,
                Standing::RoleWithdrawn,
            ),
            (active(&unknown), Role::CabMember, Standing::RoleWithdrawn),
            (active(&none), Role::CabMember, Standing::RoleWithdrawn),
            (disabled(&unknown), Role::CabMember, Standing::RoleWithdrawn),
        ];
        for (person, role, expected) in cases {
            assert_eq!(standing_now(person, role), expected, "{person:?} {role:?}");
        }
    }

    #[test]
    fn without_assessment_or_votes_the_engineers_level_decides() {
        let policy = QuorumPolicy::default();
        let t = tally(&policy, Normal, Medium, None, &[]);
        assert_eq!(t.level, Medium);
        assert_eq!(t.ballots, vec![]);
        assert_eq!(t.assessment_standing, None);
        assert_eq!(t.outcome, pending(&["2 more CAB approvals"]));
        let t = tally(&policy, Normal, Critical, None, &[]);
        assert_eq!(t.level, Critical);
        assert_eq!(
            t.outcome,
            pending(&["3 more CAB approvals", "an accepting security assessment"])
        );
    }

    #[test]
    fn a_counting_assessment_sets_the_level_and_its_decision_counts() {
        let policy = QuorumPolicy::default();
        let reviewer = roles(&["security_reviewer"]);
        let cab = roles(&["cab_member"]);
        let a = assessment(7, "accept", "low", active(&reviewer));
        let t = tally(&policy, Normal, High, Some(&a), &[]);
        assert_eq!(t.level, Low);
        assert_eq!(t.assessment_standing, Some(Standing::Counts));
        assert_eq!(t.outcome, pending(&["1 more CAB approval"]));

        let votes = [vote(3, "approve", active(&cab))];
        let t = tally(&policy, Normal, High, Some(&a), &votes);
        assert_eq!(t.outcome, Decision::Approved);

        let a = assessment(7, "reject", "high", active(&reviewer));
        let t = tally(&policy, Normal, High, Some(&a), &votes);
        assert_eq!(t.level, High);
        assert_eq!(
            t.outcome,
            Decision::Rejected {
                reason: "the security assessment rejected it".into()
            }
        );
    }

    #[test]
    fn an_assessment_that_no_longer_counts_neither_sets_the_level_nor_decides() {
        let policy = QuorumPolicy::default();
        let reviewer = roles(&["security_reviewer"]);
        let cab = roles(&["cab_member"]);
        for (now, standing) in [
            (disabled(&reviewer), Standing::Disabled),
            (active(&cab), Standing::RoleWithdrawn),
            (None, Standing::Disabled),
        ] {
            let a = assessment(7, "reject", "low", now);
            let t = tally(&policy, Normal, High, Some(&a), &[]);
            assert_eq!(t.assessment_standing, Some(standing));
            assert_eq!(t.level, High, "{standing:?}");
            assert_eq!(
                t.outcome,
                pending(&["2 more CAB approvals", "an accepting security assessment"]),
                "{standing:?}"
            );
        }
    }

    #[test]
    fn an_unreadable_assessed_level_leaves_the_engineers() {
        let policy = QuorumPolicy::default();
        let reviewer = roles(&["security_reviewer"]);
        let a = assessment(7, "accept", "severe", active(&reviewer));
        let t = tally(&policy, Normal, Medium, Some(&a), &[]);
        assert_eq!(t.level, Medium);
        assert_eq!(t.assessment_standing, Some(Standing::Counts));
        assert_eq!(t.outcome, pending(&["2 more CAB approvals"]));
        let a = assessment(7, "maybe", "low", active(&reviewer));
        let t = tally(&policy, Normal, High, Some(&a), &[]);
        assert_eq!(t.level, Low);
        assert_eq!(t.outcome, pending(&["1 more CAB approval"]));
        let t = tally(&policy, Normal, Critical, Some(&a), &[]);
        assert_eq!(
            t.outcome,
            pending(&["1 more CAB approval"]),
            "the level is the assessment's"
        );
    }

    #[test]
    fn each_ballot_has_its_voters_standing_now() {
        let policy = QuorumPolicy::default();
        let cab = roles(&["cab_member"]);
        let both = roles(&["cab_member", "security_reviewer"]);
        let reviewer = roles(&["security_reviewer"]);
        let a = assessment(7, "accept", "medium", active(&both));
        let votes = [
            vote(1, "approve", active(&cab)),
            vote(2, "reject", disabled(&cab)),
            vote(3, "request_changes", active(&reviewer)),
            vote(4, "approve", None),
            vote(5, "abstain", active(&cab)),
            vote(7, "reject", active(&both)),
            vote(8, "approve", active(&both)),
        ];
        let t = tally(&policy, Normal, Medium, Some(&a), &votes);
        let got: Vec<(Uuid, VoteChoice, Standing)> = t
            .ballots
            .iter()
            .map(|b| (b.voter, b.choice, b.standing))
            .collect();
        assert_eq!(
            got,
            vec![
                (id(1), VoteChoice::Approve, Standing::Counts),
                (id(2), VoteChoice::Reject, Standing::Disabled),
                (id(3), VoteChoice::RequestChanges, Standing::RoleWithdrawn),
                (id(4), VoteChoice::Approve, Standing::Disabled),
                (id(7), VoteChoice::Reject, Standing::Assessor),
                (id(8), VoteChoice::Approve, Standing::Counts),
            ]
        );
        // Only 1 and 8 count, both approving: medium needs two.
        assert_eq!(t.outcome, Decision::Approved);
    }

    #[test]
    fn the_assessor_never_counts_as_a_voter_even_when_no_longer_counted_as_assessor() {
        let policy = QuorumPolicy::default();
        let cab = roles(&["cab_member"]);
        // The assessor has lost the reviewer role but is a CAB member: the
        // vote is still theirs as assessor.
        let a = assessment(7, "accept", "low", active(&cab));
        let votes = [vote(7, "approve", active(&cab))];
        let t = tally(&policy, Normal, Low, Some(&a), &votes);
        assert_eq!(t.ballots[0].standing, Standing::Assessor);
        assert_eq!(t.assessment_standing, Some(Standing::RoleWithdrawn));
        assert_eq!(t.outcome, pending(&["1 more CAB approval"]));
        // Without the assessment the same vote counts.
        let t = tally(&policy, Normal, Low, None, &votes);
        assert_eq!(t.ballots[0].standing, Standing::Counts);
        assert_eq!(t.outcome, Decision::Approved);
    }

    #[test]
    fn the_change_type_picks_the_rule() {
        let policy = QuorumPolicy::default();
        let t = tally(&policy, Emergency, Critical, None, &[]);
        assert_eq!(
            t.outcome,
            pending(&["2 more CAB approvals", "an accepting security assessment"])
        );
        let t = tally(&policy, Emergency, Low, None, &[]);
        assert_eq!(
            t.outcome,
            pending(&["1 more CAB approval", "an accepting security assessment"])
        );
    }

    #[test]
    fn still_needed_only_while_under_review_and_pending() {
        let policy = QuorumPolicy::default();
        let t = tally(&policy, Normal, Low, None, &[]);
        for state in ChangeState::ALL.iter().copied() {
            let expected: Vec<String> = if approval::under_review(state) {
                vec!["1 more CAB approval".into()]
            } else {
                vec![]
            };
            assert_eq!(t.still_needed(state), expected, "{state:?}");
        }
        let cab = roles(&["cab_member"]);
        let votes = [vote(1, "approve", active(&cab))];
        let t = tally(&policy, Normal, Low, None, &votes);
        assert_eq!(t.outcome, Decision::Approved);
        assert_eq!(
            t.still_needed(ChangeState::InCabReview),
            Vec::<String>::new()
        );
        let votes = [vote(1, "request_changes", active(&cab))];
        let t = tally(&policy, Normal, Low, None, &votes);
        assert_eq!(t.outcome, Decision::ChangesRequested);
        assert_eq!(t.still_needed(ChangeState::Submitted), Vec::<String>::new());
    }

    #[test]
    fn my_vote_is_my_first_current_vote_as_stored() {
        let votes = [
            vote(1, "approve", None),
            vote(2, "abstain", None),
            vote(2, "reject", None),
        ];
        assert_eq!(my_vote(&votes, id(1)), Some("approve"));
        assert_eq!(my_vote(&votes, id(2)), Some("abstain"));
        assert_eq!(my_vote(&votes, id(3)), None);
        assert_eq!(my_vote(&[], id(1)), None);
    }
}
