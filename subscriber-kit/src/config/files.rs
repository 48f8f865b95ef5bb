//! `[files]`: file integration (ファイル連携) — where this host mounts each provider's share,
//! and how often a file that does not match its notice is tried before it is dead-lettered.

use std::path::PathBuf;

use serde::Deserialize;
use shirase_proto::BusinessId;

use super::common::Problems;

/// `[files]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFiles {
    /// Deliveries of a file that is missing or differs from its notice before it is
    /// dead-lettered (bounded by the consumer's max_deliver).
    #[serde(default = "d_attempts")]
    pub attempts: u64,
    /// `[[files.shares]]`.
    #[serde(default)]
    pub shares: Vec<RawShare>,
}

fn d_attempts() -> u64 {
    5
}

impl Default for RawFiles {
    fn default() -> Self {
        Self {
            attempts: d_attempts(),
            shares: Vec::new(),
        }
    }
}

/// `[[files.shares]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShare {
    /// Business id of the provider whose share this is.
    pub provider: String,
    /// Where this host mounts the provider's folder (the root file-ready paths are relative to).
    pub root: PathBuf,
}

/// File integration settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesConfig {
    /// Attempts before a dead letter.
    pub attempts: u64,
    /// (provider, share root) pairs.
    pub shares: Vec<(BusinessId, PathBuf)>,
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            attempts: d_attempts(),
            shares: Vec::new(),
        }
    }
}

impl FilesConfig {
    /// The share root of `provider`.
    pub fn share(&self, provider: &BusinessId) -> Option<&PathBuf> {
        self.shares
            .iter()
            .find(|(b, _)| b == provider)
            .map(|(_, r)| r)
    }

    /// Validate `[files]`; `providers` are the business ids of `[[providers]]`.
    pub(super) fn validate(raw: &RawFiles, providers: &[BusinessId], p: &mut Problems) -> Self {
        if raw.attempts == 0 {
            p.push("files.attempts", "must be at least 1");
        }
        let mut shares: Vec<(BusinessId, PathBuf)> = Vec::new();
        for (i, s) in raw.shares.iter().enumerate() {
            let path = format!("files.shares[{i}]");
            let b = p.parse::<BusinessId>(&format!("{path}.provider"), &s.provider);
            if s.root.as_os_str().is_empty() {
                p.push(
                    format!("{path}.root"),
                    "give where this host mounts the provider's share (e.g. /mnt/share/015)",
                );
            }
            let Some(b) = b else { continue };
            if !providers.contains(&b) {
                p.push(
                    format!("{path}.provider"),
                    format!(
                        "provider {b} is not in [[providers]]: its notices never reach this agent"
                    ),
                );
            }
            if shares.iter().any(|(x, _)| *x == b) {
                p.push(
                    format!("{path}.provider"),
                    format!("provider {b} has two shares"),
                );
                continue;
            }
            shares.push((b, s.root.clone()));
        }
        Self {
            attempts: raw.attempts.max(1),
            shares,
        }
    }
}
