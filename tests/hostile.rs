//! Hostile input against the real `failoverd run` binary: a compromised member serving floods
//! of overrides, a backend streaming an endless body, a signal during start, an operator's
//! override that cannot be stored. Each test bounds the attack in count and time, on loopback.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{AgentProcess, Backend, binary, dig, free_port, wait_until};

const ZONE: &str = "ha.example.com";
const SECRET: &str = "a cluster secret of more than sixteen characters";

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

fn status(dashboard: SocketAddr) -> serde_json::Value {
    let body = http_get(dashboard, "/api/v1/status");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("status JSON ({e}): {body}"))
}

/// The status, if the dashboard answers at all.
fn try_status(dashboard: SocketAddr) -> Option<serde_json::Value> {
    TcpStream::connect(dashboard).ok()?;
    serde_json::from_str(&http_get(dashboard, "/api/v1/status")).ok()
}

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

/// No line of the log was written by anyone but the agent: every line it writes starts with a
/// timestamp (a forged line would start with whatever the attacker chose).
fn assert_no_forged_lines(log: &str) {
    for line in log.lines() {
        assert!(
            line.starts_with(|c: char| c.is_ascii_digit()),
            "a log line that is not the agent's: {line:?}"
        );
    }
}

/// A peer API server on node3's peer address that has the cluster secret and answers every
/// pull with what a compromised member might send. Stops when dropped.
struct RoguePeer {
    answers: Arc<AtomicUsize>,
    /// Large answers sent (16,000 invented hostnames each).
    floods: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

/// Invented hostnames per large answer, as in the reported attack.
const FLOOD: usize = 16_000;
/// How long the rogue floods at most.
const FLOOD_FOR: Duration = Duration::from_secs(30);

impl RoguePeer {
    fn start(addr: SocketAddr) -> RoguePeer {
        let answers = Arc::new(AtomicUsize::new(0));
        let floods = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopped) = (answers.clone(), stop.clone());
        // Serializing 16,000 entries takes seconds in a debug build: the large bodies are built
        // once, beforehand (three sets of different hostnames); only signing is per answer.
        let bodies: Arc<std::sync::OnceLock<Vec<Vec<u8>>>> = Arc::default();
        let ready = bodies.clone();
        thread::spawn(move || {
            let _ = ready.set((0..3).map(flood_body).collect());
        });
        let sent = floods.clone();
        let listener = std::net::TcpListener::bind(addr).expect("bind the rogue peer");
        listener.set_nonblocking(true).unwrap();
        let thread = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let started = Instant::now();
                let app = axum::Router::new().route(
                    "/v1/observations",
                    axum::routing::get(move |headers: axum::http::HeaderMap| {
                        let (count, bodies, sent) = (count.clone(), bodies.clone(), sent.clone());
                        async move {
                            let n = count.fetch_add(1, Ordering::SeqCst);
                            // Building and signing megabytes is slow in a debug build: off
                            // the runtime, so the small answers are not held up behind it.
                            tokio::task::spawn_blocking(move || {
                                let t = Instant::now();
                                let flood = (n % 3 == 0)
                                    .then(|| bodies.get().map(|b| &b[(n / 3) % 3]))
                                    .flatten();
                                if flood.is_some() {
                                    sent.fetch_add(1, Ordering::SeqCst);
                                }
                                let r = rogue_answer(&headers, n, flood);
                                if n < 6 {
                                    eprintln!("rogue answer {n} took {:?}", t.elapsed());
                                }
                                r
                            })
                            .await
                            .unwrap()
                        }
                    }),
                );
                let until = async move {
                    while !stopped.load(Ordering::SeqCst) && started.elapsed() < FLOOD_FOR {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                };
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(until)
                    .await;
            });
        });
        RoguePeer {
            answers,
            floods,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for RoguePeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answer number `n` of the rogue: in turn a flood of invented hostnames (16,000), a small set
/// of entries no operator could set (a pin of `app` to node1 at version 2^64 − 1, invented
/// agents, a reason with a forged log line), and an error whose text forges log lines.
fn rogue_answer(
    headers: &axum::http::HeaderMap,
    n: usize,
    flood: Option<&Vec<u8>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use failoverd::overrides::Kind;
    let nonce = headers
        .get("x-failoverd-nonce")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let secret = failoverd::cluster::auth::Secret::new(SECRET.as_bytes()).unwrap();
    let signed = |body: Vec<u8>| {
        let signature = secret.sign_response(&nonce, &body);
        (
            [
                ("x-failoverd-signature", signature),
                ("content-type", "application/json".to_string()),
            ],
            body,
        )
            .into_response()
    };
    if let Some(body) = flood {
        return signed(body.clone());
    }
    let overrides = match n % 3 {
        0 | 1 => {
            let mut forged = entry(Kind::Maintenance, "node2".into(), None, 7, "node3");
            forged.reason = "ok\r\nFORGED ERROR a line the agent never wrote".into();
            vec![
                entry(
                    Kind::Force,
                    format!("app.{ZONE}"),
                    Some("node1"),
                    u64::MAX,
                    "node3",
                ),
                entry(Kind::Maintenance, "node2".into(), None, 9, "intruder"),
                forged,
            ]
        }
        _ => {
            return (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "boom\r\nFORGED ERROR peer text the agent never wrote\n",
            )
                .into_response();
        }
    };
    signed(rogue_body(overrides))
}

/// A forged entry of the rogue's.
fn entry(
    kind: failoverd::overrides::Kind,
    target: String,
    node: Option<&str>,
    version: u64,
    origin: &str,
) -> failoverd::overrides::Override {
    failoverd::overrides::Override {
        kind,
        target,
        node: node.map(Into::into),
        active: true,
        reason: "pinned by a member".into(),
        by: "rogue".into(),
        set_at: 0,
        expires_at: None,
        version,
        origin: origin.into(),
    }
}

/// Large answer number `k`: 16,000 invented hostnames forced to node1, at version k + 1.
fn flood_body(k: usize) -> Vec<u8> {
    rogue_body(
        (0..FLOOD)
            .map(|i| {
                entry(
                    failoverd::overrides::Kind::Force,
                    format!("invented-{k}-{i}.{ZONE}"),
                    Some("node1"),
                    k as u64 + 1,
                    "node3",
                )
            })
            .collect(),
    )
}

/// The rogue's answer with `overrides`; it also votes every pair up, node1 included, whatever
/// happens.
fn rogue_body(overrides: Vec<failoverd::overrides::Override>) -> Vec<u8> {
    let observations = ["node1", "node2", "node3"]
        .iter()
        .map(|node| failoverd::cluster::PairVote {
            node: node.to_string(),
            check: "web".into(),
            up: true,
            age_ms: 0,
            latency_ms: 1.0,
            error: None,
            changing: false,
        })
        .collect();
    serde_json::to_vec(&failoverd::cluster::PeerAnswer {
        agent: "node3".into(),
        zone: ZONE.into(),
        observations,
        overrides,
        serial: None,
    })
    .unwrap()
}

/// The reported attack: one member (node3) floods the two honest agents with invented
/// overrides and pins `app` to node1 with a version that cannot be beaten; node1's web server
/// then dies. Both honest agents must move `app` to node2 within a few seconds, keep nothing
/// of the flood, log nothing forged, and stop within 5 s of SIGTERM.
#[test]
fn a_member_flooding_overrides_cannot_stop_failover() {
    let ips = ["127.0.70.1", "127.0.70.2", "127.0.70.3"];
    let mut backends = Backend::group(&ips);
    let (dns_port, peer_port, dash_port) = (free_port(&ips), free_port(&ips), free_port(&ips));
    let rogue = RoguePeer::start(format!("{}:{peer_port}", ips[2]).parse().unwrap());
    let config = |me: usize| {
        let ip = ips[me];
        let mut yaml = format!(
            "zone: {ZONE}\nself: node{}\ndns: {{ listen: [\"{ip}:{dns_port}\"], ttl: 5s }}\n\
             dashboard: {{ listen: \"{ip}:{dash_port}\" }}\n\
             cluster: {{ listen: \"{ip}:{peer_port}\", quorum: majority, period: 1s }}\n\
             defaults: {{ interval: 300ms, retry_interval: 100ms, timeout: 80ms }}\nnodes:\n",
            me + 1
        );
        yaml.push_str(&common::nodes_yaml(&backends));
        yaml.push_str(&format!(
            "checks:\n  - {{ id: web, type: http, url: \"http://{{address}}:{}/\" }}\n\
             hostnames:\n  - {{ name: app, checks: [web] }}\n",
            backends[0].http_port
        ));
        yaml
    };
    let mut agents: Vec<AgentProcess> = (0..2)
        .map(|i| {
            let mut launcher = Command::new(binary());
            launcher.env("FAILOVERD_CLUSTER_SECRET", SECRET);
            let dir = tempfile::tempdir().unwrap();
            let state = dir.path().join("state");
            let dns: SocketAddr = format!("{}:{dns_port}", ips[i]).parse().unwrap();
            AgentProcess::start_with(launcher, dir, state, &config(i), dns)
        })
        .collect();
    for a in &mut agents {
        a.wait_ready(&format!("app.{ZONE}"));
    }
    let app = |a: &AgentProcess| dig(a.dns, &format!("app.{ZONE}"), "A", &[]).answers;
    // The flood runs: a few rounds of each kind of answer have reached both agents.
    wait_until(
        Duration::from_secs(30),
        "the rogue to send 4 floods",
        || rogue.floods.load(Ordering::SeqCst) >= 4 && rogue.answers.load(Ordering::SeqCst) >= 12,
    );
    for a in &agents {
        assert_eq!(app(a), ["127.0.70.1"]);
    }

    // node1's web server dies while the flood goes on.
    backends[0].stop();
    let died = Instant::now();
    wait_until(
        Duration::from_secs(5),
        "both honest agents to move app to node2",
        || agents.iter().all(|a| app(a) == ["127.0.70.2"]),
    );
    let failover = died.elapsed();
    let answered_during = rogue.answers.load(Ordering::SeqCst);

    for (i, a) in agents.iter().enumerate() {
        let dash: SocketAddr = format!("{}:{dash_port}", ips[i]).parse().unwrap();
        let s = status(dash);
        assert_eq!(
            s["overrides"].as_array().map(Vec::len),
            Some(0),
            "agent {} took in the rogue's overrides: {}",
            i + 1,
            s["overrides"]
        );
        let stored = a.state_dir.join("overrides.json");
        let size = std::fs::metadata(&stored).map(|m| m.len()).unwrap_or(0);
        assert!(size < 4096, "overrides.json is {size} bytes");
        let rss = rss_mib(a.pid());
        eprintln!(
            "agent {}: {rss} MiB resident, overrides.json {size} bytes",
            i + 1
        );
        assert!(rss < 200, "agent {} uses {rss} MiB", i + 1);
        let log = a.log_text();
        assert!(
            log.contains("overrides sent by another agent refused"),
            "the refusal is logged: {log}"
        );
        assert!(
            log.contains("more than this configuration can need"),
            "{log}"
        );
        assert_no_forged_lines(&log);
    }

    // SIGTERM ends each agent within 5 s, flood or not.
    for a in &mut agents {
        let asked = Instant::now();
        let code = a.terminate();
        let took = asked.elapsed();
        assert_eq!(code, Some(0), "{}", a.log_text());
        assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
    }
    eprintln!(
        "failover under the flood took {failover:?}; the rogue answered {answered_during} pulls"
    );
}

/// A web server whose every answer is an endless body without the expected text, at full
/// speed (`fast`) or trickling (4 KiB per ms). Each connection is bounded to 20 s.
struct EndlessBody {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl EndlessBody {
    fn start(ip: &str, trickle: bool) -> EndlessBody {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                let Ok((mut stream, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let stopped = stopped.clone();
                thread::spawn(move || {
                    let _ = stream.set_nonblocking(false);
                    let mut request = [0u8; 4096];
                    let _ = stream.read(&mut request);
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n",
                    );
                    let chunk = vec![b'a'; if trickle { 4096 } else { 64 * 1024 }];
                    let started = Instant::now();
                    while !stopped.load(Ordering::SeqCst)
                        && started.elapsed() < Duration::from_secs(20)
                    {
                        if stream.write_all(&chunk).is_err() {
                            return;
                        }
                        if trickle {
                            thread::sleep(Duration::from_millis(1));
                        }
                    }
                });
            }
        });
        EndlessBody { port, stop }
    }
}

impl Drop for EndlessBody {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// `body_limit` at its largest (16 MiB, 300 MB is refused by check-config) and a backend that
/// never stops sending: the 1 s timeout ends the probe, body included, within about 1.5 s.
#[test]
fn an_endless_body_fails_the_probe_within_its_timeout() {
    let ip = "127.0.71.1";
    let fast = EndlessBody::start(ip, false);
    let slow = EndlessBody::start(ip, true);
    let dns = common::dns_addr(ip);
    let dash: SocketAddr = format!("{ip}:{}", free_port(&[ip])).parse().unwrap();
    let yaml = format!(
        "zone: {ZONE}\nself: node1\ndns: {{ listen: [\"{dns}\"] }}\ndashboard: {{ listen: \"{dash}\" }}\n\
         defaults: {{ interval: 3s, retry_interval: 3s, timeout: 1s }}\n\
         nodes:\n  - {{ id: node1, address: {ip} }}\n\
         checks:\n\
         \x20 - {{ id: fast, type: http, url: \"http://{{address}}:{}/\", expect_body: \"Sign in\", body_limit: 16777216 }}\n\
         \x20 - {{ id: slow, type: http, url: \"http://{{address}}:{}/\", expect_body: \"Sign in\", body_limit: 16777216 }}\n\
         hostnames:\n  - {{ name: app, checks: [fast, slow] }}\n",
        fast.port, slow.port
    );
    let started = Instant::now();
    let agent = AgentProcess::start(&yaml, dns);
    // The first round ends when both probes have failed: DNS then answers (all down: the
    // default `when_all_down` still names the node).
    wait_until(
        Duration::from_secs(10),
        "the first round of checks to end",
        || {
            try_status(dash).is_some_and(|s| {
                s["checks"]
                    .as_array()
                    .is_some_and(|c| c.iter().all(|p| p["state"] == "KO"))
            })
        },
    );
    let round = started.elapsed();
    let s = status(dash);
    for pair in s["checks"].as_array().unwrap() {
        let latency = pair["latency_ms"].as_f64().unwrap();
        let error = pair["error"].as_str().unwrap_or_default();
        eprintln!("{}: {latency} ms: {error}", pair["check"]);
        assert!(
            latency < 1500.0,
            "{} took {latency} ms: {error}",
            pair["check"]
        );
        assert!(
            error.contains("timeout after 1s") || error.contains("did not contain"),
            "{}: {error}",
            pair["check"]
        );
    }
    let slow_error = s["checks"][1]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        slow_error.contains("timeout after 1s"),
        "the trickle never reaches the limit: the timeout ends it ({slow_error})"
    );
    assert!(round < Duration::from_secs(5), "first round took {round:?}");
    drop(agent);
}

/// A SIGHUP as soon as the process can take one: it is queued for when the agent runs (a
/// reload), not fatal. The handler must be in place before the agent binds anything.
#[test]
fn a_sighup_during_start_is_a_reload_not_a_kill() {
    let backends = Backend::group(&["127.0.72.1"]);
    let dns = common::dns_addr("127.0.72.1");
    let dash: SocketAddr = format!("127.0.72.1:{}", free_port(&["127.0.72.1"]))
        .parse()
        .unwrap();
    let yaml = format!(
        "zone: {ZONE}\nself: node1\ndns: {{ listen: [\"{dns}\"] }}\ndashboard: {{ listen: \"{dash}\" }}\n\
         defaults: {{ interval: 300ms, retry_interval: 100ms, timeout: 80ms }}\nnodes:\n{}\
         checks:\n  - {{ id: web, type: http, url: \"http://{{address}}:{}/\" }}\n\
         hostnames:\n  - {{ name: app, checks: [web] }}\n",
        common::nodes_yaml(&backends),
        backends[0].http_port
    );
    let mut agent = AgentProcess::start(&yaml, dns);
    let pid = agent.pid();
    // Watch the process's caught signals; the moment SIGHUP is caught, send one.
    let started = Instant::now();
    let catches_hup = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                let mask = s
                    .lines()
                    .find_map(|l| l.strip_prefix("SigCgt:"))?
                    .trim()
                    .to_string();
                u64::from_str_radix(&mask, 16).ok()
            })
            .is_some_and(|mask| mask & 1 != 0)
    };
    while !catches_hup() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "SIGHUP never caught; log:\n{}",
            agent.log_text()
        );
        thread::sleep(Duration::from_micros(200));
    }
    let caught = Instant::now();
    let dashboard_up = TcpStream::connect(dash).is_ok();
    // SAFETY: kill(2) on the child this test started, by its PID.
    let sent = unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) };
    assert_eq!(sent, 0);
    assert!(
        !dashboard_up,
        "SIGHUP was caught only once the agent had bound its sockets"
    );
    while TcpStream::connect(dash).is_err() && caught.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_micros(200));
    }
    eprintln!(
        "the dashboard listened {:?} after SIGHUP was first caught",
        caught.elapsed()
    );
    agent.wait_ready(&format!("app.{ZONE}"));
    agent.wait_log("SIGHUP: reloading the configuration", 1);
    agent.wait_log("configuration reloaded", 1);
    assert_eq!(
        dig(dns, &format!("app.{ZONE}"), "A", &[]).answers,
        ["127.0.72.1"]
    );
    assert_eq!(agent.terminate(), Some(0));
}

/// An operator's override that cannot be stored is refused (and not applied): it would not
/// survive a restart. A reason that would forge log lines is refused too.
#[test]
fn an_override_that_cannot_be_stored_is_refused_and_not_applied() {
    let ips = ["127.0.73.1", "127.0.73.2"];
    let backends = Backend::group(&ips);
    let dns = common::dns_addr(ips[0]);
    let dash: SocketAddr = format!("{}:{}", ips[0], free_port(&[ips[0]]))
        .parse()
        .unwrap();
    let yaml = format!(
        "zone: {ZONE}\nself: node1\ndns: {{ listen: [\"{dns}\"] }}\ndashboard: {{ listen: \"{dash}\" }}\n\
         defaults: {{ interval: 300ms, retry_interval: 100ms, timeout: 80ms }}\nnodes:\n{}\
         checks:\n  - {{ id: web, type: http, url: \"http://{{address}}:{}/\" }}\n\
         hostnames:\n  - {{ name: app, checks: [web] }}\n",
        common::nodes_yaml(&backends),
        backends[0].http_port
    );
    let mut agent = AgentProcess::start(&yaml, dns);
    agent.wait_ready(&format!("app.{ZONE}"));
    let maintenance = |reason: &str| {
        Command::new(binary())
            .args(["maintenance", "node1", "on", "--reason", reason, "--url"])
            .arg(format!("http://{dash}"))
            .output()
            .unwrap()
    };

    let out = maintenance("ok\r\n2026-12-01T00:00:00Z ERROR FORGED");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("control characters"), "{stderr}");

    // The state directory refuses the file (a directory sits where it goes; root or not).
    std::fs::create_dir_all(agent.state_dir.join("overrides.json/blocked")).unwrap();
    let out = maintenance("kernel update");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot store the override") && stderr.contains("not applied"),
        "{stderr}"
    );
    // Not applied: node1 still answers, no override is shown.
    for _ in 0..5 {
        assert_eq!(
            dig(dns, &format!("app.{ZONE}"), "A", &[]).answers,
            ["127.0.73.1"]
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status(dash)["overrides"].as_array().map(Vec::len), Some(0));
    assert_no_forged_lines(&agent.log_text());

    // Once the state directory takes it again, the same request works.
    std::fs::remove_dir_all(agent.state_dir.join("overrides.json")).unwrap();
    let out = maintenance("kernel update");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(Duration::from_secs(5), "app to move to node2", || {
        dig(dns, &format!("app.{ZONE}"), "A", &[]).answers == ["127.0.73.2"]
    });
    assert_eq!(agent.terminate(), Some(0));
}
