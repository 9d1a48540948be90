//! Commit messages (and, later, pull request titles and bodies): pure
//! functions of the automation and its ChangeSet.

use std::collections::BTreeSet;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::model::{Change, ChangeSet, ObjectRef};

/// The trailer that marks hoist's commits, and whose automation made them.
pub const TRAILER: &str = "Hoist-Automation";

/// The default commit message: which images moved where, and a trailer
/// naming the automation.
pub fn default_message(automation: &str, changes: &ChangeSet) -> String {
    // Lines like `ghcr.io/acme/app 1.2.3 → 1.3.0 (clusters/prod/app.yaml)`,
    // one per distinct move, listing every file it touched.
    let mut moves: Vec<(String, Vec<String>)> = Vec::new();
    for c in &changes.changes {
        let line = match (split_ref(&c.old), split_ref(&c.new)) {
            (Some((old_name, old_tag)), Some((new_name, new_tag))) if old_name == new_name => {
                format!("{new_name} {old_tag} → {new_tag}")
            }
            _ => format!("{} → {} ({})", c.old, c.new, c.marker),
        };
        let file = c.file.display().to_string();
        match moves.iter_mut().find(|(l, _)| *l == line) {
            Some((_, files)) if !files.contains(&file) => files.push(file),
            Some(_) => {}
            None => moves.push((line, vec![file])),
        }
    }
    let subject = match moves.as_slice() {
        [(only, _)] => format!("Update {only}"),
        _ => format!("Update {} images", moves.len()),
    };
    let mut message = format!("{subject}\n\n");
    for (line, files) in &moves {
        message.push_str(&format!("- {line} ({})\n", files.join(", ")));
    }
    message.push_str(&format!("\nHoist-Automation: {automation}\n"));
    message
}

/// `ghcr.io/acme/app:1.2.3` → (`ghcr.io/acme/app`, `1.2.3`); the tag
/// follows the last ':' after the last '/'.
fn split_ref(value: &str) -> Option<(&str, &str)> {
    let value = value.split('@').next().unwrap_or(value);
    let slash = value.rfind('/').map_or(0, |i| i + 1);
    let colon = value[slash..].rfind(':')? + slash;
    Some((&value[..colon], &value[colon + 1..]))
}

/// What a `messageTemplate` sees.
#[derive(Serialize)]
struct Context<'a> {
    /// `{namespace, name}` of the ImageUpdateAutomation.
    automation: Named<'a>,
    /// Every change: `file`, `line`, `object{kind, namespace, name}`,
    /// `marker`, `policy`, `old`, `new`.
    changes: &'a [Change],
    /// The files changed, sorted.
    files: BTreeSet<String>,
    /// The objects changed, as `Kind ns/name`, sorted.
    objects: BTreeSet<String>,
    /// hoist's default message, to embed or extend.
    default: String,
}

#[derive(Serialize)]
struct Named<'a> {
    namespace: &'a str,
    name: &'a str,
}

/// Renders `template` (minijinja, Jinja2 syntax; an unknown variable is an
/// error) and makes sure the message ends with hoist's trailer.
pub fn render(template: &str, automation: &str, changes: &ChangeSet) -> Result<String, String> {
    let mut message = render_plain(template, automation, changes)?;
    let trailer = format!("{TRAILER}: {automation}");
    if !message.lines().any(|l| l.trim() == trailer) {
        if !message.ends_with('\n') {
            message.push('\n');
        }
        message.push_str(&format!("\n{trailer}\n"));
    }
    Ok(message)
}

/// The default pull request body: a table of the changes and a footer
/// naming the automation.
pub fn pull_request_body(automation: &str, changes: &ChangeSet) -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let mut body =
        String::from("| Image | Old | New | File | Object |\n| --- | --- | --- | --- | --- |\n");
    for c in &changes.changes {
        let (image, old, new) = match (split_ref(&c.old), split_ref(&c.new)) {
            (Some((a, old)), Some((b, new))) if a == b => {
                (a.to_string(), old.to_string(), new.to_string())
            }
            _ => (c.policy.clone(), c.old.clone(), c.new.clone()),
        };
        body.push_str(&format!(
            "| {} | {} | {} | {}:{} | {} |\n",
            cell(&image),
            cell(&old),
            cell(&new),
            cell(&c.file.display().to_string()),
            c.line,
            cell(&c.object.to_string())
        ));
    }
    body.push_str(&format!(
        "\nOpened and kept up to date by hoist for ImageUpdateAutomation {automation}.\n"
    ));
    body
}

/// Renders a template without adding the trailer: pull request titles and
/// bodies.
pub fn render_plain(
    template: &str,
    automation: &str,
    changes: &ChangeSet,
) -> Result<String, String> {
    let (namespace, name) = automation
        .split_once('/')
        .unwrap_or(("default", automation));
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let compiled = env.template_from_str(template).map_err(|e| describe(&e))?;
    let context = Context {
        automation: Named { namespace, name },
        changes: &changes.changes,
        files: changes
            .changes
            .iter()
            .map(|c| c.file.display().to_string())
            .collect(),
        objects: changes
            .changes
            .iter()
            .map(|c| c.object.to_string())
            .collect(),
        default: default_message(automation, changes),
    };
    compiled
        .render(minijinja::value::Serde(&context))
        .map_err(|e| describe(&e))
}

/// Renders a template over a sample change, so a broken template is found
/// when the file is loaded rather than when hoist is about to push.
pub fn check_template(template: &str) -> Result<(), String> {
    let sample = ChangeSet {
        changes: vec![Change {
            file: "clusters/prod/app.yaml".into(),
            line: 12,
            object: ObjectRef {
                kind: Some("Deployment".into()),
                namespace: Some("prod".into()),
                name: Some("app".into()),
            },
            marker: "apps:app".into(),
            policy: "apps/app".into(),
            old: "ghcr.io/acme/app:1.2.3".into(),
            new: "ghcr.io/acme/app:1.3.0".into(),
        }],
    };
    render(template, "apps/fleet", &sample).map(|_| ())
}

fn describe(e: &minijinja::Error) -> String {
    let mut text = e.to_string();
    if let Some(line) = e.line() {
        text.push_str(&format!(" (template line {line})"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(file: &str, old: &str, new: &str) -> Change {
        Change {
            file: file.into(),
            line: 1,
            object: ObjectRef::default(),
            marker: "apps:app".into(),
            policy: "apps/app".into(),
            old: old.into(),
            new: new.into(),
        }
    }

    #[test]
    fn default_message_says_which_images_moved_where() {
        let one = ChangeSet {
            changes: vec![
                change(
                    "clusters/prod/app.yaml",
                    "ghcr.io/acme/app:1.2.3",
                    "ghcr.io/acme/app:1.3.0",
                ),
                change(
                    "clusters/prod/app2.yaml",
                    "ghcr.io/acme/app:1.2.3",
                    "ghcr.io/acme/app:1.3.0",
                ),
            ],
        };
        assert_eq!(
            default_message("apps/fleet", &one),
            "Update ghcr.io/acme/app 1.2.3 → 1.3.0\n\n- ghcr.io/acme/app 1.2.3 → 1.3.0 (clusters/prod/app.yaml, clusters/prod/app2.yaml)\n\nHoist-Automation: apps/fleet\n"
        );
        let two = ChangeSet {
            changes: vec![
                change("a.yaml", "localhost:5000/x:1", "localhost:5000/x:2"),
                change("b.yaml", "1.0", "1.1"),
            ],
        };
        let message = default_message("apps/fleet", &two);
        assert!(message.starts_with("Update 2 images\n\n- localhost:5000/x 1 → 2 (a.yaml)\n- 1.0 → 1.1 (apps:app) (b.yaml)\n"), "{message}");
    }
}

#[cfg(test)]
mod template_tests {
    use super::*;

    #[test]
    fn templates_see_documented_values_and_keep_the_trailer() {
        let changes = ChangeSet {
            changes: vec![Change {
                file: "a/x.yaml".into(),
                line: 3,
                object: ObjectRef {
                    kind: Some("Deployment".into()),
                    namespace: Some("prod".into()),
                    name: Some("web".into()),
                },
                marker: "apps:web".into(),
                policy: "apps/web".into(),
                old: "web:1".into(),
                new: "web:2".into(),
            }],
        };
        let out = render(
            "chore({{ automation.name }}): {% for c in changes %}{{ c.old }} -> {{ c.new }} in {{ c.file }}{% endfor %}\n\n{{ objects | join(', ') }}",
            "apps/fleet",
            &changes,
        );
        assert_eq!(
            out.as_deref(),
            Ok(
                "chore(fleet): web:1 -> web:2 in a/x.yaml\n\nDeployment prod/web\n\nHoist-Automation: apps/fleet\n"
            )
        );
        assert!(check_template("{{ nope }}").is_err());
        assert!(check_template("{% for %}").is_err());
        assert!(check_template("{{ default }}").is_ok());
    }
}
