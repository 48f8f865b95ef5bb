//! `shirase-relay`: thin CLI over the `shirase_relay` library.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use shirase_relay::Config;
use tokio_util::sync::CancellationToken;

/// Shirase relay: validates, authorizes and publishes change notices into NATS JetStream.
#[derive(Debug, Parser)]
#[command(name = "shirase-relay", version)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text", env = "SHIRASE_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve POST /v1/notices, /healthz, /readyz and /metrics until SIGTERM or Ctrl-C.
    Serve {
        /// relay.toml (layered over the built-in defaults, then SHIRASE_* variables).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Create or update the streams, consumers and KV buckets of the topology.
    Provision {
        /// relay.toml.
        #[arg(long, short)]
        config: PathBuf,
        /// Print the difference only; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also write the nats-server authorization generated from the topology to FILE.
        #[arg(long, value_name = "FILE")]
        emit_nats_auth: Option<PathBuf>,
    },
    /// Load and validate the configuration, print a summary, exit non-zero on problems.
    CheckConfig {
        /// relay.toml.
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHIRASE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    // One TLS crypto provider for the whole process (reqwest and async-nats share rustls).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shirase-relay: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shirase-relay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::CheckConfig { config } => {
            let c = Config::load(Some(&config))?;
            let d = shirase_relay::topology::desired(&c);
            println!(
                "ok: municipality {}, listen {}, nats {}, {} provider(s), {} interface(s), {} subscriber(s) -> {} stream(s), {} consumer(s), {} bucket(s)",
                c.municipality,
                c.http.listen,
                c.nats.urls.join(","),
                c.providers.len(),
                c.interfaces.len(),
                c.subscribers.len(),
                d.streams.len(),
                d.consumers.len(),
                d.buckets.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Provision { config, dry_run, emit_nats_auth } => {
            let c = Config::load(Some(&config))?;
            if let Some(file) = &emit_nats_auth {
                let text = shirase_relay::nats_auth::emit(&c)?;
                std::fs::write(file, text).with_context(|| format!("writing {}", file.display()))?;
                println!("wrote NATS authorization to {}", file.display());
            }
            let client = shirase_relay::connection::connect(&c.nats).await?;
            let js = async_nats::jetstream::new(client);
            let desired = shirase_relay::topology::desired(&c);
            let plan = shirase_relay::provision::provision(&js, &desired, dry_run).await?;
            if dry_run {
                println!("dry run: nothing was changed");
            }
            print!("{plan}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { config } => {
            let c = Config::load(Some(&config))?;
            let listener = tokio::net::TcpListener::bind(c.http.listen)
                .await
                .with_context(|| format!("binding http.listen {}", c.http.listen))?;
            let shutdown = CancellationToken::new();
            let signal_token = shutdown.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                tracing::info!("shutdown requested; finishing in-flight requests");
                signal_token.cancel();
            });
            shirase_relay::run(c, listener, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
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
