//! Shared harness of the client's integration tests.
//!
//! * [`Server`]: a real HTTP/1.1 server (hyper) on `127.0.0.1:0`, started by the test,
//!   with scripted replies per path ("503 twice, then 200"), a hit counter per path, the
//!   requests it received, and replies that hang, reset the connection or wait for a
//!   [`Gate`] the test opens. It can also speak TLS, or run on a runtime of its own
//!   thread for the blocking client.
//! * [`test_client`]: a client builder on a [`ManualClock`] with small, deterministic
//!   retry delays and an event recorder, and [`drive`], which runs a request while
//!   advancing the clock by exactly each announced retry delay.
//! * [`bounded`]: a real-time safety net so that a broken test fails instead of hanging.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use httpower::core::clock::ManualClock;
use httpower::core::retry::{Jitter, RetryPolicy};
use httpower::{ClientBuilder, ClientEvent};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// The delay between retries of [`test_client`]: exact (no jitter).
pub const RETRY_DELAY: Duration = Duration::from_millis(100);

/// Longest real time any awaited step of a test may take.
pub const SAFETY: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test if it takes longer than [`SAFETY`] in real time.
pub async fn bounded<F: Future>(fut: F) -> F::Output {
    match tokio::time::timeout(SAFETY, fut).await {
        Ok(out) => out,
        Err(_) => panic!("test step did not finish within {SAFETY:?}"),
    }
}

/// A gate a reply can wait on: closed until the test opens it.
#[derive(Clone)]
pub struct Gate {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

impl Gate {
    pub fn new() -> Self {
        Gate {
            tx: Arc::new(watch::channel(false).0),
        }
    }

    pub fn open(&self) {
        self.tx.send_replace(true);
    }

    async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|open| *open).await;
    }
}

#[derive(Clone)]
enum Action {
    Respond,
    /// Never answer (until the client gives up on the connection).
    Hang,
    /// Close the connection without an answer.
    Reset,
}

/// One scripted reply.
#[derive(Clone)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
    action: Action,
    /// Acts only once this gate is open.
    gate: Option<Gate>,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            action: Action::Respond,
            gate: None,
        }
    }

    pub fn ok(body: &str) -> Self {
        Reply::status(200).body(body.to_owned())
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Never answers.
    pub fn hang() -> Self {
        Reply {
            action: Action::Hang,
            ..Reply::status(200)
        }
    }

    /// Closes the connection after reading the request, without answering.
    pub fn reset() -> Self {
        Reply {
            action: Action::Reset,
            ..Reply::status(200)
        }
    }

    /// Answers (or resets) only once `gate` is open.
    pub fn after(mut self, gate: &Gate) -> Self {
        self.gate = Some(gate.clone());
        self
    }
}

type DynamicReply = Arc<dyn Fn(usize) -> Reply + Send + Sync>;

enum Script {
    /// Given in order; the last one repeats.
    Fixed(Vec<Reply>),
    /// Computed at answer time from the hit number (1 for the first).
    Dynamic(DynamicReply),
}

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Default)]
struct Route {
    script: Option<Script>,
    /// Hits before the current script was set: a new script starts from its first reply.
    offset: usize,
    hits: usize,
    requests: Vec<Recorded>,
}

struct State {
    routes: Mutex<HashMap<String, Route>>,
    /// Bumped on every hit, to wake tests waiting for one.
    changed: watch::Sender<u64>,
}

impl State {
    /// Records the request and picks its reply.
    fn hit(&self, recorded: Recorded) -> Reply {
        let mut routes = self.routes.lock();
        let route = routes.entry(recorded.path.clone()).or_default();
        route.hits += 1;
        let hit = route.hits - route.offset;
        route.requests.push(recorded);
        let reply = match &route.script {
            None => Reply::status(404).body("no such route"),
            Some(Script::Fixed(replies)) => replies
                .get((hit - 1).min(replies.len().saturating_sub(1)))
                .cloned()
                .unwrap_or_else(|| Reply::status(404)),
            Some(Script::Dynamic(f)) => f(hit),
        };
        drop(routes);
        self.changed.send_modify(|n| *n += 1);
        reply
    }
}

/// A local HTTP server for one test.
pub struct Server {
    addr: SocketAddr,
    scheme: &'static str,
    state: Arc<State>,
    task: tokio::task::AbortHandle,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Service = Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>>;

async fn answer(state: Arc<State>, request: Request<Incoming>) -> Service {
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let reply = state.hit(Recorded {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
    });
    if let Some(gate) = &reply.gate {
        gate.wait().await;
    }
    match &reply.action {
        Action::Respond => {}
        Action::Hang => std::future::pending::<()>().await,
        Action::Reset => return Err("scripted connection reset".into()),
    }
    let mut response = Response::new(Full::new(reply.body.clone()));
    *response.status_mut() = StatusCode::from_u16(reply.status)?;
    for (name, value) in &reply.headers {
        response.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes())?,
            http::HeaderValue::from_str(value)?,
        );
    }
    Ok(response)
}

async fn serve_io<IO>(state: Arc<State>, io: IO)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| answer(Arc::clone(&state), request));
    // A reset or a client that went away ends the connection with an error: expected.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

impl Server {
    /// Starts a plain HTTP server on the current runtime.
    pub async fn start() -> Server {
        Server::start_with(None).await
    }

    /// Starts an HTTPS server on the current runtime.
    pub async fn start_tls(acceptor: tokio_rustls::TlsAcceptor) -> Server {
        Server::start_with(Some(acceptor)).await
    }

    /// Starts a plain HTTP server on a given port of 127.0.0.1 (one that was free).
    pub async fn start_on(port: u16) -> Server {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        Server::serve(listener, None)
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Server::serve(listener, tls)
    }

    fn serve(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) -> Server {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            routes: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
        });
        let accept_state = Arc::clone(&state);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let task = tokio::spawn(async move {
            // Aborting the accept loop drops the set, which aborts every connection.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&accept_state);
                let tls = tls.clone();
                connections.spawn(async move {
                    match tls {
                        None => serve_io(state, stream).await,
                        Some(acceptor) => {
                            // A failed handshake (the client refused the certificate)
                            // never becomes a request.
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve_io(state, stream).await;
                            }
                        }
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        })
        .abort_handle();
        Server {
            addr,
            scheme,
            state,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `host:port`, the client's default breaker and limiter key.
    pub fn host_key(&self) -> String {
        format!("127.0.0.1:{}", self.addr.port())
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}{path}", self.scheme, self.addr.port())
    }

    /// Scripts `path`: replies in order, the last one repeating.
    pub fn script(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        let replies: Vec<Reply> = replies.into_iter().collect();
        assert!(!replies.is_empty(), "a script needs at least one reply");
        self.set_script(path, Script::Fixed(replies));
    }

    /// Scripts `path` with a reply computed at answer time from the hit number (from 1,
    /// counted from this call).
    pub fn script_fn(&self, path: &str, reply: impl Fn(usize) -> Reply + Send + Sync + 'static) {
        self.set_script(path, Script::Dynamic(Arc::new(reply)));
    }

    fn set_script(&self, path: &str, script: Script) {
        let mut routes = self.state.routes.lock();
        let route = routes.entry(path.to_owned()).or_default();
        route.offset = route.hits;
        route.script = Some(script);
    }

    /// Requests received on `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.state.routes.lock().get(path).map_or(0, |r| r.hits)
    }

    /// Requests received on every path.
    pub fn total_hits(&self) -> usize {
        self.state.routes.lock().values().map(|r| r.hits).sum()
    }

    /// The requests received on `path`, in order.
    pub fn requests(&self, path: &str) -> Vec<Recorded> {
        self.state
            .routes
            .lock()
            .get(path)
            .map(|r| r.requests.clone())
            .unwrap_or_default()
    }

    /// Waits until `path` has received at least `n` requests.
    pub async fn wait_hits(&self, path: &str, n: usize) {
        let mut rx = self.state.changed.subscribe();
        bounded(async {
            while self.hits(path) < n {
                rx.changed().await.unwrap();
            }
        })
        .await;
    }

    /// Asserts that `path` does not get past `n` hits while the test lets every other
    /// task run: the client is parked (on the manual clock), not merely slow.
    pub async fn assert_stays_at(&self, path: &str, n: usize) {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        let mut rx = self.state.changed.subscribe();
        let more = tokio::time::timeout(Duration::from_millis(50), async {
            while self.hits(path) <= n {
                rx.changed().await.unwrap();
            }
        })
        .await;
        assert!(more.is_err(), "{path} got a request it should not have yet");
        assert_eq!(self.hits(path), n);
    }
}

/// A server running on a runtime of its own thread (for the blocking client, which
/// must not be called from inside a runtime).
pub struct ThreadServer {
    server: Option<Server>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ThreadServer {
    pub fn start() -> ThreadServer {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let server = Server::start().await;
                ready_tx.send(server).ok().unwrap();
                let _ = shutdown_rx.await;
            });
        });
        let server = ready_rx
            .recv_timeout(SAFETY)
            .expect("server thread did not start");
        ThreadServer {
            server: Some(server),
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }
}

impl std::ops::Deref for ThreadServer {
    type Target = Server;
    fn deref(&self) -> &Server {
        self.server.as_ref().unwrap()
    }
}

impl Drop for ThreadServer {
    fn drop(&mut self) {
        drop(self.server.take());
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The events a client reported, in order.
pub struct Events {
    rx: mpsc::UnboundedReceiver<ClientEvent>,
    log: Arc<Mutex<Vec<ClientEvent>>>,
}

/// One retry as reported by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySeen {
    pub attempt: u32,
    pub reason: String,
    pub delay: Duration,
    pub from_retry_after: bool,
}

impl Events {
    /// Every event so far.
    pub fn all(&self) -> Vec<ClientEvent> {
        self.log.lock().clone()
    }

    /// How many events named `name` were reported.
    pub fn count(&self, name: &str) -> usize {
        self.log.lock().iter().filter(|e| e.name() == name).count()
    }

    /// The retries reported so far.
    pub fn retries(&self) -> Vec<RetrySeen> {
        self.log.lock().iter().filter_map(retry_seen).collect()
    }

    /// Waits for the next event of the stream (consumed by this call only).
    pub async fn next(&mut self) -> ClientEvent {
        bounded(self.rx.recv()).await.expect("event channel closed")
    }

    /// Waits until `n` events named `name` have been reported in all.
    pub async fn wait_count(&mut self, name: &str, n: usize) {
        while self.count(name) < n {
            self.next().await;
        }
    }

    /// Waits for the next retry event.
    pub async fn next_retry(&mut self) -> RetrySeen {
        loop {
            if let Some(retry) = retry_seen(&self.next().await) {
                return retry;
            }
        }
    }
}

fn retry_seen(event: &ClientEvent) -> Option<RetrySeen> {
    match event {
        ClientEvent::Retry {
            attempt,
            reason,
            delay,
            from_retry_after,
            ..
        } => Some(RetrySeen {
            attempt: *attempt,
            reason: reason.to_string(),
            delay: *delay,
            from_retry_after: *from_retry_after,
        }),
        _ => None,
    }
}

/// A retry policy with exact delays of [`RETRY_DELAY`] and its budget on `clock`.
pub fn fast_retry(clock: &ManualClock) -> RetryPolicy {
    RetryPolicy::builder()
        .base_delay(RETRY_DELAY)
        .max_delay(RETRY_DELAY)
        .jitter(Jitter::None)
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// Adds an event recorder to `builder`.
pub fn record_events(builder: ClientBuilder) -> (ClientBuilder, Events) {
    let (tx, rx) = mpsc::unbounded_channel();
    let log = Arc::new(Mutex::new(Vec::new()));
    let hook_log = Arc::clone(&log);
    let builder = builder.on_event(move |event| {
        hook_log.lock().push(event.clone());
        let _ = tx.send(event.clone());
    });
    (builder, Events { rx, log })
}

/// A client builder on `clock`, with [`fast_retry`] and an event recorder. Everything
/// else is the client's default.
pub fn test_client(clock: &ManualClock) -> (ClientBuilder, Events) {
    record_events(
        httpower::Client::builder()
            .clock(clock.clone())
            .retry(fast_retry(clock)),
    )
}

/// Runs `fut` to completion, advancing `clock` by exactly the delay of each retry the
/// client announces (the announcement comes just before the client starts that wait).
pub async fn drive<F: Future>(clock: &ManualClock, events: &mut Events, fut: F) -> F::Output {
    bounded(async {
        let mut fut = std::pin::pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => return out,
                Some(event) = events.rx.recv() => {
                    if let Some(retry) = retry_seen(&event) {
                        clock.advance(retry.delay);
                    }
                }
            }
        }
    })
    .await
}

/// A port nothing listens on (bound, then released).
pub async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    port
}

impl Server {
    /// Starts a plain HTTP server on a free port of `ip` (another loopback address such
    /// as `127.0.0.2`, for tests that need two distinct hosts).
    pub async fn start_at(ip: std::net::IpAddr) -> Server {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        Server::serve(listener, None)
    }

    /// The absolute URL of `path` on the address the server listens on (the URL of a
    /// server started with [`Server::start_at`]).
    pub fn url_at_addr(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }
}
