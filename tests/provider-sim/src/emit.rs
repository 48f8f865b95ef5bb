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
            let client = match reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot build the HTTP client; notices will not be delivered");
                    return;
                }
            };
            while let Some(batch) = next_batch(&mut rx, &shutdown).await {
                let mut pending = batch;
                let mut backoff = BACKOFF_MIN;
                loop {
                    let n = pending.len() as u64;
                    let res = client
                        .post(&endpoint)
                        .bearer_auth(token.expose())
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(batch_json(&pending))
                        .send()
                        .await;
                    let wait = match res {
                        Ok(r) if r.status().is_success() => {
                            // 202 (all stored) or 207 (per-item results): re-send only the
                            // items that failed transiently, give up on the refused ones.
                            let after = retry_after(Some(r.headers()));
                            let body: serde_json::Value = r.json().await.unwrap_or_default();
                            let outcome = per_item(&body, pending.len());
                            stats.delivered.fetch_add(outcome.stored, Ordering::Relaxed);
                            stats
                                .duplicate
                                .fetch_add(outcome.duplicates, Ordering::Relaxed);
                            if !outcome.refused.is_empty() {
                                stats
                                    .failed
                                    .fetch_add(outcome.refused.len() as u64, Ordering::Relaxed);
                                tracing::error!(
                                    notices = outcome.refused.len(),
                                    "relay refused notices in a batch; not retried"
                                );
                            }
                            pending = outcome
                                .retry
                                .iter()
                                .filter_map(|i| pending.get(*i).cloned())
                                .collect();
                            if pending.is_empty() {
                                break;
                            }
                            tracing::warn!(
                                notices = pending.len(),
                                "relay could not store some notices yet; re-sending them with the same ids"
                            );
                            after.unwrap_or(backoff)
                        }
                        Ok(r)
                            if r.status().is_server_error()
                                || r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS =>
                        {
                            tracing::warn!(
                                status = r.status().as_u16(),
                                notices = n,
                                "relay refused the batch for now; retrying with the same ids"
                            );
                            retry_after(Some(r.headers())).unwrap_or(backoff)
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
                            tracing::warn!(notices = pending.len() + rx.len(), "shutdown: notices not delivered to the relay");
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
async fn next_batch(
    rx: &mut mpsc::UnboundedReceiver<Notice>,
    shutdown: &CancellationToken,
) -> Option<Vec<Notice>> {
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

/// `Retry-After` in seconds, if the answer carried one.
fn retry_after(headers: Option<&reqwest::header::HeaderMap>) -> Option<Duration> {
    headers?
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// What a 2xx relay answer says about each notice of the batch.
#[derive(Debug, Default, PartialEq, Eq)]
struct PerItem {
    stored: u64,
    duplicates: u64,
    /// Indexes to re-send (503 items).
    retry: Vec<usize>,
    /// Indexes refused for good (4xx items).
    refused: Vec<usize>,
}

/// Read the relay's batch answer (`results[i].status`, `.duplicate`); an answer without
/// per-item results means every notice was stored.
fn per_item(body: &serde_json::Value, sent: usize) -> PerItem {
    let mut out = PerItem::default();
    let Some(results) = body.get("results").and_then(|r| r.as_array()) else {
        out.stored = sent as u64;
        out.duplicates = u64::from(body.get("duplicate") == Some(&serde_json::Value::Bool(true)));
        return out;
    };
    for (pos, item) in results.iter().enumerate() {
        let index = item
            .get("index")
            .and_then(serde_json::Value::as_u64)
            .map_or(pos, |i| i as usize);
        match item
            .get("status")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
        {
            200..=299 => {
                out.stored += 1;
                if item.get("duplicate") == Some(&serde_json::Value::Bool(true)) {
                    out.duplicates += 1;
                }
            }
            400..=499 => out.refused.push(index),
            _ => out.retry.push(index),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn per_item_results_split_into_stored_retry_and_refused() {
        let body = json!({"accepted": 2, "duplicates": 1, "rejected": 1, "failed": 1, "results": [
            {"index": 0, "status": 202, "duplicate": false},
            {"index": 1, "status": 422},
            {"index": 2, "status": 503},
            {"index": 3, "status": 202, "duplicate": true}]});
        assert_eq!(
            per_item(&body, 4),
            PerItem {
                stored: 2,
                duplicates: 1,
                retry: vec![2],
                refused: vec![1]
            }
        );
        let single = json!({"id": "x", "status": 202, "duplicate": true});
        assert_eq!(
            per_item(&single, 1),
            PerItem {
                stored: 1,
                duplicates: 1,
                ..Default::default()
            }
        );
    }
}
