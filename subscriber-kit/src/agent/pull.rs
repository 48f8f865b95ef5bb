//! The requests to the provider's PULL API: the planned pull (a window cut into pieces and
//! bisected on refusal, or a keyed pull with its window fallback), the narrow pull (keyed, or
//! minimal windows), each request behind the maintenance guard, and the outage tracking of
//! every answer.

use std::sync::atomic::Ordering;

use jiff::Timestamp;
use shirase_proto::{AtenaNo, InterfaceId, Severity};

use super::plan::{self, Burst, Piece, Pulls};
use super::settle::NarrowReached;
use super::state::{RECENT_ROWS_CAP, keep_newest, key_hash};
use super::{Failure, Pulled, Streamed, Worker};
use crate::coalesce::{NarrowKind, PullKind};
use crate::coverage::Reach;
use crate::outage::OutageEvent;
use crate::pull_client::{Outcome, PullRequest};
use crate::sink::Record;

impl Worker {
    /// Make the planned pull, if any. A window pull delivers its rows piece by piece as they
    /// arrive; a keyed pull's rows (bounded by its keys) are returned for the caller to deliver
    /// with the tombstones. A keyed pull that draws too many rows falls back to the window.
    pub(super) async fn pull(
        &self,
        iface: &InterfaceId,
        p: &Pulls,
    ) -> Result<Option<Pulled>, Failure> {
        let Some(pull) = &p.plan.pull else {
            return Ok(None);
        };
        let window = |from, to| async move {
            let pieces = self.cut(iface, from, to, &p.hints);
            self.pull_window(iface, pieces, p, &pull.covers)
                .await
                .map(|s| Some(Pulled::Window(s)))
        };
        match &pull.kind {
            PullKind::Window { from, to } => window(*from, *to).await,
            PullKind::Keyed { from, keys } => {
                let req = PullRequest {
                    interface: *iface,
                    from: Some(*from),
                    to: None,
                    keys: keys.clone(),
                };
                match self.request(&req).await {
                    Outcome::Data(r) => Ok(Some(Pulled::Keyed(r))),
                    Outcome::TooMany | Outcome::TimeoutSplit { .. } => match p.keyed_fallback() {
                        Some((from, to)) => window(from, to).await,
                        None => Err(Failure::Outcome(Outcome::TooMany)),
                    },
                    o => Err(Failure::Outcome(o)),
                }
            }
        }
    }

    /// Make the planned narrow pull, if any, and hand its rows to the sink (it never moves the
    /// checkpoint). A keyed narrow pull that draws too many rows falls back to minimal windows.
    pub(super) async fn pull_narrow(
        &self,
        iface: &InterfaceId,
        p: &Pulls,
    ) -> Result<NarrowReached, Failure> {
        let Some(narrow) = &p.plan.narrow else {
            return Ok(NarrowReached::Nothing);
        };
        let windows = |w: Vec<(Timestamp, Timestamp)>| async move {
            let got = self.pull_window(iface, w, p, &narrow.covers).await?;
            Ok(NarrowReached::Windows(got.times.into_iter().collect()))
        };
        let reached = match &narrow.kind {
            NarrowKind::Windows(w) => windows(w.clone()).await?,
            NarrowKind::Keyed { from, keys } => {
                let req = PullRequest {
                    interface: *iface,
                    from: Some(*from),
                    to: None,
                    keys: keys.clone(),
                };
                match self.request(&req).await {
                    Outcome::Data(rows) => {
                        let reach = Reach::of(&rows);
                        if !rows.is_empty() {
                            self.deliver(
                                *iface,
                                p.now,
                                rows.into_iter().map(Record::Row).collect(),
                            )
                            .await
                            .map_err(Failure::Sink)?;
                        }
                        NarrowReached::Keyed(reach)
                    }
                    Outcome::TooMany | Outcome::TimeoutSplit { .. } => {
                        windows(p.narrow_fallback()).await?
                    }
                    o => return Err(Failure::Outcome(o)),
                }
            }
        };
        tracing::debug!(interface = %iface, notices = narrow.covers.len(), "narrow pull for notices at or below the checkpoint");
        Ok(reached)
    }

    /// Cut `[from, to)` where this interface's notices and recently received rows are.
    fn cut(
        &self,
        iface: &InterfaceId,
        from: Timestamp,
        to: Timestamp,
        hints: &[Timestamp],
    ) -> Vec<(Timestamp, Timestamp)> {
        let budget = 2 * self.cfg.pull.max_notices_per_window as u64;
        self.states.with(iface, |s| {
            plan::cut_windows(from, to, &s.recent_rows, hints, budget)
        })
    }

    /// Pull the consecutive `windows` (planned by [`plan::cut_windows`]), bisecting a piece
    /// on E0004 / bare 503 down to `bisect_max_depth` ([`plan::bisect`], never below the
    /// provider's precision), and hand each piece's rows to the sink as soon as it arrives, so
    /// the agent holds one piece (about `2 × max_notices_per_window` rows, or the provider's
    /// row threshold) at a time, not the whole burst. A refused piece holding one instant
    /// alone is read by the addressee numbers its notices name ([`plan::burst`],
    /// [`Worker::pull_burst`]). Pieces run in time order; on any failure the checkpoint stays
    /// where it was, so the pieces already delivered are pulled and delivered again later (at
    /// least once, as inside the overlap). `covers`: the notices (indices into `p.inputs`)
    /// this pull must cover. Returns what was delivered: the count and the newest DB
    /// timestamps.
    async fn pull_window(
        &self,
        iface: &InterfaceId,
        windows: Vec<(Timestamp, Timestamp)>,
        p: &Pulls,
        covers: &[usize],
    ) -> Result<Streamed, Failure> {
        let whole_seconds = self.client.config().api.whole_seconds();
        let mut got = Streamed {
            from: windows.first().map(|w| w.0),
            ..Streamed::default()
        };
        let budget = 2 * self.cfg.pull.max_notices_per_window as u64;
        // Rows per length of the last piece answered, to cut the next ones to fit; from the
        // pull before when it was just now.
        let mut density = self.states.with(iface, |s| s.recent_density(p.now));
        let newest = p.hints.last().copied();
        let mut stack: Vec<Piece> = windows.into_iter().rev().map(|(f, t)| (f, t, 0)).collect();
        while let Some(piece) = stack.pop() {
            if let Some([lo, hi]) =
                plan::density_split(piece, density, budget, whole_seconds, newest)
            {
                stack.push(hi);
                stack.push(lo);
                continue;
            }
            let (f, t, _) = piece;
            let req = PullRequest {
                interface: *iface,
                from: Some(f),
                to: Some(t),
                keys: vec![],
            };
            match self.request(&req).await {
                Outcome::Data(r) => {
                    density = plan::Density::of(f, t, r.len());
                    if let Some(d) = density {
                        self.states
                            .with(iface, |s| s.density = Some((d, Timestamp::now())));
                    }
                    self.take(iface, r, p.now, &mut got).await?;
                }
                o @ (Outcome::TooMany | Outcome::TimeoutSplit { .. }) => {
                    if plan::one_instant(f, t, whole_seconds) {
                        let burst = plan::burst(
                            f,
                            t,
                            &p.inputs,
                            covers,
                            p.checkpoint,
                            whole_seconds,
                            self.cfg.pull.max_notices_per_window,
                        );
                        if !self
                            .pull_burst(iface, (f, t), burst, o, p, &mut got)
                            .await?
                        {
                            break;
                        }
                        continue;
                    }
                    match plan::bisect(
                        piece,
                        self.cfg.pull.bisect_max_depth,
                        &p.hints,
                        whole_seconds,
                    ) {
                        Some([lo, hi]) => {
                            stack.push(hi);
                            stack.push(lo);
                        }
                        None => {
                            return Err(Failure::BisectExhausted {
                                last: o,
                                from: f,
                                to: t,
                            });
                        }
                    }
                }
                o => return Err(Failure::Outcome(o)),
            }
        }
        Ok(got)
    }

    /// Read a refused one-instant piece `[f, t)` as [`plan::burst`] decided: by the addressee
    /// numbers of its notices, in groups (a refused group is halved, down to one key), or skip
    /// it, or stop the window before it (returns `false`). A piece not read as a window moves
    /// the pull's recorded FROM past it: notices at that instant that were not in this batch
    /// are then not taken as read by this pull, and get their own narrow pulls.
    async fn pull_burst(
        &self,
        iface: &InterfaceId,
        (f, t): (Timestamp, Timestamp),
        burst: Burst,
        last: Outcome,
        p: &Pulls,
        got: &mut Streamed,
    ) -> Result<bool, Failure> {
        let groups = match burst {
            Burst::Keyed(groups) => groups,
            Burst::Skip => {
                tracing::info!(interface = %iface, "one instant at or below the checkpoint holds more rows than the provider answers at once: skipped (read before)");
                got.from = got.from.max(Some(t));
                return Ok(true);
            }
            Burst::Stop => {
                tracing::info!(interface = %iface, "one instant above the checkpoint holds more rows than the provider answers at once and no notice in hand names it: the window ends before it");
                got.stopped = true;
                return Ok(false);
            }
            Burst::NoKeys => {
                return Err(Failure::Burst {
                    last,
                    at: f,
                    keyless: true,
                });
            }
        };
        tracing::info!(interface = %iface, groups = groups.len(), "one instant holds more rows than the provider answers at once: pulling it by the addressee numbers of its notices");
        let mut stack: Vec<Vec<AtenaNo>> = groups.into_iter().rev().collect();
        while let Some(keys) = stack.pop() {
            let req = PullRequest {
                interface: *iface,
                from: Some(f),
                to: Some(t),
                keys,
            };
            match self.request(&req).await {
                Outcome::Data(r) => self.take(iface, r, p.now, got).await?,
                o @ (Outcome::TooMany | Outcome::TimeoutSplit { .. }) => {
                    match plan::halve_keys(&req.keys) {
                        Some([a, b]) => {
                            stack.push(b);
                            stack.push(a);
                        }
                        None => {
                            return Err(Failure::Burst {
                                last: o,
                                at: f,
                                keyless: false,
                            });
                        }
                    }
                }
                o => return Err(Failure::Outcome(o)),
            }
        }
        got.from = got.from.max(Some(t));
        Ok(true)
    }

    /// Count and remember a piece's rows, and hand them to the sink.
    async fn take(
        &self,
        iface: &InterfaceId,
        r: Vec<crate::pull_client::Row>,
        pulled_at: Timestamp,
        got: &mut Streamed,
    ) -> Result<(), Failure> {
        got.count += r.len();
        got.times.extend(r.iter().map(|row| row.updated_at));
        got.keys.extend(r.iter().filter_map(|row| {
            let k = row.atena_no.as_deref()?;
            Some((row.updated_at, key_hash(k)))
        }));
        // Only the newest are remembered (cutting windows, received rows).
        keep_newest(&mut got.times, RECENT_ROWS_CAP);
        keep_newest(&mut got.keys, RECENT_ROWS_CAP);
        if !r.is_empty() {
            self.deliver(*iface, pulled_at, r.into_iter().map(Record::Row).collect())
                .await
                .map_err(Failure::Sink)?;
        }
        Ok(())
    }

    /// One request to the provider, unless it is in its maintenance window.
    async fn request(&self, req: &PullRequest) -> Outcome {
        // Checked before every request (bisection can run into a window's start); the token
        // request happens inside `pull`, so it is not sent either.
        if let Some(wait) = self.guard.remaining() {
            self.outage.in_maintenance();
            return Outcome::Maintenance {
                retry_after: Some(wait),
            };
        }
        let o = self.client.pull(req).await;
        self.metrics
            .pulls
            .get_or_create(&crate::metrics::PullLabels {
                provider: self.provider().business_id.to_string(),
                interface: req.interface.to_string(),
                outcome: o.label().into(),
            })
            .inc();
        self.track_outage(&o).await;
        o
    }

    /// Feed the outage tracker; raise its one alert and its one recovery message. The alert
    /// bypasses the alerter's repeat suppression: the tracker already says it exactly once.
    async fn track_outage(&self, o: &Outcome) {
        let p = self.provider().business_id.to_string();
        let now = tokio::time::Instant::now();
        let event = match o {
            Outcome::Connect(_) | Outcome::Transient { .. } | Outcome::TimeoutSplit { .. } => {
                if matches!(o, Outcome::Connect(_)) {
                    self.connect_failures.fetch_add(1, Ordering::Relaxed);
                }
                self.outage.failure(now)
            }
            Outcome::Maintenance { .. } => {
                self.outage.in_maintenance();
                OutageEvent::None
            }
            _ => {
                self.connect_failures.store(0, Ordering::Relaxed);
                self.outage.success(now)
            }
        };
        let (sev, code, message, runbook) = match event {
            OutageEvent::None => return,
            OutageEvent::Alert { failing_for } => (
                Severity::Critical,
                "provider_unreachable",
                format!(
                    "check the operating status of provider {p}: its PULL API has failed for {} s outside its maintenance windows ({} connection failures in a row, last: {}); notices wait in JetStream",
                    failing_for.as_secs(),
                    self.connect_failures.load(Ordering::Relaxed),
                    o.label()
                ),
                "Ask the provider's vendor about its operating status (稼働状況). Nothing is lost: notices wait in JetStream and the agent pulls them when the provider answers; a recovery message follows.",
            ),
            OutageEvent::Recovered { lasted } => (
                Severity::Info,
                "provider_recovered",
                format!(
                    "provider {p} answers again after {} s; the agent is catching up",
                    lasted.as_secs()
                ),
                "Nothing to do; watch num_pending of the consumer go back to 0.",
            ),
        };
        if self
            .alerter
            .raise_now(sev, code, Some(&p), None, message, Some(runbook.into()))
            .await
        {
            self.metrics
                .alerts
                .get_or_create(&crate::metrics::CodeLabels { code: code.into() })
                .inc();
        }
    }
}
