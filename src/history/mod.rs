//! The history of what the agent decided: per (node, check) pair its state (OK / KO / PENDING),
//! per hostname the nodes its answer named. Bounded, kept in the state directory across
//! restarts, read by the dashboard's timeline, `/api/v1/history` and `failoverd status --history`.
//!
//! The bound, whatever happens: per series the changes of the last [`WINDOW`] plus the one
//! before it (the state at the window's start), at most [`MAX_PER_SERIES`] changes, and at most
//! [`MAX_TOTAL`] changes over all series (the per-series cap shrinks when there are many
//! series). Series of pairs and hostnames no longer configured are dropped. A change is about
//! 60 bytes in the file, so the file stays below about 6 MB.
//!
//! The [`recorder`] fills it from the events the writer broadcasts, and resyncs from the
//! published status (start, reloads, a lagging receiver).

pub mod recorder;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// How far back the history goes (plus one change before, for the state at the start).
pub const WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Changes kept per series at most: a pair flapping all day keeps its last ones.
pub const MAX_PER_SERIES: usize = 1000;
/// Changes kept over all series at most.
pub const MAX_TOTAL: usize = 100_000;
/// The file in the state directory.
pub const FILE: &str = "history.json";
/// Version of the file format; a file of another version is set aside, not misread.
const FILE_VERSION: u32 = 1;

/// The history as the recorder and the readers share it. Readers lock it briefly to build a
/// view; the recorder to append a change.
pub type Shared = Arc<Mutex<History>>;

/// What a series is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Key {
    /// A (node, check) pair, by ids.
    Pair { node: String, check: String },
    /// A hostname, fully qualified without the trailing dot.
    Hostname(String),
}

/// What a series was at some time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    /// Pair: OK.
    Ok,
    /// Pair: KO.
    Ko,
    /// Pair: the agent ran but had no result yet.
    Pending,
    /// Hostname: the nodes in the answer (empty: no address).
    Nodes(Vec<String>),
    /// Nothing known: the agent was not running (or, for a hostname, not answering yet).
    Unknown,
}

impl Value {
    /// Whether the series was known (measured) then: counted in availability.
    pub fn known(&self) -> bool {
        matches!(self, Value::Ok | Value::Ko | Value::Nodes(_))
    }

    /// Whether it was available then: OK, or an answer with at least one node.
    pub fn up(&self) -> bool {
        match self {
            Value::Ok => true,
            Value::Nodes(nodes) => !nodes.is_empty(),
            _ => false,
        }
    }

    /// `OK`, `KO`, `PENDING`, `UNKNOWN`, or the node ids joined with `,` (`-` for none).
    pub fn label(&self) -> String {
        match self {
            Value::Ok => "OK".into(),
            Value::Ko => "KO".into(),
            Value::Pending => "PENDING".into(),
            Value::Unknown => "UNKNOWN".into(),
            Value::Nodes(nodes) if nodes.is_empty() => "no address".into(),
            Value::Nodes(nodes) => nodes.join(","),
        }
    }
}

/// One change: from `at` on, the series was `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub at: SystemTime,
    pub value: Value,
}

/// The changes of one series, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Series {
    pub changes: VecDeque<Change>,
    /// Set when the count cap dropped changes: before this time the series is incomplete.
    pub capped_before: Option<SystemTime>,
}

impl Series {
    pub fn last(&self) -> Option<&Value> {
        self.changes.back().map(|c| &c.value)
    }

    /// The value at `t` (`Unknown` before the first change kept).
    pub fn value_at(&self, t: SystemTime) -> Value {
        self.changes
            .iter()
            .rev()
            .find(|c| c.at <= t)
            .map(|c| c.value.clone())
            .unwrap_or(Value::Unknown)
    }

    /// Drops changes older than the window (but the last one before its start), then the
    /// oldest beyond `cap`. True if any went.
    fn prune(&mut self, now: SystemTime, cap: usize) -> bool {
        let start = now.checked_sub(WINDOW).unwrap_or(SystemTime::UNIX_EPOCH);
        let before = self.changes.len();
        while self.changes.len() >= 2 && self.changes[1].at <= start {
            self.changes.pop_front();
        }
        while self.changes.len() > cap {
            self.changes.pop_front();
            self.capped_before = self.changes.front().map(|c| c.at);
        }
        self.changes.len() != before
    }

    /// `(from, to, value)` pieces covering `[start, end]`, `Unknown` where nothing is known.
    pub fn segments(
        &self,
        start: SystemTime,
        end: SystemTime,
    ) -> Vec<(SystemTime, SystemTime, Value)> {
        let mut out = Vec::new();
        if end <= start {
            return out;
        }
        let mut cursor = start;
        let mut current = self.value_at(start);
        for change in self.changes.iter().filter(|c| c.at > start && c.at < end) {
            if change.value != current {
                out.push((cursor, change.at, current));
                cursor = change.at;
                current = change.value.clone();
            }
        }
        out.push((cursor, end, current));
        out
    }

    /// Availability over `[start, end]` in percent of the known time (`None` if none was
    /// known), and the number of transitions: changes from one known value to another, so a
    /// restart (UNKNOWN, PENDING, then the same state) is not one.
    pub fn summary(&self, start: SystemTime, end: SystemTime) -> (Option<f64>, u32) {
        let (mut known, mut up) = (Duration::ZERO, Duration::ZERO);
        for (from, to, value) in self.segments(start, end) {
            let d = to.duration_since(from).unwrap_or_default();
            if value.known() {
                known += d;
                if value.up() {
                    up += d;
                }
            }
        }
        let availability =
            (!known.is_zero()).then(|| 100.0 * up.as_secs_f64() / known.as_secs_f64());
        let mut previous = self
            .changes
            .iter()
            .rev()
            .find(|c| c.at <= start && c.value.known())
            .map(|c| &c.value);
        let mut transitions = 0;
        for change in self.changes.iter().filter(|c| c.at > start && c.at <= end) {
            if !change.value.known() {
                continue;
            }
            if previous.is_some_and(|p| *p != change.value) {
                transitions += 1;
            }
            previous = Some(&change.value);
        }
        (availability, transitions)
    }
}

/// Every series, bounded (see the module comment).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub series: BTreeMap<Key, Series>,
    /// Changed since the last [`History::to_bytes`].
    pub dirty: bool,
}

impl History {
    pub fn shared(self) -> Shared {
        Arc::new(Mutex::new(self))
    }

    /// Records that `key` is `value` from `at` on; nothing if it already was. A time before the
    /// last change (a clock step back) is moved up to it, so changes stay in order. True if
    /// recorded.
    pub fn record(&mut self, key: Key, at: SystemTime, value: Value) -> bool {
        // Milliseconds, as the file and the API keep them.
        let at = from_millis(millis(at));
        let cap = self.per_series_cap();
        let series = self.series.entry(key).or_default();
        if series.last() == Some(&value) {
            return false;
        }
        let at = series.changes.back().map_or(at, |c| c.at.max(at));
        series.changes.push_back(Change { at, value });
        series.prune(at, cap);
        self.dirty = true;
        true
    }

    /// Records `Unknown` from `at` on for every series (the agent stopped then).
    pub fn mark_unknown(&mut self, at: SystemTime) {
        let keys: Vec<Key> = self.series.keys().cloned().collect();
        for key in keys {
            self.record(key, at, Value::Unknown);
        }
    }

    /// Drops the series `keep` says no.
    pub fn retain(&mut self, mut keep: impl FnMut(&Key) -> bool) {
        let before = self.series.len();
        self.series.retain(|k, _| keep(k));
        self.dirty |= self.series.len() != before;
    }

    /// The per-series cap with the number of series there is now.
    pub fn per_series_cap(&self) -> usize {
        (MAX_TOTAL / self.series.len().max(1)).clamp(2, MAX_PER_SERIES)
    }

    pub fn total(&self) -> usize {
        self.series.values().map(|s| s.changes.len()).sum()
    }

    /// Applies the bound: changes older than the window go (but the last one before its start),
    /// then the oldest beyond the per-series cap.
    pub fn prune(&mut self, now: SystemTime) {
        let cap = self.per_series_cap();
        for series in self.series.values_mut() {
            self.dirty |= series.prune(now, cap);
        }
    }

    /// The file's content; clears `dirty`.
    pub fn to_bytes(&mut self, saved_at: SystemTime) -> Vec<u8> {
        self.dirty = false;
        let file = File {
            version: FILE_VERSION,
            saved_at_ms: millis(saved_at),
            series: self
                .series
                .iter()
                .map(|(key, s)| FileSeries {
                    key: key.clone(),
                    capped_before_ms: s.capped_before.map(millis),
                    changes: s
                        .changes
                        .iter()
                        .map(|c| (millis(c.at), c.value.clone()))
                        .collect(),
                })
                .collect(),
        };
        serde_json::to_vec(&file).expect("the history serializes")
    }

    /// Reads a file written by [`History::to_bytes`]; returns the history and when it was saved.
    pub fn from_bytes(bytes: &[u8]) -> Result<(History, SystemTime), String> {
        let file: File = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if file.version != FILE_VERSION {
            return Err(format!(
                "format version {} (this agent reads {FILE_VERSION})",
                file.version
            ));
        }
        let mut history = History::default();
        for s in file.series {
            let mut series = Series {
                changes: VecDeque::new(),
                capped_before: s.capped_before_ms.map(from_millis),
            };
            for (at, value) in s.changes {
                let at = from_millis(at);
                // Out of order or repeated: a hand-edited file; keep what stays consistent.
                if series
                    .changes
                    .back()
                    .is_some_and(|c| c.at > at || c.value == value)
                {
                    continue;
                }
                series.changes.push_back(Change { at, value });
            }
            history.series.insert(s.key, series);
        }
        Ok((history, from_millis(file.saved_at_ms)))
    }

    /// The history in the state directory at start: what was saved, UNKNOWN from the time it
    /// was saved (the agent was not running since), pruned to `now`. A missing file is an
    /// empty history; a damaged one too, with the reason returned for the log.
    pub fn load(state: &crate::state_dir::StateDir, now: SystemTime) -> (History, Option<String>) {
        let bytes = match state.read(FILE) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return (History::default(), None),
            Err(e) => return (History::default(), Some(e.to_string())),
        };
        match History::from_bytes(&bytes) {
            Ok((mut history, saved_at)) => {
                history.mark_unknown(saved_at.min(now));
                history.prune(now);
                (history, None)
            }
            Err(e) => (History::default(), Some(e)),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    saved_at_ms: u64,
    series: Vec<FileSeries>,
}

#[derive(Serialize, Deserialize)]
struct FileSeries {
    key: Key,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    capped_before_ms: Option<u64>,
    changes: Vec<(u64, Value)>,
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn from_millis(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// RFC 3339 in UTC with milliseconds (changes can be a few hundred milliseconds apart).
pub fn rfc3339_ms(t: SystemTime) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        Err(_) => "invalid time".to_string(),
    }
}

#[cfg(test)]
mod tests;
