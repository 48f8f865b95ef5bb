//! The agent loop, one worker per (subscriber, provider) durable consumer:
//!
//! fetch a batch → group by interface → coalesce into one plan each → pull (bisecting the
//! FROM–TO window on E0004 or a bare 503, bounded depth) → sink → checkpoint compare-and-set →
//! ack the covered notices; nak the uncovered ones with a delay; nak failures with backoff
//! (honouring `Retry-After`); dead-letter and terminate permanent failures.
//!
//! Maintenance ([`crate::maintenance`]): inside a provider's window (its calendar, or an E0900
//! answer) the worker fetches nothing and no request leaves ([`Worker::request`] refuses before
//! the token cache is touched). Notices already in hand are handed back with a nak delayed to
//! the window end ([`Decision::Wait`]). Such naks never fire the "last delivery → dead letter"
//! rule. JetStream counts them as deliveries all the same (`max_deliver` applies to every
//! redelivery), so the agent keeps maintenance from spending that budget: it does not fetch
//! during a window (zero deliveries), a notice in hand at a window's start spends one delivery
//! per window, and a notice already at the consumer's last delivery is not nak'ed at all: it
//! is held (progress heartbeats keep it ours) until the window ends and then processed, since
//! a nak would make JetStream drop it silently.
//!
//! Invariants:
//! - A notice is acked only after the sink accepted the data and the checkpoint was stored.
//!   Acks happen in one place ([`apply`]), after all work of the batch is done; work that is
//!   cut short (shutdown grace over, task aborted) never reaches it.
//! - The agent never creates streams, consumers or buckets: it waits for the relay's
//!   provisioning and re-binds to the consumer after it is deleted or the server restarts.
//! - Row contents are never logged; logs carry counts, ids and interface ids.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer, message::Message};
use futures::StreamExt;
use jiff::Timestamp;
use shirase_proto::subject::{SubjectKind, parse_subject};
use shirase_proto::{BusinessId, InterfaceId, Notice, Severity};
use tokio_util::sync::CancellationToken;

use crate::alert::Alerter;
use crate::checkpoint::Checkpoints;
use crate::coalesce::{self, PlanInput, PlanSettings, PullKind};
use crate::config::{Config, ProviderConfig};
use crate::coverage::Reach;
use crate::dlq::{self, DeadLetter};
use crate::limiter::Limiter;
use crate::maintenance::{Clock, Guard, SystemClock};
use crate::metrics::{IfaceLabels, Metrics, ProviderLabels};
use crate::pull_client::{Outcome, PullClient, PullRequest, Row};
use crate::sink::{Delivery, Record, Sink};
use crate::watchdog::{ConsumerState, Watchdog};

/// What stopped the agent from starting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentErrorKind {
    /// NATS connection options (credentials file).
    Nats,
    /// A provider's client (secret file, TLS backend).
    Client,
    /// The sink could not be built.
    Sink,
    /// The HTTP listener.
    Http,
}

/// The agent could not start.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AgentError {
    kind: AgentErrorKind,
    message: String,
}

impl AgentError {
    fn new(kind: AgentErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    /// What failed.
    pub fn kind(&self) -> AgentErrorKind {
        self.kind
    }
}

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
        let mut clients = Vec::new();
        let mut guards = Vec::new();
        for p in &cfg.providers {
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
            guards.push(Arc::new(Guard::new(calendar, self.clock.clone())));
            let limiter = Arc::new(Limiter::new(p.concurrency, p.rate_per_sec));
            let c = match self.secrets.get(&p.business_id) {
                Some(s) => PullClient::with_secret(p.clone(), s.clone(), limiter),
                None => PullClient::new(p.clone(), limiter),
            }
            .map_err(|e| AgentError::new(AgentErrorKind::Client, e.to_string()))?;
            clients.push(Arc::new(c));
        }
        // Before binding or connecting: an unusable certificate is a configuration error.
        let http_tls = cfg
            .http
            .tls
            .as_ref()
            .map(|t| t.load())
            .transpose()
            .map_err(|e| AgentError::new(AgentErrorKind::Http, e.to_string()))?;
        let listener = match listener {
            Some(l) => Some(l),
            None => match cfg.http_listen() {
                Some(a) => Some(tokio::net::TcpListener::bind(a).await.map_err(|e| {
                    AgentError::new(
                        AgentErrorKind::Http,
                        format!("binding http.listen {a}: {e}"),
                    )
                })?),
                None => None,
            },
        };
        // The first connection is tried in a loop of our own (not retry_on_initial_connect) so
        // that a refused identity (wrong seed, unknown user) stops the agent with a message
        // instead of retrying forever in silence; an unreachable server is retried.
        let mut attempt = 0u32;
        let client = loop {
            match connect_options(&cfg)
                .await?
                .connect(cfg.nats.urls.clone())
                .await
            {
                Ok(c) => break c,
                Err(e)
                    if matches!(
                        e.kind(),
                        async_nats::ConnectErrorKind::AuthorizationViolation
                            | async_nats::ConnectErrorKind::Authentication
                    ) =>
                {
                    return Err(AgentError::new(
                        AgentErrorKind::Nats,
                        format!(
                            "the NATS server refused this agent's identity ({e}): check nats.nkey_seed_file / nats.credentials_file against the server's authorization"
                        ),
                    ));
                }
                Err(e) if matches!(e.kind(), async_nats::ConnectErrorKind::Tls) => {
                    return Err(AgentError::new(
                        AgentErrorKind::Nats,
                        format!(
                            "TLS with the NATS server failed ({e}): check nats.tls_ca_file / nats.tls_cert_file / nats.tls_key_file"
                        ),
                    ));
                }
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(attempt, "connecting to nats.urls: {e}; retrying");
                    let d = Duration::from_millis((250u64 << attempt.min(5)).min(5_000));
                    if !sleep_or_cancel(d, &shutdown).await {
                        return Ok(());
                    }
                }
            }
        };
        let js = jetstream::new(client.clone());
        let alerter = Arc::new(Alerter::new(
            js.clone(),
            cfg.subscriber.to_string(),
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
        for (c, guard) in clients.into_iter().zip(guards) {
            let w = Worker {
                guard,
                stop: shutdown.clone(),
                cfg: cfg.clone(),
                js: js.clone(),
                client: c,
                sink: self.sink.clone(),
                metrics: self.metrics.clone(),
                alerter: alerter.clone(),
                last_seq: std::sync::Mutex::new(HashMap::new()),
                connect_failures: AtomicU32::new(0),
                outage: crate::outage::OutageTracker::new(cfg.outage.alert_after),
                gapped: std::sync::Mutex::new(Vec::new()),
                gap_seen: tokio::sync::Notify::new(),
                first_failure: std::sync::Mutex::new(HashMap::new()),
                recent_rows: std::sync::Mutex::new(HashMap::new()),
                last_overlap: std::sync::Mutex::new(HashMap::new()),
                checkpoints: std::sync::Mutex::new(None),
            };
            let stop = shutdown.clone();
            let w = Arc::new(w);
            let (sw, sweep_stop) = (w.clone(), shutdown.clone());
            tracker.spawn(async move { crate::sweep::run(sw, sweep_stop).await });
            tracker.spawn(async move { w.run(stop).await });
        }
        tracker.close();
        tracker.wait().await;
        // Acks and naks are plain publishes: flush them before the connection goes away.
        let _ = client.flush().await;
        tracing::info!("agent stopped");
        Ok(())
    }
}

/// NATS connection options from `[nats]`: identity (creds file or nkey seed), TLS, and
/// endless reconnection once connected.
async fn connect_options(cfg: &Config) -> Result<async_nats::ConnectOptions, AgentError> {
    let nats = |m: String| AgentError::new(AgentErrorKind::Nats, m);
    let n = &cfg.nats;
    let mut opts = async_nats::ConnectOptions::new()
        .name(format!("shirase-agent-{}", cfg.subscriber))
        .max_reconnects(None);
    if let Some(f) = &n.credentials_file {
        opts = opts
            .credentials_file(f)
            .await
            .map_err(|e| nats(format!("nats.credentials_file {}: {e}", f.display())))?;
    }
    if let Some(f) = &n.nkey_seed_file {
        let seed = std::fs::read_to_string(f)
            .map_err(|e| nats(format!("nats.nkey_seed_file {}: {e}", f.display())))?;
        opts = opts.nkey(seed.trim().to_owned());
    }
    if let Some(f) = &n.tls_ca_file {
        opts = opts.add_root_certificates(f.clone());
    }
    if let (Some(cert), Some(key)) = (&n.tls_cert_file, &n.tls_key_file) {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    if n.tls_required {
        opts = opts.require_tls(true);
    }
    Ok(opts)
}

/// Build an [`Agent`] from `config` (sink from the config) and run it. See [`Agent::run`].
pub async fn run(
    config: Config,
    listener: Option<tokio::net::TcpListener>,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    Agent::new(config)?.run(listener, shutdown).await
}

async fn serve_http(
    l: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    m: Arc<Metrics>,
    c: async_nats::Client,
    stop: CancellationToken,
) {
    use axum::http::StatusCode;
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/healthz",
            get(move || {
                let c = c.clone();
                async move {
                    if c.connection_state() == async_nats::connection::State::Connected {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "nats disconnected")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let m = m.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        );
    if let Err(e) = shirase_proto::https::serve(l, app, tls, stop).await {
        tracing::error!("http listener failed: {e}");
    }
}

/// What to do with one delivered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Ack,
    Nak(Duration),
    /// Nak until a maintenance window ends: not a failure, never dead-lettered.
    Wait(Duration),
    /// Nak because the provider's data does not show the notice yet (uncovered): not a
    /// failure, so the watchdog does not count the delay as a stall.
    Later(Duration),
    Term,
}

struct Item {
    idx: usize,
    notice: Notice,
    replay: bool,
    delivered: u64,
    raw: serde_json::Value,
}

pub(crate) struct Worker {
    guard: Arc<Guard>,
    stop: CancellationToken,
    cfg: Arc<Config>,
    js: jetstream::Context,
    client: Arc<PullClient>,
    sink: Arc<dyn Sink>,
    metrics: Arc<Metrics>,
    alerter: Arc<Alerter>,
    // Per-interface highest sequence seen by this process, for gap detection.
    last_seq: std::sync::Mutex<HashMap<InterfaceId, u64>>,
    connect_failures: AtomicU32,
    // Continuous failure of the provider, for the operating-status alert and recovery message.
    outage: crate::outage::OutageTracker,
    // Interfaces with a sequence gap, waiting for the sweeper's immediate sweep.
    gapped: std::sync::Mutex<Vec<InterfaceId>>,
    // Wakes the sweeper when a gap is seen.
    pub(crate) gap_seen: tokio::sync::Notify,
    // Notice id → first failure time, for the dead letter's `first_failure`.
    first_failure: std::sync::Mutex<HashMap<String, Timestamp>>,
    // Per interface: DB timestamps of rows received by recent window pulls (sorted, pruned to
    // the overlap below the checkpoint). They say how many rows an overlap re-read will meet,
    // so the window can be cut before the provider refuses it.
    recent_rows: std::sync::Mutex<HashMap<InterfaceId, Vec<Timestamp>>>,
    // Per interface: when this process last re-read the overlap below the checkpoint.
    last_overlap: std::sync::Mutex<HashMap<InterfaceId, tokio::time::Instant>>,
    // The checkpoint bucket's handle, looked up once instead of per batch (a lookup is a
    // stream-info request to the server); dropped after a store error so it is looked up again.
    checkpoints: std::sync::Mutex<Option<Checkpoints>>,
}

/// The index of a sweep's synthetic item (no real message has it): never counted as a notice,
/// never dead-lettered.
const SWEEP_IDX: usize = usize::MAX;

/// Most row timestamps remembered per interface for cutting overlap re-reads (16 bytes each);
/// beyond it the oldest are forgotten and bisection handles what they would have told.
const RECENT_ROWS_CAP: usize = 200_000;

async fn sleep_or_cancel(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.cancelled() => false,
    }
}

impl Worker {
    fn provider(&self) -> &ProviderConfig {
        self.client.config()
    }

    fn labels(&self, i: &InterfaceId) -> IfaceLabels {
        IfaceLabels {
            provider: self.provider().business_id.to_string(),
            interface: i.to_string(),
        }
    }

    fn backoff(&self, attempt: u64) -> Duration {
        let r = &self.cfg.retry;
        let exp = attempt.saturating_sub(1).min(20) as u32;
        r.base.saturating_mul(1u32 << exp).min(r.max)
    }

    async fn run(self: Arc<Self>, stop: CancellationToken) {
        let name = shirase_proto::subject::consumer_name(
            &self.cfg.subscriber,
            &self.provider().business_id,
        );
        let plabels = ProviderLabels {
            provider: self.provider().business_id.to_string(),
        };
        let mut attempt = 0u64;
        'bind: while !stop.is_cancelled() {
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
                        break 'bind;
                    }
                    continue;
                }
            };
            if attempt > 0 {
                self.metrics.resubscribes.get_or_create(&plabels).inc();
                tracing::info!(consumer = %name, "bound to consumer");
            }
            attempt = 0;
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
                    self.metrics.in_maintenance.get_or_create(&plabels).set(1);
                    tracing::info!(consumer = %name, secs = wait.as_secs(), "provider in maintenance: not fetching until the window ends");
                    if !sleep_or_cancel(wait, &stop).await {
                        break 'bind;
                    }
                    // The watchdog must not count the window as a stall.
                    watchdog.progressed(tokio::time::Instant::now());
                    continue;
                }
                self.metrics.in_maintenance.get_or_create(&plabels).set(0);
                let fetched = tokio::select! {
                    _ = stop.cancelled() => break 'bind,
                    r = self.fetch(&consumer) => r,
                };
                let msgs = match fetched {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(consumer = %name, "fetch failed, re-binding: {e}");
                        attempt = 1;
                        if !sleep_or_cancel(self.backoff(attempt), &stop).await {
                            break 'bind;
                        }
                        continue 'bind;
                    }
                };
                // Idle: check the consumer still exists (deleted → re-bind) and run the watchdog.
                // Busy: run the watchdog at most once a second (a backlog in an outage never
                // leaves the fetch empty, and that is exactly when it must look).
                let idle = msgs.is_empty();
                if !idle {
                    self.handle_batch(msgs, max_deliver, ack_wait, &stop, &mut watchdog)
                        .await;
                }
                if idle || last_check.elapsed() >= Duration::from_secs(1) {
                    last_check = tokio::time::Instant::now();
                    let mut c = consumer.clone();
                    match c.info().await {
                        Ok(info) => {
                            max_deliver = info.config.max_deliver;
                            ack_wait = info.config.ack_wait;
                            let state = ConsumerState {
                                pending: info.num_pending,
                                ack_pending: info.num_ack_pending as u64,
                                ack_floor: info.ack_floor.consumer_sequence,
                            };
                            let stalled = watchdog.check(state, tokio::time::Instant::now());
                            self.metrics
                                .consumer_stalled
                                .get_or_create(&plabels)
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
                        }
                        Err(e) if !idle => {
                            tracing::debug!(consumer = %name, "consumer info failed: {e}")
                        }
                        Err(e) => {
                            tracing::warn!(consumer = %name, "consumer info failed, re-binding: {e}");
                            attempt = 1;
                            if !sleep_or_cancel(self.backoff(attempt), &stop).await {
                                break 'bind;
                            }
                            continue 'bind;
                        }
                    }
                }
            }
        }
    }

    async fn fetch(&self, consumer: &PullConsumer) -> Result<Vec<Message>, String> {
        let mut batch = consumer
            .fetch()
            .max_messages(self.cfg.batch.size)
            .expires(self.cfg.batch.max_wait)
            .messages()
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Some(m) = batch.next().await {
            match m {
                Ok(m) => out.push(m),
                // Keep what arrived: those messages are ours until acked or nak'ed.
                Err(e) if out.is_empty() => return Err(e.to_string()),
                Err(e) => {
                    tracing::debug!("fetch ended early: {e}");
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Process one batch with progress heartbeats, under the shutdown grace rule, then apply
    /// the decisions.
    async fn handle_batch(
        &self,
        msgs: Vec<Message>,
        max_deliver: i64,
        ack_wait: Duration,
        stop: &CancellationToken,
        watchdog: &mut Watchdog,
    ) {
        let work = self.process(&msgs, max_deliver);
        tokio::pin!(work);
        let grace = self.cfg.shutdown.grace;
        // Three heartbeats per ack_wait, so one lost heartbeat never causes a redelivery.
        let mut tick = tokio::time::interval((ack_wait / 3).max(Duration::from_millis(500)));
        tick.tick().await;
        let stop_after_grace = async {
            stop.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::pin!(stop_after_grace);
        let decisions = loop {
            tokio::select! {
                d = &mut work => break Some(d),
                _ = tick.tick() => {
                    // Long pulls (bisection, 30 s provider timeouts) must not let ack_wait
                    // expire and hand the notices to another replica meanwhile.
                    for m in &msgs {
                        let _ = m.ack_with(AckKind::Progress).await;
                    }
                }
                _ = &mut stop_after_grace => break None,
            }
        };
        match decisions {
            Some(d) => self.apply(&msgs, d, watchdog).await,
            None => {
                tracing::warn!(
                    notices = msgs.len(),
                    "shutdown grace over: handing in-flight notices back"
                );
                for m in &msgs {
                    let _ = m.ack_with(AckKind::Nak(None)).await;
                }
            }
        }
    }

    /// Send the decisions; tells the watchdog what they mean.
    async fn apply(&self, msgs: &[Message], decisions: Vec<Decision>, watchdog: &mut Watchdog) {
        let now = tokio::time::Instant::now();
        for (m, d) in msgs.iter().zip(decisions) {
            let kind = match d {
                Decision::Ack => AckKind::Ack,
                Decision::Nak(delay) | Decision::Wait(delay) | Decision::Later(delay) => {
                    AckKind::Nak(Some(delay))
                }
                Decision::Term => AckKind::Term,
            };
            match m.ack_with(kind).await {
                Ok(()) => match d {
                    Decision::Ack | Decision::Term => watchdog.progressed(now),
                    Decision::Wait(delay) | Decision::Later(delay) => watchdog.parked(now + delay),
                    Decision::Nak(_) => {}
                },
                // The server will redeliver after ack_wait; the work is idempotent.
                Err(e) => tracing::warn!("ack/nak failed: {e}"),
            }
        }
    }

    /// Decide every message of the batch. Does not ack anything itself.
    async fn process(&self, msgs: &[Message], max_deliver: i64) -> Vec<Decision> {
        let mut decisions = vec![Decision::Nak(self.backoff(1)); msgs.len()];
        // `pending` of the last message: notices still waiting on the consumer after this batch.
        let more_pending = msgs
            .last()
            .and_then(|m| m.info().ok())
            .is_some_and(|i| i.pending > 0);
        let mut groups: BTreeMap<InterfaceId, Vec<Item>> = BTreeMap::new();
        for (idx, m) in msgs.iter().enumerate() {
            let delivered = m.info().map(|i| i.delivered.max(1) as u64).unwrap_or(1);
            let replay = matches!(parse_subject(&m.subject), Ok(SubjectKind::Replay { .. }));
            let notice = match shirase_proto::parse_notice(
                &m.payload,
                &shirase_proto::Limits::default(),
            ) {
                Ok(n) => n,
                Err(v) => {
                    // The relay validated it, so this is not a notice at all: it can never
                    // succeed. Term it and tell the operators (subject only, no payload).
                    tracing::error!(subject = %m.subject, violations = v.len(), "undecodable message on the notice stream");
                    self.alert(
                        Severity::Warning,
                        "undecodable_notice",
                        None,
                        format!("undecodable message on {} terminated", m.subject),
                    )
                    .await;
                    decisions[idx] = Decision::Term;
                    continue;
                }
            };
            let raw = serde_json::from_slice(&m.payload).unwrap_or(serde_json::Value::Null);
            let iface = notice.data.interface_id;
            self.metrics
                .notices_received
                .get_or_create(&self.labels(&iface))
                .inc();
            groups.entry(iface).or_default().push(Item {
                idx,
                notice,
                replay,
                delivered,
                raw,
            });
        }
        for iface in groups.keys() {
            self.metrics
                .batches
                .get_or_create(&self.labels(iface))
                .inc();
        }
        let futs = groups
            .into_iter()
            .map(|(iface, items)| self.process_interface(iface, items, max_deliver, more_pending));
        for results in futures::future::join_all(futs).await {
            for (idx, d) in results {
                decisions[idx] = d;
            }
        }
        decisions
    }

    /// Decide one interface's notices; a nak on the consumer's last allowed delivery becomes a
    /// dead letter, because JetStream would otherwise drop the notice silently.
    async fn process_interface(
        &self,
        iface: InterfaceId,
        items: Vec<Item>,
        max_deliver: i64,
        more_pending: bool,
    ) -> Vec<(usize, Decision)> {
        let mut out = self.decide_interface(iface, &items, more_pending).await;
        if max_deliver <= 0 {
            return out;
        }
        // A maintenance nak on the consumer's last delivery would make JetStream drop the
        // notice: hold the batch instead (handle_batch keeps sending progress heartbeats; the
        // worker would not fetch during the window anyway) and decide again when it ends.
        while let Some(wait) = items
            .iter()
            .filter(|it| it.delivered >= max_deliver as u64)
            .find_map(|it| {
                out.iter().find_map(|(i, d)| match d {
                    Decision::Wait(w) if *i == it.idx => Some(*w),
                    _ => None,
                })
            })
        {
            tracing::info!(interface = %iface, secs = wait.as_secs(), "holding notices at their last delivery until the maintenance window ends");
            if !sleep_or_cancel(wait, &self.stop).await {
                return out;
            }
            out = self.decide_interface(iface, &items, more_pending).await;
        }
        // A provider outage never dead-letters: hold notices at their last delivery (progress
        // heartbeats keep them ours) and try again while the provider keeps failing.
        while self.outage.failing()
            && items.iter().any(|it| {
                it.delivered >= max_deliver as u64
                    && out
                        .iter()
                        .any(|(i, d)| *i == it.idx && matches!(d, Decision::Nak(_)))
            })
        {
            if !sleep_or_cancel(self.cfg.retry.max, &self.stop).await {
                return out;
            }
            out = self.decide_interface(iface, &items, more_pending).await;
        }
        let last: Vec<&Item> = items
            .iter()
            .filter(|it| it.delivered >= max_deliver as u64)
            .filter(|it| {
                out.iter().any(|(i, d)| {
                    *i == it.idx && matches!(d, Decision::Nak(_) | Decision::Later(_))
                })
            })
            .collect();
        if last.is_empty() {
            return out;
        }
        let reason =
            format!("still failing at the consumer's last delivery (max_deliver {max_deliver})");
        self.alert(
            Severity::Warning,
            "max_deliver",
            Some(&iface),
            format!("{} notices {reason}; dead-lettered", last.len()),
        )
        .await;
        let dl = self
            .dead_letter(&iface, &last, &reason, None, None, None)
            .await;
        for (idx, d) in dl {
            if let Some(slot) = out.iter_mut().find(|(i, _)| *i == idx) {
                slot.1 = d;
            }
        }
        out
    }

    async fn decide_interface(
        &self,
        iface: InterfaceId,
        items: &[Item],
        more_pending: bool,
    ) -> Vec<(usize, Decision)> {
        let labels = self.labels(&iface);
        if let Some(wait) = self.guard.remaining() {
            let out: Vec<_> = items
                .iter()
                .map(|it| (it.idx, Decision::Wait(wait)))
                .collect();
            self.count(&labels, &out);
            return out;
        }
        let Some(icfg) = self.provider().interface(&iface).cloned() else {
            let reason = format!(
                "interface {iface} is not configured for this agent (providers.interfaces)"
            );
            return self
                .dead_letter_all(&iface, items, &reason, None, None, None)
                .await;
        };
        if items
            .iter()
            .any(|it| it.notice.data.municipality_code != self.cfg.municipality)
        {
            let reason = format!(
                "notice for a municipality other than {}",
                self.cfg.municipality
            );
            return self
                .dead_letter_all(&iface, items, &reason, None, None, None)
                .await;
        }
        let gap = self.detect_gap(&iface, items);

        let kv = match self.checkpoints().await {
            Ok(kv) => kv,
            Err(e) => {
                tracing::warn!(interface = %iface, "checkpoint bucket unavailable: {e}");
                return self.nak_all(&labels, items);
            }
        };
        // Read once; the store below names this read's revision (compare-and-set), so it needs
        // no second read unless the key changed meanwhile.
        let read = match kv.read(&iface).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(interface = %iface, "reading checkpoint: {e}");
                self.forget_checkpoints();
                return self.nak_all(&labels, items);
            }
        };
        let checkpoint = read.current.as_ref().map(|c| c.updated_at);
        let now = Timestamp::now();
        if let Some(c) = checkpoint {
            self.metrics
                .checkpoint_age_seconds
                .get_or_create(&labels)
                .set(now.duration_since(c).as_secs_f64());
        }
        let inputs: Vec<PlanInput> = items
            .iter()
            .map(|it| PlanInput {
                updated_at: it.notice.data.updated_at.instant(),
                change: it.notice.data.change,
                keys: it
                    .notice
                    .data
                    .keys
                    .as_ref()
                    .map(|k| k.atena_no.clone())
                    .unwrap_or_default(),
                replay: it.replay,
            })
            .collect();
        // The overlap below the checkpoint is re-read at most once per
        // `pull.overlap_reread` of a continuous run: between re-reads the windows chain
        // from the checkpoint itself (still without holes), so a burst delivered in many
        // batches does not re-read all its earlier rows in every batch.
        let reread = checkpoint.is_none()
            || self
                .last_overlap
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&iface)
                .is_none_or(|t| t.elapsed() >= self.cfg.overlap_reread());
        let overlap = if reread {
            self.cfg.overlap()
        } else {
            Duration::ZERO
        };
        let settings = PlanSettings {
            overlap,
            keyed_pull_max_keys: icfg.keyed_pull_max_keys,
            gap,
            more_pending,
        };
        let plan = coalesce::plan(&inputs, checkpoint, now, settings);
        let mut hints: Vec<Timestamp> = inputs.iter().map(|i| i.updated_at).collect();
        hints.sort_unstable();
        // Where the rows are, for cutting windows: each notice may bring 2 rows (its own and the
        // previous latest row it demotes), each row already received 1.
        // Both lists are sorted; only the part inside the window being cut is merged (profiled:
        // sorting all remembered rows on every batch was the agent's top CPU cost at 2,000/s).
        let budget = 2 * self.cfg.pull.max_notices_per_window as u64;
        let windows = |from: Timestamp, to: Timestamp| {
            let recent = self.recent_rows.lock().unwrap_or_else(|e| e.into_inner());
            let rows: &[Timestamp] = recent.get(&iface).map_or(&[], Vec::as_slice);
            let rows =
                &rows[rows.partition_point(|t| *t < from)..rows.partition_point(|t| *t < to)];
            let notes =
                &hints[hints.partition_point(|t| *t < from)..hints.partition_point(|t| *t < to)];
            let mut points: Vec<(Timestamp, u64)> = Vec::with_capacity(rows.len() + notes.len());
            let (mut i, mut j) = (0, 0);
            while i < rows.len() || j < notes.len() {
                if j >= notes.len() || (i < rows.len() && rows[i] <= notes[j]) {
                    points.push((rows[i], 1));
                    i += 1;
                } else {
                    points.push((notes[j], 2));
                    j += 1;
                }
            }
            drop(recent);
            coalesce::cut_windows(from, to, &points, budget)
        };

        // Pull. A window pull delivers its rows piece by piece as they arrive; a keyed pull's
        // rows (bounded by its keys) go to the sink below with the tombstones.
        let mut rows: Vec<Row> = Vec::new();
        let mut window_times: Vec<Timestamp> = Vec::new();
        let mut row_count = 0usize;
        let mut window_reach: Option<Reach> = None;
        let mut keyed_reach: Option<Reach> = None;
        if let Some(pull) = &plan.pull {
            let result = match &pull.kind {
                PullKind::Window { from, to } => self
                    .pull_window(&iface, windows(*from, *to), &hints, now)
                    .await
                    .map(Pulled::Window),
                PullKind::Keyed { from, keys } => {
                    let req = PullRequest {
                        interface: iface,
                        from: Some(*from),
                        to: None,
                        keys: keys.clone(),
                    };
                    match self.request(&req).await {
                        Outcome::Data(r) => Ok(Pulled::Keyed(r)),
                        // Too many rows for the keys: fall back to the window.
                        Outcome::TooMany | Outcome::TimeoutSplit { .. } => {
                            let p = coalesce::plan(
                                &inputs,
                                checkpoint,
                                now,
                                PlanSettings {
                                    keyed_pull_max_keys: 0,
                                    ..settings
                                },
                            );
                            match p.pull.map(|p| p.kind) {
                                Some(PullKind::Window { from, to }) => self
                                    .pull_window(&iface, windows(from, to), &hints, now)
                                    .await
                                    .map(Pulled::Window),
                                _ => Err(Failure::Outcome(Outcome::TooMany)),
                            }
                        }
                        o => Err(Failure::Outcome(o)),
                    }
                }
            };
            match result {
                Ok(Pulled::Window(got)) => {
                    window_reach = Some(Reach {
                        max: got.times.iter().max().copied(),
                        per_key: Default::default(),
                    });
                    row_count = got.count;
                    window_times = got.times;
                }
                Ok(Pulled::Keyed(r)) => {
                    keyed_reach = Some(Reach::of(&r));
                    row_count = r.len();
                    rows = r;
                }
                Err(f) => {
                    let covers: Vec<&Item> = pull.covers.iter().map(|&i| &items[i]).collect();
                    let mut out = self.on_failure(&iface, &covers, f).await;
                    // Notices that needed no pull are still done.
                    for &i in &plan.already_covered {
                        out.push((items[i].idx, Decision::Ack));
                    }
                    // Tombstones wait for the next round with the failed ones (until the end of
                    // a maintenance window, if that is what stopped the pull).
                    let wait = out.iter().find_map(|(_, d)| match d {
                        Decision::Wait(w) => Some(*w),
                        _ => None,
                    });
                    for &i in &plan.tombstones {
                        let d = wait.map_or_else(
                            || Decision::Nak(self.backoff(items[i].delivered)),
                            Decision::Wait,
                        );
                        out.push((items[i].idx, d));
                    }
                    self.count(&labels, &out);
                    return out;
                }
            }
        }

        // Sink: rows of a keyed pull, then tombstones.
        let mut records: Vec<Record> = rows.into_iter().map(Record::Row).collect();
        for &i in &plan.tombstones {
            let n = &items[i].notice;
            records.push(Record::Tombstone {
                notice_id: n.id.to_string(),
                atena_no: n
                    .data
                    .keys
                    .as_ref()
                    .map(|k| k.atena_no.iter().map(|a| a.to_string()).collect())
                    .unwrap_or_default(),
                updated_at: n.data.updated_at.clone(),
            });
        }
        if !records.is_empty()
            && let Err(e) = self.deliver(iface, now, records).await
        {
            tracing::warn!(interface = %iface, "sink refused: {e}");
            return self.nak_all(&labels, items);
        }

        // Checkpoint: only a window pull proves everything up to its max row was received.
        if let Some(max) = window_reach.as_ref().and_then(|r| r.max)
            && let Err(e) = kv.advance_from(&iface, max, Some(read)).await
        {
            tracing::warn!(interface = %iface, "storing checkpoint: {e}");
            self.forget_checkpoints();
            return self.nak_all(&labels, items);
        }
        if window_reach.is_some() {
            if reread && !overlap.is_zero() {
                self.last_overlap
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(iface, tokio::time::Instant::now());
            }
            self.remember_rows(
                &iface,
                window_times,
                window_reach.as_ref().and_then(|r| r.max),
            );
        }

        // Decide.
        let mut out = Vec::with_capacity(items.len());
        for &i in plan.tombstones.iter().chain(&plan.already_covered) {
            out.push((items[i].idx, Decision::Ack));
        }
        if let Some(pull) = &plan.pull {
            for &i in &pull.covers {
                let it = &items[i];
                let ts = it.notice.data.updated_at.instant();
                let covered = match (&window_reach, &keyed_reach) {
                    (Some(r), _) => r.covers_window(ts),
                    (None, Some(r)) => r.covers_keys(
                        ts,
                        it.notice
                            .data
                            .keys
                            .iter()
                            .flat_map(|k| k.atena_no.iter().map(|a| a.as_str())),
                    ),
                    (None, None) => false,
                };
                if covered {
                    out.push((it.idx, Decision::Ack));
                } else {
                    self.metrics.uncovered.get_or_create(&labels).inc();
                    if it.delivered >= self.cfg.coverage.uncovered_alert_after {
                        self.alert(
                            Severity::Warning,
                            "uncovered",
                            Some(&iface),
                            format!("notice {} (updated_at {}) is still not covered by the PULL API after {} deliveries; the provider's API may read a lagging replica", it.notice.id, it.notice.data.updated_at, it.delivered),
                        )
                        .await;
                    }
                    out.push((
                        it.idx,
                        Decision::Later(self.cfg.coverage.uncovered_retry_delay),
                    ));
                }
            }
        }
        let oldest = items
            .iter()
            .filter(|it| out.iter().any(|(i, d)| *i == it.idx && *d == Decision::Ack))
            .map(|it| it.notice.time.instant())
            .min();
        if let Some(t) = oldest {
            self.metrics
                .lag_seconds
                .get_or_create(&labels)
                .set(Timestamp::now().duration_since(t).as_secs_f64());
        }
        tracing::debug!(interface = %iface, notices = items.len(), rows = row_count, "batch done");
        self.count(&labels, &out);
        out
    }

    fn count(&self, labels: &IfaceLabels, out: &[(usize, Decision)]) {
        // A sweep's synthetic item is not a notice: it is counted as a sweep only.
        for (_, d) in out.iter().filter(|(i, _)| *i != SWEEP_IDX) {
            match d {
                Decision::Ack => self.metrics.acked.get_or_create(labels).inc(),
                Decision::Nak(_) | Decision::Later(_) => {
                    self.metrics.naked.get_or_create(labels).inc()
                }
                Decision::Wait(_) => {
                    self.metrics.naked.get_or_create(labels).inc();
                    self.metrics
                        .maintenance_deferred
                        .get_or_create(labels)
                        .inc()
                }
                Decision::Term => self.metrics.dead_lettered.get_or_create(labels).inc(),
            };
        }
    }

    fn nak_all(&self, labels: &IfaceLabels, items: &[Item]) -> Vec<(usize, Decision)> {
        let out: Vec<_> = items
            .iter()
            .map(|it| (it.idx, Decision::Nak(self.backoff(it.delivered))))
            .collect();
        self.count(labels, &out);
        out
    }

    fn detect_gap(&self, iface: &InterfaceId, items: &[Item]) -> bool {
        let mut seqs: Vec<u64> = items
            .iter()
            .filter(|it| !it.replay)
            .map(|it| it.notice.sequence.0)
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        let mut last = self.last_seq.lock().unwrap_or_else(|e| e.into_inner());
        let mut missing = 0u64;
        let mut prev = last.get(iface).copied();
        for s in seqs {
            if let Some(p) = prev
                && s > p + 1
            {
                missing += s - p - 1;
            }
            prev = Some(prev.map_or(s, |p| p.max(s)));
        }
        if let Some(p) = prev {
            last.insert(*iface, p);
        }
        drop(last);
        if missing > 0 {
            self.metrics
                .sequence_gaps
                .get_or_create(&self.labels(iface))
                .inc_by(missing);
            tracing::info!(interface = %iface, missing, "sequence gap: forcing a differential pull and a sweep");
            {
                let mut g = self.gapped.lock().unwrap_or_else(|e| e.into_inner());
                if !g.contains(iface) {
                    g.push(*iface);
                }
            }
            self.gap_seen.notify_one();
        }
        missing > 0
    }

    async fn request(&self, req: &PullRequest) -> Outcome {
        // Checked before every request (bisection can run into a window's start); the token
        // request happens inside `pull`, so it is not sent either.
        if let Some(wait) = self.guard.remaining() {
            self.outage.in_maintenance();
            return Outcome::Maintenance {
                retry_after: Some(wait),
            };
        }
        let o = self.client.pull(req).await;
        self.metrics
            .pulls
            .get_or_create(&crate::metrics::PullLabels {
                provider: self.provider().business_id.to_string(),
                interface: req.interface.to_string(),
                outcome: o.label().into(),
            })
            .inc();
        self.track_outage(&o).await;
        o
    }

    /// Sweep one interface (issue 5 item 6): a differential pull from its checkpoint (minus
    /// the overlap) to now, delivered to the sink and checkpointed (CAS) exactly like a
    /// notice-triggered pull, so changes whose notices were never published still arrive.
    /// It runs as a synthetic replay item through [`Worker::decide_interface`]: replay keeps it
    /// out of gap detection and forces a window pull (never keyed). Returns whether it pulled.
    pub(crate) async fn sweep(&self, iface: InterfaceId) -> bool {
        if self.guard.remaining().is_some() {
            return false;
        }
        let Some(icfg) = self.provider().interface(&iface).cloned() else {
            return false;
        };
        let at = shirase_proto::OffsetTimestamp::from_instant_jst(Timestamp::now());
        let notice = Notice::new(
            self.cfg.municipality,
            iface,
            icfg.version,
            shirase_proto::Sequence(0),
            at,
            shirase_proto::ChangeKind::Update,
            None,
        );
        let item = Item {
            idx: SWEEP_IDX,
            notice,
            replay: true,
            delivered: 1,
            raw: serde_json::Value::Null,
        };
        let out = self
            .decide_interface(iface, std::slice::from_ref(&item), false)
            .await;
        let ok = matches!(out.first(), Some((_, Decision::Ack | Decision::Later(_))));
        if ok {
            self.metrics
                .sweeps
                .get_or_create(&self.labels(&iface))
                .inc();
        }
        ok
    }

    /// `sweep.interval` (zero = gap-triggered sweeps only).
    pub(crate) fn sweep_interval(&self) -> Duration {
        self.cfg.sweep.interval
    }

    /// The interfaces this worker's provider serves.
    pub(crate) fn interfaces(&self) -> Vec<InterfaceId> {
        self.provider().interfaces.iter().map(|i| i.id).collect()
    }

    /// Interfaces whose notices showed a sequence gap since the last call.
    pub(crate) fn take_gaps(&self) -> Vec<InterfaceId> {
        std::mem::take(&mut *self.gapped.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Feed the outage tracker; raise its one alert and its one recovery message. The alert
    /// bypasses the alerter's repeat suppression: the tracker already says it exactly once.
    async fn track_outage(&self, o: &Outcome) {
        let p = self.provider().business_id.to_string();
        let now = tokio::time::Instant::now();
        let event = match o {
            Outcome::Connect(_) | Outcome::Transient { .. } | Outcome::TimeoutSplit { .. } => {
                if matches!(o, Outcome::Connect(_)) {
                    self.connect_failures.fetch_add(1, Ordering::Relaxed);
                }
                self.outage.failure(now)
            }
            Outcome::Maintenance { .. } => {
                self.outage.in_maintenance();
                crate::outage::OutageEvent::None
            }
            _ => {
                self.connect_failures.store(0, Ordering::Relaxed);
                self.outage.success(now)
            }
        };
        let (sev, code, message, runbook) = match event {
            crate::outage::OutageEvent::None => return,
            crate::outage::OutageEvent::Alert { failing_for } => (
                Severity::Critical,
                "provider_unreachable",
                format!(
                    "check the operating status of provider {p}: its PULL API has failed for {} s outside its maintenance windows ({} connection failures in a row, last: {}); notices wait in JetStream",
                    failing_for.as_secs(),
                    self.connect_failures.load(Ordering::Relaxed),
                    o.label()
                ),
                "Ask the provider's vendor about its operating status (稼働状況). Nothing is lost: notices wait in JetStream and the agent pulls them when the provider answers; a recovery message follows.",
            ),
            crate::outage::OutageEvent::Recovered { lasted } => (
                Severity::Info,
                "provider_recovered",
                format!(
                    "provider {p} answers again after {} s; the agent is catching up",
                    lasted.as_secs()
                ),
                "Nothing to do; watch num_pending of the consumer go back to 0.",
            ),
        };
        if self
            .alerter
            .raise_now(sev, code, Some(&p), None, message, Some(runbook.into()))
            .await
        {
            self.metrics
                .alerts
                .get_or_create(&crate::metrics::CodeLabels { code: code.into() })
                .inc();
        }
    }

    /// The checkpoint bucket, looked up on first use and kept.
    async fn checkpoints(&self) -> Result<Checkpoints, String> {
        if let Some(c) = self
            .checkpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Ok(c);
        }
        let kv = self
            .js
            .get_key_value(shirase_proto::subject::CHECKPOINT_BUCKET)
            .await
            .map_err(|e| e.to_string())?;
        let c = Checkpoints::new(kv, self.cfg.subscriber.clone(), self.cfg.municipality);
        *self.checkpoints.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
        Ok(c)
    }

    /// Look the bucket up again next time (after a store error: it may have been re-created).
    fn forget_checkpoints(&self) {
        *self.checkpoints.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Remember the DB timestamps of rows a window pull received, pruned to the overlap below
    /// the newest one.
    fn remember_rows(&self, iface: &InterfaceId, mut new: Vec<Timestamp>, max: Option<Timestamp>) {
        let mut all = self.recent_rows.lock().unwrap_or_else(|e| e.into_inner());
        let v = all.entry(*iface).or_default();
        new.sort_unstable();
        // Rows come in time order, so appending keeps the list sorted; sort only otherwise.
        let in_order = v.last().zip(new.first()).is_none_or(|(a, b)| a <= b);
        v.extend(new);
        if !in_order {
            v.sort_unstable();
        }
        if let Some(m) = max.or(v.last().copied()) {
            let floor = m
                .checked_sub(
                    jiff::SignedDuration::try_from(self.cfg.overlap())
                        .unwrap_or(jiff::SignedDuration::MAX),
                )
                .unwrap_or(Timestamp::MIN);
            let keep = v.partition_point(|t| *t < floor);
            v.drain(..keep);
        }
        if v.len() > RECENT_ROWS_CAP {
            let extra = v.len() - RECENT_ROWS_CAP;
            v.drain(..extra);
        }
    }

    /// Pull the consecutive `windows` (planned by [`coalesce::cut_windows`]), bisecting a piece
    /// on E0004 / bare 503 down to `bisect_max_depth`, and hand each piece's rows to the sink as
    /// soon as it arrives, so the agent holds one piece (about `2 × max_notices_per_window`
    /// rows, or the provider's row threshold) at a time, not the whole burst. Pieces run in
    /// time order; on any failure the checkpoint stays where it was, so the pieces already
    /// delivered are pulled and delivered again later (at least once, as inside the overlap).
    /// Returns what was delivered: the count and the newest DB timestamps.
    async fn pull_window(
        &self,
        iface: &InterfaceId,
        windows: Vec<(Timestamp, Timestamp)>,
        hints: &[Timestamp],
        pulled_at: Timestamp,
    ) -> Result<Streamed, Failure> {
        let mut got = Streamed::default();
        let mut stack: Vec<(Timestamp, Timestamp, u32)> = windows
            .into_iter()
            .rev()
            .map(|(f, t)| (f, t, 0u32))
            .collect();
        while let Some((f, t, depth)) = stack.pop() {
            let req = PullRequest {
                interface: *iface,
                from: Some(f),
                to: Some(t),
                keys: vec![],
            };
            match self.request(&req).await {
                Outcome::Data(r) => {
                    got.count += r.len();
                    got.times.extend(r.iter().map(|row| row.updated_at));
                    // Only the newest timestamps are remembered for cutting windows
                    // (`remember_rows`): a sweep over a day's backlog must not hold them all.
                    if got.times.len() > 2 * RECENT_ROWS_CAP {
                        got.times.sort_unstable();
                        let extra = got.times.len() - RECENT_ROWS_CAP;
                        got.times.drain(..extra);
                    }
                    if !r.is_empty() {
                        self.deliver(*iface, pulled_at, r.into_iter().map(Record::Row).collect())
                            .await
                            .map_err(Failure::Sink)?;
                    }
                }
                o @ (Outcome::TooMany | Outcome::TimeoutSplit { .. }) => {
                    match (depth < self.cfg.pull.bisect_max_depth)
                        .then(|| coalesce::split_point(f, t, hints))
                        .flatten()
                    {
                        Some(mid) => {
                            stack.push((mid, t, depth + 1));
                            stack.push((f, mid, depth + 1));
                        }
                        None => {
                            return Err(Failure::BisectExhausted {
                                last: o,
                                from: f,
                                to: t,
                            });
                        }
                    }
                }
                o => return Err(Failure::Outcome(o)),
            }
        }
        Ok(got)
    }

    /// Hand `records` to the sink and count them.
    async fn deliver(
        &self,
        iface: InterfaceId,
        pulled_at: Timestamp,
        records: Vec<Record>,
    ) -> Result<(), String> {
        let d = Delivery {
            interface: iface,
            provider: self.provider().business_id,
            pulled_at,
            records,
        };
        self.sink
            .deliver(&d)
            .await
            .map_err(|e| format!("{e} ({} records)", d.records.len()))?;
        self.metrics
            .rows_delivered
            .get_or_create(&self.labels(&iface))
            .inc_by(d.records.len() as u64);
        Ok(())
    }

    async fn on_failure(
        &self,
        iface: &InterfaceId,
        covers: &[&Item],
        f: Failure,
    ) -> Vec<(usize, Decision)> {
        let nak = |d: &dyn Fn(&Item) -> Duration| {
            covers
                .iter()
                .map(|it| (it.idx, Decision::Nak(d(it))))
                .collect::<Vec<_>>()
        };
        match f {
            Failure::Outcome(Outcome::Transient { retry_after, code }) => {
                tracing::info!(interface = %iface, code = code.as_deref().unwrap_or("-"), "transient provider error");
                nak(&|it| retry_after.unwrap_or_else(|| self.backoff(it.delivered)))
            }
            Failure::Outcome(Outcome::TimeoutSplit { retry_after }) => {
                nak(&|it| retry_after.unwrap_or_else(|| self.backoff(it.delivered)))
            }
            Failure::Outcome(Outcome::Connect(reason)) => {
                tracing::warn!(interface = %iface, "provider unreachable: {reason}");
                nak(&|it| self.backoff(it.delivered))
            }
            Failure::Outcome(Outcome::Maintenance { retry_after }) => {
                // The provider's own signal (E0900), or the calendar caught by `request`: keep
                // every interface of this provider away until the window ends.
                let d = self
                    .guard
                    .announce(retry_after.unwrap_or(self.cfg.retry.max));
                self.client
                    .limiter()
                    .close_until(tokio::time::Instant::now() + d);
                tracing::info!(interface = %iface, secs = d.as_secs(), "provider in maintenance");
                covers
                    .iter()
                    .map(|it| (it.idx, Decision::Wait(d)))
                    .collect()
            }
            Failure::Outcome(Outcome::Unauthorized { message }) => {
                self.alert(
                    Severity::Critical,
                    "unauthorized",
                    Some(iface),
                    format!("provider {} refused our credentials ({message}); check providers.client_id / client_secret_file", self.provider().business_id),
                )
                .await;
                nak(&|_| self.cfg.retry.max)
            }
            Failure::Outcome(Outcome::Permanent {
                status,
                code,
                message,
            }) => {
                let reason = format!(
                    "the PULL API refused the request permanently ({status} {})",
                    code.as_deref().unwrap_or("-")
                );
                self.alert(
                    Severity::Warning,
                    "permanent_error",
                    Some(iface),
                    format!("{reason}: {message}; notices dead-lettered"),
                )
                .await;
                self.dead_letter(iface, covers, &reason, Some(status), code, Some(message))
                    .await
            }
            Failure::BisectExhausted { last, from, to } => {
                let reason = format!(
                    "bisection depth {} exhausted at window [{}, {}) with {}",
                    self.cfg.pull.bisect_max_depth,
                    shirase_proto::OffsetTimestamp::from_instant_jst(from),
                    shirase_proto::OffsetTimestamp::from_instant_jst(to),
                    last.label()
                );
                self.alert(Severity::Warning, "bisect_exhausted", Some(iface), format!("{reason}; raise the provider's threshold or pull.bisect_max_depth; notices dead-lettered")).await;
                let status = match last {
                    Outcome::TooMany => Some(400),
                    _ => Some(503),
                };
                self.dead_letter(iface, covers, &reason, status, None, None)
                    .await
            }
            Failure::Sink(e) => {
                tracing::warn!(interface = %iface, "sink refused: {e}");
                nak(&|it| self.backoff(it.delivered))
            }
            // Data and TooMany never reach here as failures of a window.
            Failure::Outcome(o) => nak(&|it| {
                let _ = &o;
                self.backoff(it.delivered)
            }),
        }
    }

    async fn dead_letter_all(
        &self,
        iface: &InterfaceId,
        items: &[Item],
        reason: &str,
        status: Option<u16>,
        code: Option<String>,
        message: Option<String>,
    ) -> Vec<(usize, Decision)> {
        let refs: Vec<&Item> = items.iter().collect();
        self.alert(
            Severity::Warning,
            "dead_letter",
            Some(iface),
            format!("{reason}; {} notices dead-lettered", items.len()),
        )
        .await;
        let out = self
            .dead_letter(iface, &refs, reason, status, code, message)
            .await;
        self.count(&self.labels(iface), &out);
        out
    }

    async fn dead_letter(
        &self,
        iface: &InterfaceId,
        items: &[&Item],
        reason: &str,
        status: Option<u16>,
        code: Option<String>,
        message: Option<String>,
    ) -> Vec<(usize, Decision)> {
        let mut out = Vec::new();
        let now = Timestamp::now();
        for it in items {
            // A sweep's synthetic item is no notice: nothing to dead-letter (the alert says why).
            if it.idx == SWEEP_IDX {
                out.push((it.idx, Decision::Nak(Duration::ZERO)));
                continue;
            }
            let id = it.notice.id.to_string();
            let first = *self
                .first_failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(id.clone())
                .or_insert(now);
            let dl = DeadLetter {
                subscriber: self.cfg.subscriber.to_string(),
                interface_id: iface.to_string(),
                reason: reason.to_owned(),
                http_status: status,
                code: code.clone(),
                message: message.clone(),
                attempts: it.delivered,
                first_failure: shirase_proto::OffsetTimestamp::from_instant_jst(first).to_string(),
                last_failure: shirase_proto::OffsetTimestamp::from_instant_jst(now).to_string(),
                notice: it.raw.clone(),
            };
            let subject = shirase_proto::subject::dlq_subject(
                &self.cfg.subscriber,
                &it.notice.data.municipality_code,
                &it.notice.data.provider,
                iface,
            );
            match dlq::publish(&self.js, subject, &id, &dl).await {
                Ok(()) => {
                    self.first_failure
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&id);
                    out.push((it.idx, Decision::Term));
                }
                Err(e) => {
                    tracing::error!(notice = %id, "{e}; keeping the notice");
                    out.push((it.idx, Decision::Nak(self.backoff(it.delivered))));
                }
            }
        }
        out
    }

    async fn alert(&self, sev: Severity, code: &str, iface: Option<&InterfaceId>, message: String) {
        let p = self.provider().business_id.to_string();
        let i = iface.map(|i| i.to_string());
        if self
            .alerter
            .raise(sev, code, Some(&p), i.as_deref(), message)
            .await
        {
            self.metrics
                .alerts
                .get_or_create(&crate::metrics::CodeLabels { code: code.into() })
                .inc();
        }
    }
}

/// Why a planned pull produced no rows.
#[derive(Debug)]
/// What a pull brought: a window pull's rows are already delivered (a summary remains); a
/// keyed pull's rows are still to be delivered.
enum Pulled {
    Window(Streamed),
    Keyed(Vec<Row>),
}

/// What a streamed window pull delivered.
#[derive(Debug, Default)]
struct Streamed {
    /// Rows delivered.
    count: usize,
    /// DB timestamps of the rows, at most about `2 × RECENT_ROWS_CAP` of the newest (so the
    /// newest of all is always among them).
    times: Vec<Timestamp>,
}

enum Failure {
    Outcome(Outcome),
    /// The sink refused a piece of a streamed window pull.
    Sink(String),
    BisectExhausted {
        last: Outcome,
        from: Timestamp,
        to: Timestamp,
    },
}
