//! `hoist run -f PATH... [--once] [--dry-run] [--state-dir DIR] [-o json]`

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::scan::ScanSession;
use super::{CliError, Output};
use crate::git::Git;
use crate::pipeline::{self, AutomationReport, RunOptions};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Files or directories with ImageRepositories, ImagePolicies and
    /// ImageUpdateAutomations (repeatable).
    #[arg(short = 'f', long = "file", value_name = "PATH", required = true)]
    pub files: Vec<PathBuf>,
    /// One pass, then exit. Without it hoist keeps running, waking for the
    /// shortest automation interval, until SIGTERM or Ctrl-C.
    #[arg(long)]
    pub once: bool,
    /// Print the diff each automation would commit; push nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Where hoist keeps its state and repository cache [default:
    /// $XDG_STATE_HOME/hoist, else ~/.local/state/hoist].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// The cluster `spec.sync` applies to [default: KUBECONFIG,
    /// ~/.kube/config, or the in-cluster service account]. Only read when
    /// an automation has `spec.sync`.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

pub fn run(args: RunArgs) -> Result<(), CliError> {
    let session = ScanSession::open(&args.files, args.state_dir.clone(), false, 8)?;
    let syncs = session
        .objects
        .automations
        .iter()
        .any(|a| a.object.spec.sync.is_some());
    let cluster = if syncs && !args.dry_run {
        Some(session.runtime.block_on(super::cluster::client(
            args.kubeconfig.as_deref(),
            args.context.as_deref(),
        ))?)
    } else {
        None
    };
    let options = RunOptions {
        cluster,
        now: None,
        dry_run: args.dry_run,
        cache: session.state_dir.join("git"),
        push_attempts: 3,
        runtime: Some(session.runtime.handle().clone()),
    };
    let git = Git::default();
    let interval = session
        .objects
        .automations
        .iter()
        .filter_map(|a| a.object.spec.interval.parse().ok())
        .min()
        .unwrap_or(Duration::from_secs(300))
        // A zero interval must not spin against registries and remotes.
        .max(Duration::from_secs(1));
    // Listen for SIGTERM and SIGINT from the start: one that arrives during
    // a pass is kept and honoured when the pass is done.
    let mut signals = if args.once {
        None
    } else {
        let _guard = session.runtime.enter();
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Some((term, int)),
            (Err(e), _) | (_, Err(e)) => {
                return Err(CliError::runtime(format!("listening for signals: {e}")));
            }
        }
    };
    loop {
        let outcome = pass(&session, &git, &options, args.output);
        let Some((term, int)) = signals.as_mut() else {
            return outcome;
        };
        if let Err(e) = &outcome {
            eprintln!("error: {e}");
        }
        // Sleep until the next pass, or stop on a signal.
        let stop = session.runtime.block_on(async {
            tokio::select! {
                _ = tokio::time::sleep(interval) => false,
                _ = term.recv() => true,
                _ = int.recv() => true,
            }
        });
        if stop {
            tracing::info!("stopping");
            return Ok(());
        }
    }
}

/// One pass: scan, then every automation.
fn pass(
    session: &ScanSession,
    git: &Git,
    options: &RunOptions,
    output: Output,
) -> Result<(), CliError> {
    let started = std::time::Instant::now();
    let scan = session.scan()?;
    let scan_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    for failure in &scan.failures {
        eprintln!("error: {failure}");
    }
    let mut reports =
        pipeline::run_automations(&session.objects, &scan, git, &session.store, options);
    for r in &mut reports {
        r.timings.scan_ms = scan_ms;
    }
    let text = match output {
        Output::Json => {
            let mut json = serde_json::to_string_pretty(&reports)
                .map_err(|e| CliError::runtime(e.to_string()))?;
            json.push('\n');
            json
        }
        Output::Text => reports.iter().map(describe).collect(),
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| CliError::runtime(format!("writing to stdout: {e}")))?;
    let failed: Vec<&AutomationReport> = reports.iter().filter(|r| r.error.is_some()).collect();
    if let Some(last) = failed.last() {
        for r in &failed[..failed.len() - 1] {
            eprintln!(
                "error: ImageUpdateAutomation {}: {}",
                r.automation,
                r.error.as_deref().unwrap_or("")
            );
        }
        return Err(CliError::runtime(format!(
            "ImageUpdateAutomation {}: {}",
            last.automation,
            last.error.as_deref().unwrap_or("")
        )));
    }
    if !scan.failures.is_empty() {
        return Err(CliError::runtime(format!(
            "{} repositories could not be scanned",
            scan.failures.len()
        )));
    }
    Ok(())
}

fn describe(r: &AutomationReport) -> String {
    let mut text = String::new();
    for w in &r.warnings {
        text.push_str(&format!("{}: warning: {w}\n", r.automation));
    }
    match (&r.error, &r.commit, &r.diff) {
        (Some(e), _, _) => text.push_str(&format!("{}: failed: {e}\n", r.automation)),
        (None, Some(commit), _) => text.push_str(&format!(
            "{}: pushed {} to {} ({} change{})\n",
            r.automation,
            &commit[..commit.len().min(12)],
            r.branch,
            r.changes.len(),
            if r.changes.len() == 1 { "" } else { "s" }
        )),
        (None, None, Some(diff)) => text.push_str(&format!(
            "{}: would commit {} change(s) to {}:\n{diff}",
            r.automation,
            r.changes.len(),
            r.branch
        )),
        (None, None, None) => text.push_str(&format!("{}: up to date\n", r.automation)),
    }
    if let Some(sync) = &r.sync {
        let changed = sync
            .report
            .applied
            .iter()
            .filter(|a| a.action != crate::sync::Action::Unchanged)
            .count();
        text.push_str(&format!(
            "{}: synced {}: {} object{}, {changed} changed, {} pruned\n",
            r.automation,
            &sync.revision[..sync.revision.len().min(12)],
            sync.report.applied.len(),
            if sync.report.applied.len() == 1 {
                ""
            } else {
                "s"
            },
            sync.report.pruned.len()
        ));
    }
    if let Some(pull) = &r.pull_request {
        text.push_str(&format!(
            "{}: pull request {} {}\n",
            r.automation, pull.pull_request, pull.action
        ));
    }
    text
}
