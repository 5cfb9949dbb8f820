//! The answer table of `respond`, and the request handler driven with real wire bytes.

use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, RecordType};
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler};

use super::respond::respond;
use super::udp::Capture;
use super::zone::{Zone, build};
use super::{Answers, DnsSockets, EDNS_PAYLOAD, QueryCounters, QueryHandler, bind_socket};
use crate::config::{Config, parse};
use crate::decide::{Decision, Reason};
use socket2::Type;

fn config() -> Config {
    // Forty IPv6 addresses on `big`: too large for a 512-byte UDP reply, small enough for 1232.
    let many: Vec<String> = (1..=40).map(|i| format!("\"2001:db8::{i:x}\"")).collect();
    parse(
        Path::new("t.yaml"),
        &format!(
            r#"
zone: ha.example.com
dns: {{ listen: ["127.0.0.1:0"], ttl: 7s }}
nodes:
  - {{ id: n1, addresses: [192.0.2.1, "2001:db8::1"], priority: 2 }}
  - {{ id: n2, address: 192.0.2.2, priority: 1 }}
  - {{ id: big, addresses: [{}], priority: 0 }}
checks:
  - {{ id: web, type: http, url: "http://{{address}}/" }}
hostnames:
  - {{ name: app, checks: [web] }}
  - {{ name: a.b.c, checks: [web] }}
  - {{ name: v4, checks: [web], family: ipv4, nodes: [n1] }}
  - {{ name: empty, checks: [web], when_all_down: none, nodes: [n2] }}
  - {{ name: big, checks: [web], nodes: [big] }}
"#,
            many.join(", ")
        ),
    )
    .unwrap()
}

fn zone() -> Zone {
    let healthy = |nodes: Vec<usize>| Decision {
        nodes,
        reason: Reason::Healthy,
    };
    let decisions = vec![
        healthy(vec![0]),
        healthy(vec![1]),
        healthy(vec![0]),
        Decision {
            nodes: vec![],
            reason: Reason::AllDownEmpty,
        },
        healthy(vec![2]),
    ];
    build(&config(), &decisions, 42)
}

fn name(s: &str) -> LowerName {
    LowerName::new(&Name::from_str(s).unwrap())
}

#[test]
fn respond_follows_the_table() {
    let z = zone();
    use RecordType::*;
    use ResponseCode::*;
    // (name, type, class, rcode, authoritative, answers, authority, additional)
    type Row<'a> = (
        &'a str,
        RecordType,
        DNSClass,
        ResponseCode,
        bool,
        usize,
        usize,
        usize,
    );
    let table: &[Row] = &[
        (
            "app.ha.example.com.",
            A,
            DNSClass::IN,
            NoError,
            true,
            1,
            0,
            0,
        ),
        (
            "APP.HA.Example.COM.",
            A,
            DNSClass::IN,
            NoError,
            true,
            1,
            0,
            0,
        ),
        (
            "app.ha.example.com.",
            AAAA,
            DNSClass::IN,
            NoError,
            true,
            1,
            0,
            0,
        ),
        (
            "app.ha.example.com.",
            ANY,
            DNSClass::IN,
            NoError,
            true,
            1,
            0,
            0,
        ),
        (
            "app.ha.example.com.",
            A,
            DNSClass::ANY,
            NoError,
            true,
            1,
            0,
            0,
        ),
        (
            "app.ha.example.com.",
            MX,
            DNSClass::IN,
            NoError,
            true,
            0,
            1,
            0,
        ),
        (
            "v4.ha.example.com.",
            AAAA,
            DNSClass::IN,
            NoError,
            true,
            0,
            1,
            0,
        ),
        (
            "empty.ha.example.com.",
            A,
            DNSClass::IN,
            NoError,
            true,
            0,
            1,
            0,
        ),
        (
            "b.c.ha.example.com.",
            A,
            DNSClass::IN,
            NoError,
            true,
            0,
            1,
            0,
        ),
        ("c.ha.example.com.", A, DNSClass::IN, NoError, true, 0, 1, 0),
        (
            "x.a.b.c.ha.example.com.",
            A,
            DNSClass::IN,
            NXDomain,
            true,
            0,
            1,
            0,
        ),
        (
            "nope.ha.example.com.",
            A,
            DNSClass::IN,
            NXDomain,
            true,
            0,
            1,
            0,
        ),
        ("ha.example.com.", SOA, DNSClass::IN, NoError, true, 1, 0, 0),
        ("ha.example.com.", NS, DNSClass::IN, NoError, true, 3, 0, 43),
        ("ha.example.com.", ANY, DNSClass::IN, NoError, true, 1, 0, 0),
        ("ha.example.com.", A, DNSClass::IN, NoError, true, 0, 1, 0),
        (
            "ns-n1.ha.example.com.",
            A,
            DNSClass::IN,
            NoError,
            true,
            1,
            0,
            0,
        ),
        (
            "ns-n1.ha.example.com.",
            AAAA,
            DNSClass::IN,
            NoError,
            true,
            1,
            0,
            0,
        ),
        ("example.com.", SOA, DNSClass::IN, Refused, false, 0, 0, 0),
        (
            "ha.example.com.evil.",
            A,
            DNSClass::IN,
            Refused,
            false,
            0,
            0,
            0,
        ),
        (
            "app.ha.example.com.",
            A,
            DNSClass::CH,
            Refused,
            false,
            0,
            0,
            0,
        ),
        (
            "ha.example.com.",
            AXFR,
            DNSClass::IN,
            Refused,
            false,
            0,
            0,
            0,
        ),
        (
            "ha.example.com.",
            IXFR,
            DNSClass::IN,
            Refused,
            false,
            0,
            0,
            0,
        ),
    ];
    for &(n, t, class, rcode, aa, answers, authority, additional) in table {
        let r = respond(&z, &name(n), t, class);
        let got = (
            r.rcode,
            r.authoritative,
            r.answers.len(),
            r.authority.len(),
            r.additional.len(),
        );
        assert_eq!(
            got,
            (rcode, aa, answers, authority, additional),
            "{n} {t} {class}"
        );
        if authority > 0 {
            assert_eq!(
                r.authority[0].record_type(),
                SOA,
                "negative answers carry the SOA: {n} {t}"
            );
        }
    }
}

#[test]
fn before_the_first_round_hostnames_get_servfail_and_the_static_data_is_answered() {
    let z = Zone::not_ready(&config(), 42, &[]);
    let ask = |n: &str, t| respond(&z, &name(n), t, DNSClass::IN);
    for t in [RecordType::A, RecordType::AAAA, RecordType::ANY] {
        assert_eq!(ask("app.ha.example.com.", t).rcode, ResponseCode::ServFail);
    }
    // The apex, the nameservers and their glue, the set of names: all from the configuration.
    let soa = ask("ha.example.com.", RecordType::SOA);
    assert_eq!((soa.rcode, soa.answers.len()), (ResponseCode::NoError, 1));
    let RData::SOA(data) = &soa.answers[0].data else {
        panic!("SOA")
    };
    assert_eq!(data.serial, 42);
    let ns = ask("ha.example.com.", RecordType::NS);
    assert_eq!((ns.answers.len(), ns.additional.len()), (3, 43));
    assert_eq!(ask("ns-n2.ha.example.com.", RecordType::A).answers.len(), 1);
    assert_eq!(
        ask("nope.ha.example.com.", RecordType::A).rcode,
        ResponseCode::NXDomain
    );
    let nodata = ask("app.ha.example.com.", RecordType::MX);
    assert_eq!(
        (nodata.rcode, nodata.authority.len()),
        (ResponseCode::NoError, 1)
    );
    assert_eq!(
        respond(&z, &name("example.org."), RecordType::A, DNSClass::IN).rcode,
        ResponseCode::Refused
    );

    // With a saved answer for `app` (the second hostname has none): `app` is answered.
    let saved = [Some(Decision {
        nodes: vec![1],
        reason: Reason::Healthy,
    })];
    let z = Zone::not_ready(&config(), 42, &saved);
    let app = respond(
        &z,
        &name("app.ha.example.com."),
        RecordType::A,
        DNSClass::IN,
    );
    assert_eq!(
        app.answers[0].data,
        RData::A("192.0.2.2".parse::<std::net::Ipv4Addr>().unwrap().into())
    );
    let other = respond(
        &z,
        &name("a.b.c.ha.example.com."),
        RecordType::A,
        DNSClass::IN,
    );
    assert_eq!(other.rcode, ResponseCode::ServFail);
}

#[test]
fn any_is_answered_minimally() {
    let z = zone();
    let apex = respond(&z, &name("ha.example.com."), RecordType::ANY, DNSClass::IN);
    assert_eq!(
        apex.answers,
        &z.soa[..],
        "one RRset: the SOA, without the NS and glue"
    );
    assert!(apex.additional.is_empty());
    let app = respond(
        &z,
        &name("app.ha.example.com."),
        RecordType::ANY,
        DNSClass::IN,
    );
    let RData::HINFO(hinfo) = &app.answers[0].data else {
        panic!("{app:?}")
    };
    assert_eq!((&hinfo.cpu[..], &hinfo.os[..]), (&b"RFC8482"[..], &b""[..]));
    assert_eq!(app.answers[0].ttl, 7);
}

#[test]
fn records_carry_the_configured_ttls_and_the_serial() {
    let z = zone();
    let a = respond(
        &z,
        &name("app.ha.example.com."),
        RecordType::A,
        DNSClass::IN,
    );
    assert_eq!(a.answers[0].ttl, 7);
    assert_eq!(
        a.answers[0].data,
        RData::A("192.0.2.1".parse::<std::net::Ipv4Addr>().unwrap().into())
    );
    let ns = respond(&z, &name("ha.example.com."), RecordType::NS, DNSClass::IN);
    assert_eq!(ns.answers[0].ttl, 3600);
    let RData::SOA(soa) = &z.soa[0].data else {
        panic!("SOA")
    };
    assert_eq!((soa.serial, soa.minimum), (42, 7));
    assert_eq!(soa.mname.to_ascii(), "ns-n1.ha.example.com.");
    // The default mailbox is outside the zone, where mail can be received.
    assert_eq!(soa.rname.to_ascii(), "hostmaster.example.com.");
}

async fn ask(message: &Message) -> Message {
    let handler = QueryHandler::new(Arc::new(ArcSwap::from_pointee(Answers::new(zone()))));
    let src: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let request = Request::from_bytes(message.to_vec().unwrap(), src, Protocol::Udp).unwrap();
    let capture = Capture::default();
    handler
        .handle_request::<_, TokioTime>(&request, capture.clone())
        .await;
    let bytes = capture.bytes.lock().unwrap().clone();
    Message::from_vec(&bytes).unwrap()
}

fn query(n: &str, t: RecordType) -> Message {
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_str(n).unwrap(), t));
    m.metadata.recursion_desired = true;
    m
}

#[tokio::test]
async fn the_handler_sets_the_header_and_never_offers_recursion() {
    let r = ask(&query("app.ha.example.com.", RecordType::A)).await;
    assert_eq!(r.metadata.id, 7);
    assert_eq!(r.metadata.message_type, MessageType::Response);
    assert!(
        r.metadata.authoritative && r.metadata.recursion_desired && !r.metadata.recursion_available
    );
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.queries.len(), 1, "the question is echoed");
}

#[tokio::test]
async fn bad_requests_get_error_codes() {
    let mut two = query("app.ha.example.com.", RecordType::A);
    two.add_query(Query::query(
        Name::from_str("ha.example.com.").unwrap(),
        RecordType::SOA,
    ));
    assert_eq!(
        ask(&two).await.metadata.response_code,
        ResponseCode::FormErr
    );

    let mut notify = query("ha.example.com.", RecordType::SOA);
    notify.metadata.op_code = OpCode::Notify;
    assert_eq!(
        ask(&notify).await.metadata.response_code,
        ResponseCode::NotImp
    );

    let mut v1 = query("app.ha.example.com.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_version(1);
    v1.set_edns(edns);
    let r = ask(&v1).await;
    // BADVERS (16) is an extended rcode whose high bits travel in the OPT record; it shares
    // its number with BADSIG, which is how the decoder names it.
    assert_eq!(
        u16::from(r.metadata.response_code),
        u16::from(ResponseCode::BADVERS),
        "{r:?}"
    );
}

#[tokio::test]
async fn edns_size_is_capped_and_large_answers_truncate() {
    // Without EDNS: 512 bytes; 40 AAAA records do not fit, so TC is set and TCP takes over.
    let plain = ask(&query("big.ha.example.com.", RecordType::AAAA)).await;
    assert!(plain.metadata.truncation, "TC set without EDNS");
    assert!(plain.answers.len() < 40);

    // A client offering 4096 gets at most our 1232, advertised in the OPT record.
    let mut large = query("big.ha.example.com.", RecordType::AAAA);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    large.set_edns(edns);
    let r = ask(&large).await;
    assert_eq!(r.edns.as_ref().map(|e| e.max_payload()), Some(EDNS_PAYLOAD));
    assert!(
        !r.metadata.truncation,
        "40 AAAA (~1.1 kB) fit in 1232 bytes"
    );
    assert_eq!(r.answers.len(), 40);
}

/// Reads an int socket option back.
fn int_option(fd: std::os::fd::RawFd, level: libc::c_int, option: libc::c_int) -> libc::c_int {
    let mut value: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid descriptor and an int-sized buffer.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            option,
            std::ptr::from_mut(&mut value).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    value
}

#[test]
fn udp_sockets_send_with_dont_fragment_and_tcp_is_left_alone() {
    use std::os::fd::AsRawFd;
    let v4 = bind_socket("127.0.0.1:0".parse().unwrap(), Type::DGRAM).unwrap();
    assert_eq!(
        int_option(v4.as_raw_fd(), libc::IPPROTO_IP, libc::IP_MTU_DISCOVER),
        libc::IP_PMTUDISC_PROBE
    );
    let v6 = bind_socket("[::1]:0".parse().unwrap(), Type::DGRAM).unwrap();
    assert_eq!(
        int_option(v6.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG),
        1
    );
    let tcp = bind_socket("127.0.0.1:0".parse().unwrap(), Type::STREAM).unwrap();
    assert_ne!(
        int_option(tcp.as_raw_fd(), libc::IPPROTO_IP, libc::IP_MTU_DISCOVER),
        libc::IP_PMTUDISC_PROBE
    );
}

/// One query over real UDP to `server`; the decoded answer.
async fn ask_over_udp(
    client: &tokio::net::UdpSocket,
    server: SocketAddr,
    message: &Message,
) -> Message {
    client
        .send_to(&message.to_vec().unwrap(), server)
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, from) = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        client.recv_from(&mut buf),
    )
    .await
    .expect("an answer within 5 s")
    .unwrap();
    assert_eq!(from, server);
    Message::from_vec(&buf[..n]).unwrap()
}

#[tokio::test]
async fn udp_answers_from_a_lower_priority_thread_both_paths_and_frees_the_port_at_shutdown() {
    let sockets = DnsSockets::bind(&["127.0.0.1:0".parse().unwrap()]).unwrap();
    let addr = sockets.local_addrs()[0];
    let counters = Arc::new(QueryCounters::default());
    let mut server = sockets
        .serve(
            Arc::new(ArcSwap::from_pointee(Answers::new(zone()))),
            counters.clone(),
        )
        .unwrap();
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();

    // The prebuilt answer, then a name outside the zone through the hickory handler.
    let r = ask_over_udp(&client, addr, &query("app.ha.example.com.", RecordType::A)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        r.answers[0].data,
        RData::A("192.0.2.1".parse::<std::net::Ipv4Addr>().unwrap().into())
    );
    let r = ask_over_udp(&client, addr, &query("example.org.", RecordType::A)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    let counted = counters.snapshot();
    assert!(counted.contains(&("NOERROR".to_string(), 1)), "{counted:?}");
    assert!(counted.contains(&("REFUSED".to_string(), 1)), "{counted:?}");

    // The answering thread gives way to health checks when the CPU is short.
    let nice = |stat_path: std::path::PathBuf| -> i32 {
        let stat = std::fs::read_to_string(stat_path).unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(16).unwrap().parse().unwrap()
    };
    let base = nice("/proc/thread-self/stat".into());
    let expected = (base + super::udp::DNS_NICE).min(19);
    let dns_thread_nices = || -> Vec<i32> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| {
                let dir = task.ok()?.path();
                let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
                (comm.trim() == "dns-udp").then(|| nice(dir.join("stat")))
            })
            .collect()
    };
    // Our thread has answered, so it has lowered its priority; a dns-udp thread another test
    // has just started may not have yet, hence the wait.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let found = dns_thread_nices();
        if !found.is_empty() && found.iter().all(|&n| n == expected) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dns-udp threads at nice {found:?}, expected {expected}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // After shutdown the thread lets go of the socket: the address can be bound again.
    server.shutdown_gracefully().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::net::UdpSocket::bind(addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{addr} still held after shutdown"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A zone with `n` dual-stack nodes and a `mode: all` hostname `wide` answering with all of them.
fn wide_zone(n: usize) -> Zone {
    let nodes: String = (1..=n)
        .map(|i| format!("  - {{ id: n{i}, addresses: [198.51.100.{i}, \"2001:db8::{i:x}\"] }}\n"))
        .collect();
    let config = parse(
        Path::new("t.yaml"),
        &format!(
            "zone: ha.example.com\ndns: {{ listen: [\"127.0.0.1:0\"] }}\nnodes:\n{nodes}\
             checks:\n  - {{ id: web, type: http, url: \"http://{{address}}/\" }}\n\
             hostnames:\n  - {{ name: wide, checks: [web], mode: all }}\n"
        ),
    )
    .unwrap();
    let all = Decision {
        nodes: (0..n).collect(),
        reason: Reason::Healthy,
    };
    build(&config, &[all], 42)
}

/// `zone` served on a fresh loopback port (UDP and TCP): the address and the server to shut down.
fn serve_on_loopback(zone: Zone) -> (SocketAddr, super::DnsServer) {
    let sockets = DnsSockets::bind(&["127.0.0.1:0".parse().unwrap()]).unwrap();
    let addr = sockets.local_addrs()[0];
    let server = sockets
        .serve(
            Arc::new(ArcSwap::from_pointee(Answers::new(zone))),
            Arc::default(),
        )
        .unwrap();
    (addr, server)
}

/// Decodes a whole message as a strict parser does (dnspython, kdig): every count honoured and
/// not one byte left over.
fn strict(bytes: &[u8]) -> Message {
    use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
    let mut decoder = BinDecoder::new(bytes);
    let message = Message::read(&mut decoder).unwrap_or_else(|e| panic!("{e}: {bytes:02x?}"));
    assert!(
        decoder.is_empty(),
        "{} trailing bytes after {message:?}",
        decoder.len()
    );
    message
}

/// One raw UDP exchange: the response bytes.
async fn udp_bytes(
    client: &tokio::net::UdpSocket,
    server: SocketAddr,
    message: &Message,
) -> Vec<u8> {
    client
        .send_to(&message.to_vec().unwrap(), server)
        .await
        .unwrap();
    let mut buf = vec![0u8; 65_535];
    let (n, _) = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        client.recv_from(&mut buf),
    )
    .await
    .expect("an answer within 5 s")
    .unwrap();
    buf.truncate(n);
    buf
}

fn with_edns(mut m: Message, size: u16, dnssec_ok: bool) -> Message {
    let mut edns = Edns::new();
    edns.set_max_payload(size);
    edns.set_dnssec_ok(dnssec_ok);
    m.set_edns(edns);
    m
}

#[tokio::test]
async fn udp_answers_too_large_are_whole_messages_with_tc_and_the_opt() {
    let (addr, mut server) = serve_on_loopback(wide_zone(45));
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let wide = "wide.ha.example.com.";
    // (question, EDNS size, whether the whole answer fits): 45 A are ~740 bytes, 45 AAAA
    // ~1,280, the apex NS with 90 glue records far more.
    let cases = [
        (query(wide, RecordType::A), None, false),
        (query(wide, RecordType::A), Some(1232), true),
        (query(wide, RecordType::AAAA), None, false),
        (query(wide, RecordType::AAAA), Some(1232), false),
        (query("ha.example.com.", RecordType::NS), None, false),
        (query("ha.example.com.", RecordType::NS), Some(1232), false),
        (query("ha.example.com.", RecordType::SOA), None, true),
    ];
    for (question, size, fits) in cases {
        let qtype = question.queries[0].query_type();
        let asked = match size {
            Some(size) => with_edns(question, size, true),
            None => question,
        };
        let bytes = udp_bytes(&client, addr, &asked).await;
        let what = format!("{qtype} with EDNS {size:?}");
        assert!(
            bytes.len() <= usize::from(size.unwrap_or(512)),
            "{what}: {} bytes",
            bytes.len()
        );
        let r = strict(&bytes);
        assert_eq!(r.metadata.truncation, !fits, "{what}: TC");
        assert_eq!(r.queries.len(), 1, "{what}: the question is echoed");
        if fits {
            assert!(!r.answers.is_empty(), "{what}");
        } else {
            // Nothing partial: no cut RRset a resolver might cache as if whole.
            assert!(
                r.answers.is_empty() && r.authorities.is_empty() && r.additionals.is_empty(),
                "{what}: {r:?}"
            );
        }
        match size {
            Some(_) => {
                let edns = r.edns.as_ref().unwrap_or_else(|| panic!("{what}: no OPT"));
                assert_eq!(edns.max_payload(), EDNS_PAYLOAD, "{what}");
                assert!(edns.flags().dnssec_ok, "{what}: DO copied back");
            }
            None => assert!(r.edns.is_none(), "{what}: an OPT without EDNS"),
        }
    }
    server.shutdown_gracefully().await.unwrap();
}

#[tokio::test]
async fn the_do_bit_is_copied_back_on_both_paths_and_only_when_set() {
    let (addr, mut server) = serve_on_loopback(zone());
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // A prebuilt answer (fast path) and a name outside the zone (the hickory handler).
    for name in ["app.ha.example.com.", "example.org."] {
        for dnssec_ok in [true, false] {
            let asked = with_edns(query(name, RecordType::A), 1232, dnssec_ok);
            let r = strict(&udp_bytes(&client, addr, &asked).await);
            let edns = r.edns.expect("an OPT in return");
            assert_eq!(edns.flags().dnssec_ok, dnssec_ok, "{name}");
        }
    }
    server.shutdown_gracefully().await.unwrap();
}

#[tokio::test]
async fn prebuilt_answers_are_compressed_against_the_question_whatever_its_case() {
    let (addr, mut server) = serve_on_loopback(wide_zone(5));
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // 5 NS and 10 glue: 748 bytes uncompressed, so the prebuilt answer (which fits 1232
    // either way) shows whether it was compressed. With the client's case (0x20) every
    // pointer must still land on the same labels.
    let asked = with_edns(query("hA.ExAmPle.cOm.", RecordType::NS), 1232, false);
    let bytes = udp_bytes(&client, addr, &asked).await;
    let r = strict(&bytes);
    assert!(!r.metadata.truncation);
    assert_eq!((r.answers.len(), r.additionals.len()), (5, 10));
    assert!(
        r.answers
            .iter()
            .all(|a| a.name.to_ascii().eq_ignore_ascii_case("ha.example.com."))
    );
    assert!(bytes.len() < 450, "{} bytes: not compressed", bytes.len());
    server.shutdown_gracefully().await.unwrap();
}

/// Issue 13.3: what an answer can amplify, over UDP, as a spoofing attacker measures it (bytes
/// out / bytes in). The README's table was measured on this 5-node dual-stack zone; before the
/// minimal ANY and the compressed prebuilt answers, apex ANY gave 13.4× (19.7× with EDNS) and the
/// EDNS apex NS 17.4×. Whatever the zone and the question, no answer exceeds 1232 bytes, so no
/// factor exceeds 1232 / 43 (the smallest EDNS query at the apex).
#[tokio::test]
async fn amplification_stays_within_the_readme_table_and_the_1232_byte_cap() {
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let factor =
        |asked: &Message, bytes: &[u8]| bytes.len() as f64 / asked.to_vec().unwrap().len() as f64;
    let (addr, mut server) = serve_on_loopback(wide_zone(5));
    let table: [(&str, RecordType, Option<u16>, f64); 5] = [
        ("ha.example.com.", RecordType::ANY, None, 2.8),
        ("ha.example.com.", RecordType::ANY, Some(1232), 2.3),
        ("ha.example.com.", RecordType::NS, None, 11.5),
        ("ha.example.com.", RecordType::NS, Some(1232), 8.8),
        ("wide.ha.example.com.", RecordType::ANY, None, 1.6),
    ];
    for (name, qtype, edns, most) in table {
        let mut asked = query(name, qtype);
        if let Some(size) = edns {
            asked = with_edns(asked, size, false);
        }
        let bytes = udp_bytes(&client, addr, &asked).await;
        let got = factor(&asked, &bytes);
        println!("{name} {qtype} EDNS {edns:?}: {} B, {got:.1}×", bytes.len());
        assert!(
            got <= most + 0.05,
            "{name} {qtype} {edns:?}: {got:.2}× > {most}×"
        );
    }
    server.shutdown_gracefully().await.unwrap();

    let types = [
        RecordType::ANY,
        RecordType::NS,
        RecordType::SOA,
        RecordType::A,
        RecordType::AAAA,
        RecordType::TXT,
        RecordType::MX,
        RecordType::SRV,
        RecordType::CAA,
        RecordType::DNSKEY,
        RecordType::HINFO,
    ];
    let mut worst = 0.0f64;
    for nodes in [1, 5, 30] {
        let (addr, mut server) = serve_on_loopback(wide_zone(nodes));
        for name in [
            "ha.example.com.",
            "wide.ha.example.com.",
            "ns-n1.ha.example.com.",
        ] {
            for qtype in types {
                for edns in [None, Some(512), Some(1232), Some(4096)] {
                    let mut asked = query(name, qtype);
                    if let Some(size) = edns {
                        asked = with_edns(asked, size, false);
                    }
                    let bytes = udp_bytes(&client, addr, &asked).await;
                    let allowed = edns.map_or(512, |s| usize::from(s.clamp(512, 1232)));
                    assert!(
                        bytes.len() <= allowed,
                        "{nodes} nodes, {name} {qtype} {edns:?}: {} B",
                        bytes.len()
                    );
                    worst = worst.max(factor(&asked, &bytes));
                }
            }
        }
        server.shutdown_gracefully().await.unwrap();
    }
    println!("worst factor over 1, 5 and 30 nodes: {worst:.1}×");
    assert!(worst <= 1232.0 / 43.0, "{worst:.1}×");
}
