//! Who counts now for a decision: votes and assessments count only while
//! their authors are active and hold the role the decision needs.

use cab_domain::Role;
use cab_domain::RoleSet;
use cab_domain::approval::{self, Standing};
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
            let s = now.iter().find(|(id, _, _)| id == p).map_or(
                Standing::Disabled,
                |(_, active, roles)| {
                    RoleSet::parse(roles).map_or(Standing::RoleWithdrawn, |roles| {
                        approval::standing(*active, &roles, role)
                    })
                },
            );
            (*p, s)
        })
        .collect())
}
