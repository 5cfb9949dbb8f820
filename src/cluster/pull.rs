//! Pulls every other agent's (node's or witness's) observations on the peer API, once per `cluster.period`, and
//! hands the results (or why a peer did not answer) to the writer.
//!
//! An answer is bounded by what the configuration can need (a vote per pair, an override per
//! node and hostname), and every text in it that may end up in a log is made printable here.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::auth::{self, HEADER_AGENT, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIME, Secret};
use super::{OBSERVATIONS_PATH, PeerAnswer, PeerReport};
use crate::check::describe_error;
use crate::connections::http::PEER_API_TIMEOUTS;
use crate::overrides::printable;
use crate::snapshot;

/// Biggest answer accepted from a peer, whatever the configuration.
const MAX_BODY: usize = 8 * 1024 * 1024;
/// Room allowed per vote and per override in an answer: several times what one takes (a vote is
/// about 150 bytes with an error text, an override about 300 with a long reason).
const BYTES_PER_VOTE: usize = 2 * 1024;
const BYTES_PER_OVERRIDE: usize = 4 * 1024;
/// Longest error text taken from a peer (its probes' errors, its refusals).
const MAX_PEER_TEXT: usize = 300;

/// Biggest answer accepted from a peer for `config`: an agent with the same configuration never
/// comes near it; one that sends more is not listened to.
pub fn max_body(config: &crate::config::Config) -> usize {
    let targets = config.nodes.len() + config.hostnames.len();
    (64 * 1024 + config.pair_count() * BYTES_PER_VOTE + targets * BYTES_PER_OVERRIDE).min(MAX_BODY)
}

/// The HTTP client of the peer API (pulls and pushes); None (logged) if it cannot be built.
pub fn client() -> Option<reqwest::Client> {
    match reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("failoverd/", env!("CARGO_PKG_VERSION"), " (peer)"))
        // Peers speak plain HTTP: no CA roots, so a machine without ca-certificates builds it.
        .tls_certs_only([])
        // Let go of an idle connection before the peer API closes it, so that a pull never
        // goes out on a connection the other end is just closing.
        .pool_idle_timeout(
            PEER_API_TIMEOUTS
                .idle
                .saturating_sub(Duration::from_secs(1)),
        )
        .build()
    {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!(error = %e, "cannot build the peer API client; this agent decides alone");
            None
        }
    }
}

/// Runs until `shutdown`. The configuration (peers, period) is read from the status each
/// round, so reloads apply.
pub async fn run(
    published: snapshot::Shared,
    secret: Secret,
    reports: mpsc::Sender<PeerReport>,
    pull_now: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    let Some(client) = client() else {
        return;
    };
    loop {
        let snapshot = published.load_full();
        let config = &snapshot.status.config;
        let (Some(cluster), Some(me)) = (&config.cluster, config.self_id()) else {
            return;
        };
        let period = cluster.period;
        let started = tokio::time::Instant::now();
        let mut pulls = JoinSet::new();
        // Every other agent: the other nodes and the witnesses.
        for peer in config.peers() {
            let url = format!("http://{}{OBSERVATIONS_PATH}", peer.address);
            let (client, secret, me_id, peer) = (
                client.clone(),
                secret.clone(),
                me.to_string(),
                peer.id.to_string(),
            );
            let zone = config.zone.to_ascii().trim_end_matches('.').to_string();
            let limit = max_body(config);
            pulls.spawn(async move {
                let result = tokio::time::timeout(
                    period.max(Duration::from_millis(200)),
                    fetch(&client, &url, &secret, &me_id, &peer, &zone, limit),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "timeout after {}",
                        crate::config::format_duration(period)
                    ))
                })
                // What a peer says is logged as the reason it does not count: one line each.
                .map_err(|e| printable(&e, MAX_PEER_TEXT));
                PeerReport {
                    peer,
                    result,
                    received_at: tokio::time::Instant::now(),
                }
            });
        }
        while let Some(done) = pulls.join_next().await {
            // A pull that panicked is this task's failure (the agent stops on it), not a peer's.
            let report = match done {
                Ok(report) => report,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => continue, // cancelled: the runtime is going down
            };
            if reports.send(report).await.is_err() {
                return;
            }
        }
        // The next round comes after a period, or sooner when this agent's own view just
        // changed: the others have probably seen the same, and their votes are wanted now.
        tokio::select! {
            () = tokio::time::sleep_until(started + period) => {}
            () = pull_now.notified() => {
                // Never more often than four times a period, however much flaps.
                tokio::select! {
                    () = tokio::time::sleep_until(started + period / 4) => {}
                    () = shutdown.cancelled() => return,
                }
            }
            () = shutdown.cancelled() => return,
        }
    }
}

async fn fetch(
    client: &reqwest::Client,
    url: &str,
    secret: &Secret,
    me: &str,
    peer: &str,
    zone: &str,
    max_body: usize,
) -> Result<PeerAnswer, String> {
    let nonce = auth::nonce();
    let time = auth::unix_now();
    let signature = secret.sign_request(me, time, &nonce, OBSERVATIONS_PATH);
    let mut response = client
        .get(url)
        .header(HEADER_AGENT, me)
        .header(HEADER_TIME, time.to_string())
        .header(HEADER_NONCE, &nonce)
        .header(HEADER_SIGNATURE, signature)
        .send()
        .await
        .map_err(|e| describe_error(&e))?;
    let status = response.status();
    let their_signature = response
        .headers()
        .get(HEADER_SIGNATURE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe_error(&e))? {
        if body.len() + chunk.len() > max_body {
            return Err(format!(
                "answer larger than {} KiB, more than this configuration can need; not counted",
                max_body / 1024
            ));
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)])
            .trim()
            .to_string();
        return Err(format!("HTTP {} ({text})", status.as_u16()));
    }
    if !secret.verify_response(&nonce, &body, &their_signature) {
        return Err("the answer's signature does not verify (not the same cluster secret?)".into());
    }
    read_answer(&body, peer, zone)
}

/// Reads a peer's answer (pulled or pushed): JSON, from `peer`, for `zone`, texts made printable.
pub fn read_answer(body: &[u8], peer: &str, zone: &str) -> Result<PeerAnswer, String> {
    let mut observations: PeerAnswer =
        serde_json::from_slice(body).map_err(|e| format!("unreadable answer: {e}"))?;
    for o in &mut observations.observations {
        if let Some(error) = &mut o.error {
            *error = printable(error, MAX_PEER_TEXT);
        }
    }
    if observations.agent != peer {
        return Err(format!(
            "answered as `{}`, expected `{peer}` (check the nodes' and witnesses' addresses)",
            observations.agent
        ));
    }
    if observations.zone != zone {
        return Err(format!("serves zone {}, not {zone}", observations.zone));
    }
    Ok(observations)
}
