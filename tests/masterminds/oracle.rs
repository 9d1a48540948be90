//! Builds `tests/masterminds/main.go`, Flux's semver loop on
//! Masterminds/semver, from Debian's packages (`golang-go`,
//! `golang-github-masterminds-semver-dev`), offline. Shared by the
//! differential test and the benchmark through `#[path]`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian installs Go library sources.
const GOCODE: &str = "/usr/share/gocode/src/github.com/Masterminds/semver";

/// The Debian packages the oracle needs.
pub const PACKAGES: &str = "golang-go golang-github-masterminds-semver-dev";

/// Builds the oracle into `work` and returns the binary's path, or why it
/// cannot be built here.
pub fn build(work: &Path) -> Result<PathBuf, String> {
    let go = Command::new("go").arg("version").output();
    if !go.is_ok_and(|o| o.status.success()) {
        return Err(format!(
            "`go` is not installed (apt-get install {PACKAGES})"
        ));
    }
    if !Path::new(GOCODE).exists() {
        return Err(format!("{GOCODE} is missing (apt-get install {PACKAGES})"));
    }
    // Debian ships v3 without the `/v3` directory of its import path; a
    // GOPATH of our own with that directory linked in resolves it offline.
    let gopath = work.join("gopath");
    let link = gopath.join("src/github.com/Masterminds/semver/v3");
    if !link.exists() {
        let parent = link.parent().ok_or("no parent directory")?;
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        std::os::unix::fs::symlink(GOCODE, &link)
            .map_err(|e| format!("{}: {e}", link.display()))?;
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/masterminds");
    let binary = work.join("masterminds");
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(&source)
        .env("GOPATH", &gopath)
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("GOCACHE", work.join("gocache"))
        .output()
        .map_err(|e| format!("running go build: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "go build failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(binary)
}
