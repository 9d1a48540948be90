//! `hoist controller [--namespace NS] [--watch-label-selector SEL]
//! [--kubeconfig FILE] [--context NAME] [--state-dir DIR] [--leader-elect]`

use std::path::PathBuf;

use clap::Args;

use super::CliError;
use crate::controller::{self, LeaderElection, Options};

#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// Watch only this namespace [default: all namespaces].
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Reconcile only objects with these labels (`shard=a`), to split
    /// objects across hoist instances.
    #[arg(long, value_name = "SELECTOR")]
    pub watch_label_selector: Option<String>,
    /// A kubeconfig file [default: KUBECONFIG, ~/.kube/config, or the
    /// in-cluster service account].
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use [default: its current context].
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Where hoist keeps its store and repository cache.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/hoist")]
    pub state_dir: PathBuf,
    /// Run only while holding the Lease `--lease-name` in
    /// `--lease-namespace`, so that replicas stand by.
    #[arg(long)]
    pub leader_elect: bool,
    /// The Lease's namespace [default: POD_NAMESPACE, else hoist-system].
    #[arg(
        long,
        value_name = "NS",
        env = "POD_NAMESPACE",
        default_value = "hoist-system"
    )]
    pub lease_namespace: String,
    #[arg(long, value_name = "NAME", default_value = "hoist")]
    pub lease_name: String,
    /// Seconds a leader holds the lease without renewing it.
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    pub lease_duration: u64,
    /// This instance's name in the lease and in events [default: POD_NAME,
    /// else HOSTNAME].
    #[arg(long, value_name = "NAME")]
    pub identity: Option<String>,
    /// Where to serve /metrics, /healthz and /readyz (`off`: nowhere).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: String,
    /// Serve Receivers' webhooks on HOST:PORT [default: off].
    #[arg(long, value_name = "ADDR")]
    pub webhook_addr: Option<std::net::SocketAddr>,
    /// The ServiceAccount (of each automation's own namespace) that
    /// `spec.sync` runs as when `spec.serviceAccountName` is unset
    /// [default: the controller's own identity].
    ///
    /// With --object-level-identity it also locks registry identity down:
    /// an ImageRepository with a cloud provider and no serviceAccountName
    /// uses this ServiceAccount of its namespace, never hoist's own.
    #[arg(long, value_name = "NAME")]
    pub default_service_account: Option<String>,
    /// Let an ImageRepository with `provider: aws|gcp|azure` log in as its
    /// `spec.serviceAccountName` (Flux's ObjectLevelWorkloadIdentity): a
    /// token of that ServiceAccount from the TokenRequest API, traded at
    /// the cloud as its annotations say. Off, naming one is an error.
    #[arg(long)]
    pub object_level_identity: bool,
    /// Refuse every ImagePolicy that reads an ImageRepository of another
    /// namespace, whatever its accessFrom says.
    #[arg(long)]
    pub no_cross_namespace_refs: bool,
    /// Reconcile Flux's image.toolkit.fluxcd.io/v1 objects (with the
    /// GitRepositories they name) in place of Flux's image controllers,
    /// writing Flux's status fields, and serve Flux's Receivers that
    /// trigger only image objects; hoist.dev objects are not watched.
    #[arg(long)]
    pub flux: bool,
}

pub fn run(args: ControllerArgs) -> Result<(), CliError> {
    let runtime = super::runtime()?;
    let identity = args
        .identity
        .or_else(|| std::env::var("POD_NAME").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("hoist-{}", std::process::id()));
    let metrics_addr = match args.metrics_addr.as_str() {
        "" | "off" => None,
        addr => Some(addr.parse().map_err(|e| {
            CliError::invalid(format!(
                "--metrics-addr {addr:?}: {e}; give HOST:PORT or off"
            ))
        })?),
    };
    if let Some(name) = &args.default_service_account {
        crate::api::check_object_name(name).map_err(|why| {
            CliError::invalid(format!("--default-service-account {name:?}: {why}"))
        })?;
    }
    let options = |sync| Options {
        metrics_addr,
        webhook_addr: args.webhook_addr,
        namespace: args.namespace,
        label_selector: args.watch_label_selector,
        state_dir: args.state_dir,
        identity,
        leader_election: args.leader_elect.then(|| LeaderElection {
            namespace: args.lease_namespace,
            name: args.lease_name,
            duration: args.lease_duration.max(2),
        }),
        sync,
        no_cross_namespace_refs: args.no_cross_namespace_refs,
        flavor: if args.flux {
            controller::Flavor::Flux
        } else {
            controller::Flavor::Hoist
        },
        object_level_identity: args.object_level_identity,
    };
    let result = runtime.block_on(async {
        let access = super::cluster::access(
            args.kubeconfig.as_deref(),
            args.context.as_deref(),
            args.default_service_account,
        )
        .await?;
        controller::run(access.client().clone(), options(access))
            .await
            .map_err(|e| CliError::runtime(e.to_string()))
    });
    // A pipeline run blocked on git or a silent server must not hold the
    // exit: what it did not finish, the next start does again.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}
