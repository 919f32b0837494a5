//! CAB's domain: the rules of the product as plain types and pure functions.
//!
//! Nothing here performs I/O or reads the clock. Time, the acting user and the
//! facts a rule needs are parameters, so every rule is unit-tested without a
//! database. A refusal is a [`Denial`] value carrying a stable reason code and a
//! sentence a person understands, never a bare `false`.

/// A closed list of words with a stable text form (stored and sent in the
/// API) and a label for people.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal / $label:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $text)] $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn label(self) -> &'static str {
                match self { $($name::$variant => $label),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }
    };
}

pub mod approval;
pub mod audit;
pub mod change;
pub mod denial;
pub mod password;
pub mod redirect;
pub mod risk;
pub mod role;
pub mod template;
pub mod text;
pub mod throttle;
pub mod user_admin;

pub use denial::Denial;
pub use role::{Role, RoleSet};
