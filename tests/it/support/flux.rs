//! Flux's own tools, built by `scripts/flux-tools build`: its CLI and the
//! CRDs of its APIs.

use std::path::PathBuf;
use std::process::Command;

use super::{repo_root, required};

/// Where `scripts/flux-tools` put them.
pub struct FluxTools {
    /// The `flux` CLI.
    pub flux: PathBuf,
    /// The directory of Flux's CRDs, one file each.
    pub crds: PathBuf,
}

/// Flux's tools, or `None` (with a note why) when they are not built
/// outside CI. In CI they must be there: `.ci/run` builds them.
pub fn tools() -> Option<FluxTools> {
    let bin = Command::new(repo_root().join("scripts/flux-tools"))
        .arg("bin")
        .output()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let why = match bin {
        Ok(bin) if bin.join("flux").is_file() && bin.join("crds").is_dir() => {
            return Some(FluxTools {
                flux: bin.join("flux"),
                crds: bin.join("crds"),
            });
        }
        Ok(bin) => format!("{} has no flux and crds/", bin.display()),
        Err(e) => format!("running scripts/flux-tools: {e}"),
    };
    let why = format!("Flux's tools are not built (scripts/flux-tools build): {why}");
    if required() {
        panic!("{why}");
    }
    eprintln!("skipping: {why}");
    None
}

/// What one `flux` command printed, and whether it succeeded.
pub struct Flux {
    pub success: bool,
    pub output: String,
}

impl FluxTools {
    /// Runs `flux ARGS` against the cluster `kubeconfig` names.
    pub fn run(&self, kubeconfig: &std::path::Path, args: &[&str]) -> Flux {
        let out = Command::new(&self.flux)
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", self.flux.display()));
        Flux {
            success: out.status.success(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}
