//! docs/config/relay.md and docs/config/agent.md against the configuration types, so a key
//! cannot go undocumented and the references cannot name a key the loaders refuse.
//!
//! Which keys a loader accepts is learned from the types themselves: the complete examples in
//! each reference (the ```toml blocks starting `# relay.toml` / `# agent.toml`) are loaded with
//! the real loader's extraction (`shirase_service::config::extract`), then, at every table of
//! them, an unknown key is added and the deserializer's "unknown field, expected one of …"
//! answer lists every key that table takes, set or not. A key added to a `Raw*` struct therefore
//! shows up here as soon as its table is in an example. Values typed elsewhere (the relay keeps
//! a provider's calendar as JSON until validation) are probed with their own type.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::{BTreeMap, BTreeSet};

use figment::Figment;
use figment::error::Kind;
use figment::providers::{Format, Serialized, Toml};
use serde::de::DeserializeOwned;
use serde_json::Value;
use shirase_proto::maintenance::{Calendar, Config as CalendarConfig};
use shirase_tests::harness::workspace_root;

/// A key the probe adds; no configuration type has it.
const PROBE: &str = "zz_undocumented_probe";
/// A value the variant probe writes; no enum has it.
const PROBE_VARIANT: &str = "zz_probe_variant";

/// One row of a reference's key tables.
#[derive(Debug, Clone)]
pub(crate) struct KeyRow {
    pub key: String,
    pub line: usize,
    pub default: String,
    pub text: String,
}

/// One component's reference and what its loader accepts.
pub(crate) struct Reference {
    /// Repository path of the reference.
    pub file: &'static str,
    /// Repository path of the defaults file.
    pub defaults_file: &'static str,
    pub defaults_toml: &'static str,
    /// The raw configuration type, for messages.
    pub type_name: &'static str,
    /// What the loader accepts: key patterns (`providers[].interfaces[].id`).
    pub accepted: BTreeSet<String>,
    /// Enum values of string keys (`sink.kind` → file, http, command).
    pub variants: BTreeMap<String, Vec<String>>,
    /// The documented keys.
    pub rows: Vec<KeyRow>,
    /// Problems found while loading the examples (an example that no longer loads).
    pub example_problems: Vec<String>,
}

impl Reference {
    pub(crate) fn relay() -> Self {
        let mut r = Self::build::<shirase_relay::config::RawConfig>(
            "docs/config/relay.md",
            "relay/relay.default.toml",
            shirase_relay::config::DEFAULT_TOML,
            shirase_relay::config::RENAMED,
            "shirase_relay::config::RawConfig",
            "# relay.toml",
        );
        // The relay keeps `[providers.maintenance]` as JSON until validation turns it into the
        // calendar's own type: ask that type which keys it takes.
        let mut extra = BTreeSet::new();
        for ex in example_trees(r.file, "# relay.toml", r.defaults_toml) {
            for p in ex["providers"].as_array().into_iter().flatten() {
                if p["maintenance"].is_object() {
                    let (keys, _) = keys_of::<CalendarConfig>(&p["maintenance"]);
                    extra.extend(
                        keys.into_iter()
                            .map(|k| format!("providers[].maintenance.{k}")),
                    );
                }
            }
        }
        r.accepted.extend(extra);
        r
    }

    pub(crate) fn agent() -> Self {
        Self::build::<shirase_subscriber_kit::config::RawConfig>(
            "docs/config/agent.md",
            "subscriber-kit/src/agent.default.toml",
            shirase_subscriber_kit::config::DEFAULT_TOML,
            shirase_subscriber_kit::config::RENAMED,
            "shirase_subscriber_kit::config::RawConfig",
            "# agent.toml",
        )
    }

    fn build<T: DeserializeOwned>(
        file: &'static str,
        defaults_file: &'static str,
        defaults_toml: &'static str,
        renamed: &[shirase_proto::config::Renamed],
        type_name: &'static str,
        marker: &str,
    ) -> Self {
        let text = read(file);
        let mut accepted = BTreeSet::new();
        let mut variants = BTreeMap::new();
        let mut example_problems = Vec::new();
        let blocks: Vec<(usize, String)> = toml_blocks(&text)
            .into_iter()
            .filter(|(_, b)| b.starts_with(marker))
            .collect();
        assert!(
            !blocks.is_empty(),
            "{file} has no complete example (a ```toml block starting {marker:?})"
        );
        for (line, block) in &blocks {
            let fig = Figment::from(Toml::string(defaults_toml)).merge(Toml::string(block));
            let (raw, problems) =
                shirase_service::config::extract::<T>(&fig, defaults_toml, renamed);
            if raw.is_none() || !problems.is_empty() {
                let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
                example_problems.push(format!(
                    "{file}:{line}: the example no longer loads ({type_name}): {}",
                    list.join("; ")
                ));
                continue;
            }
            let tree: Value = fig.extract().unwrap();
            let (keys, vars) = keys_of::<T>(&tree);
            accepted.extend(keys);
            variants.extend(vars);
        }
        Self {
            file,
            defaults_file,
            defaults_toml,
            type_name,
            accepted,
            variants,
            rows: key_rows(&text),
            example_problems,
        }
    }

    /// The documented key patterns (`providers[]` names the list `providers`), and the tables
    /// holding documented keys (`http` for `http.listen`), which need no row of their own.
    pub(crate) fn documented(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for r in &self.rows {
            let key = r.key.trim_end_matches("[]");
            out.insert(key.to_owned());
            let mut prefix = String::new();
            for seg in key.split('.') {
                if !prefix.is_empty() {
                    out.insert(prefix.trim_end_matches("[]").to_owned());
                    prefix.push('.');
                }
                prefix.push_str(seg);
            }
        }
        out
    }

    /// Whether `path` (a pattern, or dotted keys with or without `[]`) is accepted.
    pub(crate) fn accepts(&self, path: &str) -> bool {
        let want = path.replace("[]", "");
        self.accepted.iter().any(|k| k.replace("[]", "") == want)
    }
}

pub(crate) fn read(rel: &str) -> String {
    std::fs::read_to_string(workspace_root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The ```toml blocks of a markdown text, with the line of their first content line.
pub(crate) fn toml_blocks(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    for (i, l) in text.lines().enumerate() {
        match &mut cur {
            None if l.trim_start().starts_with("```toml") => cur = Some((i + 2, String::new())),
            Some(_) if l.trim_start().starts_with("```") => out.extend(cur.take()),
            Some((_, b)) => {
                b.push_str(l);
                b.push('\n');
            }
            None => {}
        }
    }
    out
}

fn example_trees(file: &str, marker: &str, defaults_toml: &str) -> Vec<Value> {
    toml_blocks(&read(file))
        .into_iter()
        .filter(|(_, b)| b.starts_with(marker))
        .filter_map(|(_, b)| {
            Figment::from(Toml::string(defaults_toml))
                .merge(Toml::string(&b))
                .extract()
                .ok()
        })
        .collect()
}

/// Rows of the tables whose header starts `| key |`.
fn key_rows(text: &str) -> Vec<KeyRow> {
    let mut out = Vec::new();
    let mut in_keys = false;
    for (i, l) in text.lines().enumerate() {
        if !l.starts_with('|') {
            in_keys = false;
            continue;
        }
        let cells = cells(l);
        if cells.first().map(String::as_str) == Some("key") {
            in_keys = true;
            continue;
        }
        if !in_keys || cells.first().is_some_and(|c| c.starts_with("---")) {
            continue;
        }
        let key = cells[0].trim_matches('`').to_owned();
        out.push(KeyRow {
            key,
            line: i + 1,
            default: cells.get(2).cloned().unwrap_or_default(),
            text: l.to_owned(),
        });
    }
    out
}

/// The cells of a markdown table row (`\|` does not split).
fn cells(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev = ' ';
    for c in line.trim().trim_start_matches('|').chars() {
        if c == '|' && prev != '\\' {
            out.push(cur.trim().to_owned());
            cur.clear();
        } else {
            cur.push(c);
        }
        prev = c;
    }
    out
}

fn join(pattern: &str, key: &str) -> String {
    if pattern.is_empty() {
        key.to_owned()
    } else {
        format!("{pattern}.{key}")
    }
}

fn node_mut<'a>(v: &'a mut Value, segs: &[String]) -> Option<&'a mut Value> {
    segs.iter().try_fold(v, |v, s| match v {
        Value::Object(m) => m.get_mut(s),
        Value::Array(a) => s.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
        _ => None,
    })
}

/// The errors `T` reports for `tree`.
fn errors<T: DeserializeOwned>(tree: &Value) -> Vec<Kind> {
    match Figment::from(Serialized::defaults(tree)).extract::<T>() {
        Ok(_) => Vec::new(),
        Err(e) => e.into_iter().map(|e| e.kind).collect(),
    }
}

/// Every key pattern `T` accepts at the tables `tree` has (which `T` must accept whole), and
/// the enum values of its string keys.
pub(crate) fn keys_of<T: DeserializeOwned>(
    tree: &Value,
) -> (BTreeSet<String>, BTreeMap<String, Vec<String>>) {
    let mut keys = BTreeSet::new();
    let mut variants = BTreeMap::new();
    walk::<T>(tree, &mut Vec::new(), "", &mut keys, &mut variants);
    (keys, variants)
}

fn walk<T: DeserializeOwned>(
    tree: &Value,
    segs: &mut Vec<String>,
    pattern: &str,
    keys: &mut BTreeSet<String>,
    variants: &mut BTreeMap<String, Vec<String>>,
) {
    let mut probed = tree.clone();
    let node = node_mut(&mut probed, segs)
        .expect("walk stays inside the tree")
        .clone();
    match node {
        Value::Object(map) => {
            if let Some(Value::Object(m)) = node_mut(&mut probed, segs) {
                m.insert(PROBE.into(), Value::Bool(true));
            }
            let mut expected_here: Vec<&'static str> = Vec::new();
            for k in errors::<T>(&probed) {
                if let Kind::UnknownField(f, expected) = k
                    && f == PROBE
                {
                    expected_here.extend(expected.iter().copied());
                }
            }
            for e in &expected_here {
                keys.insert(join(pattern, e));
                if !map.contains_key(*e) {
                    // A key no example sets may be a table (or a list of tables): probe inside it,
                    // so a new section's keys are found before anyone writes an example of it.
                    let inner = probe_absent_table::<T>(tree, segs, e);
                    let p = join(pattern, e);
                    for (suffix, inner_key) in inner {
                        keys.insert(format!("{p}{suffix}.{inner_key}"));
                    }
                }
            }
            for (k, _) in map {
                let p = join(pattern, &k);
                keys.insert(p.clone());
                segs.push(k);
                walk::<T>(tree, segs, &p, keys, variants);
                segs.pop();
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if item.is_object() || item.is_array() {
                    segs.push(i.to_string());
                    walk::<T>(tree, segs, &format!("{pattern}[]"), keys, variants);
                    segs.pop();
                }
            }
        }
        Value::String(_) => {
            if let Some(v) = node_mut(&mut probed, segs) {
                *v = Value::String(PROBE_VARIANT.into());
            }
            for k in errors::<T>(&probed) {
                if let Kind::UnknownVariant(f, expected) = k
                    && f == PROBE_VARIANT
                {
                    variants.insert(
                        pattern.to_owned(),
                        expected.iter().map(|e| (*e).to_owned()).collect(),
                    );
                }
            }
        }
        _ => {}
    }
}

/// The keys of the table (suffix `""`) or list of tables (suffix `"[]"`) that `T` takes at
/// `segs.key`, which the tree does not set; empty when it takes neither there.
fn probe_absent_table<T: DeserializeOwned>(
    tree: &Value,
    segs: &[String],
    key: &str,
) -> Vec<(&'static str, String)> {
    let mut probe = serde_json::Map::new();
    probe.insert(PROBE.into(), Value::Bool(true));
    for (suffix, value) in [
        ("", Value::Object(probe.clone())),
        ("[]", Value::Array(vec![Value::Object(probe.clone())])),
    ] {
        let mut t = tree.clone();
        if let Some(Value::Object(m)) = node_mut(&mut t, segs) {
            m.insert(key.to_owned(), value);
        }
        for k in errors::<T>(&t) {
            if let Kind::UnknownField(f, expected) = k
                && f == PROBE
            {
                return expected.iter().map(|e| (suffix, (*e).to_owned())).collect();
            }
        }
    }
    Vec::new()
}

/// Leaves of a tree as (pattern, value).
pub(crate) fn leaves(tree: &Value, pattern: &str, out: &mut Vec<(String, Value)>) {
    match tree {
        Value::Object(m) => {
            for (k, v) in m {
                leaves(v, &join(pattern, k), out);
            }
        }
        Value::Array(a) if a.iter().any(|v| v.is_object()) => {
            for v in a {
                leaves(v, &format!("{pattern}[]"), out);
            }
        }
        other => out.push((pattern.to_owned(), other.clone())),
    }
}

/// Every problem of one reference, each naming the key and the file to change.
fn problems(r: &Reference) -> Vec<String> {
    let mut out = r.example_problems.clone();
    let documented = r.documented();
    for k in r.accepted.difference(&documented) {
        out.push(format!(
            "`{k}` is accepted by {} but not documented: add a row \
             \"| `{k}` | type | default | meaning |\" to {}",
            r.type_name, r.file
        ));
    }
    for row in &r.rows {
        if !r.accepted.contains(row.key.trim_end_matches("[]")) {
            out.push(format!(
                "{}:{}: documents `{}`, which {} does not accept (the loader refuses it): \
                 remove the row or correct the key",
                r.file, row.line, row.key, r.type_name
            ));
        }
    }
    // Defaults: every value of the defaults file, as the row's default cell shows it.
    let defaults: Value = Figment::from(Toml::string(r.defaults_toml))
        .extract()
        .unwrap();
    let mut ls = Vec::new();
    leaves(&defaults, "", &mut ls);
    for (key, v) in ls {
        let shown = format!("`{}`", serde_json::to_string(&v).unwrap());
        match r.rows.iter().find(|row| row.key == key) {
            Some(row) if row.default.contains(&shown) => {}
            Some(row) => out.push(format!(
                "{}:{}: the default of `{key}` is {shown} ({}), the row says {:?}: correct it",
                r.file, row.line, r.defaults_file, row.default
            )),
            None => {} // reported above as undocumented
        }
    }
    // Enum values: each named in its key's row.
    for (key, vals) in &r.variants {
        let Some(row) = r.rows.iter().find(|row| &row.key == key) else {
            continue;
        };
        for v in vals {
            if !row.text.contains(&format!("`\"{v}\"`")) {
                out.push(format!(
                    "{}:{}: `{key}` also takes `\"{v}\"` ({}): name it in the row",
                    r.file, row.line, r.type_name
                ));
            }
        }
    }
    // Every TOML block: its keys are accepted, and its calendars build.
    for (line, block) in toml_blocks(&read(r.file)) {
        let tree: Value = match Figment::from(Toml::string(&block)).extract() {
            Ok(t) => t,
            Err(e) => {
                out.push(format!(
                    "{}:{line}: the TOML block does not parse: {e}",
                    r.file
                ));
                continue;
            }
        };
        let mut ls = Vec::new();
        leaves(&tree, "", &mut ls);
        for (key, _) in &ls {
            if !r.accepts(key) {
                out.push(format!(
                    "{}:{line}: the TOML block sets `{key}`, which {} does not accept",
                    r.file, r.type_name
                ));
            }
        }
        out.extend(calendar_problems(&tree, &format!("{}:{line}", r.file)));
    }
    out
}

/// Each `maintenance` table under `providers` must make a calendar.
fn calendar_problems(tree: &Value, at: &str) -> Vec<String> {
    let providers: Vec<&Value> = match &tree["providers"] {
        Value::Array(a) => a.iter().collect(),
        v @ Value::Object(_) => vec![v],
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for p in providers {
        if !p["maintenance"].is_object() {
            continue;
        }
        // A block holding only `extra` entries is completed by the default windows.
        match Figment::from(Serialized::defaults(&p["maintenance"])).extract::<CalendarConfig>() {
            Ok(c) => {
                if let Err(e) = Calendar::new(&c) {
                    out.push(format!("{at}: the maintenance calendar is refused: {e}"));
                }
            }
            Err(e) => out.push(format!("{at}: the maintenance table does not load: {e}")),
        }
    }
    out
}

#[test]
fn relay_reference_documents_every_accepted_key_and_only_those() {
    let r = Reference::relay();
    for k in [
        "providers[].maintenance.extra[].date",
        "notifier.email.smtp_port",
        "providers[].watch.api.from.date",
    ] {
        assert!(
            r.accepted.contains(k),
            "the probe did not find {k}: {:?}",
            r.accepted
        );
    }
    assert!(r.accepted.len() > 100, "{}", r.accepted.len());
    let p = problems(&r);
    assert!(
        p.is_empty(),
        "docs/config/relay.md is out of date:\n  {}",
        p.join("\n  ")
    );
}

#[test]
fn agent_reference_documents_every_accepted_key_and_only_those() {
    let r = Reference::agent();
    assert_eq!(
        r.variants.get("sink.kind").map(Vec::as_slice),
        Some(["file", "http", "command"].map(String::from).as_slice())
    );
    for k in [
        "sink.spool_dir",
        "providers[].interfaces[].keyed_pull_max_keys",
        "providers[].maintenance.cancel",
    ] {
        assert!(
            r.accepted.contains(k),
            "the probe did not find {k}: {:?}",
            r.accepted
        );
    }
    let p = problems(&r);
    assert!(
        p.is_empty(),
        "docs/config/agent.md is out of date:\n  {}",
        p.join("\n  ")
    );
}

/// The probe itself: a key a type accepts but an example does not set is still found, and a
/// reference lacking it is reported with the key and the file to add it to.
#[test]
fn a_key_missing_from_a_reference_is_reported_with_the_file_to_add_it_to() {
    let minimal = r#"
subscriber = "tax"
municipality = "131016"
sink = { kind = "http", url = "https://import.example.lg.jp" }
"#;
    let tree: Value = Figment::from(Toml::string(shirase_subscriber_kit::config::DEFAULT_TOML))
        .merge(Toml::string(minimal))
        .extract()
        .unwrap();
    let (keys, _) = keys_of::<shirase_subscriber_kit::config::RawConfig>(&tree);
    assert!(keys.contains("sink.timeout"), "{keys:?}");
    assert!(keys.contains("providers"), "{keys:?}");
    // A section no example writes is probed too: its keys are found.
    assert!(keys.contains("providers[].business_id"), "{keys:?}");
    let mut r = Reference::agent();
    r.rows.retain(|row| row.key != "sink.timeout");
    r.rows.push(KeyRow {
        key: "sink.retries".into(),
        line: 7,
        default: "`3`".into(),
        text: String::new(),
    });
    let p = problems(&r);
    assert!(
        p.iter().any(|m| m.starts_with("`sink.timeout` is accepted by shirase_subscriber_kit::config::RawConfig but not documented")
            && m.ends_with("to docs/config/agent.md")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|m| m.starts_with("docs/config/agent.md:7: documents `sink.retries`")),
        "{p:?}"
    );
}
