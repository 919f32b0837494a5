//! Rules for passwords people choose. Hashing lives in the server; this is
//! only what makes a password acceptable.

use crate::Denial;

pub const MIN_PASSWORD_CHARS: usize = 12;
/// Long enough for any passphrase, short enough that hashing cannot be abused.
pub const MAX_PASSWORD_CHARS: usize = 256;

pub fn validate_new_password(password: &str) -> Result<(), Denial> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
