//! Reading a capped answer to the end. Some providers cap the rows of one answer and report
//! the total (検索結果件数) and the returned count (返却レコード数) (データ連携WT 1.1.9). A
//! capped answer looks complete, and when its rows are ordered by key rather than by time its
//! newest row would move a checkpoint past rows never received. So [`PullClient::pull`] never
//! hands a capped answer on: it splits the request (a window in halves at the profile's
//! precision, a key list in halves) until every piece is answered whole, and returns all the
//! rows, or [`Outcome::TooMany`] when a piece cannot be split further (one instant alone
//! holds more rows than the cap), so the caller narrows by keys or dead-letters as for E0004.

use jiff::Timestamp;

use crate::client::{Outcome, PullClient, PullRequest};
use crate::wire::Row;

/// Most requests one capped pull may take before giving up as [`Outcome::TooMany`].
const MAX_PIECES: usize = 4096;

impl PullClient {
    /// Run the request and classify the answer; a capped answer is read to the end (module
    /// docs). Takes a limiter slot for each HTTP request (token requests included).
    pub async fn pull(&self, req: &PullRequest) -> Outcome {
        let first = self.pull_page(req).await;
        match (first.outcome, first.capped) {
            (Outcome::Data(_), Some(_)) => self.read_capped(req).await,
            (o, _) => o,
        }
    }

    async fn read_capped(&self, req: &PullRequest) -> Outcome {
        let mut rows: Vec<Row> = Vec::new();
        let mut stack: Vec<PullRequest> = match self.split(req) {
            Some([a, b]) => vec![b, a],
            None => return Outcome::TooMany,
        };
        let mut pieces = 0usize;
        while let Some(piece) = stack.pop() {
            pieces += 1;
            if pieces > MAX_PIECES {
                return Outcome::TooMany;
            }
            let c = self.pull_page(&piece).await;
            match (c.outcome, c.capped) {
                (Outcome::Data(r), None) => rows.extend(r),
                (Outcome::Data(_), Some(_)) | (Outcome::TooMany, _) => match self.split(&piece) {
                    Some([a, b]) => {
                        stack.push(b);
                        stack.push(a);
                    }
                    None => return Outcome::TooMany,
                },
                (o, _) => return o,
            }
        }
        rows.sort_by_key(|r| r.updated_at);
        Outcome::Data(rows)
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
