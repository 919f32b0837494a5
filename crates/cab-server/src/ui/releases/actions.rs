//! What a release's page posts to: adding and taking out changes, submitting
//! the plan, voting on it, advancing, rolling back the open phase and
//! cancelling. Each goes to `crate::releases` (which checks and records
//! under the release's lock), then back to the release's page with a notice
//! of what was done; refused, or with an error in its form, the page is
//! shown again with the refusal, or the error beside the field, and what
//! was typed.

use axum::Form;
use axum::extract::Path;
use cab_domain::approval::VoteChoice;
use cab_domain::change::ChangeKey;
use cab_domain::release::ReleaseState;
use uuid::Uuid;

use super::detail::{ActionErrors, detail_page};
use super::form::edited_in;
use super::{is_refusal, load, page_of, refusal_sentences};
use crate::error::AppError;
use crate::page_error::PageResult;
use crate::releases::{self, Edit, ReleaseView};
use crate::request::Origin;
use crate::ui::Viewer;
use crate::ui::form::{FormPairs as Pairs, form_value as value};
use crate::ui::notice::{Notice, redirect_with};

/// The form an action came from: where its errors are shown.
enum Source {
    Add,
    Remove(i64),
    Vote,
    RollBack,
    Cancel,
    /// A button with no fields (submit, advance).
    Button,
}

impl Source {
    /// The field id and label on the page for a field the service names.
    fn place(&self, field: &str) -> (String, String) {
        let (id, label) = match (self, field) {
            (Source::Add, "reason") => ("add_reason".to_owned(), "Why it joins"),
            (Source::Add, _) => ("add_change".to_owned(), "Change to add"),
            (Source::Remove(n), _) => (format!("remove_reason_{n}"), "Why it leaves the release"),
            (Source::Vote, "comment") => ("vote_comment".to_owned(), "Comment"),
            (Source::Vote, _) => ("vote".to_owned(), "Your vote"),
            (Source::RollBack, _) => ("rollback_reason".to_owned(), "Why it is rolled back"),
            (Source::Cancel, _) => ("cancel_reason".to_owned(), "Why it is cancelled"),
            (Source::Button, _) => ("actions".to_owned(), "This action"),
        };
        (id, label.to_owned())
    }
}

/// The release's page again after an action that did not happen: its
/// refusal (already recorded), or its errors beside the fields of `from`,
/// with what was typed into them.
async fn shown_again(
    viewer: &Viewer,
    id: Uuid,
    err: AppError,
    from: Source,
    typed: Vec<(String, String)>,
) -> PageResult {
    let status = err.status();
    let mut errors = if is_refusal(&err) {
        ActionErrors::refusal(refusal_sentences(&err))
    } else {
        let mut errors = ActionErrors::default();
        let list = match err {
            AppError::Invalid { field, message } => vec![(field, message)],
            AppError::Fields(list) => list,
            other => return Err(other.into()),
        };
        for (field, message) in list {
            let (id, label) = from.place(&field);
            errors.field(&id, &label, message);
        }
        errors
    };
    for (id, text) in typed {
        errors.keep(&id, text);
    }
    let current = releases::load(&viewer.state.pool, id).await?;
    Ok(detail_page(viewer, current, errors, status).await?)
}

/// The number of the change in `after`'s scope and not in `before`'s (or
/// the reverse).
fn moved(from: &ReleaseView, to: &ReleaseView) -> Option<i64> {
    from.scope
        .iter()
        .map(|c| c.number)
        .find(|n| !to.scope.iter().any(|c| c.number == *n))
}

/// `POST /releases/{id}/changes`: a change joins the scope, for a reason.
pub(crate) async fn add_change(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
    Form(form): Form<Pairs>,
) -> PageResult {
    let before = load(&viewer, &id).await?;
    let change = value(&form, "change");
    let reason = value(&form, "reason");
    let revision = value(&form, "revision").trim().parse::<i32>().ok();
    let edit = Edit::Add {
        change: &change,
        reason: &reason,
    };
    let pool = &viewer.state.pool;
    match releases::edit(pool, &viewer.user, &origin, before.id(), revision, edit).await {
        Ok(after) => Ok(redirect_with(
            &viewer,
            &format!("{}#scope", page_of(&after)),
            Notice::ReleaseChangeAdded {
                number: after.row.number,
                change: moved(&after, &before)
                    .or_else(|| change.trim().parse::<ChangeKey>().ok().map(|k| k.0))
                    .unwrap_or(0),
                revision: after.row.revision,
                was: edited_in(before.state, &after),
            },
        )),
        Err(e) => {
            let typed = vec![("add_change".into(), change), ("add_reason".into(), reason)];
            shown_again(&viewer, before.id(), e, Source::Add, typed).await
        }
    }
}

/// `POST /releases/{id}/changes/{change}/remove`: a change leaves the scope,
/// for a reason.
pub(crate) async fn remove_change(
    viewer: Viewer,
    origin: Origin,
    Path((id, change)): Path<(String, String)>,
    Form(form): Form<Pairs>,
) -> PageResult {
    let before = load(&viewer, &id).await?;
    let reason = value(&form, "reason");
    let revision = value(&form, "revision").trim().parse::<i32>().ok();
    let number = change.parse::<ChangeKey>().map_or(0, |k| k.0);
    let edit = Edit::Remove {
        change: &change,
        reason: &reason,
    };
    let pool = &viewer.state.pool;
    match releases::edit(pool, &viewer.user, &origin, before.id(), revision, edit).await {
        Ok(after) => Ok(redirect_with(
            &viewer,
            &format!("{}#scope", page_of(&after)),
            Notice::ReleaseChangeRemoved {
                number: after.row.number,
                change: moved(&before, &after).unwrap_or(number),
                revision: after.row.revision,
                was: edited_in(before.state, &after),
            },
        )),
        Err(e) => {
            let typed = vec![(format!("remove_reason_{number}"), reason)];
            shown_again(&viewer, before.id(), e, Source::Remove(number), typed).await
        }
    }
}

/// `POST /releases/{id}/submit`: the draft goes to CAB's go/no-go.
pub(crate) async fn submit(viewer: Viewer, origin: Origin, Path(id): Path<String>) -> PageResult {
    let before = load(&viewer, &id).await?;
    match releases::submit(&viewer.state.pool, &viewer.user, &origin, before.id()).await {
        Ok(after) => Ok(redirect_with(
            &viewer,
            &page_of(&after),
            Notice::ReleaseSubmitted {
                number: after.row.number,
            },
        )),
        Err(e) => shown_again(&viewer, before.id(), e, Source::Button, Vec::new()).await,
    }
}

/// `POST /releases/{id}/votes`: a CAB member's go/no-go on the revision the
/// page showed them.
pub(crate) async fn vote(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
    Form(form): Form<Pairs>,
) -> PageResult {
    let before = load(&viewer, &id).await?;
    let comment = value(&form, "comment");
    // The choice comes back with the comment: a member who adds the
    // missing comment then casts the vote they chose.
    let typed = vec![
        ("vote_comment".to_owned(), comment.clone()),
        ("vote".to_owned(), value(&form, "vote")),
    ];
    let Some(choice) = VoteChoice::parse(&value(&form, "vote")) else {
        let e = AppError::invalid("vote", "Choose approve, request changes or reject.");
        return shown_again(&viewer, before.id(), e, Source::Vote, typed).await;
    };
    let revision = value(&form, "revision").trim().parse::<i32>().ok();
    let pool = &viewer.state.pool;
    match releases::vote(
        pool,
        &viewer.user,
        &origin,
        before.id(),
        choice,
        &comment,
        revision,
    )
    .await
    {
        Ok(after) => Ok(redirect_with(
            &viewer,
            &format!("{}#decision", page_of(&after)),
            Notice::ReleaseVoted {
                number: after.row.number,
                revision: revision.unwrap_or(after.row.revision),
                choice,
                state: after.state,
            },
        )),
        Err(e) => shown_again(&viewer, before.id(), e, Source::Vote, typed).await,
    }
}

/// `POST /releases/{id}/advance`: starts an approved release, opens the
/// next phase, or completes the release after its last.
pub(crate) async fn advance(viewer: Viewer, origin: Origin, Path(id): Path<String>) -> PageResult {
    let before = load(&viewer, &id).await?;
    match releases::advance(&viewer.state.pool, &viewer.user, &origin, before.id()).await {
        Ok(after) => Ok(redirect_with(
            &viewer,
            &format!("{}#phases", page_of(&after)),
            Notice::ReleaseAdvanced {
                number: after.row.number,
                state: after.state,
                phase: match after.state {
                    ReleaseState::Completed => 0,
                    _ => after.row.current_phase.map_or(0, |p| p + 1),
                },
            },
        )),
        Err(e) => shown_again(&viewer, before.id(), e, Source::Button, Vec::new()).await,
    }
}

/// `POST /releases/{id}/rollback`: the open phase is rolled back, for a
/// reason; the phases after it do not open.
pub(crate) async fn roll_back(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
    Form(form): Form<Pairs>,
) -> PageResult {
    let before = load(&viewer, &id).await?;
    let reason = value(&form, "reason");
    let pool = &viewer.state.pool;
    match releases::roll_back(pool, &viewer.user, &origin, before.id(), &reason).await {
        Ok(after) => Ok(redirect_with(
            &viewer,
            &format!("{}#phases", page_of(&after)),
            Notice::ReleaseRolledBack {
                number: after.row.number,
                phase: after.row.rolled_back_phase.map_or(0, |p| p + 1),
            },
        )),
        Err(e) => {
            let typed = vec![("rollback_reason".to_owned(), reason)];
            shown_again(&viewer, before.id(), e, Source::RollBack, typed).await
        }
    }
}

/// `POST /releases/{id}/cancel`: the release is cancelled, for a reason;
/// its changes are free again.
pub(crate) async fn cancel(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
    Form(form): Form<Pairs>,
) -> PageResult {
    let before = load(&viewer, &id).await?;
    let reason = value(&form, "reason");
    let pool = &viewer.state.pool;
    match releases::cancel(pool, &viewer.user, &origin, before.id(), &reason).await {
        Ok(after) => Ok(redirect_with(
            &viewer,
            &page_of(&after),
            Notice::ReleaseCancelled {
                number: after.row.number,
            },
        )),
        Err(e) => {
            let typed = vec![("cancel_reason".to_owned(), reason)];
            shown_again(&viewer, before.id(), e, Source::Cancel, typed).await
        }
    }
}
