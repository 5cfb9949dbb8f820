//! What strict DNS clients see of the real `failoverd run` binary: truncated answers as whole
//! messages (`kdig`), the DO bit, minimal ANY, answers before the first round of checks, and a
//! log flood from malformed packets that must not stop answering.

mod common;

use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{AgentProcess, Backend, HttpMode, dig, dns_addr, free_port, wait_until};

const ZONE: &str = "ha.example.com";

/// `kdig @dns name type extra…`: stdout and stderr together (its warnings go to either).
fn kdig(dns: SocketAddr, name: &str, qtype: &str, extra: &[&str]) -> String {
    let out = Command::new("kdig")
        .arg(format!("@{}", dns.ip()))
        .args([
            "-p",
            &dns.port().to_string(),
            name,
            qtype,
            "+time=2",
            "+retry=0",
        ])
        .args(extra)
        .output()
        .expect("kdig is installed (scripts/test.sh installs knot-dnsutils)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `n` nodes on 127.0.21.x that nothing answers on: after the first round every check is down
/// and `mode: all` (failing open) answers with every one of them.
fn wide_config(n: usize, dns: SocketAddr) -> String {
    let port = free_port(&["127.0.21.1"]);
    let nodes: String = (1..=n)
        .map(|i| format!("  - {{ id: node{i}, address: 127.0.21.{i} }}\n"))
        .collect();
    format!(
        "zone: {ZONE}\ndns:\n  listen: [\"{dns}\"]\n  ttl: 5s\n\
         dashboard: {{ listen: \"{}:0\" }}\n\
         defaults: {{ interval: 300ms, retry_interval: 300ms, timeout: 200ms, fall: 1, rise: 1 }}\n\
         nodes:\n{nodes}\
         checks:\n  - {{ id: sip, type: tcp, port: {port} }}\n\
         hostnames:\n  - {{ name: all, checks: [sip], mode: all }}\n",
        dns.ip()
    )
}

#[test]
fn truncated_answers_are_well_formed_and_tcp_gets_them_whole() {
    let dns = dns_addr("127.0.21.100");
    let mut agent = AgentProcess::start(&wide_config(90, dns), dns);
    let all = format!("all.{ZONE}");
    wait_until(Duration::from_secs(15), "90 addresses for `all`", || {
        dig(dns, &all, "A", &["+tcp"]).answers.len() == 90
    });
    // 90 A records (~1.5 kB) fit neither 512 bytes nor 1232; nor do the 90 NS with glue.
    for (name, qtype) in [(all.as_str(), "A"), (ZONE, "NS")] {
        for size in ["+noedns", "+bufsize=1232", "+bufsize=512"] {
            let out = kdig(dns, name, qtype, &[size, "+ignore"]);
            let what = format!("{name} {qtype} {size}:\n{out}");
            assert!(!out.to_lowercase().contains("malformed"), "{what}");
            assert!(out.contains(";; Flags: qr aa tc"), "TC set: {what}");
            assert!(out.contains("ANSWER: 0"), "no cut RRset: {what}");
            if size == "+noedns" {
                assert!(!out.contains("EDNS PSEUDOSECTION"), "{what}");
            } else {
                // RFC 6891 §7: the OPT is in the TC answer too.
                assert!(out.contains("EDNS PSEUDOSECTION"), "{what}");
                assert!(out.contains("ADDITIONAL: 1"), "{what}");
            }
        }
        // Without +ignore kdig retries over TCP, as a resolver does, and gets the whole answer.
        let out = kdig(dns, name, qtype, &["+noedns"]);
        assert!(!out.to_lowercase().contains("malformed"), "{out}");
        assert!(
            out.contains("ANSWER: 90"),
            "{name} {qtype} over TCP:\n{out}"
        );
        assert!(out.contains("TCP"), "{out}");
    }
    // The strict parser of dig too: no "Warning: Message parser reports malformed message".
    let r = dig(dns, &all, "A", &["+noedns", "+ignore"]);
    assert!(r.flags.contains(&"tc".to_string()), "{}", r.raw);
    assert!(!r.raw.contains("malformed"), "{}", r.raw);
    agent.terminate();
}

#[test]
fn the_do_bit_is_copied_back_and_any_is_minimal() {
    let backends = Backend::group(&["127.0.22.1", "127.0.22.2"]);
    let dns = dns_addr("127.0.22.100");
    let yaml = format!(
        "zone: {ZONE}\ndns:\n  listen: [\"{dns}\"]\n  ttl: 5s\n\
         dashboard: {{ listen: \"{}:0\" }}\n\
         defaults: {{ interval: 300ms, retry_interval: 300ms, timeout: 200ms, fall: 1, rise: 1 }}\n\
         nodes:\n{}checks:\n  - {{ id: sip, type: tcp, port: {} }}\n\
         hostnames:\n  - {{ name: app, checks: [sip] }}\n",
        dns.ip(),
        common::nodes_yaml(&backends),
        backends[0].tcp_port
    );
    let mut agent = AgentProcess::start(&yaml, dns);
    agent.wait_ready(&format!("app.{ZONE}"));
    // RFC 8482: one RRset at the apex, a synthesized HINFO at a hostname.
    let any = dig(dns, ZONE, "ANY", &["+noedns"]);
    assert_eq!(any.answers.len(), 1, "{}", any.raw);
    assert!(
        any.raw.contains("\tSOA\t") && any.additional.is_empty(),
        "{}",
        any.raw
    );
    let any = dig(dns, &format!("app.{ZONE}"), "ANY", &[]);
    assert_eq!(any.answers, ["\"RFC8482\" \"\""], "{}", any.raw);
    // The DO bit: a prebuilt answer, a negative one, and a refusal through the hickory handler.
    for name in [
        format!("app.{ZONE}"),
        format!("nope.{ZONE}"),
        "example.org".into(),
    ] {
        let r = dig(dns, &name, "A", &["+dnssec"]);
        assert!(
            r.raw.contains("; EDNS: version: 0, flags: do;"),
            "{name}: {}",
            r.raw
        );
        let r = dig(dns, &name, "A", &[]);
        assert!(
            r.raw.contains("; EDNS: version: 0, flags:;"),
            "{name}: {}",
            r.raw
        );
    }
    agent.terminate();
}

/// node1 hangs (accepts, never answers) under a 5 s timeout: the first round takes 5 s.
fn blackholed_config(backends: &[Backend], dns: SocketAddr) -> String {
    format!(
        "zone: {ZONE}\ndns:\n  listen: [\"{dns}\"]\n  ttl: 5s\n\
         dashboard: {{ listen: \"{}:0\" }}\n\
         defaults: {{ interval: 6s, retry_interval: 6s, timeout: 5s, fall: 1, rise: 1 }}\n\
         nodes:\n{}checks:\n  - {{ id: web, type: http, url: \"http://{{address}}:{}/\" }}\n\
         hostnames:\n  - {{ name: app, checks: [web] }}\n",
        dns.ip(),
        common::nodes_yaml(backends),
        backends[0].http_port
    )
}

#[test]
fn before_the_first_round_the_apex_is_answered_and_a_restart_serves_the_last_answers() {
    let backends = Backend::group(&["127.0.23.1", "127.0.23.2"]);
    backends[0].set_mode(HttpMode::Hang);
    let dns = dns_addr("127.0.23.100");
    let yaml = blackholed_config(&backends, dns);
    let app = format!("app.{ZONE}");

    let started = Instant::now();
    let agent = AgentProcess::start(&yaml, dns);
    wait_until(
        Duration::from_secs(3),
        "the apex SOA from the start",
        || dig(dns, ZONE, "SOA", &[]).answers.len() == 1,
    );
    let ns = dig(dns, ZONE, "NS", &[]);
    assert_eq!(ns.status, "NOERROR", "{}", ns.raw);
    assert_eq!(ns.answers.len(), 2, "{}", ns.raw);
    assert!(
        ns.additional.iter().any(|r| r.ends_with("127.0.23.1")),
        "{}",
        ns.raw
    );
    assert_eq!(
        dig(dns, &format!("ns-node2.{ZONE}"), "A", &[]).answers,
        ["127.0.23.2"]
    );
    assert_eq!(
        dig(dns, &format!("nope.{ZONE}"), "A", &[]).status,
        "NXDOMAIN"
    );
    // A fresh state directory: nothing known about `app` yet.
    assert_eq!(dig(dns, &app, "A", &[]).status, "SERVFAIL");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "all of this before node1's probe could time out"
    );
    wait_until(
        Duration::from_secs(15),
        "node2 after the first round",
        || dig(dns, &app, "A", &[]).answers == ["127.0.23.2"],
    );
    let (dir, state) = agent.stop_keep_state();

    // Restarted on the same state, node1 hanging again: the last answer, at once.
    let restarted = Instant::now();
    let again = AgentProcess::start_in(dir, state, &yaml, dns);
    wait_until(
        Duration::from_secs(3),
        "the saved answer after a restart",
        || dig(dns, &app, "A", &[]).answers == ["127.0.23.2"],
    );
    assert!(
        restarted.elapsed() < Duration::from_secs(5),
        "served before the first round could end"
    );
    assert!(
        again
            .log_text()
            .contains("serving the answers saved at the last stop"),
        "{}",
        again.log_text()
    );
}

/// A query with a malformed EDNS option (OPT RDATA `00 05`: a code and no length), out of the
/// zone so it takes hickory's parser.
fn malformed_edns_query(id: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
    q.extend_from_slice(b"\x07example\x03org\x00\x00\x01\x00\x01");
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 2, 0x00, 0x05]);
    q
}

#[test]
fn a_flood_of_malformed_edns_with_a_stalled_log_reader_never_stops_answering() {
    let backends = Backend::group(&["127.0.24.1"]);
    let dns = dns_addr("127.0.24.100");
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "zone: {ZONE}\ndns:\n  listen: [\"{dns}\"]\n\
         dashboard: {{ listen: \"{}:0\" }}\n\
         defaults: {{ interval: 300ms, retry_interval: 300ms, timeout: 200ms }}\n\
         nodes:\n{}checks:\n  - {{ id: sip, type: tcp, port: {} }}\n\
         hostnames:\n  - {{ name: app, checks: [sip] }}\n",
        dns.ip(),
        common::nodes_yaml(&backends),
        backends[0].tcp_port
    );
    let config = common::write_file(dir.path(), "config.yaml", &yaml);
    // stderr is a pipe nobody reads until the end: it fills after 64 KiB.
    let mut child = common::command("run", &config)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        // hickory-proto at info, as an operator might set it: the line budget still holds.
        .env("RUST_LOG", "info,hickory_server=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let app = format!("app.{ZONE}");
    wait_until(Duration::from_secs(15), "the agent to answer", || {
        dig(dns, &app, "A", &[]).answers == ["127.0.24.1"]
    });

    let flooder = UdpSocket::bind("127.0.0.1:0").unwrap();
    flooder.set_nonblocking(true).unwrap();
    let flood_start = Instant::now();
    let mut buf = [0u8; 512];
    for i in 0..5_000u16 {
        flooder.send_to(&malformed_edns_query(i), dns).unwrap();
        if i % 500 == 0 {
            let r = dig(dns, &app, "A", &[]);
            assert_eq!(
                r.answers,
                ["127.0.24.1"],
                "during the flood, packet {i}: {}",
                r.raw
            );
        }
        // Drain the answers so our own socket's buffer does not drop them, and pace the flood
        // (10 packets a millisecond) so that the agent's socket buffer does not drop ours.
        while flooder.recv(&mut buf).is_ok() {}
        if i % 10 == 9 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let r = dig(dns, &app, "A", &[]);
    assert_eq!(r.answers, ["127.0.24.1"], "after the flood: {}", r.raw);
    let flood_seconds = flood_start.elapsed().as_secs() + 2;

    // Now read what the agent logged (a bounded read: the pipe and the writer's queue hold it).
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the agent did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = reader.join().unwrap();
    let from_packets = log.lines().filter(|l| l.contains("hickory")).count() as u64;
    // The packets do make hickory log (at info here): the budget is what bounds it.
    assert!(
        from_packets > 0,
        "no line from the malformed packets:\n{log}"
    );
    assert!(
        from_packets <= failoverd::logging::PACKET_LINES_PER_SECOND * flood_seconds,
        "{from_packets} packet-driven lines in {flood_seconds} s:\n{log}"
    );
    assert!(log.contains("agent started"), "{log}");
}
