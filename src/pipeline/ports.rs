//! The ports an automation runs through: git, the forges, the cluster and
//! the store. The drivers (`hoist run`, the controller) plug in the real
//! ones; unit tests plug in memory, so the pipeline's decisions — the push
//! race, the owned-branch refusal, retiring a pull request — are tested
//! without a server. The clock is [`super::RunOptions::now`].

use std::path::Path;

use crate::api::ForgeProvider;
use crate::forge::{Forge, ForgeError, ForgeRepo, PullRequestRecord};
use crate::git::{Branch, Checkout, Commit, Git, GitCredentials, GitError, Push, Signature};
use crate::model::InventoryEntry;
use crate::store::{Store, StoreError, SyncRecord};
use crate::sync::plan::Desired;
use crate::sync::{Owner, SyncOptions, SyncReport};

/// The git operations an automation makes on its repository.
pub trait Repository {
    /// The same repository, as the given credentials reach it (their files
    /// under `dir`).
    fn with_credentials(
        &self,
        credentials: &GitCredentials,
        dir: &Path,
    ) -> Result<Box<dyn Repository>, GitError>;
    /// A checkout of `branch` as the remote has it now, under `cache`.
    fn checkout(&self, cache: &Path, branch: &Branch) -> Result<Checkout, GitError>;
    /// Where `branch` points on the remote; `None` when it does not exist.
    fn remote_head(&self, checkout: &Checkout, branch: &str) -> Result<Option<String>, GitError>;
    /// The tip of `branch` on the remote, fetched.
    fn tip(&self, checkout: &Checkout, branch: &str) -> Result<Commit, GitError>;
    fn commit_info(&self, checkout: &Checkout, rev: &str) -> Result<Commit, GitError>;
    /// Commits the checkout's changes; `None` when there are none.
    fn commit(
        &self,
        checkout: &Checkout,
        author: &Signature,
        message: &str,
    ) -> Result<Option<String>, GitError>;
    /// Pushes the checkout's HEAD to `branch` only while the remote has it
    /// at `expected` (empty: only if it does not exist).
    fn push(&self, checkout: &Checkout, branch: &str, expected: &str) -> Result<Push, GitError>;
    /// Deletes `branch` only while the remote has it at `expected`.
    fn delete_branch(
        &self,
        checkout: &Checkout,
        branch: &str,
        expected: &str,
    ) -> Result<Push, GitError>;
}

impl Repository for Git {
    fn with_credentials(
        &self,
        credentials: &GitCredentials,
        dir: &Path,
    ) -> Result<Box<dyn Repository>, GitError> {
        Ok(Box::new(Git::with_credentials(self, credentials, dir)?))
    }
    fn checkout(&self, cache: &Path, branch: &Branch) -> Result<Checkout, GitError> {
        Git::checkout(self, cache, branch)
    }
    fn remote_head(&self, checkout: &Checkout, branch: &str) -> Result<Option<String>, GitError> {
        Git::remote_head(self, checkout, branch)
    }
    fn tip(&self, checkout: &Checkout, branch: &str) -> Result<Commit, GitError> {
        Git::tip(self, checkout, branch)
    }
    fn commit_info(&self, checkout: &Checkout, rev: &str) -> Result<Commit, GitError> {
        Git::commit_info(self, checkout, rev)
    }
    fn commit(
        &self,
        checkout: &Checkout,
        author: &Signature,
        message: &str,
    ) -> Result<Option<String>, GitError> {
        Git::commit(self, checkout, author, message)
    }
    fn push(&self, checkout: &Checkout, branch: &str, expected: &str) -> Result<Push, GitError> {
        Git::push(self, checkout, branch, expected)
    }
    fn delete_branch(
        &self,
        checkout: &Checkout,
        branch: &str,
        expected: &str,
    ) -> Result<Push, GitError> {
        Git::delete_branch(self, checkout, branch, expected)
    }
}

/// Forge clients, and the tokens the environment holds for them: the
/// pipeline never reads `std::env` itself.
pub trait Forges {
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

/// The real forges, called from outside the async runtime they block on.
pub struct ForgeClients {
    pub runtime: tokio::runtime::Handle,
}

impl Forges for ForgeClients {
    fn connect(
        &self,
        provider: ForgeProvider,
        api: &str,
        repo: &ForgeRepo,
        token: String,
    ) -> Result<Box<dyn Forge>, ForgeError> {
        use crate::forge::{GitHub, GitLab, Gitea};
        let runtime = self.runtime.clone();
        Ok(match provider {
            ForgeProvider::Gitlab => Box::new(GitLab::new(api, repo, token, runtime)?),
            ForgeProvider::Gitea => Box::new(Gitea::new(api, repo, token, runtime)?),
            ForgeProvider::Github => Box::new(GitHub::new(api, repo, token, runtime)?),
        })
    }

    fn token_from_env(&self, variable: &str) -> Option<String> {
        std::env::var(variable).ok()
    }
}

/// Applies a revision's manifests to the cluster (`spec.sync`).
pub trait Cluster {
    /// Applies `source` in `namespace` as `service_account` (or the
    /// driver's default identity), pruning what `previous` holds and the
    /// source no longer does. Returns the report and the user the sync
    /// impersonated, if any.
    fn sync(
        &self,
        namespace: &str,
        service_account: Option<&str>,
        source: Vec<Desired>,
        previous: &[InventoryEntry],
        owner: &Owner,
        options: &SyncOptions,
    ) -> Result<(SyncReport, Option<String>), crate::sync::ImpersonationError>;
}

/// The real cluster, reached from outside the async runtime.
pub struct ClusterSync {
    pub access: crate::sync::ClusterAccess,
    pub runtime: tokio::runtime::Handle,
}

impl Cluster for ClusterSync {
    fn sync(
        &self,
        namespace: &str,
        service_account: Option<&str>,
        source: Vec<Desired>,
        previous: &[InventoryEntry],
        owner: &Owner,
        options: &SyncOptions,
    ) -> Result<(SyncReport, Option<String>), crate::sync::ImpersonationError> {
        let (client, impersonated) = self.access.client_for(namespace, service_account)?;
        let report = self
            .runtime
            .block_on(crate::sync::sync(&client, source, previous, owner, options));
        Ok((report, impersonated))
    }
}

/// What an automation remembers between runs: its pull request and its
/// sync's inventory.
pub trait Records {
    fn pull_request(&self, automation: &str) -> Result<Option<PullRequestRecord>, StoreError>;
    fn put_pull_request(
        &self,
        automation: &str,
        record: Option<&PullRequestRecord>,
    ) -> Result<(), StoreError>;
    fn sync_record(&self, owner: &str) -> Result<Option<SyncRecord>, StoreError>;
    fn put_sync_record(&self, owner: &str, record: &SyncRecord) -> Result<(), StoreError>;
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
