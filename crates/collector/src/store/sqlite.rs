//! The embedded store: one SQLite file in WAL mode.
//!
//! One writer thread owns the only writing connection and commits whatever
//! has queued up while the previous commit was syncing, in one transaction
//! (group commit): every result is durable (`synchronous = FULL`, the WAL is
//! fsynced at each commit) before any caller is answered, and the cost of
//! the fsync is shared by the whole batch. Reads use a small pool of
//! read-only connections on the blocking thread pool. Nothing here ever
//! blocks an async worker thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use async_trait::async_trait;
use ispeed_proto::registry::{RegistrationStatus, TestPointClass};
use ispeed_proto::results::{
    Access, ClientInfo, ClientKind, ImplausibleReason, PlaceSource, PublishedMetrics, ResultStatus,
    StoredResult,
};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, Transaction};
use tokio::sync::oneshot;
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

/// One schema or data migration.
enum Migration {
    Sql(&'static str),
    /// A data migration SQL cannot express (it merges sketches).
    Code(fn(&Transaction<'_>) -> Result<(), StoreError>),
}

/// Versioned migrations, applied in order, each in its own transaction;
/// `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[Migration] = &[
    Migration::Sql(include_str!("../../migrations/sqlite/0001_initial.sql")),
    // 2: aggregate month cells (every access type and IP version together).
    Migration::Code(add_aggregate_month_cells),
    // 3: stored receipts lose their signature and full client address.
    Migration::Code(redact_stored_receipts),
    // 4: the campaign tag (`source`) of web results.
    Migration::Sql(include_str!("../../migrations/sqlite/0004_source.sql")),
    // 5: registration status of test points, and each result's test-point class.
    Migration::Sql(include_str!("../../migrations/sqlite/0005_registry.sql")),
    // 6: officials' accounts, sessions, API tokens, audit log.
    Migration::Sql(include_str!("../../migrations/sqlite/0006_accounts.sql")),
    // 7: later versions of the administrative units.
    Migration::Sql(include_str!(
        "../../migrations/sqlite/0007_unit_versions.sql"
    )),
    // 8: campaigns.
    Migration::Sql(include_str!("../../migrations/sqlite/0008_campaigns.sql")),
];
/// Read-only connections kept for queries.
const READERS: usize = 4;
/// Reads running at once at most (more wait for a permit).
const MAX_CONCURRENT_READS: usize = 2 * READERS;
/// How long a read may wait for a permit before the store reports itself busy.
const READ_QUEUE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Decoded cells the writer keeps in memory (cleared when exceeded): the
/// month cells of busy units are rewritten on every batch.
const CELL_CACHE_LIMIT: usize = 200_000;

/// Tuning of the embedded store.
pub type SqliteOptions = super::StoreOptions;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Write versions of the months' cells: the writer bumps a month after each
/// commit that changed its cells (and the epoch after a rebuild), so a
/// cached answer is valid while the versions it was read at are current.
#[derive(Default)]
struct MonthVersions {
    inner: Mutex<(u64, HashMap<i32, u64>)>,
}

impl MonthVersions {
    fn snapshot(&self, months: impl Iterator<Item = i32>) -> Vec<u64> {
        let inner = self.inner.lock().expect("versions lock");
        let mut out = vec![inner.0];
        out.extend(months.map(|m| inner.1.get(&m).copied().unwrap_or(0)));
        out
    }
    fn bump(&self, months: impl Iterator<Item = i32>) {
        let mut inner = self.inner.lock().expect("versions lock");
        for month in months {
            *inner.1.entry(month).or_insert(0) += 1;
        }
    }
    fn bump_all(&self) {
        self.inner.lock().expect("versions lock").0 += 1;
    }
}

enum Job {
    Insert(Vec<NewResult>, Reply<Vec<InsertOutcome>>),
    Rebuild(Reply<RebuildReport>),
    UpsertTestPoint(Box<TestPointRecord>, Reply<()>),
    DeviceKey(Reply<[u8; 32]>),
    /// Any other write, run on the writer's connection (autocommit, durable).
    Exec(Box<dyn FnOnce(&Connection) + Send>),
}

/// SQLite implementation of [`Store`].
pub struct SqliteStore {
    /// Held while the store is open: the writer's cell cache and the query
    /// cache assume no other process writes the file.
    _lock: std::fs::File,
    versions: Arc<MonthVersions>,
    cache: CellQueryCache<Vec<u64>>,
    read_permits: tokio::sync::Semaphore,
    /// Dropping it stops the checkpoint thread.
    _checkpointer: mpsc::Sender<()>,
    jobs: Mutex<mpsc::Sender<Job>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
}

fn db_error(error: rusqlite::Error) -> StoreError {
    StoreError::Database(error.to_string())
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) `<dir>/ispeed.sqlite3`.
    pub fn open(dir: &Path, options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Open(format!("{}: {e}", dir.display())))?;
        let lock = lock_exclusively(&dir.join("ispeed.lock"))?;
        let path = dir.join("ispeed.sqlite3");
        let mut writer = Connection::open(&path).map_err(db_error)?;
        writer
            .execute_batch(
                "PRAGMA busy_timeout = 10000;
                 PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA wal_autocheckpoint = 0;
                 PRAGMA cache_size = -65536;",
            )
            .map_err(db_error)?;
        migrate(&mut writer)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(open_reader(&path)?);
        }
        let checkpointer = start_checkpointer(&path)?;
        let versions = Arc::new(MonthVersions::default());
        let writer_versions = versions.clone();
        let (sender, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("ispeed-sqlite-writer".into())
            .spawn(move || Writer::new(writer, options, writer_versions).run(receiver))
            .map_err(|e| StoreError::Open(format!("cannot start writer thread: {e}")))?;
        Ok(SqliteStore {
            _lock: lock,
            versions,
            cache: CellQueryCache::new(),
            read_permits: tokio::sync::Semaphore::new(MAX_CONCURRENT_READS),
            _checkpointer: checkpointer,
            jobs: Mutex::new(sender),
            readers: Arc::new(Mutex::new(readers)),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and decodes the cells of a query from the database.
    async fn read_cells(&self, query: CellQuery) -> Result<Vec<(CellKey, Cell)>, StoreError> {
        self.read(move |connection| {
            let mut sql = String::from(
                "SELECT period, parent, code, isp, access, ip_version,
                        n, download, upload, latency, devices
                 FROM cells WHERE grain = ?1 AND period = ?2 AND level = ?3",
            );
            sql.push_str(if query.aggregate {
                " AND access = 'all'"
            } else {
                " AND access <> 'all'"
            });
            if query.parent.is_some() {
                sql.push_str(" AND parent = ?4");
            }
            if query.code.is_some() {
                sql.push_str(if query.parent.is_some() {
                    " AND code = ?5"
                } else {
                    " AND code = ?4"
                });
            }
            let mut statement = connection.prepare_cached(&sql).map_err(db_error)?;
            let mut out: Vec<(CellKey, u64, [Vec<u8>; 4])> = Vec::new();
            for period in &query.periods {
                let mut values: Vec<Box<dyn rusqlite::ToSql>> = vec![
                    Box::new(query.grain.as_i64()),
                    Box::new(*period),
                    Box::new(level_to_i64(query.level)),
                ];
                if let Some(parent) = &query.parent {
                    values.push(Box::new(parent.clone()));
                }
                if let Some(code) = &query.code {
                    values.push(Box::new(code.clone()));
                }
                let mut rows = statement
                    .query(rusqlite::params_from_iter(values.iter()))
                    .map_err(db_error)?;
                while let Some(row) = rows.next().map_err(db_error)? {
                    let access: String = row.get(4).map_err(db_error)?;
                    let access = match access.as_str() {
                        ALL_ACCESS => None,
                        kind => Some(parse_access_kind(kind)?),
                    };
                    let key = CellKey {
                        grain: query.grain,
                        period: row.get(0).map_err(db_error)?,
                        level: query.level,
                        parent: row.get(1).map_err(db_error)?,
                        code: row.get(2).map_err(db_error)?,
                        isp: row.get(3).map_err(db_error)?,
                        access,
                        ip_version: row.get(5).map_err(db_error)?,
                    };
                    let n: i64 = row.get(6).map_err(db_error)?;
                    let blob = |i: usize| -> Result<Vec<u8>, StoreError> {
                        row.get(7 + i).map_err(db_error)
                    };
                    let blobs = [blob(0)?, blob(1)?, blob(2)?, blob(3)?];
                    out.push((key, n as u64, blobs));
                }
            }
            decode_cells(out)
        })
        .await
    }

    async fn ask<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .lock()
            .expect("job sender lock")
            .send(job(reply))
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `write` on the writer thread's connection and returns its result.
    async fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.ask(|reply| {
            Job::Exec(Box::new(move |connection| {
                let _ = reply.send(write(connection));
            }))
        })
        .await
    }

    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        // Public, unauthenticated questions must not open connections and
        // blocking threads without bound: past this many, callers wait, and
        // after READ_QUEUE_TIMEOUT they get 503 and Retry-After.
        let _permit = tokio::time::timeout(READ_QUEUE_TIMEOUT, self.read_permits.acquire())
            .await
            .map_err(|_| StoreError::Busy)?
            .map_err(|_| StoreError::Closed)?;
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().expect("reader pool lock").pop();
            let connection = match pooled {
                Some(connection) => connection,
                None => open_reader(&path)?,
            };
            let result = query(&connection);
            let mut pool = readers.lock().expect("reader pool lock");
            if pool.len() < READERS {
                pool.push(connection);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Database(format!("reader task failed: {e}")))?
    }
}

/// Takes an exclusive advisory lock on `path` (created if missing), or
/// fails at once if another process holds it.
fn lock_exclusively(path: &Path) -> Result<std::fs::File, StoreError> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| StoreError::Open(format!("{}: {e}", path.display())))?;
    // SAFETY: flock on a descriptor this function owns; no memory is involved.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !locked {
        return Err(StoreError::Open(format!(
            "the store in {} is in use by another process (a running `ispeed serve`?)",
            path.parent()
                .map_or_else(|| path.display().to_string(), |p| p.display().to_string())
        )));
    }
    Ok(file)
}

/// How often committed WAL frames are copied back into the database file.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// Checkpoints the WAL from its own connection and thread, so that the
/// writer's commits never pay for copying pages back (SQLite's automatic
/// checkpoint runs inside the committing transaction). PASSIVE never waits
/// for readers or the writer. Stops when the returned sender is dropped.
fn start_checkpointer(path: &Path) -> Result<mpsc::Sender<()>, StoreError> {
    let connection = Connection::open(path).map_err(db_error)?;
    connection
        .execute_batch("PRAGMA busy_timeout = 10000;")
        .map_err(db_error)?;
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("ispeed-sqlite-checkpoint".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(CHECKPOINT_INTERVAL)
            {
                if let Err(error) =
                    connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                {
                    tracing::warn!(%error, "WAL checkpoint failed");
                }
            }
            // A last complete checkpoint keeps the WAL small between runs.
            let _ = connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        })
        .map_err(|e| StoreError::Open(format!("cannot start checkpoint thread: {e}")))?;
    Ok(stop)
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db_error)?;
    connection
        .execute_batch("PRAGMA busy_timeout = 10000; PRAGMA cache_size = -32768;")
        .map_err(db_error)?;
    Ok(connection)
}

fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    let applied: usize = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(db_error)?;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Open(format!(
            "database schema version {applied} is newer than this program ({})",
            MIGRATIONS.len()
        )));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        // IMMEDIATE: the write lock is taken (waiting on busy_timeout) before
        // the first read; a deferred transaction that read first could not
        // wait for a writer still closing (a previous process's last
        // checkpoint) and would fail at once with SQLITE_BUSY.
        let tx = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_error)?;
        match migration {
            Migration::Sql(sql) => tx.execute_batch(sql).map_err(db_error)?,
            Migration::Code(run) => run(&tx)?,
        }
        tx.pragma_update(None, "user_version", index + 1)
            .map_err(db_error)?;
        tx.commit().map_err(db_error)?;
    }
    Ok(())
}

/// Migration 2: derives the aggregate month cells from the detailed ones
/// (rows come in key order, so each aggregate is a run of consecutive rows).
fn add_aggregate_month_cells(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let mut aggregates: Vec<(CellKey, Cell)> = Vec::new();
    {
        let mut statement = tx
            .prepare(
                "SELECT period, level, parent, code, isp, n, download, upload, latency, devices
                 FROM cells WHERE grain = 1 AND access <> 'all'
                 ORDER BY period, level, parent, code, isp",
            )
            .map_err(db_error)?;
        let mut rows = statement.query([]).map_err(db_error)?;
        while let Some(row) = rows.next().map_err(db_error)? {
            let level: i64 = row.get(1).map_err(db_error)?;
            let key = CellKey {
                grain: Grain::Month,
                period: row.get(0).map_err(db_error)?,
                level: match level {
                    0 => ispeed_analytics::Level::Nation,
                    1 => ispeed_analytics::Level::Province,
                    _ => ispeed_analytics::Level::Ward,
                },
                parent: row.get(2).map_err(db_error)?,
                code: row.get(3).map_err(db_error)?,
                isp: row.get(4).map_err(db_error)?,
                access: None,
                ip_version: crate::rollup::ALL_IP_VERSIONS,
            };
            let cell = cell_from_row(row, 5)?;
            match aggregates.last_mut() {
                Some((last, merged)) if *last == key => merged.merge(&cell),
                _ => aggregates.push((key, cell)),
            }
        }
    }
    for (key, cell) in &aggregates {
        upsert_cell(tx, key, cell)?;
    }
    Ok(())
}

/// Migration 3: earlier versions stored the compact signed receipt, whose
/// payload holds the client's full address. Rewrites each as
/// [`crate::verify::redacted_payload`], in chunks to bound memory.
fn redact_stored_receipts(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let mut after: i64 = 0;
    loop {
        let chunk: Vec<(i64, String, String)> = tx
            .prepare("SELECT seq, receipt, client_net FROM results WHERE seq > ?1 ORDER BY seq LIMIT 10000")
            .map_err(db_error)?
            .query_map([after], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .map_err(db_error)?
            .collect::<Result<_, _>>()
            .map_err(db_error)?;
        let Some(last) = chunk.last() else {
            return Ok(());
        };
        after = last.0;
        for (seq, receipt, client_net) in chunk {
            let Ok(payload) =
                ispeed_proto::Receipt::parse(&receipt).and_then(|r| r.payload_unverified())
            else {
                continue; // already redacted
            };
            let net: std::net::IpAddr = client_net.parse().map_err(corrupt)?;
            tx.execute(
                "UPDATE results SET receipt = ?1 WHERE seq = ?2",
                params![crate::verify::redacted_payload(&payload, net), seq],
            )
            .map_err(db_error)?;
        }
    }
}

struct Writer {
    connection: Connection,
    options: SqliteOptions,
    cache: HashMap<CellKey, Cell>,
    versions: Arc<MonthVersions>,
}

impl Writer {
    fn new(connection: Connection, options: SqliteOptions, versions: Arc<MonthVersions>) -> Writer {
        Writer {
            connection,
            options,
            cache: HashMap::new(),
            versions,
        }
    }

    fn run(mut self, jobs: mpsc::Receiver<Job>) {
        let mut pending: Option<Job> = None;
        loop {
            let job = match pending.take() {
                Some(job) => job,
                None => match jobs.recv() {
                    Ok(job) => job,
                    Err(_) => return, // every store handle dropped
                },
            };
            match job {
                Job::Insert(results, reply) => {
                    let mut batch = vec![(results, reply)];
                    let mut size: usize = batch[0].0.len();
                    // Group commit: take what queued up while we were busy.
                    while size < self.options.max_batch {
                        match jobs.try_recv() {
                            Ok(Job::Insert(results, reply)) => {
                                size += results.len();
                                batch.push((results, reply));
                            }
                            Ok(other) => {
                                pending = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.insert_batch(batch);
                }
                Job::Rebuild(reply) => {
                    self.cache.clear();
                    let result = self.rebuild();
                    if result.is_err() {
                        self.cache.clear();
                    }
                    self.versions.bump_all();
                    let _ = reply.send(result);
                }
                Job::UpsertTestPoint(record, reply) => {
                    let _ = reply.send(upsert_test_point(&self.connection, &record));
                }
                Job::DeviceKey(reply) => {
                    let _ = reply.send(device_key(&self.connection));
                }
                Job::Exec(run) => run(&self.connection),
            }
        }
    }

    fn insert_batch(&mut self, batch: Vec<(Vec<NewResult>, Reply<Vec<InsertOutcome>>)>) {
        let cap = self.options.heavy_tester_cap;
        let outcome = (|| -> Result<(Vec<Vec<InsertOutcome>>, Vec<i32>), StoreError> {
            let tx = self.connection.transaction().map_err(db_error)?;
            let mut deltas: HashMap<CellKey, Cell> = HashMap::new();
            let mut all = Vec::with_capacity(batch.len());
            for (results, _) in &batch {
                let mut outcomes = Vec::with_capacity(results.len());
                for result in results {
                    outcomes.push(insert_one(&tx, result, cap, &mut deltas)?);
                }
                all.push(outcomes);
            }
            let mut months: Vec<i32> = deltas
                .keys()
                .filter(|key| key.grain == Grain::Month)
                .map(|key| key.period)
                .collect();
            months.sort_unstable();
            months.dedup();
            flush_cells(&tx, &mut self.cache, deltas)?;
            tx.commit().map_err(db_error)?;
            Ok((all, months))
        })();
        match outcome {
            Ok((all, months)) => {
                // Before anyone hears of the commit: a client that reads the
                // statistics after its 201 must see its result.
                self.versions.bump(months.into_iter());
                for ((_, reply), outcomes) in batch.into_iter().zip(all) {
                    let _ = reply.send(Ok(outcomes));
                }
            }
            Err(error) => {
                // The transaction rolled back: the cache may hold its cells.
                self.cache.clear();
                tracing::error!(%error, "batch not stored");
                for (_, reply) in batch {
                    let _ = reply.send(Err(StoreError::Database(error.to_string())));
                }
            }
        }
        if self.cache.len() > CELL_CACHE_LIMIT {
            self.cache.clear();
        }
    }

    /// Recomputes `device_day`, `results.counted` and every cell, walking
    /// results by day and ingest order (the cap depends only on the order
    /// within a device's day). Day cells are flushed at each day's end and
    /// month cells at each month's end, so memory stays bounded.
    fn rebuild(&mut self) -> Result<RebuildReport, StoreError> {
        let cap = self.options.heavy_tester_cap;
        let tx = self.connection.transaction().map_err(db_error)?;
        tx.execute_batch("DELETE FROM cells; DELETE FROM device_day;")
            .map_err(db_error)?;
        let mut report = RebuildReport {
            results: 0,
            counted: 0,
            cells: 0,
        };
        let mut changed: Vec<(i64, bool)> = Vec::new();
        {
            let mut statement = tx
                .prepare(
                    "SELECT seq, day, device_hash, status, province_code, ward_code, isp,
                            access_kind, ip_version, download_mbps, upload_mbps, latency_ms, counted
                     FROM results ORDER BY day, seq",
                )
                .map_err(db_error)?;
            let mut rows = statement.query([]).map_err(db_error)?;
            let mut day_cells: HashMap<CellKey, Cell> = HashMap::new();
            let mut month_cells: HashMap<CellKey, Cell> = HashMap::new();
            let mut device_counts: HashMap<[u8; 16], u32> = HashMap::new();
            let mut current_day: Option<i32> = None;
            while let Some(row) = rows.next().map_err(db_error)? {
                let day: i32 = row.get(1).map_err(db_error)?;
                if current_day != Some(day) {
                    if let Some(previous) = current_day {
                        report.cells += write_cells(&tx, std::mem::take(&mut day_cells))?;
                        write_device_counts(&tx, previous, std::mem::take(&mut device_counts))?;
                        if Month::of_day(previous) != Month::of_day(day) {
                            report.cells += write_cells(&tx, std::mem::take(&mut month_cells))?;
                        }
                    }
                    current_day = Some(day);
                }
                report.results += 1;
                let seq: i64 = row.get(0).map_err(db_error)?;
                let device_hash = blob16(row, 2)?;
                let status: String = row.get(3).map_err(db_error)?;
                let was_counted: bool = row.get(12).map_err(db_error)?;
                let counted = status == "accepted" && {
                    let n = device_counts.entry(device_hash).or_insert(0);
                    *n += 1;
                    *n <= cap
                };
                if counted != was_counted {
                    changed.push((seq, counted));
                }
                if !counted {
                    continue;
                }
                report.counted += 1;
                let province: Option<String> = row.get(4).map_err(db_error)?;
                let ward: Option<String> = row.get(5).map_err(db_error)?;
                let isp: String = row.get(6).map_err(db_error)?;
                let access: String = row.get(7).map_err(db_error)?;
                let contribution = Contribution {
                    day,
                    province_code: province.as_deref(),
                    ward_code: ward.as_deref(),
                    isp: &isp,
                    access: parse_access_kind(&access)?,
                    ip_version: row.get(8).map_err(db_error)?,
                    device_hash: u64::from_le_bytes(device_hash[..8].try_into().expect("16")),
                    download_mbps: row.get(9).map_err(db_error)?,
                    upload_mbps: row.get(10).map_err(db_error)?,
                    latency_ms: row.get(11).map_err(db_error)?,
                };
                for key in contribution.keys() {
                    let cells = match key.grain {
                        Grain::Day => &mut day_cells,
                        Grain::Month => &mut month_cells,
                    };
                    cells.entry(key).or_default().add(&contribution);
                }
            }
            if let Some(day) = current_day {
                report.cells += write_cells(&tx, day_cells)?;
                report.cells += write_cells(&tx, month_cells)?;
                write_device_counts(&tx, day, device_counts)?;
            }
        }
        for (seq, counted) in changed {
            tx.execute(
                "UPDATE results SET counted = ?1 WHERE seq = ?2",
                params![counted, seq],
            )
            .map_err(db_error)?;
        }
        tx.commit().map_err(db_error)?;
        Ok(report)
    }
}

fn blob16(row: &Row<'_>, index: usize) -> Result<[u8; 16], StoreError> {
    let bytes: Vec<u8> = row.get(index).map_err(db_error)?;
    bytes
        .try_into()
        .map_err(|_| corrupt("device hash is not 16 bytes"))
}

fn write_device_counts(
    tx: &Transaction<'_>,
    day: i32,
    counts: HashMap<[u8; 16], u32>,
) -> Result<(), StoreError> {
    let mut statement = tx
        .prepare_cached("INSERT INTO device_day (device_hash, day, n) VALUES (?1, ?2, ?3)")
        .map_err(db_error)?;
    for (device, n) in counts {
        statement
            .execute(params![&device[..], day, n])
            .map_err(db_error)?;
    }
    Ok(())
}

fn write_cells(tx: &Transaction<'_>, cells: HashMap<CellKey, Cell>) -> Result<u64, StoreError> {
    let count = cells.len() as u64;
    for (key, cell) in cells {
        upsert_cell(tx, &key, &cell)?;
    }
    Ok(count)
}

fn upsert_cell(tx: &Transaction<'_>, key: &CellKey, cell: &Cell) -> Result<(), StoreError> {
    let [download, upload, latency, devices] = cell.to_blobs();
    tx.prepare_cached(
        "INSERT INTO cells (grain, period, level, parent, code, isp, access, ip_version,
                            n, download, upload, latency, devices)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT DO UPDATE SET n = excluded.n, download = excluded.download,
             upload = excluded.upload, latency = excluded.latency, devices = excluded.devices",
    )
    .map_err(db_error)?
    .execute(rusqlite::params_from_iter(
        key_values(key).into_iter().chain([
            Value::from(cell.n as i64),
            Value::from(download),
            Value::from(upload),
            Value::from(latency),
            Value::from(devices),
        ]),
    ))
    .map_err(db_error)?;
    Ok(())
}

/// The eight key columns of a cell, in table order.
fn key_values(key: &CellKey) -> [Value; 8] {
    [
        Value::from(key.grain.as_i64()),
        Value::from(key.period),
        Value::from(level_to_i64(key.level)),
        Value::from(key.parent.clone()),
        Value::from(key.code.clone()),
        Value::from(key.isp.clone()),
        Value::from(key.access_str().to_owned()),
        Value::from(key.ip_version),
    ]
}

fn load_cell(tx: &Transaction<'_>, key: &CellKey) -> Result<Option<Cell>, StoreError> {
    let mut statement = tx
        .prepare_cached(
            "SELECT n, download, upload, latency, devices FROM cells
             WHERE grain = ?1 AND period = ?2 AND level = ?3 AND parent = ?4 AND code = ?5
               AND isp = ?6 AND access = ?7 AND ip_version = ?8",
        )
        .map_err(db_error)?;
    let mut rows = statement
        .query(rusqlite::params_from_iter(key_values(key)))
        .map_err(db_error)?;
    match rows.next().map_err(db_error)? {
        Some(row) => Ok(Some(cell_from_row(row, 0)?)),
        None => Ok(None),
    }
}

fn cell_from_row(row: &Row<'_>, first: usize) -> Result<Cell, StoreError> {
    let n: i64 = row.get(first).map_err(db_error)?;
    let blob = |i: usize| -> Result<Vec<u8>, StoreError> { row.get(first + i).map_err(db_error) };
    let (download, upload, latency, devices) = (blob(1)?, blob(2)?, blob(3)?, blob(4)?);
    Cell::from_blobs(n as u64, [&download, &upload, &latency, &devices]).map_err(corrupt)
}

/// Merges a batch's cell deltas into the stored cells.
fn flush_cells(
    tx: &Transaction<'_>,
    cache: &mut HashMap<CellKey, Cell>,
    deltas: HashMap<CellKey, Cell>,
) -> Result<(), StoreError> {
    for (key, delta) in deltas {
        let cell = match cache.get_mut(&key) {
            Some(cell) => cell,
            None => {
                let stored = load_cell(tx, &key)?.unwrap_or_default();
                cache.entry(key.clone()).or_insert(stored)
            }
        };
        cell.merge(&delta);
        upsert_cell(tx, &key, cell)?;
    }
    Ok(())
}

fn insert_one(
    tx: &Transaction<'_>,
    result: &NewResult,
    cap: u32,
    deltas: &mut HashMap<CellKey, Cell>,
) -> Result<InsertOutcome, StoreError> {
    let id = result.result_id.to_string();
    let existing = tx
        .prepare_cached(&format!(
            "SELECT {STORED_COLUMNS} FROM results WHERE result_id = ?1"
        ))
        .map_err(db_error)?
        .query_row([&id], |row| Ok(stored_from_row(row, 0)))
        .optional()
        .map_err(db_error)?
        .transpose()?;
    if let Some(stored) = existing {
        return Ok(if stored.body_hash == result.body_hash {
            InsertOutcome::Existing(stored.record)
        } else {
            InsertOutcome::Conflict
        });
    }
    // A session backs one result, whether as its receipt or as a failover's
    // download (checkpoint) receipt.
    let mut sessions = vec![(&result.test_point_id, &result.session_id)];
    if let (Some(tp), Some(session)) = (&result.download_test_point_id, &result.download_session_id)
    {
        sessions.push((tp, session));
    }
    for (test_point_id, session_id) in sessions {
        let receipt_used = tx
            .prepare_cached(
                "SELECT 1 FROM results WHERE (test_point_id = ?1 AND session_id = ?2)
                    OR (download_test_point_id = ?1 AND download_session_id = ?2)",
            )
            .map_err(db_error)?
            .exists(params![test_point_id, session_id])
            .map_err(db_error)?;
        if receipt_used {
            return Ok(InsertOutcome::ReceiptReused);
        }
    }
    let counted = result.status == ResultStatus::Accepted && {
        let n: u32 = tx
            .prepare_cached(
                "INSERT INTO device_day (device_hash, day, n) VALUES (?1, ?2, 1)
                 ON CONFLICT DO UPDATE SET n = n + 1 RETURNING n",
            )
            .map_err(db_error)?
            .query_row(params![&result.device_hash[..], result.day], |row| {
                row.get(0)
            })
            .map_err(db_error)?;
        n <= cap
    };
    tx.prepare_cached(
        "INSERT INTO results (result_id, body_hash, received_at_ms, measured_at_ms, day,
            device_hash, client_kind, client_version, access, access_kind, test_point_id,
            session_id, ip_version, client_net, asn, isp, location, ward_chosen,
            province_code, ward_code, place_source, download_mbps, upload_mbps, latency_ms,
            jitter_ms, ipv6_capable, client_metrics, status, reasons, counted, receipt, source,
            test_point_class, download_test_point_id, download_session_id, download_receipt)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                 ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33,
                 ?34, ?35, ?36)",
    )
    .map_err(db_error)?
    .execute(params![
        id,
        &result.body_hash[..],
        result.received_at_ms as i64,
        result.measured_at_ms as i64,
        result.day,
        &result.device_hash[..],
        result.client.kind.as_str(),
        result.client.version,
        json(&result.access),
        result.access.kind().as_str(),
        result.test_point_id,
        result.session_id,
        result.ip_version,
        result.client_net,
        result.asn,
        result.isp,
        result.location.as_ref().map(json),
        result.ward_chosen,
        result.province_code,
        result.ward_code,
        place_source_str(result.place_source),
        result.metrics.download_mbps,
        result.metrics.upload_mbps,
        result.metrics.latency_ms,
        result.metrics.jitter_ms,
        result.metrics.ipv6_capable,
        json(&result.client_metrics),
        status_str(result.status),
        json(&result.reasons),
        counted,
        result.receipt,
        result.source,
        result.test_point_class.map(TestPointClass::as_str),
        result.download_test_point_id,
        result.download_session_id,
        result.download_receipt,
    ])
    .map_err(db_error)?;
    if counted {
        let contribution = result.contribution();
        for key in contribution.keys() {
            deltas.entry(key).or_default().add(&contribution);
        }
    }
    Ok(InsertOutcome::Created(result.stored(counted)))
}

/// The few JSON columns hold plain data, which always serialises.
const STORED_COLUMNS: &str = "result_id, received_at_ms, measured_at_ms, client_kind,
    client_version, access, test_point_id, ip_version, asn, isp, province_code, ward_code,
    place_source, download_mbps, upload_mbps, latency_ms, jitter_ms, ipv6_capable, status,
    reasons, counted, device_hash, body_hash, source, test_point_class, download_test_point_id";

fn stored_from_row(row: &Row<'_>, first: usize) -> Result<StoredRow, StoreError> {
    let get_str = |i: usize| -> Result<String, StoreError> { row.get(first + i).map_err(db_error) };
    let result_id = Uuid::parse_str(&get_str(0)?).map_err(corrupt)?;
    let kind: ClientKind = from_json(&format!("\"{}\"", get_str(3)?))?;
    let access: Access = from_json(&get_str(5)?)?;
    let place_source: PlaceSource = from_json(&format!("\"{}\"", get_str(12)?))?;
    let status: ResultStatus = from_json(&format!("\"{}\"", get_str(18)?))?;
    let reasons: Vec<ImplausibleReason> = from_json(&get_str(19)?)?;
    let opt =
        |i: usize| -> Result<Option<f64>, StoreError> { row.get(first + i).map_err(db_error) };
    let record = StoredResult {
        result_id,
        received_at_ms: row.get::<_, i64>(first + 1).map_err(db_error)? as u64,
        measured_at_ms: row.get::<_, i64>(first + 2).map_err(db_error)? as u64,
        client: ClientInfo {
            kind,
            version: get_str(4)?,
        },
        access,
        test_point_id: get_str(6)?,
        ip_version: row.get(first + 7).map_err(db_error)?,
        asn: row.get(first + 8).map_err(db_error)?,
        isp: get_str(9)?,
        province_code: row.get(first + 10).map_err(db_error)?,
        ward_code: row.get(first + 11).map_err(db_error)?,
        place_source,
        metrics: PublishedMetrics {
            download_mbps: opt(13)?,
            upload_mbps: opt(14)?,
            latency_ms: opt(15)?,
            jitter_ms: opt(16)?,
            ipv6_capable: row.get(first + 17).map_err(db_error)?,
        },
        status,
        reasons,
        counted: row.get(first + 20).map_err(db_error)?,
        source: row.get(first + 23).map_err(db_error)?,
        test_point_class: row
            .get::<_, Option<String>>(first + 24)
            .map_err(db_error)?
            .map(|c| TestPointClass::parse(&c).ok_or_else(|| corrupt("unknown test point class")))
            .transpose()?,
        download_test_point_id: row.get(first + 25).map_err(db_error)?,
    };
    let body_hash: Vec<u8> = row.get(first + 22).map_err(db_error)?;
    Ok(StoredRow {
        record,
        device_hash: blob16(row, first + 21)?,
        body_hash: body_hash
            .try_into()
            .map_err(|_| corrupt("body hash is not 32 bytes"))?,
    })
}

const USER_COLUMNS: &str = "SELECT id, username, password_hash, role, province_code, created_at_ms,
    disabled_at_ms FROM users";
const TOKEN_COLUMNS: &str =
    "SELECT id, user_id, name, created_at_ms, revoked_at_ms FROM api_tokens";

/// Every row of `sql` with `params`, mapped by `map` (the statement is
/// cached on the connection).
fn query_all<T>(
    connection: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, StoreError> {
    let mut statement = connection.prepare_cached(sql).map_err(db_error)?;
    let rows = statement.query_map(params, map).map_err(db_error)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_error)
}

/// (source, results, counted) as selected by the source-count queries.
fn source_count_from_row(row: &Row<'_>) -> rusqlite::Result<SourceCount> {
    Ok(SourceCount {
        source: row.get(0)?,
        results: row.get::<_, i64>(1)? as u64,
        counted: row.get::<_, i64>(2)? as u64,
    })
}

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    let role: String = row.get(3)?;
    Ok(User {
        id: row.get(0)?,
        username: row.get(1)?,
        password_hash: row.get(2)?,
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        province_code: row.get(4)?,
        created_at_ms: row.get::<_, i64>(5)? as u64,
        disabled_at_ms: row.get::<_, Option<i64>>(6)?.map(|t| t as u64),
    })
}

fn query_user(
    c: &Connection,
    condition: &str,
    params: impl rusqlite::Params,
) -> Result<Option<User>, StoreError> {
    c.query_row(
        &format!("{USER_COLUMNS} WHERE {condition}"),
        params,
        user_from_row,
    )
    .optional()
    .map_err(db_error)
}

fn query_campaigns(
    c: &Connection,
    condition: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Campaign>, StoreError> {
    let mut statement = c
        .prepare(&format!(
            "SELECT slug, name, organisation, province_code, wards, first_day, last_day,
                target_per_ward, tags, created_by, created_at_ms FROM campaigns
             WHERE {condition} ORDER BY first_day DESC, slug"
        ))
        .map_err(db_error)?;
    let mut rows = statement.query(params).map_err(db_error)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db_error)? {
        let wards: String = row.get(4).map_err(db_error)?;
        let tags: String = row.get(8).map_err(db_error)?;
        out.push(Campaign {
            slug: row.get(0).map_err(db_error)?,
            name: row.get(1).map_err(db_error)?,
            organisation: row.get(2).map_err(db_error)?,
            province_code: row.get(3).map_err(db_error)?,
            wards: from_json(&wards)?,
            first_day: row.get(5).map_err(db_error)?,
            last_day: row.get(6).map_err(db_error)?,
            target_per_ward: row.get::<_, i64>(7).map_err(db_error)? as u64,
            tags: from_json(&tags)?,
            created_by: row.get(9).map_err(db_error)?,
            created_at_ms: row.get::<_, i64>(10).map_err(db_error)? as u64,
        });
    }
    Ok(out)
}

fn token_from_row(row: &Row<'_>) -> rusqlite::Result<ApiTokenRecord> {
    Ok(ApiTokenRecord {
        id: row.get(0)?,
        user_id: row.get(1)?,
        name: row.get(2)?,
        created_at_ms: row.get::<_, i64>(3)? as u64,
        revoked_at_ms: row.get::<_, Option<i64>>(4)?.map(|t| t as u64),
    })
}

fn upsert_test_point(connection: &Connection, tp: &TestPointRecord) -> Result<(), StoreError> {
    // A key belongs to one test point: a renamed one replaces its old row.
    connection
        .execute(
            "DELETE FROM test_points WHERE public_key = ?1 AND id <> ?2",
            params![tp.public_key, tp.id],
        )
        .map_err(db_error)?;
    connection
        .execute(
            "INSERT INTO test_points (id, public_key, url, name, province_code, line_rate_mbps,
                 approved, status, configured, details, registered_at_ms, approved_at_ms,
                 revoked_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT (id) DO UPDATE SET public_key = excluded.public_key, url = excluded.url,
                 name = excluded.name, province_code = excluded.province_code,
                 line_rate_mbps = excluded.line_rate_mbps, approved = excluded.approved,
                 status = excluded.status, configured = excluded.configured,
                 details = excluded.details, registered_at_ms = excluded.registered_at_ms,
                 approved_at_ms = excluded.approved_at_ms, revoked_at_ms = excluded.revoked_at_ms",
            params![
                tp.id,
                tp.public_key,
                tp.url,
                tp.name,
                tp.province_code,
                tp.line_rate_mbps,
                tp.approved(),
                tp.status.as_str(),
                tp.configured,
                tp.details.as_ref().map(json),
                tp.registered_at_ms.map(|t| t as i64),
                tp.approved_at_ms.map(|t| t as i64),
                tp.revoked_at_ms.map(|t| t as i64),
            ],
        )
        .map_err(db_error)?;
    Ok(())
}

fn test_point_from_row(row: &Row<'_>) -> Result<TestPointRecord, StoreError> {
    let get_ms = |i: usize| -> Result<Option<u64>, StoreError> {
        Ok(row
            .get::<_, Option<i64>>(i)
            .map_err(db_error)?
            .map(|t| t as u64))
    };
    let status: String = row.get(6).map_err(db_error)?;
    let details: Option<String> = row.get(8).map_err(db_error)?;
    Ok(TestPointRecord {
        id: row.get(0).map_err(db_error)?,
        public_key: row.get(1).map_err(db_error)?,
        url: row.get(2).map_err(db_error)?,
        name: row.get(3).map_err(db_error)?,
        province_code: row.get(4).map_err(db_error)?,
        line_rate_mbps: row.get(5).map_err(db_error)?,
        status: RegistrationStatus::parse(&status)
            .ok_or_else(|| corrupt("unknown registration status"))?,
        configured: row.get(7).map_err(db_error)?,
        details: details.as_deref().map(from_json).transpose()?,
        registered_at_ms: get_ms(9)?,
        approved_at_ms: get_ms(10)?,
        revoked_at_ms: get_ms(11)?,
    })
}

fn device_key(connection: &Connection) -> Result<[u8; 32], StoreError> {
    let existing: Option<Vec<u8>> = connection
        .query_row(
            "SELECT value FROM meta WHERE key = 'device_hash_key'",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(db_error)?;
    if let Some(bytes) = existing {
        return bytes
            .try_into()
            .map_err(|_| corrupt("device hash key is not 32 bytes"));
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| StoreError::Database(e.to_string()))?;
    connection
        .execute(
            "INSERT INTO meta (key, value) VALUES ('device_hash_key', ?1)",
            [&key[..]],
        )
        .map_err(db_error)?;
    Ok(key)
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert(&self, results: Vec<NewResult>) -> Result<Vec<InsertOutcome>, StoreError> {
        if results.is_empty() {
            return Ok(Vec::new());
        }
        self.ask(|reply| Job::Insert(results, reply)).await
    }

    async fn get(&self, result_id: Uuid) -> Result<Option<StoredRow>, StoreError> {
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {STORED_COLUMNS} FROM results WHERE result_id = ?1"
                ))
                .map_err(db_error)?
                .query_row([result_id.to_string()], |row| Ok(stored_from_row(row, 0)))
                .optional()
                .map_err(db_error)?
                .transpose()
        })
        .await
    }

    async fn source_counts(
        &self,
        first_day: i32,
        last_day: i32,
        limit: u32,
    ) -> Result<Vec<SourceCount>, StoreError> {
        self.read(move |connection| {
            query_all(
                connection,
                "SELECT source, count(*), sum(counted) FROM results
                     WHERE source IS NOT NULL AND day BETWEEN ?1 AND ?2
                     GROUP BY source ORDER BY count(*) DESC, source LIMIT ?3",
                params![first_day, last_day, limit],
                source_count_from_row,
            )
        })
        .await
    }

    async fn cells(&self, query: CellQuery) -> Result<Arc<Vec<(CellKey, Cell)>>, StoreError> {
        // Versions first: a commit landing during the read makes the entry
        // stale rather than letting it hide the commit.
        let versions = self.versions.snapshot(query_months(&query).into_iter());
        if let Some(cells) = self.cache.get(&query, &versions) {
            return Ok(cells);
        }
        let cells = Arc::new(self.read_cells(query.clone()).await?);
        self.cache.insert(query, versions, cells.clone());
        Ok(cells)
    }

    async fn counted_values(
        &self,
        first_day: i32,
        last_day: i32,
    ) -> Result<Vec<CountedValues>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection
                .prepare(
                    "SELECT day, province_code, ward_code, isp, access_kind, ip_version,
                            device_hash, download_mbps, upload_mbps, latency_ms
                     FROM results NOT INDEXED
                     WHERE counted = 1 AND day BETWEEN ?1 AND ?2",
                )
                .map_err(db_error)?;
            let mut rows = statement
                .query(params![first_day, last_day])
                .map_err(db_error)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(db_error)? {
                out.push(CountedValues {
                    day: row.get(0).map_err(db_error)?,
                    province_code: row.get(1).map_err(db_error)?,
                    ward_code: row.get(2).map_err(db_error)?,
                    isp: row.get(3).map_err(db_error)?,
                    access: row.get(4).map_err(db_error)?,
                    ip_version: row.get(5).map_err(db_error)?,
                    device_hash: blob16(row, 6)?,
                    download_mbps: row.get(7).map_err(db_error)?,
                    upload_mbps: row.get(8).map_err(db_error)?,
                    latency_ms: row.get(9).map_err(db_error)?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn rebuild_rollups(&self) -> Result<RebuildReport, StoreError> {
        self.ask(Job::Rebuild).await
    }

    async fn upsert_test_point(&self, test_point: TestPointRecord) -> Result<(), StoreError> {
        self.ask(|reply| Job::UpsertTestPoint(Box::new(test_point), reply))
            .await
    }

    async fn test_points(&self) -> Result<Vec<TestPointRecord>, StoreError> {
        self.read(|connection| {
            let mut statement = connection
                .prepare(
                    "SELECT id, public_key, url, name, province_code, line_rate_mbps, status,
                         configured, details, registered_at_ms, approved_at_ms, revoked_at_ms
                     FROM test_points ORDER BY id",
                )
                .map_err(db_error)?;
            let mut rows = statement.query([]).map_err(db_error)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(db_error)? {
                out.push(test_point_from_row(row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn device_hash_key(&self) -> Result<[u8; 32], StoreError> {
        self.ask(Job::DeviceKey).await
    }

    async fn result_count(&self) -> Result<u64, StoreError> {
        self.read(|connection| {
            connection
                .query_row("SELECT count(*) FROM results", [], |row| {
                    row.get::<_, i64>(0)
                })
                .map(|n| n as u64)
                .map_err(db_error)
        })
        .await
    }

    async fn export_results(
        &self,
        province_code: &str,
        first_day: i32,
        last_day: i32,
    ) -> Result<Vec<ExportRow>, StoreError> {
        let province = province_code.to_owned();
        self.read(move |connection| {
            query_all(
                connection,
                "SELECT result_id, measured_at_ms, day, province_code, ward_code, place_source,
                        isp, access_kind, ip_version, download_mbps, upload_mbps, latency_ms,
                        status, counted, source, test_point_id
                     FROM results WHERE province_code = ?1 AND day BETWEEN ?2 AND ?3 ORDER BY seq",
                params![province, first_day, last_day],
                |row| {
                    Ok(ExportRow {
                        result_id: row.get(0)?,
                        measured_at_ms: row.get::<_, i64>(1)? as u64,
                        day: row.get(2)?,
                        province_code: row.get(3)?,
                        ward_code: row.get(4)?,
                        place_source: row.get(5)?,
                        isp: row.get(6)?,
                        access: row.get(7)?,
                        ip_version: row.get(8)?,
                        download_mbps: row.get(9)?,
                        upload_mbps: row.get(10)?,
                        latency_ms: row.get(11)?,
                        status: row.get(12)?,
                        counted: row.get(13)?,
                        source: row.get(14)?,
                        test_point_id: row.get(15)?,
                    })
                },
            )
        })
        .await
    }

    async fn create_user(&self, user: User) -> Result<Option<i64>, StoreError> {
        self.write(move |c| {
            let inserted = c
                .execute(
                    "INSERT INTO users (username, password_hash, role, province_code, created_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (username) DO NOTHING",
                    params![
                        user.username,
                        user.password_hash,
                        user.role.as_str(),
                        user.province_code,
                        user.created_at_ms as i64
                    ],
                )
                .map_err(db_error)?;
            Ok((inserted == 1).then(|| c.last_insert_rowid()))
        })
        .await
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        let username = username.to_owned();
        self.read(move |c| query_user(c, "username = ?1", params![username]))
            .await
    }

    async fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
        self.read(move |c| query_user(c, "id = ?1", params![id]))
            .await
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        self.read(|c| {
            query_all(
                c,
                &format!("{USER_COLUMNS} ORDER BY username"),
                [],
                user_from_row,
            )
        })
        .await
    }

    async fn disable_user(&self, username: &str, at_ms: u64) -> Result<bool, StoreError> {
        let username = username.to_owned();
        self.write(move |c| {
            let changed = c
                .execute(
                    "UPDATE users SET disabled_at_ms = ?2 WHERE username = ?1 AND disabled_at_ms IS NULL",
                    params![username, at_ms as i64],
                )
                .map_err(db_error)?;
            c.execute(
                "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE username = ?1)",
                params![username],
            )
            .map_err(db_error)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn create_session(
        &self,
        token_hash: [u8; 32],
        session: SessionRecord,
        created_at_ms: u64,
    ) -> Result<(), StoreError> {
        self.write(move |c| {
            // Expired sessions are of no use to anyone: dropped on the way.
            c.execute(
                "DELETE FROM sessions WHERE expires_at_ms < ?1",
                params![created_at_ms as i64],
            )
            .map_err(db_error)?;
            c.execute(
                "INSERT INTO sessions (token_hash, user_id, csrf, created_at_ms, expires_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    &token_hash[..],
                    session.user_id,
                    session.csrf,
                    created_at_ms as i64,
                    session.expires_at_ms as i64
                ],
            )
            .map_err(db_error)?;
            Ok(())
        })
        .await
    }

    async fn session(&self, token_hash: [u8; 32]) -> Result<Option<SessionRecord>, StoreError> {
        self.read(move |c| {
            c.query_row(
                "SELECT user_id, csrf, expires_at_ms FROM sessions WHERE token_hash = ?1",
                params![&token_hash[..]],
                |row| {
                    Ok(SessionRecord {
                        user_id: row.get(0)?,
                        csrf: row.get(1)?,
                        expires_at_ms: row.get::<_, i64>(2)? as u64,
                    })
                },
            )
            .optional()
            .map_err(db_error)
        })
        .await
    }

    async fn delete_session(&self, token_hash: [u8; 32]) -> Result<(), StoreError> {
        self.write(move |c| {
            c.execute(
                "DELETE FROM sessions WHERE token_hash = ?1",
                params![&token_hash[..]],
            )
            .map_err(db_error)?;
            Ok(())
        })
        .await
    }

    async fn create_api_token(
        &self,
        token_hash: [u8; 32],
        user_id: i64,
        name: &str,
        at_ms: u64,
    ) -> Result<i64, StoreError> {
        let name = name.to_owned();
        self.write(move |c| {
            c.execute(
                "INSERT INTO api_tokens (token_hash, user_id, name, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![&token_hash[..], user_id, name, at_ms as i64],
            )
            .map_err(db_error)?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    async fn api_token(&self, token_hash: [u8; 32]) -> Result<Option<ApiTokenRecord>, StoreError> {
        self.read(move |c| {
            c.query_row(
                &format!("{TOKEN_COLUMNS} WHERE token_hash = ?1"),
                params![&token_hash[..]],
                token_from_row,
            )
            .optional()
            .map_err(db_error)
        })
        .await
    }

    async fn api_tokens_of(&self, user_id: i64) -> Result<Vec<ApiTokenRecord>, StoreError> {
        self.read(move |c| {
            query_all(
                c,
                &format!("{TOKEN_COLUMNS} WHERE user_id = ?1 ORDER BY id"),
                params![user_id],
                token_from_row,
            )
        })
        .await
    }

    async fn revoke_api_token(
        &self,
        id: i64,
        user_id: Option<i64>,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        self.write(move |c| {
            let changed = c
                .execute(
                    "UPDATE api_tokens SET revoked_at_ms = ?3
                     WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2) AND revoked_at_ms IS NULL",
                    params![id, user_id, at_ms as i64],
                )
                .map_err(db_error)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO audit_log (at_ms, actor, action, target, details) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    entry.at_ms as i64,
                    entry.actor,
                    entry.action,
                    entry.target,
                    entry.details
                ],
            )
            .map_err(db_error)?;
            Ok(())
        })
        .await
    }

    async fn create_campaign(&self, c: Campaign) -> Result<bool, StoreError> {
        self.write(move |conn| {
            let inserted = conn
                .execute(
                    "INSERT INTO campaigns (slug, name, organisation, province_code, wards, first_day,
                        last_day, target_per_ward, tags, created_by, created_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (slug) DO NOTHING",
                    params![
                        c.slug,
                        c.name,
                        c.organisation,
                        c.province_code,
                        json(&c.wards),
                        c.first_day,
                        c.last_day,
                        c.target_per_ward as i64,
                        json(&c.tags),
                        c.created_by,
                        c.created_at_ms as i64
                    ],
                )
                .map_err(db_error)?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn campaigns(&self) -> Result<Vec<Campaign>, StoreError> {
        self.read(|c| query_campaigns(c, "1 = 1", params![])).await
    }

    async fn campaign(&self, slug: &str) -> Result<Option<Campaign>, StoreError> {
        let slug = slug.to_owned();
        self.read(move |c| Ok(query_campaigns(c, "slug = ?1", params![slug])?.pop()))
            .await
    }

    async fn campaign_tag_counts(
        &self,
        wards: &[String],
        first_day: i32,
        last_day: i32,
        tags: &[String],
    ) -> Result<Vec<SourceCount>, StoreError> {
        let (wards, tags) = (json(wards), json(tags));
        self.read(move |c| {
            query_all(
                c,
                "SELECT source, count(*), sum(counted) FROM results
                     WHERE day BETWEEN ?1 AND ?2
                       AND source IN (SELECT value FROM json_each(?4))
                       AND ward_code IN (SELECT value FROM json_each(?3))
                     GROUP BY source ORDER BY count(*) DESC, source",
                params![first_day, last_day, wards, tags],
                source_count_from_row,
            )
        })
        .await
    }

    async fn unit_versions(&self) -> Result<Vec<StoredUnitVersion>, StoreError> {
        self.read(|c| {
            query_all(
                c,
                "SELECT effective_month, name, loaded_at_ms, provinces_csv, units_csv,
                        wards_geojson_gz, sha256 FROM unit_versions ORDER BY effective_month",
                [],
                |row| {
                    Ok(StoredUnitVersion {
                        effective_month: row.get(0)?,
                        name: row.get(1)?,
                        loaded_at_ms: row.get::<_, i64>(2)? as u64,
                        provinces_csv: row.get(3)?,
                        units_csv: row.get(4)?,
                        wards_geojson_gz: row.get(5)?,
                        sha256: row.get(6)?,
                    })
                },
            )
        })
        .await
    }

    async fn add_unit_version(&self, v: StoredUnitVersion) -> Result<bool, StoreError> {
        self.write(move |c| {
            let inserted = c
                .execute(
                    "INSERT INTO unit_versions (effective_month, name, loaded_at_ms, provinces_csv,
                        units_csv, wards_geojson_gz, sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (effective_month) DO NOTHING",
                    params![
                        v.effective_month,
                        v.name,
                        v.loaded_at_ms as i64,
                        v.provinces_csv,
                        v.units_csv,
                        v.wards_geojson_gz,
                        v.sha256
                    ],
                )
                .map_err(db_error)?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(move |c| {
            query_all(
                c,
                "SELECT at_ms, actor, action, target, details FROM audit_log
                 ORDER BY id DESC LIMIT ?1",
                params![limit],
                |row| {
                    Ok(AuditEntry {
                        at_ms: row.get::<_, i64>(0)? as u64,
                        actor: row.get(1)?,
                        action: row.get(2)?,
                        target: row.get(3)?,
                        details: row.get(4)?,
                    })
                },
            )
        })
        .await
    }
}
