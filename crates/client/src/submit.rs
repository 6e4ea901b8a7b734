//! Talking to a collector (`spec/results.md` §4): discovering its test
//! points, submitting a result, and a durable on-disk spool so that a result
//! is never lost when the collector cannot be reached.
//!
//! Delivery is at-least-once from here and exactly-once overall: the
//! collector stores a `result_id` once and answers a resubmission of the
//! same content with `200`, so re-sending after a lost acknowledgement is
//! safe. Only `http://` collectors are supported, like test points.
//!
//! The spool uses blocking file I/O: its files are a few KiB and this runs in
//! a command-line client, not on a server's hot path.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use ispeed_proto::registry::{self, Located};
use ispeed_proto::results::{
    paths, Access, ClientInfo, ClientKind, ClientMetrics, Location, StoredResult, SubmitResult,
    TestPoints,
};
use ispeed_proto::{ErrorBody, ErrorCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::http::connect_tcp;
use crate::target::Target;
use crate::{ClientError, TestResult};

/// Longest one collector exchange may take. Generous: storing a result is a
/// durable write on the collector's side.
pub const COLLECTOR_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest collector answer read (a stored record, a list, a report).
const MAX_RESPONSE_BYTES: usize = 8 << 20;
/// First retry delay of a spooled result; doubles per failed attempt.
pub const BACKOFF_BASE_MS: u64 = 30_000;
/// Longest retry delay of a spooled result.
pub const BACKOFF_MAX_MS: u64 = 6 * 3600 * 1000;

/// Why talking to the collector did not work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubmitError {
    /// The collector URL cannot be used at all (a configuration error).
    #[error("collector URL unusable: {0}")]
    InvalidUrl(String),
    /// Worth trying again later: no connection, a timeout, `408`, `429` or
    /// `5xx`. `retry_after_s` is the collector's `Retry-After`, if any.
    #[error("collector unavailable: {message}")]
    Retryable {
        status: Option<u16>,
        message: String,
        retry_after_s: Option<u64>,
    },
    /// The collector refused this request for good (a typed `4xx`).
    #[error("collector rejected the result ({status} {}): {message}", code.as_str())]
    Rejected {
        status: u16,
        code: ErrorCode,
        message: String,
    },
    /// The collector answered something this client does not understand
    /// (e.g. a `4xx` without a typed error, from a proxy or a wrong URL).
    /// Not a verdict on the result, so a spooled result stays pending.
    #[error("unexpected answer from the collector: {0}")]
    Protocol(String),
}

impl SubmitError {
    /// True only when sending the same request again can never succeed.
    pub fn is_permanent(&self) -> bool {
        matches!(self, SubmitError::Rejected { .. })
    }

    fn retryable(message: impl Into<String>) -> SubmitError {
        SubmitError::Retryable {
            status: None,
            message: message.into(),
            retry_after_s: None,
        }
    }
}

/// A test point from the collector's list, with an absolute URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedTestPoint {
    pub id: String,
    /// Absolute base URL, without a trailing `/`.
    pub url: String,
    /// The key its receipts must verify with for the collector to accept them.
    pub public_key: String,
    pub name: Option<String>,
    pub province_code: Option<String>,
}

/// A result the collector holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub record: StoredResult,
    /// `true` when this request stored it (`201`), `false` when it was
    /// already stored with the same content (`200`, a retry).
    pub created: bool,
}

/// The test points a collector offers, in its order, URLs made absolute.
pub async fn discover(collector_url: &str) -> Result<Vec<ResolvedTestPoint>, SubmitError> {
    let (status, _, body) = exchange(collector_url, Method::GET, paths::TEST_POINTS, None).await?;
    if status != StatusCode::OK {
        return Err(error_from(status, None, &body));
    }
    let list: TestPoints = parse(&body)?;
    list.test_points
        .into_iter()
        .map(|entry| {
            Ok(ResolvedTestPoint {
                url: resolve_url(collector_url, &entry.url)?,
                id: entry.id,
                public_key: entry.public_key,
                name: entry.name,
                province_code: entry.province_code,
            })
        })
        .collect()
}

/// Asks the collector's locate for ranked candidates (`query` is the query
/// string without `?`, e.g. `lat=21.0&lon=105.8`); their URLs made absolute.
pub async fn locate(collector_url: &str, query: &str) -> Result<Located, SubmitError> {
    let path = if query.is_empty() {
        registry::paths::LOCATE.to_owned()
    } else {
        format!("{}?{query}", registry::paths::LOCATE)
    };
    let (status, retry_after_s, body) = exchange(collector_url, Method::GET, &path, None).await?;
    if status != StatusCode::OK {
        return Err(error_from(status, retry_after_s, &body));
    }
    let mut located: Located = parse(&body)?;
    for candidate in &mut located.candidates {
        candidate.url = resolve_url(collector_url, &candidate.url)?;
    }
    Ok(located)
}

/// Resolves a test point URL from the collector's list: absolute URLs stay
/// as they are, `/path` is on the collector's origin, and anything else is
/// below the collector URL's own path.
pub fn resolve_url(collector_url: &str, url: &str) -> Result<String, SubmitError> {
    if url.contains("://") {
        return Ok(url.trim_end_matches('/').to_owned());
    }
    let base: http::Uri = collector_url
        .parse()
        .map_err(|e| SubmitError::InvalidUrl(format!("{collector_url}: {e}")))?;
    let (Some(scheme), Some(authority)) = (base.scheme_str(), base.authority()) else {
        return Err(SubmitError::InvalidUrl(format!(
            "{collector_url}: not an absolute URL"
        )));
    };
    let resolved = if let Some(rest) = url.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if url.starts_with('/') {
        format!("{scheme}://{authority}{url}")
    } else {
        format!(
            "{scheme}://{authority}{}/{url}",
            base.path().trim_end_matches('/')
        )
    };
    Ok(resolved.trim_end_matches('/').to_owned())
}

/// Sends one result to the collector.
pub async fn submit(collector_url: &str, result: &SubmitResult) -> Result<Submitted, SubmitError> {
    let body = serde_json::to_vec(result)
        .map_err(|e| SubmitError::Protocol(format!("cannot encode the result: {e}")))?;
    let (status, retry_after_s, answer) =
        exchange(collector_url, Method::POST, paths::RESULTS, Some(body)).await?;
    let created = match status {
        StatusCode::CREATED => true,
        StatusCode::OK => false,
        _ => return Err(error_from(status, retry_after_s, &answer)),
    };
    let record: StoredResult = parse(&answer)?;
    if record.result_id != result.result_id {
        return Err(SubmitError::Protocol(format!(
            "collector stored {} for result {}",
            record.result_id, result.result_id
        )));
    }
    Ok(Submitted { record, created })
}

/// The submission for a finished test. Metrics are the client's own figures
/// (the collector compares them with the receipt's); the receipt goes verbatim.
pub fn build_submission(
    result: &TestResult,
    device_id: &str,
    access: Access,
    location: Option<Location>,
    ward_code: Option<String>,
    client_kind: ClientKind,
) -> SubmitResult {
    SubmitResult {
        result_id: Uuid::new_v4(),
        device_id: device_id.to_owned(),
        measured_at_ms: now_ms(),
        client: ClientInfo {
            kind: client_kind,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        },
        access,
        location,
        ward_code,
        legacy_ward_code: None,
        metrics: ClientMetrics {
            download_mbps: result.client_measured.download_mbps,
            upload_mbps: result.client_measured.upload_sent_mbps,
            latency_ms: result.latency_ms,
            jitter_ms: result.jitter_ms,
            loaded_latency_download_ms: result.loaded_latency_ms.download,
            loaded_latency_upload_ms: result.loaded_latency_ms.upload,
            ipv6_capable: result.ipv6_capable,
        },
        receipt: result.receipt.clone(),
        source: None,
        download_receipt: result.download_receipt.clone(),
    }
}

/// Unix time in milliseconds, by this machine's clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One request on a fresh connection: status, `Retry-After` seconds, body.
async fn exchange(
    collector_url: &str,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<(StatusCode, Option<u64>, Bytes), SubmitError> {
    exchange_as(collector_url, method, path, body, None).await
}

/// `GET` on the collector: the body of a `200`, or the typed refusal.
pub async fn fetch(collector_url: &str, path: &str) -> Result<Bytes, SubmitError> {
    let (status, retry_after, body) = exchange(collector_url, Method::GET, path, None).await?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(error_from(status, retry_after, &body))
    }
}

/// A request to the collector's admin API with a bearer token: status and
/// body, or the typed refusal.
pub async fn admin_request(
    collector_url: &str,
    method: Method,
    path: &str,
    token: &str,
) -> Result<Bytes, SubmitError> {
    admin_request_with_body(collector_url, method, path, token, None).await
}

/// Like [`admin_request`], with a JSON body.
pub async fn admin_request_with_body(
    collector_url: &str,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Vec<u8>>,
) -> Result<Bytes, SubmitError> {
    let (status, retry_after, body) =
        exchange_as(collector_url, method, path, body, Some(token)).await?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(error_from(status, retry_after, &body))
    }
}

async fn exchange_as(
    collector_url: &str,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    bearer: Option<&str>,
) -> Result<(StatusCode, Option<u64>, Bytes), SubmitError> {
    let target =
        Target::parse(collector_url).map_err(|e| SubmitError::InvalidUrl(e.to_string()))?;
    let run = async {
        let endpoint = target.resolve(None).await.map_err(unreachable)?;
        let (stream, _) = connect_tcp(endpoint.addr).await.map_err(unreachable)?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SubmitError::retryable(format!("HTTP handshake failed: {e}")))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut request = Request::builder()
            .method(method)
            .uri(endpoint.uri(path))
            .header(header::HOST, &endpoint.authority)
            .header(
                header::USER_AGENT,
                concat!("ispeed/", env!("CARGO_PKG_VERSION")),
            )
            .header(header::ACCEPT, "application/json");
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(token) = bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| SubmitError::InvalidUrl(format!("cannot build a request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| SubmitError::retryable(format!("request failed: {e}")))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| SubmitError::retryable(format!("reading the answer failed: {e}")))?
            .to_bytes();
        Ok((status, retry_after, body))
    };
    tokio::time::timeout(COLLECTOR_TIMEOUT, run)
        .await
        .map_err(|_| SubmitError::retryable(format!("no answer within {COLLECTOR_TIMEOUT:?}")))?
}

/// A connection that could not be made; the engine's wording names a test
/// point, so only its detail is kept.
fn unreachable(error: ClientError) -> SubmitError {
    match error {
        ClientError::Unreachable(detail) | ClientError::Lost(detail) => {
            SubmitError::retryable(detail)
        }
        other => SubmitError::retryable(other.to_string()),
    }
}

/// Classifies a status that is not the expected success.
fn error_from(status: StatusCode, retry_after_s: Option<u64>, body: &[u8]) -> SubmitError {
    let typed = serde_json::from_slice::<ErrorBody>(body).ok();
    let code = status.as_u16();
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        return SubmitError::Retryable {
            status: Some(code),
            message: typed.map_or_else(|| status.to_string(), |t| t.error.message),
            retry_after_s,
        };
    }
    match typed {
        Some(typed) if status.is_client_error() => SubmitError::Rejected {
            status: code,
            code: typed.error.code,
            message: typed.error.message,
        },
        _ => SubmitError::Protocol(format!("collector answered {status} without a typed error")),
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, SubmitError> {
    serde_json::from_slice(body)
        .map_err(|e| SubmitError::Protocol(format!("unexpected response body: {e}")))
}

/// Where ispeed keeps its state: `$ISPEED_CONFIG_DIR`, else
/// `$XDG_CONFIG_HOME/ispeed`, else `$HOME/.config/ispeed`.
pub fn config_dir() -> PathBuf {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("ISPEED_CONFIG_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(xdg) = var("XDG_CONFIG_HOME").map(PathBuf::from) {
        // The XDG spec says relative values are invalid and to be ignored.
        if xdg.is_absolute() {
            return xdg.join("ispeed");
        }
    }
    match var("HOME") {
        Some(home) => PathBuf::from(home).join(".config").join("ispeed"),
        None => PathBuf::from(".ispeed"),
    }
}

/// This installation's device id (128 random bits, 32 hex digits), created
/// once at `<config_dir>/device_id` with mode 0600 and reused after.
pub fn device_id(config_dir: &Path) -> io::Result<String> {
    let path = config_dir.join("device_id");
    match fs::read_to_string(&path) {
        Ok(text) => return check_device_id(&path, text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    create_dir_private(config_dir)?;
    let mut bits = [0u8; 16];
    random(&mut bits)?;
    let id: String = bits.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = write_tmp(config_dir, "device_id", id.as_bytes())?;
    // A hard link never replaces an existing file, so two first runs racing
    // each other both end up with whichever id was linked first.
    let linked = fs::hard_link(&tmp, &path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(config_dir)?;
            Ok(id)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            check_device_id(&path, fs::read_to_string(&path)?)
        }
        Err(e) => Err(e),
    }
}

fn check_device_id(path: &Path, text: String) -> io::Result<String> {
    let id = text.trim();
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_owned())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} does not hold 32 hex digits; remove it to make a new device id",
                path.display()
            ),
        ))
    }
}

/// A spooled result: the submission exactly as it will be sent, and its
/// delivery state. This is the JSON of each spool file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpoolEntry {
    /// Failed delivery attempts so far.
    pub attempts: u32,
    /// Unix ms before which a non-forced delivery skips it.
    pub next_attempt_at_ms: u64,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Set once the collector rejected it for good (files in `rejected/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection: Option<Rejection>,
    pub submission: SubmitResult,
}

/// The collector's permanent refusal of a spooled result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    pub status: u16,
    pub code: ErrorCode,
    pub message: String,
    pub at_ms: u64,
}

/// What became of a spooled result after one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Stored by the collector; the spool file is gone.
    Delivered,
    /// Refused for good; moved to `spool/rejected/`.
    Rejected,
    /// Still pending, retried after the backoff.
    Pending,
}

/// The outcome of [`Spool::deliver_pending`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryReport {
    pub delivered: usize,
    pub rejected: usize,
    /// Files left in the spool afterwards (not yet due, failed again, or not
    /// tried because the collector was unavailable).
    pub still_pending: usize,
    /// The rejections, and the error that ended the round early, if any.
    pub errors: Vec<(Uuid, SubmitError)>,
}

/// Results waiting for the collector, one JSON file each, at
/// `<config_dir>/spool/<result_id>.json`; permanent rejections are kept in
/// `spool/rejected/`, never deleted.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    pub fn new(config_dir: &Path) -> Spool {
        Spool {
            dir: config_dir.join("spool"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn rejected_dir(&self) -> PathBuf {
        self.dir.join("rejected")
    }

    fn path(&self, id: &Uuid) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Stores a result durably (written, synced, renamed into place, the
    /// directory synced), due at once. Only after this returns may the
    /// result be reported as spooled.
    pub fn save(&self, submission: &SubmitResult) -> io::Result<()> {
        self.write(
            &self.dir,
            &SpoolEntry {
                attempts: 0,
                next_attempt_at_ms: 0,
                last_error: None,
                rejection: None,
                submission: submission.clone(),
            },
        )
    }

    /// The spooled results, oldest measurement first. A file that does not
    /// parse is left in place and skipped (logged).
    pub fn pending(&self) -> io::Result<Vec<SpoolEntry>> {
        list(&self.dir)
    }

    /// The rejected results.
    pub fn rejected(&self) -> io::Result<Vec<SpoolEntry>> {
        list(&self.rejected_dir())
    }

    /// Applies the outcome of one delivery attempt of a spooled result:
    /// delivered → removed; rejected → moved to `rejected/` with the error;
    /// anything else → attempts bumped and the next attempt backed off.
    pub fn settle(
        &self,
        submission: &SubmitResult,
        outcome: &Result<Submitted, SubmitError>,
        now_ms: u64,
    ) -> io::Result<Settled> {
        let path = self.path(&submission.result_id);
        match outcome {
            Ok(_) => {
                remove_if_present(&path)?;
                sync_dir(&self.dir)?;
                Ok(Settled::Delivered)
            }
            Err(SubmitError::Rejected {
                status,
                code,
                message,
            }) => {
                let mut entry = self.read_or_new(&path, submission);
                entry.last_error = Some(outcome.as_ref().unwrap_err().to_string());
                entry.rejection = Some(Rejection {
                    status: *status,
                    code: *code,
                    message: message.clone(),
                    at_ms: now_ms,
                });
                // Written there before removed here: a crash in between
                // leaves a pending copy, which is rejected again, not lost.
                self.write(&self.rejected_dir(), &entry)?;
                remove_if_present(&path)?;
                sync_dir(&self.dir)?;
                Ok(Settled::Rejected)
            }
            Err(error) => {
                let mut entry = self.read_or_new(&path, submission);
                entry.attempts = entry.attempts.saturating_add(1);
                let retry_after_ms = match error {
                    SubmitError::Retryable {
                        retry_after_s: Some(s),
                        ..
                    } => s.saturating_mul(1000),
                    _ => 0,
                };
                entry.next_attempt_at_ms =
                    now_ms.saturating_add(backoff_ms(entry.attempts, jitter()).max(retry_after_ms));
                entry.last_error = Some(error.to_string());
                self.write(&self.dir, &entry)?;
                Ok(Settled::Pending)
            }
        }
    }

    /// Tries to deliver the spooled results that are due (all of them when
    /// `force`), oldest first. The round stops at the first failure that is
    /// not a rejection: the collector is unwell, and every later attempt
    /// would only wait for the same timeout.
    pub async fn deliver_pending(
        &self,
        collector_url: &str,
        now_ms: u64,
        force: bool,
    ) -> io::Result<DeliveryReport> {
        let mut report = DeliveryReport::default();
        for entry in self.pending()? {
            if !force && entry.next_attempt_at_ms > now_ms {
                continue;
            }
            let outcome = submit(collector_url, &entry.submission).await;
            if let Err(SubmitError::InvalidUrl(_)) = outcome {
                // Not this result's fault: leave its backoff alone.
                report
                    .errors
                    .push((entry.submission.result_id, outcome.unwrap_err()));
                break;
            }
            match self.settle(&entry.submission, &outcome, now_ms)? {
                Settled::Delivered => report.delivered += 1,
                Settled::Rejected => report.rejected += 1,
                Settled::Pending => {}
            }
            if let Err(error) = outcome {
                let stop = !error.is_permanent();
                report.errors.push((entry.submission.result_id, error));
                if stop {
                    break;
                }
            }
        }
        report.still_pending = count_json(&self.dir)?;
        Ok(report)
    }

    /// The entry on disk, or a fresh one for a result that was never spooled.
    fn read_or_new(&self, path: &Path, submission: &SubmitResult) -> SpoolEntry {
        read_entry(path).unwrap_or_else(|_| SpoolEntry {
            attempts: 0,
            next_attempt_at_ms: 0,
            last_error: None,
            rejection: None,
            submission: submission.clone(),
        })
    }

    fn write(&self, dir: &Path, entry: &SpoolEntry) -> io::Result<()> {
        create_dir_private(dir)?;
        let name = format!("{}.json", entry.submission.result_id);
        let bytes = serde_json::to_vec_pretty(entry).map_err(io::Error::other)?;
        let tmp = write_tmp(dir, &name, &bytes)?;
        if let Err(e) = fs::rename(&tmp, dir.join(&name)) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        sync_dir(dir)
    }
}

/// Delay before attempt `attempts + 1`: 30 s doubling up to 6 h, scaled by
/// `jitter` in [0.5, 1] so that clients that failed together do not all
/// come back together.
pub fn backoff_ms(attempts: u32, jitter: f64) -> u64 {
    let doublings = attempts.saturating_sub(1).min(20);
    let full = BACKOFF_BASE_MS
        .saturating_mul(1 << doublings)
        .min(BACKOFF_MAX_MS);
    (full as f64 * jitter.clamp(0.5, 1.0)) as u64
}

fn random(bytes: &mut [u8]) -> io::Result<()> {
    getrandom::fill(bytes).map_err(|e| io::Error::other(format!("no randomness: {e}")))
}

fn jitter() -> f64 {
    let mut bytes = [0u8; 8];
    // Without randomness, no jitter: still a correct backoff.
    if getrandom::fill(&mut bytes).is_err() {
        return 1.0;
    }
    0.5 + 0.5 * (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

fn list(dir: &Path) -> io::Result<Vec<SpoolEntry>> {
    let mut entries = Vec::new();
    for path in json_files(dir)? {
        match read_entry(&path) {
            Ok(entry) => entries.push(entry),
            Err(e) => tracing::warn!("skipping unreadable spool file {}: {e}", path.display()),
        }
    }
    entries.sort_by_key(|e| (e.submission.measured_at_ms, e.submission.result_id));
    Ok(entries)
}

fn json_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let read = match fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for item in read {
        let path = item?.path();
        if path.is_file() && path.extension().is_some_and(|x| x == "json") {
            files.push(path);
        }
    }
    Ok(files)
}

fn count_json(dir: &Path) -> io::Result<usize> {
    Ok(json_files(dir)?.len())
}

fn read_entry(path: &Path) -> io::Result<SpoolEntry> {
    serde_json::from_slice(&fs::read(path)?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Creates `dir` (and parents) readable only by the user: spool files hold
/// the device id.
fn create_dir_private(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes a new mode-0600 temporary file next to `name` in `dir` and syncs
/// it; the caller renames or links it into place.
fn write_tmp(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    let mut nonce = [0u8; 8];
    random(&mut nonce)?;
    let tmp = dir.join(format!(
        ".{name}.{}.{:016x}.tmp",
        std::process::id(),
        u64::from_le_bytes(nonce)
    ));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    match written {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Makes a rename or unlink in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_within_jitter() {
        assert_eq!(backoff_ms(1, 1.0), 30_000);
        assert_eq!(backoff_ms(2, 1.0), 60_000);
        assert_eq!(backoff_ms(3, 0.5), 60_000);
        assert_eq!(backoff_ms(40, 1.0), BACKOFF_MAX_MS);
        for _ in 0..100 {
            let j = jitter();
            assert!((0.5..=1.0).contains(&j));
        }
    }

    #[test]
    fn resolves_test_point_urls() {
        let c = "http://collector.example:8080/base/";
        let r = |u| resolve_url(c, u).unwrap();
        assert_eq!(r("/"), "http://collector.example:8080");
        assert_eq!(r("/tp"), "http://collector.example:8080/tp");
        assert_eq!(r("tp1/"), "http://collector.example:8080/base/tp1");
        assert_eq!(r("//tp.example"), "http://tp.example");
        assert_eq!(r("http://tp.example:81/"), "http://tp.example:81");
        assert!(resolve_url("nonsense", "/").is_err());
    }

    #[test]
    fn classifies_statuses() {
        let typed = |code| serde_json::to_vec(&ErrorBody::new(code, "m")).unwrap();
        assert!(matches!(
            error_from(
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                &typed(ErrorCode::BadSignature)
            ),
            SubmitError::Rejected {
                status: 422,
                code: ErrorCode::BadSignature,
                ..
            }
        ));
        assert!(matches!(
            error_from(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(7),
                &typed(ErrorCode::StoreUnavailable)
            ),
            SubmitError::Retryable {
                status: Some(503),
                retry_after_s: Some(7),
                ..
            }
        ));
        assert!(matches!(
            error_from(StatusCode::TOO_MANY_REQUESTS, None, b""),
            SubmitError::Retryable { .. }
        ));
        assert!(matches!(
            error_from(StatusCode::NOT_FOUND, None, b"<html>"),
            SubmitError::Protocol(_)
        ));
    }
}
