//! What the file watcher announced, remembered in the KV bucket `shirase_checkpoints` under
//! `_files.<business id>.<first 32 hex digits of SHA-256(path)>`, so that a restarted watcher
//! (or another replica taking the lease over) neither hashes unchanged files again nor
//! announces them again. Written after the notice's PubAck: a crash in between announces the
//! file once more with the same deterministic id, which JetStream drops inside its duplicate
//! window and the agent delivers idempotently after it. The value is
//! [`shirase_proto::record::FileWatchEntry`] (schema `file-watch-entry.v1.json`).

use std::collections::HashMap;

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use sha2::{Digest, Sha256};
pub use shirase_proto::record::FileWatchEntry as Announced;
use shirase_proto::subject::CHECKPOINT_BUCKET;

/// The watcher's memory of one provider's folder.
#[derive(Debug)]
pub struct Memory {
    store: kv::Store,
    prefix: String,
    /// Path → what was announced.
    pub files: HashMap<String, Announced>,
}

impl Memory {
    /// Open the bucket and load what was announced for `business`.
    pub async fn load(js: &jetstream::Context, business: &str) -> Result<Self, String> {
        let store = js
            .get_key_value(CHECKPOINT_BUCKET)
            .await
            .map_err(|e| format!("{CHECKPOINT_BUCKET}: {e}; run `shirase-relay provision`"))?;
        let prefix = format!("_files.{business}.");
        let mut files = HashMap::new();
        let mut keys = store.keys().await.map_err(|e| e.to_string())?;
        let mut mine = Vec::new();
        while let Some(k) = keys.next().await {
            let k = k.map_err(|e| e.to_string())?;
            if k.starts_with(&prefix) {
                mine.push(k);
            }
        }
        for k in mine {
            if let Some(v) = store.get(k.as_str()).await.map_err(|e| e.to_string())?
                && let Ok(a) = serde_json::from_slice::<Announced>(&v)
            {
                files.insert(a.path.to_string(), a);
            }
        }
        Ok(Self {
            store,
            prefix,
            files,
        })
    }

    fn key(&self, path: &str) -> String {
        let d = Sha256::digest(path.as_bytes());
        let hex: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}{hex}", self.prefix)
    }

    /// Remember an announced file.
    pub async fn remember(&mut self, a: Announced) -> Result<(), String> {
        let bytes = serde_json::to_vec(&a).map_err(|e| e.to_string())?;
        self.store
            .put(self.key(a.path.as_str()), bytes.into())
            .await
            .map_err(|e| e.to_string())?;
        self.files.insert(a.path.to_string(), a);
        Ok(())
    }
}
