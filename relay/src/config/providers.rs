//! `[[providers]]`: the provider systems (提供側), their ingest credentials, maintenance
//! calendars and, for providers that cannot publish notices yet, `[providers.watch]`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use shirase_proto::{BusinessId, InterfaceId};

use super::common::{Problems, check_nkey, rebase};
use super::subscribers::Interface;
use super::watch::{RawWatch, WatchConfig};

/// `[[providers]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// 業務ID.
    pub business_id: String,
    /// Human name.
    pub name: String,
    /// Base URL of its PULL API.
    pub pull_api_base_url: String,
    /// Bearer credentials for HTTP ingest (optional for a watched provider).
    #[serde(default)]
    pub credentials: RawCredentials,
    /// Public nkey for direct NATS publishing (optional).
    #[serde(default)]
    pub nats_nkey: Option<String>,
    /// Maintenance calendar (`[providers.maintenance]`, [`shirase_proto::maintenance::Config`]);
    /// absent = the standard's baseline. Validated into [`Provider::maintenance`].
    #[serde(default)]
    pub maintenance: Option<serde_json::Value>,
    /// `[providers.watch]`: the provider cannot publish notices yet; the watcher polls it.
    #[serde(default)]
    pub watch: Option<RawWatch>,
}

/// A provider's credentials reference.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredentials {
    /// Hex SHA-256 digests of accepted bearer tokens (production: no secret in the file).
    #[serde(default)]
    pub token_sha256: Vec<String>,
    /// A file holding one plain token (dev); relative paths are relative to the config file.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// A provider (提供側業務システム).
#[derive(Clone)]
pub struct Provider {
    /// 業務ID.
    pub business_id: BusinessId,
    /// Human name.
    pub name: String,
    /// PULL API base URL.
    pub pull_api_base_url: String,
    /// SHA-256 digests of accepted bearer tokens.
    pub token_hashes: Vec<[u8; 32]>,
    /// Public nkey for direct NATS publishing.
    pub nats_nkey: Option<String>,
    /// The validated maintenance calendar (the baseline 24:00-27:00 when none is configured).
    pub maintenance: shirase_proto::maintenance::Calendar,
    /// Watched provider: the watcher's settings (its `interfaces` resolved).
    pub watch: Option<WatchConfig>,
}

impl fmt::Debug for Provider {
    // Token digests stay out of logs and debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("business_id", &self.business_id)
            .field("name", &self.name)
            .field("pull_api_base_url", &self.pull_api_base_url)
            .field(
                "token_hashes",
                &format_args!("[{} digest(s)]", self.token_hashes.len()),
            )
            .field("nats_nkey", &self.nats_nkey)
            .finish()
    }
}

/// Validate `[[providers]]`; the watched interfaces are resolved later
/// ([`resolve_watched_interfaces`]), when `[[interfaces]]` is known.
pub(super) fn validate(
    raw: &[RawProvider],
    base_dir: Option<&Path>,
    p: &mut Problems,
) -> Vec<Provider> {
    let mut providers = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, rp) in raw.iter().enumerate() {
        let path = format!("providers[{i}]");
        if let Some(provider) = validate_one(rp, &path, base_dir, &mut seen, p) {
            providers.push(provider);
        }
    }
    if raw.is_empty() {
        p.push("providers", "at least one provider is required");
    }
    providers
}

/// Validate `providers[i]` (at `path`); `seen` holds the business ids listed before it.
fn validate_one(
    rp: &RawProvider,
    path: &str,
    base_dir: Option<&Path>,
    seen: &mut BTreeSet<BusinessId>,
    p: &mut Problems,
) -> Option<Provider> {
    let b = p.parse::<BusinessId>(&format!("{path}.business_id"), &rp.business_id);
    if let Some(b) = b
        && !seen.insert(b)
    {
        p.push(
            format!("{path}.business_id"),
            format!("provider {b} is listed twice"),
        );
    }
    if rp.name.chars().any(char::is_control) {
        // The name is written into generated files (the NATS authorization's comments): a
        // line break there would start a line of configuration.
        p.push(
            format!("{path}.name"),
            "must not contain control characters (line breaks, tabs)",
        );
    }
    if rp.name.trim().is_empty() {
        p.push(format!("{path}.name"), "must not be empty");
    }
    if !(rp.pull_api_base_url.starts_with("http://")
        || rp.pull_api_base_url.starts_with("https://"))
    {
        p.push(
            format!("{path}.pull_api_base_url"),
            "must be an http:// or https:// URL",
        );
    }
    let token_hashes = token_hashes(&rp.credentials, path, base_dir, p);
    if token_hashes.is_empty() && rp.watch.is_none() {
        p.push(
            format!("{path}.credentials"),
            "set token_sha256 (list of hex digests) or token_file (or watch, for a provider that cannot publish notices yet)",
        );
    }
    if let Some(k) = &rp.nats_nkey {
        check_nkey(p, &format!("{path}.nats_nkey"), k);
    }
    let calendar = calendar(rp, path, p);
    let watch = rp.watch.as_ref().and_then(|w| {
        WatchConfig::validate(w, &format!("{path}.watch"), base_dir, &mut |f, m| {
            p.push(f, m)
        })
    });
    Some(Provider {
        business_id: b?,
        name: rp.name.clone(),
        pull_api_base_url: rp.pull_api_base_url.clone(),
        token_hashes,
        nats_nkey: rp.nats_nkey.clone(),
        maintenance: calendar?,
        watch,
    })
}

/// The accepted token digests of `providers[i].credentials`: the listed ones, then the one of
/// the token file.
fn token_hashes(
    c: &RawCredentials,
    path: &str,
    base_dir: Option<&Path>,
    p: &mut Problems,
) -> Vec<[u8; 32]> {
    let mut token_hashes = Vec::new();
    for (j, h) in c.token_sha256.iter().enumerate() {
        match hex::decode(h)
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
        {
            Some(d) => token_hashes.push(d),
            None => p.push(
                format!("{path}.credentials.token_sha256[{j}]"),
                "must be 64 hex digits (sha256sum of the token)",
            ),
        }
    }
    if let Some(f) = &c.token_file {
        let full = rebase(f, base_dir);
        match std::fs::read_to_string(&full) {
            Ok(text) => match token_in(&text) {
                Some(t) => token_hashes.push(token_digest(t)),
                None => p.push(
                    format!("{path}.credentials.token_file"),
                    format!(
                        "{} holds no token (one line, at least 16 characters)",
                        full.display()
                    ),
                ),
            },
            Err(e) => p.push(
                format!("{path}.credentials.token_file"),
                format!("cannot read {}: {e}", full.display()),
            ),
        }
    }
    token_hashes
}

/// The maintenance calendar of `providers[i]` (the baseline when none is configured); a
/// problem is recorded at the calendar's field.
fn calendar(
    rp: &RawProvider,
    path: &str,
    p: &mut Problems,
) -> Option<shirase_proto::maintenance::Calendar> {
    let calendar = match rp
        .maintenance
        .clone()
        .map(serde_json::from_value::<shirase_proto::maintenance::Config>)
    {
        None => shirase_proto::maintenance::Calendar::new(&Default::default())
            .map_err(|e| (e.field().to_owned(), e.to_string())),
        Some(Ok(c)) => shirase_proto::maintenance::Calendar::new(&c)
            .map_err(|e| (e.field().to_owned(), e.to_string())),
        Some(Err(e)) => Err((String::new(), e.to_string())),
    };
    match calendar {
        Ok(c) => Some(c),
        Err((field, message)) => {
            let at = if field.is_empty() {
                format!("{path}.maintenance")
            } else {
                format!("{path}.maintenance.{field}")
            };
            p.push(at, message);
            None
        }
    }
}

/// `providers[i].watch.interfaces`: as listed (each must be one of the provider's
/// `[[interfaces]]`), or all of the provider's interfaces when the list is empty.
pub(super) fn resolve_watched_interfaces(
    raw: &[RawProvider],
    providers: &mut [Provider],
    interfaces: &[Interface],
    p: &mut Problems,
) {
    for (i, rp) in raw.iter().enumerate() {
        let Some(rw) = &rp.watch else { continue };
        let Some(pr) = providers
            .iter_mut()
            .find(|pr| pr.business_id.to_string() == rp.business_id)
        else {
            continue;
        };
        let Some(w) = pr.watch.as_mut() else { continue };
        let own: Vec<InterfaceId> = interfaces
            .iter()
            .filter(|x| x.provider == pr.business_id)
            .map(|x| x.id)
            .collect();
        if rw.interfaces.is_empty() {
            w.interfaces = own.clone();
            w.interfaces.dedup();
        }
        for (j, s) in rw.interfaces.iter().enumerate() {
            let path = format!("providers[{i}].watch.interfaces[{j}]");
            if let Some(id) = p.parse::<InterfaceId>(&path, s) {
                if !own.contains(&id) {
                    p.push(
                        path,
                        format!(
                            "interface {id} is not one of provider {}'s [[interfaces]]",
                            pr.business_id
                        ),
                    );
                } else if !w.interfaces.contains(&id) {
                    w.interfaces.push(id);
                }
            }
        }
        if w.interfaces.is_empty() && rw.interfaces.is_empty() {
            p.push(
                format!("providers[{i}].watch"),
                format!("provider {} has no [[interfaces]] to watch", pr.business_id),
            );
        }
    }
}

/// The token in a dev token file: the first line that is neither empty nor a `#` comment, if it
/// is long enough to be a token (16 characters).
pub fn token_in(text: &str) -> Option<&str> {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|t| t.len() >= 16)
}

/// SHA-256 of a bearer token, the form credentials are stored and compared in.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}
