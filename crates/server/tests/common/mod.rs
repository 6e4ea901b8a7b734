//! Starts a real test point on 127.0.0.1:0 for integration tests.

use std::net::SocketAddr;

use ispeed_server::RawConfig;
use tokio_util::sync::CancellationToken;

pub struct TestPoint {
    pub addr: SocketAddr,
    pub url: String,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
    _dir: TempDir,
}

pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "ispeed-{tag}-{}-{}",
            std::process::id(),
            uuid_like()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn uuid_like() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub async fn start(mut raw: RawConfig) -> TestPoint {
    let dir = TempDir::new("tp");
    raw.key_file = Some(dir.0.join("tp.key"));
    raw.listen = Some(vec!["127.0.0.1:0".parse().unwrap()]);
    let config = raw.resolve().unwrap();
    let listeners = ispeed_server::bind(&config.listen).unwrap();
    let addr = listeners[0].local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            ispeed_server::run(listeners, config, shutdown)
                .await
                .unwrap()
        }
    });
    TestPoint {
        addr,
        url: format!("http://{addr}"),
        shutdown,
        task,
        _dir: dir,
    }
}
