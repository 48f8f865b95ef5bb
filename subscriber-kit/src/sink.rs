//! Sinks: where pulled rows and tombstones go before the checkpoint may move.
//!
//! A sink accepts a [`Delivery`] as a whole or fails; notices are acked only after it accepted.
//! One batch may bring several deliveries per interface: a window pull hands each piece (at
//! most about `2 × pull.max_notices_per_window` rows, or the provider's row threshold) over as
//! it arrives, so the agent never holds a whole burst; tombstones come last. If a later piece
//! fails, the checkpoint does not move and the earlier pieces are delivered again on the retry:
//! sinks upsert by (atena_no, history_no), as for the overlap.
//! - [`FileSink`]: JSON Lines, one file per interface, one `write` per delivery, fsync'd before
//!   returning. A crash mid-write can leave a partial last line, which a reader skips; the
//!   delivery was not accepted, so it is pulled again. The next delivery starts on a new line
//!   (it ends the partial one first), so the partial line never swallows an accepted row.
//! - [`HttpSink`]: POST of the delivery as JSON Lines to the consumer's import endpoint; 2xx =
//!   accepted.
//! - [`CommandSink`]: writes the delivery to a batch file and runs a program with its path
//!   (job-management tools, ジョブ管理ツール); exit status 0 = accepted.
//! - [`Sink`]: the trait for embedding the kit in a Rust consumer.
//!
//! Files named by file-ready notices (格納完了通知) go through [`Sink::deliver_file`]: the file
//! sink copies them atomically into `<dir>/files/<interface id>/`, the HTTP sink streams their
//! bytes, the command sink runs its program with the path on the share (see [`crate::files`]).

use std::fmt::Debug;
use std::io::{Read, Seek, Write};
use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;
use serde::Serialize;
use shirase_proto::{BusinessId, InterfaceId, OffsetTimestamp};

use crate::config::SinkConfig;
use crate::files::{self, FileDelivery, FileError, FileErrorKind};
use crate::pull_client::Row;

/// One thing delivered.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A row the PULL API returned.
    Row(Row),
    /// A `delete` notice: the rows are gone, so the notice itself is delivered.
    Tombstone {
        /// The notice id.
        notice_id: String,
        /// Addressee numbers named by the notice.
        atena_no: Vec<String>,
        /// DB update timestamp of the deletion, as the provider wrote it.
        updated_at: OffsetTimestamp,
    },
}

/// One piece of what an interface's pull produced, delivered as a unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Interface id.
    pub interface: InterfaceId,
    /// Providing business.
    pub provider: BusinessId,
    /// When the pull ran.
    pub pulled_at: Timestamp,
    /// Rows, then tombstones.
    pub records: Vec<Record>,
}

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum LineKind<'a> {
    Row {
        row: &'a serde_json::Value,
    },
    Tombstone {
        notice_id: &'a str,
        atena_no: &'a [String],
        updated_at: &'a str,
        change: &'static str,
    },
}

#[derive(Serialize)]
struct Line<'a> {
    interface_id: &'a str,
    provider: &'a str,
    pulled_at: String,
    #[serde(flatten)]
    kind: LineKind<'a>,
}

impl Delivery {
    /// The delivery as JSON Lines: each line carries `interface_id`, `provider`, `pulled_at`,
    /// `kind` (`row` | `tombstone`) and the row (or the tombstone's fields).
    pub fn to_json_lines(&self) -> Vec<u8> {
        let pulled_at = OffsetTimestamp::from_instant_jst(self.pulled_at).to_string();
        let mut out = Vec::new();
        for r in &self.records {
            let kind = match r {
                Record::Row(row) => LineKind::Row { row: &row.raw },
                Record::Tombstone {
                    notice_id,
                    atena_no,
                    updated_at,
                } => LineKind::Tombstone {
                    notice_id,
                    atena_no,
                    updated_at: updated_at.as_str(),
                    change: "delete",
                },
            };
            let line = Line {
                interface_id: self.interface.as_str(),
                provider: self.provider.as_str(),
                pulled_at: pulled_at.clone(),
                kind,
            };
            // Serializing strings and JSON values cannot fail.
            if serde_json::to_writer(&mut out, &line).is_ok() {
                out.push(b'\n');
            }
        }
        out
    }
}

/// What a sink failed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkErrorKind {
    /// Local I/O (file, spool, spawn).
    Io,
    /// The consumer's endpoint or program refused the delivery.
    Refused,
}

/// A sink did not accept a delivery.
#[derive(Debug, thiserror::Error)]
#[error("sink: {message}")]
pub struct SinkError {
    kind: SinkErrorKind,
    message: String,
}

impl SinkError {
    /// Build an error (for embedded sinks).
    pub fn new(kind: SinkErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    /// What failed.
    pub fn kind(&self) -> SinkErrorKind {
        self.kind
    }
}

/// Where deliveries go. Implement it to embed the kit in a Rust consumer system. `deliver`
/// must return `Ok` only once the data is durable on the consumer's side.
pub trait Sink: Send + Sync + Debug {
    /// Accept the delivery as a whole, or fail.
    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), SinkError>>;

    /// Accept a file named by a file-ready notice, or fail. The file is read from the share
    /// (never written there) and must be checked against the notice's size and SHA-256 while
    /// it is read ([`crate::files`]). The default refuses: a sink built for rows only.
    fn deliver_file<'a>(&'a self, file: &'a FileDelivery) -> BoxFuture<'a, Result<(), FileError>> {
        Box::pin(async move {
            Err(FileError::new(
                FileErrorKind::Sink,
                format!("this sink does not take files ({})", file.interface),
            ))
        })
    }
}

/// Run blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FileError> + Send + 'static,
) -> Result<T, FileError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| FileError::new(FileErrorKind::Io, format!("file task: {e}")))?
}

/// Build the sink a configuration names.
pub fn from_config(c: &SinkConfig) -> Result<Box<dyn Sink>, SinkError> {
    Ok(match c {
        SinkConfig::File { dir } => Box::new(FileSink::new(dir.clone())?),
        SinkConfig::Http {
            url,
            timeout,
            insecure_http,
            ca_file,
        } => {
            if *insecure_http {
                tracing::warn!(
                    "sink.insecure_http = true: rows are posted in clear to the sink; dev and tests only"
                );
            }
            Box::new(HttpSink::with_ca(url.clone(), *timeout, ca_file.as_ref())?)
        }
        SinkConfig::Command {
            program,
            args,
            spool_dir,
        } => {
            let spool = spool_dir.clone().unwrap_or_else(std::env::temp_dir);
            Box::new(CommandSink {
                program: program.clone(),
                args: args.clone(),
                spool_dir: spool,
            })
        }
    })
}

/// JSON Lines files, `<dir>/<interface id>.jsonl`.
#[derive(Debug)]
pub struct FileSink {
    dir: PathBuf,
    // Serializes appends within the process; across processes each delivery is one
    // O_APPEND write, which the kernel does not interleave on a local file system.
    lock: tokio::sync::Mutex<()>,
}

impl FileSink {
    /// Create the directory if missing.
    pub fn new(dir: PathBuf) -> Result<Self, SinkError> {
        std::fs::create_dir_all(&dir).map_err(|e| {
            SinkError::new(
                SinkErrorKind::Io,
                format!("creating sink.dir {}: {e}", dir.display()),
            )
        })?;
        Ok(Self {
            dir,
            lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The file of `interface`.
    pub fn path(&self, interface: &InterfaceId) -> PathBuf {
        self.dir.join(format!("{interface}.jsonl"))
    }
}

impl Sink for FileSink {
    /// A verified atomic copy (temporary file, fsync, rename) into `<dir>/files/<interface>/`.
    fn deliver_file<'a>(&'a self, f: &'a FileDelivery) -> BoxFuture<'a, Result<(), FileError>> {
        self.deliver_file_now(f)
    }

    fn deliver<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let mut bytes = d.to_json_lines();
            if bytes.is_empty() {
                return Ok(());
            }
            let path = self.path(&d.interface);
            let _g = self.lock.lock().await;
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .read(true)
                    .append(true)
                    .open(&path)?;
                let len = f.metadata()?.len();
                if len > 0 {
                    // Reads follow the seek; O_APPEND writes still go to the end.
                    let mut last = [0u8; 1];
                    f.seek(std::io::SeekFrom::Start(len - 1))?;
                    f.read_exact(&mut last)?;
                    if last[0] != b'\n' {
                        bytes.insert(0, b'\n');
                    }
                }
                f.write_all(&bytes)?;
                f.sync_data()
            })
            .await
            .map_err(|e| SinkError::new(SinkErrorKind::Io, format!("file sink task: {e}")))?
            .map_err(|e| {
                SinkError::new(
                    SinkErrorKind::Io,
                    format!("appending to {}: {e}", self.path(&d.interface).display()),
                )
            })
        })
    }
}

impl FileSink {
    /// Where a delivered file lands: `<dir>/files/<interface id>/<file name>`.
    pub fn file_path(&self, f: &FileDelivery) -> PathBuf {
        self.dir
            .join("files")
            .join(f.interface.as_str())
            .join(f.share_path.file_name())
    }

    fn deliver_file_now<'a>(&'a self, f: &'a FileDelivery) -> BoxFuture<'a, Result<(), FileError>> {
        Box::pin(async move {
            let dest = self.file_path(f);
            let dir = dest.parent().map(PathBuf::from).unwrap_or_default();
            let name = f.share_path.file_name().to_owned();
            let f = f.clone();
            blocking(move || files::copy_verified(&f, &dir, &name).map(|_| ())).await
        })
    }
}

/// POST to the consumer's import endpoint.
#[derive(Debug)]
pub struct HttpSink {
    url: String,
    http: reqwest::Client,
}

impl HttpSink {
    /// A sink posting to `url`.
    pub fn new(url: String, timeout: Duration) -> Result<Self, SinkError> {
        Self::with_ca(url, timeout, None)
    }

    /// A sink posting to `url`, trusting `ca` besides the system roots. Redirects are not
    /// followed (a 307 would re-send the rows elsewhere): a 3xx is a failed delivery.
    pub fn with_ca(
        url: String,
        timeout: Duration,
        ca: Option<&shirase_pull::CaFile>,
    ) -> Result<Self, SinkError> {
        let http = shirase_pull::http_client(timeout, ca).map_err(|e| {
            SinkError::new(
                SinkErrorKind::Io,
                format!("building the sink's HTTP client: {e}"),
            )
        })?;
        Ok(Self { url, http })
    }
}

impl Sink for HttpSink {
    /// POST of the file's bytes, streamed (`application/octet-stream`) with headers naming
    /// the interface, version, share path, size and SHA-256; a body that turns out not to be
    /// what the notice says aborts the request.
    fn deliver_file<'a>(&'a self, f: &'a FileDelivery) -> BoxFuture<'a, Result<(), FileError>> {
        Box::pin(async move {
            let stream = files::stream_verified(f.clone())?;
            let resp = self
                .http
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .header(reqwest::header::CONTENT_LENGTH, f.size)
                .header("Shirase-Interface", f.interface.as_str())
                .header("Shirase-Interface-Version", f.version.as_str())
                .header("Shirase-File-Path", utf8_header(f.share_path.as_str()))
                .header("Shirase-File-Sha256", f.sha256.to_string())
                .header("Shirase-Notice-Id", f.notice_id.as_str())
                .body(reqwest::Body::wrap_stream(stream))
                .send()
                .await
                .map_err(|e| {
                    let kind = if std::error::Error::source(&e)
                        .and_then(|s| s.downcast_ref::<FileError>())
                        .is_some()
                    {
                        FileErrorKind::Mismatch
                    } else {
                        FileErrorKind::Sink
                    };
                    FileError::new(
                        kind,
                        format!(
                            "POST of the file to sink.url failed: {}",
                            shirase_pull::error_without_url(&e)
                        ),
                    )
                })?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(FileError::new(
                    FileErrorKind::Sink,
                    format!("sink.url answered {}", resp.status()),
                ))
            }
        })
    }

    fn deliver<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let resp = self
                .http
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                .header("Shirase-Interface", d.interface.as_str())
                .body(d.to_json_lines())
                .send()
                .await
                .map_err(|e| {
                    SinkError::new(
                        SinkErrorKind::Io,
                        format!(
                            "POST to sink.url failed: {}",
                            shirase_pull::error_without_url(&e)
                        ),
                    )
                })?;
            if resp.status().is_success() {
                Ok(())
            } else if resp.status().is_redirection() {
                Err(SinkError::new(
                    SinkErrorKind::Refused,
                    format!(
                        "sink.url answered {} (a redirect), which is not followed; configure the final address",
                        resp.status()
                    ),
                ))
            } else {
                Err(SinkError::new(
                    SinkErrorKind::Refused,
                    format!("sink.url answered {}", resp.status()),
                ))
            }
        })
    }
}

/// A header value for a path: ASCII as is, otherwise percent-encoded UTF-8.
fn utf8_header(s: &str) -> String {
    if s.is_ascii() {
        return s.to_owned();
    }
    s.bytes()
        .map(|b| {
            if b.is_ascii_graphic() && b != b'%' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs a program with the batch file's path.
#[derive(Debug)]
pub struct CommandSink {
    program: PathBuf,
    args: Vec<String>,
    spool_dir: PathBuf,
}

impl CommandSink {
    /// A sink running `program args... <batch file>` with batch files in `spool_dir`.
    pub fn new(program: PathBuf, args: Vec<String>, spool_dir: PathBuf) -> Self {
        Self {
            program,
            args,
            spool_dir,
        }
    }
}

impl Sink for CommandSink {
    /// Verifies the file, then runs `program args... <path on the share>` with
    /// `SHIRASE_INTERFACE`, `SHIRASE_INTERFACE_VERSION`, `SHIRASE_FILE_SIZE`,
    /// `SHIRASE_FILE_SHA256` and `SHIRASE_NOTICE_ID` set; exit status 0 = accepted. The
    /// program must only read the file (the share is the provider's).
    fn deliver_file<'a>(&'a self, f: &'a FileDelivery) -> BoxFuture<'a, Result<(), FileError>> {
        Box::pin(async move {
            let v = f.clone();
            blocking(move || files::verify(&v)).await?;
            let status = tokio::process::Command::new(&self.program)
                .args(&self.args)
                .arg(&f.source)
                .env("SHIRASE_INTERFACE", f.interface.as_str())
                .env("SHIRASE_INTERFACE_VERSION", &f.version)
                .env("SHIRASE_FILE_SIZE", f.size.to_string())
                .env("SHIRASE_FILE_SHA256", f.sha256.to_string())
                .env("SHIRASE_NOTICE_ID", &f.notice_id)
                .kill_on_drop(true)
                .status()
                .await
                .map_err(|e| {
                    FileError::new(
                        FileErrorKind::Sink,
                        format!("running sink.program {}: {e}", self.program.display()),
                    )
                })?;
            if status.success() {
                Ok(())
            } else {
                Err(FileError::new(
                    FileErrorKind::Sink,
                    format!("sink.program exited with {status}"),
                ))
            }
        })
    }

    fn deliver<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let io = |what: &str, e: std::io::Error| {
                SinkError::new(SinkErrorKind::Io, format!("{what}: {e}"))
            };
            std::fs::create_dir_all(&self.spool_dir)
                .map_err(|e| io("creating sink.spool_dir", e))?;
            let name = format!("shirase-{}-{}.jsonl", d.interface, uuid::Uuid::now_v7());
            let path = self.spool_dir.join(name);
            let bytes = d.to_json_lines();
            let p2 = path.clone();
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                let mut f = std::fs::File::create(&p2)?;
                f.write_all(&bytes)?;
                f.sync_all()
            })
            .await
            .map_err(|e| SinkError::new(SinkErrorKind::Io, format!("command sink task: {e}")))?
            .map_err(|e| io("writing the batch file", e))?;
            let status = tokio::process::Command::new(&self.program)
                .args(&self.args)
                .arg(&path)
                .kill_on_drop(true)
                .status()
                .await
                .map_err(|e| {
                    io(
                        &format!("running sink.program {}", self.program.display()),
                        e,
                    )
                });
            let _ = std::fs::remove_file(&path);
            let status = status?;
            if status.success() {
                Ok(())
            } else {
                Err(SinkError::new(
                    SinkErrorKind::Refused,
                    format!("sink.program exited with {status}"),
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery() -> Delivery {
        Delivery {
            interface: "001o05-00".parse().unwrap(),
            provider: "001".parse().unwrap(),
            pulled_at: "2026-11-25T01:00:00Z".parse().unwrap(),
            records: vec![
                Record::Row(Row {
                    atena_no: Some("000000000000001".into()),
                    history_no: Some(2),
                    updated_at: "2026-11-25T00:59:00Z".parse().unwrap(),
                    raw: serde_json::json!({"atena_no":"000000000000001","history_no":2,"updated_at":"2026-11-25T09:59:00+09:00"}),
                }),
                Record::Tombstone {
                    notice_id: "n1".into(),
                    atena_no: vec!["000000000000009".into()],
                    updated_at: "2026-11-25T09:59:30+09:00".parse().unwrap(),
                },
            ],
        }
    }

    #[tokio::test]
    async fn file_sink_appends_lines_with_context() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileSink::new(dir.path().into()).unwrap();
        s.deliver(&delivery()).await.unwrap();
        s.deliver(&delivery()).await.unwrap();
        let text = std::fs::read_to_string(dir.path().join("001o05-00.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["kind"], "row");
        assert_eq!(lines[0]["interface_id"], "001o05-00");
        assert_eq!(lines[0]["provider"], "001");
        assert_eq!(lines[0]["pulled_at"], "2026-11-25T10:00:00+09:00");
        assert_eq!(lines[0]["row"]["history_no"], 2);
        assert_eq!(lines[1]["kind"], "tombstone");
        assert_eq!(lines[1]["change"], "delete");
        assert_eq!(lines[1]["atena_no"][0], "000000000000009");
    }

    #[tokio::test]
    async fn file_sink_starts_a_new_line_after_a_partial_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileSink::new(dir.path().into()).unwrap();
        s.deliver(&delivery()).await.unwrap();
        // A crash in the middle of the next write.
        let path = dir.path().join("001o05-00.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"kind\":\"row\",\"interf").unwrap();
        drop(f);
        s.deliver(&delivery()).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        assert_eq!(text.lines().count(), 5, "{text}");
        assert_eq!(parsed.len(), 4, "every accepted record is a readable line");
    }

    #[tokio::test]
    async fn command_sink_exit_status_decides() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("copy");
        let ok = CommandSink::new(
            "/bin/sh".into(),
            vec!["-c".into(), format!("cp \"$0\" {}", out.display())],
            dir.path().join("spool"),
        );
        ok.deliver(&delivery()).await.unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 2);
        let refuse = CommandSink::new(
            "/bin/sh".into(),
            vec!["-c".into(), "exit 3".into()],
            dir.path().join("spool"),
        );
        assert_eq!(
            refuse.deliver(&delivery()).await.unwrap_err().kind(),
            SinkErrorKind::Refused
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("spool")).unwrap().count(),
            0,
            "batch files are removed"
        );
    }
}
