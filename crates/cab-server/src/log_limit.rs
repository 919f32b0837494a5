//! Keeps a flood of requests from filling the disk with log lines.
//!
//! Lines of one kind — one log statement, and for request lines one status —
//! pass [`BURST`] at a time per [`WINDOW`]; the rest are counted, and when
//! the window ends one line sums them up: "… and 4,210 more like it in the
//! last 10 s". Only warnings, errors and the lines of refused requests
//! (status 400 and above) are limited: ordinary request lines and
//! information messages pass untouched.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata};
use tracing_subscriber::layer::{Context, Filter};

/// How long a window lasts.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Lines of one kind written per window before the rest are only counted.
pub const BURST: u64 = 10;
/// The target of the summary lines, which are never limited themselves.
pub const SUMMARY_TARGET: &str = "cab::log";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Kind {
    callsite: Identifier,
    status: Option<u64>,
}

#[derive(Debug)]
struct Tally {
    since: Instant,
    written: u64,
    held_back: u64,
    /// What the lines say, for the summary.
    what: String,
}

/// One summary line to write: `held_back` lines like `what` in `over`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub what: String,
    pub status: Option<u64>,
    pub held_back: u64,
    pub over: Duration,
}

impl Summary {
    pub fn message(&self) -> String {
        format!(
            "… and {} more like it in the last {} s",
            thousands(self.held_back),
            self.over.as_secs().max(1)
        )
    }
}

/// The limiter: a per-layer [`Filter`] for the log output, and the source
/// of the summaries ([`RepeatLimit::due`]).
#[derive(Debug, Clone, Default)]
pub struct RepeatLimit {
    tallies: Arc<Mutex<HashMap<Kind, Tally>>>,
}

impl RepeatLimit {
    /// Whether a line of this kind may be written at `now`; counts it.
    fn admit(&self, kind: Kind, what: impl FnOnce() -> String, now: Instant) -> bool {
        let mut tallies = self.tallies.lock().unwrap_or_else(PoisonError::into_inner);
        let tally = tallies.entry(kind).or_insert_with(|| Tally {
            since: now,
            written: 0,
            held_back: 0,
            what: what(),
        });
        // A window that ended with nothing held back starts afresh; one
        // that held lines back waits for its summary (see `due`).
        if tally.held_back == 0 && now.duration_since(tally.since) >= WINDOW {
            tally.since = now;
            tally.written = 0;
        }
        if tally.written < BURST {
            tally.written += 1;
            true
        } else {
            tally.held_back += 1;
            false
        }
    }

    /// The summaries of windows that have ended with lines held back; their
    /// kinds start a new window. Kinds quiet for a whole window are forgotten.
    pub fn due(&self, now: Instant) -> Vec<Summary> {
        let mut tallies = self.tallies.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        tallies.retain(|kind, tally| {
            let over = now.duration_since(tally.since);
            if over < WINDOW {
                return true;
            }
            if tally.held_back == 0 {
                return false;
            }
            out.push(Summary {
                what: tally.what.clone(),
                status: kind.status,
                held_back: tally.held_back,
                over,
            });
            tally.since = now;
            tally.written = 0;
            tally.held_back = 0;
            true
        });
        out
    }

    /// Ends every window now: the summaries of all lines held back so far.
    fn all(&self, now: Instant) -> Vec<Summary> {
        self.due(now + WINDOW)
            .into_iter()
            .map(|s| Summary {
                over: s.over.saturating_sub(WINDOW),
                ..s
            })
            .collect()
    }

    /// Makes this the process's limiter and writes the summaries that are
    /// due, every second, for as long as the process runs.
    pub fn start_summaries(&self) {
        let _ = INSTALLED.set(self.clone());
        let limit = self.clone();
        let spawned = std::thread::Builder::new()
            .name("log-summaries".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                    write(limit.due(Instant::now()));
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "log lines will not be limited: no thread for summaries");
        }
    }
}

static INSTALLED: OnceLock<RepeatLimit> = OnceLock::new();

/// Writes what has been held back so far without waiting for the windows to
/// end; the server calls it as it stops, so no count is lost.
pub fn summarise_now() {
    if let Some(limit) = INSTALLED.get() {
        write(limit.all(Instant::now()));
    }
}

fn write(summaries: Vec<Summary>) {
    for s in summaries {
        tracing::warn!(
            target: SUMMARY_TARGET,
            like = %s.what,
            status = s.status,
            held_back = s.held_back,
            "{}",
            s.message()
        );
    }
}

/// The status of a request line, and the message, read from an event.
#[derive(Default)]
struct Fields {
    status: Option<u64>,
    message: Option<String>,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "status" {
            self.status = Some(value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == "status" {
            self.status = u64::try_from(value).ok();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let mut text = String::new();
            let _ = write!(text, "{value:?}");
            self.message = Some(text.chars().take(120).collect());
        }
    }
}

impl<S> Filter<S> for RepeatLimit {
    fn enabled(&self, _meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _cx: &Context<'_, S>) -> bool {
        let meta = event.metadata();
        if meta.target() == SUMMARY_TARGET {
            return true;
        }
        let warning = *meta.level() <= Level::WARN;
        // Most lines are neither warnings nor request lines: they pass
        // without their fields being read.
        if !warning && meta.fields().field("status").is_none() {
            return true;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let refused = fields.status.is_some_and(|s| s >= 400);
        if !warning && !refused {
            return true;
        }
        let kind = Kind {
            callsite: meta.callsite(),
            status: fields.status,
        };
        let what = || match (fields.message, fields.status) {
            (Some(m), Some(s)) => format!("{m} (status {s})"),
            (Some(m), None) => m,
            (None, _) => meta.name().to_owned(),
        };
        self.admit(kind, what, Instant::now())
    }
}

/// 4210 → "4,210".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn kind(status: Option<u64>) -> Kind {
        struct Site;
        static SITE: Site = Site;
        impl tracing::callsite::Callsite for Site {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!()
            }
        }
        Kind {
            callsite: Identifier(&SITE),
            status,
        }
    }

    #[test]
    fn a_burst_passes_then_lines_are_counted_and_summed_up_once() {
        let limit = RepeatLimit::default();
        let t0 = Instant::now();
        let passed = (0..5000)
            .filter(|_| limit.admit(kind(Some(401)), || "answered (status 401)".into(), t0))
            .count();
        assert_eq!(passed as u64, BURST);
        assert!(
            limit.due(t0 + WINDOW / 2).is_empty(),
            "not before the window ends"
        );
        let due = limit.due(t0 + WINDOW);
        assert_eq!(
            due,
            vec![Summary {
                what: "answered (status 401)".into(),
                status: Some(401),
                held_back: 5000 - BURST,
                over: WINDOW,
            }]
        );
        assert_eq!(
            due[0].message(),
            "… and 4,990 more like it in the last 10 s"
        );
        // Once summed up, a new window starts with a fresh burst.
        assert!(limit.due(t0 + WINDOW).is_empty());
        assert!(limit.admit(kind(Some(401)), String::new, t0 + WINDOW));
    }

    #[test]
    fn everything_held_back_can_be_summed_up_before_the_window_ends() {
        let limit = RepeatLimit::default();
        let t0 = Instant::now();
        for _ in 0..BURST + 3 {
            limit.admit(kind(None), || "database unavailable".into(), t0);
        }
        let all = limit.all(t0 + Duration::from_secs(4));
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].held_back, 3);
        assert_eq!(all[0].message(), "… and 3 more like it in the last 4 s");
        assert!(limit.all(t0 + Duration::from_secs(4)).is_empty());
    }

    #[test]
    fn kinds_are_limited_apart() {
        let limit = RepeatLimit::default();
        let t0 = Instant::now();
        for _ in 0..BURST {
            assert!(limit.admit(kind(Some(401)), String::new, t0));
        }
        assert!(!limit.admit(kind(Some(401)), String::new, t0));
        assert!(limit.admit(kind(Some(429)), String::new, t0));
        assert!(limit.admit(kind(None), String::new, t0));
    }

    #[test]
    fn a_quiet_window_starts_afresh_and_is_forgotten() {
        let limit = RepeatLimit::default();
        let t0 = Instant::now();
        for _ in 0..BURST {
            assert!(limit.admit(kind(None), String::new, t0));
        }
        assert!(limit.admit(kind(None), String::new, t0 + WINDOW));
        assert!(limit.due(t0 + WINDOW * 3).is_empty());
        assert!(limit.tallies.lock().unwrap().is_empty());
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(4210), "4,210");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
