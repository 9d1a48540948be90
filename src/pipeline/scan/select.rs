//! Selection: a policy's latest tag among its repository's tags (minus
//! exclusions, held back by `minimumAge`), and the digest it reflects.

use super::gate::{Gate, MAX_PASSED_OVER};
use super::*;
use crate::promotion::Soak;

/// One policy's selection from its repository's tags as the store holds
/// them: what the controller's ImagePolicy reconcile asks for. Nothing is
/// listed and no other object is looked at; only a digest the policy
/// reflects may be read from the registry (`source`). `objects` holds the
/// policy, its repository and whatever Secrets their credentials need.
pub async fn select_stored(
    objects: &ObjectSet,
    policy: &ImagePolicy,
    repository: &ImageRepository,
    source: &impl TagSource,
    store: &Store,
    options: &ScanOptions,
) -> Result<StoredSelection, StoreError> {
    let options = ScanOptions {
        tags: TagFreshness::Stored,
        ..options.clone()
    };
    let run = ScanRun::new(objects, source, store, &options);
    let key = ObjectKey::of(&policy.metadata).to_string();
    let scanned = run.scan_repository(repository).await?;
    let selection = match &scanned.outcome {
        Err(e) => StoredSelection {
            row: run.unselected(&key, repository, &scanned, e),
            repository_failure: Some(e.clone()),
            failure: None,
        },
        Ok(_) => match run.select(&key, policy, repository, &scanned).await {
            Ok(row) => StoredSelection {
                row,
                repository_failure: None,
                failure: None,
            },
            Err(e) => StoredSelection {
                row: run.unselected(&key, repository, &scanned, &e),
                repository_failure: None,
                failure: Some(e),
            },
        },
    };
    // A digest read from the registry was written to the store.
    store.flush()?;
    Ok(selection)
}

/// What [`select_stored`] came to.
#[derive(Clone, Debug)]
pub struct StoredSelection {
    pub row: PolicyRef,
    /// The repository has no usable tags in the store (not scanned yet, or
    /// its last scan failed).
    pub repository_failure: Option<ScanError>,
    /// The policy's own failure: its spec, or its digest.
    pub failure: Option<ScanError>,
}

impl<S: TagSource> ScanRun<'_, S> {
    /// The row of a policy that could not select: no tag, and why.
    pub(super) fn unselected(
        &self,
        key: &str,
        repository: &ImageRepository,
        scanned: &Scanned,
        error: &ScanError,
    ) -> PolicyRef {
        PolicyRef {
            policy: key.to_string(),
            repository: scanned.repository.clone(),
            image: scanned.image.clone(),
            name: repository.spec.marker_image(),
            tag: None,
            digest: None,
            tags: 0,
            waiting: None,
            verified: None,
            passed_over: Vec::new(),
            promoted: None,
            error: Some(error.report()),
        }
    }

    /// The policy's row. When its repository has no tags to offer, the
    /// repository's failure (reported once, for the repository).
    pub(super) async fn select(
        &self,
        key: &str,
        policy: &ImagePolicy,
        repository: &ImageRepository,
        scanned: &Scanned,
    ) -> Result<PolicyRef, ScanError> {
        let record = match &scanned.outcome {
            Ok(record) => record,
            Err(e) => return Ok(self.unselected(key, repository, scanned, e)),
        };
        let compiled = CompiledPolicy::compile(&policy.spec).map_err(|e| ScanError::Spec {
            object: format!("ImagePolicy {key}"),
            field: format!("spec.{}", e.field()),
            message: e.to_string(),
        })?;
        let exclusions = self.exclusions(repository).map_err(|e| ScanError::Spec {
            object: format!("ImageRepository {}", scanned.repository),
            field: "spec.exclusionList".into(),
            message: e.reason().to_string(),
        })?;
        let tags: Vec<&Tag> = record
            .tags
            .iter()
            .filter(|t| !exclusions.excludes(t.as_str()))
            .collect();
        // `minimumAge`: select among the tags seen long enough; the one
        // that would win otherwise waits, and says until when.
        let minimum_age: Option<std::time::Duration> = policy
            .spec
            .minimum_age
            .as_ref()
            .and_then(|a| a.parse().ok());
        let (mut candidates, mut waiting) = match minimum_age {
            Some(age) => {
                let now = self.options.now.unwrap_or_else(store::now);
                crate::policy::mature(&compiled, &tags, &record.first_seen, age, now)
            }
            None => (tags.clone(), None),
        };
        let gate = Gate::compile(key, policy, self.objects)?;
        // `spec.promotion`: only tags the upstream ran healthy are
        // candidates; each one's digest must have soaked there.
        let promotion = match &policy.spec.promotion {
            None => None,
            Some(promotion) => {
                let evidence = match self.options.evidence.get(key) {
                    Some(Ok(evidence)) => evidence,
                    Some(Err(message)) => {
                        return Err(ScanError::Evidence {
                            policy: key.to_string(),
                            message: message.clone(),
                        });
                    }
                    None => {
                        return Err(ScanError::Evidence {
                            policy: key.to_string(),
                            message: "not read before the scan".into(),
                        });
                    }
                };
                let soak = promotion
                    .soak
                    .as_ref()
                    .and_then(|s| s.parse().ok())
                    .map_or(0, |d| d.as_secs());
                // A tag the upstream rolled back is not promoted, whatever
                // it ran before.
                candidates.retain(|t| {
                    evidence.healthy.iter().any(|r| r.tag == t.as_str())
                        && !evidence.rejected.iter().any(|r| r.tag == t.as_str())
                });
                Some((evidence, soak, promotion))
            }
        };
        let reflection = policy.spec.digest_reflection_policy.unwrap_or_default();
        // A classic chart repository has versions and nothing else.
        let classic_chart =
            repository.spec.chart.is_some() && !repository.spec.image.starts_with("oci://");
        if classic_chart {
            let needs = [
                (!policy.spec.platforms.is_empty(), "spec.platforms"),
                (policy.spec.verify.is_some(), "spec.verify"),
                (
                    reflection != ReflectionPolicy::Never,
                    "spec.digestReflectionPolicy",
                ),
                (compiled.orders_by_build_time(), "spec.policy.buildTime"),
                (promotion.is_some(), "spec.promotion"),
            ];
            if let Some((_, field)) = needs.iter().find(|(set, _)| *set) {
                return Err(ScanError::Spec {
                    object: format!("ImagePolicy {key}"),
                    field: field.to_string(),
                    message: format!(
                        "ImageRepository {} is a classic chart repository, whose index.yaml lists versions only; this needs its manifests: publish the chart to an OCI repository (oci://…)",
                        scanned.repository
                    ),
                });
            }
        }
        let max_age = match reflection {
            ReflectionPolicy::Always => policy
                .spec
                .interval
                .as_ref()
                .and_then(|i| i.parse().ok())
                .unwrap_or(DEFAULT_INTERVAL)
                .as_secs(),
            // The gate vouches for a digest: the one it judged is the one
            // the latest ref carries, looked up again each interval of the
            // repository so a moved tag is judged again.
            _ if gate.is_some() || promotion.is_some() => interval(repository).as_secs(),
            _ => u64::MAX,
        };
        // A `buildTime` policy orders by what the images say.
        // (Of every tag, not only the mature ones: the newest build may be
        // the one that waits.)
        let times = if compiled.orders_by_build_time() {
            let admitted: Vec<&Tag> = tags
                .iter()
                .copied()
                .filter(|t| compiled.admits(t.as_str()))
                .collect();
            let repository_key = ObjectKey::of(&repository.metadata).to_string();
            let target = self.target(repository, &repository_key).await?;
            Some(
                self.build_times(key, &target, &scanned.image, &admitted)
                    .await?,
            )
        } else {
            None
        };
        // `minimumAge` could not say which build waits before the times
        // were known.
        if let (Some(times), Some(age)) = (&times, minimum_age)
            && let Some(best) = compiled.select_by_build_time(&tags, times).tag
            && !candidates.iter().any(|t| t.as_str() == best.as_str())
        {
            let seen = record.first_seen.get(best.as_str()).copied().unwrap_or(0);
            waiting = Some(crate::policy::Waiting {
                tag: best.as_str().to_string(),
                eligible_at: seen.saturating_add(age.as_secs()),
            });
        }
        let latest = |candidates: &[&Tag]| match &times {
            Some(times) => compiled.select_by_build_time(candidates, times).tag,
            None => compiled.select(candidates).tag,
        };
        let mut passed_over = Vec::new();
        let mut signer = None;
        // Tags an automation rolled back are never selected again; they
        // cost no registry read, so they do not count towards the limit.
        let rejected = self.store.rejections(key)?;
        let mut gated = 0;
        let mut promoted = None;
        let (tag, digest) = loop {
            let Some(tag) = latest(&candidates) else {
                break (None, None);
            };
            if let Some(r) = rejected.iter().find(|r| r.tag == tag.as_str()) {
                candidates.retain(|t| t.as_str() != tag.as_str());
                if passed_over.len() < MAX_PASSED_OVER {
                    passed_over.push(PassedOver {
                        tag: r.tag.clone(),
                        digest: r.digest.clone(),
                        reason: crate::gate::Reason::RolledBack,
                        message: format!(
                            "rolled back by ImageUpdateAutomation {} at {}: {}",
                            r.automation, r.at, r.reason
                        ),
                    });
                }
                continue;
            }
            let digest = match (&gate, reflection) {
                (None, ReflectionPolicy::Never) if promotion.is_none() => break (Some(tag), None),
                _ => {
                    self.reflect_digest(key, repository, &scanned.image, &tag, max_age)
                        .await?
                }
            };
            if let Some((evidence, soak, spec)) = &promotion {
                let now = self.options.now.unwrap_or_else(store::now);
                let now = jiff::Timestamp::from_second(i64::try_from(now).unwrap_or(i64::MAX))
                    .unwrap_or(jiff::Timestamp::MAX);
                match evidence.soaked(tag.as_str(), &digest, *soak, now) {
                    Soak::Soaked => {
                        let source = &spec.evidence;
                        promoted = evidence
                            .healthy
                            .iter()
                            .rev()
                            .find(|r| r.tag == tag.as_str() && r.digest == digest)
                            .map(|r| crate::promotion::Promoted {
                                from: spec.from.clone(),
                                url: source.url.clone(),
                                branch: source.branch.clone(),
                                path: spec.evidence_path(),
                                since: r.since.clone(),
                                revision: r.revision.clone(),
                            });
                    }
                    Soak::Until(at) => {
                        // Soaking upstream: the newest such tag waits, as
                        // one held back by `minimumAge` does.
                        if waiting.is_none() {
                            waiting = Some(crate::policy::Waiting {
                                tag: tag.as_str().to_string(),
                                eligible_at: u64::try_from(at).unwrap_or(0),
                            });
                        }
                        candidates.retain(|t| t.as_str() != tag.as_str());
                        continue;
                    }
                    Soak::OtherDigest | Soak::Never => {
                        candidates.retain(|t| t.as_str() != tag.as_str());
                        passed_over.push(PassedOver {
                            tag: tag.as_str().to_string(),
                            message: format!(
                                "ImageUpdateAutomation {} did not run {digest} healthy for {soak}s unbroken",
                                spec.from
                            ),
                            digest: Some(digest),
                            reason: crate::gate::Reason::NotPromoted,
                        });
                        gated += 1;
                        if gated >= MAX_PASSED_OVER {
                            break (None, None);
                        }
                        continue;
                    }
                }
            }
            let Some(gate) = &gate else {
                break (Some(tag), Some(digest));
            };
            let repository_key = ObjectKey::of(&repository.metadata).to_string();
            let target = self.target(repository, &repository_key).await?;
            match self
                .judge(gate, &target, &scanned.image, &digest, interval(repository))
                .await?
            {
                Ok(passed) => {
                    signer = passed.signer;
                    break (Some(tag), Some(digest));
                }
                Err(rejection) => {
                    candidates.retain(|t| t.as_str() != tag.as_str());
                    passed_over.push(PassedOver {
                        tag: tag.as_str().to_string(),
                        digest: Some(digest),
                        reason: rejection.reason,
                        message: rejection.message,
                    });
                    gated += 1;
                    if gated >= MAX_PASSED_OVER {
                        break (None, None);
                    }
                }
            }
        };
        Ok(PolicyRef {
            policy: key.to_string(),
            repository: scanned.repository.clone(),
            image: scanned.image.clone(),
            name: repository.spec.marker_image(),
            tag,
            digest,
            tags: tags.len(),
            waiting,
            verified: signer,
            passed_over,
            promoted,
            error: None,
        })
    }

    /// The digest of `image:tag`: from the store when it is younger than
    /// `max_age` seconds, else from the registry (and then stored).
    pub(super) async fn reflect_digest(
        &self,
        key: &str,
        repository: &ImageRepository,
        image: &str,
        tag: &Tag,
        max_age: u64,
    ) -> Result<String, ScanError> {
        let stored = self.store.digest(image, tag.as_str())?;
        if let Some(record) = stored.filter(|r| {
            self.options.tags != TagFreshness::Refresh
                && r.checked_at.saturating_add(max_age) > store::now()
        }) {
            return Ok(record.digest);
        }
        let repository_key = ObjectKey::of(&repository.metadata).to_string();
        let target = self.target(repository, &repository_key).await?;
        let digest = self
            .source
            .digest(&target, tag.as_str())
            .await
            .map_err(|e| ScanError::registry(format!("ImagePolicy {key}: digest of {tag}"), &e))?;
        let record = DigestRecord {
            digest: digest.clone(),
            checked_at: store::now(),
        };
        self.store.put_digest(image, tag.as_str(), &record)?;
        Ok(digest)
    }
}
