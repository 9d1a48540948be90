//! Go `text/template`, as far as Flux's commit message templates use it:
//! the language (actions, pipelines, variables, `if`/`with`/`range`,
//! `break`/`continue`, trim markers, comments), Go's `fmt` printing, the
//! template built-ins and the common functions of sprig's hermetic set,
//! over the data Flux gives a template ([`flux_data`]). `define`,
//! `template` and `block` are refused, and so is any function not listed
//! in [`funcs`]: a template either renders as Flux renders it or fails
//! with an error naming what hoist lacks. tests/gotemplate is the Go
//! implementation it is compared with.

mod exec;
mod funcs;
mod parse;
pub mod value;

use std::collections::BTreeMap;
use std::rc::Rc;

use value::{Field, Map, Struct, Value};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

/// A parsed template.
#[derive(Debug)]
pub struct Template {
    nodes: Vec<parse::Node>,
}

impl Template {
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        Ok(Template {
            nodes: parse::parse(source)?,
        })
    }

    /// Renders over `data`, in at most `limit` bytes.
    pub fn render(&self, data: &Value, limit: usize) -> Result<String, TemplateError> {
        let mut exec = exec::Exec::new(data, limit);
        exec.run(&self.nodes, data)?;
        Ok(exec.out)
    }
}

/// One change as Flux's template data records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FluxChange {
    /// The file, relative to `update.path`.
    pub file: String,
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub old: String,
    pub new: String,
    /// The marker's setter: `flux-system:app` or `flux-system:app:tag`.
    pub setter: String,
}

/// Flux's `TemplateData`: `.AutomationObject` (prints `namespace/name`),
/// `.Changed` (`.FileChanges`, and the methods `.Changes` and `.Objects`)
/// and `.Values`. Flux iterates Go maps where it builds `Changes` and
/// `Objects`, so its order among several files is random; hoist's is by
/// file name, then object, then the order in the file.
pub fn flux_data(
    namespace: &str,
    name: &str,
    changes: &[FluxChange],
    values: &BTreeMap<String, String>,
) -> Value {
    // file -> object -> changes, both sorted as Go sorts map keys.
    let mut files: BTreeMap<&str, Vec<(Value, Vec<Value>)>> = BTreeMap::new();
    for c in changes {
        let objects = files.entry(&c.file).or_default();
        let id = object_identifier(c);
        let change = change_value(c);
        match objects.iter_mut().find(|(o, _)| same_object(o, &id)) {
            Some((_, list)) => list.push(change),
            None => objects.push((id, vec![change])),
        }
    }
    let object_map = |objects: Vec<(Value, Vec<Value>)>| {
        Value::Map(Rc::new(Map::new(
            objects
                .into_iter()
                .map(|(k, v)| (k, Value::List(Rc::new(v))))
                .collect(),
            Value::Nil,
        )))
    };
    // Objects(): every file's objects, their changes appended file by file.
    let mut all: Vec<(Value, Vec<Value>)> = Vec::new();
    let mut unique: Vec<&FluxChange> = Vec::new();
    let mut ordered: Vec<Value> = Vec::new();
    let file_changes: Vec<(Value, Value)> = files
        .into_iter()
        .map(|(file, mut objects)| {
            objects.sort_by(|a, b| Map::key_cmp(&a.0, &b.0));
            for (id, list) in &objects {
                match all.iter_mut().find(|(o, _)| same_object(o, id)) {
                    Some((_, merged)) => merged.extend(list.iter().cloned()),
                    None => all.push((id.clone(), list.clone())),
                }
            }
            (Value::str(file), object_map(objects))
        })
        .collect();
    // Changes(): each distinct (old, new, setter) once, in that order.
    for c in sorted_changes(changes) {
        if !unique
            .iter()
            .any(|u| u.old == c.old && u.new == c.new && u.setter == c.setter)
        {
            unique.push(c);
            ordered.push(change_value(c));
        }
    }
    let result = Struct {
        type_name: "update.Result",
        fields: vec![Field {
            name: "FileChanges",
            value: Value::Map(Rc::new(Map::new(file_changes, Value::Nil))),
            embedded: false,
        }],
        methods: vec![
            ("Changes", Value::List(Rc::new(ordered))),
            ("Objects", object_map(all)),
        ],
        display: None,
    };
    let automation = Struct {
        type_name: "types.NamespacedName",
        fields: vec![
            plain("Namespace", Value::str(namespace)),
            plain("Name", Value::str(name)),
        ],
        methods: Vec::new(),
        display: Some(format!("{namespace}/{name}")),
    };
    let values = Map::new(
        values
            .iter()
            .map(|(k, v)| (Value::str(k.as_str()), Value::str(v.as_str())))
            .collect(),
        Value::str(""),
    );
    Value::Struct(Rc::new(Struct {
        type_name: "source.TemplateData",
        fields: vec![
            plain("AutomationObject", Value::Struct(Rc::new(automation))),
            plain("Changed", Value::Struct(Rc::new(result))),
            plain("Values", Value::Map(Rc::new(values))),
        ],
        methods: Vec::new(),
        display: None,
    }))
}

/// Changes in the order `Changes` visits them: by file, then by object as
/// Go sorts the keys, then as they come in the file.
fn sorted_changes(changes: &[FluxChange]) -> Vec<&FluxChange> {
    let mut sorted: Vec<(usize, &FluxChange)> = changes.iter().enumerate().collect();
    sorted.sort_by(|(i, a), (j, b)| {
        (&a.file, &a.api_version, &a.kind, &a.name, &a.namespace, i).cmp(&(
            &b.file,
            &b.api_version,
            &b.kind,
            &b.name,
            &b.namespace,
            j,
        ))
    });
    sorted.into_iter().map(|(_, c)| c).collect()
}

fn plain(name: &'static str, value: Value) -> Field {
    Field {
        name,
        value,
        embedded: false,
    }
}

/// Flux's `ObjectIdentifier{yaml.ResourceIdentifier{TypeMeta{APIVersion,
/// Kind}, NameMeta{Name, Namespace}}}`, embedded all the way down so that
/// `$resource.Kind` reaches through.
fn object_identifier(c: &FluxChange) -> Value {
    let embed = |name: &'static str, value: Struct| Field {
        name,
        value: Value::Struct(Rc::new(value)),
        embedded: true,
    };
    let record = |type_name: &'static str, fields: Vec<Field>| Struct {
        type_name,
        fields,
        methods: Vec::new(),
        display: None,
    };
    let type_meta = record(
        "yaml.TypeMeta",
        vec![
            plain("APIVersion", Value::str(c.api_version.as_str())),
            plain("Kind", Value::str(c.kind.as_str())),
        ],
    );
    let name_meta = record(
        "yaml.NameMeta",
        vec![
            plain("Name", Value::str(c.name.as_str())),
            plain("Namespace", Value::str(c.namespace.as_str())),
        ],
    );
    let resource = record(
        "yaml.ResourceIdentifier",
        vec![embed("TypeMeta", type_meta), embed("NameMeta", name_meta)],
    );
    Value::Struct(Rc::new(record(
        "update.ObjectIdentifier",
        vec![embed("ResourceIdentifier", resource)],
    )))
}

fn same_object(a: &Value, b: &Value) -> bool {
    Map::key_cmp(a, b).is_eq()
}

fn change_value(c: &FluxChange) -> Value {
    Value::Struct(Rc::new(Struct {
        type_name: "update.Change",
        fields: vec![
            plain("OldValue", Value::str(c.old.as_str())),
            plain("NewValue", Value::str(c.new.as_str())),
            plain("Setter", Value::str(c.setter.as_str())),
        ],
        methods: Vec::new(),
        display: None,
    }))
}

#[cfg(test)]
mod tests;
