//! Rules for passwords people choose. Hashing lives in the server; this is
//! only what makes a password acceptable.

use crate::{Denial, text};

pub const MIN_PASSWORD_CHARS: usize = 12;
/// Long enough for any passphrase, short enough that hashing cannot be abused.
pub const MAX_PASSWORD_CHARS: usize = 256;

pub fn validate_new_password(password: &str) -> Result<(), Denial> {
    // Nobody types one; a password holding one was pasted from somewhere
    // it does not belong, and could not be typed at the sign-in form.
    if let Some(message) = text::text_problem(password) {
        return Err(Denial::new("password_control_character", message));
    }
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(Denial::new(
            "password_too_short",
            format!("The password must be at least {MIN_PASSWORD_CHARS} characters long."),
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(Denial::new(
            "password_too_long",
            format!("The password must be at most {MAX_PASSWORD_CHARS} characters long."),
        ));
    }
    Ok(())
}

/// Usernames: 2 to 64 characters of lowercase letters, digits, `.`, `_` and `-`,
/// starting with a letter or digit. Kept narrow so that names are unambiguous
/// in the audit trail and in URLs.
pub fn validate_username(username: &str) -> Result<(), Denial> {
    if let Some(message) = text::name_problem(username) {
        return Err(Denial::new("invalid_username", message));
    }
    let ok_len = (2..=64).contains(&username.len());
    let ok_chars = username
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    let ok_start = username
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok_len && ok_chars && ok_start {
        Ok(())
    } else {
        Err(Denial::new(
            "invalid_username",
            "A username is 2 to 64 characters: lowercase letters, digits, '.', '_' or '-', starting with a letter or digit.",
        ))
    }
}

/// The most characters of a display name.
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;

/// Display names are free in their letters, but, like every name, hold no
/// control or invisible formatting character (see [`text::name_problem`]).
pub fn validate_display_name(display_name: &str) -> Result<(), Denial> {
    if let Some(message) = text::name_problem(display_name) {
        return Err(Denial::new("invalid_display_name", message));
    }
    if display_name.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(Denial::new(
            "invalid_display_name",
            format!("At most {MAX_DISPLAY_NAME_CHARS} characters."),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_display_name_is_exact() {
        assert!(validate_display_name(&"n".repeat(MAX_DISPLAY_NAME_CHARS)).is_ok());
        assert!(validate_display_name(&"n".repeat(MAX_DISPLAY_NAME_CHARS + 1)).is_err());
    }

    #[test]
    fn the_longest_password_is_exact() {
        assert!(validate_new_password(&"p".repeat(MAX_PASSWORD_CHARS)).is_ok());
        assert_eq!(
            validate_new_password(&"p".repeat(MAX_PASSWORD_CHARS + 1)).map_err(|d| d.code),
            Err("password_too_long")
        );
        assert!(validate_new_password(&"p".repeat(MIN_PASSWORD_CHARS)).is_ok());
    }

    #[test]
    fn password_length_is_counted_in_characters() {
        assert_eq!(
            validate_new_password("elevenchars").unwrap_err().code,
            "password_too_short"
        );
        assert!(validate_new_password("twelve chars").is_ok());
        // 12 characters, more bytes: accepted.
        assert!(validate_new_password("ééééééééééé1").is_ok());
        assert_eq!(
            validate_new_password(&"x".repeat(257)).unwrap_err().code,
            "password_too_long"
        );
    }

    #[test]
    fn a_password_holds_no_control_character() {
        for bad in ["correct\0horse battery", "correct\u{1b}horse battery"] {
            assert_eq!(
                validate_new_password(bad).unwrap_err().code,
                "password_control_character"
            );
        }
        assert!(validate_new_password("correct\thorse battery").is_ok());
    }

    #[test]
    fn names_say_which_character_they_refuse() {
        for (name, named) in [
            ("ad\0am", "U+0000 NULL"),
            ("adm\u{202E}ni", "U+202E RIGHT-TO-LEFT OVERRIDE"),
            ("ad\u{200B}am", "U+200B ZERO WIDTH SPACE"),
        ] {
            let d = validate_username(name).unwrap_err();
            assert_eq!(d.code, "invalid_username");
            assert!(d.message.contains(named), "{}", d.message);
            let d = validate_display_name(name).unwrap_err();
            assert_eq!(d.code, "invalid_display_name");
            assert!(d.message.contains(named), "{}", d.message);
        }
        assert!(validate_display_name("Zoë O'Brien-Łukasiewicz").is_ok());
        assert!(validate_display_name("").is_ok());
        assert!(validate_display_name(&"x".repeat(101)).is_err());
    }

    #[test]
    fn usernames() {
        for ok in ["alice", "ci-bot", "j.doe_2", "a1"] {
            assert!(validate_username(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "Alice",
            "-x",
            "has space",
            "<script>",
            &"a".repeat(65),
        ] {
            assert!(validate_username(bad).is_err(), "{bad}");
        }
    }
}
