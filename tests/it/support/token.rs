//! A token issuer for registries configured with `auth: token`: it checks
//! Basic credentials and answers with an RS256-signed JWT whose header
//! carries its certificate (`x5c`), which the registry trusts through its
//! `rootcertbundle`. Keys come from the `openssl` command.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use super::http::{FakeServer, Reply, Request};

pub const ISSUER: &str = "hoist-test-issuer";
pub const SERVICE: &str = "hoist-test-registry";

/// Signs tokens; shared by the HTTP endpoint and the test's pusher.
pub struct Signer {
    key: PathBuf,
    certificate_der: Vec<u8>,
}

pub struct TokenIssuer {
    pub server: FakeServer,
    pub signer: Arc<Signer>,
    /// The PEM certificate to configure as the registry's rootcertbundle.
    pub certificate: PathBuf,
    _dir: tempfile::TempDir,
}

impl Signer {
    /// A JWT granting `actions` on each repository named in `scopes`
    /// (`repository:NAME:pull,push`).
    pub fn token(&self, subject: &str, scopes: &[String]) -> String {
        let access: Vec<serde_json::Value> = scopes
            .iter()
            .filter_map(|scope| {
                let mut parts = scope.splitn(3, ':');
                let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                Some(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
            })
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [STANDARD.encode(&self.certificate_der)]});
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + 300, "nbf": now - 10,
            "iat": now, "jti": format!("{now}-{}", scopes.len()), "access": access,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut child = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&self.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("openssl: {e}"));
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input.as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
        assert!(out.status.success(), "openssl dgst -sign failed");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(out.stdout))
    }
}

impl TokenIssuer {
    /// Starts an issuer that hands tokens to `username`/`password` only.
    pub fn start(username: &str, password: &str) -> TokenIssuer {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (key, certificate) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
        let made = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
            ])
            .arg(format!("/CN={ISSUER}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&certificate)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("openssl is required for token auth tests: {e}"));
        assert!(made.success(), "openssl req failed");
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&certificate)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(der.status.success(), "openssl x509 failed");
        let signer = Arc::new(Signer {
            key,
            certificate_der: der.stdout,
        });
        let expected = format!(
            "Basic {}",
            STANDARD.encode(format!("{username}:{password}"))
        );
        let issuing = Arc::clone(&signer);
        let server = FakeServer::start(move |request: &Request, _| {
            if request.path() != "/token" {
                return Reply::json(404, "{}");
            }
            if request.header("authorization") != Some(expected.as_str()) {
                return Reply::json(401, r#"{"details": "incorrect username or password"}"#);
            }
            let scopes: Vec<String> = url::form_urlencoded::parse(
                request
                    .target
                    .split_once('?')
                    .map_or("", |(_, q)| q)
                    .as_bytes(),
            )
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.into_owned())
            .collect();
            let token = issuing.token("tester", &scopes);
            Reply::json(
                200,
                &serde_json::json!({"token": token, "expires_in": 300}).to_string(),
            )
        });
        TokenIssuer {
            server,
            signer,
            certificate,
            _dir: dir,
        }
    }

    pub fn realm(&self) -> String {
        format!("http://{}/token", self.server.addr)
    }
}
