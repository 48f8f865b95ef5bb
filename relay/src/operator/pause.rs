//! Pause and resume a (subscriber, provider) consumer with JetStream's consumer pause
//! (nats-server ≥ 2.11): while paused the server delivers nothing to the agent; notices keep
//! accumulating and are delivered after `until` or a resume.
//!
//! Why and by whom is recorded in the consumer's own metadata (`shirase.pause.*`), so every
//! status reader sees it without another store. Note: `shirase-relay provision` updating this
//! consumer (a changed filter or limit) writes the topology's configuration and so resumes it.

use std::collections::HashMap;

use async_nats::jetstream::{self, consumer};
use serde::{Deserialize, Serialize};
use shirase_proto::subject::{NOTICE_STREAM, consumer_name};

use super::error::OpsError;
use crate::config::Config;

/// Metadata key: why.
pub const META_REASON: &str = "shirase.pause.reason";
/// Metadata key: who.
pub const META_BY: &str = "shirase.pause.by";
/// Metadata key: when.
pub const META_AT: &str = "shirase.pause.at";

/// `POST /v1/ops/pause` and `/v1/ops/resume`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// Subscriber.
    pub subscriber: String,
    /// Provider (業務ID).
    pub provider: String,
    /// Pause until (RFC 3339); pause only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Pause for a duration (`"2h"`, `"30m"`) instead of `until`; pause only.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    /// Why (required for pause), shown in status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The consumer afterwards.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PauseResult {
    /// Consumer name.
    pub consumer: String,
    /// Whether it is paused now.
    pub paused: bool,
    /// Until when (RFC 3339).
    pub paused_until: Option<String>,
    /// Why.
    pub reason: Option<String>,
}

fn name(config: &Config, r: &PauseRequest) -> Result<String, OpsError> {
    let (sid, picked) =
        super::replay::subscriber_subjects(config, &r.subscriber, Some(&r.provider), None)?;
    let Some((b, _)) = picked.first() else {
        return Err(OpsError::invalid(
            "provider",
            "subscriber reads nothing of this provider",
        ));
    };
    Ok(consumer_name(&sid, b))
}

async fn config_of(
    js: &jetstream::Context,
    name: &str,
) -> Result<(jetstream::stream::Stream, consumer::Config), OpsError> {
    let stream = js
        .get_stream(NOTICE_STREAM)
        .await
        .map_err(|e| OpsError::nats("reading SHIRASE_NOTICES", e))?;
    let info = stream.consumer_info(name).await.map_err(|_| {
        OpsError::not_found(format!(
            "consumer {name} does not exist; run shirase-relay provision"
        ))
    })?;
    Ok((stream, info.config))
}

/// Pause.
pub async fn pause(
    js: &jetstream::Context,
    config: &Config,
    actor: &str,
    r: &PauseRequest,
) -> Result<PauseResult, OpsError> {
    let name = name(config, r)?;
    let now = jiff::Timestamp::now();
    let until = match (&r.until, &r.for_) {
        (Some(_), Some(_)) => return Err(OpsError::invalid("for", "give until or for, not both")),
        (None, None) => {
            return Err(OpsError::invalid(
                "until",
                "required: until (RFC 3339) or for (e.g. \"2h\")",
            ));
        }
        (Some(u), None) => u
            .parse::<jiff::Timestamp>()
            .map_err(|_| OpsError::invalid("until", format!("{u:?} is not an RFC 3339 time")))?,
        (None, Some(f)) => {
            let d = crate::config::parse_duration(f).map_err(|e| OpsError::invalid("for", e))?;
            now + jiff::SignedDuration::try_from(d)
                .map_err(|e| OpsError::invalid("for", e.to_string()))?
        }
    };
    if until <= now {
        return Err(OpsError::invalid("until", "must be in the future"));
    }
    let reason = r
        .reason
        .clone()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| OpsError::invalid("reason", "required: say why (shown in status)"))?;
    if reason.len() > 200 {
        return Err(OpsError::invalid("reason", "at most 200 characters"));
    }
    let (stream, mut c) = config_of(js, &name).await?;
    c.metadata.insert(META_REASON.into(), reason.clone());
    c.metadata.insert(META_BY.into(), actor.to_owned());
    c.metadata.insert(META_AT.into(), now.to_string());
    let deadline = time::OffsetDateTime::from_unix_timestamp_nanos(until.as_nanosecond())
        .map_err(|e| OpsError::invalid("until", e.to_string()))?;
    stream
        .update_consumer(c)
        .await
        .map_err(|e| OpsError::nats(&format!("recording why consumer {name} is paused"), e))?;
    stream
        .pause_consumer(&name, deadline)
        .await
        .map_err(|e| OpsError::nats(&format!("pausing consumer {name}"), e))?;
    Ok(PauseResult {
        consumer: name,
        paused: true,
        paused_until: Some(until.to_string()),
        reason: Some(reason),
    })
}

/// Resume.
pub async fn resume(
    js: &jetstream::Context,
    config: &Config,
    r: &PauseRequest,
) -> Result<PauseResult, OpsError> {
    let name = name(config, r)?;
    let (stream, mut c) = config_of(js, &name).await?;
    let keep: HashMap<String, String> = c
        .metadata
        .drain()
        .filter(|(k, _)| !k.starts_with("shirase.pause."))
        .collect();
    c.metadata = keep;
    c.pause_until = None;
    stream
        .update_consumer(c)
        .await
        .map_err(|e| OpsError::nats(&format!("resuming consumer {name}"), e))?;
    stream
        .resume_consumer(&name)
        .await
        .map_err(|e| OpsError::nats(&format!("resuming consumer {name}"), e))?;
    Ok(PauseResult {
        consumer: name,
        paused: false,
        paused_until: None,
        reason: None,
    })
}
