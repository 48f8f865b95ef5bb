//! Pure decisions after the pulls: given what they returned (rows reached, or why they
//! failed), which notices to ack, which to nak and with what delay, which to dead-letter, and
//! where the checkpoint goes. Also the rules for a notice at the consumer's last delivery.
//! Plain data in, plain data out: the worker does the I/O these decisions call for.

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::Timestamp;
use shirase_proto::{BusinessId, Severity};

use super::{Decision, Failure, Item, Pulled};
use crate::coalesce::Plan;
use crate::config::RetryConfig;
use crate::coverage::Reach;
use crate::pull_client::{Outcome, Row};

/// Exponential backoff for a notice's `attempt`-th delivery: `base × 2^(attempt-1)`,
/// capped at `max`.
pub(super) fn backoff(retry: &RetryConfig, attempt: u64) -> Duration {
    let exp = attempt.saturating_sub(1).min(20) as u32;
    retry.base.saturating_mul(1u32 << exp).min(retry.max)
}

/// Hand every notice back until a maintenance window ends.
pub(super) fn wait_all(items: &[Item], wait: Duration) -> Vec<(usize, Decision)> {
    items
        .iter()
        .map(|it| (it.idx, Decision::Wait(wait)))
        .collect()
}

/// Nak every notice with its backoff (the checkpoint or the sink failed).
pub(super) fn nak_all(items: &[Item], retry: &RetryConfig) -> Vec<(usize, Decision)> {
    items
        .iter()
        .map(|it| (it.idx, Decision::Nak(backoff(retry, it.delivered))))
        .collect()
}

/// What the pulls brought, as far as deciding goes.
#[derive(Debug, Default)]
pub(super) struct Received {
    /// What the rows reached.
    pub(super) reached: Reached,
    /// A keyed pull's rows, still to be delivered (a window pull delivered its own).
    pub(super) rows: Vec<Row>,
    /// Rows received.
    pub(super) count: usize,
    /// DB timestamps of a window pull's rows (the newest of them), to remember.
    pub(super) window_times: Vec<Timestamp>,
    /// (DB timestamp, key hash) of a window pull's rows, to remember.
    pub(super) window_keys: Vec<(Timestamp, u64)>,
    /// FROM of the window pull, stored with the checkpoint it produces.
    pub(super) read_from: Option<Timestamp>,
    /// The window pull read its whole window, up to its TO.
    pub(super) read_whole: bool,
}

/// What a narrow pull's rows reached (they are already delivered).
#[derive(Debug, Default)]
pub(super) enum NarrowReached {
    /// No narrow pull was needed.
    #[default]
    Nothing,
    /// A keyed narrow pull: the keys' rows.
    Keyed(Reach),
    /// Minimal windows: the DB timestamps of the rows received.
    Windows(BTreeSet<Timestamp>),
}

impl NarrowReached {
    /// Did the narrow pull cover `it`? A keyed one as any keyed pull (each key at or after
    /// the notice). A window one when a row carries the notice's timestamp; when none does on a
    /// redelivery, the answer is taken as is: the first delivery's "not yet" gave a lagging
    /// replica time to catch up, and a row changed again since carries the newer change's
    /// timestamp, which that change's own notice reads.
    fn covers(&self, it: &Item) -> bool {
        let ts = it.notice.data.updated_at.instant();
        match self {
            NarrowReached::Nothing => false,
            NarrowReached::Keyed(r) => r.covers_keys(
                ts,
                it.notice
                    .data
                    .keys
                    .iter()
                    .flat_map(|k| k.atena_no.iter().map(|a| a.as_str())),
            ),
            NarrowReached::Windows(times) => times.contains(&ts) || it.delivered > 1,
        }
    }
}

/// What the rows of the pull reached.
#[derive(Debug, Default)]
pub(super) enum Reached {
    /// No pull was needed.
    #[default]
    Nothing,
    /// A window pull: every row up to `max` was received.
    Window(Reach),
    /// A keyed pull: only the keys' rows.
    Keyed(Reach),
}

impl Received {
    /// Summarize a pull's result (`None`: the plan needed no pull).
    pub(super) fn of(pulled: Option<Pulled>) -> Self {
        match pulled {
            None => Self::default(),
            Some(Pulled::Window(got)) => Self {
                reached: Reached::Window(Reach {
                    max: got.times.iter().max().copied(),
                    per_key: Default::default(),
                }),
                rows: vec![],
                count: got.count,
                window_times: got.times,
                window_keys: got.keys,
                read_from: got.from,
                read_whole: !got.stopped,
            },
            Some(Pulled::Keyed(rows)) => Self {
                reached: Reached::Keyed(Reach::of(&rows)),
                count: rows.len(),
                rows,
                window_times: vec![],
                window_keys: vec![],
                read_from: None,
                read_whole: false,
            },
        }
    }
}

impl Reached {
    /// The new checkpoint: only a window pull proves everything up to its newest row was
    /// received; a keyed pull sees only its keys and never moves it.
    pub(super) fn checkpoint(&self) -> Option<Timestamp> {
        match self {
            Reached::Window(r) => r.max,
            _ => None,
        }
    }

    /// Did the rows cover `it`?
    fn covers(&self, it: &Item) -> bool {
        let ts = it.notice.data.updated_at.instant();
        match self {
            Reached::Window(r) => r.covers_window(ts),
            Reached::Keyed(r) => r.covers_keys(
                ts,
                it.notice
                    .data
                    .keys
                    .iter()
                    .flat_map(|k| k.atena_no.iter().map(|a| a.as_str())),
            ),
            Reached::Nothing => false,
        }
    }
}

/// The decisions after successful pulls, stored rows and stored checkpoint.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Settled {
    /// One decision per item.
    pub(super) out: Vec<(usize, Decision)>,
    /// Positions (in `items`) of the notices the rows did not cover yet.
    pub(super) uncovered: Vec<usize>,
}

/// [`settle_pulled_narrow`] of a plan without a narrow pull (its narrow notices, if any, are
/// uncovered).
#[cfg_attr(not(test), allow(dead_code))]
pub(super) fn settle_pulled(
    plan: &Plan,
    items: &[Item],
    reached: &Reached,
    uncovered_delay: Duration,
) -> Settled {
    settle_pulled_narrow(
        plan,
        items,
        reached,
        &NarrowReached::Nothing,
        uncovered_delay,
    )
}

/// Ack tombstones, notices the pull behind the checkpoint already covered and notices the
/// rows covered (the window or keyed pull's `reached`, the narrow pull's `narrow`); hand the
/// uncovered ones back after `uncovered_delay` (the provider may answer from a lagging
/// replica).
pub(super) fn settle_pulled_narrow(
    plan: &Plan,
    items: &[Item],
    reached: &Reached,
    narrow: &NarrowReached,
    uncovered_delay: Duration,
) -> Settled {
    let mut out = Vec::with_capacity(items.len());
    let mut uncovered = Vec::new();
    for &i in plan.tombstones.iter().chain(&plan.already_covered) {
        out.push((items[i].idx, Decision::Ack));
    }
    let pulled = plan.pull.iter().flat_map(|p| &p.covers).map(|&i| (i, true));
    let narrowed = plan
        .narrow
        .iter()
        .flat_map(|n| &n.covers)
        .map(|&i| (i, false));
    for (i, main) in pulled.chain(narrowed) {
        let covered = if main {
            reached.covers(&items[i])
        } else {
            narrow.covers(&items[i])
        };
        if covered {
            out.push((items[i].idx, Decision::Ack));
        } else {
            uncovered.push(i);
            out.push((items[i].idx, Decision::Later(uncovered_delay)));
        }
    }
    Settled { out, uncovered }
}

/// The oldest emission time among the acked notices (for the lag metric).
pub(super) fn oldest_acked(items: &[Item], out: &[(usize, Decision)]) -> Option<Timestamp> {
    items
        .iter()
        .filter(|it| out.iter().any(|(i, d)| *i == it.idx && *d == Decision::Ack))
        .map(|it| it.notice.time.instant())
        .min()
}

/// What a failed pull calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Remedy {
    /// Nak each notice the pull covered after `retry_after`, or after its own backoff.
    Retry { retry_after: Option<Duration> },
    /// The provider is in maintenance for `wait` (its E0900, or the calendar): keep every
    /// interface of the provider away and hand the notices back until it ends.
    Maintenance { wait: Duration },
    /// The request can never succeed: dead-letter the notices it covered.
    DeadLetter {
        reason: String,
        status: Option<u16>,
        code: Option<String>,
        message: Option<String>,
    },
}

/// An alert a failure raises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FailureAlert {
    pub(super) severity: Severity,
    pub(super) code: &'static str,
    pub(super) message: String,
}

/// What a failed pull of `provider` calls for. `retry_max` is the longest backoff (a wait
/// without `Retry-After`; the pause after refused credentials).
pub(super) fn on_failure(
    f: Failure,
    provider: &BusinessId,
    bisect_max_depth: u32,
    retry_max: Duration,
) -> (Remedy, Option<FailureAlert>) {
    let alert = |severity, code, message| {
        Some(FailureAlert {
            severity,
            code,
            message,
        })
    };
    match f {
        Failure::Outcome(
            Outcome::Transient { retry_after, .. } | Outcome::TimeoutSplit { retry_after },
        ) => (Remedy::Retry { retry_after }, None),
        Failure::Outcome(Outcome::Maintenance { retry_after }) => (
            Remedy::Maintenance {
                wait: retry_after.unwrap_or(retry_max),
            },
            None,
        ),
        Failure::Outcome(Outcome::Unauthorized { message }) => (
            Remedy::Retry {
                retry_after: Some(retry_max),
            },
            alert(
                Severity::Critical,
                "unauthorized",
                format!(
                    "provider {provider} refused our credentials ({message}); check providers.client_id / client_secret_file"
                ),
            ),
        ),
        Failure::Outcome(Outcome::Permanent {
            status,
            code,
            message,
        }) => {
            let reason = format!(
                "the PULL API refused the request permanently ({status} {})",
                code.as_deref().unwrap_or("-")
            );
            let a = alert(
                Severity::Warning,
                "permanent_error",
                format!("{reason}: {message}; notices dead-lettered"),
            );
            let remedy = Remedy::DeadLetter {
                reason,
                status: Some(status),
                code,
                message: Some(message),
            };
            (remedy, a)
        }
        Failure::BisectExhausted { last, from, to } => {
            bisect_exhausted(&last, from, to, bisect_max_depth)
        }
        Failure::Burst { last, at, keyless } => unreadable_instant(&last, at, keyless),
        // The answer does not read with the profile: a guess would ack or dead-letter notices
        // whose rows were never understood, so retry and say which key to check.
        Failure::Outcome(Outcome::ProfileMismatch { key, message }) => (
            Remedy::Retry { retry_after: None },
            alert(
                Severity::Warning,
                "profile_mismatch",
                format!(
                    "provider {provider} answered in a form its API profile does not read (check providers.api.{key}): {message}; the notices are retried, nothing is acked or dead-lettered"
                ),
            ),
        ),
        // A connection failure, a refusing sink; Data and TooMany never reach here as failures
        // of a window.
        Failure::Outcome(_) | Failure::Sink(_) => (Remedy::Retry { retry_after: None }, None),
    }
}

/// The remedy and alert of [`Failure::BisectExhausted`]: the smallest window bisection
/// reached (depth `bisect_max_depth`) was still refused.
fn bisect_exhausted(
    last: &Outcome,
    from: Timestamp,
    to: Timestamp,
    bisect_max_depth: u32,
) -> (Remedy, Option<FailureAlert>) {
    let reason = format!(
        "bisection depth {bisect_max_depth} exhausted at window [{}, {}) with {}",
        shirase_proto::OffsetTimestamp::from_instant_jst(from),
        shirase_proto::OffsetTimestamp::from_instant_jst(to),
        last.label()
    );
    let alert = FailureAlert {
        severity: Severity::Warning,
        code: "bisect_exhausted",
        message: format!(
            "{reason}; raise the provider's threshold or pull.bisect_max_depth; notices dead-lettered"
        ),
    };
    let status = match last {
        Outcome::TooMany => Some(400),
        _ => Some(503),
    };
    let remedy = Remedy::DeadLetter {
        reason,
        status,
        code: None,
        message: None,
    };
    (remedy, Some(alert))
}

/// The remedy and alert of [`Failure::Burst`]: one instant over the provider's threshold that
/// keyed pulls cannot read either.
fn unreadable_instant(
    last: &Outcome,
    at: Timestamp,
    keyless: bool,
) -> (Remedy, Option<FailureAlert>) {
    let why = if keyless {
        "a notice there names no addressee number to pull by"
    } else {
        "one addressee number's rows there are refused as well"
    };
    let reason = format!(
        "one instant ({}) holds more rows than the provider answers at once ({}) and {why}",
        shirase_proto::OffsetTimestamp::from_instant_jst(at),
        last.label()
    );
    let alert = FailureAlert {
        severity: Severity::Warning,
        code: "bisect_exhausted",
        message: format!(
            "{reason}; ask the provider to raise its row threshold; notices dead-lettered"
        ),
    };
    let remedy = Remedy::DeadLetter {
        reason,
        status: Some(if matches!(last, Outcome::TooMany) {
            400
        } else {
            503
        }),
        code: None,
        message: None,
    };
    (remedy, Some(alert))
}

/// Nak `covers` after `retry_after`, or each after its own backoff.
pub(super) fn retry(
    covers: &[&Item],
    retry_after: Option<Duration>,
    retry: &RetryConfig,
) -> Vec<(usize, Decision)> {
    covers
        .iter()
        .map(|it| {
            let d = retry_after.unwrap_or_else(|| backoff(retry, it.delivered));
            (it.idx, Decision::Nak(d))
        })
        .collect()
}

/// Complete the decisions of a failed pull (`out` covers the pull's notices): notices that
/// needed no pull are still done; tombstones wait for the next round with the failed ones
/// (until the end of a maintenance window, if that is what stopped the pull).
pub(super) fn after_failure(
    out: &mut Vec<(usize, Decision)>,
    plan: &Plan,
    items: &[Item],
    retry: &RetryConfig,
) {
    for &i in &plan.already_covered {
        out.push((items[i].idx, Decision::Ack));
    }
    let wait = out.iter().find_map(|(_, d)| match d {
        Decision::Wait(w) => Some(*w),
        _ => None,
    });
    for &i in &plan.tombstones {
        let d = wait.map_or_else(
            || Decision::Nak(backoff(retry, items[i].delivered)),
            Decision::Wait,
        );
        out.push((items[i].idx, d));
    }
}

/// Is `it` at the consumer's last delivery (`max_deliver` ≤ 0: unlimited)?
fn at_last(it: &Item, max_deliver: i64) -> bool {
    max_deliver > 0 && it.delivered >= max_deliver as u64
}

/// The decision for `it` in `out`.
fn decision_of(out: &[(usize, Decision)], it: &Item) -> Option<Decision> {
    out.iter().find(|(i, _)| *i == it.idx).map(|(_, d)| *d)
}

/// How long to hold the batch instead of a maintenance nak that would fall on a notice's last
/// delivery (JetStream would drop the notice): the wait of the first such notice.
pub(super) fn maintenance_hold(
    items: &[Item],
    out: &[(usize, Decision)],
    max_deliver: i64,
) -> Option<Duration> {
    items
        .iter()
        .filter(|it| at_last(it, max_deliver))
        .find_map(|it| match decision_of(out, it) {
            Some(Decision::Wait(w)) => Some(w),
            _ => None,
        })
}

/// Would a failure nak fall on a notice's last delivery? (While the provider is out, such
/// notices are held and tried again, never dead-lettered.)
pub(super) fn failure_at_last(items: &[Item], out: &[(usize, Decision)], max_deliver: i64) -> bool {
    items.iter().any(|it| {
        at_last(it, max_deliver) && matches!(decision_of(out, it), Some(Decision::Nak(_)))
    })
}

/// The notices a nak would make JetStream drop silently (at their last delivery, still failing
/// or uncovered): they are dead-lettered instead.
pub(super) fn dead_at_last<'a>(
    items: &'a [Item],
    out: &[(usize, Decision)],
    max_deliver: i64,
) -> Vec<&'a Item> {
    items
        .iter()
        .filter(|it| at_last(it, max_deliver))
        .filter(|it| {
            matches!(
                decision_of(out, it),
                Some(Decision::Nak(_) | Decision::Later(_))
            )
        })
        .collect()
}

/// Put the decisions `new` in place of the same items' decisions in `out`.
pub(super) fn replace(out: &mut [(usize, Decision)], new: Vec<(usize, Decision)>) {
    for (idx, d) in new {
        if let Some(slot) = out.iter_mut().find(|(i, _)| *i == idx) {
            slot.1 = d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::test_support::{item, ts};
    use crate::coalesce::{PlannedPull, PullKind};

    const RETRY: RetryConfig = RetryConfig {
        base: std::time::Duration::from_millis(500),
        max: std::time::Duration::from_secs(60),
    };

    fn provider() -> BusinessId {
        "001".parse().unwrap()
    }

    fn window_plan(covers: Vec<usize>) -> Plan {
        Plan {
            pull: Some(PlannedPull {
                kind: PullKind::Window {
                    from: ts(0),
                    to: ts(1000),
                },
                covers,
            }),
            ..Plan::default()
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(&RETRY, 0), Duration::from_millis(500));
        assert_eq!(backoff(&RETRY, 1), Duration::from_millis(500));
        assert_eq!(backoff(&RETRY, 4), Duration::from_millis(4_000));
        assert_eq!(backoff(&RETRY, 30), Duration::from_millis(60_000));
    }

    #[test]
    fn a_window_reaching_a_notice_acks_it_and_the_rest_wait_for_the_replica() {
        let items = [item(0, 100), item(1, 200), item(2, 300)];
        let mut plan = window_plan(vec![1, 2]);
        plan.already_covered = vec![0];
        let reached = Reached::Window(Reach {
            max: Some(ts(250)),
            per_key: Default::default(),
        });
        let s = settle_pulled(&plan, &items, &reached, Duration::from_secs(5));
        assert_eq!(
            s.out,
            vec![
                (0, Decision::Ack),
                (1, Decision::Ack),
                (2, Decision::Later(Duration::from_secs(5)))
            ]
        );
        assert_eq!(s.uncovered, vec![2]);
        assert_eq!(reached.checkpoint(), Some(ts(250)));
        assert_eq!(Reached::Keyed(Reach::default()).checkpoint(), None);
    }

    #[test]
    fn a_narrow_pull_covers_a_notice_with_a_row_at_its_timestamp() {
        use crate::coalesce::{NarrowKind, NarrowPull};
        let mut items = [item(0, 100), item(1, 150), item(2, 300)];
        let mut plan = window_plan(vec![2]);
        plan.narrow = Some(NarrowPull {
            kind: NarrowKind::Windows(vec![]),
            covers: vec![0, 1],
        });
        let window = Reached::Window(Reach {
            max: Some(ts(300)),
            per_key: Default::default(),
        });
        let narrow = NarrowReached::Windows([ts(100)].into());
        let delay = Duration::from_secs(2);
        let s = settle_pulled_narrow(&plan, &items, &window, &narrow, delay);
        assert_eq!(
            s.out,
            vec![
                (2, Decision::Ack),
                (0, Decision::Ack),
                (1, Decision::Later(delay))
            ],
            "the window reaching 300 does not cover the narrow notice at 150"
        );
        // Redelivered and still no row at 150: the row moved on (or the replica caught up
        // and it is gone): the answer stands.
        items[1].delivered = 2;
        let s = settle_pulled_narrow(&plan, &items, &window, &narrow, delay);
        assert!(s.uncovered.is_empty());
        // Without the narrow pull's result nothing of it is covered.
        let s = settle_pulled(&plan, &items, &window, delay);
        assert_eq!(s.uncovered, vec![0, 1]);
    }

    #[test]
    fn e0004_at_the_last_bisection_depth_dead_letters_as_a_400() {
        let f = Failure::BisectExhausted {
            last: Outcome::TooMany,
            from: ts(0),
            to: ts(1),
        };
        let (remedy, alert) = on_failure(f, &provider(), 6, Duration::from_secs(60));
        let Remedy::DeadLetter { reason, status, .. } = remedy else {
            panic!("expected a dead letter, got {remedy:?}");
        };
        assert!(
            reason.starts_with("bisection depth 6 exhausted"),
            "{reason}"
        );
        assert_eq!(status, Some(400));
        assert_eq!(alert.map(|a| a.code), Some("bisect_exhausted"));

        let f = Failure::BisectExhausted {
            last: Outcome::TimeoutSplit { retry_after: None },
            from: ts(0),
            to: ts(1),
        };
        let (remedy, _) = on_failure(f, &provider(), 6, Duration::from_secs(60));
        assert!(matches!(
            remedy,
            Remedy::DeadLetter {
                status: Some(503),
                ..
            }
        ));
    }

    #[test]
    fn an_instant_that_keys_cannot_read_dead_letters_with_an_alert() {
        let f = Failure::Burst {
            last: Outcome::TooMany,
            at: ts(100),
            keyless: true,
        };
        let (remedy, alert) = on_failure(f, &provider(), 6, Duration::from_secs(60));
        let Remedy::DeadLetter { reason, status, .. } = remedy else {
            panic!("expected a dead letter, got {remedy:?}");
        };
        assert!(
            reason.starts_with("one instant (2027-01-15T17:01:40+09:00) holds more rows"),
            "{reason}"
        );
        assert!(
            reason.ends_with("names no addressee number to pull by"),
            "{reason}"
        );
        assert_eq!(status, Some(400));
        let alert = alert.unwrap();
        assert_eq!(alert.code, "bisect_exhausted");
        assert!(
            alert.message.contains("raise its row threshold"),
            "{}",
            alert.message
        );
    }

    #[test]
    fn a_maintenance_answer_waits_for_its_retry_after_and_tombstones_wait_with_it() {
        let (remedy, alert) = on_failure(
            Failure::Outcome(Outcome::Maintenance {
                retry_after: Some(Duration::from_secs(1800)),
            }),
            &provider(),
            6,
            Duration::from_secs(60),
        );
        assert_eq!(
            remedy,
            Remedy::Maintenance {
                wait: Duration::from_secs(1800)
            }
        );
        assert_eq!(alert, None);
        let (remedy, _) = on_failure(
            Failure::Outcome(Outcome::Maintenance { retry_after: None }),
            &provider(),
            6,
            Duration::from_secs(60),
        );
        assert_eq!(
            remedy,
            Remedy::Maintenance {
                wait: Duration::from_secs(60)
            }
        );

        let items = [item(0, 100), item(1, 200), item(2, 300)];
        let mut plan = window_plan(vec![2]);
        plan.tombstones = vec![1];
        plan.already_covered = vec![0];
        let mut out = vec![(2, Decision::Wait(Duration::from_secs(1800)))];
        after_failure(&mut out, &plan, &items, &RETRY);
        assert_eq!(
            out,
            vec![
                (2, Decision::Wait(Duration::from_secs(1800))),
                (0, Decision::Ack),
                (1, Decision::Wait(Duration::from_secs(1800))),
            ]
        );
    }

    #[test]
    fn transient_errors_honour_retry_after_else_back_off() {
        let mut items = [item(0, 100), item(1, 200)];
        items[1].delivered = 3;
        let (remedy, _) = on_failure(
            Failure::Outcome(Outcome::Transient {
                code: Some("E0503".into()),
                retry_after: None,
            }),
            &provider(),
            6,
            Duration::from_secs(60),
        );
        assert_eq!(remedy, Remedy::Retry { retry_after: None });
        let covers: Vec<&Item> = items.iter().collect();
        assert_eq!(
            retry(&covers, None, &RETRY),
            vec![
                (0, Decision::Nak(Duration::from_millis(500))),
                (1, Decision::Nak(Duration::from_millis(2_000)))
            ]
        );
        assert_eq!(
            retry(&covers, Some(Duration::from_secs(7)), &RETRY)[1],
            (1, Decision::Nak(Duration::from_secs(7)))
        );
        let (remedy, alert) = on_failure(
            Failure::Outcome(Outcome::Unauthorized {
                message: "bad assertion".into(),
            }),
            &provider(),
            6,
            Duration::from_secs(60),
        );
        assert_eq!(
            remedy,
            Remedy::Retry {
                retry_after: Some(Duration::from_secs(60))
            }
        );
        assert_eq!(alert.map(|a| a.severity), Some(Severity::Critical));
    }

    #[test]
    fn the_last_delivery_is_held_in_maintenance_and_dead_lettered_otherwise() {
        let mut items = [item(0, 100), item(1, 200)];
        items[1].delivered = 5;
        let wait = Duration::from_secs(600);
        let out = vec![(0, Decision::Wait(wait)), (1, Decision::Wait(wait))];
        assert_eq!(maintenance_hold(&items, &out, 5), Some(wait));
        assert_eq!(maintenance_hold(&items, &out, 6), None);
        assert_eq!(maintenance_hold(&items, &out, -1), None, "unlimited");

        let mut out = vec![(0, Decision::Nak(wait)), (1, Decision::Nak(wait))];
        assert!(failure_at_last(&items, &out, 5));
        let dead: Vec<usize> = dead_at_last(&items, &out, 5)
            .iter()
            .map(|it| it.idx)
            .collect();
        assert_eq!(dead, vec![1]);
        replace(&mut out, vec![(1, Decision::Term)]);
        assert_eq!(out, vec![(0, Decision::Nak(wait)), (1, Decision::Term)]);
    }

    #[test]
    fn the_lag_is_measured_from_the_oldest_acked_notice() {
        let items = [item(0, 100), item(1, 200)];
        let out = vec![(0, Decision::Nak(Duration::ZERO)), (1, Decision::Ack)];
        assert_eq!(
            oldest_acked(&items, &out),
            Some(items[1].notice.time.instant())
        );
        assert_eq!(oldest_acked(&items, &[]), None);
    }
}
