//! The HTTP headers the registry protocol leans on: `WWW-Authenticate`
//! and `Link` (`Retry-After`, which the forges send too, is
//! [`crate::net`]'s). Pure parsing, tested on what real registries send.

/// One authentication challenge from a `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value and returns its Bearer challenge if
/// it has one, else its Basic challenge. `None` when there is neither or a
/// Bearer challenge lacks its realm.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let mut basic = false;
    let mut rest = header.trim();
    while !rest.is_empty() {
        let (scheme, after) = rest.split_once(' ').unwrap_or((rest, ""));
        let scheme = scheme.trim_matches(',');
        let (params, remainder) = parse_params(after);
        rest = remainder.trim_start_matches([',', ' ']);
        if scheme.eq_ignore_ascii_case("bearer") {
            let get = |k: &str| {
                params
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v.clone())
            };
            let realm = get("realm").filter(|r| !r.is_empty())?;
            return Some(Challenge::Bearer {
                realm,
                service: get("service"),
                scope: get("scope"),
            });
        }
        if scheme.eq_ignore_ascii_case("basic") {
            basic = true;
        }
    }
    basic.then_some(Challenge::Basic)
}

/// Reads `k=v, k="quoted \"v\""` pairs until a token that is not a pair
/// (the next challenge's scheme). Returns the pairs and the unread rest.
fn parse_params(mut s: &str) -> (Vec<(String, String)>, &str) {
    let mut params = Vec::new();
    loop {
        let trimmed = s.trim_start_matches([',', ' ']);
        let Some(eq) = trimmed.find('=') else {
            return (params, trimmed);
        };
        let name = &trimmed[..eq];
        if name.is_empty() || name.contains([' ', ',']) {
            return (params, trimmed);
        }
        let after = &trimmed[eq + 1..];
        let (value, rest) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    other => value.push(other),
                }
            }
            (value, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.push((name.to_string(), value));
        s = rest;
    }
}

/// The `rel="next"` target of a `Link` header, as written (relative or
/// absolute; the caller resolves it against the request URL).
pub fn next_link(header: &str) -> Option<&str> {
    // Targets are delimited by <...> and may themselves hold commas (opaque
    // cursors), so split on the brackets, not on commas.
    let mut rest = header;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let end = after.find('>')?;
        let target = &after[..end];
        let params_end = after[end + 1..]
            .find('<')
            .map_or(after.len(), |i| end + 1 + i);
        let params = &after[end + 1..params_end];
        let is_next = params.split(';').any(|p| {
            p.trim()
                .trim_end_matches(',')
                .split_once('=')
                .is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("rel")
                        && v.trim()
                            .trim_end_matches(',')
                            .trim_matches('"')
                            .split_whitespace()
                            .any(|r| r.eq_ignore_ascii_case("next"))
                })
        });
        if is_next {
            return Some(target);
        }
        rest = &after[params_end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_real_registries_send() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"bearer realm="https://ghcr.io/token", service="ghcr.io""#),
            Some(Challenge::Bearer {
                realm: "https://ghcr.io/token".into(),
                service: Some("ghcr.io".into()),
                scope: None,
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Basic"), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge(r#"Basic realm="x", Bearer realm="https://a/t",scope="a\"b""#),
            Some(Challenge::Bearer {
                realm: "https://a/t".into(),
                service: None,
                scope: Some("a\"b".into()),
            })
        );
        // A Bearer challenge without a realm cannot be answered.
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
        assert_eq!(parse_challenge(""), None);
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("garbage ===,,, \""), None);
    }

    #[test]
    fn next_links() {
        assert_eq!(
            next_link(r#"</v2/app/tags/list?n=2&last=b>; rel="next""#),
            Some("/v2/app/tags/list?n=2&last=b")
        );
        assert_eq!(
            next_link(r#"<https://r.example/v2/x?c=opaque%3D%3D>; rel=next"#),
            Some("https://r.example/v2/x?c=opaque%3D%3D")
        );
        assert_eq!(
            next_link(r#"</prev>; rel="prev", </next>; rel="next""#),
            Some("/next")
        );
        assert_eq!(next_link(r#"</prev>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
        assert_eq!(
            next_link(r#"</v2/x?last=a,b>; rel="next""#),
            Some("/v2/x?last=a,b")
        );
        assert_eq!(
            next_link(r#"</p?c=1,2>; rel="prev", </n?c=3,4>; rel="next""#),
            Some("/n?c=3,4")
        );
    }
}
