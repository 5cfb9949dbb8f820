//! Router tests without a socket: every route and status code, the security guard, and the
//! content of the page, the JSON and the metrics for a known state.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use tokio::sync::broadcast;
use tower::ServiceExt;

use super::view::StatusView;
use super::{DashboardState, Peer, router};
use crate::config::{self, Config};
use crate::decide::decide;
use crate::dns::{Answers, zone};
use crate::events::{Event, EventKind};
use crate::health::ProbeResult;
use crate::published::Published;
use crate::snapshot::Snapshot;
use crate::status::Status;

/// A secret that appears in the configuration and must appear in no answer.
const SECRET: &str = "Bearer do-not-show-9f2c";

fn config() -> Config {
    config::parse(
        Path::new("test.yaml"),
        &format!(
            r#"
zone: ha.example.com
self: node1
dns: {{ listen: ["127.0.40.100:0"] }}
dashboard: {{ listen: "127.0.40.100:0", refresh: 7s }}
nodes:
  - {{ id: node1, address: 127.0.40.1, priority: 30 }}
  - {{ id: node2, addresses: [127.0.40.2, "::1"], priority: 20 }}
checks:
  - id: web
    type: http
    url: "http://{{address}}:8080/login"
    headers: {{ Authorization: "{SECRET}" }}
  - {{ id: sip, type: tcp, port: 5060 }}
hostnames:
  - {{ name: app, checks: [web, sip] }}
  - {{ name: all, checks: [web], mode: all, when_all_down: none }}
"#
        ),
    )
    .expect("test config is valid")
}

/// node1's web check is KO (HTTP 503) since a fixed time, everything else is OK.
fn published(ready: bool) -> Published {
    let config = Arc::new(config());
    let t0 = SystemTime::now() - Duration::from_secs(300);
    let mut status = Status::new(config.clone(), 42);
    if ready {
        for p in 0..config.pair_count() {
            let (n, c) = config.pair(p);
            let result = if (n, c) == (0, 0) {
                ProbeResult::fail(Duration::from_micros(2500), "HTTP 503")
            } else {
                ProbeResult::pass(Duration::from_micros(1200))
            };
            status.pairs[p].observe(result, 2, 2, t0);
        }
        // Without a cluster the decided state is the agent's own.
        for p in 0..config.pair_count() {
            status.effective[p] = crate::status::Effective {
                state: status.pairs[p].state,
                since: status.pairs[p].since,
                votes: Vec::new(),
            };
        }
        let up: Vec<bool> = status.pairs.iter().map(|p| p.is_up()).collect();
        status.decisions = decide(&config, &up, &[], &crate::overrides::Active::none(&config));
        status.ready = true;
        status.events = VecDeque::from([
            Arc::new(Event {
                at: t0,
                kind: EventKind::CheckDown {
                    node: "node1".into(),
                    check: "web".into(),
                    error: "HTTP 503".into(),
                },
            }),
            Arc::new(Event {
                at: t0 + Duration::from_secs(1),
                kind: EventKind::AnswerChanged {
                    hostname: "app.ha.example.com".into(),
                    from_nodes: vec!["node1".into()],
                    to_nodes: vec!["node2".into()],
                    from: vec!["127.0.40.1".parse().unwrap()],
                    to: vec!["127.0.40.2".parse().unwrap()],
                    reason: crate::decide::Reason::Healthy,
                    cause: vec!["node1 web: HTTP 503".into()],
                },
            }),
        ]);
    }
    let zone = if ready {
        zone::build(&config, &status.decisions, status.serial)
    } else {
        crate::dns::Zone::not_ready(&config, status.serial, &[])
    };
    Published {
        snapshot: Arc::new(ArcSwap::from_pointee(Snapshot::new(
            Arc::new(Answers::new(zone)),
            status,
        ))),
        events: broadcast::channel(16).0,
        dns_queries: Arc::default(),
        notifications: Arc::default(),
        publishing: Arc::default(),
        secondaries: Arc::default(),
        commands: tokio::sync::mpsc::channel(1).0,
        pull_now: Arc::default(),
        push_now: Arc::default(),
        pushes: Arc::default(),
        history: Arc::default(),
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:50000".parse().unwrap()
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send(
    published: &Published,
    method: Method,
    path: &str,
    host: Option<&str>,
    peer: Option<SocketAddr>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(host) = host {
        request = request.header(header::HOST, host);
    }
    if let Some(peer) = peer {
        request = request.extension(ConnectInfo(Peer(peer)));
    }
    let response = router(DashboardState::new(published.clone()))
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .expect("the router never fails");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 4 << 20)
        .await
        .unwrap();
    Reply {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn get(published: &Published, path: &str) -> Reply {
    send(
        published,
        Method::GET,
        path,
        Some("127.0.0.1:81"),
        Some(loopback()),
    )
    .await
}

fn assert_security_headers(reply: &Reply, what: &str) {
    let h = |name: header::HeaderName| {
        reply
            .headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{what}: no {name} header"))
            .to_string()
    };
    let csp = h(header::CONTENT_SECURITY_POLICY);
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert!(
        !csp.contains("script-src"),
        "{what}: scripts stay denied: {csp}"
    );
    assert_eq!(h(header::X_FRAME_OPTIONS), "DENY", "{what}");
    assert_eq!(h(header::X_CONTENT_TYPE_OPTIONS), "nosniff", "{what}");
    assert_eq!(h(header::CACHE_CONTROL), "no-store", "{what}");
}

#[tokio::test]
async fn every_route_answers_200_with_its_type_and_the_security_headers() {
    let p = published(true);
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/api/v1/status", "application/json"),
        (
            "/metrics",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        ("/static/dashboard.css", "text/css; charset=utf-8"),
    ] {
        let reply = get(&p, path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
        assert_eq!(reply.headers[header::CONTENT_TYPE], content_type, "{path}");
        assert!(!reply.body.is_empty(), "{path}");
        assert_security_headers(&reply, path);
    }
    // HEAD is answered like GET, without a body.
    let head = send(&p, Method::HEAD, "/", Some("localhost"), Some(loopback())).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn the_page_shows_answers_reasons_rows_and_events() {
    let reply = get(&published(true), "/").await;
    let html = reply.body;
    assert!(
        html.contains(r#"<meta http-equiv="refresh" content="7">"#),
        "refresh from dashboard.refresh"
    );
    assert!(!html.contains("<script"), "no JavaScript");
    assert!(
        !html.contains("<style"),
        "CSS from /static, allowed by the CSP"
    );
    assert!(html.contains(r#"href="/static/dashboard.css""#));
    // Zone, node, serial, version.
    assert!(html.contains("ha.example.com"));
    assert!(html.contains(r#"<dd id="node">node1</dd>"#));
    assert!(html.contains(r#"<dd id="serial">42</dd>"#));
    assert!(html.contains(env!("CARGO_PKG_VERSION")));
    // Current DNS: app failed over to node2 (A and AAAA), with the reason spelled out.
    let app = section(&html, r#"data-hostname="app.ha.example.com""#, "</tr>");
    assert!(
        app.contains(r#"<span class="ip">127.0.40.2</span>"#),
        "{app}"
    );
    assert!(app.contains(r#"<span class="ip">::1</span>"#), "{app}");
    assert!(!app.contains("127.0.40.1"), "{app}");
    assert!(app.contains("node1 KO on web since "), "{app}");
    assert!(app.contains(" — HTTP 503"), "{app}");
    // One row per (node, check), with text and a colour class for the state.
    assert_eq!(html.matches(r#"<tr class="pair""#).count(), 4);
    let ko = section(
        &html,
        r#"data-node="node1" data-check="web" data-state="KO""#,
        "</tr>",
    );
    assert!(ko.contains(r#"<span class="state ko">KO</span>"#), "{ko}");
    assert!(ko.contains("HTTP 503"), "{ko}");
    assert!(ko.contains("2.5 ms"), "{ko}");
    assert!(ko.contains("0 / 1"), "passes / failures: {ko}");
    assert!(ko.contains("rise 2 · fall 2"), "{ko}");
    assert!(ko.contains("app, all"), "hostnames fed by the pair: {ko}");
    let ok = section(
        &html,
        r#"data-node="node2" data-check="sip" data-state="OK""#,
        "</tr>",
    );
    assert!(ok.contains(r#"<span class="state ok">OK</span>"#), "{ok}");
    assert!(ok.contains("tcp"), "{ok}");
    // Recent events, newest first.
    let events = section(&html, r#"<ol class="events">"#, "</ol>");
    let changed = events.find("app.ha.example.com → node2").expect(events);
    let down = events.find("node1 web down: HTTP 503").expect(events);
    assert!(changed < down, "newest first: {events}");
}

#[tokio::test]
async fn the_page_escapes_what_it_shows() {
    let p = published(true);
    let current = p.snapshot.load_full();
    let mut status = current.status.clone();
    status.pairs[0].last_result = Some(ProbeResult::fail(
        Duration::ZERO,
        "<img src=x onerror=alert(1)>",
    ));
    p.snapshot
        .store(Arc::new(Snapshot::new(current.answers.clone(), status)));
    let html = get(&p, "/").await.body;
    assert!(!html.contains("<img src=x"), "error text is escaped");
    assert!(html.contains("&#60;img src=x") || html.contains("&lt;img src=x"));
}

#[tokio::test]
async fn a_fresh_agent_says_it_is_not_ready() {
    let p = published(false);
    let html = get(&p, "/").await.body;
    assert!(html.contains(r#"id="not-ready""#));
    assert_eq!(
        html.matches(r#"<span class="state pending">PENDING</span>"#)
            .count(),
        4
    );
    let view: StatusView = serde_json::from_str(&get(&p, "/api/v1/status").await.body).unwrap();
    assert!(!view.ready);
    assert!(
        view.hostnames
            .iter()
            .all(|h| h.reason == "not_ready" && h.a.is_empty())
    );
}

#[tokio::test]
async fn the_api_is_the_same_picture_as_json() {
    let reply = get(&published(true), "/api/v1/status").await;
    let view: StatusView = serde_json::from_str(&reply.body).expect("valid JSON");
    assert_eq!(view.zone, "ha.example.com");
    assert_eq!(view.node.as_deref(), Some("node1"));
    assert_eq!(
        (view.ready, view.serial, view.refresh_seconds),
        (true, 42, 7)
    );
    let app = &view.hostnames[0];
    assert_eq!(app.name, "app.ha.example.com");
    assert_eq!(
        (app.nodes.as_slice(), app.a.as_slice(), app.aaaa.as_slice()),
        (
            ["node2".to_string()].as_slice(),
            ["127.0.40.2".to_string()].as_slice(),
            ["::1".to_string()].as_slice()
        )
    );
    assert_eq!(app.reason, "healthy");
    assert!(
        app.why[0].starts_with("node1 KO on web since "),
        "{:?}",
        app.why
    );
    assert!(app.why[0].ends_with(" — HTTP 503"), "{:?}", app.why);
    assert_eq!(
        app.why[1],
        "node2 OK on web, sip (priority 20: the best node passing)"
    );
    let all = &view.hostnames[1];
    assert_eq!(
        (all.mode.as_str(), all.when_all_down.as_str()),
        ("all", "none")
    );
    assert_eq!(all.nodes, ["node2"]);
    // Rows: best node first, checks in config order.
    let rows: Vec<(&str, &str, &str)> = view
        .checks
        .iter()
        .map(|c| (c.node.as_str(), c.check.as_str(), c.state.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            ("node1", "web", "KO"),
            ("node1", "sip", "OK"),
            ("node2", "web", "OK"),
            ("node2", "sip", "OK")
        ]
    );
    let web1 = &view.checks[0];
    assert_eq!(web1.kind, "http");
    assert_eq!(web1.error.as_deref(), Some("HTTP 503"));
    assert_eq!(web1.latency_ms, Some(2.5));
    assert_eq!(
        (web1.passes, web1.failures, web1.rise, web1.fall),
        (0, 1, 2, 2)
    );
    assert!(web1.since.as_deref().is_some_and(|s| s.ends_with('Z')));
    assert_eq!(view.events[0].kind, "answer_changed");
    assert_eq!(view.events[1].kind, "check_down");
    // Stable field names: the API is documented with these.
    let raw: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    for key in [
        "version",
        "zone",
        "node",
        "ready",
        "serial",
        "started_at",
        "uptime_seconds",
        "hostnames",
        "checks",
        "events",
    ] {
        assert!(raw.get(key).is_some(), "missing {key}");
    }
    assert_eq!(raw["checks"][0]["type"], "http");
}

#[tokio::test]
async fn metrics_pass_a_prometheus_parser_and_carry_the_state() {
    let p = published(true);
    p.dns_queries
        .record(hickory_proto::op::ResponseCode::NoError);
    p.dns_queries
        .record(hickory_proto::op::ResponseCode::NoError);
    p.dns_queries
        .record(hickory_proto::op::ResponseCode::NXDomain);
    let state = DashboardState::new(p.clone());
    // Events reach the counters through the broadcast channel, as in the agent.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let counting = tokio::spawn(
        state
            .metrics
            .clone()
            .count_events(p.events.subscribe(), shutdown.clone()),
    );
    for _ in 0..3 {
        p.events
            .send(Arc::new(Event::now(EventKind::AnswerChanged {
                hostname: "app.ha.example.com".into(),
                from_nodes: vec![],
                to_nodes: vec![],
                from: vec![],
                to: vec![],
                reason: crate::decide::Reason::Healthy,
                cause: vec![],
            })))
            .unwrap();
    }
    let text = loop_until_metrics(
        &state,
        "failoverd_hostname_answer_changes_total{hostname=\"app.ha.example.com\"} 3",
    )
    .await;
    shutdown.cancel();
    counting.await.unwrap();

    assert!(text.ends_with("# EOF\n"));
    assert!(!text.contains("{}"), "no empty label sets: {text}");
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition");
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"));
        match sample.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: unexpected {other:?}"),
        }
    };
    let web1 = [("node", "node1"), ("check", "web")];
    let sip2 = [("node", "node2"), ("check", "sip")];
    assert_eq!(value("failoverd_ready", &[]), 1.0);
    assert_eq!(value("failoverd_soa_serial", &[]), 42.0);
    assert_eq!(value("failoverd_check_up", &web1), 0.0);
    assert_eq!(value("failoverd_check_up", &sip2), 1.0);
    assert_eq!(value("failoverd_check_latency_seconds", &web1), 0.0025);
    assert_eq!(value("failoverd_check_consecutive_failures", &web1), 1.0);
    assert_eq!(value("failoverd_check_consecutive_passes", &sip2), 1.0);
    assert_eq!(
        value(
            "failoverd_hostname_answer",
            &[
                ("hostname", "app.ha.example.com"),
                ("nodes", "node2"),
                ("addresses", "127.0.40.2 ::1"),
                ("reason", "healthy"),
            ]
        ),
        1.0
    );
    assert_eq!(
        value(
            "failoverd_hostname_answer_addresses",
            &[("hostname", "all.ha.example.com")]
        ),
        2.0
    );
    assert_eq!(
        value(
            "failoverd_hostname_answer_changes_total",
            &[("hostname", "app.ha.example.com")]
        ),
        3.0
    );
    assert_eq!(
        value("failoverd_dns_responses_total", &[("rcode", "NOERROR")]),
        2.0
    );
    assert_eq!(
        value("failoverd_dns_responses_total", &[("rcode", "NXDOMAIN")]),
        1.0
    );
    assert_eq!(value("failoverd_notifications_sent_total", &[]), 0.0);
    assert_eq!(value("failoverd_notifications_failed_total", &[]), 0.0);
    assert_eq!(
        value(
            "failoverd_build_info",
            &[("node", "node1"), ("zone", "ha.example.com")]
        ),
        1.0
    );
}

/// Scrapes until `needle` shows up (the event counter runs on another task); bounded.
async fn loop_until_metrics(state: &DashboardState, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = state.metrics.encode().unwrap();
        if text.contains(needle) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {needle} in\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_peer_that_is_not_loopback_gets_403_everywhere() {
    let p = published(true);
    for path in [
        "/",
        "/api/v1/status",
        "/metrics",
        "/static/dashboard.css",
        "/nope",
    ] {
        for peer in [
            "192.0.2.7:40000",
            "[2001:db8::7]:40000",
            "[::ffff:192.0.2.7]:1",
        ] {
            let reply = send(
                &p,
                Method::GET,
                path,
                Some("127.0.0.1:81"),
                Some(peer.parse().unwrap()),
            )
            .await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path} from {peer}");
            assert!(reply.body.contains("loopback"), "{}", reply.body);
            assert!(!reply.body.contains("ha.example.com"), "nothing leaks");
            assert_security_headers(&reply, path);
        }
    }
    // No connection info at all: refused, not guessed.
    let reply = send(&p, Method::GET, "/", Some("localhost"), None).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    // IPv6 loopback and IPv4-mapped loopback peers are fine.
    for peer in ["[::1]:5000", "[::ffff:127.0.0.1]:5000", "127.3.2.1:5000"] {
        let reply = send(
            &p,
            Method::GET,
            "/",
            Some("localhost:81"),
            Some(peer.parse().unwrap()),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "from {peer}");
    }
}

#[tokio::test]
async fn a_host_header_that_is_not_loopback_gets_403() {
    let p = published(true);
    for host in [
        Some("evil.example"),
        Some("evil.example:81"),
        Some("localhost.evil.example:81"),
        Some("192.0.2.10:81"),
        Some("[2001:db8::1]:81"),
        None,
    ] {
        for path in ["/", "/api/v1/status", "/metrics"] {
            let reply = send(&p, Method::GET, path, host, Some(loopback())).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path} Host {host:?}");
            assert!(reply.body.contains("Host"), "{}", reply.body);
        }
    }
    for host in ["localhost", "localhost:8081", "127.0.0.1", "[::1]:81"] {
        let reply = send(&p, Method::GET, "/", Some(host), Some(loopback())).await;
        assert_eq!(reply.status, StatusCode::OK, "Host {host}");
    }
}

#[tokio::test]
async fn unknown_paths_are_404_and_other_methods_405() {
    let p = published(true);
    for path in [
        "/nope",
        "/api/v1",
        "/api/v2/status",
        "/static/other.css",
        "/index.html",
    ] {
        let reply = get(&p, path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_security_headers(&reply, path);
    }
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        for path in ["/", "/api/v1/status", "/metrics"] {
            let reply = send(
                &p,
                method.clone(),
                path,
                Some("127.0.0.1"),
                Some(loopback()),
            )
            .await;
            assert_eq!(
                reply.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            let allow = reply.headers[header::ALLOW].to_str().unwrap();
            assert!(allow.contains("GET"), "{allow}");
        }
    }
}

#[tokio::test]
async fn no_secret_from_the_configuration_is_shown() {
    let p = published(true);
    for path in ["/", "/api/v1/status", "/metrics"] {
        let body = get(&p, path).await.body;
        assert!(!body.contains("do-not-show"), "{path} leaks a check header");
        assert!(!body.contains(":8080/login"), "{path} shows check URLs");
    }
}

/// The text from `start` up to the next `end`.
fn section<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let i = html
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in\n{html}"));
    let j = html[i..].find(end).map_or(html.len(), |j| i + j);
    &html[i..j]
}
