//! The ispeed test point: serves download, upload and latency measurement,
//! counts payload bytes on the server side, and signs a receipt of what it
//! measured.
//!
//! A service is [`app`]`(state) -> Router` plus [`run`]`(listeners, config,
//! shutdown)`; the binary only parses config, binds and calls `run`. This
//! crate must never trust a number the client reports (it only signs it as
//! client-reported), never serve compressible payload, and never keep
//! process-global state.

pub mod api;
pub mod config;
pub mod error;
pub mod key;
pub mod metrics;
pub mod payload;
pub mod registration;
pub mod session;
pub mod state;
pub mod tcpinfo;
pub mod web;

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

pub use api::{app, ConnInfo};
pub use config::{ConfigError, RawConfig, ServerConfig};
pub use state::AppState;

/// Largest request head hyper buffers; beyond the typed-error limit, hyper
/// answers 431 itself.
const MAX_HEAD_BUFFER: usize = 64 * 1024;
/// A client must send its request head within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the test point could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Key(#[from] key::KeyError),
    #[error("cannot generate the random payload: {0}")]
    Payload(getrandom::Error),
    #[error("cannot read listener address: {0}")]
    Listener(std::io::Error),
}

/// Binds every configured address. IPv6 sockets are IPv6-only so that `0.0.0.0`
/// and `[::]` can both be bound on one port.
pub fn bind(addresses: &[SocketAddr]) -> std::io::Result<Vec<TcpListener>> {
    addresses
        .iter()
        .map(|address| {
            let domain = socket2::Domain::for_address(*address);
            let socket =
                socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
            if address.is_ipv6() {
                socket.set_only_v6(true)?;
            }
            socket.set_reuse_address(true)?;
            socket.set_nonblocking(true)?;
            socket.bind(&(*address).into())?;
            socket.listen(1024)?;
            TcpListener::from_std(socket.into())
        })
        .collect()
}

/// Binds the default dual-stack pair (`0.0.0.0` and `[::]` on one port),
/// leaving IPv6 out with a warning on a host without it: a test point
/// should answer on both families wherever it can.
pub fn bind_dual_stack(addresses: &[SocketAddr]) -> std::io::Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    for address in addresses {
        match bind(std::slice::from_ref(address)) {
            Ok(mut bound) => listeners.append(&mut bound),
            Err(error) if address.is_ipv6() => {
                tracing::warn!(%address, %error, "no IPv6 listener: this test point answers on IPv4 only")
            }
            Err(error) => return Err(error),
        }
    }
    Ok(listeners)
}

/// Runs the test point on already bound listeners until `shutdown` is
/// cancelled, then stops accepting, ends every session and waits up to the
/// configured grace period for connections to close before closing the rest.
pub async fn run(
    listeners: Vec<TcpListener>,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let bound = listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(ServerError::Listener)?;
    let grace = config.shutdown_grace;
    let sessions_end = shutdown.child_token();
    let state = prepare(config, bound.clone(), sessions_end.clone())?;
    tracing::info!(addresses = ?bound, public_key = %state.public_key, "test point listening");
    let router = app(state.clone());
    serve(listeners, state, router, shutdown, sessions_end, grace).await;
    Ok(())
}

/// Prepares a test point's state (key loaded or created, payload generated)
/// for embedding in another service that calls [`serve`] with its own router.
pub fn prepare(
    config: ServerConfig,
    bound: Vec<SocketAddr>,
    sessions_end: CancellationToken,
) -> Result<AppState, ServerError> {
    let key = key::load_or_create(&config.key_file)?;
    let payload = payload::PayloadPool::generate().map_err(ServerError::Payload)?;
    Ok(AppState::new(config, key, payload, bound, sessions_end))
}

/// The accept loops and connection tasks for a prepared state. `router` is
/// [`app`]`(state)` or a larger router that falls back to it; every request
/// carries a [`ConnInfo`] extension.
pub async fn serve(
    listeners: Vec<TcpListener>,
    state: AppState,
    router: axum::Router,
    shutdown: CancellationToken,
    sessions_end: CancellationToken,
    grace: Duration,
) {
    let connections = TaskTracker::new();
    let force_close = CancellationToken::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(MAX_HEAD_BUFFER)
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let builder = Arc::new(builder);

    let reaper = {
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => state.reap(),
                }
            }
        })
    };

    let heartbeats = tokio::spawn(registration::heartbeat_loop(
        state.clone(),
        shutdown.clone(),
    ));

    let mut accept_loops = Vec::new();
    for listener in listeners {
        let (router, connections, builder) = (router.clone(), connections.clone(), builder.clone());
        let (shutdown, force_close) = (shutdown.clone(), force_close.clone());
        accept_loops.push(tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok(pair) => pair,
                        Err(error) => {
                            // Out of descriptors or similar: back off instead of spinning.
                            tracing::warn!(%error, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let _ = stream.set_nodelay(true);
                let info = ConnInfo {
                    peer,
                    local: stream.local_addr().unwrap_or(peer),
                    socket: stream.as_fd().try_clone_to_owned().ok().map(Arc::new),
                    close: CancellationToken::new(),
                };
                let close = info.close.clone();
                let router = router.clone();
                let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                    request.extensions_mut().insert(info.clone());
                    router.clone().oneshot(request)
                });
                let builder = builder.clone();
                let (shutdown, force_close) = (shutdown.clone(), force_close.clone());
                connections.spawn(async move {
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    tokio::pin!(connection);
                    let mut draining = false;
                    loop {
                        tokio::select! {
                            _ = connection.as_mut() => break,
                            _ = close.cancelled() => break,
                            _ = force_close.cancelled() => break,
                            _ = shutdown.cancelled(), if !draining => {
                                draining = true;
                                connection.as_mut().graceful_shutdown();
                            }
                        }
                    }
                });
            }
        }));
    }

    shutdown.cancelled().await;
    tracing::info!("shutting down: ending sessions");
    sessions_end.cancel();
    for accept_loop in accept_loops {
        let _ = accept_loop.await;
    }
    let _ = reaper.await;
    let _ = heartbeats.await;
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("grace period over: closing remaining connections");
        force_close.cancel();
        connections.wait().await;
    }
    tracing::info!("test point stopped");
}
