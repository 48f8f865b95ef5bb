//! `shirase-agent --config agent.toml`: runs the subscriber agent until SIGTERM or Ctrl-C.
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use shirase_service::logging::{self, LogFormat, LogOutput};
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
const DEFAULT_LOG: &str = "warn,shirase_agent=info,shirase_subscriber_kit=info,shirase_proto=info,shirase_pull=info,shirase_service=info";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let format = if cli.json_logs {
        LogFormat::Json
    } else {
        LogFormat::Text
    };
    logging::init(DEFAULT_LOG, format, LogOutput::Stdout);
    shirase_service::crypto::install_default_provider();
    let config = shirase_subscriber_kit::Config::load(Some(&cli.config))?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        shirase_service::signals::wait_for_signal().await;
        tracing::info!("stopping: finishing or handing back in-flight notices");
        stop.cancel();
    });
    shirase_subscriber_kit::run(config, None, shutdown)
        .await
        .context("shirase-agent")?;
    Ok(())
}
