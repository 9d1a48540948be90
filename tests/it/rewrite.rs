//! The rewriter: golden directories under tests/testdata/rewrite, each a
//! case with `original/`, `expected/`, `args` (one `--set` value per line),
//! and optionally `exit` (the expected exit code) and `stderr` (lines that
//! must appear in it). Each case is rewritten twice: the second run must
//! change nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::support::{files, hoist, repo_root};

/// Every file under `dir`, hidden ones included, by relative path.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            let meta = std::fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{e}"));
            if meta.file_type().is_symlink() {
                continue;
            } else if meta.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
                out.insert(path.strip_prefix(dir).unwrap_or(&path).to_path_buf(), bytes);
            }
        }
    }
    out
}

fn copy_tree(from: &Path, to: &Path) {
    for (relative, bytes) in snapshot(from) {
        let target = to.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(target, bytes).unwrap_or_else(|e| panic!("{e}"));
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn golden_cases() {
    let root = repo_root().join("tests/testdata/rewrite");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 25, "only {} golden cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let tree = work.path().join("tree");
        copy_tree(&case.join("original"), &tree);
        let mut args = vec!["rewrite".to_string(), "tree".to_string()];
        for set in read_lines(&case.join("args")) {
            args.push("--set".into());
            args.push(set);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let expected_exit: i32 = read_lines(&case.join("exit"))
            .first()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let run = hoist(work.path(), &args, "");
        if run.code != expected_exit {
            failures.push(format!(
                "{name}: exit {} (expected {expected_exit})\n{}",
                run.code, run.stderr
            ));
            continue;
        }
        for line in read_lines(&case.join("stderr")) {
            if !run.stderr.contains(&line) {
                failures.push(format!("{name}: stderr lacks {line:?}:\n{}", run.stderr));
            }
        }
        let got = snapshot(&tree);
        let want = snapshot(&case.join("expected"));
        if got != want {
            let differing: Vec<String> = got
                .keys()
                .chain(want.keys())
                .filter(|k| got.get(*k) != want.get(*k))
                .map(|k| {
                    format!(
                        "{}:\n--- got\n{}\n--- expected\n{}",
                        k.display(),
                        String::from_utf8_lossy(got.get(k).map_or(&[][..], Vec::as_slice)),
                        String::from_utf8_lossy(want.get(k).map_or(&[][..], Vec::as_slice))
                    )
                })
                .collect();
            failures.push(format!("{name}: tree differs\n{}", differing.join("\n")));
            continue;
        }
        // Rewriting twice changes nothing the second time.
        let again = hoist(work.path(), &args, "");
        if again.code != expected_exit || !again.stdout.is_empty() || snapshot(&tree) != want {
            failures.push(format!(
                "{name}: the second run was not a no-op: {}{}",
                again.stdout, again.stderr
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

const MARKED: &str = "image: ghcr.io/acme/app:1.0.0 # {\"$imagepolicy\": \"ns:app\"}\n";

#[test]
fn dry_run_prints_a_diff_and_writes_nothing() {
    let dir = files(&[("tree/deploy.yaml", MARKED)]);
    let run = hoist(
        dir.path(),
        &[
            "rewrite",
            "tree",
            "--set",
            "ns:app=ghcr.io/acme/app:1.1.0",
            "--dry-run",
        ],
        "",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "--- a/tree/deploy.yaml\n+++ b/tree/deploy.yaml\n@@ -1 +1 @@\n-image: ghcr.io/acme/app:1.0.0 # {\"$imagepolicy\": \"ns:app\"}\n+image: ghcr.io/acme/app:1.1.0 # {\"$imagepolicy\": \"ns:app\"}\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("tree/deploy.yaml"))
            .ok()
            .as_deref(),
        Some(MARKED)
    );
}

#[test]
fn json_output_is_the_changeset() {
    let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: prod}\nspec:\n  image: ghcr.io/acme/app:1.0.0 # {\"$imagepolicy\": \"ns:app:tag\"}\n";
    let dir = files(&[("tree/apps/deploy.yaml", text)]);
    let run = hoist(
        dir.path(),
        &[
            "rewrite",
            "tree",
            "--set",
            "ns:app=ghcr.io/acme/app:1.1.0",
            "-o",
            "json",
        ],
        "",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    assert_eq!(
        json,
        serde_json::json!({"changes": [{
            "file": "tree/apps/deploy.yaml", "line": 5,
            "object": {"kind": "Deployment", "namespace": "prod", "name": "web"},
            "marker": "ns:app:tag", "policy": "ns/app", "image": "ghcr.io/acme/app", "old": "ghcr.io/acme/app:1.0.0", "new": "1.1.0"
        }], "problems": []})
    );
    let text_run = hoist(
        dir.path(),
        &["rewrite", "tree", "--set", "ns:app=ghcr.io/acme/app:1.2.0"],
        "",
    );
    assert_eq!(
        text_run.stdout,
        "tree/apps/deploy.yaml:5: Deployment prod/web: 1.1.0 -> 1.2.0 (ns:app:tag)\n"
    );
}

#[test]
fn bad_set_values_exit_2() {
    let dir = files(&[("tree/deploy.yaml", MARKED)]);
    for bad in ["app=nginx:1", "ns:app", "ns:app=nginx@notadigest"] {
        let run = hoist(dir.path(), &["rewrite", "tree", "--set", bad], "");
        assert_eq!(run.code, 2, "{bad}: {}", run.stderr);
        assert!(run.stderr.contains("--set"), "{}", run.stderr);
    }
}

#[test]
fn keeps_file_mode_leaves_no_temporary_files_and_ignores_outside_symlinks() {
    use std::os::unix::fs::PermissionsExt;
    let dir = files(&[
        ("tree/deploy.yaml", MARKED),
        ("outside.yaml", MARKED),
        ("tree/sub/inner.yaml", MARKED),
    ]);
    let tree = dir.path().join("tree");
    std::fs::set_permissions(
        tree.join("deploy.yaml"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(dir.path().join("outside.yaml"), tree.join("link-out.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink("sub/inner.yaml", tree.join("link-in.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(dir.path(), tree.join("loop")).unwrap_or_else(|e| panic!("{e}"));
    // Links into hidden directories or to files that are not manifests are
    // not followed either.
    std::fs::create_dir_all(tree.join(".git")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(tree.join(".git/config.yaml"), MARKED).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(tree.join("secret.txt"), MARKED).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(".git/config.yaml", tree.join("to-git.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink("secret.txt", tree.join("to-text.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    // A stale temporary file from a killed run does not block the file.
    std::fs::write(
        tree.join(format!(".deploy.yaml.hoist-{}", std::process::id())),
        "stale",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let run = hoist(
        dir.path(),
        &[
            "rewrite",
            "tree",
            "--set",
            "ns:app=ghcr.io/acme/app:2.0.0",
            "-o",
            "json",
        ],
        "",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mode = std::fs::metadata(tree.join("deploy.yaml"))
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    assert_eq!(mode, 0o640);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("outside.yaml"))
            .ok()
            .as_deref(),
        Some(MARKED)
    );
    let inner = std::fs::read_to_string(tree.join("sub/inner.yaml")).unwrap_or_default();
    assert!(inner.contains("2.0.0"), "{inner}");
    // The in-tree link still is a link, and its target changed once.
    assert!(
        std::fs::symlink_metadata(tree.join("link-in.yaml"))
            .is_ok_and(|m| m.file_type().is_symlink())
    );
    let json: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    assert_eq!(json["changes"].as_array().map(Vec::len), Some(2), "{json}");
    assert_eq!(
        std::fs::read_to_string(tree.join(".git/config.yaml"))
            .ok()
            .as_deref(),
        Some(MARKED)
    );
    assert_eq!(
        std::fs::read_to_string(tree.join("secret.txt"))
            .ok()
            .as_deref(),
        Some(MARKED)
    );
    // Only the stale file planted above remains; hoist leaves none of its own.
    let stale = format!(".deploy.yaml.hoist-{}", std::process::id());
    let leftovers: Vec<_> = snapshot(&tree)
        .into_keys()
        .filter(|k| k.to_string_lossy().contains(".hoist-") && !k.ends_with(&stale))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn strict_refuses_a_marker_that_does_nothing_and_writes_nothing() {
    let broken = "data:\n  image: nginx:1 # {\"$imagepolicy\": \"app\"}\n";
    let dir = files(&[("tree/deploy.yaml", MARKED), ("tree/broken.yaml", broken)]);
    let set = ["rewrite", "tree", "--set", "ns/app=ghcr.io/acme/app:9.9.9"];
    let strict = hoist(dir.path(), &[&set[..], &["--strict"]].concat(), "");
    assert_eq!(strict.code, 2, "{}", strict.stderr);
    assert!(
        strict.stderr.contains("tree/broken.yaml:2:")
            && strict.stderr.contains("nothing was written"),
        "{}",
        strict.stderr
    );
    let read = |name: &str| {
        std::fs::read_to_string(dir.path().join("tree").join(name))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!(read("deploy.yaml"), MARKED);
    // Without --strict the good marker is written and the bad one warned of.
    let lenient = hoist(dir.path(), &set, "");
    assert_eq!(lenient.code, 0, "{}", lenient.stderr);
    assert!(
        lenient.stderr.contains("warning: tree/broken.yaml:2:"),
        "{}",
        lenient.stderr
    );
    assert_ne!(read("deploy.yaml"), MARKED);
    assert_eq!(read("broken.yaml"), broken);
}
