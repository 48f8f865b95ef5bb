//! `target/bench/summary.json`: the headline figure of every scenario in one object with a fixed
//! key set ([`KEYS`], numbers, `null` for a scenario not run yet), plus `machine` (with the
//! load average at the end of the run behind each figure) and `commit`. Each scenario's run
//! updates its own keys only: the file is merged, not rewritten.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use serde_json::{Map, Value, json};

use super::Report;

/// The figures, in the order of the goals they measure.
pub const KEYS: [&str; 14] = [
    "rows_per_version_day",
    "rows_per_version_day_maintenance_kept",
    "sink_lines_per_change_demo",
    "pulls_per_window_burst",
    "trickle_requests",
    "requests_vs_optimum_1s",
    "requests_vs_optimum_10s",
    "requests_vs_optimum_60s",
    "late_commit_seconds",
    "resync_seconds",
    "ingest_ratio_pinned",
    "ingest_ratio_unpinned",
    "latency_p99_ms_2000",
    "agent_peak_mib_1m",
];

/// The summary figures a scenario's report holds (only numbers; a figure the run did not
/// produce is left out, so an earlier value stays).
pub fn figures(r: &Report) -> Vec<(&'static str, Value)> {
    let s = &r.summary;
    let mut out: Vec<(&'static str, Value)> = match r.scenario.as_str() {
        "daysim" => vec![
            ("rows_per_version_day", s["rows_per_version_day"].clone()),
            (
                "rows_per_version_day_maintenance_kept",
                s["rows_per_version_day_maintenance_kept"].clone(),
            ),
            (
                "requests_vs_optimum_1s",
                s["requests_vs_optimum"]["1s"]["ratio"].clone(),
            ),
            (
                "requests_vs_optimum_10s",
                s["requests_vs_optimum"]["10s"]["ratio"].clone(),
            ),
            (
                "requests_vs_optimum_60s",
                s["requests_vs_optimum"]["60s"]["ratio"].clone(),
            ),
        ],
        "burst" => vec![
            (
                "pulls_per_window_burst",
                r.rows
                    .iter()
                    .find(|row| row["notices"] == 100_000)
                    .map(|row| row["pulls_per_batch_window"].clone())
                    .unwrap_or(Value::Null),
            ),
            ("trickle_requests", s["trickle_requests"].clone()),
        ],
        "latency" => vec![("latency_p99_ms_2000", s["shirase_p99_ms_at_2000"].clone())],
        "memory" if s["backlog"] == 1_000_000 => {
            vec![("agent_peak_mib_1m", s["agent_peak_rss_mib"].clone())]
        }
        "ingest" => vec![
            ("ingest_ratio_pinned", s["ratio_pinned"].clone()),
            ("ingest_ratio_unpinned", s["ratio_unpinned"].clone()),
        ],
        "latecommit" => vec![
            ("late_commit_seconds", s["late_commit_seconds"].clone()),
            ("resync_seconds", s["resync_seconds"].clone()),
        ],
        _ => vec![],
    };
    out.retain(|(_, v)| v.is_number());
    out
}

/// The demo's figure from its `summary.json` (deploy/dev/demo.sh): per subscriber, sink lines
/// over changes of the interfaces it reads; the highest subscriber's.
pub fn demo_sink_lines_per_change(demo_summary: &Value) -> Option<f64> {
    let subs = demo_summary["subscribers"].as_object()?;
    subs.values()
        .filter_map(|per| {
            let per = per.as_object()?;
            let lines: f64 = per.values().filter_map(|v| v["sink_lines"].as_f64()).sum();
            let changes: f64 = per.values().filter_map(|v| v["changes"].as_f64()).sum();
            (changes > 0.0).then(|| super::round(lines / changes))
        })
        .max_by(f64::total_cmp)
}

/// `existing` (a previous summary, if any) with `figures` set, every key of [`KEYS`] present,
/// `machine` replaced (keeping each figure's load average under `loadavg_per_figure`) and
/// `commit` set.
pub fn merge(
    existing: Option<&Value>,
    figures: &[(&'static str, Value)],
    machine: &Value,
    commit: &str,
) -> Value {
    let old = existing.and_then(Value::as_object);
    let mut out = Map::new();
    for k in KEYS {
        let v = old
            .and_then(|o| o.get(k))
            .filter(|v| v.is_number())
            .cloned()
            .unwrap_or(Value::Null);
        out.insert(k.into(), v);
    }
    let mut loads = old
        .and_then(|o| o["machine"]["loadavg_per_figure"].as_object())
        .cloned()
        .unwrap_or_default();
    for (k, v) in figures {
        out.insert((*k).into(), v.clone());
        loads.insert((*k).into(), machine["loadavg"].clone());
    }
    let mut m = machine.as_object().cloned().unwrap_or_default();
    m.insert("loadavg_per_figure".into(), Value::Object(loads));
    out.insert("machine".into(), Value::Object(m));
    out.insert("commit".into(), json!(commit));
    Value::Object(out)
}

/// The commit the benchmark was built from (`git rev-parse --short HEAD`, "unknown" outside a
/// checkout), with `+dirty` when the work tree has changes.
pub fn commit(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(s) if !s.is_empty() => format!("{head}+dirty"),
        _ => head,
    }
}

/// Merge `report`'s figures (and the demo's, when its summary exists) into
/// `<bench dir>/summary.json`.
pub fn update(report: &Report) -> anyhow::Result<PathBuf> {
    let root = crate::harness::workspace_root();
    let path = super::bench_dir().join("summary.json");
    let existing: Option<Value> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let mut figs = figures(report);
    let demo = std::env::var_os("SHIRASE_DEMO_SUMMARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("demo-data/summary.json"));
    if let Some(v) = std::fs::read(&demo)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .as_ref()
        .and_then(demo_sink_lines_per_change)
    {
        figs.push(("sink_lines_per_change_demo", json!(v)));
    }
    let merged = merge(existing.as_ref(), &figs, &report.machine, &commit(&root));
    std::fs::write(&path, serde_json::to_vec_pretty(&merged)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }

    #[test]
    fn the_summary_has_exactly_the_figures_machine_and_commit() {
        let machine = json!({"nproc": 2, "loadavg": "1.00 1.00 1.00 1/100 1"});
        let v = merge(None, &[], &machine, "abc1234");
        let mut want: Vec<String> = KEYS.iter().map(|k| (*k).to_owned()).collect();
        want.extend(["machine".to_owned(), "commit".to_owned()]);
        want.sort();
        assert_eq!(keys(&v), want);
        assert!(KEYS.iter().all(|k| v[*k].is_null()), "not run: null");
        assert_eq!(v["commit"], "abc1234");
        assert_eq!(v["machine"]["nproc"], 2);
    }

    #[test]
    fn a_run_updates_its_own_figures_and_keeps_the_others() {
        let m1 = json!({"loadavg": "5.00"});
        let m2 = json!({"loadavg": "2.00"});
        let first = merge(
            None,
            &[
                ("rows_per_version_day", json!(1.05)),
                ("trickle_requests", json!(60)),
            ],
            &m1,
            "a",
        );
        let mut stale = first.clone();
        stale["not_a_figure"] = json!(1);
        let second = merge(Some(&stale), &[("trickle_requests", json!(58))], &m2, "b");
        assert_eq!(second["rows_per_version_day"], json!(1.05));
        assert_eq!(second["trickle_requests"], json!(58));
        assert_eq!(second["late_commit_seconds"], Value::Null);
        assert_eq!(second["commit"], "b");
        assert_eq!(
            second["machine"]["loadavg_per_figure"],
            json!({"rows_per_version_day": "5.00", "trickle_requests": "2.00"})
        );
        assert_eq!(second.get("not_a_figure"), None, "only the fixed keys");
        assert_eq!(keys(&second), keys(&first));
    }

    #[test]
    fn a_scenario_gives_its_numeric_figures_only() {
        let r = Report {
            scenario: "daysim".into(),
            rows: vec![],
            summary: json!({
                "rows_per_version_day": 1.04,
                "requests_vs_optimum": {"1s": {"ratio": 1.02}, "10s": {"ratio": 1.05}, "60s": {"ratio": null}},
            }),
            machine: json!({}),
            failure: None,
        };
        assert_eq!(
            figures(&r),
            vec![
                ("rows_per_version_day", json!(1.04)),
                ("requests_vs_optimum_1s", json!(1.02)),
                ("requests_vs_optimum_10s", json!(1.05)),
            ]
        );
        let r = Report {
            scenario: "burst".into(),
            rows: vec![
                json!({"notices": 10_000, "pulls_per_batch_window": 1.5}),
                json!({"notices": 100_000, "pulls_per_batch_window": 1.02}),
            ],
            summary: json!({"trickle_requests": 61}),
            machine: json!({}),
            failure: None,
        };
        assert_eq!(
            figures(&r),
            vec![
                ("pulls_per_window_burst", json!(1.02)),
                ("trickle_requests", json!(61))
            ]
        );
    }

    #[test]
    fn the_demo_figure_is_the_highest_subscribers_lines_per_change() {
        let demo = json!({"subscribers": {
            "tax": {"001o05-00": {"changes": 90, "sink_lines": 100}, "010o01-00": {"changes": 10, "sink_lines": 20}},
            "delinquency": {"001o05-00": {"changes": 90, "sink_lines": 99}},
        }});
        assert_eq!(demo_sink_lines_per_change(&demo), Some(1.2));
        assert_eq!(demo_sink_lines_per_change(&json!({})), None);
    }
}
