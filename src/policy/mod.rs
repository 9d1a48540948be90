//! The policy stage: which of a repository's tags is the latest.
//!
//! Pure: no I/O, no async. [`CompiledPolicy::compile`] checks a spec once
//! (range, pattern, extract); [`CompiledPolicy::select`] then runs over any
//! number of tag lists. [`select`] does both for one-off use.
//!
//! Ties, which the property tests pin down:
//! - two tags that order equal but are written differently (`v1.0.0` and
//!   `1.0.0`, `1.10` and `1.1` numerically): the first in the input wins;
//! - two tags whose `extract` gives the same value: the later one in the
//!   input is kept, as Flux keeps the last entry of its map.

mod range;
mod version;

use std::cmp::Ordering;

use regex::Regex;

use crate::api::{ImagePolicySpec, PolicyChoice, SortOrder};
use crate::model::{Selection, Tag};

pub use range::{Range, RangeError};
use version::OwnedVersion;
pub use version::Version;

/// Why a policy spec cannot be used. Each variant names the field at fault
/// via [`PolicyError::field`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `policy.semver.range` does not parse.
    #[error(
        "{range:?} is not a valid semver range: {reason}; expected Masterminds syntax such as \">=1.0.0 <2.0.0\", \"^1.2\", \"~1.2\" or \"1.x\""
    )]
    InvalidRange { range: String, reason: RangeError },
    /// `filterTags.pattern` is not a regular expression.
    #[error("{pattern:?} is not a valid regular expression: {reason}")]
    InvalidPattern { pattern: String, reason: String },
    /// `filterTags.extract` refers to a capture group the pattern lacks.
    #[error(
        "{extract:?} refers to group {group:?}, which pattern {pattern:?} does not have; groups: {available}"
    )]
    UnknownGroup {
        extract: String,
        pattern: String,
        group: String,
        available: String,
    },
    /// `filterTags.extract` is not a usable template.
    #[error("extract {extract:?}: {problem}")]
    MalformedExtract { extract: String, problem: String },
    /// `filterTags.extract` is set without a pattern to extract from.
    #[error("extract {extract:?} needs a pattern with capture groups")]
    ExtractWithoutPattern { extract: String },
}

impl PolicyError {
    /// The field at fault, as a path under the ImagePolicy's `spec`.
    pub fn field(&self) -> &'static str {
        match self {
            PolicyError::InvalidRange { .. } => "policy.semver.range",
            PolicyError::InvalidPattern { .. } | PolicyError::ExtractWithoutPattern { .. } => {
                "filterTags.pattern"
            }
            PolicyError::UnknownGroup { .. } | PolicyError::MalformedExtract { .. } => {
                "filterTags.extract"
            }
        }
    }
}

/// A policy spec checked and ready to order tags.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    order: Order,
    filter: Option<Filter>,
}

#[derive(Clone, Debug)]
enum Order {
    Semver(Range),
    Alphabetical(SortOrder),
    Numerical(SortOrder),
    /// By each tag's build time, which the caller looks up.
    BuildTime(SortOrder),
}

/// Build times (seconds since the epoch) by tag, for a `buildTime` policy.
pub type BuildTimes = std::collections::HashMap<String, i64>;

#[derive(Clone, Debug)]
struct Filter {
    pattern: Regex,
    extract: Option<String>,
}

/// Selects the latest tag in one call; see [`CompiledPolicy`] to reuse the
/// compiled policy across tag lists.
pub fn select<T: AsRef<str>>(spec: &ImagePolicySpec, tags: &[T]) -> Result<Selection, PolicyError> {
    Ok(CompiledPolicy::compile(spec)?.select(tags))
}

impl CompiledPolicy {
    pub fn compile(spec: &ImagePolicySpec) -> Result<Self, PolicyError> {
        let order = match &spec.policy {
            PolicyChoice::Semver(semver) => {
                Order::Semver(Range::parse(&semver.range).map_err(|reason| {
                    PolicyError::InvalidRange {
                        range: semver.range.clone(),
                        reason,
                    }
                })?)
            }
            PolicyChoice::Alphabetical(a) => Order::Alphabetical(a.order),
            PolicyChoice::Numerical(n) => Order::Numerical(n.order),
            PolicyChoice::BuildTime(b) => Order::BuildTime(b.order),
        };
        let filter = match &spec.filter_tags {
            None => None,
            Some(f) if f.pattern.is_empty() => match &f.extract {
                Some(extract) if !extract.is_empty() => {
                    return Err(PolicyError::ExtractWithoutPattern {
                        extract: extract.clone(),
                    });
                }
                _ => None,
            },
            Some(f) => {
                let pattern = Regex::new(&f.pattern).map_err(|e| PolicyError::InvalidPattern {
                    pattern: f.pattern.clone(),
                    reason: regex_reason(&e),
                })?;
                let extract = f.extract.clone().filter(|e| !e.is_empty());
                if let Some(extract) = &extract {
                    check_extract(&pattern, extract)?;
                }
                Some(Filter { pattern, extract })
            }
        };
        Ok(CompiledPolicy { order, filter })
    }

    /// Orders the tags and returns the latest, as written in the input.
    /// A `buildTime` policy orders nothing here: see
    /// [`CompiledPolicy::select_by_build_time`].
    pub fn select<T: AsRef<str>>(&self, tags: &[T]) -> Selection {
        self.select_with(tags, None)
    }

    /// Whether the policy orders by build time, which the caller looks up
    /// for the tags that pass [`CompiledPolicy::admits`].
    pub fn orders_by_build_time(&self) -> bool {
        matches!(self.order, Order::BuildTime(_))
    }

    /// Whether `filterTags` keeps the tag.
    pub fn admits(&self, tag: &str) -> bool {
        self.filter.as_ref().is_none_or(|f| f.pattern.is_match(tag))
    }

    /// As [`CompiledPolicy::select`], a `buildTime` policy ordering by
    /// `times`; a tag without a time is unreadable.
    pub fn select_by_build_time<T: AsRef<str>>(&self, tags: &[T], times: &BuildTimes) -> Selection {
        self.select_with(tags, Some(times))
    }

    fn select_with<T: AsRef<str>>(&self, tags: &[T], times: Option<&BuildTimes>) -> Selection {
        let mut value = String::new();
        let mut best = Best::default();
        let mut candidates = 0;
        let mut ignored = 0;
        for (index, tag) in tags.iter().enumerate() {
            let tag = tag.as_ref();
            let value: &str = match &self.filter {
                None => tag,
                Some(Filter {
                    pattern,
                    extract: None,
                }) => {
                    if !pattern.is_match(tag) {
                        continue;
                    }
                    tag
                }
                Some(Filter {
                    pattern,
                    extract: Some(extract),
                }) => {
                    let Some(caps) = pattern.captures(tag) else {
                        continue;
                    };
                    value.clear();
                    caps.expand(extract, &mut value);
                    &value
                }
            };
            match self.consider(index, tag, value, times, &mut best) {
                Consider::Candidate => candidates += 1,
                Consider::OutOfRange => {}
                Consider::Unreadable => ignored += 1,
            }
        }
        Selection {
            tag: best.index.map(|i| Tag(tags[i].as_ref().to_string())),
            candidates,
            ignored,
        }
    }

    fn consider(
        &self,
        index: usize,
        tag: &str,
        value: &str,
        times: Option<&BuildTimes>,
        best: &mut Best,
    ) -> Consider {
        // A later tag replaces the best when it orders higher, or when it
        // extracted the very same value (Flux keeps the last such tag).
        let replace = |ord: Ordering, best: &Best| -> bool {
            best.index.is_none()
                || ord == Ordering::Greater
                || (ord == Ordering::Equal && best.value == value)
        };
        match &self.order {
            Order::Semver(range) => {
                let Some(v) = Version::parse_tag(value) else {
                    return Consider::Unreadable;
                };
                if !range.matches(&v) {
                    return Consider::OutOfRange;
                }
                if replace(v.precedence(&best.version.as_version()), best) {
                    best.version.set(&v);
                    best.take(index, value);
                }
            }
            Order::Alphabetical(order) => {
                let ord = directed(value.as_bytes().cmp(best.value.as_bytes()), *order);
                if replace(ord, best) {
                    best.take(index, value);
                }
            }
            Order::Numerical(order) => {
                let Some(n) = read_number(value) else {
                    return Consider::Unreadable;
                };
                let ord = directed(n.total_cmp(&best.number), *order);
                if replace(ord, best) {
                    best.number = n;
                    best.take(index, value);
                }
            }
            Order::BuildTime(order) => {
                let Some(&at) = times.and_then(|t| t.get(tag)) else {
                    return Consider::Unreadable;
                };
                // Equal times (one build, several tags) order by name, so
                // the choice does not depend on the listing's order.
                let ord = match &best.index {
                    None => Ordering::Greater,
                    Some(_) => at.cmp(&best.time).then_with(|| tag.cmp(best.tag.as_str())),
                };
                if best.index.is_none() || directed(ord, *order) == Ordering::Greater {
                    best.time = at;
                    best.tag.clear();
                    best.tag.push_str(tag);
                    best.take(index, value);
                }
            }
        }
        Consider::Candidate
    }
}

enum Consider {
    Candidate,
    OutOfRange,
    Unreadable,
}

/// The running latest tag: its index in the input, the value it was ordered
/// by, and that value read as a version or number.
#[derive(Default)]
struct Best {
    index: Option<usize>,
    value: String,
    version: OwnedVersion,
    number: f64,
    /// A `buildTime` policy's: the best tag's time, and the tag.
    time: i64,
    tag: String,
}

impl Best {
    fn take(&mut self, index: usize, value: &str) {
        self.index = Some(index);
        self.value.clear();
        self.value.push_str(value);
    }
}

fn directed(ord: Ordering, order: SortOrder) -> Ordering {
    match order {
        SortOrder::Asc => ord,
        SortOrder::Desc => ord.reverse(),
    }
}

/// A tag read as a floating-point number, as Flux's numerical policy reads
/// it. NaN and infinities cannot be ordered meaningfully, so they count as
/// unreadable.
fn read_number(value: &str) -> Option<f64> {
    value.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// The regex crate's error text spans several lines with a caret diagram;
/// the last line says what is wrong.
pub fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(&text)
        .trim()
        .trim_start_matches("error: ")
        .to_string()
}

/// Checks every `$1`, `$name` and `${name}` in `extract` against the
/// pattern's groups, with the regex crate's (and Go's) expansion rules: a
/// `$name` reference is as long as possible, `$$` is a literal `$`.
fn check_extract(pattern: &Regex, extract: &str) -> Result<(), PolicyError> {
    let names: Vec<&str> = pattern.capture_names().flatten().collect();
    let groups = pattern.captures_len();
    let available = || {
        let mut available: Vec<String> = (1..groups).map(|n| format!("${n}")).collect();
        available.extend(names.iter().map(|n| format!("${n}")));
        if available.is_empty() {
            "none".to_string()
        } else {
            available.join(", ")
        }
    };
    let malformed = |what: &str| PolicyError::MalformedExtract {
        extract: extract.to_string(),
        problem: what.to_string(),
    };
    let mut references = 0;
    let mut rest = extract;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            rest = after;
            continue;
        }
        let (reference, after) = if let Some(braced) = rest.strip_prefix('{') {
            match braced.find('}') {
                Some(0) => return Err(malformed("`${}` names no group")),
                Some(end) => (&braced[..end], &braced[end + 1..]),
                None => return Err(malformed("a `${` is not closed")),
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if end == 0 {
                return Err(malformed(
                    "a `$` is not followed by a group; write `$$` for a literal dollar",
                ));
            }
            (&rest[..end], &rest[end..])
        };
        rest = after;
        let known = match reference.parse::<usize>() {
            Ok(n) => n < groups,
            Err(_) => names.contains(&reference),
        };
        if !known {
            return Err(PolicyError::UnknownGroup {
                extract: extract.to_string(),
                pattern: pattern.as_str().to_string(),
                group: reference.to_string(),
                available: available(),
            });
        }
        references += 1;
    }
    if references == 0 {
        // Every tag would extract the same text, and the policy would pick
        // whichever tag came last.
        return Err(malformed(&format!(
            "it refers to no group of the pattern; groups: {}",
            available()
        )));
    }
    Ok(())
}

/// A tag that would be the latest but has not been seen for the policy's
/// `minimumAge` yet.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Waiting {
    pub tag: String,
    /// Seconds since the epoch at which it becomes eligible.
    pub eligible_at: u64,
}

/// Splits `tags` by `minimumAge`: those first seen at least `age` before
/// `now` (tags without a first-seen time count as old), and the tag the
/// policy would pick if age did not matter, when that one is too new.
pub fn mature<'t, T: AsRef<str>>(
    policy: &CompiledPolicy,
    tags: &[&'t T],
    first_seen: &std::collections::BTreeMap<String, u64>,
    age: std::time::Duration,
    now: u64,
) -> (Vec<&'t T>, Option<Waiting>) {
    // 0 (or no time at all) means "there before hoist looked": old.
    let eligible_at = |tag: &str| match first_seen.get(tag) {
        None | Some(0) => 0,
        Some(seen) => seen.saturating_add(age.as_secs()),
    };
    let mature: Vec<&T> = tags
        .iter()
        .copied()
        .filter(|t| eligible_at(t.as_ref()) <= now)
        .collect();
    let waiting = policy.select(tags).tag.and_then(|best| {
        let at = eligible_at(best.as_str());
        (at > now).then(|| Waiting {
            tag: best.as_str().to_string(),
            eligible_at: at,
        })
    });
    (mature, waiting)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod build_time {
    use super::*;

    #[test]
    fn build_time_orders_by_the_times_given_and_filters_by_name() {
        let spec: ImagePolicySpec = serde_json::from_value(serde_json::json!({
            "imageRepositoryRef": {"name": "app"}, "policy": {"buildTime": {}},
            "filterTags": {"pattern": "^main-[0-9a-f]{7}$"}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let policy = CompiledPolicy::compile(&spec).unwrap_or_else(|e| panic!("{e}"));
        assert!(policy.orders_by_build_time());
        let tags = [
            "main-aaaaaaa",
            "main-bbbbbbb",
            "main-ccccccc",
            "dev-ddddddd",
            "main-eeeeeee",
        ];
        assert!(!policy.admits("dev-ddddddd"));
        let times = BuildTimes::from([
            ("main-aaaaaaa".to_string(), 300),
            ("main-bbbbbbb".to_string(), 100),
            ("main-ccccccc".to_string(), 300),
            ("dev-ddddddd".to_string(), 900),
        ]);
        // The newest admitted build; of two at one time, the higher name.
        // main-eeeeeee has no time (no created field): not a candidate.
        let selection = policy.select_by_build_time(&tags, &times);
        assert_eq!(
            selection.tag.map(|t| t.to_string()).as_deref(),
            Some("main-ccccccc")
        );
        assert_eq!((selection.candidates, selection.ignored), (3, 1));
        // Without times, nothing orders.
        assert_eq!(policy.select(&tags).tag, None);
        let oldest: ImagePolicySpec = serde_json::from_value(serde_json::json!({
            "imageRepositoryRef": {"name": "app"}, "policy": {"buildTime": {"order": "desc"}}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let oldest = CompiledPolicy::compile(&oldest).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            oldest
                .select_by_build_time(&tags, &times)
                .tag
                .map(|t| t.to_string())
                .as_deref(),
            Some("main-bbbbbbb")
        );
    }
}

#[cfg(test)]
mod maturity {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    #[test]
    fn minimum_age_holds_back_new_tags_until_they_are_old_enough() {
        let spec: ImagePolicySpec = serde_json::from_value(serde_json::json!({
            "imageRepositoryRef": {"name": "app"}, "policy": {"semver": {"range": ">=1.0.0"}}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let policy = CompiledPolicy::compile(&spec).unwrap_or_else(|e| panic!("{e}"));
        let tags = ["1.0.0", "1.1.0", "1.2.0"];
        let refs: Vec<&&str> = tags.iter().collect();
        let day = Duration::from_secs(86_400);
        // 1.0.0 was there at the first scan; 1.1.0 appeared at t=1000,
        // 1.2.0 at t=50_000.
        let seen = BTreeMap::from([
            ("1.0.0".to_string(), 0),
            ("1.1.0".to_string(), 1_000),
            ("1.2.0".to_string(), 50_000),
        ]);
        let pick = |now: u64| {
            let (mature, waiting) = mature(&policy, &refs, &seen, day, now);
            (policy.select(&mature).tag.map(|t| t.to_string()), waiting)
        };
        assert_eq!(
            pick(60_000),
            (
                Some("1.0.0".into()),
                Some(Waiting {
                    tag: "1.2.0".into(),
                    eligible_at: 136_400
                })
            )
        );
        assert_eq!(
            pick(87_400),
            (
                Some("1.1.0".into()),
                Some(Waiting {
                    tag: "1.2.0".into(),
                    eligible_at: 136_400
                })
            )
        );
        assert_eq!(pick(136_400), (Some("1.2.0".into()), None));
    }
}

#[cfg(test)]
mod props;
