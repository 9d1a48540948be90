//! The functions a Flux commit template may call: text/template's own and
//! the common ones of sprig's hermetic set, which Flux installs. A name
//! that is neither is a parse error, as in Go, so hoist never renders a
//! template differently from Flux without saying so.

use std::fmt::Write as _;
use std::rc::Rc;

use base64::Engine as _;
use sha2::Digest as _;

use super::value::{Map, Value, format_float_g, go_quote};

const NAMES: &[&str] = &[
    // text/template
    "and",
    "or",
    "not",
    "len",
    "index",
    "slice",
    "print",
    "printf",
    "println",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "html",
    "urlquery",
    "js",
    // sprig: strings
    "lower",
    "upper",
    "title",
    "untitle",
    "trim",
    "trimAll",
    "trimPrefix",
    "trimSuffix",
    "trunc",
    "abbrev",
    "replace",
    "repeat",
    "substr",
    "nospace",
    "contains",
    "hasPrefix",
    "hasSuffix",
    "quote",
    "squote",
    "cat",
    "indent",
    "nindent",
    "toString",
    "splitList",
    "join",
    // sprig: regular expressions
    "regexMatch",
    "regexFind",
    "regexFindAll",
    "regexReplaceAll",
    "regexReplaceAllLiteral",
    "regexSplit",
    // sprig: lists and dicts
    "list",
    "first",
    "last",
    "rest",
    "initial",
    "uniq",
    "sortAlpha",
    "has",
    "dict",
    "get",
    "hasKey",
    "keys",
    // sprig: defaults and logic
    "default",
    "empty",
    "coalesce",
    "ternary",
    // sprig: numbers
    "add",
    "add1",
    "sub",
    "mul",
    "div",
    "mod",
    "max",
    "min",
    // sprig: encodings
    "b64enc",
    "b64dec",
    "sha256sum",
];

/// Most items `uniq` compares, pairwise.
const UNIQ_LIMIT: usize = 10_000;

pub fn exists(name: &str) -> bool {
    NAMES.contains(&name)
}

type Result<T> = std::result::Result<T, String>;

/// Calls `name`; `limit` bounds what a function may build (`repeat`).
pub fn call(name: &str, args: Vec<Value>, limit: usize) -> Result<Value> {
    let a = Args { name, args: &args };
    Ok(match name {
        "not" => {
            a.count(1)?;
            Value::Bool(!args[0].truth())
        }
        "len" => {
            a.count(1)?;
            Value::Int(match &args[0] {
                Value::Str(s) => s.len(),
                Value::List(l) => l.len(),
                Value::Map(m) => m.entries().len(),
                other => return Err(format!("len of type {}", other.type_name())),
            } as i64)
        }
        "index" => {
            let mut item = a.at(0)?.clone();
            for key in args.get(1..).unwrap_or_default() {
                item = match (&item, key) {
                    (Value::List(l), Value::Int(i)) => usize::try_from(*i)
                        .ok()
                        .and_then(|i| l.get(i).cloned())
                        .ok_or_else(|| format!("index out of range: {i}"))?,
                    (Value::Map(m), Value::Str(k)) => {
                        m.get(k).cloned().unwrap_or_else(|| m.zero.clone())
                    }
                    (Value::Missing | Value::Nil, _) => {
                        return Err("index of untyped nil".into());
                    }
                    (item, key) => {
                        return Err(format!(
                            "can't index item of type {} with {}",
                            item.type_name(),
                            key.type_name()
                        ));
                    }
                };
            }
            item
        }
        // sprig's `slice`, which replaces text/template's: lists only.
        "slice" => {
            let bounds: Vec<usize> = args
                .get(1..)
                .unwrap_or_default()
                .iter()
                .map(|v| match v {
                    Value::Int(i) => {
                        usize::try_from(*i).map_err(|_| format!("index out of range: {i}"))
                    }
                    other => Err(format!("cannot index slice with {}", other.type_name())),
                })
                .collect::<Result<_>>()?;
            match (a.at(0)?, bounds.as_slice()) {
                (Value::List(l), b) if b.len() <= 2 => {
                    let (from, to) = (
                        b.first().copied().unwrap_or(0),
                        b.get(1).copied().unwrap_or(l.len()),
                    );
                    l.get(from..to)
                        .map(|s| Value::List(Rc::new(s.to_vec())))
                        .ok_or_else(|| format!("index out of range: {from}:{to}"))?
                }
                (other, _) => {
                    return Err(format!(
                        "list should be type of slice or array but {}",
                        other.type_name()
                    ));
                }
            }
        }
        "print" => Value::str(sprint(&args)),
        "println" => {
            let mut out = String::new();
            for (i, v) in args.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                v.write(&mut out, false);
            }
            out.push('\n');
            Value::str(out)
        }
        "printf" => {
            let format = a.string(0)?;
            Value::str(sprintf(&format, args.get(1..).unwrap_or_default()))
        }
        "eq" => {
            let first = a.at(0)?;
            if args.len() < 2 {
                return Err("missing argument for comparison".into());
            }
            let mut any = false;
            for other in args.get(1..).unwrap_or_default() {
                any |= compare(first, other)? == std::cmp::Ordering::Equal;
            }
            Value::Bool(any)
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            a.count(2)?;
            let order = compare(&args[0], &args[1])?;
            if name != "ne" && matches!(args[0], Value::Bool(_)) {
                return Err("invalid type for comparison".into());
            }
            Value::Bool(match name {
                "ne" => order.is_ne(),
                "lt" => order.is_lt(),
                "le" => order.is_le(),
                "gt" => order.is_gt(),
                _ => order.is_ge(),
            })
        }
        "html" => Value::str(html_escape(&sprint(&args))),
        "js" => Value::str(js_escape(&sprint(&args))),
        "urlquery" => Value::str(query_escape(&sprint(&args))),
        "lower" => Value::str(a.one_string()?.to_lowercase()),
        "upper" => Value::str(a.one_string()?.to_uppercase()),
        "title" => Value::str(title(&a.one_string()?)),
        "untitle" => {
            let s = a.one_string()?;
            let mut out = String::with_capacity(s.len());
            let mut start = true;
            for c in s.chars() {
                if start && c.is_alphabetic() {
                    out.extend(c.to_lowercase());
                } else {
                    out.push(c);
                }
                start = c.is_whitespace();
            }
            Value::str(out)
        }
        "trim" => Value::str(a.one_string()?.trim()),
        "nospace" => Value::str(a.one_string()?.split_whitespace().collect::<String>()),
        "trimAll" => {
            a.count(2)?;
            let (cut, s) = (a.string(0)?, a.string(1)?);
            Value::str(s.trim_matches(|c| cut.contains(c)))
        }
        "trimPrefix" => {
            a.count(2)?;
            let (p, s) = (a.string(0)?, a.string(1)?);
            Value::str(s.strip_prefix(&*p).unwrap_or(&s))
        }
        "trimSuffix" => {
            a.count(2)?;
            let (p, s) = (a.string(0)?, a.string(1)?);
            Value::str(s.strip_suffix(&*p).unwrap_or(&s))
        }
        "trunc" => {
            a.count(2)?;
            let (n, s) = (a.int(0)?, a.string(1)?);
            let len = s.len() as i64;
            Value::str(if n < 0 && -n < len {
                byte_slice(&s, (len + n) as usize, s.len())
            } else if n >= 0 && len > n {
                byte_slice(&s, 0, n as usize)
            } else {
                s.to_string()
            })
        }
        "abbrev" => {
            a.count(2)?;
            let (width, s) = (a.int(0)?, a.string(1)?);
            Value::str(if width < 4 || s.len() as i64 <= width {
                s.to_string()
            } else {
                format!("{}...", byte_slice(&s, 0, (width - 3) as usize))
            })
        }
        "replace" => {
            a.count(3)?;
            let (old, new, s) = (a.string(0)?, a.string(1)?, a.string(2)?);
            // Sized before it is built: each replacement may grow the text
            // by `new`, and a small input can ask for gigabytes.
            let sites = if old.is_empty() {
                s.chars().count() + 1
            } else {
                s.matches(&*old).count()
            };
            within(
                s.len().saturating_add(sites.saturating_mul(new.len())),
                limit,
            )?;
            let replaced = if old.is_empty() {
                // strings.Replace with an empty old inserts `new` around
                // every rune.
                let mut out = new.to_string();
                for c in s.chars() {
                    out.push(c);
                    out.push_str(&new);
                }
                out
            } else {
                s.replace(&*old, &new)
            };
            bounded(replaced, limit)?
        }
        "repeat" => {
            a.count(2)?;
            let (n, s) = (a.int(0)?, a.string(1)?);
            let n = usize::try_from(n).map_err(|_| "negative repeat count".to_string())?;
            if s.len().saturating_mul(n) > limit {
                return Err(format!(
                    "the result would be longer than {} KiB",
                    limit >> 10
                ));
            }
            Value::str(s.repeat(n))
        }
        "substr" => {
            a.count(3)?;
            let (start, end, s) = (a.int(0)?, a.int(1)?, a.string(2)?);
            let len = s.len() as i64;
            Value::str(if start < 0 {
                byte_slice(&s, 0, end.clamp(0, len) as usize)
            } else if end < 0 || end > len {
                byte_slice(&s, start.min(len) as usize, s.len())
            } else {
                byte_slice(&s, start.min(end) as usize, end as usize)
            })
        }
        "contains" => {
            a.count(2)?;
            Value::Bool(a.string(1)?.contains(&*a.string(0)?))
        }
        "hasPrefix" => {
            a.count(2)?;
            Value::Bool(a.string(1)?.starts_with(&*a.string(0)?))
        }
        "hasSuffix" => {
            a.count(2)?;
            Value::Bool(a.string(1)?.ends_with(&*a.string(0)?))
        }
        "quote" | "squote" => {
            let quoted: Vec<String> = args
                .iter()
                .filter(|v| !matches!(v, Value::Nil | Value::Missing))
                .map(|v| {
                    let s = strval(v);
                    if name == "quote" {
                        go_quote(&s)
                    } else {
                        format!("'{s}'")
                    }
                })
                .collect();
            Value::str(quoted.join(" "))
        }
        "cat" => {
            let parts: Vec<String> = args
                .iter()
                .filter(|v| !matches!(v, Value::Nil | Value::Missing))
                .map(strval)
                .collect();
            Value::str(parts.join(" "))
        }
        "indent" | "nindent" => {
            a.count(2)?;
            let (n, s) = (a.int(0)?, a.string(1)?);
            let pad = " ".repeat(usize::try_from(n).unwrap_or(0).min(limit));
            let lines = s.matches('\n').count() + 1;
            within(
                s.len().saturating_add(lines.saturating_mul(pad.len() + 1)),
                limit,
            )?;
            let indented = format!("{pad}{}", s.replace('\n', &format!("\n{pad}")));
            bounded(
                if name == "nindent" {
                    format!("\n{indented}")
                } else {
                    indented
                },
                limit,
            )?
        }
        "toString" => {
            a.count(1)?;
            Value::str(strval(&args[0]))
        }
        "splitList" => {
            a.count(2)?;
            let (sep, s) = (a.string(0)?, a.string(1)?);
            let parts: Vec<Value> = if sep.is_empty() {
                s.chars().map(|c| Value::str(c.to_string())).collect()
            } else {
                s.split(&*sep).map(Value::str).collect()
            };
            Value::List(Rc::new(parts))
        }
        "join" => {
            a.count(2)?;
            let sep = a.string(0)?;
            let items: Vec<String> = match &args[1] {
                Value::List(l) => l
                    .iter()
                    .filter(|v| !matches!(v, Value::Nil | Value::Missing))
                    .map(strval)
                    .collect(),
                Value::Nil | Value::Missing => Vec::new(),
                other => vec![strval(other)],
            };
            Value::str(items.join(&sep))
        }
        "regexMatch" => {
            a.count(2)?;
            // sprig's regexMatch reports an invalid expression as false.
            Value::Bool(
                regex(&a.string(0)?).is_ok_and(|re| re.is_match(&a.string(1).unwrap_or_default())),
            )
        }
        "regexFind" => {
            a.count(2)?;
            let re = regex(&a.string(0)?)?;
            Value::str(re.find(&a.string(1)?).map_or("", |m| m.as_str()))
        }
        "regexFindAll" => {
            a.count(3)?;
            let (re, s, n) = (regex(&a.string(0)?)?, a.string(1)?, a.int(2)?);
            let take = usize::try_from(n).unwrap_or(usize::MAX);
            Value::List(Rc::new(
                re.find_iter(&s)
                    .take(take)
                    .map(|m| Value::str(m.as_str()))
                    .collect(),
            ))
        }
        "regexReplaceAll" | "regexReplaceAllLiteral" => {
            a.count(3)?;
            let (re, s, repl) = (regex(&a.string(0)?)?, a.string(1)?, a.string(2)?);
            // Each match expands on its own ($0$0… can multiply the
            // text), so the output is counted as it grows and given up on
            // past the limit.
            let mut grown = s.len();
            let mut over = false;
            let replaced = re.replace_all(&s, |caps: &regex::Captures| {
                let mut piece = String::new();
                if over {
                    return piece;
                }
                if name == "regexReplaceAll" {
                    caps.expand(&repl, &mut piece);
                } else {
                    piece.push_str(&repl);
                }
                grown = grown.saturating_add(piece.len());
                over = grown > limit;
                if over { String::new() } else { piece }
            });
            if over {
                return Err(format!(
                    "the result would be longer than {} KiB",
                    limit >> 10
                ));
            }
            bounded(replaced.into_owned(), limit)?
        }
        "regexSplit" => {
            a.count(3)?;
            let (re, s, n) = (regex(&a.string(0)?)?, a.string(1)?, a.int(2)?);
            let parts: Vec<Value> = match usize::try_from(n) {
                Ok(0) => Vec::new(),
                Ok(n) => re.splitn(&s, n).map(Value::str).collect(),
                Err(_) => re.split(&s).map(Value::str).collect(),
            };
            Value::List(Rc::new(parts))
        }
        "list" => Value::List(Rc::new(args)),
        "first" | "last" | "rest" | "initial" => {
            a.count(1)?;
            let list = a.list(0)?;
            match name {
                "first" => list.first().cloned().unwrap_or(Value::Nil),
                "last" => list.last().cloned().unwrap_or(Value::Nil),
                "rest" if list.is_empty() => Value::Nil,
                "rest" => Value::List(Rc::new(list[1..].to_vec())),
                _ if list.is_empty() => Value::Nil,
                _ => Value::List(Rc::new(list[..list.len() - 1].to_vec())),
            }
        }
        "uniq" => {
            a.count(1)?;
            let list = a.list(0)?;
            // Quadratic, as sprig's: bounded so a long list cannot stall a run.
            if list.len() > UNIQ_LIMIT {
                return Err(format!("uniq of more than {UNIQ_LIMIT} items"));
            }
            let mut out: Vec<Value> = Vec::new();
            for v in list.iter() {
                if !out.iter().any(|o| same(o, v)) {
                    out.push(v.clone());
                }
            }
            Value::List(Rc::new(out))
        }
        "sortAlpha" => {
            a.count(1)?;
            let mut items: Vec<String> = match &args[0] {
                Value::List(l) => l.iter().map(strval).collect(),
                other => vec![strval(other)],
            };
            items.sort();
            Value::List(Rc::new(items.into_iter().map(Value::str).collect()))
        }
        "has" => {
            a.count(2)?;
            Value::Bool(match &args[1] {
                Value::List(l) => l.iter().any(|v| same(v, &args[0])),
                _ => false,
            })
        }
        "dict" => {
            let mut entries = Vec::new();
            for pair in args.chunks(2) {
                let key = Value::str(strval(&pair[0]));
                let value = pair.get(1).cloned().unwrap_or(Value::str(""));
                entries.retain(|(k, _): &(Value, Value)| !same(k, &key));
                entries.push((key, value));
            }
            Value::Map(Rc::new(Map::new(entries, Value::Nil)))
        }
        "get" | "hasKey" => {
            a.count(2)?;
            let Value::Map(map) = &args[0] else {
                return Err(format!("{name} needs a dict, not {}", args[0].type_name()));
            };
            let found = map.get(&a.string(1)?).cloned();
            if name == "hasKey" {
                Value::Bool(found.is_some())
            } else {
                found.unwrap_or(Value::str(""))
            }
        }
        "keys" => {
            // sprig returns them in Go's random map order; sorted here.
            let mut keys = Vec::new();
            for v in &args {
                let Value::Map(map) = v else {
                    return Err(format!("keys needs dicts, not {}", v.type_name()));
                };
                keys.extend(map.entries().iter().map(|(k, _)| k.clone()));
            }
            Value::List(Rc::new(keys))
        }
        "default" => {
            let default = a.at(0)?.clone();
            match args.get(1) {
                Some(given) if !empty(given) => given.clone(),
                _ => default,
            }
        }
        "empty" => {
            a.count(1)?;
            Value::Bool(empty(&args[0]))
        }
        "coalesce" => args
            .iter()
            .find(|v| !empty(v))
            .cloned()
            .unwrap_or(Value::Nil),
        "ternary" => {
            a.count(3)?;
            let Value::Bool(condition) = args[2] else {
                return Err(format!(
                    "ternary's condition is a {}, not a bool",
                    args[2].type_name()
                ));
            };
            if condition {
                args[0].clone()
            } else {
                args[1].clone()
            }
        }
        "add" | "mul" | "max" | "min" => {
            let first = to_int64(a.at(0)?);
            Value::Int(
                args[1..]
                    .iter()
                    .map(to_int64)
                    .fold(first, |acc, x| match name {
                        "add" => acc.wrapping_add(x),
                        "mul" => acc.wrapping_mul(x),
                        "max" => acc.max(x),
                        _ => acc.min(x),
                    }),
            )
        }
        "add1" => {
            a.count(1)?;
            Value::Int(to_int64(&args[0]).wrapping_add(1))
        }
        "sub" | "div" | "mod" => {
            a.count(2)?;
            let (x, y) = (to_int64(&args[0]), to_int64(&args[1]));
            Value::Int(match name {
                "sub" => x.wrapping_sub(y),
                _ if y == 0 => return Err("integer divide by zero".into()),
                "div" => x.wrapping_div(y),
                _ => x.wrapping_rem(y),
            })
        }
        "b64enc" => {
            Value::str(base64::engine::general_purpose::STANDARD.encode(a.one_string()?.as_bytes()))
        }
        "b64dec" => {
            let s = a.one_string()?;
            match base64::engine::general_purpose::STANDARD.decode(s.as_bytes()) {
                Ok(bytes) => Value::str(String::from_utf8_lossy(&bytes).into_owned()),
                Err(e) => Value::str(e.to_string()),
            }
        }
        "sha256sum" => Value::str(format!(
            "{:x}",
            sha2::Sha256::digest(a.one_string()?.as_bytes())
        )),
        _ => return Err(format!("function {name:?} not defined")),
    })
}

struct Args<'a> {
    name: &'a str,
    args: &'a [Value],
}

impl Args<'_> {
    fn count(&self, n: usize) -> Result<()> {
        if self.args.len() == n {
            Ok(())
        } else {
            Err(format!(
                "wrong number of args for {}: want {n} got {}",
                self.name,
                self.args.len()
            ))
        }
    }

    fn at(&self, i: usize) -> Result<&Value> {
        self.args.get(i).ok_or_else(|| {
            format!(
                "wrong number of args for {}: got {}",
                self.name,
                self.args.len()
            )
        })
    }

    /// A `string` parameter: Go refuses any other type, and a missing
    /// value.
    fn string(&self, i: usize) -> Result<Rc<str>> {
        match self.at(i)? {
            Value::Str(s) => Ok(s.clone()),
            other => Err(format!(
                "wrong type for value; expected string; got {}",
                other.type_name()
            )),
        }
    }

    fn one_string(&self) -> Result<Rc<str>> {
        self.count(1)?;
        self.string(0)
    }

    /// An `int` parameter.
    fn int(&self, i: usize) -> Result<i64> {
        match self.at(i)? {
            Value::Int(n) => Ok(*n),
            other => Err(format!(
                "wrong type for value; expected int; got {}",
                other.type_name()
            )),
        }
    }

    fn list(&self, i: usize) -> Result<Rc<Vec<Value>>> {
        match self.at(i)? {
            Value::List(l) => Ok(l.clone()),
            other => Err(format!(
                "cannot find {} on type {}",
                self.name,
                other.type_name()
            )),
        }
    }
}

/// An error when a result of `size` bytes would pass the limit.
fn within(size: usize, limit: usize) -> Result<()> {
    if size > limit {
        return Err(format!(
            "the result would be longer than {} KiB",
            limit >> 10
        ));
    }
    Ok(())
}

fn bounded(s: String, limit: usize) -> Result<Value> {
    if s.len() > limit {
        return Err(format!(
            "the result would be longer than {} KiB",
            limit >> 10
        ));
    }
    Ok(Value::str(s))
}

/// A byte range of a string, as Go slices strings; a range that splits a
/// character keeps what is whole.
fn byte_slice(s: &str, from: usize, to: usize) -> String {
    String::from_utf8_lossy(&s.as_bytes()[from.min(s.len())..to.min(s.len())]).into_owned()
}

fn regex(pattern: &str) -> Result<regex::Regex> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| e.to_string())
}

/// `fmt.Sprint`: a space between operands when neither is a string.
fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, v) in args.iter().enumerate() {
        if i > 0 && !matches!(v, Value::Str(_)) && !matches!(args[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        v.write(&mut out, false);
    }
    out
}

/// sprig's `strval`: a string as is, anything else as `%v` prints it.
fn strval(v: &Value) -> String {
    let mut out = String::new();
    v.write(&mut out, false);
    out
}

/// spf13/cast's `ToInt64` as sprig uses it: numbers truncate, strings
/// parse (0 when they do not), true is 1.
fn to_int64(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::Float(f) => *f as i64,
        Value::Bool(b) => i64::from(*b),
        Value::Str(s) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// sprig's `empty`: Go's zero values and empty collections.
fn empty(v: &Value) -> bool {
    !v.truth() && !matches!(v, Value::Struct(_))
}

fn same(a: &Value, b: &Value) -> bool {
    compare(a, b).is_ok_and(|o| o.is_eq())
}

/// text/template's comparison of basic kinds; ints and floats do not mix.
fn compare(a: &Value, b: &Value) -> Result<std::cmp::Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::Float(x), Value::Float(y)) => x
            .partial_cmp(y)
            .ok_or_else(|| "NaN in comparison".to_string()),
        (Value::Str(x), Value::Str(y)) => Ok(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Ok(x.cmp(y)),
        (Value::Nil, Value::Nil) => Ok(std::cmp::Ordering::Equal),
        (Value::Missing, _) | (_, Value::Missing) => Err("invalid type for comparison".into()),
        (x, y) if x.type_name() != y.type_name() => Err("incompatible types for comparison".into()),
        _ => Err("non-comparable types".into()),
    }
}

/// `strings.Title`: the first letter of each word upper-cased, a word
/// starting after anything that is not a letter, digit or `_`.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut previous_separates = true;
    for c in s.chars() {
        if previous_separates {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        previous_separates = !(c.is_alphanumeric() || c == '_');
    }
    out
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// `fmt.Sprintf` for the verbs commit templates use: `%v %s %q %d %t %f
/// %e %g %x %X %o %b %c %T %%`, with flags `-+ 0#`, width and precision.
/// A verb that does not fit its operand prints as Go prints it:
/// `%!d(string=abc)`.
fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut next = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut flags = String::new();
        while let Some(&f) = chars.peek() {
            if "-+ 0#".contains(f) {
                flags.push(f);
                chars.next();
            } else {
                break;
            }
        }
        let number = |chars: &mut std::iter::Peekable<std::str::Chars>| {
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some(
                    n.unwrap_or(0)
                        .saturating_mul(10)
                        .saturating_add(d as usize)
                        .min(4096),
                );
                chars.next();
            }
            n
        };
        let width = number(&mut chars);
        let precision = if chars.peek() == Some(&'.') {
            chars.next();
            Some(number(&mut chars).unwrap_or(0))
        } else {
            None
        };
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next += 1;
        let body = match format_one(verb, arg, &flags, precision) {
            Some(body) => body,
            None => {
                let _ = write!(out, "%!{verb}({}={})", arg.type_name(), strval(arg));
                continue;
            }
        };
        let pad = width.unwrap_or(0).saturating_sub(body.chars().count());
        if flags.contains('-') {
            out.push_str(&body);
            out.extend(std::iter::repeat_n(' ', pad));
        } else if flags.contains('0') && matches!(arg, Value::Int(_) | Value::Float(_)) {
            let (sign, digits) = match body.strip_prefix(['-', '+']) {
                Some(d) => (&body[..1], d),
                None => ("", body.as_str()),
            };
            out.push_str(sign);
            out.extend(std::iter::repeat_n('0', pad));
            out.push_str(digits);
        } else {
            out.extend(std::iter::repeat_n(' ', pad));
            out.push_str(&body);
        }
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|a| format!("{}={}", a.type_name(), strval(a)))
            .collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}

fn format_one(verb: char, arg: &Value, flags: &str, precision: Option<usize>) -> Option<String> {
    let plus = |s: String, positive: bool| {
        if positive && flags.contains('+') {
            format!("+{s}")
        } else if positive && flags.contains(' ') {
            format!(" {s}")
        } else {
            s
        }
    };
    Some(match (verb, arg) {
        ('T', a) => a.type_name().to_string(),
        ('v', a) => strval(a),
        ('s', Value::Str(s)) => match precision {
            Some(p) => s.chars().take(p).collect(),
            None => s.to_string(),
        },
        ('s', a @ (Value::List(_) | Value::Map(_) | Value::Struct(_))) => strval(a),
        ('q', Value::Str(s)) => go_quote(s),
        ('t', Value::Bool(b)) => b.to_string(),
        ('d', Value::Int(i)) => plus(i.to_string(), *i >= 0),
        ('x', Value::Int(i)) => format!("{}{:x}", if *i < 0 { "-" } else { "" }, i.unsigned_abs()),
        ('X', Value::Int(i)) => format!("{}{:X}", if *i < 0 { "-" } else { "" }, i.unsigned_abs()),
        ('o', Value::Int(i)) => format!("{}{:o}", if *i < 0 { "-" } else { "" }, i.unsigned_abs()),
        ('b', Value::Int(i)) => format!("{}{:b}", if *i < 0 { "-" } else { "" }, i.unsigned_abs()),
        ('c', Value::Int(i)) => u32::try_from(*i)
            .ok()
            .and_then(char::from_u32)
            .unwrap_or('\u{FFFD}')
            .to_string(),
        ('x', Value::Str(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
        ('X', Value::Str(s)) => s.bytes().map(|b| format!("{b:02X}")).collect(),
        ('f' | 'F', Value::Float(f)) => {
            plus(format!("{:.*}", precision.unwrap_or(6), f), *f >= 0.0)
        }
        ('e', Value::Float(f)) => plus(go_exp(*f, precision.unwrap_or(6)), *f >= 0.0),
        ('g', Value::Float(f)) if precision.is_none() => plus(format_float_g(*f), *f >= 0.0),
        _ => return None,
    })
}

/// `%e`: `1.500000e+03`.
fn go_exp(f: f64, precision: usize) -> String {
    let s = format!("{f:.precision$e}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let exp: i32 = exp.parse().unwrap_or(0);
            format!(
                "{mantissa}e{}{:02}",
                if exp < 0 { '-' } else { '+' },
                exp.abs()
            )
        }
        None => s,
    }
}
