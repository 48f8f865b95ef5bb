//! Provider authentication for HTTP ingest: `Authorization: Bearer <token>`.
//!
//! Tokens are never stored: the configuration holds SHA-256 digests, the presented token is
//! hashed and compared with every digest in constant time (`subtle`), so neither the match
//! position nor an early exit tells an attacker anything.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use shirase_proto::BusinessId;
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::config::{Config, token_digest};

/// Why a request is not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("missing Authorization header; send `Authorization: Bearer <your provider token>`")]
    Missing,
    /// Not `Bearer <token>`.
    #[error("Authorization header must be `Bearer <token>`")]
    Malformed,
    /// No provider has this token.
    #[error("the bearer token is not valid for any provider")]
    Invalid,
}

/// Maps bearer tokens to providers.
#[derive(Clone)]
pub struct Authenticator {
    entries: Vec<([u8; 32], BusinessId)>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Authenticator({} credential(s))", self.entries.len())
    }
}

impl Authenticator {
    /// Every provider's token digests.
    pub fn from_config(config: &Config) -> Self {
        let entries = config
            .providers
            .iter()
            .flat_map(|p| p.token_hashes.iter().map(move |h| (*h, p.business_id)))
            .collect();
        Self { entries }
    }

    /// The provider whose token the request carries.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<BusinessId, AuthError> {
        let value = headers.get(AUTHORIZATION).ok_or(AuthError::Missing)?;
        let value = value.to_str().map_err(|_| AuthError::Malformed)?;
        let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AuthError::Malformed);
        }
        self.authenticate_token(token.trim())
    }

    /// The provider owning `token`.
    pub fn authenticate_token(&self, token: &str) -> Result<BusinessId, AuthError> {
        let digest = token_digest(token);
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (i, (h, _)) in self.entries.iter().enumerate() {
            let hit = digest.ct_eq(h);
            index = u32::conditional_select(&index, &(i as u32), hit);
            found |= hit;
        }
        if bool::from(found) {
            self.entries
                .get(index as usize)
                .map(|(_, b)| *b)
                .ok_or(AuthError::Invalid)
        } else {
            Err(AuthError::Invalid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_map_to_their_provider_only() {
        let t1 = "dev-token-provider-001-aaaaaaaa";
        let t2 = "dev-token-provider-010-bbbbbbbb";
        let a = Authenticator {
            entries: vec![
                (token_digest(t1), "001".parse().unwrap()),
                (token_digest(t2), "010".parse().unwrap()),
            ],
        };
        assert_eq!(a.authenticate_token(t1).unwrap().as_str(), "001");
        assert_eq!(a.authenticate_token(t2).unwrap().as_str(), "010");
        assert_eq!(
            a.authenticate_token("dev-token-provider-010-bbbbbbbc"),
            Err(AuthError::Invalid)
        );
        let mut h = HeaderMap::new();
        assert_eq!(a.authenticate(&h), Err(AuthError::Missing));
        h.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(a.authenticate(&h), Err(AuthError::Malformed));
        h.insert(AUTHORIZATION, format!("Bearer {t2}").parse().unwrap());
        assert_eq!(a.authenticate(&h).unwrap().as_str(), "010");
    }
}
