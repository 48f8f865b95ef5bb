//! The configuration helpers every section uses: the shared pure ones from
//! [`shirase_proto::config`] (problem list, duration strings, field paths, renamed keys) and
//! [`shirase_service::config::extract`], the figment glue that turns the merged layers into a
//! raw configuration, collecting every problem. A leaf: imports nothing from the rest of the
//! crate.

pub use shirase_proto::config::{
    ConfigError, ConfigErrorKind, FieldProblem, Problems, Renamed, parse_duration,
};
pub use shirase_service::config::extract;
