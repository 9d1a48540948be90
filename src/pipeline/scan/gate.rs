//! The gate's registry reads: a candidate's manifest (and config) for its
//! platforms, cosign's signature and attestation manifests and their
//! layers. What is read is judged by `crate::gate`; what was read of a
//! digest, and each verdict, is kept in the store, so a steady-state scan
//! asks the registry nothing.

use crate::gate::cosign::{self, SignedLayer, TrustPolicy};
use crate::gate::oci::{self, Config, Document};
use crate::gate::{Platform, Rejection, check_platforms};
use crate::registry::Manifest;
use crate::store::{ArtifactRecord, VerdictRecord};

use super::*;

/// Layers read from one signature or attestation manifest; more are
/// ignored (cosign appends one per `cosign sign`).
const MAX_SIGNATURE_LAYERS: usize = 16;
/// A simple signing payload is a few hundred bytes.
const MAX_SIGNATURE_PAYLOAD: usize = 64 << 10;
/// An attestation envelope carries a whole SLSA provenance document.
const MAX_ATTESTATION_PAYLOAD: usize = 4 << 20;
/// Bytes of signature and attestation layers one candidate may read.
const MAX_CANDIDATE_BYTES: usize = 8 << 20;
/// An image config (its history can be long).
const MAX_CONFIG: usize = 4 << 20;
/// Candidates one policy may pass over in one selection: each costs
/// registry requests, and a repository of thousands of unsigned tags must
/// not turn a scan into thousands of them. Failing closed, the policy then
/// selects nothing.
pub(super) const MAX_PASSED_OVER: usize = 20;

/// cosign's artifact types of signatures and attestations stored as
/// OCI 1.1 referrers.
const SIGNATURE_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
const ATTESTATION_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.att.v1+json";
/// Referrer manifests read per artifact type.
const MAX_REFERRERS: usize = 4;

const IMAGE_ACCEPT: &str = crate::registry::MANIFEST_ACCEPT;
const SIGNATURE_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// A policy's gate: its platforms and its trust policy.
pub(super) struct Gate {
    platforms: Vec<Platform>,
    trust: Option<TrustPolicy>,
}

/// What the gate said of a candidate that passed.
#[derive(Clone, Debug, Default)]
pub(super) struct Passed {
    /// Who signed it, when the policy verifies.
    pub(super) signer: Option<String>,
}

impl Gate {
    /// The policy's gate, None when it has neither `platforms` nor
    /// `verify`. The Secrets `verify` names must be there: without them
    /// nothing can be vouched for.
    pub(super) fn compile(
        key: &str,
        policy: &ImagePolicy,
        objects: &ObjectSet,
    ) -> Result<Option<Gate>, ScanError> {
        let invalid = |field: String, message: String| ScanError::Spec {
            object: format!("ImagePolicy {key}"),
            field,
            message,
        };
        let spec = &policy.spec;
        let mut platforms = Vec::new();
        for (i, text) in spec.platforms.iter().enumerate() {
            platforms.push(
                Platform::parse(text).map_err(|m| invalid(format!("spec.platforms[{i}]"), m))?,
            );
        }
        let trust = match &spec.verify {
            None => None,
            Some(verify) => {
                if verify.provider != "cosign" {
                    return Err(invalid(
                        "spec.verify.provider".into(),
                        format!(
                            "{:?} is not supported; hoist verifies cosign signatures (provider: cosign)",
                            verify.provider
                        ),
                    ));
                }
                let namespace = namespace_of(&policy.metadata);
                let secret = |field: &str, name: &str| {
                    objects.secret(namespace, name).ok_or_else(|| {
                        invalid(
                            field.to_string(),
                            format!("Secret {namespace}/{name} is not there; nothing can be verified without it"),
                        )
                    })
                };
                let mut keys = Vec::new();
                if let Some(reference) = &verify.secret_ref {
                    let data = secret("spec.verify.secretRef", &reference.name)?;
                    for (name, value) in &data.data {
                        if name.ends_with(".pub") {
                            keys.push((
                                format!("Secret {namespace}/{} key {name}", reference.name),
                                value.clone(),
                            ));
                        }
                    }
                    if keys.is_empty() {
                        return Err(invalid(
                            "spec.verify.secretRef".into(),
                            format!(
                                "Secret {namespace}/{} has no key ending in .pub (cosign.pub)",
                                reference.name
                            ),
                        ));
                    }
                }
                let (roots, rekor) = match &verify.trust_root_ref {
                    Some(reference) => {
                        let data = secret("spec.verify.trustRootRef", &reference.name)?;
                        let roots = data.data.get("ca.crt").cloned().ok_or_else(|| {
                            invalid(
                                "spec.verify.trustRootRef".into(),
                                format!("Secret {namespace}/{} has no ca.crt", reference.name),
                            )
                        })?;
                        (Some(roots), data.data.get("rekor.pub").cloned())
                    }
                    None => (None, None),
                };
                Some(
                    TrustPolicy::new(
                        &keys,
                        roots.as_deref(),
                        rekor.as_deref(),
                        &verify.match_oidc_identity,
                        &verify.attestations,
                    )
                    .map_err(|e| invalid(e.field, e.message))?,
                )
            }
        };
        if platforms.is_empty() && trust.is_none() {
            return Ok(None);
        }
        Ok(Some(Gate { platforms, trust }))
    }
}

impl<S: TagSource> ScanRun<'_, S> {
    /// Whether the candidate `digest` may be selected. A registry failure
    /// is an error, not a verdict: the policy selects nothing this time.
    pub(super) async fn judge(
        &self,
        gate: &Gate,
        target: &ScanTarget,
        image: &str,
        digest: &str,
        interval: Duration,
    ) -> Result<Result<Passed, Rejection>, ScanError> {
        if !gate.platforms.is_empty() {
            let artifact = self.artifact(target, image, digest, None).await?;
            match artifact {
                Ok(record) => {
                    if let Err(r) = check_platforms(&gate.platforms, &record.platforms) {
                        return Ok(Err(r));
                    }
                }
                Err(r) => return Ok(Err(r)),
            }
        }
        let Some(trust) = &gate.trust else {
            return Ok(Ok(Passed::default()));
        };
        let now = self.options.now.unwrap_or_else(store::now);
        if let Some(record) = self.store.verdict(image, digest, trust.fingerprint())? {
            let fresh = record.verdict.is_ok()
                || (self.options.tags != TagFreshness::Refresh
                    && record.checked_at.saturating_add(interval.as_secs()) > store::now());
            if fresh {
                return Ok(record.verdict.map(|signer| Passed {
                    signer: Some(signer),
                }));
            }
        }
        let verdict = self.verify(trust, target, digest, now).await?;
        self.store.put_verdict(
            image,
            digest,
            trust.fingerprint(),
            &VerdictRecord {
                verdict: verdict.clone(),
                checked_at: store::now(),
            },
        )?;
        Ok(verdict.map(|signer| Passed {
            signer: Some(signer),
        }))
    }

    /// Signatures, then attestations, of `digest`.
    async fn verify(
        &self,
        trust: &TrustPolicy,
        target: &ScanTarget,
        digest: &str,
        now: u64,
    ) -> Result<Result<String, Rejection>, ScanError> {
        let Some(tag) = cosign::signature_tag(digest) else {
            return Ok(Err(Rejection::new(
                crate::gate::Reason::Unsigned,
                format!("{digest} is not a sha256 digest, which cosign signs"),
            )));
        };
        // What one candidate's signatures and attestations may hold in
        // memory, all layers and referrers together.
        let mut budget = MAX_CANDIDATE_BYTES;
        let layers = self
            .cosign_layers(
                target,
                digest,
                &tag,
                SIGNATURE_ARTIFACT,
                MAX_SIGNATURE_PAYLOAD,
                &mut budget,
            )
            .await?;
        let signer = match cosign::verify_signatures(trust, digest, &layers, now) {
            Ok(signer) => signer,
            Err(r) => return Ok(Err(r)),
        };
        if trust.attestations().is_empty() {
            return Ok(Ok(signer));
        }
        let Some(tag) = cosign::attestation_tag(digest) else {
            return Ok(Ok(signer));
        };
        let layers = self
            .cosign_layers(
                target,
                digest,
                &tag,
                ATTESTATION_ARTIFACT,
                MAX_ATTESTATION_PAYLOAD,
                &mut budget,
            )
            .await?;
        Ok(cosign::verify_attestations(trust, digest, &layers, now).map(|()| signer))
    }

    /// The layers cosign stored for `digest`: under its legacy `tag`
    /// (`.sig`, `.att`), else as referrers of `artifact_type`.
    async fn cosign_layers(
        &self,
        target: &ScanTarget,
        digest: &str,
        tag: &str,
        artifact_type: &str,
        limit: usize,
        budget: &mut usize,
    ) -> Result<Vec<SignedLayer>, ScanError> {
        let layers = self.signed_layers(target, tag, limit, budget).await?;
        if !layers.is_empty() {
            return Ok(layers);
        }
        self.referred_layers(target, digest, artifact_type, limit, budget)
            .await
    }

    /// The layers of the manifests that refer to `digest` with
    /// `artifact_type` (cosign's `--registry-referrers-mode=oci-1-1`):
    /// from the referrers API, else from the referrers tag `sha256-<hex>`.
    /// The newest few (the index lists them in push order).
    async fn referred_layers(
        &self,
        target: &ScanTarget,
        digest: &str,
        artifact_type: &str,
        limit: usize,
        budget: &mut usize,
    ) -> Result<Vec<SignedLayer>, ScanError> {
        let object = || {
            format!(
                "ImageRepository {}: referrers of {digest}",
                target.image.canonical()
            )
        };
        let fail = |e: crate::registry::RegistryError| {
            if content_failure(&e) {
                Ok(None)
            } else {
                Err(ScanError::registry(object(), &e))
            }
        };
        let index = match self.source.referrers(target, digest).await.or_else(fail)? {
            Some(index) => Some(index),
            None => match digest.strip_prefix("sha256:") {
                Some(hex) => self
                    .source
                    .manifest(
                        target,
                        &format!("sha256-{hex}"),
                        "application/vnd.oci.image.index.v1+json",
                    )
                    .await
                    .or_else(fail)?,
                None => None,
            },
        };
        let Some(index) = index else {
            return Ok(Vec::new());
        };
        let Ok(index) = Document::parse(&index.bytes, &index.media_type) else {
            return Ok(Vec::new());
        };
        let mut layers = Vec::new();
        let referrers: Vec<&oci::Descriptor> = index
            .manifests
            .iter()
            .filter(|m| m.artifact_type.as_deref() == Some(artifact_type))
            .collect();
        for referrer in referrers.iter().rev().take(MAX_REFERRERS) {
            layers.extend(
                self.signed_layers(target, &referrer.digest, limit, budget)
                    .await?,
            );
        }
        Ok(layers)
    }

    /// The layers of the manifest cosign tagged `tag`, their blobs read;
    /// none when there is no such manifest.
    async fn signed_layers(
        &self,
        target: &ScanTarget,
        tag: &str,
        limit: usize,
        budget: &mut usize,
    ) -> Result<Vec<SignedLayer>, ScanError> {
        let object = || format!("ImageRepository {}: {tag}", target.image.canonical());
        let manifest = match self.source.manifest(target, tag, SIGNATURE_ACCEPT).await {
            Ok(Some(manifest)) => manifest,
            Ok(None) => return Ok(Vec::new()),
            Err(e) if content_failure(&e) => return Ok(Vec::new()),
            Err(e) => return Err(ScanError::registry(object(), &e)),
        };
        let Ok(document) = Document::parse(&manifest.bytes, &manifest.media_type) else {
            return Ok(Vec::new());
        };
        let mut layers = Vec::new();
        // cosign appends a layer per signing: the newest are last.
        let signed: Vec<&oci::Descriptor> = document
            .layers
            .iter()
            .filter(|l| {
                l.media_type == cosign::SIMPLE_SIGNING || l.media_type == cosign::DSSE_ENVELOPE
            })
            .collect();
        for layer in signed.iter().rev().take(MAX_SIGNATURE_LAYERS) {
            if layer.size > limit as u64 || layer.size > *budget as u64 {
                continue;
            }
            let payload = match self
                .source
                .blob(target, &layer.digest, limit.min(*budget))
                .await
            {
                Ok(payload) => payload,
                // A layer that is gone, too large or not what its digest
                // says is no signature; the registry failing is an error.
                Err(e) if content_failure(&e) => continue,
                Err(e) => return Err(ScanError::registry(object(), &e)),
            };
            *budget = budget.saturating_sub(payload.len());
            layers.push(SignedLayer {
                media_type: layer.media_type.clone(),
                payload,
                annotations: layer.annotations.clone(),
            });
        }
        Ok(layers)
    }

    /// The platforms and build time of `digest`, from the store or read
    /// once: the manifest (unless the caller has it), and a single image's
    /// config; for an index without a created annotation, the config of
    /// one of its images (linux/amd64 when it has one), as buildx writes
    /// no time on the index.
    pub(super) async fn artifact(
        &self,
        target: &ScanTarget,
        image: &str,
        digest: &str,
        known: Option<Manifest>,
    ) -> Result<Result<ArtifactRecord, Rejection>, ScanError> {
        if let Some(record) = self.store.artifact(image, digest)? {
            return Ok(Ok(record));
        }
        let manifest = match known {
            Some(m) => m,
            None => match self.read_manifest(target, digest).await? {
                Ok(m) => m,
                Err(r) => return Ok(Err(r)),
            },
        };
        let document = match Document::parse(&manifest.bytes, &manifest.media_type) {
            Ok(d) => d,
            Err(m) => return Ok(Err(unreadable(m))),
        };
        let annotated = document
            .annotations
            .get(oci::CREATED_ANNOTATION)
            .and_then(|t| oci::parse_time(t));
        let record = if document.is_index() {
            let platforms = document.index_platforms();
            let created = match annotated {
                Some(at) => Some(at),
                None => {
                    let child = document
                        .manifests
                        .iter()
                        .filter(|m| m.platform.as_ref().is_some_and(|p| p.os != "unknown"))
                        .max_by_key(|m| {
                            m.platform
                                .as_ref()
                                .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
                        });
                    match child {
                        None => None,
                        Some(child) => match self.read_manifest(target, &child.digest).await? {
                            Err(r) => return Ok(Err(r)),
                            Ok(m) => match Document::parse(&m.bytes, &m.media_type) {
                                Err(e) => return Ok(Err(unreadable(e))),
                                Ok(doc) => match self.read_config(target, &doc).await? {
                                    Err(r) => return Ok(Err(r)),
                                    Ok(config) => {
                                        config.created.as_deref().and_then(oci::parse_time)
                                    }
                                },
                            },
                        },
                    }
                }
            };
            ArtifactRecord { platforms, created }
        } else {
            let config = match self.read_config(target, &document).await? {
                Ok(c) => c,
                Err(r) => return Ok(Err(r)),
            };
            ArtifactRecord {
                platforms: config.platform().into_iter().collect(),
                created: config
                    .created
                    .as_deref()
                    .and_then(oci::parse_time)
                    .or(annotated),
            }
        };
        self.store.put_artifact(image, digest, &record)?;
        Ok(Ok(record))
    }

    /// A manifest by digest; what it cannot be is a rejection.
    async fn read_manifest(
        &self,
        target: &ScanTarget,
        digest: &str,
    ) -> Result<Result<Manifest, Rejection>, ScanError> {
        match self.source.manifest(target, digest, IMAGE_ACCEPT).await {
            Ok(Some(m)) => Ok(Ok(m)),
            Ok(None) => Ok(Err(unreadable(format!(
                "the registry has no manifest {digest}"
            )))),
            Err(e) if content_failure(&e) => Ok(Err(unreadable(e.to_string()))),
            Err(e) => Err(ScanError::registry(
                format!(
                    "ImageRepository {}: manifest {digest}",
                    target.image.canonical()
                ),
                &e,
            )),
        }
    }

    /// The config of an image manifest.
    async fn read_config(
        &self,
        target: &ScanTarget,
        document: &Document,
    ) -> Result<Result<Config, Rejection>, ScanError> {
        let Some(config) = &document.config else {
            return Ok(Err(unreadable("an image manifest without a config".into())));
        };
        let bytes = match self.source.blob(target, &config.digest, MAX_CONFIG).await {
            Ok(b) => b,
            Err(e) if content_failure(&e) => return Ok(Err(unreadable(e.to_string()))),
            Err(e) => {
                return Err(ScanError::registry(
                    format!(
                        "ImageRepository {}: config {}",
                        target.image.canonical(),
                        config.digest
                    ),
                    &e,
                ));
            }
        };
        Ok(Config::parse(&bytes).map_err(unreadable))
    }
}

impl<S: TagSource> ScanRun<'_, S> {
    /// The build times of `tags` for a `buildTime` policy: each tag's
    /// digest and its image's time from the store, else read with one
    /// manifest GET by tag and one config GET. A SHA tag names one build,
    /// so a digest looked up is kept until a refresh (`--refresh`, a
    /// requested reconcile); an image without a time is left out.
    pub(super) async fn build_times(
        &self,
        key: &str,
        target: &ScanTarget,
        image: &str,
        tags: &[&Tag],
    ) -> Result<crate::policy::BuildTimes, ScanError> {
        if tags.len() > MAX_BUILD_TIME_TAGS {
            return Err(ScanError::Spec {
                object: format!("ImagePolicy {key}"),
                field: "spec.policy.buildTime".into(),
                message: format!(
                    "{} tags pass filterTags; buildTime reads each one's image and orders at most {MAX_BUILD_TIME_TAGS}: narrow filterTags",
                    tags.len()
                ),
            });
        }
        // Owned tags: a closure over borrowed ones is not general enough
        // for the controller's Send futures.
        let owned: Vec<String> = tags.iter().map(|t| t.as_str().to_string()).collect();
        let times = futures_util::stream::iter(owned)
            .map(|tag| async move {
                self.build_time(target, image, &tag)
                    .await
                    .map(|t| t.map(|t| (tag, t)))
            })
            .buffer_unordered(BUILD_TIME_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        let mut out = crate::policy::BuildTimes::new();
        for time in times {
            if let Some((tag, at)) = time? {
                out.insert(tag, at);
            }
        }
        Ok(out)
    }

    async fn build_time(
        &self,
        target: &ScanTarget,
        image: &str,
        tag: &str,
    ) -> Result<Option<i64>, ScanError> {
        let stored = self
            .store
            .digest(image, tag)?
            .filter(|_| self.options.tags != TagFreshness::Refresh);
        let (digest, manifest) = match stored {
            Some(record) => (record.digest, None),
            None => {
                let object = || {
                    format!(
                        "ImageRepository {}: manifest {tag}",
                        target.image.canonical()
                    )
                };
                // A tag whose manifest cannot be read has no time.
                let manifest = match self.source.manifest(target, tag, IMAGE_ACCEPT).await {
                    Ok(Some(m)) => m,
                    Ok(None) => return Ok(None),
                    Err(e) if content_failure(&e) => return Ok(None),
                    Err(e) => return Err(ScanError::registry(object(), &e)),
                };
                self.store.put_digest(
                    image,
                    tag,
                    &DigestRecord {
                        digest: manifest.digest.clone(),
                        checked_at: store::now(),
                    },
                )?;
                (manifest.digest.clone(), Some(manifest))
            }
        };
        Ok(self
            .artifact(target, image, &digest, manifest)
            .await?
            .ok()
            .and_then(|a| a.created))
    }
}

/// Tags a `buildTime` policy orders at most: each costs two requests on
/// the first scan.
const MAX_BUILD_TIME_TAGS: usize = 2000;
/// Tags whose images are read at once.
const BUILD_TIME_CONCURRENCY: usize = 8;

/// A failure of what a candidate's artifacts hold (gone, too large, not
/// their digest), which passes the candidate over, as opposed to the
/// registry failing (auth, transport, 5xx, rate limits), which stops the
/// selection.
fn content_failure(e: &crate::registry::RegistryError) -> bool {
    use crate::registry::FailureKind;
    matches!(
        e.kind,
        FailureKind::NotFound | FailureKind::Protocol | FailureKind::TooLarge
    )
}

fn unreadable(message: String) -> Rejection {
    Rejection::new(crate::gate::Reason::UnreadableManifest, message)
}
