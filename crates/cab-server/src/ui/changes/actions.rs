//! What a change's page posts to: submit, withdraw, cancel and comment.
//! Each goes to the change service, then back to the change's page with a
//! notice of what was done, or shows the page again with the error beside
//! the field it concerns.

use axum::Form;
use axum::extract::Path;
use cab_domain::change::ChangeAction;

use super::detail::detail_page;
use crate::changes;
use crate::error::AppError;
use crate::page_error::PageResult;
use crate::request::Origin;
use crate::ui::Viewer;
use crate::ui::form::{FieldErrors, FormPairs as Pairs, form_value as value};
use crate::ui::notice::{Notice, redirect_with};

async fn act(
    viewer: Viewer,
    origin: Origin,
    id: String,
    action: ChangeAction,
    reason: Option<String>,
) -> PageResult {
    // The service loads and checks the change under its lock; the page
    // loads it again only to show it with an error beside a field.
    let pool = &viewer.state.pool;
    let id = changes::resolve_id(pool, &id).await?;
    match changes::transition(pool, &viewer.user, &origin, id, action, reason).await {
        Ok(v) => {
            let number = v.number;
            let notice = match action {
                ChangeAction::Submit => Notice::ChangeSubmitted {
                    number,
                    state: v.state,
                },
                ChangeAction::Withdraw => Notice::ChangeWithdrawn { number },
                ChangeAction::Cancel => Notice::ChangeCancelled { number },
                ChangeAction::Edit | ChangeAction::Comment => Notice::ChangeSaved { number },
            };
            Ok(redirect_with(
                &viewer,
                &format!("/changes/{}", v.id),
                notice,
            ))
        }
        Err(e @ (AppError::Invalid { .. } | AppError::Fields(_))) => {
            let errors = FieldErrors::absorb(e, "title")?;
            let current = changes::load(pool, id).await?;
            Ok(detail_page(&viewer, current, errors).await?)
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn submit(viewer: Viewer, origin: Origin, Path(id): Path<String>) -> PageResult {
    act(viewer, origin, id, ChangeAction::Submit, None).await
}

pub(crate) async fn withdraw(viewer: Viewer, origin: Origin, Path(id): Path<String>) -> PageResult {
    act(viewer, origin, id, ChangeAction::Withdraw, None).await
}

pub(crate) async fn cancel(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
    Form(form): Form<Pairs>,
) -> PageResult {
    act(
        viewer,
        origin,
        id,
        ChangeAction::Cancel,
        Some(value(&form, "reason")),
    )
    .await
}

pub(crate) async fn comment(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
    Form(form): Form<Pairs>,
) -> PageResult {
    let pool = &viewer.state.pool;
    let id = changes::resolve_id(pool, &id).await?;
    match changes::comment(pool, &viewer.user, &origin, id, &value(&form, "body")).await {
        Ok(done) => Ok(redirect_with(
            &viewer,
            &format!("/changes/{id}#comments"),
            Notice::Commented {
                number: done.change_number,
            },
        )),
        Err(e @ AppError::Invalid { .. }) => {
            let errors = FieldErrors::absorb(e, "body")?;
            let current = changes::load(pool, id).await?;
            Ok(detail_page(&viewer, current, errors).await?)
        }
        Err(e) => Err(e.into()),
    }
}
