//! The pusher: when this agent's own view of a pair changes, it sends its answer (the one a pull
//! would get) to every peer at once, signed as a pull is, so the others count the new vote now
//! rather than at their next pull. Pulls stay the safety net: a push that fails is not retried.
//!
//! Pushes happen only on change (the writer wakes this task after storing the snapshot that
//! holds the change), at most once per [`MIN_GAP`]; changes in between go out together.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::OBSERVATIONS_PATH;
use super::auth::{self, HEADER_AGENT, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIME, Secret};
use super::server::own_answer;
use crate::check::describe_error;
use crate::snapshot;

/// Shortest time between two pushes to the same peers.
pub const MIN_GAP: Duration = Duration::from_millis(20);
/// How long one push may take; a peer slower than this hears it at its next pull.
const TIMEOUT: Duration = Duration::from_secs(1);

/// Runs until `shutdown`: each time `push_now` is notified, sends the current answer to every
/// peer. `sent` and `failed` count pushes (one per peer).
pub async fn run(
    published: snapshot::Shared,
    secret: Secret,
    push_now: Arc<tokio::sync::Notify>,
    counters: Arc<PushCounters>,
    shutdown: CancellationToken,
) {
    let Some(client) = super::pull::client() else {
        return;
    };
    loop {
        tokio::select! {
            () = push_now.notified() => {}
            () = shutdown.cancelled() => return,
        }
        let started = tokio::time::Instant::now();
        let snapshot = published.load_full();
        let config = &snapshot.status.config;
        let (Some(_), Some(me)) = (&config.cluster, config.self_id()) else {
            return;
        };
        let body = match serde_json::to_vec(&own_answer(&snapshot.status)) {
            Ok(b) => bytes::Bytes::from(b),
            Err(_) => continue,
        };
        let me_id = me.to_string();
        let mut pushes = JoinSet::new();
        // Every other agent: the other nodes and the witnesses.
        for peer in config.peers() {
            let url = format!("http://{}{OBSERVATIONS_PATH}", peer.address);
            let (client, secret, me_id, body, peer) = (
                client.clone(),
                secret.clone(),
                me_id.clone(),
                body.clone(),
                peer.id.to_string(),
            );
            pushes.spawn(async move {
                let outcome =
                    tokio::time::timeout(TIMEOUT, send(&client, &url, &secret, &me_id, body))
                        .await
                        .unwrap_or_else(|_| Err("timeout after 1s".into()));
                (peer, outcome)
            });
        }
        while let Some(done) = pushes.join_next().await {
            let (peer, outcome) = match done {
                Ok(d) => d,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => continue,
            };
            match outcome {
                Ok(()) => counters
                    .sent
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                Err(error) => {
                    // The pull reports an unreachable peer; a push failure is only a delay.
                    tracing::debug!(peer = %peer, %error, "push not taken; the peer's next pull brings it");
                    counters
                        .failed
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                }
            };
        }
        tokio::select! {
            () = tokio::time::sleep_until(started + MIN_GAP) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Pushes sent to peers (one per peer per change), and those not taken.
#[derive(Debug, Default)]
pub struct PushCounters {
    pub sent: std::sync::atomic::AtomicU64,
    pub failed: std::sync::atomic::AtomicU64,
}

async fn send(
    client: &reqwest::Client,
    url: &str,
    secret: &Secret,
    me: &str,
    body: bytes::Bytes,
) -> Result<(), String> {
    let nonce = auth::nonce();
    let time = auth::unix_now();
    let signature = secret.sign_push(me, time, &nonce, OBSERVATIONS_PATH, &body);
    let response = client
        .post(url)
        .header(HEADER_AGENT, me)
        .header(HEADER_TIME, time.to_string())
        .header(HEADER_NONCE, &nonce)
        .header(HEADER_SIGNATURE, signature)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| describe_error(&e))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", status.as_u16()))
    }
}
