//! The dashboard's 24-hour timeline: the history turned into rows of SVG rectangles, drawn by
//! `templates/dashboard/history.html` (inline SVG, no script, no style attribute: the CSP's
//! `style-src 'self'` holds, colours come from classes in the stylesheet).
//!
//! Each row's SVG is 1440 units wide (one per minute) and scales to the page's width
//! (`viewBox`, `width="100%"`, `preserveAspectRatio="none"`), so it fits a phone; the labels,
//! availability and transitions are HTML beside it, so they stay readable at any width.

use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::dashboard::history::view::{percent, period_start, series_in_order};
use crate::dashboard::view::{compact_duration, local_from_rfc3339};
use crate::history::{History, Series, Value};

/// Width of a row in SVG units: one per minute of the window.
pub const WIDTH: f64 = 1440.0;
/// Node colours cycle through this many classes (`n0` … `n5` in the stylesheet).
const NODE_COLOURS: usize = 6;

/// What the page's history section shows.
pub struct Timeline {
    /// Axis labels, local time, oldest first (five, evenly spaced).
    pub ticks: Vec<String>,
    /// `Last 24 hours`, or since when, for a younger history.
    pub title: String,
    /// Vertical grid lines, in SVG units.
    pub grid: Vec<String>,
    /// Answers per hostname, then state per check.
    pub groups: Vec<Group>,
}

/// A titled list of rows.
pub struct Group {
    pub title: String,
    pub rows: Vec<Row>,
}

/// One series.
pub struct Row {
    /// `app.example.com`, or `node1 web`.
    pub label: String,
    /// `data-series` for tests: `hostname:app.example.com` or `pair:node1/web`.
    pub id: String,
    /// The value now, in words.
    pub now: String,
    /// CSS class of the value now.
    pub now_class: String,
    pub availability: String,
    pub transitions: String,
    /// Nodes seen in the answer, with their colour class (hostnames only).
    pub legend: Vec<(String, String)>,
    pub rects: Vec<Rect>,
}

/// One piece of a row: a value over a time range.
pub struct Rect {
    /// Position and width in SVG units, written with two decimals.
    pub x: String,
    pub width: String,
    pub y: String,
    pub height: String,
    /// `ok`, `ko`, `pending`, `unknown`, `noaddr`, or `n0`…`n5` (a node).
    pub class: String,
    /// The tooltip: value and local times.
    pub title: String,
}

impl Timeline {
    pub fn build(history: &History, config: &Config, now: SystemTime) -> Self {
        // The last 24 h; an agent with less history than that shows what it has (at least
        // 10 s), so a young history is not a hair at the right end.
        let earliest = history
            .series
            .values()
            .filter_map(|s| s.changes.front().map(|c| c.at))
            .min()
            .unwrap_or(now);
        let start = period_start(None, now)
            .max(earliest)
            .min(now - Duration::from_secs(10));
        let span = now
            .duration_since(start)
            .unwrap_or_default()
            .as_secs_f64()
            .max(1.0);
        let to_x = |t: SystemTime| {
            t.duration_since(start).unwrap_or_default().as_secs_f64() / span * WIDTH
        };
        let local = |t: SystemTime| local_from_rfc3339(&crate::dashboard::view::rfc3339(t), now);
        let ticks = (0..=4)
            .map(|i| local(start + Duration::from_secs_f64(span * i as f64 / 4.0)))
            .collect();
        let grid = (1..4)
            .map(|i| format!("{:.0}", WIDTH * i as f64 / 4.0))
            .collect();
        let node_class = |id: &str| {
            let index = config.nodes.iter().position(|n| n.id == id).unwrap_or(0);
            format!("n{}", index % NODE_COLOURS)
        };
        let class_of = |value: &Value| match value {
            Value::Ok => "ok".to_string(),
            Value::Ko => "ko".into(),
            Value::Pending => "pending".into(),
            Value::Unknown => "unknown".into(),
            Value::Nodes(nodes) if nodes.is_empty() => "noaddr".into(),
            // Several nodes (mode: all): the colour of the first, all named in the tooltip.
            Value::Nodes(nodes) => node_class(&nodes[0]),
        };
        let words = |value: &Value| match value {
            Value::Unknown => "no data (agent not running or not answering yet)".to_string(),
            Value::Pending => "PENDING (no result yet)".into(),
            other => other.label(),
        };
        let rects = |s: &Series| -> Vec<Rect> {
            s.segments(start, now)
                .into_iter()
                .flat_map(|(from, to, value)| {
                    let (x0, x1) = (to_x(from), to_x(to));
                    let title = format!(
                        "{}: {} – {} ({})",
                        words(&value),
                        local(from),
                        local(to),
                        compact_duration(to.duration_since(from).unwrap_or_default())
                    );
                    // Several nodes answering (mode: all): one stripe each, stacked.
                    let classes: Vec<String> = match &value {
                        Value::Nodes(nodes) if nodes.len() > 1 => {
                            nodes.iter().map(|n| node_class(n)).collect()
                        }
                        other => vec![class_of(other)],
                    };
                    let height = 10.0 / classes.len() as f64;
                    classes
                        .into_iter()
                        .enumerate()
                        .map(|(i, class)| Rect {
                            x: format!("{x0:.2}"),
                            // At least a hair, so a short KO stays visible.
                            width: format!("{:.2}", (x1 - x0).max(0.8)),
                            y: format!("{:.2}", i as f64 * height),
                            height: format!("{height:.2}"),
                            class,
                            title: title.clone(),
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let empty = Series::default();
        let (hostnames, pairs) = series_in_order(history, config);
        let summary = |s: &Series| {
            let (availability, transitions) = s.summary(start, now);
            let capped = s.capped_before.is_some_and(|t| t > start);
            (
                percent(availability),
                format!(
                    "{}{} transition{}",
                    transitions,
                    if capped { "+" } else { "" },
                    if transitions == 1 { "" } else { "s" }
                ),
            )
        };
        let hostnames = hostnames
            .into_iter()
            .map(|(name, series)| {
                let s = series.unwrap_or(&empty);
                let (availability, transitions) = summary(s);
                let mut legend: Vec<(String, String)> = Vec::new();
                for change in &s.changes {
                    if let Value::Nodes(nodes) = &change.value {
                        for n in nodes {
                            if !legend.iter().any(|(id, _)| id == n) {
                                legend.push((n.clone(), node_class(n)));
                            }
                        }
                    }
                }
                let current = s.last().cloned().unwrap_or(Value::Unknown);
                Row {
                    id: format!("hostname:{name}"),
                    label: name,
                    now: words(&current),
                    now_class: class_of(&current),
                    availability,
                    transitions,
                    legend,
                    rects: rects(s),
                }
            })
            .collect();
        let pairs = pairs
            .into_iter()
            .map(|(node, check, series)| {
                let s = series.unwrap_or(&empty);
                let (availability, transitions) = summary(s);
                let current = s.last().cloned().unwrap_or(Value::Unknown);
                Row {
                    id: format!("pair:{node}/{check}"),
                    label: format!("{node} {check}"),
                    now: current.label(),
                    now_class: class_of(&current),
                    availability,
                    transitions,
                    legend: Vec::new(),
                    rects: rects(s),
                }
            })
            .collect();
        let covered = now.duration_since(start).unwrap_or_default();
        let title = if covered >= crate::history::WINDOW - Duration::from_secs(60) {
            "Last 24 hours".to_string()
        } else {
            format!(
                "History: the last {} (recorded so far; up to 24 h are kept)",
                compact_duration(covered)
            )
        };
        Self {
            ticks,
            title,
            grid,
            groups: vec![
                Group {
                    title: "Answers per hostname".into(),
                    rows: hostnames,
                },
                Group {
                    title: "State per check".into(),
                    rows: pairs,
                },
            ],
        }
    }
}
