//! `POST /oauth/token`: OAuth 2.0 client_credentials with client_secret_jwt (RFC 7523 §2.2),
//! verified for real, and the bearer-token store the data endpoint checks.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;

use super::log::Outcome;
use super::state::{Shared, lock};

/// RFC 7523's client assertion type.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Clock skew tolerated on `exp`, in seconds.
const LEEWAY_S: u64 = 5;
/// The doc's bound on how far ahead an assertion's `exp` may be.
const MAX_ASSERTION_LIFETIME_S: i64 = 300;

#[derive(Debug, Default)]
pub(crate) struct AuthState {
    /// Used `jti`s with their `exp`, so a replayed assertion is refused until it expired anyway.
    used_jti: HashMap<String, i64>,
    /// Issued access tokens → (client id, expiry). tokio's clock so paused-time tests work.
    tokens: HashMap<String, (String, Instant)>,
}

impl AuthState {
    pub(crate) fn expire_all(&mut self) {
        self.tokens.clear();
    }

    /// The client an issued token belongs to.
    pub(crate) fn client_of(&self, token: &str) -> Option<String> {
        self.tokens.get(token).map(|(c, _)| c.clone())
    }

    /// `Err(message)` when the token is missing, unknown or expired.
    pub(crate) fn check(&mut self, token: Option<&str>) -> Result<(), &'static str> {
        let Some(t) = token else {
            return Err("missing bearer token (Authorization: Bearer <access_token>)");
        };
        match self.tokens.get(t) {
            None => Err("unknown access token"),
            Some((_, exp)) if *exp <= Instant::now() => {
                self.tokens.remove(t);
                Err("access token expired")
            }
            Some(_) => Ok(()),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    exp: i64,
    #[allow(dead_code)]
    iat: i64,
    jti: String,
}

#[derive(Debug, Deserialize)]
struct IssOnly {
    iss: Option<String>,
}

/// A refused token request: status, the reason (for the log) and the answer. Boxed: it is big.
type Refusal = Box<(StatusCode, String, Response)>;

fn oauth_error(status: StatusCode, error: &str, description: impl Into<String>) -> Refusal {
    let description = description.into();
    let body = json!({"error": error, "error_description": description});
    Box::new((
        status,
        description,
        (status, axum::Json(body)).into_response(),
    ))
}

pub(crate) async fn token(
    State(s): State<Arc<Shared>>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let started = Instant::now();
    let (status, outcome, code, resp) = match issue(&s, form) {
        Ok(resp) => (StatusCode::OK, Outcome::TokenIssued, None, resp),
        Err(refusal) => {
            let (status, why, resp) = *refusal;
            tracing::info!(status = status.as_u16(), reason = %why, "token request refused");
            let outcome = if status == StatusCode::SERVICE_UNAVAILABLE {
                if s.faults().maintenance {
                    Outcome::Maintenance
                } else {
                    Outcome::Error
                }
            } else {
                Outcome::TokenRefused
            };
            (status, outcome, None, resp)
        }
    };
    s.log_request(
        &Method::POST,
        "/oauth/token",
        None,
        status,
        outcome,
        code,
        None,
        started,
        None,
    );
    resp
}

fn issue(
    s: &Shared,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Result<Response, Refusal> {
    let faults = s.faults();
    if faults.maintenance {
        let r = super::api::maintenance_response(s);
        return Err(Box::new((
            StatusCode::SERVICE_UNAVAILABLE,
            "maintenance".into(),
            r,
        )));
    }
    if faults.outage {
        let r = super::api::api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "E0503",
            "provider unavailable (outage)",
        );
        return Err(Box::new((
            StatusCode::SERVICE_UNAVAILABLE,
            "outage".into(),
            r,
        )));
    }
    let bad_request = |d: String| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", d);
    let refused = |d: String| oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", d);
    let Form(form) = form.map_err(|e| {
        bad_request(format!(
            "the body must be application/x-www-form-urlencoded: {e}"
        ))
    })?;
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(other) => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("grant_type must be client_credentials, got {other:?}"),
            ));
        }
        None => {
            return Err(bad_request(
                "grant_type is missing (client_credentials)".into(),
            ));
        }
    }
    match form.get("client_assertion_type").map(String::as_str) {
        Some(ASSERTION_TYPE) => {}
        Some(other) => {
            return Err(bad_request(format!(
                "client_assertion_type must be {ASSERTION_TYPE}, got {other:?}"
            )));
        }
        None => {
            return Err(bad_request(format!(
                "client_assertion_type is missing ({ASSERTION_TYPE})"
            )));
        }
    }
    let Some(assertion) = form.get("client_assertion") else {
        return Err(bad_request("client_assertion is missing".into()));
    };

    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| refused("client_assertion is not a well-formed JWT".into()))?;
    if header.alg != Algorithm::HS256 {
        return Err(refused(format!(
            "client_assertion must be signed with HS256, got {:?}",
            header.alg
        )));
    }
    // The issuer picks the key; the signature is verified with that key just below.
    let iss = jsonwebtoken::dangerous::insecure_decode_claims::<IssOnly>(assertion)
        .ok()
        .and_then(|c| c.iss)
        .ok_or_else(|| refused("client_assertion has no iss (the client id)".into()))?;
    let Some(secret) = s.config.clients.get(&iss) else {
        return Err(refused(format!("unknown client id {iss:?}")));
    };
    if let Some(cid) = form.get("client_id")
        && *cid != iss
    {
        return Err(refused(format!(
            "client_id {cid:?} does not match the assertion's iss {iss:?}"
        )));
    }
    let mut v = Validation::new(Algorithm::HS256);
    v.set_audience(&[s.token_url.as_str()]);
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    v.leeway = LEEWAY_S;
    let claims = jsonwebtoken::decode::<Claims>(assertion, &DecodingKey::from_secret(secret.expose().as_bytes()), &v)
        .map_err(|e| {
            refused(match e.kind() {
                JwtErrorKind::InvalidSignature => "client_assertion signature does not verify with the client secret".into(),
                JwtErrorKind::ExpiredSignature => "client_assertion has expired (exp)".into(),
                JwtErrorKind::InvalidAudience => format!("client_assertion aud must be {}", s.token_url),
                JwtErrorKind::MissingRequiredClaim(c) => format!("client_assertion has no {c} claim"),
                JwtErrorKind::Json(_) => "client_assertion must carry iss, sub, aud, exp, iat and jti (exp and iat as numbers)".into(),
                other => format!("client_assertion refused: {other:?}"),
            })
        })?
        .claims;
    if claims.sub != claims.iss {
        return Err(refused(
            "client_assertion sub must equal iss (the client id)".into(),
        ));
    }
    let now_s = jsonwebtoken::get_current_timestamp() as i64;
    if claims.exp > now_s + MAX_ASSERTION_LIFETIME_S + LEEWAY_S as i64 {
        return Err(refused(
            "client_assertion exp is more than 5 minutes ahead".into(),
        ));
    }
    if claims.jti.is_empty() {
        return Err(refused("client_assertion jti must not be empty".into()));
    }
    let mut token_bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut token_bytes);
    let token = hex::encode(token_bytes);
    {
        let mut auth = lock(&s.auth);
        auth.used_jti
            .retain(|_, exp| *exp + LEEWAY_S as i64 >= now_s);
        if auth.used_jti.contains_key(&claims.jti) {
            return Err(refused(
                "client_assertion jti was already used (assertions are single-use)".into(),
            ));
        }
        auth.used_jti.insert(claims.jti, claims.exp);
        let now = Instant::now();
        auth.tokens.retain(|_, (_, exp)| *exp > now);
        auth.tokens
            .insert(token.clone(), (iss.clone(), now + s.config.token_lifetime));
    }
    tracing::info!(client = %iss, "access token issued");
    let body = json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": s.config.token_lifetime.as_secs(),
    });
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}
