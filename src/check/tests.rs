//! Probes against real servers on 127.0.0.1: HTTP (plain and TLS) and TCP, passing and failing
//! in each way an operator needs told apart.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{HttpClients, Probe};
use crate::config::{Check, CheckKind, HttpCheck, Node, TcpCheck, Timing};

const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn node(probe: IpAddr) -> Node {
    Node {
        id: "n1".into(),
        addresses: vec![probe],
        probe_address: probe,
        priority: 1,
    }
}

fn timing() -> Timing {
    Timing {
        interval: Duration::from_secs(1),
        retry_interval: Duration::from_millis(500),
        timeout: Duration::from_millis(300),
        fall: 1,
        rise: 1,
    }
}

fn http_check(url: String) -> HttpCheck {
    HttpCheck {
        https: url.starts_with("https"),
        url_template: url,
        expect_status: (200, 399),
        expect_body: None,
        host_header: None,
        headers: vec![],
        tls_verify: true,
        body_limit: 64 * 1024,
    }
}

fn probe_for(kind: CheckKind) -> Probe {
    let check = Check {
        id: "c".into(),
        kind,
        timing: timing(),
    };
    Probe::new(&node(LOOPBACK), &check, &HttpClients::new().unwrap()).unwrap()
}

/// An HTTP/1.1 server on 127.0.0.1 that answers every request with `respond(request text)`.
async fn http_server(respond: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let respond = Arc::new(respond);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let respond = respond.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let reply = respond(&String::from_utf8_lossy(&buf[..n]));
                let _ = stream.write_all(&reply).await;
            });
        }
    });
    addr
}

fn reply(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn run(kind: CheckKind) -> crate::health::ProbeResult {
    probe_for(kind).run(timing().timeout).await
}

#[tokio::test]
async fn http_passes_on_an_accepted_status_and_body() {
    let addr = http_server(|_| reply("200 OK", "<h1>Sign in</h1>")).await;
    let mut check = http_check(format!("http://{{address}}:{}/login", addr.port()));
    check.expect_body = Some("Sign in".into());
    let r = run(CheckKind::Http(check)).await;
    assert!(r.passed, "{r:?}");
    assert!(r.latency < Duration::from_millis(300));
}

#[tokio::test]
async fn http_failures_say_what_went_wrong() {
    let unavailable = http_server(|_| reply("503 Service Unavailable", "busy")).await;
    let r = run(CheckKind::Http(http_check(format!(
        "http://{{address}}:{}/",
        unavailable.port()
    ))))
    .await;
    assert_eq!(r.error.as_deref(), Some("HTTP 503 (expected 200-399)"));

    // Redirects are answers, not followed: a login page that redirects away is judged as 302.
    let redirect = http_server(|_| {
        b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n".to_vec()
    })
    .await;
    let mut check = http_check(format!("http://{{address}}:{}/", redirect.port()));
    check.expect_status = (200, 200);
    let r = run(CheckKind::Http(check)).await;
    assert_eq!(r.error.as_deref(), Some("HTTP 302 (expected 200)"));

    let wrong_page = http_server(|_| reply("200 OK", "Internal error page")).await;
    let mut check = http_check(format!("http://{{address}}:{}/", wrong_page.port()));
    check.expect_body = Some("Sign in".into());
    let r = run(CheckKind::Http(check)).await;
    assert!(
        r.error
            .as_deref()
            .unwrap()
            .starts_with("body did not contain \"Sign in\""),
        "{r:?}"
    );

    // Nothing listens on a port we just released.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = run(CheckKind::Http(http_check(format!(
        "http://{{address}}:{closed}/"
    ))))
    .await;
    assert_eq!(r.error.as_deref(), Some("connection refused"));
}

#[tokio::test]
async fn a_hanging_server_fails_by_timeout_on_time() {
    // Accepts, reads, never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let started = std::time::Instant::now();
    let r = run(CheckKind::Http(http_check(format!(
        "http://{{address}}:{port}/"
    ))))
    .await;
    assert_eq!(r.error.as_deref(), Some("timeout after 300ms"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1000),
        "{took:?}"
    );
}

#[tokio::test]
async fn the_body_is_read_only_up_to_the_limit() {
    let big = format!("{}Sign in", "x".repeat(100_000));
    let addr = http_server(move |_| reply("200 OK", &big)).await;
    let mut check = http_check(format!("http://{{address}}:{}/", addr.port()));
    check.expect_body = Some("Sign in".into());
    check.body_limit = 1024;
    let r = run(CheckKind::Http(check.clone())).await;
    assert!(
        r.error
            .as_deref()
            .unwrap()
            .contains("read 1 KiB of at most 1 KiB"),
        "{r:?}"
    );
    check.body_limit = 200_000;
    assert!(run(CheckKind::Http(check)).await.passed);
}

#[tokio::test]
async fn host_and_extra_headers_are_sent() {
    let addr = http_server(|req| {
        let lower = req.to_ascii_lowercase();
        let ok = lower.contains("host: portal.example.com\r\n")
            && lower.contains("x-probe: failoverd\r\n");
        if ok {
            reply("200 OK", "headers ok")
        } else {
            reply("400 Bad Request", req)
        }
    })
    .await;
    let mut check = http_check(format!("http://{{address}}:{}/", addr.port()));
    check.host_header = Some("portal.example.com".into());
    check.headers = vec![("X-Probe".into(), "failoverd".into())];
    let r = run(CheckKind::Http(check)).await;
    assert!(r.passed, "{r:?}");
}

#[test]
fn ipv6_addresses_go_in_brackets() {
    let check = Check {
        id: "c".into(),
        kind: CheckKind::Http(http_check("http://{address}:8080/x".into())),
        timing: timing(),
    };
    let probe = Probe::new(
        &node("::1".parse().unwrap()),
        &check,
        &HttpClients::new().unwrap(),
    )
    .unwrap();
    assert_eq!(probe.target(), "http://[::1]:8080/x");
}

/// A TLS server on 127.0.0.1 with a self-signed certificate for `portal.example.com`.
async fn https_server() -> SocketAddr {
    use tokio_rustls::rustls::{self, pki_types::PrivateKeyDer};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = rcgen::generate_simple_self_signed(vec!["portal.example.com".to_string()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls.write_all(&reply("200 OK", "secure")).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn https_verifies_certificates_unless_told_not_to() {
    let addr = https_server().await;
    let url = format!("https://{{address}}:{}/", addr.port());

    let r = run(CheckKind::Http(http_check(url.clone()))).await;
    let error = r
        .error
        .expect("a self-signed certificate is refused by default");
    assert!(error.to_lowercase().contains("certificate"), "{error}");

    let mut insecure = http_check(url.clone());
    insecure.tls_verify = false;
    assert!(run(CheckKind::Http(insecure)).await.passed);

    // With a Host, the probe connects to the node but speaks TLS as portal.example.com.
    let mut named = http_check(url);
    named.tls_verify = false;
    named.host_header = Some("portal.example.com".into());
    let probe = probe_for(CheckKind::Http(named));
    assert_eq!(
        probe.target(),
        format!("https://portal.example.com:{}/", addr.port())
    );
    assert!(probe.run(Duration::from_millis(500)).await.passed);
}

async fn tcp_server(banner: &'static [u8], echo_line: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                if echo_line {
                    let mut buf = [0u8; 256];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let _ = s.write_all(&buf[..n]).await;
                } else {
                    let _ = s.write_all(banner).await;
                }
            });
        }
    });
    port
}

fn tcp(port: u16, send: Option<&str>, expect: Option<&str>) -> CheckKind {
    CheckKind::Tcp(TcpCheck {
        port,
        send: send.map(Into::into),
        expect: expect.map(Into::into),
    })
}

#[tokio::test]
async fn tcp_connects_sends_and_expects() {
    let sip = tcp_server(b"SIP/2.0 200 OK\r\n", false).await;
    assert!(run(tcp(sip, None, None)).await.passed);
    assert!(run(tcp(sip, None, Some("SIP/2.0"))).await.passed);
    let r = run(tcp(sip, None, Some("SSH-"))).await;
    assert_eq!(
        r.error.as_deref(),
        Some("banner did not contain \"SSH-\" (got \"SIP/2.0 200 OK\")")
    );

    let echo = tcp_server(b"", true).await;
    assert!(run(tcp(echo, Some("PING"), Some("PING"))).await.passed);

    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    assert_eq!(
        run(tcp(closed, None, None)).await.error.as_deref(),
        Some("connection refused")
    );

    // Accepts and says nothing: an expected banner times out.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    assert_eq!(
        run(tcp(port, None, Some("220"))).await.error.as_deref(),
        Some("timeout after 300ms")
    );
}
