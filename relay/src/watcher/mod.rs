//! The watcher: push notices for providers that cannot publish them yet.
//!
//! A standard-compliant system may not be customized (カスタマイズ禁止, no customization), so
//! until its vendor ships the notice function a provider cannot publish notices, and every
//! consumer polls it on its own, multiplying its DB load (データ連携WT 1.1.9). The watcher polls
//! once for all of them: for each watched (provider, interface) it runs the differential PULL
//! call from its own checkpoint, turns the rows into notices ([`notices`]: keys and timestamps
//! only; the rows are dropped at once, it is not a cache) and publishes them through the same
//! [`Publisher`] as HTTP ingest. Subscribers cannot tell watched notices from native ones.
//!
//! **Where it runs, and why:** inside `shirase-relay serve`, started when a provider has a
//! `[providers.watch]` section. The relay already has what the watcher needs: the topology,
//! the maintenance calendars, the publish path with `Nats-Msg-Id` de-duplication, the KV lease
//! machinery and the metrics/status endpoints; a separate binary would repeat all of it and
//! add one more thing to deploy. Relay replicas are stateless, so each runs the watcher, and a
//! KV lease per provider (`watcher.<business id>` in `shirase_leases`) lets exactly one replica
//! poll: the provider sees one poller whatever the number of replicas and subscribers.
//!
//! **No loss, no duplicates** across restarts and replicas ([`state`]): a window `[cursor, to)`
//! is written down (compare-and-set) before it is read, its notices are a pure function of the
//! window and the rows, ids are deterministic, and the cursor moves only after every notice of
//! the window is acknowledged by JetStream. A replica that dies mid-window leaves the window
//! pending; whoever polls next reads the same window and publishes the same ids, which
//! JetStream drops inside its duplicate window, and which the watcher also skips by looking at
//! the last notice stored on the interface's subject (for a pending window older than that).
//!
//! **Schedule:** every `interval` (60 s) at first; after a poll that found changes the interval
//! halves down to `min_interval`, after an idle poll it grows by half up to `max_interval`. No
//! request is sent inside the provider's maintenance window (checked before every request,
//! bisection included); requests go through the provider's rate and concurrency budget.
//!
//! **Switch to native notices:** `watch.until` is the hand-over instant H. The watcher
//! announces changes with a DB update timestamp before H and stops there; HTTP ingest answers
//! the provider's own notices for changes before H with 202 `covered_by_watcher` without
//! publishing them, and publishes those at or after H. Each change is announced exactly once.

pub mod notices;
pub mod state;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use jiff::{SignedDuration, Timestamp};
use shirase_proto::maintenance::{Calendar, Clock, SystemClock};
use shirase_proto::subject::NOTICE_STREAM;
use shirase_proto::{InterfaceId, InterfaceVersion, MunicipalityCode, Notice};
use shirase_pull::{Limiter, Outcome, PullClient, PullRequest};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Provider, WatchConfig};
use crate::lease::{LEASE_BUCKET, Lease};
use crate::metrics::{Metrics, ProviderLabel, WatchLabel, WatchPollLabel};
use crate::publisher::Publisher;
use state::{Pending, StateErrorKind, StateStore, WatchState};

/// What one poll did.
#[derive(Debug, Clone, PartialEq)]
pub enum PollOutcome {
    /// Rows were found and their notices published.
    Changes {
        /// Rows read.
        rows: usize,
        /// Notices published (including ones found already stored).
        notices: usize,
    },
    /// The window held no rows (or was too short to read yet).
    Idle,
    /// Inside a maintenance window: no request was sent. Poll again after the duration.
    Maintenance(Duration),
    /// The checkpoint reached `until`: the provider publishes natively now.
    HandedOver,
    /// The poll failed; the pending window is read again later. Poll again after the
    /// duration when the provider said so.
    Failed(String, Option<Duration>),
}

impl PollOutcome {
    fn label(&self) -> &'static str {
        match self {
            PollOutcome::Changes { .. } => "changes",
            PollOutcome::Idle => "idle",
            PollOutcome::Maintenance(_) => "maintenance",
            PollOutcome::HandedOver => "handed_over",
            PollOutcome::Failed(..) => "error",
        }
    }
}

/// Why reading a window stopped.
enum ReadError {
    Maintenance(Duration),
    Failed(String, Option<Duration>),
}

/// What publishing one window did.
struct WindowDone {
    /// Rows read.
    rows: usize,
    /// The window's notices.
    notices: usize,
    /// Notices found already stored (not published again).
    skipped: usize,
}

/// A checkpoint store error as a failed poll.
fn state_failed(e: state::StateError) -> ReadError {
    ReadError::Failed(e.to_string(), None)
}

/// The watcher of one provider.
#[derive(Debug)]
pub struct Watcher {
    municipality: MunicipalityCode,
    provider: String,
    cfg: WatchConfig,
    versions: BTreeMap<InterfaceId, InterfaceVersion>,
    calendar: Calendar,
    client: PullClient,
    store: StateStore,
    js: jetstream::Context,
    publisher: Publisher,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
}

/// Why a watcher could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WatcherError {
    /// The PULL client could not be built (e.g. the secret file is unreadable).
    #[error("providers[{provider}].watch: {message}")]
    Client {
        /// Business id.
        provider: String,
        /// What went wrong.
        message: String,
    },
    /// The checkpoint bucket is missing.
    #[error(transparent)]
    State(#[from] state::StateError),
}

impl Watcher {
    /// Set up the watcher of `provider` (which must have a `watch` section).
    pub async fn new(
        config: &Config,
        provider: &Provider,
        js: jetstream::Context,
        publisher: Publisher,
        metrics: Arc<Metrics>,
    ) -> Result<Self, WatcherError> {
        let business = provider.business_id.to_string();
        let cfg = provider.watch.clone().ok_or_else(|| WatcherError::Client {
            provider: business.clone(),
            message: "no [providers.watch] section".into(),
        })?;
        let versions: BTreeMap<InterfaceId, InterfaceVersion> = cfg
            .interfaces
            .iter()
            .filter_map(|i| {
                config
                    .interface(i)
                    .next()
                    .map(|ic| (*i, ic.version.clone()))
            })
            .collect();
        let pc = with_versions(
            cfg.pull_client_config(provider),
            &versions,
            config.municipality,
        );
        let limiter = Arc::new(Limiter::new(cfg.concurrency, cfg.rate_per_sec));
        let client = PullClient::new(pc, limiter).map_err(|e| WatcherError::Client {
            provider: business.clone(),
            message: e.to_string(),
        })?;
        let store = StateStore::open(&js, config.municipality).await?;
        Ok(Self {
            municipality: config.municipality,
            provider: business,
            cfg,
            versions,
            calendar: provider.maintenance.clone(),
            client,
            store,
            js,
            publisher,
            metrics,
            clock: Arc::new(SystemClock),
        })
    }

    /// Read maintenance windows through `clock` (tests put "now" near a window).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn labels(&self, i: &InterfaceId) -> WatchLabel {
        WatchLabel {
            provider: self.provider.clone(),
            interface: i.to_string(),
        }
    }

    /// Time left in the maintenance window we are in, if any (and if enforced).
    fn maintenance_left(&self) -> Option<Duration> {
        if !self.cfg.enforce_maintenance {
            return None;
        }
        let now = self.clock.now();
        let w = self.calendar.is_in_maintenance(now)?;
        let left = w.end.duration_since(now);
        Some(Duration::try_from(left).unwrap_or(Duration::ZERO) + Duration::from_secs(1))
    }

    /// Poll one interface once: read the pending (or next) window, publish its notices, move
    /// the checkpoint.
    pub async fn poll(&self, iface: &InterfaceId) -> PollOutcome {
        match self.poll_inner(iface).await {
            Ok(o) => o,
            Err(ReadError::Maintenance(d)) => PollOutcome::Maintenance(d),
            Err(ReadError::Failed(m, d)) => PollOutcome::Failed(m, d),
        }
    }

    /// The provider's API profile (its precision).
    fn api(&self) -> &shirase_pull::ApiProfile {
        &self.client.config().api
    }

    /// [`Self::poll`], with maintenance and failures as errors.
    async fn poll_inner(&self, iface: &InterfaceId) -> Result<PollOutcome, ReadError> {
        let now = Timestamp::now();
        let settle = SignedDuration::try_from(self.cfg.settle).unwrap_or(SignedDuration::ZERO);
        let horizon = {
            // At the provider's precision: with whole-second DB timestamps a window ending
            // inside a second would read the rows of that second stamped before its end,
            // and the next window would skip the ones of the same second committed after.
            let h = self.api().floor(now.checked_sub(settle).unwrap_or(now));
            self.cfg.until.map_or(h, |u| h.min(u))
        };
        let (mut st, mut rev) = self.load_or_create(iface, horizon).await?;
        self.show(iface, &st);
        // Checked after the checkpoint exists: a watcher first started inside a window still
        // announces, after the window, the changes made from its start on.
        if let Some(d) = self.maintenance_left() {
            return Ok(PollOutcome::Maintenance(d));
        }
        let Some(pending) = self.open_window(iface, &mut st, &mut rev, horizon).await? else {
            let handed_over = self.cfg.until.is_some_and(|u| st.cursor >= u);
            return Ok(if handed_over {
                PollOutcome::HandedOver
            } else {
                PollOutcome::Idle
            });
        };
        let done = self.publish_window(iface, &st, pending).await?;
        self.finish_window(iface, &mut st, rev, pending, &done)
            .await?;
        Ok(if done.notices == 0 {
            PollOutcome::Idle
        } else {
            PollOutcome::Changes {
                rows: done.rows,
                notices: done.notices,
            }
        })
    }

    /// The interface's checkpoint and its revision, created at `start` (or `horizon`) when
    /// there is none yet.
    async fn load_or_create(
        &self,
        iface: &InterfaceId,
        horizon: Timestamp,
    ) -> Result<(WatchState, Option<u64>), ReadError> {
        let (st, rev) = self.store.load(iface).await.map_err(state_failed)?;
        if let Some(s) = st {
            return Ok((s, rev));
        }
        let start = self.cfg.start.unwrap_or(horizon);
        let s = WatchState {
            cursor: self.cfg.until.map_or(start, |u| start.min(u)),
            next_sequence: 1,
            pending: None,
            last_poll: None,
            rows_seen: 0,
            notices_emitted: 0,
        };
        let r = self
            .store
            .save(iface, &s, rev)
            .await
            .map_err(state_failed)?;
        tracing::info!(provider = %self.provider, interface = %iface, cursor = %s.cursor, "watcher checkpoint created");
        Ok((s, Some(r)))
    }

    /// The window to read: the pending one, or `[cursor, horizon)` written down as pending
    /// first; `None` when the cursor has reached the horizon.
    async fn open_window(
        &self,
        iface: &InterfaceId,
        st: &mut WatchState,
        rev: &mut Option<u64>,
        horizon: Timestamp,
    ) -> Result<Option<Pending>, ReadError> {
        if let Some(p) = st.pending {
            return Ok(Some(p));
        }
        if horizon <= st.cursor {
            return Ok(None);
        }
        let p = Pending {
            to: horizon,
            first_sequence: st.next_sequence,
        };
        st.pending = Some(p);
        *rev = Some(
            self.store
                .save(iface, st, *rev)
                .await
                .map_err(state_failed)?,
        );
        Ok(Some(p))
    }

    /// Read the window `[cursor, pending.to)` and publish its notices that the stream does not
    /// hold yet.
    async fn publish_window(
        &self,
        iface: &InterfaceId,
        st: &WatchState,
        pending: Pending,
    ) -> Result<WindowDone, ReadError> {
        let rows = self.read(iface, st.cursor, pending.to).await?;
        let window = notices::Window {
            municipality: self.municipality,
            interface: *iface,
            version: self.versions.get(iface).cloned().ok_or_else(|| {
                ReadError::Failed(format!("interface {iface} is not configured"), None)
            })?,
            from: st.cursor,
            to: pending.to,
            first_sequence: pending.first_sequence,
        };
        let ns = notices::build(&window, &rows, self.cfg.max_keys_per_notice);
        let row_count = rows.len();
        drop(rows);
        let skip = self.already_stored(&ns).await;
        for n in &ns[skip..] {
            self.publisher
                .publish(n)
                .await
                .map_err(|f| ReadError::Failed(f.to_string(), None))?;
        }
        Ok(WindowDone {
            rows: row_count,
            notices: ns.len(),
            skipped: skip,
        })
    }

    /// Move the checkpoint past the published window and count it in the metrics.
    async fn finish_window(
        &self,
        iface: &InterfaceId,
        st: &mut WatchState,
        rev: Option<u64>,
        pending: Pending,
        done: &WindowDone,
    ) -> Result<(), ReadError> {
        let (row_count, notice_count, skip) = (done.rows, done.notices, done.skipped);
        st.cursor = pending.to;
        st.next_sequence = pending.first_sequence + notice_count as u64;
        st.pending = None;
        st.last_poll = Some(Timestamp::now());
        st.rows_seen += row_count as u64;
        st.notices_emitted += notice_count as u64;
        match self.store.save(iface, st, rev).await {
            Ok(_) => {}
            // Another replica finished the same window first (its notices had our ids).
            Err(e) if e.kind() == StateErrorKind::Conflict => {
                tracing::info!(provider = %self.provider, interface = %iface, "window finished by another replica");
            }
            Err(e) => return Err(state_failed(e)),
        }
        let l = self.labels(iface);
        self.metrics
            .watcher
            .rows_seen
            .get_or_create(&l)
            .inc_by(row_count as u64);
        self.metrics
            .watcher
            .notices_emitted
            .get_or_create(&l)
            .inc_by((notice_count - skip) as u64);
        tracing::info!(
            provider = %self.provider, interface = %iface, rows = row_count, notices = notice_count,
            skipped_as_stored = skip, to = %pending.to, "watcher window done"
        );
        self.show(iface, st);
        Ok(())
    }

    /// Read `[from, to)`, halving a piece the provider refuses as too large or too slow. Only
    /// (addressee number, update timestamp) of each row survives this function.
    async fn read(
        &self,
        iface: &InterfaceId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<(Option<String>, Timestamp)>, ReadError> {
        let mut out = Vec::new();
        let mut stack = vec![(from, to, 0u32)];
        while let Some((f, t, depth)) = stack.pop() {
            if let Some(d) = self.maintenance_left() {
                return Err(ReadError::Maintenance(d));
            }
            let req = PullRequest {
                interface: *iface,
                from: Some(f),
                to: Some(t),
                keys: vec![],
            };
            match self.client.pull(&req).await {
                Outcome::Data(rows) => out.extend(
                    rows.into_iter()
                        // A provider that answers outside the window would make the
                        // neighbouring window announce the row twice.
                        .filter(|r| f <= r.updated_at && r.updated_at < t)
                        .map(|r| (r.atena_no, r.updated_at)),
                ),
                o @ (Outcome::TooMany | Outcome::TimeoutSplit { .. }) => {
                    // Halves at the provider's precision: below it both halves ask the same.
                    let mid = f
                        .checked_add(t.duration_since(f) / 2)
                        .ok()
                        .map(|m| self.api().floor(m))
                        .filter(|m| *m > f && *m < t);
                    match mid.filter(|_| depth < self.cfg.bisect_max_depth) {
                        Some(mid) => {
                            stack.push((mid, t, depth + 1));
                            stack.push((f, mid, depth + 1));
                        }
                        None => {
                            return Err(ReadError::Failed(
                                format!(
                                    "window [{f}, {t}) still answered {} after {depth} halvings",
                                    o.label()
                                ),
                                None,
                            ));
                        }
                    }
                }
                Outcome::Maintenance { retry_after } => {
                    return Err(ReadError::Maintenance(
                        retry_after.unwrap_or(self.cfg.interval),
                    ));
                }
                Outcome::Transient { retry_after, code } => {
                    return Err(ReadError::Failed(
                        format!("provider answered {}", code.as_deref().unwrap_or("5xx")),
                        retry_after,
                    ));
                }
                o => return Err(ReadError::Failed(format!("{o:?}"), None)),
            }
        }
        Ok(out)
    }

    /// How many of `ns` (a window's notices in sequence order, published one after the other)
    /// the stream already holds: a pending window found after a crash longer than the
    /// stream's duplicate window must not be stored twice.
    async fn already_stored(&self, ns: &[Notice]) -> usize {
        let Some(first) = ns.first() else { return 0 };
        let Ok(stream) = self.js.get_stream_no_info(NOTICE_STREAM).await else {
            return 0;
        };
        let Ok(last) = stream
            .get_last_raw_message_by_subject(&first.subject())
            .await
        else {
            return 0;
        };
        let Ok(stored) = serde_json::from_slice::<Notice>(&last.payload) else {
            return 0;
        };
        ns.iter()
            .position(|n| n.id == stored.id)
            .map_or(0, |p| p + 1)
    }

    /// Lag and last poll of `st` as metrics.
    fn show(&self, iface: &InterfaceId, st: &WatchState) {
        let l = self.labels(iface);
        let lag = Timestamp::now()
            .duration_since(st.cursor)
            .as_secs_f64()
            .max(0.0);
        self.metrics.watcher.lag_seconds.get_or_create(&l).set(lag);
        if let Some(t) = st.last_poll {
            self.metrics
                .watcher
                .last_poll_timestamp_seconds
                .get_or_create(&l)
                .set(t.as_millisecond() as f64 / 1000.0);
        }
    }

    /// Poll every watched interface on its adaptive schedule while this replica holds the
    /// provider's lease, until `stop`.
    pub async fn run(self, holding: Arc<AtomicBool>, stop: CancellationToken) {
        let mut plan: BTreeMap<InterfaceId, (tokio::time::Instant, Duration)> = self
            .cfg
            .interfaces
            .iter()
            .map(|i| (*i, (tokio::time::Instant::now(), self.cfg.interval)))
            .collect();
        loop {
            let here = holding.load(Ordering::SeqCst);
            let now = tokio::time::Instant::now();
            for (iface, (due, interval)) in plan.iter_mut() {
                if !here || *due > now {
                    continue;
                }
                let o = self.poll(iface).await;
                let l = self.labels(iface);
                self.metrics
                    .watcher
                    .polls
                    .get_or_create(&WatchPollLabel {
                        provider: l.provider.clone(),
                        interface: l.interface.clone(),
                        outcome: o.label().into(),
                    })
                    .inc();
                let wait = match &o {
                    PollOutcome::Changes { .. } => {
                        *interval = (*interval / 2).max(self.cfg.min_interval);
                        *interval
                    }
                    PollOutcome::Idle => {
                        *interval = (interval.mul_f64(1.5)).min(self.cfg.max_interval);
                        *interval
                    }
                    PollOutcome::HandedOver => self.cfg.max_interval,
                    PollOutcome::Maintenance(d) => *d,
                    PollOutcome::Failed(m, retry) => {
                        tracing::warn!(provider = %self.provider, interface = %iface, error = %m, "watcher poll failed; the window is read again");
                        retry.unwrap_or(*interval)
                    }
                };
                self.metrics
                    .watcher
                    .interval_seconds
                    .get_or_create(&l)
                    .set(interval.as_secs_f64());
                *due = tokio::time::Instant::now() + wait;
            }
            let next = plan
                .values()
                .map(|(d, _)| *d)
                .min()
                .unwrap_or_else(|| tokio::time::Instant::now() + self.cfg.interval);
            // Wake at least every second to notice a lease change.
            let wake = next.min(tokio::time::Instant::now() + Duration::from_secs(1));
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

/// The PULL client settings with what the API profile's path template may name: each watched
/// interface's version (版数) and the municipality.
fn with_versions(
    mut pc: shirase_pull::PullClientConfig,
    versions: &BTreeMap<InterfaceId, InterfaceVersion>,
    municipality: MunicipalityCode,
) -> shirase_pull::PullClientConfig {
    pc.interfaces = versions
        .iter()
        .map(|(i, v)| {
            let api = shirase_pull::InterfaceApi {
                version: Some(v.to_string()),
                path: None,
            };
            (*i, api)
        })
        .collect();
    pc.municipality = Some(municipality.to_string());
    pc
}

/// Start one watcher per watched provider, each behind its lease. Returns when `shutdown` is
/// cancelled and every lease was released.
pub fn spawn(
    config: Config,
    js: jetstream::Context,
    publisher: Publisher,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let config = Arc::new(config);
    config
        .providers
        .iter()
        .filter(|p| p.watch.is_some())
        .map(|p| {
            let (config, js, publisher, metrics, stop) = (
                config.clone(),
                js.clone(),
                publisher.clone(),
                metrics.clone(),
                shutdown.clone(),
            );
            let business = p.business_id;
            tokio::spawn(async move {
                let Some(provider) = config.providers.iter().find(|p| p.business_id == business)
                else {
                    return;
                };
                let retry = Duration::from_secs(5);
                let watcher = loop {
                    match Watcher::new(
                        &config,
                        provider,
                        js.clone(),
                        publisher.clone(),
                        metrics.clone(),
                    )
                    .await
                    {
                        Ok(w) => break w,
                        Err(e) => tracing::warn!("watcher not started yet: {e}"),
                    }
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(retry) => {}
                    }
                };
                run_with_lease(watcher, &config, &js, metrics, stop).await;
            })
        })
        .collect()
}

/// Hold (or wait for) the provider's lease in one task and poll in another.
pub async fn run_with_lease(
    watcher: Watcher,
    config: &Config,
    js: &jetstream::Context,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let business = watcher.provider.clone();
    let holder = format!("relay-watcher-{}", uuid::Uuid::now_v7());
    let key = format!("watcher.{business}");
    let tick = (config.maintenance.lease_ttl / 3).max(Duration::from_millis(200));
    let holding = Arc::new(AtomicBool::new(false));
    let poller = tokio::spawn(watcher.run(holding.clone(), stop.clone()));
    let label = ProviderLabel {
        provider: business.clone(),
    };
    let mut lease = None;
    loop {
        if lease.is_none() {
            match Lease::open(js, LEASE_BUCKET, &key, holder.clone()).await {
                Ok(l) => lease = Some(l),
                Err(e) => tracing::warn!("watcher lease: {e}"),
            }
        }
        if let Some(l) = &lease {
            let now = match l.try_acquire().await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!("watcher lease: {e}");
                    false
                }
            };
            if now != holding.swap(now, Ordering::SeqCst) {
                tracing::info!(provider = %business, %holder, holding = now, "watcher lease changed hands");
            }
            metrics
                .watcher
                .leader
                .get_or_create(&label)
                .set(i64::from(now));
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(tick) => {}
        }
    }
    let _ = poller.await;
    if let Some(l) = &lease {
        l.release().await;
    }
    metrics.watcher.leader.get_or_create(&label).set(0);
}
