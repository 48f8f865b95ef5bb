//! `[[interfaces]]` (連携ID and 版数 per provider) and `[[subscribers]]` (利用側) with their
//! consumer settings.

use std::time::Duration;

use serde::Deserialize;
use shirase_proto::{BusinessId, InterfaceId, InterfaceVersion, SubscriberId};

use super::common::{Problems, check_nkey};
use super::providers::Provider;

/// `[[interfaces]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInterface {
    /// 連携ID.
    pub id: String,
    /// 版数.
    pub version: String,
    /// Providing business id.
    pub provider: String,
}

/// `[[subscribers]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSubscriber {
    /// Subscriber id.
    pub id: String,
    /// Interfaces it reads.
    pub interfaces: Vec<String>,
    /// Consumer ack wait.
    #[serde(default = "default_ack_wait")]
    pub ack_wait: String,
    /// Consumer max deliveries before the agent dead-letters.
    #[serde(default = "default_max_deliver")]
    pub max_deliver: i64,
    /// Consumer max unacked notices.
    #[serde(default = "default_max_ack_pending")]
    pub max_ack_pending: i64,
    /// Public nkey of the subscriber's agent (optional).
    #[serde(default)]
    pub nats_nkey: Option<String>,
}

fn default_ack_wait() -> String {
    "60s".to_owned()
}
fn default_max_deliver() -> i64 {
    20
}
fn default_max_ack_pending() -> i64 {
    1000
}

/// An interface (連携ID) at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// 連携ID.
    pub id: InterfaceId,
    /// 版数.
    pub version: InterfaceVersion,
    /// Providing business.
    pub provider: BusinessId,
}

/// A subscriber (利用側) and its consumer settings.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// Id.
    pub id: SubscriberId,
    /// Interfaces it reads.
    pub interfaces: Vec<InterfaceId>,
    /// Ack wait of its consumers.
    pub ack_wait: Duration,
    /// Max deliveries.
    pub max_deliver: i64,
    /// Max unacked.
    pub max_ack_pending: i64,
    /// Public nkey of its agent.
    pub nats_nkey: Option<String>,
}

/// Validate `[[interfaces]]` against the validated providers.
pub(super) fn validate_interfaces(
    raw: &[RawInterface],
    providers: &[Provider],
    p: &mut Problems,
) -> Vec<Interface> {
    let mut interfaces: Vec<Interface> = Vec::new();
    for (i, ri) in raw.iter().enumerate() {
        let path = format!("interfaces[{i}]");
        let id = p.parse::<InterfaceId>(&format!("{path}.id"), &ri.id);
        let version = p.parse::<InterfaceVersion>(&format!("{path}.version"), &ri.version);
        let provider = p.parse::<BusinessId>(&format!("{path}.provider"), &ri.provider);
        if let (Some(id), Some(version), Some(provider)) = (id, version, provider) {
            if id.business_id() != provider {
                p.push(
                    format!("{path}.provider"),
                    format!(
                        "interface {id} belongs to business {}, not {provider}",
                        id.business_id()
                    ),
                );
            } else if !providers.iter().any(|pr| pr.business_id == provider) {
                p.push(
                    format!("{path}.provider"),
                    format!("no provider with business_id {provider} is configured"),
                );
            }
            if interfaces
                .iter()
                .any(|x| x.id == id && x.version == version)
            {
                p.push(
                    path.clone(),
                    format!("interface {id} version {version} is listed twice"),
                );
            }
            interfaces.push(Interface {
                id,
                version,
                provider,
            });
        }
    }
    interfaces
}

/// Validate `[[subscribers]]` against the validated interfaces.
pub(super) fn validate_subscribers(
    raw: &[RawSubscriber],
    interfaces: &[Interface],
    p: &mut Problems,
) -> Vec<Subscriber> {
    let mut subscribers: Vec<Subscriber> = Vec::new();
    for (i, rs) in raw.iter().enumerate() {
        let path = format!("subscribers[{i}]");
        let id = p.parse::<SubscriberId>(&format!("{path}.id"), &rs.id);
        if let Some(id) = &id
            && subscribers.iter().any(|s| &s.id == id)
        {
            p.push(
                format!("{path}.id"),
                format!("subscriber {id} is listed twice"),
            );
        }
        let mut ifs = Vec::new();
        if rs.interfaces.is_empty() {
            p.push(
                format!("{path}.interfaces"),
                "list at least one interface id",
            );
        }
        for (j, s) in rs.interfaces.iter().enumerate() {
            let ipath = format!("{path}.interfaces[{j}]");
            if let Some(iid) = p.parse::<InterfaceId>(&ipath, s) {
                if !interfaces.iter().any(|x| x.id == iid) {
                    p.push(&ipath, format!("interface {iid} is not in [[interfaces]]"));
                } else if !ifs.contains(&iid) {
                    ifs.push(iid);
                }
            }
        }
        let ack_wait = p
            .duration(&format!("{path}.ack_wait"), &rs.ack_wait)
            .unwrap_or_default();
        if ack_wait < Duration::from_secs(1) {
            p.push(format!("{path}.ack_wait"), "must be at least 1s");
        }
        if rs.max_deliver < 1 && rs.max_deliver != -1 {
            p.push(
                format!("{path}.max_deliver"),
                "must be at least 1 (or -1 for unlimited)",
            );
        }
        if rs.max_ack_pending < 1 {
            p.push(format!("{path}.max_ack_pending"), "must be at least 1");
        }
        if let Some(k) = &rs.nats_nkey {
            check_nkey(p, &format!("{path}.nats_nkey"), k);
        }
        if let Some(id) = id {
            subscribers.push(Subscriber {
                id,
                interfaces: ifs,
                ack_wait,
                max_deliver: rs.max_deliver,
                max_ack_pending: rs.max_ack_pending,
                nats_nkey: rs.nats_nkey.clone(),
            });
        }
    }
    subscribers
}
