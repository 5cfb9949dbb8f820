//! NOTIFY (RFC 1996) to the configured secondaries on every serial change, signed with the
//! `secondaries.tsig` key, retried with a bounded backoff until each one acknowledges.
//!
//! | event                                         | what happens |
//! |-----------------------------------------------|--------------|
//! | the zone served gets a new serial             | every target is sent a NOTIFY for it at once |
//! | no answer within the attempt's wait           | sent again; the wait doubles from `FIRST_WAIT` up to `MAX_WAIT` |
//! | an error answer (NOTAUTH, REFUSED…)           | warned (what it means), retried like no answer |
//! | NOERROR (signed with the key, when signed)     | acknowledged: nothing more until the next serial |
//! | a newer serial while still retrying           | the new one is sent at once, the wait starts over |
//! | a hostname has no answer yet (first round)    | nothing sent: a transfer would get SERVFAIL |
//! | `secondaries:` changed by a reload            | the targets start over (each is told the current serial once) |
//!
//! The agent starts by telling every secondary its serial: a secondary that missed changes
//! while the agent was down catches up without waiting for its refresh timer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::xfr::{Secondaries, notify_source};

/// How often the zone is looked at for a new serial (an atomic load; the NOTIFY leaves at most
/// this long after the change is served).
const POLL: Duration = Duration::from_millis(50);
/// The first wait for an acknowledgement; then doubled at each retry, up to `MAX_WAIT`.
const FIRST_WAIT: Duration = Duration::from_secs(1);
const MAX_WAIT: Duration = Duration::from_secs(60);
/// After how many unanswered attempts for one serial a warning is logged (then every 10).
const WARN_AFTER: u32 = 3;

/// What the targets are told: the zone's origin, SOA record and serial.
#[derive(Clone, PartialEq)]
struct Serial {
    origin: Name,
    serial: u32,
    soa: Vec<hickory_proto::rr::Record>,
}

/// Runs until `shutdown`: watches `zone`, and NOTIFYs the targets of `secondaries` (if any)
/// from the DNS address of their family in `listen`.
pub async fn run<S: super::Serves>(
    source: Arc<ArcSwap<S>>,
    secondaries: Arc<ArcSwapOption<Secondaries>>,
    listen: Vec<SocketAddr>,
    shutdown: CancellationToken,
) {
    let (tx, rx) = watch::channel(None::<Serial>);
    let mut targets = JoinSet::new();
    let mut current: Option<Arc<Secondaries>> = None;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let configured = secondaries.load_full();
        let changed = match (&current, &configured) {
            (None, None) => false,
            (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
            _ => true,
        };
        if changed {
            targets.abort_all();
            if let Some(s) = &configured {
                for &target in &s.config.notify {
                    let source = notify_source(&listen, target);
                    targets.spawn(notify_one(target, source, s.clone(), rx.clone()));
                }
            }
            current = configured;
        }
        while targets.try_join_next().is_some() {}
        let published = source.load();
        let zone = published.answers().zone();
        if zone.names.values().any(|n| n.pending) {
            continue;
        }
        let now = Serial {
            origin: Name::from(zone.origin.clone()),
            serial: zone.serial,
            soa: zone.soa.clone(),
        };
        if tx.borrow().as_ref().map(|s| s.serial) != Some(now.serial) {
            let _ = tx.send(Some(now));
        }
    }
    targets.shutdown().await;
}

/// Tells one target of every serial until it acknowledges; runs until aborted.
async fn notify_one(
    target: SocketAddr,
    source: SocketAddr,
    secondaries: Arc<Secondaries>,
    mut serials: watch::Receiver<Option<Serial>>,
) {
    let socket = match UdpSocket::bind(source).await {
        Ok(socket) => socket,
        Err(error) => {
            tracing::warn!(secondary = %target, %source, %error,
                "cannot bind the NOTIFY source address; sending from any address instead (a secondary that checks the source may ignore it)");
            let any = SocketAddr::new(
                if target.is_ipv4() {
                    [0, 0, 0, 0].into()
                } else {
                    [0u16; 8].into()
                },
                0,
            );
            match UdpSocket::bind(any).await {
                Ok(socket) => socket,
                Err(error) => {
                    tracing::error!(secondary = %target, %error, "cannot open a UDP socket for NOTIFY; this secondary is not told of changes");
                    return;
                }
            }
        }
    };
    let mut acked: Option<u32> = None;
    loop {
        let wanted = serials.borrow_and_update().clone();
        let Some(wanted) = wanted.filter(|w| Some(w.serial) != acked) else {
            if serials.changed().await.is_err() {
                return;
            }
            continue;
        };
        let started = Instant::now();
        let mut wait = FIRST_WAIT;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let outcome = tokio::select! {
                outcome = attempt(&socket, target, &secondaries, &wanted, wait) => outcome,
                // A newer serial: tell that one instead, at once.
                changed = serials.changed() => {
                    if changed.is_err() { return; }
                    break;
                }
            };
            match outcome {
                Ok(()) => {
                    tracing::info!(secondary = %target, serial = wanted.serial, attempts,
                        elapsed_ms = started.elapsed().as_millis() as u64, "secondary acknowledged the NOTIFY");
                    acked = Some(wanted.serial);
                    break;
                }
                Err(why) => {
                    if attempts == WARN_AFTER
                        || (attempts > WARN_AFTER && attempts.is_multiple_of(10))
                    {
                        tracing::warn!(secondary = %target, serial = wanted.serial, attempts, %why,
                            "a secondary does not acknowledge the NOTIFY; still trying (it may be down, firewalled, or not list this agent as a primary with the key)");
                    } else {
                        tracing::debug!(secondary = %target, serial = wanted.serial, attempts, %why, "NOTIFY not acknowledged yet");
                    }
                    if why.waited {
                        wait = (wait * 2).min(MAX_WAIT);
                    } else {
                        // An answer that was an error: wait before sending again anyway.
                        let pause = tokio::time::sleep(wait);
                        wait = (wait * 2).min(MAX_WAIT);
                        tokio::select! {
                            () = pause => {}
                            changed = serials.changed() => {
                                if changed.is_err() { return; }
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Why an attempt did not get an acknowledgement.
struct NotAcked {
    /// The whole wait passed (no answer); otherwise an answer came that was no acknowledgement.
    waited: bool,
    message: String,
}

impl std::fmt::Display for NotAcked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Sends one signed NOTIFY and waits up to `wait` for its answer.
async fn attempt(
    socket: &UdpSocket,
    target: SocketAddr,
    secondaries: &Secondaries,
    serial: &Serial,
    wait: Duration,
) -> Result<(), NotAcked> {
    let failed = |waited, message: String| NotAcked { waited, message };
    let id: u16 = rand::random();
    let mut message = Message::new(id, MessageType::Query, OpCode::Notify);
    message.metadata.authoritative = true;
    let mut query = Query::query(serial.origin.clone(), RecordType::SOA);
    query.set_query_class(DNSClass::IN);
    message.add_query(query);
    // RFC 1996 §3.7: the SOA may ride along; secondaries still check it themselves.
    message.answers = serial.soa.clone();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut verifier = message
        .finalize(&secondaries.signer, now)
        .map_err(|e| failed(false, format!("cannot sign the NOTIFY: {e}")))?;
    let bytes = message
        .to_vec()
        .map_err(|e| failed(false, format!("cannot encode the NOTIFY: {e}")))?;
    socket
        .send_to(&bytes, target)
        .await
        .map_err(|e| failed(false, format!("cannot send: {e}")))?;
    secondaries
        .counters
        .notifies_sent
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let deadline = Instant::now() + wait;
    let mut buffer = vec![0u8; 4096];
    loop {
        let received = tokio::time::timeout_at(deadline, socket.recv_from(&mut buffer)).await;
        let (len, from) = match received {
            Err(_) => {
                return Err(failed(
                    true,
                    format!("no answer within {} ms", wait.as_millis()),
                ));
            }
            // An ICMP port unreachable from an earlier send, say: nothing listens there.
            Ok(Err(e)) => return Err(failed(false, format!("{e}"))),
            Ok(Ok(got)) => got,
        };
        let answer = &buffer[..len];
        if from != target || len < 12 || u16::from_be_bytes([answer[0], answer[1]]) != id {
            continue; // a late answer to an earlier attempt, or someone else
        }
        let response = match Message::from_vec(answer) {
            Ok(response) => response,
            Err(e) => return Err(failed(false, format!("unreadable answer: {e}"))),
        };
        if response.signature.is_some()
            && let Some(verifier) = verifier.as_mut()
            && let Err(e) = verifier.verify(answer)
        {
            return Err(failed(
                false,
                format!("the answer's TSIG does not verify with `secondaries.tsig` ({e})"),
            ));
        }
        return match response.response_code {
            ResponseCode::NoError => {
                secondaries
                    .counters
                    .notifies_acknowledged
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            ResponseCode::NotAuth => Err(failed(false, "NOTAUTH: the secondary does not accept this key for NOTIFY from this address (check its allow-notify / acl and the key)".into())),
            ResponseCode::Refused => Err(failed(false, "REFUSED: the secondary does not accept NOTIFY for this zone from this address (is this agent one of its primaries?)".into())),
            ResponseCode::NotImp => Err(failed(false, "NOTIMP: the server does not take NOTIFY".into())),
            other => Err(failed(false, format!("answered {other}"))),
        };
    }
}
