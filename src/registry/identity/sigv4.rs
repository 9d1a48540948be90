//! AWS Signature Version 4, as ECR's API takes it: pure, so that it is
//! checked against the test vectors AWS publishes.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// An AWS access key: long-lived (the environment) or a session's (STS,
/// the container endpoint, the instance metadata service).
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for AccessKey {
    // The id names the key; the secret and the session token never show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessKey({}, <redacted>)", self.id)
    }
}

/// A request to sign. `path` is already a normalized absolute path;
/// `query` and `headers` are as they will be sent.
pub struct Request<'a> {
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub query: &'a [(&'a str, &'a str)],
    /// Headers sent besides `host` and `x-amz-date`, which are signed too.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// Where a signature is valid: `20150830/us-east-1/service/aws4_request`.
pub struct Scope<'a> {
    pub region: &'a str,
    pub service: &'a str,
    /// `YYYYMMDDTHHMMSSZ`, UTC.
    pub amz_date: &'a str,
}

/// The headers to add to `request`: `x-amz-date`, `x-amz-security-token`
/// for a session's key, and `authorization`.
pub fn sign(key: &AccessKey, scope: &Scope, request: &Request) -> Vec<(String, String)> {
    let mut added = vec![("x-amz-date".to_string(), scope.amz_date.to_string())];
    if let Some(token) = &key.session_token {
        added.push(("x-amz-security-token".to_string(), token.clone()));
    }
    let (canonical, signed_headers) = canonical_request(request, &added);
    let date = scope.amz_date.get(..8).unwrap_or(scope.amz_date);
    let credential_scope = format!("{date}/{}/{}/aws4_request", scope.region, scope.service);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{credential_scope}\n{}",
        scope.amz_date,
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut signing = hmac(format!("AWS4{}", key.secret).as_bytes(), date.as_bytes());
    for part in [scope.region, scope.service, "aws4_request"] {
        signing = hmac(&signing, part.as_bytes());
    }
    let signature = hex(&hmac(&signing, to_sign.as_bytes()));
    added.push((
        "authorization".to_string(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{credential_scope}, SignedHeaders={signed_headers}, Signature={signature}",
            key.id
        ),
    ));
    added
}

/// The canonical request and the signed header list.
fn canonical_request(request: &Request, added: &[(String, String)]) -> (String, String) {
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_string()))
        .chain(std::iter::once((
            "host".to_string(),
            request.host.to_string(),
        )))
        .chain(added.iter().cloned())
        .map(|(k, v)| (k, collapse_spaces(&v)))
        .collect();
    headers.sort();
    // Repeated headers are signed as one, values joined by commas.
    let mut merged: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (k, v) in headers {
        match merged.last_mut() {
            Some((last, values)) if *last == k => {
                values.push(',');
                values.push_str(&v);
            }
            _ => merged.push((k, v)),
        }
    }
    let signed: Vec<&str> = merged.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let mut query: Vec<(String, String)> = request
        .query
        .iter()
        .map(|(k, v)| (encode(k, true), encode(v, true)))
        .collect();
    query.sort();
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut canonical = format!(
        "{}\n{}\n{}\n",
        request.method,
        encode(request.path, false),
        query.join("&")
    );
    for (k, v) in &merged {
        canonical.push_str(&format!("{k}:{v}\n"));
    }
    canonical.push_str(&format!(
        "\n{signed}\n{}",
        hex(&Sha256::digest(request.body))
    ));
    (canonical, signed)
}

/// Trims a header value and folds runs of spaces into one, as the
/// canonical form asks.
fn collapse_spaces(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// URI-encodes every byte but the unreserved ones (and `/` in a path).
fn encode(text: &str, slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if !slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length; the error cannot happen.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `20150830T123600Z` for a time.
pub fn amz_date(at: jiff::Timestamp) -> String {
    at.strftime("%Y%m%dT%H%M%SZ").to_string()
}
