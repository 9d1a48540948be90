//! Which objects a verified event triggers: pure, so that `hoist run` (objects
//! from files) and the controller (objects listed from the cluster) decide
//! alike.

use std::collections::BTreeSet;

use super::Event;
use kube::api::ObjectMeta;

use crate::api::{ImageRepository, ImageUpdateAutomation, Receiver, ReceiverType};
use crate::registry::ImageName;

/// What an event triggers, each object as `ns/name`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Targets {
    /// ImageRepositories to scan now.
    pub repositories: BTreeSet<String>,
    /// ImageUpdateAutomations to run now (and sync).
    pub automations: BTreeSet<String>,
}

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.repositories.is_empty() && self.automations.is_empty()
    }

    /// Adds `other`'s objects to these.
    pub fn merge(&mut self, other: Targets) {
        self.repositories.extend(other.repositories);
        self.automations.extend(other.automations);
    }
}

/// An object a Receiver may trigger: who it is, and what an event names it
/// by (an ImageRepository's image, an automation's git URL), if anything.
pub trait Candidate {
    fn metadata(&self) -> &ObjectMeta;
    fn named_by(&self) -> Option<&str>;
}

impl Candidate for ImageRepository {
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn named_by(&self) -> Option<&str> {
        Some(&self.spec.image)
    }
}

impl Candidate for ImageUpdateAutomation {
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn named_by(&self) -> Option<&str> {
        Some(&self.spec.git.url)
    }
}

/// An object as the controller watches it, of either flavour: a Flux
/// automation's git URL is in its GitRepository, so an event names it only
/// through a Receiver's list.
impl Candidate for kube::api::DynamicObject {
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn named_by(&self) -> Option<&str> {
        let pointer = match self.types.as_ref().map(|t| t.kind.as_str()) {
            Some("ImageRepository") => "/spec/image",
            _ => "/spec/git/url",
        };
        self.data
            .pointer(pointer)
            .and_then(serde_json::Value::as_str)
    }
}

/// The objects `event` triggers among `repositories` and `automations`.
///
/// A Receiver that lists `spec.resources` triggers every listed object on
/// any event, as Flux's does. One that lists none triggers the objects in
/// its own namespace that the event names: the ImageRepositories of the
/// images pushed, the ImageUpdateAutomations of the git repository pushed
/// to. An event that names nothing (GitHub's ping) triggers nothing, except
/// for `generic-hmac` and `generic`, whose events never name anything.
pub fn targets<'a, R: Candidate + 'a, A: Candidate + 'a>(
    receiver: &Receiver,
    event: &Event,
    repositories: impl IntoIterator<Item = &'a R>,
    automations: impl IntoIterator<Item = &'a A>,
) -> Targets {
    let namespace = crate::model::namespace_of(&receiver.metadata);
    let empty = event.images.is_empty() && event.repositories.is_empty();
    if empty
        && !matches!(
            receiver.spec.type_,
            ReceiverType::GenericHmac | ReceiverType::Generic
        )
    {
        return Targets::default();
    }
    let key = |meta: &kube::api::ObjectMeta| crate::model::ObjectKey::of(meta).to_string();
    let chosen = |kind: &str, meta: &kube::api::ObjectMeta, named: &dyn Fn() -> bool| {
        let key = key(meta);
        if receiver.spec.resources.is_empty() {
            return key.split_once('/').is_some_and(|(ns, _)| ns == namespace) && named();
        }
        receiver.spec.resources.iter().any(|r| {
            r.kind == kind
                && crate::model::ObjectKey::referred(r.namespace.as_deref(), &r.name, namespace)
                    .to_string()
                    == key
        })
    };
    let images: Vec<ImageName> = event
        .images
        .iter()
        .filter_map(|image| ImageName::parse(image).ok())
        .collect();
    // A distribution registry reports the host its client used, which need
    // not be the name hoist knows it by (nor even look like a host name):
    // there, the repository path after the host decides.
    let paths: Vec<&str> = event
        .images
        .iter()
        .filter_map(|image| Some(image.split_once('/')?.1))
        .collect();
    let path_only = receiver.spec.type_ == ReceiverType::Distribution;
    let image_named = |repository: &R| {
        let image = repository.named_by().unwrap_or_default();
        ImageName::parse(image).is_ok_and(|name| {
            if path_only {
                paths.contains(&name.repository.as_str())
            } else {
                images
                    .iter()
                    .any(|i| i.repository == name.repository && i.registry == name.registry)
            }
        })
    };
    let pushed: Vec<(String, String)> = event
        .repositories
        .iter()
        .filter_map(|url| git_identity(url))
        .collect();
    let repository_named = |automation: &A| {
        automation
            .named_by()
            .and_then(git_identity)
            .is_some_and(|id| pushed.contains(&id))
    };
    Targets {
        repositories: repositories
            .into_iter()
            .filter(|r| chosen("ImageRepository", r.metadata(), &|| image_named(r)))
            .map(|r| key(r.metadata()))
            .collect(),
        automations: automations
            .into_iter()
            .filter(|a| {
                chosen("ImageUpdateAutomation", a.metadata(), &|| {
                    repository_named(a)
                })
            })
            .map(|a| key(a.metadata()))
            .collect(),
    }
}

/// A git URL as `(host, path)`, lower-cased, so that the https, ssh and
/// scp forms of one repository compare equal.
fn git_identity(url: &str) -> Option<(String, String)> {
    crate::model::GitUrl::parse(url).map(|u| u.identity())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ReceiverResource, ReceiverSpec};

    fn meta(namespace: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            ..ObjectMeta::default()
        }
    }

    fn repository(namespace: &str, name: &str, image: &str) -> ImageRepository {
        let mut r: ImageRepository =
            serde_json::from_value(serde_json::json!({"metadata": {}, "spec": {"image": image}}))
                .unwrap_or_else(|e| panic!("{e}"));
        r.metadata = meta(namespace, name);
        r
    }

    fn automation(namespace: &str, name: &str, url: &str) -> ImageUpdateAutomation {
        let mut a: ImageUpdateAutomation = serde_json::from_value(serde_json::json!({"metadata": {},
            "spec": {"interval": "5m", "git": {"url": url, "checkout": {"ref": {"branch": "main"}},
                "commit": {"author": {"name": "hoist", "email": "hoist@example.com"}}}}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        a.metadata = meta(namespace, name);
        a
    }

    fn receiver(type_: ReceiverType, resources: &[(&str, &str)]) -> Receiver {
        Receiver {
            metadata: meta("apps", "hook"),
            spec: ReceiverSpec {
                type_,
                secret_ref: crate::api::LocalObjectReference {
                    name: "token".to_string(),
                },
                resources: resources
                    .iter()
                    .map(|(kind, name)| ReceiverResource {
                        kind: kind.to_string(),
                        name: name.to_string(),
                        ..ReceiverResource::default()
                    })
                    .collect(),
                suspend: false,
                origin: Default::default(),
            },
            status: None,
        }
    }

    fn set(keys: &[&str]) -> BTreeSet<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn an_event_triggers_exactly_the_objects_it_names() {
        let repositories = [
            repository("apps", "nginx", "nginx"),
            repository("apps", "app", "ghcr.io/acme/app"),
            repository("apps", "local", "localhost:5000/team/app"),
            // The same image in another namespace: not this receiver's.
            repository("other", "nginx", "docker.io/library/nginx"),
        ];
        let automations = [
            automation("apps", "fleet", "ssh://git@github.com/Acme/fleet.git"),
            automation("apps", "infra", "https://github.com/acme/infra"),
            automation("other", "fleet", "https://github.com/acme/fleet.git"),
        ];
        let cases: Vec<(Receiver, Event, &[&str], &[&str])> = vec![
            (
                receiver(ReceiverType::DockerHub, &[]),
                Event {
                    images: vec!["docker.io/library/nginx".into()],
                    ..Event::default()
                },
                &["apps/nginx"],
                &[],
            ),
            (
                receiver(ReceiverType::GitHub, &[]),
                Event {
                    images: vec!["ghcr.io/acme/app".into()],
                    ..Event::default()
                },
                &["apps/app"],
                &[],
            ),
            // The https, ssh and scp forms of one repository are one.
            (
                receiver(ReceiverType::GitHub, &[]),
                Event {
                    repositories: vec![
                        "https://github.com/acme/fleet.git".into(),
                        "git@github.com:acme/fleet.git".into(),
                    ],
                    ..Event::default()
                },
                &[],
                &["apps/fleet"],
            ),
            // A distribution registry names the host its client used.
            (
                receiver(ReceiverType::Distribution, &[]),
                Event {
                    images: vec!["registry.internal:5000/team/app".into()],
                    ..Event::default()
                },
                &["apps/local"],
                &[],
            ),
            // Whatever the host looks like.
            (
                receiver(ReceiverType::Distribution, &[]),
                Event {
                    images: vec!["registry/team/app".into()],
                    ..Event::default()
                },
                &["apps/local"],
                &[],
            ),
            // Elsewhere the host must match too.
            (
                receiver(ReceiverType::Harbor, &[]),
                Event {
                    images: vec!["registry.internal:5000/team/app".into()],
                    ..Event::default()
                },
                &[],
                &[],
            ),
            // Listed resources are triggered by any event, as in Flux.
            (
                receiver(
                    ReceiverType::DockerHub,
                    &[
                        ("ImageRepository", "app"),
                        ("ImageUpdateAutomation", "fleet"),
                    ],
                ),
                Event {
                    images: vec!["docker.io/library/nginx".into()],
                    ..Event::default()
                },
                &["apps/app"],
                &["apps/fleet"],
            ),
            // generic-hmac triggers every listed object.
            (
                receiver(
                    ReceiverType::GenericHmac,
                    &[
                        ("ImageRepository", "app"),
                        ("ImageUpdateAutomation", "infra"),
                    ],
                ),
                Event::default(),
                &["apps/app"],
                &["apps/infra"],
            ),
            // A GitHub ping names nothing.
            (
                receiver(ReceiverType::GitHub, &[]),
                Event::default(),
                &[],
                &[],
            ),
        ];
        for (i, (receiver, event, repos, autos)) in cases.into_iter().enumerate() {
            let got = targets(&receiver, &event, &repositories, &automations);
            assert_eq!(got.repositories, set(repos), "case {i}");
            assert_eq!(got.automations, set(autos), "case {i}");
        }
    }

    #[test]
    fn git_urls_compare_by_host_and_path() {
        let id = |url| git_identity(url).map(|(h, p)| format!("{h} {p}"));
        for url in [
            "https://github.com/acme/fleet.git",
            "https://token@GitHub.com/acme/fleet/",
            "ssh://git@github.com:22/acme/fleet.git",
            "git@github.com:acme/fleet.git",
            "git://github.com/acme/fleet",
        ] {
            assert_eq!(id(url).as_deref(), Some("github.com acme/fleet"), "{url}");
        }
        assert_eq!(id("file-without-host").as_deref(), None);
        assert_eq!(
            id("ssh://git@[::1]:2222/fleet.git").as_deref(),
            Some("::1 fleet")
        );
    }
}
