//! Per-provider load control: a concurrency limit and a request-rate limit shared by all the
//! provider's interfaces (the provider's DB load stays in the provider's budget), and
//! a "closed until" gate set when the provider announces maintenance.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Shared limiter of one provider. Cheap to clone through `Arc`.
#[derive(Debug)]
pub struct Limiter {
    sem: Arc<Semaphore>,
    interval: Duration,
    // A std mutex: held only to read and bump two instants, never across an await.
    state: std::sync::Mutex<State>,
    started: AtomicU64,
}

#[derive(Debug)]
struct State {
    next_slot: Instant,
    closed_until: Option<Instant>,
}

/// Held while a request runs; dropping it frees a concurrency slot.
#[derive(Debug)]
pub struct Permit {
    _permit: Option<OwnedSemaphorePermit>,
}

impl Limiter {
    /// `concurrency` requests at once, at most `rate_per_sec` request starts per second.
    pub fn new(concurrency: usize, rate_per_sec: f64) -> Self {
        let rate = if rate_per_sec > 0.0 {
            rate_per_sec
        } else {
            1.0
        };
        Self {
            sem: Arc::new(Semaphore::new(concurrency.max(1))),
            interval: Duration::from_secs_f64(1.0 / rate),
            state: std::sync::Mutex::new(State {
                next_slot: Instant::now(),
                closed_until: None,
            }),
            started: AtomicU64::new(0),
        }
    }

    /// Wait for a concurrency slot, then for the next rate slot (and the end of a maintenance
    /// closure). Slots are handed out in order, so the spacing between request starts is at
    /// least `1 / rate` however many interfaces ask at once.
    pub async fn acquire(&self) -> Permit {
        // The semaphore is never closed, so acquire cannot fail.
        let permit = self.sem.clone().acquire_owned().await.ok();
        let at = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let mut at = s.next_slot.max(now);
            if let Some(c) = s.closed_until {
                at = at.max(c);
            }
            s.next_slot = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
        self.started.fetch_add(1, Ordering::Relaxed);
        Permit { _permit: permit }
    }

    /// Close the provider until `until` (maintenance announced by E0900 + Retry-After).
    pub fn close_until(&self, until: Instant) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.closed_until = Some(s.closed_until.map_or(until, |c| c.max(until)));
    }

    /// Requests started so far (for metrics and tests).
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn request_starts_are_spaced_by_the_rate() {
        let l = Arc::new(Limiter::new(10, 5.0));
        let t0 = Instant::now();
        let mut starts = Vec::new();
        for _ in 0..6 {
            let _p = l.acquire().await;
            starts.push(Instant::now() - t0);
        }
        let ms: Vec<u128> = starts.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![0, 200, 400, 600, 800, 1000]);
        assert_eq!(l.started(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_bounded_and_shared() {
        let l = Arc::new(Limiter::new(2, 1000.0));
        let running = Arc::new(AtomicU64::new(0));
        let max = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (l, running, max) = (l.clone(), running.clone(), max.clone());
            tasks.push(tokio::spawn(async move {
                let _p = l.acquire().await;
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                running.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(max.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn closed_until_delays_the_next_request() {
        let l = Limiter::new(1, 100.0);
        let t0 = Instant::now();
        l.close_until(t0 + Duration::from_secs(30));
        let _p = l.acquire().await;
        assert!(Instant::now() - t0 >= Duration::from_secs(30));
    }
}
