//! `GET /metrics`: figures for Prometheus, in its text exposition format
//! (version 0.0.4), for scrapers holding the metrics token.
//!
//! The HTTP and connection-pool series are this process's own (Prometheus
//! scrapes every replica and adds them up); the gate's decisions and the
//! reviews are read from the database at scrape time, so every replica
//! reports the same figures for them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cab_db::telemetry::GateDecisions;
use sqlx::PgConnection;

use crate::state::AppState;

/// Where the figures are served.
pub const ROUTE: &str = "/metrics";
/// The `route` label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Upper bounds of the request duration histogram's buckets, in seconds.
pub const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// How long a scrape waits for the database before leaving out the figures
/// read from it.
const DATABASE_WAIT: Duration = Duration::from_secs(3);
/// Audit events read per statement while counting the gate's decisions.
const GATE_SPAN: i64 = 100_000;

/// The counters this process keeps.
#[derive(Default)]
pub struct Telemetry {
    /// By route template, then method.
    http: Mutex<BTreeMap<String, BTreeMap<&'static str, RouteStats>>>,
    /// The gate's decisions counted so far, and the last audit event read:
    /// each scrape reads only the events recorded since the one before.
    gate: tokio::sync::Mutex<GateDecisions>,
}

#[derive(Default)]
struct RouteStats {
    statuses: BTreeMap<u16, u64>,
    /// Requests per bucket (not cumulative); beyond the last bound, only in
    /// `count`.
    buckets: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

impl Telemetry {
    /// Counts one answered request.
    pub fn observe(&self, method: &'static str, route: &str, status: u16, took: Duration) {
        let seconds = took.as_secs_f64();
        let mut http = self.http.lock().unwrap_or_else(PoisonError::into_inner);
        let methods = match http.get_mut(route) {
            Some(m) => m,
            None => http.entry(route.to_owned()).or_default(),
        };
        let stats = methods.entry(method).or_default();
        *stats.statuses.entry(status).or_default() += 1;
        if let Some(i) = DURATION_BUCKETS.iter().position(|le| seconds <= *le) {
            stats.buckets[i] += 1;
        }
        stats.count += 1;
        stats.sum_seconds += seconds;
    }

    /// The gate's decisions in the whole audit trail: what was counted
    /// before plus what was recorded since, read `GATE_SPAN` events at a
    /// time. What is read is kept as soon as it is read, so a long trail
    /// that a scrape cannot read in time is read on over the next ones.
    async fn gate_decisions(&self, conn: &mut PgConnection) -> sqlx::Result<GateDecisions> {
        let mut counted = self.gate.lock().await;
        loop {
            let after = counted.through_seq;
            let new = cab_db::telemetry::gate_decisions_after(conn, after, GATE_SPAN).await?;
            counted.authorized += new.authorized;
            counted.refused += new.refused;
            counted.through_seq = new.through_seq;
            if new.through_seq < after + GATE_SPAN {
                return Ok(*counted);
            }
        }
    }

    fn write_http(&self, out: &mut Exposition) {
        let http = self.http.lock().unwrap_or_else(PoisonError::into_inner);
        out.family(
            "cab_http_requests_total",
            "counter",
            "HTTP requests answered by this process, by method, matched route template and status.",
        );
        for (route, methods) in http.iter() {
            for (method, stats) in methods {
                for (status, n) in &stats.statuses {
                    let status = status.to_string();
                    out.sample(
                        "cab_http_requests_total",
                        &[("method", method), ("route", route), ("status", &status)],
                        n,
                    );
                }
            }
        }
        let name = "cab_http_request_duration_seconds";
        out.family(
            name,
            "histogram",
            "Time from a request's arrival to its answer's headers, in seconds, by method and matched route template.",
        );
        for (route, methods) in http.iter() {
            for (method, stats) in methods {
                let mut cumulative = 0;
                for (le, n) in DURATION_BUCKETS.iter().zip(stats.buckets) {
                    cumulative += n;
                    let le = le.to_string();
                    out.sample(
                        "cab_http_request_duration_seconds_bucket",
                        &[("method", method), ("route", route), ("le", &le)],
                        cumulative,
                    );
                }
                let labels = [("method", *method), ("route", route.as_str())];
                out.sample(
                    "cab_http_request_duration_seconds_bucket",
                    &[labels[0], labels[1], ("le", "+Inf")],
                    stats.count,
                );
                out.sample(
                    "cab_http_request_duration_seconds_sum",
                    &labels,
                    stats.sum_seconds,
                );
                out.sample(
                    "cab_http_request_duration_seconds_count",
                    &labels,
                    stats.count,
                );
            }
        }
    }
}

/// A request's method as a label: the standard ones by name, any other as
/// `other`, so that made-up methods cannot add series.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Counts every request under its route template (never its path, which
/// may hold ids or secrets), and how long its answer took.
pub async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = req.extensions().get::<MatchedPath>().cloned();
    let resp = next.run(req).await;
    state.telemetry.observe(
        method,
        route.as_ref().map_or(UNMATCHED, MatchedPath::as_str),
        resp.status().as_u16(),
        started.elapsed(),
    );
    resp
}

/// `GET /metrics`, routed only when a metrics token is set.
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = state.settings.metrics_token.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    if !presented.is_some_and(|t| token.matches(t)) {
        tracing::warn!("metrics scrape refused: missing or wrong bearer token");
        return (
            StatusCode::UNAUTHORIZED,
            [
                (header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")),
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            "a metrics token is needed: Authorization: Bearer <CAB_METRICS_TOKEN>\n",
        )
            .into_response();
    }
    let body = exposition(&state).await;
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

/// What the database says, read at scrape time.
struct Stored {
    gate: GateDecisions,
    reviews_pending: i64,
    reviews_overdue: i64,
}

/// The figures read from the database; `None` when it is known to be down
/// or does not answer in time (the scrape then carries the others).
async fn stored(state: &AppState) -> Option<Stored> {
    if state.db_health.is_down() {
        return None;
    }
    let read = async {
        let mut conn = state.pool.acquire().await?;
        let gate = state.telemetry.gate_decisions(&mut conn).await?;
        let reviews_pending = cab_db::reviews::pending_count(&mut conn).await?;
        let reviews_overdue =
            cab_db::telemetry::overdue_review_count(&mut conn, chrono::Utc::now()).await?;
        Ok::<_, sqlx::Error>(Stored {
            gate,
            reviews_pending,
            reviews_overdue,
        })
    };
    match tokio::time::timeout(DATABASE_WAIT, read).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "metrics: the database figures could not be read");
            None
        }
        Err(_) => {
            tracing::warn!("metrics: the database did not answer in time");
            None
        }
    }
}

/// The whole scrape.
pub async fn exposition(state: &AppState) -> String {
    // Before the scrape takes a connection of its own.
    let size = state.pool.size();
    let idle = u32::try_from(state.pool.num_idle())
        .unwrap_or(u32::MAX)
        .min(size);
    let stored = stored(state).await;
    let mut out = Exposition::default();
    out.family(
        "cab_build_info",
        "gauge",
        "The running CAB's version; always 1.",
    );
    out.sample(
        "cab_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    state.telemetry.write_http(&mut out);

    out.family(
        "cab_db_pool_connections",
        "gauge",
        "Connections in this process's database pool, idle or in use.",
    );
    out.sample("cab_db_pool_connections", &[("state", "idle")], idle);
    out.sample(
        "cab_db_pool_connections",
        &[("state", "in_use")],
        size - idle,
    );
    out.family(
        "cab_db_pool_max_connections",
        "gauge",
        "The most connections this process's database pool opens.",
    );
    out.sample(
        "cab_db_pool_max_connections",
        &[],
        state.pool.options().get_max_connections(),
    );

    if let Some(s) = stored {
        out.family(
            "cab_gate_decisions_total",
            "counter",
            "Deployment gate decisions in the audit trail (all replicas): authorized, or refused.",
        );
        out.sample(
            "cab_gate_decisions_total",
            &[("outcome", "authorized")],
            s.gate.authorized,
        );
        out.sample(
            "cab_gate_decisions_total",
            &[("outcome", "refused")],
            s.gate.refused,
        );
        out.family(
            "cab_reviews_pending",
            "gauge",
            "Owed post-implementation reviews not yet signed off.",
        );
        out.sample("cab_reviews_pending", &[], s.reviews_pending);
        out.family(
            "cab_reviews_overdue",
            "gauge",
            "Owed post-implementation reviews not yet signed off and past due.",
        );
        out.sample("cab_reviews_overdue", &[], s.reviews_overdue);
    }
    out.text
}

/// The text being written, one line at a time.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    /// The `HELP` and `TYPE` lines that open a metric family.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label_value(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// A label value as the format writes it: backslash, double quote and line
/// feed escaped.
pub fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A `HELP` text as the format writes it: backslash and line feed escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(escape_label_value(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label_value("line\nbreak"), "line\\nbreak");
        assert_eq!(
            escape_label_value("/api/v1/changes/{id}"),
            "/api/v1/changes/{id}"
        );
        assert_eq!(escape_help("a\\b\nc \"q\""), "a\\\\b\\nc \"q\"");
    }

    #[test]
    fn a_histogram_is_cumulative_and_counts_the_slow_ones_only_in_inf() {
        let t = Telemetry::default();
        t.observe("GET", "/x", 200, Duration::from_millis(1));
        t.observe("GET", "/x", 200, Duration::from_millis(30));
        t.observe("GET", "/x", 503, Duration::from_secs(11));
        let mut out = Exposition::default();
        t.write_http(&mut out);
        let text = out.text;
        for line in [
            r#"cab_http_requests_total{method="GET",route="/x",status="200"} 2"#,
            r#"cab_http_requests_total{method="GET",route="/x",status="503"} 1"#,
            r#"cab_http_request_duration_seconds_bucket{method="GET",route="/x",le="0.005"} 1"#,
            r#"cab_http_request_duration_seconds_bucket{method="GET",route="/x",le="0.025"} 1"#,
            r#"cab_http_request_duration_seconds_bucket{method="GET",route="/x",le="0.05"} 2"#,
            r#"cab_http_request_duration_seconds_bucket{method="GET",route="/x",le="10"} 2"#,
            r#"cab_http_request_duration_seconds_bucket{method="GET",route="/x",le="+Inf"} 3"#,
            r#"cab_http_request_duration_seconds_count{method="GET",route="/x"} 3"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
    }

    #[test]
    fn made_up_methods_share_one_label() {
        let odd = Method::from_bytes(b"FROBNICATE").ok();
        assert_eq!(odd.as_ref().map(method_label), Some("other"));
        assert_eq!(method_label(&Method::DELETE), "DELETE");
    }
}
