//! The reviewers' and the CAB's work queues, with what each change still needs.

use cab_db::decisions::QueueRow;
use sqlx::PgPool;
use uuid::Uuid;

use crate::changes;
use crate::decisions;
use crate::error::AppError;

pub struct QueueItem {
    pub row: QueueRow,
    /// The level decisions use.
    pub level: String,
    pub needs: Vec<String>,
    pub my_vote: Option<String>,
}

/// Changes awaiting a decision with what each still needs and whether
/// `me` has voted on its current revision.
pub async fn cab_queue(pool: &PgPool, me: Uuid) -> Result<Vec<QueueItem>, AppError> {
    let mut conn = pool.acquire().await?;
    let rows = cab_db::decisions::awaiting_decision(&mut conn).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let change = changes::load_on(&mut conn, row.id).await?;
        let facts = decisions::facts(&mut conn, &change).await?;
        out.push(QueueItem {
            level: facts.level.as_str().to_owned(),
            needs: facts.still_needed(change.state),
            my_vote: facts.my_vote(me, change.revision).map(|v| v.choice.clone()),
            row,
        });
    }
    Ok(out)
}
