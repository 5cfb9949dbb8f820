//! The agent's picture as one plain value: what `/api/v1/status` returns, what the page and
//! `failoverd status` render. Built from one load of the published snapshot (status and zone).
//!
//! The field names are the JSON API (`/api/v1`): add fields freely, never rename or remove one.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use hickory_proto::rr::LowerName;
use serde::{Deserialize, Serialize};

use crate::config::{Config, Mode};
use crate::decide::{Decision, Reason};
use crate::events::Event;
use crate::health::{PairHealth, State};
use crate::published::Published;
use crate::snapshot::Snapshot;
use crate::status::{Effective, Status};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    /// failoverd's version.
    pub version: String,
    /// The delegated zone, without the trailing dot.
    pub zone: String,
    /// This node's id, when known (`self` in the config, or found from local addresses).
    pub node: Option<String>,
    /// False until the first round of checks is done; DNS answers SERVFAIL until then.
    pub ready: bool,
    /// SOA serial of the zone being served.
    pub serial: u32,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub uptime_seconds: u64,
    /// When this view was taken (RFC 3339, UTC).
    pub generated_at: String,
    /// How often the page reloads itself.
    pub refresh_seconds: u64,
    /// Every hostname with the answer DNS gives right now, in config order.
    pub hostnames: Vec<HostnameView>,
    /// One row per (node, check): nodes best first, checks in config order.
    pub checks: Vec<PairView>,
    /// Newest first.
    pub events: Vec<EventView>,
    /// Agreement with the other agents; null when this agent has no `cluster:`.
    pub cluster: Option<ClusterView>,
    /// Manual overrides this agent knows, newest first (cleared and expired ones too).
    pub overrides: Vec<OverrideView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverrideView {
    /// `maintenance` (target is a node) or `force` (target is a hostname).
    pub kind: String,
    pub target: String,
    /// For `force`: the node.
    pub node: Option<String>,
    /// Set, not cleared, not expired: it decides answers now.
    pub in_force: bool,
    /// False once cleared.
    pub active: bool,
    pub reason: String,
    pub by: String,
    /// RFC 3339, UTC.
    pub set_at: String,
    pub expires_at: Option<String>,
    pub version: u64,
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterView {
    /// `majority`, `any` or `all`.
    pub quorum: String,
    /// No other agent answers: this agent decides on its own observations.
    pub alone: bool,
    /// This agent sends the cluster's notifications (the reachable agent with the lowest id).
    pub notifying: bool,
    pub peers: Vec<PeerView>,
    /// The ids of the witnesses (agents that vote but are no node); with quorum `majority` a
    /// pair then moves only with a majority of all agents, and an agent alone keeps its state.
    #[serde(default)]
    pub witnesses: Vec<String>,
}

impl ClusterView {
    /// An agent alone keeps its states rather than deciding alone (witnesses, quorum majority).
    pub fn alone_keeps(&self) -> bool {
        !self.witnesses.is_empty() && self.quorum == "majority"
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerView {
    pub agent: String,
    /// Its peer API address.
    pub address: String,
    pub reachable: bool,
    /// Last successful pull (RFC 3339, UTC).
    pub last_seen: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoteView {
    pub agent: String,
    /// `OK` or `KO`.
    pub vote: String,
    /// Age of the result behind the vote, in seconds.
    pub age_seconds: f64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostnameView {
    /// Fully qualified, without the trailing dot.
    pub name: String,
    /// `failover` or `all`.
    pub mode: String,
    /// `all`, `none` or `last`.
    pub when_all_down: String,
    /// Checks a node must pass to serve the name.
    pub checks: Vec<String>,
    /// Node ids in the answer, in order.
    pub nodes: Vec<String>,
    /// The A and AAAA records DNS serves now, read from the served zone.
    pub a: Vec<String>,
    pub aaaa: Vec<String>,
    /// `healthy`, `all_down_fail_open`, `all_down_empty`, `all_down_kept_last` or `not_ready`.
    pub reason: String,
    /// The reason in words (which `when_all_down` rule applies, if one does).
    pub reason_text: String,
    /// Why the answer is what it is, one line per node that is passed over or failing,
    /// e.g. `node1 KO on web since 10:42:13 — HTTP 503` (local time of the agent).
    pub why: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairView {
    pub node: String,
    pub priority: u32,
    pub addresses: Vec<String>,
    pub check: String,
    /// `http`, `https` or `tcp`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Hostnames (relative to the zone) whose answer depends on this pair.
    pub hostnames: Vec<String>,
    /// `OK`, `KO` or `PENDING` (no result yet): what the answers are decided from (the
    /// cluster's vote, or this agent's own state without a cluster).
    pub state: String,
    /// When the pair entered `state` (RFC 3339, UTC).
    pub since: Option<String>,
    /// This agent's own state of the pair (its probes, rise/fall).
    pub local_state: String,
    /// The fresh votes counted (this agent's first); empty without a cluster.
    pub votes: Vec<VoteView>,
    /// When it was last probed (RFC 3339, UTC).
    pub last_checked: Option<String>,
    /// Latency of the last probe, in milliseconds.
    pub latency_ms: Option<f64>,
    /// Why the last probe failed; null when it passed.
    pub error: Option<String>,
    /// Consecutive passes, counting the last probe; `rise` of them bring a KO pair back.
    pub passes: u32,
    /// Consecutive failures, counting the last probe; `fall` of them take an OK pair down.
    pub failures: u32,
    pub rise: u32,
    pub fall: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    /// RFC 3339, UTC.
    pub at: String,
    /// The event's kind, as `events::kind_name` writes it (`check_down`, `answer_changed`, …).
    pub kind: String,
    pub summary: String,
}

impl StatusView {
    /// Reads the published snapshot once and builds the view.
    pub fn build(published: &Published, now: SystemTime) -> Self {
        Self::from_snapshot(&published.snapshot.load(), now)
    }

    /// The view of one snapshot: its status and the zone it serves, from the same moment.
    pub fn from_snapshot(snapshot: &Snapshot, now: SystemTime) -> Self {
        let status = &snapshot.status;
        Self::from_parts(&status.config, status, snapshot.zone(), now)
    }

    pub fn from_parts(
        config: &Config,
        status: &Status,
        zone: &crate::dns::Zone,
        now: SystemTime,
    ) -> Self {
        let hostnames = config
            .hostnames
            .iter()
            .enumerate()
            .map(|(h, hostname)| {
                let records = zone
                    .ready
                    .then(|| zone.names.get(&LowerName::new(&hostname.fqdn)))
                    .flatten();
                let ips = |records: Option<&Vec<hickory_proto::rr::Record>>| -> Vec<String> {
                    records
                        .into_iter()
                        .flatten()
                        .filter_map(|r| r.data.ip_addr().map(|ip: IpAddr| ip.to_string()))
                        .collect()
                };
                let decision = status.decisions.get(h).filter(|_| status.ready);
                let (reason, reason_text) = match decision {
                    Some(d) => (reason_code(d.reason), d.reason.describe().to_string()),
                    None => (
                        "not_ready",
                        "first round of checks not done: answering SERVFAIL".to_string(),
                    ),
                };
                HostnameView {
                    name: without_dot(&hostname.fqdn.to_ascii()),
                    mode: hostname.mode.to_string(),
                    when_all_down: hostname.when_all_down.to_string(),
                    checks: hostname
                        .checks
                        .iter()
                        .map(|&c| config.checks[c].id.clone())
                        .collect(),
                    nodes: decision
                        .map(|d| {
                            d.nodes
                                .iter()
                                .map(|&n| config.nodes[n].id.clone())
                                .collect()
                        })
                        .unwrap_or_default(),
                    a: ips(records.map(|r| &r.a)),
                    aaaa: ips(records.map(|r| &r.aaaa)),
                    reason: reason.to_string(),
                    reason_text,
                    why: decision
                        .map(|d| explain(config, status, h, d))
                        .unwrap_or_default(),
                }
            })
            .collect();

        let order = config.ranked_nodes();
        let mut checks = Vec::with_capacity(config.pair_count());
        for &n in &order {
            for c in 0..config.checks.len() {
                let (node, check) = (&config.nodes[n], &config.checks[c]);
                let health = &status.pairs[config.pair_index(n, c)];
                let effective = &status.effective[config.pair_index(n, c)];
                let last = health.last_result.as_ref();
                checks.push(PairView {
                    node: node.id.clone(),
                    priority: node.priority,
                    addresses: node.addresses.iter().map(|a| a.to_string()).collect(),
                    check: check.id.clone(),
                    kind: check.kind.type_name().to_string(),
                    hostnames: config
                        .hostnames
                        .iter()
                        .filter(|h| h.checks.contains(&c) && h.nodes.contains(&n))
                        .map(|h| h.name.clone())
                        .collect(),
                    state: effective.state.label().to_string(),
                    since: effective.since.map(rfc3339),
                    local_state: health.state.label().to_string(),
                    votes: effective
                        .votes
                        .iter()
                        .map(|v| VoteView {
                            agent: v.agent.clone(),
                            vote: if v.up { "OK" } else { "KO" }.to_string(),
                            age_seconds: (v.age.as_secs_f64() * 10.0).round() / 10.0,
                            error: v.error.clone(),
                        })
                        .collect(),
                    last_checked: health.last_checked.map(rfc3339),
                    latency_ms: last.map(|r| (r.latency.as_secs_f64() * 1e4).round() / 10.0),
                    error: last.and_then(|r| r.error.clone()),
                    passes: health.passes,
                    failures: health.failures,
                    rise: check.timing.rise,
                    fall: check.timing.fall,
                });
            }
        }

        Self {
            version: env!("CARGO_PKG_VERSION").to_string(),
            zone: without_dot(&config.zone.to_ascii()),
            node: config.self_id().map(String::from),
            ready: status.ready,
            serial: status.serial,
            started_at: rfc3339(status.started_at),
            uptime_seconds: now
                .duration_since(status.started_at)
                .unwrap_or_default()
                .as_secs(),
            generated_at: rfc3339(now),
            refresh_seconds: config.dashboard.refresh.as_secs().max(1),
            hostnames,
            checks,
            events: status.events.iter().rev().map(|e| event_view(e)).collect(),
            overrides: {
                let now_unix = now
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                // Checked: an expiry comes from any agent of the cluster, and a far one must
                // not panic the page.
                let unix = |s: u64| {
                    std::time::UNIX_EPOCH
                        .checked_add(Duration::from_secs(s))
                        .map_or_else(|| "invalid time".to_string(), rfc3339)
                };
                let mut list: Vec<OverrideView> = status
                    .overrides
                    .iter()
                    .map(|o| OverrideView {
                        kind: match o.kind {
                            crate::overrides::Kind::Maintenance => "maintenance",
                            crate::overrides::Kind::Force => "force",
                        }
                        .to_string(),
                        target: o.target.clone(),
                        node: o.node.clone(),
                        in_force: o.in_force(now_unix),
                        active: o.active,
                        reason: o.reason.clone(),
                        by: o.by.clone(),
                        set_at: unix(o.set_at),
                        expires_at: o.expires_at.map(unix),
                        version: o.version,
                        origin: o.origin.clone(),
                    })
                    .collect();
                list.sort_by(|a, b| {
                    b.version
                        .cmp(&a.version)
                        .then_with(|| b.origin.cmp(&a.origin))
                });
                list
            },
            cluster: config.cluster.as_ref().map(|c| ClusterView {
                quorum: c.quorum.to_string(),
                witnesses: c.witnesses.iter().map(|w| w.id.clone()).collect(),
                alone: status.alone,
                notifying: status.notifying,
                peers: status
                    .peers
                    .iter()
                    .map(|p| PeerView {
                        agent: p.agent.clone(),
                        address: p.address.to_string(),
                        reachable: p.reachable,
                        last_seen: p.last_seen.map(rfc3339),
                        error: p.error.clone(),
                    })
                    .collect(),
            }),
        }
    }
}

fn reason_code(reason: Reason) -> &'static str {
    match reason {
        Reason::Healthy => "healthy",
        Reason::AllDownFailOpen => "all_down_fail_open",
        Reason::AllDownEmpty => "all_down_empty",
        Reason::AllDownKeptLast => "all_down_kept_last",
        Reason::Forced => "forced",
        Reason::AllInMaintenance => "all_in_maintenance",
    }
}

/// Why hostname `h` answers `decision`: one line per node of the hostname that is passed over
/// because a check is not OK, in rank order; and for a healthy failover answer, which node
/// won. Nodes that are fine but simply rank lower are not news and are not listed.
fn explain(config: &Config, status: &Status, h: usize, decision: &Decision) -> Vec<String> {
    let hostname = &config.hostnames[h];
    let mut ranked = hostname.nodes.clone();
    config.rank(&mut ranked);
    let mut why = Vec::new();
    for &n in &ranked {
        let failing: Vec<usize> = hostname
            .checks
            .iter()
            .copied()
            .filter(|&c| status.effective[config.pair_index(n, c)].state != State::Up)
            .collect();
        if failing.is_empty() {
            if decision.reason == Reason::Healthy && hostname.mode == Mode::Failover {
                let checks: Vec<&str> = hostname
                    .checks
                    .iter()
                    .map(|&c| config.checks[c].id.as_str())
                    .collect();
                why.push(format!(
                    "{} OK on {} (priority {}: the best node passing)",
                    config.nodes[n].id,
                    checks.join(", "),
                    config.nodes[n].priority
                ));
                // Nodes below the winner do not change the answer.
                break;
            }
            continue;
        }
        for c in failing {
            let p = config.pair_index(n, c);
            why.push(pair_line(
                &config.nodes[n].id,
                &config.checks[c].id,
                &status.effective[p],
                &status.pairs[p],
            ));
        }
    }
    why
}

/// `node1 KO on web since 10:42:13 — HTTP 503` (with a cluster: `… (votes 1/3 OK)`).
fn pair_line(node: &str, check: &str, effective: &Effective, own: &PairHealth) -> String {
    let mut line = format!("{node} {} on {check}", effective.state.label());
    match effective.since {
        Some(since) if effective.state != State::Unknown => {
            line.push_str(&format!(" since {}", local_time(since)))
        }
        _ => line.push_str(" (no result yet)"),
    }
    let error = own
        .last_result
        .as_ref()
        .and_then(|r| r.error.clone())
        .or_else(|| effective.votes.iter().find_map(|v| v.error.clone()));
    if let Some(error) = error {
        line.push_str(&format!(" — {error}"));
    }
    if !effective.votes.is_empty() {
        let up = effective.votes.iter().filter(|v| v.up).count();
        line.push_str(&format!(" (votes {up}/{} OK)", effective.votes.len()));
    }
    line
}

fn event_view(event: &Event) -> EventView {
    let kind = crate::events::kind_name(&event.kind);
    EventView {
        at: rfc3339(event.at),
        kind: kind.to_string(),
        summary: event.summary(),
    }
}

fn without_dot(name: &str) -> String {
    name.trim_end_matches('.').to_string()
}

/// `2026-05-01T10:42:13Z`: seconds are enough for people, and the format sorts as text.
pub fn rfc3339(t: SystemTime) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Err(_) => "invalid time".to_string(),
    }
}

/// `10:42:13` in the agent's local time zone (TZ, or /etc/localtime; UTC when neither is set).
pub fn local_time(t: SystemTime) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => ts
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime("%H:%M:%S")
            .to_string(),
        Err(_) => "?".to_string(),
    }
}

/// The abbreviation of the agent's local time zone at `t` (`UTC`, `CEST`), shown once on the
/// page so that the bare times elsewhere are unambiguous.
pub fn local_zone_name(t: SystemTime) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => ts
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime("%Z")
            .to_string(),
        Err(_) => String::new(),
    }
}

/// An RFC 3339 time from the API in the local time zone, with the date when it is not today:
/// `10:42:13` or `2026-04-30 10:42:13`.
pub fn local_from_rfc3339(text: &str, now: SystemTime) -> String {
    let Ok(ts) = text.parse::<jiff::Timestamp>() else {
        return text.to_string();
    };
    let tz = jiff::tz::TimeZone::system();
    let zoned = ts.to_zoned(tz.clone());
    let today = jiff::Timestamp::try_from(now)
        .map(|n| n.to_zoned(tz).date())
        .ok();
    if today == Some(zoned.date()) {
        zoned.strftime("%H:%M:%S").to_string()
    } else {
        zoned.strftime("%Y-%m-%d %H:%M:%S").to_string()
    }
}

/// How long ago an RFC 3339 time was, compactly: `42s`, `3m 12s`, `2h 5m`, `3d 4h`.
pub fn ago(text: &str, now: SystemTime) -> String {
    let Ok(ts) = text.parse::<jiff::Timestamp>() else {
        return String::new();
    };
    let then = SystemTime::from(ts);
    compact_duration(now.duration_since(then).unwrap_or_default())
}

pub fn compact_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_compact() {
        for (secs, want) in [
            (0, "0s"),
            (59, "59s"),
            (60, "1m 0s"),
            (192, "3m 12s"),
            (7500, "2h 5m"),
            (273600, "3d 4h"),
        ] {
            assert_eq!(compact_duration(Duration::from_secs(secs)), want);
        }
    }

    #[test]
    fn times_round_trip_through_rfc3339() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_777_000_000);
        let text = rfc3339(t);
        assert_eq!(text, "2026-04-24T03:06:40Z");
        assert_eq!(ago(&text, t + Duration::from_secs(75)), "1m 15s");
        assert_eq!(ago("not a time", t), "");
    }
}
