//! Delivery off the hot path: a bounded queue per channel, digest batching, retry with backoff.
//!
//! | step      | rule                                                                           |
//! |-----------|--------------------------------------------------------------------------------|
//! | batch     | the first event opens a window; events queued before it closes join the batch  |
//! |           | (up to `max_batch`); a zero window sends every event alone                      |
//! | deliver   | success → next batch                                                           |
//! | permanent | (SMTP 5xx, HTTP 4xx) → dropped at once with an error log: retrying cannot help  |
//! | transient | → retried after 1 s, 2 s, 4 s … at most 60 s apart, while `retry_for` allows   |
//! | gave up   | → dropped with an error log; later batches are still tried                     |
//! | shutdown  | the open window closes at once; a waiting retry is tried once more, now        |

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::DeliveryError;
use crate::config::format_duration;
use crate::events::Event;

/// Wait before the first retry; doubled after each failure.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One way of notifying (email, webhook), as the worker drives it.
pub trait Channel: Send + Sync + 'static {
    /// What one delivery carries, built once and resent as is on retries.
    type Item: Send + Sync;

    /// "email" or "webhook", for logs.
    fn name(&self) -> &'static str;
    /// Where it goes, for logs (never a secret).
    fn target(&self) -> String;
    /// Builds the delivery for a batch of events.
    fn prepare(&self, batch: Vec<Arc<Event>>) -> impl Future<Output = Self::Item> + Send;
    /// One attempt.
    fn deliver(&self, item: &Self::Item) -> impl Future<Output = Result<(), DeliveryError>> + Send;
    /// A one-line description of the item for logs (the mail subject, the event summary).
    fn describe(&self, item: &Self::Item) -> String;
}

/// How a channel groups and retries.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Events within this time of the first go out together; zero sends each alone.
    pub window: Duration,
    /// Most events in one delivery: a storm is split rather than becoming one huge message.
    pub max_batch: usize,
    /// How long a failed delivery is retried before it is dropped.
    pub retry_for: Duration,
}

/// What happened to one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent {
        attempts: u32,
    },
    /// Given up on; `summary` says what was not delivered, where, and why.
    Dropped {
        attempts: u32,
        summary: String,
    },
}

/// Runs until `queue` is closed and drained: the dispatcher closes it at shutdown. `report`
/// hears the outcome of every delivery (for the metrics).
pub async fn run_worker<C: Channel>(
    channel: C,
    policy: Policy,
    mut queue: mpsc::Receiver<Arc<Event>>,
    shutdown: CancellationToken,
    report: impl Fn(Outcome) + Send + 'static,
) {
    let max_batch = policy.max_batch.max(1);
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        let deadline = Instant::now() + policy.window;
        while !policy.window.is_zero() && batch.len() < max_batch {
            // After shutdown only what is already queued joins; nothing waits for the window.
            if shutdown.is_cancelled() {
                match queue.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
                continue;
            }
            tokio::select! {
                biased;
                e = queue.recv() => match e {
                    Some(e) => batch.push(e),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
                () = shutdown.cancelled() => {}
            }
        }
        report(deliver_batch(&channel, &policy, batch, &shutdown).await);
    }
}

async fn deliver_batch<C: Channel>(
    channel: &C,
    policy: &Policy,
    batch: Vec<Arc<Event>>,
    shutdown: &CancellationToken,
) -> Outcome {
    let events = batch.len();
    let item = channel.prepare(batch).await;
    deliver_with_retry(channel, policy, &item, events, shutdown).await
}

/// Attempts `item` until it is sent, refused for good, or `retry_for` is spent.
pub async fn deliver_with_retry<C: Channel>(
    channel: &C,
    policy: &Policy,
    item: &C::Item,
    events: usize,
    shutdown: &CancellationToken,
) -> Outcome {
    let started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let error = match channel.deliver(item).await {
            Ok(()) => {
                info!(
                    channel = channel.name(),
                    to = %channel.target(),
                    what = %channel.describe(item),
                    events,
                    attempts,
                    "notification sent"
                );
                return Outcome::Sent { attempts };
            }
            Err(e) => e,
        };
        let give_up = if error.permanent {
            Some("refused by the server; not retried")
        } else if shutdown.is_cancelled() {
            Some("the agent is stopping")
        } else if started.elapsed() + backoff > policy.retry_for {
            Some("retry time is over")
        } else {
            None
        };
        if let Some(why) = give_up {
            error!(
                channel = channel.name(),
                to = %channel.target(),
                what = %channel.describe(item),
                error = %error.message,
                attempts,
                retried_for = %format_duration(Duration::from_secs(started.elapsed().as_secs())),
                "notification dropped: {why}"
            );
            return Outcome::Dropped {
                attempts,
                summary: format!(
                    "{} to {} not delivered ({why}): {}",
                    channel.name(),
                    channel.target(),
                    error.message
                ),
            };
        }
        warn!(
            channel = channel.name(),
            to = %channel.target(),
            error = %error.message,
            attempt = attempts,
            retry_in = %format_duration(backoff),
            "notification not sent; will retry"
        );
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            // Stopping: one last attempt now instead of waiting.
            () = shutdown.cancelled() => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::events::EventKind;

    /// When each delivery went out, and the summaries of its events.
    type Deliveries = Arc<Mutex<Vec<(Duration, Vec<String>)>>>;

    /// Records deliveries (with the paused clock's time) and fails the first `fail` attempts.
    #[derive(Clone)]
    struct Fake {
        start: Instant,
        log: Deliveries,
        attempts: Arc<Mutex<Vec<Duration>>>,
        fail: Arc<Mutex<u32>>,
        permanent: bool,
    }

    impl Fake {
        fn new(fail: u32, permanent: bool) -> Self {
            Self {
                start: Instant::now(),
                log: Arc::default(),
                attempts: Arc::default(),
                fail: Arc::new(Mutex::new(fail)),
                permanent,
            }
        }
        fn deliveries(&self) -> Vec<(Duration, Vec<String>)> {
            self.log.lock().unwrap().clone()
        }
    }

    impl Channel for Fake {
        type Item = Vec<String>;
        fn name(&self) -> &'static str {
            "fake"
        }
        fn target(&self) -> String {
            "nowhere".into()
        }
        async fn prepare(&self, batch: Vec<Arc<Event>>) -> Vec<String> {
            batch.iter().map(|e| e.summary()).collect()
        }
        async fn deliver(&self, item: &Vec<String>) -> Result<(), DeliveryError> {
            let now = self.start.elapsed();
            self.attempts.lock().unwrap().push(now);
            let mut fail = self.fail.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                return Err(DeliveryError {
                    message: "connection refused".into(),
                    permanent: self.permanent,
                });
            }
            self.log.lock().unwrap().push((now, item.clone()));
            Ok(())
        }
        fn describe(&self, item: &Vec<String>) -> String {
            item.join("; ")
        }
    }

    fn down(node: &str) -> Arc<Event> {
        Arc::new(Event::now(EventKind::CheckDown {
            node: node.into(),
            check: "web".into(),
            error: "HTTP 503".into(),
        }))
    }

    fn policy(window_ms: u64, retry_for_s: u64) -> Policy {
        Policy {
            window: Duration::from_millis(window_ms),
            max_batch: 50,
            retry_for: Duration::from_secs(retry_for_s),
        }
    }

    fn spawn(
        fake: &Fake,
        policy: Policy,
    ) -> (
        mpsc::Sender<Arc<Event>>,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        let (tx, rx) = mpsc::channel(16);
        let token = CancellationToken::new();
        let task = tokio::spawn(run_worker(fake.clone(), policy, rx, token.clone(), |_| {}));
        (tx, token, task)
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_within_the_window_is_one_digest_and_later_events_start_a_new_one() {
        let fake = Fake::new(0, false);
        let (tx, _token, task) = spawn(&fake, policy(10_000, 60));
        for n in ["node1", "node2", "node3"] {
            tx.send(down(n)).await.unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        // 6 s after the first event: nothing sent yet, the window is still open.
        assert!(fake.deliveries().is_empty());
        tokio::time::sleep(Duration::from_secs(5)).await;
        tx.send(down("node4")).await.unwrap();
        drop(tx);
        task.await.unwrap();
        let got = fake.deliveries();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            got[0].0,
            Duration::from_secs(10),
            "sent when the window closes"
        );
        assert_eq!(
            got[0].1,
            [
                "node1 web down: HTTP 503",
                "node2 web down: HTTP 503",
                "node3 web down: HTTP 503"
            ]
        );
        assert_eq!(got[1].1, ["node4 web down: HTTP 503"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_window_sends_each_event_alone_and_max_batch_splits_a_storm() {
        let fake = Fake::new(0, false);
        let (tx, _token, task) = spawn(&fake, policy(0, 60));
        tx.send(down("node1")).await.unwrap();
        tx.send(down("node2")).await.unwrap();
        drop(tx);
        task.await.unwrap();
        let got = fake.deliveries();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, Duration::ZERO, "no waiting with a zero window");

        let fake = Fake::new(0, false);
        let mut small = policy(1000, 60);
        small.max_batch = 2;
        let (tx, _token, task) = spawn(&fake, small);
        for n in ["a", "b", "c", "d", "e"] {
            tx.send(down(n)).await.unwrap();
        }
        drop(tx);
        task.await.unwrap();
        let sizes: Vec<usize> = fake.deliveries().iter().map(|d| d.1.len()).collect();
        assert_eq!(sizes, [2, 2, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_send_is_retried_with_doubling_backoff_until_it_goes_through() {
        let fake = Fake::new(3, false);
        let (tx, _token, task) = spawn(&fake, policy(0, 60));
        tx.send(down("node1")).await.unwrap();
        drop(tx);
        task.await.unwrap();
        let attempts = fake.attempts.lock().unwrap().clone();
        let secs: Vec<u64> = attempts.iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, [0, 1, 3, 7], "backoff 1 s, 2 s, 4 s");
        assert_eq!(fake.deliveries().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_is_capped_and_the_message_is_dropped_when_retry_for_is_over() {
        let fake = Fake::new(u32::MAX, false);
        let (tx, _token, task) = spawn(&fake, policy(0, 300));
        tx.send(down("node1")).await.unwrap();
        drop(tx);
        task.await.unwrap();
        let attempts = fake.attempts.lock().unwrap().clone();
        let secs: Vec<u64> = attempts.iter().map(|d| d.as_secs()).collect();
        // 1, 2, 4, 8, 16, 32, then 60 s apart; the next wait would pass 300 s.
        assert_eq!(secs, [0, 1, 3, 7, 15, 31, 63, 123, 183, 243]);
        assert!(fake.deliveries().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_refusal_is_not_retried() {
        let fake = Fake::new(1, true);
        let (tx, _token, task) = spawn(&fake, policy(0, 60));
        tx.send(down("node1")).await.unwrap();
        tx.send(down("node2")).await.unwrap();
        drop(tx);
        task.await.unwrap();
        assert_eq!(fake.attempts.lock().unwrap().len(), 2, "one try each");
        let got = fake.deliveries();
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].1,
            ["node2 web down: HTTP 503"],
            "the next one still goes"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_closes_the_window_and_flushes_at_once() {
        let fake = Fake::new(0, false);
        let (tx, token, task) = spawn(&fake, policy(10_000, 60));
        tx.send(down("node1")).await.unwrap();
        tx.send(down("node2")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        token.cancel();
        drop(tx);
        task.await.unwrap();
        let got = fake.deliveries();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.len(), 2);
        assert!(
            got[0].0 < Duration::from_secs(1),
            "did not wait out the window"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_during_a_retry_wait_tries_once_more_then_gives_up() {
        let fake = Fake::new(u32::MAX, false);
        let (tx, token, task) = spawn(&fake, policy(0, 600));
        tx.send(down("node1")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(3500)).await; // attempts at 0, 1, 3 s
        token.cancel();
        drop(tx);
        task.await.unwrap();
        let secs: Vec<u64> = fake
            .attempts
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.as_secs())
            .collect();
        assert_eq!(
            secs,
            [0, 1, 3, 3],
            "one last attempt at shutdown, then stop"
        );
    }
}
