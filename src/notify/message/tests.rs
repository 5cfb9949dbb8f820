use std::path::Path;

use super::*;
use crate::decide::Decision;
use crate::health::ProbeResult;

const YAML: &str = r#"
zone: ha.example.com
self: node1
dns: { listen: ["127.0.59.100:53"] }
nodes:
  - { id: node1, address: 127.0.59.1, priority: 20 }
  - { id: node2, address: 127.0.59.2, priority: 10 }
checks:
  - { id: web, type: http, url: "http://{address}/login" }
hostnames:
  - { name: ias, checks: [web] }
"#;

fn at(secs: u64) -> SystemTime {
    // 2025-03-04 03:12:44 UTC
    UNIX_EPOCH + Duration::from_secs(1_741_058_000 + secs)
}

fn config() -> Arc<Config> {
    Arc::new(crate::config::parse(Path::new("t.yaml"), YAML).unwrap())
}

fn event(secs: u64, kind: EventKind) -> Arc<Event> {
    Arc::new(Event { at: at(secs), kind })
}

fn failover(secs: u64) -> Arc<Event> {
    event(
        secs,
        EventKind::AnswerChanged {
            hostname: "ias.ha.example.com".into(),
            from_nodes: vec!["node1".into()],
            to_nodes: vec!["node2".into()],
            from: vec!["127.0.59.1".parse().unwrap()],
            to: vec!["127.0.59.2".parse().unwrap()],
            reason: Reason::Healthy,
            cause: vec!["node1 web: HTTP 503".into()],
        },
    )
}

fn web_down(secs: u64, node: &str) -> Arc<Event> {
    event(
        secs,
        EventKind::CheckDown {
            node: node.into(),
            check: "web".into(),
            error: "HTTP 503 (expected 200-399)".into(),
        },
    )
}

/// node1 web down since `at(0)`, node2 up; ias answers node2.
fn status(config: &Arc<Config>) -> Status {
    let mut s = Status::new(config.clone(), 42);
    s.ready = true;
    s.pairs[0].state = State::Down;
    s.pairs[0].since = Some(at(0));
    s.pairs[0].last_result = Some(ProbeResult::fail(
        Duration::from_millis(3),
        "HTTP 503 (expected 200-399)",
    ));
    s.pairs[1].state = State::Up;
    s.pairs[1].since = Some(at(0) - Duration::from_secs(3600));
    s.decisions = vec![Decision {
        nodes: vec![1],
        reason: Reason::Healthy,
    }];
    s
}

#[test]
fn the_subject_of_a_failover_is_the_issue_example() {
    assert_eq!(
        subject("ha.example.com", &[failover(0)]),
        "[failoverd ha.example.com] ias → node2 (node1 web: HTTP 503)"
    );
}

#[test]
fn subjects_of_each_event_kind_fit_on_one_line() {
    let zone = "ha.example.com";
    let up = event(
        0,
        EventKind::CheckUp {
            node: "node1".into(),
            check: "web".into(),
            down_for: Some(Duration::from_millis(130_400)),
        },
    );
    assert_eq!(
        subject(zone, &[up]),
        "[failoverd ha.example.com] node1 web up again after 2m10s"
    );
    assert_eq!(
        subject(zone, &[web_down(0, "node1")]),
        "[failoverd ha.example.com] node1 web down: HTTP 503 (expected 200-399)"
    );
    let failed = event(
        0,
        EventKind::PublishFailed {
            error: "cannot store the SOA serial in /var/lib/failoverd:\npermission denied".into(),
        },
    );
    assert_eq!(
        subject(zone, &[failed]),
        "[failoverd ha.example.com] DNS change not applied: cannot store the SOA serial in /var/lib/failoverd: permission denied"
    );
    let all_down = event(
        0,
        EventKind::AnswerChanged {
            hostname: "ias.ha.example.com".into(),
            from_nodes: vec!["node2".into()],
            to_nodes: vec!["node1".into(), "node2".into()],
            from: vec![],
            to: vec![],
            reason: Reason::AllDownFailOpen,
            cause: vec!["node2 web: timeout after 5s".into()],
        },
    );
    assert_eq!(
        subject(zone, &[all_down]),
        "[failoverd ha.example.com] ias → node1, node2 (all nodes down; node2 web: timeout after 5s)"
    );
    let long = event(
        0,
        EventKind::CheckDown {
            node: "node1".into(),
            check: "web".into(),
            error: "x".repeat(500),
        },
    );
    let s = subject(zone, &[long]);
    assert_eq!(s.chars().count(), MAX_SUBJECT_CHARS);
    assert!(s.ends_with('…'));
}

#[test]
fn a_digest_is_headed_by_the_answer_change_and_lists_every_event_in_order() {
    let config = config();
    let events = vec![web_down(0, "node1"), failover(0), web_down(4, "node2")];
    let mail = compose(&config, &status(&config), &events, at(9));
    assert_eq!(
        mail.subject,
        "[failoverd ha.example.com] ias → node2 (node1 web: HTTP 503) (+2 more)"
    );
    let expected = "\
3 changes between 03:13:20 UTC and 03:13:24 UTC:
  03:13:20 UTC  node1 web DOWN: HTTP 503 (expected 200-399)
  03:13:20 UTC  ias.ha.example.com now answers node2 (127.0.59.2); it answered node1 (127.0.59.1)
            because: node1 web: HTTP 503
  03:13:24 UTC  node2 web DOWN: HTTP 503 (expected 200-399)

When: 2025-03-04 03:13:29 UTC
From: the failoverd agent on node1 (zone ha.example.com, SOA serial 42)

What every hostname answers now:
  ias.ha.example.com  node2 (127.0.59.2)

Every node now:
  node1  priority 20, 127.0.59.1
    web  DOWN     since 03:13:20 UTC (9s)  HTTP 503 (expected 200-399)
  node2  priority 10, 127.0.59.2
    web  UP       since 02:13:20 UTC (1h9s)
";
    assert!(
        mail.body.starts_with(expected),
        "got:\n{}\nwanted:\n{expected}",
        mail.body
    );
    assert!(
        mail.body.contains("\n-- \nfailoverd "),
        "signature separator"
    );
}

#[test]
fn a_single_event_says_what_happened_and_a_fail_open_answer_says_why() {
    let config = config();
    let mut st = status(&config);
    st.decisions = vec![Decision {
        nodes: vec![0, 1],
        reason: Reason::AllDownFailOpen,
    }];
    let mail = compose(&config, &st, &[failover(0)], at(1));
    assert!(
        mail.body
            .starts_with("What happened:\n  03:13:20 UTC  ias.ha.example.com now answers node2")
    );
    assert!(mail.body.contains(
        "  ias.ha.example.com  node1 (127.0.59.1), node2 (127.0.59.2)   [all nodes down: answering with every node (when_all_down: all)]\n"
    ), "{}", mail.body);
}

#[test]
fn webhook_json_is_flat_with_a_chat_text() {
    let config = config();
    let json = webhook_json(&config, &failover(0));
    assert_eq!(
        json,
        serde_json::json!({
            "source": "failoverd",
            "zone": "ha.example.com",
            "agent": "node1",
            "kind": "answer_changed",
            "at": "2025-03-04T03:13:20Z",
            "summary": "ias → node2 (node1 web: HTTP 503)",
            "text": "[failoverd ha.example.com] ias → node2 (node1 web: HTTP 503)",
            "hostname": "ias.ha.example.com",
            "from_nodes": ["node1"],
            "to_nodes": ["node2"],
            "from": ["127.0.59.1"],
            "to": ["127.0.59.2"],
            "reason": "healthy",
            "cause": ["node1 web: HTTP 503"],
        })
    );
    let up = event(
        0,
        EventKind::CheckUp {
            node: "node1".into(),
            check: "web".into(),
            down_for: None,
        },
    );
    let json = webhook_json(&config, &up);
    assert_eq!(json["kind"], "check_up");
    assert_eq!(json["down_for_seconds"], serde_json::Value::Null);
}

#[test]
fn utc_dates_are_right_across_leap_years_and_month_ends() {
    let t = |s: u64| timestamp(UNIX_EPOCH + Duration::from_secs(s));
    assert_eq!(t(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(t(951_782_400), "2000-02-29 00:00:00 UTC");
    assert_eq!(t(1_709_251_199), "2024-02-29 23:59:59 UTC");
    assert_eq!(t(1_735_689_599), "2024-12-31 23:59:59 UTC");
    assert_eq!(
        rfc3339(UNIX_EPOCH + Duration::from_secs(4_102_444_800)),
        "2100-01-01T00:00:00Z"
    );
}
