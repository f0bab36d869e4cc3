//! Secrets (passwords, tokens, device keys) as values that cannot leak by accident.
//!
//! A [`Secret`] prints as `Secret(****abcd)` in `Debug`: only its last four characters, and only
//! when it is long enough for that not to give it away.

use std::fmt;

/// A secret string: redacted in `Debug`, never `Display`ed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for hashing or for showing it to its owner exactly once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The masked form, for logs.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.masked())
    }
}

/// Masks all but the last four characters; secrets shorter than 12 characters are masked whole.
pub fn mask(secret: &str) -> String {
    let count = secret.chars().count();
    if count < 12 {
        return "****".to_owned();
    }
    let tail: String = secret.chars().skip(count - 4).collect();
    format!("****{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_secrets_keep_only_their_last_four_characters() {
        assert_eq!(mask("plt_abcdefghijklmnop"), "****mnop");
    }

    #[test]
    fn short_secrets_are_masked_whole() {
        assert_eq!(mask("hunter2"), "****");
        assert_eq!(mask(""), "****");
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = Secret::new("correct horse battery staple");
        let shown = format!("{s:?}");
        assert!(!shown.contains("correct"), "{shown}");
        assert!(shown.ends_with("aple)"), "{shown}");
    }
}
