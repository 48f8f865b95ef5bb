//! The `tracing` subscriber of a Shirase process.
//!
//! What is logged: the filter in `SHIRASE_LOG`, else `RUST_LOG`, else the binary's default (its
//! own crates at INFO, dependencies at WARN). A filter that does not parse is reported on stderr
//! and replaced by the default rather than stopping the process. async-nats' TRACE lines are
//! dropped whatever the filter says: they carry message payloads, and notices carry addressee
//! numbers (宛名番号).

use tracing_subscriber::{Layer, filter, layer::SubscriberExt, util::SubscriberInitExt};

/// The environment variables read for the filter, first non-empty one wins.
pub const FILTER_VARS: [&str; 2] = ["SHIRASE_LOG", "RUST_LOG"];

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// The filter chosen from the environment, and a complaint to print when the one asked for
/// could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterChoice {
    /// The directives to use.
    pub directives: String,
    /// Set when the environment asked for a filter that does not parse.
    pub warning: Option<String>,
}

/// Choose the filter: the first of [`FILTER_VARS`] that `var` reports non-blank, if it parses;
/// otherwise `default`.
pub fn choose_filter(default: &str, var: impl Fn(&str) -> Option<String>) -> FilterChoice {
    let asked = FILTER_VARS
        .iter()
        .find_map(|v| var(v).filter(|s| !s.trim().is_empty()));
    match asked {
        None => FilterChoice {
            directives: default.to_owned(),
            warning: None,
        },
        Some(a) => match filter::EnvFilter::try_new(&a) {
            Ok(_) => FilterChoice {
                directives: a,
                warning: None,
            },
            Err(e) => FilterChoice {
                directives: default.to_owned(),
                warning: Some(format!(
                    "SHIRASE_LOG/RUST_LOG is not a valid log filter ({e}); using {default:?}"
                )),
            },
        },
    }
}

/// Whether an event or span of `target` at `level` may be logged at all: async-nats logs every
/// message it reads, payload included, at TRACE.
pub fn may_log(target: &str, level: tracing::Level) -> bool {
    !(target.starts_with("async_nats") && level == tracing::Level::TRACE)
}

/// Install the process-wide subscriber. `default_filter` applies when neither `SHIRASE_LOG` nor
/// `RUST_LOG` is set (e.g. `"warn,shirase_relay=info"`). Call once, at start-up; a second call
/// panics, as `tracing_subscriber`'s `init` does.
pub fn init(default_filter: &str, format: LogFormat, output: LogOutput) {
    let choice = choose_filter(default_filter, |v| std::env::var(v).ok());
    if let Some(w) = &choice.warning {
        eprintln!("{w}");
    }
    // Parsed once already in `choose_filter`; the default is the binary's own constant.
    let env = filter::EnvFilter::new(&choice.directives);
    let no_payloads = filter::filter_fn(|m| may_log(m.target(), *m.level()));
    let layer = match (format, output) {
        (LogFormat::Text, LogOutput::Stdout) => tracing_subscriber::fmt::layer().boxed(),
        (LogFormat::Text, LogOutput::Stderr) => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        (LogFormat::Json, LogOutput::Stdout) => tracing_subscriber::fmt::layer().json().boxed(),
        (LogFormat::Json, LogOutput::Stderr) => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(env).with_filter(no_payloads))
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const DEFAULT: &str = "warn,shirase_relay=info";

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn the_default_applies_when_nothing_is_asked() {
        let c = choose_filter(DEFAULT, env(&[]));
        assert_eq!(c.directives, DEFAULT);
        assert_eq!(c.warning, None);
        let c = choose_filter(DEFAULT, env(&[("SHIRASE_LOG", "  "), ("RUST_LOG", "")]));
        assert_eq!(c.directives, DEFAULT, "blank values count as unset");
    }

    #[test]
    fn shirase_log_wins_over_rust_log() {
        let c = choose_filter(
            DEFAULT,
            env(&[("SHIRASE_LOG", "debug"), ("RUST_LOG", "trace")]),
        );
        assert_eq!(c.directives, "debug");
        let c = choose_filter(DEFAULT, env(&[("RUST_LOG", "shirase_relay=debug")]));
        assert_eq!(c.directives, "shirase_relay=debug");
    }

    #[test]
    fn an_invalid_filter_falls_back_to_the_default_with_a_warning() {
        let c = choose_filter(DEFAULT, env(&[("SHIRASE_LOG", "shirase_relay=loud")]));
        assert_eq!(c.directives, DEFAULT);
        let w = c.warning.unwrap_or_default();
        assert!(
            w.contains("SHIRASE_LOG/RUST_LOG") && w.contains(DEFAULT),
            "{w}"
        );
    }

    #[test]
    fn async_nats_trace_lines_are_dropped_and_nothing_else() {
        use tracing::Level;
        assert!(!may_log("async_nats", Level::TRACE));
        assert!(!may_log("async_nats::connector", Level::TRACE));
        assert!(may_log("async_nats", Level::DEBUG));
        assert!(may_log("shirase_relay", Level::TRACE));
    }
}
