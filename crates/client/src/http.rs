//! Minimal HTTP/1.1 client plumbing over connections the engine owns, so
//! that every stream is its own TCP connection and probes never share a
//! connection with payload.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use ispeed_proto::ErrorBody;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::{TcpSocket, TcpStream};

use crate::ClientError;

/// How long connecting to a test point may take before it counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a control request may take (generous: a bloated queue can hold seconds).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a test point is: its socket address and the URL parts requests need.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// `Host` header value.
    pub authority: String,
    /// Path prefix the API lives under (empty or `/prefix`).
    pub base_path: String,
}

impl Endpoint {
    pub fn uri(&self, path: &str) -> String {
        format!("{}{}", self.base_path, path)
    }
}

/// Opens a TCP connection, returning it and how long the handshake took.
pub async fn connect_tcp(addr: SocketAddr) -> Result<(TcpStream, Duration), ClientError> {
    connect_tcp_with(addr, None).await
}

/// Like [`connect_tcp`]; `socket_buffer` fixes both kernel socket buffers to
/// that many bytes (turning off their autotuning) before the handshake.
pub async fn connect_tcp_with(
    addr: SocketAddr,
    socket_buffer: Option<u32>,
) -> Result<(TcpStream, Duration), ClientError> {
    let started = Instant::now();
    let connect = async {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }?;
        if let Some(bytes) = socket_buffer {
            socket.set_recv_buffer_size(bytes)?;
            socket.set_send_buffer_size(bytes)?;
        }
        socket.connect(addr).await
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| ClientError::Unreachable(format!("connecting to {addr} timed out")))?
        .map_err(|e| ClientError::Unreachable(format!("cannot connect to {addr}: {e}")))?;
    let elapsed = started.elapsed();
    let _ = stream.set_nodelay(true);
    Ok((stream, elapsed))
}

/// One HTTP/1.1 connection to the test point.
pub struct Connection<B = Full<Bytes>> {
    endpoint: Endpoint,
    sender: SendRequest<B>,
}

impl<B> Connection<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Connects and performs the HTTP/1.1 handshake; the connection task runs
    /// until the returned value and all its requests are dropped.
    pub async fn open(endpoint: &Endpoint) -> Result<Connection<B>, ClientError> {
        Self::open_with(endpoint, None).await
    }

    /// [`Connection::open`] with fixed socket buffers (see [`connect_tcp_with`]).
    pub async fn open_with(
        endpoint: &Endpoint,
        socket_buffer: Option<u32>,
    ) -> Result<Connection<B>, ClientError> {
        let (stream, _) = connect_tcp_with(endpoint.addr, socket_buffer).await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Unreachable(format!("HTTP handshake failed: {e}")))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection {
            endpoint: endpoint.clone(),
            sender,
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends a request with the given body; returns the response head and body.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: B,
    ) -> Result<Response<Incoming>, ClientError> {
        let request = Request::builder()
            .method(method)
            .uri(self.endpoint.uri(path))
            .header(header::HOST, &self.endpoint.authority)
            .header(
                header::USER_AGENT,
                concat!("ispeed/", env!("CARGO_PKG_VERSION")),
            )
            .body(body)
            .map_err(|e| ClientError::Protocol(format!("cannot build request: {e}")))?;
        self.sender
            .ready()
            .await
            .map_err(|e| ClientError::Lost(format!("connection to the test point closed: {e}")))?;
        self.sender
            .send_request(request)
            .await
            .map_err(|e| ClientError::Lost(format!("request to the test point failed: {e}")))
    }
}

impl Connection<Full<Bytes>> {
    /// Sends a request and decodes a JSON answer (or the typed error), within [`REQUEST_TIMEOUT`].
    pub async fn json<T: DeserializeOwned>(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let bytes = match body {
            Some(body) => Bytes::from(
                serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))?,
            ),
            None => Bytes::new(),
        };
        let exchange = async {
            let response = self.send(method, path, Full::new(bytes)).await?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Lost(format!("reading a response failed: {e}")))?
                .to_bytes();
            decode(status, &body)
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                ClientError::Lost(format!("no answer to {path} within {REQUEST_TIMEOUT:?}"))
            })?
    }
}

/// Turns a response into `T` or into the server's typed error.
pub fn decode<T: DeserializeOwned>(status: StatusCode, body: &[u8]) -> Result<T, ClientError> {
    if status.is_success() {
        return serde_json::from_slice(body)
            .map_err(|e| ClientError::Protocol(format!("unexpected response: {e}")));
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(error) => Err(ClientError::Server {
            status: status.as_u16(),
            code: error.error.code,
            message: error.error.message,
        }),
        Err(_) => Err(ClientError::Protocol(format!(
            "test point answered {status} without a typed error"
        ))),
    }
}
