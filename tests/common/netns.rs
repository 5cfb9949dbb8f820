//! Several hosts on one machine: network namespaces joined by veth links to a bridge, with
//! one-way faults made by nftables inside a host, and cleanup on every exit path.
//!
//! Layout of one [`Netns`] with id `fod<pid>x<seq>`:
//! - namespace `<id>sw` holds only the bridge `br0` (the "switch");
//! - namespace `<id>h<i>` for host i (1-based, as the addresses): `lo` up and `eth0`, one end of
//!   a veth pair whose other end (`h<i>`) is a port of `br0`; `eth0` has `198.<18|19>.<X>.<i>/24`.
//!
//! Every interface is created directly inside its namespace, so nothing at all appears in the
//! host's own namespace: no interface, route, firewall rule or sysctl of the host is touched, and
//! the bridge cannot be affected by the host's firewall (Docker's FORWARD policy, br_netfilter).
//! Deleting the namespaces removes the veths, the bridge and any nftables state with them.
//!
//! Talk to the hosts only from inside a namespace ([`Netns::command`], [`Netns::run`],
//! [`Netns::can_connect`], [`Netns::http_status`], [`Netns::dig`]). The test process itself lives
//! in the host's namespace, which has no route to 198.18.0.0/15 of its own: a connect from there
//! would leave through the host's default route, out of the test network.
//!
//! Needs root (CI runs as root) plus `ip` (iproute2), `nft` (nftables), `bash` and `timeout`;
//! `scripts/test.sh` installs the packages. Without them `Netns::create` panics at once saying so.

use std::collections::HashSet;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::Path;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use super::{AgentProcess, DigResult, binary, parse_dig, wait_until};

/// Every name this harness creates starts with this (then the pid, `x`, a sequence number).
pub const PREFIX: &str = "fod";

/// The nftables table the faults live in, inside a host namespace only.
const NFT_TABLE: &str = "fodfault";

/// Bound for every single `ip`/`nft` invocation: they return in milliseconds, so this only
/// turns a wedged command into an error instead of a hung test.
const CMD_DEADLINE: Duration = Duration::from_secs(10);

/// Most hosts one `Netns` may have: addresses .1 … .N stay inside one /24.
const MAX_HOSTS: usize = 250;

/// Sequence number of the `Netns` within this process, so parallel tests never share names.
static SEQ: AtomicU32 = AtomicU32::new(0);

/// Serialises creation and the leftover sweep inside one process: `ip netns add` racing with
/// itself on the first mount of /run/netns is a known iproute2 weakness, and two sweeps in
/// parallel would just fight over the same leftovers.
static CREATE: Mutex<bool> = Mutex::new(false);

/// A set of hosts on one bridge. Dropping it (also while unwinding from a panic) kills every
/// process still inside its namespaces and deletes them.
pub struct Netns {
    id: String,
    hosts: Vec<String>,
    switch: String,
    /// First three octets of the /24 the hosts share.
    net: [u8; 3],
    /// Hosts with an nftables fault table, removed again on drop.
    faulted: Mutex<HashSet<usize>>,
}

impl Netns {
    /// Creates the bridge and `hosts` hosts (numbered 1..=hosts). Panics with a clear message
    /// when not root, when `ip`/`nft` are missing, or when a step fails (after undoing the
    /// steps done so far).
    pub fn create(hosts: usize) -> Netns {
        if let Err(e) = preflight() {
            panic!("netns harness: {e}");
        }
        assert!(
            (1..=MAX_HOSTS).contains(&hosts),
            "netns harness: 1..={MAX_HOSTS} hosts, not {hosts}"
        );
        let pid = std::process::id();
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let id = format!("{PREFIX}{pid}x{seq}");
        // A different /24 per process and per Netns, inside 198.18.0.0/15 (512 of them). Two
        // runs that do land on the same /24 still cannot meet: each has its own bridge.
        let slot = (pid.wrapping_mul(7).wrapping_add(seq)) % 512;
        let net = [198, 18 + (slot / 256) as u8, (slot % 256) as u8];
        let netns = Netns {
            hosts: (1..=hosts).map(|i| format!("{id}h{i}")).collect(),
            switch: format!("{id}sw"),
            id,
            net,
            faulted: Mutex::new(HashSet::new()),
        };
        {
            let mut swept_own_pid = CREATE.lock().unwrap_or_else(|e| e.into_inner());
            sweep_leftovers(!*swept_own_pid);
            *swept_own_pid = true;
            // On error `netns` is dropped here, which removes whatever was built.
            if let Err(e) = netns.build() {
                panic!("netns harness: creating {}: {e}", netns.id);
            }
        }
        netns
    }

    fn build(&self) -> Result<(), String> {
        let sw = self.switch.as_str();
        ip(&["netns", "add", sw])?;
        ip(&[
            "-n",
            sw,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ])?;
        ip(&["-n", sw, "link", "set", "br0", "up"])?;
        for i in self.hosts() {
            let ns = self.name(i);
            let port = format!("h{i}");
            ip(&["netns", "add", ns])?;
            // Both ends are born inside namespaces: never visible in the host's namespace.
            ip(&[
                "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", sw,
            ])?;
            ip(&["-n", sw, "link", "set", &port, "master", "br0", "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            let addr = format!("{}/24", self.host_ip(i));
            ip(&["-n", ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        }
        // Carrier comes up asynchronously; return only once every link is usable.
        let start = Instant::now();
        for i in self.hosts() {
            loop {
                let out = ip(&["-n", self.name(i), "-br", "link", "show", "eth0"])?;
                if String::from_utf8_lossy(&out.stdout).contains("LOWER_UP") {
                    break;
                }
                if start.elapsed() > Duration::from_secs(5) {
                    return Err(format!("eth0 of host {i} has no carrier after 5 s"));
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// The run's unique id (`fod<pid>x<seq>`), the prefix of every name; for [`assert_gone`].
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Host numbers, 1-based like the last octet of their addresses.
    pub fn hosts(&self) -> RangeInclusive<usize> {
        1..=self.hosts.len()
    }

    /// The namespace name of host `i` (for `ip netns exec` by hand).
    pub fn name(&self, i: usize) -> &str {
        self.check_host(i);
        &self.hosts[i - 1]
    }

    /// The address of host `i`: `198.<18|19>.<X>.<i>`.
    pub fn host_ip(&self, i: usize) -> IpAddr {
        self.check_host(i);
        IpAddr::V4(Ipv4Addr::new(
            self.net[0],
            self.net[1],
            self.net[2],
            i as u8,
        ))
    }

    /// The hosts' /24, e.g. `198.18.37.0/24`.
    pub fn subnet(&self) -> String {
        format!("{}.{}.{}.0/24", self.net[0], self.net[1], self.net[2])
    }

    /// A command running `program` inside host `i`'s namespace (`ip netns exec`, which execs
    /// the program: the child's pid is the program's, so `kill()` on it kills the program).
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.name(i)]).arg(program);
        cmd
    }

    /// Python's HTTP server inside host `i`, bound to that host's address only, serving `dir`;
    /// kill the child to take the backend down (the namespace cleanup kills it too).
    pub fn http_server(&self, i: usize, port: u16, dir: &Path) -> std::process::Child {
        self.command(i, "/usr/bin/python3")
            .args(["-m", "http.server", "--bind"])
            .arg(self.host_ip(i).to_string())
            .arg(port.to_string())
            .arg("--directory")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m http.server in the namespace")
    }

    /// `http_server` on every host, serving `dir` on `port`; returns once each listens (10 s
    /// at most each).
    pub fn web_servers(&self, port: u16, dir: &Path) -> Vec<std::process::Child> {
        let servers: Vec<_> = self
            .hosts()
            .map(|i| self.http_server(i, port, dir))
            .collect();
        for i in self.hosts() {
            let ip = self.host_ip(i);
            wait_until(Duration::from_secs(10), "the web servers to listen", || {
                self.can_connect(i, ip, port)
            });
        }
        servers
    }

    /// Runs `program args…` inside host `i` and waits for it, at most `deadline` (then kills it
    /// and returns an error).
    pub fn run(
        &self,
        i: usize,
        program: &str,
        args: &[&str],
        deadline: Duration,
    ) -> Result<Output, String> {
        let mut cmd = self.command(i, program);
        cmd.args(args);
        run_bounded(&mut cmd, deadline)
    }

    /// Whether host `i` can open a TCP connection to `ip:port` within 2 s.
    pub fn can_connect(&self, i: usize, ip: IpAddr, port: u16) -> bool {
        let script = format!("exec 3<>/dev/tcp/{ip}/{port}");
        self.run(
            i,
            "timeout",
            &["2", "bash", "-c", &script],
            Duration::from_secs(5),
        )
        .is_ok_and(|out| out.status.success())
    }

    /// The HTTP status host `i` gets for `url` (curl, 2 s limit); `None` when no answer.
    pub fn http_status(&self, i: usize, url: &str) -> Option<u16> {
        let out = self
            .run(
                i,
                "curl",
                &[
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "2",
                    url,
                ],
                Duration::from_secs(5),
            )
            .ok()?;
        match String::from_utf8_lossy(&out.stdout).trim().parse() {
            Ok(0) | Err(_) => None,
            Ok(code) => Some(code),
        }
    }

    /// `dig` run inside host `i` (the host's own namespace cannot reach these addresses).
    pub fn dig(
        &self,
        i: usize,
        server: SocketAddr,
        name: &str,
        qtype: &str,
        extra: &[&str],
    ) -> DigResult {
        let (at, port) = (format!("@{}", server.ip()), server.port().to_string());
        let mut args = vec![
            at.as_str(),
            "-p",
            &port,
            name,
            qtype,
            "+time=1",
            "+tries=1",
            "+norecurse",
        ];
        args.extend_from_slice(extra);
        match self.run(i, "dig", &args, Duration::from_secs(5)) {
            Ok(out) => parse_dig(&String::from_utf8_lossy(&out.stdout)),
            Err(e) => DigResult {
                raw: e,
                ..Default::default()
            },
        }
    }

    /// The real `failoverd run` inside host `i`, config written to a fresh temp dir; killed on
    /// drop (and by the namespace cleanup). `dns` is the config's `dns.listen`, on `host_ip(i)`.
    pub fn start_agent(&self, i: usize, config_yaml: &str, dns: SocketAddr) -> AgentProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let state_dir = dir.path().join("state");
        self.start_agent_in(i, dir, state_dir, config_yaml, dns)
    }

    /// Like `start_agent`, on a given directory and state (to restart on the same state).
    pub fn start_agent_in(
        &self,
        i: usize,
        dir: tempfile::TempDir,
        state_dir: std::path::PathBuf,
        config_yaml: &str,
        dns: SocketAddr,
    ) -> AgentProcess {
        AgentProcess::start_with(self.command(i, binary()), dir, state_dir, config_yaml, dns)
    }

    /// One agent per host, each node `i` on `ips[i - 1]` (priorities 30, 20, 10 …), one HTTP
    /// check `web` on port 8080 and one hostname `app`; `dashboard` is the dashboard's listen
    /// address (`{ip}` is the host's), `cluster` and `defaults` the inside of those sections.
    /// Started with the cluster secret, and waited for until each answers DNS.
    pub fn start_cluster(
        &self,
        ips: &[String],
        zone: &str,
        secret: &str,
        dashboard: &str,
        cluster: &str,
        defaults: &str,
    ) -> Vec<AgentProcess> {
        let yaml = |me: usize| {
            let ip = &ips[me - 1];
            let mut y = format!(
                "zone: {zone}\nself: node{me}\ndns: {{ listen: [\"{ip}:5353\"], ttl: 5s }}\n\
                 dashboard: {{ listen: \"{dashboard}\" }}\n\
                 cluster: {{ listen: \"{ip}:8053\", {cluster} }}\n\
                 defaults: {{ {defaults} }}\nnodes:\n",
                dashboard = dashboard.replace("{ip}", ip)
            );
            for (i, ip) in ips.iter().enumerate() {
                y.push_str(&format!(
                    "  - {{ id: node{}, address: {ip}, priority: {} }}\n",
                    i + 1,
                    30 - 10 * i
                ));
            }
            y.push_str("checks:\n  - { id: web, type: http, url: \"http://{address}:8080/\" }\nhostnames:\n  - { name: app, checks: [web] }\n");
            y
        };
        let mut agents: Vec<AgentProcess> = self
            .hosts()
            .map(|i| {
                let mut launcher = self.command(i, binary());
                launcher.env("FAILOVERD_CLUSTER_SECRET", secret);
                let dir = tempfile::tempdir().unwrap();
                let state = dir.path().join("state");
                let dns: SocketAddr = format!("{}:5353", ips[i - 1]).parse().unwrap();
                AgentProcess::start_with(launcher, dir, state, &yaml(i), dns)
            })
            .collect();
        for (k, agent) in agents.iter_mut().enumerate() {
            self.wait_agent_ready(k + 1, agent, &format!("app.{zone}"));
        }
        agents
    }

    /// What `app.<zone>` answers on each agent, each asked from its own host (the namespaces
    /// have no route to each other's DNS from outside, and none is needed).
    pub fn answers(&self, agents: &[AgentProcess], zone: &str) -> Vec<Vec<String>> {
        agents
            .iter()
            .enumerate()
            .map(|(k, a)| {
                self.dig(k + 1, a.dns, &format!("app.{zone}"), "A", &[])
                    .answers
            })
            .collect()
    }

    /// `AgentProcess::wait_ready` for an agent in a namespace: asks from host `from` (any host
    /// on the bridge, or the agent's own) until the answer is not SERVFAIL; 15 s at most.
    pub fn wait_agent_ready(&self, from: usize, agent: &mut AgentProcess, name: &str) {
        let (dns, log) = (agent.dns, agent.log.clone());
        let child = &mut agent.child;
        wait_until(Duration::from_secs(15), "the agent to answer DNS", || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "failoverd exited early ({status}); log:\n{}",
                    log.lock().unwrap_or_else(|e| e.into_inner())
                );
            }
            let r = self.dig(from, dns, name, "A", &[]);
            !r.status.is_empty() && r.status != "SERVFAIL"
        });
    }

    /// One-way fault: host `from` can no longer send TCP to `to_ip:port` (packets are dropped,
    /// so connects time out as on a real broken path). Traffic the other way, and from every
    /// other host, is untouched. Several calls add up; [`Netns::restore`] removes them all.
    pub fn drop_tcp(&self, from: usize, to_ip: IpAddr, port: u16) {
        let family = if to_ip.is_ipv4() { "ip" } else { "ip6" };
        self.add_fault(
            from,
            &format!("{family} daddr {to_ip} tcp dport {port} counter drop"),
        );
    }

    /// One-way fault: host `from` can no longer send anything to `to_ip` (a peer that does not
    /// answer, as far as `from` can tell).
    pub fn drop_ip(&self, from: usize, to_ip: IpAddr) {
        let family = if to_ip.is_ipv4() { "ip" } else { "ip6" };
        self.add_fault(from, &format!("{family} daddr {to_ip} counter drop"));
    }

    /// Removes every fault of host `from`.
    pub fn restore(&self, from: usize) {
        self.check_host(from);
        let mut faulted = self.faulted.lock().unwrap_or_else(|e| e.into_inner());
        if faulted.remove(&from) {
            let out = self.nft(from, &["delete", "table", "inet", NFT_TABLE]);
            if let Err(e) = out {
                panic!("netns harness: restore host {from}: {e}");
            }
        }
    }

    /// The active fault rules of host `from` (`nft list ruleset` inside it), for messages.
    pub fn faults(&self, from: usize) -> String {
        self.nft(from, &["list", "ruleset"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_else(|e| e)
    }

    fn add_fault(&self, from: usize, rule: &str) {
        self.check_host(from);
        let mut faulted = self.faulted.lock().unwrap_or_else(|e| e.into_inner());
        if !faulted.contains(&from) {
            // Our own table in the host's namespace: no other ruleset exists there.
            let chain = format!(
                "add chain inet {NFT_TABLE} out {{ type filter hook output priority 0; policy accept; }}"
            );
            let made = self
                .nft(from, &["add", "table", "inet", NFT_TABLE])
                .and_then(|_| self.nft(from, &[&chain]));
            if let Err(e) = made {
                panic!("netns harness: fault table in host {from}: {e}");
            }
            faulted.insert(from);
        }
        let add = format!("add rule inet {NFT_TABLE} out {rule}");
        if let Err(e) = self.nft(from, &[&add]) {
            panic!("netns harness: fault rule in host {from}: {e}");
        }
    }

    fn nft(&self, i: usize, args: &[&str]) -> Result<Output, String> {
        let out = self.run(i, "nft", args, CMD_DEADLINE)?;
        check_status("nft", args, out)
    }

    fn check_host(&self, i: usize) {
        assert!(
            (1..=self.hosts.len()).contains(&i),
            "netns harness: host {i} out of 1..={} (hosts are 1-based)",
            self.hosts.len()
        );
    }

    /// Tears everything down now and checks nothing is left (Drop does the same, silently).
    pub fn close(self) {
        let id = self.id.clone();
        drop(self);
        assert_gone(&id);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Never panic here: this also runs while a failed test unwinds.
        let faulted: Vec<usize> = self
            .faulted
            .get_mut()
            .map(|f| f.drain().collect())
            .unwrap_or_default();
        for i in faulted {
            let _ = self.nft(i, &["delete", "table", "inet", NFT_TABLE]);
        }
        let mut names: Vec<&str> = self.hosts.iter().map(String::as_str).collect();
        names.push(&self.switch);
        // Only those that exist: a failed `create` drops a half-built set.
        let present = netns_names();
        for name in names.into_iter().filter(|n| present.iter().any(|p| p == n)) {
            if let Err(e) = remove_namespace(name) {
                eprintln!("netns harness: cleaning {name}: {e}");
            }
        }
        let left = leftovers(&self.id);
        if !left.is_empty() {
            eprintln!("netns harness: still present after cleanup: {left:?}");
        }
    }
}

/// Everything of the run `id` still present: namespaces (`ip netns list`) and links in the
/// host's namespace (`ip link show`) whose name starts with `id`.
pub fn leftovers(id: &str) -> Vec<String> {
    let mut found = Vec::new();
    for name in netns_names() {
        if owned_by(&name, id) {
            found.push(format!("netns {name}"));
        }
    }
    if let Ok(out) = ip(&["-o", "link", "show"]) {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "7: name@peer: <FLAGS> …"
            let name = line.split(':').nth(1).unwrap_or("").trim();
            let name = name.split('@').next().unwrap_or("");
            if name.starts_with(id) {
                found.push(format!("link {name}"));
            }
        }
    }
    found
}

/// Panics unless nothing of the run `id` is left.
pub fn assert_gone(id: &str) {
    let left = leftovers(id);
    assert!(left.is_empty(), "left behind by {id}: {left:?}");
}

/// Whether `name` is one of the run `id`'s: `<id>sw` or `<id>h<digits>` (so `fod1x1` does not
/// claim `fod1x10h1`).
pub fn owned_by(name: &str, id: &str) -> bool {
    match name.strip_prefix(id) {
        Some("sw") => true,
        Some(rest) => rest
            .strip_prefix('h')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

/// The pid in a name of ours (`fod<pid>x<seq>sw`, `fod<pid>x<seq>h<i>`), `None` for others.
pub fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, rest) = rest.split_once('x')?;
    let (seq, _) = rest.split_once(['h', 's'])?;
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id = format!("{PREFIX}{pid}x{seq}");
    if !owned_by(name, &id) {
        return None;
    }
    pid.parse().ok()
}

/// Removes namespaces left by runs that crashed (Drop never ran): those whose pid no longer
/// exists, and, the first time in this process, those with our own pid (a dead run that had
/// the same pid; we have created none yet).
fn sweep_leftovers(include_own_pid: bool) {
    let me = std::process::id();
    for name in netns_names() {
        let Some(pid) = owner_pid(&name) else {
            continue;
        };
        let dead = !Path::new(&format!("/proc/{pid}")).exists();
        if dead || (include_own_pid && pid == me) {
            eprintln!("netns harness: removing leftover namespace {name} (pid {pid} is gone)");
            if let Err(e) = remove_namespace(&name) {
                eprintln!("netns harness: {e}");
            }
        }
    }
}

fn netns_names() -> Vec<String> {
    match ip(&["netns", "list"]) {
        // "name (id: 3)" or just "name".
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Kills every process inside the namespace (a backend or agent the test did not stop, or a
/// test that panicked first), then deletes it; the veth ends, the bridge and nftables state
/// inside go with it. A namespace still holding a process would outlive `ip netns del`.
fn remove_namespace(name: &str) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let pids = ip(&["netns", "pids", name])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let pids: Vec<&str> = pids.split_whitespace().collect();
        if pids.is_empty() {
            break;
        }
        if start.elapsed() > Duration::from_secs(5) {
            return Err(format!("processes {pids:?} in {name} survive SIGKILL"));
        }
        let mut kill = Command::new("kill");
        kill.arg("-KILL").args(&pids);
        let _ = run_bounded(&mut kill, CMD_DEADLINE);
        thread::sleep(Duration::from_millis(20));
    }
    ip(&["netns", "del", name]).map(|_| ())
}

/// Root, `ip`, `nft`, `bash` and `timeout`: checked before touching anything, so a developer
/// without them gets one clear sentence instead of a failure halfway or a hang.
pub fn preflight() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    if euid != "0" {
        return Err(format!(
            "network namespaces need root (effective uid is {euid}); run these tests as root, \
             as CI does (sudo ./scripts/test.sh)"
        ));
    }
    for (tool, version, package) in [
        ("ip", "-V", "iproute2"),
        ("nft", "--version", "nftables"),
        ("bash", "--version", "bash"),
        ("timeout", "--version", "coreutils"),
    ] {
        check_tool(tool, version, package)?;
    }
    Ok(())
}

/// Err with an install hint unless `tool flag` runs and succeeds.
pub fn check_tool(tool: &str, flag: &str, package: &str) -> Result<(), String> {
    match run_bounded(Command::new(tool).arg(flag), CMD_DEADLINE) {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`{tool} {flag}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!(
            "`{tool}` is not usable ({e}); install the Debian package {package} \
             (scripts/test.sh does)"
        )),
    }
}

/// `ip args…`, bounded, Err with its stderr unless it succeeds.
fn ip(args: &[&str]) -> Result<Output, String> {
    let out = run_bounded(Command::new("ip").args(args), CMD_DEADLINE)?;
    check_status("ip", args, out)
}

fn check_status(program: &str, args: &[&str], out: Output) -> Result<Output, String> {
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `cmd` to completion with captured output; kills it after `deadline`.
pub fn run_bounded(cmd: &mut Command, deadline: Duration) -> Result<Output, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    // Readers on threads so a chatty child never blocks on a full pipe while we poll.
    let (out_tx, out_rx) = mpsc::channel();
    let (err_tx, err_rx) = mpsc::channel();
    for (pipe, tx) in [
        (
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            out_tx,
        ),
        (
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            err_tx,
        ),
    ] {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            let _ = tx.send(buf);
        });
    }
    let start = Instant::now();
    let status: ExitStatus = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{:?} still running after {deadline:?}; killed",
                    cmd.get_program()
                ));
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for {:?}: {e}", cmd.get_program())),
        }
    };
    // A grandchild that inherited the pipes could keep them open: wait a little, not forever.
    let stdout = out_rx
        .recv_timeout(Duration::from_secs(1))
        .unwrap_or_default();
    let stderr = err_rx
        .recv_timeout(Duration::from_secs(1))
        .unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}
