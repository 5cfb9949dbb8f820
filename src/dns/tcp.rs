//! DNS over TCP: the accept loop and one task per connection, under the listener's
//! [`Limiter`](crate::connections::Limiter), answered by the same request handler as UDP.
//!
//! hickory-server's TCP path (`Server::register_listener`) has no cap on connections, spins on
//! `accept` errors such as EMFILE, and allocates the whole announced message (`vec![0; len]`,
//! 64 KiB for a 65,535 length prefix) before its first byte arrives. Here:
//!
//! | what                                   | bound |
//! |----------------------------------------|-------|
//! | connections                            | the limiter's cap, total and per source; the quietest connection closes first |
//! | time for one message (length + body)   | `MESSAGE_TIMEOUT` from the end of the previous exchange |
//! | time to write an answer                | `WRITE_TIMEOUT` (each message of a zone transfer, see `xfr`) |
//! | memory per message being read          | what has arrived (doubling from `INITIAL_BUFFER`), not what was announced |
//! | accept errors                          | back off (see `connections::accept`) |
//!
//! Queries on one connection are answered in order, one at a time (RFC 7766 allows it; an
//! answer takes microseconds). A message that is not a query (shorter than a header, or QR
//! set) closes the connection; one that does not parse gets FORMERR, as over UDP.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::udp::{Capture, counts_fit, question_points_into_header};
use super::{QueryHandler, Serves};
use crate::connections::{self, Limiter, Slot};

/// How long a client has to send its next whole message (length and body) after the previous
/// answer, or after connecting. Also the idle timeout: RFC 7766 suggests seconds, not minutes.
pub(super) const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client that does not read may keep an answer unsent.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Capacity first given to a message's buffer; it doubles as bytes arrive, up to the length.
const INITIAL_BUFFER: usize = 512;

/// Serves `listener` until `shutdown`; `Err` only if the listener itself fails.
pub(super) async fn serve<S: Serves>(
    listener: TcpListener,
    handler: Arc<QueryHandler<S>>,
    limiter: Arc<Limiter>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let mut connections = JoinSet::new();
    loop {
        let (stream, from, slot) = tokio::select! {
            accepted = connections::accept_admitted(&listener, &limiter) => accepted?,
            () = shutdown.cancelled() => break,
        };
        while connections.try_join_next().is_some() {}
        if from.port() == 0 || from.ip().is_unspecified() {
            continue; // nowhere to answer
        }
        let _ = stream.set_nodelay(true);
        let (handler, shutdown) = (handler.clone(), shutdown.clone());
        connections.spawn(async move {
            tokio::select! {
                () = connection(stream, from, &handler, &slot) => {}
                () = slot.closing() => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
    connections.shutdown().await;
    Ok(())
}

/// Answers the messages of one connection until it closes, falls silent or misbehaves.
pub(super) async fn connection<S: AsyncRead + AsyncWrite + Unpin, A: Serves>(
    mut stream: S,
    from: SocketAddr,
    handler: &QueryHandler<A>,
    slot: &Slot,
) {
    loop {
        let message = match tokio::time::timeout(MESSAGE_TIMEOUT, read_message(&mut stream)).await {
            Ok(Ok(Some(message))) => message,
            // Closed between messages, an error, a truncated message, or too slow.
            _ => return,
        };
        slot.touch();
        // Zone transfers and signed messages (`xfr`): several messages, each written in time.
        if let Some(messages) = handler.transfer(&message, from, true) {
            for message in messages {
                let Some(framed) = frame(message) else { return };
                match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&framed)).await {
                    Ok(Ok(())) => slot.touch(),
                    _ => return,
                }
            }
            continue;
        }
        let Some(answer) = answer(handler, message, from).await else {
            return;
        };
        match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&answer)).await {
            Ok(Ok(())) => slot.touch(),
            _ => return,
        }
    }
}

/// Reads one length-prefixed message; `None` when the client closed cleanly between messages.
/// The buffer grows with what arrives, so an announced 65,535 bytes cost nothing until sent.
pub(super) async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> io::Result<Option<Vec<u8>>> {
    let mut prefix = [0u8; 2];
    match stream.read(&mut prefix[..]).await? {
        0 => return Ok(None),
        1 => {
            stream.read_exact(&mut prefix[1..]).await?;
        }
        _ => {}
    }
    let len = usize::from(u16::from_be_bytes(prefix));
    let mut body = Vec::new();
    read_body(stream, len, &mut body).await?;
    Ok(Some(body))
}

/// Reads `len` bytes into `body`, growing it (from `INITIAL_BUFFER`, doubling) only as they
/// arrive: a client that announces 65,535 bytes and sends four costs `INITIAL_BUFFER`.
async fn read_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    len: usize,
    body: &mut Vec<u8>,
) -> io::Result<()> {
    body.reserve_exact(len.min(INITIAL_BUFFER));
    while body.len() < len {
        if body.len() == body.capacity() {
            body.reserve_exact((len - body.len()).min(body.capacity()));
        }
        let room = (body.capacity() - body.len()).min(len - body.len());
        let n = (&mut *stream).take(room as u64).read_buf(body).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// The framed answer to `message` (length prefix included); `None`: not a query, close.
pub(super) async fn answer<S: Serves>(
    handler: &QueryHandler<S>,
    message: Vec<u8>,
    from: SocketAddr,
) -> Option<Vec<u8>> {
    if message.len() < 12 || message[2] & 0x80 != 0 {
        return None;
    }
    let (id, op_code) = (
        u16::from_be_bytes([message[0], message[1]]),
        OpCode::from_u8((message[2] >> 3) & 0x0F),
    );
    let parsed = if counts_fit(&message) {
        Request::from_bytes(message, from, Protocol::Tcp).ok()
    } else {
        None
    };
    let request = match parsed {
        Some(request) if !question_points_into_header(&request) => request,
        _ => {
            // The header was readable: FORMERR, as hickory's server and our UDP path answer.
            let mut metadata = Metadata::new(id, MessageType::Response, op_code);
            metadata.response_code = ResponseCode::FormErr;
            return frame(header_only(metadata)?);
        }
    };
    let capture = Capture::for_tcp();
    handler
        .handle_request::<_, TokioTime>(&request, capture.clone())
        .await;
    let bytes = std::mem::take(&mut *capture.bytes.lock().ok()?);
    if bytes.is_empty() {
        return None;
    }
    frame(bytes)
}

fn header_only(metadata: Metadata) -> Option<Vec<u8>> {
    let header = Header {
        metadata,
        counts: HeaderCounts::default(),
    };
    let mut bytes = Vec::with_capacity(12);
    header.emit(&mut BinEncoder::new(&mut bytes)).ok()?;
    Some(bytes)
}

/// `bytes` behind their two-byte length.
fn frame(bytes: Vec<u8>) -> Option<Vec<u8>> {
    let len = u16::try_from(bytes.len()).ok()?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&bytes);
    Some(framed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_half_sent_message_holds_only_what_arrived() {
        let (mut client, mut server) = tokio::io::duplex(1 << 17);
        client.write_all(&[0xff, 0xff, 1, 2, 3, 4]).await.unwrap();
        let read = tokio::spawn(async move {
            let r = read_message(&mut server).await;
            (r.map(|m| m.map(|m| m.len())), server)
        });
        tokio::task::yield_now().await;
        drop(client);
        let (result, _) = read.await.unwrap();
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn messages_are_read_whole_whatever_the_chunks() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let big: Vec<u8> = (0..65_535u32).map(|i| i as u8).collect();
        let writer = {
            let big = big.clone();
            tokio::spawn(async move {
                // One byte of the length, then the rest in odd chunks, then a second message.
                client.write_all(&[0xff]).await.unwrap();
                client.write_all(&[0xff]).await.unwrap();
                for chunk in big.chunks(1000) {
                    client.write_all(chunk).await.unwrap();
                }
                client.write_all(&[0, 3, 7, 8, 9]).await.unwrap();
                client
            })
        };
        let first = read_message(&mut server).await.unwrap().unwrap();
        assert_eq!(first.len(), 65_535);
        assert_eq!(first, big);
        assert!(first.capacity() <= 65_535, "never more than announced");
        let second = read_message(&mut server).await.unwrap().unwrap();
        assert_eq!(second, [7, 8, 9]);
        drop(writer.await.unwrap());
        assert!(
            read_message(&mut server).await.unwrap().is_none(),
            "clean close"
        );
    }

    #[tokio::test]
    async fn the_buffer_grows_with_what_arrives_not_with_the_announced_length() {
        let (mut client, mut server) = tokio::io::duplex(1 << 17);
        let mut body = Vec::new();
        let waited = tokio::time::timeout(Duration::from_millis(200), async {
            client.write_all(&[0u8; 1500]).await.unwrap();
            read_body(&mut server, 65_535, &mut body).await
        })
        .await;
        assert!(waited.is_err(), "still waiting for the rest");
        assert_eq!(body.len(), 1500);
        assert!(
            body.capacity() <= 2048,
            "capacity {} for 1500 bytes",
            body.capacity()
        );
    }
}
