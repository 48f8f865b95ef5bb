//! Dead letters in `SHIRASE_DLQ` (`shirase.dlq.<subscriber>.<m>.<b>.<i>`, written by the agent as
//! [`shirase_proto::record::DeadLetter`]):
//! list, show, redrive (republish the notice as a replay for that subscriber, then delete the
//! dead letter) and purge (delete, only with `yes: true`).
//!
//! A redrive publishes with `Nats-Msg-Id = redrive:<dlq sequence>:<notice id>` and deletes the
//! dead letter only after JetStream acked the copy, so a crash in between re-sends a duplicate
//! JetStream drops, never loses the notice.

use async_nats::HeaderMap;
use async_nats::jetstream;
use serde::{Deserialize, Serialize};
use shirase_proto::record::DeadLetter;
use shirase_proto::subject::{self, DLQ_PREFIX, DLQ_STREAM, SubjectKind};

use super::error::OpsError;
use super::scan::{Scanner, Start};
use crate::config::Config;

/// Which dead letters (query of `GET /v1/ops/dlq`, body of redrive and purge).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlqFilter {
    /// Only this subscriber.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber: Option<String>,
    /// Only this provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Only this interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Only this dead letter (its DLQ stream sequence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Purge only: confirmation.
    #[serde(default)]
    pub yes: bool,
}

/// One dead letter as listed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DlqEntry {
    /// DLQ stream sequence (the id for show, redrive, purge).
    pub seq: u64,
    /// Subscriber.
    pub subscriber: String,
    /// Provider.
    pub provider: String,
    /// Interface.
    pub interface: String,
    /// Notice id.
    pub notice_id: Option<String>,
    /// Why it failed.
    pub reason: String,
    /// HTTP status of the provider's answer.
    pub http_status: Option<u16>,
    /// Provider error code.
    pub code: Option<String>,
    /// Deliveries before it was dead-lettered.
    pub attempts: u64,
    /// First failure.
    pub first_failure: Option<String>,
    /// Last failure.
    pub last_failure: Option<String>,
    /// The whole dead letter (for show).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
}

/// What a redrive or purge did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DlqActionResult {
    /// Dead letters matched.
    pub matched: u64,
    /// Republished as replays (redrive).
    pub redriven: u64,
    /// Deleted from the DLQ.
    pub deleted: u64,
    /// DLQ sequences handled.
    pub seqs: Vec<u64>,
}

/// The listed form of the message `seq`, if its subject is a dead-letter subject. A body that is
/// not a [`DeadLetter`] is still listed (so it can be shown and purged), with the reason why.
fn entry(seq: u64, subject_text: &str, payload: &[u8], with_body: bool) -> Option<DlqEntry> {
    let Ok(SubjectKind::Dlq {
        subscriber,
        provider,
        interface,
        ..
    }) = subject::parse_subject(subject_text)
    else {
        return None;
    };
    let mut e = DlqEntry {
        seq,
        subscriber: subscriber.to_string(),
        provider: provider.to_string(),
        interface: interface.to_string(),
        notice_id: None,
        reason: String::new(),
        http_status: None,
        code: None,
        attempts: 0,
        first_failure: None,
        last_failure: None,
        // The body as stored, members this relay does not know included.
        body: with_body.then(|| serde_json::from_slice(payload).unwrap_or(serde_json::Value::Null)),
    };
    match serde_json::from_slice::<DeadLetter>(payload) {
        Ok(d) => {
            e.notice_id = d.notice_id().map(str::to_owned);
            e.reason = d.reason;
            e.http_status = d.http_status;
            e.code = d.code;
            e.attempts = d.attempts;
            e.first_failure = Some(d.first_failure);
            e.last_failure = Some(d.last_failure);
        }
        Err(x) => e.reason = format!("not a dead letter: {x}"),
    }
    Some(e)
}

fn check(config: &Config, f: &DlqFilter) -> Result<(), OpsError> {
    if let Some(s) = &f.subscriber {
        super::replay::subscriber_subjects(
            config,
            s,
            f.provider.as_deref(),
            f.interface.as_deref(),
        )?;
    } else {
        if let Some(p) = &f.provider {
            p.parse::<shirase_proto::BusinessId>()
                .map_err(|e| OpsError::invalid("provider", e.message))?;
        }
        if let Some(i) = &f.interface {
            i.parse::<shirase_proto::InterfaceId>()
                .map_err(|e| OpsError::invalid("interface", e.message))?;
        }
    }
    Ok(())
}

/// Dead letters matching `f` (at most `limit`), oldest first.
pub async fn list(
    js: &jetstream::Context,
    config: &Config,
    f: &DlqFilter,
    limit: usize,
) -> Result<Vec<DlqEntry>, OpsError> {
    check(config, f)?;
    if let Some(seq) = f.seq {
        return Ok(vec![show(js, seq).await?])
            .map(|v| v.into_iter().filter(|e| matches(e, f)).collect());
    }
    let filter = match &f.subscriber {
        Some(s) => format!("{DLQ_PREFIX}.{s}.>"),
        None => format!("{DLQ_PREFIX}.>"),
    };
    let scan = Scanner::start(js, DLQ_STREAM, vec![filter], Start::All).await?;
    let stored = scan.collect(usize::MAX).await?;
    Ok(stored
        .iter()
        .filter_map(|m| entry(m.seq, &m.subject, &m.payload, false))
        .filter(|e| matches(e, f))
        .take(limit)
        .collect())
}

fn matches(e: &DlqEntry, f: &DlqFilter) -> bool {
    f.subscriber.as_ref().is_none_or(|s| &e.subscriber == s)
        && f.provider.as_ref().is_none_or(|p| &e.provider == p)
        && f.interface.as_ref().is_none_or(|i| &e.interface == i)
        && f.seq.is_none_or(|s| e.seq == s)
}

/// One dead letter with its whole body.
pub async fn show(js: &jetstream::Context, seq: u64) -> Result<DlqEntry, OpsError> {
    let stream = js
        .get_stream(DLQ_STREAM)
        .await
        .map_err(|e| OpsError::nats("reading SHIRASE_DLQ", e))?;
    let m = stream.get_raw_message(seq).await.map_err(|_| {
        OpsError::not_found(format!(
            "no dead letter with sequence {seq} in {DLQ_STREAM}"
        ))
    })?;
    entry(seq, m.subject.as_str(), &m.payload, true).ok_or_else(|| {
        OpsError::not_found(format!(
            "message {seq} in {DLQ_STREAM} is not a dead letter"
        ))
    })
}

/// Republish each matching dead letter's notice as a replay for its subscriber, then delete it.
pub async fn redrive(
    js: &jetstream::Context,
    config: &Config,
    f: &DlqFilter,
) -> Result<DlqActionResult, OpsError> {
    let entries = list(js, config, f, usize::MAX).await?;
    let stream = js
        .get_stream(DLQ_STREAM)
        .await
        .map_err(|e| OpsError::nats("reading SHIRASE_DLQ", e))?;
    let mut out = DlqActionResult {
        matched: entries.len() as u64,
        redriven: 0,
        deleted: 0,
        seqs: Vec::new(),
    };
    for e in entries {
        let full = show(js, e.seq).await?;
        let Some(dead) = full
            .body
            .and_then(|b| serde_json::from_value::<DeadLetter>(b).ok())
        else {
            tracing::warn!(
                seq = e.seq,
                "not a dead letter with a notice; left in place"
            );
            continue;
        };
        let (Ok(sid), Ok(b), Ok(i)) = (
            e.subscriber.parse::<shirase_proto::SubscriberId>(),
            e.provider.parse::<shirase_proto::BusinessId>(),
            e.interface.parse::<shirase_proto::InterfaceId>(),
        ) else {
            continue;
        };
        let payload = serde_json::to_vec(&dead.notice)
            .map_err(|x| OpsError::nats("encoding the notice", x))?;
        let mut h = HeaderMap::new();
        let nid = e.notice_id.clone().unwrap_or_default();
        h.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("redrive:{}:{nid}", e.seq).as_str(),
        );
        let to = subject::replay_subject(&sid, &config.municipality, &b, &i);
        js.publish_with_headers(to, h, payload.into())
            .await
            .map_err(|x| OpsError::nats("republishing a dead letter", x))?
            .await
            .map_err(|x| OpsError::nats("republishing a dead letter", x))?;
        out.redriven += 1;
        if stream
            .delete_message(e.seq)
            .await
            .map_err(|x| OpsError::nats("deleting a redriven dead letter", x))?
        {
            out.deleted += 1;
        }
        out.seqs.push(e.seq);
    }
    Ok(out)
}

/// Delete matching dead letters; refuses without `yes`.
pub async fn purge(
    js: &jetstream::Context,
    config: &Config,
    f: &DlqFilter,
) -> Result<DlqActionResult, OpsError> {
    if !f.yes {
        return Err(OpsError::invalid(
            "yes",
            "purging deletes dead letters for good; confirm with yes: true (CLI: --yes)",
        ));
    }
    let entries = list(js, config, f, usize::MAX).await?;
    let stream = js
        .get_stream(DLQ_STREAM)
        .await
        .map_err(|e| OpsError::nats("reading SHIRASE_DLQ", e))?;
    let mut out = DlqActionResult {
        matched: entries.len() as u64,
        redriven: 0,
        deleted: 0,
        seqs: Vec::new(),
    };
    for e in entries {
        if stream
            .delete_message(e.seq)
            .await
            .map_err(|x| OpsError::nats("deleting a dead letter", x))?
        {
            out.deleted += 1;
            out.seqs.push(e.seq);
        }
    }
    Ok(out)
}
