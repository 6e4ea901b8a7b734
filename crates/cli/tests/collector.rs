//! The collector as a real process: a SIGKILL during a burst loses no
//! acknowledged result and re-sending creates no duplicate; a client whose
//! collector is down spools and later delivers exactly once. The crash
//! test runs on SQLite and, with `ISPEED_TEST_POSTGRES`, on PostgreSQL.

mod common;

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ispeed_collector::generate::{synthetic_key, Generator};
use ispeed_collector::period::Month;
use ispeed_collector::state::load_enricher;
use ispeed_proto::results::SubmitResult;

const BIN: &str = env!("CARGO_BIN_EXE_ispeed");

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let dir =
            std::env::temp_dir().join(format!("ispeed-cli-collector-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn serve(config: &Path, data: &Path, port: u16) -> Process {
    serve_on(config, data, None, port)
}

fn serve_on(config: &Path, data: &Path, store: Option<&str>, port: u16) -> Process {
    let mut command = Command::new(BIN);
    command
        .arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--data")
        .arg(data);
    if let Some(store) = store {
        command.args(["--store", store]);
    }
    let child = command
        .args(["--listen", &format!("127.0.0.1:{port}"), "--no-test-point"])
        .env("ISPEED_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port);
    Process(child)
}

fn write_config(path: &Path, id: &str, public_key: &str) {
    std::fs::write(
        path,
        format!(
            "[[collector.test_points]]\nid = \"{id}\"\npublic_key = \"{public_key}\"\nurl = \"synthetic:\"\n"
        ),
    )
    .unwrap();
}

fn stored_ids(data: &Path, pg: Option<&common::PgSchema>) -> Vec<String> {
    if let Some(pg) = pg {
        return pg
            .query("SELECT result_id FROM results")
            .into_iter()
            .map(|r| r[0].clone().unwrap())
            .collect();
    }
    let db = rusqlite::Connection::open(data.join("ispeed.sqlite3")).unwrap();
    let mut statement = db.prepare("SELECT result_id FROM results").unwrap();
    let ids = statement
        .query_map([], |row| row.get::<_, String>(0))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    ids
}

fn now_ms() -> u64 {
    ispeed_client::submit::now_ms()
}

#[test]
fn sigkill_during_a_burst_loses_no_acknowledged_result_and_resending_duplicates_nothing() {
    sigkill_during_a_burst(None);
    if let Some(pg) = common::PgSchema::new("crash") {
        sigkill_during_a_burst(Some(&pg));
    }
}

fn sigkill_during_a_burst(pg: Option<&common::PgSchema>) {
    const TOTAL: u64 = 10_000;
    const KILL_AFTER: usize = 3_000;
    let dir = Dir::new("crash");
    let data = dir.0.join("data");
    let config = dir.0.join("collector.toml");
    let seed = 11;
    write_config(
        &config,
        "synthetic",
        &ispeed_proto::receipt::encode_public_key(&synthetic_key(seed).verifying_key()),
    );
    let enricher = load_enricher(
        &ispeed_collector::RawConfig::default()
            .resolve(&data)
            .unwrap(),
    )
    .unwrap();
    let generator = Generator::new(seed, Month::of_unix_ms(now_ms()), TOTAL, &enricher);
    let submissions: Arc<Vec<SubmitResult>> = Arc::new(
        (0..TOTAL)
            .map(|i| generator.sample(i, Some(now_ms())))
            .collect(),
    );
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let store = pg.map(|pg| pg.url.as_str());
    let collector = Arc::new(Mutex::new(serve_on(&config, &data, store, port)));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    runtime.block_on(async {
        let workers: Vec<_> = (0..32)
            .map(|_| {
                let (submissions, acked, next, url, collector) = (
                    submissions.clone(),
                    acked.clone(),
                    next.clone(),
                    url.clone(),
                    collector.clone(),
                );
                tokio::spawn(async move {
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(submission) = submissions.get(index) else {
                            break;
                        };
                        if ispeed_client::submit::submit(&url, submission)
                            .await
                            .is_ok()
                        {
                            let mut acked = acked.lock().unwrap();
                            acked.insert(submission.result_id.to_string());
                            if acked.len() == KILL_AFTER {
                                // SIGKILL: no chance to flush anything.
                                collector.lock().unwrap().0.kill().unwrap();
                            }
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.unwrap();
        }
    });
    collector.lock().unwrap().0.wait().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= KILL_AFTER, "{} acked", acked.len());
    assert!(
        (acked.len() as u64) < TOTAL,
        "the kill came during the burst"
    );

    // Restart on the same data: every acknowledged result is there, once.
    let restarted = serve_on(&config, &data, store, port);
    let ids = stored_ids(&data, pg);
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no result stored twice");
    let missing = acked.iter().filter(|id| !unique.contains(id)).count();
    assert_eq!(missing, 0, "{missing} acknowledged results lost");
    let stored_before = ids.len();

    // Clients re-send everything: the rest is created, nothing is duplicated.
    let statuses = runtime.block_on(async {
        let mut created = 0usize;
        let mut existing = 0usize;
        for chunk in submissions.chunks(500) {
            let sends = chunk.iter().map(|s| ispeed_client::submit::submit(&url, s));
            for outcome in futures_util::future::join_all(sends).await {
                match outcome.unwrap() {
                    done if done.created => created += 1,
                    _ => existing += 1,
                }
            }
        }
        (created, existing)
    });
    assert_eq!(statuses.1, stored_before, "every stored result answers 200");
    assert_eq!(statuses.0 + statuses.1, TOTAL as usize);
    let ids = stored_ids(&data, pg);
    assert_eq!(ids.len(), TOTAL as usize);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), TOTAL as usize);
    eprintln!(
        "crash test ({}): {} acknowledged before SIGKILL, {stored_before} stored, {} created on re-send",
        if pg.is_some() { "postgres" } else { "sqlite" },
        acked.len(),
        statuses.0
    );
    drop(restarted);
}

#[test]
fn a_client_whose_collector_is_down_spools_and_later_delivers_exactly_once() {
    let dir = Dir::new("spool");
    let home = dir.0.join("home");
    let data = dir.0.join("data");
    let tp_port = free_port();
    let _test_point = Process(
        Command::new(BIN)
            .args([
                "server",
                "--listen",
                &format!("127.0.0.1:{tp_port}"),
                "--key",
            ])
            .arg(dir.0.join("tp.key"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(tp_port);
    let collector_port = free_port();
    let collector_url = format!("http://127.0.0.1:{collector_port}");
    let test = Command::new(BIN)
        .args([
            "test",
            "--server",
            &format!("http://127.0.0.1:{tp_port}"),
            "--collector",
            &collector_url,
        ])
        .args([
            "--json",
            "--max-seconds",
            "1",
            "--location",
            "21.0288,105.8522",
            "--access",
            "fixed",
        ])
        .env("ISPEED_CONFIG_DIR", &home)
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "{}",
        String::from_utf8_lossy(&test.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&test.stdout).unwrap();
    assert_eq!(result["submitted"], false);
    let result_id = result["result_id"].as_str().unwrap().to_owned();
    let spooled: Vec<_> = std::fs::read_dir(home.join("spool"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(spooled.len(), 1);

    // The collector comes up, approving the test point's key.
    let info: serde_json::Value = serde_json::from_slice(
        &Command::new("curl")
            .args(["-s", &format!("http://127.0.0.1:{tp_port}/v1/info")])
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default(),
    )
    .unwrap_or_default();
    let public_key = match info["public_key"].as_str() {
        Some(key) => key.to_owned(),
        // Without curl: the key is in the receipt the test printed.
        None => result["server"]["public_key"].as_str().unwrap().to_owned(),
    };
    let config = dir.0.join("collector.toml");
    write_config(&config, "local", &public_key);
    let _collector = serve(&config, &data, collector_port);

    let deliver = || {
        let output = Command::new(BIN)
            .args([
                "submit",
                "--pending",
                "--collector",
                &collector_url,
                "--force",
                "--json",
            ])
            .env("ISPEED_CONFIG_DIR", &home)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let first = deliver();
    assert_eq!(first["delivered"], 1, "{first}");
    let second = deliver();
    assert_eq!(second["delivered"], 0, "{second}");
    assert_eq!(stored_ids(&data, None), [result_id]);
}
