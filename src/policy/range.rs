//! Semver ranges with the semantics of Masterminds/semver v3, which Flux's
//! ImagePolicy uses.
//!
//! The points where Masterminds differs from Cargo's `VersionReq` and from
//! node-semver, and which Flux users rely on:
//! - a bare `1.2.3` (or `=1.2.3`) is exact, a bare `1.2` is `1.2.x`;
//! - comparators are joined by spaces or commas (AND) and `||` (OR);
//! - `=>` and `=<` are accepted as `>=` and `<=`; `~>` is `~`;
//! - `>1.x` means "a higher major", `<=1.x` means "major at most 1";
//! - prereleases are excluded unless a comparator of the same AND group has
//!   a prerelease, and then prereleases of *any* version are admitted.
//!
//! Parsing happens once per policy, so it follows Masterminds' grammar with
//! regular expressions of the same shape; checking runs once per tag and is
//! plain integer comparison.

use std::cmp::Ordering;
use std::sync::LazyLock;

use regex::Regex;

use super::version::{Version, compare_prerelease, valid_metadata, valid_prerelease};

/// A parsed semver range: alternatives (`||`) of comparator groups (AND).
#[derive(Clone, Debug)]
pub struct Range {
    groups: Vec<Group>,
}

#[derive(Clone, Debug)]
struct Group {
    comparators: Vec<Comparator>,
    /// Some comparator of the group names a prerelease, so the group admits
    /// prerelease versions at all.
    admits_prereleases: bool,
}

#[derive(Clone, Debug)]
struct Comparator {
    op: Op,
    major: u64,
    minor: u64,
    patch: u64,
    pre: String,
    wild: Wild,
}

/// Which part of a comparator's version was `x`, `X`, `*` or left out. The
/// wild part and every part after it are zero in the bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wild {
    None,
    /// `*`, `x`: any version. Masterminds treats it as a wild `0.0.0`.
    Major,
    /// `1`, `1.x`
    Minor,
    /// `1.2`, `1.2.x`
    Patch,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// `=` or no operator: exact, or a tilde range when a part is wild.
    Exact,
    NotEqual,
    Greater,
    Less,
    GreaterOrEqual,
    LessOrEqual,
    Tilde,
    Caret,
}

/// Why a range does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// The text does not follow the range grammar.
    #[error("improper constraint {0:?}")]
    Improper(String),
    /// A version inside the range is not one: a part that is not a
    /// number (or too large), or a malformed prerelease or build.
    #[error(
        "{0:?} is not a version (numeric parts or x, X, *; an optional -prerelease and +build)"
    )]
    BadVersion(String),
}

const OPS: &str = r"=||!=|>|<|>=|=>|<=|=<|~|~>|\^";
const CV: &str = r"v?([0-9|x|X|\*]+)(\.[0-9|x|X|\*]+)?(\.[0-9|x|X|\*]+)?(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?";

static HYPHEN_RANGE: LazyLock<Regex> = LazyLock::new(|| {
    compile(&format!(
        r"[ \t\n\f\r]*(?P<lo>{})[ \t\n\f\r]+-[ \t\n\f\r]+(?P<hi>{})[ \t\n\f\r]*",
        CV.replace('(', "(?:"),
        CV.replace('(', "(?:")
    ))
});
static GROUP: LazyLock<Regex> = LazyLock::new(|| {
    compile(&format!(
        r"^([ \t\n\f\r]*({OPS})[ \t\n\f\r]*({CV})[ \t\n\f\r]*)(([ \t\n\f\r]+|,[ \t\n\f\r]*)({OPS})[ \t\n\f\r]*({CV})[ \t\n\f\r]*)*$"
    ))
});
static FIND: LazyLock<Regex> = LazyLock::new(|| compile(&format!(r"({OPS})[ \t\n\f\r]*({CV})")));
static ONE: LazyLock<Regex> = LazyLock::new(|| {
    compile(&format!(
        r"^[ \t\n\f\r]*({OPS})[ \t\n\f\r]*({CV})[ \t\n\f\r]*$"
    ))
});

fn compile(pattern: &str) -> Regex {
    // The patterns are constants of this module; a failure is a bug caught
    // by the first test that parses a range.
    #[allow(clippy::expect_used)]
    Regex::new(pattern).expect("range grammar is a valid regex")
}

impl Range {
    pub fn parse(text: &str) -> Result<Self, RangeError> {
        let text = HYPHEN_RANGE.replace_all(text, ">= $lo, <= $hi ");
        let mut groups = Vec::new();
        for alternative in text.split("||") {
            if !GROUP.is_match(alternative) {
                return Err(RangeError::Improper(alternative.trim().to_string()));
            }
            let comparators = FIND
                .find_iter(alternative)
                .map(|m| Comparator::parse(m.as_str()))
                .collect::<Result<Vec<_>, _>>()?;
            let admits_prereleases = comparators.iter().any(|c| !c.pre.is_empty());
            groups.push(Group {
                comparators,
                admits_prereleases,
            });
        }
        Ok(Range { groups })
    }

    /// Whether the version satisfies any alternative of the range.
    pub fn matches(&self, v: &Version<'_>) -> bool {
        self.groups.iter().any(|g| {
            (g.admits_prereleases || !v.is_prerelease())
                && g.comparators.iter().all(|c| c.matches(v))
        })
    }
}

fn is_wild(part: &str) -> bool {
    matches!(part, "x" | "X" | "*")
}

fn number(part: &str, whole: &str) -> Result<u64, RangeError> {
    if !part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RangeError::BadVersion(whole.to_string()));
    }
    part.parse()
        .map_err(|_| RangeError::BadVersion(whole.to_string()))
}

impl Comparator {
    fn parse(text: &str) -> Result<Self, RangeError> {
        let caps = ONE
            .captures(text)
            .ok_or_else(|| RangeError::Improper(text.trim().to_string()))?;
        let group = |i: usize| caps.get(i).map_or("", |m| m.as_str());
        let op = match group(1) {
            "" | "=" => Op::Exact,
            "!=" => Op::NotEqual,
            ">" => Op::Greater,
            "<" => Op::Less,
            ">=" | "=>" => Op::GreaterOrEqual,
            "<=" | "=<" => Op::LessOrEqual,
            "~" | "~>" => Op::Tilde,
            "^" => Op::Caret,
            other => return Err(RangeError::Improper(other.to_string())),
        };
        let whole = group(2);
        let major = group(3);
        let minor = group(4).trim_start_matches('.');
        let patch = group(5).trim_start_matches('.');
        let pre = group(7);
        if !pre.is_empty() && !valid_prerelease(pre) {
            return Err(RangeError::BadVersion(whole.to_string()));
        }
        if !group(10).is_empty() && !valid_metadata(group(10)) {
            return Err(RangeError::BadVersion(whole.to_string()));
        }
        let mut c = Comparator {
            op,
            major: 0,
            minor: 0,
            patch: 0,
            pre: pre.to_string(),
            wild: Wild::None,
        };
        if major.is_empty() || is_wild(major) {
            c.wild = Wild::Major;
            return Ok(c);
        }
        c.major = number(major, whole)?;
        if minor.is_empty() || is_wild(minor) {
            c.wild = Wild::Minor;
            return Ok(c);
        }
        c.minor = number(minor, whole)?;
        if patch.is_empty() || is_wild(patch) {
            c.wild = Wild::Patch;
            return Ok(c);
        }
        c.patch = number(patch, whole)?;
        Ok(c)
    }

    fn bound(&self) -> Version<'_> {
        Version {
            major: self.major,
            minor: self.minor,
            patch: self.patch,
            pre: &self.pre,
        }
    }

    fn matches(&self, v: &Version<'_>) -> bool {
        let bound = self.bound();
        let ord = v.precedence(&bound);
        match self.op {
            Op::Exact if self.wild != Wild::None => self.tilde(v, ord),
            Op::Exact => ord == Ordering::Equal,
            Op::NotEqual => self.not_equal(v, ord),
            Op::Greater => self.greater(v, ord),
            Op::Less => ord == Ordering::Less,
            Op::GreaterOrEqual => ord != Ordering::Less,
            Op::LessOrEqual => self.less_or_equal(v, ord),
            Op::Tilde => self.tilde(v, ord),
            Op::Caret => self.caret(v, ord),
        }
    }

    // The checks below mirror Masterminds' constraint functions case by
    // case, including their treatment of wild parts.

    fn not_equal(&self, v: &Version<'_>, ord: Ordering) -> bool {
        if self.wild != Wild::None {
            if v.major != self.major {
                return true;
            }
            if self.wild == Wild::Minor {
                return false;
            }
            if self.wild == Wild::Patch {
                return v.minor != self.minor
                    || compare_prerelease(v.pre, &self.pre) != Ordering::Equal;
            }
        }
        ord != Ordering::Equal
    }

    fn greater(&self, v: &Version<'_>, ord: Ordering) -> bool {
        if self.wild != Wild::None && v.major != self.major {
            return v.major > self.major;
        }
        match self.wild {
            Wild::Minor => false,
            Wild::Patch => v.minor > self.minor,
            Wild::None | Wild::Major => ord == Ordering::Greater,
        }
    }

    fn less_or_equal(&self, v: &Version<'_>, ord: Ordering) -> bool {
        if self.wild == Wild::None {
            return ord != Ordering::Greater;
        }
        if v.major > self.major {
            return false;
        }
        !(v.major == self.major && v.minor > self.minor && self.wild != Wild::Minor)
    }

    fn tilde(&self, v: &Version<'_>, ord: Ordering) -> bool {
        if ord == Ordering::Less {
            return false;
        }
        // `~0.0.0` and `~*` admit everything at or above the bound.
        if self.major == 0
            && self.minor == 0
            && self.patch == 0
            && matches!(self.wild, Wild::None | Wild::Major)
        {
            return true;
        }
        v.major == self.major && (self.wild == Wild::Minor || v.minor == self.minor)
    }

    fn caret(&self, v: &Version<'_>, ord: Ordering) -> bool {
        if ord == Ordering::Less {
            return false;
        }
        if self.major > 0 || self.wild == Wild::Minor {
            return v.major == self.major;
        }
        if v.major > 0 {
            return false;
        }
        if self.minor > 0 || self.wild == Wild::Patch {
            return v.minor == self.minor;
        }
        v.minor == 0 && v.patch == self.patch
    }
}
