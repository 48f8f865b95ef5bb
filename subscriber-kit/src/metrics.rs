//! Prometheus metrics of the agent (served on `/metrics`): notices received, pulls by outcome,
//! rows delivered, checkpoint age, lag, gaps, uncovered notices, acks/naks/dead letters, alerts
//! and the stalled-consumer watchdog.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of per-interface series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IfaceLabels {
    /// Provider business id.
    pub provider: String,
    /// Interface id.
    pub interface: String,
}

/// Labels of pull series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PullLabels {
    /// Provider business id.
    pub provider: String,
    /// Interface id.
    pub interface: String,
    /// Outcome class (see `Outcome::label`).
    pub outcome: String,
}

/// Labels of per-provider series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    /// Provider business id.
    pub provider: String,
}

/// Labels of alert series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    /// Alert code.
    pub code: String,
}

/// All metrics of one agent.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Notices fetched from the consumer.
    pub notices_received: Family<IfaceLabels, Counter>,
    /// PULL requests by outcome (every HTTP data request, bisection halves included).
    pub pulls: Family<PullLabels, Counter>,
    /// Fetched batches that held notices of the interface (each is coalesced into at most one
    /// planned pull; `pulls / batches` is the PULL calls per batch window).
    pub batches: Family<IfaceLabels, Counter>,
    /// Rows and tombstones accepted by the sink.
    pub rows_delivered: Family<IfaceLabels, Counter>,
    /// Notices acked.
    pub acked: Family<IfaceLabels, Counter>,
    /// Notices nak'ed (retry later).
    pub naked: Family<IfaceLabels, Counter>,
    /// Notices dead-lettered and terminated.
    pub dead_lettered: Family<IfaceLabels, Counter>,
    /// Notices a pull did not cover yet.
    pub uncovered: Family<IfaceLabels, Counter>,
    /// Missing sequence numbers seen.
    pub sequence_gaps: Family<IfaceLabels, Counter>,
    /// Sweeps (differential pulls from the checkpoint) completed, scheduled or after a gap.
    pub sweeps: Family<IfaceLabels, Counter>,
    /// Seconds between the stored checkpoint and now, at the last pull.
    pub checkpoint_age_seconds: Family<IfaceLabels, Gauge<f64, AtomicU64>>,
    /// Seconds between a notice's `time` and its ack (last acked batch, oldest notice).
    pub lag_seconds: Family<IfaceLabels, Gauge<f64, AtomicU64>>,
    /// 1 while notices are pending but nothing is delivered.
    pub consumer_stalled: Family<ProviderLabels, Gauge>,
    /// Re-subscriptions after consumer or server loss.
    pub resubscribes: Family<ProviderLabels, Counter>,
    /// Alerts raised.
    pub alerts: Family<CodeLabels, Counter>,
    /// 1 while the provider is in maintenance (calendar or E0900): no requests, no fetches.
    pub in_maintenance: Family<ProviderLabels, Gauge>,
    /// Notices handed back until a maintenance window ends (not counted as failures).
    pub maintenance_deferred: Family<IfaceLabels, Counter>,
    /// Notices naming another interface version (版数) than the one configured (they are
    /// pulled from the configured version).
    pub version_mismatch: Family<IfaceLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Register everything under the `shirase_agent` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("shirase_agent");
        let m = Metrics {
            registry: Registry::default(),
            notices_received: Family::default(),
            pulls: Family::default(),
            batches: Family::default(),
            rows_delivered: Family::default(),
            acked: Family::default(),
            naked: Family::default(),
            dead_lettered: Family::default(),
            uncovered: Family::default(),
            sequence_gaps: Family::default(),
            sweeps: Family::default(),
            checkpoint_age_seconds: Family::default(),
            lag_seconds: Family::default(),
            consumer_stalled: Family::default(),
            resubscribes: Family::default(),
            alerts: Family::default(),
            in_maintenance: Family::default(),
            maintenance_deferred: Family::default(),
            version_mismatch: Family::default(),
        };
        registry.register(
            "notices_received",
            "Notices fetched from the consumer",
            m.notices_received.clone(),
        );
        registry.register("pulls", "PULL requests by outcome", m.pulls.clone());
        registry.register(
            "batches",
            "Fetched batches with notices of the interface",
            m.batches.clone(),
        );
        registry.register(
            "rows_delivered",
            "Rows and tombstones accepted by the sink",
            m.rows_delivered.clone(),
        );
        registry.register("notices_acked", "Notices acked", m.acked.clone());
        registry.register(
            "notices_naked",
            "Notices nak'ed for a retry",
            m.naked.clone(),
        );
        registry.register(
            "notices_dead_lettered",
            "Notices dead-lettered and terminated",
            m.dead_lettered.clone(),
        );
        registry.register(
            "notices_uncovered",
            "Notices a pull did not cover yet",
            m.uncovered.clone(),
        );
        registry.register(
            "sequence_gaps",
            "Missing notice sequence numbers seen",
            m.sequence_gaps.clone(),
        );
        registry.register(
            "sweeps",
            "Differential pulls from the checkpoint (scheduled, or after a sequence gap)",
            m.sweeps.clone(),
        );
        registry.register(
            "checkpoint_age_seconds",
            "Now minus the stored checkpoint",
            m.checkpoint_age_seconds.clone(),
        );
        registry.register(
            "lag_seconds",
            "Notice time to ack, oldest of the last batch",
            m.lag_seconds.clone(),
        );
        registry.register(
            "consumer_stalled",
            "1 while notices are pending but none are delivered",
            m.consumer_stalled.clone(),
        );
        registry.register(
            "resubscribes",
            "Re-subscriptions after consumer or server loss",
            m.resubscribes.clone(),
        );
        registry.register("alerts", "Alerts raised", m.alerts.clone());
        register_provider_state(&mut registry, &m);
        Metrics { registry, ..m }
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }

    /// Data requests made for one interface, all outcomes.
    pub fn pulls_total(&self, provider: &str, interface: &str) -> u64 {
        [
            "data",
            "transient",
            "timeout_split",
            "too_many",
            "maintenance",
            "permanent",
            "unauthorized",
            "connect",
        ]
        .iter()
        .map(|o| self.pulls_count(provider, interface, o))
        .sum()
    }

    /// Data requests of one outcome class.
    pub fn pulls_count(&self, provider: &str, interface: &str, outcome: &str) -> u64 {
        self.pulls
            .get_or_create(&PullLabels {
                provider: provider.into(),
                interface: interface.into(),
                outcome: outcome.into(),
            })
            .get()
    }

    /// Value of a per-interface counter family.
    pub fn iface(
        &self,
        family: &Family<IfaceLabels, Counter>,
        provider: &str,
        interface: &str,
    ) -> u64 {
        family
            .get_or_create(&IfaceLabels {
                provider: provider.into(),
                interface: interface.into(),
            })
            .get()
    }
}

/// Register the families about the provider's state and the notices' versions (split from
/// [`Metrics::new`] to keep it short).
fn register_provider_state(registry: &mut Registry, m: &Metrics) {
    registry.register(
        "in_maintenance",
        "1 while the provider is in a maintenance window",
        m.in_maintenance.clone(),
    );
    registry.register(
        "notices_maintenance_deferred",
        "Notices handed back until a maintenance window ends",
        m.maintenance_deferred.clone(),
    );
    registry.register(
        "version_mismatch",
        "Notices naming another interface version than the configured one (pulled from the configured version)",
        m.version_mismatch.clone(),
    );
}
