//! The probe loop of one (node, check) pair: probe, report (fire and forget), wait for the
//! cadence of the pair's state as the probe itself knows it.
//!
//! As gdnsd's monitors do, a probe never waits on the writer: it folds its own results into a
//! [`PairHealth`] with the same thresholds the writer uses (`health.rs`, pure), so both hold the
//! same state and the probe knows when its next probe is due: `interval` while the pair is
//! confirmed up and passing, `retry_interval` while it is in transition or down.
//!
//! Probes start on a fixed schedule measured from the start of the previous probe, or when the
//! previous one ends if it took longer (a `retry_interval` shorter than the `timeout`): probes of
//! a pair never overlap, and a failing check's detection time is
//! `interval + (fall − 1) × max(retry_interval, timeout) + timeout` at most. Jitter only ever
//! shortens a wait (by up to 10 %), so it spreads agents apart without breaking that bound.
//!
//! Another agent's suspicion (its probe of the pair fails while the pair is up) or recovery
//! reaches the probe as a nudge ([`Nudges`], from the writer): the probe then probes now instead
//! of at its next interval, so every agent reaches `fall` at about the same moment. Bounded: an
//! extra probe comes at most once per `retry_interval`, and at most [`MAX_EXTRA`] of them follow
//! each other without a change of the probe's own view (a state change, a failure streak
//! starting or ending); after that the probe keeps its own cadence until its view changes or
//! the nudges stop for an `interval`. A pair whose votes stay split causes no probe storm.

use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Probe;
use crate::config::Timing;
use crate::health::{Cadence, PairHealth, ProbeResult};

/// One probe result on its way to the writer; nothing comes back.
#[derive(Debug)]
pub struct PairResult {
    pub pair: usize,
    pub result: ProbeResult,
    /// The probe ran early because another agent's view of the pair changed (a nudge).
    pub extra: bool,
}

/// Extra probes in a row, without a change of the probe's own view, that nudges can cause.
pub const MAX_EXTRA: u32 = 2;

/// One nudge per pair of a configuration: the writer asks a pair's probe to probe now, because
/// another agent reported it suspected or recovering. A nudge waits for the probe if it is busy
/// (one is kept, more add nothing); the probe decides whether it is allowed (see the module).
#[derive(Debug, Default)]
pub struct Nudges(Vec<Notify>);

impl Nudges {
    pub fn new(pairs: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self((0..pairs).map(|_| Notify::new()).collect()))
    }

    pub fn nudge(&self, pair: usize) {
        if let Some(n) = self.0.get(pair) {
            n.notify_one();
        }
    }

    async fn wait(&self, pair: usize) {
        match self.0.get(pair) {
            Some(n) => n.notified().await,
            None => std::future::pending().await,
        }
    }
}

/// What a probe knows of the extra probes that nudges ask for.
#[derive(Debug)]
struct Extra {
    /// Extra probes still allowed before the probe's own view changes.
    left: u32,
    /// When the last extra probe was due: the next one comes a `retry_interval` after it.
    last: Option<Instant>,
    /// When the last nudge came: nudges that stop for an `interval` end an episode.
    last_nudge: Option<Instant>,
}

impl Extra {
    /// A nudge at `now` with the next probe `due`: the new due time, if it comes sooner.
    fn nudged(&mut self, now: Instant, due: Option<Instant>, timing: &Timing) -> Option<Instant> {
        if self
            .last_nudge
            .is_none_or(|t| now.saturating_duration_since(t) >= timing.interval)
        {
            self.left = MAX_EXTRA;
        }
        self.last_nudge = Some(now);
        if self.left == 0 {
            return None;
        }
        let earliest = self
            .last
            .and_then(|t| t.checked_add(timing.retry_interval))
            .map_or(now, |t| t.max(now));
        if due.is_some_and(|d| d <= earliest) {
            return None;
        }
        self.left -= 1;
        self.last = Some(earliest);
        Some(earliest)
    }
}

/// Probes until `shutdown`; results go to `results`. `known` is the pair's state to start from:
/// new for a new pair, the state carried over by a reload otherwise.
pub async fn run_pair(
    pair: usize,
    probe: Probe,
    timing: Timing,
    mut known: PairHealth,
    results: mpsc::Sender<PairResult>,
    nudges: std::sync::Arc<Nudges>,
    shutdown: CancellationToken,
) {
    let mut extra = Extra {
        left: MAX_EXTRA,
        last: None,
        last_nudge: None,
    };
    let mut early = false;
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            result = probe.run(timing.timeout) => result,
            () = shutdown.cancelled() => return,
        };
        let before = (known.state, known.cadence());
        known.observe(result.clone(), timing.rise, timing.fall, SystemTime::now());
        let cadence = known.cadence();
        if before != (known.state, cadence) {
            extra.left = MAX_EXTRA; // its own view changed: nudges may ask again
        }
        let base = match cadence {
            Cadence::Steady => timing.interval,
            Cadence::Retry => timing.retry_interval,
        };
        // Waits only for room in the channel (sized for every pair), never for the writer.
        let sent = PairResult {
            pair,
            result,
            extra: std::mem::take(&mut early),
        };
        if results.send(sent).await.is_err() {
            return;
        }
        // The next probe is due `base` after this one started, or at once if this one took
        // longer (a retry_interval shorter than the timeout): probes of a pair never overlap.
        // Validation bounds every interval; a sum out of range still never panics here.
        let mut due = started.checked_add(jittered(base));
        loop {
            tokio::select! {
                () = sleep_until_or_never(due) => break,
                () = nudges.wait(pair) => {
                    if let Some(sooner) = extra.nudged(Instant::now(), due, &timing) {
                        due = Some(sooner);
                        early = true;
                    }
                }
                () = shutdown.cancelled() => return,
            }
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

    /// A TCP probe of `listener`'s port (expecting `expect`, if any), started under `timing`:
    /// its task, its results and the token that stops it.
    fn start_tcp(
        listener: &std::net::TcpListener,
        expect: Option<&str>,
        timing: Timing,
    ) -> (
        tokio::task::JoinHandle<()>,
        mpsc::Receiver<PairResult>,
        CancellationToken,
    ) {
        let addr = listener.local_addr().unwrap();
        let node = Node {
            id: "n1".into(),
            addresses: vec![addr.ip()],
            probe_address: addr.ip(),
            priority: 0,
        };
        let check = Check {
            id: "port".into(),
            kind: CheckKind::Tcp(TcpCheck {
                port: addr.port(),
                send: None,
                expect: expect.map(String::from),
            }),
            timing,
        };
        let probe = Probe::new(&node, &check, &HttpClients::new().unwrap()).unwrap();
        // Room for every result: nobody answers the probe, and it never waits for anyone.
        let (results, observed) = mpsc::channel(16);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run_pair(
            0,
            probe,
            timing,
            PairHealth::new(),
            results,
            Nudges::new(1),
            shutdown.clone(),
        ));
        (task, observed, shutdown)
    }

    /// Probes of a pair whose retry_interval (100 ms) is shorter than its timeout (300 ms),
    /// against a real socket that never answers: each probe starts when the previous one ends,
    /// so results come exactly one timeout apart — not a retry_interval apart (overlapping
    /// probes) and not timeout + retry_interval apart (waiting after the end).
    #[tokio::test(start_paused = true)]
    async fn a_retry_shorter_than_the_timeout_starts_when_the_previous_probe_ends() {
        // Connections complete in the kernel's backlog; nothing is ever sent.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ms = Duration::from_millis;
        let timing = Timing {
            interval: ms(1000),
            retry_interval: ms(100),
            timeout: ms(300),
            fall: 3,
            rise: 1,
        };
        let (task, mut observed, shutdown) =
            start_tcp(&silent, Some("a banner that never comes"), timing);
        let mut ends = Vec::new();
        for _ in 0..5 {
            let o = observed.recv().await.expect("the pair keeps probing");
            assert_eq!(o.result.error.as_deref(), Some("timeout after 300ms"));
            ends.push(Instant::now());
        }
        shutdown.cancel();
        task.await.unwrap();
        let gaps: Vec<Duration> = ends.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps, [ms(300); 4]);
    }

    /// The probe's own state sets the pace, without the writer: `interval` while the pair is up
    /// and passing, `retry_interval` as soon as a result fails (up, but in transition), on real
    /// sockets (a listener that accepts, then none).
    #[tokio::test]
    async fn the_cadence_follows_the_state_the_probe_knows() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ms = Duration::from_millis;
        let timing = Timing {
            interval: ms(500),
            retry_interval: ms(50),
            timeout: ms(200),
            fall: 3,
            rise: 1,
        };
        let (task, mut observed, shutdown) = start_tcp(&listener, None, timing);
        let mut seen = Vec::new();
        let mut listener = Some(listener);
        for i in 0..5 {
            let o = tokio::time::timeout(Duration::from_secs(5), observed.recv())
                .await
                .expect("a result within 5 s")
                .expect("the pair keeps probing");
            seen.push((Instant::now(), o.result.passed));
            if i == 1 {
                listener = None; // the port closes: every later probe is refused
            }
        }
        drop(listener);
        shutdown.cancel();
        task.await.unwrap();
        let passed: Vec<bool> = seen.iter().map(|s| s.1).collect();
        assert_eq!(passed, [true, true, false, false, false]);
        let gaps: Vec<Duration> = seen.windows(2).map(|w| w[1].0 - w[0].0).collect();
        // After a pass (up, steady): interval less at most 10 % jitter.
        assert!(gaps[0] >= ms(450) && gaps[1] >= ms(450), "{gaps:?}");
        // After a failure (still up with fall 3, but in transition): retry_interval.
        assert!(gaps[2] < ms(300) && gaps[3] < ms(300), "{gaps:?}");
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

    /// The bounds on nudged probes, by table: a nudge brings the next probe to now, then extra
    /// probes come a retry_interval apart, at most MAX_EXTRA in a row; nudges that stop for an
    /// interval start a new episode; a probe already due sooner is left alone.
    #[test]
    fn nudges_bring_a_probe_forward_within_bounds() {
        let ms = Duration::from_millis;
        let timing = Timing {
            interval: ms(2000),
            retry_interval: ms(100),
            timeout: ms(100),
            fall: 2,
            rise: 2,
        };
        let t0 = Instant::now();
        let at = |m: u64| t0 + ms(m);
        let mut extra = Extra {
            left: MAX_EXTRA,
            last: None,
            last_nudge: None,
        };
        // (nudged at, next probe due, new due time)
        let table: &[(u64, u64, Option<u64>)] = &[
            (0, 1500, Some(0)),       // probe now, not in 1.5 s
            (30, 1500, Some(100)),    // a second one: a retry_interval after the first
            (60, 1500, None),         // MAX_EXTRA (2) spent: the normal cadence
            (90, 50, None),           // never later than it was due anyway
            (2100, 3000, Some(2100)), // quiet for an interval: a new episode
            (2110, 2150, None),       // due before the earliest extra probe (2200)
        ];
        for &(now, due, want) in table {
            let got = extra.nudged(at(now), Some(at(due)), &timing);
            assert_eq!(got, want.map(at), "nudged at {now} ms, due at {due} ms");
        }
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
