//! Reads ImageRepository, ImagePolicy and ImageUpdateAutomation documents
//! from files and directories (`-f PATH`) and validates them.
//!
//! Every problem is reported with the file, the line, the object
//! (`kind ns/name`) and the field, so a user can go straight to it. Loading
//! collects all problems of all files before failing, so one run shows
//! everything to fix.

mod document;
mod files;
mod flux;
mod kinds;
mod node;
mod secrets;
mod validate;

use document::{Document, yaml_message};
use files::mentions_hoist_kind;
pub use files::{load, refuse_state_directory};
use kinds::{check_duplicates, identity, load_document};
pub use secrets::SecretData;
use secrets::{load_namespace, load_secret};

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
    /// Notifications: where (Provider) and which events (Alert).
    pub providers: Vec<Loaded<crate::api::Provider>>,
    pub alerts: Vec<Loaded<crate::api::Alert>>,
    /// `v1` Secrets in the files, which `secretRef` and `certSecretRef`
    /// name in standalone mode as they would in a cluster.
    pub secrets: Vec<Loaded<SecretData>>,
    /// The labels of the `v1` Namespaces in the files, by name (with
    /// `kubernetes.io/metadata.name`, as the API server adds it): what an
    /// ImageRepository's `accessFrom` selects in standalone mode.
    pub namespaces: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    /// Flux's GitRepositories in the files, which Flux
    /// ImageUpdateAutomations name as their source.
    pub git_repositories: Vec<Loaded<flux::GitRepository>>,
    /// Flux ImageUpdateAutomations read and not yet joined with their
    /// GitRepository (see [`finish`]); empty once loading is done.
    flux_automations: Vec<Loaded<flux::FluxAutomation>>,
    /// Things worth telling the user that do not stop hoist.
    pub warnings: Vec<LoadWarning>,
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

/// The checks and joins across files, once every file is read: Flux
/// automations meet their GitRepositories, and no object is defined twice.
pub fn finish(set: &mut ObjectSet, errors: &mut Vec<LoadError>) {
    flux::resolve(set, errors);
    check_duplicates(set, errors);
}

/// Reads the documents of one file into the set; [`finish`] once all are read.
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

#[cfg(test)]
mod tests;
