//! State for standalone mode, in an embedded redb database under
//! `--state-dir`: each image's tag list with its revision and scan time,
//! the digests looked up for tags, the pull request each automation keeps
//! open, and what each sync applied.
//!
//! redb commits are atomic and durable, so a killed process leaves the last
//! committed state readable. A second process on the same directory waits
//! for the lock for a while, then fails with a message naming the
//! directory. A database hoist cannot read (corrupt, or written by a newer
//! hoist) is reported and left where it is: it may hold the only copy of a
//! user's state, so hoist never deletes it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::api::RejectedTag;
use crate::model::PullRequestRecord;
use crate::model::Tag;

/// The layout of the tables below; bumped when it changes.
const FORMAT: u64 = 1;
const DATABASE_FILE: &str = "hoist.redb";

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Canonical image name → JSON [`ScanRecord`].
const SCANS: TableDefinition<&str, &[u8]> = TableDefinition::new("scans");
/// `canonical image name:tag` → JSON [`DigestRecord`].
const DIGESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("digests");
/// `namespace/name` of an ImageUpdateAutomation → JSON
/// [`PullRequestRecord`] of the pull request it keeps open.
const PULL_REQUESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("pull_requests");
/// `canonical image name@digest` → JSON [`ArtifactRecord`]: what the gate
/// read of an image (a digest's content never changes).
const ARTIFACTS: TableDefinition<&str, &[u8]> = TableDefinition::new("artifacts");
/// `canonical image name@digest#trust policy fingerprint` → JSON
/// [`VerdictRecord`]: whether the digest verified under that policy.
const VERDICTS: TableDefinition<&str, &[u8]> = TableDefinition::new("verdicts");
/// `namespace/name` of a sync owner → JSON [`SyncRecord`]: what it applied.
const SYNCS: TableDefinition<&str, &[u8]> = TableDefinition::new("syncs");
/// `namespace/name` of an ImagePolicy → JSON list of [`RejectedTag`]s:
/// tags rolled back, never selected again.
const REJECTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("rejections");
/// `namespace/name` of an ImagePolicy → JSON string: the latest tag a
/// NewLatestTag notification last told of, so that `hoist run --once`
/// tells of a new one once, whichever run finds it.
const ANNOUNCED: TableDefinition<&str, &[u8]> = TableDefinition::new("announced");

/// How long to wait for another hoist process to release the database.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// What one sync owner applied last, for pruning, and from which revision.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRecord {
    pub revision: Option<String>,
    pub inventory: Vec<crate::model::InventoryEntry>,
}

/// The last successful scan of one image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanRecord {
    pub tags: Vec<Tag>,
    /// sha256 of the sorted tag list, so a change shows without a diff.
    pub revision: String,
    /// Seconds since the Unix epoch.
    pub scanned_at: u64,
    /// When hoist first saw each tag (seconds since the epoch), for
    /// `minimumAge`. Tags present at a repository's first scan count as
    /// seen at 0: their age is unknown, and holding back every existing
    /// tag would freeze a new install. A tag seen at 0 has no entry: most
    /// tags are, and a repository's record stays the size of its tag list.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub first_seen: std::collections::BTreeMap<String, u64>,
}

/// First-seen times for `tags` scanned at `now`, carried over from the
/// previous record; tags seen at 0 are left out. With no previous record
/// every tag is seen at `unknown`: 0 (old) for a repository never scanned,
/// `now` when the record was lost (a controller's emptyDir after a
/// restart), so that a tag pushed a minute ago is not taken for an old
/// one. A tag of the previous record without a time was seen at 0 (this
/// also reads records from before first-seen times were kept).
pub fn first_seen(
    tags: &[Tag],
    previous: Option<&ScanRecord>,
    now: u64,
    unknown: u64,
) -> std::collections::BTreeMap<String, u64> {
    let before: std::collections::HashSet<&str> = previous
        .map(|p| p.tags.iter().map(Tag::as_str).collect())
        .unwrap_or_default();
    tags.iter()
        .filter_map(|t| {
            let seen = match previous {
                None => unknown,
                Some(p) => match p.first_seen.get(t.as_str()) {
                    Some(at) => *at,
                    None if before.contains(t.as_str()) => 0,
                    None => now,
                },
            };
            (seen != 0).then(|| (t.as_str().to_string(), seen))
        })
        .collect()
}

/// A digest looked up for a tag, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestRecord {
    pub digest: String,
    pub checked_at: u64,
}

/// What the gate read of one image digest: its platforms and build time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    pub platforms: Vec<crate::gate::Platform>,
    /// Seconds since the epoch, from the config's `created` or the
    /// `org.opencontainers.image.created` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
}

/// A digest's verification under one trust policy, and when it was
/// reached. A pass holds for good (the digest's bytes and its signature
/// were checked once); a rejection only until the next scan, since a
/// signature is often pushed after its image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictRecord {
    pub verdict: Result<String, crate::gate::Rejection>,
    pub checked_at: u64,
}

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state directory {}: {source}", path.display())]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the database.
    #[error("{} is in use by another hoist process; waited {}s for it", path.display(), LOCK_WAIT.as_secs())]
    Locked { path: PathBuf },
    /// The file is not a database this hoist can read.
    #[error("{} cannot be read: {reason}; it was left untouched — move it away to start with an empty state", path.display())]
    Unreadable { path: PathBuf, reason: String },
    /// A read or write failed.
    #[error("{}: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
}

/// The embedded state database.
pub struct Store {
    db: Database,
    path: PathBuf,
    /// Held across the read and the write of a policy's rejections, which
    /// an automation and the policy's own reconcile may add at once.
    rejecting: std::sync::Mutex<()>,
}

/// `$XDG_STATE_HOME/hoist`, else `~/.local/state/hoist`, else `.hoist`.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("hoist");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/state/hoist"),
        None => PathBuf::from(".hoist"),
    }
}

/// sha256 over the sorted, newline-joined tags.
pub fn revision(tags: &[Tag]) -> String {
    let mut sorted: Vec<&str> = tags.iter().map(Tag::as_str).collect();
    sorted.sort_unstable();
    let mut hasher = sha2::Sha256::new();
    for tag in sorted {
        hasher.update(tag.as_bytes());
        hasher.update(b"\n");
    }
    format!("sha256:{:x}", hasher.finalize())
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Makes the state directory 0700, since it holds clones of private
/// repositories and, while a run lasts, key files: new directories are
/// created so, an existing one is tightened when hoist's user owns it. One
/// it cannot change (a Kubernetes emptyDir, which kubelet owns and only
/// the pod sees) is left as it is.
fn state_directory(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let fail = |source| StoreError::Directory {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(fail)?;
    let mode = std::fs::metadata(dir).map_err(fail)?.permissions().mode();
    if mode & 0o077 != 0
        && let Err(e) = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    {
        tracing::debug!(dir = %dir.display(), "leaving the state directory at mode {:o}: {e}", mode & 0o7777);
    }
    Ok(())
}

thread_local! {
    /// How many `caught` calls this thread is inside: their panics are
    /// redb's assertions about a damaged file, reported as an error.
    static CATCHING: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Runs `f`, catching a panic, and keeps the panic hook quiet about it:
/// the error that follows says what happened, and a backtrace from inside
/// redb would only bury it. Panics anywhere else still print as before.
fn caught<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.with(std::cell::Cell::get) > 0 {
                tracing::debug!("the store's database: {info}");
            } else {
                previous(info);
            }
        }));
    });
    CATCHING.with(|c| c.set(c.get() + 1));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(c.get().saturating_sub(1)));
    result
}

/// What the check at open found wrong with a database file.
#[derive(Debug, thiserror::Error)]
enum Damage {
    #[error("{0}")]
    File(std::io::Error),
    #[error("copying it to check it: {0}")]
    Copy(std::io::Error),
    #[error("{0}")]
    Database(redb::Error),
    #[error("the entry for {key} is damaged: {source}")]
    Entry {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}")]
    Store(Box<StoreError>),
    /// redb asserted instead of returning an error.
    #[error("the database is damaged ({0})")]
    Panicked(String),
}

/// For `map_err`: every redb error type converts into `redb::Error`.
fn damaged(e: impl Into<redb::Error>) -> Damage {
    Damage::Database(e.into())
}

/// Runs `f`, turning a panic into an error: redb asserts on some damaged
/// files instead of returning an error, and a damaged store must be
/// reported, not crash hoist.
fn unpanicked<T>(f: impl FnOnce() -> Result<T, Damage>) -> Result<T, Damage> {
    match caught(f) {
        Ok(result) => result,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "an internal check failed".to_string());
            Err(Damage::Panicked(what))
        }
    }
}

/// Reads every entry of every table hoist keeps, so that damage anywhere
/// shows now, while nothing has been written, rather than in a later read.
fn read_everything(db: &impl ReadableDatabase) -> Result<(), Damage> {
    let txn = db.begin_read().map_err(damaged)?;
    match txn.open_table(META) {
        Ok(table) => {
            for entry in table.iter().map_err(damaged)? {
                entry.map_err(damaged)?;
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(damaged(e)),
    }
    // Each table as the type later reads take from it, so that what would
    // fail one of them fails here (a generic JSON value accepts records a
    // field of the wrong type, and building one costs as much).
    read_table::<ScanRecord>(&txn, SCANS)?;
    read_table::<DigestRecord>(&txn, DIGESTS)?;
    read_table::<PullRequestRecord>(&txn, PULL_REQUESTS)?;
    read_table::<SyncRecord>(&txn, SYNCS)?;
    read_table::<Vec<RejectedTag>>(&txn, REJECTIONS)?;
    read_table::<String>(&txn, ANNOUNCED)?;
    read_table::<ArtifactRecord>(&txn, ARTIFACTS)?;
    read_table::<VerdictRecord>(&txn, VERDICTS)?;
    Ok(())
}

/// Reads every entry of one table as a `T`.
fn read_table<T: for<'de> Deserialize<'de>>(
    txn: &redb::ReadTransaction,
    definition: TableDefinition<&str, &[u8]>,
) -> Result<(), Damage> {
    match txn.open_table(definition) {
        Ok(table) => {
            for entry in table.iter().map_err(damaged)? {
                let (key, value) = entry.map_err(damaged)?;
                serde_json::from_slice::<T>(value.value()).map_err(|source| Damage::Entry {
                    key: key.value().to_string(),
                    source,
                })?;
            }
            Ok(())
        }
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(()),
        Err(e) => Err(damaged(e)),
    }
}

/// Whether redb can open the database at `path` without harm. redb
/// rewrites a file as it opens it (and repairs one a killed run left),
/// which must not happen to a damaged file: it may hold the only copy of a
/// user's state. So everything the open does is first done to a copy.
enum Check {
    /// Missing or empty: redb makes a new database.
    New,
    /// A copy opened, every entry read, and the format check passed.
    Good,
    /// Another process has it open.
    Locked,
    Damaged(Damage),
}

fn check(path: &Path) -> Check {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Check::New,
        Err(e) => return Check::Damaged(Damage::File(e)),
        Ok(meta) if meta.len() == 0 => return Check::New,
        Ok(_) => {}
    }
    let original = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return Check::Damaged(Damage::File(e)),
    };
    // A shared lock keeps a writer out while the copy is taken; redb holds
    // an exclusive one while a process has the database open.
    match original.try_lock_shared() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Check::Locked,
        Err(std::fs::TryLockError::Error(e)) => return Check::Damaged(Damage::File(e)),
    }
    let copy = path.with_extension("redb.check");
    let result = std::fs::copy(path, &copy)
        .map_err(Damage::Copy)
        .and_then(|_| {
            unpanicked(|| {
                let db = Database::create(&copy).map_err(damaged)?;
                read_everything(&db)?;
                let store = Store {
                    db,
                    path: copy.clone(),
                    rejecting: Default::default(),
                };
                let unusable = |e| Damage::Store(Box::new(e));
                store.check_format().map_err(unusable)?;
                store.flush().map_err(unusable)
            })
        });
    let _ = std::fs::remove_file(&copy);
    drop(original);
    match result {
        Ok(()) => Check::Good,
        Err(reason) => Check::Damaged(reason),
    }
}

impl Store {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        state_directory(dir)?;
        let path = dir.join(DATABASE_FILE);
        let started = std::time::Instant::now();
        let unreadable = |path: &Path, damage: Damage| StoreError::Unreadable {
            path: path.to_path_buf(),
            reason: damage.to_string(),
        };
        let db = loop {
            let locked = match check(&path) {
                Check::Locked => true,
                Check::Damaged(reason) => return Err(unreadable(&path, reason)),
                Check::New | Check::Good => {
                    match unpanicked(|| match Database::create(&path) {
                        Ok(db) => Ok(Some(db)),
                        Err(redb::DatabaseError::DatabaseAlreadyOpen) => Ok(None),
                        Err(e) => Err(damaged(e)),
                    }) {
                        Ok(Some(db)) => break db,
                        Ok(None) => true,
                        Err(reason) => return Err(unreadable(&path, reason)),
                    }
                }
            };
            if locked && started.elapsed() >= LOCK_WAIT {
                return Err(StoreError::Locked { path });
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let store = Store {
            db,
            path,
            rejecting: Default::default(),
        };
        store.check_format()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    /// Runs a database operation; a panic inside redb (damage the open
    /// did not read, since it showed only on a write) becomes an error.
    fn guarded<T>(&self, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        match caught(f) {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unreadable {
                path: self.path.clone(),
                reason: "the database is damaged (an internal check failed)".to_string(),
            }),
        }
    }

    /// Stamps a new database with our format; refuses one from a newer hoist.
    fn check_format(&self) -> Result<(), StoreError> {
        self.guarded(|| {
        let txn = self.db.begin_write().map_err(|e| self.io(e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.io(e))?;
            let found = meta
                .get("format")
                .map_err(|e| self.io(e))?
                .map(|v| v.value());
            match found {
                Some(format) if format > FORMAT => {
                    return Err(StoreError::Unreadable {
                        path: self.path.clone(),
                        reason: format!(
                            "it was written by a newer hoist (state format {format}, this hoist reads {FORMAT})"
                        ),
                    });
                }
                Some(_) => {}
                None => {
                    meta.insert("format", FORMAT).map_err(|e| self.io(e))?;
                }
            }
            txn.open_table(SCANS).map_err(|e| self.io(e))?;
            txn.open_table(DIGESTS).map_err(|e| self.io(e))?;
            txn.open_table(PULL_REQUESTS).map_err(|e| self.io(e))?;
            txn.open_table(SYNCS).map_err(|e| self.io(e))?;
            txn.open_table(REJECTIONS).map_err(|e| self.io(e))?;
            txn.open_table(ANNOUNCED).map_err(|e| self.io(e))?;
            txn.open_table(ARTIFACTS).map_err(|e| self.io(e))?;
            txn.open_table(VERDICTS).map_err(|e| self.io(e))?;
        }
        txn.commit().map_err(|e| self.io(e))
        })
    }

    fn get<T: for<'de> Deserialize<'de>>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        self.guarded(|| {
            let txn = self.db.begin_read().map_err(|e| self.io(e))?;
            let table = txn.open_table(table).map_err(|e| self.io(e))?;
            let Some(value) = table.get(key).map_err(|e| self.io(e))? else {
                return Ok(None);
            };
            serde_json::from_slice(value.value())
                .map(Some)
                .map_err(|e| StoreError::Unreadable {
                    path: self.path.clone(),
                    reason: format!("the entry for {key} is damaged: {e}"),
                })
        })
    }

    fn put<T: Serialize>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        self.put_all(table, std::iter::once((key, value)))
    }

    /// Writes every entry in one transaction: one commit for many entries
    /// instead of one each (a commit rewrites redb's page tree roots).
    fn put_all<'k, T: Serialize + 'k>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        entries: impl IntoIterator<Item = (&'k str, &'k T)>,
    ) -> Result<(), StoreError> {
        self.guarded(|| {
            let mut txn = self.db.begin_write().map_err(|e| self.io(e))?;
            // Each put is atomic but not synced: a run syncs once at the end
            // (`flush`) instead of once per repository. A crash before then
            // loses only cache entries; the file stays consistent.
            txn.set_durability(redb::Durability::None)
                .map_err(|e| self.io(e))?;
            {
                let mut table = txn.open_table(table).map_err(|e| self.io(e))?;
                for (key, value) in entries {
                    let bytes = serde_json::to_vec(value).map_err(|e| self.io(e))?;
                    table
                        .insert(key, bytes.as_slice())
                        .map_err(|e| self.io(e))?;
                }
            }
            txn.commit().map_err(|e| self.io(e))
        })
    }

    fn remove(&self, table: TableDefinition<&str, &[u8]>, key: &str) -> Result<(), StoreError> {
        self.guarded(|| {
            let mut txn = self.db.begin_write().map_err(|e| self.io(e))?;
            txn.set_durability(redb::Durability::None)
                .map_err(|e| self.io(e))?;
            {
                let mut table = txn.open_table(table).map_err(|e| self.io(e))?;
                table.remove(key).map_err(|e| self.io(e))?;
            }
            txn.commit().map_err(|e| self.io(e))
        })
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.guarded(|| {
            let txn = self.db.begin_write().map_err(|e| self.io(e))?;
            txn.commit().map_err(|e| self.io(e))
        })
    }

    /// The last scan of an image, by canonical name.
    pub fn scan(&self, image: &str) -> Result<Option<ScanRecord>, StoreError> {
        self.get(SCANS, image)
    }

    pub fn put_scan(&self, image: &str, record: &ScanRecord) -> Result<(), StoreError> {
        self.put(SCANS, image, record)
    }

    /// Several scans, by canonical image name, in one transaction.
    pub fn put_scans(&self, scans: &[(String, ScanRecord)]) -> Result<(), StoreError> {
        self.put_all(SCANS, scans.iter().map(|(image, r)| (image.as_str(), r)))
    }

    /// The digest last looked up for `image:tag`.
    pub fn digest(&self, image: &str, tag: &str) -> Result<Option<DigestRecord>, StoreError> {
        self.get(DIGESTS, &format!("{image}:{tag}"))
    }

    pub fn put_digest(
        &self,
        image: &str,
        tag: &str,
        record: &DigestRecord,
    ) -> Result<(), StoreError> {
        self.put(DIGESTS, &format!("{image}:{tag}"), record)
    }

    /// What the gate read of `image@digest`.
    pub fn artifact(
        &self,
        image: &str,
        digest: &str,
    ) -> Result<Option<ArtifactRecord>, StoreError> {
        self.get(ARTIFACTS, &format!("{image}@{digest}"))
    }

    pub fn put_artifact(
        &self,
        image: &str,
        digest: &str,
        record: &ArtifactRecord,
    ) -> Result<(), StoreError> {
        self.put(ARTIFACTS, &format!("{image}@{digest}"), record)
    }

    /// The verdict on `image@digest` under the trust policy `fingerprint`.
    pub fn verdict(
        &self,
        image: &str,
        digest: &str,
        fingerprint: &str,
    ) -> Result<Option<VerdictRecord>, StoreError> {
        self.get(VERDICTS, &format!("{image}@{digest}#{fingerprint}"))
    }

    pub fn put_verdict(
        &self,
        image: &str,
        digest: &str,
        fingerprint: &str,
        record: &VerdictRecord,
    ) -> Result<(), StoreError> {
        self.put(VERDICTS, &format!("{image}@{digest}#{fingerprint}"), record)
    }

    /// The pull request an automation (`namespace/name`) last kept open.
    pub fn pull_request(&self, automation: &str) -> Result<Option<PullRequestRecord>, StoreError> {
        self.get(PULL_REQUESTS, automation)
    }

    /// What the sync owner `namespace/name` applied last.
    pub fn sync_record(&self, owner: &str) -> Result<Option<SyncRecord>, StoreError> {
        self.get(SYNCS, owner)
    }

    pub fn put_sync_record(&self, owner: &str, record: &SyncRecord) -> Result<(), StoreError> {
        self.put(SYNCS, owner, record)
    }

    /// The tags rolled back for the policy `namespace/name`.
    pub fn rejections(&self, policy: &str) -> Result<Vec<RejectedTag>, StoreError> {
        Ok(self.get(REJECTIONS, policy)?.unwrap_or_default())
    }

    /// Adds the tags of `rejected` not rejected for `policy` yet; returns
    /// whether any was new.
    /// At most [`crate::promotion::KEPT`] are kept, the oldest dropped.
    pub fn reject(&self, policy: &str, rejected: &[RejectedTag]) -> Result<bool, StoreError> {
        let _held = self
            .rejecting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut known = self.rejections(policy)?;
        let before = known.len();
        for r in rejected {
            if !known.iter().any(|k| k.tag == r.tag) {
                known.push(r.clone());
            }
        }
        if known.len() == before {
            return Ok(false);
        }
        let extra = known.len().saturating_sub(crate::promotion::KEPT);
        known.drain(..extra);
        self.put(REJECTIONS, policy, &known)?;
        Ok(true)
    }

    /// The latest tag of `policy` a notification last told of.
    pub fn announced(&self, policy: &str) -> Result<Option<String>, StoreError> {
        self.get(ANNOUNCED, policy)
    }

    pub fn put_announced(&self, policy: &str, tag: &str) -> Result<(), StoreError> {
        self.put(ANNOUNCED, policy, &tag.to_string())
    }

    /// Records the automation's open pull request, or forgets it (`None`).
    pub fn put_pull_request(
        &self,
        automation: &str,
        record: Option<&PullRequestRecord>,
    ) -> Result<(), StoreError> {
        match record {
            Some(record) => self.put(PULL_REQUESTS, automation, record),
            None => self.remove(PULL_REQUESTS, automation),
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tags: &[&str]) -> ScanRecord {
        let tags: Vec<Tag> = tags.iter().map(|t| Tag::from(*t)).collect();
        ScanRecord {
            revision: revision(&tags),
            tags,
            scanned_at: 1_700_000_000,
            first_seen: Default::default(),
        }
    }

    #[test]
    fn keeps_scans_and_digests_across_opens() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        {
            let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(store.scan("docker.io/library/nginx").ok().flatten(), None);
            store
                .put_scan("docker.io/library/nginx", &record(&["1.0", "2.0"]))
                .unwrap_or_else(|e| panic!("{e}"));
            let d = DigestRecord {
                digest: "sha256:ab".into(),
                checked_at: 5,
            };
            store
                .put_digest("docker.io/library/nginx", "2.0", &d)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            store.scan("docker.io/library/nginx").ok().flatten(),
            Some(record(&["1.0", "2.0"]))
        );
        assert_eq!(
            store
                .digest("docker.io/library/nginx", "2.0")
                .ok()
                .flatten()
                .map(|d| d.digest),
            Some("sha256:ab".to_string())
        );
    }

    #[test]
    fn first_seen_times_carry_over_and_start_for_new_tags() {
        let tags = |names: &[&str]| names.iter().map(|t| Tag::from(*t)).collect::<Vec<_>>();
        // The first scan: age unknown, counted as old.
        // Seen at 0, so kept as no entry at all.
        let first = first_seen(&tags(&["1.0.0", "1.1.0"]), None, 100, 0);
        assert!(first.is_empty(), "{first:?}");
        // The record was lost, not never made: every tag starts now.
        let lost = first_seen(&tags(&["1.0.0"]), None, 100, 100);
        assert_eq!(lost.values().copied().collect::<Vec<_>>(), [100]);
        let mut previous = record(&["1.0.0", "1.1.0"]);
        previous.first_seen = first;
        // A new tag starts its clock; an old one stays old.
        let second = first_seen(&tags(&["1.1.0", "1.2.0"]), Some(&previous), 200, 0);
        assert_eq!(
            second.clone().into_iter().collect::<Vec<_>>(),
            [("1.2.0".to_string(), 200)]
        );
        // Times carry over; a deleted tag is forgotten, and pushed again
        // it is new.
        let mut previous = record(&["1.1.0", "1.2.0"]);
        previous.first_seen = second;
        let third = first_seen(&tags(&["1.0.0", "1.2.0"]), Some(&previous), 300, 0);
        assert_eq!(
            third.into_iter().collect::<Vec<_>>(),
            [("1.0.0".to_string(), 300), ("1.2.0".to_string(), 200)]
        );
        // A record from before first-seen times: its tags count as old.
        let legacy = record(&["1.0.0"]);
        let fourth = first_seen(&tags(&["1.0.0", "2.0.0"]), Some(&legacy), 400, 0);
        assert_eq!(
            fourth.into_iter().collect::<Vec<_>>(),
            [("2.0.0".to_string(), 400)]
        );
    }

    #[test]
    fn revision_ignores_order() {
        assert_eq!(record(&["a", "b"]).revision, record(&["b", "a"]).revision);
        assert_ne!(record(&["a", "b"]).revision, record(&["a"]).revision);
    }

    #[test]
    fn unreadable_databases_are_reported_and_kept() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join(DATABASE_FILE);
        let garbage = vec![0x5au8; 8192];
        std::fs::write(&file, &garbage).unwrap_or_else(|e| panic!("{e}"));
        let err = Store::open(dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("cannot be read") && err.contains("left untouched"),
            "{err}"
        );
        assert_eq!(std::fs::read(&file).ok(), Some(garbage));
    }

    /// A database with a few entries of every table, as a run leaves it.
    fn populated(dir: &Path) -> Vec<u8> {
        {
            let store = Store::open(dir).unwrap_or_else(|e| panic!("{e}"));
            for i in 0..200 {
                let tags: Vec<String> = (0..20).map(|t| format!("1.{i}.{t}")).collect();
                let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
                store
                    .put_scan(&format!("ghcr.io/acme/app{i}"), &record(&tags))
                    .unwrap_or_else(|e| panic!("{e}"));
                let d = DigestRecord {
                    digest: format!("sha256:{i:064x}"),
                    checked_at: 5,
                };
                store
                    .put_digest(&format!("ghcr.io/acme/app{i}"), "1.0.0", &d)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
        std::fs::read(dir.join(DATABASE_FILE)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Opens the damaged file and reads everything from it: no panic, and
    /// when anything fails, the message the README names and the file as
    /// it was.
    fn open_damaged(dir: &Path, damaged: &[u8], what: &str) {
        let file = dir.join(DATABASE_FILE);
        std::fs::write(&file, damaged).unwrap_or_else(|e| panic!("{e}"));
        let outcome = Store::open(dir).and_then(|store| {
            for i in 0..200 {
                store.scan(&format!("ghcr.io/acme/app{i}"))?;
                store.digest(&format!("ghcr.io/acme/app{i}"), "1.0.0")?;
            }
            Ok(())
        });
        if let Err(e) = outcome {
            let text = e.to_string();
            assert!(
                text.contains("cannot be read") && text.contains("left untouched"),
                "{what}: {text}"
            );
            let now = std::fs::read(&file).unwrap_or_default();
            assert!(now == damaged, "{what}: the file was changed: {text}");
        }
    }

    #[test]
    fn truncated_databases_are_reported_not_panicked_on() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let whole = populated(dir.path());
        let size = whole.len();
        assert!(size > 8192, "{size}");
        for length in [1, 512, 4096, 4097, size / 2, size - 1] {
            open_damaged(
                dir.path(),
                &whole[..length],
                &format!("truncated to {length}"),
            );
        }
    }

    #[test]
    fn corrupted_databases_are_reported_not_panicked_on() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let whole = populated(dir.path());
        let size = whole.len();
        // The header, the first pages and spots through the rest of the file.
        let mut spots: Vec<usize> = vec![0, 9, 64, 200, 700, 4096, 4100, 5000, 8192, 9000];
        spots.extend((1..16).map(|k| size * k / 16));
        for at in spots {
            for byte in [0x00u8, 0xff, 0x5a] {
                let mut damaged = whole.clone();
                for b in damaged.iter_mut().skip(at).take(16) {
                    *b ^= byte | 1;
                }
                open_damaged(
                    dir.path(),
                    &damaged,
                    &format!("16 bytes at {at} xor {byte:#x}"),
                );
            }
        }
    }

    #[test]
    fn the_state_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mode = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0)
        };
        let new = dir.path().join("state/hoist");
        drop(Store::open(&new).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(mode(&new), 0o700);
        let wide = dir.path().join("wide");
        std::fs::create_dir(&wide).unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&wide, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
        drop(Store::open(&wide).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(mode(&wide), 0o700);
    }

    /// JSON that is well formed but not a record (a field of the wrong
    /// type) is damage found at open, as any later read would find it.
    #[test]
    fn a_record_of_the_wrong_shape_is_found_at_open() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        {
            let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
            let wrong = serde_json::json!({"tags": "1.0.0", "revision": "r", "scanned_at": 1});
            store
                .put(SCANS, "ghcr.io/acme/app", &wrong)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let before = std::fs::read(dir.path().join(DATABASE_FILE)).unwrap_or_default();
        let text = match Store::open(dir.path()) {
            Ok(_) => panic!("a scan record whose tags are a string was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(
            text.contains("the entry for ghcr.io/acme/app is damaged")
                && text.contains("left untouched"),
            "{text}"
        );
        let after = std::fs::read(dir.path().join(DATABASE_FILE)).unwrap_or_default();
        assert!(after == before, "the file was changed");
    }

    #[test]
    fn newer_format_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        {
            let db =
                Database::create(dir.path().join(DATABASE_FILE)).unwrap_or_else(|e| panic!("{e}"));
            let txn = db.begin_write().unwrap_or_else(|e| panic!("{e}"));
            {
                let mut meta = txn.open_table(META).unwrap_or_else(|e| panic!("{e}"));
                meta.insert("format", FORMAT + 1)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            txn.commit().unwrap_or_else(|e| panic!("{e}"));
        }
        let err = Store::open(dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("newer hoist"), "{err}");
    }
}
