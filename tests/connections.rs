//! Hostile clients against the real `failoverd run` binary under a low descriptor limit (the
//! `ulimit -n 1024` systemd gives a service): floods of idle and half-sent TCP connections to
//! the DNS port, and idle connections to the peer API and the dashboard. Health checking, DNS
//! over TCP and the dashboard must keep working, and memory must stay bounded.
//!
//! Address blocks (no other test uses them): 127.0.130.x agent and backends, 127.0.131.x the
//! flood's sources, 127.0.132.x one greedy source, 127.0.133.x–127.0.134.x the half-sent test,
//! 127.0.135.x the peer API and dashboard timeouts, 127.0.136.x–127.0.137.x the descriptor
//! limit below the reserve.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{AgentProcess, Backend, binary, dig, dns_addr, free_port, wait_until};
use socket2::{Domain, Socket, Type};

const ZONE: &str = "ha.example.com";
const SECRET: &str = "a cluster secret of more than sixteen characters";

/// Two nodes, an HTTP and a TCP check each (4 pairs), fast timings; `extra` is appended at the
/// top level (a cluster section).
fn config(backends: &[Backend], dns: SocketAddr, dashboard: SocketAddr, extra: &str) -> String {
    let mut yaml = format!(
        "zone: {ZONE}\nself: node1\ndns:\n  listen: [\"{dns}\"]\n  ttl: 5s\n\
         dashboard: {{ listen: \"{dashboard}\" }}\n{extra}\
         defaults: {{ interval: 300ms, retry_interval: 200ms, timeout: 150ms, fall: 2, rise: 2 }}\nnodes:\n"
    );
    yaml.push_str(&common::nodes_yaml(backends));
    let b = &backends[0];
    yaml.push_str(&format!(
        "checks:\n  - {{ id: web, type: http, url: \"http://{{address}}:{}/login\", expect_body: \"Sign in\" }}\n\
         \x20 - {{ id: sip, type: tcp, port: {}, expect: \"SIP/2.0\" }}\n\
         hostnames:\n  - {{ name: app, checks: [web, sip] }}\n\
         \x20 - {{ name: none, checks: [web], when_all_down: none }}\n",
        b.http_port, b.tcp_port
    ));
    yaml
}

/// `failoverd` started with its soft and hard RLIMIT_NOFILE set to `nofile`, as systemd would.
fn launcher(nofile: u64) -> Command {
    let mut command = Command::new(binary());
    command.env("FAILOVERD_CLUSTER_SECRET", SECRET);
    // SAFETY: setrlimit is async-signal-safe and touches nothing of the parent.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: nofile,
                rlim_max: nofile,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    command
}

struct Started {
    _backends: Vec<Backend>,
    agent: AgentProcess,
    dns: SocketAddr,
    dashboard: SocketAddr,
}

fn start(ip_prefix: &str, nofile: u64, extra: &str) -> Started {
    let ips: Vec<String> = (1..=2).map(|i| format!("{ip_prefix}.{i}")).collect();
    let refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    let backends = Backend::group(&refs);
    let dns = dns_addr(&format!("{ip_prefix}.100"));
    let dashboard = SocketAddr::new(dns.ip(), free_port(&[&dns.ip().to_string()]));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut agent = AgentProcess::start_with(
        launcher(nofile),
        dir,
        state,
        &config(&backends, dns, dashboard, extra),
        dns,
    );
    agent.wait_ready(&format!("app.{ZONE}"));
    Started {
        _backends: backends,
        agent,
        dns,
        dashboard,
    }
}

/// One HTTP/1.1 GET with `Connection: close`; the body, or why there is none.
fn http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    match out.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err(format!("not a 200: {out:?}")),
    }
}

/// Every pair's state and last check time, from the dashboard's JSON.
fn pair_states(dashboard: SocketAddr) -> Result<Vec<(String, String)>, String> {
    let body = http_get(dashboard, "/api/v1/status")?;
    let json: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    let checks = json["checks"].as_array().ok_or("no checks")?;
    let out = checks
        .iter()
        .map(|c| {
            let state = c["local_state"].as_str().unwrap_or("?").to_string();
            (state, c["last_checked"].to_string())
        })
        .collect();
    Ok(out)
}

/// Open descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// A TCP connection to `to` from `from` (port chosen by the kernel); `None` if it cannot be
/// made within a second (a full accept queue).
fn connect_from(from: IpAddr, to: SocketAddr) -> Option<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
    socket.bind(&SocketAddr::new(from, 0).into()).ok()?;
    socket
        .connect_timeout(&to.into(), Duration::from_secs(1))
        .ok()?;
    Some(socket)
}

/// True when the server closed `socket` (EOF or reset), without waiting.
fn closed_by_server(socket: &Socket) -> bool {
    socket.set_nonblocking(true).unwrap();
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 64];
    let closed = match socket.recv(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    socket.set_nonblocking(false).unwrap();
    closed
}

/// The caps the agent logged at start (`connection caps` line): (dns_tcp, dns_per_source).
fn logged_caps(agent: &AgentProcess) -> (usize, usize) {
    let log = agent.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("connection caps"))
        .unwrap_or_else(|| panic!("no 'connection caps' line in the log:\n{log}"));
    let field = |name: &str| -> usize {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in {line}"))
    };
    (field("dns_tcp"), field("dns_tcp_per_source"))
}

#[test]
fn idle_tcp_floods_leave_checks_dns_and_the_dashboard_working_under_ulimit_1024() {
    let Started {
        _backends,
        agent,
        dns,
        dashboard,
    } = start("127.0.130", 1024, "");
    let pid = agent.pid();
    let fds_before = open_fds(pid);
    eprintln!("agent fds before: {fds_before}");

    // 1,100 idle connections from 50 sources (22 each: under the per-source cap), bounded.
    let mut flood = Vec::new();
    let started = Instant::now();
    for i in 0..1100 {
        let from: IpAddr = format!("127.0.131.{}", 1 + i % 50).parse().unwrap();
        if let Some(s) = connect_from(from, dns) {
            flood.push(s);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the flood took too long"
        );
    }
    eprintln!("{} of 1100 connections made", flood.len());

    // The agent stays within its limit with room to spare, whatever it accepted.
    wait_until(
        Duration::from_secs(10),
        "the agent to settle under the flood",
        || open_fds(pid) < 1024 - 32,
    );

    // Checks keep their pace: every pair stays up and is checked again and again.
    let first = pair_states(dashboard).expect("the dashboard answers during the flood");
    assert_eq!(first.len(), 4, "{first:?}");
    let mut rounds = 0;
    wait_until(
        Duration::from_secs(10),
        "three more rounds of checks",
        || {
            let now = pair_states(dashboard).expect("the dashboard answers during the flood");
            assert!(
                now.iter().all(|(state, _)| state == "OK"),
                "every check stays up during the flood: {now:?}\n{}",
                agent.log_text()
            );
            if now.iter().zip(&first).all(|(a, b)| a.1 != b.1) {
                rounds += 1;
            }
            rounds >= 3
        },
    );

    // A fresh TCP client still gets an answer, and so does UDP, including the
    // `when_all_down: none` name.
    let tcp = dig(dns, &format!("app.{ZONE}"), "A", &["+tcp"]);
    assert_eq!(
        tcp.answers,
        ["127.0.130.1"],
        "over TCP during the flood: {}",
        tcp.raw
    );
    let none = dig(dns, &format!("none.{ZONE}"), "A", &[]);
    assert_eq!(none.answers, ["127.0.130.1"], "{}", none.raw);

    // One greedy source gets at most its share: its oldest idle connections are closed. (The
    // caps are read here, after what any agent must do, so that a build without them fails
    // on its checks and answers rather than on a missing log line.)
    let (cap, per_source) = logged_caps(&agent);
    eprintln!("caps: dns_tcp={cap} per_source={per_source}");
    let greedy: IpAddr = "127.0.132.1".parse().unwrap();
    let mut mine = Vec::new();
    for _ in 0..per_source + 40 {
        if let Some(s) = connect_from(greedy, dns) {
            mine.push(s);
        }
    }
    wait_until(
        Duration::from_secs(5),
        "the greedy source's excess to be closed",
        || mine.iter().filter(|s| !closed_by_server(s)).count() <= per_source,
    );
    // The greedy source itself is cut back, not locked out: a new query from it over TCP is
    // answered. (Which of its own connections went first depends on timing: over the cap its
    // oldest go, and while 32 closures are under way a newcomer may be turned away too.)
    let from_greedy = dig(
        dns,
        &format!("app.{ZONE}"),
        "A",
        &["+tcp", "-b", "127.0.132.1"],
    );
    assert_eq!(
        from_greedy.answers,
        ["127.0.130.1"],
        "over TCP from the greedy source after its cut: {}",
        from_greedy.raw
    );
    let tcp = dig(dns, &format!("app.{ZONE}"), "A", &["+tcp"]);
    assert_eq!(
        tcp.answers,
        ["127.0.130.1"],
        "over TCP after the greedy source: {}",
        tcp.raw
    );

    let fds_during = open_fds(pid);
    eprintln!("agent fds during the flood: {fds_during} (limit 1024)");
    assert!(
        fds_during <= fds_before + cap + 64,
        "{fds_during} descriptors"
    );
    let log = agent.log_text();
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(!log.contains("cannot store"), "{log}");
    drop(flood);
}

#[test]
fn half_sent_messages_keep_little_memory() {
    let Started {
        _backends,
        agent,
        dns,
        ..
    } = start("127.0.133", 4096, "");
    let pid = agent.pid();
    let rss_before = rss_kib(pid);
    let fds_before = open_fds(pid);

    // Waits until the agent has taken in what it will take: its descriptor count is steady.
    let settle = |what: &str| {
        let mut last = (open_fds(pid), Instant::now());
        wait_until(Duration::from_secs(15), what, || {
            let now = open_fds(pid);
            if now != last.0 {
                last = (now, Instant::now());
            }
            last.1.elapsed() > Duration::from_millis(800)
        });
    };
    // Two waves of 2,000 connections from 40 sources, each announcing a 65,535-byte message
    // and sending 4 bytes of it; the first wave is closed before the second (freed buffers
    // that are reused must not cost more than fresh ones).
    let mut held = Vec::new();
    for wave in 0..2 {
        for i in 0..2000 {
            let from: IpAddr = format!("127.0.134.{}", 1 + i % 40).parse().unwrap();
            if let Some(mut s) = connect_from(from, dns) {
                let _ = s.write_all(&[0xff, 0xff, 1, 2, 3, 4]);
                held.push(s);
            }
        }
        settle("the agent's descriptor count to settle");
        eprintln!(
            "wave {wave}: {} half-sent messages: RSS {rss_before} KiB -> {} KiB, fds {fds_before} -> {}",
            held.len(),
            rss_kib(pid),
            open_fds(pid)
        );
        if wave == 0 {
            held.clear();
            wait_until(
                Duration::from_secs(15),
                "the first wave to be closed",
                || open_fds(pid) < fds_before + 50,
            );
        }
    }
    let rss_during = rss_kib(pid);
    let tcp = dig(dns, &format!("app.{ZONE}"), "A", &["+tcp"]);
    assert_eq!(tcp.answers, ["127.0.133.1"], "{}", tcp.raw);
    assert!(
        rss_during < rss_before + 24 * 1024,
        "RSS grew from {rss_before} KiB to {rss_during} KiB with {} half-sent messages",
        held.len()
    );
    drop(held);
}

/// Seconds until the server closes a connection that sends `trickle` bytes, one a second.
fn seconds_until_closed(addr: SocketAddr, trickle: &[u8], limit: Duration) -> Option<f64> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    let mut next = 0;
    let mut buf = [0u8; 512];
    while started.elapsed() < limit {
        if next < trickle.len() && started.elapsed() >= Duration::from_secs(next as u64) {
            if s.write_all(&trickle[next..=next]).is_err() {
                return Some(started.elapsed().as_secs_f64());
            }
            next += 1;
        }
        match s.read(&mut buf) {
            Ok(0) => return Some(started.elapsed().as_secs_f64()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(started.elapsed().as_secs_f64()),
        }
    }
    None
}

#[test]
fn the_peer_api_and_the_dashboard_close_idle_and_trickling_connections() {
    let peer_port = free_port(&["127.0.135.100"]);
    let cluster = format!("cluster: {{ listen: \"127.0.135.100:{peer_port}\", period: 500ms }}\n");
    let Started {
        agent, dashboard, ..
    } = start("127.0.135", 1024, &cluster);
    let peer: SocketAddr = format!("127.0.135.100:{peer_port}").parse().unwrap();

    // Silent: closed after the idle timeout (5 s), well before the old 30 s.
    let idle = seconds_until_closed(peer, b"", Duration::from_secs(20));
    eprintln!("peer API, silent client: closed after {idle:?} s");
    assert!(
        idle.is_some_and(|s| (4.0..7.0).contains(&s)),
        "peer API idle: {idle:?}"
    );

    // A header byte a second: closed at the end of the connection's life (10 s), not 30 s.
    let header = b"GET /v1/observations HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let trickle = seconds_until_closed(peer, header, Duration::from_secs(25));
    eprintln!("peer API, trickling client: closed after {trickle:?} s");
    assert!(
        trickle.is_some_and(|s| (9.0..13.0).contains(&s)),
        "peer API trickle: {trickle:?}"
    );

    let idle = seconds_until_closed(dashboard, b"", Duration::from_secs(20));
    eprintln!("dashboard, silent client: closed after {idle:?} s");
    assert!(
        idle.is_some_and(|s| (4.0..7.0).contains(&s)),
        "dashboard idle: {idle:?}"
    );
    drop(agent);
}

/// CPU time (user + system) process `pid` has used, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // Fields 14 and 15 of stat(5), counted from the state (field 3) here.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

#[test]
fn out_of_descriptors_the_agent_says_so_and_accept_backs_off_instead_of_spinning() {
    // 24 descriptors: less than the agent's reserve and than its minimum DNS TCP cap (16), so
    // accepting fails with EMFILE while connections wait in the kernel's queue.
    let Started { agent, dns, .. } = start("127.0.136", 24, "");
    let pid = agent.pid();

    let mut held = Vec::new();
    for i in 0..120 {
        let from: IpAddr = format!("127.0.137.{}", 1 + i % 60).parse().unwrap();
        if let Some(s) = connect_from(from, dns) {
            held.push(s);
        }
    }
    wait_until(
        Duration::from_secs(10),
        "the agent to run out of descriptors",
        || open_fds(pid) >= 23,
    );
    let before = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_seconds(pid) - before;
    eprintln!(
        "CPU used in 3 s with accept failing: {used:.2} s; fds {}",
        open_fds(pid)
    );
    assert!(used < 0.9, "accept spins: {used:.2} s of CPU in 3 s");
    let log = agent.log_text();
    assert!(
        log.contains("raise LimitNOFILE"),
        "the operator is told: {log}"
    );
    let warnings = agent
        .log_text()
        .matches("cannot accept connections")
        .count();
    assert!(warnings <= 1, "{warnings} accept warnings");
    drop(held);
}
