//! What a change's page posts to: submit, withdraw, cancel and comment.
//! Each goes to the change service, then back to the change's page with a
//! notice of what was done, or shows the page again with the error beside
//! the field it concerns.

use axum::Form;
use axum::extract::Path;
use axum::response::Response;
use cab_domain::change::ChangeAction;

use super::detail::detail_page;
use super::load;
use crate::changes;
use crate::error::AppError;
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
) -> Response {
    let done = async {
        let current = load(&viewer, &id).await?;
        match changes::transition(
            &viewer.state.pool,
            &viewer.user,
            &origin,
            current.id,
            action,
            reason,
        )
        .await
        {
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
                detail_page(&viewer, current, errors).await
            }
            Err(e) => Err(e),
        }
    };
    done.await.unwrap_or_else(|e| viewer.error(e))
}

pub(crate) async fn submit(viewer: Viewer, origin: Origin, Path(id): Path<String>) -> Response {
    act(viewer, origin, id, ChangeAction::Submit, None).await
}

pub(crate) async fn withdraw(viewer: Viewer, origin: Origin, Path(id): Path<String>) -> Response {
    act(viewer, origin, id, ChangeAction::Withdraw, None).await
}

pub(crate) async fn cancel(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
    Form(form): Form<Pairs>,
) -> Response {
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
) -> Response {
    let done = async {
        let current = load(&viewer, &id).await?;
        match changes::comment(
            &viewer.state.pool,
            &viewer.user,
            &origin,
            current.id,
            &value(&form, "body"),
        )
        .await
        {
            Ok(_) => Ok(redirect_with(
                &viewer,
                &format!("/changes/{}#comments", current.id),
                Notice::Commented {
                    number: current.number,
                },
            )),
            Err(e @ AppError::Invalid { .. }) => {
                let errors = FieldErrors::absorb(e, "body")?;
                detail_page(&viewer, current, errors).await
            }
            Err(e) => Err(e),
        }
    };
    done.await.unwrap_or_else(|e| viewer.error(e))
}
