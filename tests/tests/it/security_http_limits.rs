//! The relay's HTTP listener bounds what a client can hold without a token, over real sockets:
//! a client dribbling its headers is disconnected within `http.header_read_timeout`; a POST
//! without a token announcing a 4 MB body is answered 401 before any of the body is sent; the
//! connection cap holds (one more connection is closed unanswered, and one is served again as
//! soon as a slot is free); a provider over its request rate gets 429 with `Retry-After` while
//! another provider is served.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use shirase_relay::Config;
use shirase_tests::harness::NatsServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::relay_support::{TestRelay, dev_config, json, notice, provision, token_001, token_010};

fn addr(relay: &TestRelay) -> String {
    relay.base.trim_start_matches("http://").to_owned()
}

/// Everything the server sends until it closes the connection (or `within` passes: panics).
async fn read_to_close(s: &mut TcpStream, within: Duration) -> String {
    let mut out = Vec::new();
    let r = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        r.is_ok(),
        "the server kept the connection open for {within:?}"
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// The status line of the first answer on `s` (read until the end of its headers).
async fn status_line(s: &mut TcpStream, within: Duration) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        while !out.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed before an answer: {:?}",
                String::from_utf8_lossy(&out)
            );
            out.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("no answer in time");
    let text = String::from_utf8_lossy(&out).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

async fn start(edit: impl FnOnce(&mut Config)) -> (NatsServer, TestRelay) {
    let server = NatsServer::start().unwrap();
    let mut config = dev_config(&server.url());
    edit(&mut config);
    provision(&config).await;
    let relay = TestRelay::start(config).await;
    (server, relay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_dribbling_its_headers_is_disconnected_within_the_header_read_timeout() {
    let (_server, relay) =
        start(|c| c.http.limits.header_read_timeout = Duration::from_secs(1)).await;
    let mut s = TcpStream::connect(addr(&relay)).await.unwrap();
    let started = Instant::now();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n")
        .await
        .unwrap();
    // One header line every 200 ms, never the blank line that ends them.
    let (mut rd, mut wr) = s.into_split();
    let dribble = tokio::spawn(async move {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr
                .write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
                .await
                .is_err()
            {
                return i;
            }
        }
        unreachable!()
    });
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                // hyper may answer 408 before closing.
                Ok(_) => {}
            }
        }
    })
    .await;
    let after = started.elapsed();
    assert!(
        closed.is_ok(),
        "the dribbling client was not disconnected within 10 s"
    );
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(4),
        "disconnected after {after:?}; the header read timeout is 1 s"
    );
    dribble.abort();
    // The listener still serves others.
    let r = relay
        .http
        .get(format!("{}/healthz", relay.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_post_announcing_a_large_body_gets_401_before_the_body_is_sent() {
    let (_server, relay) = start(|_| {}).await;
    // No token, 4 MB announced, none of it sent: 401 at once.
    let mut s = TcpStream::connect(addr(&relay)).await.unwrap();
    s.write_all(
        b"POST /v1/notices HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: 4000000\r\n\r\n",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let line = status_line(&mut s, Duration::from_secs(5)).await;
    assert_eq!(line, "HTTP/1.1 401 Unauthorized");
    assert!(started.elapsed() < Duration::from_secs(5));

    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_slower_than_the_body_timeout_is_answered_408() {
    let (_server, relay) = start(|c| c.http.body_timeout = Duration::from_secs(1)).await;
    let mut s = TcpStream::connect(addr(&relay)).await.unwrap();
    let head = format!(
        "POST /v1/notices HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
        token_001()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let line = status_line(&mut s, Duration::from_secs(6)).await;
    assert_eq!(line, "HTTP/1.1 408 Request Timeout");
    assert!(started.elapsed() >= Duration::from_millis(900));
    relay.stop().await;
}

/// A connection that got `GET /healthz` answered 200 and is kept alive (so it holds a slot).
async fn holder(addr: &str) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n")
        .await
        .ok()?;
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    String::from_utf8_lossy(&buf[..n])
        .starts_with("HTTP/1.1 200")
        .then_some(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_holds_and_a_freed_slot_is_served_again() {
    let (_server, relay) = start(|c| {
        c.http.limits.max_connections = 2;
        c.http.limits.header_read_timeout = Duration::from_secs(30);
    })
    .await;
    let a = addr(&relay);
    // The readiness probe's connections may still hold a slot for a moment: retry until two
    // connections are served and kept.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut held = Vec::new();
    while held.len() < 2 {
        assert!(Instant::now() < deadline, "two connections were not served");
        match holder(&a).await {
            Some(s) => held.push(s),
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    // A third is closed without an answer, however often it tries.
    for _ in 0..3 {
        let mut s = TcpStream::connect(&a).await.unwrap();
        let _ = s
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n")
            .await;
        let answer = read_to_close(&mut s, Duration::from_secs(5)).await;
        assert_eq!(answer, "", "a connection over the cap was answered");
    }
    // Closing one frees its slot.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = holder(&a).await {
            held.push(s);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed slot was not served again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_over_its_rate_gets_429_with_retry_after_and_another_provider_is_served() {
    let (_server, relay) = start(|c| {
        c.http.provider_rate_per_sec = 0.25;
        c.http.provider_burst = 2;
    })
    .await;
    for seq in 1..=2 {
        let (status, _, body) = relay
            .post(&token_001(), &json(&notice("001o05-00", seq)))
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let (status, headers, body) = relay
        .post(&token_001(), &json(&notice("001o05-00", 3)))
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    // One token every 4 s.
    let after: u64 = headers["retry-after"].parse().unwrap();
    assert_eq!(after, 4, "Retry-After (seconds, rounded up)");
    // Provider 010 has its own bucket.
    for seq in 1..=2 {
        let (status, _, body) = relay
            .post(&token_010(), &json(&notice("010o01-00", seq)))
            .await;
        assert_eq!(status, 202, "{body}");
    }
    // Without a valid token the bucket is never reached: 401, not 429.
    let (status, _, _) = relay
        .post_raw(Some("not-a-token"), "application/json", b"{}".to_vec())
        .await;
    assert_eq!(status, 401);
    relay.stop().await;
}
