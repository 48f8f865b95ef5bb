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
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "SHIRASE_LOG_FORMAT"
    )]
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
    /// Operator: consumers, checkpoints, maintenance windows, dead letters, alerts.
    Status {
        #[command(flatten)]
        ops: OpsArgs,
    },
    /// Operator: re-deliver stored notices of a time or sequence range to one subscriber.
    Replay {
        #[command(flatten)]
        ops: OpsArgs,
        /// Subscriber to re-deliver to.
        #[arg(long)]
        subscriber: String,
        /// Only this provider (業務ID).
        #[arg(long)]
        provider: Option<String>,
        /// Only this interface (連携ID).
        #[arg(long)]
        interface: Option<String>,
        /// Notices stored at or after this time (RFC 3339).
        #[arg(long)]
        from_time: Option<String>,
        /// Notices stored before this time (RFC 3339).
        #[arg(long)]
        to_time: Option<String>,
        /// From this stream sequence.
        #[arg(long)]
        from_seq: Option<u64>,
        /// Up to this stream sequence (inclusive).
        #[arg(long)]
        to_seq: Option<u64>,
        /// Idempotency key (default: derived from the parameters); reuse it to retry safely.
        #[arg(long)]
        replay_id: Option<String>,
        /// Count what would be replayed; publish nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Operator: rewind a subscriber's checkpoint so its agent re-pulls from that time.
    Resync {
        #[command(flatten)]
        ops: OpsArgs,
        /// Subscriber.
        #[arg(long)]
        subscriber: String,
        /// Interface (連携ID).
        #[arg(long)]
        interface: String,
        /// New checkpoint (RFC 3339).
        #[arg(long)]
        to: String,
    },
    /// Operator: dead letters.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Operator: pause a (subscriber, provider) consumer.
    Pause {
        #[command(flatten)]
        ops: OpsArgs,
        /// Subscriber.
        #[arg(long)]
        subscriber: String,
        /// Provider (業務ID).
        #[arg(long)]
        provider: String,
        /// Pause until (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Pause for a duration ("2h", "30m").
        #[arg(long = "for")]
        for_: Option<String>,
        /// Why (shown in status).
        #[arg(long)]
        reason: String,
    },
    /// Operator: resume a paused consumer.
    Resume {
        #[command(flatten)]
        ops: OpsArgs,
        /// Subscriber.
        #[arg(long)]
        subscriber: String,
        /// Provider (業務ID).
        #[arg(long)]
        provider: String,
    },
}

/// How operator commands reach the relay.
#[derive(Debug, Clone, clap::Args)]
struct OpsArgs {
    /// The relay's base URL (https://... when the relay sets http.tls_cert_file).
    #[arg(long, env = "SHIRASE_OPS_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// CA certificate (PEM) trusted for an https:// URL besides the system roots: the CA that
    /// signed the relay's http.tls_cert_file.
    #[arg(long, env = "SHIRASE_OPS_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// File holding the operator's bearer token.
    #[arg(long, env = "SHIRASE_OPS_TOKEN_FILE")]
    token_file: PathBuf,
    /// Print JSON (for scripts) instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, clap::Args)]
struct DlqSelect {
    /// Only this subscriber.
    #[arg(long)]
    subscriber: Option<String>,
    /// Only this provider.
    #[arg(long)]
    provider: Option<String>,
    /// Only this interface.
    #[arg(long)]
    interface: Option<String>,
    /// Only this dead letter (its sequence in SHIRASE_DLQ).
    #[arg(long)]
    seq: Option<u64>,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List dead letters (reason, HTTP status, attempts, first/last failure).
    List {
        #[command(flatten)]
        ops: OpsArgs,
        #[command(flatten)]
        select: DlqSelect,
    },
    /// Show one dead letter with its whole body.
    Show {
        #[command(flatten)]
        ops: OpsArgs,
        /// Its sequence in SHIRASE_DLQ.
        seq: u64,
    },
    /// Re-deliver matching dead letters to their subscriber (as replays), then delete them.
    Redrive {
        #[command(flatten)]
        ops: OpsArgs,
        #[command(flatten)]
        select: DlqSelect,
    },
    /// Delete matching dead letters for good.
    Purge {
        #[command(flatten)]
        ops: OpsArgs,
        #[command(flatten)]
        select: DlqSelect,
        /// Confirm.
        #[arg(long)]
        yes: bool,
    },
}

fn select_json(s: &DlqSelect, yes: bool) -> serde_json::Value {
    let mut v = serde_json::json!({ "subscriber": s.subscriber, "provider": s.provider, "interface": s.interface, "seq": s.seq, "yes": yes });
    if let Some(o) = v.as_object_mut() {
        o.retain(|_, x| !x.is_null());
    }
    v
}

fn print(json: bool, v: &serde_json::Value, table: impl FnOnce(&serde_json::Value) -> String) {
    if json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        print!("{}", table(v));
    }
}

async fn run_ops(command: Command) -> anyhow::Result<ExitCode> {
    use shirase_relay::operator::client::{self, Client};
    let obj = client::render_object;
    let (ops, result, render): (OpsArgs, _, fn(&serde_json::Value) -> String) = match command {
        Command::Status { ops } => {
            let c = Client::new(&ops.url, &ops.token_file, ops.ca_file.as_deref())?;
            (
                ops,
                c.get("/v1/ops/status", &[]).await,
                client::render_status,
            )
        }
        Command::Replay {
            ops,
            subscriber,
            provider,
            interface,
            from_time,
            to_time,
            from_seq,
            to_seq,
            replay_id,
            dry_run,
        } => {
            let c = Client::new(&ops.url, &ops.token_file, ops.ca_file.as_deref())?;
            let mut body = serde_json::json!({
                "subscriber": subscriber, "provider": provider, "interface": interface, "from_time": from_time,
                "to_time": to_time, "from_seq": from_seq, "to_seq": to_seq, "replay_id": replay_id, "dry_run": dry_run,
            });
            if let Some(o) = body.as_object_mut() {
                o.retain(|_, x| !x.is_null());
            }
            (ops, c.post("/v1/ops/replay", &body).await, obj)
        }
        Command::Resync {
            ops,
            subscriber,
            interface,
            to,
        } => {
            let c = Client::new(&ops.url, &ops.token_file, ops.ca_file.as_deref())?;
            let body =
                serde_json::json!({ "subscriber": subscriber, "interface": interface, "to": to });
            (ops, c.post("/v1/ops/resync", &body).await, obj)
        }
        Command::Pause {
            ops,
            subscriber,
            provider,
            until,
            for_,
            reason,
        } => {
            let c = Client::new(&ops.url, &ops.token_file, ops.ca_file.as_deref())?;
            let mut body = serde_json::json!({ "subscriber": subscriber, "provider": provider, "until": until, "for": for_, "reason": reason });
            if let Some(o) = body.as_object_mut() {
                o.retain(|_, x| !x.is_null());
            }
            (ops, c.post("/v1/ops/pause", &body).await, obj)
        }
        Command::Resume {
            ops,
            subscriber,
            provider,
        } => {
            let c = Client::new(&ops.url, &ops.token_file, ops.ca_file.as_deref())?;
            let body = serde_json::json!({ "subscriber": subscriber, "provider": provider });
            (ops, c.post("/v1/ops/resume", &body).await, obj)
        }
        Command::Dlq { command } => match command {
            DlqCommand::List { ops, select } => {
                let c = Client::new(&ops.url, &ops.token_file, ops.ca_file.as_deref())?;
                let q: Vec<(&str, String)> = [
                    ("subscriber", select.subscriber),
                    ("provider", select.provider),
                    ("interface", select.interface),
                ]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect();
                let r = match select.seq {
                    Some(seq) => c
                        .get(&format!("/v1/ops/dlq/{seq}"), &[])
                        .await
                        .map(|v| serde_json::Value::Array(vec![v])),
                    None => c.get("/v1/ops/dlq", &q).await,
                };
                (ops, r, client::render_dlq)
            }
            DlqCommand::Show { ops, seq } => {
                let c = Client::new(&ops.url, &ops.token_file, ops.ca_file.as_deref())?;
                (
                    ops,
                    c.get(&format!("/v1/ops/dlq/{seq}"), &[]).await,
                    |v: &serde_json::Value| {
                        serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
                    },
                )
            }
            DlqCommand::Redrive { ops, select } => {
                let c = Client::new(&ops.url, &ops.token_file, ops.ca_file.as_deref())?;
                (
                    ops,
                    c.post("/v1/ops/dlq/redrive", &select_json(&select, false))
                        .await,
                    obj,
                )
            }
            DlqCommand::Purge { ops, select, yes } => {
                if !yes {
                    anyhow::bail!(
                        "purge deletes dead letters for good; add --yes to confirm (see them first with `dlq list`)"
                    );
                }
                let c = Client::new(&ops.url, &ops.token_file, ops.ca_file.as_deref())?;
                (
                    ops,
                    c.post("/v1/ops/dlq/purge", &select_json(&select, true))
                        .await,
                    obj,
                )
            }
        },
        _ => unreachable!("run_ops is called with operator commands only"),
    };
    let v = result?;
    print(ops.json, &v, render);
    Ok(ExitCode::SUCCESS)
}

/// What is logged when neither SHIRASE_LOG nor RUST_LOG says otherwise: Shirase's own crates at
/// INFO, every dependency at WARN.
const DEFAULT_LOG: &str = "warn,shirase_relay=info,shirase_proto=info,shirase_pull=info";

fn init_tracing(format: LogFormat) {
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
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let layer = match format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer.json().boxed(),
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(env).with_filter(no_payloads))
        .init();
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
        c @ (Command::Status { .. }
        | Command::Replay { .. }
        | Command::Resync { .. }
        | Command::Dlq { .. }
        | Command::Pause { .. }
        | Command::Resume { .. }) => run_ops(c).await,
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
            for p in &c.providers {
                if let Some(w) = &p.watch {
                    let ifaces: Vec<String> =
                        w.interfaces.iter().map(ToString::to_string).collect();
                    println!(
                        "watched: provider {} ({}), interfaces {}, every {:?} (min {:?}, max {:?}){}",
                        p.business_id,
                        p.name,
                        ifaces.join(","),
                        w.interval,
                        w.min_interval,
                        w.max_interval,
                        w.until
                            .map(|u| format!(", native notices from {u}"))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Provision {
            config,
            dry_run,
            emit_nats_auth,
        } => {
            let c = Config::load(Some(&config))?;
            if let Some(file) = &emit_nats_auth {
                let text = shirase_relay::nats_auth::emit(&c)?;
                std::fs::write(file, text)
                    .with_context(|| format!("writing {}", file.display()))?;
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
