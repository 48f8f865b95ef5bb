//! The configuration helpers every section uses: the shared pure ones from
//! [`shirase_proto::config`] (problem list, duration strings, field paths, renamed keys); the
//! figment glue that turns the merged layers into a validated configuration, collecting every
//! problem, is [`shirase_service::config::load_validated`]. A leaf: imports nothing from the
//! rest of the crate.

pub use shirase_proto::config::{
    ConfigError, ConfigErrorKind, FieldProblem, Problems, Renamed, parse_duration, rebase,
};

/// Check a public user nkey (56 characters starting with `U`, base32).
pub fn check_nkey(p: &mut Problems, path: &str, k: &str) {
    let ok = k.len() == 56
        && k.starts_with('U')
        && k.bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b));
    if !ok {
        p.push(
            path,
            "must be a public user nkey (56 characters starting with U, from `shirase-relay nkey --seed-file FILE` or `nk -gen user -pubout`)",
        );
    }
}
