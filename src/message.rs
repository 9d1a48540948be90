//! Commit messages and pull request titles and bodies: pure functions of
//! the automation and its ChangeSet.
//!
//! A template comes from whoever writes the automation, so rendering one is
//! bounded: a template that loops over `range(10000)` inside itself must
//! fail at once rather than fill memory. Every render gets
//!
//! - an output cap, enforced while rendering (the text goes into a writer
//!   that refuses bytes past the cap, so memory never holds more):
//!   [`COMMIT_MESSAGE_LIMIT`] (1 MiB) for `messageTemplate`, the forge's
//!   body limit for a pull request `body` (see [`crate::forge::Forge::body_limit`]),
//!   [`TITLE_LIMIT`] for a `title`;
//! - a time limit, [`RENDER_TIME_LIMIT`] (2 s);
//! - a work budget, [`RENDER_FUEL`] minijinja fuel: about that many
//!   instructions, or 64 bytes of strings and lists created per unit, which
//!   bounds time and memory inside a render that writes nothing;
//! - a recursion limit, [`RENDER_RECURSION_LIMIT`], for recursive macros.
//!
//! Past any of them rendering fails with an error naming the field. The
//! default pull request body never fails: its change table is shortened to
//! fit the forge's limit, ending with "… and N more".

use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, Instant};

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::model::{Change, ChangeSet, ObjectRef};

/// The trailer that marks hoist's commits, and whose automation made them.
pub const TRAILER: &str = "Hoist-Automation";

/// The commit message of a Flux ImageUpdateAutomation without a
/// `messageTemplate`, as Flux's image-automation-controller writes it.
pub const FLUX_DEFAULT_MESSAGE: &str = "Update from image update automation";

/// The commit that records healthy rollouts in an automation's evidence
/// file (`spec.sync.evidence`): which images, seen healthy at which commit.
pub fn evidence_message(automation: &str, healthy: &[String], revision: &str) -> String {
    let subject = match healthy {
        [only] => format!("Record healthy rollout of {only}"),
        _ => format!("Record healthy rollout of {} images", healthy.len()),
    };
    let lines: String = healthy.iter().map(|h| format!("- {h}\n")).collect();
    cleanup(&format!(
        "{subject}\n\nThe sync of {revision} ran these healthy:\n\n{lines}\n{TRAILER}: {automation}\n"
    ))
}

/// The commit that records, in the evidence file, that images which ran
/// healthy failed (and were not rolled back): their soak ended.
pub fn failed_message(automation: &str, failed: &[String], revision: &str, reason: &str) -> String {
    let subject = match failed {
        [only] => format!("Record failed rollout of {only}"),
        _ => format!("Record failed rollout of {} images", failed.len()),
    };
    let lines: String = failed.iter().map(|h| format!("- {h}\n")).collect();
    cleanup(&format!(
        "{subject}\n\nThe sync of {revision} failed:\n\n{reason}\n\nThese ran healthy until now:\n\n{lines}\n{TRAILER}: {automation}\n"
    ))
}

/// The commit that rolls back a failed rollout (`spec.sync.rollback`):
/// `moves` are `image old → new` lines, `reason` what the sync said.
pub fn rollback_message(
    automation: &str,
    moves: &[String],
    revision: &str,
    reason: &str,
) -> String {
    let subject = match moves {
        [only] => format!("Roll back {only}"),
        _ => format!("Roll back {} images", moves.len()),
    };
    let lines: String = moves.iter().map(|m| format!("- {m}\n")).collect();
    // What the cluster said is server text: bounded, on its own lines.
    let reason: String = reason.chars().take(2000).collect();
    cleanup(&format!(
        "{subject}\n\nThe rollout of {revision} failed:\n\n{reason}\n\nPut back what last ran healthy:\n\n{lines}\n{TRAILER}: {automation}\n"
    ))
}

/// The default commit message: which images moved where, and a trailer
/// naming the automation.
pub fn default_message(automation: &str, changes: &ChangeSet) -> String {
    // Lines like `ghcr.io/acme/app 1.2.3 → 1.3.0 (clusters/prod/app.yaml)`,
    // one per distinct move, listing every file it touched.
    let mut moves: Vec<(String, Vec<String>)> = Vec::new();
    for c in &changes.changes {
        let line = match moved(c) {
            Moved::Tags { image, old, new } => format!("{image} {old} → {new}"),
            // A `:name` marker: the values are the image.
            Moved::Values => format!("{} → {}", c.old, c.new),
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

/// How one change reads to a person.
enum Moved<'a> {
    /// The image stayed and its tag (or digest) moved: a reference marker
    /// whose image is unchanged, or a `:tag`/`:digest` marker, whose
    /// values name no image of their own.
    Tags {
        image: &'a str,
        old: &'a str,
        new: &'a str,
    },
    /// The values are image names (a `:name` marker, or a reference that
    /// moved to another repository): they say it all.
    Values,
}

fn moved(c: &Change) -> Moved<'_> {
    match (split_ref(&c.old), split_ref(&c.new)) {
        // `sha256:…` splits too; only the selected image counts as a name.
        (Some((old_name, old)), Some((new_name, new)))
            if old_name == new_name && new_name == c.image =>
        {
            Moved::Tags {
                image: &c.image,
                old,
                new,
            }
        }
        _ if c.new.starts_with(&c.image) => Moved::Values,
        _ => Moved::Tags {
            image: &c.image,
            old: &c.old,
            new: &c.new,
        },
    }
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
    /// The objects changed, sorted: each has `kind`, `namespace` and
    /// `name`, and prints as `Kind ns/name`.
    objects: Vec<minijinja::Value>,
    /// hoist's default message, to embed or extend.
    default: String,
}

/// An object as a template sees it: its fields by name, and
/// `Kind ns/name` when printed, so `{{ objects | join(", ") }}` reads well
/// and `{{ o.name }}` works too.
#[derive(Debug)]
struct TemplateObject(ObjectRef);

impl minijinja::value::Object for TemplateObject {
    fn get_value(self: &std::sync::Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        let field = match key.as_str()? {
            "kind" => &self.0.kind,
            "namespace" => &self.0.namespace,
            "name" => &self.0.name,
            _ => return None,
        };
        // An absent part is `none`, not undefined: a document may name no
        // namespace, and a template testing for it must not fail.
        Some(
            field
                .as_deref()
                .map_or(minijinja::Value::from(()), minijinja::Value::from),
        )
    }

    fn enumerate(self: &std::sync::Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Str(&["kind", "namespace", "name"])
    }

    fn render(self: &std::sync::Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

#[derive(Serialize)]
struct Named<'a> {
    namespace: &'a str,
    name: &'a str,
}

/// The longest commit message a `messageTemplate` may render. Git itself
/// takes far more; a message past a mebibyte is a template gone wrong.
pub const COMMIT_MESSAGE_LIMIT: usize = 1 << 20;
/// The longest pull request title, in bytes: GitLab and Gitea refuse more
/// than 255 characters, GitHub 256. A longer default title (the commit
/// subject) is cut to fit; a `title` template past it is an error.
pub const TITLE_LIMIT: usize = 255;
/// How long one render may take.
pub const RENDER_TIME_LIMIT: Duration = Duration::from_secs(2);
/// minijinja fuel for one render: roughly a million instructions, or
/// 64 MB of values created, whichever runs out first. A template over
/// thousands of changes uses a fraction of it.
pub const RENDER_FUEL: u64 = 1_000_000;
/// Nesting depth of loops, conditions and macro calls one render may reach;
/// well inside what a worker thread's stack holds.
pub const RENDER_RECURSION_LIMIT: usize = 100;

/// Renders `template` (minijinja, Jinja2 syntax; an unknown variable is an
/// error) and makes sure the message ends with hoist's trailer. `field`
/// names the template in errors (`spec.git.commit.messageTemplate`).
pub fn render(
    field: &str,
    template: &str,
    automation: &str,
    changes: &ChangeSet,
) -> Result<String, TemplateError> {
    let mut message = render_bounded(field, template, automation, changes, COMMIT_MESSAGE_LIMIT)?;
    let trailer = format!("{TRAILER}: {automation}");
    if !message.lines().any(|l| l.trim() == trailer) {
        if !message.ends_with('\n') {
            message.push('\n');
        }
        message.push_str(&format!("\n{trailer}\n"));
    }
    Ok(message)
}

/// A Flux automation's commit message, as Flux's image-automation-controller
/// writes it: its Go `messageTemplate` over Flux's template data, or
/// Flux's default message when there is none; never a trailer. `root` is
/// the `update.path` the changes' files are named from, as Flux names
/// them (relative to it).
pub fn render_flux(
    template: Option<&str>,
    automation: &crate::model::ObjectKey,
    changes: &ChangeSet,
    root: &std::path::Path,
    values: &std::collections::BTreeMap<String, String>,
) -> Result<String, TemplateError> {
    let field = "spec.git.commit.messageTemplate";
    let template = match template {
        Some(t) if !t.is_empty() => t,
        _ => return Ok(FLUX_DEFAULT_MESSAGE.to_string()),
    };
    let error = |e: crate::gotemplate::TemplateError| TemplateError {
        field: field.to_string(),
        message: e.to_string(),
    };
    let flux_changes: Vec<crate::gotemplate::FluxChange> = changes
        .changes
        .iter()
        .map(|c| crate::gotemplate::FluxChange {
            file: c
                .file
                .strip_prefix(root)
                .unwrap_or(&c.file)
                .to_string_lossy()
                .into_owned(),
            api_version: c.object.api_version.clone().unwrap_or_default(),
            kind: c.object.kind.clone().unwrap_or_default(),
            name: c.object.name.clone().unwrap_or_default(),
            namespace: c.object.namespace.clone().unwrap_or_default(),
            old: c.old.clone(),
            new: c.new.clone(),
            setter: c.marker.clone(),
        })
        .collect();
    let data = crate::gotemplate::flux_data(
        &automation.namespace,
        &automation.name,
        &flux_changes,
        values,
    );
    crate::gotemplate::Template::parse(template)
        .and_then(|t| t.render(&data, COMMIT_MESSAGE_LIMIT))
        .map_err(error)
}

/// A message as `git commit --cleanup=whitespace` would store it: trailing
/// whitespace off every line, runs of blank lines made one, no blank lines
/// at either end, one final newline. hoist's own messages go through it;
/// git itself commits verbatim, so a Flux message stays byte for byte what
/// its template rendered.
pub fn cleanup(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 1);
    let mut blank_run = false;
    for line in message.lines().map(str::trim_end) {
        if line.is_empty() {
            blank_run = !out.is_empty();
            continue;
        }
        if blank_run {
            out.push('\n');
            blank_run = false;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The default pull request body: a table of the changes and a footer
/// naming the automation, in at most `limit` bytes (a forge counts
/// characters, never more than bytes). Rows that do not fit are left out
/// and counted on an "… and N more" line: a body is shortened, never
/// refused.
pub fn pull_request_body(automation: &str, changes: &ChangeSet, limit: usize) -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let header = "| Image | Old | New | File | Object |\n| --- | --- | --- | --- | --- |\n";
    let footer =
        format!("\nOpened and kept up to date by hoist for ImageUpdateAutomation {automation}.\n");
    let more = |n: usize| format!("\n… and {n} more\n");
    let mut body = String::from(header);
    for (i, c) in changes.changes.iter().enumerate() {
        let (old, new) = match moved(c) {
            Moved::Tags { old, new, .. } => (old, new),
            Moved::Values => (c.old.as_str(), c.new.as_str()),
        };
        let image = &c.image;
        let row = format!(
            "| {} | {} | {} | {}:{} | {} |\n",
            cell(image),
            cell(old),
            cell(new),
            cell(&c.file.display().to_string()),
            c.line,
            cell(&c.object.to_string())
        );
        let left = changes.changes.len() - i - 1;
        // Room for this row, the footer, and the count of rows after it.
        let tail = footer.len() + if left > 0 { more(left).len() } else { 0 };
        if body.len() + row.len() + tail > limit {
            body.push_str(&more(left + 1));
            break;
        }
        body.push_str(&row);
    }
    body.push_str(&footer);
    if body.len() > limit {
        // Not even the header and footer fit (a forge limit far below any
        // real one): a cut body beats a refused one.
        let mut cut = limit.saturating_sub('…'.len_utf8());
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
        body.push('…');
    }
    body
}

/// A default title (the commit subject) cut to [`TITLE_LIMIT`].
pub fn shorten_title(title: &str) -> String {
    if title.len() <= TITLE_LIMIT {
        return title.to_string();
    }
    let mut cut = TITLE_LIMIT - '…'.len_utf8();
    while !title.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &title[..cut])
}

/// Renders a template without adding the trailer: pull request titles and
/// bodies, in at most `limit` bytes. `field` names the template in errors
/// (`spec.git.push.pullRequest.body`).
pub fn render_plain(
    field: &str,
    template: &str,
    automation: &str,
    changes: &ChangeSet,
    limit: usize,
) -> Result<String, TemplateError> {
    render_bounded(field, template, automation, changes, limit)
}

/// A template that cannot be rendered, and the field that holds it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct TemplateError {
    pub field: String,
    pub message: String,
}

/// Why a render was stopped from outside minijinja.
#[derive(Clone, Copy)]
enum Stop {
    Size,
    Time,
}

/// Where a render writes: refuses the write that would pass `limit` bytes
/// or come after `deadline`, which ends the render there.
struct Bounded {
    out: Vec<u8>,
    limit: usize,
    deadline: Instant,
    stopped: Option<Stop>,
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if Instant::now() > self.deadline {
            self.stopped = Some(Stop::Time);
            return Err(std::io::Error::other("rendering took too long"));
        }
        if self.out.len() + buf.len() > self.limit {
            self.stopped = Some(Stop::Size);
            return Err(std::io::Error::other("rendered text too long"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `1 MiB`, `64 KiB`, `255 bytes`.
fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

fn render_bounded(
    field: &str,
    template: &str,
    automation: &str,
    changes: &ChangeSet,
    limit: usize,
) -> Result<String, TemplateError> {
    render_until(
        field,
        template,
        automation,
        changes,
        limit,
        Instant::now() + RENDER_TIME_LIMIT,
    )
}

fn render_until(
    field: &str,
    template: &str,
    automation: &str,
    changes: &ChangeSet,
    limit: usize,
    deadline: Instant,
) -> Result<String, TemplateError> {
    let fail = |message: String| TemplateError {
        field: field.to_string(),
        message,
    };
    let (namespace, name) = automation
        .split_once('/')
        .unwrap_or((crate::model::DEFAULT_NAMESPACE, automation));
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(RENDER_FUEL));
    env.set_recursion_limit(RENDER_RECURSION_LIMIT);
    let compiled = env
        .template_from_str(template)
        .map_err(|e| fail(describe(&e)))?;
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
            .map(|c| &c.object)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|o| minijinja::Value::from_object(TemplateObject(o.clone())))
            .collect(),
        default: default_message(automation, changes),
    };
    let mut out = Bounded {
        out: Vec::new(),
        limit,
        deadline,
        stopped: None,
    };
    let rendered = compiled.render_captured_to(minijinja::value::Serde(&context), &mut out);
    let too_slow = || {
        format!(
            "rendering took longer than {} s",
            RENDER_TIME_LIMIT.as_secs()
        )
    };
    match (rendered, out.stopped) {
        (Err(_), Some(Stop::Size)) => Err(fail(format!("rendered text exceeds {}", size(limit)))),
        (Err(_), Some(Stop::Time)) => Err(fail(too_slow())),
        (Err(e), None) if e.kind() == minijinja::ErrorKind::OutOfFuel => Err(fail(format!(
            "rendering took too long: it used up its budget of {RENDER_FUEL} steps"
        ))),
        (Err(e), None) => Err(fail(describe(&e))),
        // Work after the last write (a loop that prints nothing) counts too.
        (Ok(_), _) if Instant::now() > deadline => Err(fail(too_slow())),
        (Ok(_), _) => {
            String::from_utf8(out.out).map_err(|_| fail("rendered text is not UTF-8".to_string()))
        }
    }
}

/// Renders a template over a sample change, so a broken template is found
/// when the file is loaded rather than when hoist is about to push.
/// `field` names the template in the error; `limit` is what it may render
/// to (a pull request title's is the forges').
pub fn check_template(field: &str, template: &str, limit: usize) -> Result<(), TemplateError> {
    let sample = ChangeSet {
        changes: vec![Change {
            file: "clusters/prod/app.yaml".into(),
            line: 12,
            object: ObjectRef {
                kind: Some("Deployment".into()),
                namespace: Some("prod".into()),
                name: Some("app".into()),
                api_version: Some("apps/v1".into()),
            },
            marker: "apps:app".into(),
            policy: "apps/app".into(),
            image: "ghcr.io/acme/app".into(),
            old: "ghcr.io/acme/app:1.2.3".into(),
            new: "ghcr.io/acme/app:1.3.0".into(),
        }],
    };
    render_bounded(field, template, "apps/fleet", &sample, limit).map(|_| ())
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

    fn change(file: &str, image: &str, old: &str, new: &str) -> Change {
        Change {
            file: file.into(),
            line: 1,
            object: ObjectRef::default(),
            marker: "apps:app".into(),
            policy: "apps/app".into(),
            image: image.into(),
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
                    "ghcr.io/acme/app",
                    "ghcr.io/acme/app:1.2.3",
                    "ghcr.io/acme/app:1.3.0",
                ),
                change(
                    "clusters/prod/app2.yaml",
                    "ghcr.io/acme/app",
                    "ghcr.io/acme/app:1.2.3",
                    "ghcr.io/acme/app:1.3.0",
                ),
            ],
        };
        assert_eq!(
            default_message("apps/fleet", &one),
            "Update ghcr.io/acme/app 1.2.3 → 1.3.0\n\n- ghcr.io/acme/app 1.2.3 → 1.3.0 (clusters/prod/app.yaml, clusters/prod/app2.yaml)\n\nHoist-Automation: apps/fleet\n"
        );
        let mixed = ChangeSet {
            changes: vec![
                change(
                    "a.yaml",
                    "localhost:5000/x",
                    "localhost:5000/x:1",
                    "localhost:5000/x:2",
                ),
                // A `:tag` marker: the values are tags, the image comes
                // from the policy.
                change("b.yaml", "localhost:5000/y", "1.0", "1.1"),
                // A `:digest` marker: `sha256:` is no image name.
                change("c.yaml", "localhost:5000/z", "sha256:aa", "sha256:bb"),
                // A `:name` marker: the values are the image.
                change(
                    "d.yaml",
                    "ghcr.io/acme/w",
                    "docker.io/acme/w",
                    "ghcr.io/acme/w",
                ),
            ],
        };
        let message = default_message("apps/fleet", &mixed);
        assert!(message.starts_with("Update 4 images\n\n- localhost:5000/x 1 → 2 (a.yaml)\n- localhost:5000/y 1.0 → 1.1 (b.yaml)\n- localhost:5000/z sha256:aa → sha256:bb (c.yaml)\n- docker.io/acme/w → ghcr.io/acme/w (d.yaml)\n"), "{message}");
        let tag_only = ChangeSet {
            changes: vec![change("b.yaml", "localhost:5000/y", "1.0", "1.1")],
        };
        assert!(
            default_message("apps/fleet", &tag_only)
                .starts_with("Update localhost:5000/y 1.0 → 1.1\n"),
            "the subject names the image"
        );
        let body = pull_request_body("apps/fleet", &mixed, 65_536);
        assert!(
            body.contains("| localhost:5000/y | 1.0 | 1.1 | b.yaml:1 | - |\n"),
            "{body}"
        );
        assert!(
            body.contains(
                "| ghcr.io/acme/w | docker.io/acme/w | ghcr.io/acme/w | d.yaml:1 | - |\n"
            ),
            "{body}"
        );
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
                    api_version: None,
                },
                marker: "apps:web".into(),
                policy: "apps/web".into(),
                image: "localhost:5000/app".into(),
                old: "web:1".into(),
                new: "web:2".into(),
            }],
        };
        let out = render(
            "spec.git.commit.messageTemplate",
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
        // Objects are values: fields by name, `Kind ns/name` printed; a
        // document without a namespace gives `none`, not an error.
        let mut two = changes.clone();
        two.changes.push(Change {
            object: ObjectRef {
                kind: Some("CronJob".into()),
                namespace: None,
                name: Some("nightly".into()),
                api_version: None,
            },
            ..changes.changes[0].clone()
        });
        let out = render(
            "spec.git.commit.messageTemplate",
            "{% for o in objects %}{{ o.kind }} {{ o.name }} in {{ o.namespace or 'its default' }}; {% endfor %}{{ changes[0].image }}",
            "apps/fleet",
            &two,
        );
        assert_eq!(
            out.as_deref(),
            Ok(
                "CronJob nightly in its default; Deployment web in prod; localhost:5000/app\n\nHoist-Automation: apps/fleet\n"
            )
        );
        assert!(
            check_template(
                "spec.git.commit.messageTemplate",
                "{{ nope }}",
                COMMIT_MESSAGE_LIMIT
            )
            .is_err()
        );
        assert!(
            check_template(
                "spec.git.commit.messageTemplate",
                "{% for %}",
                COMMIT_MESSAGE_LIMIT
            )
            .is_err()
        );
        assert!(
            check_template(
                "spec.git.commit.messageTemplate",
                "{{ default }}",
                COMMIT_MESSAGE_LIMIT
            )
            .is_ok()
        );
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    fn changes(n: usize) -> ChangeSet {
        ChangeSet {
            changes: (0..n)
                .map(|i| Change {
                    file: format!("clusters/prod/app-{i}.yaml").into(),
                    line: 7,
                    object: ObjectRef {
                        kind: Some("Deployment".into()),
                        namespace: Some("prod".into()),
                        name: Some(format!("app-{i}")),
                        api_version: None,
                    },
                    marker: "apps:app".into(),
                    policy: "apps/app".into(),
                    image: format!("ghcr.io/acme/app-{i}"),
                    old: format!("ghcr.io/acme/app-{i}:1.2.3"),
                    new: format!("ghcr.io/acme/app-{i}:1.3.0"),
                })
                .collect(),
        }
    }

    const FIELD: &str = "spec.git.commit.messageTemplate";

    #[test]
    fn a_message_past_the_cap_fails_naming_the_field() {
        // About 1.4 MB: past the cap, but small enough to render whole
        // where there is no cap.
        let big = "{% for i in range(10000) %}{{ default }}{% endfor %}";
        let error = render(FIELD, big, "apps/fleet", &changes(1))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("spec.git.commit.messageTemplate: rendered text exceeds 1 MiB")
        );
        // The bomb (a gigabyte uncapped) stops at the cap as well.
        let bomb = "{% for a in range(10000) %}{% for b in range(10000) %}{{ default }}{% endfor %}{% endfor %}";
        let error = render(FIELD, bomb, "apps/fleet", &changes(1))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("spec.git.commit.messageTemplate: rendered text exceeds 1 MiB")
        );
        // And it is found when the file is loaded.
        assert!(check_template(FIELD, bomb, COMMIT_MESSAGE_LIMIT).is_err());
    }

    #[test]
    fn work_that_writes_nothing_is_bounded_too() {
        let silent = "{% for a in range(10000) %}{% for b in range(10000) %}{% set x = a ~ b %}{% endfor %}{% endfor %}";
        let error = render(FIELD, silent, "apps/fleet", &changes(1))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.starts_with("spec.git.commit.messageTemplate: rendering took too long"),
            "{error}"
        );
        let recursive = "{% macro down(n) %}{{ down(n + 1) }}{% endmacro %}{{ down(0) }}";
        let error = render(FIELD, recursive, "apps/fleet", &changes(1))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.starts_with(FIELD), "{error}");
    }

    #[test]
    fn a_render_past_its_deadline_stops() {
        // A deadline already passed stands for a render that took too long,
        // without a test that waits.
        let now = Instant::now();
        let passed = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
        let template = "{% for c in changes %}{{ c.old }}\n{% endfor %}";
        let error = render_until(FIELD, template, "apps/fleet", &changes(3), 1 << 20, passed)
            .err()
            .map(|e| e.message);
        assert_eq!(error.as_deref(), Some("rendering took longer than 2 s"));
        // Work after the last write counts too.
        let silent = "{% for c in changes %}{% set x = c.old %}{% endfor %}";
        let error = render_until(FIELD, silent, "apps/fleet", &changes(3), 1 << 20, passed)
            .err()
            .map(|e| e.message);
        assert_eq!(error.as_deref(), Some("rendering took longer than 2 s"));
    }

    #[test]
    fn a_template_over_thousands_of_changes_stays_within_the_limits() {
        let template =
            "{% for c in changes %}{{ c.old }} -> {{ c.new }} in {{ c.file }}\n{% endfor %}";
        let message =
            render(FIELD, template, "apps/fleet", &changes(5000)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(message.lines().count(), 5002);
    }

    #[test]
    fn a_templated_title_or_body_past_its_limit_fails_naming_the_field() {
        let error = render_plain(
            "spec.git.push.pullRequest.title",
            "{{ 'x' * 300 }}",
            "apps/fleet",
            &changes(1),
            TITLE_LIMIT,
        )
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("spec.git.push.pullRequest.title: rendered text exceeds 255 bytes")
        );
        let long = "Update ".to_string() + &"é".repeat(300);
        let title = shorten_title(&long);
        assert!(
            title.len() <= TITLE_LIMIT && title.ends_with('…'),
            "{title}"
        );
    }

    #[test]
    fn the_default_body_is_shortened_to_the_forge_limit_never_refused() {
        for (n, limit) in [(3000, 65_536), (40_000, 1_048_576), (5, 400)] {
            let body = pull_request_body("apps/fleet", &changes(n), limit);
            assert!(body.len() <= limit, "{n} changes: {} bytes", body.len());
            let rows = body.lines().filter(|l| l.starts_with("| ghcr.io")).count();
            assert!(rows > 0 && rows < n, "{n} changes: {rows} rows");
            assert!(
                body.contains(&format!("\n… and {} more\n", n - rows)),
                "{body}"
            );
            assert!(body.ends_with("ImageUpdateAutomation apps/fleet.\n"));
        }
        // Everything fits: no count line.
        let body = pull_request_body("apps/fleet", &changes(3), 65_536);
        assert!(!body.contains("more"), "{body}");
        assert_eq!(
            body.lines().filter(|l| l.starts_with("| ghcr.io")).count(),
            3
        );
    }

    #[test]
    fn cleanup_stores_what_git_commits_whitespace_cleanup_would() {
        assert_eq!(cleanup("Update\n"), "Update\n");
        assert_eq!(cleanup("Update"), "Update\n");
        assert_eq!(
            cleanup("\n\n  \nUpdate app  \n\n\n\n- a \t\n\nTrailer: x\n\n"),
            "Update app\n\n- a\n\nTrailer: x\n"
        );
        assert_eq!(cleanup("\r\nA\r\n\r\nB\r\n"), "A\n\nB\n");
        assert_eq!(
            cleanup("# kept: not a comment here\n"),
            "# kept: not a comment here\n"
        );
        assert_eq!(cleanup(" \n\n"), "");
    }
}
