//! Statistics latency against an exact computation (bench/query.sh).
//!
//! ```text
//! cargo run --release -p ispeed-collector --example query_bench -- \
//!     --url http://127.0.0.1:8080 --data DIR --period 2026-10 --requests 2000
//! ```
//!
//! 1. Times `GET /api/v1/stats` (nation, provinces 01/79/48 and random ones,
//!    random wards) and `GET /api/v1/stats/children` (nation, provinces
//!    01/79/48 and random ones) over keep-alive connections: p50/p99 per
//!    endpoint, answered from rollup cells by a running `ispeed serve`.
//! 2. Answers the same questions exactly from raw rows:
//!    `Store::counted_values` for the month (one scan), then filter, sort
//!    and take nearest-rank quantiles. The cost of one exact answer is the
//!    scan plus its own filter/sort (there is no index by unit: every exact
//!    question reads the month).
//!    With `--exact-source postgres --store URL` (a PostgreSQL store) each
//!    question is instead one SQL query over the raw rows, timed on its
//!    own: `percentile_cont(0.5)` per unit and ISP (the reference the
//!    issue names) and `percentile_disc(0.5)` (nearest rank, for the
//!    cross-check) in the same statement.
//! 3. Cross-checks every API row (all ISPs and each ISP) against the exact
//!    figures: n must match exactly, medians within 1 % relative.
//!
//! Prints human-readable lines on stderr and one JSON line on stdout.

#[path = "support/exit.rs"]
mod exit;
#[path = "support/http1.rs"]
mod http1;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use ispeed_collector::generate::Rng;
use ispeed_collector::period::Month;
use ispeed_collector::state::load_enricher;
use ispeed_collector::store::CountedValues;
use ispeed_collector::RawConfig;
use serde_json::Value;

struct Args {
    url: String,
    data: PathBuf,
    period: String,
    requests: usize,
    children_requests: usize,
    concurrency: usize,
    random_provinces: usize,
    random_wards: usize,
    seed: u64,
    skip_exact: bool,
    /// "scan": the SQLite rows by a sequential table scan; "postgres": one
    /// SQL query per question on the store at `store`.
    exact_source: String,
    store: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        url: String::new(),
        data: PathBuf::new(),
        period: "2026-10".into(),
        requests: 2000,
        children_requests: 500,
        concurrency: 1,
        random_provinces: 5,
        random_wards: 40,
        seed: 7,
        skip_exact: false,
        exact_source: "scan".into(),
        store: String::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--skip-exact" {
            args.skip_exact = true;
            continue;
        }
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--url" => args.url = value()?,
            "--data" => args.data = value()?.into(),
            "--period" => args.period = value()?,
            "--requests" => args.requests = num(value()?)?,
            "--children-requests" => args.children_requests = num(value()?)?,
            "--concurrency" => args.concurrency = num(value()?)?.max(1),
            "--random-provinces" => args.random_provinces = num(value()?)?,
            "--random-wards" => args.random_wards = num(value()?)?,
            "--seed" => args.seed = num(value()?)? as u64,
            "--exact-source" => args.exact_source = value()?,
            "--store" => args.store = value()?,
            _ => {
                return Err(
                    "usage: query_bench --url URL --data DIR [--period YYYY-MM] [--requests N] \
                            [--children-requests N] [--concurrency C] [--random-provinces K] \
                            [--random-wards K] [--seed S] [--skip-exact] [--exact-source scan|postgres] [--store URL]"
                        .into(),
                )
            }
        }
    }
    let needs_data = !args.skip_exact && args.exact_source == "scan";
    if args.url.is_empty() || (args.data.as_os_str().is_empty() && needs_data) {
        return Err("--url and --data are required".into());
    }
    if args.exact_source == "postgres" && args.store.is_empty() {
        return Err("--exact-source postgres needs --store URL".into());
    }
    Ok(args)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Endpoint {
    Stats,
    Children,
}

#[derive(Debug, Clone)]
struct Question {
    endpoint: Endpoint,
    /// "nation", "province" or "ward".
    level: &'static str,
    code: String,
}

impl Question {
    fn path(&self, period: &str) -> String {
        let base = match self.endpoint {
            Endpoint::Stats => "/api/v1/stats",
            Endpoint::Children => "/api/v1/stats/children",
        };
        match self.level {
            "nation" => format!("{base}?level=nation&period={period}"),
            level => format!("{base}?level={level}&code={}&period={period}", self.code),
        }
    }
    fn label(&self) -> String {
        let e = match self.endpoint {
            Endpoint::Stats => "stats",
            Endpoint::Children => "children",
        };
        format!("{e} {} {}", self.level, self.code)
    }
}

/// Exact figures of one unit and ISP (or all ISPs).
#[derive(Debug, Default, Clone)]
struct Exact {
    n: u64,
    download: Vec<f64>,
    upload: Vec<f64>,
    latency: Vec<f64>,
}

impl Exact {
    fn add(&mut self, v: &CountedValues) {
        self.n += 1;
        let push = |vec: &mut Vec<f64>, x: Option<f64>| {
            if let Some(x) = x.filter(|x| x.is_finite()) {
                vec.push(x.max(0.0));
            }
        };
        push(&mut self.download, v.download_mbps);
        push(&mut self.upload, v.upload_mbps);
        push(&mut self.latency, v.latency_ms);
    }
    /// Sorts the values and returns nearest-rank medians (download, upload, latency).
    fn finish(mut self) -> (u64, [Option<f64>; 3]) {
        let median = |v: &mut Vec<f64>| {
            if v.is_empty() {
                return None;
            }
            v.sort_unstable_by(f64::total_cmp);
            Some(http1::percentile(v, 0.5))
        };
        let d = median(&mut self.download);
        let u = median(&mut self.upload);
        let l = median(&mut self.latency);
        (self.n, [d, u, l])
    }
}

/// unit code → ISP ("all" or an id) → exact figures.
type ExactAnswer = BTreeMap<String, BTreeMap<String, (u64, [Option<f64>; 3])>>;

/// Computes one question exactly from the month's counted rows.
fn exact_answer<'a>(rows: &'a [CountedValues], q: &Question) -> ExactAnswer {
    // Which unit (if any) a row belongs to for this question (borrowed: no
    // per-row allocation, so the exact side is not slowed artificially).
    let code = q.code.as_str();
    let unit_of = |v: &'a CountedValues| -> Option<&'a str> {
        match (q.endpoint, q.level) {
            (Endpoint::Stats, "nation") => Some("VN"),
            (Endpoint::Stats, "province") => {
                (v.province_code.as_deref() == Some(code)).then_some("unit")
            }
            (Endpoint::Stats, _) => (v.ward_code.as_deref() == Some(code)).then_some("unit"),
            (Endpoint::Children, "nation") => v.province_code.as_deref(),
            (Endpoint::Children, _) => {
                if v.province_code.as_deref() == Some(code) {
                    v.ward_code.as_deref()
                } else {
                    None
                }
            }
        }
    };
    let mut groups: HashMap<&'a str, HashMap<&'a str, Exact>> = HashMap::new();
    for v in rows {
        if let Some(unit) = unit_of(v) {
            let by_isp = groups.entry(unit).or_default();
            by_isp.entry("all").or_default().add(v);
            by_isp.entry(v.isp.as_str()).or_default().add(v);
        }
    }
    groups
        .into_iter()
        .map(|(unit, by_isp)| {
            let unit = if unit == "unit" {
                q.code.clone()
            } else {
                unit.to_owned()
            };
            (
                unit,
                by_isp
                    .into_iter()
                    .map(|(isp, e)| (isp.to_owned(), e.finish()))
                    .collect(),
            )
        })
        .collect()
}

fn main() -> std::process::ExitCode {
    exit::main_with("query_bench", parse_args, run)
}

fn questions(args: &Args) -> Result<Vec<Question>, String> {
    let config = RawConfig::default()
        .resolve(Path::new("unused"))
        .map_err(|e| e.to_string())?;
    let enricher = load_enricher(&config).map_err(|e| e.to_string())?;
    let units = &enricher.units;
    let provinces: Vec<String> = units.provinces().iter().map(|p| p.code.clone()).collect();
    let wards: Vec<String> = units.wards().iter().map(|w| w.code.clone()).collect();
    let mut rng = Rng::new(args.seed);
    let mut picked_provinces: Vec<String> = ["01", "79", "48"]
        .iter()
        .filter(|c| provinces.iter().any(|p| p == *c))
        .map(|c| c.to_string())
        .collect();
    let mut guard = 0;
    while picked_provinces.len() < 3 + args.random_provinces && guard < 10_000 {
        guard += 1;
        let p = &provinces[rng.below(provinces.len() as u64) as usize];
        if !picked_provinces.contains(p) {
            picked_provinces.push(p.clone());
        }
    }
    let mut qs = vec![Question {
        endpoint: Endpoint::Stats,
        level: "nation",
        code: "VN".into(),
    }];
    for p in &picked_provinces {
        qs.push(Question {
            endpoint: Endpoint::Stats,
            level: "province",
            code: p.clone(),
        });
    }
    for _ in 0..args.random_wards {
        let w = &wards[rng.below(wards.len() as u64) as usize];
        qs.push(Question {
            endpoint: Endpoint::Stats,
            level: "ward",
            code: w.clone(),
        });
    }
    qs.push(Question {
        endpoint: Endpoint::Children,
        level: "nation",
        code: "VN".into(),
    });
    for p in &picked_provinces {
        qs.push(Question {
            endpoint: Endpoint::Children,
            level: "province",
            code: p.clone(),
        });
    }
    Ok(qs)
}

struct Timing {
    latencies: BTreeMap<Endpoint, Vec<f64>>,
    per_question: HashMap<String, Vec<f64>>,
    failures: u64,
    /// One response body per question (from the warm-up), for the cross-check.
    bodies: HashMap<String, Value>,
}

fn time_http(args: &Args, qs: &[Question]) -> Result<Timing, String> {
    let (addr, authority) = http1::parse_url(&args.url).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.concurrency.clamp(1, 4))
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        // Warm-up: every question once, keeping the bodies.
        let mut conn = http1::Conn::new(addr, &authority);
        let mut bodies = HashMap::new();
        for q in qs {
            let response = conn
                .get(&q.path(&args.period))
                .await
                .map_err(|e| e.to_string())?;
            if response.status != 200 {
                return Err(format!(
                    "{} -> HTTP {}: {}",
                    q.path(&args.period),
                    response.status,
                    String::from_utf8_lossy(&response.body)
                ));
            }
            let body: Value = serde_json::from_slice(&response.body).map_err(|e| e.to_string())?;
            bodies.insert(q.label(), body);
        }
        // Timed: a schedule of requests per endpoint, round-robin over that
        // endpoint's questions, interleaved, split across connections.
        let stats: Vec<&Question> = qs
            .iter()
            .filter(|q| q.endpoint == Endpoint::Stats)
            .collect();
        let children: Vec<&Question> = qs
            .iter()
            .filter(|q| q.endpoint == Endpoint::Children)
            .collect();
        let mut schedule: Vec<Question> = Vec::new();
        let total = args.requests + args.children_requests;
        let (mut s, mut c) = (0, 0);
        for i in 0..total {
            // Interleave proportionally.
            let want_children = c < args.children_requests
                && (s >= args.requests || (i * args.children_requests) / total.max(1) >= c);
            if want_children && !children.is_empty() {
                schedule.push(children[c % children.len()].clone());
                c += 1;
            } else if !stats.is_empty() {
                schedule.push(stats[s % stats.len()].clone());
                s += 1;
            }
        }
        let schedule = Arc::new(schedule);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..args.concurrency)
            .map(|_| {
                let (schedule, next, authority) =
                    (schedule.clone(), next.clone(), authority.clone());
                let period = args.period.clone();
                tokio::spawn(async move {
                    let mut conn = http1::Conn::new(addr, &authority);
                    let mut out: Vec<(Endpoint, String, f64, bool)> = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(q) = schedule.get(i) else { break };
                        let path = q.path(&period);
                        let t0 = Instant::now();
                        let ok = matches!(conn.get(&path).await, Ok(r) if r.status == 200);
                        out.push((q.endpoint, q.label(), t0.elapsed().as_secs_f64() * 1e3, ok));
                    }
                    out
                })
            })
            .collect();
        let mut timing = Timing {
            latencies: BTreeMap::new(),
            per_question: HashMap::new(),
            failures: 0,
            bodies,
        };
        for task in tasks {
            for (endpoint, label, ms, ok) in task.await.map_err(|e| e.to_string())? {
                if !ok {
                    timing.failures += 1;
                }
                timing.latencies.entry(endpoint).or_default().push(ms);
                timing.per_question.entry(label).or_default().push(ms);
            }
        }
        for v in timing
            .latencies
            .values_mut()
            .chain(timing.per_question.values_mut())
        {
            v.sort_by(f64::total_cmp);
        }
        Ok(timing)
    })
}

/// (unit, isp) → (n, medians) from an API body.
fn api_rows(q: &Question, body: &Value) -> Vec<(String, String, u64, [Option<f64>; 3])> {
    let mut out = Vec::new();
    let mut take = |unit: String, rows: &Value| {
        for row in rows.as_array().into_iter().flatten() {
            let isp = row["isp"].as_str().unwrap_or("?").to_owned();
            let n = row["n"].as_u64().unwrap_or(0);
            let m = |k: &str| row[k]["median"].as_f64();
            out.push((
                unit.clone(),
                isp,
                n,
                [m("download_mbps"), m("upload_mbps"), m("latency_ms")],
            ));
        }
    };
    match q.endpoint {
        Endpoint::Stats => take(
            body["code"].as_str().unwrap_or("").to_owned(),
            &body["rows"],
        ),
        Endpoint::Children => {
            for child in body["children"].as_array().into_iter().flatten() {
                take(
                    child["code"].as_str().unwrap_or("").to_owned(),
                    &child["rows"],
                );
            }
        }
    }
    out
}

fn run(args: Args) -> Result<bool, String> {
    let qs = questions(&args)?;
    eprintln!(
        "query_bench: {} questions ({} stats, {} children), {} + {} timed requests, concurrency {}",
        qs.len(),
        qs.iter().filter(|q| q.endpoint == Endpoint::Stats).count(),
        qs.iter()
            .filter(|q| q.endpoint == Endpoint::Children)
            .count(),
        args.requests,
        args.children_requests,
        args.concurrency
    );
    let started = Instant::now();
    let timing = time_http(&args, &qs)?;
    let http_s = started.elapsed().as_secs_f64();
    let pct = |e: Endpoint, q: f64| {
        timing
            .latencies
            .get(&e)
            .map_or(f64::NAN, |v| http1::percentile(v, q))
    };
    let (s50, s99, c50, c99) = (
        pct(Endpoint::Stats, 0.5),
        pct(Endpoint::Stats, 0.99),
        pct(Endpoint::Children, 0.5),
        pct(Endpoint::Children, 0.99),
    );
    eprintln!(
        "query_bench: HTTP ({http_s:.1} s): stats p50 {s50:.2} ms p99 {s99:.2} ms; \
         children p50 {c50:.2} ms p99 {c99:.2} ms; failures {}",
        timing.failures
    );
    // Slowest questions (by their own p50), for the report.
    let mut slow: Vec<(f64, f64, String)> = timing
        .per_question
        .iter()
        .map(|(label, v)| {
            (
                http1::percentile(v, 0.5),
                http1::percentile(v, 0.99),
                label.clone(),
            )
        })
        .collect();
    slow.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (p50, p99, label) in slow.iter().take(6) {
        eprintln!("query_bench:   slowest: {label:<28} p50 {p50:.2} ms p99 {p99:.2} ms");
    }

    let report = serde_json::json!({
        "questions": qs.len(),
        "requests": { "stats": timing.latencies.get(&Endpoint::Stats).map_or(0, Vec::len),
                      "children": timing.latencies.get(&Endpoint::Children).map_or(0, Vec::len) },
        "concurrency": args.concurrency,
        "http_failures": timing.failures,
        "stats_p50_ms": s50, "stats_p99_ms": s99,
        "children_p50_ms": c50, "children_p99_ms": c99,
        "slowest": slow.iter().take(6).map(|(p50, p99, l)| serde_json::json!({"q": l, "p50_ms": p50, "p99_ms": p99})).collect::<Vec<_>>(),
    });
    if args.skip_exact {
        println!("{report}");
        return Ok(timing.failures == 0);
    }

    // Exact answers from raw rows.
    let month =
        Month::parse(&args.period).ok_or("--period must be YYYY-MM for the exact reference")?;
    let first_day = month.first_day();
    let last_day = Month(month.0 + 1).first_day() - 1;
    if args.exact_source == "postgres" {
        let exact = postgres_exact(&args.store, first_day, last_day, &qs)?;
        return finish(
            report,
            &timing,
            &qs,
            s50,
            c50,
            exact,
            0,
            0.0,
            &args.exact_source,
        );
    }
    let t0 = Instant::now();
    let rows = match args.exact_source.as_str() {
        // The running `serve` owns the store (one process per store): the
        // reference reads the same rows as `Store::counted_values` through
        // its own read-only connection.
        "scan" => scan_counted(&args.data, first_day, last_day).map_err(|e| e.to_string())?,
        other => return Err(format!("--exact-source must be scan, not {other}")),
    };
    let scan_s = t0.elapsed().as_secs_f64();
    eprintln!(
        "query_bench: exact ({}): read {} counted rows of {} in {scan_s:.2} s",
        args.exact_source,
        rows.len(),
        args.period
    );
    let exact: Vec<(ExactAnswer, f64)> = qs
        .iter()
        .map(|q| {
            let t = Instant::now();
            let exact = exact_answer(&rows, q);
            (exact, (scan_s + t.elapsed().as_secs_f64()) * 1e3)
        })
        .collect();
    let source = args.exact_source.clone();
    finish(
        report,
        &timing,
        &qs,
        s50,
        c50,
        exact,
        rows.len(),
        scan_s,
        &source,
    )
}

/// Cross-checks the API's answers against the exact ones and prints the
/// report; `exact` holds each question's answer and its cost in ms.
#[allow(clippy::too_many_arguments)]
fn finish(
    mut report: Value,
    timing: &Timing,
    qs: &[Question],
    s50: f64,
    c50: f64,
    exact: Vec<(ExactAnswer, f64)>,
    exact_rows: usize,
    scan_s: f64,
    exact_source: &str,
) -> Result<bool, String> {
    let mut exact_ms: BTreeMap<Endpoint, Vec<f64>> = BTreeMap::new();
    let mut max_rel = [0.0f64; 3];
    let mut worst: Option<(f64, String)> = None;
    let mut compared = 0u64;
    let mut n_mismatch = 0u64;
    let mut missing = 0u64;
    for (q, (exact, ms)) in qs.iter().zip(exact) {
        exact_ms.entry(q.endpoint).or_default().push(ms);
        let Some(body) = timing.bodies.get(&q.label()) else {
            continue;
        };
        for (unit, isp, n, medians) in api_rows(q, body) {
            let reference = exact.get(&unit).and_then(|m| m.get(&isp));
            let Some((exact_n, exact_medians)) = reference else {
                if n != 0 {
                    missing += 1;
                    if missing <= 5 {
                        eprintln!(
                            "query_bench: {} {unit} {isp}: API n={n}, no exact rows",
                            q.label()
                        );
                    }
                }
                continue;
            };
            if n != *exact_n {
                n_mismatch += 1;
                if n_mismatch <= 5 {
                    eprintln!(
                        "query_bench: {} {unit} {isp}: API n={n}, exact n={exact_n}",
                        q.label()
                    );
                }
            }
            for k in 0..3 {
                match (medians[k], exact_medians[k]) {
                    (Some(a), Some(e)) => {
                        compared += 1;
                        let rel = if e == 0.0 {
                            (a - e).abs()
                        } else {
                            ((a - e) / e).abs()
                        };
                        if rel > max_rel[k] {
                            max_rel[k] = rel;
                        }
                        if worst.as_ref().is_none_or(|(w, _)| rel > *w) {
                            worst = Some((
                                rel,
                                format!(
                                    "{} unit {unit} isp {isp} metric {k}: api {a} exact {e}",
                                    q.label()
                                ),
                            ));
                        }
                    }
                    (None, None) => {}
                    (a, e) => {
                        n_mismatch += 1;
                        eprintln!(
                            "query_bench: {} {unit} {isp} metric {k}: api {a:?} exact {e:?}",
                            q.label()
                        );
                    }
                }
            }
        }
    }
    for v in exact_ms.values_mut() {
        v.sort_by(f64::total_cmp);
    }
    let exact_med = |e: Endpoint| {
        exact_ms
            .get(&e)
            .map_or(f64::NAN, |v| http1::percentile(v, 0.5))
    };
    let (es, ec) = (exact_med(Endpoint::Stats), exact_med(Endpoint::Children));
    let max_rel_all = max_rel.iter().copied().fold(0.0, f64::max);
    eprintln!(
        "query_bench: exact per question (scan + filter/sort): stats median {es:.0} ms, children median {ec:.0} ms; \
         ratio exact/rollup p50: stats {:.0}x, children {:.0}x",
        es / s50,
        ec / c50
    );
    eprintln!(
        "query_bench: cross-check: {compared} medians compared, max relative error {:.4} % \
         (download {:.4} %, upload {:.4} %, latency {:.4} %), n mismatches {n_mismatch}, rows missing {missing}",
        max_rel_all * 100.0,
        max_rel[0] * 100.0,
        max_rel[1] * 100.0,
        max_rel[2] * 100.0
    );
    if let Some((_, w)) = &worst {
        eprintln!("query_bench:   worst: {w}");
    }
    let obj = report.as_object_mut().expect("object");
    obj.insert("exact_rows".into(), exact_rows.into());
    obj.insert("exact_scan_s".into(), scan_s.into());
    obj.insert("exact_source".into(), exact_source.into());
    obj.insert("exact_stats_ms".into(), es.into());
    obj.insert("exact_children_ms".into(), ec.into());
    obj.insert("ratio_stats".into(), (es / s50).into());
    obj.insert("ratio_children".into(), (ec / c50).into());
    obj.insert("medians_compared".into(), compared.into());
    obj.insert("max_rel_err".into(), max_rel_all.into());
    obj.insert("max_rel_err_by_metric".into(), serde_json::json!(max_rel));
    obj.insert("n_mismatch".into(), n_mismatch.into());
    obj.insert("missing".into(), missing.into());
    println!("{report}");
    Ok(timing.failures == 0
        && n_mismatch == 0
        && missing == 0
        && compared > 0
        && max_rel_all <= 0.01)
}

/// The rows `Store::counted_values` returns, read by a sequential scan of
/// the results table (`NOT INDEXED`): for a whole month the day index only
/// turns the read into random row lookups.
fn scan_counted(
    data: &Path,
    first_day: i32,
    last_day: i32,
) -> rusqlite::Result<Vec<CountedValues>> {
    let connection = rusqlite::Connection::open_with_flags(
        data.join("ispeed.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let mut statement = connection.prepare(
        "SELECT day, province_code, ward_code, isp, access_kind, ip_version,
                device_hash, download_mbps, upload_mbps, latency_ms
         FROM results NOT INDEXED WHERE counted = 1 AND day BETWEEN ?1 AND ?2",
    )?;
    let mut rows = statement.query([first_day, last_day])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let hash: Vec<u8> = row.get(6)?;
        out.push(CountedValues {
            day: row.get(0)?,
            province_code: row.get(1)?,
            ward_code: row.get(2)?,
            isp: row.get(3)?,
            access: row.get(4)?,
            ip_version: row.get(5)?,
            device_hash: hash.try_into().unwrap_or([0; 16]),
            download_mbps: row.get(7)?,
            upload_mbps: row.get(8)?,
            latency_ms: row.get(9)?,
        });
    }
    Ok(out)
}

/// Each question answered by PostgreSQL from the raw rows, timed alone:
/// counted rows of the month, grouped by unit and ISP (and all ISPs).
fn postgres_exact(
    store: &str,
    first_day: i32,
    last_day: i32,
    qs: &[Question],
) -> Result<Vec<(ExactAnswer, f64)>, String> {
    let location = ispeed_collector::StoreLocation::parse(store).map_err(|e| e.to_string())?;
    let ispeed_collector::StoreLocation::Postgres { url, schema } = location else {
        return Err("--store must be a postgres:// URL".into());
    };
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
    if let Some(schema) = &schema {
        config.options(format!("-c search_path={schema}"));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let mut out = Vec::with_capacity(qs.len());
        for q in qs {
            let (unit, filter) = match (q.endpoint, q.level) {
                (Endpoint::Stats, "nation") => ("'VN'", String::new()),
                (Endpoint::Stats, "province") => {
                    ("province_code", format!("AND province_code = '{}'", q.code))
                }
                (Endpoint::Stats, _) => ("ward_code", format!("AND ward_code = '{}'", q.code)),
                (Endpoint::Children, "nation") => {
                    ("province_code", "AND province_code IS NOT NULL".to_owned())
                }
                (Endpoint::Children, _) => (
                    "ward_code",
                    format!("AND province_code = '{}' AND ward_code IS NOT NULL", q.code),
                ),
            };
            let metric = |m: &str| {
                format!(
                    "percentile_cont(0.5) WITHIN GROUP (ORDER BY greatest({m}, 0)),
                     percentile_disc(0.5) WITHIN GROUP (ORDER BY greatest({m}, 0))"
                )
            };
            let sets = if unit == "'VN'" {
                "(), (isp)".to_owned()
            } else {
                format!("({unit}), ({unit}, isp)")
            };
            let sql = format!(
                "SELECT {unit} AS unit, coalesce(isp, 'all'), count(*), {}, {}, {}
                 FROM results WHERE counted AND day BETWEEN {first_day} AND {last_day} {filter}
                 GROUP BY GROUPING SETS ({sets})",
                metric("download_mbps"),
                metric("upload_mbps"),
                metric("latency_ms")
            );
            let t = Instant::now();
            let rows = client
                .query(&sql, &[])
                .await
                .map_err(|e| format!("{e:?}"))?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let mut answer: ExactAnswer = BTreeMap::new();
            for row in rows {
                let unit: Option<String> = row.get(0);
                let Some(unit) = unit else { continue };
                let isp: String = row.get(1);
                let n: i64 = row.get(2);
                // Nearest rank (percentile_disc) for the cross-check; the
                // interpolated percentile_cont is computed (and paid for) too.
                let medians = [row.get(4), row.get(6), row.get(8)];
                answer
                    .entry(unit)
                    .or_default()
                    .insert(isp, (n as u64, medians));
            }
            out.push((answer, ms));
        }
        Ok(out)
    })
}
