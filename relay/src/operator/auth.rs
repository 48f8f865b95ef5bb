//! Operator authentication: `Authorization: Bearer <token>` against `[[operators]]` digests,
//! compared in constant time like providers' tokens. Provider tokens are never operator tokens.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::error::OpsError;
use crate::config::{Operator, Role, token_digest};

/// Who called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Operator name (the audit actor).
    pub name: String,
    /// Role.
    pub role: Role,
}

impl Actor {
    /// Fail with 403 unless the actor has the `operator` role.
    pub fn require_operator(&self, action: &str) -> Result<(), OpsError> {
        if self.role == Role::Operator {
            Ok(())
        } else {
            Err(OpsError::forbidden(format!(
                "{action} needs the operator role; {} has the viewer role (read-only)",
                self.name
            )))
        }
    }
}

/// Token digests of every operator.
#[derive(Clone)]
pub struct OperatorAuth {
    entries: Vec<([u8; 32], usize)>,
    operators: Vec<Operator>,
}

impl std::fmt::Debug for OperatorAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OperatorAuth({} credential(s))", self.entries.len())
    }
}

impl OperatorAuth {
    /// From the validated operators.
    pub fn new(operators: &[Operator]) -> Self {
        let entries = operators
            .iter()
            .enumerate()
            .flat_map(|(i, o)| o.token_hashes.iter().map(move |h| (*h, i)))
            .collect();
        Self {
            entries,
            operators: operators.to_vec(),
        }
    }

    /// The operator whose token the request carries.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Actor, OpsError> {
        let value = headers.get(AUTHORIZATION).ok_or_else(|| {
            OpsError::unauthenticated(
                "missing Authorization header; send `Authorization: Bearer <operator token>`",
            )
        })?;
        let value = value.to_str().map_err(|_| {
            OpsError::unauthenticated("Authorization header must be `Bearer <token>`")
        })?;
        let Some((scheme, token)) = value.split_once(' ') else {
            return Err(OpsError::unauthenticated(
                "Authorization header must be `Bearer <token>`",
            ));
        };
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(OpsError::unauthenticated(
                "Authorization header must be `Bearer <token>`",
            ));
        }
        let digest = token_digest(token.trim());
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (h, i) in &self.entries {
            let hit = digest.ct_eq(h);
            index = u32::conditional_select(&index, &(*i as u32), hit);
            found |= hit;
        }
        if !bool::from(found) {
            return Err(OpsError::unauthenticated(
                "the bearer token is not valid for any operator ([[operators]] in relay.toml)",
            ));
        }
        self.operators
            .get(index as usize)
            .map(|o| Actor {
                name: o.name.clone(),
                role: o.role,
            })
            .ok_or_else(|| {
                OpsError::unauthenticated("the bearer token is not valid for any operator")
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_map_to_their_operator_and_role() {
        use axum::http::{HeaderMap, header::AUTHORIZATION};
        let op = |name: &str, role, token: &str| Operator {
            name: name.into(),
            role,
            token_hashes: vec![token_digest(token)],
        };
        let ops = [
            op("alice", Role::Operator, "alice-token-0123456789"),
            op("vera", Role::Viewer, "vera-token-0123456789"),
        ];
        let auth = OperatorAuth::new(&ops);
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            "Bearer vera-token-0123456789".parse().unwrap(),
        );
        let a = auth.authenticate(&h).unwrap();
        assert_eq!((a.name.as_str(), a.role), ("vera", Role::Viewer));
        assert!(
            a.require_operator("replay")
                .unwrap_err()
                .message
                .contains("viewer role")
        );
        h.insert(
            AUTHORIZATION,
            "Bearer alice-token-0123456789".parse().unwrap(),
        );
        assert!(
            auth.authenticate(&h)
                .unwrap()
                .require_operator("replay")
                .is_ok()
        );
        h.insert(
            AUTHORIZATION,
            "Bearer alice-token-0123456780".parse().unwrap(),
        );
        assert_eq!(
            auth.authenticate(&h).unwrap_err().kind(),
            crate::operator::error::OpsErrorKind::Unauthenticated
        );
    }
}
