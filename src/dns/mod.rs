//! The embedded authoritative DNS server: sockets, the hickory request handler, and EDNS.
//!
//! The handler loads the current [`Zone`] from an `ArcSwap` and answers from it; it never waits
//! on a lock or on I/O. Answer rules live in [`respond`], the zone's contents in [`zone`].

mod mmsg;
pub mod respond;
pub mod saved;
mod tcp;
mod udp;
pub mod zone;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Metadata, OpCode, ResponseCode};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::connections::{Cap, Limiter};

#[doc(hidden)]
pub use udp::Answerer;
#[doc(hidden)]
pub use udp::counts_fit;
pub use zone::Zone;

/// The UDP payload size we advertise and never exceed (the DNS flag day 2020 value: no IP
/// fragmentation on any common path). Larger answers are truncated and retried over TCP.
pub const EDNS_PAYLOAD: u16 = 1232;

/// Answers queries from the zone currently published by the health task.
pub struct ZoneHandler {
    zone: Arc<ArcSwap<Zone>>,
    /// Responses by code, for `/metrics`.
    queries: Arc<QueryCounters>,
}

impl ZoneHandler {
    pub fn new(zone: Arc<ArcSwap<Zone>>) -> Self {
        Self::with_counters(zone, Arc::default())
    }

    /// A handler that counts its responses into `queries` (shared with the metrics endpoint).
    pub fn with_counters(zone: Arc<ArcSwap<Zone>>, queries: Arc<QueryCounters>) -> Self {
        Self { zone, queries }
    }
}

/// Slots for the response codes of RFC 1035 and RFC 6891 (0..=23); higher codes share the last.
const RCODE_SLOTS: usize = 25;

/// DNS responses sent, by response code. Plain atomics, one relaxed increment per query: the
/// answer path stays lock-free, and `/metrics` reads them whenever it is scraped.
#[derive(Debug)]
pub struct QueryCounters {
    by_rcode: [AtomicU64; RCODE_SLOTS],
}

impl Default for QueryCounters {
    fn default() -> Self {
        Self {
            by_rcode: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl QueryCounters {
    pub fn record(&self, rcode: ResponseCode) {
        let slot = usize::from(u16::from(rcode)).min(RCODE_SLOTS - 1);
        self.by_rcode[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Every code answered at least once, as (name as dig prints it, count), in code order.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        self.by_rcode
            .iter()
            .enumerate()
            .filter_map(|(code, n)| {
                let n = n.load(Ordering::Relaxed);
                (n > 0).then(|| (rcode_name(code), n))
            })
            .collect()
    }
}

/// The mnemonic `dig` shows for a response code (`status: NXDOMAIN`).
fn rcode_name(code: usize) -> String {
    match code {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        16 => "BADVERS".into(),
        c if c == RCODE_SLOTS - 1 => "OTHER".into(),
        c => format!("RCODE{c}"),
    }
}

#[async_trait::async_trait]
impl RequestHandler for ZoneHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);

        // EDNS: answer in kind, with our size capped so UDP answers are never fragmented. DO is
        // copied back (RFC 3225 §3): we sign nothing, but a validator must see we understood it.
        let response_edns = request.edns.as_ref().map(|req| {
            let mut edns = Edns::new();
            edns.set_max_payload(req.max_payload().clamp(512, EDNS_PAYLOAD));
            edns.set_version(0);
            edns.set_dnssec_ok(req.flags().dnssec_ok);
            edns
        });
        let builder = match &response_edns {
            Some(edns) => MessageResponseBuilder::new(&request.queries, Some(edns)),
            None => MessageResponseBuilder::new(&request.queries, None),
        };

        let error = if request.metadata.op_code != OpCode::Query {
            Some(ResponseCode::NotImp)
        } else if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            Some(ResponseCode::BADVERS)
        } else if request.queries.len() != 1 {
            Some(ResponseCode::FormErr)
        } else {
            None
        };
        if let Some(code) = error {
            self.queries.record(code);
            let response = builder.error_msg(&request.metadata, code);
            return send(&mut response_handle, response, &request.metadata).await;
        }

        let zone = self.zone.load();
        let query = &request.queries.queries()[0];
        let answer = respond::respond(&zone, query.name(), query.query_type(), query.query_class());
        metadata.response_code = answer.rcode;
        self.queries.record(answer.rcode);
        metadata.authoritative = answer.authoritative;
        let response = builder.build(
            metadata,
            answer.answers,
            answer.authority,
            [],
            answer.additional,
        );
        send(&mut response_handle, response, &request.metadata).await
    }
}

async fn send<'a, R: ResponseHandler>(
    handle: &mut R,
    response: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
    >,
    request: &Metadata,
) -> ResponseInfo {
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(error) => {
            tracing::debug!(%error, "could not send a DNS response");
            let mut metadata = Metadata::response_from_request(request);
            metadata.response_code = ResponseCode::ServFail;
            hickory_proto::op::Header {
                metadata,
                counts: Default::default(),
            }
            .into()
        }
    }
}

/// The DNS sockets, bound before anything serves.
pub struct DnsSockets {
    /// Blocking, with read and write timeouts: each is served by a thread of its own.
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<TcpListener>,
}

impl DnsSockets {
    /// Binds UDP and TCP on every address. An IPv6 wildcard is bound IPv6-only, so that
    /// `0.0.0.0:53` and `[::]:53` can both be listed.
    pub fn bind(addrs: &[SocketAddr]) -> Result<Self, (SocketAddr, io::Error)> {
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        for &addr in addrs {
            let u = bind_socket(addr, Type::DGRAM).map_err(|e| (addr, e))?;
            // Port 0 (tests): TCP goes on the port UDP got, so one address answers both.
            let tcp_addr = u
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .unwrap_or(addr);
            let t = bind_socket(tcp_addr, Type::STREAM).map_err(|e| (tcp_addr, e))?;
            t.listen(1024).map_err(|e| (tcp_addr, e))?;
            u.set_nonblocking(false).map_err(|e| (addr, e))?;
            u.set_read_timeout(Some(udp::SHUTDOWN_CHECK))
                .map_err(|e| (addr, e))?;
            u.set_write_timeout(Some(udp::SEND_LIMIT))
                .map_err(|e| (addr, e))?;
            udp.push(u.into());
            tcp.push(TcpListener::from_std(t.into()).map_err(|e| (addr, e))?);
        }
        Ok(Self { udp, tcp })
    }

    /// The addresses really bound (ports filled in when 0 was asked).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// Starts serving, from within the tokio runtime, with a default cap on TCP connections
    /// (tests; the agent sizes the cap from the descriptor limit, see `serve_capped`).
    pub fn serve(
        self,
        zone: Arc<ArcSwap<Zone>>,
        queries: Arc<QueryCounters>,
    ) -> io::Result<DnsServer> {
        let cap = Cap {
            total: 256,
            per_source: 64,
        };
        self.serve_capped(zone, queries, Arc::new(Limiter::new("DNS TCP", cap)))
    }

    /// Starts serving, from within the tokio runtime; the returned server stops with
    /// `shutdown_gracefully`. Responses are counted into `queries`; TCP connections are held
    /// within `tcp_limit`. Fails only if a thread cannot be started.
    pub fn serve_capped(
        self,
        zone: Arc<ArcSwap<Zone>>,
        queries: Arc<QueryCounters>,
        tcp_limit: Arc<Limiter>,
    ) -> io::Result<DnsServer> {
        // UDP is answered by our own loop (prebuilt answers, see `udp`), a thread per socket;
        // TCP by our own accept loop (caps and bounded buffers, see `tcp`), a task per socket.
        // Both stop with the server's shutdown token.
        let shutdown = CancellationToken::new();
        let runtime = tokio::runtime::Handle::current();
        for socket in self.udp {
            let (zone, queries, shutdown, runtime) = (
                zone.clone(),
                queries.clone(),
                shutdown.clone(),
                runtime.clone(),
            );
            std::thread::Builder::new()
                .name("dns-udp".into())
                .spawn(move || {
                    // A panic here would silently end UDP answering on this socket: stop the
                    // whole server instead, so the agent exits non-zero and is restarted.
                    let stop = shutdown.clone();
                    let serve = || udp::serve(socket, zone, queries, shutdown, runtime);
                    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(serve)) {
                        let message = payload
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| payload.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        tracing::error!(task = "dns-udp", error = %format!("panicked: {message}"), "a task failed; stopping the DNS server");
                        stop.cancel();
                    }
                })?;
        }
        let handler = Arc::new(ZoneHandler::with_counters(zone, queries));
        let mut tcp = JoinSet::new();
        for listener in self.tcp {
            tcp.spawn(tcp::serve(
                listener,
                handler.clone(),
                tcp_limit.clone(),
                shutdown.clone(),
            ));
        }
        Ok(DnsServer { shutdown, tcp })
    }
}

/// The running DNS server: its shutdown token and its TCP listener tasks.
pub struct DnsServer {
    shutdown: CancellationToken,
    tcp: JoinSet<io::Result<()>>,
}

impl DnsServer {
    /// Cancelling it stops every UDP thread and TCP listener.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Waits until every TCP listener has stopped: after shutdown, or when one fails (then
    /// with its error).
    pub async fn block_until_done(&mut self) -> io::Result<()> {
        while let Some(done) = self.tcp.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(error),
                Err(error) => return Err(io::Error::other(error)),
            }
        }
        Ok(())
    }

    /// Stops everything and waits for the TCP listeners to close their connections.
    pub async fn shutdown_gracefully(&mut self) -> io::Result<()> {
        self.shutdown.cancel();
        self.block_until_done().await
    }
}

fn bind_socket(addr: SocketAddr, kind: Type) -> io::Result<Socket> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let protocol = if kind == Type::DGRAM {
        Protocol::UDP
    } else {
        Protocol::TCP
    };
    let socket = Socket::new(domain, kind, Some(protocol))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if kind == Type::STREAM {
        socket.set_reuse_address(true)?;
    } else {
        dont_fragment(&socket, addr.is_ipv4())?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// UDP responses leave with DF set and are never fragmented (RFC 9715, R1). Every answer fits
/// in `EDNS_PAYLOAD` (1232 bytes), which any IPv6 link and any sane IPv4 path carries whole;
/// `IP_PMTUDISC_PROBE` also ignores path-MTU updates, so a forged ICMP "fragmentation needed"
/// cannot shrink what we send. A side effect: the kernel skips its per-packet IP ID hash.
fn dont_fragment(socket: &Socket, v4: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (level, option, value) = if v4 {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_PROBE,
        )
    } else {
        (libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 1)
    };
    // SAFETY: a valid descriptor and a c_int option value of the size given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests;
