//! The DNS request path: any datagram in, the bytes the UDP path would send back (or nothing).
//! Every answer must be a well-formed message (no trailing bytes, the query's id, QR set, no
//! bigger than the client may receive), and when the prebuilt fast path answers, hickory's path
//! must give the same response code and the same records.
#![no_main]

use std::path::Path;
use std::sync::Mutex;
use std::sync::OnceLock;

use failoverd::config::Config;
use failoverd::decide::{Decision, Reason};
use failoverd::dns::{Answerer, zone};
use hickory_proto::op::Message;
use hickory_proto::serialize::binary::BinDecodable;
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = "zone: ha.test
self: n1
nodes:
  - { id: n1, addresses: [127.0.0.11, '::1'], priority: 10 }
  - { id: n2, address: 127.0.0.12, priority: 5 }
  - { id: n3, address: 127.0.0.13, priority: 1 }
checks:
  - { id: web, type: tcp, port: 80 }
hostnames:
  - { name: app, checks: [web] }
  - { name: all, checks: [web], mode: all }
  - { name: none, checks: [web], when_all_down: none }
";

fn answerer() -> &'static Mutex<Answerer> {
    static ANSWERER: OnceLock<Mutex<Answerer>> = OnceLock::new();
    ANSWERER.get_or_init(|| {
        let config: Config = failoverd::config::parse(Path::new("fuzz.yaml"), CONFIG)
            .expect("the fuzz config parses");
        let decisions = vec![
            Decision {
                nodes: vec![0],
                reason: Reason::Healthy,
            },
            Decision {
                nodes: vec![0, 1, 2],
                reason: Reason::Healthy,
            },
            Decision {
                nodes: vec![],
                reason: Reason::AllDownEmpty,
            },
        ];
        Mutex::new(Answerer::new(zone::build(&config, &decisions, 2026120101)))
    })
}

/// The largest answer the client may receive over UDP: 512, or its EDNS size capped at ours.
fn limit(query: &Message) -> usize {
    query.edns.as_ref().map_or(512, |e| {
        usize::from(e.max_payload().clamp(512, failoverd::dns::EDNS_PAYLOAD))
    })
}

fn check(query: &[u8], answer: &[u8], path: &str) -> Message {
    let parsed =
        Message::from_bytes(answer).unwrap_or_else(|e| panic!("{path} answer does not parse: {e}"));
    assert_eq!(
        parsed.metadata.id,
        u16::from_be_bytes([query[0], query[1]]),
        "{path}: id"
    );
    assert!(answer[2] & 0x80 != 0, "{path}: QR not set");
    // (A query whose counts cannot fit is not parsed here either: hickory would reserve room
    // for every counted entry first, which costs more than the rest of the run.)
    if failoverd::dns::counts_fit(query)
        && let Ok(q) = Message::from_bytes(query)
    {
        assert!(
            answer.len() <= limit(&q),
            "{path}: {} bytes over UDP",
            answer.len()
        );
    }
    parsed
}

fuzz_target!(|data: &[u8]| {
    if !Answerer::is_query(data) {
        return;
    }
    let mut answerer = answerer().lock().unwrap();
    let fast = answerer.fast(data);
    let slow = answerer.slow(data);
    if let Some(slow) = &slow {
        check(data, slow, "slow");
    }
    if let Some(fast) = &fast {
        let f = check(data, fast, "fast");
        let s = slow
            .as_deref()
            .map(|s| Message::from_bytes(s).expect("checked above"));
        let s = s.expect("the fast path answered a query hickory's path drops");
        assert_eq!(
            f.metadata.response_code, s.metadata.response_code,
            "fast and slow rcodes differ"
        );
        assert_eq!(f.answers, s.answers, "fast and slow answers differ");
    }
});
