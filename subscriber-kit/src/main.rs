//! `shirase-agent --config agent.toml`: runs the subscriber agent until SIGTERM or Ctrl-C.
//! `shirase-agent probe --config agent.toml`: checks each provider's PULL API against its API
//! profile (read-only) and exits 0 only when the agent can work with it.
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shirase_service::logging::{self, LogFormat, LogOutput};
use tokio_util::sync::CancellationToken;

/// Shirase agent: turns change notices into coalesced PULL API calls, hands the rows to a sink,
/// stores the checkpoint and acks the notices.
#[derive(Debug, Parser)]
#[command(name = "shirase-agent", version)]
struct Cli {
    /// Configuration file (TOML); every setting is in docs/config/agent.md.
    #[arg(long, short, env = "SHIRASE_AGENT_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(long, global = true)]
    json_logs: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read-only checks of the providers' PULL APIs against their `[providers.api]` profiles,
    /// one line per check; exit status 0 only when the agent can work with every API probed.
    Probe {
        /// Only this provider (business id).
        #[arg(long)]
        provider: Option<String>,
        /// Only this interface id.
        #[arg(long)]
        interface: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
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
    let file = cli
        .config
        .context("--config FILE (or SHIRASE_AGENT_CONFIG) is required")?;
    let config = shirase_subscriber_kit::Config::load(Some(&file))?;
    if let Some(Command::Probe {
        provider,
        interface,
        json,
    }) = cli.command
    {
        let sel = shirase_subscriber_kit::probe::Selection {
            provider,
            interface,
        };
        let report = shirase_subscriber_kit::probe::run(&config, &sel).await;
        if json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            for c in &report.checks {
                println!("{c}");
            }
            let verdict = if report.usable {
                "usable: the agent can work with this API"
            } else {
                "NOT usable: change the keys named above"
            };
            println!("{verdict}");
        }
        std::process::exit(if report.usable { 0 } else { 1 });
    }
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
