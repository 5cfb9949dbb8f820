//! HTTP connections of the dashboard and the peer API: who is on the other end ([`Peer`]), and
//! what any one connection may hold ([`CappedListener`]).
//!
//! axum's `serve` gives hyper no timer, so hyper's header-read timeout is off: a client that
//! sends one header byte a minute would hold its connection forever. Here every connection
//! lives under the listener's [`Limiter`] (a cap in all and per source; the quietest connection
//! is closed to make room) and under [`Timeouts`], enforced on the stream itself:
//!
//! | the connection                                  | then |
//! |-------------------------------------------------|------|
//! | moved no byte either way for `idle`             | reads and writes fail: hyper drops it |
//! | sent no response for `request` (since it connected or since the previous one) and waits for the client | reads fail |
//! | is the quietest when the listener is full       | reads and writes fail |
//!
//! `request` is what hyper's header-read timeout would be: a client trickling one header byte
//! within every `idle` still has to finish its request in time. A response resets it, so a
//! keep-alive connection in use is never cut between two requests of a busy client (the peer
//! pulls every 100 ms–60 s); an idle one is closed after `idle`, and the pull client lets go of
//! its idle connections before that (`cluster::pull`), so a request never meets a closing
//! connection. Browsers and the other agents simply reconnect.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::connections::{self, Limiter, Slot};

/// How long an HTTP connection may be silent, and how long it may live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// No byte read or written for this long: closed (covers slow headers and idle keep-alives).
    pub idle: Duration,
    /// No response for this long and waiting for the client: closed (a trickle of bytes, each
    /// within `idle`, cannot hold a connection longer than this without finishing a request).
    pub request: Duration,
}

/// The dashboard: a page that refreshes itself, JSON and metrics; all answered at once.
pub const DASHBOARD_TIMEOUTS: Timeouts = Timeouts {
    idle: Duration::from_secs(5),
    request: Duration::from_secs(10),
};

/// The peer API: one small signed request per pull.
pub const PEER_API_TIMEOUTS: Timeouts = Timeouts {
    idle: Duration::from_secs(5),
    request: Duration::from_secs(10),
};

/// The client's address, as the dashboard's security guard reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, CappedListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, CappedListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// A TCP listener whose connections stay within a [`Limiter`] and [`Timeouts`].
pub struct CappedListener {
    inner: TcpListener,
    limiter: Arc<Limiter>,
    timeouts: Timeouts,
    failure: ListenerFailure,
}

impl CappedListener {
    pub fn new(inner: TcpListener, limiter: Arc<Limiter>, timeouts: Timeouts) -> Self {
        Self {
            inner,
            limiter,
            timeouts,
            failure: ListenerFailure::default(),
        }
    }

    /// Where the server learns that this listener broke (see [`ListenerFailure`]).
    pub fn failure(&self) -> ListenerFailure {
        self.failure.clone()
    }
}

/// A listener that can never accept again (EBADF, EINVAL: closed or no longer listening, e.g.
/// destroyed by the kernel). axum's `accept` cannot return an error, so the listener records
/// it here and stops accepting; the server stops with it (`until`) and returns the error
/// (`result`), so that its task fails and the agent exits non-zero instead of serving nothing
/// while it looks alive.
#[derive(Debug, Clone, Default)]
pub struct ListenerFailure {
    failed: CancellationToken,
    error: Arc<Mutex<Option<io::Error>>>,
}

impl ListenerFailure {
    /// Completes at `shutdown` or when the listener failed: axum's graceful-shutdown signal.
    pub fn until(&self, shutdown: CancellationToken) -> impl Future<Output = ()> + Send + 'static {
        let failed = self.failed.clone();
        async move {
            tokio::select! {
                () = failed.cancelled() => {}
                () = shutdown.cancelled() => {}
            }
        }
    }

    /// The listener's error, if it failed.
    pub fn result(&self) -> io::Result<()> {
        match self.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn set(&self, error: io::Error) {
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
        self.failed.cancel();
    }
}

impl Listener for CappedListener {
    type Io = Capped<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // Backs off on EMFILE and the like; refused connections are closed inside.
        match connections::accept_admitted(&self.inner, &self.limiter).await {
            Ok((stream, addr, slot)) => (Capped::new(stream, self.timeouts, Some(slot)), addr),
            // Only a listener that cannot accept again gets here (`connections::accept` retries
            // what passes): stop accepting; the server stops through `failure`.
            Err(error) => {
                self.failure.set(error);
                std::future::pending().await
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A stream that fails once it has been silent too long, waited too long for a request, or
/// must make room.
pub struct Capped<S> {
    inner: S,
    timeouts: Timeouts,
    /// Reset on every byte moved.
    quiet: Pin<Box<Sleep>>,
    /// Reset on every byte written (a response).
    request_due: Pin<Box<Sleep>>,
    /// Completes when the limiter wants this connection's place.
    evicted: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    slot: Option<Slot>,
}

impl<S> Capped<S> {
    fn new(inner: S, timeouts: Timeouts, slot: Option<Slot>) -> Self {
        let now = Instant::now();
        Self {
            inner,
            timeouts,
            quiet: Box::pin(tokio::time::sleep_until(now + timeouts.idle)),
            request_due: Box::pin(tokio::time::sleep_until(now + timeouts.request)),
            evicted: slot
                .as_ref()
                .map(|s| Box::pin(s.close_token().cancelled_owned())),
            slot,
        }
    }

    fn progress(&mut self) {
        self.quiet
            .as_mut()
            .reset(Instant::now() + self.timeouts.idle);
        if let Some(slot) = &self.slot {
            slot.touch();
        }
    }

    /// Polling the timers and the eviction also registers the waker, so a read blocked on a
    /// silent client is woken and failed when the time is up.
    fn silent_or_evicted(&mut self, cx: &mut Context<'_>) -> bool {
        let quiet = self.quiet.as_mut().poll(cx).is_ready();
        let evicted = self
            .evicted
            .as_mut()
            .is_some_and(|e| e.as_mut().poll(cx).is_ready());
        quiet || evicted
    }

    fn request_overdue(&mut self, cx: &mut Context<'_>) -> bool {
        self.request_due.as_mut().poll(cx).is_ready()
    }
}

fn closed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "connection closed: silent too long, no request in time, or its place was needed",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Capped<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.progress();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let silent = self.silent_or_evicted(cx);
                if silent | self.request_overdue(cx) {
                    Poll::Ready(Err(closed_error()))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Capped<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.progress();
                    let due = Instant::now() + self.timeouts.request;
                    self.request_due.as_mut().reset(due);
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if self.silent_or_evicted(cx) => Poll::Ready(Err(closed_error())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const T: Timeouts = Timeouts {
        idle: Duration::from_secs(5),
        request: Duration::from_secs(10),
    };

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_failed_after_the_idle_timeout() {
        let (client, server) = tokio::io::duplex(64);
        let mut capped = Capped::new(server, T, None);
        let mut buf = [0u8; 8];
        let started = Instant::now();
        let err = capped.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_of_bytes_is_failed_when_no_request_completes_in_time() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut capped = Capped::new(server, T, None);
        let started = Instant::now();
        let trickle = tokio::spawn(async move {
            for _ in 0..30 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                if client.write_all(b"x").await.is_err() {
                    break;
                }
            }
        });
        let mut buf = [0u8; 8];
        let err = loop {
            match capped.read(&mut buf).await {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(10),
            "each byte came within idle"
        );
        trickle.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_answered_within_the_request_timeout_stays_open() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut capped = Capped::new(server, T, None);
        let started = Instant::now();
        let mut buf = [0u8; 8];
        // A request and its response every 3 s for 30 s: never silent 5 s, never 10 s
        // without a response.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            client.write_all(b"GET").await.unwrap();
            capped.read_exact(&mut buf[..3]).await.unwrap();
            capped.write_all(b"200").await.unwrap();
            client.read_exact(&mut buf[..3]).await.unwrap();
        }
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_live_connection_reads_normally() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut capped = Capped::new(server, T, None);
        client.write_all(b"GET /").await.unwrap();
        let mut buf = [0u8; 5];
        capped.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"GET /");
    }

    #[tokio::test(start_paused = true)]
    async fn an_evicted_connection_fails_its_pending_read() {
        use crate::connections::Cap;
        let limiter = Arc::new(Limiter::new(
            "test",
            Cap {
                total: 1,
                per_source: 1,
            },
        ));
        let ip = "127.0.0.1".parse().unwrap();
        let (_client, server) = tokio::io::duplex(64);
        let mut capped = Capped::new(server, T, limiter.admit(ip));
        let reading = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            capped.read(&mut buf).await
        });
        tokio::task::yield_now().await;
        let newer = limiter
            .admit(ip)
            .expect("the newer connection takes the place");
        let err = reading.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(newer);
    }
}
