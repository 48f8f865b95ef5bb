//! The HTTP sink against a real endpoint: 2xx accepts the batch; a 500 means the notices are
//! nak'ed and redelivered; nothing is lost.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use crate::agent_support::*;

#[tokio::test]
async fn http_sink_500_is_retried_and_nothing_is_lost() {
    let env = Env::start(|_| {}).await;
    // The consumer system's import endpoint: refuses the first two batches, then accepts.
    let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let app = {
        let (bodies, calls) = (bodies.clone(), calls.clone());
        axum::Router::new().route(
            "/import",
            axum::routing::post(move |body: String| {
                let (bodies, calls) = (bodies.clone(), calls.clone());
                async move {
                    if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    bodies.lock().unwrap().push(body);
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        )
    };
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/import", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });

    env.commit_updates(40);
    wait_notices_published(&env).await;
    let toml = env
        .agent_toml("[retry]\nbase = \"100ms\"\nmax = \"300ms\"\n", "")
        .replace(
            &format!("kind = \"file\"\ndir = \"{}\"", env.sink_dir().display()),
            &format!("kind = \"http\"\nurl = \"{url}\"\ninsecure_http = true"),
        );
    let agent = RunningAgent::start(shirase_subscriber_kit::Config::from_toml_str(&toml).unwrap());
    let received = || -> BTreeSet<(String, u64)> {
        bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| {
                b.lines()
                    .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                    .collect::<Vec<_>>()
            })
            .filter(|l| l["kind"] == "row")
            .map(|l| {
                (
                    l["row"]["atena_no"].as_str().unwrap().to_owned(),
                    l["row"]["history_no"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    wait_until(30, "every change accepted by the endpoint", || async {
        env.unfinished().await == 0 && env.expected_rows().is_subset(&received())
    })
    .await;
    assert!(
        calls.load(std::sync::atomic::Ordering::SeqCst) >= 3,
        "two refusals, then acceptance"
    );
    assert!(
        agent.metrics.iface(&agent.metrics.naked, "001", IFACE) >= 40,
        "the refused batch was nak'ed, not acked"
    );
    assert_eq!(agent.metrics.iface(&agent.metrics.acked, "001", IFACE), 40);
    assert_eq!(
        agent
            .metrics
            .iface(&agent.metrics.dead_lettered, "001", IFACE),
        0
    );
    agent.stop().await;
}
