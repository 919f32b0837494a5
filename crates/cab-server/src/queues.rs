//! The reviewers' and the CAB's work queues, with what each change still needs.

use cab_db::decisions::QueueRow;
use cab_db::queue::{PersonNow, QueueFacts};
use cab_domain::change::{ChangeState, ChangeType};
use cab_domain::risk::RiskLevel;
use cab_domain::tally::{self, StoredAssessment, StoredVote};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::AppError;
use crate::quorum::{self, QUORUM_SETTING};

pub struct QueueItem {
    pub row: QueueRow,
    /// The level decisions use.
    pub level: String,
    pub needs: Vec<String>,
    pub my_vote: Option<String>,
}

/// Changes awaiting a decision with what each still needs and whether
/// `me` has voted on its current revision. The whole queue is read in two
/// statements, however long it is; each change is then decided by the same
/// rules as when it is decided on (see `decisions::facts`).
pub async fn cab_queue(pool: &PgPool, me: Uuid) -> Result<Vec<QueueItem>, AppError> {
    let mut conn = pool.acquire().await?;
    let rows = cab_db::queue::cab_queue(&mut conn, QUORUM_SETTING).await?;
    drop(conn);
    rows.into_iter().map(|f| item(f, me)).collect()
}

fn internal(what: &str) -> AppError {
    AppError::Internal(anyhow::anyhow!("stored change has an unknown {what}"))
}

fn person(p: &Option<PersonNow>) -> Option<tally::PersonNow<'_>> {
    p.as_ref().map(|p| tally::PersonNow {
        active: p.active,
        roles: &p.roles,
    })
}

fn item(f: QueueFacts, me: Uuid) -> Result<QueueItem, AppError> {
    let state = ChangeState::parse(&f.row.state).ok_or_else(|| internal("state"))?;
    let engineer_level =
        RiskLevel::parse(&f.row.risk_level).ok_or_else(|| internal("risk level"))?;
    let change_type = ChangeType::parse(&f.row.change_type).ok_or_else(|| internal("type"))?;
    let policy = quorum::policy_from(f.quorum_policy, f.policy_setting)?;
    let assessment = f.assessment.as_ref().map(|a| StoredAssessment {
        assessor: a.assessor_id,
        decision: &a.decision,
        assessed_level: &a.assessed_level,
        assessor_now: person(&a.assessor_now),
    });
    let votes: Vec<StoredVote> = f
        .ballots
        .iter()
        .map(|b| StoredVote {
            voter: b.voter_id,
            choice: &b.choice,
            voter_now: person(&b.voter_now),
        })
        .collect();
    let t = tally::tally(
        &policy,
        change_type,
        engineer_level,
        assessment.as_ref(),
        &votes,
    );
    Ok(QueueItem {
        level: t.level.as_str().to_owned(),
        needs: t.still_needed(state),
        my_vote: tally::my_vote(&votes, me).map(str::to_owned),
        row: f.row,
    })
}
