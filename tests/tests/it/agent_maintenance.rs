//! Agent self-enforcement of maintenance windows: with the provider's
//! calendar saying "in maintenance now", the agent sends no PULL request and no token request
//! (the simulator's request log is the witness), fetches nothing from its consumer (no
//! delivery is spent), and delivers everything once the window ends, with no dead letter.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use shirase_subscriber_kit::Agent;
use shirase_subscriber_kit::maintenance::{Clock, OffsetClock};

use crate::agent_support::*;

const FAST_RETRY: &str = "[retry]\nbase = \"100ms\"\nmax = \"500ms\"\n";

#[tokio::test]
async fn no_request_inside_the_calendar_window_and_everything_after_it() {
    let env = Env::start(|_| {}).await;
    env.commit_updates(30);
    wait_notices_published(&env).await;
    // Tuesday 2026-05-12 02:59:57 JST: inside Monday's baseline window 24:00-27:00, which ends
    // 3 s from now (real time, the clock runs at real speed from there).
    let clock = OffsetClock::starting_at("2026-05-12T02:59:57+09:00".parse().unwrap());
    let window_end: Timestamp = "2026-05-12T03:00+09:00".parse().unwrap();
    let end_real = Timestamp::now() + window_end.duration_since(clock.now());
    let cfg = env.agent_config(
        FAST_RETRY,
        "enforce_maintenance = true\n[providers.maintenance]\nweekday = [\"24:00-27:00\"]\n",
    );
    let agent = RunningAgent::start_agent(Agent::new(cfg).unwrap().with_clock(Arc::new(clock)));

    // Inside the window: nothing reaches the provider and nothing is fetched.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert!(
        Timestamp::now() < end_real,
        "the test checked inside the window"
    );
    assert_eq!(
        env.sim.counters().requests,
        0,
        "no PULL and no token request inside the window"
    );
    let mut c: async_nats::jetstream::consumer::PullConsumer = env
        .js
        .get_consumer_from_stream("tax_001", shirase_proto::subject::NOTICE_STREAM)
        .await
        .unwrap();
    let info = c.info().await.unwrap();
    assert_eq!(
        (info.num_pending, info.num_ack_pending),
        (30, 0),
        "no notice fetched: no delivery spent"
    );
    assert_eq!(
        agent
            .metrics
            .in_maintenance
            .get_or_create(&shirase_subscriber_kit::metrics::ProviderLabels {
                provider: "001".into()
            })
            .get(),
        1
    );

    // After the window: everything arrives.
    wait_until(30, "delivered after the window", || async {
        env.unfinished().await == 0
            && env
                .expected_rows()
                .iter()
                .all(|k| env.sink_rows().contains_key(k))
    })
    .await;
    let requests = env.sim.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        let at: Timestamp = r.at.parse().unwrap();
        // 50 ms for the two clocks read a few instructions apart.
        assert!(
            at >= end_real - SignedDuration::from_millis(50),
            "request {} {} at {at}, window ended {end_real}",
            r.method,
            r.path
        );
    }
    assert_eq!(
        agent
            .metrics
            .iface(&agent.metrics.dead_lettered, "001", IFACE),
        0
    );
    assert_eq!(agent.metrics.iface(&agent.metrics.acked, "001", IFACE), 30);
    agent.stop().await;
}
