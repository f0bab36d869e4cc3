//! Account rules: what a user name, a device name and a password must look like.
//!
//! User and device names end up inside MQTT topics (`owntracks/<user>/<device>`), so they must
//! never contain topic separators or wildcards.

use thiserror::Error;

/// Why a name or password was refused; the message is shown to the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AccountError {
    #[error("{what} must be 1 to 32 characters long")]
    NameLength { what: &'static str },
    #[error(
        "{what} may contain only lower-case letters, digits, '-' and '_', and must start with a letter or digit"
    )]
    NameCharacters { what: &'static str },
    #[error("the password must be at least {min} characters long")]
    PasswordTooShort { min: usize },
    #[error("the password must be at most {max} characters long")]
    PasswordTooLong { max: usize },
}

/// Minimum password length: long enough to resist guessing when combined with argon2id and
/// login throttling, short enough for a family to type on a phone.
pub const MIN_PASSWORD_LEN: usize = 10;
/// Maximum password length, so that hashing cost stays bounded.
pub const MAX_PASSWORD_LEN: usize = 256;

/// Checks a user name (also the MQTT user name and the `<user>` topic level).
pub fn validate_username(name: &str) -> Result<(), AccountError> {
    validate_name(name, "a user name")
}

/// Checks a device name (the OwnTracks device id and the `<device>` topic level).
pub fn validate_device_name(name: &str) -> Result<(), AccountError> {
    validate_name(name, "a device name")
}

fn validate_name(name: &str, what: &'static str) -> Result<(), AccountError> {
    if name.is_empty() || name.len() > 32 {
        return Err(AccountError::NameLength { what });
    }
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(AccountError::NameCharacters { what })
    }
}

/// Checks a new password against the length policy.
pub fn validate_password(password: &str) -> Result<(), AccountError> {
    let len = password.chars().count();
    if len < MIN_PASSWORD_LEN {
        return Err(AccountError::PasswordTooShort {
            min: MIN_PASSWORD_LEN,
        });
    }
    if len > MAX_PASSWORD_LEN {
        return Err(AccountError::PasswordTooLong {
            max: MAX_PASSWORD_LEN,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_are_accepted() {
        for name in ["alice", "bob2", "home-assistant", "kid_1", "9lives"] {
            assert_eq!(validate_username(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn names_that_would_break_topics_are_refused() {
        for name in [
            "", "Alice", "a/b", "a+b", "#", "-x", "_x", "a b", "ålice", "$sys",
        ] {
            assert!(validate_username(name).is_err(), "{name:?} accepted");
        }
        assert!(validate_device_name(&"x".repeat(33)).is_err());
    }

    #[test]
    fn password_length_is_enforced() {
        assert!(validate_password("short").is_err());
        assert_eq!(validate_password("long enough pass"), Ok(()));
        assert!(validate_password(&"p".repeat(257)).is_err());
    }
}
