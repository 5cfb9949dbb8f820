//! `failoverd demo`: three simulated application nodes on 127.0.0.x, the agent in front of them,
//! and a prompt to take nodes down and up while `dig` shows the answer move.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::agent::{Agent, AgentError};
use crate::config;
use crate::dns::Zone;

const ZONE: &str = "ha.example.com";
/// First DNS port tried; the next ones are tried when it is taken (mDNS daemons hold 5353).
const DNS_PORT: u16 = 5353;
/// First dashboard port tried; the next ones are tried when it is taken.
const DASHBOARD_PORT: u16 = 8081;
const PORT_TRIES: u16 = 50;

/// `println!` that never panics: when stdout can no longer be written (its reader went away),
/// the demo stops and cleans up instead, and `run` says why.
macro_rules! println {
    ($($arg:tt)*) => {
        say(format_args!($($arg)*))
    };
}

/// Cancelled when stdout is lost; set once by `run`.
static STOP: std::sync::OnceLock<CancellationToken> = std::sync::OnceLock::new();
static STDOUT_LOST: AtomicBool = AtomicBool::new(false);

fn say(line: std::fmt::Arguments) {
    use std::io::Write;
    if writeln!(std::io::stdout(), "{line}").is_err()
        && !STDOUT_LOST.swap(true, Ordering::Relaxed)
        && let Some(stop) = STOP.get()
    {
        stop.cancel();
    }
}

/// One simulated application node: an HTTP "login page" and a TCP service.
struct SimNode {
    id: String,
    ip: Ipv4Addr,
    priority: u32,
    http_port: u16,
    tcp_port: u16,
    /// While set, the web page answers 503 (the service is up but broken).
    sick: Arc<AtomicBool>,
    listeners: Option<(JoinHandle<()>, JoinHandle<()>)>,
}

impl SimNode {
    async fn up(&mut self) -> std::io::Result<()> {
        if self.listeners.is_some() {
            return Ok(());
        }
        let http = TcpListener::bind((self.ip, self.http_port)).await?;
        let tcp = TcpListener::bind((self.ip, self.tcp_port)).await?;
        let sick = self.sick.clone();
        let http_task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = http.accept().await {
                let sick = sick.load(Ordering::Relaxed);
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let _ =
                        tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
                    let (status, body) = if sick {
                        ("503 Service Unavailable", "maintenance\n")
                    } else {
                        ("200 OK", "<title>Sign in</title>\n")
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                });
            }
        });
        let tcp_task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = tcp.accept().await {
                tokio::spawn(async move {
                    let _ = stream.write_all(b"SIP/2.0 demo ready\r\n").await;
                });
            }
        });
        self.listeners = Some((http_task, tcp_task));
        Ok(())
    }

    fn down(&mut self) {
        if let Some((a, b)) = self.listeners.take() {
            a.abort();
            b.abort();
        }
    }
}

/// Finds a port pair (HTTP, HTTP+1) free on every demo address.
async fn free_ports(ips: &[Ipv4Addr]) -> Option<u16> {
    'next: for port in (18080..18080 + PORT_TRIES * 2).step_by(2) {
        let mut held = Vec::new();
        for ip in ips {
            for p in [port, port + 1] {
                match TcpListener::bind((*ip, p)).await {
                    Ok(l) => held.push(l),
                    Err(_) => continue 'next,
                }
            }
        }
        return Some(port);
    }
    None
}

fn demo_config(nodes: &[SimNode], dns_port: u16, dashboard_port: u16) -> String {
    let mut yaml = format!(
        "zone: {ZONE}\ndns:\n  listen: [\"127.0.0.1:{dns_port}\"]\n  ttl: 5s\n\
         dashboard:\n  listen: \"127.0.0.1:{dashboard_port}\"\n  refresh: 2s\n\
         defaults:\n  interval: 2s\n  retry_interval: 500ms\n  timeout: 400ms\n  fall: 2\n  rise: 2\nnodes:\n"
    );
    for n in nodes {
        yaml.push_str(&format!(
            "  - {{ id: {}, address: {}, priority: {} }}\n",
            n.id, n.ip, n.priority
        ));
    }
    let (http, tcp) = (nodes[0].http_port, nodes[0].tcp_port);
    yaml.push_str(&format!(
        "checks:\n  - {{ id: web, type: http, url: \"http://{{address}}:{http}/login\", expect_body: \"Sign in\" }}\n\
         \x20 - {{ id: sip, type: tcp, port: {tcp}, expect: \"SIP/2.0\" }}\n\
         hostnames:\n  - {{ name: app, checks: [web, sip] }}\n  - {{ name: web, checks: [web], mode: all }}\n"
    ));
    yaml
}

/// Runs the demo until `shutdown` or `quit`.
pub async fn run(shutdown: CancellationToken) -> Result<(), String> {
    let _ = STOP.set(shutdown.clone());
    let ips = [
        Ipv4Addr::new(127, 0, 0, 11),
        Ipv4Addr::new(127, 0, 0, 12),
        Ipv4Addr::new(127, 0, 0, 13),
    ];
    let port = free_ports(&ips)
        .await
        .ok_or("no free port pair for the simulated nodes on 127.0.0.11-13")?;
    let mut nodes: Vec<SimNode> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| SimNode {
            id: format!("node{}", i + 1),
            ip: *ip,
            priority: 30 - 10 * i as u32,
            http_port: port,
            tcp_port: port + 1,
            sick: Arc::new(AtomicBool::new(false)),
            listeners: None,
        })
        .collect();
    for n in &mut nodes {
        n.up()
            .await
            .map_err(|e| format!("cannot start simulated {} on {}: {e}", n.id, n.ip))?;
    }

    let state_dir = std::env::temp_dir().join(format!("failoverd-demo-{}", std::process::id()));
    let mut agent = None;
    // Each bind failure moves only the port that failed, so both searches stay bounded.
    let (mut dns_port, mut dashboard_port) = (DNS_PORT, DASHBOARD_PORT);
    while dns_port < DNS_PORT + PORT_TRIES && dashboard_port < DASHBOARD_PORT + PORT_TRIES {
        let yaml = demo_config(&nodes, dns_port, dashboard_port);
        let cfg = config::parse(Path::new("<demo>"), &yaml)
            .and_then(config::find_self)
            .map_err(|e| e.to_string())?;
        match Agent::build(cfg, &state_dir) {
            Ok(a) => {
                agent = Some(a);
                break;
            }
            Err(AgentError::Bind { .. }) => dns_port += 1,
            Err(AgentError::DashboardBind { .. }) => dashboard_port += 1,
            Err(e) => return Err(e.to_string()),
        }
    }
    let agent = agent.ok_or(format!(
        "no free port on 127.0.0.1: tried {DNS_PORT}-{} for DNS and {DASHBOARD_PORT}-{} for the dashboard",
        DNS_PORT + PORT_TRIES - 1,
        DASHBOARD_PORT + PORT_TRIES - 1
    ))?;
    let dns = agent.dns_addrs()[0];
    let dashboard = agent.dashboard_addr();
    let zone = agent.published().zone;
    let agent_shutdown = shutdown.child_token();
    let agent_task = tokio::spawn(agent.run(agent_shutdown.clone()));

    print_intro(&nodes, dns, dashboard);
    let watcher = tokio::spawn(watch_answers(zone, shutdown.clone()));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    loop {
        let line = tokio::select! {
            line = lines.next_line(), if stdin_open => line,
            () = shutdown.cancelled() => break,
        };
        let line = match line {
            Ok(Some(line)) => line,
            // No terminal (or stdin closed): keep running until Ctrl-C.
            _ => {
                stdin_open = false;
                continue;
            }
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        let find = |name: &str| {
            nodes
                .iter()
                .position(|n| n.id == name || n.id == format!("node{name}"))
        };
        match words.as_slice() {
            [] => {}
            ["quit" | "exit" | "q"] => break,
            ["help" | "?"] => print_commands(),
            [cmd @ ("down" | "up" | "sick" | "heal"), name] => match find(name) {
                None => println!("no node {name}; nodes are node1, node2, node3"),
                Some(i) => {
                    let node = &mut nodes[i];
                    match *cmd {
                        "down" => {
                            node.down();
                            println!(
                                "{} is down: its web and sip ports refuse connections",
                                node.id
                            );
                        }
                        "up" => match node.up().await {
                            Ok(()) => println!("{} is up again", node.id),
                            Err(e) => println!("cannot restart {}: {e}", node.id),
                        },
                        "sick" => {
                            node.sick.store(true, Ordering::Relaxed);
                            println!(
                                "{} answers HTTP 503 on its web page (sip still up)",
                                node.id
                            );
                        }
                        _ => {
                            node.sick.store(false, Ordering::Relaxed);
                            println!("{} serves its web page again", node.id);
                        }
                    }
                    println!(
                        "  watch: dig @{} -p {} app.{ZONE} +short",
                        dns.ip(),
                        dns.port()
                    );
                }
            },
            _ => {
                println!("unknown command: {line}");
                print_commands();
            }
        }
    }
    agent_shutdown.cancel();
    watcher.abort();
    let _ = agent_task.await;
    for n in &mut nodes {
        n.down();
    }
    let _ = std::fs::remove_dir_all(&state_dir);
    if STDOUT_LOST.load(Ordering::Relaxed) {
        return Err("cannot write to standard output (closed); the demo stopped".into());
    }
    Ok(())
}

fn print_intro(nodes: &[SimNode], dns: SocketAddr, dashboard: SocketAddr) {
    let (ip, port) = (dns.ip(), dns.port());
    println!("failoverd demo: a 3-node cluster on loopback, zone {ZONE}\n");
    for n in nodes {
        println!(
            "  {}  {:<11} priority {}  web http://{}:{}/login  sip tcp {}:{}",
            n.id, n.ip, n.priority, n.ip, n.http_port, n.ip, n.tcp_port
        );
    }
    println!(
        "\nDNS answers on {dns} (UDP and TCP). Checks every 2s, retry every 500ms, 2 failures to fall."
    );
    println!(
        "\nDashboard: http://{dashboard}/  (refreshes every 2s; JSON at /api/v1/status, metrics at /metrics)"
    );
    println!("  failoverd status --url http://{dashboard}   # the same picture in the terminal");
    println!("\nTry, in another terminal:");
    println!(
        "  dig @{ip} -p {port} app.{ZONE} +short      # failover: the best node passing web and sip"
    );
    println!("  dig @{ip} -p {port} web.{ZONE} +short      # mode all: every node passing web");
    println!("  dig @{ip} -p {port} {ZONE} NS              # the nameservers, with glue");
    println!("  dig @{ip} -p {port} {ZONE} SOA +short      # the serial grows on every change");
    println!("  dig @{ip} -p {port} nope.{ZONE}            # NXDOMAIN");
    println!("  dig @{ip} -p {port} app.{ZONE} +tcp +short # over TCP");
    println!("  nslookup -port={port} app.{ZONE} {ip}");
    print_commands();
}

fn print_commands() {
    println!("\nCommands: down NODE | up NODE | sick NODE (HTTP 503) | heal NODE | help | quit");
    println!("Example: `down node1`, then dig app.{ZONE} again within a few seconds.\n");
}

/// Prints every answer change, so the failover is visible without dig.
async fn watch_answers(zone: Arc<arc_swap::ArcSwap<Zone>>, shutdown: CancellationToken) {
    let mut last_serial = None;
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let z = zone.load();
        if !z.ready || last_serial == Some(z.serial) {
            continue;
        }
        last_serial = Some(z.serial);
        let mut names: Vec<_> = z
            .names
            .iter()
            .filter(|(n, _)| !n.to_string().starts_with("ns-"))
            .collect();
        names.sort_by_key(|(n, _)| n.to_string());
        let answers: Vec<String> = names
            .iter()
            .filter(|(_, r)| !(r.a.is_empty() && r.aaaa.is_empty()))
            .map(|(n, r)| {
                let ips: Vec<String> =
                    r.a.iter()
                        .chain(&r.aaaa)
                        .filter_map(|rec| rec.data.ip_addr().map(|ip: IpAddr| ip.to_string()))
                        .collect();
                format!(
                    "{} → {}",
                    n.to_string().trim_end_matches('.'),
                    ips.join(", ")
                )
            })
            .collect();
        println!("[serial {}] {}", z.serial, answers.join(" | "));
    }
}
