//! Shared helpers: a real collector on 127.0.0.1:0 over a real SQLite file,
//! and a minimal HTTP client.
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
