//! `ispeed loadgen`: many concurrent tests against one test point, for the
//! concurrency benchmark. Each session downloads then uploads for a fixed
//! time on one stream; phases start together behind a barrier.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use ispeed_client::TestOptions;
use ispeed_measure::stats::jain_fairness;

#[derive(Args)]
pub struct LoadgenArgs {
    /// Test point URL.
    #[arg(long, value_name = "URL")]
    server: String,
    /// Concurrent sessions.
    #[arg(long, default_value_t = 100)]
    sessions: usize,
    /// Seconds per direction.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Kernel buffer size (KiB) of each session's payload sockets, 0 for the
    /// kernel's autotuning. The sessions stand for clients on separate
    /// machines; sharing the test point's host, autotuned buffers would put
    /// their receive queues into the host's one TCP memory pool and push it
    /// into memory pressure (drops, retransmission timeouts), which is not
    /// what a test point meets in the field.
    #[arg(long, default_value_t = 256)]
    socket_buffer_kib: u32,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What the test point signed about one session's phases.
#[derive(serde::Serialize)]
struct SessionPhases {
    started_at_ms: u64,
    download: Option<PhaseFigures>,
    upload: Option<PhaseFigures>,
}

#[derive(serde::Serialize)]
struct PhaseFigures {
    bytes: u64,
    duration_ms: u64,
    /// Start of the measurement window, ms into the session.
    window_start_ms: u64,
    retransmits: u64,
}

impl SessionPhases {
    fn of(receipt: &ispeed_proto::ReceiptPayload) -> SessionPhases {
        let figures = |d: &Option<ispeed_proto::receipt::DirectionReceipt>| {
            d.as_ref().map(|d| PhaseFigures {
                bytes: d.bytes,
                duration_ms: d.duration_ms,
                window_start_ms: d.window_start_ms,
                retransmits: d.tcp.retransmits,
            })
        };
        SessionPhases {
            started_at_ms: receipt.started_at_ms,
            download: figures(&receipt.download),
            upload: figures(&receipt.upload),
        }
    }
}

pub async fn run(args: LoadgenArgs) -> anyhow::Result<ExitCode> {
    let gate = Arc::new(tokio::sync::Barrier::new(args.sessions));
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.sessions)
        .map(|_| {
            let mut options = TestOptions::new(args.server.clone());
            options.streams = Some(1);
            options.max_seconds = args.seconds;
            options.fixed_duration = true;
            options.loaded_probes = false;
            options.client_kind = "agent".to_owned();
            options.phase_gate = Some(gate.clone());
            options.socket_buffer_bytes =
                (args.socket_buffer_kib > 0).then(|| args.socket_buffer_kib.saturating_mul(1024));
            tokio::spawn(async move { ispeed_client::run_test(&options, None).await })
        })
        .collect();
    let mut download = Vec::new();
    let mut upload = Vec::new();
    // Per session, so that an unfair run can be taken apart.
    let mut phases = Vec::new();
    let mut errors = std::collections::BTreeMap::<String, usize>::new();
    for task in tasks {
        match task.await {
            Ok(Ok(result)) => {
                // Fairness is about what each session got over the whole
                // shared period: all bytes over the phase's duration, not
                // the ramp-excluded window a speed test reports.
                let whole = |d: &Option<ispeed_proto::receipt::DirectionReceipt>| {
                    d.as_ref().map_or(0.0, |d| {
                        d.bytes as f64 * 8.0 / (d.duration_ms.max(1) as f64 * 1e3)
                    })
                };
                download.push(whole(&result.receipt_payload.download));
                upload.push(whole(&result.receipt_payload.upload));
                phases.push(SessionPhases::of(&result.receipt_payload));
            }
            Ok(Err(error)) => *errors.entry(error.to_string()).or_default() += 1,
            Err(error) => *errors.entry(format!("task: {error}")).or_default() += 1,
        }
    }
    let failed = args.sessions - download.len();
    let summary = serde_json::json!({
        "sessions": args.sessions,
        "completed": download.len(),
        "failed": failed,
        "errors": errors,
        "jain_download": jain_fairness(&download),
        "jain_upload": jain_fairness(&upload),
        "total_download_mbps": download.iter().sum::<f64>(),
        "total_upload_mbps": upload.iter().sum::<f64>(),
        "wall_s": started.elapsed().as_secs_f64(),
        "download_mbps": download,
        "upload_mbps": upload,
        "phases": phases,
    });
    if args.json {
        println!("{summary}");
    } else {
        println!(
            "sessions {} completed {} failed {} jain down {:.3} up {:.3}",
            args.sessions,
            summary["completed"],
            failed,
            summary["jain_download"].as_f64().unwrap_or(0.0),
            summary["jain_upload"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(4)
    })
}
