//! Prometheus metrics of the relay (`/metrics`), with prometheus-client.
//!
//! Labels carry ids (provider business id, reason) only, never notice contents.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label: the provider's business id.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabel {
    /// 業務ID.
    pub provider: String,
}

/// Label: why a notice or request was rejected.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Reason code (as in the error body's `code`).
    pub reason: String,
}

/// Labels: one consumer.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabel {
    /// Subscriber id.
    pub subscriber: String,
    /// Provider business id.
    pub provider: String,
}

/// Labels: one checkpoint.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckpointLabel {
    /// Subscriber id.
    pub subscriber: String,
    /// Interface id.
    pub interface: String,
}

/// Label: a subscriber.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubscriberLabel {
    /// Subscriber id.
    pub subscriber: String,
}

/// Labels: an operator action and its result.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabel {
    /// `replay`, `resync`, ...
    pub action: String,
    /// `ok`, `error`, `denied`.
    pub result: String,
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Labels: one watched interface.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabel {
    /// Provider business id.
    pub provider: String,
    /// Interface id.
    pub interface: String,
}

/// Labels: one watcher poll's outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchPollLabel {
    /// Provider business id.
    pub provider: String,
    /// Interface id.
    pub interface: String,
    /// `changes`, `idle`, `maintenance`, `error`.
    pub outcome: String,
}

/// The watcher's metrics: per watched interface.
#[derive(Debug, Default, Clone)]
pub struct WatcherMetrics {
    /// Unix time of the last poll that got an answer.
    pub last_poll_timestamp_seconds: Family<WatchLabel, FloatGauge>,
    /// Now minus the watcher's cursor: how far behind the provider's changes it announces.
    pub lag_seconds: Family<WatchLabel, FloatGauge>,
    /// Rows read (counted, never kept).
    pub rows_seen: Family<WatchLabel, Counter>,
    /// Notices published.
    pub notices_emitted: Family<WatchLabel, Counter>,
    /// Polls by outcome.
    pub polls: Family<WatchPollLabel, Counter>,
    /// The current poll interval.
    pub interval_seconds: Family<WatchLabel, FloatGauge>,
    /// 1 while this replica holds the provider's watcher lease.
    pub leader: Family<ProviderLabel, Gauge>,
}

impl WatcherMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "watcher_last_poll_timestamp_seconds",
            "Unix time of the watcher's last answered poll, per interface",
            self.last_poll_timestamp_seconds.clone(),
        );
        registry.register(
            "watcher_lag_seconds",
            "Now minus the watcher's cursor (changes before it are announced), per interface",
            self.lag_seconds.clone(),
        );
        registry.register(
            "watcher_rows_seen",
            "Rows the watcher read (counted, never kept), per interface",
            self.rows_seen.clone(),
        );
        registry.register(
            "watcher_notices_emitted",
            "Notices the watcher published, per interface",
            self.notices_emitted.clone(),
        );
        registry.register(
            "watcher_polls",
            "Watcher polls by outcome (changes, idle, maintenance, error)",
            self.polls.clone(),
        );
        registry.register(
            "watcher_interval_seconds",
            "The watcher's current poll interval, per interface",
            self.interval_seconds.clone(),
        );
        registry.register(
            "watcher_leader",
            "1 while this replica holds the provider's watcher lease",
            self.leader.clone(),
        );
    }
}

/// Gauges refreshed from the operator status on every scrape, and operator action counts.
#[derive(Debug, Default, Clone)]
pub struct OperatorMetrics {
    /// Notices not yet delivered, per consumer.
    pub consumer_pending: Family<ConsumerLabel, Gauge>,
    /// Delivered but not acked, per consumer.
    pub consumer_ack_pending: Family<ConsumerLabel, Gauge>,
    /// Redelivered and not acked, per consumer.
    pub consumer_redelivered: Family<ConsumerLabel, Gauge>,
    /// Age of the oldest unacked notice (0 when none), per consumer.
    pub consumer_oldest_pending_seconds: Family<ConsumerLabel, FloatGauge>,
    /// 1 while the consumer is paused (operator or maintenance).
    pub consumer_paused: Family<ConsumerLabel, Gauge>,
    /// Now minus the stored checkpoint, per subscriber and interface.
    pub checkpoint_age_seconds: Family<CheckpointLabel, FloatGauge>,
    /// Dead letters in SHIRASE_DLQ, per subscriber.
    pub dlq_messages: Family<SubscriberLabel, Gauge>,
    /// 1 while the provider's calendar says it is in a maintenance window (every replica
    /// computes it at each refresh, whether or not it holds the scheduler's lease).
    pub provider_in_maintenance: Family<ProviderLabel, Gauge>,
    /// Operator actions by result.
    pub operator_actions: Family<ActionLabel, Counter>,
    /// Status collections (JetStream reads: consumers, checkpoints, a dead-letter scan) made
    /// for the gauges above, by the refresh timer or `GET /v1/ops/status`; never by a scrape.
    pub status_collections: Counter,
    /// Operator API requests refused for a missing, malformed or unknown token.
    pub operator_login_failures: Counter,
    /// Failed operator logins not written to SHIRASE_AUDIT because the audit rate was reached.
    pub operator_login_failures_unaudited: Counter,
}

impl OperatorMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "consumer_pending",
            "Notices not yet delivered, per consumer",
            self.consumer_pending.clone(),
        );
        registry.register(
            "consumer_ack_pending",
            "Notices delivered but not acked, per consumer",
            self.consumer_ack_pending.clone(),
        );
        registry.register(
            "consumer_redelivered",
            "Notices redelivered and not yet acked, per consumer",
            self.consumer_redelivered.clone(),
        );
        registry.register(
            "consumer_oldest_pending_seconds",
            "Age of the oldest notice not yet acked (0 when none), per consumer",
            self.consumer_oldest_pending_seconds.clone(),
        );
        registry.register(
            "consumer_paused",
            "1 while the consumer is paused (by an operator or for maintenance)",
            self.consumer_paused.clone(),
        );
        registry.register(
            "checkpoint_age_seconds",
            "Now minus the stored checkpoint, per subscriber and interface",
            self.checkpoint_age_seconds.clone(),
        );
        registry.register(
            "dlq_messages",
            "Dead letters in SHIRASE_DLQ, per subscriber",
            self.dlq_messages.clone(),
        );
        registry.register(
            "provider_in_maintenance",
            "1 while the provider's calendar says it is in a maintenance window",
            self.provider_in_maintenance.clone(),
        );
        registry.register(
            "operator_actions",
            "Operator actions by result",
            self.operator_actions.clone(),
        );
        registry.register(
            "status_collections",
            "Status collections (JetStream reads) for the operator gauges: refresh timer and GET /v1/ops/status",
            self.status_collections.clone(),
        );
        registry.register(
            "operator_login_failures",
            "Operator API requests refused for a missing, malformed or unknown token",
            self.operator_login_failures.clone(),
        );
        registry.register(
            "operator_login_failures_unaudited",
            "Failed operator logins over the audit rate, counted but not written to SHIRASE_AUDIT",
            self.operator_login_failures_unaudited.clone(),
        );
    }
}

/// The relay's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Notices stored (or found stored) in JetStream, per provider.
    pub accepted: Family<ProviderLabel, Counter>,
    /// Accepted notices JetStream reported as duplicates, per provider.
    pub duplicates: Family<ProviderLabel, Counter>,
    /// Rejected notices or requests, per reason.
    pub rejected: Family<ReasonLabel, Counter>,
    /// Seconds from first publish attempt to PubAck (including retries).
    pub publish_latency: Histogram,
    /// Publishes waiting for a PubAck.
    pub in_flight: Gauge,
    /// Publish attempts retried after a transient JetStream error.
    pub publish_retries: Counter,
    /// Requests (batches or single notices) waiting for room among the notices in flight.
    pub publish_waiting: Gauge,
    /// Requests answered 503 because no room among the notices in flight freed up in time.
    pub publish_busy: Counter,
    /// Consumer, checkpoint and dead-letter gauges; operator actions.
    pub operator: OperatorMetrics,
    /// 1 while this replica holds the maintenance scheduler's lease.
    pub maintenance_leader: Gauge,
    /// 1 while a provider is in a maintenance window (as seen by the lease holder).
    pub maintenance_paused: Family<ProviderLabel, Gauge>,
    /// Consumer pause requests sent for maintenance, per provider.
    pub maintenance_pause_requests: Family<ProviderLabel, Counter>,
    /// The watcher's metrics.
    pub watcher: WatcherMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics, registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("shirase_relay");
        let accepted = Family::<ProviderLabel, Counter>::default();
        let duplicates = Family::<ProviderLabel, Counter>::default();
        let rejected = Family::<ReasonLabel, Counter>::default();
        let publish_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let in_flight = Gauge::default();
        let publish_retries = Counter::default();
        let publish_waiting = Gauge::default();
        let publish_busy = Counter::default();
        registry.register(
            "notices_accepted",
            "Notices acknowledged by JetStream",
            accepted.clone(),
        );
        registry.register(
            "notices_duplicate",
            "Accepted notices whose id JetStream had already stored",
            duplicates.clone(),
        );
        registry.register(
            "notices_rejected",
            "Rejected notices or requests, by reason",
            rejected.clone(),
        );
        registry.register(
            "publish_duration_seconds",
            "Time from publish to PubAck, retries included",
            publish_latency.clone(),
        );
        registry.register(
            "publish_in_flight",
            "Publishes waiting for a PubAck",
            in_flight.clone(),
        );
        registry.register(
            "publish_retries",
            "Publish attempts retried after a transient JetStream error",
            publish_retries.clone(),
        );
        registry.register(
            "publish_waiting",
            "Requests waiting for room among the notices in flight (nats.max_notices_in_flight)",
            publish_waiting.clone(),
        );
        registry.register(
            "publish_busy",
            "Requests answered 503 because no room among the notices in flight freed up in time",
            publish_busy.clone(),
        );
        let operator = OperatorMetrics::default();
        operator.register(&mut registry);
        let maintenance_leader = Gauge::default();
        let maintenance_paused = Family::<ProviderLabel, Gauge>::default();
        let maintenance_pause_requests = Family::<ProviderLabel, Counter>::default();
        registry.register(
            "maintenance_leader",
            "1 while this replica holds the maintenance scheduler lease",
            maintenance_leader.clone(),
        );
        registry.register(
            "maintenance_in_window",
            "1 while the provider is in a maintenance window",
            maintenance_paused.clone(),
        );
        registry.register(
            "maintenance_pause_requests",
            "Consumer pause requests sent for maintenance",
            maintenance_pause_requests.clone(),
        );
        let watcher = WatcherMetrics::default();
        watcher.register(&mut registry);
        Self {
            registry,
            watcher,
            accepted,
            duplicates,
            rejected,
            publish_latency,
            in_flight,
            publish_retries,
            publish_waiting,
            publish_busy,
            maintenance_leader,
            maintenance_paused,
            maintenance_pause_requests,
            operator,
        }
    }

    /// Count a rejection.
    pub fn reject(&self, reason: &str, n: u64) {
        self.rejected
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc_by(n);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}
