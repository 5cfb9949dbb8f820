//! Witnesses (`cluster.witnesses`) for real: two nodes and a witness, each a real agent in a
//! network namespace of its own (tests/common/netns.rs), real HTTP backends on the nodes, faults
//! made with nftables, answers read with dig; and the same two nodes without the witness, for
//! the two-node behaviour the README documents. Needs root (as tests/netns.rs).

mod common;

use std::net::SocketAddr;
use std::process::Child;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::netns::Netns;
use common::{AgentProcess, binary, wait_until};

const ZONE: &str = "ha.example.com";
const APP: &str = "app.ha.example.com";
const PORT: u16 = 8080;
const DNS_PORT: u16 = 5353;
const SECRET: &str = "the witness test's cluster secret, long enough";
/// Longer than a peer's vote stays fresh here (3 × 300 ms + 200 ms + 300 ms = 1.4 s): a
/// vote that stopped coming has aged out when a hold of this length ends.
const HOLD: Duration = Duration::from_secs(3);

/// One topology at a time: eight agents probing every 300 ms on two shared cores would bend
/// the timings these tests measure.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Hosts: 1 = node1 (priority 20, preferred), 2 = node2, 3 = the witness (or, without one, only
/// the host dig asks from).
struct Site {
    net: Netns,
    /// The agents, host i at index i − 1.
    agents: Vec<AgentProcess>,
    /// The backends of node1 and node2.
    backends: [Option<Child>; 2],
    page: tempfile::TempDir,
    witness: bool,
}

impl Site {
    fn start(witness: bool) -> Site {
        let net = Netns::create(3);
        let page = tempfile::tempdir().unwrap();
        std::fs::write(page.path().join("login"), "<title>Sign in</title>").unwrap();
        let backends = [1, 2].map(|i| Some(net.http_server(i, PORT, page.path())));
        let mut site = Site {
            net,
            agents: Vec::new(),
            backends,
            page,
            witness,
        };
        let ids: &[&str] = if witness {
            &["node1", "node2", "witness1"]
        } else {
            &["node1", "node2"]
        };
        for (i, id) in ids.iter().enumerate() {
            let host = i + 1;
            let mut launcher = site.net.command(host, binary());
            launcher.env("FAILOVERD_CLUSTER_SECRET", SECRET);
            let dir = tempfile::tempdir().unwrap();
            let state = dir.path().join("state");
            let agent =
                AgentProcess::start_with(launcher, dir, state, &site.yaml(id), site.dns(host));
            site.agents.push(agent);
        }
        for agent in &mut site.agents {
            site.net.wait_agent_ready(3, agent, APP);
        }
        site
    }

    /// The one file every agent runs, `self:` apart.
    fn yaml(&self, me: &str) -> String {
        let [h1, h2, h3] = [1, 2, 3].map(|i| self.net.host_ip(i));
        let witnesses = if self.witness {
            format!(", witnesses: [{{ id: witness1, address: {h3} }}]")
        } else {
            String::new()
        };
        format!(
            "zone: {ZONE}\nself: {me}\n\
             dns: {{ listen: [\"0.0.0.0:{DNS_PORT}\"], ttl: 1s }}\n\
             dashboard: {{ listen: \"127.0.0.1:8090\" }}\n\
             defaults: {{ interval: 300ms, retry_interval: 150ms, timeout: 200ms, fall: 2, rise: 2 }}\n\
             nodes:\n  - {{ id: node1, address: {h1}, priority: 20 }}\n\
             \x20 - {{ id: node2, address: {h2}, priority: 10 }}\n\
             checks:\n  - {{ id: web, type: http, url: \"http://{{address}}:{PORT}/login\", expect_body: \"Sign in\" }}\n\
             hostnames:\n  - {{ name: app, checks: [web] }}\n\
             cluster: {{ listen: \"0.0.0.0:8053\", period: 300ms{witnesses} }}\n"
        )
    }

    fn dns(&self, host: usize) -> SocketAddr {
        SocketAddr::new(self.net.host_ip(host), DNS_PORT)
    }

    fn ip(&self, host: usize) -> String {
        self.net.host_ip(host).to_string()
    }

    /// What agent `host` answers for the app, asked from host 3.
    fn answer(&self, host: usize) -> Vec<String> {
        self.net.dig(3, self.dns(host), APP, "A", &[]).answers
    }

    /// Every agent's answer, by host.
    fn answers(&self) -> Vec<Vec<String>> {
        (1..=self.agents.len()).map(|h| self.answer(h)).collect()
    }

    fn all_answer(&self, node_host: usize) -> bool {
        let want = vec![self.ip(node_host)];
        self.answers().iter().all(|a| *a == want)
    }

    fn wait_all(&self, node_host: usize, what: &str) {
        wait_until(Duration::from_secs(15), what, || self.all_answer(node_host));
    }

    /// Every agent answers node `node_host` at every poll for `HOLD`.
    fn hold(&self, node_host: usize, what: &str) {
        let until = Instant::now() + HOLD;
        let mut polls = 0;
        while Instant::now() < until {
            let answers = self.answers();
            let want = vec![self.ip(node_host)];
            assert!(
                answers.iter().all(|a| *a == want),
                "{what}: poll {polls}: answers by agent {answers:?}, want {want:?} everywhere\nnode2's log:\n{}",
                self.agents[1].log_text()
            );
            polls += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(polls >= 10, "{what}: only {polls} polls in {HOLD:?}");
    }

    /// Agent `host` logged a line holding every one of `parts`.
    fn logged(&self, host: usize, parts: &[&str]) -> bool {
        self.agents[host - 1]
            .log_text()
            .lines()
            .any(|l| parts.iter().all(|p| l.contains(p)))
    }

    fn wait_logged(&self, host: usize, parts: &[&str]) {
        let start = Instant::now();
        while !self.logged(host, parts) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "agent {host} did not log {parts:?} within 10 s; its log:\n{}",
                self.agents[host - 1].log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// node2's own probes see node1 down (its vote is down).
    fn wait_node2_sees_node1_down(&self) {
        self.wait_logged(
            2,
            &[
                "local check state changed",
                "node=node1",
                "from=\"OK\"",
                "to=\"KO\"",
            ],
        );
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        // The agents and backends are killed with the namespaces (Netns's drop).
        self.agents.clear();
        for b in self.backends.iter_mut().flatten() {
            let _ = b.kill();
            let _ = b.wait();
        }
    }
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// (a) node2's agent loses node1 — first only its backend port, then everything — while node1
/// is fine: node1's vote and the witness's keep node1 up, on all three agents.
#[test]
fn a_fault_between_the_two_nodes_moves_nothing_with_a_witness() {
    let _one = lock();
    let site = Site::start(true);
    site.wait_all(1, "all three agents to answer node1");

    // The witness is no nameserver and never in an answer.
    for host in 1..=3 {
        let ns = site.net.dig(3, site.dns(host), ZONE, "NS", &[]);
        let mut names = ns.answers.clone();
        names.sort();
        assert_eq!(
            names,
            [format!("ns-node1.{ZONE}."), format!("ns-node2.{ZONE}.")],
            "agent {host}: {}",
            ns.raw
        );
        let glue = site
            .net
            .dig(3, site.dns(host), &format!("ns-witness1.{ZONE}"), "A", &[]);
        assert!(glue.answers.is_empty(), "agent {host}: {}", glue.raw);
    }
    assert!(
        site.logged(3, &["peer agent answers", "peer=node1"])
            && site.logged(1, &["peer agent answers", "peer=witness1"]),
        "the witness and the nodes pull from each other"
    );

    // The witness's own `failoverd status` (its dashboard API, found from the same file).
    let out = site
        .net
        .run(
            3,
            binary().to_str().unwrap(),
            &[
                "status",
                "--json",
                "--config",
                site.agents[2].config_path.to_str().unwrap(),
            ],
            Duration::from_secs(10),
        )
        .expect("failoverd status on the witness");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["node"], "witness1", "{status}");
    assert_eq!(
        status["cluster"]["witnesses"],
        serde_json::json!(["witness1"])
    );
    assert_eq!(
        status["hostnames"][0]["nodes"],
        serde_json::json!(["node1"])
    );
    let peers = &status["cluster"]["peers"];
    for (i, id) in ["node1", "node2"].iter().enumerate() {
        assert_eq!(peers[i]["agent"], *id, "{peers}");
        assert_eq!(peers[i]["reachable"], true, "{peers}");
    }
    // Each node counts three votes per pair: its own, the other node's, the witness's.
    wait_until(Duration::from_secs(5), "three votes on every row", || {
        let out = site.net.run(
            1,
            binary().to_str().unwrap(),
            &["status", "--json", "--url", "http://127.0.0.1:8090"],
            Duration::from_secs(10),
        );
        let Ok(out) = out else { return false };
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        status["checks"].as_array().is_some_and(|rows| {
            rows.iter().all(|r| {
                r["votes"].as_array().is_some_and(|v| {
                    let mut agents: Vec<&str> =
                        v.iter().filter_map(|v| v["agent"].as_str()).collect();
                    agents.sort_unstable();
                    agents == ["node1", "node2", "witness1"]
                })
            })
        })
    });

    // Only node1's backend port, from node2: the peers still talk (votes 2 up of 3).
    site.net.drop_tcp(2, site.net.host_ip(1), PORT);
    site.wait_node2_sees_node1_down();
    site.hold(1, "node2 cannot probe node1's backend");
    site.net.restore(2);
    site.wait_all(1, "all on node1 after the port fault");

    // Everything from node2 to node1 (and so node1's answers to node2): node2 has its own vote
    // (down) and the witness's (up), 1 of 3 each way; without a majority nothing moves.
    site.net.drop_ip(2, site.net.host_ip(1));
    site.wait_logged(2, &["peer agent does not answer", "peer=node1"]);
    site.hold(1, "node2 cut off from node1");
    site.net.restore(2);
    site.wait_all(1, "all on node1 after the cut");
}

/// (b) node1's backend really stops: node2 and the witness (and node1's own probes) see it,
/// and both nodes' answers move to node2 together; they come back together when it returns.
#[test]
fn a_real_failure_of_node1_moves_both_nodes_together() {
    let _one = lock();
    let mut site = Site::start(true);
    site.wait_all(1, "all three agents to answer node1");

    let moved = |site: &Site, to: usize, what: &str| -> Vec<Duration> {
        let start = Instant::now();
        let want = vec![site.ip(to)];
        let mut first: Vec<Option<Duration>> = vec![None; site.agents.len()];
        while first.iter().any(Option::is_none) {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "{what}: not every agent moved within 15 s: {first:?}"
            );
            for (i, answer) in site.answers().into_iter().enumerate() {
                if answer == want {
                    first[i].get_or_insert(start.elapsed());
                } else {
                    assert!(
                        first[i].is_none(),
                        "{what}: agent {} went back to {answer:?}",
                        i + 1
                    );
                }
            }
        }
        first.into_iter().map(Option::unwrap).collect()
    };

    let mut backend = site.backends[0].take().unwrap();
    backend.kill().unwrap();
    backend.wait().unwrap();
    let down = moved(&site, 2, "node1's backend down");
    // Both nodes decide from the same votes: both down votes needed (2 of 3) reach every
    // agent within a pull period of each other.
    let spread = |t: &[Duration]| *t.iter().max().unwrap() - *t.iter().min().unwrap();
    eprintln!("moved to node2 after {down:?} (node1, node2, witness)");
    assert!(
        spread(&down[..2]) <= Duration::from_millis(1500),
        "the two nodes moved {:?} apart: {down:?}",
        spread(&down[..2])
    );
    site.hold(2, "node1 stays down");

    site.backends[0] = Some(site.net.http_server(1, PORT, site.page.path()));
    let up = moved(&site, 1, "node1's backend back");
    eprintln!("back on node1 after {up:?} (node1, node2, witness)");
    assert!(
        spread(&up[..2]) <= Duration::from_millis(1500),
        "the two nodes moved back {:?} apart: {up:?}",
        spread(&up[..2])
    );
}

/// (c) The same two nodes without a witness, as the README documents: a fault that node2
/// alone sees is a tie, which counts as down, so both leave a healthy node1; a cut between
/// the two leaves each deciding alone, and they answer differently.
#[test]
fn without_a_witness_two_nodes_tie_to_down_and_decide_alone_when_cut() {
    let _one = lock();
    let site = Site::start(false);
    site.wait_all(1, "both agents to answer node1");

    site.net.drop_tcp(2, site.net.host_ip(1), PORT);
    site.wait_node2_sees_node1_down();
    site.wait_all(2, "the tie (1 up, 1 down) to move both to node2");
    site.net.restore(2);
    site.wait_all(1, "both back on node1");

    site.net.drop_ip(2, site.net.host_ip(1));
    let (node1, node2) = (vec![site.ip(1)], vec![site.ip(2)]);
    wait_until(
        Duration::from_secs(15),
        "node1's agent on node1 and node2's on node2",
        || site.answer(1) == node1 && site.answer(2) == node2,
    );
    site.wait_logged(2, &["decides alone"]);
    site.wait_logged(1, &["decides alone"]);
    site.net.restore(2);
    site.wait_all(1, "both back on node1 once they hear each other");
}
