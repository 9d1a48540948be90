//! In-memory ports for the pipeline's unit tests: a git remote whose
//! branches and commits are maps (checkouts are real directories, since
//! the rewrite reads and writes files), a forge that keeps its pull
//! requests in a list, and records in maps. Each can be told to misbehave
//! the way a real server does: a branch that moves just before a push, a
//! commit by someone else.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::ports::{Forges, Records, Repository};
use crate::api::ForgeProvider;
use crate::forge::{Forge, ForgeError, ForgeRepo, PullRequestRecord, PullRequestSpec, PullState};
use crate::git::{Checkout, Commit, GitCredentials, GitError, Push, Reference, Signature, Source};
use crate::store::{StoreError, SyncRecord};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A commit of the memory remote: its files and who made it.
#[derive(Clone, Debug)]
pub struct Stored {
    pub parent: Option<String>,
    pub files: BTreeMap<PathBuf, String>,
    pub author: String,
    pub committer: String,
    pub message: String,
}

/// The remote: branches pointing at commits.
#[derive(Debug, Default)]
pub struct Remote {
    pub branches: BTreeMap<String, String>,
    pub commits: HashMap<String, Stored>,
}

impl Remote {
    fn id_of(stored: &Stored) -> String {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        hash.update(format!("{stored:?}").as_bytes());
        format!("{:x}", hash.finalize())
    }

    fn tree_of(files: &BTreeMap<PathBuf, String>) -> String {
        use sha2::Digest;
        format!(
            "{:x}",
            sha2::Sha256::digest(format!("{files:?}").as_bytes())
        )
    }

    /// Adds a commit on top of `branch` (a person's, or the first one)
    /// and moves the branch to it.
    pub fn commit_on(
        &mut self,
        branch: &str,
        files: &[(&str, &str)],
        who: &Signature,
        message: &str,
    ) -> String {
        let parent = self.branches.get(branch).cloned();
        let mut tree = parent
            .as_ref()
            .and_then(|p| self.commits.get(p))
            .map(|c| c.files.clone())
            .unwrap_or_default();
        for (path, text) in files {
            tree.insert(PathBuf::from(path), (*text).to_string());
        }
        let stored = Stored {
            parent,
            files: tree,
            author: who.name.clone(),
            committer: format!("{} <{}>", who.name, who.email),
            message: message.to_string(),
        };
        let id = Self::id_of(&stored);
        self.commits.insert(id.clone(), stored);
        self.branches.insert(branch.to_string(), id.clone());
        id
    }

    pub fn info(&self, id: &str) -> Option<Commit> {
        let c = self.commits.get(id)?;
        Some(Commit {
            id: id.to_string(),
            parent: c.parent.clone(),
            tree: Self::tree_of(&c.files),
            author: c.author.clone(),
            committer: c.committer.clone(),
            message: c.message.clone(),
        })
    }

    /// The file at `path` on `branch`'s tip.
    pub fn file(&self, branch: &str, path: &str) -> Option<String> {
        let tip = self.branches.get(branch)?;
        self.commits.get(tip)?.files.get(Path::new(path)).cloned()
    }
}

type Hook = Box<dyn FnMut(&mut Remote) + Send>;

/// A git remote in memory. Clones share it.
#[derive(Clone, Default)]
pub struct MemoryGit {
    pub remote: Arc<Mutex<Remote>>,
    /// HEAD of each checkout directory.
    heads: Arc<Mutex<HashMap<PathBuf, String>>>,
    /// Runs before each push, with the remote: a test's chance to move
    /// the branch just then, as another writer would.
    before_push: Arc<Mutex<Option<Hook>>>,
    /// Every push asked for: (branch, lease).
    pub pushes: Arc<Mutex<Vec<(String, String)>>>,
}

impl MemoryGit {
    pub fn remote(&self) -> MutexGuard<'_, Remote> {
        lock(&self.remote)
    }

    pub fn before_push(&self, hook: impl FnMut(&mut Remote) + Send + 'static) {
        *lock(&self.before_push) = Some(Box::new(hook));
    }

    pub fn pushes(&self) -> Vec<(String, String)> {
        lock(&self.pushes).clone()
    }

    fn unknown(what: &str) -> GitError {
        GitError::Command {
            command: "memory".into(),
            message: format!("no {what}"),
        }
    }
}

fn read_tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let (Ok(text), Ok(relative)) =
                (std::fs::read_to_string(&path), path.strip_prefix(dir))
            {
                files.insert(relative.to_path_buf(), text);
            }
        }
    }
    files
}

#[async_trait::async_trait]
impl Repository for MemoryGit {
    fn with_credentials(
        &self,
        _: &GitCredentials,
        _: &Path,
    ) -> Result<Box<dyn Repository>, GitError> {
        Ok(Box::new(self.clone()))
    }

    async fn checkout(&self, cache: &Path, source: &Source) -> Result<Checkout, GitError> {
        let remote = self.remote();
        // Branches and commits; tags live in the real git's tests.
        let (base, name) = match &source.reference {
            Reference::Branch(name) => (
                remote
                    .branches
                    .get(name)
                    .cloned()
                    .ok_or_else(|| Self::unknown(&format!("branch {name}")))?,
                name.clone(),
            ),
            Reference::Commit(id) if remote.commits.contains_key(id) => {
                (id.clone(), format!("commit-{id}"))
            }
            other => return Err(Self::unknown(&other.to_string())),
        };
        let files = remote.commits.get(&base).map(|c| c.files.clone());
        drop(remote);
        let dir = cache.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files.into_iter().flatten() {
            let path = dir.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|_| Self::unknown("directory"))?;
            }
            std::fs::write(&path, text).map_err(|_| Self::unknown("file"))?;
        }
        std::fs::create_dir_all(&dir).map_err(|_| Self::unknown("directory"))?;
        lock(&self.heads).insert(dir.clone(), base.clone());
        Ok(Checkout {
            dir,
            source: source.clone(),
            base,
        })
    }

    async fn contains(&self, checkout: &Checkout, commit: &str) -> Result<bool, GitError> {
        let remote = self.remote();
        let mut at = Some(checkout.base.clone());
        while let Some(id) = at {
            if id == commit {
                return Ok(true);
            }
            at = remote.commits.get(&id).and_then(|c| c.parent.clone());
        }
        Ok(false)
    }

    async fn remote_head(&self, _: &Checkout, branch: &str) -> Result<Option<String>, GitError> {
        Ok(self.remote().branches.get(branch).cloned())
    }

    async fn tip(&self, _: &Checkout, branch: &str) -> Result<Commit, GitError> {
        let remote = self.remote();
        let id = remote
            .branches
            .get(branch)
            .ok_or_else(|| Self::unknown(&format!("branch {branch}")))?;
        remote.info(id).ok_or_else(|| Self::unknown("commit"))
    }

    async fn commit_info(&self, _: &Checkout, rev: &str) -> Result<Commit, GitError> {
        self.remote()
            .info(rev)
            .ok_or_else(|| Self::unknown("commit"))
    }

    async fn commit(
        &self,
        checkout: &Checkout,
        author: &Signature,
        message: &str,
    ) -> Result<Option<String>, GitError> {
        let files = read_tree(&checkout.dir);
        let mut remote = self.remote();
        if remote.commits.get(&checkout.base).map(|c| &c.files) == Some(&files) {
            return Ok(None);
        }
        let stored = Stored {
            parent: Some(checkout.base.clone()),
            files,
            author: author.name.clone(),
            committer: format!("{} <{}>", author.name, author.email),
            message: message.to_string(),
        };
        let id = Remote::id_of(&stored);
        remote.commits.insert(id.clone(), stored);
        lock(&self.heads).insert(checkout.dir.clone(), id.clone());
        Ok(Some(id))
    }

    async fn push(
        &self,
        checkout: &Checkout,
        branch: &str,
        expected: &str,
        _options: &[String],
    ) -> Result<Push, GitError> {
        lock(&self.pushes).push((branch.to_string(), expected.to_string()));
        let mut remote = self.remote();
        if let Some(hook) = lock(&self.before_push).as_mut() {
            hook(&mut remote);
        }
        let now = remote.branches.get(branch).cloned().unwrap_or_default();
        if now != expected {
            return Ok(Push::Rejected(format!("{branch} is at {now}")));
        }
        let head = lock(&self.heads)
            .get(&checkout.dir)
            .cloned()
            .ok_or_else(|| Self::unknown("HEAD"))?;
        remote.branches.insert(branch.to_string(), head.clone());
        Ok(Push::Pushed(head))
    }

    /// Only Flux documents push to a second ref; the real-git tests cover
    /// it, so the in-memory remote refuses rather than pretends.
    async fn push_also(
        &self,
        _: &Checkout,
        destination: &str,
        _: &[String],
    ) -> Result<Push, GitError> {
        Err(GitError::Command {
            command: "push".into(),
            message: format!("the in-memory remote does not take {destination}"),
        })
    }

    async fn delete_branch(
        &self,
        _: &Checkout,
        branch: &str,
        expected: &str,
    ) -> Result<Push, GitError> {
        let mut remote = self.remote();
        let now = remote.branches.get(branch).cloned().unwrap_or_default();
        if now != expected {
            return Ok(Push::Rejected(format!("{branch} is at {now}")));
        }
        remote.branches.remove(branch);
        Ok(Push::Pushed(String::new()))
    }
}

/// A forge whose pull requests are a list. Clones share it.
#[derive(Clone, Default)]
pub struct MemoryForge {
    pub pulls: Arc<Mutex<Vec<PullState>>>,
    /// Comments left on closing: (number, comment).
    pub comments: Arc<Mutex<Vec<(u64, String)>>>,
}

impl MemoryForge {
    pub fn pulls(&self) -> Vec<PullState> {
        lock(&self.pulls).clone()
    }
}

fn no_pull(number: u64) -> ForgeError {
    ForgeError::Http {
        method: "GET".into(),
        path: format!("/pulls/{number}"),
        status: 404,
        message: "Not Found".into(),
    }
}

#[async_trait::async_trait]
impl Forge for MemoryForge {
    fn identity(&self) -> String {
        "memory".into()
    }
    async fn find_open(&self, head: &str, base: &str) -> Result<Option<PullState>, ForgeError> {
        Ok(lock(&self.pulls)
            .iter()
            .find(|p| p.open && p.head == head && p.base == base)
            .cloned())
    }
    async fn get(&self, number: u64) -> Result<PullState, ForgeError> {
        lock(&self.pulls)
            .iter()
            .find(|p| p.number == number)
            .cloned()
            .ok_or_else(|| no_pull(number))
    }
    async fn create(&self, spec: &PullRequestSpec) -> Result<PullState, ForgeError> {
        let mut pulls = lock(&self.pulls);
        let number = pulls.len() as u64 + 1;
        let pull = PullState {
            number,
            url: format!("memory://pulls/{number}"),
            open: true,
            title: spec.title.clone(),
            body: spec.body.clone(),
            labels: spec.labels.clone(),
            head: spec.head.clone(),
            base: spec.base.clone(),
            fork: false,
        };
        pulls.push(pull.clone());
        Ok(pull)
    }
    async fn edit(&self, number: u64, title: &str, body: &str) -> Result<PullState, ForgeError> {
        let mut pulls = lock(&self.pulls);
        let pull = pulls
            .iter_mut()
            .find(|p| p.number == number)
            .ok_or_else(|| no_pull(number))?;
        pull.title = title.to_string();
        pull.body = body.to_string();
        Ok(pull.clone())
    }
    async fn add_labels(&self, number: u64, labels: &[String]) -> Result<(), ForgeError> {
        let mut pulls = lock(&self.pulls);
        let pull = pulls
            .iter_mut()
            .find(|p| p.number == number)
            .ok_or_else(|| no_pull(number))?;
        for label in labels {
            if !pull.labels.contains(label) {
                pull.labels.push(label.clone());
            }
        }
        Ok(())
    }
    async fn close(&self, number: u64, comment: &str) -> Result<(), ForgeError> {
        let mut pulls = lock(&self.pulls);
        let pull = pulls
            .iter_mut()
            .find(|p| p.number == number)
            .ok_or_else(|| no_pull(number))?;
        pull.open = false;
        lock(&self.comments).push((number, comment.to_string()));
        Ok(())
    }
    fn body_limit(&self) -> usize {
        crate::forge::GITHUB_BODY_LIMIT
    }
}

/// Hands out one memory forge, and tokens from a map instead of the
/// environment.
#[derive(Clone, Default)]
pub struct MemoryForges {
    pub forge: MemoryForge,
    pub env: BTreeMap<String, String>,
}

impl Forges for MemoryForges {
    fn connect(
        &self,
        _: ForgeProvider,
        _: &str,
        _: &ForgeRepo,
        _: String,
    ) -> Result<Box<dyn Forge>, ForgeError> {
        Ok(Box::new(self.forge.clone()))
    }
    fn token_from_env(&self, variable: &str) -> Option<String> {
        self.env.get(variable).cloned()
    }
}

/// Records in maps.
#[derive(Default)]
pub struct MemoryRecords {
    pub pull_requests: Mutex<BTreeMap<String, PullRequestRecord>>,
    pub syncs: Mutex<BTreeMap<String, SyncRecord>>,
    pub rejections: Mutex<BTreeMap<String, Vec<crate::api::RejectedTag>>>,
}

impl Records for MemoryRecords {
    fn pull_request(&self, automation: &str) -> Result<Option<PullRequestRecord>, StoreError> {
        Ok(lock(&self.pull_requests).get(automation).cloned())
    }
    fn put_pull_request(
        &self,
        automation: &str,
        record: Option<&PullRequestRecord>,
    ) -> Result<(), StoreError> {
        let mut records = lock(&self.pull_requests);
        match record {
            Some(r) => records.insert(automation.to_string(), r.clone()),
            None => records.remove(automation),
        };
        Ok(())
    }
    fn sync_record(&self, owner: &str) -> Result<Option<SyncRecord>, StoreError> {
        Ok(lock(&self.syncs).get(owner).cloned())
    }
    fn put_sync_record(&self, owner: &str, record: &SyncRecord) -> Result<(), StoreError> {
        lock(&self.syncs).insert(owner.to_string(), record.clone());
        Ok(())
    }
    fn reject(
        &self,
        policy: &str,
        rejected: &[crate::api::RejectedTag],
    ) -> Result<bool, StoreError> {
        let mut all = lock(&self.rejections);
        let known = all.entry(policy.to_string()).or_default();
        let before = known.len();
        for r in rejected {
            if !known.iter().any(|k| k.tag == r.tag) {
                known.push(r.clone());
            }
        }
        Ok(known.len() > before)
    }
    fn rejections(&self, policy: &str) -> Result<Vec<crate::api::RejectedTag>, StoreError> {
        Ok(lock(&self.rejections)
            .get(policy)
            .cloned()
            .unwrap_or_default())
    }
}
