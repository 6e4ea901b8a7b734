//! Shared helpers of the process tests: temporary directories, child
//! processes killed on drop, free ports, and one-request HTTP.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

pub const BIN: &str = env!("CARGO_BIN_EXE_ispeed");

/// A fresh directory under the system temp dir, removed on drop.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(tag: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("ispeed-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process, killed when dropped.
pub struct Process(pub Child);

impl Process {
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// `ispeed <args>` with quiet logs, waiting until `port` accepts.
pub fn spawn(args: &[&str], port: u16) -> Process {
    let child = Command::new(BIN)
        .args(args)
        .env("ISPEED_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let process = Process(child);
    wait_for_port(port);
    process
}

/// Each question's `200` body, fetched in order (blocking; for comparing
/// what two servers answer).
pub fn get_all<Q: AsRef<str>>(url: &str, questions: &[Q], headers: &[(&str, &str)]) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    questions
        .iter()
        .map(|q| {
            let q = q.as_ref();
            let (status, body) = runtime
                .block_on(request(url, "GET", q, headers, Vec::new()))
                .unwrap();
            let body = String::from_utf8(body).unwrap();
            assert_eq!(status, 200, "{q}: {body}");
            body
        })
        .collect()
}

/// One request as a JSON API client sends it; (status, body).
pub async fn request(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let (status, _, body) = request_with_headers(url, method, path, &all, body).await?;
    Ok((status, body))
}

/// One request with exactly `headers`; (status, response headers, body).
pub async fn request_with_headers(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> std::io::Result<(u16, Vec<(String, String)>, Vec<u8>)> {
    let authority = url.trim_start_matches("http://").trim_end_matches('/');
    let stream = tokio::net::TcpStream::connect(authority).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", authority);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = sender
        .send_request(builder.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .map_err(std::io::Error::other)?;
    let status = response.status().as_u16();
    let response_headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok((status, response_headers, bytes.to_vec()))
}

/// A PostgreSQL schema of its own on the server `ISPEED_TEST_POSTGRES`
/// names, dropped with it; `None` (and a note) when the variable is unset.
pub struct PgSchema {
    base: String,
    pub schema: String,
    /// The `--store` URL.
    pub url: String,
}

impl PgSchema {
    pub fn new(tag: &str) -> Option<PgSchema> {
        let base = match std::env::var("ISPEED_TEST_POSTGRES") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                eprintln!("ISPEED_TEST_POSTGRES unset: PostgreSQL part skipped");
                return None;
            }
        };
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let schema = format!("t_{tag}_{}", &nonce[..12]);
        let sep = if base.contains('?') { '&' } else { '?' };
        Some(PgSchema {
            url: format!("{base}{sep}schema={schema}"),
            base,
            schema,
        })
    }

    /// Runs SQL in the schema (on a thread of its own, so it works inside
    /// or outside a runtime); every value comes back as text.
    pub fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let mut config: tokio_postgres::Config = self.base.parse().unwrap();
        config.options(format!("-c search_path={}", self.schema));
        let sql = sql.to_owned();
        run_detached(async move {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            client
                .simple_query(&sql)
                .await
                .unwrap()
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                        (0..row.len())
                            .map(|i| row.get(i).map(str::to_owned))
                            .collect(),
                    ),
                    _ => None,
                })
                .collect()
        })
    }

    /// Runs statements in the schema.
    pub fn execute(&self, sql: &str) {
        let mut config: tokio_postgres::Config = self.base.parse().unwrap();
        config.options(format!("-c search_path={}", self.schema));
        let sql = sql.to_owned();
        run_detached(async move {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            client.batch_execute(&sql).await.unwrap();
        });
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let config: tokio_postgres::Config = self.base.parse().unwrap();
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema);
        run_detached(async move {
            if let Ok((client, connection)) = config.connect(tokio_postgres::NoTls).await {
                tokio::spawn(connection);
                let _ = client.batch_execute(&sql).await;
            }
        });
    }
}

fn run_detached<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(work)
    })
    .join()
    .unwrap()
}
