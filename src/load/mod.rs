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
    ImageRepositorySpec, ImageUpdateAutomation, ImageUpdateAutomationSpec, PolicyChoice,
};
use node::{Node, Step};

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
    /// Things worth telling the user that do not stop hoist.
    pub warnings: Vec<LoadWarning>,
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

/// All problems found while loading, one per line.
#[derive(Debug, thiserror::Error)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
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
}

impl Kind {
    fn from_name(kind: &str) -> Option<Kind> {
        match kind {
            "ImageRepository" => Some(Kind::ImageRepository),
            "ImagePolicy" => Some(Kind::ImagePolicy),
            "ImageUpdateAutomation" => Some(Kind::ImageUpdateAutomation),
            _ => None,
        }
    }
}

/// Flux apiVersions whose ImageRepository and ImagePolicy documents hoist
/// reads unchanged.
const FLUX_VERSIONS: [&str; 2] = ["v1", "v1beta2"];

/// Reads every `.yaml` / `.yml` file under the given paths (files are read
/// whatever their name), in a stable order.
pub fn load(paths: &[PathBuf]) -> Result<ObjectSet, LoadErrors> {
    let mut set = ObjectSet::default();
    let mut errors = Vec::new();
    for path in paths {
        let mut files = Vec::new();
        if let Err(e) = collect_files(path, true, &mut files) {
            errors.push(e);
            continue;
        }
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(text) => load_text(&file, &text, &mut set, &mut errors),
                Err(source) => errors.push(LoadError::Io { path: file, source }),
            }
        }
    }
    check_duplicates(&set, &mut errors);
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(LoadErrors(errors))
    }
}

fn collect_files(path: &Path, explicit: bool, files: &mut Vec<PathBuf>) -> Result<(), LoadError> {
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
    if meta.is_file() {
        let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        if explicit || yaml {
            files.push(path.to_path_buf());
        }
    } else if meta.is_dir() {
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
    }
    Ok(())
}

/// Reads the documents of one file into the set.
pub fn load_text(path: &Path, text: &str, set: &mut ObjectSet, errors: &mut Vec<LoadError>) {
    let documents = match node::parse_documents(text) {
        Ok(docs) => docs,
        Err(e) => {
            let location = e.location();
            errors.push(LoadError::Yaml {
                path: path.to_path_buf(),
                line: location.map_or(0, |l| u32::try_from(l.line()).unwrap_or(u32::MAX)),
                column: location.map_or(0, |l| u32::try_from(l.column()).unwrap_or(u32::MAX)),
                message: e.without_snippet().to_string(),
            });
            return;
        }
    };
    for doc in &documents {
        if let Err(e) = load_document(path, doc, set) {
            errors.push(e);
        }
    }
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
        let mut unknown = Vec::new();
        let mut note_unknown = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
        let de = serde_ignored::Deserializer::new(json, &mut note_unknown);
        let value: T = serde_path_to_error::deserialize(de).map_err(|e| {
            let inner = e.path().to_string();
            let full = if inner == "." {
                field.to_string()
            } else {
                format!("{field}.{inner}")
            };
            self.invalid(&full, e.into_inner().to_string())
        })?;
        for path in unknown {
            warnings.push(self.warning(
                &format!("{field}.{path}"),
                "unknown field, ignored; check its spelling against `hoist crds`",
            ));
        }
        Ok(value)
    }
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
    let Some(kind) = Kind::from_name(kind_name) else {
        tracing::debug!(path = %path.display(), line = root.line, kind = kind_name, "skipping a kind hoist does not read");
        return Ok(());
    };
    let metadata_name = root
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Node::as_str)
        .unwrap_or("");
    let namespace = root
        .get("metadata")
        .and_then(|m| m.get("namespace"))
        .and_then(Node::as_str)
        .filter(|ns| !ns.is_empty())
        .unwrap_or("default");
    let doc = Document {
        path,
        root,
        object: format!("{kind_name} {namespace}/{metadata_name}"),
    };

    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
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
        tracing::debug!(path = %path.display(), line = root.line, api_version, "skipping a kind of another API group");
        return Ok(());
    }

    let mut warnings = Vec::new();
    let mut metadata: ObjectMeta = doc.typed("metadata", &mut warnings)?;
    if metadata.name.as_deref().unwrap_or("").is_empty() {
        return Err(doc.invalid("metadata.name", "every object needs a name"));
    }
    metadata.namespace = Some(namespace.to_string());
    let origin = doc.origin();
    match kind {
        Kind::ImageRepository => {
            let spec: ImageRepositorySpec = doc.typed("spec", &mut warnings)?;
            validate::repository(&doc, &spec, &mut warnings)?;
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
            let spec: ImagePolicySpec = doc.typed("spec", &mut warnings)?;
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
            let spec: ImageUpdateAutomationSpec = doc.typed("spec", &mut warnings)?;
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
    }
    set.warnings.extend(warnings);
    Ok(())
}

/// Flux's policy is three optional fields of which exactly one may be set;
/// ours is an enum. Say which kinds clash before serde's generic message
/// about map lengths would.
fn check_one_policy_kind(doc: &Document<'_>) -> Result<(), LoadError> {
    let Some(policy) = doc.root.get("spec").and_then(|s| s.get("policy")) else {
        return Err(doc.invalid(
            "spec.policy",
            "missing; set exactly one of semver, alphabetical or numerical",
        ));
    };
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
}

#[cfg(test)]
mod tests;
