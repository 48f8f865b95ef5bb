//! A leader lease in a JetStream KV bucket, so that only one of several relay replicas runs
//! the maintenance scheduler.
//!
//! The lease is the key `scheduler` in the bucket `shirase_leases` (created by provisioning),
//! holding the holder's id. Why a KV lease and how it works:
//! - **Acquire** is `create` (a write that succeeds only if the key has no live value): of two
//!   replicas racing for a free lease exactly one write wins, because JetStream serializes
//!   writes to a subject and checks the expected last sequence atomically.
//! - **Renew** is `update` with the revision the holder last read (compare-and-swap): a holder
//!   that lost the lease (it expired and someone else created it) cannot overwrite the new
//!   holder's value by accident.
//! - **Expiry** is the bucket's `max_age` (the lease TTL): a holder that dies stops renewing
//!   and its value ages out on the server. Expiry is judged by the server's clock alone, so
//!   clock skew between relay hosts cannot make two replicas believe they both hold the lease.
//!   The holder renews every TTL/3, so one or two lost renewals do not lose the lease.
//!
//! A replica that loses its lease mid-window does no harm: pausing is idempotent and the
//! pause deadline lives on the server, so the next holder re-derives the same state.

use async_nats::jetstream::{self, kv};

/// The bucket holding leases.
pub const LEASE_BUCKET: &str = "shirase_leases";
/// The key of the maintenance scheduler's lease.
pub const SCHEDULER_KEY: &str = "scheduler";

/// What kind of lease failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseErrorKind {
    /// The bucket does not exist (run `shirase-relay provision`).
    NoBucket,
    /// JetStream could not be asked.
    Server,
}

/// The lease could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("lease {key} in bucket {bucket}: {message}")]
pub struct LeaseError {
    kind: LeaseErrorKind,
    bucket: String,
    key: String,
    message: String,
}

impl LeaseError {
    /// The kind, for callers that branch.
    pub fn kind(&self) -> LeaseErrorKind {
        self.kind
    }
}

/// One replica's view of a lease.
#[derive(Debug)]
pub struct Lease {
    store: kv::Store,
    bucket: String,
    key: String,
    holder: String,
}

impl Lease {
    /// Open the lease `key` in `bucket` for the replica `holder` (a unique id per process).
    pub async fn open(
        js: &jetstream::Context,
        bucket: &str,
        key: &str,
        holder: String,
    ) -> Result<Self, LeaseError> {
        let store = js.get_key_value(bucket).await.map_err(|e| LeaseError {
            kind: LeaseErrorKind::NoBucket,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            message: format!("{e}; run `shirase-relay provision` to create it"),
        })?;
        Ok(Self {
            store,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            holder,
        })
    }

    /// This replica's id.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    fn server(&self, e: impl std::fmt::Display) -> LeaseError {
        LeaseError {
            kind: LeaseErrorKind::Server,
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            message: e.to_string(),
        }
    }

    /// Acquire the lease if it is free, renew it if this replica holds it. Returns whether
    /// this replica holds it now.
    pub async fn try_acquire(&self) -> Result<bool, LeaseError> {
        let entry = self
            .store
            .entry(self.key.as_str())
            .await
            .map_err(|e| self.server(e))?;
        let live = entry.filter(|e| e.operation == kv::Operation::Put);
        match live {
            None => match self
                .store
                .create(self.key.as_str(), self.holder.clone().into_bytes().into())
                .await
            {
                Ok(_) => Ok(true),
                // Someone else created it between our read and our write.
                Err(e) if shirase_service::kv::create_conflict(&e) => Ok(false),
                Err(e) => Err(self.server(e)),
            },
            Some(e) if e.value.as_ref() == self.holder.as_bytes() => {
                match self
                    .store
                    .update(
                        self.key.as_str(),
                        self.holder.clone().into_bytes().into(),
                        e.revision,
                    )
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(err) if shirase_service::kv::update_conflict(&err) => Ok(false),
                    Err(err) => Err(self.server(err)),
                }
            }
            Some(_) => Ok(false),
        }
    }

    /// Give the lease up (on shutdown) so another replica takes over at once instead of after
    /// the TTL. Only deletes a value this replica wrote.
    pub async fn release(&self) {
        if let Ok(Some(e)) = self.store.entry(self.key.as_str()).await
            && e.operation == kv::Operation::Put
            && e.value.as_ref() == self.holder.as_bytes()
        {
            let _ = self
                .store
                .delete_expect_revision(self.key.as_str(), Some(e.revision))
                .await;
        }
    }
}
