//! Operator API against a real nats-server and the relay in-process: replay of a time range to
//! one subscriber only (and a retried replay duplicating nothing), roles, field-naming errors,
//! resync's compare-and-set rewind, pause/resume in status, and the audit trail.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::time::Duration;

use serde_json::{Value, json};

use crate::operator_support::*;
use crate::relay_support::*;

async fn post_notices(relay: &TestRelay, iface: &str, seqs: std::ops::Range<u64>) -> Vec<String> {
    let mut ids = Vec::new();
    for s in seqs {
        let n = notice(iface, s);
        ids.push(n.id.to_string());
        let (status, _, body) = relay.post(&token_001(), &json(&n)).await;
        assert_eq!(status, 202, "{body}");
    }
    ids
}

#[tokio::test]
async fn replay_of_a_time_range_reaches_that_subscriber_only_and_a_retry_duplicates_nothing() {
    let (_server, js, relay) = setup().await;
    let ops = Ops::operator(&relay.base);
    let _before = post_notices(&relay, "001o05-00", 1..4).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let from = jiff::Timestamp::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let inside = post_notices(&relay, "001o05-00", 4..7).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let to = jiff::Timestamp::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _after = post_notices(&relay, "001o05-00", 7..9).await;

    let tax_before = pending(&js, "tax_001").await;
    let delinquency_before = pending(&js, "delinquency_001").await;
    assert_eq!((tax_before, delinquency_before), (8, 8));

    let req =
        json!({ "subscriber": "tax", "from_time": from.to_string(), "to_time": to.to_string() });
    let (s, dry) = ops.post("/v1/ops/replay", json!({ "dry_run": true, "subscriber": "tax", "from_time": from.to_string(), "to_time": to.to_string() })).await;
    assert_eq!(s, 200, "{dry}");
    assert_eq!(dry["matched"], 3, "{dry}");
    assert_eq!(dry["published"], 0);
    assert_eq!(
        pending(&js, "tax_001").await,
        8,
        "a dry run publishes nothing"
    );

    let (s, r) = ops.post("/v1/ops/replay", req.clone()).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (
            r["matched"].as_u64(),
            r["published"].as_u64(),
            r["duplicates"].as_u64()
        ),
        (Some(3), Some(3), Some(0)),
        "{r}"
    );
    let rid = r["replay_id"].as_str().unwrap().to_owned();
    assert_eq!(
        rid,
        dry["replay_id"].as_str().unwrap(),
        "the derived id ignores dry_run"
    );

    // Exactly the notices of the range, on tax's replay subjects, with replay message ids.
    let copies = read_all(&js, "SHIRASE_NOTICES", Some("shirase.replay.>")).await;
    let mut got: Vec<String> = copies.iter().map(|(_, id, _)| id.clone()).collect();
    got.sort();
    let mut want: Vec<String> = inside
        .iter()
        .map(|n| format!("replay:{rid}:001:{n}"))
        .collect();
    want.sort();
    assert_eq!(got, want);
    assert!(
        copies
            .iter()
            .all(|(subj, _, _)| subj == "shirase.replay.tax.131016.001.001o05-00"),
        "{copies:?}"
    );
    assert_eq!(pending(&js, "tax_001").await, 11, "tax gets the 3 copies");
    assert_eq!(
        pending(&js, "delinquency_001").await,
        8,
        "the other subscriber sees nothing"
    );

    // The same request again (a client retry): JetStream drops every copy.
    let (s, again) = ops.post("/v1/ops/replay", req).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(
        (again["published"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(3)),
        "{again}"
    );
    assert_eq!(pending(&js, "tax_001").await, 11);

    // A sequence range, narrowed to an interface, with an explicit id.
    let (s, r) = ops
        .post("/v1/ops/replay", json!({ "subscriber": "delinquency", "interface": "001o05-00", "from_seq": 2, "to_seq": 3, "replay_id": "monday-fix" }))
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (
            r["matched"].as_u64(),
            r["first_seq"].as_u64(),
            r["last_seq"].as_u64()
        ),
        (Some(2), Some(2), Some(3)),
        "{r}"
    );
    assert_eq!(pending(&js, "delinquency_001").await, 10);
    assert_eq!(pending(&js, "tax_001").await, 11);

    let audit = audit_records(&js).await;
    let replays: Vec<&Value> = audit.iter().filter(|a| a["action"] == "replay").collect();
    assert_eq!(replays.len(), 4, "{audit:?}");
    assert!(
        replays
            .iter()
            .all(|a| a["actor"] == "dev-operator" && a["result"] == "ok"),
        "{replays:?}"
    );
    assert_eq!(replays[1]["detail"]["published"], 3);
    assert_eq!(replays[1]["parameters"]["subscriber"], "tax");
    relay.stop().await;
}

#[tokio::test]
async fn viewer_cannot_change_anything_and_errors_name_the_field() {
    let (_server, js, relay) = setup().await;
    let viewer = Ops::viewer(&relay.base);
    let ops = Ops::operator(&relay.base);

    let (s, status) = viewer.get("/v1/ops/status").await;
    assert_eq!(s, 200, "{status}");
    let names: Vec<&str> = status["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tax_001", "delinquency_001", "delinquency_010"]);

    let (s, e) = viewer
        .post(
            "/v1/ops/replay",
            json!({ "subscriber": "tax", "from_seq": 1 }),
        )
        .await;
    assert_eq!(s, 403, "{e}");
    assert_eq!(e["error"]["code"], "forbidden");
    let (s, _) = viewer.post("/v1/ops/resync", json!({ "subscriber": "tax", "interface": "001o05-00", "to": "2026-01-01T00:00:00+09:00" })).await;
    assert_eq!(s, 403);
    let (s, _) = viewer
        .post("/v1/ops/dlq/purge", json!({ "yes": true }))
        .await;
    assert_eq!(s, 403);

    // A provider token is not an operator token.
    let (s, _) = Ops::with(&relay.base, token_001())
        .get("/v1/ops/status")
        .await;
    assert_eq!(s, 401);
    let (s, _) = Ops::with(&relay.base, "x".repeat(20))
        .get("/v1/ops/status")
        .await;
    assert_eq!(s, 401);

    for (body, path) in [
        (json!({ "from_seq": 1 }), ""),
        (
            json!({ "subscriber": "nobody", "from_seq": 1 }),
            "/subscriber",
        ),
        (json!({ "subscriber": "tax" }), "/from_time"),
        (
            json!({ "subscriber": "tax", "from_time": "yesterday" }),
            "/from_time",
        ),
        (
            json!({ "subscriber": "tax", "from_seq": 1, "interface": "010o01-00" }),
            "/interface",
        ),
        (
            json!({ "subscriber": "tax", "from_seq": 1, "replay_id": "no spaces" }),
            "/replay_id",
        ),
        (
            json!({ "subscriber": "tax", "from_seq": 1, "form_time": "x" }),
            "",
        ),
    ] {
        let (s, e) = ops.post("/v1/ops/replay", body.clone()).await;
        assert_eq!(s, 422, "{body} -> {e}");
        assert_eq!(e["error"]["violations"][0]["path"], path, "{body} -> {e}");
    }
    let (s, e) = ops
        .post("/v1/ops/dlq/purge", json!({ "subscriber": "tax" }))
        .await;
    assert_eq!(s, 422);
    assert_eq!(e["error"]["violations"][0]["path"], "/yes");

    let audit = audit_records(&js).await;
    let denied: Vec<&Value> = audit
        .iter()
        .filter(|a| a["result"] == "denied" && a["action"] != "login")
        .collect();
    assert_eq!(denied.len(), 3, "{audit:?}");
    // The two refused tokens are audited as logins (security_operator_login has the rules).
    let logins = audit.iter().filter(|a| a["action"] == "login").count();
    assert_eq!(logins, 2, "{audit:?}");
    assert!(denied.iter().all(|a| a["actor"] == "dev-viewer"));
    assert_eq!(denied[0]["action"], "replay");
    assert!(audit.iter().any(|a| a["action"] == "dlq-purge"
        && a["result"] == "error"
        && a["actor"] == "dev-operator"));
    relay.stop().await;
}

#[tokio::test]
async fn resync_rewinds_with_compare_and_set_and_never_forward() {
    let (_server, js, relay) = setup().await;
    let ops = Ops::operator(&relay.base);
    let kv = js.get_key_value("shirase_checkpoints").await.unwrap();
    let key = "tax.131016.001o05-00";
    kv.put(
        key,
        br#"{"updated_at":"2026-11-20T10:00:00+09:00","stored_at":"2026-11-20T10:00:01+09:00"}"#
            .to_vec()
            .into(),
    )
    .await
    .unwrap();

    let (s, r) = ops.post("/v1/ops/resync", json!({ "subscriber": "tax", "interface": "001o05-00", "to": "2026-11-19T00:00:00+09:00" })).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["from"], "2026-11-20T10:00:00+09:00");
    assert_eq!(r["to"], "2026-11-19T00:00:00+09:00");
    let v: Value = serde_json::from_slice(&kv.get(key).await.unwrap().unwrap()).unwrap();
    assert_eq!(v["updated_at"], "2026-11-19T00:00:00+09:00");
    // The key's resyncs counted: the first one (a record without the count reads as 0).
    assert_eq!(v["resyncs"], 1, "{v}");
    let (s, r) = ops.post("/v1/ops/resync", json!({ "subscriber": "tax", "interface": "001o05-00", "to": "2026-11-18T12:00:00+09:00" })).await;
    assert_eq!(s, 200, "{r}");
    let v: Value = serde_json::from_slice(&kv.get(key).await.unwrap().unwrap()).unwrap();
    assert_eq!(
        (&v["updated_at"], &v["resyncs"]),
        (&json!("2026-11-18T12:00:00+09:00"), &json!(2))
    );

    let (s, e) = ops.post("/v1/ops/resync", json!({ "subscriber": "tax", "interface": "001o05-00", "to": "2026-11-21T00:00:00+09:00" })).await;
    assert_eq!(s, 422, "{e}");
    assert_eq!(e["error"]["violations"][0]["path"], "/to");
    let (s, e) = ops.post("/v1/ops/resync", json!({ "subscriber": "tax", "interface": "010o01-00", "to": "2026-11-18T00:00:00+09:00" })).await;
    assert_eq!(s, 422, "{e}");
    assert_eq!(e["error"]["violations"][0]["path"], "/interface");

    // No checkpoint yet: the rewind creates one.
    let (s, r) = ops.post("/v1/ops/resync", json!({ "subscriber": "delinquency", "interface": "010o01-00", "to": "2026-11-18T00:00:00+09:00" })).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["from"], Value::Null);

    let audit = audit_records(&js).await;
    let ok: Vec<&Value> = audit
        .iter()
        .filter(|a| a["action"] == "resync" && a["result"] == "ok")
        .collect();
    assert_eq!(ok.len(), 3);
    assert_eq!(
        ok[0]["detail"]["from"], "2026-11-20T10:00:00+09:00",
        "who, when, from, to: {:?}",
        ok[0]
    );
    assert_eq!(ok[0]["actor"], "dev-operator");
    assert!(
        ok[0]["time"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );
    relay.stop().await;
}

#[tokio::test]
async fn pause_and_resume_show_in_status_with_the_reason() {
    let (_server, js, relay) = setup().await;
    let ops = Ops::operator(&relay.base);
    let (s, r) = ops.post("/v1/ops/pause", json!({ "subscriber": "delinquency", "provider": "010", "for": "2h", "reason": "provider 010 migrating" })).await;
    assert_eq!(s, 200, "{r}");
    let (_, st) = Ops::viewer(&relay.base).get("/v1/ops/status").await;
    let c = st["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "delinquency_010")
        .unwrap()
        .clone();
    assert_eq!(c["paused"], true, "{c}");
    assert_eq!(c["pause_reason"], "provider 010 migrating");
    assert_eq!(c["paused_by"], "dev-operator");
    let until: jiff::Timestamp = c["paused_until"].as_str().unwrap().parse().unwrap();
    let left = until.duration_since(jiff::Timestamp::now()).as_secs();
    assert!((7000..=7200).contains(&left), "{left}");
    let other = st["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "tax_001")
        .unwrap();
    assert_eq!(other["paused"], false);

    // The gauges follow on a scrape.
    let text = relay.metrics_text().await;
    assert!(
        text.contains(
            "shirase_relay_consumer_paused{subscriber=\"delinquency\",provider=\"010\"} 1"
        ),
        "{text}"
    );

    let (s, e) = ops
        .post(
            "/v1/ops/pause",
            json!({ "subscriber": "delinquency", "provider": "010", "for": "2h" }),
        )
        .await;
    assert_eq!(s, 422);
    assert_eq!(e["error"]["violations"][0]["path"], "/reason");

    let (s, r) = ops
        .post(
            "/v1/ops/resume",
            json!({ "subscriber": "delinquency", "provider": "010" }),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let (_, st) = ops.get("/v1/ops/status").await;
    let c = st["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "delinquency_010")
        .unwrap();
    assert_eq!(c["paused"], false, "{c}");
    assert_eq!(c["pause_reason"], Value::Null);
    let actions: Vec<String> = audit_records(&js)
        .await
        .iter()
        .map(|a| format!("{}:{}", a["action"], a["result"]))
        .collect();
    assert_eq!(
        actions,
        [
            "\"pause\":\"ok\"",
            "\"pause\":\"error\"",
            "\"resume\":\"ok\""
        ]
    );
    relay.stop().await;
}

/// Run the `shirase-relay` binary with `args`; (exit success, stdout, stderr).
async fn cli(args: &[&str]) -> (bool, String, String) {
    let bin = crate::fault_support::built_binary("shirase-relay");
    let out = tokio::process::Command::new(bin)
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_prints_tables_and_json_and_names_what_to_fix() {
    let (_server, js, relay) = setup().await;
    let creds = shirase_tests::harness::workspace_root().join("deploy/dev/credentials");
    let op = creds.join("operator.token").display().to_string();
    let viewer = creds.join("operator-viewer.token").display().to_string();
    post_notices(&relay, "001o05-00", 1..3).await;

    let (ok, out, err) = cli(&["status", "--url", &relay.base, "--token-file", &viewer]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("CONSUMER") && out.contains("tax_001") && out.contains("delinquency_010"),
        "{out}"
    );
    let (ok, out, err) = cli(&[
        "status",
        "--json",
        "--url",
        &relay.base,
        "--token-file",
        &viewer,
    ])
    .await;
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let tax = v["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "tax_001")
        .unwrap();
    assert_eq!(tax["pending"], 2, "{tax}");

    let (ok, out, err) = cli(&[
        "replay",
        "--url",
        &relay.base,
        "--token-file",
        &op,
        "--subscriber",
        "tax",
        "--from-seq",
        "1",
        "--json",
    ])
    .await;
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["matched"].as_u64(), v["published"].as_u64()),
        (Some(2), Some(2)),
        "{v}"
    );
    assert_eq!(pending(&js, "tax_001").await, 4);

    let (ok, _, err) = cli(&[
        "replay",
        "--url",
        &relay.base,
        "--token-file",
        &viewer,
        "--subscriber",
        "tax",
        "--from-seq",
        "1",
    ])
    .await;
    assert!(!ok);
    assert!(err.contains("403") && err.contains("viewer"), "{err}");
    let (ok, _, err) = cli(&[
        "replay",
        "--url",
        &relay.base,
        "--token-file",
        &op,
        "--subscriber",
        "tax",
        "--from-time",
        "last week",
    ])
    .await;
    assert!(!ok);
    assert!(err.contains("from_time"), "{err}");
    let (ok, _, err) = cli(&[
        "dlq",
        "purge",
        "--url",
        &relay.base,
        "--token-file",
        &op,
        "--subscriber",
        "tax",
    ])
    .await;
    assert!(!ok);
    assert!(err.contains("--yes"), "{err}");
    let (ok, _, err) = cli(&[
        "status",
        "--url",
        &relay.base,
        "--token-file",
        "/nonexistent/token",
    ])
    .await;
    assert!(!ok);
    assert!(err.contains("--token-file /nonexistent/token"), "{err}");
    let (ok, out, err) = cli(&["dlq", "list", "--url", &relay.base, "--token-file", &viewer]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("SEQ"), "{out}");
    relay.stop().await;
}

#[tokio::test]
async fn a_consumer_paused_by_the_maintenance_scheduler_says_so_in_status() {
    let server = shirase_tests::harness::NatsServer::start().unwrap();
    let mut config = dev_config(&server.url());
    // Provider 010 is in maintenance all day, every day (so the test does not depend on the hour).
    let all_day = vec!["00:00-24:00".to_owned()];
    let cal = shirase_proto::maintenance::Config {
        weekday: all_day.clone(),
        holiday_open: all_day.clone(),
        holiday_closed: all_day,
        year_end_closure: false,
        ..Default::default()
    };
    config.providers[1].maintenance = shirase_proto::maintenance::Calendar::new(&cal).unwrap();
    let js = provision(&config).await;
    let relay = TestRelay::start(config).await;
    // Paused the way the scheduler pauses: no operator metadata.
    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let client = async_nats::connect(server.url()).await.unwrap();
    let body = serde_json::to_vec(&json!({ "pause_until": until.to_string() })).unwrap();
    let answer = client
        .request(
            "$JS.API.CONSUMER.PAUSE.SHIRASE_NOTICES.delinquency_010",
            body.into(),
        )
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(&answer.payload).unwrap();
    assert_eq!(answer["paused"], true, "{answer}");
    drop(js);
    let (s, st) = Ops::viewer(&relay.base).get("/v1/ops/status").await;
    assert_eq!(s, 200);
    let c = st["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "delinquency_010")
        .unwrap();
    assert_eq!(c["paused"], true, "{c}");
    assert_eq!(c["pause_reason"], "maintenance window (scheduler)");
    assert_eq!(c["paused_by"], Value::Null);
    let p = st["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["business_id"] == "010")
        .unwrap();
    assert_eq!(p["in_maintenance"], true, "{p}");
    let p1 = st["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["business_id"] == "001")
        .unwrap();
    assert!(
        !p1["windows"].as_array().unwrap().is_empty(),
        "the baseline window is within any 24 hours: {p1}"
    );
    relay.stop().await;
}
