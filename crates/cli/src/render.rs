//! Human output of `ispeed test`: a live progress line and a final table.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use ispeed_client::{AttemptOutcome, Event, Phase, Selection, TestResult};
use tokio::sync::mpsc::UnboundedReceiver;

/// Shows a spinner line with the current phase and rate until the events end.
pub async fn progress(mut events: UnboundedReceiver<Event>) {
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
    bar.enable_steady_tick(Duration::from_millis(100));
    while let Some(event) = events.recv().await {
        match event {
            Event::Phase(phase) => bar.set_message(phase_name(phase).to_owned()),
            Event::Probe {
                phase: Phase::Latency,
                rtt_ms,
            } => bar.set_message(format!("latency  {rtt_ms:8.2} ms")),
            Event::Progress {
                phase,
                mbps,
                streams,
                elapsed_s,
            } => bar.set_message(format!(
                "{:<9}{mbps:10.2} Mbit/s  {streams:>2} streams  {elapsed_s:4.1} s",
                phase_name(phase)
            )),
            Event::Probe { .. } => {}
            Event::Selected { .. } | Event::Failover { .. } => {
                if let Some(line) = notice(&event) {
                    bar.println(line);
                }
            }
        }
    }
    bar.finish_and_clear();
}

/// Prints only the choice of test point and failovers, on stderr (JSON mode).
pub async fn notices(mut events: UnboundedReceiver<Event>) {
    while let Some(event) = events.recv().await {
        if let Some(line) = notice(&event) {
            eprintln!("{line}");
        }
    }
}

/// The line telling the user which test point runs the test, or why one could not.
fn notice(event: &Event) -> Option<String> {
    match event {
        Event::Selected {
            id,
            url,
            rtt_ms,
            on_net,
        } => Some(format!(
            "test point {id} ({url}){}{}",
            rtt_ms.map_or_else(String::new, |r| format!(", RTT {r:.1} ms")),
            if *on_net {
                ", in your ISP's network"
            } else {
                ""
            }
        )),
        Event::Failover { from, reason, to } => Some(match to {
            Some(next) => {
                format!("test point {from} cannot take the test ({reason}); trying {next}")
            }
            None => format!("test point {from} cannot take the test ({reason})"),
        }),
        _ => None,
    }
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Connecting => "connecting",
        Phase::Latency => "latency",
        Phase::Download => "download",
        Phase::Upload => "upload",
        Phase::Finishing => "finishing",
    }
}

fn show(value: Option<f64>, unit: &str) -> String {
    value.map_or_else(|| "—".to_owned(), |v| format!("{v:.2} {unit}"))
}

/// Prints the final table.
pub fn table(result: &TestResult) {
    let rows = [
        (
            "Test point",
            format!("{} ({})", result.server.id, result.server.url),
        ),
        ("Download", show(result.download_mbps, "Mbit/s")),
        ("Upload", show(result.upload_mbps, "Mbit/s")),
        ("Latency (idle)", show(result.latency_ms, "ms")),
        ("Jitter", show(result.jitter_ms, "ms")),
        (
            "Latency (download)",
            show(result.loaded_latency_ms.download, "ms"),
        ),
        (
            "Latency (upload)",
            show(result.loaded_latency_ms.upload, "ms"),
        ),
        (
            "Responsiveness",
            match (result.rpm, result.rpm_detail.confidence) {
                (Some(rpm), Some(c)) => format!("{rpm:.0} RPM ({c:?} confidence)"),
                _ => "—".to_owned(),
            },
        ),
        ("IP version", format!("IPv{}", result.ip_version)),
        (
            "IPv6 capable",
            match result.ipv6_capable {
                Some(true) => "yes".to_owned(),
                Some(false) => "no".to_owned(),
                None => "not tested (test point has no IPv6)".to_owned(),
            },
        ),
        (
            "Duration",
            format!(
                "download {}, upload {}",
                show(result.duration_s.download, "s"),
                show(result.duration_s.upload, "s")
            ),
        ),
    ];
    for (label, value) in rows {
        println!("{label:<20} {value}");
    }
    println!(
        "Receipt signed by the test point; verify with `ispeed verify-receipt --key {}`",
        result.server.public_key
    );
}

/// Prints how the test point was chosen, when a collector's locate chose it.
pub fn selection(selection: &Selection) {
    let moved: Vec<String> = selection
        .attempts
        .iter()
        .filter(|a| a.outcome != AttemptOutcome::Tested)
        .map(|a| format!("{} ({:?})", a.test_point_id, a.outcome))
        .collect();
    println!(
        "Chosen by locate: {} [{}]{}, client ISP {}{}",
        selection.test_point_id,
        selection.class.as_str(),
        selection
            .rtt_ms
            .map_or_else(String::new, |r| format!(", RTT {r:.1} ms")),
        selection.client_isp,
        if moved.is_empty() {
            String::new()
        } else {
            format!("; moved on from {}", moved.join(", "))
        }
    );
}
