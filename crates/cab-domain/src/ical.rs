//! The change calendar as iCalendar text (RFC 5545), so people can subscribe
//! to it from the calendar they already read. Only what a published,
//! read-only feed needs is written: events with their times in UTC, a
//! status and a sequence so clients replace an event when a change moves,
//! and text escaped and folded the way the standard requires, so a title
//! with a comma or an emoji does not break a client's parser.

use chrono::{DateTime, Utc};

/// Whether the event will happen: a change's window is tentative until it
/// is approved, and cancelled when the change is withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Tentative,
    Confirmed,
    Cancelled,
}

impl Status {
    /// The word the standard uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Tentative => "TENTATIVE",
            Status::Confirmed => "CONFIRMED",
            Status::Cancelled => "CANCELLED",
        }
    }
}

/// One event of the calendar.
#[derive(Debug, Clone)]
pub struct Event {
    /// Stays the same for as long as the event exists, so clients update it
    /// rather than add another.
    pub uid: String,
    /// Grows each time the event changes, so clients know which is newer.
    pub sequence: u32,
    pub status: Status,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub summary: String,
    pub description: String,
    pub url: Option<String>,
    pub categories: Vec<String>,
    pub last_modified: DateTime<Utc>,
    /// Shown as free time (freezes are a period, not a meeting).
    pub transparent: bool,
}

/// A named calendar of events.
#[derive(Debug, Clone)]
pub struct Calendar {
    pub name: String,
    pub events: Vec<Event>,
}

/// The longest line in octets, line break excluded (RFC 5545, 3.1).
const LINE_OCTETS: usize = 75;

/// A value of type TEXT: backslash, semicolon and comma escaped, a newline
/// written as `\n`. A tab becomes a space; carriage returns and other
/// control characters, which the type does not allow, are dropped.
fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A URI value: not escaped, but never with a control character, which no
/// URI holds and which could otherwise end the line early.
fn uri(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).collect()
}

/// A moment in UTC, in the standard's basic form: `20261124T100000Z`.
fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Content lines, each ended with CRLF and folded to at most
/// [`LINE_OCTETS`] octets: a continuation line starts with one space, and a
/// fold never falls inside a character.
struct Lines(String);

impl Lines {
    fn push(&mut self, line: &str) {
        let mut room = LINE_OCTETS;
        for c in line.chars() {
            let size = c.len_utf8();
            if size > room {
                self.0.push_str("\r\n ");
                room = LINE_OCTETS - 1;
            }
            self.0.push(c);
            room -= size;
        }
        self.0.push_str("\r\n");
    }

    fn property(&mut self, name: &str, value: &str) {
        self.push(&format!("{name}:{value}"));
    }
}

/// The calendar as iCalendar text, with every event stamped `stamp` (the
/// moment the feed was made).
pub fn write(cal: &Calendar, stamp: DateTime<Utc>) -> String {
    let mut lines = Lines(String::new());
    lines.push("BEGIN:VCALENDAR");
    lines.push("VERSION:2.0");
    lines.push("PRODID:-//CAB//Change calendar//EN");
    lines.push("CALSCALE:GREGORIAN");
    lines.push("METHOD:PUBLISH");
    lines.property("X-WR-CALNAME", &text(&cal.name));
    lines.push("REFRESH-INTERVAL;VALUE=DURATION:PT1H");
    lines.push("X-PUBLISHED-TTL:PT1H");
    let stamp = utc(stamp);
    for e in &cal.events {
        lines.push("BEGIN:VEVENT");
        lines.property("UID", &text(&e.uid));
        lines.property("DTSTAMP", &stamp);
        lines.property("DTSTART", &utc(e.start));
        lines.property("DTEND", &utc(e.end));
        lines.property("SEQUENCE", &e.sequence.to_string());
        lines.property("STATUS", e.status.as_str());
        lines.property("SUMMARY", &text(&e.summary));
        let description = text(&e.description);
        if !description.is_empty() {
            lines.property("DESCRIPTION", &description);
        }
        if let Some(url) = e.url.as_deref().map(uri).filter(|u| !u.is_empty()) {
            lines.property("URL", &url);
        }
        let categories: Vec<String> = e
            .categories
            .iter()
            .map(|c| text(c))
            .filter(|c| !c.is_empty())
            .collect();
        if !categories.is_empty() {
            lines.property("CATEGORIES", &categories.join(","));
        }
        lines.property("LAST-MODIFIED", &utc(e.last_modified));
        lines.push(if e.transparent {
            "TRANSP:TRANSPARENT"
        } else {
            "TRANSP:OPAQUE"
        });
        lines.push("END:VEVENT");
    }
    lines.push("END:VCALENDAR");
    lines.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(day: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, h, m, 0).unwrap()
    }

    fn event() -> Event {
        Event {
            uid: "change-12@cab".into(),
            sequence: 3,
            status: Status::Confirmed,
            start: at(24, 10, 0),
            end: at(24, 12, 0),
            summary: "CHG-12 Rotate keys, payments".into(),
            description: "Line one\nLine two; done".into(),
            url: Some("https://cab.example/changes/CHG-12".into()),
            categories: vec!["PROD".into(), "payments".into()],
            last_modified: at(19, 17, 30),
            transparent: false,
        }
    }

    fn one(e: Event) -> String {
        write(
            &Calendar {
                name: "CAB changes".into(),
                events: vec![e],
            },
            at(20, 8, 0),
        )
    }

    /// The content lines, folds undone.
    fn unfolded(ics: &str) -> Vec<String> {
        ics.replace("\r\n ", "")
            .split("\r\n")
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn a_one_event_calendar_exactly() {
        let expected = [
            "BEGIN:VCALENDAR",
            "VERSION:2.0",
            "PRODID:-//CAB//Change calendar//EN",
            "CALSCALE:GREGORIAN",
            "METHOD:PUBLISH",
            "X-WR-CALNAME:CAB changes\\; all",
            "REFRESH-INTERVAL;VALUE=DURATION:PT1H",
            "X-PUBLISHED-TTL:PT1H",
            "BEGIN:VEVENT",
            "UID:change-12@cab",
            "DTSTAMP:20261120T080000Z",
            "DTSTART:20261124T100000Z",
            "DTEND:20261124T120000Z",
            "SEQUENCE:3",
            "STATUS:CONFIRMED",
            "SUMMARY:CHG-12 Rotate keys\\, payments",
            "DESCRIPTION:Line one\\nLine two\\; done",
            "URL:https://cab.example/changes/CHG-12",
            "CATEGORIES:PROD,payments",
            "LAST-MODIFIED:20261119T173000Z",
            "TRANSP:OPAQUE",
            "END:VEVENT",
            "END:VCALENDAR",
            "",
        ]
        .join("\r\n");
        let cal = Calendar {
            name: "CAB changes; all".into(),
            events: vec![event()],
        };
        assert_eq!(write(&cal, at(20, 8, 0)), expected);
    }

    #[test]
    fn an_empty_calendar_has_its_header_alone() {
        let cal = Calendar {
            name: String::new(),
            events: vec![],
        };
        let ics = write(&cal, at(20, 8, 0));
        assert!(ics.starts_with("BEGIN:VCALENDAR\r\n"));
        assert!(ics.ends_with("X-PUBLISHED-TTL:PT1H\r\nEND:VCALENDAR\r\n"));
        assert!(ics.contains("\r\nX-WR-CALNAME:\r\n"));
        assert!(!ics.contains("VEVENT"));
    }

    #[test]
    fn long_lines_fold_between_characters() {
        let summary = "Déploiement 日本 🚀 café; ".repeat(12);
        let ics = one(Event {
            summary: summary.clone(),
            ..event()
        });
        for line in ics.split("\r\n") {
            assert!(
                line.len() <= LINE_OCTETS,
                "{line:?} is {} octets",
                line.len()
            );
        }
        // Folded, and more than once; continuation lines are full.
        let summary_line = format!("SUMMARY:{}", text(&summary));
        assert!(summary_line.len() > 3 * LINE_OCTETS);
        let folded: Vec<&str> = ics
            .split("\r\n")
            .skip_while(|l| !l.starts_with("SUMMARY:"))
            .take_while(|l| !l.starts_with("DESCRIPTION:"))
            .collect();
        assert!(folded.len() > 3);
        assert!(folded[1..].iter().all(|l| l.starts_with(' ')));
        assert!(
            folded[..folded.len() - 1]
                .iter()
                .all(|l| l.len() > LINE_OCTETS - 4)
        );
        assert!(unfolded(&ics).contains(&summary_line));
    }

    #[test]
    fn a_line_of_75_octets_stays_whole() {
        // "SUMMARY:" is 8 octets.
        let fits = one(Event {
            summary: "x".repeat(67),
            ..event()
        });
        assert!(fits.contains(&format!("\r\nSUMMARY:{}\r\n", "x".repeat(67))));
        let over = one(Event {
            summary: "x".repeat(68),
            ..event()
        });
        assert!(over.contains(&format!("\r\nSUMMARY:{}\r\n x\r\n", "x".repeat(67))));
        // A character that does not fit whole goes to the next line.
        let wide = one(Event {
            summary: format!("{}é", "x".repeat(66)),
            ..event()
        });
        assert!(wide.contains(&format!("\r\nSUMMARY:{}\r\n é\r\n", "x".repeat(66))));
        let exact = one(Event {
            summary: format!("{}é", "x".repeat(65)),
            ..event()
        });
        assert!(exact.contains(&format!("\r\nSUMMARY:{}é\r\n", "x".repeat(65))));
        // A continuation line holds 74 octets after its space.
        let two = one(Event {
            summary: "x".repeat(67 + 74 + 1),
            ..event()
        });
        assert!(two.contains(&format!(
            "\r\nSUMMARY:{}\r\n {}\r\n x\r\n",
            "x".repeat(67),
            "x".repeat(74)
        )));
    }

    #[test]
    fn text_is_escaped_and_controls_dropped() {
        assert_eq!(
            text("a\\b;c,d\ne\r\nf\tg\u{7}h\u{1b}"),
            "a\\\\b\\;c\\,d\\ne\\nf gh"
        );
        let ics = one(Event {
            summary: "One;two,three\\four\r\nfive".into(),
            description: "\r".into(),
            uid: "a,b".into(),
            ..event()
        });
        let lines = unfolded(&ics);
        assert!(lines.contains(&"SUMMARY:One\\;two\\,three\\\\four\\nfive".to_string()));
        assert!(lines.contains(&"UID:a\\,b".to_string()));
        // A description of nothing but a carriage return is empty.
        assert!(!ics.contains("DESCRIPTION"));
        // No bare line feed, nor a bare carriage return.
        let bytes = ics.as_bytes();
        for (i, b) in bytes.iter().enumerate() {
            if *b == b'\n' {
                assert_eq!(bytes[i - 1], b'\r', "bare LF at {i}");
            }
            if *b == b'\r' {
                assert_eq!(bytes[i + 1], b'\n', "bare CR at {i}");
            }
        }
    }

    #[test]
    fn a_url_is_not_escaped_but_cannot_break_the_line() {
        let ics = one(Event {
            url: Some("https://cab.example/c?a=1,2;x\r\nX-EVIL:1".into()),
            ..event()
        });
        let lines = unfolded(&ics);
        assert!(lines.contains(&"URL:https://cab.example/c?a=1,2;xX-EVIL:1".to_string()));
        assert!(!lines.iter().any(|l| l.starts_with("X-EVIL")));
        let long = format!("https://cab.example/{}", "a".repeat(200));
        let ics = one(Event {
            url: Some(long.clone()),
            ..event()
        });
        assert!(ics.split("\r\n").all(|l| l.len() <= LINE_OCTETS));
        assert!(unfolded(&ics).contains(&format!("URL:{long}")));
    }

    #[test]
    fn status_words() {
        for (status, word) in [
            (Status::Tentative, "STATUS:TENTATIVE"),
            (Status::Confirmed, "STATUS:CONFIRMED"),
            (Status::Cancelled, "STATUS:CANCELLED"),
        ] {
            let ics = one(Event { status, ..event() });
            assert!(unfolded(&ics).contains(&word.to_string()), "{word}");
        }
    }

    #[test]
    fn optional_properties_are_left_out_when_empty() {
        let ics = one(Event {
            description: String::new(),
            url: None,
            categories: vec![],
            transparent: true,
            ..event()
        });
        assert!(!ics.contains("DESCRIPTION"));
        assert!(!ics.contains("URL"));
        assert!(!ics.contains("CATEGORIES"));
        assert!(ics.contains("\r\nTRANSP:TRANSPARENT\r\n"));
        assert!(ics.contains(
            "\r\nLAST-MODIFIED:20261119T173000Z\r\nTRANSP:TRANSPARENT\r\nEND:VEVENT\r\n"
        ));

        let ics = one(Event {
            url: Some(String::new()),
            categories: vec![String::new(), "\r".into()],
            ..event()
        });
        assert!(!ics.contains("URL"));
        assert!(!ics.contains("CATEGORIES"));

        let ics = one(Event {
            categories: vec!["a,b".into(), String::new(), "c;d".into()],
            ..event()
        });
        assert!(ics.contains("\r\nCATEGORIES:a\\,b,c\\;d\r\n"));
    }

    #[test]
    fn events_come_in_order() {
        let cal = Calendar {
            name: "CAB".into(),
            events: vec![
                Event {
                    uid: "first".into(),
                    ..event()
                },
                Event {
                    uid: "second".into(),
                    sequence: 0,
                    ..event()
                },
            ],
        };
        let ics = write(&cal, at(20, 8, 0));
        assert_eq!(ics.matches("BEGIN:VEVENT").count(), 2);
        assert_eq!(ics.matches("END:VEVENT").count(), 2);
        let first = ics.find("UID:first").unwrap();
        let second = ics.find("UID:second").unwrap();
        assert!(first < second);
        assert!(ics.contains("UID:second\r\nDTSTAMP:20261120T080000Z\r\n"));
        assert!(ics.contains("\r\nSEQUENCE:0\r\n"));
    }
}
