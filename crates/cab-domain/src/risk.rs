//! Risk scoring of a change request: the engineer's answers in, a level and
//! the reasons that drove it out. Versioned, so a stored level can always be
//! traced to the rules that produced it.

use serde::{Deserialize, Serialize};

/// Bump when the rules below change; stored beside every computed level.
pub const RISK_MODEL_VERSION: i32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    Low,
    Medium,
    High,
    Critical,
}

impl RiskLevel {
    pub const ALL: [RiskLevel; 4] = [
        RiskLevel::Low,
        RiskLevel::Medium,
        RiskLevel::High,
        RiskLevel::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Low => "low",
            RiskLevel::Medium => "medium",
            RiskLevel::High => "high",
            RiskLevel::Critical => "critical",
        }
    }

    /// The level as people read it.
    pub fn label(self) -> &'static str {
        match self {
            RiskLevel::Low => "Low",
            RiskLevel::Medium => "Medium",
            RiskLevel::High => "High",
            RiskLevel::Critical => "Critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }

    fn raised(self) -> Self {
        match self {
            RiskLevel::Low => RiskLevel::Medium,
            RiskLevel::Medium => RiskLevel::High,
            _ => RiskLevel::Critical,
        }
    }
}

impl crate::Vocabulary for RiskLevel {
    const ALL: &'static [Self] = &RiskLevel::ALL;

    fn as_str(self) -> &'static str {
        RiskLevel::as_str(self)
    }

    fn label(self) -> &'static str {
        RiskLevel::label(self)
    }

    fn parse(s: &str) -> Option<Self> {
        RiskLevel::parse(s)
    }
}

/// What the engineer answers. Impact and likelihood run from 1 (least) to 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RiskAnswers {
    pub impact: i16,
    pub likelihood: i16,
    pub touches_production_data: bool,
    pub customer_facing: bool,
    pub changes_security_control: bool,
    pub rollback_untested: bool,
    pub outside_usual_window: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RiskAssessment {
    pub level: RiskLevel,
    /// Why the level is what it is, in the order the rules applied.
    pub reasons: Vec<String>,
    pub version: i32,
}

/// Whether impact and likelihood are in range; the only way answers can be wrong.
pub fn check_answers(a: &RiskAnswers) -> Result<(), (&'static str, &'static str)> {
    answer_errors(a).into_iter().next().map_or(Ok(()), Err)
}

/// Every answer out of range, as (field, message): both scales are named
/// when both are missing.
pub fn answer_errors(a: &RiskAnswers) -> Vec<(&'static str, &'static str)> {
    let mut errors = Vec::new();
    match a.impact {
        1..=4 => {}
        0 => errors.push((
            "impact",
            "Choose the impact, from 1 (negligible) to 4 (severe).",
        )),
        _ => errors.push(("impact", "Impact is from 1 (negligible) to 4 (severe).")),
    }
    match a.likelihood {
        1..=4 => {}
        0 => errors.push((
            "likelihood",
            "Choose the likelihood, from 1 (rare) to 4 (likely).",
        )),
        _ => errors.push(("likelihood", "Likelihood is from 1 (rare) to 4 (likely).")),
    }
    errors
}

/// The rules, version 1:
/// 1. impact × likelihood gives the base: 1–3 low, 4–6 medium, 8–9 high, 12–16 critical;
/// 2. severe impact (4) is at least high;
/// 3. touching production data, or being customer-facing, is at least medium;
/// 4. changing a security control is at least high;
/// 5. a rollback that is impossible or untested is at least high, and critical
///    when production data is touched as well;
/// 6. working outside the usual window raises the level by one.
pub fn assess(a: &RiskAnswers) -> RiskAssessment {
    let impact = a.impact.clamp(1, 4);
    let likelihood = a.likelihood.clamp(1, 4);
    let score = impact * likelihood;
    let mut level = match score {
        1..=3 => RiskLevel::Low,
        4..=6 => RiskLevel::Medium,
        8..=9 => RiskLevel::High,
        _ => RiskLevel::Critical,
    };
    let mut reasons = vec![format!(
        "impact {impact} × likelihood {likelihood} = {score}: {}",
        level.as_str()
    )];
    let mut at_least = |floor: RiskLevel, why: &str, level: &mut RiskLevel| {
        if *level < floor {
            *level = floor;
            reasons.push(format!("{why}: at least {}", floor.as_str()));
        } else {
            reasons.push(why.to_owned());
        }
    };
    if impact == 4 {
        at_least(RiskLevel::High, "severe impact", &mut level);
    }
    if a.touches_production_data {
        at_least(RiskLevel::Medium, "touches production data", &mut level);
    }
    if a.customer_facing {
        at_least(RiskLevel::Medium, "customer-facing", &mut level);
    }
    if a.changes_security_control {
        at_least(RiskLevel::High, "changes a security control", &mut level);
    }
    if a.rollback_untested {
        let floor = if a.touches_production_data {
            RiskLevel::Critical
        } else {
            RiskLevel::High
        };
        let why = if a.touches_production_data {
            "rollback impossible or untested while touching production data"
        } else {
            "rollback impossible or untested"
        };
        at_least(floor, why, &mut level);
    }
    if a.outside_usual_window {
        let before = level;
        level = level.raised();
        reasons.push(if before == level {
            "outside the usual window".to_owned()
        } else {
            format!("outside the usual window: raised to {}", level.as_str())
        });
    }
    RiskAssessment {
        level,
        reasons,
        version: RISK_MODEL_VERSION,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RiskLevel::*;

    #[test]
    fn levels_read_as_words_and_parse_back() {
        for l in RiskLevel::ALL {
            assert_eq!(RiskLevel::parse(l.as_str()), Some(l));
            assert!(l.label().eq_ignore_ascii_case(l.as_str()));
        }
        assert_eq!(RiskLevel::parse("severe"), None);
    }

    #[test]
    fn unanswered_scales_ask_to_be_chosen() {
        let errors = answer_errors(&RiskAnswers::default());
        assert_eq!(
            errors,
            vec![
                (
                    "impact",
                    "Choose the impact, from 1 (negligible) to 4 (severe)."
                ),
                (
                    "likelihood",
                    "Choose the likelihood, from 1 (rare) to 4 (likely)."
                ),
            ]
        );
    }

    #[test]
    fn a_floor_already_reached_is_a_reason_without_raising() {
        let a = RiskAnswers {
            impact: 4,
            likelihood: 2,
            ..RiskAnswers::default()
        };
        let r = assess(&a);
        assert_eq!(r.level, RiskLevel::High);
        assert_eq!(
            r.reasons,
            vec![
                "impact 4 × likelihood 2 = 8: high".to_owned(),
                "severe impact".to_owned()
            ]
        );
    }

    fn answers(impact: i16, likelihood: i16, flags: &str) -> RiskAnswers {
        RiskAnswers {
            impact,
            likelihood,
            touches_production_data: flags.contains('d'),
            customer_facing: flags.contains('c'),
            changes_security_control: flags.contains('s'),
            rollback_untested: flags.contains('r'),
            outside_usual_window: flags.contains('w'),
        }
    }

    #[test]
    fn table_of_answers_to_levels() {
        // (impact, likelihood, flags: d=prod data, c=customer, s=security, r=rollback, w=window)
        let table: &[(i16, i16, &str, RiskLevel)] = &[
            (1, 1, "", Low),
            (1, 3, "", Low),
            (2, 2, "", Medium),
            (3, 2, "", Medium),
            (2, 4, "", High),
            (3, 3, "", High),
            (3, 4, "", Critical),
            (4, 4, "", Critical),
            (4, 1, "", High),
            (1, 1, "d", Medium),
            (1, 1, "c", Medium),
            (1, 1, "s", High),
            (1, 1, "r", High),
            (1, 1, "dr", Critical),
            (1, 1, "w", Medium),
            (2, 2, "w", High),
            (1, 1, "sw", Critical),
            (4, 4, "dcsrw", Critical),
        ];
        for &(i, l, flags, expected) in table {
            let got = assess(&answers(i, l, flags));
            assert_eq!(
                got.level, expected,
                "impact {i}, likelihood {l}, flags {flags:?}: {:?}",
                got.reasons
            );
            assert_eq!(got.version, RISK_MODEL_VERSION);
        }
    }

    #[test]
    fn reasons_name_what_drove_the_level() {
        let got = assess(&answers(1, 1, "dr"));
        assert_eq!(
            got.reasons,
            vec![
                "impact 1 × likelihood 1 = 1: low".to_owned(),
                "touches production data: at least medium".to_owned(),
                "rollback impossible or untested while touching production data: at least critical"
                    .to_owned(),
            ]
        );
        let got = assess(&answers(2, 2, "w"));
        assert_eq!(
            got.reasons.last().unwrap(),
            "outside the usual window: raised to high"
        );
    }

    #[test]
    fn out_of_range_answers_are_named() {
        assert_eq!(check_answers(&answers(0, 2, "")).unwrap_err().0, "impact");
        assert_eq!(
            check_answers(&answers(2, 5, "")).unwrap_err().0,
            "likelihood"
        );
        assert!(check_answers(&answers(4, 1, "")).is_ok());
        let both: Vec<_> = answer_errors(&answers(0, 0, ""))
            .into_iter()
            .map(|(field, _)| field)
            .collect();
        assert_eq!(both, ["impact", "likelihood"]);
    }
}
