//! The kinds hoist reads (its own and Flux's image objects), each
//! document loaded as its kind, and the checks across objects.

use super::*;

/// The kinds hoist reads, with the apiVersions it reads them in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // the names are the kinds' own
enum Kind {
    ImageRepository,
    ImagePolicy,
    ImageUpdateAutomation,
    Receiver,
    Provider,
    Alert,
}

impl Kind {
    pub(super) fn from_name(kind: &str) -> Option<Kind> {
        match kind {
            "ImageRepository" => Some(Kind::ImageRepository),
            "ImagePolicy" => Some(Kind::ImagePolicy),
            "ImageUpdateAutomation" => Some(Kind::ImageUpdateAutomation),
            "Receiver" => Some(Kind::Receiver),
            "Provider" => Some(Kind::Provider),
            "Alert" => Some(Kind::Alert),
            _ => None,
        }
    }
}

/// Flux apiVersions whose ImageRepository and ImagePolicy documents hoist
/// reads unchanged.
const FLUX_VERSIONS: [&str; 2] = ["v1", "v1beta2"];

pub(super) fn load_document(
    path: &Path,
    root: &Node,
    set: &mut ObjectSet,
) -> Result<(), LoadError> {
    let api_version = root.get("apiVersion").and_then(Node::as_str);
    let kind_name = root.get("kind").and_then(Node::as_str);
    if let (None, Some(kind_name)) = (api_version, kind_name)
        && (Kind::from_name(kind_name).is_some() || kind_name == "GitRepository")
    {
        // A kind hoist reads without its apiVersion is most likely a
        // document cut short; skipping it silently would drop an object.
        set.warnings.push(LoadWarning {
            path: path.to_path_buf(),
            line: root.line_of(&[Step::Key("kind".into())]),
            object: kind_name.to_string(),
            message: format!("skipped: no apiVersion; write {API_VERSION} or the Flux group's v1"),
        });
        return Ok(());
    }
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
    if flux::is_git_repository(api_version, kind_name) {
        let (name, namespace) = identity(root);
        let doc = Document {
            path,
            root,
            object: format!("GitRepository {namespace}/{name}"),
        };
        let version = api_version.split_once('/').map_or("", |(_, v)| v);
        return flux::load_git_repository(&doc, version, &namespace, &name, set);
    }
    // Flux's notification-controller has a Receiver kind of its own.
    // And Provider and Alert kinds, which hoist reads in both groups.
    let kind = Kind::from_name(kind_name).filter(|k| {
        !matches!(k, Kind::Receiver | Kind::Provider | Kind::Alert) || group == crate::api::GROUP
    });
    let Some(kind) = kind else {
        if group == "notification.toolkit.fluxcd.io" && matches!(kind_name, "Provider" | "Alert") {
            let (name, namespace) = identity(root);
            let doc = Document {
                path,
                root,
                object: format!("{kind_name} {namespace}/{name}"),
            };
            let mut metadata: ObjectMeta = doc.typed("metadata", &mut set.warnings)?;
            if metadata.name.as_deref().unwrap_or("").is_empty() {
                return Err(doc.invalid("metadata.name", "every object needs a name"));
            }
            metadata.namespace = Some(namespace);
            return flux::load_notification(&doc, api_version, kind_name, metadata, set);
        }
        if group == "notification.toolkit.fluxcd.io" && kind_name == "Receiver" {
            let (name, namespace) = identity(root);
            let doc = Document {
                path,
                root,
                object: format!("Receiver {namespace}/{name}"),
            };
            let mut metadata: ObjectMeta = doc.typed("metadata", &mut set.warnings)?;
            if metadata.name.as_deref().unwrap_or("").is_empty() {
                return Err(doc.invalid("metadata.name", "every object needs a name"));
            }
            metadata.namespace = Some(namespace);
            return flux::load_receiver(&doc, api_version, metadata, set);
        }
        if group == crate::api::GROUP || group == FLUX_IMAGE_GROUP {
            set.warnings.push(LoadWarning {
                path: path.to_path_buf(),
                line: root.line_of(&[Step::Key("kind".into())]),
                object: format!("{api_version} {kind_name}"),
                message:
                    "skipped: hoist reads ImageRepository, ImagePolicy, ImageUpdateAutomation, Receiver, Provider and Alert"
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
        Kind::ImageUpdateAutomation if flux => {
            flux::load_automation(&doc, metadata, set)?;
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
        Kind::Provider => {
            let spec: crate::api::ProviderSpec = doc.typed("spec", &mut set.warnings)?;
            validate::notification_provider(&doc, &spec)?;
            set.providers.push(Loaded {
                object: crate::api::Provider {
                    metadata,
                    spec,
                    status: None,
                },
                origin,
            });
        }
        Kind::Alert => {
            let spec: crate::api::AlertSpec = doc.typed("spec", &mut set.warnings)?;
            let alert = crate::api::Alert {
                metadata,
                spec,
                status: None,
            };
            validate::alert(&doc, &alert)?;
            set.alerts.push(Loaded {
                object: alert,
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
pub(super) fn identity(root: &Node) -> (String, String) {
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
            format!("missing; set exactly one of {}", PolicyChoice::KINDS_TEXT),
        ));
    };
    if !matches!(policy.value, node::Value::Map(_)) {
        return Err(doc.invalid(
            "spec.policy",
            format!(
                "must be a mapping with exactly one of {}, e.g. {{semver: {{range: '^1'}}}}",
                PolicyChoice::KINDS_TEXT
            ),
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
                "unknown policy kind {other:?}; expected one of {}",
                PolicyChoice::KINDS_TEXT
            ),
        ));
    }
    match kinds.as_slice() {
        [_] => Ok(()),
        [] => Err(doc.invalid(
            "spec.policy",
            format!("empty; set exactly one of {}", PolicyChoice::KINDS_TEXT),
        )),
        [first, second, ..] => Err(doc.invalid(
            &format!("spec.policy.{second}"),
            format!("{first} and {second} are both set; a policy has exactly one kind, remove all but one"),
        )),
    }
}

pub(super) fn check_duplicates(set: &ObjectSet, errors: &mut Vec<LoadError>) {
    pub(super) fn check<K: kube::Resource<DynamicType = ()>>(
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
