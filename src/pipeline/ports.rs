//! The ports an automation runs through: git, the forges, the cluster and
//! the store. The drivers (`hoist run`, the controller) plug in the real
//! ones; unit tests plug in memory, so the pipeline's decisions — the push
//! race, the owned-branch refusal, retiring a pull request — are tested
//! without a server. The clock is [`super::RunOptions::now`].

use std::path::Path;

use crate::api::{ForgeProvider, RejectedTag};
use crate::forge::{Forge, ForgeError, ForgeRepo, PullRequestRecord};
use crate::git::{Checkout, Commit, Git, GitCredentials, GitError, Push, Signature, Source};
use crate::model::InventoryEntry;
use crate::store::{Store, StoreError, SyncRecord};
use crate::sync::plan::Desired;
use crate::sync::{Owner, SyncOptions, SyncReport};

/// The git operations an automation makes on its repository. Async, with
/// boxed futures (async-trait) since the driver picks the port at run
/// time.
#[async_trait::async_trait]
pub trait Repository: Send + Sync {
    /// The same repository, as the given credentials reach it (their files
    /// under `dir`). Writing a few small files is all it does, so it does
    /// not wait on anything.
    fn with_credentials(
        &self,
        credentials: &GitCredentials,
        dir: &Path,
    ) -> Result<Box<dyn Repository>, GitError>;
    /// A checkout of `source` as the remote has it now, under `cache`.
    async fn checkout(&self, cache: &Path, source: &Source) -> Result<Checkout, GitError>;
    /// Whether `commit` is in the history of the checkout's base.
    async fn contains(&self, checkout: &Checkout, commit: &str) -> Result<bool, GitError>;
    /// Where `branch` points on the remote; `None` when it does not exist.
    async fn remote_head(
        &self,
        checkout: &Checkout,
        branch: &str,
    ) -> Result<Option<String>, GitError>;
    /// The tip of `branch` on the remote, fetched.
    async fn tip(&self, checkout: &Checkout, branch: &str) -> Result<Commit, GitError>;
    async fn commit_info(&self, checkout: &Checkout, rev: &str) -> Result<Commit, GitError>;
    /// Commits the checkout's changes; `None` when there are none.
    async fn commit(
        &self,
        checkout: &Checkout,
        author: &Signature,
        message: &str,
    ) -> Result<Option<String>, GitError>;
    /// Pushes the checkout's HEAD to `branch` only while the remote has it
    /// at `expected` (empty: only if it does not exist).
    async fn push(
        &self,
        checkout: &Checkout,
        branch: &str,
        expected: &str,
        options: &[String],
    ) -> Result<Push, GitError>;
    /// Pushes the checkout's HEAD to the full ref `destination` as well,
    /// never forcing.
    async fn push_also(
        &self,
        checkout: &Checkout,
        destination: &str,
        options: &[String],
    ) -> Result<Push, GitError>;
    /// Deletes `branch` only while the remote has it at `expected`.
    async fn delete_branch(
        &self,
        checkout: &Checkout,
        branch: &str,
        expected: &str,
    ) -> Result<Push, GitError>;
}

/// Runs a git command on a blocking thread: git is a child process hoist
/// waits for, and the runtime's workers must keep serving the controller
/// (its watches, leases and webhooks) meanwhile.
async fn blocking<T: Send + 'static>(
    git: &Git,
    call: impl FnOnce(&Git) -> Result<T, GitError> + Send + 'static,
) -> Result<T, GitError> {
    let git = git.clone();
    tokio::task::spawn_blocking(move || call(&git))
        .await
        .map_err(|e| GitError::Command {
            command: "(task)".into(),
            message: format!("the git call did not finish: {e}"),
        })?
}

#[async_trait::async_trait]
impl Repository for Git {
    fn with_credentials(
        &self,
        credentials: &GitCredentials,
        dir: &Path,
    ) -> Result<Box<dyn Repository>, GitError> {
        Ok(Box::new(Git::with_credentials(self, credentials, dir)?))
    }
    async fn checkout(&self, cache: &Path, source: &Source) -> Result<Checkout, GitError> {
        let (cache, source) = (cache.to_path_buf(), source.clone());
        blocking(self, move |git| git.checkout(&cache, &source)).await
    }
    async fn contains(&self, checkout: &Checkout, commit: &str) -> Result<bool, GitError> {
        let (checkout, commit) = (checkout.clone(), commit.to_string());
        blocking(self, move |git| git.contains(&checkout, &commit)).await
    }
    async fn remote_head(
        &self,
        checkout: &Checkout,
        branch: &str,
    ) -> Result<Option<String>, GitError> {
        let (checkout, branch) = (checkout.clone(), branch.to_string());
        blocking(self, move |git| git.remote_head(&checkout, &branch)).await
    }
    async fn tip(&self, checkout: &Checkout, branch: &str) -> Result<Commit, GitError> {
        let (checkout, branch) = (checkout.clone(), branch.to_string());
        blocking(self, move |git| git.tip(&checkout, &branch)).await
    }
    async fn commit_info(&self, checkout: &Checkout, rev: &str) -> Result<Commit, GitError> {
        let (checkout, rev) = (checkout.clone(), rev.to_string());
        blocking(self, move |git| git.commit_info(&checkout, &rev)).await
    }
    async fn commit(
        &self,
        checkout: &Checkout,
        author: &Signature,
        message: &str,
    ) -> Result<Option<String>, GitError> {
        let (checkout, author, message) = (checkout.clone(), author.clone(), message.to_string());
        blocking(self, move |git| git.commit(&checkout, &author, &message)).await
    }
    async fn push(
        &self,
        checkout: &Checkout,
        branch: &str,
        expected: &str,
        options: &[String],
    ) -> Result<Push, GitError> {
        let (checkout, branch, expected, options) = (
            checkout.clone(),
            branch.to_string(),
            expected.to_string(),
            options.to_vec(),
        );
        blocking(self, move |git| {
            git.push_with(&checkout, &branch, &expected, &options)
        })
        .await
    }
    async fn push_also(
        &self,
        checkout: &Checkout,
        destination: &str,
        options: &[String],
    ) -> Result<Push, GitError> {
        let (checkout, destination, options) =
            (checkout.clone(), destination.to_string(), options.to_vec());
        blocking(self, move |git| {
            git.push_also(&checkout, &destination, &options)
        })
        .await
    }
    async fn delete_branch(
        &self,
        checkout: &Checkout,
        branch: &str,
        expected: &str,
    ) -> Result<Push, GitError> {
        let (checkout, branch, expected) =
            (checkout.clone(), branch.to_string(), expected.to_string());
        blocking(self, move |git| {
            git.delete_branch(&checkout, &branch, &expected)
        })
        .await
    }
}

/// Forge clients, and the tokens the environment holds for them: the
/// pipeline never reads `std::env` itself.
pub trait Forges: Send + Sync {
    /// A client for `repo` on `provider`'s API at `api`.
    fn connect(
        &self,
        provider: ForgeProvider,
        api: &str,
        repo: &ForgeRepo,
        token: String,
    ) -> Result<Box<dyn Forge>, ForgeError>;
    /// The token in environment variable `variable` (`GITHUB_TOKEN`, …).
    fn token_from_env(&self, variable: &str) -> Option<String>;
}

/// The real forges.
pub struct ForgeClients;

impl Forges for ForgeClients {
    fn connect(
        &self,
        provider: ForgeProvider,
        api: &str,
        repo: &ForgeRepo,
        token: String,
    ) -> Result<Box<dyn Forge>, ForgeError> {
        use crate::forge::{GitHub, GitLab, Gitea};
        Ok(match provider {
            ForgeProvider::Gitlab => Box::new(GitLab::new(api, repo, token)?),
            ForgeProvider::Gitea => Box::new(Gitea::new(api, repo, token)?),
            ForgeProvider::Github => Box::new(GitHub::new(api, repo, token)?),
        })
    }

    fn token_from_env(&self, variable: &str) -> Option<String> {
        std::env::var(variable).ok()
    }
}

/// Applies a revision's manifests to the cluster (`spec.sync`).
#[async_trait::async_trait]
pub trait Cluster: Send + Sync {
    /// Applies `source` in `namespace` as `service_account` (or the
    /// driver's default identity), pruning what `previous` holds and the
    /// source no longer does. Returns the report and the user the sync
    /// impersonated, if any.
    async fn sync(
        &self,
        namespace: &str,
        service_account: Option<&str>,
        source: Vec<Desired>,
        previous: &[InventoryEntry],
        owner: &Owner,
        options: &SyncOptions,
    ) -> Result<(SyncReport, Option<String>), crate::sync::ImpersonationError>;
}

/// The real cluster.
pub struct ClusterSync {
    pub access: crate::sync::ClusterAccess,
}

#[async_trait::async_trait]
impl Cluster for ClusterSync {
    async fn sync(
        &self,
        namespace: &str,
        service_account: Option<&str>,
        source: Vec<Desired>,
        previous: &[InventoryEntry],
        owner: &Owner,
        options: &SyncOptions,
    ) -> Result<(SyncReport, Option<String>), crate::sync::ImpersonationError> {
        let (client, impersonated) = self.access.client_for(namespace, service_account)?;
        let report = crate::sync::sync(&client, source, previous, owner, options).await;
        Ok((report, impersonated))
    }
}

/// What an automation remembers between runs: its pull request and its
/// sync's inventory. Not async: the store is a local database whose reads
/// and writes take microseconds, never a network round trip.
pub trait Records: Send + Sync {
    fn pull_request(&self, automation: &str) -> Result<Option<PullRequestRecord>, StoreError>;
    fn put_pull_request(
        &self,
        automation: &str,
        record: Option<&PullRequestRecord>,
    ) -> Result<(), StoreError>;
    fn sync_record(&self, owner: &str) -> Result<Option<SyncRecord>, StoreError>;
    fn put_sync_record(&self, owner: &str, record: &SyncRecord) -> Result<(), StoreError>;
    /// Rejects tags for the policy `namespace/name`, so that it never
    /// selects them again; whether any was new.
    fn reject(&self, policy: &str, rejected: &[RejectedTag]) -> Result<bool, StoreError>;
    /// The tags rejected for the policy `namespace/name`.
    fn rejections(&self, policy: &str) -> Result<Vec<RejectedTag>, StoreError>;
}

impl Records for Store {
    fn pull_request(&self, automation: &str) -> Result<Option<PullRequestRecord>, StoreError> {
        Store::pull_request(self, automation)
    }
    fn put_pull_request(
        &self,
        automation: &str,
        record: Option<&PullRequestRecord>,
    ) -> Result<(), StoreError> {
        Store::put_pull_request(self, automation, record)
    }
    fn sync_record(&self, owner: &str) -> Result<Option<SyncRecord>, StoreError> {
        Store::sync_record(self, owner)
    }
    fn put_sync_record(&self, owner: &str, record: &SyncRecord) -> Result<(), StoreError> {
        Store::put_sync_record(self, owner, record)
    }
    fn reject(&self, policy: &str, rejected: &[RejectedTag]) -> Result<bool, StoreError> {
        Store::reject(self, policy, rejected)
    }
    fn rejections(&self, policy: &str) -> Result<Vec<RejectedTag>, StoreError> {
        Store::rejections(self, policy)
    }
}

/// Everything an automation run reaches outside itself.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub git: &'a dyn Repository,
    pub forges: &'a dyn Forges,
    /// Without one, `spec.sync` is skipped.
    pub cluster: Option<&'a dyn Cluster>,
    pub records: &'a dyn Records,
}
