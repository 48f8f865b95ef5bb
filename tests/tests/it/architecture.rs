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
