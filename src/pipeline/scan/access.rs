//! What a scan may reach: references checked across namespaces, and each
//! repository's registry target with its credentials and TLS settings.

use super::*;

/// Checks that every policy's repository is loaded: a spec problem, found
/// before any request is made.
pub fn check_references(objects: &ObjectSet) -> Result<(), PipelineError> {
    let known: std::collections::HashSet<String> = objects
        .repositories
        .iter()
        .map(|r| ObjectKey::of(&r.object.metadata).to_string())
        .collect();
    for p in &objects.policies {
        let repository = repository_of(&p.object);
        if !known.contains(&repository) {
            return Err(PipelineError::MissingRepository {
                origin: p.origin.to_string(),
                policy: ObjectKey::of(&p.object.metadata).to_string(),
                repository,
            });
        }
    }
    Ok(())
}

/// Checks that every policy reading an ImageRepository of another
/// namespace is let in by its `accessFrom` (the policy's namespace labels
/// from the Namespace documents in the files), and that none does with
/// `refuse_cross_namespace` (`--no-cross-namespace-refs`): a spec problem,
/// found before any request is made.
pub fn check_access(
    objects: &ObjectSet,
    refuse_cross_namespace: bool,
) -> Result<(), PipelineError> {
    for p in &objects.policies {
        let namespace = namespace_of(&p.object.metadata);
        let reference = &p.object.spec.image_repository_ref;
        let target = reference.namespace.as_deref().unwrap_or(namespace);
        // Within a namespace there is nothing to check: no search of every
        // repository for every policy.
        if target == namespace {
            continue;
        }
        let access = objects
            .repositories
            .iter()
            .find(|r| {
                namespace_of(&r.object.metadata) == target
                    && r.object.metadata.name.as_deref() == Some(reference.name.as_str())
            })
            .and_then(|r| r.object.spec.access_from.as_ref());
        crate::api::check_reference_access(
            namespace,
            objects.namespaces.get(namespace),
            &format!("ImageRepository {target}/{}", reference.name),
            target,
            access,
            refuse_cross_namespace,
        )
        .map_err(|refused| PipelineError::AccessDenied {
            origin: p.origin.to_string(),
            policy: ObjectKey::of(&p.object.metadata).to_string(),
            refused,
        })?;
    }
    Ok(())
}

/// Credentials and TLS settings of one repository, resolved from the
/// Secrets its spec names.
#[derive(Clone, Debug)]
pub(super) struct Access {
    pub(super) credentials: Arc<DockerConfig>,
    /// A username and password for whatever host the repository is on
    /// (a chart repository's Secret), instead of a lookup by host.
    pub(super) basic: Option<Credential>,
    pub(super) tls: TlsConfig,
}

/// Resolves `secretRef` (a `kubernetes.io/dockerconfigjson` Secret) and
/// `certSecretRef` (`ca.crt`, `tls.crt`, `tls.key`) against the Secrets in
/// the files. A Secret that is not there falls back to the user's
/// config.json and the system roots, with a warning: Flux documents name
/// Secrets that only exist in a cluster.
pub(super) fn access(
    repository: &ImageRepository,
    objects: &ObjectSet,
    fallback: &Arc<DockerConfig>,
) -> Result<Access, ScanError> {
    let key = ObjectKey::of(&repository.metadata).to_string();
    let namespace = crate::model::namespace_of(&repository.metadata);
    let mut access = Access {
        credentials: Arc::clone(fallback),
        basic: None,
        tls: TlsConfig::default(),
    };
    if let Some(reference) = &repository.spec.secret_ref {
        let name = &reference.name;
        match objects.secret(namespace, name) {
            // A chart repository's Secret as Flux's HelmRepository takes
            // it: a username and a password, for whichever host serves it.
            Some(secret)
                if repository.spec.chart.is_some()
                    && secret.data.contains_key("username")
                    && secret.data.contains_key("password") =>
            {
                let text = |k: &str| {
                    String::from_utf8(secret.data.get(k).cloned().unwrap_or_default()).map_err(
                        |_| ScanError::Credentials {
                            repository: key.clone(),
                            message: format!(
                                "spec.secretRef: Secret {namespace}/{name}: {k} is not UTF-8"
                            ),
                        },
                    )
                };
                access.basic = Some(Credential::Basic {
                    username: text("username")?,
                    password: text("password")?,
                });
            }
            Some(secret) => {
                let json = secret
                    .data
                    .get(".dockerconfigjson")
                    .or_else(|| secret.data.get("config.json"))
                    .ok_or_else(|| ScanError::Credentials {
                        repository: key.clone(),
                        message: format!(
                            "spec.secretRef: Secret {namespace}/{name} has no .dockerconfigjson key{}",
                            if repository.spec.chart.is_some() { " (nor username and password)" } else { "" }
                        ),
                    })?;
                let text = String::from_utf8_lossy(json);
                let origin = std::path::PathBuf::from(format!("Secret {namespace}/{name}"));
                let config = DockerConfig::parse_secret(&text, &origin).map_err(|e| {
                    ScanError::Credentials {
                        repository: key.clone(),
                        message: format!("spec.secretRef: {e}"),
                    }
                })?;
                access.credentials = Arc::new(config);
            }
            None => tracing::warn!(
                repository = %key,
                "spec.secretRef: Secret {namespace}/{name} is not in the files; using config.json"
            ),
        }
    }
    if let Some(reference) = &repository.spec.cert_secret_ref {
        let name = &reference.name;
        match objects.secret(namespace, name) {
            Some(secret) => {
                access.tls.ca_pem = secret.data.get("ca.crt").cloned();
                if let (Some(cert), Some(private)) =
                    (secret.data.get("tls.crt"), secret.data.get("tls.key"))
                {
                    let mut pem = cert.clone();
                    pem.push(b'\n');
                    pem.extend_from_slice(private);
                    access.tls.client_pem = Some(pem);
                }
            }
            None => tracing::warn!(
                repository = %key,
                "spec.certSecretRef: Secret {namespace}/{name} is not in the files; using the system roots"
            ),
        }
    }
    Ok(access)
}

/// What to ask the registry for one repository; the credential is looked
/// up by the caller, once per scan.
pub(super) fn target(
    key: &str,
    repository: &ImageRepository,
    access: &Access,
    credential: Option<Credential>,
) -> Result<ScanTarget, ScanError> {
    let spec = &repository.spec;
    let invalid = |field: &str, message: String| ScanError::Spec {
        object: format!("ImageRepository {key}"),
        field: field.to_string(),
        message,
    };
    let origin = crate::registry::Origin::of(&spec.image, spec.chart.as_deref())
        .map_err(|e| invalid("spec.image", e.to_string()))?;
    if let Some(message) = plain_http_chart(spec) {
        return Err(invalid("spec.insecure", message));
    }
    let interval = interval(repository);
    let timeout = match &spec.timeout {
        Some(t) => t
            .parse()
            .map_err(|e: crate::api::DurationError| invalid("spec.timeout", e.to_string()))?,
        None => interval.min(DEFAULT_TIMEOUT),
    };
    Ok(ScanTarget {
        image: origin.name().clone(),
        chart_index: origin.chart_index().cloned(),
        insecure: spec.insecure,
        timeout,
        tls: access.tls.clone(),
        credential,
        max_tags: match spec.max_tags {
            Some(0) => return Err(invalid("spec.maxTags", "must be at least 1".to_string())),
            Some(n) => n as usize,
            None => DEFAULT_MAX_TAGS,
        },
    })
}

pub(super) fn interval(repository: &ImageRepository) -> Duration {
    repository
        .spec
        .interval
        .as_ref()
        .and_then(|i| i.parse().ok())
        .unwrap_or(DEFAULT_INTERVAL)
}

/// Why a classic chart repository's `http://` URL is refused: plain HTTP
/// only when the spec says `insecure: true`, as for registries.
pub fn plain_http_chart(spec: &crate::api::ImageRepositorySpec) -> Option<String> {
    (spec.chart.is_some() && spec.image.starts_with("http://") && !spec.insecure).then(|| {
        format!(
            "{} is plain HTTP; set insecure: true to read the chart repository (and send its credentials) unencrypted",
            spec.image
        )
    })
}

/// The cloud provider whose identity logs in to the repository's
/// registry (`spec.provider`), checked against the registry's host: a
/// provider never silently turns into an anonymous scan.
pub(super) fn provider_of(
    repository: &ImageRepository,
    key: &str,
    target: &ScanTarget,
) -> Result<Option<crate::registry::identity::Provider>, ScanError> {
    let invalid = |message: String| ScanError::Spec {
        object: format!("ImageRepository {key}"),
        field: "spec.provider".to_string(),
        message,
    };
    let Some(provider) =
        crate::registry::identity::Provider::of(repository.spec.provider.as_deref())
            .map_err(invalid)?
    else {
        return Ok(None);
    };
    if target.chart_index.is_some() {
        return Err(invalid(format!(
            "{provider} logs in to OCI registries; a classic chart repository takes a secretRef"
        )));
    }
    if let Some(problem) = provider.registry_problem(&target.image.registry) {
        return Err(invalid(problem));
    }
    if let Some(secret) = &repository.spec.secret_ref {
        // As in Flux: the provider's identity is used, the Secret is not.
        tracing::warn!(
            repository = %key,
            "spec.secretRef {} is not used: spec.provider {provider} gives the credential",
            secret.name
        );
    }
    Ok(Some(provider))
}
