//! The history of the real `failoverd run` binary against real backends: a node flaps (down,
//! then up), `/api/v1/history` shows both transitions and the hostname's answer moving away
//! and back, a restart on the same state directory keeps it, `failoverd status --history`
//! prints it, and headless Chromium renders the SVG timeline (screenshot in docs/).
//!
//! Address blocks (no other test uses them): 127.0.47.x API, restart and CLI; 127.0.48.x browser.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::browser::{self, chromium};
use common::{AgentProcess, Backend, binary, dns_addr, free_port, wait_until};
use failoverd::dashboard::history::view::HistoryView;

const ZONE: &str = "ha.example.com";

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
         hostnames:\n  - {{ name: app, checks: [web] }}\n  - {{ name: all, checks: [web], mode: all }}\n",
        b.http_port
    ));
    yaml
}

/// One GET over a real socket (HTTP/1.0, so the body is not chunked); status and body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

fn history(dashboard: SocketAddr, query: &str) -> HistoryView {
    let (status, body) = get(dashboard, &format!("/api/v1/history{query}"));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn pair<'a>(
    view: &'a HistoryView,
    node: &str,
) -> &'a failoverd::dashboard::history::view::PairHistory {
    view.pairs
        .iter()
        .find(|p| p.node == node && p.check == "web")
        .unwrap()
}

fn host<'a>(
    view: &'a HistoryView,
    name: &str,
) -> &'a failoverd::dashboard::history::view::HostnameHistory {
    let fqdn = format!("{name}.{ZONE}");
    view.hostnames.iter().find(|h| h.name == fqdn).unwrap()
}

/// The node sets `app` answered, in order, as the history lists them.
fn answers(view: &HistoryView) -> Vec<String> {
    host(view, "app")
        .changes
        .iter()
        .map(|c| match &c.nodes {
            Some(n) => n.join(","),
            None => "UNKNOWN".into(),
        })
        .collect()
}

/// The states of `node`'s web check, in order; PENDING (the agent started, no result yet)
/// left out, as it comes or not depending on when the first result arrives.
fn states(view: &HistoryView, node: &str) -> Vec<String> {
    pair(view, node)
        .changes
        .iter()
        .map(|c| c.state.clone())
        .filter(|s| s != "PENDING")
        .collect()
}

/// Starts backends on `prefix`.1-3 and the agent; flaps node1 (down, then up) and waits until
/// the history has seen both; returns the running agent.
fn start_and_flap(prefix: &str) -> (Vec<Backend>, AgentProcess, SocketAddr, SocketAddr, String) {
    let ips: Vec<String> = (1..=3).map(|i| format!("{prefix}.{i}")).collect();
    let ip_refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    let mut backends = Backend::group(&ip_refs);
    let dns = dns_addr(&format!("{prefix}.100"));
    let ip = format!("{prefix}.100");
    let dashboard = SocketAddr::new(ip.parse().unwrap(), free_port(&[&ip]));
    let yaml = config(&backends, dns, dashboard);
    let mut agent = AgentProcess::start(&yaml, dns);
    agent.wait_ready(&format!("app.{ZONE}"));
    wait_until(
        Duration::from_secs(10),
        "app answered by node1 in the history",
        || answers(&history(dashboard, "")) == ["node1"],
    );

    backends[0].stop();
    wait_until(
        Duration::from_secs(10),
        "node1 web KO in the history",
        || {
            states(&history(dashboard, ""), "node1")
                .last()
                .map(String::as_str)
                == Some("KO")
        },
    );
    backends[0].resume();
    wait_until(
        Duration::from_secs(10),
        "node1 web OK again in the history",
        || states(&history(dashboard, ""), "node1") == ["OK", "KO", "OK"],
    );
    wait_until(
        Duration::from_secs(10),
        "app back on node1 in the history",
        || answers(&history(dashboard, "")) == ["node1", "node2", "node1"],
    );
    (backends, agent, dns, dashboard, yaml)
}

#[test]
fn a_flap_is_in_the_history_across_a_restart_and_in_status_history() {
    let (_backends, agent, dns, dashboard, yaml) = start_and_flap("127.0.47");
    let view = history(dashboard, "");
    let node1 = pair(&view, "node1");
    assert_eq!(node1.transitions, 2, "{node1:?}");
    assert_eq!(node1.state, "OK");
    let availability = node1.availability_percent.unwrap();
    assert!(
        availability > 0.0 && availability < 100.0,
        "node1 was down a while: {availability}"
    );
    assert_eq!(pair(&view, "node2").transitions, 0);
    assert_eq!(pair(&view, "node2").availability_percent, Some(100.0));
    let app = host(&view, "app");
    assert_eq!(app.transitions, 2, "{app:?}");
    assert_eq!(
        app.availability_percent,
        Some(100.0),
        "node2 answered meanwhile"
    );
    assert_eq!(
        host(&view, "all").changes.last().unwrap().nodes,
        Some(vec!["node1".into(), "node2".into(), "node3".into()])
    );
    // Times are RFC 3339 UTC, and ?since= keeps only what came after.
    let down_at = node1
        .changes
        .iter()
        .find(|c| c.state == "KO")
        .unwrap()
        .at
        .clone();
    assert!(down_at.ends_with('Z'), "{down_at}");
    let after = history(dashboard, &format!("?since={down_at}"));
    assert_eq!(
        states(&after, "node1"),
        ["KO", "OK"],
        "the fall and the recovery"
    );
    assert_eq!(pair(&after, "node1").state_at_from, "KO");
    assert_eq!(pair(&after, "node1").transitions, 1, "the recovery");
    assert_eq!(pair(&after, "node2").changes, []);
    let (status, body) = get(dashboard, "/api/v1/history?since=yesterday");
    assert_eq!(status, 400);
    assert!(body.contains("RFC 3339"), "{body}");

    // Restart on the same state directory: the flap is still there, then UNKNOWN for the
    // time the agent was stopped, then the state measured again.
    let (dir, state_dir) = agent.stop_keep_state();
    assert!(state_dir.join("history.json").is_file());
    let mut agent = AgentProcess::start_in(dir, state_dir, &yaml, dns);
    agent.wait_ready(&format!("app.{ZONE}"));
    wait_until(
        Duration::from_secs(10),
        "the history after the restart",
        || {
            let view = history(dashboard, "");
            let node1 = states(&view, "node1");
            node1.starts_with(&["OK".into(), "KO".into(), "OK".into(), "UNKNOWN".into()])
                && node1.last().map(String::as_str) == Some("OK")
                && answers(&view).starts_with(&["node1".into(), "node2".into(), "node1".into()])
                && answers(&view).last().map(String::as_str) == Some("node1")
        },
    );
    let view = history(dashboard, "");
    assert_eq!(
        pair(&view, "node1").transitions,
        2,
        "a restart is no transition"
    );

    // The terminal table.
    let out = Command::new(binary())
        .args(["status", "--history", "--config"])
        .arg(&agent.config_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |series: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(series))
            .unwrap_or_else(|| panic!("no row {series:?} in:\n{text}"))
            .to_string()
    };
    assert!(
        text.contains("SERIES") && text.contains("AVAILABILITY"),
        "{text}"
    );
    let row = line("node1 web");
    assert!(
        row.contains(" KO") && row.contains(" OK") && row.contains('%'),
        "{row}"
    );
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[3], "2", "transitions column: {row}");
    let app = line(&format!("app.{ZONE}"));
    assert!(app.contains("node2"), "{app}");
    let json = Command::new(binary())
        .args(["status", "--history", "--json", "--config"])
        .arg(&agent.config_path)
        .output()
        .unwrap();
    let parsed: HistoryView = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(pair(&parsed, "node1").transitions, 2);
}

// --- the browser ------------------------------------------------------------------------------

/// A screenshot of the history section into docs/ (committed, shown in the README).
fn screenshot(dashboard: SocketAddr, size: &str, name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name);
    browser::screenshot(&format!("http://{dashboard}/history"), size, &path, 15_000);
}

#[test]
fn chromium_renders_the_timeline_after_a_flap() {
    let (_backends, _agent, _, dashboard, _) = start_and_flap("127.0.48");
    let out = chromium(&format!("http://{dashboard}/"), "1280,1100", "--dump-dom");
    let dom = String::from_utf8_lossy(&out.stdout);
    let start = dom
        .find("<section id=\"history\"")
        .expect("a history section");
    let section = &dom[start..start + dom[start..].find("</section>").unwrap()];
    let row = |series: &str| {
        let i = section
            .find(&format!("data-series=\"{series}\""))
            .unwrap_or_else(|| panic!("no row {series} in {section}"));
        &section[i..i + section[i..].find("</li>").unwrap()]
    };
    let node1 = row("pair:node1/web");
    assert!(node1.contains("<svg class=\"timeline\""), "{node1}");
    assert!(node1.contains("viewBox=\"0 0 1440 10\""), "{node1}");
    assert!(
        node1.contains("<rect class=\"ko\""),
        "the KO piece: {node1}"
    );
    assert!(node1.contains("<rect class=\"ok\""), "{node1}");
    assert!(node1.contains("2 transitions"), "{node1}");
    assert!(node1.contains('%'), "{node1}");
    let app = row(&format!("hostname:app.{ZONE}"));
    // node1 is n0, node2 n1: both answered.
    assert!(
        app.contains("<rect class=\"n0\"") && app.contains("<rect class=\"n1\""),
        "{app}"
    );
    assert!(
        app.contains("100 %") && app.contains("2 transitions"),
        "{app}"
    );
    // No style attribute anywhere in the section (the CSP forbids inline styles).
    assert!(!section.contains("style="), "{section}");

    screenshot(dashboard, "1100,900", "history.png");
    screenshot(dashboard, "390,1100", "history-phone.png");
}
