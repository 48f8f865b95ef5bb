//! The soak's fault schedule: a pure function of the seed and the run's length, so a failing
//! run replays with the same `--seed`.
//!
//! Faults start every 2–8 s from [`FIRST_FAULT`] on and each lasts a few seconds; every one
//! has ended by the end of the run. Two faults never act on the same thing at once (the end of
//! one would cancel the other), and at most one nats-server node is faulty at a time, so the
//! R3 stream keeps its quorum of two; everything else may overlap (both relays down, both
//! replicas of an agent down, a provider outage during an agent restart...).

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;

/// When the first fault may start (the topology has been running this long).
pub const FIRST_FAULT: Duration = Duration::from_secs(3);
/// The most a provider's clock is put ahead of the agents' in one run.
pub const MAX_CLOCK_AHEAD: Duration = Duration::from_secs(20);

/// How many of each thing the topology runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Relay replicas.
    pub relays: usize,
    /// Agent processes (every replica of every subscriber).
    pub agents: usize,
    /// nats-server nodes.
    pub nodes: usize,
    /// Provider simulators.
    pub providers: usize,
}

/// One fault, with its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// `kill -9` a relay replica; start it again when the fault ends.
    KillRelay { relay: usize },
    /// `kill -9` an agent process; start it again when the fault ends.
    KillAgent { agent: usize },
    /// `kill -9` a nats-server node; start it again on its store when the fault ends.
    KillNats { node: usize },
    /// `SIGSTOP` a nats-server node (a partition: sockets open, nothing answered); `SIGCONT`.
    PauseNats { node: usize },
    /// The provider's PULL API answers 503 `E0503` to everything.
    ProviderOutage { provider: usize },
    /// The provider is in maintenance: 503 `E0900` with `Retry-After`, token endpoint too.
    Maintenance { provider: usize },
    /// The provider's row threshold drops: more rows than `threshold` draw 400 `E0004`.
    E0004Storm { provider: usize, threshold: usize },
    /// Requests matching more than `above_rows` rows time out: a bare 503.
    Bare503Storm { provider: usize, above_rows: usize },
    /// The provider's DB clock jumps `ms` ahead of the agents' (it stays ahead).
    ClockAhead { provider: usize, ms: u64 },
}

impl Fault {
    /// The kind's name in the report's table.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::KillRelay { .. } => "kill -9 relay",
            Fault::KillAgent { .. } => "kill -9 agent",
            Fault::KillNats { .. } => "kill -9 nats-server",
            Fault::PauseNats { .. } => "SIGSTOP nats-server",
            Fault::ProviderOutage { .. } => "provider outage (E0503)",
            Fault::Maintenance { .. } => "maintenance (E0900)",
            Fault::E0004Storm { .. } => "E0004 storm",
            Fault::Bare503Storm { .. } => "bare-503 storm",
            Fault::ClockAhead { .. } => "provider clock ahead",
        }
    }

    /// Every kind's name, in table order.
    pub const KINDS: [&'static str; 9] = [
        "kill -9 relay",
        "kill -9 agent",
        "kill -9 nats-server",
        "SIGSTOP nats-server",
        "provider outage (E0503)",
        "maintenance (E0900)",
        "E0004 storm",
        "bare-503 storm",
        "provider clock ahead",
    ];

    /// What the fault acts on; two faults on the same thing never overlap.
    fn target(&self) -> (u8, usize) {
        match *self {
            Fault::KillRelay { relay } => (0, relay),
            Fault::KillAgent { agent } => (1, agent),
            // One key for all nodes: one faulty node at a time keeps the quorum.
            Fault::KillNats { .. } | Fault::PauseNats { .. } => (2, 0),
            Fault::ProviderOutage { provider } => (3, provider),
            Fault::Maintenance { provider } => (4, provider),
            Fault::E0004Storm { provider, .. } => (5, provider),
            Fault::Bare503Storm { provider, .. } => (6, provider),
            Fault::ClockAhead { provider, .. } => (7, provider),
        }
    }
}

/// A fault at `at` (from the start of the run), lasting `lasts` (zero: a step, nothing to undo).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Planned {
    /// Start, from the start of the run.
    #[serde(serialize_with = "secs")]
    pub at: Duration,
    /// How long until it is undone.
    #[serde(serialize_with = "secs")]
    pub lasts: Duration,
    /// What.
    pub fault: Fault,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// The schedule of a run of `run` with `seed`.
pub fn plan(seed: u64, run: Duration, shape: Shape) -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    let mut busy_until: BTreeMap<(u8, usize), Duration> = BTreeMap::new();
    let mut ahead_ms = vec![0u64; shape.providers];
    let mut at = FIRST_FAULT;
    loop {
        at += Duration::from_millis(rng.random_range(2_000..=8_000));
        if at + Duration::from_secs(1) >= run {
            break;
        }
        // A few tries to find a kind whose target is free now.
        for _ in 0..8 {
            let (fault, lasts_ms) = pick(&mut rng, shape);
            if let Fault::ClockAhead { provider, ms } = fault
                && ahead_ms[provider] + ms > MAX_CLOCK_AHEAD.as_millis() as u64
            {
                continue;
            }
            let key = fault.target();
            if busy_until.get(&key).is_some_and(|u| *u > at) {
                continue;
            }
            let lasts = Duration::from_millis(lasts_ms).min(run - at);
            if let Fault::ClockAhead { provider, ms } = fault {
                ahead_ms[provider] += ms;
            }
            busy_until.insert(key, at + lasts);
            out.push(Planned { at, lasts, fault });
            break;
        }
    }
    out
}

/// A random fault and how long it lasts, in ms.
fn pick(rng: &mut StdRng, s: Shape) -> (Fault, u64) {
    let provider = rng.random_range(0..s.providers);
    match rng.random_range(0..9) {
        0 => (
            Fault::KillRelay {
                relay: rng.random_range(0..s.relays),
            },
            rng.random_range(500..=5_000),
        ),
        1 => (
            Fault::KillAgent {
                agent: rng.random_range(0..s.agents),
            },
            rng.random_range(500..=5_000),
        ),
        2 => (
            Fault::KillNats {
                node: rng.random_range(0..s.nodes),
            },
            rng.random_range(1_000..=6_000),
        ),
        3 => (
            Fault::PauseNats {
                node: rng.random_range(0..s.nodes),
            },
            rng.random_range(1_000..=6_000),
        ),
        4 => (
            Fault::ProviderOutage { provider },
            rng.random_range(2_000..=12_000),
        ),
        5 => (
            Fault::Maintenance { provider },
            rng.random_range(2_000..=10_000),
        ),
        6 => (
            Fault::E0004Storm {
                provider,
                threshold: rng.random_range(8..=40),
            },
            rng.random_range(2_000..=10_000),
        ),
        7 => (
            Fault::Bare503Storm {
                provider,
                above_rows: rng.random_range(8..=40),
            },
            rng.random_range(2_000..=10_000),
        ),
        _ => (
            Fault::ClockAhead {
                provider,
                ms: rng.random_range(300..=4_000),
            },
            0,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: Shape = Shape {
        relays: 2,
        agents: 4,
        nodes: 3,
        providers: 2,
    };

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        let run = Duration::from_secs(600);
        let a = plan(7, run, SHAPE);
        assert_eq!(a, plan(7, run, SHAPE));
        assert_ne!(a, plan(8, run, SHAPE));
        // 2–8 s apart over 597 s: between 74 and 298 faults.
        assert!((74..=298).contains(&a.len()), "{} faults", a.len());
    }

    #[test]
    fn every_kind_occurs_faults_end_within_the_run_and_targets_never_overlap() {
        let run = Duration::from_secs(1800);
        let p = plan(19, run, SHAPE);
        for k in Fault::KINDS {
            assert!(p.iter().any(|f| f.fault.kind() == k), "no {k}");
        }
        for (i, a) in p.iter().enumerate() {
            assert!(a.at >= FIRST_FAULT && a.at + a.lasts <= run, "{a:?}");
            for b in &p[i + 1..] {
                if a.fault.target() == b.fault.target() {
                    assert!(a.at + a.lasts <= b.at, "{a:?} overlaps {b:?}");
                }
            }
        }
        for provider in 0..SHAPE.providers {
            let ahead: u64 = p
                .iter()
                .filter_map(|f| match f.fault {
                    Fault::ClockAhead { provider: q, ms } if q == provider => Some(ms),
                    _ => None,
                })
                .sum();
            assert!(ahead <= MAX_CLOCK_AHEAD.as_millis() as u64, "{ahead} ms");
        }
    }

    #[test]
    fn a_run_too_short_for_a_fault_has_none() {
        assert_eq!(plan(1, Duration::from_secs(5), SHAPE), vec![]);
    }
}
