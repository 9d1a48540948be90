use std::io::Write;

use clap::Args;
use kube::CustomResourceExt;

use super::CliError;
use crate::api::{Alert, ImagePolicy, ImageRepository, ImageUpdateAutomation, Provider, Receiver};

#[derive(Debug, Args)]
pub struct CrdsArgs {}

/// The CRDs of every kind, as one multi-document YAML text. `deploy/crds/`
/// holds exactly this; a test fails when they drift apart.
pub fn render() -> Result<String, CliError> {
    let crds = [
        ImageRepository::crd(),
        ImagePolicy::crd(),
        ImageUpdateAutomation::crd(),
        Receiver::crd(),
        Provider::crd(),
        Alert::crd(),
    ];
    let mut out = String::new();
    for crd in crds {
        let yaml = serde_saphyr::to_string(&crd)
            .map_err(|e| CliError::runtime(format!("rendering the CRDs: {e}")))?;
        out.push_str("---\n");
        out.push_str(&yaml);
    }
    Ok(out)
}

pub fn run(_: CrdsArgs) -> Result<(), CliError> {
    let yaml = render()?;
    std::io::stdout()
        .write_all(yaml.as_bytes())
        .map_err(|e| CliError::runtime(format!("writing to stdout: {e}")))
}
