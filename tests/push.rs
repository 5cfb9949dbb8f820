//! Changes pushed and suspicions spread, between real agents: three `failoverd run` processes
//! on 127.0.180.1–3 (a minority fault in network namespaces), over real backends; `dig` and the
//! status API say what each agent answers and sees.
//!
//! The probe interval (2 s) is long and the retry short (100 ms): an agent that switches well
//! within an interval of the first one can only have done so because it heard the first one's
//! suspicion (and probed at once) and its change (pushed, not pulled: the pull period is 2 s too).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{AgentProcess, Backend, binary, dig, free_port, wait_until};

const ZONE: &str = "ha.example.com";
const SECRET: &str = "a cluster secret of more than sixteen characters";
const TIMING: &str = "{ interval: 2s, retry_interval: 100ms, timeout: 100ms, fall: 2, rise: 2 }";

struct Cluster {
    agents: Vec<AgentProcess>,
    dashboards: Vec<SocketAddr>,
    peers: Vec<SocketAddr>,
}

fn config(backends: &[Backend], me: usize, ports: (u16, u16, u16)) -> String {
    let (dns, peer, dash) = ports;
    let ip = &backends[me].ip;
    let mut yaml = format!(
        "zone: {ZONE}\nself: node{}\ndns: {{ listen: [\"{ip}:{dns}\"], ttl: 5s }}\n\
         dashboard: {{ listen: \"{ip}:{dash}\" }}\n\
         cluster: {{ listen: \"{ip}:{peer}\", period: 2s }}\n\
         defaults: {TIMING}\nnodes:\n",
        me + 1
    );
    yaml.push_str(&common::nodes_yaml(backends));
    yaml.push_str(&format!(
        "checks:\n  - {{ id: web, type: http, url: \"http://{{address}}:{}/\" }}\n\
         hostnames:\n  - {{ name: app, checks: [web] }}\n",
        backends[0].http_port
    ));
    yaml
}

fn start(backends: &[Backend]) -> Cluster {
    let ips: Vec<&str> = backends.iter().map(|b| b.ip.as_str()).collect();
    let ports = (free_port(&ips), free_port(&ips), free_port(&ips));
    let mut agents = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        // A third of an interval apart, so that the agents' probes are not in step.
        if i > 0 {
            std::thread::sleep(Duration::from_millis(667));
        }
        let mut launcher = Command::new(binary());
        launcher.env("FAILOVERD_CLUSTER_SECRET", SECRET);
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let dns: SocketAddr = format!("{ip}:{}", ports.0).parse().unwrap();
        agents.push(AgentProcess::start_with(
            launcher,
            dir,
            state,
            &config(backends, i, ports),
            dns,
        ));
    }
    for a in &mut agents {
        a.wait_ready(&format!("app.{ZONE}"));
    }
    let at = |port: u16| -> Vec<SocketAddr> {
        ips.iter()
            .map(|ip| format!("{ip}:{port}").parse().unwrap())
            .collect()
    };
    Cluster {
        agents,
        dashboards: at(ports.2),
        peers: at(ports.1),
    }
}

/// An HTTP/1.1 request; the status code and the body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out).to_string();
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

impl Cluster {
    fn answers(&self) -> Vec<Vec<String>> {
        self.agents
            .iter()
            .map(|a| dig(a.dns, &format!("app.{ZONE}"), "A", &[]).answers)
            .collect()
    }

    fn status(&self, i: usize) -> serde_json::Value {
        let (_, body) = http(self.dashboards[i], "GET", "/api/v1/status", &[], b"");
        serde_json::from_str(&body).unwrap()
    }

    /// This agent's own state of node1/web (`OK`, `KO`).
    fn local_state(&self, i: usize) -> String {
        self.status(i)["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["node"] == "node1")
            .map(|p| p["local_state"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    }

    /// A counter of `/metrics` summed over its series.
    fn metric(&self, i: usize, name: &str) -> u64 {
        let (_, body) = http(self.dashboards[i], "GET", "/metrics", &[], b"");
        body.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// Polls every agent's own state and answer until all three have `local` and answer
    /// `want`; the moments (since `t0`) each first had that local state and that answer.
    fn watch(&self, t0: Instant, local: &str, want: &str) -> (Vec<Duration>, Vec<Duration>) {
        let mut seen = [None; 3];
        let mut moved = [None; 3];
        let deadline = Instant::now() + Duration::from_secs(15);
        while seen.iter().chain(moved.iter()).any(Option::is_none) {
            assert!(
                Instant::now() < deadline,
                "not all moved: seen {seen:?} moved {moved:?}"
            );
            for i in 0..3 {
                if seen[i].is_none() && self.local_state(i) == local {
                    seen[i] = Some(t0.elapsed());
                }
                if moved[i].is_none()
                    && dig(self.agents[i].dns, &format!("app.{ZONE}"), "A", &[]).answers == [want]
                {
                    moved[i] = Some(t0.elapsed());
                }
            }
        }
        (
            seen.iter().map(|s| s.unwrap()).collect(),
            moved.iter().map(|s| s.unwrap()).collect(),
        )
    }
}

/// The tests of this file measure how closely three agents move together: they run one at a
/// time, so that one test's agents do not take the CPU another test's timing depends on.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn spread(times: &[Duration]) -> Duration {
    *times.iter().max().unwrap() - *times.iter().min().unwrap()
}

/// node1's web server dies at a random moment of the agents' 2 s intervals: the first agent to
/// probe it suspects it, the two others hear it and probe at once, so all three see it down
/// within a few retries of each other (not up to an interval apart), and the change is pushed,
/// so all three answer node2 within a few tens of milliseconds of each other. The same on the
/// way back.
#[test]
fn a_failure_seen_first_by_one_agent_moves_all_three_together() {
    let _serial = one_at_a_time();
    let ips = ["127.0.180.1", "127.0.180.2", "127.0.180.3"];
    let mut backends = Backend::group(&ips);
    let cluster = start(&backends);
    wait_until(Duration::from_secs(10), "all three to answer node1", || {
        cluster.answers().iter().all(|a| *a == [ips[0]])
    });
    let extra_before: u64 = (0..3)
        .map(|i| cluster.metric(i, "failoverd_check_extra_probes"))
        .sum();
    for round in 0..2 {
        let t0 = Instant::now();
        backends[0].stop();
        let (seen, moved) = cluster.watch(t0, "KO", ips[1]);
        eprintln!("round {round} down: seen {seen:?}, moved {moved:?}");
        // Without the spread, the three would see it at their own intervals, up to 2 s apart.
        assert!(
            spread(&seen) < Duration::from_millis(700),
            "local KO {seen:?}"
        );
        // Pushed: the last agent answers node2 right after the first (not a 2 s pull later).
        assert!(
            spread(&moved) < Duration::from_millis(300),
            "answers moved at {moved:?}"
        );
        // Within the single-agent bound (2 s + 100 ms + 100 ms) and the polling's slack.
        assert!(
            *moved.iter().max().unwrap() < Duration::from_millis(3000),
            "{moved:?}"
        );

        let t0 = Instant::now();
        backends[0].resume();
        let (seen, moved) = cluster.watch(t0, "OK", ips[0]);
        eprintln!("round {round} up: seen {seen:?}, moved {moved:?}");
        assert!(
            spread(&seen) < Duration::from_millis(700),
            "local OK {seen:?}"
        );
        assert!(
            spread(&moved) < Duration::from_millis(300),
            "answers moved at {moved:?}"
        );
    }
    let extra_after: u64 = (0..3)
        .map(|i| cluster.metric(i, "failoverd_check_extra_probes"))
        .sum();
    assert!(
        extra_after > extra_before,
        "no extra probe counted: {extra_after}"
    );
    assert!(cluster.metric(0, "failoverd_peer_pushes_sent") > 0);
}

/// Pushes from outside the cluster are refused as bad pulls are, and change nothing: unsigned,
/// an unknown agent, a wrong secret, a replayed nonce, a body bigger than the configuration can
/// need, a body that is not the signer's answer.
#[test]
fn a_hostile_push_is_refused_and_counts_for_nothing() {
    let _serial = one_at_a_time();
    use failoverd::cluster::auth::{
        HEADER_AGENT, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIME, Secret, nonce, unix_now,
    };
    use failoverd::cluster::{OBSERVATIONS_PATH, PairVote, PeerAnswer};
    let ips = ["127.0.181.1", "127.0.181.2", "127.0.181.3"];
    let backends = Backend::group(&ips);
    let cluster = start(&backends);
    wait_until(Duration::from_secs(10), "all three to answer node1", || {
        cluster.answers().iter().all(|a| *a == [ips[0]])
    });
    // node3 "says" node1 is down: with node2 saying so too, agent 1 would move (2 of 3).
    let forged = |agent: &str| {
        serde_json::to_vec(&PeerAnswer {
            agent: agent.into(),
            zone: ZONE.into(),
            observations: vec![PairVote {
                node: "node1".into(),
                check: "web".into(),
                up: false,
                age_ms: 0,
                latency_ms: 1.0,
                error: Some("forged".into()),
                changing: false,
            }],
            overrides: vec![],
            serial: None,
        })
        .unwrap()
    };
    let signed = |secret: &Secret, agent: &str, n: &str, body: &[u8]| {
        let time = unix_now();
        vec![
            (HEADER_AGENT, agent.to_string()),
            (HEADER_TIME, time.to_string()),
            (HEADER_NONCE, n.to_string()),
            (
                HEADER_SIGNATURE,
                secret.sign_push(agent, time, n, OBSERVATIONS_PATH, body),
            ),
        ]
    };
    let good = Secret::new(SECRET.as_bytes()).unwrap();
    let wrong = Secret::new(b"another secret, sixteen or more").unwrap();
    let to = cluster.peers[0];
    let post = |headers: &[(&str, String)], body: &[u8]| {
        http(to, "POST", OBSERVATIONS_PATH, headers, body)
    };
    for agent in ["node2", "node3"] {
        let body = forged(agent);
        let (code, text) = post(&[], &body);
        assert_eq!(code, 401, "unsigned: {text}");
        let (code, text) = post(&signed(&good, "node9", &nonce(), &body), &body);
        assert_eq!(code, 401, "unknown agent: {text}");
        let (code, text) = post(&signed(&wrong, agent, &nonce(), &body), &body);
        assert_eq!(code, 401, "wrong secret: {text}");
        // Signed for another body.
        let (code, text) = post(&signed(&good, agent, &nonce(), b"{}"), &body);
        assert_eq!(code, 401, "signature over another body: {text}");
        // Too big for three nodes and one check, even correctly signed.
        let mut big = body.clone();
        big.extend(std::iter::repeat_n(b' ', 2 * 1024 * 1024));
        let (code, text) = post(&signed(&good, agent, &nonce(), &big), &big);
        assert_eq!(code, 401, "oversized: {text}");
    }
    // Signed by a member, but node2 claiming to speak for node3: refused.
    let body = forged("node3");
    let (code, text) = post(&signed(&good, "node2", &nonce(), &body), &body);
    assert_eq!(code, 400, "answer of another agent: {text}");
    // A nonce spent once is refused the second time (a replay).
    let body = forged("node2");
    let n = nonce();
    let headers = signed(&good, "node2", &n, &body);
    let (code, _) = post(&headers, &body);
    assert_eq!(code, 204, "a member's push is taken");
    let (code, text) = post(&headers, &body);
    assert_eq!(code, 401, "replay: {text}");
    // One forged down vote (node2's, from a member's key) is one vote of three: nothing moves,
    // and the real pull replaces it at once.
    for _ in 0..10 {
        assert!(
            cluster.answers().iter().all(|a| *a == [ips[0]]),
            "{:?}",
            cluster.answers()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = cluster.agents[0].log_text();
    assert!(log.contains("peer API request refused"), "{log}");
}

/// h2 alone loses node1's web server (network namespaces, a one-way TCP drop): the two others
/// hear its suspicion and probe again, see node1 fine, and nothing moves; the extra probes this
/// costs stay a handful (bounded), not one per retry interval for as long as the fault lasts.
#[test]
fn a_minority_fault_moves_nothing_and_costs_bounded_extra_probes() {
    let _serial = one_at_a_time();
    use common::netns::Netns;
    let net = Netns::create(3);
    let ips: Vec<String> = net.hosts().map(|i| net.host_ip(i).to_string()).collect();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "Sign in").unwrap();
    let servers = net.web_servers(8080, www.path());
    let agents = net.start_cluster(
        &ips,
        ZONE,
        SECRET,
        "{ip}:8081",
        "period: 2s",
        "interval: 1s, retry_interval: 100ms, timeout: 100ms, fall: 2, rise: 2",
    );
    let answers = |agents: &[AgentProcess]| net.answers(agents, ZONE);
    let extra = |i: usize| -> u64 {
        let out = net
            .command(i, "curl")
            .args([
                "-s",
                "--max-time",
                "5",
                &format!("http://{}:8081/metrics", ips[i - 1]),
            ])
            .output()
            .expect("curl in the namespace");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("failoverd_check_extra_probes"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    let node1 = vec![ips[0].clone()];
    wait_until(Duration::from_secs(10), "all three to answer node1", || {
        answers(&agents).iter().all(|a| *a == node1)
    });
    let before = [extra(1), extra(3)];

    net.drop_tcp(2, net.host_ip(1), 8080);
    wait_until(
        Duration::from_secs(10),
        "agent 2 to see node1 down itself",
        || {
            agents[1].log_text().lines().any(|l| {
                l.contains("local check state changed")
                    && l.contains("node=node1")
                    && l.contains("to=\"KO\"")
            })
        },
    );
    // Four intervals of a split vote: nobody moves, and agents 1 and 3 probed node1 early only
    // a few times (at most MAX_EXTRA = 2 per change they heard of: agent 2's suspicion and its
    // KO), not every retry interval (40 in 4 s).
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        let all = answers(&agents);
        assert!(
            all.iter().all(|a| *a == node1),
            "the answer moved on one agent's fault: {all:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = [extra(1), extra(3)];
    for k in 0..2 {
        let spent = after[k] - before[k];
        assert!(
            spent <= 4,
            "agent {}: {spent} extra probes for one fault",
            [1, 3][k]
        );
    }
    net.restore(2);
    drop(agents);
    for mut s in servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    net.close();
}
