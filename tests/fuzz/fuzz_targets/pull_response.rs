//! A PULL API answer as `shirase-pull` reads it: the status picks the path (rows of a 200,
//! error bodies of 400 / 503 / other statuses, the token endpoint's answers), the rest of the
//! input is the body.
//!
//! Invariants, beyond "no panic":
//! - the default profile's `parse_body` and `classify(200, ..)` agree: rows, or
//!   `ProfileMismatch` naming the same key; each row's fields are the ones its raw object
//!   carries;
//! - a 503 with an empty (blank) body is `TimeoutSplit`, never anything else;
//! - 401 is `Unauthorized`; statuses under 500 other than 200 and 401 are never transient;
//! - `token_answer` with a 200 gives a token refreshed after `now`, other statuses an outcome
//!   (and the same outcome as `classify` for those it delegates).
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shirase_pull::client::Outcome;
use shirase_pull::{ApiProfile, classify, token_answer};

const STATUSES: [u16; 12] = [200, 400, 401, 403, 404, 429, 500, 502, 503, 504, 302, 418];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let status = STATUSES[usize::from(selector) % STATUSES.len()];
    let retry_after = (selector & 0x80 != 0).then(|| Duration::from_secs(u64::from(selector)));

    let outcome = classify(status, retry_after, body);
    match status {
        200 => match (ApiProfile::default().parse_body(body), &outcome) {
            (Ok((rows, _capped)), Outcome::Data(got)) => {
                assert_eq!(&rows, got);
                for row in &rows {
                    assert_eq!(
                        row.atena_no.as_deref(),
                        row.raw.get("atena_no").and_then(|v| v.as_str())
                    );
                    assert_eq!(
                        row.history_no,
                        row.raw.get("history_no").and_then(|v| v.as_u64())
                    );
                    let ts = row.raw.get("updated_at").and_then(|v| v.as_str());
                    assert!(ts.is_some(), "a row without updated_at was accepted");
                }
            }
            (Err(m), Outcome::ProfileMismatch { key, message }) => {
                assert_eq!(key, m.key);
                assert_eq!(message, &m.message);
            }
            (r, o) => panic!("parse_body {r:?} but classify {o:?}"),
        },
        401 => assert!(
            matches!(outcome, Outcome::Unauthorized { .. }),
            "{outcome:?}"
        ),
        503 if body.iter().all(u8::is_ascii_whitespace) => {
            assert_eq!(outcome, Outcome::TimeoutSplit { retry_after });
        }
        s if s >= 500 => assert!(
            matches!(
                outcome,
                Outcome::Transient { .. } | Outcome::Maintenance { .. }
            ),
            "{outcome:?}"
        ),
        s => match &outcome {
            // The profile's too-many codes count on any 4xx (a provider's own status choice).
            Outcome::TooMany => assert!((400..500).contains(&s), "too many on a {s}"),
            // The profile's out-of-service codes count on any error status.
            Outcome::Maintenance { .. } => assert!(s >= 400, "maintenance on a {s}"),
            Outcome::Permanent { status, .. } => assert_eq!(*status, s),
            o => panic!("a {s} classified as {o:?}"),
        },
    }

    // Outside a runtime, tokio's clock is the system's monotonic clock.
    let now = tokio::time::Instant::now();
    match (status, token_answer(status, retry_after, body, now)) {
        (200, Ok((_, refresh_at))) => assert!(refresh_at > now),
        (200, Err(o)) => assert!(matches!(o, Outcome::Connect(_)), "{o:?}"),
        (400 | 401 | 403, Err(o)) => assert!(matches!(o, Outcome::Unauthorized { .. }), "{o:?}"),
        (_, Err(o)) => assert_eq!(o, outcome),
        (s, Ok(_)) => panic!("a token from a {s} answer"),
    }
});
