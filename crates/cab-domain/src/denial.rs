//! The value every policy returns when it refuses.

use std::fmt;

/// Why an action was refused: a stable machine-readable `code` (used in API
/// problem documents and the audit trail) and a `message` for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub code: &'static str,
    pub message: String,
}

impl Denial {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for Denial {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_reads_as_its_sentence_and_code() {
        let d = Denial::new("self_approval", "You wrote it.");
        assert_eq!(d.to_string(), "You wrote it. (self_approval)");
    }
}
