use std::borrow::Cow;
use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use regex::Regex;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// A reference to a Secret (or other object) in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalObjectReference {
    pub name: String,
}

/// A reference to an object, in the referrer's namespace unless given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NamespacedObjectReference {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A duration in Go's notation as Kubernetes objects write them: `30s`,
/// `5m`, `1h30m`, `1.5h`, `500ms`.
///
/// Kept as text so an object reads back exactly as written; [`GoDuration::parse`]
/// gives the value and is what load-time validation calls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GoDuration(pub String);

/// Flux's CRD pattern for durations: one or more `<number><unit>`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

static DURATION_PART: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    Regex::new(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)").expect("constant pattern")
});

/// Why a duration does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} is not a duration; expected a number with a unit (ms, s, m, h) such as 30s, 5m or 1h30m"
)]
pub struct DurationError {
    pub text: String,
}

impl GoDuration {
    pub fn new(text: impl Into<String>) -> Self {
        GoDuration(text.into())
    }

    pub fn parse(&self) -> Result<Duration, DurationError> {
        parse_duration(&self.0)
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses the subset of Go durations that Flux's CRDs admit (see
/// [`DURATION_PATTERN`]).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let error = || DurationError {
        text: text.to_string(),
    };
    let mut total = Duration::ZERO;
    let mut at = 0;
    for caps in DURATION_PART.captures_iter(text) {
        let (Some(whole), Some(number), Some(unit)) = (caps.get(0), caps.get(1), caps.get(2))
        else {
            return Err(error());
        };
        if whole.start() != at {
            return Err(error());
        }
        at = whole.end();
        let value: f64 = number.as_str().parse().map_err(|_| error())?;
        let seconds = match unit.as_str() {
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            _ => value * 3600.0,
        };
        let part = Duration::try_from_secs_f64(seconds).map_err(|_| error())?;
        total = total.checked_add(part).ok_or_else(error)?;
    }
    if at == 0 || at != text.len() {
        return Err(error());
    }
    Ok(total)
}

impl JsonSchema for GoDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

/// kstatus-compatible conditions (`Ready`, `Reconciling`, `Stalled`).
pub type Conditions = Vec<Condition>;

/// Label selection as Kubernetes writes it: every `matchLabels` entry and
/// every `matchExpressions` requirement must hold; an empty selector
/// selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub match_labels: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: SelectorOperator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SelectorOperator {
    #[default]
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    /// Whether an object with these labels is selected.
    pub fn matches(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator {
                    SelectorOperator::In => value.is_some_and(|v| r.values.contains(v)),
                    SelectorOperator::NotIn => value.is_none_or(|v| !r.values.contains(v)),
                    SelectorOperator::Exists => value.is_some(),
                    SelectorOperator::DoesNotExist => value.is_none(),
                }
            })
    }

    /// What is wrong with a requirement, as Kubernetes validates it: In and
    /// NotIn need values, Exists and DoesNotExist take none.
    pub fn problems(&self) -> Vec<(usize, &'static str)> {
        self.match_expressions
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match (r.operator, r.values.is_empty()) {
                (SelectorOperator::In | SelectorOperator::NotIn, true) => {
                    Some((i, "In and NotIn need at least one value"))
                }
                (SelectorOperator::Exists | SelectorOperator::DoesNotExist, false) => {
                    Some((i, "Exists and DoesNotExist take no values"))
                }
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors_match_like_kubernetes() {
        let labels: std::collections::BTreeMap<String, String> = [
            ("app".to_string(), "web".to_string()),
            ("tier".to_string(), "prod".to_string()),
        ]
        .into();
        let req = |key: &str, operator, values: &[&str]| LabelSelectorRequirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let sel = |labels: &[(&str, &str)], exprs: Vec<LabelSelectorRequirement>| LabelSelector {
            match_labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            match_expressions: exprs,
        };
        assert!(sel(&[], vec![]).matches(&labels));
        assert!(sel(&[("app", "web")], vec![]).matches(&labels));
        assert!(!sel(&[("app", "api")], vec![]).matches(&labels));
        assert!(
            sel(
                &[],
                vec![req("tier", SelectorOperator::In, &["prod", "staging"])]
            )
            .matches(&labels)
        );
        assert!(!sel(&[], vec![req("tier", SelectorOperator::NotIn, &["prod"])]).matches(&labels));
        assert!(sel(&[], vec![req("zone", SelectorOperator::NotIn, &["a"])]).matches(&labels));
        assert!(sel(&[], vec![req("app", SelectorOperator::Exists, &[])]).matches(&labels));
        assert!(!sel(&[], vec![req("app", SelectorOperator::DoesNotExist, &[])]).matches(&labels));
        assert!(
            !sel(
                &[("app", "web")],
                vec![req("zone", SelectorOperator::Exists, &[])]
            )
            .matches(&labels)
        );
        assert_eq!(
            sel(&[], vec![req("a", SelectorOperator::In, &[])])
                .problems()
                .len(),
            1
        );
        assert_eq!(
            sel(&[], vec![req("a", SelectorOperator::Exists, &["x"])])
                .problems()
                .len(),
            1
        );
    }

    #[test]
    fn parses_flux_durations() {
        let cases = [
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("1.5h", 5_400_000),
            ("500ms", 500),
            ("1m0s", 60_000),
        ];
        for (text, millis) in cases {
            assert_eq!(
                parse_duration(text).map(|d| d.as_millis()),
                Ok(millis),
                "{text}"
            );
        }
        for bad in [
            "",
            "5",
            "5 minutes",
            "5min",
            "m",
            "-5m",
            "1h 30m",
            "1.h",
            "5m!",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}

/// Why a name cannot name a Kubernetes object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectNameError {
    #[error("must be 1 to 253 characters")]
    Length,
    #[error("{0:?} is not allowed: use lowercase letters, digits, '-' and '.'")]
    Character(char),
    #[error("must start and end with a lowercase letter or digit")]
    Ends,
}

/// Whether `name` can name a Kubernetes object such as a ServiceAccount: a
/// DNS-1123 subdomain (lowercase letters, digits, `-` and `.`, starting
/// and ending with a letter or digit, at most 253 characters).
pub fn check_object_name(name: &str) -> Result<(), ObjectNameError> {
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if name.is_empty() || name.len() > 253 {
        return Err(ObjectNameError::Length);
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !alphanumeric(c) && c != '-' && c != '.')
    {
        return Err(ObjectNameError::Character(c));
    }
    if !name.starts_with(alphanumeric) || !name.ends_with(alphanumeric) {
        return Err(ObjectNameError::Ends);
    }
    Ok(())
}

#[cfg(test)]
mod object_name_tests {
    use super::check_object_name;

    #[test]
    fn object_names_are_dns_subdomains() {
        for good in ["deployer", "team-a.sync", "a", "0"] {
            assert_eq!(check_object_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "Deployer",
            "-a",
            "a-",
            "a_b",
            "a/b",
            "a:b",
            &"a".repeat(254),
        ] {
            assert!(check_object_name(bad).is_err(), "{bad}");
        }
    }
}

/// Which other namespaces may refer to an object (Flux's `accessFrom`): a
/// reference from outside the object's own namespace is allowed only from
/// a namespace that one of the selectors selects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessFrom {
    pub namespace_selectors: Vec<NamespaceSelector>,
}

/// Namespaces by their labels; no labels select every namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub match_labels: std::collections::BTreeMap<String, String>,
}

impl AccessFrom {
    /// Whether a namespace with `labels` is let in.
    pub fn admits(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        self.namespace_selectors
            .iter()
            .any(|s| s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)))
    }
}

/// Why a reference across namespaces is refused; `target` is the object
/// referred to (`kind ns/name`), `from` the referring namespace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessRefused {
    #[error(
        "{target} is in another namespace, and cross-namespace references are disabled (--no-cross-namespace-refs)"
    )]
    Disabled { target: String },
    #[error("{target} does not let other namespaces refer to it: it has no spec.accessFrom")]
    NoAccessFrom { target: String },
    #[error("namespace {from} is not known, so {target}'s spec.accessFrom cannot admit it")]
    UnknownNamespace { from: String, target: String },
    #[error(
        "{target}'s spec.accessFrom.namespaceSelectors select no namespace with the labels of {from}"
    )]
    NotSelected { from: String, target: String },
}

/// Whether an object in `from` may refer to `target` (`kind ns/name`) in
/// `target_namespace`, whose `access` says who may: always within one
/// namespace; across namespaces only when `access` admits `from`'s labels
/// (`None`: the namespace is not known) and `refuse_all` is off
/// (`--no-cross-namespace-refs`). The error says why, for the field that
/// holds the reference.
pub fn check_reference_access(
    from: &str,
    from_labels: Option<&std::collections::BTreeMap<String, String>>,
    target: &str,
    target_namespace: &str,
    access: Option<&AccessFrom>,
    refuse_all: bool,
) -> Result<(), AccessRefused> {
    if from == target_namespace {
        return Ok(());
    }
    let target = target.to_string();
    if refuse_all {
        return Err(AccessRefused::Disabled { target });
    }
    let Some(access) = access else {
        return Err(AccessRefused::NoAccessFrom { target });
    };
    let from = from.to_string();
    let Some(labels) = from_labels else {
        return Err(AccessRefused::UnknownNamespace { from, target });
    };
    if access.admits(labels) {
        Ok(())
    } else {
        Err(AccessRefused::NotSelected { from, target })
    }
}

#[cfg(test)]
mod access_tests {
    use std::collections::BTreeMap;

    use super::{AccessFrom, NamespaceSelector, check_reference_access};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn references_across_namespaces_need_an_admitting_selector() {
        let team_b = labels(&[("team", "b"), ("kubernetes.io/metadata.name", "b")]);
        let check = |access: Option<&AccessFrom>, refuse: bool| {
            check_reference_access(
                "b",
                Some(&team_b),
                "ImageRepository a/app",
                "a",
                access,
                refuse,
            )
        };
        let selecting = |pairs: &[(&str, &str)]| AccessFrom {
            namespace_selectors: vec![NamespaceSelector {
                match_labels: labels(pairs),
            }],
        };
        // Within a namespace, always; even with everything refused.
        assert_eq!(
            check_reference_access("a", None, "ImageRepository a/app", "a", None, true),
            Ok(())
        );
        assert!(check(None, false).is_err_and(|e| e.to_string().contains("no spec.accessFrom")));
        assert_eq!(check(Some(&selecting(&[("team", "b")])), false), Ok(()));
        // An empty selector admits every namespace, as in Flux.
        assert_eq!(check(Some(&selecting(&[])), false), Ok(()));
        assert!(check(Some(&selecting(&[("team", "c")])), false).is_err());
        assert!(check(Some(&selecting(&[("team", "b"), ("tier", "x")])), false).is_err());
        assert!(
            check(Some(&selecting(&[])), true)
                .is_err_and(|e| e.to_string().contains("--no-cross-namespace-refs"))
        );
        assert!(
            check_reference_access(
                "b",
                None,
                "ImageRepository a/app",
                "a",
                Some(&selecting(&[])),
                false
            )
            .is_err_and(|e| e.to_string().contains("namespace b is not known"))
        );
        // No selectors at all admit nobody.
        assert!(check(Some(&AccessFrom::default()), false).is_err());
    }
}
