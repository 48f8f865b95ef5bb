//! Failed operator logins are audited: a bad, missing or malformed token on the operator API is
//! written to SHIRASE_AUDIT as action `login` (actor `(unknown)`, result `denied`, the action
//! tried, never the token), at most `ops.failed_login_audit_per_minute` a minute so a flood
//! cannot fill the stream; every failure is counted in the metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use shirase_tests::harness::NatsServer;

use crate::operator_support::{Ops, audit_records};
use crate::relay_support::{TestRelay, dev_config, provision};

fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_operator_logins_are_audited_up_to_the_per_minute_budget() {
    let server = NatsServer::start().unwrap();
    let mut config = dev_config(&server.url());
    config.ops.failed_login_audit_per_minute = 5;
    let js = provision(&config).await;
    let relay = TestRelay::start(config).await;

    let bad = "not-an-operator-token-0123456789";
    let (s, _) = Ops::with(&relay.base, bad.to_owned())
        .post(
            "/v1/ops/replay",
            serde_json::json!({"subscriber": "tax", "from_seq": 1}),
        )
        .await;
    assert_eq!(s, 401);
    // No token at all.
    let r = relay
        .http
        .get(format!("{}/v1/ops/dlq", relay.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // A flood: 28 more.
    for _ in 0..28 {
        let (s, _) = Ops::with(&relay.base, bad.to_owned())
            .get("/v1/ops/status")
            .await;
        assert_eq!(s, 401);
    }
    // A good login is not a failure.
    let (s, _) = Ops::viewer(&relay.base).get("/v1/ops/status").await;
    assert_eq!(s, 200);

    let logins: Vec<_> = audit_records(&js)
        .await
        .into_iter()
        .filter(|r| r["action"] == "login")
        .collect();
    assert_eq!(logins.len(), 5, "{logins:?}");
    assert_eq!(logins[0]["actor"], "(unknown)");
    assert_eq!(logins[0]["result"], "denied");
    assert_eq!(logins[0]["parameters"]["action"], "replay");
    assert_eq!(logins[1]["parameters"]["action"], "dlq-list");
    assert_eq!(logins[2]["parameters"]["action"], "status");
    for r in &logins {
        assert!(
            !r.to_string().contains(bad),
            "the token is in the audit: {r}"
        );
    }
    let text = relay.metrics_text().await;
    assert_eq!(
        sample(&text, "shirase_relay_operator_login_failures_total"),
        Some(30.0)
    );
    assert_eq!(
        sample(
            &text,
            "shirase_relay_operator_login_failures_unaudited_total"
        ),
        Some(25.0)
    );
    relay.stop().await;
}
