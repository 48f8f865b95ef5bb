//! Late commits and resyncs with a real nats-server, provider-sim and the agent in-process.
//!
//! A long transaction's row carries the timestamp of the transaction's start but becomes
//! visible only at its commit, and its notice is sent after the commit: by then the agent's
//! checkpoint is usually past that timestamp. The notice itself asks for the row (JetStream
//! stored it after the pull behind the checkpoint started): the agent pulls exactly that row
//! (a narrow pull) at once, however late the commit, while ordinary changes keep coming, and
//! without blind re-reads below its checkpoint. After an operator's resync the agent re-reads
//! from the rewound checkpoint at once, without waiting for a notice or the hourly sweep.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use shirase_proto::{AtenaNo, ChangeKind, OffsetTimestamp};
use shirase_tests::provider_sim::ChangeSpec;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::agent_support::*;
use crate::operator_support::Ops;
use crate::relay_support::{TestRelay, dev_config};

/// Short batches; no scheduled sweep (so every pull in the log is notice-triggered, unless a
/// test triggers a sweep on purpose).
const CFG: &str = "[batch]\nmax_wait = \"100ms\"\n[sweep]\ninterval = \"0s\"\n";

fn ts(s: &str) -> Timestamp {
    s.parse::<OffsetTimestamp>().unwrap().instant()
}

fn param(query: &str, name: &str) -> Option<Timestamp> {
    let v = query
        .split('&')
        .find_map(|p| p.strip_prefix(&format!("{name}=")))?;
    v.replace("%3A", ":").replace("%2B", "+").parse().ok()
}

/// The window requests `[updated_from, updated_to)` of the data endpoint, from entry `since` of
/// the request log on.
fn windows(env: &Env, since: usize) -> Vec<(Timestamp, Timestamp)> {
    env.sim.requests()[since..]
        .iter()
        .filter(|r| r.path == format!("/api/{IFACE}"))
        .filter_map(|r| {
            let q = r.query.as_deref()?;
            Some((param(q, "updated_from")?, param(q, "updated_to")?))
        })
        .collect()
}

/// Ordinary changes, one every 100 ms on addressees other than `spare`, until `stop`.
fn ordinary_traffic(env: &Env, spare: Vec<AtenaNo>, stop: CancellationToken) {
    let sim = env.sim.clone();
    let pool: Vec<AtenaNo> = sim
        .atena_numbers()
        .into_iter()
        .filter(|a| !spare.contains(a))
        .take(200)
        .collect();
    tokio::spawn(async move {
        let mut i = 0usize;
        while !stop.is_cancelled() {
            sim.commit_changes(
                ChangeSpec::new(1)
                    .interface(iface())
                    .kind(ChangeKind::Update)
                    .atena_no(pool[i % pool.len()]),
            )
            .unwrap();
            i += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// A millisecond before the oldest change the simulator made.
fn before_first_change(env: &Env) -> Timestamp {
    env.sim
        .changes()
        .iter()
        .map(|c| ts(&c.updated_at))
        .min()
        .unwrap()
        - SignedDuration::from_millis(1)
}

/// `n` updates of the test interface, their notices published and every one acked.
async fn first_round(env: &Env, n: usize) {
    env.commit_updates(n);
    wait_notices_published(env).await;
    wait_until(30, "first round acked", || async {
        env.unfinished().await == 0
    })
    .await;
}

async fn in_sink_within(env: &Env, key: &(String, u64), limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if env.sink_rows().contains_key(key) {
            return Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test]
async fn late_commits_of_5_and_30_minutes_reach_the_sink_at_once_without_blind_rereads() {
    let env = Env::start(|_| {}).await;
    let agent = RunningAgent::start(env.agent_config(CFG, ""));
    // A first round: the first pull (no checkpoint yet) reads the overlap below its oldest
    // notice; from then on windows chain from the checkpoint.
    first_round(&env, 20).await;
    let baseline = env.checkpoint().await.expect("a checkpoint");
    let since = env.sim.requests().len();

    let people = env.sim.atena_numbers();
    let late_people = vec![people[400], people[401]];
    let traffic = CancellationToken::new();
    ordinary_traffic(&env, late_people.clone(), traffic.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut late_keys = Vec::new();
    let mut late_times = Vec::new();
    for (minutes, who) in [(5u64, late_people[0]), (30, late_people[1])] {
        let cp = env.checkpoint().await.unwrap();
        let committed = Instant::now();
        let c = env
            .sim
            .commit_changes(
                ChangeSpec::new(1)
                    .interface(iface())
                    .kind(ChangeKind::Update)
                    .atena_no(who)
                    .late_by(Duration::from_secs(minutes * 60)),
            )
            .unwrap()
            .remove(0);
        let at = ts(&c.updated_at);
        assert!(
            at < cp,
            "the late row ({at}) lies below the checkpoint ({cp})"
        );
        let key = (c.atena_no.to_string(), u64::from(c.history_no));
        // The notice is published after the commit, so this bounds the delay after it.
        let delay = in_sink_within(&env, &key, Duration::from_secs(10)).await;
        let elapsed = committed.elapsed();
        println!("late commit of {minutes} min: row in the sink {delay:?} after its commit");
        let delay = delay.unwrap_or_else(|| {
            panic!("the row committed {minutes} min late never reached the sink ({elapsed:?})")
        });
        assert!(
            delay <= Duration::from_secs(2),
            "the row committed {minutes} min late reached the sink {delay:?} after its notice (limit 2 s)"
        );
        late_keys.push(key);
        late_times.push(at);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    traffic.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    wait_notices_published(&env).await;
    wait_until(30, "everything acked", || async {
        env.unfinished().await == 0
    })
    .await;

    let got: BTreeSet<(String, u64)> = env.sink_rows().into_keys().collect();
    let expected = env.expected_rows();
    let missing: Vec<_> = expected.difference(&got).collect();
    assert!(missing.is_empty(), "never reached the sink: {missing:?}");
    assert!(late_keys.iter().all(|k| got.contains(k)));

    // No blind re-read: every window pull after the first round starts at or above the
    // checkpoint of then (less a second), except the narrow ones around the late rows.
    let floor = baseline - SignedDuration::from_secs(1);
    let w = windows(&env, since);
    assert!(w.len() >= 10, "ordinary traffic kept pulling: {w:?}");
    for &(from, to) in &w {
        let narrow = late_times.iter().any(|t| from <= *t && *t < to)
            && to.duration_since(from) <= SignedDuration::from_millis(1);
        assert!(
            from >= floor || narrow,
            "window [{from}, {to}) re-reads below the checkpoint {baseline}"
        );
    }
    let narrow = w.iter().filter(|(f, _)| *f < floor).count();
    assert_eq!(narrow, 2, "one narrow pull per late row: {w:?}");
    agent.stop().await;
}

#[tokio::test]
async fn a_late_commit_is_pulled_by_its_keys_when_the_interface_allows_keyed_pulls() {
    let env = Env::start(|_| {}).await;
    let toml = env.agent_toml(CFG, "").replace(
        "version = \"1.0\"\n",
        "version = \"1.0\"\nkeyed_pull_max_keys = 10\n",
    );
    // A first round of more keys than keyed_pull_max_keys, all in the agent's first batch: a
    // window pull, which stores a checkpoint (keyed pulls never do).
    env.commit_updates(20);
    wait_notices_published(&env).await;
    let agent = RunningAgent::start(shirase_subscriber_kit::Config::from_toml_str(&toml).unwrap());
    wait_until(30, "first round acked", || async {
        env.unfinished().await == 0
    })
    .await;
    assert!(env.checkpoint().await.is_some());
    let since = env.sim.requests().len();
    let who = env.sim.atena_numbers()[402];
    let committed = Instant::now();
    let c = env
        .sim
        .commit_changes(
            ChangeSpec::new(1)
                .interface(iface())
                .kind(ChangeKind::Update)
                .atena_no(who)
                .late_by(Duration::from_secs(600)),
        )
        .unwrap()
        .remove(0);
    let key = (c.atena_no.to_string(), u64::from(c.history_no));
    let delay = in_sink_within(&env, &key, Duration::from_secs(10)).await;
    println!("late commit of 10 min, keyed: row in the sink {delay:?} after its commit");
    assert!(
        delay.is_some_and(|d| d <= Duration::from_secs(2)),
        "{delay:?} ({:?})",
        committed.elapsed()
    );
    let asked: Vec<String> = env.sim.requests()[since..]
        .iter()
        .filter(|r| r.path == format!("/api/{IFACE}"))
        .filter_map(|r| r.query.clone())
        .collect();
    assert!(
        asked
            .iter()
            .any(|q| q.contains(&format!("atena_no={who}")) && !q.contains("updated_to")),
        "a keyed narrow pull: {asked:?}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn after_a_resync_the_rows_are_back_in_the_sink_within_5_seconds_without_a_notice() {
    let env = Env::start(|_| {}).await;
    let relay = TestRelay::start(dev_config(&env.nats.url())).await;
    let ops = Ops::operator(&relay.base);
    let agent = RunningAgent::start(env.agent_config(CFG, ""));
    first_round(&env, 10).await;
    let cp = env.checkpoint().await.expect("a checkpoint");
    let before = env.sink_rows();
    let changed = env.expected_rows();
    assert!(changed.iter().all(|k| before.contains_key(k)));

    // Rewind to before the round; no change and no notice follows.
    ops.resync("tax", IFACE, before_first_change(&env)).await;
    let rewound = Instant::now();
    let mut back = None;
    while rewound.elapsed() < Duration::from_secs(10) {
        let rows = env.sink_rows();
        if changed.iter().all(|k| rows.get(k) > before.get(k)) {
            back = Some(rewound.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("resync: rows back in the sink {back:?} after the rewind");
    let back = back.expect("the rewound rows were re-read");
    assert!(
        back <= Duration::from_secs(5),
        "rows back after {back:?} (limit 5 s)"
    );
    assert_eq!(env.sim.changes().len(), 10, "no new change");
    wait_until(10, "the checkpoint is back where it was", || async {
        env.checkpoint().await == Some(cp)
    })
    .await;
    agent.stop().await;
    relay.stop().await;
}

#[tokio::test]
async fn a_second_resync_re_reads_a_late_row_the_previous_sweep_could_not_have_seen() {
    // No scheduled sweep; overlap 2 s. The resync's own sweep is the "previous sweep" of the
    // second resync's sweep; between them a row commits late (its timestamp lies before that
    // sweep's start less the overlap, above the rewind point). The second resync must deliver
    // it again: a sweep never starts above the checkpoint it was rewound to.
    let env = Env::start(|_| {}).await;
    let relay = TestRelay::start(dev_config(&env.nats.url())).await;
    let ops = Ops::operator(&relay.base);
    let agent =
        RunningAgent::start(env.agent_config(&format!("{CFG}[pull]\noverlap = \"2s\"\n"), ""));
    first_round(&env, 5).await;
    let rewind_to = before_first_change(&env);
    let resync = || ops.resync("tax", IFACE, rewind_to);
    let sweeps = || agent.metrics.iface(&agent.metrics.sweeps, "001", IFACE);
    // The first resync's sweep starts at least 3 s after the rewind point.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let first_sweep_after = Timestamp::now();
    resync().await;
    wait_until(10, "the first resync's sweep", || async { sweeps() >= 1 }).await;
    wait_until(10, "its checkpoint stored", || async {
        env.checkpoint().await > Some(rewind_to)
    })
    .await;

    // A row committed now whose timestamp lies 1 s above the rewind point: more than the
    // overlap before the first resync's sweep started.
    let late_ts = rewind_to + SignedDuration::from_secs(1);
    assert!(late_ts < first_sweep_after - SignedDuration::from_secs(2));
    let late_by = Timestamp::now().duration_since(late_ts).unsigned_abs();
    let late = env
        .sim
        .commit_changes(
            ChangeSpec::new(1)
                .interface(iface())
                .kind(ChangeKind::Update)
                .late_by(late_by),
        )
        .unwrap()
        .remove(0);
    let key = (late.atena_no.to_string(), u64::from(late.history_no));
    wait_notices_published(&env).await;
    wait_until(10, "the late row delivered by its notice", || async {
        env.sink_rows().contains_key(&key)
    })
    .await;
    wait_until(10, "its notice acked", || async {
        env.unfinished().await == 0
    })
    .await;
    let before = env.sink_rows()[&key];

    resync().await;
    wait_until(10, "the second resync's sweep", || async { sweeps() >= 2 }).await;
    wait_until(10, "the late row delivered again", || async {
        env.sink_rows()[&key] > before
    })
    .await;
    agent.stop().await;
    relay.stop().await;
}
