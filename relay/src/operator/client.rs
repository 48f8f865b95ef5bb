//! The CLI side of the operator tools: an HTTP client of the operator API and the tables it
//! prints. The CLI talks to the relay (`--url`, `--token-file`) rather than to NATS directly, so
//! it needs no NATS credentials, every action runs the same validation and lands in the same
//! audit stream with the operator's name, and viewers stay read-only. Request bodies are the
//! operator API's own request types, so the CLI sends exactly what the relay reads; answers are
//! kept as JSON, printed as they came or as tables. An `https://` relay
//! (`http.tls_cert_file` set) is verified against the system roots plus `--ca-file`.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::api::DlqQuery;
use super::dlq::DlqFilter;
use super::pause::PauseRequest;
use super::replay::ReplayRequest;
use super::resync::ResyncRequest;

/// What went wrong talking to the operator API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientErrorKind {
    /// The token file could not be read.
    Token,
    /// The CA file (`--ca-file`) could not be read or holds no PEM certificate.
    Ca,
    /// The relay could not be reached.
    Transport,
    /// The relay answered with an error (4xx/5xx).
    Api,
}

/// An operator API call failed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    kind: ClientErrorKind,
    /// For a person (the relay's message, naming the field, when it answered).
    pub message: String,
    /// HTTP status, when the relay answered.
    pub status: Option<u16>,
}

impl ClientError {
    /// The kind.
    pub fn kind(&self) -> ClientErrorKind {
        self.kind
    }
}

/// A client of one relay's operator API.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// `url` is the relay's base URL (`http://127.0.0.1:8080`, or `https://...` for a relay
    /// serving HTTPS); the token is the first non-comment line of `token_file`; `ca_file` is a
    /// PEM CA trusted in addition to the system roots (the CA that signed the relay's
    /// `http.tls_cert_file`).
    pub fn new(url: &str, token_file: &Path, ca_file: Option<&Path>) -> Result<Self, ClientError> {
        let text = std::fs::read_to_string(token_file).map_err(|e| ClientError {
            kind: ClientErrorKind::Token,
            message: format!("--token-file {}: {e}", token_file.display()),
            status: None,
        })?;
        let token = crate::config::token_in(&text).ok_or_else(|| ClientError {
            kind: ClientErrorKind::Token,
            message: format!(
                "--token-file {} holds no token (one line, at least 16 characters)",
                token_file.display()
            ),
            status: None,
        })?;
        let ca = match ca_file {
            None => None,
            Some(f) => {
                let ca_err = |message: String| ClientError {
                    kind: ClientErrorKind::Ca,
                    message: format!("--ca-file {}: {message}", f.display()),
                    status: None,
                };
                let pem = std::fs::read(f).map_err(|e| ca_err(e.to_string()))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| ca_err(format!("not a PEM certificate: {e}")))?;
                if certs.is_empty() {
                    return Err(ca_err("holds no PEM certificate".to_owned()));
                }
                Some(certs)
            }
        };
        Ok(Self::build(url, token, ca.unwrap_or_default()))
    }

    /// A client with a token in hand (system roots only).
    pub fn with_token(url: &str, token: &str) -> Self {
        Self::build(url, token, Vec::new())
    }

    fn build(url: &str, token: &str, roots: Vec<reqwest::Certificate>) -> Self {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(600));
        for c in roots {
            builder = builder.add_root_certificate(c);
        }
        let http = builder.build().unwrap_or_default();
        Self {
            base: url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, ClientError> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| ClientError {
                kind: ClientErrorKind::Transport,
                message: format!("cannot reach the relay at {}: {e}", self.base),
                status: None,
            })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status >= 400 {
            let msg = v
                .pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string());
            return Err(ClientError {
                kind: ClientErrorKind::Api,
                message: format!("relay answered {status}: {msg}"),
                status: Some(status),
            });
        }
        Ok(v)
    }

    /// `GET path` with `query`.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, ClientError> {
        self.send(self.http.get(format!("{}{path}", self.base)).query(query))
            .await
    }

    /// `POST path` with a JSON body.
    pub async fn post<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Value, ClientError> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    /// `GET /v1/ops/status`: the status snapshot ([`super::status::Status`]).
    pub async fn status(&self) -> Result<Value, ClientError> {
        self.get("/v1/ops/status", &[]).await
    }

    /// `POST /v1/ops/replay`: the [`super::replay::ReplayResult`].
    pub async fn replay(&self, request: &ReplayRequest) -> Result<Value, ClientError> {
        self.post("/v1/ops/replay", request).await
    }

    /// `POST /v1/ops/resync`: the [`super::resync::ResyncResult`].
    pub async fn resync(&self, request: &ResyncRequest) -> Result<Value, ClientError> {
        self.post("/v1/ops/resync", request).await
    }

    /// `POST /v1/ops/pause`: the [`super::pause::PauseResult`].
    pub async fn pause(&self, request: &PauseRequest) -> Result<Value, ClientError> {
        self.post("/v1/ops/pause", request).await
    }

    /// `POST /v1/ops/resume` (`until`, `for` and `reason` unused): the
    /// [`super::pause::PauseResult`].
    pub async fn resume(&self, request: &PauseRequest) -> Result<Value, ClientError> {
        self.post("/v1/ops/resume", request).await
    }

    /// `GET /v1/ops/dlq`: the matching dead letters ([`super::dlq::DlqEntry`] list).
    pub async fn dlq_list(&self, query: &DlqQuery) -> Result<Value, ClientError> {
        self.send(
            self.http
                .get(format!("{}/v1/ops/dlq", self.base))
                .query(query),
        )
        .await
    }

    /// `GET /v1/ops/dlq/{seq}`: one dead letter with its body.
    pub async fn dlq_show(&self, seq: u64) -> Result<Value, ClientError> {
        self.get(&format!("/v1/ops/dlq/{seq}"), &[]).await
    }

    /// `POST /v1/ops/dlq/redrive`: the [`super::dlq::DlqActionResult`].
    pub async fn dlq_redrive(&self, filter: &DlqFilter) -> Result<Value, ClientError> {
        self.post("/v1/ops/dlq/redrive", filter).await
    }

    /// `POST /v1/ops/dlq/purge` (the relay refuses it unless `filter.yes`): the
    /// [`super::dlq::DlqActionResult`].
    pub async fn dlq_purge(&self, filter: &DlqFilter) -> Result<Value, ClientError> {
        self.post("/v1/ops/dlq/purge", filter).await
    }
}

fn s(v: &Value, p: &str) -> String {
    match v.pointer(p) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(x)) => x.clone(),
        Some(x) => x.to_string(),
    }
}

/// A plain text table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(x) = w.get_mut(i) {
                *x = (*x).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = w
                .get(i)
                .copied()
                .unwrap_or(0)
                .saturating_sub(c.chars().count());
            out.push_str(c);
            if i + 1 < cells.len() {
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}

fn age(v: &Value, p: &str) -> String {
    match v.pointer(p).and_then(Value::as_f64) {
        None => "-".into(),
        Some(x) if x < 120.0 => format!("{x:.0}s"),
        Some(x) if x < 7200.0 => format!("{:.0}m", x / 60.0),
        Some(x) => format!("{:.1}h", x / 3600.0),
    }
}

/// The status as tables.
pub fn render_status(v: &Value) -> String {
    let mut out = format!(
        "municipality {}  at {}\n\nCONSUMERS\n",
        s(v, "/municipality"),
        s(v, "/generated_at")
    );
    out.push_str(&consumers_table(v));
    out.push_str("\nPROVIDERS\n");
    out.push_str(&providers_table(v));
    out.push_str(&watched_table(v));
    out.push_str(&format!("\nDEAD LETTERS: {}\n", s(v, "/dlq/total")));
    out.push_str(&render_dlq(
        v.get("dlq")
            .and_then(|d| d.get("latest"))
            .unwrap_or(&Value::Null),
    ));
    out
}

/// The elements of the array at `v[key]` (none when it is missing or not an array).
fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key].as_array().map_or(&[], Vec::as_slice)
}

/// The CONSUMERS table of a status snapshot.
fn consumers_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = items(v, "consumers")
        .iter()
        .map(|c| {
            let state = if c["paused"].as_bool() == Some(true) {
                format!(
                    "paused until {} ({})",
                    s(c, "/paused_until"),
                    s(c, "/pause_reason")
                )
            } else if c["exists"].as_bool() == Some(true) {
                "active".into()
            } else {
                "MISSING (run provision)".into()
            };
            let cps: Vec<String> = items(c, "checkpoints")
                .iter()
                .map(|k| format!("{}={}", s(k, "/interface"), s(k, "/updated_at")))
                .collect();
            vec![
                s(c, "/name"),
                s(c, "/pending"),
                s(c, "/ack_pending"),
                s(c, "/redelivered"),
                age(c, "/oldest_pending_age_secs"),
                s(c, "/last_delivery"),
                state,
                cps.join(" "),
            ]
        })
        .collect();
    table(
        &[
            "CONSUMER",
            "PENDING",
            "ACK_PENDING",
            "REDELIVERED",
            "OLDEST",
            "LAST_DELIVERY",
            "STATE",
            "CHECKPOINTS",
        ],
        &rows,
    )
}

/// The PROVIDERS table of a status snapshot.
fn providers_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = items(v, "providers")
        .iter()
        .map(|p| {
            let next = p["windows"]
                .as_array()
                .and_then(|w| w.first())
                .map(|w| format!("{} .. {}", s(w, "/start"), s(w, "/end")));
            vec![
                s(p, "/business_id"),
                s(p, "/name"),
                if p["in_maintenance"].as_bool() == Some(true) {
                    "maintenance".into()
                } else {
                    "open".into()
                },
                next.unwrap_or_else(|| "-".into()),
                s(p, "/last_alert/code"),
            ]
        })
        .collect();
    table(
        &["PROVIDER", "NAME", "STATE", "NEXT_WINDOW", "LAST_ALERT"],
        &rows,
    )
}

/// The WATCHED section of a status snapshot with its heading, or nothing when no interface
/// is watched.
fn watched_table(v: &Value) -> String {
    let watched: Vec<Vec<String>> = items(v, "watched")
        .iter()
        .map(|w| {
            let state = if w["handed_over"].as_bool() == Some(true) {
                "handed over to native notices".to_owned()
            } else if w["window_pending"].as_bool() == Some(true) {
                "reading a window".to_owned()
            } else if w["cursor"].is_null() {
                "not polled yet".to_owned()
            } else {
                "watching".to_owned()
            };
            vec![
                s(w, "/provider"),
                s(w, "/interface"),
                s(w, "/last_poll"),
                age(w, "/lag_secs"),
                s(w, "/rows_seen"),
                s(w, "/notices_emitted"),
                state,
            ]
        })
        .collect();
    if watched.is_empty() {
        return String::new();
    }
    let mut out = "\nWATCHED (the watcher polls these for notices)\n".to_owned();
    out.push_str(&table(
        &[
            "PROVIDER",
            "INTERFACE",
            "LAST_POLL",
            "LAG",
            "ROWS",
            "NOTICES",
            "STATE",
        ],
        &watched,
    ));
    out
}

/// Dead letters as a table.
pub fn render_dlq(v: &Value) -> String {
    let empty = Vec::new();
    let rows: Vec<Vec<String>> = v
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|e| {
            vec![
                s(e, "/seq"),
                s(e, "/subscriber"),
                s(e, "/interface"),
                s(e, "/http_status"),
                s(e, "/code"),
                s(e, "/attempts"),
                s(e, "/first_failure"),
                s(e, "/last_failure"),
                s(e, "/reason"),
            ]
        })
        .collect();
    table(
        &[
            "SEQ",
            "SUBSCRIBER",
            "INTERFACE",
            "HTTP",
            "CODE",
            "ATTEMPTS",
            "FIRST_FAILURE",
            "LAST_FAILURE",
            "REASON",
        ],
        &rows,
    )
}

/// An action's result as `key: value` lines.
pub fn render_object(v: &Value) -> String {
    match v.as_object() {
        Some(o) => o
            .iter()
            .map(|(k, x)| {
                format!(
                    "{k}: {}\n",
                    if let Value::String(t) = x {
                        t.clone()
                    } else {
                        x.to_string()
                    }
                )
            })
            .collect(),
        None => format!("{v}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_shows_watched_interfaces_only_when_there_are_some() {
        let base = serde_json::json!({
            "municipality": "131016", "generated_at": "2026-11-26T10:00:00+09:00",
            "consumers": [], "providers": [], "dlq": {"total": 0, "latest": []},
        });
        assert!(!render_status(&base).contains("WATCHED"));
        let mut v = base.clone();
        v["watched"] = serde_json::json!([
            {"provider": "010", "interface": "010o01-00", "cursor": "2026-11-26T00:59:58Z",
             "lag_secs": 42.0, "last_poll": "2026-11-26T01:00:00Z", "rows_seen": 17,
             "notices_emitted": 5, "window_pending": false, "until": null, "handed_over": false},
            {"provider": "001", "interface": "001o05-00", "cursor": "2026-11-26T00:00:00Z",
             "lag_secs": 3600.0, "last_poll": null, "rows_seen": 0, "notices_emitted": 0,
             "window_pending": false, "until": "2026-11-26T00:00:00Z", "handed_over": true},
        ]);
        let out = render_status(&v);
        assert!(out.contains("WATCHED"), "{out}");
        let line = out
            .lines()
            .find(|l| l.contains("010o01-00"))
            .unwrap_or_default();
        for cell in ["010", "42s", "17", "5", "watching"] {
            assert!(line.contains(cell), "{cell} missing in {line:?}");
        }
        let line = out
            .lines()
            .find(|l| l.contains("001o05-00"))
            .unwrap_or_default();
        assert!(line.contains("handed over to native notices"), "{line}");
        assert!(line.contains("60m"), "{line}");
    }
}
