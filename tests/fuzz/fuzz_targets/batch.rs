//! A `POST /v1/notices` body (`shirase_proto::parse_payload`, as the relay's ingest calls it)
//! under limits chosen by the input, so that small inputs reach every limit.
//!
//! Invariants, beyond "no panic":
//! - a body over `max_batch_bytes` is refused as too large, and only such a body is;
//! - an accepted batch has one result per array item, at least one and at most
//!   `max_batch_notices`; a refused one for too many items had more than that;
//! - a single object gets exactly `parse_notice`'s answer; each batch item gets
//!   `parse_notice`'s answer for its own bytes;
//! - whole-body refusals are violations at path `""`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use shirase_proto::{Limits, Payload, PayloadError, parse_notice, parse_payload};

fuzz_target!(|data: &[u8]| {
    // Two bytes pick the limits; the rest is the body.
    let (limits, body) = match data {
        [a, b, rest @ ..] => (
            Limits {
                max_notice_bytes: 64 + usize::from(*a & 0x0f) * 128,
                max_batch_notices: 1 + usize::from(*a >> 4),
                max_batch_bytes: 16 + usize::from(*b) * 16,
                max_keys: 1 + usize::from(*b & 0x07),
            },
            rest,
        ),
        _ => (Limits::default(), data),
    };
    let result = parse_payload(body, &limits);
    if body.len() > limits.max_batch_bytes {
        assert!(
            matches!(result, Err(PayloadError::TooLarge { bytes, limit }) if bytes == body.len() && limit == limits.max_batch_bytes),
            "{result:?}"
        );
        return;
    }
    match result {
        Err(PayloadError::TooLarge { .. }) => {
            panic!("a body within the limit refused as too large")
        }
        Err(PayloadError::TooMany { count, limit }) => {
            assert_eq!(limit, limits.max_batch_notices);
            assert!(count > limit);
            if let Some(n) = item_count(body) {
                assert_eq!(n, count);
            }
        }
        Err(PayloadError::Empty) => assert_eq!(item_count(body), Some(0)),
        Err(e) => {
            let v = e.violation();
            assert_eq!(v.path, "");
            assert_eq!(v.rule, e.rule());
        }
        Ok(Payload::Single(r)) => {
            assert_eq!(parse_notice(body, &limits), r);
        }
        Ok(Payload::Batch(results)) => {
            assert!(!results.is_empty());
            assert!(results.len() <= limits.max_batch_notices);
            let text = std::str::from_utf8(body).expect("an accepted body is UTF-8");
            let text = text.strip_prefix('\u{feff}').unwrap_or(text);
            let items: Vec<&RawValue> =
                serde_json::from_str(text).expect("an accepted batch is a JSON array");
            assert_eq!(items.len(), results.len());
            if let Some(n) = item_count(body) {
                assert_eq!(n, results.len());
            }
            for (raw, r) in items.iter().zip(&results) {
                assert_eq!(&parse_notice(raw.get().as_bytes(), &limits), r);
                if let Err(vs) = r {
                    assert!(!vs.is_empty());
                    assert!(
                        vs.iter()
                            .all(|v| v.path.is_empty() || v.path.starts_with('/'))
                    );
                }
            }
        }
    }
});

/// The number of items of a JSON array body, counted independently of the parser under test
/// (`None` when it is not an array serde can skip through).
fn item_count(body: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(body).ok()?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    serde_json::from_str::<Vec<IgnoredAny>>(text)
        .ok()
        .map(|v| v.len())
}
