//! Stamps the git commit hoist is built from into `hoist --version`.
//!
//! `HOIST_GIT_COMMIT` wins (the Dockerfile passes it, having no `.git`);
//! otherwise `git rev-parse HEAD` in this checkout; otherwise "unknown".
//! Only the commit is read: nothing in the checkout runs.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=HOIST_GIT_COMMIT");
    let commit = match std::env::var("HOIST_GIT_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_string(),
        _ => from_checkout().unwrap_or_else(|| "unknown".to_string()),
    };
    // A commit id, a tag or "unknown": anything else (a newline would start
    // another cargo directive) is not stamped.
    let stampable = commit
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    let commit = if stampable {
        commit
    } else {
        "unknown".to_string()
    };
    println!("cargo:rustc-env=HOIST_GIT_COMMIT={commit}");
}

fn from_checkout() -> Option<String> {
    let dir = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(&dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--verify", "HEAD"])?;
    // Build again when HEAD moves: HEAD itself, the branch it names, and
    // packed-refs, where a branch's commit may live instead.
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    for name in ["HEAD", "packed-refs"].into_iter().chain(branch.as_deref()) {
        if let Some(path) = git(&["rev-parse", "--git-path", name]) {
            println!(
                "cargo:rerun-if-changed={}",
                Path::new(&dir).join(path).display()
            );
        }
    }
    Some(commit)
}
