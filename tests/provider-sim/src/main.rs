//! `provider-sim`: the reference PULL API simulator as a process (the demo's provider).
//!
//! Thin: parses the CLI into a [`shirase_provider_sim::Config`], binds the listener, prints the base URL
//! on stdout and runs until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use shirase_proto::{BusinessId, InterfaceId, MunicipalityCode};
use shirase_provider_sim::{
    AnswerOrder, Config, Dialect, InterfaceSpec, NoticeTarget, ProviderSim,
};
use tokio_util::sync::CancellationToken;

/// Reference implementation of the standard's PULL API (docs/pull-api.md) over a generated
/// population, emitting a Shirase notice for every change it commits.
#[derive(Debug, Parser)]
#[command(name = "provider-sim", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Business id (業務ID) of the provider it plays: 001 serves 001o05-00 and 001o06-00,
    /// 010 serves 010o01-00.
    #[arg(long, default_value = "001")]
    business: BusinessId,
    /// Municipality code (6 digits with check digit).
    #[arg(long, default_value = "131016")]
    municipality: MunicipalityCode,
    /// Interfaces served, as ID or ID@VERSION (repeatable); default: the business's defaults.
    #[arg(long = "interface")]
    interfaces: Vec<String>,
    /// Number of generated residents.
    #[arg(long, default_value_t = 10_000)]
    population: usize,
    /// Seed of the data and change generators.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// OAuth client as ID=SECRET (repeatable, or comma-separated in PROVIDER_SIM_CLIENTS).
    #[arg(long = "client", env = "PROVIDER_SIM_CLIENTS", value_delimiter = ',')]
    clients: Vec<String>,
    /// Access-token lifetime in seconds.
    #[arg(long, default_value_t = 300)]
    token_lifetime_s: u64,
    /// Row-count threshold answered with E0004.
    #[arg(long, default_value_t = 1_000)]
    row_threshold: usize,
    /// Provider processing timeout in milliseconds (the standard's 30 s).
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// Start in maintenance (503 E0900).
    #[arg(long)]
    maintenance: bool,
    /// Retry-After seconds sent during maintenance.
    #[arg(long, default_value_t = 60)]
    maintenance_retry_after_s: u64,
    /// Name of the FROM parameter.
    #[arg(long, default_value = "updated_from")]
    param_from: String,
    /// Name of the TO parameter.
    #[arg(long, default_value = "updated_to")]
    param_to: String,
    /// Name of the addressee-number parameter.
    #[arg(long, default_value = "atena_no")]
    param_atena: String,
    /// Dialect of the data endpoint: `standard` (docs/pull-api.md) or `romaji` (split
    /// date/time bounds at whole seconds, version in the path, counts).
    #[arg(long, default_value = "standard", value_parser = parse_dialect)]
    dialect: Dialect,
    /// Cap every answer at this many rows (reported with the total in the romaji dialect).
    #[arg(long)]
    answer_cap: Option<usize>,
    /// Order of an answer's rows: `updated_at` (ascending DB update timestamp) or `key`
    /// (ascending addressee number, history number).
    #[arg(long, default_value = "updated_at", value_parser = parse_answer_order)]
    answer_order: AnswerOrder,
    /// URL clients reach this simulator at, if not http://<listen> (the assertion aud is
    /// <this>/oauth/token).
    #[arg(long)]
    public_url: Option<String>,
    /// Send notices to this relay base URL (POST /v1/notices).
    #[arg(long, conflicts_with = "notify_nats", requires = "notify_token_file")]
    notify_relay: Option<String>,
    /// File holding the provider's bearer token for the relay.
    #[arg(long)]
    notify_token_file: Option<PathBuf>,
    /// Publish notices directly to this NATS server (JetStream).
    #[arg(long)]
    notify_nats: Option<String>,
    /// Background change rate, in changes per second ("5" or "5/s"); 0 = off.
    #[arg(long, default_value = "0", value_parser = parse_rate)]
    rate: f64,
}

fn parse_dialect(s: &str) -> Result<Dialect, String> {
    match s {
        "standard" => Ok(Dialect::Standard),
        "romaji" => Ok(Dialect::Romaji),
        _ => Err(format!("{s:?}: write standard or romaji")),
    }
}

fn parse_answer_order(s: &str) -> Result<AnswerOrder, String> {
    match s {
        "updated_at" => Ok(AnswerOrder::UpdatedAt),
        "key" => Ok(AnswerOrder::Key),
        _ => Err(format!("{s:?}: write updated_at or key")),
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let n = s.strip_suffix("/s").unwrap_or(s).trim();
    match n.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!(
            "rate must be a number of changes per second like 5 or 5/s, got {s:?}"
        )),
    }
}

fn config(cli: Cli) -> anyhow::Result<Config> {
    let mut c = Config::for_business(cli.business);
    c.municipality = cli.municipality;
    if !cli.interfaces.is_empty() {
        c.interfaces = cli
            .interfaces
            .iter()
            .map(|s| {
                let (id, version) = s.split_once('@').unwrap_or((s, "1.0"));
                let id: InterfaceId = id.parse().with_context(|| format!("--interface {s}"))?;
                let version = version
                    .parse()
                    .with_context(|| format!("--interface {s}: version"))?;
                Ok(InterfaceSpec { id, version })
            })
            .collect::<anyhow::Result<_>>()?;
    }
    c.population = cli.population;
    c.seed = cli.seed;
    for spec in &cli.clients {
        let Some((id, secret)) = spec.split_once('=') else {
            bail!(
                "--client must be ID=SECRET, got {:?}",
                spec.split('=').next().unwrap_or_default()
            );
        };
        c.clients.insert(id.to_owned(), secret.into());
    }
    c.token_lifetime = Duration::from_secs(cli.token_lifetime_s);
    c.row_threshold = cli.row_threshold;
    c.provider_timeout = Duration::from_millis(cli.timeout_ms);
    c.maintenance = cli.maintenance;
    c.maintenance_retry_after = Duration::from_secs(cli.maintenance_retry_after_s);
    c.params.updated_from = cli.param_from;
    c.params.updated_to = cli.param_to;
    c.params.atena_no = cli.param_atena;
    c.dialect = cli.dialect;
    c.answer_cap = cli.answer_cap;
    c.answer_order = cli.answer_order;
    c.public_base_url = cli.public_url;
    c.change_rate = cli.rate;
    c.notice_target = match (cli.notify_relay, cli.notify_nats) {
        (Some(url), None) => {
            let file = cli
                .notify_token_file
                .context("--notify-relay needs --notify-token-file")?;
            let token = std::fs::read_to_string(&file)
                .with_context(|| format!("--notify-token-file {}: cannot read", file.display()))?;
            let token = token.trim().to_owned();
            if token.is_empty() {
                bail!("--notify-token-file {}: the file is empty", file.display());
            }
            NoticeTarget::Relay {
                url,
                token: token.into(),
            }
        }
        (None, Some(url)) => NoticeTarget::Nats { url },
        _ => NoticeTarget::None,
    };
    c.validate()?;
    Ok(c)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // reqwest is built without a default TLS provider; install ring once, before any client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let listen = cli.listen;
    let config = config(cli)?;
    if config.clients.is_empty() {
        tracing::warn!("no --client given: nobody can obtain a token");
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("--listen {listen}: cannot bind"))?;
    let shutdown = CancellationToken::new();
    let sim = ProviderSim::start(config, listener, shutdown.clone()).await?;
    println!("{}", sim.base_url());

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
    sim.stopped().await;
    let c = sim.counters();
    tracing::info!(
        requests = c.requests,
        changes = c.changes_committed,
        notices_delivered = c.notices_delivered,
        "provider-sim stopped"
    );
    Ok(())
}
