//! `hoist sync --path DIR [--prune] [--dry-run] [--wait] [--timeout D]
//! [--name NAME] [--kubeconfig FILE] [--context NAME] [--state-dir DIR] [-o json]`

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{CliError, Output};
use crate::store::{self, Store, SyncRecord};
use crate::sync::{self, Owner, SyncOptions, SyncReport};

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The directory to apply, read recursively (a directory with a
    /// kustomization.yaml is built with kustomize).
    #[arg(long, value_name = "DIR")]
    pub path: PathBuf,
    /// Delete what this sync applied before and is gone from DIR now.
    #[arg(long)]
    pub prune: bool,
    /// Ask the API server what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Wait for the applied workloads to become healthy.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits (Go duration).
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub timeout: String,
    /// The name this sync labels its objects with and keeps its inventory
    /// under: two syncs with different names never prune each other's.
    #[arg(long, value_name = "NAME", default_value = "hoist-sync")]
    pub name: String,
    /// The namespace for objects that name none.
    #[arg(long, short = 'n', value_name = "NS", default_value = "default")]
    pub namespace: String,
    /// The cluster to sync to [default: KUBECONFIG, else ~/.kube/config,
    /// or the in-cluster service account].
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Where hoist keeps the inventory [default: $XDG_STATE_HOME/hoist, else
    /// ~/.local/state/hoist].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

pub fn run(args: SyncArgs) -> Result<(), CliError> {
    let timeout: Duration = crate::api::GoDuration::new(args.timeout.as_str())
        .parse()
        .map_err(|e| CliError::invalid(format!("--timeout: {e}")))?;
    let source = sync::source::read(&args.path).map_err(|errors| {
        CliError::invalid(
            errors
                .iter()
                .map(|e| {
                    // The path itself, or a file under it.
                    let file = if e.file == args.path {
                        e.file.clone()
                    } else {
                        args.path.join(&e.file)
                    };
                    format!("{}: {}", file.display(), e.message)
                })
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(store::default_state_dir);
    let store = Store::open(&state_dir).map_err(|e| CliError::runtime(e.to_string()))?;
    let owner = Owner {
        namespace: args.namespace.clone(),
        name: args.name.clone(),
    };
    let key = format!("{}/{}", owner.namespace, owner.name);
    let previous = store
        .sync_record(&key)
        .map_err(|e| CliError::runtime(e.to_string()))?
        .unwrap_or_default();
    let options = SyncOptions {
        prune: args.prune,
        dry_run: args.dry_run,
        wait: args.wait.then_some(timeout),
        default_namespace: args.namespace.clone(),
    };
    let runtime = super::runtime()?;
    let report = runtime.block_on(async {
        let client =
            super::cluster::client(args.kubeconfig.as_deref(), args.context.as_deref()).await?;
        Ok::<SyncReport, CliError>(
            sync::sync(&client, source, &previous.inventory, &owner, &options).await,
        )
    })?;
    if !args.dry_run {
        let record = SyncRecord {
            revision: None,
            inventory: report.inventory.clone(),
        };
        store
            .put_sync_record(&key, &record)
            .map_err(|e| CliError::runtime(e.to_string()))?;
    }
    let text = match args.output {
        Output::Json => {
            let mut json = serde_json::to_string_pretty(&report)
                .map_err(|e| CliError::runtime(e.to_string()))?;
            json.push('\n');
            json
        }
        Output::Text => describe(&report, args.dry_run),
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| CliError::runtime(format!("writing to stdout: {e}")))?;
    match report.error {
        Some(error) => Err(CliError::runtime(error)),
        None => Ok(()),
    }
}

fn describe(report: &SyncReport, dry_run: bool) -> String {
    let suffix = if dry_run { " (dry run)" } else { "" };
    let mut text = String::new();
    for a in &report.applied {
        text.push_str(&format!("{} {}{suffix}\n", a.object, a.action));
    }
    for p in &report.pruned {
        text.push_str(&format!("{p} pruned{suffix}\n"));
    }
    for k in &report.kept {
        text.push_str(&format!(
            "{k} kept: not applied by this sync, or hoist.dev/prune: disabled\n"
        ));
    }
    text
}
