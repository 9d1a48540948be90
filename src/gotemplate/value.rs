//! The values a Go template sees, and how Go's `fmt` prints them (`%v`).

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::rc::Rc;

/// A value as text/template's reflection sees it. Go's static types only
/// show where they change behaviour: ints and floats compare and print
/// differently, a struct has fields (some promoted from embedded ones) and
/// may print through a `String` method, and a map's keys are sorted.
#[derive(Clone, Debug)]
pub enum Value {
    /// Go's invalid `reflect.Value`: a missing map key. Prints `<no value>`.
    Missing,
    /// A nil interface.
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    List(Rc<Vec<Value>>),
    Map(Rc<Map>),
    Struct(Rc<Struct>),
}

/// A Go map, its entries in the order `fmt` and `range` visit them.
#[derive(Debug)]
pub struct Map {
    entries: Vec<(Value, Value)>,
    /// The zero value of the element type, which `index` gives for a
    /// missing key: `""` for Flux's `map[string]string`, nil for a dict.
    pub zero: Value,
}

/// A Go struct: its fields in declaration order, the methods a template
/// may call without arguments, and the text its `String` method returns.
#[derive(Debug)]
pub struct Struct {
    pub type_name: &'static str,
    pub fields: Vec<Field>,
    pub methods: Vec<(&'static str, Value)>,
    pub display: Option<String>,
}

#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub value: Value,
    /// An embedded struct, whose fields are promoted.
    pub embedded: bool,
}

impl Map {
    /// A map of these entries, sorted as Go's `fmt` and `range` sort keys.
    pub fn new(mut entries: Vec<(Value, Value)>, zero: Value) -> Map {
        entries.sort_by(|a, b| key_order(&a.0, &b.0));
        Map { entries, zero }
    }

    /// How Go orders two keys of one map.
    pub fn key_cmp(a: &Value, b: &Value) -> Ordering {
        key_order(a, b)
    }

    pub fn entries(&self) -> &[(Value, Value)] {
        &self.entries
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find(|(k, _)| matches!(k, Value::Str(s) if &**s == key))
            .map(|(_, v)| v)
    }
}

impl Struct {
    /// A field or a promoted field of an embedded struct, or a method.
    pub fn member(&self, name: &str) -> Option<Value> {
        if let Some(f) = self.fields.iter().find(|f| f.name == name) {
            return Some(f.value.clone());
        }
        if let Some((_, v)) = self.methods.iter().find(|(n, _)| *n == name) {
            return Some(v.clone());
        }
        self.fields
            .iter()
            .filter(|f| f.embedded)
            .find_map(|f| match &f.value {
                Value::Struct(inner) => inner.member(name),
                _ => None,
            })
    }
}

impl Value {
    pub fn str(s: impl Into<Rc<str>>) -> Value {
        Value::Str(s.into())
    }

    /// Go's truth: false, 0, nil, and empty strings, lists and maps are
    /// false; a struct is true.
    pub fn truth(&self) -> bool {
        match self {
            Value::Missing | Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.entries.is_empty(),
            Value::Struct(_) => true,
        }
    }

    /// The Go type's name, for errors and `%!v(type=…)`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Missing => "invalid",
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(_) => "[]interface {}",
            Value::Map(_) => "map",
            Value::Struct(s) => s.type_name,
        }
    }

    /// `fmt.Sprint(v)`, as an action prints a value.
    pub fn print(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, true);
        out
    }

    /// `%v`. `top` is false inside a container, where Go prints a nil
    /// interface as `<nil>` too; an action prints `<no value>` for Missing.
    pub fn write(&self, out: &mut String, top: bool) {
        match self {
            // An action prints a nil interface as it prints a missing key.
            Value::Missing | Value::Nil if top => out.push_str("<no value>"),
            Value::Missing | Value::Nil => out.push_str("<nil>"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => out.push_str(&format_float_g(*f)),
            Value::Str(s) => out.push_str(s),
            Value::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    item.write(out, false);
                }
                out.push(']');
            }
            Value::Map(map) => {
                out.push_str("map[");
                for (i, (k, v)) in map.entries.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    k.write(out, false);
                    out.push(':');
                    v.write(out, false);
                }
                out.push(']');
            }
            Value::Struct(s) => match &s.display {
                Some(text) => out.push_str(text),
                None => {
                    out.push('{');
                    for (i, f) in s.fields.iter().enumerate() {
                        if i > 0 {
                            out.push(' ');
                        }
                        f.value.write(out, false);
                    }
                    out.push('}');
                }
            },
        }
    }
}

/// The order Go's `internal/fmtsort` gives map keys: numbers and strings
/// by value, false before true, structs field by field.
fn key_order(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => x.cmp(y),
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Float(x), Value::Float(y)) => x.total_cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Struct(x), Value::Struct(y)) => x
            .fields
            .iter()
            .zip(&y.fields)
            .map(|(f, g)| key_order(&f.value, &g.value))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal),
        _ => Ordering::Equal,
    }
}

/// `strconv.FormatFloat(f, 'g', -1, 64)` as `%v` uses it: the shortest
/// digits that round-trip, in exponent form when the exponent is below -4
/// or at least 21.
pub fn format_float_g(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `1.5e3`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..21).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    let s = format!("{f}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// `strconv.Quote`: Go's double-quoted string with Go's escapes.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_go_prints_them() {
        for (f, go) in [
            (1.5, "1.5"),
            (3.0, "3"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.25, "-2.25"),
            (123456789.0, "123456789"),
        ] {
            assert_eq!(format_float_g(f), go, "{f}");
        }
    }

    #[test]
    fn quoting_follows_strconv_quote() {
        assert_eq!(go_quote("a\"b\\c\n\té"), "\"a\\\"b\\\\c\\n\\té\"");
        assert_eq!(go_quote("\u{1}"), "\"\\x01\"");
    }
}
