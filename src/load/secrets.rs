//! Namespaces and Secrets in the files: what other objects' references
//! and `secretRef`s are checked against. A Secret's values never reach a
//! message.

use super::*;

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

/// A Namespace's labels; the rest of it is the cluster's business. One
/// whose metadata does not read is skipped, as any document that is not
/// hoist's: it then admits nothing.
pub(super) fn load_namespace(
    path: &Path,
    root: &Node,
    set: &mut ObjectSet,
) -> Result<(), LoadError> {
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

/// Reads a `v1` Secret: `data` (base64) and `stringData`.
pub(super) fn load_secret(path: &Path, root: &Node, set: &mut ObjectSet) -> Result<(), LoadError> {
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
