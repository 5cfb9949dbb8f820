//! Authentication of the peer API with the shared secret: HMAC-SHA256 over a timestamp, a
//! nonce and what is sent.
//!
//! Agents pull from each other, and push their own observations when they change. The puller signs its request (who it is, the time, a fresh
//! nonce); the server checks the signature, that the time is within `MAX_SKEW` and that the
//! nonce is new, and signs its response over that nonce and the body. A recorded response
//! cannot be replayed (the nonce differs every time) and nobody without the secret can make
//! an agent count a vote. A push is signed the same way, over its body too (`sign_push`), and
//! spends a nonce of the same per-agent cache. HMAC over mutual TLS: one shared secret from an environment variable
//! is what operators of a 2–5 node cluster can manage; certificates per node are not.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How far a request's time may be from ours (clocks of a cluster are kept in sync, as the
/// vendor documentation also requires).
pub const MAX_SKEW: Duration = Duration::from_secs(30);
/// A secret shorter than this is refused at start.
pub const MIN_SECRET_LEN: usize = 16;

pub const HEADER_AGENT: &str = "x-failoverd-agent";
pub const HEADER_TIME: &str = "x-failoverd-time";
pub const HEADER_NONCE: &str = "x-failoverd-nonce";
pub const HEADER_SIGNATURE: &str = "x-failoverd-signature";

/// The shared secret. Its Debug output never shows it.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Secret {
    /// Reads the secret from the environment variable `name`.
    pub fn from_env(name: &str) -> Result<Self, String> {
        let value = std::env::var(name).map_err(|_| {
            format!("the cluster secret variable ${name} is not set: give every agent the same secret of {MIN_SECRET_LEN} or more characters (for systemd, in /etc/failoverd/environment)")
        })?;
        Self::new(value.trim().as_bytes()).map_err(|e| format!("${name}: {e}"))
    }

    pub fn new(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(format!(
                "the cluster secret is {} characters long; use {MIN_SECRET_LEN} or more",
                bytes.len()
            ));
        }
        Ok(Self(bytes.to_vec()))
    }

    fn mac(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    fn sign(&self, parts: &[&[u8]]) -> String {
        hex(&self.mac(parts).finalize().into_bytes())
    }

    fn verify(&self, parts: &[&[u8]], signature: &str) -> bool {
        match unhex(signature) {
            Some(tag) => self.mac(parts).verify_slice(&tag).is_ok(),
            None => false,
        }
    }

    /// Signature of a pull request from `agent` at `time` (unix seconds) with `nonce`.
    pub fn sign_request(&self, agent: &str, time: u64, nonce: &str, path: &str) -> String {
        self.sign(&[
            b"failoverd-v1 request",
            agent.as_bytes(),
            time.to_string().as_bytes(),
            nonce.as_bytes(),
            path.as_bytes(),
        ])
    }

    pub fn verify_request(
        &self,
        agent: &str,
        time: u64,
        nonce: &str,
        path: &str,
        signature: &str,
    ) -> bool {
        self.verify(
            &[
                b"failoverd-v1 request",
                agent.as_bytes(),
                time.to_string().as_bytes(),
                nonce.as_bytes(),
                path.as_bytes(),
            ],
            signature,
        )
    }

    /// Signature of a push from `agent` at `time` with `nonce`: the request's parts and the
    /// body it carries (a push has no signed response; its body is what must not be forged).
    pub fn sign_push(
        &self,
        agent: &str,
        time: u64,
        nonce: &str,
        path: &str,
        body: &[u8],
    ) -> String {
        self.sign(&[
            b"failoverd-v1 push",
            agent.as_bytes(),
            time.to_string().as_bytes(),
            nonce.as_bytes(),
            path.as_bytes(),
            body,
        ])
    }

    pub fn verify_push(
        &self,
        agent: &str,
        time: u64,
        nonce: &str,
        path: &str,
        body: &[u8],
        signature: &str,
    ) -> bool {
        self.verify(
            &[
                b"failoverd-v1 push",
                agent.as_bytes(),
                time.to_string().as_bytes(),
                nonce.as_bytes(),
                path.as_bytes(),
                body,
            ],
            signature,
        )
    }

    /// Signature of the response `body` to the request that carried `nonce`.
    pub fn sign_response(&self, nonce: &str, body: &[u8]) -> String {
        self.sign(&[b"failoverd-v1 response", nonce.as_bytes(), body])
    }

    pub fn verify_response(&self, nonce: &str, body: &[u8], signature: &str) -> bool {
        self.verify(
            &[b"failoverd-v1 response", nonce.as_bytes(), body],
            signature,
        )
    }
}

/// How long a nonce is remembered after it was used: a request counts while its time is within
/// `MAX_SKEW` of ours, and that time may be `MAX_SKEW` ahead of its arrival.
pub const NONCE_MEMORY: Duration = Duration::from_secs(2 * MAX_SKEW.as_secs());
/// Nonces remembered per calling agent, at most. An honest puller asks at most four times per
/// `cluster.period` (100 ms or more): under 2,400 in `NONCE_MEMORY`; an honest pusher at most once
/// per `push::MIN_GAP` (20 ms): under 3,000 more.
pub const NONCES_PER_AGENT: usize = 10_000;

/// The nonces used within `NONCE_MEMORY`, per calling agent. Old ones leave by age, oldest first;
/// a nonce still inside the window is never forgotten, so it can never be replayed. An agent
/// that spends more than `NONCES_PER_AGENT` in the window is refused until its oldest age out;
/// it only slows itself down, the other agents have their own room.
#[derive(Debug, Default)]
pub struct NonceCache {
    agents: HashMap<String, AgentNonces>,
}

#[derive(Debug, Default)]
struct AgentNonces {
    /// In the order used (so oldest first).
    order: VecDeque<(Instant, String)>,
    seen: HashSet<String>,
}

impl NonceCache {
    /// Remembers `nonce` from `agent` (an id of the configuration: the caller checks that
    /// first, so the map holds at most one entry per node). Err says why it is refused.
    pub fn first_use(
        &mut self,
        agent: &str,
        nonce: &str,
        now: Instant,
    ) -> Result<(), &'static str> {
        let nonces = match self.agents.get_mut(agent) {
            Some(n) => n,
            None => self.agents.entry(agent.to_string()).or_default(),
        };
        while let Some((at, old)) = nonces.order.front() {
            if now.saturating_duration_since(*at) < NONCE_MEMORY {
                break;
            }
            nonces.seen.remove(old);
            nonces.order.pop_front();
        }
        if nonces.seen.contains(nonce) {
            return Err("nonce already used (a replayed request)");
        }
        if nonces.order.len() >= NONCES_PER_AGENT {
            return Err("too many requests from this agent within a minute");
        }
        nonces.seen.insert(nonce.to_string());
        nonces.order.push_back((now, nonce.to_string()));
        Ok(())
    }
}

/// Seconds since the epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh random nonce (128 bits, hex).
pub fn nonce() -> String {
    hex(&rand::random::<[u8; 16]>())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 128 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::new(s.as_bytes()).unwrap()
    }

    #[test]
    fn signatures_verify_with_the_same_secret_only() {
        let a = secret("correct horse battery staple");
        let b = secret("another secret, same length!!");
        let sig = a.sign_request("node1", 1000, "abcd", "/v1/observations");
        assert!(a.verify_request("node1", 1000, "abcd", "/v1/observations", &sig));
        assert!(
            !b.verify_request("node1", 1000, "abcd", "/v1/observations", &sig),
            "other secret"
        );
        assert!(
            !a.verify_request("node2", 1000, "abcd", "/v1/observations", &sig),
            "other agent"
        );
        assert!(
            !a.verify_request("node1", 1001, "abcd", "/v1/observations", &sig),
            "other time"
        );
        assert!(
            !a.verify_request("node1", 1000, "abce", "/v1/observations", &sig),
            "other nonce"
        );
        assert!(
            !a.verify_request("node1", 1000, "abcd", "/v1/observations", "zz"),
            "garbage"
        );

        let body = br#"{"agent":"node2"}"#;
        let sig = a.sign_response("n1", body);
        assert!(a.verify_response("n1", body, &sig));
        assert!(
            !a.verify_response("n2", body, &sig),
            "a response to another request (replay)"
        );
        assert!(
            !a.verify_response("n1", br#"{"agent":"node3"}"#, &sig),
            "a changed body"
        );
    }

    #[test]
    fn a_nonce_is_never_forgotten_inside_the_window_however_many_follow() {
        let mut cache = NonceCache::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        cache.first_use("node2", "first", at(0)).unwrap();
        // A member spends its whole allowance within the window (the old cache forgot
        // everything at this point, and "first" could be replayed).
        for i in 1..NONCES_PER_AGENT {
            cache.first_use("node2", &format!("n{i}"), at(1)).unwrap();
        }
        assert_eq!(
            cache.first_use("node2", "first", at(2)),
            Err("nonce already used (a replayed request)")
        );
        assert_eq!(
            cache.first_use("node2", "one more", at(2)),
            Err("too many requests from this agent within a minute"),
            "refused, not remembered by forgetting others"
        );
        // Another agent has its own room.
        cache.first_use("node3", "n1", at(2)).unwrap();
        // Once the oldest is out of the window, it leaves alone, by age.
        let later = NONCE_MEMORY.as_millis() as u64;
        cache.first_use("node2", "one more", at(later)).unwrap();
        assert_eq!(
            cache.first_use("node2", "n5", at(later)),
            Err("nonce already used (a replayed request)")
        );
        assert_eq!(cache.agents["node2"].order.len(), NONCES_PER_AGENT);
        // A window later, all but the newest have aged out: memory is bounded by age.
        cache.first_use("node2", "last", at(later + 2)).unwrap();
        assert_eq!(cache.agents["node2"].order.len(), 2);
        assert_eq!(cache.agents["node2"].seen.len(), 2);
    }

    #[test]
    fn parts_are_length_prefixed_so_they_cannot_be_shifted() {
        let a = secret("correct horse battery staple");
        let sig = a.sign_request("node1", 12, "3", "/p");
        assert!(!a.verify_request("node11", 2, "3", "/p", &sig));
    }

    #[test]
    fn short_or_missing_secrets_are_refused_and_never_printed() {
        assert!(Secret::new(b"short").unwrap_err().contains("16 or more"));
        assert!(
            Secret::from_env("FAILOVERD_TEST_SURELY_UNSET_VARIABLE")
                .unwrap_err()
                .contains("is not set")
        );
        assert_eq!(
            format!("{:?}", secret("correct horse battery staple")),
            "Secret(***)"
        );
    }
}
