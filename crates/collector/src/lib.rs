//! The ispeed collector: receives results with their signed receipts,
//! verifies them (approved key, signature, age, one result per receipt,
//! physically possible values), enriches them (ISP from the address the
//! test point saw, ward and province from coordinates), stores them
//! durably, keeps mergeable rollups and answers statistics from them.
//!
//! A service is [`app`]`(state) -> Router` plus [`run`]`(listeners, config,
//! shutdown)`. This crate must never publish a client-reported number
//! (published values come from receipts), never acknowledge a result before
//! it is durable, never store a raw device id or a full client address, and
//! never block an async worker thread on the database.

pub mod accounts;
pub mod admin;
pub mod api;
pub mod auth;
pub mod campaigns;
pub mod config;
pub mod error;
pub mod generate;
pub mod locate;
pub mod migrate;
pub mod period;
pub mod registry;
pub mod report;
pub mod rollup;
pub mod state;
pub mod stats;
pub mod store;
pub mod units;
pub mod verify;
pub mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use api::{app, routes};
pub use config::{CollectorConfig, RawConfig, StoreLocation};
pub use state::{CollectorError, CollectorState};
pub use store::postgres::{PostgresOptions, PostgresStore};
pub use store::sqlite::{SqliteOptions, SqliteStore};
pub use store::Store;

use store::TestPointRecord;

/// What `ispeed serve` runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub collector: CollectorConfig,
    /// The local test point, if any.
    pub test_point: Option<ispeed_server::ServerConfig>,
    /// Separate addresses for the local test point; empty = share the
    /// collector's listeners.
    pub test_listen: Vec<SocketAddr>,
}

/// Opens the configured store: the embedded SQLite one or PostgreSQL.
pub async fn open_store(config: &CollectorConfig) -> Result<Arc<dyn Store>, CollectorError> {
    let options = store::StoreOptions {
        heavy_tester_cap: config.heavy_tester_cap,
        max_batch: config.max_batch,
    };
    match &config.store {
        StoreLocation::Sqlite(dir) => {
            let dir: PathBuf = dir.clone();
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&dir, options))
                .await
                .map_err(|e| store::StoreError::Open(e.to_string()))??;
            Ok(Arc::new(store))
        }
        StoreLocation::Postgres { url, schema } => {
            let mut store = PostgresStore::open(url, schema.as_deref(), options).await?;
            if let Some(replica) = &config.store_replica {
                store = store.with_read_replica(replica).await?;
            }
            Ok(Arc::new(store))
        }
    }
}

fn local_addrs(listeners: &[TcpListener]) -> Result<Vec<SocketAddr>, CollectorError> {
    listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(CollectorError::Listener)
}

/// Runs the collector (and the local test point) until `shutdown`.
pub async fn run(
    listeners: Vec<TcpListener>,
    config: ServeConfig,
    shutdown: CancellationToken,
) -> Result<(), CollectorError> {
    let store = open_store(&config.collector).await?;
    let state = CollectorState::open(config.collector.clone(), store).await?;
    let bound = local_addrs(&listeners)?;
    let archiver = tokio::spawn(archive_reports(state.clone(), shutdown.clone()));
    let syncer = tokio::spawn(sync_registry(state.clone(), shutdown.clone()));
    tracing::info!(addresses = ?bound, store = %config.collector.store.describe(), "collector listening");
    let Some(tp_config) = config.test_point else {
        serve_plain(listeners, app(state), shutdown).await;
        // The store is released only when every holder of the state is gone.
        let _ = archiver.await;
        let _ = syncer.await;
        return Ok(());
    };
    let grace = tp_config.shutdown_grace;
    let sessions_end = shutdown.child_token();
    let (tp_listeners, url) = if config.test_listen.is_empty() {
        (None, "/".to_owned())
    } else {
        let tp_listeners =
            ispeed_server::bind(&config.test_listen).map_err(CollectorError::Listener)?;
        let url = format!("http://{}", local_addrs(&tp_listeners)?[0]);
        (Some(tp_listeners), url)
    };
    let tp_bound = match &tp_listeners {
        Some(l) => local_addrs(l)?,
        None => bound.clone(),
    };
    let test_point = ispeed_server::prepare(tp_config.clone(), tp_bound, sessions_end.clone())?;
    let mut record = TestPointRecord::configured(
        tp_config.test_point_id.clone(),
        test_point.public_key.clone(),
        url,
        tp_config.line_rate_mbps,
    );
    record.name = Some("local test point".to_owned());
    record.approved_at_ms = Some(api::now_ms());
    state.register_test_point(record).await?;
    state.set_local_test_point(test_point.clone());
    tracing::info!(id = %tp_config.test_point_id, public_key = %test_point.public_key, "local test point registered");
    let liveness = tokio::spawn(local_liveness(
        state.clone(),
        test_point.clone(),
        shutdown.clone(),
    ));
    match tp_listeners {
        None => {
            let router = routes(state).fallback_service(ispeed_server::app(test_point.clone()));
            ispeed_server::serve(listeners, test_point, router, shutdown, sessions_end, grace)
                .await;
        }
        Some(tp_listeners) => {
            let router = ispeed_server::app(test_point.clone());
            let tp_task = tokio::spawn(ispeed_server::serve(
                tp_listeners,
                test_point,
                router,
                shutdown.clone(),
                sessions_end,
                grace,
            ));
            serve_plain(listeners, app(state), shutdown).await;
            let _ = tp_task.await;
        }
    }
    let _ = archiver.await;
    let _ = syncer.await;
    let _ = liveness.await;
    Ok(())
}

/// How often an instance on a shared store reads back the other instances'
/// registrations and heartbeats.
const REGISTRY_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// On a store several instances share: follow their test-point records
/// and liveness (a heartbeat or an approval reaches only one of them).
async fn sync_registry(state: CollectorState, shutdown: CancellationToken) {
    if !state.store.shared() {
        return;
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(REGISTRY_SYNC_INTERVAL) => {}
        }
        if let Err(error) = state.sync_from_store(api::now_ms()).await {
            tracing::warn!(%error, "registry not synchronised from the store; will retry");
        }
    }
}

/// Keeps the local test point alive in the registry with its current load,
/// as heartbeats do for remote ones (no signature: it is this process).
async fn local_liveness(
    state: CollectorState,
    test_point: ispeed_server::AppState,
    shutdown: CancellationToken,
) {
    use ispeed_proto::registry::{Capacity, Load, HEARTBEAT_INTERVAL_S};
    let capacity = Capacity {
        max_sessions: test_point.config.max_sessions,
        line_rate_mbps: test_point.config.line_rate_mbps,
    };
    loop {
        let load = Load {
            active_sessions: test_point.activity().0 as u32,
            ..Load::default()
        };
        state.mark_local_alive(
            &test_point.config.test_point_id,
            load,
            capacity,
            api::now_ms(),
        );
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(HEARTBEAT_INTERVAL_S)) => {}
        }
    }
}

/// Keeps the last closed month's reports in `<data>/reports/`: checked at
/// start and every hour, so they appear on the 1st (ICT) and are kept.
async fn archive_reports(state: CollectorState, shutdown: CancellationToken) {
    loop {
        // Stopping drops a half-written set; it has no `complete` marker and
        // is written again at the next start.
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            outcome = report::archive_last_month(&state, api::now_ms()) => outcome,
        };
        match outcome {
            Ok(Some(month)) => tracing::info!(%month, "monthly reports archived"),
            Ok(None) => {}
            Err(failure) => {
                tracing::warn!(message = %failure.message, "monthly reports not archived")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
        }
    }
}

/// Serves a router on listeners with graceful shutdown.
async fn serve_plain(
    listeners: Vec<TcpListener>,
    router: axum::Router,
    shutdown: CancellationToken,
) {
    let tasks: Vec<_> = listeners
        .into_iter()
        .map(|listener| {
            let router = router.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let service = router.into_make_service_with_connect_info::<SocketAddr>();
                let _ = axum::serve(listener, service)
                    .with_graceful_shutdown(shutdown.cancelled_owned())
                    .await;
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
}
