//! What happened, as the agent reports it to the dashboard, the logs and the notifiers.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::config::EventFilter;
use crate::decide::Reason;

/// One event, stamped with the time it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub at: SystemTime,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// A check went down on a node (also reported at start for a pair whose first result fails).
    CheckDown {
        node: String,
        check: String,
        error: String,
    },
    /// A check came back up; `down_for` is how long it was down (unknown if down since start).
    CheckUp {
        node: String,
        check: String,
        down_for: Option<Duration>,
    },
    /// A hostname's answer changed.
    AnswerChanged {
        /// Fully qualified, without the trailing dot.
        hostname: String,
        from_nodes: Vec<String>,
        to_nodes: Vec<String>,
        from: Vec<IpAddr>,
        to: Vec<IpAddr>,
        /// Why: healthy, forced, or which `when_all_down` rule applies.
        reason: Reason,
        /// The check transitions that caused it, e.g. "node1 web: HTTP 503".
        cause: Vec<String>,
    },
    /// The agent could not apply or record a change (state directory, DNS listener).
    PublishFailed { error: String },
    /// An operator set or cleared a manual override (here or on another agent).
    OverrideChanged { summary: String },
    /// A notification could not be delivered and was given up on. Shown, never mailed.
    NotificationFailed { summary: String },
}

impl Event {
    pub fn now(kind: EventKind) -> Self {
        Self {
            at: SystemTime::now(),
            kind,
        }
    }

    /// One line for logs and the dashboard (hostnames fully qualified).
    pub fn summary(&self) -> String {
        self.line(None)
    }

    /// One line about the event; with `zone`, hostnames are written relative to it (mail
    /// subjects, where the zone is already in brackets).
    pub fn line(&self, zone: Option<&str>) -> String {
        match &self.kind {
            EventKind::CheckDown { node, check, error } => format!("{node} {check} down: {error}"),
            EventKind::CheckUp {
                node,
                check,
                down_for,
            } => match down_for {
                Some(d) => format!(
                    "{node} {check} up again after {}",
                    crate::config::format_duration(Duration::from_secs(d.as_secs()))
                ),
                None => format!("{node} {check} up"),
            },
            EventKind::AnswerChanged {
                hostname,
                to_nodes,
                reason,
                cause,
                ..
            } => {
                // The apex stays written out in full.
                let name = zone
                    .and_then(|zone| hostname.strip_suffix(zone))
                    .and_then(|n| n.strip_suffix('.'))
                    .filter(|n| !n.is_empty())
                    .unwrap_or(hostname);
                let to = if to_nodes.is_empty() {
                    "no address".to_string()
                } else {
                    to_nodes.join(", ")
                };
                let mut why: Vec<&str> = Vec::new();
                if *reason != Reason::Healthy {
                    why.push(reason.headline());
                }
                why.extend(cause.iter().map(String::as_str));
                if why.is_empty() {
                    format!("{name} → {to}")
                } else {
                    format!("{name} → {to} ({})", why.join("; "))
                }
            }
            EventKind::PublishFailed { error } => format!("DNS change not applied: {error}"),
            EventKind::OverrideChanged { summary } => format!("override: {summary}"),
            EventKind::NotificationFailed { summary } => format!("notification failed: {summary}"),
        }
    }
}

/// The name of an event kind: the webhook `kind`, the word `notify.*.events` uses.
pub fn kind_name(kind: &EventKind) -> &'static str {
    notifiable(kind).map_or("notification_failed", crate::config::EventName::as_str)
}

/// The `events:` word of a kind; none for a failed notification, which no channel selects:
/// mailing that a mail failed could loop; it is shown on the dashboard instead.
fn notifiable(kind: &EventKind) -> Option<crate::config::EventName> {
    use crate::config::EventName as Name;
    match kind {
        EventKind::CheckDown { .. } => Some(Name::CheckDown),
        EventKind::CheckUp { .. } => Some(Name::CheckUp),
        EventKind::AnswerChanged { .. } => Some(Name::AnswerChanged),
        EventKind::PublishFailed { .. } => Some(Name::PublishFailed),
        EventKind::OverrideChanged { .. } => Some(Name::OverrideChanged),
        EventKind::NotificationFailed { .. } => None,
    }
}

impl EventFilter {
    /// Whether `notify.*.events` selects events of this kind.
    pub fn allows(&self, kind: &EventKind) -> bool {
        notifiable(kind).is_some_and(|name| self.selects(name))
    }
}
