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

        impl $crate::Vocabulary for $name {
            const ALL: &'static [Self] = $name::ALL;

            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }

            fn label(self) -> &'static str {
                $name::label(self)
            }

            fn parse(s: &str) -> Option<Self> {
                $name::parse(s)
            }
        }
    };
}

/// A closed list of words: every value, its stored and sent text, and its
/// label for people. Lets one function read any of them from input and say
/// which words it takes.
pub trait Vocabulary: Copy + 'static {
    /// Every word, in the order they are offered.
    const ALL: &'static [Self];
    /// The text stored and sent in the API.
    fn as_str(self) -> &'static str;
    /// The word as people read it.
    fn label(self) -> &'static str;
    /// The word whose text is exactly `s`.
    fn parse(s: &str) -> Option<Self>;
}

pub mod approval;
pub mod audit;
pub mod audit_filter;
pub mod calendar;
pub mod change;
pub mod checkpoint;
pub mod denial;
pub mod deployment;
pub mod evidence;
pub mod export;
pub mod export_check;
pub mod ical;
pub mod lifecycle;
pub mod metrics;
pub mod password;
pub mod redirect;
pub mod release;
pub mod review;
pub mod risk;
pub mod role;
pub mod standard_template;
pub mod tally;
pub mod text;
pub mod throttle;
pub mod user_admin;

pub use denial::Denial;
pub use role::{Actor, Role, RoleSet};

#[cfg(test)]
mod tests {
    use super::Vocabulary;
    use crate::approval::VoteChoice;
    use crate::change::ChangeState;
    use crate::risk::RiskLevel;
    use crate::standard_template::TemplateState;

    fn words<T: Vocabulary + std::fmt::Debug + PartialEq>() -> Vec<(&'static str, &'static str)> {
        for w in T::ALL {
            assert_eq!(T::parse(w.as_str()), Some(*w), "{w:?}");
        }
        assert_eq!(T::parse("nonsense"), None);
        T::ALL.iter().map(|w| (w.as_str(), w.label())).collect()
    }

    #[test]
    fn every_word_reads_back_as_itself() {
        assert_eq!(
            words::<RiskLevel>(),
            [
                ("low", "Low"),
                ("medium", "Medium"),
                ("high", "High"),
                ("critical", "Critical")
            ]
        );
        assert_eq!(
            words::<TemplateState>(),
            [
                ("proposed", "Proposed"),
                ("approved", "Approved"),
                ("retired", "Retired")
            ]
        );
        assert_eq!(words::<ChangeState>().len(), ChangeState::ALL.len());
        assert_eq!(
            words::<VoteChoice>()[2],
            ("request_changes", "Request changes")
        );
    }
}
