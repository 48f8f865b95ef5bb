//! The docs cannot drift from the code: every metric, stream, bucket, environment variable,
//! command-line subcommand and flag, configuration key and repository path that the Markdown
//! files (README*.md, docs/, deploy/, ARCHITECTURE.md, BENCHMARKS.md, the crates' READMEs) and
//! the files under deploy/ name must exist, and the benchmark figures the READMEs quote must be
//! in BENCHMARKS.md. Each finding names the file, the line and the missing thing.
//!
//! Where the truth comes from:
//! - metrics: the relay's and the agent's registries (`# TYPE` lines of their exposition; a
//!   counter is queried with `_total`, a histogram with `_bucket` / `_sum` / `_count`);
//! - streams, buckets, consumers and environment variables (`SHIRASE_*`, `shirase_*`): string
//!   literals of the crates' sources and tests (`"SHIRASE_AUDIT"`, `"shirase_leases"`, clap's
//!   `env = "SHIRASE_OPS_URL"`, a runbook test's `"SHIRASE_STAGE"`), and the crate names; a configuration variable
//!   (`SHIRASE_HTTP__LISTEN`, `SHIRASE_AGENT__SINK__DIR`) must name a key the loader accepts;
//! - commands: the `--help` of the built binaries in target/debug (build the workspace first);
//! - configuration keys: what the loaders accept (config_reference.rs learns it from the types);
//! - paths: the working tree (a few generated directories are listed in `GENERATED`; a code
//!   block that changes directory runs elsewhere, and the paths it makes are not checked).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use figment::Figment;
use figment::providers::{Format, Toml};
use serde_json::Value;
use shirase_tests::harness::workspace_root;

use crate::config_reference::{Reference, leaves};

/// Paths docs may name that are not in the tree because a command creates them.
const GENERATED: &[(&str, &str)] = &[
    ("demo-data/", "deploy/dev/demo.sh"),
    ("target/", "cargo"),
    (".tools/", "deploy/dev/install-nats-server.sh"),
    ("deploy/compose/tls/", "deploy/nats/gen-dev-certs.sh"),
    ("compose/tls/", "deploy/nats/gen-dev-certs.sh"),
    ("tests/fuzz/corpus/", "deploy/dev/fuzz.sh"),
    ("tests/fuzz/artifacts/", "deploy/dev/fuzz.sh"),
    ("tests/fuzz/target/", "deploy/dev/fuzz.sh"),
];

/// Directories never scanned.
const SKIP_DIRS: &[&str] = &[
    "target",
    ".git",
    ".tools",
    "demo-data",
    "corpus",
    "artifacts",
    "node_modules",
];

/// The binaries docs run, as cargo builds them.
const BINARIES: &[&str] = &[
    "shirase-relay",
    "shirase-agent",
    "shirase-bench",
    "provider-sim",
];

/// File extensions that make a dotted word a file name, not a configuration key.
const FILE_EXTENSIONS: &[&str] = &[
    "rs", "toml", "md", "json", "jsonl", "yml", "yaml", "conf", "sh", "service", "html", "py",
    "pem", "nk", "creds", "token", "secret", "lock",
];

struct File {
    rel: String,
    text: String,
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.is_dir() {
            if !SKIP_DIRS.contains(&name.as_str()) {
                files(&p, out);
            }
        } else {
            out.push(p);
        }
    }
}

fn load(filter: impl Fn(&str) -> bool) -> Vec<File> {
    let root = workspace_root();
    let mut all = Vec::new();
    files(&root, &mut all);
    all.into_iter()
        .filter_map(|p| {
            let rel = p
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if !filter(&rel) {
                return None;
            }
            let text = std::fs::read_to_string(&p).ok()?;
            Some(File { rel, text })
        })
        .collect()
}

/// The Markdown files checked.
fn docs() -> Vec<File> {
    load(|rel| rel.ends_with(".md") && !rel.starts_with("tests/fuzz/"))
}

/// The files under deploy/ other than Markdown (configs, manifests, units, rules, dashboards).
fn deploy_configs() -> Vec<File> {
    load(|rel| {
        rel.starts_with("deploy/")
            && !rel.ends_with(".md")
            && [
                ".yml", ".yaml", ".json", ".toml", ".conf", ".service", ".sh",
            ]
            .iter()
            .any(|e| rel.ends_with(e))
    })
}

/// One piece of text to check: a line of prose, an inline code span or a code-block line.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Prose,
    Span,
    Code(String),
}

/// The pieces of a Markdown text with their line numbers.
fn pieces(text: &str) -> Vec<(usize, Piece, String)> {
    let mut out = Vec::new();
    let mut fence: Option<String> = None;
    for (i, l) in text.lines().enumerate() {
        let n = i + 1;
        let t = l.trim_start();
        if let Some(rest) = t.strip_prefix("```") {
            fence = match fence {
                Some(_) => None,
                None => Some(rest.trim().to_owned()),
            };
            continue;
        }
        if let Some(lang) = &fence {
            out.push((n, Piece::Code(lang.clone()), l.to_owned()));
            continue;
        }
        out.push((n, Piece::Prose, l.to_owned()));
        let parts: Vec<&str> = l.split('`').collect();
        for (j, part) in parts.iter().enumerate() {
            if j % 2 == 1 && j + 1 < parts.len() && !part.is_empty() {
                out.push((n, Piece::Span, (*part).to_owned()));
            }
        }
    }
    out
}

/// Occurrences of identifiers starting with `prefix` (letters, digits, `_`), with the character
/// before and after each.
fn idents(text: &str, prefix: &str, upper: bool) -> Vec<(String, char, char)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = text[from..].find(prefix) {
        let start = from + pos;
        let before = text[..start].chars().next_back().unwrap_or(' ');
        let mut end = start + prefix.len();
        let b = text.as_bytes();
        while end < b.len()
            && (b[end] == b'_'
                || b[end].is_ascii_digit()
                || if upper {
                    b[end].is_ascii_uppercase()
                } else {
                    b[end].is_ascii_lowercase()
                })
        {
            end += 1;
        }
        let after = text[end..].chars().next().unwrap_or(' ');
        // `KV_shirase_checkpoints`: the bucket's stream name holds the bucket name.
        let inside_word = before.is_ascii_alphanumeric() || (before == '_' && !upper);
        let word_start = !inside_word || text[..start].ends_with("KV_");
        if word_start {
            out.push((text[start..end].to_owned(), before, after));
        }
        from = end;
    }
    out
}

// ---- what the code has ------------------------------------------------------------------

/// Metric names a query may use, read from the registrations in the two metrics modules
/// (prometheus-client leaves a family without children out of the exposition, so a fresh
/// registry does not list them): `Registry::with_prefix("…")`, each `register("name", "help",
/// x.clone())`, and the declared type of `x` (a counter is queried with `_total`, a histogram
/// with `_bucket` / `_sum` / `_count`).
fn exported_metrics() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for rel in ["relay/src/metrics.rs", "subscriber-kit/src/metrics.rs"] {
        let text = std::fs::read_to_string(workspace_root().join(rel)).unwrap();
        let prefix = between(&text, "Registry::with_prefix(\"", "\"")
            .unwrap_or_else(|| panic!("{rel}: no Registry::with_prefix"));
        let mut from = 0;
        while let Some(pos) = text[from..].find(".register(") {
            let call = &text[from + pos..];
            from += pos + 1;
            // `operator.register(&mut registry)`: a group registering its own, found on its own.
            if !call[".register(".len()..].trim_start().starts_with('"') {
                continue;
            }
            let Some(name) = between(call, "\"", "\"") else {
                continue;
            };
            let end = call.find(");").unwrap_or(call.len());
            let args = &call[..end];
            let var = args
                .rsplit(',')
                .find(|a| a.contains(".clone()"))
                .map(|a| {
                    a.trim()
                        .trim_end_matches(".clone()")
                        .rsplit('.')
                        .next()
                        .unwrap()
                        .trim()
                        .to_owned()
                })
                .unwrap_or_else(|| panic!("{rel}: register({name:?}, …) without a `x.clone()`"));
            let decl = text
                .lines()
                .find(|l| {
                    let l = l.trim();
                    l.starts_with(&format!("let {var} ="))
                        || l.starts_with(&format!("pub {var}:"))
                        || l.starts_with(&format!("{var}:"))
                })
                .unwrap_or_else(|| panic!("{rel}: no declaration of `{var}` (metric {name})"));
            let full = format!("{prefix}_{name}");
            if decl.contains("Histogram") {
                for s in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{full}{s}"));
                }
            } else if decl.contains("Counter") {
                out.insert(format!("{full}_total"));
            } else {
                out.insert(full.clone());
            }
            out.insert(full);
        }
    }
    out
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = text.find(start)? + start.len();
    let j = text[i..].find(end)? + i;
    Some(&text[i..j])
}

/// `SHIRASE_*` and `shirase_*` words that start a string literal in the crates' sources and the
/// tests.
fn literals() -> (BTreeSet<String>, BTreeSet<String>) {
    let root = workspace_root();
    let mut all = Vec::new();
    for d in [
        "proto/src",
        "proto/service/src",
        "relay/src",
        "subscriber-kit/src",
        "subscriber-kit/pull/src",
        "tests/src",
        "tests/provider-sim/src",
        // The variables a test sets for the commands of a document it runs (`SHIRASE_STAGE`
        // of the production runbook).
        "tests/tests",
    ] {
        files(&root.join(d), &mut all);
    }
    // This file's own examples of drift are not definitions.
    all.retain(|p| !p.ends_with("docs_drift.rs"));
    let (mut upper, mut lower) = (BTreeSet::new(), BTreeSet::new());
    for p in all
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
    {
        let text = std::fs::read_to_string(p).unwrap();
        for (w, before, _) in idents(&text, "SHIRASE_", true) {
            if before == '"' {
                upper.insert(w);
            }
        }
        for (w, before, _) in idents(&text, "shirase_", false) {
            if before == '"' {
                lower.insert(w);
            }
        }
    }
    // The workspace's crates (library paths, log targets).
    for c in [
        "shirase_proto",
        "shirase_service",
        "shirase_relay",
        "shirase_pull",
        "shirase_subscriber_kit",
        "shirase_agent",
        "shirase_tests",
        "shirase_provider_sim",
        "shirase_fuzz",
    ] {
        lower.insert(c.to_owned());
    }
    (upper, lower)
}

/// A command: its subcommands and its flags (flag → whether it takes a value).
#[derive(Debug, Default)]
struct Cli {
    subcommands: BTreeMap<String, Cli>,
    flags: BTreeMap<String, bool>,
}

fn help(bin: &str, path: &[&str]) -> String {
    let exe = workspace_root().join("target/debug").join(bin);
    assert!(
        exe.is_file(),
        "{} is missing: build the binaries first (cargo build --workspace --bins)",
        exe.display()
    );
    let out = Command::new(&exe)
        .args(path)
        .arg("--help")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn cli(bin: &str, path: &mut Vec<String>) -> Cli {
    let args: Vec<&str> = path.iter().map(String::as_str).collect();
    let text = help(bin, &args);
    let mut c = Cli::default();
    let mut section = "";
    for l in text.lines() {
        if l.starts_with("Commands:") {
            section = "commands";
            continue;
        }
        if l.starts_with("Options:") || l.starts_with("Arguments:") {
            section = "options";
        }
        if section == "commands" && l.starts_with("  ") && !l.starts_with("   ") {
            if let Some(name) = l.split_whitespace().next()
                && name != "help"
            {
                path.push(name.to_owned());
                c.subcommands.insert(name.to_owned(), cli(bin, path));
                path.pop();
            }
            continue;
        }
        // Flags anywhere (clap's options, or a hand-written usage line): `--name` and whether
        // a value (`<X>` or `N`) follows.
        let words: Vec<&str> = l.split_whitespace().collect();
        for (i, w) in words.iter().enumerate() {
            let w = w.trim_matches(|c| c == '[' || c == ']' || c == ',');
            if let Some(name) = w.strip_prefix("--") {
                let name = name.split('=').next().unwrap();
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    continue;
                }
                let next = words
                    .get(i + 1)
                    .map(|n| n.trim_matches(|c| c == '[' || c == ']'));
                let takes = next.is_some_and(|n| n.starts_with('<') || n == "N");
                let e = c.flags.entry(name.to_owned()).or_insert(false);
                *e |= takes;
            }
        }
        if bin == "shirase-bench"
            && let Some(list) = l.strip_prefix("scenarios:")
        {
            for s in list.split(',').map(str::trim).chain(["all"]) {
                c.subcommands.insert(s.to_owned(), Cli::default());
            }
        }
    }
    c.flags.insert("help".into(), false);
    if bin == "shirase-bench" {
        let flags = c.flags.clone();
        for sub in c.subcommands.values_mut() {
            sub.flags = flags.clone();
        }
    }
    c
}

// ---- the checks -------------------------------------------------------------------------

struct Truth {
    metrics: BTreeSet<String>,
    upper: BTreeSet<String>,
    lower: BTreeSet<String>,
    clis: BTreeMap<&'static str, Cli>,
    relay: Reference,
    agent: Reference,
    /// Names of tables in either configuration (`http`, `providers`, `api`, `watch`, ...).
    tables: BTreeSet<String>,
}

impl Truth {
    fn new() -> Self {
        let (upper, lower) = literals();
        let relay = Reference::relay();
        let agent = Reference::agent();
        let mut tables = BTreeSet::new();
        for k in relay.accepted.iter().chain(&agent.accepted) {
            let segs: Vec<&str> = k.split('.').collect();
            for s in &segs[..segs.len() - 1] {
                tables.insert(s.trim_end_matches("[]").to_owned());
            }
        }
        Self {
            metrics: exported_metrics(),
            upper,
            lower,
            clis: BINARIES
                .iter()
                .map(|b| (*b, cli(b, &mut Vec::new())))
                .collect(),
            relay,
            agent,
            tables,
        }
    }

    /// Whether a dotted key (`pull.overlap`, `watch.until`, `providers[0].api.rows`) is the end
    /// of a key either configuration accepts.
    fn key_exists(&self, dotted: &str) -> bool {
        let want = normalize_key(dotted);
        // A key of an earlier release, named where the docs say it is refused.
        let old = shirase_relay::config::RENAMED
            .iter()
            .chain(shirase_subscriber_kit::config::RENAMED);
        if old
            .map(|r| r.old.replace("[]", ""))
            .any(|o| o == want || o.ends_with(&format!(".{want}")))
        {
            return true;
        }
        self.relay
            .accepted
            .iter()
            .chain(&self.agent.accepted)
            .any(|k| {
                let k = k.replace("[]", "");
                k == want || k.ends_with(&format!(".{want}"))
            })
    }
}

/// `providers[1].interfaces[0].id` → `providers.interfaces.id`.
fn normalize_key(k: &str) -> String {
    let mut out = String::new();
    let mut in_index = false;
    for c in k.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            _ if !in_index => out.push(c),
            _ => {}
        }
    }
    out
}

fn check_metrics(t: &Truth, rel: &str, n: usize, text: &str, out: &mut Vec<String>) {
    for prefix in ["shirase_relay_", "shirase_agent_"] {
        for (name, _, after) in idents(text, prefix, false) {
            // `^shirase_relay_notices` in a grep pattern, `shirase_agent_(pulls|…)`: a prefix.
            let pattern_char = matches!(after, '(' | '*' | '\'' | '.' | '"' | '|' | '{' | '[');
            let partial = name.ends_with('_') || (pattern_char && !t.metrics.contains(&name));
            let ok = if partial {
                t.metrics.iter().any(|m| m.starts_with(&name))
            } else {
                t.metrics.contains(&name)
            };
            if !ok {
                out.push(format!(
                    "{rel}:{n}: metric `{name}` is not exported by the relay or the agent (relay/src/metrics.rs, subscriber-kit/src/metrics.rs)"
                ));
            }
        }
    }
}

fn check_names(t: &Truth, rel: &str, n: usize, text: &str, out: &mut Vec<String>) {
    for (w, _, after) in idents(text, "SHIRASE_", true) {
        if w.ends_with('_') || after == '*' || after == '<' || after == '…' {
            continue; // a prefix (`SHIRASE_AGENT__*`, `SHIRASE_*`)
        }
        if let Some(rest) = w.strip_prefix("SHIRASE_AGENT__") {
            let key = rest.to_ascii_lowercase().replace("__", ".");
            if !t.agent.accepts(&key) {
                out.push(format!(
                    "{rel}:{n}: `{w}` sets agent key `{key}`, which the agent's configuration does not accept (docs/config/agent.md)"
                ));
            }
            continue;
        }
        if w.contains("__") {
            let key = w["SHIRASE_".len()..]
                .to_ascii_lowercase()
                .replace("__", ".");
            if !t.relay.accepts(&key) {
                out.push(format!(
                    "{rel}:{n}: `{w}` sets relay key `{key}`, which the relay's configuration does not accept (docs/config/relay.md)"
                ));
            }
            continue;
        }
        if !t.upper.contains(&w) {
            out.push(format!(
                "{rel}:{n}: `{w}` is neither a stream nor an environment variable the code defines (no string literal \"{w}\" in the crates' sources)"
            ));
        }
    }
    for (w, _, _) in idents(text, "shirase_", false) {
        if w.starts_with("shirase_relay_") || w.starts_with("shirase_agent_") || w.ends_with('_') {
            continue; // metrics, checked above
        }
        if !t.lower.contains(&w) {
            out.push(format!(
                "{rel}:{n}: `{w}` is neither a bucket, consumer or crate the code defines (no string literal \"{w}\" in the crates' sources)"
            ));
        }
    }
}

/// A metric table under a heading that names the prefix (docs/operations.md: "Relay
/// (`shirase_relay_*`)"): its first column names metrics without the prefix.
fn check_metric_table_row(
    t: &Truth,
    prefix: &str,
    rel: &str,
    n: usize,
    line: &str,
    out: &mut Vec<String>,
) {
    let Some(first) = line.trim_start_matches('|').split('|').next() else {
        return;
    };
    for (i, span) in first.split('`').enumerate() {
        let name = span.split('{').next().unwrap_or("");
        if i % 2 == 0
            || name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            continue;
        }
        let full = format!("{prefix}{name}");
        if !t.metrics.contains(&full) {
            out.push(format!(
                "{rel}:{n}: metric `{full}` (written `{name}` under the `{prefix}*` heading) is not exported by the relay or the agent"
            ));
        }
    }
}

/// Shell words of a command line, cut at the first shell operator or comment.
fn shell_words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    for w in line.split_whitespace() {
        if w.starts_with('#') || ["|", "||", "&&", ";", ">", "<", "&", "2>&1", ")"].contains(&w) {
            break;
        }
        if w.starts_with('(') || !w.is_ascii() {
            break;
        }
        let w = w.trim_matches(|c| c == '"' || c == '\'' || c == ',');
        let end = w.ends_with(';') || w.ends_with(')');
        out.push(w.trim_end_matches([';', ')']).to_owned());
        if end {
            break;
        }
    }
    out
}

fn check_cli(t: &Truth, rel: &str, n: usize, text: &str, out: &mut Vec<String>) {
    let words = shell_words(text);
    for (i, w) in words.iter().enumerate() {
        let Some(bin) = BINARIES
            .iter()
            .find(|b| w == *b || w.ends_with(&format!("/{b}")))
        else {
            continue;
        };
        // `cargo build -p shirase-relay`, `--bin shirase-agent`: a package, not a command.
        if i > 0 && ["-p", "--package", "--bin", "--bins", "build"].contains(&words[i - 1].as_str())
        {
            continue;
        }
        let mut cur = &t.clis[bin];
        let mut chain = vec![(*bin).to_owned()];
        let mut j = i + 1;
        while j < words.len() {
            let a = &words[j];
            if a.starts_with('$')
                || a.starts_with('<')
                || a.starts_with('[')
                || a == "..."
                || a == "…"
                || a.contains("…")
            {
                break; // a variable or a placeholder: nothing more to check on this line
            }
            if let Some(flag) = a.strip_prefix("--") {
                let (name, inline) = match flag.split_once('=') {
                    Some((k, _)) => (k, true),
                    None => (flag, false),
                };
                match cur.flags.get(name) {
                    Some(takes) => {
                        if *takes && !inline {
                            j += 1;
                        }
                    }
                    None => out.push(format!(
                        "{rel}:{n}: `{} --{name}`: no such flag (see `{} --help`)",
                        chain.join(" "),
                        chain.join(" ")
                    )),
                }
            } else if a.starts_with('-') {
                // a short flag (`-c`): accepted as written
            } else if !cur.subcommands.is_empty() {
                match cur.subcommands.get(a.as_str()) {
                    Some(sub) => {
                        cur = sub;
                        chain.push(a.clone());
                    }
                    None => {
                        out.push(format!(
                            "{rel}:{n}: `{} {a}`: no such subcommand (see `{} --help`)",
                            chain.join(" "),
                            chain.join(" ")
                        ));
                        break;
                    }
                }
            }
            j += 1;
        }
    }
}

fn check_key_span(t: &Truth, rel: &str, n: usize, span: &str, out: &mut Vec<String>) {
    let s = span.trim();
    // `[providers.api]`, `[[providers.interfaces]]`, `[nats] tls_ca_file`
    if let Some(rest) = s.strip_prefix('[') {
        let rest = rest.trim_start_matches('[');
        let Some((table, after)) = rest.split_once(']') else {
            return;
        };
        if !table
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
            || table.is_empty()
        {
            return;
        }
        let first = table.split('.').next().unwrap();
        if !t.tables.contains(first) {
            out.push(format!(
                "{rel}:{n}: `[{table}]` is not a table of the relay's or the agent's configuration"
            ));
            return;
        }
        let after = after.trim_start_matches(']').trim();
        let key = after.split([' ', '=']).next().unwrap_or("");
        let full = if key.chars().all(|c| c.is_ascii_lowercase() || c == '_') && !key.is_empty() {
            format!("{table}.{key}")
        } else {
            table.to_owned()
        };
        if !t.key_exists(&full) {
            out.push(format!(
                "{rel}:{n}: `{full}` is not a key of the relay's or the agent's configuration (docs/config/relay.md, docs/config/agent.md)"
            ));
        }
        return;
    }
    // `pull.overlap`, `watch.until`, `providers[0].api.rows`
    let key = s.split([' ', '=']).next().unwrap_or("");
    if !key.contains('.')
        || !key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.[]".contains(c))
    {
        return;
    }
    let segs: Vec<&str> = key.split('.').collect();
    let first = normalize_key(segs[0]);
    if !t.tables.contains(&first)
        || FILE_EXTENSIONS.contains(segs.last().unwrap())
        || segs.iter().any(|s| s.is_empty())
    {
        return;
    }
    if !t.key_exists(key) {
        out.push(format!(
            "{rel}:{n}: `{key}` is not a key of the relay's or the agent's configuration (docs/config/relay.md, docs/config/agent.md)"
        ));
    }
}

fn check_toml_block(t: &Truth, rel: &str, n: usize, block: &str, out: &mut Vec<String>) {
    let Ok(tree) = Figment::from(Toml::string(block)).extract::<Value>() else {
        out.push(format!("{rel}:{n}: the TOML block does not parse"));
        return;
    };
    let mut ls = Vec::new();
    leaves(&tree, "", &mut ls);
    let top = |k: &str| tree.get(k).is_some();
    let first = |k: &str| normalize_key(k.split('.').next().unwrap_or(""));
    if !ls.iter().any(|(k, _)| {
        t.tables.contains(&first(k))
            || ["subscriber", "municipality", "municipality_code"].contains(&k.as_str())
    }) {
        return; // not a configuration (a Cargo.toml snippet)
    }
    for (key, _) in ls {
        let ok = if top("subscriber") {
            t.agent.accepts(&key)
        } else if top("municipality_code") {
            t.relay.accepts(&key)
        } else {
            t.key_exists(&key)
        };
        if !ok {
            out.push(format!(
                "{rel}:{n}: the TOML example sets `{key}`, which the configuration does not accept (docs/config/relay.md, docs/config/agent.md)"
            ));
        }
    }
}

/// A word that names a repository path: `relay/src/publisher.rs`, `deploy/dev/`, `docs/x.md`.
fn check_path_word(rel: &str, n: usize, word: &str, doc_relative: bool, out: &mut Vec<String>) {
    let root = workspace_root();
    let dir = Path::new(rel).parent().unwrap_or(Path::new(""));
    let w = word
        .trim_matches(|c: char| "\"'(),.:;".contains(c))
        .trim_start_matches("./");
    if w.is_empty()
        || w.starts_with('/')
        || w.contains("://")
        || w.contains([
            '<', '>', '*', '{', '}', '$', '…', '=', '@', '|', '~', '%', '?', '&',
        ])
        || w.contains("...")
        || !w.contains('/')
        || !w
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-#".contains(c))
    {
        return;
    }
    let w = w.split('#').next().unwrap();
    // `tests/fuzz/seeds/TARGET/`: a placeholder segment
    if w.split('/')
        .any(|s| s.len() > 1 && s.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
    {
        return;
    }
    let first = w.split('/').next().unwrap();
    let root_entry = root.join(first).exists();
    let dir_entry =
        doc_relative && !dir.as_os_str().is_empty() && root.join(dir).join(first).exists();
    if !root_entry && !dir_entry {
        return; // not a repository path (a URL path, a subject, an API route)
    }
    if GENERATED
        .iter()
        .any(|(g, _)| w.starts_with(g) || format!("{w}/").starts_with(g))
    {
        return;
    }
    if root.join(w).exists() || (doc_relative && root.join(dir).join(w).exists()) {
        return;
    }
    out.push(format!("{rel}:{n}: `{w}` does not exist in the repository"));
}

fn check_links(rel: &str, n: usize, line: &str, out: &mut Vec<String>) {
    let root = workspace_root();
    let dir = Path::new(rel).parent().unwrap_or(Path::new(""));
    let mut from = 0;
    while let Some(pos) = line[from..].find("](") {
        let start = from + pos + 2;
        let Some(len) = line[start..].find(')') else {
            break;
        };
        let target = &line[start..start + len];
        from = start + len;
        if target.contains("://") || target.starts_with('#') || target.starts_with("mailto:") {
            continue;
        }
        let path = target.split('#').next().unwrap();
        if !root.join(dir).join(path).exists() {
            out.push(format!(
                "{rel}:{n}: the link target `{target}` does not exist"
            ));
        }
    }
}

/// Figures (`655`, `37.7 MiB`, `1,000,000`) in the benchmark section of a README.
fn check_figures(rel: &str, text: &str, bench: &str, out: &mut Vec<String>) {
    let mut in_section = false;
    for (i, l) in text.lines().enumerate() {
        if l.starts_with("## ") {
            in_section = l.contains("Benchmark") || l.contains("ベンチマーク");
            continue;
        }
        if !in_section || l.trim_start().starts_with("target/") || l.starts_with("cargo ") {
            continue;
        }
        let mut num = String::new();
        for c in l.chars().chain([' ']) {
            if c.is_ascii_digit() || (!num.is_empty() && (c == '.' || c == ',')) {
                num.push(c);
                continue;
            }
            let figure = num.trim_end_matches(['.', ',']).to_owned();
            num.clear();
            let digits = figure.chars().filter(char::is_ascii_digit).count();
            if digits < 3 && !figure.contains('.') {
                continue; // small counts ("2 vCPU", "five")
            }
            if !bench.contains(&figure) {
                out.push(format!(
                    "{rel}:{}: the figure {figure} is not in BENCHMARKS.md: quote the latest run there",
                    i + 1
                ));
            }
        }
    }
}

/// The binary a container image runs (`shirase/relay:0.1.0` → `shirase-relay`).
fn image_binary(image: &str) -> Option<&'static str> {
    let name = image.rsplit('/').next()?.split(':').next()?;
    match name {
        "relay" => Some("shirase-relay"),
        "agent" => Some("shirase-agent"),
        "provider-sim" => Some("provider-sim"),
        _ => None,
    }
}

/// `(image, command line)` of every container (compose service, Kubernetes container) that runs
/// a Shirase image, in file order.
fn container_commands(v: &serde_yaml_ng::Value, out: &mut Vec<(String, String)>) {
    use serde_yaml_ng::Value as Y;
    match v {
        Y::Mapping(m) => {
            if let Some(image) = m.get("image").and_then(Y::as_str)
                && image.starts_with("shirase/")
                && let Some(bin) = image_binary(image)
            {
                let args: Vec<&str> = ["command", "args"]
                    .iter()
                    .filter_map(|k| m.get(*k).and_then(Y::as_sequence))
                    .flatten()
                    .filter_map(Y::as_str)
                    .collect();
                out.push((image.to_owned(), format!("{bin} {}", args.join(" "))));
            }
            for (_, child) in m {
                container_commands(child, out);
            }
        }
        Y::Sequence(items) => items.iter().for_each(|i| container_commands(i, out)),
        _ => {}
    }
}

/// The command lines of the containers in a compose file or Kubernetes manifests, checked
/// against the image's binary; findings name the line of the container's `image:`.
fn check_container_commands(t: &Truth, f: &File, out: &mut Vec<String>) {
    use serde::Deserialize;
    let mut commands = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&f.text) {
        if let Ok(v) = serde_yaml_ng::Value::deserialize(doc) {
            container_commands(&v, &mut commands);
        }
    }
    let mut from_line = 0;
    for (image, cmd) in commands {
        let line = f
            .text
            .lines()
            .enumerate()
            .skip(from_line)
            .find(|(_, l)| l.contains(&image))
            .map_or(from_line, |(i, _)| i);
        from_line = line + 1;
        check_cli(t, &f.rel, line + 1, &cmd, out);
    }
}

/// Code blocks that change directory (`cd "$SHIRASE_STAGE"`) run their commands outside the
/// repository: their lines, and the paths they name (which the same document may then name in
/// its prose, `relay/relay.toml` of the staging directory), are not repository paths.
fn outside_repo(text: &str) -> (BTreeSet<usize>, BTreeSet<String>) {
    let (mut lines, mut paths) = (BTreeSet::new(), BTreeSet::new());
    let mut block: Vec<(usize, &str)> = Vec::new();
    let mut in_block = false;
    for (i, l) in text.lines().enumerate() {
        if l.trim_start().starts_with("```") {
            if in_block {
                let leaves = block.iter().any(|(_, b)| {
                    b.split([';', '&', '|'])
                        .any(|c| c.trim_start().starts_with("cd "))
                });
                if leaves {
                    for (n, b) in &block {
                        lines.insert(*n);
                        for w in b.split_whitespace() {
                            let w = w.trim_matches(|c| c == '"' || c == '\'' || c == ';');
                            if w.contains('/') && !w.starts_with('/') && !w.contains('$') {
                                paths.insert(w.trim_end_matches('/').to_owned());
                            }
                        }
                    }
                }
                block.clear();
            }
            in_block = !in_block;
            continue;
        }
        if in_block {
            block.push((i + 1, l));
        }
    }
    (lines, paths)
}

fn all_findings() -> Vec<String> {
    let t = Truth::new();
    let mut out = Vec::new();
    let bench = std::fs::read_to_string(workspace_root().join("BENCHMARKS.md")).unwrap();
    for f in docs() {
        let rel = f.rel.as_str();
        let is_reference = rel.starts_with("docs/config/");
        let mut block = String::new();
        let mut block_line = 0;
        let mut in_toml = false;
        let mut table_prefix: Option<&str> = None;
        let (elsewhere_lines, elsewhere) = outside_repo(&f.text);
        let made_elsewhere = |w: &str| {
            let w = w
                .trim_matches(|c: char| "\"'(),.:;".contains(c))
                .trim_end_matches('/');
            elsewhere
                .iter()
                .any(|p| w == p || w.starts_with(&format!("{p}/")))
        };
        for (n, piece, text) in pieces(&f.text) {
            match &piece {
                Piece::Prose => {
                    if text.starts_with('#') {
                        table_prefix = ["shirase_relay_", "shirase_agent_"]
                            .into_iter()
                            .find(|p| text.contains(&format!("`{p}*`")));
                    } else if let Some(prefix) = table_prefix
                        && text.starts_with('|')
                        && !text.starts_with("| ---")
                        && !text.starts_with("| metric")
                    {
                        check_metric_table_row(&t, prefix, rel, n, &text, &mut out);
                    }
                    check_metrics(&t, rel, n, &text, &mut out);
                    check_names(&t, rel, n, &text, &mut out);
                    check_links(rel, n, &text, &mut out);
                }
                Piece::Span => {
                    check_cli(&t, rel, n, &text, &mut out);
                    check_key_span(&t, rel, n, &text, &mut out);
                    for w in text.split_whitespace().filter(|w| !made_elsewhere(w)) {
                        check_path_word(rel, n, w, true, &mut out);
                    }
                }
                Piece::Code(lang) => {
                    check_metrics(&t, rel, n, &text, &mut out);
                    check_names(&t, rel, n, &text, &mut out);
                    if lang == "toml" {
                        if !in_toml {
                            block.clear();
                            block_line = n;
                            in_toml = true;
                        }
                        block.push_str(&text);
                        block.push('\n');
                    } else if ["sh", "bash", "console", ""].contains(&lang.as_str()) {
                        check_cli(&t, rel, n, &text, &mut out);
                        if !elsewhere_lines.contains(&n) {
                            for w in shell_words(&text) {
                                check_path_word(rel, n, &w, false, &mut out);
                            }
                        }
                    }
                }
            }
            if in_toml && piece != Piece::Code("toml".into()) {
                if !is_reference {
                    check_toml_block(&t, rel, block_line, &block, &mut out);
                }
                in_toml = false;
            }
        }
        if in_toml && !is_reference {
            check_toml_block(&t, rel, block_line, &block, &mut out);
        }
        if rel.starts_with("README") {
            check_figures(rel, &f.text, &bench, &mut out);
        }
    }
    for f in deploy_configs() {
        if f.rel.ends_with(".yaml") || f.rel.ends_with(".yml") {
            check_container_commands(&t, &f, &mut out);
        }
        for (i, l) in f.text.lines().enumerate() {
            check_metrics(&t, &f.rel, i + 1, l, &mut out);
            check_names(&t, &f.rel, i + 1, l, &mut out);
            if f.rel.ends_with(".service")
                && let Some(cmd) = l.strip_prefix("ExecStart=")
            {
                check_cli(&t, &f.rel, i + 1, cmd, &mut out);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn everything_the_docs_name_exists_in_the_code() {
    let findings = all_findings();
    assert!(
        findings.is_empty(),
        "{} thing(s) named in the docs do not exist (fix the doc, or the code if the doc is right):\n  {}",
        findings.len(),
        findings.join("\n  ")
    );
}

/// The checks themselves find what they are for, each naming the file, the line and the thing.
#[test]
fn each_kind_of_drift_is_found_and_named() {
    let t = Truth::new();
    let mut out = Vec::new();
    check_metrics(
        &t,
        "doc.md",
        1,
        "rate(shirase_relay_notices_accepted_total[5m])",
        &mut out,
    );
    assert!(out.is_empty(), "{out:?}");
    check_metrics(
        &t,
        "doc.md",
        2,
        "`shirase_relay_notices_acepted_total`",
        &mut out,
    );
    check_names(
        &t,
        "doc.md",
        3,
        "stream SHIRASE_NOTICE and bucket shirase_checkpoint",
        &mut out,
    );
    check_names(
        &t,
        "doc.md",
        4,
        "SHIRASE_AGENT__SINK__FOLDER=/x SHIRASE_HTTP__LISTEN=:8080",
        &mut out,
    );
    check_cli(
        &t,
        "doc.md",
        5,
        "shirase-relay replay --subscriber tax --dryrun",
        &mut out,
    );
    check_cli(
        &t,
        "doc.md",
        6,
        "./target/release/shirase-relay rewind --url x",
        &mut out,
    );
    check_key_span(&t, "doc.md", 7, "pull.overlaps", &mut out);
    check_key_span(&t, "doc.md", 8, "[providers.apis]", &mut out);
    check_path_word("doc.md", 9, "relay/src/publish.rs", true, &mut out);
    check_figures(
        "README.md",
        "## Benchmarks\nserved by 654 PULL calls, 37.8 MiB\n",
        "655 calls, 37.7 MiB",
        &mut out,
    );
    check_metric_table_row(
        &t,
        "shirase_agent_",
        "ops.md",
        10,
        "| `pulls_total{provider}`, `rows_delivred_total` | meaning | act |",
        &mut out,
    );
    // A block run in a staging directory names its own files; the prose may name them too.
    let (skip, made) = outside_repo(
        "```sh\ncd \"$SHIRASE_STAGE\" && mkdir -p relay/tls\ncp x relay/tls/ca.pem\n```\nEdit `relay/relay.toml`.\n",
    );
    assert_eq!(skip, BTreeSet::from([2, 3]));
    assert!(
        made.contains("relay/tls") && made.contains("relay/tls/ca.pem"),
        "{made:?}"
    );
    let manifest = File {
        rel: "deploy/k8s/x.yaml".into(),
        text: "kind: Deployment\nspec:\n  containers:\n    - name: relay\n      image: shirase/relay:0.1.0\n      args: [\"serve\", \"--configfile\", \"/etc/relay.toml\"]\n".into(),
    };
    check_container_commands(&t, &manifest, &mut out);
    // The real compose file's containers are found, with their command lines.
    let compose: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(workspace_root().join("deploy/compose/compose.yaml")).unwrap(),
    )
    .unwrap();
    let mut found = Vec::new();
    container_commands(&compose, &mut found);
    assert!(
        found.iter().any(|(image, cmd)| image == "shirase/relay:dev"
            && cmd == "shirase-relay serve --config /etc/shirase/relay.toml"),
        "{found:?}"
    );
    assert_eq!(
        out,
        [
            "doc.md:2: metric `shirase_relay_notices_acepted_total` is not exported by the relay or the agent (relay/src/metrics.rs, subscriber-kit/src/metrics.rs)",
            "doc.md:3: `SHIRASE_NOTICE` is neither a stream nor an environment variable the code defines (no string literal \"SHIRASE_NOTICE\" in the crates' sources)",
            "doc.md:3: `shirase_checkpoint` is neither a bucket, consumer or crate the code defines (no string literal \"shirase_checkpoint\" in the crates' sources)",
            "doc.md:4: `SHIRASE_AGENT__SINK__FOLDER` sets agent key `sink.folder`, which the agent's configuration does not accept (docs/config/agent.md)",
            "doc.md:5: `shirase-relay replay --dryrun`: no such flag (see `shirase-relay replay --help`)",
            "doc.md:6: `shirase-relay rewind`: no such subcommand (see `shirase-relay --help`)",
            "doc.md:7: `pull.overlaps` is not a key of the relay's or the agent's configuration (docs/config/relay.md, docs/config/agent.md)",
            "doc.md:8: `providers.apis` is not a key of the relay's or the agent's configuration (docs/config/relay.md, docs/config/agent.md)",
            "doc.md:9: `relay/src/publish.rs` does not exist in the repository",
            "README.md:2: the figure 654 is not in BENCHMARKS.md: quote the latest run there",
            "README.md:2: the figure 37.8 is not in BENCHMARKS.md: quote the latest run there",
            "ops.md:10: metric `shirase_agent_rows_delivred_total` (written `rows_delivred_total` under the `shirase_agent_*` heading) is not exported by the relay or the agent",
            "deploy/k8s/x.yaml:5: `shirase-relay serve --configfile`: no such flag (see `shirase-relay serve --help`)",
        ]
    );
}
