//! The file watcher: file-ready notices (格納完了通知) for files that providers store on the
//! municipality's file server (ファイル連携; データ連携WT 1.1.3 directs the daily changes of
//! 001o05, 001o06 and 015o02 there, one folder per business system).
//!
//! For each `[[file_watch]]` folder (a local path: NFS or SMB mounts are the deployment's) it
//! lists the interfaces' folders every `scan_interval` and announces each completed data file
//! once, through the same [`Publisher`] as HTTP ingest, on the interface's notice subject:
//! - **Completion** ([`scan::decide`]): a marker next to the data file (`marker`, e.g.
//!   `{name}.end`, written after the data), whose optional content names the interface, its
//!   version (版数, データ連携WT 2.2.2) and the record count ([`scan::parse_marker`]); or, with
//!   `completion = "settle"` (and for data modified after its marker), a file unchanged for
//!   `settle`. A file still being written is never read: it is hashed only once complete, and
//!   a file whose size or modification time changed while it was hashed is not announced.
//! - **Once**: the notice id is derived from the path, size and SHA-256
//!   ([`shirase_proto::FileNotice::derive_id`]), and what was announced is remembered in KV
//!   ([`memory`]), so a restart re-announces nothing; a file replaced under the same name (new
//!   contents) is announced again, with a new id.
//! - **One replica per provider**: a KV lease `files.<business id>` in `shirase_leases`.
//! - **Never** writes, moves or deletes anything on the share; a file name carrying an
//!   individual number (個人番号) is refused by the notice's personal-data guard, and logged
//!   masked.
//! - A share that cannot be listed raises one alert (`share_unavailable`) and is listed again
//!   every interval; nothing is lost, files are announced when it returns.

pub mod memory;
pub mod scan;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use shirase_proto::record::Alert;
use shirase_proto::{FileNotice, MunicipalityCode, OffsetTimestamp, Severity, SharePath};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, FileInterface, FileWatchConfig, glob_match};
use crate::lease::{LEASE_BUCKET, Lease};
use crate::publisher::Publisher;
use memory::{Announced, Memory};
use scan::{Stat, Verdict};

/// What one scan found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Files announced by this scan.
    pub announced: usize,
    /// Data files not complete yet.
    pub waiting: usize,
}

/// The file watcher of one provider folder.
#[derive(Debug)]
pub struct FileWatcher {
    cfg: FileWatchConfig,
    municipality: MunicipalityCode,
    js: jetstream::Context,
    publisher: Publisher,
    memory: Option<Memory>,
    /// Path → (size and modification time last seen, since when).
    seen: HashMap<String, (Stat, Instant)>,
    /// Files refused (personal data in the name, a marker naming another interface), with the
    /// state they were refused in, so they are not hashed again until they change.
    refused: HashMap<String, Stat>,
    unavailable: bool,
}

/// A file in a listing.
struct Listed {
    name: String,
    stat: Stat,
}

impl FileWatcher {
    /// The watcher of one `[[file_watch]]` folder.
    pub fn new(
        config: &Config,
        cfg: FileWatchConfig,
        js: jetstream::Context,
        publisher: Publisher,
    ) -> Self {
        Self {
            cfg,
            municipality: config.municipality,
            js,
            publisher,
            memory: None,
            seen: HashMap::new(),
            refused: HashMap::new(),
            unavailable: false,
        }
    }

    /// One pass over every interface folder. An error means the share could not be listed
    /// (or the memory not loaded): nothing was lost, the next pass tries again.
    pub async fn scan(&mut self) -> Result<ScanReport, String> {
        if self.memory.is_none() {
            let m = Memory::load(&self.js, self.cfg.provider.as_str()).await?;
            self.memory = Some(m);
        }
        let root = self.cfg.root.clone();
        let ok = tokio::task::spawn_blocking(move || std::fs::read_dir(&root).map(|_| ()))
            .await
            .map_err(|e| e.to_string())?;
        if let Err(e) = ok {
            self.share_down(&e.to_string()).await;
            return Err(format!(
                "share {} unavailable: {e}",
                self.cfg.root.display()
            ));
        }
        if self.unavailable {
            self.unavailable = false;
            tracing::info!(provider = %self.cfg.provider, "file share available again");
        }
        let mut report = ScanReport::default();
        for fi in self.cfg.interfaces.clone() {
            self.scan_interface(&fi, &mut report).await?;
        }
        Ok(report)
    }

    async fn share_down(&mut self, why: &str) {
        if self.unavailable {
            return;
        }
        self.unavailable = true;
        let provider = self.cfg.provider.to_string();
        tracing::warn!(%provider, root = %self.cfg.root.display(), "file share unavailable: {why}");
        let alert = Alert {
            severity: Severity::Warning,
            component: "relay".into(),
            code: "share_unavailable".into(),
            message: format!(
                "the file share of provider {provider} ({}) cannot be listed: {why}; files are announced when it returns",
                self.cfg.root.display()
            ),
            subscriber: String::new(),
            provider: Some(provider),
            interface_id: None,
            time: OffsetTimestamp::from_instant_jst(jiff::Timestamp::now()),
            runbook: Some("check the mount of the file server on the relay host".into()),
        };
        let subject = shirase_proto::subject::alert_subject(Severity::Warning, "relay");
        let body = serde_json::to_vec(&alert).unwrap_or_default();
        if let Err(e) = self.js.publish(subject, body.into()).await {
            tracing::warn!("alert not published: {e}");
        }
    }

    async fn scan_interface(
        &mut self,
        fi: &FileInterface,
        report: &mut ScanReport,
    ) -> Result<(), String> {
        let dir = self.dir_of(fi);
        let (pattern, completion) = (fi.pattern.clone(), self.cfg.completion.clone());
        let listed = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<Listed>> {
            let mut out = Vec::new();
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                // A folder the provider has not created yet holds no file.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(e),
            };
            for entry in rd {
                let entry = entry?;
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                if !glob_match(&pattern, &name) || completion.is_marker(&name) {
                    continue;
                }
                if let Some(stat) = scan::stat(&entry.path())? {
                    out.push(Listed { name, stat });
                }
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("listing {}: {e}", self.dir_of(fi).display()))?;
        for l in listed {
            match self.consider(fi, &l).await {
                Ok(true) => report.announced += 1,
                Ok(false) => {}
                Err(Waiting) => report.waiting += 1,
            }
        }
        Ok(())
    }

    fn dir_of(&self, fi: &FileInterface) -> PathBuf {
        let mut d = self.cfg.root.clone();
        if let Some(sub) = &fi.dir {
            d.extend(sub.segments());
        }
        d
    }

    fn rel_path(fi: &FileInterface, name: &str) -> Option<SharePath> {
        match &fi.dir {
            Some(d) => format!("{d}/{name}").parse().ok(),
            None => name.parse().ok(),
        }
    }

    /// Announce one listed data file if it is complete and new. `Ok(true)`: announced;
    /// `Ok(false)`: nothing to do (known, refused); `Err(Waiting)`: not complete yet, or to
    /// be tried again.
    async fn consider(&mut self, fi: &FileInterface, l: &Listed) -> Result<bool, Waiting> {
        let Some(rel) = Self::rel_path(fi, &l.name) else {
            return Ok(false);
        };
        let key = rel.as_str().to_owned();
        let known = self.memory.as_ref().and_then(|m| m.files.get(&key));
        if known.is_some_and(|a| {
            a.size == l.stat.size && i128::from(a.mtime_ns) == l.stat.mtime.as_nanosecond()
        }) || self.refused.get(&key) == Some(&l.stat)
        {
            self.seen.remove(&key);
            return Ok(false);
        }
        let now = Instant::now();
        let since = match self.seen.get(&key) {
            Some((s, since)) if *s == l.stat => *since,
            _ => {
                self.seen.insert(key.clone(), (l.stat, now));
                now
            }
        };
        let dir = self.dir_of(fi);
        let marker_path = self.cfg.completion.marker_for(&l.name).map(|m| dir.join(m));
        let marker = match &marker_path {
            Some(p) => scan::stat(p).map_err(|_| Waiting)?,
            None => None,
        };
        let verdict = scan::decide(
            &self.cfg.completion,
            l.stat,
            marker,
            now - since,
            self.cfg.settle,
        );
        let Verdict::Complete { completed_at } = verdict else {
            return Err(Waiting);
        };
        let data_path = dir.join(&l.name);
        let before = l.stat;
        let hashed = tokio::task::spawn_blocking(move || scan::hash(&data_path, before))
            .await
            .map_err(|_| Waiting)?;
        let Ok(Some((size, sha256))) = hashed else {
            // Changed (or vanished) while read: still being written; start settling again.
            self.seen.remove(&key);
            return Err(Waiting);
        };
        let info = match (&marker_path, marker) {
            (Some(p), Some(_)) => match self.marker_info(fi, p).await? {
                Some(i) => i,
                None => {
                    self.refused.insert(key, l.stat);
                    return Ok(false);
                }
            },
            _ => scan::MarkerInfo::default(),
        };
        if let Some(other) = info.interface_id.filter(|i| *i != fi.id) {
            tracing::warn!(provider = %self.cfg.provider, interface = %fi.id, marker_interface = %other, "completion marker names another interface; file not announced");
            self.refused.insert(key, l.stat);
            return Ok(false);
        }
        let version = info.version.unwrap_or_else(|| fi.version.clone());
        let mut notice = FileNotice::new(
            self.municipality,
            fi.id,
            version,
            rel,
            size,
            sha256,
            info.record_count,
            OffsetTimestamp::from_instant_jst(completed_at),
        );
        notice.time = OffsetTimestamp::from_instant_jst(jiff::Timestamp::now());
        let value = serde_json::to_value(&notice).unwrap_or_default();
        if let Err(v) =
            shirase_proto::validate::check_file_value(&value, &shirase_proto::Limits::default())
        {
            // Violations are masked of individual numbers; the path is not logged.
            let rules: Vec<String> = v.iter().map(ToString::to_string).collect();
            tracing::warn!(provider = %self.cfg.provider, interface = %fi.id, "file not announced: {}", rules.join("; "));
            self.refused.insert(key, l.stat);
            return Ok(false);
        }
        self.announce(fi, &key, l.stat, &notice).await
    }

    /// Publish `notice` unless the same contents were announced under this path already, and
    /// remember it.
    async fn announce(
        &mut self,
        fi: &FileInterface,
        key: &str,
        stat: Stat,
        notice: &FileNotice,
    ) -> Result<bool, Waiting> {
        let key = key.to_owned();
        let (size, sha256) = (notice.data.size, notice.data.sha256);
        let same_contents = self
            .memory
            .as_ref()
            .and_then(|m| m.files.get(&key))
            .is_some_and(|a| a.size == size && a.sha256 == sha256);
        if !same_contents {
            match self.publisher.publish(notice).await {
                Ok(_) => {}
                Err(f) => {
                    tracing::warn!(provider = %self.cfg.provider, notice = %notice.id, "file-ready notice not acknowledged, trying again: {}", f.last);
                    return Err(Waiting);
                }
            }
        }
        let a = Announced {
            path: notice.data.path.clone(),
            size,
            mtime_ns: i64::try_from(stat.mtime.as_nanosecond()).unwrap_or(i64::MAX),
            sha256,
            id: notice.id,
        };
        if let Some(m) = self.memory.as_mut()
            && let Err(e) = m.remember(a).await
        {
            tracing::warn!(provider = %self.cfg.provider, "announced file not remembered (announced again after a restart, same id): {e}");
        }
        self.seen.remove(&key);
        if !same_contents {
            tracing::info!(provider = %self.cfg.provider, interface = %fi.id, notice = %notice.id, size, "file announced");
        }
        Ok(!same_contents)
    }

    /// The marker's content; `None` (logged) when it cannot be used.
    async fn marker_info(
        &self,
        fi: &FileInterface,
        p: &std::path::Path,
    ) -> Result<Option<scan::MarkerInfo>, Waiting> {
        let p = p.to_path_buf();
        let text = tokio::task::spawn_blocking(move || scan::read_marker(&p))
            .await
            .map_err(|_| Waiting)?
            .map_err(|_| Waiting)?;
        match scan::parse_marker(&text) {
            Ok(i) => Ok(Some(i)),
            Err(e) => {
                tracing::warn!(provider = %self.cfg.provider, interface = %fi.id, "completion marker unreadable, file not announced: {e}");
                Ok(None)
            }
        }
    }

    /// Scan every `scan_interval` while this replica holds the provider's lease, until `stop`.
    pub async fn run(mut self, holding: Arc<AtomicBool>, stop: CancellationToken) {
        loop {
            if holding.load(Ordering::SeqCst) {
                if let Err(e) = self.scan().await {
                    tracing::debug!(provider = %self.cfg.provider, "file scan: {e}");
                }
            } else {
                // Another replica may announce meanwhile: read the memory again when leading.
                self.memory = None;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.cfg.scan_interval) => {}
            }
        }
    }
}

/// Not complete yet, or to be tried again at the next scan.
#[derive(Debug)]
struct Waiting;

/// Start one file watcher per `[[file_watch]]` folder, each behind its lease.
pub fn spawn(
    config: Config,
    js: jetstream::Context,
    publisher: Publisher,
    shutdown: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let tick = (config.maintenance.lease_ttl / 3).max(Duration::from_millis(200));
    config
        .file_watch
        .iter()
        .map(|fw| {
            let w = FileWatcher::new(&config, fw.clone(), js.clone(), publisher.clone());
            let key = format!("files.{}", fw.provider);
            tokio::spawn(run_with_lease(w, js.clone(), key, tick, shutdown.clone()))
        })
        .collect()
}

async fn run_with_lease(
    w: FileWatcher,
    js: jetstream::Context,
    key: String,
    tick: Duration,
    stop: CancellationToken,
) {
    let holder = format!("relay-files-{}", uuid::Uuid::now_v7());
    let holding = Arc::new(AtomicBool::new(false));
    let scanner = tokio::spawn(w.run(holding.clone(), stop.clone()));
    let mut lease = None;
    loop {
        if lease.is_none() {
            match Lease::open(&js, LEASE_BUCKET, &key, holder.clone()).await {
                Ok(l) => lease = Some(l),
                Err(e) => tracing::warn!("file watcher lease: {e}"),
            }
        }
        if let Some(l) = &lease {
            let now = l.try_acquire().await.unwrap_or_else(|e| {
                tracing::warn!("file watcher lease: {e}");
                false
            });
            if now != holding.swap(now, Ordering::SeqCst) {
                tracing::info!(lease = %key, %holder, holding = now, "file watcher lease changed hands");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(tick) => {}
        }
    }
    let _ = scanner.await;
    if let Some(l) = &lease {
        l.release().await;
    }
}
