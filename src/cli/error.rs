use std::fmt;

use crate::load::LoadErrors;

/// An error or warning fit for the terminal: every control character
/// escaped but the line breaks. Text from servers (a registry's body, a
/// cluster's message, git's stderr) can reach an error by paths that have
/// not scrubbed it; escapes and carriage returns from there must not
/// recolour the terminal or overwrite what is shown, while hoist's own
/// multi-line messages keep their lines.
pub fn printable(text: &str) -> String {
    text.split('\n')
        .map(crate::redact::escape_control)
        .collect::<Vec<_>>()
        .join("\n")
}

/// How a command failed, which decides its exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad flags, bad YAML, an invalid object: fix the input. Exit 2.
    Invalid,
    /// A registry, git, forge or cluster failed, or nothing matched. Exit 1.
    Runtime,
}

impl ErrorKind {
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Invalid => 2,
            ErrorKind::Runtime => 1,
        }
    }
}

/// A failure as the user sees it: what went wrong and, where we can tell,
/// what to do about it.
#[derive(Debug, thiserror::Error)]
pub struct CliError {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: Option<String>,
}

impl CliError {
    pub fn invalid(message: impl Into<String>) -> Self {
        CliError {
            kind: ErrorKind::Invalid,
            message: message.into(),
            hint: None,
        }
    }

    pub fn runtime(message: impl Into<String>) -> Self {
        CliError {
            kind: ErrorKind::Runtime,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<LoadErrors> for CliError {
    fn from(e: LoadErrors) -> Self {
        // A warning (a misspelt field) is often why loading failed.
        for warning in &e.warnings {
            tracing::warn!("{warning}");
        }
        CliError::invalid(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn printable_escapes_control_characters_and_keeps_lines() {
        assert_eq!(
            super::printable("two lines:\n  \x1b[31mred\r\tkept"),
            "two lines:\n  \\x1b[31mred\\r\tkept"
        );
    }
}
