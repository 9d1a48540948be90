//! Reads ImageRepository, ImagePolicy and ImageUpdateAutomation documents
//! from files and directories (`-f PATH`) and validates them.
//!
//! Every problem is reported with the file, the line, the object
//! (`kind ns/name`) and the field, so a user can go straight to it. Loading
//! collects all problems of all files before failing, so one run shows
//! everything to fix.

mod node;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;

use crate::api::{
    API_VERSION, FLUX_IMAGE_GROUP, ImagePolicy, ImagePolicySpec, ImageRepository,
    ImageRepositorySpec, ImageUpdateAutomation, ImageUpdateAutomationSpec, PolicyChoice, Receiver,
    ReceiverSpec,
};
use node::{Node, Step};

/// Stack a thread needs to load the deepest document the YAML parser lets
/// through (64 levels; deeper is refused): a debug build spends about
/// 37 KiB a level, so tokio's default of 2 MiB overflows at 56 levels.
/// Every runtime hoist starts gives its threads this much, which is what a
/// main thread gets by default.
pub const STACK_BYTES: usize = 8 << 20;

/// Where an object was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub path: PathBuf,
    /// The line the document starts on (1-based).
    pub line: u32,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// An object and where it came from.
#[derive(Clone, Debug)]
pub struct Loaded<T> {
    pub object: T,
    pub origin: Origin,
}

/// Everything read from the `-f` paths.
#[derive(Clone, Debug, Default)]
pub struct ObjectSet {
    pub repositories: Vec<Loaded<ImageRepository>>,
    pub policies: Vec<Loaded<ImagePolicy>>,
    pub automations: Vec<Loaded<ImageUpdateAutomation>>,
    pub receivers: Vec<Loaded<Receiver>>,
    /// `v1` Secrets in the files, which `secretRef` and `certSecretRef`
    /// name in standalone mode as they would in a cluster.
    pub secrets: Vec<Loaded<SecretData>>,
    /// The labels of the `v1` Namespaces in the files, by name (with
    /// `kubernetes.io/metadata.name`, as the API server adds it): what an
    /// ImageRepository's `accessFrom` selects in standalone mode.
    pub namespaces: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    /// Things worth telling the user that do not stop hoist.
    pub warnings: Vec<LoadWarning>,
}

/// A Secret's name and decoded data (`data` base64-decoded, `stringData`
/// merged over it, as the API server does).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretData {
    pub namespace: String,
    pub name: String,
    pub type_: Option<String>,
    pub data: std::collections::BTreeMap<String, Vec<u8>>,
}

impl fmt::Debug for SecretData {
    // Secret values never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretData")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("type", &self.type_)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ObjectSet {
    /// The Secret `name` in `namespace`, if the files hold it.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<&SecretData> {
        self.secrets
            .iter()
            .map(|s| &s.object)
            .find(|s| s.namespace == namespace && s.name == name)
    }
}

/// A problem that stops loading. Displayed as one line that names the
/// file, the line, the object and the field.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A path could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid YAML.
    #[error("{}:{line}:{column}: not valid YAML: {message}", path.display())]
    Yaml {
        path: PathBuf,
        line: u32,
        column: u32,
        message: String,
    },
    /// A field of an object is missing, has the wrong type or an invalid value.
    #[error("{}:{line}: {object}: {field}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: u32,
        object: String,
        field: String,
        message: String,
    },
    /// Two documents define the same object.
    #[error("{origin}: {object} is defined twice; the other definition is at {first}")]
    Duplicate {
        object: String,
        origin: Origin,
        first: Origin,
    },
}

/// All problems found while loading, one per line, and the warnings met
/// on the way (a misspelt field is often the cause of an error).
#[derive(Debug, thiserror::Error)]
pub struct LoadErrors {
    pub errors: Vec<LoadError>,
    pub warnings: Vec<LoadWarning>,
}

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Something hoist accepted but the user should know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadWarning {
    pub path: PathBuf,
    pub line: u32,
    pub object: String,
    pub message: String,
}

impl fmt::Display for LoadWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.path.display(),
            self.line,
            self.object,
            self.message
        )
    }
}

/// The kinds hoist reads, with the apiVersions it reads them in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // the names are the kinds' own
enum Kind {
    ImageRepository,
    ImagePolicy,
    ImageUpdateAutomation,
    Receiver,
}

impl Kind {
    fn from_name(kind: &str) -> Option<Kind> {
        match kind {
            "ImageRepository" => Some(Kind::ImageRepository),
            "ImagePolicy" => Some(Kind::ImagePolicy),
            "ImageUpdateAutomation" => Some(Kind::ImageUpdateAutomation),
            "Receiver" => Some(Kind::Receiver),
            _ => None,
        }
    }
}

/// Flux apiVersions whose ImageRepository and ImagePolicy documents hoist
/// reads unchanged.
const FLUX_VERSIONS: [&str; 2] = ["v1", "v1beta2"];

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
    check_duplicates(&set, &mut errors);
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
fn mentions_hoist_kind(text: &str) -> bool {
    static KIND: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r#"(?m)^\s*kind:\s*["']?(ImageRepository|ImagePolicy|ImageUpdateAutomation|Receiver)\b"#,
        )
        .ok()
    });
    KIND.as_ref().is_none_or(|re| re.is_match(text))
}

/// Refuses automations whose `git.url` is a local path into hoist's own
/// state directory (`--state-dir`): the caches there are clones that other
/// automations made, whose configuration and hooks hoist never wrote, and
/// the store and key files beside them are hoist's alone. Made before the
/// state directory is opened, so nothing has been created when it fails.
pub fn refuse_state_directory(set: &ObjectSet, state_dir: &Path) -> Result<(), LoadErrors> {
    let Some(state) = resolved(state_dir) else {
        return Ok(());
    };
    let errors: Vec<LoadError> = set
        .automations
        .iter()
        .filter(|a| {
            crate::git::local_paths(&a.object.spec.git.url)
                .iter()
                .filter_map(|p| resolved(p))
                .any(|p| p.starts_with(&state))
        })
        .map(|a| LoadError::Invalid {
            path: a.origin.path.clone(),
            line: a.origin.line,
            object: format!(
                "ImageUpdateAutomation {}/{}",
                crate::model::namespace_of(&a.object.metadata),
                a.object.metadata.name.as_deref().unwrap_or("")
            ),
            field: "spec.git.url".to_string(),
            message: format!(
                "{:?} is inside hoist's state directory {}: the clones there are hoist's caches, not a remote; name the repository itself",
                a.object.spec.git.url,
                state.display()
            ),
        })
        .collect();
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

/// Reads the documents of one file into the set.
pub fn load_text(
    path: &Path,
    text: &str,
    explicit: bool,
    set: &mut ObjectSet,
    errors: &mut Vec<LoadError>,
) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let documents = match node::parse_documents(text) {
        Ok(docs) => docs,
        Err(e) => {
            let location = e.location();
            let line = location.map_or(0, |l| u32::try_from(l.line()).unwrap_or(u32::MAX));
            let column = location.map_or(0, |l| u32::try_from(l.column()).unwrap_or(u32::MAX));
            let message = yaml_message(&e.without_snippet().to_string());
            if explicit || mentions_hoist_kind(text) {
                errors.push(LoadError::Yaml {
                    path: path.to_path_buf(),
                    line,
                    column,
                    message,
                });
            } else {
                set.warnings.push(LoadWarning {
                    path: path.to_path_buf(),
                    line,
                    object: "file".to_string(),
                    message: format!(
                        "skipped: not valid YAML ({message}), and it names no hoist kind"
                    ),
                });
            }
            return;
        }
    };
    for doc in &documents {
        if let Err(e) = load_document(path, doc, set) {
            errors.push(e);
        }
    }
}

/// serde-saphyr's message without the location (we print `file:line:col`
/// first) and without advice about its own options.
fn yaml_message(message: &str) -> String {
    let mut text = message.to_string();
    if let Some(at) = text.rfind(" at line ") {
        text.truncate(at);
    }
    for advice in [
        "; set DuplicateKeyPolicy in Options if acceptable",
        " (set ignore_binary_tag_for_string in Options)",
    ] {
        text = text.replace(advice, "");
    }
    // The parser's budgets bound what one file may cost; say which in
    // words, with what to do.
    if let Some(breach) = text.strip_prefix("budget breached: ") {
        return if breach.starts_with("Documents") {
            format!("more YAML documents in one file than hoist reads ({breach}); split the file")
        } else {
            format!(
                "past what hoist reads of one YAML file ({breach}): too large, too deep or too many aliases"
            )
        };
    }
    text.trim().to_string()
}

/// One document being read: where it is and what it is, for messages.
struct Document<'a> {
    path: &'a Path,
    root: &'a Node,
    object: String,
}

impl Document<'_> {
    fn origin(&self) -> Origin {
        Origin {
            path: self.path.to_path_buf(),
            line: self.root.line,
        }
    }

    /// An error about `field` (a dotted path from the document root).
    fn invalid(&self, field: &str, message: impl Into<String>) -> LoadError {
        LoadError::Invalid {
            path: self.path.to_path_buf(),
            line: self.root.line_of(&parse_path(field)),
            object: self.object.clone(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn warning(&self, field: &str, message: impl Into<String>) -> LoadWarning {
        LoadWarning {
            path: self.path.to_path_buf(),
            line: self.root.line_of(&parse_path(field)),
            object: self.object.clone(),
            message: format!("{field}: {}", message.into()),
        }
    }

    /// Deserializes the subtree at `field` into `T`. Type errors name the
    /// exact field; unknown fields become warnings, since a typo there
    /// would otherwise silently do nothing.
    fn typed<T: DeserializeOwned>(
        &self,
        field: &str,
        warnings: &mut Vec<LoadWarning>,
    ) -> Result<T, LoadError> {
        let json = self
            .root
            .get(field)
            .map_or(serde_json::Value::Null, Node::to_json);
        let mut unknown: Vec<Vec<Ignored>> = Vec::new();
        let mut note_unknown = |path: serde_ignored::Path<'_>| unknown.push(ignored_steps(&path));
        let de = serde_ignored::Deserializer::new(json, &mut note_unknown);
        let value: T = serde_path_to_error::deserialize(de).map_err(|e| {
            let inner = e.path().to_string();
            let full = if inner == "." {
                field.to_string()
            } else {
                format!("{field}.{inner}")
            };
            let message = e.into_inner().to_string();
            let message = if message.starts_with("invalid type: floating point")
                || message.starts_with("invalid type: integer")
            {
                format!("{message}; quote the value to keep it text, e.g. '1.10'")
            } else {
                message
            };
            self.invalid(&full, message)
        })?;
        let base = self.root.get(field);
        for steps in unknown {
            let path = base.map_or_else(|| "?".to_string(), |node| resolve_ignored(node, &steps));
            warnings.push(self.warning(
                &format!("{field}.{path}"),
                "unknown field, ignored; check its spelling against `hoist crds`",
            ));
        }
        Ok(value)
    }
}

/// One step of a path serde_ignored reports. An enum's variant name is
/// not in its path; the document has it.
enum Ignored {
    Key(String),
    Index(usize),
    Variant,
}

fn ignored_steps(path: &serde_ignored::Path<'_>) -> Vec<Ignored> {
    use serde_ignored::Path as P;
    let (parent, step) = match path {
        P::Root => return Vec::new(),
        P::Seq { parent, index } => (*parent, Some(Ignored::Index(*index))),
        P::Map { parent, key } => (*parent, Some(Ignored::Key(key.clone()))),
        P::Some { parent } | P::NewtypeStruct { parent } => (*parent, None),
        P::NewtypeVariant { parent } => (*parent, Some(Ignored::Variant)),
    };
    let mut steps = ignored_steps(parent);
    steps.extend(step);
    steps
}

/// The dotted path of an ignored field, with variant names read from the
/// document (`policy.semver.rnage`, not `policy.?.rnage`).
fn resolve_ignored(node: &Node, steps: &[Ignored]) -> String {
    let mut names = Vec::new();
    let mut at = Some(node);
    for step in steps {
        match step {
            Ignored::Key(key) => {
                names.push(key.clone());
                at = at.and_then(|n| n.get(key));
            }
            Ignored::Index(i) => {
                names.push(i.to_string());
                at = at.and_then(|n| match &n.value {
                    node::Value::Seq(items) => items.get(*i),
                    _ => None,
                });
            }
            Ignored::Variant => {
                let variant = at.and_then(|n| n.keys().first().map(|k| k.to_string()));
                names.push(variant.clone().unwrap_or_else(|| "?".to_string()));
                at = at.and_then(|n| variant.and_then(|v| n.get(&v)));
            }
        }
    }
    names.join(".")
}

/// Splits `spec.items[2].name` or `spec.items.2.name` into steps.
fn parse_path(field: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for part in field.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse().ok()),
            None => (part, None),
        };
        if !name.is_empty() {
            match name.parse::<usize>() {
                Ok(i) => steps.push(Step::Index(i)),
                Err(_) => steps.push(Step::Key(name.to_string())),
            }
        }
        if let Some(i) = index {
            steps.push(Step::Index(i));
        }
    }
    steps
}

fn load_document(path: &Path, root: &Node, set: &mut ObjectSet) -> Result<(), LoadError> {
    let api_version = root.get("apiVersion").and_then(Node::as_str);
    let kind_name = root.get("kind").and_then(Node::as_str);
    let (Some(api_version), Some(kind_name)) = (api_version, kind_name) else {
        tracing::debug!(path = %path.display(), line = root.line, "skipping a document without apiVersion and kind");
        return Ok(());
    };
    if api_version == "v1" && kind_name == "Secret" {
        return load_secret(path, root, set);
    }
    if api_version == "v1" && kind_name == "Namespace" {
        return load_namespace(path, root, set);
    }
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    // Flux's notification-controller has a Receiver kind of its own.
    let kind =
        Kind::from_name(kind_name).filter(|k| *k != Kind::Receiver || group == crate::api::GROUP);
    let Some(kind) = kind else {
        if group == crate::api::GROUP || group == FLUX_IMAGE_GROUP {
            set.warnings.push(LoadWarning {
                path: path.to_path_buf(),
                line: root.line_of(&[Step::Key("kind".into())]),
                object: format!("{api_version} {kind_name}"),
                message:
                    "skipped: hoist reads ImageRepository, ImagePolicy, ImageUpdateAutomation and Receiver"
                        .to_string(),
            });
        } else {
            tracing::debug!(path = %path.display(), line = root.line, kind = kind_name, "skipping a kind hoist does not read");
        }
        return Ok(());
    };
    let (metadata_name, namespace) = identity(root);
    let namespace = namespace.as_str();
    let doc = Document {
        path,
        root,
        object: format!("{kind_name} {namespace}/{metadata_name}"),
    };

    let version = api_version.split_once('/').map_or(api_version, |(_, v)| v);
    let flux = group == FLUX_IMAGE_GROUP;
    if flux && kind == Kind::ImageUpdateAutomation {
        set.warnings.push(doc.warning(
            "apiVersion",
            format!(
                "skipped: Flux's ImageUpdateAutomation names its repository through a GitRepository; \
                 write it as {API_VERSION} with spec.git.url to let hoist run it"
            ),
        ));
        return Ok(());
    }
    if flux && !FLUX_VERSIONS.contains(&version) {
        return Err(doc.invalid(
            "apiVersion",
            format!("{api_version} is not a Flux version hoist reads; use {FLUX_IMAGE_GROUP}/v1 or {API_VERSION}"),
        ));
    }
    if group == crate::api::GROUP && api_version != API_VERSION {
        return Err(doc.invalid(
            "apiVersion",
            format!("{api_version} is not a version this hoist reads; use {API_VERSION}"),
        ));
    }
    if !flux && group != crate::api::GROUP {
        // A hoist kind under a group hoist does not know is most likely a
        // typo in apiVersion; say so rather than skip it silently.
        set.warnings.push(doc.warning(
            "apiVersion",
            format!("skipped: {api_version} is neither {API_VERSION} nor {FLUX_IMAGE_GROUP}/v1"),
        ));
        return Ok(());
    }

    let mut metadata: ObjectMeta = doc.typed("metadata", &mut set.warnings)?;
    if metadata.name.as_deref().unwrap_or("").is_empty() {
        return Err(doc.invalid("metadata.name", "every object needs a name"));
    }
    metadata.namespace = Some(namespace.to_string());
    let origin = doc.origin();
    match kind {
        Kind::ImageRepository => {
            let spec: ImageRepositorySpec = doc.typed("spec", &mut set.warnings)?;
            validate::repository(&doc, &spec, &mut set.warnings)?;
            set.repositories.push(Loaded {
                object: ImageRepository {
                    metadata,
                    spec,
                    status: None,
                },
                origin,
            });
        }
        Kind::ImagePolicy => {
            check_one_policy_kind(&doc)?;
            let spec: ImagePolicySpec = doc.typed("spec", &mut set.warnings)?;
            validate::policy(&doc, &spec)?;
            set.policies.push(Loaded {
                object: ImagePolicy {
                    metadata,
                    spec,
                    status: None,
                },
                origin,
            });
        }
        Kind::ImageUpdateAutomation => {
            let spec: ImageUpdateAutomationSpec = doc.typed("spec", &mut set.warnings)?;
            validate::automation(&doc, &spec)?;
            set.automations.push(Loaded {
                object: ImageUpdateAutomation {
                    metadata,
                    spec,
                    status: None,
                },
                origin,
            });
        }
        Kind::Receiver => {
            let spec: ReceiverSpec = doc.typed("spec", &mut set.warnings)?;
            validate::receiver(&doc, &spec, namespace)?;
            set.receivers.push(Loaded {
                object: Receiver {
                    metadata,
                    spec,
                    status: None,
                },
                origin,
            });
        }
    }
    Ok(())
}

/// A document's `metadata.name` (as written, for messages, even when it is
/// not a string) and `metadata.namespace` (`default` when absent).
fn identity(root: &Node) -> (String, String) {
    let metadata = root.get("metadata");
    let name = match metadata.and_then(|m| m.get("name")) {
        Some(node) => node
            .as_str()
            .map_or_else(|| format!("{:?}", node.to_json()), str::to_string),
        None => String::new(),
    };
    let namespace = metadata
        .and_then(|m| m.get("namespace"))
        .and_then(Node::as_str)
        .filter(|ns| !ns.is_empty())
        .unwrap_or(crate::model::DEFAULT_NAMESPACE)
        .to_string();
    (name, namespace)
}

/// Reads a `v1` Secret: `data` (base64) and `stringData`.
/// A Namespace's labels; the rest of it is the cluster's business. One
/// whose metadata does not read is skipped, as any document that is not
/// hoist's: it then admits nothing.
fn load_namespace(path: &Path, root: &Node, set: &mut ObjectSet) -> Result<(), LoadError> {
    #[derive(serde::Deserialize)]
    struct Metadata {
        name: String,
        #[serde(default)]
        labels: std::collections::BTreeMap<String, String>,
    }
    let (name, _) = identity(root);
    let doc = Document {
        path,
        root,
        object: format!("Namespace {name}"),
    };
    let mut ignored = Vec::new();
    let Ok(mut metadata) = doc.typed::<Metadata>("metadata", &mut ignored) else {
        tracing::debug!(path = %path.display(), line = root.line, "skipping a Namespace whose metadata does not read");
        return Ok(());
    };
    metadata.labels.insert(
        "kubernetes.io/metadata.name".to_string(),
        metadata.name.clone(),
    );
    set.namespaces.insert(metadata.name, metadata.labels);
    Ok(())
}

fn load_secret(path: &Path, root: &Node, set: &mut ObjectSet) -> Result<(), LoadError> {
    #[derive(serde::Deserialize)]
    struct Metadata {
        name: String,
        #[serde(default)]
        namespace: Option<String>,
    }
    let (metadata_name, namespace) = identity(root);
    let doc = Document {
        path,
        root,
        object: format!("Secret {namespace}/{metadata_name}"),
    };
    // Secrets carry many keys hoist does not read; no unknown-field warnings.
    let mut ignored = Vec::new();
    let metadata: Metadata = doc.typed("metadata", &mut ignored)?;
    let encoded: Option<std::collections::BTreeMap<String, String>> =
        doc.typed("data", &mut ignored)?;
    let plain: Option<std::collections::BTreeMap<String, String>> =
        doc.typed("stringData", &mut ignored)?;
    let type_: Option<String> = doc.typed("type", &mut ignored)?;
    let mut data = std::collections::BTreeMap::new();
    for (key, value) in encoded.unwrap_or_default() {
        use base64::Engine;
        let compact: String = value.split_whitespace().collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|_| {
                doc.invalid(
                    &format!("data.{key}"),
                    "is not base64; put plain text under stringData instead",
                )
            })?;
        data.insert(key, bytes);
    }
    for (key, value) in plain.unwrap_or_default() {
        data.insert(key, value.into_bytes());
    }
    set.secrets.push(Loaded {
        object: SecretData {
            namespace: metadata
                .namespace
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| crate::model::DEFAULT_NAMESPACE.to_string()),
            name: metadata.name,
            type_,
            data,
        },
        origin: doc.origin(),
    });
    Ok(())
}

/// Flux's policy is three optional fields of which exactly one may be set;
/// ours is an enum. Say which kinds clash before serde's generic message
/// about map lengths would.
fn check_one_policy_kind(doc: &Document<'_>) -> Result<(), LoadError> {
    let spec = doc.root.get("spec");
    if spec.is_some_and(|s| !matches!(s.value, node::Value::Map(_))) {
        return Err(doc.invalid(
            "spec",
            "must be a mapping with imageRepositoryRef and policy",
        ));
    }
    let Some(policy) = spec.and_then(|s| s.get("policy")) else {
        return Err(doc.invalid(
            "spec.policy",
            "missing; set exactly one of semver, alphabetical or numerical",
        ));
    };
    if !matches!(policy.value, node::Value::Map(_)) {
        return Err(doc.invalid(
            "spec.policy",
            "must be a mapping with exactly one of semver, alphabetical or numerical, e.g. {semver: {range: '^1'}}",
        ));
    }
    let keys = policy.keys();
    let kinds: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| PolicyChoice::KINDS.contains(k))
        .collect();
    let unknown: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| !PolicyChoice::KINDS.contains(k))
        .collect();
    if let Some(other) = unknown.first() {
        return Err(doc.invalid(
            &format!("spec.policy.{other}"),
            format!(
                "unknown policy kind {other:?}; expected one of semver, alphabetical or numerical"
            ),
        ));
    }
    match kinds.as_slice() {
        [_] => Ok(()),
        [] => Err(doc.invalid(
            "spec.policy",
            "empty; set exactly one of semver, alphabetical or numerical",
        )),
        [first, second, ..] => Err(doc.invalid(
            &format!("spec.policy.{second}"),
            format!("{first} and {second} are both set; a policy has exactly one kind, remove all but one"),
        )),
    }
}

fn check_duplicates(set: &ObjectSet, errors: &mut Vec<LoadError>) {
    fn check<K: kube::Resource<DynamicType = ()>>(
        items: &[Loaded<K>],
        errors: &mut Vec<LoadError>,
    ) {
        let mut seen: std::collections::HashMap<(String, String), &Origin> = Default::default();
        for item in items {
            let meta = item.object.meta();
            let key = (
                meta.namespace.clone().unwrap_or_default(),
                meta.name.clone().unwrap_or_default(),
            );
            if let Some(first) = seen.get(&key) {
                errors.push(LoadError::Duplicate {
                    object: format!("{} {}/{}", K::kind(&()), key.0, key.1),
                    origin: item.origin.clone(),
                    first: (*first).clone(),
                });
            } else {
                seen.insert(key, &item.origin);
            }
        }
    }
    check(&set.repositories, errors);
    check(&set.policies, errors);
    check(&set.automations, errors);
    check(&set.receivers, errors);
}

#[cfg(test)]
mod tests;
