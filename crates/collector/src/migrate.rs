//! `ispeed migrate`: copies an embedded (SQLite) deployment into an empty
//! PostgreSQL store in one transaction, then proves the copy: result and
//! counted totals per month, and every rollup cell recomputed from the
//! copied raw rows equal to the source's cell.
//!
//! Rows are copied as stored (same ids, hashes, receipts, `counted` flags
//! and ingest order), so the target answers every question as the source
//! did. It never changes the source's data (opening it may bring its schema
//! up to date) and never merges into a non-empty target.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::OpenFlags;
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;
use tokio_postgres::Transaction;
use uuid::Uuid;

use crate::period::Month;
use crate::rollup::Cell;
use crate::store::postgres::{PostgresOptions, PostgresStore};
use crate::store::sqlite::{SqliteOptions, SqliteStore};
use crate::store::{Store, StoreError};

/// Results per insert statement.
const CHUNK: usize = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading the SQLite store: {0}")]
    Source(#[from] rusqlite::Error),
    #[error("writing PostgreSQL: {0}")]
    Target(String),
    #[error("the target already holds data ({0}); migrate into an empty database or schema")]
    NotEmpty(String),
    #[error("verification failed: {0}")]
    Mismatch(String),
}

fn target(error: tokio_postgres::Error) -> MigrateError {
    MigrateError::Target(crate::store::postgres::error_text(&error))
}

/// What was copied and checked.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MigrateReport {
    pub results: u64,
    pub counted: u64,
    pub cells: u64,
    pub months: u64,
    pub test_points: u64,
    pub users: u64,
    pub campaigns: u64,
    /// Every month's result and counted totals agree, and every rollup
    /// cell rebuilt from the copied raw rows equals the source's.
    pub verified: bool,
    pub copy_seconds: f64,
    pub verify_seconds: f64,
}

/// Text columns of `results` copied verbatim (JSON ones included).
const TEXT_COLUMNS: [&str; 12] = [
    "client_kind",
    "client_version",
    "access",
    "access_kind",
    "test_point_id",
    "session_id",
    "client_net",
    "isp",
    "place_source",
    "client_metrics",
    "status",
    "reasons",
];
/// Nullable text columns.
const OPTIONAL_COLUMNS: [&str; 9] = [
    "location",
    "ward_chosen",
    "province_code",
    "ward_code",
    "source",
    "test_point_class",
    "download_test_point_id",
    "download_session_id",
    "download_receipt",
];

/// One raw result row as stored in SQLite.
struct Row {
    result_id: Uuid,
    body_hash: Vec<u8>,
    received_at_ms: i64,
    measured_at_ms: i64,
    day: i32,
    device_hash: Vec<u8>,
    text: [String; 12],
    optional: [Option<String>; 9],
    ip_version: i16,
    asn: Option<i64>,
    metrics: [Option<f64>; 4],
    ipv6_capable: Option<bool>,
    counted: bool,
    receipt: String,
}

fn open_source(dir: &Path) -> Result<rusqlite::Connection, MigrateError> {
    Ok(rusqlite::Connection::open_with_flags(
        dir.join("ispeed.sqlite3"),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?)
}

/// Streams the results in ingest order, in chunks (on a blocking thread).
fn read_rows(dir: PathBuf, sender: mpsc::Sender<Result<Vec<Row>, MigrateError>>) {
    let outcome = (|| -> Result<(), MigrateError> {
        let db = open_source(&dir)?;
        let sql = format!(
            "SELECT result_id, body_hash, received_at_ms, measured_at_ms, day, device_hash, {}, {},
                    ip_version, asn, download_mbps, upload_mbps, latency_ms, jitter_ms,
                    ipv6_capable, counted, receipt
             FROM results ORDER BY seq",
            TEXT_COLUMNS.join(", "),
            OPTIONAL_COLUMNS.join(", ")
        );
        let mut statement = db.prepare(&sql)?;
        let mut rows = statement.query([])?;
        let (t, o) = (6, 6 + TEXT_COLUMNS.len());
        let rest = o + OPTIONAL_COLUMNS.len();
        let mut chunk = Vec::with_capacity(CHUNK);
        while let Some(r) = rows.next()? {
            let id: String = r.get(0)?;
            let mut text: [String; 12] = Default::default();
            for (i, slot) in text.iter_mut().enumerate() {
                *slot = r.get(t + i)?;
            }
            let mut optional: [Option<String>; 9] = Default::default();
            for (i, slot) in optional.iter_mut().enumerate() {
                *slot = r.get(o + i)?;
            }
            chunk.push(Row {
                result_id: Uuid::parse_str(&id)
                    .map_err(|e| MigrateError::Mismatch(format!("result id {id:?}: {e}")))?,
                body_hash: r.get(1)?,
                received_at_ms: r.get(2)?,
                measured_at_ms: r.get(3)?,
                day: r.get(4)?,
                device_hash: r.get(5)?,
                text,
                optional,
                ip_version: r.get(rest)?,
                asn: r.get(rest + 1)?,
                metrics: [
                    r.get(rest + 2)?,
                    r.get(rest + 3)?,
                    r.get(rest + 4)?,
                    r.get(rest + 5)?,
                ],
                ipv6_capable: r.get(rest + 6)?,
                counted: r.get(rest + 7)?,
                receipt: r.get(rest + 8)?,
            });
            if chunk.len() == CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                if sender.blocking_send(Ok(full)).is_err() {
                    return Ok(());
                }
            }
        }
        if !chunk.is_empty() {
            let _ = sender.blocking_send(Ok(chunk));
        }
        Ok(())
    })();
    if let Err(error) = outcome {
        let _ = sender.blocking_send(Err(error));
    }
}

async fn write_rows(tx: &Transaction<'_>, rows: &[Row]) -> Result<(), MigrateError> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.result_id).collect();
    let body: Vec<&[u8]> = rows.iter().map(|r| r.body_hash.as_slice()).collect();
    let received: Vec<i64> = rows.iter().map(|r| r.received_at_ms).collect();
    let measured: Vec<i64> = rows.iter().map(|r| r.measured_at_ms).collect();
    let day: Vec<i32> = rows.iter().map(|r| r.day).collect();
    let device: Vec<&[u8]> = rows.iter().map(|r| r.device_hash.as_slice()).collect();
    let text: Vec<Vec<&str>> = (0..TEXT_COLUMNS.len())
        .map(|i| rows.iter().map(|r| r.text[i].as_str()).collect())
        .collect();
    let optional: Vec<Vec<Option<&str>>> = (0..OPTIONAL_COLUMNS.len())
        .map(|i| rows.iter().map(|r| r.optional[i].as_deref()).collect())
        .collect();
    let ip_version: Vec<i16> = rows.iter().map(|r| r.ip_version).collect();
    let asn: Vec<Option<i64>> = rows.iter().map(|r| r.asn).collect();
    let metrics: Vec<Vec<Option<f64>>> = (0..4)
        .map(|i| rows.iter().map(|r| r.metrics[i]).collect())
        .collect();
    let ipv6: Vec<Option<bool>> = rows.iter().map(|r| r.ipv6_capable).collect();
    let counted: Vec<bool> = rows.iter().map(|r| r.counted).collect();
    let receipt: Vec<&str> = rows.iter().map(|r| r.receipt.as_str()).collect();

    let mut params: Vec<&(dyn ToSql + Sync)> =
        vec![&ids, &body, &received, &measured, &day, &device];
    let mut columns = vec![
        "result_id",
        "body_hash",
        "received_at_ms",
        "measured_at_ms",
        "day",
        "device_hash",
    ];
    let mut types = vec!["uuid", "bytea", "bigint", "bigint", "int", "bytea"];
    for (i, name) in TEXT_COLUMNS.iter().enumerate() {
        params.push(&text[i]);
        columns.push(name);
        types.push("text");
    }
    for (i, name) in OPTIONAL_COLUMNS.iter().enumerate() {
        params.push(&optional[i]);
        columns.push(name);
        types.push("text");
    }
    params.extend([&ip_version as &(dyn ToSql + Sync), &asn]);
    columns.extend(["ip_version", "asn"]);
    types.extend(["smallint", "bigint"]);
    for (i, name) in ["download_mbps", "upload_mbps", "latency_ms", "jitter_ms"]
        .iter()
        .enumerate()
    {
        params.push(&metrics[i]);
        columns.push(name);
        types.push("float8");
    }
    params.extend([&ipv6 as &(dyn ToSql + Sync), &counted, &receipt]);
    columns.extend(["ipv6_capable", "counted", "receipt"]);
    types.extend(["bool", "bool", "text"]);
    let unnest: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}[]", i + 1))
        .collect();
    // `seq` comes from the sequence, in this (ingest) order.
    let sql = format!(
        "INSERT INTO results ({}) SELECT * FROM UNNEST({})",
        columns.join(", "),
        unnest.join(", ")
    );
    tx.execute(&sql, &params).await.map_err(target)?;
    tx.execute(
        "INSERT INTO result_ids (result_id, body_hash, day)
         SELECT * FROM UNNEST($1::uuid[], $2::bytea[], $3::int[])",
        &[&ids, &body, &day],
    )
    .await
    .map_err(target)?;
    let (mut s_tp, mut s_session, mut s_id) = (Vec::new(), Vec::new(), Vec::new());
    for r in rows {
        s_tp.push(r.text[4].as_str());
        s_session.push(r.text[5].as_str());
        s_id.push(r.result_id);
        if let (Some(tp), Some(session)) = (&r.optional[6], &r.optional[7]) {
            s_tp.push(tp.as_str());
            s_session.push(session.as_str());
            s_id.push(r.result_id);
        }
    }
    tx.execute(
        "INSERT INTO receipt_sessions (test_point_id, session_id, result_id)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::uuid[])",
        &[&s_tp, &s_session, &s_id],
    )
    .await
    .map_err(target)?;
    Ok(())
}

/// A cell's key columns as both stores hold them.
type Key = (i64, i64, i64, String, String, String, String, i64);
/// A stored cell: its count and its four encoded sketches.
type StoredCell = (i64, [Vec<u8>; 4]);

fn source_cells(dir: &Path) -> Result<BTreeMap<Key, StoredCell>, MigrateError> {
    let db = open_source(dir)?;
    let mut statement = db.prepare(
        "SELECT grain, period, level, parent, code, isp, access, ip_version,
                n, download, upload, latency, devices FROM cells",
    )?;
    let mut rows = statement.query([])?;
    let mut out = BTreeMap::new();
    while let Some(r) = rows.next()? {
        out.insert(
            (
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ),
            (r.get(8)?, [r.get(9)?, r.get(10)?, r.get(11)?, r.get(12)?]),
        );
    }
    Ok(out)
}

/// Results and counted results per month.
fn source_months(dir: &Path) -> Result<BTreeMap<i32, (i64, i64)>, MigrateError> {
    let db = open_source(dir)?;
    let mut statement =
        db.prepare("SELECT day, count(*), sum(counted) FROM results GROUP BY day")?;
    let mut rows = statement.query([])?;
    let mut out: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    while let Some(r) = rows.next()? {
        let day: i32 = r.get(0)?;
        let entry = out.entry(Month::of_day(day).0).or_default();
        entry.0 += r.get::<_, i64>(1)?;
        entry.1 += r.get::<_, i64>(2)?;
    }
    Ok(out)
}

fn decode(n: i64, blobs: &[Vec<u8>; 4]) -> Result<Cell, MigrateError> {
    Cell::from_blobs(n as u64, [&blobs[0], &blobs[1], &blobs[2], &blobs[3]])
        .map_err(|e| MigrateError::Mismatch(format!("undecodable cell: {e}")))
}

/// Copies `<sqlite_dir>/ispeed.sqlite3` into the PostgreSQL store at `url`
/// (`schema` as in [`crate::StoreLocation`]) and verifies it.
pub async fn sqlite_to_postgres(
    sqlite_dir: &Path,
    url: &str,
    schema: Option<&str>,
    heavy_tester_cap: u32,
    progress: impl Fn(u64),
) -> Result<MigrateReport, MigrateError> {
    let started = Instant::now();
    // Opening the source as a store brings it to the current schema and
    // holds its lock: no `serve` can write to it while it is copied.
    let dir = sqlite_dir.to_owned();
    let source = tokio::task::spawn_blocking(move || {
        SqliteStore::open(
            &dir,
            SqliteOptions {
                heavy_tester_cap,
                ..SqliteOptions::default()
            },
        )
    })
    .await
    .map_err(|e| MigrateError::Target(e.to_string()))??;
    let destination = PostgresStore::open(
        url,
        schema,
        PostgresOptions {
            heavy_tester_cap,
            ..PostgresOptions::default()
        },
    )
    .await?;
    let mut client = destination.client().await?;
    let tx = client.transaction().await.map_err(target)?;
    for table in [
        "result_ids",
        "users",
        "test_points",
        "campaigns",
        "unit_versions",
    ] {
        let any: bool = tx
            .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[])
            .await
            .map_err(target)?
            .get(0);
        if any {
            return Err(MigrateError::NotEmpty(format!("table {table}")));
        }
    }
    tx.batch_execute("DELETE FROM meta WHERE key = 'device_hash_key'")
        .await
        .map_err(target)?;

    // ---- raw results, in ingest order ---------------------------------------
    let months = {
        let dir = sqlite_dir.to_owned();
        tokio::task::spawn_blocking(move || source_months(&dir))
            .await
            .map_err(|e| MigrateError::Target(e.to_string()))??
    };
    for &month in months.keys() {
        tx.batch_execute(&crate::store::postgres::create_partition_sql(month))
            .await
            .map_err(target)?;
    }
    let (sender, mut receiver) = mpsc::channel(4);
    let dir = sqlite_dir.to_owned();
    let reader = tokio::task::spawn_blocking(move || read_rows(dir, sender));
    let mut results = 0u64;
    let mut counted = 0u64;
    while let Some(chunk) = receiver.recv().await {
        let chunk = chunk?;
        write_rows(&tx, &chunk).await?;
        results += chunk.len() as u64;
        counted += chunk.iter().filter(|r| r.counted).count() as u64;
        progress(results);
    }
    reader
        .await
        .map_err(|e| MigrateError::Target(e.to_string()))?;

    // ---- everything else, verbatim -------------------------------------------
    let dir = sqlite_dir.to_owned();
    let other = tokio::task::spawn_blocking(move || read_other(&dir))
        .await
        .map_err(|e| MigrateError::Target(e.to_string()))??;
    let copied = write_other(&tx, &other).await?;
    if let Some(device_key) = &other.device_key {
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('device_hash_key', $1)",
            &[&device_key.as_slice()],
        )
        .await
        .map_err(target)?;
    }
    tx.commit().await.map_err(target)?;
    let copy_seconds = started.elapsed().as_secs_f64();

    // ---- verification ----------------------------------------------------------
    let verify_started = Instant::now();
    let target_months: BTreeMap<i32, (i64, i64)> = {
        let client = destination.client().await?;
        let mut out: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
        for row in client
            .query(
                "SELECT day, count(*), count(*) FILTER (WHERE counted) FROM results GROUP BY day",
                &[],
            )
            .await
            .map_err(target)?
        {
            let entry = out.entry(Month::of_day(row.get(0)).0).or_default();
            entry.0 += row.get::<_, i64>(1);
            entry.1 += row.get::<_, i64>(2);
        }
        out
    };
    if target_months != months {
        return Err(MigrateError::Mismatch(format!(
            "results per month differ: source {months:?}, target {target_months:?}"
        )));
    }
    // The cells were not copied: the target computes its own from the raw
    // rows it now holds, which must give the source's cells exactly.
    let rebuilt = destination.rebuild_rollups().await?;
    if rebuilt.results != results || rebuilt.counted != counted {
        return Err(MigrateError::Mismatch(format!(
            "rebuild saw {} results / {} counted, copied {results} / {counted}",
            rebuilt.results, rebuilt.counted
        )));
    }
    let dir = sqlite_dir.to_owned();
    let expected = tokio::task::spawn_blocking(move || source_cells(&dir))
        .await
        .map_err(|e| MigrateError::Target(e.to_string()))??;
    let client = destination.client().await?;
    let rows = client
        .query(
            "SELECT grain, period, level, parent, code, isp, access, ip_version,
                    n, download, upload, latency, devices FROM cells",
            &[],
        )
        .await
        .map_err(target)?;
    if rows.len() != expected.len() {
        return Err(MigrateError::Mismatch(format!(
            "{} cells in the source, {} rebuilt",
            expected.len(),
            rows.len()
        )));
    }
    for row in &rows {
        let key: Key = (
            i64::from(row.get::<_, i16>(0)),
            i64::from(row.get::<_, i32>(1)),
            i64::from(row.get::<_, i16>(2)),
            row.get(3),
            row.get(4),
            row.get(5),
            row.get(6),
            i64::from(row.get::<_, i16>(7)),
        );
        let Some((n, blobs)) = expected.get(&key) else {
            return Err(MigrateError::Mismatch(format!(
                "cell {key:?} only in the target"
            )));
        };
        let mine = decode(
            row.get(8),
            &[row.get(9), row.get(10), row.get(11), row.get(12)],
        )?;
        if mine != decode(*n, blobs)? {
            return Err(MigrateError::Mismatch(format!("cell {key:?} differs")));
        }
    }
    drop(source);
    Ok(MigrateReport {
        results,
        counted,
        cells: rows.len() as u64,
        months: months.len() as u64,
        test_points: copied.0,
        users: copied.1,
        campaigns: copied.2,
        verified: true,
        copy_seconds,
        verify_seconds: verify_started.elapsed().as_secs_f64(),
    })
}

/// The small tables, as generic rows.
struct Other {
    /// The secret behind the stored device hashes: the target must hash
    /// new results' devices alike, or heavy testers would count twice.
    device_key: Option<Vec<u8>>,
    tables: Vec<SourceTable>,
}

/// A table's name, columns and rows.
type SourceTable = (&'static str, &'static [&'static str], Vec<Vec<Value>>);

#[derive(Debug, Clone)]
enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// (table, columns, PostgreSQL type of each column), in foreign-key order.
const OTHER_TABLES: &[(&str, &[&str], &[&str])] = &[
    (
        "test_points",
        &[
            "id",
            "public_key",
            "url",
            "name",
            "province_code",
            "line_rate_mbps",
            "status",
            "configured",
            "details",
            "registered_at_ms",
            "approved_at_ms",
            "revoked_at_ms",
        ],
        &[
            "text", "text", "text", "text", "text", "float8", "text", "bool", "text", "bigint",
            "bigint", "bigint",
        ],
    ),
    (
        "users",
        &[
            "id",
            "username",
            "password_hash",
            "role",
            "province_code",
            "created_at_ms",
            "disabled_at_ms",
        ],
        &["bigint", "text", "text", "text", "text", "bigint", "bigint"],
    ),
    (
        "sessions",
        &[
            "token_hash",
            "user_id",
            "csrf",
            "created_at_ms",
            "expires_at_ms",
        ],
        &["bytea", "bigint", "text", "bigint", "bigint"],
    ),
    (
        "api_tokens",
        &[
            "id",
            "token_hash",
            "user_id",
            "name",
            "created_at_ms",
            "revoked_at_ms",
        ],
        &["bigint", "bytea", "bigint", "text", "bigint", "bigint"],
    ),
    (
        "audit_log",
        &["id", "at_ms", "actor", "action", "target", "details"],
        &["bigint", "bigint", "text", "text", "text", "text"],
    ),
    (
        "unit_versions",
        &[
            "effective_month",
            "name",
            "loaded_at_ms",
            "provinces_csv",
            "units_csv",
            "wards_geojson_gz",
            "sha256",
        ],
        &["int", "text", "bigint", "text", "text", "bytea", "text"],
    ),
    (
        "campaigns",
        &[
            "slug",
            "name",
            "organisation",
            "province_code",
            "wards",
            "first_day",
            "last_day",
            "target_per_ward",
            "tags",
            "created_by",
            "created_at_ms",
        ],
        &[
            "text", "text", "text", "text", "text", "int", "int", "bigint", "text", "text",
            "bigint",
        ],
    ),
];

fn read_other(dir: &Path) -> Result<Other, MigrateError> {
    use rusqlite::types::ValueRef;
    let db = open_source(dir)?;
    let mut tables = Vec::new();
    for (table, columns, _) in OTHER_TABLES {
        let mut statement = db.prepare(&format!("SELECT {} FROM {table}", columns.join(", ")))?;
        let mut rows = statement.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut values = Vec::with_capacity(columns.len());
            for i in 0..columns.len() {
                values.push(match r.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => Value::Int(n),
                    ValueRef::Real(x) => Value::Real(x),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                });
            }
            out.push(values);
        }
        tables.push((*table, *columns, out));
    }
    let device_key = db
        .query_row(
            "SELECT value FROM meta WHERE key = 'device_hash_key'",
            [],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            other => Err(other),
        })?;
    Ok(Other { device_key, tables })
}

/// Writes the small tables row by row (they are small); returns (test
/// points, users, campaigns) copied.
async fn write_other(tx: &Transaction<'_>, other: &Other) -> Result<(u64, u64, u64), MigrateError> {
    let mut counts = BTreeMap::new();
    for ((table, columns, rows), (_, _, types)) in other.tables.iter().zip(OTHER_TABLES) {
        let placeholders: Vec<String> = types
            .iter()
            .enumerate()
            .map(|(i, t)| format!("${}::{t}", i + 1))
            .collect();
        let overriding = if columns.first() == Some(&"id") && *table != "test_points" {
            " OVERRIDING SYSTEM VALUE"
        } else {
            ""
        };
        let sql = format!(
            "INSERT INTO {table} ({}){overriding} VALUES ({})",
            columns.join(", "),
            placeholders.join(", ")
        );
        let statement = tx.prepare(&sql).await.map_err(target)?;
        for row in rows {
            let owned: Vec<Box<dyn ToSql + Sync>> = row
                .iter()
                .zip(types.iter())
                .map(|(value, ty)| -> Box<dyn ToSql + Sync> {
                    match (value, *ty) {
                        (Value::Null, "bigint") => Box::new(None::<i64>),
                        (Value::Null, "int") => Box::new(None::<i32>),
                        (Value::Null, "float8") => Box::new(None::<f64>),
                        (Value::Null, "bool") => Box::new(None::<bool>),
                        (Value::Null, "bytea") => Box::new(None::<Vec<u8>>),
                        (Value::Null, _) => Box::new(None::<String>),
                        (Value::Int(n), "bool") => Box::new(*n != 0),
                        (Value::Int(n), "int") => Box::new(*n as i32),
                        (Value::Int(n), "float8") => Box::new(*n as f64),
                        (Value::Int(n), _) => Box::new(*n),
                        (Value::Real(x), _) => Box::new(*x),
                        (Value::Text(t), _) => Box::new(t.clone()),
                        (Value::Blob(b), _) => Box::new(b.clone()),
                    }
                })
                .collect();
            let params: Vec<&(dyn ToSql + Sync)> = owned.iter().map(|b| b.as_ref()).collect();
            tx.execute(&statement, &params).await.map_err(target)?;
        }
        if !overriding.is_empty() {
            // Later rows continue after the copied ids.
            tx.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id))
                     FROM {table} HAVING max(id) IS NOT NULL"
                ),
                &[],
            )
            .await
            .map_err(target)?;
        }
        counts.insert(*table, rows.len() as u64);
    }
    Ok((counts["test_points"], counts["users"], counts["campaigns"]))
}
