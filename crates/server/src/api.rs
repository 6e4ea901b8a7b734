//! HTTP handlers of the test point and the router that binds them.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures_util::{SinkExt, StreamExt};
use http_body::Frame;
use http_body_util::BodyExt;
use ispeed_proto::consts::{self, paths, MAX_STREAMS, PROTOCOL, SAMPLE_INTERVAL_MS};
use ispeed_proto::receipt::{Receipt, ReceiptPayload};
use ispeed_proto::wire::{
    CreateSession, Direction, Finish, Finished, Info, Limits, Live, Pong, SessionCreated,
    UploadReceived,
};
use ispeed_proto::ErrorCode;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::error::ApiFailure;
use crate::session::{unix_ms, Session, StreamGuard};
use crate::state::AppState;
use crate::tcpinfo;

/// What the accept loop knows about the connection a request came on.
#[derive(Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// A duplicate of the connection's descriptor, for `TCP_INFO`.
    pub socket: Option<Arc<OwnedFd>>,
    /// Cancelling this closes the connection at once (a stalled reader
    /// cannot otherwise be stopped: the server only writes when it can).
    pub close: CancellationToken,
}

/// The test point's router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route(paths::INFO, get(info))
        .route(paths::SESSIONS, post(create_session))
        .route("/v1/sessions/{id}/download", get(download))
        .route("/v1/sessions/{id}/upload", post(upload).get(upload_ws))
        .route("/v1/sessions/{id}/ping", get(ping))
        .route("/v1/sessions/{id}/live", get(live))
        .route("/v1/sessions/{id}/finish", post(finish))
        .route("/v1/sessions/{id}/checkpoint", post(checkpoint))
        .route(paths::HEALTHZ, get(healthz))
        .route(paths::METRICS, get(metrics))
        .merge(crate::web::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(consts::MAX_JSON_BODY_BYTES))
        .layer(middleware::from_fn(limit_headers))
        .layer(middleware::from_fn_with_state(state.clone(), count_errors))
        .layer(middleware::from_fn(cors))
        .with_state(state)
}

/// Lets a page from any origin run a test here (§2.1): the test point holds
/// no cookies or credentials, so every origin may read its answers. A
/// preflight is answered before routing.
async fn cors(request: Request, next: Next) -> Response {
    let preflight = request.method() == axum::http::Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        response
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("retry-after"),
    );
    response
}

async fn not_found() -> ApiFailure {
    ApiFailure::new(ErrorCode::NotFound, "no such endpoint")
}

async fn method_not_allowed() -> ApiFailure {
    ApiFailure::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this endpoint",
    )
}

/// Refuses requests whose headers exceed the limit with a typed error
/// (hyper itself cuts off far larger ones before any handler runs).
async fn limit_headers(request: Request, next: Next) -> Response {
    let size: usize = request.uri().to_string().len()
        + request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>();
    if size > consts::MAX_HEADER_BYTES {
        return ApiFailure::new(
            ErrorCode::HeadersTooLarge,
            format!(
                "request headers are {size} bytes; the limit is {}",
                consts::MAX_HEADER_BYTES
            ),
        )
        .into_response();
    }
    next.run(request).await
}

async fn count_errors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if let Some(code) = response.extensions().get::<ErrorCode>() {
        state.metrics.count_error(*code);
    }
    response
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn metrics(State(state): State<AppState>) -> Response {
    let (sessions, streams) = state.activity();
    let mut text = state.metrics.render(sessions, streams);
    text.push_str(&format!(
        "# HELP ispeed_max_sessions Sessions this test point admits at once.\n\
         # TYPE ispeed_max_sessions gauge\nispeed_max_sessions {}\n\
         # HELP ispeed_registration_status What the collector last said: 0 nothing yet, 1 pending, 2 approved, 3 revoked.\n\
         # TYPE ispeed_registration_status gauge\nispeed_registration_status {}\n",
        state.config.max_sessions,
        crate::registration::status_gauge(state.registration()),
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

fn limits(state: &AppState) -> Limits {
    let c = &state.config;
    Limits {
        max_sessions: c.max_sessions,
        max_streams: MAX_STREAMS,
        max_seconds_per_direction: c.max_per_direction.as_secs_f64(),
        session_ttl_s: c.session_ttl.as_secs_f64(),
        byte_budget: c.byte_budget,
        line_rate_mbps: c.line_rate_mbps,
    }
}

async fn info(State(state): State<AppState>, Extension(conn): Extension<ConnInfo>) -> Json<Info> {
    Json(Info {
        protocol: PROTOCOL.to_owned(),
        server_version: env!("CARGO_PKG_VERSION").to_owned(),
        test_point_id: state.config.test_point_id.clone(),
        public_key: state.public_key.clone(),
        ipv4_url: state
            .config
            .ipv4_url
            .clone()
            .or_else(|| derived_url(&state.bound, &conn, false)),
        ipv6_url: state
            .config
            .ipv6_url
            .clone()
            .or_else(|| derived_url(&state.bound, &conn, true)),
        limits: limits(&state),
    })
}

/// Without a configured URL, a family's URL is derived only where it is sure
/// to be right: a listener bound to a specific address of that family, or a
/// wildcard listener when the asking client is local (then loopback works).
fn derived_url(bound: &[SocketAddr], conn: &ConnInfo, want_v6: bool) -> Option<String> {
    let client_is_local = conn.peer.ip().is_loopback()
        || matches!(conn.peer.ip(), IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()));
    bound.iter().find_map(|addr| {
        let ip = addr.ip();
        if ip.is_ipv6() != want_v6 {
            return None;
        }
        let host = if ip.is_unspecified() {
            if !client_is_local {
                return None;
            }
            if want_v6 {
                IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
            } else {
                IpAddr::from(std::net::Ipv4Addr::LOCALHOST)
            }
        } else {
            ip
        };
        Some(format!("http://{}", SocketAddr::new(host, addr.port())))
    })
}

fn parse_json<T: serde::de::DeserializeOwned + Default>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiFailure> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiFailure::new(
                ErrorCode::PayloadTooLarge,
                format!("request body exceeds {} bytes", consts::MAX_JSON_BODY_BYTES),
            )
        } else {
            ApiFailure::new(ErrorCode::BadRequest, rejection.body_text())
        }
    })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiFailure::new(ErrorCode::MalformedJson, format!("invalid JSON body: {e}")))
}

fn client_addr(peer: SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => peer,
        },
        v4 => v4,
    }
}

async fn create_session(
    State(state): State<AppState>,
    Extension(conn): Extension<ConnInfo>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<SessionCreated>), ApiFailure> {
    let request: CreateSession = parse_json(body)?;
    // The token travels in the body (a browser's text/plain POST needs no
    // preflight) or as a bearer token.
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let token = request.access_token.as_deref().or(bearer);
    let session = state.admit(token, client_addr(conn.peer), unix_ms())?;
    spawn_sampler(session.clone());
    Ok((
        StatusCode::CREATED,
        Json(SessionCreated {
            session_id: session.id.clone(),
            client_addr: session.client_addr.to_string(),
            sample_interval_ms: SAMPLE_INTERVAL_MS,
            limits: limits(&state),
        }),
    ))
}

/// Samples the session's counters while any of its streams is open.
fn spawn_sampler(session: Arc<Session>) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(SAMPLE_INTERVAL_MS));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let until = tokio::time::Instant::from_std(session.expires);
        loop {
            tokio::select! {
                _ = session.cancel.cancelled() => break,
                _ = tokio::time::sleep_until(until) => break,
                _ = interval.tick() => {
                    if session.active_streams() > 0 {
                        session.sample_now();
                    }
                }
            }
        }
    });
}

#[derive(Deserialize)]
struct StreamQuery {
    #[serde(default)]
    stream: u32,
}

fn stream_query(query: Result<Query<StreamQuery>, QueryRejection>) -> Result<u32, ApiFailure> {
    let Query(query) = query.map_err(|e| ApiFailure::new(ErrorCode::BadRequest, e.body_text()))?;
    if query.stream >= MAX_STREAMS * 64 {
        return Err(ApiFailure::new(
            ErrorCode::BadRequest,
            "stream index out of range",
        ));
    }
    Ok(query.stream)
}

/// When this direction must stop serving: its phase's time limit or the session's end.
fn direction_deadline(
    state: &AppState,
    session: &Session,
    direction: Direction,
) -> tokio::time::Instant {
    let phase_start = session
        .phase_start(direction)
        .unwrap_or_else(|| session.created.elapsed());
    let by_phase = session.created + phase_start + state.config.max_per_direction;
    tokio::time::Instant::from_std(by_phase.min(session.expires))
}

async fn download(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<StreamQuery>, QueryRejection>,
    Extension(conn): Extension<ConnInfo>,
    websocket: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiFailure> {
    stream_query(query)?;
    let session = state.session(&id)?;
    // A WebSocket stream registers when the client starts it (§6.4); a
    // request that is not an upgrade gets the HTTP stream (§6.2).
    if let Ok(upgrade) = websocket {
        let socket_fd = conn.socket.clone();
        return Ok(configure(upgrade)
            .on_upgrade(move |socket| download_ws(state, session, socket_fd, socket)));
    }
    let guard = session.start_stream(Direction::Download, conn.socket.clone())?;
    let deadline = direction_deadline(&state, &session, Direction::Download);
    let done = CancellationToken::new();
    // Closes the connection if the stream outlives its deadline or session
    // while the client is not reading (the body is then never polled).
    {
        let (cancel, done, close) = (session.cancel.clone(), done.clone(), conn.close.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = done.cancelled() => return,
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep_until(deadline + Duration::from_secs(1)) => {}
            }
            close.cancel();
        });
    }
    let body = DownloadBody {
        state: state.clone(),
        session,
        guard,
        index: 0,
        since_yield: 0,
        deadline,
        done: done.drop_guard(),
    };
    let mut response = Response::new(Body::new(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    // Intermediaries must neither store nor re-encode the payload.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-transform"),
    );
    Ok(response)
}

/// A stream's task yields to the others after moving this many bytes. The
/// runtime's cooperative budget counts socket operations, not bytes, so
/// without this a connection whose buffers have grown large moves far more
/// per turn than the rest whenever the test point is CPU-bound (many
/// sessions), and per-session throughput stops being fair. At 1 MiB the
/// cost is a few thousand yields per second at loopback rates.
const YIELD_EVERY_BYTES: u64 = 1024 * 1024;

/// The download body: random chunks until the deadline, the byte budget or the session's end.
struct DownloadBody {
    state: AppState,
    session: Arc<Session>,
    guard: StreamGuard,
    index: u64,
    /// Bytes handed out since the task last yielded.
    since_yield: u64,
    deadline: tokio::time::Instant,
    done: tokio_util::sync::DropGuard,
}

impl http_body::Body for DownloadBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.session.cancel.is_cancelled() || tokio::time::Instant::now() >= self.deadline {
            return Poll::Ready(None);
        }
        if self.since_yield >= YIELD_EVERY_BYTES {
            self.since_yield = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let granted = self
            .session
            .take_budget(consts::DOWNLOAD_CHUNK_BYTES as u64);
        if granted == 0 {
            return Poll::Ready(None);
        }
        let chunk = self.state.payload.chunk(self.index, granted as usize);
        self.index += 1;
        let len = chunk.len() as u64;
        self.since_yield += len;
        self.guard.app_bytes.fetch_add(len, Ordering::Relaxed);
        self.state
            .metrics
            .bytes_download
            .fetch_add(len, Ordering::Relaxed);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

impl Drop for DownloadBody {
    fn drop(&mut self) {
        let _ = &self.done;
        if !self.session.cancel.is_cancelled() && tokio::time::Instant::now() < self.deadline {
            // Ended before its deadline: the client stopped or went away.
            self.state
                .metrics
                .streams_closed_by_client
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn upload(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<StreamQuery>, QueryRejection>,
    Extension(conn): Extension<ConnInfo>,
    body: Body,
) -> Result<Json<UploadReceived>, ApiFailure> {
    stream_query(query)?;
    let session = state.session(&id)?;
    let guard = session.start_stream(Direction::Upload, conn.socket.clone())?;
    let deadline = direction_deadline(&state, &session, Direction::Upload);
    let mut body = body;
    let mut received: u64 = 0;
    let mut since_yield: u64 = 0;
    let cut_off = |failure: ApiFailure| {
        state
            .metrics
            .streams_cut_off
            .fetch_add(1, Ordering::Relaxed);
        Err(failure)
    };
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = session.cancel.cancelled() => match session_ended(&state, &session) {
                // The client finished its session while this stream was
                // still draining: the normal end of a test, not an error.
                None => break,
                Some(failure) => return cut_off(failure),
            },
            _ = tokio::time::sleep_until(deadline) => {
                return cut_off(ApiFailure::new(
                    ErrorCode::TimeExceeded,
                    "upload outlived its direction's time limit; the server stopped reading",
                ));
            }
        };
        match frame {
            None => break,
            Some(Err(_)) => {
                // The client closed the stream mid-body: how an upload stream
                // normally ends when the client stops. What arrived is counted,
                // and no response can reach it any more.
                state
                    .metrics
                    .streams_closed_by_client
                    .fetch_add(1, Ordering::Relaxed);
                break;
            }
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                let len = data.len() as u64;
                let granted = session.take_budget(len);
                guard.app_bytes.fetch_add(granted, Ordering::Relaxed);
                state
                    .metrics
                    .bytes_upload
                    .fetch_add(granted, Ordering::Relaxed);
                received += granted;
                since_yield += granted;
                if since_yield >= YIELD_EVERY_BYTES {
                    since_yield = 0;
                    tokio::task::yield_now().await;
                }
                if granted < len {
                    return cut_off(ApiFailure::new(
                        ErrorCode::BudgetExceeded,
                        "upload exceeded the session's byte budget; the server stopped reading",
                    ));
                }
            }
        }
    }
    Ok(Json(UploadReceived { received }))
}

/// Largest WebSocket message a client may send (§6.4); browsers send 1 MiB.
const MAX_WS_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// WebSocket close codes (§6.4): 1000 for a normal end, else 4000 + the
/// HTTP status of the error code, with the code as the reason.
fn close_frame(failure: Option<&ApiFailure>) -> Message {
    let (code, reason) = match failure {
        None => (1000, "done".to_owned()),
        Some(failure) => (
            4000 + failure.code.http_status(),
            failure.code.as_str().to_owned(),
        ),
    };
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

fn configure(upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
    upgrade
        .max_message_size(MAX_WS_MESSAGE_BYTES)
        .max_frame_size(MAX_WS_MESSAGE_BYTES)
}

/// Sends the close frame, waiting at most a second for a client that no longer reads.
async fn close_ws(socket: &mut WebSocket, failure: Option<&ApiFailure>) {
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(close_frame(failure))).await;
}

/// Waits for the client's start message (§6.4), then registers the stream:
/// a browser opens its WebSockets one at a time (one handshake in flight
/// per host), so streams that started on open would start staggered behind
/// a filling queue and never get their share. The counting base is read
/// here, after the handshake and the start message.
async fn start_ws_stream(
    state: &AppState,
    session: &Arc<Session>,
    direction: Direction,
    socket_fd: Option<Arc<OwnedFd>>,
    socket: &mut WebSocket,
) -> Result<(StreamGuard, tokio::time::Instant), Option<ApiFailure>> {
    let expiry = tokio::time::Instant::from_std(session.expires);
    loop {
        tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Err(None),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(_)) => break,
            },
            _ = session.cancel.cancelled() => return Err(session_ended(state, session)),
            _ = tokio::time::sleep_until(expiry) => return Err(Some(ApiFailure::new(
                ErrorCode::SessionExpired,
                "the session expired before the stream started",
            ))),
        }
    }
    let guard = session.start_stream(direction, socket_fd).map_err(Some)?;
    Ok((guard, direction_deadline(state, session, direction)))
}

/// A download stream over a WebSocket (§6.4): once started, binary messages
/// of `DOWNLOAD_CHUNK_BYTES` from the random pool, counted as in §7. The
/// socket is read as well: a client ends the stream with a close frame
/// (answered), and a browser that has closed keeps reading and discarding
/// until the server closes too, which would count as delivered.
async fn download_ws(
    state: AppState,
    session: Arc<Session>,
    socket_fd: Option<Arc<OwnedFd>>,
    mut socket: WebSocket,
) {
    let (guard, deadline) = match start_ws_stream(
        &state,
        &session,
        Direction::Download,
        socket_fd,
        &mut socket,
    )
    .await
    {
        Ok(started) => started,
        Err(failure) => return end_unstarted(socket, failure).await,
    };
    let (mut sink, mut incoming) = socket.split();
    let mut index = 0u64;
    let mut since_yield = 0u64;
    let client_closed = |state: &AppState| {
        state
            .metrics
            .streams_closed_by_client
            .fetch_add(1, Ordering::Relaxed);
    };
    let failure = loop {
        if session.cancel.is_cancelled() {
            break session_ended(&state, &session);
        }
        let granted = session.take_budget(consts::DOWNLOAD_CHUNK_BYTES as u64);
        if granted == 0 {
            break None;
        }
        let chunk = state.payload.chunk(index, granted as usize);
        index += 1;
        guard.app_bytes.fetch_add(granted, Ordering::Relaxed);
        state
            .metrics
            .bytes_download
            .fetch_add(granted, Ordering::Relaxed);
        let closed_by_client = {
            let send = sink.send(Message::Binary(chunk));
            tokio::pin!(send);
            loop {
                tokio::select! {
                    sent = &mut send => break sent.is_err(),
                    message = incoming.next() => match message {
                        // Anything but a close (a ping is answered by the library) is ignored.
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break true,
                        Some(Ok(_)) => {}
                    },
                    _ = session.cancel.cancelled() => break false,
                    _ = tokio::time::sleep_until(deadline) => break false,
                }
            }
        };
        if closed_by_client {
            client_closed(&state);
            // The stream ends now, where the client stopped; then the
            // library's reply to a close frame goes out (a clean close),
            // after whatever it had buffered, uncounted.
            drop(guard);
            let _ = tokio::time::timeout(Duration::from_millis(500), sink.flush()).await;
            return;
        }
        since_yield += granted;
        if since_yield >= YIELD_EVERY_BYTES {
            since_yield = 0;
            tokio::task::yield_now().await;
        }
        if session.cancel.is_cancelled() {
            break session_ended(&state, &session);
        }
        if tokio::time::Instant::now() >= deadline {
            break None;
        }
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        sink.send(close_frame(failure.as_ref())),
    )
    .await;
    drop(guard);
}

/// Opens an upload stream over a WebSocket (§6.4): the client sends binary
/// messages; `GET` without an upgrade is a bad request.
async fn upload_ws(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<StreamQuery>, QueryRejection>,
    Extension(conn): Extension<ConnInfo>,
    websocket: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiFailure> {
    stream_query(query)?;
    let Ok(upgrade) = websocket else {
        return Err(ApiFailure::new(
            ErrorCode::BadRequest,
            "an upload over GET must be a WebSocket upgrade; otherwise POST the payload",
        ));
    };
    let session = state.session(&id)?;
    let socket_fd = conn.socket.clone();
    Ok(configure(upgrade)
        .on_upgrade(move |socket| upload_ws_run(state, session, socket_fd, socket)))
}

/// Ends a WebSocket stream that never started: the typed close, or (the
/// client went away) just the reply to its close.
async fn end_unstarted(mut socket: WebSocket, failure: Option<ApiFailure>) {
    match failure {
        Some(failure) => close_ws(&mut socket, Some(&failure)).await,
        None => {
            let _ = tokio::time::timeout(Duration::from_millis(500), socket.flush()).await;
        }
    }
}

/// An upload stream over a WebSocket (§6.4): once started, every binary
/// message is payload.
async fn upload_ws_run(
    state: AppState,
    session: Arc<Session>,
    socket_fd: Option<Arc<OwnedFd>>,
    mut socket: WebSocket,
) {
    let (guard, deadline) =
        match start_ws_stream(&state, &session, Direction::Upload, socket_fd, &mut socket).await {
            Ok(started) => started,
            Err(failure) => return end_unstarted(socket, failure).await,
        };
    let mut since_yield = 0u64;
    let failure = loop {
        let message = tokio::select! {
            message = socket.recv() => message,
            _ = session.cancel.cancelled() => break session_ended(&state, &session),
            _ = tokio::time::sleep_until(deadline) => break Some(ApiFailure::new(
                ErrorCode::TimeExceeded,
                "upload outlived its direction's time limit; the server stopped reading",
            )),
        };
        let data = match message {
            Some(Ok(Message::Binary(data))) => data,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                state
                    .metrics
                    .streams_closed_by_client
                    .fetch_add(1, Ordering::Relaxed);
                // The stream ends now; then the reply to the close goes out.
                drop(guard);
                let _ = tokio::time::timeout(Duration::from_millis(500), socket.flush()).await;
                return;
            }
            Some(Ok(_)) => continue,
        };
        let len = data.len() as u64;
        let granted = session.take_budget(len);
        guard.app_bytes.fetch_add(granted, Ordering::Relaxed);
        state
            .metrics
            .bytes_upload
            .fetch_add(granted, Ordering::Relaxed);
        if granted < len {
            break Some(ApiFailure::new(
                ErrorCode::BudgetExceeded,
                "upload exceeded the session's byte budget; the server stopped reading",
            ));
        }
        since_yield += granted;
        if since_yield >= YIELD_EVERY_BYTES {
            since_yield = 0;
            tokio::task::yield_now().await;
        }
    };
    if failure.is_some() {
        state
            .metrics
            .streams_cut_off
            .fetch_add(1, Ordering::Relaxed);
    }
    close_ws(&mut socket, failure.as_ref()).await;
    drop(guard);
}

/// Why a session's streams were ended from the server's side: an error
/// (shutdown, expiry), or `None` when the client finished the session.
fn session_ended(state: &AppState, session: &Session) -> Option<ApiFailure> {
    if state.shutdown.is_cancelled() {
        Some(ApiFailure::shutting_down())
    } else if std::time::Instant::now() >= session.expires {
        Some(ApiFailure::new(
            ErrorCode::SessionExpired,
            "session ran out of time during the stream",
        ))
    } else {
        None
    }
}

async fn ping(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Extension(conn): Extension<ConnInfo>,
) -> Result<Json<Pong>, ApiFailure> {
    let session = state.session(&id)?;
    session.record_control_rtt(conn.socket.as_deref().and_then(tcpinfo::read));
    Ok(Json(Pong {
        t_us: session.now_us(),
    }))
}

#[derive(Deserialize)]
struct LiveQuery {
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    advise: Option<Direction>,
}

async fn live(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<LiveQuery>, QueryRejection>,
    Extension(conn): Extension<ConnInfo>,
) -> Result<Json<Live>, ApiFailure> {
    let Query(query) = query.map_err(|e| ApiFailure::new(ErrorCode::BadRequest, e.body_text()))?;
    let session = state.session(&id)?;
    session.record_control_rtt(conn.socket.as_deref().and_then(tcpinfo::read));
    let (samples, tcp) = session.live(query.after);
    // The client's limit per direction: the default, within the test point's.
    let max_us = (consts::DEFAULT_MAX_SECONDS * 1e6)
        .min(state.config.max_per_direction.as_secs_f64() * 1e6) as u64;
    let advice = query
        .advise
        .map(|direction| session.advise(direction, max_us));
    Ok(Json(Live {
        t_us: session.now_us(),
        samples,
        tcp,
        advice,
    }))
}

async fn finish(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Finished>, ApiFailure> {
    // A retried finish gets the receipt already issued, whatever its body.
    if let Some(finished) = state.finished(&id) {
        return Ok(Json((*finished).clone()));
    }
    let request: Finish = parse_json(body)?;
    let session = state.session(&id)?;
    let payload = receipt_payload(&state, &session, request.client_report, false);
    let receipt = Receipt::sign(&payload, &state.key);
    let finished = state.mark_finished(&session, Arc::new(Finished { receipt, payload }));
    Ok(Json((*finished).clone()))
}

/// How long a checkpoint waits for the previous direction's streams to end.
const CHECKPOINT_STREAM_WAIT: Duration = Duration::from_secs(2);

/// A receipt of what the session measured so far, signed while it goes on:
/// if this test point goes away during the next direction, the client can
/// measure that direction elsewhere and still prove the first (§12.1).
async fn checkpoint(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Finished>, ApiFailure> {
    let request: Finish = parse_json(body)?;
    let session = state.session(&id)?;
    // Signed between directions: the client has closed the last direction's
    // streams, and the server sees the closes within moments.
    let deadline = tokio::time::Instant::now() + CHECKPOINT_STREAM_WAIT;
    while session.active_streams() > 0 {
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiFailure::new(
                ErrorCode::BadRequest,
                "a checkpoint is signed between directions, with no stream open",
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let payload = receipt_payload(&state, &session, request.client_report, true);
    let receipt = Receipt::sign(&payload, &state.key);
    Ok(Json(Finished { receipt, payload }))
}

fn receipt_payload(
    state: &AppState,
    session: &Session,
    client_report: ispeed_proto::wire::ClientReport,
    checkpoint: bool,
) -> ReceiptPayload {
    ReceiptPayload {
        v: consts::RECEIPT_VERSION,
        protocol: PROTOCOL.to_owned(),
        session_id: session.id.clone(),
        test_point_id: state.config.test_point_id.clone(),
        key: state.public_key.clone(),
        client_addr: session.client_addr.to_string(),
        ip_version: if session.client_addr.is_ipv4() { 4 } else { 6 },
        started_at_ms: session.created_unix_ms,
        finished_at_ms: unix_ms(),
        download: session.direction_receipt(Direction::Download),
        upload: session.direction_receipt(Direction::Upload),
        latency: session.latency_receipt(),
        client_report,
        checkpoint,
    }
}
