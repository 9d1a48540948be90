//! The command-line contract of `hoist policy eval`: output, exit codes and
//! error messages.

use crate::support::{files, hoist, repo_root};

const POLICY: &str = "apiVersion: hoist.dev/v1alpha1
kind: ImagePolicy
metadata:
  name: app
  namespace: team
spec:
  imageRepositoryRef:
    name: app
  policy:
    semver:
      range: '^1.2'
";

#[test]
fn prints_the_selected_tag_alone() {
    let dir = files(&[
        ("policy.yaml", POLICY),
        ("tags.txt", "1.2.0\n1.9.9\n2.0.0\n1.10.0\nlatest\n"),
    ]);
    let run = hoist(
        dir.path(),
        &["policy", "eval", "-f", "policy.yaml", "--tags", "tags.txt"],
        "",
    );
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (0, "1.10.0\n", "")
    );
}

#[test]
fn reads_tags_from_stdin_in_every_format() {
    let dir = files(&[("policy.yaml", POLICY)]);
    for input in [
        "1.2.0\n1.3.0\n",
        r#"["1.2.0", "1.3.0"]"#,
        r#"{"name": "team/app", "tags": ["1.2.0", "1.3.0"]}"#,
    ] {
        let run = hoist(
            dir.path(),
            &["policy", "eval", "-f", "policy.yaml", "--tags", "-"],
            input,
        );
        assert_eq!(
            (run.code, run.stdout.as_str()),
            (0, "1.3.0\n"),
            "{input}: {}",
            run.stderr
        );
    }
}

#[test]
fn exit_1_when_no_tag_qualifies() {
    let dir = files(&[("policy.yaml", POLICY)]);
    let run = hoist(
        dir.path(),
        &["policy", "eval", "-f", "policy.yaml", "--tags", "-"],
        "2.0.0\nlatest\n",
    );
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr
            .contains("error: no tag qualifies for ImagePolicy team/app"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("1 not readable by the policy"),
        "{}",
        run.stderr
    );
}

#[test]
fn json_report_is_stable() {
    let dir = files(&[("policy.yaml", POLICY)]);
    let run = hoist(
        dir.path(),
        &[
            "policy",
            "eval",
            "-f",
            "policy.yaml",
            "--tags",
            "-",
            "-o",
            "json",
        ],
        "1.2.0\n1.4.1\nlatest\n3.0.0\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    assert_eq!(
        json,
        serde_json::json!({"policy": "team/app", "selected": "1.4.1", "candidates": 2, "ignored": 1})
    );
    let none = hoist(
        dir.path(),
        &[
            "policy",
            "eval",
            "-f",
            "policy.yaml",
            "--tags",
            "-",
            "-o",
            "json",
        ],
        "3.0.0\n",
    );
    assert_eq!(none.code, 1);
    let json: serde_json::Value =
        serde_json::from_str(&none.stdout).unwrap_or_else(|e| panic!("{e}: {}", none.stdout));
    assert_eq!(json["selected"], serde_json::Value::Null);
}

#[test]
fn policy_flag_picks_one_of_several() {
    let other = POLICY
        .replace(
            "name: app\n  namespace: team",
            "name: other\n  namespace: team",
        )
        .replace("'^1.2'", "'^2'");
    let dir = files(&[
        ("a.yaml", POLICY),
        ("more/b.yml", &other),
        ("more/ignored.txt", "not yaml: ["),
    ]);
    let eval = |extra: &[&str]| {
        let mut args = vec!["policy", "eval", "-f", ".", "--tags", "-"];
        args.extend_from_slice(extra);
        hoist(dir.path(), &args, "1.5.0\n2.5.0\n")
    };
    let run = eval(&[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("several ImagePolicies"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("team/app, team/other"),
        "{}",
        run.stderr
    );
    assert_eq!(eval(&["--policy", "team/other"]).stdout, "2.5.0\n");
    assert_eq!(eval(&["--policy", "team/app"]).stdout, "1.5.0\n");
    // The spelling markers use is read too, so a marker's value can be pasted.
    assert_eq!(eval(&["--policy", "team:other"]).stdout, "2.5.0\n");
    let malformed = eval(&["--policy", "team/app/x"]);
    assert_eq!(malformed.code, 2);
    assert!(
        malformed.stderr.contains("expected NS/NAME"),
        "{}",
        malformed.stderr
    );
    let missing = eval(&["--policy", "nope"]);
    assert_eq!(missing.code, 2);
    assert!(
        missing
            .stderr
            .contains("--policy default/nope: no such ImagePolicy"),
        "{}",
        missing.stderr
    );
}

#[test]
fn applies_the_repository_exclusion_list_when_given() {
    let repo = "apiVersion: hoist.dev/v1alpha1
kind: ImageRepository
metadata: {name: app, namespace: team}
spec:
  image: ghcr.io/team/app
  exclusionList: ['^1\\.9']
";
    let dir = files(&[("policy.yaml", POLICY), ("repo.yaml", repo)]);
    let run = hoist(
        dir.path(),
        &["policy", "eval", "-f", ".", "--tags", "-"],
        "1.2.0\n1.9.0\n1.3.0.sig\n",
    );
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "1.2.0\n"),
        "{}",
        run.stderr
    );
    // Without the repository, the default list drops signatures only.
    let alone = hoist(
        dir.path(),
        &["policy", "eval", "-f", "policy.yaml", "--tags", "-"],
        "1.2.0\n1.9.0\nv1.99.0.sig\n",
    );
    assert_eq!(alone.stdout, "1.9.0\n");
}

/// The invalid documents the issue names: exit 2 and one message naming
/// file, line, object and field.
#[test]
fn invalid_documents_exit_2_with_file_line_object_field() {
    let head = "apiVersion: hoist.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: app, namespace: team}\nspec:\n  imageRepositoryRef: {name: app}\n";
    let repo_head = "apiVersion: hoist.dev/v1alpha1\nkind: ImageRepository\nmetadata: {name: app, namespace: team}\nspec:\n";
    let cases = [
        (
            format!("{head}  policy:\n    semver: {{range: '1.x'}}\n    alphabetical: {{}}\n"),
            "bad.yaml:8: ImagePolicy team/app: spec.policy.alphabetical: semver and alphabetical are both set",
        ),
        (
            format!("{head}  policy:\n    numerical:\n      order: newest\n"),
            "bad.yaml:8: ImagePolicy team/app: spec.policy.numerical.order: unknown variant `newest`, expected `asc` or `desc`",
        ),
        (
            format!("{head}  policy:\n    semver:\n      range: '>=1.0.0 <2.0.0 ||| 3'\n"),
            "bad.yaml:8: ImagePolicy team/app: spec.policy.semver.range: \">=1.0.0 <2.0.0 ||| 3\" is not a valid semver range",
        ),
        (
            format!(
                "{head}  policy: {{semver: {{range: '*'}}}}\n  filterTags:\n    pattern: '^(?P<v>[0-9'\n"
            ),
            "bad.yaml:8: ImagePolicy team/app: spec.filterTags.pattern: \"^(?P<v>[0-9\" is not a valid regular expression",
        ),
        (
            format!(
                "{head}  policy: {{semver: {{range: '*'}}}}\n  filterTags:\n    pattern: '^(?P<v>.*)$'\n    extract: '$ver'\n"
            ),
            "bad.yaml:9: ImagePolicy team/app: spec.filterTags.extract: \"$ver\" refers to group \"ver\", which pattern \"^(?P<v>.*)$\" does not have; groups: $1, $v",
        ),
        (
            format!("{repo_head}  image: ghcr.io/team/app:v1.2.3\n"),
            "bad.yaml:5: ImageRepository team/app: spec.image: \"ghcr.io/team/app:v1.2.3\" carries a tag (v1.2.3)",
        ),
        (
            format!("{repo_head}  image: ghcr.io/team/app\n  interval: 5 minutes\n"),
            "bad.yaml:6: ImageRepository team/app: spec.interval: \"5 minutes\" is not a duration",
        ),
    ];
    for (text, expected) in cases {
        let dir = files(&[("bad.yaml", &text)]);
        let run = hoist(
            dir.path(),
            &["policy", "eval", "-f", "bad.yaml", "--tags", "-"],
            "1.0.0\n",
        );
        assert_eq!(run.code, 2, "{text}\n{}", run.stderr);
        assert_eq!(run.stdout, "");
        let first = run.stderr.lines().next().unwrap_or("");
        assert!(
            first.starts_with(&format!("error: {expected}")),
            "got:\n{}\nexpected:\n{expected}",
            run.stderr
        );
    }
}

#[test]
fn bad_flags_and_missing_files_exit_2() {
    let dir = files(&[("policy.yaml", POLICY)]);
    let no_tags = hoist(dir.path(), &["policy", "eval", "-f", "policy.yaml"], "");
    assert_eq!(no_tags.code, 2, "{}", no_tags.stderr);
    let no_file = hoist(
        dir.path(),
        &["policy", "eval", "-f", "missing.yaml", "--tags", "-"],
        "",
    );
    assert_eq!(no_file.code, 2);
    assert!(
        no_file.stderr.contains("missing.yaml"),
        "{}",
        no_file.stderr
    );
    let no_tag_file = hoist(
        dir.path(),
        &["policy", "eval", "-f", "policy.yaml", "--tags", "nope.txt"],
        "",
    );
    assert_eq!(no_tag_file.code, 2);
    assert!(
        no_tag_file.stderr.contains("--tags nope.txt"),
        "{}",
        no_tag_file.stderr
    );
    let bad_yaml = files(&[("p.yaml", "kind: [unclosed\n")]);
    let run = hoist(
        bad_yaml.path(),
        &["policy", "eval", "-f", "p.yaml", "--tags", "-"],
        "",
    );
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("p.yaml:"), "{}", run.stderr);
    // Refused before the controller reaches for a cluster.
    let run = hoist(
        dir.path(),
        &["controller", "--default-service-account", "Team_A"],
        "",
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("--default-service-account \"Team_A\": "),
        "{}",
        run.stderr
    );
}

/// The README's policy example, on the shipped files.
#[test]
fn readme_policy_example() {
    let run = hoist(
        &repo_root(),
        &[
            "policy",
            "eval",
            "-f",
            "policies/semver.yaml",
            "--tags",
            "policies/podinfo-tags.txt",
        ],
        "",
    );
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "6.9.0\n"),
        "{}",
        run.stderr
    );
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap_or_default();
    assert!(
        readme.contains("policy eval -f policies/semver.yaml --tags policies/podinfo-tags.txt")
    );
}

/// The README's first two commands are the quickstart and the tests, and
/// the quickstart works (with this build of hoist instead of a release one).
#[test]
fn readme_quickstart_runs() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap_or_default();
    let block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap_or_default();
    let commands: Vec<&str> = block.lines().collect();
    assert_eq!(commands, ["scripts/quickstart", "cargo test --locked"]);
    if !std::path::Path::new("/usr/bin/docker-registry").exists() {
        assert!(!crate::support::required(), "docker-registry is missing");
        return;
    }
    let out = std::process::Command::new(repo_root().join("scripts/quickstart"))
        .env("HOIST", env!("CARGO_BIN_EXE_hoist"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("==> done: apps/podinfo now runs") && stdout.contains("podinfo:6.5.0"),
        "{stdout}"
    );
}

/// Automations whose paths, branches or pull-request settings git or the
/// forge would refuse fail at load time: exit 2 naming the file, the object
/// and the field, before hoist makes its state directory or runs git.
#[test]
fn invalid_automations_exit_2_before_any_git() {
    let automation = |git: &str, rest: &str| {
        format!(
            "apiVersion: hoist.dev/v1alpha1\nkind: ImageUpdateAutomation\nmetadata: {{name: fleet, namespace: team}}\nspec:\n  interval: 5m\n  git:\n    url: http://127.0.0.1:1/fleet.git\n    checkout: {{ref: {{branch: main}}}}\n{git}{rest}"
        )
    };
    let pull = "      pullRequest: {provider: github}\n";
    let cases = [
        (
            automation("", "  update: {path: ../elsewhere}\n"),
            "spec.update.path",
        ),
        (
            automation("", "  update: {path: /etc}\n"),
            "spec.update.path",
        ),
        (
            automation("", "  sync: {path: ./a/../../b}\n"),
            "spec.sync.path",
        ),
        (
            automation("    push: {branch: '*'}\n", ""),
            "spec.git.push.branch",
        ),
        (
            automation("    push: {branch: 'my branch'}\n", ""),
            "spec.git.push.branch",
        ),
        (
            automation("    push: {branch: 'a..b'}\n", ""),
            "spec.git.push.branch",
        ),
        (
            automation("    push: {branch: 'hoist@{1}'}\n", ""),
            "spec.git.push.branch",
        ),
        (
            automation("    push: {branch: 'x.lock'}\n", ""),
            "spec.git.push.branch",
        ),
        (
            automation("    push: {branch: '-f'}\n", ""),
            "spec.git.push.branch",
        ),
        (
            automation("", "").replace("{branch: main}", "{branch: 'main/'}"),
            "spec.git.checkout.ref.branch",
        ),
        (
            automation(&format!("    push:\n{pull}"), ""),
            "spec.git.push.branch",
        ),
        (
            automation(&format!("    push:\n      branch: main\n{pull}"), ""),
            "spec.git.push.branch",
        ),
        (
            automation(
                "    push:\n      branch: hoist\n      pullRequest: {provider: github, title: '{{ oops'}\n",
                "",
            ),
            "spec.git.push.pullRequest.title",
        ),
        // Past the forges' 255 bytes whatever the changes.
        (
            automation(
                "    push:\n      branch: hoist\n      pullRequest: {provider: github, title: \"{{ 'x' * 300 }}\"}\n",
                "",
            ),
            "spec.git.push.pullRequest.title",
        ),
        // No owner/name for the forge to be asked about.
        (
            automation(&format!("    push:\n      branch: hoist\n{pull}"), ""),
            "spec.git.url",
        ),
        (
            automation(
                "    push:\n      branch: hoist\n      pullRequest: {provider: github, body: '{% for %}'}\n",
                "",
            ),
            "spec.git.push.pullRequest.body",
        ),
    ];
    for (text, field) in cases {
        let dir = files(&[("fleet.yaml", &text)]);
        let run = hoist(
            dir.path(),
            &["run", "-f", "fleet.yaml", "--state-dir", "state"],
            "",
        );
        assert_eq!(run.code, 2, "{text}\n{}", run.stderr);
        assert!(
            run.stderr.contains("fleet.yaml:")
                && run.stderr.contains("ImageUpdateAutomation team/fleet")
                && run.stderr.contains(&format!(": {field}: ")),
            "{text}\n{}",
            run.stderr
        );
        assert!(!dir.path().join("state").exists(), "{text}");
    }
}

/// A store cut short at any length (a full disk, a copy interrupted) is
/// reported with the README's message and exit 1, never a panic from
/// inside the database, and the file is left byte for byte as it was.
#[test]
fn a_truncated_store_is_reported_and_left_as_it_was() {
    let objects = "apiVersion: hoist.dev/v1alpha1\nkind: ImageRepository\nmetadata: {name: app, namespace: team}\nspec: {image: 127.0.0.1:1/team/app, insecure: true, timeout: 1s}\n";
    let dir = files(&[("fleet.yaml", objects)]);
    // Any scan, even a failing one, leaves a whole database behind.
    hoist(
        dir.path(),
        &["scan", "-f", "fleet.yaml", "--state-dir", "whole"],
        "",
    );
    let whole = std::fs::read(dir.path().join("whole/hoist.redb"))
        .unwrap_or_else(|e| panic!("the first scan left no store: {e}"));
    for length in [1, 512, 4096, 4097, 8192, whole.len() / 2, whole.len() - 1] {
        let state = dir.path().join(format!("cut-{length}"));
        std::fs::create_dir(&state).unwrap_or_else(|e| panic!("{e}"));
        let file = state.join("hoist.redb");
        std::fs::write(&file, &whole[..length]).unwrap_or_else(|e| panic!("{e}"));
        let state_arg = format!("cut-{length}");
        let run = hoist(
            dir.path(),
            &["scan", "-f", "fleet.yaml", "--state-dir", &state_arg],
            "",
        );
        assert!(
            run.code == 1
                && run.stderr.contains("cannot be read")
                && run.stderr.contains("left untouched")
                && !run.stderr.contains("panicked"),
            "truncated to {length}: exit {}\n{}",
            run.code,
            run.stderr
        );
        let now = std::fs::read(&file).unwrap_or_default();
        assert!(
            now == whole[..length],
            "truncated to {length}: the file changed"
        );
        assert!(!state.join("hoist.redb.check").exists(), "{length}");
    }
}

/// `hoist --version`: the Cargo.toml version and the commit of the
/// checkout it was built from, as an image's user reads them.
#[test]
fn version_names_the_release_and_the_commit() {
    let dir = files(&[]);
    let run = hoist(dir.path(), &["--version"], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let line = run.stdout.trim_end();
    let commit = line
        .strip_prefix(&format!("hoist {} (commit ", env!("CARGO_PKG_VERSION")))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected --version output: {line:?}"));
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--verify", "HEAD"])
        .current_dir(repo_root())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string());
    match head {
        // Built from this checkout: build.rs stamped its HEAD.
        Some(head) if std::env::var_os("HOIST_GIT_COMMIT").is_none() => assert_eq!(commit, head),
        _ => assert!(
            commit == "unknown" || commit.chars().all(|c| c.is_ascii_hexdigit()),
            "{commit:?}"
        ),
    }
}

#[test]
fn a_build_time_policy_needs_the_images_not_a_tag_list() {
    let policy = POLICY.replace(
        "    semver:\n      range: '^1.2'\n",
        "    buildTime: {order: asc}\n",
    );
    let dir = files(&[("policy.yaml", &policy)]);
    let run = hoist(
        dir.path(),
        &["policy", "eval", "-f", "policy.yaml", "--tags", "-"],
        "main-1234567\n",
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "ImagePolicy team/app: spec.policy.buildTime orders tags by their images' build times"
        ) && run.stderr.contains("use hoist scan"),
        "{}",
        run.stderr
    );
}
