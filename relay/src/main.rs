//! `shirase-relay`: parses its arguments and calls the `shirase_relay` library
//! ([`shirase_relay::cli`]).
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use shirase_relay::cli::{self, OpsCommand, OpsTarget};
use shirase_relay::operator::dlq::DlqFilter;
use shirase_relay::operator::pause::PauseRequest;
use shirase_relay::operator::replay::ReplayRequest;
use shirase_relay::operator::resync::ResyncRequest;
use shirase_service::logging::{self, LogFormat as Format, LogOutput};

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
        /// With --emit-nats-auth: write the file and stop, without connecting to NATS (the
        /// first step of a new cluster, whose nodes need the file before they start).
        #[arg(long, requires = "emit_nats_auth")]
        emit_only: bool,
    },
    /// Load and validate the configuration, print a summary, exit non-zero on problems.
    CheckConfig {
        /// relay.toml.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Save every Shirase stream and KV bucket (notices, dead letters, alerts, audit trail,
    /// checkpoints, leases, with their consumers) into a new directory, through JetStream's
    /// snapshot API.
    Backup {
        /// relay.toml (its [nats] section is the identity used; the relay's own).
        #[arg(long, short)]
        config: PathBuf,
        /// New or empty directory to write the backup into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Restore a backup made by `backup` into a cluster that has none of its streams yet;
    /// run `provision` afterwards.
    Restore {
        /// relay.toml.
        #[arg(long, short)]
        config: PathBuf,
        /// The backup directory.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// Only this stream (repeatable; `KV_<bucket>` for a bucket), e.g. one deleted by
        /// mistake while the others still exist.
        #[arg(long, value_name = "STREAM")]
        only: Vec<String>,
    },
    /// Generate a NATS user identity: write its seed to a new file (mode 0600) and print its
    /// public key for relay.toml (relay_nkey, nats_nkey).
    Nkey {
        /// The seed file to create.
        #[arg(long, value_name = "FILE")]
        seed_file: PathBuf,
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

impl OpsArgs {
    fn target(&self) -> OpsTarget {
        OpsTarget {
            url: self.url.clone(),
            ca_file: self.ca_file.clone(),
            token_file: self.token_file.clone(),
            json: self.json,
        }
    }
}

impl DlqSelect {
    fn filter(self, yes: bool) -> DlqFilter {
        DlqFilter {
            subscriber: self.subscriber,
            provider: self.provider,
            interface: self.interface,
            seq: self.seq,
            yes,
        }
    }
}

/// What is logged when neither SHIRASE_LOG nor RUST_LOG says otherwise: Shirase's own crates at
/// INFO, every dependency at WARN.
const DEFAULT_LOG: &str =
    "warn,shirase_relay=info,shirase_proto=info,shirase_pull=info,shirase_service=info";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match cli.log_format {
        LogFormat::Text => Format::Text,
        LogFormat::Json => Format::Json,
    };
    logging::init(DEFAULT_LOG, format, LogOutput::Stderr);
    shirase_service::crypto::install_default_provider();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shirase-relay: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shirase-relay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    let out = &mut std::io::stdout().lock();
    let (ops, command) = match command {
        Command::Serve { config } => return Ok(cli::serve(&config).await?),
        Command::CheckConfig { config } => return Ok(cli::check_config(&config, out)?),
        Command::Provision {
            config,
            dry_run,
            emit_nats_auth,
            emit_only,
        } => {
            if emit_only {
                return Ok(cli::emit_nats_auth(
                    &config,
                    emit_nats_auth.as_deref(),
                    out,
                )?);
            }
            return Ok(cli::provision(&config, dry_run, emit_nats_auth.as_deref(), out).await?);
        }
        Command::Backup { config, out: dir } => return Ok(cli::backup(&config, &dir, out).await?),
        Command::Restore { config, from, only } => {
            return Ok(cli::restore(&config, &from, &only, out).await?);
        }
        Command::Nkey { seed_file } => return Ok(cli::nkey(&seed_file, out)?),
        Command::Status { ops } => (ops, OpsCommand::Status),
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
        } => (
            ops,
            OpsCommand::Replay(ReplayRequest {
                subscriber,
                provider,
                interface,
                from_time,
                to_time,
                from_seq,
                to_seq,
                replay_id,
                dry_run,
            }),
        ),
        Command::Resync {
            ops,
            subscriber,
            interface,
            to,
        } => (
            ops,
            OpsCommand::Resync(ResyncRequest {
                subscriber,
                interface,
                to,
            }),
        ),
        Command::Pause {
            ops,
            subscriber,
            provider,
            until,
            for_,
            reason,
        } => (
            ops,
            OpsCommand::Pause(PauseRequest {
                subscriber,
                provider,
                until,
                for_,
                reason: Some(reason),
            }),
        ),
        Command::Resume {
            ops,
            subscriber,
            provider,
        } => (
            ops,
            OpsCommand::Resume(PauseRequest {
                subscriber,
                provider,
                until: None,
                for_: None,
                reason: None,
            }),
        ),
        Command::Dlq { command } => match command {
            DlqCommand::List { ops, select } => (ops, OpsCommand::DlqList(select.filter(false))),
            DlqCommand::Show { ops, seq } => (ops, OpsCommand::DlqShow(seq)),
            DlqCommand::Redrive { ops, select } => {
                (ops, OpsCommand::DlqRedrive(select.filter(false)))
            }
            DlqCommand::Purge { ops, select, yes } => {
                (ops, OpsCommand::DlqPurge(select.filter(yes)))
            }
        },
    };
    Ok(cli::ops(&ops.target(), command, out).await?)
}
