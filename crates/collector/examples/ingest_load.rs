//! Keep-alive load generator for `POST /api/v1/results` (bench/ingest.sh).
//!
//! ```text
//! cargo run --release -p ispeed-collector --example ingest_load -- \
//!     --url http://127.0.0.1:8080 --month 2026-10 --samples 200000 --seed 1 --concurrency 64
//! ```
//!
//! Unlike `ispeed generate --collector` (a new TCP connection per result,
//! and each receipt built and signed inside the timed loop), this builds
//! and serialises every submission first (receipts dated "now", so the
//! timed phase must finish within the collector's 15-minute receipt age),
//! then submits them over `--concurrency` keep-alive connections. What is
//! timed is then the collector's work, not the load generator's.
//!
//! `--url` may list several collector instances (comma-separated): the
//! connections are spread over them round-robin.
//!
//! Prints one JSON line: created (201), other statuses, errors, seconds,
//! results_per_s, submission latency p50/p99, this process's CPU seconds
//! during the timed phase and the build time.

#[path = "support/exit.rs"]
mod exit;
#[path = "support/http1.rs"]
mod http1;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ispeed_collector::generate::Generator;
use ispeed_collector::period::Month;
use ispeed_collector::state::load_enricher;
use ispeed_collector::RawConfig;

struct Args {
    url: String,
    month: Month,
    samples: u64,
    seed: u64,
    concurrency: usize,
    threads: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        url: String::new(),
        month: Month::parse("2026-10").expect("valid"),
        samples: 100_000,
        seed: 1,
        concurrency: 64,
        threads: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = value()?,
            "--month" => args.month = Month::parse(&value()?).ok_or("--month must be YYYY-MM")?,
            "--samples" => {
                args.samples = value()?.parse().map_err(|e| format!("--samples: {e}"))?
            }
            "--seed" => args.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--concurrency" => {
                args.concurrency = value()?
                    .parse()
                    .map_err(|e| format!("--concurrency: {e}"))?
            }
            "--threads" => {
                args.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?
            }
            "-h" | "--help" => {
                return Err(
                    "usage: ingest_load --url URL [--month YYYY-MM] [--samples N] [--seed S] \
                            [--concurrency C] [--threads T (tokio workers, 0 = cores)]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.url.is_empty() {
        return Err("--url is required".into());
    }
    args.concurrency = args.concurrency.max(1);
    Ok(args)
}

fn main() -> std::process::ExitCode {
    exit::main_with("ingest_load", parse_args, run)
}

fn run(args: Args) -> Result<bool, String> {
    let targets: Vec<(std::net::SocketAddr, String)> = args
        .url
        .split(',')
        .map(|url| http1::parse_url(url.trim()).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let config = RawConfig::default()
        .resolve(Path::new("unused"))
        .map_err(|e| e.to_string())?;
    let enricher = load_enricher(&config).map_err(|e| e.to_string())?;
    let generator = Generator::new(args.seed, args.month, args.samples, &enricher);

    // Build and serialise every submission up front, on every core.
    type IndexedBody = (u64, Vec<u8>);
    let build_started = Instant::now();
    let now = ispeed_client::submit::now_ms();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let next = AtomicU64::new(0);
    let bodies: Vec<Mutex<Vec<IndexedBody>>> = (0..cores).map(|_| Mutex::new(Vec::new())).collect();
    std::thread::scope(|scope| {
        for slot in &bodies {
            let (generator, next) = (&generator, &next);
            scope.spawn(move || {
                let mut out = Vec::new();
                loop {
                    let start = next.fetch_add(1024, Ordering::Relaxed);
                    if start >= generator.samples() {
                        break;
                    }
                    for index in start..(start + 1024).min(generator.samples()) {
                        let submission = generator.sample(index, Some(now));
                        out.push((index, serde_json::to_vec(&submission).expect("serialises")));
                    }
                }
                *slot.lock().expect("lock") = out;
            });
        }
    });
    let mut all: Vec<(u64, Vec<u8>)> = bodies
        .into_iter()
        .flat_map(|m| m.into_inner().expect("lock"))
        .collect();
    all.sort_unstable_by_key(|(i, _)| *i);
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(all.into_iter().map(|(_, b)| b).collect());
    let build_s = build_started.elapsed().as_secs_f64();
    eprintln!(
        "ingest_load: built {} submissions in {build_s:.1} s; submitting with {} keep-alive connections",
        bodies.len(),
        args.concurrency
    );

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if args.threads > 0 {
        runtime.worker_threads(args.threads);
    }
    let runtime = runtime.build().map_err(|e| e.to_string())?;
    let created = Arc::new(AtomicU64::new(0));
    let other_status = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let connections = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let cpu0 = http1::process_cpu_s();
    let started = Instant::now();
    let latencies: Vec<f64> = runtime.block_on(async {
        let workers: Vec<_> = (0..args.concurrency)
            .map(|c| {
                let (addr, authority) = targets[c % targets.len()].clone();
                let bodies = bodies.clone();
                let (created, other_status, errors, next, connections) = (
                    created.clone(),
                    other_status.clone(),
                    errors.clone(),
                    next.clone(),
                    connections.clone(),
                );
                tokio::spawn(async move {
                    let mut conn = http1::Conn::new(addr, &authority);
                    let mut latencies = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                        if index >= bodies.len() {
                            break;
                        }
                        let t0 = Instant::now();
                        match conn.post_json("/api/v1/results", &bodies[index]).await {
                            Ok(response) if response.status == 201 => {
                                created.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(response) => {
                                if other_status.fetch_add(1, Ordering::Relaxed) < 5 {
                                    eprintln!(
                                        "ingest_load: submission {index}: HTTP {} {}",
                                        response.status,
                                        String::from_utf8_lossy(&response.body)
                                    );
                                }
                            }
                            Err(error) => {
                                if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                                    eprintln!("ingest_load: submission {index}: {error}");
                                }
                            }
                        }
                        latencies.push(t0.elapsed().as_secs_f64() * 1e3);
                    }
                    connections.fetch_add(conn.opened, Ordering::Relaxed);
                    latencies
                })
            })
            .collect();
        let mut all = Vec::new();
        for worker in workers {
            all.extend(worker.await.unwrap_or_default());
        }
        all
    });
    let seconds = started.elapsed().as_secs_f64();
    let cpu_s = http1::process_cpu_s() - cpu0;
    let mut latencies = latencies;
    latencies.sort_by(f64::total_cmp);
    let created = created.load(Ordering::Relaxed);
    let other = other_status.load(Ordering::Relaxed);
    let errors = errors.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "loader": "keepalive",
            "created": created,
            "failed": other + errors,
            "other_status": other,
            "errors": errors,
            "seconds": seconds,
            "results_per_s": created as f64 / seconds,
            "concurrency": args.concurrency,
            "instances": targets.len(),
            "connections": connections.load(Ordering::Relaxed),
            "latency_ms_p50": http1::percentile(&latencies, 0.5),
            "latency_ms_p99": http1::percentile(&latencies, 0.99),
            "client_cpu_s": cpu_s,
            "build_s": build_s,
        })
    );
    Ok(other + errors == 0 && created == args.samples)
}
