//! The `Idempotency-Key` header on the API's creating requests: the
//! operations whose OpenAPI document declares it ([`IdempotencyKey`]), which
//! are the POSTs that answer 201.
//!
//! Without the header a request is handled as ever. With it, for the
//! authenticated caller and that key, within [`LIFETIME`] of its first use:
//!
//! - the first request runs, and its service binds the key in the effect's
//!   own transaction (`crate::idempotency::bind`); its 2xx answer is then
//!   stored with the key;
//! - a retry with the same method, path and body (byte for byte) gets the
//!   stored answer again, status, content type and body, marked
//!   `Idempotent-Replayed: true`, and creates nothing;
//! - a retry whose first answer was never stored (the server stopped between
//!   the commit and the store, or failed after the commit) gets the same
//!   status and the resource as it is now, read as its GET reads it, with the
//!   secret shown once (a generated password, a token) recovered from the
//!   key's row;
//! - a request with the same key and another method, path or body is
//!   refused (422, `idempotency_key_reused`);
//! - a request racing the first one with the same key waits for it and gets
//!   its answer: its own effect is rolled back when its key fails to bind.
//!
//! Refused and invalid requests bind nothing: the same key can be used again.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cab_db::idempotency::{Answer, KeyRow};
use utoipa::IntoParams;
use utoipa::openapi::OpenApi;
use utoipa::openapi::path::ParameterIn;

use super::changes::ChangeOut;
use super::standard_templates::TemplateOut;
use crate::auth::ApiUser;
use crate::error::{ApiError, AppError, Problem};
use crate::idempotency::{
    Claim, HEADER, LIFETIME, Outcome, REPLAYED_HEADER, SEALED_RESPONSE, SEALED_SECRET, check_key,
    fingerprint, kind,
};
use crate::request::current_request_id;
use crate::state::AppState;

/// The header's name as the OpenAPI document spells it.
pub const PARAMETER: &str = "Idempotency-Key";

/// The largest body a keyed request may have: axum's limit for JSON bodies.
const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// How long a retry waits for the answer of a request that bound its key
/// moments ago and is about to store it, before it reads the resource.
const SETTLE: Duration = Duration::from_secs(5);
const SETTLE_POLL: Duration = Duration::from_millis(25);

/// How often one server tries to purge expired keys.
const PURGE_EVERY_SECS: i64 = 3600;

/// The `Idempotency-Key` request header, for `params(...)` of every creating
/// operation; declaring it is what makes an operation honour it.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // documentation only: the guard reads the header
pub struct IdempotencyKey {
    /// Makes a retry safe: 1 to 255 visible ASCII characters, e.g. a UUID,
    /// new for each request the client means to make. Repeated within 24
    /// hours by the same caller with the same method, path and body, the
    /// request creates nothing and is answered as the first one was, marked
    /// `Idempotent-Replayed: true` (when that answer was lost with the
    /// server, the resource as it is now, with the same status). With
    /// another method, path or body: 422 `idempotency_key_reused`. A
    /// malformed key: 400 `idempotency_key_invalid`.
    #[param(
        rename = "Idempotency-Key",
        nullable = false,
        min_length = 1,
        max_length = 255,
        pattern = "^[!-~]{1,255}$"
    )]
    idempotency_key: Option<String>,
}

/// The paths whose POST operation declares the header.
pub fn creating_routes(doc: &OpenApi) -> HashSet<String> {
    doc.paths
        .paths
        .iter()
        .filter(|(_, item)| {
            item.post.as_ref().is_some_and(|op| {
                op.parameters
                    .iter()
                    .flatten()
                    .any(|p| p.name == PARAMETER && p.parameter_in == ParameterIn::Header)
            })
        })
        .map(|(path, _)| path.clone())
        .collect()
}

#[derive(Clone)]
struct Guard {
    state: AppState,
    routes: Arc<HashSet<String>>,
}

/// The API with its creating operations (as `doc` declares them) honouring
/// the header.
pub fn guard(api: Router<AppState>, doc: &OpenApi, state: &AppState) -> Router<AppState> {
    let guard = Guard {
        state: state.clone(),
        routes: Arc::new(creating_routes(doc)),
    };
    api.route_layer(axum::middleware::from_fn_with_state(guard, run))
}

fn problem(status: StatusCode, code: &str, title: &str, detail: String) -> Response {
    let body = Problem {
        kind: format!("urn:cab:problem:{code}"),
        title: title.to_owned(),
        status: status.as_u16(),
        detail,
        code: code.to_owned(),
        field: Some(PARAMETER.to_owned()),
        errors: Vec::new(),
        reasons: Vec::new(),
        request_id: current_request_id(),
    };
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    resp
}

/// The request's key, if it has one; else why it is not one.
fn key_in(headers: &HeaderMap) -> Result<Option<String>, &'static str> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("Send one Idempotency-Key, not several.");
    }
    check_key(value.as_bytes()).map(|k| Some(k.to_owned()))
}

async fn run(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    let creating = req.method() == Method::POST
        && req
            .extensions()
            .get::<MatchedPath>()
            .is_some_and(|p| guard.routes.contains(p.as_str()));
    if !creating {
        return next.run(req).await;
    }
    let key = match key_in(req.headers()) {
        Ok(Some(key)) => key,
        Ok(None) => return next.run(req).await,
        Err(why) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "idempotency_key_invalid",
                "Invalid Idempotency-Key",
                why.to_owned(),
            );
        }
    };
    let (mut parts, body) = req.into_parts();
    let user = match ApiUser::from_request_parts(&mut parts, &guard.state).await {
        Ok(ApiUser(user)) => user,
        Err(e) => return e.into_response(),
    };
    let Ok(body) = to_bytes(body, BODY_LIMIT).await else {
        return ApiError(AppError::invalid(
            "body",
            "The body could not be read in full, or is larger than the 2 MiB a request may have.",
        ))
        .into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    let claim = match Claim::new(
        &guard.state.keys,
        user.id,
        &key,
        fingerprint(parts.method.as_str(), path, &body),
    ) {
        Ok(claim) => claim,
        Err(e) => return ApiError(e).into_response(),
    };
    match earlier(&guard.state, &claim).await {
        Ok(Some(row)) => return answer(&guard.state, &claim, row).await,
        Ok(None) => {}
        Err(e) => return ApiError(e).into_response(),
    }
    parts.extensions.insert(claim.clone());
    let resp = next.run(Request::from_parts(parts, Body::from(body))).await;
    match (claim.outcome(), resp.status().is_success()) {
        (Outcome::Bound, true) => keep(&guard.state, &claim, resp).await,
        (Outcome::Bound, false) => resp,
        (Outcome::Unbound, true) => {
            tracing::error!(
                "a creating request succeeded without binding its Idempotency-Key: a retry would repeat it"
            );
            resp
        }
        // Lost the key to a request that raced this one, or failed because
        // of what that request created (a name it took): its answer is this
        // one's too. A request that failed on its own leaves the key free.
        (Outcome::Taken | Outcome::Unbound, _) => match earlier(&guard.state, &claim).await {
            Ok(Some(row)) => answer(&guard.state, &claim, row).await,
            Ok(None) => resp,
            Err(e) => ApiError(e).into_response(),
        },
    }
}

/// The caller's live row for this key.
async fn earlier(state: &AppState, claim: &Claim) -> Result<Option<KeyRow>, AppError> {
    let mut conn = state.pool.acquire().await?;
    Ok(cab_db::idempotency::find(
        &mut conn,
        claim.user_id(),
        claim.key_hash(),
        LIFETIME,
        chrono::Duration::from_std(SETTLE).unwrap_or_default(),
    )
    .await?)
}

/// Stores a first answer with its key and sends it.
async fn keep(state: &AppState, claim: &Claim, resp: Response) -> Response {
    let (parts, body) = resp.into_parts();
    let body = match to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => return ApiError(AppError::Internal(anyhow::Error::new(e))).into_response(),
    };
    let header_text = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let stored = async {
        let sealed = claim.seal(SEALED_RESPONSE, &body)?;
        let mut conn = state.pool.acquire().await?;
        cab_db::idempotency::store_answer(
            &mut conn,
            claim.user_id(),
            claim.key_hash(),
            &Answer {
                status: parts.status.as_u16() as i16,
                content_type: header_text(header::CONTENT_TYPE),
                location: header_text(header::LOCATION),
                sealed_body: &sealed,
            },
        )
        .await?;
        Ok::<_, AppError>(())
    }
    .await;
    if let Err(e) = stored {
        // The effect stands; a retry answers with the resource as it is now.
        tracing::warn!(error = %e, "could not store an answer with its Idempotency-Key");
    }
    purge_now_and_then(state);
    Response::from_parts(parts, Body::from(body))
}

/// The answer to a request whose key is bound already.
async fn answer(state: &AppState, claim: &Claim, row: KeyRow) -> Response {
    if row.fingerprint != claim.fingerprint() {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "Idempotency-Key reused",
            "This Idempotency-Key was used in the last 24 hours for a request with another \
             method, path or body, which it stands for: a retry repeats its request byte for \
             byte. Use a new key for a new request."
                .into(),
        );
    }
    let row = if row.response_status.is_none() && row.settling {
        settled(state, claim).await.unwrap_or(row)
    } else {
        row
    };
    if let Some(resp) = stored_answer(claim, &row) {
        return resp;
    }
    match current(state, claim, &row).await {
        Ok(resp) => replayed(resp),
        Err(e) => ApiError(e).into_response(),
    }
}

/// The row once its answer is stored, or once it has been bound for
/// [`SETTLE`]: the request that bound it is gone without storing one.
async fn settled(state: &AppState, claim: &Claim) -> Option<KeyRow> {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        tokio::time::sleep(SETTLE_POLL).await;
        let row = earlier(state, claim).await.ok()??;
        if row.response_status.is_some() || !row.settling || tokio::time::Instant::now() > deadline
        {
            return Some(row);
        }
    }
}

fn replayed(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    resp
}

/// The stored answer, as it was sent.
fn stored_answer(claim: &Claim, row: &KeyRow) -> Option<Response> {
    let status = StatusCode::from_u16(u16::try_from(row.response_status?).ok()?).ok()?;
    let Some(body) = claim.unseal(SEALED_RESPONSE, row.response_body.as_deref()?) else {
        tracing::warn!(
            "a stored answer could not be opened (was the secret key changed?): answering with the resource"
        );
        return None;
    };
    let mut resp = Response::new(Body::from(Bytes::from(body)));
    *resp.status_mut() = status;
    for (name, value) in [
        (header::CONTENT_TYPE, &row.response_type),
        (header::LOCATION, &row.response_location),
    ] {
        if let Some(v) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            resp.headers_mut().insert(name, v);
        }
    }
    Some(replayed(resp))
}

/// The request took effect, but the secret it showed once cannot be shown
/// again (the server's secret key changed since): a conflict the caller can
/// resolve, never a server error.
fn secret_gone() -> AppError {
    AppError::Conflict(cab_domain::Denial::new(
        "idempotent_secret_unavailable",
        "This request already took effect, but the password or token it showed once can no \
         longer be shown again: set a new password for the account, or create a new token \
         and revoke this one.",
    ))
}

/// What was created, as it is now, with the status every creating request
/// answers with (201) and the secret it showed once.
async fn current(state: &AppState, claim: &Claim, row: &KeyRow) -> Result<Response, AppError> {
    let id = row.entity_id;
    let secret = match row.sealed_secret.as_deref() {
        None => None,
        Some(sealed) => Some(
            claim
                .unseal(SEALED_SECRET, sealed)
                .and_then(|s| String::from_utf8(s).ok())
                .ok_or_else(secret_gone)?,
        ),
    };
    let created = StatusCode::CREATED;
    Ok(match row.entity_kind.as_str() {
        kind::CHANGE => (
            created,
            Json(ChangeOut::from(
                crate::changes::load(&state.pool, id).await?,
            )),
        )
            .into_response(),
        kind::COMMENT => {
            (created, Json(super::changes::comment_out(state, id).await?)).into_response()
        }
        kind::USER => (
            created,
            Json(super::users::created_user(state, id, secret).await?),
        )
            .into_response(),
        kind::API_TOKEN => {
            let secret = secret.ok_or_else(secret_gone)?;
            (
                created,
                Json(super::users::created_token(state, id, secret).await?),
            )
                .into_response()
        }
        kind::TEMPLATE => (
            created,
            Json(TemplateOut::from(
                crate::standard_templates::load(&state.pool, id).await?,
            )),
        )
            .into_response(),
        kind::DEPLOYMENT => {
            let token = secret.ok_or_else(secret_gone)?;
            (
                created,
                Json(super::deployments::authorization_out(state, id, token).await?),
            )
                .into_response()
        }
        kind::FREEZE => {
            (created, Json(super::freezes::freeze_out(state, id).await?)).into_response()
        }
        kind::BREAK_GLASS => (
            created,
            Json(super::exceptions::break_glass_out(state, id).await?),
        )
            .into_response(),
        kind::OBSERVED => (
            created,
            Json(super::exceptions::observed_out(state, id).await?),
        )
            .into_response(),
        kind::MAINTENANCE_PERIOD => (
            created,
            Json(super::calendar::maintenance_period_out(state, id).await?),
        )
            .into_response(),
        kind::RELEASE => (
            created,
            [(header::LOCATION, super::releases::location(id))],
            Json(super::releases::release_out(state, id).await?),
        )
            .into_response(),
        kind::REVIEW_ACTION => (
            created,
            Json(super::reviews::created_action(state, id).await?),
        )
            .into_response(),
        kind::CALENDAR_FEED => {
            let secret = secret.ok_or_else(secret_gone)?;
            (
                created,
                Json(super::calendar::created_feed(state, claim.user_id(), id, &secret).await?),
            )
                .into_response()
        }
        other => {
            return Err(AppError::Internal(anyhow::anyhow!(
                "an Idempotency-Key names an unknown kind of entity: {other}"
            )));
        }
    })
}

/// Deletes expired keys at most once an hour from each server, and from one
/// server at a time; in the background, so no answer waits for it.
fn purge_now_and_then(state: &AppState) {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = chrono::Utc::now().timestamp();
    let last = LAST.load(Ordering::Relaxed);
    if now - last < PURGE_EVERY_SECS
        || LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let pool = state.pool.clone();
    tokio::spawn(async move {
        if let Err(e) = purge(&pool).await {
            tracing::warn!(error = %e, "could not purge expired Idempotency-Keys");
        }
    });
}

/// Deletes the keys older than [`LIFETIME`], unless another server is.
pub async fn purge(pool: &sqlx::PgPool) -> Result<Option<u64>, AppError> {
    let mut tx = pool.begin().await?;
    let deleted = cab_db::idempotency::purge_expired(&mut tx, LIFETIME).await?;
    tx.commit().await?;
    if let Some(n) = deleted {
        tracing::debug!(deleted = n, "purged expired Idempotency-Keys");
    }
    Ok(deleted)
}
