//! Dev credentials stay dev: the lists the relay refuses (`shirase_relay::dev_credentials`) are
//! exactly the committed dev tokens and the public keys of the committed dev seeds; the
//! production-shaped manifests (Kubernetes base, systemd examples) hold none of them (nor any
//! committed token); and `shirase-relay serve` with the dev configuration on a non-loopback
//! address stops at once with an error naming the fields, while on loopback it starts.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shirase_relay::dev_credentials::{DEV_NKEYS, DEV_TOKEN_SHA256};
use shirase_tests::harness::workspace_root;

use crate::fault_support::built_binary;

fn first_line(path: &std::path::Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .unwrap()
        .trim()
        .to_owned()
}

fn files(dir: &std::path::Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(ext))
        .collect();
    out.sort();
    out
}

#[test]
fn the_refused_lists_are_the_committed_dev_credentials() {
    let root = workspace_root();
    let tokens: BTreeSet<String> = files(&root.join("deploy/dev/credentials"), "token")
        .iter()
        .map(|f| hex::encode(shirase_relay::config::token_digest(&first_line(f))))
        .collect();
    let listed: BTreeSet<String> = DEV_TOKEN_SHA256.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(tokens, listed);
    let keys: BTreeSet<String> = files(&root.join("deploy/compose/dev-secrets"), "nk")
        .iter()
        .map(|f| {
            nkeys::KeyPair::from_seed(&first_line(f))
                .unwrap()
                .public_key()
        })
        .collect();
    let listed: BTreeSet<String> = DEV_NKEYS.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(keys, listed);
}

#[test]
fn production_shaped_manifests_hold_no_committed_credential() {
    let root = workspace_root();
    let mut secrets: Vec<String> = DEV_TOKEN_SHA256
        .iter()
        .chain(DEV_NKEYS)
        .map(|s| (*s).to_owned())
        .collect();
    for f in files(&root.join("deploy/dev/credentials"), "token") {
        secrets.push(first_line(&f));
    }
    for f in files(&root.join("deploy/compose/dev-secrets"), "nk") {
        secrets.push(first_line(&f));
    }
    let mut manifests = files(&root.join("deploy/k8s/base"), "yaml");
    manifests.extend(files(&root.join("deploy/systemd"), "service"));
    manifests.push(root.join("deploy/k8s/secrets.example.yaml"));
    manifests.push(root.join("relay/relay.default.toml"));
    assert!(manifests.len() >= 8, "{manifests:?}");
    for m in manifests {
        let text = std::fs::read_to_string(&m).unwrap();
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "{} holds the committed credential {s}",
                m.display()
            );
        }
    }
}

/// Run `shirase-relay serve` on the dev configuration with `listen`; its exit within `within`.
fn serve_dev(listen: &str, within: Duration) -> Option<(i32, String)> {
    let mut child = Command::new(built_binary("shirase-relay"))
        .args(["serve", "--config"])
        .arg(workspace_root().join("deploy/dev/relay.toml"))
        .env("SHIRASE_HTTP__LISTEN", listen)
        // Nothing answers here: a relay that starts keeps retrying in the background.
        .env("SHIRASE_NATS__URLS", "[\"nats://127.0.0.1:1\"]")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return Some((status.code().unwrap_or(-1), err));
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_refuses_dev_credentials_beyond_loopback_and_starts_on_loopback() {
    let (code, err) = serve_dev("0.0.0.0:0", Duration::from_secs(20)).expect("did not stop");
    assert_ne!(code, 0);
    assert!(
        err.contains("http.listen = 0.0.0.0:0 is not a loopback address"),
        "{err}"
    );
    assert!(
        err.contains("providers[0].credentials (a dev token)"),
        "{err}"
    );
    // On loopback the same configuration serves (still running after 3 s).
    assert_eq!(serve_dev("127.0.0.1:0", Duration::from_secs(3)), None);
}
