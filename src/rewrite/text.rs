//! Rewriting one file's text: parse for byte spans, find the scalars that
//! carry a marker comment on their line, and splice new values into exactly
//! those spans. Pure: text in, text and changes out.

use std::collections::BTreeMap;

use granit_parser::{Event, Parser, ScalarStyle};

use super::marker::{Field, Marker};
use super::scalar::{Style, plain_is_safe, render};
use crate::api::ImageRef;
use crate::model::{Change, ObjectRef};

/// The latest refs to write, by policy `ns/name`.
pub type Refs = BTreeMap<String, ImageRef>;

/// Something to report about a file: a warning (the file is still
/// rewritten) or an error for one marker or the whole file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub error: bool,
    pub message: String,
}

/// What rewriting one file's text produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rewritten {
    /// The new text, when anything changed.
    pub text: Option<String>,
    /// The changes, with `file` left empty: the caller knows the file.
    pub edits: Vec<Change>,
    pub problems: Vec<Problem>,
    /// The file does not parse; nothing in it was changed.
    pub unparsable: bool,
}

struct Scalar {
    start: usize,
    end: usize,
    line: usize,
    end_line: usize,
    column: usize,
    style: ScalarStyle,
    value: String,
    is_key: bool,
    /// Tagged as something other than a string (`!!int`, `!custom`).
    foreign_tag: bool,
    document: usize,
}

struct Comment {
    start: usize,
    line: usize,
    column: usize,
    text: String,
}

enum Frame {
    Mapping {
        /// The key under which this mapping sits in its parent mapping.
        via: Option<String>,
        key: Option<String>,
        expecting_key: bool,
    },
    Sequence,
}

/// Rewrites the markers in `text` with `refs`. A text without
/// `$imagepolicy` is not parsed at all.
pub fn rewrite(text: &str, refs: &Refs) -> Rewritten {
    if !text.contains("$imagepolicy") {
        return Rewritten::default();
    }
    let mut scalars = Vec::new();
    let mut comments = Vec::new();
    let mut objects: Vec<ObjectRef> = Vec::new();
    let mut frames: Vec<Frame> = Vec::new();
    for event in Parser::new_from_str(text) {
        let (event, span) = match event {
            Ok(e) => e,
            Err(e) => {
                let marker = e.marker();
                return Rewritten {
                    problems: vec![Problem {
                        line: marker.line(),
                        column: marker.col() + 1,
                        error: true,
                        message: format!("not valid YAML, file left unchanged: {}", e.info()),
                    }],
                    unparsable: true,
                    ..Rewritten::default()
                };
            }
        };
        let (Some(start), Some(end)) = (span.start.byte_offset(), span.end.byte_offset()) else {
            continue;
        };
        match event {
            Event::DocumentStart(..) => {
                objects.push(ObjectRef::default());
                frames.clear();
            }
            Event::MappingStart(..) => {
                let via = node_key(&frames);
                frames.push(Frame::Mapping {
                    via,
                    key: None,
                    expecting_key: true,
                });
            }
            Event::SequenceStart(..) => frames.push(Frame::Sequence),
            Event::MappingEnd | Event::SequenceEnd => {
                frames.pop();
                node_done(&mut frames);
            }
            Event::Alias(..) if !take_key(&mut frames, None) => node_done(&mut frames),
            Event::Scalar(value, style, _, tag) => {
                let foreign_tag = tag
                    .as_ref()
                    .is_some_and(|t| !string_tag(t.handle(), t.suffix()));
                let is_key = take_key(&mut frames, Some(value.to_string()));
                if !is_key {
                    if let Some(object) = objects.last_mut() {
                        record_identity(&frames, &value, object);
                    }
                    node_done(&mut frames);
                }
                scalars.push(Scalar {
                    start,
                    end,
                    line: span.start.line(),
                    end_line: span.end.line(),
                    column: span.start.col() + 1,
                    style,
                    value: value.into_owned(),
                    is_key,
                    foreign_tag,
                    document: objects.len().saturating_sub(1),
                });
            }
            Event::Comment(body, _) if body.contains("$imagepolicy") => comments.push(Comment {
                start,
                line: span.start.line(),
                column: span.start.col() + 1,
                text: body.into_owned(),
            }),
            _ => {}
        }
    }
    let mut out = Rewritten::default();
    // Markers written inside block scalars are text, not comments.
    for s in scalars
        .iter()
        .filter(|s| matches!(s.style, ScalarStyle::Literal | ScalarStyle::Folded))
    {
        if s.value.contains("$imagepolicy") {
            out.problems.push(Problem {
                line: s.line,
                column: s.column,
                error: false,
                message:
                    "a marker inside a block scalar (| or >) is text, not a marker; not rewritten"
                        .to_string(),
            });
        }
    }
    let mut splices: Vec<(usize, usize, String)> = Vec::new();
    for comment in &comments {
        let marker = match Marker::parse(&comment.text) {
            None => continue,
            Some(Err(e)) => {
                out.problems.push(Problem {
                    line: comment.line,
                    column: comment.column,
                    error: false,
                    message: format!("{e}; not rewritten"),
                });
                continue;
            }
            Some(Ok(m)) => m,
        };
        let warn = |message: String| Problem {
            line: comment.line,
            column: comment.column,
            error: false,
            message,
        };
        // The scalar the marker belongs to ends on the comment's line, with
        // only blanks between them.
        let index = scalars.partition_point(|s| s.end <= comment.start);
        let Some(scalar) = index.checked_sub(1).map(|i| &scalars[i]).filter(|s| {
            s.end_line == comment.line
                && text[s.end..comment.start]
                    .chars()
                    .all(|c| c == ' ' || c == '\t')
        }) else {
            out.problems.push(warn(format!(
                "marker {marker} follows no scalar value on its line; not rewritten"
            )));
            continue;
        };
        let style = match scalar.style {
            ScalarStyle::Plain => Style::Plain,
            ScalarStyle::SingleQuoted => Style::SingleQuoted,
            ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
            _ => {
                out.problems.push(warn(format!(
                    "marker {marker} is on a block scalar; not rewritten"
                )));
                continue;
            }
        };
        if scalar.is_key {
            out.problems.push(warn(format!(
                "marker {marker} is on a mapping key, not a value; not rewritten"
            )));
            continue;
        }
        if scalar.foreign_tag {
            out.problems.push(warn(format!(
                "marker {marker} is on a value tagged as something other than a string; not rewritten"
            )));
            continue;
        }
        if scalar.start == scalar.end {
            out.problems.push(warn(format!(
                "marker {marker} is on an empty value; write a placeholder image there first"
            )));
            continue;
        }
        let Some(latest) = refs.get(&marker.policy()) else {
            tracing::debug!(marker = %marker, "no latest ref for this policy; left alone");
            continue;
        };
        let new = match value_for(&marker, latest) {
            Ok(v) => v,
            Err(e) => {
                out.problems.push(Problem {
                    line: comment.line,
                    column: comment.column,
                    error: true,
                    message: e.to_string(),
                });
                continue;
            }
        };
        // Already right, unless it is written plain and reads as a number
        // or boolean (a hand-written `tag: 1.10`): then it gets its quotes.
        let misread = style == Style::Plain && !plain_is_safe(&new);
        if new == scalar.value && !misread {
            continue;
        }
        splices.push((scalar.start, scalar.end, render(&new, style)));
        out.edits.push(Change {
            file: std::path::PathBuf::new(),
            line: scalar.line,
            object: objects.get(scalar.document).cloned().unwrap_or_default(),
            marker: marker.to_string(),
            policy: marker.policy(),
            image: latest.name.clone(),
            old: scalar.value.clone(),
            new,
        });
    }
    unpinned_tags(&comments, refs, &mut out.problems);
    if !splices.is_empty() {
        splices.sort_by_key(|s| s.0);
        let mut result = String::with_capacity(text.len() + 64);
        let mut at = 0;
        for (start, end, replacement) in splices {
            result.push_str(&text[at..start]);
            result.push_str(&replacement);
            at = end;
        }
        result.push_str(&text[at..]);
        out.text = Some(result);
    }
    out
}

/// A `:tag` marker whose policy resolved a digest (its gate verified
/// that digest, or it reflects digests), in a file where no marker of
/// that policy writes the digest: the cluster resolves the tag again when
/// it pulls, and may get another image than the one hoist judged. A
/// warning, since a chart's `version` field has no digest to write.
fn unpinned_tags(comments: &[Comment], refs: &Refs, problems: &mut Vec<Problem>) {
    let markers: Vec<(Marker, &Comment)> = comments
        .iter()
        .filter_map(|c| Marker::parse(&c.text)?.ok().map(|m| (m, c)))
        .collect();
    let pins = |policy: &str| {
        markers.iter().any(|(m, _)| {
            m.policy() == policy && matches!(m.field, Field::Digest | Field::Reference)
        })
    };
    for (marker, comment) in &markers {
        if marker.field != Field::Tag {
            continue;
        }
        let policy = marker.policy();
        let Some(digest) = refs.get(&policy).and_then(|r| r.digest.as_deref()) else {
            continue;
        };
        if !pins(&policy) {
            problems.push(Problem {
                line: comment.line,
                column: comment.column,
                error: false,
                message: format!(
                    "marker {marker} writes the tag without its digest {digest}, which ImagePolicy {policy} resolved; the cluster resolves the tag again when it pulls, so pin it with a :digest marker (or the full marker) beside this one"
                ),
            });
        }
    }
}

/// `!!str` or the non-specific `!`: tags under which a new string value
/// keeps its meaning.
fn string_tag(handle: &str, suffix: &str) -> bool {
    (handle == "tag:yaml.org,2002:" && suffix == "str") || (handle == "!" && suffix.is_empty())
}

/// A marker asks for a part its policy's latest ref does not have.
#[derive(Debug, thiserror::Error)]
#[error("marker {marker}: the latest ref of {} has no {part}; not rewritten", marker.policy())]
struct Missing {
    marker: Marker,
    /// `tag` or `digest`.
    part: &'static str,
}

/// The value a marker writes for a policy's latest ref.
fn value_for(marker: &Marker, latest: &ImageRef) -> Result<String, Missing> {
    let missing = |part| Missing {
        marker: marker.clone(),
        part,
    };
    match marker.field {
        Field::Name => Ok(latest.name.clone()),
        Field::Tag if latest.tag.is_empty() => Err(missing("tag")),
        Field::Tag => Ok(latest.tag.clone()),
        Field::Digest => latest.digest.clone().ok_or_else(|| missing("digest")),
        Field::Reference => {
            let mut value = latest.name.clone();
            if !latest.tag.is_empty() {
                value.push(':');
                value.push_str(&latest.tag);
            }
            if let Some(digest) = &latest.digest {
                value.push('@');
                value.push_str(digest);
            }
            Ok(value)
        }
    }
}

/// Called when a node starts: the key it sits under, if its parent is a
/// mapping.
fn node_key(frames: &[Frame]) -> Option<String> {
    match frames.last() {
        Some(Frame::Mapping {
            key,
            expecting_key: false,
            ..
        }) => key.clone(),
        _ => None,
    }
}

/// Treats a scalar (or alias) as a key when its mapping expects one.
fn take_key(frames: &mut [Frame], value: Option<String>) -> bool {
    if let Some(Frame::Mapping {
        key, expecting_key, ..
    }) = frames.last_mut()
        && *expecting_key
    {
        *key = value;
        *expecting_key = false;
        return true;
    }
    false
}

/// Called when a node ends in its parent: in a mapping, a key is followed
/// by its value and a value by the next key. A collection can be a key
/// (`? [a, b]`), so this flips rather than assumes.
fn node_done(frames: &mut [Frame]) {
    if let Some(Frame::Mapping {
        expecting_key, key, ..
    }) = frames.last_mut()
    {
        if *expecting_key {
            *key = None;
        }
        *expecting_key = !*expecting_key;
    }
}

/// `apiVersion`, `kind`, `metadata.name` and `metadata.namespace` of the
/// document.
fn record_identity(frames: &[Frame], value: &str, object: &mut ObjectRef) {
    let key_of = |f: &Frame| match f {
        Frame::Mapping { key, .. } => key.clone(),
        Frame::Sequence => None,
    };
    match frames {
        [root] => match key_of(root).as_deref() {
            Some("kind") => object.kind = Some(value.to_string()),
            Some("apiVersion") => object.api_version = Some(value.to_string()),
            _ => {}
        },
        [
            _,
            Frame::Mapping {
                via: Some(via),
                key: Some(key),
                ..
            },
        ] if via == "metadata" => match key.as_str() {
            "name" => object.name = Some(value.to_string()),
            "namespace" => object.namespace = Some(value.to_string()),
            _ => {}
        },
        _ => {}
    }
}

#[cfg(test)]
mod pinning {
    use super::*;

    fn refs(digest: Option<&str>) -> Refs {
        Refs::from([(
            "apps/app".to_string(),
            ImageRef {
                name: "ghcr.io/acme/app".into(),
                tag: "1.2.0".into(),
                digest: digest.map(str::to_string),
            },
        )])
    }

    #[test]
    fn a_tag_written_without_the_digest_its_policy_resolved_is_warned_about() {
        let tag_only = "image:\n  tag: 1.0.0 # {\"$imagepolicy\": \"apps:app:tag\"}\n";
        let pinned = "image:\n  tag: 1.0.0 # {\"$imagepolicy\": \"apps:app:tag\"}\n  digest: x # {\"$imagepolicy\": \"apps:app:digest\"}\n";
        let digest = "sha256:".to_string() + &"a".repeat(64);
        let warned = rewrite(tag_only, &refs(Some(&digest)));
        assert_eq!(
            warned.text.as_deref(),
            Some("image:\n  tag: 1.2.0 # {\"$imagepolicy\": \"apps:app:tag\"}\n")
        );
        assert_eq!(warned.problems.len(), 1, "{:?}", warned.problems);
        assert!(!warned.problems[0].error);
        assert!(
            warned.problems[0].message.contains("without its digest"),
            "{:?}",
            warned.problems
        );
        assert!(rewrite(pinned, &refs(Some(&digest))).problems.is_empty());
        assert!(rewrite(tag_only, &refs(None)).problems.is_empty());
    }
}
