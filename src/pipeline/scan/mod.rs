//! Scan every ImageRepository (registry stage, with the store as cache),
//! then select every ImagePolicy's latest tag (policy stage) and reflect
//! its digest.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;

use crate::api::{ImagePolicy, ImageRepository, ReflectionPolicy};
use crate::load::ObjectSet;
use crate::model::{ObjectKey, Tag, namespace_of};
use crate::policy::CompiledPolicy;
use crate::registry::{
    Credential, DEFAULT_MAX_TAGS, DockerConfig, ExclusionError, Exclusions, ScanTarget, TagSource,
    TlsConfig,
};
use crate::store::{self, DigestRecord, ScanRecord, Store, StoreError};

use super::error::{ErrorReport, ScanError};

mod access;
mod gate;
mod select;

use access::{access, interval, provider_of, target};
pub use access::{check_access, check_references, plain_http_chart};
pub use select::{StoredSelection, select_stored};

/// Scan an ImageRepository this often when its spec does not say.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// The longest a scan may take when the spec does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How a scan run behaves.
#[derive(Clone, Debug)]
pub struct ScanOptions {
    /// When tags come from the registry and when from the store.
    pub tags: TagFreshness,
    /// Repositories scanned at once.
    pub concurrency: usize,
    /// Registry credentials for every repository (standalone mode: the
    /// user's docker config.json).
    pub credentials: Arc<DockerConfig>,
    /// Cloud identities for `spec.provider`, shared by every run of the
    /// process so that their tokens stay cached.
    pub identities: Arc<crate::registry::identity::Identities>,
    /// The time `minimumAge` is judged at, in seconds since the epoch
    /// (default: now); tests set it.
    pub now: Option<u64>,
    /// The repositories were scanned before, though the store has no record
    /// (a controller restarted on an empty volume): tags without a record
    /// count as new for `minimumAge`, not as old.
    pub scanned_before: bool,
    /// Repositories (`ns/name`) a webhook named: scanned from the registry
    /// now, whatever their interval.
    pub rescan: std::collections::BTreeSet<String>,
    /// The upstream evidence of the policies with `spec.promotion`, read
    /// by the driver before the scan ([`crate::pipeline::evidence`]).
    pub evidence: crate::pipeline::evidence::UpstreamEvidence,
}

/// Where a scan takes each repository's tags from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TagFreshness {
    /// From the store while the repository's interval has not passed.
    #[default]
    WithinInterval,
    /// From the registry now, and digests looked up again.
    Refresh,
    /// From the store only: the controller's policies select from what its
    /// repository reconciler stored, and never scan themselves.
    Stored,
}

/// The outcome of one repository.
#[derive(Clone, Debug)]
pub struct RepositoryScan {
    /// `ns/name` of the ImageRepository.
    pub repository: String,
    pub image: String,
    pub outcome: Result<ScanSummary, ScanError>,
    /// True when the tags came from the store because the interval had not
    /// passed (or the repository is suspended).
    pub cached: bool,
}

/// What a scan of one repository found, less the tags themselves: its
/// policies selected from them as soon as they were in, so that a run
/// holds the tags of at most `concurrency` repositories at once (the scale
/// run has 2,000,000).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanSummary {
    /// How many tags the repository has (before its exclusion list).
    pub tags: usize,
    /// sha256 of the sorted tag list.
    pub revision: String,
    /// Seconds since the Unix epoch.
    pub scanned_at: u64,
}

impl From<&ScanRecord> for ScanSummary {
    fn from(record: &ScanRecord) -> Self {
        ScanSummary {
            tags: record.tags.len(),
            revision: record.revision.clone(),
            scanned_at: record.scanned_at,
        }
    }
}

/// A repository's tags as one scan found them, while its policies select.
struct Scanned {
    repository: String,
    image: String,
    outcome: Result<ScanRecord, ScanError>,
    cached: bool,
}

/// One policy's latest ref: a row of `hoist scan`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyRef {
    /// `ns/name` of the ImagePolicy.
    pub policy: String,
    /// `ns/name` of its ImageRepository.
    pub repository: String,
    /// The canonical image name.
    pub image: String,
    /// The image as its ImageRepository writes it: what markers write.
    #[serde(skip)]
    pub name: String,
    /// The latest tag, or null when none qualifies.
    pub tag: Option<Tag>,
    /// `sha256:…` when the policy reflects digests, else null.
    pub digest: Option<String>,
    /// Tags the repository has (after its exclusion list).
    pub tags: usize,
    /// With `minimumAge`: the tag that would be latest but is too new.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<crate::policy::Waiting>,
    /// With `verify`: who signed the latest tag's digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<String>,
    /// Newer tags the gate (`verify`, `platforms`) passed over, newest
    /// first, and why.
    #[serde(rename = "passedOver", skip_serializing_if = "Vec::is_empty")]
    pub passed_over: Vec<PassedOver>,
    /// With `spec.promotion`: the upstream evidence the latest tag was
    /// promoted on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promoted: Option<crate::promotion::Promoted>,
    /// Why there is no tag: the repository could not be scanned, or the
    /// digest could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReport>,
}

/// A newer tag the gate would not let through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PassedOver {
    pub tag: String,
    pub digest: Option<String>,
    pub reason: crate::gate::Reason,
    pub message: String,
}

/// Everything a scan run found.
#[derive(Clone, Debug, Default)]
pub struct ScanReport {
    pub repositories: Vec<RepositoryScan>,
    pub policies: Vec<PolicyRef>,
    /// Each failure: a repository that could not be scanned, a policy
    /// whose digest could not be read.
    pub failures: Vec<ScanError>,
}

/// Why a scan run could not start or finish at all.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An ImagePolicy names an ImageRepository that is not loaded.
    #[error(
        "{origin}: ImagePolicy {policy}: spec.imageRepositoryRef: ImageRepository {repository} is not in the files"
    )]
    MissingRepository {
        origin: String,
        policy: String,
        repository: String,
    },
    /// An ImagePolicy names an ImageRepository of another namespace that
    /// does not let it in.
    #[error("{origin}: ImagePolicy {policy}: spec.imageRepositoryRef: {refused}")]
    AccessDenied {
        origin: String,
        policy: String,
        refused: crate::api::AccessRefused,
    },
}

/// The repository an ImagePolicy reads, as `ns/name`.
pub fn repository_of(policy: &ImagePolicy) -> String {
    let reference = &policy.spec.image_repository_ref;
    ObjectKey::referred(
        reference.namespace.as_deref(),
        &reference.name,
        namespace_of(&policy.metadata),
    )
    .to_string()
}

/// Scans every ImageRepository (at most `concurrency` at once, from the
/// store when the interval has not passed), then selects every
/// ImagePolicy's latest tag. One repository failing does not stop the
/// others; its failure is in the report.
pub async fn scan(
    objects: &ObjectSet,
    source: &impl TagSource,
    store: &Store,
    options: &ScanOptions,
) -> Result<ScanReport, PipelineError> {
    check_references(objects)?;
    let run = ScanRun::new(objects, source, store, options);
    // Each repository's policies, by index, so that they select as soon as
    // its tags are in. A policy whose repository is missing was refused
    // above.
    let mut policies_of: HashMap<String, Vec<usize>> = HashMap::new();
    for (index, p) in objects.policies.iter().enumerate() {
        policies_of
            .entry(repository_of(&p.object))
            .or_default()
            .push(index);
    }
    // The futures are made first: a closure held in the stream across an
    // await makes the whole future too narrow to be `Send` for the
    // controller's reconcilers.
    let pending: Vec<_> = objects
        .repositories
        .iter()
        .map(|r| {
            let key = ObjectKey::of(&r.object.metadata).to_string();
            let policies = policies_of.remove(&key).unwrap_or_default();
            run.scan_and_select(&r.object, policies)
        })
        .collect();
    let done: Vec<(RepositoryScan, Vec<Selected>)> = futures_util::stream::iter(pending)
        .buffered(options.concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let mut report = ScanReport::default();
    let mut selected = Vec::new();
    for (scan, rows) in done {
        if let Err(e) = &scan.outcome {
            report.failures.push(e.clone());
        }
        report.repositories.push(scan);
        selected.extend(rows);
    }
    // Rows and digest failures in the order of the policies, as before
    // selection moved next to each scan.
    selected.sort_by_key(|s| s.index);
    for s in selected {
        if let Some(e) = s.failure {
            report.failures.push(e);
        }
        report.policies.push(s.row);
    }
    run.write_unwritten()?;
    store.flush()?;
    Ok(report)
}

/// New scans are written this many at a time, in one transaction: a
/// commit per repository was a quarter of a cold scan's CPU.
const SCAN_BATCH: usize = 64;

/// One policy's selection, by its index among the loaded policies; a row
/// without a tag, and why, when it could not select.
struct Selected {
    index: usize,
    row: PolicyRef,
    /// A failure of this policy's own (its digest), not its repository's.
    failure: Option<ScanError>,
}

/// One scan run: what it reads and writes.
struct ScanRun<'a, S> {
    /// Resolved targets by repository `ns/name`.
    targets: std::sync::Mutex<HashMap<String, ScanTarget>>,
    /// Compiled exclusion lists by their patterns: most repositories
    /// share the default one.
    exclusions: std::sync::Mutex<HashMap<Vec<String>, Exclusions>>,
    /// New scans not yet in the store, by canonical image name.
    unwritten: std::sync::Mutex<Vec<(String, ScanRecord)>>,
    objects: &'a ObjectSet,
    source: &'a S,
    store: &'a Store,
    options: &'a ScanOptions,
}

impl<'a, S: TagSource> ScanRun<'a, S> {
    fn new(
        objects: &'a ObjectSet,
        source: &'a S,
        store: &'a Store,
        options: &'a ScanOptions,
    ) -> Self {
        ScanRun {
            targets: std::sync::Mutex::default(),
            exclusions: std::sync::Mutex::default(),
            unwritten: std::sync::Mutex::default(),
            objects,
            source,
            store,
            options,
        }
    }

    /// The last scan of `image`: one of this run's not yet written, else
    /// the store's (two ImageRepositories may name one image).
    fn stored_scan(&self, image: &str) -> Result<Option<ScanRecord>, StoreError> {
        let unwritten = self
            .unwritten()
            .iter()
            .rev()
            .find(|(i, _)| i == image)
            .map(|(_, r)| r.clone());
        match unwritten {
            Some(record) => Ok(Some(record)),
            None => self.store.scan(image),
        }
    }

    /// The staged scans. A lock poisoned by a panic elsewhere still holds
    /// whole entries (each is pushed or taken in one step), so they are
    /// kept rather than dropped.
    fn unwritten(&self) -> std::sync::MutexGuard<'_, Vec<(String, ScanRecord)>> {
        self.unwritten
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stages a new scan, writing the batch once it is full.
    fn stage(&self, image: String, record: ScanRecord) -> Result<(), StoreError> {
        let full = {
            let mut unwritten = self.unwritten();
            unwritten.push((image, record));
            unwritten.len() >= SCAN_BATCH
        };
        if full { self.write_unwritten() } else { Ok(()) }
    }

    /// Writes every staged scan in one transaction.
    fn write_unwritten(&self) -> Result<(), StoreError> {
        let batch = std::mem::take(&mut *self.unwritten());
        if batch.is_empty() {
            return Ok(());
        }
        self.store.put_scans(&batch)
    }

    /// The repository's compiled exclusion list, compiled once per run
    /// for each distinct list.
    fn exclusions(&self, repository: &ImageRepository) -> Result<Exclusions, ExclusionError> {
        let patterns: Vec<String> = repository
            .spec
            .exclusions()
            .iter()
            .map(|p| p.to_string())
            .collect();
        if let Some(known) = self
            .exclusions
            .lock()
            .ok()
            .and_then(|e| e.get(&patterns).cloned())
        {
            return Ok(known);
        }
        let compiled = Exclusions::of(&repository.spec)?;
        if let Ok(mut known) = self.exclusions.lock() {
            known.insert(patterns, compiled.clone());
        }
        Ok(compiled)
    }

    /// The repository's scan target with its credential, looked up once
    /// per run (a credential helper is a process) and bounded by the
    /// repository's timeout.
    async fn target(
        &self,
        repository: &ImageRepository,
        key: &str,
    ) -> Result<ScanTarget, ScanError> {
        if let Some(target) = self.targets.lock().ok().and_then(|t| t.get(key).cloned()) {
            return Ok(target);
        }
        let access = access(repository, self.objects, &self.options.credentials)?;
        let mut target = target(key, repository, &access, access.basic.clone())?;
        if let Some(provider) = provider_of(repository, key, &target)? {
            let deadline = tokio::time::Instant::now() + target.timeout;
            let credential = self
                .options
                .identities
                .credential_for(
                    provider,
                    &target.image.registry,
                    crate::model::namespace_of(&repository.metadata),
                    repository.spec.service_account_name.as_deref(),
                    deadline,
                )
                .await
                .map_err(|error| ScanError::Identity {
                    repository: key.to_string(),
                    error,
                })?;
            target.credential = Some(credential);
        } else if target.credential.is_none() {
            let lookup = access.credentials.lookup(&target.image.registry);
            let credentials = |message: String| ScanError::Credentials {
                repository: key.to_string(),
                message,
            };
            target.credential = match tokio::time::timeout(target.timeout, lookup).await {
                Ok(Ok(credential)) => credential,
                Ok(Err(e)) => return Err(credentials(e.to_string())),
                Err(_) => {
                    return Err(credentials(format!(
                        "looking up credentials for {} took longer than the timeout",
                        target.image.registry
                    )));
                }
            };
        }
        if let Ok(mut targets) = self.targets.lock() {
            targets.insert(key.to_string(), target.clone());
        }
        Ok(target)
    }

    /// Scans one repository, then selects the latest tag of each of its
    /// policies (`policies`: indices among the loaded ones); its tags are
    /// dropped on return.
    async fn scan_and_select(
        &self,
        repository: &ImageRepository,
        policies: Vec<usize>,
    ) -> Result<(RepositoryScan, Vec<Selected>), StoreError> {
        let scanned = self.scan_repository(repository).await?;
        let mut selected = Vec::with_capacity(policies.len());
        for index in policies {
            let policy = &self.objects.policies[index].object;
            let key = ObjectKey::of(&policy.metadata).to_string();
            if policy.spec.suspend {
                tracing::info!(policy = %key, "suspended; not selecting");
                continue;
            }
            let (row, failure) = match self.select(&key, policy, repository, &scanned).await {
                Ok(row) => (row, None),
                Err(e) => (self.unselected(&key, repository, &scanned, &e), Some(e)),
            };
            selected.push(Selected {
                index,
                row,
                failure,
            });
        }
        let summary = RepositoryScan {
            outcome: scanned
                .outcome
                .as_ref()
                .map(ScanSummary::from)
                .map_err(Clone::clone),
            repository: scanned.repository,
            image: scanned.image.clone(),
            cached: scanned.cached,
        };
        // Written after selection, so the tags are not copied to be kept.
        if let (false, Ok(record)) = (scanned.cached, scanned.outcome) {
            self.stage(scanned.image, record)?;
        }
        Ok((summary, selected))
    }

    async fn scan_repository(&self, repository: &ImageRepository) -> Result<Scanned, StoreError> {
        let key = ObjectKey::of(&repository.metadata).to_string();
        let failed = |image: String, error: ScanError| Scanned {
            repository: key.clone(),
            image,
            outcome: Err(error),
            cached: false,
        };
        let image = match crate::registry::Origin::of(
            &repository.spec.image,
            repository.spec.chart.as_deref(),
        ) {
            Ok(origin) => origin.key(),
            Err(e) => {
                return Ok(failed(
                    repository.spec.image.clone(),
                    ScanError::Spec {
                        object: format!("ImageRepository {key}"),
                        field: "spec.image".into(),
                        message: e.to_string(),
                    },
                ));
            }
        };
        let stored = match self.stored_scan(&image) {
            Ok(stored) => stored,
            // One damaged entry is a cache miss, not a failed run.
            Err(StoreError::Unreadable { reason, .. }) => {
                tracing::warn!(repository = %key, "{reason}; scanning again");
                None
            }
            Err(e) => return Err(e),
        };
        let fresh = stored.as_ref().is_some_and(|s| {
            s.scanned_at.saturating_add(interval(repository).as_secs()) > store::now()
        });
        let from_store = match self.options.tags {
            TagFreshness::WithinInterval => {
                (fresh && !self.options.rescan.contains(&key)) || repository.spec.suspend
            }
            TagFreshness::Refresh => repository.spec.suspend,
            TagFreshness::Stored => true,
        };
        if from_store && let Some(record) = stored {
            tracing::debug!(repository = %key, image, "tags from the store");
            return Ok(Scanned {
                repository: key,
                image,
                outcome: Ok(record),
                cached: true,
            });
        }
        if repository.spec.suspend {
            return Ok(failed(
                image,
                ScanError::NotScanned {
                    repository: key.clone(),
                    why: "is suspended and has never been scanned",
                },
            ));
        }
        if self.options.tags == TagFreshness::Stored {
            return Ok(failed(
                image,
                ScanError::NotScanned {
                    repository: key.clone(),
                    why: "has not been scanned yet",
                },
            ));
        }
        let target = match self.target(repository, &key).await {
            Ok(t) => t,
            Err(e) => return Ok(failed(image, e)),
        };
        match self.source.list_tags(&target).await {
            Ok(tags) => {
                let now = store::now();
                let record = ScanRecord {
                    revision: store::revision(&tags),
                    first_seen: store::first_seen(
                        &tags,
                        stored.as_ref(),
                        now,
                        if self.options.scanned_before { now } else { 0 },
                    ),
                    tags,
                    scanned_at: now,
                };
                tracing::info!(repository = %key, image, tags = record.tags.len(), "scanned");
                Ok(Scanned {
                    repository: key,
                    image,
                    outcome: Ok(record),
                    cached: false,
                })
            }
            Err(e) => {
                // A cloud token the registry refuses before its time
                // (revoked, a clock off) is not reused on the next try.
                if e.kind == crate::registry::FailureKind::Unauthorized
                    && let Ok(Some(provider)) =
                        crate::registry::identity::Provider::of(repository.spec.provider.as_deref())
                {
                    self.options
                        .identities
                        .forget(provider, &target.image.registry);
                }
                Ok(failed(
                    image,
                    ScanError::registry(format!("ImageRepository {key}"), &e),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::registry::RegistryError;

    /// Tags `1.0.0` and `1.N.0` for `team/appN`, counting the listings.
    #[derive(Default)]
    struct Listings {
        calls: AtomicUsize,
    }

    impl TagSource for Listings {
        async fn list_tags(&self, target: &ScanTarget) -> Result<Vec<Tag>, RegistryError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let n = target
                .image
                .repository
                .trim_start_matches("team/app")
                .to_string();
            Ok(vec![
                Tag::from("1.0.0"),
                Tag::from(format!("1.{n}.0").as_str()),
            ])
        }

        async fn digest(&self, _: &ScanTarget, tag: &str) -> Result<String, RegistryError> {
            Ok(format!("sha256:{:064}", tag.len()))
        }

        async fn manifest(
            &self,
            _: &ScanTarget,
            _: &str,
            _: &str,
        ) -> Result<Option<crate::registry::Manifest>, RegistryError> {
            Ok(None)
        }

        async fn referrers(
            &self,
            _: &ScanTarget,
            _: &str,
        ) -> Result<Option<crate::registry::Manifest>, RegistryError> {
            Ok(None)
        }

        async fn blob(
            &self,
            _: &ScanTarget,
            digest: &str,
            _: usize,
        ) -> Result<Vec<u8>, RegistryError> {
            panic!("no policy of these tests has a gate, so no blob {digest} is read")
        }
    }

    fn objects(repositories: usize, duplicate_of: usize) -> ObjectSet {
        let object = |namespace: &str, name: &str, n: usize| {
            format!(
                "---\napiVersion: hoist.dev/v1alpha1\nkind: ImageRepository\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: {{image: registry.test/team/app{n}, interval: 1h}}\n---\napiVersion: hoist.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  imageRepositoryRef: {{name: {name}}}\n  policy: {{semver: {{range: '>=1.0.0'}}}}\n"
            )
        };
        let mut text: String = (0..repositories)
            .map(|n| object("apps", &format!("app{n}"), n))
            .collect();
        // Another team's repository of the same image, last.
        text.push_str(&object("other", "copy", duplicate_of));
        let mut set = ObjectSet::default();
        let mut errors = Vec::new();
        crate::load::load_text(
            std::path::Path::new("objects.yaml"),
            &text,
            true,
            &mut set,
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        set
    }

    /// Scans are written in batches: every one is in the store after the
    /// run, and an image scanned earlier in the run, not yet written, is
    /// not listed a second time.
    #[tokio::test]
    async fn batched_scans_all_reach_the_store_and_serve_the_same_run() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let repositories = SCAN_BATCH + 6;
        // The last batch is unwritten when the copy's turn comes.
        let set = objects(repositories, repositories - 1);
        let options = ScanOptions {
            tags: TagFreshness::WithinInterval,
            concurrency: 1,
            credentials: Arc::default(),
            identities: Arc::default(),
            now: None,
            scanned_before: false,
            rescan: Default::default(),
            evidence: Default::default(),
        };
        let source = Listings::default();
        let report = scan(&set, &source, &store, &options)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(source.calls.load(Ordering::SeqCst), repositories);
        let mut tags: Vec<(String, Option<String>)> = report
            .policies
            .iter()
            .map(|p| {
                (
                    p.policy.clone(),
                    p.tag.as_ref().map(|t| t.as_str().to_string()),
                )
            })
            .collect();
        tags.sort();
        assert_eq!(tags.len(), repositories + 1);
        let last = format!("1.{}.0", repositories - 1);
        assert!(
            tags.contains(&("other/copy".to_string(), Some(last))),
            "{tags:?}"
        );
        assert!(
            tags.contains(&("apps/app7".to_string(), Some("1.7.0".into()))),
            "{tags:?}"
        );
        for n in 0..repositories {
            let stored = store
                .scan(&format!("registry.test/team/app{n}"))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                stored.map(|r| r.tags.len()),
                Some(2),
                "app{n} is not in the store"
            );
        }
        // Within the interval, a second run lists nothing.
        scan(&set, &source, &store, &options)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(source.calls.load(Ordering::SeqCst), repositories);
    }

    /// The controller's selection reads the store only: a repository
    /// never scanned is "not scanned", never listed; `minimumAge` holds
    /// back a tag first seen too recently, and says until when.
    #[tokio::test]
    async fn selection_from_the_store_lists_nothing_and_holds_young_tags_back() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let mut set = objects(1, 0);
        let policy = &mut set.policies[0].object;
        policy.spec.minimum_age = Some(crate::api::GoDuration("1h".into()));
        let (policy, repository) = (
            set.policies[0].object.clone(),
            set.repositories[0].object.clone(),
        );
        let now = 1_800_000_000;
        let options = ScanOptions {
            tags: TagFreshness::WithinInterval,
            concurrency: 1,
            credentials: Arc::default(),
            identities: Arc::default(),
            now: Some(now),
            scanned_before: false,
            rescan: Default::default(),
            evidence: Default::default(),
        };
        let source = Listings::default();
        let unscanned = select_stored(&set, &policy, &repository, &source, &store, &options)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(
                unscanned.repository_failure,
                Some(ScanError::NotScanned { .. })
            ),
            "{unscanned:?}"
        );
        assert_eq!(unscanned.row.tag, None);
        assert_eq!(source.calls.load(Ordering::SeqCst), 0, "nothing listed");

        // 1.1.0 first seen ten minutes ago, 1.0.0 long before.
        let tags = vec![Tag::from("1.0.0"), Tag::from("1.1.0")];
        let record = ScanRecord {
            revision: store::revision(&tags),
            first_seen: [("1.1.0".to_string(), now - 600)].into_iter().collect(),
            tags,
            scanned_at: now,
        };
        store
            .put_scan("registry.test/team/app0", &record)
            .unwrap_or_else(|e| panic!("{e}"));
        let held = select_stored(&set, &policy, &repository, &source, &store, &options)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            held.repository_failure.is_none() && held.failure.is_none(),
            "{held:?}"
        );
        assert_eq!(held.row.tag, Some(Tag::from("1.0.0")));
        assert_eq!(
            held.row.waiting,
            Some(crate::policy::Waiting {
                tag: "1.1.0".into(),
                eligible_at: now - 600 + 3600,
            })
        );
        assert_eq!(
            source.calls.load(Ordering::SeqCst),
            0,
            "still nothing listed"
        );
    }

    /// `spec.promotion`: a tag is a candidate once the upstream ran its
    /// digest healthy for the soak; one still soaking waits, as for
    /// `minimumAge`; a tag an automation rolled back is passed over.
    #[tokio::test]
    async fn promotion_waits_for_the_soak_and_rejected_tags_are_passed_over() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let mut set = objects(2, 0);
        set.policies
            .retain(|p| p.object.metadata.name.as_deref() == Some("app1"));
        let key = "apps/app1".to_string();
        set.policies[0].object.spec.promotion = Some(crate::api::PromotionSpec {
            from: "staging/fleet".into(),
            soak: Some(crate::api::GoDuration("1h".into())),
            evidence: crate::api::EvidenceSource {
                url: "https://git.example/fleet.git".into(),
                branch: "main".into(),
                path: None,
                secret_ref: None,
            },
        });
        let policy = set.policies[0].object.clone();
        let repository = set
            .repositories
            .iter()
            .find(|r| r.object.metadata.name.as_deref() == Some("app1"))
            .map(|r| r.object.clone())
            .unwrap_or_else(|| panic!("no app1"));
        let now: u64 = 1_800_000_000;
        let at = |secs: u64| {
            jiff::Timestamp::from_second(i64::try_from(secs).unwrap_or(0))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        // Both tags have this digest in `Listings`.
        let digest = format!("sha256:{:064}", 5);
        let deployed = |tag: &str| crate::promotion::Deployed {
            policy: "staging/app".into(),
            image: "registry.test/team/app1".into(),
            tag: tag.into(),
            digest: digest.clone(),
        };
        let mut evidence = crate::promotion::Evidence::new("staging/fleet");
        evidence.record_healthy(&[deployed("1.0.0")], "c1", at(now - 10_000));
        evidence.record_healthy(&[deployed("1.1.0")], "c2", at(now - 600));
        let tags = vec![Tag::from("1.0.0"), Tag::from("1.1.0"), Tag::from("1.2.0")];
        let record = ScanRecord {
            revision: store::revision(&tags),
            first_seen: Default::default(),
            tags,
            scanned_at: now,
        };
        store
            .put_scan("registry.test/team/app1", &record)
            .unwrap_or_else(|e| panic!("{e}"));
        let options = |now: u64| ScanOptions {
            tags: TagFreshness::WithinInterval,
            concurrency: 1,
            credentials: Arc::default(),
            identities: Arc::default(),
            now: Some(now),
            scanned_before: false,
            rescan: Default::default(),
            evidence: Arc::new([(key.clone(), Ok(evidence.clone()))].into_iter().collect()),
        };
        let source = Listings::default();
        let select = |now: u64| {
            let options = options(now);
            let (set, policy, repository, source, store) =
                (&set, &policy, &repository, &source, &store);
            async move {
                select_stored(set, policy, repository, source, store, &options)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"))
                    .row
            }
        };
        // 1.2.0 never ran upstream; 1.1.0 has soaked ten minutes of sixty.
        let row = select(now).await;
        assert_eq!(row.tag, Some(Tag::from("1.0.0")), "{row:?}");
        assert_eq!(row.digest.as_deref(), Some(digest.as_str()));
        assert_eq!(
            row.waiting,
            Some(crate::policy::Waiting {
                tag: "1.1.0".into(),
                eligible_at: now - 600 + 3600,
            })
        );
        // The soak over: 1.1.0.
        let row = select(now + 3000).await;
        assert_eq!(row.tag, Some(Tag::from("1.1.0")), "{row:?}");
        assert_eq!(row.waiting, None);
        // Rolled back here: passed over, and 1.0.0 again.
        let rejected = crate::api::RejectedTag {
            tag: "1.1.0".into(),
            digest: Some(digest.clone()),
            automation: "apps/fleet".into(),
            at: "2027-01-15T08:00:00Z".into(),
            reason: "Deployment apps/app: failed".into(),
        };
        assert!(
            store
                .reject(&key, std::slice::from_ref(&rejected))
                .unwrap_or(false)
        );
        assert!(
            !store.reject(&key, &[rejected]).unwrap_or(true),
            "known already"
        );
        let row = select(now + 3000).await;
        assert_eq!(row.tag, Some(Tag::from("1.0.0")), "{row:?}");
        assert_eq!(row.passed_over[0].tag, "1.1.0");
        assert_eq!(row.passed_over[0].reason, crate::gate::Reason::RolledBack);
        assert!(
            row.passed_over[0]
                .message
                .contains("by ImageUpdateAutomation apps/fleet")
        );
        // Evidence that could not be read fails the policy, naming the field.
        let mut failing = options(now);
        failing.evidence = Arc::new(
            [(key.clone(), Err("no such branch".to_string()))]
                .into_iter()
                .collect(),
        );
        let failed = select_stored(&set, &policy, &repository, &source, &store, &failing)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            failed.failure.map(|e| e.to_string()),
            Some("ImagePolicy apps/app1: spec.promotion.evidence: no such branch".to_string())
        );
    }
}
