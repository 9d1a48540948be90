//! Keeping secrets and terminal control out of what hoist prints.
//!
//! Text that a server sends back (a registry's error body, a forge's 422
//! message, a token endpoint's complaint, git's stderr) is not hoist's to
//! trust: it may echo the request, credentials included, and it may carry
//! escape sequences that forge `error:` lines or recolour a terminal. Every
//! such text passes through [`server_text`] with the [`Secrets`] hoist held
//! for that request before it reaches a log line, an error or `-o json`.

use base64::Engine as _;

/// How much of a server's text an error keeps: enough to diagnose, not
/// enough to flood a log or a status condition.
pub const SERVER_TEXT_LIMIT: usize = 1024;

/// What replaces a secret.
const MASK: &str = "***";

/// The secret values hoist holds for one request, to be scrubbed from
/// whatever the server answers.
#[derive(Clone, Default)]
pub struct Secrets {
    values: Vec<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} values)", self.values.len())
    }
}

impl Secrets {
    pub fn new() -> Secrets {
        Secrets::default()
    }

    /// Holds `value`, and the forms a server is likely to echo it in: as
    /// written inside a JSON string, and percent-encoded as in a URL.
    pub fn add(&mut self, value: &str) -> &mut Secrets {
        if value.is_empty() {
            return self;
        }
        self.push(value.to_string());
        if let Ok(json) = serde_json::to_string(value) {
            self.push(json[1..json.len() - 1].to_string());
        }
        self.push(url::form_urlencoded::byte_serialize(value.as_bytes()).collect());
        self
    }

    /// Holds a username and password sent as HTTP Basic: the password and
    /// the base64 value of the `Authorization` header.
    pub fn add_basic(&mut self, username: &str, password: &str) -> &mut Secrets {
        self.add(password);
        if !password.is_empty() {
            let basic =
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            self.add(&basic);
            // Unpadded and URL-safe spellings, which some servers echo.
            self.add(basic.trim_end_matches('='));
            let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(format!("{username}:{password}"));
            self.add(&url_safe);
        }
        self
    }

    /// Holds every secret of `other` too.
    pub fn extend(&mut self, other: &Secrets) -> &mut Secrets {
        for value in &other.values {
            self.push(value.clone());
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn push(&mut self, value: String) {
        if !value.is_empty() && !self.values.contains(&value) {
            self.values.push(value);
            // Longest first, so that a secret containing another is masked
            // whole rather than leaving its remainder.
            self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    /// `text` with every held secret replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for value in &self.values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), MASK);
            }
        }
        out
    }
}

/// `https://user:secret@host/x` → `https://host/x`, wherever a URL appears
/// in `text`. The userinfo may hold any character a URL's userinfo can
/// (quotes, `@`, `:`), so the authority runs to the first `/`, `?`, `#` or
/// whitespace, and the userinfo to the last `@` within it.
pub fn strip_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(userinfo) => out.push_str(&tail[userinfo + 1..end]),
            None => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// `text` with control characters written out (`\x1b`, `\r`, `\n`,
/// `\u{202e}`), so that what a server sends cannot start a new log line,
/// move the cursor, recolour the terminal or reorder what is shown. Tabs
/// stay.
pub fn escape_control(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\t' => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || (0x7f..0xa0).contains(&(c as u32)) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            // Bidirectional overrides and isolates (Trojan Source).
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// Text a server sent, made fit to print: secrets masked, userinfo
/// stripped, control characters escaped, and cut to
/// [`SERVER_TEXT_LIMIT`] bytes.
pub fn server_text(text: &str, secrets: &Secrets) -> String {
    let clean = escape_control(&strip_userinfo(&secrets.scrub(text)));
    if clean.len() <= SERVER_TEXT_LIMIT {
        return clean;
    }
    let mut cut = SERVER_TEXT_LIMIT;
    while !clean.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} more bytes)", &clean[..cut], clean.len() - cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_every_form_of_a_basic_credential() {
        let mut secrets = Secrets::new();
        secrets.add_basic("robot", "pa\"ss/wd");
        let basic = base64::engine::general_purpose::STANDARD.encode("robot:pa\"ss/wd");
        let echoed = format!(
            "{{\"error\":\"bad\",\"auth\":\"Basic {basic}\",\"p\":\"pa\\\"ss/wd\",\"q\":\"pa%22ss%2Fwd\"}}"
        );
        let clean = secrets.scrub(&echoed);
        assert!(!clean.contains(&basic), "{clean}");
        assert!(!clean.contains("pa\\\"ss/wd"), "{clean}");
        assert!(!clean.contains("pa%22ss%2Fwd"), "{clean}");
        assert!(clean.contains("Basic ***"), "{clean}");
    }

    #[test]
    fn scrubs_a_secret_containing_another_whole() {
        let mut secrets = Secrets::new();
        secrets.add("abc").add("xxabcxx");
        assert_eq!(secrets.scrub("token xxabcxx and abc"), "token *** and ***");
    }

    #[test]
    fn empty_secrets_change_nothing() {
        let mut secrets = Secrets::new();
        secrets.add("");
        assert!(secrets.is_empty());
        assert_eq!(secrets.scrub("as it was"), "as it was");
    }

    #[test]
    fn strips_userinfo_with_any_character() {
        for (text, want) in [
            (
                "fatal: unable to access 'https://u:p'w\"d@git.example/x.git/': 403",
                "fatal: unable to access 'https://git.example/x.git/': 403",
            ),
            (
                "push to https://u:p@ss@host:8443?x then",
                "push to https://host:8443?x then",
            ),
            (
                "ssh://git@host/repo and http://host/a",
                "ssh://host/repo and http://host/a",
            ),
            ("no url here", "no url here"),
        ] {
            assert_eq!(strip_userinfo(text), want);
        }
    }

    #[test]
    fn escapes_control_characters() {
        assert_eq!(
            escape_control("ok\n\x1b[31merror: forged\r\x07\u{9b}\u{202e}\tend"),
            "ok\\n\\x1b[31merror: forged\\r\\x07\\x9b\\u{202e}\tend"
        );
    }

    #[test]
    fn server_text_is_bounded_at_a_char_boundary() {
        let text = "é".repeat(SERVER_TEXT_LIMIT);
        let out = server_text(&text, &Secrets::new());
        assert!(out.len() < SERVER_TEXT_LIMIT + 40, "{}", out.len());
        assert!(out.ends_with("more bytes)"));
    }

    #[test]
    fn server_text_masks_before_cutting() {
        let mut secrets = Secrets::new();
        secrets.add("s3cret-token");
        let text = format!("{}s3cret-token", "x".repeat(SERVER_TEXT_LIMIT - 4));
        let out = server_text(&text, &secrets);
        assert!(!out.contains("s3cr"), "{out}");
    }
}
