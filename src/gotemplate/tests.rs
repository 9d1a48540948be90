use super::*;

fn render(template: &str) -> Result<String, TemplateError> {
    let data = flux_data("flux-system", "auto", &[], &BTreeMap::new());
    Template::parse(template)?.render(&data, 4096)
}

/// The error a template fails with; a test failure when it renders.
fn failure(template: &str) -> String {
    match render(template) {
        Ok(text) => panic!("{template:?} rendered {text:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn an_unknown_function_or_an_unsupported_action_fails_at_parse() {
    let unknown = failure("{{ now }}");
    assert!(
        unknown.contains("function \"now\" not defined"),
        "{unknown}"
    );
    let define = failure("{{ define \"x\" }}{{ end }}");
    assert!(define.contains("{{define}} is not supported"), "{define}");
}

#[test]
fn output_steps_and_nesting_are_bounded() {
    let long = failure("{{ repeat 5000 \"x\" }}");
    assert!(long.contains("longer than 4 KiB"), "{long}");
    let text = failure(&"x".repeat(5000));
    assert!(text.contains("longer than 4 KiB"), "{text}");
    let steps = failure("{{ range 100000 }}{{ range 100 }}{{ end }}{{ end }}");
    assert!(steps.contains("steps"), "{steps}");
    for bomb in [
        "{{ $x := \"xx\" }}{{ range 64 }}{{ $x = print $x $x }}{{ end }}",
        "{{ replace \"a\" (repeat 4000 \"b\") (repeat 4000 \"a\") }}",
        "{{ indent 4000 (repeat 4000 \"\\n\") }}",
        "{{ regexReplaceAll \"a\" (repeat 4000 \"a\") \"$0$0$0$0\" }}",
    ] {
        let error = failure(bomb);
        assert!(error.contains("longer than 4 KiB"), "{bomb}: {error}");
    }
    let huge = failure("{{ range 1000000000000 }}{{ end }}");
    assert!(huge.contains("steps"), "{huge}");
    let data = flux_data("flux-system", "auto", &[], &BTreeMap::new());
    let uniq = Template::parse("{{ uniq (splitList \"\" (repeat 20000 \"a\")) }}")
        .and_then(|t| t.render(&data, 1 << 20));
    assert!(
        uniq.as_ref()
            .is_err_and(|e| e.0.contains("uniq of more than")),
        "{uniq:?}"
    );
    let deep = format!(
        "{}x{}",
        "{{ if true }}".repeat(200),
        "{{ end }}".repeat(200)
    );
    let nested = failure(&deep);
    assert!(nested.contains("nested deeper"), "{nested}");
}

#[test]
fn errors_name_the_line() {
    let error = failure("a\nb\n{{ .Nope }}");
    assert!(error.contains("can't evaluate field Nope"), "{error}");
    let parse = failure("a\n\n{{ if }}");
    assert!(parse.starts_with("line 3:"), "{parse}");
}

/// Templates made of random pieces of the language never panic, and every
/// render stays within its limit: a template comes from a repository.
#[test]
fn random_templates_fail_or_render_within_bounds_and_never_panic() {
    const PIECES: &[&str] = &[
        "{{",
        "}}",
        "{{- ",
        " -}}",
        "{{/*",
        "*/}}",
        " ",
        "\n",
        ".",
        ".Changed",
        ".Changes",
        ".Values",
        ".AutomationObject",
        ".Name",
        "$",
        "$x",
        ":=",
        "=",
        ",",
        "|",
        "(",
        ")",
        "range",
        "if",
        "else",
        "end",
        "with",
        "break",
        "continue",
        "\"s\"",
        "`r`",
        "'c'",
        "1",
        "-2",
        "3.5",
        "0x1f",
        "1e9",
        "nil",
        "true",
        "printf",
        "\"%v %d %s\"",
        "print",
        "len",
        "index",
        "slice",
        "repeat",
        "99999",
        "regexReplaceAll",
        "\"(a*)*\"",
        "indent",
        "list",
        "dict",
        "and",
        "or",
        "eq",
        "é",
        "\\",
        "\"\\u00e9\"",
        "\"unterminated",
    ];
    let changes: Vec<FluxChange> = (0..3)
        .map(|i| FluxChange {
            file: format!("f{i}.yaml"),
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: format!("app{i}"),
            namespace: "prod".into(),
            old: "1.0.0".into(),
            new: format!("1.{i}.0"),
            setter: "ns:app:tag".into(),
        })
        .collect();
    let data = flux_data("ns", "auto", &changes, &BTreeMap::new());
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut rendered, mut failed) = (0, 0);
    for _ in 0..20_000 {
        let length = 1 + next() % 24;
        let template: String = (0..length)
            .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
            .collect();
        match Template::parse(&template).and_then(|t| t.render(&data, 8192)) {
            Ok(text) => {
                assert!(text.len() <= 8192, "{template:?}");
                rendered += 1;
            }
            Err(_) => failed += 1,
        }
    }
    assert!(
        rendered > 100 && failed > 100,
        "{rendered} rendered, {failed} failed"
    );
}
