//! The demo board's calendar rules: maintenance periods for the payments
//! services and a limit on production changes per hour, set by the release
//! manager before the board's changes are filed, so that the calendar, the
//! change pages and the CAB queue have conflicts to show and the demo CAB's
//! approvals carry the conflicts they acknowledged.

use sqlx::PgPool;

use super::person;
use crate::calendar::{self, NewPeriod};
use crate::error::AppError;
use crate::request::Origin;

/// The most production changes one hour holds on the demo board.
pub const PRODUCTION_PER_HOUR: i64 = 1;

pub async fn seed(pool: &PgPool) -> Result<(), AppError> {
    let rita = person(pool, "rita").await?;
    let origin = Origin::cli();
    // Payments change on Tuesday and Thursday evenings only.
    calendar::add_period(
        pool,
        &rita,
        &origin,
        &NewPeriod {
            service: "payments-api".into(),
            weekdays: vec![2, 4],
            starts: "20:00".into(),
            minutes: 240,
        },
    )
    .await?;
    // The ledger any night, after the day's close.
    calendar::add_period(
        pool,
        &rita,
        &origin,
        &NewPeriod {
            service: "ledger".into(),
            weekdays: vec![1, 2, 3, 4, 5, 6, 7],
            starts: "18:00".into(),
            minutes: 360,
        },
    )
    .await?;
    calendar::set_production_limit(pool, &rita, &origin, Some(PRODUCTION_PER_HOUR)).await?;
    Ok(())
}
