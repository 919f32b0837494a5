//! CAB's domain: the rules of the product as plain types and pure functions.
//!
//! Nothing here performs I/O or reads the clock. Time, the acting user and the
//! facts a rule needs are parameters, so every rule is unit-tested without a
//! database. A refusal is a [`Denial`] value carrying a stable reason code and a
//! sentence a person understands, never a bare `false`.

pub mod approval;
pub mod audit;
pub mod change;
pub mod denial;
pub mod password;
pub mod risk;
pub mod role;
pub mod template;
pub mod throttle;
pub mod user_admin;

pub use denial::Denial;
pub use role::{Role, RoleSet};
