//! The Kubernetes client of the commands that talk to a cluster.

use std::path::Path;

use super::CliError;

/// A client from `--kubeconfig` (and `--context`), else from KUBECONFIG,
/// ~/.kube/config or the in-cluster service account.
pub(super) async fn client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<kube::Client, CliError> {
    kube::Client::try_from(config(kubeconfig, context).await?)
        .map_err(|e| CliError::runtime(format!("connecting to the cluster: {e}")))
}

/// The connection settings [`client`] uses.
pub(super) async fn config(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<kube::Config, CliError> {
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
    Ok(config)
}

/// The sync stage's access: the command's own identity, impersonating
/// `default_service_account` (or an automation's spec.serviceAccountName).
pub(super) async fn access(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    default_service_account: Option<String>,
) -> Result<crate::sync::ClusterAccess, CliError> {
    crate::sync::ClusterAccess::new(config(kubeconfig, context).await?, default_service_account)
        .map_err(|e| CliError::runtime(format!("connecting to the cluster: {e}")))
}
