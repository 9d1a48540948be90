//! The gate at selection (`spec.verify`, `spec.platforms`) against a real
//! registry (Debian's docker-registry), with signatures and attestations
//! made by the real cosign (`scripts/cosign-tool`, pinned in
//! tests/cosign/go.mod): key pairs from `cosign generate-key-pair`, and
//! keyless-style certificates from a CA the test makes with openssl,
//! signed offline (`--certificate`, `--certificate-chain`,
//! `--tlog-upload=false`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::registry::{Auth, DockerRegistry, OCI_INDEX, OCI_MANIFEST, sha256};
use crate::support::{Run, files, hoist_env, repo_root};

/// The password cosign encrypts the test's private keys with.
const PASSWORD: &str = "test-only";
const ISSUER: &str = "https://token.actions.githubusercontent.com";
const SUBJECT: &str = "https://github.com/team/app/.github/workflows/release.yml@refs/heads/main";

/// cosign of `scripts/cosign-tool`, or None when it is not built and the
/// test may skip (outside CI).
fn cosign_binary() -> Option<PathBuf> {
    let out = Command::new(repo_root().join("scripts/cosign-tool"))
        .arg("bin")
        .output();
    let bin = match &out {
        Ok(o) if o.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("cosign")
        }
        _ => PathBuf::new(),
    };
    if bin.is_file() {
        return Some(bin);
    }
    let why = "cosign is not built (scripts/cosign-tool build)";
    assert!(!crate::support::required(), "{why}");
    eprintln!("skipping: {why}");
    None
}

/// cosign in `dir`, with no Sigstore network access asked for.
struct Cosign {
    bin: PathBuf,
    dir: PathBuf,
}

impl Cosign {
    fn run(&self, args: &[&str]) -> String {
        self.run_env(args, &[])
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = Command::new(&self.bin)
            .args(args)
            .envs(env.iter().copied())
            .current_dir(&self.dir)
            .env("COSIGN_PASSWORD", PASSWORD)
            .env("HOME", &self.dir)
            .env("TUF_ROOT", self.dir.join("tuf"))
            .env_remove("SIGSTORE_ROOT_FILE")
            .output()
            .unwrap_or_else(|e| panic!("running cosign: {e}"));
        assert!(
            out.status.success(),
            "cosign {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `cosign generate-key-pair` as PREFIX.key / PREFIX.pub.
    fn key_pair(&self, prefix: &str) -> String {
        self.run(&["generate-key-pair", "--output-key-prefix", prefix]);
        read(&self.dir.join(format!("{prefix}.pub")))
    }

    /// Signs `image` (NAME@DIGEST) with the key PREFIX.key, or with a
    /// certificate and chain.
    fn sign(&self, prefix: &str, image: &str, certificate: Option<(&str, &str)>) {
        let key = format!("{prefix}.key");
        let mut args = vec![
            "sign",
            "--key",
            &key,
            "--tlog-upload=false",
            "--allow-insecure-registry",
            "--yes",
        ];
        let cert_args;
        if let Some((cert, chain)) = certificate {
            cert_args = [
                format!("--certificate={cert}"),
                format!("--certificate-chain={chain}"),
            ];
            args.extend(cert_args.iter().map(String::as_str));
        }
        args.push(image);
        self.run(&args);
    }

    /// Attaches an in-toto attestation of `kind` (cosign's `--type`).
    fn attest(&self, prefix: &str, image: &str, kind: &str, predicate: &str) {
        let file = self.dir.join("predicate.json");
        std::fs::write(&file, predicate).unwrap_or_else(|e| panic!("{e}"));
        let key = format!("{prefix}.key");
        self.run(&[
            "attest",
            "--key",
            &key,
            "--type",
            kind,
            "--predicate",
            "predicate.json",
            "--tlog-upload=false",
            "--allow-insecure-registry",
            "--yes",
            image,
        ]);
    }
}

/// What the signing tests start from: a registry, and cosign in a
/// directory of its own holding the key pair `release`.
struct Signing {
    cosign: Cosign,
    registry: DockerRegistry,
    /// release.pub
    public: String,
    work: tempfile::TempDir,
}

fn signing() -> Option<Signing> {
    let bin = cosign_binary()?;
    let registry = DockerRegistry::start(Auth::None)?;
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cosign = Cosign {
        bin,
        dir: work.path().to_path_buf(),
    };
    let public = cosign.key_pair("release");
    Some(Signing {
        cosign,
        registry,
        public,
        work,
    })
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// openssl in `dir`; ext.cnf's leaf section reads SUBJECT and ISSUER.
fn openssl(dir: &Path, args: &[&str]) {
    openssl_for(dir, SUBJECT, args);
}

fn openssl_for(dir: &Path, subject: &str, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .env("SUBJECT", subject)
        .env("ISSUER", ISSUER)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running openssl: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The extensions of a Fulcio-like CA and its signing certificates.
const EXTENSIONS: &str = "[root]
basicConstraints=critical,CA:true
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
[intermediate]
basicConstraints=critical,CA:true,pathlen:0
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
[leaf]
basicConstraints=critical,CA:false
keyUsage=critical,digitalSignature
extendedKeyUsage=codeSigning
authorityKeyIdentifier=keyid
subjectAltName=critical,URI:${ENV::SUBJECT}
1.3.6.1.4.1.57264.1.8=ASN1:UTF8String:${ENV::ISSUER}
";

/// A CA (root and intermediate) in `dir`, as NAME-root.pem and
/// NAME-chain.pem (intermediate then root).
fn certificate_authority(dir: &Path, name: &str) {
    std::fs::write(dir.join("ext.cnf"), EXTENSIONS).unwrap_or_else(|e| panic!("{e}"));
    let root = format!("{name}-root");
    let inter = format!("{name}-intermediate");
    for key in [&root, &inter] {
        openssl(
            dir,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                &format!("{key}.key"),
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &format!("{root}.key"),
            "-subj",
            &format!("/CN={name} root"),
            "-out",
            &format!("{root}.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{root}.csr"),
            "-signkey",
            &format!("{root}.key"),
            "-days",
            "30",
            "-extfile",
            "ext.cnf",
            "-extensions",
            "root",
            "-out",
            &format!("{root}.pem"),
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &format!("{inter}.key"),
            "-subj",
            &format!("/CN={name} intermediate"),
            "-out",
            &format!("{inter}.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{inter}.csr"),
            "-CA",
            &format!("{root}.pem"),
            "-CAkey",
            &format!("{root}.key"),
            "-days",
            "30",
            "-extfile",
            "ext.cnf",
            "-extensions",
            "intermediate",
            "-out",
            &format!("{inter}.pem"),
        ],
    );
    let chain = read(&dir.join(format!("{inter}.pem"))) + &read(&dir.join(format!("{root}.pem")));
    std::fs::write(dir.join(format!("{name}-chain.pem")), chain).unwrap_or_else(|e| panic!("{e}"));
}

/// A signing certificate PREFIX.pem from CA `ca` for `subject`, valid
/// from now for `seconds` (not earlier: cosign checks the chain at its
/// start), its key imported into cosign as
/// PREFIX.key. Issued with `openssl ca`, which takes exact dates (Fulcio's
/// certificates live for ten minutes; cosign refuses to sign with an
/// expired one, so an expired signature is made by waiting).
fn signing_certificate(dir: &Path, ca: &str, prefix: &str, subject: &str, seconds: i64) {
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &format!("{prefix}.pkcs1.key"),
        ],
    );
    openssl(
        dir,
        &[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            &format!("{prefix}.pkcs1.key"),
            "-out",
            &format!("{prefix}.pem.key"),
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &format!("{prefix}.pem.key"),
            "-subj",
            "/O=sigstore.dev",
            "-out",
            &format!("{prefix}.csr"),
        ],
    );
    let db = dir.join(format!("{ca}-db"));
    if !db.exists() {
        std::fs::create_dir_all(&db).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(db.join("index.txt"), "").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(db.join("serial"), "1000\n").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            dir.join(format!("{ca}-ca.cnf")),
            format!(
                "[ca]\ndefault_ca = signing\n[signing]\ndatabase = {ca}-db/index.txt\nnew_certs_dir = {ca}-db\nserial = {ca}-db/serial\ncertificate = {ca}-intermediate.pem\nprivate_key = {ca}-intermediate.key\ndefault_md = sha256\npolicy = any\nunique_subject = no\n[any]\norganizationName = optional\n"
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let date = |t: i64| {
        jiff::Timestamp::from_second(t)
            .unwrap_or_else(|e| panic!("{e}"))
            .strftime("%Y%m%d%H%M%SZ")
            .to_string()
    };
    openssl_for(
        dir,
        subject,
        &[
            "ca",
            "-batch",
            "-notext",
            "-config",
            &format!("{ca}-ca.cnf"),
            "-in",
            &format!("{prefix}.csr"),
            "-out",
            &format!("{prefix}.pem"),
            "-startdate",
            &date(now),
            "-enddate",
            &date(now + seconds),
            "-extfile",
            "ext.cnf",
            "-extensions",
            "leaf",
        ],
    );
}

fn import_key(cosign: &Cosign, prefix: &str) {
    cosign.run(&[
        "import-key-pair",
        "--key",
        &format!("{prefix}.pem.key"),
        "--output-key-prefix",
        prefix,
    ]);
}

fn objects(image: &str, policy_extra: &str, secrets: &[(&str, &str, &str)]) -> String {
    let mut text = format!(
        "apiVersion: hoist.dev/v1alpha1\nkind: ImageRepository\nmetadata: {{name: app, namespace: team}}\nspec: {{image: {image}, insecure: true, interval: 1h}}\n---\napiVersion: hoist.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: app, namespace: team}}\nspec:\n  imageRepositoryRef: {{name: app}}\n  policy: {{semver: {{range: '>=1.0.0'}}}}\n{policy_extra}"
    );
    for (name, key, value) in secrets {
        let indented: String = value.lines().map(|l| format!("    {l}\n")).collect();
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: team}}\nstringData:\n  {key}: |\n{indented}"
        ));
    }
    text
}

fn scan(dir: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "scan",
        "-f",
        "objects.yaml",
        "--state-dir",
        "state",
        "-o",
        "json",
    ];
    args.extend_from_slice(extra);
    let docker = dir.join("docker");
    let _ = std::fs::create_dir_all(&docker);
    let docker = docker.to_string_lossy().into_owned();
    hoist_env(
        dir,
        &args,
        &[("DOCKER_CONFIG", docker.as_str()), ("HOIST_LOG", "info")],
    )
}

fn row(run: &Run) -> serde_json::Value {
    let rows: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}\nstdout: {}\nstderr: {}", run.stdout, run.stderr));
    rows[0].clone()
}

/// (tag, reason) of each tag passed over.
fn passed_over(row: &serde_json::Value) -> Vec<(String, String)> {
    row["passedOver"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p["tag"].as_str().unwrap_or_default().to_string(),
                        p["reason"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Why the gate passed over the `i`th tag of a row.
fn passed_over_message(row: &serde_json::Value, i: usize) -> &str {
    row["passedOver"][i]["message"].as_str().unwrap_or_default()
}

/// Registry requests the scan logged.
fn requests(run: &Run) -> u64 {
    run.stderr
        .lines()
        .filter(|l| l.contains("scan finished"))
        .find_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("requests="))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("no request count in: {}", run.stderr))
}

/// Pushes a distinct single-platform image under `tag`; its digest.
fn push(registry: &DockerRegistry, tag: &str) -> String {
    let manifest = registry.image_manifest("team/app", OCI_MANIFEST, tag);
    registry.push_manifest("team/app", OCI_MANIFEST, &manifest, &[tag])
}

#[test]
fn key_signed_tags_pass_and_unsigned_or_replayed_signatures_are_passed_over() {
    let Some(Signing {
        cosign,
        registry,
        public,
        work: _work,
    }) = signing()
    else {
        return;
    };
    cosign.key_pair("other");
    let image = format!("{}/team/app", registry.addr);
    let d100 = push(&registry, "1.0.0");
    let d110 = push(&registry, "1.1.0");
    let d120 = push(&registry, "1.2.0");
    let d130 = push(&registry, "1.3.0");
    let d140 = push(&registry, "1.4.0");
    cosign.sign("release", &format!("{image}@{d100}"), None);
    cosign.sign("release", &format!("{image}@{d110}"), None);
    // 1.3.0 is signed, but by a key the policy does not trust.
    cosign.sign("other", &format!("{image}@{d130}"), None);
    // 1.4.0's signature tag holds 1.1.0's signature: a replay.
    let (sig_type, sig) = fetch(&registry, &format!("sha256-{}.sig", &d110[7..]));
    registry.push_manifest(
        "team/app",
        &sig_type,
        &sig,
        &[&format!("sha256-{}.sig", &d140[7..])],
    );

    let verify = "  verify:\n    provider: cosign\n    secretRef: {name: cosign-keys}\n";
    let dir = files(&[(
        "objects.yaml",
        &objects(&image, verify, &[("cosign-keys", "cosign.pub", &public)]),
    )]);
    let first = scan(dir.path(), &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let r = row(&first);
    assert_eq!(r["tag"], "1.1.0", "{r:#}");
    assert_eq!(r["digest"], d110.as_str());
    assert_eq!(r["verified"], "key Secret team/cosign-keys key cosign.pub");
    assert_eq!(
        passed_over(&r),
        [
            ("1.4.0".to_string(), "bad signature".to_string()),
            ("1.3.0".to_string(), "bad signature".to_string()),
            ("1.2.0".to_string(), "unsigned".to_string())
        ]
    );
    let messages: Vec<&str> = r["passedOver"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["message"].as_str())
        .collect();
    assert!(
        messages[0].contains(&format!("the signature is for {d110}")),
        "{messages:?}"
    );
    assert!(
        messages[1]
            .contains("does not verify with the key(s) Secret team/cosign-keys key cosign.pub"),
        "{messages:?}"
    );
    assert_eq!(
        d120,
        r["passedOver"][2]["digest"].as_str().unwrap_or_default()
    );
    eprintln!(
        "first scan, key verification of 4 candidates: {} requests",
        requests(&first)
    );

    // Steady state: the tags are the store's, the verdicts too.
    let steady = scan(dir.path(), &[]);
    assert_eq!(row(&steady), r);
    assert_eq!(requests(&steady), 0, "{}", steady.stderr);

    // 1.2.0 is signed later: the next registry scan adopts it, and looks
    // only at what it passed over before.
    cosign.sign("release", &format!("{image}@{d120}"), None);
    let refreshed = scan(dir.path(), &["--refresh"]);
    let r = row(&refreshed);
    assert_eq!(r["tag"], "1.2.0", "{r:#}");
    assert_eq!(passed_over(&r).len(), 2);

    // Text output names each tag passed over and who signed the latest.
    let text = hoist_env(
        dir.path(),
        &["scan", "-f", "objects.yaml", "--state-dir", "state"],
        &[("DOCKER_CONFIG", "docker")],
    );
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(
        text.stdout.contains("team/app: passed over 1.4.0 ("),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("team/app: 1.2.0 is signed by key Secret team/cosign-keys key cosign.pub"),
        "{}",
        text.stdout
    );
}

/// The manifest `reference` of team/app: (media type, bytes).
fn fetch(registry: &DockerRegistry, reference: &str) -> (String, Vec<u8>) {
    let agent = ureq::Agent::new_with_defaults();
    let mut response = agent
        .get(&format!(
            "http://{}/v2/team/app/manifests/{reference}",
            registry.addr
        ))
        .header("Accept", &format!("{OCI_MANIFEST}, {OCI_INDEX}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {reference}: {e}"));
    let media_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(OCI_MANIFEST)
        .to_string();
    let body = response
        .body_mut()
        .read_to_vec()
        .unwrap_or_else(|e| panic!("{e}"));
    (media_type, body)
}

#[test]
fn keyless_signatures_must_chain_to_the_trust_root_and_match_the_identity() {
    let Some(bin) = cosign_binary() else { return };
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let w = work.path();
    let cosign = Cosign {
        bin,
        dir: w.to_path_buf(),
    };
    certificate_authority(w, "fulcio");
    certificate_authority(w, "foreign");
    let hour = 3600;
    signing_certificate(w, "fulcio", "good", SUBJECT, hour);
    signing_certificate(
        w,
        "fulcio",
        "stranger",
        "https://github.com/mallory/app/.github/workflows/x.yml@refs/heads/main",
        hour,
    );
    signing_certificate(w, "fulcio", "expired", SUBJECT, 20);
    signing_certificate(w, "foreign", "foreign-leaf", SUBJECT, hour);
    let expires = std::time::Instant::now() + std::time::Duration::from_secs(21);
    for prefix in ["good", "stranger", "expired", "foreign-leaf"] {
        import_key(&cosign, prefix);
    }
    let image = format!("{}/team/app", registry.addr);
    let signed = [
        ("1.0.0", "good", "fulcio"),
        ("1.1.0", "stranger", "fulcio"),
        ("1.2.0", "expired", "fulcio"),
        ("1.3.0", "foreign-leaf", "foreign"),
    ];
    let mut digests = std::collections::HashMap::new();
    let mut signed_at = 0;
    for (tag, prefix, ca) in signed {
        let digest = push(&registry, tag);
        cosign.sign(
            prefix,
            &format!("{image}@{digest}"),
            Some((&format!("{prefix}.pem"), &format!("{ca}-chain.pem"))),
        );
        if prefix == "expired" {
            signed_at = jiff::Timestamp::now().as_second();
        }
        digests.insert(tag, digest);
    }
    let verify = format!(
        "  verify:\n    provider: cosign\n    trustRootRef: {{name: fulcio}}\n    matchOIDCIdentity:\n    - issuer: '^{}$'\n      subject: '^https://github.com/team/app/.github/workflows/release.yml@refs/heads/main$'\n",
        regex_escape(ISSUER)
    );
    // The expired certificate signed while it was valid; it is not now.
    std::thread::sleep(expires.saturating_duration_since(std::time::Instant::now()));
    let root = read(&w.join("fulcio-root.pem"));
    let dir = files(&[(
        "objects.yaml",
        &objects(&image, &verify, &[("fulcio", "ca.crt", &root)]),
    )]);
    let run = scan(dir.path(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = row(&run);
    assert_eq!(r["tag"], "1.0.0", "{r:#}");
    assert_eq!(r["verified"], format!("{SUBJECT} (issuer {ISSUER})"));
    assert_eq!(
        passed_over(&r),
        [
            ("1.3.0".to_string(), "untrusted certificate".to_string()),
            ("1.2.0".to_string(), "untrusted certificate".to_string()),
            ("1.1.0".to_string(), "identity mismatch".to_string())
        ]
    );
    let message = |i: usize| passed_over_message(&r, i).to_string();
    assert!(
        message(0).contains("issued by another CA"),
        "{}",
        message(0)
    );
    assert!(message(1).contains("it has expired"), "{}", message(1));
    assert!(
        message(2).contains("signed by https://github.com/mallory/app/"),
        "{}",
        message(2)
    );

    // With a Rekor in the trust root, a certificate counts at the time
    // Rekor logged its signature: 1.2.0's expired one was valid then. The
    // test plays Rekor: it logs 1.2.0's signature as a hashedrekord entry
    // and signs the entry's timestamp with its key, as Rekor's bundle has
    // it; the rest is cosign's own output.
    openssl(
        w,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "rekor.pkcs1.key",
        ],
    );
    openssl(
        w,
        &[
            "ec",
            "-in",
            "rekor.pkcs1.key",
            "-pubout",
            "-out",
            "rekor.pub",
        ],
    );
    add_bundle(&registry, w, &digests["1.2.0"], signed_at);
    let trust = format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: fulcio-rekor, namespace: team}}\nstringData:\n  ca.crt: |\n{}  rekor.pub: |\n{}",
        indent(&root),
        indent(&read(&w.join("rekor.pub")))
    );
    let dir = files(&[(
        "objects.yaml",
        &(objects(
            &image,
            &verify.replace("name: fulcio}", "name: fulcio-rekor}"),
            &[],
        ) + &trust),
    )]);
    let run = scan(dir.path(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = row(&run);
    assert_eq!(r["tag"], "1.2.0", "{r:#}");
    assert_eq!(
        passed_over(&r),
        [("1.3.0".to_string(), "untrusted certificate".to_string())]
    );
    assert!(
        passed_over_message(&r, 0).contains("no Rekor bundle"),
        "{r:#}"
    );
    // A bundle that logs another signature proves nothing: 1.2.0's bundle
    // copied onto 1.0.0's signature.
    copy_bundle(&registry, &digests["1.2.0"], &digests["1.0.0"]);
    let older = files(&[(
        "objects.yaml",
        &(objects(
            &image,
            &verify.replace("name: fulcio}", "name: fulcio-rekor}"),
            &[],
        )
        .replace("'>=1.0.0'", "'<1.2.0'")
            + &trust),
    )]);
    let run = scan(older.path(), &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let r = row(&run);
    assert_eq!(r["tag"], serde_json::Value::Null, "{r:#}");
    assert_eq!(
        r["passedOver"][1]["message"],
        "the Rekor bundle logs another signature, payload or certificate",
        "{r:#}"
    );

    // Keyless provenance under the Rekor: 1.0.0's attestation, by the
    // good certificate, logged as an intoto entry; 1.0.0's signature
    // logged again as its own.
    let provenance = r#"{"buildType":"https://example.com/build@v1","builder":{"id":"https://example.com/builder"},"invocation":{}}"#;
    std::fs::write(w.join("predicate.json"), provenance).unwrap_or_else(|e| panic!("{e}"));
    cosign.run(&[
        "attest",
        "--key",
        "good.key",
        "--certificate=good.pem",
        "--certificate-chain=fulcio-chain.pem",
        "--type",
        "slsaprovenance",
        "--predicate",
        "predicate.json",
        "--tlog-upload=false",
        "--allow-insecure-registry",
        "--yes",
        &format!("{image}@{}", digests["1.0.0"]),
    ]);
    let now = jiff::Timestamp::now().as_second();
    add_bundle(&registry, w, &digests["1.0.0"], now);
    add_attestation_bundle(&registry, w, &digests["1.0.0"], now);
    let attested = files(&[(
        "objects.yaml",
        &(objects(
            &image,
            &(verify.replace("name: fulcio}", "name: fulcio-rekor}")
                + "    attestations:\n    - predicateType: https://slsa.dev/provenance/v0.2\n"),
            &[],
        ) + &trust),
    )]);
    let run = scan(attested.path(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = row(&run);
    assert_eq!(r["tag"], "1.0.0", "{r:#}");
    // 1.2.0 is signed and logged, but has no provenance.
    assert!(
        passed_over(&r).contains(&("1.2.0".to_string(), "no provenance".to_string())),
        "{r:#}"
    );
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// The `.sig` manifest of `digest` as JSON.
fn signature_manifest(registry: &DockerRegistry, digest: &str) -> (String, serde_json::Value) {
    let tag = format!("sha256-{}.sig", &digest[7..]);
    let (_, bytes) = fetch(registry, &tag);
    let manifest = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"));
    (tag, manifest)
}

/// Logs the signature of `digest` in a Rekor of the test's (its key in
/// dir/rekor.pkcs1.key) at `at`, as cosign's bundle annotation.
fn add_bundle(registry: &DockerRegistry, dir: &Path, digest: &str, at: i64) {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let (tag, mut manifest) = signature_manifest(registry, digest);
    let layer = &manifest["layers"][0];
    let payload = blob(registry, layer["digest"].as_str().unwrap_or_default());
    let annotations = &layer["annotations"];
    let body = serde_json::json!({
        "apiVersion": "0.0.1", "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": &sha256(&payload)[7..]}},
            "signature": {
                "content": annotations["dev.cosignproject.cosign/signature"],
                "publicKey": {"content": b64(annotations["dev.sigstore.cosign/certificate"].as_str().unwrap_or_default().as_bytes())}
            }
        }
    });
    manifest["layers"][0]["annotations"]["dev.sigstore.cosign/bundle"] =
        rekor_bundle(dir, &body, at).into();
    registry.push_manifest(
        "team/app",
        OCI_MANIFEST,
        manifest.to_string().as_bytes(),
        &[&tag],
    );
}

/// As [`add_bundle`], for the attestation of `digest`: Rekor logs an
/// attestation as an `intoto` 0.0.2 entry over the whole envelope.
fn add_attestation_bundle(registry: &DockerRegistry, dir: &Path, digest: &str, at: i64) {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let tag = format!("sha256-{}.att", &digest[7..]);
    let (_, bytes) = fetch(registry, &tag);
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"));
    let layer = &manifest["layers"][0];
    let envelope_bytes = blob(registry, layer["digest"].as_str().unwrap_or_default());
    let envelope: serde_json::Value =
        serde_json::from_slice(&envelope_bytes).unwrap_or_else(|e| panic!("{e}"));
    let certificate = layer["annotations"]["dev.sigstore.cosign/certificate"]
        .as_str()
        .unwrap_or_default();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(envelope["payload"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    let body = serde_json::json!({
        "apiVersion": "0.0.2", "kind": "intoto",
        "spec": {"content": {
            "envelope": {
                "payloadType": envelope["payloadType"],
                "signatures": [{"sig": b64(envelope["signatures"][0]["sig"].as_str().unwrap_or_default().as_bytes()), "publicKey": b64(certificate.as_bytes())}]
            },
            "hash": {"algorithm": "sha256", "value": &sha256(&envelope_bytes)[7..]},
            "payloadHash": {"algorithm": "sha256", "value": &sha256(&payload)[7..]}
        }}
    });
    manifest["layers"][0]["annotations"]["dev.sigstore.cosign/bundle"] =
        rekor_bundle(dir, &body, at).into();
    registry.push_manifest(
        "team/app",
        OCI_MANIFEST,
        manifest.to_string().as_bytes(),
        &[&tag],
    );
}

/// A cosign bundle for the Rekor entry `body`, logged at `at`: the entry
/// timestamp signed with the test's Rekor key (dir/rekor.pkcs1.key).
fn rekor_bundle(dir: &Path, body: &serde_json::Value, at: i64) -> String {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let body = b64(body.to_string().as_bytes());
    let log_id = &sha256(b"test rekor")[7..];
    let canonical =
        format!(r#"{{"body":"{body}","integratedTime":{at},"logID":"{log_id}","logIndex":42}}"#);
    std::fs::write(dir.join("entry.json"), &canonical).unwrap_or_else(|e| panic!("{e}"));
    openssl(
        dir,
        &[
            "dgst",
            "-sha256",
            "-sign",
            "rekor.pkcs1.key",
            "-out",
            "entry.sig",
            "entry.json",
        ],
    );
    let set = std::fs::read(dir.join("entry.sig")).unwrap_or_else(|e| panic!("{e}"));
    serde_json::json!({
        "SignedEntryTimestamp": b64(&set),
        "Payload": {"body": body, "integratedTime": at, "logIndex": 42, "logID": log_id}
    })
    .to_string()
}

/// Puts the bundle of `from`'s signature on `to`'s.
fn copy_bundle(registry: &DockerRegistry, from: &str, to: &str) {
    let (_, source) = signature_manifest(registry, from);
    let (tag, mut manifest) = signature_manifest(registry, to);
    manifest["layers"][0]["annotations"]["dev.sigstore.cosign/bundle"] =
        source["layers"][0]["annotations"]["dev.sigstore.cosign/bundle"].clone();
    registry.push_manifest(
        "team/app",
        OCI_MANIFEST,
        manifest.to_string().as_bytes(),
        &[&tag],
    );
}

fn blob(registry: &DockerRegistry, digest: &str) -> Vec<u8> {
    let agent = ureq::Agent::new_with_defaults();
    agent
        .get(&format!(
            "http://{}/v2/team/app/blobs/{digest}",
            registry.addr
        ))
        .call()
        .unwrap_or_else(|e| panic!("GET {digest}: {e}"))
        .body_mut()
        .read_to_vec()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn regex_escape(text: &str) -> String {
    text.replace('.', "\\.")
}

#[test]
fn attestations_and_platforms_are_required_when_asked_for() {
    let Some(Signing {
        cosign,
        registry,
        public,
        work: _work,
    }) = signing()
    else {
        return;
    };
    let image = format!("{}/team/app", registry.addr);
    // 1.0.0: both platforms, signed, with provenance. 1.1.0: signed, no
    // provenance. 1.2.0: provenance, but amd64 only.
    let d100 = push_index(&registry, "1.0.0", &["amd64", "arm64"]);
    let d110 = push_index(&registry, "1.1.0", &["amd64", "arm64"]);
    let d120 = push_index(&registry, "1.2.0", &["amd64"]);
    let provenance = r#"{"buildType":"https://example.com/build@v1","builder":{"id":"https://example.com/builder"},"invocation":{}}"#;
    for digest in [&d100, &d110, &d120] {
        cosign.sign("release", &format!("{image}@{digest}"), None);
    }
    for digest in [&d100, &d120] {
        cosign.attest(
            "release",
            &format!("{image}@{digest}"),
            "slsaprovenance",
            provenance,
        );
    }
    let extra = "  platforms: [linux/amd64, linux/arm64]\n  verify:\n    provider: cosign\n    secretRef: {name: cosign-keys}\n    attestations:\n    - predicateType: https://slsa.dev/provenance/v0.2\n";
    let dir = files(&[(
        "objects.yaml",
        &objects(&image, extra, &[("cosign-keys", "cosign.pub", &public)]),
    )]);
    let run = scan(dir.path(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = row(&run);
    assert_eq!(r["tag"], "1.0.0", "{r:#}");
    assert_eq!(
        passed_over(&r),
        [
            ("1.2.0".to_string(), "missing platform".to_string()),
            ("1.1.0".to_string(), "no provenance".to_string())
        ]
    );
    assert_eq!(
        r["passedOver"][0]["message"],
        "no linux/arm64 image (it has linux/amd64)"
    );
    assert!(
        passed_over_message(&r, 1)
            .contains("no verified attestation of https://slsa.dev/provenance/v0.2"),
        "{r:#}"
    );
}

/// An index of one image per architecture under `tag`; its digest.
fn push_index(registry: &DockerRegistry, tag: &str, architectures: &[&str]) -> String {
    let entries: Vec<String> = architectures
        .iter()
        .map(|arch| {
            let config = format!(r#"{{"architecture":"{arch}","os":"linux","created":"2026-01-01T00:00:00Z","seed":"{tag}"}}"#);
            let config_digest = registry.push_blob("team/app", config.as_bytes());
            let layer = format!("layer {tag} {arch}");
            let layer_digest = registry.push_blob("team/app", layer.as_bytes());
            let manifest = format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{}}}]}}"#,
                config.len(),
                layer.len()
            );
            // Pushed by digest, untagged, as an index's images are.
            let digest = sha256(manifest.as_bytes());
            registry.push_manifest("team/app", OCI_MANIFEST, manifest.as_bytes(), &[&digest]);
            format!(
                r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{digest}","size":{},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#,
                manifest.len()
            )
        })
        .collect();
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        entries.join(",")
    );
    let digest = registry.push_manifest("team/app", OCI_INDEX, index.as_bytes(), &[tag]);
    assert_eq!(digest, sha256(index.as_bytes()));
    digest
}

/// Pushes an image built at `created` under `tag`; its digest.
fn push_built(registry: &DockerRegistry, tag: &str, created: &str, layer: &str) -> String {
    let config =
        format!(r#"{{"architecture":"amd64","os":"linux","created":"{created}","seed":"{tag}"}}"#);
    let config_digest = registry.push_blob("team/app", config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":5}}]}}"#,
        config.len()
    );
    registry.push_manifest("team/app", OCI_MANIFEST, manifest.as_bytes(), &[tag])
}

#[test]
fn sha_tags_are_ordered_by_build_time_read_once_per_digest() {
    let Some(registry) = DockerRegistry::start(Auth::None) else {
        return;
    };
    let layer = registry.push_blob("team/app", b"layer");
    // 500 git-SHA tags whose names say nothing of their order; the
    // newest build is tag number 337, and a dev- tag is newer still.
    let tags: Vec<String> = (0..500u32)
        .map(|n| format!("main-{}", &sha256(&n.to_le_bytes())[7..14]))
        .collect();
    for (n, tag) in tags.iter().enumerate() {
        let minute = (n * 7919) % 500;
        let minute = if n == 337 { 600 } else { minute };
        let created = jiff::Timestamp::from_second(1_780_000_000 + 60 * minute as i64)
            .unwrap_or_else(|e| panic!("{e}"))
            .to_string();
        push_built(&registry, tag, &created, &layer);
    }
    push_built(&registry, "dev-0000000", "2030-01-01T00:00:00Z", &layer);
    let image = format!("{}/team/app", registry.addr);
    let text = format!(
        "apiVersion: hoist.dev/v1alpha1\nkind: ImageRepository\nmetadata: {{name: app, namespace: team}}\nspec: {{image: {image}, insecure: true, interval: 1s}}\n---\napiVersion: hoist.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: app, namespace: team}}\nspec:\n  imageRepositoryRef: {{name: app}}\n  filterTags: {{pattern: '^main-[0-9a-f]{{7}}$'}}\n  policy: {{buildTime: {{order: asc}}}}\n"
    );
    let dir = files(&[("objects.yaml", &text)]);
    let first = scan(dir.path(), &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let r = row(&first);
    assert_eq!(r["tag"], tags[337].as_str(), "{r:#}");
    let first_requests = requests(&first);
    // A listing, then one manifest and one config per tag.
    assert!((1001..=1005).contains(&first_requests), "{first_requests}");
    // The interval (1s) has passed: the tags are listed again, and
    // nothing else is read.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let steady = scan(dir.path(), &[]);
    assert_eq!(row(&steady)["tag"], tags[337].as_str());
    let steady_requests = requests(&steady);
    assert!(steady_requests <= 2, "{steady_requests}");
    eprintln!(
        "buildTime over 500 tags: first scan {first_requests} requests, steady state {steady_requests}"
    );

    // With minimumAge, a build pushed just now waits, and says so.
    push_built(&registry, "main-fffffff", "2031-01-01T00:00:00Z", &layer);
    std::fs::write(
        dir.path().join("objects.yaml"),
        text.replace(
            "  policy: {buildTime",
            "  minimumAge: 1h\n  policy: {buildTime",
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = row(&scan(dir.path(), &[]));
    assert_eq!(r["tag"], tags[337].as_str(), "{r:#}");
    assert_eq!(r["waiting"]["tag"], "main-fffffff", "{r:#}");
}

#[test]
fn referrer_signatures_count_the_signed_newest_is_adopted_and_a_tampered_payload_is_not() {
    let Some(Signing {
        cosign,
        registry,
        public,
        work: _work,
    }) = signing()
    else {
        return;
    };
    let image = format!("{}/team/app", registry.addr);
    push(&registry, "2.1.0");
    let signed = push(&registry, "2.0.0");
    // cosign's OCI 1.1 mode: a manifest whose subject is the image. This
    // registry has no referrers API, so cosign keeps the referrers index
    // under the tag sha256-<hex>, as the distribution spec says.
    cosign.run_env(
        &[
            "sign",
            "--key",
            "release.key",
            "--tlog-upload=false",
            "--allow-insecure-registry",
            "--registry-referrers-mode=oci-1-1",
            "--yes",
            &format!("{image}@{signed}"),
        ],
        &[("COSIGN_EXPERIMENTAL", "1")],
    );
    let (_, index) = fetch(&registry, &format!("sha256-{}", &signed[7..]));
    assert!(
        String::from_utf8_lossy(&index).contains("application/vnd.dev.cosign.artifact.sig.v1+json"),
        "{}",
        String::from_utf8_lossy(&index)
    );
    // And no legacy signature tag: only the referrer can vouch.
    let legacy = ureq::Agent::new_with_defaults()
        .head(&format!(
            "http://{}/v2/team/app/manifests/sha256-{}.sig",
            registry.addr,
            &signed[7..]
        ))
        .call();
    assert!(legacy.is_err(), "cosign wrote a .sig tag too");
    let verify = "  verify:\n    provider: cosign\n    secretRef: {name: cosign-keys}\n";
    let dir = files(&[(
        "objects.yaml",
        &objects(&image, verify, &[("cosign-keys", "cosign.pub", &public)]),
    )]);
    let run = scan(dir.path(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = row(&run);
    assert_eq!(r["tag"], "2.0.0", "{r:#}");
    assert_eq!(
        passed_over(&r),
        [("2.1.0".to_string(), "unsigned".to_string())]
    );

    // The newest signed: adopted, nothing passed over.
    let newest = r["passedOver"][0]["digest"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    cosign.sign("release", &format!("{image}@{newest}"), None);
    let run = scan(dir.path(), &["--refresh"]);
    let r = row(&run);
    assert_eq!(r["tag"], "2.1.0", "{r:#}");
    assert_eq!(r["passedOver"], serde_json::Value::Null, "{r:#}");

    // A tampered signature: 2.1.0's, its payload edited to name 2.2.0.
    let tampered = push(&registry, "2.2.0");
    let (_, mut manifest) = signature_manifest(&registry, &newest);
    let payload = blob(
        &registry,
        manifest["layers"][0]["digest"].as_str().unwrap_or_default(),
    );
    let edited = String::from_utf8_lossy(&payload).replace(&newest, &tampered);
    assert_ne!(edited.as_bytes(), payload.as_slice());
    let edited_digest = registry.push_blob("team/app", edited.as_bytes());
    manifest["layers"][0]["digest"] = edited_digest.into();
    manifest["layers"][0]["size"] = edited.len().into();
    registry.push_manifest(
        "team/app",
        OCI_MANIFEST,
        manifest.to_string().as_bytes(),
        &[&format!("sha256-{}.sig", &tampered[7..])],
    );
    let run = scan(dir.path(), &["--refresh"]);
    let r = row(&run);
    assert_eq!(r["tag"], "2.1.0", "{r:#}");
    assert_eq!(
        passed_over(&r),
        [("2.2.0".to_string(), "bad signature".to_string())]
    );
    assert!(
        passed_over_message(&r, 0).contains("does not verify"),
        "{r:#}"
    );
}

/// `hoist controller` on the test control plane, as deploy/'s
/// ServiceAccount: the policy reads `verify`'s Secret in its own
/// namespace, selects the signed tag, and says so in `Verified`,
/// `status.passedOver` and `latestRef.digest`.
#[test]
fn the_controller_writes_the_verified_condition_and_the_tags_passed_over() {
    use crate::support::cluster;
    use crate::support::controller::Running;
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let Some(Signing {
        cosign,
        registry,
        public,
        work,
    }) = signing()
    else {
        return;
    };
    let image = format!("{}/team/app", registry.addr);
    let signed = push(&registry, "1.0.0");
    push(&registry, "1.1.0");
    cosign.sign("release", &format!("{image}@{signed}"), None);
    let ns = cluster.namespace("verify");
    // Installs deploy/ (CRDs, RBAC) once, as a user would.
    let kubeconfig = cluster.controller_kubeconfig(work.path());
    let shard = serde_json::json!({"hoist.test/shard": ns});
    cluster.apply(
        &serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "cosign-keys", "namespace": ns},
            "stringData": {"cosign.pub": public}})
        .to_string(),
    );
    cluster.apply(
        &serde_json::json!({"apiVersion": "hoist.dev/v1alpha1", "kind": "ImageRepository",
            "metadata": {"name": "app", "namespace": ns, "labels": shard},
            "spec": {"image": image, "interval": "1h", "insecure": true}})
        .to_string(),
    );
    cluster.apply(
        &serde_json::json!({"apiVersion": "hoist.dev/v1alpha1", "kind": "ImagePolicy",
            "metadata": {"name": "app", "namespace": ns, "labels": shard},
            "spec": {"imageRepositoryRef": {"name": "app"}, "policy": {"semver": {"range": "^1"}},
                "verify": {"provider": "cosign", "secretRef": {"name": "cosign-keys"}}}})
        .to_string(),
    );
    let mark = cluster.audit_mark();
    let selector = format!("hoist.test/shard={ns}");
    let mut controller = Running::start(&kubeconfig, &["--watch-label-selector", &selector]);
    let status = crate::support::wait_for(
        "the policy's Verified condition",
        std::time::Duration::from_secs(60),
        std::time::Duration::from_millis(200),
        || {
            let policy = cluster.get("imagepolicies.hoist.dev", &ns, "app")?;
            // Unknown until the repository is scanned and a tag verified.
            let (verified, _, _) = crate::support::condition(&policy, "Verified")?;
            (verified != "Unknown").then(|| policy["status"].clone())
        },
    );
    assert_eq!(status["latestRef"]["tag"], "1.0.0", "{status:#}");
    assert_eq!(status["latestRef"]["digest"], signed.as_str(), "{status:#}");
    assert_eq!(status["passedOver"][0]["tag"], "1.1.0", "{status:#}");
    assert_eq!(status["passedOver"][0]["reason"], "unsigned", "{status:#}");
    let policy = cluster
        .get("imagepolicies.hoist.dev", &ns, "app")
        .unwrap_or_default();
    let verified = crate::support::condition(&policy, "Verified");
    assert_eq!(
        verified.map(|(status, _, message)| (status, message)),
        Some((
            "True".to_string(),
            format!("1.0.0 ({signed}) is signed by key Secret {ns}/cosign-keys key cosign.pub")
        ))
    );
    assert_eq!(controller.stop(), Some(0));
    assert_eq!(
        crate::cluster_controller::forbidden(cluster, mark),
        Vec::<String>::new()
    );
}
