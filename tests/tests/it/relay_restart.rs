//! No loss and no duplicates across a nats-server restart in the middle of HTTP ingest.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use shirase_tests::harness::NatsServer;

use crate::relay_support::{
    TestRelay, dev_config, json, notice, provision, read_stream, token_001,
};

const TOTAL: usize = 10_000;
const BATCH: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: 10,000 notices with a nats-server restart and a 3 s outage (~15 s)"]
async fn ten_thousand_notices_across_a_restart_are_stored_exactly_once() {
    let server = NatsServer::start().unwrap();
    let url = server.url();
    let mut config = dev_config(&url);
    config.nats.publish_timeout = Duration::from_secs(1);
    config.nats.publish_attempts = 2;
    let _ = provision(&config).await;
    let relay = Arc::new(TestRelay::start(config).await);
    let server = Arc::new(std::sync::Mutex::new(server));

    let notices: Vec<Value> = (0..TOTAL)
        .map(|i| json(&notice(["001o05-00", "001o06-00"][i % 2], i as u64)))
        .collect();
    let batches: Vec<Vec<Value>> = notices.chunks(BATCH).map(<[Value]>::to_vec).collect();

    // Outcome of every id: status of its first attempt.
    let mut first: HashMap<String, u64> = HashMap::new();
    let mut to_resend: Vec<Value> = Vec::new();
    let restart_at = batches.len() / 3;
    let mut restarter = None;
    let token = token_001();
    // Four concurrent posters, like several provider threads.
    for (round, chunk) in batches.chunks(4).enumerate() {
        if round * 4 >= restart_at && restarter.is_none() {
            let s = server.clone();
            // A restart with a 3 s outage, longer than the relay's retry budget (2 attempts of
            // 1 s), so some batches are answered 503 and the re-send path is exercised.
            restarter = Some(tokio::task::spawn_blocking(move || {
                s.lock().unwrap().stop();
                std::thread::sleep(Duration::from_secs(3));
                s.lock().unwrap().start_again().unwrap();
            }));
        }
        let bodies: Vec<Value> = chunk.iter().map(|b| Value::Array(b.clone())).collect();
        let posts = bodies.iter().map(|b| relay.post(&token, b));
        for (b, (status, _, body)) in chunk.iter().zip(futures::future::join_all(posts).await) {
            assert!(
                [202, 207, 503].contains(&status),
                "unexpected status {status}: {body}"
            );
            for (item, r) in b.iter().zip(body["results"].as_array().unwrap()) {
                let id = item["id"].as_str().unwrap().to_owned();
                let s = r["status"].as_u64().unwrap();
                assert!(s == 202 || s == 503, "item status {s}: {r}");
                if s == 503 {
                    to_resend.push(item.clone());
                }
                first.insert(id, s);
            }
        }
    }
    restarter.unwrap().await.unwrap();
    assert_eq!(first.len(), TOTAL);
    relay.wait_ready().await;

    // Re-send every 503'd notice until it is accepted.
    let resent = to_resend.len();
    while !to_resend.is_empty() {
        let batch: Vec<Value> = to_resend.drain(..to_resend.len().min(BATCH)).collect();
        let (_, _, body) = relay.post(&token, &Value::Array(batch.clone())).await;
        for (item, r) in batch.into_iter().zip(body["results"].as_array().unwrap()) {
            if r["status"] != 202 {
                to_resend.push(item);
            }
        }
    }

    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stored = read_stream(&js).await;
    // Stored under their de-duplication key `<business id>:<notice id>`; all from provider 001.
    let ids: Vec<&str> = stored
        .iter()
        .map(|m| m.0.strip_prefix("001:").unwrap_or(&m.0))
        .collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a notice was stored twice");
    let accepted_first: HashSet<&str> = first
        .iter()
        .filter(|(_, s)| **s == 202)
        .map(|(id, _)| id.as_str())
        .collect();
    assert!(
        accepted_first.is_subset(&unique),
        "a 202'd notice is missing from the stream"
    );
    let all: HashSet<&str> = first.keys().map(String::as_str).collect();
    assert_eq!(
        unique, all,
        "every notice (202 at once or after re-sending its 503) is stored exactly once"
    );
    eprintln!(
        "restart test: {} accepted at once, {resent} answered 503 and re-sent",
        accepted_first.len()
    );
    assert!(
        resent > 0,
        "the outage produced no 503: the re-send path was not exercised"
    );
    Arc::try_unwrap(relay).ok().unwrap().stop().await;
}
