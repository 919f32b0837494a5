//! The life of a change as one state machine. [`next`] takes the facts of a
//! change, who acts, what happened and the time, and says whether it may
//! happen, the state it leads to, what else is written with the state and
//! which audit event records it. It is the only place a change's state is
//! decided; the store writes what it says.

use chrono::{DateTime, Duration, Utc};

use crate::approval::{Decision, Duty, check_duty, is_material, under_review};
use crate::audit::AuditAction;
use crate::change::{
    ChangeAction, ChangeFacts, ChangeState, ChangeType, check_action, check_authorship, closed,
    deployed, field_names,
};
use crate::deployment::DeploymentState;
use crate::review::{CloseCode, check_close, check_close_code};
use crate::standard_template::{TemplateAction, TemplateState, check_template_action};
use crate::{Actor, Denial, Role};

/// How long after approval an emergency change's retrospective is due.
pub const RETROSPECTIVE_DUE: Duration = Duration::hours(72);

/// The review note of a change a CAB member sent back to its authors.
pub const CHANGES_REQUESTED_NOTE: &str = "A CAB member requested changes.";

/// What happens to a change.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Its authors submit it; `standard` is set when it was made from a
    /// standard-change template. A standard change from an approved template
    /// that stays within the template's scope is approved by being
    /// submitted: that approval is this event's outcome, not an event of
    /// its own.
    Submit { standard: Option<Standard> },
    /// Its authors withdraw it.
    Withdraw,
    /// A CAB member, release manager or administrator cancels it.
    Cancel,
    /// A security reviewer takes it into assessment.
    StartAssessment,
    /// A security reviewer recorded an assessment that accepts it or not.
    Assessed { accepts: bool },
    /// The quorum was counted after a vote or an assessment.
    Tallied(Decision),
    /// Its authors saved new content; `fields` are the names of the fields
    /// that differ (empty when nothing did).
    Edited { fields: Vec<String> },
    /// A production deployment of it reached this state. The gate decided
    /// who may deploy; this only moves the change along.
    Deployed(DeploymentState),
    /// A person closes it with the code that says how it ended.
    Close(CloseCode),
    /// Its window passed and it never reached production: CAB closes it on
    /// its own, as not implemented. Nobody acts, so nobody is checked.
    Lapsed,
}

impl Event {
    /// The audit word of the attempt, as a refusal records it.
    pub fn attempted(&self) -> &'static str {
        match self {
            Event::Submit { .. } => ChangeAction::Submit.as_str(),
            Event::Withdraw => ChangeAction::Withdraw.as_str(),
            Event::Cancel => ChangeAction::Cancel.as_str(),
            Event::Edited { .. } => ChangeAction::Edit.as_str(),
            Event::StartAssessment | Event::Assessed { .. } => Duty::Assess.as_str(),
            Event::Tallied(_) => Duty::Vote.as_str(),
            Event::Deployed(_) => crate::audit::Attempt::DeploymentReport.as_str(),
            Event::Close(_) | Event::Lapsed => crate::audit::Attempt::ChangeClose.as_str(),
        }
    }
}

/// What a standard change's submission depends on: its template's state
/// (`None` when it cannot be read) and the fields in which the change goes
/// beyond what the template allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standard {
    pub template: Option<TemplateState>,
    pub outside_scope: Vec<String>,
}

/// The change an event happens to.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub facts: &'a ChangeFacts,
    pub change_type: ChangeType,
    pub revision: i32,
}

/// What an allowed event does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: ChangeState,
    pub to: ChangeState,
    /// The change's revision afterwards.
    pub revision: i32,
    /// `None`: the state row is not written.
    pub write: Option<StateWrite>,
    /// The event that records it; `None` when there is none, or when the
    /// caller records its own (an edit, an assessment).
    pub audit: Option<AuditAction>,
}

/// What is written with the new state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateWrite {
    /// The state alone.
    Move,
    /// The revision and the time of submission; `first` when it is the
    /// first submission, which makes revision 1.
    Submitted { first: bool },
    /// The time it closed.
    Closed,
    /// The decision: its time, the revision approved, when the
    /// retrospective is due, whether it closes the change and whether it is
    /// also a submission.
    Decided {
        approved_revision: Option<i32>,
        retrospective_due: Option<DateTime<Utc>>,
        closes: bool,
        submitted: bool,
    },
    /// Back to its authors or to review: the note says why, and an earlier
    /// decision is cleared. `stricter_policy` when it is decided again under
    /// the stricter of its policy and today's.
    Reopened { note: String, stricter_policy: bool },
}

/// Whether `actor` may make `event` happen to the change, and what it does.
/// The checks run in the order each surface has always shown: who may act
/// first, then whether the state allows it, then the event's own facts.
pub fn next(
    subject: &Subject<'_>,
    actor: &Actor,
    event: &Event,
    now: DateTime<Utc>,
) -> Result<Transition, Denial> {
    let from = subject.facts.state;
    let stay = Transition {
        from,
        to: from,
        revision: subject.revision,
        write: None,
        audit: None,
    };
    let moved = |to, write, audit| Transition {
        to,
        write: Some(write),
        audit,
        ..stay.clone()
    };
    match event {
        Event::Submit { standard } => submit(subject, actor, standard.as_ref()),
        Event::Withdraw => {
            check_authorship(subject.facts, actor)?;
            if let Some(d) = deployed(from) {
                return Err(d);
            }
            match from {
                s if s.carries_approval() => Err(Denial::new(
                    "invalid_transition",
                    "This change has been approved; it can be cancelled, not withdrawn.",
                )),
                s if s.is_closed() => Err(closed(s)),
                _ => Ok(moved(
                    ChangeState::Withdrawn,
                    StateWrite::Closed,
                    Some(AuditAction::ChangeWithdrawn),
                )),
            }
        }
        Event::Cancel => {
            let may_cancel = [Role::CabMember, Role::ReleaseManager, Role::Admin]
                .iter()
                .any(|r| actor.roles.contains(*r));
            if !may_cancel || actor.is_service {
                return Err(Denial::new(
                    "cancel_not_allowed",
                    "Only CAB members, release managers and administrators cancel changes; authors withdraw theirs.",
                ));
            }
            if from.is_closed() {
                return Err(closed(from));
            }
            if let Some(d) = deployed(from) {
                return Err(d);
            }
            Ok(moved(
                ChangeState::Cancelled,
                StateWrite::Closed,
                Some(AuditAction::ChangeCancelled),
            ))
        }
        Event::StartAssessment => {
            check_duty(subject.facts, actor, Duty::Assess)?;
            if from != ChangeState::Submitted {
                return Err(Denial::new(
                    "invalid_transition",
                    format!(
                        "This change is {}; only a submitted change is taken into assessment.",
                        from.label().to_lowercase()
                    ),
                ));
            }
            Ok(moved(
                ChangeState::InAssessment,
                StateWrite::Move,
                Some(AuditAction::AssessmentStarted),
            ))
        }
        Event::Assessed { accepts } => {
            check_duty(subject.facts, actor, Duty::Assess)?;
            if *accepts && from != ChangeState::InCabReview {
                // The assessment records itself; the move has no event.
                return Ok(moved(ChangeState::InCabReview, StateWrite::Move, None));
            }
            Ok(stay)
        }
        Event::Tallied(decision) => {
            if !under_review(from) {
                return Err(Denial::new(
                    "invalid_transition",
                    format!(
                        "This change is {}; it is not awaiting a decision.",
                        from.label().to_lowercase()
                    ),
                ));
            }
            Ok(match decision {
                Decision::Approved => moved(
                    ChangeState::Approved,
                    StateWrite::Decided {
                        approved_revision: Some(subject.revision),
                        retrospective_due: (subject.change_type == ChangeType::Emergency)
                            .then(|| now + RETROSPECTIVE_DUE),
                        closes: false,
                        submitted: false,
                    },
                    Some(AuditAction::ChangeApproved),
                ),
                Decision::Rejected { .. } => moved(
                    ChangeState::Rejected,
                    StateWrite::Decided {
                        approved_revision: None,
                        retrospective_due: None,
                        closes: true,
                        submitted: false,
                    },
                    Some(AuditAction::ChangeRejected),
                ),
                Decision::ChangesRequested => moved(
                    ChangeState::ChangesRequested,
                    StateWrite::Reopened {
                        note: CHANGES_REQUESTED_NOTE.into(),
                        stricter_policy: false,
                    },
                    Some(AuditAction::ChangesRequested),
                ),
                Decision::Pending { .. } => stay,
            })
        }
        Event::Edited { fields } => edited(subject, actor, fields),
        Event::Deployed(outcome) => {
            let to = match (from, outcome) {
                // Approved, or (through a break-glass) still in review: what
                // runs in production is what it is until it ends.
                (s, DeploymentState::Started) if s != ChangeState::Draft && !s.is_closed() => {
                    ChangeState::Implementing
                }
                (ChangeState::Implementing, DeploymentState::Succeeded) => ChangeState::Implemented,
                (
                    ChangeState::Implementing | ChangeState::Implemented,
                    DeploymentState::Failed | DeploymentState::RolledBack,
                ) => ChangeState::ImplementationFailed,
                // Authorizations that expire or are aborted leave it where
                // it is, and so does a report on a change closed meanwhile.
                _ => return Ok(stay),
            };
            Ok(if to == from {
                stay
            } else {
                moved(to, StateWrite::Move, None)
            })
        }
        Event::Close(code) => {
            check_close(subject.facts, actor)?;
            check_close_code(from, *code)?;
            Ok(moved(
                ChangeState::Closed,
                StateWrite::Closed,
                Some(AuditAction::ChangeClosed),
            ))
        }
        Event::Lapsed => Ok(if from == ChangeState::Approved {
            moved(
                ChangeState::Closed,
                StateWrite::Closed,
                Some(AuditAction::ChangeClosed),
            )
        } else {
            stay
        }),
    }
}

fn submit(
    subject: &Subject<'_>,
    actor: &Actor,
    standard: Option<&Standard>,
) -> Result<Transition, Denial> {
    let from = subject.facts.state;
    check_authorship(subject.facts, actor)?;
    match from {
        ChangeState::Draft | ChangeState::ChangesRequested => {}
        s if s.is_closed() => return Err(closed(s)),
        _ => {
            return Err(Denial::new(
                "invalid_transition",
                "This change has already been submitted.",
            ));
        }
    }
    // A first submission makes revision 1; a resubmission keeps the
    // revision its edits made.
    let first = subject.revision == 0;
    let revision = if first { 1 } else { subject.revision };
    if let Some(standard) = standard {
        check_template_action(actor, standard.template, None, TemplateAction::Use)?;
        if standard.outside_scope.is_empty() {
            return Ok(Transition {
                from,
                to: ChangeState::Approved,
                revision,
                write: Some(StateWrite::Decided {
                    approved_revision: Some(revision),
                    retrospective_due: None,
                    closes: false,
                    submitted: true,
                }),
                audit: Some(AuditAction::ChangeApproved),
            });
        }
    }
    Ok(Transition {
        from,
        to: ChangeState::Submitted,
        revision,
        write: Some(StateWrite::Submitted { first }),
        audit: Some(if first {
            AuditAction::ChangeSubmitted
        } else {
            AuditAction::ChangeResubmitted
        }),
    })
}

/// An edit under review calls for fresh votes and a fresh assessment, as
/// both belong to a revision. Once approved, only an edit to what was
/// approved does (see [`is_material`]); an editorial one keeps the
/// approval. Every edit after submission makes a new revision.
fn edited(subject: &Subject<'_>, actor: &Actor, fields: &[String]) -> Result<Transition, Denial> {
    let from = check_action(subject.facts, actor, ChangeAction::Edit)?;
    let mut t = Transition {
        from,
        to: from,
        revision: subject.revision,
        write: None,
        audit: None,
    };
    if fields.is_empty() {
        return Ok(t);
    }
    if from != ChangeState::Draft {
        t.revision += 1;
    }
    let approved = from.carries_approval();
    let named: Vec<&str> = fields
        .iter()
        .map(String::as_str)
        .filter(|f| !approved || is_material(f))
        .collect();
    if (under_review(from) || approved) && !named.is_empty() {
        t.to = ChangeState::Submitted;
        t.write = Some(StateWrite::Reopened {
            note: format!(
                "Revision {} changed {} after {}; earlier votes and the assessment no longer count, so the change is back in review.",
                t.revision,
                field_names(&named),
                if approved { "approval" } else { "submission" },
            ),
            stricter_policy: approved,
        });
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use uuid::Uuid;

    use super::*;
    use crate::RoleSet;

    /// The kinds of actor whose rights differ. The change's author is 1 and
    /// its contributors are 2 and 3; 12 has voted on it and 14 assessed it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    enum Kind {
        /// The author: an engineer.
        Au,
        /// A contributor who also holds cab_member.
        AuC,
        /// A pipeline named as a contributor.
        PiC,
        En,
        Sr,
        /// A security reviewer who has voted on it.
        SrV,
        Cm,
        /// A CAB member who has assessed it.
        CmA,
        Rm,
        Ad,
        /// A pipeline holding the CAB member and release manager roles.
        Sv,
        Aud,
    }
    use Kind::*;

    const KINDS: [Kind; 12] = [Au, AuC, PiC, En, Sr, SrV, Cm, CmA, Rm, Ad, Sv, Aud];
    const AUTHORS: &[Kind] = &[Au, AuC, PiC];
    const OTHERS: &[Kind] = &[En, Sr, SrV, Cm, CmA, Rm, Ad, Sv, Aud];
    const ALL: &[Kind] = &KINDS;
    /// Who closes a change: its author and contributors, CAB members,
    /// release managers and administrators, never a pipeline.
    const CLOSERS: &[Kind] = &[Au, AuC, Cm, CmA, Rm, Ad];
    const PIPELINES: &[Kind] = &[PiC, Sv];
    const NOT_CLOSERS: &[Kind] = &[En, Sr, SrV, Aud];

    fn actor(kind: Kind) -> Actor {
        let (id, roles, is_service): (u128, &[Role], bool) = match kind {
            Au => (1, &[Role::Engineer], false),
            AuC => (2, &[Role::Engineer, Role::CabMember], false),
            PiC => (3, &[Role::Engineer], true),
            En => (10, &[Role::Engineer], false),
            Sr => (11, &[Role::SecurityReviewer], false),
            SrV => (12, &[Role::SecurityReviewer], false),
            Cm => (13, &[Role::CabMember], false),
            CmA => (14, &[Role::CabMember], false),
            Rm => (15, &[Role::ReleaseManager], false),
            Ad => (16, &[Role::Admin], false),
            Sv => (17, &[Role::CabMember, Role::ReleaseManager], true),
            Aud => (18, &[Role::Auditor], false),
        };
        Actor {
            id: Uuid::from_u128(id),
            roles: roles.iter().copied().collect::<RoleSet>(),
            is_service,
        }
    }

    fn facts(state: ChangeState) -> ChangeFacts {
        ChangeFacts {
            state,
            author: Uuid::from_u128(1),
            contributors: vec![Uuid::from_u128(2), Uuid::from_u128(3)],
            assessors: vec![Uuid::from_u128(14)],
            voters: vec![Uuid::from_u128(12)],
        }
    }

    /// The revision a change in `state` has in the table: 0 for a draft,
    /// 2 once it has been submitted and edited.
    fn revision(state: ChangeState) -> i32 {
        if state == ChangeState::Draft { 0 } else { 2 }
    }

    fn standard(template: Option<TemplateState>, outside: &[&str]) -> Event {
        Event::Submit {
            standard: Some(Standard {
                template,
                outside_scope: outside.iter().map(|f| f.to_string()).collect(),
            }),
        }
    }

    fn edited(fields: &[&str]) -> Event {
        Event::Edited {
            fields: fields.iter().map(|f| f.to_string()).collect(),
        }
    }

    /// The events of the table, one of each kind of fact that matters.
    fn events() -> Vec<Event> {
        use TemplateState::*;
        vec![
            Event::Submit { standard: None },
            standard(Some(Approved), &["services"]),
            standard(Some(Approved), &[]),
            standard(Some(Proposed), &[]),
            standard(Some(Retired), &[]),
            standard(None, &[]),
            Event::Withdraw,
            Event::Cancel,
            edited(&[]),
            edited(&["title", "priority"]),
            edited(&["title", "services"]),
            Event::StartAssessment,
            Event::Assessed { accepts: true },
            Event::Assessed { accepts: false },
            Event::Tallied(Decision::Approved),
            Event::Tallied(Decision::Rejected {
                reason: "a CAB member rejected it".into(),
            }),
            Event::Tallied(Decision::ChangesRequested),
            Event::Tallied(Decision::Pending {
                needs: vec!["1 more CAB approval".into()],
            }),
            Event::Deployed(DeploymentState::Started),
            Event::Deployed(DeploymentState::Succeeded),
            Event::Deployed(DeploymentState::Failed),
            Event::Deployed(DeploymentState::RolledBack),
            Event::Deployed(DeploymentState::Aborted),
            Event::Close(CloseCode::Successful),
            Event::Close(CloseCode::SuccessfulWithIssues),
            Event::Close(CloseCode::FailedRolledBack),
            Event::Close(CloseCode::FailedNotRolledBack),
            Event::Close(CloseCode::NotImplemented),
            Event::Lapsed,
        ]
    }

    /// Which kind of event it is; a new variant fails to compile here until
    /// the table says what it does.
    fn variant(e: &Event) -> &'static str {
        match e {
            Event::Submit { .. } => "submit",
            Event::Withdraw => "withdraw",
            Event::Cancel => "cancel",
            Event::StartAssessment => "start_assessment",
            Event::Assessed { .. } => "assessed",
            Event::Tallied(_) => "tallied",
            Event::Edited { .. } => "edited",
            Event::Deployed(_) => "deployed",
            Event::Close(_) => "close",
            Event::Lapsed => "lapsed",
        }
    }

    const STATES: [ChangeState; 13] = [
        ChangeState::Draft,
        ChangeState::Submitted,
        ChangeState::InAssessment,
        ChangeState::InCabReview,
        ChangeState::ChangesRequested,
        ChangeState::Approved,
        ChangeState::Rejected,
        ChangeState::Withdrawn,
        ChangeState::Cancelled,
        ChangeState::Implementing,
        ChangeState::Implemented,
        ChangeState::ImplementationFailed,
        ChangeState::Closed,
    ];

    fn state(code: &str) -> ChangeState {
        match code {
            "Su" => ChangeState::Submitted,
            "IA" => ChangeState::InAssessment,
            "ICR" => ChangeState::InCabReview,
            "CR" => ChangeState::ChangesRequested,
            "Ap" => ChangeState::Approved,
            "Rj" => ChangeState::Rejected,
            "Wd" => ChangeState::Withdrawn,
            "Ca" => ChangeState::Cancelled,
            "Im" => ChangeState::Implementing,
            "Id" => ChangeState::Implemented,
            "IF" => ChangeState::ImplementationFailed,
            "Cl" => ChangeState::Closed,
            other => panic!("unknown state {other}"),
        }
    }

    /// Reads a cell: `!code` (or `!!code`, not recorded by the server today)
    /// is a refusal, `—` an event that cannot happen in that state; otherwise
    /// `<to> <write> <audit> <revision>`, where `<to>` is `=` (stays),
    /// `→X` or `↺X` (moves with a reopen), `<write>` one of `-`, `move`,
    /// `first`, `again`, `close`, `approve`, `template`, `reject`, `reopen`,
    /// `reopen+` (under the stricter policy), and `<audit>` the audit word
    /// without `change.`, or `-`.
    fn expected(cell: &str, from: ChangeState) -> Result<Transition, &str> {
        if cell == "—" {
            return Err("invalid_transition");
        }
        if let Some(code) = cell.strip_prefix('!') {
            return Err(code.trim_start_matches('!'));
        }
        let parts: Vec<&str> = cell.split(' ').collect();
        let [to, write, audit, rev] = parts[..] else {
            panic!("bad cell {cell}")
        };
        let revision: i32 = rev.parse().expect("a revision");
        let to = match to {
            "=" => from,
            _ => state(to.trim_start_matches(['→', '↺'])),
        };
        let write = match write {
            "-" => None,
            "move" => Some(StateWrite::Move),
            "first" => Some(StateWrite::Submitted { first: true }),
            "again" => Some(StateWrite::Submitted { first: false }),
            "close" => Some(StateWrite::Closed),
            "approve" | "template" => Some(StateWrite::Decided {
                approved_revision: Some(revision),
                retrospective_due: None,
                closes: false,
                submitted: write == "template",
            }),
            "reject" => Some(StateWrite::Decided {
                approved_revision: None,
                retrospective_due: None,
                closes: true,
                submitted: false,
            }),
            // The notes are pinned by their own test.
            "reopen" | "reopen+" => Some(StateWrite::Reopened {
                note: String::new(),
                stricter_policy: write == "reopen+",
            }),
            other => panic!("unknown write {other}"),
        };
        let audit = match audit {
            "-" => None,
            word => Some(
                AuditAction::parse(&format!("change.{word}"))
                    .unwrap_or_else(|| panic!("unknown audit word {word}")),
            ),
        };
        Ok(Transition {
            from,
            to,
            revision,
            write,
            audit,
        })
    }

    fn without_note(mut t: Transition) -> Transition {
        if let Some(StateWrite::Reopened { note, .. }) = &mut t.write {
            assert!(!note.is_empty());
            note.clear();
        }
        t
    }

    #[test]
    fn every_state_event_and_actor() {
        let inv = "!invalid_transition";
        let closed = "!change_closed";
        let nur = "!not_under_review";
        let na = "!not_approved";
        let mis = "!close_code_mismatch";
        let und = "!deployment_under_way";
        let ok = "→Cl close closed 2";
        let every = |c: &'static str| [c; 13];
        let ev = events();
        // (event, who, Dr Su IA ICR CR Ap Rj Wd Ca Im Id IF Cl)
        #[rustfmt::skip]
        let table: Vec<(usize, &[Kind], [&str; 13])> = vec![
            // Submit: none, approved template beyond its scope, approved
            // template within it, proposed, retired, unreadable.
            (0, AUTHORS, ["→Su first submitted 1", inv, inv, inv, "→Su again resubmitted 2", inv, closed, closed, closed, inv, inv, inv, closed]),
            (1, AUTHORS, ["→Su first submitted 1", inv, inv, inv, "→Su again resubmitted 2", inv, closed, closed, closed, inv, inv, inv, closed]),
            (2, AUTHORS, ["→Ap template approved 1", inv, inv, inv, "→Ap template approved 2", inv, closed, closed, closed, inv, inv, inv, closed]),
            (3, AUTHORS, ["!template_not_approved", inv, inv, inv, "!template_not_approved", inv, closed, closed, closed, inv, inv, inv, closed]),
            (4, AUTHORS, ["!template_retired", inv, inv, inv, "!template_retired", inv, closed, closed, closed, inv, inv, inv, closed]),
            (5, AUTHORS, ["!template_not_approved", inv, inv, inv, "!template_not_approved", inv, closed, closed, closed, inv, inv, inv, closed]),
            (0, OTHERS, every("!not_author")),
            (1, OTHERS, every("!not_author")),
            (2, OTHERS, every("!not_author")),
            (3, OTHERS, every("!not_author")),
            (4, OTHERS, every("!not_author")),
            (5, OTHERS, every("!not_author")),
            // Withdraw.
            (6, AUTHORS, ["→Wd close withdrawn 0", "→Wd close withdrawn 2", "→Wd close withdrawn 2", "→Wd close withdrawn 2", "→Wd close withdrawn 2", inv, closed, closed, closed, "!deployment_under_way", "!change_deployed", inv, closed]),
            (6, OTHERS, every("!not_author")),
            // Cancel: the role is checked before the state.
            (7, &[AuC, Cm, CmA, Rm, Ad], ["→Ca close cancelled 0", "→Ca close cancelled 2", "→Ca close cancelled 2", "→Ca close cancelled 2", "→Ca close cancelled 2", "→Ca close cancelled 2", closed, closed, closed, "!deployment_under_way", "!change_deployed", "→Ca close cancelled 2", closed]),
            (7, &[Au, PiC, En, Sr, SrV, Sv, Aud], every("!cancel_not_allowed")),
            // Edited: nothing, editorial fields only, a material field too.
            (8, AUTHORS, ["= - - 0", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "= - - 2", closed, closed, closed, "!deployment_under_way", "!change_deployed", "= - - 2", closed]),
            (9, AUTHORS, ["= - - 0", "↺Su reopen - 3", "↺Su reopen - 3", "↺Su reopen - 3", "= - - 3", "= - - 3", closed, closed, closed, "!deployment_under_way", "!change_deployed", "= - - 3", closed]),
            (10, AUTHORS, ["= - - 0", "↺Su reopen - 3", "↺Su reopen - 3", "↺Su reopen - 3", "= - - 3", "↺Su reopen+ - 3", closed, closed, closed, "!deployment_under_way", "!change_deployed", "↺Su reopen+ - 3", closed]),
            (8, OTHERS, every("!not_author")),
            (9, OTHERS, every("!not_author")),
            (10, OTHERS, every("!not_author")),
            // StartAssessment and Assessed share the duty's refusals.
            (11, &[Sv, PiC], every("!service_account")),
            (11, &[Au, AuC], every("!self_assessment")),
            (11, &[SrV], every("!voter_cannot_assess")),
            (11, &[En, Cm, CmA, Rm, Ad, Aud], every("!security_reviewer_required")),
            (11, &[Sr], [nur, "→IA move assessment_started 2", "!!invalid_transition", "!!invalid_transition", nur, nur, nur, nur, nur, nur, nur, nur, nur]),
            (12, &[Sv, PiC], every("!service_account")),
            (12, &[Au, AuC], every("!self_assessment")),
            (12, &[SrV], every("!voter_cannot_assess")),
            (12, &[En, Cm, CmA, Rm, Ad, Aud], every("!security_reviewer_required")),
            (12, &[Sr], [nur, "→ICR move - 2", "→ICR move - 2", "= - - 2", nur, nur, nur, nur, nur, nur, nur, nur, nur]),
            (13, &[Sv, PiC], every("!service_account")),
            (13, &[Au, AuC], every("!self_assessment")),
            (13, &[SrV], every("!voter_cannot_assess")),
            (13, &[En, Cm, CmA, Rm, Ad, Aud], every("!security_reviewer_required")),
            (13, &[Sr], [nur, "= - - 2", "= - - 2", "= - - 2", nur, nur, nur, nur, nur, nur, nur, nur, nur]),
            // Tallied: whoever's vote or assessment led to it.
            (14, ALL, ["—", "→Ap approve approved 2", "→Ap approve approved 2", "→Ap approve approved 2", "—", "—", "—", "—", "—", "—", "—", "—", "—"]),
            (15, ALL, ["—", "→Rj reject rejected 2", "→Rj reject rejected 2", "→Rj reject rejected 2", "—", "—", "—", "—", "—", "—", "—", "—", "—"]),
            (16, ALL, ["—", "↺CR reopen changes_requested 2", "↺CR reopen changes_requested 2", "↺CR reopen changes_requested 2", "—", "—", "—", "—", "—", "—", "—", "—", "—"]),
            (17, ALL, ["—", "= - - 2", "= - - 2", "= - - 2", "—", "—", "—", "—", "—", "—", "—", "—", "—"]),
            // A production deployment moves an approved change along, and
            // leaves any other where it is.
            (18, ALL, ["= - - 0", "→Im move - 2", "→Im move - 2", "→Im move - 2", "→Im move - 2", "→Im move - 2", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "→Im move - 2", "→Im move - 2", "= - - 2"]),
            (19, ALL, ["= - - 0", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "→Id move - 2", "= - - 2", "= - - 2", "= - - 2"]),
            (20, ALL, ["= - - 0", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "→IF move - 2", "→IF move - 2", "= - - 2", "= - - 2"]),
            (21, ALL, ["= - - 0", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "→IF move - 2", "→IF move - 2", "= - - 2", "= - - 2"]),
            (22, ALL, ["= - - 0", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "= - - 2"]),
            // Close: who may close is checked before the state; an approved
            // change that never reached production is not implemented, a
            // deployed one ended in success or failure, a failed deployment
            // in failure, and nothing else has a close code.
            (23, CLOSERS, [na, na, na, na, na, mis, closed, closed, closed, und, ok, mis, closed]),
            (24, CLOSERS, [na, na, na, na, na, mis, closed, closed, closed, und, ok, mis, closed]),
            (25, CLOSERS, [na, na, na, na, na, mis, closed, closed, closed, und, ok, ok, closed]),
            (26, CLOSERS, [na, na, na, na, na, mis, closed, closed, closed, und, ok, ok, closed]),
            (27, CLOSERS, [na, na, na, na, na, ok, closed, closed, closed, und, mis, mis, closed]),
            (23, PIPELINES, every("!service_account")),
            (24, PIPELINES, every("!service_account")),
            (25, PIPELINES, every("!service_account")),
            (26, PIPELINES, every("!service_account")),
            (27, PIPELINES, every("!service_account")),
            (23, NOT_CLOSERS, every("!close_not_allowed")),
            (24, NOT_CLOSERS, every("!close_not_allowed")),
            (25, NOT_CLOSERS, every("!close_not_allowed")),
            (26, NOT_CLOSERS, every("!close_not_allowed")),
            (27, NOT_CLOSERS, every("!close_not_allowed")),
            // Lapsed: nobody acts; only an approved change is closed by it.
            (28, ALL, ["= - - 0", "= - - 2", "= - - 2", "= - - 2", "= - - 2", ok, "= - - 2", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "= - - 2", "= - - 2"]),
        ];
        let now: DateTime<Utc> = "2026-03-01T12:00:00Z".parse().expect("a time");
        let mut seen = HashSet::new();
        for (event, kinds, cells) in &table {
            for kind in *kinds {
                for (from, cell) in STATES.iter().zip(cells) {
                    assert!(
                        seen.insert((*event, *kind, *from)),
                        "twice: {event} {kind:?} {from:?}"
                    );
                    let facts = facts(*from);
                    let subject = Subject {
                        facts: &facts,
                        change_type: ChangeType::Normal,
                        revision: revision(*from),
                    };
                    let got = next(&subject, &actor(*kind), &ev[*event], now);
                    let got = got.map(without_note).map_err(|d| d.code);
                    assert_eq!(
                        got,
                        expected(cell, *from),
                        "{:?} by {kind:?} on {from:?}",
                        ev[*event]
                    );
                }
            }
        }
        assert_eq!(seen.len(), ev.len() * KINDS.len() * STATES.len());
        assert_eq!(STATES.to_vec(), ChangeState::ALL.to_vec());
        // Every kind of event, template state and tally is in the table.
        let variants: HashSet<&str> = ev.iter().map(variant).collect();
        assert_eq!(variants.len(), 10);
        let templates: HashSet<Option<&str>> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Submit { standard: Some(s) } => Some(s.template.map(|t| t.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(templates.len(), 4);
        let tallies = ev.iter().filter(|e| matches!(e, Event::Tallied(_))).count();
        assert_eq!(tallies, 4);
    }

    #[test]
    fn check_action_says_what_next_says() {
        for from in STATES {
            let facts = facts(from);
            for kind in KINDS {
                for (action, event) in [
                    (ChangeAction::Submit, Event::Submit { standard: None }),
                    (ChangeAction::Withdraw, Event::Withdraw),
                    (ChangeAction::Cancel, Event::Cancel),
                ] {
                    for revision in [0, 4] {
                        let subject = Subject {
                            facts: &facts,
                            change_type: ChangeType::Emergency,
                            revision,
                        };
                        let who = actor(kind);
                        let now = DateTime::UNIX_EPOCH + Duration::days(9000);
                        assert_eq!(
                            check_action(&facts, &who, action),
                            next(&subject, &who, &event, now).map(|t| t.to),
                            "{action:?} by {kind:?} on {from:?}"
                        );
                    }
                }
            }
        }
    }

    fn note(from: ChangeState, fields: &[&str]) -> Option<StateWrite> {
        let facts = facts(from);
        let subject = Subject {
            facts: &facts,
            change_type: ChangeType::Normal,
            revision: 4,
        };
        next(&subject, &actor(Au), &edited(fields), DateTime::UNIX_EPOCH)
            .expect("an author edits")
            .write
    }

    #[test]
    fn a_reopened_change_says_which_fields_sent_it_back() {
        let reopened = |note: &str, stricter_policy| {
            Some(StateWrite::Reopened {
                note: note.into(),
                stricter_policy,
            })
        };
        assert_eq!(
            note(
                ChangeState::InCabReview,
                &["title", "services", "window_end"]
            ),
            reopened(
                "Revision 5 changed title, affected services and window end after submission; earlier votes and the assessment no longer count, so the change is back in review.",
                false
            )
        );
        assert_eq!(
            note(ChangeState::Submitted, &["priority"]),
            reopened(
                "Revision 5 changed priority after submission; earlier votes and the assessment no longer count, so the change is back in review.",
                false
            )
        );
        // After approval only what was approved is named.
        assert_eq!(
            note(ChangeState::Approved, &["title", "services", "impact"]),
            reopened(
                "Revision 5 changed affected services and impact after approval; earlier votes and the assessment no longer count, so the change is back in review.",
                true
            )
        );
        assert_eq!(note(ChangeState::Approved, &["description"]), None);
        // A field added later is material: it sends an approved change back.
        assert_eq!(
            note(ChangeState::Approved, &["blast_radius"]),
            reopened(
                "Revision 5 changed another field after approval; earlier votes and the assessment no longer count, so the change is back in review.",
                true
            )
        );
        let facts = facts(ChangeState::InAssessment);
        let subject = Subject {
            facts: &facts,
            change_type: ChangeType::Normal,
            revision: 4,
        };
        let tallied = Event::Tallied(Decision::ChangesRequested);
        let t = next(&subject, &actor(Cm), &tallied, DateTime::UNIX_EPOCH).expect("under review");
        assert_eq!(t.write, reopened("A CAB member requested changes.", false));
    }

    #[test]
    fn an_approved_emergency_change_owes_a_retrospective_in_72_hours() {
        let now: DateTime<Utc> = "2026-03-01T12:00:00Z".parse().expect("a time");
        let due: DateTime<Utc> = "2026-03-04T12:00:00Z".parse().expect("a time");
        let facts = facts(ChangeState::InCabReview);
        let approved = Event::Tallied(Decision::Approved);
        for (change_type, expected) in [
            (ChangeType::Emergency, Some(due)),
            (ChangeType::Normal, None),
            (ChangeType::Standard, None),
        ] {
            let subject = Subject {
                facts: &facts,
                change_type,
                revision: 7,
            };
            let t = next(&subject, &actor(Cm), &approved, now).expect("under review");
            assert_eq!(
                t.write,
                Some(StateWrite::Decided {
                    approved_revision: Some(7),
                    retrospective_due: expected,
                    closes: false,
                    submitted: false,
                }),
                "{change_type:?}"
            );
        }
        // A standard emergency approved by its template owes none either.
        let facts = super::tests::facts(ChangeState::Draft);
        let subject = Subject {
            facts: &facts,
            change_type: ChangeType::Emergency,
            revision: 0,
        };
        let t = next(
            &subject,
            &actor(Au),
            &standard(Some(TemplateState::Approved), &[]),
            now,
        )
        .expect("within scope");
        assert_eq!(
            t.write,
            Some(StateWrite::Decided {
                approved_revision: Some(1),
                retrospective_due: None,
                closes: false,
                submitted: true,
            })
        );
    }

    #[test]
    fn refusals_say_why_in_words() {
        let message = |from, kind, event: &Event| {
            let facts = facts(from);
            let subject = Subject {
                facts: &facts,
                change_type: ChangeType::Normal,
                revision: 2,
            };
            next(&subject, &actor(kind), event, DateTime::UNIX_EPOCH)
                .expect_err("refused")
                .message
        };
        assert_eq!(
            message(ChangeState::InCabReview, Sr, &Event::StartAssessment),
            "This change is in cab review; only a submitted change is taken into assessment."
        );
        assert_eq!(
            message(ChangeState::Draft, Cm, &Event::Tallied(Decision::Approved)),
            "This change is draft; it is not awaiting a decision."
        );
        assert_eq!(
            message(ChangeState::Approved, Au, &Event::Withdraw),
            "This change has been approved; it can be cancelled, not withdrawn."
        );
        assert_eq!(
            message(ChangeState::Rejected, Au, &edited(&["title"])),
            "This change is rejected and can no longer change."
        );
        assert_eq!(
            message(
                ChangeState::Submitted,
                Au,
                &Event::Submit { standard: None }
            ),
            "This change has already been submitted."
        );
    }

    #[test]
    fn each_event_names_the_attempt_a_refusal_records() {
        let words: Vec<&str> = events().iter().map(Event::attempted).collect();
        assert_eq!(
            words,
            [
                ["change.submit"; 6].as_slice(),
                &["change.withdraw", "change.cancel"],
                &["change.edit"; 3],
                &["change.assess"; 3],
                &["change.vote"; 4],
                &["deployment.report"; 5],
                &["change.close"; 6],
            ]
            .concat()
        );
    }
}
