//! CAB's store: every SQL statement lives here, one module per aggregate.
//!
//! Functions take a `&mut PgConnection` (a pooled connection or an open
//! transaction) so the caller decides the transaction boundary; a state change
//! and its audit event are written through the same transaction.

pub mod api_tokens;
pub mod audit;
pub mod calendar;
pub mod changes;
pub mod checkpoints;
pub mod decisions;
pub mod demo;
pub mod deployments;
pub mod evidence;
pub mod exceptions;
pub mod health;
pub mod idempotency;
pub mod metrics;
pub mod queue;
pub mod releases;
pub mod reviews;
pub mod role_grants;
pub mod sessions;
pub mod signin_attempts;
pub mod standard_templates;
pub mod telemetry;
pub mod users;

pub use sqlx::{PgConnection, PgPool, Postgres, Transaction};

/// The migrations in `migrations/`, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Whether an error is a unique-constraint violation on the named constraint.
pub fn is_unique_violation(err: &sqlx::Error, constraint: &str) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.is_unique_violation() && db.constraint().is_some_and(|c| c == constraint)
        }
        _ => false,
    }
}
