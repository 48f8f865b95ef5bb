//! `[[operators]]`: who may call the operator API, with which role.
//!
//! Stored like providers' credentials: SHA-256 digests of bearer tokens (`token_sha256`), or a
//! dev token file that is hashed at load time. The plain token never stays in memory.

use std::path::Path;

use serde::Deserialize;

use super::common::FieldProblem;
use super::providers::{RawCredentials, token_digest, token_in};

/// What an operator may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything: status, replay, resync, dead letters, pause/resume.
    Operator,
    /// Read-only: status, dead-letter list and show.
    Viewer,
}

/// `[[operators]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOperator {
    /// Name recorded as the actor in the audit stream.
    pub name: String,
    /// `operator` or `viewer`.
    pub role: String,
    /// Bearer token digests or a dev token file.
    pub credentials: RawCredentials,
}

/// A validated operator credential.
#[derive(Clone)]
pub struct Operator {
    /// Actor name for the audit stream.
    pub name: String,
    /// Role.
    pub role: Role,
    /// SHA-256 digests of accepted tokens.
    pub token_hashes: Vec<[u8; 32]>,
}

impl std::fmt::Debug for Operator {
    // Token digests stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Operator({}, {:?}, {} digest(s))",
            self.name,
            self.role,
            self.token_hashes.len()
        )
    }
}

/// Validate `[[operators]]`; problems name their field (`operators[1].role`).
pub(super) fn validate(
    raw: &[RawOperator],
    base_dir: Option<&Path>,
) -> (Vec<Operator>, Vec<FieldProblem>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let mut push = |path: String, message: String| problems.push(FieldProblem { path, message });
    for (i, r) in raw.iter().enumerate() {
        let path = format!("operators[{i}]");
        let name_ok = (1..=64).contains(&r.name.len())
            && r.name.bytes().all(|b| {
                b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' || b == b'@'
            });
        if !name_ok {
            push(
                format!("{path}.name"),
                "must be 1 to 64 characters of a-z, A-Z, 0-9, '-', '_', '.', '@'".into(),
            );
        }
        if raw[..i].iter().any(|o| o.name == r.name) {
            push(
                format!("{path}.name"),
                format!("operator {:?} is listed twice", r.name),
            );
        }
        let role = match r.role.as_str() {
            "operator" => Some(Role::Operator),
            "viewer" => Some(Role::Viewer),
            other => {
                push(
                    format!("{path}.role"),
                    format!("must be \"operator\" or \"viewer\", got {other:?}"),
                );
                None
            }
        };
        let mut token_hashes = Vec::new();
        for (j, h) in r.credentials.token_sha256.iter().enumerate() {
            match hex::decode(h)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
            {
                Some(d) => token_hashes.push(d),
                None => push(
                    format!("{path}.credentials.token_sha256[{j}]"),
                    "must be 64 hex digits (sha256sum of the token)".into(),
                ),
            }
        }
        if let Some(f) = &r.credentials.token_file {
            let full = match base_dir {
                Some(d) if f.is_relative() => d.join(f),
                _ => f.clone(),
            };
            match std::fs::read_to_string(&full) {
                Ok(text) => match token_in(&text) {
                    Some(t) => token_hashes.push(token_digest(t)),
                    None => push(
                        format!("{path}.credentials.token_file"),
                        format!(
                            "{} holds no token (one line, at least 16 characters)",
                            full.display()
                        ),
                    ),
                },
                Err(e) => push(
                    format!("{path}.credentials.token_file"),
                    format!("cannot read {}: {e}", full.display()),
                ),
            }
        }
        if token_hashes.is_empty() {
            push(
                format!("{path}.credentials"),
                "set token_sha256 (list of hex digests) or token_file".into(),
            );
        }
        if let Some(role) = role {
            out.push(Operator {
                name: r.name.clone(),
                role,
                token_hashes,
            });
        }
    }
    (out, problems)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn raw(name: &str, role: &str, digests: Vec<String>) -> RawOperator {
        RawOperator {
            name: name.into(),
            role: role.into(),
            credentials: RawCredentials {
                token_sha256: digests,
                token_file: None,
            },
        }
    }

    #[test]
    fn problems_name_the_field_and_good_entries_validate() {
        let good = hex::encode(token_digest("operator-token-0123456789"));
        let (ops, problems) = validate(
            &[
                raw("alice", "operator", vec![good.clone()]),
                raw("bob", "admin", vec![good.clone()]),
                raw("alice", "viewer", vec!["abc".into()]),
                raw("carol", "viewer", vec![]),
            ],
            None,
        );
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "operators[1].role",
                "operators[2].name",
                "operators[2].credentials.token_sha256[0]",
                "operators[2].credentials",
                "operators[3].credentials"
            ]
        );
        assert_eq!(ops[0].role, Role::Operator);
        assert_eq!(
            ops[0].token_hashes,
            vec![token_digest("operator-token-0123456789")]
        );
        assert!(
            !format!("{:?}", ops[0]).contains(&good),
            "digests stay out of Debug"
        );
    }
}
