//! Compare-and-set on a JetStream key-value bucket: telling a lost race from a failure.
//!
//! A write naming a revision that is no longer the key's last is refused, and the writer
//! should read again and decide again. async-nats reports the refusal as
//! `WrongLastRevision` / `AlreadyExists` only for the error code 10071; a clustered stream
//! (R3, as in production) refuses a write to a key whose earlier write is still being
//! proposed with 10164, which async-nats reports as an unspecified failure. Both are the same
//! lost race: [`update_conflict`] and [`create_conflict`] say so for either code.

use async_nats::jetstream::{self, kv};

/// The server's "wrong last sequence" error codes: the leader's check (10071) and the
/// clustered check against writes still being proposed (10164).
const WRONG_LAST_SEQUENCE: [u64; 2] = [10071, 10164];

/// Whether an update lost a compare-and-set race (read again, decide again).
pub fn update_conflict(e: &kv::UpdateError) -> bool {
    e.kind() == kv::UpdateErrorKind::WrongLastRevision || wrong_last_sequence(e)
}

/// Whether a create found the key written by someone else (or being written).
pub fn create_conflict(e: &kv::CreateError) -> bool {
    e.kind() == kv::CreateErrorKind::AlreadyExists || wrong_last_sequence(e)
}

/// Whether any error in the source chain is the server's "wrong last sequence".
fn wrong_last_sequence(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(x) = cur {
        if let Some(j) = x.downcast_ref::<jetstream::Error>()
            && WRONG_LAST_SEQUENCE.contains(&j.error_code().0)
        {
            return true;
        }
        cur = x.source();
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use async_nats::jetstream::context::{PublishError, PublishErrorKind};

    use super::*;

    /// The error a server answers a publish with, as async-nats wraps it for a KV update.
    fn refused(err_code: u64) -> kv::UpdateError {
        let server: jetstream::Error = serde_json::from_value(serde_json::json!({
            "code": 400,
            "err_code": err_code,
            "description": "wrong last sequence",
        }))
        .unwrap();
        let kind = if err_code == 10071 {
            PublishErrorKind::WrongLastSequence
        } else {
            PublishErrorKind::Other
        };
        kv::UpdateError::from(PublishError::with_source(kind, server))
    }

    #[test]
    fn both_wrong_last_sequence_codes_are_a_lost_race_and_other_errors_are_not() {
        assert!(update_conflict(&refused(10071)));
        let clustered = refused(10164);
        assert_eq!(clustered.kind(), kv::UpdateErrorKind::Other);
        assert!(update_conflict(&clustered));
        // A create whose first write was refused that way (the key not readable yet).
        assert!(create_conflict(&kv::CreateError::from(refused(10164))));
        // Anything else is a failure: stream not found, a timeout.
        assert!(!update_conflict(&refused(10059)));
        assert!(!update_conflict(&kv::UpdateError::new(
            kv::UpdateErrorKind::TimedOut
        )));
        assert!(!create_conflict(&kv::CreateError::new(
            kv::CreateErrorKind::Publish
        )));
    }
}
