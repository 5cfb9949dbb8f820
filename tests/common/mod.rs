//! Shared harness for the end-to-end tests: real backends on 127.0.0.x, the real `failoverd`
//! binary, `dig` as the DNS client, and waiting for conditions with a deadline.
#![allow(dead_code)] // each test binary uses a different part of the harness

/// Headless Chromium and commands with a deadline.
pub mod browser;
/// Several hosts on one machine: network namespaces, a bridge, one-way faults (needs root).
pub mod netns;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The binary under test: as cargo built it for this test run, or the one named by
/// `FAILOVERD_TEST_BINARY` (bench/attacks.sh runs the attack tests against a release build).
pub fn binary() -> PathBuf {
    match std::env::var_os("FAILOVERD_TEST_BINARY") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_failoverd")),
    }
}

/// `failoverd SUBCOMMAND --config CONFIG`, ready for more arguments, `env` and `output`.
pub fn command(subcommand: &str, config: &Path) -> Command {
    let mut command = Command::new(binary());
    command.arg(subcommand).arg("--config").arg(config);
    command
}

/// Polls `check` every 50 ms until it returns true; panics with `what` after `deadline`.
pub fn wait_until(deadline: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if check() {
            return;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A port free on every one of `ips` (TCP and UDP), found by binding.
pub fn free_port(ips: &[&str]) -> u16 {
    for _ in 0..200 {
        let first = TcpListener::bind((ips[0], 0)).expect("bind loopback");
        let port = first.local_addr().unwrap().port();
        let all_free = ips
            .iter()
            .all(|ip| TcpListener::bind((*ip, port)).is_ok() || *ip == ips[0])
            && ips
                .iter()
                .all(|ip| std::net::UdpSocket::bind((*ip, port)).is_ok());
        drop(first);
        if all_free {
            return port;
        }
    }
    panic!("no common free port on {ips:?}");
}

/// What a simulated HTTP backend does with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpMode {
    /// 200 with a body containing "Sign in".
    Ok,
    /// The given status, body "unavailable".
    Status(u16),
    /// Accepts the connection and never answers.
    Hang,
}

/// One simulated application node: an HTTP server and a TCP service on the same IP.
/// `stop` closes both listeners (connection refused); `start` reopens them on the same ports.
pub struct Backend {
    pub ip: String,
    pub http_port: u16,
    pub tcp_port: u16,
    mode: Arc<Mutex<HttpMode>>,
    running: Option<Arc<AtomicBool>>,
    /// Requests served, to prove a backend was probed.
    pub hits: Arc<AtomicU16>,
}

impl Backend {
    /// Starts a backend on `ip` with the given ports.
    pub fn start(ip: &str, http_port: u16, tcp_port: u16) -> Backend {
        let mut b = Backend {
            ip: ip.to_string(),
            http_port,
            tcp_port,
            mode: Arc::new(Mutex::new(HttpMode::Ok)),
            running: None,
            hits: Arc::new(AtomicU16::new(0)),
        };
        b.resume();
        b
    }

    /// Backends on each of `ips`, sharing one HTTP port and one TCP port (as real nodes do).
    pub fn group(ips: &[&str]) -> Vec<Backend> {
        let http = free_port(ips);
        let mut tcp = free_port(ips);
        while tcp == http {
            tcp = free_port(ips);
        }
        ips.iter().map(|ip| Backend::start(ip, http, tcp)).collect()
    }

    pub fn set_mode(&self, mode: HttpMode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Closes both listeners: new connections are refused.
    pub fn stop(&mut self) {
        if let Some(flag) = self.running.take() {
            flag.store(false, Ordering::SeqCst);
            // Wake the accept loops so they drop their listeners now.
            let _ = TcpStream::connect((self.ip.as_str(), self.http_port));
            let _ = TcpStream::connect((self.ip.as_str(), self.tcp_port));
            wait_until(Duration::from_secs(5), "backend listeners to close", || {
                TcpStream::connect((self.ip.as_str(), self.http_port)).is_err()
                    && TcpStream::connect((self.ip.as_str(), self.tcp_port)).is_err()
            });
        }
    }

    /// Reopens the listeners on the same ports.
    pub fn resume(&mut self) {
        if self.running.is_some() {
            return;
        }
        let running = Arc::new(AtomicBool::new(true));
        let http = bind_retry(&self.ip, self.http_port);
        let tcp = bind_retry(&self.ip, self.tcp_port);
        let (mode, flag, hits) = (self.mode.clone(), running.clone(), self.hits.clone());
        thread::spawn(move || {
            for stream in http.incoming() {
                if !flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                let mode = *mode.lock().unwrap();
                hits.fetch_add(1, Ordering::Relaxed);
                thread::spawn(move || serve_http(&mut stream, mode));
            }
        });
        let flag = running.clone();
        thread::spawn(move || {
            for stream in tcp.incoming() {
                if !flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                let _ = stream.write_all(b"SIP/2.0 ready\r\n");
            }
        });
        self.running = Some(running);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

fn bind_retry(ip: &str, port: u16) -> TcpListener {
    let start = Instant::now();
    loop {
        match TcpListener::bind((ip, port)) {
            Ok(l) => return l,
            Err(e) if start.elapsed() > Duration::from_secs(5) => panic!("bind {ip}:{port}: {e}"),
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn serve_http(stream: &mut TcpStream, mode: HttpMode) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4096];
    let _ = stream.read(&mut buf);
    let (status, body) = match mode {
        HttpMode::Ok => (200, "<html><title>Sign in</title></html>"),
        HttpMode::Status(code) => (code, "unavailable"),
        HttpMode::Hang => {
            thread::sleep(Duration::from_secs(30));
            return;
        }
    };
    let reply = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes());
}

/// The agent binary running with a config written to a temp dir; killed on drop.
pub struct AgentProcess {
    child: Child,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub state_dir: PathBuf,
    /// The DNS address given in the config.
    pub dns: SocketAddr,
    /// Everything the agent wrote to stderr so far.
    pub log: Arc<Mutex<String>>,
}

impl AgentProcess {
    /// Writes `config_yaml` and starts `failoverd run` on it. `dns` must be the address the
    /// config's `dns.listen` names.
    pub fn start(config_yaml: &str, dns: SocketAddr) -> AgentProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let state_dir = dir.path().join("state");
        Self::start_in(dir, state_dir, config_yaml, dns)
    }

    /// Like `start`, with a given state directory (to restart on the same state).
    pub fn start_in(
        dir: tempfile::TempDir,
        state_dir: PathBuf,
        config_yaml: &str,
        dns: SocketAddr,
    ) -> AgentProcess {
        Self::start_with(Command::new(binary()), dir, state_dir, config_yaml, dns)
    }

    /// Like `start_in`, with `launcher` running the binary (e.g. `ip netns exec NS failoverd`,
    /// from `netns::Netns::command`); `run --config …` is appended to it.
    pub fn start_with(
        mut launcher: Command,
        dir: tempfile::TempDir,
        state_dir: PathBuf,
        config_yaml: &str,
        dns: SocketAddr,
    ) -> AgentProcess {
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, config_yaml).expect("write config");
        let mut child = launcher
            .args(["run", "--config"])
            .arg(&config_path)
            .arg("--state-dir")
            .arg(&state_dir)
            .env("RUST_LOG", "info,hickory_server=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start failoverd");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        AgentProcess {
            child,
            dir,
            config_path,
            state_dir,
            dns,
            log,
        }
    }

    /// Waits until DNS answers something other than SERVFAIL for `name`.
    pub fn wait_ready(&mut self, name: &str) {
        let dns = self.dns;
        let log = self.log.clone();
        let child = &mut self.child;
        wait_until(Duration::from_secs(15), "the agent to answer DNS", || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "failoverd exited early ({status}); log:\n{}",
                    log.lock().unwrap()
                );
            }
            let r = dig(dns, name, "A", &[]);
            !r.status.is_empty() && r.status != "SERVFAIL"
        });
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`HUP`, `TERM`, …) to the agent.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    /// Rewrites the config file in place (for a reload).
    pub fn rewrite_config(&self, yaml: &str) {
        std::fs::write(&self.config_path, yaml).expect("rewrite config");
    }

    /// Waits until the log contains `text` `count` times or more.
    pub fn wait_log(&self, text: &str, count: usize) {
        wait_until(
            Duration::from_secs(10),
            &format!("{count}× {text:?} in the agent log"),
            || self.log_text().matches(text).count() >= count,
        );
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        None
    }

    /// Waits (bounded) for the agent to exit by itself; its exit code, or None if it still runs
    /// after `deadline` (or died of a signal).
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Stops the agent and gives back its directory, to start again on the same state.
    pub fn stop_keep_state(mut self) -> (tempfile::TempDir, PathBuf) {
        self.terminate();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (dir, self.state_dir.clone())
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `dig` answer, reduced to what the tests look at.
#[derive(Debug, Clone, Default)]
pub struct DigResult {
    /// NOERROR, NXDOMAIN, REFUSED, SERVFAIL, FORMERR…; empty when dig got no answer.
    pub status: String,
    /// `flags:` of the header, e.g. ["qr", "aa"].
    pub flags: Vec<String>,
    /// RDATA of the answer section, in order.
    pub answers: Vec<String>,
    /// Full records of the authority section.
    pub authority: Vec<String>,
    /// Full records of the additional section (without OPT).
    pub additional: Vec<String>,
    /// The raw output, for failure messages.
    pub raw: String,
}

/// Runs `dig @server -p port name type +extra…` with short timeouts.
pub fn dig(server: SocketAddr, name: &str, qtype: &str, extra: &[&str]) -> DigResult {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args([
            "-p",
            &server.port().to_string(),
            name,
            qtype,
            "+time=1",
            "+tries=1",
            "+norecurse",
        ])
        .args(extra)
        .output()
        .expect("dig is installed (scripts/test.sh installs bind9-dnsutils)");
    parse_dig(&String::from_utf8_lossy(&out.stdout))
}

pub fn parse_dig(raw: &str) -> DigResult {
    let mut r = DigResult {
        raw: raw.to_string(),
        ..Default::default()
    };
    let mut section = "";
    for line in raw.lines() {
        if let Some(rest) = line.split("status: ").nth(1) {
            r.status = rest.split(',').next().unwrap_or("").trim().to_string();
        }
        if let Some(rest) = line.strip_prefix(";; flags: ") {
            r.flags = rest
                .split(';')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_string)
                .collect();
        }
        if line.starts_with(";; ANSWER SECTION") {
            section = "answer";
            continue;
        }
        if line.starts_with(";; AUTHORITY SECTION") {
            section = "authority";
            continue;
        }
        if line.starts_with(";; ADDITIONAL SECTION") {
            section = "additional";
            continue;
        }
        if line.trim().is_empty() || line.starts_with(';') {
            if line.trim().is_empty() {
                section = "";
            }
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match section {
            "answer" if fields.len() >= 5 => r.answers.push(fields[4..].join(" ")),
            "authority" => r.authority.push(fields.join(" ")),
            "additional" => r.additional.push(fields.join(" ")),
            _ => {}
        }
    }
    r
}

/// The SOA serial the server reports.
pub fn soa_serial(server: SocketAddr, zone: &str) -> u32 {
    let r = dig(server, zone, "SOA", &[]);
    let soa = r
        .answers
        .first()
        .unwrap_or_else(|| panic!("no SOA in {}", r.raw));
    soa.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// The `nodes:` entries for `backends`: node1, node2… at their addresses, priorities 30, 20, 10…
pub fn nodes_yaml(backends: &[Backend]) -> String {
    backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            format!(
                "  - {{ id: node{}, address: {}, priority: {} }}\n",
                i + 1,
                b.ip,
                30 - 10 * i
            )
        })
        .collect()
}

/// A loopback DNS address with a free port.
pub fn dns_addr(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse::<IpAddr>().unwrap(), free_port(&[ip]))
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}
