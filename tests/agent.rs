//! The real `failoverd run` binary against real HTTP/TCP backends on 127.0.0.x, asked with `dig`.

mod common;

use std::time::{Duration, Instant};

use common::{AgentProcess, Backend, HttpMode, dig, dns_addr, soa_serial, wait_until};

const ZONE: &str = "ha.example.com";

/// A three-node config: node1 (prio 30) > node2 (20) > node3 (10); fast timings for tests.
fn config(backends: &[Backend], dns: std::net::SocketAddr, extra_hostnames: &str) -> String {
    // Dashboard on port 0 beside DNS: tests run in parallel and must not all want 127.0.0.1:81.
    let mut yaml = format!(
        "zone: {ZONE}\nself: node1\ndns:\n  listen: [\"{dns}\"]\n  ttl: 5s\n\
         dashboard: {{ listen: \"{}:0\" }}\n\
         defaults: {{ interval: 300ms, retry_interval: 100ms, timeout: 80ms, fall: 2, rise: 2 }}\nnodes:\n",
        dns.ip()
    );
    yaml.push_str(&common::nodes_yaml(backends));
    let b = &backends[0];
    yaml.push_str(&format!(
        "checks:\n  - {{ id: web, type: http, url: \"http://{{address}}:{}/login\", expect_body: \"Sign in\" }}\n\
         \x20 - {{ id: sip, type: tcp, port: {}, expect: \"SIP/2.0\" }}\n\
         hostnames:\n  - {{ name: app, checks: [web, sip] }}\n  - {{ name: all, checks: [web], mode: all }}\n\
         \x20 - {{ name: none, checks: [web], when_all_down: none }}\n  - {{ name: last, checks: [web], when_all_down: last }}\n\
         \x20 - {{ name: deep.sub, checks: [sip] }}\n{extra_hostnames}",
        b.http_port, b.tcp_port
    ));
    yaml
}

fn answers(dns: std::net::SocketAddr, name: &str) -> Vec<String> {
    dig(dns, &format!("{name}.{ZONE}"), "A", &[]).answers
}

#[test]
fn fails_over_to_the_next_node_and_back_and_serves_both_transports() {
    let mut backends = Backend::group(&["127.0.1.1", "127.0.1.2", "127.0.1.3"]);
    let dns = dns_addr("127.0.1.100");
    let mut agent = AgentProcess::start(&config(&backends, dns, ""), dns);
    agent.wait_ready(&format!("app.{ZONE}"));

    let r = dig(dns, &format!("app.{ZONE}"), "A", &[]);
    assert_eq!(r.status, "NOERROR", "{}", r.raw);
    assert!(
        r.flags.contains(&"aa".to_string()),
        "authoritative: {}",
        r.raw
    );
    assert!(
        !r.flags.contains(&"ra".to_string()),
        "no recursion offered: {}",
        r.raw
    );
    assert_eq!(r.answers, ["127.0.1.1"]);
    assert!(
        r.raw.contains("app.ha.example.com.\t5\tIN\tA")
            || r.raw.contains("app.ha.example.com. 5 IN A"),
        "TTL 5: {}",
        r.raw
    );
    let tcp = dig(dns, &format!("app.{ZONE}"), "A", &["+tcp"]);
    assert_eq!(tcp.answers, ["127.0.1.1"], "over TCP: {}", tcp.raw);
    assert_eq!(answers(dns, "all"), ["127.0.1.1", "127.0.1.2", "127.0.1.3"]);
    let serial_before = soa_serial(dns, ZONE);

    // The primary's web server dies: app and all move away from it.
    backends[0].stop();
    let died = Instant::now();
    wait_until(Duration::from_secs(10), "app to move to node2", || {
        answers(dns, "app") == ["127.0.1.2"]
    });
    let failover = died.elapsed();
    wait_until(Duration::from_secs(5), "all to drop node1", || {
        answers(dns, "all") == ["127.0.1.2", "127.0.1.3"]
    });
    assert!(
        soa_serial(dns, ZONE) > serial_before,
        "serial grows on a change"
    );
    // interval + (fall-1) * retry + timeout = 300 + 100 + 80 ms, plus the dig polling period.
    eprintln!("failover took {failover:?}");

    // It comes back: automatic failback.
    backends[0].resume();
    wait_until(Duration::from_secs(10), "app to fail back to node1", || {
        answers(dns, "app") == ["127.0.1.1"]
    });
    wait_until(Duration::from_secs(5), "all to include node1 again", || {
        answers(dns, "all").len() == 3
    });

    let log = agent.log_text();
    assert!(
        log.contains("check state changed")
            && log.contains("node=node1")
            && log.contains("connection refused"),
        "{log}"
    );
    assert!(log.contains("answer changed"), "{log}");
    // Empty fields are left out: a transition to OK has no `error`, an agent alone no `votes`.
    let changes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("check state changed"))
        .collect();
    assert!(changes.iter().any(|l| l.contains("to=\"OK\"")), "{log}");
    assert!(
        changes
            .iter()
            .any(|l| l.contains("to=\"KO\"") && l.contains("error=\"connection refused\"")),
        "{log}"
    );
    for line in &changes {
        assert!(!line.contains("votes="), "{line}");
        assert_eq!(
            line.contains("error="),
            line.contains("to=\"KO\""),
            "{line}"
        );
    }
    assert_eq!(agent.terminate(), Some(0), "clean exit on SIGTERM");
}

#[test]
fn all_nodes_down_follows_when_all_down() {
    let backends = Backend::group(&["127.0.2.1", "127.0.2.2", "127.0.2.3"]);
    let dns = dns_addr("127.0.2.100");
    let mut agent = AgentProcess::start(&config(&backends, dns, ""), dns);
    agent.wait_ready(&format!("app.{ZONE}"));

    // node2 first, so that `last` remembers node3 after node1 and node2 are gone.
    backends[0].set_mode(HttpMode::Status(503));
    backends[1].set_mode(HttpMode::Status(503));
    wait_until(Duration::from_secs(10), "last to be node3", || {
        answers(dns, "last") == ["127.0.2.3"]
    });
    backends[2].set_mode(HttpMode::Status(503));

    // app needs web: fail open with every node, best first.
    wait_until(Duration::from_secs(10), "app to fail open", || {
        answers(dns, "app") == ["127.0.2.1", "127.0.2.2", "127.0.2.3"]
    });
    let none = dig(dns, &format!("none.{ZONE}"), "A", &[]);
    wait_until(Duration::from_secs(5), "none to have no address", || {
        let r = dig(dns, &format!("none.{ZONE}"), "A", &[]);
        r.status == "NOERROR" && r.answers.is_empty()
    });
    let none_now = dig(dns, &format!("none.{ZONE}"), "A", &[]);
    assert!(
        none_now.authority.iter().any(|r| r.contains("SOA")),
        "NODATA carries the SOA: {} (before: {})",
        none_now.raw,
        none.raw
    );
    assert_eq!(
        answers(dns, "last"),
        ["127.0.2.3"],
        "last keeps the last answer"
    );
    assert!(agent.log_text().contains("HTTP 503"), "the log says why");
}

#[test]
fn negative_answers_refusals_and_the_apex() {
    let backends = Backend::group(&["127.0.3.1", "127.0.3.2"]);
    let dns = dns_addr("127.0.3.100");
    let mut agent = AgentProcess::start(&config(&backends, dns, ""), dns);
    agent.wait_ready(&format!("app.{ZONE}"));

    let nx = dig(dns, &format!("nope.{ZONE}"), "A", &[]);
    assert_eq!(nx.status, "NXDOMAIN", "{}", nx.raw);
    assert!(nx.flags.contains(&"aa".to_string()));
    assert!(
        nx.authority
            .iter()
            .any(|r| r.contains("SOA") && r.contains("hostmaster.example.com.")),
        "{}",
        nx.raw
    );

    let nodata = dig(dns, &format!("app.{ZONE}"), "MX", &[]);
    assert_eq!(
        (nodata.status.as_str(), nodata.answers.len()),
        ("NOERROR", 0),
        "{}",
        nodata.raw
    );
    assert!(
        nodata.authority.iter().any(|r| r.contains("SOA")),
        "{}",
        nodata.raw
    );

    // sub.<zone> exists only as the parent of deep.sub: an empty non-terminal is NODATA.
    let ent = dig(dns, &format!("sub.{ZONE}"), "A", &[]);
    assert_eq!(
        (ent.status.as_str(), ent.answers.len()),
        ("NOERROR", 0),
        "{}",
        ent.raw
    );
    assert_eq!(answers(dns, "deep.sub"), ["127.0.3.1"]);

    let aaaa = dig(dns, &format!("app.{ZONE}"), "AAAA", &[]);
    assert_eq!(
        (aaaa.status.as_str(), aaaa.answers.len()),
        ("NOERROR", 0),
        "IPv4-only nodes: NODATA for AAAA"
    );

    assert_eq!(dig(dns, "example.org", "A", &[]).status, "REFUSED");
    assert_eq!(
        dig(dns, "ha.example.com.evil.org", "A", &[]).status,
        "REFUSED"
    );
    assert_eq!(
        dig(dns, &format!("app.{ZONE}"), "A", &["-c", "CH"]).status,
        "REFUSED"
    );
    let axfr = std::process::Command::new("dig")
        .args([
            &format!("@{}", dns.ip()),
            "-p",
            &dns.port().to_string(),
            ZONE,
            "AXFR",
            "+time=1",
            "+tries=1",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&axfr.stdout).contains("Transfer failed"),
        "AXFR refused"
    );

    let ns = dig(dns, ZONE, "NS", &[]);
    assert_eq!(
        ns.answers,
        ["ns-node1.ha.example.com.", "ns-node2.ha.example.com."]
    );
    assert!(
        ns.additional
            .iter()
            .any(|r| r.starts_with("ns-node1.ha.example.com.") && r.ends_with("127.0.3.1")),
        "glue: {}",
        ns.raw
    );
    assert_eq!(answers(dns, "ns-node2"), ["127.0.3.2"]);
    let soa = dig(dns, ZONE, "SOA", &[]);
    assert!(
        soa.answers[0].starts_with("ns-node1.ha.example.com. hostmaster.example.com."),
        "{}",
        soa.raw
    );

    // EDNS: we advertise 1232 and never more.
    let edns = dig(dns, &format!("app.{ZONE}"), "A", &["+bufsize=4096"]);
    assert!(edns.raw.contains("udp: 1232"), "{}", edns.raw);
}

#[test]
fn the_serial_survives_a_restart() {
    let mut backends = Backend::group(&["127.0.4.1", "127.0.4.2"]);
    let dns = dns_addr("127.0.4.100");
    let yaml = config(&backends, dns, "");
    let mut agent = AgentProcess::start(&yaml, dns);
    agent.wait_ready(&format!("app.{ZONE}"));
    let first = soa_serial(dns, ZONE);
    let (dir, state) = agent.stop_keep_state();

    // The same answers after the restart: the same serial (nothing for a secondary to fetch).
    let mut again = AgentProcess::start_in(dir, state, &yaml, dns);
    again.wait_ready(&format!("app.{ZONE}"));
    assert_eq!(
        soa_serial(dns, ZONE),
        first,
        "the same content keeps its serial across a restart"
    );
    // Other answers after a restart: a higher serial, never an older one.
    let (dir, state) = again.stop_keep_state();
    backends[0].stop();
    let mut third = AgentProcess::start_in(dir, state, &yaml, dns);
    third.wait_ready(&format!("app.{ZONE}"));
    assert_eq!(answers(dns, "app"), ["127.0.4.2"]);
    let after = soa_serial(dns, ZONE);
    assert!(
        after.wrapping_sub(first) as i32 > 0,
        "new content after a restart: {after} must be after {first}"
    );
}

#[test]
fn a_hanging_backend_fails_by_timeout_without_delaying_other_checks() {
    let backends = Backend::group(&["127.0.5.1", "127.0.5.2"]);
    let dns = dns_addr("127.0.5.100");
    let mut agent = AgentProcess::start(&config(&backends, dns, ""), dns);
    agent.wait_ready(&format!("app.{ZONE}"));

    backends[0].set_mode(HttpMode::Hang);
    let hits_before = backends[1].hits.load(std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    wait_until(
        Duration::from_secs(10),
        "app to leave the hanging node1",
        || answers(dns, "app") == ["127.0.5.2"],
    );
    // While node1 hangs, node2 keeps being probed on its own schedule (every 300 ms or less).
    wait_until(
        Duration::from_secs(5),
        "node2 to be probed repeatedly meanwhile",
        || backends[1].hits.load(std::sync::atomic::Ordering::Relaxed) >= hits_before + 4,
    );
    let elapsed = started.elapsed().as_secs_f64();
    let probes = backends[1].hits.load(std::sync::atomic::Ordering::Relaxed) - hits_before;
    assert!(
        probes as f64 >= elapsed / 0.3 - 2.0,
        "node2 probed {probes} times in {elapsed:.2}s: its schedule slipped"
    );
    assert!(
        agent.log_text().contains("timeout after 80ms"),
        "{}",
        agent.log_text()
    );
}

#[test]
fn answers_servfail_until_the_first_round_is_done() {
    let backends = Backend::group(&["127.0.6.1", "127.0.6.2"]);
    backends[0].set_mode(HttpMode::Hang);
    let dns = dns_addr("127.0.6.100");
    // The first round cannot finish before the 3 s timeout of the hanging node1.
    let yaml = config(&backends, dns, "").replace(
        "interval: 300ms, retry_interval: 100ms, timeout: 80ms",
        "interval: 5s, retry_interval: 4s, timeout: 3s",
    );
    let started = Instant::now();
    let agent = AgentProcess::start(&yaml, dns);
    let name = format!("app.{ZONE}");
    wait_until(
        Duration::from_secs(3),
        "a SERVFAIL while the first round runs",
        || dig(dns, &name, "A", &[]).status == "SERVFAIL",
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "SERVFAIL seen before the first round could end"
    );
    wait_until(
        Duration::from_secs(10),
        "answers after the first round",
        || answers(dns, "app") == ["127.0.6.2"],
    );
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "answered only once node1's probe had timed out"
    );
    drop(agent);
}

#[test]
fn malformed_packets_get_formerr_or_nothing_and_the_server_keeps_serving() {
    use std::net::UdpSocket;
    let backends = Backend::group(&["127.0.7.1"]);
    let dns = dns_addr("127.0.7.100");
    let mut agent = AgentProcess::start(&config(&backends, dns, ""), dns);
    agent.wait_ready(&format!("app.{ZONE}"));

    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 1500];
    // A valid header (id 0x1234, one question) followed by a question that runs off the end.
    let bad_question = [
        0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0x05, b'a', b'b',
    ];
    socket.send_to(&bad_question, dns).unwrap();
    let (n, _) = socket
        .recv_from(&mut buf)
        .expect("a FORMERR answer to a broken question");
    assert!(n >= 12 && buf[0..2] == [0x12, 0x34], "same id");
    assert_eq!(buf[3] & 0x0f, 1, "rcode FORMERR");

    // Shorter than a header, random bytes, a compression loop: dropped or FORMERR, never a crash.
    let loop_ptr = [
        0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01,
    ];
    let garbage: Vec<u8> = (0..512u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for packet in [&b"\x01\x02\x03"[..], &garbage, &loop_ptr, &[0u8; 12]] {
        socket.send_to(packet, dns).unwrap();
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            assert!(
                n >= 12 && [1, 4].contains(&(buf[3] & 0x0f)),
                "only FORMERR/NOTIMP may answer garbage: {:?}",
                &buf[..n]
            );
        }
    }
    // Garbage over TCP too.
    let mut tcp = std::net::TcpStream::connect(dns).unwrap();
    std::io::Write::write_all(&mut tcp, &[0x00, 0x05, 1, 2, 3, 4, 5]).unwrap();
    drop(tcp);

    assert_eq!(answers(dns, "app"), ["127.0.7.1"], "still serving over UDP");
    assert_eq!(
        dig(dns, &format!("app.{ZONE}"), "A", &["+tcp"]).answers,
        ["127.0.7.1"],
        "and TCP"
    );
}

#[test]
fn a_bad_config_exits_2_naming_the_key_and_an_occupied_port_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let bad = common::write_file(
        dir.path(),
        "bad.yaml",
        "zone: ha.example.com\nnodes:\n  - { id: n1, address: 127.0.0.1 }\nchecks:\n  - { id: web, type: http, url: \"http://{address}/\" }\nhostnames:\n  - { name: app, checks: [web], mode: fastest }\n",
    );
    for args in [
        &["run", "--state-dir", "/nonexistent"][..],
        &["check-config"][..],
    ] {
        let out = std::process::Command::new(common::binary())
            .args(args)
            .arg("--config")
            .arg(&bad)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(
                "bad.yaml:7:39: hostnames[0].mode: `fastest` is not a mode; use failover or all"
            ),
            "{stderr}"
        );
    }

    // The DNS port is taken: a runtime failure, with the address in the message.
    let taken = std::net::UdpSocket::bind("127.0.8.1:0").unwrap();
    let backends = Backend::group(&["127.0.8.2"]);
    let yaml = config(&backends, taken.local_addr().unwrap(), "");
    let path = common::write_file(dir.path(), "ok.yaml", &yaml);
    let out = common::command("run", &path)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot listen for DNS on {}",
            taken.local_addr().unwrap()
        )),
        "{stderr}"
    );
}

/// A 64 KiB tmpfs mounted over a fresh directory (needs root, as CI runs), unmounted on drop.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount() -> SmallFs {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("mount(8)");
        assert!(
            out.status.success(),
            "mounting a small tmpfs needs root (run the tests as root, as CI does): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallFs { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes a filler file until the filesystem is full.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.path().join("filler")).unwrap();
        let block = [0u8; 4096];
        for _ in 0..1000 {
            if f.write_all(&block).and_then(|()| f.sync_all()).is_err() {
                return;
            }
        }
        panic!("a 64 KiB tmpfs took 4 MB");
    }

    fn free(&self) {
        std::fs::remove_file(self.path().join("filler")).unwrap();
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// RFC 1982: `a` comes after `b`.
fn serial_after(a: u32, b: u32) -> bool {
    let d = a.wrapping_sub(b);
    d != 0 && d < 1 << 31
}

/// Issue 13.8: with the state directory full, changes are still served, but the serial never
/// goes past what is stored, so no restart can go back; once there is room it moves on.
#[test]
fn a_full_state_dir_never_makes_the_serial_go_back() {
    let fs = SmallFs::mount();
    let state = fs.path().join("state");
    let mut backends = Backend::group(&["127.0.9.1", "127.0.9.2"]);
    let dns = dns_addr("127.0.9.100");
    let yaml = config(&backends, dns, "");
    let mut agent = AgentProcess::start_in(tempfile::tempdir().unwrap(), state.clone(), &yaml, dns);
    agent.wait_ready(&format!("app.{ZONE}"));
    // Every serial read is checked against the highest one seen so far.
    let mut highest = soa_serial(dns, ZONE);
    let mut seen = |label: &str| {
        let s = soa_serial(dns, ZONE);
        assert!(
            !serial_after(highest, s),
            "{label}: served {s} after {highest}: the serial went back"
        );
        highest = if serial_after(s, highest) { s } else { highest };
        s
    };
    let stored = seen("at start");

    fs.fill();
    // A failover and a failback while nothing can be stored: both are served at once…
    backends[0].stop();
    wait_until(Duration::from_secs(10), "app to move to node2", || {
        answers(dns, "app") == ["127.0.9.2"]
    });
    assert_eq!(
        seen("failover, disk full"),
        stored,
        "not above what is stored"
    );
    agent.wait_log("cannot store the SOA serial", 1);
    backends[0].resume();
    wait_until(Duration::from_secs(10), "app back on node1", || {
        answers(dns, "app") == ["127.0.9.1"]
    });
    backends[0].stop();
    wait_until(Duration::from_secs(10), "app on node2 again", || {
        answers(dns, "app") == ["127.0.9.2"]
    });
    assert_eq!(seen("flap, disk full"), stored);

    // …and a restart, still full, serves no older serial.
    let (dir, state) = agent.stop_keep_state();
    let mut agent = AgentProcess::start_in(dir, state.clone(), &yaml, dns);
    agent.wait_ready(&format!("app.{ZONE}"));
    assert_eq!(answers(dns, "app"), ["127.0.9.2"]);
    seen("restart, disk full");

    // Room again: the pending serial is stored and served within a retry period.
    fs.free();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !serial_after(seen("room again"), stored) {
        assert!(
            Instant::now() < deadline,
            "the serial did not move on within 5 s of freeing space; log:\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let moved = seen("moved");
    assert_eq!(
        std::fs::read_to_string(state.join("serial"))
            .unwrap()
            .lines()
            .next(),
        Some(moved.to_string().as_str()),
        "what is served is what is stored"
    );
    let (dir, state) = agent.stop_keep_state();
    let mut agent = AgentProcess::start_in(dir, state, &yaml, dns);
    agent.wait_ready(&format!("app.{ZONE}"));
    assert_eq!(seen("restart after"), moved, "same content, same serial");
}

/// Issue 13.11: temporary files planted in the state directory as symlinks (the names older
/// versions used) are never written through, however often the serial is stored.
#[test]
fn planted_symlinks_in_the_state_dir_are_not_followed() {
    let mut backends = Backend::group(&["127.0.10.1", "127.0.10.2"]);
    let dns = dns_addr("127.0.10.100");
    let yaml = config(&backends, dns, "");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    for name in [".serial.tmp", ".overrides.json.tmp"] {
        std::os::unix::fs::symlink(&victim, state.join(name)).unwrap();
    }
    let mut agent = AgentProcess::start_in(dir, state.clone(), &yaml, dns);
    agent.wait_ready(&format!("app.{ZONE}"));
    let before = soa_serial(dns, ZONE);
    backends[0].stop();
    wait_until(Duration::from_secs(10), "app to move to node2", || {
        answers(dns, "app") == ["127.0.10.2"]
    });
    assert!(
        serial_after(soa_serial(dns, ZONE), before),
        "a serial was stored"
    );
    // A symlink planted while it runs is not followed either.
    std::os::unix::fs::symlink(&victim, state.join(".serial.tmp")).unwrap();
    backends[0].resume();
    wait_until(Duration::from_secs(10), "app back on node1", || {
        answers(dns, "app") == ["127.0.10.1"]
    });
    let victim_path = agent.dir.path().join("victim");
    assert_eq!(std::fs::read_to_string(&victim_path).unwrap(), "precious\n");
    let serial = std::fs::symlink_metadata(state.join("serial")).unwrap();
    assert!(
        serial.file_type().is_file(),
        "the serial is a file of its own"
    );
}
