//! Deciding on changes: security assessments, CAB votes under the quorum
//! policy, and the separation-of-duties check in front of both. The API and
//! the pages call these; each refusal is recorded.

use cab_db::decisions::{AssessmentRow, NewAssessment, NewVote, VoteRow};
use cab_domain::Denial;
use cab_domain::Role;
use cab_domain::approval::{
    self, AssessmentContent, AssessmentDecision, Ballot, Decision, Duty, QuorumPolicy, Standing,
    VoteChoice,
};
use cab_domain::change::ChangeState;
use cab_domain::lifecycle::Event;
use cab_domain::risk::RiskLevel;
use cab_domain::tally::{self, PersonNow, StoredAssessment, StoredVote};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::audit_log::{self, Entity};
use crate::auth::CurrentUser;
use crate::calendar;
use crate::changes::{self, ChangeView};
use crate::error::AppError;
use crate::quorum;
use crate::refusal::{begin_deciding, refused_if_failed};
use crate::request::Origin;
use crate::{refusal, votes};

/// Everything a decision rests on, for the change's current revision.
#[derive(Debug, Clone)]
pub struct DecisionFacts {
    pub policy: QuorumPolicy,
    /// All assessments, oldest first (superseded ones included).
    pub assessments: Vec<AssessmentRow>,
    /// All votes, oldest first (superseded ones included).
    pub votes: Vec<VoteRow>,
    pub current_assessment: Option<AssessmentRow>,
    pub ballots: Vec<Ballot>,
    /// The level decisions use: the assessment's, if the current revision has one.
    pub level: RiskLevel,
    pub outcome: Decision,
    pub decision: cab_db::decisions::DecisionRow,
    /// Whether each voter's vote counts now (active, still a CAB member,
    /// not the assessor).
    pub voter_standing: Vec<(Uuid, Standing)>,
    /// Whether the current assessment counts now (its author active and
    /// still a security reviewer).
    pub assessment_standing: Option<Standing>,
}

impl DecisionFacts {
    pub fn assessment_decision(&self) -> Option<AssessmentDecision> {
        self.current_assessment
            .as_ref()
            .and_then(|a| AssessmentDecision::parse(&a.decision))
    }

    /// Why a voter's vote does not count, if it does not.
    pub fn vote_standing(&self, voter: Uuid) -> Standing {
        self.voter_standing
            .iter()
            .find(|(v, _)| *v == voter)
            .map_or(Standing::Disabled, |(_, s)| *s)
    }

    /// What a change in `state` still needs before it is decided: nothing
    /// once it is out of review, or once the facts decide it.
    pub fn still_needed(&self, state: ChangeState) -> Vec<String> {
        match &self.outcome {
            Decision::Pending { needs } if approval::under_review(state) => needs.clone(),
            _ => Vec::new(),
        }
    }

    pub fn my_vote(&self, user: Uuid, revision: i32) -> Option<&VoteRow> {
        self.votes
            .iter()
            .find(|v| v.voter_id == user && v.revision == revision && v.superseded_at.is_none())
    }
}

pub async fn facts(
    conn: &mut PgConnection,
    change: &ChangeView,
) -> Result<DecisionFacts, AppError> {
    let policy = quorum::fixed_for(conn, change.id).await?;
    let assessments = cab_db::decisions::assessments(conn, change.id).await?;
    let votes = cab_db::decisions::votes(conn, change.id).await?;
    let decision = cab_db::decisions::decision(conn, change.id).await?;
    let current_assessment = assessments
        .iter()
        .rev()
        .find(|a| a.revision == change.revision && a.superseded_at.is_none())
        .cloned();
    // Who counts is decided now, at the moment of decision, not when they
    // voted: by the same tally the CAB queue uses.
    let assessor = current_assessment.as_ref().map(|a| a.assessor_id);
    let mut people: Vec<Uuid> = votes.iter().map(|v| v.voter_id).chain(assessor).collect();
    people.sort();
    people.dedup();
    let now = cab_db::decisions::standing_of(conn, &people).await?;
    let person = |id: Uuid| {
        now.iter()
            .find(|(p, _, _)| *p == id)
            .map(|(_, active, roles)| PersonNow {
                active: *active,
                roles,
            })
    };
    let current_votes: Vec<StoredVote<'_>> = votes
        .iter()
        .filter(|v| v.revision == change.revision && v.superseded_at.is_none())
        .map(|v| StoredVote {
            voter: v.voter_id,
            choice: &v.choice,
            voter_now: person(v.voter_id),
        })
        .collect();
    let assessment = current_assessment.as_ref().map(|a| StoredAssessment {
        assessor: a.assessor_id,
        decision: &a.decision,
        assessed_level: &a.assessed_level,
        assessor_now: person(a.assessor_id),
    });
    let counted = tally::tally(
        &policy,
        change.content.change_type,
        change.risk_level,
        assessment.as_ref(),
        &current_votes,
    );
    let mut voters: Vec<Uuid> = votes.iter().map(|v| v.voter_id).collect();
    voters.sort();
    voters.dedup();
    let voter_standing: Vec<(Uuid, Standing)> = voters
        .into_iter()
        .map(|p| {
            let standing = if Some(p) == assessor {
                Standing::Assessor
            } else {
                tally::standing_now(person(p), Role::CabMember)
            };
            (p, standing)
        })
        .collect();
    let tally::Tally {
        level,
        ballots,
        assessment_standing,
        mut outcome,
    } = counted;
    // Over calendar conflicts a change is approved only by a vote that
    // acknowledges them (`settle`): until one comes, that is what it needs,
    // however many approvals it has.
    if matches!(outcome, Decision::Approved)
        && approval::under_review(change.state)
        && !calendar::conflicts_of_change(conn, change)
            .await?
            .is_empty()
    {
        outcome = Decision::Pending {
            needs: vec![calendar::ACKNOWLEDGEMENT_NEEDED.to_owned()],
        };
    }
    Ok(DecisionFacts {
        policy,
        assessments,
        votes,
        current_assessment,
        ballots,
        level,
        outcome,
        decision,
        voter_standing,
        assessment_standing,
    })
}

/// Whether `user` may take on `duty` for `change` now; a refusal is
/// recorded (a form for it is then not shown).
pub async fn check_duty(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    change: &ChangeView,
    duty: Duty,
) -> Result<(), AppError> {
    let allowed = approval::check_duty(&change.facts(), &user.actor(), duty);
    let entity = Entity::new("change", change.id);
    refusal::checked(
        pool,
        user.audit_actor(),
        origin,
        duty.as_str(),
        entity,
        allowed,
    )
    .await
}

/// Whether `user` may take on `duty` now (what the page offers).
pub fn may(change: &ChangeView, user: &CurrentUser, duty: Duty) -> bool {
    approval::check_duty(&change.facts(), &user.actor(), duty).is_ok()
}

/// Applies the outcome of the current facts to the change's state, once.
async fn settle(
    tx: &mut PgConnection,
    user: &CurrentUser,
    origin: &Origin,
    change: &ChangeView,
    facts: &DecisionFacts,
    acknowledged: bool,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    // The facts hold an approval over calendar conflicts until a vote
    // acknowledges them (`facts`); an approving vote that got here did,
    // under the row lock, so it completes the quorum. An assessment or any
    // other vote leaves the decision waiting.
    let outcome = match &facts.outcome {
        Decision::Pending { needs }
            if acknowledged && needs.as_slice() == [calendar::ACKNOWLEDGEMENT_NEEDED] =>
        {
            Decision::Approved
        }
        other => other.clone(),
    };
    let details = match &outcome {
        Decision::Approved => json!({
            "level": facts.level.as_str(),
            "approvals": facts.ballots.iter().filter(|b| b.choice == VoteChoice::Approve).count(),
        }),
        Decision::Rejected { reason } => json!({ "reason": reason }),
        Decision::ChangesRequested | Decision::Pending { .. } => json!({}),
    };
    let tallied = Event::Tallied(outcome);
    crate::lifecycle::apply(tx, user, origin, change, &tallied, now, details).await?;
    Ok(())
}

/// Facts that cannot be read decide nothing: the decision is refused.
async fn facts_or_refuse(
    tx: &mut PgConnection,
    change: &ChangeView,
) -> Result<DecisionFacts, AppError> {
    facts(tx, change).await.map_err(|e| {
        tracing::error!(error = %e, "decision facts could not be read; refusing");
        AppError::Refused(refusal::unavailable())
    })
}

fn stale(read: i32, now: i32) -> Denial {
    Denial::new(
        "stale_revision",
        format!(
            "You read revision {read}, but the change is now at revision {now}; read it again and decide on that."
        ),
    )
}

/// A security reviewer takes a submitted change into assessment.
pub async fn start_assessment(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
) -> Result<ChangeView, AppError> {
    let done = take_into_assessment(pool, user, origin, id).await;
    let change = Entity::new("change", id);
    refused_if_failed(pool, user, origin, Duty::Assess.as_str(), change, done).await?;
    changes::load(pool, id).await
}

async fn take_into_assessment(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
) -> Result<(), AppError> {
    let mut tx = begin_deciding(pool).await?;
    let current = changes::load_locked(&mut tx, id).await?;
    let start = Event::StartAssessment;
    crate::lifecycle::apply(
        &mut tx,
        user,
        origin,
        &current,
        &start,
        Utc::now(),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Saves the security impact assessment of the current revision.
pub async fn assess(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    content: AssessmentContent,
    revision: Option<i32>,
) -> Result<ChangeView, AppError> {
    let done = record_assessment(pool, user, origin, id, content, revision).await;
    let change = Entity::new("change", id);
    refused_if_failed(pool, user, origin, Duty::Assess.as_str(), change, done).await?;
    changes::load(pool, id).await
}

async fn record_assessment(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    content: AssessmentContent,
    revision: Option<i32>,
) -> Result<(), AppError> {
    let now = Utc::now();
    let mut tx = begin_deciding(pool).await?;
    // Checked under the row lock, so the facts cannot move before the write.
    let current = changes::load_locked(&mut tx, id).await?;
    approval::check_duty(&current.facts(), &user.actor(), Duty::Assess)
        .map_err(AppError::Refused)?;
    let Some(read) = revision else {
        return Err(AppError::invalid(
            "revision",
            "Say which revision you assessed.",
        ));
    };
    if read != current.revision {
        return Err(AppError::Refused(stale(read, current.revision)));
    }
    // Validated against the locked change: its level is the one being lowered or not.
    let errors = content.validate(current.risk_level);
    if !errors.is_empty() {
        return Err(changes::field_errors(errors));
    }
    let value = serde_json::to_value(&content).map_err(|e| AppError::Internal(e.into()))?;
    let lowers = content.lowers(current.risk_level);
    cab_db::decisions::insert_assessment(
        &mut tx,
        &NewAssessment {
            id: Uuid::new_v4(),
            change_id: id,
            revision: current.revision,
            assessor_id: user.id,
            assessor_username: &user.username,
            assessor_roles: &user.roles.names(),
            content: &value,
            decision: content.decision.as_str(),
            assessed_level: content.assessed_level.as_str(),
            lowers_risk: lowers,
            at: now,
        },
    )
    .await?;
    audit_log::record(
        &mut tx,
        Some(user.audit_actor()),
        origin,
        "change.assessed",
        Entity::new("change", id),
        json!({
            "number": current.number,
            "revision": current.revision,
            "decision": content.decision.as_str(),
            "assessed_level": content.assessed_level.as_str(),
            "engineer_level": current.risk_level.as_str(),
            "lowers_risk": lowers,
            "conditions": content.conditions,
        }),
    )
    .await?;
    let assessed = Event::Assessed {
        accepts: content.decision.accepts(),
    };
    let moved =
        crate::lifecycle::apply(&mut tx, user, origin, &current, &assessed, now, json!({})).await?;
    let current = ChangeView {
        state: moved.to,
        ..current
    };
    let facts = facts_or_refuse(&mut tx, &current).await?;
    settle(&mut tx, user, origin, &current, &facts, false, now).await?;
    tx.commit().await?;
    Ok(())
}

/// A vote as cast: the choice, the member's comment, the revision they read,
/// and whether they acknowledge the planned window's calendar conflicts.
pub struct VoteCast<'a> {
    pub choice: VoteChoice,
    pub comment: &'a str,
    pub revision: Option<i32>,
    /// An approving vote on a change whose window has conflicts counts only
    /// when it acknowledges them: `Some` of the conflicts' digest as the
    /// member read them (`calendar::conflicts_digest`; refused when they have
    /// changed since), or `Some("")` for the conflicts as they stand at the
    /// vote. The conflicts accepted are kept with the vote.
    pub acknowledge_conflicts: Option<&'a str>,
}

/// Casts (or changes) a CAB member's vote on the current revision. The
/// change row is locked while the vote is counted, so when several members
/// vote at once the change is approved exactly once.
pub async fn vote(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    ballot: &VoteCast<'_>,
) -> Result<ChangeView, AppError> {
    let done = cast_vote(pool, user, origin, id, ballot).await;
    let change = Entity::new("change", id);
    refused_if_failed(pool, user, origin, Duty::Vote.as_str(), change, done).await?;
    changes::load(pool, id).await
}

async fn cast_vote(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    id: Uuid,
    ballot: &VoteCast<'_>,
) -> Result<(), AppError> {
    let VoteCast {
        choice,
        comment,
        revision,
        acknowledge_conflicts,
    } = *ballot;
    let now = Utc::now();
    let mut tx = begin_deciding(pool).await?;
    // Checked under the row lock, so the facts cannot move before the write.
    let current = changes::load_locked(&mut tx, id).await?;
    approval::check_duty(&current.facts(), &user.actor(), Duty::Vote).map_err(AppError::Refused)?;
    let comment = votes::comment(choice, comment)?;
    let Some(read) = revision else {
        return Err(AppError::invalid(
            "revision",
            "Say which revision you voted on.",
        ));
    };
    if read != current.revision {
        return Err(AppError::Refused(stale(read, current.revision)));
    }
    // CAB approves a window that collides only knowingly: the conflicts as
    // they stand now, under the row lock, are accepted with the vote.
    let acknowledged: Vec<Value> = if choice == VoteChoice::Approve {
        let found = calendar::conflicts_of_change(&mut tx, &current).await?;
        if !found.is_empty() {
            calendar::check_acknowledgement(&found, acknowledge_conflicts)
                .map_err(AppError::Refused)?;
        }
        found.iter().map(calendar::conflict_json).collect()
    } else {
        Vec::new()
    };
    let acknowledged = Value::Array(acknowledged);
    cab_db::decisions::insert_vote(
        &mut tx,
        &NewVote {
            id: Uuid::new_v4(),
            change_id: id,
            revision: current.revision,
            voter_id: user.id,
            voter_username: &user.username,
            voter_roles: &user.roles.names(),
            choice: choice.as_str(),
            comment,
            acknowledged_conflicts: &acknowledged,
            at: now,
        },
    )
    .await?;
    let mut payload = json!({ "number": current.number, "revision": current.revision, "vote": choice.as_str(), "comment": comment });
    if acknowledged.as_array().is_some_and(|a| !a.is_empty()) {
        payload["acknowledged_conflicts"] = acknowledged;
    }
    audit_log::record(
        &mut tx,
        Some(user.audit_actor()),
        origin,
        "change.voted",
        Entity::new("change", id),
        payload,
    )
    .await?;
    let facts = facts_or_refuse(&mut tx, &current).await?;
    // An approving vote got here only past the acknowledgement check.
    let acknowledged = choice == VoteChoice::Approve;
    settle(&mut tx, user, origin, &current, &facts, acknowledged, now).await?;
    tx.commit().await?;
    Ok(())
}
