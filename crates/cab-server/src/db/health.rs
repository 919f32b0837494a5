//! Knowing when the database is away, so that requests are answered 503 at
//! once instead of each waiting out the pool's acquire timeout.
//!
//! A 503 from a handler (the pool could not give it a connection, or the
//! password hasher was busy), or a request still unanswered after half a
//! second, makes [`DbHealth`] check the database in the background: an idle
//! pooled connection is pinged, or a new one opened. When
//! that fails for a connection-level reason, the database is *down*: every
//! request that needs it is answered 503 by [`fail_fast`] without touching
//! the pool, and the check repeats every [`RECHECK`] until the database
//! answers again. The state is per process: replicas sharing a database each
//! find out for themselves.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sqlx::{ConnectOptions, Connection, PgPool};
use tokio::sync::Notify;

use crate::error::{ApiError, AppError};
use crate::page_error::PageError;
use crate::state::AppState;

/// How often a database known to be down is checked again.
pub const RECHECK: Duration = Duration::from_millis(250);
/// The longest one check may take: a database that does not answer a
/// connection within it counts as down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// After a check found the database up, further 503s within this time do
/// not check again (a busy password hasher answers 503 too).
const CHECK_COOLDOWN: Duration = Duration::from_secs(1);
/// A request that takes longer than this makes the database checked.
const SLOW: Duration = Duration::from_millis(500);
/// The `Retry-After` of every 503, in seconds.
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// Whether the database is reachable, as far as this process knows.
#[derive(Clone)]
pub struct DbHealth {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    down: AtomicBool,
    /// A check is running (or, while down, the recheck loop).
    checking: AtomicBool,
    last_up: Mutex<Option<Instant>>,
    stopped: AtomicBool,
    stop: Notify,
}

impl DbHealth {
    pub fn new(pool: &PgPool) -> Self {
        DbHealth {
            inner: Arc::new(Inner {
                pool: pool.clone(),
                down: AtomicBool::new(false),
                checking: AtomicBool::new(false),
                last_up: Mutex::new(None),
                stopped: AtomicBool::new(false),
                stop: Notify::new(),
            }),
        }
    }

    /// The last check found the database unreachable, and no later one has
    /// reached it.
    pub fn is_down(&self) -> bool {
        self.inner.down.load(Ordering::Acquire)
    }

    /// Something failed in a way that may mean the database is away: check
    /// in the background, unless a check is running or one just passed.
    pub fn suspect(&self) {
        let inner = &self.inner;
        if inner.stopped.load(Ordering::Acquire) || inner.checking.swap(true, Ordering::AcqRel) {
            return;
        }
        let recent = inner
            .last_up
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|at| at.elapsed() < CHECK_COOLDOWN);
        if recent {
            inner.checking.store(false, Ordering::Release);
            return;
        }
        tokio::spawn(watch(inner.clone()));
    }

    /// Stops the background checks, for shutdown.
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::Release);
        self.inner.stop.notify_waiters();
    }
}

/// Checks until the database answers, marking it down meanwhile.
async fn watch(inner: Arc<Inner>) {
    loop {
        let stop = inner.stop.notified();
        tokio::pin!(stop);
        stop.as_mut().enable();
        if inner.stopped.load(Ordering::Acquire) {
            break;
        }
        match check(&inner.pool).await {
            Ok(()) => {
                *inner.last_up.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(Instant::now());
                if inner.down.swap(false, Ordering::AcqRel) {
                    tracing::info!("the database is reachable again");
                }
                break;
            }
            Err(e) if is_unreachable(&e) => {
                if !inner.down.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        error = %e,
                        "the database is unreachable: answering 503 at once until it is back"
                    );
                }
            }
            Err(e) => {
                // Reached, but refused for another reason (too many
                // connections, say): pooled connections may still work.
                tracing::warn!(error = %e, "database check failed");
                if inner.down.swap(false, Ordering::AcqRel) {
                    tracing::info!("the database is reachable again");
                }
                break;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(RECHECK) => {}
            () = &mut stop => break,
        }
    }
    inner.checking.store(false, Ordering::Release);
}

/// Pings an idle pooled connection, or else opens a connection of its own
/// (the pool may be busy rather than broken).
async fn check(pool: &PgPool) -> Result<(), sqlx::Error> {
    if let Some(mut conn) = pool.try_acquire() {
        match tokio::time::timeout(CHECK_TIMEOUT, conn.ping()).await {
            Ok(Ok(())) => return Ok(()),
            _ => {
                // Broken: the pool must not hand it out again.
                conn.close_on_drop();
            }
        }
    }
    let opts = pool.connect_options();
    match tokio::time::timeout(CHECK_TIMEOUT, opts.connect()).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(sqlx::Error::PoolTimedOut),
    }
}

/// Whether an error means the database cannot be reached (rather than that
/// it refused something).
pub fn is_unreachable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// Paths answered without the database: liveness, the OpenAPI document and
/// static assets. `/readyz` answers for itself, and `/metrics` leaves out
/// what it cannot read.
fn needs_database(path: &str) -> bool {
    !(path == "/healthz"
        || path == "/readyz"
        || path == crate::telemetry::ROUTE
        || path == "/api/openapi.json"
        || path.starts_with("/static/"))
}

/// Answers 503 at once while the database is known to be down; learns that
/// it may be from the 503s handlers give; and puts `Retry-After` on every 503.
pub async fn fail_fast(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let needs_database = needs_database(path);
    let is_api = path.starts_with("/api/");
    let mut resp = if needs_database && state.db_health.is_down() {
        if is_api {
            ApiError(AppError::Unavailable).into_response()
        } else {
            PageError(AppError::Unavailable).into_response()
        }
    } else {
        // A request still waiting after `SLOW` may be waiting for a pool
        // that cannot connect: checking now spares the requests after it
        // the wait.
        let answer = next.run(req);
        tokio::pin!(answer);
        let resp = tokio::select! {
            resp = &mut answer => resp,
            () = tokio::time::sleep(SLOW) => {
                if needs_database {
                    state.db_health.suspect();
                }
                answer.await
            }
        };
        if resp.status() == StatusCode::SERVICE_UNAVAILABLE
            && resp.extensions().get::<crate::error::Shed>().is_none()
        {
            state.db_health.suspect();
        }
        resp
    };
    if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .entry(header::RETRY_AFTER)
            .or_insert(HeaderValue::from(RETRY_AFTER_SECONDS));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connection_failures_count_as_unreachable() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(is_unreachable(&sqlx::Error::Io(refused)));
        assert!(is_unreachable(&sqlx::Error::PoolTimedOut));
        assert!(!is_unreachable(&sqlx::Error::RowNotFound));
        assert!(!is_unreachable(&sqlx::Error::PoolClosed));
    }

    #[test]
    fn liveness_readiness_and_assets_do_not_wait_for_the_database() {
        for path in [
            "/healthz",
            "/readyz",
            "/api/openapi.json",
            "/static/app.css",
        ] {
            assert!(!needs_database(path), "{path}");
        }
        for path in ["/", "/login", "/api/v1/me", "/changes/CHG-1"] {
            assert!(needs_database(path), "{path}");
        }
    }
}
