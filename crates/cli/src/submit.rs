//! Reporting results to a collector: the `ispeed test` options that describe
//! the test's context, the submit-after-test flow, and `ispeed submit`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use ispeed_client::submit::{now_ms, Settled};
use ispeed_client::{build_submission, Selection, Spool, SubmitError, Target, TestResult};
use ispeed_proto::results::{
    Access, ClientKind, FixedMedium, Location, LocationSource, RadioTech, StoredResult,
};
use serde::Serialize;

/// Exit code of a test that ran but whose result the collector rejected for
/// good, and of `ispeed submit` when any spooled result was rejected.
pub const EXIT_REJECTED: u8 = 5;
const EXIT_USAGE: u8 = 2;

/// `ispeed test` options for reporting to a collector.
#[derive(Args)]
pub struct ReportArgs {
    /// Collector URL, e.g. http://127.0.0.1:8080: without --server, test
    /// against its first test point; always submit the result to it.
    #[arg(long, value_name = "URL")]
    pub collector: Option<String>,
    /// Where the test ran, in WGS 84 degrees.
    #[arg(long, value_name = "LAT,LON", requires = "collector", allow_hyphen_values = true,
          value_parser = parse_location)]
    location: Option<(f64, f64)>,
    /// How --location was obtained.
    #[arg(long, value_enum, default_value_t = SourceArg::Manual, requires = "location")]
    location_source: SourceArg,
    /// Accuracy of --location, in metres.
    #[arg(long, value_name = "M", requires = "location", value_parser = parse_accuracy)]
    location_accuracy: Option<f64>,
    /// The ward the test ran in (5-digit code), when there is no --location.
    #[arg(long, value_name = "CODE", requires = "collector", value_parser = parse_ward)]
    ward: Option<String>,
    /// How the device reaches the internet (default unknown; --radio implies
    /// mobile, --medium fixed).
    #[arg(long, value_enum, requires = "collector")]
    access: Option<AccessArg>,
    /// Mobile radio generation.
    #[arg(long, value_enum, requires = "collector")]
    radio: Option<RadioArg>,
    /// Fixed-access last hop.
    #[arg(long, value_enum, requires = "collector")]
    medium: Option<MediumArg>,
}

#[derive(Clone, Copy, ValueEnum)]
enum SourceArg {
    Gps,
    Network,
    Manual,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AccessArg {
    Mobile,
    Fixed,
    Unknown,
}

#[derive(Clone, Copy, ValueEnum)]
enum RadioArg {
    #[value(name = "2g")]
    G2,
    #[value(name = "3g")]
    G3,
    #[value(name = "4g")]
    G4,
    #[value(name = "5g")]
    G5,
}

#[derive(Clone, Copy, ValueEnum)]
enum MediumArg {
    Wifi,
    Ethernet,
}

fn parse_location(text: &str) -> Result<(f64, f64), String> {
    let (lat, lon) = text
        .split_once(',')
        .ok_or("expected LAT,LON, e.g. 21.0285,105.8542")?;
    let lat: f64 = lat.trim().parse().map_err(|_| "latitude is not a number")?;
    let lon: f64 = lon
        .trim()
        .parse()
        .map_err(|_| "longitude is not a number")?;
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err("latitude must be within ±90 and longitude within ±180".into());
    }
    Ok((lat, lon))
}

fn parse_accuracy(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(m) if m.is_finite() && m >= 0.0 => Ok(m),
        _ => Err("expected a non-negative number of metres".into()),
    }
}

fn parse_ward(text: &str) -> Result<String, String> {
    if text.len() == 5 && text.bytes().all(|b| b.is_ascii_digit()) {
        Ok(text.to_owned())
    } else {
        Err("a ward code is 5 digits".into())
    }
}

/// Everything needed to submit a result, checked before the test runs so a
/// bad option or an unusable config dir never costs a test.
pub struct Reporter {
    collector: String,
    access: Access,
    location: Option<Location>,
    ward: Option<String>,
    device_id: String,
    spool: Spool,
}

/// What happened to a test's result at the collector.
pub struct Delivery {
    pub result_id: String,
    pub submitted: bool,
    pub stored: Option<StoredResult>,
    pub rejected: bool,
}

impl Reporter {
    /// `Ok(None)` without --collector; `Err(exit code)` after printing why
    /// the options are unusable.
    pub fn from_args(args: &ReportArgs) -> anyhow::Result<Result<Option<Reporter>, ExitCode>> {
        let Some(collector) = &args.collector else {
            return Ok(Ok(None));
        };
        if let Err(error) = Target::parse(collector) {
            eprintln!("error: --collector: {error}");
            return Ok(Err(ExitCode::from(EXIT_USAGE)));
        }
        let access = match access(args) {
            Ok(access) => access,
            Err(message) => {
                eprintln!("error: {message}");
                return Ok(Err(ExitCode::from(EXIT_USAGE)));
            }
        };
        let config_dir = ispeed_client::config_dir();
        let device_id = ispeed_client::device_id(&config_dir)
            .with_context(|| format!("cannot set up the device id in {}", config_dir.display()))?;
        Ok(Ok(Some(Reporter {
            collector: collector.trim_end_matches('/').to_owned(),
            access,
            location: args.location.map(|(lat, lon)| Location {
                lat,
                lon,
                accuracy_m: args.location_accuracy,
                source: match args.location_source {
                    SourceArg::Gps => LocationSource::Gps,
                    SourceArg::Network => LocationSource::Network,
                    SourceArg::Manual => LocationSource::Manual,
                },
            }),
            ward: args.ward.clone(),
            device_id,
            spool: Spool::new(&config_dir),
        })))
    }

    /// Sends what earlier runs spooled, respecting their backoff. Quiet: the
    /// outcome is only logged, and a failure here never stops the test.
    pub async fn deliver_pending_quietly(&self) {
        match self
            .spool
            .deliver_pending(&self.collector, now_ms(), false)
            .await
        {
            Ok(report) => tracing::debug!(
                delivered = report.delivered,
                rejected = report.rejected,
                still_pending = report.still_pending,
                "spool delivered"
            ),
            Err(error) => tracing::debug!("cannot read the spool: {error}"),
        }
    }

    pub fn collector(&self) -> &str {
        &self.collector
    }

    /// Locate's query for this test: the position, if given, and the family.
    pub fn locate_query(&self, family: Option<ispeed_client::Family>) -> String {
        let mut parts = Vec::new();
        if let Some(location) = &self.location {
            parts.push(format!("lat={}&lon={}", location.lat, location.lon));
        }
        match family {
            Some(ispeed_client::Family::V4) => parts.push("family=4".to_owned()),
            Some(ispeed_client::Family::V6) => parts.push("family=6".to_owned()),
            None => {}
        }
        parts.join("&")
    }

    /// The access token locate offers for the test point at `url`, if any
    /// (for `--server` with a collector whose test points need tokens).
    pub async fn token_for(&self, url: &str) -> Option<(String, String)> {
        let located = ispeed_client::submit::locate(&self.collector, "")
            .await
            .ok()?;
        let wanted = url.trim_end_matches('/');
        located
            .candidates
            .into_iter()
            .find(|c| c.url == wanted)
            .map(|c| (c.token, c.public_key))
    }

    /// Spools the result first, then submits it; prints problems to stderr.
    pub async fn deliver(&self, result: &TestResult, expected_key: Option<&str>) -> Delivery {
        if let Some(expected) = expected_key.filter(|k| *k != result.server.public_key) {
            eprintln!(
                "warning: the test point's key ({}) is not the one the collector lists for \
                 test point {} ({expected}); the collector will likely reject the result",
                result.server.public_key, result.server.id
            );
        }
        let submission = build_submission(
            result,
            &self.device_id,
            self.access,
            self.location,
            self.ward.clone(),
            ClientKind::Cli,
        );
        let id = submission.result_id;
        let spooled = match self.spool.save(&submission) {
            Ok(()) => true,
            Err(error) => {
                eprintln!(
                    "warning: cannot spool the result in {}: {error}",
                    self.spool.dir().display()
                );
                false
            }
        };
        let outcome = ispeed_client::submit(&self.collector, &submission).await;
        let settled = self.spool.settle(&submission, &outcome, now_ms());
        if let Err(error) = &settled {
            eprintln!("warning: cannot update the spool: {error}");
        }
        let mut delivery = Delivery {
            result_id: id.to_string(),
            submitted: false,
            stored: None,
            rejected: false,
        };
        match outcome {
            Ok(submitted) => {
                delivery.submitted = true;
                delivery.stored = Some(submitted.record);
            }
            Err(error) if error.is_permanent() => {
                delivery.rejected = true;
                let kept = match settled {
                    Ok(Settled::Rejected) => {
                        format!("kept in {}", self.spool.rejected_dir().display())
                    }
                    _ => "not kept".to_owned(),
                };
                eprintln!("error: {error} (result {id} {kept})");
            }
            Err(error) if spooled => eprintln!(
                "warning: {error}; result {id} is spooled and will be sent with the next test \
                 or by `ispeed submit --pending --collector {}`",
                self.collector
            ),
            Err(error) => eprintln!("error: {error}; result {id} could not be saved either"),
        }
        delivery
    }
}

fn access(args: &ReportArgs) -> Result<Access, String> {
    let tech = args.radio.map(|r| match r {
        RadioArg::G2 => RadioTech::G2,
        RadioArg::G3 => RadioTech::G3,
        RadioArg::G4 => RadioTech::G4,
        RadioArg::G5 => RadioTech::G5,
    });
    let medium = args.medium.map(|m| match m {
        MediumArg::Wifi => FixedMedium::Wifi,
        MediumArg::Ethernet => FixedMedium::Ethernet,
    });
    let kind = match (args.access, tech.is_some(), medium.is_some()) {
        (_, true, true) => return Err("--radio and --medium exclude each other".into()),
        (None | Some(AccessArg::Mobile), true, _) => AccessArg::Mobile,
        (None | Some(AccessArg::Fixed), _, true) => AccessArg::Fixed,
        (Some(_), true, _) => return Err("--radio needs --access mobile".into()),
        (Some(_), _, true) => return Err("--medium needs --access fixed".into()),
        (kind, false, false) => kind.unwrap_or(AccessArg::Unknown),
    };
    Ok(match kind {
        AccessArg::Mobile => Access::Mobile { tech },
        AccessArg::Fixed => Access::Fixed { medium },
        AccessArg::Unknown => Access::Unknown,
    })
}

/// `ispeed test --json` output: the result's keys in their order, then
/// `result_id` and `submitted` (`spec/results.md` §1).
#[derive(Serialize)]
struct TestOutput<'a> {
    #[serde(flatten)]
    result: &'a TestResult,
    result_id: Option<&'a str>,
    submitted: bool,
    /// How the test point was chosen (only when the collector's locate chose it).
    #[serde(skip_serializing_if = "Option::is_none")]
    selection: Option<&'a Selection>,
}

pub fn print_json(
    result: &TestResult,
    delivery: Option<&Delivery>,
    selection: Option<&Selection>,
) -> anyhow::Result<()> {
    let output = TestOutput {
        result,
        result_id: delivery.map(|d| d.result_id.as_str()),
        submitted: delivery.is_some_and(|d| d.submitted),
        selection,
    };
    println!("{}", serde_json::to_string(&output)?);
    Ok(())
}

/// The line under the human table.
pub fn print_human(delivery: &Delivery) {
    if let Some(stored) = &delivery.stored {
        let counted = if stored.counted {
            "counted in the statistics".to_owned()
        } else if stored.reasons.is_empty() {
            "stored, not counted (daily limit)".to_owned()
        } else {
            let reasons: Vec<_> = stored.reasons.iter().map(|r| r.as_str()).collect();
            format!("stored, not counted ({})", reasons.join(", "))
        };
        println!("Submitted as result {}: {counted}", delivery.result_id);
    }
}

/// Exit code of a test that produced a result.
pub fn exit_code(delivery: Option<&Delivery>) -> ExitCode {
    if delivery.is_some_and(|d| d.rejected) {
        ExitCode::from(EXIT_REJECTED)
    } else {
        ExitCode::SUCCESS
    }
}

#[derive(Args)]
pub struct SubmitArgs {
    /// Deliver the results spooled by earlier tests (the only mode so far).
    #[arg(long, required = true)]
    pending: bool,
    /// Collector URL, e.g. http://127.0.0.1:8080
    #[arg(long, value_name = "URL")]
    collector: String,
    /// Try every spooled result now, ignoring its backoff.
    #[arg(long)]
    force: bool,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct SubmitSummary {
    delivered: usize,
    rejected: usize,
    still_pending: usize,
    spool: PathBuf,
    errors: Vec<SummaryError>,
}

#[derive(Serialize)]
struct SummaryError {
    result_id: String,
    permanent: bool,
    code: Option<&'static str>,
    message: String,
}

/// `ispeed submit --pending`: exit 0 unless a result was rejected for good (5).
pub fn run(args: SubmitArgs, runtime: tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    debug_assert!(args.pending);
    if let Err(error) = Target::parse(&args.collector) {
        eprintln!("error: --collector: {error}");
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let spool = Spool::new(&ispeed_client::config_dir());
    let report = runtime
        .block_on(spool.deliver_pending(&args.collector, now_ms(), args.force))
        .with_context(|| format!("cannot read the spool in {}", spool.dir().display()))?;
    runtime.shutdown_background();
    let summary = SubmitSummary {
        delivered: report.delivered,
        rejected: report.rejected,
        still_pending: report.still_pending,
        spool: spool.dir().to_owned(),
        errors: report
            .errors
            .iter()
            .map(|(id, error)| SummaryError {
                result_id: id.to_string(),
                permanent: error.is_permanent(),
                code: match error {
                    SubmitError::Rejected { code, .. } => Some(code.as_str()),
                    _ => None,
                },
                message: error.to_string(),
            })
            .collect(),
    };
    for error in &summary.errors {
        eprintln!("result {}: {}", error.result_id, error.message);
    }
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "delivered {}, rejected {}, still pending {} (spool: {})",
            summary.delivered,
            summary.rejected,
            summary.still_pending,
            summary.spool.display()
        );
    }
    Ok(if report.rejected > 0 {
        ExitCode::from(EXIT_REJECTED)
    } else {
        ExitCode::SUCCESS
    })
}
