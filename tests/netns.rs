//! The network-namespace harness (tests/common/netns.rs) proven with real traffic: three hosts on
//! a bridge, a real HTTP server in one, a one-way TCP fault made and lifted with nftables, and
//! nothing left behind afterwards — also after a panic, and from a run that crashed. Needs root.

mod common;

use std::net::IpAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::netns::{self, Netns, run_bounded};
use common::wait_until;

const PORT: u16 = 8080;
const OTHER_PORT: u16 = 8081;

/// The harness's HTTP server in host `i` (see `Netns::http_server`).
fn http_server(net: &Netns, i: usize, port: u16, dir: &Path) -> Child {
    net.http_server(i, port, dir)
}

fn url(ip: IpAddr, port: u16) -> String {
    format!("http://{ip}:{port}/")
}

fn exited(child: &mut Child) -> bool {
    child.try_wait().expect("try_wait").is_some()
}

#[test]
fn one_way_tcp_fault_between_three_hosts() {
    let net = Netns::create(3);
    let id = net.id().to_string();
    let (h1, h2) = (net.host_ip(1), net.host_ip(2));
    assert!(
        h1.to_string().starts_with("198.1"),
        "{h1} outside 198.18.0.0/15"
    );
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "<title>Sign in</title>").unwrap();
    let mut servers = [
        http_server(&net, 2, PORT, site.path()),
        // A second port on h2: the fault must take only the one flow.
        http_server(&net, 2, OTHER_PORT, site.path()),
        // A server on h1: the fault must be one-way (h2 still reaches h1).
        http_server(&net, 1, PORT, site.path()),
    ];

    wait_until(
        Duration::from_secs(15),
        "h1 and h3 to fetch from h2",
        || {
            net.http_status(1, &url(h2, PORT)) == Some(200)
                && net.http_status(3, &url(h2, PORT)) == Some(200)
                && net.http_status(1, &url(h2, OTHER_PORT)) == Some(200)
                && net.http_status(2, &url(h1, PORT)) == Some(200)
        },
    );

    net.drop_tcp(1, h2, PORT);
    wait_until(Duration::from_secs(10), "h1 to lose h2's port", || {
        !net.can_connect(1, h2, PORT)
    });
    assert_eq!(net.http_status(1, &url(h2, PORT)), None, "h1 → h2:{PORT}");
    assert_eq!(
        net.http_status(3, &url(h2, PORT)),
        Some(200),
        "h3 must still reach h2"
    );
    assert_eq!(
        net.http_status(1, &url(h2, OTHER_PORT)),
        Some(200),
        "only the one port is dropped"
    );
    assert_eq!(
        net.http_status(2, &url(h1, PORT)),
        Some(200),
        "the fault is one-way: h2 still reaches h1"
    );
    let rules = net.faults(1);
    assert!(rules.contains(&format!("dport {PORT}")), "{rules}");
    assert!(!net.faults(3).contains("dport"), "h3 has no fault");

    net.restore(1);
    wait_until(Duration::from_secs(10), "h1 to reach h2 again", || {
        net.http_status(1, &url(h2, PORT)) == Some(200)
    });
    assert!(!net.faults(1).contains("dport"), "{}", net.faults(1));

    // The servers are still running: cleanup must kill them, then remove everything.
    net.close();
    netns::assert_gone(&id);
    wait_until(Duration::from_secs(5), "the servers to be killed", || {
        servers.iter_mut().all(exited)
    });
}

/// The real agent in h1 checks web servers in h2 and h3 (h2 preferred); a one-way fault from
/// h1 to h2's port moves its answer to h3, lifting it moves it back. Asked with dig from h3.
#[test]
fn a_real_agent_in_a_namespace_sees_the_one_way_fault() {
    const ZONE: &str = "ha.example.com";
    let net = Netns::create(3);
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("login"), "<title>Sign in</title>").unwrap();
    let _servers = [
        http_server(&net, 2, PORT, site.path()),
        http_server(&net, 3, PORT, site.path()),
    ];
    let dns = std::net::SocketAddr::new(net.host_ip(1), 5353);
    let [h1, h2, h3] = [1, 2, 3].map(|i| net.host_ip(i));
    let yaml = format!(
        "zone: {ZONE}\nself: node1\ndns:\n  listen: [\"{dns}\"]\n  ttl: 5s\n\
         dashboard: {{ listen: \"{h1}:0\" }}\n\
         defaults: {{ interval: 300ms, retry_interval: 150ms, timeout: 100ms, fall: 2, rise: 2 }}\n\
         nodes:\n  - {{ id: node1, address: {h1}, priority: 10 }}\n\
         \x20 - {{ id: node2, address: {h2}, priority: 30 }}\n\
         \x20 - {{ id: node3, address: {h3}, priority: 20 }}\n\
         checks:\n  - {{ id: web, type: http, url: \"http://{{address}}:{PORT}/login\", expect_body: \"Sign in\" }}\n\
         hostnames:\n  - {{ name: app, checks: [web] }}\n"
    );
    let mut agent = net.start_agent(1, &yaml, dns);
    let app = format!("app.{ZONE}");
    net.wait_agent_ready(3, &mut agent, &app);
    let answer = || net.dig(3, dns, &app, "A", &[]).answers;
    wait_until(Duration::from_secs(10), "app on node2", || {
        answer() == [h2.to_string()]
    });

    net.drop_tcp(1, h2, PORT);
    wait_until(Duration::from_secs(10), "app to move to node3", || {
        answer() == [h3.to_string()]
    });
    net.restore(1);
    wait_until(Duration::from_secs(10), "app back on node2", || {
        answer() == [h2.to_string()]
    });
    drop(agent);
    net.close();
}

#[test]
fn drop_ip_cuts_a_peer_off_in_one_direction() {
    let net = Netns::create(2);
    let site = tempfile::tempdir().unwrap();
    let (h1, h2) = (net.host_ip(1), net.host_ip(2));
    let _servers = [
        http_server(&net, 1, PORT, site.path()),
        http_server(&net, 2, PORT, site.path()),
    ];
    wait_until(Duration::from_secs(15), "both servers up", || {
        net.can_connect(1, h2, PORT) && net.can_connect(2, h1, PORT)
    });
    net.drop_ip(2, h1);
    assert!(!net.can_connect(2, h1, PORT), "h2 → h1 dropped");
    // h1's SYN reaches h2, but h2's SYN-ACK to h1 is dropped too: the whole exchange dies,
    // as it would for a peer whose outgoing path is broken.
    assert!(!net.can_connect(1, h2, PORT), "no answer from h2 to h1");
    net.restore(2);
    wait_until(Duration::from_secs(10), "h2 reaches h1 again", || {
        net.can_connect(2, h1, PORT)
    });
    net.close();
}

#[test]
fn a_panicking_test_leaves_nothing() {
    let id = Mutex::new(String::new());
    let child: Mutex<Option<Child>> = Mutex::new(None);
    let result = catch_unwind(AssertUnwindSafe(|| {
        let net = Netns::create(2);
        *id.lock().unwrap() = net.id().to_string();
        net.drop_tcp(1, net.host_ip(2), 9);
        let sleeper = net
            .command(2, "sleep")
            .arg("300")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        *child.lock().unwrap() = Some(sleeper);
        panic!("deliberate failure with a namespace, a fault and a process");
    }));
    assert!(result.is_err());
    let id = id.into_inner().unwrap();
    assert!(!id.is_empty());
    netns::assert_gone(&id);
    let mut sleeper = child.into_inner().unwrap().unwrap();
    wait_until(
        Duration::from_secs(5),
        "the process in h2 to be killed",
        || exited(&mut sleeper),
    );
}

#[test]
fn leftovers_of_a_crashed_run_are_swept() {
    // A pid that existed a moment ago and is gone now: a crashed run's.
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let dead = gone.id();
    assert!(!Path::new(&format!("/proc/{dead}")).exists());
    let ghost = format!("{}{dead}x0", netns::PREFIX);
    let (sw, h1) = (format!("{ghost}sw"), format!("{ghost}h1"));
    let ip = |args: &[&str]| {
        let out = run_bounded(Command::new("ip").args(args), Duration::from_secs(10)).unwrap();
        assert!(out.status.success(), "ip {args:?}: {out:?}");
    };
    ip(&["netns", "add", &sw]);
    ip(&["netns", "add", &h1]);
    ip(&[
        "-n", &h1, "link", "add", "eth0", "type", "veth", "peer", "name", "h1", "netns", &sw,
    ]);
    assert_eq!(netns::leftovers(&ghost).len(), 2);

    let net = Netns::create(1);
    netns::assert_gone(&ghost);
    net.close();
}

#[test]
fn names_of_a_run_are_recognised_exactly() {
    assert_eq!(netns::owner_pid("fod123x4sw"), Some(123));
    assert_eq!(netns::owner_pid("fod123x4h12"), Some(123));
    assert_eq!(netns::owner_pid("fod123x4h"), None);
    assert_eq!(netns::owner_pid("fodder"), None);
    assert_eq!(netns::owner_pid("fod123x4swx"), None);
    assert_eq!(netns::owner_pid("docker-fod1x1sw"), None);
    // Run fod1x1 does not own run fod1x10's namespaces.
    assert!(!netns::owned_by("fod1x10h1", "fod1x1"));
    assert!(netns::owned_by("fod1x1h10", "fod1x1"));
}

#[test]
fn a_missing_tool_is_a_clear_error() {
    let err = netns::check_tool("fod-no-such-tool", "--version", "nftables").unwrap_err();
    assert!(err.contains("install the Debian package nftables"), "{err}");
}
