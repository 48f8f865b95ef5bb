//! Ingest under concurrent large batches against a growing backlog: every POST gets its answer
//! within the documented bound (202 when stored, or 503 with Retry-After), and every 202'd
//! notice is stored exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;

use crate::relay_support::{TestRelay, dev_config, json, notice, provision, token_001};

/// Concurrent POSTs and notices per POST.
const WORKERS: usize = 10;
const BATCH: usize = 1000;
/// Backlog to reach (no agent consumes).
const TARGET: usize = 300_000;

#[derive(Default)]
struct Tally {
    /// Stream sequences of accepted notices.
    seqs: Vec<u64>,
    /// Items answered 503 (each with Retry-After).
    unavailable: usize,
    /// Longest answer time of any POST.
    longest: Duration,
    posts: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: 300,000 notices in concurrent 1,000-notice batches (~30 s)"]
async fn concurrent_large_batches_to_a_300k_backlog_all_answer_within_the_bound() {
    let server = shirase_tests::harness::NatsServer::start().unwrap();
    let mut config = dev_config(&server.url());
    config.nats.atomic_batches = false;
    let bound = config.nats.publish_timeout * config.nats.publish_attempts;
    let js = provision(&config).await;
    let relay = Arc::new(TestRelay::start(config).await);
    let token = token_001();
    let tally = Arc::new(Mutex::new(Tally::default()));

    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let relay = relay.clone();
        let token = token.clone();
        let tally = tally.clone();
        workers.push(tokio::spawn(async move {
            let mut b = 0u64;
            loop {
                if tally.lock().await.seqs.len() >= TARGET {
                    break;
                }
                let first = (w as u64 * 1_000_000) + b * BATCH as u64;
                let body = Value::Array(
                    (0..BATCH as u64)
                        .map(|i| json(&notice("001o05-00", first + i)))
                        .collect(),
                );
                b += 1;
                let started = Instant::now();
                let (status, headers, answer) = relay.post(&token, &body).await;
                let took = started.elapsed();
                let mut t = tally.lock().await;
                t.posts += 1;
                t.longest = t.longest.max(took);
                assert!(
                    matches!(status, 202 | 207 | 503),
                    "POST answered {status}: {answer}"
                );
                let results = answer["results"].as_array().unwrap();
                assert_eq!(results.len(), BATCH, "one result per notice: {answer}");
                for r in results {
                    match r["status"].as_u64().unwrap() {
                        202 => {
                            assert_eq!(r["duplicate"], false, "{r}");
                            t.seqs.push(r["stream_seq"].as_u64().unwrap());
                        }
                        503 => {
                            assert!(
                                headers.contains_key("retry-after"),
                                "503 without Retry-After"
                            );
                            t.unavailable += 1;
                        }
                        other => panic!("item answered {other}: {r}"),
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }

    let mut t = tally.lock().await;
    eprintln!(
        "relay_load: {} POSTs, {} accepted, {} answered 503, longest answer {:?} (bound {:?})",
        t.posts,
        t.seqs.len(),
        t.unavailable,
        t.longest,
        bound
    );
    // Parsing and answering a 1,000-notice body on a loaded 2-core machine: 2 s of margin.
    assert!(
        t.longest <= bound + Duration::from_secs(2),
        "a POST took {:?}, over the bound {bound:?} (+2 s)",
        t.longest
    );
    let accepted = t.seqs.len();
    assert!(accepted >= TARGET, "only {accepted} notices stored");
    t.seqs.sort_unstable();
    t.seqs.dedup();
    assert_eq!(
        t.seqs.len(),
        accepted,
        "two 202s carry the same stream sequence"
    );
    let mut stream = js.get_stream("SHIRASE_NOTICES").await.unwrap();
    let stored = stream.info().await.unwrap().state.messages as usize;
    assert_eq!(stored, accepted, "stream holds {stored}, 202'd {accepted}");
    drop(t);
    Arc::into_inner(relay).unwrap().stop().await;
}

/// The relay binary with no SHIRASE_LOG / RUST_LOG: its own INFO lines, dependencies at WARN,
/// and nothing per notice (async-nats' DEBUG lines were three per notice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_with_default_log_settings_writes_no_line_per_notice() {
    use crate::fault_support::{Proc, TOKEN, built_binary, relay_toml, wait_ready};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = shirase_tests::harness::NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = shirase_tests::harness::free_port().unwrap();
    let conf = dir.path().join("relay.toml");
    std::fs::write(&conf, relay_toml(&[server.url()], port, 1)).unwrap();
    let conf = conf.display().to_string();
    let bin = built_binary("shirase-relay");
    let out = std::process::Command::new(&bin)
        .args(["provision", "--config", &conf])
        .env_remove("SHIRASE_LOG")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = dir.path().join("relay.log");
    let mut relay = Proc::spawn(&bin, &["serve", "--config", &conf], &[], log.clone());
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base, 30).await;

    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for b in 0..4u64 {
        let batch: Vec<_> = (0..100).map(|i| notice("001o05-00", b * 100 + i)).collect();
        ids.extend(batch.iter().map(|n| n.id.to_string()));
        let body = Value::Array(batch.iter().map(json).collect());
        let r = http
            .post(format!("{base}/v1/notices"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202, "{}", r.text().await.unwrap());
    }
    for i in 0..100u64 {
        let n = notice("001o05-00", 1000 + i);
        ids.push(n.id.to_string());
        let r = http
            .post(format!("{base}/v1/notices"))
            .bearer_auth(TOKEN)
            .json(&json(&n))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
    }
    relay.terminate();

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.iter().any(|l| l.contains("INFO")),
        "the relay's own INFO lines are missing: {text}"
    );
    for id in &ids {
        assert!(
            !text.contains(id.as_str()),
            "a log line names notice {id}:\n{}",
            lines.iter().find(|l| l.contains(id.as_str())).unwrap()
        );
    }
    assert!(
        lines.len() < 40,
        "{} log lines for 500 notices (expected only start-up and shutdown lines):\n{}",
        lines.len(),
        lines
            .iter()
            .take(20)
            .copied()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("DEBUG") || l.contains("TRACE")),
        "DEBUG/TRACE lines by default:\n{text}"
    );
}
