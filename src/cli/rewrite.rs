//! `hoist rewrite PATH --set NS/NAME=IMAGE[:TAG][@DIGEST]... [--dry-run] [--strict] [-o json]`

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::{CliError, Output};
use crate::api::ImageRef;
use crate::model::Change;
use crate::rewrite::{FileProblem, Refs, rewrite_tree};

#[derive(Debug, Args)]
pub struct RewriteArgs {
    /// The directory (or file) whose marked image fields to rewrite.
    pub path: PathBuf,
    /// A policy's latest ref: NS/NAME=IMAGE[:TAG][@DIGEST] (repeatable;
    /// NS:NAME, as markers spell it, is read too).
    #[arg(long = "set", value_name = "NS/NAME=REF", required = true)]
    pub set: Vec<String>,
    /// Print a unified diff and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Markers that do nothing are errors (exit 2), and then nothing is
    /// written.
    #[arg(long)]
    pub strict: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// `-o json`: stable, documented in the README.
#[derive(Serialize)]
struct Report<'a> {
    changes: &'a [Change],
    problems: &'a [FileProblem],
}

/// Why a `--set` value was refused; each names the whole value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    #[error("--set {0:?}: expected NS/NAME=IMAGE[:TAG][@DIGEST]")]
    Shape(String),
    #[error("--set {text:?}: {policy:?} is not NS/NAME (or NS:NAME)")]
    Policy { text: String, policy: String },
    #[error("--set {text:?}: {digest:?} is not a digest like sha256:<hex>")]
    Digest { text: String, digest: String },
    #[error("--set {text:?}: {reference:?} is not IMAGE[:TAG][@DIGEST]")]
    Reference { text: String, reference: String },
    #[error("--set {text:?}: {tag:?} is not a valid tag")]
    Tag { text: String, tag: String },
}

/// Parses `NS/NAME=IMAGE[:TAG][@DIGEST]` (or `NS:NAME=…`, as markers
/// spell the policy) into the policy key and its ref.
pub fn parse_set(text: &str) -> Result<(String, ImageRef), SetError> {
    let (policy, reference) = text
        .split_once('=')
        .ok_or_else(|| SetError::Shape(text.to_string()))?;
    let (namespace, name) = super::policy_key(policy).ok_or_else(|| SetError::Policy {
        text: text.to_string(),
        policy: policy.to_string(),
    })?;
    let (image_tag, digest) = match reference.split_once('@') {
        Some((rest, digest)) => {
            let valid = digest.split_once(':').is_some_and(|(alg, hex)| {
                !alg.is_empty() && !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit())
            });
            if !valid {
                return Err(SetError::Digest {
                    text: text.to_string(),
                    digest: digest.to_string(),
                });
            }
            (rest, Some(digest.to_string()))
        }
        None => (reference, None),
    };
    // The tag follows the last ':' after the last '/', so a registry port
    // (localhost:5000/app) is not read as one.
    let last_slash = image_tag.rfind('/').map_or(0, |i| i + 1);
    let (image, tag) = match image_tag[last_slash..].rfind(':') {
        Some(i) => (
            &image_tag[..last_slash + i],
            &image_tag[last_slash + i + 1..],
        ),
        None => (image_tag, ""),
    };
    if image.is_empty()
        || image.contains(char::is_whitespace)
        || (tag.is_empty() && image_tag.ends_with(':'))
    {
        return Err(SetError::Reference {
            text: text.to_string(),
            reference: reference.to_string(),
        });
    }
    // The distribution spec's tag grammar: [A-Za-z0-9_][A-Za-z0-9._-]{0,127}.
    let valid_tag = tag.len() <= 128
        && tag
            .bytes()
            .next()
            .is_none_or(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !valid_tag {
        return Err(SetError::Tag {
            text: text.to_string(),
            tag: tag.to_string(),
        });
    }
    Ok((
        format!("{namespace}/{name}"),
        ImageRef {
            name: image.to_string(),
            tag: tag.to_string(),
            digest,
        },
    ))
}

pub fn run(args: RewriteArgs) -> Result<(), CliError> {
    let mut refs = Refs::new();
    for set in &args.set {
        let (policy, reference) = parse_set(set).map_err(|e| CliError::invalid(e.to_string()))?;
        refs.insert(policy, reference);
    }
    let (root, only) = if args.path.is_file() {
        let parent = args.path.parent().map(PathBuf::from).unwrap_or_default();
        let parent = if parent.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            parent
        };
        (parent, args.path.file_name().map(PathBuf::from))
    } else {
        (args.path.clone(), None)
    };
    let rewrite = |dry_run| {
        rewrite_tree(&root, &refs, dry_run, only.as_deref())
            .map_err(|e| CliError::runtime(e.to_string()))
    };
    // Every path hoist prints, changes and problems in text and JSON alike,
    // names the file as the user does from here (`tree/apps/x.yaml` for
    // `hoist rewrite tree`), as `hoist run` names them from the
    // repository's root.
    let shown = |file: &std::path::Path| {
        if root == std::path::Path::new(".") {
            file.to_path_buf()
        } else {
            root.join(file)
        }
    };
    // Strict: a rehearsal first, so that a refused tree is left unwritten.
    if args.strict && !args.dry_run {
        let rehearsal = rewrite(true)?;
        if !rehearsal.problems.is_empty() {
            let problems: Vec<String> = rehearsal
                .problems
                .iter()
                .map(|p| p.located(&shown(std::path::Path::new(""))))
                .collect();
            return Err(CliError::invalid(problems.join("\n"))
                .with_hint("--strict makes warnings errors; nothing was written"));
        }
    }
    let mut result = rewrite(args.dry_run)?;
    for c in &mut result.changeset.changes {
        c.file = shown(&c.file);
    }
    for p in &mut result.problems {
        p.file = shown(&p.file);
    }
    for (file, _, _) in &mut result.files {
        *file = shown(file);
    }
    result
        .changeset
        .changes
        .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    let mut out = String::new();
    match args.output {
        Output::Json => {
            let report = Report {
                changes: &result.changeset.changes,
                problems: &result.problems,
            };
            out = serde_json::to_string_pretty(&report)
                .map_err(|e| CliError::runtime(e.to_string()))?;
            out.push('\n');
        }
        Output::Text if args.dry_run => {
            for (file, old, new) in &result.files {
                let name = file.display().to_string();
                let diff = similar::TextDiff::from_lines(old, new);
                out.push_str(
                    &diff
                        .unified_diff()
                        .context_radius(3)
                        .header(&format!("a/{name}"), &format!("b/{name}"))
                        .to_string(),
                );
            }
        }
        Output::Text => {
            for c in &result.changeset.changes {
                out.push_str(&format!(
                    "{}:{}: {}: {} -> {} ({})\n",
                    c.file.display(),
                    c.line,
                    c.object,
                    c.old,
                    c.new,
                    c.marker
                ));
            }
        }
    }
    std::io::stdout()
        .write_all(out.as_bytes())
        .map_err(|e| CliError::runtime(format!("writing to stdout: {e}")))?;
    for p in &result.problems {
        let message = p.located(std::path::Path::new(""));
        if p.error {
            super::diag::error(&message);
        } else {
            super::diag::warning(&message);
        }
    }
    if result.has_errors() {
        return Err(CliError::runtime(
            "some markers or files were not rewritten; see above",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_set;
    use crate::api::ImageRef;

    fn r(name: &str, tag: &str, digest: Option<&str>) -> ImageRef {
        ImageRef {
            name: name.into(),
            tag: tag.into(),
            digest: digest.map(str::to_string),
        }
    }

    #[test]
    fn parses_set_values() {
        assert_eq!(
            parse_set("ns:app=nginx:1.27"),
            Ok(("ns/app".into(), r("nginx", "1.27", None)))
        );
        assert_eq!(
            parse_set("flux-system:podinfo=localhost:5000/team/app:v1.2.3@sha256:abcd"),
            Ok((
                "flux-system/podinfo".into(),
                r("localhost:5000/team/app", "v1.2.3", Some("sha256:abcd"))
            ))
        );
        assert_eq!(
            parse_set("a:b=localhost:5000/app"),
            Ok(("a/b".into(), r("localhost:5000/app", "", None)))
        );
        assert_eq!(
            parse_set("a:b=ghcr.io/x@sha256:ff"),
            Ok(("a/b".into(), r("ghcr.io/x", "", Some("sha256:ff"))))
        );
        // The spelling the rest of the command line and the reports use.
        assert_eq!(
            parse_set("flux-system/podinfo=nginx:1.27"),
            Ok(("flux-system/podinfo".into(), r("nginx", "1.27", None)))
        );
        for bad in [
            "nope",
            "app=nginx:1",
            "a:b:c=nginx:1",
            "a/b/c=nginx:1",
            "a/b:c=nginx:1",
            "a:b=",
            "a:b=nginx:",
            "a:b=nginx@latest",
            ":b=x:1",
            "a:b=nginx:x,y",
            "a:b=nginx:-x",
        ] {
            assert!(parse_set(bad).is_err(), "{bad}");
        }
    }
}
