//! What the one writer (the health task) publishes and every reader (DNS, dashboard, API,
//! notifier, peer API) reads: the handles of the one data flow, with nothing of the agent's
//! wiring. Readers depend on this module, never on `agent`.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{broadcast, mpsc};

use crate::command::Command;
use crate::dns::{QueryCounters, Zone};
use crate::events::Event;
use crate::notify::NotifyCounters;
use crate::status::Status;

/// What the agent publishes for readers; cheap to clone, never blocks the writer.
///
/// The configuration in force is `status.load().config`: it changes with reloads, together with
/// the per-pair tables it indexes.
#[derive(Clone)]
pub struct Published {
    /// What DNS serves.
    pub zone: Arc<ArcSwap<Zone>>,
    /// What the dashboard, API and notifiers read.
    pub status: Arc<ArcSwap<Status>>,
    /// State changes as they happen; `subscribe()` to receive them.
    pub events: broadcast::Sender<Arc<Event>>,
    /// DNS responses by code, counted by the DNS handler, read by `/metrics`.
    pub dns_queries: Arc<QueryCounters>,
    /// Notifications sent and failed, counted by the notifier, read by `/metrics`.
    pub notifications: Arc<NotifyCounters>,
    /// Operators' requests (manual overrides) to the health task, the one writer.
    pub commands: mpsc::Sender<Command>,
    /// Wakes the peer puller early: this agent's own view of a pair just changed.
    pub pull_now: Arc<tokio::sync::Notify>,
    /// RFC 2136 updates and read-backs, counted by the publisher (src/publish/).
    pub publishing: Arc<crate::publish::PublishCounters>,
    /// Zone transfers and NOTIFYs, counted by `dns::xfr` and `dns::notify_secondaries`.
    pub secondaries: Arc<crate::dns::SecondaryCounters>,
    /// Transitions of the last 24 h, filled by the history recorder (src/history/).
    pub history: crate::history::Shared,
}
