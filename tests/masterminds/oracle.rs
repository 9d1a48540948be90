//! Builds `tests/masterminds/main.go`, Flux's semver loop on
//! Masterminds/semver at the version tests/masterminds/go.mod pins (what
//! Flux's image-reflector-controller pins), from the Go module proxy. Shared
//! by the differential test and the benchmark through `#[path]`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the oracle into `work` and returns the binary's path, or why it
/// cannot be built here.
pub fn build(work: &Path) -> Result<PathBuf, String> {
    let go = Command::new("go").arg("version").output();
    if !go.is_ok_and(|o| o.status.success()) {
        return Err("`go` is not installed (Go 1.26 builds tests/masterminds)".to_string());
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/masterminds");
    let binary = work.join("masterminds");
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(&source)
        // go.sum pins the module; the build cache is Go's own, shared
        // with every other build of this machine.
        .env("GOFLAGS", "-mod=readonly")
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
