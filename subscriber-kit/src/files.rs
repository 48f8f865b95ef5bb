//! File integration on the agent's side: the file a file-ready notice (格納完了通知) names,
//! read through the agent's own mount of the provider's share, checked and handed to the sink.
//!
//! Everything here streams in 1 MiB pieces (the agent's memory does not grow with the file)
//! and only reads the share: the agent never writes, moves or deletes anything there.
//! - [`verify`]: size and SHA-256 against the notice.
//! - [`copy_verified`]: the file sink's atomic copy (a temporary file in the destination
//!   folder, fsync, rename, fsync of the folder), verified on the way: a copy whose size or
//!   SHA-256 differs from the notice is removed and never renamed into place.
//! - [`stream_verified`]: the HTTP sink's request body; it ends with an error (so the request
//!   fails) when the bytes read differ from the notice.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use shirase_proto::{BusinessId, FileNotice, InterfaceId, Sha256Hex, SharePath};

const PIECE: usize = 1 << 20;

/// One file handed to a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDelivery {
    /// Interface id.
    pub interface: InterfaceId,
    /// Providing business.
    pub provider: BusinessId,
    /// The notice id.
    pub notice_id: String,
    /// The interface version (版数) the file follows.
    pub version: String,
    /// The path relative to the share, as announced.
    pub share_path: SharePath,
    /// The file on this host (the share root joined with `share_path`).
    pub source: PathBuf,
    /// Size announced.
    pub size: u64,
    /// SHA-256 announced.
    pub sha256: Sha256Hex,
    /// Record count announced, when known.
    pub record_count: Option<u64>,
}

impl FileDelivery {
    /// The delivery of `notice`'s file under the share mounted at `root`.
    pub fn of(notice: &FileNotice, root: &Path) -> Self {
        let mut source = root.to_path_buf();
        source.extend(notice.data.path.segments());
        Self {
            interface: notice.data.interface_id,
            provider: notice.data.provider,
            notice_id: notice.id.to_string(),
            version: notice.data.interface_version.to_string(),
            share_path: notice.data.path.clone(),
            source,
            size: notice.data.size,
            sha256: notice.data.sha256,
            record_count: notice.data.record_count,
        }
    }
}

/// What went wrong with a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileErrorKind {
    /// The file is not on the share (deleted, or not visible through this mount yet).
    Missing,
    /// Its size or SHA-256 differs from the notice (replaced, or still being changed).
    Mismatch,
    /// The share or the file could not be read.
    Io,
    /// The sink refused or failed.
    Sink,
}

/// A file could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FileError {
    kind: FileErrorKind,
    message: String,
}

impl FileError {
    /// An error of `kind`.
    pub fn new(kind: FileErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    /// What failed.
    pub fn kind(&self) -> FileErrorKind {
        self.kind
    }
}

fn open(d: &FileDelivery) -> Result<std::fs::File, FileError> {
    std::fs::File::open(&d.source).map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::NotFound {
            FileErrorKind::Missing
        } else {
            FileErrorKind::Io
        };
        FileError::new(kind, format!("{} on the share: {e}", d.share_path))
    })
}

fn mismatch(d: &FileDelivery, size: u64, sha: Sha256Hex) -> Option<FileError> {
    if size != d.size {
        return Some(FileError::new(
            FileErrorKind::Mismatch,
            format!(
                "{} has {size} bytes; the notice says {}",
                d.share_path, d.size
            ),
        ));
    }
    (sha != d.sha256).then(|| {
        FileError::new(
            FileErrorKind::Mismatch,
            format!(
                "{} has SHA-256 {sha}; the notice says {}",
                d.share_path, d.sha256
            ),
        )
    })
}

/// Read `r` to its end in pieces, passing each to `each`; the size and SHA-256 read.
fn pump(
    r: &mut impl Read,
    mut each: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<(u64, Sha256Hex)> {
    let mut buf = vec![0u8; PIECE];
    let mut h = Sha256::new();
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        each(&buf[..k])?;
        n += k as u64;
    }
    Ok((n, Sha256Hex(h.finalize().into())))
}

/// Check the file's size and SHA-256 against the notice (blocking; streams).
pub fn verify(d: &FileDelivery) -> Result<(), FileError> {
    let mut f = open(d)?;
    let (n, sha) = pump(&mut f, |_| Ok(()))
        .map_err(|e| FileError::new(FileErrorKind::Io, format!("reading {}: {e}", d.share_path)))?;
    mismatch(d, n, sha).map_or(Ok(()), Err)
}

/// Copy the file into `dir` as `name`, atomically and verified (blocking; streams). Returns the
/// destination.
pub fn copy_verified(d: &FileDelivery, dir: &Path, name: &str) -> Result<PathBuf, FileError> {
    let sink_io = |what: &str, e: std::io::Error| {
        FileError::new(
            FileErrorKind::Sink,
            format!("{what} {}: {e}", dir.display()),
        )
    };
    std::fs::create_dir_all(dir).map_err(|e| sink_io("creating", e))?;
    let mut src = open(d)?;
    let tmp = dir.join(format!(".{name}.{}.part", uuid::Uuid::now_v7().simple()));
    let mut out = std::fs::File::create(&tmp).map_err(|e| sink_io("writing into", e))?;
    let read = pump(&mut src, |piece| out.write_all(piece));
    let result = match read {
        Ok((n, sha)) => match mismatch(d, n, sha) {
            Some(e) => Err(e),
            None => out.sync_all().map_err(|e| sink_io("syncing into", e)),
        },
        Err(e) => Err(FileError::new(
            FileErrorKind::Io,
            format!("copying {} into {}: {e}", d.share_path, dir.display()),
        )),
    };
    drop(out);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let dest = dir.join(name);
    std::fs::rename(&tmp, &dest).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        sink_io("renaming into", e)
    })?;
    // The rename is durable once the folder is.
    if let Ok(dirf) = std::fs::File::open(dir) {
        let _ = dirf.sync_all();
    }
    Ok(dest)
}

/// The file as a stream of pieces for an HTTP body; the stream ends with an error (failing the
/// request) when the file is not what the notice says.
pub fn stream_verified(
    d: FileDelivery,
) -> Result<impl futures::Stream<Item = Result<bytes::Bytes, FileError>> + Send + 'static, FileError>
{
    let f = open(&d)?;
    let state = (Some(f), Sha256::new(), 0u64, d);
    Ok(futures::stream::unfold(
        state,
        |(f, mut h, n, d)| async move {
            let mut file = f?;
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; PIECE];
                let k = file.read(&mut buf);
                (file, buf, k)
            })
            .await;
            let Ok((file, mut buf, k)) = read else {
                let e = FileError::new(FileErrorKind::Io, "reading the file: task failed");
                return Some((Err(e), (None, h, n, d)));
            };
            match k {
                Ok(0) => {
                    let sha = Sha256Hex(h.finalize_reset().into());
                    mismatch(&d, n, sha).map(|e| (Err(e), (None, h, n, d)))
                }
                Ok(k) => {
                    buf.truncate(k);
                    h.update(&buf);
                    Some((
                        Ok(bytes::Bytes::from(buf)),
                        (Some(file), h, n + k as u64, d),
                    ))
                }
                Err(e) => {
                    let e =
                        FileError::new(FileErrorKind::Io, format!("reading {}: {e}", d.share_path));
                    Some((Err(e), (None, h, n, d)))
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use futures::StreamExt;

    fn delivery(root: &Path, body: &[u8]) -> FileDelivery {
        std::fs::create_dir_all(root.join("015o02")).unwrap();
        std::fs::write(root.join("015o02/a.csv"), body).unwrap();
        let sha = Sha256Hex(Sha256::digest(body).into());
        FileDelivery {
            interface: "015o02-00".parse().unwrap(),
            provider: "015".parse().unwrap(),
            notice_id: "n".into(),
            version: "1.0".into(),
            share_path: "015o02/a.csv".parse().unwrap(),
            source: root.join("015o02/a.csv"),
            size: body.len() as u64,
            sha256: sha,
            record_count: None,
        }
    }

    #[test]
    fn a_verified_copy_lands_whole_and_a_mismatch_leaves_nothing() {
        let share = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let d = delivery(share.path(), b"a,b\n1,2\n");
        verify(&d).unwrap();
        let dest = copy_verified(&d, out.path(), "a.csv").unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"a,b\n1,2\n");
        std::fs::write(&d.source, b"a,b\n1,3\n").unwrap();
        assert_eq!(verify(&d).unwrap_err().kind(), FileErrorKind::Mismatch);
        let e = copy_verified(&d, out.path(), "b.csv").unwrap_err();
        assert_eq!(e.kind(), FileErrorKind::Mismatch);
        let left: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("a.csv")]);
        // The share is only read.
        assert_eq!(std::fs::read(&d.source).unwrap(), b"a,b\n1,3\n");
        std::fs::remove_file(&d.source).unwrap();
        assert_eq!(verify(&d).unwrap_err().kind(), FileErrorKind::Missing);
    }

    #[tokio::test]
    async fn the_http_body_stream_fails_at_the_end_on_a_mismatch() {
        let share = tempfile::tempdir().unwrap();
        let d = delivery(share.path(), &vec![7u8; PIECE + 10]);
        let got: Vec<_> = stream_verified(d.clone()).unwrap().collect().await;
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(Result::is_ok));
        std::fs::write(&d.source, vec![8u8; PIECE + 10]).unwrap();
        let got: Vec<_> = stream_verified(d).unwrap().collect().await;
        assert_eq!(
            got.last().unwrap().as_ref().unwrap_err().kind(),
            FileErrorKind::Mismatch
        );
    }
}
