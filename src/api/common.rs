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

/// Whether `name` can name a Kubernetes object such as a ServiceAccount: a
/// DNS-1123 subdomain (lowercase letters, digits, `-` and `.`, starting
/// and ending with a letter or digit, at most 253 characters).
pub fn check_object_name(name: &str) -> Result<(), String> {
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if name.is_empty() || name.len() > 253 {
        return Err("must be 1 to 253 characters".to_string());
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !alphanumeric(c) && c != '-' && c != '.')
    {
        return Err(format!(
            "{c:?} is not allowed: use lowercase letters, digits, '-' and '.'"
        ));
    }
    if !name.starts_with(alphanumeric) || !name.ends_with(alphanumeric) {
        return Err("must start and end with a lowercase letter or digit".to_string());
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
