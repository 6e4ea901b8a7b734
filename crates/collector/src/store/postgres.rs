//! The PostgreSQL store: the same data as the embedded one, for deployments
//! that outgrow a machine and run several collector instances on one
//! database.
//!
//! Correctness across instances comes from the database, not from one
//! writer: a result id is unique in `result_ids`, a receipt session in
//! `receipt_sessions`, and the heavy-tester cap counts in `device_day` with
//! an atomic upsert. Each instance groups what arrives while its previous
//! transaction commits into one transaction (group commit); a result is
//! acknowledged only after that commit, with `synchronous_commit` on. Raw
//! results are partitioned by month.
//!
//! Rollup cells are not touched by ingest: every nation and province cell
//! would be a hot row rewritten (sketches and all) by every small batch.
//! An ingest transaction appends its counted contributions to
//! `rollup_queue`; an applier (one at a time, under an advisory lock)
//! takes a run of the queue, merges it into the cells (locked `FOR UPDATE`
//! in key order) and bumps the months' `month_versions`, all in one
//! transaction. Each instance runs the applier in the background, and every
//! read applies what is queued first, so statistics never miss an
//! acknowledged result. Cached answers stay valid only while the versions
//! of the months they read are unchanged.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use ispeed_proto::registry::{RegistrationStatus, TestPointClass};
use ispeed_proto::results::{
    Access, ClientInfo, ClientKind, ImplausibleReason, PlaceSource, PublishedMetrics, ResultStatus,
    StoredResult,
};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, NoTls, Row, Transaction};
use uuid::Uuid;

use super::{
    corrupt, decode_cells, from_json, json, parse_access_kind, place_source_str, query_months,
    status_str, CellQuery, CellQueryCache, CountedValues, ExportRow, InsertOutcome, NewResult,
    RebuildReport, SourceCount, Store, StoreError, StoredRow, StoredUnitVersion, TestPointRecord,
};
use crate::accounts::{ApiTokenRecord, AuditEntry, Role, SessionRecord, User};
use crate::campaigns::Campaign;
use crate::period::Month;
use crate::rollup::{level_to_i64, Cell, CellKey, Contribution, Grain, ALL_ACCESS};

/// Versioned migrations, applied in order under an advisory lock; the
/// `schema_version` row of `meta` records how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_initial.sql"),
    include_str!("../../migrations/postgres/0002_rollup_queue.sql"),
    include_str!("../../migrations/postgres/0003_liveness.sql"),
];
/// Advisory lock classes (arbitrary, stable). Advisory locks belong to the
/// whole database, so each is taken together with a hash of the schema:
/// deployments (or test runs) in other schemas never wait for this one.
const MIGRATION_LOCK: i32 = 0x6973_0001;
const PARTITION_LOCK: i32 = 0x6973_0002;
/// Held by whoever merges the rollup queue into the cells.
const ROLLUP_LOCK: i32 = 0x6973_0003;
const LOCK_SQL: &str = "SELECT pg_advisory_xact_lock($1, hashtext(coalesce(current_schema(), '')))";
const TRY_LOCK_SQL: &str =
    "SELECT pg_try_advisory_xact_lock($1, hashtext(coalesce(current_schema(), '')))";
/// Queue rows merged per applier transaction at most.
const APPLY_BATCH: i64 = 50_000;
/// How often, at most, an instance vacuums the queue rows it deleted.
const QUEUE_VACUUM_INTERVAL: Duration = Duration::from_secs(1);
/// How often each instance's background applier looks at the queue.
const APPLY_INTERVAL: Duration = Duration::from_millis(250);
/// Connections per instance.
const POOL_SIZE: usize = 16;

/// Tuning of the PostgreSQL store.
pub type PostgresOptions = super::StoreOptions;

/// A cell's key columns as stored.
type KeyColumns = (i16, i32, i16, String, String, String, String, i16);

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub struct PostgresStore {
    pool: Pool,
    /// Statistics reads go here when set: a streaming replica of `pool`'s
    /// database. It cannot apply the rollup queue, so its answers trail
    /// the primary by the applier interval plus the replication lag.
    read_pool: Option<Pool>,
    schema: Option<String>,
    options: PostgresOptions,
    batches: mpsc::UnboundedSender<(Vec<NewResult>, Reply<Vec<InsertOutcome>>)>,
    cache: CellQueryCache<Vec<(i32, i64)>>,
    /// Queue rows this instance deleted since its applier last vacuumed
    /// the queue.
    dequeued: Arc<AtomicU64>,
    /// Dropped with the store: ends the background applier.
    _applier: tokio_util::sync::DropGuard,
}

/// SQLSTATEs after which the same transaction may simply be run again.
const RETRYABLE: [&str; 2] = ["40001", "40P01"];

fn db_error(error: tokio_postgres::Error) -> StoreError {
    StoreError::Database(error_text(&error))
}

/// The server's message and SQLSTATE (`… (23505)`), or the client's error.
pub(crate) fn error_text(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

fn retryable(error: &StoreError) -> bool {
    matches!(error, StoreError::Database(m) if RETRYABLE.iter().any(|c| m.ends_with(&format!("({c})"))))
}

impl PostgresStore {
    /// Connects (`postgres://user@host:port/db`, optional `?options=-csearch_path%3Dschema`
    /// is not needed: pass `schema` to use one), creates or migrates the
    /// schema, and starts the batching task.
    pub async fn open(
        url: &str,
        schema: Option<&str>,
        options: PostgresOptions,
    ) -> Result<PostgresStore, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Open(format!("{url}: {e}")))?;
        if let Some(schema) = schema {
            if !crate::config::valid_schema_name(schema) {
                return Err(StoreError::Open(format!("bad schema name {schema:?}")));
            }
            config.options(format!("-c search_path={schema}"));
            let (client, connection) = config
                .connect(NoTls)
                .await
                .map_err(|e| StoreError::Open(e.to_string()))?;
            tokio::spawn(connection);
            let exists = client
                .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
                .await
                .map_err(db_error)?
                .is_some();
            if !exists {
                // Two instances may race here; the loser's error is harmless.
                let _ = client
                    .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                    .await;
            }
        }
        let pool = build_pool(config)?;
        migrate(&pool).await?;
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(batcher(pool.clone(), receiver, options));
        let stop = tokio_util::sync::CancellationToken::new();
        let dequeued = Arc::new(AtomicU64::new(0));
        tokio::spawn(background_applier(
            pool.clone(),
            dequeued.clone(),
            stop.clone(),
        ));
        Ok(PostgresStore {
            dequeued,
            _applier: stop.drop_guard(),
            read_pool: None,
            schema: schema.map(str::to_owned),
            pool,
            options,
            batches: sender,
            cache: CellQueryCache::new(),
        })
    }

    /// Sends statistics reads (cells and their month versions) to a read
    /// replica of this database. Checks that it holds this store's schema
    /// at this program's version.
    pub async fn with_read_replica(mut self, url: &str) -> Result<PostgresStore, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Open(format!("replica {e}")))?;
        if let Some(schema) = &self.schema {
            config.options(format!("-c search_path={schema}"));
        }
        let pool = build_pool(config)?;
        let client = get_client(&pool).await?;
        let version = schema_version(&**client)
            .await
            .map_err(|e| StoreError::Open(format!("replica: {}", db_error(e))))?;
        if version.as_deref() != Some(MIGRATIONS.len().to_string().as_str()) {
            return Err(StoreError::Open(format!(
                "the replica's schema is at version {version:?}, not {} (is it a replica of this database?)",
                MIGRATIONS.len()
            )));
        }
        drop(client);
        self.read_pool = Some(pool);
        Ok(self)
    }

    /// Where statistics are read.
    fn reads(&self) -> &Pool {
        self.read_pool.as_ref().unwrap_or(&self.pool)
    }

    /// A pooled connection to the primary: the store's own, and for bulk
    /// work outside the [`Store`] trait (`ispeed migrate`, benchmarks'
    /// reference queries).
    pub async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        get_client(&self.pool).await
    }

    async fn read_cells(&self, query: &CellQuery) -> Result<Vec<(CellKey, Cell)>, StoreError> {
        let client = get_client(self.reads()).await?;
        let mut sql = String::from(
            "SELECT period, parent, code, isp, access, ip_version, n, download, upload, latency, devices
             FROM cells WHERE grain = $1 AND period = ANY($2) AND level = $3",
        );
        sql.push_str(if query.aggregate {
            " AND access = 'all'"
        } else {
            " AND access <> 'all'"
        });
        let grain = query.grain.as_i64() as i16;
        let level = level_to_i64(query.level) as i16;
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&grain, &query.periods, &level];
        if let Some(parent) = &query.parent {
            sql.push_str(&format!(" AND parent = ${}", params.len() + 1));
            params.push(parent);
        }
        if let Some(code) = &query.code {
            sql.push_str(&format!(" AND code = ${}", params.len() + 1));
            params.push(code);
        }
        let rows = client.query(&sql, &params).await.map_err(db_error)?;
        let mut raw = Vec::with_capacity(rows.len());
        for row in rows {
            let access: String = row.get(4);
            let access = match access.as_str() {
                ALL_ACCESS => None,
                kind => Some(parse_access_kind(kind)?),
            };
            let key = CellKey {
                grain: query.grain,
                period: row.get(0),
                level: query.level,
                parent: row.get(1),
                code: row.get(2),
                isp: row.get(3),
                access,
                ip_version: row.get::<_, i16>(5) as u8,
            };
            let n: i64 = row.get(6);
            raw.push((
                key,
                n as u64,
                [row.get(7), row.get(8), row.get(9), row.get(10)],
            ));
        }
        tokio::task::spawn_blocking(move || decode_cells(raw))
            .await
            .map_err(|e| StoreError::Database(e.to_string()))?
    }

    async fn month_versions(&self, months: &[i32]) -> Result<Vec<(i32, i64)>, StoreError> {
        let client = get_client(self.reads()).await?;
        let rows = client
            .query(
                "SELECT month, version FROM month_versions WHERE month = ANY($1) ORDER BY month",
                &[&months],
            )
            .await
            .map_err(db_error)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

fn build_pool(config: tokio_postgres::Config) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .build()
        .map_err(|e| StoreError::Open(e.to_string()))
}

async fn get_client(pool: &Pool) -> Result<deadpool_postgres::Object, StoreError> {
    pool.get().await.map_err(|e| match e {
        deadpool_postgres::PoolError::Timeout(_) => StoreError::Busy,
        other => StoreError::Database(other.to_string()),
    })
}

async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    let mut client = get_client(pool).await?;
    let tx = client.transaction().await.map_err(db_error)?;
    tx.execute(LOCK_SQL, &[&MIGRATION_LOCK])
        .await
        .map_err(db_error)?;
    let exists: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE tablename = 'meta' AND schemaname = current_schema())",
            &[],
        )
        .await
        .map_err(db_error)?
        .get(0);
    let applied: usize = if exists {
        schema_version(&*tx)
            .await
            .map_err(db_error)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    } else {
        0
    };
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Open(format!(
            "database schema version {applied} is newer than this program ({})",
            MIGRATIONS.len()
        )));
    }
    for sql in &MIGRATIONS[applied..] {
        tx.batch_execute(sql).await.map_err(db_error)?;
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('schema_version', $1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&MIGRATIONS.len().to_string().into_bytes()],
    )
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)
}

/// The `schema_version` row of `meta`, as stored.
async fn schema_version(
    client: &impl GenericClient,
) -> Result<Option<String>, tokio_postgres::Error> {
    Ok(client
        .query_opt("SELECT value FROM meta WHERE key = 'schema_version'", &[])
        .await?
        .map(|r| String::from_utf8_lossy(&r.get::<_, Vec<u8>>(0)).into_owned()))
}

/// Groups what arrives while a transaction commits into the next one.
async fn batcher(
    pool: Pool,
    mut receiver: mpsc::UnboundedReceiver<(Vec<NewResult>, Reply<Vec<InsertOutcome>>)>,
    options: PostgresOptions,
) {
    let mut partitions: HashSet<i32> = HashSet::new();
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        let mut size = batch[0].0.len();
        while size < options.max_batch {
            match receiver.try_recv() {
                Ok(item) => {
                    size += item.0.len();
                    batch.push(item);
                }
                Err(_) => break,
            }
        }
        let results: Vec<&NewResult> = batch.iter().flat_map(|(r, _)| r.iter()).collect();
        let mut attempt = 0;
        let outcome = loop {
            let outcome = async {
                ensure_partitions(&pool, &mut partitions, &results).await?;
                let mut client = get_client(&pool).await?;
                let tx = client.transaction().await.map_err(db_error)?;
                let outcomes = insert_batch(&tx, &results, options.heavy_tester_cap).await?;
                tx.commit().await.map_err(db_error)?;
                Ok::<_, StoreError>(outcomes)
            }
            .await;
            attempt += 1;
            match outcome {
                // Another instance's transaction won a lock race; nothing
                // of this one was committed, so it can run again.
                Err(error) if retryable(&error) && attempt < 5 => {
                    tracing::warn!(%error, attempt, "batch retried");
                }
                other => break other,
            }
        };
        match outcome {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                for (results, reply) in batch {
                    let mine: Vec<InsertOutcome> = outcomes.by_ref().take(results.len()).collect();
                    let _ = reply.send(Ok(mine));
                }
            }
            Err(error) => {
                tracing::error!(%error, "batch not stored");
                for (_, reply) in batch {
                    let _ = reply.send(Err(StoreError::Database(error.to_string())));
                }
            }
        }
    }
}

/// Creates the monthly partitions a batch needs (once per process; under an
/// advisory lock, as another instance may be creating the same one).
async fn ensure_partitions(
    pool: &Pool,
    known: &mut HashSet<i32>,
    results: &[&NewResult],
) -> Result<(), StoreError> {
    let mut missing: Vec<i32> = results
        .iter()
        .map(|r| Month::of_day(r.day).0)
        .filter(|m| !known.contains(m))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let mut client = get_client(pool).await?;
    let tx = client.transaction().await.map_err(db_error)?;
    tx.execute(LOCK_SQL, &[&PARTITION_LOCK])
        .await
        .map_err(db_error)?;
    for &month in &missing {
        tx.batch_execute(&create_partition_sql(month))
            .await
            .map_err(db_error)?;
    }
    tx.commit().await.map_err(db_error)?;
    known.extend(missing);
    Ok(())
}

const STORED_COLUMNS: &str = "result_id, received_at_ms, measured_at_ms, client_kind,
    client_version, access, test_point_id, ip_version, asn, isp, province_code, ward_code,
    place_source, download_mbps, upload_mbps, latency_ms, jitter_ms, ipv6_capable, status,
    reasons, counted, device_hash, body_hash, source, test_point_class, download_test_point_id";

fn stored_from_row(row: &Row) -> Result<StoredRow, StoreError> {
    let text = |i: usize| -> String { row.get(i) };
    let kind: ClientKind = from_json(&format!("\"{}\"", text(3)))?;
    let access: Access = from_json(&text(5))?;
    let place_source: PlaceSource = from_json(&format!("\"{}\"", text(12)))?;
    let status: ResultStatus = from_json(&format!("\"{}\"", text(18)))?;
    let reasons: Vec<ImplausibleReason> = from_json(&text(19))?;
    let record = StoredResult {
        result_id: row.get(0),
        received_at_ms: row.get::<_, i64>(1) as u64,
        measured_at_ms: row.get::<_, i64>(2) as u64,
        client: ClientInfo {
            kind,
            version: text(4),
        },
        access,
        test_point_id: text(6),
        ip_version: row.get::<_, i16>(7) as u8,
        asn: row.get::<_, Option<i64>>(8).map(|a| a as u32),
        isp: text(9),
        province_code: row.get(10),
        ward_code: row.get(11),
        place_source,
        metrics: PublishedMetrics {
            download_mbps: row.get(13),
            upload_mbps: row.get(14),
            latency_ms: row.get(15),
            jitter_ms: row.get(16),
            ipv6_capable: row.get(17),
        },
        status,
        reasons,
        counted: row.get(20),
        source: row.get(23),
        test_point_class: row
            .get::<_, Option<String>>(24)
            .map(|c| TestPointClass::parse(&c).ok_or_else(|| corrupt("unknown test point class")))
            .transpose()?,
        download_test_point_id: row.get(25),
    };
    let device: Vec<u8> = row.get(21);
    let body: Vec<u8> = row.get(22);
    Ok(StoredRow {
        record,
        device_hash: device
            .try_into()
            .map_err(|_| corrupt("device hash is not 16 bytes"))?,
        body_hash: body
            .try_into()
            .map_err(|_| corrupt("body hash is not 32 bytes"))?,
    })
}

async fn stored(client: &impl GenericClient, id: Uuid) -> Result<Option<StoredRow>, StoreError> {
    client
        .query_opt(
            &format!("SELECT {STORED_COLUMNS} FROM results WHERE result_id = $1"),
            &[&id],
        )
        .await
        .map_err(db_error)?
        .map(|row| stored_from_row(&row))
        .transpose()
}

/// The DDL of `month`'s partition of `results` (a no-op if it exists).
pub(crate) fn create_partition_sql(month: i32) -> String {
    let m = Month(month);
    format!(
        "CREATE TABLE IF NOT EXISTS results_{:04}_{:02} PARTITION OF results
         FOR VALUES FROM ({}) TO ({})",
        m.year(),
        m.month(),
        m.first_day(),
        Month(month + 1).first_day()
    )
}

/// One transaction's worth of results, in ingest order.
async fn insert_batch(
    tx: &Transaction<'_>,
    results: &[&NewResult],
    cap: u32,
) -> Result<Vec<InsertOutcome>, StoreError> {
    let mut outcomes: Vec<Option<InsertOutcome>> = vec![None; results.len()];
    // 1. Ids already stored (a retry), or repeated within the batch.
    let ids: Vec<Uuid> = results.iter().map(|r| r.result_id).collect();
    let known: HashMap<Uuid, Vec<u8>> = tx
        .query(
            "SELECT result_id, body_hash FROM result_ids WHERE result_id = ANY($1)",
            &[&ids],
        )
        .await
        .map_err(db_error)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut first_in_batch: HashMap<Uuid, usize> = HashMap::new();
    let mut candidates = Vec::new();
    for (i, r) in results.iter().enumerate() {
        if let Some(hash) = known.get(&r.result_id) {
            outcomes[i] = Some(existing_or_conflict(tx, r, hash).await?);
        } else if let std::collections::hash_map::Entry::Vacant(slot) =
            first_in_batch.entry(r.result_id)
        {
            slot.insert(i);
            candidates.push(i);
        }
        // A repeat within the batch is decided once its first's fate is
        // known (at the end).
    }
    // 2. Claim the ids; one another instance claimed meanwhile is theirs.
    // Every instance claims in id order, so two batches never deadlock.
    candidates.sort_by_key(|&i| results[i].result_id);
    let claim_ids: Vec<Uuid> = candidates.iter().map(|&i| results[i].result_id).collect();
    let claim_hashes: Vec<&[u8]> = candidates
        .iter()
        .map(|&i| &results[i].body_hash[..])
        .collect();
    let claim_days: Vec<i32> = candidates.iter().map(|&i| results[i].day).collect();
    let claimed: HashSet<Uuid> = tx
        .query(
            "INSERT INTO result_ids (result_id, body_hash, day)
             SELECT * FROM UNNEST($1::uuid[], $2::bytea[], $3::int[])
             ON CONFLICT DO NOTHING RETURNING result_id",
            &[&claim_ids, &claim_hashes, &claim_days],
        )
        .await
        .map_err(db_error)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut fresh = Vec::new();
    for &i in &candidates {
        if claimed.contains(&results[i].result_id) {
            fresh.push(i);
        } else {
            let hash: Vec<u8> = tx
                .query_one(
                    "SELECT body_hash FROM result_ids WHERE result_id = $1",
                    &[&results[i].result_id],
                )
                .await
                .map_err(db_error)?
                .get(0);
            outcomes[i] = Some(existing_or_conflict(tx, results[i], &hash).await?);
        }
    }
    // Back to ingest order: the heavy-tester cap counts in it.
    fresh.sort_unstable();
    // 3. Sessions: each backs one result, as receipt or download receipt
    // (claimed in key order, like the ids).
    let mut sessions: Vec<(String, String, Uuid)> = Vec::new();
    for &i in &fresh {
        let r = results[i];
        sessions.push((r.test_point_id.clone(), r.session_id.clone(), r.result_id));
        if let (Some(tp), Some(session)) = (&r.download_test_point_id, &r.download_session_id) {
            sessions.push((tp.clone(), session.clone(), r.result_id));
        }
    }
    sessions.sort();
    let s_tp: Vec<String> = sessions.iter().map(|s| s.0.clone()).collect();
    let s_session: Vec<String> = sessions.iter().map(|s| s.1.clone()).collect();
    let s_id: Vec<Uuid> = sessions.iter().map(|s| s.2).collect();
    let inserted: Vec<(String, String, Uuid)> = tx
        .query(
            "INSERT INTO receipt_sessions (test_point_id, session_id, result_id)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::uuid[])
             ON CONFLICT DO NOTHING RETURNING test_point_id, session_id, result_id",
            &[&s_tp, &s_session, &s_id],
        )
        .await
        .map_err(db_error)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let inserted: HashSet<(String, String, Uuid)> = inserted.into_iter().collect();
    let mut reused: HashSet<Uuid> = HashSet::new();
    for k in 0..s_id.len() {
        if !inserted.contains(&(s_tp[k].clone(), s_session[k].clone(), s_id[k])) {
            reused.insert(s_id[k]);
        }
    }
    if !reused.is_empty() {
        let reused: Vec<Uuid> = reused.iter().copied().collect();
        tx.execute(
            "DELETE FROM receipt_sessions WHERE result_id = ANY($1)",
            &[&reused],
        )
        .await
        .map_err(db_error)?;
        tx.execute(
            "DELETE FROM result_ids WHERE result_id = ANY($1)",
            &[&reused],
        )
        .await
        .map_err(db_error)?;
    }
    let created: Vec<usize> = fresh
        .into_iter()
        .filter(|&i| {
            if reused.contains(&results[i].result_id) {
                outcomes[i] = Some(InsertOutcome::ReceiptReused);
                false
            } else {
                true
            }
        })
        .collect();
    // 4. The heavy-tester cap, in ingest order per device and day.
    let mut per_device: BTreeMap<(Vec<u8>, i32), Vec<usize>> = BTreeMap::new();
    for &i in &created {
        if results[i].status == ResultStatus::Accepted {
            per_device
                .entry((results[i].device_hash.to_vec(), results[i].day))
                .or_default()
                .push(i);
        }
    }
    let devices: Vec<&[u8]> = per_device.keys().map(|(d, _)| d.as_slice()).collect();
    let days: Vec<i32> = per_device.keys().map(|(_, day)| *day).collect();
    let adds: Vec<i32> = per_device.values().map(|v| v.len() as i32).collect();
    let totals: HashMap<(Vec<u8>, i32), i32> = tx
        .query(
            "INSERT INTO device_day (device_hash, day, n)
             SELECT * FROM UNNEST($1::bytea[], $2::int[], $3::int[])
             ON CONFLICT (device_hash, day) DO UPDATE SET n = device_day.n + excluded.n
             RETURNING device_hash, day, n",
            &[&devices, &days, &adds],
        )
        .await
        .map_err(db_error)?
        .iter()
        .map(|r| ((r.get::<_, Vec<u8>>(0), r.get(1)), r.get(2)))
        .collect();
    let mut counted = vec![false; results.len()];
    for (key, members) in &per_device {
        let total = totals.get(key).copied().unwrap_or(members.len() as i32);
        let before = total - members.len() as i32;
        for (j, &i) in members.iter().enumerate() {
            counted[i] = before + (j as i32) < cap as i32;
        }
    }
    // 5. The rows.
    insert_rows(tx, results, &created, &counted).await?;
    // 6. The counted ones' contributions, for the rollup applier.
    for &i in &created {
        outcomes[i] = Some(InsertOutcome::Created(results[i].stored(counted[i])));
    }
    enqueue(tx, results, &created, &counted).await?;
    // Repeats within the batch: a retry of their first, or a conflict.
    for (i, r) in results.iter().enumerate() {
        if outcomes[i].is_some() {
            continue;
        }
        let j = first_in_batch[&r.result_id];
        outcomes[i] = Some(match &outcomes[j] {
            _ if results[j].body_hash != r.body_hash => InsertOutcome::Conflict,
            Some(InsertOutcome::Created(record) | InsertOutcome::Existing(record)) => {
                InsertOutcome::Existing(record.clone())
            }
            Some(InsertOutcome::ReceiptReused) => InsertOutcome::ReceiptReused,
            _ => InsertOutcome::Conflict,
        });
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.expect("every result has an outcome"))
        .collect())
}

async fn existing_or_conflict(
    tx: &Transaction<'_>,
    result: &NewResult,
    stored_hash: &[u8],
) -> Result<InsertOutcome, StoreError> {
    if stored_hash != result.body_hash {
        return Ok(InsertOutcome::Conflict);
    }
    match stored(tx, result.result_id).await? {
        Some(row) => Ok(InsertOutcome::Existing(row.record)),
        None => Err(corrupt("a claimed result id has no row")),
    }
}

async fn insert_rows(
    tx: &Transaction<'_>,
    results: &[&NewResult],
    created: &[usize],
    counted: &[bool],
) -> Result<(), StoreError> {
    if created.is_empty() {
        return Ok(());
    }
    let rs: Vec<&NewResult> = created.iter().map(|&i| results[i]).collect();
    let col = |f: &dyn Fn(&NewResult) -> String| rs.iter().map(|r| f(r)).collect::<Vec<String>>();
    let opt = |f: &dyn Fn(&NewResult) -> Option<String>| {
        rs.iter().map(|r| f(r)).collect::<Vec<Option<String>>>()
    };
    let num = |f: &dyn Fn(&NewResult) -> Option<f64>| {
        rs.iter().map(|r| f(r)).collect::<Vec<Option<f64>>>()
    };
    let result_id: Vec<Uuid> = rs.iter().map(|r| r.result_id).collect();
    let body_hash: Vec<&[u8]> = rs.iter().map(|r| &r.body_hash[..]).collect();
    let received: Vec<i64> = rs.iter().map(|r| r.received_at_ms as i64).collect();
    let measured: Vec<i64> = rs.iter().map(|r| r.measured_at_ms as i64).collect();
    let day: Vec<i32> = rs.iter().map(|r| r.day).collect();
    let device: Vec<&[u8]> = rs.iter().map(|r| &r.device_hash[..]).collect();
    let client_kind = col(&|r| r.client.kind.as_str().to_owned());
    let client_version = col(&|r| r.client.version.clone());
    let access = col(&|r| json(&r.access));
    let access_kind = col(&|r| r.access.kind().as_str().to_owned());
    let test_point_id = col(&|r| r.test_point_id.clone());
    let session_id = col(&|r| r.session_id.clone());
    let ip_version: Vec<i16> = rs.iter().map(|r| i16::from(r.ip_version)).collect();
    let client_net = col(&|r| r.client_net.clone());
    let asn: Vec<Option<i64>> = rs.iter().map(|r| r.asn.map(i64::from)).collect();
    let isp = col(&|r| r.isp.clone());
    let location = opt(&|r| r.location.as_ref().map(json));
    let ward_chosen = opt(&|r| r.ward_chosen.clone());
    let province_code = opt(&|r| r.province_code.clone());
    let ward_code = opt(&|r| r.ward_code.clone());
    let place_source = col(&|r| place_source_str(r.place_source).to_owned());
    let download = num(&|r| r.metrics.download_mbps);
    let upload = num(&|r| r.metrics.upload_mbps);
    let latency = num(&|r| r.metrics.latency_ms);
    let jitter = num(&|r| r.metrics.jitter_ms);
    let ipv6: Vec<Option<bool>> = rs.iter().map(|r| r.metrics.ipv6_capable).collect();
    let client_metrics = col(&|r| json(&r.client_metrics));
    let status = col(&|r| status_str(r.status).to_owned());
    let reasons = col(&|r| json(&r.reasons));
    let counted: Vec<bool> = created.iter().map(|&i| counted[i]).collect();
    let receipt = col(&|r| r.receipt.clone());
    let source = opt(&|r| r.source.clone());
    let class = opt(&|r| r.test_point_class.map(|c| c.as_str().to_owned()));
    let download_tp = opt(&|r| r.download_test_point_id.clone());
    let download_session = opt(&|r| r.download_session_id.clone());
    let download_receipt = opt(&|r| r.download_receipt.clone());
    tx.execute(
        "INSERT INTO results (result_id, body_hash, received_at_ms, measured_at_ms, day,
            device_hash, client_kind, client_version, access, access_kind, test_point_id,
            session_id, ip_version, client_net, asn, isp, location, ward_chosen, province_code,
            ward_code, place_source, download_mbps, upload_mbps, latency_ms, jitter_ms,
            ipv6_capable, client_metrics, status, reasons, counted, receipt, source,
            test_point_class, download_test_point_id, download_session_id, download_receipt)
         SELECT * FROM UNNEST($1::uuid[], $2::bytea[], $3::bigint[], $4::bigint[], $5::int[],
            $6::bytea[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
            $12::text[], $13::smallint[], $14::text[], $15::bigint[], $16::text[], $17::text[],
            $18::text[], $19::text[], $20::text[], $21::text[], $22::float8[], $23::float8[],
            $24::float8[], $25::float8[], $26::bool[], $27::text[], $28::text[], $29::text[],
            $30::bool[], $31::text[], $32::text[], $33::text[], $34::text[], $35::text[],
            $36::text[])",
        &[
            &result_id,
            &body_hash,
            &received,
            &measured,
            &day,
            &device,
            &client_kind,
            &client_version,
            &access,
            &access_kind,
            &test_point_id,
            &session_id,
            &ip_version,
            &client_net,
            &asn,
            &isp,
            &location,
            &ward_chosen,
            &province_code,
            &ward_code,
            &place_source,
            &download,
            &upload,
            &latency,
            &jitter,
            &ipv6,
            &client_metrics,
            &status,
            &reasons,
            &counted,
            &receipt,
            &source,
            &class,
            &download_tp,
            &download_session,
            &download_receipt,
        ],
    )
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Key columns of cells as parallel arrays, in the order given.
struct KeyArrays {
    grain: Vec<i16>,
    period: Vec<i32>,
    level: Vec<i16>,
    parent: Vec<String>,
    code: Vec<String>,
    isp: Vec<String>,
    access: Vec<String>,
    ip_version: Vec<i16>,
}

impl KeyArrays {
    /// The key columns as parameters `$1`…`$8`, then `rest` from `$9` on.
    fn params<'a>(&'a self, rest: &[&'a (dyn ToSql + Sync)]) -> Vec<&'a (dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &self.grain,
            &self.period,
            &self.level,
            &self.parent,
            &self.code,
            &self.isp,
            &self.access,
            &self.ip_version,
        ];
        params.extend_from_slice(rest);
        params
    }

    fn of<'a>(keys: impl Iterator<Item = &'a CellKey>) -> KeyArrays {
        let mut a = KeyArrays {
            grain: vec![],
            period: vec![],
            level: vec![],
            parent: vec![],
            code: vec![],
            isp: vec![],
            access: vec![],
            ip_version: vec![],
        };
        for k in keys {
            a.grain.push(k.grain.as_i64() as i16);
            a.period.push(k.period);
            a.level.push(level_to_i64(k.level) as i16);
            a.parent.push(k.parent.clone());
            a.code.push(k.code.clone());
            a.isp.push(k.isp.clone());
            a.access.push(k.access_str().to_owned());
            a.ip_version.push(i16::from(k.ip_version));
        }
        a
    }
}

/// Appends the counted results' contributions to the rollup queue.
async fn enqueue(
    tx: &Transaction<'_>,
    results: &[&NewResult],
    created: &[usize],
    counted: &[bool],
) -> Result<(), StoreError> {
    let rs: Vec<&NewResult> = created
        .iter()
        .filter(|&&i| counted[i])
        .map(|&i| results[i])
        .collect();
    if rs.is_empty() {
        return Ok(());
    }
    let day: Vec<i32> = rs.iter().map(|r| r.day).collect();
    let province: Vec<Option<&str>> = rs.iter().map(|r| r.province_code.as_deref()).collect();
    let ward: Vec<Option<&str>> = rs.iter().map(|r| r.ward_code.as_deref()).collect();
    let isp: Vec<&str> = rs.iter().map(|r| r.isp.as_str()).collect();
    let access: Vec<&str> = rs.iter().map(|r| r.access.kind().as_str()).collect();
    let ip_version: Vec<i16> = rs.iter().map(|r| i16::from(r.ip_version)).collect();
    let device: Vec<&[u8]> = rs.iter().map(|r| &r.device_hash[..]).collect();
    let download: Vec<Option<f64>> = rs.iter().map(|r| r.metrics.download_mbps).collect();
    let upload: Vec<Option<f64>> = rs.iter().map(|r| r.metrics.upload_mbps).collect();
    let latency: Vec<Option<f64>> = rs.iter().map(|r| r.metrics.latency_ms).collect();
    tx.execute(
        "INSERT INTO rollup_queue (day, province_code, ward_code, isp, access_kind, ip_version,
                                   device_hash, download_mbps, upload_mbps, latency_ms)
         SELECT * FROM UNNEST($1::int[], $2::text[], $3::text[], $4::text[], $5::text[],
                              $6::smallint[], $7::bytea[], $8::float8[], $9::float8[],
                              $10::float8[])",
        &[
            &day,
            &province,
            &ward,
            &isp,
            &access,
            &ip_version,
            &device,
            &download,
            &upload,
            &latency,
        ],
    )
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Whether anything waits in the rollup queue (committed before this call).
/// A scan of the queue reads its dead rows too: the applier vacuums the
/// queue (below) so that this stays cheap without relying on autovacuum.
async fn queue_pending(pool: &Pool) -> Result<bool, StoreError> {
    let client = get_client(pool).await?;
    Ok(client
        .query_one("SELECT EXISTS (SELECT 1 FROM rollup_queue)", &[])
        .await
        .map_err(db_error)?
        .get(0))
}

/// Merges the queue into the cells until it is empty (as of each step),
/// one applier at a time. With `wait` it waits for a running applier, so
/// that on return everything queued before the call is in the cells;
/// without, it leaves the work to that applier. Returns the rows merged,
/// and adds them to `dequeued`.
async fn apply_queue(pool: &Pool, wait: bool, dequeued: &AtomicU64) -> Result<u64, StoreError> {
    let mut merged = 0u64;
    loop {
        let mut client = get_client(pool).await?;
        let tx = client.transaction().await.map_err(db_error)?;
        if wait {
            tx.execute(LOCK_SQL, &[&ROLLUP_LOCK])
                .await
                .map_err(db_error)?;
        } else {
            let locked: bool = tx
                .query_one(TRY_LOCK_SQL, &[&ROLLUP_LOCK])
                .await
                .map_err(db_error)?
                .get(0);
            if !locked {
                return Ok(merged);
            }
        }
        let rows = tx
            .query(
                &format!(
                    "DELETE FROM rollup_queue WHERE id IN
                         (SELECT id FROM rollup_queue ORDER BY id LIMIT $1)
                     RETURNING {CONTRIBUTION_COLUMNS}"
                ),
                &[&APPLY_BATCH],
            )
            .await
            .map_err(db_error)?;
        if rows.is_empty() {
            return Ok(merged);
        }
        let mut deltas: HashMap<CellKey, Cell> = HashMap::new();
        for row in &rows {
            let contribution = contribution_from_row(row)?;
            for key in contribution.keys() {
                deltas.entry(key).or_default().add(&contribution);
            }
        }
        merge_cells(&tx, deltas).await?;
        tx.commit().await.map_err(db_error)?;
        merged += rows.len() as u64;
        dequeued.fetch_add(rows.len() as u64, Ordering::Relaxed);
    }
}

/// Dead rows in the queue table, as of the server's cumulative statistics.
async fn queue_dead_rows(pool: &Pool) -> Result<i64, StoreError> {
    let client = get_client(pool).await?;
    Ok(client
        .query_opt(
            "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'rollup_queue'::regclass",
            &[],
        )
        .await
        .map_err(db_error)?
        .map_or(0, |row| row.get(0)))
}

/// The columns [`contribution_from_row`] reads, in its order; the queue
/// and `results` both have them.
const CONTRIBUTION_COLUMNS: &str = "day, province_code, ward_code, isp, access_kind, ip_version, \
     device_hash, download_mbps, upload_mbps, latency_ms";

/// A result's contribution to the cells, from a row that starts with
/// [`CONTRIBUTION_COLUMNS`] (borrowing its strings).
fn contribution_from_row(row: &Row) -> Result<Contribution<'_>, StoreError> {
    let device: &[u8] = row.get(6);
    Ok(Contribution {
        day: row.get(0),
        province_code: row.get(1),
        ward_code: row.get(2),
        isp: row.get(3),
        access: parse_access_kind(row.get(4))?,
        ip_version: row.get::<_, i16>(5) as u8,
        device_hash: u64::from_le_bytes(
            device
                .get(..8)
                .and_then(|d| d.try_into().ok())
                .ok_or_else(|| corrupt("short device hash"))?,
        ),
        download_mbps: row.get(7),
        upload_mbps: row.get(8),
        latency_ms: row.get(9),
    })
}

/// Keeps the queue short so that readers rarely have work to do, and its
/// table free of dead rows: every reader on the primary scans it, and a
/// deployment cannot be assumed to run autovacuum often enough (or at all).
async fn background_applier(
    pool: Pool,
    dequeued: Arc<AtomicU64>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut last_vacuum = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(APPLY_INTERVAL) => {}
        }
        match queue_pending(&pool).await {
            Ok(true) => {
                if let Err(error) = apply_queue(&pool, false, &dequeued).await {
                    tracing::warn!(%error, "rollup queue not applied; will retry");
                }
            }
            Ok(false) => {}
            Err(error) => tracing::debug!(%error, "rollup queue not reachable"),
        }
        if last_vacuum.elapsed() < QUEUE_VACUUM_INTERVAL {
            continue;
        }
        last_vacuum = std::time::Instant::now();
        let deleted = dequeued.swap(0, Ordering::Relaxed);
        // Rows deleted while any transaction in the database was older
        // cannot be removed yet: the statistics say they remain, and a
        // later round removes them.
        if deleted > 0 || queue_dead_rows(&pool).await.unwrap_or(0) > 0 {
            // Outside a transaction (VACUUM cannot run in one); SKIP_LOCKED:
            // another instance vacuuming it now does the same work.
            let vacuumed = match get_client(&pool).await {
                Ok(client) => client
                    .batch_execute("VACUUM (SKIP_LOCKED) rollup_queue")
                    .await
                    .map_err(db_error),
                Err(error) => Err(error),
            };
            if let Err(error) = vacuumed {
                dequeued.fetch_add(deleted, Ordering::Relaxed);
                tracing::warn!(%error, "rollup queue not vacuumed; will retry");
            }
        }
    }
}

/// Merges cell deltas into the stored cells: rows created if missing, then
/// locked in key order (every instance locks in the same order, so two
/// never deadlock), merged here and written back; the months' versions are
/// bumped in the same transaction.
async fn merge_cells(
    tx: &Transaction<'_>,
    deltas: HashMap<CellKey, Cell>,
) -> Result<(), StoreError> {
    if deltas.is_empty() {
        return Ok(());
    }
    let mut deltas: Vec<(CellKey, Cell)> = deltas.into_iter().collect();
    deltas.sort_by(|a, b| a.0.cmp(&b.0));
    let keys = KeyArrays::of(deltas.iter().map(|(k, _)| k));
    let empty = Cell::default().to_blobs();
    tx.execute(
        "INSERT INTO cells (grain, period, level, parent, code, isp, access, ip_version,
                            n, download, upload, latency, devices)
         SELECT k.*, 0, $9, $10, $11, $12
         FROM UNNEST($1::smallint[], $2::int[], $3::smallint[], $4::text[], $5::text[],
                     $6::text[], $7::text[], $8::smallint[])
              AS k(grain, period, level, parent, code, isp, access, ip_version)
         ORDER BY 1, 2, 3, 4, 5, 6, 7, 8
         ON CONFLICT DO NOTHING",
        &keys.params(&[&empty[0], &empty[1], &empty[2], &empty[3]]),
    )
    .await
    .map_err(db_error)?;
    let rows = tx
        .query(
            "SELECT c.grain, c.period, c.level, c.parent, c.code, c.isp, c.access, c.ip_version,
                    c.n, c.download, c.upload, c.latency, c.devices
             FROM cells c
             JOIN UNNEST($1::smallint[], $2::int[], $3::smallint[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::smallint[])
                  AS k(grain, period, level, parent, code, isp, access, ip_version)
               USING (grain, period, level, parent, code, isp, access, ip_version)
             ORDER BY 1, 2, 3, 4, 5, 6, 7, 8
             FOR UPDATE OF c",
            &keys.params(&[]),
        )
        .await
        .map_err(db_error)?;
    let mut stored: HashMap<KeyColumns, Cell> = HashMap::with_capacity(rows.len());
    for row in &rows {
        let n: i64 = row.get(8);
        let blobs: [Vec<u8>; 4] = [row.get(9), row.get(10), row.get(11), row.get(12)];
        let cell = Cell::from_blobs(n as u64, [&blobs[0], &blobs[1], &blobs[2], &blobs[3]])
            .map_err(corrupt)?;
        stored.insert(
            (
                row.get(0),
                row.get(1),
                row.get(2),
                row.get(3),
                row.get(4),
                row.get(5),
                row.get(6),
                row.get(7),
            ),
            cell,
        );
    }
    let mut n = Vec::with_capacity(deltas.len());
    let mut blobs: [Vec<Vec<u8>>; 4] = Default::default();
    for (i, (_, delta)) in deltas.iter().enumerate() {
        let key = (
            keys.grain[i],
            keys.period[i],
            keys.level[i],
            keys.parent[i].clone(),
            keys.code[i].clone(),
            keys.isp[i].clone(),
            keys.access[i].clone(),
            keys.ip_version[i],
        );
        let mut cell = stored.remove(&key).unwrap_or_default();
        cell.merge(delta);
        n.push(cell.n as i64);
        for (slot, blob) in blobs.iter_mut().zip(cell.to_blobs()) {
            slot.push(blob);
        }
    }
    tx.execute(
        "UPDATE cells c SET n = v.n, download = v.download, upload = v.upload,
                latency = v.latency, devices = v.devices
         FROM UNNEST($1::smallint[], $2::int[], $3::smallint[], $4::text[], $5::text[],
                     $6::text[], $7::text[], $8::smallint[], $9::bigint[], $10::bytea[],
                     $11::bytea[], $12::bytea[], $13::bytea[])
              AS v(grain, period, level, parent, code, isp, access, ip_version, n, download,
                   upload, latency, devices)
         WHERE (c.grain, c.period, c.level, c.parent, c.code, c.isp, c.access, c.ip_version)
             = (v.grain, v.period, v.level, v.parent, v.code, v.isp, v.access, v.ip_version)",
        &keys.params(&[&n, &blobs[0], &blobs[1], &blobs[2], &blobs[3]]),
    )
    .await
    .map_err(db_error)?;
    bump_month_versions(tx, &months_of(deltas.iter().map(|(k, _)| k))).await
}

/// The months that cells with these keys belong to, sorted, once each.
fn months_of<'a>(keys: impl Iterator<Item = &'a CellKey>) -> Vec<i32> {
    let mut months: Vec<i32> = keys
        .map(|k| match k.grain {
            Grain::Month => k.period,
            Grain::Day => Month::of_day(k.period).0,
        })
        .collect();
    months.sort_unstable();
    months.dedup();
    months
}

/// Bumps (or starts) the versions of `months`: every instance's cached
/// answers that read them are stale from this transaction's commit on.
async fn bump_month_versions(tx: &Transaction<'_>, months: &[i32]) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO month_versions (month, version) SELECT m, 1 FROM UNNEST($1::int[]) AS m
         ON CONFLICT (month) DO UPDATE SET version = month_versions.version + 1",
        &[&months],
    )
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Writes whole cells (rebuild): insert or replace.
async fn write_cells(
    tx: &Transaction<'_>,
    cells: HashMap<CellKey, Cell>,
) -> Result<u64, StoreError> {
    let count = cells.len() as u64;
    let cells: Vec<(CellKey, Cell)> = cells.into_iter().collect();
    for chunk in cells.chunks(5_000) {
        let keys = KeyArrays::of(chunk.iter().map(|(k, _)| k));
        let n: Vec<i64> = chunk.iter().map(|(_, c)| c.n as i64).collect();
        let mut blobs: [Vec<Vec<u8>>; 4] = Default::default();
        for (_, cell) in chunk {
            for (slot, blob) in blobs.iter_mut().zip(cell.to_blobs()) {
                slot.push(blob);
            }
        }
        tx.execute(
            "INSERT INTO cells (grain, period, level, parent, code, isp, access, ip_version,
                                n, download, upload, latency, devices)
             SELECT * FROM UNNEST($1::smallint[], $2::int[], $3::smallint[], $4::text[],
                 $5::text[], $6::text[], $7::text[], $8::smallint[], $9::bigint[], $10::bytea[],
                 $11::bytea[], $12::bytea[], $13::bytea[])
             ON CONFLICT (grain, period, level, parent, code, isp, access, ip_version)
             DO UPDATE SET n = excluded.n, download = excluded.download,
                 upload = excluded.upload, latency = excluded.latency, devices = excluded.devices",
            &keys.params(&[&n, &blobs[0], &blobs[1], &blobs[2], &blobs[3]]),
        )
        .await
        .map_err(db_error)?;
    }
    Ok(count)
}

/// (source, results, counted) as selected by the source-count queries.
fn source_count_from_row(row: &Row) -> SourceCount {
    SourceCount {
        source: row.get(0),
        results: row.get::<_, i64>(1) as u64,
        counted: row.get::<_, i64>(2) as u64,
    }
}

fn user_from_row(row: &Row) -> User {
    let role: String = row.get(3);
    User {
        id: row.get(0),
        username: row.get(1),
        password_hash: row.get(2),
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        province_code: row.get(4),
        created_at_ms: row.get::<_, i64>(5) as u64,
        disabled_at_ms: row.get::<_, Option<i64>>(6).map(|t| t as u64),
    }
}

const USER_COLUMNS: &str =
    "SELECT id, username, password_hash, role, province_code, created_at_ms, disabled_at_ms FROM users";
const TOKEN_COLUMNS: &str =
    "SELECT id, user_id, name, created_at_ms, revoked_at_ms FROM api_tokens";

fn token_from_row(row: &Row) -> ApiTokenRecord {
    ApiTokenRecord {
        id: row.get(0),
        user_id: row.get(1),
        name: row.get(2),
        created_at_ms: row.get::<_, i64>(3) as u64,
        revoked_at_ms: row.get::<_, Option<i64>>(4).map(|t| t as u64),
    }
}

const CAMPAIGN_COLUMNS: &str = "SELECT slug, name, organisation, province_code, wards, first_day,
    last_day, target_per_ward, tags, created_by, created_at_ms FROM campaigns";

fn campaign_from_row(row: &Row) -> Result<Campaign, StoreError> {
    Ok(Campaign {
        slug: row.get(0),
        name: row.get(1),
        organisation: row.get(2),
        province_code: row.get(3),
        wards: from_json(&row.get::<_, String>(4))?,
        first_day: row.get(5),
        last_day: row.get(6),
        target_per_ward: row.get::<_, i64>(7) as u64,
        tags: from_json(&row.get::<_, String>(8))?,
        created_by: row.get(9),
        created_at_ms: row.get::<_, i64>(10) as u64,
    })
}

fn test_point_from_row(row: &Row) -> Result<TestPointRecord, StoreError> {
    let status: String = row.get(6);
    let details: Option<String> = row.get(8);
    let ms = |i: usize| row.get::<_, Option<i64>>(i).map(|t| t as u64);
    Ok(TestPointRecord {
        id: row.get(0),
        public_key: row.get(1),
        url: row.get(2),
        name: row.get(3),
        province_code: row.get(4),
        line_rate_mbps: row.get(5),
        status: RegistrationStatus::parse(&status)
            .ok_or_else(|| corrupt("unknown registration status"))?,
        configured: row.get(7),
        details: details.as_deref().map(from_json).transpose()?,
        registered_at_ms: ms(9),
        approved_at_ms: ms(10),
        revoked_at_ms: ms(11),
    })
}

#[async_trait]
impl Store for PostgresStore {
    async fn insert(&self, results: Vec<NewResult>) -> Result<Vec<InsertOutcome>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.batches
            .send((results, reply))
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn get(&self, result_id: Uuid) -> Result<Option<StoredRow>, StoreError> {
        stored(&**self.client().await?, result_id).await
    }

    async fn cells(&self, query: CellQuery) -> Result<Arc<Vec<(CellKey, Cell)>>, StoreError> {
        let mut months = query_months(&query);
        months.sort_unstable();
        months.dedup();
        // Everything acknowledged before this read is in the answer (on the
        // primary; a replica cannot write, and trails by design).
        if self.read_pool.is_none() && queue_pending(&self.pool).await? {
            apply_queue(&self.pool, true, &self.dequeued).await?;
        }
        let versions = self.month_versions(&months).await?;
        if let Some(cells) = self.cache.get(&query, &versions) {
            return Ok(cells);
        }
        let cells = Arc::new(self.read_cells(&query).await?);
        self.cache.insert(query, versions, cells.clone());
        Ok(cells)
    }

    async fn counted_values(
        &self,
        first_day: i32,
        last_day: i32,
    ) -> Result<Vec<CountedValues>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT day, province_code, ward_code, isp, access_kind, ip_version, device_hash,
                        download_mbps, upload_mbps, latency_ms
                 FROM results WHERE counted AND day BETWEEN $1 AND $2 ORDER BY day, seq",
                &[&first_day, &last_day],
            )
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|r| {
                let device: Vec<u8> = r.get(6);
                Ok(CountedValues {
                    day: r.get(0),
                    province_code: r.get(1),
                    ward_code: r.get(2),
                    isp: r.get(3),
                    access: r.get(4),
                    ip_version: r.get::<_, i16>(5) as u8,
                    device_hash: device
                        .try_into()
                        .map_err(|_| corrupt("device hash is not 16 bytes"))?,
                    download_mbps: r.get(7),
                    upload_mbps: r.get(8),
                    latency_ms: r.get(9),
                })
            })
            .collect()
    }

    async fn rebuild_rollups(&self) -> Result<RebuildReport, StoreError> {
        let cap = i32::try_from(self.options.heavy_tester_cap).unwrap_or(i32::MAX);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        tx.execute(LOCK_SQL, &[&ROLLUP_LOCK])
            .await
            .map_err(db_error)?;
        // The queued contributions are in `results` too: recomputed below.
        tx.batch_execute("LOCK TABLE results, cells, device_day, rollup_queue IN EXCLUSIVE MODE; DELETE FROM cells; DELETE FROM device_day; DELETE FROM rollup_queue;")
            .await
            .map_err(db_error)?;
        // Streamed: the raw rows may not fit in memory.
        let rows = tx
            .query_raw(
                &format!(
                    "SELECT {CONTRIBUTION_COLUMNS}, seq, status, counted
                          FROM results ORDER BY day, seq"
                ),
                std::iter::empty::<i32>(),
            )
            .await
            .map_err(db_error)?;
        let mut rows = std::pin::pin!(rows);
        let mut report = RebuildReport {
            results: 0,
            counted: 0,
            cells: 0,
        };
        let mut cells: HashMap<CellKey, Cell> = HashMap::new();
        let mut device_counts: HashMap<(Vec<u8>, i32), i32> = HashMap::new();
        let mut changed: Vec<(i32, i64, bool)> = Vec::new();
        while let Some(row) = futures_util::TryStreamExt::try_next(&mut rows)
            .await
            .map_err(db_error)?
        {
            report.results += 1;
            let day: i32 = row.get(0);
            let device: Vec<u8> = row.get(6);
            let status: &str = row.get(11);
            let was: bool = row.get(12);
            let counted = status == "accepted" && {
                let n = device_counts.entry((device.clone(), day)).or_insert(0);
                *n += 1;
                *n <= cap
            };
            if counted != was {
                changed.push((day, row.get(10), counted));
            }
            if !counted {
                continue;
            }
            report.counted += 1;
            let contribution = contribution_from_row(&row)?;
            for key in contribution.keys() {
                cells.entry(key).or_default().add(&contribution);
            }
        }
        let written = months_of(cells.keys());
        report.cells = write_cells(&tx, cells).await?;
        let devices: Vec<Vec<u8>> = device_counts.keys().map(|(d, _)| d.clone()).collect();
        let days: Vec<i32> = device_counts.keys().map(|(_, d)| *d).collect();
        let ns: Vec<i32> = device_counts.values().copied().collect();
        tx.execute(
            "INSERT INTO device_day (device_hash, day, n) SELECT * FROM UNNEST($1::bytea[], $2::int[], $3::int[])",
            &[&devices, &days, &ns],
        )
        .await
        .map_err(db_error)?;
        let c_day: Vec<i32> = changed.iter().map(|c| c.0).collect();
        let c_seq: Vec<i64> = changed.iter().map(|c| c.1).collect();
        let c_counted: Vec<bool> = changed.iter().map(|c| c.2).collect();
        tx.execute(
            "UPDATE results r SET counted = c.counted
             FROM UNNEST($1::int[], $2::bigint[], $3::bool[]) AS c(day, seq, counted)
             WHERE r.day = c.day AND r.seq = c.seq",
            &[&c_day, &c_seq, &c_counted],
        )
        .await
        .map_err(db_error)?;
        // Every month that had cells and every month that has them now,
        // once each: the versions alone make every instance's cache stale
        // (a migrated store has no version rows until this rebuild).
        tx.execute(
            "UPDATE month_versions SET version = version + 1 WHERE month <> ALL($1)",
            &[&written],
        )
        .await
        .map_err(db_error)?;
        bump_month_versions(&tx, &written).await?;
        tx.commit().await.map_err(db_error)?;
        // Every result row and cell was rewritten.
        self.after_bulk_load().await?;
        Ok(report)
    }

    async fn upsert_test_point(&self, tp: TestPointRecord) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        tx.execute(
            "DELETE FROM test_points WHERE public_key = $1 AND id <> $2",
            &[&tp.public_key, &tp.id],
        )
        .await
        .map_err(db_error)?;
        let ms = |v: Option<u64>| v.map(|t| t as i64);
        tx.execute(
            "INSERT INTO test_points (id, public_key, url, name, province_code, line_rate_mbps,
                 status, configured, details, registered_at_ms, approved_at_ms, revoked_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (id) DO UPDATE SET public_key = excluded.public_key, url = excluded.url,
                 name = excluded.name, province_code = excluded.province_code,
                 line_rate_mbps = excluded.line_rate_mbps, status = excluded.status,
                 configured = excluded.configured, details = excluded.details,
                 registered_at_ms = excluded.registered_at_ms,
                 approved_at_ms = excluded.approved_at_ms, revoked_at_ms = excluded.revoked_at_ms",
            &[
                &tp.id,
                &tp.public_key,
                &tp.url,
                &tp.name,
                &tp.province_code,
                &tp.line_rate_mbps,
                &tp.status.as_str(),
                &tp.configured,
                &tp.details.as_ref().map(json),
                &ms(tp.registered_at_ms),
                &ms(tp.approved_at_ms),
                &ms(tp.revoked_at_ms),
            ],
        )
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn test_points(&self) -> Result<Vec<TestPointRecord>, StoreError> {
        let client = self.client().await?;
        client
            .query(
                "SELECT id, public_key, url, name, province_code, line_rate_mbps, status,
                        configured, details, registered_at_ms, approved_at_ms, revoked_at_ms
                 FROM test_points ORDER BY id",
                &[],
            )
            .await
            .map_err(db_error)?
            .iter()
            .map(test_point_from_row)
            .collect()
    }

    async fn device_hash_key(&self) -> Result<[u8; 32], StoreError> {
        let client = self.client().await?;
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh).map_err(|e| StoreError::Database(e.to_string()))?;
        // The first instance to ask creates it; every later one reads it.
        client
            .execute(
                "INSERT INTO meta (key, value) VALUES ('device_hash_key', $1) ON CONFLICT DO NOTHING",
                &[&fresh.as_slice()],
            )
            .await
            .map_err(db_error)?;
        let value: Vec<u8> = client
            .query_one("SELECT value FROM meta WHERE key = 'device_hash_key'", &[])
            .await
            .map_err(db_error)?
            .get(0);
        value
            .try_into()
            .map_err(|_| corrupt("device hash key is not 32 bytes"))
    }

    async fn result_count(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let n: i64 = client
            .query_one("SELECT count(*) FROM result_ids", &[])
            .await
            .map_err(db_error)?
            .get(0);
        Ok(n as u64)
    }

    async fn source_counts(
        &self,
        first_day: i32,
        last_day: i32,
        limit: u32,
    ) -> Result<Vec<SourceCount>, StoreError> {
        let client = self.client().await?;
        let limit = i64::from(limit);
        Ok(client
            .query(
                "SELECT source, count(*), count(*) FILTER (WHERE counted) FROM results
                 WHERE source IS NOT NULL AND day BETWEEN $1 AND $2
                 GROUP BY source ORDER BY count(*) DESC, source LIMIT $3",
                &[&first_day, &last_day, &limit],
            )
            .await
            .map_err(db_error)?
            .iter()
            .map(source_count_from_row)
            .collect())
    }

    async fn export_results(
        &self,
        province_code: &str,
        first_day: i32,
        last_day: i32,
    ) -> Result<Vec<ExportRow>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query(
                "SELECT result_id::text, measured_at_ms, day, province_code, ward_code, place_source,
                    isp, access_kind, ip_version, download_mbps, upload_mbps, latency_ms, status,
                    counted, source, test_point_id
                 FROM results WHERE province_code = $1 AND day BETWEEN $2 AND $3 ORDER BY day, seq",
                &[&province_code, &first_day, &last_day],
            )
            .await
            .map_err(db_error)?
            .iter()
            .map(|r| ExportRow {
                result_id: r.get(0),
                measured_at_ms: r.get::<_, i64>(1) as u64,
                day: r.get(2),
                province_code: r.get(3),
                ward_code: r.get(4),
                place_source: r.get(5),
                isp: r.get(6),
                access: r.get(7),
                ip_version: r.get::<_, i16>(8) as u8,
                download_mbps: r.get(9),
                upload_mbps: r.get(10),
                latency_ms: r.get(11),
                status: r.get(12),
                counted: r.get(13),
                source: r.get(14),
                test_point_id: r.get(15),
            })
            .collect())
    }

    async fn create_user(&self, user: User) -> Result<Option<i64>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_opt(
                "INSERT INTO users (username, password_hash, role, province_code, created_at_ms)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (username) DO NOTHING RETURNING id",
                &[
                    &user.username,
                    &user.password_hash,
                    &user.role.as_str(),
                    &user.province_code,
                    &(user.created_at_ms as i64),
                ],
            )
            .await
            .map_err(db_error)?
            .map(|r| r.get(0)))
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_opt(&format!("{USER_COLUMNS} WHERE username = $1"), &[&username])
            .await
            .map_err(db_error)?
            .map(|r| user_from_row(&r)))
    }

    async fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_opt(&format!("{USER_COLUMNS} WHERE id = $1"), &[&id])
            .await
            .map_err(db_error)?
            .map(|r| user_from_row(&r)))
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query(&format!("{USER_COLUMNS} ORDER BY username"), &[])
            .await
            .map_err(db_error)?
            .iter()
            .map(user_from_row)
            .collect())
    }

    async fn disable_user(&self, username: &str, at_ms: u64) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let changed = tx
            .execute(
                "UPDATE users SET disabled_at_ms = $2 WHERE username = $1 AND disabled_at_ms IS NULL",
                &[&username, &(at_ms as i64)],
            )
            .await
            .map_err(db_error)?;
        tx.execute(
            "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE username = $1)",
            &[&username],
        )
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(changed == 1)
    }

    async fn create_session(
        &self,
        token_hash: [u8; 32],
        session: SessionRecord,
        created_at_ms: u64,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM sessions WHERE expires_at_ms < $1",
                &[&(created_at_ms as i64)],
            )
            .await
            .map_err(db_error)?;
        client
            .execute(
                "INSERT INTO sessions (token_hash, user_id, csrf, created_at_ms, expires_at_ms)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &token_hash.as_slice(),
                    &session.user_id,
                    &session.csrf,
                    &(created_at_ms as i64),
                    &(session.expires_at_ms as i64),
                ],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn session(&self, token_hash: [u8; 32]) -> Result<Option<SessionRecord>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_opt(
                "SELECT user_id, csrf, expires_at_ms FROM sessions WHERE token_hash = $1",
                &[&token_hash.as_slice()],
            )
            .await
            .map_err(db_error)?
            .map(|r| SessionRecord {
                user_id: r.get(0),
                csrf: r.get(1),
                expires_at_ms: r.get::<_, i64>(2) as u64,
            }))
    }

    async fn delete_session(&self, token_hash: [u8; 32]) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM sessions WHERE token_hash = $1",
                &[&token_hash.as_slice()],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn create_api_token(
        &self,
        token_hash: [u8; 32],
        user_id: i64,
        name: &str,
        at_ms: u64,
    ) -> Result<i64, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_one(
                "INSERT INTO api_tokens (token_hash, user_id, name, created_at_ms)
                 VALUES ($1, $2, $3, $4) RETURNING id",
                &[&token_hash.as_slice(), &user_id, &name, &(at_ms as i64)],
            )
            .await
            .map_err(db_error)?
            .get(0))
    }

    async fn api_token(&self, token_hash: [u8; 32]) -> Result<Option<ApiTokenRecord>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_opt(
                &format!("{TOKEN_COLUMNS} WHERE token_hash = $1"),
                &[&token_hash.as_slice()],
            )
            .await
            .map_err(db_error)?
            .map(|r| token_from_row(&r)))
    }

    async fn api_tokens_of(&self, user_id: i64) -> Result<Vec<ApiTokenRecord>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query(
                &format!("{TOKEN_COLUMNS} WHERE user_id = $1 ORDER BY id"),
                &[&user_id],
            )
            .await
            .map_err(db_error)?
            .iter()
            .map(token_from_row)
            .collect())
    }

    async fn revoke_api_token(
        &self,
        id: i64,
        user_id: Option<i64>,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE api_tokens SET revoked_at_ms = $3
                 WHERE id = $1 AND ($2::bigint IS NULL OR user_id = $2) AND revoked_at_ms IS NULL",
                &[&id, &user_id, &(at_ms as i64)],
            )
            .await
            .map_err(db_error)?;
        Ok(changed == 1)
    }

    async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO audit_log (at_ms, actor, action, target, details) VALUES ($1, $2, $3, $4, $5)",
                &[
                    &(entry.at_ms as i64),
                    &entry.actor,
                    &entry.action,
                    &entry.target,
                    &entry.details,
                ],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query(
                "SELECT at_ms, actor, action, target, details FROM audit_log ORDER BY id DESC LIMIT $1",
                &[&i64::from(limit)],
            )
            .await
            .map_err(db_error)?
            .iter()
            .map(|r| AuditEntry {
                at_ms: r.get::<_, i64>(0) as u64,
                actor: r.get(1),
                action: r.get(2),
                target: r.get(3),
                details: r.get(4),
            })
            .collect())
    }

    async fn create_campaign(&self, c: Campaign) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let inserted = client
            .execute(
                "INSERT INTO campaigns (slug, name, organisation, province_code, wards, first_day,
                    last_day, target_per_ward, tags, created_by, created_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (slug) DO NOTHING",
                &[
                    &c.slug,
                    &c.name,
                    &c.organisation,
                    &c.province_code,
                    &json(&c.wards),
                    &c.first_day,
                    &c.last_day,
                    &(c.target_per_ward as i64),
                    &json(&c.tags),
                    &c.created_by,
                    &(c.created_at_ms as i64),
                ],
            )
            .await
            .map_err(db_error)?;
        Ok(inserted == 1)
    }

    async fn campaigns(&self) -> Result<Vec<Campaign>, StoreError> {
        let client = self.client().await?;
        client
            .query(
                &format!("{CAMPAIGN_COLUMNS} ORDER BY first_day DESC, slug"),
                &[],
            )
            .await
            .map_err(db_error)?
            .iter()
            .map(campaign_from_row)
            .collect()
    }

    async fn campaign(&self, slug: &str) -> Result<Option<Campaign>, StoreError> {
        let client = self.client().await?;
        client
            .query_opt(&format!("{CAMPAIGN_COLUMNS} WHERE slug = $1"), &[&slug])
            .await
            .map_err(db_error)?
            .map(|r| campaign_from_row(&r))
            .transpose()
    }

    async fn campaign_tag_counts(
        &self,
        wards: &[String],
        first_day: i32,
        last_day: i32,
        tags: &[String],
    ) -> Result<Vec<SourceCount>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query(
                "SELECT source, count(*), count(*) FILTER (WHERE counted) FROM results
                 WHERE day BETWEEN $1 AND $2 AND source = ANY($4) AND ward_code = ANY($3)
                 GROUP BY source ORDER BY count(*) DESC, source",
                &[&first_day, &last_day, &wards, &tags],
            )
            .await
            .map_err(db_error)?
            .iter()
            .map(source_count_from_row)
            .collect())
    }

    async fn unit_versions(&self) -> Result<Vec<StoredUnitVersion>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query(
                "SELECT effective_month, name, loaded_at_ms, provinces_csv, units_csv,
                        wards_geojson_gz, sha256 FROM unit_versions ORDER BY effective_month",
                &[],
            )
            .await
            .map_err(db_error)?
            .iter()
            .map(|r| StoredUnitVersion {
                effective_month: r.get(0),
                name: r.get(1),
                loaded_at_ms: r.get::<_, i64>(2) as u64,
                provinces_csv: r.get(3),
                units_csv: r.get(4),
                wards_geojson_gz: r.get(5),
                sha256: r.get(6),
            })
            .collect())
    }

    async fn after_bulk_load(&self) -> Result<(), StoreError> {
        apply_queue(&self.pool, true, &self.dequeued).await?;
        let client = self.client().await?;
        let tables: Vec<String> = client
            .query(
                "SELECT quote_ident(relname) FROM pg_class
                 WHERE relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
                   AND relkind IN ('r', 'p') AND NOT relispartition
                 ORDER BY relname",
                &[],
            )
            .await
            .map_err(db_error)?
            .iter()
            .map(|row| row.get(0))
            .collect();
        if tables.is_empty() {
            return Ok(());
        }
        // Only this schema's tables (a bare VACUUM would do the whole
        // database); a partitioned table's partitions are included.
        client
            .batch_execute(&format!("VACUUM (ANALYZE) {}", tables.join(", ")))
            .await
            .map_err(db_error)
    }

    fn shared(&self) -> bool {
        true
    }

    async fn save_liveness(
        &self,
        id: &str,
        received_at_ms: u64,
        liveness: String,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO test_point_liveness (id, received_at_ms, liveness) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET received_at_ms = excluded.received_at_ms,
                     liveness = excluded.liveness
                 WHERE test_point_liveness.received_at_ms < excluded.received_at_ms",
                &[&id, &(received_at_ms as i64), &liveness],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn recent_liveness(
        &self,
        since_ms: u64,
    ) -> Result<Vec<(String, u64, String)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, received_at_ms, liveness FROM test_point_liveness
                 WHERE received_at_ms >= $1",
                &[&(since_ms as i64)],
            )
            .await
            .map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64, r.get(2)))
            .collect())
    }

    async fn add_unit_version(&self, v: StoredUnitVersion) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let inserted = client
            .execute(
                "INSERT INTO unit_versions (effective_month, name, loaded_at_ms, provinces_csv,
                    units_csv, wards_geojson_gz, sha256) VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (effective_month) DO NOTHING",
                &[
                    &v.effective_month,
                    &v.name,
                    &(v.loaded_at_ms as i64),
                    &v.provinces_csv,
                    &v.units_csv,
                    &v.wards_geojson_gz,
                    &v.sha256,
                ],
            )
            .await
            .map_err(db_error)?;
        Ok(inserted == 1)
    }
}
