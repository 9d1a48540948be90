//! `hoist policy eval -f FILE --tags FILE|- [--policy NS/NAME] [-o json]`

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::{CliError, Output, report_warnings};
use crate::api::ImagePolicy;
use crate::load::{self, Loaded, ObjectSet};
use crate::model::Tag;
use crate::policy::CompiledPolicy;
use crate::registry::Exclusions;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A file or directory with the ImagePolicy (repeatable).
    #[arg(short = 'f', long = "file", value_name = "PATH", required = true)]
    pub files: Vec<PathBuf>,
    /// The tags to choose from: a file, or `-` for stdin. One tag per line,
    /// a JSON array, or a registry's `tags/list` response.
    #[arg(long, value_name = "FILE|-")]
    pub tags: PathBuf,
    /// Which ImagePolicy, as NS/NAME (or NAME in `default`; NS:NAME, as
    /// markers spell it, is read too), when the files hold more than one.
    #[arg(long, value_name = "NS/NAME")]
    pub policy: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// `-o json`: stable, documented in the README.
#[derive(Debug, Serialize)]
struct EvalReport {
    /// `ns/name` of the policy.
    policy: String,
    /// The latest tag, or null when none qualifies.
    selected: Option<Tag>,
    /// Tags the policy ordered.
    candidates: usize,
    /// Tags the policy could not read (not a version or not a number).
    ignored: usize,
}

pub fn run(args: EvalArgs) -> Result<(), CliError> {
    let set = load::load(&args.files)?;
    report_warnings(&set);
    let policy = pick_policy(&set, args.policy.as_deref())?;
    let name = object_name(&policy.object);
    let compiled = CompiledPolicy::compile(&policy.object.spec).map_err(|e| {
        CliError::invalid(format!(
            "{}: ImagePolicy {name}: spec.{}: {e}",
            policy.origin,
            e.field()
        ))
    })?;
    if compiled.orders_by_build_time() {
        // The order is in the images, which a tag list does not carry.
        return Err(CliError::invalid(format!(
            "{}: ImagePolicy {name}: spec.policy.buildTime orders tags by their images' build times, which a list of tags does not have; use hoist scan",
            policy.origin
        )));
    }
    let exclusions = exclusions_for(&set, &policy.object)?;
    let tags: Vec<String> = read_tags(&args.tags)?
        .into_iter()
        .filter(|t| !exclusions.excludes(t))
        .collect();
    let selection = compiled.select(&tags);
    if args.output == Output::Json {
        let report = EvalReport {
            policy: name.clone(),
            selected: selection.tag.clone(),
            candidates: selection.candidates,
            ignored: selection.ignored,
        };
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::runtime(format!("encoding the report: {e}")))?;
        print(&format!("{json}\n"))?;
    }
    match selection.tag {
        Some(tag) => {
            if args.output == Output::Text {
                print(&format!("{tag}\n"))?;
            }
            Ok(())
        }
        None => Err(CliError::runtime(format!(
            "no tag qualifies for ImagePolicy {name}: of {} tags left after the exclusion list, {} were ordered and {} not readable by the policy",
            tags.len(),
            selection.candidates,
            selection.ignored
        ))
        .with_hint("check the range or filterTags.pattern against the tags, e.g. with `-o json`")),
    }
}

fn object_name(policy: &ImagePolicy) -> String {
    crate::model::ObjectKey::of(&policy.metadata).to_string()
}

fn pick_policy<'a>(
    set: &'a ObjectSet,
    wanted: Option<&str>,
) -> Result<&'a Loaded<ImagePolicy>, CliError> {
    let names = || {
        set.policies
            .iter()
            .map(|p| object_name(&p.object))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match wanted {
        Some(wanted) => {
            let wanted = match super::policy_key(wanted) {
                Some((namespace, name)) => format!("{namespace}/{name}"),
                None if !wanted.contains(['/', ':']) => format!("default/{wanted}"),
                None => {
                    return Err(CliError::invalid(format!(
                        "--policy {wanted:?}: expected NS/NAME (or NAME in default)"
                    )));
                }
            };
            set.policies
                .iter()
                .find(|p| object_name(&p.object) == wanted)
                .ok_or_else(|| {
                    CliError::invalid(format!(
                        "--policy {wanted}: no such ImagePolicy in the files"
                    ))
                    .with_hint(format!("the files hold: {}", names()))
                })
        }
        None => match set.policies.as_slice() {
            [one] => Ok(one),
            [] => Err(CliError::invalid("the files hold no ImagePolicy")
                .with_hint("pass the file that defines it with -f")),
            _ => Err(CliError::invalid("the files hold several ImagePolicies")
                .with_hint(format!("pick one with --policy NS/NAME: {}", names()))),
        },
    }
}

/// The exclusion list of the policy's ImageRepository when the files hold
/// it, the default list otherwise: the tags a scan would hand the policy.
fn exclusions_for(set: &ObjectSet, policy: &ImagePolicy) -> Result<Exclusions, CliError> {
    let reference = &policy.spec.image_repository_ref;
    let namespace = reference
        .namespace
        .as_deref()
        .unwrap_or(crate::model::namespace_of(&policy.metadata));
    let repository = set.repositories.iter().find(|r| {
        r.object.metadata.name.as_deref() == Some(reference.name.as_str())
            && r.object.metadata.namespace.as_deref() == Some(namespace)
    });
    match repository {
        Some(r) => Exclusions::of(&r.object.spec).map_err(|e| {
            CliError::invalid(format!(
                "{}: ImageRepository {namespace}/{}: spec.{e}",
                r.origin, reference.name
            ))
        }),
        None => Ok(Exclusions::default_list()),
    }
}

/// Reads tags from a file or stdin: a registry's `{"tags": [...]}`
/// response, a JSON array, or one tag per line (blank lines and `#`
/// comments skipped; no tag can start with `#`).
fn read_tags(source: &PathBuf) -> Result<Vec<String>, CliError> {
    let mut text = String::new();
    let shown = source.display();
    if source.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::invalid(format!("--tags -: reading stdin: {e}")))?;
    } else {
        text = std::fs::read_to_string(source)
            .map_err(|e| CliError::invalid(format!("--tags {shown}: {e}")))?;
    }
    parse_tags(&text).map_err(|e| CliError::invalid(format!("--tags {shown}: {e}")))
}

#[derive(serde::Deserialize)]
struct TagList {
    tags: Option<Vec<String>>,
}

/// Why a tags file could not be read as tags.
#[derive(Debug, thiserror::Error)]
enum TagsError {
    #[error("not a tags/list response ({{\"tags\": [...]}}): {0}")]
    TagList(serde_json::Error),
    #[error("not a JSON array of strings: {0}")]
    Array(serde_json::Error),
}

fn parse_tags(text: &str) -> Result<Vec<String>, TagsError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        let list: TagList = serde_json::from_str(text).map_err(TagsError::TagList)?;
        return Ok(list.tags.unwrap_or_default());
    }
    if trimmed.starts_with('[') {
        return serde_json::from_str(text).map_err(TagsError::Array);
    }
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| CliError::runtime(format!("writing to stdout: {e}")))
}

#[cfg(test)]
mod tests {
    use super::parse_tags;

    #[test]
    fn reads_three_tag_formats() {
        let want = vec!["1.0.0".to_string(), "latest".to_string()];
        assert_eq!(
            parse_tags("1.0.0\n\n  latest \n# comment\n").ok(),
            Some(want.clone())
        );
        assert_eq!(
            parse_tags(r#"["1.0.0", "latest"]"#).ok(),
            Some(want.clone())
        );
        assert_eq!(
            parse_tags("\u{feff}1.0.0\nlatest\n").ok(),
            Some(want.clone())
        );
        assert_eq!(
            parse_tags(r#"{"name": "app", "tags": ["1.0.0", "latest"]}"#).ok(),
            Some(want)
        );
        assert_eq!(
            parse_tags(r#"{"name": "app", "tags": null}"#).ok(),
            Some(vec![])
        );
        assert!(parse_tags("[1, 2]").is_err_and(|e| e.to_string().contains("array of strings")));
    }
}
