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
