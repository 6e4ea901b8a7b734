//! The collector client and the spool against real files and real sockets
//! (a scripted HTTP collector on 127.0.0.1).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ispeed_client::submit::{now_ms, BACKOFF_BASE_MS};
use ispeed_client::{device_id, discover, submit, Settled, Spool, SubmitError};
use ispeed_proto::results::{
    Access, ClientInfo, ClientKind, ClientMetrics, PlaceSource, PublishedMetrics, ResultStatus,
    StoredResult, SubmitResult,
};
use ispeed_proto::{ErrorBody, ErrorCode};
use tokio::net::TcpListener;

/// A fresh, empty directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "ispeed-submit-{tag}-{}-{}",
            std::process::id(),
            u64::from_le_bytes(nonce)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sample(measured_at_ms: u64) -> SubmitResult {
    SubmitResult {
        result_id: uuid::Uuid::new_v4(),
        device_id: "00112233445566778899aabbccddeeff".into(),
        measured_at_ms,
        client: ClientInfo {
            kind: ClientKind::Cli,
            version: "test".into(),
        },
        access: Access::Unknown,
        location: None,
        ward_code: None,
        legacy_ward_code: None,
        metrics: ClientMetrics::default(),
        receipt: "v1.e30.AAAA".into(),
        source: None,
        download_receipt: None,
    }
}

fn stored(of: &SubmitResult) -> StoredResult {
    StoredResult {
        result_id: of.result_id,
        received_at_ms: now_ms(),
        measured_at_ms: of.measured_at_ms,
        client: of.client.clone(),
        access: of.access,
        test_point_id: "tp".into(),
        ip_version: 4,
        asn: None,
        isp: "unknown".into(),
        province_code: None,
        ward_code: None,
        place_source: PlaceSource::None,
        metrics: PublishedMetrics::default(),
        status: ResultStatus::Accepted,
        reasons: Vec::new(),
        counted: true,
        source: None,
        test_point_class: None,
        download_test_point_id: None,
    }
}

/// How the scripted collector answers a request (given its body).
type Script = Box<dyn Fn(&[u8]) -> Response<Full<Bytes>> + Send + Sync>;

/// A collector on 127.0.0.1 answering each request with the next script in
/// line (the last one repeats), recording `METHOD path` and headers.
struct FakeCollector {
    url: String,
    seen: Arc<Mutex<Vec<(String, http::HeaderMap)>>>,
}

async fn fake_collector(scripts: Vec<Script>) -> FakeCollector {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let scripts = Arc::new(Mutex::new(VecDeque::from(scripts)));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (log, scripts) = (log.clone(), scripts.clone());
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (log, scripts) = (log.clone(), scripts.clone());
                async move {
                    let line = format!("{} {}", req.method(), req.uri().path());
                    log.lock().unwrap().push((line, req.headers().clone()));
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let mut scripts = scripts.lock().unwrap();
                    let response = scripts.front().expect("a script")(&body);
                    if scripts.len() > 1 {
                        scripts.pop_front();
                    }
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    FakeCollector { url, seen }
}

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(serde_json::to_vec(body).unwrap().into()))
        .unwrap()
}

/// Stores whatever is submitted, with the given status.
fn store_with(status: StatusCode) -> Script {
    Box::new(move |body| {
        let result: SubmitResult = serde_json::from_slice(body).unwrap();
        json_response(status, &stored(&result))
    })
}

fn refuse_with(status: StatusCode, code: ErrorCode) -> Script {
    Box::new(move |_| json_response(status, &ErrorBody::new(code, "scripted refusal")))
}

async fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

#[test]
fn device_id_is_created_once_private_and_stable() {
    let dir = TempDir::new("device");
    let config = dir.0.join("nested").join("ispeed");
    let first = device_id(&config).unwrap();
    assert_eq!(first.len(), 32);
    assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(device_id(&config).unwrap(), first);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(config.join("device_id"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // No temporary files left behind.
    assert_eq!(std::fs::read_dir(&config).unwrap().count(), 1);
    // Another installation gets another id.
    assert_ne!(device_id(&dir.0.join("other")).unwrap(), first);
    std::fs::write(config.join("device_id"), "garbage").unwrap();
    assert!(device_id(&config).is_err());
}

#[tokio::test]
async fn submitting_to_a_closed_port_is_retryable() {
    let url = closed_port_url().await;
    let error = submit(&url, &sample(1)).await.unwrap_err();
    assert!(
        matches!(error, SubmitError::Retryable { status: None, .. }),
        "{error:?}"
    );
    assert!(!error.is_permanent());
    assert!(matches!(
        discover(&url).await,
        Err(SubmitError::Retryable { .. })
    ));
    assert!(matches!(
        submit("https://127.0.0.1:1", &sample(1)).await,
        Err(SubmitError::InvalidUrl(_))
    ));
}

#[tokio::test]
async fn spool_saves_lists_and_backs_off() {
    let dir = TempDir::new("backoff");
    let spool = Spool::new(&dir.0);
    assert!(spool.pending().unwrap().is_empty());
    let (older, newer) = (sample(1_000), sample(2_000));
    spool.save(&newer).unwrap();
    spool.save(&older).unwrap();
    let file = spool.dir().join(format!("{}.json", older.result_id));
    assert!(file.is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let pending = spool.pending().unwrap();
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0].submission, older, "oldest first, content intact");
    assert_eq!((pending[0].attempts, pending[0].next_attempt_at_ms), (0, 0));

    // The collector is down: the first due entry is tried, the round stops.
    let url = closed_port_url().await;
    let now = now_ms();
    let report = spool.deliver_pending(&url, now, false).await.unwrap();
    assert_eq!(
        (report.delivered, report.rejected, report.still_pending),
        (0, 0, 2)
    );
    assert_eq!(report.errors.len(), 1);
    let pending = spool.pending().unwrap();
    let tried = pending.iter().find(|e| e.submission == older).unwrap();
    assert_eq!(tried.attempts, 1);
    assert!(tried.last_error.is_some());
    let delay = tried.next_attempt_at_ms - now;
    assert!(
        (BACKOFF_BASE_MS / 2..=BACKOFF_BASE_MS).contains(&delay),
        "{delay}"
    );

    // Not due yet: a non-forced round skips it and tries the other one.
    spool.deliver_pending(&url, now, false).await.unwrap();
    let pending = spool.pending().unwrap();
    let attempts = |r: &SubmitResult| {
        pending
            .iter()
            .find(|e| &e.submission == r)
            .unwrap()
            .attempts
    };
    assert_eq!((attempts(&older), attempts(&newer)), (1, 1));

    // Forced: tried again despite the backoff, which doubles.
    spool.deliver_pending(&url, now, true).await.unwrap();
    let again = spool
        .pending()
        .unwrap()
        .into_iter()
        .find(|e| e.submission == older)
        .unwrap();
    assert_eq!(again.attempts, 2);
    assert!(again.next_attempt_at_ms - now >= BACKOFF_BASE_MS);
}

#[tokio::test]
async fn delivered_results_leave_the_spool_and_retries_are_idempotent() {
    let collector = fake_collector(vec![
        store_with(StatusCode::CREATED),
        store_with(StatusCode::OK),
    ])
    .await;
    let dir = TempDir::new("deliver");
    let spool = Spool::new(&dir.0);
    let result = sample(5);
    spool.save(&result).unwrap();

    let first = submit(&collector.url, &result).await.unwrap();
    assert!(first.created);
    assert_eq!(first.record.result_id, result.result_id);
    // The acknowledgement "got lost": the spool still holds it and delivers
    // it again, which the collector answers with 200.
    let report = spool
        .deliver_pending(&collector.url, now_ms(), false)
        .await
        .unwrap();
    assert_eq!(
        (report.delivered, report.rejected, report.still_pending),
        (1, 0, 0)
    );
    assert!(report.errors.is_empty());
    assert!(spool.pending().unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(spool.dir()).unwrap().count(),
        0,
        "no leftovers"
    );

    let seen = collector.seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].0, "POST /api/v1/results");
    assert_eq!(seen[0].1["content-type"], "application/json");
}

#[tokio::test]
async fn rejected_results_move_aside_with_their_error() {
    let collector = fake_collector(vec![refuse_with(
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::BadSignature,
    )])
    .await;
    let dir = TempDir::new("reject");
    let spool = Spool::new(&dir.0);
    let (bad, also_bad) = (sample(1), sample(2));
    spool.save(&bad).unwrap();
    spool.save(&also_bad).unwrap();

    // A rejection does not end the round: it is about that result only.
    let report = spool
        .deliver_pending(&collector.url, 42, false)
        .await
        .unwrap();
    assert_eq!(
        (report.delivered, report.rejected, report.still_pending),
        (0, 2, 0)
    );
    assert!(matches!(
        report.errors[0].1,
        SubmitError::Rejected {
            status: 422,
            code: ErrorCode::BadSignature,
            ..
        }
    ));
    assert!(spool.pending().unwrap().is_empty());
    let rejected = spool.rejected().unwrap();
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0].submission, bad);
    let rejection = rejected[0].rejection.as_ref().unwrap();
    assert_eq!(
        (rejection.status, rejection.code, rejection.at_ms),
        (422, ErrorCode::BadSignature, 42)
    );
    assert!(spool
        .rejected_dir()
        .join(format!("{}.json", bad.result_id))
        .is_file());
}

#[tokio::test]
async fn overload_is_retryable_and_retry_after_is_honoured() {
    let collector = fake_collector(vec![Box::new(|_| {
        let mut response = json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &ErrorBody::new(ErrorCode::StoreUnavailable, "busy"),
        );
        response
            .headers_mut()
            .insert("retry-after", http::HeaderValue::from_static("3600"));
        response
    })])
    .await;
    let dir = TempDir::new("overload");
    let spool = Spool::new(&dir.0);
    let result = sample(1);
    spool.save(&result).unwrap();
    let outcome = submit(&collector.url, &result).await;
    assert!(matches!(
        outcome,
        Err(SubmitError::Retryable {
            status: Some(503),
            retry_after_s: Some(3600),
            ..
        })
    ));
    assert_eq!(
        spool.settle(&result, &outcome, 0).unwrap(),
        Settled::Pending
    );
    let entry = &spool.pending().unwrap()[0];
    assert_eq!(entry.attempts, 1);
    assert!(entry.next_attempt_at_ms >= 3_600_000);
}

#[tokio::test]
async fn discovery_resolves_urls_against_the_collector() {
    let listing = serde_json::json!({ "test_points": [
        { "id": "local", "url": "/", "public_key": "k1", "name": null, "province_code": null },
        { "id": "far", "url": "http://tp.example:8080/", "public_key": "k2",
          "name": "Far", "province_code": "01" },
    ]});
    let collector = fake_collector(vec![Box::new(move |_| {
        json_response(StatusCode::OK, &listing)
    })])
    .await;
    let points = discover(&collector.url).await.unwrap();
    assert_eq!(points.len(), 2);
    assert_eq!(
        (points[0].id.as_str(), points[0].url.as_str()),
        ("local", collector.url.as_str())
    );
    assert_eq!(points[1].url, "http://tp.example:8080");
    assert_eq!(points[1].province_code.as_deref(), Some("01"));
    assert_eq!(
        collector.seen.lock().unwrap()[0].0,
        "GET /api/v1/test-points"
    );
}
