//! How pages write times and change numbers, as askama filters: the page
//! structs carry the values themselves (`DateTime<Utc>`, a change's number)
//! and the templates say how they read, e.g. `{{ c.at|when }}`. A module
//! whose templates use them brings this one into scope as `filters`.

use askama::Values;
use cab_domain::change::ChangeKey;
use chrono::{DateTime, Utc};

/// A time to the second, in UTC: `2026-11-23 10:52:33 UTC`.
pub fn when(t: &DateTime<Utc>, _: &dyn Values) -> askama::Result<String> {
    Ok(super::when(t))
}

/// A time to the minute, for lists: `2026-11-23 10:52`.
pub fn minute(t: &DateTime<Utc>, _: &dyn Values) -> askama::Result<String> {
    Ok(t.format("%Y-%m-%d %H:%M").to_string())
}

/// A change's number as people quote it: `CHG-42`.
pub fn change_key(number: &i64, _: &dyn Values) -> askama::Result<ChangeKey> {
    Ok(ChangeKey(*number))
}
