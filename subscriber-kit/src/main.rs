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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // async-nats logs every message it reads, payload included, at TRACE; notices carry
    // addressee numbers (宛名番号), so it is capped at DEBUG whatever RUST_LOG asks for.
    let filter = filter.add_directive("async_nats=debug".parse()?);
    if cli.json_logs {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
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
