//! The real `failoverd` binary where hostile or broken input used to pass silently: durations
//! whose arithmetic overflowed at run time (`check-config` said valid, the health task panicked,
//! the agent exited 0), a task that fails while the agent runs (it must exit non-zero and name
//! the task, so that `Restart=on-failure` starts it again), and a member's pull request replayed
//! after 10,000 fresh ones (the old nonce cache was cleared wholesale at 10,000).
//! Addresses: 127.0.130.0/24 only.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{AgentProcess, Backend, binary, dig, free_port, wait_until};
use failoverd::cluster::OBSERVATIONS_PATH;
use failoverd::cluster::auth::{NONCES_PER_AGENT, Secret, unix_now};

const ZONE: &str = "ha.example.com";
const SECRET: &str = "a cluster secret of more than sixteen characters";

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/configs/invalid/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The configurations of the report: `interval: 7000000000000000000s` (with the cluster's
/// defaults: the health task panicked, exit 0) and `retry_interval: 18446744073709551615s`
/// (every probe task panicked after its first pass). Both are refused before anything runs,
/// by `check-config` and by `run`, with exit 2 and a message naming the key, its line and the
/// bound.
#[test]
fn durations_that_would_overflow_are_refused_with_exit_2() {
    for (file, key, line) in [
        ("interval-overflow.yaml", "defaults.interval", 4),
        ("retry-overflow.yaml", "checks[0].retry_interval", 9),
    ] {
        let path = fixture(file);
        for subcommand in ["check-config", "run"] {
            let state = tempfile::tempdir().unwrap();
            let mut command = Command::new(binary());
            command.args([subcommand, "--config", &path]);
            if subcommand == "run" {
                command.arg("--state-dir").arg(state.path());
            }
            let out = common::browser::run_bounded(&mut command, Duration::from_secs(20));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{subcommand} {file}: stdout {}\nstderr {stderr}",
                String::from_utf8_lossy(&out.stdout)
            );
            let expected = format!("{file}:{line}:");
            assert!(
                stderr.contains(&expected)
                    && stderr.contains(key)
                    && stderr.contains("is too long; use at most 24h"),
                "{subcommand} {file}: no clear error in:\n{stderr}"
            );
            assert!(
                !stderr.contains("panicked"),
                "{subcommand} {file}:\n{stderr}"
            );
        }
    }
}

/// An agent on `ip` with DNS, dashboard and peer API on ports of their own, one backend up.
struct Running {
    agent: AgentProcess,
    _backends: Vec<Backend>,
    peer: SocketAddr,
}

fn start(ips: [&str; 2]) -> Running {
    let backends = Backend::group(&ips);
    let (dns_port, peer_port, dash_port) = (free_port(&ips), free_port(&ips), free_port(&ips));
    let ip = ips[0];
    let mut yaml = format!(
        "zone: {ZONE}\nself: node1\ndns: {{ listen: [\"{ip}:{dns_port}\"], ttl: 5s }}\n\
         dashboard: {{ listen: \"{ip}:{dash_port}\" }}\n\
         cluster: {{ listen: \"{ip}:{peer_port}\", period: 200ms }}\n\
         defaults: {{ interval: 300ms, retry_interval: 200ms, timeout: 150ms }}\nnodes:\n"
    );
    yaml.push_str(&common::nodes_yaml(&backends));
    yaml.push_str(&format!(
        "checks:\n  - {{ id: web, type: tcp, port: {} }}\nhostnames:\n  - {{ name: app, checks: [web] }}\n",
        backends[0].tcp_port
    ));
    let mut launcher = Command::new(binary());
    launcher.env("FAILOVERD_CLUSTER_SECRET", SECRET);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let dns: SocketAddr = format!("{ip}:{dns_port}").parse().unwrap();
    let mut agent = AgentProcess::start_with(launcher, dir, state, &yaml, dns);
    agent.wait_ready(&format!("app.{ZONE}"));
    Running {
        agent,
        _backends: backends,
        peer: format!("{ip}:{peer_port}").parse().unwrap(),
    }
}

/// Destroys the listening TCP socket on `addr` from outside the process, as the kernel does
/// to a socket it aborts (`ss -K`, SOCK_DESTROY): the agent's next `accept` fails with EINVAL.
fn kill_listener(addr: SocketAddr) {
    let out = Command::new("ss")
        .args(["-K", "-t", "state", "listening", "src"])
        .arg(addr.to_string())
        .output()
        .expect("ss is installed (iproute2)");
    // ss exits 0 even when the kernel refuses; what counts is that the socket is gone.
    wait_until(
        Duration::from_secs(5),
        &format!(
            "the listener on {addr} to be destroyed by `ss -K` (a kernel without \
             CONFIG_INET_DIAG_DESTROY cannot run this test): {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err(),
    );
}

/// A task failing for real, provoked from outside: the peer API's listening socket is destroyed.
/// The agent must stop with exit 1 (not 0: systemd's `Restart=on-failure` would leave it down)
/// and say which task failed.
#[test]
fn a_failing_task_stops_the_agent_with_exit_1_and_names_it() {
    let mut running = start(["127.0.130.1", "127.0.130.2"]);
    // The peer API answers (an unsigned request is refused, which proves it is listening).
    assert!(get(running.peer, &[]).starts_with("HTTP/1.1 401"));
    kill_listener(running.peer);
    let code = running.agent.wait_exit(Duration::from_secs(15));
    let log = running.agent.log_text();
    assert_eq!(code, Some(1), "exit code; log:\n{log}");
    let line = log
        .lines()
        .find(|l| l.contains("a task failed; shutting down"))
        .unwrap_or_else(|| panic!("no task failure logged:\n{log}"));
    assert!(
        line.contains("ERROR") && line.contains("peer API"),
        "the line names the task: {line}"
    );
    assert!(
        log.contains("the peer API task failed") && log.contains("Restart=on-failure"),
        "the last word says what failed and what happens next:\n{log}"
    );
}

/// The DNS server losing its TCP listener is no task failure of the supervisor's set but stops
/// the agent all the same: it no longer answers for the zone.
#[test]
fn losing_the_dns_listener_stops_the_agent_with_exit_1() {
    let mut running = start(["127.0.130.3", "127.0.130.4"]);
    let dns = running.agent.dns;
    kill_listener(dns);
    let code = running.agent.wait_exit(Duration::from_secs(15));
    let log = running.agent.log_text();
    assert_eq!(code, Some(1), "exit code; log:\n{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("DNS server stopped; shutting down")),
        "{log}"
    );
    assert!(dig(dns, &format!("app.{ZONE}"), "A", &[]).status.is_empty());
}

/// One HTTP/1.1 request on a fresh connection; the whole response as text.
fn get(addr: SocketAddr, headers: &[(&str, String)]) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut request =
        format!("GET {OBSERVATIONS_PATH} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

/// A signed pull request from `agent`, as the puller makes it.
fn signed(secret: &Secret, agent: &str, time: u64, nonce: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-failoverd-agent", agent.to_string()),
        ("x-failoverd-time", time.to_string()),
        ("x-failoverd-nonce", nonce.to_string()),
        (
            "x-failoverd-signature",
            secret.sign_request(agent, time, nonce, OBSERVATIONS_PATH),
        ),
    ]
}

/// Keep-alive requests on one connection (reopened if the server closes it).
struct Client {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    /// The status code and body of one request.
    fn get(&mut self, headers: &[(&str, String)]) -> (u16, String) {
        for _ in 0..3 {
            if self.conn.is_none() {
                let stream =
                    TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                self.conn = Some(BufReader::new(stream));
            }
            match self.try_get(headers) {
                Some(response) => return response,
                None => self.conn = None,
            }
        }
        panic!("the peer API on {} does not answer", self.addr);
    }

    fn try_get(&mut self, headers: &[(&str, String)]) -> Option<(u16, String)> {
        let conn = self.conn.as_mut()?;
        let mut request = format!(
            "GET {OBSERVATIONS_PATH} HTTP/1.1\r\nHost: {}\r\n",
            self.addr
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        conn.get_mut().write_all(request.as_bytes()).ok()?;
        let mut line = String::new();
        conn.read_line(&mut line).ok()?;
        let code: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
        let mut length = None;
        let mut close = false;
        loop {
            let mut header = String::new();
            conn.read_line(&mut header).ok()?;
            let header = header.trim_end().to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            if let Some(v) = header.strip_prefix("content-length:") {
                length = v.trim().parse::<usize>().ok();
            }
            close |= header == "connection: close";
        }
        let mut body = vec![0; length?];
        conn.read_exact(&mut body).ok()?;
        if close {
            self.conn = None;
        }
        Some((code, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// A member (node2, with the secret) spends more than `NONCES_PER_AGENT` fresh nonces within
/// the replay window, then replays its first request and one from the middle, unchanged. Both
/// must be refused as replays. The old cache cleared itself wholesale when it held 10,000
/// nonces, so the same replays were answered 200 with this agent's observations.
#[test]
fn a_request_replayed_after_ten_thousand_fresh_ones_is_refused() {
    let running = start(["127.0.130.5", "127.0.130.6"]);
    let secret = Secret::new(SECRET.as_bytes()).unwrap();
    let mut client = Client {
        addr: running.peer,
        conn: None,
    };
    let started = Instant::now();
    let first = signed(&secret, "node2", unix_now(), &format!("{:032x}", 0));
    let (code, body) = client.get(&first);
    assert_eq!(code, 200, "a member's signed request is answered: {body}");
    let mut middle = None;
    let mut answered = 1;
    let mut refused = Vec::new();
    for i in 1..=NONCES_PER_AGENT {
        let request = signed(&secret, "node2", unix_now(), &format!("{i:032x}"));
        let (code, body) = client.get(&request);
        match code {
            200 => answered += 1,
            _ => refused.push((i, code, body)),
        }
        if i == NONCES_PER_AGENT / 2 {
            middle = Some(request);
        }
    }
    let elapsed = started.elapsed();
    // All within the window (30 s): otherwise a replay could be refused for its age alone.
    assert!(
        elapsed < Duration::from_secs(25),
        "{answered} requests took {elapsed:?}, too slow for this test"
    );
    for (which, request) in [("first", &first), ("middle", middle.as_ref().unwrap())] {
        let (code, body) = client.get(request);
        assert_eq!(
            (code, body.trim()),
            (401, "refused: nonce already used (a replayed request)"),
            "the {which} request replayed after {} fresh ones",
            NONCES_PER_AGENT + 1
        );
    }
    // The member's whole allowance was answered; what went past it was refused, not answered
    // by forgetting the oldest.
    assert_eq!(
        answered,
        NONCES_PER_AGENT,
        "refused within the allowance: {:?}",
        refused.first()
    );
    // The operator sees the replay in the log.
    running
        .agent
        .wait_log("nonce already used (a replayed request)", 1);
}
