//! Zone transfers to the configured secondaries (AXFR; IXFR answered with the whole zone) and
//! every TSIG-signed message: verified with the `secondaries.tsig` key, answered signed.
//!
//! The TCP loop and the UDP slow path hand a message here first ([`answer`]); `None` means it is
//! none of this module's business and takes the usual path, which refuses transfers. The UDP fast
//! path never comes here: a signed query has a TSIG record, which the fast parse declines.
//!
//! | message                                                     | answer |
//! |-------------------------------------------------------------|--------|
//! | `secondaries:` not configured                               | `None`: the usual path (transfers REFUSED, TSIG ignored) |
//! | unsigned, not a transfer                                    | `None`: the usual path |
//! | unsigned transfer, UDP                                      | `None`: the usual path (REFUSED) |
//! | unsigned transfer, TCP                                      | REFUSED |
//! | signed with another key or algorithm                        | NOTAUTH, TSIG error BADKEY, unsigned (RFC 8945 §5.2.1) |
//! | signed, MAC wrong                                           | NOTAUTH, BADSIG, unsigned (§5.2.2) |
//! | signed, time outside the fudge (300 s)                      | NOTAUTH, BADTIME, signed (§5.2.3) |
//! | signed transfer from an address not in `allow_from`         | REFUSED, signed |
//! | signed transfer of another zone                             | NOTAUTH, signed |
//! | signed AXFR over UDP                                        | REFUSED, signed |
//! | signed IXFR over UDP                                        | our SOA alone, signed (RFC 1995 §4: "ask over TCP") |
//! | signed transfer while a hostname has no answer yet          | SERVFAIL, signed (the secondary asks another agent) |
//! | signed IXFR whose serial is ours (or newer)                 | our SOA alone, signed (up to date) |
//! | signed AXFR or IXFR over TCP, allowed                       | the zone: SOA, NS, addresses, SOA, in messages of at most `CHUNK` bytes, each signed |
//! | signed query (SOA checks by the secondaries)                | the usual answer (`respond`), signed; TC over UDP when too large |
//! | signed message of another opcode (NOTIFY, UPDATE)           | NOTIMP, signed |
//! | signed query with other than one question                   | FORMERR, signed |
//!
//! A transfer reads one zone snapshot (the `Arc<Zone>` the caller loaded once): its SOA, records
//! and closing SOA always belong together.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::tsig::{TSIG, TsigError, make_tsig_record};
use hickory_proto::rr::{DNSClass, LowerName, RData, Record, RecordType, TSigner};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use super::EDNS_PAYLOAD;
use super::respond;
use super::zone::Zone;
use crate::config::SecondariesConfig;

/// Largest message of a transfer, before its TSIG record: well under 65,535, as BIND and Knot
/// do, so that a secondary never waits on one huge message and the TCP write timeout holds.
const CHUNK: usize = 16 * 1024;

/// What the DNS server needs to feed the secondaries: the configuration and the key, resolved
/// at start (and again at each reload), and the counters `/metrics` shows (the same ones
/// across reloads).
pub struct Secondaries {
    pub config: SecondariesConfig,
    pub signer: TSigner,
    pub counters: Arc<SecondaryCounters>,
}

/// Transfers and NOTIFYs, for `/metrics`: relaxed atomics, bumped once per message.
#[derive(Debug, Default)]
pub struct SecondaryCounters {
    /// Zone transfers sent whole (AXFR, or IXFR answered with the zone).
    pub transfers: AtomicU64,
    /// Transfer requests refused (no key, another key, an address not allowed, over UDP).
    pub transfers_refused: AtomicU64,
    /// NOTIFY messages sent (each retry counts).
    pub notifies_sent: AtomicU64,
    /// NOTIFYs a secondary acknowledged (NOERROR).
    pub notifies_acknowledged: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl std::fmt::Debug for Secondaries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secondaries")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The answer to `raw` when it is a transfer request or a signed message and `secondaries`
/// is configured: the messages to send (unframed), in order; `None` otherwise.
pub fn answer(
    secondaries: Option<&Secondaries>,
    zone: &Zone,
    raw: &[u8],
    from: SocketAddr,
    tcp: bool,
) -> Option<Vec<Vec<u8>>> {
    let secondaries = secondaries?;
    if raw.len() < 12 || raw[2] & 0x80 != 0 {
        return None;
    }
    // Over UDP only a signed message is ours, and a signed one has an additional record: the
    // UDP slow path pays no parse for the rest.
    if !tcp && raw[10..12] == [0, 0] {
        return None;
    }
    let request = Message::from_vec(raw).ok()?;
    let transfer = request.queries.len() == 1
        && matches!(
            request.queries[0].query_type(),
            RecordType::AXFR | RecordType::IXFR
        );
    let signed = request.signature.is_some();
    if !signed {
        if !(transfer && tcp) {
            return None;
        }
        tracing::debug!(peer = %from, "zone transfer refused: not signed with the `secondaries.tsig` key");
        bump(&secondaries.counters.transfers_refused);
        return Some(vec![unsigned(&request, ResponseCode::Refused, None)?]);
    }
    let signer = &secondaries.signer;
    let now = unix_now();
    let tsig = request.signature.as_ref()?;
    let request_mac = match signer.verify_message_byte(raw, None, true) {
        Ok((mac, _, valid)) => {
            if !valid.contains(&now) {
                tracing::info!(peer = %from, key = %tsig.name, their_time = tsig.data.time, our_time = now,
                    "signed request refused: its time is more than 5 minutes from ours; check both clocks (NTP)");
                let mut chain = Chain::new(signer, request.id, mac, now);
                return Some(vec![chain.sign_error(&request, TsigError::BadTime, now)?]);
            }
            mac
        }
        Err(error) => {
            let wrong_key =
                tsig.name != *signer.signer_name() || tsig.data.algorithm != *signer.algorithm();
            let (why, error_code) = if wrong_key {
                (
                    "another key name or algorithm than `secondaries.tsig`",
                    TsigError::BadKey,
                )
            } else {
                (
                    "a MAC that does not verify: not the same secret as `secondaries.tsig`",
                    TsigError::BadSig,
                )
            };
            tracing::info!(peer = %from, key = %tsig.name, %error, "signed request refused: {why}");
            bump(&secondaries.counters.transfers_refused);
            return Some(vec![unsigned(
                &request,
                ResponseCode::NotAuth,
                Some((tsig.name.clone(), error_code)),
            )?]);
        }
    };
    let mut chain = Chain::new(signer, request.id, request_mac, now);
    if transfer {
        let answer = transfer_answer(&secondaries.config, zone, &request, from, tcp, &mut chain);
        let whole = answer
            .as_ref()
            .is_some_and(|m| m.len() > 1 || m.first().is_some_and(|b| is_whole_zone(b)));
        bump(if whole {
            &secondaries.counters.transfers
        } else {
            &secondaries.counters.transfers_refused
        });
        return answer;
    }
    if request.op_code != OpCode::Query || request.queries.len() != 1 {
        let code = if request.op_code == OpCode::Query {
            ResponseCode::FormErr
        } else {
            ResponseCode::NotImp
        };
        return Some(vec![chain.sign(&reply(&request, code))?]);
    }
    // A signed query: the secondaries' SOA checks. The usual answer, signed.
    let query = &request.queries[0];
    let name = LowerName::new(query.name());
    let found = respond::respond(zone, &name, query.query_type(), query.query_class());
    let mut response = reply(&request, found.rcode);
    response.metadata.authoritative = found.authoritative;
    response.answers = found.answers.to_vec();
    response.authorities = found.authority.to_vec();
    response.additionals = found.additional.to_vec();
    let limit = if tcp {
        usize::from(u16::MAX)
    } else {
        usize::from(
            request
                .edns
                .as_ref()
                .map_or(512, |e| e.max_payload().clamp(512, EDNS_PAYLOAD)),
        )
    };
    let signed = chain.sign(&response)?;
    if signed.len() <= limit {
        return Some(vec![signed]);
    }
    let mut truncated = reply(&request, found.rcode);
    truncated.metadata.authoritative = found.authoritative;
    truncated.metadata.truncation = true;
    let mut chain = Chain::new(signer, request.id, chain.request_mac, now);
    Some(vec![chain.sign(&truncated)?])
}

/// A signed transfer request (AXFR or IXFR) whose signature verified.
fn transfer_answer(
    config: &SecondariesConfig,
    zone: &Zone,
    request: &Message,
    from: SocketAddr,
    tcp: bool,
    chain: &mut Chain<'_>,
) -> Option<Vec<Vec<u8>>> {
    let query = &request.queries[0];
    let qtype = query.query_type();
    let refuse = |chain: &mut Chain<'_>, rcode| Some(vec![chain.sign(&reply(request, rcode))?]);
    if !config.allows(from.ip()) {
        tracing::info!(peer = %from, "zone transfer refused: the address is not in `secondaries.allow_from`");
        return refuse(chain, ResponseCode::Refused);
    }
    if LowerName::new(query.name()) != zone.origin || query.query_class() != DNSClass::IN {
        return refuse(chain, ResponseCode::NotAuth);
    }
    let soa_alone = || {
        let mut response = reply(request, ResponseCode::NoError);
        response.metadata.authoritative = true;
        response.answers = zone.soa.clone();
        response
    };
    if !tcp {
        // UDP: AXFR never; IXFR gets our SOA, which tells the secondary to ask over TCP.
        if qtype == RecordType::IXFR {
            return Some(vec![chain.sign(&soa_alone())?]);
        }
        return refuse(chain, ResponseCode::Refused);
    }
    if zone.names.values().any(|n| n.pending) {
        tracing::info!(peer = %from, "zone transfer declined (SERVFAIL): a hostname has no answer yet (first round of checks)");
        return refuse(chain, ResponseCode::ServFail);
    }
    if qtype == RecordType::IXFR && ixfr_up_to_date(request, zone.serial) {
        return Some(vec![chain.sign(&soa_alone())?]);
    }
    let records = zone_records(zone);
    let mut messages = Vec::new();
    let mut chunk: Vec<Record> = Vec::new();
    let mut size = 0;
    let mut bytes = 0;
    for record in &records {
        let len = record.to_bytes().map_or(CHUNK, |b| b.len());
        if !chunk.is_empty() && size + len > CHUNK {
            let message =
                transfer_message(request, std::mem::take(&mut chunk), messages.is_empty());
            let signed = chain.sign(&message)?;
            bytes += signed.len();
            messages.push(signed);
            size = 0;
        }
        size += len;
        chunk.push(record.clone());
    }
    let message = transfer_message(request, chunk, messages.is_empty());
    let signed = chain.sign(&message)?;
    bytes += signed.len();
    messages.push(signed);
    tracing::info!(peer = %from, kind = %qtype, serial = zone.serial, records = records.len(),
        messages = messages.len(), bytes, "zone transferred to a secondary");
    Some(messages)
}

/// Whether a one-message answer to a transfer is the zone (NOERROR with more than the SOA),
/// not a refusal or the SOA alone.
fn is_whole_zone(message: &[u8]) -> bool {
    message.len() >= 12
        && message[3] & 0x0F == 0
        && u16::from_be_bytes([message[6], message[7]]) > 1
}

/// Whether the IXFR's SOA (authority section) already has our serial, or a newer one (RFC 1982).
fn ixfr_up_to_date(request: &Message, ours: u32) -> bool {
    request.authorities.iter().any(|r| match &r.data {
        RData::SOA(soa) => {
            let theirs = soa.serial;
            theirs == ours || (theirs.wrapping_sub(ours) as i32) > 0
        }
        _ => false,
    })
}

/// Every record of the zone in transfer order: SOA, NS, the names' addresses (in name order),
/// SOA again (RFC 5936 §2.2). The ANY answer (HINFO "RFC8482") is synthesized, not data.
pub fn zone_records(zone: &Zone) -> Vec<Record> {
    let mut names: Vec<&LowerName> = zone.names.keys().collect();
    names.sort();
    let mut records = zone.soa.clone();
    records.extend(zone.ns.iter().cloned());
    for name in names {
        let entry = &zone.names[name];
        records.extend(entry.a.iter().cloned());
        records.extend(entry.aaaa.iter().cloned());
    }
    records.extend(zone.soa.iter().cloned());
    records
}

/// One message of a transfer: the question in the first only (RFC 5936 §2.2.1 allows either).
fn transfer_message(request: &Message, answers: Vec<Record>, first: bool) -> Message {
    let mut message = reply(request, ResponseCode::NoError);
    message.metadata.authoritative = true;
    if !first {
        message.queries.clear();
    }
    message.answers = answers;
    // EDNS belongs to the first message only; no OPT at all is as valid over TCP.
    message.edns = None;
    message
}

/// The response header for `request`: its id, opcode, RD and question, our code.
fn reply(request: &Message, rcode: ResponseCode) -> Message {
    let mut message = Message::new(request.id, MessageType::Response, request.op_code);
    message.metadata.recursion_desired = request.recursion_desired;
    message.metadata.checking_disabled = request.checking_disabled;
    message.metadata.response_code = rcode;
    message.queries = request.queries.clone();
    if let Some(theirs) = &request.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(theirs.max_payload().clamp(512, EDNS_PAYLOAD));
        edns.set_version(0);
        message.set_edns(edns);
    }
    message
}

/// An error answer without a MAC: unsigned, or (`tsig`) with a TSIG record that carries only
/// the error, as RFC 8945 requires for BADKEY and BADSIG.
fn unsigned(
    request: &Message,
    rcode: ResponseCode,
    tsig: Option<(hickory_proto::rr::Name, TsigError)>,
) -> Option<Vec<u8>> {
    let mut response = reply(request, rcode);
    if let Some((key, error)) = tsig {
        let algorithm = request
            .signature
            .as_ref()
            .map(|s| s.data.algorithm.clone())?;
        let stub = TSIG::new(
            algorithm,
            unix_now(),
            300,
            Vec::new(),
            request.id,
            Some(error),
            Vec::new(),
        );
        response.set_signature(Box::new(make_tsig_record(key, stub)));
    }
    response.to_vec().ok()
}

/// The TSIG chain of one exchange (RFC 8945 §5.3): the first response is signed over the
/// request's MAC and the full TSIG variables, each later one over the previous MAC and the
/// timers only.
struct Chain<'s> {
    signer: &'s TSigner,
    id: u16,
    request_mac: Vec<u8>,
    /// The MAC of the last message signed; `None` before the first.
    previous: Option<Vec<u8>>,
    time: u64,
}

impl<'s> Chain<'s> {
    fn new(signer: &'s TSigner, id: u16, request_mac: Vec<u8>, time: u64) -> Self {
        Chain {
            signer,
            id,
            request_mac,
            previous: None,
            time,
        }
    }

    /// `message` encoded with its TSIG record appended.
    fn sign(&mut self, message: &Message) -> Option<Vec<u8>> {
        self.sign_with(message, None, Vec::new())
    }

    /// A signed error (BADTIME carries our time in the other data, §5.2.3).
    fn sign_error(&mut self, request: &Message, error: TsigError, now: u64) -> Option<Vec<u8>> {
        let other = now.to_be_bytes()[2..].to_vec();
        self.sign_with(&reply(request, ResponseCode::NotAuth), Some(error), other)
    }

    fn sign_with(
        &mut self,
        message: &Message,
        error: Option<TsigError>,
        other: Vec<u8>,
    ) -> Option<Vec<u8>> {
        let mut bytes = message.to_vec().ok()?;
        let tsig = TSIG::new(
            self.signer.algorithm().clone(),
            self.time,
            self.signer.fudge(),
            Vec::new(),
            self.id,
            error,
            other,
        );
        let mut tbs = Vec::with_capacity(bytes.len() + 128);
        let mut encoder = BinEncoder::new(&mut tbs);
        let prior = self.previous.as_ref().unwrap_or(&self.request_mac);
        encoder.emit_u16(u16::try_from(prior.len()).ok()?).ok()?;
        encoder.emit_vec(prior).ok()?;
        encoder.emit_vec(&bytes).ok()?;
        if self.previous.is_none() {
            tsig.emit_tsig_for_mac(&mut encoder, self.signer.signer_name())
                .ok()?;
        } else {
            encoder.emit_u16((self.time >> 32) as u16).ok()?;
            encoder.emit_u32(self.time as u32).ok()?;
            encoder.emit_u16(self.signer.fudge()).ok()?;
        }
        let mac = self.signer.sign(&tbs).ok()?;
        let record = make_tsig_record(self.signer.signer_name().clone(), tsig.set_mac(mac.clone()));
        let mut tail = Vec::with_capacity(128);
        record.emit(&mut BinEncoder::new(&mut tail)).ok()?;
        bytes.extend_from_slice(&tail);
        let additional = u16::from_be_bytes([bytes[10], bytes[11]]).checked_add(1)?;
        bytes[10..12].copy_from_slice(&additional.to_be_bytes());
        self.previous = Some(mac);
        Some(bytes)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where NOTIFYs leave from: the DNS listen address of the target's family when it is a
/// specific one, so that a secondary that checks the source against its primaries' addresses
/// (all of them do) sees the address it transfers from.
pub fn notify_source(listen: &[SocketAddr], target: SocketAddr) -> SocketAddr {
    let ip = listen
        .iter()
        .map(SocketAddr::ip)
        .find(|ip| ip.is_ipv4() == target.is_ipv4() && !ip.is_unspecified())
        .unwrap_or(if target.is_ipv4() {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([0u16; 8])
        });
    SocketAddr::new(ip, 0)
}

#[cfg(test)]
mod tests;
