//! Table tests for the policy stage: every range syntax element, every
//! policy kind, ties, filterTags, and the spec errors.

use super::*;
use crate::api::ImagePolicySpec;

/// Builds policy specs for tests: `spec().semver("^1")`.
pub(crate) struct SpecBuilder(ImagePolicySpec);

pub(crate) fn spec() -> SpecBuilder {
    SpecBuilder(ImagePolicySpec::new(
        "app",
        PolicyChoice::alphabetical(SortOrder::Asc),
    ))
}

impl SpecBuilder {
    pub(crate) fn semver(mut self, range: &str) -> Self {
        self.0.policy = PolicyChoice::semver(range);
        self
    }
    pub(crate) fn alphabetical(mut self, order: SortOrder) -> Self {
        self.0.policy = PolicyChoice::alphabetical(order);
        self
    }
    pub(crate) fn numerical(mut self, order: SortOrder) -> Self {
        self.0.policy = PolicyChoice::numerical(order);
        self
    }
    pub(crate) fn filter(self, pattern: &str, extract: Option<&str>) -> Self {
        SpecBuilder(self.0.with_filter(pattern, extract))
    }
    pub(crate) fn build(self) -> ImagePolicySpec {
        self.0
    }
}

fn latest(spec: SpecBuilder, tags: &str) -> Option<String> {
    let tags: Vec<&str> = tags.split_whitespace().collect();
    match select(&spec.build(), &tags) {
        Ok(selection) => selection.tag.map(|t| t.0),
        Err(e) => panic!("spec should compile: {e}"),
    }
}

/// (range, tags, expected latest)
const SEMVER: &[(&str, &str, Option<&str>)] = &[
    // The issue's examples.
    (
        "1.0.x",
        "1.0.0 1.0.0.1 1.0.0p 1.0.1 1.2.0 0.1.0",
        Some("1.0.1"),
    ),
    (">=1.0.0", "1.0.0 1.1.0-rc.1 1.0.1", Some("1.0.1")),
    (">=1.0.0-0", "1.0.0 1.1.0-rc.1 1.0.1", Some("1.1.0-rc.1")),
    ("^1.2", "1.2.0 1.9.9 2.0.0 1.10.0", Some("1.10.0")),
    (
        ">= 1.2 < 3.0.0 || >= 4.2.3",
        "1.1.0 2.9.9 3.5.0 4.2.2",
        Some("2.9.9"),
    ),
    ("1.2 - 1.4.5", "1.1.9 1.2.0 1.4.5 1.4.6", Some("1.4.5")),
    // AND by space and by comma.
    (">=1.0.0 <2.0.0", "0.9.0 1.0.0 1.9.9 2.0.0", Some("1.9.9")),
    (">=1.2,<2", "1.1.0 1.2.0 1.99.0 2.0.0", Some("1.99.0")),
    (">=1.2, <2", "1.2.0 1.5.0 2.1.0", Some("1.5.0")),
    (">= 1.2 , < 2", "1.2.0 1.5.0 2.1.0", Some("1.5.0")),
    // OR.
    ("<1.0.0 || >=3.0.0", "0.9.0 1.5.0 2.0.0", Some("0.9.0")),
    ("1.1.x || 1.3.x", "1.1.5 1.2.0 1.3.2 1.4.0", Some("1.3.2")),
    ("=1.0.0 || =2.0.0", "1.0.0 1.5.0 2.0.0 3.0.0", Some("2.0.0")),
    // Hyphen ranges.
    ("1.2.3 - 2.3.4", "1.2.2 1.2.3 2.3.4 2.3.5", Some("2.3.4")),
    ("1 - 2", "0.9.0 1.0.0 2.5.0 3.0.0", Some("2.5.0")),
    ("1.2 - 1.4", "1.2.0 1.4.9 1.5.0", Some("1.4.9")),
    // x-ranges.
    ("1.x", "0.9.0 1.0.0 1.99.1 2.0.0", Some("1.99.1")),
    ("1.X", "1.0.0 1.2.0 2.0.0", Some("1.2.0")),
    ("1.*", "1.0.0 1.3.0 2.0.0", Some("1.3.0")),
    ("1.2.*", "1.2.0 1.2.9 1.3.0", Some("1.2.9")),
    ("*", "0.0.1 3.2.1 10.0.0", Some("10.0.0")),
    ("x", "0.0.1 3.2.1", Some("3.2.1")),
    ("*", "1.0.0 2.0.0-rc.1", Some("1.0.0")),
    // Tilde.
    ("~1.2", "1.1.0 1.2.0 1.2.9 1.3.0", Some("1.2.9")),
    ("~1.2.3", "1.2.2 1.2.3 1.2.10 1.3.0", Some("1.2.10")),
    ("~1", "0.9.0 1.0.0 1.9.0 2.0.0", Some("1.9.0")),
    ("~>1.2", "1.2.0 1.2.5 1.3.0", Some("1.2.5")),
    ("~> 1.2.3", "1.2.3 1.2.4 1.3.0", Some("1.2.4")),
    ("~0.0.0", "0.0.1 5.0.0", Some("5.0.0")),
    // Caret.
    ("^1.2.3", "1.2.2 1.2.3 1.9.0 2.0.0", Some("1.9.0")),
    ("^0.2.3", "0.2.3 0.2.9 0.3.0 1.0.0", Some("0.2.9")),
    ("^0.0.3", "0.0.3 0.0.4 0.1.0", Some("0.0.3")),
    ("^0", "0.0.1 0.9.9 1.0.0", Some("0.9.9")),
    ("^1", "1.0.0 1.5.0 2.0.0", Some("1.5.0")),
    ("^0.2", "0.1.0 0.2.0 0.2.7 0.3.0", Some("0.2.7")),
    // Comparison operators, including Masterminds' `=>` and `=<`.
    (">1.2.3", "1.2.3 1.2.4", Some("1.2.4")),
    (">1.2.3", "1.2.3 1.0.0", None),
    ("<1.2.3", "1.2.2 1.2.3 2.0.0", Some("1.2.2")),
    ("<=1.2.3", "1.2.3 1.2.4", Some("1.2.3")),
    ("=<1.2.3", "1.2.3 1.2.4", Some("1.2.3")),
    ("=>1.2.0", "1.1.0 1.2.0 1.3.0", Some("1.3.0")),
    (">= 1.2.0", "1.1.0 1.2.0", Some("1.2.0")),
    (">1.x", "1.5.0 2.0.0 2.1.0", Some("2.1.0")),
    (">1.x", "1.0.0 1.9.0", None),
    (">1.2.x", "1.2.9 1.3.0", Some("1.3.0")),
    ("<=1.x", "1.9.0 2.0.0", Some("1.9.0")),
    ("<1.x", "0.9.0 1.0.0", Some("0.9.0")),
    // Not equal.
    ("!=1.5.0", "1.4.0 1.5.0", Some("1.4.0")),
    (">=1.0.0 !=1.5.0 <2", "1.4.0 1.5.0", Some("1.4.0")),
    ("!=1.x", "1.5.0 0.9.0", Some("0.9.0")),
    ("!=1.2.x", "1.2.5 1.3.0", Some("1.3.0")),
    // Masterminds v3.4 (Flux): `!=` alone does not admit prereleases.
    ("!=1.5.0", "1.4.0 2.0.0-rc.1", Some("1.4.0")),
    // Build metadata in a range is allowed and ignored.
    (">=1.0.0+build.1", "0.9.0 1.0.0", Some("1.0.0")),
    // A hyphen range's upper bound runs into a following `||3` (the version
    // grammar admits `|`); v3.4 still reads the rest as an alternative.
    ("1 - 2||3", "2.5.0 3.1.0 4.0.0", Some("3.1.0")),
    // A bare version is exact, a bare minor is a patch range.
    ("1.2.3", "1.2.3 1.2.4", Some("1.2.3")),
    ("=1.2.3", "1.2.3 1.2.4", Some("1.2.3")),
    ("1.2", "1.2.0 1.2.8 1.3.0", Some("1.2.8")),
    ("1", "1.0.0 1.8.0 2.0.0", Some("1.8.0")),
    // A leading v in the range and in tags; V is not a version prefix.
    ("v1.2.x", "v1.2.0 v1.2.7 1.3.0", Some("v1.2.7")),
    (">=v1.0.0", "V9.0.0 v1.1.0", Some("v1.1.0")),
    ("^v2", "v2.0.0 v2.1.0 v3.0.0", Some("v2.1.0")),
    // Prereleases: excluded unless a comparator of the group names one; then
    // prereleases of any version qualify.
    ("^1.0.0", "1.0.0 1.1.0-beta.1", Some("1.0.0")),
    (
        ">=1.0.0-alpha",
        "1.0.0-alpha 1.0.0-beta 1.0.0-beta.2",
        Some("1.0.0-beta.2"),
    ),
    (">=1.0.0-0 <2.0.0", "1.5.0-rc.1 1.4.0", Some("1.5.0-rc.1")),
    // 2.0.0-rc.1 precedes 2.0.0, so `<2.0.0` admits it (as Masterminds does).
    (">=1.0.0-0 <2.0.0", "1.5.0 2.0.0-rc.1", Some("2.0.0-rc.1")),
    (">=1.0.0-0 <2.0.0", "1.5.0-rc.1 1.5.0", Some("1.5.0")),
    (">=2.0.0-0 || <1.0.0", "0.9.0-rc.1 0.8.0", Some("0.8.0")),
    ("~1.2.0-0", "1.2.5-rc.1 1.3.0-rc.1", Some("1.2.5-rc.1")),
    (
        ">=1.0.0-rc.2",
        "1.0.0-rc.1 1.0.0-rc.10 1.0.0-rc.9",
        Some("1.0.0-rc.10"),
    ),
    // Tags that are not versions are ignored; leading zeros are allowed.
    (">=0", "latest main sha-1a2b3c4 1.2 1.0.0.1 1.0.0p", None),
    (
        ">=2025.1.1",
        "2025.07.03 2025.12.01 2024.12.31",
        Some("2025.12.01"),
    ),
    // Build metadata does not order; equal versions: the first one wins.
    ("*", "v1.0.0 1.0.0", Some("v1.0.0")),
    ("*", "1.0.0 v1.0.0", Some("1.0.0")),
    ("*", "1.0.0+b2 1.0.0+b1", Some("1.0.0+b2")),
    ("*", "2025.7.3 2025.07.03", Some("2025.7.3")),
    // Nothing in range.
    ("^3", "1.0.0 2.0.0", None),
    ("^1", "", None),
];

#[test]
fn semver_table() {
    for (range, tags, expected) in SEMVER {
        assert_eq!(
            latest(spec().semver(range), tags).as_deref(),
            *expected,
            "range {range:?} over {tags:?}"
        );
    }
}

#[test]
fn invalid_ranges_are_errors_naming_the_field() {
    for range in [
        "",
        ">=",
        "1.2.3.4",
        ">>1.0",
        "abc",
        ">=1.0.0 <",
        "1.0.0 -",
        "<=>1",
        "1.2.3-",
        "1.2.3-01",
        ">=1.0 &&<2",
        "1.x.y",
    ] {
        let err = select(&spec().semver(range).build(), &["1.0.0"])
            .err()
            .unwrap_or_else(|| panic!("{range:?} should not parse"));
        assert_eq!(err.field(), "policy.semver.range", "{range:?}");
        assert!(
            err.to_string().contains("is not a valid semver range"),
            "{err}"
        );
    }
}

#[test]
fn alphabetical_table() {
    let tags = "16.04 16.04.1 16.10 20.04 20.10";
    assert_eq!(
        latest(spec().alphabetical(SortOrder::Asc), tags).as_deref(),
        Some("20.10")
    );
    assert_eq!(
        latest(spec().alphabetical(SortOrder::Desc), tags).as_deref(),
        Some("16.04")
    );
    // Byte order: upper case sorts before lower case, digits before letters.
    assert_eq!(
        latest(spec().alphabetical(SortOrder::Asc), "b a B 9").as_deref(),
        Some("b")
    );
    assert_eq!(
        latest(spec().alphabetical(SortOrder::Desc), "b a B 9").as_deref(),
        Some("9")
    );
    // RFC 3339-ish timestamps order correctly as text.
    assert_eq!(
        latest(
            spec()
                .alphabetical(SortOrder::Asc)
                .filter(r"^RELEASE\.(?P<ts>.*)Z$", Some("$ts")),
            "RELEASE.2024-01-01T00-00-00Z RELEASE.2025-06-30T12-00-00Z latest RELEASE.2025-01-01T00-00-00Z"
        )
        .as_deref(),
        Some("RELEASE.2025-06-30T12-00-00Z")
    );
    assert_eq!(
        latest(spec().alphabetical(SortOrder::Asc), "").as_deref(),
        None
    );
    // Pattern without extract only filters.
    assert_eq!(
        latest(
            spec().alphabetical(SortOrder::Asc).filter("^main-", None),
            "main-a main-b zz"
        )
        .as_deref(),
        Some("main-b")
    );
}

#[test]
fn numerical_table() {
    let ts = "main-3f2a1b0-1700000100 main-aaaaaaa-1700000050 dev-ffffff0-1800000000 main-0000000-999999999";
    let with_ts = |order| {
        spec()
            .numerical(order)
            .filter(r"^main-[a-f0-9]+-(?P<ts>[0-9]+)", Some("$ts"))
    };
    assert_eq!(
        latest(with_ts(SortOrder::Asc), ts).as_deref(),
        Some("main-3f2a1b0-1700000100")
    );
    assert_eq!(
        latest(with_ts(SortOrder::Desc), ts).as_deref(),
        Some("main-0000000-999999999")
    );
    assert_eq!(
        latest(spec().numerical(SortOrder::Asc), "1 10 9 2").as_deref(),
        Some("10")
    );
    assert_eq!(
        latest(spec().numerical(SortOrder::Desc), "1 10 9 2").as_deref(),
        Some("1")
    );
    assert_eq!(
        latest(spec().numerical(SortOrder::Asc), "1.5 1.25 -3 0").as_deref(),
        Some("1.5")
    );
    assert_eq!(
        latest(spec().numerical(SortOrder::Asc), "-1 -2").as_deref(),
        Some("-1")
    );
    // Floating point, as in Flux: 1.10 equals 1.1, and the first one wins.
    assert_eq!(
        latest(spec().numerical(SortOrder::Asc), "1.10 1.1").as_deref(),
        Some("1.10")
    );
    assert_eq!(
        latest(spec().numerical(SortOrder::Asc), "1.1 1.10").as_deref(),
        Some("1.1")
    );
    // Tags that are not numbers are ignored and counted.
    let s = select(
        &spec().numerical(SortOrder::Asc).build(),
        &["latest", "3", "NaN", "inf", "1e3"],
    );
    assert_eq!(
        s,
        Ok(Selection {
            tag: Some(Tag::from("1e3")),
            candidates: 2,
            ignored: 3
        })
    );
}

#[test]
fn filter_tags_extract_forms() {
    let tags = "1.2.0-alpine 1.3.0-alpine 1.4.0 2.0.0-alpine";
    for extract in ["$v", "${v}", "$1", "${1}"] {
        let s = spec()
            .semver("^1.0")
            .filter(r"^v?(?P<v>[0-9]+\.[0-9]+\.[0-9]+)-alpine$", Some(extract));
        assert_eq!(
            latest(s, tags).as_deref(),
            Some("1.3.0-alpine"),
            "{extract}"
        );
    }
    // Extract can build a version out of several groups.
    let s = spec()
        .semver(">=1")
        .filter(r"^r(\d+)_(\d+)$", Some("$1.$2.0"));
    assert_eq!(latest(s, "r1_2 r1_10 r0_99 x").as_deref(), Some("r1_10"));
    // `$$` is a literal dollar and needs no group.
    let s = spec()
        .alphabetical(SortOrder::Asc)
        .filter("^(a.*)$", Some("$$$1"));
    assert_eq!(latest(s, "ab ac b").as_deref(), Some("ac"));
    // The pattern is a search, not anchored, as in Go.
    let s = spec().alphabetical(SortOrder::Asc).filter("prod", None);
    assert_eq!(latest(s, "a-prod-1 b-dev z").as_deref(), Some("a-prod-1"));
}

#[test]
fn same_extracted_value_keeps_the_later_tag() {
    let s = || {
        spec()
            .semver("*")
            .filter(r"^(\d+\.\d+\.\d+)-(?:build)?\d+$", Some("$1"))
    };
    assert_eq!(
        latest(s(), "1.0.0-1 1.0.0-2 0.9.0-7").as_deref(),
        Some("1.0.0-2")
    );
    assert_eq!(latest(s(), "1.0.0-2 1.0.0-1").as_deref(), Some("1.0.0-1"));
    let n = spec()
        .numerical(SortOrder::Asc)
        .filter(r"^b(\d+)-", Some("$1"));
    assert_eq!(latest(n, "b7-x b7-y b3-z").as_deref(), Some("b7-y"));
    let a = spec()
        .alphabetical(SortOrder::Desc)
        .filter(r"^(\w)-", Some("$1"));
    assert_eq!(latest(a, "a-1 a-2 b-1").as_deref(), Some("a-2"));
}

#[test]
fn counts_candidates_and_ignored() {
    let s = select(
        &spec().semver("^1").build(),
        &["1.0.0", "2.0.0", "latest", "1.5.0", "sha-abc"],
    );
    assert_eq!(
        s,
        Ok(Selection {
            tag: Some(Tag::from("1.5.0")),
            candidates: 2,
            ignored: 2
        })
    );
    // Tags the pattern drops are neither candidates nor ignored.
    let s = select(
        &spec().semver("*").filter("^v", None).build(),
        &["v1.0.0", "1.2.0", "vx"],
    );
    assert_eq!(
        s,
        Ok(Selection {
            tag: Some(Tag::from("v1.0.0")),
            candidates: 1,
            ignored: 1
        })
    );
}

#[test]
fn filter_errors_name_the_field() {
    let cases = [
        (
            spec().semver("*").filter("(unclosed", None),
            "filterTags.pattern",
            "not a valid regular expression",
        ),
        (
            spec().semver("*").filter("^(?P<v>.*)$", Some("$version")),
            "filterTags.extract",
            "\"version\"",
        ),
        (
            spec().semver("*").filter("^(.*)$", Some("$2")),
            "filterTags.extract",
            "$1",
        ),
        (
            spec().semver("*").filter("^.*$", Some("${v}")),
            "filterTags.extract",
            "groups: none",
        ),
        (
            spec().semver("*").filter("", Some("$1")),
            "filterTags.pattern",
            "needs a pattern",
        ),
    ];
    for (s, field, text) in cases {
        let err = match select(&s.build(), &["1.0.0"]) {
            Err(e) => e,
            Ok(sel) => panic!("expected {field} error, got {sel:?}"),
        };
        assert_eq!(err.field(), field, "{err}");
        assert!(
            err.to_string().contains(text),
            "{err} should contain {text}"
        );
    }
}
