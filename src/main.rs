//! The `hoist` binary: parses flags, sets up logging, runs the command and
//! turns its failure into a message and an exit code (0 done, 1 runtime
//! failure or nothing matched, 2 invalid input).

use std::process::ExitCode;

use clap::Parser;
use hoist::cli::{self, Cli, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // Before any listener or client exists: the connection caps are sized
    // from the limit in force.
    hoist::serve::raise_open_files_limit();
    let cli = Cli::parse();
    cli::diag::set_format(cli.log_format);
    if let Err(e) = init_logging(&cli.log_level, cli.log_format) {
        cli::diag::error(&format!("{e:#}"));
        return ExitCode::from(2);
    }
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            cli::diag::error_with_hint(&e.to_string(), e.hint.as_deref());
            ExitCode::from(e.kind.exit_code())
        }
    }
}

fn init_logging(level: &str, format: LogFormat) -> anyhow::Result<()> {
    use anyhow::Context;
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => {
            EnvFilter::try_new(&directives).with_context(|| format!("RUST_LOG={directives:?}"))?
        }
        _ => EnvFilter::try_new(level)
            .with_context(|| format!("--log-level (or HOIST_LOG) {level:?}"))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: logs in files and CI stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    }
    .map_err(|e| anyhow::anyhow!(e))
}
