//! The approval trail of a change: every assessment and vote, oldest first,
//! superseded ones and those on earlier revisions included, each with who
//! gave it, their roles then, and whether it counts now. The change's page
//! and `GET /api/v1/changes/{id}/approvals` each word the same entries.

use cab_domain::approval::{AssessmentContent, Standing};
use chrono::{DateTime, Utc};

use crate::decisions::DecisionFacts;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailKind {
    Assessment,
    Vote,
}

/// One assessment or vote.
#[derive(Debug, Clone)]
pub struct TrailEntry {
    pub kind: TrailKind,
    /// The username of whoever gave it.
    pub who: String,
    /// The roles they held at that moment.
    pub roles: Vec<String>,
    pub revision: i32,
    /// The vote, or the assessment's decision, as stored.
    pub decision: String,
    /// A vote's comment, or an assessment's residual risk.
    pub comment: String,
    /// An assessment's assessed level, as stored.
    pub assessed_level: Option<String>,
    /// Whether an assessment lowered the engineer's level.
    pub lowers_risk: Option<bool>,
    /// An assessment's conditions.
    pub conditions: Vec<String>,
    pub at: DateTime<Utc>,
    /// Replaced by a later vote or assessment.
    pub superseded: bool,
    /// Given on an earlier revision.
    pub stale: bool,
    /// Whether it counts at the moment of decision, for the assessment and
    /// the votes that currently stand on the current revision; `None` for
    /// the others, which no longer count anyway.
    pub standing: Option<Standing>,
}

impl TrailEntry {
    /// Why it does not count although it currently stands, if it does not.
    pub fn does_not_count(&self) -> Option<Standing> {
        self.standing.filter(|s| !s.counts())
    }
}

/// The trail of a change at `revision`, oldest first.
pub fn entries(facts: &DecisionFacts, revision: i32) -> Vec<TrailEntry> {
    let mut entries: Vec<TrailEntry> = facts
        .assessments
        .iter()
        .map(|a| {
            let content: Option<AssessmentContent> = serde_json::from_value(a.content.clone()).ok();
            let current = facts
                .current_assessment
                .as_ref()
                .is_some_and(|c| c.id == a.id);
            TrailEntry {
                kind: TrailKind::Assessment,
                who: a.assessor_username.clone(),
                roles: a.assessor_roles.clone(),
                revision: a.revision,
                decision: a.decision.clone(),
                comment: content
                    .as_ref()
                    .map(|c| c.residual_risk.clone())
                    .unwrap_or_default(),
                assessed_level: Some(a.assessed_level.clone()),
                lowers_risk: Some(a.lowers_risk),
                conditions: content.map(|c| c.conditions).unwrap_or_default(),
                at: a.created_at,
                superseded: a.superseded_at.is_some(),
                stale: a.revision != revision,
                standing: facts.assessment_standing.filter(|_| current),
            }
        })
        .chain(facts.votes.iter().map(|v| {
            let current = v.superseded_at.is_none() && v.revision == revision;
            TrailEntry {
                kind: TrailKind::Vote,
                who: v.voter_username.clone(),
                roles: v.voter_roles.clone(),
                revision: v.revision,
                decision: v.choice.clone(),
                comment: v.comment.clone(),
                assessed_level: None,
                lowers_risk: None,
                conditions: Vec::new(),
                at: v.created_at,
                superseded: v.superseded_at.is_some(),
                stale: v.revision != revision,
                standing: current.then(|| facts.vote_standing(v.voter_id)),
            }
        }))
        .collect();
    entries.sort_by_key(|e| e.at);
    entries
}
