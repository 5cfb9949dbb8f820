//! The UDP answer loop: common questions are answered by copying prebuilt wire bytes; the rest
//! goes through the hickory request handler, exactly as before.
//!
//! hickory-server's UDP path costs ~5 µs a query (a task, a full `Message` parse, records
//! re-encoded with compression, a channel hop to the socket task): about half of what NSD or gdnsd
//! answer per core. Here, for each zone, every (name, type) answer is encoded once (by the one
//! writer, when it publishes the zone: see [`super::Answers`]),
//! compressed against its own question name (which every query for it has at the same offsets);
//! a query is then a header check, a lowercase name, a hash lookup and a copy into the response
//! buffer. Whatever the fast path is
//! not sure about (a name outside the zone, other classes, AXFR, EDNS version > 0, odd header
//! bits or sections, an answer over the size limit) takes the slow path.
//!
//! | question                                         | path |
//! |--------------------------------------------------|------|
//! | QR=0, opcode QUERY, 1 question, no answer/authority, at most an OPT (version 0) whose options (a client subnet among them) read whole | fast if the rest holds |
//! | class IN, name in the zone, not AXFR/IXFR/OPT/MAILA/MAILB                   | fast |
//! | response fits the client's size (512 or its EDNS size, at most 1232)        | fast |
//! | anything else                                    | hickory handler (REFUSED, FORMERR, NOTIMP, BADVERS, truncation) |
//! | QR=1 (a response) or shorter than a header       | dropped |

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::ClientSubnet;
use hickory_proto::rr::{DNSClass, LowerName, Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::{NetError, xfer::Protocol};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use std::os::fd::AsRawFd;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::mmsg::{Inbox, Outbox};
use super::{Answers, EDNS_PAYLOAD, QueryCounters, QueryHandler, Serves, Zone, respond};

/// Types with their own prebuilt answer; every other type gets the `OTHER` slot (NODATA).
const SLOTS: [RecordType; 5] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::ANY,
    RecordType::SOA,
    RecordType::NS,
];
const OTHER: usize = SLOTS.len();

/// One prebuilt answer: header bits, section counts, and the sections after the question.
#[derive(Debug, Clone)]
struct Prebuilt {
    aa: bool,
    rcode: ResponseCode,
    counts: [u16; 3],
    body: Box<[u8]>,
}

/// The fast path's view of one zone: built once per zone, read by every UDP thread.
pub(super) struct Table {
    /// Lowercase wire-format names → answers by slot.
    names: HashMap<Box<[u8]>, [Prebuilt; SLOTS.len() + 1], foldhash::fast::RandomState>,
    /// Lowercase wire-format origin: names ending in it are in the zone.
    origin: Box<[u8]>,
    nxdomain: Option<Prebuilt>,
}

fn wire(name: &Name) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out
}

/// The sections after the question, for a query whose question name is `question` (lowercase
/// wire form): encoded as if after a 12-byte header and that question, so names are compressed
/// against the question (pointers to offset 12 on), which the client's query has at the same
/// offsets whatever its case. Without a question (the NXDOMAIN shared by every missing name),
/// each record gets its own encoder: no pointer, so the bytes stand anywhere in a message.
fn encode(
    question: Option<&Name>,
    sections: [&[Record]; 3],
    aa: bool,
    rcode: ResponseCode,
) -> Option<Prebuilt> {
    let mut counts = [0u16; 3];
    for (i, records) in sections.iter().enumerate() {
        counts[i] = u16::try_from(records.len()).ok()?;
    }
    let records = sections.iter().flat_map(|s| s.iter());
    let body = match question {
        Some(name) => {
            let mut message = Vec::with_capacity(512);
            let mut encoder = BinEncoder::new(&mut message);
            encoder.emit_vec(&[0; 12]).ok()?;
            name.emit(&mut encoder).ok()?;
            encoder.emit_vec(&[0; 4]).ok()?; // QTYPE, QCLASS
            let start = encoder.offset();
            for record in records {
                record.emit(&mut encoder).ok()?;
            }
            message.split_off(start)
        }
        None => {
            let mut body = Vec::with_capacity(128);
            for record in records {
                let mut one = Vec::with_capacity(64);
                let mut encoder = BinEncoder::new(&mut one);
                encoder.set_canonical_form(true);
                record.emit(&mut encoder).ok()?;
                body.extend_from_slice(&one);
            }
            body
        }
    };
    Some(Prebuilt {
        aa,
        rcode,
        counts,
        body: body.into_boxed_slice(),
    })
}

impl Table {
    pub(super) fn build(zone: &Zone) -> Self {
        let origin = wire(&zone.origin);
        let mut names = HashMap::with_hasher(foldhash::fast::RandomState::default());
        // Before the first round too: the static data is answered at once, and a hostname
        // with no answer yet has its SERVFAIL prebuilt like any other answer.
        let answer = |name: &LowerName, qtype| {
            let r = respond::respond(zone, name, qtype, DNSClass::IN);
            encode(
                Some(&Name::from(name.clone())),
                [r.answers, r.authority, r.additional],
                r.authoritative,
                r.rcode,
            )
        };
        let all: Vec<&LowerName> = std::iter::once(&zone.origin)
            .chain(zone.names.keys())
            .collect();
        for name in all {
            let slots: Option<Vec<Prebuilt>> = SLOTS
                .iter()
                .chain([&RecordType::MX])
                .map(|&t| answer(name, t))
                .collect();
            if let Some(Ok(slots)) = slots.map(<[Prebuilt; SLOTS.len() + 1]>::try_from) {
                names.insert(wire(name).into_boxed_slice(), slots);
            }
        }
        let nxdomain = encode(None, [&[], &zone.soa, &[]], true, ResponseCode::NXDomain);
        Table {
            names,
            origin: origin.into_boxed_slice(),
            nxdomain,
        }
    }
}

/// What the fast parse of a query found.
struct Question {
    /// End of the question section in the query.
    end: usize,
    qtype: u16,
    /// The client's EDNS size when it sent an OPT record.
    edns: Option<u16>,
    /// The client's DO bit, copied back (RFC 3225 §3).
    dnssec_ok: bool,
}

/// The EDNS option code of a client subnet (RFC 7871).
const EDNS_CLIENT_SUBNET: u16 = 8;

/// Parses a plain query into `name` (lowercased); `None` sends it down the slow path.
fn parse(q: &[u8], name: &mut Vec<u8>) -> Option<Question> {
    if q.len() < 17 || q[2] & 0xF8 != 0 || q[3] & 0x0F != 0 {
        return None; // QR set, an opcode other than QUERY, or an rcode in a query
    }
    let count = |i: usize| u16::from_be_bytes([q[i], q[i + 1]]);
    let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
    if qd != 1 || an != 0 || ns != 0 || ar > 1 {
        return None;
    }
    name.clear();
    let mut i = 12;
    loop {
        let len = *q.get(i)? as usize;
        if len == 0 {
            name.push(0);
            i += 1;
            break;
        }
        if len > 63 || name.len() + len + 2 > 255 {
            return None; // compression pointers and oversize names: slow path
        }
        let label = q.get(i + 1..i + 1 + len)?;
        name.push(len as u8);
        name.extend(label.iter().map(u8::to_ascii_lowercase));
        i += 1 + len;
    }
    let fixed = q.get(i..i + 4)?;
    let qtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    let qclass = u16::from_be_bytes([fixed[2], fixed[3]]);
    if qclass != u16::from(DNSClass::IN) {
        return None;
    }
    let end = i + 4;
    let edns = if ar == 1 {
        // Exactly one OPT at the root, version 0, its options (cookies…) within the packet.
        let opt = q.get(end..end + 11)?;
        if opt[0] != 0 || opt[1..3] != [0, 41] || opt[6] != 0 {
            return None;
        }
        let rdlen = u16::from_be_bytes([opt[9], opt[10]]) as usize;
        if end + 11 + rdlen != q.len() {
            return None;
        }
        // Each option is code, length and that many bytes, filling the rdata exactly; anything
        // else is malformed and left to hickory's parser (found by fuzz/dns_query). A client
        // subnet (ECS, code 8) must also read as one, as hickory reads it: a malformed one is
        // FORMERR (RFC 7871 §7.1.1), which only the slow path answers (also found by fuzzing).
        let mut options = &q[end + 11..];
        while !options.is_empty() {
            let code = u16::from_be_bytes([*options.first()?, *options.get(1)?]);
            let len = usize::from(u16::from_be_bytes([*options.get(2)?, *options.get(3)?]));
            let data = options.get(4..4 + len)?;
            if code == EDNS_CLIENT_SUBNET && ClientSubnet::try_from(data).is_err() {
                return None;
            }
            options = &options[4 + len..];
        }
        Some((u16::from_be_bytes([opt[3], opt[4]]), opt[7] & 0x80 != 0))
    } else {
        if end != q.len() {
            return None;
        }
        None
    };
    Some(Question {
        end,
        qtype,
        edns: edns.map(|(size, _)| size),
        dnssec_ok: edns.is_some_and(|(_, dnssec_ok)| dnssec_ok),
    })
}

impl Table {
    /// Writes the response into `out`; false when the slow path must answer.
    pub(super) fn answer(
        &self,
        q: &[u8],
        name: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Option<ResponseCode> {
        let question = parse(q, name)?;
        let qtype = RecordType::from(question.qtype);
        let prebuilt = match self.names.get(name.as_slice()) {
            Some(slots) => {
                if matches!(
                    qtype,
                    RecordType::AXFR | RecordType::IXFR | RecordType::OPT | RecordType::ZERO
                ) || matches!(question.qtype, 253 | 254)
                {
                    return None;
                }
                let slot = SLOTS.iter().position(|&t| t == qtype).unwrap_or(OTHER);
                &slots[slot]
            }
            None if name.ends_with(&self.origin) && self.nxdomain.is_some() => {
                // Inside the zone (on a label boundary) but not a name of it: NXDOMAIN, whatever
                // the type, except the types the answer table refuses.
                let boundary = name.len() - self.origin.len();
                if !label_boundary(name, boundary)
                    || matches!(qtype, RecordType::AXFR | RecordType::IXFR)
                {
                    return None;
                }
                self.nxdomain.as_ref()?
            }
            None => return None,
        };
        // The size a response may have: 512 without EDNS, else the client's, capped at ours.
        let limit = question
            .edns
            .map_or(512, |size| size.clamp(512, EDNS_PAYLOAD)) as usize;
        let opt_len = if question.edns.is_some() { 11 } else { 0 };
        if question.end + prebuilt.body.len() + opt_len > limit {
            return None; // the hickory path truncates properly
        }
        out.clear();
        out.extend_from_slice(&q[0..2]);
        // QR, opcode 0, AA, RD copied; RA 0, AD 0, CD copied; the rcode's low bits.
        out.push(0x80 | if prebuilt.aa { 0x04 } else { 0 } | (q[2] & 0x01));
        let rcode = u16::from(prebuilt.rcode);
        out.push((q[3] & 0x10) | (rcode & 0x0F) as u8);
        let ar = prebuilt.counts[2] + u16::from(question.edns.is_some());
        for c in [1, prebuilt.counts[0], prebuilt.counts[1], ar] {
            out.extend_from_slice(&c.to_be_bytes());
        }
        out.extend_from_slice(&q[12..question.end]);
        out.extend_from_slice(&prebuilt.body);
        if let Some(size) = question.edns {
            // OPT: root, type 41, our size, extended rcode 0, version 0, the client's DO bit
            // and no other flag, no options.
            out.extend_from_slice(&[0, 0, 41]);
            out.extend_from_slice(&size.clamp(512, EDNS_PAYLOAD).to_be_bytes());
            let flags = if question.dnssec_ok { 0x80 } else { 0 };
            out.extend_from_slice(&[0, 0, flags, 0, 0, 0]);
        }
        Some(prebuilt.rcode)
    }
}

/// True when `at` is the start of a label in the wire name (not the middle of one).
fn label_boundary(name: &[u8], at: usize) -> bool {
    let mut i = 0;
    while i < at {
        i += 1 + name[i] as usize;
    }
    i == at
}

/// How often a DNS thread waiting for queries looks at the shutdown token.
pub(super) const SHUTDOWN_CHECK: Duration = Duration::from_millis(100);
/// How long a full send buffer may hold a batch of answers before they are dropped.
pub(super) const SEND_LIMIT: Duration = Duration::from_secs(1);

/// How much lower a DNS thread's priority is than the agent's other threads (a nice increment).
/// When the CPU is short — a flood of queries — health checks, the dashboard and the cluster
/// keep their pace and answering gives way; a CPU with time to spare still goes to DNS in full.
/// 10,000 pairs at 1 s under dnsperf (bench/run.sh, scale): at the same priority probing fell
/// to about 7,000 probes/s of 10,400 scheduled; at +5 it kept up (10,368 to 11,601/s), see
/// bench/results/dns-thread-nice-2026-11-29T1655Z.md.
pub(super) const DNS_NICE: libc::c_int = 5;

/// Set by the first DNS thread that could not lower its priority, so the warning comes once.
static PRIORITY_WARNED: AtomicBool = AtomicBool::new(false);

/// Lowers the calling thread's priority by `DNS_NICE`.
fn lower_priority() -> io::Result<()> {
    // On Linux a nice value belongs to a thread, and `nice` changes the caller's. It returns
    // the new value, which may be -1, so errno tells failure apart.
    // SAFETY: system calls on the calling thread; errno is thread-local.
    let failed = unsafe {
        *libc::__errno_location() = 0;
        libc::nice(DNS_NICE) == -1 && *libc::__errno_location() != 0
    };
    if failed {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `lower_priority`, and when it fails the thread answers on at the agent's priority: that costs
/// the health checks their pace under a flood, not correctness. A sandbox that denies the call
/// (systemd's `SystemCallFilter=~@resources` without `SystemCallErrorNumber=` kills the process
/// instead, see deploy/failoverd.service) is said once, not once per socket.
fn lower_priority_or_warn() {
    if let Err(error) = lower_priority()
        && !PRIORITY_WARNED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(
            %error,
            nice = DNS_NICE,
            "could not lower the DNS threads' priority: they answer at the agent's priority, so a \
             query flood can slow the health checks; under systemd allow the call with \
             `SystemCallFilter=setpriority` (deploy/failoverd.service does)"
        );
    }
}

/// Serves one UDP socket until `shutdown`, on a thread of its own: a batch of queries in, their
/// answers out, one system call each way (see `mmsg`). The socket is blocking, so an idle loop
/// sleeps in `recvmmsg` as gdnsd's and NSD's do. The same loop as a tokio task answered about
/// 10 % fewer queries per core (an `epoll_wait`, an empty `recvmmsg` and a task wake-up each
/// time the queue ran dry). `runtime` runs the slow path, which does no I/O of its own.
pub(super) fn serve<S: Serves>(
    socket: std::net::UdpSocket,
    source: Arc<ArcSwap<S>>,
    queries: Arc<QueryCounters>,
    secondaries: Arc<arc_swap::ArcSwapOption<super::Secondaries>>,
    shutdown: CancellationToken,
    runtime: tokio::runtime::Handle,
) {
    lower_priority_or_warn();
    let handler =
        QueryHandler::with_counters(source.clone(), queries.clone()).with_secondaries(secondaries);
    let fd = socket.as_raw_fd();
    let mut inbox = Inbox::default();
    let mut outbox = Outbox::default();
    let mut name = Vec::with_capacity(256);
    while !shutdown.is_cancelled() {
        let received = match inbox.recv(fd) {
            Ok(n) => n,
            // The read timeout (`SHUTDOWN_CHECK`) passed without a query.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => {
                // ICMP errors from earlier sends surface here; the socket itself is fine.
                tracing::debug!(%error, "receiving on the DNS UDP socket");
                continue;
            }
        };
        // The answers in force for this batch: one load, no lock; the writer built the table.
        let current = source.load();
        let table = &current.answers().wire;
        for i in 0..received {
            let (query, from) = inbox.get(i);
            if query.len() < 12 || query[2] & 0x80 != 0 {
                continue; // not a query
            }
            let Some(src) = from.socket_addr() else {
                continue;
            };
            if src.port() == 0 || src.ip().is_unspecified() {
                continue; // nowhere to answer
            }
            let out = outbox.next(from);
            if let Some(rcode) = table.answer(query, &mut name, out) {
                queries.record(rcode);
                continue;
            }
            outbox.cancel();
            if let Some(bytes) = runtime.block_on(slow(&handler, query, src)) {
                *outbox.next(from) = bytes;
            }
        }
        loop {
            match outbox.send(fd) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    // `SEND_LIMIT` passed with the send buffer still full: clients will retry.
                    tracing::debug!(%error, "could not send DNS responses; dropped");
                    outbox.discard();
                    break;
                }
            }
        }
    }
}

/// Both UDP answer paths for one zone, outside any socket: what `serve` sends back for a
/// datagram. For the fuzz target (`fuzz/fuzz_targets/dns_query.rs`), which checks that every
/// answer is a well-formed message and that the two paths agree.
#[doc(hidden)]
pub struct Answerer {
    answers: Arc<ArcSwap<Answers>>,
    handler: QueryHandler<Answers>,
    runtime: tokio::runtime::Runtime,
    name: Vec<u8>,
}

impl Answerer {
    pub fn new(zone: Zone) -> Self {
        let answers = Arc::new(ArcSwap::from_pointee(Answers::new(zone)));
        Self {
            handler: QueryHandler::new(answers.clone()),
            answers,
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a current-thread runtime"),
            name: Vec::with_capacity(256),
        }
    }

    /// Whether `serve` would answer this datagram at all (a query with a whole header).
    pub fn is_query(datagram: &[u8]) -> bool {
        datagram.len() >= 12 && datagram[2] & 0x80 == 0
    }

    /// The prebuilt answer, when the fast path has one.
    pub fn fast(&mut self, query: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.answers
            .load()
            .wire
            .answer(query, &mut self.name, &mut out)?;
        Some(out)
    }

    /// hickory's answer (the path every query the fast path declines takes), as `serve` gets it
    /// from `block_on`. Polled once in place: nothing on that path waits (no I/O, the response
    /// is captured in memory), so the first poll is ready and the fuzz target needs no runtime
    /// per input; the runtime only finishes a future that did wait.
    pub fn slow(&mut self, query: &[u8]) -> Option<Vec<u8>> {
        let src = SocketAddr::from(([127, 0, 0, 1], 5353));
        let mut answer = std::pin::pin!(slow(&self.handler, query, src));
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match answer.as_mut().poll(&mut context) {
            std::task::Poll::Ready(bytes) => bytes,
            std::task::Poll::Pending => self.runtime.block_on(answer),
        }
    }
}

/// Whether the section counts of `message` (at least a header) can fit in its length: a
/// question takes 5 bytes or more, a record 11 or more. hickory reserves room for every counted
/// entry before reading one, so a 12-byte datagram claiming 65,535 of each made it allocate
/// ~40 MB (an mmap and munmap per datagram; under the fuzzer's ASan, most of its time; found by
/// fuzz/dns_query). Such a message cannot parse anyway: it gets the same FORMERR, without the
/// allocation.
#[doc(hidden)]
pub fn counts_fit(message: &[u8]) -> bool {
    let count = |i: usize| u64::from(u16::from_be_bytes([message[i], message[i + 1]]));
    message.len() >= 12
        && 12 + 5 * count(4) + 11 * (count(6) + count(8) + count(10)) <= message.len() as u64
}

/// Whether a question name of `request` is compressed with a pointer into the 12-byte header.
/// hickory echoes the question section byte for byte, so such a pointer would then point into
/// the response's header (other flags, other counts): a response no client can read (found by
/// fuzz/dns_query). No resolver compresses against the header; these queries get FORMERR.
/// Pointers into the question itself stay valid: the response's question is at the same offset.
pub(super) fn question_points_into_header(request: &Request) -> bool {
    let bytes = request.queries.as_bytes();
    let mut at = 0;
    for _ in 0..request.queries.len() {
        // One name (labels, then a zero or a pointer), then QTYPE and QCLASS.
        loop {
            let Some(&len) = bytes.get(at) else {
                return false;
            };
            match len & 0xC0 {
                0xC0 => {
                    let target = usize::from(len & 0x3F) << 8
                        | usize::from(bytes.get(at + 1).copied().unwrap_or(0));
                    if target < 12 {
                        return true;
                    }
                    at += 2;
                    break;
                }
                _ if len == 0 => {
                    at += 1;
                    break;
                }
                _ => at += 1 + usize::from(len),
            }
        }
        at += 4;
    }
    false
}

/// The hickory path: parse the whole message and run the request handler.
async fn slow<S: Serves>(
    handler: &QueryHandler<S>,
    query: &[u8],
    src: SocketAddr,
) -> Option<Vec<u8>> {
    // Signed messages (the secondaries' SOA checks): verified and answered signed (`xfr`).
    if let Some(mut answers) = handler.transfer(query, src, false) {
        return answers.pop();
    }
    let parsed = if counts_fit(query) {
        Request::from_bytes(query.to_vec(), src, Protocol::Udp).ok()
    } else {
        None
    };
    let request = match parsed {
        Some(request) if !question_points_into_header(&request) => request,
        _ => {
            // The header was readable (12 bytes checked), the rest unreadable or not safe to
            // echo: FORMERR, as hickory's server does.
            let mut metadata = Metadata::new(
                u16::from_be_bytes([query[0], query[1]]),
                MessageType::Response,
                OpCode::from_u8((query[2] >> 3) & 0x0F),
            );
            metadata.response_code = ResponseCode::FormErr;
            let header = Header {
                metadata,
                counts: HeaderCounts::default(),
            };
            let mut bytes = Vec::with_capacity(12);
            header.emit(&mut BinEncoder::new(&mut bytes)).ok()?;
            return Some(bytes);
        }
    };
    let capture = Capture::default();
    handler
        .handle_request::<_, TokioTime>(&request, capture.clone())
        .await;
    let bytes = std::mem::take(&mut *capture.bytes.lock().ok()?);
    (!bytes.is_empty()).then_some(bytes)
}

/// Encodes what the handler sends, as the UDP and TCP servers need it: over UDP at most the
/// client's size or 512, over TCP up to 65,535 bytes; a SERVFAIL header if encoding fails.
///
/// hickory's encoder, given a size limit, drops the record that does not fit but leaves its
/// first bytes in the buffer, and then has no room for the OPT: a malformed message (trailing
/// data, no OPT; RFC 6891 §7). So the answer is encoded whole, and one that is too large is
/// replaced by the question and the OPT with TC set, as NSD does: the client asks again over
/// TCP. Every answer here is one RRset, or the apex NS with its in-domain glue, which RFC 9471
/// requires whole too, so there is no smaller complete answer to offer.
#[derive(Clone, Default)]
pub(super) struct Capture {
    pub(super) bytes: Arc<Mutex<Vec<u8>>>,
    /// Over TCP an answer is never truncated: it may take up to 65,535 bytes.
    tcp: bool,
}

impl Capture {
    /// For the TCP server: no size limit but the message's own.
    pub(super) fn for_tcp() -> Self {
        Self {
            bytes: Arc::default(),
            tcp: true,
        }
    }
}

/// The TC answer for an encoded `full` answer that is over its size `limit`: header, question
/// and OPT only (with the rcode's high bits). An error answer echoes every question of the
/// query, and many questions alone can be over the limit (found by fuzz/dns_query: an UPDATE
/// with 28 questions got 548 bytes of NOTIMP without EDNS): then header and OPT only. `None` if
/// `full` cannot be read back.
fn truncated(full: &[u8], limit: usize) -> Option<Vec<u8>> {
    let mut message = hickory_proto::op::Message::from_vec(full).ok()?.truncate();
    let bytes = message.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    message.queries.clear();
    message.to_vec().ok()
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let id = response.metadata().id;
        let limit = if self.tcp {
            usize::from(u16::MAX)
        } else {
            usize::from(response.edns().map_or(512, |e| e.max_payload()))
        };
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        let encoded = response.destructive_emit(&mut encoder);
        let shortened = match &encoded {
            Ok(_) if bytes.len() > limit => truncated(&bytes, limit),
            Ok(_) => Some(std::mem::take(&mut bytes)),
            Err(_) => None,
        };
        let info = match (encoded, shortened) {
            (Ok(info), Some(out)) => {
                bytes = out;
                info
            }
            (result, _) => {
                if let Err(error) = result {
                    tracing::error!(%error, "error encoding a DNS response");
                } else {
                    tracing::error!("error truncating a DNS response");
                }
                bytes.clear();
                let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
                metadata.response_code = ResponseCode::ServFail;
                let header = Header {
                    metadata,
                    counts: HeaderCounts::default(),
                };
                header
                    .emit(&mut BinEncoder::new(&mut bytes))
                    .map_err(|e| NetError::from(e.to_string()))?;
                header.into()
            }
        };
        if let Ok(mut slot) = self.bytes.lock() {
            *slot = bytes;
        }
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answerer() -> Answerer {
        let config = crate::config::parse(
            std::path::Path::new("t.yaml"),
            "zone: ha.test\nself: n1\nnodes:\n  - { id: n1, address: 127.0.0.11 }\n\
             checks:\n  - { id: web, type: tcp, port: 80 }\nhostnames:\n  - { name: app, checks: [web] }\n",
        )
        .unwrap();
        let decisions = [crate::decide::Decision {
            nodes: vec![0],
            reason: crate::decide::Reason::Healthy,
        }];
        Answerer::new(super::super::zone::build(&config, &decisions, 2026120101))
    }

    /// fuzz/dns_query's finding (in fuzz/corpus/dns_query): an UPDATE with 28 questions and no
    /// EDNS (here 34 bytes each). NOTIMP echoed them all, 548 bytes where the client allows 512; now
    /// the answer is cut to the header (TC, no question).
    #[test]
    fn an_error_echoing_many_questions_stays_within_512_bytes() {
        let mut query = vec![0x12, 0x34, 0x28, 0x00, 0, 28, 0, 0, 0, 0, 0, 0];
        for i in 0..28u8 {
            // Names that do not compress against each other: 20 bytes of their own each.
            query.push(20);
            query.extend_from_slice(&[b'a' + i % 26; 19]);
            query.push(b'0' + i / 26);
            query.extend_from_slice(b"\x02ha\x04test\x00\x00\x01\x00\x01");
        }
        let answer = answerer().slow(&query).unwrap();
        assert!(answer.len() <= 512, "{} bytes", answer.len());
        let parsed = hickory_proto::op::Message::from_vec(&answer).unwrap();
        assert_eq!(parsed.metadata.response_code, ResponseCode::NotImp);
        assert!(parsed.metadata.truncation);
        assert!(parsed.queries.is_empty());
    }

    /// fuzz/dns_query's finding (the input is in fuzz/corpus/dns_query): an EDNS client subnet
    /// option of length 0 among well-formed options. The fast path answered it NOERROR while
    /// hickory's parser, and so every other answer to the same bytes, says FORMERR (RFC 7871
    /// §7.1.1); now the fast path declines it. A well-formed subnet stays on the fast path.
    #[test]
    fn a_malformed_client_subnet_gets_formerr_on_both_paths() {
        let mut query =
            b"\x12\x5a\x00\x00\x00\x01\x00\x00\x00\x00\x00\x01\x03app\x02ha\x04test\x00\x00\x01\x00\x01"
                .to_vec();
        let opt = |options: &[u8]| {
            let mut rr = vec![0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0];
            rr.extend_from_slice(&(options.len() as u16).to_be_bytes());
            rr.extend_from_slice(options);
            rr
        };
        let mut answerer = answerer();
        let mut bad = query.clone();
        bad.extend(opt(b"\x00\x0a\x00\x00\x00\x08\x00\x00\x00\x01\x00\x00"));
        assert_eq!(answerer.fast(&bad), None, "the fast path declines it");
        let parsed = hickory_proto::op::Message::from_vec(&answerer.slow(&bad).unwrap()).unwrap();
        assert_eq!(parsed.metadata.response_code, ResponseCode::FormErr);
        // 192.0.2.0/24, scope 0: a client subnet as resolvers send it.
        query.extend(opt(b"\x00\x08\x00\x07\x00\x01\x18\x00\xc0\x00\x02"));
        let fast = answerer.fast(&query).expect("the fast path answers it");
        let parsed = hickory_proto::op::Message::from_vec(&fast).unwrap();
        assert_eq!(parsed.metadata.response_code, ResponseCode::NoError);
        assert_eq!(parsed.answers.len(), 1);
    }

    /// A header claiming 65,535 questions and records, nothing behind it: FORMERR, as hickory
    /// would answer, but decided from the counts before hickory reserves room for them.
    #[test]
    fn counts_that_cannot_fit_get_formerr_before_parsing() {
        let mut query = *b"\xab\xcd\x01\x00\xff\xff\xff\xff\xff\xff\xff\xff";
        assert!(!counts_fit(&query));
        assert!(hickory_proto::op::Message::from_vec(&query).is_err());
        let parsed =
            hickory_proto::op::Message::from_vec(&answerer().slow(&query).unwrap()).unwrap();
        assert_eq!(parsed.metadata.id, 0xabcd);
        assert_eq!(parsed.metadata.response_code, ResponseCode::FormErr);
        // The bound is exact: one root question (5 bytes) fits in 17.
        query[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        let mut one = query.to_vec();
        one.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert!(counts_fit(&one) && !counts_fit(&one[..16]));
    }

    /// fuzz/dns_query's finding (the input is in fuzz/corpus/dns_query): the question `none.`
    /// written as `4none` and a pointer to offset 2 of the header (a zero byte there). hickory
    /// echoed the pointer, which in the response pointed at the flags (0x84): unreadable.
    #[test]
    fn a_question_compressed_against_the_header_gets_a_readable_formerr() {
        let query =
            b"\x12\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04none\xc0\x02\x00\x01\x00\x01";
        let mut answerer = answerer();
        assert_eq!(answerer.fast(query), None, "the fast path declines it");
        let answer = answerer.slow(query).expect("an answer");
        let parsed = hickory_proto::op::Message::from_vec(&answer).expect("a readable answer");
        assert_eq!(parsed.metadata.id, 0x1234);
        assert_eq!(parsed.metadata.response_code, ResponseCode::FormErr);
        // The same question written out is answered as usual (out of zone: REFUSED).
        let plain = b"\x12\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04none\x00\x00\x01\x00\x01";
        let parsed = hickory_proto::op::Message::from_vec(&answerer.slow(plain).unwrap()).unwrap();
        assert_eq!(parsed.metadata.response_code, ResponseCode::Refused);
    }

    #[test]
    fn label_boundaries() {
        let name = wire(&Name::from_ascii("a.bc.example.").unwrap());
        assert!(label_boundary(&name, 0));
        assert!(label_boundary(&name, 2));
        assert!(!label_boundary(&name, 3));
    }

    /// This thread's nice value, from /proc (field 19 of stat).
    fn thread_nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(16).unwrap().parse().unwrap()
    }

    /// Installs, on the calling thread only, a seccomp filter that makes `setpriority` fail
    /// with EPERM, as systemd's `SystemCallErrorNumber=EPERM` does for a denied call.
    fn deny_setpriority_on_this_thread() {
        let nr = libc::SYS_setpriority as u32;
        let errno = libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32 & libc::SECCOMP_RET_DATA);
        let mut program = [
            // A = the system call number (offset 0 of struct seccomp_data)
            libc::sock_filter {
                code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
                jt: 0,
                jf: 0,
                k: 0,
            },
            libc::sock_filter {
                code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                jt: 0,
                jf: 1,
                k: nr,
            },
            libc::sock_filter {
                code: (libc::BPF_RET | libc::BPF_K) as u16,
                jt: 0,
                jf: 0,
                k: errno,
            },
            libc::sock_filter {
                code: (libc::BPF_RET | libc::BPF_K) as u16,
                jt: 0,
                jf: 0,
                k: libc::SECCOMP_RET_ALLOW,
            },
        ];
        let fprog = libc::sock_fprog {
            len: program.len() as u16,
            filter: program.as_mut_ptr(),
        };
        // SAFETY: prctl on the calling thread; `fprog` points at a live, well-formed program.
        // Without TSYNC the filter binds this thread (and threads it starts) only.
        unsafe {
            assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
            assert_eq!(
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &fprog as *const libc::sock_fprog
                ),
                0,
                "installing the seccomp filter: {}",
                io::Error::last_os_error()
            );
        }
    }

    #[test]
    fn a_denied_priority_change_is_an_error_and_the_thread_runs_on() {
        let (before, result, after) = std::thread::spawn(|| {
            deny_setpriority_on_this_thread();
            let before = thread_nice();
            let result = lower_priority();
            (before, result, thread_nice())
        })
        .join()
        .expect("the thread survives the denied call");
        let error = result.expect_err("setpriority is denied");
        assert_eq!(error.raw_os_error(), Some(libc::EPERM), "{error}");
        assert_eq!(after, before, "the nice value is unchanged");

        // Without the filter the same code lowers the priority (so the filter is what failed it).
        let (before, result, after) = std::thread::spawn(|| {
            let before = thread_nice();
            (before, lower_priority(), thread_nice())
        })
        .join()
        .unwrap();
        result.unwrap();
        assert_eq!(after, (before + DNS_NICE).min(19));
    }
}
