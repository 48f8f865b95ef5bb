//! The JetStream state the configuration asks for: streams, durable consumers and KV buckets.
//!
//! Pure functions of [`Config`]; [`crate::provision`] compares this desired state with what
//! the server has and applies the difference. Only the relay creates streams.

use std::time::Duration;

use async_nats::jetstream::{consumer, kv, stream};
use shirase_proto::subject::{
    self, ALERT_PREFIX, ALERT_STREAM, CHECKPOINT_BUCKET, DLQ_PREFIX, DLQ_STREAM, NOTICE_PREFIX,
    NOTICE_STREAM, REPLAY_PREFIX,
};
use shirase_proto::{BusinessId, SubscriberId};

use crate::config::{Config, Storage};

/// A durable pull consumer for one (subscriber, provider).
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// The subscriber.
    pub subscriber: SubscriberId,
    /// The provider.
    pub provider: BusinessId,
    /// The consumer configuration.
    pub config: consumer::pull::Config,
}

/// Everything provisioning creates.
#[derive(Debug, Clone)]
pub struct Desired {
    /// `SHIRASE_NOTICES`, `SHIRASE_DLQ`, `SHIRASE_ALERTS`, `SHIRASE_AUDIT`.
    pub streams: Vec<stream::Config>,
    /// Consumers on `SHIRASE_NOTICES`.
    pub consumers: Vec<ConsumerSpec>,
    /// KV buckets (checkpoints, leases).
    pub buckets: Vec<kv::Config>,
}

fn storage(s: Storage) -> stream::StorageType {
    match s {
        Storage::File => stream::StorageType::File,
        Storage::Memory => stream::StorageType::Memory,
    }
}

/// The notice stream's configuration.
pub fn notice_stream(config: &Config) -> stream::Config {
    stream::Config {
        name: NOTICE_STREAM.to_owned(),
        description: Some("Shirase change notices (shirase.notice.>) and per-subscriber replays (shirase.replay.>)".into()),
        subjects: vec![format!("{NOTICE_PREFIX}.>"), format!("{REPLAY_PREFIX}.>")],
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        storage: storage(config.stream.storage),
        num_replicas: config.stream.replicas,
        max_age: config.stream.max_age,
        // When full, the oldest notices go (the agent's sweeps read what a lost notice said
        // changed); refusing new ones would stop ingest for every provider until max_age.
        max_bytes: config.stream.quotas.notices,
        duplicate_window: config.stream.duplicate_window,
        // Operators replay by sequence and the agent reads single messages: direct gets avoid
        // the stream leader for reads.
        allow_direct: true,
        allow_atomic_publish: config.nats.atomic_batches,
        ..Default::default()
    }
}

/// The four streams: notices, dead letters, alerts, audit.
fn streams(config: &Config) -> Vec<stream::Config> {
    let replicas = config.stream.replicas;
    let st = storage(config.stream.storage);
    vec![
        notice_stream(config),
        stream::Config {
            name: DLQ_STREAM.to_owned(),
            description: Some("Shirase dead letters, per subscriber".into()),
            subjects: vec![format!("{DLQ_PREFIX}.>")],
            storage: st,
            num_replicas: replicas,
            max_age: config.stream.dlq_max_age,
            max_bytes: config.stream.quotas.dlq,
            // A dead letter refused is kept by the agent as an unacked notice; one dropped to
            // make room would be lost.
            discard: stream::DiscardPolicy::New,
            duplicate_window: Duration::from_secs(120),
            allow_direct: true,
            ..Default::default()
        },
        stream::Config {
            name: ALERT_STREAM.to_owned(),
            description: Some("Shirase alerts (エラー通知)".into()),
            subjects: vec![format!("{ALERT_PREFIX}.>")],
            storage: st,
            num_replicas: replicas,
            max_age: config.stream.alert_max_age,
            max_bytes: config.stream.quotas.alerts,
            duplicate_window: Duration::from_secs(120),
            allow_direct: true,
            ..Default::default()
        },
        crate::operator::audit::stream_config(config),
    ]
}

/// The desired state for `config`.
pub fn desired(config: &Config) -> Desired {
    let replicas = config.stream.replicas;
    let st = storage(config.stream.storage);
    let streams = streams(config);

    let mut consumers = Vec::new();
    for s in &config.subscribers {
        for p in &config.providers {
            let ifs: Vec<_> = s
                .interfaces
                .iter()
                .filter(|i| i.business_id() == p.business_id)
                .collect();
            if ifs.is_empty() {
                continue;
            }
            let mut filters: Vec<String> = ifs
                .iter()
                .map(|i| subject::notice_subject(&config.municipality, &p.business_id, i))
                .collect();
            filters.extend(
                ifs.iter().map(|i| {
                    subject::replay_subject(&s.id, &config.municipality, &p.business_id, i)
                }),
            );
            let name = subject::consumer_name(&s.id, &p.business_id);
            consumers.push(ConsumerSpec {
                subscriber: s.id.clone(),
                provider: p.business_id,
                config: consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    name: Some(name),
                    description: Some(format!(
                        "notices of provider {} for subscriber {}",
                        p.business_id, s.id
                    )),
                    deliver_policy: consumer::DeliverPolicy::All,
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: s.ack_wait,
                    max_deliver: s.max_deliver,
                    max_ack_pending: s.max_ack_pending,
                    filter_subjects: filters,
                    ..Default::default()
                },
            });
        }
    }

    let buckets = vec![kv::Config {
        bucket: CHECKPOINT_BUCKET.to_owned(),
        description: "Shirase agent checkpoints (max DB update timestamp received per subscriber and interface)".into(),
        history: config.stream.checkpoint_history,
        max_bytes: config.stream.quotas.checkpoints,
        storage: st,
        num_replicas: replicas,
        ..Default::default()
    },
    // Leader leases (crate::lease): one value per lease, expiring with the bucket's max_age
    // unless its holder renews it.
    kv::Config {
        bucket: crate::lease::LEASE_BUCKET.to_owned(),
        description: "Shirase relay leases (the maintenance scheduler's leader)".into(),
        history: 1,
        max_age: config.maintenance.lease_ttl,
        max_bytes: config.stream.quotas.leases,
        storage: st,
        num_replicas: replicas,
        ..Default::default()
    }];

    Desired {
        streams,
        consumers,
        buckets,
    }
}
