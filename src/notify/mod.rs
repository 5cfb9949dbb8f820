//! Notifications: the agent's events, mailed (SMTP, lettre) and posted (webhook), off the hot path.
//!
//! ```text
//! writer ──broadcast──► dispatcher ──try_send──► bounded queue ──► email worker (digest, retry)
//!   (never waits)            (filters)              └──────────────► webhook worker (retry)
//! ```
//!
//! The writer's `broadcast::send` never blocks; the dispatcher only filters and `try_send`s,
//! dropping (with a warning) when a queue is full; workers do the slow I/O. So a dead SMTP server
//! can cost at most memory for a bounded backlog, never a probe or a DNS answer.

mod email;
pub mod message;
pub mod queue;
mod webhook;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, ConfigError, EventFilter};
use crate::events::Event;
use crate::snapshot;

pub use email::EmailSender;
pub use webhook::WebhookSender;

/// Notification outcomes, counted here and exported by `/metrics`, which reads the same `Arc`
/// (`Published::notifications`).
#[derive(Debug, Default)]
pub struct NotifyCounters {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
}

/// Events waiting per channel; beyond it new events are dropped with a warning. Generous: a
/// digest takes 50 at a time, and a 10-node storm is a few dozen events.
const QUEUE_CAPACITY: usize = 512;
/// Most events in one digest message: enough for a whole-site outage, small enough to read.
const MAX_DIGEST_EVENTS: usize = 50;

/// Why a delivery attempt failed, in operator words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryError {
    pub message: String,
    /// The server refused for good (SMTP 5xx, HTTP 4xx): retrying cannot help.
    pub permanent: bool,
}

/// The configured channels, with secrets read and transports built, ready to start.
pub struct Notifier {
    email: Option<EmailSender>,
    webhook: Option<WebhookSender>,
}

/// The result of `notify-test` for one channel.
#[derive(Debug, Clone)]
pub struct TestReport {
    /// "email" or "webhook".
    pub channel: &'static str,
    pub target: String,
    pub result: Result<(), String>,
}

impl Notifier {
    /// Reads secrets and builds the transports. `Ok(None)` when nothing is configured. A missing
    /// password variable or file is a configuration error (exit 2), naming it, never its value.
    pub fn build(config: &Config) -> Result<Option<Self>, ConfigError> {
        let file = config.path.display().to_string();
        let email = config
            .notify
            .email
            .as_ref()
            .map(|e| EmailSender::new(e, &file))
            .transpose()?;
        let webhook = config
            .notify
            .webhook
            .as_ref()
            .map(|w| WebhookSender::new(w, &file))
            .transpose()?;
        if email.is_none() && webhook.is_none() {
            return Ok(None);
        }
        Ok(Some(Self { email, webhook }))
    }

    /// Starts the dispatcher and one worker per channel. `events` must be subscribed before the
    /// writer runs. The returned task ends once `shutdown` is cancelled and what was queued
    /// has been sent or given up on; the caller bounds that wait.
    pub fn start(
        self,
        config: Arc<Config>,
        events: broadcast::Receiver<Arc<Event>>,
        snapshot: snapshot::Shared,
        counters: Arc<NotifyCounters>,
        commands: mpsc::Sender<crate::command::Command>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let mut tasks = JoinSet::new();
        let report = move |outcome: queue::Outcome| match outcome {
            queue::Outcome::Sent { .. } => {
                counters.sent.fetch_add(1, Ordering::Relaxed);
            }
            queue::Outcome::Dropped { summary, .. } => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                // Shown among the recent events; never mailed (that could loop).
                let _ = commands.try_send(crate::command::Command::NotificationFailed { summary });
            }
        };
        let mut outputs = Vec::new();
        if let (Some(sender), Some(cfg)) = (self.email, &config.notify.email) {
            info!(to = %sender.describe(), window = ?cfg.digest_window, "email notifications on");
            let policy = queue::Policy {
                window: cfg.digest_window,
                max_batch: MAX_DIGEST_EVENTS,
                retry_for: cfg.retry_for,
            };
            let channel = EmailChannel {
                sender,
                snapshot: snapshot.clone(),
            };
            start_worker(
                channel,
                cfg.events,
                policy,
                &mut tasks,
                &mut outputs,
                &shutdown,
                &report,
            );
        }
        if let (Some(sender), Some(cfg)) = (self.webhook, &config.notify.webhook) {
            info!(url = %sender.describe(), "webhook notifications on");
            // One POST per event: receivers (incident tools) expect one record per event.
            let policy = queue::Policy {
                window: Duration::ZERO,
                max_batch: 1,
                retry_for: cfg.retry_for,
            };
            let channel = WebhookChannel {
                sender,
                config: config.clone(),
            };
            start_worker(
                channel,
                cfg.events,
                policy,
                &mut tasks,
                &mut outputs,
                &shutdown,
                &report,
            );
        }
        tasks.spawn(dispatch(events, outputs, snapshot.clone(), shutdown));
        // A worker's panic is the notifier's: the agent sees it on the returned handle.
        tokio::spawn(async move {
            while let Some(done) = tasks.join_next().await {
                if let Err(e) = done
                    && e.is_panic()
                {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        })
    }

    /// Sends one test message through every channel, once, without retrying.
    pub async fn send_test(&self, config: &Config) -> Vec<TestReport> {
        let now = SystemTime::now();
        let mut reports = Vec::new();
        if let Some(sender) = &self.email {
            let mail = message::test_mail(config, now);
            reports.push(TestReport {
                channel: "email",
                target: sender.describe(),
                result: sender.send(&mail).await.map_err(|e| e.message),
            });
        }
        if let Some(sender) = &self.webhook {
            let body = message::test_json(config, now);
            reports.push(TestReport {
                channel: "webhook",
                target: sender.describe(),
                result: sender.send(&body).await.map_err(|e| e.message),
            });
        }
        reports
    }
}

/// Starts one channel's worker and gives the dispatcher its queue.
fn start_worker<C: queue::Channel>(
    channel: C,
    filter: EventFilter,
    policy: queue::Policy,
    tasks: &mut JoinSet<()>,
    outputs: &mut Vec<Output>,
    shutdown: &CancellationToken,
    report: &(impl Fn(queue::Outcome) + Clone + Send + Sync + 'static),
) {
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    outputs.push(Output {
        name: channel.name(),
        filter,
        queue: tx,
    });
    tasks.spawn(queue::run_worker(
        channel,
        policy,
        rx,
        shutdown.clone(),
        report.clone(),
    ));
}

/// A channel's queue, as the dispatcher feeds it.
struct Output {
    name: &'static str,
    filter: EventFilter,
    queue: mpsc::Sender<Arc<Event>>,
}

/// Forwards events to the channels that want them, never waiting on a slow one.
async fn dispatch(
    mut events: broadcast::Receiver<Arc<Event>>,
    outputs: Vec<Output>,
    snapshot: snapshot::Shared,
    shutdown: CancellationToken,
) {
    let forward = |event: Arc<Event>| {
        // In a cluster one agent (the reachable one with the lowest id) tells the people, so
        // they get one message per event, not one per agent.
        if !snapshot.load().status.notifying {
            tracing::debug!(event = %event.summary(), "another agent sends the cluster's notifications");
            return;
        }
        for out in &outputs {
            if !out.filter.allows(&event.kind) {
                continue;
            }
            if let Err(mpsc::error::TrySendError::Full(e)) = out.queue.try_send(event.clone()) {
                warn!(channel = out.name, event = %e.summary(), "notification queue full; event not sent");
            }
        }
    };
    loop {
        let received = tokio::select! {
            r = events.recv() => r,
            () = shutdown.cancelled() => break,
        };
        match received {
            Ok(event) => forward(event),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                warn!(
                    missed,
                    "notifier fell behind the agent; some events were not sent"
                );
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
    // Stopping: pass on what was already emitted, then close the queues so workers flush.
    loop {
        match events.try_recv() {
            Ok(event) => forward(event),
            Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                warn!(
                    missed,
                    "notifier fell behind the agent; some events were not sent"
                );
            }
            Err(_) => break,
        }
    }
}

struct EmailChannel {
    sender: EmailSender,
    snapshot: snapshot::Shared,
}

impl queue::Channel for EmailChannel {
    type Item = message::Mail;

    fn name(&self) -> &'static str {
        "email"
    }

    fn target(&self) -> String {
        self.sender.describe()
    }

    async fn prepare(&self, batch: Vec<Arc<Event>>) -> message::Mail {
        // Events are sent once the snapshot holding them is stored: this one includes the batch.
        // The status carries the configuration its tables are indexed by (it changes on reload).
        let snapshot = self.snapshot.load_full();
        let status = &snapshot.status;
        message::compose(&status.config, status, &batch, SystemTime::now())
    }

    async fn deliver(&self, mail: &message::Mail) -> Result<(), DeliveryError> {
        self.sender.send(mail).await
    }

    fn describe(&self, mail: &message::Mail) -> String {
        mail.subject.clone()
    }
}

struct WebhookChannel {
    sender: WebhookSender,
    config: Arc<Config>,
}

impl queue::Channel for WebhookChannel {
    type Item = (String, serde_json::Value);

    fn name(&self) -> &'static str {
        "webhook"
    }

    fn target(&self) -> String {
        self.sender.describe()
    }

    async fn prepare(&self, batch: Vec<Arc<Event>>) -> Self::Item {
        let zone = message::zone_name(&self.config);
        // The policy gives one event per batch; should that change, none is lost.
        let bodies: Vec<serde_json::Value> = batch
            .iter()
            .map(|e| message::webhook_json(&self.config, e))
            .collect();
        let summary = batch
            .iter()
            .map(|e| message::short_line(e, &zone))
            .collect::<Vec<_>>()
            .join("; ");
        match <[serde_json::Value; 1]>::try_from(bodies) {
            Ok([one]) => (summary, one),
            Err(many) => (summary, serde_json::Value::Array(many)),
        }
    }

    async fn deliver(&self, item: &Self::Item) -> Result<(), DeliveryError> {
        self.sender.send(&item.1).await
    }

    fn describe(&self, item: &Self::Item) -> String {
        item.0.clone()
    }
}
