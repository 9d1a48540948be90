//! Which files are read: the paths given, directories walked in name
//! order, and the state directory refused.

use super::*;

/// Reads every `.yaml` / `.yml` file under the given paths (a path named
/// explicitly is read whatever its name or type; `-` is stdin), in a stable
/// order, each file once.
pub fn load(paths: &[PathBuf]) -> Result<ObjectSet, LoadErrors> {
    let mut set = ObjectSet::default();
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            match std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
                Ok(_) => load_text(Path::new("<stdin>"), &text, true, &mut set, &mut errors),
                Err(source) => errors.push(LoadError::Io {
                    path: path.clone(),
                    source,
                }),
            }
            continue;
        }
        let mut files = Vec::new();
        if let Err(e) = collect_files(path, true, &mut files) {
            errors.push(e);
            continue;
        }
        for (file, explicit) in files {
            let identity = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
            if !seen.insert(identity) {
                continue;
            }
            match std::fs::read_to_string(&file) {
                Ok(text) => load_text(&file, &text, explicit, &mut set, &mut errors),
                Err(source) => errors.push(LoadError::Io { path: file, source }),
            }
        }
    }
    finish(&mut set, &mut errors);
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(LoadErrors {
            errors,
            warnings: set.warnings,
        })
    }
}

/// Lists the files under `path`, each with whether the user named it.
fn collect_files(
    path: &Path,
    explicit: bool,
    files: &mut Vec<(PathBuf, bool)>,
) -> Result<(), LoadError> {
    let io = |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = if explicit {
        std::fs::metadata(path).map_err(io)?
    } else {
        // Inside a directory, do not follow symlinks: a link can point out of
        // the tree or make a loop.
        std::fs::symlink_metadata(path).map_err(io)?
    };
    if meta.is_dir() {
        let mut entries = std::fs::read_dir(path)
            .map_err(io)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(io)?;
        entries.sort();
        for entry in entries {
            let hidden = entry
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if !hidden {
                collect_files(&entry, false, files)?;
            }
        }
    } else if explicit {
        // Named by the user: read it whatever it is (a pipe from `<(...)` too).
        files.push((path.to_path_buf(), true));
    } else if meta.is_file() && path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
        files.push((path.to_path_buf(), false));
    } else if meta.file_type().is_symlink() {
        tracing::debug!(path = %path.display(), "skipping a symlink inside a directory");
    }
    Ok(())
}

/// Whether a text that failed to parse was meant for hoist: then the
/// failure is an error; otherwise (a Helm template, someone else's YAML in
/// the same tree) the file is skipped with a warning.
pub(super) fn mentions_hoist_kind(text: &str) -> bool {
    static KIND: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r#"(?m)^\s*kind:\s*["']?(ImageRepository|ImagePolicy|ImageUpdateAutomation|Receiver)\b"#,
        )
        .ok()
    });
    KIND.as_ref().is_none_or(|re| re.is_match(text))
}

/// Refuses automations whose `git.url` (and policies whose
/// `promotion.evidence.url`) is a local path into hoist's own
/// state directory (`--state-dir`): the caches there are clones that other
/// automations made, whose configuration and hooks hoist never wrote, and
/// the store and key files beside them are hoist's alone. Made before the
/// state directory is opened, so nothing has been created when it fails.
pub fn refuse_state_directory(set: &ObjectSet, state_dir: &Path) -> Result<(), LoadErrors> {
    let Some(state) = resolved(state_dir) else {
        return Ok(());
    };
    let inside = |url: &str| {
        crate::git::local_paths(url)
            .iter()
            .filter_map(|p| resolved(p))
            .any(|p| p.starts_with(&state))
    };
    let refusal = |origin: &crate::load::Origin, object: String, field: &str, url: &str| {
        LoadError::Invalid {
            path: origin.path.clone(),
            line: origin.line,
            object,
            field: field.to_string(),
            message: format!(
                "{url:?} is inside hoist's state directory {}: the clones there are hoist's caches, not a remote; name the repository itself",
                state.display()
            ),
        }
    };
    let key = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        crate::model::ObjectKey::of(meta).to_string()
    };
    let mut errors: Vec<LoadError> = set
        .automations
        .iter()
        .filter(|a| inside(&a.object.spec.git.url))
        .map(|a| {
            refusal(
                &a.origin,
                format!("ImageUpdateAutomation {}", key(&a.object.metadata)),
                "spec.git.url",
                &a.object.spec.git.url,
            )
        })
        .collect();
    // A downstream policy reads its upstream's evidence from a clone too.
    errors.extend(set.policies.iter().filter_map(|p| {
        let url = &p.object.spec.promotion.as_ref()?.evidence.url;
        inside(url).then(|| {
            refusal(
                &p.origin,
                format!("ImagePolicy {}", key(&p.object.metadata)),
                "spec.promotion.evidence.url",
                url,
            )
        })
    }));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(LoadErrors {
            errors,
            warnings: Vec::new(),
        })
    }
}

/// Where `path` leads: made absolute, symlinks resolved as far as it
/// exists and `..` taken lexically beyond that, as the kernel would walk
/// it once the rest is created.
fn resolved(path: &Path) -> Option<PathBuf> {
    use std::path::Component;
    let absolute = std::path::absolute(path).ok()?;
    let parts: Vec<Component<'_>> = absolute.components().collect();
    for existing in (1..=parts.len()).rev() {
        let Ok(mut out) = std::fs::canonicalize(parts[..existing].iter().collect::<PathBuf>())
        else {
            continue;
        };
        for part in &parts[existing..] {
            match part {
                Component::ParentDir => {
                    out.pop();
                }
                Component::Normal(name) => out.push(name),
                _ => {}
            }
        }
        return Some(out);
    }
    None
}
