//! What window pulls have certainly read, so that a sweep need not read it again.
//!
//! A sweep exists for changes whose notices never came, on the rule that a row becomes visible
//! at most `pull.overlap` after its update timestamp; it reads from the overlap below the
//! checkpoint. Every stored checkpoint comes with a true record of the window pull behind it:
//! every row with a timestamp in `[read_from, checkpoint]` that was visible at `read_at` is in
//! the sink. Under the overlap rule, a row whose timestamp lies at least the overlap before
//! `read_at` was visible then, so the whole of `[read_from, min(checkpoint, read_at − overlap)]`
//! has been read. A pull that ran long after its rows (the backlog of the nightly maintenance
//! window, a consumer catching up) therefore proves its whole window read, and the next sweep
//! starts above it instead of re-reading the overlap below the checkpoint
//! ([`crate::coalesce::sweep_from`]).
//!
//! [`ReadLog`] keeps the union of those intervals per interface, in memory (after a restart a
//! sweep reads the whole overlap until pulls prove more). It learns from the records it reads
//! from the checkpoint store (every batch reads the key: its own pulls' records and other
//! replicas' alike) and from its whole sweeps. A record only ever claims what its pull delivered, so an operator's rewind of
//! the checkpoint does not make a span untrue; the sweep still never starts above the
//! checkpoint, which keeps a resync's re-delivery.
//!
//! Pure and deterministic.

use std::time::Duration;

use jiff::Timestamp;

use crate::coalesce::{CLOCK_SKEW_MARGIN, ReadThrough, minus, plus_micro};

/// Spans kept per interface; beyond it the lowest are forgotten (a sweep then reads more, never
/// less). Consecutive pulls chain into one span, so a few suffice.
pub const MAX_SPANS: usize = 32;

/// The union of the intervals of update timestamps whose rows have all been read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadLog {
    /// Sorted, disjoint, not adjacent.
    spans: Vec<ReadThrough>,
}

impl ReadLog {
    /// A window pull that started at `at` delivered every row visible then with a timestamp in
    /// `[from, to]` (a stored checkpoint's record: its FROM, the checkpoint, `read_at`). Every
    /// row in `[from, min(to, at − overlap − CLOCK_SKEW_MARGIN)]` has then been read (the margin
    /// allows for the provider's clock running ahead of the agent's).
    pub fn record(&mut self, from: Timestamp, to: Timestamp, at: Timestamp, overlap: Duration) {
        self.insert(ReadThrough {
            from,
            through: to.min(minus(minus(at, overlap), CLOCK_SKEW_MARGIN)),
        });
    }

    /// Add a span known read (e.g. [`ReadThrough::swept`]); an empty one (`through < from`)
    /// adds nothing.
    pub fn insert(&mut self, span: ReadThrough) {
        if span.through < span.from {
            return;
        }
        self.spans.push(span);
        self.spans.sort_by_key(|s| s.from);
        let mut merged: Vec<ReadThrough> = Vec::with_capacity(self.spans.len());
        for s in self.spans.drain(..) {
            match merged.last_mut() {
                Some(last) if s.from <= plus_micro(last.through) => {
                    last.through = last.through.max(s.through);
                }
                _ => merged.push(s),
            }
        }
        let excess = merged.len().saturating_sub(MAX_SPANS);
        merged.drain(..excess);
        self.spans = merged;
    }

    /// The span that contains `t`, if every row around it is known read.
    pub fn around(&self, t: Timestamp) -> Option<ReadThrough> {
        self.spans
            .iter()
            .find(|s| s.from <= t && t <= s.through)
            .copied()
    }

    /// Forget the spans that end below `t` (no sweep starts below the overlap under the
    /// checkpoint).
    pub fn forget_below(&mut self, t: Timestamp) {
        self.spans.retain(|s| s.through >= t);
    }

    /// The spans, lowest first.
    pub fn spans(&self) -> &[ReadThrough] {
        &self.spans
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OVERLAP: Duration = Duration::from_secs(600);

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_780_000_000 + s).unwrap()
    }

    fn span(from: i64, through: i64) -> ReadThrough {
        ReadThrough {
            from: ts(from),
            through: ts(through),
        }
    }

    #[test]
    fn a_pull_long_after_its_rows_proves_its_window_read_and_a_prompt_one_does_not() {
        let mut log = ReadLog::default();
        // Rows 0..1,000 s read at 5,000 s (a maintenance backlog): all of them.
        log.record(ts(0), ts(1_000), ts(5_000), OVERLAP);
        assert_eq!(log.spans(), &[span(0, 1_000)]);
        // Rows 1,000..2,000 s read at 2,100 s: only up to 2,100 − 600 − 2.
        log.record(ts(1_000), ts(2_000), ts(2_100), OVERLAP);
        assert_eq!(log.spans(), &[span(0, 1_498)]);
        // A prompt pull proves nothing.
        log.record(ts(2_000), ts(2_010), ts(2_011), OVERLAP);
        assert_eq!(log.spans(), &[span(0, 1_498)]);
        assert_eq!(log.around(ts(700)), Some(span(0, 1_498)));
        assert_eq!(log.around(ts(1_499)), None);
    }

    #[test]
    fn spans_merge_when_adjacent_and_stay_apart_across_a_hole() {
        let mut log = ReadLog::default();
        log.record(ts(0), ts(100), ts(10_000), OVERLAP);
        log.record(ts(300), ts(400), ts(10_000), OVERLAP);
        assert_eq!(log.spans(), &[span(0, 100), span(300, 400)]);
        log.record(ts(100), ts(300), ts(10_000), OVERLAP);
        assert_eq!(log.spans(), &[span(0, 400)]);
        log.forget_below(ts(401));
        assert_eq!(log.spans(), &[]);
    }

    #[test]
    fn beyond_the_cap_the_lowest_spans_are_forgotten() {
        let mut log = ReadLog::default();
        for k in 0..(MAX_SPANS as i64 + 3) {
            log.record(ts(10 * k), ts(10 * k + 5), ts(100_000), OVERLAP);
        }
        assert_eq!(log.spans().len(), MAX_SPANS);
        assert_eq!(log.spans()[0], span(30, 35));
    }

    proptest! {
        /// Rows become visible at most the overlap after their timestamp; each pull reads the
        /// rows of its window visible when it starts. Whatever the pulls, every row inside a
        /// span the log reports has been read.
        #[test]
        fn every_row_inside_a_span_has_been_read(
            rows in proptest::collection::vec((0i64..20_000, 0i64..=600), 1..150),
            pulls in proptest::collection::vec((0i64..20_000, 0i64..3_000, 0i64..4_000), 1..30),
            probes in proptest::collection::vec(0i64..20_000, 1..20),
        ) {
            let mut read = vec![false; rows.len()];
            let mut log = ReadLog::default();
            for &(from, len, delay) in &pulls {
                let to = from + len;
                let at = to + delay;
                for (k, &(t, lag)) in rows.iter().enumerate() {
                    if from <= t && t <= to && t + lag < at {
                        read[k] = true;
                    }
                }
                log.record(ts(from), ts(to), ts(at), OVERLAP);
            }
            for &x in &probes {
                if let Some(s) = log.around(ts(x)) {
                    prop_assert!(s.from <= ts(x) && ts(x) <= s.through);
                    for (k, &(t, _)) in rows.iter().enumerate() {
                        if s.from <= ts(t) && ts(t) <= s.through {
                            prop_assert!(read[k], "row {k} {:?} inside {s:?} was never read", rows[k]);
                        }
                    }
                }
            }
        }
    }
}
