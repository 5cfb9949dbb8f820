//! The history as one plain value: what `GET /api/v1/history` returns and what
//! `failoverd status --history` prints.
//!
//! The field names are the JSON API (`/api/v1`): add fields freely, never rename or remove one.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::history::{History, Key, Series, Value, WINDOW, rfc3339_ms};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryView {
    /// When this view was taken (RFC 3339, UTC, milliseconds).
    pub generated_at: String,
    /// The start of the period shown: `?since=`, or 24 hours before `generated_at` (RFC 3339).
    pub from: String,
    /// How far back the agent keeps history, in seconds (86400).
    pub window_seconds: u64,
    /// Every hostname, in config order.
    pub hostnames: Vec<HostnameHistory>,
    /// Every (node, check) pair: nodes best first, checks in config order.
    pub pairs: Vec<PairHistory>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostnameHistory {
    /// Fully qualified, without the trailing dot.
    pub name: String,
    /// The answer at `from`: node ids; null when unknown (agent not running or not answering yet).
    pub nodes_at_from: Option<Vec<String>>,
    /// The answer now, as recorded; null when unknown.
    pub nodes: Option<Vec<String>>,
    /// Share of the known time since `from` the answer had at least one address, in percent;
    /// null when nothing is known.
    pub availability_percent: Option<f64>,
    /// Changes of the answer since `from` (between known answers).
    pub transitions: u32,
    /// True when the count cap dropped changes after `from`: the start is incomplete.
    pub capped: bool,
    /// Every change at or after `from`, oldest first.
    pub changes: Vec<AnswerChange>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerChange {
    /// RFC 3339, UTC, milliseconds.
    pub at: String,
    /// The node ids answered from then on (empty: no address); null: unknown from then on.
    pub nodes: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairHistory {
    pub node: String,
    pub check: String,
    /// `OK`, `KO`, `PENDING` (agent running, no result yet) or `UNKNOWN` (agent not running).
    pub state_at_from: String,
    /// The state now, as recorded.
    pub state: String,
    /// Share of the known time (OK or KO) since `from` the pair was OK, in percent; null when
    /// nothing is known.
    pub availability_percent: Option<f64>,
    /// Changes between OK and KO since `from`.
    pub transitions: u32,
    /// True when the count cap dropped changes after `from`.
    pub capped: bool,
    /// Every change at or after `from`, oldest first.
    pub changes: Vec<StateChange>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateChange {
    /// RFC 3339, UTC, milliseconds.
    pub at: String,
    /// `OK`, `KO`, `PENDING` or `UNKNOWN` from then on.
    pub state: String,
}

/// `?since=` as given: an RFC 3339 time (e.g. `2026-12-01T08:00:00Z`).
pub fn parse_since(text: &str) -> Result<SystemTime, String> {
    text.trim()
        .parse::<jiff::Timestamp>()
        .map(SystemTime::from)
        .map_err(|e| {
            format!("since: `{text}` is not an RFC 3339 time such as 2026-12-01T08:00:00Z ({e})")
        })
}

/// The start of the period: `since` if given and within the window, else the window's start.
pub fn period_start(since: Option<SystemTime>, now: SystemTime) -> SystemTime {
    let window_start = now.checked_sub(WINDOW).unwrap_or(SystemTime::UNIX_EPOCH);
    since.map_or(window_start, |s| s.max(window_start).min(now))
}

fn nodes_of(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::Nodes(nodes) => Some(nodes.clone()),
        _ => None,
    }
}

/// Hostnames by name, pairs by node and check, each with its series if one was recorded.
pub type Ordered<'a> = (
    Vec<(String, Option<&'a Series>)>,
    Vec<(String, String, Option<&'a Series>)>,
);

/// Every configured hostname and pair, in config order, with its series (empty if none).
pub fn series_in_order<'a>(history: &'a History, config: &Config) -> Ordered<'a> {
    let hostnames = config
        .hostnames
        .iter()
        .map(|h| {
            let name = h.fqdn.to_ascii().trim_end_matches('.').to_string();
            let series = history.series.get(&Key::Hostname(name.clone()));
            (name, series)
        })
        .collect();
    let pairs = (0..config.pair_count())
        .map(|p| {
            let (n, c) = config.pair(p);
            let (node, check) = (config.nodes[n].id.clone(), config.checks[c].id.clone());
            let series = history.series.get(&Key::Pair {
                node: node.clone(),
                check: check.clone(),
            });
            (node, check, series)
        })
        .collect();
    (hostnames, pairs)
}

impl HistoryView {
    pub fn build(
        history: &History,
        config: &Config,
        since: Option<SystemTime>,
        now: SystemTime,
    ) -> Self {
        let from = period_start(since, now);
        let empty = Series::default();
        let (hostnames, pairs) = series_in_order(history, config);
        let capped = |s: &Series| s.capped_before.is_some_and(|t| t > from);
        let after = |s: &Series| {
            s.changes
                .iter()
                .filter(|c| c.at >= from)
                .cloned()
                .collect::<Vec<_>>()
        };
        Self {
            generated_at: rfc3339_ms(now),
            from: rfc3339_ms(from),
            window_seconds: WINDOW.as_secs(),
            hostnames: hostnames
                .into_iter()
                .map(|(name, series)| {
                    let s = series.unwrap_or(&empty);
                    let (availability_percent, transitions) = s.summary(from, now);
                    HostnameHistory {
                        name,
                        nodes_at_from: nodes_of(&s.value_at(from)),
                        nodes: s.last().and_then(nodes_of),
                        availability_percent: availability_percent.map(round2),
                        transitions,
                        capped: capped(s),
                        changes: after(s)
                            .into_iter()
                            .map(|c| AnswerChange {
                                at: rfc3339_ms(c.at),
                                nodes: nodes_of(&c.value),
                            })
                            .collect(),
                    }
                })
                .collect(),
            pairs: pairs
                .into_iter()
                .map(|(node, check, series)| {
                    let s = series.unwrap_or(&empty);
                    let (availability_percent, transitions) = s.summary(from, now);
                    PairHistory {
                        node,
                        check,
                        state_at_from: s.value_at(from).label(),
                        state: s.last().unwrap_or(&Value::Unknown).label(),
                        availability_percent: availability_percent.map(round2),
                        transitions,
                        capped: capped(s),
                        changes: after(s)
                            .into_iter()
                            .map(|c| StateChange {
                                at: rfc3339_ms(c.at),
                                state: c.value.label(),
                            })
                            .collect(),
                    }
                })
                .collect(),
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `99.5 %`, or `-` when nothing is known.
pub fn percent(availability: Option<f64>) -> String {
    match availability {
        Some(a) if a >= 99.995 => "100 %".into(),
        Some(a) => format!("{a:.2} %"),
        None => "-".into(),
    }
}

/// `failoverd status --history`: one table, a row per series with its last changes.
pub fn render_text(view: &HistoryView, now: SystemTime, last: usize) -> String {
    use crate::dashboard::view::local_from_rfc3339;
    let mut out = format!(
        "HISTORY since {} ({} changes kept per series at most, {} h)\n",
        local_from_rfc3339(&view.from, now),
        crate::history::MAX_PER_SERIES,
        view.window_seconds / 3600
    );
    let mut rows = vec![vec![
        "SERIES".to_string(),
        "NOW".into(),
        "TRANSITIONS".into(),
        "AVAILABILITY".into(),
        "LAST CHANGES".into(),
    ]];
    let show = |nodes: &Option<Vec<String>>| match nodes {
        None => "UNKNOWN".to_string(),
        Some(n) if n.is_empty() => "no address".to_string(),
        Some(n) => n.join(","),
    };
    let changes = |items: Vec<(String, String)>| -> String {
        let shown: Vec<String> = items
            .iter()
            .rev()
            .take(last)
            .rev()
            .map(|(at, what)| format!("{} {what}", local_from_rfc3339(at, now)))
            .collect();
        if shown.is_empty() {
            "-".into()
        } else {
            shown.join(", ")
        }
    };
    for h in &view.hostnames {
        rows.push(vec![
            h.name.clone(),
            show(&h.nodes),
            format!("{}{}", h.transitions, if h.capped { "+" } else { "" }),
            percent(h.availability_percent),
            changes(
                h.changes
                    .iter()
                    .map(|c| (c.at.clone(), show(&c.nodes)))
                    .collect(),
            ),
        ]);
    }
    for p in &view.pairs {
        rows.push(vec![
            format!("{} {}", p.node, p.check),
            p.state.clone(),
            format!("{}{}", p.transitions, if p.capped { "+" } else { "" }),
            percent(p.availability_percent),
            changes(
                p.changes
                    .iter()
                    .map(|c| (c.at.clone(), c.state.clone()))
                    .collect(),
            ),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let mut line = String::from("  ");
        for (c, cell) in r.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < r.len() {
                line.push_str(&" ".repeat(widths[c] - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
