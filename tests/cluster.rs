//! Agreement between real agents: three `failoverd run` processes on 127.0.0.1, .2 and .3, each
//! with DNS, peer API and dashboard on its own address, over real backends; `dig` asks all three.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::{AgentProcess, Backend, binary, dig, free_port, wait_until};

const ZONE: &str = "ha.example.com";
const SECRET: &str = "a cluster secret of more than sixteen characters";

struct Cluster {
    agents: Vec<AgentProcess>,
    dashboards: Vec<SocketAddr>,
}

/// The shared config as node `me` runs it (only `self` and the listen addresses differ).
fn config(backends: &[Backend], me: usize, ports: (u16, u16, u16), quorum: &str) -> String {
    let (dns, peer, dash) = ports;
    let ip = &backends[me].ip;
    let mut yaml = format!(
        "zone: {ZONE}\nself: node{}\ndns: {{ listen: [\"{ip}:{dns}\"], ttl: 5s }}\n\
         dashboard: {{ listen: \"{ip}:{dash}\" }}\n\
         cluster: {{ listen: \"{ip}:{peer}\", quorum: {quorum}, period: 200ms }}\n\
         defaults: {{ interval: 300ms, retry_interval: 100ms, timeout: 80ms }}\nnodes:\n",
        me + 1
    );
    yaml.push_str(&common::nodes_yaml(backends));
    yaml.push_str(&format!(
        "checks:\n  - {{ id: web, type: http, url: \"http://{{address}}:{}/\" }}\n\
         hostnames:\n  - {{ name: app, checks: [web] }}\n  - {{ name: pool, checks: [web], mode: all }}\n",
        backends[0].http_port
    ));
    yaml
}

fn start(backends: &[Backend], secrets: [&str; 3], quorum: &str) -> Cluster {
    let ips: Vec<&str> = backends.iter().map(|b| b.ip.as_str()).collect();
    let ports = (free_port(&ips), free_port(&ips), free_port(&ips));
    let mut agents = Vec::new();
    for (i, secret) in secrets.iter().enumerate() {
        let mut launcher = Command::new(binary());
        launcher.env("FAILOVERD_CLUSTER_SECRET", secret);
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let dns: SocketAddr = format!("{}:{}", ips[i], ports.0).parse().unwrap();
        agents.push(AgentProcess::start_with(
            launcher,
            dir,
            state,
            &config(backends, i, ports, quorum),
            dns,
        ));
    }
    for a in &mut agents {
        a.wait_ready(&format!("app.{ZONE}"));
    }
    let dashboards = ips
        .iter()
        .map(|ip| format!("{ip}:{}", ports.2).parse().unwrap())
        .collect();
    Cluster { agents, dashboards }
}

impl Cluster {
    /// What every agent answers for `name`, in agent order.
    fn answers(&self, name: &str) -> Vec<Vec<String>> {
        self.agents
            .iter()
            .map(|a| dig(a.dns, &format!("{name}.{ZONE}"), "A", &[]).answers)
            .collect()
    }

    /// Waits until all three answer `want` for `name`; every round in between, each agent
    /// answers either `before` or `want`, never anything else.
    fn converge(&self, name: &str, before: &[&str], want: &[&str]) {
        wait_until(
            Duration::from_secs(10),
            &format!("all agents to answer {name} = {want:?}"),
            || {
                let all = self.answers(name);
                for a in &all {
                    assert!(
                        a == want || a == before,
                        "{name}: an agent answered {a:?} (all: {all:?})"
                    );
                }
                all.iter().all(|a| a == want)
            },
        );
    }

    fn status(&self, i: usize) -> serde_json::Value {
        serde_json::from_str(&http_get(self.dashboards[i], "/api/v1/status")).expect("status JSON")
    }
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

#[test]
fn three_agents_answer_alike_through_failover_and_failback() {
    let mut backends = Backend::group(&["127.0.0.1", "127.0.0.2", "127.0.0.3"]);
    let cluster = start(&backends, [SECRET; 3], "majority");
    let all_up = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];
    cluster.converge("app", &["127.0.0.1"], &["127.0.0.1"]);
    cluster.converge("pool", &all_up, &all_up);

    // Every agent hears the two others and counts three votes per pair.
    wait_until(
        Duration::from_secs(10),
        "three votes per pair on every agent",
        || {
            (0..3).all(|i| {
                let s = cluster.status(i);
                s["checks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|c| c["votes"].as_array().unwrap().len() == 3)
                    && s["cluster"]["peers"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|p| p["reachable"] == true)
            })
        },
    );
    let s = cluster.status(0);
    assert_eq!(s["cluster"]["alone"], false);
    assert_eq!(
        s["cluster"]["notifying"], true,
        "node1 has the lowest id: it sends"
    );
    assert_eq!(cluster.status(1)["cluster"]["notifying"], false);

    // node1's web server dies: all three move app to node2, and pool drops node1.
    backends[0].stop();
    cluster.converge("app", &["127.0.0.1"], &["127.0.0.2"]);
    cluster.converge("pool", &all_up, &["127.0.0.2", "127.0.0.3"]);
    // It comes back: all three fail back.
    backends[0].resume();
    cluster.converge("app", &["127.0.0.2"], &["127.0.0.1"]);
    cluster.converge("pool", &["127.0.0.2", "127.0.0.3"], &all_up);

    let log = cluster.agents[1].log_text();
    assert!(log.contains("local check state changed"), "{log}");
    assert!(
        log.contains("votes=0/3 up") || log.contains("votes=1/3 up"),
        "the vote is logged: {log}"
    );
}

#[test]
fn a_wrong_secret_is_refused_and_its_votes_are_ignored() {
    let backends = Backend::group(&["127.0.64.1", "127.0.64.2", "127.0.64.3"]);
    let cluster = start(
        &backends,
        [SECRET, SECRET, "not the cluster secret at all!!"],
        "majority",
    );

    // Until node3's agent listens, node1 sees "connection refused"; then "bad signature".
    wait_until(
        Duration::from_secs(10),
        "node1 to count node2 but not node3, which refuses its signature",
        || {
            let s = cluster.status(0);
            let peers = s["cluster"]["peers"].as_array().unwrap();
            let peer = |id: &str| peers.iter().find(|p| p["agent"] == id).cloned();
            let node2_counted = peer("node2").is_some_and(|p| p["reachable"] == true);
            let node3_refuses = peer("node3").is_some_and(|p| {
                p["reachable"] == false
                    && p["error"]
                        .as_str()
                        .is_some_and(|e| e.contains("bad signature"))
            });
            node2_counted && node3_refuses
        },
    );
    let s = cluster.status(0);
    let node3 = s["cluster"]["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["agent"] == "node3")
        .unwrap()
        .clone();
    assert!(
        node3["error"].as_str().unwrap().contains("bad signature"),
        "node3 refuses node1's requests: {node3}"
    );
    for check in s["checks"].as_array().unwrap() {
        let voters: Vec<&str> = check["votes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["agent"].as_str().unwrap())
            .collect();
        assert_eq!(voters, ["node1", "node2"], "node3's votes are not counted");
    }
    wait_until(
        Duration::from_secs(5),
        "node1 to log node3's refused requests",
        || {
            cluster.agents[0]
                .log_text()
                .contains("peer API request refused")
        },
    );
    assert!(
        cluster.agents[0].log_text().contains("bad signature"),
        "{}",
        cluster.agents[0].log_text()
    );
    // The outsider hears nobody and says so.
    wait_until(Duration::from_secs(5), "node3 to decide alone", || {
        cluster.status(2)["cluster"]["alone"] == true
    });
    assert!(cluster.agents[2].log_text().contains("decides alone"));
    assert!(
        !cluster.agents[2].log_text().contains(SECRET),
        "the secret is never logged"
    );
}

#[test]
fn a_missing_secret_is_a_configuration_error() {
    let backends = Backend::group(&["127.0.65.1", "127.0.65.2", "127.0.65.3"]);
    let ips = ["127.0.65.1", "127.0.65.2", "127.0.65.3"];
    let ports = (free_port(&ips), free_port(&ips), free_port(&ips));
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_file(
        dir.path(),
        "c.yaml",
        &config(&backends, 0, ports, "majority"),
    );
    let out = common::command("run", &path)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env_remove("FAILOVERD_CLUSTER_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the cluster secret variable $FAILOVERD_CLUSTER_SECRET is not set"),
        "{stderr}"
    );
}

/// The asymmetric fault, built for real: three hosts in network namespaces the test creates
/// (198.18.0.0/15), each running an agent and a web server. One agent loses its path to node1's
/// web server while the two others still reach it: the vote keeps the answer where it is. When
/// a second agent loses it too, the majority moves the answer on all three.
#[test]
fn an_agent_that_alone_cannot_reach_a_node_does_not_move_the_answer() {
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
        "127.0.0.1:0",
        "period: 200ms",
        "interval: 300ms, retry_interval: 100ms, timeout: 80ms",
    );
    let answers = |agents: &[AgentProcess]| net.answers(agents, ZONE);
    let node1 = vec![ips[0].clone()];
    let node2 = vec![ips[1].clone()];
    wait_until(Duration::from_secs(10), "all three to answer node1", || {
        answers(&agents).iter().all(|a| *a == node1)
    });

    // h2 alone loses node1's web server.
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
    // Its vote is outvoted: for the next rounds, every agent still answers node1.
    for _ in 0..10 {
        let all = answers(&agents);
        assert!(
            all.iter().all(|a| *a == node1),
            "the answer moved on one agent's fault: {all:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // h3 loses it too: now the majority sees node1 down, and all three move.
    net.drop_tcp(3, net.host_ip(1), 8080);
    wait_until(
        Duration::from_secs(10),
        "all three to move app to node2",
        || answers(&agents).iter().all(|a| *a == node2),
    );
    net.restore(2);
    net.restore(3);
    wait_until(
        Duration::from_secs(10),
        "all three to come back to node1",
        || answers(&agents).iter().all(|a| *a == node1),
    );
    let log = agents[0].log_text();
    assert!(log.contains("votes="), "{log}");
    drop(agents);
    for mut s in servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    net.close();
}

fn http_post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    extra_header: &str,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\n{extra_header}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, out)
}

#[test]
fn maintenance_reaches_every_agent_survives_restarts_and_expires() {
    let backends = Backend::group(&["127.0.66.1", "127.0.66.2", "127.0.66.3"]);
    let mut cluster = start(&backends, [SECRET; 3], "majority");
    cluster.converge("app", &["127.0.66.1"], &["127.0.66.1"]);

    // Set on node3's agent, through its local API, for 8 seconds.
    let out = Command::new(binary())
        .args([
            "maintenance",
            "node1",
            "on",
            "--reason",
            "kernel update",
            "--for",
            "8s",
            "--url",
        ])
        .arg(format!("http://{}", cluster.dashboards[2]))
        .output()
        .unwrap();
    let set_at = std::time::Instant::now();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("node1 in maintenance (for 8s): kernel update")
    );
    // It reaches the two others within a few peer periods (200 ms), and node1 is drained.
    cluster.converge("app", &["127.0.66.1"], &["127.0.66.2"]);
    cluster.converge(
        "pool",
        &["127.0.66.1", "127.0.66.2", "127.0.66.3"],
        &["127.0.66.2", "127.0.66.3"],
    );
    let s = cluster.status(0);
    let o = &s["overrides"][0];
    assert_eq!(
        (
            o["kind"].as_str(),
            o["target"].as_str(),
            o["in_force"].as_bool()
        ),
        (Some("maintenance"), Some("node1"), Some(true))
    );
    assert!(
        o["by"].as_str().unwrap().contains("failoverd maintenance")
            && o["by"].as_str().unwrap().ends_with("on node3"),
        "{o}"
    );
    assert_eq!(o["origin"], "node3");
    let shown = Command::new(binary())
        .args(["status", "--url"])
        .arg(format!("http://{}", cluster.dashboards[0]))
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("MANUAL OVERRIDES") && shown.contains("kernel update"),
        "{shown}"
    );
    assert!(
        shown.contains("AGENTS (quorum majority)") && shown.contains("reachable"),
        "{shown}"
    );
    // The real health is still measured and shown: node1's checks are OK.
    assert!(
        s["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["node"] == "node1")
            .all(|c| c["state"] == "OK")
    );

    // All three restart: the maintenance is still there when they answer again.
    let yamls: Vec<String> = cluster
        .agents
        .iter()
        .map(|a| std::fs::read_to_string(&a.config_path).unwrap())
        .collect();
    let stopped: Vec<_> = cluster
        .agents
        .drain(..)
        .map(|a| (a.dns, a.stop_keep_state()))
        .collect();
    for (i, (dns, (dir, state))) in stopped.into_iter().enumerate() {
        let mut launcher = Command::new(binary());
        launcher.env("FAILOVERD_CLUSTER_SECRET", SECRET);
        let mut agent = AgentProcess::start_with(launcher, dir, state, &yamls[i], dns);
        agent.wait_ready(&format!("app.{ZONE}"));
        assert_eq!(
            dig(dns, &format!("app.{ZONE}"), "A", &[]).answers,
            ["127.0.66.2"],
            "agent {} restarted drained",
            i + 1
        );
        cluster.agents.push(agent);
    }

    // It expires on time on all three: node1 takes the name back, not before 8 s.
    cluster.converge("app", &["127.0.66.2"], &["127.0.66.1"]);
    let took = set_at.elapsed();
    assert!(took >= Duration::from_secs(7), "expired early: {took:?}");
    assert!(took < Duration::from_secs(12), "expired late: {took:?}");

    // The dashboard's buttons: a form POST needs the page's CSRF token.
    let dash = cluster.dashboards[1];
    let form = "kind=force&target=app&node=node3&on=on&reason=test&for=";
    let (code, _) = http_post(
        dash,
        "/overrides",
        "application/x-www-form-urlencoded",
        "",
        form,
    );
    assert_eq!(code, 403, "no token, no change");
    let token: serde_json::Value = serde_json::from_str(&http_get(dash, "/api/v1/csrf")).unwrap();
    let token = token["token"].as_str().unwrap();
    let (code, reply) = http_post(
        dash,
        "/overrides",
        "application/x-www-form-urlencoded",
        "",
        &format!("{form}&csrf={token}"),
    );
    assert_eq!(code, 303, "{reply}");
    cluster.converge("app", &["127.0.66.1"], &["127.0.66.3"]);
    let (code, _) = http_post(
        dash,
        "/overrides",
        "application/x-www-form-urlencoded",
        "",
        &format!("kind=force&target=app.ha.example.com&on=off&csrf={token}"),
    );
    assert_eq!(code, 303);
    cluster.converge("app", &["127.0.66.3"], &["127.0.66.1"]);
    let page = http_get(cluster.dashboards[0], "/");
    assert!(
        page.contains("id=\"maintenance-form\"") && page.contains("name=\"csrf\""),
        "the page has the buttons"
    );
}

/// The SOA serial of every agent, in agent order.
fn serials(cluster: &Cluster) -> Vec<u32> {
    cluster
        .agents
        .iter()
        .map(|a| common::soa_serial(a.dns, ZONE))
        .collect()
}

/// Waits until all agents serve one serial, and returns it.
fn agreed_serial(cluster: &Cluster, what: &str) -> u32 {
    let mut last = Vec::new();
    wait_until(
        Duration::from_secs(10),
        &format!("all agents to serve the same SOA serial {what}"),
        || {
            last = serials(cluster);
            last.iter().all(|s| *s == last[0])
        },
    );
    last[0]
}

/// RFC 1982: `a` comes after `b`.
fn after(a: u32, b: u32) -> bool {
    let d = a.wrapping_sub(b);
    d != 0 && d < 1 << 31
}

#[test]
fn all_agents_serve_one_serial_through_failover_failback_and_restarts() {
    let ips = ["127.0.67.1", "127.0.67.2", "127.0.67.3"];
    let mut backends = Backend::group(&ips);
    let mut cluster = start(&backends, [SECRET; 3], "majority");
    cluster.converge("app", &[ips[0]], &[ips[0]]);
    let s0 = agreed_serial(&cluster, "at start");

    backends[0].stop();
    cluster.converge("app", &[ips[0]], &[ips[1]]);
    let s1 = agreed_serial(&cluster, "after the failover");
    assert!(after(s1, s0), "the serial moves on a change: {s0} → {s1}");

    backends[0].resume();
    cluster.converge("app", &[ips[1]], &[ips[0]]);
    let s2 = agreed_serial(&cluster, "after the failback");
    assert!(after(s2, s1), "and again on the failback: {s1} → {s2}");

    // node2's agent restarts on its state: the same content keeps the serial everywhere, and
    // from its first answer on it never serves an older one.
    let yaml = std::fs::read_to_string(&cluster.agents[1].config_path).unwrap();
    let restarting = cluster.agents.remove(1);
    let dns = restarting.dns;
    let (dir, state) = restarting.stop_keep_state();
    let mut launcher = Command::new(binary());
    launcher.env("FAILOVERD_CLUSTER_SECRET", SECRET);
    let mut again = AgentProcess::start_with(launcher, dir, state, &yaml, dns);
    again.wait_ready(&format!("app.{ZONE}"));
    let first = common::soa_serial(dns, ZONE);
    assert!(
        first == s2 || after(first, s2),
        "after its restart node2 served {first}, older than {s2}"
    );
    cluster.agents.insert(1, again);
    assert_eq!(
        agreed_serial(&cluster, "after a restart"),
        s2,
        "nothing changed"
    );

    // `verify` compares the serials: they agree…
    let (code, out) = verify(&cluster.agents[0].config_path);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("ha.example.com SOA") && l.ends_with("agree")),
        "{out}"
    );

    // …and it names them when they do not: node3 restarts on a state whose serial is ten
    // days ahead (a clock that was wrong once), more than an agent follows another's.
    let yaml = std::fs::read_to_string(&cluster.agents[2].config_path).unwrap();
    let odd = cluster.agents.pop().unwrap();
    let dns = odd.dns;
    let (dir, state) = odd.stop_keep_state();
    let ahead = s2.wrapping_add(10 * 86_400);
    std::fs::write(state.join("serial"), format!("{ahead}\n")).unwrap();
    let mut launcher = Command::new(binary());
    launcher.env("FAILOVERD_CLUSTER_SECRET", SECRET);
    let mut odd = AgentProcess::start_with(launcher, dir, state, &yaml, dns);
    odd.wait_ready(&format!("app.{ZONE}"));
    let odd_serial = common::soa_serial(dns, ZONE);
    assert!(
        after(odd_serial, ahead) || odd_serial == ahead,
        "{odd_serial}"
    );
    cluster.agents.push(odd);
    let (code, out) = verify(&cluster.agents[0].config_path);
    assert_eq!(code, Some(1), "{out}");
    // The others' serials may have moved meanwhile (a probe timing out on a loaded machine is a
    // change too): the problem names every agent, node3 with its serial far ahead.
    let problem = out
        .lines()
        .find(|l| l.starts_with("PROBLEM: agents serve different SOA serials (node1 "))
        .unwrap_or_else(|| panic!("no serial problem reported: {out}"));
    let node3: u32 = problem
        .split("node3 ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("node3's serial not named: {problem}"));
    assert!(
        problem.contains("node2 ") && (node3 == odd_serial || after(node3, odd_serial)),
        "{problem} (node3 served {odd_serial} before)"
    );
}

fn verify(config: &std::path::Path) -> (Option<i32>, String) {
    let out = common::command("verify", config).output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
