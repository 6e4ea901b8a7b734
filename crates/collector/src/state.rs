//! The collector's shared state and its ingest path.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock, RwLock};

use axum::http::StatusCode;
use ispeed_enrich::{IspResolver, MmdbTable, Units, WardIndex};
use ispeed_proto::receipt::encode_public_key;
use ispeed_proto::registry::{
    AccessClaims, AdminTestPoint, Candidate, Capacity, Heartbeat, HeartbeatAck, Load, LocateClient,
    Located, RegistrationStatus, TestPointClass, HEARTBEAT_INTERVAL_S, LIVENESS_TIMEOUT_S,
    LOCATE_MAX_CANDIDATES,
};
use ispeed_proto::results::{StoredResult, SubmitResult};
use ispeed_proto::{ErrorCode, SigningKey};

use crate::admin::AdminAuth;
use crate::config::CollectorConfig;
use crate::error::ApiFailure;
use crate::locate::{rank, CandidateView, ClientView};
use crate::registry::{Change, Liveness, Registry, RegistryMetrics};
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
    #[error("collector key or admin token: {0}")]
    Key(#[from] ispeed_server::key::KeyError),
}

/// Decodes and checks the stored unit versions (CPU-bound: the blocking pool).
pub async fn load_unit_versions(
    store: &dyn Store,
) -> Result<Vec<(crate::period::Month, Arc<ispeed_enrich::UnitSet>)>, CollectorError> {
    let stored = store.unit_versions().await?;
    tokio::task::spawn_blocking(move || {
        stored
            .into_iter()
            .map(|v| {
                let set = crate::units::decode(&v).map_err(|problems| {
                    CollectorError::Store(StoreError::Corrupt(format!(
                        "unit version {} ({}): {problems}",
                        v.name,
                        crate::period::Month(v.effective_month)
                    )))
                })?;
                Ok((crate::period::Month(v.effective_month), Arc::new(set)))
            })
            .collect()
    })
    .await
    .map_err(|e| CollectorError::Store(StoreError::Open(e.to_string())))?
}

/// A checked `locate` request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LocateRequest {
    /// The client's position, if it shared one.
    pub location: Option<(f64, f64)>,
    /// Its province, when it gives that instead.
    pub province: Option<String>,
    /// Only test points with a URL of this IP version (4 or 6).
    pub family: Option<u8>,
    /// At most this many candidates (1 to 5).
    pub limit: Option<usize>,
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
    /// Test points: records, liveness, load.
    pub registry: Registry,
    pub admin: AdminAuth,
    /// Signs locate's access tokens.
    token_key: SigningKey,
    pub token_public_key: String,
    /// Serialises changes of test point records (heartbeats, approvals).
    registration: tokio::sync::Mutex<()>,
    /// The local test point of `ispeed serve`, for `/metrics`.
    local_test_point: OnceLock<ispeed_server::AppState>,
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
    let units = Units::embedded()?;
    Ok(Enricher {
        legacy: ispeed_enrich::LegacyWards::embedded(&units)?,
        versions: Vec::new(),
        units,
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
        for code in config.quotas.units() {
            let known = if code.len() == 2 {
                enricher.units.province(code).is_some()
            } else {
                enricher.units.ward(code).is_some()
            };
            if !known {
                return Err(CollectorError::Config(
                    crate::config::ConfigError::Invalid {
                        field: "quotas.unit",
                        reason: format!("{code} is not a province or ward of the 2025 units"),
                    },
                ));
            }
        }
        let mut enricher = enricher;
        enricher.versions = load_unit_versions(store.as_ref()).await?;
        let maps = tokio::task::spawn_blocking(ispeed_web::map::Maps::embedded)
            .await
            .map_err(|e| CollectorError::Store(StoreError::Open(e.to_string())))??;
        let (token_key, admin) = {
            let (key_file, token_file) = (
                config.collector_key_file.clone(),
                config.admin_token_file.clone(),
            );
            tokio::task::spawn_blocking(move || {
                Ok::<_, CollectorError>((
                    ispeed_server::key::load_or_create(&key_file)?,
                    AdminAuth::load_or_create(&token_file)?,
                ))
            })
            .await
            .map_err(|e| CollectorError::Store(StoreError::Open(e.to_string())))??
        };
        let now = crate::api::now_ms();
        let known = store.test_points().await?;
        // The config file is authoritative for its own entries: one removed
        // from it (say, compromised) stops being trusted at the next start.
        // Test points approved by an admin are not the config's to withdraw.
        for mut record in known.iter().cloned() {
            if record.configured
                && record.approved()
                && !config.test_points.iter().any(|tp| tp.id == record.id)
            {
                record.status = RegistrationStatus::Pending;
                record.configured = false;
                store.upsert_test_point(record).await?;
            }
        }
        for tp in &config.test_points {
            let existing = known
                .iter()
                .find(|k| k.id == tp.id && k.public_key == tp.public_key);
            if existing.is_some_and(|k| k.status == RegistrationStatus::Revoked) {
                tracing::warn!(id = %tp.id, "the config approves a revoked key; it stays revoked");
                continue;
            }
            let line_rate = tp
                .line_rate_mbps
                .unwrap_or(ispeed_server::config::DEFAULT_LINE_RATE_MBPS);
            let mut record = match existing {
                Some(k) => k.clone(),
                None => TestPointRecord::configured(
                    tp.id.clone(),
                    tp.public_key.clone(),
                    tp.url.clone(),
                    line_rate,
                ),
            };
            record.url.clone_from(&tp.url);
            record.name.clone_from(&tp.name);
            record.province_code.clone_from(&tp.province_code);
            record.line_rate_mbps = line_rate;
            record.status = RegistrationStatus::Approved;
            record.configured = true;
            record.approved_at_ms = record.approved_at_ms.or(Some(now));
            store.upsert_test_point(record).await?;
        }
        let device_key = store.device_hash_key().await?;
        let max_age_ms = config.receipt_max_age.as_millis() as u64;
        let records = store.test_points().await?;
        let verifier = Verifier::new(&records, max_age_ms);
        Ok(CollectorState(Arc::new(Inner {
            config,
            store,
            enricher,
            maps,
            verifier: RwLock::new(Arc::new(verifier)),
            device_key,
            registry: Registry::new(records),
            admin,
            token_public_key: encode_public_key(&token_key.verifying_key()),
            token_key,
            registration: tokio::sync::Mutex::new(()),
            local_test_point: OnceLock::new(),
        })))
    }

    /// Writes a test point record durably, then mirrors it and re-derives
    /// the trusted keys. Callers hold the registration lock.
    async fn write_record(&self, record: TestPointRecord) -> Result<(), StoreError> {
        self.store.upsert_test_point(record.clone()).await?;
        self.registry.put(record);
        let max_age_ms = self.config.receipt_max_age.as_millis() as u64;
        let verifier = Verifier::new(&self.registry.records(), max_age_ms);
        *self.verifier.write().expect("verifier lock") = Arc::new(verifier);
        Ok(())
    }

    /// Reads back what other instances sharing the store have written:
    /// test point records (registrations, approvals, revocations: the keys
    /// this instance trusts follow) and liveness. A no-op on a store that
    /// only this instance writes.
    pub async fn sync_from_store(&self, now_ms: u64) -> Result<(), StoreError> {
        if !self.store.shared() {
            return Ok(());
        }
        let stored = self.store.test_points().await?;
        {
            let _guard = self.registration.lock().await;
            let changed: Vec<TestPointRecord> = stored
                .into_iter()
                .filter(|r| self.registry.record(&r.id).as_ref() != Some(r))
                .collect();
            if !changed.is_empty() {
                for record in changed {
                    if record.status == RegistrationStatus::Revoked {
                        self.registry.forget_liveness(&record.id);
                    }
                    self.registry.put(record);
                }
                let max_age_ms = self.config.receipt_max_age.as_millis() as u64;
                let verifier = Verifier::new(&self.registry.records(), max_age_ms);
                *self.verifier.write().expect("verifier lock") = Arc::new(verifier);
            }
        }
        let since = now_ms.saturating_sub(LIVENESS_TIMEOUT_S * 1000);
        for (id, _, json) in self.store.recent_liveness(since).await? {
            let Some(record) = self.registry.record(&id) else {
                continue;
            };
            if record.status == RegistrationStatus::Revoked {
                continue;
            }
            match serde_json::from_str::<Liveness>(&json) {
                Ok(liveness) => self.registry.merge_liveness(&id, liveness),
                Err(error) => tracing::warn!(%id, %error, "unreadable shared liveness"),
            }
        }
        Ok(())
    }

    /// Approves (or updates) a test point and starts trusting its key.
    pub async fn register_test_point(&self, record: TestPointRecord) -> Result<(), StoreError> {
        let _guard = self.registration.lock().await;
        self.write_record(record).await
    }

    /// Serves `ispeed serve`'s own test point: approved, and alive while the
    /// collector runs (its load is fed by [`Self::mark_local_alive`]).
    pub fn set_local_test_point(&self, test_point: ispeed_server::AppState) {
        let _ = self.local_test_point.set(test_point);
    }

    pub fn local_test_point(&self) -> Option<&ispeed_server::AppState> {
        self.local_test_point.get()
    }

    /// The in-process counterpart of a heartbeat for the local test point.
    pub fn mark_local_alive(&self, id: &str, load: Load, capacity: Capacity, now_ms: u64) {
        self.registry.mark_alive(
            id,
            Liveness {
                received_at_ms: now_ms,
                sent_at_ms: now_ms,
                load,
                capacity,
            },
        );
    }

    /// Handles a heartbeat: proof of key possession, freshness, then the
    /// registration rules; a new test point is stored as pending.
    pub async fn heartbeat(&self, compact: &str, now_ms: u64) -> Result<HeartbeatAck, ApiFailure> {
        let outcome = self.heartbeat_inner(compact, now_ms).await;
        let counter = match &outcome {
            Ok(_) => &self.registry.metrics.heartbeats_accepted,
            Err(_) => &self.registry.metrics.heartbeats_refused,
        };
        RegistryMetrics::add(counter, 1);
        if let Err(failure) = &outcome {
            tracing::warn!(code = failure.code.as_str(), message = %failure.message, "heartbeat refused");
        }
        outcome
    }

    async fn heartbeat_inner(
        &self,
        compact: &str,
        now_ms: u64,
    ) -> Result<HeartbeatAck, ApiFailure> {
        let heartbeat = Heartbeat::verify_self_signed(compact)?;
        if let Some(code) = &heartbeat.province_code {
            if self.enricher.units.province(code).is_none() {
                return Err(ApiFailure::new(
                    ErrorCode::UnknownUnit,
                    format!("province_code {code:?} is not a province of the 2025 unit list"),
                ));
            }
        }
        if let Some(code) = &heartbeat.ward_code {
            if self.enricher.units.ward(code).is_none() {
                return Err(ApiFailure::new(
                    ErrorCode::UnknownUnit,
                    format!("ward_code {code:?} is not a ward of the 2025 unit list"),
                ));
            }
        }
        let _guard = self.registration.lock().await;
        match self.registry.decide(&heartbeat, now_ms)? {
            Change::New(record) => {
                tracing::info!(id = %record.id, key = %record.public_key, "new test point registered; waiting for approval");
                self.write_record(record).await?;
            }
            Change::Update(record) => self.write_record(record).await?,
            Change::Unchanged => {}
        }
        let liveness = Liveness {
            received_at_ms: now_ms,
            sent_at_ms: heartbeat.sent_at_ms,
            load: heartbeat.load,
            capacity: heartbeat.capacity,
        };
        self.registry.mark_alive(&heartbeat.test_point_id, liveness);
        if self.store.shared() {
            self.store
                .save_liveness(
                    &heartbeat.test_point_id,
                    now_ms,
                    serde_json::to_string(&liveness).expect("plain data"),
                )
                .await?;
        }
        let status = self
            .registry
            .record(&heartbeat.test_point_id)
            .map_or(RegistrationStatus::Pending, |r| r.status);
        Ok(HeartbeatAck {
            status,
            collector_key: self.token_public_key.clone(),
            interval_s: HEARTBEAT_INTERVAL_S,
        })
    }

    /// An admin approves a test point's key: its receipts count and locate
    /// offers it while it is alive. A revoked key cannot be approved again.
    pub async fn approve(&self, id: &str, now_ms: u64) -> Result<AdminTestPoint, ApiFailure> {
        let _guard = self.registration.lock().await;
        let mut record = self.known(id)?;
        match record.status {
            RegistrationStatus::Revoked => {
                return Err(ApiFailure::new(
                    ErrorCode::TestPointRevoked,
                    format!(
                        "test point {id:?} was revoked; it must register with a new key and id"
                    ),
                ))
            }
            RegistrationStatus::Approved => {}
            RegistrationStatus::Pending => {
                record.status = RegistrationStatus::Approved;
                record.approved_at_ms = Some(now_ms);
                self.write_record(record.clone()).await?;
                tracing::info!(target: "audit", action = "approve", id, key = %record.public_key, "test point approved");
            }
        }
        Ok(self.registry.admin_entry(&record, now_ms))
    }

    /// An admin revokes a test point's key: from now on nothing it signs is
    /// accepted; results stored before stay valid.
    pub async fn revoke(&self, id: &str, now_ms: u64) -> Result<AdminTestPoint, ApiFailure> {
        let _guard = self.registration.lock().await;
        let mut record = self.known(id)?;
        if record.status != RegistrationStatus::Revoked {
            record.status = RegistrationStatus::Revoked;
            record.revoked_at_ms = Some(now_ms);
            self.write_record(record.clone()).await?;
            self.registry.forget_liveness(id);
            tracing::warn!(target: "audit", action = "revoke", id, key = %record.public_key, "test point revoked");
        }
        Ok(self.registry.admin_entry(&record, now_ms))
    }

    fn known(&self, id: &str) -> Result<TestPointRecord, ApiFailure> {
        self.registry
            .record(id)
            .ok_or_else(|| ApiFailure::new(ErrorCode::NotFound, format!("no test point {id:?}")))
    }

    /// Ranks the approved, alive test points with spare capacity for a
    /// client and issues an access token for each candidate.
    pub fn locate(
        &self,
        client_ip: Option<IpAddr>,
        request: &LocateRequest,
        now_ms: u64,
    ) -> Result<Located, ApiFailure> {
        let isp = client_ip.map(|ip| self.enricher.isps.lookup(ip));
        let client = LocateClient {
            isp: isp
                .as_ref()
                .map_or(ispeed_enrich::OTHER_ISP.to_owned(), |m| m.isp_id.clone()),
            asn: isp.as_ref().and_then(|m| m.asn),
            ip_version: match client_ip.map(|ip| ip.to_canonical()) {
                Some(IpAddr::V6(_)) => 6,
                _ => 4,
            },
        };
        let location = request.location.or_else(|| {
            request
                .province
                .as_deref()
                .and_then(|code| self.province_centre(code))
        });
        let view = ClientView {
            isp: client.isp.clone(),
            location,
        };
        let mut offered: Vec<(TestPointRecord, Liveness)> = self
            .registry
            .records()
            .into_iter()
            .filter(|r| r.approved())
            .filter_map(|r| {
                let live = self.registry.liveness(&r.id)?;
                live.alive(now_ms).then_some((r, live))
            })
            .filter(|(r, _)| match (request.family, &r.details) {
                (Some(4), Some(d)) => d.ipv4_url.is_some(),
                (Some(6), Some(d)) => d.ipv6_url.is_some(),
                _ => true,
            })
            .collect();
        offered.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        let views: Vec<CandidateView> = offered
            .iter()
            .map(|(r, live)| CandidateView {
                class: r.class().unwrap_or(TestPointClass::Cloud),
                isp: r
                    .details
                    .as_ref()
                    .and_then(|d| d.asn)
                    .and_then(|asn| self.enricher.isps.isp_of_asn(asn))
                    .map(str::to_owned),
                location: self.test_point_location(r),
                load: live.load_fraction(),
            })
            .collect();
        let limit = request.limit.unwrap_or(LOCATE_MAX_CANDIDATES);
        let mut candidates = Vec::new();
        for ranked in rank(&view, &views).into_iter().take(limit) {
            let (record, _) = &offered[ranked.index];
            let mut nonce = [0u8; 16];
            getrandom::fill(&mut nonce)
                .map_err(|e| ApiFailure::new(ErrorCode::Internal, format!("no randomness: {e}")))?;
            let claims = AccessClaims::new(&record.id, now_ms, nonce);
            let details = record.details.as_ref();
            let url = match (request.family, details) {
                (Some(6), Some(d)) => d.ipv6_url.clone().unwrap_or_else(|| record.url.clone()),
                (Some(4), Some(d)) => d.ipv4_url.clone().unwrap_or_else(|| record.url.clone()),
                _ => record.url.clone(),
            };
            candidates.push(Candidate {
                id: record.id.clone(),
                name: record.name.clone(),
                operator: details.map_or_else(|| record.id.clone(), |d| d.operator.clone()),
                class: views[ranked.index].class,
                url,
                ipv4_url: details.and_then(|d| d.ipv4_url.clone()),
                ipv6_url: details.and_then(|d| d.ipv6_url.clone()),
                public_key: record.public_key.clone(),
                province_code: record.province_code.clone(),
                isp: views[ranked.index].isp.clone(),
                on_net: ranked.on_net,
                load: views[ranked.index].load,
                estimated_rtt_ms: (ranked.estimated_rtt_ms * 10.0).round() / 10.0,
                token: claims.sign(&self.token_key),
                token_expires_at_ms: claims.exp_ms,
            });
        }
        let metrics = &self.registry.metrics;
        RegistryMetrics::add(&metrics.tokens_issued, candidates.len() as u64);
        if candidates.is_empty() {
            RegistryMetrics::add(&metrics.locate_empty, 1);
            let mut failure = ApiFailure::new(
                ErrorCode::NoTestPointAvailable,
                "no approved test point is alive with spare capacity now; try again shortly",
            );
            failure.retry_after_s = Some(HEARTBEAT_INTERVAL_S as u32);
            return Err(failure);
        }
        RegistryMetrics::add(&metrics.locate_answered, 1);
        Ok(Located { client, candidates })
    }

    /// A point inside the province: the mean of its wards' points.
    fn province_centre(&self, code: &str) -> Option<(f64, f64)> {
        let (mut lat, mut lon, mut n) = (0.0, 0.0, 0usize);
        for ward in self.enricher.units.wards_of(code) {
            lat += ward.centroid_lat;
            lon += ward.centroid_lon;
            n += 1;
        }
        (n > 0).then(|| (lat / n as f64, lon / n as f64))
    }

    fn test_point_location(&self, record: &TestPointRecord) -> Option<(f64, f64)> {
        let details = record.details.as_ref()?;
        if let (Some(lat), Some(lon)) = (details.lat, details.lon) {
            return Some((lat, lon));
        }
        if let Some(ward) = details
            .ward_code
            .as_deref()
            .and_then(|c| self.enricher.units.ward(c))
        {
            return Some((ward.centroid_lat, ward.centroid_lon));
        }
        record
            .province_code
            .as_deref()
            .and_then(|c| self.province_centre(c))
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
        let checked = verifier.verify(&submission, now_ms).and_then(|verified| {
            let mut record = build_record(
                &submission,
                &verified.payload,
                verified.trusted,
                &self.enricher,
                &self.device_key,
                &verifier.tolerance,
                now_ms,
            )?;
            if let Some(source) = &verified.download_from {
                record.with_download_from(source);
            }
            match verified.expired {
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
