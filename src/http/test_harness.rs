//! Serves connections over `tokio::io::duplex` with a stub [`Dispatch`], so that what the
//! server answers by itself (health, limits, admission, time-outs, h2c, upgrades) is tested in
//! milliseconds, without Python. The server side is the accept loop's own entry
//! ([`HttpProtocol`] as a [`ServeConnection`]); the test writes raw HTTP/1.1 bytes on the
//! other end, or drives it with hyper's HTTP/2 client.
//!
//! Run the tests on Tokio's paused clock (`#[tokio::test(start_paused = true)]`): time-outs
//! then pass in no real time, and a test that waits for something that never comes fails
//! after [`PATIENCE`] of virtual time instead of hanging.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri, Version};
use http_body::{Body, Frame};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::conn::HttpProtocol;
use super::{Dispatch, Http, NewRequest, OwnAnswer};
use crate::bridge::lag::LoopLag;
use crate::bridge::{AppWaker, Deliver};
use crate::config::CoreConfig;
use crate::transport::{ConnInfo, LogLevel, Phase, Registry, Report, ServeConnection, ServerAddr};
use crate::ws::{Accept, Session};

/// How long (virtual time) a test waits for what it expects before it fails.
pub const PATIENCE: Duration = Duration::from_secs(600);

/// The one place a test's `CoreConfig` is made: the defaults of the command line (keep-alive
/// 5 s, 8 KiB heads, access log on so that answers given without the app are reported),
/// then whatever the test changes. A change to `CoreConfig::build`'s signature is one edit
/// here.
pub fn config(configure: impl FnOnce(&mut CoreConfig)) -> CoreConfig {
    let mut config = CoreConfig::build(5.0, None, 8192, true, Vec::new(), String::new(), true)
        .expect("the defaults are valid");
    configure(&mut config);
    config
}

/// What the stub app does with the next request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Answers at once with this status and a text body.
    Answer(StatusCode, &'static str),
    /// Keeps the request, unanswered, until the test takes it ([`Stub::take`]).
    Hold,
    /// Hands the request back: the app side is full.
    Refuse,
    /// Gives up on the client and finishes without answering, as a WSGI thread does when
    /// the client keeps it waiting too long.
    GiveUp,
    /// Sends `websocket.accept` and keeps the request, as an app serving the socket does.
    AcceptWebSocket,
    /// Answers the handshake with an HTTP response instead of accepting it.
    DenyWebSocket(StatusCode, &'static str),
}

/// What the stub saw of a request head.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub websocket: bool,
}

/// Counts the wake-ups of a canceller the stub registers on each exchange it holds (what an
/// ASGI task's cancellation is to `--timeout-request`).
#[derive(Default)]
pub struct Cancelled(pub AtomicUsize);

impl AppWaker for Cancelled {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// The interface a test plays: its reply to each request is the test's choice.
pub struct Stub {
    reply: Mutex<Reply>,
    seen: Mutex<Vec<Seen>>,
    held: Mutex<Vec<NewRequest>>,
    /// Statuses of the answers given without the app (`Dispatch::answered_here`).
    own: Mutex<Vec<StatusCode>>,
    pub cancelled: Arc<Cancelled>,
    arrived: Notify,
}

impl Stub {
    fn new(reply: Reply) -> Self {
        Self {
            reply: Mutex::new(reply),
            seen: Mutex::new(Vec::new()),
            held: Mutex::new(Vec::new()),
            own: Mutex::new(Vec::new()),
            cancelled: Arc::default(),
            arrived: Notify::new(),
        }
    }

    pub fn set_reply(&self, reply: Reply) {
        *self.reply.lock() = reply;
    }

    /// Every request head the stub was handed, refused ones included.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }

    pub fn own_answers(&self) -> Vec<StatusCode> {
        self.own.lock().clone()
    }

    /// Waits until `n` requests have reached the stub.
    pub async fn wait_for(&self, n: usize) {
        let arrived = async {
            while self.seen.lock().len() < n {
                self.arrived.notified().await;
            }
        };
        tokio::time::timeout(PATIENCE, arrived)
            .await
            .expect("the requests reach the app");
    }

    /// The oldest request the stub holds.
    pub fn take(&self) -> NewRequest {
        let mut held = self.held.lock();
        assert!(!held.is_empty(), "the stub holds no request");
        held.remove(0)
    }
}

impl Dispatch for Stub {
    fn dispatch(&self, request: NewRequest) -> Result<(), Box<NewRequest>> {
        let p = &request.parts;
        self.seen.lock().push(Seen {
            method: p.method.clone(),
            uri: p.uri.clone(),
            version: p.version,
            headers: p.headers.clone(),
            websocket: request.websocket.is_some(),
        });
        self.arrived.notify_one();
        let reply = self.reply.lock().clone();
        match reply {
            Reply::Answer(status, text) => answer(&request, status, text),
            Reply::Hold => {
                request.exchange.set_canceller(self.cancelled.clone());
                self.held.lock().push(request);
            }
            Reply::Refuse => return Err(Box::new(request)),
            Reply::GiveUp => {
                request.exchange.disconnect();
                request.exchange.finish();
            }
            Reply::AcceptWebSocket => {
                let session = request.websocket.as_ref().expect("a websocket request");
                let accept = Accept {
                    subprotocol: None,
                    headers: HeaderMap::new(),
                };
                session
                    .accept(accept)
                    .expect("the handshake waits for the app");
                self.held.lock().push(request);
            }
            Reply::DenyWebSocket(status, text) => {
                request
                    .websocket
                    .as_ref()
                    .expect("a websocket request")
                    .refuse();
                answer(&request, status, text);
            }
        }
        Ok(())
    }

    fn answered_here(&self, answer: OwnAnswer<'_>) {
        self.own.lock().push(answer.status);
    }
}

fn text_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers
}

/// Answers a request whole and finishes it, as an interface does with a complete response.
pub fn answer(request: &NewRequest, status: StatusCode, text: &'static str) {
    let sent = request
        .exchange
        .start_response(
            status,
            text_headers(),
            Bytes::from_static(text.as_bytes()),
            false,
        )
        .expect("the exchange takes the response");
    if let Some(h) = sent.handover {
        h.deliver();
    }
    request.exchange.finish();
}

/// Starts a streaming response with its first chunk.
pub fn start_stream(request: &NewRequest, status: StatusCode, first: &'static str) {
    let sent = request
        .exchange
        .start_response(
            status,
            text_headers(),
            Bytes::from_static(first.as_bytes()),
            true,
        )
        .expect("the exchange takes the response");
    if let Some(h) = sent.handover {
        h.deliver();
    }
}

/// Sends the last chunk of a streaming response and finishes it.
pub fn end_stream(request: &NewRequest, last: &'static str) {
    let sent = request
        .exchange
        .send_chunk(Bytes::from_static(last.as_bytes()), false)
        .expect("the exchange takes the chunk");
    if let Some(h) = sent.handover {
        h.deliver();
    }
    request.exchange.finish();
}

/// The transport's log lines.
#[derive(Default)]
pub struct Log(Mutex<Vec<(LogLevel, String)>>);

impl Log {
    pub fn lines(&self, level: LogLevel) -> Vec<String> {
        let lines = self.0.lock();
        lines
            .iter()
            .filter(|(l, _)| *l == level)
            .map(|(_, m)| m.clone())
            .collect()
    }
}

impl Report for Log {
    fn log(&self, level: LogLevel, message: String) {
        self.0.lock().push((level, message));
    }

    fn drained(&self) {}
}

/// One worker's HTTP layer with a stub app; connections are served as the accept loop
/// serves them.
pub struct Harness {
    pub http: Arc<Http>,
    pub stub: Arc<Stub>,
    pub log: Arc<Log>,
    protocol: Arc<HttpProtocol>,
}

impl Harness {
    pub fn new(reply: Reply, configure: impl FnOnce(&mut CoreConfig)) -> Self {
        let log = Arc::new(Log::default());
        let stub = Arc::new(Stub::new(reply));
        let config = config(configure);
        let registry = Registry::new(log.clone(), config.max_requests);
        // Built as `interface::server` builds it for a worker.
        let http = Arc::new(Http {
            config,
            registry,
            dispatch: stub.clone(),
            inflight: Arc::default(),
            lag: Arc::new(LoopLag::new()),
            metrics: None,
        });
        let protocol = Arc::new(HttpProtocol::new(http.clone()));
        Self {
            http,
            stub,
            log,
            protocol,
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.http.registry
    }

    /// A new connection from 127.0.0.1, served on a task of its own.
    pub fn connect(&self) -> Client {
        let (client, server) = tokio::io::duplex(1 << 20);
        let info = Arc::new(ConnInfo {
            client: Some(("127.0.0.1".into(), 40000)),
            server: ServerAddr::Tcp("127.0.0.1".into(), 8000),
            derived: OnceLock::new(),
            refused: AtomicBool::new(false),
            write_timed_out: Default::default(),
            secure: AtomicBool::new(false),
            alpn_h2: AtomicBool::new(false),
        });
        let registry = self.registry();
        let served = tokio::spawn(self.protocol.clone().serve(
            server,
            info.clone(),
            registry.subscribe(),
            registry.connection(),
        ));
        Client {
            io: client,
            buf: Vec::new(),
            info,
            served,
        }
    }

    pub fn drain(&self) {
        self.registry().set_phase(Phase::Draining);
    }
}

/// The client's end of a connection.
pub struct Client {
    pub io: DuplexStream,
    /// Read but not yet parsed.
    buf: Vec<u8>,
    pub info: Arc<ConnInfo>,
    /// The connection's task: done once the server is done with the connection.
    pub served: JoinHandle<()>,
}

/// A response as it came over HTTP/1.1.
#[derive(Debug)]
pub struct RawResponse {
    pub version: String,
    pub status: u16,
    /// Names lowercased, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("a text body")
    }
}

impl Client {
    pub async fn send(&mut self, raw: &[u8]) {
        self.io
            .write_all(raw)
            .await
            .expect("the server end is open");
    }

    /// Sends a request and reads its response (without a body for a HEAD request).
    pub async fn request(&mut self, raw: &[u8]) -> RawResponse {
        self.send(raw).await;
        self.read_response(raw.starts_with(b"HEAD ")).await
    }

    pub async fn response(&mut self) -> RawResponse {
        self.read_response(false).await
    }

    async fn read_response(&mut self, head_request: bool) -> RawResponse {
        tokio::time::timeout(PATIENCE, self.parse_response(head_request))
            .await
            .expect("a response in time")
    }

    /// Everything the server still sends until it closes the connection.
    pub async fn until_closed(&mut self) -> Vec<u8> {
        let read = async {
            while self.fill().await > 0 {}
            std::mem::take(&mut self.buf)
        };
        tokio::time::timeout(PATIENCE, read)
            .await
            .expect("the server closes the connection")
    }

    /// Exactly `n` bytes, read or already buffered.
    pub async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let read = async {
            while self.buf.len() < n {
                assert!(self.fill().await > 0, "closed after {:?}", self.buf);
            }
            self.buf.drain(..n).collect::<Vec<u8>>()
        };
        tokio::time::timeout(PATIENCE, read)
            .await
            .expect("bytes in time")
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 8192];
        let n = self.io.read(&mut chunk).await.unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return String::from_utf8_lossy(&line[..i]).into_owned();
            }
            assert!(self.fill().await > 0, "closed mid-line: {:?}", self.buf);
        }
    }

    async fn parse_response(&mut self, head_request: bool) -> RawResponse {
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            assert!(
                self.fill().await > 0,
                "closed before a response head: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        let head: Vec<u8> = self.buf.drain(..end + 4).collect();
        let head = String::from_utf8(head[..end].to_vec()).expect("an ASCII head");
        let mut lines = head.split("\r\n");
        let mut status_line = lines.next().expect("a status line").splitn(3, ' ');
        let version = status_line.next().expect("a version").to_owned();
        let status = status_line
            .next()
            .and_then(|s| s.parse().ok())
            .expect("a status code");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut response = RawResponse {
            version,
            status,
            headers,
            body: Vec::new(),
        };
        if head_request || status < 200 || status == 204 || status == 304 {
            return response;
        }
        if let Some(len) = response.header("content-length") {
            let len: usize = len.parse().expect("a numeric Content-Length");
            response.body = self.read_exact(len).await;
        } else if response.header("transfer-encoding") == Some("chunked") {
            loop {
                let size = self.line().await;
                let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
                let chunk = self.read_exact(size + 2).await;
                if size == 0 {
                    break;
                }
                response.body.extend_from_slice(&chunk[..size]);
            }
        } else {
            response.body = self.until_closed().await;
        }
        response
    }

    /// Speaks HTTP/2 with prior knowledge (h2c) from here on, with hyper's client.
    pub async fn http2(self) -> H2 {
        let io = TokioIo::new(self.io);
        let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .expect("the client's side of the handshake");
        // Detached: it ends with the connection.
        tokio::spawn(conn);
        H2 { send }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// An HTTP/2 client over a harness connection.
pub struct H2 {
    pub send: hyper::client::conn::http2::SendRequest<NoBody>,
}

impl H2 {
    /// A GET with these extra headers: the status, the version and the body, or hyper's
    /// error when the server would not serve it.
    pub async fn get(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> hyper::Result<(StatusCode, Version, Vec<u8>)> {
        let mut request = http::Request::builder().uri(format!("http://t{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(NoBody).expect("a valid request");
        let exchange = async {
            let response = self.send.send_request(request).await?;
            let (parts, body) = response.into_parts();
            Ok((parts.status, parts.version, collect(body).await?))
        };
        tokio::time::timeout(PATIENCE, exchange)
            .await
            .expect("an answer in time")
    }
}

/// A request without a body, for hyper's client.
pub struct NoBody;

impl Body for NoBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        true
    }
}

async fn collect(mut body: Incoming) -> hyper::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if let Ok(data) = frame?.into_data() {
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// Wakes a test waiting for a WebSocket session (an `AppWaker` parked on it).
#[derive(Default)]
pub struct Wakeup(pub Notify);

impl AppWaker for Wakeup {
    fn wake(self: Arc<Self>) {
        self.0.notify_one();
    }
}

/// The next event of a session, waiting for it as an app's `receive()` does.
pub async fn next_event(session: &Session) -> crate::ws::Event {
    let wait = async {
        let wakeup = Arc::new(Wakeup::default());
        loop {
            let (event, wake) = session.next_event();
            if let Some(w) = wake {
                w.wake();
            }
            if let Some(event) = event {
                return event;
            }
            if session.park(crate::ws::session::Want::Event, wakeup.clone()) {
                wakeup.0.notified().await;
            }
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .expect("a websocket event in time")
}

/// The whole request body, read as an app's `receive()` loop reads it.
pub async fn read_body(request: &NewRequest) -> Vec<u8> {
    use crate::http::exchange::{Received, Want};
    let read = async {
        let wakeup = Arc::new(Wakeup::default());
        let mut body = Vec::new();
        loop {
            match request.exchange.next_received() {
                Some(Received::Body { data, more }) => {
                    body.extend_from_slice(&data);
                    if !more {
                        return body;
                    }
                }
                Some(Received::Disconnect) => panic!("disconnected after {body:?}"),
                None => {
                    if request.exchange.park(Want::Body, wakeup.clone()) {
                        wakeup.0.notified().await;
                    }
                }
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("the body in time")
}
