//! Shirase change-notice protocol (知らせ, "notice").
//!
//! A notice tells a consumer system (利用側) *that* a provider system (提供側) changed data
//! behind one of its standard PULL API interfaces, and *when*; it never carries the data
//! itself and never personal data. This crate is the wire contract shared by the relay, the
//! agent and any provider that writes notices itself.
//!
//! Module map:
//! - [`notice`]: the CloudEvents 1.0 notice type and its typed fields (newtypes); `notice::file`:
//!   the file-ready notice (格納完了通知) of file integration, same envelope, its own `type`.
//! - [`validate`]: validation of untrusted bytes into a [`Notice`], returning every violation
//!   with its JSON Pointer path; batch limits; the personal-data (個人番号) guard.
//! - [`check_digit`]: the JIS X 0402 municipality-code and individual-number check digits.
//! - [`subject`]: NATS subject mapping both ways, stream/consumer/bucket names.
//! - [`config`]: what the relay's and the agent's configuration loaders share: field paths, the
//!   problem list, duration strings, renamed keys (pure; the loaders read the files).
//! - [`maintenance`]: a provider's maintenance calendar (windows like `24:00-27:00` in Japan time,
//!   day types, national holidays); pure, queried with instants.
//! - [`record`]: the other records written to JetStream (checkpoint, dead letter, alert,
//!   audit record, watcher checkpoint), shared by their writers and readers.
//! - `publish` (feature `nats`): a publisher helper for providers that speak NATS directly.
//!
//! Invariant: without the `nats` feature this crate does no I/O and uses no async runtime.
//!
//! The JSON Schemas `schema/notice.v1.json` and `schema/file-ready.v1.json` (for producers in other languages) and the golden
//! examples in `examples/` are kept in agreement with [`validate`] by `tests/schema.rs`; the
//! records' schemas (`schema/*.v1.json`) and examples (`examples/records/`) with the [`record`]
//! types by `tests/records.rs`.
//!
//! # Example
//!
//! Build a notice, serialize it, and validate the bytes the way the relay does:
//!
//! ```
//! use shirase_proto::{parse_notice, ChangeKind, Limits, Notice, Rule, Sequence};
//!
//! # fn main() -> Result<(), shirase_proto::ParseError> {
//! let notice = Notice::new(
//!     "131016".parse()?,                     // municipality (Chiyoda, Tokyo)
//!     "001o05-00".parse()?,                  // interface id (連携ID)
//!     "1.0".parse()?,                        // interface version (版数)
//!     Sequence(42),
//!     "2026-11-25T10:15:30.123+09:00".parse()?, // DB update timestamp
//!     ChangeKind::Update,
//!     None,
//! );
//! assert_eq!(notice.subject(), "shirase.notice.131016.001.001o05-00");
//!
//! let bytes = notice.to_json();
//! assert_eq!(parse_notice(&bytes, &Limits::default()), Ok(notice));
//!
//! // Every violation is reported, each with its JSON Pointer and rule.
//! let bad = br#"{"specversion": "1.0", "data": {"updated_at": "2026-11-25T10:15:30"}}"#;
//! let violations = parse_notice(bad, &Limits::default()).unwrap_err();
//! assert!(violations.iter().any(|v| v.path == "/data/updated_at" && v.rule == Rule::Format));
//! assert!(violations.iter().any(|v| v.path == "/id" && v.rule == Rule::Required));
//! # Ok(())
//! # }
//! ```

pub mod check_digit;
pub mod config;
pub mod maintenance;
pub mod notice;
pub mod record;
mod strict_json;
pub mod subject;
pub mod validate;

#[cfg(feature = "nats")]
pub mod publish;

pub use notice::file::{
    AnyNotice, Envelope, FILE_EVENT_TYPE, FileData, FileNotice, Sha256Hex, SharePath,
};
pub use notice::{
    AtenaNo, BusinessId, ChangeKind, EVENT_TYPE, InterfaceId, InterfaceVersion, Keys,
    MunicipalityCode, Notice, NoticeData, NoticeId, OffsetTimestamp, ParseError, SPEC_VERSION,
    Sequence, Source,
};
pub use subject::{Severity, SubjectError, SubjectKind, SubscriberId};
pub use validate::{
    Limits, Payload, PayloadError, Rule, Violation, parse_any_notice, parse_any_payload,
    parse_any_payload_spans, parse_file_notice, parse_notice, parse_payload, parse_payload_spans,
};
