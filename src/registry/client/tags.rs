//! A tag list page read as it streams in, keeping at most the room left:
//! a registry that lists millions of tags does not fill memory.

/// One page of a tag list, `{"tags": [...]}` (other members ignored, a
/// null or missing `tags` is empty), keeping at most `room` valid tags.
pub(super) struct TagPage {
    pub(super) room: usize,
}

#[derive(Default)]
pub(super) struct ListedTags {
    pub(super) tags: Vec<String>,
    /// Names that are not valid tags, not kept.
    pub(super) dropped: usize,
    /// More valid tags than `room`; those past it are not kept.
    pub(super) over: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for TagPage {
    type Value = ListedTags;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<ListedTags, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TagPage {
    type Value = ListedTags;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object with a tags array")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ListedTags, A::Error> {
        let mut listed = ListedTags::default();
        while let Some(key) = map.next_key::<String>()? {
            if key == "tags" {
                listed = map.next_value_seed(TagArray { room: self.room })?;
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(listed)
    }
}

pub(super) struct TagArray {
    pub(super) room: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for TagArray {
    type Value = ListedTags;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<ListedTags, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TagArray {
    type Value = ListedTags;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of tags or null")
    }
    fn visit_none<E>(self) -> Result<ListedTags, E> {
        Ok(ListedTags::default())
    }
    fn visit_unit<E>(self) -> Result<ListedTags, E> {
        Ok(ListedTags::default())
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<ListedTags, D::Error> {
        d.deserialize_seq(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<ListedTags, A::Error> {
        let mut listed = ListedTags::default();
        while let Some(tag) = seq.next_element::<String>()? {
            if !crate::model::is_tag(&tag) {
                listed.dropped += 1;
            } else if listed.tags.len() < self.room {
                listed.tags.push(tag);
            } else {
                listed.over = true;
                // The rest is read, not kept, so the error is the cap's.
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                break;
            }
        }
        Ok(listed)
    }
}

#[cfg(test)]
mod tag_page_tests {
    use super::*;

    fn parse(body: &str, room: usize) -> Result<ListedTags, serde_json::Error> {
        let mut page = serde_json::Deserializer::from_str(body);
        let list = serde::de::DeserializeSeed::deserialize(TagPage { room }, &mut page)?;
        page.end().map(|()| list)
    }

    #[test]
    fn a_page_keeps_at_most_its_room_and_says_so() {
        let tags: Vec<String> = (0..5000).map(|i| format!("t{i}")).collect();
        let body = serde_json::json!({"name": "x", "tags": tags, "manifest": {"a": 1}}).to_string();
        let list = parse(&body, 1000).unwrap_or_else(|e| panic!("{e}"));
        assert!(list.over);
        assert_eq!(list.tags.len(), 1000);
        let list = parse(&body, 5000).unwrap_or_else(|e| panic!("{e}"));
        assert!(!list.over);
        assert_eq!(list.tags.len(), 5000);
    }

    #[test]
    fn null_missing_and_invalid_tags() {
        for body in [r#"{"tags": null}"#, r#"{"name": "x"}"#] {
            let list = parse(body, 10).unwrap_or_else(|e| panic!("{e}"));
            assert!(list.tags.is_empty() && !list.over);
        }
        let list =
            parse(r#"{"tags": ["1.0", "../x", "-a"]}"#, 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((list.tags, list.dropped), (vec!["1.0".to_string()], 2));
        for body in [
            r#"{"tags": 3}"#,
            r#"{"tags": [1]}"#,
            r#"{"tags": []} x"#,
            "[]",
        ] {
            assert!(parse(body, 10).is_err(), "{body}");
        }
    }
}
