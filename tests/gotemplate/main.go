// Flux's commit message rendering (image-automation-controller's
// internal/source templateMsg) on Go's text/template with sprig's hermetic
// functions: the reference hoist's commit message renderer is checked
// against.
//
// Usage:
//
//	gotemplate
//	    reads one JSON array of cases from stdin:
//	        [{"template": "...", "data": {
//	            "automation": {"namespace": "flux-system", "name": "auto"},
//	            "files": [{"path": "deploy.yaml", "objects": [{
//	                "object": {"apiVersion": "apps/v1", "kind": "Deployment",
//	                           "name": "app", "namespace": "prod"},
//	                "changes": [{"old": "...", "new": "...", "setter": "..."}]}]}],
//	            "values": {"cluster": "prod"}}}, ...]
//	    prints one JSON array, one entry per case, in order:
//	    {"ok": "<rendered text>"}, or {"error": "<message>"} when the
//	    template does not parse or does not execute (Go's own message,
//	    without the prefix Flux wraps it in). Exits non-zero only when
//	    the input is not such an array.
//
// Absent strings are empty; absent or null "values" is a nil map, as when
// Flux's field is unset. Files or objects given twice are merged, their
// changes appended in input order, as Flux's Result.AddChange does.
//
// The types below copy the shape, field names, field order and methods of
// Flux's (update.Result, update.ObjectIdentifier, source.TemplateData),
// kyaml's yaml.ResourceIdentifier and apimachinery's types.NamespacedName,
// since all of these are visible to templates. They live in package main,
// so Go's messages and %T name them main.X where Flux's say
// source.TemplateData, update.Result, update.Change, and so on.
package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig/v3"
)

// NamespacedName is k8s.io/apimachinery/pkg/types.NamespacedName.
type NamespacedName struct {
	Namespace string
	Name      string
}

// String is what {{ .AutomationObject }} prints.
func (n NamespacedName) String() string {
	return n.Namespace + "/" + n.Name
}

// MarshalLog is apimachinery's; templates can call it.
func (n NamespacedName) MarshalLog() interface{} {
	return struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace,omitempty"`
	}{
		Name:      n.Name,
		Namespace: n.Namespace,
	}
}

// TypeMeta is sigs.k8s.io/kustomize/kyaml/yaml.TypeMeta.
type TypeMeta struct {
	APIVersion string
	Kind       string
}

// NameMeta is sigs.k8s.io/kustomize/kyaml/yaml.NameMeta.
type NameMeta struct {
	Name      string
	Namespace string
}

// ResourceIdentifier is sigs.k8s.io/kustomize/kyaml/yaml.ResourceIdentifier.
type ResourceIdentifier struct {
	TypeMeta
	NameMeta
}

// The getters have pointer receivers, as kyaml's do, so templates reach
// them only on addressable values (never on map keys).

func (r *ResourceIdentifier) GetName() string       { return r.Name }
func (r *ResourceIdentifier) GetNamespace() string  { return r.Namespace }
func (r *ResourceIdentifier) GetAPIVersion() string { return r.APIVersion }
func (r *ResourceIdentifier) GetKind() string       { return r.Kind }

// ObjectIdentifier is Flux's update.ObjectIdentifier.
type ObjectIdentifier struct {
	ResourceIdentifier
}

// Change is Flux's update.Change.
type Change struct {
	OldValue string
	NewValue string
	Setter   string
}

// ObjectChanges is Flux's update.ObjectChanges.
type ObjectChanges map[ObjectIdentifier][]Change

// Result is Flux's update.Result.
type Result struct {
	FileChanges map[string]ObjectChanges
}

// Flux's Changes and Objects range over Go maps, so with several files or
// objects their order is random there. The oracle has to be deterministic:
// it takes files in sorted name order and, within a file, objects in the
// order fmt (and a template's range) sorts ObjectIdentifier keys, field by
// field: APIVersion, Kind, Name, Namespace, each compared bytewise.

func sortedFiles(r Result) []string {
	names := make([]string, 0, len(r.FileChanges))
	for name := range r.FileChanges {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func compareObjects(a, b ObjectIdentifier) int {
	return cmp.Or(
		cmp.Compare(a.APIVersion, b.APIVersion),
		cmp.Compare(a.Kind, b.Kind),
		cmp.Compare(a.Name, b.Name),
		cmp.Compare(a.Namespace, b.Namespace),
	)
}

func sortedObjects(objects ObjectChanges) []ObjectIdentifier {
	ids := make([]ObjectIdentifier, 0, len(objects))
	for id := range objects {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, compareObjects)
	return ids
}

// Changes is Flux's Result.Changes: every change once, first occurrences
// kept, in file then object order (see above).
func (r Result) Changes() []Change {
	seen := make(map[Change]struct{})
	var result []Change
	for _, file := range sortedFiles(r) {
		objChanges := r.FileChanges[file]
		for _, obj := range sortedObjects(objChanges) {
			for _, change := range objChanges[obj] {
				if _, ok := seen[change]; !ok {
					seen[change] = struct{}{}
					result = append(result, change)
				}
			}
		}
	}
	return result
}

// Objects is Flux's Result.Objects: each object's changes across all
// files, appended in file order (see above).
func (r Result) Objects() ObjectChanges {
	result := make(ObjectChanges)
	for _, file := range sortedFiles(r) {
		objChanges := r.FileChanges[file]
		for _, obj := range sortedObjects(objChanges) {
			result[obj] = append(result[obj], objChanges[obj]...)
		}
	}
	return result
}

// TemplateData is Flux's source.TemplateData.
type TemplateData struct {
	AutomationObject NamespacedName
	Changed          Result
	Values           map[string]string
}

// The input protocol.

type inputCase struct {
	Template string    `json:"template"`
	Data     inputData `json:"data"`
}

type inputData struct {
	Automation struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"automation"`
	Files  []inputFile       `json:"files"`
	Values map[string]string `json:"values"`
}

type inputFile struct {
	Path    string        `json:"path"`
	Objects []inputObject `json:"objects"`
}

type inputObject struct {
	Object struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Name       string `json:"name"`
		Namespace  string `json:"namespace"`
	} `json:"object"`
	Changes []struct {
		Old    string `json:"old"`
		New    string `json:"new"`
		Setter string `json:"setter"`
	} `json:"changes"`
}

type outputCase struct {
	Ok    *string `json:"ok,omitempty"`
	Error *string `json:"error,omitempty"`
}

func templateData(in inputData) TemplateData {
	data := TemplateData{
		AutomationObject: NamespacedName{
			Namespace: in.Automation.Namespace,
			Name:      in.Automation.Name,
		},
		Values: in.Values,
	}
	if in.Files != nil {
		data.Changed.FileChanges = make(map[string]ObjectChanges)
	}
	for _, file := range in.Files {
		objects, ok := data.Changed.FileChanges[file.Path]
		if !ok {
			objects = make(ObjectChanges)
			data.Changed.FileChanges[file.Path] = objects
		}
		for _, object := range file.Objects {
			id := ObjectIdentifier{ResourceIdentifier{
				TypeMeta: TypeMeta{
					APIVersion: object.Object.APIVersion,
					Kind:       object.Object.Kind,
				},
				NameMeta: NameMeta{
					Name:      object.Object.Name,
					Namespace: object.Object.Namespace,
				},
			}}
			changes := objects[id]
			for _, c := range object.Changes {
				changes = append(changes, Change{OldValue: c.Old, NewValue: c.New, Setter: c.Setter})
			}
			objects[id] = changes
		}
	}
	return data
}

// render is templateMsg's Parse and Execute, minus Flux's wrapping of
// errors, its default for an empty template and its rewording of
// errors for the removed .Updated and .Changed.ImageResult fields.
func render(messageTemplate string, templateValues *TemplateData) (out string, err error) {
	defer func() {
		// Not expected (text/template turns panics in functions into
		// errors), but one case must not take down the batch.
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	t, err := template.New("commit message").Funcs(sprig.HermeticTxtFuncMap()).Parse(messageTemplate)
	if err != nil {
		return "", err
	}
	b := &strings.Builder{}
	if err := t.Execute(b, *templateValues); err != nil {
		return "", err
	}
	return b.String(), nil
}

func fail(code int, args ...interface{}) {
	fmt.Fprintln(os.Stderr, args...)
	os.Exit(code)
}

func main() {
	if len(os.Args) != 1 {
		fail(2, "usage: gotemplate < CASES.json")
	}
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(1, err)
	}
	dec := json.NewDecoder(bytes.NewReader(input))
	dec.DisallowUnknownFields()
	var cases []inputCase
	if err := dec.Decode(&cases); err != nil {
		fail(2, "bad input:", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		fail(2, "bad input: trailing data after the array of cases")
	}
	if cases == nil {
		fail(2, "bad input: expected an array of cases")
	}
	outputs := make([]outputCase, len(cases))
	for i, c := range cases {
		data := templateData(c.Data)
		text, err := render(c.Template, &data)
		if err != nil {
			msg := err.Error()
			outputs[i].Error = &msg
		} else {
			outputs[i].Ok = &text
		}
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(outputs); err != nil {
		fail(1, err)
	}
}
