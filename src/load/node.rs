//! A YAML document as a tree that remembers where each key and value was
//! written, so an error about `spec.policy.semver.range` can name its line.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A value and the line it starts on (1-based).
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub line: u32,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order, each key with its own line.
    Map(Vec<(Key, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub name: String,
    pub line: u32,
}

/// One step of a field path: a map key (or enum variant) or a list index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

impl Node {
    /// The entry `name` of a map, if this is a map that has it.
    pub fn get(&self, name: &str) -> Option<&Node> {
        self.entry(name).map(|(_, node)| node)
    }

    fn entry(&self, name: &str) -> Option<(&Key, &Node)> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.name == name)
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Keys of a map, in document order.
    pub fn keys(&self) -> Vec<&str> {
        match &self.value {
            Value::Map(entries) => entries.iter().map(|(k, _)| k.name.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    /// The line of the deepest part of `path` that exists: the key's line
    /// for a map entry, the item's line for a list element.
    pub fn line_of(&self, path: &[Step]) -> u32 {
        let mut node = self;
        let mut line = self.line;
        for step in path {
            match step {
                Step::Key(name) => match node.entry(name) {
                    Some((key, next)) => {
                        line = key.line;
                        node = next;
                    }
                    None => break,
                },
                Step::Index(i) => match &node.value {
                    Value::Seq(items) if *i < items.len() => {
                        node = &items[*i];
                        line = node.line;
                    }
                    _ => break,
                },
            }
        }
        line
    }

    /// The same tree as JSON, for typed deserialization.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Uint(u) => J::from(*u),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(d)?;
        Ok(Node {
            line: u32::try_from(spanned.referenced.line()).unwrap_or(u32::MAX),
            value: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Int(i))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
        Ok(Value::Uint(u))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Float(f))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::Str(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::Str(s))
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
            let value = map.next_value::<Node>()?;
            entries.push((
                Key {
                    name: key.value.0,
                    line: u32::try_from(key.referenced.line()).unwrap_or(u32::MAX),
                },
                value,
            ));
        }
        Ok(Value::Map(entries))
    }
}

/// A mapping key as text: Kubernetes objects only have string keys, but a
/// YAML file may write `80:` or `true:`, which we keep as their text.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'a> Visitor<'a> for KeyVisitor {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar mapping key")
            }
            fn visit_str<E>(self, s: &str) -> Result<KeyText, E> {
                Ok(KeyText(s.to_string()))
            }
            fn visit_bool<E>(self, b: bool) -> Result<KeyText, E> {
                Ok(KeyText(b.to_string()))
            }
            fn visit_i64<E>(self, i: i64) -> Result<KeyText, E> {
                Ok(KeyText(i.to_string()))
            }
            fn visit_u64<E>(self, u: u64) -> Result<KeyText, E> {
                Ok(KeyText(u.to_string()))
            }
            fn visit_f64<E>(self, f: f64) -> Result<KeyText, E> {
                Ok(KeyText(f.to_string()))
            }
            fn visit_unit<E>(self) -> Result<KeyText, E> {
                Ok(KeyText("null".to_string()))
            }
            fn visit_map<A: MapAccess<'a>>(self, _: A) -> Result<KeyText, A::Error> {
                Err(de::Error::custom("a mapping cannot be a key"))
            }
        }
        d.deserialize_any(KeyVisitor)
    }
}

/// Parses every document of a YAML text. Empty documents are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<Node>, serde_saphyr::Error> {
    serde_saphyr::from_multiple::<Node>(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_lines_of_keys_and_items() {
        let docs = parse_documents(
            "a: 1\nb:\n  c: x\n  d:\n    - p\n    - q\n---\n# empty\n---\nk: [1, 2]\n",
        );
        let docs = match docs {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(docs.len(), 2);
        let key = |s: &str| Step::Key(s.to_string());
        assert_eq!(docs[0].line_of(&[key("a")]), 1);
        assert_eq!(docs[0].line_of(&[key("b"), key("c")]), 3);
        assert_eq!(docs[0].line_of(&[key("b"), key("d"), Step::Index(1)]), 6);
        assert_eq!(
            docs[0].line_of(&[key("b"), key("missing"), key("deeper")]),
            2
        );
        assert_eq!(docs[1].line_of(&[key("k")]), 10);
        assert_eq!(
            docs[0].to_json(),
            serde_json::json!({"a": 1, "b": {"c": "x", "d": ["p", "q"]}})
        );
    }
}
