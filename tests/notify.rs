//! Notifications end to end: the real `failoverd` binary, real backends on 127.0.5x.x, a real SMTP
//! server (aiosmtpd, writing a Maildir) and a real HTTP receiver for the webhook.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{AgentProcess, Backend, dig, dns_addr, free_port, wait_until};

const ZONE: &str = "ha.example.com";
/// The interpreter that has aiosmtpd (Debian's python3-aiosmtpd); `python3` on PATH may not.
const PYTHON: &str = "/usr/bin/python3";

/// A real SMTP server: aiosmtpd with its Mailbox handler, one file per delivered message.
struct SmtpServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub addr: SocketAddr,
}

/// A delivered message, decoded by Python's `email` package (RFC 2047 subjects, QP bodies).
#[derive(Debug, Clone, serde::Deserialize)]
struct Mail {
    subject: String,
    from: String,
    to: String,
    date: String,
    message_id: String,
    content_type: String,
    body: String,
}

impl SmtpServer {
    /// Reserves a port without listening on it (an SMTP server that is down).
    fn reserve(ip: &str) -> SmtpServer {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let addr = SocketAddr::new(ip.parse().unwrap(), free_port(&[ip]));
        SmtpServer {
            child: None,
            dir,
            addr,
        }
    }

    fn start(ip: &str) -> SmtpServer {
        let mut s = Self::reserve(ip);
        s.resume();
        s
    }

    /// Starts aiosmtpd on the reserved address and waits until it accepts connections.
    fn resume(&mut self) {
        let child = Command::new(PYTHON)
            .args(["-m", "aiosmtpd", "-n", "-l", &self.addr.to_string()])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd (scripts/test.sh installs python3-aiosmtpd)");
        self.child = Some(child);
        let addr = self.addr;
        wait_until(Duration::from_secs(10), "aiosmtpd to listen", || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Every message delivered so far, oldest first.
    fn mails(&self) -> Vec<Mail> {
        const DECODE: &str = r#"
import email, email.policy, json, os, sys
d = os.path.join(sys.argv[1], "new")
out = []
for name in sorted(os.listdir(d), key=lambda n: os.stat(os.path.join(d, n)).st_mtime_ns):
    with open(os.path.join(d, name), "rb") as f:
        m = email.message_from_binary_file(f, policy=email.policy.default)
    out.append({"subject": str(m["Subject"]), "from": str(m["From"]), "to": str(m["To"]),
                "date": str(m["Date"] or ""), "message_id": str(m["Message-ID"] or ""),
                "content_type": m.get_content_type(), "body": m.get_content()})
print(json.dumps(out))
"#;
        let out = Command::new(PYTHON)
            .args(["-c", DECODE])
            .arg(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Waits for a message whose subject satisfies `pred` and returns it.
    fn wait_for(&self, deadline: Duration, what: &str, pred: impl Fn(&Mail) -> bool) -> Mail {
        let mut found = None;
        wait_until(deadline, what, || {
            found = self.mails().into_iter().find(|m| pred(m));
            found.is_some()
        });
        found.unwrap()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Nodes node1 (priority 30), node2 (20), … with one HTTP check `web`; fast timings.
fn config(backends: &[Backend], dns: SocketAddr, notify: &str) -> String {
    let mut yaml = format!(
        "zone: {ZONE}\nself: node1\ndns:\n  listen: [\"{dns}\"]\n  ttl: 5s\n\
         dashboard:\n  listen: \"{}:0\"\n\
         defaults: {{ interval: 300ms, retry_interval: 100ms, timeout: 80ms, fall: 2, rise: 2 }}\nnodes:\n",
        dns.ip()
    );
    yaml.push_str(&common::nodes_yaml(backends));
    yaml.push_str(&format!(
        "checks:\n  - {{ id: web, type: http, url: \"http://{{address}}:{}/login\", expect_body: \"Sign in\" }}\n\
         hostnames:\n  - {{ name: app, checks: [web] }}\n{notify}",
        backends[0].http_port
    ));
    yaml
}

fn email_section(smtp: SocketAddr, window: &str) -> String {
    format!(
        "notify:\n  email:\n    smtp: {{ host: {}, port: {}, tls: none }}\n    from: \"failoverd <failoverd@example.com>\"\n\
         \x20   to: [ops@example.com, oncall@example.com]\n    digest_window: {window}\n    retry_for: 1m\n",
        smtp.ip(),
        smtp.port()
    )
}

fn answers(dns: SocketAddr, name: &str) -> Vec<String> {
    dig(dns, &format!("{name}.{ZONE}"), "A", &[]).answers
}

#[test]
fn a_failover_and_the_recovery_are_mailed_with_subject_state_and_headers() {
    let smtp = SmtpServer::start("127.0.50.250");
    let mut backends = Backend::group(&["127.0.50.1", "127.0.50.2"]);
    let dns = dns_addr("127.0.50.100");
    let mut agent = AgentProcess::start(
        &config(&backends, dns, &email_section(smtp.addr, "300ms")),
        dns,
    );
    agent.wait_ready(&format!("app.{ZONE}"));
    assert_eq!(answers(dns, "app"), ["127.0.50.1"]);

    backends[0].stop();
    let down = smtp.wait_for(Duration::from_secs(10), "the failover mail", |m| {
        m.subject.contains("app → node2")
    });
    assert_eq!(
        down.subject,
        "[failoverd ha.example.com] app → node2 (node1 web: connection refused) (+1 more)",
        "{down:#?}"
    );
    let body = &down.body;
    for expected in [
        "node1 web DOWN: connection refused",
        "app.ha.example.com now answers node2 (127.0.50.2); it answered node1 (127.0.50.1)",
        "because: node1 web: connection refused",
        "What every hostname answers now:\n  app.ha.example.com  node2 (127.0.50.2)\n",
        "Every node now:\n  node1  priority 30, 127.0.50.1\n    web  DOWN",
        "  node2  priority 20, 127.0.50.2\n    web  UP",
        "When: ",
        "From: the failoverd agent on node1 (zone ha.example.com, SOA serial ",
    ] {
        assert!(body.contains(expected), "missing {expected:?} in:\n{body}");
    }
    // The node line shows the error of the DOWN check.
    assert!(
        body.lines()
            .any(|l| l.contains("web  DOWN") && l.ends_with("connection refused")),
        "{body}"
    );
    assert_eq!(down.from, "failoverd <failoverd@example.com>");
    assert_eq!(down.to, "ops@example.com, oncall@example.com");
    assert_eq!(down.content_type, "text/plain");
    assert!(!down.date.is_empty(), "a Date header");
    assert!(
        down.message_id.starts_with('<') && down.message_id.ends_with("@example.com>"),
        "{}",
        down.message_id
    );

    backends[0].resume();
    let up = smtp.wait_for(Duration::from_secs(10), "the recovery mail", |m| {
        m.subject.contains("app → node1")
    });
    assert!(
        up.subject
            .starts_with("[failoverd ha.example.com] app → node1 (node1 web: up)"),
        "{}",
        up.subject
    );
    assert!(
        up.body.contains("node1 web UP again after "),
        "how long it was down:\n{}",
        up.body
    );
    assert!(
        up.body
            .contains("  app.ha.example.com  node1 (127.0.50.1)\n")
    );
    assert_ne!(up.message_id, down.message_id, "unique Message-ID");
    assert!(agent.log_text().contains("notification sent"));
    assert_eq!(agent.terminate(), Some(0));
}

#[test]
fn a_burst_of_changes_goes_out_as_one_digest() {
    let smtp = SmtpServer::start("127.0.51.250");
    let mut backends = Backend::group(&["127.0.51.1", "127.0.51.2", "127.0.51.3"]);
    let dns = dns_addr("127.0.51.100");
    let mut agent = AgentProcess::start(
        &config(&backends, dns, &email_section(smtp.addr, "2s")),
        dns,
    );
    agent.wait_ready(&format!("app.{ZONE}"));

    backends[0].stop();
    backends[1].stop();
    wait_until(Duration::from_secs(10), "app to move to node3", || {
        answers(dns, "app") == ["127.0.51.3"]
    });
    let digest = smtp.wait_for(Duration::from_secs(10), "the digest", |_| true);
    assert_eq!(smtp.mails().len(), 1, "one message for the whole burst");
    assert!(
        digest
            .subject
            .starts_with("[failoverd ha.example.com] app → node"),
        "the headline is the answer change: {}",
        digest.subject
    );
    assert!(digest.subject.ends_with("more)"), "{}", digest.subject);
    let body = &digest.body;
    assert!(body.contains(" changes between "), "{body}");
    assert!(
        body.contains("node1 web DOWN: connection refused"),
        "{body}"
    );
    assert!(
        body.contains("node2 web DOWN: connection refused"),
        "{body}"
    );
    assert!(
        body.contains("  app.ha.example.com  node3 (127.0.51.3)\n"),
        "{body}"
    );
}

#[test]
fn with_smtp_down_dns_keeps_failing_over_on_time_and_the_mail_arrives_when_smtp_is_back() {
    let mut smtp = SmtpServer::reserve("127.0.52.250");
    let mut backends = Backend::group(&["127.0.52.1", "127.0.52.2"]);
    let dns = dns_addr("127.0.52.100");
    let mut agent = AgentProcess::start(
        &config(&backends, dns, &email_section(smtp.addr, "100ms")),
        dns,
    );
    agent.wait_ready(&format!("app.{ZONE}"));

    backends[0].stop();
    let died = Instant::now();
    wait_until(Duration::from_secs(5), "app to move to node2", || {
        answers(dns, "app") == ["127.0.52.2"]
    });
    // interval + retry + timeout is 480 ms; dig polling and jitter add a little.
    let failover = died.elapsed();
    assert!(
        failover < Duration::from_secs(3),
        "failover took {failover:?}"
    );
    wait_until(
        Duration::from_secs(10),
        "a failed send to be logged",
        || {
            agent
                .log_text()
                .contains("notification not sent; will retry")
        },
    );
    // DNS answers at once while mail delivery is failing.
    for _ in 0..5 {
        let started = Instant::now();
        let r = dig(dns, &format!("app.{ZONE}"), "A", &[]);
        assert_eq!(r.answers, ["127.0.52.2"], "{}", r.raw);
        assert!(started.elapsed() < Duration::from_millis(900));
    }
    // Failing back also works while mail is down.
    backends[0].resume();
    wait_until(Duration::from_secs(5), "app to fail back to node1", || {
        answers(dns, "app") == ["127.0.52.1"]
    });

    smtp.resume();
    let mail = smtp.wait_for(
        Duration::from_secs(30),
        "the queued failover mail once SMTP is back",
        |m| m.subject.contains("app → node2"),
    );
    assert!(mail.body.contains("node1 web DOWN: connection refused"));
    smtp.wait_for(Duration::from_secs(30), "the failback mail", |m| {
        m.subject.contains("app → node1")
    });
    let log = agent.log_text();
    assert!(log.contains("connection refused"), "{log}");
    assert!(log.contains("notification sent"), "{log}");
}

#[test]
fn a_missing_or_bad_password_variable_is_a_config_error_at_start() {
    let backends = Backend::group(&["127.0.53.1"]);
    let dns = dns_addr("127.0.53.100");
    let dir = tempfile::tempdir().unwrap();
    let notify = "notify:\n  email:\n    smtp: { host: 127.0.53.250, port: 2525, tls: none, username: failoverd,\n\
                  \x20           password_env: FAILOVERD_TEST_UNSET_PASSWORD_53 }\n    from: failoverd@example.com\n    to: [ops@example.com]\n";
    let path = common::write_file(dir.path(), "config.yaml", &config(&backends, dns, notify));
    let out = common::command("run", &path)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env_remove("FAILOVERD_TEST_UNSET_PASSWORD_53")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:", path.display()))
            && stderr.contains("notify.email.smtp.password_env")
            && stderr
                .contains("environment variable `FAILOVERD_TEST_UNSET_PASSWORD_53` is not set"),
        "{stderr}"
    );
    let line = config(&backends, dns, notify)
        .lines()
        .position(|l| l.contains("password_env"))
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!("config.yaml:{line}:")),
        "line {line}: {stderr}"
    );
    // No DNS was served: the agent stopped before binding anything.
    assert!(dig(dns, &format!("app.{ZONE}"), "A", &[]).status.is_empty());

    // A name that cannot be a variable is refused already by check-config.
    let bad = notify.replace("FAILOVERD_TEST_UNSET_PASSWORD_53", "\"smtp password\"");
    let path = common::write_file(dir.path(), "bad.yaml", &config(&backends, dns, &bad));
    let out = common::command("check-config", &path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("notify.email.smtp.password_env")
            && stderr.contains("`smtp password` is not an environment variable name"),
        "{stderr}"
    );

    // A password written in the file is refused without repeating it.
    let inline = notify.replace(
        "password_env: FAILOVERD_TEST_UNSET_PASSWORD_53",
        "password: hunter2-very-secret",
    );
    let path = common::write_file(dir.path(), "inline.yaml", &config(&backends, dns, &inline));
    let out = common::command("check-config", &path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("notify.email.smtp.password") && !stderr.contains("hunter2"),
        "{stderr}"
    );

    // With the variable set, check-config names it and never shows the value.
    let path = common::write_file(dir.path(), "ok.yaml", &config(&backends, dns, notify));
    let out = common::command("check-config", &path)
        .env("FAILOVERD_TEST_UNSET_PASSWORD_53", "hunter2-very-secret")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("password from $FAILOVERD_TEST_UNSET_PASSWORD_53")
            && !stdout.contains("hunter2"),
        "{stdout}"
    );
}

/// A webhook receiver on loopback: records each request; answers 503 to the first one.
struct HookServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<(String, String)>>>,
}

impl HookServer {
    fn start(ip: &str) -> HookServer {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let seen = requests.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(stream);
                let mut head = String::new();
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0u8; length.min(1 << 20)];
                let _ = reader.read_exact(&mut body);
                let first = {
                    let mut seen = seen.lock().unwrap();
                    seen.push((head, String::from_utf8_lossy(&body).into_owned()));
                    seen.len() == 1
                };
                let status = if first {
                    "503 Service Unavailable"
                } else {
                    "200 OK"
                };
                let _ = reader.get_mut().write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                );
            }
        });
        HookServer { addr, requests }
    }

    fn bodies(&self) -> Vec<serde_json::Value> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, b)| serde_json::from_str(b).ok())
            .collect()
    }
}

#[test]
fn the_webhook_receives_each_event_as_json_and_a_refused_post_is_retried() {
    let hook = HookServer::start("127.0.54.250");
    let mut backends = Backend::group(&["127.0.54.1", "127.0.54.2"]);
    let dns = dns_addr("127.0.54.100");
    let notify = format!(
        "notify:\n  webhook:\n    url: \"http://{}/hooks/failoverd?token=t0k3n-in-url\"\n    headers: {{ Authorization: \"Bearer s3cr3t-header\" }}\n",
        hook.addr
    );
    let mut agent = AgentProcess::start(&config(&backends, dns, &notify), dns);
    agent.wait_ready(&format!("app.{ZONE}"));

    backends[0].stop();
    let mut changed = None;
    let mut down = None;
    wait_until(Duration::from_secs(15), "both events posted", || {
        let bodies = hook.bodies();
        changed = bodies
            .iter()
            .rfind(|b| b["kind"] == "answer_changed")
            .cloned();
        down = bodies.iter().rfind(|b| b["kind"] == "check_down").cloned();
        changed.is_some() && down.is_some() && hook.requests.lock().unwrap().len() >= 3
    });
    let changed = changed.unwrap();
    assert_eq!(changed["source"], "failoverd");
    assert_eq!(changed["zone"], ZONE);
    assert_eq!(changed["agent"], "node1");
    assert_eq!(changed["hostname"], "app.ha.example.com");
    assert_eq!(changed["from_nodes"], serde_json::json!(["node1"]));
    assert_eq!(changed["to_nodes"], serde_json::json!(["node2"]));
    assert_eq!(changed["from"], serde_json::json!(["127.0.54.1"]));
    assert_eq!(changed["to"], serde_json::json!(["127.0.54.2"]));
    assert_eq!(changed["reason"], "healthy");
    assert_eq!(
        changed["cause"],
        serde_json::json!(["node1 web: connection refused"])
    );
    assert_eq!(
        changed["text"],
        "[failoverd ha.example.com] app → node2 (node1 web: connection refused)"
    );
    assert!(changed["at"].as_str().unwrap().ends_with('Z'));
    let down = down.unwrap();
    assert_eq!(down["node"], "node1");
    assert_eq!(down["check"], "web");
    assert_eq!(down["error"], "connection refused");

    let requests = hook.requests.lock().unwrap().clone();
    let (head, _) = &requests[0];
    let head = head.to_ascii_lowercase();
    assert!(
        head.starts_with("post /hooks/failoverd?token=t0k3n-in-url http/1.1"),
        "{head}"
    );
    assert!(
        head.contains("authorization: bearer s3cr3t-header"),
        "{head}"
    );
    assert!(head.contains("content-type: application/json"), "{head}");
    // The first POST got a 503: the same event was posted again.
    let first: serde_json::Value = serde_json::from_str(&requests[0].1).unwrap();
    assert_eq!(
        requests
            .iter()
            .filter(
                |(_, b)| serde_json::from_str::<serde_json::Value>(b).ok() == Some(first.clone())
            )
            .count(),
        2,
        "retried once after the 503"
    );
    let log = agent.log_text();
    assert!(log.contains("HTTP 503"), "{log}");
    assert!(
        !log.contains("t0k3n") && !log.contains("s3cr3t"),
        "no token in logs:\n{log}"
    );
}

#[test]
fn notify_test_reports_success_and_a_clear_failure() {
    let mut smtp = SmtpServer::start("127.0.55.250");
    let backends = Backend::group(&["127.0.55.1"]);
    let dns = dns_addr("127.0.55.100");
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_file(
        dir.path(),
        "config.yaml",
        &config(&backends, dns, &email_section(smtp.addr, "10s")),
    );
    let run = || common::command("notify-test", &path).output().unwrap();

    let ok = run();
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "email    ops@example.com, oncall@example.com via {}: sent",
            smtp.addr
        )),
        "{stdout}"
    );
    let mail = smtp.wait_for(Duration::from_secs(5), "the test mail", |_| true);
    assert_eq!(
        mail.subject,
        "[failoverd ha.example.com] test message from node1"
    );
    assert!(mail.body.contains("Nothing is wrong."));

    smtp.stop();
    let started = Instant::now();
    let failed = run();
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(failed.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("FAILED: SMTP {}: connection refused", smtp.addr)),
        "{stdout}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "one attempt, no retries"
    );
}

/// A message that cannot be delivered within `retry_for` is given up on, and the dashboard's
/// recent events say so (it is not mailed: that could loop).
#[test]
fn a_notification_given_up_on_is_shown_among_the_recent_events() {
    let backends = Backend::group(&["127.0.56.1", "127.0.56.2"]);
    let dns = dns_addr("127.0.56.100");
    let dashboard = format!("127.0.56.100:{}", common::free_port(&["127.0.56.100"]));
    // Nothing listens on this SMTP port; retry for one second only.
    let closed = common::free_port(&["127.0.56.250"]);
    let notify = format!(
        "notify:\n  email:\n    smtp: {{ host: 127.0.56.250, port: {closed}, tls: none }}\n    from: failoverd@example.com\n\
         \x20   to: [ops@example.com]\n    digest_window: 0s\n    retry_for: 1s\n"
    );
    let yaml = config(&backends, dns, &notify).replace(
        "listen: \"127.0.56.100:0\"",
        &format!("listen: \"{dashboard}\""),
    );
    let mut agent = AgentProcess::start(&yaml, dns);
    agent.wait_ready(&format!("app.{ZONE}"));
    let mut backends = backends;
    backends[0].stop();
    wait_until(
        Duration::from_secs(15),
        "a notification_failed event on the dashboard",
        || {
            let Ok(mut s) = std::net::TcpStream::connect(&dashboard) else {
                return false;
            };
            let _ = std::io::Write::write_all(
                &mut s,
                format!(
                    "GET /api/v1/status HTTP/1.1\r\nHost: {dashboard}\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            );
            let mut body = String::new();
            let _ = std::io::Read::read_to_string(&mut s, &mut body);
            body.contains("\"kind\": \"notification_failed\"")
                && body.contains("connection refused")
        },
    );
    assert!(
        agent.log_text().contains("notification dropped"),
        "{}",
        agent.log_text()
    );
}

/// aiosmtpd driven from Python (its command line cannot do TLS or AUTH): STARTTLS required, or
/// implicit TLS; AUTH required; every AUTH attempt logged as a JSON line with the TLS version.
const TLS_SMTP_SERVER: &str = r#"
import json, signal, ssl, sys
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword

mode, host, port, cert, key, maildir, user, password, log = sys.argv[1:]
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user
          and auth_data.password.decode() == password)
    tls = server.transport.get_extra_info("ssl_object")
    with open(log, "a") as f:
        f.write(json.dumps({"mechanism": mechanism, "login": auth_data.login.decode(), "ok": ok,
                            "tls": tls.version() if tls else None}) + "\n")
    # handled=False: aiosmtpd answers 535 itself (with the default, True, it answers nothing).
    return AuthResult(success=ok, handled=False)

common = dict(hostname=host, port=int(port), authenticator=authenticator, auth_required=True)
if mode == "starttls":
    controller = Controller(Mailbox(maildir), tls_context=context, require_starttls=True,
                            auth_require_tls=True, **common)
else:
    # Implicit TLS: the whole connection is encrypted (aiosmtpd's auth_require_tls only knows
    # STARTTLS, so it is off here; the log shows the TLS version of each AUTH).
    controller = Controller(Mailbox(maildir), ssl_context=context, auth_require_tls=False, **common)
controller.start()
signal.sigwait({signal.SIGTERM, signal.SIGINT})
controller.stop()
"#;

/// A private CA and a certificate it signed for `ip`, as PEM files in `dir`.
fn private_ca(dir: &std::path::Path, ip: &str) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "failoverd test mail CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![ip.to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

/// `failoverd notify-test` against aiosmtpd with STARTTLS and with implicit TLS, both requiring
/// AUTH, the server's certificate signed by a CA given in `ca_file`: the mail arrives, the
/// login went over TLS; a wrong password, and a CA not given, each fail with a clear reason.
#[test]
fn mail_goes_out_over_starttls_and_implicit_tls_with_auth_trusting_a_private_ca() {
    let ip = "127.0.57.250";
    let backends = Backend::group(&["127.0.57.1"]);
    let dns = dns_addr("127.0.57.100");
    for mode in ["starttls", "tls"] {
        let dir = tempfile::tempdir().unwrap();
        private_ca(dir.path(), ip);
        let maildir = dir.path().join("mail");
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        let auth_log = dir.path().join("auth.jsonl");
        let port = free_port(&[ip]);
        let server = Command::new(PYTHON)
            .args(["-c", TLS_SMTP_SERVER, mode, ip, &port.to_string()])
            .arg(dir.path().join("server.pem"))
            .arg(dir.path().join("server.key"))
            .arg(&maildir)
            .args(["alerts", "s3cret pass"])
            .arg(&auth_log)
            .stdin(Stdio::null())
            .spawn()
            .expect("aiosmtpd (scripts/test.sh installs python3-aiosmtpd)");
        let addr = SocketAddr::new(ip.parse().unwrap(), port);
        // Killed when dropped, also when an assertion below fails.
        let _server = SmtpServer {
            child: Some(server),
            dir: tempfile::tempdir().unwrap(),
            addr,
        };
        wait_until(
            Duration::from_secs(10),
            "aiosmtpd with TLS to listen",
            || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok(),
        );
        let email = |ca_line: &str| {
            format!(
                "notify:\n  email:\n    smtp: {{ host: {ip}, port: {port}, tls: {mode}, username: alerts, \
                 password_env: FAILOVERD_TEST_SMTP_PASSWORD{ca_line} }}\n\
                 \x20   from: \"failoverd <failoverd@example.com>\"\n    to: [ops@example.com]\n"
            )
        };
        let notify_test = |ca_line: &str, password: &str| {
            let path = common::write_file(
                dir.path(),
                "config.yaml",
                &config(&backends, dns, &email(ca_line)),
            );
            let out = common::command("notify-test", &path)
                .env("FAILOVERD_TEST_SMTP_PASSWORD", password)
                .output()
                .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.code(), text)
        };
        let logins = || -> Vec<serde_json::Value> {
            std::fs::read_to_string(&auth_log)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };

        // The CA given as a path relative to the configuration file.
        let (code, text) = notify_test(", ca_file: ca.pem", "s3cret pass");
        assert_eq!(code, Some(0), "{mode}: {text}");
        assert!(text.contains(": sent"), "{mode}: {text}");
        let read_mail = || {
            // The Mailbox handler writes into this server's own Maildir.
            let mut found = None;
            wait_until(Duration::from_secs(5), "the mail in the Maildir", || {
                found = std::fs::read_dir(maildir.join("new"))
                    .unwrap()
                    .next()
                    .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap());
                found.is_some()
            });
            found.unwrap()
        };
        let mail = read_mail();
        assert!(mail.contains("test message from node1"), "{mode}: {mail}");
        let first = logins();
        assert_eq!(first.len(), 1, "{mode}: {first:?}");
        assert_eq!(first[0]["login"], "alerts");
        assert_eq!(first[0]["ok"], true);
        assert!(
            first[0]["tls"]
                .as_str()
                .is_some_and(|v| v.starts_with("TLSv1.")),
            "{mode}: the password went over TLS: {first:?}"
        );

        // A wrong password: refused by the server, reported, not retried.
        let (code, text) = notify_test(", ca_file: ca.pem", "wrong");
        assert_eq!(code, Some(1), "{mode}: {text}");
        assert!(
            text.contains(&format!(
                "FAILED: SMTP {addr}: 5.7.8 Authentication credentials invalid"
            )),
            "{mode}: {text}"
        );
        assert_eq!(logins().len(), 2, "{mode}: one attempt");

        // Without the CA the certificate is not trusted: no login is even attempted.
        let (code, text) = notify_test("", "s3cret pass");
        assert_eq!(code, Some(1), "{mode}: {text}");
        assert!(
            text.contains("invalid peer certificate: UnknownIssuer (the server's certificate is not signed by a CA this machine trusts: give that CA in notify.email.smtp.ca_file)"),
            "{mode}: {text}"
        );
        assert_eq!(
            logins().len(),
            2,
            "{mode}: no password sent to an untrusted server"
        );
    }
}

/// An SMTP server that accepts the connection and then says nothing: `notify-test` gives up
/// after `timeout` with a clear reason instead of hanging (lettre bounds only the connect).
#[test]
fn a_stalled_smtp_server_fails_the_attempt_after_the_timeout() {
    let ip = "127.0.57.251";
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    // Holds every accepted connection open, silent, until the test ends.
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            match stream {
                Ok(s) => keep.lock().unwrap().push(s),
                Err(_) => break,
            }
        }
    });
    let backends = Backend::group(&["127.0.57.2"]);
    let dns = dns_addr("127.0.57.101");
    let dir = tempfile::tempdir().unwrap();
    let email = format!(
        "notify:\n  email:\n    smtp: {{ host: {ip}, port: {}, tls: none, timeout: 1s }}\n\
         \x20   from: failoverd@example.com\n    to: [ops@example.com]\n",
        addr.port()
    );
    let path = common::write_file(dir.path(), "config.yaml", &config(&backends, dns, &email));
    let started = Instant::now();
    let out = common::command("notify-test", &path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "FAILED: SMTP {addr}: no complete answer within 1s"
        )),
        "{stdout}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "bounded by the 1 s timeout, took {:?}",
        started.elapsed()
    );
    assert_eq!(held.lock().unwrap().len(), 1, "one attempt");
}
