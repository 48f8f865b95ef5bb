//! deploy/prometheus/alerts.yml and deploy/grafana/shirase.json: the rules parse into the
//! Prometheus rule-file structure, the four alerts the operators need exist, and every metric
//! name either file uses is exported by a running relay's /metrics or by the agent's registry.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::BTreeSet;

use serde_yaml_ng::Value;
use shirase_subscriber_kit::metrics::{IfaceLabels, ProviderLabels, PullLabels};
use shirase_tests::harness::workspace_root;

use crate::operator_support::Ops;
use crate::relay_support::*;

/// Metric names a scrape offers, with the suffixes Prometheus queries use.
fn exported(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut it = rest.split_whitespace();
        let (Some(name), Some(kind)) = (it.next(), it.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                out.insert(format!("{name}_total"));
            }
            "histogram" => {
                for s in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{name}{s}"));
                }
            }
            _ => {
                out.insert(name.to_owned());
            }
        }
    }
    out
}

/// `shirase_*` identifiers in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("shirase_") {
        let start = i + pos;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        out.push(expr[start..end].to_owned());
        i = end;
    }
    out
}

#[tokio::test]
async fn alert_rules_and_dashboard_parse_and_use_only_exported_metrics() {
    let (_server, js, relay) = setup().await;
    // A status call creates the per-consumer gauges' children.
    let kv = js.get_key_value("shirase_checkpoints").await.unwrap();
    kv.put(
        "tax.131016.001o05-00",
        br#"{"updated_at":"2026-11-20T10:00:00+09:00","stored_at":"2026-11-20T10:00:01+09:00"}"#
            .to_vec()
            .into(),
    )
    .await
    .unwrap();
    let (s, _) = Ops::viewer(&relay.base).get("/v1/ops/status").await;
    assert_eq!(s, 200);
    // One accepted notice, one refused request, one operator action: their families appear.
    let (s, _, _) = relay
        .post(&token_001(), &json(&notice("001o05-00", 1)))
        .await;
    assert_eq!(s, 202);
    let (s, _, _) = relay
        .post(
            "not-a-provider-token-at-all",
            &json(&notice("001o05-00", 2)),
        )
        .await;
    assert_eq!(s, 401);
    let (s, _) = Ops::viewer(&relay.base)
        .post(
            "/v1/ops/replay",
            serde_json::json!({ "subscriber": "tax", "from_seq": 1 }),
        )
        .await;
    assert_eq!(s, 403);
    // Scrapes read no JetStream: the status call collects the gauges (as the timer does).
    let (s, _) = Ops::viewer(&relay.base).get("/v1/ops/status").await;
    assert_eq!(s, 200);
    let relay_text = relay.metrics_text().await;
    assert!(
        relay_text
            .contains("shirase_relay_consumer_pending{subscriber=\"tax\",provider=\"001\"} 1"),
        "{relay_text}"
    );
    let mut have = exported(&relay_text);
    // The agent's families appear once they have a child: give each one the labels an agent
    // run would.
    let agent = shirase_subscriber_kit::metrics::Metrics::new();
    let il = IfaceLabels {
        provider: "001".into(),
        interface: "001o05-00".into(),
    };
    let pl = ProviderLabels {
        provider: "001".into(),
    };
    agent
        .pulls
        .get_or_create(&PullLabels {
            provider: "001".into(),
            interface: "001o05-00".into(),
            outcome: "data".into(),
        })
        .inc();
    for f in [
        &agent.notices_received,
        &agent.rows_delivered,
        &agent.acked,
        &agent.naked,
        &agent.dead_lettered,
        &agent.uncovered,
    ] {
        f.get_or_create(&il).inc();
    }
    agent.checkpoint_age_seconds.get_or_create(&il).set(1.0);
    agent.lag_seconds.get_or_create(&il).set(1.0);
    agent.consumer_stalled.get_or_create(&pl).set(0);
    agent.in_maintenance.get_or_create(&pl).set(0);
    have.extend(exported(&agent.encode()));
    // The watcher's families appear once a watched provider is polled (watcher.rs runs one):
    // give them the labels a watcher would.
    let watcher = shirase_relay::metrics::Metrics::new();
    let wl = shirase_relay::metrics::WatchLabel {
        provider: "010".into(),
        interface: "010o01-00".into(),
    };
    watcher.watcher.lag_seconds.get_or_create(&wl).set(1.0);
    watcher
        .watcher
        .leader
        .get_or_create(&shirase_relay::metrics::ProviderLabel {
            provider: "010".into(),
        })
        .set(1);
    have.extend(exported(&watcher.encode()));
    for want in [
        "shirase_relay_consumer_oldest_pending_seconds",
        "shirase_relay_checkpoint_age_seconds",
        "shirase_relay_dlq_messages",
        "shirase_agent_pulls_total",
        "shirase_agent_rows_delivered_total",
        "shirase_agent_checkpoint_age_seconds",
        "shirase_agent_in_maintenance",
        "shirase_relay_provider_in_maintenance",
        "shirase_relay_publish_in_flight",
        "shirase_relay_notices_rejected_total",
        "shirase_relay_watcher_lag_seconds",
        "shirase_relay_watcher_leader",
    ] {
        assert!(have.contains(want), "{want} is not exported: {have:?}");
    }

    let text =
        std::fs::read_to_string(workspace_root().join("deploy/prometheus/alerts.yml")).unwrap();
    let doc: Value = serde_yaml_ng::from_str(&text).unwrap();
    let groups = doc["groups"].as_sequence().expect("groups: a list");
    let mut alerts = Vec::new();
    let mut used = BTreeSet::new();
    for g in groups {
        assert!(
            g["name"].as_str().is_some_and(|n| !n.is_empty()),
            "group without a name"
        );
        for r in g["rules"].as_sequence().expect("rules: a list") {
            let name = r["alert"]
                .as_str()
                .expect("each rule is an alert with a name");
            let expr = r["expr"].as_str().unwrap_or_else(|| panic!("{name}: expr"));
            assert!(
                ["warning", "critical"].contains(&r["labels"]["severity"].as_str().unwrap_or("")),
                "{name}: severity"
            );
            assert!(
                r["annotations"]["summary"].as_str().is_some(),
                "{name}: summary"
            );
            if let Some(f) = r["for"].as_str() {
                assert!(
                    f.ends_with('m') || f.ends_with('s') || f.ends_with('h'),
                    "{name}: for {f}"
                );
            }
            assert_eq!(
                expr.matches('(').count(),
                expr.matches(')').count(),
                "{name}: unbalanced parentheses"
            );
            let names = metric_names(expr);
            // A rule on Prometheus' own `up` of a Shirase scrape job (a silent relay or agent).
            let on_up = expr.contains("up{job=\"shirase-relay\"}")
                || expr.contains("up{job=\"shirase-agent\"}");
            assert!(
                !names.is_empty() || on_up,
                "{name} uses no Shirase metric or job"
            );
            used.extend(names);
            alerts.push(name.to_owned());
        }
    }
    for want in [
        "ShiraseNoticeLagTooOld",
        "ShiraseDeadLettersGrowing",
        "ShiraseProviderUnavailable",
        "ShiraseCheckpointNotAdvancing",
    ] {
        assert!(
            alerts.iter().any(|a| a == want),
            "{want} missing: {alerts:?}"
        );
    }

    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("deploy/grafana/shirase.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(dash["uid"], "shirase");
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    for p in panels {
        for t in p["targets"].as_array().unwrap() {
            used.extend(metric_names(t["expr"].as_str().unwrap()));
        }
    }
    let missing: Vec<&String> = used.iter().filter(|n| !have.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "metrics used by the alert rules or the dashboard but not exported: {missing:?}"
    );
    relay.stop().await;
}
