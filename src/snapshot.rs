//! The one published state: the answers DNS serves and the status every other reader shows,
//! stored whole by the one writer in one `ArcSwap`, so that no reader ever sees one without the
//! other, and an event a reader receives is already in the snapshot it loads next.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::dns::{Answers, Serves, Zone};
use crate::status::Status;

/// One immutable state of the agent. The writer replaces it whole; readers load it once and
/// read both halves from the same load.
#[derive(Debug)]
pub struct Snapshot {
    /// What DNS serves: the zone with its wire answers prebuilt. Shared by the snapshots that
    /// follow until the zone changes (most snapshots only carry new latencies or events).
    pub answers: Arc<Answers>,
    /// What the dashboard, API, notifiers, history and the other agents read.
    pub status: Status,
}

impl Snapshot {
    pub fn new(answers: Arc<Answers>, status: Status) -> Self {
        Self { answers, status }
    }

    /// The zone being served.
    pub fn zone(&self) -> &Zone {
        self.answers.zone()
    }
}

impl Serves for Snapshot {
    fn answers(&self) -> &Answers {
        &self.answers
    }
}

/// The handle readers hold: `load()` gives the snapshot in force, never waiting on the writer.
pub type Shared = Arc<ArcSwap<Snapshot>>;
