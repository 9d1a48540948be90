//! `hoist scan -f PATH... [--state-dir DIR] [--refresh] [--strict] [-o json]`

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::{CliError, Output, report_warnings};
use crate::load;
use crate::pipeline::{self, PipelineError, ScanOptions, TagFreshness};
use crate::registry::{DockerConfig, Registry, RegistrySettings};
use crate::store::{self, Store};

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Files or directories with ImageRepositories and ImagePolicies
    /// (repeatable).
    #[arg(short = 'f', long = "file", value_name = "PATH", required = true)]
    pub files: Vec<PathBuf>,
    /// Where hoist keeps its state [default: $XDG_STATE_HOME/hoist, else
    /// ~/.local/state/hoist].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Scan every repository now, even when its interval has not passed.
    #[arg(long)]
    pub refresh: bool,
    /// Repositories scanned at once.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub concurrency: usize,
    /// Refuse every ImagePolicy that reads an ImageRepository of another
    /// namespace, whatever its accessFrom says.
    #[arg(long)]
    pub no_cross_namespace_refs: bool,
    /// Warnings in the files (unknown or ignored fields) are errors: exit 2.
    #[arg(long)]
    pub strict: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// A row of `scan -o json`: the policy's latest ref, and the loader's
/// warnings about the policy and its repository.
#[derive(serde::Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    policy: &'a pipeline::PolicyRef,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

/// What a scan needs, set up from the command line: shared by `scan` and
/// `run`.
pub(super) struct ScanSession {
    pub objects: crate::load::ObjectSet,
    pub store: Store,
    pub state_dir: PathBuf,
    pub options: ScanOptions,
    pub runtime: tokio::runtime::Runtime,
    pub registry: Registry,
}

impl ScanSession {
    pub(super) fn open(
        files: &[PathBuf],
        state_dir: Option<PathBuf>,
        refresh: bool,
        concurrency: usize,
        refuse_cross_namespace: bool,
        strict: bool,
    ) -> Result<Self, CliError> {
        let objects = load::load(files)?;
        if strict && !objects.warnings.is_empty() {
            let warnings: Vec<String> = objects.warnings.iter().map(ToString::to_string).collect();
            return Err(CliError::invalid(warnings.join("\n"))
                .with_hint("--strict makes warnings errors: fix them, or drop --strict"));
        }
        report_warnings(&objects);
        pipeline::check_references(&objects)
            .and_then(|()| pipeline::check_access(&objects, refuse_cross_namespace))
            .map_err(|e| CliError::invalid(e.to_string()))?;
        let credentials = DockerConfig::from_environment().map_err(|e| {
            CliError::invalid(e.to_string())
                .with_hint("fix the file, or point DOCKER_CONFIG at another directory")
        })?;
        let state_dir = state_dir.unwrap_or_else(store::default_state_dir);
        load::refuse_state_directory(&objects, &state_dir)?;
        let store = Store::open(&state_dir).map_err(|e| CliError::runtime(e.to_string()))?;
        let runtime = super::runtime()?;
        Ok(ScanSession {
            objects,
            store,
            state_dir,
            options: ScanOptions {
                tags: if refresh {
                    TagFreshness::Refresh
                } else {
                    TagFreshness::WithinInterval
                },
                concurrency: concurrency.max(1),
                credentials: Arc::new(credentials),
                identities: Arc::new(crate::registry::identity::Identities::new(
                    crate::registry::identity::IdentityConfig::from_environment(),
                )),
                now: None,
                scanned_before: false,
                rescan: Default::default(),
                evidence: Default::default(),
            },
            runtime,
            registry: Registry::new(RegistrySettings::default()),
        })
    }

    pub(super) fn scan(&self) -> Result<pipeline::ScanReport, CliError> {
        self.scan_with(&Default::default())
    }

    /// A scan that also takes the `rescan` repositories (`ns/name`) from
    /// the registry, whatever their interval.
    pub(super) fn scan_with(
        &self,
        rescan: &std::collections::BTreeSet<String>,
    ) -> Result<pipeline::ScanReport, CliError> {
        // What the upstream environments ran healthy, as their repositories
        // say now, for the policies that promote from them.
        let evidence = self.runtime.block_on(pipeline::evidence::read_upstream(
            &self.objects,
            &crate::git::Git::default(),
            &self.state_dir.join("git"),
        ));
        let options = pipeline::ScanOptions {
            rescan: rescan.clone(),
            evidence,
            ..self.options.clone()
        };
        self.runtime
            .block_on(pipeline::scan(
                &self.objects,
                &self.registry,
                &self.store,
                &options,
            ))
            .map_err(|e| match e {
                PipelineError::MissingRepository { .. } | PipelineError::AccessDenied { .. } => {
                    CliError::invalid(e.to_string())
                }
                PipelineError::Store(e) => CliError::runtime(e.to_string()),
            })
    }
}

pub fn run(args: ScanArgs) -> Result<(), CliError> {
    let session = ScanSession::open(
        &args.files,
        args.state_dir.clone(),
        args.refresh,
        args.concurrency,
        args.no_cross_namespace_refs,
        args.strict,
    )?;
    let report = session.scan()?;
    let registry = &session.registry;
    let scanned = report
        .repositories
        .iter()
        .filter(|r| !r.cached && r.outcome.is_ok())
        .count();
    let cached = report.repositories.iter().filter(|r| r.cached).count();
    tracing::info!(
        scanned,
        cached,
        failed = report.repositories.len() - scanned - cached,
        requests = registry.requests(),
        "scan finished"
    );
    let text = match args.output {
        Output::Json => {
            let rows: Vec<Row<'_>> = report
                .policies
                .iter()
                .map(|policy| Row {
                    policy,
                    warnings: super::warnings_about(
                        &session.objects,
                        &[
                            format!("ImagePolicy {}", policy.policy),
                            format!("ImageRepository {}", policy.repository),
                        ],
                    ),
                })
                .collect();
            let mut json = serde_json::to_string_pretty(&rows)
                .map_err(|e| CliError::runtime(format!("encoding the report: {e}")))?;
            json.push('\n');
            json
        }
        Output::Text => table(&report.policies),
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| CliError::runtime(format!("writing to stdout: {e}")))?;
    // Each failure once on stderr, then the policies that select nothing
    // though nothing failed: "nothing matched" is exit 1 too.
    let mut errors: Vec<String> = report.failures.iter().map(ToString::to_string).collect();
    errors.extend(
        report
            .policies
            .iter()
            .filter(|r| r.tag.is_none() && r.error.is_none())
            .map(|r| match (&r.waiting, r.passed_over.first()) {
                (Some(w), _) => format!(
                    "ImagePolicy {}: no tag is old enough for minimumAge yet ({} waits)",
                    r.policy, w.tag
                ),
                (None, Some(first)) => format!(
                    "ImagePolicy {}: no tag passes spec.verify and spec.platforms ({} passed over; the newest, {}: {}: {})",
                    r.policy,
                    r.passed_over.len(),
                    first.tag,
                    first.reason,
                    first.message
                ),
                (None, None) => format!(
                    "ImagePolicy {}: no tag of {} fits the policy",
                    r.policy, r.tags
                ),
            }),
    );
    let Some(last) = errors.pop() else {
        return Ok(());
    };
    for e in &errors {
        super::diag::error(e);
    }
    Err(CliError::runtime(last))
}

/// `POLICY  IMAGE  LATEST  DIGEST  TAGS`, columns padded to their widest cell.
fn table(rows: &[pipeline::PolicyRef]) -> String {
    let mut cells = vec![["POLICY", "IMAGE", "LATEST", "DIGEST", "TAGS"].map(str::to_string)];
    for r in rows {
        cells.push([
            r.policy.clone(),
            r.image.clone(),
            r.tag
                .as_ref()
                .map_or_else(|| "-".to_string(), ToString::to_string),
            r.digest.clone().unwrap_or_else(|| "-".to_string()),
            r.tags.to_string(),
        ]);
    }
    let mut widths = [0usize; 5];
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 4 {
                    c.clone()
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    for r in rows {
        for p in &r.passed_over {
            out.push_str(&format!(
                "{}: passed over {} ({}): {}: {}\n",
                r.policy,
                p.tag,
                p.digest.as_deref().unwrap_or("no digest"),
                p.reason,
                p.message
            ));
        }
        if let (Some(tag), Some(signer)) = (&r.tag, &r.verified) {
            out.push_str(&format!("{}: {tag} is signed by {signer}\n", r.policy));
        }
        if let Some(waiting) = &r.waiting {
            let at = jiff::Timestamp::from_second(
                i64::try_from(waiting.eligible_at).unwrap_or(i64::MAX),
            )
            .map_or_else(|_| waiting.eligible_at.to_string(), |t| t.to_string());
            out.push_str(&format!(
                "{}: {} is waiting for minimumAge; eligible at {at}\n",
                r.policy, waiting.tag
            ));
        }
    }
    out
}
