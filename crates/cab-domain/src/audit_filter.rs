//! Which audit events an auditor asks for: the filter of the audit trail
//! page, its API and its exports, read from the words of a URL, each fault
//! named by its field.

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use crate::audit::AuditAction;
use crate::change::{ChangeKey, FieldError};

/// Refusals only, everything but refusals, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Outcome {
    #[default]
    All,
    Refused,
    Done,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::All, Outcome::Done, Outcome::Refused];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::All => "all",
            Outcome::Refused => "refused",
            Outcome::Done => "done",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Outcome::All => "Everything",
            Outcome::Refused => "Refusals only",
            Outcome::Done => "Everything but refusals",
        }
    }

    /// What the store's `p_refused` argument takes.
    pub fn refused(self) -> Option<bool> {
        match self {
            Outcome::All => None,
            Outcome::Refused => Some(true),
            Outcome::Done => Some(false),
        }
    }
}

/// Where a page of events starts: the newest, just older than an event, or
/// just newer than one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keyset {
    #[default]
    Newest,
    Before(i64),
    After(i64),
}

/// The kinds of things events are about, as the filter offers them.
pub const ENTITY_KINDS: &[(&str, &str)] = &[
    ("change", "Change"),
    ("deployment", "Deployment"),
    ("break_glass", "Break-glass request"),
    ("observed", "Deployment reported by an environment"),
    ("release", "Release"),
    ("template", "Standard-change template"),
    ("freeze", "Freeze"),
    ("user", "Account"),
    ("role_grant", "Role request"),
    ("api_token", "API token"),
    ("settings", "Settings"),
    ("environment", "Environment"),
    ("maintenance_period", "Maintenance period"),
    ("calendar_feed", "Calendar feed"),
    ("signing_key", "Signing key"),
    ("audit", "Audit trail"),
    ("demo", "Demo data"),
];

/// The label of an entity kind, or the kind itself when it has none.
pub fn entity_label(kind: &str) -> &str {
    ENTITY_KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(kind, |(_, label)| label)
}

/// A field's words, trimmed; `None` when absent or blank.
fn given(raw: Option<&str>) -> Option<&str> {
    raw.map(str::trim).filter(|s| !s.is_empty())
}

/// The filter as it arrives: every field as typed, absent or empty meaning
/// "any".
#[derive(Debug, Clone, Default)]
pub struct FilterWords<'a> {
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub actor: Option<&'a str>,
    pub action: Option<&'a str>,
    pub entity_type: Option<&'a str>,
    pub entity_id: Option<&'a str>,
    pub change: Option<&'a str>,
    pub outcome: Option<&'a str>,
    pub before: Option<&'a str>,
    pub after: Option<&'a str>,
}

/// A checked filter. Days are UTC and both ends are included.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrailFilter {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub actor: Option<String>,
    pub action: Option<AuditAction>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    /// A change's number (CHG-<number>).
    pub change: Option<i64>,
    pub outcome: Outcome,
    pub page: Keyset,
}

impl TrailFilter {
    /// The first moment the filter selects.
    pub fn start(&self) -> Option<DateTime<Utc>> {
        self.from
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc())
    }

    /// The first moment after the filter's last day.
    pub fn end(&self) -> Option<DateTime<Utc>> {
        self.to
            .and_then(|d| d.succ_opt())
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc())
    }

    /// Whether anything narrows the events (the page need not say "all").
    pub fn narrows(&self) -> bool {
        let unpaged = TrailFilter {
            page: Keyset::Newest,
            ..self.clone()
        };
        unpaged != TrailFilter::default()
    }

    /// Reads a filter from its words.
    pub fn parse(words: &FilterWords<'_>) -> Result<TrailFilter, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut fault = |field: &'static str, message: &str| {
            errors.push(FieldError {
                field,
                message: message.to_owned(),
            })
        };
        let mut date = |field: &'static str, raw: Option<&str>| {
            let s = given(raw)?;
            match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                Ok(d) if (1970..=9999).contains(&d.year()) => Some(d),
                _ => {
                    fault(field, "Give a date as YYYY-MM-DD.");
                    None
                }
            }
        };
        let from = date("from", words.from);
        let to = date("to", words.to);
        if let (Some(f), Some(t)) = (from, to)
            && t < f
        {
            fault("to", "The last day comes before the first.");
        }
        let actor = given(words.actor).map(str::to_owned);
        if actor.as_ref().is_some_and(|a| a.chars().count() > 100) {
            fault("actor", "An account name is at most 100 characters.");
        } else if actor
            .as_ref()
            .is_some_and(|a| a.chars().any(char::is_control))
        {
            fault("actor", "An account name holds no control characters.");
        }
        let action = given(words.action).and_then(|a| {
            let parsed = AuditAction::parse(a);
            if parsed.is_none() {
                fault("action", "Choose a kind of event from the list.");
            }
            parsed
        });
        let entity_type = given(words.entity_type).and_then(|k| {
            if ENTITY_KINDS.iter().any(|(kind, _)| *kind == k) {
                Some(k.to_owned())
            } else {
                fault(
                    "entity_type",
                    "Choose what the events are about from the list.",
                );
                None
            }
        });
        let entity_id = given(words.entity_id).map(str::to_owned);
        if entity_id.as_ref().is_some_and(|i| i.chars().count() > 100) {
            fault("entity_id", "An identifier is at most 100 characters.");
        } else if entity_id
            .as_ref()
            .is_some_and(|i| i.chars().any(char::is_control))
        {
            fault("entity_id", "An identifier holds no control characters.");
        }
        if entity_id.is_some() && entity_type.is_none() && given(words.entity_type).is_none() {
            fault(
                "entity_type",
                "Say what kind of thing the identifier names.",
            );
        }
        let change = given(words.change).and_then(|c| match c.parse::<ChangeKey>() {
            Ok(ChangeKey(n)) if n > 0 => Some(n),
            _ => {
                fault(
                    "change",
                    "Give a change as CHG- and its number, e.g. CHG-42.",
                );
                None
            }
        });
        let outcome = match given(words.outcome) {
            None => Outcome::All,
            Some(o) => Outcome::ALL
                .into_iter()
                .find(|v| v.as_str() == o)
                .unwrap_or_else(|| {
                    fault(
                        "outcome",
                        "Choose everything, refusals only, or everything but refusals.",
                    );
                    Outcome::All
                }),
        };
        let mut seq = |field: &'static str, raw: Option<&str>| {
            let s = given(raw)?;
            match s.parse::<i64>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    fault(field, "Give an event's number (a whole number above 0).");
                    None
                }
            }
        };
        let before = seq("before", words.before);
        let after = seq("after", words.after);
        let page = match (before, after) {
            (Some(_), Some(_)) => {
                errors.push(FieldError {
                    field: "after",
                    message: "Ask for events before one event or after one, not both.".into(),
                });
                Keyset::Newest
            }
            (Some(b), None) => Keyset::Before(b),
            (None, Some(a)) => Keyset::After(a),
            (None, None) => Keyset::Newest,
        };
        if errors.is_empty() {
            Ok(TrailFilter {
                from,
                to,
                actor,
                action,
                entity_type,
                entity_id,
                change,
                outcome,
                page,
            })
        } else {
            Err(errors)
        }
    }

    /// The filter's words for a URL, without the page: the same filter reads
    /// back from them.
    pub fn query_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if let Some(d) = self.from {
            pairs.push(("from", d.to_string()));
        }
        if let Some(d) = self.to {
            pairs.push(("to", d.to_string()));
        }
        if let Some(a) = &self.actor {
            pairs.push(("actor", a.clone()));
        }
        if let Some(a) = self.action {
            pairs.push(("action", a.as_str().to_owned()));
        }
        if let Some(k) = &self.entity_type {
            pairs.push(("entity_type", k.clone()));
        }
        if let Some(i) = &self.entity_id {
            pairs.push(("entity_id", i.clone()));
        }
        if let Some(n) = self.change {
            pairs.push(("change", format!("CHG-{n}")));
        }
        if self.outcome != Outcome::All {
            pairs.push(("outcome", self.outcome.as_str().to_owned()));
        }
        pairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(words: FilterWords<'_>) -> Vec<&'static str> {
        TrailFilter::parse(&words)
            .expect_err("refused")
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    fn parsed(words: FilterWords<'_>) -> TrailFilter {
        TrailFilter::parse(&words).expect("a filter")
    }

    #[test]
    fn nothing_given_selects_everything_newest_first() {
        let f = parsed(FilterWords {
            from: Some(" "),
            actor: Some(""),
            ..FilterWords::default()
        });
        assert_eq!(f, TrailFilter::default());
        assert!(!f.narrows());
        assert_eq!(f.start(), None);
        assert_eq!(f.end(), None);
    }

    #[test]
    fn every_field_reads_back_from_its_words() {
        let f = parsed(FilterWords {
            from: Some("2026-11-01"),
            to: Some("2026-11-30"),
            actor: Some(" erin "),
            action: Some("access.denied"),
            entity_type: Some("change"),
            entity_id: Some("abc"),
            change: Some("CHG-42"),
            outcome: Some("refused"),
            before: Some("900"),
            after: None,
        });
        assert_eq!(f.actor.as_deref(), Some("erin"));
        assert_eq!(f.action, Some(AuditAction::AccessDenied));
        assert_eq!(f.change, Some(42));
        assert_eq!(f.outcome, Outcome::Refused);
        assert_eq!(f.outcome.refused(), Some(true));
        assert_eq!(f.page, Keyset::Before(900));
        assert!(f.narrows());
        assert_eq!(
            f.start().map(|t| t.to_rfc3339()),
            Some("2026-11-01T00:00:00+00:00".into())
        );
        assert_eq!(
            f.end().map(|t| t.to_rfc3339()),
            Some("2026-12-01T00:00:00+00:00".into())
        );
        let pairs = f.query_pairs();
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.as_str())
        };
        let again = parsed(FilterWords {
            from: get("from"),
            to: get("to"),
            actor: get("actor"),
            action: get("action"),
            entity_type: get("entity_type"),
            entity_id: get("entity_id"),
            change: get("change"),
            outcome: get("outcome"),
            before: Some("900"),
            after: None,
        });
        assert_eq!(again, f);
    }

    #[test]
    fn a_change_is_read_with_or_without_its_prefix() {
        for words in ["CHG-7", "chg-7", "7"] {
            let f = parsed(FilterWords {
                change: Some(words),
                ..FilterWords::default()
            });
            assert_eq!(f.change, Some(7), "{words}");
        }
        for words in ["CHG-", "CHG-x", "-7", "0", "CHG-+7", "+7"] {
            assert_eq!(
                fields(FilterWords {
                    change: Some(words),
                    ..FilterWords::default()
                }),
                ["change"],
                "{words}"
            );
        }
    }

    #[test]
    fn faults_are_named_by_their_field() {
        assert_eq!(
            fields(FilterWords {
                from: Some("2026-13-01"),
                to: Some("yesterday"),
                ..FilterWords::default()
            }),
            ["from", "to"]
        );
        assert_eq!(
            fields(FilterWords {
                from: Some("2026-11-02"),
                to: Some("2026-11-01"),
                ..FilterWords::default()
            }),
            ["to"]
        );
        let same_day = parsed(FilterWords {
            from: Some("2026-11-02"),
            to: Some("2026-11-02"),
            ..FilterWords::default()
        });
        assert_eq!(same_day.from, same_day.to);
        assert_eq!(
            fields(FilterWords {
                action: Some("change.exploded"),
                entity_type: Some("spaceship"),
                outcome: Some("maybe"),
                ..FilterWords::default()
            }),
            ["action", "entity_type", "outcome"]
        );
        assert_eq!(
            fields(FilterWords {
                actor: Some(&"a".repeat(101)),
                ..FilterWords::default()
            }),
            ["actor"]
        );
        assert!(
            TrailFilter::parse(&FilterWords {
                actor: Some(&"a".repeat(100)),
                ..FilterWords::default()
            })
            .is_ok()
        );
        assert_eq!(
            fields(FilterWords {
                entity_id: Some("42"),
                ..FilterWords::default()
            }),
            ["entity_type"]
        );
        assert_eq!(
            fields(FilterWords {
                actor: Some("a\u{0}b"),
                entity_type: Some("user"),
                entity_id: Some("x\u{7f}"),
                ..FilterWords::default()
            }),
            ["actor", "entity_id"]
        );
        assert_eq!(
            fields(FilterWords {
                entity_type: Some("user"),
                entity_id: Some(&"x".repeat(101)),
                ..FilterWords::default()
            }),
            ["entity_id"]
        );
    }

    #[test]
    fn a_page_alone_narrows_nothing() {
        let paged = parsed(FilterWords {
            before: Some("5"),
            ..FilterWords::default()
        });
        assert!(!paged.narrows());
        assert!(
            parsed(FilterWords {
                before: Some("5"),
                actor: Some("erin"),
                ..FilterWords::default()
            })
            .narrows()
        );
    }

    #[test]
    fn dates_are_of_this_era() {
        for bad in ["1969-12-31", "0999-01-01"] {
            assert_eq!(
                fields(FilterWords {
                    from: Some(bad),
                    ..FilterWords::default()
                }),
                ["from"],
                "{bad}"
            );
        }
        assert!(
            TrailFilter::parse(&FilterWords {
                from: Some("1970-01-01"),
                to: Some("9999-12-31"),
                ..FilterWords::default()
            })
            .is_ok()
        );
        // An identifier of exactly 100 characters is fine.
        assert!(
            TrailFilter::parse(&FilterWords {
                entity_type: Some("user"),
                entity_id: Some(&"x".repeat(100)),
                ..FilterWords::default()
            })
            .is_ok()
        );
    }

    #[test]
    fn a_page_starts_before_or_after_one_event_not_both() {
        assert_eq!(
            parsed(FilterWords {
                after: Some("5"),
                ..FilterWords::default()
            })
            .page,
            Keyset::After(5)
        );
        assert_eq!(
            fields(FilterWords {
                before: Some("9"),
                after: Some("5"),
                ..FilterWords::default()
            }),
            ["after"]
        );
        for bad in ["0", "-3", "1.5", "x"] {
            assert_eq!(
                fields(FilterWords {
                    before: Some(bad),
                    ..FilterWords::default()
                }),
                ["before"],
                "{bad}"
            );
        }
    }

    #[test]
    fn entity_kinds_have_labels() {
        assert_eq!(entity_label("break_glass"), "Break-glass request");
        assert_eq!(entity_label("unknown"), "unknown");
        let outcome_words: Vec<_> = Outcome::ALL.iter().map(|o| o.label()).collect();
        assert_eq!(
            outcome_words,
            ["Everything", "Everything but refusals", "Refusals only"]
        );
        assert_eq!(Outcome::Done.refused(), Some(false));
        assert_eq!(Outcome::All.refused(), None);
    }
}
