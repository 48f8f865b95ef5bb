//! The provider's PULL API client (docs/pull-api.md): GET with a query string, OAuth 2.0
//! client_credentials with a client_secret_jwt assertion (RFC 7523, HS256), a token cache
//! refreshed before expiry and once on a 401, and the outcome classes of docs/pull-api.md.
//!
//! Row contents are personal data: this module never logs them (counts and ids only).

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use shirase_proto::{AtenaNo, InterfaceId};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::{CaFile, PullClientConfig};
use crate::limiter::Limiter;
use crate::profile::{Classified, PathValues};
use crate::wire::{Claims, ErrorBody, TokenResponse};

pub use crate::wire::Row;

/// What to ask the provider for. Bounds are `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// Interface id.
    pub interface: InterfaceId,
    /// Inclusive lower bound of the DB update timestamp.
    pub from: Option<Timestamp>,
    /// Exclusive upper bound.
    pub to: Option<Timestamp>,
    /// Addressee numbers (keyed pull); empty = none.
    pub keys: Vec<AtenaNo>,
}

pub use crate::outcome::Outcome;

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The client secret file could not be read.
    #[error("{field} {path}: {source}")]
    Secret {
        /// The configuration field naming the file ([`PullClientConfig::client_secret_field`]).
        field: String,
        /// The file.
        path: String,
        /// I/O error.
        #[source]
        source: std::io::Error,
    },
    /// reqwest could not build a client (TLS backend missing).
    #[error("building the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// The configured CA file could not be read or holds no usable PEM certificate.
    #[error("{field} {path}: {message}")]
    CaFile {
        /// The configuration field naming the file.
        field: String,
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The HTTP client the agent and the watcher use towards providers and sinks: a timeout per
/// request, redirects never followed (a redirected request would carry the token, the query
/// with addressee numbers or the rows elsewhere; a 3xx is answered as an error instead), and
/// `ca` trusted besides the system roots.
pub fn http_client(timeout: Duration, ca: Option<&CaFile>) -> Result<reqwest::Client, ClientError> {
    ensure_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = ca {
        let err = |message: String| ClientError::CaFile {
            field: ca.field.clone(),
            path: ca.path.display().to_string(),
            message,
        };
        let pem = std::fs::read(&ca.path).map_err(|e| err(format!("cannot read: {e}")))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| err(format!("is not a PEM certificate bundle: {e}")))?;
        if certs.is_empty() {
            return Err(err("holds no PEM certificate".into()));
        }
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
    }
    Ok(builder.build()?)
}

/// The outcome of a 3xx answer: an error naming the provider, never followed.
fn redirected(provider: &str, what: &str, status: u16) -> Outcome {
    Outcome::Connect(format!(
        "{provider}: the {what} answered {status} (a redirect), which is not followed; configure its final https:// address"
    ))
}

#[derive(Debug, Clone)]
struct CachedToken {
    value: String,
    refresh_at: Instant,
}

/// A PULL API client of one provider. Share it through `Arc` between that provider's interfaces.
#[derive(Debug)]
pub struct PullClient {
    http: reqwest::Client,
    cfg: PullClientConfig,
    secret: Vec<u8>,
    token: Mutex<Option<CachedToken>>,
    limiter: Arc<Limiter>,
}

impl PullClient {
    /// Build the client, reading the secret from `client_secret_file`.
    pub fn new(cfg: PullClientConfig, limiter: Arc<Limiter>) -> Result<Self, ClientError> {
        let secret =
            std::fs::read(&cfg.client_secret_file).map_err(|source| ClientError::Secret {
                field: cfg.client_secret_field.clone(),
                path: cfg.client_secret_file.display().to_string(),
                source,
            })?;
        let secret = trim_newline(secret);
        Self::with_secret(cfg, secret, limiter)
    }

    /// Build the client with the secret given directly (embedding, tests).
    pub fn with_secret(
        cfg: PullClientConfig,
        secret: Vec<u8>,
        limiter: Arc<Limiter>,
    ) -> Result<Self, ClientError> {
        let http = http_client(cfg.timeout, cfg.ca_file.as_ref())?;
        Ok(Self {
            http,
            cfg,
            secret,
            token: Mutex::new(None),
            limiter,
        })
    }

    /// The provider's limiter.
    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }

    /// The client's settings.
    pub fn config(&self) -> &PullClientConfig {
        &self.cfg
    }

    /// Run one request and classify the answer, without reading the rest of a capped answer
    /// (see [`PullClient::pull`]). Takes a limiter slot for each HTTP request (token requests
    /// included).
    pub async fn pull_page(&self, req: &PullRequest) -> Classified {
        let q = self.cfg.api.query(req.from, req.to, &req.keys);
        match self.get_raw(&req.interface, &q).await {
            Ok(a) => self.cfg.api.classify(a.status, a.retry_after, &a.body),
            Err(outcome) => Classified {
                outcome,
                capped: None,
            },
        }
    }

    /// GET the interface's data endpoint with `query` as given (the probe's deliberately
    /// malformed requests), refreshing the token once on a 401. `Err` is a token or
    /// connection failure, or a 401 after the refresh.
    pub async fn get_raw(
        &self,
        interface: &InterfaceId,
        query: &[(String, String)],
    ) -> Result<RawAnswer, Outcome> {
        let token = self.token(false).await?;
        match self.get(interface, query, &token).await? {
            GetResult::Done(a) => Ok(a),
            GetResult::Unauthorized => {
                // The token may have been revoked or the provider restarted: refresh once.
                let token = self.token(true).await?;
                match self.get(interface, query, &token).await? {
                    GetResult::Done(a) => Ok(a),
                    GetResult::Unauthorized => Err(Outcome::Unauthorized {
                        message: "401 after a token refresh".into(),
                    }),
                }
            }
        }
    }

    /// Ask for a fresh access token (the probe's first check).
    pub async fn check_token(&self) -> Result<(), Outcome> {
        self.token(true).await.map(|_| ())
    }

    /// The data URL of an interface (the path template filled; no query).
    pub fn url(&self, interface: &InterfaceId) -> String {
        let i = self.cfg.interfaces.get(interface);
        let path = self.cfg.api.path(
            i.and_then(|i| i.path.as_deref()),
            PathValues {
                interface: interface.as_str(),
                version: i.and_then(|i| i.version.as_deref()),
                municipality: self.cfg.municipality.as_deref(),
            },
        );
        format!("{}{}", self.cfg.base_url.trim_end_matches('/'), path)
    }

    async fn get(
        &self,
        interface: &InterfaceId,
        q: &[(String, String)],
        token: &str,
    ) -> Result<GetResult, Outcome> {
        let _permit = self.limiter.acquire().await;
        let resp = self
            .http
            .get(self.url(interface))
            .query(q)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| Outcome::Connect(connect_reason(&e)))?;
        let status = resp.status().as_u16();
        if (300..400).contains(&status) {
            return Err(redirected(&self.cfg.provider, "PULL API", status));
        }
        let retry_after = retry_after(resp.headers());
        let body = resp
            .bytes()
            .await
            .map_err(|e| Outcome::Connect(connect_reason(&e)))?;
        if status == 401 {
            return Ok(GetResult::Unauthorized);
        }
        Ok(GetResult::Done(RawAnswer {
            status,
            retry_after,
            body: body.to_vec(),
        }))
    }

    /// A valid access token: the cached one unless it is due for refresh or `force`.
    async fn token(&self, force: bool) -> Result<String, Outcome> {
        let mut slot = self.token.lock().await;
        if !force
            && let Some(t) = slot.as_ref()
            && Instant::now() < t.refresh_at
        {
            return Ok(t.value.clone());
        }
        let assertion = self
            .assertion()
            .map_err(|m| Outcome::Unauthorized { message: m })?;
        let form = [
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
            ("client_id", self.cfg.client_id.as_str()),
        ];
        let _permit = self.limiter.acquire().await;
        let resp = self
            .http
            .post(&self.cfg.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| Outcome::Connect(connect_reason(&e)))?;
        let status = resp.status().as_u16();
        if (300..400).contains(&status) {
            return Err(redirected(&self.cfg.provider, "token endpoint", status));
        }
        let ra = retry_after(resp.headers());
        let body = resp
            .bytes()
            .await
            .map_err(|e| Outcome::Connect(connect_reason(&e)))?;
        match token_answer(status, ra, &body, Instant::now()) {
            Ok((value, refresh_at)) => {
                *slot = Some(CachedToken {
                    value: value.clone(),
                    refresh_at,
                });
                Ok(value)
            }
            Err(o) => {
                if matches!(status, 400 | 401 | 403) {
                    *slot = None;
                    return Err(o);
                }
                // Any other answer means what it means for the provider's own codes.
                Err(self.cfg.api.classify(status, ra, &body).outcome)
            }
        }
    }

    fn assertion(&self) -> Result<String, String> {
        let now = Timestamp::now().as_second();
        let claims = Claims {
            iss: &self.cfg.client_id,
            sub: &self.cfg.client_id,
            aud: &self.cfg.token_url,
            exp: now + 120,
            iat: now,
            jti: uuid::Uuid::now_v7().to_string(),
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&self.secret),
        )
        .map_err(|e| format!("signing the client assertion: {e}"))
    }
}

/// reqwest is built without a TLS crypto provider (the workspace picks ring once). A binary
/// installs it at start; an embedding application may not have, and reqwest would panic, so
/// install ring here if nothing is installed yet (a no-op otherwise). Public for the other
/// reqwest clients of an embedding crate (the agent's HTTP sink).
pub fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

enum GetResult {
    Unauthorized,
    Done(RawAnswer),
}

/// An answer of the data endpoint as received (not 401).
#[derive(Debug, Clone)]
pub struct RawAnswer {
    /// HTTP status.
    pub status: u16,
    /// `Retry-After`, when sent.
    pub retry_after: Option<Duration>,
    /// The body (personal data on a 200: never log it).
    pub body: Vec<u8>,
}

fn trim_newline(mut v: Vec<u8>) -> Vec<u8> {
    while v.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        v.pop();
    }
    v
}

fn connect_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "client timeout (no answer within providers.timeout)".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        format!("request failed: {}", error_without_url(e))
    }
}

/// A reqwest error described without its URL: a PULL request's query string carries addressee
/// numbers (宛名番号), which must not reach a log line. The kind of failure and the chain of
/// causes below reqwest (I/O, HTTP parse, TLS) are kept.
pub fn error_without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() {
        "body"
    } else if e.is_decode() {
        "decode"
    } else if e.is_redirect() {
        "redirect"
    } else if e.is_status() {
        "status"
    } else if e.is_builder() {
        "builder"
    } else {
        "request"
    };
    let mut out = format!("{kind} error");
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    h.get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The longest token lifetime believed (one year); longer ones are refreshed after 80% of it.
const MAX_TOKEN_LIFETIME_SECS: u64 = 365 * 86_400;

/// What a token endpoint's answer means: the access token and the instant to refresh it (80%
/// of its lifetime after `now`), or the outcome the pull ends with. Pure, like [`classify`].
pub fn token_answer(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    now: Instant,
) -> Result<(String, Instant), Outcome> {
    match status {
        200 => {
            let t: TokenResponse = serde_json::from_slice(body).map_err(|e| {
                Outcome::Connect(format!(
                    "token endpoint answered 200 with an unreadable body: {e}"
                ))
            })?;
            // At most a year: a larger `expires_in` (up to u64::MAX on the wire) would overflow
            // the instant below and panic.
            let lifetime = Duration::from_secs(
                t.expires_in
                    .unwrap_or(300)
                    .clamp(1, MAX_TOKEN_LIFETIME_SECS),
            );
            // Refresh when 80% of the lifetime has passed, so a request never carries a
            // token that expires on the way.
            let refresh_at = now + lifetime.mul_f64(0.8);
            Ok((t.access_token, refresh_at))
        }
        400 | 401 | 403 => {
            let e: Option<ErrorBody> = serde_json::from_slice(body).ok();
            let message = e
                .map(|e| {
                    format!(
                        "{} {}",
                        e.error.unwrap_or_default(),
                        e.error_description.unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            Err(Outcome::Unauthorized {
                message: format!("token endpoint {status}: {}", message.trim()),
            })
        }
        _ => Err(classify(status, retry_after, body)),
    }
}

/// Classify a non-401 answer of a provider speaking Shirase's own dialect (the default
/// [`ApiProfile`](crate::ApiProfile)). Pure, so every row of the docs/pull-api.md table is
/// unit-tested.
pub fn classify(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Outcome {
    crate::ApiProfile::default()
        .classify(status, retry_after, body)
        .outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn request_errors_are_described_without_the_query_string() {
        // A peer that answers garbage: reqwest's own message names the URL, query included.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            if let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(b"garbage\r\n\r\n").await;
            }
        });
        ensure_crypto_provider();
        let e = reqwest::Client::new()
            .get(format!("http://{addr}/api/x?atena_no=123456789012345"))
            .send()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("123456789012345"), "{e}");
        let described = error_without_url(&e);
        assert!(!described.contains("123456789012345"), "{described}");
        assert!(!described.contains("atena_no"), "{described}");
        assert!(described.starts_with("request error"), "{described}");
        let reason = connect_reason(&e);
        assert!(!reason.contains("123456789012345"), "{reason}");
    }

    #[test]
    fn outcome_classes_follow_the_contract_table() {
        let ra = Some(Duration::from_secs(7));
        assert_eq!(
            classify(400, None, br#"{"code":"E0004","message":"narrow"}"#),
            Outcome::TooMany
        );
        assert_eq!(
            classify(
                400,
                None,
                br#"{"code":"E0001","message":"updated_from is malformed"}"#
            ),
            Outcome::Permanent {
                status: 400,
                code: Some("E0001".into()),
                message: "updated_from is malformed".into()
            }
        );
        assert_eq!(
            classify(503, ra, br#"{"code":"E0503","message":"x"}"#),
            Outcome::Transient {
                code: Some("E0503".into()),
                retry_after: ra
            }
        );
        assert_eq!(
            classify(503, ra, br#"{"code":"E0900","message":"m"}"#),
            Outcome::Maintenance { retry_after: ra }
        );
        assert_eq!(
            classify(503, None, b""),
            Outcome::TimeoutSplit { retry_after: None }
        );
        assert_eq!(
            classify(502, None, b"<html>"),
            Outcome::Transient {
                code: None,
                retry_after: None
            }
        );
        assert!(matches!(
            classify(404, None, b""),
            Outcome::Permanent { status: 404, .. }
        ));
    }

    #[test]
    fn rows_are_parsed_with_their_timestamps() {
        let body = br#"{"interface_id":"001o05-00","count":1,"rows":[{"atena_no":"000000000012345","history_no":3,"latest":true,"updated_at":"2026-11-25T10:15:30.123456+09:00","change":"update","record":{}}]}"#;
        let Outcome::Data(rows) = classify(200, None, body) else {
            panic!("not data")
        };
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].atena_no.as_deref(), Some("000000000012345"));
        assert_eq!(rows[0].history_no, Some(3));
        assert_eq!(
            rows[0].updated_at,
            "2026-11-25T01:15:30.123456Z".parse::<Timestamp>().unwrap()
        );
        let bad = br#"{"rows":[{"atena_no":"1"}]}"#;
        assert_eq!(
            classify(200, None, bad),
            Outcome::ProfileMismatch {
                key: "row_updated_at".into(),
                message: "/rows/0/updated_at is missing".into()
            }
        );
    }

    #[test]
    fn token_answers_give_a_token_or_an_outcome() {
        let now = Instant::now();
        let (token, refresh_at) = token_answer(
            200,
            None,
            br#"{"access_token":"t0k","expires_in":100}"#,
            now,
        )
        .unwrap();
        assert_eq!(token, "t0k");
        assert_eq!(refresh_at, now + Duration::from_secs(80));
        // Without expires_in the lifetime is 300 s.
        let (_, refresh_at) = token_answer(200, None, br#"{"access_token":"t"}"#, now).unwrap();
        assert_eq!(refresh_at, now + Duration::from_secs(240));
        assert!(matches!(
            token_answer(200, None, b"<html>", now),
            Err(Outcome::Connect(m)) if m.starts_with("token endpoint answered 200 with an unreadable body")
        ));
        assert_eq!(
            token_answer(
                401,
                None,
                br#"{"error":"invalid_client","error_description":"bad assertion"}"#,
                now
            ),
            Err(Outcome::Unauthorized {
                message: "token endpoint 401: invalid_client bad assertion".into()
            })
        );
        assert_eq!(
            token_answer(403, None, b"", now),
            Err(Outcome::Unauthorized {
                message: "token endpoint 403: ".into()
            })
        );
        let ra = Some(Duration::from_secs(5));
        assert_eq!(
            token_answer(503, ra, br#"{"code":"E0900","message":"m"}"#, now),
            Err(Outcome::Maintenance { retry_after: ra })
        );
    }

    #[test]
    fn a_huge_token_lifetime_is_capped_instead_of_overflowing() {
        let now = Instant::now();
        for body in [
            &br#"{"access_token":"t","expires_in":18446744073709551615}"#[..],
            br#"{"access_token":"t","expires_in":12000000000000000000}"#,
        ] {
            let (_, refresh_at) = token_answer(200, None, body, now).unwrap();
            assert_eq!(
                refresh_at,
                now + Duration::from_secs(MAX_TOKEN_LIFETIME_SECS).mul_f64(0.8)
            );
        }
        let (_, refresh_at) =
            token_answer(200, None, br#"{"access_token":"t","expires_in":0}"#, now).unwrap();
        assert_eq!(refresh_at, now + Duration::from_millis(800));
    }

    #[test]
    fn an_unreadable_secret_file_is_named_by_its_field() {
        let cfg = PullClientConfig {
            base_url: "http://127.0.0.1:1".into(),
            token_url: "http://127.0.0.1:1/oauth/token".into(),
            client_id: "tax-agent".into(),
            client_secret_file: "/nonexistent/tax.secret".into(),
            client_secret_field: "providers[001].client_secret_file".into(),
            api: Default::default(),
            interfaces: Default::default(),
            municipality: None,
            timeout: Duration::from_secs(35),
            provider: "provider 001".into(),
            ca_file: None,
        };
        let e = PullClient::new(cfg, Arc::new(Limiter::new(1, 1.0))).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("providers[001].client_secret_file /nonexistent/tax.secret: "),
            "{e}"
        );
    }

    #[test]
    fn assertion_carries_the_rfc7523_claims() {
        let cfg = PullClientConfig {
            base_url: "http://127.0.0.1:1".into(),
            token_url: "http://127.0.0.1:1/oauth/token".into(),
            client_id: "tax-agent".into(),
            client_secret_file: "/nonexistent".into(),
            client_secret_field: "providers[001].client_secret_file".into(),
            api: Default::default(),
            interfaces: Default::default(),
            municipality: None,
            timeout: Duration::from_secs(35),
            provider: "provider 001".into(),
            ca_file: None,
        };
        let c = PullClient::with_secret(cfg, b"s3cret".to_vec(), Arc::new(Limiter::new(1, 1.0)))
            .unwrap();
        let jwt = c.assertion().unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.set_audience(&["http://127.0.0.1:1/oauth/token"]);
        v.set_issuer(&["tax-agent"]);
        let d = jsonwebtoken::decode::<serde_json::Value>(
            &jwt,
            &jsonwebtoken::DecodingKey::from_secret(b"s3cret"),
            &v,
        )
        .unwrap();
        assert_eq!(d.claims["sub"], "tax-agent");
        let jti = d.claims["jti"].as_str().unwrap();
        assert_eq!(uuid::Uuid::parse_str(jti).unwrap().get_version_num(), 7);
        assert!(d.claims["exp"].as_i64().unwrap() - d.claims["iat"].as_i64().unwrap() <= 300);
        assert_ne!(c.assertion().unwrap(), jwt, "jti must be fresh each time");
    }
}
