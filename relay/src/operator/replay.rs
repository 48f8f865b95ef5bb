//! Replay: copy stored notices of a time or sequence range onto one subscriber's replay
//! subjects (`shirase.replay.<subscriber>.<m>.<b>.<i>`), which only that subscriber's
//! consumers filter on: other subscribers see nothing.
//!
//! Each copy carries `Nats-Msg-Id = replay:<replay id>:<notice id>`, so a retried request with
//! the same replay id (client-supplied, or derived from the parameters) is de-duplicated by
//! JetStream within the notice stream's duplicate window. Only `shirase.notice.>` is read:
//! replays of replays cannot happen. The agent always pulls for a replayed notice.

use async_nats::HeaderMap;
use async_nats::jetstream;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shirase_proto::subject::{self, NOTICE_STREAM, SubjectKind};
use shirase_proto::{BusinessId, InterfaceId, SubscriberId};

use super::error::OpsError;
use super::scan::{Scanner, Start};
use crate::config::Config;

/// A replay request (`POST /v1/ops/replay`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// The subscriber to re-deliver to (required).
    pub subscriber: String,
    /// Only this provider (業務ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Only this interface (連携ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Notices stored at or after this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_time: Option<String>,
    /// Notices stored before this time (RFC 3339); default: up to now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_time: Option<String>,
    /// Notices from this stream sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_seq: Option<u64>,
    /// Notices up to this stream sequence (inclusive); default: the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_seq: Option<u64>,
    /// Idempotency key: a retried request with the same id duplicates nothing. Default: derived
    /// from the other parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_id: Option<String>,
    /// Count only.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a replay did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplayResult {
    /// The replay id used in the message ids.
    pub replay_id: String,
    /// The subscriber.
    pub subscriber: String,
    /// Notices in the range that match the filters.
    pub matched: u64,
    /// Copies JetStream stored now.
    pub published: u64,
    /// Copies JetStream already had (a retried replay).
    pub duplicates: u64,
    /// First and last stream sequence matched.
    pub first_seq: Option<u64>,
    /// Last stream sequence matched.
    pub last_seq: Option<u64>,
    /// Nothing was published.
    pub dry_run: bool,
}

/// Validated replay parameters.
#[derive(Debug, Clone)]
pub struct Plan {
    subscriber: SubscriberId,
    filters: Vec<String>,
    start: Start,
    to_time: Option<jiff::Timestamp>,
    to_seq: Option<u64>,
    replay_id: String,
    dry_run: bool,
}

fn parse_time(field: &str, v: &str) -> Result<jiff::Timestamp, OpsError> {
    v.parse::<jiff::Timestamp>().map_err(|_| {
        OpsError::invalid(
            field,
            format!("{v:?} is not an RFC 3339 time (e.g. 2026-11-25T03:00:00+09:00)"),
        )
    })
}

/// The notice subjects of `subscriber`, narrowed to `provider` and `interface`.
pub fn subscriber_subjects(
    config: &Config,
    subscriber: &str,
    provider: Option<&str>,
    interface: Option<&str>,
) -> Result<(SubscriberId, Vec<(BusinessId, InterfaceId)>), OpsError> {
    let sid: SubscriberId = subscriber
        .parse()
        .map_err(|e: shirase_proto::ParseError| OpsError::invalid("subscriber", e.message))?;
    let Some(s) = config.subscribers.iter().find(|s| s.id == sid) else {
        return Err(OpsError::invalid(
            "subscriber",
            format!("no subscriber {sid} in the relay's topology"),
        ));
    };
    let provider: Option<BusinessId> = match provider {
        Some(p) => Some(
            p.parse()
                .map_err(|e: shirase_proto::ParseError| OpsError::invalid("provider", e.message))?,
        ),
        None => None,
    };
    let interface: Option<InterfaceId> =
        match interface {
            Some(i) => Some(i.parse().map_err(|e: shirase_proto::ParseError| {
                OpsError::invalid("interface", e.message)
            })?),
            None => None,
        };
    let picked: Vec<(BusinessId, InterfaceId)> = s
        .interfaces
        .iter()
        .filter(|i| provider.is_none_or(|p| i.business_id() == p))
        .filter(|i| interface.as_ref().is_none_or(|x| *i == x))
        .map(|i| (i.business_id(), *i))
        .collect();
    if picked.is_empty() {
        let field = if interface.is_some() {
            "interface"
        } else {
            "provider"
        };
        return Err(OpsError::invalid(
            field,
            format!("subscriber {sid} reads no such interface"),
        ));
    }
    Ok((sid, picked))
}

impl Plan {
    /// Validate a request; errors name the field.
    pub fn new(config: &Config, r: &ReplayRequest) -> Result<Self, OpsError> {
        let (subscriber, picked) = subscriber_subjects(
            config,
            &r.subscriber,
            r.provider.as_deref(),
            r.interface.as_deref(),
        )?;
        let filters = picked
            .iter()
            .map(|(b, i)| subject::notice_subject(&config.municipality, b, i))
            .collect();
        let by_time = r.from_time.is_some() || r.to_time.is_some();
        let by_seq = r.from_seq.is_some() || r.to_seq.is_some();
        let (start, to_time, to_seq) = match (by_time, by_seq) {
            (true, true) => {
                return Err(OpsError::invalid(
                    "from_seq",
                    "give a time range or a sequence range, not both",
                ));
            }
            (false, false) => {
                return Err(OpsError::invalid(
                    "from_time",
                    "required: a time range (from_time, to_time) or a sequence range (from_seq, to_seq)",
                ));
            }
            (true, false) => {
                let Some(from) = &r.from_time else {
                    return Err(OpsError::invalid("from_time", "required with to_time"));
                };
                let from = parse_time("from_time", from)?;
                let to = r
                    .to_time
                    .as_deref()
                    .map(|t| parse_time("to_time", t))
                    .transpose()?;
                if let Some(to) = to
                    && to <= from
                {
                    return Err(OpsError::invalid("to_time", "must be after from_time"));
                }
                (Start::Time(from), to, None)
            }
            (false, true) => {
                let Some(from) = r.from_seq else {
                    return Err(OpsError::invalid("from_seq", "required with to_seq"));
                };
                if from == 0 {
                    return Err(OpsError::invalid("from_seq", "stream sequences start at 1"));
                }
                if let Some(to) = r.to_seq
                    && to < from
                {
                    return Err(OpsError::invalid("to_seq", "must not be below from_seq"));
                }
                (Start::Sequence(from), None, r.to_seq)
            }
        };
        let replay_id = match &r.replay_id {
            Some(id) => {
                let ok = (1..=64).contains(&id.len())
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !ok {
                    return Err(OpsError::invalid(
                        "replay_id",
                        "must be 1 to 64 characters of A-Z, a-z, 0-9, '-', '_'",
                    ));
                }
                id.clone()
            }
            None => derived_id(r),
        };
        Ok(Self {
            subscriber,
            filters,
            start,
            to_time,
            to_seq,
            replay_id,
            dry_run: r.dry_run,
        })
    }

    /// The replay id.
    pub fn replay_id(&self) -> &str {
        &self.replay_id
    }
}

/// The replay id of a request without one: a digest of its parameters, so sending the same
/// request again is recognised.
pub fn derived_id(r: &ReplayRequest) -> String {
    let canon = serde_json::to_string(&ReplayRequest {
        replay_id: None,
        dry_run: false,
        ..r.clone()
    })
    .unwrap_or_default();
    let d = Sha256::digest(canon.as_bytes());
    format!("r{}", hex::encode(&d[..8]))
}

/// Run a validated replay. Logs progress every 1000 notices.
pub async fn run(js: &jetstream::Context, plan: &Plan) -> Result<ReplayResult, OpsError> {
    let mut result = ReplayResult {
        replay_id: plan.replay_id.clone(),
        subscriber: plan.subscriber.to_string(),
        matched: 0,
        published: 0,
        duplicates: 0,
        first_seq: None,
        last_seq: None,
        dry_run: plan.dry_run,
    };
    let mut scan = Scanner::start(js, NOTICE_STREAM, plan.filters.clone(), plan.start).await?;
    loop {
        let batch = scan.next_batch().await?;
        if batch.is_empty() {
            break;
        }
        let mut end = false;
        let mut acks = Vec::new();
        for m in batch {
            if plan.to_seq.is_some_and(|t| m.seq > t)
                || plan.to_time.is_some_and(|t| m.stored_at >= t)
            {
                end = true;
                break;
            }
            let Ok(SubjectKind::Notice {
                municipality,
                provider,
                interface,
            }) = subject::parse_subject(&m.subject)
            else {
                continue;
            };
            result.matched += 1;
            result.first_seq.get_or_insert(m.seq);
            result.last_seq = Some(m.seq);
            if plan.dry_run {
                continue;
            }
            let notice_id = m.msg_id.clone().unwrap_or_else(|| format!("seq-{}", m.seq));
            let mut h = HeaderMap::new();
            h.insert(
                async_nats::header::NATS_MESSAGE_ID,
                format!("replay:{}:{notice_id}", plan.replay_id).as_str(),
            );
            h.insert("Shirase-Replay-Id", plan.replay_id.as_str());
            let to =
                subject::replay_subject(&plan.subscriber, &municipality, &provider, &interface);
            let ack = js
                .publish_with_headers(to, h, m.payload.clone())
                .await
                .map_err(|e| OpsError::nats("publishing a replayed notice", e))?;
            acks.push(ack);
            if result.matched.is_multiple_of(1000) {
                tracing::info!(replay_id = %plan.replay_id, matched = result.matched, last_seq = m.seq, "replay progress");
            }
        }
        for ack in acks {
            let a = ack
                .await
                .map_err(|e| OpsError::nats("publishing a replayed notice", e))?;
            if a.duplicate {
                result.duplicates += 1;
            } else {
                result.published += 1;
            }
        }
        if end {
            break;
        }
    }
    tracing::info!(
        replay_id = %plan.replay_id, subscriber = %plan.subscriber, matched = result.matched,
        published = result.published, duplicates = result.duplicates, dry_run = plan.dry_run, "replay finished"
    );
    Ok(result)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_derived_replay_id_depends_on_the_range_not_on_dry_run() {
        let a = ReplayRequest {
            subscriber: "tax".into(),
            from_seq: Some(1),
            ..Default::default()
        };
        let dry = ReplayRequest {
            dry_run: true,
            ..a.clone()
        };
        let other = ReplayRequest {
            from_seq: Some(2),
            ..a.clone()
        };
        assert_eq!(derived_id(&a), derived_id(&dry));
        assert_ne!(derived_id(&a), derived_id(&other));
        assert!(derived_id(&a).starts_with('r') && derived_id(&a).len() == 17);
    }
}
