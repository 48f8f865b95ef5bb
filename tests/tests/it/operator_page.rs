//! The status page in headless Chromium (Debian's `chromium`): it loads, runs its script,
//! fetches the status with the token from the URL fragment, and shows the dev topology's
//! consumers, a consumer the test paused (with the reason) and a dead letter the test created.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::operator_support::*;
use crate::relay_support::*;

fn chromium() -> String {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {c}"))
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return c.to_owned();
        }
    }
    panic!(
        "the status page test needs headless Chromium: `apt-get install -y chromium` (deploy/dev/test.sh installs it)"
    );
}

async fn run_chromium(args: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("chromium finished within 60 s")
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
#[ignore = "slow: starts headless Chromium"]
async fn status_page_shows_consumers_a_paused_consumer_and_a_dead_letter() {
    let (_server, js, relay) = setup().await;
    let ops = Ops::operator(&relay.base);
    let (s, r) = ops.post("/v1/ops/pause", json!({ "subscriber": "delinquency", "provider": "010", "for": "3h", "reason": "tax system migration" })).await;
    assert_eq!(s, 200, "{r}");
    // A dead letter as the agent writes it.
    let dl = json!({
        "subscriber": "tax", "interface_id": "001o05-00", "reason": "provider answered 400 E0001: unknown parameter updated_until",
        "http_status": 400, "code": "E0001", "message": "unknown parameter updated_until", "attempts": 1,
        "first_failure": "2026-11-25T03:10:00+09:00", "last_failure": "2026-11-25T03:10:00+09:00",
        "notice": json(&notice("001o05-00", 1)),
    });
    js.publish(
        "shirase.dlq.tax.131016.001.001o05-00",
        serde_json::to_vec(&dl).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();

    let url = format!(
        "{}/status#token={}",
        relay.base,
        dev_token("operator-viewer.token")
    );
    let dom = run_chromium(&[
        "--virtual-time-budget=4000".into(),
        "--dump-dom".into(),
        url.clone(),
    ])
    .await;
    assert!(
        dom.contains("data-loaded=\"yes\""),
        "the page's script did not load the status: {dom}"
    );
    for name in ["tax_001", "delinquency_001", "delinquency_010"] {
        assert!(
            dom.contains(&format!("data-consumer=\"{name}\"")),
            "{name} missing: {dom}"
        );
    }
    assert!(
        dom.contains("data-consumer=\"delinquency_010\" data-state=\"paused\""),
        "{dom}"
    );
    assert!(
        dom.contains("data-consumer=\"tax_001\" data-state=\"active\""),
        "{dom}"
    );
    assert!(dom.contains("tax system migration"), "{dom}");
    assert!(
        dom.contains("unknown parameter updated_until"),
        "the dead letter's reason: {dom}"
    );
    assert!(dom.contains("1 (tax: 1)"), "the dead-letter count: {dom}");
    assert!(
        dom.contains("data-provider=\"001\"") && dom.contains("data-provider=\"010\""),
        "a timeline per provider: {dom}"
    );
    assert!(
        dom.contains("class=\"win\""),
        "the baseline window 24:00-27:00 JST is within any 24 hours: {dom}"
    );

    let shot = std::env::temp_dir().join("shirase-status.png");
    let _ = std::fs::remove_file(&shot);
    run_chromium(&[
        "--virtual-time-budget=4000".into(),
        "--window-size=1400,900".into(),
        format!("--screenshot={}", shot.display()),
        url,
    ])
    .await;
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    eprintln!("status page screenshot: {}", shot.display());
    relay.stop().await;
}
