//! Start-up (clients, listener, NATS connection), the per-consumer run loop and shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use shirase_proto::{BusinessId, Severity};
use shirase_service::nats;
use tokio_util::sync::CancellationToken;

use super::http::serve_http;
use super::{AgentError, AgentErrorKind, Worker, sleep_or_cancel};
use crate::alert::Alerter;
use crate::config::Config;
use crate::limiter::Limiter;
use crate::maintenance::{Clock, Guard, SystemClock};
use crate::metrics::{Metrics, ProviderLabels};
use crate::pull_client::PullClient;
use crate::sink::Sink;
use crate::watchdog::{ConsumerState, Watchdog};

/// A configured agent: the config, its sink and its metrics. Build it, keep
/// [`Agent::metrics`] if you want to read them, then [`Agent::run`].
#[derive(Debug)]
pub struct Agent {
    cfg: Arc<Config>,
    sink: Arc<dyn Sink>,
    metrics: Arc<Metrics>,
    secrets: HashMap<BusinessId, Vec<u8>>,
    clock: Arc<dyn Clock>,
}

impl Agent {
    /// An agent with the sink named in the configuration.
    pub fn new(config: Config) -> Result<Self, AgentError> {
        let sink = crate::sink::from_config(&config.sink)
            .map_err(|e| AgentError::new(AgentErrorKind::Sink, e.to_string()))?;
        Ok(Self::with_sink(config, Arc::from(sink)))
    }

    /// An agent delivering to an embedded sink.
    pub fn with_sink(config: Config, sink: Arc<dyn Sink>) -> Self {
        Self {
            cfg: Arc::new(config),
            sink,
            metrics: Arc::new(Metrics::new()),
            secrets: HashMap::new(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Read "now" for maintenance decisions from `clock` instead of the system clock (tests,
    /// drills). DB timestamps and checkpoints never use it.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Use `secret` for `provider` instead of reading `client_secret_file` (embedding, tests).
    pub fn with_client_secret(mut self, provider: BusinessId, secret: Vec<u8>) -> Self {
        self.secrets.insert(provider, secret);
        self
    }

    /// The agent's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Run until `shutdown` is cancelled. `listener` serves `/healthz` and `/metrics` (when
    /// `None`, `http.listen` from the config is bound, if set). Returns after in-flight work
    /// finished or was nak'ed.
    pub async fn run(
        self,
        listener: Option<tokio::net::TcpListener>,
        shutdown: CancellationToken,
    ) -> Result<(), AgentError> {
        let cfg = self.cfg.clone();
        let providers = self.provider_clients()?;
        // Before binding or connecting: an unusable certificate is a configuration error.
        let http_tls = cfg
            .http
            .tls
            .as_ref()
            .map(|t| t.load())
            .transpose()
            .map_err(|e| AgentError::new(AgentErrorKind::Http, e.to_string()))?;
        let listener = bind_listener(&cfg, listener).await?;
        let Some(client) = connect(&cfg, &shutdown).await? else {
            return Ok(());
        };
        let js = jetstream::new(client.clone());
        let alerter = Arc::new(Alerter::new(
            js.clone(),
            cfg.subscriber.clone(),
            Duration::from_secs(300),
        ));

        let tracker = tokio_util::task::TaskTracker::new();
        if let Some(l) = listener {
            let m = self.metrics.clone();
            let c = client.clone();
            let stop = shutdown.clone();
            let tls = http_tls.clone();
            tracker.spawn(async move { serve_http(l, tls, m, c, stop).await });
        }
        for (c, guard, provider) in providers {
            let w = Worker {
                guard,
                provider,
                stop: shutdown.clone(),
                cfg: cfg.clone(),
                js: js.clone(),
                client: c,
                sink: self.sink.clone(),
                metrics: self.metrics.clone(),
                alerter: alerter.clone(),
                connect_failures: AtomicU32::new(0),
                outage: crate::outage::OutageTracker::new(cfg.outage.alert_after),
                gap_seen: tokio::sync::Notify::new(),
                states: Default::default(),
                deliveries: Default::default(),
                checkpoints: std::sync::Mutex::new(None),
            };
            let stop = shutdown.clone();
            let w = Arc::new(w);
            let (sw, sweep_stop) = (w.clone(), shutdown.clone());
            tracker.spawn(async move { crate::sweep::run(sw, sweep_stop).await });
            let (ww, watch_stop) = (w.clone(), shutdown.clone());
            tracker.spawn(async move { ww.watch_rewinds(watch_stop).await });
            tracker.spawn(async move { w.run(stop).await });
        }
        tracker.close();
        tracker.wait().await;
        // Acks and naks are plain publishes: flush them before the connection goes away.
        let _ = client.flush().await;
        tracing::info!("agent stopped");
        Ok(())
    }

    /// Each provider's PULL client (with its limiter) and maintenance guard.
    fn provider_clients(&self) -> Result<Vec<ProviderClient>, AgentError> {
        let mut out = Vec::new();
        for p in &self.cfg.providers {
            let calendar = if p.enforce_maintenance {
                Some(
                    shirase_proto::maintenance::Calendar::new(&p.maintenance).map_err(|e| {
                        AgentError::new(
                            AgentErrorKind::Client,
                            format!("providers {}: {e}", p.business_id),
                        )
                    })?,
                )
            } else {
                None
            };
            let guard = Arc::new(Guard::new(calendar, self.clock.clone()));
            let limiter = Arc::new(Limiter::new(p.concurrency, p.rate_per_sec));
            if p.insecure_http {
                tracing::warn!(
                    provider = %p.business_id,
                    "insecure_http = true: http:// is allowed for this provider's PULL API and token endpoint (token, addressee numbers and rows in clear); dev and tests only"
                );
            }
            let mut pc = shirase_pull::PullClientConfig::from(p);
            pc.municipality = Some(self.cfg.municipality.to_string());
            let c = match self.secrets.get(&p.business_id) {
                Some(s) => PullClient::with_secret(pc, s.clone(), limiter),
                None => PullClient::new(pc, limiter),
            }
            .map_err(|e| AgentError::new(AgentErrorKind::Client, e.to_string()))?;
            out.push((Arc::new(c), guard, p.clone()));
        }
        Ok(out)
    }
}

/// A provider's PULL client, its maintenance guard and its configuration.
type ProviderClient = (Arc<PullClient>, Arc<Guard>, crate::config::ProviderConfig);

/// The given listener, or `http.listen` bound, or none.
async fn bind_listener(
    cfg: &Config,
    listener: Option<tokio::net::TcpListener>,
) -> Result<Option<tokio::net::TcpListener>, AgentError> {
    if listener.is_some() {
        return Ok(listener);
    }
    let Some(a) = cfg.http_listen() else {
        return Ok(None);
    };
    let l = tokio::net::TcpListener::bind(a).await.map_err(|e| {
        AgentError::new(
            AgentErrorKind::Http,
            format!("binding http.listen {a}: {e}"),
        )
    })?;
    Ok(Some(l))
}

/// The first connection to NATS; `None` when `shutdown` came first. It is tried in a loop of
/// our own (not retry_on_initial_connect) so that a refused identity (wrong seed, unknown user)
/// stops the agent with a message instead of retrying forever in silence; an unreachable
/// server is retried.
async fn connect(
    cfg: &Config,
    shutdown: &CancellationToken,
) -> Result<Option<async_nats::Client>, AgentError> {
    let settings = nats_settings(cfg);
    let opts = nats::options(&settings)
        .await
        .map_err(|e| AgentError::new(AgentErrorKind::Nats, e.to_string()))?;
    let addrs = nats::server_addrs(&settings)
        .map_err(|e| AgentError::new(AgentErrorKind::Nats, e.to_string()))?;
    let mut attempt = 0u32;
    loop {
        match opts.clone().connect(addrs.clone()).await {
            Ok(c) => return Ok(Some(c)),
            Err(e) => match nats::classify(&settings, e) {
                refused @ nats::ConnectError::Refused { .. } => {
                    return Err(AgentError::new(
                        AgentErrorKind::Nats,
                        format!("the NATS server refused this agent's identity or TLS: {refused}"),
                    ));
                }
                other => {
                    attempt += 1;
                    tracing::warn!(attempt, "{other}; retrying");
                    let d = Duration::from_millis((250u64 << attempt.min(5)).min(5_000));
                    if !sleep_or_cancel(d, shutdown).await {
                        return Ok(None);
                    }
                }
            },
        }
    }
}

/// The shell's NATS settings from `[nats]`: identity (credentials file or nkey seed), TLS, the
/// subscriber's own inbox prefix, and endless reconnection once connected.
fn nats_settings(cfg: &Config) -> nats::NatsSettings {
    let n = &cfg.nats;
    nats::NatsSettings {
        credentials_file: n.credentials_file.clone(),
        nkey_seed_file: n.nkey_seed_file.clone(),
        tls_ca_file: n.tls_ca_file.clone(),
        tls_cert_file: n.tls_cert_file.clone(),
        tls_key_file: n.tls_key_file.clone(),
        tls_required: n.tls_required,
        inbox_prefix: Some(
            n.inbox_prefix.clone().unwrap_or_else(|| {
                shirase_proto::subject::subscriber_inbox_prefix(&cfg.subscriber)
            }),
        ),
        ..nats::NatsSettings::new(n.urls.clone(), format!("shirase-agent-{}", cfg.subscriber))
    }
}

/// Build an [`Agent`] from `config` (sink from the config) and run it. See [`Agent::run`].
pub async fn run(
    config: Config,
    listener: Option<tokio::net::TcpListener>,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    Agent::new(config)?.run(listener, shutdown).await
}

/// Why a worker stopped consuming from its bound consumer.
enum Ended {
    /// Shutdown.
    Stopped,
    /// The consumer is gone or the server does not answer: bind again.
    Rebind,
}

/// What a look at the consumer's info found.
enum Checked {
    /// Its current `max_deliver` and `ack_wait`.
    Config(i64, Duration),
    /// The info failed while busy: try again later.
    Skipped,
    /// The info failed while idle: the consumer may be gone, bind again.
    Rebind,
}

impl Worker {
    /// Bind to the durable consumer (waiting for the relay's provisioning), consume from it,
    /// and bind again after it is deleted or the server restarts, until `stop`.
    pub(super) async fn run(self: Arc<Self>, stop: CancellationToken) {
        let name = shirase_proto::subject::consumer_name(
            &self.cfg.subscriber,
            &self.provider().business_id,
        );
        let plabels = ProviderLabels {
            provider: self.provider().business_id.to_string(),
        };
        let mut attempt = 0u64;
        while !stop.is_cancelled() {
            let consumer: PullConsumer = match self
                .js
                .get_consumer_from_stream(&name, shirase_proto::subject::NOTICE_STREAM)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(consumer = %name, attempt, "consumer not available (waiting for the relay's provisioning or the server): {e}");
                    if attempt == 10 {
                        self.alert(Severity::Warning, "consumer_missing", None, format!("durable consumer {name} is not available; run `shirase-relay provision` or check the NATS servers")).await;
                    }
                    if !sleep_or_cancel(self.backoff(attempt), &stop).await {
                        return;
                    }
                    continue;
                }
            };
            if attempt > 0 {
                self.metrics.resubscribes.get_or_create(&plabels).inc();
                tracing::info!(consumer = %name, "bound to consumer");
            }
            match self.consume(&consumer, &name, &plabels, &stop).await {
                Ended::Stopped => return,
                Ended::Rebind => {
                    attempt = 1;
                    if !sleep_or_cancel(self.backoff(attempt), &stop).await {
                        return;
                    }
                }
            }
        }
    }

    /// Fetch and handle batches from `consumer` (none inside a maintenance window), and look
    /// at its info to run the watchdog.
    async fn consume(
        &self,
        consumer: &PullConsumer,
        name: &str,
        plabels: &ProviderLabels,
        stop: &CancellationToken,
    ) -> Ended {
        let (mut max_deliver, mut ack_wait) = {
            let mut c = consumer.clone();
            c.info()
                .await
                .map(|i| (i.config.max_deliver, i.config.ack_wait))
                .unwrap_or((-1, Duration::from_secs(30)))
        };
        let mut watchdog =
            Watchdog::new(self.cfg.watchdog.stalled_after, tokio::time::Instant::now());
        let mut last_check = tokio::time::Instant::now();
        while !stop.is_cancelled() {
            // Inside a maintenance window: fetch nothing (no delivery is spent), send nothing.
            if let Some(wait) = self.guard.remaining() {
                self.metrics.in_maintenance.get_or_create(plabels).set(1);
                tracing::info!(consumer = %name, secs = wait.as_secs(), "provider in maintenance: not fetching until the window ends");
                if !sleep_or_cancel(wait, stop).await {
                    return Ended::Stopped;
                }
                // The watchdog must not count the window as a stall.
                watchdog.progressed(tokio::time::Instant::now());
                continue;
            }
            self.metrics.in_maintenance.get_or_create(plabels).set(0);
            let fetched = tokio::select! {
                _ = stop.cancelled() => return Ended::Stopped,
                r = self.fetch(consumer) => r,
            };
            let msgs = match fetched {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(consumer = %name, "fetch failed, re-binding: {e}");
                    return Ended::Rebind;
                }
            };
            // Idle: check the consumer still exists (deleted → re-bind) and run the watchdog.
            // Busy: run the watchdog at most once a second (a backlog in an outage never
            // leaves the fetch empty, and that is exactly when it must look).
            let idle = msgs.is_empty();
            if !idle {
                self.handle_batch(msgs, max_deliver, ack_wait, stop, &mut watchdog)
                    .await;
            }
            if idle || last_check.elapsed() >= Duration::from_secs(1) {
                last_check = tokio::time::Instant::now();
                match self
                    .check_consumer(consumer, name, plabels, &mut watchdog, idle)
                    .await
                {
                    Checked::Config(m, a) => (max_deliver, ack_wait) = (m, a),
                    Checked::Skipped => {}
                    Checked::Rebind => return Ended::Rebind,
                }
            }
        }
        Ended::Stopped
    }

    /// Read the consumer's info: its current settings, and the counts the watchdog judges
    /// (alerting on a stall).
    async fn check_consumer(
        &self,
        consumer: &PullConsumer,
        name: &str,
        plabels: &ProviderLabels,
        watchdog: &mut Watchdog,
        idle: bool,
    ) -> Checked {
        let mut c = consumer.clone();
        let info = match c.info().await {
            Ok(info) => info,
            Err(e) if !idle => {
                tracing::debug!(consumer = %name, "consumer info failed: {e}");
                return Checked::Skipped;
            }
            Err(e) => {
                tracing::warn!(consumer = %name, "consumer info failed, re-binding: {e}");
                return Checked::Rebind;
            }
        };
        let state = ConsumerState {
            pending: info.num_pending,
            ack_pending: info.num_ack_pending as u64,
            ack_floor: info.ack_floor.consumer_sequence,
        };
        let stalled = watchdog.check(state, tokio::time::Instant::now());
        self.metrics
            .consumer_stalled
            .get_or_create(plabels)
            .set(i64::from(stalled.is_some()));
        if let Some(idle_for) = stalled {
            self.alert(
                Severity::Warning,
                "consumer_stalled",
                None,
                format!(
                    "{} notices unfinished on {name} ({} never delivered, {} delivered and not acked) but none finished for {} s: check the provider's PULL API, the sink and the agent's log",
                    state.pending + state.ack_pending,
                    state.pending,
                    state.ack_pending,
                    idle_for.as_secs()
                ),
            )
            .await;
        }
        Checked::Config(info.config.max_deliver, info.config.ack_wait)
    }
}
