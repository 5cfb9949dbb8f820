//! Dashboard connections: who is on the other end ([`Peer`]), and a cap on how long any one
//! connection may live ([`CappedListener`]).
//!
//! axum's `serve` gives hyper no timer, so hyper's header-read timeout is off: a client that
//! sends one header byte a minute would hold its connection forever. Capping the life of every
//! connection bounds that (and idle keep-alives) without touching the request path; the page
//! refreshes itself far less often than the cap, and browsers simply reconnect.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

/// How long one connection may stay open, whatever it does.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// The client's address, as the dashboard's security guard reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, CappedListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, CappedListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// A TCP listener whose connections close themselves after [`CONNECTION_LIFETIME`].
pub struct CappedListener {
    inner: TcpListener,
}

impl CappedListener {
    pub fn new(inner: TcpListener) -> Self {
        Self { inner }
    }
}

impl Listener for CappedListener {
    type Io = Capped<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // axum's own accept loop for TcpListener already retries transient errors (EMFILE…).
        let (stream, addr) = Listener::accept(&mut self.inner).await;
        (Capped::new(stream, CONNECTION_LIFETIME), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A stream that fails every read and write once its deadline has passed, so hyper drops it.
pub struct Capped<S> {
    inner: S,
    deadline: Pin<Box<Sleep>>,
}

impl<S> Capped<S> {
    fn new(inner: S, lifetime: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(lifetime)),
        }
    }

    /// Polling the deadline also registers the waker, so a read blocked on a silent client
    /// is woken and failed when the time is up.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn expired_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "dashboard connection lifetime over",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Capped<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.expired(cx) {
            return Poll::Ready(Err(expired_error()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Capped<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.expired(cx) {
            return Poll::Ready(Err(expired_error()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
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
    use tokio::io::AsyncReadExt;

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_failed_at_its_deadline() {
        let (client, server) = tokio::io::duplex(64);
        let mut capped = Capped::new(server, Duration::from_secs(30));
        let mut buf = [0u8; 8];
        let started = tokio::time::Instant::now();
        let err = capped.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn a_live_connection_reads_normally_before_the_deadline() {
        use tokio::io::AsyncWriteExt;
        let (mut client, server) = tokio::io::duplex(64);
        let mut capped = Capped::new(server, Duration::from_secs(30));
        client.write_all(b"GET /").await.unwrap();
        let mut buf = [0u8; 5];
        capped.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"GET /");
    }
}
