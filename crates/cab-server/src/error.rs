//! One error type for every handler, with two faces: `application/problem+json`
//! (RFC 9457) for the API and an HTML page in the site's layout for people.
//! Internal details are logged, never sent; a 500 carries the request id.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cab_domain::Denial;
use cab_domain::change::FieldError;
use cab_domain::text::Escaped;
use serde::Serialize;
use utoipa::ToSchema;

use crate::request::current_request_id;

/// Every way a request fails. Its `Display` is what the log says; a
/// client's text can reach it (a quoted value, a field name from its JSON),
/// so that text is written escaped: a newline in it cannot start a forged
/// log line, an escape sequence cannot colour or rewrite a terminal.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Missing or invalid credentials.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// A policy refused; the denial has been recorded by the caller.
    #[error("{}", Escaped(.0))]
    Forbidden(Denial),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Input that cannot be accepted, naming the field.
    #[error("{}: {}", Escaped(.field), Escaped(.message))]
    Invalid { field: String, message: String },
    /// Several fields at once (a form or a submission), in form order.
    #[error("{} fields are invalid", .0.len())]
    Fields(Vec<(String, String)>),
    /// A policy refused and the refusal is still to be recorded. Services
    /// return it from inside their transaction; `refusal::recorded` records
    /// it once the transaction is over and answers [`AppError::refused`].
    #[error("{}", Escaped(.0))]
    Refused(Denial),
    /// A gate that names every reason it refuses (the deployment gate), once
    /// recorded: answered 403 with each reason in `reasons`.
    #[error("{} reasons", .0.len())]
    Refusals(Vec<Denial>),
    /// The request conflicts with the current state (a name taken, an action done).
    #[error("{}", Escaped(.0))]
    Conflict(Denial),
    #[error("too many attempts; retry after {retry_after} s")]
    Throttled { retry_after: i64 },
    #[error("the form or request is missing a valid CSRF token")]
    Csrf,
    #[error("the database is unavailable")]
    Unavailable,
    /// More requests of an expensive kind are waiting than can be served:
    /// sign-ins for a password check (shed at once, see `crypto::slots`),
    /// or reads of the measures of change (after a wait, see `metrics`).
    #[error("too many requests of this kind waiting")]
    Busy,
    /// As many audit exports (or evidence packs) are being made as this
    /// server makes at once: each holds a database connection meanwhile.
    #[error("{0} audit exports are being made")]
    ExportsBusy(usize),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        AppError::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// The answer to a recorded refusal: a conflict with the change's or
    /// account's state, or a refusal of the person.
    pub fn refused(denial: Denial) -> Self {
        match denial.code {
            "already_disabled"
            | "invalid_transition"
            | "change_closed"
            | "grant_closed"
            | "authorization_used"
            | "authorization_expired"
            | "break_glass_expired"
            | "deployment_under_way"
            | "change_deployed" => AppError::Conflict(denial),
            _ => AppError::Forbidden(denial),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Refused(d) => AppError::refused(d.clone()).status(),
            AppError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) | AppError::Csrf | AppError::Refusals(_) => {
                StatusCode::FORBIDDEN
            }
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Invalid { .. } | AppError::Fields(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable | AppError::Busy | AppError::ExportsBusy(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Seconds after which asking again may succeed, for `Retry-After`.
    pub fn retry_after(&self) -> Option<i64> {
        match self {
            AppError::Throttled { retry_after } => Some(*retry_after),
            AppError::ExportsBusy(_) => Some(60),
            _ => None,
        }
    }

    /// The stable code behind `type` in problem documents.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated(_) => "unauthenticated",
            AppError::Forbidden(d) | AppError::Conflict(d) | AppError::Refused(d) => d.code,
            AppError::Refusals(_) => "deployment_refused",
            AppError::NotFound(_) => "not_found",
            AppError::Invalid { .. } | AppError::Fields(_) => "validation",
            AppError::Throttled { .. } => "too_many_attempts",
            AppError::Csrf => "csrf",
            AppError::Unavailable => "unavailable",
            AppError::Busy => "busy",
            AppError::ExportsBusy(_) => "exports_busy",
            AppError::Internal(_) => "internal",
        }
    }

    pub fn title(&self) -> &'static str {
        match self {
            AppError::Refused(d) => AppError::refused(d.clone()).title(),
            AppError::Unauthenticated(_) => "Not signed in",
            AppError::Forbidden(_) | AppError::Csrf | AppError::Refusals(_) => "Not allowed",
            AppError::NotFound(_) => "Not found",
            AppError::Invalid { .. } | AppError::Fields(_) => "Invalid input",
            AppError::Conflict(_) => "Conflict",
            AppError::Throttled { .. } => "Too many attempts",
            AppError::Unavailable => "Service unavailable",
            AppError::Busy => "Busy",
            AppError::ExportsBusy(_) => "Too many exports at once",
            AppError::Internal(_) => "Internal error",
        }
    }

    /// A sentence for people; never internal text.
    pub fn detail(&self) -> String {
        match self {
            AppError::Unauthenticated(why) => (*why).to_owned(),
            AppError::Forbidden(d) | AppError::Conflict(d) | AppError::Refused(d) => {
                d.message.clone()
            }
            AppError::Refusals(reasons) => reasons
                .iter()
                .map(|d| d.message.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            AppError::NotFound(what) => format!("No such {what}."),
            AppError::Invalid { field, message } => format!("{field}: {message}"),
            AppError::Fields(errors) => errors
                .iter()
                .map(|(f, m)| format!("{f}: {m}"))
                .collect::<Vec<_>>()
                .join(" "),
            AppError::Throttled { retry_after } => {
                format!("Too many failed attempts. Try again in {retry_after} seconds.")
            }
            AppError::Csrf => {
                "The form was missing its security token or it had expired. Go back, reload the page and try again.".into()
            }
            AppError::Unavailable => {
                "The database is unavailable at the moment. Try again shortly.".into()
            }
            AppError::ExportsBusy(n) => format!(
                "CAB is already making {n} {}, as many as it makes at once. Try again in a minute.",
                if *n == 1 {
                    "audit export or evidence pack"
                } else {
                    "audit exports or evidence packs"
                }
            ),
            AppError::Busy => {
                "Too many requests of this kind are waiting at this moment (sign-ins to check, or measures to compute). Try again shortly."
                    .into()
            }
            AppError::Internal(_) => match current_request_id() {
                Some(id) => format!("Something went wrong on our side. Quote request id {id} when reporting it."),
                None => "Something went wrong on our side.".into(),
            },
        }
    }

    fn log(&self) {
        match self {
            AppError::Internal(e) => tracing::error!(error = ?e, "internal error"),
            AppError::Unavailable => tracing::warn!("database unavailable"),
            AppError::Refused(d) => {
                tracing::error!(code = d.code, "a refusal was answered unrecorded")
            }
            _ => {}
        }
    }
}

impl From<FieldError> for AppError {
    fn from(e: FieldError) -> Self {
        AppError::invalid(e.field, e.message)
    }
}

/// Every field at fault at once, in the order the rules found them.
impl From<Vec<FieldError>> for AppError {
    fn from(errors: Vec<FieldError>) -> Self {
        AppError::Fields(
            errors
                .into_iter()
                .map(|e| (e.field.to_owned(), e.message))
                .collect(),
        )
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::warn!(error = %e, "database unreachable");
                AppError::Unavailable
            }
            sqlx::Error::Database(ref db)
                if db
                    .code()
                    .is_some_and(|c| c.starts_with("08") || c == "57P01" || c == "57P03") =>
            {
                AppError::Unavailable
            }
            other => AppError::Internal(anyhow::Error::new(other).context("database error")),
        }
    }
}

impl From<crate::crypto::HashError> for AppError {
    fn from(e: crate::crypto::HashError) -> Self {
        match e {
            crate::crypto::HashError::Busy => AppError::Busy,
            other => AppError::Internal(anyhow::Error::new(other)),
        }
    }
}

/// Marks a 503 that sheds load (a busy password hasher), so it is not taken
/// for a sign that the database is away.
#[derive(Debug, Clone, Copy)]
pub struct Shed;

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A stable URI naming the kind of problem: `urn:cab:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The stable reason code, the last part of `type`.
    pub code: String,
    /// For validation problems, the field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For validation problems, every field at fault.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
    /// For a refused deployment, every reason, each with its stable code.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// One reason a request was refused.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct Reason {
    pub code: String,
    pub message: String,
}

impl From<&Denial> for Reason {
    fn from(d: &Denial) -> Self {
        Reason {
            code: d.code.to_owned(),
            message: d.message.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

/// The API face of [`AppError`].
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ApiError(pub AppError);

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        ApiError(e)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        e.log();
        let status = e.status();
        let problem = Problem {
            kind: format!("urn:cab:problem:{}", e.code()),
            title: e.title().to_owned(),
            status: status.as_u16(),
            detail: e.detail(),
            code: e.code().to_owned(),
            field: match &e {
                AppError::Invalid { field, .. } => Some(field.clone()),
                AppError::Fields(errors) => errors.first().map(|(f, _)| f.clone()),
                _ => None,
            },
            errors: match &e {
                AppError::Invalid { field, message } => vec![FieldProblem {
                    field: field.clone(),
                    message: message.clone(),
                }],
                AppError::Fields(errors) => errors
                    .iter()
                    .map(|(field, message)| FieldProblem {
                        field: field.clone(),
                        message: message.clone(),
                    })
                    .collect(),
                _ => Vec::new(),
            },
            reasons: match &e {
                AppError::Refusals(reasons) => reasons.iter().map(Reason::from).collect(),
                _ => Vec::new(),
            },
            request_id: current_request_id(),
        };
        let mut resp = (status, axum::Json(problem)).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(retry_after) = e.retry_after()
            && let Ok(v) = HeaderValue::from_str(&retry_after.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if let AppError::Busy = e {
            resp.extensions_mut().insert(Shed);
        }
        if let AppError::Unauthenticated(_) = e {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_become_one_validation_error_in_their_order() {
        let err = AppError::from(vec![
            FieldError {
                field: "title",
                message: "Give it a title.".into(),
            },
            FieldError {
                field: "rollback_plan",
                message: "Say how to undo it.".into(),
            },
        ]);
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(err.code(), "validation");
        let AppError::Fields(fields) = err else {
            panic!("not a fields error: {err:?}");
        };
        assert_eq!(
            fields,
            vec![
                ("title".to_owned(), "Give it a title.".to_owned()),
                ("rollback_plan".to_owned(), "Say how to undo it.".to_owned()),
            ]
        );
    }
}
