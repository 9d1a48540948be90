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
