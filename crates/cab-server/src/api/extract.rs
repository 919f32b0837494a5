//! Extractors whose rejections are problem documents, not axum's plain text.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, AppError};

/// A JSON body; a malformed one is answered with 422 and what is wrong.
pub struct AppJson<T>(pub T);

impl<S, T> FromRequest<S> for AppJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(AppJson(v)),
            Err(rejection) => {
                let text = rejection.body_text();
                // Name the field when serde does: server-owned fields land here.
                let unknown = text
                    .split_once("unknown field `")
                    .and_then(|(_, rest)| rest.split_once('`'))
                    .map(|(field, _)| field.to_owned());
                Err(match unknown {
                    Some(field) => AppError::invalid(
                        &field,
                        format!("{} cannot be set: it is not a field of this request, or the server owns it.", cab_domain::text::quoted(&field)),
                    ),
                    None => AppError::invalid("body", text),
                }
                .into())
            }
        }
    }
}

/// Path parameters; an unparsable one (say, a bad UUID) is answered with 404.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(ApiPath(v)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => {
                Err(AppError::NotFound("resource").into())
            }
            Err(other) => Err(AppError::Internal(anyhow::anyhow!(other.body_text())).into()),
        }
    }
}
