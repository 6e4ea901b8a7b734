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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    questions
        .iter()
        .map(|q| {
            let (status, body) = runtime
                .block_on(common::request(url, "GET", q, &[], Vec::new()))
                .unwrap();
            let body = String::from_utf8(body).unwrap();
            assert_eq!(status, 200, "{q}: {body}");
            body
        })
        .collect()
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
