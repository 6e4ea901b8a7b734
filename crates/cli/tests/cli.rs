//! End-to-end tests of the `ispeed` binary: real processes, real sockets.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ispeed");

struct Server {
    child: Child,
    url: String,
    dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_server(tag: &str) -> Server {
    let dir = std::env::temp_dir().join(format!("ispeed-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let child = Command::new(BIN)
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--key"])
        .arg(dir.join("tp.key"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
        dir,
    }
}

#[test]
fn json_output_has_the_contract_keys_and_the_receipt_verifies() {
    let server = start_server("json");
    let output = Command::new(BIN)
        .args([
            "test",
            "--server",
            &server.url,
            "--json",
            "--max-seconds",
            "2",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.trim().lines().count(), 1, "exactly one JSON object");
    let value: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for key in [
        "download_mbps",
        "upload_mbps",
        "latency_ms",
        "jitter_ms",
        "loaded_latency_ms",
        "rpm",
        "ip_version",
        "ipv6_capable",
        "duration_s",
        "server",
        "receipt",
    ] {
        assert!(value.get(key).is_some(), "missing {key}");
    }
    assert!(value["loaded_latency_ms"].get("download").is_some());
    assert!(value["duration_s"].get("upload").is_some());
    assert!(value["server"]["id"].is_string() && value["server"]["url"].is_string());
    let key = value["server"]["public_key"].as_str().unwrap();

    let verify = |input: &str| {
        let mut child = Command::new(BIN)
            .args(["verify-receipt", "--key", key])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait().unwrap().success()
    };
    assert!(verify(&stdout));
    let receipt = value["receipt"].as_str().unwrap();
    assert!(verify(receipt));
    let mut tampered = receipt.to_owned().into_bytes();
    let middle = tampered.len() / 3;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    assert!(!verify(&String::from_utf8(tampered).unwrap()));
}

#[test]
fn unreachable_test_point_exits_3_and_usage_errors_exit_2() {
    let port = free_port();
    let status = Command::new(BIN)
        .args([
            "test",
            "--server",
            &format!("http://127.0.0.1:{port}"),
            "--json",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3));
    let status = Command::new(BIN)
        .args(["test", "--streams", "99", "--server", "http://127.0.0.1:1"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
}

#[test]
fn a_test_point_killed_mid_test_makes_the_client_exit_4_within_2_s() {
    for (phase_delay, label) in [
        (Duration::from_millis(700), "download"),
        (Duration::from_millis(3500), "upload"),
    ] {
        let mut server = start_server(label);
        let mut client = Command::new(BIN)
            .args([
                "test",
                "--server",
                &server.url,
                "--json",
                "--max-seconds",
                "3",
                "--streams",
                "2",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(phase_delay);
        server.child.kill().unwrap();
        let killed = Instant::now();
        let status = loop {
            if let Some(status) = client.try_wait().unwrap() {
                break status;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(5),
                "client still running"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let waited = killed.elapsed();
        let mut message = String::new();
        let _ = BufReader::new(client.stderr.take().unwrap()).read_line(&mut message);
        assert_eq!(status.code(), Some(4), "{label}: {message}");
        assert!(
            waited < Duration::from_secs(2),
            "{label}: exited after {waited:?}"
        );
        assert!(
            message.contains("went away") || message.contains("unreachable"),
            "{message}"
        );
        eprintln!("{label}: exit 4 after {waited:?}: {}", message.trim());
    }
}
