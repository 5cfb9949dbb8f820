//! The table of `xfr`, with messages signed and verified by hickory's own TSIG code.

use std::net::SocketAddr;
use std::path::Path;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::{Name, RData, RecordType, TSigner};

use super::{CHUNK, Secondaries, answer};
use crate::config::{Config, TsigAlgo, TsigKey, parse};
use crate::decide::{Decision, Reason};
use crate::dns::zone::{Zone, build};

const SECONDARY: &str = "192.0.2.60:40000";
const STRANGER: &str = "192.0.2.99:40000";

fn config(hostnames: usize) -> Config {
    let names: String = (0..hostnames)
        .map(|i| format!("  - {{ name: host{i:04}, checks: [web] }}\n"))
        .collect();
    parse(
        Path::new("t.yaml"),
        &format!(
            "zone: ha.example.com\ndns: {{ listen: [\"127.0.0.1:0\"], ttl: 7s }}\n\
             nodes:\n  - {{ id: n1, addresses: [192.0.2.1, \"2001:db8::1\"] }}\n  - {{ id: n2, address: 192.0.2.2 }}\n\
             checks:\n  - {{ id: web, type: tcp, port: 80 }}\n\
             hostnames:\n{names}\
             secondaries:\n  notify: [\"192.0.2.60\"]\n  tsig: {{ name: xfr, secret_env: UNUSED_IN_TESTS }}\n\
             \x20 soa: {{ refresh: 2h, retry: 5m, expire: 2w }}\n"
        ),
    )
    .unwrap()
}

fn zone_of(config: &Config) -> Zone {
    let decisions: Vec<Decision> = config
        .hostnames
        .iter()
        .map(|_| Decision {
            nodes: vec![0],
            reason: Reason::Healthy,
        })
        .collect();
    build(config, &decisions, 2026)
}

fn key(secret: &[u8]) -> TSigner {
    TsigKey {
        name: Name::from_ascii("xfr.").unwrap(),
        algorithm: TsigAlgo::HmacSha256,
        secret: secret.to_vec(),
    }
    .signer()
}

fn secondaries(config: &Config) -> Secondaries {
    Secondaries {
        config: config.secondaries.clone().unwrap(),
        signer: key(b"the shared secret of the test key"),
        counters: Default::default(),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A request for `qtype` of the zone, signed with `signer` when given (at `time`).
fn request(
    qtype: RecordType,
    signer: Option<&TSigner>,
    time: u64,
) -> (Vec<u8>, Option<hickory_proto::rr::TSigVerifier>) {
    let mut message = Message::new(4321, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(
        Name::from_ascii("ha.example.com.").unwrap(),
        qtype,
    ));
    let verifier = signer.and_then(|s| message.finalize(s, time).unwrap());
    (message.to_vec().unwrap(), verifier)
}

fn run(s: &Secondaries, zone: &Zone, raw: &[u8], from: &str, tcp: bool) -> Option<Vec<Vec<u8>>> {
    answer(Some(s), zone, raw, from.parse::<SocketAddr>().unwrap(), tcp)
}

fn rcode(bytes: &[u8]) -> ResponseCode {
    Message::from_vec(bytes).unwrap().response_code
}

#[test]
fn an_allowed_signed_axfr_is_the_whole_zone_in_signed_messages_that_verify_as_a_chain() {
    // Enough names for several messages.
    let config = config(1200);
    let zone = zone_of(&config);
    let s = secondaries(&config);
    let (raw, verifier) = request(RecordType::AXFR, Some(&s.signer), now());
    let messages = run(&s, &zone, &raw, SECONDARY, true).unwrap();
    assert!(messages.len() >= 3, "{} messages", messages.len());
    let mut verifier = verifier.unwrap();
    let mut records = Vec::new();
    for (i, bytes) in messages.iter().enumerate() {
        assert!(
            bytes.len() <= CHUNK + 200,
            "message {i}: {} bytes",
            bytes.len()
        );
        let response = verifier
            .verify(bytes)
            .unwrap_or_else(|e| panic!("message {i}: {e}"));
        assert_eq!(response.response_code, ResponseCode::NoError);
        assert_eq!(response.id, 4321);
        assert!(response.authoritative);
        records.extend(response.answers.iter().cloned());
    }
    let soa_at = |i: usize| matches!(&records[i].data, RData::SOA(soa) if soa.serial == 2026);
    assert!(soa_at(0) && soa_at(records.len() - 1), "SOA first and last");
    let a = records
        .iter()
        .filter(|r| r.record_type() == RecordType::A)
        .count();
    // Every hostname on n1, plus the two nameservers' addresses.
    assert_eq!(a, 1200 + 2);
    let ns = records
        .iter()
        .filter(|r| r.record_type() == RecordType::NS)
        .count();
    assert_eq!(ns, 2);
    assert!(
        !records.iter().any(|r| r.record_type() == RecordType::HINFO),
        "no synthesized ANY answer"
    );
    let RData::SOA(soa) = &records[0].data else {
        unreachable!()
    };
    assert_eq!(
        (soa.refresh, soa.retry, soa.expire),
        (7200, 300, 14 * 86400)
    );
}

#[test]
fn who_gets_what() {
    let config = config(3);
    let zone = zone_of(&config);
    let s = secondaries(&config);
    let t = now();
    let (axfr, _) = request(RecordType::AXFR, Some(&s.signer), t);
    let (unsigned_axfr, _) = request(RecordType::AXFR, None, t);
    let (plain_query, _) = request(RecordType::SOA, None, t);

    // Not this module's business: the usual path answers (and refuses UDP AXFR).
    assert!(run(&s, &zone, &plain_query, STRANGER, false).is_none());
    assert!(run(&s, &zone, &unsigned_axfr, SECONDARY, false).is_none());
    assert!(answer(None, &zone, &axfr, SECONDARY.parse().unwrap(), true).is_none());

    // Unsigned over TCP, from anyone: REFUSED.
    let out = run(&s, &zone, &unsigned_axfr, SECONDARY, true).unwrap();
    assert_eq!(rcode(&out[0]), ResponseCode::Refused);

    // Signed, from an address not allowed: REFUSED, signed.
    let (raw, verifier) = request(RecordType::AXFR, Some(&s.signer), t);
    let out = run(&s, &zone, &raw, STRANGER, true).unwrap();
    let response = verifier.unwrap().verify(&out[0]).unwrap();
    assert_eq!(response.response_code, ResponseCode::Refused);
    assert!(response.answers.is_empty());

    // Signed AXFR over UDP: REFUSED. Signed IXFR over UDP: our SOA alone.
    let out = run(&s, &zone, &axfr, SECONDARY, false).unwrap();
    assert_eq!(rcode(&out[0]), ResponseCode::Refused);
    let (ixfr, verifier) = request(RecordType::IXFR, Some(&s.signer), t);
    let out = run(&s, &zone, &ixfr, SECONDARY, false).unwrap();
    let response = verifier.unwrap().verify(&out[0]).unwrap();
    assert_eq!(response.answers.len(), 1);
    assert_eq!(response.answers[0].record_type(), RecordType::SOA);

    // Another secret: NOTAUTH with BADSIG, unsigned. Another key name: BADKEY.
    let other = key(b"not the secret of the secondaries");
    let (raw, _) = request(RecordType::AXFR, Some(&other), t);
    let out = Message::from_vec(&run(&s, &zone, &raw, SECONDARY, true).unwrap()[0]).unwrap();
    assert_eq!(out.response_code, ResponseCode::NotAuth);
    let tsig = out.signature.as_ref().unwrap();
    assert_eq!(tsig.data.error, Some(TsigError::BadSig));
    assert!(tsig.data.mac.is_empty());
    let renamed = TsigKey {
        name: Name::from_ascii("other.").unwrap(),
        algorithm: TsigAlgo::HmacSha256,
        secret: b"the shared secret of the test key".to_vec(),
    }
    .signer();
    let (raw, _) = request(RecordType::AXFR, Some(&renamed), t);
    let out = Message::from_vec(&run(&s, &zone, &raw, SECONDARY, true).unwrap()[0]).unwrap();
    assert_eq!(
        out.signature.as_ref().unwrap().data.error,
        Some(TsigError::BadKey)
    );

    // Signed an hour ago: NOTAUTH with BADTIME, signed.
    let (raw, _) = request(RecordType::AXFR, Some(&s.signer), t - 3600);
    let out = Message::from_vec(&run(&s, &zone, &raw, SECONDARY, true).unwrap()[0]).unwrap();
    assert_eq!(out.response_code, ResponseCode::NotAuth);
    assert_eq!(
        out.signature.as_ref().unwrap().data.error,
        Some(TsigError::BadTime)
    );

    // A signed SOA query (the secondaries' check), over UDP from anyone with the key: answered, signed.
    let mut query = Message::new(7, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(
        Name::from_ascii("ha.example.com.").unwrap(),
        RecordType::SOA,
    ));
    query.set_edns(Edns::new());
    let mut verifier = query.finalize(&s.signer, t).unwrap().unwrap();
    let out = run(&s, &zone, &query.to_vec().unwrap(), STRANGER, false).unwrap();
    let response = verifier.verify(&out[0]).unwrap();
    assert_eq!(response.response_code, ResponseCode::NoError);
    assert!(response.authoritative);
    assert!(matches!(&response.answers[0].data, RData::SOA(soa) if soa.serial == 2026));
    assert!(response.edns.is_some(), "EDNS answered in kind");
}

#[test]
fn ixfr_is_a_full_transfer_unless_the_secondary_is_up_to_date() {
    let config = config(3);
    let zone = zone_of(&config);
    let s = secondaries(&config);
    let ixfr = |serial: u32| {
        let mut message = Message::new(9, MessageType::Query, OpCode::Query);
        message.add_query(Query::query(
            Name::from_ascii("ha.example.com.").unwrap(),
            RecordType::IXFR,
        ));
        let mut soa = zone.soa[0].clone();
        if let RData::SOA(data) = &mut soa.data {
            data.serial = serial;
        }
        message.authorities.push(soa);
        let verifier = message.finalize(&s.signer, now()).unwrap().unwrap();
        (message.to_vec().unwrap(), verifier)
    };
    let (raw, mut verifier) = ixfr(2025);
    let out = run(&s, &zone, &raw, SECONDARY, true).unwrap();
    let answers: usize = out
        .iter()
        .map(|m| verifier.verify(m).unwrap().answers.len())
        .sum();
    assert_eq!(
        answers,
        2 + 2 + 3 * 2 + 2 + 1,
        "SOA×2, NS×2, hosts×3 (A and AAAA), ns A×2, ns AAAA×1"
    );
    let (raw, mut verifier) = ixfr(2026);
    let out = run(&s, &zone, &raw, SECONDARY, true).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(
        verifier.verify(&out[0]).unwrap().answers.len(),
        1,
        "up to date: the SOA alone"
    );
}

#[test]
fn no_transfer_before_every_hostname_has_an_answer() {
    let config = config(3);
    let zone = Zone::not_ready(&config, 2026, &[]);
    let s = secondaries(&config);
    let (raw, verifier) = request(RecordType::AXFR, Some(&s.signer), now());
    let out = run(&s, &zone, &raw, SECONDARY, true).unwrap();
    let response = verifier.unwrap().verify(&out[0]).unwrap();
    assert_eq!(response.response_code, ResponseCode::ServFail);
}

#[tokio::test(start_paused = true)]
async fn a_secondary_that_stops_reading_loses_its_connection_after_the_write_timeout() {
    use std::sync::Arc;
    use std::time::Duration;

    use arc_swap::{ArcSwap, ArcSwapOption};
    use tokio::io::AsyncWriteExt;

    use crate::connections::{Cap, Limiter};
    use crate::dns::{Answers, QueryHandler};

    let config = config(1200);
    let s = secondaries(&config);
    let (request, _) = request(RecordType::AXFR, Some(&s.signer), now());
    let handler = QueryHandler::new(Arc::new(ArcSwap::from_pointee(Answers::new(zone_of(
        &config,
    )))))
    .with_secondaries(Arc::new(ArcSwapOption::from_pointee(s)));
    let limiter = Arc::new(Limiter::new(
        "test",
        Cap {
            total: 4,
            per_source: 4,
        },
    ));
    let from: SocketAddr = SECONDARY.parse().unwrap();
    let slot = limiter.admit(from.ip()).unwrap();
    // A 4 KiB pipe: the transfer (tens of KiB) cannot be written until the client reads.
    let (mut client, server) = tokio::io::duplex(4096);
    client
        .write_all(&(request.len() as u16).to_be_bytes())
        .await
        .unwrap();
    client.write_all(&request).await.unwrap();
    let started = tokio::time::Instant::now();
    crate::dns::tcp::connection(server, from, &handler, &slot).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(6),
        "the connection ended after {took:?}"
    );
    drop(client);
}
