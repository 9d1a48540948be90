//! The forge stage: one pull request per automation, from the branch hoist
//! owns to the checkout branch, on GitHub (and GitHub Enterprise), GitLab
//! and Gitea / Forgejo behind one trait.

mod gitea;
mod github;
mod gitlab;
mod http;
mod lifecycle;
mod repo;

use serde::Serialize;

pub use gitea::Gitea;
pub use github::GitHub;
pub use gitlab::GitLab;
use http::Connection;
pub use lifecycle::{Action, Outcome, ensure, retire};
pub use repo::ForgeRepo;

/// A pull (or merge) request: its number and web page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PullRequest {
    pub number: u64,
    pub url: String,
}

/// A pull request as the forge shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullState {
    pub number: u64,
    pub url: String,
    pub open: bool,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    pub head: String,
    pub base: String,
    /// From another repository (a fork) whose branch has the same name:
    /// never hoist's.
    pub fork: bool,
}

impl PullState {
    fn pull_request(&self) -> PullRequest {
        PullRequest {
            number: self.number,
            url: self.url.clone(),
        }
    }

    /// Whether this is the open pull request from hoist's `head` to `base`.
    fn is_open_from(&self, head: &str, base: &str) -> bool {
        self.open && !self.fork && self.head == head && self.base == base
    }
}

/// What hoist asks of a forge for one automation.
#[derive(Clone, Debug)]
pub struct PullRequestSpec {
    /// hoist's branch.
    pub head: String,
    /// The checkout branch.
    pub base: String,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
}

/// Why a forge call failed. Never carries the token.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error("{0}")]
    Config(String),
    #[error("{method} {path}: HTTP {status}: {message}{}", hint(*status))]
    Http {
        method: String,
        path: String,
        status: u16,
        message: String,
    },
    #[error("{method} {path}: {message}")]
    Transport {
        method: String,
        path: String,
        message: String,
    },
    #[error("{method} {path}: rate limited for another {seconds}s; the next run tries again")]
    RateLimited {
        method: String,
        path: String,
        seconds: u64,
    },
}

fn hint(status: u16) -> &'static str {
    match status {
        401 => "; the token is missing or invalid",
        403 => {
            "; the token lacks a scope (pull requests: write, contents: write) or the rate limit is spent"
        }
        404 => "; no such repository, or the token cannot see it",
        409 | 422 => "; the forge refused the request as invalid",
        _ => "",
    }
}

/// The calls hoist makes on a forge, one request each where the API
/// allows; [`ensure`] and [`retire`] decide which to make. Boxed futures
/// (async-trait) because the pipeline picks the provider at run time.
#[async_trait::async_trait]
pub trait Forge: Send + Sync {
    /// The API root and repository, so that a record from another forge or
    /// repository is never taken for this one's.
    fn identity(&self) -> String;
    /// The open pull request from `head` (in the repository itself, not a
    /// fork) to `base`, if there is one.
    async fn find_open(&self, head: &str, base: &str) -> Result<Option<PullState>, ForgeError>;
    /// Pull request `number`, open or not.
    async fn get(&self, number: u64) -> Result<PullState, ForgeError>;
    /// Opens a pull request, with labels where the API takes them at once.
    async fn create(&self, spec: &PullRequestSpec) -> Result<PullState, ForgeError>;
    /// Sets the title and body of pull request `number`.
    async fn edit(&self, number: u64, title: &str, body: &str) -> Result<PullState, ForgeError>;
    /// Adds labels, keeping those people put on.
    async fn add_labels(&self, number: u64, labels: &[String]) -> Result<(), ForgeError>;
    /// Closes pull request `number`, then comments why: a comment never
    /// claims a close that failed.
    async fn close(&self, number: u64, comment: &str) -> Result<(), ForgeError>;
    /// The longest pull request body the forge takes, in characters; hoist
    /// counts bytes, which are never fewer.
    fn body_limit(&self) -> usize;
}

/// GitHub's limit on a pull request body: 65,536 characters. Gitea
/// documents none; hoist keeps to GitHub's there too.
pub const GITHUB_BODY_LIMIT: usize = 65_536;
/// GitLab's limit on a merge request description: 1,048,576 characters.
pub const GITLAB_BODY_LIMIT: usize = 1_048_576;

pub use crate::model::PullRequestRecord;
