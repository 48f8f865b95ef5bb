//! Offline checks of the deployment files under `deploy/`: what can be proven without a
//! container engine or a Kubernetes cluster.
//!
//! - every YAML file parses; compose services reference build files, config files, secrets,
//!   networks, volumes and `depends_on` targets that exist, and publish ports on 127.0.0.1 only;
//! - every absolute file path a compose or Kubernetes relay/agent configuration names (NATS
//!   seed and CA, secrets, sink directory) is mounted in the container that reads it, and both
//!   set the NATS `tls_ca_file` (the cluster requires TLS);
//! - the compose relay/agent configurations load with the real loaders, and the checked-in
//!   `deploy/nats/auth.conf` is exactly what the relay's emitter produces from that topology,
//!   for the public keys of the checked-in dev seeds;
//! - Kubernetes manifests are structurally sound and cross-reference each other (selectors,
//!   probe ports, mounted ConfigMaps/Secrets, PDBs, NetworkPolicies, hardening);
//! - the NATS cluster configurations pass the real `nats-server -t` check (with certificates
//!   generated here by rcgen) and, in the slow test, form a 3-node JetStream cluster on loopback.

// Helpers outside #[test] fns are test code too: a failed setup step should stop the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_yaml_ng::Value;
use shirase_tests::harness::{free_port, nats_server_bin, workspace_root};

fn deploy() -> PathBuf {
    workspace_root().join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// All documents of a (possibly multi-document) YAML file; empty documents are skipped.
fn yaml_docs(path: &Path) -> Vec<Value> {
    use serde::Deserialize as _;
    let text = read(path);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| {
            Value::deserialize(d)
                .unwrap_or_else(|e| panic!("{}: invalid YAML: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn files_with_ext(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_with_ext(&p, exts, out);
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| exts.contains(&e))
        {
            out.push(p);
        }
    }
}

fn s<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    get(v, path).and_then(Value::as_str)
}

/// `a.b.c` lookup through mappings.
fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn seq<'a>(v: &'a Value, path: &str) -> Vec<&'a Value> {
    get(v, path)
        .and_then(Value::as_sequence)
        .map(|s| s.iter().collect())
        .unwrap_or_default()
}

fn str_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// YAML and compose

#[test]
fn every_yaml_file_under_deploy_parses() {
    let mut files = Vec::new();
    files_with_ext(&deploy(), &["yaml", "yml"], &mut files);
    let names: Vec<String> = files
        .iter()
        .map(|p| p.strip_prefix(deploy()).unwrap_or(p).display().to_string())
        .collect();
    for must in [
        "compose/compose.yaml",
        "k8s/nats-values.yaml",
        "k8s/secrets.example.yaml",
        "k8s/base/kustomization.yaml",
        "k8s/base/relay.yaml",
        "k8s/base/agent-tax.yaml",
        "k8s/dev/kustomization.yaml",
    ] {
        assert!(
            names.iter().any(|n| n == must),
            "deploy/{must} is missing; found {names:?}"
        );
    }
    for f in &files {
        let docs = yaml_docs(f);
        assert!(!docs.is_empty(), "{} holds no YAML document", f.display());
        for d in &docs {
            assert!(
                d.is_mapping(),
                "{}: every document must be a mapping, got {d:?}",
                f.display()
            );
        }
    }
}

fn compose() -> Value {
    let docs = yaml_docs(&deploy().join("compose/compose.yaml"));
    assert_eq!(docs.len(), 1, "compose.yaml is one document");
    docs.into_iter().next().unwrap_or(Value::Null)
}

/// Host side of a bind mount (`./x:/y:ro`), if it is a path rather than a named volume.
fn bind_source(spec: &str) -> Option<&str> {
    let src = spec.split(':').next()?;
    (src.starts_with('.') || src.starts_with('/')).then_some(src)
}

#[test]
fn compose_services_reference_files_networks_volumes_and_secrets_that_exist() {
    let c = compose();
    let dir = deploy().join("compose");
    let services = get(&c, "services")
        .and_then(Value::as_mapping)
        .expect("services");
    let names: BTreeSet<String> = services
        .keys()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    let expected: BTreeSet<String> = [
        "nats-1",
        "nats-2",
        "nats-3",
        "relay-provision",
        "relay-1",
        "relay-2",
        "agent-1",
        "agent-2",
        "provider-sim",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(names, expected, "compose services");

    let networks: BTreeSet<&str> = get(&c, "networks")
        .and_then(Value::as_mapping)
        .expect("networks")
        .keys()
        .filter_map(Value::as_str)
        .collect();
    let volumes: BTreeSet<&str> = get(&c, "volumes")
        .and_then(Value::as_mapping)
        .expect("volumes")
        .keys()
        .filter_map(Value::as_str)
        .collect();
    let secrets = get(&c, "secrets")
        .and_then(Value::as_mapping)
        .expect("secrets");
    for (name, def) in secrets {
        let file = s(def, "file").unwrap_or_else(|| panic!("secret {name:?} has no file"));
        assert!(
            dir.join(file).is_file(),
            "secret {name:?}: {file} does not exist"
        );
    }

    // Images some service builds; the others must reuse one of them or be a pinned registry image.
    let mut built = BTreeSet::new();
    for (name, svc) in services {
        let name = name.as_str().unwrap_or_default();
        if let Some(build) = get(svc, "build") {
            let ctx = dir.join(s(build, "context").unwrap_or("."));
            let file = ctx.join(s(build, "dockerfile").unwrap_or("Dockerfile"));
            assert!(
                file.is_file(),
                "{name}: build file {} does not exist",
                file.display()
            );
            assert!(
                ctx.join("Cargo.lock").is_file(),
                "{name}: build context {} is not the workspace root",
                ctx.display()
            );
            built.insert(
                s(svc, "image")
                    .unwrap_or_else(|| panic!("{name}: a built service names its image")),
            );
        }
    }
    let tls_dir = dir.join("tls");
    let mut saw_tls = false;
    for (name, svc) in services {
        let name = name.as_str().unwrap_or_default();
        let image = s(svc, "image").unwrap_or_else(|| panic!("{name}: no image"));
        assert!(
            built.contains(image) || image.contains(':') && !image.ends_with(":latest"),
            "{name}: image {image} is neither built here nor pinned"
        );
        for v in seq(svc, "volumes") {
            let spec = v
                .as_str()
                .unwrap_or_else(|| panic!("{name}: volume {v:?} not in short syntax"));
            match bind_source(spec) {
                Some(src) => {
                    let p = dir.join(src);
                    // tls/ is generated by deploy/nats/gen-dev-certs.sh before `compose up`.
                    if p.starts_with(&tls_dir) {
                        saw_tls = true;
                        continue;
                    }
                    assert!(p.exists(), "{name}: bind mount source {src} does not exist");
                }
                None => {
                    let vol = spec.split(':').next().unwrap_or_default();
                    assert!(
                        volumes.contains(vol),
                        "{name}: named volume {vol} is not declared"
                    );
                }
            }
        }
        for n in seq(svc, "networks") {
            let n = n.as_str().unwrap_or_default();
            assert!(networks.contains(n), "{name}: network {n} is not declared");
        }
        assert!(!seq(svc, "networks").is_empty(), "{name}: joins no network");
        for sec in seq(svc, "secrets") {
            let src = s(sec, "source").or(sec.as_str()).unwrap_or_default();
            assert!(
                secrets.contains_key(src),
                "{name}: secret {src} is not declared"
            );
        }
        if let Some(deps) = get(svc, "depends_on").and_then(Value::as_mapping) {
            for (dep, cond) in deps {
                let dep = dep.as_str().unwrap_or_default();
                assert!(
                    names.contains(dep),
                    "{name}: depends_on {dep}, which is no service"
                );
                let cond = s(cond, "condition")
                    .unwrap_or_else(|| panic!("{name}: depends_on {dep} has no condition"));
                let target = services.get(dep).expect("checked above");
                match cond {
                    "service_healthy" => assert!(
                        get(target, "healthcheck").is_some(),
                        "{name} waits for {dep} to be healthy, but {dep} has no healthcheck"
                    ),
                    "service_completed_successfully" => {
                        assert_eq!(
                            s(target, "restart"),
                            Some("no"),
                            "{dep} is a one-shot: restart must be \"no\""
                        )
                    }
                    other => panic!("{name}: depends_on {dep}: unexpected condition {other}"),
                }
            }
        }
        if s(svc, "restart") != Some("no") {
            assert!(
                get(svc, "healthcheck").is_some(),
                "{name}: a long-running service needs a healthcheck"
            );
        }
        for p in seq(svc, "ports") {
            let p = p.as_str().unwrap_or_default();
            assert!(
                p.starts_with("127.0.0.1:"),
                "{name}: port {p} must be published on 127.0.0.1 only"
            );
            assert!(
                name.starts_with("relay-"),
                "{name}: only the relays publish ports, found {p}"
            );
        }
    }
    assert!(saw_tls, "the NATS nodes mount the generated tls/ directory");
    assert!(read(&deploy().join("nats/gen-dev-certs.sh")).contains("deploy/compose/tls"));
    let backend = get(&c, "networks.backend").expect("backend network");
    assert_eq!(
        get(backend, "internal").and_then(Value::as_bool),
        Some(true),
        "the backend network is internal"
    );

    // Every node mounts its own nX.conf and the shared files, and runs exactly that file.
    for i in 1..=3 {
        let svc = services.get(format!("nats-{i}").as_str()).expect("node");
        let vols: Vec<&str> = seq(svc, "volumes")
            .into_iter()
            .filter_map(Value::as_str)
            .collect();
        for f in [
            format!("n{i}.conf"),
            "cluster.conf".into(),
            "auth.conf".into(),
        ] {
            assert!(
                vols.contains(&format!("../nats/{f}:/etc/nats/{f}:ro").as_str()),
                "nats-{i} mounts ../nats/{f} read-only at /etc/nats/{f}: {vols:?}"
            );
        }
        let cmd: Vec<&str> = seq(svc, "command")
            .into_iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(cmd, ["--config", &format!("/etc/nats/n{i}.conf")]);
    }
}

#[test]
fn compose_relay_and_agent_configs_load_with_the_real_loaders_and_name_compose_services() {
    let dir = deploy().join("compose");
    let c = compose();
    let services = get(&c, "services")
        .and_then(Value::as_mapping)
        .expect("services");

    let relay = shirase_relay::Config::from_toml_str(&read(&dir.join("relay.toml")), Some(&dir))
        .unwrap_or_else(|e| panic!("deploy/compose/relay.toml: {e}"));
    assert_eq!(relay.stream.replicas, 3, "R3 on the 3-node cluster");
    assert_eq!(
        relay.nats.urls,
        [
            "nats://nats-1:4222",
            "nats://nats-2:4222",
            "nats://nats-3:4222"
        ]
    );
    assert_eq!(relay.http.listen.port(), 8080);
    let seed = relay
        .nats
        .nkey_seed_file
        .as_deref()
        .expect("the relay logs in with an nkey seed");
    // The seed path is where compose mounts the relay-nkey secret.
    for name in ["relay-provision", "relay-1", "relay-2"] {
        let svc = services.get(name).expect("relay service");
        let targets: Vec<String> = seq(svc, "secrets")
            .into_iter()
            .filter(|s| get(s, "source").and_then(Value::as_str) == Some("relay-nkey"))
            .filter_map(|s| {
                s.get("target")
                    .and_then(Value::as_str)
                    .map(|t| format!("/run/secrets/{t}"))
            })
            .collect();
        assert_eq!(
            targets,
            [seed.display().to_string()],
            "{name} mounts the relay seed at nkey_seed_file"
        );
        let vols: Vec<&str> = seq(svc, "volumes")
            .into_iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            vols.contains(&"./relay.toml:/etc/shirase/relay.toml:ro"),
            "{name}: {vols:?}"
        );
    }

    assert_eq!(
        relay.nats.tls_ca_file.as_deref(),
        Some(Path::new("/etc/shirase/tls/ca.pem")),
        "the relay trusts the cluster's CA where compose mounts it"
    );
    assert!(relay.nats.tls_required);
    let agent_text = read(&dir.join("agent-tax.toml"));
    assert_eq!(
        toml_string(&agent_text, "tls_ca_file").as_deref(),
        Some("/etc/shirase/tls/ca.pem"),
        "the agent trusts the cluster's CA where compose mounts it"
    );
    assert_eq!(
        toml_string(&agent_text, "nkey_seed_file").as_deref(),
        Some("/run/secrets/subscriber-tax.nk"),
        "where compose mounts subscriber-tax-nkey"
    );
    let tmp = tempfile::tempdir().unwrap();
    let agent = agent_config_here(&agent_text, tmp.path(), "deploy/compose/agent-tax.toml");
    assert!(agent.nats.tls_required);
    assert_eq!(agent.subscriber.as_str(), "tax");
    assert_eq!(
        agent.http.listen,
        Some("0.0.0.0:9464".parse().unwrap()),
        "the healthchecks read port 9464 from outside 127.0.0.1"
    );
    assert!(
        relay.subscribers.iter().any(|s| s.id == agent.subscriber),
        "the agent's subscriber is in the topology"
    );
    for p in &agent.providers {
        let host = p
            .pull_api_base_url
            .trim_start_matches("http://")
            .split(':')
            .next()
            .unwrap_or_default();
        assert!(
            services.contains_key(host),
            "agent provider {} points at {host}, no compose service",
            p.business_id
        );
        assert!(
            relay.provider(&p.business_id).is_some(),
            "agent provider {} is in the topology",
            p.business_id
        );
    }
    // The OAuth client the agent uses is one provider-sim accepts, with the same secret.
    let sim = services.get("provider-sim").expect("provider-sim");
    let clients = s(sim, "environment.PROVIDER_SIM_CLIENTS").expect("PROVIDER_SIM_CLIENTS");
    let secret = read(&dir.join("dev-secrets/pull-client-tax.secret"));
    assert_eq!(
        clients,
        format!("{}={}", agent.providers[0].client_id, secret.trim())
    );
    assert_eq!(
        agent.providers[0].client_secret_file,
        Path::new("/run/secrets/pull-client-tax.secret"),
        "where compose mounts pull-client-tax-secret"
    );
}

/// The value of the first `key = "..."` line of a TOML text (comments ignored).
fn toml_string(text: &str, key: &str) -> Option<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .find(|l| l.split('=').next().map(str::trim) == Some(key))
        .and_then(|l| l.split('"').nth(1))
        .map(str::to_owned)
}

/// Absolute paths named in a TOML text: every quoted string starting with `/` outside comments.
fn toml_paths(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .flat_map(|l| {
            l.split('"')
                .skip(1)
                .step_by(2)
                .filter(|s| s.starts_with('/'))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Whether `path` is one of `mounts` or lies under one (a mounted directory).
fn is_mounted(path: &str, mounts: &[String]) -> bool {
    mounts
        .iter()
        .any(|m| path == m || path.starts_with(&format!("{}/", m.trim_end_matches('/'))))
}

/// Load an agent configuration with the real loader on this host. The agent checks at load
/// time that its NATS and HTTPS files exist (in the container they are mounted); empty files in
/// `tmp` stand in for them here.
fn agent_config_here(text: &str, tmp: &Path, what: &str) -> shirase_subscriber_kit::Config {
    let mut local = text.to_owned();
    for key in [
        "credentials_file",
        "nkey_seed_file",
        "tls_ca_file",
        "tls_cert_file",
        "tls_key_file",
    ] {
        for line in text
            .lines()
            .map(|l| l.split('#').next().unwrap_or_default())
        {
            if line.split('=').next().map(str::trim) != Some(key) {
                continue;
            }
            if let Some(p) = line.split('"').nth(1).filter(|p| !p.is_empty()) {
                let here = tmp.join(p.trim_start_matches('/').replace('/', "_"));
                std::fs::write(&here, "").unwrap();
                local = local.replace(
                    &format!("\"{p}\""),
                    &format!("{:?}", here.display().to_string()),
                );
            }
        }
    }
    shirase_subscriber_kit::Config::from_toml_str(&local).unwrap_or_else(|e| panic!("{what}: {e}"))
}

#[test]
fn compose_config_files_name_only_paths_mounted_in_their_services() {
    let dir = deploy().join("compose");
    let c = compose();
    let services = get(&c, "services")
        .and_then(Value::as_mapping)
        .expect("services");
    let mut checked = BTreeSet::new();
    for (name, svc) in services {
        let name = name.as_str().unwrap_or_default();
        let specs: Vec<&str> = seq(svc, "volumes")
            .into_iter()
            .filter_map(Value::as_str)
            .collect();
        // What the container sees: bind mounts and volumes at their targets, secrets under
        // /run/secrets.
        let mut mounts: Vec<String> = specs
            .iter()
            .filter_map(|v| v.split(':').nth(1).map(str::to_owned))
            .collect();
        for sec in seq(svc, "secrets") {
            let target = s(sec, "target")
                .or_else(|| s(sec, "source"))
                .or_else(|| sec.as_str())
                .unwrap_or_default();
            mounts.push(format!("/run/secrets/{target}"));
        }
        for spec in &specs {
            let Some(src) = bind_source(spec).filter(|s| s.ends_with(".toml")) else {
                continue;
            };
            let text = read(&dir.join(src));
            let paths = toml_paths(&text);
            for p in &paths {
                assert!(
                    is_mounted(p, &mounts),
                    "{name}: {src} names {p}, which is not mounted in the service ({mounts:?})"
                );
            }
            assert!(
                paths
                    .iter()
                    .any(|p| toml_string(&text, "tls_ca_file").as_deref() == Some(p)),
                "{name}: {src} sets no nats.tls_ca_file (the cluster requires TLS)"
            );
            checked.insert(name.to_owned());
        }
    }
    assert_eq!(
        checked.into_iter().collect::<Vec<_>>(),
        [
            "agent-1",
            "agent-2",
            "relay-1",
            "relay-2",
            "relay-provision"
        ],
        "every relay and agent service mounts its config"
    );
}

/// The checked-in dev seeds, by file stem (`relay`, `provider-001`, `subscriber-tax`, ...).
fn dev_seeds() -> BTreeMap<String, nkeys::KeyPair> {
    let dir = deploy().join("compose/dev-secrets");
    let mut out = BTreeMap::new();
    let mut files = Vec::new();
    files_with_ext(&dir, &["nk"], &mut files);
    for f in files {
        let kp = nkeys::KeyPair::from_seed(read(&f).trim())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let stem = f
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        out.insert(stem, kp);
    }
    out
}

#[test]
fn checked_in_nats_auth_is_what_the_relay_emits_for_the_dev_seeds() {
    let dir = deploy().join("compose");
    let relay = shirase_relay::Config::from_toml_str(&read(&dir.join("relay.toml")), Some(&dir))
        .expect("relay.toml");
    let seeds = dev_seeds();
    assert_eq!(
        seeds.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "provider-001",
            "provider-010",
            "relay",
            "subscriber-delinquency",
            "subscriber-tax"
        ]
    );
    assert_eq!(
        relay.relay_nkey.as_deref(),
        Some(seeds["relay"].public_key().as_str())
    );
    for p in &relay.providers {
        let kp = &seeds[&format!("provider-{}", p.business_id)];
        assert_eq!(
            p.nats_nkey.as_deref(),
            Some(kp.public_key().as_str()),
            "provider {}",
            p.business_id
        );
    }
    for sub in &relay.subscribers {
        let kp = &seeds[&format!("subscriber-{}", sub.id)];
        assert_eq!(
            sub.nats_nkey.as_deref(),
            Some(kp.public_key().as_str()),
            "subscriber {}",
            sub.id
        );
    }
    let emitted = shirase_relay::nats_auth::emit(&relay).expect("emit");
    let checked_in = read(&deploy().join("nats/auth.conf"));
    assert!(
        emitted == checked_in,
        "deploy/nats/auth.conf is stale; regenerate it:\n  shirase-relay provision --config deploy/compose/relay.toml \
         --emit-nats-auth deploy/nats/auth.conf\n--- emitted ---\n{emitted}"
    );
    // Least privilege as generated: only the relay publishes to >, nobody subscribes to > or to
    // the shared _INBOX; each identity subscribes to its own inbox only.
    assert_eq!(
        checked_in.matches("allow: [\">\"]").count(),
        1,
        "only the relay publishes to >"
    );
    assert!(!checked_in.contains("subscribe: { allow: [\">\"]"));
    assert!(!checked_in.contains("\"_INBOX.>\""));
    for inbox in [
        "_INBOX_relay.>",
        "_INBOX_provider_001.>",
        "_INBOX_provider_010.>",
        "_INBOX_subscriber_tax.>",
        "_INBOX_subscriber_delinquency.>",
    ] {
        assert_eq!(
            checked_in
                .matches(&format!("subscribe: {{ allow: [\"{inbox}\"] }}"))
                .count(),
            1,
            "{inbox}"
        );
    }
    assert!(checked_in.contains("\"shirase.notice.131016.010.010o01-00\""));
}

// ---------------------------------------------------------------------------------------------
// Kubernetes

/// Every manifest document under deploy/k8s (kustomizations and Helm values excluded), with
/// its file.
fn k8s_manifests() -> Vec<(PathBuf, Value)> {
    let mut files = Vec::new();
    files_with_ext(&deploy().join("k8s"), &["yaml"], &mut files);
    files
        .into_iter()
        .filter(|f| {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name != "kustomization.yaml" && name != "nats-values.yaml"
        })
        .flat_map(|f| yaml_docs(&f).into_iter().map(move |d| (f.clone(), d)))
        .collect()
}

/// Labels of the pods the official NATS chart creates for release "nats".
fn nats_chart_pod_labels() -> BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name", "nats"),
        ("app.kubernetes.io/instance", "nats"),
        ("app.kubernetes.io/component", "nats"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn name_of(d: &Value) -> &str {
    s(d, "metadata.name").unwrap_or_default()
}

#[test]
fn kustomizations_list_existing_files_and_every_manifest_is_applied_by_one() {
    let k8s = deploy().join("k8s");
    let mut listed = BTreeSet::new();
    for dir in ["base", "dev"] {
        let k = yaml_docs(&k8s.join(dir).join("kustomization.yaml")).remove(0);
        assert_eq!(s(&k, "namespace"), Some("shirase"), "{dir}: namespace");
        let patches = seq(&k, "patches")
            .into_iter()
            .filter_map(|p| get(p, "path"));
        for r in seq(&k, "resources").into_iter().chain(patches) {
            let r = r.as_str().expect("resource path");
            let p = k8s.join(dir).join(r);
            assert!(
                p.exists(),
                "{dir}/kustomization.yaml lists {r}, which does not exist"
            );
            if p.is_file() {
                listed.insert(p.canonicalize().expect("canonical"));
            }
        }
    }
    let mut files = Vec::new();
    files_with_ext(&k8s, &["yaml"], &mut files);
    for f in files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        // Helm values and the secrets template are applied by hand, by design.
        if [
            "kustomization.yaml",
            "nats-values.yaml",
            "secrets.example.yaml",
        ]
        .contains(&name)
        {
            continue;
        }
        assert!(
            listed.contains(&f.canonicalize().expect("canonical")),
            "{} is in no kustomization",
            f.display()
        );
    }
}

#[test]
fn k8s_manifests_are_well_formed_hardened_and_cross_referenced() {
    let docs = k8s_manifests();
    assert!(
        docs.len() >= 15,
        "expected the full set of manifests, found {}",
        docs.len()
    );
    let mut config_maps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut secrets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pod_labels: Vec<(String, BTreeMap<String, String>, &Value)> = Vec::new();
    for (f, d) in &docs {
        let kind =
            s(d, "kind").unwrap_or_else(|| panic!("{}: a document has no kind", f.display()));
        assert!(
            s(d, "apiVersion").is_some(),
            "{}: {kind} has no apiVersion",
            f.display()
        );
        assert!(
            !name_of(d).is_empty(),
            "{}: {kind} has no metadata.name",
            f.display()
        );
        assert_ne!(
            kind,
            "StatefulSet",
            "Shirase is stateless: no StatefulSet ({})",
            f.display()
        );
        let keys = |field: &str| -> BTreeSet<String> {
            get(d, field)
                .and_then(Value::as_mapping)
                .map(|m| {
                    m.keys()
                        .filter_map(|k| k.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        match kind {
            "ConfigMap" => {
                config_maps.insert(name_of(d).to_owned(), keys("data"));
            }
            "Secret" => {
                let mut k = keys("stringData");
                k.extend(keys("data"));
                for (key, v) in str_map(get(d, "stringData")) {
                    // Placeholders only, except the dev overlay's public dev values.
                    let dev = f.starts_with(deploy().join("k8s/dev"));
                    assert!(
                        dev || v.contains("REPLACE"),
                        "{}: Secret {} key {key} is not a placeholder",
                        f.display(),
                        name_of(d)
                    );
                }
                secrets.insert(name_of(d).to_owned(), k);
            }
            "Deployment" => pod_labels.push((
                name_of(d).to_owned(),
                str_map(get(d, "spec.template.metadata.labels")),
                d,
            )),
            _ => {}
        }
    }
    let mut deployments = BTreeMap::new();
    for (name, labels, d) in &pod_labels {
        deployments.insert(name.as_str(), *d);
        let selector = str_map(get(d, "spec.selector.matchLabels"));
        assert!(
            !selector.is_empty() && selects(&selector, labels),
            "{name}: selector {selector:?} does not match template labels {labels:?}"
        );
        let pod = get(d, "spec.template.spec").expect("pod spec");
        assert_eq!(
            get(pod, "securityContext.runAsNonRoot").and_then(Value::as_bool),
            Some(true),
            "{name}: runAsNonRoot"
        );
        assert_eq!(
            get(pod, "automountServiceAccountToken").and_then(Value::as_bool),
            Some(false),
            "{name}: no API token"
        );
        let volumes: BTreeMap<&str, &Value> = seq(pod, "volumes")
            .into_iter()
            .map(|v| (s(v, "name").unwrap_or_default(), v))
            .collect();
        for (vname, v) in &volumes {
            if let Some(cm) = s(v, "configMap.name") {
                assert!(
                    config_maps.contains_key(cm),
                    "{name}: volume {vname} mounts ConfigMap {cm}, which is not defined"
                );
            }
            if let Some(sec) = s(v, "secret.secretName") {
                assert!(
                    secrets.contains_key(sec),
                    "{name}: volume {vname} mounts Secret {sec}, which is not defined"
                );
            }
        }
        let mains = seq(pod, "containers");
        let inits = seq(pod, "initContainers");
        assert!(!mains.is_empty(), "{name}: no containers");
        for (c, is_main) in mains
            .iter()
            .map(|c| (*c, true))
            .chain(inits.iter().map(|c| (*c, false)))
        {
            let cname = s(c, "name").unwrap_or_default();
            let sc = get(c, "securityContext")
                .unwrap_or_else(|| panic!("{name}/{cname}: no securityContext"));
            assert_eq!(
                get(sc, "readOnlyRootFilesystem").and_then(Value::as_bool),
                Some(true),
                "{name}/{cname}: read-only root"
            );
            assert_eq!(
                get(sc, "allowPrivilegeEscalation").and_then(Value::as_bool),
                Some(false),
                "{name}/{cname}: no escalation"
            );
            let drops: Vec<&str> = seq(sc, "capabilities.drop")
                .into_iter()
                .filter_map(Value::as_str)
                .collect();
            assert_eq!(drops, ["ALL"], "{name}/{cname}: drop ALL capabilities");
            for r in [
                "requests.cpu",
                "requests.memory",
                "limits.cpu",
                "limits.memory",
            ] {
                assert!(
                    get(c, &format!("resources.{r}")).is_some(),
                    "{name}/{cname}: resources.{r} missing"
                );
            }
            let ports: Vec<(&str, i64)> = seq(c, "ports")
                .into_iter()
                .map(|p| {
                    (
                        s(p, "name").unwrap_or_default(),
                        get(p, "containerPort")
                            .and_then(Value::as_i64)
                            .unwrap_or_default(),
                    )
                })
                .collect();
            if is_main {
                for probe in ["livenessProbe", "readinessProbe"] {
                    assert!(get(c, probe).is_some(), "{name}/{cname}: no {probe}");
                }
            }
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                let Some(p) = get(c, probe) else { continue };
                let port = get(p, "httpGet.port")
                    .unwrap_or_else(|| panic!("{name}/{cname}: {probe} is not an httpGet"));
                let declared = match port {
                    Value::String(n) => ports.iter().any(|(pn, _)| pn == n),
                    Value::Number(n) => ports.iter().any(|(_, pp)| Some(*pp) == n.as_i64()),
                    _ => false,
                };
                assert!(
                    declared,
                    "{name}/{cname}: {probe} port {port:?} is not a declared container port {ports:?}"
                );
                let path = s(p, "httpGet.path").unwrap_or_default();
                assert!(
                    path.starts_with('/'),
                    "{name}/{cname}: {probe} path {path:?}"
                );
            }
            let mounts: Vec<(&str, &str)> = seq(c, "volumeMounts")
                .into_iter()
                .map(|m| {
                    (
                        s(m, "name").unwrap_or_default(),
                        s(m, "mountPath").unwrap_or_default(),
                    )
                })
                .collect();
            for (m, _) in &mounts {
                assert!(
                    volumes.contains_key(m),
                    "{name}/{cname}: mounts undeclared volume {m}"
                );
            }
            // `--config FILE` must be a key of the ConfigMap mounted at FILE's directory.
            let args: Vec<&str> = seq(c, "args")
                .into_iter()
                .filter_map(Value::as_str)
                .collect();
            if let Some(i) = args.iter().position(|a| *a == "--config") {
                let file = Path::new(args[i + 1]);
                let (dir, key) = (
                    file.parent().and_then(Path::to_str).unwrap_or_default(),
                    file.file_name()
                        .and_then(|f| f.to_str())
                        .unwrap_or_default(),
                );
                let (vol, _) = mounts
                    .iter()
                    .find(|(_, p)| *p == dir)
                    .unwrap_or_else(|| panic!("{name}/{cname}: nothing mounted at {dir}"));
                let cm = s(volumes[vol], "configMap.name")
                    .unwrap_or_else(|| panic!("{name}/{cname}: {dir} is not a ConfigMap"));
                assert!(
                    config_maps[cm].contains(key),
                    "{name}/{cname}: ConfigMap {cm} has no key {key}"
                );
            }
            for e in seq(c, "env") {
                if let Some(sec) = s(e, "valueFrom.secretKeyRef.name") {
                    let key = s(e, "valueFrom.secretKeyRef.key").unwrap_or_default();
                    assert!(
                        secrets.get(sec).is_some_and(|k| k.contains(key)),
                        "{name}/{cname}: env from Secret {sec} key {key}, not defined"
                    );
                }
            }
        }
    }
    assert_eq!(
        get(deployments["shirase-relay"], "spec.replicas").and_then(Value::as_i64),
        Some(2)
    );
    assert_eq!(
        get(deployments["shirase-agent-tax"], "spec.replicas").and_then(Value::as_i64),
        Some(2)
    );

    let matches_a_pod = |sel: &BTreeMap<String, String>| {
        pod_labels.iter().any(|(_, l, _)| selects(sel, l)) || selects(sel, &nats_chart_pod_labels())
    };
    let mut pdbs = BTreeSet::new();
    for (f, d) in &docs {
        let name = name_of(d);
        match s(d, "kind").unwrap_or_default() {
            "Service" => {
                let sel = str_map(get(d, "spec.selector"));
                let targets: Vec<&(String, BTreeMap<String, String>, &Value)> = pod_labels
                    .iter()
                    .filter(|(_, l, _)| !sel.is_empty() && selects(&sel, l))
                    .collect();
                assert!(
                    !targets.is_empty(),
                    "{}: Service {name} selects no Deployment",
                    f.display()
                );
                for p in seq(d, "spec.ports") {
                    let target = s(p, "targetPort")
                        .unwrap_or_else(|| panic!("Service {name}: name the targetPort"));
                    for (dep, _, dd) in &targets {
                        let declared = seq(dd, "spec.template.spec.containers")
                            .into_iter()
                            .flat_map(|c| seq(c, "ports"))
                            .any(|cp| s(cp, "name") == Some(target));
                        assert!(
                            declared,
                            "Service {name}: targetPort {target} is not declared by {dep}"
                        );
                    }
                }
            }
            "PodDisruptionBudget" => {
                let sel = str_map(get(d, "spec.selector.matchLabels"));
                assert!(
                    pod_labels.iter().any(|(_, l, _)| selects(&sel, l)),
                    "PDB {name} selects no Deployment"
                );
                pdbs.insert(name.to_owned());
            }
            "NetworkPolicy" => {
                let sel = str_map(get(d, "spec.podSelector.matchLabels"));
                assert!(
                    sel.is_empty() || matches_a_pod(&sel),
                    "NetworkPolicy {name}: podSelector {sel:?} matches no pod"
                );
                for rule in seq(d, "spec.ingress")
                    .into_iter()
                    .map(|r| ("from", r))
                    .chain(seq(d, "spec.egress").into_iter().map(|r| ("to", r)))
                {
                    for peer in seq(rule.1, rule.0) {
                        if get(peer, "namespaceSelector").is_some() {
                            continue;
                        }
                        let ps = str_map(get(peer, "podSelector.matchLabels"));
                        assert!(
                            matches_a_pod(&ps),
                            "NetworkPolicy {name}: peer {ps:?} matches no pod"
                        );
                    }
                }
            }
            _ => {}
        }
    }
    for dep in ["shirase-relay", "shirase-agent-tax"] {
        assert!(pdbs.contains(dep), "no PodDisruptionBudget for {dep}");
    }
}

#[test]
fn k8s_configs_load_with_the_real_loaders_and_match_their_secrets() {
    let docs = k8s_manifests();
    let data = |kind: &str, name: &str, key: &str| -> String {
        docs.iter()
            .find(|(_, d)| s(d, "kind") == Some(kind) && name_of(d) == name)
            // Keys like relay.toml hold dots: look them up directly, not as a dotted path.
            .and_then(|(_, d)| {
                get(d, "data")
                    .or_else(|| get(d, "stringData"))
                    .and_then(|m| m.get(key))
            })
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("{kind} {name} has no key {key}"))
    };
    let relay = shirase_relay::Config::from_toml_str(
        &data("ConfigMap", "shirase-relay-config", "relay.toml"),
        None,
    )
    .unwrap_or_else(|e| panic!("ConfigMap shirase-relay-config relay.toml: {e}"));
    assert_eq!(relay.stream.replicas, 3);
    assert_eq!(
        relay.nats.urls,
        ["nats://nats.shirase.svc.cluster.local:4222"],
        "the chart's client Service"
    );
    assert_eq!(relay.http.listen.port(), 8080, "the Deployment's http port");
    assert_eq!(
        relay.nats.nkey_seed_file.as_deref(),
        Some(Path::new("/etc/shirase/secrets/relay.nk"))
    );
    data("Secret", "shirase-relay-nats", "relay.nk");
    assert_eq!(
        relay.nats.tls_ca_file.as_deref(),
        Some(Path::new("/etc/shirase/tls/ca.crt")),
        "key ca.crt of Secret shirase-nats-ca, mounted at /etc/shirase/tls"
    );
    assert!(relay.nats.tls_required);
    data("Secret", "shirase-nats-ca", "ca.crt");
    let agent_text = data("ConfigMap", "shirase-agent-tax-config", "agent.toml");
    assert_eq!(
        toml_string(&agent_text, "tls_ca_file").as_deref(),
        Some("/etc/shirase/tls/ca.crt")
    );
    assert_eq!(
        toml_string(&agent_text, "nkey_seed_file").as_deref(),
        Some("/etc/shirase/secrets/subscriber.nk")
    );
    data("Secret", "shirase-agent-tax", "subscriber.nk");
    let tmp = tempfile::tempdir().unwrap();
    let agent = agent_config_here(
        &agent_text,
        tmp.path(),
        "ConfigMap shirase-agent-tax-config agent.toml",
    );
    assert!(agent.nats.tls_required);
    assert_eq!(
        agent.http.listen,
        Some("0.0.0.0:9464".parse().unwrap()),
        "the Deployment's http-metrics port"
    );
    assert_eq!(
        agent.providers[0].client_secret_file,
        Path::new("/etc/shirase/secrets/pull-client.secret")
    );
    data("Secret", "shirase-agent-tax", "pull-client.secret");
    // The dev overlay's provider-sim accepts the agent's client id.
    let clients = data("Secret", "provider-sim-dev", "clients");
    assert!(
        clients.starts_with(&format!("{}=", agent.providers[0].client_id)),
        "{clients}"
    );
}

#[test]
fn nats_helm_values_keep_three_replicas_file_storage_sync_always_tls_and_the_generated_auth() {
    let v = yaml_docs(&deploy().join("k8s/nats-values.yaml")).remove(0);
    assert_eq!(
        get(&v, "config.cluster.enabled").and_then(Value::as_bool),
        Some(true)
    );
    assert_eq!(
        get(&v, "config.cluster.replicas").and_then(Value::as_i64),
        Some(3)
    );
    assert_eq!(
        get(&v, "config.jetstream.enabled").and_then(Value::as_bool),
        Some(true)
    );
    assert_eq!(
        get(&v, "config.jetstream.fileStore.enabled").and_then(Value::as_bool),
        Some(true)
    );
    assert_eq!(
        get(&v, "config.jetstream.fileStore.pvc.enabled").and_then(Value::as_bool),
        Some(true)
    );
    assert_eq!(
        get(&v, "config.jetstream.memoryStore.enabled").and_then(Value::as_bool),
        Some(false)
    );
    assert_eq!(
        s(&v, "config.jetstream.merge.sync_interval"),
        Some("always")
    );
    assert_eq!(
        get(&v, "config.nats.tls.enabled").and_then(Value::as_bool),
        Some(true)
    );
    assert_eq!(
        get(&v, "config.cluster.tls.enabled").and_then(Value::as_bool),
        Some(true)
    );
    assert_eq!(
        get(&v, "config.cluster.tls.merge.verify").and_then(Value::as_bool),
        Some(true),
        "mutual TLS on routes"
    );
    assert_eq!(
        get(&v, "tlsCA.enabled").and_then(Value::as_bool),
        Some(true)
    );
    // Every Secret the values name is in the secrets template.
    let secrets: BTreeMap<String, Value> = yaml_docs(&deploy().join("k8s/secrets.example.yaml"))
        .into_iter()
        .map(|d| (name_of(&d).to_owned(), d))
        .collect();
    for path in [
        "config.nats.tls.secretName",
        "config.cluster.tls.secretName",
        "tlsCA.secretName",
    ] {
        let name = s(&v, path).unwrap_or_else(|| panic!("{path} missing"));
        assert!(
            secrets.contains_key(name),
            "{path} = {name}, not in secrets.example.yaml"
        );
    }
    assert_eq!(
        s(&secrets["shirase-nats-server-tls"], "type"),
        Some("kubernetes.io/tls"),
        "the chart reads tls.crt/tls.key"
    );
    // The generated authorization: a volume from Secret shirase-nats-auth, mounted where the
    // chart's `$include` key points (relative to /etc/nats-config).
    let volume = seq(&v, "podTemplate.patch")
        .into_iter()
        .find_map(|p| get(p, "value"))
        .expect("auth volume");
    assert_eq!(s(volume, "secret.secretName"), Some("shirase-nats-auth"));
    assert!(secrets.contains_key("shirase-nats-auth"));
    let mount = seq(&v, "container.patch")
        .into_iter()
        .find_map(|p| get(p, "value"))
        .expect("auth mount");
    assert_eq!(
        s(mount, "name"),
        s(volume, "name"),
        "mount and volume pair up"
    );
    let include = s(&v, "config.merge.00$include").expect("config.merge.00$include");
    let mount_path = s(mount, "mountPath").unwrap_or_default();
    assert_eq!(
        format!("/etc/nats-config/{include}"),
        format!("{mount_path}/auth.conf")
    );
}

// ---------------------------------------------------------------------------------------------
// systemd units (`systemd-analyze verify` is run by hand, see deploy/README.md)

/// `Key=value` lines of a unit file (all occurrences).
fn unit_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix(key)?
                .strip_prefix('=')
                .map(str::to_owned)
        })
        .collect()
}

#[test]
fn systemd_units_are_hardened_restart_on_failure_and_point_at_the_right_files() {
    let dir = deploy().join("systemd");
    for unit in [
        "nats-server.service",
        "shirase-relay.service",
        "shirase-agent@.service",
    ] {
        let text = read(&dir.join(unit));
        for (key, want) in [
            ("Restart", "on-failure"),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("PrivateTmp", "yes"),
            ("ProtectHome", "yes"),
            ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
            ("CapabilityBoundingSet", ""),
            ("WantedBy", "multi-user.target"),
        ] {
            assert_eq!(unit_values(&text, key), [want], "{unit}: {key}");
        }
        let user =
            unit_values(&text, "DynamicUser") == ["yes"] || !unit_values(&text, "User").is_empty();
        assert!(user, "{unit}: runs as a dedicated or dynamic user");
    }
    // nats-server may write only its store, which is cluster.conf's store_dir.
    let nats = read(&dir.join("nats-server.service"));
    assert_eq!(unit_values(&nats, "ReadWritePaths"), ["/var/lib/nats"]);
    assert!(
        read(&deploy().join("nats/cluster.conf"))
            .contains("store_dir: \"/var/lib/nats/jetstream\"")
    );
    assert!(unit_values(&nats, "ExecStart")[0].contains("--config ${NATS_NODE_CONF}"));
    let relay = read(&dir.join("shirase-relay.service"));
    assert_eq!(
        unit_values(&relay, "EnvironmentFile"),
        ["-/etc/shirase/relay.env"]
    );
    assert_eq!(
        unit_values(&relay, "ExecStartPre"),
        ["/usr/local/bin/shirase-relay provision --config /etc/shirase/relay.toml"]
    );
    assert_eq!(
        unit_values(&relay, "ExecStart"),
        ["/usr/local/bin/shirase-relay serve --config /etc/shirase/relay.toml"]
    );
    let agent = read(&dir.join("shirase-agent@.service"));
    assert_eq!(
        unit_values(&agent, "EnvironmentFile"),
        ["-/etc/shirase/agent-%i.env"]
    );
    assert_eq!(
        unit_values(&agent, "ExecStart"),
        ["/usr/local/bin/shirase-agent --config /etc/shirase/agent-%i.toml --json-logs"]
    );
    assert_eq!(unit_values(&agent, "StateDirectory"), ["shirase-agent/%i"]);
}

// ---------------------------------------------------------------------------------------------
// NATS configurations

/// Test PKI: a CA and one server certificate for the cluster names and 127.0.0.1, with
/// serverAuth and clientAuth (routes are mutual TLS).
fn write_test_certs(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    std::fs::create_dir_all(dir).expect("tls dir");
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Shirase test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca, ca_key);
    let names: Vec<String> = ["nats-1", "nats-2", "nats-3", "localhost", "127.0.0.1"]
        .map(str::to_owned)
        .into();
    let mut server = CertificateParams::new(names).expect("server params");
    server.distinguished_name.push(DnType::CommonName, "nats");
    server.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let server_key = KeyPair::generate().expect("server key");
    let server_cert = server.signed_by(&server_key, &issuer).expect("server cert");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("ca.pem");
    std::fs::write(dir.join("server.pem"), server_cert.pem()).expect("server.pem");
    std::fs::write(dir.join("server-key.pem"), server_key.serialize_pem()).expect("server-key.pem");
}

/// Replace every `from` by `to`, failing when `from` is absent: a rewrite that silently matched
/// nothing would test the wrong file.
fn replace_all(text: &str, from: &str, to: &str, what: &str) -> String {
    assert!(
        text.contains(from),
        "{what}: expected {from:?} in the checked-in configuration"
    );
    text.replace(from, to)
}

/// Copy `deploy/nats/{nN.conf,cluster.conf,auth.conf}` into `dir` with the absolute paths
/// moved: certificates to `tls`, the store under `dir/data`.
fn copy_nats_configs(dir: &Path, tls: &Path, node: usize) -> PathBuf {
    let src = deploy().join("nats");
    let cluster = read(&src.join("cluster.conf"));
    let cluster = replace_all(
        &cluster,
        "/etc/nats/tls/",
        &format!("{}/", tls.display()),
        "cluster.conf TLS paths",
    );
    let cluster = replace_all(
        &cluster,
        "\"/var/lib/nats/",
        &format!("\"{}/", dir.join("data").display()),
        "store_dir",
    );
    std::fs::write(dir.join("cluster.conf"), cluster).expect("cluster.conf");
    std::fs::copy(src.join("auth.conf"), dir.join("auth.conf")).expect("auth.conf");
    let conf = dir.join(format!("n{node}.conf"));
    std::fs::copy(src.join(format!("n{node}.conf")), &conf).expect("nN.conf");
    conf
}

fn nats_check(conf: &Path) -> (bool, String) {
    let bin = nats_server_bin()
        .expect("nats-server (NATS_SERVER_BIN or deploy/dev/install-nats-server.sh)");
    let out = Command::new(bin)
        .arg("-t")
        .arg("-c")
        .arg(conf)
        .output()
        .expect("running nats-server -t");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn cluster_configs_pass_the_nats_server_config_check() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tls = tmp.path().join("tls");
    write_test_certs(&tls);
    for node in 1..=3 {
        let dir = tmp.path().join(format!("n{node}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let conf = copy_nats_configs(&dir, &tls, node);
        let (ok, text) = nats_check(&conf);
        assert!(
            ok && text.contains("is valid"),
            "n{node}.conf rejected by nats-server -t:\n{text}"
        );
    }
    // The check is real: the same file without the certificates is rejected, naming the file.
    let dir = tmp.path().join("no-certs");
    std::fs::create_dir_all(&dir).expect("dir");
    let conf = copy_nats_configs(&dir, &dir.join("tls"), 1);
    let (ok, text) = nats_check(&conf);
    assert!(
        !ok,
        "nats-server -t accepted n1.conf without its certificates:\n{text}"
    );
    assert!(
        text.contains("server.pem"),
        "the error names the missing certificate: {text}"
    );
}

#[test]
fn cluster_configs_keep_the_durability_and_security_settings() {
    let cluster = read(&deploy().join("nats/cluster.conf"));
    for must in [
        "sync_interval: always",
        "include \"auth.conf\"",
        "verify: true",
        "nats-route://nats-1:6222",
        "nats-route://nats-2:6222",
        "nats-route://nats-3:6222",
        // Monitoring (no authentication) on loopback only.
        "http: 127.0.0.1:8222",
    ] {
        assert!(cluster.contains(must), "cluster.conf lost {must:?}");
    }
    // Client and route connections both have a tls block.
    assert_eq!(
        cluster.matches("tls {").count(),
        2,
        "TLS for clients and for routes"
    );
    for node in 1..=3 {
        let n = read(&deploy().join(format!("nats/n{node}.conf")));
        assert!(
            n.contains(&format!("server_name: nats-{node}")),
            "n{node}.conf names its server"
        );
        assert!(
            n.contains("include \"cluster.conf\""),
            "n{node}.conf includes cluster.conf"
        );
    }
}

#[test]
fn dev_config_passes_the_check_and_stays_on_loopback() {
    let text = read(&deploy().join("nats/dev.conf"));
    assert!(text.contains("listen: 127.0.0.1:4222") && text.contains("http: 127.0.0.1:8222"));
    assert!(text.contains("sync_interval: always"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let conf = tmp.path().join("dev.conf");
    std::fs::write(&conf, text).expect("dev.conf");
    let (ok, out) = nats_check(&conf);
    assert!(ok, "dev.conf rejected:\n{out}");
}

/// A plain HTTP/1.0 GET on 127.0.0.1 (the monitoring port): status and body.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// Kills the spawned servers when the test ends, however it ends.
struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
#[ignore = "slow: starts a 3-node TLS JetStream cluster from the checked-in configs (a few seconds)"]
fn checked_in_cluster_configs_form_a_jetstream_cluster_on_loopback() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let client: Vec<u16> = (0..3).map(|_| free_port().expect("port")).collect();
    let monitor: Vec<u16> = (0..3).map(|_| free_port().expect("port")).collect();
    let route: Vec<u16> = (0..3).map(|_| free_port().expect("port")).collect();
    let mut nodes = Nodes(Vec::new());
    let bin = nats_server_bin().expect("nats-server");
    // One CA for the cluster: a node with a certificate from another CA cannot join.
    let tls = tmp.path().join("tls");
    write_test_certs(&tls);
    for node in 1..=3 {
        let dir = tmp.path().join(format!("n{node}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let conf = copy_nats_configs(&dir, &tls, node);
        // Same file, loopback ports instead of the fixed 4222/6222/8222 and the nats-N hostnames.
        let path = dir.join("cluster.conf");
        let mut text = read(&path);
        let i = node - 1;
        text = replace_all(
            &text,
            "listen: 0.0.0.0:4222",
            &format!("listen: 127.0.0.1:{}", client[i]),
            "client listen",
        );
        text = replace_all(
            &text,
            "http: 127.0.0.1:8222",
            &format!("http: 127.0.0.1:{}", monitor[i]),
            "monitoring",
        );
        text = replace_all(
            &text,
            "listen: 0.0.0.0:6222",
            &format!("listen: 127.0.0.1:{}", route[i]),
            "route listen",
        );
        for (k, port) in route.iter().enumerate() {
            let from = format!("nats-route://nats-{}:6222", k + 1);
            text = replace_all(
                &text,
                &from,
                &format!("nats-route://127.0.0.1:{port}"),
                "routes",
            );
        }
        std::fs::write(&path, text).expect("cluster.conf");
        let log = std::fs::File::create(dir.join("nats-server.log")).expect("log");
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawning nats-server");
        nodes.0.push(child);
    }
    let logs = || {
        (1..=3)
            .map(|n| {
                format!(
                    "--- n{n}\n{}",
                    std::fs::read_to_string(tmp.path().join(format!("n{n}/nats-server.log")))
                        .unwrap_or_default()
                )
            })
            .collect::<String>()
    };

    // All three healthy (JetStream current) and one meta leader that every node agrees on,
    // with a 3-member meta group.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let healthy = monitor
            .iter()
            .all(|p| http_get(*p, "/healthz").is_some_and(|(s, _)| s == 200));
        let leaders: Vec<Option<(String, usize)>> = monitor
            .iter()
            .map(|p| {
                let (_, body) = http_get(*p, "/jsz").filter(|(s, _)| *s == 200)?;
                let v: serde_json::Value = serde_json::from_str(&body).ok()?;
                let leader = v["meta_cluster"]["leader"].as_str()?.to_owned();
                let size = v["meta_cluster"]["cluster_size"].as_u64()? as usize;
                Some((leader, size))
            })
            .collect();
        let state = format!("healthy={healthy} leaders={leaders:?}");
        let agreed = leaders.iter().all(|l| {
            l.as_ref()
                .is_some_and(|(name, size)| !name.is_empty() && *size == 3)
        }) && leaders.windows(2).all(|w| w[0] == w[1]);
        if healthy && agreed {
            let leader = leaders[0]
                .as_ref()
                .map(|(n, _)| n.clone())
                .unwrap_or_default();
            assert!(
                ["nats-1", "nats-2", "nats-3"].contains(&leader.as_str()),
                "meta leader {leader}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no JetStream cluster within 30 s ({state})\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Routes are up between all three over TLS: each node sees the two others.
    for (i, p) in monitor.iter().enumerate() {
        let (_, body) = http_get(*p, "/routez").expect("routez");
        let v: serde_json::Value = serde_json::from_str(&body).expect("routez json");
        let remotes: BTreeSet<&str> = v["routes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["remote_name"].as_str())
            .collect();
        let others: BTreeSet<&str> = ["nats-1", "nats-2", "nats-3"]
            .into_iter()
            .filter(|n| *n != format!("nats-{}", i + 1))
            .collect();
        assert_eq!(remotes, others, "routes of nats-{}", i + 1);
        let (_, varz) = http_get(*p, "/varz").expect("varz");
        let v: serde_json::Value = serde_json::from_str(&varz).expect("varz json");
        assert_eq!(
            v["cluster"]["tls_required"].as_bool(),
            Some(true),
            "route TLS on nats-{}",
            i + 1
        );
        assert_eq!(
            v["tls_required"].as_bool(),
            Some(true),
            "client TLS on nats-{}",
            i + 1
        );
        assert_eq!(
            v["jetstream"]["config"]["sync_always"].as_bool(),
            Some(true),
            "fsync on every write on nats-{}",
            i + 1
        );
    }
}

/// Kubernetes: every absolute path a relay/agent configuration (the ConfigMap key its
/// container's `--config` names) points at is a file the container mounts: a key of the
/// Secret/ConfigMap mounted at that directory, or under an emptyDir/PVC mount.
#[test]
fn k8s_config_files_name_only_paths_mounted_in_their_containers() {
    let docs = k8s_manifests();
    let keys_of = |kind: &str, name: &str| -> Vec<String> {
        docs.iter()
            .find(|(_, d)| s(d, "kind") == Some(kind) && name_of(d) == name)
            .map(|(_, d)| {
                ["data", "stringData"]
                    .iter()
                    .filter_map(|k| get(d, k).and_then(Value::as_mapping))
                    .flat_map(|m| m.keys().filter_map(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_else(|| panic!("{kind} {name} is not defined"))
    };
    let mut checked = Vec::new();
    for (_, d) in docs
        .iter()
        .filter(|(_, d)| s(d, "kind") == Some("Deployment"))
    {
        let name = name_of(d);
        let volumes: BTreeMap<&str, &Value> = seq(d, "spec.template.spec.volumes")
            .into_iter()
            .map(|v| (s(v, "name").unwrap_or_default(), v))
            .collect();
        let pod = get(d, "spec.template.spec").expect("pod spec");
        let containers = seq(pod, "containers")
            .into_iter()
            .chain(seq(pod, "initContainers"));
        for c in containers {
            let cname = s(c, "name").unwrap_or_default();
            // Files the container sees.
            let mut mounts = Vec::new();
            let mut config_text = None;
            let args: Vec<&str> = seq(c, "args")
                .into_iter()
                .filter_map(Value::as_str)
                .collect();
            let config_file = args
                .iter()
                .position(|a| *a == "--config")
                .map(|i| Path::new(args[i + 1]));
            for m in seq(c, "volumeMounts") {
                let at = s(m, "mountPath").unwrap_or_default();
                let vol = volumes[s(m, "name").unwrap_or_default()];
                let keys = if let Some(sec) = s(vol, "secret.secretName") {
                    keys_of("Secret", sec)
                } else if let Some(cm) = s(vol, "configMap.name") {
                    let keys = keys_of("ConfigMap", cm);
                    if let Some(f) = config_file.filter(|f| f.parent() == Some(Path::new(at))) {
                        let key = f.file_name().and_then(|k| k.to_str()).unwrap_or_default();
                        config_text = docs
                            .iter()
                            .find(|(_, d)| s(d, "kind") == Some("ConfigMap") && name_of(d) == cm)
                            .and_then(|(_, d)| get(d, "data").and_then(|m| m.get(key)))
                            .and_then(Value::as_str)
                            .map(str::to_owned);
                    }
                    keys
                } else {
                    // emptyDir, PVC: anything below the mount.
                    mounts.push(at.to_owned());
                    continue;
                };
                mounts.extend(
                    keys.iter()
                        .map(|k| format!("{}/{k}", at.trim_end_matches('/'))),
                );
            }
            let Some(text) = config_text else { continue };
            let paths = toml_paths(&text);
            for p in &paths {
                assert!(
                    is_mounted(p, &mounts),
                    "{name}/{cname}: its config names {p}, which no mounted Secret/ConfigMap key or volume provides ({mounts:?})"
                );
            }
            assert!(
                toml_string(&text, "tls_ca_file").is_some_and(|ca| paths.contains(&ca)),
                "{name}/{cname}: its config sets no nats.tls_ca_file (the cluster requires TLS)"
            );
            checked.push(format!("{name}/{cname}"));
        }
    }
    checked.sort();
    assert_eq!(
        checked,
        [
            "shirase-agent-tax/agent",
            "shirase-relay/provision",
            "shirase-relay/relay"
        ],
        "every relay and agent container reads a mounted config"
    );
}
