//! Which characters people may store, and how a client's text is quoted back
//! to them and into the logs.
//!
//! Free text (descriptions, plans, comments, reasons) may hold any character
//! but a control character: tab, carriage return and line feed are allowed,
//! the rest (NUL, escape, delete, the C1 controls) never mean anything a
//! person wrote, cannot all be stored, and rewrite terminals and log files.
//! Names and titles, which people read at a glance to tell one thing from
//! another, additionally refuse the invisible formatting characters that can
//! make text display as something it is not: bidirectional overrides and
//! isolates, zero-width characters and the like.

use std::fmt::{self, Write};

use crate::change::FieldError;

/// A control character no stored text may hold: every one but tab, CR and LF.
pub fn is_forbidden_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// Invisible characters that change how the text around them is shown
/// (direction, joining, word breaks) without showing themselves, with their
/// Unicode names. Variation selectors are not listed: emoji need them and
/// they cannot reorder or hide text.
const DISGUISING: &[(char, &str)] = &[
    ('\u{00AD}', "SOFT HYPHEN"),
    ('\u{034F}', "COMBINING GRAPHEME JOINER"),
    ('\u{061C}', "ARABIC LETTER MARK"),
    ('\u{115F}', "HANGUL CHOSEONG FILLER"),
    ('\u{1160}', "HANGUL JUNGSEONG FILLER"),
    ('\u{180E}', "MONGOLIAN VOWEL SEPARATOR"),
    ('\u{200B}', "ZERO WIDTH SPACE"),
    ('\u{200C}', "ZERO WIDTH NON-JOINER"),
    ('\u{200D}', "ZERO WIDTH JOINER"),
    ('\u{200E}', "LEFT-TO-RIGHT MARK"),
    ('\u{200F}', "RIGHT-TO-LEFT MARK"),
    ('\u{202A}', "LEFT-TO-RIGHT EMBEDDING"),
    ('\u{202B}', "RIGHT-TO-LEFT EMBEDDING"),
    ('\u{202C}', "POP DIRECTIONAL FORMATTING"),
    ('\u{202D}', "LEFT-TO-RIGHT OVERRIDE"),
    ('\u{202E}', "RIGHT-TO-LEFT OVERRIDE"),
    ('\u{2060}', "WORD JOINER"),
    ('\u{2061}', "FUNCTION APPLICATION"),
    ('\u{2062}', "INVISIBLE TIMES"),
    ('\u{2063}', "INVISIBLE SEPARATOR"),
    ('\u{2064}', "INVISIBLE PLUS"),
    ('\u{2066}', "LEFT-TO-RIGHT ISOLATE"),
    ('\u{2067}', "RIGHT-TO-LEFT ISOLATE"),
    ('\u{2068}', "FIRST STRONG ISOLATE"),
    ('\u{2069}', "POP DIRECTIONAL ISOLATE"),
    ('\u{206A}', "INHIBIT SYMMETRIC SWAPPING"),
    ('\u{206B}', "ACTIVATE SYMMETRIC SWAPPING"),
    ('\u{206C}', "INHIBIT ARABIC FORM SHAPING"),
    ('\u{206D}', "ACTIVATE ARABIC FORM SHAPING"),
    ('\u{206E}', "NATIONAL DIGIT SHAPES"),
    ('\u{206F}', "NOMINAL DIGIT SHAPES"),
    ('\u{3164}', "HANGUL FILLER"),
    ('\u{FEFF}', "ZERO WIDTH NO-BREAK SPACE"),
    ('\u{FFA0}', "HALFWIDTH HANGUL FILLER"),
    ('\u{FFF9}', "INTERLINEAR ANNOTATION ANCHOR"),
    ('\u{FFFA}', "INTERLINEAR ANNOTATION SEPARATOR"),
    ('\u{FFFB}', "INTERLINEAR ANNOTATION TERMINATOR"),
];

/// The Unicode name of an invisible formatting character a name or title
/// may not hold, or `None` for any other character.
pub fn disguising_name(c: char) -> Option<&'static str> {
    if ('\u{E0000}'..='\u{E007F}').contains(&c) {
        return Some("TAG CHARACTER");
    }
    DISGUISING
        .binary_search_by_key(&c, |(ch, _)| *ch)
        .ok()
        .map(|i| DISGUISING[i].1)
}

/// Names of the C0 controls and DEL, as Unicode gives them.
const C0_NAMES: [&str; 32] = [
    "NULL",
    "START OF HEADING",
    "START OF TEXT",
    "END OF TEXT",
    "END OF TRANSMISSION",
    "ENQUIRY",
    "ACKNOWLEDGE",
    "BELL",
    "BACKSPACE",
    "CHARACTER TABULATION",
    "LINE FEED",
    "LINE TABULATION",
    "FORM FEED",
    "CARRIAGE RETURN",
    "SHIFT OUT",
    "SHIFT IN",
    "DATA LINK ESCAPE",
    "DEVICE CONTROL ONE",
    "DEVICE CONTROL TWO",
    "DEVICE CONTROL THREE",
    "DEVICE CONTROL FOUR",
    "NEGATIVE ACKNOWLEDGE",
    "SYNCHRONOUS IDLE",
    "END OF TRANSMISSION BLOCK",
    "CANCEL",
    "END OF MEDIUM",
    "SUBSTITUTE",
    "ESCAPE",
    "INFORMATION SEPARATOR FOUR",
    "INFORMATION SEPARATOR THREE",
    "INFORMATION SEPARATOR TWO",
    "INFORMATION SEPARATOR ONE",
];

/// A character as people can look it up: `U+202E RIGHT-TO-LEFT OVERRIDE`.
pub fn describe(c: char) -> String {
    let name = match c {
        '\u{7F}' => Some("DELETE"),
        c if c.is_ascii_control() => C0_NAMES.get(c as usize).copied(),
        c => disguising_name(c),
    };
    match name {
        Some(name) => format!("U+{:04X} {name}", c as u32),
        None => format!("U+{:04X}", c as u32),
    }
}

/// What is wrong with free text, if anything: the first control character
/// it holds, named.
pub fn text_problem(value: &str) -> Option<String> {
    value.chars().find(|c| is_forbidden_control(*c)).map(|c| {
        format!(
            "Contains {}, a control character that cannot be stored; remove it.",
            describe(c)
        )
    })
}

/// What is wrong with a name or title, if anything: a control character,
/// or an invisible formatting character that can make it read as another.
pub fn name_problem(value: &str) -> Option<String> {
    text_problem(value).or_else(|| {
        value.chars().find(|c| disguising_name(*c).is_some()).map(|c| {
            format!(
                "Contains {}, an invisible formatting character that can make it read as something else; remove it.",
                describe(c)
            )
        })
    })
}

/// Free text for `field`; see [`text_problem`].
pub fn check_text(field: &'static str, value: &str) -> Result<(), FieldError> {
    match text_problem(value) {
        None => Ok(()),
        Some(message) => Err(FieldError { field, message }),
    }
}

/// A name or title for `field`; see [`name_problem`].
pub fn check_name(field: &'static str, value: &str) -> Result<(), FieldError> {
    match name_problem(value) {
        None => Ok(()),
        Some(message) => Err(FieldError { field, message }),
    }
}

/// Whether text can be searched for at all. Nothing stored holds a control
/// character, so a search for one finds nothing, and is not run.
pub fn is_searchable(value: &str) -> bool {
    !value.chars().any(is_forbidden_control)
}

/// `value` with each forbidden control character replaced by U+FFFD, for a
/// key that must be kept even when the text is refused (a failed sign-in's
/// username): it can be stored, and it matches no name, since names never
/// hold U+FFFD.
pub fn replace_controls(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if is_forbidden_control(c) {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect()
}

/// Text shown with every control and invisible formatting character written
/// as an escape (`\n`, `\u{1b}`, `\u{202e}`), so that a client's value
/// quoted in a message or a log line stays on its line, sets no colour and
/// reads as what it is.
pub struct Escaped<T>(pub T);

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(EscapingWriter(f), "{}", self.0)
    }
}

struct EscapingWriter<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for EscapingWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if c.is_control() {
                write!(self.0, "{}", c.escape_debug())?;
            } else if disguising_name(c).is_some() {
                write!(self.0, "\\u{{{:x}}}", c as u32)?;
            } else {
                self.0.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// The most characters of a client's value quoted back in a message.
const QUOTED_CHARS: usize = 80;

/// A client's value for a message, in single quotes, escaped (see
/// [`Escaped`]) and cut short when long: `'x\n2026…'`.
pub fn quoted(value: &str) -> String {
    let mut shown: String = value.chars().take(QUOTED_CHARS).collect();
    if value.chars().nth(QUOTED_CHARS).is_some() {
        shown.push('…');
    }
    format!("'{}'", Escaped(shown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_refuses_every_control_but_tab_cr_and_lf() {
        let cases: &[(&str, Option<&str>)] = &[
            ("Plain words", None),
            ("Lines\nand\r\nmore\tcolumns", None),
            ("Umlauts äöü, emoji 👍🏽, right-to-left עברית", None),
            ("a\u{0}b", Some("U+0000 NULL")),
            ("a\u{1}b", Some("U+0001 START OF HEADING")),
            ("a\u{1b}[31m", Some("U+001B ESCAPE")),
            ("a\u{7f}", Some("U+007F DELETE")),
            ("a\u{85}", Some("U+0085")),
            ("a\u{9b}31m", Some("U+009B")),
            ("\u{c}form feed", Some("U+000C FORM FEED")),
        ];
        for (value, named) in cases {
            match (text_problem(value), named) {
                (None, None) => {}
                (Some(message), Some(named)) => {
                    assert!(message.contains(named), "{value:?}: {message}")
                }
                (got, want) => panic!("{value:?}: got {got:?}, want {want:?}"),
            }
        }
        // Formatting characters are free text's business.
        assert_eq!(text_problem("a\u{202e}b"), None);
    }

    #[test]
    fn names_also_refuse_invisible_formatting_characters() {
        let cases: &[(&str, Option<&str>)] = &[
            ("Rotate certificates", None),
            ("Zertifikate erneuern", None),
            ("תעודות", None),
            ("Deploy 🚀", None),
            ("❤\u{FE0F} variation selectors stay", None),
            (
                "invoice\u{202E}fdp.exe",
                Some("U+202E RIGHT-TO-LEFT OVERRIDE"),
            ),
            ("a\u{202A}b", Some("U+202A LEFT-TO-RIGHT EMBEDDING")),
            ("a\u{202D}b", Some("U+202D LEFT-TO-RIGHT OVERRIDE")),
            ("a\u{2066}b", Some("U+2066 LEFT-TO-RIGHT ISOLATE")),
            ("a\u{2069}b", Some("U+2069 POP DIRECTIONAL ISOLATE")),
            ("a\u{200E}b", Some("U+200E LEFT-TO-RIGHT MARK")),
            ("a\u{200F}b", Some("U+200F RIGHT-TO-LEFT MARK")),
            ("a\u{061C}b", Some("U+061C ARABIC LETTER MARK")),
            ("adm\u{200B}in", Some("U+200B ZERO WIDTH SPACE")),
            ("a\u{200D}b", Some("U+200D ZERO WIDTH JOINER")),
            ("a\u{2060}b", Some("U+2060 WORD JOINER")),
            ("\u{FEFF}title", Some("U+FEFF ZERO WIDTH NO-BREAK SPACE")),
            ("a\u{E0041}b", Some("U+E0041 TAG CHARACTER")),
            ("a\u{0}b", Some("U+0000 NULL")),
        ];
        for (value, named) in cases {
            match (name_problem(value), named) {
                (None, None) => {}
                (Some(message), Some(named)) => {
                    assert!(message.contains(named), "{value:?}: {message}")
                }
                (got, want) => panic!("{value:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn the_list_of_disguising_characters_is_sorted_for_lookup() {
        assert!(DISGUISING.windows(2).all(|w| w[0].0 < w[1].0));
        for (c, name) in DISGUISING {
            assert_eq!(disguising_name(*c), Some(*name));
        }
        assert_eq!(disguising_name('a'), None);
    }

    #[test]
    fn checks_name_the_field() {
        assert_eq!(check_text("body", "fine"), Ok(()));
        assert_eq!(check_text("body", "a\0").unwrap_err().field, "body");
        assert_eq!(check_name("title", "a\u{202E}").unwrap_err().field, "title");
        assert_eq!(check_name("title", "fine"), Ok(()));
    }

    #[test]
    fn an_assessment_holds_no_control_character_in_any_of_its_text() {
        use crate::approval::{
            AssessmentContent, AssessmentDecision, DataClassification, TestRequirement,
        };
        use crate::risk::RiskLevel;
        let good = AssessmentContent {
            data_classification: DataClassification::Internal,
            security_implications: "None beyond TLS.".into(),
            sast: TestRequirement {
                required: true,
                evidence: "https://ci.example/sast".into(),
                justification: String::new(),
            },
            dast: TestRequirement::default(),
            pentest: TestRequirement::default(),
            residual_risk: "Low.".into(),
            assessed_level: RiskLevel::Medium,
            lowering_justification: String::new(),
            decision: AssessmentDecision::AcceptWithConditions,
            conditions: vec!["Watch the error rate.".into()],
        };
        assert_eq!(good.validate(RiskLevel::Medium), vec![]);
        type Mutation = fn(&mut AssessmentContent);
        let cases: [(Mutation, &str); 7] = [
            (
                |a| a.security_implications.push('\0'),
                "security_implications",
            ),
            (|a| a.residual_risk.push('\u{1}'), "residual_risk"),
            (
                |a| a.lowering_justification.push('\u{7f}'),
                "lowering_justification",
            ),
            (|a| a.sast.evidence.push('\0'), "sast"),
            (|a| a.dast.justification.push('\u{1b}'), "dast"),
            (|a| a.pentest.justification.push('\0'), "pentest"),
            (|a| a.conditions.push("b\0".into()), "conditions"),
        ];
        for (mutate, field) in cases {
            let mut a = good.clone();
            mutate(&mut a);
            let errors = a.validate(RiskLevel::Medium);
            assert_eq!(errors.first().map(|e| e.field), Some(field), "{errors:?}");
            assert!(errors[0].message.contains("control character"));
        }
    }

    #[test]
    fn a_search_for_a_control_character_is_not_run() {
        assert!(is_searchable("tls renewal"));
        assert!(is_searchable("two\twords"));
        assert!(!is_searchable("a\0b"));
        assert!(!is_searchable("\u{7f}"));
    }

    #[test]
    fn replaced_controls_leave_a_storable_key() {
        assert_eq!(replace_controls("ad\0am"), "ad\u{FFFD}am");
        assert_eq!(replace_controls("adam"), "adam");
        assert_eq!(replace_controls("a\tb"), "a\tb");
    }

    #[test]
    fn quoting_keeps_a_value_on_its_line_and_colourless() {
        let forged = "x\n2026-01-01T00:00:00Z INFO forged \u{1b}[31mred\u{202E}";
        let q = quoted(forged);
        assert_eq!(
            q,
            "'x\\n2026-01-01T00:00:00Z INFO forged \\u{1b}[31mred\\u{202e}'"
        );
        assert!(!q.contains('\n') && !q.contains('\u{1b}') && !q.contains('\u{202E}'));
        assert_eq!(quoted("it's"), "'it's'");
        assert_eq!(quoted("tab\there"), "'tab\\there'");
        let long = quoted(&"y".repeat(500));
        assert_eq!(long.chars().count(), QUOTED_CHARS + 3);
        assert!(long.ends_with("…'"));
        assert_eq!(
            Escaped("a\0b\r\n").to_string(),
            "a\\0b\\r\\n",
            "any Display value"
        );
    }
}
