//! The production templates (`deploy/production/`) and the Prometheus scrape configuration
//! (`deploy/prometheus/prometheus.yml`): the templates are refused while a generated value is
//! missing, load with the real loaders once it is filled in, and have the production shape
//! (TLS, R3, operators); the scrape configuration reaches the ports the templates listen on.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeSet;

use serde_yaml_ng::Value;
use shirase_relay::config::Role;
use shirase_tests::harness::workspace_root;

/// The markers of deploy/production/relay.toml, each with a valid value of its kind.
const MARKERS: [(&str, &str); 5] = [
    (
        "@RELAY_NKEY@",
        "UCZHDPYET7IXCY3NMM3KKXYPTRALTMXH4DCKABDF7D3LSBPIYRPCLDAF",
    ),
    (
        "@SUBSCRIBER_TAX_NKEY@",
        "UCZFRHTY5NZPG2C2BFC55AAVHPHKFKM2BNZCUFNTHAGCHIRHS2WYLQVV",
    ),
    (
        "@PROVIDER_001_TOKEN_SHA256@",
        "37d956198d51a37c42642714e7b6d0833ed17b0aba8bf80ed9d032b0d2081e9a",
    ),
    (
        "@OPERATOR_TOKEN_SHA256@",
        "4f3b370ef9e7e0e066693ef69bbe4966d19a6f28ccf29b2f3529413f2c0366a8",
    ),
    (
        "@VIEWER_TOKEN_SHA256@",
        "b6adbff4c8ae57c4e05a587f8936898ea429b1dd126d2839b7cc78f08914d0d4",
    ),
];

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path)).unwrap()
}

fn markers_in(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find('@') {
        let after = &rest[start + 1..];
        match after.find('@') {
            Some(end)
                if end > 0
                    && after[..end]
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') =>
            {
                found.insert(format!("@{}@", &after[..end]));
                rest = &after[end + 1..];
            }
            _ => rest = after,
        }
    }
    found
}

#[test]
fn the_relay_template_is_refused_until_its_generated_values_are_filled_in() {
    let text = read("deploy/production/relay.toml");
    let want: BTreeSet<String> = MARKERS.iter().map(|(m, _)| (*m).to_owned()).collect();
    assert_eq!(markers_in(&text), want, "the template's @...@ markers");
    // docs/production.md fills every marker.
    let doc = read("docs/production.md");
    for m in &want {
        assert!(
            doc.contains(&format!("s/{m}/")),
            "docs/production.md never fills {m}"
        );
    }

    let err = shirase_relay::Config::from_toml_str(&text, None).unwrap_err();
    for field in [
        "nats_auth.relay_nkey",
        "subscribers[0].nats_nkey",
        "providers[0].credentials.token_sha256[0]",
        "operators[0].credentials.token_sha256[0]",
        "operators[1].credentials.token_sha256[0]",
    ] {
        assert!(err.names(field), "{field} not named: {err}");
    }

    let filled = MARKERS.iter().fold(text, |t, (m, v)| t.replace(m, v));
    let c = shirase_relay::Config::from_toml_str(&filled, None).unwrap();
    assert_eq!(c.stream.replicas, 3);
    assert_eq!(c.nats.urls.len(), 3);
    assert!(
        c.nats.urls.iter().all(|u| u.starts_with("tls://")),
        "{:?}",
        c.nats.urls
    );
    assert!(c.nats.tls_required);
    assert!(c.nats.tls_ca_file.is_some() && c.nats.nkey_seed_file.is_some());
    assert!(c.http.tls.is_some(), "the listener speaks HTTPS");
    assert_eq!(c.http.listen.port(), 8443);
    assert_eq!(c.relay_nkey.as_deref(), Some(MARKERS[0].1));
    let roles: Vec<Role> = c.operators.iter().map(|o| o.role).collect();
    assert_eq!(roles, [Role::Operator, Role::Viewer]);
    assert!(c.notifier.webhook.is_some(), "an alert delivery channel");
}

#[test]
fn the_agent_template_loads_and_matches_the_relay_template() {
    // The agent checks at load that its files exist: install them in a directory of their own.
    let etc = tempfile::tempdir().unwrap();
    for f in ["subscriber-tax.nk", "tls/ca.pem", "pull-001.secret"] {
        let p = etc.path().join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "x\n").unwrap();
    }
    let text = read("deploy/production/agent.toml")
        .replace("/etc/shirase/", &format!("{}/", etc.path().display()));
    let agent = shirase_subscriber_kit::Config::from_toml_str(&text).unwrap();
    let relay_text = MARKERS
        .iter()
        .fold(read("deploy/production/relay.toml"), |t, (m, v)| {
            t.replace(m, v)
        });
    let relay = shirase_relay::Config::from_toml_str(&relay_text, None).unwrap();
    assert_eq!(agent.nats.urls, relay.nats.urls, "the same cluster");
    assert_eq!(
        agent
            .nats
            .tls_ca_file
            .unwrap()
            .strip_prefix(etc.path())
            .unwrap(),
        relay
            .nats
            .tls_ca_file
            .unwrap()
            .strip_prefix("/etc/shirase")
            .unwrap(),
        "the same CA file"
    );
    assert!(agent.nats.tls_required && agent.nats.nkey_seed_file.is_some());
    assert_eq!(agent.subscriber.as_str(), "tax");
    assert!(relay.subscribers.iter().any(|s| s.id == agent.subscriber));
    assert_eq!(agent.municipality, relay.municipality);
    assert_eq!(agent.http.listen.map(|a| a.port()), Some(9464));
}

fn jobs(doc: &Value) -> Vec<&Value> {
    doc["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .collect()
}

fn targets(job: &Value) -> Vec<String> {
    job["static_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|s| s["targets"].as_sequence().unwrap().iter())
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_scrape_config_reaches_relays_agents_and_nats_on_the_templates_ports() {
    let doc: Value = serde_yaml_ng::from_str(&read("deploy/prometheus/prometheus.yml")).unwrap();
    let names: Vec<&str> = jobs(&doc)
        .iter()
        .map(|j| j["job_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["shirase-relay", "shirase-agent", "nats"]);
    let job = |n: &str| *jobs(&doc).iter().find(|j| j["job_name"] == n).unwrap();

    let relay = job("shirase-relay");
    assert_eq!(
        relay["scheme"], "https",
        "the template's listener speaks HTTPS"
    );
    assert!(relay["tls_config"]["ca_file"].as_str().is_some());
    let t = targets(relay);
    assert_eq!(t.len(), 2, "both relays, not the load balancer");
    assert!(t.iter().all(|t| t.ends_with(":8443")), "{t:?}");
    assert!(
        targets(job("shirase-agent"))
            .iter()
            .all(|t| t.ends_with(":9464"))
    );
    assert_eq!(targets(job("nats")).len(), 3);
    for j in jobs(&doc) {
        assert_eq!(j["metrics_path"], "/metrics");
    }
    let rules = doc["rule_files"].as_sequence().unwrap();
    assert_eq!(rules.len(), 1);
}

#[test]
fn the_k8s_and_compose_relays_have_an_operator() {
    // Without [[operators]] the operator API answers 401 to everyone.
    let compose = shirase_relay::Config::from_toml_str(
        &read("deploy/compose/relay.toml"),
        Some(&workspace_root().join("deploy/compose")),
    )
    .unwrap();
    assert!(compose.operators.iter().any(|o| o.role == Role::Operator));
    let k8s = read("deploy/k8s/base/relay.yaml");
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&k8s)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let toml = docs
        .iter()
        .find_map(|d| d["data"]["relay.toml"].as_str())
        .unwrap();
    let c = shirase_relay::Config::from_toml_str(toml, None).unwrap();
    assert!(c.operators.iter().any(|o| o.role == Role::Operator));
}

#[test]
fn the_backup_timer_runs_the_runbooks_backup_as_a_hardened_oneshot() {
    let unit = read("deploy/systemd/shirase-backup.service");
    let value = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(value("Type"), ["oneshot"]);
    assert_eq!(value("DynamicUser"), ["yes"]);
    assert_eq!(value("ProtectSystem"), ["strict"]);
    assert_eq!(value("NoNewPrivileges"), ["yes"]);
    assert_eq!(value("ReadWritePaths"), ["/var/backups/shirase"]);
    let exec = value("ExecStart").concat();
    assert!(
        exec.contains(
            "/usr/local/bin/shirase-relay backup --config /etc/shirase/relay.toml --out \"$out\""
        ),
        "{exec}"
    );
    assert!(exec.contains("/var/backups/shirase/latest"), "{exec}");
    // The same command docs/production.md's backup block runs.
    let doc = read("docs/production.md");
    assert!(doc.contains("shirase-relay backup --config /etc/shirase/relay.toml --out \"$out\""));
    let timer = read("deploy/systemd/shirase-backup.timer");
    assert!(timer.contains("OnCalendar=*-*-* 02:30:00"));
    assert!(timer.contains("Persistent=true"));
}
