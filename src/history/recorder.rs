//! The task that fills the history: it follows the events the writer broadcasts (check
//! down/up, answer changed) and, every second, resyncs from the published status what events
//! do not carry (the first results and answers at start, pairs a reload added, whatever a
//! lagging receiver missed). Writes the file when it changed (at most every
//! [`WRITE_DEBOUNCE`]), every [`HEARTBEAT`] (so a restart knows until when the agent ran), and
//! at shutdown.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{FILE, Key, Shared, Value};
use crate::events::{Event, EventKind};
use crate::health::State;
use crate::snapshot;
use crate::state_dir::StateDir;
use crate::status::Status;

/// The least time between two writes of the file while changes come in.
pub const WRITE_DEBOUNCE: Duration = Duration::from_secs(2);
/// The file is written at least this often, to record until when the agent ran.
pub const HEARTBEAT: Duration = Duration::from_secs(60);
/// How often the status is compared with the history.
const RESYNC_PERIOD: Duration = Duration::from_secs(1);
/// After this long without the status catching up with the events, resync anyway.
const RESYNC_PATIENCE: Duration = Duration::from_secs(10);

/// Records until `shutdown`, then writes the file a last time.
pub async fn run(
    history: Shared,
    state: StateDir,
    snapshot: snapshot::Shared,
    mut events: broadcast::Receiver<Arc<Event>>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let mut recorder = Recorder {
        history,
        state,
        last_event: None,
        behind_since: None,
        last_write: Instant::now(),
        write_failing: false,
    };
    let mut tick = tokio::time::interval(RESYNC_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut open = true;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            received = events.recv(), if open => match received {
                Ok(event) => recorder.apply(&event),
                Err(RecvError::Lagged(missed)) => {
                    // Not silent: the status brings the states back at the next resync; only
                    // the changes in between are lost.
                    warn!(missed, "the history fell behind the events; resyncing from the current status (changes in between are not recorded)");
                    recorder.last_event = None;
                    recorder.behind_since = None;
                }
                Err(RecvError::Closed) => open = false,
            },
            _ = tick.tick() => {
                recorder.resync(&snapshot.load().status, SystemTime::now());
                recorder.maybe_write(false).await;
            }
        }
    }
    recorder.resync(&snapshot.load().status, SystemTime::now());
    recorder.maybe_write(true).await;
    Ok(())
}

struct Recorder {
    history: Shared,
    state: StateDir,
    /// The last state event received: the status is caught up when it has it too.
    last_event: Option<Arc<Event>>,
    /// Since when the status has not caught up.
    behind_since: Option<Instant>,
    last_write: Instant,
    write_failing: bool,
}

/// Whether an event is one the history records.
fn is_state_event(event: &Event) -> bool {
    matches!(
        event.kind,
        EventKind::CheckDown { .. } | EventKind::CheckUp { .. } | EventKind::AnswerChanged { .. }
    )
}

impl Recorder {
    fn apply(&mut self, event: &Arc<Event>) {
        let (key, value) = match &event.kind {
            EventKind::CheckDown { node, check, .. } => (pair(node, check), Value::Ko),
            EventKind::CheckUp { node, check, .. } => (pair(node, check), Value::Ok),
            EventKind::AnswerChanged {
                hostname, to_nodes, ..
            } => (
                Key::Hostname(hostname.clone()),
                Value::Nodes(to_nodes.clone()),
            ),
            _ => return,
        };
        self.last_event = Some(event.clone());
        self.history
            .lock()
            .expect("history lock")
            .record(key, event.at, value);
    }

    /// Brings the history in line with `status`, once the status has every state event received
    /// (else a status published a moment before an event would undo it).
    fn resync(&mut self, status: &Status, now: SystemTime) {
        let newest = status.events.iter().rev().find(|e| is_state_event(e));
        let caught_up = match (&self.last_event, newest) {
            (None, None) => true,
            (Some(mine), Some(theirs)) => Arc::ptr_eq(mine, theirs),
            _ => false,
        };
        if !caught_up {
            let since = *self.behind_since.get_or_insert_with(Instant::now);
            if since.elapsed() < RESYNC_PATIENCE {
                return;
            }
        }
        self.behind_since = None;
        let config = &status.config;
        let mut history = self.history.lock().expect("history lock");
        let mut keys = std::collections::HashSet::new();
        for p in 0..config.pair_count().min(status.effective.len()) {
            let (n, c) = config.pair(p);
            let key = pair(&config.nodes[n].id, &config.checks[c].id);
            let effective = &status.effective[p];
            let value = match effective.state {
                State::Up => Value::Ok,
                State::Down => Value::Ko,
                State::Unknown => Value::Pending,
            };
            history.record(key.clone(), effective.since.unwrap_or(now), value);
            keys.insert(key);
        }
        for (h, hostname) in config.hostnames.iter().enumerate() {
            let key = Key::Hostname(hostname.fqdn.to_ascii().trim_end_matches('.').to_string());
            if status.ready
                && let Some(decision) = status.decisions.get(h)
            {
                let nodes = decision
                    .nodes
                    .iter()
                    .map(|&n| config.nodes[n].id.clone())
                    .collect();
                history.record(key.clone(), now, Value::Nodes(nodes));
            }
            keys.insert(key);
        }
        history.retain(|k| keys.contains(k));
        history.prune(now);
    }

    /// Writes the file if it changed and the debounce is over, or the heartbeat is due, or
    /// `last` (shutdown).
    async fn maybe_write(&mut self, last: bool) {
        let since = self.last_write.elapsed();
        let bytes = {
            let mut history = self.history.lock().expect("history lock");
            let due = last || since >= HEARTBEAT || (history.dirty && since >= WRITE_DEBOUNCE);
            if !due {
                return;
            }
            history.to_bytes(SystemTime::now())
        };
        self.last_write = Instant::now();
        let state = self.state.clone();
        let written = tokio::task::spawn_blocking(move || state.write(FILE, &bytes))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r);
        match written {
            Ok(()) if self.write_failing => {
                self.write_failing = false;
                info!(file = FILE, "the history is written again");
            }
            Ok(()) => {}
            Err(error) => {
                // Marked dirty again so the next tick retries; logged once per failure spell.
                self.history.lock().expect("history lock").dirty = true;
                if !self.write_failing {
                    self.write_failing = true;
                    warn!(%error, file = FILE, state_dir = %self.state.path().display(),
                        "cannot write the history; it is kept in memory and written again when the state directory is writable");
                }
            }
        }
    }
}

fn pair(node: &str, check: &str) -> Key {
    Key::Pair {
        node: node.to_string(),
        check: check.to_string(),
    }
}
