//! Flux's setter markers: a line comment `# {"$imagepolicy": "NS:NAME"}`
//! after a scalar, optionally suffixed `:tag`, `:name` or `:digest`.

use std::fmt;

/// Which part of the policy's latest ref a marker writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Field {
    /// `IMAGE:TAG`, plus `@DIGEST` when the policy reflects one.
    Reference,
    Tag,
    Name,
    Digest,
}

/// A parsed marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    pub namespace: String,
    pub name: String,
    pub field: Field,
}

/// Why a comment meant as a marker is not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MarkerError {
    /// serde_json's message (where the JSON breaks), kept as text so that
    /// markers compare.
    #[error("the marker is not {{\"$imagepolicy\": \"NS:NAME\"}} JSON: {0}")]
    NotJson(String),
    #[error("{0:?} is not NS:NAME, NS:NAME:tag, NS:NAME:name or NS:NAME:digest")]
    Shape(String),
    #[error("{0:?} names no policy")]
    NoPolicy(String),
}

impl Marker {
    /// `ns/name` of the ImagePolicy.
    pub fn policy(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Reads a comment's text (after `#`). `None` when it is not a marker;
    /// `Some(Err)` when it is meant as one but is malformed.
    pub fn parse(comment: &str) -> Option<Result<Marker, MarkerError>> {
        let text = comment.trim();
        if !text.contains("$imagepolicy") {
            return None;
        }
        #[derive(serde::Deserialize)]
        struct Setter {
            #[serde(rename = "$imagepolicy")]
            imagepolicy: String,
        }
        let setter: Setter = match serde_json::from_str(text) {
            Ok(s) => s,
            Err(e) => {
                return Some(Err(MarkerError::NotJson(e.to_string())));
            }
        };
        let parts: Vec<&str> = setter.imagepolicy.split(':').collect();
        let (namespace, name, field) = match parts.as_slice() {
            [ns, name] => (*ns, *name, Field::Reference),
            [ns, name, "tag"] => (*ns, *name, Field::Tag),
            [ns, name, "name"] => (*ns, *name, Field::Name),
            [ns, name, "digest"] => (*ns, *name, Field::Digest),
            _ => {
                return Some(Err(MarkerError::Shape(setter.imagepolicy)));
            }
        };
        if namespace.is_empty() || name.is_empty() {
            return Some(Err(MarkerError::NoPolicy(setter.imagepolicy)));
        }
        Some(Ok(Marker {
            namespace: namespace.to_string(),
            name: name.to_string(),
            field,
        }))
    }
}

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.namespace, self.name)?;
        match self.field {
            Field::Reference => Ok(()),
            Field::Tag => f.write_str(":tag"),
            Field::Name => f.write_str(":name"),
            Field::Digest => f.write_str(":digest"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Marker {
        match Marker::parse(text) {
            Some(Ok(m)) => m,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn reads_flux_markers() {
        let m = ok(r#" {"$imagepolicy": "flux-system:podinfo"}"#);
        assert_eq!(
            (m.policy(), m.field),
            ("flux-system/podinfo".to_string(), Field::Reference)
        );
        assert_eq!(ok(r#"{"$imagepolicy":"a:b:tag"}"#).field, Field::Tag);
        assert_eq!(
            ok(r#"  { "$imagepolicy" : "a:b:name" }  "#).field,
            Field::Name
        );
        assert_eq!(
            ok(r#"{"$imagepolicy": "a:b:digest"}"#).to_string(),
            "a:b:digest"
        );
        assert!(Marker::parse(" just a comment").is_none());
        for bad in [
            r#"{"$imagepolicy": "podinfo"}"#,
            r#"{"$imagepolicy": "a:b:version"}"#,
            r#"{"$imagepolicy": ":b"}"#,
            r#"{"$imagepolicy": 3}"#,
            r#"$imagepolicy: a:b"#,
        ] {
            assert!(matches!(Marker::parse(bad), Some(Err(_))), "{bad}");
        }
    }
}
