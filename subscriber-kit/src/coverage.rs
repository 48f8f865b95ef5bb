//! Coverage: which notices a pull satisfied. A notice may be acked only when the
//! rows received reach its `updated_at` (window pull) or contain each of its keys at or after
//! its `updated_at` (keyed pull). Some providers answer from a lagging replica, so a pull can
//! run before the change is visible; such a notice stays uncovered and is retried.

use std::collections::HashMap;

use jiff::Timestamp;

use crate::pull_client::Row;

/// What a pull's rows reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reach {
    /// The largest `updated_at` among the rows.
    pub max: Option<Timestamp>,
    /// The largest `updated_at` per addressee number.
    pub per_key: HashMap<String, Timestamp>,
}

impl Reach {
    /// Summarize rows.
    pub fn of(rows: &[Row]) -> Self {
        let mut r = Reach::default();
        for row in rows {
            r.max = Some(r.max.map_or(row.updated_at, |m| m.max(row.updated_at)));
            if let Some(k) = &row.atena_no {
                let e = r.per_key.entry(k.clone()).or_insert(row.updated_at);
                *e = (*e).max(row.updated_at);
            }
        }
        r
    }

    /// Did a window pull cover a notice at `updated_at`?
    pub fn covers_window(&self, updated_at: Timestamp) -> bool {
        self.max.is_some_and(|m| m >= updated_at)
    }

    /// Did a keyed pull cover a notice at `updated_at` naming `keys`? Every key must appear
    /// at or after the notice's time; a notice without keys is judged like a window pull.
    pub fn covers_keys<'a>(
        &self,
        updated_at: Timestamp,
        keys: impl IntoIterator<Item = &'a str>,
    ) -> bool {
        let mut any = false;
        for k in keys {
            any = true;
            if self.per_key.get(k).is_none_or(|t| *t < updated_at) {
                return false;
            }
        }
        any || self.covers_window(updated_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(k: &str, s: i64) -> Row {
        Row {
            atena_no: Some(k.into()),
            history_no: Some(1),
            updated_at: Timestamp::from_second(s).unwrap(),
            raw: serde_json::Value::Null,
        }
    }
    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn window_coverage_needs_rows_reaching_the_notice() {
        let r = Reach::of(&[row("a", 10), row("b", 20)]);
        assert!(r.covers_window(t(20)));
        assert!(r.covers_window(t(5)));
        assert!(
            !r.covers_window(t(21)),
            "lagging replica: the change is not visible yet"
        );
        assert!(!Reach::of(&[]).covers_window(t(0)));
    }

    #[test]
    fn keyed_coverage_needs_each_key_at_or_after_the_notice() {
        let r = Reach::of(&[row("a", 10), row("b", 20)]);
        assert!(r.covers_keys(t(10), ["a"]));
        assert!(!r.covers_keys(t(15), ["a"]), "a's row predates the change");
        assert!(!r.covers_keys(t(10), ["a", "c"]));
        assert!(!r.covers_keys(t(20), ["a", "b"]), "a predates 20");
        assert!(r.covers_keys(t(10), ["a", "b"]));
    }
}
