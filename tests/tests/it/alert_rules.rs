//! deploy/prometheus/alerts.yml under promtool's rule unit tests (deploy/prometheus/alerts.test.yml):
//! every rule fires on the series the relay and the agent export for the condition it is for,
//! with its labels and text, and stays quiet on a neighbouring one. Which metrics the rules use
//! is checked against the code by `operator_metrics` and `docs_drift`.
//!
//! promtool comes with Debian's `prometheus` package; deploy/dev/test.sh installs it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::BTreeSet;
use std::process::Command;

use serde_yaml_ng::Value;
use shirase_tests::harness::workspace_root;

/// `PROMTOOL`, else `promtool` on PATH.
fn promtool() -> String {
    let bin = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let found = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "promtool is not installed ({bin:?} does not run): deploy/dev/test.sh installs it \
         (its \"promtool\" step: apt-get install prometheus, Debian's package ships promtool); \
         by hand: sudo apt-get install -y --no-install-recommends prometheus, or set PROMTOOL"
    );
    bin
}

fn yaml(rel: &str) -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(workspace_root().join(rel)).unwrap()).unwrap()
}

#[test]
fn every_alert_rule_passes_its_promtool_unit_tests() {
    let bin = promtool();
    let out = Command::new(&bin)
        .current_dir(workspace_root())
        .args(["test", "rules", "deploy/prometheus/alerts.test.yml"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool test rules failed:\n{text}");
    assert!(text.contains("SUCCESS"), "{text}");
    let out = Command::new(&bin)
        .current_dir(workspace_root())
        .args(["check", "rules", "deploy/prometheus/alerts.yml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A rule without a test that shows it firing is a rule nobody has seen fire.
#[test]
fn every_alert_rule_has_a_unit_test_that_makes_it_fire() {
    let rules = yaml("deploy/prometheus/alerts.yml");
    let mut names = BTreeSet::new();
    for g in rules["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            names.insert(r["alert"].as_str().unwrap().to_owned());
        }
    }
    for want in [
        "ShiraseRelayDown",
        "ShiraseRelayAbsent",
        "ShiraseAgentDown",
        "ShiraseAgentAbsent",
        "ShiraseWatcherLagging",
        "ShiraseWatcherNoLeaseHolder",
        "ShiraseNoticesRejected",
    ] {
        assert!(names.contains(want), "alerts.yml lacks {want}: {names:?}");
    }
    let tests = yaml("deploy/prometheus/alerts.test.yml");
    let mut fired = BTreeSet::new();
    for t in tests["tests"].as_sequence().unwrap() {
        for a in t["alert_rule_test"].as_sequence().into_iter().flatten() {
            if a["exp_alerts"].as_sequence().is_some_and(|e| !e.is_empty()) {
                fired.insert(a["alertname"].as_str().unwrap().to_owned());
            }
        }
    }
    let untested: Vec<&String> = names.difference(&fired).collect();
    assert!(
        untested.is_empty(),
        "alert rules without a test in deploy/prometheus/alerts.test.yml that makes them fire: {untested:?}"
    );
}
