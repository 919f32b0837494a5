//! Assessments, votes, the approval trail and the quorum policy over the API.

use axum::Json;
use axum::extract::State;
use cab_domain::approval::{AssessmentContent, LevelRule, QuorumPolicy, TestRequirement};
use cab_domain::change::ChangeKey;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::changes::ChangeOut;
use super::{ApiPath, AppJson};
use crate::auth::ApiUser;
use crate::changes;
use crate::decisions::{self, DecisionFacts};
use crate::error::{ApiResult, AppError, Problem};
use crate::request::Origin;
use crate::state::AppState;
use crate::trail::{self, TrailKind};
use crate::vocab;

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRequirementIo {
    #[serde(default)]
    pub required: bool,
    /// A link to the evidence (report, pipeline run).
    #[serde(default)]
    pub evidence: String,
    /// Why it is or is not needed, or when it will run.
    #[serde(default)]
    pub justification: String,
}

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityTestingIo {
    #[serde(default)]
    pub sast: TestRequirementIo,
    #[serde(default)]
    pub dast: TestRequirementIo,
    #[serde(default)]
    pub pentest: TestRequirementIo,
}

/// The security impact assessment of the change's current revision.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssessmentIo {
    /// public, internal, confidential or restricted
    pub data_classification: String,
    pub security_implications: String,
    #[serde(default)]
    pub testing: SecurityTestingIo,
    pub residual_risk: String,
    /// The assessed risk level: may raise the engineer's; lowering it needs
    /// `lowering_justification` and is flagged on the change.
    pub risk_level: String,
    #[serde(default)]
    pub lowering_justification: String,
    /// accept, accept_with_conditions or reject
    pub decision: String,
    /// Required with accept_with_conditions; shown to CAB and release managers.
    #[serde(default)]
    pub conditions: Vec<String>,
    /// The revision you assessed; refused if the change has moved on.
    pub revision: i32,
}

fn requirement(t: TestRequirementIo) -> TestRequirement {
    TestRequirement {
        required: t.required,
        evidence: t.evidence.trim().to_owned(),
        justification: t.justification.trim().to_owned(),
    }
}

impl AssessmentIo {
    pub fn into_content(self) -> Result<AssessmentContent, AppError> {
        Ok(AssessmentContent {
            data_classification: vocab::word("data_classification", &self.data_classification)?,
            security_implications: self.security_implications,
            sast: requirement(self.testing.sast),
            dast: requirement(self.testing.dast),
            pentest: requirement(self.testing.pentest),
            residual_risk: self.residual_risk,
            assessed_level: vocab::word("risk_level", &self.risk_level)?,
            lowering_justification: self.lowering_justification,
            decision: vocab::word("decision", &self.decision)?,
            conditions: self
                .conditions
                .into_iter()
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
                .collect(),
        })
    }
}

/// Assess the change's current revision (security reviewers who did not work on it).
#[utoipa::path(
    put, path = "/api/v1/changes/{id}/assessment", tag = "decisions",
    params(("id" = String, Path, description = "UUID or CHG-<number>")),
    request_body = AssessmentIo,
    responses(
        (status = 200, body = ChangeOut),
        (status = 403, description = "self_assessment, service_account, security_reviewer_required, not_under_review", body = Problem),
        (status = 422, body = Problem),
    )
)]
#[tracing::instrument(skip_all, err(level = "warn"))]
pub async fn put_assessment(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<String>,
    AppJson(body): AppJson<AssessmentIo>,
) -> ApiResult<Json<ChangeOut>> {
    let id = changes::resolve_id(&state.pool, &id).await?;
    let revision = body.revision;
    let content = body.into_content()?;
    Ok(Json(
        decisions::assess(&state.pool, &user, &origin, id, content, Some(revision))
            .await?
            .into(),
    ))
}

/// Take a submitted change into assessment.
#[utoipa::path(
    post, path = "/api/v1/changes/{id}/assessment/start", tag = "decisions",
    params(("id" = String, Path)),
    responses((status = 200, body = ChangeOut), (status = 403, body = Problem), (status = 409, body = Problem))
)]
pub async fn start_assessment(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ChangeOut>> {
    let id = changes::resolve_id(&state.pool, &id).await?;
    Ok(Json(
        decisions::start_assessment(&state.pool, &user, &origin, id)
            .await?
            .into(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoteIo {
    /// approve, reject or request_changes
    pub vote: String,
    /// Required to reject or request changes.
    #[serde(default)]
    pub comment: String,
    /// The revision you read; a vote on an older revision is refused.
    pub revision: i32,
    /// To approve a change whose planned window has calendar conflicts
    /// (`GET /api/v1/changes/{id}/conflicts`), set this: the conflicts are
    /// then kept with the vote and in the trail. Without it such an approval
    /// is refused (`conflicts_not_acknowledged`).
    #[serde(default)]
    pub acknowledge_conflicts: bool,
    /// With `acknowledge_conflicts`: the `digest` of the conflicts as you
    /// read them (`GET /api/v1/changes/{id}/conflicts`). If they have changed
    /// since, the approval is refused (`conflicts_not_acknowledged`); without
    /// it, the conflicts as they stand at the vote are accepted.
    #[serde(default)]
    pub conflicts_digest: Option<String>,
}

/// Vote on the change's current revision (CAB members who did not work on it).
/// A member may change their vote until the decision; the trail keeps both.
#[utoipa::path(
    post, path = "/api/v1/changes/{id}/votes", tag = "decisions",
    params(("id" = String, Path)),
    request_body = VoteIo,
    responses(
        (status = 200, body = ChangeOut),
        (status = 403, description = "self_approval, service_account, cab_member_required, not_under_review, stale_revision, conflicts_not_acknowledged", body = Problem),
        (status = 422, body = Problem),
    )
)]
#[tracing::instrument(skip_all, err(level = "warn"))]
pub async fn post_vote(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    ApiPath(id): ApiPath<String>,
    AppJson(body): AppJson<VoteIo>,
) -> ApiResult<Json<ChangeOut>> {
    let id = changes::resolve_id(&state.pool, &id).await?;
    let choice = vocab::word("vote", &body.vote)?;
    Ok(Json(
        decisions::vote(
            &state.pool,
            &user,
            &origin,
            id,
            &decisions::VoteCast {
                choice,
                comment: &body.comment,
                revision: Some(body.revision),
                acknowledge_conflicts: body
                    .acknowledge_conflicts
                    .then(|| body.conflicts_digest.as_deref().unwrap_or("")),
            },
        )
        .await?
        .into(),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct TrailEntry {
    /// assessment or vote
    kind: &'static str,
    who: String,
    /// The roles they held at that moment.
    roles: Vec<String>,
    revision: i32,
    /// The vote, or the assessment's decision.
    decision: String,
    comment: String,
    /// Assessment: the assessed level and whether it lowered the engineer's.
    #[serde(skip_serializing_if = "Option::is_none")]
    assessed_level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lowers_risk: Option<bool>,
    conditions: Vec<String>,
    at: DateTime<Utc>,
    /// Replaced by a later vote or assessment.
    superseded: bool,
    /// Cast on an earlier revision: it no longer counts.
    stale: bool,
    /// Why a current vote or assessment does not count at the moment of
    /// decision (the person was disabled, lost the role, or wrote the
    /// assessment); absent when it counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    does_not_count: Option<&'static str>,
}

#[derive(Serialize, ToSchema)]
pub struct ApprovalTrail {
    state: String,
    revision: i32,
    /// The level decisions use: the current assessment's, else the engineer's.
    risk_level: String,
    /// What is still needed for approval, in words; empty once decided.
    still_needed: Vec<String>,
    approved_revision: Option<i32>,
    decided_at: Option<DateTime<Utc>>,
    /// An approved emergency change's review (its retrospective) is due
    /// then, 72 hours after approval (`GET /api/v1/changes/{id}/review`).
    retrospective_due_at: Option<DateTime<Utc>>,
    /// When that review was first signed off.
    retrospective_done_at: Option<DateTime<Utc>>,
    entries: Vec<TrailEntry>,
}

/// Every assessment and vote with who, their roles then, revision, decision
/// and time, oldest first.
pub fn trail_entries(facts: &DecisionFacts, revision: i32) -> Vec<TrailEntry> {
    trail::entries(facts, revision)
        .into_iter()
        .map(|e| TrailEntry {
            kind: match e.kind {
                TrailKind::Assessment => "assessment",
                TrailKind::Vote => "vote",
            },
            who: e.who,
            roles: e.roles,
            revision: e.revision,
            decision: e.decision,
            comment: e.comment,
            assessed_level: e.assessed_level,
            lowers_risk: e.lowers_risk,
            conditions: e.conditions,
            at: e.at,
            superseded: e.superseded,
            stale: e.stale,
            does_not_count: e.standing.and_then(|s| s.reason()),
        })
        .collect()
}

/// The approval trail of a change.
#[utoipa::path(
    get, path = "/api/v1/changes/{id}/approvals", tag = "decisions",
    params(("id" = String, Path)),
    responses((status = 200, body = ApprovalTrail), (status = 404, body = Problem))
)]
pub async fn get_approvals(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ApprovalTrail>> {
    let id = changes::resolve_id(&state.pool, &id).await?;
    let change = changes::load(&state.pool, id).await?;
    let mut conn = state.pool.acquire().await?;
    let facts = decisions::facts(&mut conn, &change).await?;
    Ok(Json(ApprovalTrail {
        state: change.state.as_str().into(),
        revision: change.revision,
        risk_level: facts.level.as_str().into(),
        still_needed: facts.still_needed(change.state),
        approved_revision: facts.decision.approved_revision,
        decided_at: facts.decision.decided_at,
        retrospective_due_at: facts.decision.retrospective_due_at,
        retrospective_done_at: facts.decision.retrospective_done_at,
        entries: trail_entries(&facts, change.revision),
    }))
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LevelRuleIo {
    /// Approving CAB members, each counted once.
    approvals: u32,
    /// Whether an accepting security assessment is needed as well.
    assessment: bool,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuorumIo {
    low: LevelRuleIo,
    medium: LevelRuleIo,
    high: LevelRuleIo,
    critical: LevelRuleIo,
    /// Emergency changes, whatever their level.
    emergency: LevelRuleIo,
}

impl From<QuorumPolicy> for QuorumIo {
    fn from(p: QuorumPolicy) -> Self {
        let r = |l: LevelRule| LevelRuleIo {
            approvals: l.approvals,
            assessment: l.assessment,
        };
        QuorumIo {
            low: r(p.low),
            medium: r(p.medium),
            high: r(p.high),
            critical: r(p.critical),
            emergency: r(p.emergency),
        }
    }
}

impl From<QuorumIo> for QuorumPolicy {
    fn from(p: QuorumIo) -> Self {
        let r = |l: LevelRuleIo| LevelRule {
            approvals: l.approvals,
            assessment: l.assessment,
        };
        QuorumPolicy {
            low: r(p.low),
            medium: r(p.medium),
            high: r(p.high),
            critical: r(p.critical),
            emergency: r(p.emergency),
        }
    }
}

/// The quorum policy in force.
#[utoipa::path(
    get, path = "/api/v1/settings/quorum", tag = "decisions",
    responses((status = 200, body = QuorumIo), (status = 401, body = Problem))
)]
pub async fn get_quorum(
    State(state): State<AppState>,
    ApiUser(_user): ApiUser,
) -> ApiResult<Json<QuorumIo>> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(crate::quorum::in_force(&mut conn).await?.into()))
}

/// Set the quorum policy (administrators).
#[utoipa::path(
    put, path = "/api/v1/settings/quorum", tag = "decisions",
    request_body = QuorumIo,
    responses((status = 200, body = QuorumIo), (status = 403, body = Problem), (status = 422, body = Problem))
)]
pub async fn put_quorum(
    State(state): State<AppState>,
    origin: Origin,
    ApiUser(user): ApiUser,
    AppJson(body): AppJson<QuorumIo>,
) -> ApiResult<Json<QuorumIo>> {
    Ok(Json(
        crate::quorum::set(&state.pool, &user, &origin, body.into())
            .await?
            .into(),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct QueueItem {
    id: Uuid,
    key: String,
    title: String,
    state: String,
    #[serde(rename = "type")]
    change_type: String,
    risk_level: String,
    author: String,
    revision: i32,
    window_start: Option<DateTime<Utc>>,
    still_needed: Vec<String>,
    /// Your current vote on this revision, if any.
    my_vote: Option<String>,
}

/// Changes awaiting a CAB decision, by planned window and risk, with what each still needs.
#[utoipa::path(
    get, path = "/api/v1/queues/cab", tag = "decisions",
    responses((status = 200, body = Vec<QueueItem>), (status = 401, body = Problem))
)]
pub async fn cab_queue(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> ApiResult<Json<Vec<QueueItem>>> {
    let items = crate::queues::cab_queue(&state.pool, user.id).await?;
    Ok(Json(
        items
            .into_iter()
            .map(|i| QueueItem {
                id: i.row.id,
                key: ChangeKey(i.row.number).to_string(),
                title: i.row.title,
                state: i.row.state,
                change_type: i.row.change_type,
                risk_level: i.level,
                author: i.row.author,
                revision: i.row.revision,
                window_start: i.row.window_start,
                still_needed: i.needs,
                my_vote: i.my_vote,
            })
            .collect(),
    ))
}
