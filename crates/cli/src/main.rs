//! The `ispeed` command: thin glue over the library crates. It parses
//! arguments, sets up logging and a runtime, calls into `ispeed-server` or
//! `ispeed-client`, renders results and maps failures to exit codes. No
//! measurement logic lives here.

mod admin;
mod loadgen;
mod render;
mod serve;
mod submit;

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ispeed_client::{ClientError, Family, SelectOptions, TestOptions};
use ispeed_proto::receipt::{decode_public_key, Receipt};
use tokio_util::sync::CancellationToken;

/// Exit codes of `ispeed test` (documented in the README).
const EXIT_UNREACHABLE: u8 = 3;
const EXIT_TEST_FAILED: u8 = 4;

#[derive(Parser)]
#[command(
    name = "ispeed",
    version,
    about = "Open internet speed measurement: test point, client and verifier"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector with a local test point: the embedded default.
    Serve(serve::ServeArgs),
    /// Write synthetic signed results into a store (or submit them over HTTP).
    Generate(serve::GenerateArgs),
    /// Recompute every rollup cell from the stored results.
    RebuildRollups(serve::RebuildArgs),
    /// Write a month's report (a province's wards, or the nation's provinces).
    Report(serve::ReportArgs),
    /// Versions of the administrative units: load a new one, list them.
    Units(serve::UnitsArgs),
    /// Copy an embedded (SQLite) store into PostgreSQL and verify the copy.
    Migrate(serve::MigrateArgs),
    /// Run a test point.
    Server(ServerArgs),
    /// Run a speed test against a test point.
    Test(TestArgs),
    /// Verify a receipt offline with a test point's public key.
    VerifyReceipt(VerifyArgs),
    /// Run many concurrent tests against one test point (benchmarks).
    Loadgen(loadgen::LoadgenArgs),
    /// Send results spooled by earlier tests to a collector.
    Submit(submit::SubmitArgs),
    /// List the test points a collector offers, with measured RTTs.
    Servers(admin::ServersArgs),
    /// Administer a collector (test points: list, approve, revoke).
    Admin(admin::AdminArgs),
}

#[derive(Args)]
struct ServerArgs {
    /// Address to listen on; repeat for several (IPv4 and IPv6).
    #[arg(long = "listen", value_name = "ADDR")]
    listen: Vec<SocketAddr>,
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Signing key file (created with mode 0600 if missing).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Test point id (default from the config, else "local").
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// Register with this collector and send it heartbeats.
    #[arg(long, value_name = "URL")]
    collector: Option<String>,
    /// Admit sessions only with a collector's access token.
    #[arg(long, value_enum)]
    access: Option<AccessArg>,
    /// Sessions admitted at once.
    #[arg(long, value_name = "N")]
    max_sessions: Option<u32>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum AccessArg {
    Open,
    TokenRequired,
}

#[derive(Args)]
struct TestArgs {
    /// Test point URL, e.g. http://127.0.0.1:8080 (or --collector, or both)
    #[arg(long, value_name = "URL", required_unless_present = "collector")]
    server: Option<String>,
    #[command(flatten)]
    report: submit::ReportArgs,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Use IPv4 only.
    #[arg(short = '4', conflicts_with = "ipv6")]
    ipv4: bool,
    /// Use IPv6 only.
    #[arg(short = '6')]
    ipv6: bool,
    /// A fixed number of streams per direction (default: adaptive, up to 16).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=16))]
    streams: Option<u32>,
    /// Longest time per direction, in seconds.
    #[arg(long, default_value_t = ispeed_proto::consts::DEFAULT_MAX_SECONDS)]
    max_seconds: f64,
    /// Skip the download.
    #[arg(long)]
    no_download: bool,
    /// Skip the upload.
    #[arg(long)]
    no_upload: bool,
    /// Access token for a test point that requires one (normally fetched
    /// from the collector's locate).
    #[arg(long, value_name = "TOKEN")]
    access_token: Option<String>,
    /// With --collector and no --server: how long to keep looking for a test
    /// point with room (full ones answer 503), in seconds.
    #[arg(long, default_value_t = 30.0, value_name = "S")]
    wait_seconds: f64,
    /// With --collector and no --server: time for measuring the candidates'
    /// RTTs; 0 keeps the collector's order.
    #[arg(long, default_value_t = ispeed_proto::registry::SELECTION_PROBE_BUDGET_MS, value_name = "MS")]
    probe_ms: u64,
}

#[derive(Args)]
struct VerifyArgs {
    /// The test point's public key (base64url, base64 or hex).
    #[arg(long, value_name = "PUBKEY")]
    key: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_output = matches!(&cli.command, Command::Test(t) if t.json)
        || matches!(&cli.command, Command::Loadgen(l) if l.json)
        || matches!(&cli.command, Command::Submit(s) if s.json);
    init_logging(json_output);
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ISPEED_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => serve::serve(args, runtime()?),
        Command::Generate(args) => serve::generate(args, runtime()?),
        Command::RebuildRollups(args) => serve::rebuild(args, runtime()?),
        Command::Report(args) => serve::report(args, runtime()?),
        Command::Units(args) => serve::units(args, runtime()?),
        Command::Migrate(args) => serve::migrate(args, runtime()?),
        Command::Server(args) => server(args),
        Command::Test(args) => test(args),
        Command::VerifyReceipt(args) => verify(args),
        Command::Loadgen(args) => runtime()?.block_on(loadgen::run(args)),
        Command::Submit(args) => submit::run(args, runtime()?),
        Command::Servers(args) => runtime()?.block_on(admin::servers(args)),
        Command::Admin(args) => runtime()?.block_on(admin::run(args)),
    }
}

fn server(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let mut raw = match &args.config {
        Some(path) => ispeed_server::RawConfig::from_file(path)?,
        None => ispeed_server::RawConfig::default(),
    };
    if !args.listen.is_empty() {
        raw.listen = Some(args.listen);
    }
    if let Some(key) = args.key {
        raw.key_file = Some(key);
    }
    if let Some(id) = args.id {
        raw.test_point_id = Some(id);
    }
    if let Some(collector) = args.collector {
        raw.collector = Some(collector);
    }
    if let Some(access) = args.access {
        raw.access = Some(match access {
            AccessArg::Open => ispeed_proto::registry::AccessMode::Open,
            AccessArg::TokenRequired => ispeed_proto::registry::AccessMode::TokenRequired,
        });
    }
    if let Some(n) = args.max_sessions {
        raw.max_sessions = Some(n);
    }
    let config = raw.resolve()?;
    let runtime = runtime()?;
    runtime.block_on(async {
        let listeners = if config.listen == ispeed_server::config::default_listen() {
            ispeed_server::bind_dual_stack(&config.listen)
        } else {
            ispeed_server::bind(&config.listen)
        };
        let listeners =
            listeners.with_context(|| format!("cannot listen on {:?}", config.listen))?;
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            signal.cancel();
        });
        ispeed_server::run(listeners, config, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let reporter = match submit::Reporter::from_args(&args.report)? {
        Ok(reporter) => reporter,
        Err(code) => return Ok(code),
    };
    let mut options = TestOptions::new(args.server.clone().unwrap_or_default());
    options.family = if args.ipv4 {
        Some(Family::V4)
    } else if args.ipv6 {
        Some(Family::V6)
    } else {
        None
    };
    options.streams = args.streams;
    if !(args.max_seconds.is_finite() && args.max_seconds > 0.0) {
        eprintln!("error: --max-seconds must be a positive number");
        return Ok(ExitCode::from(2));
    }
    options.max_seconds = args.max_seconds;
    if !(args.wait_seconds.is_finite() && args.wait_seconds >= 0.0) {
        eprintln!("error: --wait-seconds must be a non-negative number");
        return Ok(ExitCode::from(2));
    }
    options.download = !args.no_download;
    options.upload = !args.no_upload;
    options.access_token = args.access_token.clone();
    let runtime = runtime()?;
    let (outcome, delivery, selection) = runtime.block_on(async {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        // JSON keeps stdout to one object; the choice of test point still
        // goes to stderr, so a failover is never silent.
        let progress = if args.json {
            tokio::spawn(render::notices(receiver))
        } else {
            tokio::spawn(render::progress(receiver))
        };
        let events = Some(sender);
        let mut expected_key = None;
        let mut selection = None;
        let result = match (&reporter, &args.server) {
            (Some(reporter), None) => {
                reporter.deliver_pending_quietly().await;
                let mut select = SelectOptions::new(reporter.collector());
                select.query = reporter.locate_query(options.family);
                select.admission_budget = std::time::Duration::from_secs_f64(args.wait_seconds);
                select.probe_budget = std::time::Duration::from_millis(args.probe_ms);
                ispeed_client::locate_and_run(&options, &select, events)
                    .await
                    .map(|(result, chosen)| {
                        selection = Some(chosen);
                        result
                    })
            }
            (reporter, Some(_)) => {
                if let Some(reporter) = reporter {
                    reporter.deliver_pending_quietly().await;
                    if options.access_token.is_none() {
                        if let Some((token, key)) = reporter.token_for(&options.server).await {
                            options.access_token = Some(token);
                            expected_key = Some(key);
                        }
                    }
                }
                ispeed_client::run_test(&options, events).await
            }
            (None, None) => unreachable!("clap requires --server or --collector"),
        };
        let _ = progress.await;
        let delivery = match (&result, &reporter) {
            (Ok(result), Some(reporter)) => {
                Some(reporter.deliver(result, expected_key.as_deref()).await)
            }
            _ => None,
        };
        (result, delivery, selection)
    });
    // Do not wait for stray connection tasks of a dead test point.
    runtime.shutdown_background();
    match outcome {
        Ok(result) => {
            if args.json {
                submit::print_json(&result, delivery.as_ref(), selection.as_ref())?;
            } else {
                render::table(&result);
                if let Some(selection) = &selection {
                    render::selection(selection);
                }
                delivery.iter().for_each(submit::print_human);
            }
            Ok(submit::exit_code(delivery.as_ref()))
        }
        Err(error) => {
            eprintln!("error: {error}");
            Ok(ExitCode::from(exit_code(&error)))
        }
    }
}

fn exit_code(error: &ClientError) -> u8 {
    if error.is_unreachable() {
        EXIT_UNREACHABLE
    } else {
        EXIT_TEST_FAILED
    }
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let key = decode_public_key(&args.key).context("--key is not an Ed25519 public key")?;
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("cannot read stdin")?;
    let compact = extract_receipt(&input)?;
    match Receipt::parse(&compact).and_then(|r| r.verify(&key)) {
        Ok(payload) => {
            println!("{}", serde_json::to_string_pretty(&payload)?);
            eprintln!(
                "receipt verified: session {} at test point {}",
                payload.session_id, payload.test_point_id
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("receipt NOT verified: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Accepts the compact receipt alone, as a JSON string, or inside a JSON
/// object with a `receipt` field (such as `ispeed test --json` output).
fn extract_receipt(input: &str) -> anyhow::Result<String> {
    let trimmed = input.trim();
    match serde_json::from_str::<serde_json::Value>(trimmed) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        Ok(serde_json::Value::Object(map)) => map
            .get("receipt")
            .and_then(|r| r.as_str())
            .map(str::to_owned)
            .context("JSON input has no \"receipt\" string"),
        _ => Ok(trimmed.to_owned()),
    }
}
