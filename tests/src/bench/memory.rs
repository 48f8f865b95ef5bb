//! `memory`: RSS of the agent and of the relay, each its own release binary as a child process,
//! at idle, under 2,000 notices/s, and with a backlog (100,000 by default, 1,000,000 with
//! `--full`) stored while the consumer is paused, then while it drains after resume.
//!
//! Setup: one nats-server provisioned by the relay's provisioning, `shirase-relay serve` and
//! `shirase-agent` as children (generated configs), the provider-sim in-process with the
//! benchmark POSTing the notices of the changes it commits. The reference is nats-server's own
//! RSS at the same moments.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::{
    AgentProcess, Env, EnvOptions, Options, Report, commit_updates, notice_of, round, rss_mib,
};
use crate::harness;

struct RelayProcess {
    child: Child,
}

impl RelayProcess {
    async fn start(env: &Env, port: u16) -> anyhow::Result<(Self, String)> {
        let bin = super::relay_bin()?;
        let toml = super::relay_toml(&env.servers.urls(), &env.ifaces, 1, 120, false)
            .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
        let cfg = env.dir.path().join("relay.toml");
        std::fs::write(&cfg, toml)?;
        let log = std::fs::File::create(env.dir.path().join("relay.log"))?;
        let child = Command::new(&bin)
            .args(["serve", "--config"])
            .arg(&cfg)
            .env("SHIRASE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let me = Self { child };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = env.http.get(format!("{url}/readyz")).send().await
                && r.status().as_u16() == 200
            {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "shirase-relay not ready within 30 s: {}",
                    std::fs::read_to_string(env.dir.path().join("relay.log")).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok((me, url))
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nats_pid(env: &Env) -> Option<u32> {
    // The harness does not expose the pid: find the nats-server listening on our port.
    let port = match &env.servers {
        super::Servers::Single(s) => s.port(),
        super::Servers::Cluster(_) => return None,
    };
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("nats-server") && cmd.contains(&port.to_string()) {
            return Some(pid);
        }
    }
    None
}

fn sample(phase: &str, agent: u32, relay: u32, nats: Option<u32>, extra: &str) -> Value {
    let a = rss_mib(agent);
    let r = rss_mib(relay);
    let n = nats.and_then(rss_mib);
    json!({
        "phase": phase,
        "agent_rss_mib": a.map(|x| x.0), "agent_peak_mib": a.map(|x| x.1),
        "relay_rss_mib": r.map(|x| x.0), "relay_peak_mib": r.map(|x| x.1),
        "nats_server_rss_mib": n.map(|x| x.0),
        "note": extra,
    })
}

/// Run the scenario.
pub async fn run(o: Options) -> anyhow::Result<Report> {
    let backlog: usize = if o.full { 1_000_000 } else { 100_000 };
    let mut env = Env::start(
        &EnvOptions {
            population: 200_000,
            ack_wait_secs: 120,
            ..EnvOptions::default()
        },
        false,
    )
    .await?;
    let (relay, relay_url) = RelayProcess::start(&env, harness::free_port()?).await?;
    env.relay_url = relay_url;
    let port = harness::free_port()?;
    let toml = env.agent_toml(
        1000,
        1000,
        "rate_per_sec = 50.0\nconcurrency = 2",
        &format!("127.0.0.1:{port}"),
    );
    let agent = AgentProcess::start(env.dir.path(), &toml, port).await?;
    let (apid, rpid, npid) = (agent.pid(), relay.child.id(), nats_pid(&env));
    let mut rows = Vec::new();
    tokio::time::sleep(Duration::from_secs(2)).await;
    rows.push(sample("idle", apid, rpid, npid, "2 s after start"));

    // 2,000 notices/s for 10 s, paced like `latency` (10 ms ticks).
    let iface = env.ifaces[0];
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut posts = tokio::task::JoinSet::new();
    let env_http = env.http.clone();
    let url = Arc::new(env.relay_url.clone());
    let mut peak_a = 0.0f64;
    let mut peak_r = 0.0f64;
    for k in 0..1000 {
        tick.tick().await;
        let changes = commit_updates(&env.sim, iface, 20)?;
        let notices = changes
            .iter()
            .map(notice_of)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (http, url) = (env_http.clone(), url.clone());
        posts.spawn(async move { super::post_notices(&http, &url, &notices).await });
        if k % 10 == 0 {
            peak_a = peak_a.max(rss_mib(apid).map_or(0.0, |x| x.0));
            peak_r = peak_r.max(rss_mib(rpid).map_or(0.0, |x| x.0));
        }
    }
    while let Some(r) = posts.join_next().await {
        r??;
    }
    let mut s = sample(
        "2,000 notices/s for 10 s",
        apid,
        rpid,
        npid,
        "RSS at the end of the load",
    );
    s["agent_rss_mib"] = json!(peak_a.max(s["agent_rss_mib"].as_f64().unwrap_or(0.0)));
    s["relay_rss_mib"] = json!(peak_r.max(s["relay_rss_mib"].as_f64().unwrap_or(0.0)));
    s["note"] = json!("highest RSS sampled every 100 ms during the load");
    rows.push(s);
    let deadline = Instant::now() + Duration::from_secs(120);
    while env.unfinished().await? > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Backlog stored while the consumer is paused.
    let stream = env
        .js
        .get_stream(shirase_proto::subject::NOTICE_STREAM)
        .await?;
    let until_ns = jiff::Timestamp::now().as_nanosecond() + 3_600_000_000_000i128;
    stream
        .pause_consumer(
            "tax_001",
            async_nats::datetime::from_nanos(until_ns).map_err(|e| anyhow::anyhow!("{e}"))?,
        )
        .await?;
    let mut left = backlog;
    while left > 0 {
        let n = left.min(10_000);
        let changes = commit_updates(&env.sim, iface, n)?;
        let notices = changes
            .iter()
            .map(notice_of)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut set = tokio::task::JoinSet::new();
        for chunk in notices.chunks(1000) {
            let (http, url, chunk) = (env_http.clone(), url.clone(), chunk.to_vec());
            set.spawn(async move { super::post_notices(&http, &url, &chunk).await });
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
        left -= n;
    }
    rows.push(sample(
        &format!("backlog of {backlog} stored, consumer paused"),
        apid,
        rpid,
        npid,
        "relay POSTs of 1000, 10 at a time",
    ));
    let t0 = Instant::now();
    stream.resume_consumer("tax_001").await?;
    let mut peak_a = 0.0f64;
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        peak_a = peak_a.max(rss_mib(apid).map_or(0.0, |x| x.0));
        if env.unfinished().await? == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("backlog not drained within 1800 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut s = sample(
        &format!("draining backlog of {backlog}"),
        apid,
        rpid,
        npid,
        "",
    );
    s["agent_rss_mib"] = json!(peak_a);
    s["note"] = json!(format!(
        "highest agent RSS sampled every 100 ms; drained in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    rows.push(s);
    agent.stop();
    drop(relay);
    env.stop().await?;
    let summary = json!({
        "backlog": backlog,
        "full": o.full,
        "agent": "shirase-agent child: batch.size 1000, max_wait 1s; relay: shirase-relay serve child",
        "peak_columns": "VmHWM since the process started",
        "goal_agent_rss_mib_with_1m_backlog": 64,
        "agent_peak_rss_mib": rss_peak(&rows),
    });
    Ok(Report::new("memory", rows, summary))
}

fn rss_peak(rows: &[Value]) -> f64 {
    rows.iter()
        .filter_map(|r| r["agent_peak_mib"].as_f64())
        .fold(0.0, f64::max)
        .max(round(0.0))
}
