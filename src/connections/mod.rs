//! Caps on client connections (DNS over TCP, dashboard, peer API): how many descriptors each
//! listener may hold, sized from RLIMIT_NOFILE so that health checking always keeps its own;
//! which connection gives way when a cap is reached; and an accept that backs off.
//!
//! Probes, the state directory, SMTP and the pulls from other agents open descriptors of their
//! own, so a flood of clients must never take the last ones (it did: 1,100 idle DNS connections
//! under `ulimit -n 1024` failed every probe with "Too many open files"). The descriptor limit
//! is read once (`getrlimit`; never raised: the systemd unit's seccomp filter denies
//! `setrlimit`), a reserve is set aside, and the rest is shared among the listeners:
//!
//! | descriptors                 | reserve                                                   |
//! |-----------------------------|-----------------------------------------------------------|
//! | open when the agent starts  | stdio, listeners, epoll, log files: counted in /proc/self/fd |
//! | probes                      | one per (node, check) pair: a probe holds one connection  |
//! | pulls from the other agents | two per other node                                        |
//! | notifications, state dir, reload, TLS roots | `FIXED_RESERVE`                           |
//! | connections being closed    | `EVICTING_MAX` (see below)                                |
//! | margin                      | `MARGIN`                                                  |
//!
//! What is left goes to the dashboard (`DASHBOARD_MAX`), the peer API (`PEER_SLOTS_PER_NODE`
//! per other node) and DNS over TCP (the rest, at most `DNS_TCP_MAX`).
//!
//! When a cap is reached, the connection that has been quiet the longest is closed to make room
//! (RFC 7766 §6.2.2: a server under pressure closes idle connections, the oldest first) rather
//! than the new one refused: a flood of idle connections then costs a real client at most a
//! reconnect, where refusing would lock every client out for as long as the flood lasts. Each
//! source (an IPv4 address, an IPv6 /64) has a cap of its own, and a source over it loses its
//! own oldest connection, so one source cannot push out the others. A new connection is refused
//! only when too many closures are already under way.
//!
//! [`http`] puts the dashboard's and the peer API's HTTP connections under these caps and
//! timeouts.

pub mod http;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tracing::{error, info, warn};

use crate::config::Config;

/// Descriptors for notifications (SMTP, webhook), the state directory's files, a reload's
/// configuration file and TLS root stores: each holds one or two, briefly.
const FIXED_RESERVE: usize = 24;
/// Headroom for what nobody counted (a resolver lookup for the SMTP relay, a log file…).
const MARGIN: usize = 64;
/// Connections asked to close but not closed yet (each still holds its descriptor until its
/// task runs); above this, new connections are refused instead.
const EVICTING_MAX: usize = 32;
/// DNS over TCP, at most: BIND's default is 150, NSD's 100; beyond this, memory matters more
/// than descriptors (each connection holds its task and its kernel buffers).
const DNS_TCP_MAX: usize = 1024;
/// Dashboard connections: a browser opens up to six per host; a few operators at once.
const DASHBOARD_MAX: usize = 32;
/// Peer API connections per other agent (a pull uses one; a second while the first closes).
const PEER_SLOTS_PER_NODE: usize = 4;
/// Below this many DNS TCP connections the limit is too low to serve: say so at start.
const DNS_TCP_MIN: usize = 16;

/// How many connections one listener may hold, in all and from one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub total: usize,
    pub per_source: usize,
}

/// How the descriptor limit is shared: the reserve, then each listener's cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The soft RLIMIT_NOFILE.
    pub nofile: usize,
    /// Descriptors kept for everything but client connections.
    pub reserved: usize,
    pub dns_tcp: Cap,
    pub dashboard: Cap,
    pub peer_api: Cap,
}

impl Budget {
    /// The budget for `config` with `nofile` descriptors of which `in_use` are open already.
    /// Pure, so it is tested without touching the process's limits.
    pub fn plan(nofile: usize, in_use: usize, config: &Config) -> Budget {
        let others = config.nodes.len().saturating_sub(1);
        let reserved =
            in_use + config.pair_count() + 2 * others + FIXED_RESERVE + EVICTING_MAX + MARGIN;
        let mut left = nofile.saturating_sub(reserved);
        let mut take = |want: usize, min: usize| {
            let got = want.min(left).max(min);
            left = left.saturating_sub(got);
            got
        };
        let dashboard = take(DASHBOARD_MAX, 4);
        let peer_api = if config.cluster.is_some() {
            take(PEER_SLOTS_PER_NODE * others + 8, 4)
        } else {
            0
        };
        let dns_tcp = take(DNS_TCP_MAX, DNS_TCP_MIN);
        Budget {
            nofile,
            reserved,
            dns_tcp: Cap {
                total: dns_tcp,
                // Resolvers behind one address rarely need more than a few; 1/8 leaves room for
                // eight sources at the cap and still makes one source harmless.
                per_source: (dns_tcp / 8).clamp(4, 64),
            },
            dashboard: Cap {
                total: dashboard,
                per_source: dashboard / 2,
            },
            peer_api: Cap {
                total: peer_api,
                per_source: PEER_SLOTS_PER_NODE,
            },
        }
    }

    /// True when the limit leaves less than the minimum for client connections.
    fn starved(&self) -> bool {
        self.nofile
            < self.reserved + self.dashboard.total + self.peer_api.total + self.dns_tcp.total
    }
}

/// The process's soft descriptor limit (read only: the service may not raise it).
pub fn nofile_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024; // systemd's and most distributions' default
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

/// Descriptors this process has open now.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(32, |d| d.count())
}

/// The three listeners' limiters, sized by one [`Budget`]; resized when a reload changes the
/// number of pairs or nodes.
pub struct Limits {
    nofile: usize,
    /// Descriptors open at start, before any client connected.
    baseline: usize,
    pub dns_tcp: Arc<Limiter>,
    pub dashboard: Arc<Limiter>,
    pub peer_api: Arc<Limiter>,
}

impl Limits {
    /// Reads the descriptor limit and what is open, and sizes every listener for `config`.
    pub fn for_process(config: &Config) -> Limits {
        let (nofile, baseline) = (nofile_limit(), open_descriptors());
        let budget = Budget::plan(nofile, baseline, config);
        let limits = Limits {
            nofile,
            baseline,
            dns_tcp: Arc::new(Limiter::new("DNS TCP", budget.dns_tcp)),
            dashboard: Arc::new(Limiter::new("dashboard", budget.dashboard)),
            peer_api: Arc::new(Limiter::new("peer API", budget.peer_api)),
        };
        log_budget(&budget);
        limits
    }

    /// Resizes the caps for a reloaded configuration (more pairs: fewer client connections).
    pub fn resize(&self, config: &Config) {
        let budget = Budget::plan(self.nofile, self.baseline, config);
        self.dns_tcp.set_cap(budget.dns_tcp);
        self.dashboard.set_cap(budget.dashboard);
        self.peer_api.set_cap(budget.peer_api);
        log_budget(&budget);
    }
}

fn log_budget(budget: &Budget) {
    info!(
        nofile = budget.nofile,
        reserved = budget.reserved,
        dns_tcp = budget.dns_tcp.total,
        dns_tcp_per_source = budget.dns_tcp.per_source,
        dashboard = budget.dashboard.total,
        peer_api = budget.peer_api.total,
        "connection caps"
    );
    if budget.starved() {
        error!(
            nofile = budget.nofile,
            needed = budget.reserved + DASHBOARD_MAX + DNS_TCP_MAX,
            "the descriptor limit is too low for the probes and the listeners: under a flood of connections, probes may fail with \"Too many open files\"; raise LimitNOFILE= in the systemd unit (or ulimit -n)"
        );
    }
}

/// Who counts as one source: an IPv4 address, or an IPv6 /64 (one subscriber's network).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4(u32),
    V6(u64),
}

impl Source {
    fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.into()),
                None => Source::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// One open connection, as the limiter sees it.
struct Entry {
    source: Source,
    /// Milliseconds since the limiter's epoch at the connection's last progress.
    active: Arc<AtomicU64>,
    close: CancellationToken,
    /// Asked to close; no longer counted against the caps.
    closing: bool,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Entry>,
    /// Connections per source, not counting those closing.
    per_source: HashMap<Source, usize>,
    closing: usize,
    /// Closed or refused to make room since the last warning, and when that was.
    pushed_out: u64,
    warned: Option<Instant>,
}

/// Admits connections to one listener within its [`Cap`].
pub struct Limiter {
    name: &'static str,
    total: AtomicUsize,
    per_source: AtomicUsize,
    epoch: Instant,
    table: Mutex<Table>,
}

/// How often, at most, a limiter says it is full.
const WARN_EVERY: Duration = Duration::from_secs(60);

impl Limiter {
    pub fn new(name: &'static str, cap: Cap) -> Limiter {
        Limiter {
            name,
            total: AtomicUsize::new(cap.total),
            per_source: AtomicUsize::new(cap.per_source),
            epoch: Instant::now(),
            table: Mutex::default(),
        }
    }

    pub fn set_cap(&self, cap: Cap) {
        self.total.store(cap.total, Ordering::Relaxed);
        self.per_source.store(cap.per_source, Ordering::Relaxed);
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A slot for a connection from `ip`, after closing the quietest connection of the same
    /// source (over its cap) or of all (over the total) if needed; `None`: refuse it.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let source = Source::of(ip);
        let (total, per_source) = (
            self.total.load(Ordering::Relaxed),
            self.per_source.load(Ordering::Relaxed),
        );
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let live = table.open.len() - table.closing;
        let from_source = table.per_source.get(&source).copied().unwrap_or(0);
        let victim = if from_source >= per_source.max(1) {
            Some(Some(source))
        } else if live >= total.max(1) {
            Some(None)
        } else {
            None
        };
        if let Some(only) = victim {
            let quietest = table
                .open
                .iter()
                .filter(|(_, e)| !e.closing && only.is_none_or(|s| e.source == s))
                .min_by_key(|(_, e)| e.active.load(Ordering::Relaxed))
                .map(|(id, _)| *id);
            table.pushed_out += 1;
            self.warn_full(&mut table, only.is_some());
            match quietest {
                Some(id) if table.closing < EVICTING_MAX => {
                    let entry = table.open.get_mut(&id).expect("just found");
                    entry.closing = true;
                    entry.close.cancel();
                    let s = entry.source;
                    table.closing += 1;
                    decrement(&mut table.per_source, s);
                }
                _ => return None,
            }
        }
        let id = table.next_id;
        table.next_id += 1;
        let active = Arc::new(AtomicU64::new(self.now_ms()));
        let close = CancellationToken::new();
        table.open.insert(
            id,
            Entry {
                source,
                active: active.clone(),
                close: close.clone(),
                closing: false,
            },
        );
        *table.per_source.entry(source).or_default() += 1;
        Some(Slot {
            limiter: self.clone(),
            id,
            active,
            close,
        })
    }

    /// Warns that the cap was reached, at most once per `WARN_EVERY` (a flood must not flood
    /// the log), with how many connections were pushed out since.
    fn warn_full(&self, table: &mut Table, per_source: bool) {
        let now = Instant::now();
        if table
            .warned
            .is_some_and(|at| now.duration_since(at) < WARN_EVERY)
        {
            return;
        }
        warn!(
            listener = self.name,
            cap = self.total.load(Ordering::Relaxed),
            per_source_cap = self.per_source.load(Ordering::Relaxed),
            which = if per_source { "per source" } else { "total" },
            pushed_out = table.pushed_out,
            "connection cap reached; closing the connections quiet the longest (a flood of connections, or too many clients: see LimitNOFILE)"
        );
        table.warned = Some(now);
        table.pushed_out = 0;
    }

    /// Connections open now (including those closing), for tests and metrics.
    pub fn open(&self) -> usize {
        self.table.lock().map_or(0, |t| t.open.len())
    }

    fn release(&self, id: u64) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = table.open.remove(&id) {
            if entry.closing {
                table.closing -= 1;
            } else {
                decrement(&mut table.per_source, entry.source);
            }
        }
    }
}

fn decrement(counts: &mut HashMap<Source, usize>, source: Source) {
    if let Some(n) = counts.get_mut(&source) {
        *n -= 1;
        if *n == 0 {
            counts.remove(&source);
        }
    }
}

/// A connection's place under its listener's cap, given back on drop.
pub struct Slot {
    limiter: Arc<Limiter>,
    id: u64,
    active: Arc<AtomicU64>,
    close: CancellationToken,
}

impl Slot {
    /// Records progress (a message read or answered): the connection is not idle.
    pub fn touch(&self) {
        self.active.store(self.limiter.now_ms(), Ordering::Relaxed);
    }

    /// Completes when the limiter needs this connection's place: close it.
    pub fn closing(&self) -> WaitForCancellationFuture<'_> {
        self.close.cancelled()
    }

    /// The token behind [`Slot::closing`], for streams that poll it.
    pub fn close_token(&self) -> CancellationToken {
        self.close.clone()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limiter.release(self.id);
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("listener", &self.limiter.name)
            .field("id", &self.id)
            .finish()
    }
}

/// How long accepting waits after a resource error (out of descriptors or memory), doubling up
/// to `ACCEPT_BACKOFF_MAX`: the pending connection stays in the kernel's queue, so retrying at
/// once would only spin.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(50);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Accepts on `listener`, retrying past errors of one connection and backing off on errors of
/// the process (EMFILE, ENFILE, ENOBUFS, ENOMEM); `Err` only when the listener itself is broken.
pub async fn accept(listener: &TcpListener, name: &str) -> io::Result<(TcpStream, SocketAddr)> {
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        match listener.accept().await {
            Ok(accepted) => return Ok(accepted),
            Err(error) => match classify(&error) {
                AcceptError::OneConnection => continue,
                AcceptError::Listener => return Err(error),
                AcceptError::Resources => {
                    if accept_warning_due() {
                        warn!(listener = name, %error, "cannot accept connections; retrying with back-off (said at most once a minute)");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
            },
        }
    }
}

/// True at most once per `WARN_EVERY` for the whole process: EMFILE can come back on every
/// accept while descriptors are short, and the log must not grow with the accept rate.
fn accept_warning_due() -> bool {
    static LAST: Mutex<Option<std::time::Instant>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let now = std::time::Instant::now();
    if last.is_some_and(|at| now.duration_since(at) < WARN_EVERY) {
        return false;
    }
    *last = Some(now);
    true
}

enum AcceptError {
    /// The connection went away before it was accepted: take the next.
    OneConnection,
    /// The listener is unusable.
    Listener,
    /// The process or the system is short of something: wait.
    Resources,
}

fn classify(error: &io::Error) -> AcceptError {
    match error.raw_os_error() {
        Some(
            libc::ECONNABORTED
            | libc::ECONNRESET
            | libc::EPROTO
            | libc::EPERM
            | libc::EINTR
            | libc::ETIMEDOUT
            | libc::EHOSTUNREACH
            | libc::ENETUNREACH,
        ) => AcceptError::OneConnection,
        Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK | libc::EOPNOTSUPP | libc::EFAULT) => {
            AcceptError::Listener
        }
        _ => AcceptError::Resources,
    }
}

/// Accepts the next connection `limiter` admits; refused ones are closed at once.
pub async fn accept_admitted(
    listener: &TcpListener,
    limiter: &Arc<Limiter>,
) -> io::Result<(TcpStream, SocketAddr, Slot)> {
    loop {
        let (stream, from) = accept(listener, limiter.name).await?;
        if let Some(slot) = limiter.admit(from.ip()) {
            return Ok((stream, from, slot));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// `nodes` nodes with two checks each, with or without a cluster.
    fn config(nodes: usize, cluster: bool) -> Config {
        let mut yaml = String::from(
            "zone: ha.example.com\nself: n1\ndns: { listen: [\"127.0.0.1:5300\"] }\nnodes:\n",
        );
        for i in 1..=nodes {
            let (hi, lo) = (10 + i / 200, 1 + i % 200);
            yaml.push_str(&format!("  - {{ id: n{i}, address: 127.0.{hi}.{lo} }}\n"));
        }
        yaml.push_str(
            "checks:\n  - { id: web, type: http, url: \"http://{address}/\" }\n\
             \x20 - { id: sip, type: tcp, port: 5060 }\n\
             hostnames:\n  - { name: app, checks: [web, sip] }\n",
        );
        if cluster {
            yaml.push_str("cluster: { listen: \"127.0.0.1:8053\" }\n");
        }
        crate::config::parse(Path::new("t.yaml"), &yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_reserve_covers_every_probe_and_the_rest_goes_to_the_listeners() {
        // systemd's default limit, 3 nodes × 2 checks, 20 descriptors open at start.
        let b = Budget::plan(1024, 20, &config(3, true));
        assert_eq!(
            b.reserved,
            20 + 6 + 2 * 2 + FIXED_RESERVE + EVICTING_MAX + MARGIN
        );
        assert_eq!(b.dashboard.total, DASHBOARD_MAX);
        assert_eq!(b.peer_api.total, PEER_SLOTS_PER_NODE * 2 + 8);
        assert_eq!(
            b.reserved + b.dashboard.total + b.peer_api.total + b.dns_tcp.total,
            1024,
            "{b:?}"
        );
        assert_eq!(b.dns_tcp.per_source, 64);
        assert!(!b.starved());

        // Without a cluster the peer API gets nothing; a high limit is capped for memory.
        let b = Budget::plan(1 << 20, 20, &config(3, false));
        assert_eq!(b.peer_api.total, 0);
        assert_eq!(b.dns_tcp.total, DNS_TCP_MAX);

        // 400 nodes × 2 checks under 1024: the probes come first; the listeners get their
        // minimum and the operator is told.
        let b = Budget::plan(1024, 20, &config(400, false));
        assert_eq!(
            b.reserved,
            20 + 800 + 2 * 399 + FIXED_RESERVE + EVICTING_MAX + MARGIN
        );
        assert_eq!(b.dns_tcp.total, DNS_TCP_MIN);
        assert!(b.starved());
    }

    fn limiter(total: usize, per_source: usize) -> Arc<Limiter> {
        Arc::new(Limiter::new("test", Cap { total, per_source }))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_listener_closes_its_quietest_connection_to_admit_a_new_one() {
        let l = limiter(3, 3);
        let a = l.admit(ip("192.0.2.1")).unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        let b = l.admit(ip("192.0.2.2")).unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        let c = l.admit(ip("192.0.2.3")).unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        a.touch(); // a answered a query just now: b is the quietest
        let d = l
            .admit(ip("192.0.2.4"))
            .expect("admitted by closing another");
        assert!(b.close.is_cancelled(), "the quietest was asked to close");
        assert!(!a.close.is_cancelled() && !c.close.is_cancelled());
        assert_eq!(
            l.open(),
            4,
            "b holds its descriptor until its task drops it"
        );
        drop(b);
        assert_eq!(l.open(), 3);
        drop((a, c, d));
        assert_eq!(l.open(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_source_over_its_cap_loses_its_own_oldest_not_the_others() {
        let l = limiter(10, 2);
        let other = l.admit(ip("192.0.2.9")).unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        let first = l.admit(ip("198.51.100.1")).unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        let second = l.admit(ip("198.51.100.1")).unwrap();
        let third = l.admit(ip("198.51.100.1")).unwrap();
        assert!(first.close.is_cancelled());
        assert!(!other.close.is_cancelled(), "older, but another source");
        assert!(!second.close.is_cancelled() && !third.close.is_cancelled());
        drop((other, first, second, third));
    }

    #[test]
    fn an_ipv6_source_is_its_64() {
        let l = limiter(10, 1);
        let a = l.admit(ip("2001:db8:1:2::1")).unwrap();
        let b = l.admit(ip("2001:db8:1:2:ffff::9")).unwrap();
        assert!(a.close.is_cancelled(), "same /64: one source");
        let c = l.admit(ip("2001:db8:1:3::1")).unwrap();
        assert!(!b.close.is_cancelled(), "another /64");
        assert_eq!(
            Source::of(ip("::ffff:192.0.2.1")),
            Source::of(ip("192.0.2.1"))
        );
        drop((a, b, c));
    }

    #[test]
    fn too_many_closures_under_way_refuse_the_new_connection() {
        let l = limiter(1, 1);
        let mut held = vec![l.admit(ip("192.0.2.1")).unwrap()];
        for _ in 0..EVICTING_MAX {
            held.push(
                l.admit(ip("192.0.2.1"))
                    .expect("admitted by closing the previous"),
            );
        }
        // Every earlier one is closing and none has let go yet: the descriptors are all held.
        assert!(l.admit(ip("192.0.2.1")).is_none());
        assert_eq!(l.open(), EVICTING_MAX + 1);
        held.remove(0); // one closes: room again
        assert!(l.admit(ip("192.0.2.1")).is_some());
    }

    #[tokio::test]
    async fn accept_waits_on_errors_of_the_process_and_retries_those_of_one_connection() {
        assert!(matches!(
            classify(&io::Error::from_raw_os_error(libc::EMFILE)),
            AcceptError::Resources
        ));
        assert!(matches!(
            classify(&io::Error::from_raw_os_error(libc::ECONNABORTED)),
            AcceptError::OneConnection
        ));
        assert!(matches!(
            classify(&io::Error::from_raw_os_error(libc::EBADF)),
            AcceptError::Listener
        ));
    }
}
