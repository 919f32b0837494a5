//! Serving connections, with limits on what a slow or stalled client can
//! hold, and a shutdown that ends.
//!
//! - **Headers**: a client has [`ServeOptions::header_timeout`] to send a
//!   request's headers, and an idle keep-alive connection as long to start
//!   its next request; then the connection is closed.
//! - **Body and answer**: [`request_timeouts`] gives a request's body
//!   `Settings::body_timeout` to arrive and the whole request
//!   `Settings::request_timeout` to be answered, counted from its headers; a
//!   request over either is answered 408 (a problem document under `/api/`,
//!   a short page elsewhere) and its connection closed.
//! - **Connections**: at most [`ServeOptions::max_connections`] are served at
//!   once. Beyond that, up to [`REFUSING`] more at a time are answered 503
//!   with `Retry-After` and closed; beyond those, no connection is accepted
//!   (new ones wait in the system's queue) until one ends.
//! - **Shutdown**: when `shutdown` completes, the listener is closed at once
//!   and every connection is told to finish: an idle one, or one that has not
//!   sent a whole request, is closed; one with a request in flight closes
//!   after answering it. Whatever is still open after
//!   [`ServeOptions::shutdown_deadline`] is cut, and [`run`] returns `Ok`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::config::ServerArgs;
use crate::error::Problem;
use crate::request::current_request_id;
use crate::state::AppState;

/// How connections are served; see the module's documentation.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// For a request's headers, and for an idle keep-alive connection's next
    /// request (`CAB_HEADER_TIMEOUT_SECONDS`).
    pub header_timeout: Duration,
    /// Connections served at once (`CAB_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// For requests in flight to finish at shutdown (`CAB_SHUTDOWN_SECONDS`).
    pub shutdown_deadline: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_timeout: Duration::from_secs(10),
            max_connections: 512,
            shutdown_deadline: Duration::from_secs(30),
        }
    }
}

impl ServeOptions {
    pub fn from_args(args: &ServerArgs) -> anyhow::Result<Self> {
        anyhow::ensure!(
            args.header_timeout_seconds > 0,
            "CAB_HEADER_TIMEOUT_SECONDS must be positive"
        );
        anyhow::ensure!(
            args.max_connections > 0,
            "CAB_MAX_CONNECTIONS must be positive"
        );
        Ok(ServeOptions {
            header_timeout: Duration::from_secs(args.header_timeout_seconds),
            max_connections: args.max_connections,
            shutdown_deadline: Duration::from_secs(args.shutdown_seconds),
        })
    }
}

/// Connections beyond the limit answered 503 at a time.
pub const REFUSING: usize = 32;
/// The longest a refused connection is kept to hand it its answer.
const REFUSAL_TIME: Duration = Duration::from_secs(1);
/// The answer to a connection beyond the limit.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
    content-type: text/plain; charset=utf-8\r\n\
    retry-after: 1\r\n\
    connection: close\r\n\
    content-length: 51\r\n\
    \r\n\
    CAB is serving all the connections it can; retry.\r\n";
/// At shutdown, how long a connection with no request in flight is given to
/// finish writing its last answer before it is closed.
const IDLE_GRACE: Duration = Duration::from_millis(100);

/// Serves `state`'s application on `listener` until `shutdown` completes,
/// then shuts down as the module's documentation describes.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let db_health = state.db_health.clone();
    let app = crate::router(state);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .keep_alive(true);
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let refusals = Arc::new(Semaphore::new(REFUSING));
    let (closing_tx, closing) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut refused = JoinSet::new();
    let mut at_limit = false;
    tokio::pin!(shutdown);

    loop {
        while connections.try_join_next().is_some() {}
        while refused.try_join_next().is_some() {}
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = Slot::next(&slots, &refusals) => slot,
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
        };
        let permit = match slot.upgrade(&slots) {
            Slot::Serve(permit) => {
                at_limit = false;
                permit
            }
            Slot::Refuse(permit) => {
                if !at_limit {
                    tracing::warn!(
                        max_connections = options.max_connections,
                        "connection limit reached: answering 503 to new connections"
                    );
                    at_limit = true;
                }
                refused.spawn(refuse(stream, permit));
                continue;
            }
        };

        let in_flight = Arc::new(AtomicUsize::new(0));
        let service = {
            let (app, in_flight) = (app.clone(), in_flight.clone());
            hyper::service::service_fn(move |mut req: Request<Incoming>| {
                // As `into_make_service_with_connect_info` does: the peer's
                // address, for the audit trail and throttling.
                req.extensions_mut().insert(ConnectInfo(peer));
                let busy = InFlight::start(&in_flight);
                let answer = app.clone().oneshot(req.map(Body::new));
                async move {
                    let resp = answer.await?;
                    Ok::<_, Infallible>(resp.map(|body| Body::new(Answering { body, _busy: busy })))
                }
            })
        };
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let mut closing = closing.clone();
        connections.spawn(async move {
            let _permit = permit;
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, %peer, "connection ended");
                    }
                    return;
                }
                _ = closing.wait_for(|c| *c) => {}
            }
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                _ = conn.as_mut() => return,
                () = tokio::time::sleep(IDLE_GRACE) => {}
            }
            if in_flight.load(Ordering::Acquire) > 0 {
                // Closes after this answer: keep-alive is off.
                let _ = conn.await;
            }
        });
    }

    drop(listener);
    tracing::info!(
        connections = connections.len(),
        deadline_seconds = options.shutdown_deadline.as_secs_f64(),
        "shutting down: no longer accepting connections; requests in flight have {:?} to finish",
        options.shutdown_deadline
    );
    closing_tx.send_replace(true);
    let _ = tokio::time::timeout(options.shutdown_deadline, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    let cut = connections.len();
    connections.shutdown().await;
    refused.shutdown().await;
    db_health.stop();
    if cut == 0 {
        tracing::info!(cut, "shut down: every request in flight finished");
    } else {
        tracing::warn!(
            cut,
            "shut down: {cut} connection(s) still busy at the deadline were closed"
        );
    }
    Ok(())
}

/// What the next accepted connection gets: served, or answered 503.
enum Slot {
    Serve(OwnedSemaphorePermit),
    Refuse(OwnedSemaphorePermit),
}

impl Slot {
    /// Waits for room to serve a connection, or failing that to refuse one.
    async fn next(slots: &Arc<Semaphore>, refusals: &Arc<Semaphore>) -> Slot {
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            return Slot::Serve(permit);
        }
        // Neither semaphore is ever closed.
        tokio::select! {
            biased;
            Ok(permit) = slots.clone().acquire_owned() => Slot::Serve(permit),
            Ok(permit) = refusals.clone().acquire_owned() => Slot::Refuse(permit),
        }
    }

    /// A connection that was to be refused is served when a slot came free
    /// while it was being accepted.
    fn upgrade(self, slots: &Arc<Semaphore>) -> Slot {
        match self {
            Slot::Refuse(refusal) => match slots.clone().try_acquire_owned() {
                Ok(permit) => Slot::Serve(permit),
                Err(_) => Slot::Refuse(refusal),
            },
            serve => serve,
        }
    }
}

/// Answers 503 to a connection beyond the limit and closes it, reading what
/// the client sent meanwhile so that closing does not reset the connection
/// before the answer arrives.
async fn refuse(mut stream: TcpStream, _permit: OwnedSemaphorePermit) {
    let _ = tokio::time::timeout(REFUSAL_TIME, async {
        stream.write_all(BUSY).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// An accept that failed: a connection reset before it was accepted is no
/// matter; anything else (out of file descriptors, say) is logged, and
/// accepting pauses briefly rather than spinning.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Counts a request as in flight from its headers until its answer's body
/// has been handed over.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn start(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An answer's body, keeping its request counted as in flight until the
/// connection is done with it.
struct Answering {
    body: Body,
    _busy: InFlight,
}

impl HttpBody for Answering {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Gives a request's body `Settings::body_timeout` to arrive and the whole
/// request `Settings::request_timeout` to be answered, from its headers;
/// answers 408 and closes the connection when either runs out.
pub async fn request_timeouts(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let settings = &state.settings;
    let is_api = req.uri().path().starts_with("/api/");
    let body_late = Arc::new(AtomicBool::new(false));
    let req = req.map(|body| {
        if body.is_end_stream() {
            body
        } else {
            Body::new(Deadline {
                body,
                deadline: Box::pin(tokio::time::sleep(settings.body_timeout)),
                late: body_late.clone(),
            })
        }
    });
    let which = match tokio::time::timeout(settings.request_timeout, next.run(req)).await {
        Ok(resp) if !body_late.load(Ordering::Acquire) => return resp,
        Ok(_) => "body",
        Err(_) => "request",
    };
    tracing::warn!(timeout = which, "request timed out");
    timed_out(is_api)
}

/// A request body that fails once its deadline passes, saying so in `late`.
struct Deadline {
    body: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    late: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimedOut;

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.late.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

const TIMED_OUT_DETAIL: &str =
    "The request did not arrive, or could not be answered, in time. Try again.";

const TIMED_OUT_PAGE: &str = "<!doctype html>\n<html lang=\"en\">\n<meta charset=\"utf-8\">\n\
    <title>Request timed out · CAB</title>\n<h1>Request timed out</h1>\n\
    <p>The request did not arrive, or could not be answered, in time. Try again.</p>\n\
    <p><a href=\"/\">Back to the dashboard</a></p>\n</html>\n";

/// The 408 answer: a problem document under `/api/`, a short page
/// elsewhere; the connection closes after it.
fn timed_out(is_api: bool) -> Response {
    let status = StatusCode::REQUEST_TIMEOUT;
    let mut resp = if is_api {
        let problem = Problem {
            kind: "urn:cab:problem:request_timeout".into(),
            title: "Request timed out".into(),
            status: status.as_u16(),
            detail: TIMED_OUT_DETAIL.into(),
            code: "request_timeout".into(),
            field: None,
            errors: Vec::new(),
            reasons: Vec::new(),
            request_id: current_request_id(),
        };
        let mut resp = (status, Json(problem)).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        resp
    } else {
        (status, Html(TIMED_OUT_PAGE)).into_response()
    };
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_answer_declares_its_length() {
        let text = std::str::from_utf8(BUSY).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
    }
}
