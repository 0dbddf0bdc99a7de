//! The one accept loop: plain HTTP or TLS connections, served by hyper, each bounded in time
//! and in number, until shutdown.

use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tracing::{debug, warn};

use crate::metrics::EndpointMetrics;

/// How long and how many connections the endpoint keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at most; a connection beyond is closed as soon as it is accepted.
    pub max_connections: usize,
    /// A client has this long from the first byte of a request head to its end.
    pub header_read_timeout: Duration,
    /// A connection that sends nothing between requests for this long is closed.
    pub idle_timeout: Duration,
    /// A client that reads none of its response for this long loses the connection.
    pub write_timeout: Duration,
    /// A TLS client has this long to finish its handshake.
    pub tls_handshake_timeout: Duration,
    /// After shutdown, requests in flight get this long before their connections are dropped.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            write_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Warnings about refused connections come at most this often, with the count since the last.
const REFUSAL_WARNING_EVERY: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` resolves. With `tls`, every connection must
/// complete a TLS handshake first; plain HTTP is refused. Plain and TLS connections share this
/// one loop, so the limits apply to both alike.
///
/// Shutdown stops accepting, lets each connection finish the request it is answering and
/// closes idle ones; whatever is still open after the grace period is dropped, so no client
/// can keep the process alive.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: Limits,
    endpoint: Arc<EndpointMetrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (_fixed, served) = watch::channel(Served { router, tls });
    serve_reloading(listener, served, limits, endpoint, shutdown).await;
}

/// What a new connection is served with: the routes (with the web config's authentication
/// and headers) and, for HTTPS, the TLS configuration.
#[derive(Clone)]
pub struct Served {
    pub router: Router,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// As [`serve`], each new connection taking what `served` holds when it is accepted: a
/// reloaded web config applies to new connections, open ones keep theirs.
pub async fn serve_reloading(
    listener: TcpListener,
    served: watch::Receiver<Served>,
    limits: Limits,
    endpoint: Arc<EndpointMetrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop, stopped) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut refusals = Refusals::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning, as
                // axum::serve does. A peer that hung up before accept is not worth a pause.
                if !matches!(
                    error.kind(),
                    ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
                ) {
                    warn!(error = %error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Closing at once frees the descriptor; the client sees a closed connection.
            drop(stream);
            endpoint.connection_refused();
            refusals.count(limits.max_connections);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Served { router, tls } = served.borrow().clone();
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let stopped = stopped.clone();
        connections.spawn(async move {
            serve_connection(acceptor, stream, peer, router, limits, stopped).await;
            drop(slot);
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        debug!(
            connections = connections.len(),
            "dropping connections still open after the shutdown grace period"
        );
        connections.shutdown().await;
    }
}

/// Refused connections since the last warning, so a flood logs a line every few seconds.
#[derive(Debug, Default)]
struct Refusals {
    since_warning: u64,
    last_warning: Option<Instant>,
}

impl Refusals {
    fn count(&mut self, limit: usize) {
        self.since_warning += 1;
        let due = self
            .last_warning
            .is_none_or(|at| at.elapsed() >= REFUSAL_WARNING_EVERY);
        if due {
            warn!(
                refused = self.since_warning,
                limit,
                "too many open connections; closing new ones (FLEXCLOUD_WEB_MAX_CONNECTIONS)"
            );
            self.since_warning = 0;
            self.last_warning = Some(Instant::now());
        }
    }
}

async fn serve_connection(
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    mut stopped: watch::Receiver<bool>,
) {
    let Some(acceptor) = acceptor else {
        serve_http(stream, Some(peer), router, limits, stopped).await;
        return;
    };
    // A client that connects and never finishes the handshake (or speaks plain HTTP) must not
    // hold the task; a failed handshake just closes the connection, as a TLS server does.
    let handshake = tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream));
    let tls = tokio::select! {
        done = handshake => match done {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                debug!(error = %error, "TLS handshake failed");
                return;
            }
            Err(_) => return,
        },
        () = until_stopped(&mut stopped) => return,
    };
    serve_http(tls, Some(peer), router, limits, stopped).await;
}

/// The client's address, in every request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// HTTP/1.1 on one connection, plain or inside TLS, until it closes, a limit ends it, or the
/// server stops.
pub(super) async fn serve_http<IO>(
    io: IO,
    peer: Option<SocketAddr>,
    router: Router,
    limits: Limits,
    mut stopped: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let watch = Arc::new(HeadWatch::default());
    let io = Watched {
        io,
        watch: watch.clone(),
        write_timeout: limits.write_timeout,
        write_stall: None,
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(HeadTimer {
            watch,
            head: limits.header_read_timeout,
            idle: limits.idle_timeout,
        })
        // hyper's own deadline is replaced by HeadTimer's; any value turns the timer on.
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(
            TokioIo::new(io),
            TowerToHyperService::new(tower::ServiceExt::map_request(
                router,
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    if let Some(peer) = peer {
                        request.extensions_mut().insert(PeerAddr(peer));
                    }
                    request
                },
            )),
        );
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = until_stopped(&mut stopped) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Resolves once the server stops (the guard `wait_for` returns is not `Send`, so it is
/// dropped here rather than held across the connection's await).
async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// What one connection's reads tell the head timer: whether bytes came in since hyper began
/// to wait for the next request head.
#[derive(Debug, Default)]
struct HeadWatch {
    state: Mutex<WatchState>,
}

#[derive(Debug, Default)]
struct WatchState {
    /// Which wait is current; a wait that was replaced must not clear its successor.
    wait: u64,
    waiting: bool,
    first_byte: Option<Instant>,
    waker: Option<Waker>,
}

impl HeadWatch {
    fn lock(&self) -> std::sync::MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn begin_wait(&self) -> u64 {
        let mut state = self.lock();
        state.wait += 1;
        state.waiting = true;
        state.first_byte = None;
        state.waker = None;
        state.wait
    }

    fn end_wait(&self, wait: u64) {
        let mut state = self.lock();
        if state.wait == wait {
            state.waiting = false;
            state.waker = None;
        }
    }

    fn bytes_arrived(&self) {
        let mut state = self.lock();
        if state.waiting && state.first_byte.is_none() {
            state.first_byte = Some(Instant::now());
            if let Some(waker) = state.waker.take() {
                waker.wake();
            }
        }
    }

    /// When the current wait's first byte came, registering `waker` for it if none yet.
    fn first_byte(&self, wait: u64, waker: &Waker) -> Option<Instant> {
        let mut state = self.lock();
        if state.wait != wait {
            return None;
        }
        if state.first_byte.is_none() {
            state.waker = Some(waker.clone());
        }
        state.first_byte
    }
}

/// hyper's header-read timer, made to tell an idle keep-alive connection from a slow request:
/// hyper starts it whenever it waits for a request head, so on its own one deadline would
/// either close idle scrapers' connections early or leave a half-sent head hanging for minutes.
#[derive(Debug, Clone)]
struct HeadTimer {
    watch: Arc<HeadWatch>,
    head: Duration,
    idle: Duration,
}

impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, _duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.wait()
    }

    fn sleep_until(&self, _deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.wait()
    }
}

impl HeadTimer {
    fn wait(&self) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let now = Instant::now();
        Box::pin(HeadSleep {
            wait: self.watch.begin_wait(),
            watch: self.watch.clone(),
            started: now,
            head: self.head,
            idle: self.idle,
            sleep: Box::pin(tokio::time::sleep_until(now + self.idle)),
        })
    }
}

/// Ends `head` after the first byte of a request head, or `idle` after the wait began when no
/// byte comes.
struct HeadSleep {
    wait: u64,
    watch: Arc<HeadWatch>,
    started: Instant,
    head: Duration,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let deadline = match self.watch.first_byte(self.wait, cx.waker()) {
                Some(first) => first + self.head,
                None => self.started + self.idle,
            };
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            self.sleep.as_mut().reset(deadline);
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl hyper::rt::Sleep for HeadSleep {}

impl Drop for HeadSleep {
    fn drop(&mut self) {
        self.watch.end_wait(self.wait);
    }
}

/// The connection's byte stream, telling the head watch about reads and ending writes that
/// make no progress for the write timeout.
struct Watched<IO> {
    io: IO,
    watch: Arc<HeadWatch>,
    write_timeout: Duration,
    /// Running while a write waits on a client that does not read.
    write_stall: Option<Pin<Box<Sleep>>>,
}

impl<IO: Unpin> Watched<IO> {
    /// Passes a write-side result through, turning a wait longer than the write timeout into
    /// an error that ends the connection. Only a write that moved bytes ends a stall: a
    /// flush that has nothing to do says nothing about a write still waiting on the client.
    fn bound<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<std::io::Result<T>>,
        progressed: impl FnOnce(&T) -> bool,
    ) -> Poll<std::io::Result<T>> {
        match &result {
            Poll::Ready(Ok(value)) => {
                if progressed(value) {
                    self.write_stall = None;
                }
                return result;
            }
            Poll::Ready(Err(_)) => return result,
            Poll::Pending => {}
        }
        let timeout = self.write_timeout;
        let stall = self
            .write_stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if stall.as_mut().poll(cx).is_ready() {
            self.write_stall = None;
            return Poll::Ready(Err(std::io::Error::new(
                ErrorKind::TimedOut,
                "the client read none of the response within the write timeout",
            )));
        }
        Poll::Pending
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.watch.bytes_arrived();
        }
        result
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        this.bound(cx, result, |n| *n > 0)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_flush(cx);
        this.bound(cx, result, |()| false)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_shutdown(cx);
        this.bound(cx, result, |()| false)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.bound(cx, result, |n| *n > 0)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::time::advance;

    use super::*;

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    fn router() -> Router {
        Router::new()
            .route("/", get(|| async { "hello" }))
            .route("/big", get(|| async { "x".repeat(1 << 20) }))
    }

    /// One connection served over an in-memory pipe of `buffer` bytes, with the default
    /// limits; the server end runs until it closes.
    fn connect(
        buffer: usize,
    ) -> (
        DuplexStream,
        tokio::task::JoinHandle<()>,
        watch::Sender<bool>,
    ) {
        let (client, server) = tokio::io::duplex(buffer);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve_http(
            server,
            None,
            router(),
            Limits::default(),
            stopped,
        ));
        (client, task, stop)
    }

    /// Reads one whole response (the handlers' bodies have a Content-Length).
    async fn response(client: &mut DuplexStream) -> String {
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = client.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before a whole response");
            seen.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&seen).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap();
                if body.len() >= length {
                    return text;
                }
            }
        }
    }

    /// Lets the server's task run on what the client just did, as it would at once on a real
    /// connection, before the test moves the clock.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    /// Whether the server has closed its end: a read returns end of file.
    async fn closed(client: &mut DuplexStream) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_millis(1), client.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_half_sent_head_is_dropped_ten_seconds_after_its_first_byte() {
        let (mut client, task, _stop) = connect(64 * 1024);
        // Idle first: the head timer has not started yet.
        advance(Duration::from_secs(60)).await;
        client.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        settle().await;
        advance(Duration::from_secs(9)).await;
        assert!(!closed(&mut client).await, "closed before the head timeout");
        advance(Duration::from_secs(2)).await;
        assert!(
            closed(&mut client).await,
            "a half-sent head kept its connection"
        );
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_keep_alive_connection_lives_until_the_idle_timeout() {
        let (mut client, task, _stop) = connect(64 * 1024);
        client.write_all(GET).await.unwrap();
        assert!(response(&mut client).await.ends_with("hello"));
        // Longer than the head timeout, shorter than the idle timeout: still open, and
        // still answering.
        advance(Duration::from_secs(100)).await;
        assert!(!closed(&mut client).await);
        client.write_all(GET).await.unwrap();
        assert!(response(&mut client).await.ends_with("hello"));
        advance(Duration::from_secs(119)).await;
        assert!(!closed(&mut client).await);
        advance(Duration::from_secs(2)).await;
        assert!(closed(&mut client).await, "idle past the idle timeout");
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_reads_no_response_is_dropped_after_the_write_timeout() {
        let (mut client, task, _stop) = connect(4 * 1024);
        client
            .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        settle().await;
        advance(Duration::from_secs(29)).await;
        assert!(!task.is_finished());
        advance(Duration::from_secs(2)).await;
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("the connection ends")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_closes_an_idle_connection_at_once() {
        let (mut client, task, stop) = connect(64 * 1024);
        client.write_all(GET).await.unwrap();
        assert!(response(&mut client).await.ends_with("hello"));
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("an idle connection ends with the server")
            .unwrap();
    }
}
