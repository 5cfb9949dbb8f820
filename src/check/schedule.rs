//! The probe loop of one (node, check) pair: probe, report, wait for the cadence health asks for.
//!
//! Probes start on a fixed schedule measured from the start of the previous probe, or when the
//! previous one ends if it took longer (a `retry_interval` shorter than the `timeout`): probes of
//! a pair never overlap, and a failing check's detection time is
//! `interval + (fall − 1) × max(retry_interval, timeout) + timeout` at most. Jitter only ever
//! shortens a wait (by up to 10 %), so it spreads agents apart without breaking that bound.

use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Probe;
use crate::config::Timing;
use crate::health::{Cadence, ProbeResult};

/// One probe result on its way to the health task, which answers with the next cadence.
#[derive(Debug)]
pub struct Observation {
    pub pair: usize,
    pub result: ProbeResult,
    pub reply: oneshot::Sender<Cadence>,
}

/// Probes until `shutdown`; results go to `results`.
pub async fn run_pair(
    pair: usize,
    probe: Probe,
    timing: Timing,
    results: mpsc::Sender<Observation>,
    shutdown: CancellationToken,
) {
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            result = probe.run(timing.timeout) => result,
            () = shutdown.cancelled() => return,
        };
        let (reply, cadence) = oneshot::channel();
        if results
            .send(Observation {
                pair,
                result,
                reply,
            })
            .await
            .is_err()
        {
            return;
        }
        let base = match cadence.await {
            Ok(Cadence::Steady) => timing.interval,
            Ok(Cadence::Retry) | Err(_) => timing.retry_interval,
        };
        // The next probe is due `base` after this one started, or at once if this one took
        // longer (a retry_interval shorter than the timeout): probes of a pair never overlap.
        // Validation bounds every interval; a sum out of range still never panics here.
        let due = started.checked_add(jittered(base));
        tokio::select! {
            () = sleep_until_or_never(due) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Sleeps until `due`; forever when it is beyond what the clock can represent.
async fn sleep_until_or_never(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// `base` shortened by a random 0–10 %.
fn jittered(base: Duration) -> Duration {
    let cut = rand::rng().random_range(0.0..0.1);
    base.mul_f64(1.0 - cut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::HttpClients;
    use crate::config::{Check, CheckKind, Node, TcpCheck};

    /// Probes of a pair whose retry_interval (100 ms) is shorter than its timeout (300 ms),
    /// against a real socket that never answers: each probe starts when the previous one ends,
    /// so results come exactly one timeout apart — not a retry_interval apart (overlapping
    /// probes) and not timeout + retry_interval apart (waiting after the end).
    #[tokio::test(start_paused = true)]
    async fn a_retry_shorter_than_the_timeout_starts_when_the_previous_probe_ends() {
        // Connections complete in the kernel's backlog; nothing is ever sent.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ip = silent.local_addr().unwrap().ip();
        let kind = CheckKind::Tcp(TcpCheck {
            port: silent.local_addr().unwrap().port(),
            send: None,
            expect: Some("a banner that never comes".into()),
        });
        let ms = Duration::from_millis;
        let timing = Timing {
            interval: ms(1000),
            retry_interval: ms(100),
            timeout: ms(300),
            fall: 3,
            rise: 1,
        };
        let node = Node {
            id: "n1".into(),
            addresses: vec![ip],
            probe_address: ip,
            priority: 0,
        };
        let check = Check {
            id: "banner".into(),
            kind,
            timing,
        };
        let probe = Probe::new(&node, &check, &HttpClients::new().unwrap()).unwrap();
        let (results, mut observed) = mpsc::channel(4);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run_pair(0, probe, timing, results, shutdown.clone()));
        let mut ends = Vec::new();
        for _ in 0..5 {
            let o = observed.recv().await.expect("the pair keeps probing");
            assert_eq!(o.result.error.as_deref(), Some("timeout after 300ms"));
            ends.push(Instant::now());
            o.reply.send(Cadence::Retry).unwrap();
        }
        shutdown.cancel();
        task.await.unwrap();
        let gaps: Vec<Duration> = ends.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps, [ms(300); 4]);
    }

    #[test]
    fn a_due_time_beyond_the_clock_never_comes_and_never_panics() {
        let far = Instant::now().checked_add(Duration::MAX);
        assert_eq!(far, None);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let slept = rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(20), sleep_until_or_never(far)).await
        });
        assert!(slept.is_err(), "still sleeping");
    }

    #[test]
    fn jitter_only_shortens_and_stays_within_ten_percent() {
        let base = Duration::from_secs(30);
        for _ in 0..1000 {
            let d = jittered(base);
            assert!(d <= base && d >= base.mul_f64(0.9), "{d:?}");
        }
    }
}
