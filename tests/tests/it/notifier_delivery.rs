//! The relay's notifier (エラー通知機能, データ連携WT 1.2.15) against real servers: alerts published on
//! `shirase.alert.>` reach a webhook (a real axum endpoint that fails once, so the retry is
//! exercised) and a command (`sh -c 'cat > file'`), grouped per key; a simulated provider
//! outage produces exactly one "check the operating status" e-mail and one recovery e-mail at a
//! real SMTP server (Python's aiosmtpd, installed into .tools/python by deploy/dev/test.sh), and
//! no notice is lost.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use shirase_relay::notifier::{
    CommandConfig, EmailConfig, Notifier, NotifierConfig, SmtpSecurity, WebhookConfig,
};
use shirase_tests::harness::{NatsServer, free_port, workspace_root};
use shirase_tests::provider_sim::FaultsUpdate;
use tokio_util::sync::CancellationToken;

use crate::agent_support::{Env, IFACE, RunningAgent, wait_notices_published, wait_until};
use crate::relay_support::{dev_config, provision};

fn base_config() -> NotifierConfig {
    NotifierConfig {
        enabled: true,
        group_window: Duration::from_secs(1),
        max_per_hour: 100,
        email: None,
        webhook: None,
        command: None,
    }
}

/// A webhook endpoint that answers 500 to its first request and records the rest.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>, Arc<Mutex<u32>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let calls: Arc<Mutex<u32>> = Arc::default();
    let (g, c) = (got.clone(), calls.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let (g, c) = (g.clone(), c.clone());
            async move {
                let n = {
                    let mut c = c.lock().unwrap();
                    *c += 1;
                    *c
                };
                if n == 1 {
                    return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                }
                g.lock().unwrap().push(v);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, got, calls)
}

fn command_files(dir: &Path) -> Vec<Value> {
    let mut v: Vec<Value> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| std::fs::read(e.unwrap().path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    v.sort_by_key(|x| x["code"].as_str().unwrap_or("").to_owned());
    v
}

async fn publish_alert(js: &async_nats::jetstream::Context, code: &str, provider: &str) {
    let a = json!({"severity": "critical", "component": "agent", "code": code, "message": format!("{code} on {provider}"),
                   "subscriber": "tax", "provider": provider, "time": jiff::Timestamp::now().to_string()});
    js.publish(
        "shirase.alert.critical.agent.tax",
        serde_json::to_vec(&a).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

#[tokio::test]
async fn webhook_and_command_receive_grouped_alerts_with_their_fields() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = NatsServer::start().unwrap();
    let js = provision(&dev_config(&server.url())).await;
    let (url, hooked, calls) = webhook().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = base_config();
    // Longer than the failed first POST and its retry (about 1 s), so the repeats fall inside.
    cfg.group_window = Duration::from_secs(3);
    cfg.webhook = Some(WebhookConfig {
        url,
        attempts: 3,
        timeout: Duration::from_secs(5),
    });
    cfg.command = Some(CommandConfig {
        program: "sh".into(),
        args: vec![
            "-c".into(),
            format!("cat > {}/alert-$$.json", dir.path().display()),
        ],
        timeout: Duration::from_secs(10),
    });
    let stop = CancellationToken::new();
    let task = tokio::spawn(Notifier::new(cfg).run(js.clone(), stop.clone()));
    // A new notifier consumer starts at new alerts (DeliverPolicy::New): wait until it exists.
    let alerts = js.get_stream("SHIRASE_ALERTS").await.unwrap();
    wait_until(10, "notifier consumer", || async {
        alerts
            .consumer_info(shirase_relay::notifier::CONSUMER)
            .await
            .is_ok()
    })
    .await;

    // Three alerts of one key and one of another.
    for _ in 0..3 {
        publish_alert(&js, "provider_unreachable", "001").await;
    }
    publish_alert(&js, "consumer_stalled", "010").await;

    // First of each key at once, then one summary of the two repeats after group_window.
    wait_until(20, "3 webhook deliveries", || async {
        hooked.lock().unwrap().len() >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let got = hooked.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "{got:#?}");
    assert_eq!(
        *calls.lock().unwrap(),
        4,
        "the first POST failed (500) and was retried"
    );
    let unreachable: Vec<&Value> = got
        .iter()
        .filter(|v| v["code"] == "provider_unreachable")
        .collect();
    assert_eq!(
        unreachable
            .iter()
            .map(|v| v["count"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2],
        "first alone, then the 2 repeats grouped"
    );
    let summary = unreachable[1];
    assert_eq!(
        (summary["severity"].as_str(), summary["component"].as_str()),
        (Some("critical"), Some("agent"))
    );
    assert_eq!(
        (summary["provider"].as_str(), summary["subscriber"].as_str()),
        (Some("001"), Some("tax"))
    );
    assert!(summary["first_seen"].as_str().unwrap() <= summary["last_seen"].as_str().unwrap());
    assert!(
        summary["runbook"]
            .as_str()
            .unwrap()
            .contains("operating status")
    );

    wait_until(10, "3 command runs", || async {
        command_files(dir.path()).len() >= 3
    })
    .await;
    let cmd = command_files(dir.path());
    assert_eq!(cmd.len(), 3);
    assert_eq!(
        cmd.iter()
            .filter(|v| v["code"] == "consumer_stalled")
            .count(),
        1
    );
    assert_eq!(
        cmd.iter()
            .map(|v| v["count"].as_u64().unwrap())
            .sum::<u64>(),
        4,
        "every alert accounted for"
    );

    stop.cancel();
    task.await.unwrap().unwrap();
}

/// Python's aiosmtpd on 127.0.0.1, writing every message into a maildir.
struct Smtp {
    child: std::process::Child,
    port: u16,
    maildir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Smtp {
    async fn start() -> Smtp {
        let py = workspace_root().join(".tools/python");
        assert!(
            py.join("aiosmtpd").is_dir(),
            "aiosmtpd is not installed: run deploy/dev/test.sh, or python3 -m pip install --target .tools/python aiosmtpd==1.4.6"
        );
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("mail");
        let port = free_port().unwrap();
        let child = std::process::Command::new("python3")
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(&maildir)
            .env("PYTHONPATH", &py)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_until(20, "aiosmtpd listening", || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        Smtp {
            child,
            port,
            maildir,
            _dir: dir,
        }
    }

    /// The Subject lines of the messages received so far.
    fn subjects(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.maildir.join("new")) else {
            return vec![];
        };
        rd.filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
            .filter_map(|m| {
                m.lines()
                    .find(|l| l.starts_with("Subject: "))
                    .map(|l| l["Subject: ".len()..].to_owned())
            })
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
#[ignore = "slow: a 2 s outage threshold, then the outage, recovery and catch-up"]
async fn an_outage_sends_one_operating_status_email_and_one_recovery_email_and_loses_nothing() {
    let env = Env::start(|_| {}).await;
    let smtp = Smtp::start().await;
    let mut cfg = base_config();
    cfg.group_window = Duration::from_secs(600);
    cfg.email = Some(EmailConfig {
        smtp_host: "127.0.0.1".into(),
        smtp_port: smtp.port,
        security: SmtpSecurity::None,
        username: None,
        password_file: None,
        ca_file: None,
        from: "shirase@example.lg.jp".into(),
        to: vec!["ops@example.lg.jp".into()],
    });
    let stop = CancellationToken::new();
    let notifier = tokio::spawn(Notifier::new(cfg).run(env.js.clone(), stop.clone()));

    env.sim
        .set_faults(FaultsUpdate {
            outage: Some(true),
            ..Default::default()
        })
        .unwrap();
    env.commit_updates(20);
    wait_notices_published(&env).await;
    let agent = RunningAgent::start(env.agent_config(
        "[retry]\nbase = \"100ms\"\nmax = \"400ms\"\n[outage]\nalert_after = \"2s\"\n",
        "",
    ));

    wait_until(30, "the operating-status e-mail", || async {
        !smtp.subjects().is_empty()
    })
    .await;
    // Keep the outage going well past the threshold: still exactly one e-mail.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let subjects = smtp.subjects();
    assert_eq!(subjects.len(), 1, "{subjects:?}");
    assert!(
        subjects[0].contains("critical")
            && subjects[0].contains("provider_unreachable")
            && subjects[0].contains("provider 001"),
        "{}",
        subjects[0]
    );

    env.sim
        .set_faults(FaultsUpdate {
            outage: Some(false),
            ..Default::default()
        })
        .unwrap();
    wait_until(60, "everything delivered after the outage", || async {
        env.unfinished().await == 0
            && env
                .expected_rows()
                .iter()
                .all(|k| env.sink_rows().contains_key(k))
    })
    .await;
    wait_until(20, "the recovery e-mail", || async {
        smtp.subjects().len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut subjects = smtp.subjects();
    subjects.sort();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(
        subjects
            .iter()
            .any(|s| s.contains("info") && s.contains("provider_recovered")),
        "{subjects:?}"
    );
    assert_eq!(
        agent
            .metrics
            .iface(&agent.metrics.dead_lettered, "001", IFACE),
        0,
        "an outage dead-letters nothing"
    );
    assert_eq!(
        agent.metrics.iface(&agent.metrics.acked, "001", IFACE),
        20,
        "no notice lost"
    );

    agent.stop().await;
    stop.cancel();
    notifier.await.unwrap().unwrap();
}
