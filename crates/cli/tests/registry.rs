//! The test-point network end to end on 127.0.0.1: real test points that
//! register with a real collector by signed heartbeats, admin approval and
//! revocation, locate's tokens checked by token-required test points,
//! failover, and bad input that must change nothing.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{free_port, request, spawn, Dir, Process};
use ispeed_client::select::try_in_order;
use ispeed_client::{AttemptOutcome, SelectOptions, TestOptions};
use ispeed_proto::receipt::encode_public_key;
use ispeed_proto::registry::{
    AccessClaims, AccessMode, AdminTestPoints, Capacity, Heartbeat, Load, Located,
    RegistrationStatus, TestPointClass,
};
use ispeed_proto::results::{Access, ClientKind};
use ispeed_proto::SigningKey;
use serde_json::Value;

/// `ispeed serve --no-test-point` on a free port.
struct Collector {
    url: String,
    _process: Process,
}

async fn start_collector(dir: &Path) -> Collector {
    let port = free_port();
    let data = dir.join("data");
    let process = spawn(
        &[
            "serve",
            "--no-test-point",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data",
            data.to_str().unwrap(),
        ],
        port,
    );
    let url = format!("http://127.0.0.1:{port}");
    // The port opens before the store and keys are ready.
    for _ in 0..500 {
        if matches!(get(&url, "/api/v1/isps").await, Ok((200, _))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Collector {
        url,
        _process: process,
    }
}

/// `ispeed server` registering with the collector.
struct TestPoint {
    url: String,
    process: Process,
}

impl TestPoint {
    fn stop(mut self) {
        self.process.kill();
    }
}

struct Spec<'a> {
    id: &'a str,
    access: AccessMode,
    max_sessions: u32,
    class: TestPointClass,
    location: (f64, f64),
}

impl<'a> Spec<'a> {
    fn new(id: &'a str) -> Spec<'a> {
        Spec {
            id,
            access: AccessMode::TokenRequired,
            max_sessions: 20,
            class: TestPointClass::Vnix,
            location: (21.03, 105.85),
        }
    }
}

fn start_test_point(dir: &Path, collector: &str, spec: Spec<'_>) -> TestPoint {
    let port = free_port();
    let config = dir.join(format!("{}.toml", spec.id));
    // Fast heartbeats keep the test short; the rules are the same.
    std::fs::write(
        &config,
        format!(
            "test_point_id = \"{id}\"\nlisten = [\"127.0.0.1:{port}\"]\nkey_file = \"{key}\"\n\
             collector = \"{collector}\"\naccess = \"{access}\"\nmax_sessions = {max}\n\
             class = \"{class}\"\noperator = \"operator of {id}\"\nprovince_code = \"01\"\n\
             lat = {lat}\nlon = {lon}\nheartbeat_interval_s = 0.2\nshutdown_grace_s = 0.5\n",
            id = spec.id,
            key = dir.join(format!("{}.key", spec.id)).display(),
            access = match spec.access {
                AccessMode::Open => "open",
                AccessMode::TokenRequired => "token-required",
            },
            max = spec.max_sessions,
            class = spec.class.as_str(),
            lat = spec.location.0,
            lon = spec.location.1,
        ),
    )
    .unwrap();
    let process = spawn(&["server", "--config", config.to_str().unwrap()], port);
    TestPoint {
        url: format!("http://127.0.0.1:{port}"),
        process,
    }
}

async fn get(url: &str, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    request(url, "GET", path, &[], Vec::new()).await
}

async fn post_result(url: &str, value: &impl serde::Serialize) -> (u16, Value) {
    let body = serde_json::to_vec(value).unwrap();
    let (status, body) = request(url, "POST", "/api/v1/results", &[], body)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn now_ms() -> u64 {
    ispeed_client::submit::now_ms()
}

fn admin_token(data: &Path) -> String {
    std::fs::read_to_string(data.join("data/admin-token"))
        .unwrap()
        .trim()
        .to_owned()
}

async fn admin_list(collector: &Collector, token: &str) -> AdminTestPoints {
    let bearer = format!("Bearer {token}");
    let (status, body) = request(
        &collector.url,
        "GET",
        "/api/v1/admin/test-points",
        &[("authorization", &bearer)],
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

async fn admin(collector: &Collector, token: &str, id: &str, action: &str) -> (u16, Value) {
    let bearer = format!("Bearer {token}");
    let (status, body) = request(
        &collector.url,
        "POST",
        &format!("/api/v1/admin/test-points/{id}/{action}"),
        &[("authorization", &bearer)],
        Vec::new(),
    )
    .await
    .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Waits until the admin list shows `id` alive (its heartbeats arrive).
async fn wait_registered(collector: &Collector, token: &str, id: &str) {
    for _ in 0..250 {
        if admin_list(collector, token)
            .await
            .test_points
            .iter()
            .any(|tp| tp.id == id && tp.alive)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{id} never registered");
}

async fn locate(collector: &Collector, query: &str) -> (u16, Value) {
    let (status, body) = get(&collector.url, &format!("/api/v1/locate{query}"))
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no typed error>")
}

/// `POST /v1/sessions` at a test point with this body.
async fn create_session(test_point: &str, token: Option<&str>) -> (u16, Value) {
    let body = match token {
        Some(t) => serde_json::json!({ "access_token": t }),
        None => serde_json::json!({}),
    };
    let (status, body) = request(
        test_point,
        "POST",
        "/v1/sessions",
        &[],
        serde_json::to_vec(&body).unwrap(),
    )
    .await
    .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn quick_test() -> TestOptions {
    let mut options = TestOptions::new("");
    options.max_seconds = 1.0;
    options.streams = Some(2);
    options.loaded_probes = false;
    options.socket_buffer_bytes = Some(256 * 1024);
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_approval_locate_and_tokens() {
    let dir = Dir::new("registry");
    let collector = start_collector(dir.path()).await;
    let token = admin_token(dir.path());
    let a = start_test_point(dir.path(), &collector.url, Spec::new("tp-a"));
    let b = start_test_point(dir.path(), &collector.url, Spec::new("tp-b"));
    wait_registered(&collector, &token, "tp-a").await;
    wait_registered(&collector, &token, "tp-b").await;

    // Registered is not approved: pending, not offered, receipts refused.
    let list = admin_list(&collector, &token).await;
    assert!(list
        .test_points
        .iter()
        .all(|tp| tp.status == RegistrationStatus::Pending));
    let (status, body) = locate(&collector, "").await;
    assert_eq!((status, code(&body)), (503, "no_test_point_available"));

    // Approval needs the admin token.
    let (status, _) = request(
        &collector.url,
        "POST",
        "/api/v1/admin/test-points/tp-a/approve",
        &[],
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(status, 401);
    let (status, body) = admin(&collector, "wrong", "tp-a", "approve").await;
    assert_eq!((status, code(&body)), (401, "unauthorized"));
    for id in ["tp-a", "tp-b"] {
        let (status, body) = admin(&collector, &token, id, "approve").await;
        assert_eq!((status, body["status"].as_str()), (200, Some("approved")));
    }
    let (status, body) = admin(&collector, &token, "nope", "approve").await;
    assert_eq!((status, code(&body)), (404, "not_found"));

    // Locate offers both, each with a token for itself only.
    let (status, body) = locate(&collector, "?lat=21.03&lon=105.85").await;
    assert_eq!(status, 200, "{body}");
    let located: Located = serde_json::from_value(body).unwrap();
    assert_eq!(
        located.candidates.len(),
        2,
        "{located:?} {:?}",
        admin_list(&collector, &token).await
    );
    let token_of = |id: &str| {
        located
            .candidates
            .iter()
            .find(|c| c.id == id)
            .unwrap()
            .token
            .clone()
    };

    // A token-required test point refuses a missing, other-audience,
    // forged, expired or reused token.
    let (status, body) = create_session(&a.url, None).await;
    assert_eq!((status, code(&body)), (401, "token_missing"));
    let (status, body) = create_session(&a.url, Some(&token_of("tp-b"))).await;
    assert_eq!((status, code(&body)), (401, "token_audience"));
    let now = now_ms();
    let stranger = SigningKey::from_bytes(&[42u8; 32]);
    let forged = AccessClaims::new("tp-a", now, [1; 16]).sign(&stranger);
    let (status, body) = create_session(&a.url, Some(&forged)).await;
    assert_eq!((status, code(&body)), (401, "token_invalid"));
    let collector_key =
        ispeed_server::key::load_or_create(&dir.path().join("data/collector.key")).unwrap();
    let expired = AccessClaims::new("tp-a", now - 120_000, [2; 16]).sign(&collector_key);
    let (status, body) = create_session(&a.url, Some(&expired)).await;
    assert_eq!((status, code(&body)), (401, "token_expired"));
    let valid = token_of("tp-a");
    let (status, body) = create_session(&a.url, Some(&valid)).await;
    assert_eq!(status, 201, "{body} {}", valid);
    let (status, body) = create_session(&a.url, Some(&valid)).await;
    assert_eq!((status, code(&body)), (401, "token_reused"));
    // Bearer works as well as the body field.
    let (status, _) = request(
        &b.url,
        "POST",
        "/v1/sessions",
        &[("authorization", &format!("Bearer {}", token_of("tp-b")))],
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(status, 201);

    // A whole test chosen by locate, submitted, records the class.
    let mut select = SelectOptions::new(&collector.url);
    select.query = "lat=21.03&lon=105.85".into();
    let (result, selection) = ispeed_client::locate_and_run(&quick_test(), &select, None)
        .await
        .unwrap();
    assert_eq!(selection.class, TestPointClass::Vnix);
    assert!(selection.rtt_ms.is_some());
    assert_eq!(selection.attempts.len(), 1);
    let submission = ispeed_client::build_submission(
        &result,
        "device-registry",
        Access::Unknown,
        None,
        None,
        ClientKind::Cli,
    );
    let stored = ispeed_client::submit(&collector.url, &submission)
        .await
        .unwrap();
    assert_eq!(stored.record.test_point_id, selection.test_point_id);
    assert_eq!(stored.record.test_point_class, Some(TestPointClass::Vnix));

    // /metrics counts heartbeats, locate answers and tokens.
    let (_, metrics) = get(&collector.url, "/metrics").await.unwrap();
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(metrics.contains("ispeed_collector_test_points{status=\"approved\"} 2"));
    assert!(metrics.contains("ispeed_collector_test_points_alive 2"));
}

fn heartbeat(id: &str, key: &SigningKey, sent_at_ms: u64) -> Heartbeat {
    Heartbeat {
        v: 1,
        test_point_id: id.into(),
        key: encode_public_key(&key.verifying_key()),
        sent_at_ms,
        ipv4_url: Some("http://127.0.0.1:9".into()),
        ipv6_url: None,
        name: None,
        operator: "VNNIC".into(),
        asn: None,
        class: TestPointClass::Vnix,
        province_code: Some("01".into()),
        ward_code: None,
        lat: None,
        lon: None,
        access: AccessMode::TokenRequired,
        capacity: Capacity {
            max_sessions: 10,
            line_rate_mbps: 1000.0,
        },
        load: Load::default(),
    }
}

async fn send_heartbeat(collector: &Collector, compact: &str) -> (u16, Value) {
    send_raw(
        collector,
        serde_json::to_vec(&serde_json::json!({ "heartbeat": compact })).unwrap(),
    )
    .await
}

async fn send_raw(collector: &Collector, body: Vec<u8>) -> (u16, Value) {
    let (status, body) = request(
        &collector.url,
        "POST",
        "/api/v1/test-points/heartbeat",
        &[],
        body,
    )
    .await
    .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_heartbeats_and_locate_parameters_get_typed_errors_and_register_nothing() {
    let dir = Dir::new("heartbeats");
    let collector = start_collector(dir.path()).await;
    let token = admin_token(dir.path());
    let (key_a, key_b) = (
        SigningKey::from_bytes(&[1; 32]),
        SigningKey::from_bytes(&[2; 32]),
    );
    let now = now_ms();

    // Forged: names key A, signed with key B.
    let forged = heartbeat("tp-x", &key_a, now).sign(&key_b);
    let (status, body) = send_heartbeat(&collector, &forged).await;
    assert_eq!((status, code(&body)), (422, "bad_signature"));
    // Not JSON, not a heartbeat, a heartbeat with an unknown field or unit.
    let (status, body) = send_raw(&collector, b"{not json".to_vec()).await;
    assert_eq!((status, code(&body)), (400, "malformed_json"));
    let (status, body) = send_heartbeat(&collector, "h1.garbage").await;
    assert_eq!((status, code(&body)), (400, "bad_request"));
    let (status, body) = send_heartbeat(&collector, &format!("v1.{}", "A".repeat(10))).await;
    assert_eq!((status, code(&body)), (400, "bad_request"));
    let mut unknown_unit = heartbeat("tp-x", &key_a, now);
    unknown_unit.province_code = Some("99".into());
    let (status, body) = send_heartbeat(&collector, &unknown_unit.sign(&key_a)).await;
    assert_eq!((status, code(&body)), (422, "unknown_unit"));
    let (status, body) = send_raw(&collector, vec![b'x'; 70_000]).await;
    assert_eq!((status, code(&body)), (413, "payload_too_large"));
    assert!(admin_list(&collector, &token).await.test_points.is_empty());

    // A good one registers as pending.
    let first = heartbeat("tp-x", &key_a, now);
    let (status, body) = send_heartbeat(&collector, &first.sign(&key_a)).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("pending")));
    // The same id with another key; the same key under another id.
    let (status, body) =
        send_heartbeat(&collector, &heartbeat("tp-x", &key_b, now + 1).sign(&key_b)).await;
    assert_eq!((status, code(&body)), (409, "key_mismatch"));
    let (status, body) =
        send_heartbeat(&collector, &heartbeat("tp-y", &key_a, now + 1).sign(&key_a)).await;
    assert_eq!((status, code(&body)), (409, "key_mismatch"));
    // A replay, and one ten minutes off the clock.
    let (status, body) = send_heartbeat(&collector, &first.sign(&key_a)).await;
    assert_eq!((status, code(&body)), (409, "stale_heartbeat"));
    let old = heartbeat("tp-x", &key_a, now - 600_000);
    let (status, body) = send_heartbeat(&collector, &old.sign(&key_a)).await;
    assert_eq!((status, code(&body)), (409, "stale_heartbeat"));
    let list = admin_list(&collector, &token).await.test_points;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(
        list[0].public_key,
        encode_public_key(&key_a.verifying_key())
    );
    assert_eq!(list[0].status, RegistrationStatus::Pending);

    // After approval, a change of class needs a new approval.
    assert_eq!(admin(&collector, &token, "tp-x", "approve").await.0, 200);
    let mut reclassed = heartbeat("tp-x", &key_a, now + 2);
    reclassed.class = TestPointClass::OnNet;
    let (status, body) = send_heartbeat(&collector, &reclassed.sign(&key_a)).await;
    assert_eq!((status, code(&body)), (409, "registration_changed"));
    let list = admin_list(&collector, &token).await.test_points;
    assert_eq!(list[0].class, Some(TestPointClass::Vnix));

    // Locate's parameters are checked one by one.
    for (query, status, expected) in [
        ("?lat=abc&lon=1", 400, "bad_request"),
        ("?lat=10", 400, "bad_request"),
        ("?lat=91&lon=0", 400, "bad_request"),
        ("?family=5", 400, "bad_request"),
        ("?limit=0", 400, "bad_request"),
        ("?limit=6", 400, "bad_request"),
        ("?province=7", 400, "bad_request"),
        ("?province=99", 422, "unknown_unit"),
        ("?isp=viettel", 400, "bad_request"),
        ("?lat=%ZZ", 400, "bad_request"),
    ] {
        let (got, body) = locate(&collector, query).await;
        assert_eq!((got, code(&body)), (status, expected), "{query}");
    }
    // The admin API without a token, or with a wrong action.
    let (status, body) = get(&collector.url, "/api/v1/admin/test-points")
        .await
        .unwrap();
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    let (status, body) = admin(&collector, &token, "tp-x", "delete").await;
    assert_eq!((status, code(&body)), (404, "not_found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_signs_nothing_that_counts_and_earlier_results_stay() {
    let dir = Dir::new("revoke");
    let collector = start_collector(dir.path()).await;
    let token = admin_token(dir.path());
    let mut spec = Spec::new("tp-r");
    spec.access = AccessMode::Open;
    let tp = start_test_point(dir.path(), &collector.url, spec);
    wait_registered(&collector, &token, "tp-r").await;

    // A receipt from a pending (not yet approved) key is refused.
    let mut options = quick_test();
    options.server = tp.url.clone();
    let submission = |result: &ispeed_client::TestResult| {
        ispeed_client::build_submission(
            result,
            "device-revoke",
            Access::Unknown,
            None,
            None,
            ClientKind::Cli,
        )
    };
    let early = ispeed_client::run_test(&options, None).await.unwrap();
    let (status, body) = post_result(&collector.url, &submission(&early)).await;
    assert_eq!((status, code(&body)), (422, "unknown_test_point"));

    assert_eq!(admin(&collector, &token, "tp-r", "approve").await.0, 200);
    let before = ispeed_client::run_test(&options, None).await.unwrap();
    let after = ispeed_client::run_test(&options, None).await.unwrap();
    let stored = submission(&before);
    let (status, _) = post_result(&collector.url, &stored).await;
    assert_eq!(status, 201);

    let (status, body) = admin(&collector, &token, "tp-r", "revoke").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("revoked")));
    assert!(body["revoked_at_ms"].as_u64().is_some());
    // Signed before the revocation but submitted after: refused.
    let (status, body) = post_result(&collector.url, &submission(&after)).await;
    assert_eq!((status, code(&body)), (403, "test_point_revoked"));
    // The result stored before stays, and its retry is still a success.
    let (status, body) = post_result(&collector.url, &stored).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["counted"], true);
    // A revoked test point is not offered, its heartbeats are refused and
    // it cannot be approved again.
    let (status, body) = locate(&collector, "").await;
    assert_eq!((status, code(&body)), (503, "no_test_point_available"));
    let (status, body) = admin(&collector, &token, "tp-r", "approve").await;
    assert_eq!((status, code(&body)), (403, "test_point_revoked"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, metrics) = get(&tp.url, "/metrics").await.unwrap();
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("ispeed_registration_status 3"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("registration"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_moves_on_from_a_dead_or_full_test_point() {
    let dir = Dir::new("failover");
    let collector = start_collector(dir.path()).await;
    let token = admin_token(dir.path());
    let mut full = Spec::new("tp-full");
    full.max_sessions = 1;
    let full = start_test_point(dir.path(), &collector.url, full);
    let dead = start_test_point(dir.path(), &collector.url, Spec::new("tp-dead"));
    let _good = start_test_point(dir.path(), &collector.url, Spec::new("tp-good"));
    for id in ["tp-full", "tp-dead", "tp-good"] {
        wait_registered(&collector, &token, id).await;
        assert_eq!(admin(&collector, &token, id, "approve").await.0, 200);
    }
    let (_, body) = locate(&collector, "").await;
    let located: Located = serde_json::from_value(body).unwrap();
    assert_eq!(located.candidates.len(), 3);
    let index = |id: &str| located.candidates.iter().position(|c| c.id == id).unwrap();

    // Killed after locate offered it (it stays listed for up to 30 s).
    dead.stop();
    // Full: its one session is taken.
    let (_, body2) = locate(&collector, "").await;
    let again: Located = serde_json::from_value(body2).unwrap();
    let full_token = &again
        .candidates
        .iter()
        .find(|c| c.id == "tp-full")
        .unwrap()
        .token;
    assert_eq!(create_session(&full.url, Some(full_token)).await.0, 201);

    let order = [index("tp-dead"), index("tp-full"), index("tp-good")];
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
    let (result, selection) = try_in_order(&quick_test(), &located, &order, Some(events))
        .await
        .unwrap();
    assert_eq!(result.server.id, "tp-good");
    let outcomes: Vec<(String, AttemptOutcome)> = selection
        .attempts
        .iter()
        .map(|a| (a.test_point_id.clone(), a.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("tp-dead".to_owned(), AttemptOutcome::Unreachable),
            ("tp-full".to_owned(), AttemptOutcome::OverCapacity),
            ("tp-good".to_owned(), AttemptOutcome::Tested),
        ]
    );
    // The user is told, naming the next candidate.
    let mut told = Vec::new();
    while let Ok(event) = received.try_recv() {
        if let ispeed_client::Event::Failover { from, to, .. } = event {
            told.push((from, to));
        }
    }
    assert_eq!(
        told,
        [
            ("tp-dead".to_owned(), Some("tp-full".to_owned())),
            ("tp-full".to_owned(), Some("tp-good".to_owned())),
        ]
    );
    let (_, metrics) = get(&full.url, "/metrics").await.unwrap();
    assert!(String::from_utf8(metrics)
        .unwrap()
        .contains("ispeed_sessions_rejected_total 1"));

    // Once its heartbeat reports the full load, locate stops offering it.
    let mut excluded = false;
    for _ in 0..100 {
        let (_, body) = locate(&collector, "").await;
        let ids: Vec<String> = body["candidates"]
            .as_array()
            .map(|c| {
                c.iter()
                    .map(|c| c["id"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        if !ids.contains(&"tp-full".to_owned()) {
            excluded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(excluded, "locate kept offering a test point at 100 % load");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_at_a_test_point_of_fifty_are_all_served_or_redirected() {
    const CLIENTS: usize = 200;
    const BUDGET: Duration = Duration::from_secs(30);
    let dir = Dir::new("admission");
    let collector = start_collector(dir.path()).await;
    let token = admin_token(dir.path());
    let mut near = Spec::new("tp-near");
    near.max_sessions = 50;
    let near = start_test_point(dir.path(), &collector.url, near);
    let mut others = Vec::new();
    for id in ["tp-far-1", "tp-far-2"] {
        let mut spec = Spec::new(id);
        spec.max_sessions = 100;
        spec.location = (10.78, 106.70);
        others.push(start_test_point(dir.path(), &collector.url, spec));
    }
    for id in ["tp-near", "tp-far-1", "tp-far-2"] {
        wait_registered(&collector, &token, id).await;
        assert_eq!(admin(&collector, &token, id, "approve").await.0, 200);
    }

    // Every client is sent to the near one first (no RTT probe: locate's order).
    let mut select = SelectOptions::new(&collector.url);
    select.query = "lat=21.03&lon=105.85".into();
    select.admission_budget = BUDGET;
    select.probe_budget = Duration::ZERO;
    let mut test = quick_test();
    test.streams = Some(1);
    test.upload = false;
    let started = std::time::Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (test, select) = (test.clone(), select.clone());
            tokio::spawn(async move {
                let began = std::time::Instant::now();
                let outcome = ispeed_client::locate_and_run(&test, &select, None).await;
                (outcome.map(|(_, selection)| selection), began.elapsed())
            })
        })
        .collect();
    let mut served: std::collections::BTreeMap<String, usize> = Default::default();
    let (mut redirected, mut rejected_at_near, mut longest_wait, mut longest) =
        (0, 0, 0u64, Duration::ZERO);
    for client in clients {
        let (outcome, took) = client.await.unwrap();
        let selection = outcome.expect("every client is served");
        *served.entry(selection.test_point_id.clone()).or_default() += 1;
        redirected += usize::from(selection.attempts.len() > 1);
        rejected_at_near += selection
            .attempts
            .iter()
            .filter(|a| a.test_point_id == "tp-near" && a.outcome == AttemptOutcome::OverCapacity)
            .count();
        longest_wait = longest_wait.max(selection.admission_wait_ms);
        longest = longest.max(took);
    }
    println!(
        "{CLIENTS} clients in {:.1} s: served {served:?}, {redirected} redirected, \
         {rejected_at_near} refused by tp-near, longest wait for admission {longest_wait} ms, \
         longest client {:.1} s",
        started.elapsed().as_secs_f64(),
        longest.as_secs_f64()
    );
    assert_eq!(served.values().sum::<usize>(), CLIENTS);
    assert!(served["tp-near"] <= CLIENTS - rejected_at_near);
    assert!(rejected_at_near >= 100, "most clients found tp-near full");
    assert!(Duration::from_millis(longest_wait) <= BUDGET);
    // The test point counted every refusal it sent.
    let (_, metrics) = get(&near.url, "/metrics").await.unwrap();
    let metrics = String::from_utf8(metrics).unwrap();
    let rejected: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ispeed_sessions_rejected_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(rejected, rejected_at_near, "{metrics}");
    assert!(metrics.contains(&format!(
        "ispeed_errors_total{{code=\"over_capacity\"}} {rejected}"
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_point_lost_during_the_upload_keeps_its_signed_download_and_the_next_measures_the_upload(
) {
    let dir = Dir::new("midtest");
    let collector = start_collector(dir.path()).await;
    let token = admin_token(dir.path());
    let lost = start_test_point(dir.path(), &collector.url, Spec::new("tp-lost"));
    let _next = start_test_point(dir.path(), &collector.url, Spec::new("tp-next"));
    for id in ["tp-lost", "tp-next"] {
        wait_registered(&collector, &token, id).await;
        assert_eq!(admin(&collector, &token, id, "approve").await.0, 200);
    }
    let (_, body) = locate(&collector, "").await;
    let located: Located = serde_json::from_value(body).unwrap();
    let index = |id: &str| located.candidates.iter().position(|c| c.id == id).unwrap();

    // The first test point dies as soon as the upload starts.
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
    let killer = tokio::spawn(async move {
        let mut lost = Some(lost);
        let mut seen = Vec::new();
        while let Some(event) = received.recv().await {
            if event == ispeed_client::Event::Phase(ispeed_client::Phase::Upload) {
                if let Some(tp) = lost.take() {
                    tp.stop();
                }
            }
            seen.push(event);
        }
        seen
    });
    let mut test = quick_test();
    test.max_seconds = 2.0;
    let (result, selection) = try_in_order(
        &test,
        &located,
        &[index("tp-lost"), index("tp-next")],
        Some(events),
    )
    .await
    .unwrap();
    let seen = killer.await.unwrap();
    assert!(seen.iter().any(|e| matches!(e,
        ispeed_client::Event::Failover { from, reason, .. }
            if from == "tp-lost" && reason.contains("download is kept"))));
    let outcomes: Vec<(String, AttemptOutcome)> = selection
        .attempts
        .iter()
        .map(|a| (a.test_point_id.clone(), a.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("tp-lost".to_owned(), AttemptOutcome::Lost),
            ("tp-next".to_owned(), AttemptOutcome::Tested),
        ]
    );
    // The download is the lost test point's, signed at its checkpoint; the
    // upload and the receipt are the next one's, which measured no download.
    assert_eq!(result.server.id, "tp-next");
    assert_eq!(result.download_server.as_ref().unwrap().id, "tp-lost");
    assert!(result.receipt_payload.download.is_none());
    assert!(result.download_mbps.unwrap() > 0.0 && result.upload_mbps.unwrap() > 0.0);
    let checkpoint = result.download_receipt.clone().unwrap();

    // The collector verifies both receipts and stores one result.
    let submission = ispeed_client::build_submission(
        &result,
        "device-midtest",
        Access::Unknown,
        None,
        None,
        ClientKind::Cli,
    );
    let (status, stored) = post_result(&collector.url, &submission).await;
    assert_eq!(status, 201, "{stored}");
    assert_eq!(stored["test_point_id"], "tp-next");
    assert_eq!(stored["download_test_point_id"], "tp-lost");
    let published = stored["metrics"]["download_mbps"].as_f64().unwrap();
    assert!((published - result.download_mbps.unwrap()).abs() < 1e-9);
    // Neither session can back another result: the checkpoint again with
    // another receipt, or the checkpoint as a result of its own.
    let mut again = submission.clone();
    again.result_id = uuid::Uuid::new_v4();
    let (status, body) = post_result(&collector.url, &again).await;
    assert_eq!((status, code(&body)), (409, "receipt_reused"));
    let mut alone = submission.clone();
    alone.result_id = uuid::Uuid::new_v4();
    alone.receipt = checkpoint.clone();
    alone.download_receipt = None;
    let (status, body) = post_result(&collector.url, &alone).await;
    assert_eq!((status, code(&body)), (409, "receipt_reused"));
    // A final receipt with its own download cannot borrow a checkpoint's.
    let mut doubled = submission;
    doubled.result_id = uuid::Uuid::new_v4();
    doubled.download_receipt = Some(doubled.receipt.clone());
    let (status, body) = post_result(&collector.url, &doubled).await;
    assert_eq!((status, code(&body)), (422, "impossible_value"));
}
