//! `shirase-relay backup` and `restore`: every Shirase stream and KV bucket, through JetStream's
//! own snapshot and restore API over NATS (no `nats` CLI needed).
//!
//! A backup is a directory: `shirase-backup.json` (what was saved, written last, so a backup
//! without it is incomplete) and one directory per stream holding `backup.json` (the stream's
//! `config` and `state` as JetStream answered the snapshot request) and `stream.tar.s2` (the
//! snapshot itself: the stream's messages and its consumers with their positions). That
//! per-stream layout is the one `nats stream backup` writes, so `nats stream restore DIR/NAME`
//! can read it too.
//!
//! The protocol (nats-server `jetstream_api.go`):
//! - snapshot: request `$JS.API.STREAM.SNAPSHOT.<stream>` with `deliver_subject`; the answer
//!   carries `config` and `state`; the server then sends chunks to the deliver subject, each
//!   with a reply subject that must be answered (an empty message) before the server sends
//!   more than its window; an empty message ends the snapshot (status 204, or none from older
//!   servers; 408 / 500 with a description when the server gave up).
//! - restore: request `$JS.API.STREAM.RESTORE.<stream>` with `config` and `state`; the answer
//!   names a deliver subject; each chunk is a request to it answered by an empty message (or an
//!   error); an empty request ends the upload and is answered, once the server has rebuilt the
//!   stream, with a stream-create answer (`config`, `state`) or an error.
//!
//! Consumers travel inside the snapshot, so after a restore each agent's consumer resumes at
//! the position it had when the backup was taken, and its checkpoint (KV) is the one of that
//! moment: the agent continues from there.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_nats::jetstream::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Config;

/// The file naming what a backup holds; written last.
pub const MANIFEST: &str = "shirase-backup.json";
/// A stream's `config` and `state` (the `nats stream backup` name).
pub const STREAM_META: &str = "backup.json";
/// A stream's snapshot (s2-compressed tar; the `nats stream backup` name).
pub const STREAM_DATA: &str = "stream.tar.s2";

/// Bytes per snapshot chunk asked of the server and per restore chunk sent.
const CHUNK: usize = 128 * 1024;
/// How long a snapshot may go without a chunk before it is given up.
const IDLE: Duration = Duration::from_secs(30);
/// How long one restore chunk may wait for the server's acknowledgement.
const CHUNK_ACK: Duration = Duration::from_secs(30);
/// How long the server may take to rebuild a restored stream after the last chunk.
const REBUILD: Duration = Duration::from_secs(600);

/// Why a backup or restore failed; the message names the stream, file or setting to look at.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// `--out` exists and is not empty.
    #[error("{}: the backup directory must be new or empty (choose a new --out)", path.display())]
    OutNotEmpty {
        /// The directory.
        path: PathBuf,
    },
    /// A file of the backup could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A file of the backup is not what a backup writes.
    #[error("{}: {message}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A stream to back up does not exist.
    #[error(
        "stream {stream} does not exist: run `shirase-relay provision` with this relay.toml first (nothing was backed up)"
    )]
    Missing {
        /// The stream.
        stream: String,
    },
    /// JetStream cannot snapshot memory streams.
    #[error(
        "stream {stream} uses memory storage, which JetStream cannot snapshot: set stream.storage = \"file\" and provision"
    )]
    MemoryStorage {
        /// The stream.
        stream: String,
    },
    /// A stream to restore exists already.
    #[error(
        "stream {stream} exists already: restore creates streams and never overwrites one; restore into a cluster without Shirase's streams, or delete them first (nothing was restored)"
    )]
    Exists {
        /// The stream.
        stream: String,
    },
    /// `--only` names a stream the backup does not hold.
    #[error("stream {stream} is not in the backup in {} (see its {MANIFEST})", dir.display())]
    NotInBackup {
        /// The stream.
        stream: String,
        /// The backup directory.
        dir: PathBuf,
    },
    /// The backup is of another municipality than relay.toml.
    #[error(
        "the backup in {} is of municipality {backup}, relay.toml (municipality_code) says {config}",
        dir.display()
    )]
    OtherMunicipality {
        /// The backup directory.
        dir: PathBuf,
        /// The backup's municipality.
        backup: String,
        /// relay.toml's municipality.
        config: String,
    },
    /// JetStream refused a request or ended a transfer with an error.
    #[error("{what} of stream {stream}: {message}")]
    JetStream {
        /// `snapshot` or `restore`.
        what: &'static str,
        /// The stream.
        stream: String,
        /// JetStream's answer.
        message: String,
    },
    /// NATS did not answer in time or the connection failed.
    #[error(
        "{what} of stream {stream}: {message} (check the [nats] settings and the cluster's health)"
    )]
    Nats {
        /// `snapshot` or `restore`.
        what: &'static str,
        /// The stream.
        stream: String,
        /// The failure.
        message: String,
    },
}

/// What one stream's backup or restore moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSummary {
    /// The stream (`KV_<bucket>` for a bucket).
    pub name: String,
    /// Messages in the stream when the snapshot was taken.
    pub messages: u64,
    /// Its first and last sequence then.
    pub first_seq: u64,
    /// Last sequence.
    pub last_seq: u64,
    /// Consumers in the snapshot.
    pub consumers: u64,
    /// Size of `stream.tar.s2`.
    pub archive_bytes: u64,
}

/// `shirase-backup.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version of the backup directory.
    pub format: u32,
    /// When the backup finished (RFC 3339, UTC).
    pub created: String,
    /// relay.toml's `municipality_code`.
    pub municipality_code: String,
    /// The relay that wrote it.
    pub relay_version: String,
    /// Every stream saved, in order.
    pub streams: Vec<StreamSummary>,
}

/// Every stream the topology of `config` has: the streams, then the KV buckets' streams.
pub fn stream_names(config: &Config) -> Vec<String> {
    let d = crate::topology::desired(config);
    d.streams
        .iter()
        .map(|s| s.name.clone())
        .chain(d.buckets.iter().map(|b| format!("KV_{}", b.bucket)))
        .collect()
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

fn js_message(e: &async_nats::jetstream::Error) -> String {
    format!("JetStream answered: {e}")
}

fn mib(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    }
}

fn u64_at(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

async fn exists(
    js: &async_nats::jetstream::Context,
    stream: &str,
    what: &'static str,
) -> Result<Option<Value>, BackupError> {
    let answer: Response<Value> = js
        .request(format!("STREAM.INFO.{stream}"), &())
        .await
        .map_err(|e| BackupError::Nats {
            what,
            stream: stream.to_owned(),
            message: e.to_string(),
        })?;
    match answer {
        Response::Ok(info) => Ok(Some(info)),
        // 10059: stream not found.
        Response::Err { error } if error.error_code().0 == 10059 => Ok(None),
        Response::Err { error } => Err(BackupError::JetStream {
            what,
            stream: stream.to_owned(),
            message: js_message(&error),
        }),
    }
}

/// Save every stream in `streams` into the new directory `dir`, printing progress to `out`.
/// Every stream is checked before any is saved: a missing or memory stream fails the whole
/// backup at once.
pub async fn backup(
    client: &async_nats::Client,
    js: &async_nats::jetstream::Context,
    municipality_code: &str,
    streams: &[String],
    dir: &Path,
    out: &mut dyn Write,
) -> Result<Manifest, BackupError> {
    if let Ok(mut entries) = std::fs::read_dir(dir)
        && entries.next().is_some()
    {
        return Err(BackupError::OutNotEmpty {
            path: dir.to_owned(),
        });
    }
    for name in streams {
        let info = exists(js, name, "snapshot")
            .await?
            .ok_or(BackupError::Missing {
                stream: name.clone(),
            })?;
        if info.pointer("/config/storage").and_then(Value::as_str) == Some("memory") {
            return Err(BackupError::MemoryStorage {
                stream: name.clone(),
            });
        }
    }
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut saved = Vec::new();
    for name in streams {
        saved.push(snapshot(client, js, name, &dir.join(name), out).await?);
    }
    let manifest = Manifest {
        format: 1,
        created: jiff::Timestamp::now().to_string(),
        municipality_code: municipality_code.to_owned(),
        relay_version: env!("CARGO_PKG_VERSION").to_owned(),
        streams: saved,
    };
    let path = dir.join(MANIFEST);
    let text = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    write_synced(&path, &text).await?;
    let _ = writeln!(
        out,
        "backup complete: {} stream(s) in {}",
        manifest.streams.len(),
        dir.display()
    );
    Ok(manifest)
}

async fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let mut f = tokio::fs::File::create(path).await.map_err(io_err(path))?;
    f.write_all(bytes).await.map_err(io_err(path))?;
    f.sync_all().await.map_err(io_err(path))
}

/// One stream's snapshot into `dir` (created).
async fn snapshot(
    client: &async_nats::Client,
    js: &async_nats::jetstream::Context,
    stream: &str,
    dir: &Path,
    out: &mut dyn Write,
) -> Result<StreamSummary, BackupError> {
    let nats = |message: String| BackupError::Nats {
        what: "snapshot",
        stream: stream.to_owned(),
        message,
    };
    let started = Instant::now();
    tokio::fs::create_dir_all(dir).await.map_err(io_err(dir))?;
    let inbox = client.new_inbox();
    // Subscribed before the request: the server starts sending as soon as it has answered.
    let mut chunks = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| nats(e.to_string()))?;
    let request = json!({ "deliver_subject": inbox, "no_consumers": false, "chunk_size": CHUNK });
    let answer: Response<Value> = js
        .request(format!("STREAM.SNAPSHOT.{stream}"), &request)
        .await
        .map_err(|e| nats(e.to_string()))?;
    let meta = match answer {
        Response::Ok(v) => v,
        Response::Err { error } => {
            return Err(BackupError::JetStream {
                what: "snapshot",
                stream: stream.to_owned(),
                message: js_message(&error),
            });
        }
    };
    let messages = u64_at(&meta, "/state/messages");
    let _ = writeln!(
        out,
        "{stream}: saving {messages} message(s), {} stored",
        mib(u64_at(&meta, "/state/bytes"))
    );
    let data_path = dir.join(STREAM_DATA);
    let received = receive(client, &mut chunks, stream, &data_path, out).await?;
    let consumers = u64_at(&meta, "/state/consumer_count");
    let stream_meta = json!({ "config": meta.get("config"), "state": meta.get("state") });
    let meta_path = dir.join(STREAM_META);
    write_synced(
        &meta_path,
        &serde_json::to_vec_pretty(&stream_meta).unwrap_or_default(),
    )
    .await?;
    let _ = writeln!(
        out,
        "{stream}: saved {messages} message(s), {consumers} consumer(s), archive {} in {:.1} s",
        mib(received),
        started.elapsed().as_secs_f64()
    );
    Ok(StreamSummary {
        name: stream.to_owned(),
        messages,
        first_seq: u64_at(&meta, "/state/first_seq"),
        last_seq: u64_at(&meta, "/state/last_seq"),
        consumers,
        archive_bytes: received,
    })
}

/// Write the snapshot's chunks to `data_path` until the server's end message, acknowledging
/// each; returns the bytes written.
async fn receive(
    client: &async_nats::Client,
    chunks: &mut async_nats::Subscriber,
    stream: &str,
    data_path: &Path,
    out: &mut dyn Write,
) -> Result<u64, BackupError> {
    let nats = |message: String| BackupError::Nats {
        what: "snapshot",
        stream: stream.to_owned(),
        message,
    };
    let mut file = tokio::fs::File::create(data_path)
        .await
        .map_err(io_err(data_path))?;
    let mut received: u64 = 0;
    let mut next_report: u64 = 64 * 1024 * 1024;
    loop {
        let msg = match tokio::time::timeout(IDLE, chunks.next()).await {
            Ok(Some(m)) => m,
            Ok(None) => return Err(nats("the connection closed during the snapshot".into())),
            Err(_) => return Err(nats(format!("no data from the server for {IDLE:?}"))),
        };
        if msg.payload.is_empty() {
            match msg.status {
                None => break,
                Some(s) if s.as_u16() == 204 => break,
                Some(s) => {
                    return Err(BackupError::JetStream {
                        what: "snapshot",
                        stream: stream.to_owned(),
                        message: format!(
                            "the server ended the snapshot with status {} {}",
                            s.as_u16(),
                            msg.description.unwrap_or_default()
                        ),
                    });
                }
            }
        }
        // Acknowledge first: the server stops sending once a window of chunks is unanswered.
        if let Some(reply) = msg.reply {
            client
                .publish(reply, Bytes::new())
                .await
                .map_err(|e| nats(e.to_string()))?;
        }
        file.write_all(&msg.payload)
            .await
            .map_err(io_err(data_path))?;
        received += msg.payload.len() as u64;
        if received >= next_report {
            let _ = writeln!(out, "{stream}: {} received", mib(received));
            next_report += 64 * 1024 * 1024;
        }
    }
    file.sync_all().await.map_err(io_err(data_path))?;
    Ok(received)
}

/// Read and check `DIR/shirase-backup.json`.
pub fn read_manifest(dir: &Path) -> Result<Manifest, BackupError> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read(&path).map_err(io_err(&path))?;
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| BackupError::BadFile {
        path: path.clone(),
        message: format!("not a Shirase backup manifest: {e}"),
    })?;
    if manifest.format != 1 {
        return Err(BackupError::BadFile {
            path,
            message: format!(
                "backup format {} is not known to this relay (it reads format 1)",
                manifest.format
            ),
        });
    }
    for s in &manifest.streams {
        for file in [STREAM_META, STREAM_DATA] {
            let p = dir.join(&s.name).join(file);
            std::fs::metadata(&p).map_err(io_err(&p))?;
        }
    }
    Ok(manifest)
}

/// Restore the streams of the backup in `dir` (all of them, or those named in `only`) into a
/// cluster that has none of them, printing progress to `out`. Every stream is checked before
/// any is restored: one that exists already fails the whole restore at once.
pub async fn restore(
    client: &async_nats::Client,
    js: &async_nats::jetstream::Context,
    municipality_code: &str,
    dir: &Path,
    only: &[String],
    out: &mut dyn Write,
) -> Result<Vec<StreamSummary>, BackupError> {
    let mut manifest = read_manifest(dir)?;
    if let Some(unknown) = only
        .iter()
        .find(|name| !manifest.streams.iter().any(|s| &s.name == *name))
    {
        return Err(BackupError::NotInBackup {
            stream: unknown.clone(),
            dir: dir.to_owned(),
        });
    }
    if !only.is_empty() {
        manifest.streams.retain(|s| only.contains(&s.name));
    }
    if manifest.municipality_code != municipality_code {
        return Err(BackupError::OtherMunicipality {
            dir: dir.to_owned(),
            backup: manifest.municipality_code,
            config: municipality_code.to_owned(),
        });
    }
    for s in &manifest.streams {
        if exists(js, &s.name, "restore").await?.is_some() {
            return Err(BackupError::Exists {
                stream: s.name.clone(),
            });
        }
    }
    let _ = writeln!(
        out,
        "restoring {} stream(s) of the backup of {} from {}",
        manifest.streams.len(),
        manifest.created,
        dir.display()
    );
    let mut restored = Vec::new();
    for s in &manifest.streams {
        restored.push(restore_stream(client, js, s, &dir.join(&s.name), out).await?);
    }
    let _ = writeln!(out, "restore complete: {} stream(s)", restored.len());
    Ok(restored)
}

async fn restore_stream(
    client: &async_nats::Client,
    js: &async_nats::jetstream::Context,
    saved: &StreamSummary,
    dir: &Path,
    out: &mut dyn Write,
) -> Result<StreamSummary, BackupError> {
    let stream = saved.name.as_str();
    let nats = |message: String| BackupError::Nats {
        what: "restore",
        stream: stream.to_owned(),
        message,
    };
    let refused = |message: String| BackupError::JetStream {
        what: "restore",
        stream: stream.to_owned(),
        message,
    };
    let started = Instant::now();
    let meta_path = dir.join(STREAM_META);
    let meta: Value = serde_json::from_slice(
        &tokio::fs::read(&meta_path)
            .await
            .map_err(io_err(&meta_path))?,
    )
    .map_err(|e| BackupError::BadFile {
        path: meta_path.clone(),
        message: format!("not a stream backup's metadata: {e}"),
    })?;
    if meta.pointer("/config/name").and_then(Value::as_str) != Some(stream) {
        return Err(BackupError::BadFile {
            path: meta_path,
            message: format!("config.name is not {stream}"),
        });
    }
    let answer: Response<Value> = js
        .request(format!("STREAM.RESTORE.{stream}"), &meta)
        .await
        .map_err(|e| nats(e.to_string()))?;
    let deliver = match answer {
        Response::Ok(v) => v
            .get("deliver_subject")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| refused("the server named no deliver_subject".into()))?,
        Response::Err { error } => return Err(refused(js_message(&error))),
    };
    let sent = upload(client, &deliver, stream, &dir.join(STREAM_DATA)).await?;
    let _ = writeln!(
        out,
        "{stream}: sent {}; the cluster is rebuilding the stream",
        mib(sent)
    );
    let last = async_nats::Request::new()
        .payload(Bytes::new())
        .timeout(Some(REBUILD));
    let done = client
        .send_request(deliver, last)
        .await
        .map_err(|e| nats(e.to_string()))?;
    let info: Response<Value> = serde_json::from_slice(&done.payload)
        .map_err(|e| refused(format!("unreadable final answer: {e}")))?;
    let info = match info {
        Response::Ok(v) => v,
        Response::Err { error } => return Err(refused(js_message(&error))),
    };
    let messages = u64_at(&info, "/state/messages");
    if messages != saved.messages {
        return Err(refused(format!(
            "restored {messages} message(s), the backup holds {}",
            saved.messages
        )));
    }
    let _ = writeln!(
        out,
        "{stream}: restored {messages} message(s) (sequences {}..{}), {} consumer(s) in {:.1} s",
        u64_at(&info, "/state/first_seq"),
        u64_at(&info, "/state/last_seq"),
        u64_at(&info, "/state/consumer_count"),
        started.elapsed().as_secs_f64()
    );
    Ok(StreamSummary {
        name: stream.to_owned(),
        messages,
        first_seq: u64_at(&info, "/state/first_seq"),
        last_seq: u64_at(&info, "/state/last_seq"),
        consumers: u64_at(&info, "/state/consumer_count"),
        archive_bytes: sent,
    })
}

/// Send the snapshot in `data_path` to the restore's deliver subject, one acknowledged
/// request per chunk; returns the bytes sent.
async fn upload(
    client: &async_nats::Client,
    deliver: &str,
    stream: &str,
    data_path: &Path,
) -> Result<u64, BackupError> {
    let nats = |message: String| BackupError::Nats {
        what: "restore",
        stream: stream.to_owned(),
        message,
    };
    let mut file = tokio::fs::File::open(data_path)
        .await
        .map_err(io_err(data_path))?;
    let mut buf = vec![0u8; CHUNK];
    let mut sent: u64 = 0;
    loop {
        let n = read_full(&mut file, &mut buf)
            .await
            .map_err(io_err(data_path))?;
        if n == 0 {
            break;
        }
        let request = async_nats::Request::new()
            .payload(Bytes::copy_from_slice(&buf[..n]))
            .timeout(Some(CHUNK_ACK));
        let ack = client
            .send_request(deliver.to_owned(), request)
            .await
            .map_err(|e| nats(e.to_string()))?;
        if !ack.payload.is_empty() {
            return Err(BackupError::JetStream {
                what: "restore",
                stream: stream.to_owned(),
                message: String::from_utf8_lossy(&ack.payload).into_owned(),
            });
        }
        sent += n as u64;
    }
    Ok(sent)
}

async fn read_full(file: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let got = file.read(&mut buf[n..]).await?;
        if got == 0 {
            break;
        }
        n += got;
    }
    Ok(n)
}
