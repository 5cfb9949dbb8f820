//! Logging: what is logged by default, and the guarantees that a DNS packet cannot flood the
//! log nor make an answering thread wait on it.
//!
//! - Lines are written by a thread of their own (`tracing-appender`, lossy): when stderr stalls
//!   (a full pipe, a stuck journald), lines are dropped, never waited for.
//! - Whatever a packet can make us log (hickory's parser and server, our DNS module) shares a
//!   budget of `PACKET_LINES_PER_SECOND`; lines beyond it are dropped (and counted).
//! - hickory-proto warns on every malformed EDNS option it reads: kept at error by default.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// The filter when `RUST_LOG` is not set. hickory-server logs two lines per query at info, and
/// hickory-proto a warning per malformed EDNS option.
pub const DEFAULT_FILTER: &str = "info,hickory_server=warn,hickory_net=warn,hickory_proto=error";

/// Lines a second, all packet-driven targets together.
pub const PACKET_LINES_PER_SECOND: u64 = 20;

/// Lines waiting for the writer thread before new ones are dropped.
const BUFFERED_LINES: usize = 10_000;

/// Whether lines from `target` can be caused by a DNS packet from anyone.
fn packet_driven(target: &str) -> bool {
    target.starts_with("hickory") || target.starts_with("failoverd::dns")
}

/// A per-second budget for packet-driven lines: two atomics, no lock, so a DNS thread that logs
/// pays a few nanoseconds whether the line passes or not.
#[derive(Debug, Default)]
pub struct PacketLimit {
    /// The second (since the epoch) the count is for, and how many passed in it, packed.
    window: AtomicU64,
    /// Lines dropped since the last one that passed.
    dropped: AtomicU64,
}

impl PacketLimit {
    /// Whether one more line may pass at `second`.
    fn admit(&self, second: u64) -> bool {
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let (at, count) = (current >> 16, current & 0xFFFF);
            let next = if at == second {
                if count >= PACKET_LINES_PER_SECOND {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
                current + 1
            } else {
                (second << 16) | 1
            };
            match self.window.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }

    /// Lines dropped since this was last asked.
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }
}

impl<S: Subscriber> Layer<S> for PacketLimit {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        if !packet_driven(event.metadata().target()) {
            return true;
        }
        let second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.admit(second)
    }
}

/// Logs to stderr through the writer thread; `RUST_LOG` overrides the filter. Keep the guard
/// until exit: dropping it flushes what is still queued.
pub fn init() -> WorkerGuard {
    use std::io::IsTerminal;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name("log-writer")
        .finish(std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal());
    tracing_subscriber::registry()
        .with(filter)
        .with(PacketLimit::default())
        .with(fmt)
        .init();
    guard
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_lines_pass_up_to_the_budget_each_second() {
        let limit = PacketLimit::default();
        let passed = (0..1000).filter(|_| limit.admit(7)).count() as u64;
        assert_eq!(passed, PACKET_LINES_PER_SECOND);
        assert_eq!(limit.take_dropped(), 1000 - PACKET_LINES_PER_SECOND);
        assert!(limit.admit(8), "a new second, a new budget");
        assert!(packet_driven("hickory_proto::op::edns"));
        assert!(packet_driven("failoverd::dns::udp"));
        assert!(!packet_driven("failoverd::agent::writer"));
    }
}
