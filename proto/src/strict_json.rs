//! JSON parsing that refuses a member named twice in one object, into a tree that borrows its
//! strings from the text.
//!
//! serde_json keeps the last of duplicate members silently, while other JSON readers keep the
//! first. The relay stores a notice's bytes as received once they validate, so a duplicate
//! member would let what was validated (the last) differ from what another reader of the
//! stored notice sees (maybe the first): such a body is refused as not readable JSON.
//!
//! The tree ([`Json`]) is what validation walks. It exists because validation runs on every
//! notice the relay ingests: a [`serde_json::Value`] copies every string and member name and
//! sorts each object into a B-tree, which (with freeing it again) was half of the relay's
//! validation time. [`Json`] borrows every string without escapes from the text, keeps each
//! object's members in document order, and is built from a caller's [`Value`] without copying
//! strings either ([`Json::from_value`]).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

/// A JSON value whose strings borrow from the text (or from the [`Value`]) it was read from.
#[derive(Debug, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Object<'a>),
}

/// An object's members in document order; their names are unique (the parser refuses a
/// duplicate; a [`Value`]'s map cannot hold one).
#[derive(Debug, PartialEq, Default)]
pub(crate) struct Object<'a>(Vec<(Cow<'a, str>, Json<'a>)>);

impl<'a> Object<'a> {
    /// The member named `key`. A linear search: a notice's objects have at most nine members,
    /// and validation asks for each known member once or twice whatever the object holds.
    pub(crate) fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub(crate) fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = (&str, &Json<'a>)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_ref())
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Json<'a>> {
        self.0.iter().map(|(_, v)| v)
    }
}

impl<'a> Json<'a> {
    /// Member `key` of an object (`None` for anything else).
    pub(crate) fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(o) => o.get(key),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    fn has_children(&self) -> bool {
        match self {
            Json::Array(items) => !items.is_empty(),
            Json::Object(o) => o.len() > 0,
            _ => false,
        }
    }

    /// `value` as a tree borrowing its strings, built with an explicit stack: a caller's value
    /// may nest deeper than the stack allows.
    pub(crate) fn from_value(value: &'a Value) -> Json<'a> {
        /// A container being built: the children left to visit and those built so far.
        enum Frame<'a> {
            Array(std::slice::Iter<'a, Value>, Vec<Json<'a>>),
            Object(
                serde_json::map::Iter<'a>,
                Vec<(Cow<'a, str>, Json<'a>)>,
                Option<&'a str>,
            ),
        }
        let open = |v: &'a Value| -> Result<Json<'a>, Frame<'a>> {
            Ok(match v {
                Value::Null => Json::Null,
                Value::Bool(b) => Json::Bool(*b),
                Value::Number(n) => Json::Number(n.clone()),
                Value::String(s) => Json::String(Cow::Borrowed(s)),
                Value::Array(items) => {
                    return Err(Frame::Array(items.iter(), Vec::with_capacity(items.len())));
                }
                Value::Object(map) => {
                    return Err(Frame::Object(
                        map.iter(),
                        Vec::with_capacity(map.len()),
                        None,
                    ));
                }
            })
        };
        let add = |frame: &mut Frame<'a>, child: Json<'a>| match frame {
            Frame::Array(_, built) => built.push(child),
            Frame::Object(_, built, key) => {
                built.push((Cow::Borrowed(key.take().unwrap_or_default()), child));
            }
        };
        let mut stack = match open(value) {
            Ok(leaf) => return leaf,
            Err(frame) => vec![frame],
        };
        loop {
            let Some(top) = stack.last_mut() else {
                return Json::Null; // unreachable: the root frame returns below
            };
            let next = match top {
                Frame::Array(rest, _) => rest.next(),
                Frame::Object(rest, _, key) => rest.next().map(|(k, v)| {
                    *key = Some(k.as_str());
                    v
                }),
            };
            match next {
                Some(child) => match open(child) {
                    Ok(leaf) => add(top, leaf),
                    Err(frame) => stack.push(frame),
                },
                None => {
                    let done = match stack.pop() {
                        Some(Frame::Array(_, built)) => Json::Array(built),
                        Some(Frame::Object(_, built, _)) => Json::Object(Object(built)),
                        None => Json::Null,
                    };
                    match stack.last_mut() {
                        Some(parent) => add(parent, done),
                        None => return done,
                    }
                }
            }
        }
    }
}

impl Drop for Json<'_> {
    /// Without recursion: a tree built from a caller's value may nest deeper than the stack
    /// allows. Containers whose children hold nothing are dropped as usual.
    fn drop(&mut self) {
        let mut stack: Vec<Json<'_>> = match self {
            Json::Array(items) if items.iter().any(Json::has_children) => std::mem::take(items),
            Json::Object(o) if o.values().any(Json::has_children) => std::mem::take(&mut o.0)
                .into_iter()
                .map(|(_, v)| v)
                .collect(),
            _ => return,
        };
        while let Some(mut v) = stack.pop() {
            match &mut v {
                Json::Array(items) => stack.append(items),
                Json::Object(o) => {
                    stack.extend(std::mem::take(&mut o.0).into_iter().map(|(_, v)| v))
                }
                _ => {}
            }
            // `v` is dropped here with nothing inside.
        }
    }
}

/// Parse `text` into a [`Json`], refusing duplicate members (serde_json's other errors,
/// including its nesting limit, as usual).
pub(crate) fn value(text: &str) -> Result<Json<'_>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = Strict.deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// Objects with more members than this are checked for duplicates by sorting their names once
/// complete; smaller ones by comparing each name with those before it.
const LINEAR_MEMBERS: usize = 16;

struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Json<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

/// A member name, borrowed from the text when it has no escapes.
struct Name;

impl<'de> DeserializeSeed<'de> for Name {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Name {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

fn twice<E: de::Error>(name: &str) -> E {
    let shown: String = name.chars().take(64).collect();
    E::custom(format!("member {shown:?} appears twice in one object"))
}

impl<'de> Visitor<'de> for Strict {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Json<'de>, E> {
        Ok(Number::from_f64(v).map_or(Json::Null, Json::Number))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict)? {
            out.push(v);
        }
        Ok(Json::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut out: Vec<(Cow<'de, str>, Json<'de>)> = Vec::new();
        while let Some(k) = map.next_key_seed(Name)? {
            if out.len() < LINEAR_MEMBERS && out.iter().any(|(seen, _)| *seen == k) {
                return Err(twice(&k));
            }
            let v = map.next_value_seed(Strict)?;
            out.push((k, v));
        }
        if out.len() > LINEAR_MEMBERS {
            let mut names: Vec<&str> = out.iter().map(|(k, _)| k.as_ref()).collect();
            names.sort_unstable();
            if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
                return Err(twice(w[0]));
            }
        }
        Ok(Json::Object(Object(out)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn values_parse_as_serde_json_parses_them() {
        // Members in sorted order: a Value's map iterates sorted, the tree keeps the text's order.
        let text = r#"{"a": [1, -2, 3.5, true, null, "x", "\u00e9t\u00e9"], "b": {"c": {}}, "d": 18446744073709551615}"#;
        let value_of_serde = serde_json::from_str::<Value>(text).unwrap();
        assert_eq!(value(text).unwrap(), Json::from_value(&value_of_serde));
    }

    #[test]
    fn strings_without_escapes_borrow_from_the_text() {
        let v = value(r#"{"plain": "abc", "esc\u0061ped": "x\ny"}"#).unwrap();
        let Json::Object(o) = &v else { panic!("{v:?}") };
        let members: Vec<_> = o.0.iter().collect();
        assert!(matches!(members[0].0, Cow::Borrowed("plain")));
        assert!(matches!(&members[0].1, Json::String(Cow::Borrowed("abc"))));
        assert_eq!(members[1].0, "escaped");
        assert!(matches!(members[1].0, Cow::Owned(_)));
        assert_eq!(members[1].1.as_str(), Some("x\ny"));
        assert_eq!(
            o.keys().collect::<Vec<_>>(),
            ["plain", "escaped"],
            "document order"
        );
    }

    #[test]
    fn a_member_named_twice_is_refused_in_objects_of_any_size() {
        for n in [2, 15, 16, 17, 40, 5_000] {
            let mut members: Vec<String> = (0..n).map(|i| format!("\"m{i}\": {i}")).collect();
            assert!(value(&format!("{{{}}}", members.join(","))).is_ok(), "{n}");
            members.push(format!("\"m{}\": 0", n / 2));
            let e = value(&format!("{{{}}}", members.join(","))).unwrap_err();
            assert!(
                e.to_string()
                    .contains(&format!("\"m{}\" appears twice", n / 2)),
                "{n}: {e}"
            );
        }
    }

    #[test]
    fn a_deep_value_converts_and_drops_without_recursion() {
        let mut v = Value::Null;
        for _ in 0..100_000 {
            v = Value::Array(vec![v]);
        }
        let tree = Json::from_value(&v);
        let mut depth = 0;
        let mut at = &tree;
        while let Json::Array(items) = at {
            depth += 1;
            at = &items[0];
        }
        assert_eq!((depth, at), (100_000, &Json::Null));
        drop(tree);
        // serde_json's own Drop recurses: take the value apart by hand.
        while let Value::Array(mut items) = v {
            v = items.pop().unwrap_or(Value::Null);
        }
    }

    #[test]
    fn a_member_named_twice_is_refused_at_any_depth() {
        let e = value(r#"{"id": "a", "id": "b"}"#).unwrap_err();
        assert!(e.to_string().contains("\"id\" appears twice"), "{e}");
        assert!(value(r#"{"data": {"keys": {"x": 1, "x": 2}}}"#).is_err());
        assert!(value(r#"[{"a": 1}, {"a": 2}]"#).is_ok(), "separate objects");
        assert!(value(r#"{"a": 1} x"#).is_err(), "trailing bytes");
    }
}
