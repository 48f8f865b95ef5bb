//! Delivery of notices to the configured target, like a real provider: to the relay over HTTP
//! in batches, or straight to JetStream. A failed delivery is retried with the same notice ids
//! (the relay and JetStream de-duplicate by id), so nothing a commit produced is dropped while
//! the sim runs; at shutdown the undelivered remainder is logged as a count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shirase_proto::Notice;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::config::NoticeTarget;
use super::state::Shared;

/// Most notices in one relay batch.
const BATCH: usize = 100;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub(crate) struct EmitStats {
    pub delivered: AtomicU64,
    pub duplicate: AtomicU64,
    pub retries: AtomicU64,
    pub failed: AtomicU64,
}

/// Run until shutdown, delivering what arrives on `rx`.
pub(crate) async fn run(
    shared: std::sync::Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Notice>,
    shutdown: CancellationToken,
) {
    let stats = &shared.emit_stats;
    match shared.config.notice_target.clone() {
        NoticeTarget::None => {}
        NoticeTarget::Relay { url, token } => {
            let endpoint = format!("{}/v1/notices", url.trim_end_matches('/'));
            let client = match reqwest::Client::builder().timeout(Duration::from_secs(30)).build() {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot build the HTTP client; notices will not be delivered");
                    return;
                }
            };
            while let Some(batch) = next_batch(&mut rx, &shutdown).await {
                let n = batch.len() as u64;
                let body = batch_json(&batch);
                let mut backoff = BACKOFF_MIN;
                loop {
                    let res = client
                        .post(&endpoint)
                        .bearer_auth(token.expose())
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    let wait = match res {
                        Ok(r) if r.status().is_success() => {
                            stats.delivered.fetch_add(n, Ordering::Relaxed);
                            let body: serde_json::Value = r.json().await.unwrap_or_default();
                            stats.duplicate.fetch_add(count_duplicates(&body), Ordering::Relaxed);
                            break;
                        }
                        Ok(r) if r.status().is_server_error() || r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                            let after = r
                                .headers()
                                .get(reqwest::header::RETRY_AFTER)
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.trim().parse::<u64>().ok())
                                .map(Duration::from_secs);
                            tracing::warn!(status = r.status().as_u16(), notices = n, "relay refused the batch for now; retrying with the same ids");
                            after.unwrap_or(backoff)
                        }
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let text = r.text().await.unwrap_or_default();
                            let reason: String = text.chars().take(1024).collect();
                            tracing::error!(status, notices = n, %reason, "relay rejected the batch; not retried");
                            stats.failed.fetch_add(n, Ordering::Relaxed);
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, notices = n, "relay unreachable; retrying with the same ids");
                            backoff
                        }
                    };
                    stats.retries.fetch_add(1, Ordering::Relaxed);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    tokio::select! {
                        () = shutdown.cancelled() => {
                            tracing::warn!(notices = n + rx.len() as u64, "shutdown: notices not delivered to the relay");
                            return;
                        }
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        NoticeTarget::Nats { url } => {
            let client = tokio::select! {
                () = shutdown.cancelled() => return,
                c = async_nats::ConnectOptions::new().retry_on_initial_connect().connect(url.as_str()) => c,
            };
            let client = match client {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, %url, "cannot connect to NATS; notices will not be delivered");
                    return;
                }
            };
            let js = async_nats::jetstream::new(client);
            while let Some(batch) = next_batch(&mut rx, &shutdown).await {
                for (i, notice) in batch.iter().enumerate() {
                    let mut backoff = BACKOFF_MIN;
                    loop {
                        match shirase_proto::publish::publish(&js, notice).await {
                            Ok(p) => {
                                stats.delivered.fetch_add(1, Ordering::Relaxed);
                                if p.duplicate {
                                    stats.duplicate.fetch_add(1, Ordering::Relaxed);
                                }
                                break;
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "publish failed; retrying with the same id");
                                stats.retries.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        tokio::select! {
                            () = shutdown.cancelled() => {
                                let left = (batch.len() - i) + rx.len();
                                tracing::warn!(notices = left, "shutdown: notices not published");
                                return;
                            }
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
        }
    }
}

/// Wait for at least one notice, then take what is already queued, up to [`BATCH`].
async fn next_batch(rx: &mut mpsc::UnboundedReceiver<Notice>, shutdown: &CancellationToken) -> Option<Vec<Notice>> {
    let first = tokio::select! {
        () = shutdown.cancelled() => None,
        n = rx.recv() => n,
    }?;
    let mut batch = vec![first];
    while batch.len() < BATCH {
        match rx.try_recv() {
            Ok(n) => batch.push(n),
            Err(_) => break,
        }
    }
    Some(batch)
}

fn batch_json(batch: &[Notice]) -> Vec<u8> {
    // Notices always serialize (string keys only); a batch is a JSON array of them.
    serde_json::to_vec(batch).unwrap_or_default()
}

/// How many `"duplicate": true` members the relay's answer holds (single or per-item results).
fn count_duplicates(v: &serde_json::Value) -> u64 {
    match v {
        serde_json::Value::Object(m) => {
            let own = u64::from(m.get("duplicate") == Some(&serde_json::Value::Bool(true)));
            own + m.values().map(count_duplicates).sum::<u64>()
        }
        serde_json::Value::Array(a) => a.iter().map(count_duplicates).sum(),
        _ => 0,
    }
}
