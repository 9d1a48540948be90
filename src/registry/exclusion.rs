use regex::RegexSet;

use crate::api::ImageRepositorySpec;

/// An ImageRepository's `exclusionList`: tags matching any pattern are
/// dropped before any policy sees them.
#[derive(Clone, Debug)]
pub struct Exclusions {
    patterns: RegexSet,
}

/// A pattern of the exclusion list is not a regular expression.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("exclusionList: {0}")]
pub struct ExclusionError(String);

impl ExclusionError {
    /// Why the list does not compile, without the field name.
    pub fn reason(&self) -> &str {
        &self.0
    }
}

impl Exclusions {
    /// The repository's list, or the default (`^.*\.sig$`) when it has none.
    pub fn of(spec: &ImageRepositorySpec) -> Result<Self, ExclusionError> {
        Self::new(&spec.exclusions())
    }

    pub fn new(patterns: &[&str]) -> Result<Self, ExclusionError> {
        RegexSet::new(patterns)
            .map(|patterns| Exclusions { patterns })
            .map_err(|e| ExclusionError(e.to_string()))
    }

    /// The default list, for tags whose repository is not known.
    pub fn default_list() -> Self {
        Exclusions {
            patterns: RegexSet::new(crate::api::DEFAULT_EXCLUSION_LIST)
                .unwrap_or_else(|_| RegexSet::empty()),
        }
    }

    pub fn excludes(&self, tag: &str) -> bool {
        self.patterns.is_match(tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_list_drops_signatures() {
        let ex = Exclusions::default_list();
        assert!(ex.excludes("sha256-abc.sig"));
        assert!(!ex.excludes("1.0.0"));
        assert!(!ex.excludes("sig"));
        let custom = Exclusions::new(&["^dev-", "-debug$"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(custom.excludes("dev-1") && custom.excludes("1.0-debug"));
        assert!(!custom.excludes("x.sig"));
        assert!(Exclusions::new(&["("]).is_err());
    }
}
