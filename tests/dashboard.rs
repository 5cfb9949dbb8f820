//! The dashboard of the real `failoverd run` binary, against real backends on 127.0.4x.x: the page
//! as headless Chromium renders it, the JSON API checked against `dig`, `/metrics` through a
//! Prometheus parser, the security guard over a real socket, and `failoverd status`.
//!
//! Address blocks (no other test uses them): 127.0.40.x browser, 127.0.41.x API and metrics,
//! 127.0.42.x `failoverd status`, 127.0.43.x security and bind errors.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::browser::{self, chromium, run_bounded};
use common::{AgentProcess, Backend, binary, dig, dns_addr, free_port, soa_serial, wait_until};
use failoverd::dashboard::view::StatusView;

const ZONE: &str = "ha.example.com";

/// Three nodes (node1 prio 30 > node2 20 > node3 10), fast checks, the dashboard on `dashboard`.
fn config(backends: &[Backend], dns: SocketAddr, dashboard: SocketAddr) -> String {
    let mut yaml = format!(
        "zone: {ZONE}\nself: node1\ndns:\n  listen: [\"{dns}\"]\n  ttl: 5s\n\
         dashboard:\n  listen: \"{dashboard}\"\n  refresh: 1s\n\
         defaults: {{ interval: 300ms, retry_interval: 200ms, timeout: 150ms, fall: 2, rise: 2 }}\nnodes:\n"
    );
    yaml.push_str(&common::nodes_yaml(backends));
    let b = &backends[0];
    yaml.push_str(&format!(
        "checks:\n  - {{ id: web, type: http, url: \"http://{{address}}:{}/login\", expect_body: \"Sign in\" }}\n\
         \x20 - {{ id: sip, type: tcp, port: {}, expect: \"SIP/2.0\" }}\n\
         hostnames:\n  - {{ name: app, checks: [web, sip] }}\n  - {{ name: all, checks: [web], mode: all }}\n\
         \x20 - {{ name: none, checks: [web], when_all_down: none }}\n",
        b.http_port, b.tcp_port
    ));
    yaml
}

/// A loopback address for the dashboard with a free TCP port.
fn dashboard_addr(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), free_port(&[ip]))
}

struct Started {
    backends: Vec<Backend>,
    agent: AgentProcess,
    dns: SocketAddr,
    dashboard: SocketAddr,
}

/// Backends on `prefix`.1-3, DNS and dashboard on `prefix`.100; returns once DNS answers.
fn start(prefix: &str) -> Started {
    let ips: Vec<String> = (1..=3).map(|i| format!("{prefix}.{i}")).collect();
    let ip_refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    let backends = Backend::group(&ip_refs);
    let dns = dns_addr(&format!("{prefix}.100"));
    let dashboard = dashboard_addr(&format!("{prefix}.100"));
    let mut agent = AgentProcess::start(&config(&backends, dns, dashboard), dns);
    agent.wait_ready(&format!("app.{ZONE}"));
    Started {
        backends,
        agent,
        dns,
        dashboard,
    }
}

fn answers(dns: SocketAddr, name: &str) -> Vec<String> {
    dig(dns, &format!("{name}.{ZONE}"), "A", &[]).answers
}

/// One HTTP/1.0 exchange over a real socket (HTTP/1.0: no chunked body to decode).
struct HttpReply {
    status: u16,
    head: String,
    body: String,
}

fn http(addr: SocketAddr, method: &str, path: &str, host: &str) -> HttpReply {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connect to the dashboard on {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: failoverd-test\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the reply");
    let raw = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    HttpReply {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

fn get(addr: SocketAddr, path: &str) -> HttpReply {
    let reply = http(addr, "GET", path, &addr.to_string());
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
    reply
}

fn status_json(addr: SocketAddr) -> StatusView {
    let body = get(addr, "/api/v1/status").body;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("bad JSON ({e}): {body}"))
}

/// The browser window the page is rendered in.
const PAGE_SIZE: &str = "1280,1100";

/// The DOM as Chromium rendered it.
fn rendered_dom(dashboard: SocketAddr) -> String {
    let out = chromium(&format!("http://{dashboard}/"), PAGE_SIZE, "--dump-dom");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The markup of the element starting at `start`, up to `end`.
fn section<'a>(dom: &'a str, start: &str, end: &str) -> &'a str {
    let Some(i) = dom.find(start) else {
        return "";
    };
    let j = dom[i..].find(end).map_or(dom.len(), |j| i + j);
    &dom[i..j]
}

/// Saves a screenshot of the page under target/test-artifacts/ and checks it is a real PNG.
fn screenshot(dashboard: SocketAddr, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    browser::screenshot(&format!("http://{dashboard}/"), PAGE_SIZE, &path, 20_000);
    path
}

#[test]
fn chromium_renders_the_answers_and_states_and_sees_a_failover_after_reload() {
    let Started {
        mut backends,
        agent,
        dns,
        dashboard,
    } = start("127.0.40");
    // The first probe results land a few hundred ms apart; wait for all six pairs.
    wait_until(Duration::from_secs(10), "every pair OK in the API", || {
        status_json(dashboard)
            .checks
            .iter()
            .all(|c| c.state == "OK")
    });

    let dom = rendered_dom(dashboard);
    assert!(dom.contains("<h2>Current DNS</h2>"), "{dom}");
    let app = section(&dom, r#"data-hostname="app.ha.example.com""#, "</tr>");
    assert!(
        app.contains(r#"<span class="ip">127.0.40.1</span>"#),
        "{app}"
    );
    assert!(app.contains("node1 OK on web, sip"), "{app}");
    let all = section(&dom, r#"data-hostname="all.ha.example.com""#, "</tr>");
    for ip in ["127.0.40.1", "127.0.40.2", "127.0.40.3"] {
        assert!(
            all.contains(&format!(r#"<span class="ip">{ip}</span>"#)),
            "{all}"
        );
    }
    assert_eq!(dom.matches(r#"<tr class="pair""#).count(), 6, "{dom}");
    assert_eq!(
        dom.matches(r#"<span class="state ok">OK</span>"#).count(),
        6,
        "{dom}"
    );
    assert!(!dom.contains(">KO<"), "{dom}");
    screenshot(dashboard, "dashboard.png");

    // node1's services die: DNS moves app to node2, and the reloaded page says so and why.
    backends[0].stop();
    wait_until(Duration::from_secs(10), "dig to see app on node2", || {
        answers(dns, "app") == ["127.0.40.2"]
    });
    let mut dom = String::new();
    wait_until(
        Duration::from_secs(90),
        "the page to show the failover",
        || {
            dom = rendered_dom(dashboard);
            let app = section(&dom, r#"data-hostname="app.ha.example.com""#, "</tr>");
            app.contains(r#"<span class="ip">127.0.40.2</span>"#)
                && !app.contains("127.0.40.1")
                && dom.matches(r#"<span class="state ko">KO</span>"#).count() == 2
        },
    );
    let app = section(&dom, r#"data-hostname="app.ha.example.com""#, "</tr>");
    assert!(app.contains("node1 KO on web since "), "{app}");
    assert!(app.contains("connection refused"), "{app}");
    let web1 = section(
        &dom,
        r#"data-node="node1" data-check="web" data-state="KO""#,
        "</tr>",
    );
    assert!(web1.contains("connection refused"), "{web1}");
    let events = section(&dom, r#"<ol class="events">"#, "</ol>");
    assert!(
        events.contains("app.ha.example.com → node2"),
        "the answer change is listed: {events}"
    );
    screenshot(dashboard, "dashboard-failover.png");
    drop(agent);
}

#[test]
fn the_json_api_matches_what_dig_gets_and_metrics_parse() {
    let Started {
        mut backends,
        agent,
        dns,
        dashboard,
    } = start("127.0.41");

    // JSON and DNS from the same agent agree, name by name, and so does the serial.
    let agree = |what: &str| {
        let mut last = String::new();
        wait_until(Duration::from_secs(10), what, || {
            let view = status_json(dashboard);
            let mismatches: Vec<String> = view
                .hostnames
                .iter()
                .filter_map(|h| {
                    let got = dig(dns, &h.name, "A", &[]).answers;
                    (got != h.a).then(|| format!("{}: JSON {:?}, dig {got:?}", h.name, h.a))
                })
                .collect();
            let serial = soa_serial(dns, ZONE);
            last = format!("{mismatches:?}, serial JSON {} dig {serial}", view.serial);
            mismatches.is_empty() && view.serial == serial && view.ready
        });
        eprintln!("{what}: {last}");
        status_json(dashboard)
    };
    let view = agree("JSON and dig to agree");
    assert_eq!(view.zone, ZONE);
    assert_eq!(view.node.as_deref(), Some("node1"));
    assert_eq!(view.hostnames[0].a, ["127.0.41.1"]);
    assert_eq!(view.checks.len(), 6);

    backends[0].stop();
    wait_until(Duration::from_secs(10), "node1 web KO in the API", || {
        status_json(dashboard)
            .checks
            .iter()
            .any(|c| c.node == "node1" && c.check == "web" && c.state == "KO")
    });
    let view = agree("JSON and dig to agree after the failover");
    assert_eq!(view.hostnames[0].a, ["127.0.41.2"]);
    assert_eq!(view.hostnames[0].nodes, ["node2"]);
    assert!(
        view.hostnames[0]
            .why
            .iter()
            .any(|w| w.starts_with("node1 KO on web since ") && w.ends_with("connection refused")),
        "{:?}",
        view.hostnames[0].why
    );
    assert!(view.events.iter().any(|e| e.kind == "answer_changed"));

    // /metrics: a Prometheus parser reads it, and it says the same as DNS.
    let reply = get(dashboard, "/metrics");
    assert!(
        reply
            .head
            .contains("content-type: application/openmetrics-text"),
        "{}",
        reply.head
    );
    let text = reply.body;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("a valid exposition");
    let value = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                ref other => panic!("{name}: {other:?}"),
            })
    };
    assert_eq!(value("failoverd_ready", &[]), Some(1.0), "{text}");
    assert_eq!(
        value("failoverd_check_up", &[("node", "node1"), ("check", "web")]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value("failoverd_check_up", &[("node", "node2"), ("check", "web")]),
        Some(1.0),
        "{text}"
    );
    // Lifetime counts of probe results: node1's web server is down (connection refused).
    assert!(
        value(
            "failoverd_check_probes_total",
            &[("node", "node1"), ("check", "web"), ("result", "fail")]
        )
        .is_some_and(|v| v >= 2.0),
        "{text}"
    );
    assert!(
        value(
            "failoverd_check_probes_total",
            &[("node", "node2"), ("check", "web"), ("result", "pass")]
        )
        .is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert_eq!(
        value(
            "failoverd_hostname_answer",
            &[
                ("hostname", "app.ha.example.com"),
                ("addresses", "127.0.41.2")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        value(
            "failoverd_hostname_answer_changes_total",
            &[("hostname", "app.ha.example.com")]
        )
        .is_some_and(|v| v >= 1.0),
        "{text}"
    );
    // Responses are counted by code: exactly the NXDOMAINs asked for here, and the NOERRORs above.
    assert!(
        value("failoverd_dns_responses_total", &[("rcode", "NOERROR")]).is_some_and(|v| v >= 4.0),
        "{text}"
    );
    assert_eq!(
        value("failoverd_dns_responses_total", &[("rcode", "NXDOMAIN")]),
        None
    );
    for _ in 0..3 {
        assert_eq!(
            dig(dns, &format!("nope.{ZONE}"), "A", &[]).status,
            "NXDOMAIN"
        );
    }
    let text = get(dashboard, "/metrics").body;
    assert!(
        text.contains("failoverd_dns_responses_total{rcode=\"NXDOMAIN\"} 3\n"),
        "{text}"
    );
    // The serial gauge says what DNS serves. The zone may change between the scrape and the
    // query (a new serial), so they are read again until they agree, within a deadline.
    wait_until(
        Duration::from_secs(5),
        "the serial gauge to match the SOA",
        || {
            let text = get(dashboard, "/metrics").body;
            let gauge = text
                .lines()
                .find_map(|l| l.strip_prefix("failoverd_soa_serial "))
                .and_then(|v| v.trim().parse::<f64>().ok());
            gauge == Some(soa_serial(dns, ZONE) as f64)
        },
    );
    drop(agent);
}

#[test]
fn the_real_server_refuses_foreign_hosts_and_answers_404_405_with_headers() {
    let Started {
        backends,
        agent,
        dashboard,
        ..
    } = start("127.0.43");
    let host = dashboard.to_string();

    let ok = http(
        dashboard,
        "GET",
        "/",
        &format!("localhost:{}", dashboard.port()),
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    for header in [
        "content-security-policy: default-src 'none'",
        "x-frame-options: deny",
        "x-content-type-options: nosniff",
    ] {
        assert!(ok.head.contains(header), "{header} in {}", ok.head);
    }
    // DNS rebinding: a page from another name, re-pointed at 127.0.0.1, carries its own Host.
    for foreign in ["evil.example", "evil.example:80", "192.0.2.1"] {
        for path in ["/", "/api/v1/status", "/metrics"] {
            let reply = http(dashboard, "GET", path, foreign);
            assert_eq!(reply.status, 403, "Host {foreign} {path}: {}", reply.body);
            assert!(!reply.body.contains(ZONE), "nothing leaks: {}", reply.body);
        }
    }
    assert_eq!(http(dashboard, "GET", "/nope", &host).status, 404);
    let post = http(dashboard, "POST", "/api/v1/status", &host);
    assert_eq!(post.status, 405);
    assert!(post.head.contains("allow: get,head"), "{}", post.head);
    drop((agent, backends));
}

#[test]
fn a_taken_dashboard_address_stops_the_start_with_a_clear_message() {
    let ips = ["127.0.43.11", "127.0.43.12"];
    let backends = Backend::group(&ips);
    let dns = dns_addr("127.0.43.110");
    let taken = std::net::TcpListener::bind("127.0.43.110:0").unwrap();
    let dashboard = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, config(&backends, dns, dashboard)).unwrap();
    let out = run_bounded(
        common::command("run", &config_path)
            .arg("--state-dir")
            .arg(dir.path().join("state")),
        Duration::from_secs(20),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen for the dashboard on {dashboard}"))
            && stderr.contains("dashboard.listen"),
        "{stderr}"
    );
    drop(taken);
}

#[test]
fn failoverd_status_prints_the_tables_and_fails_clearly_without_an_agent() {
    let Started {
        mut backends,
        mut agent,
        dns,
        dashboard,
    } = start("127.0.42");
    backends[1].stop();
    wait_until(Duration::from_secs(10), "node2 web KO in the API", || {
        status_json(dashboard)
            .checks
            .iter()
            .any(|c| c.node == "node2" && c.check == "web" && c.state == "KO")
    });

    let config_path = agent.config_path.clone();
    let status = |extra: &[&str]| {
        run_bounded(
            common::command("status", &config_path).args(extra),
            Duration::from_secs(20),
        )
    };
    let out = status(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{stdout}");
    assert!(
        stdout.contains(&format!("zone {ZONE} · node node1")),
        "{stdout}"
    );
    let line = |start: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(start))
            .unwrap_or_else(|| panic!("no line starting with {start:?} in\n{stdout}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        line("app.ha.example.com")[..5],
        [
            "app.ha.example.com",
            "127.0.42.1",
            "node1",
            "failover",
            "healthy"
        ]
    );
    assert_eq!(
        line("all.ha.example.com")[..5],
        [
            "all.ha.example.com",
            "127.0.42.1",
            "127.0.42.3",
            "node1,node3",
            "all"
        ]
    );
    let web2 = stdout
        .lines()
        .find(|l| l.contains("node2") && l.contains(" web "))
        .unwrap_or_else(|| panic!("no node2 web row in\n{stdout}"));
    assert!(
        web2.contains(" KO ") && web2.contains("connection refused"),
        "{web2}"
    );
    assert!(stdout.contains("RECENT EVENTS"), "{stdout}");
    assert!(
        stdout.contains("node2 web down: connection refused"),
        "{stdout}"
    );

    // --json is the API's document, --url bypasses the config.
    let out = status(&["--json"]);
    let view: StatusView = serde_json::from_slice(&out.stdout).expect("--json prints the API JSON");
    assert_eq!(view.hostnames[0].a, answers(dns, "app"));
    let out = run_bounded(
        Command::new(binary()).args(["status", "--url", &format!("http://{dashboard}")]),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(0));
    // Its reader gone (`| head -0`), status says so and exits 1 instead of panicking.
    for json in [false, true] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut command = Command::new(binary());
        command.args(["status", "--url", &format!("http://{dashboard}")]);
        if json {
            command.arg("--json");
        }
        let child = command
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(command);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(
            stderr.trim(),
            "error: cannot write to standard output: Broken pipe (os error 32)"
        );
    }

    // The agent stops cleanly (dashboard included), and then status says nobody answers.
    assert_eq!(agent.terminate(), Some(0), "{}", agent.log_text());
    let out = status(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim(),
        format!(
            "error: no agent answering on {dashboard}: connection refused — is failoverd running?"
        )
    );
    // A config that cannot be read is a usage error (2), not "not running".
    let out = run_bounded(
        Command::new(binary()).args(["status", "--config", "/nonexistent/failoverd.yaml"]),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(2));
}
