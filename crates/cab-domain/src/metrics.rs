//! The period and buckets the measures of change are read over, and the
//! arithmetic on what the store counted.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::change::FieldError;

/// The longest period one read covers.
pub const MAX_DAYS: i64 = 731;
/// The period when none is given: the last 90 days.
pub const DEFAULT_DAYS: i64 = 90;

vocabulary!(
    /// How a period is cut for the charts.
    Bucket {
        Week = "week" / "Week",
        Month = "month" / "Month",
    }
);

/// A period of whole days, `from` to `to` inclusive, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Period {
    /// The period the words ask for, `today` filling what is left out; the
    /// faults by field.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        today: NaiveDate,
    ) -> Result<Period, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut date = |field: &'static str, raw: Option<&str>| match raw.map(str::trim) {
            None | Some("") => None,
            Some(s) => match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                Ok(d) if (2000..=2999).contains(&d.year()) => Some(d),
                _ => {
                    errors.push(FieldError {
                        field,
                        message: "Give a date as YYYY-MM-DD.".into(),
                    });
                    None
                }
            },
        };
        let from = date("from", from);
        let to = date("to", to);
        if !errors.is_empty() {
            return Err(errors);
        }
        let to = to.unwrap_or(today);
        let from = from.unwrap_or(to - Duration::days(DEFAULT_DAYS - 1));
        if from > to {
            return Err(vec![FieldError {
                field: "from",
                message: "The period starts after it ends.".into(),
            }]);
        }
        if (to - from).num_days() + 1 > MAX_DAYS {
            return Err(vec![FieldError {
                field: "from",
                message: format!("Choose a period of at most {MAX_DAYS} days."),
            }]);
        }
        Ok(Period { from, to })
    }

    /// The first instant of the period.
    pub fn start(&self) -> DateTime<Utc> {
        midnight(self.from)
    }

    /// The first instant after the period.
    pub fn end(&self) -> DateTime<Utc> {
        midnight(self.to + Duration::days(1))
    }

    /// The buckets the period touches, in order: each one's first day (a
    /// Monday, or the first of a month), whether or not anything happened
    /// in it.
    pub fn buckets(&self, bucket: Bucket) -> Vec<NaiveDate> {
        let mut at = bucket_of(self.from, bucket);
        let mut all = Vec::new();
        while at <= self.to {
            all.push(at);
            at = next_bucket(at, bucket);
        }
        all
    }
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
}

/// The first day of the bucket holding `d`.
pub fn bucket_of(d: NaiveDate, bucket: Bucket) -> NaiveDate {
    match bucket {
        Bucket::Week => d - Duration::days(i64::from(d.weekday().num_days_from_monday())),
        Bucket::Month => d.with_day(1).unwrap_or(d),
    }
}

/// The first day of the bucket after the one starting on `start`; the
/// last day there is when that is beyond the calendar.
pub fn next_bucket(start: NaiveDate, bucket: Bucket) -> NaiveDate {
    match bucket {
        Bucket::Week => start.checked_add_signed(Duration::days(7)),
        Bucket::Month => start.checked_add_months(chrono::Months::new(1)),
    }
    .unwrap_or(NaiveDate::MAX)
}

/// `part` of `whole`, between 0 and 1; `None` when there is no whole.
pub fn share(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| (part.clamp(0, whole)) as f64 / whole as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("a date")
    }

    #[test]
    fn a_period_left_out_is_the_last_ninety_days() {
        let p = Period::parse(None, None, day("2026-11-24")).expect("a period");
        assert_eq!(p.to, day("2026-11-24"));
        assert_eq!(p.from, day("2026-08-27"));
        assert_eq!((p.to - p.from).num_days() + 1, DEFAULT_DAYS);
        assert_eq!(p.end() - p.start(), Duration::days(DEFAULT_DAYS));
    }

    #[test]
    fn bad_periods_name_their_field() {
        let today = day("2026-11-24");
        let field = |from, to| {
            Period::parse(from, to, today)
                .expect_err("refused")
                .into_iter()
                .map(|e| e.field)
                .collect::<Vec<_>>()
        };
        assert_eq!(field(Some("2026-13-01"), None), ["from"]);
        assert_eq!(field(None, Some("yesterday")), ["to"]);
        assert_eq!(field(Some("0001-01-01"), Some("x")), ["from", "to"]);
        assert_eq!(field(Some("2026-11-25"), Some("2026-11-24")), ["from"]);
        assert_eq!(field(Some("2024-11-23"), Some("2026-11-24")), ["from"]);
        assert!(Period::parse(Some("2024-11-24"), Some("2026-11-24"), today).is_ok());
        assert!(Period::parse(Some("2026-11-24"), Some("2026-11-24"), today).is_ok());
        assert!(Period::parse(Some(" "), Some(""), today).is_ok());
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        let p = Period::parse(Some("2026-11-04"), Some("2026-11-24"), day("2026-11-24"))
            .expect("a period");
        assert_eq!(
            p.buckets(Bucket::Week),
            [
                day("2026-11-02"),
                day("2026-11-09"),
                day("2026-11-16"),
                day("2026-11-23")
            ]
        );
        let p = Period::parse(Some("2026-01-31"), Some("2026-03-01"), day("2026-11-24"))
            .expect("a period");
        assert_eq!(
            p.buckets(Bucket::Month),
            [day("2026-01-01"), day("2026-02-01"), day("2026-03-01")]
        );
        assert_eq!(
            bucket_of(day("2026-11-23"), Bucket::Week),
            day("2026-11-23")
        );
        assert_eq!(
            bucket_of(day("2026-11-29"), Bucket::Week),
            day("2026-11-23")
        );
        assert_eq!(
            next_bucket(day("2026-12-01"), Bucket::Month),
            day("2027-01-01")
        );
        assert_eq!(
            next_bucket(day("2026-11-23"), Bucket::Week),
            day("2026-11-30")
        );
    }

    #[test]
    fn the_bucket_after_the_last_one_is_the_last_day() {
        let last_month = NaiveDate::MAX.with_day(1).expect("a day");
        assert_eq!(next_bucket(last_month, Bucket::Month), NaiveDate::MAX);
        let last_week = NaiveDate::MAX - Duration::days(3);
        assert_eq!(next_bucket(last_week, Bucket::Week), NaiveDate::MAX);
    }

    #[test]
    fn a_share_never_leaves_zero_to_one() {
        assert_eq!(share(0, 0), None);
        assert_eq!(share(1, 4), Some(0.25));
        assert_eq!(share(5, 4), Some(1.0));
        assert_eq!(share(-1, 4), Some(0.0));
        assert_eq!(share(4, 4), Some(1.0));
    }
}
