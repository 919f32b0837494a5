//! Who counts now for a decision: votes and assessments count only while
//! their authors are active and hold the role the decision needs.

use cab_domain::Role;
use cab_domain::approval::{Standing, VoteChoice};
use cab_domain::tally::{self, PersonNow};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::AppError;

/// Whether each of `people` counts now for a decision that needs `role`:
/// active and holding it. Someone not found counts as disabled, and
/// unreadable roles grant nothing.
pub async fn standing_now(
    conn: &mut PgConnection,
    people: &[Uuid],
    role: Role,
) -> Result<Vec<(Uuid, Standing)>, AppError> {
    let now = cab_db::decisions::standing_of(conn, people).await?;
    Ok(people
        .iter()
        .map(|p| {
            let found = now.iter().find(|(id, _, _)| id == p);
            let person = found.map(|(_, active, roles)| PersonNow {
                active: *active,
                roles,
            });
            (*p, tally::standing_now(person, role))
        })
        .collect())
}

/// The comment of a vote, on a change or a template, once it is acceptable:
/// trimmed, required to reject or request changes, at most 10,000
/// characters of text without control characters.
pub fn comment(choice: VoteChoice, comment: &str) -> Result<&str, AppError> {
    let comment = comment.trim();
    if choice != VoteChoice::Approve && comment.is_empty() {
        return Err(AppError::invalid(
            "comment",
            "Say why: a comment is required to reject or request changes.",
        ));
    }
    if comment.chars().count() > 10_000 {
        return Err(AppError::invalid("comment", "At most 10000 characters."));
    }
    cab_domain::text::check_text("comment", comment)?;
    Ok(comment)
}
