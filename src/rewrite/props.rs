//! Property tests over generated YAML: only marked scalars change, the
//! output parses exactly when the input did, every new value reads back as
//! the string that was written, and a second run changes nothing.

use proptest::prelude::*;

use super::scalar::plain_is_safe;
use super::text::{Refs, rewrite};
use crate::api::ImageRef;

/// One generated line: `indent key: value # comment`, or a list item.
#[derive(Clone, Debug)]
struct Line {
    depth: usize,
    list_item: bool,
    key: String,
    value: String,
    style: u8,
    comment: Option<String>,
}

fn value() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "ghcr.io/acme/app:1.0.0",
        "nginx",
        "1.9",
        "v1",
        "latest",
        "x",
        "a b",
        "sha256:00ff",
    ])
    .prop_map(str::to_string)
}

fn comment() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => Just(None),
        1 => Just(Some(" plain comment".to_string())),
        4 => (0usize..3, prop::sample::select(vec!["", ":tag", ":name", ":digest"]), prop::bool::ANY)
            .prop_map(|(p, field, spaced)| Some(if spaced {
                format!(" {{\"$imagepolicy\": \"ns:p{p}{field}\"}}")
            } else {
                format!("{{\"$imagepolicy\":\"ns:p{p}{field}\"}}")
            })),
    ]
}

fn line() -> impl Strategy<Value = Line> {
    (
        0usize..3,
        prop::bool::ANY,
        "[a-z]{1,6}",
        value(),
        0u8..3,
        comment(),
    )
        .prop_map(|(depth, list_item, key, value, style, comment)| Line {
            depth,
            list_item,
            key,
            value,
            style,
            comment,
        })
}

/// Renders lines into YAML that parses: each line's depth is at most one
/// more than the previous line's, and a parent line gets no value.
fn render(lines: &[Line], crlf: bool, bom: bool, final_newline: bool) -> (String, Vec<bool>) {
    let mut text = String::new();
    let mut marked = Vec::new();
    let mut depth = 0;
    for (i, l) in lines.iter().enumerate() {
        let d = l.depth.min(depth);
        let opens = lines.get(i + 1).is_some_and(|n| n.depth > d) && !l.list_item;
        let indent = "  ".repeat(d);
        let quoted = match l.style {
            0 => l.value.clone(),
            1 => format!("'{}'", l.value),
            _ => format!("\"{}\"", l.value),
        };
        let is_marker = l
            .comment
            .as_deref()
            .is_some_and(|c| c.contains("$imagepolicy"));
        let newline = if crlf { "\r\n" } else { "\n" };
        let scalar = if l.value.contains(' ') && l.style == 0 {
            format!("'{}'", l.value)
        } else {
            quoted
        };
        let comment = l
            .comment
            .as_ref()
            .map(|c| format!(" #{c}"))
            .unwrap_or_default();
        if l.list_item {
            // A one-item list under its own key.
            text.push_str(&format!(
                "{indent}{}{}:{newline}{indent}  - {scalar}{comment}",
                l.key, i
            ));
            marked.push(false);
            marked.push(is_marker);
        } else if opens {
            text.push_str(&format!("{indent}{}{}:{comment}", l.key, i));
            marked.push(false);
        } else {
            text.push_str(&format!("{indent}{}{}: {scalar}{comment}", l.key, i));
            marked.push(is_marker);
        }
        text.push_str(newline);
        depth = if opens { d + 1 } else { d };
    }
    if !final_newline {
        while text.ends_with('\n') || text.ends_with('\r') {
            text.pop();
        }
    }
    if bom {
        text.insert(0, '\u{feff}');
    }
    (text, marked)
}

fn refs() -> impl Strategy<Value = Refs> {
    let tag = prop::sample::select(vec![
        "1.10", "2.0.0", "true", "on", "1e3", "it's", "a\"b", "x: y", "v9", "null",
    ]);
    let digest = prop::option::of(Just("sha256:0123456789abcdef".to_string()));
    (
        tag,
        digest,
        prop::sample::select(vec!["ghcr.io/acme/app", "localhost:5000/a/b", "nginx"]),
    )
        .prop_map(|(tag, digest, name)| {
            let mut refs = Refs::new();
            refs.insert(
                "ns/p0".into(),
                ImageRef {
                    name: name.into(),
                    tag: tag.into(),
                    digest: digest.clone(),
                },
            );
            refs.insert(
                "ns/p1".into(),
                ImageRef {
                    name: "ghcr.io/acme/other".into(),
                    tag: "3.1".into(),
                    digest: None,
                },
            );
            refs
        })
}

fn parses(text: &str) -> bool {
    granit_parser::Parser::new_from_str(text).all(|e| e.is_ok())
}

/// (line, value, style) of every scalar in a text that parses.
fn scalars(text: &str) -> Vec<(usize, String, granit_parser::ScalarStyle)> {
    granit_parser::Parser::new_from_str(text)
        .filter_map(Result::ok)
        .filter_map(|(event, span)| match event {
            granit_parser::Event::Scalar(v, style, ..) => {
                Some((span.start.line(), v.into_owned(), style))
            }
            _ => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn only_marked_values_change_and_a_second_run_is_a_no_op(
        lines in prop::collection::vec(line(), 1..25),
        crlf in prop::bool::ANY,
        bom in prop::bool::ANY,
        final_newline in prop::bool::ANY,
        refs in refs(),
    ) {
        let (text, marked) = render(&lines, crlf, bom, final_newline);
        let result = rewrite(&text, &refs);
        let Some(output) = result.text.clone() else {
            // Nothing changed: then no edit was reported either.
            prop_assert!(result.edits.is_empty());
            return Ok(());
        };
        prop_assert_eq!(parses(&text), parses(&output));
        let before: Vec<&str> = text.split('\n').collect();
        let after: Vec<&str> = output.split('\n').collect();
        prop_assert_eq!(before.len(), after.len());
        for (i, (b, a)) in before.iter().zip(&after).enumerate() {
            if b != a {
                prop_assert!(marked.get(i).copied().unwrap_or(false), "unmarked line {} changed:\n{}\n{}", i + 1, b, a);
                // The comment after the value is untouched.
                let comment = |s: &str| s.rfind(" #").map(|at| s[at..].to_string());
                prop_assert_eq!(comment(b), comment(a));
            }
        }
        // Every edit reads back as the string written, typed as a string.
        let read_back = scalars(&output);
        for edit in &result.edits {
            let found = read_back.iter().find(|(line, value, _)| *line == edit.line && *value == edit.new);
            prop_assert!(found.is_some(), "line {}: {:?} not read back from\n{}", edit.line, edit.new, output);
            if let Some((_, value, granit_parser::ScalarStyle::Plain)) = found {
                prop_assert!(plain_is_safe(value), "{value:?} written plain");
            }
        }
        let again = rewrite(&output, &refs);
        prop_assert!(again.text.is_none(), "second run changed:\n{}", output);
        prop_assert!(again.edits.is_empty());
    }
}

/// The generator must produce files that change, or the property above
/// proves little.
#[test]
fn the_generator_exercises_edits() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = (prop::collection::vec(line(), 1..25), refs());
    let mut changed = 0;
    for _ in 0..200 {
        let Ok(tree) = strategy.new_tree(&mut runner) else {
            continue;
        };
        let (lines, refs) = tree.current();
        let (text, _) = render(&lines, false, false, true);
        if !rewrite(&text, &refs).edits.is_empty() {
            changed += 1;
        }
    }
    assert!(
        changed > 100,
        "only {changed} of 200 generated files had edits"
    );
}
