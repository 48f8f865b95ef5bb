//! The configuration helpers every section uses: the shared pure ones from
//! [`shirase_proto::config`] (problem list, duration strings, field paths, renamed keys); the
//! figment glue that turns the merged layers into a validated configuration, collecting every
//! problem, is [`shirase_service::config::load_validated`]. A leaf: imports nothing from the
//! rest of the crate.

pub use shirase_proto::config::{
    ConfigError, ConfigErrorKind, FieldProblem, Problems, Renamed, parse_duration,
};
