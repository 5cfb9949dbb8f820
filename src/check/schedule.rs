//! The probe loop of one (node, check) pair: probe, report, wait for the cadence health asks for.
//!
//! Probes start on a fixed schedule measured from the start of the previous probe, so a failing
//! check's detection time is `interval + (fall − 1) × retry_interval + timeout` at most. Jitter
//! only ever shortens a wait (by up to 10 %), so it spreads agents apart without breaking that bound.

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
        tokio::select! {
            () = tokio::time::sleep_until(started + jittered(base)) => {}
            () = shutdown.cancelled() => return,
        }
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

    #[test]
    fn jitter_only_shortens_and_stays_within_ten_percent() {
        let base = Duration::from_secs(30);
        for _ in 0..1000 {
            let d = jittered(base);
            assert!(d <= base && d >= base.mul_f64(0.9), "{d:?}");
        }
    }
}
