//! Probes: one HTTP(S) or TCP check against one node, reporting pass/fail, latency and why.
//!
//! Probes hold no policy (no thresholds, no state); `health` decides what a result means.

mod http;
pub mod schedule;
mod tcp;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::config::{Check, CheckKind, Node};
use crate::health::ProbeResult;

pub use http::HttpClients;

/// A ready-to-run check of one (node, check) pair.
#[derive(Debug)]
pub enum Probe {
    Http(http::HttpProbe),
    Tcp(tcp::TcpProbe),
}

impl Probe {
    pub fn new(node: &Node, check: &Check, clients: &HttpClients) -> Result<Self, String> {
        Ok(match &check.kind {
            CheckKind::Http(h) => {
                Probe::Http(http::HttpProbe::new(node.probe_address, h, clients)?)
            }
            CheckKind::Tcp(t) => Probe::Tcp(tcp::TcpProbe::new(
                SocketAddr::new(node.probe_address, t.port),
                t,
            )),
        })
    }

    /// Runs the probe once; a probe that takes longer than `timeout` fails with "timeout after …".
    pub async fn run(&self, timeout: Duration) -> ProbeResult {
        let started = Instant::now();
        let outcome = tokio::time::timeout(timeout, async {
            match self {
                Probe::Http(p) => p.run().await,
                Probe::Tcp(p) => p.run().await,
            }
        })
        .await;
        let latency = started.elapsed();
        match outcome {
            Ok(Ok(())) => ProbeResult::pass(latency),
            Ok(Err(error)) => ProbeResult::fail(latency, error),
            Err(_) => ProbeResult::fail(
                latency,
                format!("timeout after {}", crate::config::format_duration(timeout)),
            ),
        }
    }

    /// What is probed, for logs: the URL or address:port.
    pub fn target(&self) -> String {
        match self {
            Probe::Http(p) => p.url().to_string(),
            Probe::Tcp(p) => p.addr().to_string(),
        }
    }
}

/// `{address}` as it goes into a URL: IPv6 in brackets.
pub fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The most useful words of an error chain: "connection refused" rather than "error sending request".
pub fn describe_error(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut deepest = error.to_string();
    while let Some(e) = current {
        if let Some(words) = e.downcast_ref::<std::io::Error>().and_then(io_words) {
            return words.to_string();
        }
        deepest = e.to_string();
        current = e.source();
    }
    deepest
}

/// What to do when a verifying TLS client cannot be built because this machine has no CA
/// certificates (rustls-platform-verifier reads them from /etc/ssl/certs, or from
/// `SSL_CERT_FILE`/`SSL_CERT_DIR` when set); empty for any other failure.
pub fn no_roots_hint(words: &str) -> &'static str {
    if words.contains("No CA certificates were loaded") {
        " (this machine has no CA certificates to verify TLS servers with: install them (Debian: \
         `apt-get install ca-certificates`, which fills /etc/ssl/certs), or point SSL_CERT_FILE at \
         a PEM bundle)"
    } else {
        ""
    }
}

/// Short names for the I/O failures operators see most.
pub fn io_words(error: &std::io::Error) -> Option<&'static str> {
    use std::io::ErrorKind::*;
    Some(match error.kind() {
        ConnectionRefused => "connection refused",
        ConnectionReset => "connection reset",
        ConnectionAborted => "connection aborted",
        HostUnreachable => "host unreachable",
        NetworkUnreachable => "network unreachable",
        AddrNotAvailable => "address not available",
        UnexpectedEof => "connection closed before a response",
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
