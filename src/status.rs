//! The agent's current view for readers other than DNS (dashboard, API, notifiers): an
//! immutable value the health task republishes, so readers never wait on it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::Config;
use crate::decide::Decision;
use crate::events::Event;
use crate::health::PairHealth;

/// How many recent events are kept for display.
pub const RECENT_EVENTS: usize = 100;

#[derive(Debug, Clone)]
pub struct Status {
    pub config: Arc<Config>,
    pub started_at: SystemTime,
    /// False until the first full round of checks is done (DNS answers SERVFAIL until then).
    pub ready: bool,
    /// SOA serial of the zone being served.
    pub serial: u32,
    /// Per (node, check) pair, indexed by `Config::pair_index`.
    pub pairs: Vec<PairHealth>,
    /// Per hostname, in config order; empty until ready.
    pub decisions: Vec<Decision>,
    /// Newest last, at most `RECENT_EVENTS`.
    pub events: VecDeque<Arc<Event>>,
}

impl Status {
    pub fn new(config: Arc<Config>, serial: u32) -> Self {
        let pairs = vec![PairHealth::new(); config.pair_count()];
        Self {
            config,
            started_at: SystemTime::now(),
            ready: false,
            serial,
            pairs,
            decisions: Vec::new(),
            events: VecDeque::new(),
        }
    }
}
