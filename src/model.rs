//! Plain values the stages hand each other. No I/O here.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A tag as a registry lists it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tag(pub String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Tag {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Tag {
    fn from(tag: &str) -> Self {
        Tag(tag.to_string())
    }
}

impl From<String> for Tag {
    fn from(tag: String) -> Self {
        Tag(tag)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a policy made of a list of tags.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Selection {
    /// The latest tag, exactly as the registry wrote it; `None` when no tag
    /// qualified.
    pub tag: Option<Tag>,
    /// Tags the policy ordered: they passed `filterTags` and, for semver,
    /// fall within the range.
    pub candidates: usize,
    /// Tags that passed `filterTags` but that the policy could not read: not
    /// a version (semver) or not a number (numerical).
    pub ignored: usize,
}
