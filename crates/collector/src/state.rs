//! The collector's shared state and its ingest path.

use std::sync::{Arc, RwLock};

use axum::http::StatusCode;
use ispeed_enrich::{IspResolver, MmdbTable, Units, WardIndex};
use ispeed_proto::results::{StoredResult, SubmitResult};
use ispeed_proto::ErrorCode;

use crate::config::CollectorConfig;
use crate::error::ApiFailure;
use crate::store::{InsertOutcome, Store, StoreError, TestPointRecord};
use crate::verify::{body_hash, build_record, Enricher, Verifier};

/// Why the collector could not start.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot load enrichment data: {0}")]
    Enrich(#[from] ispeed_enrich::EnrichError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    TestPoint(#[from] ispeed_server::ServerError),
    #[error("cannot read listener address: {0}")]
    Listener(std::io::Error),
    #[error("cannot load the embedded maps: {0}")]
    Maps(#[from] ispeed_web::map::MapError),
}

/// Cheaply clonable handle on the collector.
#[derive(Clone)]
pub struct CollectorState(Arc<Inner>);

pub struct Inner {
    pub config: CollectorConfig,
    pub store: Arc<dyn Store>,
    pub enricher: Enricher,
    /// Display geometry of the provinces and wards, for the pages' maps.
    pub maps: ispeed_web::map::Maps,
    verifier: RwLock<Arc<Verifier>>,
    device_key: [u8; 32],
}

impl std::ops::Deref for CollectorState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Loads the embedded units, ward polygons and ISP table (CPU-bound, once).
pub fn load_enricher(config: &CollectorConfig) -> Result<Enricher, CollectorError> {
    let isps = match &config.mmdb {
        Some(path) => IspResolver::with_table(Box::new(MmdbTable::open(path)?))?,
        None => IspResolver::embedded()?,
    };
    Ok(Enricher {
        units: Units::embedded()?,
        wards: WardIndex::embedded()?,
        isps,
    })
}

impl CollectorState {
    /// Prepares the collector over an open store: loads enrichment data and
    /// registers the test points of the config file.
    pub async fn open(
        config: CollectorConfig,
        store: Arc<dyn Store>,
    ) -> Result<CollectorState, CollectorError> {
        let enricher = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || load_enricher(&config))
                .await
                .map_err(|e| CollectorError::Store(StoreError::Open(e.to_string())))??
        };
        let maps = tokio::task::spawn_blocking(ispeed_web::map::Maps::embedded)
            .await
            .map_err(|e| CollectorError::Store(StoreError::Open(e.to_string())))??;
        // The config file is authoritative: a key removed from it (say,
        // compromised) stops being trusted at the next start. The local test
        // point is registered again by `run` right after.
        for mut known in store.test_points().await? {
            if known.approved && !config.test_points.iter().any(|tp| tp.id == known.id) {
                known.approved = false;
                store.upsert_test_point(known).await?;
            }
        }
        for tp in &config.test_points {
            store
                .upsert_test_point(TestPointRecord {
                    id: tp.id.clone(),
                    public_key: tp.public_key.clone(),
                    url: tp.url.clone(),
                    name: tp.name.clone(),
                    province_code: tp.province_code.clone(),
                    line_rate_mbps: tp
                        .line_rate_mbps
                        .unwrap_or(ispeed_server::config::DEFAULT_LINE_RATE_MBPS),
                    approved: true,
                })
                .await?;
        }
        let device_key = store.device_hash_key().await?;
        let max_age_ms = config.receipt_max_age.as_millis() as u64;
        let verifier = Verifier::new(&store.test_points().await?, max_age_ms);
        Ok(CollectorState(Arc::new(Inner {
            config,
            store,
            enricher,
            maps,
            verifier: RwLock::new(Arc::new(verifier)),
            device_key,
        })))
    }

    /// Approves (or updates) a test point and starts trusting its key.
    pub async fn register_test_point(&self, record: TestPointRecord) -> Result<(), StoreError> {
        self.store.upsert_test_point(record).await?;
        let max_age_ms = self.config.receipt_max_age.as_millis() as u64;
        let verifier = Verifier::new(&self.store.test_points().await?, max_age_ms);
        *self.verifier.write().expect("verifier lock") = Arc::new(verifier);
        Ok(())
    }

    pub fn device_key(&self) -> &[u8; 32] {
        &self.device_key
    }

    /// Verifies, enriches and stores one submission. `201` when stored now,
    /// `200` when the same result was stored before.
    pub async fn submit(
        &self,
        submission: SubmitResult,
        now_ms: u64,
    ) -> Result<(StatusCode, StoredResult), ApiFailure> {
        let verifier = self.verifier.read().expect("verifier lock").clone();
        let checked = verifier
            .verify(&submission, now_ms)
            .and_then(|(payload, trusted, aged)| {
                let record = build_record(
                    &submission,
                    &payload,
                    trusted,
                    &self.enricher,
                    &self.device_key,
                    &verifier.tolerance,
                    now_ms,
                )?;
                match aged {
                    Some(refusal) => Err(refusal),
                    None => Ok(record),
                }
            });
        let record = match checked {
            Ok(record) => record,
            Err(refusal) => {
                // A retry of a result stored before is the idempotent success
                // it always was, even if its receipt has aged out or its test
                // point has been withdrawn since.
                return match self.store.get(submission.result_id).await? {
                    Some(row) if row.body_hash == body_hash(&submission) => {
                        Ok((StatusCode::OK, row.record))
                    }
                    _ => Err(refusal.into()),
                };
            }
        };
        let outcome = self.store.insert(vec![record]).await?.pop();
        match outcome {
            Some(InsertOutcome::Created(stored)) => Ok((StatusCode::CREATED, stored)),
            Some(InsertOutcome::Existing(stored)) => Ok((StatusCode::OK, stored)),
            Some(InsertOutcome::Conflict) => Err(ApiFailure::new(
                ErrorCode::ResultConflict,
                "a different result with this result_id is already stored",
            )),
            Some(InsertOutcome::ReceiptReused) => Err(ApiFailure::new(
                ErrorCode::ReceiptReused,
                "this receipt already backs another result",
            )),
            None => Err(ApiFailure::new(
                ErrorCode::Internal,
                "store returned no outcome",
            )),
        }
    }
}
