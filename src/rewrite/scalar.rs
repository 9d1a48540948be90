//! Writing a new value into a scalar in the style it was written.

/// How the scalar was written in the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
}

/// The source text for `value` in `style`. A plain scalar stays plain
/// unless YAML would read the new value as something other than a string
/// (`1.10`, `true`, `null`, …) or it needs quoting; then it is double-quoted.
pub fn render(value: &str, style: Style) -> String {
    match style {
        Style::Plain if plain_is_safe(value) => value.to_string(),
        // Single quotes cannot hold line breaks or non-printable characters.
        Style::SingleQuoted
            if value
                .chars()
                .all(|c| printable(c) && c != '\n' && c != '\r' && c != '\t') =>
        {
            format!("'{}'", value.replace('\'', "''"))
        }
        Style::Plain | Style::SingleQuoted | Style::DoubleQuoted => double_quoted(value),
    }
}

/// YAML's printable set, without the line breaks and tab it also allows.
fn printable(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{7E}' | '\u{85}' | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
        && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{FEFF}')
}

fn double_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if !printable(c) && u32::from(c) <= 0xFFFF => {
                out.push_str(&format!("\\u{:04X}", u32::from(c)))
            }
            c if !printable(c) => out.push_str(&format!("\\U{:08X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `value` reads back as the same string when written plain, in
/// YAML 1.2 and in the YAML 1.1 that Kubernetes tooling still speaks.
pub fn plain_is_safe(value: &str) -> bool {
    if value.is_empty() || value != value.trim() {
        return false;
    }
    let first = value.chars().next().unwrap_or(' ');
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        // Indicators; `-`, `?` and `:` are fine when followed by a
        // non-space, but quoting them is simpler and always right.
        return false;
    }
    if value.contains(": ")
        || value.contains(" #")
        || value.ends_with(':')
        || value.contains('\t')
        || value.contains('\n')
    {
        return false;
    }
    !reads_as_non_string(value)
}

/// Values that YAML 1.1 or 1.2 resolve to null, booleans or numbers.
fn reads_as_non_string(value: &str) -> bool {
    const WORDS: &[&str] = &[
        "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", "yes",
        "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF", "y", "Y", "n", "N",
        ".inf", ".Inf", ".INF", "+.inf", "-.inf", "+.Inf", "-.Inf", "+.INF", "-.INF", ".nan",
        ".NaN", ".NAN",
    ];
    // `=` (YAML 1.1's value key) and `<<` (merge key) load as special.
    if WORDS.contains(&value) || value == "=" || value == "<<" {
        return true;
    }
    if is_date(value) {
        return true;
    }
    let unsigned = value.strip_prefix(['+', '-']).unwrap_or(value);
    let digits =
        |s: &str, radix: u32| !s.is_empty() && s.chars().all(|c| c.is_digit(radix) || c == '_');
    if let Some(hex) = unsigned.strip_prefix("0x") {
        return digits(hex, 16);
    }
    if let Some(oct) = unsigned.strip_prefix("0o") {
        return digits(oct, 8);
    }
    if let Some(bin) = unsigned.strip_prefix("0b") {
        return digits(bin, 2);
    }
    // Integers (incl. YAML 1.1 sexagesimal like 1:20) and floats.
    if digits(unsigned, 10) {
        return true;
    }
    // YAML 1.1 sexagesimal integers and floats: 1:20, 1:20.5.
    if unsigned.contains(':') {
        let mut parts: Vec<&str> = unsigned.split(':').collect();
        let last = parts.pop().unwrap_or("");
        let last_ok = digits(last, 10)
            || last
                .split_once('.')
                .is_some_and(|(i, f)| digits(i, 10) && f.chars().all(|c| c.is_ascii_digit()));
        if !parts.is_empty() && parts.iter().all(|p| digits(p, 10)) && last_ok {
            return true;
        }
    }
    is_float(unsigned)
}

/// YAML 1.1 timestamps: `2024-01-15`, `2024-1-5`, with an optional time.
fn is_date(s: &str) -> bool {
    let date = s.split(['T', 't', ' ']).next().unwrap_or(s);
    let parts: Vec<&str> = date.split('-').collect();
    matches!(parts.as_slice(), [y, m, d]
        if y.len() == 4 && (1..=2).contains(&m.len()) && (1..=2).contains(&d.len())
            && [y, m, d].iter().all(|p| p.chars().all(|c| c.is_ascii_digit())))
}

/// `1.10`, `.5`, `1.`, `1e3`, `1.5E-3`: what YAML's float patterns accept.
fn is_float(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |p: &str| p.chars().all(|c| c.is_ascii_digit() || c == '_');
    let mantissa_ok = (!int.is_empty() || !frac.is_empty()) && all_digits(int) && all_digits(frac);
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
    });
    mantissa_ok && exponent_ok && (mantissa.contains('.') || exponent.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values_that_would_change_type_are_quoted() {
        for v in [
            "1.10", "true", "null", "0x1F", "1e3", "yes", "no", "on", "off", "~", "10", "-1",
            "1_000", ".5", "1:20", "1.", "+1.5E-3", ".inf",
        ] {
            assert_eq!(render(v, Style::Plain), format!("\"{v}\""), "{v}");
        }
        for v in [
            "nginx:1.27.3",
            "ghcr.io/acme/app:v1.2.3@sha256:abc",
            "v1.10",
            "1.10.0",
            "sha256:0123",
            "latest",
            "1.0-alpine",
            "1e3x",
        ] {
            assert_eq!(render(v, Style::Plain), v, "{v}");
        }
    }

    #[test]
    fn quoted_styles_are_kept() {
        assert_eq!(render("it's", Style::SingleQuoted), "'it''s'");
        assert_eq!(render(r#"a"b\c"#, Style::DoubleQuoted), r#""a\"b\\c""#);
        assert_eq!(render("1.10", Style::SingleQuoted), "'1.10'");
        assert_eq!(render("x: y", Style::Plain), "\"x: y\"");
        assert_eq!(render("a\nb", Style::SingleQuoted), "\"a\\nb\"");
        assert_eq!(render("x\u{FFFE}", Style::DoubleQuoted), "\"x\\uFFFE\"");
        assert_eq!(render("2024-01-15-build", Style::Plain), "2024-01-15-build");
    }
}
