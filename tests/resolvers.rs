//! Three agents behind real resolvers, as users deploy them: BIND 9 resolving through a real
//! delegation from a local root zone it serves itself, and Unbound with a stub zone. Everything
//! runs inside one network namespace the test creates, on its loopback only (no root hints but
//! our own: nothing can leave it). Needs root, `named`, `unbound`, `dig`, `kdig`, `dnsviz`
//! (scripts/test.sh installs them).
//!
//! Layout inside the namespace:
//! - node i (1..=3): web server `127.0.1.i:8080`; agent with DNS on `127.0.1.i`, eleven more
//!   addresses `127.0.1<k>.i` and `fd00:1::i` (so the glue and `pool` do not fit 512 bytes),
//!   peer API `127.0.1.i:8053`;
//! - BIND: `127.0.3.1`, primary for `.` (which delegates `ha.test.` to the agents), recursive;
//! - Unbound: `127.0.4.1`, stub zone `ha.test.` → the agents' primary addresses.

mod common;

use std::fs::File;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Child, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::netns::Netns;
use common::{AgentProcess, binary, wait_until};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

const ZONE: &str = "ha.test";
const SECRET: &str = "a cluster secret of more than sixteen characters";
const BIND: &str = "127.0.3.1";
const UNBOUND: &str = "127.0.4.1";
/// Addresses per node besides the IPv6 one: 36 A records do not fit a 512-byte answer.
const V4_PER_NODE: usize = 12;
/// Agent timings (fast, as in the other tests) and what they add up to.
const TTL: Duration = Duration::from_secs(2);
/// Detection: the next probe (interval), `fall` failures of (timeout + retry interval), and
/// two pull periods for the others' votes.
const DETECTION: Duration = Duration::from_millis(300 + 2 * (80 + 100) + 2 * 200);

fn v4(node: usize, k: usize) -> String {
    if k == 0 {
        format!("127.0.1.{node}")
    } else {
        format!("127.0.1{k}.{node}")
    }
}

/// What an `A` query answers for a name on node `node`: all its IPv4 addresses, sorted.
fn node_v4(node: usize) -> Vec<String> {
    let mut all: Vec<String> = (0..V4_PER_NODE).map(|k| v4(node, k)).collect();
    all.sort();
    all
}

fn v6(node: usize) -> String {
    format!("fd00:1::{node}")
}

/// The resolvers, for messages and loops.
const RESOLVERS: [(&str, &str); 2] = [("BIND", BIND), ("Unbound", UNBOUND)];

/// What one query through a resolver got.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    /// `None`: no reply within the timeout.
    rcode: Option<ResponseCode>,
    data: Vec<String>,
}

/// Runs `f` on a thread that has entered network namespace `ns` (sockets it opens live there).
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns on a valid namespace fd, affecting this thread only.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("query thread")
}

/// One recursive query over UDP from inside the namespace's thread (call via `in_netns`).
fn query(server: &str, name: &str, qtype: RecordType, timeout: Duration) -> Answer {
    let server: SocketAddr = SocketAddr::new(IpAddr::from_str(server).unwrap(), 53);
    let socket = UdpSocket::bind("127.0.5.1:0").expect("bind in the namespace");
    socket.set_read_timeout(Some(timeout)).unwrap();
    let id: u16 = rand::random();
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    message.metadata.recursion_desired = true;
    // EDNS as every stub resolver sends it: `pool` (36 addresses) fits without TCP.
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    message.set_edns(edns);
    socket.send_to(&message.to_vec().unwrap(), server).unwrap();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let Ok((n, _)) = socket.recv_from(&mut buf) else {
            break;
        };
        let Ok(reply) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if reply.metadata.id != id {
            continue;
        }
        let mut data: Vec<String> = reply
            .answers
            .iter()
            .filter(|r| r.record_type() == qtype)
            .map(|r| match &r.data {
                RData::A(a) => a.0.to_string(),
                RData::AAAA(a) => a.0.to_string(),
                RData::NS(ns) => ns.0.to_ascii(),
                RData::SOA(soa) => format!("{} {}", soa.mname.to_ascii(), soa.serial),
                other => other.to_string(),
            })
            .collect();
        data.sort();
        return Answer {
            rcode: Some(reply.metadata.response_code),
            data,
        };
    }
    Answer {
        rcode: None,
        data: Vec::new(),
    }
}

/// Asks continuously through both resolvers, from inside the namespace, until stopped: each
/// round asks `app` (usually cached) and a fresh nonexistent name (always sent on to an
/// agent). Counts SERVFAILs and timeouts with their times.
struct Prober {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Vec<(Instant, usize, &'static str)>>,
}

impl Prober {
    fn start(ns: &str) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let path = format!("/run/netns/{ns}");
        let handle = thread::spawn(move || {
            let file = File::open(&path).unwrap();
            // SAFETY: as in `in_netns`.
            assert_eq!(
                unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            let mut bad = Vec::new();
            let mut n = 0u64;
            let start = Instant::now();
            // Bounded: a test never probes for more than two minutes.
            while !flag.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(120) {
                n += 1;
                for (r, (_, server)) in RESOLVERS.iter().enumerate() {
                    for name in [format!("app.{ZONE}"), format!("p{n}x{r}.{ZONE}")] {
                        let a = query(server, &name, RecordType::A, Duration::from_secs(3));
                        match a.rcode {
                            Some(ResponseCode::ServFail) => {
                                bad.push((Instant::now(), r, "SERVFAIL"))
                            }
                            None => bad.push((Instant::now(), r, "timeout")),
                            _ => {}
                        }
                    }
                }
                thread::sleep(Duration::from_millis(20));
            }
            bad
        });
        Prober { stop, handle }
    }

    /// Stops and returns, per resolver, the failures seen and the window they span.
    fn finish(self, since: Instant) -> Vec<Failures> {
        self.stop.store(true, Ordering::SeqCst);
        let bad = self.handle.join().unwrap();
        (0..RESOLVERS.len())
            .map(|r| {
                let mine: Vec<_> = bad.iter().filter(|b| b.1 == r).collect();
                let count = |kind| mine.iter().filter(|b| b.2 == kind).count();
                Failures {
                    servfail: count("SERVFAIL"),
                    timeouts: count("timeout"),
                    window: mine.first().zip(mine.last()).map(|(a, b)| {
                        (
                            a.0.saturating_duration_since(since),
                            b.0.saturating_duration_since(since),
                        )
                    }),
                }
            })
            .collect()
    }
}

/// What the clients of one resolver saw go wrong while a `Prober` ran.
#[derive(Debug)]
struct Failures {
    servfail: usize,
    timeouts: usize,
    /// From the first failure to the last, counted from the disturbance.
    window: Option<(Duration, Duration)>,
}

/// The agents, their web servers and the two resolvers, in one namespace.
struct Tier {
    net: Netns,
    dir: tempfile::TempDir,
    servers: Vec<Child>,
    agents: Vec<Option<AgentProcess>>,
    yaml: Vec<String>,
}

fn agent_config(me: usize, timing: &str) -> String {
    let listen: Vec<String> = (0..V4_PER_NODE)
        .map(|k| format!("\"{}:53\"", v4(me, k)))
        .chain([format!("\"[{}]:53\"", v6(me))])
        .collect();
    let mut y = format!(
        "zone: {ZONE}\nself: node{me}\ndns: {{ listen: [{}], ttl: {}s }}\n\
         dashboard: {{ listen: \"{}:8081\" }}\n\
         cluster: {{ listen: \"{}:8053\", period: 200ms }}\n\
         defaults: {{ {timing} }}\nnodes:\n",
        listen.join(", "),
        TTL.as_secs(),
        v4(me, 0),
        v4(me, 0)
    );
    for i in 1..=3 {
        let addrs: Vec<String> = (0..V4_PER_NODE)
            .map(|k| v4(i, k))
            .chain([format!("\"{}\"", v6(i))])
            .collect();
        y.push_str(&format!(
            "  - {{ id: node{i}, addresses: [{}], priority: {} }}\n",
            addrs.join(", "),
            40 - 10 * i
        ));
    }
    y.push_str(
        "checks:\n  - { id: web, type: http, url: \"http://{address}:8080/\" }\n\
         hostnames:\n  - { name: app, checks: [web] }\n  - { name: pool, checks: [web], mode: all }\n",
    );
    y
}

const FAST: &str = "interval: 300ms, retry_interval: 100ms, timeout: 80ms, fall: 2, rise: 2";

impl Tier {
    fn start(timing: &str) -> Tier {
        let net = Netns::create(1);
        let dir = tempfile::tempdir().unwrap();
        // BIND 9.18 listens only on addresses an interface has: give them all to lo.
        let mut addrs = vec![
            format!("{BIND}/32"),
            format!("{UNBOUND}/32"),
            "127.0.5.1/32".into(),
        ];
        for i in 1..=3 {
            addrs.extend((0..V4_PER_NODE).map(|k| format!("{}/32", v4(i, k))));
            addrs.push(format!("{}/128", v6(i)));
        }
        for a in &addrs {
            let out = net
                .run(
                    1,
                    "ip",
                    &["addr", "add", a, "dev", "lo"],
                    Duration::from_secs(5),
                )
                .unwrap();
            assert!(out.status.success(), "ip addr add {a}: {out:?}");
        }
        let www = dir.path().join("www");
        std::fs::create_dir(&www).unwrap();
        std::fs::write(www.join("index.html"), "Sign in").unwrap();
        let mut servers = Vec::new();
        for i in 1..=3 {
            let mut cmd = net.command(1, "/usr/bin/python3");
            cmd.args(["-m", "http.server", "8080", "--bind", &v4(i, 0)])
                .current_dir(&www)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            servers.push(cmd.spawn().expect("python3 http.server in the namespace"));
        }
        let ip = |s: &str| IpAddr::from_str(s).unwrap();
        for i in 1..=3 {
            wait_until(Duration::from_secs(10), "the web servers to listen", || {
                net.can_connect(1, ip(&v4(i, 0)), 8080)
            });
        }
        let mut tier = Tier {
            net,
            dir,
            servers,
            agents: Vec::new(),
            yaml: (1..=3).map(|i| agent_config(i, timing)).collect(),
        };
        for i in 0..3 {
            let agent = tier.start_agent(i);
            tier.agents.push(Some(agent));
        }
        for i in 0..3 {
            tier.wait_agent(i);
        }
        tier.start_bind();
        tier.start_unbound();
        tier
    }

    fn ns(&self) -> String {
        self.net.name(1).to_string()
    }

    fn start_agent(&self, i: usize) -> AgentProcess {
        let dir = tempfile::tempdir_in(self.dir.path()).unwrap();
        let state = self.dir.path().join(format!("state{i}"));
        let mut launcher = self.net.command(1, binary());
        launcher.env("FAILOVERD_CLUSTER_SECRET", SECRET);
        let dns = SocketAddr::new(IpAddr::from_str(&v4(i + 1, 0)).unwrap(), 53);
        AgentProcess::start_with(launcher, dir, state, &self.yaml[i], dns)
    }

    fn wait_agent(&mut self, i: usize) {
        let agent = self.agents[i].as_mut().unwrap();
        self.net.wait_agent_ready(1, agent, &format!("app.{ZONE}"));
    }

    fn spawn(&mut self, program: &str, args: &[&str], log: &str) {
        let log = File::create(self.dir.path().join(log)).unwrap();
        let child = self
            .net
            .command(1, program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e} (scripts/test.sh installs it)"));
        self.servers.push(child);
    }

    fn start_bind(&mut self) {
        let d = self.dir.path().join("bind");
        std::fs::create_dir(&d).unwrap();
        let mut root = String::from(
            "$TTL 3600\n. IN SOA root-ns.test. hostmaster.root-ns.test. 1 3600 600 86400 60\n\
             . IN NS root-ns.test.\nroot-ns.test. IN A 127.0.3.1\n",
        );
        for i in 1..=3 {
            root.push_str(&format!("{ZONE}. IN NS ns-node{i}.{ZONE}.\n"));
            for k in 0..V4_PER_NODE {
                root.push_str(&format!("ns-node{i}.{ZONE}. IN A {}\n", v4(i, k)));
            }
            root.push_str(&format!("ns-node{i}.{ZONE}. IN AAAA {}\n", v6(i)));
        }
        std::fs::write(d.join("root.db"), root).unwrap();
        let conf = format!(
            "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  session-keyfile \"{d}/session.key\";\n\
             \x20 listen-on port 53 {{ {BIND}; }};\n  listen-on-v6 {{ none; }};\n\
             \x20 recursion yes;\n  allow-recursion {{ any; }};\n  allow-query {{ any; }};\n\
             \x20 dnssec-validation no;\n  notify no;\n  empty-zones-enable no;\n}};\n\
             controls {{ }};\nzone \".\" {{ type primary; file \"{d}/root.db\"; }};\n",
            d = d.display()
        );
        std::fs::write(d.join("named.conf"), conf).unwrap();
        let conf = d.join("named.conf");
        self.spawn("named", &["-g", "-c", conf.to_str().unwrap()], "named.log");
        self.wait_resolver(BIND, "named.log");
    }

    fn start_unbound(&mut self) {
        let d = self.dir.path().join("unbound");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(
            d.join("root.hints"),
            ". 3600 NS root-ns.test.\nroot-ns.test. 3600 A 127.0.3.1\n",
        )
        .unwrap();
        let stubs: String = (1..=3)
            .map(|i| format!("  stub-addr: {}\n", v4(i, 0)))
            .collect();
        let conf = format!(
            "server:\n  interface: {UNBOUND}\n  port: 53\n  do-daemonize: no\n  username: \"\"\n  chroot: \"\"\n\
             \x20 directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n  use-syslog: no\n  logfile: \"\"\n\
             \x20 verbosity: 1\n  access-control: 127.0.0.0/8 allow\n  do-not-query-localhost: no\n\
             \x20 do-ip6: yes\n  module-config: \"iterator\"\n  root-hints: \"{d}/root.hints\"\n\
             \x20 local-zone: \"test.\" nodefault\n\
             remote-control:\n  control-enable: no\n\
             stub-zone:\n  name: \"{ZONE}.\"\n{stubs}",
            d = d.display()
        );
        std::fs::write(d.join("unbound.conf"), conf).unwrap();
        let conf = d.join("unbound.conf");
        self.spawn(
            "unbound",
            &["-d", "-c", conf.to_str().unwrap()],
            "unbound.log",
        );
        self.wait_resolver(UNBOUND, "unbound.log");
    }

    fn wait_resolver(&mut self, server: &'static str, log: &str) {
        let ns = self.ns();
        let start = Instant::now();
        loop {
            let ns = ns.clone();
            let a = in_netns(&ns, move || {
                query(
                    server,
                    &format!("app.{ZONE}"),
                    RecordType::A,
                    Duration::from_secs(1),
                )
            });
            if a.rcode == Some(ResponseCode::NoError) && !a.data.is_empty() {
                return;
            }
            if start.elapsed() > Duration::from_secs(20) {
                let text = std::fs::read_to_string(self.dir.path().join(log)).unwrap_or_default();
                panic!("{server} does not resolve app.{ZONE}: {a:?}; its log:\n{text}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn ask(&self, server: &'static str, name: &str, qtype: RecordType) -> Answer {
        let name = name.to_string();
        in_netns(&self.ns(), move || {
            query(server, &name, qtype, Duration::from_secs(3))
        })
    }

    /// Waits until every resolver answers `app` with node `node`'s addresses; returns when
    /// each first did, from the call.
    fn follow(&self, node: usize, bound: Duration) -> Vec<Duration> {
        let want = node_v4(node);
        let start = Instant::now();
        let mut arrived: Vec<Option<Duration>> = vec![None; RESOLVERS.len()];
        while arrived.iter().any(Option::is_none) {
            for (r, (label, server)) in RESOLVERS.iter().enumerate() {
                if arrived[r].is_none()
                    && self.ask(server, &format!("app.{ZONE}"), RecordType::A).data == want
                {
                    arrived[r] = Some(start.elapsed());
                }
                assert!(
                    start.elapsed() < bound + Duration::from_secs(5),
                    "{label} still does not answer node{node} after {:?}",
                    start.elapsed()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        arrived.into_iter().flatten().collect()
    }

    /// Blackholes node `i`'s web server for every agent (they all run in the namespace).
    fn blackhole(&self, i: usize) {
        self.net
            .drop_tcp(1, IpAddr::from_str(&v4(i, 0)).unwrap(), 8080);
    }
}

impl Drop for Tier {
    fn drop(&mut self) {
        self.agents.clear();
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

fn report(what: &str, failures: &[Failures]) -> String {
    let mut out = String::new();
    for (r, f) in failures.iter().enumerate() {
        let w = match f.window {
            Some((a, b)) => format!(
                "{} SERVFAIL and {} timeouts, from {a:.2?} to {b:.2?}",
                f.servfail, f.timeouts
            ),
            None => "no failure".to_string(),
        };
        out.push_str(&format!("{what}, {}: {w}\n", RESOLVERS[r].0));
    }
    eprint!("{out}");
    out
}

/// The tiers run one at a time: each is three agents and two resolvers with sub-second
/// timings, and two at once on a 2-core machine stretched a cluster-wide restart enough for a
/// resolver's cached answer to expire while no agent was up.
fn one_tier_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TIER: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TIER.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn resolvers_answer_through_a_delegation_and_a_stub_and_follow_failover() {
    let _one_tier_at_a_time = one_tier_at_a_time();
    let mut tier = Tier::start(FAST);
    let app = format!("app.{ZONE}");
    for (label, server) in RESOLVERS {
        let a = tier.ask(server, &app, RecordType::A);
        assert_eq!(
            (a.rcode, a.data.clone()),
            (Some(ResponseCode::NoError), node_v4(1)),
            "{label} A"
        );
        let a = tier.ask(server, &app, RecordType::AAAA);
        assert_eq!(a.data, [v6(1)], "{label} AAAA: {a:?}");
        let a = tier.ask(server, &format!("nothing.{ZONE}"), RecordType::A);
        assert_eq!(
            a.rcode,
            Some(ResponseCode::NXDomain),
            "{label} NXDOMAIN: {a:?}"
        );
        let a = tier.ask(server, &app, RecordType::MX);
        assert_eq!(
            (a.rcode, a.data.len()),
            (Some(ResponseCode::NoError), 0),
            "{label} NODATA: {a:?}"
        );
        let a = tier.ask(server, ZONE, RecordType::SOA);
        assert_eq!(a.rcode, Some(ResponseCode::NoError), "{label} SOA: {a:?}");
        assert_eq!(a.data.len(), 1, "{label} SOA: {a:?}");
        assert!(
            a.data[0].starts_with(&format!("ns-node1.{ZONE}.")),
            "{label} SOA: {a:?}"
        );
        let a = tier.ask(server, ZONE, RecordType::NS);
        let want: Vec<String> = (1..=3).map(|i| format!("ns-node{i}.{ZONE}.")).collect();
        assert_eq!(a.data, want, "{label} NS: {a:?}");
        let a = tier.ask(server, &format!("pool.{ZONE}"), RecordType::A);
        assert_eq!(
            a.data.len(),
            3 * V4_PER_NODE,
            "{label} pool (36 addresses: over TCP from the agents, or EDNS): {a:?}"
        );
    }

    // Failover and failback reach the resolvers' clients within detection + TTL + 1 s.
    let bound = DETECTION + TTL + Duration::from_secs(1);
    tier.blackhole(1);
    let took = tier.follow(2, bound);
    eprintln!("failover through BIND, Unbound: {took:?} (bound {bound:?})");
    for (t, (label, _)) in took.iter().zip(RESOLVERS) {
        assert!(
            *t <= bound,
            "failover through {label} took {t:?}, more than {bound:?}"
        );
    }
    tier.net.restore(1);
    let took = tier.follow(1, bound);
    eprintln!("failback through BIND, Unbound: {took:?} (bound {bound:?})");
    for (t, (label, _)) in took.iter().zip(RESOLVERS) {
        assert!(
            *t <= bound,
            "failback through {label} took {t:?}, more than {bound:?}"
        );
    }

    // One agent restarts: the resolvers ask the two others, their clients see no failure.
    let prober = Prober::start(&tier.ns());
    thread::sleep(Duration::from_millis(500));
    let since = Instant::now();
    let mut node2 = tier.agents[1].take().unwrap();
    assert_eq!(node2.terminate(), Some(0));
    let restarted = AgentProcess::start_with(
        {
            let mut l = tier.net.command(1, binary());
            l.env("FAILOVERD_CLUSTER_SECRET", SECRET);
            l
        },
        std::mem::replace(&mut node2.dir, tempfile::tempdir().unwrap()),
        node2.state_dir.clone(),
        &tier.yaml[1],
        node2.dns,
    );
    drop(node2);
    tier.agents[1] = Some(restarted);
    tier.wait_agent(1);
    thread::sleep(Duration::from_secs(2));
    let windows = prober.finish(since);
    let text = report("one agent restarting", &windows);
    assert!(windows.iter().all(|f| f.window.is_none()), "{text}");
}

/// Every agent restarts at once (an upgrade) while one node's web server is blackholed: the
/// first round takes the 5 s timeout. The static data (SOA, NS, glue) and the last published
/// answers are served at once, so the resolvers' clients see no SERVFAIL.
/// Depends on the `wire` branch (answers before the first round).
#[test]
fn a_cluster_restart_with_a_slow_first_round_gives_no_servfail() {
    let _one_tier_at_a_time = one_tier_at_a_time();
    let mut tier = Tier::start("interval: 6s, retry_interval: 5s, timeout: 5s, fall: 2, rise: 2");
    tier.blackhole(3);
    // node3 is seen down on every agent (after its timeout), then all restart together.
    wait_until(Duration::from_secs(20), "node3 to leave pool", || {
        tier.ask(BIND, &format!("pool.{ZONE}"), RecordType::A)
            .data
            .len()
            == 2 * V4_PER_NODE
    });
    let prober = Prober::start(&tier.ns());
    thread::sleep(Duration::from_millis(500));
    let since = Instant::now();
    let mut stopped = Vec::new();
    for slot in tier.agents.iter_mut() {
        let mut agent = slot.take().unwrap();
        agent.terminate();
        stopped.push((
            std::mem::replace(&mut agent.dir, tempfile::tempdir().unwrap()),
            agent.state_dir.clone(),
            agent.dns,
        ));
    }
    for (i, (dir, state, dns)) in stopped.into_iter().enumerate() {
        let mut l = tier.net.command(1, binary());
        l.env("FAILOVERD_CLUSTER_SECRET", SECRET);
        tier.agents[i] = Some(AgentProcess::start_with(l, dir, state, &tier.yaml[i], dns));
    }
    // The first round ends after the 5 s timeout; a few seconds more for the caches.
    thread::sleep(Duration::from_secs(9));
    let windows = prober.finish(since);
    let text = report("cluster restart, slow first round", &windows);
    // The window allowed: the moment no agent runs at all (all three stopped, then started one
    // after the other), when a resolver whose cached answer just expired has nobody to ask. Not
    // the agents' first round: that lasts the 5 s timeout and must cause no failure.
    let no_agent_running = Duration::from_millis(1500);
    assert!(
        windows
            .iter()
            .all(|f| f.window.is_none_or(|(_, end)| end <= no_agent_running)),
        "{text}"
    );
}

/// dnsviz finds no error or warning in the zone as the agents serve it (the apex, a hostname,
/// and `pool` whose 36 addresses do not fit 512 bytes), with the delegation the parent has.
#[test]
fn dnsviz_finds_no_error_or_warning() {
    let _one_tier_at_a_time = one_tier_at_a_time();
    let tier = Tier::start(FAST);
    let servers: Vec<String> = (1..=3)
        .map(|i| format!("ns-node{i}.{ZONE}={}", v4(i, 0)))
        .collect();
    let probe = tier.dir.path().join("probe.json");
    // dnsviz asks the system's resolver about the ancestors (`.`, `test.`): in a private mount
    // namespace, /etc/resolv.conf names the tier's BIND, so nothing leaves the namespace.
    let resolv = tier.dir.path().join("resolv.conf");
    std::fs::write(&resolv, format!("nameserver {BIND}\n")).unwrap();
    let script = format!(
        "mount --bind {} /etc/resolv.conf && exec dnsviz probe -A -4 -x .:root-ns.test={BIND} \
         -x {ZONE}:{servers} -o {} {ZONE} app.{ZONE} pool.{ZONE}",
        resolv.display(),
        probe.display(),
        servers = servers.join(","),
    );
    let out = tier
        .net
        .run(
            1,
            "unshare",
            &["-m", "sh", "-c", &script],
            Duration::from_secs(60),
        )
        .unwrap();
    assert!(
        out.status.success(),
        "dnsviz probe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let grok = tier
        .net
        .run(
            1,
            "dnsviz",
            &["grok", "-r", probe.to_str().unwrap()],
            Duration::from_secs(60),
        )
        .unwrap();
    let text = String::from_utf8_lossy(&grok.stdout);
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "dnsviz grok output: {e}: {text}{}",
            String::from_utf8_lossy(&grok.stderr)
        )
    });
    let mut found = Vec::new();
    collect_problems(&json, "", &mut found);
    assert!(found.is_empty(), "dnsviz grok: {found:#?}");
}

/// kdig finds no malformed truncated answer: `pool` (36 addresses) and the apex NS with its
/// glue, without EDNS and with small and usual EDNS sizes.
/// Depends on the `wire` branch (well-formed TC answers).
#[test]
fn kdig_sees_well_formed_truncated_answers() {
    let _one_tier_at_a_time = one_tier_at_a_time();
    let tier = Tier::start(FAST);
    for (name, qtype) in [(format!("pool.{ZONE}"), "A"), (ZONE.to_string(), "NS")] {
        for edns in ["+noedns", "+bufsize=1232", "+bufsize=512"] {
            let out = tier
                .net
                .run(
                    1,
                    "kdig",
                    &["@127.0.1.1", &name, qtype, "+notcp", "+ignore", edns],
                    Duration::from_secs(10),
                )
                .unwrap();
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                !all.to_lowercase().contains("malformed") && all.contains("NOERROR"),
                "kdig {name} {qtype} {edns}:\n{all}"
            );
        }
    }
}

/// Every "errors" and "warnings" entry anywhere in dnsviz grok's JSON, with its path.
fn collect_problems(value: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let here = format!("{path}/{k}");
                if (k == "errors" || k == "warnings") && v.as_array().is_some_and(|a| !a.is_empty())
                {
                    out.push(format!("{here}: {v}"));
                } else {
                    collect_problems(v, &here, out);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_problems(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}
