//! The embedded authoritative DNS server: sockets, the hickory request handler, and EDNS.
//!
//! Every answer comes from the [`Answers`] in force: a zone with its UDP wire answers prebuilt,
//! built once by the one writer and loaded from an `ArcSwap` (the published snapshot, through
//! [`Serves`]); the answer path never waits on a lock, on I/O or on a log line. Answer rules
//! live in [`respond`], the zone's contents in [`zone`].

mod mmsg;
pub mod notify_secondaries;
pub mod respond;
pub mod saved;
mod tcp;
mod udp;
pub mod xfr;
pub mod zone;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::{ArcSwap, ArcSwapOption};
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
pub use xfr::{Secondaries, SecondaryCounters};
pub use zone::Zone;

/// The UDP payload size we advertise and never exceed (the DNS flag day 2020 value: no IP
/// fragmentation on any common path). Larger answers are truncated and retried over TCP.
pub const EDNS_PAYLOAD: u16 = 1232;

/// What DNS serves: one zone, and its UDP answers encoded once in wire form (see `udp`). The
/// one writer builds it when the zone changes; DNS threads only read it.
pub struct Answers {
    zone: Zone,
    wire: udp::Table,
}

impl Answers {
    pub fn new(zone: Zone) -> Self {
        let wire = udp::Table::build(&zone);
        Self { zone, wire }
    }

    pub fn zone(&self) -> &Zone {
        &self.zone
    }
}

impl std::fmt::Debug for Answers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answers")
            .field("zone", &self.zone)
            .finish_non_exhaustive()
    }
}

/// A published value that holds the answers in force: the agent's snapshot
/// (`snapshot::Snapshot`), or bare [`Answers`] (tests, the fuzz target). The DNS server loads
/// it from an `ArcSwap` for every query (TCP) or batch of queries (UDP).
pub trait Serves: Send + Sync + 'static {
    fn answers(&self) -> &Answers;
}

impl Serves for Answers {
    fn answers(&self) -> &Answers {
        self
    }
}

/// Answers queries from the answers currently published by the one writer.
pub struct QueryHandler<S> {
    source: Arc<ArcSwap<S>>,
    /// Responses by code, for `/metrics`.
    queries: Arc<QueryCounters>,
    /// Who may transfer the zone and the TSIG key (`secondaries:`); empty when not configured.
    secondaries: Arc<ArcSwapOption<Secondaries>>,
}

impl<S: Serves> QueryHandler<S> {
    pub fn new(source: Arc<ArcSwap<S>>) -> Self {
        Self::with_counters(source, Arc::default())
    }

    /// A handler that counts its responses into `queries` (shared with the metrics endpoint).
    pub fn with_counters(source: Arc<ArcSwap<S>>, queries: Arc<QueryCounters>) -> Self {
        Self {
            source,
            queries,
            secondaries: Arc::default(),
        }
    }

    /// The same handler, answering transfers and signed messages as `secondaries` says.
    pub fn with_secondaries(mut self, secondaries: Arc<ArcSwapOption<Secondaries>>) -> Self {
        self.secondaries = secondaries;
        self
    }

    /// The answer to a transfer request or a signed message (see `xfr`); `None`: the usual path.
    fn transfer(&self, raw: &[u8], from: SocketAddr, tcp: bool) -> Option<Vec<Vec<u8>>> {
        let secondaries = self.secondaries.load();
        let secondaries = secondaries.as_deref()?;
        xfr::answer(
            Some(secondaries),
            self.source.load().answers().zone(),
            raw,
            from,
            tcp,
        )
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
impl<S: Serves> RequestHandler for QueryHandler<S> {
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

        let current = self.source.load();
        let query = &request.queries.queries()[0];
        let answer = respond::respond(
            current.answers().zone(),
            query.name(),
            query.query_type(),
            query.query_class(),
        );
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
    /// Transfers and NOTIFY (`secondaries:`), set by `feed_secondaries`; empty otherwise.
    secondaries: Arc<ArcSwapOption<Secondaries>>,
}

impl DnsSockets {
    /// Binds UDP and TCP on every address. An IPv6 wildcard is bound IPv6-only, so that
    /// `0.0.0.0:53` and `[::]:53` can both be listed.
    pub fn bind(addrs: &[SocketAddr]) -> Result<Self, (SocketAddr, io::Error)> {
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        for &addr in addrs {
            let (u, t, tcp_addr) = Self::bind_pair(addr)?;
            t.listen(1024).map_err(|e| (tcp_addr, e))?;
            u.set_nonblocking(false).map_err(|e| (addr, e))?;
            u.set_read_timeout(Some(udp::SHUTDOWN_CHECK))
                .map_err(|e| (addr, e))?;
            u.set_write_timeout(Some(udp::SEND_LIMIT))
                .map_err(|e| (addr, e))?;
            udp.push(u.into());
            tcp.push(TcpListener::from_std(t.into()).map_err(|e| (addr, e))?);
        }
        Ok(Self {
            udp,
            tcp,
            secondaries: Arc::default(),
        })
    }

    /// Answers zone transfers and signed messages as `secondaries` says (it may change later:
    /// a reload stores the new value).
    pub fn feed_secondaries(&mut self, secondaries: Arc<ArcSwapOption<Secondaries>>) {
        self.secondaries = secondaries;
    }

    /// Binds UDP and TCP on `addr`. Port 0 (tests): TCP goes on the port UDP got, so one address
    /// answers both; when that TCP port is taken (by another program's connection), it tries
    /// another UDP port, a bounded number of times.
    fn bind_pair(
        addr: SocketAddr,
    ) -> Result<(Socket, Socket, SocketAddr), (SocketAddr, io::Error)> {
        const ATTEMPTS: usize = 16;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let u = bind_socket(addr, Type::DGRAM).map_err(|e| (addr, e))?;
            let tcp_addr = u
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .unwrap_or(addr);
            match bind_socket(tcp_addr, Type::STREAM) {
                Ok(t) => return Ok((u, t, tcp_addr)),
                Err(e)
                    if addr.port() == 0
                        && e.kind() == io::ErrorKind::AddrInUse
                        && attempt < ATTEMPTS => {}
                Err(e) => return Err((tcp_addr, e)),
            }
        }
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
    pub fn serve<S: Serves>(
        self,
        source: Arc<ArcSwap<S>>,
        queries: Arc<QueryCounters>,
    ) -> io::Result<DnsServer> {
        let cap = Cap {
            total: 256,
            per_source: 64,
        };
        self.serve_capped(source, queries, Arc::new(Limiter::new("DNS TCP", cap)))
    }

    /// Starts serving, from within the tokio runtime; the returned server stops with
    /// `shutdown_gracefully`. Responses are counted into `queries`; TCP connections are held
    /// within `tcp_limit`. Fails only if a thread cannot be started.
    pub fn serve_capped<S: Serves>(
        self,
        source: Arc<ArcSwap<S>>,
        queries: Arc<QueryCounters>,
        tcp_limit: Arc<Limiter>,
    ) -> io::Result<DnsServer> {
        // UDP is answered by our own loop (prebuilt answers, see `udp`), a thread per socket;
        // TCP by our own accept loop (caps and bounded buffers, see `tcp`), a task per socket.
        // Both stop with the server's shutdown token.
        let shutdown = CancellationToken::new();
        let runtime = tokio::runtime::Handle::current();
        for socket in self.udp {
            let (source, queries, shutdown, runtime) = (
                source.clone(),
                queries.clone(),
                shutdown.clone(),
                runtime.clone(),
            );
            let secondaries = self.secondaries.clone();
            std::thread::Builder::new()
                .name("dns-udp".into())
                .spawn(move || {
                    // A panic here would silently end UDP answering on this socket: stop the
                    // whole server instead, so the agent exits non-zero and is restarted.
                    let stop = shutdown.clone();
                    let serve = || udp::serve(socket, source, queries, secondaries, shutdown, runtime);
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
        let handler = Arc::new(
            QueryHandler::with_counters(source, queries).with_secondaries(self.secondaries.clone()),
        );
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
