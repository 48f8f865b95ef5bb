//! NATS subjects and JetStream names, both ways.
//!
//! | subject | carries |
//! | --- | --- |
//! | `shirase.notice.<municipality>.<business id>.<interface id>` | notices as providers sent them |
//! | `shirase.replay.<subscriber>.<municipality>.<business id>.<interface id>` | notices an operator replayed for one subscriber |
//! | `shirase.dlq.<subscriber>.<municipality>.<business id>.<interface id>` | dead letters of one subscriber |
//! | `shirase.alert.<severity>.<component>` | alerts (error notification, エラー通知) of the relay |
//! | `shirase.alert.<severity>.agent.<subscriber>` | alerts of one subscriber's agent |
//! | `_INBOX_relay.>`, `_INBOX_provider_<business id>.>`, `_INBOX_subscriber_<subscriber>.>` | replies to one identity (its inbox prefix) |
//!
//! Each identity has its own inbox prefix ([`relay_inbox_prefix`], [`provider_inbox_prefix`],
//! [`subscriber_inbox_prefix`]): the generated NATS authorization lets an identity subscribe to
//! its own prefix only, so no identity can receive another's replies (JetStream API answers,
//! PubAcks, the messages a pull consumer delivers, key-value reads). A client sets it with
//! `async_nats::ConnectOptions::custom_inbox_prefix`; every request, JetStream API call and pull
//! fetch of that client then replies under it.
//!
//! Notices and replays live in one stream ([`NOTICE_STREAM`]) so a subscriber's consumer can
//! filter on both; dead letters live in [`DLQ_STREAM`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::notice::{BusinessId, InterfaceId, MunicipalityCode, Notice, ParseError};

/// The stream holding `shirase.notice.>` and `shirase.replay.>`.
pub const NOTICE_STREAM: &str = "SHIRASE_NOTICES";
/// The stream holding `shirase.dlq.>`.
pub const DLQ_STREAM: &str = "SHIRASE_DLQ";
/// The stream holding `shirase.alert.>`.
pub const ALERT_STREAM: &str = "SHIRASE_ALERTS";
/// The KV bucket of agent checkpoints, keyed by [`checkpoint_key`].
pub const CHECKPOINT_BUCKET: &str = "shirase_checkpoints";
/// Subject prefix of notices.
pub const NOTICE_PREFIX: &str = "shirase.notice";
/// Subject prefix of replays.
pub const REPLAY_PREFIX: &str = "shirase.replay";
/// Subject prefix of dead letters.
pub const DLQ_PREFIX: &str = "shirase.dlq";
/// Subject prefix of alerts.
pub const ALERT_PREFIX: &str = "shirase.alert";

/// A subscriber (consumer system) id: 1 to 32 characters of `a-z`, `0-9` and `-`, starting with
/// a letter. No dots or wildcards, so it is one subject token and part of a consumer name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriberId(String);

impl SubscriberId {
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SubscriberId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let b = s.as_bytes();
        let ok = (1..=32).contains(&b.len())
            && b[0].is_ascii_lowercase()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
        if !ok {
            return Err(ParseError {
                message: format!(
                    "subscriber id must be 1 to 32 characters of a-z, 0-9 and '-', starting with a letter (e.g. delinquency), got {:?}",
                    crate::notice::truncate(s)
                ),
            });
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for SubscriberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for SubscriberId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}
impl<'de> Deserialize<'de> for SubscriberId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The subject a provider's notice is published on.
pub fn notice_subject(m: &MunicipalityCode, b: &BusinessId, i: &InterfaceId) -> String {
    format!("{NOTICE_PREFIX}.{m}.{b}.{i}")
}

impl Notice {
    /// The NATS subject this notice is published on (kept here, with every other subject, so
    /// `notice` does not depend on `subject`).
    pub fn subject(&self) -> String {
        notice_subject(
            &self.data.municipality_code,
            &self.data.provider,
            &self.data.interface_id,
        )
    }
}

impl crate::notice::file::FileNotice {
    /// The NATS subject: the same as a change notice of the interface (so consumers, replays
    /// and maintenance pauses apply unchanged).
    pub fn subject(&self) -> String {
        notice_subject(
            &self.data.municipality_code,
            &self.data.provider,
            &self.data.interface_id,
        )
    }
}

/// The subject a notice replayed for `subscriber` is published on.
pub fn replay_subject(
    s: &SubscriberId,
    m: &MunicipalityCode,
    b: &BusinessId,
    i: &InterfaceId,
) -> String {
    format!("{REPLAY_PREFIX}.{s}.{m}.{b}.{i}")
}

/// The subject a dead letter of `subscriber` is published on.
pub fn dlq_subject(
    s: &SubscriberId,
    m: &MunicipalityCode,
    b: &BusinessId,
    i: &InterfaceId,
) -> String {
    format!("{DLQ_PREFIX}.{s}.{m}.{b}.{i}")
}

/// The subject an alert is published on. `severity` and `component` must be valid tokens
/// (checked by [`parse_subject`] on the way back).
pub fn alert_subject(severity: Severity, component: &str) -> String {
    format!("{ALERT_PREFIX}.{}.{component}", severity.as_str())
}

/// The subject an agent's alert is published on: the subscriber is part of the subject, so the
/// generated authorization can let each subscriber publish its own alerts only.
pub fn agent_alert_subject(severity: Severity, s: &SubscriberId) -> String {
    format!("{ALERT_PREFIX}.{}.{AGENT_COMPONENT}.{s}", severity.as_str())
}

/// The component token of the agent's alerts.
pub const AGENT_COMPONENT: &str = "agent";

/// The inbox prefix of the relay (and operator) identity.
pub fn relay_inbox_prefix() -> String {
    "_INBOX_relay".to_owned()
}

/// The inbox prefix of a provider publishing its notices over NATS.
pub fn provider_inbox_prefix(b: &BusinessId) -> String {
    format!("_INBOX_provider_{b}")
}

/// The inbox prefix of a subscriber's agents.
pub fn subscriber_inbox_prefix(s: &SubscriberId) -> String {
    format!("_INBOX_subscriber_{s}")
}

/// Check an inbox prefix written in a configuration: one or more tokens of `A-Z`, `a-z`, `0-9`,
/// `_` and `-` separated by dots (no wildcard, no empty token, at most 128 characters), so
/// `<prefix>.>` is the subject filter of exactly its replies.
pub fn check_inbox_prefix(p: &str) -> Result<(), ParseError> {
    let ok = (1..=128).contains(&p.len())
        && p.split('.').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(ParseError {
            message: format!(
                "an inbox prefix is 1 to 128 characters: tokens of A-Z, a-z, 0-9, '_' and '-' separated by '.', no wildcard (e.g. _INBOX_subscriber_tax), got {:?}",
                crate::notice::truncate(p)
            ),
        })
    }
}

/// The durable consumer name of (`subscriber`, `provider`): `<subscriber>_<business id>`.
pub fn consumer_name(s: &SubscriberId, b: &BusinessId) -> String {
    format!("{s}_{b}")
}

/// The checkpoint key of (`subscriber`, interface) in [`CHECKPOINT_BUCKET`]:
/// `<subscriber>.<municipality>.<interface id>`.
pub fn checkpoint_key(s: &SubscriberId, m: &MunicipalityCode, i: &InterfaceId) -> String {
    format!("{s}.{m}.{i}")
}

/// Alert severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Needs a person now.
    Critical,
    /// Needs a look today.
    Warning,
    /// For the record.
    Info,
}

impl Severity {
    /// The subject token.
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// What a parsed subject names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectKind {
    /// `shirase.notice.<m>.<b>.<i>`
    Notice {
        /// Municipality.
        municipality: MunicipalityCode,
        /// Providing business.
        provider: BusinessId,
        /// Interface.
        interface: InterfaceId,
    },
    /// `shirase.replay.<s>.<m>.<b>.<i>`
    Replay {
        /// Subscriber the replay is for.
        subscriber: SubscriberId,
        /// Municipality.
        municipality: MunicipalityCode,
        /// Providing business.
        provider: BusinessId,
        /// Interface.
        interface: InterfaceId,
    },
    /// `shirase.dlq.<s>.<m>.<b>.<i>`
    Dlq {
        /// Subscriber whose dead letter it is.
        subscriber: SubscriberId,
        /// Municipality.
        municipality: MunicipalityCode,
        /// Providing business.
        provider: BusinessId,
        /// Interface.
        interface: InterfaceId,
    },
    /// `shirase.alert.<severity>.<component>` or `shirase.alert.<severity>.agent.<subscriber>`
    Alert {
        /// Severity.
        severity: Severity,
        /// Component token (`[a-z0-9-]{1,32}`).
        component: String,
        /// The subscriber whose agent published it (`shirase.alert.<severity>.agent.<subscriber>`).
        subscriber: Option<SubscriberId>,
    },
}

/// Why a subject could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// Not under `shirase.`, or an unknown second token.
    #[error("subject {0:?} is not a Shirase subject (expected shirase.notice|replay|dlq|alert...)")]
    UnknownPrefix(String),
    /// Wrong number of tokens for its kind.
    #[error("subject {subject:?} has {got} tokens, a {kind} subject has {want}")]
    TokenCount {
        /// The subject.
        subject: String,
        /// Its kind.
        kind: &'static str,
        /// Tokens found.
        got: usize,
        /// Tokens expected.
        want: usize,
    },
    /// A token failed its format.
    #[error("subject {subject:?}: {message}")]
    Token {
        /// The subject.
        subject: String,
        /// What is wrong with which token.
        message: String,
    },
    /// The interface id does not belong to the business id token.
    #[error("subject {0:?}: interface id does not belong to the business id token")]
    ProviderMismatch(String),
}

/// Parse a Shirase subject into its parts. Every token is checked against its type's rule.
pub fn parse_subject(subject: &str) -> Result<SubjectKind, SubjectError> {
    let tokens: Vec<&str> = subject.split('.').collect();
    if tokens.len() < 2 || tokens[0] != "shirase" {
        return Err(SubjectError::UnknownPrefix(subject.to_owned()));
    }
    let tok_err = |e: ParseError| SubjectError::Token {
        subject: subject.to_owned(),
        message: e.message,
    };
    let count = |kind: &'static str, want: usize| -> Result<(), SubjectError> {
        if tokens.len() == want {
            Ok(())
        } else {
            Err(SubjectError::TokenCount {
                subject: subject.to_owned(),
                kind,
                got: tokens.len(),
                want,
            })
        }
    };
    let mbi = |t: &[&str]| -> Result<(MunicipalityCode, BusinessId, InterfaceId), SubjectError> {
        let m: MunicipalityCode = t[0].parse().map_err(tok_err)?;
        let b: BusinessId = t[1].parse().map_err(tok_err)?;
        let i: InterfaceId = t[2].parse().map_err(tok_err)?;
        if i.business_id() != b {
            return Err(SubjectError::ProviderMismatch(subject.to_owned()));
        }
        Ok((m, b, i))
    };
    match tokens[1] {
        "notice" => {
            count("notice", 5)?;
            let (municipality, provider, interface) = mbi(&tokens[2..])?;
            Ok(SubjectKind::Notice {
                municipality,
                provider,
                interface,
            })
        }
        "replay" | "dlq" => {
            let kind = if tokens[1] == "replay" {
                "replay"
            } else {
                "dlq"
            };
            count(kind, 6)?;
            let subscriber: SubscriberId = tokens[2].parse().map_err(tok_err)?;
            let (municipality, provider, interface) = mbi(&tokens[3..])?;
            Ok(if kind == "replay" {
                SubjectKind::Replay {
                    subscriber,
                    municipality,
                    provider,
                    interface,
                }
            } else {
                SubjectKind::Dlq {
                    subscriber,
                    municipality,
                    provider,
                    interface,
                }
            })
        }
        "alert" => parse_alert(subject, &tokens),
        _ => Err(SubjectError::UnknownPrefix(subject.to_owned())),
    }
}

/// `shirase.alert.<severity>.<component>` or `shirase.alert.<severity>.agent.<subscriber>`.
fn parse_alert(subject: &str, tokens: &[&str]) -> Result<SubjectKind, SubjectError> {
    let err = |message: String| SubjectError::Token {
        subject: subject.to_owned(),
        message,
    };
    let subscriber = if tokens.len() == 5 && tokens[3] == AGENT_COMPONENT {
        Some(
            tokens[4]
                .parse::<SubscriberId>()
                .map_err(|e| err(e.message))?,
        )
    } else {
        if tokens.len() != 4 {
            return Err(SubjectError::TokenCount {
                subject: subject.to_owned(),
                kind: "alert",
                got: tokens.len(),
                want: 4,
            });
        }
        None
    };
    let severity = match tokens[2] {
        "critical" => Severity::Critical,
        "warning" => Severity::Warning,
        "info" => Severity::Info,
        other => {
            return Err(err(format!(
                "severity must be critical, warning or info, got {other:?}"
            )));
        }
    };
    let c = tokens[3];
    let ok = (1..=32).contains(&c.len())
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        return Err(err(format!(
            "component must be 1 to 32 characters of a-z, 0-9 and '-', got {c:?}"
        )));
    }
    Ok(SubjectKind::Alert {
        severity,
        component: c.to_owned(),
        subscriber,
    })
}

#[cfg(test)]
mod tests;
