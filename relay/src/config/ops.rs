//! `[ops]`: where the operator surface (operator API `/v1/ops/`, status page `/status`,
//! `/metrics`) listens, and how often the gauges that need JetStream reads are refreshed.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::common::Problems;

/// `[ops]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOps {
    /// Own listen address of the operator surface; absent = on `http.listen`.
    #[serde(default)]
    pub listen: Option<String>,
    /// Period of the status collection behind the operator gauges.
    pub metrics_refresh: String,
    /// Failed operator logins written to SHIRASE_AUDIT per minute at most.
    pub failed_login_audit_per_minute: u32,
}

/// Validated `[ops]`.
#[derive(Debug, Clone)]
pub struct OpsConfig {
    /// Own listen address of the operator surface; `None` = served on `http.listen`.
    pub listen: Option<SocketAddr>,
    /// Period of the status collection behind the operator gauges.
    pub metrics_refresh: Duration,
    /// Failed operator logins written to SHIRASE_AUDIT per minute at most (0 = none).
    pub failed_login_audit_per_minute: u32,
}

impl OpsConfig {
    /// Validate `[ops]`.
    pub(super) fn validate(
        raw: &RawOps,
        http_listen: Option<SocketAddr>,
        p: &mut Problems,
    ) -> Self {
        let listen = raw.listen.as_deref().and_then(|l| {
            let addr = l.parse::<SocketAddr>().ok();
            if addr.is_none() {
                p.push(
                    "ops.listen",
                    format!("{l:?} is not an address:port (e.g. 127.0.0.1:9090)"),
                );
            }
            addr
        });
        if let (Some(ops), Some(http)) = (listen, http_listen)
            && ops == http
            && ops.port() != 0
        {
            p.push(
                "ops.listen",
                format!("{ops} is http.listen too; leave ops.listen out to serve both there"),
            );
        }
        let metrics_refresh = match p.duration("ops.metrics_refresh", &raw.metrics_refresh) {
            Some(d) if d < Duration::from_secs(1) => {
                p.push("ops.metrics_refresh", "must be at least 1s");
                d
            }
            Some(d) => d,
            None => Duration::from_secs(15),
        };
        Self {
            listen,
            metrics_refresh,
            failed_login_audit_per_minute: raw.failed_login_audit_per_minute,
        }
    }
}
