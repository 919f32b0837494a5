//! Errors answered to people in a browser. A page handler returns
//! [`PageResult`] and uses `?`; the response it gets carries the error
//! unrendered, and the pages' error middleware (`ui::error_pages`), which
//! knows who is asking and what for, renders it as the error page in the
//! site's layout. Layers that refuse a request before any page sees it (the
//! CSRF check, a database known to be down) answer the same way, so how an
//! error looks is decided in one place, by the pages.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};

use crate::error::{AppError, Shed};

/// An error a page answers with.
#[derive(Debug)]
pub struct PageError(pub AppError);

pub type PageResult<T = Response> = Result<T, PageError>;

impl From<AppError> for PageError {
    fn from(e: AppError) -> Self {
        PageError(e)
    }
}

impl From<sqlx::Error> for PageError {
    fn from(e: sqlx::Error) -> Self {
        PageError(e.into())
    }
}

/// The error a response stands for, left in its extensions for the pages to
/// render.
#[derive(Clone)]
pub struct Unrendered(Arc<AppError>);

impl Unrendered {
    pub fn error(&self) -> &AppError {
        &self.0
    }
}

impl IntoResponse for PageError {
    /// The error's status and the error itself, without a body yet. A busy
    /// password hasher is marked as shedding load here already, so that the
    /// layers between the handler and the rendering (see
    /// `db::health::fail_fast`) do not take it for a database that is away.
    fn into_response(self) -> Response {
        let err = self.0;
        let mut resp = err.status().into_response();
        if let AppError::Busy = err {
            resp.extensions_mut().insert(Shed);
        }
        resp.extensions_mut().insert(Unrendered(Arc::new(err)));
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_response_carries_the_error_for_the_pages_to_render() {
        let resp = PageError(AppError::NotFound("change")).into_response();
        assert_eq!(resp.status(), axum::http::StatusCode::NOT_FOUND);
        let left = resp.extensions().get::<Unrendered>().expect("the error");
        assert!(matches!(left.error(), AppError::NotFound("change")));
        assert!(resp.extensions().get::<Shed>().is_none());
    }

    #[test]
    fn a_busy_hasher_is_marked_as_shedding_load_before_it_is_rendered() {
        let resp = PageError(AppError::Busy).into_response();
        assert_eq!(resp.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(resp.extensions().get::<Shed>().is_some());
    }
}
