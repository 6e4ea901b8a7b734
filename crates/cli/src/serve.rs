//! `ispeed serve`, `ispeed generate` and `ispeed rebuild-rollups`: glue
//! over `ispeed-collector`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use ispeed_collector::generate::{generate_into_store, Generator};
use ispeed_collector::period::Month;
use ispeed_collector::state::load_enricher;
use ispeed_collector::{CollectorConfig, ServeConfig};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// Where `serve` keeps its data unless told otherwise.
const DEFAULT_DATA_DIR: &str = "ispeed-data";
/// `serve` listens here unless told otherwise: local only, so a newcomer
/// exposes nothing by accident.
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

#[derive(Args)]
pub struct ServeArgs {
    /// Address for the API, the web pages and the local test point; repeat for several.
    #[arg(long = "listen", value_name = "ADDR")]
    listen: Vec<SocketAddr>,
    /// Data directory (SQLite database, keys, archived reports).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Store URL: sqlite:DIR (the default, under --data) or
    /// postgres://user@host:port/db[?schema=NAME].
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// A read replica of the PostgreSQL store for statistics reads
    /// (answers then trail the primary by about a second).
    #[arg(long, value_name = "URL", requires = "store")]
    store_replica: Option<String>,
    /// TOML configuration file (see README).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Give the local test point its own address(es) instead of sharing --listen.
    #[arg(long = "test-listen", value_name = "ADDR")]
    test_listen: Vec<SocketAddr>,
    /// Run the collector without a local test point.
    #[arg(long)]
    no_test_point: bool,
}

/// The serve configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeFile {
    listen: Option<Vec<SocketAddr>>,
    test_listen: Option<Vec<SocketAddr>>,
    #[serde(default)]
    collector: ispeed_collector::RawConfig,
    test_point: Option<ispeed_server::RawConfig>,
}

fn read_file(path: Option<&Path>) -> anyhow::Result<ServeFile> {
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))
        }
        None => Ok(ServeFile::default()),
    }
}

fn collector_config(
    file: &ServeFile,
    data: Option<PathBuf>,
    store: Option<String>,
) -> anyhow::Result<CollectorConfig> {
    let mut raw = file.collector.clone();
    if let Some(data) = data {
        raw.data = Some(data);
    }
    if let Some(store) = store {
        raw.store = Some(store);
    }
    Ok(raw.resolve(Path::new(DEFAULT_DATA_DIR))?)
}

pub fn serve(args: ServeArgs, runtime: tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let mut file = read_file(args.config.as_deref())?;
    if let Some(replica) = args.store_replica {
        file.collector.store_replica = Some(replica);
    }
    let collector = collector_config(&file, args.data, args.store)?;
    let listen = if !args.listen.is_empty() {
        args.listen
    } else {
        file.listen
            .clone()
            .unwrap_or_else(|| vec![DEFAULT_LISTEN.parse().expect("valid address")])
    };
    let test_point = if args.no_test_point {
        None
    } else {
        let mut raw = file.test_point.clone().unwrap_or_default();
        raw.key_file
            .get_or_insert_with(|| collector.data.join("test-point.key"));
        Some(raw.resolve()?)
    };
    let test_listen = if args.test_listen.is_empty() {
        file.test_listen.clone().unwrap_or_default()
    } else {
        args.test_listen
    };
    std::fs::create_dir_all(&collector.data)
        .with_context(|| format!("cannot create {}", collector.data.display()))?;
    let config = ServeConfig {
        collector,
        test_point,
        test_listen,
    };
    runtime.block_on(async {
        let listeners =
            ispeed_server::bind(&listen).with_context(|| format!("cannot listen on {listen:?}"))?;
        for listener in &listeners {
            if let Ok(address) = listener.local_addr() {
                eprintln!(
                    "ispeed serve: http://{address}/  (API under /api/v1, test point under /v1)"
                );
            }
        }
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            crate::wait_for_signal().await;
            signal.cancel();
        });
        ispeed_collector::run(listeners, config, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Month the results fall in (YYYY-MM, Vietnam time).
    #[arg(long, value_name = "YYYY-MM")]
    month: String,
    /// How many results to generate.
    #[arg(long)]
    samples: u64,
    /// Same seed, same data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Data directory of the store to write into (as `serve --data`).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Store URL: sqlite:DIR (the default, under --data) or
    /// postgres://user@host:port/db[?schema=NAME].
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// TOML configuration file (as `serve --config`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Submit over HTTP to this collector instead (receipts are then dated now;
    /// the collector must approve the key printed by --print-key).
    #[arg(long, value_name = "URL")]
    collector: Option<String>,
    /// Concurrent submissions with --collector.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Print the synthetic test point's public key for this seed and exit.
    #[arg(long)]
    print_key: bool,
}

pub fn generate(args: GenerateArgs, runtime: tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let month = Month::parse(&args.month).context("--month must be YYYY-MM")?;
    if args.print_key {
        let key = ispeed_collector::generate::synthetic_key(args.seed);
        println!(
            "{}",
            ispeed_proto::receipt::encode_public_key(&key.verifying_key())
        );
        return Ok(ExitCode::SUCCESS);
    }
    let file = read_file(args.config.as_deref())?;
    let config = collector_config(&file, args.data, args.store)?;
    let enricher = Arc::new(load_enricher(&config)?);
    let generator = Arc::new(Generator::new(args.seed, month, args.samples, &enricher));
    let started = Instant::now();
    if let Some(url) = args.collector {
        return runtime.block_on(submit_over_http(url, generator, args.concurrency.max(1)));
    }
    runtime.block_on(async {
        let store = ispeed_collector::open_store(&config).await?;
        let report = generate_into_store(store, enricher, generator, |done| {
            if done % 100_000 == 0 {
                eprintln!("generate: {done} results");
            }
        })
        .await?;
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "{}",
            serde_json::json!({
                "created": report.created,
                "existing": report.existing,
                "counted": report.counted,
                "implausible": report.implausible,
                "seconds": elapsed,
                "data": config.data,
            })
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// Submits every sample over HTTP with `concurrency` workers and prints
/// what was accepted per second.
async fn submit_over_http(
    url: String,
    generator: Arc<Generator>,
    concurrency: usize,
) -> anyhow::Result<ExitCode> {
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let created = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (url, generator) = (url.clone(), generator.clone());
            let (next, failed, created) = (next.clone(), failed.clone(), created.clone());
            tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= generator.samples() {
                        break;
                    }
                    let submission = generator.sample(index, Some(ispeed_client::submit::now_ms()));
                    match ispeed_client::submit::submit(&url, &submission).await {
                        Ok(done) => {
                            created.fetch_add(u64::from(done.created), Ordering::Relaxed);
                        }
                        Err(error) => {
                            if failed.fetch_add(1, Ordering::Relaxed) < 5 {
                                eprintln!("generate: submission {index} failed: {error}");
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let accepted = created.load(Ordering::Relaxed);
    let failed = failed.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "created": accepted,
            "failed": failed,
            "seconds": seconds,
            "results_per_s": accepted as f64 / seconds,
            "concurrency": concurrency,
        })
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[derive(Args)]
pub struct RebuildArgs {
    /// Data directory of the store (as `serve --data`).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Store URL: sqlite:DIR (the default, under --data) or
    /// postgres://user@host:port/db[?schema=NAME].
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// TOML configuration file (as `serve --config`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

pub fn rebuild(args: RebuildArgs, runtime: tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let file = read_file(args.config.as_deref())?;
    let config = collector_config(&file, args.data, args.store)?;
    runtime.block_on(async {
        let started = Instant::now();
        let store = ispeed_collector::open_store(&config).await?;
        let report = store.rebuild_rollups().await?;
        println!(
            "{}",
            serde_json::json!({
                "results": report.results,
                "counted": report.counted,
                "cells": report.cells,
                "seconds": started.elapsed().as_secs_f64(),
            })
        );
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deployment_example_is_a_valid_config() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/collector.toml");
        let file = read_file(Some(&path)).unwrap();
        let config = collector_config(&file, None, None).unwrap();
        assert_eq!(config.data, Path::new("/var/lib/ispeed-collector"));
        assert_eq!(
            config.admin_token_file,
            Path::new("/var/lib/ispeed-collector/admin-token")
        );
        assert!(file.test_point.unwrap().resolve().is_ok());
    }
}

#[derive(Args)]
pub struct ReportArgs {
    /// The month (YYYY-MM, Vietnam time); not in the future.
    #[arg(long, value_name = "YYYY-MM")]
    month: String,
    /// A province's report (2-digit code); the nation's without it.
    #[arg(long, value_name = "CODE")]
    province: Option<String>,
    /// Output format.
    #[arg(long, value_parser = ["csv", "xlsx", "html"], default_value = "csv")]
    format: String,
    /// Data directory of the store (as `serve --data`; not while `serve` runs on it).
    #[arg(long, value_name = "DIR", conflicts_with = "collector")]
    data: Option<PathBuf>,
    /// Store URL (as `serve --store`).
    #[arg(long, value_name = "URL", conflicts_with = "collector")]
    store: Option<String>,
    /// Fetch the report from a running collector instead.
    #[arg(long, value_name = "URL")]
    collector: Option<String>,
    /// TOML configuration file (as `serve --config`: quotas, thresholds).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Write here instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
}

/// `ispeed report`: the month's report from the store (or a running collector).
pub fn report(args: ReportArgs, runtime: tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    use ispeed_collector::report::{build, render, Format};
    let format = Format::parse(&args.format).expect("clap checked the format");
    let bytes = match &args.collector {
        Some(url) => {
            let mut query = format!("month={}&format={}", args.month, args.format);
            if let Some(p) = &args.province {
                query.push_str(&format!("&province={p}"));
            }
            match runtime.block_on(ispeed_client::submit::fetch(
                url.trim_end_matches('/'),
                &format!("/api/v1/reports?{query}"),
            )) {
                Ok(bytes) => bytes.to_vec(),
                Err(error) => {
                    eprintln!("error: {error}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        None => {
            let file = read_file(args.config.as_deref())?;
            let config = collector_config(&file, args.data.clone(), args.store.clone())?;
            let built = runtime.block_on(async {
                let store = ispeed_collector::open_store(&config).await?;
                let state = ispeed_collector::CollectorState::open(config, store).await?;
                let report = build(&state, args.province.as_deref(), &args.month).await;
                Ok::<_, anyhow::Error>(report.and_then(|report| render(&state, &report, format)))
            })?;
            match built {
                Ok(bytes) => bytes,
                Err(failure) => {
                    eprintln!("error: {}", failure.message);
                    return Ok(ExitCode::from(2));
                }
            }
        }
    };
    match &args.output {
        Some(path) => std::fs::write(path, &bytes)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            use std::io::Write;
            std::io::stdout().write_all(&bytes)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct UnitsArgs {
    #[command(subcommand)]
    command: UnitsCommand,
}

#[derive(clap::Subcommand)]
enum UnitsCommand {
    /// Load a new version of the administrative units, effective from a
    /// month that has not begun (all files are checked first; a bad file
    /// changes nothing). `serve` must be stopped; it uses the version at its
    /// next start.
    Load {
        /// Data directory of the store.
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// Store URL (as `serve --store`).
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        /// First month the version applies to (YYYY-MM).
        #[arg(long, value_name = "YYYY-MM")]
        effective: String,
        /// A name for the version, e.g. "2026-resolution-1234".
        #[arg(long)]
        name: String,
        /// Wards: CSV in the shared `units.csv` format.
        #[arg(long, value_name = "FILE")]
        units: PathBuf,
        /// Ward boundaries: GeoJSON FeatureCollection with `properties.code`.
        #[arg(long, value_name = "FILE")]
        wards: PathBuf,
        /// Provinces (`code,name,name_en,kind`); the 2025 provinces otherwise.
        #[arg(long, value_name = "FILE")]
        provinces: Option<PathBuf>,
    },
    /// The stored versions.
    List {
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// Store URL (as `serve --store`).
        #[arg(long, value_name = "URL")]
        store: Option<String>,
    },
}

/// `ispeed units`.
pub fn units(args: UnitsArgs, runtime: tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let (data, store) = match &args.command {
        UnitsCommand::Load { data, store, .. } | UnitsCommand::List { data, store } => {
            (data.clone(), store.clone())
        }
    };
    let config = collector_config(&ServeFile::default(), data, store)?;
    runtime.block_on(async {
        let store = ispeed_collector::open_store(&config).await?;
        match args.command {
            UnitsCommand::List { .. } => {
                println!("2025-07  embedded (2025 reform: 34 provinces, 3,321 wards)");
                for v in store.unit_versions().await? {
                    println!(
                        "{}  {}  sha256 {}",
                        Month(v.effective_month),
                        v.name,
                        &v.sha256[..16]
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            UnitsCommand::Load {
                effective,
                name,
                units,
                wards,
                provinces,
                ..
            } => {
                let Some(month) = Month::parse(&effective) else {
                    eprintln!("error: --effective must be YYYY-MM");
                    return Ok(ExitCode::from(2));
                };
                let read = |path: &Path| {
                    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
                };
                let text = |path: &Path| -> anyhow::Result<String> {
                    String::from_utf8(read(path)?)
                        .with_context(|| format!("{} is not UTF-8", path.display()))
                };
                let provinces_csv = match &provinces {
                    Some(path) => text(path)?,
                    None => ispeed_enrich::Units::embedded_provinces_csv().to_owned(),
                };
                let outcome = ispeed_collector::units::load(
                    store.as_ref(),
                    &name,
                    month,
                    provinces_csv,
                    text(&units)?,
                    read(&wards)?,
                    ispeed_collector::api::now_ms(),
                )
                .await;
                match outcome {
                    Ok(version) => {
                        println!(
                            "loaded unit version {name} from {month} (sha256 {})",
                            version.sha256
                        );
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(error) => {
                        eprintln!("error: {error}");
                        Ok(ExitCode::from(2))
                    }
                }
            }
        }
    })
}

#[derive(Args)]
pub struct MigrateArgs {
    /// The embedded store: sqlite:DIR (a `serve --data` directory; `serve`
    /// must be stopped).
    #[arg(long, value_name = "sqlite:DIR")]
    from: String,
    /// An empty PostgreSQL database or schema: postgres://user@host/db[?schema=NAME].
    #[arg(long, value_name = "URL")]
    to: String,
    /// TOML configuration file (as `serve --config`: the heavy-tester cap).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// `ispeed migrate`: SQLite to PostgreSQL, verified.
pub fn migrate(args: MigrateArgs, runtime: tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    use ispeed_collector::StoreLocation;
    let file = read_file(args.config.as_deref())?;
    let config = collector_config(&file, None, None)?;
    let StoreLocation::Sqlite(dir) = StoreLocation::parse(&args.from)? else {
        anyhow::bail!("--from must be sqlite:DIR");
    };
    if !dir.join("ispeed.sqlite3").is_file() {
        anyhow::bail!("no store in {} (expected ispeed.sqlite3)", dir.display());
    }
    let StoreLocation::Postgres { url, schema } = StoreLocation::parse(&args.to)? else {
        anyhow::bail!("--to must be postgres://...");
    };
    let report = runtime.block_on(ispeed_collector::migrate::sqlite_to_postgres(
        &dir,
        &url,
        schema.as_deref(),
        config.heavy_tester_cap,
        |done| {
            if done % 100_000 == 0 {
                eprintln!("migrate: {done} results copied");
            }
        },
    ));
    match report {
        Ok(report) => {
            println!("{}", serde_json::to_string(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("error: {error}");
            Ok(ExitCode::from(2))
        }
    }
}
