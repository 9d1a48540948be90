//! What a command says on stderr besides its logs: errors, warnings, hints
//! and notices. In text mode each is one `level: message` line, control
//! characters escaped; with `--log-format json` each is one JSON line in
//! the shape tracing's JSON logs have (`timestamp`, `level`, `fields` with
//! `message`), so that a CI job reads stderr as one stream of records.
//!
//! These are not filtered by `--log-level`: they are the command's answer,
//! not its diary.

use std::io::Write;
use std::sync::OnceLock;

use super::LogFormat;

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Set once, by `main`, before the command runs; text until then.
pub fn set_format(format: LogFormat) {
    let _ = FORMAT.set(format);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Info,
}

impl Level {
    fn text(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Info => "info",
        }
    }

    /// tracing's spelling, so both kinds of line parse alike.
    fn json(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warning => "WARN",
            Level::Info => "INFO",
        }
    }
}

/// The line for `message` (and its `hint`), without the newline.
pub fn line(format: LogFormat, level: Level, message: &str, hint: Option<&str>) -> String {
    match format {
        LogFormat::Text => {
            let mut line = format!("{}: {}", level.text(), super::printable(message));
            if let Some(hint) = hint {
                line.push_str(&format!("\nhint: {}", super::printable(hint)));
            }
            line
        }
        LogFormat::Json => {
            let mut fields = serde_json::json!({ "message": message });
            if let Some(hint) = hint {
                fields["hint"] = serde_json::json!(hint);
            }
            serde_json::json!({
                "timestamp": jiff::Timestamp::now().to_string(),
                "level": level.json(),
                "fields": fields,
            })
            .to_string()
        }
    }
}

fn emit(level: Level, message: &str, hint: Option<&str>) {
    let format = FORMAT.get().copied().unwrap_or(LogFormat::Text);
    let mut text = line(format, level, message, hint);
    text.push('\n');
    // Nothing to do if stderr is gone; one write keeps the lines whole
    // when threads print at once.
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

pub fn error(message: &str) {
    emit(Level::Error, message, None);
}

pub fn error_with_hint(message: &str, hint: Option<&str>) {
    emit(Level::Error, message, hint);
}

pub fn warning(message: &str) {
    emit(Level::Warning, message, None);
}

pub fn info(message: &str) {
    emit(Level::Info, message, None);
}

#[cfg(test)]
mod tests {
    use super::{Level, line};
    use crate::cli::LogFormat;

    #[test]
    fn text_lines_are_escaped_and_json_lines_parse() {
        assert_eq!(
            line(LogFormat::Text, Level::Error, "bad\x1b[31m", Some("fix it")),
            "error: bad\\x1b[31m\nhint: fix it"
        );
        let json = line(LogFormat::Json, Level::Warning, "two\nlines", Some("h"));
        assert!(!json.contains('\n'), "{json}");
        let value: serde_json::Value = match serde_json::from_str(&json) {
            Ok(v) => v,
            Err(e) => panic!("{json}: {e}"),
        };
        assert_eq!(value["level"], "WARN");
        assert_eq!(value["fields"]["message"], "two\nlines");
        assert_eq!(value["fields"]["hint"], "h");
        assert!(
            value["timestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
    }
}
