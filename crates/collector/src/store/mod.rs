//! The durable store behind the collector: raw results, rollup cells, the
//! registry of approved test points. [`Store`] is what callers use;
//! [`sqlite::SqliteStore`] is the embedded implementation and a PostgreSQL
//! one can be added beside it without touching callers.

pub mod postgres;
pub mod sqlite;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ispeed_analytics::Level;
use ispeed_proto::registry::{AccessMode, RegistrationStatus, TestPointClass};
use ispeed_proto::results::{
    Access, ClientInfo, ClientMetrics, ImplausibleReason, Location, PlaceSource, PublishedMetrics,
    ResultStatus, StoredResult,
};
use uuid::Uuid;

use crate::accounts::{ApiTokenRecord, AuditEntry, SessionRecord, User};
use crate::campaigns::Campaign;
use crate::rollup::{Cell, CellKey, Contribution, Grain};

/// A verified, enriched result ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewResult {
    pub result_id: Uuid,
    /// SHA-256 of the submission as received (re-serialised), to tell an
    /// idempotent retry from a different result reusing the id.
    pub body_hash: [u8; 32],
    pub received_at_ms: u64,
    pub measured_at_ms: u64,
    /// ICT day the test started, by the test point's clock.
    pub day: i32,
    /// Keyed hash of the device id; the raw id is never stored.
    pub device_hash: [u8; 16],
    pub client: ClientInfo,
    pub access: Access,
    pub test_point_id: String,
    pub session_id: String,
    pub ip_version: u8,
    /// Client address truncated to /24 (IPv4) or /48 (IPv6).
    pub client_net: String,
    pub asn: Option<u32>,
    pub isp: String,
    /// Raw position: for admins only, never published.
    pub location: Option<Location>,
    pub ward_chosen: Option<String>,
    pub province_code: Option<String>,
    pub ward_code: Option<String>,
    pub place_source: PlaceSource,
    pub metrics: PublishedMetrics,
    pub client_metrics: ClientMetrics,
    pub status: ResultStatus,
    pub reasons: Vec<ImplausibleReason>,
    /// The receipt payload (JSON) with the client address truncated and
    /// without its signature: see [`crate::verify::redacted_payload`].
    pub receipt: String,
    /// Campaign tag (`?src=`), validated by [`ispeed_proto::results::valid_source`].
    pub source: Option<String>,
    /// The class its test point declared (VNIX, on-net, cloud, abroad).
    pub test_point_class: Option<TestPointClass>,
    /// After a failover: the test point and session whose checkpoint
    /// receipt backs the download, and that receipt as stored (redacted
    /// like `receipt`).
    pub download_test_point_id: Option<String>,
    pub download_session_id: Option<String>,
    pub download_receipt: Option<String>,
}

impl NewResult {
    /// Records a failover's download source: the stored receipts become the
    /// two as signed (redacted), not their combination.
    pub fn with_download_from(&mut self, source: &crate::verify::DownloadSource) {
        let ip = self.client_ip();
        self.receipt = crate::verify::redacted_payload(&source.receipt, ip);
        self.download_receipt = Some(crate::verify::redacted_payload(&source.checkpoint, ip));
        self.download_test_point_id = Some(source.test_point_id.clone());
        self.download_session_id = Some(source.session_id.clone());
    }

    /// The client address as stored (already truncated).
    fn client_ip(&self) -> std::net::IpAddr {
        self.client_net
            .parse()
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    pub fn device_hash64(&self) -> u64 {
        u64::from_le_bytes(self.device_hash[..8].try_into().expect("16 bytes"))
    }

    pub fn contribution(&self) -> Contribution<'_> {
        Contribution {
            day: self.day,
            province_code: self.province_code.as_deref(),
            ward_code: self.ward_code.as_deref(),
            isp: &self.isp,
            access: self.access.kind(),
            ip_version: self.ip_version,
            device_hash: self.device_hash64(),
            download_mbps: self.metrics.download_mbps,
            upload_mbps: self.metrics.upload_mbps,
            latency_ms: self.metrics.latency_ms,
        }
    }

    /// The record as the submitting device sees it.
    pub fn stored(&self, counted: bool) -> StoredResult {
        StoredResult {
            result_id: self.result_id,
            received_at_ms: self.received_at_ms,
            measured_at_ms: self.measured_at_ms,
            client: self.client.clone(),
            access: self.access,
            test_point_id: self.test_point_id.clone(),
            ip_version: self.ip_version,
            asn: self.asn,
            isp: self.isp.clone(),
            province_code: self.province_code.clone(),
            ward_code: self.ward_code.clone(),
            place_source: self.place_source,
            metrics: self.metrics,
            status: self.status,
            reasons: self.reasons.clone(),
            counted,
            source: self.source.clone(),
            test_point_class: self.test_point_class,
            download_test_point_id: self.download_test_point_id.clone(),
        }
    }
}

/// Results one campaign tag brought in a period.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceCount {
    pub source: String,
    /// Results stored with the tag.
    pub results: u64,
    /// Of those, the ones counted in the statistics.
    pub counted: u64,
}

/// What happened to one submitted result.
#[derive(Debug, Clone, PartialEq)]
pub enum InsertOutcome {
    /// Stored now, durably.
    Created(StoredResult),
    /// The same result was already stored (an idempotent retry).
    Existing(StoredResult),
    /// A different result already uses this id.
    Conflict,
    /// Another result already carries this receipt.
    ReceiptReused,
}

/// A stored result with what only admins and the submitter may see.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    pub record: StoredResult,
    pub device_hash: [u8; 16],
    pub body_hash: [u8; 32],
}

/// Which cells to read: one grain, a set of periods, one level, and
/// optionally one parent (a province's wards) or one code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CellQuery {
    pub grain: Grain,
    pub periods: Vec<i32>,
    pub level: Level,
    pub parent: Option<String>,
    pub code: Option<String>,
    /// Read the aggregate cells (every access type and IP version together)
    /// instead of the detailed ones.
    pub aggregate: bool,
}

/// One counted result's published values, for exact reference computations.
#[derive(Debug, Clone, PartialEq)]
pub struct CountedValues {
    pub day: i32,
    pub province_code: Option<String>,
    pub ward_code: Option<String>,
    pub isp: String,
    pub access: String,
    pub ip_version: u8,
    pub device_hash: [u8; 16],
    pub download_mbps: Option<f64>,
    pub upload_mbps: Option<f64>,
    pub latency_ms: Option<f64>,
}

/// A test point the collector knows: approved in the config file, or
/// registered by its own signed heartbeats and then approved (or revoked)
/// by an admin.
#[derive(Debug, Clone, PartialEq)]
pub struct TestPointRecord {
    pub id: String,
    /// Unpadded base64url Ed25519 key.
    pub public_key: String,
    /// Absolute, or relative to the collector (`/` for a local test point).
    pub url: String,
    pub name: Option<String>,
    pub province_code: Option<String>,
    /// Physical upper bound of any rate it can measure.
    pub line_rate_mbps: f64,
    pub status: RegistrationStatus,
    /// Listed in the config file (approved at every start unless revoked).
    pub configured: bool,
    /// What its last registering heartbeat declared; `None` for a test
    /// point known only from the config file.
    pub details: Option<TestPointDetails>,
    pub registered_at_ms: Option<u64>,
    pub approved_at_ms: Option<u64>,
    pub revoked_at_ms: Option<u64>,
}

impl TestPointRecord {
    /// An approved test point from the config file (or the local one).
    pub fn configured(
        id: String,
        public_key: String,
        url: String,
        line_rate_mbps: f64,
    ) -> TestPointRecord {
        TestPointRecord {
            id,
            public_key,
            url,
            name: None,
            province_code: None,
            line_rate_mbps,
            status: RegistrationStatus::Approved,
            configured: true,
            details: None,
            registered_at_ms: None,
            approved_at_ms: None,
            revoked_at_ms: None,
        }
    }

    pub fn approved(&self) -> bool {
        self.status == RegistrationStatus::Approved
    }

    pub fn class(&self) -> Option<TestPointClass> {
        self.details.as_ref().map(|d| d.class)
    }
}

/// The declared, slowly changing part of a heartbeat, kept with the record
/// (load and liveness live in memory only).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TestPointDetails {
    pub class: TestPointClass,
    pub operator: String,
    pub asn: Option<u32>,
    pub ipv4_url: Option<String>,
    pub ipv6_url: Option<String>,
    pub ward_code: Option<String>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub access: AccessMode,
    pub max_sessions: u32,
}

/// One stored result as a province may export it: no device hash, no
/// client address, no raw position.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRow {
    pub result_id: String,
    pub measured_at_ms: u64,
    pub day: i32,
    pub province_code: Option<String>,
    pub ward_code: Option<String>,
    pub place_source: String,
    pub isp: String,
    pub access: String,
    pub ip_version: u8,
    pub download_mbps: Option<f64>,
    pub upload_mbps: Option<f64>,
    pub latency_ms: Option<f64>,
    pub status: String,
    pub counted: bool,
    pub source: Option<String>,
    pub test_point_id: String,
}

/// A stored version of the administrative units (spec/units.md).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredUnitVersion {
    /// The first month it applies to ([`crate::period::Month`]`.0`).
    pub effective_month: i32,
    pub name: String,
    pub loaded_at_ms: u64,
    pub provinces_csv: String,
    pub units_csv: String,
    /// The ward boundaries, gzip-compressed GeoJSON.
    pub wards_geojson_gz: Vec<u8>,
    /// SHA-256 (hex) of the three files as loaded.
    pub sha256: String,
}

/// Counts after `rebuild-rollups`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildReport {
    pub results: u64,
    pub counted: u64,
    pub cells: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the store has shut down")]
    Closed,
    #[error("the store is too busy to answer now")]
    Busy,
    #[error("cannot open the store: {0}")]
    Open(String),
}

/// The collector's storage. Implementations must make a result durable
/// before `insert` returns `Created`, and must never block the async runtime.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a batch; outcomes are in input order. Results are counted
    /// toward statistics (and added to rollups) in ingest order, at most
    /// `cap` per device per day.
    async fn insert(&self, results: Vec<NewResult>) -> Result<Vec<InsertOutcome>, StoreError>;
    async fn get(&self, result_id: Uuid) -> Result<Option<StoredRow>, StoreError>;
    /// The cells a query names. Shared: a store may answer repeated
    /// questions about months nobody has written to since from memory.
    async fn cells(&self, query: CellQuery) -> Result<Arc<Vec<(CellKey, Cell)>>, StoreError>;
    /// Counted results' values for a month range (exact reference; scans raw rows).
    async fn counted_values(
        &self,
        first_day: i32,
        last_day: i32,
    ) -> Result<Vec<CountedValues>, StoreError>;
    /// Recomputes every rollup cell and the per-device daily counts from
    /// the raw results, in ingest order.
    async fn rebuild_rollups(&self) -> Result<RebuildReport, StoreError>;
    async fn upsert_test_point(&self, test_point: TestPointRecord) -> Result<(), StoreError>;
    async fn test_points(&self) -> Result<Vec<TestPointRecord>, StoreError>;
    /// The secret that keys device hashes, created on first use.
    async fn device_hash_key(&self) -> Result<[u8; 32], StoreError>;
    async fn result_count(&self) -> Result<u64, StoreError>;
    /// Results per campaign tag whose test started in `[first_day, last_day]`
    /// (ICT days), most first, at most `limit` tags.
    async fn source_counts(
        &self,
        first_day: i32,
        last_day: i32,
        limit: u32,
    ) -> Result<Vec<SourceCount>, StoreError>;
    /// Stored results of a province whose test started in `[first_day,
    /// last_day]`, in ingest order, as a province may export them.
    async fn export_results(
        &self,
        province_code: &str,
        first_day: i32,
        last_day: i32,
    ) -> Result<Vec<ExportRow>, StoreError>;

    // ---- accounts (spec/accounts.md); every write is durable on return ----
    /// `Ok(None)` when the username is taken.
    async fn create_user(&self, user: User) -> Result<Option<i64>, StoreError>;
    async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError>;
    async fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError>;
    async fn users(&self) -> Result<Vec<User>, StoreError>;
    /// Disables an account and ends its sessions; false if there is none.
    async fn disable_user(&self, username: &str, at_ms: u64) -> Result<bool, StoreError>;
    async fn create_session(
        &self,
        token_hash: [u8; 32],
        session: SessionRecord,
        created_at_ms: u64,
    ) -> Result<(), StoreError>;
    async fn session(&self, token_hash: [u8; 32]) -> Result<Option<SessionRecord>, StoreError>;
    async fn delete_session(&self, token_hash: [u8; 32]) -> Result<(), StoreError>;
    async fn create_api_token(
        &self,
        token_hash: [u8; 32],
        user_id: i64,
        name: &str,
        at_ms: u64,
    ) -> Result<i64, StoreError>;
    async fn api_token(&self, token_hash: [u8; 32]) -> Result<Option<ApiTokenRecord>, StoreError>;
    async fn api_tokens_of(&self, user_id: i64) -> Result<Vec<ApiTokenRecord>, StoreError>;
    /// Revokes a token of `user_id` (any user's with `None`); false if none.
    async fn revoke_api_token(
        &self,
        id: i64,
        user_id: Option<i64>,
        at_ms: u64,
    ) -> Result<bool, StoreError>;
    async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError>;
    /// Stores a campaign; false if its slug is taken.
    async fn create_campaign(&self, campaign: Campaign) -> Result<bool, StoreError>;
    async fn campaigns(&self) -> Result<Vec<Campaign>, StoreError>;
    async fn campaign(&self, slug: &str) -> Result<Option<Campaign>, StoreError>;
    /// Results (and counted ones) per campaign tag among `tags`, from
    /// `wards`, whose test started in `[first_day, last_day]`, most first.
    async fn campaign_tag_counts(
        &self,
        wards: &[String],
        first_day: i32,
        last_day: i32,
        tags: &[String],
    ) -> Result<Vec<SourceCount>, StoreError>;
    /// Stored unit versions, by effective month.
    async fn unit_versions(&self) -> Result<Vec<StoredUnitVersion>, StoreError>;
    /// Stores a checked unit version; false when one already starts that month.
    async fn add_unit_version(&self, version: StoredUnitVersion) -> Result<bool, StoreError>;
    /// The latest entries, newest first.
    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;

    /// Brings the store's planner statistics and free space up to date
    /// after a bulk write (generation, migration, a rollup rebuild), as an
    /// operator would after a bulk load; a no-op where the engine needs none.
    async fn after_bulk_load(&self) -> Result<(), StoreError> {
        Ok(())
    }

    // ---- several instances on one store (docs/scaling.md) ----
    /// Whether other collector instances may write to this store at the
    /// same time (their registrations and heartbeats must then be read
    /// back from it).
    fn shared(&self) -> bool {
        false
    }
    /// Keeps a test point's latest liveness (JSON) for the other instances.
    async fn save_liveness(
        &self,
        _id: &str,
        _received_at_ms: u64,
        _liveness: String,
    ) -> Result<(), StoreError> {
        Ok(())
    }
    /// Liveness received at or after `since_ms`, as (id, received, JSON).
    async fn recent_liveness(
        &self,
        _since_ms: u64,
    ) -> Result<Vec<(String, u64, String)>, StoreError> {
        Ok(Vec::new())
    }
}

// ---- helpers shared by the stores ------------------------------------------

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub(crate) fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serialises")
}

pub(crate) fn place_source_str(source: PlaceSource) -> &'static str {
    match source {
        PlaceSource::Location => "location",
        PlaceSource::Manual => "manual",
        PlaceSource::Legacy => "legacy",
        PlaceSource::None => "none",
    }
}

pub(crate) fn status_str(status: ResultStatus) -> &'static str {
    match status {
        ResultStatus::Accepted => "accepted",
        ResultStatus::Implausible => "implausible",
    }
}

pub(crate) fn parse_access_kind(
    text: &str,
) -> Result<ispeed_proto::results::AccessKind, StoreError> {
    ispeed_proto::results::AccessKind::parse(text).ok_or_else(|| corrupt("unknown access kind"))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(corrupt)
}

/// Decodes fetched cells on every core: a province's wards for a month are
/// thousands of cells, and decoding them is most of a query's work.
pub(crate) fn decode_cells(
    raw: Vec<(CellKey, u64, [Vec<u8>; 4])>,
) -> Result<Vec<(CellKey, Cell)>, StoreError> {
    let decode = |part: Vec<(CellKey, u64, [Vec<u8>; 4])>| {
        part.into_iter()
            .map(|(key, n, [d, u, l, v])| {
                Cell::from_blobs(n, [&d, &u, &l, &v])
                    .map(|cell| (key, cell))
                    .map_err(corrupt)
            })
            .collect::<Result<Vec<_>, StoreError>>()
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    if threads == 1 || raw.len() < 256 {
        return decode(raw);
    }
    let chunk = raw.len().div_ceil(threads);
    let mut parts = Vec::with_capacity(threads);
    let mut raw = raw;
    while raw.len() > chunk {
        let tail = raw.split_off(raw.len() - chunk);
        parts.push(tail);
    }
    parts.push(raw);
    parts.reverse();
    std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| scope.spawn(move || decode(part)))
            .collect();
        let mut out = Vec::new();
        for handle in handles {
            out.extend(handle.join().expect("decoding does not panic")?);
        }
        Ok(out)
    })
}

/// Tuning shared by both stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// At most this many results per device per day count toward statistics.
    pub heavy_tester_cap: u32,
    /// Most results committed in one transaction. `1` disables group commit
    /// (one transaction, one fsync per result): the naive baseline.
    pub max_batch: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            heavy_tester_cap: 3,
            max_batch: 2048,
        }
    }
}

/// Decoded cells shared between the query cache and its callers.
pub type SharedCells = Arc<Vec<(CellKey, Cell)>>;

/// Most decoded cells a store's query cache holds before it starts over.
const CELL_QUERY_CACHE_LIMIT: usize = 300_000;

/// The months a cell query reads.
pub(crate) fn query_months(query: &CellQuery) -> Vec<i32> {
    query
        .periods
        .iter()
        .map(|&p| match query.grain {
            Grain::Day => crate::period::Month::of_day(p).0,
            Grain::Month => p,
        })
        .collect()
}

/// Decoded answers of recent cell queries, each with the versions (`V`,
/// whatever the store's write counter is) of the months it read. Months
/// that are closed (nobody tests in the past) stay valid for good; the
/// current month's entries go stale with each commit.
pub(crate) struct CellQueryCache<V> {
    inner: Mutex<CacheEntries<V>>,
}

struct CacheEntries<V> {
    entries: HashMap<CellQuery, (V, SharedCells)>,
    /// Cells held by `entries`, counted for the limit.
    cells: usize,
}

impl<V: PartialEq> CellQueryCache<V> {
    pub(crate) fn new() -> Self {
        CellQueryCache {
            inner: Mutex::new(CacheEntries {
                entries: HashMap::new(),
                cells: 0,
            }),
        }
    }

    /// The cached answer, if it was read at exactly `versions`.
    pub(crate) fn get(&self, query: &CellQuery, versions: &V) -> Option<SharedCells> {
        let inner = self.inner.lock().expect("cache lock");
        match inner.entries.get(query) {
            Some((at, cells)) if at == versions => Some(cells.clone()),
            _ => None,
        }
    }

    pub(crate) fn insert(&self, query: CellQuery, versions: V, cells: SharedCells) {
        let mut inner = self.inner.lock().expect("cache lock");
        if inner.cells + cells.len() > CELL_QUERY_CACHE_LIMIT {
            inner.entries.clear();
            inner.cells = 0;
        }
        inner.cells += cells.len();
        if let Some((_, old)) = inner.entries.insert(query, (versions, cells)) {
            inner.cells -= old.len();
        }
    }
}
