//! Per-provider request rate limit of HTTP ingest: one token bucket per provider
//! (`http.provider_rate_per_sec` refill, `http.provider_burst` size), checked right after the
//! provider's token and before its body is read. A provider over its rate is answered 429 with
//! `Retry-After`; the other providers' buckets are untouched.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shirase_proto::BusinessId;

/// One token bucket per provider.
#[derive(Debug)]
pub struct ProviderRateLimit {
    rate_per_sec: f64,
    burst: f64,
    // A std mutex: held for a few arithmetic operations, never across an await.
    buckets: Mutex<HashMap<BusinessId, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl ProviderRateLimit {
    /// Buckets of `burst` tokens refilled at `rate_per_sec`.
    pub fn new(rate_per_sec: f64, burst: u32) -> Self {
        Self {
            rate_per_sec,
            burst: f64::from(burst),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one token of `provider`'s bucket at `now`: `Ok` when the request may go on, else
    /// how long until a token is back (the `Retry-After`).
    pub fn check(&self, provider: BusinessId, now: Instant) -> Result<(), Duration> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let b = buckets.entry(provider).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate_per_sec).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - b.tokens) / self.rate_per_sec,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_provider_over_its_burst_waits_for_the_refill_and_others_are_unaffected() {
        let limit = ProviderRateLimit::new(2.0, 3);
        let a: BusinessId = "001".parse().unwrap();
        let b: BusinessId = "010".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limit.check(a, t0), Ok(()));
        }
        // Empty: one token comes back after 1 / rate = 500 ms.
        assert_eq!(limit.check(a, t0), Err(Duration::from_millis(500)));
        assert_eq!(
            limit.check(b, t0),
            Ok(()),
            "another provider's bucket is full"
        );
        let later = t0 + Duration::from_millis(250);
        assert_eq!(limit.check(a, later), Err(Duration::from_millis(250)));
        assert_eq!(limit.check(a, t0 + Duration::from_millis(500)), Ok(()));
        // A long pause refills to the burst, not beyond.
        let much_later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limit.check(a, much_later), Ok(()));
        }
        assert!(limit.check(a, much_later).is_err());
    }
}
