//! What hoist prints on a terminal: text a server sent cannot recolour it
//! or overwrite a line, by whatever path it reaches an error, and hoist's
//! own multi-line messages keep their lines.

use crate::support::http::{FakeServer, Reply};
use crate::support::{files, hoist_env};

#[test]
fn escapes_and_carriage_returns_from_a_registry_never_reach_the_terminal() {
    let server = FakeServer::start(|_, _| {
        Reply::json(
            400,
            r#"{"errors":[{"code":"DENIED","message":"\u001b[31mred\rerror: forged"}]}"#,
        )
    });
    let dir = files(&[(
        "objects.yaml",
        &format!(
            "apiVersion: hoist.dev/v1alpha1\nkind: ImageRepository\nmetadata: {{name: app}}\nspec:\n  image: {}/team/app\n  insecure: true\n  interval: 1h\n",
            server.addr
        ),
    )]);
    let docker = dir.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap_or_else(|e| panic!("{e}"));
    let docker = docker.to_string_lossy().into_owned();
    let run = hoist_env(
        dir.path(),
        &["scan", "-f", "objects.yaml", "--state-dir", "state"],
        &[("DOCKER_CONFIG", &docker)],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("red"), "{:?}", run.stderr);
    for out in [&run.stdout, &run.stderr] {
        assert!(!out.contains(['\x1b', '\r']), "{out:?}");
    }
}

#[test]
fn hoists_own_multi_line_errors_keep_their_lines() {
    // Two problems in one file: one error, a line each.
    let dir = files(&[(
        "objects.yaml",
        "apiVersion: hoist.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: a}\nspec: {}\n---\napiVersion: hoist.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: b}\nspec: {}\n",
    )]);
    let run = hoist_env(
        dir.path(),
        &["scan", "-f", "objects.yaml", "--state-dir", "state"],
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(!run.stderr.contains("\\n"), "{:?}", run.stderr);
    assert!(run.stderr.lines().count() >= 2, "{:?}", run.stderr);
}
