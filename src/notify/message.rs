//! What a notification says: the mail subject and plain-text body, and the webhook JSON.
//!
//! Pure functions of (config, events, status, clock): no I/O, so every word is unit-tested.
//! Written for a person woken at 3 a.m.: the subject says what happened in one line, the body
//! says when, what every hostname answers now and the state of every node.

use std::fmt::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{Config, format_duration};
use crate::decide::Reason;
use crate::events::{Event, EventKind, kind_name};
use crate::health::State;
use crate::status::Status;

/// The longest subject written; mail clients cut long ones anyway, and a digest's headline
/// plus "+N more" must stay readable.
const MAX_SUBJECT_CHARS: usize = 200;

/// A composed email, before addressing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub subject: String,
    pub body: String,
}

/// The zone without its trailing dot, as people write it.
pub fn zone_name(config: &Config) -> String {
    config.zone.to_ascii().trim_end_matches('.').to_string()
}

/// Who is speaking: the node (or witness) id of this agent, or the machine's host name.
pub fn agent_name(config: &Config) -> String {
    match config.self_id() {
        Some(id) => id.to_string(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "this agent".into()),
    }
}

/// How important an event is for the headline: answers first, then faults, then checks.
fn rank(kind: &EventKind) -> u8 {
    match kind {
        EventKind::AnswerChanged { .. } => 0,
        EventKind::PublishFailed { .. } => 1,
        EventKind::CheckDown { .. } => 2,
        EventKind::CheckUp { .. } => 3,
        EventKind::OverrideChanged { .. } => 1,
        EventKind::NotificationFailed { .. } => 4,
    }
}

/// The event the subject is about: the most important, the earliest among equals.
fn headline(events: &[Arc<Event>]) -> Option<&Arc<Event>> {
    events.iter().min_by_key(|e| rank(&e.kind))
}

/// One line about one event, with hostnames relative to the zone (the zone is in the subject).
pub fn short_line(event: &Event, zone: &str) -> String {
    one_line(&event.line(Some(zone)))
}

/// The subject of a message carrying `events` (one event, or a digest of several).
pub fn subject(zone: &str, events: &[Arc<Event>]) -> String {
    let Some(head) = headline(events) else {
        return format!("[failoverd {zone}] no change");
    };
    let mut text = format!("[failoverd {zone}] {}", short_line(head, zone));
    if text.chars().count() > MAX_SUBJECT_CHARS {
        text = text.chars().take(MAX_SUBJECT_CHARS - 1).collect::<String>() + "…";
    }
    if events.len() > 1 {
        let _ = write!(text, " (+{} more)", events.len() - 1);
    }
    text
}

/// The subject and body of one message about `events`, with the state `status` now shows.
pub fn compose(config: &Config, status: &Status, events: &[Arc<Event>], now: SystemTime) -> Mail {
    let zone = zone_name(config);
    let mut body = String::new();
    let agent = agent_name(config);

    if events.len() > 1 {
        let first = events.iter().map(|e| e.at).min().unwrap_or(now);
        let last = events.iter().map(|e| e.at).max().unwrap_or(now);
        let _ = writeln!(
            body,
            "{} changes between {} and {}:",
            events.len(),
            clock(first),
            clock(last)
        );
    } else {
        let _ = writeln!(body, "What happened:");
    }
    for event in events {
        let _ = writeln!(body, "  {}  {}", clock(event.at), long_line(event));
        if let EventKind::AnswerChanged { cause, reason, .. } = &event.kind {
            if *reason != Reason::Healthy {
                let _ = writeln!(body, "            {}", reason.describe());
            }
            if !cause.is_empty() {
                let _ = writeln!(body, "            because: {}", cause.join("; "));
            }
        }
    }

    let _ = writeln!(body, "\nWhen: {}", timestamp(now));
    let _ = writeln!(
        body,
        "From: the failoverd agent on {agent} (zone {zone}, SOA serial {})",
        status.serial
    );

    let _ = writeln!(body, "\nWhat every hostname answers now:");
    if !status.ready {
        let _ = writeln!(
            body,
            "  nothing yet: the first round of checks is still running (DNS answers SERVFAIL)"
        );
    }
    let width = config
        .hostnames
        .iter()
        .map(|h| h.fqdn.to_ascii().trim_end_matches('.').len())
        .max()
        .unwrap_or(0);
    for (h, hostname) in config.hostnames.iter().enumerate() {
        let Some(decision) = status.decisions.get(h) else {
            continue;
        };
        let fqdn = hostname.fqdn.to_ascii();
        let fqdn = fqdn.trim_end_matches('.');
        let nodes: Vec<String> = decision
            .nodes
            .iter()
            .map(|&n| {
                let node = &config.nodes[n];
                let ips: Vec<String> = node
                    .addresses
                    .iter()
                    .filter(|ip| hostname.family.allows(ip))
                    .map(IpAddr::to_string)
                    .collect();
                format!("{} ({})", node.id, ips.join(", "))
            })
            .collect();
        let answer = if nodes.is_empty() {
            "no address".to_string()
        } else {
            nodes.join(", ")
        };
        let note = if decision.reason == Reason::Healthy {
            String::new()
        } else {
            format!("   [{}]", decision.reason.describe())
        };
        let _ = writeln!(body, "  {fqdn:<width$}  {answer}{note}");
    }

    let _ = writeln!(body, "\nEvery node now:");
    let check_width = config.checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
    for (n, node) in config.nodes.iter().enumerate() {
        let ips: Vec<String> = node.addresses.iter().map(IpAddr::to_string).collect();
        let _ = writeln!(
            body,
            "  {}  priority {}, {}",
            node.id,
            node.priority,
            ips.join(", ")
        );
        for (c, check) in config.checks.iter().enumerate() {
            let Some(pair) = status.pairs.get(config.pair_index(n, c)) else {
                continue;
            };
            let state = match pair.state {
                State::Up => "UP     ",
                State::Down => "DOWN   ",
                State::Unknown => "PENDING",
            };
            let mut line = format!("    {:<check_width$}  {state}", check.id);
            if let Some(since) = pair.since {
                let for_how_long = now.duration_since(since).unwrap_or_default();
                let _ = write!(
                    line,
                    "  since {} ({})",
                    clock(since),
                    whole_seconds(for_how_long)
                );
            }
            if pair.state == State::Down
                && let Some(error) = pair.last_result.as_ref().and_then(|r| r.error.as_ref())
            {
                let _ = write!(line, "  {}", one_line(error));
            }
            let _ = writeln!(body, "{line}");
        }
    }
    let _ = writeln!(
        body,
        "\n-- \nfailoverd {}. Every agent of the zone sends its own copy of this message.",
        env!("CARGO_PKG_VERSION")
    );
    Mail {
        subject: subject(&zone, events),
        body,
    }
}

/// The body line of one event: full names and addresses.
fn long_line(event: &Event) -> String {
    match &event.kind {
        EventKind::CheckDown { node, check, error } => {
            format!("{node} {check} DOWN: {}", one_line(error))
        }
        EventKind::CheckUp {
            node,
            check,
            down_for,
        } => match down_for {
            Some(d) => format!("{node} {check} UP again after {}", whole_seconds(*d)),
            None => format!("{node} {check} UP"),
        },
        EventKind::AnswerChanged {
            hostname,
            from_nodes,
            to_nodes,
            from,
            to,
            ..
        } => format!(
            "{hostname} now answers {}; it answered {}",
            nodes_with_ips(to_nodes, to),
            nodes_with_ips(from_nodes, from)
        ),
        EventKind::PublishFailed { error } => {
            format!("DNS change NOT applied: {}", one_line(error))
        }
        EventKind::OverrideChanged { summary } => format!("OVERRIDE {}", one_line(summary)),
        EventKind::NotificationFailed { summary } => {
            format!("NOTIFICATION FAILED {}", one_line(summary))
        }
    }
}

fn nodes_with_ips(nodes: &[String], ips: &[IpAddr]) -> String {
    if nodes.is_empty() {
        return "no address".into();
    }
    let ips: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
    if ips.is_empty() {
        nodes.join(", ")
    } else {
        format!("{} ({})", nodes.join(", "), ips.join(", "))
    }
}

/// The webhook body for one event: flat JSON, with `text` for chat tools (Slack, Mattermost,
/// Teams workflows) that display that field as is.
pub fn webhook_json(config: &Config, event: &Event) -> serde_json::Value {
    let zone = zone_name(config);
    let mut value = serde_json::json!({
        "source": "failoverd",
        "zone": zone,
        "agent": agent_name(config),
        "kind": kind_name(&event.kind),
        "at": rfc3339(event.at),
        "summary": short_line(event, &zone),
        "text": format!("[failoverd {zone}] {}", short_line(event, &zone)),
    });
    let fields = match &event.kind {
        EventKind::CheckDown { node, check, error } => serde_json::json!({
            "node": node, "check": check, "error": error,
        }),
        EventKind::CheckUp {
            node,
            check,
            down_for,
        } => serde_json::json!({
            "node": node,
            "check": check,
            "down_for_seconds": down_for.map(|d| d.as_secs()),
        }),
        EventKind::AnswerChanged {
            hostname,
            from_nodes,
            to_nodes,
            from,
            to,
            reason,
            cause,
        } => serde_json::json!({
            "hostname": hostname,
            "from_nodes": from_nodes,
            "to_nodes": to_nodes,
            "from": from.iter().map(IpAddr::to_string).collect::<Vec<_>>(),
            "to": to.iter().map(IpAddr::to_string).collect::<Vec<_>>(),
            "reason": reason.describe(),
            "cause": cause,
        }),
        EventKind::PublishFailed { error } => serde_json::json!({ "error": error }),
        EventKind::OverrideChanged { summary } => serde_json::json!({ "override": summary }),
        EventKind::NotificationFailed { summary } => serde_json::json!({ "failure": summary }),
    };
    if let (Some(out), serde_json::Value::Object(more)) = (value.as_object_mut(), fields) {
        out.extend(more);
    }
    value
}

/// What `notify-test` sends: says where it came from, and that nothing is wrong.
pub fn test_mail(config: &Config, now: SystemTime) -> Mail {
    let zone = zone_name(config);
    Mail {
        subject: format!(
            "[failoverd {zone}] test message from {}",
            agent_name(config)
        ),
        body: format!(
            "This is a test message sent by `failoverd notify-test` on {} at {}.\n\n\
             If you read this, failoverd can deliver its notifications for the zone {zone}: \
             you will get a message like this one when a check goes down or comes back, when \
             a hostname's answer changes, and when the agent cannot apply a DNS change.\n\n\
             Nothing is wrong.\n",
            agent_name(config),
            timestamp(now)
        ),
    }
}

/// The JSON `notify-test` posts to the webhook.
pub fn test_json(config: &Config, now: SystemTime) -> serde_json::Value {
    let zone = zone_name(config);
    let agent = agent_name(config);
    serde_json::json!({
        "source": "failoverd",
        "zone": zone,
        "agent": agent,
        "kind": "test",
        "at": rfc3339(now),
        "summary": format!("test message from {agent}"),
        "text": format!("[failoverd {zone}] test message from {agent}: nothing is wrong"),
    })
}

/// Error texts come from the network: keep a subject or a table line on one line.
fn one_line(text: &str) -> String {
    text.split(['\r', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Durations in whole seconds: "2m10s" reads better than "2m10.4s".
fn whole_seconds(d: Duration) -> String {
    format_duration(Duration::from_secs(d.as_secs()))
}

/// `(year, month, day, hour, minute, second)` in UTC.
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil: exact for the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

/// `2025-03-04 03:12:44 UTC`: unambiguous for a team spread over time zones.
pub fn timestamp(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil(t);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// `2025-03-04T03:12:44Z`, for JSON.
pub fn rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `03:12:44 UTC`, for lines of the same message.
fn clock(t: SystemTime) -> String {
    let (_, _, _, h, mi, s) = civil(t);
    format!("{h:02}:{mi:02}:{s:02} UTC")
}

#[cfg(test)]
mod tests;
