//! What the browser client relies on, over real sockets on 127.0.0.1:0:
//! payload streams as WebSockets (spec/protocol.md §6.4), the controller's
//! advice in `live` (§8.1), CORS (§2.1) and the test page.

mod common;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use ispeed_client::http::{Connection, Endpoint};
use ispeed_proto::wire::{Direction, Live, SessionCreated, Verdict};
use ispeed_server::RawConfig;
use tokio_tungstenite::tungstenite::Message;

fn endpoint(tp: &common::TestPoint) -> Endpoint {
    Endpoint {
        addr: tp.addr,
        authority: tp.addr.to_string(),
        base_path: String::new(),
    }
}

async fn session(tp: &common::TestPoint) -> (Connection, String) {
    let mut control = Connection::open(&endpoint(tp)).await.unwrap();
    let created: SessionCreated = control
        .json(http::Method::POST, "/v1/sessions", None::<&()>)
        .await
        .unwrap();
    (control, created.session_id)
}

async fn live(control: &mut Connection, id: &str, advise: &str) -> Live {
    control
        .json(
            http::Method::GET,
            &format!("/v1/sessions/{id}/live?advise={advise}"),
            None::<&()>,
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn websocket_download_is_counted_and_ends_when_the_client_closes() {
    let tp = common::start(RawConfig::default()).await;
    let (mut control, id) = session(&tp).await;
    let url = format!("{}/v1/sessions/{id}/download?stream=0", ws_base(&tp));
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    // Open but not started: registered with nothing, counting nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = live(&mut control, &id, "download").await;
    assert!(idle
        .samples
        .iter()
        .all(|s| s.down_streams == 0 && s.down_bytes == 0));
    assert_eq!(idle.advice.unwrap().elapsed_us, 0);
    ws.send(Message::Text("start".into())).await.unwrap();
    let mut received = 0usize;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(800) {
        match ws.next().await.unwrap().unwrap() {
            Message::Binary(data) => received += data.len(),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(received > 1_000_000, "received {received} bytes");
    let during = live(&mut control, &id, "download").await;
    let last = *during.samples.last().unwrap();
    assert_eq!(last.down_streams, 1);
    assert!(last.down_bytes > 0);
    let advice = during.advice.expect("advice was asked for");
    assert_eq!(advice.direction, Direction::Download);
    assert_eq!(advice.streams, 8, "adaptive mode starts with 8 streams");
    assert_eq!(advice.verdict, Verdict::Continue);
    assert!(advice.mbps > 0.0);

    // A browser's close: the server must stop sending at once (a browser
    // keeps discarding data until the server closes too, which would count
    // as delivered and overlap the next phase) and answer the close.
    ws.close(None).await.unwrap();
    let mut answered = false;
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
        match message {
            Ok(Message::Close(_)) => answered = true,
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    assert!(answered, "the server answers the client's close frame");
    let closed_at = Instant::now();
    loop {
        let after = live(&mut control, &id, "download").await;
        if after.samples.last().unwrap().down_streams == 0 {
            break;
        }
        assert!(
            closed_at.elapsed() < Duration::from_secs(2),
            "the stream outlived the client's close"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bytes = live(&mut control, &id, "download")
        .await
        .samples
        .last()
        .unwrap()
        .down_bytes;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let later = live(&mut control, &id, "download").await;
    assert!(later.samples.last().unwrap().down_bytes == bytes || later.samples.is_empty());
    stop(tp).await;
}

#[tokio::test]
async fn websocket_upload_is_counted_by_the_server() {
    let tp = common::start(RawConfig::default()).await;
    let (mut control, id) = session(&tp).await;
    let url = format!("{}/v1/sessions/{id}/upload?stream=0", ws_base(&tp));
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    ws.send(Message::Text("start".into())).await.unwrap();
    // Bytes that reach the kernel before the stream is registered are not
    // counted (the base is read at registration): wait for it here, so the
    // count below must be exact.
    let registered = Instant::now();
    while live(&mut control, &id, "upload")
        .await
        .samples
        .last()
        .is_none_or(|s| s.up_streams == 0)
    {
        assert!(
            registered.elapsed() < Duration::from_secs(2),
            "never registered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let payload: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for _ in 0..16 {
        ws.send(Message::Binary(payload.clone().into()))
            .await
            .unwrap();
    }
    ws.flush().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let now = live(&mut control, &id, "upload").await;
        let up = now.samples.last().map_or(0, |s| s.up_bytes);
        if up >= 16 << 20 {
            // Counted in order by the kernel: the payload plus WebSocket framing (< 0.01 %).
            assert!(up < (16 << 20) + 4096, "counted {up}");
            break;
        }
        assert!(Instant::now() < deadline, "only {up} bytes counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ws.close(None).await.unwrap();
    stop(tp).await;
}

#[tokio::test]
async fn websocket_streams_get_typed_errors_before_the_upgrade() {
    let tp = common::start(RawConfig::default()).await;
    let url = format!(
        "ws://{}/v1/sessions/00000000-0000-4000-8000-000000000000/download",
        tp.addr
    );
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 404);
            let body = String::from_utf8(response.body().clone().unwrap_or_default()).unwrap();
            assert!(body.contains("unknown_session"), "{body}");
        }
        other => panic!("expected a 404, got {other:?}"),
    }
    // A plain GET of the upload path is not an upload.
    let response = reqwest_like_get(&tp, "/v1/sessions/x/upload").await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("bad_request"));
    stop(tp).await;
}

#[tokio::test]
async fn cors_lets_any_origin_run_a_test_and_the_test_page_is_served() {
    let tp = common::start(RawConfig::default()).await;
    let preflight = raw(
        &tp,
        "OPTIONS /v1/sessions HTTP/1.1\r\nHost: x\r\nOrigin: http://partner.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(preflight.starts_with("HTTP/1.1 204"), "{preflight}");
    let lower = preflight.to_ascii_lowercase();
    assert!(lower.contains("access-control-allow-origin: *"));
    assert!(lower.contains("access-control-allow-methods: get, post"));
    let info = raw(&tp, "GET /v1/info HTTP/1.1\r\nHost: x\r\nOrigin: http://partner.example\r\nConnection: close\r\n\r\n").await;
    assert!(info
        .to_ascii_lowercase()
        .contains("access-control-allow-origin: *"));

    let page = reqwest_like_get(&tp, "/?lang=en").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<html lang=\"en\">"));
    assert!(page.to_ascii_lowercase().contains("set-cookie: lang=en"));
    let script = page
        .split("src=\"")
        .find_map(|s| {
            s.split('"')
                .next()
                .filter(|u| u.starts_with("/assets/ispeed.js"))
        })
        .expect("the page loads its script")
        .replace("&amp;", "&");
    let asset = reqwest_like_get(&tp, &script).await;
    assert!(asset.starts_with("HTTP/1.1 200"));
    assert!(asset.contains("immutable"));
    assert!(asset.contains("runTest"));
    stop(tp).await;
}

/// Shuts the test point down and waits for it.
async fn stop(tp: common::TestPoint) {
    tp.shutdown.cancel();
    tp.task.await.unwrap();
}

/// `ws://` of the test point.
fn ws_base(tp: &common::TestPoint) -> String {
    tp.url.replacen("http://", "ws://", 1)
}

async fn reqwest_like_get(tp: &common::TestPoint, path: &str) -> String {
    raw(
        tp,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .await
}

async fn raw(tp: &common::TestPoint, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(tp.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).into_owned()
}
