//! Helm chart repositories as tag sources. An ImageRepository with
//! `spec.chart` names a chart in the repository at `spec.image`: a classic
//! one (`https://…`, whose `index.yaml` lists every chart's versions) or an
//! OCI one (`oci://host/path`, the chart is the OCI repository
//! `host/path/<chart>`, its versions its tags). Without `spec.chart`,
//! `oci://host/path/chart` is an OCI repository like any image.

use std::collections::BTreeMap;

use serde::Deserialize;
use url::Url;

use super::reference::{ImageName, ReferenceError};

/// A chart in a classic (HTTP) chart repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChartIndex {
    /// The repository's URL, ending in `/`.
    pub base: Url,
    pub chart: String,
}

impl ChartIndex {
    /// `<base>index.yaml`, as Helm fetches it.
    pub fn index_url(&self) -> Url {
        // `base` ends in '/', so the join appends.
        self.base
            .join("index.yaml")
            .unwrap_or_else(|_| self.base.clone())
    }

    /// What the store keys the chart's versions by.
    pub fn key(&self) -> String {
        format!("{}#{}", self.base, self.chart)
    }
}

/// Where an ImageRepository's tags come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// An OCI repository: an image's, or an OCI chart's.
    Oci(ImageName),
    /// A chart of a classic chart repository; the name is its host (for
    /// credentials by host, as for registries) and chart.
    ChartIndex(ImageName, ChartIndex),
}

impl Origin {
    /// From `spec.image` and `spec.chart`.
    pub fn of(image: &str, chart: Option<&str>) -> Result<Origin, ReferenceError> {
        let invalid = |why| ReferenceError::Invalid(image.to_string(), why);
        let Some(chart) = chart else {
            return Ok(Origin::Oci(ImageName::parse(
                image.strip_prefix("oci://").unwrap_or(image),
            )?));
        };
        if chart.is_empty()
            || chart.len() > 250
            || !chart.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            })
            || chart.starts_with('.')
        {
            return Err(ReferenceError::Invalid(
                chart.to_string(),
                "a chart name is lower-case letters, digits, '-', '_' and '.'",
            ));
        }
        if let Some(path) = image.strip_prefix("oci://") {
            let path = path.trim_end_matches('/');
            return Ok(Origin::Oci(ImageName::parse(&format!("{path}/{chart}"))?));
        }
        let mut base = Url::parse(image).map_err(|_| {
            invalid("with spec.chart, spec.image is the chart repository's URL: https://… for a classic repository, oci://… for an OCI one")
        })?;
        if !matches!(base.scheme(), "https" | "http") {
            return Err(invalid(
                "a chart repository's URL is https://…, http://… or oci://…",
            ));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(invalid(
                "the URL carries credentials; put them in the Secret of spec.secretRef (username and password)",
            ));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("the URL carries a query or fragment"));
        }
        let Some(host) = base.host_str() else {
            return Err(invalid("the URL has no host"));
        };
        let registry = match base.port() {
            Some(port) => format!("{}:{port}", host.to_ascii_lowercase()),
            None => host.to_ascii_lowercase(),
        };
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Ok(Origin::ChartIndex(
            ImageName {
                registry,
                repository: chart.to_string(),
            },
            ChartIndex {
                base,
                chart: chart.to_string(),
            },
        ))
    }

    /// What hoist keys state by: the canonical image name, or the chart
    /// repository's URL and chart.
    pub fn key(&self) -> String {
        match self {
            Origin::Oci(name) => name.canonical(),
            Origin::ChartIndex(_, index) => index.key(),
        }
    }

    pub fn name(&self) -> &ImageName {
        match self {
            Origin::Oci(name) | Origin::ChartIndex(name, _) => name,
        }
    }

    pub fn chart_index(&self) -> Option<&ChartIndex> {
        match self {
            Origin::Oci(_) => None,
            Origin::ChartIndex(_, index) => Some(index),
        }
    }
}

/// Why `chart` is not a chart name Helm would write, if it is not.
pub fn chart_name_problem(chart: &str) -> Option<&'static str> {
    let valid = !chart.is_empty()
        && chart.len() <= 250
        && !chart.starts_with('.')
        && chart.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
    (!valid).then_some("a chart name is lower-case letters, digits, '-', '_' and '.'")
}

/// What hoist reads of an `index.yaml`: each chart's versions.
#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    entries: BTreeMap<String, Vec<Entry>>,
}

/// An entry as any index may write it: only its version is kept (an
/// index lists every chart of the repository, and each entry's other
/// fields are the bulk of it), and an entry whose version is missing or
/// not a string, or that is not a mapping at all, is skipped, as Helm
/// skips it, rather than failing the whole index.
struct Entry {
    version: Option<String>,
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> serde::de::Visitor<'de> for EntryVisitor {
            type Value = Entry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a chart version entry")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Entry, A::Error> {
                let mut version = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == "version" {
                        version = map.next_value::<Scalar>()?.0;
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(Entry { version })
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Entry, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Entry { version: None })
            }
            fn visit_str<E>(self, _: &str) -> Result<Entry, E> {
                Ok(Entry { version: None })
            }
            fn visit_unit<E>(self) -> Result<Entry, E> {
                Ok(Entry { version: None })
            }
            fn visit_bool<E>(self, _: bool) -> Result<Entry, E> {
                Ok(Entry { version: None })
            }
            fn visit_i64<E>(self, _: i64) -> Result<Entry, E> {
                Ok(Entry { version: None })
            }
            fn visit_u64<E>(self, _: u64) -> Result<Entry, E> {
                Ok(Entry { version: None })
            }
            fn visit_f64<E>(self, _: f64) -> Result<Entry, E> {
                Ok(Entry { version: None })
            }
        }
        deserializer.deserialize_any(EntryVisitor)
    }
}

/// A string, or None for any other value (which is read and dropped).
struct Scalar(Option<String>);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> serde::de::Visitor<'de> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a version")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Scalar, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Scalar(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Scalar, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Scalar(None))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar(None))
            }
            fn visit_none<E>(self) -> Result<Scalar, E> {
                Ok(Scalar(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Scalar, E> {
                Ok(Scalar(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Scalar, E> {
                Ok(Scalar(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Scalar, E> {
                Ok(Scalar(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Scalar, E> {
                Ok(Scalar(None))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// Nodes an index may hold: a large public index (tens of thousands of
/// chart versions, ~20 nodes each) fits; an index built to exhaust memory
/// does not get further than its body limit allows.
const MAX_INDEX_NODES: usize = 5_000_000;

/// The versions of `chart` in an `index.yaml` (or its JSON form), in index
/// order, without duplicates; at most `max` of them.
pub fn index_versions(bytes: &[u8], chart: &str, max: usize) -> Result<Vec<String>, String> {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = MAX_INDEX_NODES;
    budget.max_events = 4 * MAX_INDEX_NODES;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    let index: Index = serde_saphyr::from_slice_with_options(bytes, options).map_err(|e| {
        format!(
            "the index is not a Helm repository index: {}",
            first_line(&e.to_string())
        )
    })?;
    let Some(entries) = index.entries.get(chart) else {
        return Err(format!("the index has no chart {chart:?}"));
    };
    let mut seen = std::collections::HashSet::new();
    let mut versions = Vec::new();
    for entry in entries {
        let Some(version) = entry.version.as_deref() else {
            continue;
        };
        if version.is_empty() || !seen.insert(version.to_string()) {
            continue;
        }
        if versions.len() == max {
            return Err(format!(
                "chart {chart:?} has more than {max} versions (spec.maxTags)"
            ));
        }
        versions.push(version.to_string());
    }
    Ok(versions)
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_of_images_oci_charts_and_classic_charts() {
        let oci = Origin::of("oci://ghcr.io/acme/charts", Some("podinfo"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(oci.key(), "ghcr.io/acme/charts/podinfo");
        let bare =
            Origin::of("oci://ghcr.io/acme/charts/podinfo", None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bare, oci);
        let classic = Origin::of("https://Charts.Example.com:8443/stable", Some("nginx"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            classic.key(),
            "https://charts.example.com:8443/stable/#nginx"
        );
        assert_eq!(classic.name().registry, "charts.example.com:8443");
        assert_eq!(
            classic
                .chart_index()
                .map(|i| i.index_url().to_string())
                .as_deref(),
            Some("https://charts.example.com:8443/stable/index.yaml")
        );
        for (image, chart) in [
            ("https://user:pw@charts.example.com", "nginx"),
            ("ftp://charts.example.com", "nginx"),
            ("charts.example.com", "nginx"),
            ("https://charts.example.com/?x=1", "nginx"),
            ("https://charts.example.com", "../nginx"),
            ("https://charts.example.com", "Nginx"),
        ] {
            assert!(Origin::of(image, Some(chart)).is_err(), "{image} {chart}");
        }
        assert!(Origin::of("https://charts.example.com", None).is_err());
    }

    #[test]
    fn an_index_gives_one_charts_versions() {
        let index = b"apiVersion: v1\nentries:\n  app:\n  - {name: app, version: 1.2.0, digest: abc}\n  - {name: app, version: ~}\n  - [not, an, entry]\n  - {name: app, version: 1.10.0+build.1}\n  - {name: app, version: 1.2.0}\n  other:\n  - {name: other, version: 9.9.9}\n  broken:\n  - {name: broken, version: {a: b}}\ngenerated: 2026-01-01T00:00:00Z\n";
        assert_eq!(
            index_versions(index, "app", 10),
            Ok(vec!["1.2.0".to_string(), "1.10.0+build.1".to_string()])
        );
        assert!(index_versions(index, "app", 1).is_err_and(|e| e.contains("more than 1 versions")));
        assert!(index_versions(index, "none", 10).is_err_and(|e| e.contains("no chart \"none\"")));
        assert!(index_versions(b"{entries: [", "app", 10).is_err());
        let bomb = b"a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nentries: {}\n";
        assert!(index_versions(bomb, "app", 10).is_err());
    }
}
