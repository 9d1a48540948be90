//! Flux's ImageUpdateAutomation and the GitRepository it names. Each is
//! read as its document comes; once every file is read (the GitRepository
//! may come after the automation, or in another file) each automation is
//! joined with its GitRepository into hoist's ImageUpdateAutomation.
//!
//! A Flux field hoist cannot honour yet is an error that names it, never a
//! warning: a dropped signing key or push target would change what lands
//! in the repository.

use super::*;
use crate::api::{
    CommitAuthor, CommitSigning, CommitSpec, FLUX_SOURCE_GROUP, FluxAuthor, FluxAutomationSpec,
    GitCheckout, GitCheckoutRef, GitRepositoryRef, GitRepositorySpec, GitSpec, MessageFormat,
    PushSpec, ReceiverOrigin, ReceiverType, SigningFormat, UpdateSpec,
};

/// Flux's GitRepository, as the files hold it.
#[derive(Clone, Debug)]
pub struct GitRepository {
    pub namespace: String,
    pub name: String,
    pub spec: GitRepositorySpec,
}

/// A Flux ImageUpdateAutomation read, waiting for its GitRepository.
#[derive(Clone, Debug)]
pub struct FluxAutomation {
    pub metadata: ObjectMeta,
    pub spec: FluxAutomationSpec,
    /// `ImageUpdateAutomation ns/name`, for messages.
    object: String,
    /// The line of `spec.sourceRef`, where a missing GitRepository is reported.
    source_line: u32,
    /// `spec.git.commit.signingKey`, its type checked.
    signing: Option<CommitSigning>,
}

/// The apiVersions of Flux's source group hoist reads.
const SOURCE_VERSIONS: [&str; 2] = ["v1", "v1beta2"];

/// Whether `api_version`/`kind` is Flux's GitRepository (any version).
pub(super) fn is_git_repository(api_version: &str, kind: &str) -> bool {
    kind == "GitRepository"
        && api_version.split_once('/').map(|(g, _)| g) == Some(FLUX_SOURCE_GROUP)
}

/// Flux's ref as hoist's checkout: the one reference Flux's precedence
/// picks (commit, name, semver, tag, branch), so a GitRepository that sets
/// a branch and a tag checks out the tag, as under Flux. A commit keeps
/// its branch, which names it in messages.
fn checkout_ref(reference: &GitRepositoryRef) -> GitCheckoutRef {
    let given = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
    let mut checkout = GitCheckoutRef::default();
    if let Some(commit) = given(&reference.commit) {
        checkout.commit = Some(commit);
        checkout.branch = given(&reference.branch).unwrap_or_default();
    } else if let Some(name) = given(&reference.name) {
        checkout.name = Some(name);
    } else if let Some(semver) = given(&reference.semver) {
        checkout.semver = Some(semver);
    } else if let Some(tag) = given(&reference.tag) {
        checkout.tag = Some(tag);
    } else {
        checkout.branch = given(&reference.branch).unwrap_or_default();
    }
    checkout
}

pub(super) fn load_git_repository(
    doc: &Document<'_>,
    version: &str,
    namespace: &str,
    name: &str,
    set: &mut ObjectSet,
) -> Result<(), LoadError> {
    if !SOURCE_VERSIONS.contains(&version) {
        return Err(doc.invalid(
            "apiVersion",
            format!("{FLUX_SOURCE_GROUP}/{version} is not a version hoist reads; use {FLUX_SOURCE_GROUP}/v1"),
        ));
    }
    if name.is_empty() {
        return Err(doc.invalid("metadata.name", "every object needs a name"));
    }
    let spec: GitRepositorySpec = doc.typed("spec", &mut set.warnings)?;
    if spec.url.trim().is_empty() {
        return Err(doc.invalid("spec.url", "missing; the repository's URL"));
    }
    if let Some(provider) = spec.provider.as_deref().filter(|p| *p != "generic") {
        return Err(doc.invalid(
            "spec.provider",
            format!(
                "hoist reaches repositories with a Secret's credentials (generic), not {provider:?}"
            ),
        ));
    }
    if spec.proxy_secret_ref.is_some() {
        return Err(doc.invalid(
            "spec.proxySecretRef",
            "hoist does not push through a proxy a Secret names; remove it, or set HTTPS_PROXY for hoist",
        ));
    }
    set.git_repositories.push(Loaded {
        object: GitRepository {
            namespace: namespace.to_string(),
            name: name.to_string(),
            spec,
        },
        origin: doc.origin(),
    });
    Ok(())
}

pub(super) fn load_automation(
    doc: &Document<'_>,
    metadata: ObjectMeta,
    set: &mut ObjectSet,
) -> Result<(), LoadError> {
    let spec: FluxAutomationSpec = doc.typed("spec", &mut set.warnings)?;
    let source = &spec.source_ref;
    if source.kind != "GitRepository" {
        return Err(doc.invalid(
            "spec.sourceRef.kind",
            format!(
                "{:?}: an ImageUpdateAutomation's source is a GitRepository",
                source.kind
            ),
        ));
    }
    if let Some(api_version) = &source.api_version
        && api_version.split_once('/').map(|(g, _)| g) != Some(FLUX_SOURCE_GROUP)
    {
        return Err(doc.invalid(
            "spec.sourceRef.apiVersion",
            format!("{api_version:?}: use {FLUX_SOURCE_GROUP}/v1"),
        ));
    }
    let Some(git) = &spec.git else {
        return Err(doc.invalid(
            "spec.git",
            "missing; Flux's automation needs at least git.commit.author",
        ));
    };
    let commit = &git.commit;
    let signing = match &commit.signing_key {
        None => None,
        Some(key) => Some(CommitSigning {
            secret: key.secret_ref.name.clone(),
            format: match key.key_type.as_deref().unwrap_or("gpg") {
                "gpg" => SigningFormat::OpenPgp,
                "ssh" => SigningFormat::Ssh,
                other => {
                    return Err(doc.invalid(
                        "spec.git.commit.signingKey.type",
                        format!("{other:?}: Flux's types are gpg and ssh"),
                    ));
                }
            },
        }),
    };
    if let Some(template) = &commit.message_template
        && let Err(e) = crate::gotemplate::Template::parse(template)
    {
        return Err(doc.invalid(
            "spec.git.commit.messageTemplate",
            format!("not a Go template hoist can render: {e}"),
        ));
    }
    if let Some(options) = git.push.as_ref().and_then(|p| p.options.as_ref()) {
        for (key, value) in options {
            // git sends each option as one pkt-line.
            if key.is_empty() || format!("{key}{value}").contains(['\n', '\r', '\0']) {
                return Err(doc.invalid(
                    &format!("spec.git.push.options.{key}"),
                    "a push option is one line: a non-empty key and a value without line breaks",
                ));
            }
        }
    }
    set.flux_automations.push(Loaded {
        object: FluxAutomation {
            metadata,
            spec,
            object: doc.object.clone(),
            source_line: doc.root.line_of(&document::parse_path("spec.sourceRef")),
            signing,
        },
        origin: doc.origin(),
    });
    Ok(())
}

/// The apiVersion of Flux's notification group hoist reads.
pub(super) const NOTIFICATION_VERSION: &str = "notification.toolkit.fluxcd.io/v1";

/// Flux's Receiver as hoist's, served at Flux's path. Only the image
/// objects it lists are hoist's to trigger; the rest (GitRepositories,
/// Kustomizations, ...) are Flux's other controllers', and are skipped
/// with a warning. A Receiver left with nothing to trigger is skipped.
pub(super) fn load_receiver(
    doc: &Document<'_>,
    api_version: &str,
    metadata: ObjectMeta,
    set: &mut ObjectSet,
) -> Result<(), LoadError> {
    if api_version != NOTIFICATION_VERSION {
        return Err(doc.invalid(
            "apiVersion",
            format!("{api_version} is not a version hoist reads; use {NOTIFICATION_VERSION}"),
        ));
    }
    let spec: crate::api::FluxReceiverSpec = doc.typed("spec", &mut set.warnings)?;
    let type_: ReceiverType = serde_json::from_value(serde_json::Value::from(spec.type_.clone()))
        .ok()
        .filter(|t| *t != ReceiverType::Gitea && *t != ReceiverType::Distribution)
        .ok_or_else(|| {
            doc.invalid(
                "spec.type",
                format!(
                    "{:?}: hoist serves Flux's generic, generic-hmac, github, gitlab, harbor, \
                     dockerhub and quay Receivers",
                    spec.type_
                ),
            )
        })?;
    if spec.resource_filter.is_some() {
        return Err(doc.invalid(
            "spec.resourceFilter",
            "hoist does not evaluate CEL resource filters; list the objects in spec.resources",
        ));
    }
    if spec.oidc_providers.is_some() {
        return Err(doc.invalid(
            "spec.oidcProviders",
            "hoist verifies a Receiver with its Secret's token, not OIDC; set spec.secretRef",
        ));
    }
    let Some(secret_ref) = spec.secret_ref.clone() else {
        return Err(doc.invalid(
            "spec.secretRef",
            "missing; the Secret whose `token` the sender is configured with",
        ));
    };
    let mut resources = Vec::new();
    for (i, resource) in spec.resources.iter().enumerate() {
        let field = |f: &str| format!("spec.resources[{i}].{f}");
        let group = resource
            .api_version
            .as_deref()
            .map(|v| v.split_once('/').map_or(v, |(g, _)| g));
        let image_kind = matches!(
            resource.kind.as_str(),
            "ImageRepository" | "ImageUpdateAutomation"
        );
        if !image_kind || group.is_some_and(|g| g != crate::api::FLUX_IMAGE_GROUP) {
            set.warnings.push(doc.warning(
                &field("kind"),
                format!(
                    "skipped: hoist triggers ImageRepositories and ImageUpdateAutomations; {} {} is \
                     for Flux's other controllers (keep Flux's notification-controller serving it)",
                    resource.kind, resource.name
                ),
            ));
            continue;
        }
        if resource.name == "*" || resource.match_labels.is_some() {
            return Err(doc.invalid(
                &field("name"),
                "hoist triggers objects listed by name; list each one instead of `*` and matchLabels",
            ));
        }
        resources.push(crate::api::ReceiverResource {
            kind: resource.kind.clone(),
            name: resource.name.clone(),
            namespace: resource.namespace.clone(),
            api_version: None,
        });
    }
    if resources.is_empty() {
        set.warnings.push(doc.warning(
            "spec.resources",
            "skipped: lists no ImageRepository or ImageUpdateAutomation for hoist to trigger",
        ));
        return Ok(());
    }
    let spec = ReceiverSpec {
        type_,
        secret_ref,
        resources,
        suspend: spec.suspend,
        origin: ReceiverOrigin::Flux,
    };
    let namespace = crate::model::namespace_of(&metadata).to_string();
    validate::receiver(doc, &spec, &namespace)?;
    set.receivers.push(Loaded {
        object: Receiver {
            metadata,
            spec,
            status: None,
        },
        origin: doc.origin(),
    });
    Ok(())
}

/// Joins each Flux automation with its GitRepository into hoist's
/// ImageUpdateAutomation.
pub(super) fn resolve(set: &mut ObjectSet, errors: &mut Vec<LoadError>) {
    for pending in std::mem::take(&mut set.flux_automations) {
        match join(&pending, &set.git_repositories) {
            Ok(spec) => set.automations.push(Loaded {
                object: ImageUpdateAutomation {
                    metadata: pending.object.metadata,
                    spec,
                    status: None,
                },
                origin: pending.origin,
            }),
            Err(e) => errors.push(e),
        }
    }
}

fn join(
    pending: &Loaded<FluxAutomation>,
    repositories: &[Loaded<GitRepository>],
) -> Result<ImageUpdateAutomationSpec, LoadError> {
    let automation = &pending.object;
    let invalid = |line: u32, field: &str, message: String| LoadError::Invalid {
        path: pending.origin.path.clone(),
        line,
        object: automation.object.clone(),
        field: field.to_string(),
        message,
    };
    let own = crate::model::namespace_of(&automation.metadata).to_string();
    let source = &automation.spec.source_ref;
    let namespace = source.namespace.clone().unwrap_or_else(|| own.clone());
    let Some(repository) = repositories
        .iter()
        .find(|r| r.object.namespace == namespace && r.object.name == source.name)
    else {
        return Err(invalid(
            automation.source_line,
            "spec.sourceRef",
            format!(
                "GitRepository {namespace}/{} is not in the files",
                source.name
            ),
        ));
    };
    let repo = &repository.object.spec;
    let line = pending.origin.line;
    // load_automation refused an automation without spec.git.
    let Some(git) = automation.spec.git.as_ref() else {
        return Err(invalid(line, "spec.git", "missing".to_string()));
    };
    // The automation's checkout ref overrides the GitRepository's; Flux's
    // GitRepository defaults to branch master.
    let (checkout, checkout_field) = match git.checkout.as_ref().map(|c| &c.reference) {
        Some(reference) => (checkout_ref(reference), None),
        None => {
            let mut checkout = checkout_ref(&repo.reference.clone().unwrap_or_default());
            if checkout == GitCheckoutRef::default() {
                checkout.branch = "master".to_string();
            }
            (checkout, Some(repository))
        }
    };
    let push_branch = git
        .push
        .as_ref()
        .and_then(|p| p.branch.clone())
        .filter(|b| !b.is_empty());
    let push_spec = push_branch.as_ref().map(|branch| PushSpec {
        branch: Some(branch.clone()),
        ..PushSpec::default()
    });
    if let Some((field, problem)) = validate::checkout_problem(&checkout, push_spec.as_ref()) {
        // A problem with the GitRepository's ref is reported on the
        // automation (whose run it stops) and names the GitRepository.
        return Err(match checkout_field {
            Some(repository) if field.starts_with("spec.git.checkout.") => invalid(
                line,
                "spec.sourceRef",
                format!(
                    "GitRepository {namespace}/{} ({}): {}: {problem}",
                    source.name,
                    repository.origin,
                    field.replace("spec.git.checkout.", "spec.")
                ),
            ),
            _ => invalid(line, &field, problem),
        });
    }
    let branch = checkout.branch.clone();
    let push = git.push.as_ref();
    let also_to = match push
        .and_then(|p| p.refspec.as_deref())
        .filter(|r| !r.is_empty())
    {
        Some(refspec) => Some(
            refspec_destination(refspec, push_branch.as_deref().unwrap_or(&branch))
                .map_err(|message| invalid(line, "spec.git.push.refspec", message))?,
        ),
        None => None,
    };
    let options: Vec<String> = push
        .and_then(|p| p.options.as_ref())
        .map(|options| {
            options
                .iter()
                .map(|(k, v)| {
                    if v.is_empty() {
                        k.clone()
                    } else {
                        format!("{k}={v}")
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let update = automation.spec.update.clone();
    Ok(ImageUpdateAutomationSpec {
        interval: automation.spec.interval.clone(),
        schedule: Vec::new(),
        git: GitSpec {
            url: repo.url.clone(),
            secret_ref: repo.secret_ref.clone(),
            secret_namespace: (namespace != own).then_some(namespace),
            checkout: GitCheckout {
                reference: checkout,
            },
            commit: CommitSpec {
                author: CommitAuthor {
                    name: author_name(&git.commit.author),
                    email: git.commit.author.email.clone(),
                },
                message_template: git.commit.message_template.clone(),
                format: MessageFormat::Flux,
                template_values: git
                    .commit
                    .message_template_values
                    .clone()
                    .unwrap_or_default(),
                signing: automation.signing.clone(),
            },
            push: (push_branch.is_some() || also_to.is_some() || !options.is_empty()).then_some(
                PushSpec {
                    branch: push_branch,
                    pull_request: None,
                    also_to,
                    options,
                },
            ),
        },
        update: UpdateSpec {
            path: update
                .as_ref()
                .and_then(|u| u.path.clone())
                .unwrap_or_else(|| "./".to_string()),
            strategy: update.map(|u| u.strategy).unwrap_or_default(),
        },
        policy_selector: automation.spec.policy_selector.clone(),
        sync: None,
        service_account_name: None,
        suspend: automation.spec.suspend,
    })
}

/// Flux makes the author's name optional and go-git writes an empty one;
/// git refuses to commit without a name, so hoist takes the email's local
/// part (`fluxbot` for `fluxbot@example.com`) instead.
fn author_name(author: &FluxAuthor) -> String {
    match author.name.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => author
            .email
            .split_once('@')
            .map_or(author.email.as_str(), |(local, _)| local)
            .to_string(),
    }
}

/// The ref a Flux `push.refspec` pushes to. Its source must be the commit
/// hoist makes (`HEAD`, or the branch it commits on, as in Flux's clone),
/// and it may not force: hoist never overwrites a ref's history.
fn refspec_destination(refspec: &str, committed_on: &str) -> Result<String, String> {
    if refspec.starts_with('+') {
        return Err(format!(
            "{refspec:?} forces the push (+); hoist never force-pushes, so drop the +"
        ));
    }
    let Some((source, destination)) = refspec.split_once(':') else {
        return Err(format!("{refspec:?} is not SOURCE:DESTINATION"));
    };
    let own = format!("refs/heads/{committed_on}");
    if !["HEAD", committed_on, own.as_str()].contains(&source) {
        return Err(format!(
            "{refspec:?}: the source is {source:?}, but hoist's commit is on {own}; write {own}:DESTINATION or HEAD:DESTINATION"
        ));
    }
    if !destination.starts_with("refs/") || destination.contains(':') || destination.len() <= 5 {
        return Err(format!(
            "{refspec:?}: the destination is a full ref name, e.g. refs/heads/auto or refs/for/main"
        ));
    }
    Ok(destination.to_string())
}

/// The notification apiVersions hoist reads Providers and Alerts in.
const FLUX_NOTIFICATION_VERSIONS: [&str; 2] = [
    "notification.toolkit.fluxcd.io/v1beta3",
    "notification.toolkit.fluxcd.io/v1beta2",
];

/// Flux's Provider and Alert: the ones about hoist's kinds are hoist's to
/// deliver; a Provider of a service hoist does not deliver to, and an
/// Alert of no image object, are left to Flux's notification-controller
/// with a warning.
pub(super) fn load_notification(
    doc: &Document<'_>,
    api_version: &str,
    kind: &str,
    metadata: ObjectMeta,
    set: &mut ObjectSet,
) -> Result<(), LoadError> {
    if !FLUX_NOTIFICATION_VERSIONS.contains(&api_version) {
        return Err(doc.invalid(
            "apiVersion",
            format!(
                "{api_version} is not a version hoist reads Flux's {kind} in; use notification.toolkit.fluxcd.io/v1beta3"
            ),
        ));
    }
    let origin = doc.origin();
    if kind == "Provider" {
        let type_ = doc
            .root
            .get("spec")
            .and_then(|s| s.get("type"))
            .and_then(Node::as_str)
            .unwrap_or_default();
        let known: Result<crate::api::ProviderType, _> =
            serde_json::from_value(serde_json::Value::from(type_));
        if known.is_err() {
            set.warnings.push(doc.warning(
                "spec.type",
                format!(
                    "skipped: hoist delivers to slack, msteams, discord, googlechat, generic, generic-hmac, github and gitlab, not {:?}",
                    crate::redact::escape_control(type_)
                ),
            ));
            return Ok(());
        }
        let spec: crate::api::ProviderSpec = doc.typed("spec", &mut set.warnings)?;
        validate::notification_provider(doc, &spec)?;
        set.providers.push(Loaded {
            object: crate::api::Provider {
                metadata,
                spec,
                status: None,
            },
            origin,
        });
        return Ok(());
    }
    let mut spec: crate::api::AlertSpec = doc.typed("spec", &mut set.warnings)?;
    let before = spec.event_sources.len();
    spec.event_sources
        .retain(|s| crate::notify::SOURCE_KINDS.contains(&s.kind.as_str()));
    if spec.event_sources.is_empty() {
        set.warnings.push(doc.warning(
            "spec.eventSources",
            "skipped: none of its sources is an ImageRepository, ImagePolicy or ImageUpdateAutomation",
        ));
        return Ok(());
    }
    if spec.event_sources.len() < before {
        set.warnings.push(doc.warning(
            "spec.eventSources",
            "hoist sends the events of its image objects only; the other sources are Flux's to send",
        ));
    }
    let alert = crate::api::Alert {
        metadata,
        spec,
        status: None,
    };
    validate::alert(doc, &alert)?;
    set.alerts.push(Loaded {
        object: alert,
        origin,
    });
    Ok(())
}
