//! The HTML page: a [`StatusView`] turned into display rows and rendered with askama
//! (`templates/dashboard/index.html`, escaped, compiled into the binary).

use std::time::SystemTime;

use askama::Template;

use super::view::{StatusView, ago, compact_duration, local_from_rfc3339, local_zone_name};

#[derive(Template)]
#[template(path = "dashboard/index.html")]
struct Page {
    zone: String,
    node: String,
    serial: u32,
    uptime: String,
    version: String,
    ready: bool,
    updated: String,
    refresh_seconds: u64,
    hosts: Vec<HostRow>,
    checks: Vec<CheckRow>,
    events: Vec<EventRow>,
    /// With a cluster: the vote column, the peers table and, when no peer answers, a banner.
    cluster: bool,
    quorum: String,
    alone: bool,
    /// Alone with witnesses: the banner says the states are kept, not decided alone.
    alone_keeps: bool,
    notifying: bool,
    peers: Vec<PeerRow>,
    /// The token every form carries (see `actions`).
    csrf: String,
    overrides: Vec<OverrideRow>,
    node_ids: Vec<String>,
    hostnames: Vec<String>,
    /// The 24-hour timeline (`templates/dashboard/history.html`).
    history: crate::dashboard::history::timeline::Timeline,
}

struct OverrideRow {
    kind: String,
    target: String,
    /// `maintenance` or `forced to node2`.
    what: String,
    reason: String,
    by: String,
    since: String,
    until: String,
}

struct PeerRow {
    agent: String,
    address: String,
    /// `reachable` or `unreachable`, written out; the colour only repeats it.
    state: String,
    state_class: String,
    last_seen: String,
    error: String,
}

struct HostRow {
    name: String,
    /// A then AAAA, as DNS answers.
    addresses: Vec<String>,
    nodes: String,
    mode: String,
    when_all_down: String,
    /// `healthy`, `all_down_…`, `not_ready`: also the CSS class of the row.
    reason: String,
    reason_text: String,
    why: Vec<String>,
}

struct CheckRow {
    priority: u32,
    node: String,
    addresses: String,
    check: String,
    kind: String,
    hostnames: String,
    /// OK, KO, PENDING: always written out, the colour only repeats it.
    state: String,
    /// `ok`, `ko`, `pending`.
    state_class: String,
    since: String,
    since_full: String,
    since_ago: String,
    latency: String,
    passes: u32,
    failures: u32,
    rise: u32,
    fall: u32,
    error: String,
    /// Each agent's vote, e.g. `node1 OK · node2 KO · node3 OK`.
    votes: String,
}

struct EventRow {
    time: String,
    time_full: String,
    kind: String,
    summary: String,
}

/// Renders the page; an error here is a bug in the template and becomes a 500.
pub fn render(
    view: &StatusView,
    csrf: &str,
    history: crate::dashboard::history::timeline::Timeline,
) -> askama::Result<String> {
    let now = SystemTime::now();
    let local = |t: &Option<String>| {
        t.as_deref()
            .map(|t| local_from_rfc3339(t, now))
            .unwrap_or_default()
    };
    let page = Page {
        zone: view.zone.clone(),
        node: view.node.clone().unwrap_or_else(|| "not set".into()),
        serial: view.serial,
        uptime: compact_duration(std::time::Duration::from_secs(view.uptime_seconds)),
        version: view.version.clone(),
        ready: view.ready,
        updated: format!(
            "{} {}",
            local_from_rfc3339(&view.generated_at, now),
            local_zone_name(now)
        ),
        refresh_seconds: view.refresh_seconds,
        hosts: view
            .hostnames
            .iter()
            .map(|h| HostRow {
                name: h.name.clone(),
                addresses: h.a.iter().chain(h.aaaa.iter()).cloned().collect(),
                nodes: h.nodes.join(", "),
                mode: h.mode.clone(),
                when_all_down: h.when_all_down.clone(),
                reason: h.reason.clone(),
                reason_text: h.reason_text.clone(),
                why: h.why.clone(),
            })
            .collect(),
        checks: view
            .checks
            .iter()
            .map(|p| CheckRow {
                priority: p.priority,
                node: p.node.clone(),
                addresses: p.addresses.join(", "),
                check: p.check.clone(),
                kind: p.kind.clone(),
                hostnames: p.hostnames.join(", "),
                state: p.state.clone(),
                state_class: p.state.to_ascii_lowercase(),
                since: local(&p.since),
                since_full: p.since.clone().unwrap_or_default(),
                since_ago: p.since.as_deref().map(|s| ago(s, now)).unwrap_or_default(),
                latency: p
                    .latency_ms
                    .map(|ms| format!("{ms:.1} ms"))
                    .unwrap_or_default(),
                passes: p.passes,
                failures: p.failures,
                rise: p.rise,
                fall: p.fall,
                error: p.error.clone().unwrap_or_default(),
                votes: p
                    .votes
                    .iter()
                    .map(|v| format!("{} {}", v.agent, v.vote))
                    .collect::<Vec<_>>()
                    .join(" · "),
            })
            .collect(),
        events: view
            .events
            .iter()
            .map(|e| EventRow {
                time: local_from_rfc3339(&e.at, now),
                time_full: e.at.clone(),
                kind: e.kind.replace('_', " "),
                summary: e.summary.clone(),
            })
            .collect(),
        csrf: csrf.to_string(),
        overrides: view
            .overrides
            .iter()
            .filter(|o| o.in_force)
            .map(|o| OverrideRow {
                kind: o.kind.clone(),
                target: o.target.clone(),
                what: match &o.node {
                    Some(n) => format!("forced to {n}"),
                    None => "maintenance (drained)".into(),
                },
                reason: o.reason.clone(),
                by: o.by.clone(),
                since: local_from_rfc3339(&o.set_at, now),
                until: o
                    .expires_at
                    .as_deref()
                    .map(|t| local_from_rfc3339(t, now))
                    .unwrap_or_else(|| "until cleared".into()),
            })
            .collect(),
        node_ids: {
            let mut ids: Vec<String> = view.checks.iter().map(|c| c.node.clone()).collect();
            ids.dedup();
            ids
        },
        hostnames: view.hostnames.iter().map(|h| h.name.clone()).collect(),
        history,
        cluster: view.cluster.is_some(),
        quorum: view
            .cluster
            .as_ref()
            .map(|c| c.quorum.clone())
            .unwrap_or_default(),
        alone: view.cluster.as_ref().is_some_and(|c| c.alone),
        alone_keeps: view.cluster.as_ref().is_some_and(|c| c.alone_keeps()),
        notifying: view.cluster.as_ref().is_some_and(|c| c.notifying),
        peers: view
            .cluster
            .iter()
            .flat_map(|c| c.peers.iter())
            .map(|p| PeerRow {
                agent: p.agent.clone(),
                address: p.address.clone(),
                state: if p.reachable {
                    "reachable"
                } else {
                    "unreachable"
                }
                .to_string(),
                state_class: if p.reachable { "ok" } else { "ko" }.to_string(),
                last_seen: local(&p.last_seen),
                error: p.error.clone().unwrap_or_default(),
            })
            .collect(),
    };
    page.render()
}
