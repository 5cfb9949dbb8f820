//! What the readers of the published state (the dashboard's actions, the notifier) ask of the
//! one writer, the health task: the only way back up the one data flow.

use crate::overrides::{Override, Refused, Request};

/// What an operator asks of the agent (through the local API), with where to send the outcome.
pub enum Command {
    Override {
        request: Request,
        reply: tokio::sync::oneshot::Sender<Result<Override, Refused>>,
    },
    /// The notifier gave up on a message: recorded among the recent events.
    NotificationFailed { summary: String },
    /// An RFC 2136 update could not be applied on a server (src/publish/): a `publish_failed`
    /// event, shown and sent to the notification channels.
    PublishFailed { error: String },
}
