//! Every change of a change's state goes through [`apply`]: the domain's
//! `lifecycle::next` decides, `cab_db::changes::write_state` writes, and the
//! audit event is appended in the same transaction. A refusal comes back as
//! [`AppError::Refused`], for the caller to record once its transaction is
//! over (`refusal::recorded`).

use cab_db::changes::{Decided, StateChange};
use cab_domain::change::ChangeState;
use cab_domain::lifecycle::{self, Event, StateWrite, Subject, Transition};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgConnection;

use crate::audit_log::{self, Entity};
use crate::auth::CurrentUser;
use crate::changes::ChangeView;
use crate::error::AppError;
use crate::quorum;
use crate::request::Origin;

/// Makes `event` happen to `change`, which the caller holds locked in `tx`.
/// `details` (a JSON object) are added to the audit event's payload, after
/// the change's number, its revision and, when it moves, the states.
pub(crate) async fn apply(
    tx: &mut PgConnection,
    user: &CurrentUser,
    origin: &Origin,
    change: &ChangeView,
    event: &Event,
    now: DateTime<Utc>,
    details: Value,
) -> Result<Transition, AppError> {
    let facts = change.facts();
    let subject = Subject {
        facts: &facts,
        change_type: change.content.change_type,
        revision: change.revision,
    };
    let t = lifecycle::next(&subject, &user.actor(), event, now).map_err(AppError::Refused)?;
    let mut payload = json!({ "number": change.number, "revision": t.revision });
    if let Some(write) = &t.write {
        let mut row = StateChange {
            revision: t.revision,
            ..StateChange::default()
        };
        match write {
            StateWrite::Move => {}
            StateWrite::Submitted { .. } => row.submitted = true,
            StateWrite::Closed => row.closed = true,
            StateWrite::Decided {
                approved_revision,
                retrospective_due,
                closes,
                submitted,
            } => {
                row.decided = Some(Decided {
                    approved_revision: *approved_revision,
                    retrospective_due: *retrospective_due,
                });
                row.closed = *closes;
                row.submitted = *submitted;
                if let Some(due) = retrospective_due {
                    payload["retrospective_due_at"] = json!(due);
                }
            }
            StateWrite::Reopened {
                note,
                stricter_policy,
            } => {
                row.reopened = Some(note);
                if *stricter_policy {
                    // Back in review after approval is a new submission in
                    // effect: it is decided under the stricter of the policy
                    // it was submitted under and today's.
                    let fixed = quorum::fixed_for(tx, change.id).await?;
                    let today = quorum::in_force(tx).await?;
                    let policy = serde_json::to_value(fixed.stricter(&today))
                        .map_err(|e| AppError::Internal(e.into()))?;
                    cab_db::changes::fix_quorum_policy(tx, change.id, &policy).await?;
                }
            }
        }
        cab_db::changes::write_state(tx, change.id, t.to.as_str(), &row, now).await?;
    }
    if let Some(action) = t.audit {
        if t.to != t.from {
            payload["from"] = json!(t.from.as_str());
            payload["to"] = json!(t.to.as_str());
        }
        if let (Some(all), Value::Object(more)) = (payload.as_object_mut(), details) {
            all.extend(more);
        }
        audit_log::record(
            tx,
            Some(user.audit_actor()),
            origin,
            action.as_str(),
            Entity::new("change", change.id),
            payload,
        )
        .await?;
    }
    // A review is owed from the emergency's approval, and from the end of
    // a production deployment when a rule says so.
    if let Some(StateWrite::Decided {
        retrospective_due: Some(due),
        ..
    }) = &t.write
    {
        crate::reviews::emergency_approved(tx, user, origin, change, *due, now).await?;
    }
    if t.to != t.from
        && matches!(
            t.to,
            ChangeState::Implemented | ChangeState::ImplementationFailed
        )
    {
        crate::reviews::deployment_ended(tx, user, origin, change.id, now).await?;
    }
    // The change's release hears of it after the change's own event.
    if t.write.is_some() && t.to != t.from {
        crate::releases::change_moved(
            tx,
            user,
            origin,
            change.id,
            &change.key(),
            t.from,
            t.to,
            now,
        )
        .await?;
    }
    Ok(t)
}
