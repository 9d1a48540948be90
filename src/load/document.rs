//! One YAML document decoded into a kind's spec, with the fields serde
//! ignored located at their line and column.

use super::*;

/// serde-saphyr's message without the location (we print `file:line:col`
/// first) and without advice about its own options.
pub(super) fn yaml_message(message: &str) -> String {
    let mut text = message.to_string();
    if let Some(at) = text.rfind(" at line ") {
        text.truncate(at);
    }
    for advice in [
        "; set DuplicateKeyPolicy in Options if acceptable",
        " (set ignore_binary_tag_for_string in Options)",
    ] {
        text = text.replace(advice, "");
    }
    // The parser's budgets bound what one file may cost; say which in
    // words, with what to do.
    if let Some(breach) = text.strip_prefix("budget breached: ") {
        return if breach.starts_with("Documents") {
            format!("more YAML documents in one file than hoist reads ({breach}); split the file")
        } else {
            format!(
                "past what hoist reads of one YAML file ({breach}): too large, too deep or too many aliases"
            )
        };
    }
    text.trim().to_string()
}

/// One document being read: where it is and what it is, for messages.
pub(super) struct Document<'a> {
    pub(super) path: &'a Path,
    pub(super) root: &'a Node,
    pub(super) object: String,
}

impl Document<'_> {
    pub(super) fn origin(&self) -> Origin {
        Origin {
            path: self.path.to_path_buf(),
            line: self.root.line,
        }
    }

    /// An error about `field` (a dotted path from the document root).
    pub(super) fn invalid(&self, field: &str, message: impl Into<String>) -> LoadError {
        LoadError::Invalid {
            path: self.path.to_path_buf(),
            line: self.root.line_of(&parse_path(field)),
            object: self.object.clone(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    pub(super) fn warning(&self, field: &str, message: impl Into<String>) -> LoadWarning {
        LoadWarning {
            path: self.path.to_path_buf(),
            line: self.root.line_of(&parse_path(field)),
            object: self.object.clone(),
            message: format!("{field}: {}", message.into()),
        }
    }

    /// Deserializes the subtree at `field` into `T`. Type errors name the
    /// exact field; unknown fields become warnings, since a typo there
    /// would otherwise silently do nothing.
    pub(super) fn typed<T: DeserializeOwned>(
        &self,
        field: &str,
        warnings: &mut Vec<LoadWarning>,
    ) -> Result<T, LoadError> {
        let json = self
            .root
            .get(field)
            .map_or(serde_json::Value::Null, Node::to_json);
        let mut unknown: Vec<Vec<Ignored>> = Vec::new();
        let mut note_unknown = |path: serde_ignored::Path<'_>| unknown.push(ignored_steps(&path));
        let de = serde_ignored::Deserializer::new(json, &mut note_unknown);
        let value: T = serde_path_to_error::deserialize(de).map_err(|e| {
            let inner = e.path().to_string();
            let full = if inner == "." {
                field.to_string()
            } else {
                format!("{field}.{inner}")
            };
            let message = e.into_inner().to_string();
            let message = if message.starts_with("invalid type: floating point")
                || message.starts_with("invalid type: integer")
            {
                format!("{message}; quote the value to keep it text, e.g. '1.10'")
            } else {
                message
            };
            self.invalid(&full, message)
        })?;
        let base = self.root.get(field);
        for steps in unknown {
            let path = base.map_or_else(|| "?".to_string(), |node| resolve_ignored(node, &steps));
            warnings.push(self.warning(
                &format!("{field}.{path}"),
                "unknown field, ignored; check its spelling against `hoist crds`",
            ));
        }
        Ok(value)
    }
}

/// One step of a path serde_ignored reports. An enum's variant name is
/// not in its path; the document has it.
enum Ignored {
    Key(String),
    Index(usize),
    Variant,
}

fn ignored_steps(path: &serde_ignored::Path<'_>) -> Vec<Ignored> {
    use serde_ignored::Path as P;
    let (parent, step) = match path {
        P::Root => return Vec::new(),
        P::Seq { parent, index } => (*parent, Some(Ignored::Index(*index))),
        P::Map { parent, key } => (*parent, Some(Ignored::Key(key.clone()))),
        P::Some { parent } | P::NewtypeStruct { parent } => (*parent, None),
        P::NewtypeVariant { parent } => (*parent, Some(Ignored::Variant)),
    };
    let mut steps = ignored_steps(parent);
    steps.extend(step);
    steps
}

/// The dotted path of an ignored field, with variant names read from the
/// document (`policy.semver.rnage`, not `policy.?.rnage`).
fn resolve_ignored(node: &Node, steps: &[Ignored]) -> String {
    let mut names = Vec::new();
    let mut at = Some(node);
    for step in steps {
        match step {
            Ignored::Key(key) => {
                names.push(key.clone());
                at = at.and_then(|n| n.get(key));
            }
            Ignored::Index(i) => {
                names.push(i.to_string());
                at = at.and_then(|n| match &n.value {
                    node::Value::Seq(items) => items.get(*i),
                    _ => None,
                });
            }
            Ignored::Variant => {
                let variant = at.and_then(|n| n.keys().first().map(|k| k.to_string()));
                names.push(variant.clone().unwrap_or_else(|| "?".to_string()));
                at = at.and_then(|n| variant.and_then(|v| n.get(&v)));
            }
        }
    }
    names.join(".")
}

/// Splits `spec.items[2].name` or `spec.items.2.name` into steps.
pub(super) fn parse_path(field: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for part in field.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse().ok()),
            None => (part, None),
        };
        if !name.is_empty() {
            match name.parse::<usize>() {
                Ok(i) => steps.push(Step::Index(i)),
                Err(_) => steps.push(Step::Key(name.to_string())),
            }
        }
        if let Some(i) = index {
            steps.push(Step::Index(i));
        }
    }
    steps
}
