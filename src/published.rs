//! What the one writer publishes and every reader (DNS, dashboard, API,
//! notifier, peer API) reads: the handles of the one data flow, with nothing of the agent's
//! wiring. Readers depend on this module, never on `agent`.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

use crate::command::Command;
use crate::dns::QueryCounters;
use crate::events::Event;
use crate::notify::NotifyCounters;
use crate::snapshot;

/// What the agent publishes for readers; cheap to clone, never blocks the writer.
///
/// The configuration in force is `snapshot.load().status.config`: it changes with reloads,
/// together with the per-pair tables it indexes.
#[derive(Clone)]
pub struct Published {
    /// The one published state: what DNS serves and what everyone else reads, stored whole.
    pub snapshot: snapshot::Shared,
    /// State changes, each sent once the snapshot that holds it is stored: a subscriber that
    /// receives one and loads `snapshot` sees the state it describes. `subscribe()` for them.
    pub events: broadcast::Sender<Arc<Event>>,
    /// DNS responses by code, counted by the DNS handler, read by `/metrics`.
    pub dns_queries: Arc<QueryCounters>,
    /// Notifications sent and failed, counted by the notifier, read by `/metrics`.
    pub notifications: Arc<NotifyCounters>,
    /// Operators' requests (manual overrides) to the one writer.
    pub commands: mpsc::Sender<Command>,
    /// Wakes the peer puller early: this agent's own view of a pair just changed.
    pub pull_now: Arc<tokio::sync::Notify>,
    /// Wakes the pusher: the stored snapshot holds a change of this agent's own view.
    pub push_now: Arc<tokio::sync::Notify>,
    /// Pushes sent and not taken, counted by the pusher (`cluster::push`), read by `/metrics`.
    pub pushes: Arc<crate::cluster::push::PushCounters>,
    /// RFC 2136 updates and read-backs, counted by the publisher (src/publish/).
    pub publishing: Arc<crate::publish::PublishCounters>,
    /// Zone transfers and NOTIFYs, counted by `dns::xfr` and `dns::notify_secondaries`.
    pub secondaries: Arc<crate::dns::SecondaryCounters>,
    /// Transitions of the last 24 h, filled by the history recorder (src/history/).
    pub history: crate::history::Shared,
}
