//! Every file in tests/configs/valid parses, every file in tests/configs/invalid fails with the
//! message its first line announces (`# error: …`), and the example config parses.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/configs")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no files in {}", dir.display());
    files
}

fn valid(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/configs/valid")
        .join(name)
}

/// Loads with the bare file name as the path, so messages are stable across checkouts.
fn load_named(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).unwrap();
    find_self(read_files(parse(
        Path::new(path.file_name().unwrap()),
        &text,
    )?)?)
}

#[test]
fn every_valid_file_parses() {
    for path in files("valid") {
        if let Err(e) = load_named(&path) {
            panic!("{} should be valid:\n{e}", path.display());
        }
    }
}

#[test]
fn every_invalid_file_fails_with_its_message() {
    for path in files("invalid") {
        let text = std::fs::read_to_string(&path).unwrap();
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# error: "))
            .unwrap_or_else(|| {
                panic!(
                    "{} must start with `# error: <expected message>`",
                    path.display()
                )
            });
        match load_named(&path) {
            Ok(_) => panic!("{} should be refused", path.display()),
            Err(e) => {
                let shown = e.to_string();
                assert!(
                    shown.contains(expected),
                    "{}:\nexpected: {expected}\ngot:      {shown}",
                    path.display()
                );
                let top_level_missing = shown.contains("missing field");
                assert!(
                    e.location.is_some() || top_level_missing,
                    "{}: errors name a line: {shown}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn the_example_config_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml");
    let config = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.zone.to_ascii(), "ha.example.com.");
    assert_eq!(config.self_node, Some(0));
}

#[test]
fn defaults_are_the_documented_ones() {
    let config = load_named(&valid("minimal.yaml")).unwrap();
    assert_eq!(
        config.dns.listen,
        ["0.0.0.0:53".parse().unwrap(), "[::]:53".parse().unwrap()]
    );
    assert_eq!(config.dns.ttl, Duration::from_secs(10));
    assert_eq!(config.dashboard.listen, "127.0.0.1:81".parse().unwrap());
    assert_eq!(config.dashboard.refresh, Duration::from_secs(60));
    let t = config.checks[0].timing;
    assert_eq!(
        (t.interval, t.retry_interval, t.timeout, t.fall, t.rise),
        (
            Duration::from_secs(30),
            Duration::from_secs(5),
            Duration::from_secs(5),
            2,
            2
        )
    );
    let CheckKind::Http(h) = &config.checks[0].kind else {
        panic!("http")
    };
    assert_eq!(
        (h.expect_status, h.tls_verify, h.body_limit),
        ((200, 399), true, DEFAULT_BODY_LIMIT)
    );
    let host = &config.hostnames[0];
    assert_eq!(
        (host.mode, host.when_all_down, host.family),
        (Mode::Failover, WhenAllDown::All, Family::Any)
    );
}

#[test]
fn hostnames_may_be_written_fully_qualified_and_checks_keep_their_overrides() {
    let config = load_named(&valid("dual-stack.yaml")).unwrap();
    assert_eq!(config.hostnames[0].name, "portal");
    assert_eq!(
        config.hostnames[0].fqdn.to_ascii(),
        "portal.ha.example.com."
    );
    assert_eq!(config.self_node, Some(1));
    assert_eq!(
        config.nodes[1].probe_address,
        "127.0.0.2".parse::<IpAddr>().unwrap()
    );
    assert_eq!(config.checks[1].timing.interval, Duration::from_secs(5));
    assert_eq!(
        config.checks[1].timing.fall, 3,
        "defaults apply to what a check does not override"
    );
    assert_eq!(config.checks[1].kind.type_name(), "tcp", "telnet is tcp");
    assert_eq!(config.dns.hostmaster.to_ascii(), "dns-admin.example.com.");
}

#[test]
fn errors_show_the_offending_line() {
    let text = "zone: ha.example.com\nnodes:\n  - { id: n1, address: 127.0.0.1 }\nchecks:\n  - { id: web, type: http, url: \"http://{address}/\" }\nhostnames:\n  - { name: app, checks: [nope] }\n";
    let e = parse(Path::new("c.yaml"), text).unwrap_err().to_string();
    assert!(
        e.starts_with("c.yaml:7:27: hostnames[0].checks[0]: unknown check `nope`"),
        "{e}"
    );
    assert!(
        e.contains("7 |   - { name: app, checks: [nope] }") && e.contains('^'),
        "{e}"
    );
}

#[test]
fn a_missing_file_says_so() {
    let e = load(Path::new("/nonexistent/failoverd.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/nonexistent/failoverd.yaml: cannot read the configuration file"),
        "{e}"
    );
}

#[test]
fn an_unset_retry_interval_is_never_slower_than_the_interval() {
    let base = "zone: ha.example.com\nnodes: [{ id: n1, address: 127.0.0.1 }]\nhostnames: [{ name: app, checks: [web] }]\n";
    let retry = |defaults: &str, check: &str| {
        let text = format!(
            "{base}defaults: {{ {defaults} }}\nchecks: [{{ id: web, type: tcp, port: 80{check} }}]\n"
        );
        let config = parse(Path::new("t.yaml"), &text).unwrap_or_else(|e| panic!("{e}"));
        config.checks[0].timing.retry_interval
    };
    let ms = Duration::from_millis;
    // The documented 5 s, unless the interval is shorter.
    assert_eq!(retry("timeout: 500ms", ""), ms(5000));
    assert_eq!(retry("interval: 1s, timeout: 500ms", ""), ms(1000));
    // A check's shorter interval also caps what it inherits from defaults.
    assert_eq!(retry("timeout: 200ms", ", interval: 2s"), ms(2000));
    assert_eq!(
        retry("retry_interval: 4s, timeout: 200ms", ", interval: 300ms"),
        ms(300)
    );
    // Written at the same level, it is taken as written.
    assert_eq!(
        retry("interval: 1s, retry_interval: 3s, timeout: 500ms", ""),
        ms(3000)
    );
    assert_eq!(
        retry("timeout: 200ms", ", interval: 1s, retry_interval: 250ms"),
        ms(250)
    );
}

#[test]
fn an_unset_timeout_follows_the_interval_and_a_retry_may_be_shorter_than_the_timeout() {
    let ms = Duration::from_millis;
    let timing = |name: &str| load_named(&valid(name)).unwrap().checks[0].timing;
    // `defaults: { interval: 1s }` alone: retry and timeout follow the interval.
    let t = timing("interval-only.yaml");
    assert_eq!(
        (t.interval, t.retry_interval, t.timeout),
        (ms(1000), ms(1000), ms(1000))
    );
    // A retry shorter than the timeout is taken as written.
    let t = timing("retry-shorter-than-timeout.yaml");
    assert_eq!((t.retry_interval, t.timeout), (ms(100), ms(300)));

    let base = "zone: ha.example.com\nnodes: [{ id: n1, address: 127.0.0.1 }]\nhostnames: [{ name: app, checks: [web] }]\n";
    let timeout = |defaults: &str, check: &str| {
        let text = format!(
            "{base}defaults: {{ {defaults} }}\nchecks: [{{ id: web, type: tcp, port: 80{check} }}]\n"
        );
        let config = parse(Path::new("t.yaml"), &text).unwrap_or_else(|e| panic!("{e}"));
        config.checks[0].timing.timeout
    };
    // A check's interval caps the timeout it inherits, even one written in defaults.
    assert_eq!(timeout("timeout: 4s", ", interval: 2s"), ms(2000));
    assert_eq!(timeout("", ", interval: 300ms"), ms(300));
    // Not written with an interval at the same level: inherited unchanged.
    assert_eq!(
        timeout("interval: 10s, timeout: 4s", ", retry_interval: 1s"),
        ms(4000)
    );
    // Written at the same level, it is taken as written, up to the interval.
    assert_eq!(timeout("", ", interval: 1s, timeout: 1s"), ms(1000));
    let e = parse(
        Path::new("t.yaml"),
        &format!("{base}checks: [{{ id: web, type: tcp, port: 80, interval: 1s, timeout: 2s }}]\n"),
    )
    .unwrap_err();
    assert_eq!(e.key, "checks[0].timeout");
    assert!(
        e.message.contains("set a longer `checks[0].interval`"),
        "{e}"
    );
}

#[test]
fn every_named_value_reads_back_from_its_word() {
    fn round_trip<T: Copy + PartialEq + std::fmt::Debug>(
        values: &[T],
        names: &[&str],
        as_str: fn(T) -> &'static str,
        from_name: fn(&str) -> Option<T>,
    ) {
        assert_eq!(values.len(), names.len());
        for (&v, &name) in values.iter().zip(names) {
            assert_eq!((as_str(v), from_name(name)), (name, Some(v)));
        }
    }
    round_trip(Mode::VALUES, Mode::NAMES, Mode::as_str, Mode::from_name);
    round_trip(
        WhenAllDown::VALUES,
        WhenAllDown::NAMES,
        WhenAllDown::as_str,
        WhenAllDown::from_name,
    );
    round_trip(
        Family::VALUES,
        Family::NAMES,
        Family::as_str,
        Family::from_name,
    );
    round_trip(
        Quorum::VALUES,
        Quorum::NAMES,
        Quorum::as_str,
        Quorum::from_name,
    );
    round_trip(
        SmtpTls::VALUES,
        SmtpTls::NAMES,
        SmtpTls::as_str,
        SmtpTls::from_name,
    );
    round_trip(
        EventName::VALUES,
        EventName::NAMES,
        EventName::as_str,
        EventName::from_name,
    );
    assert_eq!(Mode::from_name("Failover"), None, "words are lower case");
}

#[test]
fn nodes_rank_by_priority_then_id() {
    let text = "zone: ha.example.com\nnodes:\n  - { id: c, address: 192.0.2.3, priority: 5 }\n  - { id: a, address: 192.0.2.1, priority: 10 }\n  - { id: b, address: 192.0.2.2, priority: 5 }\nchecks: [{ id: web, type: tcp, port: 80 }]\nhostnames: [{ name: app, checks: [web] }]\n";
    let config = parse(Path::new("t.yaml"), text).unwrap();
    assert_eq!(
        config.ranked_nodes(),
        [1, 2, 0],
        "a (10), then b and c (5) by id"
    );
}

#[test]
fn a_witness_is_an_agent_but_no_node() {
    let config = load_named(&valid("two-nodes-and-a-witness.yaml")).unwrap();
    assert_eq!((config.self_node, config.self_witness), (None, Some(0)));
    assert_eq!(config.self_id(), Some("witness1"));
    assert_eq!(config.nodes.len(), 2, "a witness is not a node");
    let peers: Vec<(&str, bool)> = config.peers().iter().map(|a| (a.id, a.witness)).collect();
    assert_eq!(peers, [("node1", false), ("node2", false)]);
    let agents: Vec<&str> = config.agents().iter().map(|a| a.id).collect();
    assert_eq!(agents, ["node1", "node2", "witness1"]);
    let summary = config.summary();
    for line in [
        "this node witness witness1 (from `self`",
        "dns       not served: a witness binds a DNS port only where dns.listen says so",
        "witnesses (1): witness1 at 127.0.185.20:8053",
        "a pair changes state when 2 of the 3 agents agree",
        "nameservers: ns-node1.ha.example.com, ns-node2.ha.example.com\n",
    ] {
        assert!(summary.contains(line), "{line}\n{summary}");
    }
    // A node of the same file pulls from the other node and the witness.
    let text = std::fs::read_to_string(valid("two-nodes-and-a-witness.yaml"))
        .unwrap()
        .replace("self: witness1", "self: node2");
    let node = find_self(parse(Path::new("t.yaml"), &text).unwrap()).unwrap();
    let peers: Vec<(&str, bool)> = node.peers().iter().map(|a| (a.id, a.witness)).collect();
    assert_eq!(peers, [("node1", false), ("witness1", true)]);
    assert!(node.dns.serve, "a node serves DNS");
    assert!(
        node.summary()
            .contains("peers: node1 at 127.0.185.1:8053, witness witness1 at 127.0.185.20:8053"),
        "{}",
        node.summary()
    );
    // Two nodes without a witness: check-config says what that means.
    let alone = text.replace(
        "  witnesses:\n    - { id: witness1, address: 127.0.185.20 }\n",
        "",
    );
    let two = find_self(parse(Path::new("t.yaml"), &alone).unwrap()).unwrap();
    assert!(
        two.summary()
            .contains("witnesses: none; with two nodes a tie counts as down"),
        "{}",
        two.summary()
    );
}
