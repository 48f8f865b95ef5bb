//! Reading a capped answer to the end. Some providers cap the rows of one answer and report
//! the total (検索結果件数) and the returned count (返却レコード数) (データ連携WT 1.1.9). A
//! capped answer looks complete, and when its rows are ordered by key rather than by time its
//! newest row would move a checkpoint past rows never received. So [`PullClient::pull`] never
//! hands a capped answer on; it reads the rest first, as the profile's `rows_order` allows:
//!
//! - `updated_at` (rows ascending by DB update timestamp): every row older than the answer's
//!   newest timestamp has come, so the rows are kept and the request is asked again from that
//!   timestamp ([`continuation`]; FROM is inclusive, so the rows at that instant come again and
//!   are dropped as already received, by timestamp, addressee number and history number). A
//!   continuation that would not move FROM (every row at one instant, more than the cap)
//!   falls back to splitting.
//! - `unspecified`: the answer's rows are discarded and the request is split (a window in
//!   halves at the profile's precision, a key list in halves) until every piece is answered
//!   whole.
//!
//! It returns all the rows, each once, or [`Outcome::TooMany`] when a piece cannot be split
//! further (one instant alone holds more rows than the cap), so the caller narrows by keys or
//! dead-letters as for E0004.

use std::collections::HashSet;

use jiff::Timestamp;

use crate::client::{Outcome, PullClient, PullRequest};
use crate::profile::{ApiProfile, RowsOrder};
use crate::wire::Row;

/// Most requests one capped pull may take before giving up as [`Outcome::TooMany`].
const MAX_PIECES: usize = 4096;

/// The request that reads the rest of a capped answer to `req` holding `rows`, when the rows
/// come ascending by DB update timestamp: the same request from the newest timestamp received.
/// `None` (split instead) when the rows' order is unspecified, or when that FROM would not
/// move forward at the profile's precision (every row at the request's FROM, or no rows).
pub(crate) fn continuation(
    api: &ApiProfile,
    req: &PullRequest,
    rows: &[Row],
) -> Option<PullRequest> {
    if api.rows_order != RowsOrder::UpdatedAt {
        return None;
    }
    let newest = api.floor(rows.iter().map(|r| r.updated_at).max()?);
    let moves = req.from.is_none_or(|f| newest > api.floor(f));
    let inside = req.to.is_none_or(|t| newest < t);
    (moves && inside).then(|| PullRequest {
        from: Some(newest),
        ..req.clone()
    })
}

/// The rows received so far by one capped pull, each once.
#[derive(Default)]
struct Received {
    rows: Vec<Row>,
    seen: HashSet<(Timestamp, String, Option<u64>)>,
}

impl Received {
    /// Keep `rows` not received before. A row without an addressee number cannot be told
    /// apart from another at its instant, so it is kept (read twice at worst: at least once).
    fn take(&mut self, rows: Vec<Row>) {
        for r in rows {
            let fresh = match &r.atena_no {
                Some(k) => self.seen.insert((r.updated_at, k.clone(), r.history_no)),
                None => true,
            };
            if fresh {
                self.rows.push(r);
            }
        }
    }
}

impl PullClient {
    /// Run the request and classify the answer; a capped answer is read to the end (module
    /// docs). Takes a limiter slot for each HTTP request (token requests included).
    pub async fn pull(&self, req: &PullRequest) -> Outcome {
        let first = self.pull_page(req).await;
        match (first.outcome, first.capped) {
            (Outcome::Data(rows), Some(_)) => self.read_capped(req, rows).await,
            (o, _) => o,
        }
    }

    async fn read_capped(&self, req: &PullRequest, first: Vec<Row>) -> Outcome {
        let mut got = Received::default();
        let mut stack: Vec<PullRequest> = Vec::new();
        if !self.rest_of(req, first, &mut got, &mut stack) {
            return Outcome::TooMany;
        }
        let mut pieces = 0usize;
        while let Some(piece) = stack.pop() {
            pieces += 1;
            if pieces > MAX_PIECES {
                return Outcome::TooMany;
            }
            let c = self.pull_page(&piece).await;
            let more = match (c.outcome, c.capped) {
                (Outcome::Data(r), None) => {
                    got.take(r);
                    true
                }
                (Outcome::Data(r), Some(_)) => self.rest_of(&piece, r, &mut got, &mut stack),
                (Outcome::TooMany, _) => self.rest_of(&piece, Vec::new(), &mut got, &mut stack),
                (o, _) => return o,
            };
            if !more {
                return Outcome::TooMany;
            }
        }
        let mut rows = got.rows;
        rows.sort_by_key(|r| r.updated_at);
        Outcome::Data(rows)
    }

    /// Plan the reading of the rest of `piece`, answered capped with `rows` (or refused, with
    /// none): its continuation, keeping the rows, else its two halves. `false` when neither is
    /// possible.
    fn rest_of(
        &self,
        piece: &PullRequest,
        rows: Vec<Row>,
        got: &mut Received,
        stack: &mut Vec<PullRequest>,
    ) -> bool {
        if let Some(next) = continuation(&self.config().api, piece, &rows) {
            got.take(rows);
            stack.push(next);
            return true;
        }
        match self.split(piece) {
            Some([a, b]) => {
                stack.push(b);
                stack.push(a);
                true
            }
            None => false,
        }
    }

    /// Two halves of a request: its key list, else its window at the profile's precision.
    fn split(&self, req: &PullRequest) -> Option<[PullRequest; 2]> {
        if req.keys.len() > 1 {
            let (a, b) = req.keys.split_at(req.keys.len() / 2);
            let half = |keys: &[shirase_proto::AtenaNo]| PullRequest {
                keys: keys.to_vec(),
                ..req.clone()
            };
            return Some([half(a), half(b)]);
        }
        let (Some(f), Some(t)) = (req.from, req.to) else {
            return None;
        };
        let mid = self.midpoint(f, t)?;
        Some([
            PullRequest {
                to: Some(mid),
                ..req.clone()
            },
            PullRequest {
                from: Some(mid),
                ..req.clone()
            },
        ])
    }

    /// The middle of `[from, to)` at the profile's precision, strictly inside the window.
    fn midpoint(&self, from: Timestamp, to: Timestamp) -> Option<Timestamp> {
        let api = &self.config().api;
        let mid = api.floor(from.checked_add(to.duration_since(from) / 2).ok()?);
        let mid = if mid <= from {
            api.ceil(from + api.precision() / 2)
        } else {
            mid
        };
        (mid > from && mid < to && api.floor(from) < mid).then_some(mid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::romaji;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn row(at: &str, key: &str, history: u64) -> Row {
        Row {
            atena_no: Some(key.into()),
            history_no: Some(history),
            updated_at: ts(at),
            raw: serde_json::Value::Null,
        }
    }

    fn window(from: &str, to: &str) -> PullRequest {
        PullRequest {
            interface: "001o05-00".parse().unwrap(),
            from: Some(ts(from)),
            to: Some(ts(to)),
            keys: vec![],
        }
    }

    #[test]
    fn a_capped_answer_ordered_by_time_continues_from_its_newest_row() {
        let mut api = romaji();
        api.rows_order = RowsOrder::UpdatedAt;
        let req = window("2026-11-25T01:00:00Z", "2026-11-25T02:00:00Z");
        let rows = [
            row("2026-11-25T01:00:03Z", "1", 1),
            row("2026-11-25T01:10:07Z", "2", 1),
            row("2026-11-25T01:10:07Z", "3", 4),
        ];
        assert_eq!(
            continuation(&api, &req, &rows),
            Some(PullRequest {
                from: Some(ts("2026-11-25T01:10:07Z")),
                ..req.clone()
            })
        );
        // A keyed pull without TO continues the same way, keys kept.
        let keyed = PullRequest {
            to: None,
            keys: vec!["000000000000001".parse().unwrap()],
            ..req.clone()
        };
        assert_eq!(
            continuation(&api, &keyed, &rows).map(|r| (r.from, r.keys)),
            Some((Some(ts("2026-11-25T01:10:07Z")), keyed.keys.clone()))
        );
    }

    #[test]
    fn a_continuation_that_would_not_move_from_falls_back_to_splitting() {
        let mut api = romaji();
        api.rows_order = RowsOrder::UpdatedAt;
        // Every row at FROM's second (more rows there than the cap): FROM cannot move.
        let req = window("2026-11-25T01:00:00Z", "2026-11-25T02:00:00Z");
        let same = [
            row("2026-11-25T01:00:00Z", "1", 1),
            row("2026-11-25T01:00:00Z", "2", 1),
        ];
        assert_eq!(continuation(&api, &req, &same), None);
        // At whole seconds, a newest row inside FROM's second does not move FROM either.
        let req = window("2026-11-25T01:00:00.400Z", "2026-11-25T02:00:00Z");
        let inside = [row("2026-11-25T01:00:00.900Z", "1", 1)];
        assert_eq!(continuation(&api, &req, &inside), None);
        // No rows (a refusal), or a newest row at or past TO: split.
        assert_eq!(continuation(&api, &req, &[]), None);
        let past = [row("2026-11-25T02:00:00Z", "1", 1)];
        assert_eq!(continuation(&api, &req, &past), None);
    }

    #[test]
    fn rows_of_unspecified_order_are_never_continued() {
        let api = romaji();
        assert_eq!(api.rows_order, RowsOrder::Unspecified);
        let req = window("2026-11-25T01:00:00Z", "2026-11-25T02:00:00Z");
        let rows = [row("2026-11-25T01:30:00Z", "1", 1)];
        assert_eq!(continuation(&api, &req, &rows), None);
    }

    #[test]
    fn rows_received_again_at_the_continuation_instant_are_kept_once() {
        let mut got = Received::default();
        got.take(vec![
            row("2026-11-25T01:00:03Z", "1", 1),
            row("2026-11-25T01:10:07Z", "2", 1),
        ]);
        got.take(vec![
            row("2026-11-25T01:10:07Z", "2", 1),
            row("2026-11-25T01:10:07Z", "2", 2),
            row("2026-11-25T01:10:07Z", "3", 1),
        ]);
        let ids: Vec<_> = got
            .rows
            .iter()
            .map(|r| (r.atena_no.clone().unwrap(), r.history_no.unwrap()))
            .collect();
        assert_eq!(
            ids,
            [("1", 1), ("2", 1), ("2", 2), ("3", 1)].map(|(k, h)| (k.to_owned(), h))
        );
        // A row without an addressee number is kept each time (at least once).
        let bare = Row {
            atena_no: None,
            ..row("2026-11-25T01:10:07Z", "x", 1)
        };
        got.take(vec![bare.clone(), bare]);
        assert_eq!(got.rows.len(), 6);
    }
}
