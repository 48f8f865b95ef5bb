//! `[sink]`: where pulled rows go.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::common::Problems;

/// `[sink]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawSink {
    /// JSON Lines files.
    File {
        /// Directory.
        dir: PathBuf,
    },
    /// HTTP POST.
    Http {
        /// Endpoint URL.
        url: String,
        /// Request timeout.
        #[serde(default = "default_sink_timeout")]
        timeout: String,
    },
    /// A program.
    Command {
        /// Program to run.
        program: PathBuf,
        /// Arguments placed before the batch file path.
        #[serde(default)]
        args: Vec<String>,
        /// Directory for batch files (absent = the system's temp dir).
        #[serde(default)]
        spool_dir: Option<PathBuf>,
    },
}

fn default_sink_timeout() -> String {
    "30s".into()
}

/// Where pulled rows go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkConfig {
    /// JSON Lines, one file per interface (`<dir>/<interface id>.jsonl`), fsync'd.
    File {
        /// Directory (created if missing).
        dir: PathBuf,
    },
    /// HTTP POST of each batch (JSON Lines body) to the consumer's import endpoint.
    Http {
        /// Endpoint URL.
        url: String,
        /// Request timeout.
        timeout: Duration,
    },
    /// Runs `program args... <batch file>`; exit status 0 = accepted.
    Command {
        /// Program to run.
        program: PathBuf,
        /// Arguments placed before the batch file path.
        args: Vec<String>,
        /// Directory for batch files; `None` = the system's temp dir.
        spool_dir: Option<PathBuf>,
    },
}

impl SinkConfig {
    /// Validate `[sink]`.
    pub(super) fn validate(raw: &RawSink, p: &mut Problems) -> Self {
        match raw {
            RawSink::File { dir } => {
                if dir.as_os_str().is_empty() {
                    p.push("sink.dir", "give the directory for the JSON Lines files");
                }
                SinkConfig::File { dir: dir.clone() }
            }
            RawSink::Http { url, timeout } => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    p.push("sink.url", format!("must be an http(s) URL, got {url:?}"));
                }
                let timeout = p.duration("sink.timeout", timeout).unwrap_or_default();
                if timeout.is_zero() {
                    p.push("sink.timeout", "must be more than \"0s\"");
                }
                SinkConfig::Http {
                    url: url.clone(),
                    timeout,
                }
            }
            RawSink::Command {
                program,
                args,
                spool_dir,
            } => {
                if program.as_os_str().is_empty() {
                    p.push("sink.program", "give the program to run");
                }
                SinkConfig::Command {
                    program: program.clone(),
                    args: args.clone(),
                    spool_dir: p.optional_path("sink.spool_dir", spool_dir),
                }
            }
        }
    }
}
