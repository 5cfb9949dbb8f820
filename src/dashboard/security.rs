//! Who may talk to the dashboard: loopback peers only, and only with a loopback `Host`.
//!
//! | peer address        | `Host` header                                  | answer |
//! |---------------------|------------------------------------------------|--------|
//! | unknown (no info)   | –                                              | 403    |
//! | not loopback        | –                                              | 403    |
//! | loopback            | missing, unparsable                            | 403    |
//! | loopback            | a name other than `localhost` / `*.localhost`  | 403    |
//! | loopback            | an IP that is not loopback                     | 403    |
//! | loopback            | `localhost`, `127.x.y.z`, `[::1]`, any port    | pass   |
//!
//! The peer check keeps other machines out even when `dashboard.listen` is not loopback. The
//! `Host` check stops DNS rebinding: a page from `evil.example` whose name is re-pointed to
//! 127.0.0.1 reaches us from a loopback peer, but its requests still carry `Host: evil.example`.

use std::net::IpAddr;

use axum::extract::{ConnectInfo, Request};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use tracing::debug;

use super::plain;
use crate::connections::http::Peer;

pub async fn guard(request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|ConnectInfo(Peer(addr))| *addr);
    // Without the peer address we cannot tell: refuse rather than guess.
    let Some(peer) = peer.filter(|p| is_loopback(p.ip())) else {
        debug!(peer = ?peer, "dashboard request from a non-loopback peer refused");
        return plain(
            StatusCode::FORBIDDEN,
            "forbidden: the dashboard answers clients on this machine only (loopback)\n",
        );
    };
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    if !host.is_some_and(is_loopback_host) {
        debug!(%peer, host = ?host, "dashboard request with a non-loopback Host refused");
        return plain(
            StatusCode::FORBIDDEN,
            "forbidden: use http://localhost:PORT/ or http://127.0.0.1:PORT/ (the Host must be a loopback name)\n",
        );
    }
    next.run(request).await
}

/// Loopback, including IPv4-mapped IPv6 (`::ffff:127.0.0.1`, what a dual-stack socket reports).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Whether a `Host` value (`name[:port]`, `ip[:port]`, `[ipv6][:port]`) names this machine
/// through loopback only.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6] or [v6]:port
        match rest.split_once(']') {
            Some((v6, tail)) if tail.is_empty() || valid_port(tail) => v6,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if valid_port(&format!(":{port}")) => name,
            Some(_) => return false,
            None => host,
        }
    };
    if let Ok(ip) = name.parse::<IpAddr>() {
        return is_loopback(ip);
    }
    // RFC 6761: localhost and its subdomains always resolve to loopback in browsers.
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// `:port` with a port number in range.
fn valid_port(tail: &str) -> bool {
    tail.strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_pass_and_others_do_not() {
        let table = [
            ("localhost", true),
            ("localhost:81", true),
            ("LOCALHOST:8081", true),
            ("localhost.", true),
            ("app.localhost:81", true),
            ("127.0.0.1", true),
            ("127.0.0.1:81", true),
            ("127.9.8.7:65535", true),
            ("[::1]", true),
            ("[::1]:81", true),
            ("[::ffff:127.0.0.1]:81", true),
            ("", false),
            ("evil.example", false),
            ("evil.example:81", false),
            ("localhost.evil.example", false),
            ("notlocalhost", false),
            ("192.0.2.10:81", false),
            ("0.0.0.0:81", false),
            ("[2001:db8::1]:81", false),
            ("[::1]:notaport", false),
            ("localhost:99999", false),
            ("localhost:", false),
            ("[::1", false),
            ("::1", false),
        ];
        for (host, want) in table {
            assert_eq!(is_loopback_host(host), want, "Host: {host:?}");
        }
    }

    #[test]
    fn loopback_peers_include_mapped_ipv4() {
        for (ip, want) in [
            ("127.0.0.1", true),
            ("127.255.0.1", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("::ffff:192.0.2.1", false),
            ("192.0.2.1", false),
            ("2001:db8::1", false),
        ] {
            assert_eq!(is_loopback(ip.parse().unwrap()), want, "{ip}");
        }
    }
}
