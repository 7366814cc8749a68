//! [`SecretString`]: a string that never shows up in logs.

use std::fmt;

/// A secret (API key, admin key, webhook secret) whose `Debug` and `Display`
/// print `[redacted]`. Read it with [`SecretString::expose`] at the one place
/// that needs the value.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretString(String);

// === impl SecretString ===

impl SecretString {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::SecretString;

    #[test]
    fn debug_and_display_redact_the_value() {
        let secret = SecretString::new("sk-live-123");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(secret.to_string(), "[redacted]");
        assert_eq!(secret.expose(), "sk-live-123");
    }
}
