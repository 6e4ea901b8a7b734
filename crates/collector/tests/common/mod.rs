//! Shared helpers: a real collector on 127.0.0.1:0 over a real store (a
//! SQLite file, and a PostgreSQL schema of its own when
//! `ISPEED_TEST_POSTGRES` names a server), and a minimal HTTP client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use ispeed_collector::config::RawTestPoint;
use ispeed_collector::generate::{Generator, SYNTHETIC_LINE_RATE_MBPS, SYNTHETIC_TEST_POINT_ID};
use ispeed_collector::period::Month;
use ispeed_collector::{RawConfig, ServeConfig};
use tokio_util::sync::CancellationToken;

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "ispeed-collector-{tag}-{}-{}",
            std::process::id(),
            u64::from_le_bytes(nonce)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The stores every shared test runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    /// A PostgreSQL server URL (without a schema).
    Postgres(String),
}

/// SQLite always; PostgreSQL too when `ISPEED_TEST_POSTGRES` is set.
pub fn backends() -> Vec<Backend> {
    let mut out = vec![Backend::Sqlite];
    match std::env::var("ISPEED_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => out.push(Backend::Postgres(url)),
        _ => eprintln!("ISPEED_TEST_POSTGRES unset: PostgreSQL part skipped"),
    }
    out
}

/// A data directory plus, for PostgreSQL, a fresh schema of its own
/// (dropped with it), so parallel tests and runs never meet.
pub struct TestStore {
    pub dir: TempDir,
    pub backend: Backend,
    /// The `--store` URL; `None` for the default SQLite under `dir`.
    pub url: Option<String>,
    schema: Option<String>,
}

fn pg_config(url: &str, schema: Option<&str>) -> tokio_postgres::Config {
    let mut config: tokio_postgres::Config = url.parse().expect("ISPEED_TEST_POSTGRES is a URL");
    if let Some(schema) = schema {
        config.options(format!("-c search_path={schema}"));
    }
    config
}

impl TestStore {
    pub fn new(tag: &str, backend: &Backend) -> TestStore {
        let dir = TempDir::new(tag);
        match backend {
            Backend::Sqlite => TestStore {
                dir,
                backend: backend.clone(),
                url: None,
                schema: None,
            },
            Backend::Postgres(base) => {
                let mut nonce = [0u8; 6];
                getrandom::fill(&mut nonce).unwrap();
                let schema = format!(
                    "t_{}_{}",
                    tag.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
                        .to_lowercase(),
                    hex(&nonce)
                );
                let sep = if base.contains('?') { '&' } else { '?' };
                TestStore {
                    dir,
                    backend: backend.clone(),
                    url: Some(format!("{base}{sep}schema={schema}")),
                    schema: Some(schema),
                }
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// `raw` pointed at this store.
    pub fn raw(&self, mut raw: RawConfig) -> RawConfig {
        raw.data = Some(self.path().to_owned());
        raw.store = self.url.clone();
        raw
    }

    pub fn config(&self) -> ispeed_collector::CollectorConfig {
        self.raw(RawConfig::default()).resolve(self.path()).unwrap()
    }

    /// Opens the store as `serve` would (default options).
    pub async fn open(&self) -> std::sync::Arc<dyn ispeed_collector::Store> {
        ispeed_collector::open_store(&self.config()).await.unwrap()
    }

    /// Runs a read-only query on the raw tables; values come back as JSON
    /// (integers and booleans as numbers, bytes as hex, NULL as null).
    pub async fn query(&self, sql: &str) -> Vec<Vec<serde_json::Value>> {
        use serde_json::Value;
        match &self.backend {
            Backend::Sqlite => {
                let db = rusqlite::Connection::open_with_flags(
                    self.path().join("ispeed.sqlite3"),
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .unwrap();
                let mut statement = db.prepare(sql).unwrap();
                let columns = statement.column_count();
                let mut rows = statement.query([]).unwrap();
                let mut out = Vec::new();
                while let Some(row) = rows.next().unwrap() {
                    let mut values = Vec::with_capacity(columns);
                    for i in 0..columns {
                        use rusqlite::types::ValueRef;
                        values.push(match row.get_ref(i).unwrap() {
                            ValueRef::Null => Value::Null,
                            ValueRef::Integer(n) => Value::from(n),
                            ValueRef::Real(x) => Value::from(x),
                            ValueRef::Text(t) => Value::from(String::from_utf8_lossy(t)),
                            ValueRef::Blob(b) => Value::from(hex(b)),
                        });
                    }
                    out.push(values);
                }
                out
            }
            Backend::Postgres(base) => {
                use tokio_postgres::types::Type;
                let (client, connection) = pg_config(base, self.schema.as_deref())
                    .connect(tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(connection);
                let rows = client.query(sql, &[]).await.unwrap();
                rows.iter()
                    .map(|row| {
                        (0..row.len())
                            .map(|i| {
                                let ty = row.columns()[i].type_().clone();
                                let value: Option<Value> = if ty == Type::INT2 {
                                    row.get::<_, Option<i16>>(i).map(Value::from)
                                } else if ty == Type::INT4 {
                                    row.get::<_, Option<i32>>(i).map(Value::from)
                                } else if ty == Type::INT8 {
                                    row.get::<_, Option<i64>>(i).map(Value::from)
                                } else if ty == Type::FLOAT8 {
                                    row.get::<_, Option<f64>>(i).map(Value::from)
                                } else if ty == Type::BOOL {
                                    row.get::<_, Option<bool>>(i).map(|b| Value::from(b as i64))
                                } else if ty == Type::BYTEA {
                                    row.get::<_, Option<Vec<u8>>>(i)
                                        .map(|b| Value::from(hex(&b)))
                                } else if ty == Type::UUID {
                                    row.get::<_, Option<uuid::Uuid>>(i)
                                        .map(|u| Value::from(u.to_string()))
                                } else {
                                    row.get::<_, Option<String>>(i).map(Value::from)
                                };
                                value.unwrap_or(Value::Null)
                            })
                            .collect()
                    })
                    .collect()
            }
        }
    }

    /// `SELECT count(*) FROM table`.
    pub async fn count(&self, table: &str) -> i64 {
        self.query(&format!("SELECT count(*) FROM {table}")).await[0][0]
            .as_i64()
            .unwrap()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let (Backend::Postgres(base), Some(schema)) = (&self.backend, &self.schema) else {
            return;
        };
        let config = pg_config(base, None);
        let schema = schema.clone();
        // Drop may run inside the test's runtime: use a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                if let Ok((client, connection)) = config.connect(tokio_postgres::NoTls).await {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Starts a collector on `store` (as [`start`]).
pub async fn start_on(store: &TestStore, raw: RawConfig, local_test_point: bool) -> Running {
    start(store.path(), store.raw(raw), local_test_point).await
}

/// A running collector.
pub struct Running {
    pub url: String,
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// The synthetic test point of `seed`, approved.
pub fn synthetic_test_point(seed: u64) -> RawTestPoint {
    let key = ispeed_collector::generate::synthetic_key(seed);
    RawTestPoint {
        id: SYNTHETIC_TEST_POINT_ID.to_owned(),
        public_key: ispeed_proto::receipt::encode_public_key(&key.verifying_key()),
        url: "synthetic:".to_owned(),
        name: None,
        province_code: None,
        line_rate_mbps: Some(SYNTHETIC_LINE_RATE_MBPS),
    }
}

/// Starts `ispeed serve`'s service in-process on 127.0.0.1:0.
pub async fn start(data: &Path, mut raw: RawConfig, local_test_point: bool) -> Running {
    raw.data = Some(data.to_owned());
    let collector = raw.resolve(data).unwrap();
    let test_point = local_test_point.then(|| {
        ispeed_server::RawConfig {
            key_file: Some(data.join("test-point.key")),
            ..Default::default()
        }
        .resolve()
        .unwrap()
    });
    let listeners = ispeed_server::bind(&["127.0.0.1:0".parse().unwrap()]).unwrap();
    let addr = listeners[0].local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let config = ServeConfig {
        collector,
        test_point,
        test_listen: Vec::new(),
    };
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        ispeed_collector::run(listeners, config, token)
            .await
            .unwrap();
    });
    let url = format!("http://{addr}");
    // Ready once the API answers.
    for _ in 0..200 {
        if get(&url, "/api/v1/isps")
            .await
            .map(|r| r.0 == 200)
            .unwrap_or(false)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Running {
        url,
        addr,
        shutdown,
        task,
    }
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
pub async fn request(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let authority = url.trim_start_matches("http://").trim_end_matches('/');
    let stream = tokio::net::TcpStream::connect(authority).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", authority)
        .header("content-type", "application/json");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = sender
        .send_request(builder.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .map_err(std::io::Error::other)?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok((status, bytes.to_vec()))
}

pub async fn get(url: &str, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    request(url, "GET", path, &[], Vec::new()).await
}

pub async fn get_json(url: &str, path: &str) -> serde_json::Value {
    let (status, body) = get(url, path).await.unwrap();
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

pub async fn post_json(url: &str, value: &impl serde::Serialize) -> (u16, serde_json::Value) {
    let body = serde_json::to_vec(value).unwrap();
    let (status, body) = request(url, "POST", "/api/v1/results", &[], body)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// A generator whose receipts are signed by [`synthetic_test_point`]`(seed)`.
pub fn generator(seed: u64, samples: u64) -> Generator {
    let config = RawConfig::default().resolve(Path::new(".")).unwrap();
    let enricher = ispeed_collector::state::load_enricher(&config).unwrap();
    Generator::new(seed, Month::parse("2026-10").unwrap(), samples, &enricher)
}
