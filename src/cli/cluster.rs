//! The Kubernetes client of the commands that talk to a cluster.

use std::path::Path;

use super::CliError;

/// A client from `--kubeconfig` (and `--context`), else from KUBECONFIG,
/// ~/.kube/config or the in-cluster service account.
pub(super) async fn client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<kube::Client, CliError> {
    let choice = kube::config::KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| CliError::invalid(format!("--kubeconfig {}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &choice)
                .await
                .map_err(|e| CliError::invalid(format!("--kubeconfig {}: {e}", path.display())))?
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&choice)
            .await
            .map_err(|e| CliError::invalid(format!("--context: {e}")))?,
        None => kube::Config::infer()
            .await
            .map_err(|e| CliError::runtime(format!("finding the cluster: {e}")))?,
    };
    crate::install_crypto_provider();
    kube::Client::try_from(config)
        .map_err(|e| CliError::runtime(format!("connecting to the cluster: {e}")))
}
