//! Reading what to apply: every YAML document under a directory, read
//! recursively in a stable order; a directory with a `kustomization.yaml`
//! is built with `kustomize build` (or `kubectl kustomize`) instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::plan::{Desired, PlanError, desired};

const KUSTOMIZATION: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Every object under `root`, with paths relative to `root` for errors.
pub fn read(root: &Path) -> Result<Vec<Desired>, Vec<PlanError>> {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    if !root.is_dir() {
        return Err(vec![PlanError {
            file: root.to_path_buf(),
            message: "is not a directory".into(),
        }]);
    }
    walk(root, root, &mut objects, &mut errors);
    if errors.is_empty() {
        Ok(objects)
    } else {
        Err(errors)
    }
}

fn relative(root: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(root).unwrap_or(path).to_path_buf()
}

fn walk(root: &Path, dir: &Path, objects: &mut Vec<Desired>, errors: &mut Vec<PlanError>) {
    if KUSTOMIZATION.iter().any(|k| dir.join(k).is_file()) {
        match kustomize(dir) {
            Ok(text) => parse(
                &relative(root, dir).join("(kustomize build)"),
                &text,
                objects,
                errors,
            ),
            Err(e) => errors.push(PlanError {
                file: relative(root, dir),
                message: e.to_string(),
            }),
        }
        return;
    }
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => {
            errors.push(PlanError {
                file: relative(root, dir),
                message: e.to_string(),
            });
            return;
        }
    };
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // Dot-directories (.git, .github) hold no manifests; symbolic links
        // are not followed (they could loop, or lead out of the repository).
        let link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
        if name.starts_with('.') || link {
            continue;
        }
        if path.is_dir() {
            walk(root, &path, objects, errors);
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            match std::fs::read_to_string(&path) {
                Ok(text) => parse(&relative(root, &path), &text, objects, errors),
                Err(e) => errors.push(PlanError {
                    file: relative(root, &path),
                    message: e.to_string(),
                }),
            }
        }
    }
}

/// The documents of one file; empty documents are skipped.
fn parse(file: &Path, text: &str, objects: &mut Vec<Desired>, errors: &mut Vec<PlanError>) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match serde_saphyr::from_multiple::<serde_json::Value>(text) {
        Ok(documents) => {
            for document in documents.into_iter().filter(|d| !d.is_null()) {
                // A List (kubectl's output) holds its objects in `items`.
                if document["kind"] == "List" && document["items"].is_array() {
                    for item in document["items"].as_array().into_iter().flatten() {
                        match desired(file.to_path_buf(), item.clone()) {
                            Ok(d) => objects.push(d),
                            Err(e) => errors.push(e),
                        }
                    }
                    continue;
                }
                match desired(file.to_path_buf(), document) {
                    Ok(d) => objects.push(d),
                    Err(e) => errors.push(e),
                }
            }
        }
        Err(e) => errors.push(PlanError {
            file: file.to_path_buf(),
            message: format!("not valid YAML: {e}"),
        }),
    }
}

/// Why a kustomization could not be built.
#[derive(Debug, thiserror::Error)]
enum KustomizeError {
    #[error("running {program}: {source}")]
    Spawn {
        program: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("has a kustomization.yaml, but neither kustomize nor kubectl is installed to build it")]
    Missing,
}

/// `kustomize build DIR`, else `kubectl kustomize DIR`.
fn kustomize(dir: &Path) -> Result<String, KustomizeError> {
    let attempts: [(&str, &[&str]); 2] = [("kustomize", &["build"]), ("kubectl", &["kustomize"])];
    for (program, args) in attempts {
        let output = match Command::new(program).args(args).arg(dir).output() {
            Ok(output) => output,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(KustomizeError::Spawn { program, source }),
        };
        if !output.status.success() {
            return Err(KustomizeError::Failed {
                command: format!("{program} {}", args.join(" ")),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Err(KustomizeError::Missing)
}
