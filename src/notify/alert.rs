//! Which events an Alert lets through to its Provider: a pure decision
//! over the event and the Alert's spec, compiled once.

use std::collections::BTreeSet;

use regex::Regex;

use super::event::{Event, Reason, Severity};
use crate::api::Alert;

/// An Alert, its regular expressions compiled.
#[derive(Clone, Debug)]
pub struct Rule {
    /// `ns/name` of the Alert.
    pub alert: String,
    pub namespace: String,
    /// `ns/name` of its Provider.
    pub provider: String,
    errors_only: bool,
    sources: Vec<crate::api::EventSource>,
    reasons: BTreeSet<Reason>,
    include: Vec<Regex>,
    exclude: Vec<Regex>,
    pub summary: Option<String>,
    pub metadata: std::collections::BTreeMap<String, String>,
    pub suspend: bool,
}

/// The kinds whose events hoist sends.
pub const SOURCE_KINDS: [&str; 3] = ["ImageRepository", "ImagePolicy", "ImageUpdateAutomation"];

/// A field of an Alert that cannot work, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl Rule {
    pub fn compile(alert: &Alert) -> Result<Rule, Invalid> {
        let namespace = crate::model::namespace_of(&alert.metadata).to_string();
        let name = alert.metadata.name.clone().unwrap_or_default();
        let spec = &alert.spec;
        let errors_only = match spec.event_severity.as_deref() {
            None | Some("info") => false,
            Some("error") => true,
            Some(other) => {
                return Err(invalid(
                    "spec.eventSeverity",
                    format!(
                        "{:?} is not a severity; use info or error",
                        crate::redact::escape_control(other)
                    ),
                ));
            }
        };
        if spec.event_sources.is_empty() {
            return Err(invalid(
                "spec.eventSources",
                "name at least one object (kind and name, or * for every one of the kind)",
            ));
        }
        for (i, source) in spec.event_sources.iter().enumerate() {
            let field = format!("spec.eventSources[{i}]");
            if !SOURCE_KINDS.contains(&source.kind.as_str()) {
                return Err(invalid(
                    format!("{field}.kind"),
                    format!(
                        "{:?} sends no events hoist knows; use {}",
                        crate::redact::escape_control(&source.kind),
                        SOURCE_KINDS.join(", ")
                    ),
                ));
            }
            if source.name.is_empty() {
                return Err(invalid(
                    format!("{field}.name"),
                    "name an object, or * for every one",
                ));
            }
            if let Some(other) = source.namespace.as_deref().filter(|n| *n != namespace) {
                return Err(invalid(
                    format!("{field}.namespace"),
                    format!(
                        "{:?} is not the Alert's namespace {namespace}: an Alert hears only its own namespace's objects",
                        crate::redact::escape_control(other)
                    ),
                ));
            }
        }
        let mut reasons = BTreeSet::new();
        for (i, text) in spec.event_reasons.iter().enumerate() {
            let reason = Reason::parse(text).ok_or_else(|| {
                invalid(
                    format!("spec.eventReasons[{i}]"),
                    format!(
                        "{:?} is not a reason hoist sends; use {}",
                        crate::redact::escape_control(text),
                        Reason::ALL.map(Reason::name).join(", ")
                    ),
                )
            })?;
            reasons.insert(reason);
        }
        let compile = |list: &[String], field: &str| -> Result<Vec<Regex>, Invalid> {
            list.iter()
                .enumerate()
                .map(|(i, pattern)| {
                    regex::RegexBuilder::new(pattern)
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| {
                            invalid(
                                format!("{field}[{i}]"),
                                format!("not a regular expression: {e}"),
                            )
                        })
                })
                .collect()
        };
        Ok(Rule {
            alert: format!("{namespace}/{name}"),
            provider: format!("{namespace}/{}", spec.provider_ref.name),
            namespace,
            errors_only,
            sources: spec.event_sources.clone(),
            reasons,
            include: compile(&spec.inclusion_list, "spec.inclusionList")?,
            exclude: compile(&spec.exclusion_list, "spec.exclusionList")?,
            summary: spec.summary.clone(),
            metadata: spec.event_metadata.clone(),
            suspend: spec.suspend,
        })
    }

    /// Whether `event` goes to this Alert's Provider.
    pub fn admits(&self, event: &Event) -> bool {
        if self.suspend || event.namespace != self.namespace {
            return false;
        }
        if self.errors_only && event.reason.severity() != Severity::Error {
            return false;
        }
        if !self.reasons.is_empty() && !self.reasons.contains(&event.reason) {
            return false;
        }
        let source = self.sources.iter().any(|s| {
            s.kind == event.kind
                && (s.name == "*" || s.name == event.name)
                && s.match_labels
                    .iter()
                    .all(|(k, v)| event.labels.get(k) == Some(v))
        });
        if !source {
            return false;
        }
        if !self.include.is_empty() && !self.include.iter().any(|r| r.is_match(&event.message)) {
            return false;
        }
        !self.exclude.iter().any(|r| r.is_match(&event.message))
    }
}
