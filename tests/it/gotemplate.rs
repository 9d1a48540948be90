//! Differential test: hoist's Go template renderer against Go's own
//! text/template with sprig v3.3.0's hermetic functions, over Flux's
//! template data (tests/gotemplate, built from the Go module proxy).
//! Every template renders byte for byte as Go renders it, or both fail.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use hoist::gotemplate::{FluxChange, Template, flux_data};

/// Flux's two documented examples, its default-adjacent forms, and the
/// language and functions they build on.
const TEMPLATES: &[&str] = &[
    "Automated image update\n\nAutomation name: {{ .AutomationObject }}\n\nFiles:\n{{ range $filename, $_ := .Changed.FileChanges -}}\n- {{ $filename }}\n{{ end -}}\n\nObjects:\n{{ range $resource, $changes := .Changed.Objects -}}\n- {{ $resource.Kind }} {{ $resource.Name }}\n  Changes:\n{{- range $_, $change := $changes }}\n    - {{ $change.OldValue }} -> {{ $change.NewValue }}\n{{ end -}}\n{{ end -}}\n",
    "Automated image update\n\nAutomation name: {{ .AutomationObject }}\n\nFiles:\n{{ range $filename, $_ := .Changed.FileChanges -}}\n- {{ $filename }}\n{{ end -}}\n\nObjects:\n{{ range $resource, $changes := .Changed.Objects -}}\n- {{ $resource.Kind | lower }} {{ $resource.Name | lower }}\n  Changes:\n{{- range $_, $change := $changes }}\n  {{ if contains \"5.0.3\" $change.NewValue -}}\n    - {{ $change.OldValue }} -> {{ $change.NewValue }}\n  {{ else -}}\n    [skip ci] wrong image\n  {{ end -}}\n{{ end -}}\n{{ end -}}\n",
    "{{range .Changed.Changes}}{{print .OldValue}} -> {{println .NewValue}}{{end}}",
    "Automated image update by Flux for cluster {{ .Values.cluster }}.",
    "[ci skip] {{ .AutomationObject.Namespace }}/{{ .AutomationObject.Name }}: {{ len .Changed.Changes }} change(s)",
    "{{ .Values }} [{{ .Values.missing }}] {{ index .Values \"region\" }}|{{ index .Values \"nope\" }}|",
    "{{ .Changed.Changes }}\n{{ printf \"%v\" .Changed.Changes }}",
    "{{ range $r, $c := .Changed.Objects }}[{{ $r }}] {{ $r.APIVersion }} {{ $r.Namespace }}{{ end }}",
    "{{ . }}",
    "{{- /* a comment */ -}}\n  Update {{ with .Values.cluster }}cluster {{ . }}{{ else }}everywhere{{ end }}  \n",
    "{{ $n := 0 }}{{ range .Changed.Changes }}{{ $n = add $n 1 }}{{ end }}{{ $n }} changes",
    "{{ range $i, $c := .Changed.Changes }}{{ if $i }}, {{ end }}{{ $i }}:{{ $c.NewValue }}{{ end }}",
    "{{ range .Changed.Changes }}{{ if hasSuffix \"1.2.0\" .NewValue }}{{ break }}{{ end }}{{ .NewValue }};{{ end }}",
    "{{ range .Changed.Changes }}{{ if eq .Setter \"flux-system:web\" }}{{ continue }}{{ end }}{{ .Setter }};{{ end }}",
    "{{ range .Values.none }}x{{ else }}no values{{ end }}",
    "{{ if and .Values.cluster (not .Values.missing) }}a{{ else if .Values.region }}b{{ else }}c{{ end }}",
    "{{ or .Values.missing \"fallback\" }} {{ and 1 0 }} {{ or 0 \"\" }}",
    "{{ printf \"%s=%q %d %5d|%-5d|%05d %t %x %X %.2f %v %%\" \"a\" \"b\\n\" 42 7 7 -7 true 255 \"hi\" 3.14159 nil }}",
    "{{ printf \"%d\" \"x\" }} {{ printf \"%s\" }} {{ printf \"a\" 1 }}",
    "{{ print 1 2 \"a\" \"b\" 3 }}|{{ println \"x\" 1 }}|{{ print nil }}",
    "{{ upper \"abc\" }} {{ title \"hello wide-world\" }} {{ untitle \"Hello World\" }} {{ trim \"  x  \" }} {{ trimPrefix \"v\" \"v1.2\" }} {{ trimSuffix \"-rc\" \"1.0-rc\" }} {{ trimAll \"$\" \"$5$\" }}",
    "{{ trunc 3 \"abcdef\" }} {{ trunc -2 \"abcdef\" }} {{ abbrev 5 \"hello world\" }} {{ replace \"a\" \"o\" \"banana\" }} {{ repeat 3 \"ab\" }} {{ substr 1 3 \"abcdef\" }} {{ nospace \"a b  c\" }}",
    "{{ quote \"a\" 1 }} {{ squote \"b\" }} {{ cat \"a\" 1 nil \"b\" }} {{ \"x\\ny\" | indent 2 }}{{ \"z\" | nindent 4 }}",
    "{{ join \", \" (list \"a\" \"b\" 3) }} {{ splitList \"/\" \"ghcr.io/acme/app\" }} {{ first (list 1 2) }} {{ last (list 1 2) }} {{ rest (list 1 2 3) }} {{ initial (list 1 2 3) }}",
    "{{ uniq (list 1 1 2) }} {{ sortAlpha (list \"b\" \"a\") }} {{ has 2 (list 1 2) }} {{ dict \"b\" 1 \"a\" 2 }} {{ get (dict \"k\" \"v\") \"k\" }} {{ hasKey (dict \"k\" 1) \"x\" }} {{ keys (dict \"b\" 1 \"a\" 2) | sortAlpha }}",
    "{{ default \"none\" .Values.missing }} {{ default \"none\" .Values.cluster }} {{ empty \"\" }} {{ empty 0 }} {{ coalesce \"\" 0 \"z\" }} {{ ternary \"yes\" \"no\" true }}",
    "{{ add 1 2 3 }} {{ add1 4 }} {{ sub 5 7 }} {{ mul 2 3 }} {{ div 7 2 }} {{ mod 7 3 }} {{ max 1 9 4 }} {{ min 3 1 }} {{ add \"2\" 1.9 }}",
    "{{ regexMatch \"^1\\\\.\" \"1.2\" }} {{ regexFind \"[0-9]+\" \"v12.3\" }} {{ regexFindAll \"[0-9]+\" \"1.22.333\" 2 }} {{ regexReplaceAll \"(\\\\d+)\\\\.(\\\\d+)\" \"1.2 and 3.4\" \"$2.$1\" }} {{ regexReplaceAllLiteral \"\\\\d\" \"a1\" \"$1\" }} {{ regexSplit \"\\\\.\" \"1.2.3\" -1 }}",
    "{{ b64enc \"hoist\" }} {{ b64dec \"aG9pc3Q=\" }} {{ sha256sum \"x\" }} {{ toString 12 }} {{ html \"<a href='x'>&</a>\" }} {{ urlquery \"a b&c\" }}",
    "{{ len \"héllo\" }} {{ len .Values }} {{ slice (list 1 2 3 4) 1 3 }} {{ index (list 5 6 7) 2 }} {{ eq 1 2 1 }} {{ ne \"a\" \"b\" }} {{ lt 1 2 }} {{ ge 2.5 2.5 }}",
    "{{ 0x1F }} {{ 1e3 }} {{ -2 }} {{ 'a' }} {{ 1_000 }} {{ 010 }} {{ 1.5 }} {{ `raw\\n` }} {{ \"\\u00e9\\t|\" }}",
    "{{ $x := \"outer\" }}{{ if true }}{{ $x := \"inner\" }}{{ $x }}{{ end }} {{ $x }} {{ $ | printf \"%T\" | len | gt 0 }}",
    "{{ with $v := .Values.region }}{{ $v }}{{ end }} {{ with .Values.missing }}x{{ else with .Values.cluster }}{{ . }}{{ end }}",
    "{{ range 3 }}{{ . }}{{ end }}",
    "line one\n{{- \" trimmed left\" }}\n{{ \"trimmed right \" -}}\n   line two",
    // Errors, in Go and hoist alike.
    "{{ .Updated }}",
    "{{ range .Changed.Changes }}{{ .Missing }}{{ end }}",
    "{{ now }}",
    "{{ if }}x{{ end }}",
    "{{ range .Changed.Changes }}",
    "{{ end }}",
    "{{ .Values.cluster | lower | upper | missingfunc }}",
    "{{ lower 1 }}",
    "{{ $undefined }}",
    "{{ .Values.missing | upper }}",
    "{{ \"x\" 1 }}",
    "{{ index .Changed.Changes 9 }}",
    "{{ div 1 0 }}",
    "{{ eq .Values \"x\" }}",
    "{{ ternary 1 2 \"no\" }}",
    "{{ break }}",
    "{{ slice \"abcdef\" 1 3 }}",
];

struct Data {
    automation: (&'static str, &'static str),
    changes: Vec<FluxChange>,
    values: Option<BTreeMap<String, String>>,
}

fn change(file: &str, object: [&str; 4], old: &str, new: &str, setter: &str) -> FluxChange {
    let [api_version, kind, name, namespace] = object.map(str::to_string);
    FluxChange {
        file: file.to_string(),
        api_version,
        kind,
        name,
        namespace,
        old: old.to_string(),
        new: new.to_string(),
        setter: setter.to_string(),
    }
}

/// Datasets: one change; several files and objects, with a change that
/// two files share (Changes lists it once) and an object without a name.
fn datasets() -> Vec<Data> {
    let web = ["apps/v1", "Deployment", "web", "prod"];
    let api = ["apps/v1", "Deployment", "api", "prod"];
    let kustomization = ["kustomize.config.k8s.io/v1beta1", "Kustomization", "", ""];
    vec![
        Data {
            automation: ("flux-system", "podinfo"),
            changes: vec![change(
                "deployment.yaml",
                ["apps/v1", "Deployment", "podinfo", "default"],
                "ghcr.io/stefanprodan/podinfo:5.0.0",
                "ghcr.io/stefanprodan/podinfo:5.0.3",
                "flux-system:podinfo",
            )],
            values: None,
        },
        Data {
            automation: ("flux-system", "auto"),
            changes: vec![
                change(
                    "web/deploy.yaml",
                    web,
                    "ghcr.io/acme/web:1.0.0",
                    "ghcr.io/acme/web:1.1.0",
                    "flux-system:web",
                ),
                change(
                    "web/deploy.yaml",
                    api,
                    "1.0.0",
                    "1.2.0",
                    "flux-system:api:tag",
                ),
                change(
                    "web/deploy.yaml",
                    api,
                    "sha256:aaa",
                    "sha256:bbb",
                    "flux-system:api:digest",
                ),
                change(
                    "kustomization.yaml",
                    kustomization,
                    "1.0.0",
                    "1.2.0",
                    "flux-system:api:tag",
                ),
            ],
            values: Some(BTreeMap::from([
                ("cluster".to_string(), "prod".to_string()),
                ("region".to_string(), "eu".to_string()),
            ])),
        },
    ]
}

/// A file's objects, each with its changes, as the oracle reads them.
type Objects = Vec<(serde_json::Value, Vec<serde_json::Value>)>;

/// The oracle's input: the same data, grouped file → object → changes.
fn oracle_case(template: &str, data: &Data) -> serde_json::Value {
    let mut files: Vec<(String, Objects)> = Vec::new();
    for c in &data.changes {
        let object = serde_json::json!({
            "apiVersion": c.api_version, "kind": c.kind, "name": c.name, "namespace": c.namespace,
        });
        let entry = serde_json::json!({"old": c.old, "new": c.new, "setter": c.setter});
        let index = match files.iter().position(|(f, _)| *f == c.file) {
            Some(i) => i,
            None => {
                files.push((c.file.clone(), Vec::new()));
                files.len() - 1
            }
        };
        let objects = &mut files[index].1;
        match objects.iter_mut().find(|(o, _)| *o == object) {
            Some((_, list)) => list.push(entry),
            None => objects.push((object, vec![entry])),
        }
    }
    let files: Vec<serde_json::Value> = files
        .into_iter()
        .map(|(path, objects)| {
            let objects: Vec<serde_json::Value> = objects
                .into_iter()
                .map(|(object, changes)| serde_json::json!({"object": object, "changes": changes}))
                .collect();
            serde_json::json!({"path": path, "objects": objects})
        })
        .collect();
    serde_json::json!({
        "template": template,
        "data": {
            "automation": {"namespace": data.automation.0, "name": data.automation.1},
            "files": files,
            "values": data.values,
        }
    })
}

fn build_oracle(work: &Path) -> Result<std::path::PathBuf, String> {
    let go = Command::new("go").arg("version").output();
    if !go.is_ok_and(|o| o.status.success()) {
        return Err("`go` is not installed (Go 1.26 builds tests/gotemplate)".into());
    }
    let binary = work.join("gotemplate");
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gotemplate"))
        .env("GOFLAGS", "-mod=readonly")
        .output()
        .map_err(|e| format!("running go build: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "go build failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(binary)
}

#[test]
fn flux_commit_templates_render_as_go_renders_them() {
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let binary = match build_oracle(work.path()) {
        Ok(b) => b,
        Err(why) if !crate::support::required() => {
            eprintln!("skipping the Go template differential test: {why}");
            return;
        }
        Err(why) => panic!("the Go template oracle is required in CI: {why}"),
    };
    let datasets = datasets();
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for data in &datasets {
        let values = data.values.clone().unwrap_or_default();
        let value = flux_data(data.automation.0, data.automation.1, &data.changes, &values);
        for template in TEMPLATES {
            cases.push(oracle_case(template, data));
            ours.push(
                Template::parse(template)
                    .and_then(|t| t.render(&value, 1 << 20))
                    .map_err(|e| e.to_string()),
            );
        }
    }
    let mut child = Command::new(&binary)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let input = serde_json::to_vec(&cases).unwrap_or_else(|e| panic!("{e}"));
    child
        .stdin
        .take()
        .unwrap_or_else(|| panic!("no stdin"))
        .write_all(&input)
        .unwrap_or_else(|e| panic!("{e}"));
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "the oracle failed");
    let go: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(go.len(), ours.len());
    let mut differences = Vec::new();
    let mut errors = 0;
    for ((case, go), ours) in cases.iter().zip(&go).zip(&ours) {
        let template = &case["template"];
        match (go["ok"].as_str(), ours) {
            (Some(expected), Ok(got)) if expected == got => {}
            (None, Err(_)) => errors += 1,
            (expected, got) => differences.push(format!(
                "template {template}\n  go:    {}\n  hoist: {got:?}",
                expected.map_or_else(|| go["error"].to_string(), |e| format!("{e:?}"))
            )),
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} cases differ:\n{}",
        differences.len(),
        ours.len(),
        differences.join("\n")
    );
    eprintln!(
        "{} cases agree with Go ({errors} of them errors in both)",
        ours.len()
    );
}
