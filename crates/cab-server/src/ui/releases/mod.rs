//! Release pages: the list, the plan form (new and edit), the release's own
//! page, and the actions on it. This names the rooms, hands their handlers
//! to the router, and keeps what more than one of them needs: the release a
//! path names, what a release still needs, and form errors as a page shows
//! them. Every action goes through `crate::releases`, the same code as the
//! API's.

mod actions;
mod detail;
mod form;
mod list;

pub(super) use actions::{add_change, advance, cancel, remove_change, roll_back, submit, vote};
pub(super) use detail::show;
pub(super) use form::{create, edit_form, new_form, update};
pub(super) use list::list;

use cab_domain::release::ReleaseState;

use super::Viewer;
use super::form::FieldErrors;
use crate::error::AppError;
use crate::releases::{self, ReleaseView, Tally};

async fn load(viewer: &Viewer, raw: &str) -> Result<ReleaseView, AppError> {
    let id = releases::resolve_id(&viewer.state.pool, raw).await?;
    releases::load(&viewer.state.pool, id).await
}

/// The release's page, by its key.
fn page_of(r: &ReleaseView) -> String {
    format!("/releases/{}", r.key())
}

/// What the release waits for, in words: what the go/no-go still needs
/// while it is in review, the next step otherwise; nothing once it is over.
fn still_needed(r: &ReleaseView, tally: Option<&Tally>) -> Vec<String> {
    match r.state {
        ReleaseState::Draft if r.scope.is_empty() => vec![
            "at least one change in its scope".into(),
            "submitting for CAB's go/no-go".into(),
        ],
        ReleaseState::Draft => vec!["submitting for CAB's go/no-go".into()],
        ReleaseState::InReview => {
            let needs = tally.map(|t| t.still_needed(r.state)).unwrap_or_default();
            if needs.is_empty() {
                vec!["CAB's go/no-go".into()]
            } else {
                needs
            }
        }
        ReleaseState::Approved => vec!["the release manager to start it".into()],
        ReleaseState::InProgress => match (r.row.rolled_back_phase, r.row.current_phase) {
            (Some(p), _) => vec![format!(
                "to be cancelled: phase {} was rolled back, so no later phase opens",
                p + 1
            )],
            (None, Some(c)) => {
                let n = usize::try_from(c).unwrap_or(0) + 1;
                if n < r.plan.phases.len() {
                    vec![format!(
                        "phase {n} to deploy every change and soak before phase {} opens",
                        n + 1
                    )]
                } else {
                    vec![format!(
                        "phase {n} to deploy every change and soak before the release completes"
                    )]
                }
            }
            (None, None) => Vec::new(),
        },
        ReleaseState::Completed | ReleaseState::Cancelled => Vec::new(),
    }
}

/// A validation error as messages beside fields; several messages for one
/// field (the phases, the communications) are all kept, in order.
fn field_errors(err: AppError) -> Result<FieldErrors, AppError> {
    let mut errors = FieldErrors::default();
    match err {
        AppError::Invalid { field, message } => errors.insert(&field, message),
        AppError::Fields(list) => {
            for (field, message) in list {
                add(&mut errors, &field, message);
            }
        }
        other => return Err(other),
    }
    Ok(errors)
}

/// Adds `message` beside `field`, after any message already there.
fn add(errors: &mut FieldErrors, field: &str, message: String) {
    let joined = match errors.get(field) {
        Some(before) => format!("{before} {message}"),
        None => message,
    };
    errors.insert(field, joined);
}

/// Whether the error is a refusal a page says in words (recorded already).
fn is_refusal(err: &AppError) -> bool {
    matches!(
        err,
        AppError::Forbidden(_) | AppError::Conflict(_) | AppError::Refusals(_)
    )
}

/// A refusal's sentences.
fn refusal_sentences(err: &AppError) -> Vec<String> {
    match err {
        AppError::Refusals(reasons) => reasons.iter().map(|d| d.message.clone()).collect(),
        other => vec![other.detail()],
    }
}
