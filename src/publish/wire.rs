//! The messages of publishing and one exchange with a server: the UPDATE that replaces a name's
//! A and AAAA RRsets, the queries that read them back, and what a refusal means in words.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};
use hickory_proto::serialize::binary::BinEncodable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The largest UDP message sent; a larger update goes over TCP.
const MAX_UDP: usize = 1232;

/// The A and AAAA RRsets of one name, sorted (the order of an RRset carries no meaning).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addresses {
    pub ips: Vec<IpAddr>,
    /// TTL of the records; 0 when there are none.
    pub ttl: u32,
}

impl Addresses {
    pub fn new(mut ips: Vec<IpAddr>, ttl: u32) -> Self {
        ips.sort();
        ips.dedup();
        let ttl = if ips.is_empty() { 0 } else { ttl };
        Self { ips, ttl }
    }

    /// For logs: `192.0.2.1, 2001:db8::1 (ttl 10)` or `none`.
    pub fn describe(&self) -> String {
        if self.ips.is_empty() {
            return "none".to_string();
        }
        let ips: Vec<String> = self.ips.iter().map(|ip| ip.to_string()).collect();
        format!("{} (ttl {})", ips.join(", "), self.ttl)
    }
}

/// The UPDATE that makes `name` hold exactly `addresses`: delete the A RRset, delete the AAAA
/// RRset, add each address (RFC 2136 §2.5.2, §2.5.1), applied by the server as one.
pub fn replace_addresses(zone: &Name, name: &Name, addresses: &Addresses) -> Message {
    let mut message = Message::new(rand::random(), MessageType::Query, OpCode::Update);
    let mut zone_query = Query::query(zone.clone(), RecordType::SOA);
    zone_query.set_query_class(DNSClass::IN);
    message.add_zone(zone_query);
    for kind in [RecordType::A, RecordType::AAAA] {
        let mut delete = Record::update0(name.clone(), 0, kind);
        delete.dns_class = DNSClass::ANY;
        message.add_update(delete);
    }
    for ip in &addresses.ips {
        let data = match ip {
            IpAddr::V4(v4) => RData::A(A(*v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
        };
        message.add_update(Record::from_rdata(name.clone(), addresses.ttl, data));
    }
    message
}

/// A plain query (no recursion) for `name`/`kind`.
pub fn query(name: &Name, kind: RecordType) -> Message {
    let mut message = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    message.add_query(Query::query(name.clone(), kind));
    message
}

/// Why an exchange did not give the wanted result, in words an operator acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No answer in time.
    Timeout(Duration),
    /// The server cannot be reached (refused, unreachable, reset).
    Network(String),
    /// The server answered with an error.
    Refused {
        rcode: ResponseCode,
        tsig_error: Option<TsigError>,
    },
    /// The answer cannot be trusted or read (unsigned or badly signed answer to a signed
    /// update, undecodable, another id).
    BadAnswer(String),
}

impl Failure {
    /// The message for logs and the `publish_failed` event (the server and zone are added by
    /// the caller's context).
    pub fn explain(&self, zone: &Name, signed: Option<&TSigner>) -> String {
        let zone = zone.to_ascii();
        let zone = zone.trim_end_matches('.');
        let key = signed.map(|s| {
            format!(
                "`{}` ({})",
                s.signer_name().to_ascii().trim_end_matches('.'),
                s.algorithm().to_name().to_ascii().trim_end_matches('.')
            )
        });
        match self {
            Failure::Timeout(after) => format!(
                "no answer within {} ms: the server is down, or a firewall drops DNS to it",
                after.as_millis()
            ),
            Failure::Network(why) => format!("cannot reach the server: {why}"),
            Failure::BadAnswer(why) => format!("the server's answer cannot be used: {why}"),
            Failure::Refused { tsig_error: Some(error), .. } => {
                let key = key.unwrap_or_else(|| "(none)".to_string());
                match error {
                    TsigError::BadSig => format!(
                        "the server rejected the signature (TSIG BADSIG): the secret of key {key} differs from the one the server has; put the same secret on both sides"
                    ),
                    TsigError::BadKey => format!(
                        "the server does not know key {key} (TSIG BADKEY): add the key to the server, or correct publish.tsig.name / algorithm to the server's"
                    ),
                    TsigError::BadTime => "the server rejected the signature's time (TSIG BADTIME): this machine's clock and the server's differ by more than 5 minutes; synchronise them (NTP)".to_string(),
                    other => format!("the server rejected the signature (TSIG error {})", u16::from(*other)),
                }
            }
            Failure::Refused { rcode, tsig_error: None } => match *rcode {
                ResponseCode::Refused => match key {
                    Some(key) => format!(
                        "the server refused the update (REFUSED): key {key} is not allowed to change names in zone {zone}, or its secret differs from the server's (PowerDNS answers a bad signature so); check the secret, and grant the key (BIND update-policy, Knot acl action update, PowerDNS TSIG-ALLOW-DNSUPDATE)"
                    ),
                    None => format!(
                        "the server refused the unsigned update (REFUSED): it accepts no nonsecure updates of zone {zone} from this address; allow them (Windows: \"Nonsecure and secure\"; BIND allow-update; PowerDNS allow-dnsupdate-from) or set publish.tsig"
                    ),
                },
                ResponseCode::NotAuth => match key {
                    Some(key) => format!(
                        "the server is not authoritative for zone {zone}, or does not let key {key} change it (NOTAUTH): check publish.zone, that the server is a primary for it, and its rules for the key (Knot acl action update)"
                    ),
                    None => format!(
                        "the server refused the unsigned update, or is not authoritative for zone {zone} (NOTAUTH): if the zone is right, the server wants signed updates: set publish.tsig (Knot answers NOTAUTH when no acl allows the update)"
                    ),
                },
                ResponseCode::NotZone => format!(
                    "a name is outside zone {zone} (NOTZONE): publish.zone must be the agent's zone or a parent of it, as the server has it"
                ),
                ResponseCode::ServFail => "the server failed to apply the update (SERVFAIL): see its log (a read-only zone file or a journal it cannot write?)".to_string(),
                ResponseCode::NotImp => "the server does not take dynamic updates (NOTIMP): enable them for the zone (PowerDNS: dnsupdate=yes)".to_string(),
                ResponseCode::FormErr => "the server could not parse the update (FORMERR)".to_string(),
                ResponseCode::YXDomain | ResponseCode::YXRRSet | ResponseCode::NXRRSet | ResponseCode::NXDomain => format!(
                    "the server refused the update ({rcode}): a record of another type (a CNAME?) may own the name"
                ),
                other => format!("the server answered {other}"),
            },
        }
    }
}

/// Sends `message` (signed with `signer` when given) and returns the answer, checked: same id,
/// a response, NOERROR or NXDOMAIN (for queries), and, for a signed message, a valid signature.
pub async fn exchange(
    server: SocketAddr,
    mut message: Message,
    signer: Option<&TSigner>,
    timeout: Duration,
) -> Result<Message, Failure> {
    let mut verifier = match signer {
        Some(signer) => {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            message
                .finalize(signer, now)
                .map_err(|e| Failure::BadAnswer(format!("cannot sign the update: {e}")))?
        }
        None => None,
    };
    let bytes = message
        .to_bytes()
        .map_err(|e| Failure::BadAnswer(format!("cannot encode the message: {e}")))?;
    let id = message.metadata.id;
    let run = async {
        let mut answer = if bytes.len() <= MAX_UDP {
            udp(server, &bytes, id).await?
        } else {
            tcp(server, &bytes).await?
        };
        let mut parsed = decode(&answer, id)?;
        if parsed.metadata.truncation {
            answer = tcp(server, &bytes).await?;
            parsed = decode(&answer, id)?;
        }
        Ok::<_, Failure>((answer, parsed))
    };
    let (answer, parsed) = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| Failure::Timeout(timeout))??;
    let rcode = parsed.metadata.response_code;
    let tsig_error = parsed.signature().and_then(|s| s.data.error);
    let ok = matches!(rcode, ResponseCode::NoError)
        || (message.metadata.op_code == OpCode::Query && rcode == ResponseCode::NXDomain);
    if !ok || tsig_error.is_some() {
        return Err(Failure::Refused { rcode, tsig_error });
    }
    if let Some(verifier) = verifier.as_mut() {
        if parsed.signature().is_none() {
            return Err(Failure::BadAnswer(
                "the answer to the signed update is not signed; the server does not use the key (or something between rewrote the answer)".into(),
            ));
        }
        verifier.verify(&answer).map_err(|e| {
            Failure::BadAnswer(format!(
                "the answer's signature does not verify with our key: {e}"
            ))
        })?;
    }
    Ok(parsed)
}

fn decode(answer: &[u8], id: u16) -> Result<Message, Failure> {
    let parsed = Message::from_vec(answer)
        .map_err(|e| Failure::BadAnswer(format!("undecodable answer: {e}")))?;
    if parsed.metadata.id != id || parsed.metadata.message_type != MessageType::Response {
        return Err(Failure::BadAnswer("an answer to another message".into()));
    }
    Ok(parsed)
}

async fn udp(server: SocketAddr, bytes: &[u8], id: u16) -> Result<Vec<u8>, Failure> {
    let local: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("valid")
    } else {
        "[::]:0".parse().expect("valid")
    };
    let network = |e: std::io::Error| Failure::Network(e.to_string());
    let socket = UdpSocket::bind(local).await.map_err(network)?;
    socket.connect(server).await.map_err(network)?;
    socket.send(bytes).await.map_err(network)?;
    let mut buffer = vec![0u8; 65_535];
    // A stray datagram with another id is skipped; the caller's timeout bounds the loop.
    loop {
        let n = socket.recv(&mut buffer).await.map_err(network)?;
        if n >= 2 && u16::from_be_bytes([buffer[0], buffer[1]]) == id {
            return Ok(buffer[..n].to_vec());
        }
    }
}

async fn tcp(server: SocketAddr, bytes: &[u8]) -> Result<Vec<u8>, Failure> {
    let network = |e: std::io::Error| Failure::Network(e.to_string());
    let mut stream = TcpStream::connect(server).await.map_err(network)?;
    let length = u16::try_from(bytes.len())
        .map_err(|_| Failure::BadAnswer("the message is larger than 64 KiB".into()))?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await.map_err(network)?;
    let length = stream.read_u16().await.map_err(network)? as usize;
    let mut answer = vec![0u8; length];
    stream.read_exact(&mut answer).await.map_err(network)?;
    Ok(answer)
}

/// The addresses of `name` in an answer to an A or AAAA query.
pub fn addresses_in(answer: &Message, name: &Name) -> (Vec<IpAddr>, Option<u32>) {
    let mut ips = Vec::new();
    let mut ttl = None;
    for record in &answer.answers {
        if !record.name.eq_case(name) && record.name != *name {
            continue;
        }
        let ip = match &record.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(aaaa) => IpAddr::V6(aaaa.0),
            _ => continue,
        };
        ips.push(ip);
        ttl = Some(ttl.map_or(record.ttl, |t: u32| t.min(record.ttl)));
    }
    (ips, ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_update_deletes_both_rrsets_then_adds_each_address() {
        let zone = Name::from_ascii("example.com.").unwrap();
        let name = Name::from_ascii("www.app.example.com.").unwrap();
        let addresses = Addresses::new(
            vec!["2001:db8::1".parse().unwrap(), "192.0.2.1".parse().unwrap()],
            10,
        );
        let message = replace_addresses(&zone, &name, &addresses);
        assert_eq!(message.metadata.op_code, OpCode::Update);
        assert_eq!(message.queries.len(), 1, "one zone");
        assert_eq!(message.queries[0].query_type(), RecordType::SOA);
        let updates = &message.authorities;
        assert_eq!(updates.len(), 4);
        assert_eq!(updates[0].dns_class, DNSClass::ANY);
        assert_eq!(updates[0].data, RData::Update0(RecordType::A));
        assert_eq!(updates[1].data, RData::Update0(RecordType::AAAA));
        assert_eq!(updates[2].data, RData::A(A::new(192, 0, 2, 1)));
        assert_eq!(updates[2].ttl, 10);
        assert!(matches!(updates[3].data, RData::AAAA(_)));
        // It encodes and decodes as the same message.
        let bytes = message.to_bytes().unwrap();
        let back = Message::from_vec(&bytes).unwrap();
        assert_eq!(back.authorities.len(), 4);
    }

    #[test]
    fn a_wrong_key_is_explained() {
        let zone = Name::from_ascii("example.com.").unwrap();
        let bad_sig = Failure::Refused {
            rcode: ResponseCode::NotAuth,
            tsig_error: Some(TsigError::BadSig),
        };
        assert!(bad_sig.explain(&zone, None).contains("secret"));
        let refused = Failure::Refused {
            rcode: ResponseCode::Refused,
            tsig_error: None,
        };
        assert!(
            refused
                .explain(&zone, None)
                .contains("Nonsecure and secure")
        );
    }
}
