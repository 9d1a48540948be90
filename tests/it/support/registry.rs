//! Debian's `docker-registry` (CNCF distribution 2.8), started on a free
//! loopback port for one test and killed when dropped, plus a pusher that
//! uploads images through the HTTP API (no Docker needed).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const BINARY: &str = "/usr/bin/docker-registry";

/// How clients must authenticate.
pub enum Auth {
    None,
    /// htpasswd Basic auth with one user.
    Basic {
        username: String,
        password: String,
    },
    /// Bearer tokens from an issuer in tests/support.
    Token {
        realm: String,
        certificate: PathBuf,
        signer: std::sync::Arc<super::token::Signer>,
    },
}

/// How the pusher authorizes itself.
enum Pusher {
    Anonymous,
    Basic(String),
    Token(std::sync::Arc<super::token::Signer>),
}

pub struct DockerRegistry {
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// Where it keeps blobs and manifests; a second registry may serve it.
    storage: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
    pusher: Pusher,
    agent: ureq::Agent,
}

/// Media types of what the pusher uploads.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

impl DockerRegistry {
    /// Starts a registry, or returns None when it is not installed and the
    /// test may skip (outside CI).
    pub fn start(auth: Auth) -> Option<DockerRegistry> {
        DockerRegistry::start_with(auth, "")
    }

    /// Starts a registry with `extra` appended to its configuration (a
    /// top-level YAML section such as `notifications:`).
    pub fn start_with(auth: Auth, extra: &str) -> Option<DockerRegistry> {
        if !std::path::Path::new(BINARY).exists() {
            assert!(
                !super::required(),
                "{BINARY} is missing: apt-get install docker-registry"
            );
            eprintln!("skipping: {BINARY} is not installed");
            return None;
        }
        for _ in 0..5 {
            if let Some(registry) = DockerRegistry::try_start(&auth, None, None, extra) {
                return Some(registry);
            }
        }
        panic!("docker-registry did not start");
    }

    /// A second registry over this one's storage, serving HTTPS with the
    /// given certificates and requiring client certificates signed by the
    /// same CA. Images are pushed through `self` (plain HTTP).
    pub fn tls_mirror(&self, tls: &TlsFiles) -> DockerRegistry {
        for _ in 0..5 {
            if let Some(registry) =
                DockerRegistry::try_start(&Auth::None, Some(&self.storage), Some(tls), "")
            {
                return registry;
            }
        }
        panic!("the TLS docker-registry did not start");
    }

    fn try_start(
        auth: &Auth,
        storage: Option<&std::path::Path>,
        tls: Option<&TlsFiles>,
        extra: &str,
    ) -> Option<DockerRegistry> {
        let dir = tempfile::tempdir().ok()?;
        let storage = storage.map_or_else(|| dir.path().join("data"), std::path::Path::to_path_buf);
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").ok()?;
            listener.local_addr().ok()?.port()
        };
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            storage.display()
        );
        if let Some(tls) = tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n    clientcas:\n      - {}\n",
                tls.server_cert.display(),
                tls.server_key.display(),
                tls.ca.display()
            ));
        }
        let pusher = match auth {
            Auth::None => Pusher::Anonymous,
            Auth::Basic { username, password } => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", username, password])
                    .output()
                    .ok()?;
                assert!(
                    out.status.success(),
                    "htpasswd failed (apt-get install apache2-utils)"
                );
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, &out.stdout).ok()?;
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: hoist-test\n    path: {}\n",
                    file.display()
                ));
                Pusher::Basic(basic(username, password))
            }
            Auth::Token {
                realm,
                certificate,
                signer,
            } => {
                config.push_str(&format!(
                    "auth:\n  token:\n    realm: {realm}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    super::token::SERVICE,
                    super::token::ISSUER,
                    certificate.display()
                ));
                Pusher::Token(std::sync::Arc::clone(signer))
            }
        };
        config.push_str(extra);
        let config_path: PathBuf = dir.path().join("config.yml");
        std::fs::write(&config_path, config).ok()?;
        let mut child = Command::new(BINARY)
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = child.try_wait() {
                return None; // lost the port race; try another
            }
            if agent.get(format!("http://{addr}/v2/")).call().is_ok() {
                return Some(DockerRegistry {
                    addr,
                    storage,
                    child,
                    _dir: dir,
                    pusher,
                    agent,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        None
    }

    fn request(
        &self,
        method: &str,
        url: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> (u16, Option<String>) {
        let url = if url.starts_with("http") {
            url.to_string()
        } else {
            format!("http://{}{url}", self.addr)
        };
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        match &self.pusher {
            Pusher::Anonymous => {}
            Pusher::Basic(header) => builder = builder.header("Authorization", header),
            Pusher::Token(signer) => {
                // /v2/NAME/(blobs|manifests)/...: grant push on NAME.
                let path = url.split("/v2/").nth(1).unwrap_or("");
                let name = path
                    .split("/blobs/")
                    .next()
                    .and_then(|p| p.split("/manifests/").next())
                    .unwrap_or("");
                let token = signer.token("pusher", &[format!("repository:{name}:pull,push")]);
                builder = builder.header("Authorization", format!("Bearer {token}"));
            }
        }
        if let Some(ct) = content_type {
            builder = builder.header("Content-Type", ct);
        }
        let request = builder
            .body(body.to_vec())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut response = self
            .agent
            .run(request)
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let location = response
            .headers()
            .get("Location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let status = response.status().as_u16();
        let _ = response.body_mut().read_to_vec();
        (status, location)
    }

    /// Uploads a blob and returns its digest.
    pub fn push_blob(&self, repository: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let (status, location) = self.request(
            "POST",
            &format!("/v2/{repository}/blobs/uploads/"),
            None,
            b"",
        );
        assert_eq!(status, 202, "starting a blob upload");
        let location = location.unwrap_or_else(|| panic!("no upload location"));
        let separator = if location.contains('?') { '&' } else { '?' };
        let (status, _) = self.request(
            "PUT",
            &format!("{location}{separator}digest={digest}"),
            Some("application/octet-stream"),
            bytes,
        );
        assert_eq!(status, 201, "finishing a blob upload");
        digest
    }

    /// Uploads a manifest under each tag; returns its digest.
    pub fn push_manifest(
        &self,
        repository: &str,
        media_type: &str,
        manifest: &[u8],
        tags: &[&str],
    ) -> String {
        for tag in tags {
            let (status, _) = self.request(
                "PUT",
                &format!("/v2/{repository}/manifests/{tag}"),
                Some(media_type),
                manifest,
            );
            assert_eq!(status, 201, "pushing {repository}:{tag}");
        }
        sha256(manifest)
    }

    /// An image manifest (OCI or Docker schema 2) with one layer, its
    /// blobs pushed. Returns (media type, manifest bytes).
    pub fn image_manifest(&self, repository: &str, media_type: &str, seed: &str) -> Vec<u8> {
        let (config_type, layer_type) = if media_type == OCI_MANIFEST {
            (
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.oci.image.layer.v1.tar",
            )
        } else {
            (
                "application/vnd.docker.container.image.v1+json",
                "application/vnd.docker.image.rootfs.diff.tar",
            )
        };
        let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#);
        let layer = format!("layer {seed}");
        let config_digest = self.push_blob(repository, config.as_bytes());
        let layer_digest = self.push_blob(repository, layer.as_bytes());
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{media_type}","config":{{"mediaType":"{config_type}","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"{layer_type}","digest":"{layer_digest}","size":{}}}]}}"#,
            config.len(),
            layer.len()
        )
        .into_bytes()
    }

    /// An index (OCI) or manifest list (Docker) over one pushed manifest.
    pub fn index_manifest(media_type: &str, child_type: &str, child: &[u8]) -> Vec<u8> {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{media_type}","manifests":[{{"mediaType":"{child_type}","digest":"{}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
            sha256(child),
            child.len()
        )
        .into_bytes()
    }

    /// Pushes one OCI image under all the tags; returns its digest.
    pub fn push_image(&self, repository: &str, tags: &[&str]) -> String {
        let manifest = self.image_manifest(repository, OCI_MANIFEST, repository);
        self.push_manifest(repository, OCI_MANIFEST, &manifest, tags)
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn basic(username: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    )
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all
/// made with the `openssl` command.
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsFiles {
    pub fn generate() -> TlsFiles {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = |name: &str| dir.path().join(name);
        let openssl = |args: &[&str]| {
            let status = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap_or_else(|e| panic!("openssl is required for TLS tests: {e}"));
            assert!(status.success(), "openssl {args:?} failed");
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=hoist-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ]);
        for (name, usage, cn) in [
            ("server", "serverAuth", "127.0.0.1"),
            ("client", "clientAuth", "hoist"),
        ] {
            let ext = format!("{name}.ext");
            let san = if name == "server" {
                "subjectAltName=IP:127.0.0.1\n"
            } else {
                ""
            };
            std::fs::write(
                p(&ext),
                format!("{san}basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n"),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                &ext,
                "-out",
                &format!("{name}.crt"),
            ]);
        }
        TlsFiles {
            ca: p("ca.crt"),
            server_cert: p("server.crt"),
            server_key: p("server.key"),
            client_cert: p("client.crt"),
            client_key: p("client.key"),
            _dir: dir,
        }
    }
}
