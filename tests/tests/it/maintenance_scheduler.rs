//! The relay's maintenance scheduler against a real nats-server: consumers
//! are paused with JetStream consumer pause during a window and resumed by the server at the
//! window's end plus jitter; a restart mid-window re-applies the pause; with two schedulers only
//! the lease holder acts; an agent against provider-sim sends no PULL request while paused and
//! delivers every notice after the window.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream::Stream;
use jiff::{SignedDuration, Timestamp};
use shirase_proto::subject::NOTICE_STREAM;
use shirase_relay::metrics::{Metrics, ProviderLabel};
use shirase_relay::scheduler::{Clock, OffsetClock, Scheduler, TickOutcome};
use shirase_tests::harness::NatsServer;
use tokio_util::sync::CancellationToken;

use crate::agent_support::{Env, IFACE, RunningAgent, wait_notices_published, wait_until};
use crate::relay_support::{dev_config, provision};

/// Monday 2026-05-11's baseline window 24:00-27:00 ends at Tuesday 03:00 JST.
fn window_end() -> Timestamp {
    "2026-05-12T03:00+09:00".parse().unwrap()
}

/// A clock `secs` before the window's end, and that end in real time.
fn clock_before_end(secs: i64) -> (OffsetClock, Timestamp) {
    let clock = OffsetClock::starting_at(window_end() - SignedDuration::from_secs(secs));
    let end_real = Timestamp::now() + window_end().duration_since(clock.now());
    (clock, end_real)
}

fn consumer_names(config: &shirase_relay::Config) -> Vec<String> {
    shirase_relay::topology::desired(config)
        .consumers
        .iter()
        .map(|c| c.config.durable_name.clone().unwrap())
        .collect()
}

/// (paused, pause_until) of a consumer.
async fn pause_state(stream: &Stream, name: &str) -> (bool, Option<Timestamp>) {
    let info = stream.consumer_info(name).await.unwrap();
    let until = info
        .config
        .pause_until
        .map(|d| Timestamp::from_nanosecond(d.unix_timestamp_nanos()).unwrap());
    (info.paused, until)
}

fn pause_requests(m: &Metrics, provider: &str) -> u64 {
    m.maintenance_pause_requests
        .get_or_create(&ProviderLabel {
            provider: provider.into(),
        })
        .get()
}

#[tokio::test]
async fn consumers_are_paused_inside_the_window_and_resume_after_it() {
    let server = NatsServer::start().unwrap();
    let mut config = dev_config(&server.url());
    config.maintenance.resume_jitter_max = Duration::from_secs(1);
    let js = provision(&config).await;
    let names = consumer_names(&config);
    assert!(
        names.len() >= 3,
        "dev topology has consumers of both providers: {names:?}"
    );
    let stream = js.get_stream(NOTICE_STREAM).await.unwrap();

    // Outside every window (Monday noon JST): nothing to do.
    let metrics = Arc::new(Metrics::new());
    let noon = Scheduler::without_lease(&config, js.clone(), metrics.clone()).with_clock(Arc::new(
        OffsetClock::starting_at("2026-05-11T12:00+09:00".parse().unwrap()),
    ));
    assert_eq!(
        noon.tick().await.unwrap(),
        TickOutcome::Leader {
            pause_requests: 0,
            in_maintenance: vec![]
        }
    );
    for n in &names {
        assert!(
            !pause_state(&stream, n).await.0,
            "{n} not paused outside the window"
        );
    }

    // 3 s before the window ends: every consumer paused until end + jitter (< 1 s).
    let (clock, end_real) = clock_before_end(3);
    let s =
        Scheduler::without_lease(&config, js.clone(), metrics.clone()).with_clock(Arc::new(clock));
    let TickOutcome::Leader {
        pause_requests: sent,
        in_maintenance,
    } = s.tick().await.unwrap()
    else {
        panic!("no lease: leader")
    };
    assert_eq!(sent, names.len());
    assert_eq!(
        in_maintenance.len(),
        2,
        "both providers follow the baseline calendar"
    );
    for n in &names {
        let (paused, until) = pause_state(&stream, n).await;
        assert!(paused, "{n} paused during the window");
        let until = until.unwrap();
        assert!(
            until >= end_real - SignedDuration::from_millis(50)
                && until < end_real + SignedDuration::from_millis(1_050),
            "{n}: pause_until {until}, window ends {end_real}"
        );
    }
    // Idempotent: the next tick sends nothing.
    assert!(matches!(
        s.tick().await.unwrap(),
        TickOutcome::Leader {
            pause_requests: 0,
            ..
        }
    ));
    assert_eq!(
        pause_requests(&metrics, "001") + pause_requests(&metrics, "010"),
        names.len() as u64
    );

    // A restart mid-window (a fresh scheduler, no memory) re-applies a pause someone lifted.
    stream.resume_consumer(&names[0]).await.unwrap();
    assert!(!pause_state(&stream, &names[0]).await.0);
    let (clock, _) = clock_before_end(2);
    let restarted = Scheduler::without_lease(&config, js.clone(), Arc::new(Metrics::new()))
        .with_clock(Arc::new(clock));
    assert!(matches!(
        restarted.tick().await.unwrap(),
        TickOutcome::Leader {
            pause_requests: 1,
            ..
        }
    ));
    assert!(
        pause_state(&stream, &names[0]).await.0,
        "paused again after the restart"
    );

    // After end + jitter the server resumes every consumer by itself.
    wait_until(10, "every consumer resumed", || async {
        for n in &names {
            if pause_state(&stream, n).await.0 {
                return false;
            }
        }
        true
    })
    .await;
    assert!(
        Timestamp::now() >= end_real,
        "resumed only after the window"
    );
}

#[tokio::test]
async fn only_the_lease_holder_pauses_and_another_takes_over_when_it_stops() {
    let server = NatsServer::start().unwrap();
    let mut config = dev_config(&server.url());
    config.maintenance.lease_ttl = Duration::from_secs(2);
    config.maintenance.resume_jitter_max = Duration::ZERO;
    let js = provision(&config).await;
    let (ma, mb) = (Arc::new(Metrics::new()), Arc::new(Metrics::new()));
    // A 10 s window remains: long enough for the takeover.
    let (clock, _) = clock_before_end(10);
    let clock: Arc<dyn Clock> = Arc::new(clock);
    let a = Scheduler::new(&config, js.clone(), ma.clone(), "relay-a".into())
        .await
        .unwrap()
        .with_clock(clock.clone());
    let b = Scheduler::new(&config, js.clone(), mb.clone(), "relay-b".into())
        .await
        .unwrap()
        .with_clock(clock.clone());

    assert!(matches!(
        a.tick().await.unwrap(),
        TickOutcome::Leader { .. }
    ));
    assert_eq!(b.tick().await.unwrap(), TickOutcome::Follower);
    assert!(
        matches!(
            a.tick().await.unwrap(),
            TickOutcome::Leader {
                pause_requests: 0,
                ..
            }
        ),
        "renewal keeps the lease"
    );
    assert_eq!(b.tick().await.unwrap(), TickOutcome::Follower);
    assert_eq!(
        (ma.maintenance_leader.get(), mb.maintenance_leader.get()),
        (1, 0)
    );
    assert!(pause_requests(&ma, "001") > 0);
    assert_eq!(
        pause_requests(&mb, "001") + pause_requests(&mb, "010"),
        0,
        "the follower sent no pause request"
    );

    // The holder stops renewing (crashed): its lease expires after lease_ttl, then B acts.
    let kv = js.get_key_value("shirase_leases").await.unwrap();
    assert_eq!(
        kv.get("scheduler").await.unwrap().unwrap().as_ref(),
        b"relay-a"
    );
    wait_until(10, "B takes the lease after A's expires", || async {
        b.tick().await.unwrap() != TickOutcome::Follower
    })
    .await;
    assert_eq!(
        kv.get("scheduler").await.unwrap().unwrap().as_ref(),
        b"relay-b"
    );
    assert_eq!(
        a.tick().await.unwrap(),
        TickOutcome::Follower,
        "A, back, finds B holding the lease"
    );
    assert_eq!(ma.maintenance_leader.get(), 0);

    // A clean stop releases the lease at once.
    let stop = CancellationToken::new();
    stop.cancel();
    b.run(Duration::from_millis(100), stop).await;
    assert!(
        matches!(a.tick().await.unwrap(), TickOutcome::Leader { .. }),
        "released lease taken without waiting for the TTL"
    );
}

#[tokio::test]
#[ignore = "slow: runs a 6 s maintenance window with an agent"]
async fn agent_sends_no_pull_while_paused_and_delivers_everything_after_the_window() {
    let env = Env::start(|_| {}).await;
    let mut config = dev_config(&env.nats.url());
    config.maintenance.resume_jitter_max = Duration::from_secs(1);
    // Notices committed before the window.
    env.commit_updates(20);
    wait_notices_published(&env).await;

    let (clock, end_real) = clock_before_end(6);
    let stop = CancellationToken::new();
    let sched = Scheduler::without_lease(&config, env.js.clone(), Arc::new(Metrics::new()))
        .with_clock(Arc::new(clock));
    let sched_task = tokio::spawn(sched.run(Duration::from_millis(200), stop.clone()));
    let stream: Stream = env.js.get_stream(NOTICE_STREAM).await.unwrap();
    wait_until(5, "tax_001 paused", || async {
        pause_state(&stream, "tax_001").await.0
    })
    .await;
    let until = pause_state(&stream, "tax_001").await.1.unwrap();

    let agent = RunningAgent::start(env.agent_config("", ""));
    // Notices published during the window.
    env.commit_updates(20);
    wait_notices_published(&env).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(Timestamp::now() < end_real, "checked inside the window");
    let pulls = |reqs: &[shirase_tests::provider_sim::RequestLogEntry]| {
        reqs.iter().filter(|r| !r.path.contains("token")).count()
    };
    assert_eq!(
        pulls(&env.sim.requests()),
        0,
        "no PULL request while the consumer is paused"
    );
    assert_eq!(
        env.unfinished().await,
        40,
        "all 40 notices wait in JetStream"
    );

    wait_until(30, "everything delivered after the window", || async {
        env.unfinished().await == 0
            && env
                .expected_rows()
                .iter()
                .all(|k| env.sink_rows().contains_key(k))
    })
    .await;
    let reqs = env.sim.requests();
    assert!(pulls(&reqs) > 0);
    for r in reqs.iter().filter(|r| !r.path.contains("token")) {
        let at: Timestamp = r.at.parse().unwrap();
        assert!(
            at >= until - SignedDuration::from_millis(50),
            "PULL {} at {at}, paused until {until}",
            r.path
        );
    }
    assert_eq!(agent.metrics.iface(&agent.metrics.acked, "001", IFACE), 40);
    assert_eq!(
        agent
            .metrics
            .iface(&agent.metrics.dead_lettered, "001", IFACE),
        0
    );
    // The backlog drained within the provider's concurrency limit (the default, 2): the
    // simulator's request log (arrival + duration of each PULL) is the witness.
    let peak = shirase_tests::bench::peak_in_flight(&env.sim);
    assert!(
        (1..=2).contains(&peak),
        "peak concurrent PULL requests {peak}; configured concurrency is 2"
    );
    agent.stop().await;
    stop.cancel();
    sched_task.await.unwrap();
}
