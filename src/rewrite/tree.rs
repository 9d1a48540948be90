//! Walking a directory tree and writing rewritten files atomically.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::text::{Refs, rewrite};
use crate::model::{Change, ChangeSet};

/// A warning or error about one file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FileProblem {
    /// Relative to the tree.
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub error: bool,
    pub message: String,
}

impl FileProblem {
    /// `DIR/FILE:LINE:COLUMN: message`, the file under `dir`.
    pub fn located(&self, dir: &std::path::Path) -> String {
        format!(
            "{}:{}:{}: {}",
            dir.join(&self.file).display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// What rewriting a tree did (or, dry, would do).
#[derive(Clone, Debug, Default)]
pub struct TreeRewrite {
    pub changeset: ChangeSet,
    /// Files that changed: (relative path, old text, new text).
    pub files: Vec<(PathBuf, String, String)>,
    pub problems: Vec<FileProblem>,
}

impl TreeRewrite {
    /// Whether any file or marker could not be handled.
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.error)
    }
}

/// Why the tree could not be rewritten at all, or a file not written.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RewriteError + '_ {
    move |source| RewriteError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether hoist reads a file for markers: YAML by extension, or a
/// kustomization without one.
fn is_manifest(path: &Path) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => true,
        None => path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n == "kustomization" || n == "Kustomization"),
        _ => false,
    }
}

/// The manifests under `root`, sorted, and problems met on the way.
/// Hidden files and directories (`.git` among them) are skipped, and so are
/// symlinks to directories and symlinks whose target leaves the tree, is
/// hidden, or is not a manifest itself; a file reached twice (a symlink, a
/// hard link) is read once.
fn manifests(root: &Path, problems: &mut Vec<FileProblem>) -> Result<Vec<PathBuf>, RewriteError> {
    use std::os::unix::fs::MetadataExt;
    let canonical_root = std::fs::canonicalize(root).map_err(io(root))?;
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    let mut pending = vec![root.to_path_buf()];
    let mut problem = |path: &Path, message: String| {
        problems.push(FileProblem {
            file: path.strip_prefix(root).unwrap_or(path).to_path_buf(),
            line: 0,
            column: 0,
            error: true,
            message,
        });
    };
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir).and_then(|d| {
            d.map(|e| e.map(|e| e.path()))
                .collect::<Result<Vec<_>, _>>()
        }) {
            Ok(entries) => entries,
            Err(e) if dir == root => return Err(io(root)(e)),
            Err(e) => {
                problem(&dir, format!("directory not read: {e}"));
                continue;
            }
        };
        let mut entries = entries;
        entries.sort();
        for path in entries {
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    problem(&path, format!("not read: {e}"));
                    continue;
                }
            };
            if meta.is_dir() {
                pending.push(path);
                continue;
            }
            if !is_manifest(&path) {
                continue;
            }
            let target = if meta.file_type().is_symlink() {
                let inside = std::fs::canonicalize(&path).ok().filter(|t| {
                    t.strip_prefix(&canonical_root).is_ok_and(|rest| {
                        !rest
                            .components()
                            .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
                    }) && t.is_file()
                        && is_manifest(t)
                });
                match inside {
                    Some(t) => t,
                    None => {
                        tracing::debug!(path = %path.display(), "skipping a symlink that leaves the tree, is hidden or is not a manifest");
                        continue;
                    }
                }
            } else if meta.is_file() {
                path.clone()
            } else {
                continue;
            };
            let identity = std::fs::metadata(&target)
                .map(|m| (m.dev(), m.ino()))
                .unwrap_or((0, 0));
            if identity == (0, 0) || seen.insert(identity) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Rewrites every manifest under `root`. With `dry_run`, nothing is
/// written. A file that does not parse is skipped and reported; the rest
/// of the tree is still rewritten.
/// `only` limits the walk to one file name directly under `root`.
pub fn rewrite_tree(
    root: &Path,
    refs: &Refs,
    dry_run: bool,
    only: Option<&Path>,
) -> Result<TreeRewrite, RewriteError> {
    let mut result = TreeRewrite::default();
    let files = match only {
        Some(name) => vec![root.join(name)],
        None => manifests(root, &mut result.problems)?,
    };
    for path in files {
        let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        let file_problem = |line: usize, column: usize, message: String| FileProblem {
            file: relative.clone(),
            line,
            column,
            error: true,
            message,
        };
        // A file that cannot be read or written is reported and skipped;
        // the rest of the tree is still rewritten.
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                result
                    .problems
                    .push(file_problem(0, 0, format!("not read: {e}")));
                continue;
            }
        };
        if !bytes.windows(12).any(|w| w == b"$imagepolicy") {
            continue;
        }
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
                let column = valid.iter().rev().take_while(|b| **b != b'\n').count() + 1;
                result.problems.push(file_problem(
                    line,
                    column,
                    "not UTF-8; file left unchanged".to_string(),
                ));
                continue;
            }
        };
        let rewritten = rewrite(&text, refs);
        result
            .problems
            .extend(rewritten.problems.into_iter().map(|p| FileProblem {
                file: relative.clone(),
                line: p.line,
                column: p.column,
                error: p.error,
                message: p.message,
            }));
        result
            .changeset
            .changes
            .extend(rewritten.edits.into_iter().map(|e| Change {
                file: relative.clone(),
                ..e
            }));
        if let Some(new_text) = rewritten.text {
            if !dry_run && let Err(e) = write_atomically(&path, new_text.as_bytes()) {
                // Its changes did not happen: take them back out.
                result.changeset.changes.retain(|c| c.file != relative);
                result
                    .problems
                    .push(file_problem(0, 0, format!("not written: {e}")));
                continue;
            }
            result.files.push((relative, text, new_text));
        }
    }
    Ok(result)
}

/// Writes through a temporary file in the same directory and a rename, so
/// a reader sees the old file or the new one, never half of either. The
/// file keeps its permissions; a symlink keeps pointing at its target.
///
/// No fsync: the rename is what makes the write atomic for readers, and
/// the tree is a git checkout whose commit (made by git, which syncs its
/// objects) is the durable record. An fsync per file made rewriting 1,000
/// files four times slower than reading the tree.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), RewriteError> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let target = std::fs::canonicalize(path).map_err(io(path))?;
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let original = std::fs::metadata(&target).map_err(io(&target))?;
    let mode = original.permissions().mode();
    // A unique name per attempt: a temporary file left by a killed run
    // (in a container hoist may be PID 1 every time) never blocks a file.
    let (temporary, mut file) = {
        let mut attempt = 0;
        loop {
            let candidate = dir.join(format!(
                ".{name}.hoist-{}-{:x}",
                std::process::id(),
                unique()
            ));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&candidate)
            {
                Ok(file) => break (candidate, file),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 8 => {
                    attempt += 1
                }
                Err(source) => {
                    return Err(RewriteError::Io {
                        path: target,
                        source,
                    });
                }
            }
        }
    };
    let written = (|| {
        file.write_all(contents)?;
        // The umask may have narrowed the mode given at creation.
        if file.metadata()?.permissions().mode() != mode {
            file.set_permissions(original.permissions())?;
        }
        // Keep the owner when hoist runs as root; anyone else cannot
        // change it and gets their own file, as an editor would.
        if file.metadata()?.uid() != original.uid() || file.metadata()?.gid() != original.gid() {
            let _ = std::os::unix::fs::fchown(&file, Some(original.uid()), Some(original.gid()));
        }
        std::fs::rename(&temporary, &target)
    })();
    if let Err(source) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(RewriteError::Io {
            path: target,
            source,
        });
    }
    Ok(())
}

/// A number unlikely to repeat between calls, for temporary names.
fn unique() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}
