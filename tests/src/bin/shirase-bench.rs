//! `shirase-bench <scenario>|all [options]`: benchmarks that start their own nats-server(s),
//! relay, provider-sim and agent, print a table and write `target/bench/<scenario>.json` and
//! the merged `target/bench/summary.json`.
//! The scenarios live in `shirase_tests::bench` (one module each); this is only the CLI.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;

use shirase_tests::bench::{self, Options, Report};

type ScenarioFn = fn(Options) -> Pin<Box<dyn Future<Output = anyhow::Result<Report>>>>;

/// (name, scenario, part of `all`).
const SCENARIOS: &[(&str, ScenarioFn, bool)] = &[
    ("ingest", |o| Box::pin(bench::ingest::run(o)), true),
    ("latency", |o| Box::pin(bench::latency::run(o)), true),
    ("burst", |o| Box::pin(bench::burst::run(o)), true),
    ("catchup", |o| Box::pin(bench::catchup::run(o)), true),
    ("daysim", |o| Box::pin(bench::daysim::run(o)), true),
    ("memory", |o| Box::pin(bench::memory::run(o)), true),
    ("latecommit", |o| Box::pin(bench::latecommit::run(o)), true),
    // A check, not a measurement: run on its own.
    ("soak", |o| Box::pin(bench::soak::run(o)), false),
];

fn usage() -> String {
    let names: Vec<&str> = SCENARIOS.iter().map(|(n, _, _)| *n).collect();
    format!(
        "usage: shirase-bench <scenario>|all [--full] [--messages N] [--messages-sync N] [--http-batch N] [--http-concurrency N] [--seconds N] [--max-wait-ms N] [--seed S]\nscenarios: {}\n--full runs the full sizes (1,000,000 backlogs), longer than 2 minutes per scenario\nsoak (not in all): shirase-bench soak --seconds N --seed S, N seconds of random faults (default 60) from seed S (default: the clock; printed for a replay); exits 1 when anything was lost",
        names.join(", ")
    )
}

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHIRASE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = Options::default();
    let mut which = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--messages" | "--messages-sync" | "--http-batch" | "--http-concurrency"
            | "--seconds" | "--max-wait-ms" => {
                let Some(n) = args
                    .get(i + 1)
                    .and_then(|v| v.parse::<usize>().ok())
                    .filter(|n| *n > 0)
                else {
                    eprintln!("{} needs a positive number\n{}", args[i], usage());
                    return ExitCode::from(2);
                };
                match args[i].as_str() {
                    "--messages" => opts.messages = n,
                    "--messages-sync" => opts.messages_sync = n,
                    "--http-batch" => opts.http_batch = n.min(1000),
                    "--seconds" => {
                        opts.seconds = n as u64;
                        opts.soak_seconds = n as u64;
                    }
                    "--max-wait-ms" => opts.max_wait_ms = n as u64,
                    _ => opts.http_concurrency = n,
                }
                i += 1;
            }
            "--seed" => {
                let Some(s) = args.get(i + 1).and_then(|v| v.parse::<u64>().ok()) else {
                    eprintln!("--seed needs a number (0 to 2^64-1)\n{}", usage());
                    return ExitCode::from(2);
                };
                opts.seed = Some(s);
                i += 1;
            }
            "--full" => opts.full = true,
            "-h" | "--help" => {
                println!("{}", usage());
                return ExitCode::SUCCESS;
            }
            s if which.is_none() => which = Some(s.to_owned()),
            s => {
                eprintln!("unexpected argument {s:?}\n{}", usage());
                return ExitCode::from(2);
            }
        }
        i += 1;
    }
    let Some(which) = which else {
        eprintln!("{}", usage());
        return ExitCode::from(2);
    };
    let selected: Vec<&(&str, ScenarioFn, bool)> = SCENARIOS
        .iter()
        .filter(|(n, _, in_all)| (which == "all" && *in_all) || *n == which)
        .collect();
    if selected.is_empty() {
        eprintln!("unknown scenario {which:?}\n{}", usage());
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = false;
    for (name, f, _) in selected {
        match rt.block_on(f(opts.clone())) {
            Ok(report) => {
                report.print();
                match report.write_json() {
                    Ok(p) => println!("wrote {}", p.display()),
                    Err(e) => {
                        eprintln!("writing JSON for {name}: {e:#}");
                        failed = true;
                    }
                }
                if let Some(why) = &report.failure {
                    eprintln!("scenario {name} FAILED: {why}");
                    failed = true;
                }
                match bench::summary::update(&report) {
                    Ok(p) => println!("updated {}", p.display()),
                    Err(e) => {
                        eprintln!("updating the summary for {name}: {e:#}");
                        failed = true;
                    }
                }
            }
            Err(e) => {
                eprintln!("scenario {name} failed: {e:#}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
