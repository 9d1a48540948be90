//! The command line: one file per subcommand. Each turns its raw flags into
//! checked values, calls the library, and reports failures as [`CliError`]s
//! that `main` turns into a message and an exit code.

mod cluster;
mod controller;
mod crds;
pub mod diag;
mod error;
mod policy_eval;
mod rewrite;
mod run;
mod scan;
mod sync;

use clap::{Parser, Subcommand, ValueEnum};

pub use error::{CliError, ErrorKind, printable};

/// hoist keeps container image tags in a GitOps repository current.
#[derive(Debug, Parser)]
// The version and the commit it was built from (build.rs), as an image's
// user reads them to know what runs.
#[command(
    name = "hoist",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("HOIST_GIT_COMMIT"), ")"),
    about,
    propagate_version = true
)]
pub struct Cli {
    /// Log level filter (error, warn, info, debug, trace, or a tracing
    /// directive such as `hoist=debug`). Overridden by RUST_LOG.
    #[arg(long, global = true, default_value = "warn", env = "HOIST_LOG")]
    pub log_level: String,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// A policy named on the command line: `NS/NAME`, the spelling reports
/// use, or `NS:NAME`, the spelling of markers, so that either can be
/// pasted. `None` when it is neither.
fn policy_key(text: &str) -> Option<(&str, &str)> {
    let (namespace, name) = text.split_once('/').or_else(|| text.split_once(':'))?;
    let part = |s: &str| !s.is_empty() && !s.contains(['/', ':']);
    (part(namespace) && part(name)).then_some((namespace, name))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Output format of commands that print results.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    #[default]
    Text,
    /// Stable JSON, documented in the README.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with ImagePolicies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Scan, select, rewrite, commit and push for every ImageUpdateAutomation.
    Run(run::RunArgs),
    /// Scan every ImageRepository and print every ImagePolicy's latest tag.
    Scan(scan::ScanArgs),
    /// Set the marked image fields under a path to the given refs.
    Rewrite(rewrite::RewriteArgs),
    /// Print the CustomResourceDefinitions as YAML.
    Crds(crds::CrdsArgs),
    /// Apply a directory to the cluster: server-side apply, prune, wait.
    Sync(sync::SyncArgs),
    /// Reconcile the objects in a cluster: scan, select, update, with
    /// results in their status.
    Controller(controller::ControllerArgs),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Select the latest tag of a list by an ImagePolicy.
    Eval(policy_eval::EvalArgs),
}

/// The async runtime of a command: two workers, with stacks deep enough to
/// load any document the parser accepts.
fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(crate::load::STACK_BYTES)
        .enable_all()
        .build()
        .map_err(|e| CliError::runtime(format!("starting the async runtime: {e}")))
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Policy(PolicyCommand::Eval(args)) => policy_eval::run(args),
        Command::Run(args) => run::run(args),
        Command::Scan(args) => scan::run(args),
        Command::Rewrite(args) => rewrite::run(args),
        Command::Crds(args) => crds::run(args),
        Command::Sync(args) => sync::run(args),
        Command::Controller(args) => controller::run(args),
    }
}

/// The loader's warnings about the objects named (`Kind ns/name`), as
/// `-o json` reports carry them beside the result they concern.
fn warnings_about(set: &crate::load::ObjectSet, objects: &[String]) -> Vec<String> {
    set.warnings
        .iter()
        .filter(|w| objects.contains(&w.object))
        .map(ToString::to_string)
        .collect()
}

/// Prints loader warnings the way every command shows them.
fn report_warnings(set: &crate::load::ObjectSet) {
    for warning in &set.warnings {
        diag::warning(&warning.to_string());
    }
}
