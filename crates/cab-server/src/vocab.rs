//! Reading one word of a closed list from input. A word that is not on the
//! list is an error on the field it came in, saying what was sent.

use cab_domain::Vocabulary;
use cab_domain::text::quoted;

use crate::error::AppError;

/// The word `raw` is, or an error on `field` naming every word it takes:
/// `'maybe' is not one of approve, reject, request_changes.`
pub fn word<T: Vocabulary>(field: &str, raw: &str) -> Result<T, AppError> {
    word_or(field, raw, |raw| {
        format!("{} is not one of {}.", quoted(raw), known::<T>())
    })
}

/// The word `raw` is, or an error on `field` in the sentence `message`
/// writes about what was sent.
pub fn word_or<T: Vocabulary>(
    field: &str,
    raw: &str,
    message: impl FnOnce(&str) -> String,
) -> Result<T, AppError> {
    T::parse(raw).ok_or_else(|| AppError::invalid(field, message(raw)))
}

/// Every word `T` takes, as sent, in order: `approve, reject, request_changes`.
pub fn known<T: Vocabulary>() -> String {
    T::ALL
        .iter()
        .map(|w| w.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use cab_domain::approval::VoteChoice;
    use cab_domain::change::ChangeState;

    use super::*;

    fn refusal(e: AppError) -> (String, String) {
        match e {
            AppError::Invalid { field, message } => (field, message),
            other => panic!("not a field error: {other:?}"),
        }
    }

    #[test]
    fn a_known_word_is_read_exactly() {
        assert_eq!(
            word::<VoteChoice>("vote", "request_changes").ok(),
            Some(VoteChoice::RequestChanges)
        );
        assert_eq!(
            word_or::<ChangeState>("state", "draft", |_| String::new()).ok(),
            Some(ChangeState::Draft)
        );
        assert!(word::<VoteChoice>("vote", "Approve").is_err());
        assert!(word::<VoteChoice>("vote", " approve").is_err());
    }

    #[test]
    fn an_unknown_word_names_the_field_and_the_words_it_takes() {
        let e = word::<VoteChoice>("vote", "maybe").err().map(refusal);
        assert_eq!(
            e,
            Some((
                "vote".to_owned(),
                "'maybe' is not one of approve, reject, request_changes.".to_owned()
            ))
        );
    }

    #[test]
    fn a_custom_sentence_replaces_the_list() {
        let e = word_or::<ChangeState>("state", "limbo", |raw| {
            format!("{} is not a known state.", quoted(raw))
        })
        .err()
        .map(refusal);
        assert_eq!(
            e,
            Some((
                "state".to_owned(),
                "'limbo' is not a known state.".to_owned()
            ))
        );
    }
}
