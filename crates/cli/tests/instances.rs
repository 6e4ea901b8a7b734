//! Two `ispeed serve` processes on one PostgreSQL database, with clients
//! sending the same results to either or both at random: every result is
//! stored exactly once and the statistics equal a single instance's.
//! Needs `ISPEED_TEST_POSTGRES`; skipped (with a note) without it.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use common::{free_port, spawn, Dir, PgSchema, Process};
use ispeed_collector::generate::{synthetic_key, Generator};
use ispeed_collector::period::Month;
use ispeed_collector::state::load_enricher;
use ispeed_proto::results::SubmitResult;

const SEED: u64 = 31;
const SAMPLES: u64 = 6_000;
const WORKERS: usize = 24;

fn serve(config: &Path, data: &Path, store: &str) -> (Process, String) {
    let port = free_port();
    let process = spawn(
        &[
            "serve",
            "--no-test-point",
            "--config",
            config.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--store",
            store,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ],
        port,
    );
    (process, format!("http://127.0.0.1:{port}"))
}

/// Where one sample goes: one instance, both at once, or one then the
/// other (a client retrying elsewhere after a lost answer).
#[derive(Clone, Copy, Debug)]
enum Route {
    Only(usize),
    Both,
    Then(usize, usize),
}

fn route(index: u64) -> Route {
    // A fixed pseudo-random choice per sample (splitmix64).
    let mut z = index.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    match (z ^ (z >> 31)) % 5 {
        0 => Route::Only(0),
        1 => Route::Only(1),
        2 => Route::Both,
        3 => Route::Then(0, 1),
        _ => Route::Then(1, 0),
    }
}

/// Sends every sample along its route. A device's samples go in order
/// through one worker and each is acknowledged before its next is sent,
/// as a phone would, so the heavy-tester cap sees the same order in every
/// run; different devices interleave freely. Returns how many answers
/// were `201 Created`.
fn submit_all(urls: &[String], samples: &Arc<Vec<SubmitResult>>, routed: bool) -> usize {
    let mut queues: Vec<Vec<usize>> = vec![Vec::new(); WORKERS];
    let mut worker_of: HashMap<&str, usize> = HashMap::new();
    for (i, s) in samples.iter().enumerate() {
        let n = worker_of.len();
        let w = *worker_of.entry(s.device_id.as_str()).or_insert(n % WORKERS);
        queues[w].push(i);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = queues
            .into_iter()
            .map(|queue| {
                let (urls, samples) = (urls.to_vec(), samples.clone());
                tokio::spawn(async move {
                    let mut created = 0;
                    for i in queue {
                        let s = &samples[i];
                        let send = |k: usize| {
                            let url = urls[k.min(urls.len() - 1)].clone();
                            async move { ispeed_client::submit::submit(&url, s).await.unwrap() }
                        };
                        let answers = match if routed {
                            route(i as u64)
                        } else {
                            Route::Only(0)
                        } {
                            Route::Only(k) => vec![send(k).await],
                            Route::Both => {
                                let (a, b) = tokio::join!(send(0), send(1));
                                vec![a, b]
                            }
                            Route::Then(a, b) => vec![send(a).await, send(b).await],
                        };
                        let stored: Vec<_> = answers.iter().filter(|a| a.created).collect();
                        assert_eq!(stored.len(), 1, "sample {i}: exactly one 201");
                        assert!(
                            answers.iter().all(|a| a.record == answers[0].record),
                            "sample {i}: every answer describes the same record"
                        );
                        created += stored.len();
                    }
                    created
                })
            })
            .collect();
        let mut created = 0;
        for task in tasks {
            created += task.await.unwrap();
        }
        created
    })
}

fn answers(url: &str, month: Month) -> Vec<String> {
    let questions = [
        format!("/api/v1/stats?level=nation&period={month}"),
        format!("/api/v1/stats?level=nation&period={month}&access=mobile"),
        format!("/api/v1/stats/children?level=nation&period={month}"),
        format!("/api/v1/stats/children?level=province&code=79&period={month}"),
        format!("/api/v1/stats/children?level=province&code=01&period={month}&access=fixed"),
        format!("/api/v1/stats/timeseries?level=nation&period={month}"),
    ];
    common::get_all(url, &questions, &[])
}

#[test]
fn two_instances_store_each_result_once_and_agree_with_a_single_instance() {
    let (Some(shared), Some(single)) = (PgSchema::new("two"), PgSchema::new("one")) else {
        return;
    };
    let dir = Dir::new("instances");
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[[collector.test_points]]\nid = \"synthetic\"\npublic_key = \"{}\"\nurl = \"synthetic:\"\n",
            ispeed_proto::receipt::encode_public_key(&synthetic_key(SEED).verifying_key())
        ),
    )
    .unwrap();
    let enricher = load_enricher(
        &ispeed_collector::RawConfig::default()
            .resolve(dir.path())
            .unwrap(),
    )
    .unwrap();
    let now = ispeed_client::submit::now_ms();
    let month = Month::of_unix_ms(now);
    let generator = Generator::new(SEED, month, SAMPLES, &enricher);
    let samples: Arc<Vec<SubmitResult>> = Arc::new(
        (0..SAMPLES)
            .map(|i| generator.sample(i, Some(now)))
            .collect(),
    );

    // ---- two instances, one database --------------------------------------
    let (first, first_url) = serve(&config, &dir.path().join("a"), &shared.url);
    let (second, second_url) = serve(&config, &dir.path().join("b"), &shared.url);
    let urls = [first_url.clone(), second_url.clone()];
    let created = submit_all(&urls, &samples, true);
    assert_eq!(created as u64, SAMPLES, "one 201 per result");
    let counts = shared.query(
        "SELECT (SELECT count(*) FROM results), (SELECT count(DISTINCT result_id) FROM results),
                (SELECT count(*) FROM result_ids), (SELECT count(*) FROM receipt_sessions)",
    );
    let expected = Some(SAMPLES.to_string());
    assert_eq!(
        counts[0],
        vec![expected.clone(); 4],
        "each result stored once"
    );
    let from_first = answers(&first_url, month);
    let from_second = answers(&second_url, month);
    assert_eq!(from_first, from_second, "both instances answer alike");
    drop((first, second));

    // ---- one instance, the same results, the same device-hash key ----------
    let created = std::process::Command::new(common::BIN)
        .args(["units", "list", "--store", &single.url, "--data"])
        .arg(dir.path().join("c"))
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    single.execute(&format!(
        "INSERT INTO meta SELECT * FROM {}.meta WHERE key = 'device_hash_key'
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        shared.schema
    ));
    let (only, only_url) = serve(&config, &dir.path().join("c"), &single.url);
    assert_eq!(
        submit_all(std::slice::from_ref(&only_url), &samples, false) as u64,
        SAMPLES
    );
    let from_single = answers(&only_url, month);
    drop(only);
    for (two, one) in from_first.iter().zip(&from_single) {
        assert_eq!(two, one, "statistics equal a single instance's");
    }
    eprintln!(
        "two instances: {SAMPLES} results, each stored once; {} statistics answers equal",
        from_single.len()
    );
}

/// GETs `path` with the admin bearer token (or POSTs with an empty body).
fn admin_call(url: &str, method: &str, path: &str, token: &str) -> (u16, serde_json::Value) {
    let bearer = format!("Bearer {token}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, body) = runtime
        .block_on(common::request(
            url,
            method,
            path,
            &[("authorization", &bearer)],
            Vec::new(),
        ))
        .unwrap();
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// Retries `check` for up to 10 s (the instances sync every 2 s).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A test point heartbeats to one instance only; an approval made on the
/// other, the liveness it heard, and a later revocation reach every
/// instance: locate on the second offers it, the first accepts its
/// receipts, and after the revocation neither does.
#[test]
fn registrations_approvals_and_liveness_reach_every_instance() {
    let Some(shared) = PgSchema::new("registry") else {
        return;
    };
    let dir = Dir::new("instances-registry");
    let config = dir.path().join("collector.toml");
    std::fs::write(&config, "").unwrap();
    let (a, a_url) = serve(&config, &dir.path().join("a"), &shared.url);
    // The second instance gets the first one's admin token and token key,
    // as docs/scaling.md asks of a deployment.
    let token_file = dir.path().join("a/admin-token");
    eventually("the first instance wrote its keys", || {
        token_file.exists() && dir.path().join("a/collector.key").exists()
    });
    std::fs::create_dir_all(dir.path().join("b")).unwrap();
    for file in ["admin-token", "collector.key"] {
        std::fs::copy(
            dir.path().join("a").join(file),
            dir.path().join("b").join(file),
        )
        .unwrap();
    }
    let (b, b_url) = serve(&config, &dir.path().join("b"), &shared.url);
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();

    // A test point that knows only the first instance.
    let tp_port = free_port();
    let tp_config = dir.path().join("tp.toml");
    std::fs::write(
        &tp_config,
        format!(
            "test_point_id = \"hn-1\"\nlisten = [\"127.0.0.1:{tp_port}\"]\nkey_file = \"{}\"\n\
             collector = \"{a_url}\"\naccess = \"open\"\nclass = \"vnix\"\noperator = \"VNIX\"\n\
             province_code = \"01\"\nlat = 21.03\nlon = 105.85\nheartbeat_interval_s = 0.5\n",
            dir.path().join("tp.key").display()
        ),
    )
    .unwrap();
    let _tp = spawn(
        &["server", "--config", tp_config.to_str().unwrap()],
        tp_port,
    );
    let listed = |url: &str| {
        let (status, body) = admin_call(url, "GET", "/api/v1/admin/test-points", &token);
        assert_eq!(status, 200, "{body}");
        body["test_points"]
            .as_array()
            .unwrap()
            .iter()
            .find(|tp| tp["id"] == "hn-1")
            .cloned()
    };
    eventually(
        "the second instance knows the pending test point, alive",
        || listed(&b_url).is_some_and(|tp| tp["status"] == "pending" && tp["alive"] == true),
    );

    // Approved on the second instance, which never heard a heartbeat.
    let (status, body) = admin_call(
        &b_url,
        "POST",
        "/api/v1/admin/test-points/hn-1/approve",
        &token,
    );
    assert_eq!(status, 200, "{body}");
    eventually("locate on the second instance offers it", || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (status, body) = runtime
            .block_on(common::request(
                &b_url,
                "GET",
                "/api/v1/locate",
                &[],
                Vec::new(),
            ))
            .unwrap();
        status == 200 && String::from_utf8_lossy(&body).contains("hn-1")
    });
    // … and the first instance, which heard the heartbeats but not the
    // approval, accepts the test point's receipts.
    let home = dir.path().join("home");
    let run_test = |collector: &str| {
        std::process::Command::new(common::BIN)
            .args(["test", "--server", &format!("http://127.0.0.1:{tp_port}")])
            .args(["--collector", collector, "--json", "--max-seconds", "1"])
            .args(["--location", "21.0288,105.8522", "--access", "fixed"])
            .env("ISPEED_CONFIG_DIR", &home)
            .output()
            .unwrap()
    };
    eventually("the first instance trusts the approved key", || {
        let out = run_test(&a_url);
        let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        out.status.success() && result["submitted"] == true
    });

    // Revoked on the first instance: the second refuses its receipts.
    let (status, body) = admin_call(
        &a_url,
        "POST",
        "/api/v1/admin/test-points/hn-1/revoke",
        &token,
    );
    assert_eq!(status, 200, "{body}");
    eventually("the second instance refuses the revoked key", || {
        listed(&b_url).is_some_and(|tp| tp["status"] == "revoked")
    });
    let out = run_test(&b_url);
    assert_eq!(out.status.code(), Some(5), "rejected for good: {out:?}");
    drop((a, b));
}
