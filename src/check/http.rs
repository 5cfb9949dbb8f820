//! HTTP and HTTPS probes: status range, body substring, Host header, extra headers, TLS checks.

use std::net::{IpAddr, SocketAddr};

use reqwest::header::{HOST, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Url, redirect};

use super::{describe_error, no_roots_hint, url_host};
use crate::config::HttpCheck;

/// The shared HTTP clients: one that verifies certificates, one that does not.
///
/// Every probe opens a fresh connection (no idle pool): a server that stops accepting new
/// connections must fail its check even if an old keep-alive connection still works.
///
/// The verifying client needs the system's CA certificates, which a minimal host may not have:
/// its failure is kept and reported only by an https check that verifies. Plain http checks never
/// speak TLS (redirects are not followed), so they use the client that needs no roots.
#[derive(Debug, Clone)]
pub struct HttpClients {
    verified: Result<Client, String>,
    unverified: Client,
}

impl HttpClients {
    pub fn new() -> Result<Self, String> {
        // reqwest is built without a default crypto provider: use ring, once per process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(Self {
            verified: builder(true).build().map_err(verifier_error),
            unverified: builder(false).build().map_err(|e| describe_error(&e))?,
        })
    }

    fn verified(&self) -> Result<Client, String> {
        self.verified.clone()
    }
}

/// Why no client that verifies certificates could be built, and what to do about it.
fn verifier_error(error: reqwest::Error) -> String {
    let words = describe_error(&error);
    let hint = no_roots_hint(&words);
    let or = if hint.is_empty() {
        ""
    } else {
        "; or set tls_verify: false on this check"
    };
    format!("cannot set up certificate verification: {words}{hint}{or}")
}

fn builder(verify: bool) -> reqwest::ClientBuilder {
    Client::builder()
        // Probes must reach the node itself, never an HTTP proxy from the environment.
        .no_proxy()
        // A redirect is an answer: 3xx is judged against expect_status, not followed.
        .redirect(redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .user_agent(concat!(
            "failoverd/",
            env!("CARGO_PKG_VERSION"),
            " (health check)"
        ))
        .tls_danger_accept_invalid_certs(!verify)
}

#[derive(Debug)]
pub struct HttpProbe {
    client: Client,
    url: Url,
    headers: HeaderMap,
    expect_status: (u16, u16),
    expect_body: Option<String>,
    body_limit: u64,
}

impl HttpProbe {
    pub fn new(ip: IpAddr, check: &HttpCheck, clients: &HttpClients) -> Result<Self, String> {
        let url_text = check.url_template.replace("{address}", &url_host(ip));
        let mut url = Url::parse(&url_text).map_err(|e| format!("`{url_text}`: {e}"))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &check.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
            headers.insert(
                name,
                HeaderValue::from_str(value).map_err(|e| e.to_string())?,
            );
        }
        let client = match (&check.host_header, check.https) {
            // HTTPS with a Host: connect to the node, but speak TLS (SNI, certificate name) as
            // the host name, as a browser that resolved the name to this node would.
            (Some(host), true) => {
                let port = url.port_or_known_default().unwrap_or(443);
                let host_only = host.split(':').next().unwrap_or(host);
                url.set_host(Some(host_only))
                    .map_err(|e| format!("host `{host}`: {e}"))?;
                builder(check.tls_verify)
                    .resolve(host_only, SocketAddr::new(ip, port))
                    .build()
                    .map_err(verifier_error)?
            }
            (Some(host), false) => {
                headers.insert(
                    HOST,
                    HeaderValue::from_str(host).map_err(|e| e.to_string())?,
                );
                clients.unverified.clone()
            }
            // https that verifies: the one case that needs the system's CA certificates.
            (None, true) if check.tls_verify => clients.verified()?,
            (None, _) => clients.unverified.clone(),
        };
        Ok(Self {
            client,
            url,
            headers,
            expect_status: check.expect_status,
            expect_body: check.expect_body.clone(),
            body_limit: check.body_limit,
        })
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    pub async fn run(&self) -> Result<(), String> {
        let mut response = self
            .client
            .get(self.url.clone())
            .headers(self.headers.clone())
            .send()
            .await
            .map_err(|e| describe_error(&e))?;
        let status = response.status().as_u16();
        let (lo, hi) = self.expect_status;
        if !(lo..=hi).contains(&status) {
            let expected = if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            };
            return Err(format!("HTTP {status} (expected {expected})"));
        }
        let Some(needle) = &self.expect_body else {
            return Ok(());
        };
        let mut scan = BodyScan::new(needle.as_bytes());
        let mut read: u64 = 0;
        while read < self.body_limit {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = self.body_limit - read;
                    let part =
                        &chunk[..chunk.len().min(usize::try_from(room).unwrap_or(usize::MAX))];
                    read += part.len() as u64;
                    if scan.feed(part) {
                        return Ok(());
                    }
                    // A body that arrives faster than it is scanned must not keep this task
                    // (and the probe's timeout) from the scheduler.
                    tokio::task::consume_budget().await;
                }
                Ok(None) => break,
                Err(e) => return Err(format!("reading the body: {}", describe_error(&e))),
            }
        }
        let limit = format_bytes(self.body_limit);
        Err(format!(
            "body did not contain {needle:?} (read {} of at most {limit})",
            format_bytes(read)
        ))
    }
}

/// Looks for a needle in a body that arrives in chunks, in time linear in the body: each chunk
/// is scanned once, with the last `needle.len() - 1` bytes of what came before (a match may
/// straddle chunks). Nothing else of the body is kept.
struct BodyScan<'a> {
    needle: &'a [u8],
    /// The end of the body so far, at most `needle.len() - 1` bytes, followed by the chunk
    /// being scanned.
    window: Vec<u8>,
}

impl<'a> BodyScan<'a> {
    fn new(needle: &'a [u8]) -> Self {
        Self {
            needle,
            window: Vec::new(),
        }
    }

    /// Takes the next chunk; true once the needle has been seen.
    fn feed(&mut self, chunk: &[u8]) -> bool {
        let n = self.needle.len();
        if n == 0 {
            return true;
        }
        self.window.extend_from_slice(chunk);
        let found = contains(&self.window, self.needle);
        let keep = n - 1;
        if self.window.len() > keep {
            self.window.drain(..self.window.len() - keep);
        }
        found
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// `64 KiB`, `512 B`: sizes in messages.
fn format_bytes(n: u64) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod scan_tests {
    use super::BodyScan;

    #[test]
    fn finds_a_needle_across_chunk_boundaries_and_keeps_only_the_overlap() {
        let body = b"<html>... Sign in ...</html>";
        // Every way of cutting the body in two chunks, and in one-byte chunks.
        for cut in 0..=body.len() {
            let mut scan = BodyScan::new(b"Sign in");
            let found = scan.feed(&body[..cut]) | scan.feed(&body[cut..]);
            assert!(found, "cut at {cut}");
        }
        let mut scan = BodyScan::new(b"Sign in");
        assert!(body.iter().any(|b| scan.feed(&[*b])));
        assert!(scan.window.len() < b"Sign in".len());
        let mut scan = BodyScan::new(b"Sign in");
        assert!(!scan.feed(b"Sign i") && !scan.feed(b"x") && !scan.feed(b"n"));
    }

    #[test]
    fn scanning_is_linear_in_the_body() {
        // 64 MiB in 16 KiB chunks without the needle: rescanning from the start on every chunk
        // (as before) reads 128 GiB, which takes minutes; once each, it takes well under a second.
        let chunk = vec![b'a'; 16 * 1024];
        let mut scan = BodyScan::new(b"Sign in");
        let started = std::time::Instant::now();
        for _ in 0..4096 {
            assert!(!scan.feed(&chunk));
            assert!(scan.window.len() <= 6, "only the overlap is kept");
        }
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_secs(20),
            "64 MiB took {took:?}"
        );
    }
}
