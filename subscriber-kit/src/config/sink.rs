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
        /// Allow an `http://` URL (dev and tests only).
        #[serde(default)]
        insecure_http: bool,
        /// A private CA (PEM) to trust for the endpoint's HTTPS.
        #[serde(default)]
        ca_file: Option<PathBuf>,
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
        /// `http://` allowed (`insecure_http = true`: dev and tests only; the agent warns).
        insecure_http: bool,
        /// A private CA (PEM) trusted for the endpoint's HTTPS.
        ca_file: Option<shirase_pull::CaFile>,
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
            RawSink::Http {
                url,
                timeout,
                insecure_http,
                ca_file,
            } => {
                if url.starts_with("http://") {
                    if !insecure_http {
                        p.push(
                            "sink.url",
                            super::providers::plaintext_refused("sink.insecure_http"),
                        );
                    }
                } else if !url.starts_with("https://") {
                    p.push("sink.url", format!("must be an https URL, got {url:?}"));
                }
                let ca_file =
                    p.optional_path("sink.ca_file", ca_file)
                        .map(|path| shirase_pull::CaFile {
                            path,
                            field: "sink.ca_file".into(),
                        });
                let timeout = p.duration("sink.timeout", timeout).unwrap_or_default();
                if timeout.is_zero() {
                    p.push("sink.timeout", "must be more than \"0s\"");
                }
                SinkConfig::Http {
                    url: url.clone(),
                    timeout,
                    insecure_http: *insecure_http,
                    ca_file,
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
