//! The crate boundaries of ARCHITECTURE.md ("Invariants"), checked on the workspace's own
//! `cargo metadata`:
//!
//! - `shirase-proto` depends on no other workspace crate, and on no I/O crate (tokio,
//!   async-nats, reqwest, axum, axum-server, hyper) unless the dependency is optional (behind
//!   a feature);
//! - `shirase-relay` does not depend on `shirase-subscriber-kit`;
//! - `shirase-pull` depends on neither `shirase-relay` nor `shirase-subscriber-kit`;
//! - nothing depends on `shirase-tests`;
//! - every `cargo build -p <package> --bin <binary>` in the Containerfiles and the demo script
//!   names a workspace package and a binary target of it (so moving a binary breaks a test,
//!   not an image build).

// Helpers outside #[test] fns are test code too: a failed setup step should stop the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::{Value, json};
use shirase_tests::harness::workspace_root;

/// I/O crates `shirase-proto` may only have as optional dependencies.
const IO_CRATES: [&str; 6] = [
    "tokio",
    "async-nats",
    "reqwest",
    "axum",
    "axum-server",
    "hyper",
];

/// The workspace crates the rules below are about; each must exist, so a rename cannot turn
/// a rule into one that checks nothing.
const CRATES: [&str; 6] = [
    "shirase-proto",
    "shirase-relay",
    "shirase-subscriber-kit",
    "shirase-pull",
    "shirase-tests",
    "shirase-provider-sim",
];

/// `cargo metadata --format-version 1 --no-deps` of the workspace.
fn metadata() -> Value {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = workspace_root().join("Cargo.toml");
    let out = Command::new(&cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .unwrap_or_else(|e| panic!("running {cargo:?} metadata: {e}"));
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

fn packages(meta: &Value) -> &[Value] {
    meta["packages"].as_array().expect("packages").as_slice()
}

fn name(v: &Value) -> &str {
    v["name"].as_str().expect("name")
}

/// `normal`, `dev` or `build` (cargo metadata writes `null` for normal dependencies).
fn kind(dep: &Value) -> &str {
    dep["kind"].as_str().unwrap_or("normal")
}

/// Every broken rule, one message each naming the crate and the dependency.
fn violations(meta: &Value) -> Vec<String> {
    let pkgs = packages(meta);
    let workspace: BTreeSet<&str> = pkgs.iter().map(name).collect();
    let mut out = Vec::new();
    for c in CRATES {
        if !workspace.contains(c) {
            out.push(format!(
                "workspace crate {c} is missing from cargo metadata"
            ));
        }
    }
    for pkg in pkgs {
        let p = name(pkg);
        for dep in pkg["dependencies"].as_array().expect("dependencies") {
            let d = name(dep);
            let k = kind(dep);
            let optional = dep["optional"].as_bool().unwrap_or(false);
            if p == "shirase-proto" && workspace.contains(d) {
                out.push(format!(
                    "shirase-proto depends on workspace crate {d} ({k}): proto depends on no other workspace crate"
                ));
            }
            if p == "shirase-proto" && k != "dev" && IO_CRATES.contains(&d) && !optional {
                out.push(format!(
                    "shirase-proto depends on I/O crate {d} ({k}) without `optional = true`: proto does no I/O unless a feature asks for it"
                ));
            }
            if p == "shirase-relay" && d == "shirase-subscriber-kit" {
                out.push(format!(
                    "shirase-relay depends on shirase-subscriber-kit ({k}): the relay uses shirase-pull for the watcher's PULL client"
                ));
            }
            if p == "shirase-pull" && (d == "shirase-relay" || d == "shirase-subscriber-kit") {
                out.push(format!(
                    "shirase-pull depends on {d} ({k}): the PULL client is shared by relay and agent and depends on neither"
                ));
            }
            if d == "shirase-tests" {
                out.push(format!(
                    "{p} depends on shirase-tests ({k}): nothing depends on the test crate"
                ));
            }
        }
    }
    out
}

#[test]
fn crate_dependencies_keep_the_architecture_invariants() {
    let v = violations(&metadata());
    assert!(v.is_empty(), "{}", v.join("\n"));
}

/// A dependency of a fake package: `(name, kind, optional)` (`None` = a normal dependency).
type FakeDep<'a> = (&'a str, Option<&'a str>, bool);

/// A minimal `cargo metadata` document of `(package, dependencies)`.
fn fake_metadata(pkgs: &[(&str, &[FakeDep])]) -> Value {
    let mut all: Vec<(&str, &[FakeDep])> = pkgs.to_vec();
    for c in CRATES {
        if !pkgs.iter().any(|(p, _)| *p == c) {
            all.push((c, &[]));
        }
    }
    json!({
        "packages": all.iter().map(|(p, deps)| json!({
            "name": p,
            "dependencies": deps.iter().map(|(d, k, o)| json!({
                "name": d, "kind": k, "optional": o,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

#[test]
fn each_broken_rule_is_reported_with_the_crate_and_the_dependency() {
    let meta = fake_metadata(&[
        (
            "shirase-proto",
            &[
                ("tokio", None, false),
                ("async-nats", None, true),
                ("tokio", Some("dev"), false),
                ("shirase-pull", None, false),
            ],
        ),
        ("shirase-relay", &[("shirase-subscriber-kit", None, false)]),
        ("shirase-pull", &[("shirase-relay", None, false)]),
        (
            "shirase-subscriber-kit",
            &[("shirase-tests", Some("dev"), false)],
        ),
    ]);
    let v = violations(&meta);
    let expect = [
        "shirase-proto depends on I/O crate tokio (normal)",
        "shirase-proto depends on workspace crate shirase-pull (normal)",
        "shirase-relay depends on shirase-subscriber-kit (normal)",
        "shirase-pull depends on shirase-relay (normal)",
        "shirase-subscriber-kit depends on shirase-tests (dev)",
    ];
    for e in expect {
        assert!(v.iter().any(|m| m.starts_with(e)), "{e:?} not in {v:#?}");
    }
    // The optional async-nats and the dev-dependency tokio of proto are allowed.
    assert_eq!(v.len(), expect.len(), "{v:#?}");
    assert!(
        violations(&fake_metadata(&[])).is_empty(),
        "a clean workspace passes"
    );
    let missing = json!({ "packages": [] });
    assert_eq!(violations(&missing).len(), CRATES.len());
}

/// The `cargo build` commands of `text` (backslash continuations joined), as token lists.
fn cargo_builds(text: &str) -> Vec<Vec<String>> {
    let joined = text.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let mut rest = line;
        while let Some(i) = rest.find("cargo build") {
            let cmd = &rest[i..];
            let end = cmd.find("&&").unwrap_or(cmd.len());
            out.push(cmd[..end].split_whitespace().map(str::to_owned).collect());
            rest = &cmd[end..];
        }
    }
    out
}

#[test]
fn image_and_demo_builds_name_workspace_packages_and_their_binaries() {
    let meta = metadata();
    let root = workspace_root();
    let mut files: Vec<_> = std::fs::read_dir(root.join("deploy/container"))
        .expect("deploy/container")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("Containerfile"))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no Containerfile under deploy/container");
    files.push(root.join("deploy/dev/demo.sh"));
    let mut problems = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("read");
        let f = path.strip_prefix(&root).unwrap_or(path);
        let builds = cargo_builds(&text);
        if builds.is_empty() {
            problems.push(format!("{}: no `cargo build` command", f.display()));
        }
        for b in builds {
            let arg = |flag: &str| -> Vec<&str> {
                b.windows(2)
                    .filter(|w| w[0] == flag)
                    .map(|w| w[1].as_str())
                    .collect()
            };
            let pkgs = arg("-p");
            let bins = arg("--bin");
            let mut available = BTreeSet::new();
            for p in &pkgs {
                match packages(&meta).iter().find(|x| name(x) == *p) {
                    None => problems.push(format!(
                        "{}: `-p {p}` is not a workspace package",
                        f.display()
                    )),
                    Some(pkg) => {
                        for t in pkg["targets"].as_array().expect("targets") {
                            if t["kind"]
                                .as_array()
                                .expect("kind")
                                .iter()
                                .any(|k| k == "bin")
                            {
                                available.insert(name(t).to_owned());
                            }
                        }
                    }
                }
            }
            for bin in bins {
                if !available.contains(bin) {
                    problems.push(format!(
                        "{}: `--bin {bin}` is not a binary of the packages it builds ({})",
                        f.display(),
                        pkgs.join(", ")
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The library source folders whose modules must not import each other in a cycle.
const LIBRARY_SOURCES: &[&str] = &[
    "proto/src",
    "proto/service/src",
    "relay/src",
    "subscriber-kit/src",
    "subscriber-kit/pull/src",
];

/// Top-level module of a file under `src` (`a.rs`, `a/mod.rs` and `a/b.rs` are all `a`), or
/// `None` for the crate root, a binary and test-only files.
fn top_module(src: &std::path::Path, file: &std::path::Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    let name = rel.file_name()?.to_str()?;
    if matches!(name, "tests.rs" | "test_support.rs" | "model.rs")
        || matches!(first.as_str(), "lib.rs" | "main.rs" | "bin")
    {
        return None;
    }
    Some(first.trim_end_matches(".rs").to_owned())
}

/// `module -> modules it names as crate::x` for one crate, comments and test modules left out.
fn module_graph(src: &std::path::Path) -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let mut graph: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|x| x.to_str()) != Some("rs") {
                continue;
            }
            let Some(module) = top_module(src, &path) else {
                continue;
            };
            let text = std::fs::read_to_string(&path).unwrap();
            let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
            let deps = graph.entry(module.clone()).or_default();
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or("");
                for (i, _) in code.match_indices("crate::") {
                    let dep: String = code[i + 7..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !dep.is_empty() && dep != module {
                        deps.insert(dep);
                    }
                }
            }
        }
    }
    graph
}

/// A cycle in `graph`, as the path of modules, if there is one.
fn find_cycle(graph: &std::collections::BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &std::collections::BTreeMap<String, BTreeSet<String>>,
        m: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut cycle = path[at..].to_vec();
            cycle.push(m.to_owned());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_owned());
        for d in g.get(m).into_iter().flatten() {
            if g.contains_key(d)
                && let Some(c) = visit(g, d, path, done)
            {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|m| visit(graph, m, &mut Vec::new(), &mut done))
}

#[test]
fn no_crate_has_a_module_import_cycle() {
    let root = workspace_root();
    let mut cycles = Vec::new();
    for dir in LIBRARY_SOURCES {
        let graph = module_graph(&root.join(dir));
        assert!(
            graph.len() >= 3,
            "{dir}: only {} modules found",
            graph.len()
        );
        if let Some(c) = find_cycle(&graph) {
            cycles.push(format!("{dir}: {}", c.join(" -> ")));
        }
    }
    assert!(
        cycles.is_empty(),
        "module import cycles:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn a_module_cycle_is_found_and_named() {
    let g: std::collections::BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a", "x"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(
        find_cycle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let mut acyclic = g.clone();
    acyclic.get_mut("c").unwrap().remove("a");
    assert_eq!(find_cycle(&acyclic), None);
}

/// The longest a library `fn` item may be, from its `fn` line to its closing brace.
const MAX_FN_LINES: usize = 100;

/// `file:function` pairs exempt from [`MAX_FN_LINES`] because their body is a table (one row
/// a line), not steps; each entry says why. Empty: every long function was split.
const LONG_FN_ALLOWED: &[&str] = &[];

/// `text` with comments, string literals and char literals blanked out (newlines kept), so
/// braces inside them do not count.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev_ident = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if c == 'r' && !prev_ident && matches!(next, Some('"' | '#')) {
            // A raw string r"..." or r#"..."#, or an identifier starting with r.
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let hashes = j - i - 1;
            i = j + 1;
            while i < chars.len() {
                if chars[i] == '"' && (1..=hashes).all(|k| chars.get(i + k) == Some(&'#')) {
                    i += 1 + hashes;
                    break;
                }
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
                if i < chars.len() {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
            i += 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{7f}') or a lifetime ('a).
            let end = if next == Some('\\') {
                (i + 2..chars.len()).find(|&k| chars[k] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(e) => i = e + 1,
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Every `fn` item of `code` (as from [`code_only`]) with a body: `(name, lines)`, counted from
/// the `fn` line to the line of its closing brace.
fn fn_lengths(code: &str) -> Vec<(String, usize)> {
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let line_of = |at: usize| code[..at].matches('\n').count();
    let mut out = Vec::new();
    for (at, _) in code.match_indices("fn ") {
        if at > 0 && ident(bytes[at - 1]) {
            continue;
        }
        let name: String = code[at + 3..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            continue;
        }
        // The body opens at the first `{` outside the signature's brackets, unless a `;`
        // (a declaration without a body) comes first.
        let mut nest = 0i32;
        let mut open = None;
        for (k, &b) in bytes.iter().enumerate().skip(at) {
            match b {
                b'(' | b'[' => nest += 1,
                b')' | b']' => nest -= 1,
                b';' if nest == 0 => break,
                b'{' if nest == 0 => {
                    open = Some(k);
                    break;
                }
                _ => {}
            }
        }
        let Some(open) = open else { continue };
        let mut depth = 0i32;
        for (k, &b) in bytes.iter().enumerate().skip(open) {
            match b {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        out.push((name, line_of(k) - line_of(at) + 1));
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    out
}

#[test]
fn no_library_function_is_longer_than_a_hundred_lines() {
    let root = workspace_root();
    let mut long = Vec::new();
    let mut counted = 0;
    for dir in LIBRARY_SOURCES {
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let path = e.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if !name.ends_with(".rs")
                    || matches!(
                        name,
                        "main.rs" | "tests.rs" | "test_support.rs" | "model.rs"
                    )
                {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
                let file = path.strip_prefix(&root).unwrap().display().to_string();
                for (f, lines) in fn_lengths(&code_only(text)) {
                    counted += 1;
                    let key = format!("{file}:{f}");
                    if lines > MAX_FN_LINES && !LONG_FN_ALLOWED.contains(&key.as_str()) {
                        long.push(format!("{key}:{lines}"));
                    }
                }
            }
        }
    }
    assert!(counted > 500, "only {counted} functions found");
    long.sort();
    assert!(
        long.is_empty(),
        "library functions longer than {MAX_FN_LINES} lines (split them into steps):\n{}",
        long.join("\n")
    );
}

#[test]
fn function_lengths_count_from_fn_to_the_closing_brace() {
    let src = r##"
/// A doc comment with fn words { and a brace.
pub fn short(x: [u8; 2]) -> usize {
    let s = "}}}"; // }
    let c = '}';
    let _r = r#"{"#;
    x.len() + s.len() + usize::from(c == '{')
}
trait T {
    fn declared(&self);
    fn provided<'a>(&'a self) -> &'a str {
        "{"
    }
}
"##;
    let got = fn_lengths(&code_only(src));
    assert_eq!(
        got,
        vec![("short".to_owned(), 6), ("provided".to_owned(), 3)]
    );
}
