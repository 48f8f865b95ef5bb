//! The pieces the relay's and the agent's configuration loaders share, so both report problems
//! the same way: field paths (`providers[1].interfaces[0].id`), the problem list, the
//! configuration error, duration strings (`"500ms"`, `"60s"`, `"2m"`, `"14d"`), renamed keys
//! (an old key is an error naming the new one) and path rebasing.
//!
//! Pure: no file or environment access. The loaders read files and variables (with figment),
//! turn the merged layers into a [`serde_json::Value`] tree and hand it here.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// Field path, e.g. `providers[1].business_id`; empty for the file as a whole.
    pub path: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// What kind of configuration failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// The file could not be read or parsed, a key is unknown or renamed, or a value has the
    /// wrong type.
    Load,
    /// The values parsed but break a rule.
    Invalid,
}

/// A configuration could not be loaded; every problem found is listed, each naming its field.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    kind: ConfigErrorKind,
    component: &'static str,
    /// The problems, each naming its field.
    pub problems: Vec<FieldProblem>,
}

impl ConfigError {
    /// An error of `component` (`"relay"`, `"agent"`) with these problems.
    pub fn new(
        kind: ConfigErrorKind,
        component: &'static str,
        problems: Vec<FieldProblem>,
    ) -> Self {
        Self {
            kind,
            component,
            problems,
        }
    }

    /// One load problem (a missing file, unreadable TOML).
    pub fn load(
        component: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(
            ConfigErrorKind::Load,
            component,
            vec![FieldProblem {
                path: path.into(),
                message: message.into(),
            }],
        )
    }

    /// Whether loading or validation failed.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// Whether some problem names exactly this field path.
    pub fn names(&self, path: &str) -> bool {
        self.problems.iter().any(|p| p.path == path)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} configuration ({} problem(s)):",
            self.component,
            self.problems.len()
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// Collects problems while a configuration is validated, so all of them are reported at once.
#[derive(Debug, Default)]
pub struct Problems(Vec<FieldProblem>);

impl Problems {
    /// No problems yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record a problem at `path`.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldProblem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Record problems found elsewhere.
    pub fn extend(&mut self, problems: impl IntoIterator<Item = FieldProblem>) {
        self.0.extend(problems);
    }

    /// Parse `value` with `FromStr`; a failure is recorded at `path`.
    pub fn parse<T: std::str::FromStr>(&mut self, path: &str, value: &str) -> Option<T>
    where
        T::Err: fmt::Display,
    {
        match value.parse() {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(path, e.to_string());
                None
            }
        }
    }

    /// Parse a duration string ([`parse_duration`]); a failure is recorded at `path`.
    pub fn duration(&mut self, path: &str, value: &str) -> Option<Duration> {
        match parse_duration(value) {
            Ok(d) => Some(d),
            Err(e) => {
                self.push(path, e);
                None
            }
        }
    }

    /// Parse a byte size ([`parse_size`]); a failure is recorded at `path`.
    pub fn size(&mut self, path: &str, value: &str) -> Option<u64> {
        match parse_size(value) {
            Ok(n) => Some(n),
            Err(e) => {
                self.push(path, e);
                None
            }
        }
    }

    /// An optional path as written: absent is `None`; an empty string is a problem (leave the
    /// key out instead).
    pub fn optional_path(&mut self, path: &str, value: &Option<PathBuf>) -> Option<PathBuf> {
        match value {
            Some(p) if p.as_os_str().is_empty() => {
                self.push(path, "empty path: leave the key out for none");
                None
            }
            other => other.clone(),
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems recorded so far.
    pub fn as_slice(&self) -> &[FieldProblem] {
        &self.0
    }

    /// The recorded problems.
    pub fn into_vec(self) -> Vec<FieldProblem> {
        self.0
    }
}

/// Parse a duration string: `"500ms"`, `"30s"`, `"2m"`, `"2h"`, `"14d"`, `"1h 30m"`; days are
/// 24 hours, `m` is minutes.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let span: jiff::Span = s.parse().map_err(|_| {
        format!("{s:?} is not a duration; write e.g. \"500ms\", \"30s\", \"2m\", \"2h\", \"14d\"")
    })?;
    let sd = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|e| format!("{s:?}: {e}"))?;
    Duration::try_from(sd).map_err(|_| format!("{s:?} must not be negative"))
}

/// A byte size as written in configuration files: a whole number with a binary unit, `"512KiB"`,
/// `"64MiB"`, `"8GiB"`, `"1TiB"`, or plain bytes (`"4096"`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad =
        || format!("{s:?} is not a size; write e.g. \"64MiB\", \"8GiB\" (or bytes: \"4096\")");
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = t.split_at(digits);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        "TiB" => 40,
        _ => return Err(bad()),
    };
    n.checked_mul(1 << shift)
        .filter(|v| i64::try_from(*v).is_ok())
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A field path from its segments: `["providers", "1", "id"]` → `providers[1].id`.
pub fn field_path<S: AsRef<str>>(segments: &[S]) -> String {
    let mut out = String::new();
    for s in segments {
        let s = s.as_ref();
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(s);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(s);
        }
    }
    out
}

/// A relative `path` is taken relative to `base_dir` (the configuration file's directory).
pub fn rebase(path: &Path, base_dir: Option<&Path>) -> PathBuf {
    match base_dir {
        Some(d) if path.is_relative() => d.join(path),
        _ => path.to_path_buf(),
    }
}

/// A key that no longer exists. `old` is its path with `[]` for any list index
/// (`providers[].timeout_ms`).
#[derive(Debug, Clone, Copy)]
pub struct Renamed {
    /// The old key's path pattern.
    pub old: &'static str,
    /// The new key's name in the same table; `None` when the key was removed.
    pub new: Option<&'static str>,
    /// What the new key takes (`a duration string such as "200ms"`), or why the key went.
    pub hint: &'static str,
}

/// Take every key of `tree` listed in `table` out of it, each reported at its path as
/// `renamed to <new path> (<hint>)` or `removed: <hint>`, so that the rest of the tree can be
/// deserialized and validated and all problems are reported together.
pub fn take_renamed(tree: &mut Value, table: &[Renamed]) -> Vec<FieldProblem> {
    let mut out = Vec::new();
    walk_renamed(tree, "", "", table, &mut out);
    out
}

fn walk_renamed(
    v: &mut Value,
    pattern: &str,
    actual: &str,
    table: &[Renamed],
    out: &mut Vec<FieldProblem>,
) {
    let join = |prefix: &str, key: &str| {
        if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        }
    };
    match v {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let (p, a) = (join(pattern, &k), join(actual, &k));
                if let Some(r) = table.iter().find(|r| r.old == p) {
                    map.remove(&k);
                    let message = match r.new {
                        Some(new) => format!("renamed to {} ({})", join(actual, new), r.hint),
                        None => format!("removed: {}", r.hint),
                    };
                    out.push(FieldProblem { path: a, message });
                } else if let Some(child) = map.get_mut(&k) {
                    walk_renamed(child, &p, &a, table, out);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk_renamed(
                    item,
                    &format!("{pattern}[]"),
                    &format!("{actual}[{i}]"),
                    table,
                    out,
                );
            }
        }
        _ => {}
    }
}

/// One deserialization error, as the loader's deserializer reported it.
#[derive(Debug, Clone)]
pub struct DeProblem {
    /// Segments of the path of the value in error (list indices as numbers).
    pub path: Vec<String>,
    /// For an unknown key: its name (`path` is the table holding it, or the key itself).
    pub unknown_key: Option<String>,
    /// For a missing key: its name (`path` is the table missing it, or the key itself).
    pub missing_key: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Deserialize `tree` with `de`, collecting every error instead of stopping at the first: an
/// unknown key is reported and taken out, a value of the wrong type is reported and replaced by
/// the default at the same path (from `defaults`) or taken out, and `de` runs again. Stops at
/// a missing key or an error it cannot get past. Returns the value (when `de` finally succeeded)
/// and the problems.
pub fn deserialize_all<T>(
    mut tree: Value,
    defaults: &Value,
    mut de: impl FnMut(&Value) -> Result<T, Vec<DeProblem>>,
) -> (Option<T>, Vec<FieldProblem>) {
    let mut problems: Vec<FieldProblem> = Vec::new();
    for _ in 0..64 {
        let errors = match de(&tree) {
            Ok(t) => return (Some(t), problems),
            Err(errors) => errors,
        };
        let mut progressed = false;
        for e in errors {
            let mut segments = e.path.clone();
            // Some deserializers already end the path with the key in error, some do not.
            if let Some(k) = e.unknown_key.as_ref().or(e.missing_key.as_ref())
                && segments.last() != Some(k)
            {
                segments.push(k.clone());
            }
            let path = field_path(&segments);
            let seen = problems.iter().any(|p| p.path == path);
            if !seen {
                problems.push(FieldProblem {
                    path,
                    message: e.message.clone(),
                });
            }
            if e.missing_key.is_some() || segments.is_empty() {
                continue;
            }
            let fixed = if e.unknown_key.is_some() {
                remove_at(&mut tree, &segments)
            } else if let Some(d) = get_at(defaults, &segments).cloned().filter(|_| !seen) {
                set_at(&mut tree, &segments, d)
            } else {
                remove_at(&mut tree, &segments)
            };
            progressed |= fixed;
        }
        if !progressed {
            break;
        }
    }
    (None, problems)
}

fn step<'a>(v: &'a Value, s: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => m.get(s),
        Value::Array(a) => s.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    }
}

fn step_mut<'a>(v: &'a mut Value, s: &str) -> Option<&'a mut Value> {
    match v {
        Value::Object(m) => m.get_mut(s),
        Value::Array(a) => s.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
        _ => None,
    }
}

fn get_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, s| step(v, s))
}

fn set_at(v: &mut Value, path: &[String], new: Value) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    match parent.iter().try_fold(v, |v, s| step_mut(v, s)) {
        Some(Value::Object(m)) if m.contains_key(last) => {
            m.insert(last.clone(), new);
            true
        }
        _ => false,
    }
}

fn remove_at(v: &mut Value, path: &[String]) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    match parent.iter().try_fold(v, |v, s| step_mut(v, s)) {
        Some(Value::Object(m)) => m.remove(last).is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_take_binary_units() {
        use super::parse_size;
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("64 MiB"), Ok(64 << 20));
        assert_eq!(parse_size("8GiB"), Ok(8 << 30));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        for bad in ["", "MiB", "8GB", "8 gib", "-1", "1.5GiB"] {
            assert!(
                parse_size(bad).unwrap_err().contains("is not a size"),
                "{bad}"
            );
        }
        assert!(parse_size("99999999TiB").unwrap_err().contains("too large"));
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn durations_are_strings_with_units() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("60s"), Ok(ms(60_000)));
        assert_eq!(parse_duration("2m"), Ok(ms(120_000)));
        assert_eq!(parse_duration("1h 30m"), Ok(ms(5_400_000)));
        assert_eq!(parse_duration("14d"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(
            parse_duration("1000")
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-5s").is_err());
    }

    #[test]
    fn field_paths_index_lists() {
        assert_eq!(
            field_path(&["providers", "1", "interfaces", "0", "id"]),
            "providers[1].interfaces[0].id"
        );
        assert_eq!(field_path(&["batch", "max_wait"]), "batch.max_wait");
        assert_eq!(field_path::<&str>(&[]), "");
    }

    const TABLE: &[Renamed] = &[
        Renamed {
            old: "batch.max_wait_ms",
            new: Some("max_wait"),
            hint: "a duration string such as \"200ms\"",
        },
        Renamed {
            old: "providers[].timeout_ms",
            new: Some("timeout"),
            hint: "a duration string such as \"35s\"",
        },
        Renamed {
            old: "retry.connect_alert_after",
            new: None,
            hint: "unused",
        },
    ];

    #[test]
    fn renamed_keys_are_taken_out_and_name_the_new_key() {
        let mut tree = json!({
            "batch": {"size": 5, "max_wait_ms": 200},
            "retry": {"connect_alert_after": 3},
            "providers": [{"business_id": "001"}, {"timeout_ms": 1000}],
        });
        let got = take_renamed(&mut tree, TABLE);
        let lines: Vec<String> = got.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "batch.max_wait_ms: renamed to batch.max_wait (a duration string such as \"200ms\")",
                "providers[1].timeout_ms: renamed to providers[1].timeout (a duration string such as \"35s\")",
                "retry.connect_alert_after: removed: unused",
            ]
        );
        assert_eq!(
            tree,
            json!({"batch": {"size": 5}, "retry": {}, "providers": [{"business_id": "001"}, {}]})
        );
    }

    #[test]
    fn deserialization_errors_are_all_collected() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct A {
            x: u32,
            y: u32,
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Top {
            a: A,
            b: A,
        }
        // A toy deserializer reporting one error at a time, like serde does.
        let de = |v: &Value| -> Result<Top, Vec<DeProblem>> {
            for s in ["a", "b"] {
                for (k, val) in v[s].as_object().unwrap() {
                    let problem = |unknown: bool| DeProblem {
                        path: if unknown {
                            vec![s.into()]
                        } else {
                            vec![s.into(), k.clone()]
                        },
                        unknown_key: unknown.then(|| k.clone()),
                        missing_key: None,
                        message: "bad".into(),
                    };
                    if k != "x" && k != "y" {
                        return Err(vec![problem(true)]);
                    }
                    if !val.is_u64() {
                        return Err(vec![problem(false)]);
                    }
                }
            }
            serde_json::from_value(v.clone()).map_err(|e| {
                vec![DeProblem {
                    path: vec![],
                    unknown_key: None,
                    missing_key: None,
                    message: e.to_string(),
                }]
            })
        };
        let defaults = json!({"a": {"x": 1, "y": 2}, "b": {"x": 1, "y": 2}});
        let tree = json!({"a": {"x": "one", "y": 2, "z": 0}, "b": {"x": 1, "y": "two"}});
        let (top, problems) = deserialize_all(tree, &defaults, de);
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["a.x", "a.z", "b.y"]);
        let top = top.unwrap();
        assert_eq!(
            (top.a.x, top.b.y),
            (1, 2),
            "defaults stand in for bad values"
        );
    }

    #[test]
    fn empty_optional_paths_are_problems_and_absent_ones_none() {
        let mut p = Problems::new();
        assert_eq!(p.optional_path("nats.tls_ca_file", &None), None);
        assert_eq!(
            p.optional_path("nats.tls_ca_file", &Some(PathBuf::new())),
            None
        );
        assert_eq!(
            p.optional_path("nats.tls_ca_file", &Some("ca.pem".into())),
            Some(PathBuf::from("ca.pem"))
        );
        assert_eq!(p.as_slice().len(), 1);
        assert_eq!(p.as_slice()[0].path, "nats.tls_ca_file");
        assert_eq!(
            rebase(Path::new("a.pem"), Some(Path::new("/etc"))),
            Path::new("/etc/a.pem")
        );
        assert_eq!(
            rebase(Path::new("/a.pem"), Some(Path::new("/etc"))),
            Path::new("/a.pem")
        );
    }
}
