//! The relay's HTTP ingest refuses requests without valid credentials: no header, a forged token
//! (random, or a real token with one character changed), a token rotated out of the
//! configuration (the relay's tokens do not expire by time; retiring one means removing its
//! digest, after which it must stop working at once), and a valid token of another provider
//! for an interface that is not its own. Nothing of a refused request reaches the stream, and
//! the answer never echoes the presented token.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use shirase_tests::harness::NatsServer;

use crate::relay_support::{
    TestRelay, dev_config, json, notice, provision, read_stream, token_001, token_010,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_refuses_missing_forged_retired_and_foreign_credentials() {
    let server = NatsServer::start().unwrap();
    let config = dev_config(&server.url());
    let js = provision(&config).await;
    let body = serde_json::to_vec(&json(&notice("001o05-00", 1))).unwrap();

    let good = token_001();
    let mut tampered = good.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'a' { b'b' } else { b'a' };
    let tampered = String::from_utf8(tampered).unwrap();
    let forged = "x".repeat(good.len());

    // A retired token: the configuration lists only the new one.
    let new_token = "rotated-in-token-for-provider-001-0123456789";
    let mut rotated = config.clone();
    rotated.providers[0].token_hashes = vec![shirase_relay::config::token_digest(new_token)];
    let relay = TestRelay::start(rotated).await;

    for (what, token) in [
        ("missing", None),
        ("forged", Some(forged.as_str())),
        ("tampered", Some(tampered.as_str())),
        ("retired", Some(good.as_str())),
    ] {
        let (status, _, answer) = relay
            .post_raw(token, "application/json", body.clone())
            .await;
        assert_eq!(status, 401, "{what}: {answer}");
        if let Some(t) = token {
            assert!(
                !answer.to_string().contains(t),
                "{what}: the answer echoes the token"
            );
        }
    }
    let resp = relay
        .http
        .post(format!("{}/v1/notices", relay.base))
        .header("content-type", "application/json")
        .header("authorization", format!("Basic {good}"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401, "a non-bearer scheme");
    // Provider 010's real token is not provider 001's: its interfaces only.
    let (status, _, answer) = relay
        .post_raw(Some(&token_010()), "application/json", body.clone())
        .await;
    assert_eq!(status, 403, "foreign interface: {answer}");
    assert!(
        read_stream(&js).await.is_empty(),
        "a refused request reached the stream"
    );

    // The rotated-in token works.
    let (status, _, answer) = relay
        .post_raw(Some(new_token), "application/json", body)
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(read_stream(&js).await.len(), 1);
    relay.stop().await;
}
