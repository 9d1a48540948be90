//! Property tests: the selection is always one of the input tags, nothing
//! the policy admits orders above it, and shuffling the input changes the
//! selected tag only among tags that order equal (the documented ties).

use std::cmp::Ordering;

use proptest::prelude::*;
use regex::Regex;

use super::tests::{SpecBuilder, spec};
use super::*;

/// Tags like a real registry's: versions with and without `v`, with
/// prereleases and build metadata (so ties happen), numbers, and noise.
fn tag() -> impl Strategy<Value = String> {
    let version = (
        prop::bool::ANY,
        0u64..3,
        0u64..4,
        0u64..4,
        prop::sample::select(vec!["", "-rc.1", "-rc.2", "-alpha", "-0", "-beta.11"]),
        prop::sample::select(vec!["", "+b1", "+b2"]),
    )
        .prop_map(|(v, major, minor, patch, pre, meta)| {
            format!(
                "{}{major}.{minor}.{patch}{pre}{meta}",
                if v { "v" } else { "" }
            )
        });
    let number = (0u32..50, prop::sample::select(vec!["", ".0", ".5", ".50"]))
        .prop_map(|(n, frac)| format!("{n}{frac}"));
    let build = (0u8..4, 100u32..110).prop_map(|(sha, ts)| format!("main-{sha:x}-{ts}"));
    let noise = prop::sample::select(vec!["latest", "stable", "1.2", "1.0.0.1", "v1", "edge"])
        .prop_map(str::to_string);
    prop_oneof![4 => version, 2 => number, 2 => build, 1 => noise]
}

fn policies() -> Vec<SpecBuilder> {
    vec![
        spec().semver("*"),
        spec().semver(">=1.0.0-0"),
        spec().semver("^1"),
        spec().semver("~0.2 || >=2.1.0 <2.3"),
        spec().semver("!=1.1.1"),
        spec().alphabetical(SortOrder::Asc),
        spec().alphabetical(SortOrder::Desc),
        spec().numerical(SortOrder::Asc),
        spec().numerical(SortOrder::Desc),
        spec()
            .numerical(SortOrder::Asc)
            .filter(r"^main-[0-9a-f]+-(?P<ts>\d+)$", Some("$ts")),
        spec()
            .semver(">=0")
            .filter(r"^v?(\d+)\.(\d+)\.\d+", Some("$1.$2.0")),
        spec()
            .alphabetical(SortOrder::Asc)
            .filter(r"^main-([0-9a-f]+)-", Some("$1")),
    ]
}

/// The value the policy orders a tag by, or None when the pattern drops it.
fn value_of(spec: &ImagePolicySpec, tag: &str) -> Option<String> {
    let Some(filter) = &spec.filter_tags else {
        return Some(tag.to_string());
    };
    let pattern = Regex::new(&filter.pattern).ok()?;
    let caps = pattern.captures(tag)?;
    let mut value = String::new();
    match &filter.extract {
        Some(extract) => caps.expand(extract, &mut value),
        None => value.push_str(tag),
    }
    Some(value)
}

/// How two admitted values order for the policy (None: not admitted).
fn order(spec: &ImagePolicySpec, a: &str, b: &str) -> Option<Ordering> {
    match &spec.policy {
        PolicyChoice::Semver(s) => {
            let range = Range::parse(&s.range).ok()?;
            let (x, y) = (Version::parse_tag(a)?, Version::parse_tag(b)?);
            (range.matches(&x) && range.matches(&y)).then(|| x.precedence(&y))
        }
        PolicyChoice::Alphabetical(p) => Some(directed(a.cmp(b), p.order)),
        PolicyChoice::Numerical(p) => {
            let (x, y) = (read_number(a)?, read_number(b)?);
            Some(directed(x.total_cmp(&y), p.order))
        }
        // Ordered by times the tags' names do not carry; not generated.
        PolicyChoice::BuildTime(_) => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn selection_is_an_input_tag_and_a_maximum(
        tags in prop::collection::vec(tag(), 0..40),
        which in 0usize..12,
    ) {
        let spec = policies().swap_remove(which).build();
        let selection = select(&spec, &tags).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let Some(selected) = selection.tag else {
            // Nothing selected: then nothing was admitted.
            for t in &tags {
                if let Some(v) = value_of(&spec, t) {
                    prop_assert!(order(&spec, &v, &v).is_none(), "{t} is admitted but nothing was selected");
                }
            }
            return Ok(());
        };
        prop_assert!(tags.contains(&selected.0));
        let best = value_of(&spec, &selected.0).ok_or_else(|| TestCaseError::fail("selected tag is filtered out"))?;
        prop_assert_eq!(order(&spec, &best, &best), Some(Ordering::Equal));
        for t in &tags {
            if let Some(ord) = value_of(&spec, t).and_then(|v| order(&spec, &v, &best)) {
                prop_assert_ne!(ord, Ordering::Greater, "{} orders above the selected {}", t, selected);
            }
        }
    }

    #[test]
    fn input_order_only_matters_for_ties(
        (tags, shuffled) in prop::collection::vec(tag(), 1..30)
            .prop_flat_map(|tags| (Just(tags.clone()), Just(tags).prop_shuffle())),
        which in 0usize..12,
    ) {
        let spec = policies().swap_remove(which).build();
        let a = select(&spec, &tags).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let b = select(&spec, &shuffled).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(a.candidates, b.candidates);
        prop_assert_eq!(a.ignored, b.ignored);
        match (a.tag, b.tag) {
            (None, None) => {}
            (Some(x), Some(y)) => {
                let (vx, vy) = (value_of(&spec, &x.0), value_of(&spec, &y.0));
                let (Some(vx), Some(vy)) = (vx, vy) else {
                    return Err(TestCaseError::fail("a selected tag is filtered out"));
                };
                prop_assert_eq!(order(&spec, &vx, &vy), Some(Ordering::Equal), "{} vs {}", x, y);
                // Without a tie the very same tag wins.
                let tied = tags.iter().filter(|t| {
                    value_of(&spec, t).is_some_and(|v| order(&spec, &v, &vx) == Some(Ordering::Equal))
                }).count();
                if tied == 1 {
                    prop_assert_eq!(x, y);
                }
            }
            (x, y) => prop_assert!(false, "one order selected {:?}, the other {:?}", x, y),
        }
    }
}
