//! `shirase-agent --config agent.toml`: runs the subscriber agent until SIGTERM or Ctrl-C.
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// Shirase agent: turns change notices into coalesced PULL API calls, hands the rows to a sink,
/// stores the checkpoint and acks the notices.
#[derive(Debug, Parser)]
#[command(name = "shirase-agent", version)]
struct Cli {
    /// Configuration file (TOML); see agent.default.toml for every setting.
    #[arg(long, short, env = "SHIRASE_AGENT_CONFIG")]
    config: PathBuf,
    /// Log as JSON lines.
    #[arg(long)]
    json_logs: bool,
}

/// What is logged when neither SHIRASE_LOG nor RUST_LOG says otherwise: Shirase's own crates at
/// INFO, every dependency at WARN.
const DEFAULT_LOG: &str =
    "warn,shirase_agent=info,shirase_subscriber_kit=info,shirase_proto=info,shirase_pull=info";

fn init_tracing(json: bool) {
    use tracing_subscriber::{Layer, filter, layer::SubscriberExt, util::SubscriberInitExt};
    let asked = ["SHIRASE_LOG", "RUST_LOG"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()));
    let env = match asked.as_deref().map(filter::EnvFilter::try_new) {
        Some(Ok(f)) => f,
        Some(Err(e)) => {
            eprintln!(
                "SHIRASE_LOG/RUST_LOG is not a valid log filter ({e}); using {DEFAULT_LOG:?}"
            );
            filter::EnvFilter::new(DEFAULT_LOG)
        }
        None => filter::EnvFilter::new(DEFAULT_LOG),
    };
    // async-nats logs every message it reads, payload included, at TRACE; notices carry
    // addressee numbers (宛名番号), so its TRACE lines are dropped whatever the filter asks for.
    let no_payloads = filter::filter_fn(|m| {
        !(m.target().starts_with("async_nats") && *m.level() == tracing::Level::TRACE)
    });
    let layer = tracing_subscriber::fmt::layer();
    let layer = if json {
        layer.json().boxed()
    } else {
        layer.boxed()
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(env).with_filter(no_payloads))
        .init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.json_logs);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = shirase_subscriber_kit::Config::load(Some(&cli.config))?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping: finishing or handing back in-flight notices");
        stop.cancel();
    });
    shirase_subscriber_kit::run(config, None, shutdown)
        .await
        .context("shirase-agent")?;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
