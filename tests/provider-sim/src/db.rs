//! The simulated provider DB: one table of history rows per interface, the change generator,
//! and the queries the data endpoint runs (current state, or a lagging replica's view).
//!
//! A history row never changes its data items. Only two things update a row: losing the latest
//! flag (a newer row arrived, or the newest was deleted and it became latest again) and being
//! deleted. Each such update moves the row's DB update timestamp to the commit's, as a real DB
//! would, so a differential pull also returns the row whose latest flag flipped.
//! Every row keeps its versions so the replica view can show the DB as of an earlier instant.

use std::collections::{BTreeMap, HashMap};

use jiff::{SignedDuration, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shirase_proto::{
    AtenaNo, ChangeKind, InterfaceId, Keys, MunicipalityCode, Notice, NoticeId, OffsetTimestamp,
    Sequence,
};

use super::clock::{format_db_timestamp, jst_date, truncate_micros, truncate_seconds};
use super::config::{Config, InterfaceSpec};
use super::data::{self, Resident};
use super::error::{SimError, SimErrorKind};

/// One history row as the data endpoint returns it (docs/pull-api.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Addressee number (宛名番号).
    pub atena_no: AtenaNo,
    /// History number, from 1 per addressee and interface in order of occurrence.
    pub history_no: u32,
    /// Latest flag (最新フラグ): true only on the addressee's newest row.
    pub latest: bool,
    /// DB update timestamp, microseconds, `+09:00`.
    pub updated_at: String,
    /// Change date (異動日).
    pub change_date: jiff::civil::Date,
    /// The kind of change that created the row.
    pub change: ChangeKind,
    /// The interface's data items (fake personal data: never logged).
    pub record: Value,
}

/// One change the simulator committed, as listed by `GET /admin/changes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedChange {
    /// The interface whose table changed.
    pub interface_id: InterfaceId,
    /// The addressee concerned.
    pub atena_no: AtenaNo,
    /// The history row created (update, retroactive) or deleted (delete).
    pub history_no: u32,
    /// The commit's DB update timestamp (= the notice's `data.updated_at`).
    pub updated_at: String,
    /// The kind of change.
    pub kind: ChangeKind,
    /// The notice's per-interface sequence (from 1).
    pub sequence: u64,
    /// The notice's id.
    pub notice_id: NoticeId,
    /// Row versions this change made visible to a differential pull: the new row, and the
    /// previous row whose latest flag (最新フラグ) flipped with it (update, retroactive: 1 or
    /// 2; delete: the row that became latest again, 0 or 1). What a subscriber can receive
    /// for the change at the least, besides a delete's tombstone.
    pub row_versions: u32,
}

/// What to commit: `count` changes, each on the given (or a random) interface, kind and addressee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeSpec {
    /// How many changes (1 to 100,000).
    #[serde(default = "one")]
    pub count: usize,
    /// The interface; random among the served ones when absent.
    #[serde(default)]
    pub interface: Option<InterfaceId>,
    /// The kind; when absent 80 % update, 15 % retroactive, 5 % delete.
    #[serde(default)]
    pub kind: Option<ChangeKind>,
    /// The addressee; random when absent.
    #[serde(default)]
    pub atena_no: Option<AtenaNo>,
    /// A late commit, like a long transaction's: the changes carry the DB update timestamp
    /// of this many milliseconds before now (when the transaction began), yet become visible
    /// only now, at the commit, and their notices are sent after it. The rows they touch (the
    /// previous latest row too) take that earlier timestamp. Absent: committed at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_by_ms: Option<u64>,
}

fn one() -> usize {
    1
}

impl ChangeSpec {
    /// `count` changes on random interfaces, kinds and addressees.
    pub fn new(count: usize) -> Self {
        Self {
            count,
            interface: None,
            kind: None,
            atena_no: None,
            late_by_ms: None,
        }
    }
    /// Only on this interface.
    pub fn interface(mut self, interface: InterfaceId) -> Self {
        self.interface = Some(interface);
        self
    }
    /// Only this kind.
    pub fn kind(mut self, kind: ChangeKind) -> Self {
        self.kind = Some(kind);
        self
    }
    /// Only this addressee.
    pub fn atena_no(mut self, atena_no: AtenaNo) -> Self {
        self.atena_no = Some(atena_no);
        self
    }
    /// Commit late: the DB update timestamp is `by` before now, visible only now
    /// ([`ChangeSpec::late_by_ms`]).
    pub fn late_by(mut self, by: std::time::Duration) -> Self {
        self.late_by_ms = Some(by.as_millis() as u64);
        self
    }
}

/// Most changes a single [`ChangeSpec`] may ask for.
pub const MAX_CHANGES_PER_CALL: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Version {
    at: Timestamp,
    latest: bool,
    deleted: bool,
}

#[derive(Debug)]
struct StoredRow {
    change_date: jiff::civil::Date,
    change: ChangeKind,
    record: Value,
    /// Oldest first; the last is the current state.
    versions: Vec<Version>,
}

impl StoredRow {
    fn current(&self) -> Option<Version> {
        self.versions.last().copied()
    }
    fn as_of(&self, view: Timestamp) -> Option<Version> {
        self.versions.iter().rev().find(|v| v.at <= view).copied()
    }
}

#[derive(Debug)]
struct Table {
    spec: InterfaceSpec,
    rows: HashMap<(AtenaNo, u32), StoredRow>,
    /// Live rows by current DB update timestamp: the differential-fetch index.
    by_time: BTreeMap<Timestamp, Vec<(AtenaNo, u32)>>,
    /// Live history numbers per addressee, ascending.
    live: HashMap<AtenaNo, Vec<u32>>,
    /// Highest history number ever used per addressee (deleted numbers are never reused).
    max_hist: HashMap<AtenaNo, u32>,
    sequence: u64,
}

impl Table {
    fn unindex(&mut self, at: Timestamp, key: (AtenaNo, u32)) {
        if let Some(v) = self.by_time.get_mut(&at) {
            v.retain(|k| *k != key);
            if v.is_empty() {
                self.by_time.remove(&at);
            }
        }
    }

    /// Record a new version of an existing row and move it in the index.
    fn update(&mut self, key: (AtenaNo, u32), next: Version) {
        let Some(old) = self.rows.get(&key).and_then(StoredRow::current) else {
            return;
        };
        self.unindex(old.at, key);
        if let Some(r) = self.rows.get_mut(&key) {
            r.versions.push(next);
        }
        if !next.deleted {
            self.by_time.entry(next.at).or_default().push(key);
        }
    }

    fn insert(&mut self, key: (AtenaNo, u32), row: StoredRow) {
        if let Some(v) = row.current() {
            self.by_time.entry(v.at).or_default().push(key);
        }
        self.rows.insert(key, row);
        let live = self.live.entry(key.0).or_default();
        live.push(key.1);
        live.sort_unstable();
        let m = self.max_hist.entry(key.0).or_default();
        *m = (*m).max(key.1);
    }

    fn row_out(&self, key: (AtenaNo, u32), v: Version) -> Option<Row> {
        let r = self.rows.get(&key)?;
        Some(Row {
            atena_no: key.0,
            history_no: key.1,
            latest: v.latest,
            updated_at: format_db_timestamp(v.at),
            change_date: r.change_date,
            change: r.change,
            record: r.record.clone(),
        })
    }
}

/// A validated data-endpoint query.
#[derive(Debug, Clone, Default)]
pub(crate) struct Query {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub keys: Option<Vec<AtenaNo>>,
}

impl Query {
    fn time_ok(&self, at: Timestamp) -> bool {
        self.from.is_none_or(|f| at >= f) && self.to.is_none_or(|t| at < t)
    }
}

/// The query matched more rows than the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooMany;

#[derive(Debug)]
pub(crate) struct Db {
    municipality: MunicipalityCode,
    tables: BTreeMap<InterfaceId, Table>,
    residents: Vec<Resident>,
    index_of: HashMap<AtenaNo, usize>,
    rng: StdRng,
    last_ts: Timestamp,
    /// DB update timestamps at whole seconds (the romaji dialect): commits in one second share it.
    whole_seconds: bool,
    changes: Vec<CommittedChange>,
    notices: Vec<Notice>,
}

impl Db {
    /// Generate the population and each interface's initial history (1 to 3 rows per addressee,
    /// spread over the 30 days before `now`). Initial rows have no notices: they predate the sim.
    pub(crate) fn generate(config: &Config, now: Timestamp) -> Self {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let residents = data::residents(&mut rng, config.population);
        let index_of = residents
            .iter()
            .enumerate()
            .map(|(i, r)| (r.atena_no, i))
            .collect();
        let now = truncate_micros(now);
        let span_us: i64 = 30 * 24 * 3600 * 1_000_000;
        let mut tables = BTreeMap::new();
        for spec in &config.interfaces {
            let mut t = Table {
                spec: spec.clone(),
                rows: HashMap::new(),
                by_time: BTreeMap::new(),
                live: HashMap::new(),
                max_hist: HashMap::new(),
                sequence: 0,
            };
            for res in &residents {
                let k = rng.random_range(1..=3u32);
                let mut offs: Vec<i64> = (0..k).map(|_| rng.random_range(1..span_us)).collect();
                offs.sort_unstable_by(|a, b| b.cmp(a));
                let times: Vec<Timestamp> = offs
                    .iter()
                    .map(|o| {
                        now.checked_sub(SignedDuration::from_micros(*o))
                            .unwrap_or(now)
                    })
                    .collect();
                for h in 1..=k {
                    let i = (h - 1) as usize;
                    let created = times[i];
                    let change_date = jst_date(created);
                    let record = data::record(&mut rng, &spec.id, res, change_date);
                    // A row that lost its latest flag was last updated when its successor arrived.
                    let (at, latest) = match times.get(i + 1) {
                        Some(next) => (*next, false),
                        None => (created, true),
                    };
                    let row = StoredRow {
                        change_date,
                        change: ChangeKind::Update,
                        record,
                        versions: vec![Version {
                            at,
                            latest,
                            deleted: false,
                        }],
                    };
                    t.insert((res.atena_no, h), row);
                }
            }
            tables.insert(spec.id, t);
        }
        Self {
            municipality: config.municipality,
            tables,
            residents,
            index_of,
            rng,
            last_ts: if config.dialect.whole_seconds() {
                truncate_seconds(now)
            } else {
                now
            },
            whole_seconds: config.dialect.whole_seconds(),
            changes: Vec::new(),
            notices: Vec::new(),
        }
    }

    pub(crate) fn has_interface(&self, id: &InterfaceId) -> bool {
        self.tables.contains_key(id)
    }

    pub(crate) fn changes(&self) -> &[CommittedChange] {
        &self.changes
    }

    pub(crate) fn notices(&self) -> &[Notice] {
        &self.notices
    }

    pub(crate) fn atena_numbers(&self) -> Vec<AtenaNo> {
        self.residents.iter().map(|r| r.atena_no).collect()
    }

    /// Every live row of an interface, in the API's order.
    pub(crate) fn rows(&self, id: &InterfaceId) -> Option<Vec<Row>> {
        let t = self.tables.get(id)?;
        Some(
            t.by_time
                .values()
                .flat_map(|keys| sorted(keys.clone()))
                .filter_map(|k| {
                    t.rows
                        .get(&k)
                        .and_then(StoredRow::current)
                        .and_then(|v| t.row_out(k, v))
                })
                .collect(),
        )
    }

    /// Run a data-endpoint query; `view` = Some(instant) answers from a replica that shows the DB
    /// as of that instant.
    pub(crate) fn query(
        &self,
        id: &InterfaceId,
        q: &Query,
        threshold: usize,
        view: Option<Timestamp>,
    ) -> Result<Vec<Row>, TooMany> {
        let Some(t) = self.tables.get(id) else {
            return Ok(Vec::new());
        };
        let mut hits: Vec<((AtenaNo, u32), Version)> = Vec::new();
        let push = |k: (AtenaNo, u32), v: Version, hits: &mut Vec<_>| {
            hits.push((k, v));
            if hits.len() > threshold {
                Err(TooMany)
            } else {
                Ok(())
            }
        };
        match view {
            None => match &q.keys {
                Some(keys) => {
                    for a in keys {
                        for h in t.live.get(a).map(Vec::as_slice).unwrap_or_default() {
                            let k = (*a, *h);
                            if let Some(v) = t.rows.get(&k).and_then(StoredRow::current)
                                && q.time_ok(v.at)
                            {
                                push(k, v, &mut hits)?;
                            }
                        }
                    }
                }
                None => {
                    let lo = q
                        .from
                        .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Included);
                    let hi =
                        q.to.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
                    for keys in t.by_time.range((lo, hi)).map(|(_, v)| v) {
                        for k in keys {
                            if let Some(v) = t.rows.get(k).and_then(StoredRow::current) {
                                push(*k, v, &mut hits)?;
                            }
                        }
                    }
                }
            },
            Some(view) => {
                // A lagging replica is rare and small in tests: a full scan keeps it obviously right.
                for (k, r) in &t.rows {
                    let Some(v) = r.as_of(view) else { continue };
                    if v.deleted || !q.time_ok(v.at) {
                        continue;
                    }
                    if q.keys.as_ref().is_some_and(|ks| !ks.contains(&k.0)) {
                        continue;
                    }
                    push(*k, v, &mut hits)?;
                }
            }
        }
        hits.sort_by_key(|(k, v)| (v.at, k.0, k.1));
        Ok(hits
            .into_iter()
            .filter_map(|(k, v)| t.row_out(k, v))
            .collect())
    }

    /// Commit the changes `spec` asks for, each at its own strictly increasing DB timestamp
    /// (never earlier than `now`), and return them with their notices.
    pub(crate) fn commit(
        &mut self,
        spec: &ChangeSpec,
        now: Timestamp,
    ) -> Result<Vec<(CommittedChange, Notice)>, SimError> {
        if spec.count == 0 || spec.count > MAX_CHANGES_PER_CALL {
            return Err(SimError::new(
                SimErrorKind::InvalidRequest,
                format!(
                    "count: must be 1..={MAX_CHANGES_PER_CALL}, got {}",
                    spec.count
                ),
            ));
        }
        if let Some(i) = &spec.interface
            && !self.tables.contains_key(i)
        {
            return Err(unknown_interface(i));
        }
        if let Some(a) = &spec.atena_no
            && !self.index_of.contains_key(a)
        {
            return Err(SimError::new(
                SimErrorKind::UnknownAddressee,
                format!("atena_no: {a} is not in the generated population"),
            ));
        }
        let mut out = Vec::with_capacity(spec.count);
        for _ in 0..spec.count {
            out.push(self.commit_one(spec, now)?);
        }
        Ok(out)
    }

    fn commit_one(
        &mut self,
        spec: &ChangeSpec,
        now: Timestamp,
    ) -> Result<(CommittedChange, Notice), SimError> {
        let iface = match spec.interface {
            Some(i) => i,
            None => {
                let ids: Vec<InterfaceId> = self.tables.keys().copied().collect();
                ids[self.rng.random_range(0..ids.len())]
            }
        };
        let kind = spec
            .kind
            .unwrap_or_else(|| match self.rng.random_range(0..100) {
                0..80 => ChangeKind::Update,
                80..95 => ChangeKind::Retroactive,
                _ => ChangeKind::Delete,
            });
        let atena = match spec.atena_no {
            Some(a) => a,
            None => self.pick_addressee(&iface, kind),
        };
        let ts = match spec.late_by_ms {
            // A long transaction's timestamp: taken when it began, not after the last commit.
            Some(ms) => {
                let t = now
                    .checked_sub(SignedDuration::from_millis(ms as i64))
                    .unwrap_or(now);
                if self.whole_seconds {
                    truncate_seconds(t)
                } else {
                    truncate_micros(t)
                }
            }
            None if self.whole_seconds => truncate_seconds(now).max(self.last_ts),
            None => truncate_micros(now).max(self.last_ts + SignedDuration::from_micros(1)),
        };
        let table = self
            .tables
            .get_mut(&iface)
            .ok_or_else(|| unknown_interface(&iface))?;
        let live = table.live.get(&atena).cloned().unwrap_or_default();
        // The new row (not for a delete), and the previous one whose latest flag flips.
        let row_versions = u32::from(kind != ChangeKind::Delete)
            + u32::from(if kind == ChangeKind::Delete {
                live.len() > 1
            } else {
                !live.is_empty()
            });
        let history_no = match kind {
            ChangeKind::Delete => {
                let Some(&newest) = live.last() else {
                    return Err(SimError::new(
                        SimErrorKind::NothingToDelete,
                        format!("atena_no: {atena} has no rows left in {iface} to delete"),
                    ));
                };
                table.update(
                    (atena, newest),
                    Version {
                        at: ts,
                        latest: false,
                        deleted: true,
                    },
                );
                if let Some(l) = table.live.get_mut(&atena) {
                    l.retain(|h| *h != newest);
                }
                if let Some(&prev) = live.iter().rev().nth(1) {
                    table.update(
                        (atena, prev),
                        Version {
                            at: ts,
                            latest: true,
                            deleted: false,
                        },
                    );
                }
                newest
            }
            ChangeKind::Update | ChangeKind::Retroactive => {
                let today = jst_date(ts);
                let prev_date = live
                    .last()
                    .and_then(|h| table.rows.get(&(atena, *h)))
                    .map(|r| r.change_date);
                let change_date = if kind == ChangeKind::Retroactive {
                    let base = prev_date.unwrap_or(today).min(today);
                    let back = self.rng.random_range(1..=90);
                    base.checked_sub(jiff::Span::new().days(back))
                        .unwrap_or(base)
                } else {
                    today
                };
                if let Some(&prev) = live.last() {
                    table.update(
                        (atena, prev),
                        Version {
                            at: ts,
                            latest: false,
                            deleted: false,
                        },
                    );
                }
                let h = table.max_hist.get(&atena).copied().unwrap_or(0) + 1;
                let resident = self
                    .index_of
                    .get(&atena)
                    .and_then(|i| self.residents.get(*i))
                    .ok_or_else(|| {
                        SimError::new(
                            SimErrorKind::UnknownAddressee,
                            format!("atena_no: {atena} unknown"),
                        )
                    })?;
                let record = data::record(&mut self.rng, &iface, resident, change_date);
                table.insert(
                    (atena, h),
                    StoredRow {
                        change_date,
                        change: kind,
                        record,
                        versions: vec![Version {
                            at: ts,
                            latest: true,
                            deleted: false,
                        }],
                    },
                );
                h
            }
        };
        self.last_ts = self.last_ts.max(ts);
        table.sequence += 1;
        let updated_at = format_db_timestamp(ts);
        let mut notice = Notice::new(
            self.municipality,
            iface,
            table.spec.version.clone(),
            Sequence(table.sequence),
            parse_ts(&updated_at)?,
            kind,
            Some(Keys {
                atena_no: vec![atena],
            }),
        );
        notice.time = OffsetTimestamp::from_instant_jst(now);
        let change = CommittedChange {
            interface_id: iface,
            atena_no: atena,
            history_no,
            updated_at,
            kind,
            sequence: table.sequence,
            notice_id: notice.id,
            row_versions,
        };
        self.changes.push(change.clone());
        self.notices.push(notice.clone());
        Ok((change, notice))
    }

    /// A random addressee; for a delete, one that still has a row in the table.
    fn pick_addressee(&mut self, iface: &InterfaceId, kind: ChangeKind) -> AtenaNo {
        let n = self.residents.len();
        for _ in 0..64 {
            let a = self.residents[self.rng.random_range(0..n)].atena_no;
            let has_rows = self
                .tables
                .get(iface)
                .and_then(|t| t.live.get(&a))
                .is_some_and(|l| !l.is_empty());
            if kind != ChangeKind::Delete || has_rows {
                return a;
            }
        }
        // Nearly everyone was deleted: fall back to a scan (the caller reports NothingToDelete
        // when even that finds nobody).
        self.tables
            .get(iface)
            .and_then(|t| t.live.iter().find(|(_, l)| !l.is_empty()).map(|(a, _)| *a))
            .unwrap_or(self.residents[0].atena_no)
    }
}

fn sorted(mut keys: Vec<(AtenaNo, u32)>) -> Vec<(AtenaNo, u32)> {
    keys.sort_unstable();
    keys
}

fn parse_ts(s: &str) -> Result<OffsetTimestamp, SimError> {
    s.parse().map_err(|e| {
        SimError::new(
            SimErrorKind::Io,
            format!("internal: DB timestamp {s} did not parse: {e}"),
        )
    })
}

pub(crate) fn unknown_interface(i: &InterfaceId) -> SimError {
    SimError::new(
        SimErrorKind::UnknownInterface,
        format!("interface: {i} is not served by this provider"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(population: usize) -> (Db, Timestamp) {
        let c = Config {
            population,
            ..Config::default()
        };
        let now: Timestamp = "2026-11-25T01:00:00Z".parse().unwrap();
        (Db::generate(&c, now), now)
    }

    fn i05() -> InterfaceId {
        "001o05-00".parse().unwrap()
    }

    fn check_history_invariants(rows: &[Row]) {
        let mut per: HashMap<AtenaNo, Vec<&Row>> = HashMap::new();
        for r in rows {
            per.entry(r.atena_no).or_default().push(r);
        }
        for (a, rs) in per {
            assert_eq!(
                rs.iter().filter(|r| r.latest).count(),
                1,
                "{a}: exactly one latest row"
            );
            let newest = rs.iter().map(|r| r.history_no).max().unwrap();
            assert!(
                rs.iter().any(|r| r.latest && r.history_no == newest),
                "{a}: latest is newest"
            );
        }
    }

    #[test]
    fn generation_is_deterministic_and_consistent() {
        let (a, _) = db(200);
        let (b, _) = db(200);
        let ra = a.rows(&i05()).unwrap();
        let rb = b.rows(&i05()).unwrap();
        assert_eq!(ra, rb);
        assert!(ra.len() >= 200 && ra.len() <= 600);
        check_history_invariants(&ra);
    }

    #[test]
    fn commits_move_the_latest_flag_and_timestamps_increase() {
        let (mut d, now) = db(20);
        let a: AtenaNo = "000000000100003".parse().unwrap();
        let before = d
            .rows(&i05())
            .unwrap()
            .iter()
            .filter(|r| r.atena_no == a)
            .count() as u32;
        let spec = ChangeSpec::new(3)
            .interface(i05())
            .kind(ChangeKind::Update)
            .atena_no(a);
        let out = d.commit(&spec, now).unwrap();
        let hs: Vec<u32> = out.iter().map(|(c, _)| c.history_no).collect();
        assert_eq!(hs, [before + 1, before + 2, before + 3]);
        // Each update makes the new row visible and flips its predecessor's latest flag.
        let versions: Vec<u32> = out.iter().map(|(c, _)| c.row_versions).collect();
        assert_eq!(versions[1..], [2, 2]);
        assert_eq!(versions[0], 1 + u32::from(before > 0));
        let seqs: Vec<u64> = out.iter().map(|(c, _)| c.sequence).collect();
        assert_eq!(seqs, [1, 2, 3]);
        // Same clock instant, yet each commit has its own, later, microsecond.
        assert_eq!(out[0].0.updated_at, "2026-11-25T10:00:00.000001+09:00");
        assert_eq!(out[2].0.updated_at, "2026-11-25T10:00:00.000003+09:00");
        let rows = d.rows(&i05()).unwrap();
        check_history_invariants(&rows);

        let del = d
            .commit(
                &ChangeSpec::new(1)
                    .interface(i05())
                    .kind(ChangeKind::Delete)
                    .atena_no(a),
                now,
            )
            .unwrap();
        assert_eq!(del[0].0.history_no, before + 3);
        // The deleted row is gone (a tombstone); its predecessor is latest again.
        assert_eq!(del[0].0.row_versions, 1);
        let rows = d.rows(&i05()).unwrap();
        let mine: Vec<&Row> = rows.iter().filter(|r| r.atena_no == a).collect();
        assert_eq!(mine.len() as u32, before + 2);
        assert!(mine.iter().any(|r| r.latest && r.history_no == before + 2));
        check_history_invariants(&rows);
        // The next change does not reuse the deleted history number.
        let next = d
            .commit(
                &ChangeSpec::new(1)
                    .interface(i05())
                    .kind(ChangeKind::Update)
                    .atena_no(a),
                now,
            )
            .unwrap();
        assert_eq!(next[0].0.history_no, before + 4);
    }

    #[test]
    fn a_late_commit_carries_its_transactions_start() {
        let (mut d, now) = db(10);
        let a: AtenaNo = "000000000100002".parse().unwrap();
        let b: AtenaNo = "000000000100003".parse().unwrap();
        let one = |a| {
            ChangeSpec::new(1)
                .interface(i05())
                .kind(ChangeKind::Update)
                .atena_no(a)
        };
        let first = d.commit(&one(a), now).unwrap();
        let late = d
            .commit(&one(b).late_by(std::time::Duration::from_secs(300)), now)
            .unwrap();
        assert_eq!(late[0].0.updated_at, "2026-11-25T09:55:00.000000+09:00");
        assert_eq!(late[0].1.time.to_string(), "2026-11-25T10:00:00+09:00");
        // Visible now in the window of its timestamp, with the row it demoted.
        let q = Query {
            from: Some(now - SignedDuration::from_secs(300)),
            to: Some(now - SignedDuration::from_secs(299)),
            ..Default::default()
        };
        let rows = d.query(&i05(), &q, 1000, None).unwrap();
        assert!(rows.iter().all(|r| r.atena_no == b), "{rows:?}");
        assert!(
            rows.iter()
                .any(|r| r.history_no == late[0].0.history_no && r.latest)
        );
        // The next ordinary commit still follows the newest timestamp.
        let next = d.commit(&one(a), now).unwrap();
        assert!(next[0].0.updated_at > first[0].0.updated_at);
        assert_eq!(next[0].0.updated_at, "2026-11-25T10:00:00.000002+09:00");
    }

    #[test]
    fn replica_view_shows_the_past() {
        let (mut d, now) = db(10);
        let a: AtenaNo = "000000000100001".parse().unwrap();
        let later = now + SignedDuration::from_secs(5);
        let out = d
            .commit(
                &ChangeSpec::new(1)
                    .interface(i05())
                    .kind(ChangeKind::Update)
                    .atena_no(a),
                later,
            )
            .unwrap();
        let q = Query {
            keys: Some(vec![a]),
            ..Default::default()
        };
        let current = d.query(&i05(), &q, 1000, None).unwrap();
        let replica = d.query(&i05(), &q, 1000, Some(now)).unwrap();
        assert_eq!(current.len(), replica.len() + 1);
        assert!(replica.iter().all(|r| r.history_no < out[0].0.history_no));
        check_history_invariants(&replica);
    }

    #[test]
    fn threshold_is_enforced() {
        let (d, _) = db(100);
        let q = Query::default();
        assert_eq!(d.query(&i05(), &q, 50, None), Err(TooMany));
        assert!(d.query(&i05(), &q, 1000, None).is_ok());
    }
}
